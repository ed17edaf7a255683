"""The commands that read or write the database say what to do when it cannot be used — not
migrated yet, at another release's schema, unreachable — in one line, not a traceback."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from alembic import command

from connector import create_app
from connector.db import _alembic_config
from tests.conftest import ADMIN_TOKEN

COMMANDS = [["deliveries"], ["callbacks"], ["replay", "--all-dead"], ["purge", "--days", "30", "--dry-run"],
            ["worker"]]


@pytest.fixture
def fresh_app(tmp_path):
    """An app on a database nothing has migrated (made by hand, or an empty PostgreSQL database)."""
    sqlite3.connect(tmp_path / "new.db").close()
    app = create_app({"database_url": f"sqlite:///{tmp_path}/new.db"})
    yield app
    app.extensions["connector"].stop()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[0])
def test_a_command_on_a_database_never_migrated_says_to_migrate(fresh_app, args):
    result = fresh_app.test_cli_runner().invoke(args=["connector", *args])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: the database cannot be used by this code: it holds no connector schema yet. Run "
        "`flask --app wsgi connector migrate` (starting the service with gunicorn runs it too)")


@pytest.mark.parametrize("args", [["check"], *COMMANDS], ids=lambda args: args[0])
def test_a_sqlite_path_with_no_file_is_named_and_nothing_is_made_there(tmp_path, args):
    """Before the first `make run`, or a mistyped path: said as such, and no empty database left behind."""
    mistyped = tmp_path / "instanse" / "connector.db"
    app = create_app({"database_url": f"sqlite:///{mistyped}"})
    try:
        result = app.test_cli_runner().invoke(args=["connector", *args])
        said = (f"the database cannot be used by this code: there is no database file at {mistyped} yet (is the "
                "path right?). Run `flask --app wsgi connector migrate` (starting the service with gunicorn runs it too)")
        if args == ["check"]:
            assert result.exit_code == 0 and "database: no file yet (sqlite), schema not created yet" in result.output
            assert f"warning: {said}" in result.output
        else:
            assert result.exit_code == 1 and result.output.strip() == f"Error: {said}"
        assert not mistyped.parent.exists()
        assert app.test_cli_runner().invoke(args=["connector", "migrate"]).exit_code == 0  # made there, privately
        assert mistyped.stat().st_mode & 0o777 == 0o600 and mistyped.parent.stat().st_mode & 0o777 == 0o700
    finally:
        app.extensions["connector"].stop()


def test_the_preview_command_before_any_database_answers_and_makes_no_file(tmp_path, caplog):
    # The dry run read the observed waits, and reading made an empty database at the path: a
    # mistyped one was then no longer named by `check`.
    mistyped = tmp_path / "instanse" / "connector.db"
    app = create_app({"database_url": f"sqlite:///{mistyped}"})
    try:
        packet = Path(__file__).parent.parent / "examples" / "handoff-full.json"
        with caplog.at_level(logging.WARNING):
            result = app.test_cli_runner().invoke(args=["connector", "preview", str(packet)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["targets"] == ["preview"]
        assert not mistyped.parent.exists()
        assert not [r for r in caplog.records if "observed wait" in r.getMessage()]
    finally:
        app.extensions["connector"].stop()


def test_the_preview_command_decides_at_the_moment_asked_and_refuses_a_bad_one(make_app, tmp_path):
    app = make_app()
    packet = tmp_path / "billing.json"
    packet.write_text(json.dumps({**json.loads((Path(__file__).parent.parent / "examples" / "handoff-minimal.json")
                                               .read_text()), "intent": {"name": "billing.refund"}}))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["connector", "preview", "--at", "2026-12-25T10:00:00+01:00", str(packet)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["decided_at"] == "2026-12-25T10:00:00+01:00" and shown["assignment"]["out_of_hours"]
    refused = runner.invoke(args=["connector", "preview", "--at", "2026-12-25 10:00", str(packet)])
    assert refused.exit_code == 1 and "RFC 3339" in refused.output


def test_the_preview_command_refuses_a_packet_the_service_would_refuse_as_too_large(make_app, tmp_path):
    # The dry run showed a whole preview of a packet every POST of it answered 413.
    packet = json.loads((Path(__file__).parent.parent / "examples" / "handoff-minimal.json").read_text())
    path = tmp_path / "big.json"
    path.write_text(json.dumps({**packet, "metadata": {"padding": "x" * 3000}}))
    result = make_app(max_body_bytes=2048).test_cli_runner().invoke(args=["connector", "preview", str(path)])
    assert result.exit_code == 1 and "larger than 2048 bytes (CONNECTOR_MAX_BODY_BYTES)" in result.output
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    answered = make_app(max_body_bytes=2048).test_client().post("/v1/preview", data=path.read_bytes(), headers=admin)
    assert answered.status_code == 413 and answered.get_json()["errors"] == {"(body)": ["at most 2048 bytes"]}


def test_a_database_at_an_older_release_names_both_revisions_and_migrate_fixes_it(fresh_app):
    db = fresh_app.extensions["connector"].db
    config = _alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    runner = fresh_app.test_cli_runner()
    result = runner.invoke(args=["connector", "deliveries"])
    assert result.exit_code == 1
    assert "its schema is at revision 0006; this code needs 0013. Run `flask" in result.output
    assert runner.invoke(args=["connector", "migrate"]).exit_code == 0
    after = runner.invoke(args=["connector", "deliveries"])
    assert after.exit_code == 0 and after.output.strip() == "0 deliveries"


def test_check_says_the_schema_is_behind_as_a_warning_since_the_first_start_migrates(fresh_app):
    result = fresh_app.test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    assert "database: reachable (sqlite), schema not created yet" in result.output
    assert ("warning: the database cannot be used by this code: it holds no connector schema yet. Run "
            "`flask --app wsgi connector migrate` (starting the service with gunicorn runs it too)") in result.output


def test_an_unreachable_database_is_named_with_the_drivers_reason(tmp_path):
    app = create_app({"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/test"})
    try:
        runner = app.test_cli_runner()
        listed = runner.invoke(args=["connector", "deliveries"])
        assert listed.exit_code == 1
        assert listed.output.startswith("Error: the database cannot be reached: OperationalError: ")
        assert "127.0.0.1" in listed.output and listed.output.rstrip().endswith("(CONNECTOR_DATABASE_URL)")
        assert "sqlalche.me" not in listed.output  # the driver's first line only, not SQLAlchemy's link
        checked = runner.invoke(args=["connector", "check"])
        assert checked.exit_code == 1
        assert "problem: CONNECTOR_DATABASE_URL: database unreachable (OperationalError: " in checked.output
        assert "Traceback" not in listed.output + checked.output
    finally:
        app.extensions["connector"].stop()


def test_a_schema_from_a_newer_release_is_a_problem_that_migrate_cannot_fix(fresh_app):
    from sqlalchemy import text

    db = fresh_app.extensions["connector"].db
    db.upgrade()
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    runner = fresh_app.test_cli_runner()
    listed = runner.invoke(args=["connector", "deliveries"])
    assert listed.exit_code == 1
    assert listed.output.strip() == ("Error: the database cannot be used by this code: its schema is at revision "
                                     "0099, which this code does not know: a newer release made it; run that "
                                     "release, or restore a backup taken before it")
    checked = runner.invoke(args=["connector", "check"])
    assert checked.exit_code == 1 and "schema from a newer release" in checked.output
    assert "problem: the database cannot be used by this code: its schema is at revision 0099" in checked.output
    # migrate (and the service's start) said it with Alembic's traceback: "Can't locate revision".
    migrated = runner.invoke(args=["connector", "migrate"])
    assert migrated.exit_code == 1 and migrated.output.startswith(
        "Error: CONNECTOR_DATABASE_URL: the database cannot be used by this code: its schema is at revision 0099")
    assert "Traceback" not in migrated.output


def test_migrate_says_in_one_line_that_the_database_is_out_of_reach():
    app = create_app({"database_url": "postgresql+psycopg://connector:secret-pw@127.0.0.1:1/connector"})
    try:
        result = app.test_cli_runner().invoke(args=["connector", "migrate"])
    finally:
        app.extensions["connector"].stop()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: CONNECTOR_DATABASE_URL: the database could not be migrated: "
                                    "OperationalError: connection failed")
    assert "secret-pw" not in result.output


def test_looking_at_the_schema_or_pinging_takes_no_write_lock(tmp_path):
    """SQLite's BEGIN IMMEDIATE would queue a readiness probe or a CLI command behind the service's
    writers (and block them); with a writer holding the lock both still answer."""
    import sqlite3
    import threading

    app = create_app({"database_url": f"sqlite:///{tmp_path}/c.db"})
    db = app.extensions["connector"].db
    db.upgrade()
    writer = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    answered: list[object] = []
    looking = threading.Thread(target=lambda: answered.extend([db.schema_gap(), db.ping()]), daemon=True)
    try:
        looking.start()
        looking.join(10)  # with the lock wanted, both would wait out busy_timeout (30 s), then fail
        assert answered == [None, None]
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        looking.join(40)
        app.extensions["connector"].stop()


def test_a_database_that_cannot_be_made_is_reported_not_a_traceback(tmp_path):
    (tmp_path / "a-file").write_text("")
    app = create_app({"database_url": f"sqlite:///{tmp_path}/a-file/c.db"})  # the directory cannot exist
    try:
        checked = app.test_cli_runner().invoke(args=["connector", "check"])
        assert checked.exit_code == 1
        assert "problem: CONNECTOR_DATABASE_URL: database unreachable (OperationalError: unable to open database " \
               "file)" in checked.output
    finally:
        app.extensions["connector"].stop()


def test_the_worker_waits_for_a_database_that_is_not_up_yet_and_stops_on_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "PROMETHEUS_", "FLASK_"))},
           "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1",
           "CONNECTOR_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/test"}
    worker = subprocess.Popen([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "connector", "worker"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stderr is not None
        said = worker.stderr.readline()
        assert said.startswith("the database cannot be reached: OperationalError: ") and \
            said.rstrip().endswith("(CONNECTOR_DATABASE_URL); trying again in 5 s"), said
        assert worker.poll() is None  # still waiting, not stopped
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    assert worker.returncode == 0


def test_making_a_new_sqlite_database_is_a_warning_naming_it_once(tmp_path, caplog):
    """A mistyped path (`instanse/`) started the service on a new, empty database — "schema at head",
    ready — with the real one's pending deliveries and idempotency keys stranded, and not a word."""
    mistyped = tmp_path / "instanse" / "connector.db"
    made = []
    for _ in range(2):  # two starts: only the first makes the file
        app = create_app({"database_url": f"sqlite:///{mistyped}"})
        try:
            with caplog.at_level(logging.WARNING, logger="connector.db"):
                caplog.clear()
                app.extensions["connector"].db.migrate()  # as gunicorn's master does at start
            made.append([(r.levelname, r.getMessage(), r.path) for r in caplog.records if r.name == "connector.db"])
        finally:
            app.extensions["connector"].stop()
    assert made == [[("WARNING", "no SQLite database was there: a new, empty one is made; if one exists elsewhere, "
                                 "CONNECTOR_DATABASE_URL does not name it", str(mistyped))], []]


def test_the_development_server_says_at_start_that_the_database_needs_migrating(tmp_path):
    """`flask run` does not migrate: on a database never migrated it answered every request 503
    "Retry shortly", with only `no such table` in the log."""
    import os
    import subprocess
    import sys
    import time

    from bench.procs import free_port

    root = Path(__file__).parents[1]
    sqlite3.connect(tmp_path / "c.db").close()  # there, never migrated
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(root), "CONNECTOR_ENV_FILE": "",
           "CONNECTOR_DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        server = subprocess.Popen([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "run", "--port",
                                   str(free_port())], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "Running on" not in log.read_text() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    said = [json.loads(line) for line in log.read_text().splitlines() if '"connector.cli"' in line]
    assert [(line["level"], line["message"], line["reason"]) for line in said] == [
        ("WARNING", "the database cannot be used by this code: requests that use it fail (500) until it is migrated",
         "it holds no connector schema yet. Run `flask --app wsgi connector migrate` (starting the service with "
         "gunicorn runs it too)")], log.read_text()


def test_the_quickstarts_first_database_is_made_without_a_warning(tmp_path, caplog, monkeypatch):
    # A review: the quickstart's first start (CONNECTOR_DATABASE_URL unset) read "WARNING no SQLite
    # database was there … CONNECTOR_DATABASE_URL does not name it" — a problem where there is none.
    from connector.db import Database
    from connector.settings import DEFAULT_DATABASE_URL

    db = Database(DEFAULT_DATABASE_URL, str(tmp_path))  # under tmp_path/instance/, as under the project
    try:
        with caplog.at_level(logging.INFO, logger="connector.db"):
            db.migrate()
    finally:
        db.engine.dispose()
    assert (tmp_path / "instance" / "connector.db").exists()
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "connector.db"]
    assert ("INFO", "a new SQLite database is made at the default path (CONNECTOR_DATABASE_URL unset)") in said
    assert not [level for level, _ in said if level == "WARNING"]
