"""An agent takes the ticket a vendor's event names as a handoff's whose delivery there was given
up after an attempt whose outcome was unknown (the create may have landed): the delivery is put
back and attempted, and the bot hears the ticket, not `failed` beside the agent working it."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from adapters import registry
from adapters.events import AssignmentEvent
from connector import assignments
from connector.models import DISMISSED, Delivery, utcnow
from tests.conftest import auth
from tests.factories import full_packet
from tests.test_callbacks import bot, make_callback_app, post, send_due  # noqa: F401


def _given_up(app, bot, adapter):  # noqa: F811
    """A handoff to `adapter` whose delivery ran its one try and its one more after an unknown outcome."""
    services = app.extensions["connector"]
    hid = post(app, full_packet(targets=["vanishing"], callback={"url": bot.url}))["id"]
    with services.db.session() as session:
        [delivery] = session.scalars(select(Delivery).filter_by(handoff_id=hid)).all()
        delivery.next_attempt_at = utcnow() - dt.timedelta(seconds=1)
    services.outbox.run_delivery(delivery.id)
    send_due(app)
    return services, hid, delivery.id


def _taken(services, hid, monkeypatch, event_id="ev-1"):
    """The vendor's event naming ticket V-1 as `hid`'s; the delivery it puts back, attempted here."""
    submitted: list[int] = []
    monkeypatch.setattr(services, "submit", submitted.append)
    event = AssignmentEvent(target="vanishing", event_id=event_id, ticket_id="V-1", handoff_id=hid,
                            agent_id="agent-7", agent_name="Dana", at=utcnow())
    received = assignments.record(services, event)
    for delivery_id in submitted:
        services.outbox.run_delivery(delivery_id)
    return received, submitted


@pytest.mark.parametrize("dismissed", [False, True])
def test_a_given_up_delivery_whose_ticket_an_agent_took_is_recorded_and_the_bot_hears_it(
        make_callback_app, bot, monkeypatch, dismissed):  # noqa: F811
    monkeypatch.setitem(registry.TARGETS, "vanishing", "tests.support_adapters:VanishingAdapter")
    app = make_callback_app(targets=("vanishing",), max_attempts=1)
    services, hid, delivery_id = _given_up(app, bot, "vanishing")
    if dismissed:  # an operator put it aside: the agent's take is still the truth
        with services.db.session() as session:
            session.execute(update(Delivery).where(Delivery.id == delivery_id).values(state=DISMISSED))
    assert app.test_client().get(f"/v1/handoffs/{hid}", headers=auth()).get_json()["status"] == "failed"

    received, submitted = _taken(services, hid, monkeypatch)
    assert received.outcome == "recorded" and submitted == [delivery_id]
    assert received.ticket_id == "V-1"  # the agent is told who holds it, on that ticket
    send_due(app)
    read = app.test_client().get(f"/v1/handoffs/{hid}", headers=auth()).get_json()
    assert read["status"] == "delivered"
    assert read["tickets"][0]["status"] == "created" and read["tickets"][0]["id"] == "V-1"
    assert read["assignment"]["agent"] == "Dana"
    assert "nobody has it" not in read["customer_message"]["text"]
    # What reached the ticket is not known: it was made by the create that sent the whole brief.
    assert "won't need to repeat" in read["customer_message"]["text"]
    # Its looks failed again: the receipt says the ticket may lack each part.
    dropped = read["context_receipt"]["vanishing"]["dropped"]
    assert dropped and all("named ticket V-1 as this handoff's" in d["reason"] for d in dropped)
    assert bot.states()[-1] == "assigned"  # after `failed`; no `delivered` behind it
    assert bot.requests[-1].json["ticket"]["id"] == "V-1"

    again, submitted = _taken(services, hid, monkeypatch, event_id="ev-1")  # the vendor's copy of the event
    assert again.outcome == "duplicate" and submitted == []


def test_a_delivery_given_up_knowing_nothing_was_made_is_not_put_back(make_callback_app, bot, monkeypatch):  # noqa: F811
    # Refused outright (no unknown outcome): a name any integration can write is no proof of a ticket.
    monkeypatch.setitem(registry.TARGETS, "vanishing", "tests.support_adapters:BrokenAdapter")
    app = make_callback_app(targets=("vanishing",), max_attempts=1)
    services = app.extensions["connector"]
    hid = post(app, full_packet(targets=["vanishing"], callback={"url": bot.url}))["id"]
    _, submitted = _taken(services, hid, monkeypatch)
    assert submitted == []
    with services.db.reading() as session:
        assert session.scalars(select(Delivery.state).filter_by(handoff_id=hid)).one() == "failed"


def test_a_lookup_that_finds_nothing_records_the_ticket_the_agent_took_not_a_second_one(
        make_callback_app, bot, monkeypatch):  # noqa: F811
    # A mends review: the put-back attempt's lookup found nothing (a Slack channel busy past the pages
    # it reads) and posted a second alert beside the one an agent had claimed; GET named that one.
    from adapters.base import Sent
    from tests.support_adapters import VanishingAdapter

    monkeypatch.setitem(registry.TARGETS, "vanishing", "tests.support_adapters:VanishingAdapter")
    app = make_callback_app(targets=("vanishing",), max_attempts=1)
    services, hid, _ = _given_up(app, bot, "vanishing")
    made: list[str] = []
    monkeypatch.setattr(VanishingAdapter, "find_existing", lambda self, ctx: None)
    monkeypatch.setattr(VanishingAdapter, "send_create",
                        lambda self, payload, ctx: made.append(ctx.handoff_id) or Sent(vendor_id="V-2", url=None))

    _taken(services, hid, monkeypatch)

    assert made == []
    read = app.test_client().get(f"/v1/handoffs/{hid}", headers=auth()).get_json()
    assert read["status"] == "delivered" and read["tickets"][0]["id"] == "V-1"
    dropped = read["context_receipt"]["vanishing"]["dropped"]
    assert dropped and all("its lookup found no ticket of this handoff" in d["reason"] for d in dropped)
