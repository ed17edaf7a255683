"""`schemas.plain_load` loads what marshmallow loads and nothing else: the same packet, or the same
errors at the same paths, for valid packets and for many broken ones; and the sample packets take
the shortcut (else its speed is silently gone)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, post_load, validates

from connector.schemas import plain_load
from connector.schemas.packet import BotSchema, Limits, PacketSchema
from tests.factories import full_packet, minimal_packet


def outcome(load, packet: Any) -> tuple[str, Any]:
    try:
        return "loaded", load(packet)
    except ValidationError as err:
        return "refused", err.messages


def both(packet: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """(the shortcut's outcome, marshmallow's alone), each on its own copy, the input left as it was."""
    schema, before = PacketSchema(Limits(max_transcript_entries=20, max_entry_chars=300)), copy.deepcopy(packet)
    shortcut = outcome(lambda data: plain_load.load(schema, data), packet)
    assert packet == before, "the shortcut changed what it was given"
    return shortcut, outcome(PacketSchema(Limits(max_transcript_entries=20, max_entry_chars=300)).load,
                             copy.deepcopy(packet))


@pytest.mark.parametrize("packet", [full_packet(), minimal_packet()], ids=["full", "minimal"])
def test_the_sample_packets_take_the_shortcut_and_load_as_marshmallow_does(packet):
    schema = PacketSchema(Limits())
    compiled = plain_load._compiled(schema)
    assert compiled is not None
    assert compiled(copy.deepcopy(packet)) == schema.load(copy.deepcopy(packet))  # no fallback: it loaded them itself


def test_a_packet_with_nulls_for_what_it_leaves_out_takes_the_shortcut():
    # Bot SDKs send every field they model, null when unset (`_NullIsAbsent`): the usual packet
    # of some bots, not a reason to fall back.
    packet = full_packet(intent=None)
    packet["customer"].update(name=None, phone=None)
    packet["transcript"][0]["attachments"] = None
    schema = PacketSchema(Limits())
    assert plain_load._compiled(schema)(copy.deepcopy(packet)) == schema.load(copy.deepcopy(packet))


def test_every_schema_of_the_packet_has_a_shortcut():
    # A hook or option the module does not model (a post_load, a field's @validates) leaves that
    # schema to marshmallow for good: correct, but the bot's path is slower again. Say so here.
    def schemas(schema: Schema):
        yield schema
        for field in schema.load_fields.values():
            inner = getattr(field, "inner", field)
            if isinstance(inner, fields.Nested):
                yield from schemas(inner.schema)

    found = list(schemas(PacketSchema(Limits())))
    assert len(found) > 10
    assert [type(schema).__name__ for schema in found if not plain_load.compiles(schema)] == []


class _Later(BotSchema):
    @post_load
    def _shout(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {**data, "id": data["id"].upper()}


class _Checked(BotSchema):
    @validates("id")
    def _no_spaces(self, value: str, **_: Any) -> None:
        if " " in value:
            raise ValidationError("No spaces.")


@pytest.mark.parametrize(("schema", "data", "expected"), [
    (_Later(), {"id": "bot"}, {"id": "BOT"}),
    (_Checked(), {"id": "a bot"}, ValidationError),
])
def test_a_schema_with_a_hook_it_does_not_model_is_left_to_marshmallow(schema, data, expected):
    assert not plain_load.compiles(schema)
    if expected is ValidationError:
        with pytest.raises(ValidationError):
            plain_load.load(schema, data)
    else:
        assert plain_load.load(schema, data) == expected


@pytest.mark.parametrize("change", [
    lambda p: p["customer"].update(email=None),  # an optional null: dropped by the pre_load hook
    lambda p: p["customer"].update(nickname="Dee"),  # a field we do not know, kept (INCLUDE)
    lambda p: p["customer"].update({"a.b": 1}),  # a dotted unknown key
    lambda p: p.update(surprise=1),  # unknown at the top: refused (RAISE)
    lambda p: p["bot"].pop("id"),  # a required field missing
    lambda p: p["bot"].update(id=None),  # a required field's null
    lambda p: p["customer"].update(id="", email="", phone=" "),  # the schema's own check (_identified)
    lambda p: p["escalation"].update(reason="bored"),
    lambda p: p["conversation"].update(url="not a url"),
    lambda p: p["transcript"][0].update(at="yesterday"),
    lambda p: p["transcript"].append({"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "",
                                      "attachments": [{"name": "a.png"}]}),
    lambda p: p["transcript"].append({"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "",
                                      "attachments": [{}]}),
    lambda p: p.update(targets=["zendesk", "zendesk"]),
    lambda p: p.update(targets="zendesk"),
    lambda p: p["escalation"].update(keywords="refund"),  # a string is not a list of its letters
    lambda p: p.update(history={"at": "2026-11-20T09:14:02Z"}),
    lambda p: p["intent"].update(confidence=True),
    lambda p: p.update(transcript=[p["transcript"][0]] * 21),  # over the configured limit
])
def test_each_kind_of_difference_agrees_with_marshmallow(change):
    packet = full_packet()
    change(packet)
    shortcut, reference = both(packet)
    assert shortcut == reference


def _paths(value: Any, prefix: tuple[Any, ...] = ()):
    """Every place in a JSON value: (path, the value there)."""
    yield prefix, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from _paths(inner, (*prefix, key))


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(allow_nan=False), st.text(max_size=12),
    st.sampled_from(["", "   ", "x" * 600, "not a url", "https://ok.example/a", "a@b.example", "not an email",
                     "2026-11-20T09:14:02Z", "2026-11-20", "customer", "bot", "angry", "urgent", "zendesk",
                     "ai_unable", "en", "es-MX", "a.b"]),
    st.lists(st.sampled_from(["x", "", 1, None, "zendesk"]), max_size=3),
    st.dictionaries(st.sampled_from(["id", "url", "name", "x", "a.b"]), st.sampled_from(["x", "", 1, None]),
                    max_size=2),
)
KEYS = st.sampled_from(["id", "email", "url", "text", "at", "role", "name", "reason", "extra", "a.b", "_schema",
                        "transcript", "targets", "attachments", "metadata"])


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_a_broken_packet_is_refused_as_marshmallow_refuses_it(data):
    packet = full_packet() if data.draw(st.booleans()) else minimal_packet()
    for _ in range(data.draw(st.integers(1, 3))):
        path, value = data.draw(st.sampled_from(list(_paths(packet))))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if not path:
            continue
        parent = packet
        for key in path[:-1]:
            parent = parent[key]
        if action == "replace":
            parent[path[-1]] = data.draw(VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(value, dict):
            value[data.draw(KEYS)] = data.draw(VALUES)
    shortcut, reference = both(packet)
    assert shortcut == reference


# What the packet's schemas do not use today, pinned with small schemas: an edit that adds one
# must not make the shortcut differ from marshmallow (the review's list).
class _Inner(Schema):
    s = fields.String()


@pytest.mark.parametrize(("schema", "data"), [
    (Schema.from_dict({"s": fields.String(post_load=str.upper)})(), {"s": "x"}),  # a field's own processors
    (Schema.from_dict({"s": fields.String(pre_load=str.strip)})(), {"s": " x "}),
    (Schema.from_dict({"a.b": fields.String()})(), {"a.b": "x"}),  # written as a path
    (Schema.from_dict({"n": fields.Nested(_Inner, validate=lambda v: False)})(), {"n": {"s": "x"}}),
    (Schema.from_dict({"n": fields.Nested(_Inner, unknown="include")})(), {"n": {"s": "x", "t": 1}}),
    (Schema.from_dict({"n": fields.Nested(_Inner, validate=lambda v: "s" in v)})(), {"n": {}}),
    (Schema.from_dict({"s": fields.String(data_key="S")})(), {"S": "x"}),
    (Schema.from_dict({"f": fields.Function(deserialize=lambda value, context=None: value * 2)})(), {"f": 2}),
])
def test_a_schema_feature_the_packet_does_not_use_yet_still_loads_as_marshmallow_loads(schema, data):
    assert outcome(lambda d: plain_load.load(schema, d), copy.deepcopy(data)) == outcome(schema.load,
                                                                                        copy.deepcopy(data))


def test_a_schema_that_returns_another_kind_of_dict_or_overrides_loading_is_left_to_marshmallow():
    from collections import OrderedDict

    class Ordered(_Inner):
        dict_class = OrderedDict

    class Handled(_Inner):
        def handle_error(self, error, data, **kwargs):
            raise ValueError("handled")

    assert not plain_load.compiles(Ordered()) and not plain_load.compiles(Handled())
    assert type(plain_load.load(Ordered(), {"s": "x"})) is OrderedDict
