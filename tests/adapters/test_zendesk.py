"""Zendesk adapter, faked at the HTTP boundary (`responses`): what goes on the wire, headers included,
and what each failure becomes. Every ticket body sent is checked against Zendesk's OpenAPI spec."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import MaxRetryError, NewConnectionError

import adapters.zendesk as zendesk_module
from adapters.base import Link
from adapters.errors import AuthError, OutcomeUnknown, RateLimited, RejectedError, ReplacementUnderway, TransientError
from adapters.zendesk import COMMENT_LIMIT_BYTES, ZendeskAdapter
from connector.brief import render_brief
from connector.errors import ConfigError
from connector.mappings import load_file
from connector.settings import Settings
from tests.factories import full_packet, make_context, minimal_packet
from tests.fakes.zendesk import FakeZendesk, fixture, validation_errors

MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "zendesk.yaml"
SETTINGS = Settings(zendesk_subdomain="acme", zendesk_email="bot@acme.example", zendesk_api_token="s3cr3t-token")
TICKETS = "/api/v2/tickets.json"
ASSIGNMENT = {"team": "technical_support", "queue": "Technical support", "agent": None, "priority": "high",
              "rule": "tech", "trace": [], "targets": {"zendesk": {"group_id": 360004421977}}}


@pytest.fixture
def zd() -> Iterator[FakeZendesk]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        fake = FakeZendesk(rsps)
        yield fake
        fake.assert_ticket_requests_valid()


def adapter(settings: Settings = SETTINGS, **mapping: Any) -> ZendeskAdapter:
    return ZendeskAdapter(settings, {**load_file(MAPPING_FILE), **mapping})


def ctx(packet: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    kwargs.setdefault("assignment", ASSIGNMENT)
    return make_context(packet, target="zendesk", **kwargs)


def basic_auth(email: str = "bot@acme.example", token: str = "s3cr3t-token") -> str:
    return "Basic " + base64.b64encode(f"{email}/token:{token}".encode()).decode()


# ---- create / update ----------------------------------------------------------------------------


def test_create_sends_complete_ticket_and_returns_agent_url(zd: FakeZendesk) -> None:
    zd.create_ticket()
    context = ctx()
    mapping = {"brand_id": 360002214531, "custom_fields": [
        {"id": 360001, "path": "collected_data.error_code"}, {"id": 360002, "path": "collected_data.missing"},
        {"id": 360003, "path": "customer.attributes.seats"}]}

    outcome = adapter(**mapping).deliver(context)

    assert (outcome.status, outcome.vendor_id) == ("created", "1001")
    assert outcome.url == "https://acme.zendesk.com/agent/tickets/1001"
    [call] = zd.calls("POST", TICKETS)
    assert call.request.headers["Idempotency-Key"] == "hnd_01TESTHANDOFF0000000000000:zendesk"
    assert call.request.headers["Authorization"] == basic_auth()
    assert call.request.req_kwargs["timeout"] == SETTINGS.vendor_timeout_s
    assert call.request.headers["Content-Type"] == "application/json"  # the body is encoded by json_codec
    assert json.loads(call.request.body) == {"ticket": {
        "subject": "Invoices stopped syncing to QuickBooks; reconnecting did not help",
        "comment": {"html_body": context.brief.html, "public": False},
        "requester": {"name": "Dana Whitfield", "email": "dana.whitfield@example.com"},
        "type": "question",
        "tags": ["chatbot", "handoff", "bot_support-bot", "intent_integrations_quickbooks_sync_failure",
                 "sentiment_frustrated", "escalation_repeated_failure", "segment_enterprise",
                 "team_technical_support", "lang_en"],
        "external_id": "hnd_01TESTHANDOFF0000000000000",
        "priority": "high",
        "group_id": 360004421977,
        "brand_id": 360002214531,
        "custom_fields": [{"id": 360001, "value": "4012"}, {"id": 360003, "value": 40}],
    }}
    assert outcome.payload == json.loads(call.request.body)  # what is previewed is what is sent
    # The reply we keep is small and carries no customer data.
    assert outcome.reply == {"ticket": {"id": 1001, "status": "new", "priority": "high", "type": "question",
                                        "group_id": 360004421977, "assignee_id": None, "brand_id": 360002214531,
                                        "external_id": "hnd_01TESTHANDOFF0000000000000",
                                        "created_at": "2026-11-20T09:17:31Z", "updated_at": "2026-11-20T09:17:31Z"},
                             "audit_id": 28861002334517, "idempotency_lookup": "miss"}
    assert outcome.receipt == {"delivered": list(context.brief.sections), "dropped": []}


@pytest.mark.parametrize(("quota", "hold_s"), [
    ({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "699", "ratelimit-reset": "41"}, None),
    ({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "36", "ratelimit-reset": "41"}, None),
    ({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "35", "ratelimit-reset": "41"}, 41.0),  # 5 % left
    ({"ratelimit-limit": "100", "ratelimit-remaining": "10", "ratelimit-reset": "7"}, 7.0),  # at least 10 kept
    ({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "0"}, None),  # no reset time: nothing to wait for
    ({}, None),
    ({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "3", "ratelimit-reset": "1795000000"}, 60.0),  # a timestamp
    ({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "3", "ratelimit-reset": "inf"}, None),
    ({"X-Rate-Limit": "nan", "X-Rate-Limit-Remaining": "3", "ratelimit-reset": "9"}, 9.0),
    ({"X-Rate-Limit": "6", "X-Rate-Limit-Remaining": "4", "ratelimit-reset": "9"}, None),  # a tiny allowance is used
    ({"X-Rate-Limit": "6", "X-Rate-Limit-Remaining": "3", "ratelimit-reset": "9"}, 9.0),
])
def test_a_nearly_spent_minute_allowance_asks_to_hold_the_target_until_it_resets(zd: FakeZendesk, quota, hold_s):
    zd.create_ticket(quota=quota)
    assert adapter().deliver(ctx(minimal_packet())).slow_down_s == hold_s


def test_an_update_reads_the_allowance_too(zd: FakeZendesk) -> None:
    zd.update_ticket(quota={"ratelimit-limit": "400", "ratelimit-remaining": "3", "ratelimit-reset": "12"})
    link = Link(vendor_id="77120", url="https://acme.zendesk.com/agent/tickets/77120")
    outcome = adapter().deliver(ctx(minimal_packet(), link=link))
    assert (outcome.status, outcome.slow_down_s) == ("updated", 12.0)


def test_link_present_adds_a_comment_instead_of_a_second_ticket(zd: FakeZendesk) -> None:
    zd.update_ticket(77120)  # no POST route: a create would fail the test

    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))

    assert (outcome.status, outcome.vendor_id, outcome.url) == (
        "updated", "77120", "https://acme.zendesk.com/agent/tickets/77120")
    [body] = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    # Said plainly, an agent does not take the second handoff's brief for a repeat of the first.
    again = "<p><em>Handed off again: the conversation came back to a person (handoff hnd_01TESTHANDOFF0000000000000).</em></p>"
    assert body["ticket"]["comment"] == {"html_body": again + ctx().brief.html, "public": False}
    assert set(body["ticket"]) == {"comment"}  # nothing the agent set is overwritten
    # The tags by Add Tags, before the note: Update Ticket takes `tags` as the whole list and
    # documents no `additional_tags` (they were sent there, and may never have reached the ticket).
    [tags] = zd.json_bodies("PUT", "/api/v2/tickets/77120/tags")
    assert set(tags) == {"tags"} and "handoff" in tags["tags"]
    assert [call.request.url.rsplit("/", 1)[-1] for call in zd.rsps.calls] == ["tags", "77120.json"]
    zd.assert_ticket_requests_valid()


def test_messages_behind_the_ticket_are_not_announced_as_a_handoff_again() -> None:
    # A batch the ticket is behind carries the whole brief (a full Brief, not FollowUpBrief): it
    # opened with "Handed off again … (handoff msg_…)", calling its messages a handoff; then with
    # nothing saying why the whole brief was there again (a review).
    packet = full_packet(follow_up={"handoff_id": "hnd_01ORIGINAL", "first": 3})
    batch = ctx(packet, handoff_id="msg_01BATCH", link=Link(vendor_id="77120"))
    assert batch.brief.follow_up is None
    assert batch.handed_off_again == ("Messages the customer sent while handoff hnd_01ORIGINAL waited. An earlier "
                                      "batch of them did not reach this ticket, so everything is here again.")
    html_body = adapter().render(batch)["ticket"]["comment"]["html_body"]
    assert "Handed off again" not in html_body and "An earlier batch of them did not reach this ticket" in html_body


def test_an_urgent_return_raises_the_tickets_priority_and_nothing_lowers_it() -> None:
    urgent = ctx(link=Link(vendor_id="77120"), assignment={"priority": "urgent", "team": "support"})
    assert adapter().render(urgent)["ticket"]["priority"] == "urgent"
    high = ctx(link=Link(vendor_id="77120"), assignment={"priority": "high", "team": "support"})
    assert "priority" not in adapter().render(high)["ticket"]  # the ticket's own may be higher: left as it is
    # `urgent: null` (no priority on new tickets) leaves the ticket's own: a PUT of null cleared it.
    assert "priority" not in adapter(priority={"urgent": None}).render(urgent)["ticket"]
    # A review: mapped lower than Zendesk's top (`urgent: high`), an urgent return sent `high` and took
    # the urgent an agent had set down. Only urgent itself cannot lower anything.
    lower = {"low": "low", "normal": "normal", "high": "high", "urgent": "high"}
    assert "priority" not in adapter(priority=lower).render(urgent)["ticket"]
    assert adapter(priority=lower).render(ctx(assignment={"priority": "urgent", "team": "support"}))[
        "ticket"]["priority"] == "high"  # a new ticket takes the mapping as it is


@pytest.mark.parametrize("caught_up", [True, False])  # the ticket has everything before it, or is behind
def test_messages_sent_while_waiting_add_a_comment_and_change_nothing_an_agent_set(zd: FakeZendesk,
                                                                                  caught_up: bool) -> None:
    # A review: a batch carries its handoff's routing, and each one re-raised an urgent handoff's
    # priority an agent had lowered after triage (the customer's "thanks" undid it), and re-added the
    # routing tags an agent had removed. Only a new handoff may raise priority or add routing tags.
    packet = full_packet(follow_up={"handoff_id": "hnd_01ORIGINAL", "first": 3})
    urgent = {**ASSIGNMENT, "priority": "urgent", "team": "escalations"}
    batch = ctx(packet, handoff_id="msg_01BATCH", link=Link(vendor_id="77120"), assignment=urgent)
    if caught_up:
        batch = replace(batch, brief=render_brief(packet, "msg_01BATCH", update=True, assignment=urgent))
    zd.update_ticket(77120)

    assert adapter().deliver(batch).status == "updated"

    [body] = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert set(body["ticket"]) == {"comment"}  # no priority, no tags: the agent's stay as they set them
    assert "msg_01BATCH" in body["ticket"]["comment"]["html_body"]


def test_a_closed_ticket_gets_a_follow_up_ticket_with_the_whole_brief(zd: FakeZendesk) -> None:
    """Zendesk refuses every update of a closed ticket, for good: the conversation came back after
    it closed. Failing would lose this handoff and every later one of the conversation."""
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.audits(77120)  # closed, not merged into another ticket
    zd.create_ticket({"id": 1002})
    packet = {**full_packet(), "follow_up": {"handoff_id": "hnd_01TESTHANDOFF0000000000000", "first": 3}}
    short = replace(ctx(packet, link=Link(vendor_id="77120")), brief=render_brief(packet, "msg_1", update=True))

    outcome = adapter().deliver(short)

    assert (outcome.status, outcome.vendor_id) == ("created", "1002")
    [created] = zd.json_bodies("POST", TICKETS)
    assert created["ticket"]["via_followup_source_id"] == 77120  # Zendesk links the two for the agent
    # the short form of a follow-up assumed the old ticket held the rest: the new one carries it all
    assert created["ticket"]["comment"]["html_body"] == render_brief(
        packet, "hnd_01TESTHANDOFF0000000000000", assignment=short.assignment).html
    assert outcome.payload["ticket"]["via_followup_source_id"] == 77120


def test_a_ticket_merged_into_an_open_one_is_updated_there_not_followed_up(zd: FakeZendesk) -> None:
    # A review: an agent merged the conversation's ticket into the customer's other open one (the
    # merge closes it); the next handoff met it closed and opened a follow-up — a duplicate of the
    # ticket agents were already working on. The merge is in the closed ticket's audits.
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.audits(77120, merged_into=88001)
    zd.update_ticket(88001)

    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))

    assert (outcome.status, outcome.vendor_id) == ("updated", "88001")
    assert outcome.url == "https://acme.zendesk.com/agent/tickets/88001"
    assert outcome.moved_from == "77120"  # the outbox links the conversation to 88001 from now on
    [audits] = zd.calls("GET", "/api/v2/tickets/77120/audits.json")
    assert audits.request.params == {"sort_order": "desc"}  # the merge that closed it is among the newest
    [note] = zd.json_bodies("PUT", "/api/v2/tickets/88001.json")
    assert "Handed off again" in note["ticket"]["comment"]["html_body"]
    assert "handoff" in zd.json_bodies("PUT", "/api/v2/tickets/88001/tags")[0]["tags"]
    assert zd.calls("POST", TICKETS) == []


@pytest.mark.parametrize(("caught_up", "taken"), [(True, False), (False, False), (True, True)])
def test_messages_on_the_ticket_the_conversations_was_merged_into_say_the_merge_and_mark_theirs_new(
        zd: FakeZendesk, caught_up: bool, taken: bool) -> None:
    # A review: a batch of messages re-sent to the merge target with the whole brief opened with "An
    # earlier batch of them did not reach this ticket" — nothing had failed, the brief and the earlier
    # messages were on the ticket merged away — and the batch's messages were marked nowhere in it.
    follow_up = {"handoff_id": "hnd_01ORIGINAL", "first": 3, **({"taken": True} if taken else {})}
    packet = full_packet(follow_up=follow_up)
    batch = ctx(packet, handoff_id="msg_01BATCH", link=Link(vendor_id="77120"))
    if caught_up:
        batch = replace(batch, brief=render_brief(packet, "msg_01BATCH", update=True, assignment=batch.assignment))
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.audits(77120, merged_into=88001)
    zd.update_ticket(88001)

    assert adapter().deliver(batch).vendor_id == "88001"

    [note] = zd.json_bodies("PUT", "/api/v2/tickets/88001.json")
    html_body = note["ticket"]["comment"]["html_body"]
    said = "since an agent took handoff hnd_01ORIGINAL" if taken else "while handoff hnd_01ORIGINAL waited"
    assert html_body.startswith(f"<p><em>Messages the customer sent {said} (2 messages, marked [new] in the "
                                "transcript). This conversation&#x27;s ticket 77120 was merged into this one, so the "
                                "handoff&#x27;s whole brief is here with them.</em></p>"), html_body[:400]
    assert "did not reach" not in html_body
    rows = re.findall(r"<p><small>[\d:]+</small> (.*?)</p>", html_body)
    assert [row.startswith("<strong>[new]</strong>") for row in rows] == [False, False, False, True, True]


@pytest.mark.parametrize("target", ["closed", "deleted", "forbidden"])
def test_a_merge_target_that_takes_no_update_gets_the_follow_up_of_the_closed_ticket(zd: FakeZendesk,
                                                                                     target: str) -> None:
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.audits(77120, merged_into=88001)
    status, answer = {"closed": (422, "error-422-closed-ticket.json"), "deleted": (404, "error-404-ticket.json"),
                      "forbidden": (403, "error-403-forbidden.json")}[target]
    zd.error("PUT", "/api/v2/tickets/88001.json", status, answer)
    if target == "closed":
        zd.audits(88001)  # closed, not merged on
    zd.create_ticket({"id": 1002})

    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))

    assert (outcome.status, outcome.vendor_id, outcome.moved_from) == ("created", "1002", None)
    assert zd.json_bodies("POST", TICKETS)[0]["ticket"]["via_followup_source_id"] == 77120  # the conversation's own


def test_a_closed_ticket_whose_audits_may_not_be_read_gets_its_follow_up(zd: FakeZendesk) -> None:
    # An OAuth token without Zendesk's global `read` scope may not list audits (403); the follow-up
    # is what the conversation got before merges were looked for.
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.error("GET", "/api/v2/tickets/77120/audits.json", 403, "error-403-forbidden.json")
    zd.create_ticket({"id": 1002})

    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))

    assert (outcome.status, outcome.vendor_id) == ("created", "1002")
    assert zd.json_bodies("POST", TICKETS)[0]["ticket"]["via_followup_source_id"] == 77120


def test_a_closed_ticket_whose_audits_failed_to_come_is_retried_not_followed_up(zd: FakeZendesk) -> None:
    # A review: one 503 (or timeout) on the audits opened the follow-up, a duplicate of the merge
    # target, and the conversation was linked to it from then on.
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.error("GET", "/api/v2/tickets/77120/audits.json", 503, "error-503.html")

    with pytest.raises(TransientError):
        adapter().deliver(ctx(link=Link(vendor_id="77120")))

    assert zd.calls("POST", TICKETS) == []


def test_merges_made_in_steps_are_followed_to_the_open_ticket(zd: FakeZendesk) -> None:
    # A review: 77120 merged into 88001, then 88001 into 99001, while the conversation was quiet:
    # the next handoff met 88001 closed and opened a follow-up.
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.audits(77120, merged_into=88001)
    zd.error("PUT", "/api/v2/tickets/88001.json", 422, "error-422-closed-ticket.json")
    zd.audits(88001, merged_into=99001)
    zd.update_ticket(99001)

    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))

    assert (outcome.status, outcome.vendor_id, outcome.moved_from) == ("updated", "99001", "77120")
    assert zd.calls("POST", TICKETS) == []


def test_merges_that_lead_back_to_a_ticket_seen_end_in_the_follow_up(zd: FakeZendesk) -> None:
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.audits(77120, merged_into=88001)
    zd.error("PUT", "/api/v2/tickets/88001.json", 422, "error-422-closed-ticket.json")
    zd.audits(88001, merged_into=77120)
    zd.create_ticket({"id": 1002})

    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))

    assert (outcome.status, outcome.vendor_id) == ("created", "1002")
    assert len(zd.calls("PUT", "/api/v2/tickets/77120.json")) == 1  # not tried again


def test_a_note_on_a_merge_target_that_timed_out_is_found_there_not_posted_twice(zd: FakeZendesk) -> None:
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.audits(77120, merged_into=88001)
    zd.raises("PUT", "/api/v2/tickets/88001.json", requests.exceptions.ReadTimeout("read timed out"))
    link = Link(vendor_id="77120")
    with pytest.raises(OutcomeUnknown) as unknown:
        adapter().deliver(ctx(link=link))
    assert (unknown.value.sent_to["merged_into"], unknown.value.sent_to["merged_from"]) == ("88001", "77120")
    context = ctx(link=link, outcome_unknown=True, attempt=2, sent_to=unknown.value.sent_to)
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/88001/comments.json", json={"comments": [
        {"id": 1, "html_body": f"<p>Handoff {context.handoff_id} from support-bot</p>"}]})
    zd.show_ticket(88001)

    outcome = adapter().deliver(context)

    assert (outcome.status, outcome.vendor_id, outcome.moved_from) == ("updated", "88001", "77120")
    assert len(zd.calls("PUT", "/api/v2/tickets/88001.json")) == 1
    # The link moved on meanwhile (a later handoff's): the link's ticket is not what it moves from — it
    # moved a link already on 88001 onto itself, or one moved further back to 88001 (a review).
    for moved, sent_to in ((Link(vendor_id="99001"), unknown.value.sent_to), (Link(vendor_id="88001"),
                                                                             {"merged_into": "88001"})):
        found = adapter().deliver(ctx(link=moved, outcome_unknown=True, attempt=3, sent_to=sent_to))
        assert (found.vendor_id, found.moved_from) == ("88001", "77120" if "merged_from" in sent_to else None)


def test_a_closed_ticket_another_delivery_is_replacing_is_waited_for_not_replaced_twice(zd: FakeZendesk) -> None:
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.audits(77120)  # closed, not merged
    asked: list[tuple[str, bool]] = []
    busy = ctx(link=Link(vendor_id="77120"), take_replacement=lambda *gone: asked.append(gone) and False)
    with pytest.raises(ReplacementUnderway, match="another delivery of this conversation is opening the new one"):
        adapter().deliver(busy)
    assert asked == [("77120", True)]
    assert zd.calls("POST", TICKETS) == []


def test_a_deleted_ticket_gets_a_new_ticket_naming_nothing(zd: FakeZendesk) -> None:
    zd.error("PUT", "/api/v2/tickets/77120.json", 404, "error-404-ticket.json")
    zd.create_ticket({"id": 1002})
    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))
    assert (outcome.status, outcome.vendor_id) == ("created", "1002")
    assert "via_followup_source_id" not in zd.json_bodies("POST", TICKETS)[0]["ticket"]


def test_tags_zendesk_refuses_leave_the_note_to_go_without_them_and_the_receipt_says_so(zd: FakeZendesk) -> None:
    zd.error("PUT", "/api/v2/tickets/77120/tags", 422, "error-422-record-invalid.json")  # before the ticket's own
    zd.update_ticket(77120)

    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))

    assert (outcome.status, outcome.vendor_id) == ("updated", "77120")
    [note] = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert "Handed off again" in note["ticket"]["comment"]["html_body"]
    [refused] = [entry for entry in outcome.receipt["dropped"] if "Zendesk refused the tags" in entry["reason"]]
    assert refused["part"] == "mapping" and "handoff" in refused["reason"] and "without them" in refused["reason"]


def test_a_repeats_note_goes_without_a_field_zendesk_refuses_and_the_receipt_names_it(zd: FakeZendesk) -> None:
    # A review: a bot sending its agent with every handoff (`vendor_extra.zendesk.assignee_id`), the
    # agent since moved to another group — the repeat's whole note, brief and transcript, failed for
    # good, where a new ticket goes without the field.
    refused = {"error": "RecordInvalid", "description": "Record validation errors", "details": {
        "assignee": [{"description": "Assignee: is not a member of the group", "error": "InvalidValue"}]}}
    zd.add_tags(77120)
    zd.rsps.add("PUT", zd.origin + "/api/v2/tickets/77120.json", status=422, json=refused)
    zd.update_ticket(77120)

    outcome = adapter().deliver(ctx(full_packet(vendor_extra={"zendesk": {"assignee_id": 381156009921}}),
                                    link=Link(vendor_id="77120")))

    assert (outcome.status, outcome.vendor_id) == ("updated", "77120")
    first, second = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert first["ticket"]["assignee_id"] == 381156009921
    assert set(second["ticket"]) == {"comment"} and second["ticket"]["comment"] == first["ticket"]["comment"]
    [left_out] = [entry for entry in outcome.receipt["dropped"] if entry["part"] == "vendor_extra"]
    assert left_out["reason"].startswith("Zendesk refused vendor_extra.zendesk.assignee_id (")
    assert "not a member of the group" in left_out["reason"] and left_out["reason"].endswith(
        "the note was added without it")


@pytest.mark.parametrize("tags", [["vip_callback", "handoff"], "vip_callback handoff"])
def test_a_bots_tags_on_a_repeat_are_added_to_the_tickets_never_replacing_them(zd: FakeZendesk, tags: Any) -> None:
    # A review: `vendor_extra.zendesk.tags` went into Update Ticket, where Zendesk takes `tags` as the
    # whole list — sent after Add Tags, it took every tag off the ticket (ours, agents', triggers').
    zd.add_tags(77120)
    zd.update_ticket(77120)

    outcome = adapter().deliver(ctx(full_packet(vendor_extra={"zendesk": {"tags": tags, "ticket_form_id": 3}}),
                                    link=Link(vendor_id="77120")))

    assert outcome.status == "updated" and not outcome.receipt["dropped"]
    [added] = zd.json_bodies("PUT", "/api/v2/tickets/77120/tags")
    assert added["tags"][-1] == "vip_callback" and added["tags"].count("handoff") == 1 and "chatbot" in added["tags"]
    [note] = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert "tags" not in note["ticket"] and note["ticket"]["ticket_form_id"] == 3


def test_a_note_refused_for_anything_else_is_not_sent_again(zd: FakeZendesk) -> None:
    zd.add_tags(77120)
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-record-invalid.json")
    with pytest.raises(RejectedError):
        adapter().deliver(ctx(full_packet(vendor_extra={"zendesk": {"assignee_id": 381156009921}}),
                              link=Link(vendor_id="77120")))
    assert len(zd.json_bodies("PUT", "/api/v2/tickets/77120.json")) == 1


@pytest.mark.parametrize("status", [403, 401])
def test_tags_forbidden_leave_the_note_to_go_and_bad_credentials_still_stop_it(zd: FakeZendesk, status: int) -> None:
    # A review: a custom role that may not edit tags (403) stopped the repeat's note as a credentials
    # failure; a 401 is the credentials, which the note would meet too.
    zd.rsps.add("PUT", zd.origin + "/api/v2/tickets/77120/tags", status=status,
                json={"error": "Forbidden", "description": "You do not have access to this page."})
    if status == 401:
        with pytest.raises(AuthError):
            adapter().deliver(ctx(link=Link(vendor_id="77120")))
        return
    zd.update_ticket(77120)
    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))
    assert outcome.status == "updated" and zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert any("Zendesk refused the tags" in entry["reason"] for entry in outcome.receipt["dropped"])


def test_tags_refused_before_a_note_that_timed_out_are_still_in_the_receipt_of_the_attempt_finding_it(
        zd: FakeZendesk) -> None:
    # A review: the refusal was only in the reply the timeout took away; the attempt that found the
    # note told the bot that everything arrived.
    link = Link(vendor_id="77120", url="https://acme.zendesk.com/agent/tickets/77120")
    zd.error("PUT", "/api/v2/tickets/77120/tags", 422, "error-422-record-invalid.json")
    zd.raises("PUT", "/api/v2/tickets/77120.json", requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown) as unknown:
        adapter().deliver(ctx(link=link))
    context = ctx(link=link, outcome_unknown=True, attempt=2, sent_to=unknown.value.sent_to)
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120/comments.json", status=200, json={"comments": [
        {"id": 1, "html_body": f"<p>Handoff {context.handoff_id} from support-bot</p>"}]})
    zd.show_ticket(77120)

    outcome = adapter().deliver(context)

    assert outcome.status == "updated"
    assert any("Zendesk refused the tags" in entry["reason"] for entry in outcome.receipt["dropped"])


def test_a_closed_ticket_refusing_the_tags_gets_its_successor_and_no_note(zd: FakeZendesk) -> None:
    # The tags go first: Zendesk refusing them because the ticket is closed is the ticket gone, as
    # a refused note is, not tags left out of a note that could never be added.
    zd.error("PUT", "/api/v2/tickets/77120/tags", 422, "error-422-closed-ticket.json")
    zd.audits(77120)  # closed, not merged
    zd.create_ticket({"id": 1002})

    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))

    assert (outcome.status, outcome.vendor_id) == ("created", "1002")
    assert zd.calls("PUT", "/api/v2/tickets/77120.json") == []
    assert zd.json_bodies("POST", TICKETS)[0]["ticket"]["via_followup_source_id"] == 77120


def test_another_refusal_of_an_update_is_still_a_refusal(zd: FakeZendesk) -> None:
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-record-invalid.json")
    with pytest.raises(RejectedError, match="Email is not properly formatted"):
        adapter().deliver(ctx(link=Link(vendor_id="77120")))
    assert zd.calls("POST", TICKETS) == []


def test_a_follow_up_ticket_whose_create_timed_out_is_found_not_made_twice(zd: FakeZendesk) -> None:
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-closed-ticket.json")
    zd.audits(77120)  # closed, not merged
    zd.raises("POST", TICKETS, requests.exceptions.ReadTimeout("read timed out"))
    target, closed = adapter(), Link(vendor_id="77120")
    with pytest.raises(OutcomeUnknown):
        target.deliver(ctx(link=closed))
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120/comments.json", json={"comments": []})
    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000")

    outcome = target.deliver(ctx(link=closed, outcome_unknown=True, attempt=2))

    assert (outcome.status, outcome.vendor_id) == ("created", "1001")
    assert len(zd.calls("POST", TICKETS)) == 1


def test_a_ticket_deleted_while_an_update_was_unknown_gets_the_new_ticket_an_attempt_made(zd: FakeZendesk) -> None:
    """Attempt 1: 404 on the update, the new ticket's create times out. Attempt 2 must not fail
    on the deleted ticket's comments: it finds the new ticket by external_id instead."""
    zd.error("PUT", "/api/v2/tickets/77120.json", 404, "error-404-ticket.json")
    zd.raises("POST", TICKETS, requests.exceptions.ReadTimeout("read timed out"))
    target, deleted = adapter(), Link(vendor_id="77120")
    with pytest.raises(OutcomeUnknown):
        target.deliver(ctx(link=deleted))
    zd.error("GET", "/api/v2/tickets/77120/comments.json", 404, "error-404-ticket.json")
    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000")

    outcome = target.deliver(ctx(link=deleted, outcome_unknown=True, attempt=2))

    assert (outcome.status, outcome.vendor_id) == ("created", "1001")
    assert len(zd.calls("POST", TICKETS)) == 1


def test_a_timed_out_note_on_a_solved_ticket_found_later_still_reopens_it(zd: FakeZendesk) -> None:
    context = ctx(link=Link(vendor_id="77120"), outcome_unknown=True, attempt=2)
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120/comments.json", json={"comments": [
        {"id": 1, "html_body": f"<p>Handoff {context.handoff_id} from support-bot</p>"}]})
    solved = fixture("tickets-by-external-id.json")["tickets"][0] | {"id": 77120, "status": "solved"}
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120.json", json={"ticket": solved})
    zd.update_ticket(77120)

    outcome = adapter().deliver(context)

    assert (outcome.status, outcome.reply) == ("updated", {"found_by": "comment", "reopened": True})
    assert zd.json_bodies("PUT", "/api/v2/tickets/77120.json") == [{"ticket": {"status": "open"}}]


@pytest.mark.parametrize("status", ["solved", "pending"])
@pytest.mark.parametrize("reopen", [True, False])
def test_a_note_on_a_solved_or_pending_ticket_reopens_it_unless_the_mapping_says_not(
        zd: FakeZendesk, reopen: bool, status: str) -> None:
    """A private note leaves a solved ticket solved — out of every queue until it closes — and a
    pending one pending: the agent waits for a customer who has come back."""
    zd.update_ticket(77120, status=status)
    if reopen:
        zd.update_ticket(77120)
    outcome = adapter(reopen_solved=reopen).deliver(ctx(link=Link(vendor_id="77120")))
    assert outcome.status == "updated"
    bodies = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert bodies[1:] == ([{"ticket": {"status": "open"}}] if reopen else [])
    assert bool(outcome.reply.get("reopened")) is reopen
    # Reopened, its assignee has it again; left solved or pending, nobody waits on it (`Sent.holder`).
    assert outcome.holder == ("381156009921" if reopen else None)


def test_a_note_on_an_open_ticket_says_who_has_it_also_when_a_retry_finds_the_note(zd: FakeZendesk) -> None:
    zd.update_ticket(77120)
    assert adapter().deliver(ctx(link=Link(vendor_id="77120"))).holder == "381156009921"
    context = ctx(link=Link(vendor_id="77120"), outcome_unknown=True, attempt=2)
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120/comments.json", json={"comments": [
        {"id": 1, "html_body": f"<p>Handoff {context.handoff_id} from support-bot</p>"}]})
    ticket = fixture("tickets-by-external-id.json")["tickets"][0] | {"id": 77120, "status": "open",
                                                                       "assignee_id": 381156009921}
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120.json", json={"ticket": ticket})
    found = adapter(reopen_solved=False).deliver(context)  # the ticket is read for who has it all the same
    assert (found.reply, found.holder) == ({"found_by": "comment"}, "381156009921")


def test_a_note_on_a_ticket_on_hold_leaves_it_on_hold(zd: FakeZendesk) -> None:
    zd.update_ticket(77120, status="hold")  # waiting for a third party, not the customer
    outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))
    assert outcome.status == "updated" and "reopened" not in outcome.reply
    assert len(zd.json_bodies("PUT", "/api/v2/tickets/77120.json")) == 1


def _note_found(zd: FakeZendesk, context: Any, status: str = "solved", **fields: Any) -> None:
    """What an attempt after an unknown outcome reads: the note among the comments, the ticket."""
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120/comments.json", json={"comments": [
        {"id": 1, "html_body": f"<p>Handoff {context.handoff_id} from support-bot</p>"}]})
    ticket = fixture("tickets-by-external-id.json")["tickets"][0] | {"id": 77120, "status": status, **fields}
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120.json", json={"ticket": ticket})


@pytest.mark.parametrize(("status", "reply", "paused"), [(429, "error-429.json", True), (503, "error-503.html", False)])
def test_a_solved_ticket_whose_reopening_failed_for_now_is_reopened_by_the_next_attempt_without_a_second_note(
        zd: FakeZendesk, status: int, reply: str, paused: bool) -> None:
    """The note is in, the ticket still solved — in no queue. Reported delivered, no agent saw it."""
    zd.update_ticket(77120, status="solved")
    zd.error("PUT", "/api/v2/tickets/77120.json", status, reply, headers={"Retry-After": "30"})
    target, first = adapter(), ctx(link=Link(vendor_id="77120"))
    with pytest.raises(OutcomeUnknown) as caught:
        target.deliver(first)
    assert isinstance(caught.value, RateLimited) is paused  # a 429 still pauses the whole target
    second = ctx(link=Link(vendor_id="77120"), outcome_unknown=True, attempt=2)
    _note_found(zd, second)
    zd.update_ticket(77120)

    outcome = target.deliver(second)

    assert (outcome.status, outcome.reply) == ("updated", {"found_by": "comment", "reopened": True})
    bodies = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert ["comment" in body["ticket"] for body in bodies] == [True, False, False]  # one note, two reopenings


def test_a_solved_ticket_zendesk_refuses_to_reopen_keeps_the_note_and_is_not_retried(
        zd: FakeZendesk, caplog: pytest.LogCaptureFixture) -> None:
    zd.update_ticket(77120, status="solved")
    zd.error("PUT", "/api/v2/tickets/77120.json", 422, "error-422-record-invalid.json")
    with caplog.at_level(logging.WARNING, logger="adapters.zendesk"):
        outcome = adapter().deliver(ctx(link=Link(vendor_id="77120")))
    assert outcome.status == "updated" and "reopened" not in outcome.reply
    assert [r.message for r in caplog.records] == ["solved ticket not reopened"]


URGENT_IS_HIGH = {"low": "low", "normal": "normal", "high": "high", "urgent": "high"}  # an org without Zendesk's urgent
TICKET_77120 = "/api/v2/tickets/77120.json"


def _urgent_return(**kwargs: Any) -> Any:
    return ctx(link=Link(vendor_id="77120"), assignment={**ASSIGNMENT, "priority": "urgent"}, **kwargs)


@pytest.mark.parametrize(("own", "raised"), [("normal", "high"), ("low", "high"), (None, "high"),
                                             ("high", None), ("urgent", None)])
def test_an_urgent_return_mapped_below_urgent_raises_the_ticket_after_its_note_and_never_lowers_it(
        zd: FakeZendesk, own: str | None, raised: str | None) -> None:
    # A review: with `urgent: high`, an urgent return sent no priority at all (so as not to take an
    # agent's urgent down to high), and a ticket at low or normal stayed there. The note's reply
    # shows the ticket's own priority: raised after it, only where that is a raise.
    zd.update_ticket(77120, priority=own)
    if raised:
        zd.update_ticket(77120, priority=raised)

    outcome = adapter(priority=URGENT_IS_HIGH).deliver(_urgent_return())

    assert outcome.status == "updated" and outcome.reply.get("raised_priority") == raised
    note, *after = zd.json_bodies("PUT", TICKET_77120)
    assert "priority" not in note["ticket"] and "comment" in note["ticket"]
    assert after == ([{"ticket": {"priority": raised}}] if raised else [])


def test_an_urgent_return_mapped_to_urgent_goes_with_the_note_as_before(zd: FakeZendesk) -> None:
    zd.update_ticket(77120, priority="urgent")  # Zendesk answers with the priority the note's PUT set
    outcome = adapter().deliver(_urgent_return())
    [note] = zd.json_bodies("PUT", TICKET_77120)  # no second call: urgent is Zendesk's top
    assert note["ticket"]["priority"] == "urgent" and "raised_priority" not in outcome.reply


def test_messages_after_an_urgent_handoff_mapped_below_urgent_raise_nothing(zd: FakeZendesk) -> None:
    packet = full_packet(follow_up={"handoff_id": "hnd_01ORIGINAL", "first": 3})
    batch = _urgent_return(packet=packet, handoff_id="msg_01BATCH")
    zd.update_ticket(77120, priority="low")  # an agent lowered it since: theirs to decide
    outcome = adapter(priority=URGENT_IS_HIGH).deliver(batch)
    assert outcome.status == "updated" and "raised_priority" not in outcome.reply
    [body] = zd.json_bodies("PUT", TICKET_77120)
    assert set(body["ticket"]) == {"comment"}


def test_a_non_urgent_return_raises_nothing(zd: FakeZendesk) -> None:
    zd.update_ticket(77120, priority="low")
    adapter(priority=URGENT_IS_HIGH).deliver(ctx(link=Link(vendor_id="77120")))  # routed high
    assert len(zd.json_bodies("PUT", TICKET_77120)) == 1


def test_a_solved_ticket_an_urgent_return_raises_is_reopened_and_raised_in_one_call(zd: FakeZendesk) -> None:
    zd.update_ticket(77120, status="solved", priority="normal")
    zd.update_ticket(77120, priority="high")
    outcome = adapter(priority=URGENT_IS_HIGH).deliver(_urgent_return())
    assert zd.json_bodies("PUT", TICKET_77120)[1:] == [{"ticket": {"status": "open", "priority": "high"}}]
    assert (outcome.reply["reopened"], outcome.reply["raised_priority"]) == (True, "high")
    assert outcome.holder == "381156009921"


def test_a_raise_zendesk_refuses_keeps_the_note_and_is_not_retried(zd: FakeZendesk,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    zd.update_ticket(77120, priority="normal")
    zd.error("PUT", TICKET_77120, 422, "error-422-record-invalid.json")
    with caplog.at_level(logging.WARNING, logger="adapters.zendesk"):
        outcome = adapter(priority=URGENT_IS_HIGH).deliver(_urgent_return())
    assert outcome.status == "updated" and "raised_priority" not in outcome.reply
    assert [r.message for r in caplog.records] == ["ticket's priority not raised"]


@pytest.mark.parametrize("status", ["open", "solved"])
def test_a_raise_that_failed_for_now_is_made_by_the_next_attempt_without_a_second_note(
        zd: FakeZendesk, status: str) -> None:
    zd.update_ticket(77120, status=status, priority="normal")
    zd.error("PUT", TICKET_77120, 503, "error-503.html")
    target = adapter(priority=URGENT_IS_HIGH)
    with pytest.raises(OutcomeUnknown, match="raised to high"):
        target.deliver(_urgent_return())
    second = _urgent_return(outcome_unknown=True, attempt=2)
    _note_found(zd, second, status=status, priority="normal")
    zd.update_ticket(77120, priority="high")

    outcome = target.deliver(second)

    wanted = {"status": "open", "priority": "high"} if status == "solved" else {"priority": "high"}
    assert outcome.status == "updated" and outcome.reply["raised_priority"] == "high"
    bodies = zd.json_bodies("PUT", TICKET_77120)
    assert ["comment" in body["ticket"] for body in bodies] == [True, False, False]  # one note
    assert bodies[1:] == [{"ticket": wanted}] * 2


def test_a_timed_out_note_on_the_customers_open_ticket_is_not_posted_again(zd: FakeZendesk) -> None:
    """`update_open_ticket`: the first attempt's PUT timed out after Zendesk took it. The next
    finds no ticket of its own (external_id), finds the open ticket again — and must look for its
    note there before commenting (comments take no idempotency key)."""
    zd.search()
    zd.raises("PUT", "/api/v2/tickets/77120.json", requests.exceptions.ReadTimeout("read timed out"))
    target = adapter(update_open_ticket=True)
    with pytest.raises(OutcomeUnknown):
        target.deliver(ctx())
    second = ctx(outcome_unknown=True, attempt=2)
    zd.tickets_by_external_id(second.handoff_id, found=False)
    _note_found(zd, second, status="open")

    outcome = target.deliver(second)

    assert (outcome.status, outcome.vendor_id, outcome.reply["found_by"]) == ("updated", "77120", "comment")
    assert len(zd.calls("PUT", "/api/v2/tickets/77120.json")) == 1 and zd.calls("POST", TICKETS) == []
    # The newest 100 comments, Zendesk's largest page: 20 missed the note on a busy ticket.
    assert "per_page=100" in zd.calls("GET", "/api/v2/tickets/77120/comments.json")[0].request.url


def test_oauth_token_is_sent_as_bearer_without_an_email(zd: FakeZendesk) -> None:
    zd.create_ticket()
    adapter(Settings(zendesk_subdomain="acme", zendesk_oauth_token="oauth-abc")).deliver(ctx())
    assert zd.calls("POST", TICKETS)[0].request.headers["Authorization"] == "Bearer oauth-abc"


def test_base_url_override_is_used_for_the_api_and_agent_links_stay_the_accounts() -> None:
    # A proxy's address in ZENDESK_BASE_URL became every ticket link: an internal host no agent can open.
    settings = replace(SETTINGS, zendesk_base_url="http://127.0.0.1:8089/zd/")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        zd = FakeZendesk(rsps, origin="http://127.0.0.1:8089/zd")
        zd.create_ticket()
        zd.search(results=[{**zd_fixture_ticket(), "assignee_id": 381156009921}])
        zd.show_user()
        target = adapter(settings)
        outcome = target.deliver(ctx())
        agent = target.previous_agent(full_packet())
    assert outcome.url == "https://acme.zendesk.com/agent/tickets/1001"
    # What a ticket recorded from Zendesk's own event is given (the outbox's `_taken_ticket`): the same link.
    assert target.ticket_url("1001") == outcome.url
    assert all(c.request.url.startswith("http://127.0.0.1:8089/zd/") for c in rsps.calls)
    assert agent == {"id": "381156009921", "name": "Sam Okafor", "email": "sam@acme.example"}


def zd_fixture_ticket() -> dict[str, Any]:
    from tests.fakes.zendesk import fixture

    return fixture("search-open-tickets.json")["results"][0]


# ---- no duplicates --------------------------------------------------------------------------------


def test_timeout_after_the_vendor_acted_is_found_by_external_id_not_reposted(zd: FakeZendesk) -> None:
    zd.raises("POST", TICKETS, requests.exceptions.ReadTimeout("read timed out (read timeout=15)"))
    target = adapter()

    with pytest.raises(OutcomeUnknown):
        target.deliver(ctx())
    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000")
    outcome = target.deliver(ctx(outcome_unknown=True, attempt=2))

    assert (outcome.status, outcome.vendor_id) == ("created", "1001")
    assert outcome.url == "https://acme.zendesk.com/agent/tickets/1001"
    assert len(zd.calls("POST", TICKETS)) == 1


def test_a_bots_own_external_id_finds_only_the_ticket_this_handoff_made(zd: FakeZendesk) -> None:
    # A vendor review: with `vendor_extra.zendesk.external_id` (a bot's conversation id), the lookup
    # after a timed-out create took the oldest ticket bearing it — last month's, closed — for the new
    # one: `created`, and the handoff on a ticket nobody will see.
    from ulid import ULID

    handoff_id = f"hnd_{ULID.from_timestamp(1795000000.0)}"  # 2026-11-18 (an int is read as milliseconds)
    packet = full_packet(vendor_extra={"zendesk": {"external_id": "conv-42"}})
    old = {**fixture("tickets-by-external-id.json")["tickets"][0], "id": 900, "status": "closed",
           "external_id": "conv-42", "created_at": "2026-10-01T09:00:00Z", "description": "An earlier handoff"}
    made = {**old, "id": 1002, "status": "new", "created_at": "2026-11-18T08:20:00Z",
            "description": f"Why a person is needed … Handoff {handoff_id} from Acme Support Bot"}
    # Newest first: a hundred older tickets bearing it must not hide the new one.
    lookup = [matchers.query_param_matcher({"external_id": "conv-42", "sort_by": "created_at", "sort_order": "desc",
                                            "per_page": "100"})]
    zd.rsps.add("GET", zd.origin + TICKETS, json={"tickets": [old], "count": 1}, match=lookup)
    zd.create_ticket()
    outcome = adapter().deliver(ctx(packet, handoff_id=handoff_id, outcome_unknown=True, attempt=2))
    assert outcome.status == "created" and outcome.vendor_id != "900"
    assert len(zd.calls("POST", TICKETS)) == 1  # not found: made (with the same idempotency key)

    zd.rsps.replace("GET", zd.origin + TICKETS, json={"tickets": [old, made], "count": 2}, match=lookup)
    found = adapter().deliver(ctx(packet, handoff_id=handoff_id, outcome_unknown=True, attempt=3))
    assert (found.status, found.vendor_id) == ("created", "1002") and len(zd.calls("POST", TICKETS)) == 1


def test_unknown_outcome_not_found_resends_with_the_same_idempotency_key(zd: FakeZendesk) -> None:
    zd.raises("POST", TICKETS, requests.exceptions.ReadTimeout("read timed out"))
    target = adapter()
    with pytest.raises(OutcomeUnknown):
        target.deliver(ctx())
    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000", found=False)
    zd.create_ticket(replay=True)

    outcome = target.deliver(ctx(outcome_unknown=True, attempt=2))

    assert outcome.status == "created"
    keys = [c.request.headers["Idempotency-Key"] for c in zd.calls("POST", TICKETS)]
    assert keys == ["hnd_01TESTHANDOFF0000000000000:zendesk"] * 2
    assert outcome.reply["idempotency_lookup"] == "hit"


def test_idempotency_key_reused_with_another_body_is_an_unknown_outcome(zd: FakeZendesk) -> None:
    zd.error("POST", TICKETS, 400, "error-400-idempotency.json")
    with pytest.raises(OutcomeUnknown, match="IdempotentRequestError"):
        adapter().deliver(ctx())


def test_open_ticket_reused_when_mapping_asks(zd: FakeZendesk) -> None:
    packet = full_packet(customer={"name": "Dana", "email": "dana+billing@example.com"})
    zd.search(query="type:ticket requester:dana+billing@example.com status<solved")  # `+` encoded, not a space
    zd.update_ticket(77120)

    outcome = adapter(update_open_ticket=True).deliver(ctx(packet))

    assert (outcome.status, outcome.vendor_id) == ("updated", "77120")
    # The customer's open ticket, not this conversation's: its note says so, not "Handed off again"
    # (a Zendesk agent's review: an e-mail ticket about an invoice read as this chat's repeat).
    note = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")[-1]["ticket"]["comment"]["html_body"]
    assert "Handed off again" not in note
    assert note.startswith("<p><em>A new handoff from this customer (handoff hnd_01TESTHANDOFF0000000000000, "
                           "conversation ")


@pytest.mark.parametrize("email", ["*@bigcorp.com", "dana*@bigcorp.com", "a@b.com OR requester:c@d.com"])
def test_an_address_zendesk_search_would_read_as_syntax_is_not_looked_up(zd: FakeZendesk, email: str) -> None:
    # `*` is Zendesk search's wildcard: another customer's open ticket would get this brief.
    zd.create_ticket()
    outcome = adapter(update_open_ticket=True).deliver(ctx(full_packet(customer={"name": "M", "email": email})))
    assert outcome.status == "created" and zd.calls("GET", "/api/v2/search.json") == []


def test_open_ticket_search_failure_falls_back_to_create(zd: FakeZendesk, caplog: pytest.LogCaptureFixture) -> None:
    zd.error("GET", "/api/v2/search.json", 500, "error-503.html")
    zd.create_ticket()
    assert adapter(update_open_ticket=True).deliver(ctx()).status == "created"
    assert "open-ticket search failed" in caplog.text


# ---- failures ---------------------------------------------------------------------------------------


def test_rate_limit_raises_promptly_with_retry_after(zd: FakeZendesk) -> None:
    zd.error("POST", TICKETS, 429, "error-429.json", headers={"Retry-After": "37"})
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        adapter().deliver(ctx())
    assert time.monotonic() - started < 0.5  # no sleeping in the delivery thread
    assert (caught.value.retry_after, caught.value.status) == (37.0, 429)


def test_rate_limit_on_the_adapter_session_stops_zenpys_sleep_loop(zd: FakeZendesk) -> None:
    # The adapter sends raw JSON, but the session is zenpy's: a zenpy call on it must not sleep either.
    zd.error("GET", "/api/v2/users/381156009921.json", 429, "error-429.json", headers={"Retry-After": "60"})
    started = time.monotonic()
    with pytest.raises(RateLimited):
        adapter()._client().zenpy.users(id=381156009921)  # zenpy alone would sleep 60 s and retry forever
    assert time.monotonic() - started < 0.5


def test_previous_agent_failure_is_raised_and_logged(zd: FakeZendesk, caplog: pytest.LogCaptureFixture) -> None:
    # Raised, not None: routing's trace says the lookup failed (`decision.previous_agent`), where
    # "no previous agent known" read as a fact about the customer (a review).
    zd.search()
    zd.error("GET", "/api/v2/users/381156009921.json", 429, "error-429.json", headers={"Retry-After": "60"})
    started = time.monotonic()
    with pytest.raises(RateLimited):
        adapter().previous_agent(full_packet())
    assert time.monotonic() - started < 0.5
    [said] = [r for r in caplog.records if "previous agent unknown" in r.getMessage()]
    # No conversation id: on WhatsApp or SMS it is the customer's phone number (tests/security/test_no_leaks.py).
    assert not hasattr(said, "conversation_id") and isinstance(said.waited_ms, int)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_auth_errors(zd: FakeZendesk, status: int) -> None:
    zd.error("POST", TICKETS, status, "error-401.json")
    with pytest.raises(AuthError, match="Couldn't authenticate you"):
        adapter().deliver(ctx())


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_to_a_create_is_looked_up_before_it_is_sent_again(zd: FakeZendesk, status: int) -> None:
    # The Idempotency-Key would replay the ticket, but Zendesk keeps it two hours only: a retry
    # later than that (backoff, a rate-limit pause, an outage) opened a second ticket.
    zd.error("POST", TICKETS, status, "error-503.html", headers={"Retry-After": "5"})
    with pytest.raises(OutcomeUnknown) as caught:
        adapter().deliver(ctx())
    assert caught.value.retry_after == 5.0


def test_a_conflict_on_a_create_is_plainly_transient(zd: FakeZendesk) -> None:
    zd.error("POST", TICKETS, 409, "error-503.html", headers={"Retry-After": "5"})
    with pytest.raises(TransientError) as caught:
        adapter().deliver(ctx())
    assert not isinstance(caught.value, OutcomeUnknown)
    assert caught.value.retry_after == 5.0


def test_refused_connection_is_transient_not_unknown(zd: FakeZendesk) -> None:
    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    zd.raises("POST", TICKETS, requests.exceptions.ConnectionError(MaxRetryError(None, "/", refused)))  # type: ignore[arg-type]
    with pytest.raises(TransientError) as caught:
        adapter().deliver(ctx())
    assert not isinstance(caught.value, OutcomeUnknown)


def test_connection_dropped_after_sending_is_unknown(zd: FakeZendesk) -> None:
    zd.raises("POST", TICKETS, requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected"))
    with pytest.raises(OutcomeUnknown):
        adapter().deliver(ctx())


def test_validation_error_is_rejected_with_the_vendors_words(zd: FakeZendesk) -> None:
    refused = fixture("error-422-record-invalid.json")  # a refusal beside the requester's: no ticket without it
    refused["details"].update(fixture("error-422-base-invalid.json")["details"])
    zd.rsps.add("POST", zd.origin + TICKETS, status=422, json=refused)
    with pytest.raises(RejectedError) as caught:
        adapter().deliver(ctx())
    assert caught.value.status == 422
    assert "RecordInvalid" in caught.value.message
    assert "Requester: Email is not properly formatted" in caught.value.message
    assert caught.value.reply["details"]["requester"][0]["error"] == "InvalidValue"
    assert len(zd.calls("POST", TICKETS)) == 1  # not sent again: it would be refused again


@pytest.mark.parametrize(("detail", "gone", "part"), [
    ("assignee", "assignee_id", "routing"), ("group", "group_id", "routing"), ("requester", "requester", "customer"),
])
def test_a_field_zendesk_refuses_by_name_is_left_out_and_the_ticket_made(zd: FakeZendesk, detail: str, gone: str,
                                                                         part: str) -> None:
    # A vendor review: routing's previous agent outside the team's group, a deleted group, an address
    # Zendesk's rules refuse — each lost the whole ticket for good (Salesforce re-sent without the field).
    refused = {"error": "RecordInvalid", "description": "Record validation errors",
               "details": {detail: [{"description": f"{detail.title()}: is invalid", "error": "InvalidValue"}]}}
    zd.rsps.add("POST", zd.origin + TICKETS, status=422, json=refused)
    zd.create_ticket()
    assignment = {"team": "support", "priority": "high", "rule": "vip",
                  "targets": {"zendesk": {"group_id": 360004421977, "assignee_id": "381156009921"}}}

    outcome = adapter().deliver(ctx(assignment=assignment))

    first, second = (json.loads(c.request.body)["ticket"] for c in zd.calls("POST", TICKETS))
    # A refused requester is the customer's name alone, not nobody (the API user, whose mailbox
    # agents' replies then reached); anything else refused goes.
    instead = {"requester": {"name": first["requester"]["name"]}} if gone == "requester" else {}
    assert gone in first and second.get(gone) == instead.get(gone) and first[gone] != second.get(gone)
    assert {**{k: v for k, v in first.items() if k != gone}, **instead} == second  # nothing else left out
    keys = [c.request.headers["Idempotency-Key"] for c in zd.calls("POST", TICKETS)]
    assert keys[1] != keys[0] and keys[1].startswith(keys[0])  # a key Zendesk saw with another body is refused
    assert outcome.status == "created"
    [entry] = [e for e in outcome.receipt["dropped"] if e["part"] == part]
    assert "Zendesk refused" in entry["reason"] and f"{detail.title()}: is invalid" in entry["reason"]
    assert ("the customer's name alone" in entry["reason"]) is (gone == "requester")
    # Routing's refused id is named by its field: the answer stops naming a refused agent (test_zendesk_e2e.py).
    assert entry.get("field") == (gone if part == "routing" else None)


def test_a_custom_field_value_zendesk_refuses_leaves_the_custom_fields_out_and_the_ticket_made(
        zd: FakeZendesk) -> None:
    # A review: Zendesk names a refused custom field's value only as "base", by the field's title — a
    # dropdown the mapping fills from intent.name failed every ticket of an intent its options lacked.
    zd.error("POST", TICKETS, 422, "error-422-base-invalid.json")
    zd.create_ticket()
    mapped = adapter(custom_fields=[{"id": "360001", "path": "intent.name"}, {"id": "360002", "literal": "gold"}])

    outcome = mapped.deliver(ctx())

    first, second = (json.loads(c.request.body)["ticket"] for c in zd.calls("POST", TICKETS))
    assert len(first["custom_fields"]) == 2 and {k: v for k, v in first.items() if k != "custom_fields"} == second
    assert outcome.status == "created"
    [entry] = [e for e in outcome.receipt["dropped"] if "custom_fields" in e["reason"]]
    assert entry["part"] == "mapping" and "Custom field Plan: value is not valid" in entry["reason"]
    assert "all of them" in entry["reason"]


def test_a_base_refusal_of_a_ticket_without_custom_fields_or_refused_again_fails_the_delivery(zd: FakeZendesk) -> None:
    zd.error("POST", TICKETS, 422, "error-422-base-invalid.json")
    with pytest.raises(RejectedError):
        adapter().deliver(ctx())  # nothing to leave out: not sent again
    assert len(zd.calls("POST", TICKETS)) == 1
    with pytest.raises(RejectedError):  # refused for something else: refused again without them
        adapter(custom_fields=[{"id": "360001", "path": "intent.name"}]).deliver(ctx())
    assert len(zd.calls("POST", TICKETS)) == 3


def test_a_requester_refused_again_by_name_alone_leaves_the_ticket_to_the_api_user(zd: FakeZendesk) -> None:
    # A review: a name-only requester is always a new user, and an account may let no one make users;
    # refused again, the whole ticket failed for good. Made a third time without one, its own key.
    def refused(what: str) -> dict[str, Any]:
        return {"error": "RecordInvalid", "description": "Record validation errors",
                "details": {"requester": [{"description": f"Requester: {what}", "error": "InvalidValue"}]}}
    zd.rsps.add("POST", zd.origin + TICKETS, status=422, json=refused("Email is not allowed"))
    zd.rsps.add("POST", zd.origin + TICKETS, status=422, json=refused("cannot create users"))
    zd.create_ticket()

    outcome = adapter().deliver(ctx())

    first, second, third = (json.loads(c.request.body)["ticket"] for c in zd.calls("POST", TICKETS))
    assert first["requester"]["email"] and second["requester"] == {"name": first["requester"]["name"]}
    assert "requester" not in third and "requester_id" not in third
    assert {k: v for k, v in first.items() if k != "requester"} == third  # nothing else left out
    keys = [c.request.headers["Idempotency-Key"] for c in zd.calls("POST", TICKETS)]
    assert len(set(keys)) == 3 and keys[2].startswith(keys[1]) and keys[1].startswith(keys[0])
    assert outcome.status == "created"
    [entry] = outcome.receipt["dropped"]
    assert entry["part"] == "customer" and "API user is its requester" in entry["reason"]
    assert "Email is not allowed" in entry["reason"] and "cannot create users" in entry["reason"]
    zd.assert_ticket_requests_valid()


def test_a_requester_refused_beside_something_else_the_second_time_fails_the_delivery(zd: FakeZendesk) -> None:
    refused = fixture("error-422-record-invalid.json")  # the requester, and the ticket base too
    refused["details"].update(fixture("error-422-base-invalid.json")["details"])
    zd.rsps.add("POST", zd.origin + TICKETS, status=422, json={"error": "RecordInvalid", "description": "invalid",
                                                              "details": {"requester": [{"description": "no"}]}})
    zd.rsps.add("POST", zd.origin + TICKETS, status=422, json=refused)
    with pytest.raises(RejectedError):
        adapter().deliver(ctx())
    assert len(zd.calls("POST", TICKETS)) == 2


def test_proxy_page_instead_of_json_after_create_is_unknown(zd: FakeZendesk) -> None:
    zd.error("POST", TICKETS, 200, "<html>Welcome to the guest Wi-Fi</html>")
    with pytest.raises(OutcomeUnknown):
        adapter().deliver(ctx())


def test_a_retry_after_in_the_far_future_is_held_to_an_hour(zd: FakeZendesk) -> None:
    zd.error("POST", TICKETS, 429, {"error": "TooManyRequests"}, headers={"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"})
    with pytest.raises(RateLimited) as caught:
        adapter().deliver(ctx())
    assert caught.value.retry_after == 3600.0


def test_a_redirect_is_not_followed_with_the_packet(zd: FakeZendesk) -> None:
    # requests dropped the credentials on the other host but sent the whole ticket there again
    # (a 307 keeps the body) and recorded its answer as the ticket.
    zd.error("POST", TICKETS, 307, "Moved", headers={"Location": "https://elsewhere.example/collect"})
    with pytest.raises(RejectedError, match=r"redirect .*ZENDESK_SUBDOMAIN"):
        adapter().deliver(ctx())
    assert [c.request.url for c in zd.rsps.calls] == [zd.origin + TICKETS]


@pytest.mark.parametrize("ticket", [{"id": None}, {"id": "seventy"}, {"id": True}], ids=["null", "text", "bool"])
def test_a_created_ticket_without_a_usable_id_is_looked_up_not_recorded(zd: FakeZendesk, ticket) -> None:
    # Recorded, it was "created" with a link to …/agent/tickets/None; a missing id escaped as KeyError.
    zd.create_ticket(ticket)
    with pytest.raises(OutcomeUnknown, match="without the ticket's id"):
        adapter().deliver(ctx())


def test_transport_retries_are_off_so_the_outbox_alone_retries(zd: FakeZendesk) -> None:
    zd.create_ticket()
    target = adapter()
    target.deliver(ctx())
    session = target._client().session
    for prefix in ("https://", "http://"):
        retries = session.get_adapter(prefix + "acme.zendesk.com").max_retries
        assert (retries.total, retries.read) == (0, False)


# ---- content ------------------------------------------------------------------------------------------


def test_oversize_multibyte_transcript_goes_as_attachment_nothing_cut(zd: FakeZendesk) -> None:
    lines = [f"第{i}条消息：我的订单还没到 😡🚚 — {'数据' * 300}" for i in range(60)]
    packet = full_packet(transcript=[{"at": f"2026-11-20T09:{i // 60:02d}:{i % 60:02d}Z", "role": "customer",
                                      "text": line} for i, line in enumerate(lines)])
    context = ctx(packet)
    assert len(context.brief.html.encode()) > 64 * 1024
    upload = zd.upload(filename="transcript-hnd_01TESTHANDOFF0000000000000.txt")
    zd.create_ticket()
    target = adapter()

    outcome = target.deliver(context)

    [upload_call] = upload.calls
    assert upload_call.request.headers["Content-Type"] == "text/plain; charset=utf-8"
    sent_text = upload_call.request.body.decode("utf-8")
    assert all(line in sent_text for line in lines)
    assert sent_text == "\n".join((context.brief.transcript_heading, "", *context.brief.transcript_lines)) + "\n"
    [body] = zd.json_bodies("POST", TICKETS)
    comment = body["ticket"]["comment"]
    assert comment["uploads"] == ["6bk3gql82em5nmf"]
    assert comment["html_body"].startswith(context.brief.summary_html.split("see below / attached.</h3>")[0])
    assert "attached as transcript-hnd_01TESTHANDOFF0000000000000.txt" in comment["html_body"]
    assert len(comment["html_body"].encode()) <= COMMENT_LIMIT_BYTES
    assert "transcript" in outcome.receipt["delivered"]
    assert outcome.receipt["attached"][0]["part"] == "transcript"
    assert outcome.receipt["attached"][0]["file"] == "transcript-hnd_01TESTHANDOFF0000000000000.txt"
    # As much of the conversation's end as fits stays readable in the comment (60 messages of ~2 KB).
    shown = int(comment["html_body"].split("<h3>The last ")[1].split(" of 60 messages</h3>")[0])
    assert 20 <= shown < 60 and f"the last {shown} messages" in outcome.receipt["attached"][0]["reason"]
    assert f"<h3>Transcript — 60 messages, 2026-11-20 09:00 UTC, 59 s: the last {shown} below, all 60 in the " \
           "attached transcript-hnd_01TESTHANDOFF0000000000000.txt.</h3>" in comment["html_body"]
    assert "第59条消息" in comment["html_body"] and f"第{60 - shown}条消息" in comment["html_body"]
    assert f"第{59 - shown}条消息" not in comment["html_body"]


def test_a_300_message_transcript_keeps_its_last_messages_in_the_comment() -> None:
    # The agent found the summary and a file: no message of the conversation without a download.
    packet = full_packet(transcript=[{"at": f"2026-11-20T{9 + i // 60:02d}:{i % 60:02d}:00Z",
                                      "role": "customer" if i % 2 else "bot",
                                      "text": f"message {i}: " + "words " * 40} for i in range(300)])
    html_body = adapter().render(ctx(packet))["ticket"]["comment"]["html_body"]
    assert "The whole transcript (300 messages) is attached" in html_body
    # A review: only the last 10 of them, in 5 KB of a 60 KB comment — and below the footer.
    shown = int(html_body.split("<h3>The last ")[1].split(" of 300 messages</h3>")[0])
    assert shown >= 100 and "message 299:" in html_body and f"message {300 - shown}:" in html_body
    assert f"message {299 - shown}:" not in html_body.split("The last")[1]
    assert html_body.index("attached") < html_body.index("The last") < html_body.index("<hr>")
    assert len(html_body.encode()) <= COMMENT_LIMIT_BYTES


def test_a_batch_of_messages_too_long_for_a_comment_keeps_its_note_and_last_messages() -> None:
    # A review: the follow-up's template had no place for them — its comment was a heading and a
    # footer, and the receipt said "the summary and the last 8 messages".
    transcript = [{"at": f"2026-11-20T10:{i:02d}:00Z", "role": "customer", "text": f"message {i}: " + "x " * 9000}
                  for i in range(8)]
    packet = {**full_packet(transcript=transcript), "follow_up": {"handoff_id": "hnd_01TESTHANDOFF0000000000000",
                                                                     "first": 0}}
    batch = replace(ctx(packet, link=Link(vendor_id="77120")), brief=render_brief(packet, "msg_1", update=True))
    html_body = adapter().render(batch)["ticket"]["comment"]["html_body"]
    assert "The whole transcript (8 messages) is attached" in html_body and "message 7:" in html_body
    assert html_body.index("The last") < html_body.index("<hr>") and len(html_body.encode()) <= COMMENT_LIMIT_BYTES


def test_the_most_messages_that_fit_are_found() -> None:
    from adapters.zendesk import _most_that_fit

    assert _most_that_fit(300, lambda n: "x" * n, lambda body: len(body) <= 137) == (137, "x" * 137)
    assert _most_that_fit(300, lambda n: "x" * n, lambda body: len(body) <= 1000)[0] == 300
    assert _most_that_fit(300, lambda n: "x" * n, lambda body: False) == (0, "")


def test_hostile_customer_text_lands_escaped(zd: FakeZendesk) -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)"> {{ 7*7 }}'
    packet = full_packet(
        customer={"name": hostile, "email": "dana@example.com"},
        intent={"stated_problem": hostile, "name": "<b>intent</b>"},
        transcript=[{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": hostile}],
    )
    zd.create_ticket()

    adapter().deliver(ctx(packet))

    [body] = zd.json_bodies("POST", TICKETS)
    html_body = body["ticket"]["comment"]["html_body"]
    assert "<script" not in html_body and "<img" not in html_body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_body
    assert "{{ 7*7 }}" in html_body and "49" not in html_body
    assert body["ticket"]["subject"].startswith("<script>")  # plain text field: Zendesk shows it as text
    assert "intent_b_intent_b" in body["ticket"]["tags"]


def test_vendor_extra_reaches_the_wire_last(zd: FakeZendesk) -> None:
    packet = full_packet(vendor_extra={"zendesk": {
        "ticket_form_id": 360000812411,
        "x_future_field_2027": {"enabled": True},
        "comment": {"public": True},
        "priority": "urgent",
    }})
    zd.create_ticket()

    adapter().deliver(ctx(packet))

    [body] = zd.json_bodies("POST", TICKETS)
    ticket = body["ticket"]
    assert ticket["x_future_field_2027"] == {"enabled": True}
    assert ticket["ticket_form_id"] == 360000812411
    assert ticket["priority"] == "urgent"
    assert ticket["comment"]["public"] is True and ticket["comment"]["html_body"]  # merged, not replaced


@pytest.mark.parametrize("tags", [["campaign_blackfriday", "handoff"], "campaign_blackfriday handoff"])
def test_a_bots_tags_on_a_new_ticket_join_the_connectors(zd: FakeZendesk, tags: Any) -> None:
    # A review: on a new ticket they replaced the list — `chatbot`, `team_…`, `segment_…`, which
    # views, triggers and SLA policies key on, gone; on a repeat they were added (above).
    zd.create_ticket()
    packet = full_packet(vendor_extra={"zendesk": {"tags": tags, "custom_fields": [
        {"id": 360001, "value": "bot's"}, {"id": 360009, "value": "campaign"}]}})

    adapter(custom_fields=[{"id": "360001", "literal": "gold"}, {"id": "360002", "literal": "chat"}]).deliver(ctx(packet))

    [body] = zd.json_bodies("POST", TICKETS)
    sent = body["ticket"]["tags"]
    assert {"chatbot", "handoff", "campaign_blackfriday"} <= set(sent) and sent.count("handoff") == 1
    assert sent[-1] == "campaign_blackfriday" and any(tag.startswith("team_") for tag in sent)
    # A field the mapping fills and the bot names takes the bot's value; the mapping's others stay.
    assert body["ticket"]["custom_fields"] == [{"id": 360002, "value": "chat"}, {"id": 360001, "value": "bot's"},
                                               {"id": 360009, "value": "campaign"}]


def test_custom_fields_without_ids_stored_before_intake_refused_them_still_go(zd: FakeZendesk) -> None:
    # A review of the mend: a packet stored before the upgrade (pending, or replayed) failed every
    # attempt with a KeyError; the entry without an id is left out (Zendesk takes none), the rest by id.
    zd.create_ticket()
    packet = full_packet(vendor_extra={"zendesk": {"custom_fields": [{"id": 360001, "value": "a"}, {"value": "b"}]}})
    outcome = adapter(custom_fields=[{"id": "360002", "literal": "chat"}]).deliver(ctx(packet))
    assert outcome.status == "created"
    [body] = zd.json_bodies("POST", TICKETS)
    assert body["ticket"]["custom_fields"] == [{"id": 360002, "value": "chat"}, {"id": 360001, "value": "a"}]


@pytest.mark.parametrize(("customer", "requester"), [
    ({"name": "Dana", "email": "dana@example.com", "id": "cus_77", "phone": "+1 415 555 0134"},
     {"name": "Dana", "email": "dana@example.com"}),
    ({"id": "cus_77", "phone": "+44 20 7946 0000"}, {"name": "+44 20 7946 0000"}),  # requester_id at send time
    ({"phone": "+44 20 7946 0000"}, {"name": "+44 20 7946 0000"}),
])
def test_the_requester_object_holds_only_what_zendesk_takes(customer, requester) -> None:
    # Zendesk's requester object takes email, locale(_id), name, organization_id, role, verified:
    # the phone and external_id sent there were dropped, a new identity-less user on each handoff.
    payload = adapter().render(ctx(minimal_packet(customer=customer)))
    assert payload["ticket"]["requester"] == requester
    assert validation_errors(payload) == []


def test_the_spec_check_refuses_keys_a_requester_does_not_take() -> None:
    # The description leaves the object open; the fake closes it, or the defect above passed the check.
    invented = {"ticket": {"subject": "s", "requester": {"name": "Dana", "phone": "+1", "external_id": "cus_77"}}}
    assert validation_errors(invented) and not validation_errors({"ticket": {"subject": "s", "requester_id": 5}})
    assert validation_errors({"user": {"name": "Dana", "phone_number": "+1"}}, "UserRequest")


# ---- the customer's end user (no e-mail, the bot's customer id) -------------------------------------

USERS_UPSERT = "/api/v2/users/create_or_update.json"
USERS_BY_EXTERNAL_ID = "/api/v2/users/show_many.json"
WHATSAPP = {"id": "wa_447700900123", "name": "Dana Whitfield", "phone": "+44 7700 900123"}
DANA = "support-bot:wa_447700900123"  # her end user's external id: the bot's id and hers


def paths(zd: FakeZendesk) -> list[str]:
    return [f"{c.request.method} {c.request.url.split('?')[0][len(zd.origin):]}" for c in zd.rsps.calls]


def test_a_customer_known_by_id_is_made_an_end_user_and_the_ticket_names_them_by_requester_id(zd: FakeZendesk):
    zd.users_by_external_id()
    zd.create_or_update_user()
    zd.create_ticket()

    outcome = adapter().deliver(ctx(full_packet(customer=WHATSAPP)))

    assert paths(zd) == [f"GET {USERS_BY_EXTERNAL_ID}", f"POST {USERS_UPSERT}", f"POST {TICKETS}"]
    assert zd.calls("GET", USERS_BY_EXTERNAL_ID)[0].request.params == {"external_ids": DANA}
    [upsert] = zd.calls("POST", USERS_UPSERT)
    assert upsert.response.status_code == 201
    assert json.loads(upsert.request.body) == {"user": {"name": "Dana Whitfield", "external_id": DANA,
                                                        "phone": "+447700900123"}}  # E.164, as Zendesk validates
    [made] = zd.users.values()
    [call] = zd.calls("POST", TICKETS)
    ticket = json.loads(call.request.body)["ticket"]
    assert ticket["requester_id"] == made["id"] and "requester" not in ticket
    assert call.request.headers["Idempotency-Key"] == "hnd_01TESTHANDOFF0000000000000:zendesk"
    assert outcome.status == "created" and outcome.receipt["dropped"] == []


def test_a_returning_customer_is_found_and_their_profile_left_as_agents_made_it(zd: FakeZendesk) -> None:
    # The upsert overwrites name and phone with the bot's: looked up first, a known user is not written.
    known = zd.end_user(id=902841170001, external_id=DANA, name="Dana W. (renewal lead)",
                        phone="+447700900123")
    zd.users_by_external_id()
    zd.create_ticket()

    adapter().deliver(ctx(full_packet(customer=WHATSAPP)))

    assert paths(zd) == [f"GET {USERS_BY_EXTERNAL_ID}", f"POST {TICKETS}"]
    assert zd.json_bodies("POST", TICKETS)[0]["ticket"]["requester_id"] == 902841170001
    assert zd.users[902841170001] == known and known["name"] == "Dana W. (renewal lead)"


def test_the_same_customer_of_another_bot_or_in_another_case_is_another_end_user(zd: FakeZendesk) -> None:
    # A review: the bot's customer id went as the external id as is, and Zendesk matches external ids
    # case-insensitively — two bots' `abc123`, or the bot's `AbC123` and `abc123`, were one Zendesk
    # user: one customer's transcript in another's history, agents' replies e-mailed to the other.
    sales = full_packet(customer={"id": "abc123", "name": "Dana"}, bot={"id": "sales-bot"})
    for packet in (full_packet(customer={"id": "abc123", "name": "Dana"}), sales,
                   full_packet(customer={"id": "AbC123", "name": "Sam"})):
        zd.users_by_external_id()
        zd.create_or_update_user()
        zd.create_ticket()
        adapter().deliver(ctx(packet))

    ids = [body["user"]["external_id"] for body in zd.json_bodies("POST", USERS_UPSERT)]
    # A case fold could change `AbC123`: it goes as a digest of both ids (a known answer, not recomputed).
    assert ids == ["support-bot:abc123", "sales-bot:abc123",
                   "sha256-7bf3cbc3d7c815065eeeea593d0003df6fffe0508efca895a7b31ffceca7fa69"]
    assert len(zd.users) == 3 and all(call.response.status_code == 201 for call in zd.calls("POST", USERS_UPSERT))
    requesters = [body["ticket"]["requester_id"] for body in zd.json_bodies("POST", TICKETS)]
    assert len(set(requesters)) == 3


@pytest.mark.parametrize(("held", "why"), [
    ({"external_id": DANA.upper()}, "in another case"),  # an SSO user's, say: Zendesk's lookup answers it
    ({"external_id": DANA, "role": "agent"}, "not an end user but an agent"),
    ({"external_id": DANA, "suspended": True}, "suspended"),
])
def test_a_user_held_under_the_id_that_may_be_someone_else_is_neither_taken_nor_updated(zd: FakeZendesk,
                                                                                         held, why) -> None:
    # Create Or Update User matches as the lookup does: it would have rewritten that user's name and
    # phone and given them this customer's ticket. Not called; the ticket names the customer only.
    other = zd.end_user(id=902841170001, name="Someone Else", phone="+15550100", **held)
    before = dict(other)
    zd.users_by_external_id()
    zd.create_ticket()

    outcome = adapter().deliver(ctx(full_packet(customer=WHATSAPP)))

    assert paths(zd) == [f"GET {USERS_BY_EXTERNAL_ID}", f"POST {TICKETS}"]
    ticket = zd.json_bodies("POST", TICKETS)[0]["ticket"]
    assert ticket["requester"] == {"name": "Dana Whitfield"} and "requester_id" not in ticket
    assert zd.users[902841170001] == before
    [entry] = outcome.receipt["dropped"]
    assert entry["part"] == "customer" and why in entry["reason"] and "neither taken" in entry["reason"]
    assert "Someone" not in entry["reason"]


def test_an_agent_the_upsert_answers_after_a_lookup_found_none_is_not_the_requester(zd: FakeZendesk) -> None:
    # Made between the lookup and the upsert (a race): the upsert's answer is held to the same rule.
    zd.rsps.add("GET", zd.origin + USERS_BY_EXTERNAL_ID, json={"users": [], "count": 0})
    zd.end_user(id=902841170001, external_id=DANA, role="agent")
    zd.create_or_update_user()
    zd.create_ticket()

    outcome = adapter().deliver(ctx(full_packet(customer=WHATSAPP)))

    ticket = zd.json_bodies("POST", TICKETS)[0]["ticket"]
    assert ticket["requester"] == {"name": "Dana Whitfield"} and "requester_id" not in ticket
    [entry] = outcome.receipt["dropped"]
    assert "not an end user but an agent" in entry["reason"]


def test_a_customer_id_with_a_comma_is_still_looked_up_not_upserted_again(zd: FakeZendesk) -> None:
    # A review: a comma (Show Many Users' separator) skipped the lookup, and the upsert rewrote the
    # profile agents had edited on every handoff. The id goes as a digest, which has none.
    customer = {**WHATSAPP, "id": "crm,447700900123"}
    zd.users_by_external_id()
    zd.create_or_update_user()
    zd.create_ticket()
    adapter().deliver(ctx(full_packet(customer=customer)))
    [made] = zd.users.values()
    assert "," not in made["external_id"] and made["external_id"].startswith("sha256-")
    made["name"] = "Dana W. (renewal lead)"  # an agent's edit

    zd.users_by_external_id()
    zd.create_ticket()
    adapter().deliver(ctx(full_packet(customer=customer)))

    assert len(zd.calls("POST", USERS_UPSERT)) == 1 and len(zd.calls("GET", USERS_BY_EXTERNAL_ID)) == 2
    assert zd.calls("GET", USERS_BY_EXTERNAL_ID)[1].request.params == {"external_ids": made["external_id"]}
    assert made["name"] == "Dana W. (renewal lead)"
    assert [b["ticket"]["requester_id"] for b in zd.json_bodies("POST", TICKETS)] == [made["id"]] * 2


def test_no_end_user_is_looked_for_when_the_requester_is_known_otherwise_or_on_an_update(zd: FakeZendesk) -> None:
    zd.create_ticket()
    adapter().deliver(ctx(full_packet(customer={"phone": "+44 7700 900123"})))  # a phone alone: name only
    zd.create_ticket()
    adapter().deliver(ctx(full_packet(customer=WHATSAPP, vendor_extra={"zendesk": {"requester_id": 42}})))
    zd.update_ticket()
    adapter().deliver(ctx(full_packet(customer=WHATSAPP), link=Link(vendor_id="77120")))

    assert paths(zd) == [f"POST {TICKETS}", f"POST {TICKETS}", "PUT /api/v2/tickets/77120/tags",
                        "PUT /api/v2/tickets/77120.json"]
    first, second = (body["ticket"] for body in zd.json_bodies("POST", TICKETS))
    assert first["requester"] == {"name": "+44 7700 900123"} and "requester_id" not in first
    assert second["requester_id"] == 42


def test_no_right_to_manage_end_users_still_makes_the_ticket_and_says_so(zd: FakeZendesk, caplog) -> None:
    zd.users_by_external_id()
    zd.error("POST", USERS_UPSERT, 403, "error-403-forbidden.json")
    zd.create_ticket()

    outcome = adapter().deliver(ctx(full_packet(customer=WHATSAPP)))

    assert paths(zd) == [f"GET {USERS_BY_EXTERNAL_ID}", f"POST {USERS_UPSERT}", f"POST {TICKETS}"]
    ticket = zd.json_bodies("POST", TICKETS)[0]["ticket"]
    assert ticket["requester"] == {"name": "Dana Whitfield"} and "requester_id" not in ticket
    assert outcome.status == "created"
    [entry] = outcome.receipt["dropped"]
    assert entry["part"] == "customer"
    assert "(403)" in entry["reason"] and "You do not have access" in entry["reason"]
    assert "custom role allowed to manage end users" in entry["reason"] and "name only" in entry["reason"]
    assert "Dana" not in " ".join(r.getMessage() for r in caplog.records)


def test_refused_credentials_at_the_end_user_fail_the_delivery_as_at_the_ticket(zd: FakeZendesk) -> None:
    zd.users_by_external_id()
    zd.error("POST", USERS_UPSERT, 401, "error-401.json")
    with pytest.raises(AuthError):
        adapter().deliver(ctx(full_packet(customer=WHATSAPP)))
    assert not zd.calls("POST", TICKETS)


def test_a_phone_zendesk_refuses_leaves_the_end_user_without_it(zd: FakeZendesk) -> None:
    zd.users_by_external_id()
    zd.error("POST", USERS_UPSERT, 422, "error-422-user-phone.json")
    zd.create_or_update_user()
    zd.create_ticket()

    outcome = adapter().deliver(ctx(full_packet(customer={**WHATSAPP, "phone": "07700 900123"})))

    first, second = zd.json_bodies("POST", USERS_UPSERT)
    assert first["user"]["phone"] == "07700 900123"  # not E.164: sent as given, for Zendesk to judge
    assert second == {"user": {"name": "Dana Whitfield", "external_id": DANA}}
    [made] = zd.users.values()
    assert zd.json_bodies("POST", TICKETS)[0]["ticket"]["requester_id"] == made["id"]
    [entry] = outcome.receipt["dropped"]
    assert entry["part"] == "customer" and "refused the customer's phone" in entry["reason"]


@pytest.mark.parametrize(("given", "sent"), [
    ("+44 7700 900123", "+447700900123"),
    ("+1 (415) 555-0134", "+14155550134"),  # an area code in parentheses is part of the number
    ("+44 (0)20 7946 0000", "+442079460000"),  # the trunk prefix: +4402079460000 was another number
    ("+44(0) 20 7946 0000", "+442079460000"),
    ("+49 (0)30 901820", "+4930901820"),
    ("+44 (020) 7946 0000", "+44 (020) 7946 0000"),  # unsure: sent as given, for Zendesk to judge
    ("+39 (0)6 6988 3145", "+390669883145"),  # Italy's 0 is part of the number: +39669883145 was another
    ("07700 900123", "07700 900123"),
])
def test_the_end_users_phone_goes_in_e164_only_where_it_is_sure(zd: FakeZendesk, given: str, sent: str) -> None:
    zd.users_by_external_id()
    zd.create_or_update_user()
    zd.create_ticket()
    adapter().deliver(ctx(full_packet(customer={**WHATSAPP, "phone": given})))
    assert zd.json_bodies("POST", USERS_UPSERT)[0]["user"]["phone"] == sent


@pytest.mark.parametrize("failure", [
    requests.exceptions.ReadTimeout("read timed out (read timeout=15)"),
    requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected"),
    (503, "error-503.html"),
    (429, "error-429.json"),
], ids=["timeout", "dropped", "503", "429"])
def test_a_failure_before_the_ticket_exists_is_a_plain_retry(zd: FakeZendesk, failure) -> None:
    # Nothing but, at most, the end user exists: not an unknown outcome (no lookup of a ticket),
    # and the retry upserts the same user again and makes one ticket.
    zd.users_by_external_id()
    if isinstance(failure, Exception):
        zd.raises("POST", USERS_UPSERT, failure)
    else:
        zd.error("POST", USERS_UPSERT, failure[0], failure[1], headers={"Retry-After": "30"})
    target = adapter()

    with pytest.raises(TransientError) as caught:
        target.deliver(ctx(full_packet(customer=WHATSAPP)))
    assert not isinstance(caught.value, OutcomeUnknown)
    assert isinstance(caught.value, RateLimited) == (failure == (429, "error-429.json"))
    assert not zd.calls("POST", TICKETS)

    zd.users_by_external_id()
    zd.create_or_update_user()
    zd.create_ticket()
    outcome = target.deliver(ctx(full_packet(customer=WHATSAPP), attempt=2))
    assert outcome.status == "created" and len(zd.calls("POST", TICKETS)) == 1


def test_a_ticket_timed_out_after_its_end_user_is_found_not_made_twice(zd: FakeZendesk) -> None:
    zd.users_by_external_id()
    zd.create_or_update_user()
    zd.raises("POST", TICKETS, requests.exceptions.ReadTimeout("read timed out"))
    target = adapter()
    with pytest.raises(OutcomeUnknown) as lost:
        target.deliver(ctx(full_packet(customer=WHATSAPP)))

    # Not found by its external_id: sent again, the same body under the same key (Zendesk replays it).
    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000", found=False)
    zd.users_by_external_id()
    zd.create_ticket(replay=True)
    outcome = target.deliver(ctx(full_packet(customer=WHATSAPP), outcome_unknown=True, attempt=2,
                                 sent_to=lost.value.sent_to))

    assert len(zd.users) == 1 and len(zd.calls("POST", USERS_UPSERT)) == 1  # found the second time
    first, second = zd.calls("POST", TICKETS)
    assert first.request.body == second.request.body
    assert first.request.headers["Idempotency-Key"] == second.request.headers["Idempotency-Key"]
    assert outcome.status == "created" and outcome.reply["idempotency_lookup"] == "hit"


def test_a_ticket_made_without_the_end_user_still_says_so_when_a_retry_finds_it(zd: FakeZendesk) -> None:
    zd.users_by_external_id()
    zd.error("POST", USERS_UPSERT, 403, "error-403-forbidden.json")
    zd.raises("POST", TICKETS, requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown) as lost:
        adapter().deliver(ctx(full_packet(customer=WHATSAPP)))

    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000")
    found = adapter().deliver(ctx(full_packet(customer=WHATSAPP), outcome_unknown=True, attempt=2,
                                  sent_to=lost.value.sent_to))

    assert paths(zd)[-1] == f"GET {TICKETS}"  # found: no user call, nothing sent again
    assert found.status == "created" and [d["part"] for d in found.receipt["dropped"]] == ["customer"]
    assert "(403)" in found.receipt["dropped"][0]["reason"]


def test_a_refused_phone_is_still_listed_when_a_retry_makes_the_ticket_again(zd: FakeZendesk) -> None:
    # A review: the retry after the ticket's timeout finds no ticket and makes it again; its lookup
    # finds the user the first attempt made (no upsert, nothing refused), and the note was lost.
    zd.users_by_external_id()
    zd.error("POST", USERS_UPSERT, 422, "error-422-user-phone.json")
    zd.create_or_update_user()
    zd.raises("POST", TICKETS, requests.exceptions.ReadTimeout("read timed out"))
    target = adapter()
    with pytest.raises(OutcomeUnknown) as lost:
        target.deliver(ctx(full_packet(customer=WHATSAPP)))

    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000", found=False)
    zd.users_by_external_id()
    zd.create_ticket(replay=True)
    outcome = target.deliver(ctx(full_packet(customer=WHATSAPP), outcome_unknown=True, attempt=2,
                                 sent_to=lost.value.sent_to))

    assert len(zd.calls("POST", USERS_UPSERT)) == 2 and len(zd.calls("POST", TICKETS)) == 2  # found, not upserted
    assert outcome.status == "created"
    [entry] = outcome.receipt["dropped"]
    assert entry["part"] == "customer" and "refused the customer's phone" in entry["reason"]


def test_render_needs_no_credentials_and_sends_nothing() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=True):
        payload = ZendeskAdapter(Settings(), {}).render(ctx())
    assert payload["ticket"]["type"] == "question" and payload["ticket"]["comment"]["public"] is False
    assert validation_errors(payload) == []


def test_shipped_mapping_gives_a_valid_update_payload() -> None:
    payload = adapter().render(ctx(link=Link(vendor_id="77120")))
    assert validation_errors(payload, "TicketUpdateRequest") == []


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The adapter's `time.monotonic()`, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(zendesk_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def timeouts(zd: FakeZendesk) -> list[float]:
    return [call.request.req_kwargs["timeout"] for call in zd.rsps.calls]


def test_previous_agent_is_the_assignee_of_the_latest_open_ticket(zd: FakeZendesk, clock: list[float]) -> None:
    zd.search(query="type:ticket requester:dana.whitfield@example.com status<solved")
    zd.show_user()
    agent = adapter().previous_agent(full_packet())
    assert agent == {"id": "381156009921", "name": "Sam Okafor", "email": "sam@acme.example"}
    # Asked while the bot waits, before anything is stored: the two calls share half the sync
    # budget, not the delivery timeout (15 s by default) each.
    assert timeouts(zd) == [2.5, 2.5]


@pytest.mark.parametrize("no_longer", [{"suspended": True}, {"active": False}, {"role": "end-user"}])
def test_a_previous_agent_who_no_longer_takes_tickets_is_not_offered(zd: FakeZendesk, clock: list[float],
                                                                    no_longer: dict[str, Any]) -> None:
    # A routing review: a suspended, deleted or downgraded assignee was offered; routing's `fallback`
    # never ran, and the ticket sat with someone who will not answer it.
    zd.search(query="type:ticket requester:dana.whitfield@example.com status<solved")
    zd.show_user(**no_longer)
    assert adapter().previous_agent(full_packet()) is None


@pytest.mark.parametrize(("budget_ms", "vendor_timeout_s", "expected"), [(1000, 15, 1.0), (500, 15, 1.0),
                                                                         (20000, 4, 4)])
def test_previous_agent_lookups_are_bounded_by_the_budget_and_the_vendor_timeout(
        zd: FakeZendesk, clock: list[float], budget_ms: int, vendor_timeout_s: float, expected: float) -> None:
    zd.search(query="type:ticket requester:dana.whitfield@example.com status<solved")
    zd.show_user()
    settings = replace(SETTINGS, sync_budget_ms=budget_ms, vendor_timeout_s=vendor_timeout_s)
    assert adapter(settings).previous_agent(full_packet()) is not None
    assert set(timeouts(zd)) == {expected}


def slow_search(target: ZendeskAdapter, clock: list[float], seconds: float) -> None:
    real = target._open_tickets

    def search(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        clock[0] += seconds
        return found

    target._open_tickets = search  # type: ignore[method-assign]


def test_previous_agent_lookups_share_one_allowance_from_the_requests_deadline(
        zd: FakeZendesk, clock: list[float]) -> None:
    """The user read gets what the search left of the lookup's share: two slow calls cannot spend
    the whole budget the deliveries need."""
    zd.search(query="type:ticket requester:dana.whitfield@example.com status<solved")
    zd.show_user()
    target = adapter()
    slow_search(target, clock, 1.5)
    # The lookup must be done in 2 s (`decision.lookup_ends`: half of the 4 s left of the budget).
    assert target.previous_agent(full_packet(), deadline=clock[0] + 2.0) is not None
    assert timeouts(zd) == [2.0, 0.5]


def test_a_search_that_used_the_whole_share_skips_the_user_read_and_routing_falls_back(
        zd: FakeZendesk, clock: list[float], caplog: pytest.LogCaptureFixture) -> None:
    zd.search(query="type:ticket requester:dana.whitfield@example.com status<solved")
    target = adapter()
    slow_search(target, clock, 2.5)
    with pytest.raises(TransientError):  # no GET /users: it was never registered
        target.previous_agent(full_packet())
    [warning] = [r for r in caplog.records if "previous agent unknown (TransientError)" in r.getMessage()]
    assert warning.waited_ms == 2500


# ---- a customer known by the bot's id: their open ticket and their previous agent -----------------------

REQUESTED = "/api/v2/users/902841170001/tickets/requested.json"  # the tickets Dana's end user requested


def test_a_customer_known_by_id_joins_their_open_ticket_found_through_their_end_user(zd: FakeZendesk) -> None:
    # Searched by e-mail alone, a WhatsApp customer was never found: each conversation made a new ticket.
    zd.end_user(id=902841170001, external_id=DANA)
    zd.users_by_external_id()
    zd.requested_tickets(902841170001)
    zd.update_ticket(77120)

    outcome = adapter(update_open_ticket=True).deliver(ctx(full_packet(customer=WHATSAPP)))

    assert (outcome.status, outcome.vendor_id) == ("updated", "77120")  # the open one, not the newer solved one
    assert paths(zd) == [f"GET {USERS_BY_EXTERNAL_ID}", f"GET {REQUESTED}", "PUT /api/v2/tickets/77120/tags",
                        "PUT /api/v2/tickets/77120.json"]
    assert zd.calls("GET", USERS_BY_EXTERNAL_ID)[0].request.params == {"external_ids": DANA}
    # The ticket table, newest first; not the search index, where a new ticket is missing for minutes.
    assert zd.calls("GET", REQUESTED)[0].request.params == {"sort_by": "created_at", "sort_order": "desc",
                                                            "per_page": "100", "exclude_archived": "true"}


def test_a_customer_known_by_id_whose_tickets_may_not_be_listed_gets_a_new_ticket(zd: FakeZendesk) -> None:
    # A 403 on the ticket list (the API user's role) failed the delivery for good: no ticket at all,
    # where the same 403 on the user lookup made one.
    zd.end_user(id=902841170001, external_id=DANA)
    zd.users_by_external_id()
    zd._add("GET", REQUESTED, 403, {"error": "Forbidden", "description": "You do not have access to this page."})
    zd.create_ticket()

    outcome = adapter(update_open_ticket=True).deliver(ctx(full_packet(customer=WHATSAPP)))

    assert outcome.status == "created" and paths(zd)[:2] == [f"GET {USERS_BY_EXTERNAL_ID}", f"GET {REQUESTED}"]


def test_a_customer_known_by_id_has_their_previous_agent_found(zd: FakeZendesk, clock: list[float]) -> None:
    zd.end_user(id=902841170001, external_id=DANA)
    zd.users_by_external_id()
    unassigned = {**fixture("tickets-requested.json")["tickets"][1], "id": 77170, "status": "new", "assignee_id": None}
    zd.requested_tickets(902841170001, tickets=[unassigned, *fixture("tickets-requested.json")["tickets"]])
    zd.show_user()

    agent = adapter().previous_agent(full_packet(customer=WHATSAPP))

    assert agent == {"id": "381156009921", "name": "Sam Okafor", "email": "sam@acme.example"}
    assert paths(zd) == [f"GET {USERS_BY_EXTERNAL_ID}", f"GET {REQUESTED}", "GET /api/v2/users/381156009921.json"]
    assert timeouts(zd) == [2.5, 2.5, 2.5]  # each call bounded by the lookup's share, as the search is


def slow_user_lookup(zd: FakeZendesk, clock: list[float], seconds: float) -> None:
    """Show Many Users answering Dana's end user after `seconds` of the adapter's clock."""
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        clock[0] += seconds
        users = [user for user in zd.users.values() if user.get("external_id") == DANA]
        return 200, {}, json.dumps({"users": users, "next_page": None, "previous_page": None, "count": len(users)})
    zd.rsps.add_callback("GET", zd.origin + USERS_BY_EXTERNAL_ID, callback=answer, content_type="application/json")


def test_a_customer_known_by_ids_lookups_share_one_allowance(zd: FakeZendesk, clock: list[float]) -> None:
    zd.end_user(id=902841170001, external_id=DANA)
    slow_user_lookup(zd, clock, 1.5)
    zd.requested_tickets(902841170001)
    zd.show_user()
    assert adapter().previous_agent(full_packet(customer=WHATSAPP), deadline=clock[0] + 2.0) is not None
    assert timeouts(zd) == [2.0, 0.5, 0.5]


def test_a_user_lookup_that_used_the_whole_share_reads_no_tickets_and_routing_falls_back(
        zd: FakeZendesk, clock: list[float], caplog: pytest.LogCaptureFixture) -> None:
    zd.end_user(id=902841170001, external_id=DANA)
    slow_user_lookup(zd, clock, 2.5)
    with pytest.raises(TransientError):
        adapter().previous_agent(full_packet(customer=WHATSAPP))
    assert paths(zd) == [f"GET {USERS_BY_EXTERNAL_ID}"]
    [warning] = [r for r in caplog.records if "previous agent unknown (TransientError)" in r.getMessage()]
    assert warning.waited_ms == 2500


@pytest.mark.parametrize("held", [
    None,  # nobody: no ticket is read, and looking makes no user
    {"external_id": DANA.upper()},  # an SSO user's, say: Zendesk's lookup answers it
    {"external_id": DANA, "role": "agent"},
    {"external_id": DANA, "suspended": True},
], ids=["nobody", "another-case", "agent", "suspended"])
def test_no_ticket_is_looked_for_without_an_end_user_that_may_be_the_customer(zd: FakeZendesk, held) -> None:
    # The same rules as for the ticket's requester: someone else's tickets would get this brief, or
    # lend their agent to this customer.
    other = zd.end_user(id=902841170001, name="Someone Else", **held) if held else None
    before = dict(other or {})
    zd.users_by_external_id()
    target = adapter(update_open_ticket=True)

    assert target.find_open_ticket(ctx(full_packet(customer=WHATSAPP))) is None
    assert target.previous_agent(full_packet(customer=WHATSAPP)) is None

    assert paths(zd) == [f"GET {USERS_BY_EXTERNAL_ID}"] * 2  # no ticket list, no search, no upsert
    assert zd.users == ({902841170001: before} if held else {})


def test_an_api_user_that_may_not_read_users_still_makes_the_ticket(zd: FakeZendesk) -> None:
    # A 403 at the lookup is what the ticket's own end-user lookup takes as "no end user": the ticket
    # is made with the customer's name, not failed for want of a search.
    zd.error("GET", USERS_BY_EXTERNAL_ID, 403, "error-403-forbidden.json")
    zd.create_ticket()

    outcome = adapter(update_open_ticket=True).deliver(ctx(full_packet(customer=WHATSAPP)))

    assert outcome.status == "created"
    assert paths(zd) == [f"GET {USERS_BY_EXTERNAL_ID}", f"GET {USERS_BY_EXTERNAL_ID}", f"POST {TICKETS}"]


def test_refused_credentials_at_the_user_lookup_fail_as_at_the_search(zd: FakeZendesk) -> None:
    zd.error("GET", USERS_BY_EXTERNAL_ID, 401, "error-401.json")
    with pytest.raises(AuthError):
        adapter(update_open_ticket=True).find_open_ticket(ctx(full_packet(customer=WHATSAPP)))


def test_a_failed_ticket_list_falls_back_to_a_new_ticket_as_a_failed_search_does(
        zd: FakeZendesk, caplog: pytest.LogCaptureFixture) -> None:
    zd.end_user(id=902841170001, external_id=DANA)
    zd.users_by_external_id()
    zd.error("GET", REQUESTED, 503, "error-503.html")
    zd.create_ticket()

    outcome = adapter(update_open_ticket=True).deliver(ctx(full_packet(customer=WHATSAPP)))

    assert outcome.status == "created" and "open-ticket search failed" in caplog.text
    assert zd.json_bodies("POST", TICKETS)[0]["ticket"]["requester_id"] == 902841170001


def test_a_customer_with_an_e_mail_and_an_id_is_still_searched_by_e_mail_alone(zd: FakeZendesk) -> None:
    zd.search(query="type:ticket requester:dana.whitfield@example.com status<solved")
    zd.update_ticket(77120)
    adapter(update_open_ticket=True).deliver(ctx(full_packet()))  # her e-mail and her id, cus_5521
    assert paths(zd) == ["GET /api/v2/search.json", "PUT /api/v2/tickets/77120/tags",
                        "PUT /api/v2/tickets/77120.json"]


# ---- settings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"zendesk_subdomain": ""}, "ZENDESK_SUBDOMAIN"),
    ({"zendesk_api_token": ""}, "ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN"),
    ({"zendesk_email": ""}, "ZENDESK_EMAIL"),
    ({"zendesk_base_url": "acme.zendesk.com"}, "ZENDESK_BASE_URL"),
    ({"zendesk_subdomain": "acme.zendesk.com"}, "ZENDESK_SUBDOMAIN"),  # links went to acme.zendesk.com.zendesk.com
])
def test_check_settings_names_the_missing_variable(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ZendeskAdapter.check_settings(replace(SETTINGS, **overrides))
    assert caught.value.source == variable


def test_every_missing_zendesk_variable_is_named_at_once() -> None:
    # ZENDESK_EMAIL was asked for only once the subdomain and the token were set: a second start-up.
    with pytest.raises(ConfigError) as caught:
        ZendeskAdapter.check_settings(Settings(zendesk_base_url="acme.zendesk.com"))
    assert caught.value.source == "ZENDESK_SUBDOMAIN"
    for named in ("ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN", "ZENDESK_EMAIL:", "ZENDESK_BASE_URL:"):
        assert named in caught.value.message


def test_oauth_needs_no_email() -> None:
    ZendeskAdapter.check_settings(Settings(zendesk_subdomain="acme", zendesk_oauth_token="oauth-abc"))


def test_malformed_custom_field_names_its_key() -> None:
    with pytest.raises(ConfigError) as caught:
        adapter(custom_fields=[{"id": 1, "path": "intent.name"}, {"path": "intent.name"}])
    assert caught.value.source == "mappings/zendesk.yaml: custom_fields[1]"
    with pytest.raises(ConfigError) as caught:
        adapter(custom_fields=[{"id": 1, "path": None}])
    assert caught.value.source == "mappings/zendesk.yaml: custom_fields[0]"


def test_a_fixed_false_or_zero_is_a_custom_fields_value() -> None:
    # An unticked checkbox or a 0 was refused at start as having no value (a review).
    fields = [{"id": 360009, "literal": False}, {"id": 360010, "literal": 0}, {"id": 360011, "literal": True}]
    assert adapter(custom_fields=fields).render(ctx())["ticket"]["custom_fields"] == [
        {"id": 360009, "value": False}, {"id": 360010, "value": 0}, {"id": 360011, "value": True}]


@pytest.mark.parametrize(("mapping", "key", "words"), [
    # Each went out as written and was refused on every ticket, for good; or read by no one.
    ({"custom_fields": [{"id": "abc", "path": "customer.id"}]}, "custom_fields[0].id", "whole numbers"),
    ({"brand_id": "acme"}, "brand_id", "got 'acme'"),
    ({"priority": {"hihg": "high"}}, "priority.hihg", "did you mean 'high'?"),
])
def test_a_malformed_id_or_a_misspelt_priority_names_its_key(mapping: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        adapter(**mapping)
    assert caught.value.source == f"mappings/zendesk.yaml: {key}" and words in caught.value.message
    adapter(custom_fields=[{"id": "360001", "path": "customer.id"}], brand_id=360000123456)  # numbers, written either way


def test_ids_written_in_quotes_go_as_the_numbers_zendesk_takes() -> None:
    # `brand_id: "360002214531"` passed the check and went out as a string, which Zendesk's
    # TicketObject (integer) does not describe; routing's ids were already sent as numbers.
    payload = adapter(custom_fields=[{"id": "360001", "literal": "gold"}], brand_id="360002214531").render(ctx())
    assert payload["ticket"]["brand_id"] == 360002214531
    assert payload["ticket"]["custom_fields"] == [{"id": 360001, "value": "gold"}]
    assert validation_errors(payload) == []


def test_logs_carry_no_payload(zd: FakeZendesk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters")
    zd.create_ticket()
    adapter().deliver(ctx())
    assert "dana.whitfield@example.com" not in caplog.text


def test_brief_too_long_even_without_transcript_is_attached_whole(zd: FakeZendesk) -> None:
    packet = full_packet(collected_data={f"field_{i}": "ü" * 2000 for i in range(40)})
    context = ctx(packet)
    upload = zd.upload(filename="handoff-hnd_01TESTHANDOFF0000000000000.txt")
    zd.update_ticket(77120)

    outcome = adapter().deliver(replace(context, link=Link(vendor_id="77120")))

    assert upload.calls[0].request.body.decode("utf-8") == context.brief.text
    [body] = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert body["ticket"]["comment"]["uploads"] == ["6bk3gql82em5nmf"]
    comment = body["ticket"]["comment"]["html_body"]
    assert "The whole brief is attached as handoff-hnd_01TESTHANDOFF0000000000000.txt" in comment
    # Who, why, what they want and the urgency stay in the comment: only the subject was left before.
    assert "Why a person is needed" in comment and "Urgency: <strong>high</strong>" in comment
    assert "Dana Whitfield" in comment and "field_0" not in comment
    # …and the five-message transcript, which went to the file with the lists, 58 KB of the comment free.
    assert len(re.findall(r"<p><small>[\d:]+</small>", comment)) == 5
    assert ": below, and in the attached handoff-hnd_01TESTHANDOFF0000000000000.txt.</h3>" in comment
    assert "Earlier contacts, what was tried and what the bot collected are not in this comment" in comment
    assert outcome.receipt["attached"][0]["part"] == "brief"
    assert "carries who, why, what they want, the urgency and the last 5 messages" in \
        outcome.receipt["attached"][0]["reason"]


UPLOADS = "/api/v2/uploads.json"


@pytest.mark.parametrize("status, reply", [
    (422, {"error": "RecordInvalid", "description": "Record validation errors",
           "details": {"base": [{"description": "Attachments are disabled"}]}}),
    (403, {"error": "Forbidden", "description": "You do not have access to this page."}),
])
def test_a_refused_upload_leaves_the_ticket_made_with_what_the_comment_carries(zd: FakeZendesk, status: int,
                                                                             reply: dict[str, Any]) -> None:
    # Raised, it failed every long handoff for good: no ticket at all, the customer told nobody had it.
    lines = [f"message {i}: " + "my order has not arrived " * 12 for i in range(220)]
    packet = full_packet(transcript=[{"at": f"2026-11-20T09:{i // 60:02d}:{i % 60:02d}Z", "role": "customer",
                                      "text": line} for i, line in enumerate(lines)])
    context = ctx(packet)
    zd.error("POST", UPLOADS, status, reply)
    zd.create_ticket()

    outcome = adapter().deliver(context)

    assert outcome.status == "created"
    [body] = zd.json_bodies("POST", TICKETS)
    comment = body["ticket"]["comment"]
    assert "uploads" not in comment
    assert "is attached as" not in comment["html_body"] and "Zendesk refused it as a file" in comment["html_body"]
    assert lines[-1] in comment["html_body"]  # the latest messages still there
    # The transcript's heading too says the file is not there (it said "see below / attached").
    assert re.search(r"<h3>Transcript — [^<]*: the last \d+ below \(Zendesk refused the file holding all\)\.</h3>",
                     comment["html_body"])
    assert "transcript" in outcome.receipt["delivered"]  # in part: said under dropped
    assert len(comment["html_body"].encode()) <= COMMENT_LIMIT_BYTES + 400
    assert "attached" not in outcome.receipt
    [said] = [entry for entry in outcome.receipt["dropped"] if entry.get("file")]
    assert said["part"] == "transcript" and said["file"] == "transcript-hnd_01TESTHANDOFF0000000000000.txt"
    assert f"Zendesk refused transcript-hnd_01TESTHANDOFF0000000000000.txt ({status}: " in said["reason"]
    assert "the comment carries the summary and the last" in said["reason"]


def _long_transcript() -> dict[str, Any]:
    lines = [f"message {i}: " + "my order has not arrived " * 12 for i in range(220)]
    return full_packet(transcript=[{"at": f"2026-11-20T09:{i // 60:02d}:{i % 60:02d}Z", "role": "customer",
                                    "text": line} for i, line in enumerate(lines)])


@pytest.mark.parametrize("on_ticket", [True, False])
def test_a_ticket_found_after_an_unknown_outcome_says_whether_its_file_is_on_it(zd: FakeZendesk,
                                                                                on_ticket: bool) -> None:
    # A black-hole review: the attempt that made the ticket met the upload refused and died before
    # recording it (a worker killed): the next one found the ticket and its receipt, rebuilt from the
    # render, said "the whole text is attached, nothing cut" of a ticket holding the last messages only.
    name = "transcript-hnd_01TESTHANDOFF0000000000000.txt"
    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000")
    zd.first_comment(1001, *([name] if on_ticket else []))

    outcome = adapter().deliver(ctx(_long_transcript(), outcome_unknown=True, attempt=2))

    assert (outcome.status, outcome.vendor_id) == ("created", "1001") and not zd.calls("POST", TICKETS)
    if on_ticket:
        assert outcome.receipt["attached"][0]["file"] == name and outcome.receipt["dropped"] == []
        return
    assert "attached" not in outcome.receipt
    [said] = [entry for entry in outcome.receipt["dropped"] if entry.get("file")]
    assert said["part"] == "transcript" and said["file"] == name
    assert said["reason"].startswith(f"{name} is not on the ticket") and "nothing cut" not in said["reason"]


@pytest.mark.parametrize("on_note", [True, False])
def test_a_note_found_after_an_unknown_outcome_says_whether_its_file_is_on_it(zd: FakeZendesk, on_note: bool) -> None:
    # A mends review: the same for a note on the conversation's ticket, its file in the found comment.
    name = "transcript-hnd_01TESTHANDOFF0000000000000.txt"
    context = ctx(_long_transcript(), link=Link(vendor_id="77120"), outcome_unknown=True, attempt=2)
    files = [{"id": 9, "file_name": name, "content_type": "text/plain", "size": 1}] if on_note else []
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120/comments.json", json={"comments": [
        {"id": 1, "html_body": f"<p>Handoff {context.handoff_id} from support-bot</p>", "attachments": files}]})
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120.json",
                json={"ticket": fixture("tickets-by-external-id.json")["tickets"][0] | {"id": 77120, "status": "open"}})

    outcome = adapter().deliver(context)

    assert outcome.status == "updated" and not zd.calls("PUT", "/api/v2/tickets/77120.json")
    if on_note:
        assert outcome.receipt["attached"][0]["file"] == name
        return
    assert "attached" not in outcome.receipt
    [said] = [entry for entry in outcome.receipt["dropped"] if entry.get("file")]
    assert said["file"] == name and said["reason"].startswith(f"{name} is not on the ticket")


def test_a_refusal_an_unknown_outcome_carried_is_not_looked_for_again(zd: FakeZendesk) -> None:
    name = "transcript-hnd_01TESTHANDOFF0000000000000.txt"
    zd.error("POST", UPLOADS, 403, {"error": "Forbidden", "description": "You do not have access to this page."})
    zd.raises("POST", TICKETS, requests.exceptions.ReadTimeout("read timed out"))
    target = adapter()
    with pytest.raises(OutcomeUnknown) as raised:
        target.deliver(ctx(_long_transcript()))
    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000")

    outcome = target.deliver(ctx(_long_transcript(), outcome_unknown=True, attempt=2,
                                 sent_to=raised.value.sent_to))

    [said] = [entry for entry in outcome.receipt["dropped"] if entry.get("file")]
    assert said["file"] == name and said["reason"].startswith("Zendesk refused")
    assert not zd.calls("GET", "/api/v2/tickets/1001/comments.json")


def test_a_refused_upload_leaves_the_note_on_the_conversations_ticket(zd: FakeZendesk) -> None:
    packet = full_packet(collected_data={f"field_{i}": "ü" * 2000 for i in range(40)})
    context = ctx(packet)
    zd.error("POST", UPLOADS, 422, {"error": "RecordInvalid", "description": "Attachments are disabled"})
    zd.update_ticket(77120)

    outcome = adapter().deliver(replace(context, link=Link(vendor_id="77120")))

    [body] = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert "uploads" not in body["ticket"]["comment"]
    assert "Why a person is needed" in body["ticket"]["comment"]["html_body"]
    assert "Zendesk refused it as a file (422: RecordInvalid" in body["ticket"]["comment"]["html_body"]
    assert outcome.status == "updated" and "attached" not in outcome.receipt
    assert [entry["part"] for entry in outcome.receipt["dropped"] if entry.get("file")] == ["brief"]
    # What only the file held is not listed delivered: the comment kept who, why, what and the
    # urgency (a review of the mend: every part was still listed), and the five-message transcript.
    gone = {"attempted_solutions", "collected_data", "history"}
    assert "transcript" in outcome.receipt["delivered"]
    assert re.search(r"<h3>Transcript — [^<]*: below\.</h3>", body["ticket"]["comment"]["html_body"])
    assert not gone & set(outcome.receipt["delivered"]) and {"customer", "escalation"} <= set(
        outcome.receipt["delivered"])
    assert gone <= {entry["part"] for entry in outcome.receipt["dropped"]
                    if entry["reason"] == "not on the ticket: only handoff-hnd_01TESTHANDOFF0000000000000.txt held it"}
    assert all("_undelivered" not in entry for entry in outcome.receipt["dropped"])


def test_an_upload_refusing_the_credentials_fails_as_the_ticket_would(zd: FakeZendesk) -> None:
    packet = full_packet(collected_data={f"field_{i}": "ü" * 2000 for i in range(40)})
    zd.error("POST", UPLOADS, 401, {"error": "Couldn't authenticate you"})
    with pytest.raises(AuthError, match=r"\(401\)"):
        adapter().deliver(ctx(packet))
    assert zd.calls("POST", TICKETS) == []


def _contacts(count: int) -> list[dict[str, object]]:
    return [{"at": f"2025-{i % 12 + 1:02d}-{i % 28 + 1:02d}T10:00:00Z", "channel": "email",
             "summary": f"contact {i}: " + "the agent explained the reconnect flow and closed it. " * 16,
             "ticket": {"system": "zendesk", "id": str(50000 + i)}} for i in range(80)]


def test_a_long_history_leaves_the_rest_of_the_brief_in_the_comment(zd: FakeZendesk) -> None:
    # Eighty long earlier contacts pushed what was tried, what was collected and a short transcript
    # out of the comment (down to who, why and what they want), with most of its room unused.
    packet = full_packet(history=_contacts(80))
    context = ctx(packet)
    upload = zd.upload(filename="handoff-hnd_01TESTHANDOFF0000000000000.txt")
    zd.create_ticket()

    outcome = adapter().deliver(context)

    assert upload.calls[0].request.body.decode("utf-8") == context.brief.text  # every contact, in the file
    comment = zd.json_bodies("POST", "/api/v2/tickets.json")[0]["ticket"]["comment"]["html_body"]
    assert "Already tried" in comment and "What the bot collected" in comment
    transcript = context.brief.html[context.brief.html.index("<h3>Transcript"):context.brief.html.index("<hr>")]
    assert transcript.count("Customer") >= 2 and transcript in comment  # the whole transcript, as in the brief
    # The five most recent by day stay (in the order sent), and the rest are counted.
    shown = [int(n) for n in re.findall(r"contact (\d+):", comment)]
    days = sorted(((c["at"], i) for i, c in enumerate(packet["history"])), reverse=True)[:5]
    assert shown == sorted(i for _, i in days)
    assert "…and 75 older contacts, in the attached brief" in comment
    assert "The whole brief is attached as handoff-hnd_01TESTHANDOFF0000000000000.txt" in comment
    assert len(comment.encode()) <= COMMENT_LIMIT_BYTES
    assert "before the 5 most recent" in outcome.receipt["attached"][0]["reason"]


def test_a_long_history_and_transcript_keep_the_summary_and_the_recent_contacts(zd: FakeZendesk) -> None:
    long_chat = [{"role": "customer", "text": f"message {i} " + "ü" * 900, "at": "2026-11-20T10:00:00Z"}
                 for i in range(60)]
    packet = full_packet(history=_contacts(80), transcript=long_chat)
    zd.upload(filename="handoff-hnd_01TESTHANDOFF0000000000000.txt")
    zd.create_ticket()

    outcome = adapter().deliver(ctx(packet))

    comment = zd.json_bodies("POST", "/api/v2/tickets.json")[0]["ticket"]["comment"]["html_body"]
    assert "Already tried" in comment and "What the bot collected" in comment and "message 0" not in comment
    assert len(re.findall(r"contact \d+:", comment)) == 5 and "…and 75 older contacts" in comment
    assert "the summary with the 5 most recent" in outcome.receipt["attached"][0]["reason"]


def test_a_brief_whose_core_is_too_long_keeps_the_subject_and_says_so() -> None:
    packet = full_packet(escalation={"reason": "other", "detail": "ü" * 20_000, "urgency": "high"},
                         intent={"stated_problem": "ü" * 20_000, "summary": "ü" * 20_000})
    context = ctx(packet)
    comment = adapter().render(context)["ticket"]["comment"]["html_body"]
    assert "It is attached in full as handoff-" in comment
    assert "carries the subject only" in adapter().receipt(context, {})["attached"][0]["reason"]


def _chat(count: int, last: str = "") -> list[dict[str, Any]]:
    """`count` messages of ~900 characters, the customer's every other one; `last` the last one's text."""
    chat = [{"at": f"2026-11-20T09:{i // 60:02d}:{i % 60:02d}Z", "role": "customer" if i % 2 else "bot",
             "text": f"message {i}: " + "a" * 900} for i in range(count)]
    return [*chat[:-1], {**chat[-1], "text": last}] if last else chat


BRIEF_FILE = "handoff-hnd_01TESTHANDOFF0000000000000.txt"


def _delivered_oversize(zd: FakeZendesk, packet: dict[str, Any], refused: bool) -> tuple[Any, str]:
    """`packet` made a ticket, Zendesk taking the brief's file or refusing it (attachments turned
    off): the outcome, and the comment sent."""
    if refused:
        zd.error("POST", UPLOADS, 422, {"error": "RecordInvalid", "description": "Attachments are disabled"})
    else:
        zd.upload(filename=BRIEF_FILE)
    zd.create_ticket()
    outcome = adapter().deliver(ctx(packet))
    return outcome, zd.json_bodies("POST", TICKETS)[0]["ticket"]["comment"]["html_body"]


_FILLS_THE_LISTS = {"recent contacts": {"history": _contacts(80)},
                    "core": {"collected_data": {f"field_{i}": "ü" * 2000 for i in range(40)}}}


@pytest.mark.parametrize("refused", [False, True])
@pytest.mark.parametrize("step", ["recent contacts", "core"])
def test_a_transcript_left_to_the_file_with_the_lists_keeps_its_last_messages_in_the_comment(
        zd: FakeZendesk, step: str, refused: bool) -> None:
    # A review: eighty earlier contacts (or long collected values) beside 120 long messages took the
    # transcript to the brief's file with the lists, and none of it stayed — only the summary's
    # "Latest from them" line, with ~52 KB of the 60 KB comment free; with the file refused, not one
    # message was on the ticket.
    name = BRIEF_FILE
    outcome, comment = _delivered_oversize(zd, full_packet(**_FILLS_THE_LISTS[step], transcript=_chat(120)), refused)
    shown = len(re.findall(r"<p><small>[\d:]+</small>", comment))
    assert 20 <= shown < 120 and f"<h3>The last {shown} of 120 messages</h3>" in comment
    assert "message 119:" in comment and f"message {120 - shown}:" in comment
    assert f"message {119 - shown}:" not in comment
    assert len(comment.encode()) <= COMMENT_LIMIT_BYTES + (400 if refused else 0)
    # Their heading says where the rest is, true with the file refused too.
    [heading] = re.findall(r"<h3>Transcript — [^<]*</h3>", comment)
    if refused:
        assert heading.endswith(f": the last {shown} below (Zendesk refused the file holding all).</h3>")
        assert "attached" not in comment
    else:
        assert heading.endswith(f": the last {shown} below, all 120 in the attached {name}.</h3>")
    said = outcome.receipt["dropped" if refused else "attached"][0]
    carries = {"recent contacts": "the summary with the 5 most recent earlier contacts",
               "core": "who, why, what they want, the urgency"}[step]
    assert said["file"] == name and f"carries {carries} and the last {shown} messages" in said["reason"]
    assert "transcript" in outcome.receipt["delivered"]  # in part: the rest only in the file
    assert "transcript" not in {entry["part"] for entry in outcome.receipt["dropped"] if not entry.get("file")}
    if step == "recent contacts":
        assert f"…and 75 older contacts, {'not on this ticket' if refused else 'in the attached brief'}" in comment
    elif not refused:
        assert (f"Earlier contacts, what was tried, what the bot collected and the first {120 - shown} messages of "
                f"the transcript are not in this comment") in comment


@pytest.mark.parametrize("refused", [False, True])
@pytest.mark.parametrize("step", ["recent contacts", "core"])
def test_a_transcript_none_of_whose_messages_fits_is_said_to_be_in_the_file_not_below(zd: FakeZendesk, step: str,
                                                                                    refused: bool) -> None:
    # A review: a five-message transcript left to the file with the lists had "see below / attached"
    # over nothing below, the note calling it too long; with the file refused, the heading still sent
    # agents to it. Here its last message (a pasted log) alone overflows the room the lists left.
    name = BRIEF_FILE
    outcome, comment = _delivered_oversize(zd, full_packet(**_FILLS_THE_LISTS[step], transcript=_chat(5, "the log: " + "x" * 59_000)), refused)
    said = outcome.receipt["dropped" if refused else "attached"][0]
    carries = {"recent contacts": "the summary with the 5 most recent earlier contacts",
               "core": "who, why, what they want and the urgency"}[step]
    assert said["file"] == name and f"carries {carries}{';' if refused else ' and the whole text'}" in said["reason"]
    assert not re.search(r"<p><small>[\d:]+</small>", comment)  # no message of the transcript in the comment…
    [heading] = re.findall(r"<h3>Transcript — [^<]*</h3>", comment)
    assert "below" not in comment and "transcript are too long" not in comment  # …nor said to be
    if refused:
        assert heading.endswith(": not on this ticket (Zendesk refused the file holding it).</h3>")
        assert "attached" not in comment  # nothing sends the agent to a file that is not there
        assert "transcript" in {entry["part"] for entry in outcome.receipt["dropped"] if not entry.get("file")}
    else:
        assert heading.endswith(f": in the attached {name} with the whole brief, not in this comment.</h3>")
    if step == "recent contacts":
        assert f"…and 75 older contacts, {'not on this ticket' if refused else 'in the attached brief'}" in comment


def test_custom_fields_use_the_mapping_value_language() -> None:
    mapping = {
        "lookups": {"tier": {"enterprise": "tier_1"}},
        "custom_fields": [
            {"id": 1, "path": "collected_data.error_code"},
            {"id": 2, "template": "{{ intent.name }} / {{ sentiment.label }}"},
            {"id": 3, "lookup": "tier", "from": "customer.segment", "default": "tier_2"},
            {"id": 4, "literal": "chatbot"},
            {"id": 5, "path": "assignment.team"},
            {"id": 6, "path": "collected_data.not_there"},
        ],
        "subject": {"template": "[{{ assignment.team }}] {{ brief.subject }}"},
    }
    context = ctx()
    ticket = adapter(**mapping).render(context)["ticket"]
    assert ticket["custom_fields"] == [
        {"id": 1, "value": "4012"},
        {"id": 2, "value": "integrations.quickbooks.sync_failure / frustrated"},
        {"id": 3, "value": "tier_1"},
        {"id": 4, "value": "chatbot"},
        {"id": 5, "value": context.assignment["team"]},
    ]
    assert ticket["subject"] == f"[{context.assignment['team']}] {context.brief.subject}"


@pytest.mark.parametrize("spec", [{"template": "Chatbot: {{ intent.stated_problem }}"},
                                  {"path": "intent.stated_problem"}])
def test_a_mapped_subject_is_one_line_with_its_secrets_masked_as_the_briefs(spec: dict[str, str]) -> None:
    # A review: a mapped subject went as written — a card number and a password into the subject
    # views, searches and notification e-mails show, its line breaks kept — where README promises
    # "whatever it says … masked in a ticket's subject", as the brief's is.
    packet = full_packet()
    packet["intent"]["stated_problem"] = "Refund to my card 4111 1111 1111 1111 please,\npassword: hunter2"
    subject = adapter(subject=spec).render(ctx(packet))["ticket"]["subject"]
    assert "4111 1111 1111 1111" not in subject and "hunter2" not in subject and "\n" not in subject
    assert "[redacted card ••••1111]" in subject and "[redacted secret]" in subject
    if "path" in spec:  # the brief's subject says the same problem, masked the same way
        assert subject == ctx(packet).brief.subject


def test_a_mapped_subject_finding_a_list_is_the_briefs_and_says_so(caplog) -> None:
    # It went as Python's list text, "['integrations', 'quickbooks']".
    context = ctx()
    with caplog.at_level("WARNING", logger="connector.mapping_values"):
        subject = adapter(subject={"path": "routing.skills"}).render(context)["ticket"]["subject"]
    assert subject == context.brief.subject
    [record] = caplog.records
    assert record.source == "zendesk.yaml subject" and "is a list" in record.error


@pytest.mark.parametrize("spec", [
    {"lookup": "tier", "from": "customer.segment", "default": None},   # no entry for the segment, the default null
    {"lookup": {"vip": None}, "from": "customer.segment"},              # the segment's entry mapped to null
    {"literal": None},
])
def test_a_mapped_subject_resolving_to_null_is_the_briefs(spec: dict[str, Any]) -> None:
    # A review: a subject spec that resolves to null gave the ticket the subject "None", where
    # mappings/README.md says one that finds nothing falls back to the brief's (Salesforce's did).
    packet = full_packet()
    packet["customer"]["segment"] = "vip"
    context = ctx(packet)
    target = adapter(subject=spec, lookups={"tier": {"enterprise": "Tier 1"}})
    assert target.render(context)["ticket"]["subject"] == context.brief.subject


def test_a_template_failing_on_a_packets_values_leaves_its_field_out_and_says_where(caplog) -> None:
    # 40 seats + ' seats' raised TypeError inside the delivery: an internal error, retried until
    # dead, naming neither file nor key — for every handoff with a number of seats.
    mapping = {"custom_fields": [{"id": 1, "template": "{{ customer.attributes.seats + ' seats' }}"},
                                 {"id": 2, "path": "collected_data.error_code"}],
               "subject": {"template": "{{ 1 // 0 }}"}}
    context = ctx()
    with caplog.at_level("WARNING", logger="connector.mapping_values"):
        ticket = adapter(**mapping).render(context)["ticket"]
    assert ticket["custom_fields"] == [{"id": 2, "value": "4012"}] and ticket["subject"] == context.brief.subject
    said = {(r.getMessage(), r.source, r.error) for r in caplog.records}
    assert said == {
        ("a mapping template failed on this handoff's values; its value is not sent", "zendesk.yaml custom_fields[0]",
         "template error: TypeError: unsupported operand type(s) for +: 'int' and 'str'"),
        ("a mapping template failed on this handoff's values; its value is not sent", "zendesk.yaml subject",
         "template error: ZeroDivisionError: integer division or modulo by zero")}


def test_the_outcome_names_who_the_packet_delivered_was_for(zd: FakeZendesk) -> None:
    # A second review: the outbox took the mark from the stored packet, which for a batch of messages
    # opening the ticket holds no customer; the packet as delivered does.
    from adapters.base import customer_marks

    zd.create_ticket()
    context = ctx()
    outcome = adapter().deliver(context)
    assert outcome.customer == customer_marks(context.packet) and set(outcome.customer) == {"email", "phone", "id"}


def test_tags_say_the_segment_the_team_routed_to_the_language_and_a_repeat_contact() -> None:
    # A VIP's or an escalation's ticket looked like any other in Zendesk's views and SLA policies.
    packet = full_packet(conversation={"id": "c", "language": "de-AT"},
                         history=[{"at": "2026-11-18T10:00:00Z", "summary": "same order, still late"}])
    packet["customer"]["segment"] = "VIP"
    tags = adapter().render(ctx(packet, assignment={**ASSIGNMENT, "team": "priority_support"}))["ticket"]["tags"]
    assert {"segment_vip", "team_priority_support", "lang_de", "repeat_contact"} <= set(tags)
    packet["conversation"]["language"] = "de_AT"
    assert "lang_de" in adapter().render(ctx(packet, assignment=ASSIGNMENT))["ticket"]["tags"]
    update = adapter().render(ctx(packet, link=Link(vendor_id="77120")))["tags"]
    # No team tag on an update (it used to be there): an update routes nothing, so it claimed a move.
    assert {"segment_vip", "repeat_contact"} <= set(update) and not any(t.startswith("team_") for t in update)
    assert "repeat_contact" not in adapter().render(ctx())["ticket"]["tags"]  # its one contact was 49 days before


def test_a_repeat_not_moved_to_the_team_routing_chose_is_not_tagged_for_that_team(zd: FakeZendesk) -> None:
    # A review: the note said "this ticket was opened for technical_support and was not moved", and
    # the same update added team_escalations — escalations' tag-based views and SLAs picked up a
    # ticket that was never moved there.
    packet = full_packet()
    packet["sentiment"]["label"] = "angry"
    link = Link(vendor_id="77120", extra={"opened_with": {"team": "technical_support", "urgency": "high"}})
    repeat = ctx(packet, link=link, assignment={**ASSIGNMENT, "team": "escalations", "priority": "high"})
    assert repeat.not_moved is not None
    zd.update_ticket(77120)

    adapter().deliver(repeat)

    [body] = zd.json_bodies("PUT", "/api/v2/tickets/77120.json")
    assert "was opened for technical_support and was not moved" in body["ticket"]["comment"]["html_body"]
    [sent] = zd.json_bodies("PUT", "/api/v2/tickets/77120/tags")
    tags = sent["tags"]
    assert not any(tag.startswith("team_") for tag in tags)
    # Added, never replaced: the first handoff's sentiment_frustrated stays beside it (a remove_tags
    # could take away the same tag an agent or a trigger set).
    assert "sentiment_angry" in tags and not {"tags", "additional_tags", "remove_tags"} & set(body["ticket"])


def test_a_field_its_template_could_not_give_is_in_the_receipt_not_only_the_log(zd: FakeZendesk, caplog) -> None:
    # The ticket went without the admin's "seats" field and the bot's receipt said everything arrived:
    # only the log knew. The receipt names the file and key; the log says it once.
    zd.create_ticket()
    mapping = {"custom_fields": [{"id": 1, "template": "{{ customer.attributes.seats + ' seats' }}"},
                                 {"id": 2, "template": "{{ customer.attributes.seats + ' seats' }}"}]}
    with caplog.at_level("WARNING", logger="connector.mapping_values"):
        outcome = adapter(**mapping).deliver(ctx())
    reason = ("zendesk.yaml custom_fields[{}]: template error: TypeError: unsupported operand type(s) for +: 'int' "
              "and 'str' on this handoff's values; that value was not sent")
    assert [d for d in outcome.receipt["dropped"] if d["part"] == "mapping"] == [
        {"part": "mapping", "reason": reason.format(0)}, {"part": "mapping", "reason": reason.format(1)}]
    assert "customer" in outcome.receipt["delivered"]  # the brief itself arrived
    assert [r.source for r in caplog.records] == ["zendesk.yaml custom_fields[0]", "zendesk.yaml custom_fields[1]"]


def test_a_value_the_sandbox_refuses_on_this_packet_is_left_out_not_a_failed_delivery(zd: FakeZendesk) -> None:
    # The sandbox's refusal escaped as a ConfigError: every attempt was a "mapping error" retried, no ticket.
    zd.create_ticket()
    mapping = {"custom_fields": [{"id": 1, "template": "{{ customer.attributes.pop('plan') }}"},
                                 {"id": 2, "path": "collected_data.error_code"}]}
    outcome = adapter(**mapping).deliver(ctx())
    [body] = zd.json_bodies("POST", TICKETS)
    assert outcome.status == "created" and body["ticket"]["custom_fields"] == [{"id": 2, "value": "4012"}]
    [left_out] = [d for d in outcome.receipt["dropped"] if d["part"] == "mapping"]
    assert left_out["reason"].startswith("zendesk.yaml custom_fields[0]: template error: access to attribute 'pop'")


def test_a_custom_field_mapped_to_an_object_is_left_out_and_in_the_receipt(zd: FakeZendesk) -> None:
    # {"value": {"plan": …}} is no value Zendesk takes (text, a number, true/false, a list of text):
    # it refused the whole ticket. A list of scalars is still a multiselect's value.
    zd.create_ticket()
    mapping = {"custom_fields": [{"id": 1, "path": "customer.attributes"}, {"id": 2, "path": "routing.skills"}]}
    outcome = adapter(**mapping).deliver(ctx())
    [body] = zd.json_bodies("POST", TICKETS)
    assert body["ticket"]["custom_fields"] == [{"id": 2, "value": ["integrations", "quickbooks"]}]
    [left_out] = [d for d in outcome.receipt["dropped"] if d["part"] == "mapping"]
    assert left_out["reason"] == (
        "zendesk.yaml custom_fields[0]: customer.attributes is an object or a list of them, which a field does not "
        "take; write it as text with a template: {{ customer.attributes | tojson }} on this handoff's values; that "
        "value was not sent")


def test_a_list_of_numbers_or_flags_goes_as_a_multiselects_text_options(zd: FakeZendesk) -> None:
    # A review: `order_ids: [1042, 1043]` went as numbers, which Zendesk's schema refuses (a
    # multiselect's value is an array of strings); its refusal names no field (`details.base`), so
    # the ticket was made again without any custom field. The fixture checks the schema.
    zd.create_ticket()
    packet = full_packet()
    packet["collected_data"].update(order_ids=[1042, 1043], flags=[True, None, False])
    mapping = {"custom_fields": [{"id": 1, "path": "collected_data.order_ids"},
                                 {"id": 2, "path": "collected_data.flags"}]}
    adapter(**mapping).deliver(ctx(packet))
    [body] = zd.json_bodies("POST", TICKETS)
    assert body["ticket"]["custom_fields"] == [{"id": 1, "value": ["1042", "1043"]},
                                               {"id": 2, "value": ["true", "false"]}]


def test_a_field_left_out_is_still_in_the_receipt_when_a_retry_finds_the_ticket_a_timeout_hid(zd: FakeZendesk) -> None:
    # A review: the attempt that found the ticket after a timeout listed nothing as dropped — the
    # bot read that everything arrived while the admin's field never reached the ticket.
    mapping = {"custom_fields": [{"id": 1, "template": "{{ customer.attributes.seats + ' seats' }}"}]}
    zd.raises("POST", TICKETS, requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown) as lost:
        adapter(**mapping).deliver(ctx())
    [carried] = lost.value.sent_to["left_out"]
    assert carried["part"] == "mapping" and carried["reason"].startswith("zendesk.yaml custom_fields[0]: template")
    zd.tickets_by_external_id("hnd_01TESTHANDOFF0000000000000")
    found = adapter(**mapping).deliver(ctx(outcome_unknown=True, attempt=2, sent_to=lost.value.sent_to))
    assert found.status == "created" and [d for d in found.receipt["dropped"] if d["part"] == "mapping"] == [carried]


def test_a_dry_run_shows_the_same_receipt_without_logging(caplog) -> None:
    mapping = {"custom_fields": [{"id": 1, "template": "{{ 1 // 0 }}"}]}
    with caplog.at_level("WARNING", logger="connector.mapping_values"):
        payload, left_out = adapter(**mapping).rendered(ctx(), quiet=True)
    assert "custom_fields" not in payload["ticket"] or payload["ticket"]["custom_fields"] == []
    assert [d["reason"].split(":")[0] for d in left_out] == ["zendesk.yaml custom_fields[0]"]
    assert not caplog.records


def test_bidirectional_controls_never_reach_the_tickets_own_fields_raw() -> None:
    packet = full_packet(customer={"name": "Dana \u202eknab", "phone": "+1 415 \u202e4321 555"},
                         collected_data={"order_number": "ORD-\u202e1234\u202c"})
    ticket = adapter(custom_fields=[{"id": 1, "path": "collected_data.order_number"}]).render(ctx(packet))["ticket"]
    assert ticket["requester"] == {"name": "Dana knab"}  # the phone goes to an end user only (customer.id)
    assert ticket["custom_fields"] == [{"id": 1, "value": "ORD-[U+202E]1234[U+202C]"}]


def test_a_custom_field_without_a_value_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"custom_fields\[0\]"):
        adapter(custom_fields=[{"id": 1}])


@pytest.mark.parametrize(("mapping", "said"), [
    # An operator's review: a misspelt `default` dropped the field from every ticket, unsaid.
    ({"custom_fields": [{"id": 360001, "lookup": {"vip": "tier_1"}, "from": "customer.segment",
                         "defualt": "tier_2"}]}, r"custom_fields\[0\].*unknown key\(s\) \['defualt'\]"),
    ({"custom_fields": [{"id": 360001, "path": "intent.name"}, {"id": "360001", "path": "customer.id"}]},
     r"custom_fields\[1\]\.id.*360001 is mapped twice"),  # Zendesk keeps one of the two values
    ({"tags": ["chatbot", {"a": 1}]}, r"tags\[1\].*must be a word or a number"),  # sent as the tag `a_1`
    ({"tags": ["chatbot", None]}, r"tags\[1\]"), ({"tags": ["???"]}, r"tags\[0\]"), ({"tags": [True]}, r"tags\[0\]"),
    # An admin's review: every ticket got the constant tag `intent_name`.
    ({"tags": ["{{ intent.name }}"]}, r"tags\[0\].*not a template.*'intent_name' on every ticket"),
])
def test_a_mistake_in_custom_fields_or_tags_is_refused_at_start_up(mapping, said) -> None:
    with pytest.raises(ConfigError, match=said):
        adapter(**mapping)
    adapter(custom_fields=[{"id": 360001, "lookup": {"vip": "tier_1"}, "from": "customer.segment", "default": "t2"}],
            tags=["chatbot", 2026, "v2"])  # what is meant still loads


def test_a_timed_out_comment_is_looked_up_not_posted_twice(zd: FakeZendesk) -> None:
    link = Link(vendor_id="77120", url="https://acme.zendesk.com/agent/tickets/77120")
    context = ctx(link=link, outcome_unknown=True)
    comments = "/api/v2/tickets/77120/comments.json"
    zd.rsps.add("GET", zd.origin + comments, status=200, json={"comments": [
        {"id": 1, "html_body": f"<p>Handoff {context.handoff_id} from support-bot</p>"}]})
    zd.show_ticket(77120)  # not solved: nothing to reopen

    outcome = adapter().deliver(context)

    assert (outcome.status, outcome.vendor_id) == ("updated", "77120")
    assert not zd.calls("PUT", "/api/v2/tickets/77120.json")


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_comment_answered_5xx_is_looked_up_before_it_is_sent_again(zd: FakeZendesk, status: int) -> None:
    """A gateway's 5xx may come after Zendesk added the comment, and a comment has no idempotency
    key: resending blindly could post the brief twice."""
    link = Link(vendor_id="77120", url="https://acme.zendesk.com/agent/tickets/77120")
    zd.error("PUT", "/api/v2/tickets/77120.json", status, "error-503.html")
    with pytest.raises(OutcomeUnknown):
        adapter().deliver(ctx(link=link))
    context = ctx(link=link, outcome_unknown=True, attempt=2)
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120/comments.json", status=200, json={"comments": [
        {"id": 1, "html_body": f"<p>Handoff {context.handoff_id} from support-bot</p>"}]})
    zd.show_ticket(77120)

    outcome = adapter().deliver(context)

    assert (outcome.status, outcome.vendor_id) == ("updated", "77120")
    assert len(zd.calls("PUT", "/api/v2/tickets/77120.json")) == 1


def test_a_timed_out_comment_that_did_not_land_is_sent_again(zd: FakeZendesk) -> None:
    link = Link(vendor_id="77120", url="https://acme.zendesk.com/agent/tickets/77120")
    zd.rsps.add("GET", zd.origin + "/api/v2/tickets/77120/comments.json", status=200,
                json={"comments": [{"id": 1, "html_body": "<p>an agent's reply</p>"}]})
    zd.update_ticket(77120)

    outcome = adapter().deliver(ctx(link=link, outcome_unknown=True))

    assert outcome.status == "updated"
    assert len(zd.calls("PUT", "/api/v2/tickets/77120.json")) == 1


def test_probe_signs_in_and_says_as_whom(zd: FakeZendesk) -> None:
    zd.me()
    assert adapter().probe().said == "signed in as johnny@example.com (agent)"
    assert zd.rsps.calls[0].request.headers["Authorization"] == basic_auth()


@pytest.mark.parametrize(("user", "said"), [
    ({"id": None, "name": "Anonymous user", "role": "end-user"}, "anonymous user"),
    ({"role": "end-user", "email": "jo@example.com"}, "as jo@example.com, an end user: tickets need an agent"),
])
def test_probe_refuses_an_anonymous_or_end_user_sign_in(zd: FakeZendesk, user: dict[str, Any], said: str) -> None:
    zd.me(**user)
    with pytest.raises(AuthError, match=said):
        adapter().probe()


def test_probe_with_refused_credentials_is_an_auth_error(zd: FakeZendesk) -> None:
    zd.rsps.add("GET", "https://acme.zendesk.com/api/v2/users/me.json", status=401,
                json={"error": "Couldn't authenticate you"})
    with pytest.raises(AuthError, match="Zendesk refused the credentials \\(401\\)"):
        adapter().probe()


def test_the_handed_off_again_line_counts_towards_the_comment_limit(monkeypatch) -> None:
    # Added after the size was chosen, it could take a brief that just fitted over Zendesk's limit.
    import adapters.zendesk as zendesk_module

    first = ctx()
    limit = len(first.brief.html.encode("utf-8")) + 10  # the brief alone fits, with the line it does not
    monkeypatch.setattr(zendesk_module, "COMMENT_LIMIT_BYTES", limit)
    assert adapter().render(first)["ticket"]["comment"]["html_body"] == first.brief.html
    again = adapter().render(ctx(link=Link(vendor_id="77120")))["ticket"]["comment"]["html_body"]
    assert again.startswith("<p><em>Handed off again") and len(again.encode("utf-8")) <= limit
    assert "attached as transcript-" in again  # the summary, the transcript in a file


@pytest.mark.parametrize(("extra", "replaced"), [
    ({"comment": {"html_body": "<p>see attached</p>"}}, "comment.html_body"),
    ({"comment": "see attached"}, "comment"),  # a value where the comment was: all of it replaced
])
def test_a_vendor_extra_that_replaces_the_brief_is_in_the_receipt(extra, replaced):
    """The receipt said every part arrived while the ticket held only the bot's own text."""
    context = ctx(full_packet(vendor_extra={"zendesk": {**extra, "ticket_form_id": 123}}))
    zendesk = adapter()
    receipt = zendesk.receipt(context, zendesk.render(context))
    assert receipt["delivered"] == []
    assert [d["part"] for d in receipt["dropped"]] == list(context.brief.sections)
    assert receipt["dropped"][0]["reason"].startswith(f"vendor_extra.zendesk.{replaced} replaced the text that "
                                                      "carries the brief")
    # Fields beside it (a form, the comment's visibility) leave the brief where it is.
    beside = ctx(full_packet(vendor_extra={"zendesk": {"ticket_form_id": 123, "comment": {"public": True}}}))
    assert zendesk.receipt(beside, zendesk.render(beside))["delivered"] == list(beside.brief.sections)


def test_a_priority_mapped_to_null_sends_none_and_loads():
    # Zendesk's ticket priority is nullable: `low: null` (no priority) loaded before its values
    # were checked against Zendesk's set, and must still.
    from adapters.zendesk import _config

    assert _config({"priority": {"low": None}})["priority"]["low"] is None


def test_a_refused_lookup_of_an_earlier_given_up_ticket_fails_rather_than_open_a_second(zd: FakeZendesk) -> None:
    # A review: the catch that spares a Slack channel the app cannot read took any refusal of the
    # lookup for "not made" — and an earlier create whose outcome was unknown may have made one.
    given_up = ctx(handoff_id="hnd_01TESTHANDOFF0000000000000", outcome_unknown=True)
    zd.rsps.add("GET", zd.origin + TICKETS, status=422, json={"error": "InvalidValue", "description": "x"})
    with pytest.raises(RejectedError):
        adapter().deliver(ctx(handoff_id="hnd_01TESTHANDOFF0000000000001", earlier=(given_up,)))
    assert zd.calls("POST", TICKETS) == []


def test_an_assignee_refused_beside_another_vendors_agent_is_named_as_zendesks_own(zd: FakeZendesk) -> None:
    # A review: routing.yaml's Zendesk assignee and Salesforce owner are two people; the note said
    # "Not assigned to" the first named, whichever vendor's.
    agents = [{"target": "salesforce", "id": "0055g00000DanaAAAA", "label": "Salesforce agent 0055g00000DanaAAAA"},
              {"target": "zendesk", "id": "381726354", "label": "Zendesk agent 381726354"}]
    assignment = {**ASSIGNMENT, "agent": "Salesforce agent 0055g00000DanaAAAA, Zendesk agent 381726354",
                  "routed_agents": agents, "targets": {"zendesk": {"group_id": 360001, "assignee_id": 381726354}}}
    zd.rsps.add("POST", zd.origin + "/api/v2/tickets.json", status=422, json={
        "error": "RecordInvalid", "description": "Record validation errors",
        "details": {"assignee": [{"description": "Assignee: is not a member of the group", "error": "InvalidValue"}]}})
    zd.create_ticket({"id": 1005})
    adapter().deliver(ctx(full_packet(), assignment=assignment))
    _, second = zd.json_bodies("POST", "/api/v2/tickets.json")
    assert second["ticket"]["comment"]["html_body"].startswith("<p><em>Not assigned to Zendesk agent 381726354: ")


def test_a_403_says_what_the_api_user_may_not_do_not_that_the_credentials_were_refused(zd: FakeZendesk) -> None:
    zd.error("POST", TICKETS, 403, {"error": "Forbidden", "description": "You do not have access to this page."})
    with pytest.raises(AuthError, match=r"Zendesk does not let the API user do this \(403\): Forbidden") as raised:
        adapter().deliver(ctx())
    assert "credentials" not in raised.value.message


def test_an_older_open_tickets_agent_is_offered_when_the_newest_ones_no_longer_takes_tickets(
        zd: FakeZendesk, clock: list[float]) -> None:
    # A review of the mend: the newest assigned ticket's agent suspended, the older one's active — nobody
    # was offered, where Salesforce's lookup offers the next case's owner.
    newest = {**fixture("search-open-tickets.json")["results"][0], "id": 2002, "assignee_id": 111}
    older = {**fixture("search-open-tickets.json")["results"][0], "id": 1001, "assignee_id": 381156009921}
    zd.search(query="type:ticket requester:dana.whitfield@example.com status<solved", results=[newest, older])
    zd.show_user(111, suspended=True)
    zd.show_user()
    assert adapter().previous_agent(full_packet()) == {"id": "381156009921", "name": "Sam Okafor",
                                                       "email": "sam@acme.example"}


def test_a_custom_field_template_cannot_put_a_masked_card_back_together() -> None:
    # A review: the packet is masked before rendering, and a template joined a card's four groups
    # into a custom field whole, with `redact: [card]` — a path keeps an identity field the admin sends.
    packet = full_packet()
    packet["collected_data"]["card_groups"] = ["4111", "1111", "1111", "1111"]
    mapped = adapter(redact=["card"], custom_fields=[
        {"id": 1, "template": "{{ collected_data.card_groups | join(' ') }}"}, {"id": 2, "path": "customer.email"}])
    fields = mapped.render(ctx(packet))["ticket"]["custom_fields"]
    assert fields == [{"id": 1, "value": "[redacted card ••••1111]"}, {"id": 2, "value": packet["customer"]["email"]}]


def test_a_template_writing_an_identity_field_or_a_link_sends_it_whole_and_the_subject_is_masked_too() -> None:
    # A review of the mend above: every kind was masked again — `{{ customer.email }}` went as
    # "[redacted email]" and a signed `conversation.url` lost its token, which README says never
    # happens; and a mapped subject's template was not masked again at all.
    packet = full_packet()
    packet["conversation"]["url"] = "https://bots.acme.example/c/conv-1029?access_token=a1b2c3d4e5f6g7h8i9j0k1l2"
    packet["collected_data"]["card_groups"] = ["4111", "1111", "1111", "1111"]
    mapped = adapter(redact=["card", "email", "phone", "secret"],
                     subject={"template": "Card {{ collected_data.card_groups | join('') }}"}, custom_fields=[
                         {"id": 1, "template": "{{ customer.name }} <{{ customer.email }}>"},
                         {"id": 2, "template": "{{ conversation.url }}"}])
    ticket = mapped.render(ctx(packet))["ticket"]
    assert [f["value"] for f in ticket["custom_fields"]] == [
        f"{packet['customer']['name']} <{packet['customer']['email']}>", packet["conversation"]["url"]]
    assert ticket["subject"] == "Card [redacted card ••••1111]"


def test_a_subject_reading_a_misspelt_packet_field_is_warned_of() -> None:
    # As a custom field's path is (`mapping_values.misspelt_in`): the subject fell back to the brief's, unsaid.
    assert adapter(subject="{{ intent.stated_problm }}").mapping_warnings() == [
        "mappings/zendesk.yaml: subject: intent.stated_problm is no field the packet declares — did you mean "
        "intent.stated_problem? (a bot's own field is read as written)"]
    assert adapter(subject="{{ intent.stated_problem }}").mapping_warnings() == []


def test_a_card_sent_as_a_whole_number_with_a_fraction_is_masked_in_a_mapped_field_and_the_comment() -> None:
    # A data protection review: `"card_number": 4111111111111111.0` (protobuf's Struct, a number slot)
    # went whole to a custom field mapped by its path and to the comment, with `redact: [card]`.
    packet = full_packet()
    packet["collected_data"]["card_number"] = 4111111111111111.0
    mapped = adapter(redact=["card"], custom_fields=[{"id": 1, "path": "collected_data.card_number"}])
    ticket = mapped.render(mapped.for_target(ctx(packet)))["ticket"]
    assert ticket["custom_fields"] == [{"id": 1, "value": "[redacted card ••••1111]"}]
    assert "4111111111111111" not in json.dumps(ticket) and "[redacted card ••••1111]" in ticket["comment"]["html_body"]


@pytest.mark.parametrize("step", ["transcript", "recent contacts", "core"])
def test_a_file_on_a_message_the_comment_leaves_out_is_not_delivered_when_zendesk_refuses_the_upload(zd, step):
    # A review: the comment kept the last messages, an earlier one's invoice was only in the refused
    # file, and the receipt told the bot the customer's files were on the ticket.
    chat = _chat(120)
    chat[3] = {**chat[3], "attachments": [{"url": "https://files.example/invoice-4412.pdf", "name": "invoice-4412.pdf",
                                           "content_type": "application/pdf", "size": 1000}]}
    outcome, comment = _delivered_oversize(zd, full_packet(transcript=chat, **_FILLS_THE_LISTS.get(step, {})),
                                           refused=True)
    assert "invoice-4412" not in comment
    assert "attachments" not in outcome.receipt["delivered"]
    assert "attachments" in [dropped["part"] for dropped in outcome.receipt["dropped"]]
