"""Alembic environment: always run with a connection handed in by `connector.db.Database.upgrade`."""

from alembic import context

from connector.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by calling alembic directly
    raise SystemExit("run migrations with: flask --app wsgi connector migrate")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
