"""The sandboxes' direct read of a dict's keys (`templating._DictKeysDirect`) answers as Jinja2's own
sandboxes do: same values, same refusals, same errors for what is missing."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
from jinja2 import StrictUndefined, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from connector.templating import ImmutableSandbox, Sandbox

PAIRS = [(Sandbox, SandboxedEnvironment), (ImmutableSandbox, ImmutableSandboxedEnvironment)]


class _Named(dict):
    name = "the attribute: a dict subclass's attributes come before its keys"


VALUES = {
    # Keys named like every kind of dict attribute: methods, mutating ones, dunders.
    "d": {"name": "Dana", "items": "i", "keys": "k", "update": "u", "pop": "p", "__class__": "c", "nested": {"x": 1},
          "_private": "kept"},
    "od": OrderedDict(name="an OrderedDict is a subclass: Jinja2's own path"),
    "sub": _Named(name="the key"),
}
SOURCES = [
    "{{ d.name }}", "{{ d.nested.x }}", "{{ d['items'] }}", "{{ d.items() | list | length }}",
    "{{ d.keys() | list | length }}", "{{ d.update(x=1) }}", "{{ d.pop('name') }}",
    "{{ d.get('name') }}", "{{ d._private }}", "{{ d.__class__ }}", "{{ od.name }}", "{{ sub.name }}",
    "{% for k, v in d.items() %}{{ k }}{% endfor %}",
]


@pytest.mark.parametrize(("ours", "jinjas"), PAIRS)
@pytest.mark.parametrize("source", SOURCES)
def test_a_dicts_keys_read_as_jinja2_reads_them(ours, jinjas, source):
    def outcome(environment_class):
        try:
            return environment_class(undefined=StrictUndefined).from_string(source).render(**copy.deepcopy(VALUES))
        except Exception as err:  # the same refusal, whatever it is (a mutation runs on a copy)
            return type(err)

    assert outcome(ours) == outcome(jinjas)


@pytest.mark.parametrize(("ours", "jinjas"), PAIRS)
def test_what_a_dict_lacks_is_missing_and_its_internals_stay_refused(ours, jinjas):
    for environment_class in (ours, jinjas):
        env = environment_class(undefined=StrictUndefined)
        with pytest.raises(UndefinedError, match="no attribute 'missing'"):
            env.from_string("{{ d.missing }}").render(d={"name": "Dana"})
        with pytest.raises(SecurityError):
            env.from_string("{{ d.__class__.__subclasses__() }}").render(d={})
    with pytest.raises(SecurityError):  # a dict's own update, refused by the immutable sandbox alone
        ImmutableSandbox().from_string("{{ d.update(x=1) }}").render(d={})
