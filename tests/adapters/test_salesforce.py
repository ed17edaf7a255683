"""The Salesforce adapter against a fake org at the HTTP boundary (`responses`): what goes on the
wire (JSON bodies, SOQL, headers), and how every failure comes back as `adapters.errors`."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import MaxRetryError, NewConnectionError

from adapters.base import MAX_MERGES, Link
from adapters.errors import AuthError, OutcomeUnknown, RateLimited, RejectedError, TicketGone, TransientError
from adapters.salesforce import COMMENT_MAX_BYTES, CONTINUED, OVERFLOW, SalesforceAdapter
from connector.brief import render_brief
from connector.errors import ConfigError
from connector.settings import Settings
from tests.factories import full_packet, make_context
from tests.fakes.salesforce import API_USER, IDS, INSTANCE, QUEUE, TOKEN, SalesforceFake

CASE_ID = IDS["Case"]
HID = "hnd_01TESTHANDOFF0000000000000"
TOKEN_SETTINGS = Settings(salesforce_instance_url=INSTANCE, salesforce_access_token=TOKEN, vendor_timeout_s=7)
PASSWORD_SETTINGS = Settings(salesforce_username="handoff@acme.example", salesforce_password="pw",
                             salesforce_security_token="sectok")
CC_SETTINGS = Settings(salesforce_instance_url=INSTANCE, salesforce_client_id="3MVG9id",
                       salesforce_client_secret="s3cret")
CONTACT_SOQL = "SELECT Id FROM Contact WHERE Email = {} ORDER BY CreatedDate ASC LIMIT 1"


@pytest.fixture
def org() -> Iterator[SalesforceFake]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield SalesforceFake(rsps)


def adapter(settings: Settings = TOKEN_SETTINGS, **mapping: Any) -> SalesforceAdapter:
    return SalesforceAdapter(settings, mapping)


def ctx_for(packet: dict[str, Any] | None = None, **kwargs: Any):
    return make_context(packet if packet is not None else full_packet(), target="salesforce", **kwargs)


def routed(owner_id: str = "00G5g000003QueueAA") -> dict[str, Any]:
    return {"team": "billing", "queue": "Billing", "agent": None, "priority": "urgent", "rule": "vip",
            "trace": [], "targets": {"salesforce": {"owner_id": owner_id}}}


def rejoin(bodies: list[str]) -> str:
    """The transcript back from comment bodies: drop each header line (and the line under it that
    dates a later part's times), undo the marked cuts."""
    return unsplit([_below_header(body) for body in bodies])


def _below_header(body: str) -> str:
    rest = body.split("\n", 1)[1]
    return rest.split("\n", 1)[1] if rest.startswith("(times UTC, ") else rest


def unsplit(pieces: list[str]) -> str:
    """What `split_blocks` was given (joined by lines), its cuts' marks taken out: a piece after a
    cut begins with RESUMED — never at the margin, where a customer's "[09:20] Agent:" passed for a
    transcript line."""
    from adapters.salesforce import RESUMED

    text, cut = "", False
    for piece in pieces:
        if cut:
            assert piece.startswith(RESUMED), piece[:40]
            piece = piece.removeprefix(RESUMED)
        cut = piece.endswith(CONTINUED)
        text += piece.removesuffix(CONTINUED) if cut else piece + "\n"
    return text.removesuffix("\n")


# ---- create ----------------------------------------------------------------------------------------


def test_create_finds_contact_by_escaped_email_then_posts_case_and_comments(org: SalesforceFake) -> None:
    customer = full_packet()["customer"] | {"email": "o'brien@example.com", "name": "Siobhán O'Brien"}
    ctx = ctx_for(full_packet(customer=customer), assignment=routed())
    org.query([{"Id": "0035g00000Existing"}],
              soql="SELECT Id FROM Contact WHERE Email = 'o\\'brien@example.com' ORDER BY CreatedDate ASC LIMIT 1")
    org.create("Case", headers={"Authorization": f"Bearer {TOKEN}", "Sforce-Auto-Assign": "FALSE"})
    org.comments(1)

    outcome = adapter().deliver(ctx)

    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert outcome.url == f"{INSTANCE}/lightning/r/Case/{CASE_ID}/view"
    [case] = org.sent("Case")
    assert case["ContactId"] == "0035g00000Existing"
    assert case["OwnerId"] == "00G5g000003QueueAA"
    assert case["Subject"] == "Invoices stopped syncing to QuickBooks; reconnecting did not help"
    assert case["Description"] == ctx.brief.text
    assert (case["Priority"], case["Origin"], case["Status"]) == ("High", "Web", "New")
    assert (case["SuppliedEmail"], case["SuppliedName"]) == ("o'brien@example.com", "Siobhán O'Brien")
    [comment] = org.sent("CaseComment")
    assert comment["ParentId"] == CASE_ID
    assert comment["IsPublished"] is False
    # Dated and zoned above the lines, which carry times only (a one-day transcript): it said [09:14:02] alone.
    assert comment["CommentBody"].startswith(f"Handoff {HID} · transcript · part 1/1\nTranscript of handoff {HID} — "
                                             f"5 messages, 2026-11-20 09:14 – 09:17 UTC, 3 min\n[09:14:02] Customer:")
    assert rejoin([comment["CommentBody"]]) == "\n".join((ctx.brief.transcript_heading, *ctx.brief.transcript_lines))
    assert not org.sent("Contact")  # found, not created
    assert all(c.request.headers["Authorization"] == f"Bearer {TOKEN}" for c in org.calls())
    assert all(c.request.req_kwargs["timeout"] == 7 for c in org.calls())
    assert outcome.reply["contact_id"] == "0035g00000Existing"


def test_create_makes_the_contact_when_none_matches_and_lets_rules_assign(org: SalesforceFake) -> None:
    org.query([])
    org.create("Contact")
    org.create("Case", headers={"Sforce-Auto-Assign": "TRUE"})
    org.comments(1)

    adapter().deliver(ctx_for())

    assert org.sent("Contact") == [{"FirstName": "Dana", "LastName": "Whitfield",
                                    "Email": "dana.whitfield@example.com", "Phone": "+1 415 555 0134"}]
    [case] = org.sent("Case")
    assert case["ContactId"] == IDS["Contact"] and "OwnerId" not in case
    assert [c.request.url.split("/sobjects/")[1] for c in org.calls("POST")] == ["Contact/", "Case/", "CaseComment/"]


@pytest.mark.parametrize(("name", "first", "last"), [
    ("佐藤 花子", "花子", "佐藤"), ("王 小明", "小明", "王"), ("김 민준", "민준", "김"), ("佐藤花子", None, "佐藤花子"),
    ("Mary Ann van der Berg", "Mary Ann van der", "Berg"), ("Dana", None, "Dana"),
])
def test_a_contact_is_filed_under_the_family_name_as_the_name_is_written(org: SalesforceFake, name, first, last):
    # "佐藤 花子" went in as FirstName 佐藤, LastName 花子: family name first in Chinese, Japanese, Korean.
    org.query([])
    org.create("Contact")
    org.create("Case")
    org.comments(1)

    adapter().deliver(ctx_for(full_packet(customer={"email": "k@example.org", "name": name})))

    [contact] = org.sent("Contact")
    assert (contact.get("FirstName"), contact["LastName"]) == (first, last)


def test_hostile_text_is_escaped_in_soql(org: SalesforceFake) -> None:
    hostile = "x' OR Name != '"
    org.query([], soql="SELECT Id FROM Contact WHERE Email = 'x\\' OR Name != \\'' ORDER BY CreatedDate ASC LIMIT 1")
    org.create("Contact")
    org.create("Case")
    org.comments(1)

    adapter().deliver(ctx_for(full_packet(customer={"email": hostile})))

    assert org.queries() == [CONTACT_SOQL.format("'x\\' OR Name != \\''")]
    assert org.sent("Contact")[0]["LastName"] == hostile  # no name: the email stands in, as data


def test_vendor_extra_reaches_the_wire_last_and_can_choose_the_owner(org: SalesforceFake) -> None:
    extra = {"salesforce": {"Invented_Future_Field__c": "yes", "Status": "Escalated", "OwnerId": "0055g00000AgentAAA"}}
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case", headers={"Sforce-Auto-Assign": "FALSE"})
    org.comments(1)

    adapter().deliver(ctx_for(full_packet(vendor_extra=extra)))

    [case] = org.sent("Case")
    assert case["Invented_Future_Field__c"] == "yes"
    assert (case["Status"], case["OwnerId"]) == ("Escalated", "0055g00000AgentAAA")


@pytest.mark.parametrize("owner_key", ["ownerid", "OWNERID"])
def test_vendor_extra_spelt_in_another_letter_case_is_the_field_salesforce_reads(org: SalesforceFake,
                                                                               owner_key: str) -> None:
    # Salesforce reads `ownerid` as OwnerId: sent beside the case's own spelling, the owner the bot
    # chose went with Sforce-Auto-Assign TRUE (the org's rules overwrote it), and a `description`
    # replaced the brief while the receipt said all of it was delivered (a review).
    extra = {"salesforce": {owner_key: "0055g00000AgentAAA", "description": "See the chat."}}
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case", headers={"Sforce-Auto-Assign": "FALSE"})
    org.comments(1)
    ctx = ctx_for(full_packet(vendor_extra=extra))

    adapter().deliver(ctx)

    [case] = org.sent("Case")
    assert (case["OwnerId"], case["Description"]) == ("0055g00000AgentAAA", "See the chat.")
    assert not {"ownerid", "OWNERID", "description"} & set(case)
    receipt = adapter().receipt(ctx, adapter().render(ctx))
    assert receipt["delivered"] == ["transcript"]
    assert receipt["dropped"][0]["reason"].startswith("vendor_extra.salesforce.description replaced")


def test_the_previous_agent_is_not_asked_for_without_an_address_nor_when_the_query_fails(org: SalesforceFake,
                                                                                      caplog) -> None:
    assert adapter().previous_agent(full_packet(customer={"id": "c1", "phone": "+14155550100"})) is None  # no call
    org.error("GET", "query/", 503, "error-500-unknown.json")
    # Raised, not None: routing's trace says the lookup failed, not "no previous agent known" (a review).
    with caplog.at_level(logging.WARNING, logger="adapters.salesforce"), pytest.raises(TransientError):
        adapter().previous_agent(full_packet())
    assert "salesforce: previous agent unknown (TransientError)" in caplog.text
    with pytest.raises(TransientError, match="used up its share"):
        adapter().previous_agent(full_packet(), deadline=time.monotonic() - 1)


def test_mapping_sets_picklists_custom_fields_and_handoff_id() -> None:
    mapping = {"priority": {"high": "P2"}, "origin": {"web_chat": "Chat"}, "status": "Open",
               "handoff_id_field": "Handoff_Id__c",
               "fields": {"Account_Number__c": "customer.account_id", "Skills__c": "routing.skills",
                          "Team__c": "assignment.team", "Missing__c": "collected_data.nope"}}
    case = adapter(Settings(), **mapping).render(ctx_for())["case"]
    assert (case["Priority"], case["Origin"], case["Status"]) == ("P2", "Chat", "Open")
    assert case["Account_Number__c"] == "ACME-88213"
    assert case["Skills__c"] == "integrations;quickbooks"
    assert case["Team__c"] == "support"
    assert case["Handoff_Id__c"] == HID
    assert "Missing__c" not in case


def test_a_field_mapped_to_an_object_is_left_out_and_named_not_sent_as_pythons_repr() -> None:
    # Attributes__c got "{'plan': 'Business Pro', 'seats': 40}"; a list of scalars stays a multi-picklist.
    mapping = {"fields": {"Attributes__c": "customer.attributes", "Transcript__c": "transcript",
                          "Skills__c": "routing.skills", "Plan__c": "{{ customer.attributes | tojson }}"}}
    payload, left_out = adapter(Settings(), **mapping).rendered(ctx_for(), quiet=True)
    case = payload["case"]
    assert "Attributes__c" not in case and "Transcript__c" not in case and case["Skills__c"] == "integrations;quickbooks"
    assert case["Plan__c"] == '{"plan": "Business Pro", "seats": 40}'
    assert [d["reason"].split(" is an object")[0] for d in left_out] == [
        "salesforce.yaml fields.Attributes__c: customer.attributes", "salesforce.yaml fields.Transcript__c: transcript"]


def test_a_list_of_numbers_with_a_null_is_a_multi_picklist_of_the_numbers() -> None:
    # A null among them went as "1042;None" (str() of each item).
    packet = full_packet()
    packet["collected_data"]["order_ids"] = [1042, None, 1043]
    payload, _ = adapter(Settings(), fields={"Orders__c": "collected_data.order_ids"}).rendered(ctx_for(packet),
                                                                                              quiet=True)
    assert payload["case"]["Orders__c"] == "1042;1043"

def test_render_needs_no_credentials_and_long_text_is_never_cut_silently() -> None:
    long_subject = {"stated_problem": "word " * 100}
    huge = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "x" * 19_000} for _ in range(3)]
    ctx = ctx_for(full_packet(intent=long_subject, transcript=huge))
    payload = SalesforceAdapter(Settings(), {}).render(ctx)  # no settings at all, no HTTP
    assert len(ctx.brief.text) > 32_000
    # The summary says where the transcript is: "see below / attached" sent agents looking for a file.
    assert payload["case"]["Description"] == ctx.brief.summary_text("in this case's comments headed “transcript · part n/N”")
    assert "see below / attached" not in payload["case"]["Description"]
    assert payload["case"]["Subject"].endswith("…") and len(payload["case"]["Subject"]) <= 255
    assert rejoin([c["CommentBody"] for c in payload["comments"]]) == "\n".join((ctx.brief.transcript_heading, *ctx.brief.transcript_lines))


def test_multibyte_transcript_is_split_into_comments_under_4000_bytes(org: SalesforceFake) -> None:
    texts = ["你好，我的发票没有同步。" * 60, "🙂" * 2_500, "👩‍👩‍👧‍👦 family " * 400, "ok", "é" * 3_000]
    transcript = [{"at": f"2026-11-20T09:{i:02d}:00Z", "role": "customer", "text": t} for i, t in enumerate(texts)]
    ctx = ctx_for(full_packet(transcript=transcript))
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    count = len(adapter().render(ctx)["comments"])
    org.comments(count)

    adapter().deliver(ctx)

    bodies = [c["CommentBody"] for c in org.sent("CaseComment")]
    assert len(bodies) == count > 5
    assert all(len(body.encode("utf-8")) <= COMMENT_MAX_BYTES for body in bodies)
    assert [b.split("\n", 1)[0] for b in bodies] == [f"Handoff {HID} · transcript · part {i}/{count}"
                                                     for i in range(1, count + 1)]
    assert any(body.endswith("\n(continued)") for body in bodies)
    assert rejoin(bodies) == "\n".join((ctx.brief.transcript_heading, *ctx.brief.transcript_lines))
    # A brief review: "[09:02:00] Customer:" under "part 3/7" said neither the day nor the clock; the
    # first part's heading does ("Transcript of … 2026-11-20 09:00 – 09:04 UTC").
    assert "2026-11-20" in bodies[0].split("\n")[1] and "UTC" in bodies[0].split("\n")[1]
    # Where it has room: split as an earlier release split it (a resumed attempt finds its parts).
    clock = "(times UTC, 2026-11-20)\n"
    dated = [body.split("\n")[1] == clock.strip() for body in bodies[1:]]
    assert any(dated) and all(dated[n] or len((clock + body).encode()) > COMMENT_MAX_BYTES
                              for n, body in enumerate(bodies[1:]))
    for body in bodies:  # never inside an emoji sequence
        piece = body.split("\n", 1)[1]
        assert not piece.startswith(("\u200d", "\ufe0f")) and not piece.removesuffix(CONTINUED).endswith("\u200d")


def test_transcript_as_feed_item(org: SalesforceFake) -> None:
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.comments(1, "FeedItem")

    adapter(transcript_as="feed_item").deliver(ctx_for())

    [item] = org.sent("FeedItem")
    assert (item["ParentId"], item["Type"], item["IsRichText"]) == (CASE_ID, "TextPost", False)
    assert item["Body"].startswith(f"Handoff {HID} · transcript · part 1/1\n")


# ---- update, dedup, resume -------------------------------------------------------------------------


def test_link_present_adds_case_comments_only(org: SalesforceFake) -> None:
    ctx = ctx_for(link=Link(vendor_id="5005g00000OldCasAA", url=None))
    org.case_state("5005g00000OldCasAA")
    org.comments(2)

    outcome = adapter().deliver(ctx)

    assert (outcome.status, outcome.vendor_id) == ("updated", "5005g00000OldCasAA")
    brief, transcript = org.sent("CaseComment")
    assert {brief["ParentId"], transcript["ParentId"]} == {"5005g00000OldCasAA"}
    # A new handoff on the case says so first, as Zendesk's and Slack's do: an agent read it as a repeat.
    assert brief["CommentBody"] == (f"Handoff {HID} · brief · part 1/2\n" + ctx.handed_off_again + "\n\n"
                                    + ctx.brief.summary_text("in this case's comments headed “transcript · part n/N”"))
    assert ctx.handed_off_again.startswith("Handed off again: the conversation came back to a person")
    assert transcript["CommentBody"].startswith(f"Handoff {HID} · transcript · part 2/2\n")
    assert len(org.calls()) == 3  # the case's state, two comments: no contact lookup, no Case


AGENT = "0055g00000Agnt1AAB"


@pytest.mark.parametrize(("owner", "name", "holder", "kind"), [
    (AGENT, "Ana Agent", AGENT, "user"),  # an agent took the case since: the handoff waits on them
    (QUEUE, "Billing", None, "queue"),  # still in a queue: nobody has it yet
    (API_USER, "Handoff Integration", None, "user"),  # still its maker's, the connector's: no rule moved it
])
def test_a_repeat_handoff_reports_who_owns_the_case_now(org: SalesforceFake, owner, name, holder, kind) -> None:
    """Like Zendesk's `_holder`: no event comes for an owner who does not change, so the answer to
    the update is the only word that an agent has the case — read in the query the update makes anyway."""
    org.case_state("5005g00000OldCasAA", owner=owner, owner_name=name)
    org.comments(2)

    outcome = adapter().deliver(ctx_for(link=Link(vendor_id="5005g00000OldCasAA", url=None)))

    assert (outcome.status, outcome.holder) == ("updated", holder)
    assert outcome.reply["owner"] == {"id": owner, "name": name, "kind": kind}
    assert len(org.calls("GET", "query/")) == 1  # who owns it comes with whether it is closed: no second query


@pytest.mark.parametrize(("closed", "parent"), [(True, "5005g00000OldCasAA"), (False, None)])
def test_a_closed_or_deleted_case_gets_a_new_case_with_the_whole_brief(org: SalesforceFake, closed, parent) -> None:
    """Comments on a closed case reach no queue: the conversation came back after it closed."""
    org.case_state("5005g00000OldCasAA", closed=closed, gone=not closed)
    if not closed:
        org.merged("5005g00000OldCasAA")  # deleted by hand: no case it was merged into
    org.new_case(comments=1)

    outcome = adapter().deliver(ctx_for(link=Link(vendor_id="5005g00000OldCasAA", url=None)))

    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    [case] = org.sent("Case")
    assert case.get("ParentId") == parent  # a child of the closed case; a deleted one is not named
    assert case["Description"] == ctx_for().brief.text
    assert [c["ParentId"] for c in org.sent("CaseComment")] == [CASE_ID]


OLD_CASE, MASTER = "5005g00000OldCasAA", "5005g00000MastrCAA"
STATE_SOQL = "SELECT IsClosed, OwnerId, Owner.Name, Owner.IsActive, CreatedById FROM Case WHERE Id = '{}'"


def test_a_case_merged_into_another_is_updated_there_and_the_link_moves(org: SalesforceFake) -> None:
    """Case Merge deleted the conversation's case into the customer's other open one: the next
    handoff opened a new case, duplicating the one agents were working on. The deleted case's
    MasterRecordId, read through queryAll, names it."""
    org.case_state(OLD_CASE, gone=True)
    org.merged(OLD_CASE, into=MASTER)
    org.case_state(MASTER, owner=AGENT, owner_name="Ana Agent")
    org.comments(2)

    outcome = adapter().deliver(ctx_for(link=Link(vendor_id=OLD_CASE, url=None)))

    assert (outcome.status, outcome.vendor_id, outcome.moved_from) == ("updated", MASTER, OLD_CASE)
    assert outcome.url == f"{INSTANCE}/lightning/r/Case/{MASTER}/view"
    assert outcome.holder == AGENT  # who has the master case, as for the link's own
    assert org.queries("queryAll/") == [f"SELECT MasterRecordId FROM Case WHERE Id = '{OLD_CASE}'"]
    assert org.queries() == [STATE_SOQL.format(OLD_CASE), STATE_SOQL.format(MASTER)]
    assert [c["ParentId"] for c in org.sent("CaseComment")] == [MASTER, MASTER]
    assert not org.sent("Case")


def test_the_cases_merged_away_into_those_a_message_names_are_answered_by_the_names_asked(org) -> None:
    """Case Merge sends nothing of the case it deletes: the deleted cases whose MasterRecordId is a
    case an Outbound Message names, through queryAll. The message may name a case by its 15
    characters, the API answers with 18: each is answered with the master as it was asked."""
    short = MASTER[:15]
    org.merged_away([short, "5005g00000OtherCAA"], {OLD_CASE: MASTER, "5005g00000OtherCAA": "5005g00000OtherCAA"})
    found = adapter().merged_away_into({short, "5005g00000OtherCAA"})
    assert found == {OLD_CASE: short}  # a row naming itself is no merge


def test_reading_the_merges_away_with_no_time_left_reads_nothing(org) -> None:
    with pytest.raises(TransientError):
        adapter().merged_away_into({MASTER}, deadline=time.monotonic() - 1)
    assert org.calls() == []


@pytest.mark.parametrize("then", ["open", "back", "too_many"])
def test_merges_made_in_steps_are_followed_a_few_never_back_to_a_case_seen(org: SalesforceFake, then) -> None:
    """The master merged on in turn (duplicates consolidated in steps, three at most each): followed
    to the open case; a chain that leads back, or on past `MAX_MERGES`, gets a new case as before."""
    chain = [OLD_CASE, *(f"5005g00000Mid{n}CsAA" for n in range(MAX_MERGES if then == "too_many" else 1))]
    for case_id, into in zip(chain, [*chain[1:], OLD_CASE if then == "back" else MASTER]):
        org.case_state(case_id, gone=True)
        if case_id != chain[-1] or then != "too_many":  # the last is not looked at: five merges followed
            org.merged(case_id, into=into)
    if then == "open":
        org.case_state(MASTER)
        org.comments(2)
    else:
        org.new_case(comments=1)

    outcome = adapter().deliver(ctx_for(link=Link(vendor_id=OLD_CASE)))

    if then == "open":
        assert (outcome.status, outcome.vendor_id, outcome.moved_from) == ("updated", MASTER, OLD_CASE)
    else:
        assert (outcome.status, outcome.vendor_id, outcome.moved_from) == ("created", CASE_ID, None)
        assert "ParentId" not in org.sent("Case")[0]  # the conversation's case was deleted: named by none
    assert len(org.queries("queryAll/")) == (MAX_MERGES if then == "too_many" else len(chain))


@pytest.mark.parametrize("master", ["closed", "deleted", "refused", "look_refused", "not_merged"])
def test_a_merge_that_leads_to_no_case_taking_the_update_gets_a_new_case_as_before(org: SalesforceFake,
                                                                                  master) -> None:
    """The master closed too, deleted for good (the recycle bin emptied: no row), or out of the API
    user's reach (a 403 on it, or on the deleted case's row); or a case deleted by hand."""
    org.case_state(OLD_CASE, gone=True)
    if master == "look_refused":
        org.error("GET", "queryAll/", 403, "error-403-insufficient-access.json")
    else:
        org.merged(OLD_CASE, into=None if master == "not_merged" else MASTER)
    if master in ("closed", "deleted"):
        org.case_state(MASTER, closed=master == "closed", gone=master == "deleted")
    if master == "deleted":
        org.rsps.get(f"{org.api}/queryAll/", json={"totalSize": 0, "done": True, "records": []})
    if master == "refused":
        org.error("GET", "query/", 403, "error-403-insufficient-access.json",
                  match=[matchers.query_param_matcher({"q": STATE_SOQL.format(MASTER)})])
    org.new_case(comments=1)

    outcome = adapter().deliver(ctx_for(link=Link(vendor_id=OLD_CASE)))

    assert (outcome.status, outcome.vendor_id, outcome.moved_from) == ("created", CASE_ID, None)
    assert "ParentId" not in org.sent("Case")[0]  # the conversation's case was deleted: named by none
    assert [c["ParentId"] for c in org.sent("CaseComment")] == [CASE_ID]


@pytest.mark.parametrize(("answer", "raised"), [
    ((503, "error-500-unknown.json"), TransientError),
    ((429, "error-429-too-many.json"), RateLimited),
    (requests.ReadTimeout("read timed out"), TransientError),
    ((401, "error-401-invalid-session.json"), AuthError),
])
def test_a_failure_reading_the_merge_that_may_pass_is_retried_not_taken_for_not_merged(
        org: SalesforceFake, answer, raised) -> None:
    """Taken as "not merged", one passing failure opened the duplicate of the master case, and the
    conversation was linked to it from then on (as Zendesk's audits, a review). Credentials refused
    would refuse the new case too."""
    org.case_state(OLD_CASE, gone=True)
    if isinstance(answer, Exception):
        org.raise_("GET", "queryAll/", answer)
    else:
        org.error("GET", "queryAll/", *answer)

    with pytest.raises(raised) as caught:
        adapter().deliver(ctx_for(link=Link(vendor_id=OLD_CASE)))

    assert not isinstance(caught.value, (OutcomeUnknown, RejectedError))
    assert not org.sent("Case") and not org.sent("Contact")


def test_an_update_of_the_master_cut_short_is_resumed_there_by_the_retry(org: SalesforceFake) -> None:
    """The retry meets the deleted case again, follows its merge again and finishes the update on
    the master case: its comments read, the one missing posted."""
    context = ctx_for(link=Link(vendor_id=OLD_CASE))
    org.case_state(OLD_CASE, gone=True)
    org.merged(OLD_CASE, into=MASTER)
    org.case_state(MASTER)
    org.comments(1)
    org.error("POST", "sobjects/CaseComment/", 503, "error-500-unknown.json")
    with pytest.raises(OutcomeUnknown, match=MASTER):
        adapter().deliver(context)
    brief, _ = org.sent("CaseComment")

    org.case_state(OLD_CASE, gone=True)
    org.merged(OLD_CASE, into=MASTER)
    org.case_state(MASTER)
    org.query([{"CommentBody": brief["CommentBody"]}], sobject="CaseComment",
              soql=f"SELECT CommentBody FROM CaseComment WHERE ParentId = '{MASTER}'")
    org.comments(1)
    outcome = adapter().deliver(replace(context, outcome_unknown=True, attempt=2))

    assert (outcome.status, outcome.vendor_id, outcome.moved_from) == ("updated", MASTER, OLD_CASE)
    assert (outcome.reply["comments_posted"], outcome.reply["comments_skipped"]) == (1, 1)
    assert [c["ParentId"] for c in org.sent("CaseComment")] == [MASTER] * 3
    assert not org.sent("Case")


def test_timeout_after_the_vendor_acted_does_not_make_a_second_case(org: SalesforceFake) -> None:
    sf = adapter(handoff_id_field="Handoff_Id__c")
    org.query([{"Id": "0035g00000Existing"}])
    org.raise_("POST", "sobjects/Case/", requests.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown):
        sf.deliver(ctx_for())
    assert org.sent("Case")[0]["Handoff_Id__c"] == HID

    org.query([{"Id": CASE_ID}], sobject="Case",
              soql=f"SELECT Id FROM Case WHERE Handoff_Id__c = '{HID}' ORDER BY CreatedDate ASC LIMIT 1")
    org.query([], sobject="CaseComment",
              soql=f"SELECT CommentBody FROM CaseComment WHERE ParentId = '{CASE_ID}'")
    org.comments(1)
    outcome = SalesforceAdapter(TOKEN_SETTINGS, {"handoff_id_field": "Handoff_Id__c"}).deliver(
        ctx_for(outcome_unknown=True, attempt=2))  # a fresh process: only the org knows

    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert len(org.calls("POST", "sobjects/Case/")) == 1
    assert org.sent("CaseComment")[0]["ParentId"] == CASE_ID


def test_without_a_handoff_id_field_a_timed_out_case_is_found_by_its_description(org: SalesforceFake) -> None:
    """The shipped mapping has no custom field (it must be made in the org first): the case a
    timed-out create made is found by its subject, then by the handoff id its description ends
    with — not taken for another handoff's case with the same subject."""
    org.query([{"Id": "0035g00000Existing"}])
    org.raise_("POST", "sobjects/Case/", requests.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown):
        adapter().deliver(ctx_for())
    [case] = org.sent("Case")
    org.query([{"Id": "5005g00000OtherAAA", "Description": "another handoff's brief, same subject"},
               {"Id": CASE_ID, "Description": case["Description"]}], sobject="Case")
    org.query([], sobject="CaseComment", soql=f"SELECT CommentBody FROM CaseComment WHERE ParentId = '{CASE_ID}'")
    org.comments(1)

    outcome = SalesforceAdapter(TOKEN_SETTINGS, {}).deliver(ctx_for(outcome_unknown=True, attempt=2))

    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert len(org.calls("POST", "sobjects/Case/")) == 1
    [lookup] = [q for q in org.queries() if " FROM Case WHERE Subject" in q]
    prefix = f"SELECT Id, Description FROM Case WHERE Subject = '{case['Subject']}' AND CreatedDate >= "
    assert lookup.startswith(prefix) and lookup.endswith(" ORDER BY CreatedDate ASC LIMIT 200")
    # the test's handoff id holds no time: a day back, less the clock skew, in UTC
    since = dt.datetime.strptime(lookup[len(prefix):len(prefix) + 20], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    expected = dt.datetime.now(dt.UTC) - dt.timedelta(days=1, seconds=600)
    assert abs((since - expected).total_seconds()) < 60


def test_a_description_cut_to_fit_still_names_the_handoff_and_a_timed_out_create_is_found(
        org: SalesforceFake) -> None:
    # A summary longer than the Description (long problem, summary and detail: a legal packet) was
    # cut with the brief's last line, the one naming the handoff: the retry after a timed-out
    # create could not find the case, and made a second one.
    packet = full_packet()
    packet["intent"].update(stated_problem="The sync fails. " * 1250, summary="Summary words. " * 1333)
    packet["escalation"]["detail"] = "Detail words. " * 1428
    ctx = ctx_for(packet)
    org.query([{"Id": "0035g00000Existing"}])
    org.raise_("POST", "sobjects/Case/", requests.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown):
        adapter().deliver(ctx)
    [case] = org.sent("Case")
    assert len(case["Description"]) == 32_000  # ASCII: one unit a character
    assert case["Description"].endswith(f"[… the brief continues in the case comments · handoff {HID}]")
    org.query([{"Id": CASE_ID, "Description": case["Description"]}], sobject="Case")
    org.query([], sobject="CaseComment", soql=f"SELECT CommentBody FROM CaseComment WHERE ParentId = '{CASE_ID}'")
    org.comments(len(adapter().render(ctx)["comments"]))
    outcome = adapter().deliver(replace(ctx, outcome_unknown=True, attempt=2))
    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert len(org.calls("POST", "sobjects/Case/")) == 1


def test_a_case_whose_description_does_not_name_the_handoff_is_not_taken_for_it(org: SalesforceFake) -> None:
    org.query([{"Id": "0035g00000Existing"}])
    org.query([{"Id": "5005g00000OtherAAA", "Description": "another handoff's brief, same subject"}], sobject="Case")
    org.create("Case")
    org.comments(1)
    outcome = adapter().deliver(ctx_for(outcome_unknown=True, attempt=2))
    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID) and len(org.sent("Case")) == 1


def test_a_handoff_ids_time_bounds_the_lookup() -> None:
    from ulid import ULID

    from adapters.base import created_at

    made = ULID()
    assert created_at(f"hnd_{made}") == made.datetime and created_at(f"msg_{made}") == made.datetime


def test_a_comment_refused_for_good_is_noted_in_its_place_and_the_case_still_recorded(org: SalesforceFake) -> None:
    # Refused on every retry with the case made and routed: the delivery ended "failed" with no
    # case, the bot showed the apology, and the conversation's next message opened a second case.
    lines = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "z" * 3_000} for _ in range(3)]
    ctx = ctx_for(full_packet(transcript=lines))
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.comments(1)
    org.error("POST", "sobjects/CaseComment/", 400, "error-400-required-field.json")
    org.comments(2)  # the note, then part 3
    outcome = adapter().deliver(ctx)

    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    bodies = [c["CommentBody"] for c in org.sent("CaseComment")]
    assert [b.split("\n", 1)[0][-8:] for b in bodies] == ["part 1/3", "part 2/3", "part 2/3", "part 3/3"]
    assert bodies[2].endswith("(Salesforce refused this part; the connector keeps it whole.)")
    [refused] = [d for d in outcome.receipt["dropped"] if "refused" in d["reason"]]
    assert refused["part"] == "transcript" and "part 2/3" in refused["reason"]


@pytest.mark.parametrize("described", [False, True])
def test_a_transcript_every_comment_of_which_was_refused_is_not_listed_delivered(org: SalesforceFake,
                                                                                 described: bool) -> None:
    # A review: with the Description holding the summary (a transcript too long for it) and every
    # comment refused (a 403: sharing put the case in a queue the API user cannot write to), the
    # receipt listed `transcript` delivered beside twelve refusals.
    size = 3_000 if described else 15_000
    lines = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "z" * size} for _ in range(3)]
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.error("POST", "sobjects/CaseComment/", 403, "error-403-insufficient-access.json")

    outcome = adapter().deliver(ctx_for(full_packet(transcript=lines)))

    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert ("z" * size in org.sent("Case")[0]["Description"]) is described
    assert ("transcript" in outcome.receipt["delivered"]) is described
    assert "customer" in outcome.receipt["delivered"]
    whole = [d for d in outcome.receipt["dropped"] if d["reason"].startswith("none of the transcript reached")]
    assert [d["part"] for d in whole] == ([] if described else ["transcript"])
    assert all("_undelivered" not in d for d in outcome.receipt["dropped"])


def test_a_transcript_refused_beside_a_description_the_bot_replaced_is_not_listed_delivered(
        org: SalesforceFake) -> None:
    # A review of the mend: the Description's length was read, not what was sent — the bot's "See the
    # chat." holds no transcript, and `delivered` still listed it beside the refusals.
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.error("POST", "sobjects/CaseComment/", 403, "error-403-insufficient-access.json")

    outcome = adapter().deliver(ctx_for(full_packet(vendor_extra={"salesforce": {"description": "See the chat."}})))

    assert org.sent("Case")[0]["Description"] == "See the chat."
    assert outcome.receipt["delivered"] == []
    assert any(d["reason"].startswith("none of the transcript reached") for d in outcome.receipt["dropped"])


def test_a_refused_comments_log_line_names_the_code_not_the_vendors_words(org: SalesforceFake, caplog) -> None:
    # A trigger's refusal may quote the comment it refused (the customer's words, an address).
    lines = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "z" * 3_000} for _ in range(3)]
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.comments(1)
    org.rsps.add("POST", f"{org.api}/sobjects/CaseComment/", status=400, json=[
        {"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "No addresses in comments: dana@example.com"}])
    org.comments(2)
    with caplog.at_level(logging.WARNING, logger="adapters.salesforce"):
        adapter().deliver(ctx_for(full_packet(transcript=lines)))
    [line] = [r for r in caplog.records if r.getMessage().startswith("salesforce: a comment was refused")]
    assert line.error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "dana@example.com" not in json.dumps(vars(line), default=str)


def test_a_resumed_attempt_still_names_the_part_refused_before_and_a_refused_note_is_no_failure(
        org: SalesforceFake) -> None:
    lines = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "z" * 3_000} for _ in range(3)]
    ctx = ctx_for(full_packet(transcript=lines))
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.comments(1)
    org.error("POST", "sobjects/CaseComment/", 400, "error-400-required-field.json")  # part 2
    org.error("POST", "sobjects/CaseComment/", 400, "error-400-required-field.json")  # its note too
    org.error("POST", "sobjects/CaseComment/", 503, "error-500-unknown.json")  # part 3: retried
    sf = adapter()
    with pytest.raises(OutcomeUnknown) as caught:
        sf.deliver(ctx)
    assert caught.value.sent_to == {"case_id": CASE_ID, "left_out": []}  # nothing was left out: said so
    first, second = (c["CommentBody"] for c in org.sent("CaseComment")[:2])
    note = second.split("\n", 1)[0] + "\n(Salesforce refused this part; the connector keeps it whole.)"
    # Another process resumes (nothing in memory): the case from the attempt's record, the note
    # found as if Salesforce had taken it on a later try.
    org.query([{"Id": "00a5g00000Cmt01AAB", "CommentBody": first}, {"Id": "00a5g00000Cmt02AAB", "CommentBody": note}],
              sobject="CaseComment")
    org.comments(1)
    outcome = adapter().deliver(replace(ctx, outcome_unknown=True, sent_to=caught.value.sent_to, attempt=2))
    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    [refused] = [d for d in outcome.receipt["dropped"] if "refused" in d["reason"]]
    assert refused["part"] == "transcript" and "an earlier attempt" in refused["reason"]


def test_credentials_refused_once_the_case_exists_are_an_unknown_outcome_not_a_refusal(org: SalesforceFake) -> None:
    # Told "failed" with no case, the bot apologized beside a routed case; retried, the next
    # attempt (an admin having renewed the token) finds the case and finishes it.
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.error("POST", "sobjects/CaseComment/", 401, "error-401-invalid-session.json")
    with pytest.raises(OutcomeUnknown, match=CASE_ID):
        adapter().deliver(ctx_for())


def test_credentials_refused_midway_through_a_repeats_comments_are_retried_and_resumed(org: SalesforceFake) -> None:
    # The brief's comment was on the case, the transcript's refused: told "failed", the bot showed
    # the apology for a handoff an agent was reading, and nothing finished the transcript.
    context = ctx_for(link=Link(vendor_id=CASE_ID))
    org.case_state(CASE_ID)
    org.comments(1)
    org.error("POST", "sobjects/CaseComment/", 401, "error-401-invalid-session.json")
    with pytest.raises(OutcomeUnknown, match=CASE_ID):
        adapter().deliver(context)
    brief, _ = org.sent("CaseComment")

    org.case_state(CASE_ID)
    org.query([{"CommentBody": brief["CommentBody"]}], sobject="CaseComment",
              soql=f"SELECT CommentBody FROM CaseComment WHERE ParentId = '{CASE_ID}'")
    org.comments(1)
    outcome = adapter().deliver(replace(context, outcome_unknown=True, attempt=2))  # the token renewed

    assert (outcome.status, outcome.reply["comments_posted"], outcome.reply["comments_skipped"]) == ("updated", 1, 1)
    assert [c["CommentBody"].split("\n", 1)[0] for c in org.sent("CaseComment")[2:]] == [
        f"Handoff {HID} · transcript · part 2/2"]


def test_credentials_still_refused_when_a_repeat_is_resumed_keep_it_unknown(org: SalesforceFake) -> None:
    # Its first attempt posted part of the update; the retry met the same refusal at its first look
    # and failed for good, the bot told "failed" with the brief's comment on the case.
    context = replace(ctx_for(link=Link(vendor_id=CASE_ID)), outcome_unknown=True, attempt=2)
    org.error("GET", "query/", 401, "error-401-invalid-session.json")
    with pytest.raises(OutcomeUnknown, match=CASE_ID):
        adapter().deliver(context)
    with pytest.raises(AuthError) as caught:  # a first attempt refused so: nothing of it on the case
        adapter().deliver(replace(context, outcome_unknown=False, attempt=1))
    assert not isinstance(caught.value, OutcomeUnknown)


def test_credentials_refused_when_looking_for_a_timed_out_creates_case_keep_it_unknown(org: SalesforceFake) -> None:
    # A review: the create timed out (the case may be there), the retry's lookup met a 401 (a token
    # expired, a re-login failed) and failed for good: the apology beside the case an agent may work.
    context = replace(ctx_for(), outcome_unknown=True, attempt=2)
    org.error("GET", "query/", 401, "error-401-invalid-session.json")
    with pytest.raises(OutcomeUnknown, match="could not be looked for"):
        adapter().deliver(context)
    assert not org.calls("POST", "sobjects/Case/")  # nothing made meanwhile
    with pytest.raises(AuthError) as caught:  # a first attempt refused so made nothing: told at once
        adapter().deliver(replace(context, outcome_unknown=False, attempt=1))
    assert not isinstance(caught.value, OutcomeUnknown)


def test_a_repeat_on_a_case_the_api_user_may_not_edit_is_refused_not_kept_pending(org: SalesforceFake) -> None:
    # Readable, not editable: the PATCH and the first comment both 403. Taken for credentials
    # refused midway, it was retried for half an hour, the bot told "pending", nothing on the case.
    # The other comments are not tried: each would be refused alike.
    context = make_context(full_packet(), target="salesforce", link=Link(vendor_id=CASE_ID),
                           assignment={"priority": "urgent", "team": "support"})
    org.case_state(CASE_ID)
    org.error("PATCH", f"sobjects/Case/{CASE_ID}", 403, "error-403-insufficient-access.json")
    org.error("POST", "sobjects/CaseComment/", 403, "error-403-insufficient-access.json")
    with pytest.raises(RejectedError, match="refused every comment") as caught:
        adapter().deliver(context)
    assert not isinstance(caught.value, OutcomeUnknown) and len(org.calls("POST", "sobjects/CaseComment/")) == 1


@pytest.mark.parametrize(("status", "name", "told"), [(401, "error-401-invalid-session.json", AuthError),
                                                     (403, "error-403-insufficient-access.json", RejectedError)])
def test_a_refusal_before_any_comment_of_a_repeat_is_told_at_once_though_its_fields_went(
        org: SalesforceFake, status, name, told) -> None:
    # The fields carry no brief and a retry sends them again: with no comment on the case, the
    # refusal is the bot's to hear now, not after every retry (the user may edit fields, not comment).
    context = make_context(full_packet(), target="salesforce", link=Link(vendor_id=CASE_ID),
                           assignment={"priority": "urgent", "team": "support"})
    org.case_state(CASE_ID)
    org.rsps.add("PATCH", f"{org.api}/sobjects/Case/{CASE_ID}", status=204)
    org.error("POST", "sobjects/CaseComment/", status, name)
    with pytest.raises(told) as caught:
        adapter().deliver(context)
    assert not isinstance(caught.value, OutcomeUnknown)


def test_a_new_case_whose_comments_this_user_may_not_add_is_created_with_them_named(org: SalesforceFake) -> None:
    # A review: assignment rules moved the new case to a queue the API user may not write to, and each
    # comment was refused with a 403. Raised as credentials refused, it was an unknown outcome retried
    # for an hour (the comment posted again each time), then "failed" with the apology beside the case.
    lines = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "z" * 3_000} for _ in range(3)]
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.error("POST", "sobjects/CaseComment/", 403, "error-403-insufficient-access.json")
    outcome = adapter().deliver(ctx_for(full_packet(transcript=lines)))
    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert len(org.calls("POST", "sobjects/CaseComment/")) == 1  # the rest not tried: each refused alike
    refused = [d for d in outcome.receipt["dropped"] if "refused" in d["reason"]]
    assert len(refused) == 3 and all("INSUFFICIENT_ACCESS" in d["reason"] for d in refused)


def test_a_repeat_that_met_a_limit_after_its_brief_went_is_resumed_then_decided_by_what_is_on_the_case(
        org: SalesforceFake) -> None:
    # Attempt 1 posted the brief, then a 429: an unknown outcome (it looks first), not a plain retry
    # that a refusal next would fail with the brief on the case for an agent to read.
    context = ctx_for(link=Link(vendor_id=CASE_ID))
    comments = adapter().render(context)["comments"]
    org.case_state(CASE_ID)
    org.comments(1)
    org.error("POST", "sobjects/CaseComment/", 429, "error-429-too-many.json", headers={"Retry-After": "30"})
    with pytest.raises(OutcomeUnknown, match=CASE_ID) as caught:
        adapter().deliver(context)
    assert isinstance(caught.value, RateLimited)  # the whole target still pauses

    # The retry finds the brief there: a 403 on the next comment (this user may not add to the case
    # now) leaves it updated, the comment named as refused — retried, it was refused to the end…
    retry = replace(context, outcome_unknown=True, attempt=2)
    soql = f"SELECT CommentBody FROM CaseComment WHERE ParentId = '{CASE_ID}'"
    org.rsps.reset()
    org.case_state(CASE_ID)
    org.query([{"CommentBody": comments[0]["CommentBody"]}], sobject="CaseComment", soql=soql)
    org.error("POST", "sobjects/CaseComment/", 403, "error-403-insufficient-access.json")
    outcome = adapter().deliver(retry)
    assert outcome.status == "updated" and any("INSUFFICIENT_ACCESS" in d["reason"] for d in outcome.receipt["dropped"])
    # …while one that finds nothing of it there hears the refusal at once.
    org.rsps.reset()
    org.case_state(CASE_ID)
    org.query([], sobject="CaseComment", soql=soql)
    org.error("POST", "sobjects/CaseComment/", 403, "error-403-insufficient-access.json")
    with pytest.raises(RejectedError, match="refused every comment") as refused:
        adapter().deliver(retry)
    assert not isinstance(refused.value, OutcomeUnknown)


def test_a_locked_case_refusing_every_comment_of_a_repeat_is_not_updated(org: SalesforceFake) -> None:
    # An approval lock refuses the PATCH, each comment and its stand-in note: "updated" told the bot
    # an agent had it, with nothing of it on the case.
    context = make_context(full_packet(), target="salesforce", link=Link(vendor_id=CASE_ID),
                           assignment={"priority": "urgent", "team": "support"})
    org.case_state(CASE_ID)
    locked = [{"errorCode": "ENTITY_IS_LOCKED", "message": "the entity is locked for editing", "fields": []}]
    org.rsps.add("PATCH", f"{org.api}/sobjects/Case/{CASE_ID}", status=400, json=locked)
    org.rsps.add("POST", f"{org.api}/sobjects/CaseComment/", status=400, json=locked)
    with pytest.raises(RejectedError, match="refused every comment") as caught:
        adapter().deliver(context)
    assert not isinstance(caught.value, TicketGone)


def test_comments_failing_after_the_case_resume_without_reposting(org: SalesforceFake) -> None:
    lines = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "z" * 3_000} for _ in range(3)]
    ctx = ctx_for(full_packet(transcript=lines))
    sf = adapter()  # no handoff_id_field: this process remembers the case
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.comments(1)
    org.error("POST", "sobjects/CaseComment/", 503, "error-500-unknown.json")
    with pytest.raises(OutcomeUnknown, match=CASE_ID):
        sf.deliver(ctx)
    first = org.sent("CaseComment")[0]["CommentBody"]

    org.query([{"Id": "00a5g00000Cmt01AAB", "CommentBody": first}], sobject="CaseComment")
    org.comments(2)
    outcome = sf.deliver(replace(ctx, outcome_unknown=True, attempt=2))

    assert outcome.vendor_id == CASE_ID
    bodies = [c["CommentBody"] for c in org.sent("CaseComment")]
    assert [b.split("\n", 1)[0][-8:] for b in bodies] == ["part 1/3", "part 2/3", "part 2/3", "part 3/3"]
    assert len(org.calls("POST", "sobjects/Case/")) == 1
    assert outcome.reply["comments_skipped"] == 1


def test_external_id_mapping_upserts_the_case(org: SalesforceFake) -> None:
    org.query([{"Id": "0035g00000Existing"}])
    org.upsert_case(f"Handoff_Id__c/{HID}")
    org.comments(1)

    sf = adapter(handoff_id_field="Handoff_Id__c", handoff_id_is_external_id=True)
    outcome = sf.deliver(ctx_for(assignment=routed()))

    assert outcome.vendor_id == CASE_ID
    [call] = org.calls("PATCH")
    assert call.request.headers["Sforce-Auto-Assign"] == "FALSE"
    assert "Handoff_Id__c" not in json.loads(call.request.body)  # the id is in the URL


def _two_cases_carry_the_handoff(org: SalesforceFake) -> None:
    """The upsert answered 300 (two cases carry the handoff's id); the oldest, CASE_ID, found by it, with
    no transcript comment yet."""
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.patch(f"{org.api}/sobjects/Case/Handoff_Id__c/{HID}", status=300, json=[
        f"/services/data/v59.0/sobjects/Case/{CASE_ID}", "/services/data/v59.0/sobjects/Case/5005g00000Hnd0gAAB"])
    org.query([{"Id": CASE_ID}], sobject="Case",
              soql=f"SELECT Id FROM Case WHERE Handoff_Id__c = '{HID}' ORDER BY CreatedDate ASC LIMIT 1")
    org.query([], sobject="CaseComment", soql=f"SELECT CommentBody FROM CaseComment WHERE ParentId = '{CASE_ID}'")


def test_an_upsert_answered_300_takes_the_oldest_case_carrying_the_handoff_instead_of_failing(
        org: SalesforceFake) -> None:
    # A review: several cases carry the handoff's id (the External ID field not Unique); the upsert's
    # 300 was a refusal for good — the bot apologised while agents had the case, once or more.
    _two_cases_carry_the_handoff(org)
    org.comments(1)

    outcome = adapter(handoff_id_field="Handoff_Id__c", handoff_id_is_external_id=True).deliver(ctx_for())

    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert org.sent("CaseComment")[0]["ParentId"] == CASE_ID  # its transcript completed
    [several] = [entry for entry in outcome.receipt["dropped"] if "several cases" in entry["reason"]]
    assert "Unique" in several["reason"]


def test_several_cases_are_still_said_when_completing_the_oldest_ones_transcript_timed_out(
        org: SalesforceFake) -> None:
    # A review of the mend: a timeout while completing the found case's transcript took the entry
    # with it; the attempt that found the case next said nothing of the duplicates.
    _two_cases_carry_the_handoff(org)
    org.raise_("POST", "sobjects/CaseComment/", requests.ReadTimeout("read timed out"))

    with pytest.raises(OutcomeUnknown) as unknown:
        adapter(handoff_id_field="Handoff_Id__c", handoff_id_is_external_id=True).deliver(ctx_for())

    assert any("several cases" in entry["reason"] for entry in unknown.value.sent_to["left_out"])


# ---- auth --------------------------------------------------------------------------------------------


def test_token_mode_401_is_an_auth_error_without_retry(org: SalesforceFake) -> None:
    org.error("GET", "query/", 401, "error-401-invalid-session.json")
    with pytest.raises(AuthError, match="INVALID_SESSION_ID"):
        adapter().deliver(ctx_for())
    assert len(org.rsps.calls) == 1


@pytest.mark.parametrize("settings", [PASSWORD_SETTINGS, CC_SETTINGS], ids=["password", "client_credentials"])
def test_expired_login_is_renewed_once_and_the_retry_keeps_its_headers(org: SalesforceFake, settings: Settings) -> None:
    def login(token: str) -> None:
        org.password_login(token) if settings is PASSWORD_SETTINGS else org.client_credentials(token)

    login("TOKEN-1")
    org.query([{"Id": "0035g00000Existing"}])
    org.error("POST", "sobjects/Case/", 401, "error-401-invalid-session.json",
              match=[matchers.header_matcher({"Authorization": "Bearer TOKEN-1"})])
    login("TOKEN-2")
    org.create("Case", headers={"Authorization": "Bearer TOKEN-2", "Sforce-Auto-Assign": "FALSE"})
    org.comments(1)

    target = adapter(settings)
    # Before a password login the host is not known: no link, rather than "/lightning/r/Case/…/view".
    link = f"{INSTANCE}/lightning/r/Case/{CASE_ID}/view"
    assert target.ticket_url(CASE_ID) == (None if settings is PASSWORD_SETTINGS else link)
    outcome = target.deliver(ctx_for(assignment=routed()))

    # What a case recorded from Salesforce's own event is given (the outbox's `_taken_ticket`): the same link.
    assert outcome.url == target.ticket_url(CASE_ID) == link
    assert [c.request.headers.get("Sforce-Auto-Assign") for c in org.calls("POST", "sobjects/Case/")] == ["FALSE"] * 2


def test_a_second_401_after_renewal_is_an_auth_error(org: SalesforceFake) -> None:
    org.password_login("TOKEN-1")
    org.error("GET", "query/", 401, "error-401-invalid-session.json")
    org.password_login("TOKEN-2")
    with pytest.raises(AuthError):
        adapter(PASSWORD_SETTINGS).deliver(ctx_for())
    assert len(org.calls()) == 2


def test_client_credentials_request_and_refused_login(org: SalesforceFake) -> None:
    org.client_credentials(status=400)
    with pytest.raises(AuthError, match="invalid_client"):
        adapter(CC_SETTINGS).deliver(ctx_for())
    assert org.rsps.calls[0].request.body == "grant_type=client_credentials&client_id=3MVG9id&client_secret=s3cret"


def test_refused_password_login_is_an_auth_error(org: SalesforceFake) -> None:
    org.password_login_refused()
    with pytest.raises(AuthError, match="INVALID_LOGIN"):
        adapter(PASSWORD_SETTINGS).deliver(ctx_for())


@pytest.mark.parametrize(("code", "status"), [("SERVER_UNAVAILABLE", 500), ("SERVER_UNAVAILABLE", 503),
                                              ("UNKNOWN_EXCEPTION", 500)])
def test_a_login_during_salesforces_outage_is_retried_not_taken_for_wrong_credentials(
        org: SalesforceFake, code: str, status: int) -> None:
    # As an AuthError, every handoff needing a login during the outage failed for good.
    org.password_login_refused(code=code, status=status)
    with pytest.raises(TransientError, match=code) as caught:
        adapter(PASSWORD_SETTINGS).deliver(ctx_for())
    assert not isinstance(caught.value, AuthError)


@pytest.mark.parametrize("code", ["REQUEST_LIMIT_EXCEEDED", "LOGIN_RATE_EXCEEDED"])
def test_a_login_refused_for_the_orgs_api_quota_or_the_users_login_rate_pauses_the_target(
        org: SalesforceFake, code: str) -> None:
    # A review: LOGIN_RATE_EXCEEDED (the API user's logins per hour) was taken for wrong credentials.
    org.password_login_refused(code=code)
    with pytest.raises(RateLimited):
        adapter(PASSWORD_SETTINGS, rate_limit_retry_after_s=300).deliver(ctx_for())


def test_a_row_held_by_another_transaction_is_retried_not_refused(org: SalesforceFake) -> None:
    # A busy org answers UNABLE_TO_LOCK_ROW (400) while another transaction holds the Account or
    # Case; the request's changes are rolled back, so a plain retry is safe, and is what gets past it.
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.post(f"{org.api}/sobjects/Case/", status=400, content_type="application/json", json=[
        {"message": "unable to obtain exclusive access to this record or 1 records: 0015g00000Acct",
         "errorCode": "UNABLE_TO_LOCK_ROW", "fields": []}])
    with pytest.raises(TransientError, match="UNABLE_TO_LOCK_ROW") as caught:
        adapter().deliver(ctx_for())
    assert not isinstance(caught.value, OutcomeUnknown)


def test_outbound_https_honours_ca_bundle_and_proxy(org: SalesforceFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    org.error("GET", "query/", 404, "error-404-not-found.json")
    with pytest.raises(RejectedError):
        adapter().deliver(ctx_for())
    kwargs = org.rsps.calls[0].request.req_kwargs
    assert kwargs["verify"] == "/etc/corp/ca.pem"
    assert kwargs["proxies"]["https"] == "http://proxy.corp:3128"


def test_customer_fields_fit_salesforces_lengths_and_the_brief_keeps_them_whole() -> None:
    # Salesforce refuses a value over its field's length (STRING_TOO_LONG), and the case with it: a
    # customer with many given names failed the handoff at the Contact's 40-character FirstName.
    name = "Maria Guadalupe Fernanda de los Ángeles Castillo-Mendoza Villanueva de la Torre y Herrera"
    email = "maria.guadalupe.fernanda.castillo-mendoza.villanueva@customer-support.example.com"  # 81
    phone = "+52 55 1234 5678 ext. 9012 (mobile, after 5pm)"  # 46
    ctx = ctx_for(full_packet(customer={"name": name, "email": email, "phone": phone}))
    payload = adapter().render(ctx)
    case = payload["case"]
    assert len(case["SuppliedName"]) == 80 and case["SuppliedName"].endswith("…")
    assert "SuppliedEmail" not in case and "SuppliedPhone" not in case  # a cut address would be wrong
    assert payload["contact"] is None  # neither can name a Contact: Contact.Email and Phone are as short
    assert email in case["Description"] and phone in case["Description"] and name in case["Description"]


def test_a_long_first_name_is_shortened_on_the_new_contact() -> None:
    name = "Maria Guadalupe Fernanda de los Ángeles Castillo-Mendoza Herrera"
    contact = adapter().render(ctx_for(full_packet(customer={"name": name, "email": "m@example.com"})))["contact"]
    assert contact["create"]["LastName"] == "Herrera" and len(contact["create"]["FirstName"]) == 40
    assert contact["create"]["Email"] == "m@example.com"


# ---- errors ------------------------------------------------------------------------------------------


def test_429_is_rate_limited_promptly_with_retry_after(org: SalesforceFake) -> None:
    org.query([{"Id": "0035g00000Existing"}])
    org.error("POST", "sobjects/Case/", 429, "error-429-too-many.json", headers={"Retry-After": "17"})
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        adapter().deliver(ctx_for())
    assert time.monotonic() - started < 0.5
    assert caught.value.retry_after == 17


def test_the_orgs_quota_spent_mid_transcript_still_pauses_salesforce(org: SalesforceFake) -> None:
    org.query([{"Id": "0035g00000Existing"}])
    org.create("Case")
    org.error("POST", "sobjects/CaseComment/", 403, "error-403-request-limit.json")
    with pytest.raises(OutcomeUnknown) as caught:  # the case exists: the next attempt finds it
        adapter(rate_limit_retry_after_s=300).deliver(ctx_for())
    assert isinstance(caught.value, RateLimited) and caught.value.retry_after == 300  # and the target pauses


def test_request_limit_exceeded_is_rate_limited_for_the_mapped_pause(org: SalesforceFake) -> None:
    org.error("GET", "query/", 403, "error-403-request-limit.json")
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        adapter(rate_limit_retry_after_s=300).deliver(ctx_for())
    assert time.monotonic() - started < 0.5
    assert caught.value.retry_after == 300


def test_other_403_is_an_auth_error(org: SalesforceFake) -> None:
    org.error("GET", "query/", 403, "error-403-insufficient-access.json")
    with pytest.raises(AuthError, match="INSUFFICIENT_ACCESS"):
        adapter().deliver(ctx_for())


def test_400_is_rejected_with_the_vendor_message(org: SalesforceFake) -> None:
    org.query([{"Id": "0035g00000Existing"}])
    org.error("POST", "sobjects/Case/", 400, "error-400-required-field.json")
    with pytest.raises(RejectedError) as caught:
        adapter().deliver(ctx_for())
    assert "REQUIRED_FIELD_MISSING" in caught.value.message
    assert "Required fields are missing: [Subject]" in caught.value.message
    assert caught.value.status == 400
    assert len(org.calls("POST", "sobjects/Case/")) == 1  # nothing to leave out: not sent again


def test_every_error_of_a_refusal_is_told_with_its_code_and_fields(org: SalesforceFake) -> None:
    # A missing field and a validation rule in one answer: told only the first, the admin who mended
    # it met the rule on the replay (a review).
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.post(f"{org.api}/sobjects/Case/", status=400, json=[
        {"message": "Required fields are missing: [Reason]", "errorCode": "REQUIRED_FIELD_MISSING",
         "fields": ["Reason"]},
        {"message": "Cases opened by the bot need a Product", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
         "fields": []},
        *({"message": f"rule {n}", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION"} for n in range(5))])
    with pytest.raises(RejectedError) as caught:
        adapter().deliver(ctx_for())
    assert caught.value.message == (
        "Salesforce 400 REQUIRED_FIELD_MISSING: Required fields are missing: [Reason] (fields: Reason); "
        "FIELD_CUSTOM_VALIDATION_EXCEPTION: Cases opened by the bot need a Product; "
        "FIELD_CUSTOM_VALIDATION_EXCEPTION: rule 0; FIELD_CUSTOM_VALIDATION_EXCEPTION: rule 1; "
        "FIELD_CUSTOM_VALIDATION_EXCEPTION: rule 2; and 2 more")


def test_a_field_salesforce_refuses_is_left_out_and_the_case_made_without_it(org: SalesforceFake) -> None:
    # A picklist value the org lacks refused the whole case, brief and transcript with it, for good.
    org.query([{"Id": "0035g00000Existing"}])
    org.error("POST", "sobjects/Case/", 400, "error-400-restricted-picklist.json")
    org.create("Case")
    org.comments(1)
    outcome = adapter(status="Nouveau").deliver(ctx_for())
    first, second = org.sent("Case")
    assert first["Status"] == "Nouveau" and "Status" not in second
    assert {key: value for key, value in first.items() if key != "Status"} == second
    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert {"part": "mapping", "reason": "Salesforce refused salesforce.yaml status (Salesforce 400 "
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST: Status: bad value for restricted picklist field: Nouveau "
            "(fields: Status)); the case was made without it"} in outcome.receipt["dropped"]


@pytest.mark.parametrize("error, field, part", [
    ({"errorCode": "STRING_TOO_LONG", "message": "Summary: data value too large: word word (max length=255)",
      "fields": ["Summary__c"]}, "Summary__c", "mapping"),
    ({"errorCode": "INVALID_FIELD", "message": "No such column 'Summary__c' on sobject of type Case"},
     "Summary__c", "mapping"),
    ({"errorCode": "INVALID_FIELD", "message": "No such column 'Region__c' on sobject of type Case"},
     "Region__c", "vendor_extra"),
    ({"errorCode": "INVALID_EMAIL_ADDRESS", "message": "Email: invalid email address: ü@exämple.de",
      "fields": ["SuppliedEmail"]}, "SuppliedEmail", "field"),
])
def test_each_kind_of_refused_field_is_named_where_it_came_from(org: SalesforceFake, error: dict[str, Any],
                                                                field: str, part: str) -> None:
    packet = full_packet(vendor_extra={"salesforce": {"Region__c": "EMEA"}})
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=400, json=[error])
    org.create("Case")
    org.comments(1)
    outcome = adapter(fields={"Summary__c": "intent.summary"}).deliver(ctx_for(packet))
    first, second = org.sent("Case")
    assert field in first and field not in second and len(second) == len(first) - 1
    [entry] = [d for d in outcome.receipt["dropped"] if d["part"] == part]
    where = {"mapping": "salesforce.yaml fields.", "vendor_extra": "vendor_extra.salesforce.",
             "field": "the case's "}[part]
    assert entry["reason"].startswith(f"Salesforce refused {where}{field} (Salesforce 400 {error['errorCode']}")


def test_a_refused_fields_log_line_names_the_field_not_the_vendors_words(org: SalesforceFake, caplog) -> None:
    # The vendor echoes the value it refused (an address): the log keeps to the field's name.
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=400, json=[
        {"errorCode": "INVALID_EMAIL_ADDRESS", "message": "Email: invalid email address: dana@example.com",
         "fields": ["SuppliedEmail"]}])
    org.create("Case")
    org.comments(1)
    with caplog.at_level(logging.WARNING, logger="adapters.salesforce"):
        adapter().deliver(ctx_for())
    [line] = [r for r in caplog.records if r.getMessage().startswith("Salesforce refused fields")]
    assert line.fields == ["SuppliedEmail"] and "dana@example.com" not in json.dumps(vars(line), default=str)


def test_a_refused_contacts_log_line_names_the_code_not_the_vendors_words(org: SalesforceFake, caplog) -> None:
    org.query([])
    org.rsps.add("POST", f"{org.api}/sobjects/Contact/", status=400, json=[
        {"errorCode": "INVALID_EMAIL_ADDRESS", "message": "Email: invalid email address: dana@example.com",
         "fields": ["Email"]}])
    org.create("Case")
    org.comments(1)
    with caplog.at_level(logging.WARNING, logger="adapters.salesforce"):
        outcome = adapter().deliver(ctx_for())
    [line] = [r for r in caplog.records if r.getMessage().startswith("Salesforce refused the customer's contact")]
    assert line.error_code == "INVALID_EMAIL_ADDRESS" and "dana@example.com" not in json.dumps(vars(line), default=str)
    assert any("dana@example.com" in d["reason"] for d in outcome.receipt["dropped"])  # the bot's own data: said


def test_what_was_left_out_is_still_said_when_a_retry_finds_the_case(org: SalesforceFake) -> None:
    # The case sent again without a refused field timed out: the attempt that found it after did
    # not know a field (or the contact) had been left out, and its receipt listed none of it.
    packet = full_packet()
    org.query([])
    org.rsps.add("POST", f"{org.api}/sobjects/Contact/", status=400, json=DUPLICATE_CONTACT)
    org.error("POST", "sobjects/Case/", 400, "error-400-restricted-picklist.json")
    org.raise_("POST", "sobjects/Case/", requests.ReadTimeout("read timed out"))
    ctx = ctx_for(packet)
    with pytest.raises(OutcomeUnknown) as caught:
        adapter(status="Nouveau").deliver(ctx)
    carried = caught.value.sent_to["left_out"]
    assert [entry["part"] for entry in carried] == ["mapping", "contact"]
    case = org.sent("Case")[1]
    org.query([{"Id": CASE_ID, "Description": case["Description"]}], sobject="Case")
    org.query([], sobject="CaseComment", soql=f"SELECT CommentBody FROM CaseComment WHERE ParentId = '{CASE_ID}'")
    org.comments(len(adapter(status="Nouveau").render(ctx)["comments"]))
    found = adapter(status="Nouveau").deliver(replace(ctx, outcome_unknown=True, attempt=2,
                                                      sent_to=caught.value.sent_to))
    assert found.vendor_id == CASE_ID and len(org.calls("POST", "sobjects/Case/")) == 2
    assert [d for d in found.receipt["dropped"] if d["part"] in ("mapping", "contact")] == carried
    # An unknown outcome that left nothing out says so, or the outbox (which keeps an earlier
    # `sent_to` when a later one has none) would hand on an earlier attempt's list as its own.
    org.raise_("POST", "sobjects/Case/", requests.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown) as again:
        adapter(contact="none").deliver(ctx_for(packet, assignment=routed()))
    assert again.value.sent_to == {"left_out": []}


def _owner_refused(org: SalesforceFake, code: str, message: str) -> None:
    """A contact found, the first Case create refused for its OwnerId, the second made, its comment posted."""
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=400, json=[{
        "errorCode": code, "message": message, "fields": ["OwnerId"]}])
    org.create("Case")
    org.comments(1)


def test_an_owner_refused_leaves_the_case_to_the_orgs_assignment_rules(org: SalesforceFake) -> None:
    _owner_refused(org, "INACTIVE_OWNER_OR_USER", "operation performed with inactive user")
    outcome = adapter().deliver(ctx_for(assignment=routed()))
    first, second = org.calls("POST", "sobjects/Case/")
    assert first.request.headers["Sforce-Auto-Assign"] == "FALSE" and "OwnerId" in json.loads(first.request.body)
    assert second.request.headers["Sforce-Auto-Assign"] == "TRUE" and "OwnerId" not in json.loads(second.request.body)
    [entry] = [d for d in outcome.receipt["dropped"] if d["reason"].endswith("(the org's assignment rules chose the owner)")]
    # Routing's owner, named by its routing field: the answer stops naming a refused agent.
    assert (entry["part"], entry["field"]) == ("routing", "owner_id") and "routing's owner_id" in entry["reason"]
    assert json.loads(second.request.body)["Description"] == json.loads(first.request.body)["Description"]  # no agent


def test_a_previous_agent_refused_as_owner_is_said_atop_the_cases_brief(org: SalesforceFake) -> None:
    # A review: the brief's "Routed to: … / Sam Okafor" told whoever the org's rules gave the case that
    # Sam had it.
    _owner_refused(org, "INACTIVE_OWNER_OR_USER", "operation performed with inactive user")
    sticky = {**routed("0055g00000SamAAA"), "agent": "Sam Okafor",
              "previous_agent": {"id": "0055g00000SamAAA", "name": "Sam Okafor", "target": "salesforce"}}
    adapter().deliver(ctx_for(assignment=sticky))
    first, second = (json.loads(call.request.body)["Description"] for call in org.calls("POST", "sobjects/Case/"))
    assert second == ("Not owned by Sam Okafor: Salesforce refused routing's owner (Salesforce 400 INACTIVE_OWNER_OR_USER: "
                      "operation performed with inactive user (fields: OwnerId)); the org's assignment rules chose the owner. The brief "
                      "below names the agent routing chose.\n\n" + first)


def _sticky_in_place_of_queue() -> dict[str, Any]:
    return {**routed("0055g00000SamAAA"), "agent": "Sam Okafor",
            "previous_agent": {"id": "0055g00000SamAAA", "name": "Sam Okafor", "target": "salesforce",
                               "in_place_of": "00G5g000003QueueAA"}}


def test_a_previous_agent_refused_as_owner_leaves_the_case_in_the_teams_queue(org: SalesforceFake) -> None:
    # A review: the sticky agent had replaced the team's queue as routing's owner; refused, the case went
    # to the org's assignment rules — not the team routing chose — and the answer still named that team.
    _owner_refused(org, "INACTIVE_OWNER_OR_USER", "operation performed with inactive user")
    outcome = adapter().deliver(ctx_for(assignment=_sticky_in_place_of_queue()))
    first, second = org.calls("POST", "sobjects/Case/")
    sent = json.loads(second.request.body)
    assert json.loads(first.request.body)["OwnerId"] == "0055g00000SamAAA"
    assert sent["OwnerId"] == "00G5g000003QueueAA" and second.request.headers["Sforce-Auto-Assign"] == "FALSE"
    assert sent["Description"].startswith("Not owned by Sam Okafor: Salesforce refused routing's owner (") and \
        "; the case went to the team's owner (00G5g000003QueueAA). The brief below" in sent["Description"]
    [entry] = [d for d in outcome.receipt["dropped"] if d.get("field") == "owner_id"]
    assert entry["part"] == "routing" and entry["reason"].endswith(
        "(it went to the team's owner, 00G5g000003QueueAA, in place of routing's agent)")


def test_a_teams_queue_refused_after_its_agent_leaves_the_case_to_the_orgs_rules(org: SalesforceFake) -> None:
    org.query([{"Id": "0035g00000Existing"}])
    for code in ("INACTIVE_OWNER_OR_USER", "INVALID_CROSS_REFERENCE_KEY"):
        org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=400, json=[{
            "errorCode": code, "message": "refused", "fields": ["OwnerId"]}])
    org.create("Case")
    org.comments(1)
    outcome = adapter().deliver(ctx_for(assignment=_sticky_in_place_of_queue()))
    bodies = [json.loads(call.request.body) for call in org.calls("POST", "sobjects/Case/")]
    assert [body.get("OwnerId") for body in bodies] == ["0055g00000SamAAA", "00G5g000003QueueAA", None]
    assert org.calls("POST", "sobjects/Case/")[2].request.headers["Sforce-Auto-Assign"] == "TRUE"
    assert "the org's assignment rules chose the owner. The brief" in bodies[2]["Description"]
    [entry] = [d for d in outcome.receipt["dropped"] if d.get("field") == "owner_id"]
    assert entry["reason"].endswith("(the org's assignment rules chose the owner)")


@pytest.mark.parametrize("whose", ["the team's queue", "the bot's own"])
def test_an_owner_refused_that_was_not_routings_agent_says_nothing_of_the_agent(org: SalesforceFake, whose: str) -> None:
    # A review: the note named the sticky agent (a Zendesk agent) when the team's queue was refused,
    # and blamed routing when the bot's vendor_extra OwnerId was.
    _owner_refused(org, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    packet = full_packet(vendor_extra={"salesforce": {"OwnerId": "0055g00000OtherAAA"}}) if whose == "the bot's own" \
        else full_packet()
    sticky = {**routed(), "agent": "Sam Okafor",
              "previous_agent": {"id": "381156009921", "name": "Sam Okafor", "target": "zendesk"}}
    adapter().deliver(ctx_for(packet, assignment=sticky))
    first, second = (json.loads(call.request.body) for call in org.calls("POST", "sobjects/Case/"))
    assert "OwnerId" in first and "OwnerId" not in second and second["Description"] == first["Description"]


@pytest.mark.parametrize("key", ["OwnerId", "ownerid"])
def test_a_bots_owner_refused_is_named_as_the_bots_in_its_own_spelling(org: SalesforceFake, key: str) -> None:
    # Merged under the case's spelling, the bot's `ownerid` refused was blamed on routing's owner (a review).
    _owner_refused(org, "INACTIVE_OWNER_OR_USER", "operation performed with inactive user")
    packet = full_packet(vendor_extra={"salesforce": {key: "0055g00000OtherAAA"}})
    outcome = adapter().deliver(ctx_for(packet, assignment=routed()))
    [entry] = [d for d in outcome.receipt["dropped"] if "owner" in d["reason"].lower()]
    assert entry["part"] == "vendor_extra" and entry["reason"].startswith(f"Salesforce refused vendor_extra.salesforce.{key} ")


@pytest.mark.parametrize("error", [
    {"errorCode": "STRING_TOO_LONG", "message": "Subject: data value too large", "fields": ["Subject"]},
    {"errorCode": "STRING_TOO_LONG", "message": "Handoff: data value too large", "fields": ["Handoff_Id__c"]},
    {"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Region is required", "fields": ["Region__c"]},
    {"errorCode": "STRING_TOO_LONG", "message": "Notes: data value too large", "fields": ["Notes__c"]},  # not sent
])
def test_a_refusal_of_what_the_case_cannot_go_without_is_not_sent_again(org: SalesforceFake,
                                                                        error: dict[str, Any]) -> None:
    # Its subject, its brief, the handoff id that finds it after a timeout, a rule that wants more.
    packet = full_packet(vendor_extra={"salesforce": {"Region__c": "EMEA"}})
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=400, json=[error])
    with pytest.raises(RejectedError):
        adapter(handoff_id_field="Handoff_Id__c").deliver(ctx_for(packet))
    assert len(org.calls("POST", "sobjects/Case/")) == 1


DUPLICATE_CONTACT = [{
    "message": "Use one of these records?", "errorCode": "DUPLICATES_DETECTED", "fields": [],
    "duplicateResult": {"allowSave": False, "matchResults": [{"entityType": "Contact", "matchRecords": [
        {"record": {"attributes": {"type": "Contact"}, "Id": "0035g00000DupeAAA"}}]}]}}]
NO_RIGHT = [{"message": "insufficient access rights on object id", "errorCode": "INSUFFICIENT_ACCESS"}]


@pytest.mark.parametrize("status, refusal, said", [
    (400, DUPLICATE_CONTACT, "Salesforce 400 DUPLICATES_DETECTED: Use one of these records?"),
    (403, NO_RIGHT, "Salesforce 403 INSUFFICIENT_ACCESS: insufficient access rights on object id"),
])
def test_a_contact_salesforce_refuses_leaves_the_case_without_one_not_without_a_case(
        org: SalesforceFake, status: int, refusal: list[dict[str, Any]], said: str) -> None:
    # A blocking duplicate rule on Contact (common in orgs), or an API user with no right to create
    # contacts, made no case at all, for good. A duplicate rule's fuzzy match is not taken for the
    # customer: it may be another person of the same name.
    org.query([])
    org.rsps.add("POST", f"{org.api}/sobjects/Contact/", status=status, json=refusal)
    org.create("Case")
    org.comments(1)
    outcome = adapter().deliver(ctx_for())
    [case] = org.sent("Case")
    assert "ContactId" not in case and case["SuppliedEmail"] == full_packet()["customer"]["email"]
    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert {"part": "contact", "reason": f"Salesforce refused the customer's contact ({said}); the case names "
            "the customer in its Supplied fields and brief, and is linked to no contact"} in outcome.receipt["dropped"]


def test_contacts_the_api_user_cannot_see_leave_the_case_without_one(org: SalesforceFake) -> None:
    org.rsps.add("GET", f"{org.api}/query/", status=400, json=[{
        "message": "sObject type 'Contact' is not supported.", "errorCode": "INVALID_TYPE"}])
    org.create("Case")
    org.comments(1)
    outcome = adapter().deliver(ctx_for())
    assert "ContactId" not in org.sent("Case")[0] and org.calls("POST", "sobjects/Contact/") == []
    assert [d["part"] for d in outcome.receipt["dropped"]] == ["contact"]


@pytest.mark.parametrize("message", ["operation performed with inactive user",
                                     "operation performed with inactive user [0055g00000OwnerAAA]"])
def test_an_inactive_owner_named_by_no_field_is_left_out_too(org: SalesforceFake, message: str) -> None:
    # Salesforce sends INACTIVE_OWNER_OR_USER with `fields: []`: the case was refused for good.
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=400, json=[{
        "errorCode": "INACTIVE_OWNER_OR_USER", "message": message, "fields": []}])
    org.create("Case")
    org.comments(1)
    adapter().deliver(ctx_for(assignment=routed("0055g00000OwnerAAA")))
    assert "OwnerId" in org.sent("Case")[0] and "OwnerId" not in org.sent("Case")[1]


@pytest.mark.parametrize(("mapping", "where"), [
    ({"origin": {"web": "Chatbot Web"}}, "salesforce.yaml origin.web"),
    ({"origin": {"whatsapp": "WhatsApp"}, "default_origin": "Chat"}, "salesforce.yaml default_origin"),
    ({"origin": {"whatsapp": "WhatsApp"}}, "the case's Origin"),  # the built-in fallback, not the file's
])
def test_a_refused_origin_is_named_where_it_came_from(mapping: dict[str, Any], where: str) -> None:
    context = ctx_for(full_packet(conversation={**full_packet()["conversation"], "channel": "web"}))
    entry = adapter(**mapping)._field_left_out("Origin", "Salesforce 400 …", context, "made")
    assert entry["reason"].startswith(f"Salesforce refused {where} (")


def test_another_inactive_user_is_not_taken_for_the_owner(org: SalesforceFake) -> None:
    # The inactive one owns a record the case points to: leaving the routed owner out would not help.
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=400, json=[{
        "errorCode": "INACTIVE_OWNER_OR_USER", "message": "operation performed with inactive user [0055g00000OtherAAA]",
        "fields": []}])
    with pytest.raises(RejectedError, match="INACTIVE_OWNER_OR_USER"):
        adapter().deliver(ctx_for(assignment=routed("0055g00000OwnerAAA")))
    assert len(org.calls("POST", "sobjects/Case/")) == 1


@pytest.mark.parametrize(("extra", "refused"), [
    ({"Description": "x" * 40_000}, "Description"),  # an update's brief goes as comments: this is the bot's
    ({"OwnerId": "0055g00000GoneAAA"}, "OwnerId"),
])
def test_a_follow_ups_refused_vendor_extra_is_left_out_and_the_case_keeps_its_owner(
        org: SalesforceFake, extra: dict[str, Any], refused: str) -> None:
    packet = full_packet(vendor_extra={"salesforce": extra})
    context = make_context(packet, target="salesforce", link=Link(vendor_id=CASE_ID),
                           assignment={"priority": "normal", "team": "support"})
    org.case_state(CASE_ID)
    org.rsps.add("PATCH", f"{org.api}/sobjects/Case/{CASE_ID}", status=400, json=[{
        "errorCode": "STRING_TOO_LONG", "message": f"{refused}: data value too large", "fields": [refused]}])
    org.comments(len(adapter().render(context)["comments"]))
    outcome = adapter().deliver(context)
    assert outcome.status == "updated" and org.calls("PATCH", f"sobjects/Case/{CASE_ID}")
    assert all(c.request.headers["Sforce-Auto-Assign"] == "FALSE" for c in org.calls("PATCH"))  # being worked
    [entry] = outcome.receipt["dropped"]
    assert entry["part"] == "vendor_extra" and entry["reason"].endswith("the case was updated without it")


def test_a_contact_lookup_salesforce_gave_up_on_is_retried_not_left_out(org: SalesforceFake) -> None:
    # QUERY_TIMEOUT comes as a 400: a busy org, not a contact it refuses.
    org.rsps.add("GET", f"{org.api}/query/", status=400, json=[{
        "message": "Your query request was running for too long.", "errorCode": "QUERY_TIMEOUT"}])
    with pytest.raises(TransientError, match="QUERY_TIMEOUT"):
        adapter().deliver(ctx_for())
    assert org.calls("POST") == []


def test_a_follow_ups_refused_field_is_left_out_and_its_comments_still_posted(org: SalesforceFake) -> None:
    # An urgent return's Priority the org lacks refused the update, and the comments with it, for good.
    context = make_context(full_packet(), target="salesforce", link=Link(vendor_id=CASE_ID),
                           assignment={"priority": "urgent", "team": "support"})
    org.case_state(CASE_ID)
    org.rsps.add("PATCH", f"{org.api}/sobjects/Case/{CASE_ID}", status=400, json=[{
        "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "message": "Priority: bad value: Critique",
        "fields": ["Priority"]}])
    comments = adapter(priority={"urgent": "Critique"}).render(context)["comments"]
    org.comments(len(comments))
    outcome = adapter(priority={"urgent": "Critique"}).deliver(context)
    assert outcome.status == "updated" and len(org.sent("CaseComment")) == len(comments)
    assert len(org.calls("PATCH", f"sobjects/Case/{CASE_ID}")) == 1  # nothing left to send: not sent empty
    assert outcome.receipt["dropped"] == [{"part": "mapping", "reason": "Salesforce refused salesforce.yaml priority "
                                           "(Salesforce 400 INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST: Priority: bad "
                                           "value: Critique (fields: Priority)); the case was updated without it"}]


@pytest.mark.parametrize(("status", "code", "message"), [
    (400, "ENTITY_IS_LOCKED", "the entity is locked for editing"),  # an approval process holds the case
    (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Priority cannot change while the case waits on a third party"),
    (403, "INSUFFICIENT_ACCESS", "insufficient access rights on object id"),  # readable, not editable by us
])
def test_a_case_refusing_a_repeats_update_as_a_whole_still_gets_its_comments(org: SalesforceFake, status, code,
                                                                              message) -> None:
    # A refusal naming no field failed the update for good: the repeat's brief and transcript never
    # reached the case, and the bot was told the handoff failed.
    context = make_context(full_packet(), target="salesforce", link=Link(vendor_id=CASE_ID),
                           assignment={"priority": "urgent", "team": "support"})
    context = replace(context, packet={**context.packet, "vendor_extra": {"salesforce": {"Reason": "Escalated"}}})
    org.case_state(CASE_ID)
    org.rsps.add("PATCH", f"{org.api}/sobjects/Case/{CASE_ID}", status=status,
                 json=[{"errorCode": code, "message": message, "fields": []}])
    comments = adapter().render(context)["comments"]
    org.comments(len(comments))

    outcome = adapter().deliver(context)

    assert outcome.status == "updated" and len(org.sent("CaseComment")) == len(comments)
    assert len(org.calls("PATCH", f"sobjects/Case/{CASE_ID}")) == 1
    why = f"Salesforce {status} {code}: {message}"
    assert outcome.receipt["dropped"] == [
        {"part": "field", "reason": f"Salesforce refused the case's Priority ({why}); the case was updated without it"},
        {"part": "vendor_extra", "reason": f"Salesforce refused vendor_extra.salesforce.Reason ({why}); the case was "
                                           "updated without it"}]


def test_a_case_deleted_between_the_look_and_the_update_gets_a_new_case(org: SalesforceFake) -> None:
    context = make_context(full_packet(), target="salesforce", link=Link(vendor_id="5005g00000OldCasAA"),
                           assignment={"priority": "urgent", "team": "support"})
    org.case_state("5005g00000OldCasAA")
    org.error("PATCH", "sobjects/Case/5005g00000OldCasAA", 404, "error-404-not-found.json")
    org.merged("5005g00000OldCasAA")
    org.new_case(comments=1)

    outcome = adapter().deliver(context)

    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    assert "ParentId" not in org.sent("Case")[0]


def test_5xx_is_transient(org: SalesforceFake) -> None:
    org.query([{"Id": "0035g00000Existing"}])
    org.error("POST", "sobjects/Case/", 500, "error-500-unknown.json")
    with pytest.raises(TransientError) as caught:
        adapter().deliver(ctx_for())
    assert not isinstance(caught.value, OutcomeUnknown) and caught.value.status == 500


def test_a_redirect_is_not_followed_with_the_case(org: SalesforceFake) -> None:
    # requests re-sent a 307's body — the whole case — to wherever it pointed, and its answer
    # was taken for the case's id.
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=307, headers={"Location": "https://elsewhere.example/c"})
    with pytest.raises(RejectedError, match=r"redirect .*SALESFORCE_INSTANCE_URL") as caught:
        adapter().deliver(ctx_for())
    assert caught.value.status == 307
    assert not [c for c in org.rsps.calls if "elsewhere.example" in c.request.url]


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateways_5xx_to_a_create_is_an_unknown_outcome(org: SalesforceFake, status: int) -> None:
    """Salesforce's own 5xx (its error list) rolls the request back; a gateway's page in front of
    it may come after the case was made, so the next attempt looks before creating again."""
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=status, body="<html>Bad gateway</html>",
                 content_type="text/html")
    with pytest.raises(OutcomeUnknown) as caught:
        adapter().deliver(ctx_for())
    assert caught.value.status == status


@pytest.mark.parametrize("exc", [
    requests.ConnectTimeout("connect timed out"),
    requests.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "Connection refused"))),  # type: ignore[arg-type]
], ids=["connect-timeout", "refused"])
def test_connect_errors_are_transient_not_unknown(org: SalesforceFake, exc: Exception) -> None:
    org.query([{"Id": "0035g00000Existing"}])
    org.raise_("POST", "sobjects/Case/", exc)
    with pytest.raises(TransientError) as caught:
        adapter().deliver(ctx_for())
    assert not isinstance(caught.value, OutcomeUnknown)


def test_a_read_timeout_on_a_query_is_transient(org: SalesforceFake) -> None:
    org.raise_("GET", "query/", requests.ReadTimeout("read timed out"))
    with pytest.raises(TransientError) as caught:
        adapter().deliver(ctx_for())
    assert not isinstance(caught.value, OutcomeUnknown)


# ---- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "missing"), [
    ({}, "SALESFORCE_INSTANCE_URL"),
    ({"salesforce_instance_url": INSTANCE}, "SALESFORCE_ACCESS_TOKEN"),
    ({"salesforce_access_token": TOKEN}, "SALESFORCE_INSTANCE_URL"),
    ({"salesforce_username": "u"}, "SALESFORCE_PASSWORD"),
    ({"salesforce_username": "u", "salesforce_password": "p"}, "SALESFORCE_SECURITY_TOKEN"),
    ({"salesforce_password": "p", "salesforce_security_token": "t"}, "SALESFORCE_USERNAME"),
    ({"salesforce_domain": "test"}, "SALESFORCE_USERNAME"),
    ({"salesforce_client_id": "c", "salesforce_client_secret": "s"}, "SALESFORCE_INSTANCE_URL"),
    ({"salesforce_instance_url": INSTANCE, "salesforce_client_id": "c"}, "SALESFORCE_CLIENT_SECRET"),
    ({"salesforce_instance_url": INSTANCE, "salesforce_client_secret": "s"}, "SALESFORCE_CLIENT_ID"),
    ({"salesforce_instance_url": INSTANCE, "salesforce_access_token": TOKEN, "salesforce_client_id": "c"},
     "SALESFORCE_CLIENT_ID"),
    ({"salesforce_instance_url": "http://acme.my.salesforce.com", "salesforce_access_token": TOKEN},
     "SALESFORCE_INSTANCE_URL"),
    # An address copied from the browser: its path went into every case link the bot got (a review).
    ({"salesforce_instance_url": INSTANCE + "/lightning/page/home", "salesforce_access_token": TOKEN},
     "SALESFORCE_INSTANCE_URL"),
    ({"salesforce_instance_url": INSTANCE + "?x=1", "salesforce_access_token": TOKEN}, "SALESFORCE_INSTANCE_URL"),
])
def test_check_settings_names_the_missing_variable(values: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SalesforceAdapter.check_settings(Settings(**values))
    assert caught.value.source == missing


def test_every_variable_a_salesforce_auth_mode_still_lacks_is_named_at_once() -> None:
    # One per start: an operator fixed SALESFORCE_PASSWORD, restarted, then met SALESFORCE_SECURITY_TOKEN.
    with pytest.raises(ConfigError) as caught:
        SalesforceAdapter.check_settings(Settings(salesforce_username="u"))
    assert "must be set for Salesforce password auth (and SALESFORCE_SECURITY_TOKEN)" in str(caught.value)


@pytest.mark.parametrize("settings", [TOKEN_SETTINGS, PASSWORD_SETTINGS, CC_SETTINGS,
                                      replace(PASSWORD_SETTINGS, salesforce_domain="test"),
                                      replace(TOKEN_SETTINGS, salesforce_instance_url=INSTANCE + "/")])
def test_check_settings_accepts_each_complete_mode(settings: Settings) -> None:
    SalesforceAdapter.check_settings(settings)


def test_sandbox_login_uses_the_test_domain(org: SalesforceFake) -> None:
    org.password_login("TOKEN-1", domain="test")
    org.error("GET", "query/", 404, "error-404-not-found.json")
    with pytest.raises(RejectedError):
        adapter(replace(PASSWORD_SETTINGS, salesforce_domain="test")).deliver(ctx_for())


@pytest.mark.parametrize("mapping", [{"transcript_as": "email"}, {"handoff_id_field": "Id = '' OR Id"},
                                     {"fields": {"Bad Name": "customer.id"}},
                                     {"priority": {"urgnt": "High"}}])  # read by no one: urgent took the default
def test_bad_mapping_is_a_config_error(mapping: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"salesforce\.yaml"):
        SalesforceAdapter(Settings(), mapping)


@pytest.mark.parametrize(("mapping", "where", "seen"), [
    # Sent into every case as a list or an object, which Salesforce refuses, while `check` said ok (a review).
    ({"status": ["New"]}, "salesforce.yaml status", "got a list"),
    ({"priority": {"high": ["High"]}}, "salesforce.yaml priority.high", "got a list"),
    ({"origin": {"web_chat": {"x": "Web"}}}, "salesforce.yaml origin.web_chat", "got a mapping"),
    ({"default_origin": True}, "salesforce.yaml default_origin", "got true/false (quote it)"),
    # An admin's review: sent as written, braces and all, and refused by a restricted picklist on every case.
    ({"status": "{{ intent.name }}"}, "salesforce.yaml status", "(a value of the packet goes under fields:, with template:)"),
    ({"origin": {"web_chat": "{% if x %}Web{% endif %}"}}, "salesforce.yaml origin.web_chat", "with template:)"),
])
def test_a_picklist_value_that_is_not_one_word_is_refused(mapping: dict[str, Any], where: str, seen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SalesforceAdapter(Settings(), mapping)
    assert caught.value.source == where.replace("salesforce.yaml ", "mappings/salesforce.yaml: ")
    assert caught.value.message.endswith(seen)


def test_an_update_open_ticket_salesforce_does_not_act_on_is_warned_about() -> None:
    # Every mapping may hold the key; only Zendesk looks for the customer's open ticket. Set in
    # salesforce.yaml, it was accepted without a word, and every first handoff opened a case.
    hooked = TOKEN_SETTINGS.override({"salesforce_webhook_tokens": ("t" * 32,)})  # no warning of its own
    assert not any("update_open_ticket" in line for line in adapter(handoff_id_field="Handoff_Id__c").warnings())
    [said] = adapter(hooked, handoff_id_field="Handoff_Id__c", update_open_ticket=True).warnings()
    assert said.startswith("mappings/salesforce.yaml: update_open_ticket is ignored")
    assert len(adapter(hooked, update_open_ticket=True).warnings()) == 2  # and the missing handoff_id_field's


def test_no_webhook_token_is_warned_about() -> None:
    # Every Outbound Message would be refused: no agent taking a case, nor its close, recorded.
    [said] = adapter(handoff_id_field="Handoff_Id__c").warnings()
    assert said.startswith("no SALESFORCE_WEBHOOK_TOKENS: /webhooks/salesforce refuses every Outbound Message")


def test_case_fields_use_the_mapping_value_language() -> None:
    mapping = {"lookups": {"tier": {"enterprise": "Tier 1"}},
               "fields": {"Intent__c": "intent.name",
                          "Summary__c": {"template": "{{ intent.name }}: {{ sentiment.label }}"},
                          "Tier__c": {"lookup": "tier", "from": "customer.segment", "default": "Tier 2"},
                          "Skills__c": "routing.skills",
                          "Missing__c": "collected_data.nothing"}}
    case = SalesforceAdapter(Settings(), mapping).render(ctx_for())["case"]
    assert case["Intent__c"] == "integrations.quickbooks.sync_failure"
    assert case["Summary__c"] == "integrations.quickbooks.sync_failure: frustrated"
    assert case["Tier__c"] == "Tier 1"
    assert case["Skills__c"] == "integrations;quickbooks"
    assert "Missing__c" not in case


def test_bidirectional_controls_never_reach_the_case_raw() -> None:
    # The brief named them; the case's own fields took them raw: "+1 415 \u202e4321 555" showed as
    # another number in SuppliedPhone and the new Contact, and a mapped order number as ORD-4321.
    packet = full_packet(customer={"name": "Dana \u202eknab", "phone": "+1 415 \u202e4321 555"},
                         collected_data={"order_number": "ORD-\u202e1234\u202c"})
    payload = SalesforceAdapter(Settings(), {"fields": {"Order_Number__c": "collected_data.order_number"}}).render(
        ctx_for(packet))
    assert (payload["case"]["SuppliedName"], payload["case"]["SuppliedPhone"]) == ("Dana knab", "+1 415 4321 555")
    assert payload["contact"]["create"] == {"FirstName": "Dana", "LastName": "knab", "Phone": "+1 415 4321 555"}
    assert "\u202e" not in payload["contact"]["query"]
    assert payload["case"]["Order_Number__c"] == "ORD-[U+202E]1234[U+202C]"


def test_a_message_too_long_for_a_comment_starts_beside_the_heading_before_it() -> None:
    # A review of the brief: the transcript's first comment of a 20,000-character message held its
    # heading alone ("part 1/12"), the message starting in the next.
    from adapters.salesforce import split_blocks

    pieces = split_blocks(["Transcript of the handoff, 1 message", "[10:00] Customer: " + "word " * 4000], 3000, True)
    assert pieces[0].startswith("Transcript of the handoff, 1 message\n[10:00] Customer: word")
    assert all(len(piece.encode()) <= 3000 for piece in pieces)
    assert unsplit(pieces) == "Transcript of the handoff, 1 message\n[10:00] Customer: " + "word " * 4000
    assert all(piece.startswith("(continued) ") for piece in pieces[1:])
    # A few bytes' room is not used ("[10:0" alone), and what is used never passes the budget.
    for pad in range(2240, 3000, 7):
        pieces = split_blocks(["h" * pad, "界" * 2000], 3000, True)
        assert all(len(piece.encode()) <= 3000 for piece in pieces)
        assert pieces[0] == "h" * pad or len(pieces[0]) - pad > 100


def test_a_comment_split_inside_a_run_of_flags_cuts_between_two_flags() -> None:
    # Flags are pairs of regional indicators: cut after an odd one, the next comment began 🇸🇺… and
    # every flag after the cut read as another country.
    from adapters.salesforce import RESUMED, split_blocks

    flags = "🇺🇸" * 1_000
    for budget in (3_999, 4_000, 4_001, 4_002):
        pieces = split_blocks([flags], budget, in_bytes=True)
        assert unsplit(pieces) == flags
        assert all(piece.removeprefix(RESUMED).startswith("🇺🇸") and
                   len(piece.removeprefix(RESUMED).removesuffix(CONTINUED)) % 2 == 0 for piece in pieces), budget


def test_probe_logs_in_and_reads_a_case(org: SalesforceFake) -> None:
    org.password_login()
    org.query([{"Id": "5005g00000AbCdEAAV"}], soql="SELECT Id FROM Case LIMIT 1", sobject="Case")
    assert adapter(PASSWORD_SETTINGS).probe().said == "signed in (password auth), cases readable"


def _id_field(**spec: Any) -> dict[str, Any]:
    return {"name": "Handoff_Id__c", "type": "string", "length": 64, "externalId": True, "unique": True,
            "createable": True, "filterable": True, **spec}


def test_probe_reads_case_only_when_the_mapping_names_its_fields(org: SalesforceFake) -> None:
    # The shipped mapping names none: nothing to describe, one call fewer.
    org.query([{"Id": "5005g00000AbCdEAAV"}], soql="SELECT Id FROM Case LIMIT 1", sobject="Case")
    assert adapter(fields={}).probe().warnings == ()
    assert not org.calls(path="sobjects/Case/describe")


@pytest.mark.parametrize(("spec", "refused"), [
    (None, "handoff_id_field: Handoff_Id__c is not a field of Case the API user can see"),
    (_id_field(length=20), "handoff_id_field: Handoff_Id__c holds 20 characters, a handoff id 30"),
    (_id_field(externalId=False), "handoff_id_field: Handoff_Id__c is not an External ID field, and "
                                  "handoff_id_is_external_id asks to upsert on it"),
    # A review: what the describe says and the first check did not read.
    (_id_field(type="double"), "handoff_id_field: Handoff_Id__c is a double field, and a handoff id is text"),
    (_id_field(createable=False), "handoff_id_field: Handoff_Id__c cannot be written by the API user"),
    (_id_field(type="textarea", length=32768, filterable=False), "handoff_id_field: Handoff_Id__c cannot be "
                                                                  "searched"),
])
def test_probe_refuses_a_handoff_id_field_that_would_refuse_every_case(org: SalesforceFake, spec, refused) -> None:
    # Found by the first handoff, which failed, until `check --vendors` asked Case's describe.
    org.query([{"Id": "5005g00000AbCdEAAV"}], soql="SELECT Id FROM Case LIMIT 1", sobject="Case")
    org.describe_case(*([spec] if spec else []))
    with pytest.raises(RejectedError, match="mappings/salesforce.yaml " + refused):
        adapter(handoff_id_field="Handoff_Id__c", handoff_id_is_external_id=True).probe()


def test_probe_warns_of_what_works_but_loses_something(org: SalesforceFake) -> None:
    org.query([{"Id": "5005g00000AbCdEAAV"}], soql="SELECT Id FROM Case LIMIT 1", sobject="Case")
    org.describe_case(_id_field(name="handoff_id__C", unique=False),
                      {"name": "Intent__c", "type": "string", "length": 80})
    probed = adapter(handoff_id_field="Handoff_Id__c", handoff_id_is_external_id=True,
                     fields={"Intent__c": "intent.name", "Segment__c": "customer.segment"}).probe()
    assert probed.said == "signed in (token auth), cases readable, Case's fields read"
    assert probed.warnings == (
        "mappings/salesforce.yaml fields.Segment__c: Case has no field Segment__c the API user can see; every "
        "case is sent without it (its receipt says so)",
        "mappings/salesforce.yaml handoff_id_field: Handoff_Id__c is not Unique: two cases can carry one handoff's "
        "id, and the oldest is taken (mark it Unique)")


def test_probe_suggests_the_upsert_a_unique_external_id_allows(org: SalesforceFake) -> None:
    org.query([{"Id": "5005g00000AbCdEAAV"}], soql="SELECT Id FROM Case LIMIT 1", sobject="Case")
    org.describe_case(_id_field())
    assert "set handoff_id_is_external_id: true" in adapter(handoff_id_field="Handoff_Id__c").probe().warnings[0]
    org.describe_case(_id_field(unique=False, externalId=False))
    assert adapter(handoff_id_field="Handoff_Id__c").probe().warnings == ()


def test_probe_with_a_refused_login_is_an_auth_error(org: SalesforceFake) -> None:
    org.password_login_refused()
    with pytest.raises(AuthError, match="INVALID_LOGIN"):
        adapter(PASSWORD_SETTINGS).probe()


def test_lengths_are_counted_as_salesforce_counts_them_in_utf16_units() -> None:
    # An emoji is two UTF-16 code units to Salesforce: counted as one, a name of 79 emoji-laden
    # characters and a 28,809-character Description passed our checks and were refused (STRING_TOO_LONG).
    def units(text: str) -> int:
        return len(text.encode("utf-16-le")) // 2

    name = "Dana 😀" * 13  # 78 code points, 91 UTF-16 units
    chatty = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "😀" * 9_000} for _ in range(4)]
    ctx = make_context(full_packet(customer={"id": "c1", "name": name}, transcript=chatty,
                                   intent={"stated_problem": "😀" * 200}), target="salesforce")
    case = SalesforceAdapter(Settings(), {}).render(ctx)["case"]
    assert units(case["Description"]) <= 32_000
    assert units(case["Subject"]) <= 255 and case["Subject"].endswith("…")
    assert units(case["SuppliedName"]) <= 80 and case["SuppliedName"].endswith("…")
    assert "\ufffd" not in case["Subject"] + case["SuppliedName"]  # never half an emoji


@pytest.mark.parametrize("unit", ["👍🏽", "🇯🇵", "👨‍👩‍👧‍👦", "e\u0301"])
def test_a_clipped_name_subject_or_description_ends_on_a_whole_character(unit: str) -> None:
    # Cut on UTF-16 units alone, a name lost its last skin tone or accent, flags re-paired, and a
    # family (or the Description before its overflow marker) ended on a joiner (a review).
    name = (unit * 300)[:500]
    packet = full_packet(customer={"id": "c1", "name": name, "email": "a@example.com"},
                         intent={"stated_problem": (unit * 5000)[:19990]})
    payload = SalesforceAdapter(Settings(), {"fields": {"Subject": "customer.name"}}).render(
        make_context(packet, target="salesforce"))
    for kept in (payload["case"]["SuppliedName"].removesuffix("…"), payload["contact"]["create"]["LastName"]
                 .removesuffix("…"), payload["case"]["Subject"].removesuffix("…")):
        assert kept == unit * (len(kept) // len(unit))
    description, marker = payload["case"]["Description"], OVERFLOW.format(HID)
    if len(unit.encode("utf-16-le")) > 20:  # the family's summary is over the Description's 32,000 units
        assert description.endswith(unit + marker)


def test_an_urgent_return_raises_the_cases_priority_and_nothing_lowers_it() -> None:
    def update(priority: str) -> dict:
        context = make_context(full_packet(), target="salesforce", link=Link(vendor_id="500XX"),
                               assignment={"priority": priority, "team": "support"})
        return SalesforceAdapter(Settings(), {}).render(context)["case"]

    assert update("urgent") == {"Priority": "High"}  # the shipped mapping's word for urgent
    assert update("high") == {}  # the case's own may be higher: left as it is
    # A priority map without urgent leaves the case's Priority alone: a PATCH of null cleared it.
    context = make_context(full_packet(), target="salesforce", link=Link(vendor_id="500XX"),
                           assignment={"priority": "urgent", "team": "support"})
    assert SalesforceAdapter(Settings(), {"priority": {"high": "High"}}).render(context)["case"] == {}


def test_messages_sent_while_waiting_leave_the_cases_priority_to_the_agent(org: SalesforceFake) -> None:
    # A review: a batch carries its handoff's routing, and each one of an urgent handoff PATCHed
    # Priority: High again — over the priority an agent had lowered after triage. Only a new handoff
    # may raise it: a batch posts its comments and changes no field.
    packet = full_packet(follow_up={"handoff_id": HID, "first": 3})
    context = make_context(packet, target="salesforce", handoff_id="msg_01BATCH", link=Link(vendor_id=CASE_ID),
                           assignment={"priority": "urgent", "team": "support"})
    context = replace(context, brief=render_brief(packet, "msg_01BATCH", update=True, assignment=context.assignment))
    assert adapter().render(context)["case"] == {}
    org.case_state(CASE_ID)
    org.comments(len(adapter().render(context)["comments"]))

    assert adapter().deliver(context).status == "updated"

    assert not org.calls("PATCH")  # no field of the case is touched


def test_messages_sent_while_waiting_say_where_on_the_case_the_brief_and_the_messages_are() -> None:
    # A review: the batch's comment said "The handoff's brief above has the rest." — Salesforce lists
    # case comments newest first, and the brief of the handoff that opened the case is its Description.
    packet = full_packet(follow_up={"handoff_id": HID, "first": 3})
    context = make_context(packet, target="salesforce", handoff_id="msg_01BATCH", link=Link(vendor_id=CASE_ID))
    context = replace(context, brief=render_brief(packet, "msg_01BATCH", update=True, assignment=context.assignment))
    lead, transcript = (c["CommentBody"] for c in adapter().render(context)["comments"])
    assert "above" not in lead and "below" not in lead
    assert f"Handoff {HID}'s brief is in this case's Description" in lead
    assert f"in its comments headed “Handoff {HID} · brief”" in lead  # where a repeat's brief is
    assert "The messages are in this case's comments headed “transcript · part n/N”" in lead
    assert transcript.startswith(f"Messages msg_01BATCH of handoff {HID} · transcript · part 2/2\n")
    # Posted as Chatter posts, a repeat's brief is not among the comments.
    posts = adapter(transcript_as="feed_item").render(context)["feed_items"][0]["Body"]
    assert f"in its posts headed “Handoff {HID} · brief”" in posts and "comments" not in posts


def test_a_vendor_extra_description_on_a_new_case_drops_all_but_the_transcript_in_the_receipt() -> None:
    context = ctx_for(full_packet(vendor_extra={"salesforce": {"Description": "See the chat."}}))
    salesforce = adapter()
    receipt = salesforce.receipt(context, salesforce.render(context))
    assert receipt["delivered"] == ["transcript"]  # its comments carry it whatever the Description says
    dropped = {d["part"] for d in receipt["dropped"]}
    assert dropped == set(context.brief.sections) - {"transcript"}
    assert all(d["reason"].startswith("vendor_extra.salesforce.Description replaced") for d in receipt["dropped"])
    # On an update the brief goes as comments only: a Description the bot sets there takes nothing away.
    update = ctx_for(full_packet(vendor_extra={"salesforce": {"Description": "See the chat."}}),
                     link=Link("500XX", None, {}))
    assert salesforce.receipt(update, salesforce.render(update))["dropped"] == []


@pytest.mark.parametrize("spec", [{"template": "Chatbot: {{ intent.stated_problem }}"}, "intent.stated_problem"])
def test_a_subject_mapped_in_fields_is_one_line_with_its_secrets_masked_as_the_briefs(spec: Any) -> None:
    # A review of Zendesk's mapped subject, here too: `fields: {Subject: …}` sent a card number and a
    # password into the subject list views, searches and e-mails show, where README promises
    # "whatever it says … masked in a ticket's subject".
    packet = full_packet()
    packet["intent"]["stated_problem"] = "Refund to my card 4111 1111 1111 1111 please,\npassword: hunter2"
    subject = adapter(Settings(), fields={"Subject": spec}).render(ctx_for(packet))["case"]["Subject"]
    assert "4111 1111 1111 1111" not in subject and "hunter2" not in subject and "\n" not in subject
    assert "[redacted card ••••1111]" in subject and "[redacted secret]" in subject


@pytest.mark.parametrize("spec", ["routing.skills", "collected_data.not_there", {"literal": " "}])
def test_a_subject_mapped_in_fields_that_finds_no_line_is_the_briefs(spec: Any) -> None:
    # A list went as "integrations;quickbooks" (a multi-picklist's form); a path finding nothing left the
    # case without a subject at all, where Zendesk's mapped subject falls back to the brief's.
    context = ctx_for()
    assert adapter(Settings(), fields={"Subject": spec}).render(context)["case"]["Subject"] == context.brief.subject


def test_a_refused_field_mapped_in_another_letter_case_is_left_out_not_the_whole_case(org: SalesforceFake) -> None:
    # A review: Salesforce reads `integration__c` as Integration__c and names it so when it refuses the
    # value; matched as written, the refusal failed the handoff for good — no case, brief or transcript.
    org.query([{"Id": "0035g00000Existing"}])
    org.rsps.add("POST", f"{org.api}/sobjects/Case/", status=400, json=[
        {"errorCode": "STRING_TOO_LONG", "message": "Integration: data value too large", "fields": ["Integration__c"]}])
    org.create("Case")
    org.comments(1)
    outcome = adapter(fields={"integration__c": "intent.summary"}).deliver(ctx_for())
    first, second = org.sent("Case")
    assert "integration__c" in first and "integration__c" not in second
    assert (outcome.status, outcome.vendor_id) == ("created", CASE_ID)
    [entry] = [d for d in outcome.receipt["dropped"] if d["part"] == "mapping"]
    assert entry["reason"].startswith("Salesforce refused salesforce.yaml fields.integration__c")


def test_a_standard_field_mapped_in_another_letter_case_is_that_field_not_a_second_key() -> None:
    case = adapter(Settings(), fields={"subject": "intent.summary"}).render(ctx_for())["case"]
    assert "subject" not in case and case["Subject"].startswith("QuickBooks sync failing")


@pytest.mark.parametrize("key", ["priority", "origin"])
def test_an_empty_priority_or_origin_table_leaves_the_field_to_the_org(key: str) -> None:
    # A review: `priority: {}` (the shipped file: "An unmapped priority leaves Priority out") still
    # sent High, Medium, Low, and an urgent repeat PATCHed Priority: High; `origin: {}` sent Phone, Chat….
    target = adapter(Settings(), **{key: {}})
    urgent = {"priority": "urgent", "team": "support"}
    case = target.render(ctx_for(full_packet(conversation={"id": "c", "channel": "voice"}), assignment=urgent))["case"]
    if key == "priority":
        assert "Priority" not in case
        assert "Priority" not in target.render(ctx_for(link=Link(vendor_id=CASE_ID), assignment=urgent))["case"]
    else:  # left out, as mappings/README.md says (a review: it went as "Web"); default_origin when one is set
        assert "Origin" not in case
        chat = adapter(Settings(), origin={}, default_origin="Chat")
        assert chat.render(ctx_for(full_packet(conversation={"id": "c", "channel": "voice"})))["case"]["Origin"] == "Chat"


def test_a_user_routing_yaml_names_as_owner_refused_leaves_the_case_in_the_teams_queue_said_atop_its_brief(
        org: SalesforceFake) -> None:
    # routing.yaml's own owner (a user in place of the team's queue: `routing.name_routed_agent`) is
    # routing's agent as a sticky one is: refused, the case goes to the team's queue, its brief says so.
    _owner_refused(org, "INACTIVE_OWNER_OR_USER", "operation performed with inactive user")
    assignment = {**routed("0055g00000SamAAA"), "agent": "Zendesk agent 381726354, Salesforce agent 0055g00000SamAAA",
                  "routed_agents": [{"id": "381726354", "target": "zendesk", "label": "Zendesk agent 381726354"},
                                    {"id": "0055g00000SamAAA", "target": "salesforce", "label": "Salesforce agent 0055g00000SamAAA",
                                     "in_place_of": "00G5g000003QueueAA"}]}
    adapter().deliver(ctx_for(assignment=assignment))
    first, second = (json.loads(call.request.body) for call in org.calls("POST", "sobjects/Case/"))
    assert (first["OwnerId"], second["OwnerId"]) == ("0055g00000SamAAA", "00G5g000003QueueAA")
    # Named as Salesforce's own agent, not the Zendesk one beside them (a review).
    assert second["Description"].startswith("Not owned by Salesforce agent 0055g00000SamAAA: Salesforce refused routing's owner (")


def test_a_field_template_cannot_put_a_masked_card_back_together() -> None:
    # A review: `fields: {Card__c: "{{ … | join(' ') }}"}` sent a card whole with `redact: [card]`.
    packet = full_packet()
    packet["collected_data"]["card_groups"] = ["4111", "1111", "1111", "1111"]
    mapped = adapter(Settings(), redact=["card"], fields={"Card__c": "{{ collected_data.card_groups | join(' ') }}"})
    assert mapped.render(ctx_for(packet))["case"]["Card__c"] == "[redacted card ••••1111]"


def test_a_transcripts_parts_are_split_as_before_they_were_dated(monkeypatch) -> None:
    # A review of the mend: split for the line that dates them, a transcript near a part's end made one
    # part more ("2/6" for "2/5"), and an attempt resumed after the upgrade found none of the parts an
    # earlier release had posted by their headers — the whole transcript went again.
    from connector.brief import Brief

    lines = [{"at": f"2026-11-20T09:{n:02d}:00Z", "role": "customer", "text": "x" * 930} for n in range(20)]
    ctx = ctx_for(full_packet(transcript=lines))
    dated = [c["CommentBody"] for c in SalesforceAdapter(Settings(), {}).render(ctx)["comments"]]
    monkeypatch.setattr(Brief, "transcript_clock", property(lambda self: None))
    undated = [c["CommentBody"] for c in SalesforceAdapter(Settings(), {}).render(ctx_for(full_packet(transcript=lines)))
               ["comments"]]
    assert [b.split("\n", 1)[0] for b in dated] == [b.split("\n", 1)[0] for b in undated]
    assert any("(times UTC, 2026-11-20)" in body for body in dated)


def test_a_field_path_that_misspells_a_packet_field_is_warned_of() -> None:
    # An admin's review: `Segment__c: customer.segmnt` was left off every case, with `check` saying ok.
    warned = SalesforceAdapter(Settings(), {"handoff_id_field": "Handoff_Id__c", "fields": {
        "Segment__c": "customer.segmnt", "Tier__c": "customer.plan_tier", "Plan__c": "{{ customer.segment }}"}})
    assert warned.mapping_warnings() == [
        "mappings/salesforce.yaml: fields.Segment__c: customer.segmnt is no field the packet declares — did you mean "
        "customer.segment? (a bot's own field is read as written)"]
