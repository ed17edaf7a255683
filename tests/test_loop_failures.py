"""A database out of reach is said once by each background loop, then once a minute, then when it is
back — not a traceback per turn (an outage wrote ~30 KB of log a second with two workers)."""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import OperationalError

from connector.loop_failures import LoopFailures

REFUSED = OperationalError("SELECT 1", {}, Exception('connection to server at "127.0.0.1", port 5432 failed: '
                                                     "Connection refused\nIs the server running?"))


def test_an_outage_is_said_once_then_once_a_minute_then_when_it_ends(caplog):
    now = [100.0]
    failures = LoopFailures("outbox", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="connector.loop_failures"):
        for step in range(0, 130):  # a turn a second for over two minutes
            now[0] = 100.0 + step
            failures.failed(REFUSED)
        failures.succeeded()
        failures.succeeded()  # nothing more to say
    said = [(r.levelname, r.getMessage(), getattr(r, "for_s", None)) for r in caplog.records]
    assert said == [
        ("ERROR", "outbox loop: the database cannot be reached; trying again each turn", None),
        ("ERROR", "outbox loop: the database still cannot be reached", 60),
        ("ERROR", "outbox loop: the database still cannot be reached", 120),
        ("WARNING", "outbox loop: the database answers again", None),
    ]
    first = caplog.records[0]
    assert first.error == 'OperationalError: connection to server at "127.0.0.1", port 5432 failed: Connection refused'
    assert not any(r.exc_info for r in caplog.records)


def test_any_other_failure_keeps_its_traceback_every_time(caplog):
    failures = LoopFailures("callback")
    with caplog.at_level(logging.ERROR, logger="connector.loop_failures"):
        for _ in range(2):
            try:
                raise KeyError("bug")
            except KeyError as err:
                failures.failed(err)
    assert [r.getMessage() for r in caplog.records] == ["callback loop iteration failed"] * 2
    assert all(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


def test_the_outbox_loop_says_an_outage_once(make_app, monkeypatch, caplog):
    app = make_app(poll_interval_s=0.05)
    services = app.extensions["connector"]

    def refused(*_, **__):
        raise REFUSED

    with caplog.at_level(logging.INFO, logger="connector.loop_failures"):
        monkeypatch.setattr(services.outbox, "claim_due", refused)
        services.start_loop(0.05)
        time.sleep(1.0)  # ~20 turns
        monkeypatch.undo()
        deadline = time.monotonic() + 5
        while not any("answers again" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
    said = [r.getMessage() for r in caplog.records if r.name == "connector.loop_failures"]
    assert said == ["outbox loop: the database cannot be reached; trying again each turn",
                    "outbox loop: the database answers again"]


def test_a_schema_this_code_does_not_expect_is_no_outage(caplog):
    """SQLite's "no such table" is an OperationalError too: it was logged as the database away,
    once a minute and without its traceback."""
    import sqlite3

    failures = LoopFailures("outbox")
    missing = OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: deliveries"))
    locked = OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))
    with caplog.at_level(logging.ERROR, logger="connector.loop_failures"):
        failures.failed(missing)
        failures.failed(locked)
    assert [(r.getMessage(), bool(r.exc_info)) for r in caplog.records] == [
        ("outbox loop iteration failed", True),
        ("outbox loop: the database cannot be reached; trying again each turn", False)]


def test_a_database_host_that_no_longer_resolves_is_an_outage():
    # A review: psycopg's "failed to resolve host" (no sqlstate: no server answered) was taken for
    # a query refused — a 500 with a traceback on every request — where a refused connection was a
    # 503 to retry. Docker's DNS forgets a stopped container; Kubernetes a service with no pod.
    from connector.loop_failures import unreachable

    for words in ("failed to resolve host 'db': [Errno -2] Name or service not known",
                  'could not translate host name "db" to address: Temporary failure in name resolution'):
        assert unreachable(OperationalError("SELECT 1", {}, Exception(words))), words
    assert not unreachable(OperationalError("SELECT 1", {}, Exception("no such column: handoffs.nope")))
