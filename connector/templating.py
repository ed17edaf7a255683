"""Jinja2's sandbox for every template an admin can edit (messages, subjects, mapping values), and
the sandbox classes the agent brief's own templates render in (`Sandbox`).

Packet values are passed as data, never compiled: a `{{ 7*7 }}` a customer typed stays text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from .errors import ConfigError

# What `x.name` finds on a plain dict as an attribute (its methods); any other name is a key.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _DictKeysDirect:
    """`x.name` on a plain dict read as its key, as Jinja2 reads it, without the detour: Jinja2 tries
    the attribute first and reads the key once AttributeError is raised and caught. Every value of a
    packet or a brief's view is read that way, and the raised errors were a quarter of the agent
    brief's rendering. A name a dict has as an attribute (`items`, `get`) still takes Jinja2's path,
    and with it the sandbox's checks; a dict subclass or any other object too."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except (TypeError, LookupError):  # what Jinja2's own read of the key catches
                pass  # Jinja2's own path: the undefined value that names what is missing
        return super().getattr(obj, attribute)  # type: ignore[misc]


class Sandbox(_DictKeysDirect, SandboxedEnvironment):
    """Jinja2's sandbox, reading dicts' keys directly (the agent brief's templates)."""


class ImmutableSandbox(_DictKeysDirect, ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, reading dicts' keys directly (every template an admin edits)."""


_env = ImmutableSandbox(undefined=StrictUndefined, autoescape=False)


class MissingValue(ConfigError):
    """The template reads a value its context lacks (StrictUndefined)."""


class FailedOnValues(ConfigError):
    """The template raised on this context's values (`seats + ' seats'` with a number, `x // 0`):
    Python's own errors inside the sandbox, named as the template's."""


class Refused(FailedOnValues):
    """The sandbox refused what the template does (`customer.attributes.pop('plan')` changes the packet;
    an attribute named `_…` at run time): refused at load when the sample packets show it
    (`template_trial.refuse_on_samples`), else, at delivery, a field left out as any failure on values."""


@lru_cache(maxsize=512)
def compiled(source: str):  # type: ignore[no-untyped-def]
    """`source` compiled in the sandbox (cached); raises Jinja2's TemplateSyntaxError."""
    return _env.from_string(source)


def render(source: str, where: str, **context: Any) -> str:
    """Render an admin template; `where` names the file and key for the error message."""
    try:
        template = compiled(source)
    except TemplateError as err:  # what `check_template` refuses at load
        raise ConfigError(where, f"template error: {err}") from None
    try:
        return template.render(**context)
    except UndefinedError as err:
        raise MissingValue(where, f"template error: {err}") from None
    except SecurityError as err:
        raise Refused(where, f"template error: {err}") from None
    except Exception as err:  # the sandbox runs the template's operations: their errors are its own
        raise FailedOnValues(where, f"template error: {type(err).__name__}: {err}") from None
