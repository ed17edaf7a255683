"""Forgetting old handoffs (`CONNECTOR_RETENTION_DAYS`): packets hold customers' names, addresses
and whole transcripts, and nothing else ever removes them.

A handoff is forgotten — its row, its follow-ups (messages sent while it waited), and by cascade
their deliveries, assignments and status callbacks — once it and all of its follow-ups are older
than the cutoff, so is the agent's taking it (if any), **every one of their deliveries reached its
target** (before the cutoff too: a replay's ticket is new), and no status callback is still being
sent. A delivery that is pending, dead or failed keeps its handoff however old: that handoff never
reached an agent, and the admin page and replay still need it. A conversation's link to its ticket
goes once no handoff of the conversation is left, so a conversation that comes back after the cutoff
starts a new ticket instead of updating one the helpdesk may have archived.
Messages posted to a handoff keep it: a batch stores only its own messages and is delivered with
its handoff's context put together from the handoff (`follow_up_packets`), so the handoff stays
until they are delivered and old, and goes with them. Messages stored at the moment it is chosen
keep it (on PostgreSQL through row locks, `purge_chunk`); messages that come once it is gone are
refused (404, nothing stored), as they would be a moment later.

What else forgetting means: a bot retrying with an idempotency key older than the cutoff makes a
new handoff (bots retry within minutes; the cutoff is at least `settings.RETENTION_MIN_DAYS`
days), and the observed wait reads assignments taken in the last seven days at most
(`routing_schema`), hence that minimum — counted from the taking: a handoff made eight days ago and
taken a day later was forgotten with its assignment still read, dropping the long waits from the
median (a review). The previous agent for sticky routing is asked of the vendors, not read here.

Each pass removes at most `CHUNK` handoffs in one transaction, oldest first, so SQLite's single
writer is held for milliseconds, not for the whole backlog of a first run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, tuple_
from sqlalchemy.engine import Connection

from . import metrics
from .carried import carried_since
from .db import Database
from .models import DISMISSED, DONE, Assignment, Callback, ConversationLink, Delivery, Handoff, utcnow

log = logging.getLogger(__name__)
CHUNK = 200  # handoffs forgotten per transaction
EVERY_S = 3600.0  # how often each process's outbox loop looks, once it found nothing more

_H = Handoff.__table__
_D = Delivery.__table__
_C = Callback.__table__
_A = Assignment.__table__
_L = ConversationLink.__table__


@dataclass(frozen=True)
class Purged:
    handoffs: int = 0
    follow_ups: int = 0
    links: int = 0
    more: bool = False  # a whole chunk went: more may be old enough
    # Status callbacks given up (`dead`) or put aside (`dismissed`: a key-only bot's, never sent)
    # that went with their handoffs: said, since an operator watching
    # `connector_status_callbacks_owed{status="dead"}` sees them vanish, never (re)sent.
    dead_callbacks: int = 0
    dismissed_callbacks: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(self.handoffs + other.handoffs, self.follow_ups + other.follow_ups,
                      self.links + other.links, other.more, self.dead_callbacks + other.dead_callbacks,
                      self.dismissed_callbacks + other.dismissed_callbacks)


def cutoff(days: int, now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) - dt.timedelta(days=days)


_SETTLED = (*DONE, DISMISSED)


def _settled(row: Any, before: dt.datetime):  # type: ignore[no-untyped-def]
    """`row` (the handoffs table or an alias of it) is older than `before`, every delivery of it
    reached its target (or an operator dismissed it) before `before` too, and no status callback of
    it is still being sent. An old handoff an operator replayed made its ticket minutes ago: gone
    with its link at the next pass, the agent's take and solve of that ticket were ignored and the
    customer back that day got a second ticket beside it (a review)."""
    deliveries, sending, taken, reached = _D.alias(), _C.alias(), _A.alias(), _D.alias()
    # Given up, but carried since by a later batch of the handoff's messages: it owes nothing.
    carried = carried_since(deliveries.c.handoff_id, deliveries.c.target, deliveries.c.state)
    return and_(row.c.created_at < before,
                ~exists().where(deliveries.c.handoff_id == row.c.id, deliveries.c.state.not_in(_SETTLED), ~carried),
                ~exists().where(sending.c.handoff_id == row.c.id, sending.c.status == "pending"),
                ~exists().where(taken.c.handoff_id == row.c.id, taken.c.assigned_at >= before),
                ~exists().where(reached.c.handoff_id == row.c.id, reached.c.state.in_(DONE),
                               reached.c.finished_at >= before))


def _forgettable(before: dt.datetime):  # type: ignore[no-untyped-def]
    """The conditions above, on the handoffs table. Follow-ups go with their handoff; one whose
    handoff is gone already (left by an earlier release, which forgot a handoff while messages
    posted at that moment stayed) on its own."""
    parent, follow_up = _H.alias("parent"), _H.alias("follow_up")
    unit = or_(_H.c.follows_id.is_(None), ~exists().where(parent.c.id == _H.c.follows_id))
    unsettled = exists().where(follow_up.c.follows_id == _H.c.id, ~_settled(follow_up, before))
    return and_(unit, _settled(_H, before), ~unsettled)


def count(db: Database, before: dt.datetime) -> int:
    """How many handoffs a purge with this cutoff would forget now (follow-ups not counted)."""
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(_H).where(_forgettable(before))) or 0


def unsent_callbacks(db: Database, before: dt.datetime) -> dict[str, int]:
    """How many status callbacks given up (dead) or put aside (dismissed) would go with them, by
    status: a dry run says so, since once forgotten they can never be resent (`callbacks --resend`
    first)."""
    with db.reading() as session:
        return _unsent(session, select(_H.c.id).where(_forgettable(before)))


_UNSENT = ("dead", DISMISSED)


def _unsent(connection: Any, handoff_ids: Any) -> dict[str, int]:
    """{status: count} of the callbacks of `handoff_ids` (ids or a select of them) never to be sent."""
    rows = connection.execute(select(_C.c.status, func.count()).where(
        _C.c.handoff_id.in_(handoff_ids), _C.c.status.in_(_UNSENT)).group_by(_C.c.status)).all()
    return {status: number for status, number in rows}


def purge_chunk(db: Database, before: dt.datetime, limit: int = CHUNK) -> Purged:
    """Forget up to `limit` handoffs, oldest first, in one transaction."""
    with db.writing() as connection:
        # Checked again inside the transaction that deletes (a replay or a new follow-up since).
        # On PostgreSQL the chosen rows are locked: messages being stored for one of them hold its
        # key-share lock until they commit (`handoff_store._PARENT`), and that handoff is skipped
        # for now (else this DELETE, whose snapshot cannot see them yet, would leave them without
        # it); messages that come after wait for this transaction, then find their handoff gone.
        rows = connection.execute(select(_H.c.id, _H.c.bot_id, _H.c.conversation_id)
                                  .where(_forgettable(before)).order_by(_H.c.created_at).limit(limit)
                                  .with_for_update(of=_H, skip_locked=True)).all()
        if not rows:
            return Purged()
        unsent = _unsent(connection, [row.id for row in rows])
        handoffs, follow_ups, links = _forget(connection, rows, before)
    return Purged(handoffs, follow_ups, links, more=len(rows) == limit, dead_callbacks=unsent.get("dead", 0),
                  dismissed_callbacks=unsent.get(DISMISSED, 0))


def _forget(connection: Connection, rows: Sequence[Any], before: dt.datetime) -> tuple[int, int, int]:
    """Delete the handoffs `rows` name, their settled follow-ups and their conversations' orphaned
    links. The follow-ups are chosen by the DELETE itself: on PostgreSQL one committed since the
    handoffs were chosen is seen by it, and a new one — accepted, not yet delivered — must stay,
    and so must its handoff, whose packet it is delivered with (it stored only its own messages:
    alone, it went to the vendor as a brief with no customer, no reason, no context)."""
    ids = [row.id for row in rows]
    follow_ups = connection.execute(delete(_H).where(_H.c.follows_id.in_(ids), _settled(_H, before))).rowcount
    remaining = _H.alias("remaining")
    handoffs = connection.execute(delete(_H).where(
        _H.c.id.in_(ids), ~exists().where(remaining.c.follows_id == _H.c.id))).rowcount
    links = _forget_links(connection, {(row.bot_id, row.conversation_id) for row in rows})
    return handoffs, follow_ups, links


def _forget_links(connection: Connection, conversations: set[tuple[str, str]]) -> int:
    left = exists().where(_H.c.bot_id == _L.c.bot_id, _H.c.conversation_id == _L.c.conversation_id)
    return connection.execute(delete(_L).where(tuple_(_L.c.bot_id, _L.c.conversation_id).in_(sorted(conversations)),
                                               ~left)).rowcount


def purge(db: Database, before: dt.datetime, *, max_chunks: int | None = None) -> Purged:
    """Forget chunk after chunk until none is whole (or `max_chunks` went); log and count it. What
    went before a chunk failed is logged and counted too, and rides on the error (`purged`): each
    chunk is its own transaction, and the committed ones are gone (a review: a `purge` stopped by a
    lock said nothing of the callbacks it had forgotten)."""
    total = Purged()
    chunks = 0
    try:
        while max_chunks is None or chunks < max_chunks:
            step = purge_chunk(db, before)
            total, chunks = total + step, chunks + 1
            if not step.more:
                break
    except Exception as err:
        _said(total, before)
        err.purged = total  # type: ignore[attr-defined]
        raise
    _said(total, before)
    return total


def _said(total: Purged, before: dt.datetime) -> None:
    if total.handoffs:
        # Callbacks given up went for good: an operator watching the dead count sees it drop, and
        # the hourly pass said so at INFO only (a review).
        level = logging.WARNING if total.dead_callbacks or total.dismissed_callbacks else logging.INFO
        log.log(level, "forgot old handoffs", extra={"before": before.isoformat(), "handoffs": total.handoffs,
                                               "follow_ups": total.follow_ups, "conversation_links": total.links,
                                               "dead_callbacks": total.dead_callbacks,
                                               "dismissed_callbacks": total.dismissed_callbacks, "more": total.more})
        metrics.purged(total.handoffs, total.follow_ups, total.links, total.dead_callbacks + total.dismissed_callbacks)
