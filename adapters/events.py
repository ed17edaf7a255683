"""What a vendor tells us after delivery, normalized. A vendor-event module (`zendesk_events`,
`slack_events`) turns a verified payload into an `AssignmentEvent`, a `CompletionEvent` or a
`MergeEvent`, or says why it is `Ignored`; `connector.vendor_events` records it. Vendor payload shapes
never leave those modules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError, fields

from connector.text_rules import UNSTORABLE


@dataclass(frozen=True)
class AssignmentEvent:
    target: str
    event_id: str  # the vendor's id for this event: deliveries are at least once
    # The target's `Delivery.vendor_id` of the ticket, case or alert; for a Slack click, the clicked
    # message (a re-escalation's reply in the alert's thread), whose alert is then `named_in`.
    ticket_id: str
    handoff_id: str | None  # the handoff the payload names, when it names one (checked, never trusted alone)
    agent_id: str
    agent_name: str | None
    at: dt.datetime  # when the agent took it, by the vendor's clock
    # The agent it was taken from, when the vendor says: taken from routing's own choice (a sticky
    # agent the ticket was made with), this agent is the one the customer waited for; from anyone
    # else, a reassignment, which ends no wait (`connector.assignments.record`).
    previous_agent_id: str | None = None
    # Where a handoff named by the payload must have been delivered for the name to count, when the
    # vendor says where the action came from: the ticket whose thread the clicked message is in
    # (`C1/1795262300.000100`, the alert's). A bot's `vendor_extra.slack` can post blocks of its own
    # — a Claim button naming another handoff — so a name counts only there
    # (`connector.assignments.delivered_to`). Without it (Zendesk's external_id, which any
    # integration or agent can write), a name counts only while its ticket is not recorded.
    named_in: str | None = None
    # With `named_in`: the clicked message is in no thread (`named_in` is its own id: an alert not
    # recorded yet, perhaps), and what the named handoff's delivery must have said of where its
    # unanswered post went (`OutcomeUnknown.sent_to`, Slack's `{"channel": …}`) to be taken so.
    named_alone: bool = False
    named_sent_to: Mapping[str, str] = field(default_factory=dict)
    # Not a vendor's event: its answer to our update said the ticket already has this agent
    # (`Sent.holder`). They hold the handoff, recorded as routed — no wait was observed.
    held: bool = False
    # The vendor says who owns the ticket now, not that it changed (Salesforce's Outbound Message is
    # sent on any edit the admin's rule names): the agent holding the handoff already took nothing.
    owner_only: bool = False


@dataclass(frozen=True)
class Holder:
    """Who holds a handoff, as the agent whose action an `AssignmentEvent` reported is told of it
    (`Adapter.claim_answered`): `first` when that action is what gave it to them."""

    target: str
    agent_id: str
    agent_name: str | None
    first: bool
    # The handoff was completed (its ticket solved, the bot told `completed`): the action changed
    # nothing. Its agent fields name whoever took it, if anyone did (none: `agent_id` is empty).
    completed: bool = False
    # With `first`: the handoff the action took — on Slack, a click on the alert takes the newest
    # re-escalation, whose own reply in the thread offers its Claim too.
    handoff_id: str | None = None


@dataclass(frozen=True)
class CompletionEvent:
    """The ticket was solved: what the bot hears as its handoff's `completed` status callback."""

    target: str
    event_id: str
    ticket_id: str  # the target's `Delivery.vendor_id`
    handoff_id: str | None  # the handoff the payload names, when it names one (checked, never trusted alone)
    at: dt.datetime  # `handoff_id`, written by Zendesk's external_id: counted only while its ticket is not recorded


@dataclass(frozen=True)
class MergeEvent:
    """An agent merged the ticket into another, which closed it (Zendesk tags it `closed_by_merge`):
    no completion — the conversation goes on on the ticket it was merged into, whose solve completes
    its handoffs (`connector.merges`). The event does not say which ticket that is; the vendor's
    record of the merge does (`Adapter.merged_into`)."""

    target: str
    event_id: str
    ticket_id: str  # the merged ticket: the target's `Delivery.vendor_id`
    handoff_id: str | None  # as `CompletionEvent.handoff_id`
    at: dt.datetime


@dataclass(frozen=True)
class Ignored:
    reason: str  # said in the answer and the log: nothing in it comes from the payload's free text


class VendorId(fields.Field):
    """An id as vendors send it: a string (Zendesk event payloads) or a whole number (placeholders
    in older trigger payloads); given back as a non-empty string of at most 200 characters."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("Must be a string or a whole number.")
        return stored_text(str(value).strip())


def stored_text(text: str) -> str:
    """`text` if it can be stored as one of our ids or names, else a ValidationError."""
    if not text or len(text) > 200:
        raise ValidationError("Must be 1 to 200 characters.")
    if UNSTORABLE.search(text):
        raise ValidationError("Contains U+0000 or an unpaired surrogate.")
    return text


def utc_moment(text: str) -> dt.datetime | None:
    """A vendor's time with a time zone (RFC 3339, xsd:dateTime: `2026-11-21T12:00:05.000Z`) in UTC;
    None when it is not one. In UTC, 9999-12-31T23:59:59-23:59 is no date: it was a 500, which
    Zendesk retries."""
    try:
        parsed = dt.datetime.fromisoformat(text) if len(text) <= 40 else None
        return parsed.astimezone(dt.UTC) if parsed is not None and parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None
