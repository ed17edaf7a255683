"""A ticket an agent merged into another (`adapters.events.MergeEvent`): Zendesk closes it, tagged
`closed_by_merge`, and the customer's problem goes on on the ticket it was merged into.

The conversations linked to the merged ticket are linked to that one from then on — their next
handoff updates it straight away, as an update that followed the merge itself would have moved the
link (`adapters.base.Adapter.update_merged`) — and the link keeps whom and for which team the
ticket was opened and what it was told. Where that ticket holds no handoff of its own, an agent
taking it takes their newest handoff (the agent it has already holds it, as after an update:
`assignments.held`); its solve completes their handoffs (`assignments.delivered_to`,
`assignments.complete`). The merge's close once told the bot `completed` of a problem agents had only
begun to work on under another number; then nothing completed those handoffs at all.

Zendesk sends events in no set order: merges made one after another are followed to the ticket
still in use (`Adapter.merge_end`), and one solved already — before the event, or while it was
handled (read again once the links name it) — completes the handoffs at once. Where the merge
cannot be followed — not merged after all, Zendesk's record of it not readable for good (its audits
need an OAuth token's global `read` scope), the target no longer enabled — the close is a
completion, as any other close. A failure that may pass is a 503, which Zendesk retries. A copy of
the event finds nothing linked to the merged ticket any more: it reads only the ticket its handoff
is still waiting on, in case that was solved in between (a resend after a failure).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.base import MADE_FOR, Adapter, MergeEnd
from adapters.errors import DeliveryError, TicketGone
from adapters.events import CompletionEvent, MergeEvent

from .assignments import Received, complete, delivered_to, held
from .errors import ServiceUnavailable
from .jsonlog import log_context
from .models import ConversationLink, Handoff, utcnow

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)

NOTHING_LINKED = "no conversation is linked to this ticket now (a copy of its merge event, or none was)"


def merged(services: Services, event: MergeEvent) -> Received:
    """The conversations linked to `event`'s merged ticket moved to the ticket it was merged into;
    their handoffs completed when that one is finished already, or when the merge cannot be followed."""
    with services.db.reading() as session:
        linked = session.scalars(select(ConversationLink.id).where(
            ConversationLink.target == event.target, ConversationLink.vendor_id == event.ticket_id).limit(1)).first()
        handoff = delivered_to(session, event)
        now_on = _linked_now(session, handoff, event.target) if linked is None and handoff is not None else None
    adapter = services.adapters.get(event.target)
    if linked is None:
        return _moved_already(services, adapter, event, now_on)
    end = _read(event, lambda: adapter.merge_end(_gone(event))) if adapter is not None else None
    if end is None:
        log.info("a close by a merge that cannot be followed is a completion",
                 extra={"target": event.target, "vendor_id": event.ticket_id})
        return complete(services, CompletionEvent(**asdict(event)))
    moved = _move_links(services, event, end)
    handoff_id = handoff.id if handoff is not None else None
    with log_context(handoff_id=handoff_id):
        log.info("merge followed", extra={"target": event.target, "vendor_id": event.ticket_id,
                                          "merged_into": end.ticket_id, "finished": end.finished, "links_moved": moved})
    if not end.finished:
        # Read again now the links name it: its solve, handled between the first read and the move,
        # found nothing linked to it. Failing now, the resend finds the links moved (`_moved_already`).
        end = _read(event, lambda: adapter.merge_left_on(end.ticket_id)) or end
    if end.finished:  # its solve came before the links named it: it completes them now
        return _finished(services, event, end.ticket_id)
    if end.holder is not None and handoff is not None:
        # An agent has that ticket already: no event will say they took it, and the customer waits on them.
        held(services, handoff.id, event.target, end.ticket_id, end.holder, merged=True)
    return Received("recorded", f"merged into ticket {end.ticket_id}: its handoffs are completed when that ticket "
                    "is solved", handoff_id)


def _moved_already(services: Services, adapter: Adapter | None, event: MergeEvent, now_on: str | None) -> Received:
    """Nothing is linked to the merged ticket (any more): a copy of its merge event — or a resend
    after a failure once the links had moved, which must not leave a handoff waiting on a ticket
    solved in between. Its handoff still waiting where its conversation is linked now (`now_on`), that
    ticket is read: finished, it completes them. Nothing waiting, Zendesk is asked nothing."""
    if now_on is not None and adapter is not None:
        end = _read(event, lambda: adapter.merge_left_on(now_on))
        if end is not None and end.ticket_id == now_on and end.finished:
            return _finished(services, event, now_on)
    return Received("ignored", NOTHING_LINKED)


def _linked_now(session: Session, handoff: Handoff, target: str) -> str | None:
    """The ticket `handoff`'s conversation is linked to at `target`, while it is not completed."""
    if handoff.completed_at is not None:
        return None
    return session.scalars(select(ConversationLink.vendor_id).where(
        ConversationLink.bot_id == handoff.bot_id, ConversationLink.conversation_id == handoff.conversation_id,
        ConversationLink.target == target)).first() or None


def _move_links(services: Services, event: MergeEvent, end: MergeEnd) -> int:
    """The links naming the merged ticket, moved to `end`'s: how many."""
    with services.db.session() as session:
        # Locked to the commit: an update recording its answer writes the same rows (`outbox._told`).
        links = session.scalars(select(ConversationLink).where(
            ConversationLink.target == event.target, ConversationLink.vendor_id == event.ticket_id)
            .with_for_update()).all()
        for link in links:
            # Which handoff made the ticket (`MADE_FOR`) is not carried: no handoff made this one.
            link.vendor_id, link.url = end.ticket_id, end.url
            link.extra = {name: value for name, value in (link.extra or {}).items() if name != MADE_FOR}
            link.updated_at = utcnow()
        return len(links)


def _finished(services: Services, event: MergeEvent, ticket_id: str) -> Received:
    """The ticket the conversations went into is solved already: its solve, as if it came now."""
    return complete(services, CompletionEvent(**asdict(replace(event, ticket_id=ticket_id, handoff_id=None))))


def _gone(event: MergeEvent) -> TicketGone:
    return TicketGone(f"ticket {event.ticket_id} was closed by a merge", ticket_id=event.ticket_id, closed=True)


def _read(event: MergeEvent, read: Callable[[], MergeEnd | None]) -> MergeEnd | None:
    """`read` (the adapter's record of the merge); raises `ServiceUnavailable` when the vendor could
    not be read now."""
    try:
        return read()
    except DeliveryError as err:
        log.warning("the merged ticket's record could not be read now; the event is refused, for Zendesk to send again",
                    extra={"target": event.target, "vendor_id": event.ticket_id, "error_type": type(err).__name__,
                           "vendor_status": err.status})
        raise ServiceUnavailable(f"The record of ticket {event.ticket_id}'s merge could not be read from "
                                 f"{event.target} now. Send the event again shortly.",
                                 headers={"Retry-After": "30"}) from None
