"""The handoff connector: a Flask service that turns a chatbot's escalation into tickets, cases and
alerts an agent can work from. `create_app` is the only entry point (see `wsgi.py`).

The factory is imported on first use so that `import connector.brief` (which adapters need) does
not pull in the whole app, and with it the adapter registry, in a circle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: Mapping[str, Any] | None = None) -> "Flask":
    from .app import create_app as factory

    return factory(test_config)
