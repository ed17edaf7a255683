"""Storing a group of new handoffs in one transaction (`handoff_store.store`), on SQLite and
PostgreSQL: repeats skipped, pauses and conversation links decided per delivery, a bad row failing
only its own request, and the same few statements whatever the group's size."""

from __future__ import annotations

import datetime as dt
import json
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import event, select
from ulid import ULID

from connector import handoff_store
from connector.models import ConversationLink, Delivery, Handoff, TargetPause, utcnow
from tests.conftest import auth
from tests.factories import minimal_packet


def new(services, *, key: str | None = None, conversation: str = "conv-1", targets=("preview",),
        bot_id: str | None = "support-bot") -> handoff_store.NewHandoff:
    now = utcnow()
    hid = f"hnd_{ULID()}"
    row = dict(id=hid, bot_id=bot_id, conversation_id=conversation, idempotency_key=key or hid, request_hash="0" * 64,
               message_id=None, packet={"n": 1}, assignment={}, customer_message="soon", estimated_wait_seconds=60,
               created_at=now, updated_at=now)
    return handoff_store.new_handoff(row, list(targets), services.outbox.new_token(), now + dt.timedelta(seconds=60))


def count_statements(services):
    seen: list[str] = []

    def before(conn, cursor, statement, *args):
        seen.append(" ".join(statement.split()[:3]))

    event.listen(services.db.engine, "before_cursor_execute", before)
    return seen, lambda: event.remove(services.db.engine, "before_cursor_execute", before)


def test_a_group_is_written_by_the_same_few_statements_whatever_its_size(any_db_app):
    services = any_db_app.extensions["connector"]
    group = [new(services, conversation=f"conv-{n}", targets=("preview", "preview2")) for n in range(20)]
    for item in group:  # two deliveries each; "preview2" needs no adapter to be stored
        item.deliveries[1]["target"] = "other"
    seen, stop = count_statements(services)
    try:
        results = handoff_store.store(services.db, group)
    finally:
        stop()
    assert all(isinstance(r, handoff_store.Stored) for r in results)
    writes = [s for s in seen if s.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert len(writes) == 3, seen  # handoffs, deliveries, links: one statement each for 20 handoffs
    stored = results[0]
    assert [d.target for d in stored.handoff.deliveries] == ["preview", "other"]
    assert stored.prepared == {d.id for d in stored.handoff.deliveries}  # first of their conversations
    with services.db.reading() as session:
        assert session.query(Handoff).count() == 20
        assert session.query(Delivery).count() == 40
        assert session.query(ConversationLink).count() == 40


def test_a_handoff_and_a_batch_of_messages_stored_together_each_keep_their_own_columns(any_db_app):
    # Grouped with a handoff's row first, a batch lost its `follows_id` (stored as a handoff of its
    # own); first, it failed the group with a StatementError, every request in it a 500 (a review).
    services = any_db_app.extensions["connector"]
    [parent] = handoff_store.store(services.db, [new(services)])
    for seq, (handoff_key, batch_key) in enumerate((("a", "b"), ("d", "c")), start=1):  # stored in key order
        handoff, batch = new(services, key=handoff_key), new(services, key=batch_key)
        batch.row.update(follows_id=parent.handoff.id, follow_up_seq=seq)
        assert all(isinstance(r, handoff_store.Stored) for r in handoff_store.store(services.db, [handoff, batch]))
        with services.db.reading() as session:
            stored = session.get(Handoff, batch.row["id"])
            assert (stored.follows_id, stored.follow_up_seq) == (parent.handoff.id, seq)
            assert session.get(Handoff, handoff.row["id"]).follows_id is None


def test_a_repeat_in_the_same_group_or_of_a_stored_handoff_comes_back_as_none(any_db_app):
    services = any_db_app.extensions["connector"]
    [earlier] = handoff_store.store(services.db, [new(services, key="k-1")])
    assert isinstance(earlier, handoff_store.Stored)
    results = handoff_store.store(services.db, [new(services, key="k-2", conversation="c2"),
                                                new(services, key="k-2", conversation="c2"),
                                                new(services, key="k-1")])
    assert isinstance(results[0], handoff_store.Stored)
    assert results[1:] == [None, None]
    with services.db.reading() as session:
        assert sorted(session.scalars(select(Handoff.idempotency_key))) == ["k-1", "k-2"]
        assert session.query(Delivery).count() == 2  # no deliveries for the repeats


def test_a_paused_target_s_delivery_is_stored_held_and_not_prepared(any_db_app):
    services = any_db_app.extensions["connector"]
    until = utcnow() + dt.timedelta(seconds=90)
    with services.db.session() as session:
        session.add(TargetPause(target="held", until=until, reason="429"))
    item = new(services, targets=("preview", "held"))
    [stored] = handoff_store.store(services.db, [item])
    live, held = stored.handoff.deliveries
    assert stored.prepared == {live.id}
    assert (held.lease_owner, held.lease_expires_at) == (None, None)
    with services.db.reading() as session:
        row = session.get(Delivery, held.id)
        assert row.lease_owner is None
        assert abs((row.next_attempt_at - until).total_seconds()) < 0.01
        assert session.get(Delivery, live.id).lease_owner == live.lease_owner is not None


def test_only_the_first_handoff_of_a_conversation_takes_its_link(any_db_app):
    services = any_db_app.extensions["connector"]
    first, second = new(services, conversation="same"), new(services, conversation="same")
    results = handoff_store.store(services.db, [first, second])
    assert [len(r.prepared) for r in results] == [1, 0]  # the second checks the link in its attempt
    with services.db.reading() as session:
        [link] = session.scalars(select(ConversationLink))
        assert link.owner_delivery_id == results[0].handoff.deliveries[0].id


def test_a_row_the_database_refuses_fails_only_its_own_request(any_db_app):
    services = any_db_app.extensions["connector"]
    good, bad, other = new(services, conversation="a"), new(services, conversation="b", bot_id=None), \
        new(services, conversation="c")
    results = handoff_store.store(services.db, [good, bad, other])
    assert isinstance(results[0], handoff_store.Stored) and isinstance(results[2], handoff_store.Stored)
    assert isinstance(results[1], Exception) and "bot_id" in str(results[1]).lower()
    with services.db.reading() as session:
        assert session.query(Handoff).count() == 2


def test_concurrent_requests_are_stored_in_groups_and_each_gets_its_own_answer(any_db_app, monkeypatch):
    services = any_db_app.extensions["connector"]
    sizes: list[int] = []
    gate = threading.Event()
    real = handoff_store.store

    def store(db, group):
        sizes.append(len(group))
        gate.wait(5)  # the first group is held open so that the others queue behind it
        return real(db, group)

    monkeypatch.setattr(handoff_store, "store", store)

    def post(n: int):
        packet = minimal_packet()
        packet["conversation"]["id"] = f"conv-{n}"
        return any_db_app.test_client().post("/v1/handoffs", data=json.dumps(packet), content_type="application/json",
                                             headers={**auth(), "Idempotency-Key": f"key-{n}"})

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(post, n) for n in range(12)]
        while sum(sizes) + len(services.store_handoff._queue) < 12:
            threading.Event().wait(0.01)
        gate.set()
        answers = [f.result(30) for f in futures]
    assert [a.status_code for a in answers] == [201] * 12
    assert sorted(a.get_json()["conversation_id"] for a in answers) == sorted(f"conv-{n}" for n in range(12))
    assert len({a.get_json()["id"] for a in answers}) == 12
    assert len(sizes) < 12 and sum(sizes) == 12  # some requests shared a transaction


def test_when_the_one_at_a_time_rewrite_fails_midway_each_request_still_gets_its_own_answer(any_db_app, monkeypatch):
    """The rewrite after a refused row commits one handoff per transaction: a database error on
    the third must not tell the first two (already stored) that nothing was recorded."""
    from sqlalchemy.exc import OperationalError

    services = any_db_app.extensions["connector"]
    real = handoff_store._write

    def write(db, group):
        if len(group) == 1 and group[0].row["conversation_id"] == "d":
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(db, group)

    monkeypatch.setattr(handoff_store, "_write", write)
    group = [new(services, conversation="a"), new(services, conversation="b"),
             new(services, conversation="c", bot_id=None), new(services, conversation="d")]
    results = handoff_store.store(services.db, group)
    assert [type(r).__name__ for r in results] == ["Stored", "Stored", "IntegrityError", "OperationalError"]
    with services.db.reading() as session:
        assert sorted(session.scalars(select(Handoff.conversation_id))) == ["a", "b"]


def test_the_stored_handoff_in_memory_says_what_the_database_holds(any_db_app):
    """The request goes on with the handoff it wrote, without reading it back: every column as the
    database has it (those it did not write are None), deliveries in order, with their ids."""
    services = any_db_app.extensions["connector"]
    [stored] = handoff_store.store(services.db, [new(services, targets=("preview", "other"))])
    with services.db.reading() as session:
        handoff = session.get(Handoff, stored.handoff.id)
        expected = [{c: getattr(row, c) for c in row.__mapper__.column_attrs.keys()}
                    for row in (handoff, *handoff.deliveries)]
    in_memory = [{c: getattr(row, c) for c in expected[0]} for row in (stored.handoff,)] + [
        {c: getattr(row, c) for c in expected[1]} for row in stored.handoff.deliveries]
    assert in_memory == expected
