"""Forgetting old handoffs (`CONNECTOR_RETENTION_DAYS`): packets hold customers' names, addresses
and whole transcripts, and nothing else ever removes them.

A handoff is forgotten — its row, its follow-ups (messages sent while it waited), and by cascade
their deliveries, assignments and status callbacks — once it and all of its follow-ups are older
than the cutoff, **every one of their deliveries reached its target**, and no status callback is
still being sent. A delivery that is pending, dead or failed keeps its handoff however old: that
handoff never reached an agent, and the admin page and replay still need it. A conversation's
link to its ticket goes once no handoff of the conversation is left, so a conversation that comes
back after the cutoff starts a new ticket instead of updating one the helpdesk may have archived.

What else forgetting means: a bot retrying with an idempotency key older than the cutoff makes a
new handoff (bots retry within minutes; the cutoff is at least `settings.RETENTION_MIN_DAYS`
days), and the observed wait reads assignments of at most seven days (`routing_schema`), hence
that minimum. The previous agent for sticky routing is asked of the vendors, not read here.

Each pass removes at most `CHUNK` handoffs in one transaction, oldest first, so SQLite's single
writer is held for milliseconds, not for the whole backlog of a first run.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, func, select, tuple_
from sqlalchemy.engine import Connection

from . import metrics
from .db import Database
from .models import DONE, Callback, ConversationLink, Delivery, Handoff, utcnow

log = logging.getLogger(__name__)
CHUNK = 200  # handoffs forgotten per transaction
EVERY_S = 3600.0  # how often each process's outbox loop looks, once it found nothing more

_H = Handoff.__table__
_D = Delivery.__table__
_C = Callback.__table__
_L = ConversationLink.__table__
_FOLLOW_UP = _H.alias("follow_up")
_FOLLOW_UP_DELIVERY = _D.alias("follow_up_delivery")


@dataclass(frozen=True)
class Purged:
    handoffs: int = 0
    follow_ups: int = 0
    links: int = 0
    more: bool = False  # a whole chunk went: more may be old enough

    def __add__(self, other: Purged) -> Purged:
        return Purged(self.handoffs + other.handoffs, self.follow_ups + other.follow_ups,
                      self.links + other.links, other.more)


def cutoff(days: int, now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) - dt.timedelta(days=days)


def _forgettable(before: dt.datetime):  # type: ignore[no-untyped-def]
    """The conditions above, on the handoffs table (follow-ups go with their handoff)."""
    undelivered = exists().where(_D.c.handoff_id == _H.c.id, _D.c.state.not_in(DONE))
    follow_up_young_or_undelivered = exists().where(
        _FOLLOW_UP.c.follows_id == _H.c.id,
        (_FOLLOW_UP.c.created_at >= before) | exists().where(
            _FOLLOW_UP_DELIVERY.c.handoff_id == _FOLLOW_UP.c.id, _FOLLOW_UP_DELIVERY.c.state.not_in(DONE)))
    sending = exists().where(_C.c.handoff_id == _H.c.id, _C.c.status == "pending")
    return and_(_H.c.follows_id.is_(None), _H.c.created_at < before,
                ~undelivered, ~follow_up_young_or_undelivered, ~sending)


def count(db: Database, before: dt.datetime) -> int:
    """How many handoffs a purge with this cutoff would forget now (follow-ups not counted)."""
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(_H).where(_forgettable(before))) or 0


def purge_chunk(db: Database, before: dt.datetime, limit: int = CHUNK) -> Purged:
    """Forget up to `limit` handoffs, oldest first, in one transaction."""
    with db.writing() as connection:
        # Checked again inside the transaction that deletes (a replay or a new follow-up since).
        rows = connection.execute(select(_H.c.id, _H.c.bot_id, _H.c.conversation_id)
                                  .where(_forgettable(before)).order_by(_H.c.created_at).limit(limit)).all()
        if not rows:
            return Purged()
        ids = [row.id for row in rows]
        follow_ups = connection.execute(delete(_H).where(_H.c.follows_id.in_(ids))).rowcount
        handoffs = connection.execute(delete(_H).where(_H.c.id.in_(ids))).rowcount
        links = _forget_links(connection, {(row.bot_id, row.conversation_id) for row in rows})
    return Purged(handoffs, follow_ups, links, more=len(rows) == limit)


def _forget_links(connection: Connection, conversations: set[tuple[str, str]]) -> int:
    left = exists().where(_H.c.bot_id == _L.c.bot_id, _H.c.conversation_id == _L.c.conversation_id)
    return connection.execute(delete(_L).where(tuple_(_L.c.bot_id, _L.c.conversation_id).in_(sorted(conversations)),
                                               ~left)).rowcount


def purge(db: Database, before: dt.datetime, *, max_chunks: int | None = None) -> Purged:
    """Forget chunk after chunk until none is whole (or `max_chunks` went); log and count it."""
    total = Purged()
    chunks = 0
    while max_chunks is None or chunks < max_chunks:
        step = purge_chunk(db, before)
        total, chunks = total + step, chunks + 1
        if not step.more:
            break
    if total.handoffs:
        log.info("forgot old handoffs", extra={"before": before.isoformat(), "handoffs": total.handoffs,
                                               "follow_ups": total.follow_ups, "conversation_links": total.links,
                                               "more": total.more})
        metrics.purged(total.handoffs, total.follow_ups, total.links)
    return total
