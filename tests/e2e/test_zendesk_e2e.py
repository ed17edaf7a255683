"""Zendesk end to end: POST /v1/handoffs → a real ZendeskAdapter → Zendesk faked at the HTTP boundary."""

from __future__ import annotations

import json

import pytest
import responses

from tests.conftest import auth
from tests.factories import full_packet
from tests.fakes.zendesk import FakeZendesk

ZENDESK = {"targets": ("zendesk",), "zendesk_subdomain": "acme", "zendesk_email": "bot@acme.example",
           "zendesk_api_token": "zd-token-123"}


@pytest.fixture
def zendesk(make_app):
    """A client of an app delivering to Zendesk, and the fake Zendesk it talks to."""
    client = make_app(**ZENDESK).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield client, FakeZendesk(rsps)


def post(client, packet):
    return client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")


def test_handoff_creates_a_ticket_then_a_second_one_comments_on_it(zendesk):
    client, zd = zendesk
    # The shipped enterprise rule is sticky: intake asks Zendesk for the customer's open ticket.
    zd.search(results=[])
    zd.create_ticket({"id": 1001})
    response = post(client, full_packet())
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    [ticket] = body["tickets"]
    assert ticket == {"target": "zendesk", "status": "created", "id": "1001",
                      "url": "https://acme.zendesk.com/agent/tickets/1001", "attempts": 1, "error": None}
    [sent] = zd.json_bodies("POST", "/api/v2/tickets.json")
    assert sent["ticket"]["external_id"] == body["id"]
    assert sent["ticket"]["comment"]["public"] is False
    assert "OAuth token expired (code 4012)" in sent["ticket"]["comment"]["html_body"]
    assert zd.calls("POST", "/api/v2/tickets.json")[0].request.headers["Idempotency-Key"] == f"{body['id']}:zendesk"
    assert "transcript" in body["context_receipt"]["zendesk"]["delivered"]

    zd.update_ticket(1001)
    follow_up = full_packet()
    follow_up["transcript"].append({"at": "2026-11-20T11:00:00Z", "role": "customer", "text": "Any news?"})
    second = post(client, follow_up).get_json()
    assert second["tickets"][0]["status"] == "updated" and second["tickets"][0]["id"] == "1001"
    [update] = zd.json_bodies("PUT", "/api/v2/tickets/1001.json")
    assert "Any news?" in update["ticket"]["comment"]["html_body"]
    zd.assert_ticket_requests_valid()


def test_a_sticky_rule_offers_the_previous_agent_from_zendesk(zendesk):
    client, zd = zendesk
    zd.search()  # the recorded search: an open ticket with an assignee
    zd.show_user()
    zd.create_ticket({"id": 1002})
    body = post(client, full_packet()).get_json()
    assignment = body["assignment"]
    assert assignment["agent"] and any("previous agent" in line for line in assignment["trace"])
    [sent] = zd.json_bodies("POST", "/api/v2/tickets.json")
    assert sent["ticket"]["assignee_id"] == 381156009921
    zd.assert_ticket_requests_valid()


def test_the_admin_preview_is_what_is_then_sent(zendesk):
    from tests.conftest import ADMIN_TOKEN

    client, zd = zendesk
    zd.search(results=[])
    zd.create_ticket({"id": 1003})
    packet = full_packet()
    preview = client.post("/v1/preview", data=json.dumps(packet), headers=auth(ADMIN_TOKEN),
                          content_type="application/json").get_json()
    body = post(client, packet).get_json()
    [sent] = zd.json_bodies("POST", "/api/v2/tickets.json")
    # The dry run cannot know the handoff id it will get; everything else is the same, byte for byte.
    expected = json.loads(json.dumps(preview["vendors"]["zendesk"]["payload"]).replace("hnd_PREVIEW", body["id"]))
    assert sent == expected
    assert preview["assignment"]["rule"] == body["assignment"]["rule"]
    assert preview["customer_message"] == body["customer_message"]
