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
import functools
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
    """The first moment strictly after `now` at which `is_open` turns true, in the calendar's zone;
    None if there is none within SEARCH_DAYS days."""
    today, was_open = now.astimezone(calendar.zone).date(), is_open(calendar, now)
    for offset in range(SEARCH_DAYS):
        for moment in _changes(calendar, today + dt.timedelta(days=offset)):
            if moment > now:
                opened = is_open(calendar, moment)
                if opened and not was_open:
                    return moment.astimezone(calendar.zone)
                was_open = opened
    return None


def closes_at(calendar: Calendar, now: dt.datetime, until: dt.datetime | None = None) -> dt.datetime | None:
    """When a team open at `now` next closes: the first moment `is_open` turns false, so through
    ranges that meet (the next day's 00:00 after 24:00; a day's own are joined, `_joined`) and
    across a change of the clocks as it reads them. None when closed now, or open for more than a
    week without a break. `until`: only whether it closes before then matters — a midnight past it
    is answered as it is reached (a team open round the clock walked 192 days for every sample of
    its observed wait)."""
    if not is_open(calendar, now):
        return None
    today = now.astimezone(calendar.zone).date()
    for offset in range(8):  # a week and a day
        day = today + dt.timedelta(days=offset)
        if offset and until is not None and (midnight := _first_moment(calendar.zone, day)) > until:
            return midnight.astimezone(calendar.zone)  # still open past `until`: no closing before it
        closing = next((m for m in _changes(calendar, day) if m > now and not is_open(calendar, m)), None)
        if closing is not None:
            return closing.astimezone(calendar.zone)
    return None


def status(calendar: Calendar, now: dt.datetime) -> dict[str, Any]:
    """What the assignment carries: JSON-ready, so it can be stored with the handoff.
    `closes_in_s`: how long the team stays open (`routing.wait_estimate` quotes no wait beyond it)."""
    now = now.astimezone(dt.UTC)  # aware datetimes of one zone subtract as wall clocks, blind to a change
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


@functools.lru_cache(maxsize=1024)  # a handoff asks for today's and tomorrow's, as did the one before it
def _changes(calendar: Calendar, day: dt.date) -> tuple[dt.datetime, ...]:
    """The moments of `day` (in UTC, in order) at which `is_open`, reading the wall clock, may
    change: the day's first, each range's start and end when the clock shows them — twice in the
    hour a fall-back repeats, never in a spring-forward gap — and the change of the clocks itself:
    a time the gap skips is passed then (02:30 on a day 02:00 becomes 03:00 is passed at 03:00),
    and a fall-back takes the clock back into a range or out of it."""
    zone, midnight = calendar.zone, dt.datetime.combine(day, dt.time())
    moments = {_first_moment(zone, day)}
    if (shift := _clocks_change(zone, day)) is not None:
        moments.add(shift)
    for start, end in calendar.week[day.weekday()]:
        for wall in (midnight + dt.timedelta(minutes=start), midnight + dt.timedelta(minutes=end)):
            # zoneinfo's `fold`: the offsets before and after a change; in a gap the first is the smaller
            earlier, later = (wall.replace(tzinfo=zone, fold=fold).utcoffset() or dt.timedelta() for fold in (0, 1))
            if earlier >= later:  # shown by the clock (twice if the offsets differ), not skipped
                moments.update((wall - offset).replace(tzinfo=dt.UTC) for offset in (earlier, later))
    return tuple(sorted(moments))


def _first_moment(zone: ZoneInfo, day: dt.date) -> dt.datetime:
    """The day's first moment, in UTC (its 00:00; where the clocks skip midnight, the first after)."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def _clocks_change(zone: ZoneInfo, day: dt.date) -> dt.datetime | None:
    """When the clocks change on `day` (in UTC, to the second), if they do — once a day at most."""
    midnights = [dt.datetime.combine(day + dt.timedelta(days=n), dt.time(), tzinfo=zone) for n in (0, 1)]
    if midnights[0].utcoffset() == midnights[1].utcoffset():  # the usual day, told without converting
        return None
    first, next_first = (midnight.astimezone(dt.UTC) for midnight in midnights)
    offset = first.astimezone(zone).utcoffset()
    if next_first.astimezone(zone).utcoffset() == offset:
        return None
    low, high = int(first.timestamp()), int(next_first.timestamp())  # the change is in (low, high]
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if dt.datetime.fromtimestamp(middle, zone).utcoffset() == offset else (low, middle)
    return dt.datetime.fromtimestamp(high, dt.UTC)


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


# Zones that keep one offset all year, named like a region's clock: `EST` is New York's winter time
# only, so a New York team's 09:00 opened at 10:00 every summer; `Etc/GMT+5` is UTC−5 (POSIX's sign).
_FIXED = re.compile(r"(?:EST|MST|HST|Etc/GMT[+-](?:[1-9]|1[0-4]))")


def zone_warnings(calendars: Mapping[str, Calendar]) -> list[str]:
    """Calendars in a zone of one offset all year (`_FIXED`): loaded, since a team may mean it (a ship
    at sea), and said — an admin in New York wrote `timezone: EST` (an admin's review)."""
    said = []
    for name, calendar in calendars.items():
        key = calendar.zone.key
        if _FIXED.fullmatch(key):
            offset = dt.datetime(2026, 7, 1, tzinfo=calendar.zone).strftime("%z")
            said.append(f"routing.yaml calendars.{name}.timezone: {key} is UTC{offset[:3]}:{offset[3:]} all year, "
                        "with no summer time; a region's name (America/New_York, Europe/Berlin) follows its clock")
    return said


def build_calendars(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Calendar]:
    """Calendars from data already loaded by `CalendarSchema` (see routing's schema)."""
    return {
        name: Calendar(name, spec["timezone"], spec["hours"], frozenset(spec.get("holidays") or ()))
        for name, spec in raw.items()
    }
