"""A verified vendor payload, parsed by its vendor's module (`adapters.zendesk_events`,
`adapters.slack_events`, `adapters.salesforce_events`) and recorded: an agent taking a handoff
(`assignments.record`), a ticket solved (`assignments.complete`) or merged into another
(`merges.merged`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from marshmallow import ValidationError

from adapters.events import AssignmentEvent, CompletionEvent, Ignored, MergeEvent

from .assignments import ROUTED, Received, complete, record
from .errors import ValidationFailed
from .jsonlog import log_context
from .merges import follow_merged_away, merged
from .schemas import flatten_errors

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)

# An event dated further ahead than this is not believed (a sample there would sit in every window).
FUTURE_LIMIT = dt.timedelta(minutes=5)


def receive(services: Services, parse: Callable[[Any], AssignmentEvent | CompletionEvent | MergeEvent | Ignored],
            payload: Any, now: dt.datetime) -> Received:
    """Parse a verified vendor payload with its vendor's `parse` and record what it says."""
    with refused_as_invalid("event"):
        event = parse(payload)
    return record_event(services, event, now)


def receive_each(services: Services, events: Iterable[AssignmentEvent | CompletionEvent | MergeEvent | Ignored],
                 now: dt.datetime) -> list[Received]:
    """Several events of one vendor message (a Salesforce Outbound Message holds up to 100), parsed
    whole before any is recorded, recorded in their order: a failure (the database away) leaves the
    rest unrecorded, and the vendor's resend of the whole message finds the first ones duplicates.
    First, conversations linked to a ticket merged into one the events name in silence are linked
    to that one (`merges.follow_merged_away`)."""
    events = list(events)
    named = {(event.target, event.ticket_id) for event in events if not isinstance(event, Ignored)}
    for target in sorted({target for target, _ in named}):
        follow_merged_away(services, target, {ticket for at, ticket in named if at == target})
    return [record_event(services, event, now) for event in events]


@contextlib.contextmanager
def refused_as_invalid(what: str) -> Iterator[None]:
    """A vendor parser's ValidationError, as the 422 every vendor's webhook answers, fields named."""
    try:
        yield
    except ValidationError as err:
        errors = flatten_errors(err.messages)
        raise ValidationFailed(f"The {what} is not valid: {len(errors)} field(s) need attention.", errors=errors) \
            from None


def record_event(services: Services, event: AssignmentEvent | CompletionEvent | MergeEvent | Ignored,
                 now: dt.datetime) -> Received:
    """Record one parsed event: what the answer says of it."""
    if isinstance(event, Ignored):
        log.debug("vendor event ignored", extra={"reason": event.reason})
        return Received("ignored", event.reason)
    if event.at > now + FUTURE_LIMIT:
        log.info("vendor event ignored", extra={"target": event.target, "reason": "dated in the future"})
        return Received("ignored", "the event is dated in the future")
    if isinstance(event, AssignmentEvent):
        received = record(services, event)
    else:
        received = complete(services, event) if isinstance(event, CompletionEvent) else merged(services, event)
    if isinstance(event, AssignmentEvent) and received.holder is not None and received.ticket_id:
        with log_context(handoff_id=received.held, target=event.target):
            services.tell_agent(event, received.holder, received.ticket_id)
            if received.outcome == "recorded" and received.detail != ROUTED and received.held:
                # Not routing's own choice: an agent who takes the handoff from them is still welcome.
                services.tell_other_targets(received.held, received.holder)
    if received.outcome == "ignored":
        log.info("vendor event ignored", extra={"target": event.target, "reason": received.detail})
    return received
