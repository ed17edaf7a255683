"""JSON-lines logging with the handoff id on every line.

The id travels in a context variable, so code deep in an adapter logs it without passing it around.
Bodies and secrets never go into log records at INFO: call sites log ids, counts and states.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator

from pythonjsonlogger.json import JsonFormatter

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("log_context", default=None)


@contextlib.contextmanager
def log_context(**values: str) -> Iterator[None]:
    """Add fields (handoff_id, target, delivery_id…) to every log line inside the block."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def configure(level: str = "INFO") -> None:
    """Install one JSON handler on the root logger (idempotent: safe across app factories)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_connector", False):
            break
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"})
        )
        handler.addFilter(_ContextFilter())
        handler._connector = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter that would log URLs with query strings or bodies stays at WARNING.
    for noisy in ("urllib3", "zenpy", "simple_salesforce", "slack_sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
