"""The handoff packet (contract §2), validated field by field.

Top-level unknown fields are refused so typos surface; nested objects keep fields we do not know
yet (a bot's `bot.name`, a future attribute) so nothing a bot sent is silently dropped.
Limits are configurable, so the schema is built with a `Limits` instance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from ..text_rules import is_blank, rfc3339, rfc3339_problem
from . import plain_load
from .json_schema import json_schema, null, visible


class Length(validate.Length):
    """marshmallow's, saying what it got: "Length must be between 1 and 200." left the bot to count
    (the transcript's limits say it too)."""

    def _format_error(self, value: Any, message: str) -> str:
        unit = "characters" if isinstance(value, str) else "items"
        return f"{super()._format_error(value, message)} Got {len(value)} {unit}."


NOTHING_SEEN = "only whitespace or characters nobody sees, such as U+200B"


@json_schema(lambda: {"pattern": visible(), "description": (
    f"Must say something: not {NOTHING_SEEN}, nor tag characters (U+E0000 to U+E007F) alone, which the "
    "pattern cannot name.")})
def said(text: str) -> None:
    """A text that must say something: "\\u200b" or "\\u3164" passed `Length(min=1)` and `str.strip`
    alike, a conversation id nobody can read, or a customer id given to Zendesk as an external_id."""
    if text and is_blank(text):  # "" is `Length(min=1)`'s to name: one message for it, not two
        raise ValidationError(f"Blank: {NOTHING_SEEN}.")


ID = [Length(min=1, max=200), said]
SHORT = Length(max=500)
LONG = Length(max=20_000)

ROLES = ("customer", "bot", "agent", "system")
REASONS = (
    "customer_request", "ai_unable", "negative_sentiment", "repeated_failure",
    "keyword", "data_collected", "regulatory", "other",
)
SENTIMENTS = ("angry", "frustrated", "negative", "neutral", "positive")
TRENDS = ("worsening", "stable", "improving")
OUTCOMES = ("not_helpful", "partially_helpful", "declined", "unknown")
URGENCIES = ("low", "normal", "high", "urgent")
CALLBACK_EVENTS = ("queued", "delivered", "assigned", "failed", "completed")


@dataclass(frozen=True)
class Limits:
    max_transcript_entries: int = 2000
    max_entry_chars: int = 20_000


class Rfc3339(fields.String):
    """An RFC 3339 timestamp with an offset; kept as the bot wrote it."""


    def __init__(self, **kwargs: Any):
        # /openapi.json says so (it said only "string": a bot's generated client sent any text).
        kwargs["metadata"] = {"format": "date-time", **(kwargs.get("metadata") or {})}
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not is_rfc3339(text):
            raise ValidationError(rfc3339_problem(text))
        return text


class JsonNumber(fields.Float):
    """A JSON number. marshmallow's Float also takes "0.8" and `true` (as 1.0): a bot sending those
    has a bug the contract's "number" should show it, not a confidence of 1 out of a boolean."""

    default_error_messages = {"invalid": "A JSON number is required; got {kind}."}
    _KINDS = {str: "a string", bool: "a boolean", list: "an array", dict: "an object"}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = self._KINDS.get(type(value), "another type")
            if isinstance(value, (str, bool)):
                kind += f" ({json.dumps(value)[:40]})"
            raise self.make_error("invalid", kind=kind)
        return super()._deserialize(value, attr, data, **kwargs)


def is_rfc3339(text: str) -> bool:
    return rfc3339(text) is not None


SCALAR_CHARS = 20_000
ITEM_IS_SCALAR = "Must be a string, number, boolean or null (an item of a list)."


class Scalar(fields.Raw):
    """A string, number, boolean or null — what attributes and collected data may hold."""

    default_error_messages = {"scalar": "Must be a string, number, boolean or null."}
    allow_list = False

    def json_schema(self) -> dict[str, Any]:
        """Its type in /openapi.json (apispec read a `Raw` as anything: an object, a list of lists)."""
        def scalar() -> list[dict[str, Any]]:
            return [{"type": "string", "maxLength": SCALAR_CHARS}, {"type": "number"}, {"type": "boolean"}, null()]

        if self.allow_list:
            return {"anyOf": [*scalar(), {"type": "array", "items": {"anyOf": scalar()}}],
                    "description": f"A string (at most {SCALAR_CHARS} characters), number, boolean, null "
                                   "or a list of those."}
        return {"anyOf": scalar(),
                "description": f"A string (at most {SCALAR_CHARS} characters), number, boolean or null."}

    def __init__(self, **kwargs: Any):
        # marshmallow refuses None before `_deserialize` unless told otherwise; null is a scalar here.
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if self.allow_list and isinstance(value, list):
            # Each item's error at its index (`collected_data.orders.2`), as every other list's: a
            # bot with fifty orders was told only that one of them was too long (a review).
            items, errors = [], {}
            for index, item in enumerate(value):
                try:
                    items.append(self._scalar(item, ITEM_IS_SCALAR))
                except ValidationError as err:
                    errors[index] = err.messages
            if errors:
                raise ValidationError(errors)
            return items
        return self._scalar(value)

    def _scalar(self, value: Any, not_one: str | None = None) -> Any:
        if value is None or isinstance(value, (str, int, float, bool)):
            if isinstance(value, str) and len(value) > SCALAR_CHARS:
                raise ValidationError(f"Longer than {SCALAR_CHARS} characters.")
            return value
        raise ValidationError(not_one) if not_one else self.make_error("scalar")


@json_schema(lambda: {"uniqueItems": True})
def distinct(values: list[Any]) -> None:
    """A list that names each item once (targets): a second entry of the same name is refused at its
    index, since one handoff holds one delivery per target (the database's unique key says so too)."""
    first: dict[Any, int] = {}
    errors: dict[int, list[str]] = {}
    for index, value in enumerate(values):
        if value in first:
            errors[index] = [f"Listed twice (first at {first[value]})."]
        first.setdefault(value, index)
    if errors:
        raise ValidationError(errors)


class ScalarOrList(Scalar):
    default_error_messages = {"scalar": "Must be a string, number, boolean, null or a list of those."}
    allow_list = True


class _NullIsAbsent(Schema):
    """`null` for an optional field is the field left out: bot SDKs send every field they model,
    null when unset, and each was a 422 ("Field may not be null"). A required field's null is still
    refused, and a field that takes null (a collected value) keeps it."""

    @pre_load
    def _drop_nulls(self, data: Any, **_: Any) -> Any:
        if not isinstance(data, dict) or None not in data.values():  # the usual packet: one scan, in C
            return data
        optional = {field.data_key or name for name, field in self.load_fields.items() if _absent_when_null(field)}
        return {key: value for key, value in data.items() if value is not None or key not in optional}


def _absent_when_null(field: fields.Field) -> bool:
    return not field.required and not field.allow_none


def null_is_absent(field: fields.Field) -> bool:
    """Whether a null for `field` is taken as the field left out (`_NullIsAbsent`): /openapi.json
    marks it nullable, or a generated client could not send the nulls the server takes."""
    return isinstance(field.parent, _NullIsAbsent) and _absent_when_null(field)


class _Open(_NullIsAbsent):
    """Nested objects keep unknown fields (stored and visible to mappings)."""

    class Meta:
        unknown = INCLUDE


class BotSchema(_Open):
    id = fields.String(required=True, validate=ID)
    platform = fields.String(validate=SHORT)


class ConversationSchema(_Open):
    id = fields.String(required=True, validate=ID)
    channel = fields.String(validate=SHORT)
    language = fields.String(validate=[
        Length(max=35),
        # `_` as `-` (es_MX, Amazon Lex's and Java's locale ids): the routing and the messages read it
        # so, as mappings/README.md says, but the whole handoff was refused (a review).
        validate.Regexp(r"^[A-Za-z]{1,8}([-_][A-Za-z0-9]{1,8})*$", error="Not a BCP 47 language tag (e.g. en, es-MX)."),
    ])
    url = fields.Url(require_tld=False, validate=Length(max=2000))


class CustomerSchema(_Open):
    id = fields.String(validate=ID)
    name = fields.String(validate=SHORT)
    email = fields.Email(validate=Length(max=320))
    phone = fields.String(validate=Length(max=64))
    account_id = fields.String(validate=ID)
    segment = fields.String(validate=Length(max=100))
    # OpenAPI 3.0 has no `propertyNames`: the key's limit is said in words (the document took longer keys).
    attributes = fields.Dict(keys=fields.String(validate=Length(max=200)), values=Scalar(),
                             metadata={"description": "Keys of at most 200 characters."})

    @validates_schema
    @json_schema(lambda: {
        "description": f"At least one of id, email or phone, one that is not {NOTHING_SEEN}.",
        "anyOf": [{"required": ["id"], "properties": {"id": {"type": "string"}}},
                  {"required": ["email"], "properties": {"email": {"type": "string"}}},
                  {"required": ["phone"], "properties": {"phone": {"type": "string", "pattern": visible()}}}]})
    def _identified(self, data: dict[str, Any], **_: Any) -> None:
        # Blank is none: "   " identified nobody, and the agent had no one to answer. (A blank id
        # is refused as `customer.id` before this runs; a phone is not an id and may be shown.)
        sent = [key for key in ("id", "email", "phone") if data.get(key)]
        if all(is_blank(str(data[key])) for key in sent):
            blank = f"; {' and '.join(sent)} {'is' if len(sent) == 1 else 'are'} blank ({NOTHING_SEEN})" if sent else ""
            raise ValidationError(f"At least one of id, email or phone is required{blank}.", "_schema")


class AttachmentSchema(_Open):
    # The contract requires none of these; an attachment must still say something an agent can
    # use: where it is or what it was called (a file the bot could not fetch has a name only).
    url = fields.Url(require_tld=False, validate=Length(max=2000))
    name = fields.String(validate=SHORT)
    content_type = fields.String(validate=Length(max=200))
    # Within JSON's exact integers: a 401-digit size was accepted, then its brief's "KB/MB" division
    # overflowed a float — the delivery an unknown outcome for ever, the dry run a 500.
    size = fields.Integer(strict=True, validate=validate.Range(min=0, max=2**53 - 1))

    @validates_schema
    @json_schema(lambda: {
        "description": f"Needs a url or a name (not {NOTHING_SEEN}).",
        "anyOf": [{"required": ["url"], "properties": {"url": {"type": "string"}}},
                  {"required": ["name"], "properties": {"name": {"type": "string", "pattern": visible()}}}]})
    def _named_or_linked(self, data: dict[str, Any], **_: Any) -> None:
        # The agent's only handle on a file without a url is its name: "\u200b" passed `str.strip`
        # and the brief listed a 📎 with nothing after it.
        if not data.get("url") and is_blank(str(data.get("name") or "")):
            raise ValidationError(f"An attachment needs a url or a name (not {NOTHING_SEEN}).", "_schema")


class TranscriptEntrySchema(_Open):
    at = Rfc3339(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    text = fields.String(required=True)
    attachments = fields.List(fields.Nested(AttachmentSchema), validate=Length(max=50))

    @validates_schema
    @json_schema(lambda: {
        "description": f"`text` may be empty or blank ({NOTHING_SEEN}, or tag characters alone, which the "
                       "pattern cannot name) only when the entry has attachments.",
        "anyOf": [{"properties": {"text": {"pattern": visible()}}},
                  {"required": ["attachments"], "properties": {"attachments": {"type": "array", "minItems": 1}}}]})
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if "text" in data and is_blank(data["text"]) and not data.get("attachments"):
            raise ValidationError(f"May be empty or blank ({NOTHING_SEEN}) only when the entry has attachments.",
                                  "text")


def _plain_entry(entry: Any) -> bool:
    """Whether `TranscriptEntrySchema` would load `entry` as it is: exactly `at`, `role` and `text`,
    each valid by the schema's own rules (an RFC 3339 time, a known role, text that is not blank)."""
    if type(entry) is not dict or len(entry) != 3:
        return False
    at, role, text = entry.get("at"), entry.get("role"), entry.get("text")
    return (type(at) is str and type(role) is str and type(text) is str and role in ROLES
            and not is_blank(text) and is_rfc3339(at))


class Transcript(fields.List):
    """The transcript's entries, each loaded by `TranscriptEntrySchema`, except that a plain entry
    (`_plain_entry`: most of them) is checked directly and kept as it is. A nested schema load took
    ~27 µs per entry, on the bot's path, and transcripts run to thousands of entries. Anything else —
    attachments, fields we do not know, anything invalid — goes through the schema (`plain_load`'s
    shortcut first, which gives up to marshmallow at anything it does not take as it is), which says
    what is wrong and where, exactly as `fields.List` would (a test compares the two on many entries).

    The configured limits (`Limits`, the schema's `limits`) are checked here too, as field errors:
    checked by the schema after its fields, they went unreported whenever another field was wrong,
    and the bot learnt of them only on its next try."""

    def __init__(self, **kwargs: Any):
        super().__init__(fields.Nested(TranscriptEntrySchema), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> list[Any]:
        if type(value) is not list:
            return super()._deserialize(value, attr, data, **kwargs)
        limits: Limits = getattr(self.parent, "limits", None) or Limits()
        most, longest = limits.max_transcript_entries, limits.max_entry_chars
        if len(value) > most:  # before the entries: an oversized list is not worth checking entry by entry
            raise ValidationError(f"At most {most} entries (CONNECTOR_MAX_TRANSCRIPT_ENTRIES); got {len(value)}.")
        result: list[Any] = []
        errors: dict[int, Any] = {}
        for index, entry in enumerate(value):
            if _plain_entry(entry):
                loaded = {"at": entry["at"], "role": entry["role"], "text": entry["text"]}  # the schema's order
            else:
                try:  # from here on as marshmallow's List does it (`plain_load`: the same, faster)
                    loaded = (plain_load.deserialize(self.inner, entry) if not kwargs
                              else self.inner.deserialize(entry, **kwargs))
                except ValidationError as error:
                    if error.valid_data is not None:
                        result.append(error.valid_data)
                    errors[index] = error.messages
                    # Its text's length too: with a bad `at` beside it, the bot fixed the time and
                    # only then heard of the text's limit (a review).
                    text = entry.get("text") if isinstance(entry, dict) else None
                    said = errors[index]
                    if isinstance(text, str) and len(text) > longest and isinstance(said, dict):
                        errors[index] = {**said, "text": [*said.get("text", []), _too_long(text, longest)]}
                    continue
            result.append(loaded)
            if len(loaded["text"]) > longest:
                errors[index] = {"text": [_too_long(loaded["text"], longest)]}
        if errors:
            raise ValidationError(errors, valid_data=result)
        return result


def _too_long(text: str, longest: int) -> str:
    return f"At most {longest} characters (CONNECTOR_MAX_ENTRY_CHARS); got {len(text)}."


class IntentSchema(_Open):
    name = fields.String(validate=SHORT)
    confidence = JsonNumber(validate=validate.Range(min=0, max=1))
    stated_problem = fields.String(validate=LONG)
    summary = fields.String(validate=LONG)


class SentimentSchema(_Open):
    label = fields.String(validate=validate.OneOf(SENTIMENTS))
    score = JsonNumber(validate=validate.Range(min=-1, max=1))
    trend = fields.String(validate=validate.OneOf(TRENDS))


class AttemptSchema(_Open):
    title = fields.String(validate=SHORT)
    detail = fields.String(validate=LONG)
    url = fields.Url(require_tld=False, validate=Length(max=2000))
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))


class TicketRefSchema(_Open):
    system = fields.String(validate=Length(max=100))
    id = fields.String(validate=ID)
    url = fields.Url(require_tld=False, validate=Length(max=2000))
    # An extension: the earlier ticket's status as the bot knows it (new, open, pending, hold,
    # solved, closed): the brief's repeat-contact line says when it is still open.
    status = fields.String(validate=Length(max=40))


class HistorySchema(_Open):
    at = Rfc3339()
    channel = fields.String(validate=SHORT)
    summary = fields.String(validate=LONG)
    ticket = fields.Nested(TicketRefSchema)
    agent = fields.String(validate=SHORT)


class EscalationSchema(_Open):
    reason = fields.String(required=True, validate=validate.OneOf(REASONS))
    detail = fields.String(validate=LONG)
    keywords = fields.List(fields.String(validate=Length(max=200)), validate=Length(max=50))
    urgency = fields.String(validate=validate.OneOf(URGENCIES))


class PreferredAgentSchema(_Open):
    id = fields.String(validate=ID)
    # The customer's limit: unbounded, a 17,804-character address was accepted and said back in
    # every answer's trace and warnings (a review).
    email = fields.Email(validate=Length(max=320))


class RoutingHintsSchema(_Open):
    department = fields.String(validate=Length(max=200))
    skills = fields.List(fields.String(validate=Length(max=100)), validate=Length(max=50))
    priority = fields.String(validate=validate.OneOf(URGENCIES))
    queue = fields.String(validate=Length(max=200))
    preferred_agent = fields.Nested(PreferredAgentSchema)


class _ServiceUrl(fields.Url):
    """A URL whose host may be a compose service's name, dotless and with `_` (`http://rasa-x:5002/cb`,
    `http://action_server:5055/cb`, with CONNECTOR_CALLBACK_ALLOW_PRIVATE): each was "Not a valid URL."
    while the README and /openapi.json took it (two reviews). marshmallow's check is kept for the
    rest, the host read with `-` for `_`; `callback_http.url_problem` says what may be called."""

    def __init__(self, **kwargs: Any):
        super().__init__(require_tld=False, **kwargs)
        check = self.validators.pop(0)  # marshmallow's URL check, which refuses `_` in a host

        def checked(url: str) -> str:
            check(_underscores_read_as_hyphens(url))  # raises what marshmallow says
            return url

        self.validators.insert(0, checked)


def _underscores_read_as_hyphens(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    host_end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    return f"{scheme}{sep}{rest[:host_end].replace('_', '-')}{rest[host_end:]}" if sep else url


class CallbackSchema(_Open):
    # The schemes said: `ftp://…` was told only "Not a valid URL." (a bot developer's review).
    url = _ServiceUrl(required=True, schemes={"http", "https"}, validate=Length(max=2000),
                      error_messages={"invalid": "Not a valid http:// or https:// URL."})
    events = fields.List(fields.String(validate=validate.OneOf(CALLBACK_EVENTS)))


class PacketSchema(_NullIsAbsent):
    """The request body of `POST /v1/handoffs`."""

    class Meta:
        unknown = RAISE

    bot = fields.Nested(BotSchema, required=True)
    conversation = fields.Nested(ConversationSchema, required=True)
    customer = fields.Nested(CustomerSchema, required=True)
    transcript = Transcript(required=True, validate=Length(min=1))
    intent = fields.Nested(IntentSchema)
    sentiment = fields.Nested(SentimentSchema)
    attempted_solutions = fields.List(fields.Nested(AttemptSchema), validate=Length(max=100))
    collected_data = fields.Dict(keys=fields.String(validate=Length(max=200)), values=ScalarOrList(),
                                 metadata={"description": "Keys of at most 200 characters."})
    history = fields.List(fields.Nested(HistorySchema), validate=Length(max=200))
    escalation = fields.Nested(EscalationSchema, required=True)
    routing = fields.Nested(RoutingHintsSchema)
    targets = fields.List(fields.String(validate=Length(max=40)),
                          validate=[Length(min=1, max=20), distinct])
    callback = fields.Nested(CallbackSchema)
    vendor_extra = fields.Dict(keys=fields.String(validate=Length(max=40)), values=fields.Dict(),
                               metadata={"description": "Keys (target names) of at most 40 characters."})
    metadata = fields.Dict()

    def __init__(self, limits: Limits | None = None, **kwargs: Any):
        self.limits = limits or Limits()  # read by `Transcript` while loading
        super().__init__(**kwargs)


class MessagesSchema(_NullIsAbsent):
    """The request body of `POST /v1/handoffs/{id}/messages`: what was said since the handoff (by
    the customer, mostly, while waiting), oldest first, each entry as in the packet's transcript."""

    class Meta:
        unknown = RAISE

    messages = Transcript(required=True, validate=Length(min=1))

    def __init__(self, limits: Limits | None = None, **kwargs: Any):
        self.limits = limits or Limits()  # read by `Transcript` while loading
        super().__init__(**kwargs)


def flatten_errors(messages: Any, prefix: str = "", schema: Schema | None = None) -> dict[str, list[str]]:
    """marshmallow's nested error dict → `{"transcript.3.at": [...]}` (`_schema` names the parent).

    A `fields.Dict` puts a level of its own under each entry's key, `key` or `value`, for what is
    wrong with the entry's name or its value; the path ends at the entry. Given the `schema` that
    was loaded, only that level is dropped: an entry the bot named `value`
    (`collected_data.value`) is named, where reading every `key`/`value` as marshmallow's named
    the whole `collected_data`. Without it (a caller that has none), every `key`/`value` below the
    top is taken as marshmallow's."""
    flat: dict[str, list[str]] = {}
    _flatten(messages, prefix, schema if schema is not None else _UNKNOWN, flat)
    return flat


class _Entry:
    """The level marshmallow's `fields.Dict` adds under an entry's key (`key`, `value`)."""

    def __init__(self, field: fields.Dict):
        self.field = field


_UNKNOWN = object()  # no schema given: every `key`/`value` below the top is marshmallow's Dict level


def _flatten(messages: Any, prefix: str, shape: Any, flat: dict[str, list[str]]) -> None:
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "_schema":  # the object itself
                path, inner = prefix, shape
            elif isinstance(shape, _Entry):
                path, inner = prefix, shape.field.key_field if key == "key" else shape.field.value_field
            elif shape is _UNKNOWN:
                nameless = key in ("key", "value") and prefix
                path, inner = prefix if nameless else _joined(prefix, key), _UNKNOWN
            else:
                path, inner = _joined(prefix, key), _inside(shape, key)
            _flatten(value, path, inner, flat)
    elif isinstance(messages, list) and not all(isinstance(item, str) for item in messages):
        for item in messages:
            _flatten(item, prefix, shape, flat)
    else:
        said = list(messages) if isinstance(messages, list) else [str(messages)]
        flat.setdefault(prefix or "(body)", []).extend(said)


def _joined(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _inside(shape: Any, key: Any) -> Any:
    """What declares the errors under `key` of `shape` (a schema, or a field): None when nothing
    does (an unknown field), whose errors are then named as they come."""
    if isinstance(shape, fields.Nested):
        shape = shape.schema
    if isinstance(shape, Schema):
        return next((field for name, field in shape.fields.items() if (field.data_key or name) == key), None)
    if isinstance(shape, fields.Dict):
        return _Entry(shape)
    if isinstance(shape, fields.List):
        return shape.inner
    return None
