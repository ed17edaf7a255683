"""Vendor events that say an agent took a handoff: matched to the handoff, recorded once.

A verified event (`adapters.events.AssignmentEvent`) names the ticket it is about. The handoff it
ends the wait of is the newest handoff delivered to that ticket before the event (a second handoff
of a conversation updates the first one's ticket, and supersedes it), if not assigned yet; else
the handoff the payload names (Zendesk's `external_id`, the Claim button's value) when that
handoff was delivered to the target — an event can arrive before the delivery has recorded the
ticket id. The wait is counted from when the customer started waiting: the handoff's arrival, or an
earlier one's on the same ticket that nobody took (`_waiting_since`).

An agent routing itself put on the ticket (sticky routing, a rule's assignee) is recorded as
`routed`: the handoff is theirs (the bot sees who holds it), but the vendor reports our own choice,
so it is never an observed wait (it would quote sticky teams a wait of nothing). If another agent
takes the ticket later, that agent replaces it, and their wait is the customer's. The bot's
`assigned` callback stays the first report's (one per handoff).

Vendors deliver events at least once: an event id already recorded for the target is answered as
a duplicate, never counted twice (a unique constraint settles two copies arriving at once; when
they replace routing's report, the update that finds it no longer routing's does).

A ticket solved (`CompletionEvent`) ends the newest handoff delivered to it the same way, and owes
its bot the `completed` status callback when it asked for one; once per handoff (`callbacks`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from adapters import registry
from adapters.events import AssignmentEvent, CompletionEvent, Holder, MergeEvent

from . import answers, callbacks
from .jsonlog import log_context
from .models import DISMISSED, DONE, Assignment, Callback, ConversationLink, Delivery, Handoff, utcnow
from .outbox import revive_named
from .routing_schema import compiled

if TYPE_CHECKING:  # services builds the outbox, which records what an update's answer says here
    from .services import Services

log = logging.getLogger(__name__)

# Vendors' clocks and ours differ a little; an agent taking a ticket within this margin *before*
# our handoff was stored is still taking it (auto-assignment can be that quick). Its wait is 0.
CLOCK_SKEW = dt.timedelta(seconds=60)
# …but a ticket that already had a handoff when the event happened: the event is that handoff's
# unless a newer one was stored within the clocks' ordinary difference of it. Within CLOCK_SKEW, a
# solve that reached us after the customer came back (a webhook late by seconds) completed the
# newer handoff, dated before it, and the older one promised a wait for ever.
TICKET_HAD_ONE_SKEW = dt.timedelta(seconds=2)
NO_HANDOFF = "no handoff was delivered to this ticket before this event"
ROUTED = "the agent routing named when the ticket was made (not an observed wait)"
REASSIGNED = "a reassignment from one agent to another"
COMPLETED = "the handoff was completed already"


@dataclass(frozen=True)
class Received:
    outcome: Literal["recorded", "duplicate", "ignored"]
    detail: str
    handoff_id: str | None = None
    # For the agent whose action this was, not in the body: who holds the handoff the event was
    # matched to, and that handoff's ticket at the event's target (where the vendor answers the
    # agent: the Slack alert itself, whatever message the click came from).
    holder: Holder | None = None
    ticket_id: str | None = None
    # The handoff `holder` holds, for the notice's log lines: the body names a handoff only when
    # this event changed it (an agent told who took it already reads `handoff_id: null`).
    held: str | None = None

    def body(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "detail": self.detail, "handoff_id": self.handoff_id}


def record(services: Services, event: AssignmentEvent, again: bool = True) -> Received:
    matched: str | None = None  # the handoff the event was matched to, and its ticket at the target
    where: str | None = None
    revived: int | None = None  # its given-up delivery there, put back (`outbox.revive_named`)
    routed = False
    try:
        with services.db.session() as session:
            duplicate = _recorded(session, event)
            if duplicate is not None:
                return duplicate
            handoff, taken = _waiting_handoff(session, event)
            if event.held and handoff is not None and handoff.id != event.handoff_id:
                handoff, taken = _carried_here(session, event, handoff, taken)
            if handoff is None:
                # A copy of this event may have been committed since the first look (READ COMMITTED).
                return _recorded(session, event) or Received("ignored", NO_HANDOFF)
            matched, where = handoff.id, _ticket_of(session, handoff, event.target)
            if event.held and handoff.id != event.handoff_id:  # a newer handoff is on the ticket: its own answer says
                return Received("ignored", "a newer handoff is on the ticket", matched)
            # Read under the handoff's row lock, held to the commit: the solve of the same update
            # (its own webhook, in another worker) waits for it, or is seen done. On PostgreSQL
            # both read "not yet" and the bot heard `assigned` after `completed` (a review).
            locked = session.execute(select(Handoff.completed_at).where(Handoff.id == handoff.id)
                                     .with_for_update()).first()
            if locked is None:  # retention removed it since the first look (another worker's pass)
                return Received("ignored", NO_HANDOFF)
            completed_at = locked.completed_at
            if completed_at is not None and event.at > completed_at:
                # Its ticket was solved and the bot told `completed`: a click on its old alert was
                # recorded, the bot heard `assigned` after it, and the channel that the agent took it.
                # Only an action after the solve: Zendesk's webhooks come in no set order, and "take
                # it and solve it" in one update may bring its assignment after its completion.
                return _recorded(session, event) or _completed_already(taken, where, event.target, matched)
            if event.previous_agent_id is not None and not _from_routings_choice(handoff, taken, event, services):
                # The ticket already had an agent, not routing's: moving it is not the end of a wait.
                return Received("ignored", REASSIGNED)
            routed = event.held or _routed_to(handoff, event, services)
            # Taken: by anyone, unless routing's own choice holds it and someone else takes it now — not
            # its holder reported again by a vendor that says who owns it, not who took it (Salesforce:
            # any edit of the case sends its owner; recorded, it was a wait nobody observed).
            reported_again = event.owner_only and taken is not None and taken.agent_id == event.agent_id
            # Nor the agent found holding it (`held`) taking it at the same target: Dana clicking the
            # Claim under the line naming her took it over from herself — her time holding it counted
            # as an observed wait, and a second "took this handoff" went to the channel (a review).
            took_own = taken is not None and taken.event_id.startswith(answers.HELD_EVENT) \
                and taken.target == event.target and taken.agent_id == event.agent_id
            if taken is not None and (routed or not taken.routed or reported_again or took_own):
                return _recorded(session, event) or _taken_already(taken, where)
            # The bot hears of any agent taking its handoff, even one routing chose itself.
            # Not once `completed` is owed: "take it and solve it" may bring the solve first, and the
            # bot heard `assigned` after `completed`, a step back from the end (README: it never does).
            # The agent is still recorded, for a read. A bot that did not ask for `completed` hears
            # `assigned` as before (and then no `delivered` after it).
            named = _ticket_named(event)
            if handoff.id == event.handoff_id and (revived := revive_named(session, handoff.id, event.target, named)):
                session.expire(handoff, ["deliveries"])  # the `assigned` below tells the ticket as it is now
                where = named
            owed = not _completed_owed(session, handoff.id) and _owe_callback(session, services, handoff, event, routed)
            # The team whose agents take it: the one its conversation's tickets stay with, where they do.
            team = str(answers.as_told(handoff, handoff.deliveries).assignment.get("team") or "")
            since = _waiting_since(session, handoff, event)
            wait = max(0, int((event.at - since).total_seconds()))
            taking = dict(target=event.target, vendor_ticket_id=_ticket_named(event), team=team,
                          agent_id=event.agent_id, agent_name=event.agent_name, event_id=event.event_id,
                          assigned_at=event.at, wait_seconds=wait, routed=routed)
            if taken is not None:  # routing's choice gives way: this agent is the one the customer waited for
                # Only while it is still routing's: of two takers at once (or two copies of this
                # event), the second's update waits for the first's commit, then matches nothing.
                replaced = session.execute(update(Assignment).where(Assignment.id == taken.id, Assignment.routed)
                                           .values(**taking)).rowcount
                if not replaced:
                    session.expire(taken)
                    return _recorded(session, event) or _taken_already(assignment_of(session, matched), where)
            else:
                session.add(Assignment(handoff_id=handoff.id, handed_off_at=since, **taking))
    except IntegrityError:  # the same event, or another report for this handoff, committed first
        with services.db.reading() as session:
            duplicate = _recorded(session, event)
            taken = None if duplicate else assignment_of(session, matched)
        if again and taken is not None and taken.routed and not routed:
            return record(services, event, again=False)  # routing's report came first: take it over
        return duplicate or _taken_already(taken, where)
    if owed:
        services.wake_callbacks()  # `assigned`: committed above, so the loop finds it now
    if revived is not None:
        services.submit(revived)
    taker = Holder(event.target, event.agent_id, event.agent_name, first=True, handoff_id=matched)
    with log_context(handoff_id=matched):
        log.info("assignment recorded", extra={"target": event.target, "team": team, "wait_seconds": wait,
                                               "routed": routed})
    if routed:
        return Received("recorded", ROUTED, matched, holder=taker, ticket_id=where, held=matched)
    services.observed_wait.forget(team)  # this process quotes the new figure at once
    return Received("recorded", f"assigned after {wait} s", matched, holder=taker, ticket_id=where, held=matched)


def held(services: Services, handoff_id: str, target: str, ticket_id: str, agent_id: str, *,
         merged: bool = False, agent_name: str | None = None) -> Received:
    """The vendor's answer to `handoff_id`'s update of its conversation's ticket says an agent has
    that ticket (`Outcome.holder`): they hold the handoff — the bot hears who, in its read and its
    `assigned` callback — though no vendor event comes, their assignee unchanged. Recorded as
    routed (no wait was observed: nobody took it); an agent who takes the ticket from them replaces
    them, as one taking it from routing's choice does. Only for `handoff_id`: a newer handoff on
    the ticket has an answer of its own (it may have found the ticket solved: nobody's). Zendesk
    names no agent in its events either: the agent's id only. `merged`: the ticket is the one the
    handoff's own was merged into (`connector.merges`), its conversation's link names it — the
    handoff is found through that link, not where it was delivered. `agent_name`: as the agent's own
    take of an earlier handoff on the ticket was recorded (a Slack claim's), when that is who it is."""
    event = AssignmentEvent(target=target, event_id=f"{answers.HELD_EVENT}{handoff_id}", ticket_id=ticket_id,
                            handoff_id=handoff_id, agent_id=agent_id, agent_name=agent_name, at=utcnow(),
                            named_in=None if merged else ticket_id, held=True)
    return record(services, event)


def _taken_already(taken: Assignment | None, where: str | None) -> Received:
    holder = Holder(taken.target, taken.agent_id, taken.agent_name, first=False) if taken is not None else None
    return Received("ignored", "the ticket's newest handoff was assigned already", holder=holder, ticket_id=where,
                    held=taken.handoff_id if taken is not None else None)


def _completed_already(taken: Assignment | None, where: str | None, target: str, handoff_id: str) -> Received:
    """The agent is told the handoff was completed (with who took it, if anyone did)."""
    holder = Holder(taken.target, taken.agent_id, taken.agent_name, first=False, completed=True) if taken is not None \
        else Holder(target, "", None, first=False, completed=True)
    return Received("ignored", COMPLETED, holder=holder, ticket_id=where, held=handoff_id)


def _ticket_of(session: Session, handoff: Handoff, target: str) -> str | None:
    """The handoff's ticket at `target` as a read names it — the one its messages opened where its own
    delivery gave up too: a take of that one was recorded and told nobody (no "took this handoff" in
    the Slack thread, a live Claim button on its alert and on another target's, a review)."""
    return next((t["id"] for t in _tickets(session, handoff) if t["target"] == target), None)


def complete(services: Services, event: CompletionEvent) -> Received:
    """The handoff whose ticket was solved: recorded (`completed_at`, which a read shows, and which
    ends the wait it quotes), and its `completed` status callback owed if its bot wants it. A bot
    that did not ask — one without a signing secret cannot — read "someone will reply in about 5
    minutes" of a ticket solved days before. Once: a copy of the event finds it recorded."""
    with services.db.session() as session:
        handoff = delivered_to(session, event)
        # Each row locked, to the commit, as it is kept: another worker's retention pass may have
        # forgotten one since it was read — its `completed` broke the callbacks' foreign key (a 500
        # to the vendor, the message's later events unrecorded), or "recorded already" was said.
        solved = [each for each in _solved_with(session, handoff, event) if _locked(session, each.id)]
        if not solved:
            return Received("ignored", NO_HANDOFF)
        handoff_id = handoff.id if handoff is not None and handoff in solved else solved[0].id
        first = owed = False
        newly: list[str] = []
        for each in solved:
            recorded, told = _completed(session, services, each, event)
            first, owed = first or recorded, owed or told
            newly += [each.id] if recorded else []
        if not first and not owed:
            return Received("duplicate", "the handoff's completion was recorded already", handoff_id)
    if owed:
        services.wake_callbacks()  # `completed`
    services.tell_solved(newly, event.target)  # a Slack alert's Claim button goes
    with log_context(handoff_id=handoff_id):
        log.info("completion recorded", extra={"target": event.target})
    return Received("recorded", "completed", handoff_id)


def _solved_with(session: Session, handoff: Handoff | None, event: CompletionEvent) -> list[Handoff]:
    """What the solve of `event`'s ticket completes, newest first (the order locks are taken in):
    `handoff`, the newest delivered to it; the earlier handoffs the ticket holds (a later one updated
    it, or their messages opened it: each kept quoting its wait, its bot never heard `completed`);
    and the handoffs of the conversations linked to it (`_linked_handoffs`)."""
    found = [] if handoff is None else [handoff, *_earlier_on_ticket(session, handoff, event.target, event.ticket_id)]
    seen = {each.id for each in found}
    found += [each for each in session.scalars(_linked_handoffs(event)) if each.id not in seen]
    return sorted(found, key=lambda each: (each.created_at, each.id), reverse=True)


def _linked_handoffs(event: AssignmentEvent | CompletionEvent | MergeEvent) -> Select[tuple[Handoff]]:
    """The handoffs of the conversations whose link at the target names the event's ticket, stored by
    the event (give or take TICKET_HAD_ONE_SKEW: a customer back just after a solve is not done) and
    delivered to a ticket there (by their own delivery or a batch of their messages): their own
    ticket was merged into this one (`connector.merges` moves the link; so does a later handoff's
    update that followed the merge), or closed or deleted without the connector hearing of it before
    the conversation went on on this one (its successor). The link names one ticket per conversation and target, so
    nothing of a conversation that moved on is taken. Those solved already too: a copy of a solve
    finds them, and is answered as one (`_completed` changes nothing of theirs)."""
    follow_up = aliased(Handoff)
    linked = _conversation_linked_to(event.target, event.ticket_id)
    there = and_(Delivery.target == event.target, Delivery.vendor_id.is_not(None), Delivery.vendor_id != "")
    # Two EXISTS, not `handoff_id IN (its messages)` beside its own: PostgreSQL planned that as a
    # hashed subplan reading the whole handoffs table, twice (89 ms at 200k handoffs, for every
    # event on a solved ticket; a review).
    reached = or_(exists().where(Delivery.handoff_id == Handoff.id, there),
                  exists().where(follow_up.follows_id == Handoff.id, Delivery.handoff_id == follow_up.id, there))
    return select(Handoff).where(linked, reached, Handoff.follows_id.is_(None),
                                 Handoff.created_at <= event.at + TICKET_HAD_ONE_SKEW)


def _opened_by_us(session: Session, event: AssignmentEvent | CompletionEvent | MergeEvent) -> bool:
    """Whether a delivery of ours (a handoff's, or a batch of its messages') made the event's ticket."""
    made = select(Delivery.id).where(Delivery.target == event.target, Delivery.vendor_id == event.ticket_id,
                                     Delivery.state == "created")
    return session.scalars(made.limit(1)).first() is not None


def _newest_linked(session: Session, event: AssignmentEvent | CompletionEvent | MergeEvent) -> Handoff | None:
    """The newest of `_linked_handoffs` still waiting, else the newest: the one an agent taking the
    ticket takes — not for a Slack click, whose thread says which handoff it is (`named_in`). A
    customer's two chats merged into one ticket, the newer one's solved before the older one's was
    merged in: the take went to the completed one, and the waiting one was never assigned (a review)."""
    if isinstance(event, AssignmentEvent) and event.named_in is not None:
        return None
    return session.scalars(_linked_handoffs(event).order_by(Handoff.completed_at.is_(None).desc(),
                                                            Handoff.created_at.desc(), Handoff.id.desc())
                           .limit(1)).first()


def _locked(session: Session, handoff_id: str) -> bool:
    """`handoff_id`'s row locked to the commit; False when it is gone (retention forgot it)."""
    return session.execute(select(Handoff.id).where(Handoff.id == handoff_id).with_for_update()).first() is not None


def _completed(session: Session, services: Services, handoff: Handoff, event: CompletionEvent) -> tuple[bool, bool]:
    """`handoff` recorded as solved at `event.at` and its `completed` owed if its bot asked: whether
    each was new (a copy of the event finds both done)."""
    # The row's lock, to the commit, orders it with an assignment being recorded (`record`).
    first = session.execute(update(Handoff).where(Handoff.id == handoff.id, Handoff.completed_at.is_(None))
                            .values(completed_at=event.at).execution_options(synchronize_session=False))
    callback_url = callbacks.url_for(handoff.packet, "completed")
    owed = False
    if callback_url is not None:
        tickets = _tickets(session, handoff)
        new = callbacks.row(handoff, "completed", callback_url, tickets, _told_at(session, handoff, event.at),
                            primary=_ticket_told(session, tickets, event.target, event.ticket_id))
        owed = callbacks.add(session.connection(), services.db, new)
    return bool(first.rowcount), owed


def _earlier_on_ticket(session: Session, handoff: Handoff, target: str, ticket_id: str) -> list[Handoff]:
    """The handoffs before `handoff` delivered to the ticket and not solved yet, newest first
    (the order `delivered_to` took the newest in: locks are taken in one order) — by their own
    delivery, or by a batch of their messages that opened it (as every read shows it, `answers.rescued`:
    such a handoff stayed unsolved; a review)."""
    on_ticket = (select(func.coalesce(Handoff.follows_id, Handoff.id)).join(Delivery, Delivery.handoff_id == Handoff.id)
                 .where(Delivery.target == target, Delivery.vendor_id == ticket_id))
    return list(session.scalars(
        select(Handoff)
        .where(Handoff.id.in_(on_ticket), Handoff.follows_id.is_(None), Handoff.completed_at.is_(None),
               Handoff.id != handoff.id, Handoff.created_at <= handoff.created_at)
        .order_by(Handoff.created_at.desc(), Handoff.id.desc())))


def _waiting_since(session: Session, handoff: Handoff, event: AssignmentEvent) -> dt.datetime:
    """When the customer began waiting for the agent `event` reports: the earliest handoff on the
    ticket still unsolved and taken by nobody since the last one taken. A re-escalation ("anyone
    there?") comes precisely when nobody answers: timed from it, the slowest waits went into the
    observed median as 0 s, and the next customers were quoted a minute (a review)."""
    since = handoff.created_at
    for earlier in _earlier_on_ticket(session, handoff, event.target, _ticket_named(event)):
        if assignment_of(session, earlier.id) is not None:
            break  # served: the wait after it began with the next handoff
        since = earlier.created_at
    return since


def _tickets(session: Session, handoff: Handoff) -> list[dict[str, Any]]:
    """The handoff's tickets as a read tells them (`answers.rescued`): `assigned` and `completed` said
    `failed` with no id for the ticket its messages opened, which `delivered` and every read named."""
    later = answers.reached_later(session, [handoff]).get(handoff.id, [])
    deliveries = answers.rescued(handoff.deliveries, later) if later else handoff.deliveries
    return [callbacks.ticket(d.target, d.state, d.vendor_id, d.url) for d in deliveries]


def _ticket_at(tickets: list[dict[str, Any]], target: str, ticket_id: str) -> dict[str, Any]:
    """The ticket the event is about; its id from the event, which may precede the delivery's record."""
    taken = next((t for t in tickets if t["target"] == target), callbacks.ticket(target, "pending", None, None))
    return {**taken, "id": ticket_id}


def _ticket_told(session: Session, tickets: list[dict[str, Any]], target: str, ticket_id: str) -> dict[str, Any]:
    """The ticket a vendor's event is about as the bot's `assigned` or `completed` names it
    (`_ticket_at`) — the handoff's own, or one its conversation reached by its link (its own ticket
    merged into this one): that one's page then, as the link keeps it, not its own ticket's beside
    the other's number."""
    told = _ticket_at(tickets, target, ticket_id)
    if any(t["target"] == target and t["id"] not in (None, ticket_id) for t in tickets):
        told = {**told, "url": session.scalars(select(ConversationLink.url).where(
            *ConversationLink.naming(target, ticket_id)).limit(1)).first()}
    return told


def _ticket_named(event: AssignmentEvent) -> str:
    """The ticket `event` took: where the action came from (`named_in`) when the vendor says — a
    Slack click on a re-escalation's reply is on a message in the alert's thread, and the alert is
    the ticket (the reply's own id was the bot's `ticket.id` beside the alert's url) — else its ticket."""
    return event.named_in or event.ticket_id


def _completed_owed(session: Session, handoff_id: str) -> bool:
    """Whether `completed` is owed for the handoff: its row, whatever became of it. One given up
    (the bot answered 404 once) may be resent by an operator, and went out before an `assigned`
    written after it still pending: the bot ended on `assigned` for a solved ticket."""
    return session.scalars(select(Callback.id).where(Callback.handoff_id == handoff_id,
                                                     Callback.state == "completed").limit(1)).first() is not None


def _owe_callback(session: Session, services: Services, handoff: Handoff, event: AssignmentEvent,
                  routed: bool) -> bool:
    """The `assigned` status callback, in the assignment's transaction, if the bot asked for it
    (True: a row was added). `routed` tells the bot the agent is routing's own choice, who may
    still give way to another (GET shows who holds it then; the bot gets one `assigned`)."""
    url = callbacks.url_for(handoff.packet, "assigned")
    if url is None:
        return False
    tickets = _tickets(session, handoff)
    agent = {"id": event.agent_id, "name": event.agent_name, "target": event.target, "routed": routed}
    # A Slack click's ticket is the alert its thread is in (`_ticket_named`): its reply's page is kept.
    primary = _ticket_at(tickets, event.target, _ticket_named(event)) if event.named_in is not None \
        else _ticket_told(session, tickets, event.target, event.ticket_id)
    new = callbacks.row(handoff, "assigned", url, tickets, _told_at(session, handoff, event.at), agent=agent,
                        primary=primary)
    return callbacks.add(session.connection(), services.db, new)


def _told_at(session: Session, handoff: Handoff, at: dt.datetime) -> dt.datetime:
    """The `at` a vendor's event is told to the bot with: its time, but never before the handoff's
    callbacks owed already. Zendesk's times are whole seconds (and a vendor's clock may run behind
    ours, `CLOCK_SKEW`): a ticket a trigger assigned in the second it was made was told `assigned`
    at an instant before `queued` and `delivered`, and a bot ordering by `at` (README) ended on
    "waiting" while an agent had it (a review)."""
    latest = session.scalar(select(func.max(Callback.created_at)).where(Callback.handoff_id == handoff.id))
    return max(at, handoff.created_at, latest or handoff.created_at)


def _from_routings_choice(handoff: Handoff, taken: Assignment | None, event: AssignmentEvent,
                          services: Services) -> bool:
    """The agent `event` takes the ticket from is the one routing put on it: a sticky agent the
    ticket was made with, recorded as routed or not reported at all (Zendesk may send no event for
    a ticket created assigned). An agent taking it from them is the one the customer waited for."""
    if taken is not None:
        return bool(taken.routed) and taken.agent_id == event.previous_agent_id
    previous = replace(event, agent_id=event.previous_agent_id or "")
    return _routed_to(handoff, previous, services)


def _routed_to(handoff: Handoff, event: AssignmentEvent, services: Services) -> bool:
    """Routing put this agent on the ticket itself (a sticky previous agent, a rule's assignee): the
    vendor reports our own choice, made before anyone was free, not a wait that was observed."""
    # Where a sticky agent goes (routing.yaml's `agent_fields:`), and the adapter's own field, where a
    # rule's or team's agent goes whatever `agent_fields:` says (`routing.name_routed_agent`): read from
    # the first alone, a rule's assignee at a vendor it leaves out was an observed wait of seconds, and
    # pulled the team's quoted wait down (a routing review).
    fields = {compiled(services.mappings.routing)["agent_fields"].get(event.target),
              registry.agent_fields().get(event.target)} - {None}
    chosen = (handoff.assignment.get("targets") or {}).get(event.target) or {}
    return any(chosen.get(field) is not None and str(chosen[field]) == event.agent_id for field in fields)


def _recorded(session: Session, event: AssignmentEvent) -> Received | None:
    handoff_id = session.scalars(select(Assignment.handoff_id).where(
        Assignment.target == event.target, Assignment.event_id == event.event_id)).first()
    return Received("duplicate", "this event was recorded already", handoff_id) if handoff_id else None


def delivered_to(session: Session, event: AssignmentEvent | CompletionEvent | MergeEvent) -> Handoff | None:
    """The newest handoff delivered to this ticket before `at`, else the one the payload names if
    it was delivered to `target`: only while its delivery may have made a ticket not recorded yet
    (the event may come first: `_may_have_unrecorded_ticket`) — others can write that name
    (Zendesk's external_id: any integration or agent), and it would otherwise mark a handoff taken
    or solved by a ticket it never reached. Where the vendor says where the action came from
    (`named_in`, the thread a Slack click was in), a handoff delivered to that thread is taken by
    name too (the newest handoff there instead, when a newer one superseded it) — and one not
    recorded yet only from a message of its own in the channel its delivery said (`named_alone`,
    `named_sent_to`) or from its conversation's thread (a re-escalation's reply).

    Agents take a handoff, not the messages that followed it (`follow_ups`): a follow-up found
    here answers for its handoff. It is found only when no handoff is: one named by the payload
    (a Slack alert it posted), or one that opened the ticket when its handoff gave up there.

    A ticket a conversation's own was merged into (the conversation's link names it) is that
    conversation's too: its newest handoff is found where no handoff was delivered to the ticket by
    then (`_newest_linked`), or the one delivered was completed and it waits — an agent taking it
    took the customer's problem, its solve solved it."""
    delivered_here = (select(Handoff).join(Delivery, Delivery.handoff_id == Handoff.id)
                      .where(Delivery.target == event.target, Handoff.created_at <= event.at + CLOCK_SKEW))
    on_ticket = (delivered_here.where(Delivery.vendor_id == event.ticket_id)
                 .order_by(Handoff.created_at.desc(), Handoff.id.desc()).limit(1))
    # The ticket's newest handoff then; else the newest of a conversation whose own ticket was merged
    # into it (before one stored just after the event: a customer back after the solve was completed)
    # — unless a handoff of ours opened this ticket: then it is that one's, an event racing our record
    # of a brand-new ticket (a conversation's successor of its closed ticket, its link naming it).
    direct = on_ticket.where(Handoff.follows_id.is_(None))
    handoff = session.scalars(direct.where(Handoff.created_at <= event.at + TICKET_HAD_ONE_SKEW)).first()
    if handoff is not None and handoff.completed_at is not None:
        # Solved once, and another ticket of a conversation merged into it since (a successor merged
        # back into the conversation's first case, a customer's two chats): the customer waits on the
        # linked handoff, and an agent taking the ticket took that one — matched to the solved one,
        # it was ignored. Any waiting one: the solved conversation's link names the ticket too.
        linked = _newest_linked(session, event)
        handoff = linked if linked is not None and linked.completed_at is None else handoff
    handoff = handoff \
        or (None if _opened_by_us(session, event) else _newest_linked(session, event)) \
        or session.scalars(direct).first()
    if handoff is None and event.handoff_id:
        named = delivered_here.where(Handoff.id == event.handoff_id)
        if isinstance(event, AssignmentEvent) and event.named_in is not None:
            named = named.where(or_(Delivery.vendor_id == event.named_in, _unrecorded_from(event)))
            # A button on an older re-escalation's reply names a handoff the newer one superseded:
            # the click takes the newest on that ticket, as a click on the alert itself does (it
            # took the old one, the newest kept waiting, and a second agent took that one too).
            newest = _newest_then(session, delivered_here.where(Delivery.vendor_id == event.named_in,
                                                                Handoff.follows_id.is_(None))
                                  .order_by(Handoff.created_at.desc(), Handoff.id.desc()).limit(1), event.at)
            handoff = session.scalars(named).first()
            if handoff is not None and newest is not None and \
                    (newest.created_at, newest.id) > (handoff.created_at, handoff.id):
                handoff = newest
        else:
            handoff = session.scalars(named.where(_may_have_unrecorded_ticket)).first()
    if handoff is None:
        handoff = session.scalars(on_ticket).first()
    if handoff is not None and handoff.follows_id is not None:
        handoff = session.get(Handoff, handoff.follows_id)
    return handoff


# A delivery whose ticket may exist at the vendor without our record of it: in flight or retrying,
# or given up (dead, refused after a timeout: `failed`, or dismissed since) with an attempt whose outcome was unknown
# — `outcome_unknown` is never cleared once set: a create that timed out may still land after a
# later lookup found nothing, so the window stays open for such a delivery. Given up knowing nothing was
# made, it has no ticket, and a name any integration can write kept it open to a made-up assignment
# or completion for ever.
_may_have_unrecorded_ticket = and_(
    Delivery.vendor_id.is_(None),
    or_(Delivery.state == "pending",
        and_(Delivery.state.in_(("dead", "failed", DISMISSED)), Delivery.outcome_unknown.is_(True))))


def _unrecorded_from(event: AssignmentEvent) -> ColumnElement[bool]:
    """A named handoff whose ticket may not be recorded yet, taken from where `event` came: a
    click on a message of its own (an alert: `named_alone`), or one in the thread of the
    conversation's ticket (a re-escalation's reply). A button a bot's own blocks carried elsewhere
    (`vendor_extra.slack`) took any such handoff — one retrying for minutes too."""
    if event.named_alone:
        # Only where its delivery said its unanswered post went (`OutcomeUnknown.sent_to`): a
        # click in the moment between Slack's answer and our record of it is not taken (the
        # agent clicks again, on a recorded alert), a forged button in another channel neither.
        said = [Delivery.sent_to[key].as_string() == value for key, value in event.named_sent_to.items()]
        return and_(_may_have_unrecorded_ticket, *said) if said else false()
    return and_(_may_have_unrecorded_ticket, _conversation_linked_to(event.target, event.named_in))


def _conversation_linked_to(target: str, ticket_id: str) -> ColumnElement[bool]:
    """Whether the handoff's conversation's link at `target` names ticket `ticket_id`."""
    return exists().where(*ConversationLink.naming(target, ticket_id), ConversationLink.bot_id == Handoff.bot_id,
                          ConversationLink.conversation_id == Handoff.conversation_id)


def _newest_then(session: Session, newest_first: Any, at: dt.datetime) -> Handoff | None:
    """The first of `newest_first` (handoffs newest first, none stored later than CLOCK_SKEW after
    `at`) that was stored by `at` (give or take TICKET_HAD_ONE_SKEW); else, when the ticket had none
    then, its first one stored within CLOCK_SKEW (auto-assignment racing our record)."""
    return session.scalars(newest_first.where(Handoff.created_at <= at + TICKET_HAD_ONE_SKEW)).first() \
        or session.scalars(newest_first).first()


def _carried_here(session: Session, event: AssignmentEvent, found: Handoff,
                  taken: Assignment | None) -> tuple[Handoff, Assignment | None]:
    """Our own answer (`held`) for a handoff newer than the ticket's newest: one whose own delivery
    there was refused, its brief carried to the ticket by a batch of its messages — that handoff is
    the one waiting on it (matched to the older one, the batch's reply named who had the customer
    and the handoff stayed nobody's). Only ours: a vendor's payload names what anyone can write."""
    named = session.get(Handoff, event.handoff_id) if event.handoff_id else None
    if named is None or (named.bot_id, named.conversation_id) != (found.bot_id, found.conversation_id) \
            or (named.created_at, named.id) <= (found.created_at, found.id):
        return found, taken
    return named, assignment_of(session, named.id)


def _waiting_handoff(session: Session, event: AssignmentEvent) -> tuple[Handoff | None, Assignment | None]:
    """The handoff this event is about, and who took it already (None: it is still waiting)."""
    handoff = delivered_to(session, event)
    if handoff is None:
        return None, None
    # Only the newest handoff on the ticket is waiting: older ones were superseded by it.
    return handoff, assignment_of(session, handoff.id)


def to_mark(session: Session, handoff_id: str, target: str, holder: Holder | None) -> list[tuple[Holder, str]]:
    """(holder, ticket) for each of the handoff's tickets at `target` that should say who took it
    (`Adapter.taken_elsewhere`); `holder` None: whoever took it, not routing's own choice (nobody:
    nothing to mark) — at another target, or at this one before its ticket was recorded (a claim on
    a Slack alert whose posting timed out found no ticket to answer on)."""
    if holder is None:
        taken = assignment_of(session, handoff_id)
        if taken is None or taken.routed:
            return []
        holder = Holder(taken.target, taken.agent_id, taken.agent_name, first=True, handoff_id=handoff_id)
    # Its own ticket, or the one a batch of its messages opened when its own delivery was given up.
    tickets = session.scalars(select(Delivery.vendor_id).distinct().join(Handoff).where(
        or_(Handoff.id == handoff_id, Handoff.follows_id == handoff_id), Delivery.target == target,
        Delivery.state.in_(DONE), Delivery.vendor_id.is_not(None))).all()
    return [(holder, vendor_id) for vendor_id in tickets]


def assignment_of(session: Session, handoff_id: str | None) -> Assignment | None:
    if handoff_id is None:
        return None
    return session.scalars(select(Assignment).where(Assignment.handoff_id == handoff_id)).first()
