"""Jinja2's sandbox for every template an admin can edit (messages, subjects, mapping values).

Packet values are passed as data, never compiled: a `{{ 7*7 }}` a customer typed stays text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ConfigError

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@lru_cache(maxsize=512)
def _compile(source: str):  # type: ignore[no-untyped-def]
    return _env.from_string(source)


def render(source: str, where: str, **context: Any) -> str:
    """Render an admin template; `where` names the file and key for the error message."""
    try:
        return _compile(source).render(**context)
    except TemplateError as err:
        raise ConfigError(where, f"template error: {err}") from None
