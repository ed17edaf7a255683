"""Statements run on the driver's cursor (`connector.driver_cursor`) store and return what
SQLAlchemy's own execution would, on SQLite and on PostgreSQL, and fail the same way."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from connector import driver_cursor
from connector.models import Delivery, Handoff

_DELIVERIES = Delivery.__table__
_RETURNING = insert(_DELIVERIES).returning(_DELIVERIES.c.id, _DELIVERIES.c.next_attempt_at, _DELIVERIES.c.receipt)
_FINISH = (update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("delivery_id"))
           .values(state=bindparam("state"), attempts=_DELIVERIES.c.attempts + 1, lease_owner=None,
                   receipt=bindparam("receipt"), vendor_reply=bindparam("vendor_reply"), updated_at=bindparam("now")))
AT = dt.datetime(2026, 11, 21, 9, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def handoff_row(handoff_id: str) -> dict:
    return dict(id=handoff_id, bot_id="support-bot", conversation_id=f"c-{handoff_id}", idempotency_key=handoff_id,
                request_hash="0" * 64, message_id=None, packet={"text": "héllo", "n": [1, 2.5, None], "ok": True},
                assignment={"team": "billing"}, customer_message={"text": "hi"}, estimated_wait_seconds=60,
                created_at=AT, updated_at=AT)


def delivery_row(handoff_id: str, target: str = "zendesk") -> dict:
    return dict(handoff_id=handoff_id, target=target, position=0, state="pending", attempts=0, rate_limited=0,
                outcome_unknown=False, next_attempt_at=AT, window_started_at=AT, lease_owner="me", lease_expires_at=None,
                receipt={"delivered": ["transcript"]}, created_at=AT, updated_at=AT)


def test_rows_written_on_the_cursor_read_back_like_rows_sqlalchemy_wrote(any_db_app):
    db = any_db_app.extensions["connector"].db
    with db.writing() as connection:
        connection.execute(insert(Handoff.__table__), handoff_row("hnd_core"))
        driver_cursor.run(connection, insert(Handoff.__table__), handoff_row("hnd_cursor"))
        connection.execute(insert(_DELIVERIES), delivery_row("hnd_core"))
        driver_cursor.run(connection, insert(_DELIVERIES), delivery_row("hnd_cursor"))
    with db.reading() as session:
        by_id = {h.id: h for h in session.scalars(select(Handoff))}
        core, cursor = by_id["hnd_core"], by_id["hnd_cursor"]
        for column in ("packet", "assignment", "customer_message", "estimated_wait_seconds", "created_at", "message_id"):
            assert getattr(cursor, column) == getattr(core, column), column
        assert cursor.created_at == AT and cursor.created_at.tzinfo is not None
        [d_core] = core.deliveries
        [d_cursor] = cursor.deliveries
        for column in ("state", "attempts", "outcome_unknown", "next_attempt_at", "lease_expires_at", "receipt",
                       "payload"):
            assert getattr(d_cursor, column) == getattr(d_core, column), column


def test_returned_values_are_converted_by_their_columns_types(any_db_app):
    db = any_db_app.extensions["connector"].db
    with db.writing() as connection:
        connection.execute(insert(Handoff.__table__), handoff_row("hnd_r"))
        ran = driver_cursor.run(connection, _RETURNING, delivery_row("hnd_r"))
    [(delivery_id, next_attempt_at, receipt)] = ran.rows
    assert isinstance(delivery_id, int) and ran.rowcount == 1
    assert next_attempt_at == AT and next_attempt_at.tzinfo is not None  # aware, as the ORM gives it
    assert receipt == {"delivered": ["transcript"]}


def test_an_update_counts_its_rows_and_stores_literals_and_json_null_as_sqlalchemy_does(any_db_app):
    db = any_db_app.extensions["connector"].db
    with db.writing() as connection:
        connection.execute(insert(Handoff.__table__), handoff_row("hnd_u"))
        [(delivery_id, _, _)] = driver_cursor.run(connection, _RETURNING, delivery_row("hnd_u")).rows
        done = {"delivery_id": delivery_id, "state": "created", "receipt": {"a": 1}, "vendor_reply": None,
                "now": AT}
        assert driver_cursor.run(connection, _FINISH, done).rowcount == 1
        assert driver_cursor.run(connection, _FINISH, {**done, "delivery_id": -1}).rowcount == 0
    with db.reading() as session:
        row = session.get(Delivery, delivery_id)
        assert (row.state, row.attempts, row.lease_owner, row.receipt, row.vendor_reply) == \
            ("created", 1, None, {"a": 1}, None)


def test_a_statement_needing_a_python_side_default_is_refused_naming_the_column(any_db_app):
    db = any_db_app.extensions["connector"].db
    row = delivery_row("hnd_x")
    del row["created_at"]
    with db.writing() as connection, pytest.raises(ValueError, match="created_at"):
        driver_cursor.run(connection, insert(_DELIVERIES), row)


def test_a_constraint_violation_is_sqlalchemys_error_without_the_values(any_db_app):
    db = any_db_app.extensions["connector"].db
    with db.writing() as connection:
        driver_cursor.run(connection, insert(Handoff.__table__), handoff_row("hnd_dup"))
    with pytest.raises(IntegrityError) as raised, db.writing() as connection:
        driver_cursor.run(connection, insert(Handoff.__table__), handoff_row("hnd_dup"))
    assert "héllo" not in str(raised.value)  # the packet stays out of the message (and the logs)


def test_each_statement_is_compiled_once_per_dialect_and_parameter_names(any_db_app):
    db = any_db_app.extensions["connector"].db
    statement = select(_DELIVERIES.c.id).where(_DELIVERIES.c.state == bindparam("state"))
    with db.writing() as connection:
        driver_cursor.run(connection, statement, {"state": "pending"})
        before = driver_cursor._prepare.cache_info()
        for _ in range(3):
            driver_cursor.run(connection, statement, {"state": "pending"})
        after = driver_cursor._prepare.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (3, 0)


def test_a_driver_only_transaction_commits_on_success_and_rolls_back_on_error(any_db_app):
    """`Database.statements()`: a unit of work on a pooled driver connection, without SQLAlchemy's
    Connection; what it wrote is kept only when the block ends normally."""
    db = any_db_app.extensions["connector"].db
    with db.statements() as connection:
        driver_cursor.run(connection, insert(Handoff.__table__), handoff_row("hnd_kept"))
    with pytest.raises(RuntimeError), db.statements() as connection:
        driver_cursor.run(connection, insert(Handoff.__table__), handoff_row("hnd_undone"))
        raise RuntimeError("after the insert")
    with pytest.raises(IntegrityError), db.statements() as connection:  # the driver's error, as SQLAlchemy's
        driver_cursor.run(connection, insert(Handoff.__table__), handoff_row("hnd_kept"))
    with db.reading() as session:
        assert list(session.scalars(select(Handoff.id).order_by(Handoff.id))) == ["hnd_kept"]


def test_a_connection_lost_inside_a_driver_only_transaction_is_invalidated_not_pooled(any_db_app, caplog):
    """The database drops the connection mid-transaction: the error says so, the connection is
    thrown away (not rolled back and returned to the pool, which logged a reset failure), and the
    next transaction gets a working one."""
    from sqlalchemy.exc import DBAPIError

    db = any_db_app.extensions["connector"].db
    with pytest.raises(DBAPIError) as raised, db.statements() as connection:
        connection.connection.dbapi_connection.close()  # as if the server had gone
        driver_cursor.run(connection, insert(Handoff.__table__), handoff_row("hnd_lost"))
    assert raised.value.connection_invalidated
    with db.statements() as connection:
        driver_cursor.run(connection, insert(Handoff.__table__), handoff_row("hnd_after"))
    with db.reading() as session:
        assert list(session.scalars(select(Handoff.id))) == ["hnd_after"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.records
