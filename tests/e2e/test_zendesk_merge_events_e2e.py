"""Zendesk end to end: a ticket an agent merged into another (Zendesk closes it, tagged
`closed_by_merge`) — the conversation is linked to the ticket it was merged into, and its handoffs
are completed when that ticket is solved (`connector.merges`, `assignments.complete`)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import pytest
import responses
from requests.exceptions import ReadTimeout
from sqlalchemy import select

from connector.models import Callback, ConversationLink
from tests.conftest import auth
from tests.e2e.test_zendesk_e2e import WEBHOOK_SECRET, ZENDESK, post
from tests.factories import full_packet
from tests.fakes.zendesk import FakeZendesk, fixture

MERGED = "merged into ticket 88001: its handoffs are completed when that ticket is solved"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def zendesk(request):
    """A client of an app delivering to Zendesk, on SQLite and PostgreSQL (the database first, so it
    is dropped after the app stops), and the fake Zendesk."""
    database = {"database_url": request.getfixturevalue("postgres_url")} if request.param == "postgres" else {}
    client = request.getfixturevalue("make_app")(**ZENDESK, **database).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield client, FakeZendesk(rsps)


def status_changed(client, ticket_id: int, handoff_id: str | None, event_id: str, status: str, *,
                   merged: bool = False):
    """Zendesk's `ticket.status_changed`, signed as Zendesk signs (written out here, not our verifier)."""
    body = fixture("event-agent-assignment-changed.json")
    body.update(type="zen:event-type:ticket.status_changed", id=event_id, subject=f"zen:ticket:{ticket_id}",
                time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                event={"current": status, "previous": "OPEN"})
    body["detail"].update(id=str(ticket_id), external_id=handoff_id, status=status,
                          tags=["handoff", *(["closed_by_merge"] if merged else [])])
    raw = json.dumps(body).encode()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + raw, hashlib.sha256).digest())
    return client.post("/webhooks/zendesk", data=raw, content_type="application/json",
                       headers={"X-Zendesk-Webhook-Signature": signature.decode(),
                                "X-Zendesk-Webhook-Signature-Timestamp": stamp})


def came_back(text: str) -> dict:
    packet = full_packet()
    packet["transcript"].append({"at": "2026-11-27T11:00:00Z", "role": "customer", "text": text})
    return packet


def completed_at(client, handoff_id: str):
    return client.get(f"/v1/handoffs/{handoff_id}", headers=auth()).get_json()["completed_at"]


def link_of(client) -> tuple[str | None, str | None]:
    with client.application.extensions["connector"].db.reading() as session:
        link = session.scalars(select(ConversationLink).where(ConversationLink.target == "zendesk")).one()
        return link.vendor_id, link.url


def first_handoff(client, zd) -> str:
    zd.search(results=[])
    zd.create_ticket({"id": 1001})
    body = post(client, full_packet()).get_json()
    assert body["tickets"][0]["id"] == "1001"
    return body["id"]


def test_a_handoff_whose_ticket_was_merged_is_completed_when_the_ticket_it_went_into_is_solved(zendesk):
    """The merge's close is no completion (agents have only begun on the problem, under another
    number); the solve of the ticket it was merged into is — with no later handoff to say where it went."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.audits(1001, merged_into=88001)
    merge = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert merge.status_code == 200, merge.get_json()
    assert merge.get_json() == {"outcome": "recorded", "detail": MERGED, "handoff_id": first}
    assert completed_at(client, first) is None
    assert link_of(client) == ("88001", "https://acme.zendesk.com/agent/tickets/88001")

    solved = status_changed(client, 88001, None, "evt-solved", "SOLVED")
    assert solved.get_json() == {"outcome": "recorded", "detail": "completed", "handoff_id": first}
    assert completed_at(client, first) is not None
    again = status_changed(client, 88001, None, "evt-solved-copy", "CLOSED")
    assert again.get_json()["outcome"] == "duplicate"


def test_the_next_handoff_after_a_merge_updates_the_ticket_it_went_into_straight_away(zendesk):
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.audits(1001, merged_into=88001)
    assert status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()["outcome"] == "recorded"
    zd.update_ticket(88001)
    second = post(client, came_back("It broke again.")).get_json()
    assert second["tickets"][0]["status"] == "updated" and second["tickets"][0]["id"] == "88001"
    assert zd.calls("PUT", "/api/v2/tickets/1001.json") == []  # the merged ticket is not tried
    assert len(zd.calls("GET", "/api/v2/tickets/1001/audits.json")) == 1  # the merge event's read only
    # One solve completes both: the later handoff on the ticket, and the one whose ticket went into it.
    solved = status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()
    assert solved == {"outcome": "recorded", "detail": "completed", "handoff_id": second["id"]}
    assert completed_at(client, first) is not None and completed_at(client, second["id"]) is not None


def test_a_merge_followed_by_the_next_handoffs_update_completes_the_first_at_the_solve_too(zendesk):
    """No merge event reached us (the webhook was set up after it): the second handoff's update met
    the closed ticket, followed the merge and moved the link; the solve completes the first handoff too."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.error("PUT", "/api/v2/tickets/1001.json", 422, "error-422-closed-ticket.json")
    zd.audits(1001, merged_into=88001)
    zd.update_ticket(88001)
    second = post(client, came_back("It broke again.")).get_json()
    assert second["tickets"][0]["id"] == "88001"
    solved = status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()
    assert solved == {"outcome": "recorded", "detail": "completed", "handoff_id": second["id"]}
    assert completed_at(client, first) is not None


def test_the_bot_hears_completed_of_the_ticket_its_handoffs_went_into(make_app):
    from tests.test_callbacks import TWO_SECRETS

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        app = make_app(**ZENDESK, bot_secrets=TWO_SECRETS)
        client, zd = app.test_client(), FakeZendesk(rsps)
        zd.search(results=[])
        zd.create_ticket({"id": 1001})
        packet = full_packet(callback={"url": "https://bot.example.com/handoff-status", "events": ["completed"]})
        first = post(client, packet).get_json()["id"]
        zd.audits(1001, merged_into=88001)
        status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
        status_changed(client, 88001, None, "evt-solved", "SOLVED")
        with app.extensions["connector"].db.reading() as session:
            [row] = session.scalars(select(Callback).where(Callback.handoff_id == first, Callback.state == "completed"))
            told = row.body
    # The solved ticket, with its own page — not the merged ticket's page beside the other's number.
    assert told["ticket"] == {"target": "zendesk", "status": "created", "id": "88001",
                              "url": "https://acme.zendesk.com/agent/tickets/88001"}


@pytest.mark.parametrize("audits", ["not merged", "refused"])
def test_a_close_by_a_merge_that_cannot_be_followed_completes_the_handoff_as_any_close(zendesk, audits):
    client, zd = zendesk
    first = first_handoff(client, zd)
    if audits == "not merged":
        zd.audits(1001)
    else:  # an OAuth token without the global `read` scope the audits need
        zd.error("GET", "/api/v2/tickets/1001/audits.json", 403, {"error": "Forbidden"})
    answer = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()
    assert answer == {"outcome": "recorded", "detail": "completed", "handoff_id": first}
    assert completed_at(client, first) is not None
    assert link_of(client)[0] == "1001"


def test_a_merge_whose_record_cannot_be_read_now_is_refused_for_zendesk_to_send_again(zendesk):
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.raises("GET", "/api/v2/tickets/1001/audits.json", ReadTimeout("read timed out"))
    refused = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    assert "ticket 1001" in refused.get_json()["detail"] and "nothing was recorded" in refused.get_json()["detail"]
    assert completed_at(client, first) is None and link_of(client)[0] == "1001"
    zd.audits(1001, merged_into=88001)
    again = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert again.get_json()["detail"] == MERGED and link_of(client)[0] == "88001"


def test_a_merge_of_a_ticket_no_handoff_reached_asks_zendesk_nothing(zendesk):
    client, _zd = zendesk  # every call to the fake would have to be registered
    answer = status_changed(client, 5005, None, "evt-merge", "CLOSED", merged=True).get_json()
    assert answer == {"outcome": "ignored", "detail": "no handoff was delivered to this ticket before this event",
                      "handoff_id": None}


def test_the_solve_leaves_the_handoffs_of_other_conversations_waiting(zendesk):
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.search(results=[])
    zd.create_ticket({"id": 1002})
    other = full_packet()
    other["conversation"]["id"] = "conv-other"
    elsewhere = post(client, other).get_json()["id"]
    zd.audits(1001, merged_into=88001)
    status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()["handoff_id"] == first
    assert completed_at(client, elsewhere) is None  # its ticket is another
