"""Business hours: wall-clock hours in a zone, right across daylight-saving changes; holidays."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from marshmallow import ValidationError

from connector.business_hours import CalendarSchema, build_calendars, closes_at, is_open, next_opening, status
from connector.customer_message import compose
from connector.mappings import load_mappings
from connector.routing import assign, compile_routing, expected_wait
from tests.factories import FIXTURES, full_packet

UTC = dt.UTC


def calendar(zone: str, hours: dict, holidays: list | None = None):  # type: ignore[no-untyped-def]
    spec = CalendarSchema().load({"timezone": zone, "hours": hours, "holidays": holidays or []})
    return build_calendars({"test": spec})["test"]


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


BERLIN = calendar("Europe/Berlin", {"mon-fri": "09:00-17:00"}, ["2026-12-25"])
NEW_YORK = calendar("America/New_York", {"mon-fri": "09:00-17:00", "sun": "02:30-04:00"})


@pytest.mark.parametrize(("now", "opening"), [
    # Spring forward (Sun 29 Mar 2026): Friday evening CET → Monday 09:00 CEST, 07:00 UTC (not 08:00).
    (at(2026, 3, 27, 17, 0), at(2026, 3, 30, 7, 0)),
    # Fall back (Sun 25 Oct 2026): Friday evening CEST → Monday 09:00 CET, 08:00 UTC (not 07:00).
    (at(2026, 10, 23, 16, 0), at(2026, 10, 26, 8, 0)),
    # The morning of: 07:30 UTC is 08:30 CET → opens at 09:00 local the same day.
    (at(2026, 10, 26, 7, 30), at(2026, 10, 26, 8, 0)),
])
def test_next_opening_across_berlin_dst(now, opening):
    assert not is_open(BERLIN, now)
    found = next_opening(BERLIN, now)
    assert found == opening
    assert found.strftime("%H:%M %A") == f"09:00 {opening.astimezone(BERLIN.zone):%A}"


@pytest.mark.parametrize(("now", "expected"), [
    (at(2026, 3, 9, 13, 30), True),    # 09:30 EDT, the day after spring forward (08:30 in EST terms)
    (at(2026, 3, 6, 13, 30), False),   # 08:30 EST, before it
    (at(2026, 11, 2, 14, 30), True),   # 09:30 EST, the day after fall back
    (at(2026, 11, 2, 13, 30), False),  # 08:30 EST (would be 09:30 in EDT terms)
    (at(2026, 10, 30, 20, 59), True),  # 16:59 EDT on the Friday before
    (at(2026, 10, 30, 21, 0), False),  # 17:00 EDT: closed, the end is exclusive
])
def test_is_open_in_new_york_around_dst(now, expected):
    assert is_open(NEW_YORK, now) is expected


def test_an_opening_inside_the_spring_forward_gap_is_the_real_instant_after_it():
    # Sunday 8 Mar 2026, New York: 02:30 never happens (02:00 → 03:00 EDT): open from 03:00, as
    # is_open reads the clock (it said 03:30, open since 03:00 by is_open).
    found = next_opening(NEW_YORK, at(2026, 3, 8, 5, 0))  # 00:00 EST
    assert found == at(2026, 3, 8, 7, 0)  # 03:00 EDT
    # And on the fall-back Sunday 02:30 happens once, in EST.
    assert next_opening(NEW_YORK, at(2026, 11, 1, 4, 0)) == at(2026, 11, 1, 7, 30)


def test_opening_and_closing_agree_with_is_open_across_the_clocks_changing():
    # Paris springs forward on Sun 29 Mar 2026 (02:00 CET → 03:00 CEST, 01:00 UTC): a range from
    # 02:30 opens at 03:00 — next_opening said 03:30 while is_open said open at 03:10.
    spring = calendar("Europe/Paris", {"sun": "02:30-06:00"})
    opening = next_opening(spring, at(2026, 3, 28, 23, 30))  # 00:30 CET
    assert opening is not None and opening.isoformat() == "2026-03-29T03:00:00+02:00"
    assert not is_open(spring, opening.astimezone(UTC) - dt.timedelta(seconds=1)) and is_open(spring, opening)
    # A range ending in the gap closes when the clocks change; one wholly inside it never opens that day.
    assert closes_at(calendar("Europe/Paris", {"sun": "01:00-02:30"}), at(2026, 3, 29, 0, 30)) == at(2026, 3, 29, 1, 0)
    skipped = calendar("Europe/Paris", {"sun": "02:10-02:40"})
    assert next_opening(skipped, at(2026, 3, 28, 23, 30)) == at(2026, 4, 5, 0, 10)
    # Paris falls back on Sun 25 Oct 2026 (03:00 CEST → 02:00 CET, 01:00 UTC): 02:00-02:59 twice.
    fall = calendar("Europe/Paris", {"sun": "00:00-02:30"})
    second = at(2026, 10, 25, 1, 10)  # the second 02:10, CET: open, closing at the second 02:30
    assert is_open(fall, second) and status(fall, second)["closes_in_s"] == 20 * 60  # it said -2400
    first = at(2026, 10, 25, 0, 10)  # the first 02:10, CEST: closes at the first 02:30, open again at 02:00 CET
    closing = closes_at(fall, first)  # in the hour repeated, so compared in UTC (PEP 495: == across zones is False)
    assert closing is not None and closing.astimezone(UTC) == at(2026, 10, 25, 0, 30)
    assert not is_open(fall, at(2026, 10, 25, 0, 45))
    assert status(fall, first)["reopens_at"] == "2026-10-25T02:00:00+01:00" and is_open(fall, at(2026, 10, 25, 1, 0))
    # A clock read in the zone itself, fold and all, gives the same answer.
    local = dt.datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=fall.zone)
    assert status(fall, local)["closes_in_s"] == 20 * 60


def test_a_wait_is_quoted_in_the_hour_a_fall_back_repeats():
    routing = compile_routing({"version": 1, "default": {"team": "night", "expected_wait_seconds": 600},
                               "calendars": {"night": {"timezone": "Europe/Paris", "hours": {"sun": "00:00-02:30"}}},
                               "teams": {"night": {"calendar": "night"}}, "rules": [{"name": "default"}]})
    packet = full_packet()
    packet.pop("routing")
    handed = assign(packet, routing, now=at(2026, 10, 25, 1, 10))  # the second 02:10: open for 20 minutes
    assert not handed["out_of_hours"] and expected_wait(handed, routing) == 600


def test_holidays_are_closed_all_day():
    christmas_noon = at(2026, 12, 25, 11, 0)  # a Friday
    assert not is_open(BERLIN, christmas_noon)
    assert next_opening(BERLIN, at(2026, 12, 24, 17, 0)) == at(2026, 12, 28, 8, 0)
    state = status(BERLIN, christmas_noon)
    assert state == {"calendar": "test", "timezone": "Europe/Berlin", "open": False,
                     "next_opening": "2026-12-28T09:00:00+01:00", "closes_in_s": None, "reopens_at": None}


def test_open_status_has_no_next_opening():
    assert status(BERLIN, at(2026, 12, 23, 10, 0))["open"] is True
    assert status(BERLIN, at(2026, 12, 23, 10, 0))["next_opening"] is None


def test_an_open_team_says_when_it_closes_carrying_on_through_adjoining_ranges():
    assert status(BERLIN, at(2026, 12, 23, 10, 0))["closes_in_s"] == 6 * 3600  # 11:00 in Berlin, open until 17:00
    split = calendar("UTC", {"mon-fri": ["09:00-12:00", "12:00-17:00"]})
    assert closes_at(split, at(2026, 11, 23, 10, 0)) == at(2026, 11, 23, 17, 0)
    night = calendar("UTC", {"mon": "08:00-24:00", "tue": ["00:00-02:00", "09:00-17:00"]})
    assert closes_at(night, at(2026, 11, 23, 23, 0)) == at(2026, 11, 24, 2, 0)
    always = calendar("UTC", {"mon-sun": "00:00-24:00"})
    assert closes_at(always, at(2026, 11, 23, 23, 0)) is None and closes_at(BERLIN, at(2026, 12, 25, 11, 0)) is None
    # Asked only whether it closes before a moment (the observed wait's samples): the first midnight
    # past it, not a walk of 192 days for a team open round the clock.
    assert closes_at(always, at(2026, 11, 23, 23, 0), until=at(2026, 11, 23, 23, 30)) == at(2026, 11, 24, 0, 0)
    assert closes_at(night, at(2026, 11, 23, 23, 0), until=at(2026, 11, 23, 23, 30)) == at(2026, 11, 24, 0, 0)
    assert closes_at(night, at(2026, 11, 23, 23, 0), until=at(2026, 11, 24, 1, 0)) == at(2026, 11, 24, 2, 0)
    assert closes_at(split, at(2026, 11, 23, 10, 0), until=at(2026, 11, 23, 10, 5)) == at(2026, 11, 23, 17, 0)


@pytest.mark.parametrize("ranges", [["09:00-12:30", "12:00-18:00"], ["12:00-18:00", "09:00-12:30"],
                                    ["09:00-18:00", "10:00-11:00"], ["09:00-12:00", "12:00-18:00"]])
def test_overlapping_ranges_are_one_opening_as_adjoining_ones_are(ranges):
    # 09:00-12:30 and 12:00-18:00: open at 14:00, but closing at 12:30 (only a range starting where
    # the last one ended carried on): "We close at 12:30" at 14:00, and no wait quoted.
    cal = calendar("UTC", {"mon-fri": ranges})
    assert cal.week[0] == ((9 * 60, 18 * 60),)
    for hour in (10, 12, 14):
        assert closes_at(cal, at(2026, 11, 23, hour, 0)) == at(2026, 11, 23, 18, 0)
    assert status(cal, at(2026, 11, 23, 14, 0))["closes_in_s"] == 4 * 3600
    assert next_opening(cal, at(2026, 11, 23, 10, 0)) == at(2026, 11, 24, 9, 0)


def test_no_wait_is_promised_past_closing_time():
    # "About 30 minutes" at 17:55 to a team that leaves at 18:00 promised what nobody would keep.
    routing = compile_routing({"version": 1, "default": {"team": "billing", "expected_wait_seconds": 1800},
                               "calendars": {"office": {"timezone": "Europe/Berlin", "hours": {"mon-fri": "09:00-18:00"}}},
                               "teams": {"billing": {"calendar": "office"}}, "rules": [{"name": "default"}]})
    packet = full_packet()
    packet.pop("routing")  # no department hint: the default team, billing
    before_closing = assign(packet, routing, now=at(2026, 11, 27, 16, 55))  # Friday 17:55 in Berlin
    assert before_closing["team"] == "billing"
    assert not before_closing["out_of_hours"] and expected_wait(before_closing, routing) is None
    morning = assign(packet, routing, now=at(2026, 11, 27, 8, 0))
    assert expected_wait(morning, routing) == 1800


def test_a_handoff_just_before_closing_is_told_when_the_team_closes_and_reopens():
    # 17:58 on a Friday, no wait quoted (it would run past closing): "someone will reply as soon as
    # they're free" — the reply came Monday at 09:00.
    routing = compile_routing({"version": 1, "default": {"team": "billing", "expected_wait_seconds": 1800},
                               "calendars": {"office": {"timezone": "Europe/Paris", "hours": {"mon-fri": "09:00-18:00"}}},
                               "teams": {"billing": {"calendar": "office"}}, "rules": [{"name": "default"}]})
    packet = full_packet()
    packet.pop("routing")
    messages = load_mappings(str(FIXTURES.parents[1] / "mappings"), "/", []).messages  # the shipped ones
    friday = at(2026, 11, 27, 16, 58)  # 17:58 in Paris
    late = assign(packet, routing, now=friday)
    assert late["business_hours"]["reopens_at"] == "2026-11-30T09:00:00+01:00"
    text = compose(packet, late, expected_wait(late, routing), messages, now=friday)["text"]
    assert ("We close at 18:00 (Europe/Paris); if nobody has replied by then, we'll reply when we open again at "
            "09:00 Monday.") in text
    packet["conversation"]["language"] = "de"
    german = compose(packet, late, None, messages, now=friday)["text"]
    assert "Wir schließen um 18:00 Uhr (Europe/Paris)" in german and "Montag ab 09:00 Uhr" in german
    # A real clock's `now` has microseconds: the closing is still said on its minute, not "17:59".
    ticking = friday + dt.timedelta(microseconds=500_000)
    assert "We close at 18:00 (Europe/Paris)" in compose(packet | {"conversation": {**packet["conversation"],
                                                                                     "language": "en"}},
                                                         assign(packet, routing, now=ticking), None, messages,
                                                         now=ticking)["text"]
    # A wait that fits before closing is quoted; what replaces it should no one have the handoff yet
    # (`if_delayed`) says when the team closes, not "as soon as they're free".
    quoted = compose(packet, assign(packet, routing, now=at(2026, 11, 27, 16, 0)), 600, messages,
                     now=at(2026, 11, 27, 16, 0))
    assert "Wir schließen um 18:00 Uhr" in quoted["if_delayed"] and "Wir schließen" not in quoted["text"]
    # An hour and more before closing it is not said: the usual message.
    earlier = assign(packet, routing, now=at(2026, 11, 27, 14, 0))
    assert "close" not in compose(packet, earlier, None, messages, now=at(2026, 11, 27, 14, 0))["text"].lower()


def test_a_closing_that_is_not_today_is_said_with_its_day():
    # A team open round the clock on weekdays, Thursday 10:00, a 40-hour wait not quoted: it runs
    # past Friday's midnight closing by 2 hours — "We close at 00:00" read as tonight's.
    routing = compile_routing({"version": 1, "default": {"team": "billing", "expected_wait_seconds": 40 * 3600},
                               "calendars": {"desk": {"timezone": "Europe/Paris", "hours": {"mon-fri": "00:00-24:00"}}},
                               "teams": {"billing": {"calendar": "desk"}}, "rules": [{"name": "default"}]})
    packet = full_packet()
    packet.pop("routing")
    messages = load_mappings(str(FIXTURES.parents[1] / "mappings"), "/", []).messages  # the shipped ones
    thursday = at(2026, 11, 26, 9, 0)  # 10:00 in Paris
    assigned = assign(packet, routing, now=thursday)
    said = {}
    for language in ("en", "es", "fr", "de"):
        packet["conversation"]["language"] = language
        said[language] = compose(packet, assigned, None, messages, now=thursday, wait_past_closing_s=40 * 3600)["text"]
    assert "We close at 00:00 Saturday (Europe/Paris)" in said["en"] and "open again at 00:00 Monday" in said["en"]
    assert "Cerramos el sábado a las 00:00" in said["es"]
    assert "Nous fermons samedi à 00:00" in said["fr"]
    assert "Wir schließen Samstag um 00:00 Uhr" in said["de"]
    # Closing tomorrow: the locale's word for it (today: no day, as before — test above).
    friday = at(2026, 11, 27, 9, 0)
    packet["conversation"]["language"] = "en"
    tomorrow = compose(packet, assign(packet, routing, now=friday), None, messages, now=friday,
                       wait_past_closing_s=16 * 3600)["text"]
    assert "We close at 00:00 tomorrow (Europe/Paris)" in tomorrow


def test_day_ranges_wrap_and_lists_allow_breaks():
    cal = calendar("UTC", {"fri-mon": ["08:00-12:00", "13:00-17:00"]})
    assert is_open(cal, at(2026, 11, 29, 9, 0))  # Sunday
    assert not is_open(cal, at(2026, 11, 29, 12, 30))  # lunch
    assert not is_open(cal, at(2026, 11, 25, 9, 0))  # Wednesday


@pytest.mark.parametrize("hours", [
    {"mon-fri": "09:00-18:00", "fri": "closed"},
    {"fri": "closed", "mon-fri": "09:00-18:00"},  # in either order
])
def test_a_day_given_by_a_shorter_key_takes_its_hours(hours):
    # The two were added together: `fri: closed` under `mon-fri` left Friday open all day.
    cal = calendar("UTC", hours)
    assert is_open(cal, at(2026, 12, 3, 10, 0))  # Thursday
    assert not is_open(cal, at(2026, 12, 4, 10, 0))  # Friday
    half = calendar("UTC", {"mon-fri": "09:00-18:00", "fri": "09:00-12:00"})
    assert is_open(half, at(2026, 12, 4, 11, 0)) and not is_open(half, at(2026, 12, 4, 14, 0))


@pytest.mark.parametrize(("hours", "message"), [
    ({"mon-wed": "09:00-12:00", "wed-fri": "13:00-17:00"}, "wed is given by 'mon-wed' too"),
    ({"mon": 540}, "not a range"),  # what YAML makes of an unquoted 9:00
    ({"mon": "17:00-09:00"}, "end after the start"),
    ({"weekdays": "09:00-17:00"}, "not a day"),
    ({"mon": "closed"}, "opens on no day"),
])
def test_bad_hours_are_refused(hours, message):
    with pytest.raises(ValidationError) as err:
        CalendarSchema().load({"timezone": "Europe/Paris", "hours": hours})
    assert message in str(err.value.messages)


def test_unknown_zone_is_refused():
    with pytest.raises(ValidationError, match="unknown time zone"):
        CalendarSchema().load({"timezone": "Europe/Atlantis", "hours": {"mon": "09:00-10:00"}})


ROUTING = compile_routing(yaml.safe_load((FIXTURES / "mappings" / "good" / "routing.yaml").read_text()))
MESSAGES = load_mappings(str(FIXTURES / "mappings" / "good"), "/", []).messages


def billing_packet():  # type: ignore[no-untyped-def]
    packet = full_packet()
    packet["customer"]["segment"] = "standard"
    packet["intent"]["name"] = "billing.refund"
    return packet


def test_out_of_hours_the_message_gives_the_opening_instead_of_a_wait():
    saturday = at(2026, 3, 28, 12, 0)  # the weekend Berlin springs forward
    assignment = assign(billing_packet(), ROUTING, now=saturday)
    assert assignment["team"] == "billing" and assignment["out_of_hours"] is True
    assert any("next opening 2026-03-30T09:00:00+02:00" in line for line in assignment["trace"])
    wait = expected_wait(assignment, ROUTING, observed_wait=lambda team: 60)
    assert wait is None  # no wait is quoted while closed
    text = compose(billing_packet(), assignment, wait, MESSAGES, now=saturday)["text"]
    assert "Closed; reply by 09:00 Monday (Europe/Berlin)." in text
    assert "min" not in text


def test_in_hours_the_wait_is_quoted():
    assignment = assign(billing_packet(), ROUTING, now=at(2026, 3, 30, 8, 0))
    assert assignment["out_of_hours"] is False
    wait = expected_wait(assignment, ROUTING)
    assert "About 4 min." in compose(billing_packet(), assignment, wait, MESSAGES)["text"]
