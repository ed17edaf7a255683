"""The observed wait: per team, the median time to assignment over a recent window, once enough
were seen; cached for a short TTL; a database failure quotes the configured figure instead."""

from __future__ import annotations

import datetime as dt
import itertools
import logging

import pytest
import yaml
from sqlalchemy import text

from connector.models import Assignment, Handoff
from connector.observed_wait import ObservedWait
from connector.routing import wait_estimate
from connector.routing_schema import compile_routing
from tests.factories import FIXTURES

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)  # a Friday, 13:00 in Berlin: billing is open
_ids = itertools.count()


def routing_with(window_minutes: int = 120, min_samples: int = 3):
    """The test routing file (billing: 240 s configured, default 600 s) with an observed_wait block."""
    data = yaml.safe_load((FIXTURES / "mappings" / "good" / "routing.yaml").read_text())
    data["default"]["observed_wait"] = {"window_minutes": window_minutes, "min_samples": min_samples}
    return compile_routing(data)


def assigned(db, team: str, wait_s: int, minutes_ago: float, routed: bool = False) -> None:
    """A handoff of `team` that an agent took `wait_s` after it arrived, `minutes_ago` before NOW
    (`routed`: the agent routing itself put on the ticket)."""
    n = next(_ids)
    at = NOW - dt.timedelta(minutes=minutes_ago)
    handed_off = at - dt.timedelta(seconds=wait_s)
    with db.session() as session:
        session.add(Handoff(id=f"hnd_OBS{n:06d}", bot_id="support-bot", conversation_id=f"conv-{n}",
                            idempotency_key=f"k-{n}", request_hash="0" * 64, packet={}, assignment={"team": team},
                            customer_message={}, created_at=handed_off))
        session.flush()
        session.add(Assignment(handoff_id=f"hnd_OBS{n:06d}", target="zendesk", vendor_ticket_id=str(1000 + n),
                               team=team, agent_id="235324", event_id=f"evt-{n}", handed_off_at=handed_off,
                               assigned_at=at, wait_seconds=wait_s, routed=routed))


def test_handoffs_that_came_or_waited_while_the_team_was_closed_are_not_its_wait(db):
    # Billing (Berlin, weekdays 09:00-17:00) takes the night's handoffs at opening: counted, the
    # night's hours were quoted to the customers who came once it was open — and so were those of
    # one that came just before closing.
    monday = dt.datetime(2026, 11, 23, 8, 40, tzinfo=dt.UTC)  # 09:40 in Berlin
    for n, (came, taken) in enumerate([("2026-11-20T19:00", "2026-11-23T08:02"), ("2026-11-21T10:00", "2026-11-23T08:04"),
                                       ("2026-11-22T15:00", "2026-11-23T08:06"), ("2026-11-23T08:10", "2026-11-23T08:12"),
                                       ("2026-11-23T08:15", "2026-11-23T08:18"), ("2026-11-23T08:20", "2026-11-23T08:24"),
                                       # came at 16:50 on Friday, open, and waited the weekend: not counted either
                                       ("2026-11-20T15:50", "2026-11-23T08:03")]):
        handed_off, at = (dt.datetime.fromisoformat(t).replace(tzinfo=dt.UTC) for t in (came, taken))
        with db.session() as session:
            session.add(Handoff(id=f"hnd_NIGHT{n:04d}", bot_id="support-bot", conversation_id=f"night-{n}",
                                idempotency_key=f"night-{n}", request_hash="0" * 64, packet={},
                                assignment={"team": "billing"}, customer_message={}, created_at=handed_off))
            session.flush()
            session.add(Assignment(handoff_id=f"hnd_NIGHT{n:04d}", target="zendesk", vendor_ticket_id=f"n{n}",
                                   team="billing", agent_id="1", event_id=f"night-{n}", handed_off_at=handed_off,
                                   assigned_at=at, wait_seconds=int((at - handed_off).total_seconds()), routed=False))
    config = routing_with()
    observed = ObservedWait(db, lambda: config, clock=Clock(), now=lambda: monday)
    assert observed("billing") == 180  # the median of the morning's 120, 180 and 240 s, not of 46 hours


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(any_db_app):
    return any_db_app.extensions["connector"].db


def observer(db, routing=None, clock=None) -> ObservedWait:
    config = routing or routing_with()
    return ObservedWait(db, lambda: config, clock=clock or Clock(), now=lambda: NOW)


def test_the_median_of_recent_assignments_per_team(db):
    for wait_s, minutes_ago in ((60, 5), (300, 30), (120, 90), (90, 119)):
        assigned(db, "billing", wait_s, minutes_ago)
    assigned(db, "billing", 9000, 121)  # outside the two-hour window: ignored
    for wait_s in (30, 30, 45):
        assigned(db, "support", wait_s, 10)
    assigned(db, "billing", 0, 1, routed=True)  # routing's own choice: nobody waited for it
    observed = observer(db)
    assert observed("billing") == 105  # median of 60, 90, 120, 300 — not the old 9000, not the routed 0
    assert observed("support") == 30
    assert observed("escalations") is None  # nothing seen for this team


def test_below_min_samples_the_configured_figure_is_quoted_and_says_so(db):
    assigned(db, "billing", 60, 5)
    assigned(db, "billing", 80, 6)
    routing = routing_with(min_samples=3)
    observed = observer(db, routing)
    assert observed("billing") is None
    assert wait_estimate({"team": "billing"}, routing, observed_wait=observed) == (240, "configured (team)")
    assigned(db, "billing", 100, 7)
    fresh = observer(db, routing)
    assert wait_estimate({"team": "billing"}, routing, observed_wait=fresh) == (80, "observed")
    assert wait_estimate({"team": "billing", "out_of_hours": True}, routing, observed_wait=fresh) == \
        (None, "out of hours")


def test_the_window_is_configurable(db):
    for wait_s, minutes_ago in ((60, 5), (70, 6), (80, 7), (500, 50), (600, 55), (700, 58)):
        assigned(db, "support", wait_s, minutes_ago)
    assert observer(db, routing_with(window_minutes=10))("support") == 70
    assert observer(db, routing_with(window_minutes=60))("support") == 290


def test_figures_are_cached_per_team_for_the_ttl(db):
    for wait_s in (100, 100, 100):
        assigned(db, "billing", wait_s, 1)
    clock = Clock()
    observed = observer(db, clock=clock)
    assert observed("billing") == 100
    assert observed("support") is None  # "nothing seen" is cached too: no query per handoff
    for wait_s in (400, 400, 400, 400):
        assigned(db, "billing", wait_s, 1)
        assigned(db, "support", wait_s, 1)
    clock.now += 29
    assert (observed("billing"), observed("support")) == (100, None)
    clock.now += 2
    assert (observed("billing"), observed("support")) == (400, 400)


def test_forget_drops_one_teams_figure(db):
    for wait_s in (100, 100, 100):
        assigned(db, "billing", wait_s, 1)
    observed = observer(db)
    assert observed("billing") == 100
    for wait_s in (400, 400, 400, 400):
        assigned(db, "billing", wait_s, 1)
    observed.forget("billing")
    assert observed("billing") == 400


def test_an_edited_routing_file_applies_at_once(db):
    assigned(db, "billing", 100, 1)
    config = {"routing": routing_with(min_samples=2)}
    observed = ObservedWait(db, lambda: config["routing"], clock=Clock(), now=lambda: NOW)
    assert observed("billing") is None
    config["routing"] = routing_with(min_samples=1)
    assert observed("billing") == 100  # not the cached None: it was measured with other settings


def test_a_database_failure_quotes_the_configured_figure_and_never_raises(db, caplog):
    for wait_s in (60, 60, 60):
        assigned(db, "billing", wait_s, 1)
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE assignments"))
    routing = routing_with()
    observed = observer(db, routing)
    with caplog.at_level(logging.WARNING, logger="connector.observed_wait"):
        assert wait_estimate({"team": "billing"}, routing, observed_wait=observed) == (240, "configured (team)")
    [record] = [r for r in caplog.records if r.name == "connector.observed_wait"]
    assert record.message == "observed wait unavailable; the configured figure is quoted"
    assert record.error in ("OperationalError", "ProgrammingError")
