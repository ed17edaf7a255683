"""The usual packet loaded without marshmallow's per-object machinery, by the schema's own rules.

marshmallow spends most of a packet's load on the schema around each field, not on the field: a
nested object costs ~15 µs of processors, error stores and getters before any of its values is
looked at, and a packet holds a dozen of them (~340 µs for the sample packet, on the path the bot
waits on). `load` walks the same declarations — the fields, their validators, the schemas'
`pre_load` and `validates_schema` hooks, their `unknown` rule — and runs them directly. It is the
transcript's shortcut (`packet.Transcript`) for the whole packet, with one difference: nothing is
written twice. A string field's type is checked here; every other field (e-mails, URLs, times,
numbers, dicts, the transcript) is loaded by its own `deserialize`, validators included.

It never refuses anything itself: at the first thing it does not take as it is — any value a
validator refuses, a missing required field, a key the schema does not know under `RAISE`, a type
other than the one expected, a schema with a hook or option it does not model — it gives up, and
marshmallow loads the packet from the start. Every error a bot sees is marshmallow's, worded and
placed as before; `tests/test_plain_load.py` holds the two to the same result on valid packets and
on many broken ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields
from marshmallow.utils import missing

Load = Callable[[Any], Any]
Field = Callable[[Any, dict[str, Any] | None], Any]  # a value, and the object it is in (marshmallow's `data`)

# The hooks a compiled schema may have: each is called as marshmallow calls it. Any other kind
# (post_load, a field's @validates, pass_original…) leaves that schema to marshmallow.
_MODELLED_HOOKS = {"pre_load", "validates_schema"}


class _Declined(Exception):
    """Not loaded here: marshmallow loads the whole packet (and says what is wrong, if anything)."""


def load(schema: Schema, data: Any) -> Any:
    """`schema.load(data)`, the same result, faster when `data` is as the schema expects."""
    compiled = _compiled(schema)
    if compiled is not None:
        try:
            return compiled(data)
        except (_Declined, ValidationError):
            pass
    return schema.load(data)


def deserialize(field: fields.Field, value: Any) -> Any:
    """`field.deserialize(value)` (no name, no object: as marshmallow's List loads an item), the
    same result, faster when `value` is as the field expects."""
    try:
        return _kept(field, lambda: _field(field, None))(value, None)
    except (_Declined, ValidationError):
        return field.deserialize(value)


def compiles(schema: Schema) -> bool:
    """Whether `load` has a shortcut for `schema` (tests: a schema changed in a way this module
    does not model falls back for good, silently; the test says so instead)."""
    return _compiled(schema) is not None


def _compiled(schema: Schema) -> Load | None:
    return _kept(schema, lambda: _compile(schema))


def _kept(owner: Any, make: Callable[[], Any]) -> Any:
    """`make()`, once per schema or field: kept on the instance, whose fields are bound to it (the
    transcript reads its schema's limits). A copy of it (marshmallow copies a schema given to
    `Nested`, and fields with their schema) makes its own, since it carries its original's."""
    made_for, made = owner.__dict__.get("_plain_load", (None, None))
    if made_for != id(owner):
        made = make()
        owner.__dict__["_plain_load"] = (id(owner), made)
    return made


# What marshmallow's own loading goes through; a schema that overrides any of it is left to it.
_LOADING = ("load", "_do_load", "_deserialize", "_invoke_load_processors", "_invoke_field_validators",
            "_invoke_schema_validators", "_run_validator", "handle_error")


def _compile(schema: Schema) -> Load | None:
    hooks = {kind: hooked for kind, hooked in type(schema)._hooks.items() if hooked}
    if not hooks.keys() <= _MODELLED_HOOKS or schema.unknown not in (RAISE, INCLUDE) or schema.many or schema.partial:
        return None
    if schema.dict_class is not dict or any(getattr(type(schema), name) is not getattr(Schema, name)
                                            for name in _LOADING):
        return None
    hooked = [hook for kind in hooks.values() for hook in kind]  # (method name, pass_many, options)
    if any(many or options.get("pass_original") for _, many, options in hooked):
        return None
    before = [getattr(schema, name) for name, _, _ in hooks.get("pre_load", ())]
    after = [getattr(schema, name) for name, _, _ in hooks.get("validates_schema", ())]
    plan: list[tuple[str, str, bool, Field]] = []
    for name, field in schema.load_fields.items():
        # marshmallow writes a dotted name as a path ({"a": {"b": …}}), and the default in.
        if field.load_default is not missing or field.attribute not in (None, name) or "." in name:
            return None
        plan.append((field.data_key or name, name, field.required, _field(field, field.data_key or name)))
    known = {key for key, _, _, _ in plan}
    unknown = schema.unknown

    def load_object(data: Any) -> dict[str, Any]:
        if type(data) is not dict:
            raise _Declined
        for hook in before:
            data = hook(data, many=False, partial=None, unknown=unknown)
            if type(data) is not dict:
                raise _Declined
        loaded: dict[str, Any] = {}
        for key, name, required, load_value in plan:
            if key in data:
                loaded[name] = load_value(data[key], data)
            elif required:
                raise _Declined
        if len(loaded) != len(data):  # keys the schema does not declare
            if unknown != INCLUDE:
                raise _Declined
            loaded.update((key, value) for key, value in data.items() if key not in known)
        for check in after:
            check(loaded, many=False, partial=None, unknown=unknown)
        return loaded

    return load_object


def _field(field: fields.Field, name: str | None) -> Field:
    """One field's value as `field.deserialize` loads it, or `_Declined`."""
    validators = tuple(field.validators)

    def validated(value: Any) -> Any:
        for validator in validators:
            if validator(value) is False:
                raise _Declined
        return value

    if field.pre_load or field.post_load:  # a field's own processors: marshmallow runs them
        return lambda value, data: field.deserialize(value, name, data)
    if type(field) is fields.String:  # the packet's most common value: its type is all the field checks
        def load_string(value: Any, _: dict[str, Any] | None) -> Any:
            if type(value) is not str:
                raise _Declined
            return validated(value)
        return load_string
    if type(field) is fields.Nested and not field.many and field.unknown is None and not (field.only or field.exclude):
        nested = _compiled(field.schema)
        if nested is not None:
            return lambda value, _: validated(nested(value))
    if type(field) is fields.List:
        inner = _field(field.inner, None)  # as marshmallow's List loads an item: no name, no object

        def load_list(value: Any, _: dict[str, Any] | None) -> Any:
            if type(value) is not list:
                raise _Declined
            return validated([inner(item, None) for item in value])
        return load_list
    return lambda value, data: field.deserialize(value, name, data)
