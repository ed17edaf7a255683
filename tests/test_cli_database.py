"""The commands that read or write the database say what to do when it cannot be used — not
migrated yet, at another release's schema, unreachable — in one line, not a traceback."""

from __future__ import annotations

import pytest
from alembic import command

from connector import create_app
from connector.db import _alembic_config

COMMANDS = [["deliveries"], ["callbacks"], ["replay", "--all-dead"], ["purge", "--days", "30", "--dry-run"],
            ["worker"]]


@pytest.fixture
def fresh_app(tmp_path):
    """An app on a database nothing has migrated (before the first `make run`)."""
    app = create_app({"database_url": f"sqlite:///{tmp_path}/new.db"})
    yield app
    app.extensions["connector"].stop()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[0])
def test_a_command_on_a_database_never_migrated_says_to_migrate(fresh_app, args):
    result = fresh_app.test_cli_runner().invoke(args=["connector", *args])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: the database cannot be used yet: it holds no connector schema yet. Run "
        "`flask --app wsgi connector migrate` (starting the service with gunicorn runs it too).")


def test_a_database_at_an_older_release_names_both_revisions_and_migrate_fixes_it(fresh_app):
    db = fresh_app.extensions["connector"].db
    config = _alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    runner = fresh_app.test_cli_runner()
    result = runner.invoke(args=["connector", "deliveries"])
    assert result.exit_code == 1
    assert "its schema is at revision 0006; this code needs 0008. Run `flask" in result.output
    assert runner.invoke(args=["connector", "migrate"]).exit_code == 0
    after = runner.invoke(args=["connector", "deliveries"])
    assert after.exit_code == 0 and after.output.strip() == "0 deliveries"


def test_check_says_the_schema_is_behind_as_a_warning_since_the_first_start_migrates(fresh_app):
    result = fresh_app.test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    assert "database: reachable (sqlite), schema behind" in result.output
    assert ("warning: the database cannot be used yet: it holds no connector schema yet; "
            "`flask --app wsgi connector migrate` or the service's first start brings it up to date") in result.output


def test_an_unreachable_database_is_named_with_the_drivers_reason(tmp_path):
    app = create_app({"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/test"})
    try:
        runner = app.test_cli_runner()
        listed = runner.invoke(args=["connector", "deliveries"])
        assert listed.exit_code == 1
        assert listed.output.startswith("Error: the database cannot be reached: OperationalError: ")
        assert "127.0.0.1" in listed.output and listed.output.rstrip().endswith("(CONNECTOR_DATABASE_URL)")
        checked = runner.invoke(args=["connector", "check"])
        assert checked.exit_code == 1
        assert "problem: CONNECTOR_DATABASE_URL: database unreachable (OperationalError: " in checked.output
        assert "Traceback" not in listed.output + checked.output
    finally:
        app.extensions["connector"].stop()
