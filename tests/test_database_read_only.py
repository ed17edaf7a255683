"""A PostgreSQL that answers and takes no writes — a standby, a primary a failover demoted while the
address still names it, `default_transaction_read_only`, a role whose grants were taken — is an
outage to wait out, as SQLite's read-only file is: a 503 the bot retries, one line in the log, /readyz
not ready, `check` saying so. It was a 500 "our fault" to every bot, /readyz ready, and a 4 KB
traceback a second from each loop (an operator's review)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy.exc import InternalError, ProgrammingError

from connector.loop_failures import unreachable
from tests.conftest import _admin, auth
from tests.factories import minimal_packet


class _Refused(Exception):
    def __init__(self, sqlstate: str, words: str):
        super().__init__(words)
        self.sqlstate = sqlstate


def test_a_database_that_takes_no_writes_is_an_outage_and_a_query_it_refused_is_not():
    # psycopg's errors, as SQLAlchemy wraps them: class 25 an InternalError, class 42 a ProgrammingError.
    read_only = _Refused("25006", "cannot execute INSERT in a read-only transaction")
    assert unreachable(InternalError("INSERT", {}, read_only))
    assert unreachable(ProgrammingError("INSERT", {}, _Refused("42501", "permission denied for table handoffs")))
    assert not unreachable(ProgrammingError("SELECT", {}, _Refused("42P01", 'relation "handoffs" does not exist')))
    assert not unreachable(InternalError("SELECT", {}, _Refused("XX000", "internal error")))
    assert not unreachable(ValueError("not a database error"))


@pytest.mark.postgres
def test_a_read_only_postgresql_is_a_503_to_retry_not_ready_and_said_by_check(make_app, postgres_url, caplog):
    app = make_app(database_url=postgres_url)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    name = postgres_url.rsplit("/", 1)[1]
    _admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    app.extensions["connector"].db.dispose()  # new connections take the database's setting
    answer = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                         content_type="application/json")
    assert answer.status_code == 503, answer.get_json()
    assert answer.headers["Retry-After"] and "nothing was recorded" in answer.get_json()["detail"]
    assert not [r for r in caplog.records if r.getMessage() == "unhandled error"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["database"]["error"].startswith("read-only")
    said = app.test_cli_runner().invoke(args=["connector", "check"])
    assert said.exit_code == 1
    assert "problem: CONNECTOR_DATABASE_URL: the database is read-only" in said.output
    # Its writing commands say it in one line, not a traceback.
    purged = app.test_cli_runner().invoke(args=["connector", "purge", "--days", "30"])
    assert purged.exit_code == 1 and "Traceback" not in purged.output, purged.output
    assert "the database failed: InternalError: cannot execute" in purged.output
    _admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    app.extensions["connector"].db.dispose()
    assert client.get("/readyz").status_code == 200


@pytest.mark.postgres
def test_a_role_without_write_grants_is_not_ready_and_said_by_check(make_app, postgres_url):
    # A review of the mend: every handoff was a 503 ("permission denied for table handoffs") while
    # /readyz said ready and `check` said ok — the load balancer kept sending bots. Its sequences
    # forgotten (`ON ALL SEQUENCES`), the same; DELETE is needed only where retention deletes (the
    # rest go by ON DELETE CASCADE): asked of every table, a least-privilege role was never ready.
    name, role = postgres_url.rsplit("/", 1)[1], f"ro_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE ROLE "{role}" LOGIN')
    try:
        for grant in ("GRANT USAGE ON SCHEMA public TO {role}", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
                      "GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}",
                      "GRANT DELETE ON handoffs, conversation_links TO {role}", "REVOKE UPDATE ON callbacks FROM {role}"):
            _on(name, grant.format(role=f'"{role}"'))
        app = make_app(database_url=postgres_url.replace("postgres@", f"{role}@"))
        client = app.test_client()

        def refused() -> str | None:
            ready = client.get("/readyz")
            return None if ready.status_code == 200 else ready.get_json()["checks"]["database"]["error"]

        assert refused() == "not writable by this role: it may not read and write table callbacks (grants)"
        said = app.test_cli_runner().invoke(args=["connector", "check"])
        assert said.exit_code == 1 and "may not read and write table callbacks" in said.output
        _on(name, f'GRANT UPDATE ON callbacks TO "{role}"')
        assert refused() == "not writable by this role: it may not use the id sequence of table conversation_links (grants)"
        _on(name, f'GRANT UPDATE ON ALL SEQUENCES IN SCHEMA public TO "{role}"')  # nextval takes it as USAGE
        assert refused() is None  # no DELETE on deliveries, assignments or callbacks: none is needed
        answer = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                             content_type="application/json")
        assert answer.status_code in (201, 202), answer.get_json()
        _on(name, f'REVOKE DELETE ON handoffs FROM "{role}"')
        assert refused() == "not writable by this role: it may not delete from table handoffs (grants)"
        app.extensions["connector"].stop()
    finally:
        _on(name, f'DROP OWNED BY "{role}"')
        _admin(f'DROP ROLE "{role}"')


def _on(database: str, sql: str) -> None:
    import psycopg

    from tests.conftest import PG_URL

    url = PG_URL.replace("postgresql+psycopg", "postgresql").rsplit("/", 1)[0] + f"/{database}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)
