"""Business hours per team: a time zone, weekly opening hours and holidays (`calendars:` in routing.yaml).

Hours are wall-clock times in the calendar's zone, so "09:00" stays 09:00 across a daylight-saving
change; every comparison is between aware datetimes, so the UTC instant is always the right one.

    calendars:
      emea:
        timezone: Europe/Paris
        hours: {mon-fri: "09:00-18:00", sat: "10:00-13:00"}   # a range or a list of ranges
        holidays: [2026-12-25, 2027-01-01]
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import RAISE, Schema, ValidationError, fields

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RANGE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
# Far enough to step over a long holiday season, near enough to stay cheap.
SEARCH_DAYS = 400


@dataclass(frozen=True)
class Calendar:
    name: str
    zone: ZoneInfo
    week: tuple[tuple[tuple[int, int], ...], ...]  # per weekday (Mon=0): (start, end) in minutes
    holidays: frozenset[dt.date]

    @property
    def timezone(self) -> str:
        return self.zone.key


def is_open(calendar: Calendar, now: dt.datetime) -> bool:
    local = now.astimezone(calendar.zone)
    if local.date() in calendar.holidays:
        return False
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in calendar.week[local.weekday()])


def next_opening(calendar: Calendar, now: dt.datetime) -> dt.datetime | None:
    """The first opening strictly after `now`, in the calendar's zone; None if there is none within a year."""
    today = now.astimezone(calendar.zone).date()
    for offset in range(SEARCH_DAYS):
        day = today + dt.timedelta(days=offset)
        if day in calendar.holidays:
            continue
        for start, _end in calendar.week[day.weekday()]:
            candidate = _wall(calendar.zone, day, start)
            if candidate > now:
                return candidate
    return None


def closes_at(calendar: Calendar, now: dt.datetime, until: dt.datetime | None = None) -> dt.datetime | None:
    """When a team open at `now` next closes: the end of the range it is in (a day's ranges that
    overlap or touch are one, `_joined`), carried on through the next day's 00:00 after 24:00.
    None when closed now, or open for more than a week without a break. `until`: only whether it
    closes before then matters — a midnight past it is answered as it is reached (a team open round
    the clock walked 192 days for every sample of its observed wait)."""
    if not is_open(calendar, now):
        return None
    local = now.astimezone(calendar.zone)
    day, minute = local.date(), local.hour * 60 + local.minute
    end = next(end for start, end in calendar.week[day.weekday()] if start <= minute < end)
    for _ in range(8 * 24):  # 192 ranges at most (a day's ranges chained, and then midnights)
        if end == 24 * 60:
            day, end = day + dt.timedelta(days=1), 0
            if until is not None and _wall(calendar.zone, day, 0) > until:
                return _wall(calendar.zone, day, 0)  # still open past `until`: no closing before it
            if day in calendar.holidays:
                return _wall(calendar.zone, day, 0)
        following = next((e for s, e in calendar.week[day.weekday()] if s == end), None)
        if following is None:
            return _wall(calendar.zone, day, end)
        end = following
    return None


def status(calendar: Calendar, now: dt.datetime) -> dict[str, Any]:
    """What the assignment carries: JSON-ready, so it can be stored with the handoff.
    `closes_in_s`: how long the team stays open (`routing.wait_estimate` quotes no wait beyond it)."""
    open_now = is_open(calendar, now)
    opening = None if open_now else next_opening(calendar, now)
    closing = closes_at(calendar, now) if open_now else None
    # Open now: when it opens after this closing, for a customer handed off just before it
    # (`customer_message`'s `closing`).
    reopening = next_opening(calendar, closing) if closing else None
    return {
        "calendar": calendar.name,
        "timezone": calendar.timezone,
        "open": open_now,
        "next_opening": opening.isoformat() if opening else None,
        "closes_in_s": int((closing - now).total_seconds()) if closing else None,
        "reopens_at": reopening.isoformat() if reopening else None,
    }


def _wall(zone: ZoneInfo, day: dt.date, minute: int) -> dt.datetime:
    naive = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minute)
    # A time inside a spring-forward gap (02:30 that never happens) becomes the real instant after
    # it: round-tripping through UTC normalizes the offset.
    return naive.replace(tzinfo=zone).astimezone(dt.UTC).astimezone(zone)


def parse_range(text: str) -> tuple[int, int]:
    match = RANGE_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValidationError(f"{text!r} is not a range like \"09:00-17:30\" (quote it in YAML)")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60 or end <= start:
        raise ValidationError(f"{text!r}: times must be 00:00-24:00 and the end after the start")
    return start, end


def parse_days(key: str) -> list[int]:
    first, _, last = str(key).lower().partition("-")
    if first not in DAYS or (last and last not in DAYS):
        raise ValidationError(f"{key!r} is not a day or day range ({', '.join(DAYS)}, e.g. mon-fri)")
    start, end = DAYS.index(first), DAYS.index(last or first)
    return [day % 7 for day in range(start, end + 1 if end >= start else end + 8)]


class ZoneField(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> ZoneInfo:
        name = super()._deserialize(value, attr, data, **kwargs)
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"unknown time zone {name!r} (use an IANA name like Europe/Paris)") from None


class WeekField(fields.Field):
    """Days (or ranges of them) to hours. A day named by two keys takes the shorter key's hours:
    `mon-fri: "09:00-18:00"` with `fri: closed` (or `fri: "09:00-12:00"`) is a Friday off (or a
    half day) — the two used to be added together, so Friday stayed open all day. Two keys of the
    same length naming one day are refused: which one is meant cannot be told."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if not isinstance(value, Mapping) or not value:
            raise ValidationError("must map days to hours, e.g. {mon-fri: \"09:00-18:00\"}")
        week: list[list[tuple[int, int]]] = [[] for _ in DAYS]
        given_by: list[tuple[int, str] | None] = [None for _ in DAYS]  # (how many days its key names, the key)
        errors: dict[str, list[str]] = {}
        for key, ranges in value.items():
            try:
                items = [] if ranges in (None, "closed") else ranges if isinstance(ranges, list) else [ranges]
                parsed = [parse_range(item) for item in items]
                days = parse_days(key)
                for day in days:
                    earlier = given_by[day]
                    if earlier is not None and earlier[0] == len(days):
                        raise ValidationError(f"{DAYS[day]} is given by {earlier[1]!r} too: name each day once, "
                                              f"or give its own hours under a shorter key (fri: closed)")
                    if earlier is None or len(days) < earlier[0]:
                        given_by[day], week[day] = (len(days), str(key)), list(parsed)
            except ValidationError as err:
                errors[str(key)] = err.messages if isinstance(err.messages, list) else [str(err.messages)]
        if errors:
            raise ValidationError(errors)
        if not any(week):
            raise ValidationError("opens on no day at all")
        return tuple(_joined(day) for day in week)


def _joined(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """A day's ranges in order, those that overlap or touch made one, as is_open reads them:
    `["09:00-12:30", "12:00-18:00"]` is 09:00-18:00 (`closes_at` said 12:30 at 14:00)."""
    joined: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return tuple(joined)


class HolidayField(fields.Field):
    """A YAML date (2026-12-25, which PyYAML already parses) or the same as a string."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> dt.date:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise ValidationError(f"{value!r} is not a date like 2026-12-25") from None


class CalendarSchema(Schema):
    class Meta:
        unknown = RAISE

    timezone = ZoneField(required=True)
    hours = WeekField(required=True)
    holidays = fields.List(HolidayField(), load_default=list)


def build_calendars(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Calendar]:
    """Calendars from data already loaded by `CalendarSchema` (see routing's schema)."""
    return {
        name: Calendar(name, spec["timezone"], spec["hours"], frozenset(spec.get("holidays") or ()))
        for name, spec in raw.items()
    }
