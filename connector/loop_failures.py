"""What a background loop (the outbox's, the callbacks') says when one of its turns fails.

A database out of reach fails every turn, once a second per loop and worker: each logged with its
whole traceback, an outage wrote ~30 KB of log a second with two workers and buried the one line
that mattered. It is now said once, naming the cause as `connector` commands do, then once a
minute while it lasts, and once when the database answers again. Any other failure is a bug or
something new: its traceback, every time.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import DBAPIError, OperationalError

from .db import reason

log = logging.getLogger(__name__)

REPEAT_EVERY_S = 60.0


# What SQLite says when it cannot be reached or written (every other OperationalError of SQLite's —
# "no such table", "no such column" — is a schema this code does not expect: a traceback, every time).
# A server whose name no longer resolves (psycopg: "failed to resolve host 'db'", libpq: "could not
# translate host name"): Docker's DNS forgets a stopped container, Kubernetes a service with no pod.
_HOST_GONE = ("resolve host", "translate host name", "name or service not known", "name resolution",
              "nodename nor servname")
_SQLITE_AWAY = ("database is locked", "unable to open database", "disk i/o error", "readonly database",
                "database or disk is full")


# PostgreSQL's SQLSTATEs of a server that answers and takes no writes from us: 25006, a read-only
# transaction (a standby, or a primary demoted by a failover the address still points at; the
# database's `default_transaction_read_only`); 42501, a role without the right to write (its grants
# taken away). SQLite's "readonly database" is one (`_SQLITE_AWAY`): PostgreSQL's were a 500 "our
# fault" to every bot and a 4 KB traceback a second from each loop (an operator's review).
_NO_WRITES = ("25006", "42501")


def unreachable(err: BaseException) -> bool:
    """The database is away (refused, reset, timed out, locked) or takes no writes (read-only, no
    grants), as opposed to a query it refused."""
    if not isinstance(err, DBAPIError):
        return False
    if err.connection_invalidated:
        return True
    sqlstate = getattr(err.orig, "sqlstate", None)  # psycopg's; None when no server answered at all
    if sqlstate in _NO_WRITES:  # SQLAlchemy's InternalError and ProgrammingError, not OperationalError
        return True
    if not isinstance(err, OperationalError):
        return False
    if sqlstate:
        # 08: connection exceptions; 53: the server out of resources (too many clients, disk full);
        # 57P01-03: the server shutting down or starting.
        return sqlstate.startswith(("08", "53")) or sqlstate in ("57P01", "57P02", "57P03")
    text = str(err.orig).lower()
    return "connection" in text or "could not connect" in text or any(s in text for s in _SQLITE_AWAY + _HOST_GONE)


class LoopFailures:
    def __init__(self, loop: str, clock=time.monotonic):  # type: ignore[no-untyped-def]
        self.loop, self._clock = loop, clock
        self._down_since: float | None = None
        self._last_said = 0.0

    def failed(self, err: BaseException) -> None:
        if not unreachable(err):
            log.exception(f"{self.loop} loop iteration failed", exc_info=err)
            return
        now = self._clock()
        if self._down_since is None:
            self._down_since = self._last_said = now
            log.error(f"{self.loop} loop: the database cannot be reached; trying again each turn",
                      extra={"error": reason(err)})
        elif now - self._last_said >= REPEAT_EVERY_S:
            self._last_said = now
            log.error(f"{self.loop} loop: the database still cannot be reached",
                      extra={"error": reason(err), "for_s": round(now - self._down_since)})

    def succeeded(self) -> None:
        if self._down_since is not None:
            log.warning(f"{self.loop} loop: the database answers again",
                        extra={"after_s": round(self._clock() - self._down_since)})
            self._down_since = None
