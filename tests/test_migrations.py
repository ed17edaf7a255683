"""The migrations build exactly the tables the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from connector.models import Base


def test_migrated_schema_matches_the_models(any_db_app):
    engine = any_db_app.extensions["connector"].db.engine
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def downgraded(db, revision: str) -> dict[str, list]:
    """Go back to `revision` and read what is left: table → its first column's values, sorted."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect, text

    from connector.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        return {table: sorted(connection.execute(text(f"SELECT {column} FROM {table}")).scalars().all())
                for table, column in (("handoffs", "id"), ("deliveries", "handoff_id"),
                                      ("assignments", "handoff_id")) if inspect(connection).has_table(table)}


def test_going_back_to_0005_forgets_the_assignments_routing_made(any_db_app):
    """0005's code counts every assignment as an observed wait and lets none be replaced: the
    routed ones (which it never stored) must not be left for it."""
    import datetime as dt

    from sqlalchemy import text

    from connector.models import Assignment, Handoff

    db = any_db_app.extensions["connector"].db
    at = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
    with db.session() as session:
        for n, routed in ((1, False), (2, True)):
            session.add(Handoff(id=f"hnd_M{n}", bot_id="b", conversation_id=f"c{n}", idempotency_key=f"k{n}",
                                request_hash="0" * 64, packet={}, assignment={}, customer_message={}, created_at=at))
            session.flush()
            session.add(Assignment(handoff_id=f"hnd_M{n}", target="zendesk", vendor_ticket_id=str(n), team="t",
                                   agent_id="a", event_id=f"e{n}", handed_off_at=at, assigned_at=at, wait_seconds=n,
                                   routed=routed))
    assert downgraded(db, "0005")["assignments"] == ["hnd_M1"]
    db.upgrade()
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT routed FROM assignments")).scalars().all() == [False]


def test_going_back_to_0006_forgets_follow_ups_and_keeps_everything_else(any_db_app):
    """0006 knows no follow-ups (they would be listed and matched as handoffs); dropping the column
    must not copy the handoffs table, which on SQLite cascaded to every delivery and assignment."""
    import datetime as dt

    from connector.models import Assignment, Delivery, Handoff

    db = any_db_app.extensions["connector"].db
    at = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
    with db.session() as session:
        for id_, follows in (("hnd_F1", None), ("msg_F2", "hnd_F1")):
            session.add(Handoff(id=id_, bot_id="b", conversation_id="c", idempotency_key=id_, request_hash="0" * 64,
                                packet={}, assignment={}, customer_message={}, created_at=at, follows_id=follows,
                                deliveries=[Delivery(target="zendesk", state="created", vendor_id="1")]))
        session.flush()
        session.add(Assignment(handoff_id="hnd_F1", target="zendesk", vendor_ticket_id="1", team="t", agent_id="a",
                               event_id="e1", handed_off_at=at, assigned_at=at, wait_seconds=1))
    assert downgraded(db, "0006") == {"handoffs": ["hnd_F1"], "deliveries": ["hnd_F1"], "assignments": ["hnd_F1"]}
    db.upgrade()


def test_a_new_sqlite_database_and_its_directory_are_its_owners_alone(tmp_path):
    """Packets hold names, addresses and transcripts: not readable by other users of the machine."""
    import stat

    from sqlalchemy import text

    from connector import create_app

    app = create_app({"database_url": f"sqlite:///{tmp_path}/instance/connector.db"})
    try:
        db = app.extensions["connector"].db
        db.upgrade()
        with db.engine.begin() as connection:  # a write, so the -wal file exists
            connection.execute(text("DELETE FROM handoffs"))
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "instance").iterdir()}
        assert stat.S_IMODE((tmp_path / "instance").stat().st_mode) == 0o700
        assert modes["connector.db"] == 0o600 and modes.get("connector.db-wal", 0o600) == 0o600, modes
    finally:
        app.extensions["connector"].stop()
    (tmp_path / "shared").mkdir(mode=0o755)
    (tmp_path / "shared").chmod(0o755)
    create_app({"database_url": f"sqlite:///{tmp_path}/shared/c.db"}).extensions["connector"].stop()
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o755  # the operator's directory is theirs


def test_a_database_others_can_read_is_warned_about_and_a_symlinks_target_is_made_private(tmp_path):
    import os
    import stat

    from connector import create_app

    (tmp_path / "old.db").write_text("")
    (tmp_path / "old.db").chmod(0o644)  # made before the service made its files private
    tmp_path.chmod(0o755)
    app = create_app({"database_url": f"sqlite:///{tmp_path}/old.db"})
    try:
        assert app.extensions["connector"].warnings()[-1] == (
            f"the SQLite database {tmp_path}/old.db can be read by other users of this machine (mode 0644); it "
            f"holds whole packets: chmod 600 '{tmp_path}/old.db'*")
    finally:
        app.extensions["connector"].stop()
    tmp_path.chmod(0o700)  # a directory others cannot enter protects what is in it: nothing to say
    app = create_app({"database_url": f"sqlite:///{tmp_path}/old.db"})
    try:
        assert not any("can be read by other users" in said for said in app.extensions["connector"].warnings())
    finally:
        app.extensions["connector"].stop()
    os.symlink(tmp_path / "data" / "real.db", tmp_path / "link.db")
    (tmp_path / "data").mkdir()
    app = create_app({"database_url": f"sqlite:///{tmp_path}/link.db"})
    try:
        app.extensions["connector"].db.upgrade()  # made when first connected to
        assert stat.S_IMODE((tmp_path / "data" / "real.db").stat().st_mode) == 0o600
        assert not any("can be read by other users" in said for said in app.extensions["connector"].warnings())
    finally:
        app.extensions["connector"].stop()


def test_a_sqlite_uri_is_used_as_written_not_joined_to_the_project_directory(tmp_path):
    """`sqlite:///file:/abs/x.db?uri=true` (SQLite's URI filenames): the path inside is the URI's own."""
    from connector import create_app

    app = create_app({"database_url": f"sqlite:///file:{tmp_path}/uri.db?uri=true"})
    try:
        app.extensions["connector"].db.upgrade()
    finally:
        app.extensions["connector"].stop()
    assert (tmp_path / "uri.db").stat().st_size > 0


def test_a_sqlite_uri_files_are_kept_as_a_paths_are(tmp_path):
    # A URI filename skipped the file's rules: made readable by all (0644), a mistyped one made empty
    # by a read-only look, and its writers took no turns (no -writer.lock) (a review).
    import stat

    from sqlalchemy import text

    from connector import create_app

    tmp_path.chmod(0o755)
    app = create_app({"database_url": f"sqlite:///file:{tmp_path}/c.db?uri=true"})
    try:
        app.extensions["connector"].db.upgrade()
        with app.extensions["connector"].db.session() as session:
            session.execute(text("SELECT 1"))
    finally:
        app.extensions["connector"].stop()
    assert stat.S_IMODE((tmp_path / "c.db").stat().st_mode) == 0o600
    assert (tmp_path / "c.db-writer.lock").exists()
    typo = create_app({"database_url": f"sqlite:///file:{tmp_path}/typo.db?uri=true"})
    try:
        gap = typo.extensions["connector"].db.schema_gap()
        assert gap is not None and gap.no_file and not (tmp_path / "typo.db").exists()
    finally:
        typo.extensions["connector"].stop()
    (tmp_path / "open.db").touch(mode=0o644)
    (tmp_path / "open.db").chmod(0o644)
    readable = create_app({"database_url": f"sqlite:///file:{tmp_path}/open.db?mode=rw&uri=true"})
    try:
        assert any("can be read by other users" in said for said in readable.extensions["connector"].warnings())
    finally:
        readable.extensions["connector"].stop()


@pytest.mark.postgres
def test_two_processes_migrating_one_new_postgresql_database_at_once_both_start(postgres_template):
    # Two gunicorn masters (or `migrate` beside a deploy) on a new database: both created the
    # schema, and one failed on PostgreSQL's catalog ("duplicate key … pg_type_typname_nsp_index").
    import threading
    import uuid

    from connector.db import Database
    from tests.conftest import PG_URL, _admin

    name = f"connector_test_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    databases = [Database(PG_URL.rsplit("/", 1)[0] + f"/{name}", root=".") for _ in range(2)]
    start, failures = threading.Barrier(2), []

    def migrate(database: Database) -> None:
        start.wait()
        try:
            database.migrate()
        except Exception as err:
            failures.append(err)

    try:
        for _ in range(3):  # the race is lost often, not always
            threads = [threading.Thread(target=migrate, args=(d,)) for d in databases]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert failures == []
            for database in databases:
                database.engine.dispose()
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            _admin(f'CREATE DATABASE "{name}"')
    finally:
        for database in databases:
            database.dispose()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_a_newer_release_moved_on_while_this_one_waited_is_one_named_error(tmp_path, monkeypatch):
    # A rolling deploy: the gap read before the migration lock said "migrate"; by the time the
    # lock was had, a newer release had moved the schema on, and Alembic's CommandError escaped
    # start-up as a traceback.
    from sqlalchemy import text

    from connector.db import Database, SchemaGap
    from connector.errors import ConfigError

    database = Database(f"sqlite:///{tmp_path}/x.db", root=".")
    database.upgrade()
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    real = database.schema_gap
    reads = iter([SchemaGap("its schema is behind", migrate=True, state="behind")])
    monkeypatch.setattr(database, "schema_gap", lambda: next(reads, None) or real())
    try:
        with pytest.raises(ConfigError) as caught:
            database.migrate()
        assert "revision 0099, which this code does not know: a newer release made it" in str(caught.value)
        assert caught.value.source == "CONNECTOR_DATABASE_URL"
    finally:
        database.dispose()


REVISIONS = [f"{n:04d}" for n in range(1, 13)]  # every one before head


def _filled(connection, table: str, values: dict) -> dict:
    """`values` and a value for each other column the table at this revision requires."""
    import datetime as dt

    from sqlalchemy import inspect
    from sqlalchemy import types as t

    at = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
    row = dict(values)
    for column in inspect(connection).get_columns(table):
        if column["name"] in row or column["nullable"] or column["name"] == "id":
            continue
        kind = column["type"]
        row[column["name"]] = (at if isinstance(kind, t.DateTime) else False if isinstance(kind, t.Boolean)
                               else 0 if isinstance(kind, t.Integer) else {} if isinstance(kind, t.JSON) else "x")
    return row


@pytest.mark.parametrize("revision", REVISIONS)
def test_upgrading_a_database_with_handoffs_in_it_keeps_every_row(any_db_app, revision):
    """A review: on SQLite, 0003's batch copy of `handoffs` dropped the old table with foreign keys on,
    which cascaded to every delivery — a database upgraded from 0001 or 0002 lost its pending
    deliveries (never sent; the handoffs read as delivered, `/readyz` saw nothing pending)."""
    from sqlalchemy import MetaData, Table, select, text

    db = any_db_app.extensions["connector"].db
    downgraded(db, revision)
    with db.engine.begin() as connection:
        tables = {name: Table(name, MetaData(), autoload_with=connection) for name in ("handoffs", "deliveries")}
        connection.execute(tables["handoffs"].insert().values(_filled(connection, "handoffs", {
            "id": "hnd_OLD", "bot_id": "b", "conversation_id": "c", "idempotency_key": "k", "request_hash": "0" * 64})))
        connection.execute(tables["deliveries"].insert().values(_filled(connection, "deliveries", {
            "handoff_id": "hnd_OLD", "target": "zendesk", "position": 0, "state": "pending", "attempts": 0})))
    db.migrate()
    assert db.schema_gap() is None
    with db.engine.connect() as connection:
        delivery = tables["deliveries"]
        assert connection.execute(select(delivery.c.handoff_id, delivery.c.state)).all() == [("hnd_OLD", "pending")]
        if db.dialect == "sqlite":  # and back on for the service's own transactions
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_a_row_orphaned_by_hand_before_does_not_stop_the_service_starting(tmp_path):
    """A review: the check after the migration ran at every start, and a delivery whose handoff an
    operator had deleted in the sqlite3 shell (foreign keys off there) stopped it, blaming a migration."""
    import sqlite3

    from connector.db import Database

    url = f"sqlite:///{tmp_path}/c.db"
    Database(url, root=".").migrate()
    with sqlite3.connect(f"{tmp_path}/c.db") as shell:  # the sqlite3 shell: foreign keys off
        shell.execute("INSERT INTO deliveries (handoff_id, target, position, state, attempts, outcome_unknown, "
                      "next_attempt_at, window_started_at, created_at, updated_at, rate_limited) VALUES "
                      "('hnd_GONE', 'zendesk', 0, 'created', 1, 0, '2026-11-20', '2026-11-20', '2026-11-20', "
                      "'2026-11-20', 0)")
    Database(url, root=".").migrate()  # at head: nothing to migrate, and nothing refused


def test_the_waiting_handoffs_have_an_index_of_their_own(any_db_app):
    """Every Salesforce Outbound Message asks whether a conversation linked to another case waits
    (`merges._waiting_elsewhere`): without an index of the waiting handoffs PostgreSQL read every
    handoff when none waited (40 ms at 200,000 on each message; 2 ms with it)."""
    from sqlalchemy import inspect

    engine = any_db_app.extensions["connector"].db.engine
    [index] = [i for i in inspect(engine).get_indexes("handoffs") if i["name"] == "ix_handoffs_waiting"]
    assert index["column_names"] == ["bot_id", "conversation_id"]
    where = index["dialect_options"].get("postgresql_where") or str(index["dialect_options"]["sqlite_where"])
    assert "completed_at IS NULL" in where and "follows_id IS NULL" in where
