"""JSON-lines logging with the handoff id on every line.

The id travels in a context variable, so code deep in an adapter logs it without passing it around.
Bodies and secrets never go into log records at INFO: call sites log ids, counts and states.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from .models import Handoff

MAX_WAITING_LINES = 10_000  # a few MB of JSON lines: minutes of a busy worker's log
# The writer wakes on its own this often and writes what has piled up. Waking it for every line
# cost each line a futex wake of a sleeping thread: in the latency benchmark that was ~7 % of a
# worker's CPU, more than validating the packet, and the log calls' largest cost.
WRITE_EVERY_S = 0.05

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("log_context", default=None)


def log_each(logger: logging.Logger, what: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """One INFO line per row an operator acted on (a delivery replayed, a callback dismissed), its ids
    as its fields: a search of the log for a handoff showed its attempts stop, or start again at 1,
    with nothing between — the bulk line said only a count (an operator's review)."""
    for row in rows:
        logger.info(what, extra={key: value if isinstance(value, str) else str(value) for key, value in row.items()})


@contextlib.contextmanager
def log_context(**values: str) -> Iterator[None]:
    """Add fields (handoff_id, target, delivery_id…) to every log line inside the block."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def handoff_fields(handoff: Handoff) -> dict[str, str]:
    """The fields naming a handoff on a log line. A batch of messages (a follow-up, `msg_…`) is named
    as intake names it: its handoff's id as handoff_id, its own as follow_up_id — under its own id as
    handoff_id, a search of the logs by the handoff's id missed its messages failing at the vendor."""
    if handoff.follows_id:
        return {"handoff_id": handoff.follows_id, "follow_up_id": handoff.id}
    return {"handoff_id": handoff.id}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class BackgroundStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Filters a record in the thread that logs it; one thread of its own formats and writes.

    A plain StreamHandler writes under its lock. Under the benchmark's intake load the request
    threads spent ~18 % of their time waiting for that lock: its holder, inside `write()`, had let
    go of the GIL and queued to get it back. Here a log call costs the caller its filters (the
    context's fields are added there) and a put on a queue; formatting, a JSON encoding per line,
    waits for the writer, off the path a bot waits on. So a record is formatted up to a tick after
    the call: its arguments and extra fields must not change meanwhile (call sites log ids,
    counts and states, not objects they go on changing).

    Lines keep their order; `flush()` (logging.shutdown calls it at exit) returns once everything
    logged before it is written. The writer belongs to the process that started
    it: after a fork (gunicorn's workers) the child starts its own on its first line.

    At most `max_waiting` lines wait to be written. Past that (a log pipe stalled for long) a log
    call waits for room, as a plain handler waits on a stalled pipe, rather than growing the
    process's memory without bound; no line is dropped.

    A log call does not wake the writer: it writes every `WRITE_EVERY_S`, so a line reaches the
    stream that much later while the stream keeps up (and a process killed outright loses that
    much). `flush()` wakes it at once.
    """

    def __init__(self, stream: IO[str] | None = None, max_waiting: int = MAX_WAITING_LINES):
        super().__init__(stream)
        self._max_waiting = max_waiting
        self._lines: queue.Queue[logging.LogRecord | threading.Event] = queue.Queue(max_waiting)
        self._writer_pid: int | None = None
        self._wake = threading.Event()  # set by flush(): write now, not at the next tick (one per writer)
        self._start_lock = threading.Lock()
        # Fork only with the writer idle: a writer inside `stream.write()` at the fork would leave
        # the child a stream locked forever (gunicorn's master logs, then forks its workers).
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: (handler := ref()) is not None and handler._drain())

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        if not self.filter(record):
            return False
        self._put(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def flush(self) -> None:
        self._drain()
        super().flush()

    def _drain(self) -> None:
        """Wait (5 s at most) until the writer has written everything logged so far."""
        if self._writer_pid == os.getpid():
            written = threading.Event()
            try:
                self._lines.put(written, timeout=5)
            except queue.Full:  # the stream is stuck: do not hang a fork or the exit on it
                return
            self._wake.set()
            written.wait(timeout=5)

    def _put(self, item: logging.LogRecord | threading.Event) -> None:
        if self._writer_pid != os.getpid():
            self._start_writer()
        self._lines.put(item)

    def _start_writer(self) -> None:
        with self._start_lock:
            if self._writer_pid == os.getpid():
                return
            # A queue inherited from the parent may still hold its lines: they are the parent's to write.
            self._lines = queue.Queue(self._max_waiting)
            # The parent's event too: its writer may have held the event's lock at the fork.
            self._wake = threading.Event()
            threading.Thread(target=self._write_lines, args=(self._lines,), name="log-writer", daemon=True).start()
            self._writer_pid = os.getpid()

    def _write_lines(self, lines: queue.Queue[logging.LogRecord | threading.Event]) -> None:
        # Nobody waits in `lines.get()`, so a put finds no one to wake (see WRITE_EVERY_S). A caller
        # waiting for room in a full queue is woken by the gets below.
        while True:
            self._wake.wait(WRITE_EVERY_S)
            self._wake.clear()
            batch: list[str] = []
            while True:  # write what has piled up in one call
                try:
                    item = lines.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, threading.Event):
                    self._write(batch)
                    batch = []
                    item.set()
                else:
                    try:
                        batch.append(self.format(item))
                    except Exception:
                        self.handleError(item)
            self._write(batch)

    def _write(self, batch: list[str]) -> None:
        if not batch:
            return
        try:
            self.stream.write("".join(line + self.terminator for line in batch))
            self.stream.flush()
        except Exception:  # as StreamHandler does: a broken stream must not stop the service
            if logging.raiseExceptions:
                print(f"--- logging: {len(batch)} line(s) could not be written", file=sys.__stderr__)


def configure(level: str = "INFO") -> None:
    """Install one JSON handler on the root logger (idempotent: safe across app factories)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_connector", False):
            break
    else:
        handler = BackgroundStreamHandler(sys.stderr)
        formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                  rename_fields={"levelname": "level"})
        # In UTC, saying so (2026-12-04T14:13:27.982Z), as every other time the connector writes:
        # local time without an offset could not be set beside the CLI's listings or a vendor's.
        formatter.converter = time.gmtime  # type: ignore[assignment]
        formatter.default_time_format, formatter.default_msec_format = "%Y-%m-%dT%H:%M:%S", "%s.%03dZ"
        handler.setFormatter(formatter)
        handler.addFilter(_ContextFilter())
        handler._connector = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # No line shows the caller's file and line or thread (the format above): skip collecting them
    # on every record — the logging HOWTO's "Optimization" switches. Looking up the caller walked
    # the stack on every log call, a sixth of a log call's cost on the request path. The process id
    # stays: gunicorn's own log format shows it (`[%(process)d]`), in this same process.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logMultiprocessing = False
    # Library chatter that would log URLs with query strings or bodies stays at WARNING.
    for noisy in ("urllib3", "zenpy", "simple_salesforce", "slack_sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # slack-sdk's client logs each failed call at ERROR ("Failed to send a request…", "Failed to decode
    # Slack API response: <a proxy's page>"), two for one attempt with its retry: an operator paging
    # on ERROR was paged by a blip the next attempt got past. The adapter reports every failure in
    # the connector's own line ("delivery attempt failed", WARNING while it is retried).
    logging.getLogger("slack_sdk.web.base_client").setLevel(logging.CRITICAL)
