"""A ticket an agent merged into another (`adapters.events.MergeEvent`): Zendesk closes it, tagged
`closed_by_merge`, and the customer's problem goes on on the ticket it was merged into.

The conversations linked to the merged ticket are linked to that one from then on — their next
handoff updates it straight away, as an update that followed the merge itself would have moved the
link (`adapters.base.Adapter.update_merged`) — and the link keeps whom and for which team the
ticket was opened and what it was told. An agent taking that ticket takes their newest handoff (the
agent it has already holds it, as after an update: `assignments.held`), and its solve completes
their handoffs (`assignments.delivered_to`, `assignments.complete`). The
merge's close once told the bot `completed` of a problem agents had only begun to work on under
another number; then nothing completed those handoffs at all.

Zendesk sends events in no set order: merges made one after another are followed to the ticket
still in use (`Adapter.merge_end`), and one already solved completes the handoffs at once (its solve
came first). Where the merge cannot be followed — not merged after all, Zendesk's record of it not
readable for good (its audits need an OAuth token's global `read` scope), the target no longer
enabled — the close is a completion, as any other close. A failure that may pass is a 503 (nothing
recorded), which Zendesk retries. A copy of the event finds nothing linked to the merged ticket any
more, and asks Zendesk nothing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from sqlalchemy import select

from adapters.base import MADE_FOR, Adapter, MergeEnd
from adapters.errors import DeliveryError, TicketGone
from adapters.events import CompletionEvent, MergeEvent

from .assignments import Received, complete, delivered_to, held
from .errors import ServiceUnavailable
from .jsonlog import log_context
from .models import ConversationLink, utcnow

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
        handoff = delivered_to(session, event) if linked is not None else None
    if linked is None:
        return Received("ignored", NOTHING_LINKED)
    adapter = services.adapters.get(event.target)
    end = _merge_end(adapter, event) if adapter is not None else None
    if end is None:
        log.info("a close by a merge that cannot be followed is a completion",
                 extra={"target": event.target, "vendor_id": event.ticket_id})
        return complete(services, CompletionEvent(**asdict(event)))
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
        moved = len(links)
    handoff_id = handoff.id if handoff is not None else None
    with log_context(handoff_id=handoff_id):
        log.info("merge followed", extra={"target": event.target, "vendor_id": event.ticket_id,
                                          "merged_into": end.ticket_id, "finished": end.finished, "links_moved": moved})
    if end.finished:  # its solve came before this event: it completes them now
        return complete(services, CompletionEvent(**asdict(replace(event, ticket_id=end.ticket_id, handoff_id=None))))
    if end.holder is not None and handoff is not None:
        # An agent has that ticket already: no event will say they took it, and the customer waits on them.
        held(services, handoff.id, event.target, end.ticket_id, end.holder, merged=True)
    return Received("recorded", f"merged into ticket {end.ticket_id}: its handoffs are completed when that ticket "
                    "is solved", handoff_id)


def _merge_end(adapter: Adapter, event: MergeEvent) -> MergeEnd | None:
    """`Adapter.merge_end` of `event`'s ticket; raises `ServiceUnavailable` when the vendor could
    not be read now."""
    gone = TicketGone(f"ticket {event.ticket_id} was closed by a merge", ticket_id=event.ticket_id, closed=True)
    try:
        return adapter.merge_end(gone)
    except DeliveryError as err:
        log.warning("the merged ticket's record could not be read now; the event is refused, for Zendesk to send again",
                    extra={"target": event.target, "vendor_id": event.ticket_id, "error_type": type(err).__name__,
                           "vendor_status": err.status})
        raise ServiceUnavailable(f"The record of ticket {event.ticket_id}'s merge could not be read from "
                                 f"{event.target} now; nothing was recorded. Send the event again shortly.",
                                 headers={"Retry-After": "30"}) from None
