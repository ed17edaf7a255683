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

Salesforce's Case Merge sends nothing: the cases merged into those its Outbound Messages name are
read before the messages are recorded, and the links moved the same way (`follow_merged_away`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from adapters.base import LINK_MERGED_FROM, MADE_FOR, MAX_MERGES, Adapter, MergeEnd
from adapters.errors import DeliveryError, RateLimited, TicketGone, TransientError
from adapters.events import CompletionEvent, MergeEvent

from .assignments import Received, complete, delivered_to, held
from .errors import ServiceUnavailable
from .jsonlog import log_context
from .models import ConversationLink, Handoff, utcnow

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)

# How long the reads of one merge event may take. Zendesk waits 10 s for a webhook's answer, then
# counts it failed; a 503 with Retry-After before that has it sent again. Each read's timeout is what
# is left of this, the whole call within it (`ZendeskAdapter._timeouts(whole=True)`): the delivery
# timeout (15 s a read) answered after Zendesk had given up, and so did a read's timeout of what was
# left, which a call may take twice (connecting, then answering: `call_deadline.whole_call_s`). 9 s
# lets a slow Zendesk (2.5 s a read) through its three reads, and one slower still at least through
# the two before the links move, so a resend goes on from there: 4.5 s timed the second read out at
# every resend, and the merge was never followed (reviews).
EVENT_READS_S = 9.0

NOTHING_LINKED = "no conversation is linked to this ticket now (a copy of its merge event, or none was)"


def merged(services: Services, event: MergeEvent) -> Received:
    """The conversations linked to `event`'s merged ticket moved to the ticket it was merged into;
    their handoffs completed when that one is finished already, or when the merge cannot be followed."""
    with services.db.reading() as session:
        linked = session.scalars(select(ConversationLink.id).where(
            *ConversationLink.naming(event.target, event.ticket_id)).limit(1)).first()
        handoff = delivered_to(session, event)
        waiting = linked is None and handoff is not None and handoff.completed_at is None
        now_on = _linked_now(session, handoff, event.target) if waiting else None
        unrecorded = waiting and _ticket_unrecorded(handoff, event.target)
    adapter = services.adapters.get(event.target)
    ends = time.monotonic() + EVENT_READS_S
    if unrecorded:
        # Found by the ticket's external_id while its create's outcome is not recorded: answered now,
        # the link would name the merged ticket once the retry records it, and nothing follow it.
        raise ServiceUnavailable(f"Ticket {event.ticket_id}'s handoff has not recorded its ticket yet; nothing was "
                                 "recorded. Send the event again shortly.", headers={"Retry-After": "30"})
    if linked is None:
        # A copy of the event — or a resend after a failure once the links had moved: the ticket its
        # handoff still waits on is read (solved or merged on in between, or an agent on it).
        if now_on is None or adapter is None:
            return Received("ignored", NOTHING_LINKED)
        end = _read(event, lambda: adapter.merge_left_on(now_on, deadline=ends))
        return _go_on(services, adapter, event, now_on, end, handoff, ends) if end is not None \
            else Received("ignored", NOTHING_LINKED)
    end = _read(event, lambda: adapter.merge_end(_gone(event), deadline=ends)) if adapter is not None else None
    if end is None:
        log.info("a close by a merge that cannot be followed is a completion",
                 extra={"target": event.target, "vendor_id": event.ticket_id})
        return complete(services, CompletionEvent(**asdict(event)))
    return _go_on(services, adapter, event, event.ticket_id, end, handoff, ends)


def follow_merged_away(services: Services, target: str, ticket_ids: Collection[str]) -> int:
    """The conversations linked to a ticket an agent merged into one of `ticket_ids` — tickets the
    vendor's events are about, read before they are recorded — linked to that one, when the vendor
    sends nothing of the merge itself (`Adapter.merged_away_into`): Salesforce's Case Merge deletes
    the merged case in silence, and the master case's Outbound Messages named a case no handoff went
    to: an agent taking and closing it neither took nor completed the handoff, which read "waiting"
    until the customer came back. Then as a Zendesk merge: an agent taking the ticket takes their
    newest handoff, where no handoff of its own is on it; its close completes them (`delivered_to`,
    `complete`). Merges one after another are followed back (`MAX_MERGES` reads, one more only where
    a merge was found). Asked only while a conversation linked elsewhere still waits — one read per
    vendor message then. The first read failing in a way that passes in moments (a 5xx, a
    connection refused) is a 503 (nothing recorded: the vendor sends the message again); refused —
    credentials, the API quota spent (hours), an API user who may not read deleted cases, a read
    that may time out every time (the adapter says so: a `RejectedError`) — the merge is not followed
    and the events are recorded as before: holding them back would hold every take and close. A
    later read failing (a long chain, the time used up) records what was found: a resend would read
    the same chain again from the start. How many links moved."""
    adapter = services.adapters.get(target)
    asked = set(ticket_ids)
    if adapter is None or not asked or not _waiting_elsewhere(services, target, asked):
        return 0
    ends, into, ask = time.monotonic() + EVENT_READS_S, {}, asked  # into: a removed ticket → the asked one
    for _ in range(MAX_MERGES):
        try:
            found = adapter.merged_away_into(ask, deadline=ends)
        except DeliveryError as err:
            if ask is asked and isinstance(err, TransientError) and not isinstance(err, RateLimited):
                log.warning("the merges into the event's tickets could not be read now; the message is refused, "
                            "for the vendor to send again", extra={"target": target, "error_type": type(err).__name__,
                                                                   "vendor_status": err.status})
                raise ServiceUnavailable(f"The merges into the tickets of this message could not be read from "
                                         f"{target} now; nothing was recorded. Send it again shortly.",
                                         headers={"Retry-After": "30"}) from None
            log.warning("the merges into the event's tickets cannot be read; recorded without following them"
                        if ask is asked else "a chain of merges was followed as far as it could be read",
                        extra={"target": target, "error_type": type(err).__name__, "vendor_status": err.status})
            break
        found = {gone: master for gone, master in found.items() if gone not in into and gone not in asked}
        for gone, master in found.items():
            into[gone] = into.get(master, master)  # a merge before a merge: to the ticket the event names
        # Linked or not, each is asked in turn: a conversation's case merged into another's, merged on.
        ask = set(found)
        if not ask:
            break
    moved = 0
    for gone, master in into.items():
        count = _move_links(services, target, gone, MergeEnd(master, adapter.ticket_url(master), finished=False,
                                                              holder=None))
        if count:
            log.info("merge followed", extra={"target": target, "vendor_id": gone, "merged_into": master,
                                              "finished": False, "links_moved": count})
        moved += count
    return moved


def _waiting_elsewhere(services: Services, target: str, ticket_ids: Collection[str]) -> bool:
    """Whether a conversation linked to a ticket at `target` other than `ticket_ids` has a handoff
    not completed: only such a one may be linked to a ticket merged away. PostgreSQL answers from
    the waiting handoffs' partial index when few wait (`models.WAITING`: 40 ms at 200,000 handoffs
    before it, 1.5 ms with it); SQLite's planner, without statistics, starts from the target's links
    whatever the index (~45 ms at 200,000 when none waits; ~1 ms when most do, which starting from
    the waiting ones would make 150 ms)."""
    waiting = (select(ConversationLink.id)
               .join(Handoff, and_(Handoff.bot_id == ConversationLink.bot_id,
                                   Handoff.conversation_id == ConversationLink.conversation_id))
               .where(ConversationLink.target == target, ConversationLink.vendor_id.is_not(None),
                      ConversationLink.vendor_id.not_in(ticket_ids), Handoff.follows_id.is_(None),
                      Handoff.completed_at.is_(None)).limit(1))
    with services.db.reading() as session:
        return session.scalars(waiting).first() is not None


def _go_on(services: Services, adapter: Adapter, event: MergeEvent, on: str, end: MergeEnd,
           handoff: Handoff | None, ends: float) -> Received:
    """The links naming `on` moved to `end`'s ticket, which is read again once they name it: a
    solve, or a merge, of it handled between the read and the move found nothing linked to it (one
    more move follows that merge). Then finished, it completes their handoffs; an agent on it holds
    the newest."""
    moves = 0
    while end.ticket_id != on and moves < 2:
        moved = _move_links(services, event.target, on, end)
        with log_context(handoff_id=handoff.id if handoff is not None else None):
            log.info("merge followed", extra={"target": event.target, "vendor_id": on, "merged_into": end.ticket_id,
                                              "finished": end.finished, "links_moved": moved})
        on, moves = end.ticket_id, moves + 1
        if end.finished:
            break
        # Failing now, the resend finds the links moved and reads this ticket again (above).
        end = _read(event, lambda ticket=on: adapter.merge_left_on(ticket, deadline=ends)) or end
    if end.ticket_id == on and end.finished:  # its solve came before the links named it: it completes them now
        return _finished(services, event, on)
    if end.ticket_id == on and end.holder is not None and handoff is not None:
        # An agent has that ticket already: no event will say they took it, and the customer waits on them.
        held(services, handoff.id, event.target, on, end.holder, merged=True)
    if not moves:
        return Received("ignored", NOTHING_LINKED)
    return Received("recorded", f"merged into ticket {on}: its handoffs are completed when that ticket is solved",
                    handoff.id if handoff is not None else None)


def _ticket_unrecorded(handoff: Handoff, target: str) -> bool:
    """Whether `handoff`'s delivery to `target` is still going and may have made a ticket it has not
    recorded. Not one given up: Zendesk's resends end within the hour, an operator's replay may
    come days later (it follows the merge when its update meets the closed ticket, as any does)."""
    return any(d.target == target and not d.vendor_id and d.state == "pending" for d in handoff.deliveries)


def _linked_now(session: Session, handoff: Handoff, target: str) -> str | None:
    """The ticket `handoff`'s conversation is linked to at `target`."""
    return session.scalars(select(ConversationLink.vendor_id)
                           .filter_by(**ConversationLink.key_for(handoff, target))).first() or None


def _move_links(services: Services, target: str, on: str, end: MergeEnd) -> int:
    """The links naming ticket `on`, moved to `end`'s: how many."""
    with services.db.session() as session:
        # Locked to the commit: an update recording its answer writes the same rows (`outbox._told`).
        links = session.scalars(select(ConversationLink).where(*ConversationLink.naming(target, on))
                                .with_for_update()).all()
        for link in links:
            # Which handoff made the ticket (`MADE_FOR`) is not carried: no handoff made this one. That a
            # merge brought the link there is: the brief is on the ticket merged away (`LINK_MERGED_FROM`).
            link.extra = {**{name: value for name, value in (link.extra or {}).items() if name != MADE_FOR},
                          LINK_MERGED_FROM: link.vendor_id}
            link.vendor_id, link.url = end.ticket_id, end.url
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
