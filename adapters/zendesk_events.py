"""Zendesk event webhooks (`POST /webhooks/zendesk`): an agent assignment becomes an `AssignmentEvent`,
a ticket solved or closed a `CompletionEvent`, one closed by an agent's merge a `MergeEvent`.

Zendesk's event format: `{"type": "zen:event-type:ticket.agent_assignment_changed", "id": <event
uuid>, "time": RFC 3339, "subject": "zen:ticket:35436", "detail": {<the ticket: "id", "external_id",
"assignee_id"… as strings>}, "event": {"current": <agent id>, "previous": <agent id or null>}}`.
Our tickets carry the handoff id as `external_id` (`adapters.zendesk`); the ticket id is the
delivery's `vendor_id`. Other event types, unassignments and reassignments are `Ignored`: only an
agent taking an unassigned ticket ends a customer's wait. A status change (`ticket.status_changed`,
UPPERCASE statuses in `event.current`) counts only when it is to SOLVED or CLOSED. A close by an
agent's merge (the ticket tagged `closed_by_merge`) is no completion: the conversation goes on on the
ticket it was merged into (`ZendeskAdapter.merged_into`), whose solve completes its handoffs
(`connector.merges`; the merge itself told the bot `completed`, of a ticket agents had just begun to
work on under another number). Other ways to CLOSED without SOLVED (a trigger's "close now", an
automation, the API) are completions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from .events import AssignmentEvent, CompletionEvent, Ignored, MergeEvent, VendorId, utc_moment

TARGET = "zendesk"
ASSIGNMENT_CHANGED = "zen:event-type:ticket.agent_assignment_changed"
STATUS_CHANGED = "zen:event-type:ticket.status_changed"
FINISHED = ("SOLVED", "CLOSED")
MERGED_TAG = "closed_by_merge"  # Zendesk's tag on a ticket its merge into another closed


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE  # Zendesk adds properties over time; we read only what we use


class Time(fields.String):
    default_error_messages = {"time": "Not an RFC 3339 time with a time zone."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        moment = utc_moment(super()._deserialize(value, attr, data, **kwargs))
        if moment is None:
            raise self.make_error("time")
        return moment


class ZendeskTicketDetail(_Lenient):
    id = VendorId(required=True)
    external_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=500))
    tags = fields.Raw(allow_none=True, load_default=None)  # read leniently: only `closed_by_merge` is looked for


class ZendeskChange(_Lenient):
    current = fields.Raw(allow_none=True, load_default=None)
    previous = fields.Raw(allow_none=True, load_default=None)


class ZendeskEventSchema(_Lenient):
    """A Zendesk event webhook body: the envelope every event type shares."""

    type = fields.String(required=True, validate=validate.Length(min=1, max=200))
    id = fields.String(required=True, validate=validate.Length(min=1, max=200),
                       metadata={"description": "The event's id; Zendesk may deliver an event more than once."})
    time = Time(required=True)
    subject = fields.String()
    detail = fields.Nested(ZendeskTicketDetail, required=True)
    event = fields.Nested(ZendeskChange, required=True)


class _Envelope(_Lenient):
    type = fields.String(required=True, validate=validate.Length(min=1, max=200))


def parse(data: Mapping[str, Any]) -> AssignmentEvent | CompletionEvent | MergeEvent | Ignored:
    """Raises marshmallow's ValidationError naming the field when the body is not an event."""
    kind = _Envelope().load(data)["type"]
    if kind not in (ASSIGNMENT_CHANGED, STATUS_CHANGED):
        return Ignored("not an agent assignment or status change event")
    event = ZendeskEventSchema().load(data)
    change, ticket = event["event"], event["detail"]
    if kind == STATUS_CHANGED:
        if not isinstance(change["current"], str) or change["current"].upper() not in FINISHED:
            return Ignored("a status change to something other than solved or closed")
        finished = MergeEvent if isinstance(ticket["tags"], list) and MERGED_TAG in ticket["tags"] else CompletionEvent
        return finished(target=TARGET, event_id=event["id"], ticket_id=ticket["id"],
                        handoff_id=ticket["external_id"] or None, at=event["time"])
    current, previous = _agent(change["current"], "current"), _agent(change["previous"], "previous")
    if current is None:
        return Ignored("the ticket was unassigned")
    # A ticket that already had an agent: moving it ends no customer's wait — unless that agent was
    # routing's own choice, the one the ticket was made with (`assignments.record` decides).
    return AssignmentEvent(target=TARGET, event_id=event["id"], ticket_id=ticket["id"],
                           handoff_id=ticket["external_id"] or None, agent_id=current, agent_name=None,
                           at=event["time"], previous_agent_id=previous)


def _agent(value: Any, key: str) -> str | None:
    """An assignee id; null, "" (and Zendesk's "0") mean nobody."""
    if value is None or value in ("", "0", 0):
        return None
    try:
        return VendorId().deserialize(value)
    except ValidationError as err:
        raise ValidationError({"event": {key: err.messages}}) from None
