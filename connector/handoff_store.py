"""Storing new handoffs: rows built by the request, written in groups (`GroupCommit`).

Everything that can be done before the write lock is done by the request thread (`new_handoff`):
the decision, the ids, the rows. A group is then written by a fixed handful of multi-row
statements, whatever its size: the handoffs (a repeat is skipped by the unique keys, not raised),
their deliveries, and the conversations' links. Inside the same transaction, and once per group:

- a target paused by its vendor (429) has its deliveries stored *held* until the pause ends, with
  no lease, for the loop to take then;
- every other delivery takes its conversation's link when the conversation has none yet (its first
  handoff, the usual case): such a delivery is *prepared* and its attempt starts at the vendor.
  A delivery whose conversation already has a link checks it in its own attempt (`Outbox`);
- a packet whose bot asked for `queued` status callbacks gets its row (`callbacks`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Connection, Executable, bindparam, insert, select
from sqlalchemy.exc import DataError, IntegrityError

from . import callbacks, driver_cursor
from .db import Database
from .models import ConversationLink, Delivery, Handoff, TargetPause, utcnow

_HANDOFFS, _DELIVERIES = Handoff.__table__, Delivery.__table__
_LINKS, _PAUSES = ConversationLink.__table__, TargetPause.__table__
_PAUSES_RUNNING = select(_PAUSES.c.target, _PAUSES.c.until).where(_PAUSES.c.until > bindparam("now"))
_HANDOFF_COLUMNS = dict.fromkeys(Handoff.__mapper__.column_attrs.keys())
_DELIVERY_COLUMNS = dict.fromkeys(Delivery.__mapper__.column_attrs.keys())
_NEW_DELIVERIES = insert(_DELIVERIES).returning(_DELIVERIES.c.id, _DELIVERIES.c.handoff_id, _DELIVERIES.c.position)
# A follow-up's handoff, still there, kept there until the follow-up is committed: on PostgreSQL a
# key-share lock, which retention's FOR UPDATE (`retention.purge_chunk`) skips or waits for; on
# SQLite the write lock serialises the two anyway, and no FOR clause is emitted.
_PARENT = (select(_HANDOFFS.c.id).where(_HANDOFFS.c.id == bindparam("parent"))
           .with_for_update(read=True, key_share=True))


class HandoffGone(LookupError):
    """Messages came for a handoff retention forgot after the request found it (`retention`): a
    batch is delivered with its handoff's context, so alone it would reach the agent as a brief
    with no customer, no reason, no transcript. Nothing is stored. Its argument: that handoff's id."""


@dataclass
class NewHandoff:
    """One handoff's rows, as the request built them (ids, lease and times included)."""

    row: dict[str, Any]
    deliveries: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Stored:
    """A handoff as written, with its deliveries, and the ids of those prepared. The handoff and its
    deliveries carry their rows' columns as attributes, like `Handoff` and `Delivery` (`_stored`),
    but they are not ORM instances: no relationship other than `handoff.deliveries`, no session."""

    handoff: Handoff
    prepared: set[int]


def new_handoff(row: dict[str, Any], targets: list[str], token: str, lease_until: dt.datetime,
                leased: int | None = None) -> NewHandoff:
    """Rows for `row`'s handoff and one delivery per target. The first `leased` (default: all) are
    claimed by the request under `token`: the background loop must not take a fresh delivery from
    under the request thread, and if this process dies the lease expires and another takes over.
    The others (no free delivery thread) are stored due and unclaimed, for the loop."""
    now = row["created_at"]
    leased = len(targets) if leased is None else leased
    return NewHandoff(row, [
        dict(handoff_id=row["id"], target=name, position=index, state="pending", attempts=0, rate_limited=0,
             outcome_unknown=False, next_attempt_at=now, window_started_at=now,
             lease_owner=token if index < leased else None, lease_expires_at=lease_until if index < leased else None,
             created_at=now, updated_at=now)
        for index, name in enumerate(targets)
    ])


def store(db: Database, group: list[NewHandoff]) -> list[Stored | None | BaseException]:
    """Write `group` in one transaction; None for a handoff that repeats a stored one (same bot and
    Idempotency-Key or signed message id, stored before or earlier in this group), `HandoffGone`
    for a follow-up whose handoff is no longer there.

    A row the database refuses for another reason would fail the whole group, so the group is then
    written one handoff at a time: only the request that sent it gets the error.
    """
    try:
        return list(_write(db, group))
    except (IntegrityError, DataError):
        if len(group) == 1:
            raise
    results: list[Stored | None | BaseException] = []
    for new in group:
        try:
            results.extend(_write(db, [new]))
        except Exception as err:  # each request its own answer: some of the group may be stored already
            results.append(err)
    return results


def _write(db: Database, group: list[NewHandoff]) -> list[Stored | None | BaseException]:
    # Rows go in key order: two PostgreSQL workers inserting overlapping keys in opposite orders
    # could otherwise deadlock on the unique indexes.
    ordered = sorted((new.row for new in group), key=lambda row: (row["bot_id"] or "", row["idempotency_key"]))
    # Only statements run while the write lock is held; the ORM objects the request goes on with
    # are built after the commit. SQLite has one writer for all workers: in the intake benchmark
    # the lock was held 80 % of the time, each turn ~4 ms at p50 where one handoff's transaction
    # alone takes ~0.8 ms, because the holder's Python work waited for its worker's GIL.
    # One handoff (a quiet moment: its latency counts) runs on the driver alone; a group needs
    # SQLAlchemy's multi-row statements (`_rows`).
    with db.statements() if len(group) == 1 else db.writing() as connection:
        now = utcnow()
        gone = _parents_gone(connection, ordered)
        if gone:
            ordered = [row for row in ordered if row.get("follows_id") not in gone]
        new_handoffs = db.insert_or_skip(_HANDOFFS, ("id",))
        inserted = {id_ for id_, in _rows(connection, new_handoffs, ordered)} if ordered else set()
        fresh = [new for new in group if new.row["id"] in inserted]
        if not fresh:
            return [_missed(new, gone) for new in group]
        paused = dict(driver_cursor.run(connection, _PAUSES_RUNNING, {"now": now}).rows)
        rows = [row for new in fresh for row in new.deliveries]
        for row in rows:
            until = paused.get(row["target"])
            if until is not None:  # held: the loop attempts it when the pause ends
                row.update(next_attempt_at=until, lease_owner=None, lease_expires_at=None)
        ids = {(handoff_id, position): delivery_id
               for delivery_id, handoff_id, position in _rows(connection, _NEW_DELIVERIES, rows)}
        links = sorted(
            (dict(ConversationLink.key(new.row["bot_id"], new.row["conversation_id"], row["target"]),
                  owner_delivery_id=ids[(row["handoff_id"], row["position"])], created_at=now, updated_at=now)
             for new in fresh for row in new.deliveries if row["lease_owner"] is not None),
            key=lambda link: (link["bot_id"], link["conversation_id"], link["target"]))
        taken: set[int] = set()
        if links:
            new_links = db.insert_or_skip(_LINKS, ("owner_delivery_id",))
            taken.update(owner for owner, in _rows(connection, new_links, links))
        for new in fresh:  # the bots that asked to hear `queued` (contract §6)
            queued = callbacks.queued(new.row, new.deliveries, now)
            if queued is not None:
                callbacks.add(connection, db, queued)
    stored = {new.row["id"]: _stored(new, ids, taken) for new in fresh}
    return [stored.get(new.row["id"]) or _missed(new, gone) for new in group]


def _parents_gone(connection: Connection | driver_cursor.Pooled, rows: list[dict[str, Any]]) -> set[str]:
    """The handoffs the follow-ups among `rows` follow that are no longer stored (usually none: a
    group holds one follow-up, or none)."""
    parents = sorted({row["follows_id"] for row in rows if row.get("follows_id")})
    return {parent for parent in parents if not driver_cursor.run(connection, _PARENT, {"parent": parent}).rows}


def _missed(new: NewHandoff, gone: set[str]) -> HandoffGone | None:
    """A row not written: its handoff gone, or else a repeat (None)."""
    parent = new.row.get("follows_id")
    return HandoffGone(parent) if parent in gone else None


def _rows(connection: Connection | driver_cursor.Pooled, statement: Executable,
          params: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What `statement` returns for `params`. One handoff (`Pooled`) has a row or a few (one per
    target): each on the driver's cursor (`driver_cursor`, the quiet path, where latency counts).
    A group: one multi-row statement (SQLAlchemy's insertmanyvalues)."""
    if isinstance(connection, driver_cursor.Pooled) or len(params) == 1:
        return [row for one in params for row in driver_cursor.run(connection, statement, one).rows]
    return [tuple(row) for row in connection.execute(statement, _uniform(params))]


def _uniform(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row with the group's every key, None where a row has none (a column it leaves NULL).
    A multi-row statement takes its columns from the first row: a handoff's row (no `follows_id`)
    before a batch of messages' dropped the batch's `follows_id` — stored as a handoff of its own,
    posted as a note naming no customer — and a batch's first failed the whole group (a review)."""
    keys = dict.fromkeys(key for row in params for key in row)
    if all(len(row) == len(keys) for row in params):
        return params
    return [{**dict.fromkeys(keys), **row} for row in params]


def _stored(new: NewHandoff, ids: dict[tuple[str, int], int], prepared: set[int]) -> Stored:
    """The request's handoff as written, with its delivery ids: every column of its rows as a plain
    attribute (the ones not written are None, as the database has them). Not ORM instances: those
    cost ~0.13 ms per one-target handoff to build, warm, on the path the bot waits on, and nothing
    adds these to a session: they are read (`Outbox.run_delivery`, `answers.render`) and let go."""
    deliveries = [SimpleNamespace(**{**_DELIVERY_COLUMNS, **row, "id": ids[(row["handoff_id"], row["position"])]})
                  for row in new.deliveries]
    handoff = SimpleNamespace(**{**_HANDOFF_COLUMNS, **new.row, "deliveries": deliveries})
    return Stored(cast(Handoff, handoff), prepared & {delivery.id for delivery in deliveries})
