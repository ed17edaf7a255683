"""The wait a `pending` answer quotes while an attempt failed: none while no ticket is in an agents'
queue, the quoted one once one is (`answers.is_delayed`, `OutcomeUnknown.made`)."""

from __future__ import annotations

import json

import pytest
import responses

from tests.conftest import auth
from tests.factories import full_packet, mappings_quoting_a_wait, minimal_packet
from tests.fakes.salesforce import INSTANCE, TOKEN, SalesforceFake

ZENDESK = {"zendesk_subdomain": "acme", "zendesk_email": "bot@acme.example", "zendesk_api_token": "t"}
NO_WAIT = "Someone will reply here as soon as they're free."


def post(client, packet):  # type: ignore[no-untyped-def]
    return client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")


def test_a_solved_ticket_not_reopened_quotes_no_wait(make_app, tmp_path):
    # A review of the mend: the note went in, the reopening failed — a solved ticket is in no queue, and
    # the customer was promised "about 5 minutes" by nobody.
    client = make_app(targets=("zendesk",), **ZENDESK, mappings_dir=mappings_quoting_a_wait(tmp_path)).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201, json={"ticket": {"id": 2}})
        mock.put("https://acme.zendesk.com/api/v2/tickets/2/tags", json={"tags": ["handoff"]})
        mock.put("https://acme.zendesk.com/api/v2/tickets/2.json",
                 json={"ticket": {"id": 2, "status": "solved", "assignee_id": 381156009922}})
        mock.put("https://acme.zendesk.com/api/v2/tickets/2.json", status=503, body="down")  # the reopening
        assert post(client, minimal_packet(conversation={"id": "conv-solved"})).status_code == 201
        back = minimal_packet(conversation={"id": "conv-solved"})
        back["transcript"].append({"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "it broke again"})
        body = post(client, back).get_json()
        assert "could not be reopened yet" in body["tickets"][0]["error"]
        assert (body["status"], body["estimated_wait_seconds"]) == ("pending", None)
        assert body["customer_message"]["text"].endswith(NO_WAIT)


@pytest.mark.parametrize(("targets", "comments_fail", "status"), [
    (("salesforce",), True, "pending"),
    (("salesforce", "zendesk"), True, "pending"),
    (("salesforce", "zendesk"), False, "partial"),
])
def test_a_case_made_before_its_comments_failed_quotes_the_wait_as_a_finished_one_does(make_app, tmp_path, targets,
                                                                                       comments_fail, status):
    # A Salesforce review: the case's brief quoted "about 5 minutes" while the answer — `pending`, an
    # attempt failed — told the customer no wait, the case in the agents' queue; and, a review of the
    # mend, with Zendesk down beside it, where a case whose comments went quoted it.
    client = make_app(targets=targets, salesforce_instance_url=INSTANCE, salesforce_access_token=TOKEN, **ZENDESK,
                      mappings_dir=mappings_quoting_a_wait(tmp_path)).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        org = SalesforceFake(rsps)
        org.query([], sobject="Case")
        org.query([])
        org.create("Contact")
        org.create("Case")
        if comments_fail:
            rsps.add("POST", f"{org.api}/sobjects/CaseComment/", status=503,
                     json=[{"message": "try later", "errorCode": "SERVER_UNAVAILABLE"}])
        else:
            org.create("CaseComment")
        for method, path in (("GET", "users/search.json"), ("GET", "search.json"), ("POST", "tickets.json")):
            rsps.add(method, f"https://acme.zendesk.com/api/v2/{path}", status=503, body="down")
        body = post(client, full_packet()).get_json()
        assert (body["status"], body["estimated_wait_seconds"]) == (status, 300)
        told = body["customer_message"]["text"]
        assert "about 5 minutes" in told
        assert f"Message for the customer: “{told}”" in org.sent("Case")[0]["Description"]
        again = client.get(body["links"]["self"], headers=auth()).get_json()  # a read says the same
        assert (again["estimated_wait_seconds"], again["customer_message"]["text"]) == (300, told)
