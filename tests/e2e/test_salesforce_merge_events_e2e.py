"""Salesforce's Case Merge, end to end: it deletes the merged case and sends nothing of it, and the
master case's Outbound Messages name a case no handoff went to. The connector looks for the cases
merged into the ones a message names (queryAll: `MasterRecordId`), links their conversations to
the master, and then records the message: an agent taking the master takes the handoff, its close
completes it. A review found the handoff read "waiting" until the customer came back."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

import pytest
import requests
import responses
from sqlalchemy import select

from connector.models import ConversationLink
from tests.conftest import auth
from tests.factories import full_packet
from tests.fakes.salesforce import IDS, INSTANCE, QUEUE, TOKEN, SalesforceFake
from tests.test_webhooks_salesforce import TOKEN as HOOK_TOKEN
from tests.test_webhooks_salesforce import acked, message

SALESFORCE = {"targets": ("salesforce",), "salesforce_instance_url": INSTANCE, "salesforce_access_token": TOKEN,
              "salesforce_webhook_tokens": (HOOK_TOKEN,)}
MERGED = IDS["Case"]  # the conversation's own case, which an agent merged away
MASTER = "5005g00000MastrCAA"  # the customer's other case, made by hand
BETWEEN = "5005g00000BtwenCAA"  # merged into MASTER after MERGED was merged into it
AGENT = "0055g00000Agnt1AAB"


def handed_off(client, org: SalesforceFake, conversation: str = "conv-merged", case: str = MERGED) -> str:
    """A handoff of `conversation` delivered to a new case `case`: its id."""
    org.query([])
    org.create("Contact")
    org.create("Case", case, headers={"Sforce-Auto-Assign": "TRUE"})
    org.comments(1)
    packet = full_packet()
    packet["conversation"]["id"] = conversation
    response = client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")
    assert response.status_code == 201 and response.get_json()["tickets"][0]["id"] == case, response.get_json()
    return response.get_json()["id"]


def sent(client, notification_id: str, *, case: str = MASTER, owner: str = AGENT, closed: str = "false"):
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body = message(notification_id, owner=owner, closed=closed, modified=now, handoff_id="", case_id=case)
    return client.post(f"/webhooks/salesforce?token={HOOK_TOKEN}", data=body, content_type="text/xml")


def read(client, handoff_id: str) -> dict:
    return client.get(f"/v1/handoffs/{handoff_id}", headers=auth()).get_json()


def linked_to(app) -> list[str]:
    with app.extensions["connector"].db.reading() as session:
        return list(session.scalars(select(ConversationLink.vendor_id).order_by(ConversationLink.id)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request) -> dict:
    return {"database_url": request.getfixturevalue("postgres_url")} if request.param == "postgres" else {}


def test_an_agent_taking_and_closing_the_master_case_takes_and_completes_the_merged_handoff(make_app, database):
    app = make_app(**SALESFORCE, **database)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        handoff_id = handed_off(client, org)
        org.merged_away([MASTER], {MERGED: MASTER})
        org.merged_away([MERGED], {})  # and merged into it before? (a merge found asks once more)
        assert acked(sent(client, "04l5g000000Ass1AAK"))
        assert org.queries("queryAll/") == [
            f"SELECT Id, MasterRecordId FROM Case WHERE IsDeleted = true AND MasterRecordId IN ('{case}')"
            for case in (MASTER, MERGED)]
        taken = read(client, handoff_id)
        assert taken["assigned"]["agent_id"] == AGENT and taken["completed_at"] is None
        assert linked_to(app) == [MASTER]
        # Its close: the conversation is linked to the master now, nothing waits elsewhere — no read.
        assert acked(sent(client, "04l5g000000Cls1AAK", closed="true"))
        assert len(org.queries("queryAll/")) == 2
    done = read(client, handoff_id)
    assert done["completed_at"] is not None and done["assigned"]["agent_id"] == AGENT


def test_the_close_of_a_master_case_of_ours_completes_both_conversations(make_app, database):
    app = make_app(**SALESFORCE, **database)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        merged = handed_off(client, org)
        master = handed_off(client, org, conversation="conv-master", case=MASTER)
        org.merged_away([MASTER], {MERGED: MASTER})
        org.merged_away([MERGED], {})
        assert acked(sent(client, "04l5g000000Cls1AAK", closed="true"))
    assert read(client, master)["completed_at"] is not None
    assert read(client, merged)["completed_at"] is not None
    assert linked_to(app) == [MASTER, MASTER]


def test_merges_one_after_another_are_followed_back_to_the_case_the_message_names(make_app):
    app = make_app(**SALESFORCE)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        handoff_id = handed_off(client, org)
        org.merged_away([MASTER], {BETWEEN: MASTER})  # a case made by hand, no conversation's
        org.merged_away([BETWEEN], {MERGED: BETWEEN})
        assert acked(sent(client, "04l5g000000Ass1AAK"))
    assert read(client, handoff_id)["assigned"]["agent_id"] == AGENT
    assert linked_to(app) == [MASTER]


def test_a_read_that_may_pass_failing_refuses_the_message_unrecorded_and_its_resend_is_taken(make_app):
    # Salesforce sends the whole message again until it reads Ack true: nothing is lost by waiting.
    app = make_app(**SALESFORCE)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        handoff_id = handed_off(client, org)
        org.merged_away([MASTER], status=503)
        refused = sent(client, "04l5g000000Ass1AAK")
        assert refused.status_code == 503 and "nothing was recorded" in refused.get_json()["detail"]
        assert read(client, handoff_id)["assigned"] is None and linked_to(app) == [MERGED]
        org.merged_away([MASTER], {MERGED: MASTER})
        org.merged_away([MERGED], {})
        assert acked(sent(client, "04l5g000000Ass1AAK"))
    assert read(client, handoff_id)["assigned"]["agent_id"] == AGENT


@pytest.mark.parametrize(("status", "code"), [(403, "INSUFFICIENT_ACCESS"), (401, "INVALID_SESSION_ID"),
                                              (403, "REQUEST_LIMIT_EXCEEDED"), (400, "QUERY_TIMEOUT"),
                                              (0, "read timed out")])
def test_a_refused_read_records_the_message_without_following_the_merge(make_app, caplog, status, code):
    # Reviews: credentials refused, the day's API quota spent (a RateLimited for hours), a read timing
    # out (MasterRecordId is no index: a large org's recycle bin may time it out every time) were
    # 503s — every take and close of every case held back until Salesforce gave up its resends.
    app = make_app(**SALESFORCE)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        waiting = handed_off(client, org)
        mine = handed_off(client, org, conversation="conv-master", case=MASTER)
        if status:
            org.merged_away([MASTER], status=status, code=code)
        else:
            org.raise_("GET", "queryAll/", requests.exceptions.ReadTimeout(code))
        with caplog.at_level(logging.WARNING, logger="connector.merges"):
            assert acked(sent(client, "04l5g000000Ass1AAK"))
    assert read(client, mine)["assigned"]["agent_id"] == AGENT  # recorded as before
    assert read(client, waiting)["assigned"] is None and linked_to(app) == [MERGED, MASTER]
    assert "recorded without following them" in caplog.text


def test_a_chain_through_a_case_a_conversation_is_linked_to_is_followed_on(make_app, database):
    # A review: B's case merged into A's, A's into a case made by hand: the close of that one completed
    # A's handoff alone — B's read "waiting", its link on the deleted case.
    app = make_app(**SALESFORCE, **database)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        first = handed_off(client, org)
        second = handed_off(client, org, conversation="conv-second", case=BETWEEN)
        org.merged_away([MASTER], {MERGED: MASTER})
        org.merged_away([MERGED], {BETWEEN: MERGED})
        org.merged_away([BETWEEN], {})
        assert acked(sent(client, "04l5g000000Cls1AAK", closed="true"))
    assert read(client, first)["completed_at"] is not None and read(client, second)["completed_at"] is not None
    assert linked_to(app) == [MASTER, MASTER]


def test_a_later_read_failing_records_what_was_found(make_app):
    # A review: everything found was dropped and the message refused — its resend read the same chain
    # from the start and failed the same way, for as long as Salesforce resent it.
    app = make_app(**SALESFORCE)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        handoff_id = handed_off(client, org)
        org.merged_away([MASTER], {MERGED: MASTER})
        org.merged_away([MERGED], status=503)
        assert acked(sent(client, "04l5g000000Ass1AAK"))
    assert read(client, handoff_id)["assigned"]["agent_id"] == AGENT and linked_to(app) == [MASTER]


def test_a_successor_merged_back_into_the_conversations_solved_case_is_taken_with_it(make_app, database):
    # A review: the conversation's first case was closed (its handoff completed), the customer came back
    # (a successor case), an agent merged that into the first and took it: the take was matched to the
    # completed handoff, and the waiting one was never assigned.
    app = make_app(**SALESFORCE, **database)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        first = handed_off(client, org)
        assert acked(sent(client, "04l5g000000Cls0AAK", case=MERGED, owner=QUEUE, closed="true"))
        org.case_state(MERGED, closed=True)
        org.query([])
        org.create("Contact")
        org.create("Case", BETWEEN)
        org.comments(1)
        packet = full_packet()
        packet["conversation"]["id"] = "conv-merged"
        packet["transcript"].append({"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "It broke again."})
        again = client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")
        assert again.get_json()["tickets"][0]["id"] == BETWEEN, again.get_json()
        org.merged_away([MERGED], {BETWEEN: MERGED})
        org.merged_away([BETWEEN], {})
        time.sleep(1.05)  # taken after the close: LastModifiedDate is in whole seconds
        assert acked(sent(client, "04l5g000000Ass2AAK", case=MERGED))
    assert read(client, again.get_json()["id"])["assigned"]["agent_id"] == AGENT
    assert read(client, first)["assigned"] is None and linked_to(app) == [MERGED]


def test_a_case_nothing_was_merged_into_changes_nothing(make_app):
    app = make_app(**SALESFORCE)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        handoff_id = handed_off(client, org)
        org.merged_away([MASTER], {})
        assert acked(sent(client, "04l5g000000Ass1AAK"))
    assert read(client, handoff_id)["assigned"] is None and linked_to(app) == [MERGED]


@pytest.mark.parametrize("master", [MERGED, MASTER], ids=["the_newer_ones_case", "a_case_no_handoff_made"])
def test_an_older_waiting_conversation_merged_into_a_solved_case_is_taken_with_it(make_app, database, master):
    # Reviews: a customer's two chats — the newer one's case closed (its handoff completed), the older
    # one's merged into it, the case reopened and taken: the take went to the completed handoff (the
    # newest linked to the case, its own conversation's), and the waiting one was never assigned; with
    # the master a case no handoff made (the customer's e-mail case), after the first mend too.
    app = make_app(**SALESFORCE, **database)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        older = handed_off(client, org, conversation="conv-older", case=BETWEEN)
        newer = handed_off(client, org, conversation="conv-newer", case=MERGED)
        org.merged_away([master], {MERGED: master} if master != MERGED else {})  # the older one waits elsewhere
        if master != MERGED:
            org.merged_away([MERGED], {})
        assert acked(sent(client, "04l5g000000Cls0AAK", case=master, owner=QUEUE, closed="true"))
        assert read(client, newer)["completed_at"] is not None
        org.merged_away([master], {BETWEEN: master})
        org.merged_away([BETWEEN], {})
        time.sleep(1.05)  # reopened and taken after the close: LastModifiedDate is in whole seconds
        assert acked(sent(client, "04l5g000000Ass2AAK", case=master))
    assert linked_to(app) == [master, master]
    assert read(client, older)["assigned"]["agent_id"] == AGENT and read(client, newer)["assigned"] is None


def test_a_connect_timeout_is_refused_for_salesforce_to_send_again_as_a_refused_connection(make_app):
    # A review: a connect timeout was taken for the read that may time out every time — nothing reached
    # Salesforce, and the take of the merged case was recorded unfollowed, never to be resent.
    app = make_app(**SALESFORCE)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        handoff_id = handed_off(client, org)
        org.raise_("GET", "queryAll/", requests.exceptions.ConnectTimeout("connect timed out"))
        assert sent(client, "04l5g000000Ass1AAK").status_code == 503
    assert read(client, handoff_id)["assigned"] is None and linked_to(app) == [MERGED]


def test_messages_after_a_merge_found_by_a_message_carry_the_whole_brief_to_the_master_case(make_app):
    # A review (Zendesk's event first, and Salesforce alike): the link moved to the master before any
    # update met the deleted case, and the next batch's short comment sent its agent to "the brief
    # in this case's Description" — the master's own, not the handoff's.
    from tests.e2e.test_follow_ups_e2e import send

    app = make_app(**SALESFORCE)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        handoff_id = handed_off(client, org)
        org.merged_away([MASTER], {MERGED: MASTER})
        org.merged_away([MERGED], {})
        assert acked(sent(client, "04l5g000000Ass1AAK"))
        assert linked_to(app) == [MASTER]
        org.case_state(MASTER, owner=AGENT)
        org.comments(2)
        [ticket] = send(client, handoff_id).get_json()["tickets"]
        comments = org.sent("CaseComment")[1:]
    assert (ticket["status"], ticket["id"]) == ("updated", MASTER)
    said = " ".join(comment["CommentBody"] for comment in comments)
    assert all(comment["ParentId"] == MASTER for comment in comments)
    assert "brief is in this case's Description" not in said and "Self-service reconnect failed twice" in said
    assert f"(2 messages, marked [new] in the transcript). This conversation's case {MERGED} was merged" in said
