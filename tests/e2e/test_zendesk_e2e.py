"""Zendesk end to end: POST /v1/handoffs → a real ZendeskAdapter → Zendesk faked at the HTTP boundary;
then Zendesk's signed assignment events → the wait quoted to the next customer."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time

import pytest
import responses
from markupsafe import escape

from tests.conftest import ADMIN_TOKEN, auth
from tests.factories import full_packet, mappings_with_a_first_rule
from tests.fakes.zendesk import FakeZendesk, fixture

WEBHOOK_SECRET = "zd-webhook-signing-secret-e2e-0001"
ZENDESK = {"targets": ("zendesk",), "zendesk_subdomain": "acme", "zendesk_email": "bot@acme.example",
           "zendesk_api_token": "zd-token-123", "zendesk_webhook_secrets": (WEBHOOK_SECRET,)}


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
    # What the bot was given to tell the customer (the wait it quotes), as the agent reads it.
    told = escape(body["customer_message"]["text"])
    assert f"Message for the customer: “{told}”" in sent["ticket"]["comment"]["html_body"]
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


def test_a_whatsapp_customer_without_email_is_one_end_user_across_handoffs(zendesk):
    """Known by the bot's customer id and a phone: made an end user once (with the phone agents
    see), found the next time, and every ticket names them by requester_id — not a new
    identity-less requester per handoff."""
    client, zd = zendesk
    customer = {"id": "wa_447700900123", "name": "Dana Whitfield", "phone": "+44 7700 900123", "segment": "smb"}
    zd.users_by_external_id()
    zd.create_or_update_user()
    zd.create_ticket({"id": 1001})
    first = post(client, full_packet(customer=customer))
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["context_receipt"]["zendesk"]["dropped"] == []

    zd.users_by_external_id()
    zd.create_ticket({"id": 1002})
    other = full_packet(customer=customer, conversation={**full_packet()["conversation"], "id": "conv-wa-2"})
    assert post(client, other).get_json()["tickets"][0]["id"] == "1002"

    [user] = zd.users.values()
    assert (user["external_id"], user["phone"]) == ("support-bot:wa_447700900123", "+447700900123")
    assert [body["ticket"]["requester_id"] for body in zd.json_bodies("POST", "/api/v2/tickets.json")] == [user["id"]] * 2
    assert len(zd.calls("POST", "/api/v2/users/create_or_update.json")) == 1
    zd.assert_ticket_requests_valid()


def test_a_conversation_back_after_its_ticket_closed_gets_a_follow_up_ticket_and_keeps_it(zendesk):
    """Zendesk closes solved tickets after a few days and refuses every update of them: the next
    handoff of the conversation opens a follow-up ticket, and the one after it updates that one —
    not the closed one again, which would fail every later handoff of the conversation."""
    client, zd = zendesk
    zd.search(results=[])  # the sticky rule's look for an open ticket, once per handoff
    zd.create_ticket({"id": 1001})
    assert post(client, full_packet()).get_json()["tickets"][0]["id"] == "1001"

    zd.error("PUT", "/api/v2/tickets/1001.json", 422, "error-422-closed-ticket.json")
    zd.audits(1001)  # closed, not merged into another ticket
    zd.create_ticket({"id": 1002})
    came_back = full_packet()
    came_back["transcript"].append({"at": "2026-11-27T11:00:00Z", "role": "customer", "text": "It broke again."})
    second = post(client, came_back)
    assert second.status_code == 201, second.get_json()
    [ticket] = second.get_json()["tickets"]
    assert (ticket["status"], ticket["id"], ticket["error"]) == ("created", "1002", None)
    follow_up = zd.json_bodies("POST", "/api/v2/tickets.json")[1]["ticket"]
    assert follow_up["via_followup_source_id"] == 1001 and "It broke again." in follow_up["comment"]["html_body"]

    zd.update_ticket(1002)
    third = full_packet()
    third["transcript"].append({"at": "2026-11-27T11:05:00Z", "role": "customer", "text": "Still broken."})
    assert post(client, third).get_json()["tickets"][0] == {
        "target": "zendesk", "status": "updated", "id": "1002", "url": "https://acme.zendesk.com/agent/tickets/1002",
        "attempts": 1, "error": None}
    assert len(zd.calls("PUT", "/api/v2/tickets/1001.json")) == 1
    zd.assert_ticket_requests_valid()


def test_a_conversation_whose_ticket_was_merged_goes_on_on_the_ticket_it_was_merged_into(zendesk):
    """An agent merged the conversation's ticket into the customer's other open one (the merge closes
    it): the next handoff updates that ticket — no follow-up duplicating it — and the one after it
    updates it straight away, the conversation linked to it."""
    client, zd = zendesk
    zd.search(results=[])  # the sticky rule's look for an open ticket, once per handoff
    zd.create_ticket({"id": 1001})
    assert post(client, full_packet()).get_json()["tickets"][0]["id"] == "1001"

    zd.error("PUT", "/api/v2/tickets/1001.json", 422, "error-422-closed-ticket.json")
    zd.audits(1001, merged_into=88001)
    zd.update_ticket(88001)
    came_back = full_packet()
    came_back["transcript"].append({"at": "2026-11-27T11:00:00Z", "role": "customer", "text": "It broke again."})
    second = post(client, came_back)
    assert second.status_code == 201, second.get_json()
    assert second.get_json()["tickets"][0] == {
        "target": "zendesk", "status": "updated", "id": "88001",
        "url": "https://acme.zendesk.com/agent/tickets/88001", "attempts": 1, "error": None}
    assert "It broke again." in zd.json_bodies("PUT", "/api/v2/tickets/88001.json")[0]["ticket"]["comment"]["html_body"]

    third = full_packet()
    third["transcript"].append({"at": "2026-11-27T11:05:00Z", "role": "customer", "text": "Still broken."})
    assert post(client, third).get_json()["tickets"][0]["id"] == "88001"
    assert len(zd.calls("PUT", "/api/v2/tickets/1001.json")) == 1  # the merged ticket is not tried again
    assert len(zd.calls("GET", "/api/v2/tickets/1001/audits.json")) == 1
    assert len(zd.json_bodies("PUT", "/api/v2/tickets/88001.json")) == 2
    assert len(zd.calls("POST", "/api/v2/tickets.json")) == 1  # no follow-up ticket
    zd.assert_ticket_requests_valid()


def test_two_handoffs_meeting_the_same_closed_ticket_make_one_new_ticket(zendesk):
    """The second handoff takes the conversation's link to open the closed ticket's successor; a
    third, which met the closed ticket at the same moment, may not open another: it waits for
    that ticket and updates it."""
    from requests.exceptions import ReadTimeout
    from sqlalchemy import select

    from connector.models import Delivery, Handoff

    client, zd = zendesk
    services = client.application.extensions["connector"]
    zd.search(results=[])
    zd.create_ticket({"id": 1001})
    post(client, full_packet())
    zd.error("PUT", "/api/v2/tickets/1001.json", 422, "error-422-closed-ticket.json")
    zd.audits(1001)  # closed, not merged
    zd.raises("POST", "/api/v2/tickets.json", ReadTimeout("read timed out"))  # the new ticket: fate unknown
    packets = [full_packet(), full_packet()]
    for n, packet in enumerate(packets):
        packet["transcript"].append({"at": "2026-11-27T11:00:00Z", "role": "customer", "text": f"Back ({n})."})
    second = post(client, packets[0]).get_json()
    third = post(client, packets[1]).get_json()  # held: the link says the second is opening a ticket
    assert (second["tickets"][0]["status"], third["tickets"][0]["status"]) == ("pending", "pending")
    assert len(zd.calls("POST", "/api/v2/tickets.json")) == 2 and len(zd.calls("PUT", "/api/v2/tickets/1001.json")) == 1

    def row(handoff_id):
        with services.db.session() as session:
            handoff = session.get(Handoff, handoff_id)
            return session.scalars(select(Delivery).where(Delivery.handoff_id == handoff_id)).one(), handoff

    # had the third met ticket 1001 at the same moment as the second, it could not take it …
    assert services.outbox._replacement_taker(*row(third["id"]))("1001", True) is False
    assert services.outbox._replacement_taker(*row(second["id"]))("1001", True) is True  # its own, still

    made = {**fixture("tickets-by-external-id.json")["tickets"][0], "id": 1002, "external_id": second["id"]}
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets.json", json={"tickets": [made]})  # Zendesk had made it
    zd.update_ticket(1002)
    with services.db.session() as session:
        session.execute(Delivery.__table__.update().values(next_attempt_at=Delivery.created_at))
    assert services.outbox.run_delivery(row(second["id"])[0].id).vendor_id == "1002"
    services.outbox.run_delivery(row(third["id"])[0].id)  # no longer held: 1002 is recorded
    delivered = row(third["id"])[0]
    assert (delivered.state, delivered.vendor_id) == ("updated", "1002")
    assert len(zd.calls("POST", "/api/v2/tickets.json")) == 2  # no third ticket


def test_a_delivery_waiting_for_the_closed_tickets_successor_is_held_not_charged_an_attempt(zendesk):
    """It could otherwise be given up (and the bot told `failed`) while nothing failed."""
    from unittest import mock

    from adapters.errors import ReplacementUnderway
    from adapters.zendesk import ZendeskAdapter
    from connector.models import Delivery

    client, zd = zendesk
    services = client.application.extensions["connector"]
    zd.search(results=[])
    zd.create_ticket({"id": 1001})
    post(client, full_packet())
    again = full_packet()
    again["transcript"].append({"at": "2026-11-27T11:00:00Z", "role": "customer", "text": "Back."})
    with mock.patch.object(ZendeskAdapter, "deliver", side_effect=ReplacementUnderway("another is opening it")):
        answer = post(client, again).get_json()
    assert answer["tickets"][0]["status"] == "pending"
    with services.db.session() as session:
        held = session.query(Delivery).filter_by(handoff_id=answer["id"]).one()
        assert (held.attempts, held.state, held.lease_owner, held.last_error) == (0, "pending", None, None)
        assert held.next_attempt_at > held.created_at


def test_when_the_closed_tickets_successor_fails_to_open_the_next_handoff_still_names_it(zendesk):
    client, zd = zendesk
    zd.search(results=[])
    zd.create_ticket({"id": 1001})
    post(client, full_packet())
    zd.error("PUT", "/api/v2/tickets/1001.json", 422, "error-422-closed-ticket.json")
    zd.audits(1001)  # closed, not merged
    zd.error("POST", "/api/v2/tickets.json", 422, "error-422-base-invalid.json")  # this one is refused
    first = full_packet()
    first["transcript"].append({"at": "2026-11-27T11:00:00Z", "role": "customer", "text": "Back."})
    assert post(client, first).get_json()["tickets"][0]["status"] == "failed"
    zd.create_ticket({"id": 1003})
    again = full_packet()
    again["transcript"].append({"at": "2026-11-27T11:05:00Z", "role": "customer", "text": "Back again."})
    assert post(client, again).get_json()["tickets"][0]["id"] == "1003"
    creates = [body["ticket"] for body in zd.json_bodies("POST", "/api/v2/tickets.json")]
    assert [t.get("via_followup_source_id") for t in creates] == [None, 1001, 1001]


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


def test_a_previous_agent_zendesk_refuses_is_not_named_as_the_one_to_reply(zendesk):
    # A review: Zendesk refused the sticky agent (no longer in the group) and the ticket was made
    # without them, waiting in its queue; the answer still named them as the customer's agent.
    client, zd = zendesk
    zd.search()
    zd.show_user()
    zd.rsps.add("POST", zd.origin + "/api/v2/tickets.json", status=422, json={
        "error": "RecordInvalid", "description": "Record validation errors",
        "details": {"assignee": [{"description": "Assignee is not a member of the group", "error": "InvalidValue"}]}})
    zd.create_ticket({"id": 1002})
    body = post(client, full_packet()).get_json()
    first, second = (sent["ticket"] for sent in zd.json_bodies("POST", "/api/v2/tickets.json"))
    assert first["assignee_id"] == 381156009921 and "assignee_id" not in second
    # The agent who opens the unassigned ticket reads why its brief names Sam (a second review).
    note = ("<p><em>Not assigned to Sam Okafor: Zendesk refused routing&#x27;s assignee (Zendesk rejected the request "
            "(422): RecordInvalid — Record validation errors — assignee: Assignee is not a member of the group). ")
    assert second["comment"]["html_body"] == note + (
        "This ticket waits in its group&#x27;s queue for anyone; the brief below names the agent routing chose.</em></p>"
        + first["comment"]["html_body"])
    assert body["tickets"][0]["status"] == "created"
    assert body["assignment"]["agent"] is None
    assert any(line.startswith("sticky: offered previous agent") for line in body["assignment"]["trace"])
    [refused] = [e for e in body["context_receipt"]["zendesk"]["dropped"] if e["part"] == "routing"]
    assert refused["field"] == "assignee_id" and "Assignee is not a member of the group" in refused["reason"]
    assert client.get(body["links"]["self"], headers=auth()).get_json()["assignment"] == body["assignment"]


def test_a_repeat_onto_a_ticket_an_agent_has_names_them_in_its_answer_as_its_replay_does(zendesk):
    # A review: the update's answer names the ticket's assignee, recorded holding the handoff after
    # the answer — the 201 said agent null, its replay (nothing changed) and a read named them.
    client, zd = zendesk
    packet = full_packet(customer={**full_packet()["customer"], "segment": "smb"})  # no sticky lookup
    zd.create_ticket({"id": 77120})
    assert post(client, packet).status_code == 201
    zd.update_ticket(77120)  # answered with assignee_id 381156009921: an agent has the ticket
    packet["transcript"].append({"at": "2026-11-20T11:00:00Z", "role": "customer", "text": "Any news?"})
    answer = post(client, packet).get_json()
    assert answer["tickets"][0]["status"] == "updated"
    assert answer["assignment"]["agent"] == "381156009921"
    for _ in range(100):  # the holder is recorded off the bot's path
        read = client.get(answer["links"]["self"], headers=auth()).get_json()
        if read["assignment"]["agent"] is not None:
            break
        time.sleep(0.05)
    assert read["assignment"] == answer["assignment"]
    assert post(client, packet).get_json() == answer


def test_the_admin_preview_is_what_is_then_sent(zendesk):
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


def zendesk_event(client, ticket_id: int, handoff_id: str, event_id: str, at: dt.datetime):
    """Zendesk assigning the ticket, signed as Zendesk signs (written out here, not our verifier)."""
    body = fixture("event-agent-assignment-changed.json")
    body.update(id=event_id, time=at.isoformat().replace("+00:00", "Z"), subject=f"zen:ticket:{ticket_id}")
    body["detail"].update(id=str(ticket_id), external_id=handoff_id)
    return signed_post(client, body)


def signed_post(client, body: dict):
    """`body` posted to /webhooks/zendesk, signed as Zendesk signs (written out here, not our verifier)."""
    raw = json.dumps(body).encode()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + raw, hashlib.sha256).digest())
    return client.post("/webhooks/zendesk", data=raw, content_type="application/json",
                       headers={"X-Zendesk-Webhook-Signature": signature.decode(),
                                "X-Zendesk-Webhook-Signature-Timestamp": stamp})


def wait_line(body) -> str:
    return next(line for line in body["assignment"]["trace"] if line.startswith("wait:"))


def test_assignments_zendesk_reports_set_the_wait_quoted_next(zendesk):
    client, zd = zendesk
    handoffs = []
    for n, wait_s in enumerate((30, 90, 150)):
        zd.search(results=[])
        zd.create_ticket({"id": 2001 + n})
        packet = full_packet()
        packet["conversation"]["id"] = f"conv-wait-{n}"
        body = post(client, packet).get_json()
        assert body["assignment"]["team"] == "technical_support"
        # Nothing observed yet, and the shipped routing gives this team no figure: none is quoted.
        assert body["estimated_wait_seconds"] is None and wait_line(body) == "wait: none quoted, unknown"
        handoffs.append((body["id"], 2001 + n, wait_s))

    for handoff_id, ticket_id, wait_s in handoffs:
        created = dt.datetime.fromisoformat(client.get(f"/v1/handoffs/{handoff_id}", headers=auth()).get_json()
                                            ["created_at"])
        answer = zendesk_event(client, ticket_id, handoff_id, f"evt-{ticket_id}", created + dt.timedelta(seconds=wait_s))
        assert answer.get_json() == {"outcome": "recorded", "detail": f"assigned after {wait_s} s",
                                     "handoff_id": handoff_id}
    again = zendesk_event(client, 2001, handoffs[0][0], "evt-2001", dt.datetime.now(dt.UTC))
    assert again.get_json()["outcome"] == "duplicate"  # Zendesk delivers at least once

    detail = client.get(f"/v1/handoffs/{handoffs[0][0]}", headers=auth()).get_json()
    assert detail["assigned"]["agent_id"] == "381156009921" and detail["assigned"]["wait_seconds"] == 30
    assert detail["assigned"]["target"] == "zendesk" and detail["assigned"]["ticket_id"] == "2001"

    zd.search(results=[])
    zd.create_ticket({"id": 2004})
    packet = full_packet()
    packet["conversation"]["id"] = "conv-wait-next"
    body = post(client, packet).get_json()
    assert body["estimated_wait_seconds"] == 90  # the median of 30, 90 and 150
    assert wait_line(body) == "wait: 90 s, observed"
    assert "about 2 minutes" in body["customer_message"]["text"]
    assert client.get(f"/v1/handoffs/{body['id']}", headers=auth()).get_json()["assigned"] is None

    preview = client.post("/v1/preview", data=json.dumps(packet), headers=auth(ADMIN_TOKEN),
                          content_type="application/json").get_json()
    assert (preview["estimated_wait_seconds"], preview["wait_source"]) == (90, "observed")


def _later(department: str, *times: str) -> dict:
    packet = full_packet()
    packet["routing"]["department"] = department
    packet["transcript"] += [{"at": at, "role": "customer", "text": f"and {at}"} for at in times]
    return packet


def test_a_link_moved_to_the_merge_target_keeps_the_team_and_what_the_ticket_was_told(make_app):
    # Reviews of the mend: (1) the move wrote routing's unapplied choice (billing) as the team the
    # ticket was opened for: the next handoff's bot heard billing, its note claimed a move that never
    # was. (2) an older handoff's note found on the merge target after a later one moved the link
    # there rewrote the link, `told` back to its own, and the next note marked [new] what was told.
    from requests.exceptions import ReadTimeout
    from sqlalchemy import select

    from connector.models import ConversationLink, Delivery

    app = make_app(**ZENDESK)
    client, services = app.test_client(), app.extensions["connector"]

    def link():
        with services.db.reading() as session:
            row = session.scalars(select(ConversationLink)).one()
            return row.vendor_id, (row.extra or {}).get("opened_with", {}).get("team"), \
                (row.extra or {}).get("told", {}).get("last_message_at")

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        zd = FakeZendesk(rsps)
        zd.search(results=[])
        zd.create_ticket({"id": 1001})
        assert post(client, _later("technical_support")).get_json()["assignment"]["team"] == "technical_support"
        zd.error("PUT", "/api/v2/tickets/1001.json", 422, "error-422-closed-ticket.json")
        zd.audits(1001, merged_into=88001)
        zd.raises("PUT", "/api/v2/tickets/88001.json", ReadTimeout("read timed out"))  # H2's note lands unseen
        h2 = post(client, _later("billing", "2026-11-27T11:00:00Z")).get_json()
        assert h2["tickets"][0]["status"] == "pending"
        zd.update_ticket(88001)
        h3 = post(client, _later("billing", "2026-11-27T11:00:00Z", "2026-11-27T11:05:00Z")).get_json()
        assert (h3["tickets"][0]["id"], h3["assignment"]["team"]) == ("88001", "technical_support")
        assert link()[:2] == ("88001", "technical_support")
        told = link()[2]
        assert told.startswith("2026-11-27T11:05")

        rsps.add("GET", zd.origin + "/api/v2/tickets/88001/comments.json", json={"comments": [
            {"id": 1, "html_body": f"<p>Handoff {h2['id']} from support-bot</p>"}]})
        zd.show_ticket(88001)
        with services.db.session() as session:
            [h2_delivery] = session.scalars(select(Delivery).where(Delivery.handoff_id == h2["id"])).all()
            h2_delivery.next_attempt_at = h2_delivery.created_at
        services.outbox.run_delivery(h2_delivery.id)
        assert client.get(f"/v1/handoffs/{h2['id']}", headers=auth()).get_json()["tickets"][0]["id"] == "88001"
        assert link() == ("88001", "technical_support", told)


def test_a_repeat_on_the_merge_target_keeps_its_new_marks_its_kept_team_and_says_what_it_sent(make_app):
    # Reviews of the mend: the whole brief for the merge target dropped the [new] marks its heading
    # names and the team the ticket stays with ("Routed to: billing" under "was not moved"); and the
    # delivery kept the short note's payload and receipt, no file said, while the whole brief went.
    from sqlalchemy import select

    from connector.models import Delivery

    app = make_app(**ZENDESK)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        zd = FakeZendesk(rsps)
        zd.search(results=[])
        zd.create_ticket({"id": 1001})
        post(client, _later("technical_support"))
        zd.error("PUT", "/api/v2/tickets/1001.json", 422, "error-422-closed-ticket.json")
        zd.audits(1001, merged_into=88001)
        zd.update_ticket(88001)
        h2 = post(client, _later("billing", "2026-11-27T11:00:00Z")).get_json()
        [note] = zd.json_bodies("PUT", "/api/v2/tickets/88001.json")
    assert h2["tickets"][0]["id"] == "88001"
    html = note["ticket"]["comment"]["html_body"]
    assert "marked [new] in the transcript" in html and html.count("[new]") >= 2  # the heading's and a message's
    assert "not moved: this ticket stays with technical_support" in html
    with app.extensions["connector"].db.reading() as session:
        stored = session.scalars(select(Delivery).where(Delivery.handoff_id == h2["id"])).one()
    assert stored.payload["ticket"]["comment"]["html_body"] == html


@pytest.mark.parametrize("refused", [False, True])
def test_routing_yamls_own_assignee_is_the_answers_agent_until_zendesk_refuses_them(make_app, tmp_path, refused):
    # A review: a rule's `assignee_id` had the ticket from its making, and the answer said `agent:
    # null` with a trace that did not name them; refused by Zendesk, the ticket's brief gained no note.
    mappings = mappings_with_a_first_rule(tmp_path, "  - name: to-dana\n    when: {segment: enterprise}\n"
                                            "    then: {team: escalations, targets: {zendesk: {assignee_id: 381726354}}}\n")
    client = make_app(**ZENDESK, mappings_dir=mappings).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        zd = FakeZendesk(rsps)
        if refused:
            zd.rsps.add("POST", zd.origin + "/api/v2/tickets.json", status=422, json={
                "error": "RecordInvalid", "description": "Record validation errors",
                "details": {"assignee": [{"description": "Assignee is not a member of the group",
                                          "error": "InvalidValue"}]}})
        zd.create_ticket({"id": 1004})
        body = post(client, full_packet()).get_json()
        sent = [each["ticket"] for each in zd.json_bodies("POST", "/api/v2/tickets.json")]
        zd.assert_ticket_requests_valid()
    assert body["tickets"][0]["status"] == "created" and sent[0]["assignee_id"] == 381726354
    assert "agent: Zendesk agent 381726354, zendesk assignee_id from routing.yaml (rule to-dana, team escalations)" \
        in body["assignment"]["trace"]
    if refused:
        assert body["assignment"]["agent"] is None and "assignee_id" not in sent[1]
        assert sent[1]["comment"]["html_body"].startswith("<p><em>Not assigned to Zendesk agent 381726354: Zendesk refused")
    else:
        assert body["assignment"]["agent"] == "Zendesk agent 381726354"
    assert client.get(body["links"]["self"], headers=auth()).get_json()["assignment"] == body["assignment"]


def test_a_transcript_file_zendesk_refused_is_named_in_an_answer_the_document_allows(zendesk):
    # A review: the refused file's entry under `dropped` carries `file`, which the answer's schema did
    # not allow (additionalProperties false): a client generated from /openapi.json rejected the
    # answer — its ticket and the news of the lost context — exactly when context was lost.
    client, zd = zendesk
    zd.search(results=[])
    zd.error("POST", "/api/v2/uploads.json", 403, "error-403-forbidden.json")
    zd.create_ticket({"id": 1001})
    packet = full_packet()
    packet["transcript"] += [{"at": f"2026-11-20T09:4{n % 10}:00Z", "role": "customer", "text": "word " * 400}
                             for n in range(40)]
    response = post(client, packet)  # the CheckedClient validates the answer against the document
    assert response.status_code == 201, response.get_json()
    [refused] = [d for d in response.get_json()["context_receipt"]["zendesk"]["dropped"] if d.get("file")]
    assert refused["part"] == "transcript"
    assert client.get(response.get_json()["links"]["self"], headers=auth()).status_code == 200
    # The start of the conversation is not on the ticket: the customer is not promised it is (a review).
    assert "won't need to repeat" not in response.get_json()["customer_message"]["text"]
