"""The transcript's fast path (`schemas.packet.Transcript`) loads and refuses exactly what marshmallow's
own `List(Nested(TranscriptEntrySchema))` does: same data, same errors at the same paths."""

from __future__ import annotations

import itertools

import pytest
from marshmallow import ValidationError, fields

from connector.schemas.packet import Length, Limits, PacketSchema, TranscriptEntrySchema
from tests.factories import full_packet


class ReferenceSchema(PacketSchema):
    transcript = fields.List(fields.Nested(TranscriptEntrySchema), required=True, validate=Length(min=1))


AT = "2026-11-20T09:14:02Z"
ENTRIES = [
    {"at": AT, "role": "customer", "text": "hello"},
    {"text": "keys in another order", "role": "bot", "at": "2026-11-20T10:14:02+01:00"},
    {"at": AT, "role": "agent", "text": "  padded  "},
    {"at": AT, "role": "customer", "text": "x", "attachments": [{"url": "https://files.example.com/a.png"}]},
    {"at": AT, "role": "customer", "text": "", "attachments": [{"url": "https://files.example.com/a.png"}]},
    {"at": AT, "role": "customer", "text": "an extra field", "channel": "sms"},
    {"at": AT, "role": "customer"},
    {"at": AT, "role": "customer", "text": "   "},
    {"at": AT, "role": "customer", "text": "\u200b\u3164"},  # blank too: nothing in it is seen
    {"at": AT, "role": "customer", "text": "\u202e", "attachments": [{"name": "a.png"}]},
    {"at": AT, "role": "customer", "text": ""},
    {"at": AT, "role": "customer", "text": None},
    {"at": AT, "role": "customer", "text": 7},
    {"at": AT, "role": "robot", "text": "unknown role"},
    {"at": AT, "role": ["customer"], "text": "a role that is a list"},
    {"at": AT, "role": None, "text": "no role"},
    {"at": "2026-11-20T09:14:02", "role": "customer", "text": "no offset"},
    {"at": "2026-11-20 09:14:02Z", "role": "customer", "text": "no T"},
    {"at": "2026-11-20", "role": "customer", "text": "a date"},
    {"at": "yesterday", "role": "customer", "text": "not a time"},
    {"at": 1763630042, "role": "customer", "text": "a number"},
    {"role": "customer", "text": "no time", "extra": 1},
    {},
    "a string",
    None,
    ["a", "list"],
]


def load(schema, transcript):
    packet = full_packet()
    packet["transcript"] = transcript
    try:
        return "loaded", schema.load(packet)
    except ValidationError as err:
        return "refused", err.messages


@pytest.mark.parametrize("transcript", [[entry] for entry in ENTRIES]
                         + [list(pair) for pair in itertools.combinations(ENTRIES, 2)][::7]
                         + [ENTRIES, ENTRIES[::-1], ENTRIES[:3] * 5, [], "not a list", {"0": ENTRIES[0]}])
def test_the_fast_path_agrees_with_marshmallow(transcript):
    fast, reference = PacketSchema(Limits()), ReferenceSchema(Limits())
    assert load(fast, transcript) == load(reference, transcript)


def test_entries_keep_the_schema_s_key_order():
    status, packet = load(PacketSchema(Limits()), [ENTRIES[1]])
    assert status == "loaded" and list(packet["transcript"][0]) == ["at", "role", "text"]
