"""The answer a bot gets (contract §3), rebuilt from stored rows so every read says the same thing."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters import registry
from adapters.base import SAID_WHOLE, TICKET_MADE, refused_routing_fields, routings_agents
from adapters.errors import PAGE_MARK, TRANSPORT_FAILURE

from . import routing
from .brief import parts_present
from .customer_message import FAILED, context_lost_message, told_minutes
from .models import DISMISSED, DONE, Assignment, Callback, Delivery, Handoff, utcnow
from .text_rules import rfc3339_utc

T = TypeVar("T")

_ASSIGNMENT_KEYS = ("team", "queue", "agent", "priority", "rule", "trace")


def handoff_status(deliveries: Sequence[T], target: Callable[[T], str] = attrgetter("target"),
                   state: Callable[[T], str] = attrgetter("state")) -> str:
    """delivered: all done · failed: all given up · pending: none done, one or more still being
    tried (some may have given up) · partial: some done, the others still tried or given up.
    One target refused and another still retrying was `partial` — "some done" — while no ticket
    existed anywhere, and the answer quoted a wait (`delayed` only looks at `pending`).
    Of the deliveries that `counted` keeps: the status says whether someone has the handoff, and
    the customer message, the wait and the status callbacks follow it. One rule for rows of either
    shape, as `rescued`'s (`callbacks` passes `itemgetter`s)."""
    states = [state(d) for d in counted(deliveries, target)]
    done = [s in DONE for s in states]
    given_up = [s in GIVEN_UP for s in states]
    if all(done):
        return "delivered"
    if all(given_up):
        return "failed"
    if not any(done):
        return "pending"
    return "partial"


def counted(deliveries: Sequence[T], target: Callable[[T], str] = attrgetter("target")) -> list[T]:
    """Of a handoff's deliveries, those whose tickets say whether someone has it: all but the
    built-in preview's beside a vendor's, which reaches no agent (`registry.reaches_agents`). Its
    ticket is still listed in `tickets`, and its receipt in `context_receipt`."""
    targets = [target(d) for d in deliveries]
    return [d for d in deliveries if registry.reaches_agents(target(d), targets)]


# What an answer reads of each delivery: intake reads just these columns back after its wait.
DELIVERY_COLUMNS = (Delivery.target, Delivery.state, Delivery.vendor_id, Delivery.url, Delivery.attempts,
                    Delivery.last_error, Delivery.receipt, Delivery.next_attempt_at, Delivery.sent_to)


def all_finished(deliveries: Iterable[Any]) -> bool:
    return all(d.state != "pending" for d in deliveries)


# Given up for good, as a bot reads it: `dismissed` (an operator put it aside) is not in the
# contract's statuses (§3), and to the bot it is what `failed` says: no ticket there, none coming.
GIVEN_UP = ("failed", "dead", "dismissed")
_AS_THE_BOT_READS = {"dismissed": "failed"}


def bot_state(state: str) -> str:
    return _AS_THE_BOT_READS.get(state, state)


def _ticket(delivery: Any) -> dict[str, Any]:
    return {
        "target": delivery.target,
        "status": bot_state(delivery.state),
        "id": delivery.vendor_id,
        "url": delivery.url,
        "attempts": delivery.attempts,
        "error": for_bot(delivery.last_error),
    }


# What a bot is not told of a failure an adapter met on the way to its vendor (its messages begin
# as `adapters.errors.TRANSPORT_FAILURE` says): addresses (ZENDESK_BASE_URL may be a proxy's internal
# host; ticket links are the account's own for that reason) and whatever the transport libraries say
# of a connection (they quote host names: "Failed to resolve 'zendesk-proxy.internal'", "certificate
# is not valid for '10.20.30.40'"), from the first sign of it on. A vendor's refusal is the vendor's
# words, which a bot's developer needs whole ("Attach the warranty certificate", a validation rule).
_ADDRESS = re.compile(r"https?://[^\s'\"<>]+")
_QUOTED = re.compile(r"'[^'\n]*'")
_HOST_PORT = re.compile(r"\b[\w.-]+:\d{2,5}\b")
_TRANSPORT = re.compile(
    r"\b\w*HTTPS?Connection|\b\w*ConnectionPool|\b\w+Error\(|\[Errno|Failed to (?:resolve|establish)|certificate"
    r"|Max retries|<urllib3|<urlopen|urlopen error|\bSSL:|hostname '|\bhost=|\bport=")


def for_bot(error: str | None) -> str | None:
    if error and PAGE_MARK in error:  # a proxy's page, after the vendor's or our words: admins read it
        error = f"{error[:error.index(PAGE_MARK)]} (what it said is on the admin page)"
    if not error or not TRANSPORT_FAILURE.match(error):
        return error
    # What is left past the libraries' first words is still theirs: a host they quote, a host:port.
    text = _HOST_PORT.sub("…", _QUOTED.sub("'…'", _ADDRESS.sub("…", error)))
    transport = _TRANSPORT.search(text)
    if transport is None:
        return text
    return f"{text[:transport.start()].rstrip(' :(')} (the connection's details are on the admin page)"


def receipts(deliveries: Iterable[Any], packet: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`context_receipt`: per target that finished, what reached it. Pending targets join when they
    finish: nothing has reached them yet. A target given up (`failed`, `dead`, `dismissed`) received
    nothing, and says so part by part — it was left out, and a receipt of `{}` beside a failed
    target told the bot of no lost context (the contract: "a handoff that loses context says so")."""
    said: dict[str, dict[str, Any]] = {}
    for d in deliveries:
        if d.receipt is not None:
            said[d.target] = receipt_for_bot(d.receipt)
        elif d.state in GIVEN_UP:
            reason = f"nothing reached {d.target}: its delivery was given up ({d.state}; its ticket's error says why)"
            said[d.target] = {"delivered": [], "dropped": [{"part": part, "reason": reason}
                                                          for part in parts_present(packet)]}
    return said


# A stored receipt's mark, never shown: its ticket was recorded from the vendor's own event, its looks
# failing or finding nothing (`Outbox._taken_ticket`) — what reached it is not known (`_holds_the_transcript`).
UNVERIFIED = "_unverified"


def receipt_for_bot(receipt: dict[str, Any]) -> dict[str, Any]:
    """A receipt as a bot reads it: a reason for something `dropped` quotes the vendor's refusal, and
    that may be a proxy's page (a comment refused by a gateway's 413): cut as `for_bot` cuts errors.
    Without the marks kept for the connector's own reading (`UNVERIFIED`)."""
    if UNVERIFIED in receipt:
        receipt = {key: value for key, value in receipt.items() if key != UNVERIFIED}
    dropped = receipt.get("dropped") or []
    if not any(PAGE_MARK in str(entry.get("reason") or "") for entry in dropped):
        return receipt
    return {**receipt, "dropped": [{**entry, "reason": for_bot(entry.get("reason"))} for entry in dropped]}


@dataclass(frozen=True)
class Holder:
    """Who has a handoff, as its recorded `Assignment` says: an agent who took it, or routing's own
    (`routed`: a sticky rule's, on the ticket from its making), named as routing names its agent."""

    routed: bool
    agent: str
    agent_id: str = ""


# The event id of an agent found holding the conversation's ticket when a handoff updated it
# (`assignments.held`): recorded `routed` (nobody took it, no wait was observed), but the wait and
# message the customer was told at intake were said not knowing them — quoted on beside the agent
# who has it (a review). Answers read it as an agent who took it.
HELD_EVENT = "held:"


def holding(assignment: Assignment | None) -> Holder | None:
    """`render`'s `holder` for a handoff's recorded assignment (or none)."""
    return None if assignment is None else _holder(assignment.routed, assignment.agent_name, assignment.agent_id,
                                                   assignment.event_id)


def _holder(routed: bool | None, name: str | None, agent_id: str, event_id: str | None) -> Holder:
    return Holder(bool(routed) and not str(event_id or "").startswith(HELD_EVENT), name or agent_id, str(agent_id))


def _agent_now(handoff: Handoff, holder: Holder | None, deliveries: Sequence[Any]) -> dict[str, str | None]:
    """`assignment.agent` once someone is recorded holding the handoff: that agent — but routing's
    own agent keeps routing's label (Zendesk reports the assignee it was given by id alone, and
    "Dana Smith" became "381726354" in every read). Routing's own by its id: a ticket found held
    by another agent is recorded `routed` too, and kept routing's name for someone else.
    Nobody yet, and routing's agent never reached the ticket — the vendor refused them (the ticket
    made without them, waiting in its queue), or the handoff only added to the conversation's
    ticket, which routes nothing (a repeat onto a ticket handed back to its group): none — the
    answer named the customer's previous agent as the one to reply (a review)."""
    assignment, agents = handoff.assignment, routings_agents(handoff.assignment)
    if holder is None:
        placed = [agent for agent in agents if not _not_placed(agent, assignment, deliveries)]
        if not assignment.get("agent") or len(placed) == len(agents):
            return {}
        return {"agent": ", ".join(str(agent["label"]) for agent in placed) or None}
    chosen = next((agent for agent in agents if str(agent.get("id")) == holder.agent_id), None)
    if assignment.get("agent") and chosen is not None:
        return {} if len(agents) == 1 else {"agent": chosen["label"]}
    return {"agent": holder.agent}


class _Told:
    """A handoff as its bot and customer are told it while its conversation's tickets stay with
    another team than routing's (`routing.keep_with`): that team's name, queue and hours in its
    assignment, its message and wait; everything else the handoff's own."""

    def __init__(self, handoff: Any, kept: Mapping[str, Any]):
        self._handoff = handoff
        self.assignment = routing.kept_view(handoff.assignment)
        self.customer_message = kept.get("customer_message")
        self.estimated_wait_seconds = kept.get("estimated_wait_seconds")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handoff, name)


def as_told(handoff: Any, deliveries: Sequence[T], target: Callable[[T], str] = attrgetter("target"),
            state: Callable[[T], str] = attrgetter("state")) -> Any:
    """`handoff` as the bot and the customer are told it now: with the team its conversation's
    tickets stay with (`_Told`) while none of the targets that reach an agent opened a new ticket —
    one closed for good is followed by a new ticket where routing sends the repeat, and the answer
    says routing's team, its wait and hours again (as the handoff's own columns have them). Every
    reader of its message, wait or team goes through here: a `failed` callback read the columns
    and named routing's team where the answer named the kept one. Rows of either shape, as
    `handoff_status`'s."""
    kept = (handoff.assignment or {}).get("kept")
    if not isinstance(kept, Mapping):
        return handoff
    targets = [target(d) for d in deliveries]
    if any(state(d) == "created" and registry.reaches_agents(target(d), targets) for d in deliveries):
        return handoff
    return _Told(handoff, kept)


def _not_placed(agent: Mapping[str, Any], assignment: Mapping[str, Any], deliveries: Sequence[Any]) -> bool:
    """Routing's `agent` (`routings_agents`) was refused at its target, or went nowhere: that
    target's delivery updated a ticket (an update carries no assignee), or gave up — no ticket was
    made with them (the apology beside "Dana Smith" has it: a review)."""
    target, agent_id = agent.get("target"), agent.get("id")
    if target is None or agent_id is None:
        return False
    sent_as = {field for field, value in ((assignment.get("targets") or {}).get(target) or {}).items()
               if str(value) == str(agent_id)}
    return any(d.target == target and (d.state in ("updated", *GIVEN_UP) or sent_as & refused_routing_fields(d.receipt))
               for d in deliveries)


def render(handoff: Handoff, deliveries: Sequence[Any] | None = None, *,
           reached_later: Sequence[Any] = (), holder: Holder | None = None) -> dict[str, Any]:
    """`deliveries`: rows with the `DELIVERY_COLUMNS` read apart from the handoff (default: its own).
    `reached_later`: the finished deliveries of its follow-ups (`reached_later()`): where they opened
    a ticket its own delivery did not reach, or one in place of its closed one, the answer shows it.
    `holder`: who has it (`holding`, `taken`): `assignment.agent` names them — routing's pick
    until someone is recorded taking it. It stayed null after an agent took the handoff (the
    `assigned` callback named them; only the extension `assigned.agent_id` did in GET)."""
    deliveries = handoff.deliveries if deliveries is None else deliveries
    if reached_later:
        deliveries = rescued(deliveries, reached_later)
    status = handoff_status(deliveries)
    handoff = as_told(handoff, deliveries)
    # An agent has it: the wait quoted at intake is over, and the message says none (a failed
    # handoff keeps its apology: an agent may have taken a case whose comments failed). So once
    # the wait has run out with nobody on it. Routing's own agent (a sticky rule's, on the ticket
    # from its making, or the ticket's agent already: "routed") changes nothing the customer was told — the wait and
    # the team's hours were said knowing it ("someone will reply soon" at 22:00 on a Friday was false).
    # Solved (`completed_at`): the same — nobody is still to come, and no wait is quoted.
    live = status != "failed"
    message = handoff.customer_message
    if live and message and message.get("if_context_lost") and context_lost(deliveries, handoff.packet):
        message = context_lost_message(message["if_context_lost"])
    waited_for = live and ((holder is not None and not holder.routed) or handoff.completed_at is not None)
    delayed = waited_for or (live and wait_ran_out(handoff)) \
        or is_delayed(status, counted(deliveries), handoff.estimated_wait_seconds)
    # The message without the team's hours (`if_assigned`) once an agent has it, or once the hours
    # it told of are past: "away until 09:00 Monday" was still read on Tuesday afternoon.
    unhoured = waited_for or (live and hours_passed(handoff))
    # The team's hours as said now, where a midnight or its closing has passed since intake.
    hours_now = hours_said_now(message) if live and not unhoured else None
    agent = _agent_now(handoff, holder, deliveries)
    return {
        "id": handoff.id,
        "status": status,
        "conversation_id": handoff.conversation_id,
        "tickets": [_ticket(d) for d in deliveries],
        "assignment": {key: handoff.assignment.get(key) for key in _ASSIGNMENT_KEYS} | agent,
        "customer_message": shown_message(message, status, delayed=delayed, assigned=unhoured,
                                          hours_now=hours_now),
        "estimated_wait_seconds": shown_wait(handoff.estimated_wait_seconds, status, delayed=delayed),
        "context_receipt": receipts(deliveries, handoff.packet),
        "links": {"self": f"/v1/handoffs/{handoff.id}"},
    }


def context_lost(deliveries: Sequence[Any], packet: Mapping[str, Any]) -> bool:
    """The whole conversation reached no agent: every target has finished, and of the tickets an
    agent sees (`counted`) none holds all of the transcript the packet carried — each vendor refused
    it, or part of it (Zendesk's file: the start of a long one; Salesforce's comments; a thread's
    replies). The message then says so (`context_lost` of messages.yaml) instead of "they'll see our
    whole conversation, so you won't need to repeat yourself", beside a receipt saying the transcript
    was dropped (a review)."""
    seen = counted(deliveries)
    if any(d.state == "pending" for d in seen) or not any(d.state in DONE for d in seen):
        return False
    return not any(_holds_the_transcript(d.receipt or {}) for d in seen if d.state in DONE) \
        and "transcript" in parts_present(packet)


def _holds_the_transcript(receipt: Mapping[str, Any]) -> bool:
    """Whether a ticket's receipt says all of the transcript is on it: delivered, nothing of it
    dropped but what is whole elsewhere on it (a Slack alert's cut, whole in its thread; a Salesforce
    comment refused, whole in the case's Description). One recorded from the vendor's own event
    (`UNVERIFIED`) may well hold it: the ticket its create made, which an agent took — the customer
    is not told "I couldn't pass on our whole conversation" of it."""
    if receipt.get(UNVERIFIED):
        return True
    return "transcript" in (receipt.get("delivered") or ()) and not any(
        entry.get("part") == "transcript" and not any(mark in str(entry.get("reason") or "") for mark in SAID_WHOLE)
        for entry in receipt.get("dropped") or ())


def wait_ran_out(handoff: Any) -> bool:
    """The wait quoted at intake is over: a read three hours later, nobody on it yet, still said
    "about 5 minutes" (and 300 s); it now says that someone will reply as soon as they are free.
    Over when the minutes the customer was told are ("about 1 minute" for a 20 s wait), and only
    for a message stored with the words to say instead (`if_delayed`): one stored before them
    would say "about 5 minutes" beside no wait."""
    wait_s, message = handoff.estimated_wait_seconds, handoff.customer_message or {}
    if wait_s is None or not message.get("if_delayed"):
        return False
    told_s = told_minutes(wait_s) * 60  # the minutes the customer was told
    return utcnow() - handoff.created_at >= dt.timedelta(seconds=told_s)


def hours_passed(handoff: Any) -> bool:
    """The team's opening the message told of has come (`closed`: "we open again at 09:00 Monday";
    `closing`: "…and open again at 09:00 tomorrow"): what it says of the hours is over."""
    assignment = handoff.assignment or {}
    hours = assignment.get("business_hours") or {}
    opening = rfc3339_utc(hours.get("next_opening") if assignment.get("out_of_hours") else hours.get("reopens_at"))
    return opening is not None and utcnow() >= opening


def hours_said_now(message: Mapping[str, Any] | None) -> str | None:
    """The message with the team's hours as said now, where the words composed at intake read
    otherwise since — its "tomorrow" is today after the team's midnight, its "we close at 21:00"
    is past after 21:00 (`customer_message.compose`'s `later`) — else None."""
    now, said = utcnow(), None
    for variant in (message or {}).get("later") or ():
        since = rfc3339_utc(variant.get("from"))
        if since is None or since > now:
            break
        said = variant.get("text")
    return said


def is_delayed(status: str, deliveries: Iterable[Any], wait_s: int | None) -> bool:
    """Nobody has the handoff and the attempts so far failed (a vendor down), or none can be made
    before the wait would be over (its target paused for a rate limit): no wait can be promised
    yet (`shown_message`, `shown_wait`). One rule for the answers and the `queued` callback. Not
    while a failed attempt made its ticket all the same (`TICKET_MADE`: a case whose comments failed,
    an alert whose thread did): that ticket is in the agents' queue, as a finished one beside a
    failing target is (`partial`, its wait quoted) — the customer was told none, beside the case's
    "about 10 minutes" (a Salesforce review)."""
    made = any((getattr(d, "sent_to", None) or {}).get(TICKET_MADE) for d in deliveries)
    return status == "pending" and not made and any(d.last_error or _held_past(d, wait_s) for d in deliveries)


def _held_past(delivery: Any, wait_s: int | None) -> bool:
    """A delivery not to be attempted before the quoted wait is over: its target paused (a vendor's
    Retry-After, its per-minute allowance spent) — a wait of 5 minutes was quoted beside an hour's."""
    due = getattr(delivery, "next_attempt_at", None)
    if delivery.state != "pending" or due is None or wait_s is None:
        return False
    return due > utcnow() + dt.timedelta(seconds=wait_s)


def rescued(deliveries: Sequence[T], later: Iterable[T], target: Callable[[T], str] = attrgetter("target"),
            state: Callable[[T], str] = attrgetter("state"),
            ticket_id: Callable[[T], str | None] = attrgetter("vendor_id")) -> list[T]:
    """A handoff's deliveries, each given-up one whose target a follow-up reached since (`later`,
    oldest first) shown by the newest ticket it reached: `status: failed` with no ticket, beside a
    message promising a reply, contradicted itself, and no read of the handoff gave the bot the
    ticket's link — nor, beside another target's ticket, the alert its messages opened (`partial`,
    "nothing reached slack", a review). A target the handoff reached keeps its own ticket — unless
    its messages found that one closed or deleted and opened another: the conversation is there now
    (reads and callbacks linked the dead ticket, `assigned` naming the new one's id with the old
    one's url; a review).
    One rule for rows of either shape: the ORM's (answers) and the status callback's dicts
    (`callbacks.on_given_up`, pass `itemgetter`s)."""
    reached = {target(d): d for d in later if state(d) in DONE}

    def shown(d: T) -> T:
        newest = reached.get(target(d))
        return newest if newest is not None and (state(d) not in DONE or ticket_id(newest) != ticket_id(d)) else d

    return [shown(d) for d in deliveries]


def taken(session: Session, handoffs: Iterable[Handoff]) -> dict[str, Holder]:
    """Of `handoffs`, the ids someone has (an `Assignment`), each with who (`render`'s `holder`):
    for lists, in one query, so they say what a read of each says."""
    ids = [h.id for h in handoffs]
    if not ids:
        return {}
    rows = session.execute(select(Assignment.handoff_id, Assignment.routed, Assignment.agent_name,
                                  Assignment.agent_id, Assignment.event_id).where(Assignment.handoff_id.in_(ids)))
    return {handoff_id: _holder(routed, name, agent_id, event_id) for handoff_id, routed, name, agent_id, event_id
            in rows}


def reached_later(session: Session, handoffs: Iterable[Handoff]) -> dict[str, list[Any]]:
    """Of `handoffs`, those whose messages sent since (`follow_ups`) reached a ticket: by id, the
    follow-ups' finished deliveries, oldest first, for `render` (`rescued`: where a target gave up
    or its ticket was replaced). One query."""
    ids = [h.id for h in handoffs]
    if not ids:
        return {}
    opened = select(Handoff.follows_id, *DELIVERY_COLUMNS).join(Delivery, Delivery.handoff_id == Handoff.id) \
        .where(Handoff.follows_id.in_(ids), Delivery.state.in_(DONE)) \
        .order_by(Handoff.created_at, Handoff.id, Delivery.position)
    found: dict[str, list[Any]] = {}
    for row in session.execute(opened):
        found.setdefault(row.follows_id, []).append(row)
    return found


def shown_message(message: dict[str, Any] | None, status: str, *, delayed: bool = False, assigned: bool = False,
                  hours_now: str | None = None) -> dict[str, str] | None:
    """The customer message as the bot should show it now: its promise that someone will reply
    holds while any target has the handoff or is still being tried; once every one has given up
    (`failed`), the stored apology says so instead (`customer_message.compose`) — unless messages
    sent since (`follow_ups`) opened a ticket after all: `render` shows that ticket, and the status
    is no longer `failed`. `delayed` (no target has it, attempts failing): the message without its
    wait, where one was quoted. `assigned` (an agent has it, or the opening it told of has come:
    `hours_passed`): the message without the team's hours, where it said them. `hours_now` (a
    midnight or the closing passed since they were said: `hours_said_now`): the message with them as
    said now ("at 09:00 today"), in place of the one that says them — a quoted wait's stands until it is over."""
    if not message:
        return message
    if assigned and message.get("if_assigned"):
        return {"locale": message["locale"], "text": message["if_assigned"]}
    if hours_now and status != "failed" and (delayed or not message.get("if_delayed")):
        return {"locale": message["locale"], "text": hours_now}
    if delayed and message.get("if_delayed"):
        return {"locale": message["locale"], "text": message["if_delayed"]}
    if status != "failed":
        return {"locale": message["locale"], "text": message["text"]}
    if message.get("if_failed"):
        return {"locale": message.get("if_failed_locale") or message["locale"], "text": message["if_failed"]}
    return {"locale": "en", "text": FAILED}  # stored before apologies were composed: the built-in one


def shown_wait(seconds: int | None, status: str, *, delayed: bool = False) -> int | None:
    """The expected wait as the bot may quote it now: none once every target has given up — beside
    the apology it would promise a wait for nobody (the same rule as `shown_message`) — and none
    once an agent has the handoff (`status` a callback's `assigned` or `completed`): the wait is over;
    nor while nobody has it and its attempts are failing (`delayed`, as for `shown_message`)."""
    if delayed or status in ("assigned", "completed"):
        return None
    return None if status == "failed" else seconds


def render_follow_up(follow_up: Handoff, deliveries: Sequence[Any] | None = None) -> dict[str, Any]:
    """A batch of messages sent while a handoff waited (`follow_ups`): where each target has it.
    `deliveries` as for `render`."""
    deliveries = follow_up.deliveries if deliveries is None else deliveries
    first = (follow_up.packet.get("follow_up") or {}).get("first", 0)
    return {
        "id": follow_up.id,
        "handoff_id": follow_up.follows_id,
        "status": handoff_status(deliveries),
        "messages": len(follow_up.packet["transcript"]) - first,
        "received_at": follow_up.created_at.isoformat(),
        "tickets": [_ticket(d) for d in deliveries],
        "context_receipt": receipts(deliveries, follow_up.packet),
        "links": {"self": f"/v1/handoffs/{follow_up.follows_id}/messages"},
    }


def render_detail(handoff: Handoff, assigned: Assignment | None = None,
                  callbacks: Iterable[Callback] = (), follow_ups: Iterable[Handoff] = (), *,
                  whole_errors: bool = False) -> dict[str, Any]:
    """`whole_errors`: each delivery's state and last error as recorded (the admin page), not as a
    bot reads them."""
    follow_ups = list(follow_ups)  # loaded already: `reached_later` without another query
    body = render(handoff, reached_later=[d for f in follow_ups for d in f.deliveries if d.state in DONE],
                  holder=holding(assigned))
    body["created_at"] = handoff.created_at.isoformat()
    body["completed_at"] = handoff.completed_at.isoformat() if handoff.completed_at else None
    body["updated_at"] = max([handoff.updated_at, *(d.updated_at for d in handoff.deliveries)]).isoformat()
    body["deliveries"] = [
        {
            "target": d.target,
            "state": d.state if whole_errors else bot_state(d.state),
            "attempts": d.attempts,
            **({"rate_limited": d.rate_limited} if whole_errors else {}),  # the admin page's
            "next_attempt_at": d.next_attempt_at.isoformat() if d.state == "pending" else None,
            "last_error": d.last_error if whole_errors else for_bot(d.last_error),
            "payload": d.payload,
        }
        for d in handoff.deliveries
    ]
    body["assigned"] = None if assigned is None else {
        "target": assigned.target, "ticket_id": assigned.vendor_ticket_id, "agent_id": assigned.agent_id,
        "agent_name": assigned.agent_name, "assigned_at": assigned.assigned_at.isoformat(),
        "wait_seconds": assigned.wait_seconds, "routed": assigned.routed,
    }
    body["callbacks"] = [
        {
            "state": c.state,
            # Dismissed reads as given up: the contract's statuses are pending, sent and dead, and
            # for the bot it is the same — it will not come (last_error says why).
            "status": "dead" if c.status == DISMISSED else c.status,
            "attempts": c.attempts,
            "next_attempt_at": c.next_attempt_at.isoformat() if c.status == "pending" else None,
            "finished_at": c.finished_at.isoformat() if c.finished_at else None,
            "last_error": c.last_error,
        }
        for c in callbacks
    ]
    body["messages"] = [render_follow_up(f) for f in follow_ups]
    return body
