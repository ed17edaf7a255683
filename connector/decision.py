"""What intake decides before anything is stored: who takes the handoff, which targets get it,
what the customer is told and what wait to quote. The dry run (`preview`) decides the same way."""

from __future__ import annotations

import contextvars
import copy
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from adapters import registry
from adapters.errors import DeliveryError

from . import customer_message, routing
from .brief import MESSAGE_FOR_CUSTOMER
from .errors import ConfigError
from .mappings import Mappings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    assignment: dict[str, Any]
    targets: list[str]
    wait_seconds: int | None
    wait_source: str
    customer_message: dict[str, str]


def decide(packet: Mapping[str, Any], mappings: Mappings, adapters: Mapping[str, Any], *,
           ask_vendors: bool = True, observed_wait: Callable[[str], int | None] | None = None,
           deadline: float | None = None, now: dt.datetime | None = None) -> Decision:
    """One snapshot of the mappings for the whole decision. `ask_vendors=False` (dry runs) never
    calls a vendor, so a sticky rule falls back as if no previous agent were known.
    `observed_wait(team)` is the time to assignment seen recently (`connector.observed_wait`);
    `deadline` (a `time.monotonic()`) is when the request's sync budget ends; `now` is the moment
    calendars are read at (a dry run may ask about another; default: now)."""
    facts, now = routing.Facts(packet), now or dt.datetime.now(dt.UTC)  # the rules are checked once, for both
    sticky = routing.first_match(packet, mappings.routing, now=now, facts=facts)
    sticky = sticky if sticky is not None and sticky["then"].get("sticky") else None
    ask = _asking(packet, adapters, deadline) if ask_vendors else None
    assignment = routing.assign(packet, mappings.routing, now=now, facts=facts, ask=ask)
    if sticky is not None and not ask_vendors:
        # "no previous agent known" read as a fact about the customer; a delivery asks and may assign one (a review).
        assignment["trace"].append(f"dry run: the customer's previous agent is not looked up for sticky rule "
                                   f"{sticky['name']} (a delivery asks the vendors): its rule, team and agent "
                                   "may differ")
    targets = choose_targets(packet, assignment, list(adapters))
    preferred = (packet.get("routing") or {}).get("preferred_agent")
    routing.name_routed_agent(assignment, targets, mappings.routing, preferred)
    wait_seconds, wait_source, message = _worded(packet, assignment, assignment, mappings, observed_wait, now, "wait")
    # Kept with the decision for the agent's brief (`brief.message_for_customer`): the wait or the
    # opening the customer was promised ("about 30 minutes") was in no brief (a brief review).
    assignment[MESSAGE_FOR_CUSTOMER] = message["text"]
    return Decision(assignment=assignment, targets=targets, wait_seconds=wait_seconds, wait_source=wait_source,
                    customer_message=message)


def with_kept(packet: Mapping[str, Any], assignment: Mapping[str, Any], team: str, mappings: Mappings,
              targets: list[str], *, observed_wait: Callable[[str], int | None] | None = None,
              now: dt.datetime) -> dict[str, Any]:
    """`assignment` with what the bot and the customer are told while the conversation's tickets
    stay with `team` (`routing.keep_with`): that team's name, queue and hours, and the wait and the
    message worded for it at `now` (the handoff's arrival: the hours as they were then)."""
    kept = copy.deepcopy(dict(assignment))
    routing.keep_with(kept, team, mappings.routing, now, targets)
    wait_s, _, message = _worded(packet, kept, routing.kept_view(kept), mappings, observed_wait, now,
                                 f"wait while the tickets stay with {team}")
    kept["kept"].update(estimated_wait_seconds=wait_s, customer_message=message)
    return kept


def _worded(packet: Mapping[str, Any], assignment: dict[str, Any], view: Mapping[str, Any], mappings: Mappings,
            observed_wait: Callable[[str], int | None] | None, now: dt.datetime,
            said: str) -> tuple[int | None, str, dict[str, str]]:
    """The wait quoted and the customer message for `view` (an assignment as told), the wait's
    source added to `assignment`'s trace as `said`."""
    wait_s, source, past_closing = routing.wait_quote(view, mappings.routing, observed_wait=observed_wait)
    # The trace is in every answer: it says where the quoted figure came from.
    quoted = f"{wait_s} s" if wait_s is not None else "none quoted"
    assignment["trace"].append(f"{said}: {quoted}, {source}")
    return wait_s, source, customer_message.compose(packet, view, wait_s, mappings.messages, now=now,
                                                    wait_past_closing_s=past_closing)


def _asking(packet: Mapping[str, Any], adapters: Mapping[str, Any],
            deadline: float | None) -> Callable[[Mapping[str, Any]], routing.Asked]:
    """`routing.assign`'s `ask`: a sticky rule's previous agent, asked only at the targets the
    handoff goes to as that rule chooses them (asked among every enabled one, a rule's
    `target_names: [salesforce]` offered a Zendesk agent — and a Zendesk assignee_id no delivery
    carries — while only Salesforce got the handoff), each vendor once for the whole decision."""
    answers: dict[str, _Answer] = {}

    def ask(rule: Mapping[str, Any]) -> routing.Asked:
        names = choose_targets(packet, {"target_names": rule["then"].get("target_names"), "trace": []},
                               list(adapters))
        return previous_agent(packet, {name: adapters[name] for name in names if name in adapters}, deadline,
                              answers=answers)
    return ask


def choose_targets(packet: Mapping[str, Any], assignment: dict[str, Any], enabled: list[str]) -> list[str]:
    """The bot's `targets` (already checked to be enabled), else the rule's, else every enabled one.
    A rule's that leave only the built-in preview while a vendor is enabled are as if none were
    enabled: preview reaches no agent beside a vendor (`registry.reaches_agents`), and the handoff
    was answered `delivered`, the customer told someone would reply, with nobody ever seeing it —
    intake refuses a packet whose own `targets` name only preview there (`intake._unservable`)."""
    if packet.get("targets"):
        return list(packet["targets"])
    wanted = assignment.get("target_names")
    if wanted:
        chosen = [name for name in wanted if name in enabled]
        vendors = registry.unreached_beside_preview(chosen, enabled)
        if chosen and not vendors:
            return chosen
        if chosen:
            assignment["trace"].append(f"rule targets {wanted} leave only the built-in preview, which reaches no "
                                       f"agent beside {', '.join(vendors)}; every enabled target instead")
        else:
            assignment["trace"].append(f"rule targets {wanted} are not enabled here; every enabled target instead")
    return enabled


# A sticky rule's lookup may use half of what is left of the sync budget, a second at least (a
# vendor's search rarely answers faster): the deliveries keep the rest.
LOOKUP_FLOOR_S = 1.0
_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="previous-agent")


def lookup_ends(deadline: float, now: float) -> float:
    """When a previous-agent lookup started at `now` must be done, for a budget ending at `deadline`."""
    return now + max(LOOKUP_FLOOR_S, (deadline - now) / 2)


@dataclass(frozen=True)
class _Answer:
    """One vendor's answer to a previous-agent lookup: the agent, or why none is known."""
    agent: Mapping[str, Any] | None = None
    failed: str | None = None
    late: bool = False  # left behind at the lookup's end


def previous_agent(packet: Mapping[str, Any], adapters: Mapping[str, Any], deadline: float | None = None, *,
                   answers: dict[str, _Answer] | None = None) -> tuple[dict | None, str | None]:
    """The assignee of the customer's recent open ticket at the first of `adapters` that knows one,
    and, when none is known because asking failed, why (for the trace: not "no previous agent known").
    `answers` keeps each vendor's answer for a later lookup of the same decision (another sticky rule).

    Asked only when the matching rule is sticky: it is a vendor call made before the handoff is
    stored, inside the request's sync budget (`deadline`, a `time.monotonic()`). The adapters bound
    each of their calls by the lookup's end; a vendor trickling its answer could still hold a call
    past it (a timeout bounds each socket read, not the whole), so the lookup runs on a thread of
    its own and is left behind at its end: routing goes on without the hint.
    """
    ends = None if deadline is None else lookup_ends(deadline, time.monotonic())
    answers = {} if answers is None else answers
    failed: list[str] = []
    for name, adapter in adapters.items():
        asked_now = name not in answers
        if asked_now:
            answers[name] = _ask(name, adapter, packet, ends)
        answer = answers[name]
        if answer.agent:
            return {**answer.agent, "target": name}, None
        failed += [answer.failed] if answer.failed else []
        if answer.late and asked_now:  # this lookup's share is spent (an earlier one's was: ask on)
            break
    return None, "; ".join(failed) or None


def _ask(name: str, adapter: Any, packet: Mapping[str, Any], ends: float | None) -> _Answer:
    try:
        return _Answer(agent=_by(ends, adapter.previous_agent, packet))
    except (DeliveryError, ConfigError) as err:  # routing must not fail because a lookup did; logged by the adapter
        status = f" {err.status}" if getattr(err, "status", None) else ""
        return _Answer(failed=f"asking {name} failed ({type(err).__name__}{status})")
    except FutureTimeout:
        log.warning("previous agent lookup left behind at the end of its share of the sync budget",
                    extra={"target": name})  # no conversation id: it may be a phone number
        return _Answer(failed=f"{name} did not answer within the lookup's share of the sync budget", late=True)


def _by(ends: float | None, lookup: Callable[..., Any], packet: Mapping[str, Any]) -> Any:
    """`lookup(packet, deadline=ends)`, given up on at `ends`."""
    if ends is None:  # no budget to keep (tests, tools): in this thread
        return lookup(packet, deadline=None)
    # In the request's log context (a pool thread has its own): the lookup's lines name the bot
    # and conversation as the request's do.
    future = _LOOKUPS.submit(contextvars.copy_context().run, lookup, packet, deadline=ends)
    try:
        return future.result(timeout=max(0.0, ends - time.monotonic()))
    except FutureTimeout:
        future.cancel()  # still queued behind lookups left running: it would ask for nothing anyone waits for
        raise
