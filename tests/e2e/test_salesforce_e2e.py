"""Salesforce end to end: POST /v1/handoffs → a real SalesforceAdapter → Salesforce faked at the HTTP boundary."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests
import responses
from sqlalchemy import select

from adapters.events import AssignmentEvent
from connector import assignments
from connector.models import Delivery, utcnow
from tests.conftest import auth
from tests.factories import full_packet
from tests.fakes.salesforce import IDS, INSTANCE, TOKEN, SalesforceFake

SALESFORCE = {"targets": ("salesforce",), "salesforce_instance_url": INSTANCE, "salesforce_access_token": TOKEN}


def test_handoff_opens_a_case_with_the_transcript_as_comments(make_app):
    client = make_app(**SALESFORCE).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        org.new_case()
        response = client.post("/v1/handoffs", data=json.dumps(full_packet()), headers=auth(),
                               content_type="application/json")
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        [ticket] = body["tickets"]
        assert ticket["status"] == "created" and ticket["id"] == IDS["Case"]
        assert ticket["url"] == f"{INSTANCE}/lightning/r/Case/{IDS['Case']}/view"
        [case] = org.sent("Case")
        assert case["Subject"].startswith("Invoices stopped syncing to QuickBooks")
        assert "WHY A PERSON IS NEEDED" in case["Description"]
        [comment] = org.sent("CaseComment")
        assert "[09:17:10] Customer: Did that. Still broken" in comment["CommentBody"]


def test_a_case_opened_under_a_closed_one_says_what_the_customer_was_told(make_app):
    # A review: the repeat's attempt leaves the message out of an update's brief, and the new case
    # that replaced the closed one kept it out — the agent could not see what was promised.
    client = make_app(**SALESFORCE).test_client()
    post = lambda packet: client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(),  # noqa: E731
                                      content_type="application/json")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        org = SalesforceFake(rsps)
        org.new_case()
        assert post(full_packet()).status_code == 201
        org.case_state(IDS["Case"], closed=True)
        org.create("Case", "5005g00000Hnd0gAAB")
        again = full_packet()
        again["transcript"].append({"at": "2026-11-20T11:00:00Z", "role": "customer", "text": "It broke again"})
        answer = post(again).get_json()
        assert answer["tickets"][0]["status"] == "created"
        first, second = org.sent("Case")
        assert second["ParentId"] == IDS["Case"]
        told = f"Message for the customer: “{answer['customer_message']['text']}”"
        assert told in first["Description"] and told in second["Description"]


def test_a_sticky_rule_offers_the_owner_of_the_customers_open_case(make_app):
    # A review: only Zendesk was asked for the previous agent; every sticky rule over Salesforce (the
    # shipped vip and enterprise) acted as a plain team rule.
    client = make_app(**SALESFORCE).test_client()
    soql = ("SELECT OwnerId, Owner.Name, Owner.Email, Owner.IsActive, CreatedById FROM Case WHERE IsClosed = false AND "
            "(SuppliedEmail = 'dana.whitfield@example.com' OR Contact.Email = 'dana.whitfield@example.com') "
            "ORDER BY CreatedDate DESC LIMIT 20")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        org.query([{"Id": "500A", "OwnerId": "00G5g000003QueueAA", "CreatedById": "0055g00000ApiUsAAA"},
                   {"Id": "500B", "OwnerId": "0055g00000ApiUsAAA", "CreatedById": "0055g00000ApiUsAAA"},
                   {"Id": "500D", "OwnerId": "0055g00000SamLeAAA", "Owner": {"Name": "Sam Left", "IsActive": False},
                    "CreatedById": "0055g00000ApiUsAAA"},  # left the org: refused as an owner
                   {"Id": "500C", "OwnerId": "0055g00000Agnt1AAB", "CreatedById": "0055g00000ApiUsAAA",
                    "Owner": {"Name": "Ana Agent", "Email": "ana.agent@acme.example", "IsActive": True}}],
                  soql=soql, sobject="Case")
        org.query([])  # no contact: one is made
        org.create("Contact")
        org.create("Case", headers={"Sforce-Auto-Assign": "FALSE"})  # routing chose the owner
        org.comments(1)
        packet = full_packet()
        packet["routing"]["preferred_agent"] = {"email": "ana.agent@acme.example"}  # the bot named her too
        body = client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(),
                           content_type="application/json").get_json()
        [case] = org.sent("Case")
    assert body["assignment"]["agent"] == "Ana Agent"
    assert not [said for said in body.get("warnings", []) if "preferred_agent" in said]
    assert "sticky: offered previous agent Ana Agent (salesforce owner_id=0055g00000Agnt1AAB)" in body["assignment"]["trace"]
    assert case["OwnerId"] == "0055g00000Agnt1AAB"


def _repeat_onto_a_case_owned_by(make_app, owner: str, name: str, active: bool = True) -> dict:
    """A second handoff of the conversation onto its case, which `owner` owns now: its read."""
    app = make_app(**SALESFORCE)
    services, client = app.extensions["connector"], app.test_client()
    again = full_packet()
    again["transcript"].append({"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "still broken"})
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        org.new_case()
        assert client.post("/v1/handoffs", data=json.dumps(full_packet()), headers=auth(),
                           content_type="application/json").status_code == 201
        org.case_state(IDS["Case"], owner=owner, owner_name=name, active=active)
        org.comments(2)
        second = client.post("/v1/handoffs", data=json.dumps(again), headers=auth(),
                             content_type="application/json").get_json()
        services.executor.shutdown(wait=True)  # the assignment is recorded off the bot's path
    assert second["tickets"][0]["status"] == "updated", second
    return client.get(f"/v1/handoffs/{second['id']}", headers=auth()).get_json()


def test_a_repeat_handoff_onto_a_case_an_agent_owns_is_theirs_in_the_bots_read(make_app):
    # No event comes from Salesforce for an owner who does not change: the second handoff onto the
    # case Ana took was "waiting" for good, the bot never told anyone had it.
    held = _repeat_onto_a_case_owned_by(make_app, "0055g00000Agnt1AAB", "Ana Agent")["assigned"]
    assert {k: held[k] for k in ("target", "ticket_id", "agent_id", "routed")} == {
        "target": "salesforce", "ticket_id": IDS["Case"], "agent_id": "0055g00000Agnt1AAB", "routed": True}


def test_a_repeat_handoff_onto_a_case_a_deactivated_user_owns_waits_for_an_agent(make_app):
    # Salesforce keeps a user who left as the owner of their open cases: the bot was told they had the
    # conversation (a review); nobody does.
    read = _repeat_onto_a_case_owned_by(make_app, "0055g00000SamLeAAA", "Sam Left", active=False)
    assert read["assigned"] is None and read["assignment"]["agent"] != "Sam Left"


def test_a_conversation_whose_case_was_merged_goes_on_on_the_case_it_was_merged_into(make_app):
    """An agent merged the conversation's case into the customer's other open one (Case Merge deletes
    it): the next handoff updates that case — no new case duplicating it — and the one after it
    updates it straight away, the conversation linked to it."""
    client = make_app(**SALESFORCE).test_client()
    master = "5005g00000MastrCAA"

    def handoff(text: str | None = None) -> dict:
        packet = full_packet()
        if text:
            packet["transcript"].append({"at": "2026-11-20T10:05:00Z", "role": "customer", "text": text})
        response = client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")
        assert response.status_code == 201, response.get_json()
        return response.get_json()["tickets"][0]

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        org.new_case()
        assert handoff()["id"] == IDS["Case"]

        org.case_state(IDS["Case"], gone=True)
        org.merged(IDS["Case"], into=master)
        org.case_state(master)
        org.comments(2)
        assert handoff("It broke again.") == {
            "target": "salesforce", "status": "updated", "id": master,
            "url": f"{INSTANCE}/lightning/r/Case/{master}/view", "attempts": 1, "error": None}

        org.case_state(master)
        org.comments(2)
        assert handoff("Still broken.")["id"] == master
        assert len(org.calls("GET", "queryAll/")) == 1  # the deleted case is not looked at again
        assert len(org.sent("Case")) == 1  # no second case
        assert [c["ParentId"] for c in org.sent("CaseComment")[1:]] == [master] * 4


def test_the_cases_outbound_messages_assign_and_then_complete_the_handoff(make_app):
    # The contract: Salesforce sends events (assignee changed, case closed) to /webhooks/salesforce.
    # A handoff delivered to the (faked) org, then the Outbound Messages its Flow sends for the case.
    import datetime as dt

    from tests.test_webhooks_salesforce import TOKEN as HOOK_TOKEN
    from tests.test_webhooks_salesforce import acked, message

    app = make_app(**SALESFORCE, salesforce_webhook_tokens=(HOOK_TOKEN,))
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        SalesforceFake(rsps).new_case()
        made = client.post("/v1/handoffs", data=json.dumps(full_packet()), headers=auth(),
                           content_type="application/json").get_json()
    handoff_id = made["id"]
    assert made["tickets"][0]["id"] == IDS["Case"]

    def sent(notification_id: str, owner: str, closed: str) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = message(notification_id, owner=owner, closed=closed, modified=now, handoff_id=handoff_id)
        response = client.post(f"/webhooks/salesforce?token={HOOK_TOKEN}", data=body, content_type="text/xml")
        assert acked(response), response.get_data(as_text=True)

    sent("04l5g000000Ass1AAK", "0055g00000Agnt1AAB", "false")  # an agent took the case from the queue
    read = client.get(f"/v1/handoffs/{handoff_id}", headers=auth()).get_json()
    assert read["assigned"]["agent_id"] == "0055g00000Agnt1AAB" and read["completed_at"] is None
    sent("04l5g000000Cls1AAK", "0055g00000Agnt1AAB", "true")  # and closed it
    read = client.get(f"/v1/handoffs/{handoff_id}", headers=auth()).get_json()
    assert read["completed_at"] is not None
    assert read["assigned"]["agent_id"] == "0055g00000Agnt1AAB"


def test_a_conversation_no_agent_received_is_not_promised_to_the_customer(make_app):
    # A review: Salesforce refused every case comment (sharing put the case where the API user cannot
    # write), and only they held the transcript: the receipt said so, and the customer message still
    # said "they'll see our whole conversation, so you won't need to repeat yourself".
    client = make_app(**SALESFORCE).test_client()
    lines = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "z" * 15000} for _ in range(3)]
    packet = full_packet(transcript=lines, customer={**full_packet()["customer"], "segment": "smb"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        org = SalesforceFake(rsps)
        org.query([{"Id": "0035g00000Existing"}])
        org.create("Case")
        org.error("POST", "sobjects/CaseComment/", 403, "error-403-insufficient-access.json")
        answer = client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")
    body = answer.get_json()
    assert answer.status_code == 201 and body["status"] == "delivered"
    assert "transcript" not in body["context_receipt"]["salesforce"]["delivered"]
    text = body["customer_message"]["text"]
    assert "whole conversation" in text and "won't need to repeat" not in text
    assert "may need to ask you about some of it again" in text
    read = client.get(body["links"]["self"], headers=auth()).get_json()
    assert read["customer_message"] == body["customer_message"]


@pytest.mark.parametrize("taken", [True, False])
def test_a_batch_retried_after_an_agent_took_the_handoff_is_not_posted_again_reworded(make_app, taken):
    # A review of a mend: a batch's comment timed out (it landed), an agent took the handoff, and the
    # retry announced the batch without "while waiting" — Salesforce's resume, finding comments by
    # their text, posted it again. The retry says it as the attempt whose outcome was unknown did.
    app = make_app(**SALESFORCE)
    services, client = app.extensions["connector"], app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        org = SalesforceFake(rsps)
        org.new_case()
        hid = client.post("/v1/handoffs", data=json.dumps(full_packet()), headers=auth(),
                          content_type="application/json").get_json()["id"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        org = SalesforceFake(rsps)
        org.case_state(IDS["Case"])
        org.raise_("POST", "sobjects/CaseComment/", requests.exceptions.ReadTimeout("read timed out"))
        said = [{"at": "2026-11-20T09:30:00Z", "role": "customer", "text": "Here is the invoice number INV-1"}]
        client.post(f"/v1/handoffs/{hid}/messages", data=json.dumps({"messages": said}), headers=auth(),
                    content_type="application/json")
        [first] = [json.loads(c.request.body)["CommentBody"] for c in org.calls("POST", "sobjects/CaseComment/")][:1]
    if taken:
        assignments.record(services, AssignmentEvent(target="salesforce", event_id="ev-1", ticket_id=IDS["Case"],
                                                     handoff_id=hid, agent_id="0055g00000Agnt1AAB",
                                                     agent_name="Ana", at=utcnow()))
    with services.db.session() as session:
        [batch] = session.scalars(select(Delivery).where(Delivery.handoff_id != hid)).all()
        batch.next_attempt_at = utcnow() - dt.timedelta(seconds=1)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        org = SalesforceFake(rsps)
        org.case_state(IDS["Case"])
        org.query([{"Id": "00a5g00000Cmt01AAB", "CommentBody": first}], sobject="CaseComment")  # it landed
        org.comments(1)
        services.outbox.run_delivery(batch.id)
        again = [json.loads(c.request.body)["CommentBody"] for c in org.calls("POST", "sobjects/CaseComment/")]
    assert first not in again and not any(body.split("\n", 1)[0] == first.split("\n", 1)[0] for body in again)


@pytest.mark.parametrize(("status", "error"), [(403, "error-403-insufficient-access.json"),
                                               (400, "error-400-required-field.json")])
def test_refused_comments_beside_a_description_holding_the_whole_brief_lose_nothing(make_app, status, error):
    # A review of a mend: the case's Description held every transcript line; its comments refused, the
    # customer was told "I couldn't pass on our whole conversation".
    client = make_app(**SALESFORCE).test_client()
    packet = full_packet(customer={**full_packet()["customer"], "segment": "smb"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        org = SalesforceFake(rsps)
        org.query([{"Id": "0035g00000Existing"}])
        org.create("Case")
        org.error("POST", "sobjects/CaseComment/", status, error)
        body = client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(),
                           content_type="application/json").get_json()
        [case] = org.sent("Case")
    assert all(line["text"] in case["Description"] for line in packet["transcript"])
    dropped = [d for d in body["context_receipt"]["salesforce"]["dropped"] if d["part"] == "transcript"]
    assert dropped and all("it is whole in the case's Description" in d["reason"] for d in dropped)
    assert "won't need to repeat" in body["customer_message"]["text"]

