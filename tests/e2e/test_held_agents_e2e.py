"""A repeat onto tickets agents already have (Zendesk and Salesforce): the answer names whoever is
recorded holding the handoff, as its replay and a read do — the first answer named the agent of
whichever target finished first, while the other one's could be recorded (a review)."""

from __future__ import annotations

import json
import time

import responses

from tests.conftest import auth
from tests.factories import full_packet
from tests.fakes.salesforce import IDS, INSTANCE, TOKEN, SalesforceFake
from tests.fakes.zendesk import FakeZendesk, fixture

BOTH = {"targets": ("zendesk", "salesforce"), "zendesk_subdomain": "acme", "zendesk_email": "bot@acme.example",
        "zendesk_api_token": "zd-token-123", "salesforce_instance_url": INSTANCE, "salesforce_access_token": TOKEN}


def post(client, packet):
    return client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")


def test_the_answer_names_the_agent_recorded_when_both_targets_tickets_have_one(make_app):
    app = make_app(**BOTH)
    client = app.test_client()
    packet = full_packet(customer={**full_packet()["customer"], "segment": "smb"})  # no sticky lookup
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        zd, org = FakeZendesk(rsps), SalesforceFake(rsps)
        zd.create_ticket({"id": 77120})
        org.new_case()
        assert [t["status"] for t in post(client, packet).get_json()["tickets"]] == ["created", "created"]
        body = fixture("ticket-update-200.json")
        body["ticket"].update(id=77120, status="open")  # its assignee: 381156009921
        body["audit"]["ticket_id"] = 77120

        def later(_request):
            time.sleep(0.3)  # Zendesk answers after Salesforce: the case's owner is recorded first
            return 200, {}, json.dumps(body)

        zd.add_tags(77120)
        rsps.add_callback("PUT", "https://acme.zendesk.com/api/v2/tickets/77120.json", callback=later,
                          content_type="application/json")
        org.case_state(IDS["Case"], owner="0055g00000Agnt1AAB", owner_name="Ana Agent")
        org.comments(2)
        packet["transcript"].append({"at": "2026-11-20T11:00:00Z", "role": "customer", "text": "Any news?"})
        answer = post(client, packet).get_json()
        replay = post(client, packet).get_json()
    read = client.get(answer["links"]["self"], headers=auth()).get_json()
    assert [t["status"] for t in answer["tickets"]] == ["updated", "updated"]
    assert answer["assignment"]["agent"] is not None
    assert read["assignment"] == answer["assignment"] and replay == answer
    assert answer["assignment"]["agent"] == read["assigned"]["agent_id"] == "0055g00000Agnt1AAB"


def test_a_repeat_onto_a_ticket_an_agent_holds_quotes_no_wait_beside_them(make_app, tmp_path):
    # A review: recorded as routing's own (no wait observed), the agent found holding the ticket kept
    # the wait quoted at intake — said not knowing them — beside their name.
    from tests.factories import mappings_quoting_a_wait

    zendesk = {key: value for key, value in BOTH.items() if not key.startswith("salesforce")}
    app = make_app(**{**zendesk, "targets": ("zendesk",)}, mappings_dir=mappings_quoting_a_wait(tmp_path))
    client = app.test_client()
    packet = full_packet(customer={**full_packet()["customer"], "segment": "smb"})  # no sticky lookup
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        zd = FakeZendesk(rsps)
        zd.create_ticket({"id": 77120})
        first = post(client, packet).get_json()
        assert first["estimated_wait_seconds"] == 300
        body = fixture("ticket-update-200.json")
        body["ticket"].update(id=77120, status="open")  # its assignee: 381156009921
        body["audit"]["ticket_id"] = 77120
        zd.add_tags(77120)
        rsps.add("PUT", "https://acme.zendesk.com/api/v2/tickets/77120.json", json=body)
        packet["transcript"].append({"at": "2026-11-20T11:00:00Z", "role": "customer", "text": "Any news?"})
        answer = post(client, packet).get_json()
    read = client.get(answer["links"]["self"], headers=auth()).get_json()
    assert answer["assignment"]["agent"] == "381156009921" and read["assigned"]["routed"] is True
    for said in (answer, read):
        assert said["estimated_wait_seconds"] is None, said["customer_message"]
        assert "5 minutes" not in said["customer_message"]["text"]
