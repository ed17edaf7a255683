"""The wait to quote, learnt from what the connector has seen: per team, the median time from
handoff to assignment over a recent window, once enough assignments were seen
(`default.observed_wait` in routing.yaml: `window_minutes`, `min_samples`).

It is asked on the intake hot path, so each team's figure is cached in memory for a short TTL and
a miss costs one query, answered from an index (`ix_assignments_team_recent`). A database error
yields None — the configured figure is quoted instead — rather than failing the handoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from . import business_hours
from .db import Database
from .models import Assignment, utcnow
from .routing_schema import compiled

log = logging.getLogger(__name__)

CACHE_TTL_S = 30.0
# A bound on what one miss reads: the newest assignments of the window, plenty for a median.
MAX_SAMPLES = 1000
# Team names can come from a bot's routing.department hint: bound the cache against made-up ones.
MAX_TEAMS = 1024


@dataclass(frozen=True)
class _Entry:
    expires: float
    config: tuple[int, int]  # (window_minutes, min_samples) it was measured with
    seconds: int | None


def _within_hours(calendar: business_hours.Calendar, came: dt.datetime, wait: int) -> bool:
    """A wait that began and ended within one stretch of the team's open hours."""
    taken = came + dt.timedelta(seconds=wait)
    closes = business_hours.closes_at(calendar, came, until=taken)  # None: closed when it came (or open all week)
    return business_hours.is_open(calendar, came) and (closes is None or taken <= closes)


class ObservedWait:
    """`observed(team) -> seconds | None`, the `observed_wait` source of `routing.wait_estimate`.

    `routing` gives the current routing config (mappings are live); `clock` (monotonic, for the
    TTL) and `now` (wall clock, for the window) are injectable for tests.
    """

    def __init__(self, db: Database, routing: Callable[[], Mapping[str, Any]], *, ttl: float = CACHE_TTL_S,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], dt.datetime] = utcnow):
        self.db, self.routing, self.ttl = db, routing, ttl
        self._clock, self._now = clock, now
        # Plain dict reads and writes are atomic under the GIL; two threads missing at once both
        # query, which is harmless and cheaper than a lock on every handoff.
        self._cache: dict[str, _Entry] = {}

    def __call__(self, team: str) -> int | None:
        settings = compiled(self.routing())["default"]["observed_wait"]
        config = (settings["window_minutes"], settings["min_samples"])
        now = self._clock()
        entry = self._cache.get(team)
        if entry is not None and entry.expires > now and entry.config == config:
            return entry.seconds
        seconds = self._measure(team, *config)
        if len(self._cache) >= MAX_TEAMS:
            self._cache = {name: e for name, e in self._cache.items() if e.expires > now}
            if len(self._cache) >= MAX_TEAMS:
                self._cache = {}
        self._cache[team] = _Entry(now + self.ttl, config, seconds)
        return seconds

    def forget(self, team: str) -> None:
        """Drop a team's cached figure (this process just recorded an assignment for it)."""
        self._cache.pop(team, None)

    def _measure(self, team: str, window_minutes: int, min_samples: int) -> int | None:
        since = self._now() - dt.timedelta(minutes=window_minutes)
        query = (select(Assignment.handed_off_at, Assignment.wait_seconds)
                 .where(Assignment.team == team, Assignment.assigned_at >= since, Assignment.routed.is_(False))
                 .order_by(Assignment.assigned_at.desc())
                 .limit(MAX_SAMPLES))
        try:
            with self.db.reading() as session:
                rows = session.execute(query).all()
        except SQLAlchemyError as err:
            log.warning("observed wait unavailable; the configured figure is quoted",
                        extra={"team": team, "error": type(err).__name__})
            return None
        # Only handoffs that came while the team was open and were taken before it closed: one that
        # came in the night waited the night too. Counted, the weekend's backlog taken on Monday
        # morning was quoted to the customers who came at ten as "about 2764 minutes"; one that came
        # at 11:55 and was taken after lunch, "about 66 minutes" all afternoon. (Out of hours no
        # wait is quoted.)
        calendar = (compiled(self.routing())["teams"].get(team) or {}).get("calendar")
        waits = [wait for came, wait in rows if calendar is None or _within_hours(calendar, came, wait)]
        if len(waits) < min_samples:
            return None
        return round(statistics.median(waits))
