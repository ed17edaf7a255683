"""A ticket an agent merged into another (`adapters.events.MergeEvent`): Zendesk closes it, tagged
`closed_by_merge`, and the customer's problem goes on on the ticket it was merged into.

The conversations linked to the merged ticket are linked to that one from then on — their next
handoff updates it straight away, as an update that followed the merge itself would have moved the
link (`adapters.base.Adapter.update_merged`) — and the link keeps whom and for which team the
ticket was opened and what it was told. Their handoffs waiting on the merged ticket are completed
when the ticket it was merged into is solved (`assignments.complete` completes the waiting handoffs
of the conversations linked to a solved ticket). The merge's close once told the bot `completed` of
a problem agents had only begun to work on under another number; then nothing completed those
handoffs at all.

Where the merge cannot be followed — the ticket was not merged after all, Zendesk's record of it
cannot be read for good (its audits need an OAuth token's global `read` scope), the target is no
longer enabled — the close is a completion, as any other close. A failure that may pass is a 503
(nothing recorded), which Zendesk retries.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

from sqlalchemy import select

from adapters.base import MADE_FOR, Adapter
from adapters.errors import DeliveryError, TicketGone
from adapters.events import CompletionEvent, MergeEvent

from .assignments import NO_HANDOFF, Received, complete, delivered_to
from .errors import ServiceUnavailable
from .jsonlog import log_context
from .models import ConversationLink, utcnow

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)


def merged(services: Services, event: MergeEvent) -> Received:
    """The conversations linked to `event`'s merged ticket moved to the ticket it was merged into;
    a close whose merge cannot be followed completes its handoffs (`assignments.complete`)."""
    with services.db.reading() as session:
        handoff = delivered_to(session, event)
        linked = session.scalars(select(ConversationLink.id).where(
            ConversationLink.target == event.target, ConversationLink.vendor_id == event.ticket_id).limit(1)).first()
    if handoff is None and linked is None:  # no ticket of ours: nothing to ask Zendesk
        return Received("ignored", NO_HANDOFF)
    adapter = services.adapters.get(event.target)
    into, url = _merge_target(adapter, event) if adapter is not None else (None, None)
    if into is None:
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
            link.vendor_id, link.url = into, url
            link.extra = {name: value for name, value in (link.extra or {}).items() if name != MADE_FOR}
            link.updated_at = utcnow()
        moved = len(links)
    handoff_id = handoff.id if handoff is not None else None
    with log_context(handoff_id=handoff_id):
        log.info("merge followed", extra={"target": event.target, "vendor_id": event.ticket_id, "merged_into": into,
                                          "links_moved": moved})
    return Received("recorded", f"merged into ticket {into}: its handoffs are completed when that ticket is solved",
                    handoff_id)


def _merge_target(adapter: Adapter, event: MergeEvent) -> tuple[str | None, str | None]:
    """The ticket `event`'s was merged into and its url, as the vendor records them; (None, None)
    when it was not merged, or that cannot be read for good. Raises `ServiceUnavailable` when the
    vendor could not be read now."""
    gone = TicketGone(f"ticket {event.ticket_id} was closed by a merge", ticket_id=event.ticket_id, closed=True)
    try:
        into = adapter.merged_into(gone)
        return (into, adapter.ticket_url(into)) if into is not None else (None, None)
    except DeliveryError as err:
        log.warning("the merged ticket's record could not be read now; the event is refused, for Zendesk to send again",
                    extra={"target": event.target, "vendor_id": event.ticket_id, "error_type": type(err).__name__,
                           "vendor_status": err.status})
        raise ServiceUnavailable(f"The record of ticket {event.ticket_id}'s merge could not be read from "
                                 f"{event.target} now; nothing was recorded. Send the event again shortly.",
                                 headers={"Retry-After": "30"}) from None
