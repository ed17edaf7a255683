"""Jinja2's sandbox for every template an admin can edit (messages, subjects, mapping values).

Packet values are passed as data, never compiled: a `{{ 7*7 }}` a customer typed stays text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ConfigError

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class MissingValue(ConfigError):
    """The template reads a value its context lacks (StrictUndefined)."""


class FailedOnValues(ConfigError):
    """The template raised on this context's values (`seats + ' seats'` with a number, `x // 0`):
    Python's own errors inside the sandbox, named as the template's."""


@lru_cache(maxsize=512)
def compiled(source: str):  # type: ignore[no-untyped-def]
    """`source` compiled in the sandbox (cached); raises Jinja2's TemplateSyntaxError."""
    return _env.from_string(source)


def render(source: str, where: str, **context: Any) -> str:
    """Render an admin template; `where` names the file and key for the error message."""
    try:
        return compiled(source).render(**context)
    except UndefinedError as err:
        raise MissingValue(where, f"template error: {err}") from None
    except TemplateError as err:
        raise ConfigError(where, f"template error: {err}") from None
    except Exception as err:  # the sandbox runs the template's operations: their errors are its own
        raise FailedOnValues(where, f"template error: {type(err).__name__}: {err}") from None
