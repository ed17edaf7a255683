"""Slack interactivity (`POST /webhooks/slack`): a click on an alert's "Claim" button becomes an
`AssignmentEvent` — the agent who clicks first takes the handoff.

Slack posts `application/x-www-form-urlencoded` with one field, `payload`: the JSON of a
`block_actions` interaction (`user`, `container` {`channel_id`, `message_ts`}, `trigger_id`,
`actions` [{`action_id`, `value`, `action_ts`}]). The alert's ticket id is `<channel>/<ts>` (the
delivery's `vendor_id`); a re-escalation's reply in the thread carries its own handoff id as the
button's value. Every other interaction (the "Open conversation" link button, a bot's own buttons,
shortcuts, modals, the App Home) is `Ignored`, known by its action id before the rest is read
(`_claims`); only a Claim is validated. Parsed from the raw bytes the signature was checked over,
never from a framework's form parser.

A button's value is not ours alone: the bot's `vendor_extra.slack` can post blocks of its own. A
click on a message that is no alert takes the handoff it names only if that handoff went to the
thread the message is in (`message.thread_ts`, `container.thread_ts`; `named_in`), or has no
ticket recorded yet (`connector.assignments`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import parse_qs

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from connector.errors import ApiProblem
from connector.json_body import parse_json

from .events import AssignmentEvent, Ignored, VendorId, stored_text
from .slack_blocks import CLAIM_ACTION

TARGET = "slack"
_UNIX_TS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?", re.ASCII)


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE  # Slack sends much more than we read


class SlackTime(fields.String):
    """Slack's `"1732190005.123456"`: unix seconds as text."""

    default_error_messages = {"ts": "Not Slack unix seconds (e.g. 1732190005.123456)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not _UNIX_TS.fullmatch(text):
            raise self.make_error("ts")
        try:
            return dt.datetime.fromtimestamp(float(text), dt.UTC)
        except (ValueError, OverflowError, OSError):  # past the year 9999: it was a 500, which Slack retries
            raise self.make_error("ts") from None


class Name(fields.String):
    """A display name: kept when it can be stored; empty means none."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        return stored_text(text) if text else None


class SlackUser(_Lenient):
    id = VendorId(required=True)
    name = Name(allow_none=True, load_default=None)
    username = Name(allow_none=True, load_default=None)


class SlackContainer(_Lenient):
    channel_id = VendorId(required=True)
    message_ts = VendorId(required=True)
    thread_ts = VendorId(allow_none=True, load_default=None)


class SlackMessage(_Lenient):
    thread_ts = VendorId(allow_none=True, load_default=None)  # in a thread: its first message


class SlackAction(_Lenient):
    action_id = fields.String(required=True, validate=validate.Length(max=255))
    value = VendorId(allow_none=True, load_default=None)
    action_ts = SlackTime(required=True)


class SlackBlockActions(_Lenient):
    type = fields.String(required=True)
    trigger_id = VendorId(required=True)
    user = fields.Nested(SlackUser, required=True)
    container = fields.Nested(SlackContainer, required=True)
    message = fields.Nested(SlackMessage, allow_none=True, load_default=None)
    actions = fields.List(fields.Nested(SlackAction), required=True, validate=validate.Length(min=1, max=25))


class _Envelope(_Lenient):
    type = fields.String(required=True, validate=validate.Length(min=1, max=100))


def parse(raw_body: bytes, max_depth: int) -> AssignmentEvent | Ignored:
    """Raises marshmallow's ValidationError naming the field (`payload.user.id`) when the body is
    not a Slack interaction. `max_depth`: CONNECTOR_MAX_JSON_DEPTH, as for every JSON body."""
    payload = _payload(raw_body, max_depth)
    try:
        if _Envelope().load(payload)["type"] != "block_actions":
            return Ignored("not a button click")
        if not _claims(payload):
            return Ignored("not a Claim click")
        interaction = SlackBlockActions().load(payload)
    except ValidationError as err:
        raise ValidationError({"payload": err.messages}) from None
    claim = next(a for a in interaction["actions"] if a["action_id"] == CLAIM_ACTION)
    container, user = interaction["container"], interaction["user"]
    channel = container["channel_id"]
    # A re-escalation's reply names its handoff, which was delivered to the alert the reply is
    # under: a button elsewhere naming it — in a bot's own blocks (`vendor_extra.slack`), in
    # another thread or channel — takes nothing. Slack names the thread of a reply
    # (`container.thread_ts`, `message.thread_ts`); a message in none is its own thread.
    thread = container["thread_ts"] or (interaction["message"] or {}).get("thread_ts") or container["message_ts"]
    return AssignmentEvent(target=TARGET, event_id=interaction["trigger_id"],
                           ticket_id=f"{channel}/{container['message_ts']}",
                           handoff_id=claim["value"], agent_id=user["id"],
                           agent_name=user["name"] or user["username"], at=claim["action_ts"],
                           named_in=f"{channel}/{thread}", named_alone=thread == container["message_ts"],
                           named_sent_to={"channel": channel})


def _claims(payload: dict[str, Any]) -> bool:
    """Whether a click is on a Claim button, decided before anything else is read: only a Claim
    is held to what we store. A bot's own button (`vendor_extra.slack`) may carry a value up to
    Slack's 2,000 characters, and a click in a modal or on the App Home is in no message (its
    `container` a view) — both were refused with 422, and Slack showed the agent an error."""
    actions = payload.get("actions")
    return isinstance(actions, list) and any(isinstance(action, dict) and action.get("action_id") == CLAIM_ACTION
                                             for action in actions)


def _payload(raw_body: bytes, max_depth: int) -> dict[str, Any]:
    try:
        form = parse_qs(raw_body.decode("utf-8"), strict_parsing=True, max_num_fields=50, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ValidationError({"(body)": ["Not a UTF-8 form (application/x-www-form-urlencoded)."]}) from None
    values = form.get("payload") or []
    if len(values) != 1:
        raise ValidationError({"payload": ["Exactly one 'payload' field is required."]})
    try:
        # Read as every JSON body is: a key given twice (`{"type": "block_actions", "type": "x"}`)
        # was taken as its last value here, where packets and Zendesk's events refuse it.
        payload: dict[str, Any] = parse_json(values[0].encode("utf-8"), "application/json", max_depth,
                                             what="payload")
    except ApiProblem as err:
        raise ValidationError({_within_payload(path): reasons for path, reasons in err.errors.items()}
                              or {"payload": [err.detail]}) from None
    return payload


def _within_payload(path: str) -> str:
    return "payload" if path == "(body)" else f"payload.{path}"
