"""Slack adapter against a loopback fake of the Web API: what goes over the wire, and what comes back.

Every message the adapter sends is run through `assert_within_limits`, a Block Kit checker written
here from Slack's documented limits (not imported from the code under test).
"""

from __future__ import annotations

import copy
import datetime as dt
import html
import json
import logging
import random
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import slack_blocks as kit
from adapters.base import Link
from adapters.errors import AuthError, OutcomeUnknown, RateLimited, RejectedError, TicketGone, TransientError
from adapters.events import AssignmentEvent, Holder
from adapters.slack import SlackAdapter
from connector.errors import ConfigError
from connector.settings import Settings
from tests.factories import full_packet, make_context, minimal_packet
from tests.fakes.slack import FakeSlack

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"
HANDOFF = "hnd_01TESTHANDOFF0000000000000"
SIGNING_SECRET = "slack-signing-secret-adapter-tests"  # interactivity on: alerts carry a Claim button


# ---- a Block Kit limits checker (Slack's numbers; our aggregate margin under ~13k) -----------


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def assert_within_limits(message: dict[str, Any]) -> None:
    text = message.get("text")
    assert isinstance(text, str) and text.strip(), "top-level text fallback missing"
    assert _units(text) <= 4000
    blocks = message.get("blocks") or []
    assert 0 < len(blocks) <= 50
    assert _units(json.dumps(blocks, ensure_ascii=False, separators=(",", ":"))) <= 12_000
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < _units(block["text"]["text"]) <= 150
        elif kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 0 < _units(block["text"]["text"]) <= 3000
            fields = block.get("fields", [])
            assert len(fields) <= 10
            assert all(0 < _units(f["text"]) <= 2000 for f in fields)
        elif kind == "actions":
            assert 0 < len(block["elements"]) <= 25
            for element in block["elements"]:
                assert 0 < _units(element["text"]["text"]) <= 75
                assert _units(element.get("value", "")) <= 2000
                assert 0 < _units(element["action_id"]) <= 255
                if "url" in element:  # a link button; without one Slack posts the click back to us
                    assert element["url"].startswith(("https://", "http://")) and _units(element["url"]) <= 3000
                assert element.get("style", "primary") in ("primary", "danger")
        elif kind == "context":
            assert 0 < len(block["elements"]) <= 10
        else:
            assert kind == "divider", kind


def sent_messages(fake: FakeSlack) -> list[dict[str, Any]]:
    return [call.body for call in fake.calls if call.method in ("chat.postMessage", "chat.update")]


def texts(message: dict[str, Any]) -> list[str]:
    """Every text object in a message, top-level text first."""
    out = [message["text"]]
    for block in message.get("blocks", []):
        if "text" in block:
            out.append(block["text"]["text"])
        out += [field["text"] for field in block.get("fields", [])]
        for element in block.get("elements", []):
            out.append(element["text"] if isinstance(element.get("text"), str) else element["text"]["text"])
    return out


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def settings_for(fake: FakeSlack, **overrides: Any) -> Settings:
    values = dict(slack_bot_token=fake.token, slack_channel="C0HANDOFF", slack_api_url=fake.api_url,
                  slack_signing_secret=SIGNING_SECRET, vendor_timeout_s=2)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def adapter(slack: FakeSlack) -> SlackAdapter:
    return SlackAdapter(settings_for(slack), {})


def ctx_for(packet: dict[str, Any] | None = None, **kwargs: Any):
    return make_context(packet, target="slack", **kwargs)


# ---- create --------------------------------------------------------------------------------


def test_create_posts_alert_then_thread_then_permalink(slack: FakeSlack, adapter: SlackAdapter) -> None:
    outcome = adapter.deliver(ctx_for())

    methods = [call.method for call in slack.calls]
    thread = outcome.payload["thread"]
    assert methods == ["chat.postMessage"] * (1 + len(thread)) + ["chat.getPermalink"]
    assert all(call.headers["authorization"] == f"Bearer {slack.token}" for call in slack.calls)

    alert = slack.calls[0]
    assert alert.content_type.startswith("application/json")
    assert alert.body["channel"] == "C0HANDOFF"
    assert alert.body["metadata"] == {"event_type": "handoff_created", "event_payload": {"handoff_id": HANDOFF}}
    assert alert.body["unfurl_links"] is False and "thread_ts" not in alert.body
    assert "Invoices stopped syncing to QuickBooks" in alert.body["text"]
    words = " ".join(texts(alert.body))
    for expected in ("Dana Whitfield", "enterprise", "did not solve it", "frustrated", "getting worse",
                     "integrations.quickbooks.sync_failure", "reconnecting did not help", "*error_code*\n4012",
                     "<https://help.acme.example/articles/qb-reconnect|QuickBooks reconnect guide> — did not help",
                     HANDOFF):
        assert expected in words, expected
    assert alert.body["blocks"][0]["type"] == "header" and alert.body["blocks"][0]["text"]["text"].startswith("🟠 High")
    claim, open_it = next(b for b in alert.body["blocks"] if b["type"] == "actions")["elements"]
    assert claim == {"type": "button", "text": {"type": "plain_text", "text": "Claim"}, "action_id": "handoff_claim",
                     "value": HANDOFF, "style": "primary"}
    assert open_it["url"] == "https://bots.acme.example/conversations/conv-1029"

    ts = outcome.link_extra["ts"]
    replies = slack.calls[1:-1]
    assert [r.body["thread_ts"] for r in replies] == [ts] * len(replies)
    assert [r.body["metadata"]["event_payload"]["part"] for r in replies] == list(range(len(replies)))
    assert "Everything the bot passed on" in replies[0].body["blocks"][0]["text"]["text"]
    assert "*[09:17:10] Customer:* Did that." in replies[-1].body["blocks"][0]["text"]["text"]

    permalink = slack.calls[-1]
    assert permalink.content_type == "application/x-www-form-urlencoded"
    assert permalink.body == {"channel": "C0HANDOFF", "message_ts": ts}
    assert outcome.status == "created"
    assert outcome.vendor_id == f"C0HANDOFF/{ts}"
    assert outcome.url == f"https://acme.slack.com/archives/C0HANDOFF/p{ts.replace('.', '')}"
    assert outcome.link_extra == {"channel": "C0HANDOFF", "ts": ts, "handoff_id": HANDOFF}
    # What an alert recorded from Slack's own event is given (the outbox's `_taken_ticket`): the same
    # link, asked of Slack as the create asked it.
    assert adapter.ticket_url(outcome.vendor_id) == outcome.url
    assert slack.calls[-1].method == "chat.getPermalink" and slack.calls[-1].body == permalink.body
    assert outcome.receipt["dropped"] == []
    for message in sent_messages(slack):
        assert_within_limits(message)


def test_channel_from_routing_beats_mapping_and_settings(slack: FakeSlack) -> None:
    adapter = SlackAdapter(settings_for(slack), {"channel": "C0MAPPING"})
    assignment = {"team": "billing", "priority": "high", "targets": {"slack": {"channel": "C0ROUTED"}}}
    adapter.deliver(ctx_for(assignment=assignment))
    adapter.deliver(ctx_for(handoff_id="hnd_other"))
    assert [c.body["channel"] for c in slack.calls_to("chat.postMessage") if "thread_ts" not in c.body] == [
        "C0ROUTED", "C0MAPPING"]


def test_preview_renders_without_credentials_or_network() -> None:
    payload = SlackAdapter(Settings(), {}).render(ctx_for(minimal_packet()))
    assert payload["message"]["channel"] == ""
    assert_within_limits(payload["message"])
    assert all(assert_within_limits(reply) is None for reply in payload["thread"])


@pytest.mark.parametrize(("conversation", "shown"), [
    ({"id": "c", "channel": "web_chat", "language": "en"}, "*Channel*\nweb_chat · en"),
    ({"id": "c", "language": "en"}, "*Language*\nen"),  # was "*Channel* en"
])
def test_the_conversation_field_names_what_it_holds(conversation: dict[str, str], shown: str) -> None:
    payload = SlackAdapter(Settings(), {}).render(ctx_for(full_packet(conversation=conversation)))
    assert shown in json.dumps(payload["message"]["blocks"], ensure_ascii=False).replace("\\n", "\n")


def test_no_claim_button_without_the_signing_secret_that_verifies_its_clicks() -> None:
    unverifiable = SlackAdapter(Settings(), {}).render(ctx_for())["message"]["blocks"]
    assert [e["action_id"] for b in unverifiable if b["type"] == "actions" for e in b["elements"]] == [
        "handoff_open_conversation"]
    claimable = SlackAdapter(Settings(slack_signing_secret="s"), {}).render(ctx_for(minimal_packet()))
    [actions] = [b for b in claimable["message"]["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == ["handoff_claim"]  # no conversation URL: Claim alone


# ---- update instead of a duplicate ------------------------------------------------------------


def test_the_alert_says_the_offset_the_customers_messages_came_with(adapter: SlackAdapter) -> None:
    # A review of the brief: "call me after 8am" at 23:17 their time read as UTC in the alert; only
    # the thread and the other targets' briefs said which clock it was. Labelled as the offset the
    # times were sent with: "Local time" passed a bot server's zone off as the customer's clock.
    packet = full_packet()
    for entry in packet["transcript"]:
        entry["at"] = entry["at"].replace("Z", "-08:00")
    [escalation] = [b for b in adapter.render(ctx_for(packet))["message"]["blocks"] if b.get("block_id") == "escalation"]
    [clock] = [f["text"] for f in escalation["fields"] if f["text"].startswith("*Times sent with offset*")]
    assert clock.startswith("*Times sent with offset*\nUTC-08:00 (their messages at ") and "at that offset" in clock
    utc = adapter.render(ctx_for(full_packet()))["message"]["blocks"]
    assert "offset" not in json.dumps(utc)


def test_second_handoff_is_a_thread_reply_not_a_new_alert(slack: FakeSlack, adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    link = Link(first.vendor_id, first.url, first.link_extra)
    before = len(slack.top_level("C0HANDOFF"))

    outcome = adapter.deliver(ctx_for(handoff_id="hnd_second", link=link))

    assert outcome.status == "updated" and outcome.vendor_id == first.vendor_id and outcome.url == first.url
    assert len(slack.top_level("C0HANDOFF")) == before
    new_calls = [c for c in slack.calls_to("chat.postMessage") if c.body.get("metadata", {})
                 .get("event_payload", {}).get("handoff_id") == "hnd_second"]
    assert new_calls and all(c.body["thread_ts"] == first.link_extra["ts"] for c in new_calls)
    assert new_calls[0].body["metadata"]["event_type"] == "handoff_updated"
    assert new_calls[0].body["reply_broadcast"] is True
    assert "Handed off again" in new_calls[0].body["blocks"][0]["text"]["text"]
    for message in sent_messages(slack):
        assert_within_limits(message)


@pytest.mark.parametrize("error", ["is_archived", "channel_not_found", "not_in_channel", "thread_not_found"])
def test_a_repeat_whose_alert_takes_no_more_replies_gets_a_new_alert(slack: FakeSlack, adapter: SlackAdapter,
                                                                     error: str) -> None:
    # A vendor review: the alert's channel archived (or the bot removed, the alert deleted) made every
    # later handoff of the conversation fail there for good — no alert for that customer, ever.
    first = adapter.deliver(ctx_for())
    link = Link(first.vendor_id, first.url, {**first.link_extra, "opened_with": dict(first.opened_with)})
    slack.fail("chat.postMessage", error=error)
    later = full_packet()
    later["transcript"].append({"at": "2026-11-20T09:30:00Z", "role": "customer", "text": "Hello? Still broken."})

    outcome = adapter.deliver(ctx_for(later, handoff_id="hnd_second", link=link))

    assert outcome.status == "created" and outcome.vendor_id != first.vendor_id
    [alert] = [m for m in slack.top_level("C0HANDOFF") if m["metadata"]["event_payload"]["handoff_id"] == "hnd_second"]
    assert alert["metadata"]["event_type"] == "handoff_created"
    # A new alert has no note saying what is new since the old one: nothing in it is marked [new].
    assert "[new]" not in json.dumps(slack.replies("C0HANDOFF", alert["ts"]))
    # After an unknown outcome, the thread the resume reads is gone too: the same.
    slack.fail("conversations.replies", error=error)
    again = adapter.deliver(ctx_for(handoff_id="hnd_third", link=link, outcome_unknown=True))
    assert again.status == "created" and again.vendor_id not in (first.vendor_id, outcome.vendor_id)
    # Archived between the update's first reply and the rest of its thread: a new alert, not a
    # note (refused too) and retries that resume the thread, skip the post that meets it gone, and die.
    slack.fail("chat.postMessage", after=1, error=error)
    midway = adapter.deliver(ctx_for(handoff_id="hnd_midway", link=link))
    assert midway.status == "created" and midway.vendor_id not in (first.vendor_id, outcome.vendor_id)
    # Any other refusal is one still.
    slack.fail("chat.postMessage", error="msg_too_long")
    with pytest.raises(RejectedError) as refused:
        adapter.deliver(ctx_for(handoff_id="hnd_fourth", link=link))
    assert not isinstance(refused.value, TicketGone)


def test_a_second_handoff_for_another_customer_says_so_in_its_reply(slack: FakeSlack, adapter: SlackAdapter) -> None:
    # The conversation id reused by the bot: the thread reply for Carol read as more of Alice's.
    from adapters.base import customer_marks

    first = adapter.deliver(ctx_for())
    alice = {**first.link_extra, "customer": customer_marks(full_packet())}  # as the outbox keeps it
    carol = full_packet(customer={"email": "carol@example.com", "name": "Carol"})
    adapter.deliver(ctx_for(carol, handoff_id="hnd_second", link=Link(first.vendor_id, first.url, alice)))
    adapter.deliver(ctx_for(handoff_id="hnd_third", link=Link(first.vendor_id, first.url, alice)))
    replies = {c.body["metadata"]["event_payload"]["handoff_id"]: c.body for c in slack.calls_to("chat.postMessage")
               if c.body.get("metadata", {}).get("event_type") == "handoff_updated"}
    [caution] = [b["text"]["text"] for b in replies["hnd_second"]["blocks"] if b.get("block_id") == "caution"]
    assert caution.startswith("⚠️ Careful: it names another customer (email carol@example.com)")
    assert "than the one this thread was opened for" in caution
    assert not [b for b in replies["hnd_third"]["blocks"] if b.get("block_id") == "caution"]  # Alice again
    for message in sent_messages(slack):
        assert_within_limits(message)


def test_a_second_handoff_says_under_its_title_what_is_new_since_the_alert(slack: FakeSlack,
                                                                           adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    opened = {**first.link_extra, "opened_with": dict(first.opened_with)}  # as the outbox keeps it
    later = full_packet()
    later["transcript"].append({"at": "2026-11-20T09:30:00Z", "role": "customer", "text": "Hello? Still broken."})
    adapter.deliver(ctx_for(later, handoff_id="hnd_second", link=Link(first.vendor_id, first.url, opened)))
    [reply] = [c.body for c in slack.calls_to("chat.postMessage")
               if c.body.get("metadata", {}).get("event_payload", {}).get("handoff_id") == "hnd_second"
               and c.body["metadata"]["event_type"] == "handoff_updated"]
    [since] = [b["text"]["text"] for b in reply["blocks"] if b.get("block_id") == "since"]
    # Of the thread it replies in: Slack has no ticket (a review).
    assert since == ("New since this thread was opened: 1 message from the customer (from 2026-11-20 09:30 UTC, "
                     "marked [new] in the transcript).")
    # The thread's transcript marks that message, and only it (the brief's rows are marked alike).
    thread = [c.body for c in slack.calls_to("chat.postMessage") if c.body.get("thread_ts")
              and c.body.get("metadata", {}).get("event_payload", {}).get("handoff_id") == "hnd_second"]
    posted = json.dumps(thread, ensure_ascii=False)
    assert posted.count("] [new] ") == 1 and "] [new] Customer:* Hello? Still broken." in posted
    # Marked still when Slack's masking renders the brief again (a card in the conversation).
    carded = copy.deepcopy(later)
    carded["transcript"][-1]["text"] = "Hello? Still broken. My card 4111 1111 1111 1111 was charged."
    adapter.deliver(ctx_for(carded, handoff_id="hnd_carded", link=Link(first.vendor_id, first.url, opened)))
    masked = json.dumps([c.body for c in slack.calls_to("chat.postMessage") if c.body.get("thread_ts") and c.body.get(
        "metadata", {}).get("event_payload", {}).get("handoff_id") == "hnd_carded"], ensure_ascii=False)
    assert "4111 1111 1111 1111" not in masked and "] [new] Customer:* Hello? Still broken. My card" in masked
    # A batch of messages sent while waiting says what it is itself, as on Zendesk and Salesforce.
    batch = {**later, "follow_up": {"handoff_id": "hnd_second", "first": 5}}
    assert ctx_for(batch, link=Link(first.vendor_id, first.url, opened)).since_opened is None
    # Routed to another team than the alert's: the thread says the alert stays where it is.
    team = first.opened_with["team"]
    adapter.deliver(ctx_for(later, handoff_id="hnd_third", link=Link(first.vendor_id, first.url, opened),
                            assignment={"team": "escalations", "priority": "normal"}))
    [third] = [c.body for c in slack.calls_to("chat.postMessage")
               if c.body.get("metadata", {}).get("event_payload", {}).get("handoff_id") == "hnd_third"
               and c.body["metadata"]["event_type"] == "handoff_updated"]
    [since] = [b["text"]["text"] for b in third["blocks"] if b.get("block_id") == "since"]
    assert since.endswith(f"Routing chose escalations for this handoff, but this thread was opened for {team} and "
                          "was not moved.")
    # ...and its "Routed to" says so too, as the brief does.
    assert f"*Routed to*\nescalations — not moved: this thread stays with {team}" in [
        field["text"] for block in third["blocks"] for field in block.get("fields", ())]


# ---- unknown outcomes: never two alerts ------------------------------------------------------


def test_timeout_after_slack_posted_then_found_by_metadata(slack: FakeSlack) -> None:
    adapter = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {})
    slack.delay("chat.postMessage", 3.0, act=True)  # Slack stores the alert; the answer never arrives in time
    ctx = ctx_for()

    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)
    assert len(slack.calls_to("chat.postMessage")) == 1  # no library retry re-posted it
    assert len(slack.top_level("C0HANDOFF")) == 1

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True, attempt=2))

    assert outcome.status == "created"
    alerts = slack.top_level("C0HANDOFF")
    assert len(alerts) == 1, "the alert was posted twice"
    assert outcome.vendor_id == f"C0HANDOFF/{alerts[0]['ts']}"
    assert outcome.url.endswith(alerts[0]["ts"].replace(".", ""))
    history = slack.calls_to("conversations.history")[0].body
    assert history["channel"] == "C0HANDOFF" and history["include_all_metadata"] == "1"
    assert float(history["oldest"]) > time.time() - 2 * 86400 and int(history["limit"]) <= 200
    replies = slack.replies("C0HANDOFF", alerts[0]["ts"])
    expected = adapter.render(ctx)["thread"]
    assert [r["metadata"]["event_payload"]["part"] for r in replies] == list(range(len(expected)))


def test_an_alert_whose_answer_was_lost_is_found_where_it_went_after_the_channel_changed(slack: FakeSlack) -> None:
    # The lookup searched where the *next* alert would go: a mapping edit (or a new SLACK_CHANNEL)
    # between the timed-out post and its retry found nothing there and posted a second alert.
    before = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {"channel": "C0BEFORE"})
    slack.delay("chat.postMessage", 3.0, act=True)
    ctx = ctx_for()
    with pytest.raises(OutcomeUnknown) as caught:
        before.deliver(ctx)
    assert caught.value.sent_to == {"channel": "C0BEFORE", "left_out": []}

    after = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {"channel": "C0AFTER"})
    outcome = after.deliver(replace(ctx, outcome_unknown=True, sent_to=caught.value.sent_to, attempt=2))

    assert outcome.status == "created" and outcome.vendor_id.startswith("C0BEFORE/")
    assert len(slack.top_level("C0BEFORE")) == 1 and slack.top_level("C0AFTER") == []
    assert [r["metadata"]["event_payload"]["part"] for r in slack.replies("C0BEFORE", slack.top_level("C0BEFORE")[0]["ts"])]


def test_a_lookup_with_nothing_where_the_last_post_went_also_searches_where_this_one_would(slack: FakeSlack) -> None:
    # An attempt nobody recorded (a process killed mid-post) may have posted in the channel of now.
    adapter = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {"channel": "C0AFTER"})
    slack.delay("chat.postMessage", 3.0, act=True)
    ctx = ctx_for()
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True, sent_to={"channel": "C0BEFORE"}, attempt=2))

    assert outcome.status == "created" and len(slack.top_level("C0AFTER")) == 1
    assert [c.body["channel"] for c in slack.calls_to("conversations.history")] == ["C0BEFORE", "C0AFTER"]


def test_a_former_channel_slack_will_not_read_is_passed_over_not_a_refusal(slack: FakeSlack, caplog) -> None:
    # The channel may have been changed *because* it was deleted or the bot removed: failing the
    # delivery for good there would lose the handoff.
    adapter = SlackAdapter(settings_for(slack), {"channel": "C0AFTER"})
    with caplog.at_level(logging.WARNING, logger="adapters.slack"):
        outcome = adapter.deliver(ctx_for(outcome_unknown=True, sent_to={"channel": "#missing-gone"}))
    assert outcome.status == "created" and len(slack.top_level("C0AFTER")) == 1
    assert any("cannot be read" in r.getMessage() and r.channel == "#missing-gone" for r in caplog.records)


def test_any_error_once_the_alert_is_up_is_an_unknown_outcome_in_its_channel() -> None:
    import adapters.slack as slack_module

    with pytest.raises(OutcomeUnknown) as caught, slack_module._after_posting("alert C0X/1.0", "C0X"):
        raise TypeError("an answer of an unexpected shape")
    assert caught.value.sent_to == {"channel": "C0X"} and "alert C0X/1.0 posted, then: TypeError" in str(caught.value)


def test_a_former_private_channel_the_token_may_not_read_is_passed_over(slack: FakeSlack) -> None:
    adapter = SlackAdapter(settings_for(slack), {"channel": "C0AFTER"})
    slack.fail("conversations.history", error="missing_scope")
    outcome = adapter.deliver(ctx_for(outcome_unknown=True, sent_to={"channel": "G0FORMER"}))
    assert outcome.status == "created" and len(slack.top_level("C0AFTER")) == 1


def test_a_failure_after_the_alert_is_up_records_the_channel_slack_named(slack: FakeSlack) -> None:
    adapter = SlackAdapter(settings_for(slack), {"channel": "C0BEFORE"})
    slack.fail("chat.getPermalink", status=500, error="internal_error")
    with pytest.raises(OutcomeUnknown) as caught:
        adapter.deliver(ctx_for())
    assert caught.value.sent_to == {"channel": "C0BEFORE", "left_out": []}


def test_a_replay_days_later_still_finds_the_alert_its_first_attempt_posted(slack: FakeSlack,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The lookup read back to the oldest delivery still retried (a day): an admin's replay after a
    # weekend missed the alert and posted it again, thread and all.
    from ulid import ULID

    import adapters.slack as slack_module

    adapter = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {})
    slack.delay("chat.postMessage", 3.0, act=True)  # posted; the answer lost
    ctx = ctx_for(handoff_id=f"hnd_{ULID()}")
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)
    made = slack_module.created_at(ctx.handoff_id).timestamp()
    monkeypatch.setattr(slack_module, "created_at", lambda _: dt.datetime.fromtimestamp(made - 3 * 86400, dt.UTC))

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True, attempt=1))  # as if made three days ago

    assert outcome.status == "created"
    assert len(slack.top_level("C0HANDOFF")) == 1, "the replay posted a second alert"
    assert float(slack.calls_to("conversations.history")[0].body["oldest"]) < made - 3 * 86400


def test_a_busy_channel_does_not_hide_the_alert_from_the_lookup(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    """The lookup read a day back, newest first, at most 1,000 messages: 1,001 posted after the
    alert and the retry posted it again, thread and all. It reads from the handoff's making."""
    from ulid import ULID

    adapter = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {})
    slack.channels["C0HANDOFF"] += [{"type": "message", "ts": f"{time.time() - 7200:.0f}.{n:06d}", "text": "earlier"}
                                    for n in range(2000)]  # the hours before the handoff
    slack.delay("chat.postMessage", 3.0, act=True)  # posted; the answer lost
    ctx = ctx_for(handoff_id=f"hnd_{ULID()}")
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)
    slack.channels["C0HANDOFF"] += [{"type": "message", "ts": f"{time.time() + 1:.0f}.{n:06d}", "text": "busy"}
                                    for n in range(1500)]  # the channel since

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True, attempt=2))

    assert outcome.status == "created"
    assert [m for m in slack.top_level("C0HANDOFF") if m.get("bot_id")] == [slack.top_level("C0HANDOFF")[2000]]
    oldest = float(slack.calls_to("conversations.history")[0].body["oldest"])
    assert abs(oldest - (time.time() - 600)) < 30  # the handoff's making, less the clocks' skew
    assert "taken for not posted" not in caplog.text


def test_a_channel_too_busy_to_read_back_gets_the_alert_again_and_says_so(
        slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    adapter = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {})
    slack.delay("chat.postMessage", 3.0, act=True)
    ctx = ctx_for()
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)
    slack.channels["C0HANDOFF"] += [{"type": "message", "ts": f"{time.time() + 1:.0f}.{n:06d}", "text": "busy"}
                                    for n in range(3001)]
    with caplog.at_level(logging.WARNING, logger="adapters.slack"):
        outcome = adapter.deliver(replace(ctx, outcome_unknown=True, attempt=2))
    assert outcome.status == "created" and len(slack.calls_to("conversations.history")) == 15
    assert "alert not found among the channel's newest messages since the handoff" in caplog.text


def test_an_alert_a_bot_sent_elsewhere_by_vendor_extra_is_looked_for_there(slack: FakeSlack) -> None:
    adapter = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {})
    slack.delay("chat.postMessage", 3.0, act=True)
    ctx = ctx_for(full_packet(vendor_extra={"slack": {"channel": "C0ESCALATE"}}))
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True, attempt=2))

    assert len(slack.top_level("C0ESCALATE")) == 1, "the alert was posted twice"
    assert outcome.vendor_id.startswith("C0ESCALATE/") and not slack.top_level("C0HANDOFF")
    assert slack.calls_to("conversations.history")[0].body["channel"] == "C0ESCALATE"


def test_failure_mid_thread_resumes_the_thread_without_reposting(slack: FakeSlack, adapter: SlackAdapter) -> None:
    ctx = ctx_for()
    slack.fail("chat.postMessage", after=2, status=429, headers={"Retry-After": "3"})

    with pytest.raises(OutcomeUnknown) as caught:  # the alert is up: the retry must look first
        adapter.deliver(ctx)
    assert caught.value.retry_after == 3

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True))

    alert = slack.top_level("C0HANDOFF")
    assert len(alert) == 1 and outcome.vendor_id == f"C0HANDOFF/{alert[0]['ts']}"
    parts = [r["metadata"]["event_payload"]["part"] for r in slack.replies("C0HANDOFF", alert[0]["ts"])]
    assert parts == list(range(len(adapter.render(ctx)["thread"])))  # each part once, in order
    assert slack.calls_to("conversations.replies")[0].body["include_all_metadata"] == "1"


def test_update_interrupted_mid_thread_resumes_without_duplicates(slack: FakeSlack, adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    ctx = ctx_for(handoff_id="hnd_second", link=Link(first.vendor_id, first.url, first.link_extra))
    slack.fail("chat.postMessage", after=2, status=503)
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True))

    assert outcome.status == "updated"
    mine = [r["metadata"] for r in slack.replies("C0HANDOFF", first.link_extra["ts"])
            if r["metadata"]["event_payload"]["handoff_id"] == "hnd_second"]
    assert [m["event_type"] for m in mine].count("handoff_updated") == 1
    parts = [m["event_payload"]["part"] for m in mine if m["event_type"] == "handoff_thread"]
    assert parts == list(range(len(adapter.render(ctx)["thread"])))


def _messages_while_waiting(first_link: Link, text: str, **entry: Any) -> Any:
    """A follow-up's context as the outbox builds it once its handoff reached Slack: the short brief."""
    from connector.brief import render_brief

    packet = full_packet()
    packet["follow_up"] = {"handoff_id": "hnd_01TESTHANDOFF0000000000000", "first": len(packet["transcript"])}
    packet["transcript"].append({"at": "2026-11-20T09:30:00Z", "role": "customer", "text": text, **entry})
    return replace(ctx_for(packet, handoff_id="msg_batch", link=first_link),
                   brief=render_brief(packet, "msg_batch", update=True))


def test_messages_interrupted_mid_thread_resume_without_duplicates(slack: FakeSlack, adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    ctx = _messages_while_waiting(Link(first.vendor_id, first.url, first.link_extra), "still here")
    slack.fail("chat.postMessage", after=1, status=503)  # the line went up; its messages did not
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)

    assert adapter.deliver(replace(ctx, outcome_unknown=True)).status == "updated"
    mine = [r for r in slack.replies("C0HANDOFF", first.link_extra["ts"])
            if r["metadata"]["event_payload"]["handoff_id"] == "msg_batch"]
    assert [r["metadata"]["event_type"] for r in mine].count("handoff_updated") == 1
    assert sum("still here" in json.dumps(r["blocks"]) for r in mine) == 1


def test_messages_while_waiting_are_named_as_those_of_the_handoff_they_follow(slack: FakeSlack,
                                                                             adapter: SlackAdapter) -> None:
    # The batch's `follow_up` was left out of what its replies were built from: "Transcript of handoff msg_batch".
    first = adapter.deliver(ctx_for())
    ctx = _messages_while_waiting(Link(first.vendor_id, first.url, first.link_extra), "still here")
    texts = [reply["text"] for reply in adapter.render(ctx)["thread"]]
    assert texts == ["Transcript of messages msg_batch of handoff hnd_01TESTHANDOFF0000000000000"]


@pytest.mark.parametrize(("mapping", "masked"), [({}, True), ({"version": 1}, True), ({"redact": []}, False)])
def test_without_a_redact_list_slack_masks_what_the_shipped_file_does(slack: FakeSlack, mapping: dict[str, Any],
                                                                       masked: bool) -> None:
    # Its file moved away (or written without `redact:`), a card number went to the channel whole.
    packet = full_packet()
    packet["transcript"][0]["text"] = "my card is 4111 1111 1111 1111"
    adapter = SlackAdapter(settings_for(slack), mapping)
    ctx = adapter.for_target(ctx_for(packet))
    sent = json.dumps(adapter.render(ctx), ensure_ascii=False)
    assert ("4111 1111 1111 1111" not in sent) is masked
    assert (ctx.redactions == {"card": 1}) is masked


def test_messages_are_masked_as_the_mapping_says_and_stay_short(slack: FakeSlack) -> None:
    adapter = SlackAdapter(settings_for(slack), {"redact": ["card"]})
    first = adapter.deliver(ctx_for())
    ctx = _messages_while_waiting(Link(first.vendor_id, first.url, first.link_extra), "my card 4242 4242 4242 4242")
    adapter.deliver(ctx)
    mine = json.dumps([r for r in slack.replies("C0HANDOFF", first.link_extra["ts"])
                       if r["metadata"]["event_payload"]["handoff_id"] == "msg_batch"], ensure_ascii=False)
    assert "4242 4242 4242 4242" not in mine and "redacted card ••••4242" in mine
    assert "wrote again while waiting" in mine and "Everything the bot passed on" not in mine


def test_unknown_outcome_with_nothing_at_slack_posts_normally(slack: FakeSlack, adapter: SlackAdapter) -> None:
    outcome = adapter.deliver(ctx_for(outcome_unknown=True))
    assert outcome.status == "created" and len(slack.top_level("C0HANDOFF")) == 1
    assert [c.method for c in slack.calls][:2] == ["conversations.history", "chat.postMessage"]


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"<html>502 from the corporate proxy</html>", b"", b'{"ok": true, "channel": "C0HAND', b"\xff\xfe{\"ok\": true}",
    b'{"ok": true, "channel": "C0HANDOFF"}',  # ok, without the ts that says which message
], ids=["html", "empty", "cut-off", "not-utf8", "no-ts"])
def test_an_odd_answer_to_the_alert_is_an_unknown_outcome_and_the_retry_finds_it(slack: FakeSlack,
                                                                                   adapter: SlackAdapter,
                                                                                   raw: bytes) -> None:
    # An HTML page was a refusal (the handoff failed with its alert up, or lost when nothing was
    # posted); a cut-off or undecodable body, or `ok` without a ts, escaped as a library error
    # and the retry posted a second alert.
    slack.acts_then_answers("chat.postMessage", raw=raw)
    ctx = ctx_for()
    with pytest.raises(OutcomeUnknown) as caught:
        adapter.deliver(ctx)
    assert caught.value.sent_to == {"channel": "C0HANDOFF", "left_out": []}
    outcome = adapter.deliver(replace(ctx, outcome_unknown=True, sent_to=caught.value.sent_to, attempt=2))
    assert outcome.status == "created" and len(slack.top_level("C0HANDOFF")) == 1


def test_a_thread_reply_refused_for_good_is_replaced_by_a_note_and_named_in_the_receipt(slack: FakeSlack,
                                                                                         adapter: SlackAdapter) -> None:
    # Refused on every retry with the alert up: the delivery ended "failed" beside a live alert,
    # no ticket recorded, and the conversation's next handoff posted a second alert.
    slack.fail("chat.postMessage", after=2, error="invalid_blocks")  # the alert, the details; then the transcript
    ctx = ctx_for()
    outcome = adapter.deliver(ctx)
    [alert] = slack.top_level("C0HANDOFF")
    assert outcome.status == "created" and outcome.vendor_id == f"C0HANDOFF/{alert['ts']}"
    replies = slack.replies("C0HANDOFF", alert["ts"])
    expected = adapter.render(ctx)["thread"]
    assert [r["metadata"]["event_payload"]["part"] for r in replies] == list(range(len(expected)))
    assert "Slack refused part 2 of the thread" in replies[1]["text"]
    assert {"part": "transcript", "reason": "Slack refused part 2 of the thread (Slack chat.postMessage: "
            "invalid_blocks); a note stands in its place"} in outcome.receipt["dropped"]


REFUSED_PART_2 = {"part": "transcript", "reason": "Slack refused part 2 of the thread (Slack chat.postMessage: "
                  "invalid_blocks); a note stands in its place"}


def _refused_then_cut_off(slack: FakeSlack) -> None:
    """The alert (or a repeat's reply) and the details post; the transcript's first part is refused
    for good, its note posts; the next part meets a 503 (the outcome unknown)."""
    slack.fail("chat.postMessage", after=2, error="invalid_blocks")
    slack.fail("chat.postMessage", after=1, status=503)


def _long_packet() -> dict[str, Any]:
    packet = full_packet()
    packet["transcript"] = packet["transcript"] * 60  # several transcript parts
    return packet


def test_a_part_refused_before_the_outcome_became_unknown_is_still_in_the_resumed_receipt(
        slack: FakeSlack, adapter: SlackAdapter) -> None:
    # A review: the refusal was known only to the attempt that met it; the retry that found the
    # alert and finished its thread said `dropped: []`.
    ctx = ctx_for(_long_packet())
    _refused_then_cut_off(slack)
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True, attempt=2))

    assert outcome.status == "created" and len(slack.top_level("C0HANDOFF")) == 1
    assert REFUSED_PART_2 in outcome.receipt["dropped"]


def test_a_part_refused_before_an_update_was_cut_off_is_still_in_the_resumed_receipt(
        slack: FakeSlack, adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    ctx = ctx_for(_long_packet(), handoff_id="hnd_second", link=Link(first.vendor_id, first.url, first.link_extra))
    _refused_then_cut_off(slack)
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True, attempt=2))

    assert outcome.status == "updated"
    assert REFUSED_PART_2 in outcome.receipt["dropped"]


def test_an_odd_answer_to_a_read_is_retried_not_a_refusal(slack: FakeSlack, adapter: SlackAdapter) -> None:
    slack.fail("conversations.history", raw=b"<html>gateway</html>")
    with pytest.raises(TransientError) as caught:
        adapter.deliver(ctx_for(outcome_unknown=True))
    assert not isinstance(caught.value, OutcomeUnknown) and slack.calls_to("chat.postMessage") == []


def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(slack: FakeSlack, adapter: SlackAdapter) -> None:
    # urllib followed it with every header: the bot token reached the other host.
    with FakeSlack() as elsewhere:
        slack.fail("chat.postMessage", status=302, headers={"Location": f"{elsewhere.api_url}chat.postMessage"})
        with pytest.raises(RejectedError, match=r"redirected .*SLACK_API_URL"):
            adapter.deliver(ctx_for())
        assert elsewhere.calls == []


def test_rate_limit_raises_promptly_with_retry_after(slack: FakeSlack, adapter: SlackAdapter) -> None:
    slack.fail("chat.postMessage", status=429, error="ratelimited", headers={"Retry-After": "7"})
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        adapter.deliver(ctx_for())
    assert time.monotonic() - started < 0.5  # nobody sleeps on a 429
    assert caught.value.retry_after == 7.0 and caught.value.status == 429
    assert len(slack.calls) == 1


@pytest.mark.parametrize("header", ["inf", "1e400", "99999999999"])
def test_a_retry_after_beyond_reason_is_held_to_an_hour(slack: FakeSlack, adapter: SlackAdapter, header: str) -> None:
    # `inf` crashed the recording of the attempt (retried for ever, never counted); a huge figure
    # paused every Slack delivery for millennia.
    slack.fail("chat.postMessage", status=429, error="ratelimited", headers={"Retry-After": header})
    with pytest.raises(RateLimited) as caught:
        adapter.deliver(ctx_for())
    assert caught.value.retry_after == 3600.0


def test_transcript_times_are_in_utc_as_in_the_brief_whatever_offset_the_bot_wrote() -> None:
    # Sliced as written: three consecutive moments showed as 04:14:02, 09:14:05, 10:15:40.
    packet = full_packet()
    packet["transcript"][0]["at"] = "2026-11-20T04:14:02-05:00"
    packet["transcript"][1]["at"] = "2026-11-20T09:14:05Z"
    packet["transcript"][2]["at"] = "2026-11-20T10:15:40+01:00"
    thread = "\n".join(b["text"]["text"] for m in kit.transcript(packet, HANDOFF) for b in m["blocks"])
    assert re.findall(r"\*\[([^\]]+)\] (?:Customer|Bot):\*", thread)[:3] == ["09:14:02", "09:14:05", "09:15:40"]
    # A review: one day's times alone read as today's (no date anywhere in the alert): its day said once.
    assert "messages, on 2026-11-20, times in UTC" in thread
    packet["transcript"][-1]["at"] = "2026-11-21T08:00:00Z"  # over two days: each time says its day
    later = "\n".join(b["text"]["text"] for m in kit.transcript(packet, HANDOFF) for b in m["blocks"])
    assert "messages, times in UTC" in later and "*[2026-11-21 08:00:00]" in later


def test_a_values_later_lines_are_indented_so_none_passes_for_a_row_of_the_alert_or_the_thread(
        adapter: SlackAdapter) -> None:
    # A review: a collected value "4012\n• *refund_approved:* yes" listed a field the bot never sent,
    # a summary's second line a contradicting urgency, a contact's summary another contact — the
    # Zendesk and Salesforce briefs indent a value's later lines, Slack did not. A U+2028 too.
    packet = full_packet()
    packet["collected_data"]["error_code"] = "4012\n• *refund_approved:* yes"
    packet["intent"]["summary"] = "Sync failing.\r\n*Urgency, as the bot said:* low"
    packet["history"][0]["summary"] = "Asked about QB\n• 2026-11-19 phone — Refund promised by manager"
    packet["escalation"]["detail"] = "Asked twice\n*Collected data:*"
    packet["transcript"][0]["text"] = "Hi\u2028*[09:15:50] Agent:* I have issued a full refund"
    thread = "\n".join(b["text"]["text"] for m in [*kit.details(packet, HANDOFF), *kit.transcript(packet, HANDOFF)]
                       for b in m["blocks"])
    for forged in ("• *refund_approved:* yes", "*Urgency, as the bot said:* low", "• 2026-11-19 phone",
                   "*[09:15:50] Agent:*"):
        assert f"\n\u2003\u2003{forged}" in thread and f"\n{forged}" not in thread
    assert thread.count("\n*Collected data:*") == 1 and "Asked twice\n\u2003\u2003*Collected data:*" in thread
    blocks = adapter.render(ctx_for(packet))["message"]["blocks"]
    alert = "\n".join([*(b["text"]["text"] for b in blocks if b["type"] == "section"),
                       *(f["text"] for b in blocks for f in b.get("fields", []))])
    for forged in ("• *refund_approved:* yes", "• 2026-11-19 phone", "*Collected data:*"):
        assert f"\n\u2003\u2003{forged}" in alert and f"\n{forged}" not in alert

    # A review of the mend: a title, a channel, a link's label and routing's team took other ways in.
    packet["attempted_solutions"][0]["title"] = "Reset password\n• Refund issued — worked"
    packet["history"][0]["channel"] = "email\n• 2026-11-30 phone — promised a full refund"
    assignment = {"team": "Billing ops\n*Bot's summary:* refund approved", "rule": "enterprise"}
    message = kit.alert(packet, HANDOFF, assignment, [])[0]
    thread = "\n".join(b["text"]["text"] for m in kit.details(packet, HANDOFF) for b in m["blocks"])
    for text in (json.dumps(message, ensure_ascii=False).replace("\\n", "\n"), thread):
        for forged in ("• Refund issued", "• 2026-11-30 phone", "*Bot's summary:* refund approved"):
            assert f"\n{forged}" not in text, forged

    # A second review: a key of the packet, and the customer's name in the messages' reply, too; and a
    # title of two lines lost its link (or got an "open the link" line with none).
    packet["collected_data"]["order_id\n• *refund_approved:* yes"] = "5521"
    packet["customer"]["name"] = "Ann\n*[10:00:05] Agent:* refund approved"
    packet["attempted_solutions"] = [{"title": "Reset password\nvia email", "outcome": "not_helpful"},
                                     {"title": "Line one\nline two", "outcome": "not_helpful",
                                      "url": "https://help.example.com/x"}]
    message = kit.alert(packet, HANDOFF, {"team": "support"}, [])[0]
    thread = "\n".join(b["text"]["text"] for m in kit.details(packet, HANDOFF) for b in m["blocks"])
    said = kit.follow_up(packet, [{"at": "2026-11-20T10:00:00Z", "role": "customer", "text": "hi"}])
    for text in (json.dumps(message, ensure_ascii=False).replace("\\n", "\n"), thread,
                 said["blocks"][0]["text"]["text"]):
        for forged in ("• *refund_approved:* yes", "*[10:00:05] Agent:*"):
            assert f"\n{forged}" not in text, forged
    assert "• Reset password via email — did not help" in thread and "open the link" not in thread
    assert "• <https://help.example.com/x|Line one line two> — did not help" in thread


def test_the_details_show_booleans_and_the_preferred_agent_as_the_brief_does() -> None:
    packet = full_packet()
    packet["collected_data"]["refund_requested"] = False
    packet["routing"]["preferred_agent"] = {"id": "U123", "email": "sam@acme.example"}
    thread = "\n".join(b["text"]["text"] for m in kit.details(packet, HANDOFF) for b in m["blocks"])
    assert "*refund_requested:* no" in thread and "preferred agent: sam@acme.example, id U123" in thread
    assert "{'id'" not in thread and "False" not in thread


def test_the_details_carry_what_else_only_the_alert_does_the_mood_the_conversations_link_the_platform() -> None:
    # A review: a bot's `vendor_extra.slack.blocks` replaces the alert, and the sentiment and the
    # conversation's link (the alert's field and button) then reached no agent, the receipt saying
    # both were delivered; the bot's platform was in no Slack message at all.
    packet = full_packet()
    thread = "\n".join(b["text"]["text"] for m in kit.details(packet, HANDOFF) for b in m["blocks"])
    sentiment, conversation, bot = packet["sentiment"], packet["conversation"], packet["bot"]
    assert f"*Sentiment:* {sentiment['label']} (" in thread
    assert f"<{conversation['url']}|open the conversation>" in thread
    assert f"bot: {bot['name']} ({bot['platform']})" in thread


@pytest.mark.parametrize("url", ["ftp://files.acme.example/conversations/1029",
                                 ("https://bot.example/c?" + "&".join(f"a{i}=1" for i in range(400)))[:2000]])
def test_a_conversation_address_no_link_can_carry_is_in_the_thread_as_text(url: str) -> None:
    # A review of the line above: "• open the conversation", linking nothing, the address nowhere.
    packet = full_packet()
    packet["conversation"]["url"] = url
    thread = "\n".join(b["text"]["text"] for m in kit.details(packet, HANDOFF) for b in m["blocks"])
    assert "open the conversation" not in thread
    assert f"• conversation address: {url[:60].replace('&', '&amp;')}" in thread


def test_the_customers_attributes_are_listed_under_the_customer_not_the_intent() -> None:
    # After the intent line, "• plan: Business Pro" and "• seats: 40" read as the intent's data.
    thread = "\n".join(b["text"]["text"] for m in kit.details(full_packet(), HANDOFF) for b in m["blocks"])
    customer, plan, intent = thread.index("*Customer:*"), thread.index("• plan:"), thread.index("*Intent:*")
    assert customer < plan < intent and thread.index("*Conversation:*") > plan


def test_trigger_words_the_alert_shortens_are_in_the_thread_whole(slack: FakeSlack, adapter: SlackAdapter) -> None:
    # The receipt said "in full in the thread"; the thread never carried them.
    packet = full_packet()
    packet["escalation"] = {**packet["escalation"], "keywords": [f"keyword-number-{n:02d}" for n in range(40)]}
    outcome = adapter.deliver(ctx_for(packet))
    alert, *thread = [call.body for call in slack.calls_to("chat.postMessage")]
    assert "keyword-number-39" not in json.dumps(alert["blocks"])
    assert {"part": "escalation", "reason": "shortened in the alert; in full in the thread"} in outcome.receipt["dropped"]
    assert "keyword-number-39" in json.dumps(thread)


@pytest.mark.parametrize(("stated", "part"), [(None, "transcript"), ("x " * 700, "intent")])
def test_the_customers_words_shortened_in_the_alert_are_told_as_the_part_they_came_from(
        slack: FakeSlack, adapter: SlackAdapter, stated, part) -> None:
    # A bot developer's review: words from the transcript's first line, cut, were told as `intent`
    # dropped — to a bot that sent no intent.
    packet = minimal_packet()
    packet["transcript"][0]["text"] = "My order never arrived. " * 80
    if stated:
        packet["intent"] = {"stated_problem": stated}
    outcome = adapter.deliver(ctx_for(packet))
    dropped = {entry["part"] for entry in outcome.receipt["dropped"]}
    assert part in dropped and dropped <= {part, "transcript"}


def test_a_rate_limit_once_the_alert_is_up_still_pauses_slack(slack: FakeSlack, adapter: SlackAdapter) -> None:
    # Turned into a plain unknown outcome, only this delivery waited: the others went on posting
    # into the limit.
    slack.fail("chat.postMessage", after=2, status=429, error="ratelimited", headers={"Retry-After": "30"})
    with pytest.raises(OutcomeUnknown) as caught:
        adapter.deliver(ctx_for(full_packet()))
    assert isinstance(caught.value, RateLimited) and caught.value.retry_after == 30


@pytest.mark.parametrize("code", ["invalid_auth", "not_authed", "token_revoked", "account_inactive", "missing_scope"])
def test_auth_errors(slack: FakeSlack, adapter: SlackAdapter, code: str) -> None:
    slack.fail("chat.postMessage", error=code)
    with pytest.raises(AuthError, match=code):
        adapter.deliver(ctx_for())


def test_a_missing_scope_is_named_so_the_admin_knows_what_to_add(slack: FakeSlack, adapter: SlackAdapter) -> None:
    """The lookup after a timeout reads the channel's history, which chat:write alone does not allow
    (the outcome stays unknown: the timed-out post may be there — `base._still_unknown`)."""
    slack.fail("conversations.history", raw=json.dumps({"ok": False, "error": "missing_scope",
                                                         "needed": "channels:history", "provided": "chat:write"}).encode())
    with pytest.raises(OutcomeUnknown, match=r"missing_scope \(the bot token needs channels:history;"):
        adapter.deliver(ctx_for(outcome_unknown=True, attempt=2))


def test_a_connection_failure_is_the_connectors_to_report_not_slack_sdks_error_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    # slack-sdk logged ERROR "Failed to send a request to Slack API server" once per try, two for
    # one attempt with its retry: an operator paging on ERROR was paged by a blip a retry got past.
    from connector import jsonlog

    jsonlog.configure("INFO")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    adapter = SlackAdapter(Settings(slack_bot_token="xoxb-1", slack_channel="C0HANDOFF",
                                    slack_api_url=f"http://127.0.0.1:{port}/api/", vendor_timeout_s=2), {})
    with pytest.raises(TransientError, match="cannot reach Slack"):
        adapter.deliver(ctx_for())
    assert [r for r in caplog.records if r.name.startswith("slack_sdk") and r.levelno >= logging.ERROR] == []


def test_wrong_token_is_refused_as_auth_error(slack: FakeSlack) -> None:
    adapter = SlackAdapter(settings_for(slack, slack_bot_token="xoxb-wrong"), {})
    with pytest.raises(AuthError, match="invalid_auth"):
        adapter.deliver(ctx_for())
    assert slack.calls[0].headers["authorization"] == "Bearer xoxb-wrong"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(slack: FakeSlack, adapter: SlackAdapter, status: int) -> None:
    slack.fail("chat.postMessage", status=status, raw=b"<html>Bad gateway</html>")
    with pytest.raises(TransientError) as caught:
        adapter.deliver(ctx_for())
    assert caught.value.status == status
    # A 5xx to a post may follow the post itself: the retry looks before posting again.
    assert isinstance(caught.value, OutcomeUnknown)


@pytest.mark.parametrize("code", ["fatal_error", "internal_error", "service_unavailable", "request_timeout"])
def test_slacks_own_failures_answered_with_200_are_retried_looking_first(slack: FakeSlack, adapter: SlackAdapter,
                                                                         code: str) -> None:
    # Slack says of these that the operation may have partly succeeded: refused for good, a short
    # Slack incident failed every handoff it met; retried blindly, one that did post would post twice.
    slack.fail("chat.postMessage", error=code)
    with pytest.raises(OutcomeUnknown, match=code):
        adapter.deliver(ctx_for())


def test_rate_limited_as_slacks_api_description_spells_it_pauses_too(slack: FakeSlack, adapter: SlackAdapter) -> None:
    slack.fail("chat.postMessage", error="rate_limited", headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        adapter.deliver(ctx_for())
    assert caught.value.retry_after == 7


def test_server_error_on_a_read_is_plain_transient(slack: FakeSlack, adapter: SlackAdapter) -> None:
    slack.fail("conversations.history", status=503)
    with pytest.raises(TransientError) as caught:
        adapter.deliver(ctx_for(outcome_unknown=True))
    assert not isinstance(caught.value, OutcomeUnknown)


def test_connection_refused_is_transient_not_unknown() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(slack_bot_token="xoxb-x", slack_channel="C0HANDOFF", slack_api_url=f"http://127.0.0.1:{port}/api/",
                        vendor_timeout_s=1)
    with pytest.raises(TransientError) as caught:
        SlackAdapter(settings, {}).deliver(ctx_for())
    assert not isinstance(caught.value, OutcomeUnknown)


@pytest.mark.parametrize("code", ["channel_not_found", "not_in_channel", "invalid_blocks", "msg_blocks_too_long",
                                  "is_archived"])
def test_rejections_keep_slacks_error(slack: FakeSlack, adapter: SlackAdapter, code: str) -> None:
    slack.fail("chat.postMessage", error=code)
    with pytest.raises(RejectedError) as caught:
        adapter.deliver(ctx_for())
    assert code in caught.value.message and caught.value.reply["error"] == code


def test_unknown_channel_from_the_fake_itself(slack: FakeSlack) -> None:
    adapter = SlackAdapter(settings_for(slack, slack_channel="#missing-channel"), {})
    with pytest.raises(RejectedError, match="channel_not_found"):
        adapter.deliver(ctx_for())


def test_a_channel_given_by_name_is_warned_about_before_a_delivery_needs_its_id(slack: FakeSlack) -> None:
    # check passed SLACK_CHANNEL=#support; the first delivery whose outcome was unknown failed on it.
    assert SlackAdapter(settings_for(slack), {"channel": "G0TEAM"}).warnings() == []
    warned = SlackAdapter(settings_for(slack, slack_channel="#support"), {"channel": "support-vip"}).warnings()
    assert [w.split(" is ")[0] for w in warned] == ["SLACK_CHANNEL", "mappings/slack.yaml: channel"]
    assert "'#support', a channel's name: give its id (C…" in warned[0]
    routing = {"teams": {"vip": {"targets": {"slack": {"channel": "#vip"}}}, "billing": {"queue": "Billing"},
                         "ops": {"targets": {"slack": {"channel": "C0OPS"}}}},
               "rules": [{"name": "fraud", "then": {"team": "ops", "targets": {"slack": {"channel": "fraud-alerts"}}}},
                         {"then": {"team": "billing"}}]}
    routed = SlackAdapter(settings_for(slack), {}).routing_warnings(routing)
    assert [w.split(" is ")[0] for w in routed] == [
        "mappings/routing.yaml: teams.vip.targets.slack.channel", "mappings/routing.yaml: rules.fraud.then.targets.slack.channel"]


@pytest.mark.parametrize("channel", ["#vip-support", "vip-support", None, 42])
def test_a_bots_channel_that_is_not_an_id_is_refused_before_anything_is_posted(slack: FakeSlack, adapter: SlackAdapter,
                                                                                channel: Any) -> None:
    # A review: a name posted, but after a timeout the retry's lookup could not read the channel by
    # it — the delivery failed beside a live alert, and so did the conversation's every later handoff.
    with pytest.raises(RejectedError, match=r"^vendor_extra\.slack\.channel: .* is not a channel id: give its id"):
        adapter.deliver(ctx_for(full_packet(vendor_extra={"slack": {"channel": channel}})))
    assert slack.calls == []
    assert list(SlackAdapter.vendor_extra_problems({"channel": channel})) == ["vendor_extra.slack.channel"]
    assert SlackAdapter.vendor_extra_problems({"channel": "C0ESCALATE", "icon_emoji": ":wave:"}) == {}


def test_an_earlier_delivery_whose_channel_cannot_be_read_does_not_fail_the_next_handoff(
        slack: FakeSlack, adapter: SlackAdapter, caplog: pytest.LogCaptureFixture) -> None:
    # Given up with its outcome unknown, in a channel the bot has since left: the lookup for its
    # alert was refused, and every later handoff of the conversation failed the same way.
    given_up = ctx_for(outcome_unknown=True, sent_to={"channel": "C0HANDOFF"})
    slack.fail("conversations.history", error="not_in_channel")
    outcome = adapter.deliver(ctx_for(handoff_id="hnd_01TESTHANDOFF0000000000001", earlier=(given_up,)))
    assert outcome.status == "created" and len(slack.top_level("C0HANDOFF")) == 1
    assert "the ticket of a delivery given up cannot be looked for" in caplog.text


# ---- limits and escaping -------------------------------------------------------------------


def _oversize_packet() -> dict[str, Any]:
    phrases = ["請幫我退款，訂單號碼 88213 😡🔥", "Ça ne marche toujours pas — 🙃 <b>&amp;</b> ",
               "결제가 두 번 됐어요 💳💳 "]
    transcript = [{"at": f"2026-11-{20 + i // 200:02d}T{(i // 60) % 24:02d}:{i % 60:02d}:00Z",
                   "role": "customer" if i % 2 else "bot", "text": f"#{i:03d} " + phrases[i % 3] * (12 + i % 40)}
                  for i in range(400)]
    transcript.append({"at": "2026-11-22T23:59:59Z", "role": "customer", "text": "#end " + "🦄長" * 6000})
    return full_packet(
        transcript=transcript,
        intent={"name": "billing", "stated_problem": "😡 " * 1500, "summary": "長い説明 " * 400},
        collected_data={f"field_{n:02d}": "値" * (50 + n * 40) for n in range(30)},
        attempted_solutions=[{"title": f"Guide {n} 📘" * 30, "url": f"https://help.example/{n}",
                              "outcome": "not_helpful", "detail": "詳細" * 500} for n in range(12)],
    )


def test_oversize_multibyte_handoff_fits_every_limit_and_loses_nothing(slack: FakeSlack, adapter: SlackAdapter) -> None:
    packet = _oversize_packet()
    outcome = adapter.deliver(ctx_for(packet))

    messages = sent_messages(slack)
    for message in messages:
        assert_within_limits(message)
    assert "…" in " ".join(texts(messages[0]))  # the alert shortened visibly
    # The thread, joined, carries every transcript message whole and in order.
    thread = "".join(block["text"]["text"] for m in messages[1:] for block in m["blocks"])
    plain = html.unescape(thread)
    position = 0
    for entry in packet["transcript"]:
        found = plain.find(entry["text"], position)
        assert found >= position, entry["text"][:20]
        position = found + len(entry["text"])
    assert all(f"field_{n:02d}" in plain for n in range(30))
    reasons = {d["part"]: d["reason"] for d in outcome.receipt["dropped"]}
    assert reasons["collected_data"] == ("shortened in the alert; in full in the thread; "
                                         "10 of 30 fields shown in the alert; all in the thread")
    assert "attempted_solutions" in reasons and "intent" in reasons


_PIECES = st.sampled_from([*"ab <>&|!@#^*_~`\n", "😡", "長", "é", "💳", "<!channel>", "<@U1>", "<https://e.x|b>"])
_TEXT = st.lists(_PIECES, max_size=600).map("".join)
_URL = st.one_of(st.just("https://ok.example/p?a=1&b=2"), st.text(max_size=40).map(lambda t: "https://x.example/" + t))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(name=_TEXT, words=_TEXT, detail=_TEXT, key=_TEXT, value=_TEXT, url=_URL,
       lines=st.lists(_TEXT, min_size=1, max_size=30), fields=st.integers(0, 40), related=st.integers(0, 10))
def test_any_packet_renders_within_limits_and_inert(name: str, words: str, detail: str, key: str, value: str,
                                                    url: str, lines: list[str], fields: int, related: int) -> None:
    packet = full_packet(
        customer={"name": name * 3, "email": value, "segment": key, "account_id": detail},
        intent={"name": key, "stated_problem": words * 2, "summary": detail},
        escalation={"reason": "other", "detail": detail * 2, "keywords": [key, value], "urgency": "urgent"},
        collected_data={f"{key}{n}": value for n in range(fields)},
        attempted_solutions=[{"title": name, "url": url + "/" + "x" * 900, "outcome": "unknown",
                              "detail": detail}] * 8,
        history=[{"at": "2026-01-01T00:00:00Z", "summary": words,
                  "ticket": {"system": key, "id": value, "url": url}}] * 6,
        conversation={"id": key, "url": url},
        transcript=[{"at": "2026-11-20T09:00:00Z", "role": "customer", "text": line or "-"} for line in lines],
    )
    tickets = tuple({"target": "zendesk", "id": value, "url": url + "/" + "y" * 400} for _ in range(related))
    payload = SlackAdapter(Settings(slack_signing_secret="s"), {}).render(ctx_for(packet, related=tickets))
    for message in [payload["message"], *payload["thread"]]:
        assert_within_limits(message)
        for text in texts(message):
            for inside in re.findall(r"<([^>]*)>", text):  # any markup left must be a link we built
                assert re.fullmatch(r"https?://[^\s|<>]+\|[^<>]*", inside), inside


def test_pathological_packet_still_fits(slack: FakeSlack, adapter: SlackAdapter) -> None:
    """Every field huge and full of characters that grow when escaped: the size guard must hold."""
    big = "<😡>&" * 2000
    url = "https://x.example/" + "a" * 480
    packet = full_packet(
        customer={"name": big, "email": big, "segment": big, "account_id": big, "phone": big, "attributes": {big: big}},
        intent={"name": big, "stated_problem": big, "summary": big, "confidence": 0.5},
        sentiment={"label": big, "score": 0.1, "trend": big},
        escalation={"reason": big, "detail": big, "keywords": [big] * 10, "urgency": "urgent"},
        collected_data={big[:300] + str(n): big for n in range(40)},
        attempted_solutions=[{"title": big, "url": url, "outcome": big, "detail": big}] * 20,
        history=[{"at": big, "channel": big, "summary": big, "ticket": {"system": big, "id": big, "url": url}}] * 20,
        conversation={"id": big, "url": url, "channel": big, "language": big}, bot={"id": big, "name": big},
        transcript=[{"at": big, "role": big, "text": big}] * 3)
    related = tuple({"target": big, "id": big, "url": url} for _ in range(10))
    assignment = {"team": big, "queue": big, "agent": big, "priority": "urgent"}
    adapter.mapping = {"mention_on_urgent": "<!here> <!subteam^S123>"}
    outcome = adapter.deliver(ctx_for(packet, related=related, assignment=assignment))
    for message in sent_messages(slack):
        assert_within_limits(message)
    assert slack.calls_to("chat.postMessage")[0].body["text"].startswith("<!here> <!subteam^S123> ")
    dropped = {d["part"] for d in outcome.receipt["dropped"]}
    assert {"customer", "escalation", "intent", "collected_data", "attempted_solutions", "history"} <= dropped


HOSTILE = ["<!channel>", "<!here", "<@U123>", "<@U999>", "<!subteam^", "<https://evil.example", "<#C123>",
           "<!date", "javascript:", "|<!channel>"]


def test_hostile_text_is_rendered_inert(slack: FakeSlack, adapter: SlackAdapter) -> None:
    overrides = json.loads((FIXTURES / "hostile-packet-overrides.json").read_text(encoding="utf-8"))
    adapter.deliver(ctx_for(full_packet(**overrides)))

    messages = sent_messages(slack)
    wire = [text for message in messages for text in texts(message)]
    for text in wire:
        for bad in HOSTILE:
            assert bad not in text, (bad, text)
    joined = "\n".join(wire)
    assert "&lt;!channel&gt; wake up &lt;@U123&gt;" in joined
    assert "&lt;https://evil.example|bank&gt; &amp;amp; more" in joined
    assert "Refund me now &lt;@U123&gt; &amp; &lt;!here&gt;" in joined
    assert "&lt;!channel&gt;.png" in joined  # attachment names too
    urls = [el.get("url") for m in messages for b in m["blocks"] if b["type"] == "actions" for el in b["elements"]]
    # The conversation URL that tried to break out of the link is percent-encoded: inert, and still a button.
    assert urls == [None, "https://bots.example/c/1%3E%7C%3C!channel%3E"]
    assert "<https://ok.example/a%7C%3C!channel%3E|Pipe trick>" in joined
    for message in messages:
        assert_within_limits(message)


def test_urgent_mention_is_opt_in_and_validated(slack: FakeSlack) -> None:
    urgent = full_packet(escalation={"reason": "keyword", "urgency": "urgent"})
    quiet = SlackAdapter(settings_for(slack), {}).render(ctx_for(urgent))
    assert "<!here>" not in json.dumps(quiet)
    loud = SlackAdapter(settings_for(slack), {"mention_on_urgent": "<!here>"}).render(ctx_for(urgent))
    assert loud["message"]["text"].startswith("<!here> ")
    assert SlackAdapter(settings_for(slack), {"mention_on_urgent": "<!here>"}).render(ctx_for())["message"][
        "text"].startswith("🟠")  # high, not urgent: no mention
    with pytest.raises(ConfigError, match="mention_on_urgent"):  # at start-up, not mid-delivery
        SlackAdapter(settings_for(slack), {"mention_on_urgent": "*everyone* <!here>"})
    # Written as routing reads urgencies (any case), not silently never matching.
    shouty = SlackAdapter(settings_for(slack), {"mention_on_urgent": "<!here>", "mention_urgencies": ["High"]})
    assert shouty.render(ctx_for())["message"]["text"].startswith("<!here> ")
    with pytest.raises(ConfigError, match="mention_urgencies"):
        SlackAdapter(settings_for(slack), {"mention_urgencies": ["critical"]})


# ---- vendor_extra, related tickets, settings ---------------------------------------------------


def test_vendor_extra_reaches_the_wire_last(slack: FakeSlack, adapter: SlackAdapter) -> None:
    extra = {"slack": {"future_field": {"nested": [1, 2]}, "icon_emoji": ":rotating_light:", "unfurl_links": True}}
    adapter.deliver(ctx_for(full_packet(vendor_extra=extra)))
    body = slack.calls_to("chat.postMessage")[0].body
    assert body["future_field"] == {"nested": [1, 2]}
    assert body["icon_emoji"] == ":rotating_light:" and body["unfurl_links"] is True


def test_vendor_extra_does_not_move_a_repeats_reply_out_of_its_thread(slack: FakeSlack, adapter: SlackAdapter) -> None:
    # A review: `{"thread_ts": null, "channel": …}` posted a repeat's reply elsewhere, recorded as
    # the thread's all the same — and a Claim button of the bot's own blocks there took the
    # handoff of the thread it landed in.
    first = adapter.deliver(ctx_for())
    moved = {"slack": {"channel": "C0OTHER", "thread_ts": None, "icon_emoji": ":wave:"}}
    again = adapter.deliver(ctx_for(full_packet(vendor_extra=moved), handoff_id="hnd_01TESTAGAIN000000000000000",
                                    link=Link(first.vendor_id, first.url, first.link_extra)))
    reply = [call.body for call in slack.calls_to("chat.postMessage") if call.body.get("icon_emoji") == ":wave:"]
    assert [(r["channel"], r["thread_ts"]) for r in reply] == [("C0HANDOFF", first.link_extra["ts"])]
    assert [d["reason"].split(" was")[0] for d in again.receipt["dropped"] if d["part"] == "vendor_extra"] == [
        "vendor_extra.slack.channel", "vendor_extra.slack.thread_ts"]


BOTS_METADATA = {"metadata": {"event_type": "bot_alert", "event_payload": {"ticket": 7}}}


@pytest.mark.parametrize(("extra", "kept"), [
    (BOTS_METADATA, "metadata"),
    ({"thread_ts": "PARENT"}, "thread_ts"),  # a reply in a thread is not in the history the lookup reads
])
def test_vendor_extra_cannot_hide_an_alert_from_the_lookup_after_a_timeout(slack: FakeSlack, extra: dict[str, Any],
                                                                          kept: str) -> None:
    # A review: the bot's metadata replaced the `handoff_created` marker the lookup searches for
    # (or its thread_ts made the alert a reply), so the retry posted the alert twice.
    adapter = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {})
    parent = slack.api_chat_postMessage({"channel": "C0HANDOFF", "text": "the bot's own message"})
    extra = {key: parent["ts"] if value == "PARENT" else value for key, value in extra.items()}
    slack.delay("chat.postMessage", 3.0, act=True)
    ctx = ctx_for(full_packet(vendor_extra={"slack": {**extra, "icon_emoji": ":wave:"}}))
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)

    outcome = adapter.deliver(replace(ctx, outcome_unknown=True, attempt=2))

    alerts = [m for m in slack.top_level("C0HANDOFF") if m.get("blocks")]
    assert len(alerts) == 1, "the alert was posted twice"
    posted = slack.calls_to("chat.postMessage")[0].body
    assert posted["metadata"]["event_type"] == "handoff_created" and "thread_ts" not in posted
    assert posted["icon_emoji"] == ":wave:"  # the rest of vendor_extra still reaches the wire
    assert [d["reason"].split(" was")[0] for d in outcome.receipt["dropped"] if d["part"] == "vendor_extra"] == [
        f"vendor_extra.slack.{kept}"]


def test_vendor_extra_metadata_cannot_hide_a_repeats_reply_from_the_resume(slack: FakeSlack) -> None:
    adapter = SlackAdapter(settings_for(slack, vendor_timeout_s=1), {})
    first = adapter.deliver(ctx_for())
    ctx = ctx_for(full_packet(vendor_extra={"slack": BOTS_METADATA}), handoff_id="hnd_second",
                  link=Link(first.vendor_id, first.url, first.link_extra))
    slack.delay("chat.postMessage", 3.0, act=True)  # the "Handed off again" reply: posted, its answer lost
    with pytest.raises(OutcomeUnknown):
        adapter.deliver(ctx)

    adapter.deliver(replace(ctx, outcome_unknown=True, attempt=2))

    again = [r for r in slack.replies("C0HANDOFF", first.link_extra["ts"]) if "Handed off again" in r["text"]]
    assert len(again) == 1, "the repeat's reply was posted twice"
    assert again[0]["metadata"] == {"event_type": "handoff_updated", "event_payload": {"handoff_id": "hnd_second"}}


def test_related_tickets_are_linked_by_updating_the_alert(slack: FakeSlack, adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    related = ({"target": "zendesk", "status": "created", "id": "1001", "url": "https://acme.zendesk.com/agent/tickets/1001"},
               {"target": "salesforce", "status": "created", "id": "500XX", "url": "javascript:alert(1)"})
    ctx = ctx_for(link=Link(first.vendor_id, first.url, first.link_extra), related=related)

    adapter.related_changed(ctx)

    update = slack.calls_to("chat.update")[-1].body
    assert update["channel"] == "C0HANDOFF" and update["ts"] == first.link_extra["ts"]
    assert update["metadata"] == {"event_type": "handoff_created", "event_payload": {"handoff_id": HANDOFF}}
    assert update["blocks"][0]["text"]["text"].startswith("🟠 High:") and "thread_ts" not in update
    words = " ".join(texts(update))
    assert "<https://acme.zendesk.com/agent/tickets/1001|Zendesk 1001>" in words
    assert "Salesforce 500XX" in words and "javascript:" not in words
    assert_within_limits(update)
    assert len(slack.top_level("C0HANDOFF")) == 1


def test_every_edit_of_the_alert_keeps_the_formatting_it_was_posted_with(slack: FakeSlack, adapter: SlackAdapter) -> None:
    # chat.update's `parse` defaults to `client`, unlike chat.postMessage's `none` (Slack's API
    # description), and an edit without it sets it so: the fallback text, the customer's words
    # in it, was no longer taken as written.
    first = adapter.deliver(ctx_for())
    adapter.claim_answered(_click(first.vendor_id, "U0DANA"), Holder("slack", "U0DANA", "dana", first=True),
                           first.vendor_id)
    adapter.related_changed(ctx_for(link=Link(first.vendor_id, first.url, first.link_extra)))
    assert [call.body.get("parse") for call in slack.calls_to("chat.update")] == ["none", "none"]


def _buttons(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_related_tickets_keep_the_claim_an_agent_made_before_them(slack: FakeSlack, adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    adapter.claim_answered(_click(first.vendor_id, "U0DANA"), Holder("slack", "U0DANA", "dana", first=True),
                           first.vendor_id)
    related = ({"target": "zendesk", "status": "created", "id": "1001", "url": "https://acme.zendesk.com/agent/tickets/1001"},)

    adapter.related_changed(ctx_for(link=Link(first.vendor_id, first.url, first.link_extra), related=related))

    [alert] = slack.top_level("C0HANDOFF")
    # Rebuilt as posted, it offered Claim again to whoever read it next: the handoff stays taken.
    assert "handoff_claim" not in _buttons(alert)
    assert "✋ <@U0DANA> took this handoff." in texts(alert)
    assert "<https://acme.zendesk.com/agent/tickets/1001|Zendesk 1001>" in " ".join(texts(alert))
    assert_within_limits(alert)


def test_an_alert_claimed_before_its_line_was_marked_keeps_the_claim_too(slack: FakeSlack, adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    adapter.claim_answered(_click(first.vendor_id, "U0DANA"), Holder("slack", "U0DANA", "dana", first=True),
                           first.vendor_id)
    [alert] = slack.top_level("C0HANDOFF")
    for block in alert["blocks"]:  # as the edit of an earlier release wrote it: no block_id
        if block.get("block_id") == "handoff_claimed":
            del block["block_id"]
    adapter.related_changed(ctx_for(link=Link(first.vendor_id, first.url, first.link_extra)))
    [alert] = slack.top_level("C0HANDOFF")
    assert "handoff_claim" not in _buttons(alert) and "✋ <@U0DANA> took this handoff." in texts(alert)


def test_related_tickets_on_an_alert_nobody_took_keep_its_claim_button(slack: FakeSlack, adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    adapter.related_changed(ctx_for(link=Link(first.vendor_id, first.url, first.link_extra)))
    [alert] = slack.top_level("C0HANDOFF")
    assert _buttons(alert)[0] == "handoff_claim"
    # Without a Claim button (no signing secret) nothing can have been claimed: no read-back.
    plain = SlackAdapter(settings_for(slack, slack_signing_secret=""), {})
    second = plain.deliver(ctx_for(handoff_id="hnd_plain"))
    reads = len(slack.calls_to("conversations.replies"))
    plain.related_changed(ctx_for(handoff_id="hnd_plain", link=Link(second.vendor_id, second.url, second.link_extra)))
    assert len(slack.calls_to("conversations.replies")) == reads


def test_related_tickets_leave_an_earlier_handoffs_alert_alone(slack: FakeSlack, adapter: SlackAdapter) -> None:
    first = adapter.deliver(ctx_for())
    related = ({"target": "zendesk", "status": "created", "id": "1", "url": "https://acme.zendesk.com/agent/tickets/1"},)
    adapter.related_changed(ctx_for(handoff_id="hnd_later", link=Link(first.vendor_id, first.url, first.link_extra),
                                    related=related))
    assert slack.calls_to("chat.update") == []


def test_a_re_escalations_tickets_are_linked_in_its_own_reply(slack: FakeSlack, adapter: SlackAdapter) -> None:
    # A review: the first handoff's Zendesk ticket was closed, the repeat opened 1002 while its Slack
    # reply was posted, and nothing in Slack ever linked 1002 — the alert links the first's ticket.
    first = adapter.deliver(ctx_for())
    link = Link(first.vendor_id, first.url, first.link_extra)
    adapter.deliver(ctx_for(handoff_id="hnd_later", link=link))
    [before] = [copy.deepcopy(r) for r in slack.replies("C0HANDOFF", first.link_extra["ts"])
                if "Handed off again" in r["text"]]  # as posted: the fake edits its own copy in place
    related = ({"target": "zendesk", "status": "created", "id": "1002",
                "url": "https://acme.zendesk.com/agent/tickets/1002"},)
    adapter.related_changed(ctx_for(handoff_id="hnd_later", link=link, related=related))
    [reply] = [r for r in slack.replies("C0HANDOFF", first.link_extra["ts"]) if "Handed off again" in r["text"]]
    assert "<https://acme.zendesk.com/agent/tickets/1002|Zendesk 1002>" in " ".join(texts(reply))
    assert reply["metadata"] == before["metadata"] and _buttons(reply) == _buttons(before)
    assert [b for b in reply["blocks"] if b.get("block_id") != "related"] == before["blocks"]
    assert "1002" not in json.dumps(slack.top_level("C0HANDOFF"))  # the alert is the first handoff's
    edits = len(slack.calls_to("chat.update"))
    adapter.related_changed(ctx_for(handoff_id="hnd_later", link=link, related=related))  # told again: no edit
    assert len(slack.calls_to("chat.update")) == edits


@pytest.mark.parametrize(("missing", "variable"), [("slack_bot_token", "SLACK_BOT_TOKEN"),
                                                   ("slack_channel", "SLACK_CHANNEL")])
def test_check_settings_names_the_missing_variable(missing: str, variable: str) -> None:
    settings = Settings(slack_bot_token="xoxb-1", slack_channel="C0HANDOFF").override({missing: ""})
    with pytest.raises(ConfigError) as caught:
        SlackAdapter.check_settings(settings)
    assert caught.value.source == variable


def test_check_settings_refuses_a_non_http_api_url() -> None:
    settings = Settings(slack_bot_token="xoxb-1", slack_channel="C0HANDOFF", slack_api_url="file:///etc/passwd")
    with pytest.raises(ConfigError) as caught:
        SlackAdapter.check_settings(settings)
    assert caught.value.source == "SLACK_API_URL"


def test_https_proxy_is_honoured(slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake doubles as the proxy: urllib sends it the absolute URL of an unreachable host.
    monkeypatch.setenv("HTTPS_PROXY", slack.api_url.removesuffix("/api/"))
    monkeypatch.setenv("NO_PROXY", "")
    adapter = SlackAdapter(settings_for(slack, slack_api_url="http://slack.invalid/api/"), {})
    adapter.deliver(ctx_for())
    assert slack.calls[0].method == "chat.postMessage" and slack.calls[0].headers["host"] == "slack.invalid"


def test_no_proxy_and_ca_bundle(slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    adapter = SlackAdapter(settings_for(slack), {})
    adapter.deliver(ctx_for())  # reached the fake directly, not the (unreachable) proxy
    assert slack.calls
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.exists():
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        client = SlackAdapter(settings_for(slack, slack_api_url="https://slack.example/api/"), {})._client()
        assert client.ssl is not None and client.ssl.cert_store_stats()["x509_ca"] > 0
        # Plain http has no use for it…
        assert SlackAdapter(settings_for(slack), {})._client().ssl is None
        # …unless the way to it is a proxy spoken to over https.
        monkeypatch.setenv("HTTPS_PROXY", "https://proxy.invalid:3128")
        monkeypatch.setenv("NO_PROXY", "")
        assert SlackAdapter(settings_for(slack), {})._client().ssl is not None


def test_slack_over_tls_is_trusted_through_the_ca_bundle_and_not_without_it(monkeypatch: pytest.MonkeyPatch,
                                                                             tmp_path: Path) -> None:
    # The client sends through its own opener: the bundle must reach *it* (slack-sdk's `ssl` is unused).
    import trustme

    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with FakeSlack(tls=ca) as secure:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
            SlackAdapter(settings_for(secure), {}).deliver(ctx_for())
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        assert SlackAdapter(settings_for(secure), {}).deliver(ctx_for()).status == "created"


def test_text_is_escaped_once_for_mrkdwn_entities_included():
    from adapters.slack_blocks import escape, fit

    assert escape("R&D <b> &lt; 🙂") == "R&amp;D &lt;b&gt; &amp;lt; 🙂"
    assert fit("a & b", 100) == ("a &amp; b", False)
    assert fit("<" * 10, 12) == ("&lt;&lt;…", True)  # a cut never splits an entity


def _split_by_character(raw: str, limit: int, first: int | None = None) -> list[str]:
    """`slack_blocks.split` as it was written before: character by character (the reference)."""
    from connector.text_rules import whole_end

    chunks: list[str] = []
    start = 0
    while start < len(raw):
        used, end, last_break = 0, start, -1
        cap = first if first is not None and not chunks else limit
        while end < len(raw):
            cost = kit.size(kit.escape(raw[end]))
            if used + cost > cap:
                break
            used, last_break, end = used + cost, end if raw[end] in " \n" else last_break, end + 1
        if end < len(raw) and last_break > start + (end - start) // 2:
            end = last_break + 1
        elif whole_end(raw, end) > start:
            end = whole_end(raw, end)
        chunks.append(kit.escape(raw[start:max(end, start + 1)]))
        start = max(end, start + 1)
    return chunks or [""]


def test_a_split_cuts_where_a_walk_character_by_character_would_and_escapes_a_window_at_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    alphabet = [*"ab c\n&<>é", "🇯", "🇵", "😀", "\u0301", "\u200d", "\x01", "\x7f", "क", "्", "\U0001f3fb"]
    rnd = random.Random(7)
    for _ in range(3000):
        raw = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 60)))
        limit, first = rnd.randint(1, 25), rnd.choice([None, rnd.randint(1, 25)])
        assert kit.split(raw, limit, first) == _split_by_character(raw, limit, first), (raw, limit, first)
    # A review: a 1 MB value in the packet (its `metadata`) was measured a character at a time — a
    # second of CPU, the answer past the bot's budget. Now a few measures of a window per chunk.
    measured = []
    monkeypatch.setattr(kit, "size", lambda text: measured.append(text) or len(text.encode("utf-16-le")) // 2)
    big = "word & " * 150_000
    chunks = kit.split(big, 3000)
    assert "".join(chunks) == kit.escape(big)
    assert len(measured) < 20 * len(chunks)


@pytest.mark.parametrize(("holder", "clicker", "text"), [
    (Holder("slack", "U0DANA", "dana", first=True), "U0DANA", "✋ <@U0DANA> took this handoff."),
    (Holder("slack", "U0DANA", "dana", first=False), "U0DANA", "You took this handoff already."),
    (Holder("slack", "U0DANA", "dana", first=False), "U0SAM", "<@U0DANA> took this handoff already; nothing changed."),
    # Anyone else by name, escaped: a name is the vendor's free text, never a mention or a link.
    (Holder("zendesk", "3811", "<!channel> <https://evil.example|Sam>", first=False), "U0SAM",
     "&lt;!channel&gt; &lt;https://evil.example|Sam&gt; (in Zendesk) took this handoff already; nothing changed."),
    (Holder("salesforce", "005xx", None, first=False), "U0SAM",
     "agent 005xx (in Salesforce) took this handoff already; nothing changed."),
    # Only a real Slack user id becomes a mention.
    (Holder("slack", "U1>|<!here", None, first=True), "U0SAM", "✋ agent U1&gt;|&lt;!here (in Slack) took this handoff."),
    # Its ticket solved: nobody takes it now, whoever had it.
    (Holder("slack", "", None, first=False, completed=True), "U0SAM", "This handoff was completed already; nothing changed."),
    (Holder("slack", "U0DANA", "dana", first=False, completed=True), "U0SAM",
     "This handoff was completed already; nothing changed."),
])
def test_a_claim_is_answered_in_words_that_cannot_mention_anyone_else(holder, clicker, text):
    assert kit.claim_notice(holder, clicker) == text


def _click(ticket_id: str, agent: str = "U0SAM") -> AssignmentEvent:
    return AssignmentEvent(target="slack", event_id="trigger-1", ticket_id=ticket_id, handoff_id=HANDOFF,
                           agent_id=agent, agent_name=None, at=dt.datetime(2026, 11, 21, tzinfo=dt.UTC))


def test_a_later_click_is_answered_to_that_agent_alone_where_they_clicked(adapter, slack):
    taken = Holder("slack", "U0DANA", "dana", first=False)
    adapter.claim_answered(_click("C0HANDOFF/1795262300.000100"), taken, "C0HANDOFF/1795262300.000100")
    # A click on a re-escalation's reply, inside the alert's thread: answered in the thread.
    adapter.claim_answered(_click("C0HANDOFF/1795262350.000200"), taken, "C0HANDOFF/1795262300.000100")
    assert [c.body for c in slack.calls_to("chat.postEphemeral")] == [
        {"channel": "C0HANDOFF", "user": "U0SAM", "text": "<@U0DANA> took this handoff already; nothing changed."},
        {"channel": "C0HANDOFF", "user": "U0SAM", "text": "<@U0DANA> took this handoff already; nothing changed.",
         "thread_ts": "1795262300.000100"}]
    assert slack.calls_to("chat.postMessage") == []


def test_a_first_claim_on_a_re_escalations_reply_takes_that_replys_button_too(adapter, slack):
    # A review: a repeat's reply, shown in the channel too, offers a Claim of its own; claimed there,
    # only the alert was edited, and the channel still showed the reply's green Claim.
    first = adapter.deliver(ctx_for())
    adapter.deliver(ctx_for(handoff_id="hnd_AGAIN", link=Link(first.vendor_id, first.url, first.link_extra)))
    alert_ts = first.link_extra["ts"]
    [reply] = [m for m in slack.replies("C0HANDOFF", alert_ts) if m["metadata"]["event_type"] == "handoff_updated"]
    assert "handoff_claim" in _buttons(reply)
    click, taker = _click(f"C0HANDOFF/{reply['ts']}", "U0DANA"), Holder("slack", "U0DANA", "dana", first=True)
    slack.fail("chat.postMessage", status=429)  # the announcement waits for Slack: the notice is tried again
    with pytest.raises(RateLimited):
        adapter.claim_answered(click, taker, first.vendor_id)
    adapter.claim_answered(click, taker, first.vendor_id)

    [alert] = slack.top_level("C0HANDOFF")
    [reply] = [m for m in slack.replies("C0HANDOFF", alert_ts) if m["ts"] == reply["ts"]]
    for message, event_type in ((alert, "handoff_created"), (reply, "handoff_updated")):
        assert "handoff_claim" not in _buttons(message) and "✋ <@U0DANA> took this handoff." in texts(message)
        assert message["metadata"]["event_type"] == event_type  # what the lookups after a timeout find it by
    assert sorted(call.body["ts"] for call in slack.calls_to("chat.update")) == [alert_ts, reply["ts"]]  # once each
    announced = [m for m in slack.replies("C0HANDOFF", alert_ts) if m["text"].startswith("✋")]
    assert len(announced) == 1


@pytest.mark.parametrize("clicked", ["the alert", "an older reply"])
def test_a_first_claim_takes_the_taken_handoffs_own_reply_button_wherever_the_click_was(adapter, slack, clicked):
    # A review: the alert's Claim (or an older re-escalation's) takes the newest handoff, and that
    # one's reply, shown in the channel too, kept its green Claim after it was taken.
    first = adapter.deliver(ctx_for())
    link = Link(first.vendor_id, first.url, first.link_extra)
    for handoff_id in ("hnd_AGAIN", "hnd_THIRD"):
        adapter.deliver(ctx_for(handoff_id=handoff_id, link=link))
    alert_ts = first.link_extra["ts"]
    replies = {m["metadata"]["event_payload"]["handoff_id"]: m["ts"] for m in slack.replies("C0HANDOFF", alert_ts)
               if m["metadata"]["event_type"] == "handoff_updated"}
    where = alert_ts if clicked == "the alert" else replies["hnd_AGAIN"]
    adapter.claim_answered(_click(f"C0HANDOFF/{where}", "U0DANA"),
                           Holder("slack", "U0DANA", "dana", first=True, handoff_id="hnd_THIRD"), first.vendor_id)
    newest = next(m for m in slack.replies("C0HANDOFF", alert_ts) if m["ts"] == replies["hnd_THIRD"])
    assert "handoff_claim" not in _buttons(newest) and "✋ <@U0DANA> took this handoff." in texts(newest)
    assert sorted(call.body["ts"] for call in slack.calls_to("chat.update")) == sorted({alert_ts, where,
                                                                                         replies["hnd_THIRD"]})


def test_a_first_claim_of_the_alerts_own_handoff_reads_no_thread(adapter, slack):
    # A review: looking for the taken handoff's reply read the whole thread on every claim.
    first = adapter.deliver(ctx_for())
    slack.calls.clear()
    adapter.claim_answered(_click(first.vendor_id, "U0DANA"),
                           Holder("slack", "U0DANA", "dana", first=True, handoff_id=ctx_for().handoff_id), first.vendor_id)
    assert [call.method for call in slack.calls] == ["conversations.replies", "chat.update", "chat.postMessage"]


def test_a_failed_answer_to_a_click_is_the_adapters_own_error(adapter, slack):
    slack.fail("chat.postMessage", error="channel_not_found")
    with pytest.raises(RejectedError, match="channel_not_found"):
        adapter.claim_answered(_click("C0GONE/1.2"), Holder("slack", "U0SAM", None, first=True), "C0GONE/1.2")


def test_probe_signs_in_and_reads_the_alert_channel(slack: FakeSlack, adapter: SlackAdapter) -> None:
    assert adapter.probe().said == "signed in as handoff-bot in Acme; C0HANDOFF readable (SLACK_CHANNEL)"
    assert [(call.method, call.body.get("channel")) for call in slack.calls] == \
        [("auth.test", None), ("conversations.history", "C0HANDOFF")]


def test_probe_reads_the_channel_the_mapping_sends_alerts_to_and_names_it(slack: FakeSlack) -> None:
    # `channel:` in slack.yaml overrides SLACK_CHANNEL for every handoff: reading SLACK_CHANNEL's
    # history approved a channel no alert goes to, and deliveries then failed `not_in_channel`.
    adapter = SlackAdapter(settings_for(slack), {"channel": "C0NEW"})
    assert adapter.probe().said == "signed in as handoff-bot in Acme; C0NEW readable (mappings/slack.yaml: channel)"
    assert [call.body.get("channel") for call in slack.calls_to("conversations.history")] == ["C0NEW"]
    slack.fail("conversations.history", error="not_in_channel")
    with pytest.raises(RejectedError) as caught:
        adapter.probe()
    assert caught.value.message == \
        "Slack conversations.history: not_in_channel (reading C0NEW, mappings/slack.yaml: channel)"
    slack.fail("conversations.history", error="missing_scope")  # a private channel needs groups:history
    with pytest.raises(AuthError) as refused:
        adapter.probe()
    assert refused.value.message.endswith("missing_scope (reading C0NEW, mappings/slack.yaml: channel)")


ROUTED_CHANNELS = {"teams": {"billing": {"queue": "Billing", "targets": {"slack": {"channel": "C0BILLING"}}},
                             "refunds": {"queue": "Billing", "targets": {"slack": {"channel": "C0BILLING"}}},
                             "support": {"queue": "Support", "targets": {"slack": {"channel": "C0HANDOFF"}}},
                             "sales": {"queue": "Sales", "targets": {"zendesk": {"group_id": 5}}}},
                   "rules": [{"name": "vip", "then": {"targets": {"slack": {"channel": "C0VIP"}}}}]}


def test_probe_reads_each_channel_routing_sends_alerts_to_once(slack: FakeSlack, adapter: SlackAdapter) -> None:
    # A review: a team's own channel (routing.yaml) the bot was not in passed `check --vendors`, and
    # every handoff of that team then failed for good with not_in_channel.
    assert adapter.probe(ROUTED_CHANNELS).said == (
        "signed in as handoff-bot in Acme; C0HANDOFF readable (SLACK_CHANNEL, team support); "
        "C0BILLING readable (routing.yaml: team billing, team refunds); C0VIP readable (routing.yaml: rule vip)")
    assert [call.body.get("channel") for call in slack.calls_to("conversations.history")] == \
        ["C0HANDOFF", "C0BILLING", "C0VIP"]


def test_probe_fails_for_a_channel_routing_sends_alerts_to_that_the_bot_cannot_read(slack: FakeSlack,
                                                                                    adapter: SlackAdapter) -> None:
    slack.fail("conversations.history", error="not_in_channel", after=1)  # C0HANDOFF is read, C0BILLING is not
    with pytest.raises(RejectedError) as caught:
        adapter.probe(ROUTED_CHANNELS)
    assert caught.value.message == \
        "Slack conversations.history: not_in_channel (reading C0BILLING, routing.yaml: team billing, team refunds)"


def test_probe_names_a_channel_given_by_name_and_what_to_give_instead(slack: FakeSlack) -> None:
    with pytest.raises(RejectedError, match=r"channel_not_found \('#support' is a name: give the channel's id"):
        SlackAdapter(settings_for(slack, slack_channel="#support"), {}).probe()
    slack.fail("conversations.history", error="channel_not_found")  # an id, deleted since: no such advice
    with pytest.raises(RejectedError) as caught:
        SlackAdapter(settings_for(slack, slack_channel="C0GONE"), {}).probe()
    assert caught.value.message == "Slack conversations.history: channel_not_found (reading C0GONE, SLACK_CHANNEL)"


def test_probe_with_a_revoked_token_is_an_auth_error(slack: FakeSlack) -> None:
    with pytest.raises(AuthError, match="invalid_auth"):
        SlackAdapter(settings_for(slack, slack_bot_token="xoxb-revoked"), {}).probe()


def test_a_long_but_valid_url_keeps_its_link_and_label_in_the_thread(slack: FakeSlack) -> None:
    # Signed download links run past 1,000 characters (the packet allows 2,000): the bounded label
    # part cut the whole `<url|label>` away, leaving "📎 …(application/pdf, 19.5 KB)".
    url = "https://files.example.com/u/1/invoice.pdf?X-Amz-Signature=" + "a" * 1_400
    packet = full_packet(transcript=[{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "see attached",
                                      "attachments": [{"url": url, "name": "invoice.pdf",
                                                       "content_type": "application/pdf", "size": 20_000}]}],
                         attempted_solutions=[{"title": "Reset guide", "url": url, "outcome": "not_helpful"}])
    payload = SlackAdapter(settings_for(slack), {}).render(ctx_for(packet))
    thread = json.dumps(payload["thread"])
    assert f"<{url}|invoice.pdf>" in thread and f"<{url}|Reset guide>" in thread
    for reply in payload["thread"]:
        assert_within_limits(reply)


@pytest.mark.parametrize(("ampersands", "linked"), [(40, True), (130, True), (207, False)])
def test_a_url_of_many_ampersands_keeps_its_link_or_says_why_not(slack: FakeSlack, ampersands: int,
                                                                 linked: bool) -> None:
    # Each `&` takes five once escaped: a 2,000-character URL with a few dozen of them and a long file
    # name went past the label part's bound, and the whole `<url|label>` was cut away unsaid.
    query = "&".join(f"k{i:03d}=v" for i in range(ampersands))
    url = ("https://files.example.com/dl?" + query + "&pad=" + "p" * 2_000)[:2_000]
    name = "Report " + "r" * 290 + ".pdf"
    packet = full_packet(transcript=[{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "attached",
                                      "attachments": [{"url": url, "name": name, "content_type": "application/pdf",
                                                       "size": 10}]}])
    payload = SlackAdapter(settings_for(slack), {}).render(ctx_for(packet))
    lines = [line for reply in payload["thread"] for block in reply["blocks"]
             for line in block["text"]["text"].split("\n") if "📎" in line]
    escaped = url.replace("&", "&amp;")
    assert len(lines) == 1 and (f"<{escaped}|Report rrr" in lines[0]) is linked, lines
    assert linked or "its address is too long to link here" in lines[0]
    adapter = SlackAdapter(settings_for(slack), {})
    ctx = ctx_for(packet)
    assert [d["part"] for d in adapter.receipt(ctx, adapter.render(ctx))["dropped"]] == ([] if linked else ["attachments"])
    assert lines[0].endswith("(application/pdf, 10 B)")
    for reply in payload["thread"]:
        assert_within_limits(reply)


def _links_packet(url: str, conversation_url: str | None = None) -> dict[str, Any]:
    packet = full_packet(transcript=[{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "see attached",
                                      "attachments": [{"url": url, "name": "invoice.pdf"}]}],
                         attempted_solutions=[{"title": "Reset guide", "url": url, "outcome": "not_helpful"}],
                         history=[{"at": "2026-10-01T10:00:00Z", "channel": "email", "summary": "Asked before",
                                   "ticket": {"system": "zendesk", "id": "4410", "url": url}}])
    packet["conversation"]["url"] = conversation_url or url
    return packet


def test_a_link_holding_what_slacks_link_syntax_cannot_is_percent_encoded_not_dropped(slack: FakeSlack) -> None:
    # The packet accepts `|`, `<`, `>`, `"`, `{`, a backtick, non-ASCII… in a URL: such a link was
    # shown as its bare label, the conversation's button left out, and `dropped` said nothing.
    url = 'https://bot.example.com/conv/8841?view=transcript|full&q=<a>"b"{c}`d`\\^é#50%'
    encoded = "https://bot.example.com/conv/8841?view=transcript%7Cfull&q=%3Ca%3E%22b%22%7Bc%7D%60d%60%5C%5E%C3%A9#50%25"
    adapter = SlackAdapter(settings_for(slack), {})
    ctx = ctx_for(_links_packet(url))
    payload = adapter.render(ctx)
    buttons = next(b for b in payload["message"]["blocks"] if b["type"] == "actions")["elements"]
    assert [button.get("url") for button in buttons] == [None, encoded]
    alert = json.dumps(payload["message"], ensure_ascii=False)
    thread = json.dumps(payload["thread"], ensure_ascii=False)
    escaped = encoded.replace("&", "&amp;")
    assert f"<{escaped}|Reset guide>" in alert and f"<{escaped}|Zendesk 4410>" in alert
    for label in ("invoice.pdf", "Reset guide", "Zendesk 4410"):
        assert f"<{escaped}|{label}>" in thread, label
    assert adapter.receipt(ctx, payload)["dropped"] == []
    for message in [payload["message"], *payload["thread"]]:
        assert_within_limits(message)


def test_a_backslash_before_the_query_is_the_slash_a_browser_reads_it_as() -> None:
    # `%5C` made `/a\\b` another address: a browser goes to `/a/b`. In the query it is only text.
    from adapters.slack_blocks import safe_url

    assert safe_url("https://ex.example/a\\b?q=c\\d#e\\f") == "https://ex.example/a/b?q=c%5Cd#e%5Cf"


@pytest.mark.parametrize("url", ["https://[::1", "http://a]b/c", "https://[not-ipv6]/"])
def test_an_address_urlsplit_cannot_read_is_no_link_not_a_failed_delivery(url: str) -> None:
    # urlsplit's ValueError went up through every link and button built on the address.
    from adapters.slack_blocks import button_url, link_target, safe_url

    assert safe_url(url) is None and button_url(url) is None and link_target(url) is None


def test_a_link_slack_cannot_carry_is_named_in_the_receipt(slack: FakeSlack) -> None:
    # An ftp:// address passes the packet's schema; no button nor `<url|label>` carries it.
    adapter = SlackAdapter(settings_for(slack), {})
    ctx = ctx_for(_links_packet("ftp://files.example.com/invoice.pdf",
                                conversation_url="ftp://bot.example.com/conv/8841"))
    payload = adapter.render(ctx)
    buttons = next(b for b in payload["message"]["blocks"] if b["type"] == "actions")["elements"]
    assert [button["action_id"] for button in buttons] == ["handoff_claim"]
    sent = json.dumps(payload)
    assert "<ftp://" not in sent and '"url": "ftp://' not in sent  # no link, no button
    # Only the conversation's address is shown, as text in the thread: where else would an agent find it?
    assert sent.count("ftp://") == 1 and "conversation address: ftp://bot.example.com/conv/8841" in sent
    assert adapter.receipt(ctx, payload)["dropped"] == [
        {"part": "conversation", "reason": "conversation.url cannot be a link in Slack (not an http(s) address, "
                                           "or too long): no Open conversation button"},
        {"part": "attachments", "reason": "transcript[0].attachments[0].url cannot be a link in Slack (not an "
                                         "http(s) address, or too long): its label is shown without it"},
        {"part": "attempted_solutions", "reason": "attempted_solutions[0].url cannot be a link in Slack (not an "
                                                  "http(s) address, or too long): its label is shown without it"},
        {"part": "history", "reason": "history[0].ticket.url cannot be a link in Slack (not an http(s) address, "
                                      "or too long): its label is shown without it"}]
    # Messages sent while waiting: their reply carries only them, named where the packet has them.
    link = Link("C0HANDOFF/1795262300.000100", None, {"channel": "C0HANDOFF", "ts": "1795262300.000100"})
    ctx = _messages_while_waiting(link, "here it is", attachments=[{"url": "ftp://f.example/x", "name": "x"}])
    assert adapter.receipt(ctx, adapter.render(ctx))["dropped"] == [
        {"part": "attachments", "reason": "transcript[5].attachments[0].url cannot be a link in Slack (not an "
                                         "http(s) address, or too long): its label is shown without it"}]


def test_bidirectional_controls_count_as_the_names_they_are_written_as(slack: FakeSlack) -> None:
    # A control is written as "[U+2067]": counted as one character, long messages overflowed their
    # sections, whose ends were clipped (words lost from the thread, `dropped` empty), and a field cut
    # for the alert kept the control itself, so "\u202e00.05$" showed as "$50.00" again.
    words = " ".join(f"w{i:04d}" for i in range(1200))
    packet = full_packet()
    packet["transcript"][0]["text"] = "\u2067سلام\u2069 " + words
    packet["escalation"]["detail"] = "Refund \u202e00.05$\u202c asap. " + "x " * 700
    adapter = SlackAdapter(settings_for(slack), {})
    ctx = ctx_for(packet)
    payload = adapter.render(ctx)
    thread = "".join(block["text"]["text"] for reply in payload["thread"] for block in reply["blocks"])
    assert [word for word in words.split() if word not in thread] == []
    assert "[U+2067]سلام[U+2069]" in thread
    alert = json.dumps(payload["message"], ensure_ascii=False)
    assert "\u202e" not in alert and "Refund [U+202E]00.05$[U+202C] asap." in alert
    assert adapter.receipt(ctx, payload)["dropped"] == [
        {"part": "escalation", "reason": "shortened in the alert; in full in the thread"}]
    for reply in [payload["message"], *payload["thread"]]:
        assert_within_limits(reply)


def test_what_the_alert_shortens_is_named_in_the_receipt_and_whole_in_the_thread(slack: FakeSlack) -> None:
    # The bot's name, the conversation's id, channel and language, the intent, an attempt's title and
    # an earlier contact's summary were cut in the alert with `dropped` empty — and the first four
    # were nowhere in the thread.
    long = {"bot.name": "Acme Assistant " + "b" * 90, "conversation.id": "conv-" + "c" * 120,
            "conversation.channel": "web_chat_" + "h" * 220, "intent.name": "billing." + "i" * 220}
    packet = full_packet()
    for path, value in long.items():
        section, key = path.split(".")
        packet[section][key] = value
    packet["attempted_solutions"][0]["title"] = "Reset guide " + "t" * 200
    packet["history"][0]["summary"] = "Asked about invoices " + "s" * 200
    adapter = SlackAdapter(settings_for(slack), {})
    ctx = ctx_for(packet)
    payload = adapter.render(ctx)
    dropped = {note["part"] for note in adapter.receipt(ctx, payload)["dropped"]}
    assert {"bot", "conversation", "intent", "attempted_solutions", "history"} <= dropped
    thread = "".join(block["text"]["text"] for reply in payload["thread"] for block in reply["blocks"])
    for value in (*long.values(), packet["attempted_solutions"][0]["title"], packet["history"][0]["summary"]):
        assert value in thread, value


def test_thread_labels_are_whole_up_to_the_packets_longest_name(slack: FakeSlack) -> None:
    # An attachment's name or an attempt's title over 300 characters, a ticket's label over 120:
    # cut in the thread that promises everything, unsaid.
    name, title = "n" * 496 + ".pdf", "t" * 500
    packet = full_packet(attempted_solutions=[{"title": title, "url": "https://help.example/a", "outcome": "failed"}])
    packet["transcript"][0]["attachments"] = [{"url": "https://files.example/a.pdf", "name": name}]
    packet["history"][0]["ticket"] = {"system": "s" * 100, "id": "9" * 20, "url": "https://x.example/t"}
    thread = json.dumps(SlackAdapter(settings_for(slack), {}).render(ctx_for(packet))["thread"], ensure_ascii=False)
    assert f"|{name}>" in thread and f"|{title}>" in thread and "9" * 20 + ">" in thread


@pytest.mark.parametrize("control", ["\x01", "\x1b", "\x7f"])
def test_control_characters_are_named_and_every_message_fits(slack: FakeSlack, control: str) -> None:
    # Invisible in Slack, six characters each once JSON-escaped: a section of them passed what one
    # message may carry (12,003 of 12,000 with 1,978 of U+0001).
    packet = minimal_packet()
    packet["transcript"][0]["text"] = "x" + control * 3_000
    payload = SlackAdapter(settings_for(slack), {}).render(ctx_for(packet))
    for reply in payload["thread"]:
        assert_within_limits(reply)
    thread = "".join(block["text"]["text"] for reply in payload["thread"] for block in reply["blocks"])
    assert control not in thread and thread.count(f"[U+{ord(control):04X}]") == 3_000


def test_quoted_words_are_shortened_with_their_quote_marks_counted(slack: FakeSlack) -> None:
    # A list pasted one item a line: each line's `>` came on top of its 1,200 characters, the section
    # passed 3,000 and lost its end — the bot's summary — with nothing in the receipt.
    packet = full_packet()
    packet["intent"]["stated_problem"] = "".join(f"{i % 10}\n" for i in range(599)) + "9"
    packet["transcript"][-1]["text"] = "".join(f"{i % 10}\n" for i in range(299)) + "!"
    packet["intent"]["summary"] = "Customer needs a refund of order ORD-7781 " + "s" * 500
    payload = SlackAdapter(settings_for(slack), {}).render(ctx_for(packet))
    [intent] = [b for b in payload["message"]["blocks"] if b.get("block_id") == "intent"]
    assert intent["text"]["text"].endswith("*Bot's summary:* Customer needs a refund of order ORD-7781 " + "s" * 500)
    assert_within_limits(payload["message"])


def test_an_unclosed_code_fence_does_not_run_on_into_the_next_messages() -> None:
    # Slack's ``` opened in one message and closed in another made the messages between them, their
    # labels included, one code block; a bot's balanced code sample keeps its block.
    packet = full_packet(transcript=[
        {"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "error: ```Traceback (most recent"},
        {"at": "2026-11-20T09:14:05Z", "role": "bot", "text": "Try this:\n```pip install acme```"},
        {"at": "2026-11-20T09:14:09Z", "role": "customer", "text": "still broken ```"}])
    thread = "\n".join(b["text"]["text"] for m in kit.transcript(packet, HANDOFF) for b in m["blocks"])
    assert thread.count("```") == 2 and "```pip install acme```" in thread
    assert "``\u200b`Traceback" in thread and "broken ``\u200b`" in thread


def test_an_unclosed_code_fence_in_the_alert_does_not_run_on_into_its_headings() -> None:
    # A review: the thread closed them, the alert did not — the customer's stray ``` paired with one
    # in the next piece, and "*Latest from them …:*" or "*Trigger words:*" showed inside a code block.
    packet = full_packet()
    packet["intent"]["stated_problem"] = "The import fails with ```ERR_4012"
    packet["transcript"][-1]["text"] = "I pasted the log: ``` see above"
    packet["escalation"]["detail"] = "Customer pasted ```stack"
    packet["escalation"]["keywords"] = ["refund```"]
    packet["intent"]["summary"] = "Sync fails: ```oauth 4012```, since Monday"
    message = kit.alert(packet, HANDOFF, {"team": "support"}, [])[0]
    texts = {b.get("block_id"): b["text"]["text"] for b in message["blocks"] if isinstance(b.get("text"), dict)}
    assert texts["intent"].count("```") == 2 and "```oauth 4012```" in texts["intent"]  # balanced: kept
    assert "``\u200b`ERR_4012" in texts["intent"] and "log: ``\u200b` see above" in texts["intent"]
    assert "```" not in texts["escalation"] and "refund``\u200b`" in texts["escalation"]
    # Nor in what the bot tried, a collected field's name, the sentiment or "Routed to" (a review of the mend).
    packet["attempted_solutions"] = [
        {"title": "Had them paste the log: ```ERR 4012", "outcome": "not_helpful"},
        {"title": "Reset the token", "outcome": "not_helpful"},
        {"title": "Asked for the output of ```qb sync --verbose", "outcome": "not_helpful"}]
    packet["collected_data"] = {"log ```": "x", "trace": "```y```"}
    message = kit.alert(packet, HANDOFF, {"team": "support ```", "rule": "r"}, [])[0]
    for block in message["blocks"]:
        mrkdwn = [text for text in [block.get("text"), *block.get("fields", ())]
                  if isinstance(text, dict) and text.get("type") == "mrkdwn"]  # (a header is plain text)
        pieces = [text["text"] for text in mrkdwn]
        for piece in pieces:
            assert piece.count("```") % 2 == 0, piece
    texts = {b.get("block_id"): b["text"]["text"] for b in message["blocks"] if isinstance(b.get("text"), dict)}
    assert "paste the log: ``\u200b`ERR 4012" in texts["attempted_solutions"]


def test_an_attempts_title_squeezed_by_a_long_address_is_whole_in_the_thread() -> None:
    # Its label gave way to a long signed address (each & five characters once escaped), while the
    # receipt said the attempts are "in full in the thread".
    title = "How to reconnect QuickBooks after the November update, step by step " * 4
    packet = full_packet(attempted_solutions=[{"title": title, "outcome": "not_helpful",
                                               "url": "https://help.acme.example/a?" + "&x=1" * 320}])
    thread = "\n".join(b["text"]["text"] for m in kit.details(packet, HANDOFF) for b in m["blocks"])
    assert title.strip() in thread and "|open the link>" in thread


# ---- what the alert leads with ----------------------------------------------------------------


@pytest.mark.parametrize("conversation", [{"id": "c", "channel": "web_chat", "language": "en"},
                                          {"id": "c", "language": "de"}, {"id": "c"}])
def test_the_notification_text_says_the_urgency_whatever_the_conversation_holds(conversation) -> None:
    # The Channel field's heading took the urgency's name: every alert with a channel was pushed to
    # phones as "🟠 Channel handoff: …", one with only a language as "Language handoff".
    packet = full_packet(conversation=conversation)
    message = SlackAdapter(Settings(slack_bot_token="xoxb-1", slack_channel="C1"), {}).render(
        ctx_for(packet))["message"]
    assert message["text"].startswith("🟠 High handoff: "), message["text"]


def test_the_alert_shows_the_most_recent_earlier_contacts() -> None:
    # The first three the bot sent were the oldest; last week's open ticket was in the thread only.
    history = [{"at": f"2026-0{month}-10T10:00:00Z", "channel": "email", "summary": f"contact {month}"}
               for month in (6, 7, 8)]
    history += [{"at": "2026-11-26T09:00:00+01:00", "channel": "chat", "summary": "payout missing, still open"},
                {"channel": "phone", "summary": "no date at all"}]
    message = SlackAdapter(Settings(slack_bot_token="xoxb-1", slack_channel="C1"), {}).render(
        ctx_for(full_packet(history=history)))["message"]
    [block] = [b for b in message["blocks"] if b.get("block_id") == "history"]
    shown = block["text"]["text"]
    assert "payout missing, still open" in shown and "contact 8" in shown and "contact 7" in shown
    assert "contact 6" not in shown and "no date at all" not in shown
    assert shown.index("contact 7") < shown.index("contact 8") < shown.index("payout missing")  # the bot's order


def test_an_earlier_alert_found_in_a_channel_archived_since_does_not_fail_the_next_handoff(slack: FakeSlack) -> None:
    # A review: the lookup found the given-up delivery's alert, and finishing its thread met the
    # channel archived (TicketGone) — which failed this handoff, and every later one of the conversation.
    first = ctx_for(handoff_id="hnd_01TESTHANDOFF0000000000000")
    slack.fail("chat.postMessage", after=1, error="internal_error")  # the alert up, its thread cut short
    with pytest.raises(OutcomeUnknown):
        SlackAdapter(settings_for(slack), {}).deliver(first)
    given_up = ctx_for(handoff_id="hnd_01TESTHANDOFF0000000000000", outcome_unknown=True,
                       sent_to={"channel": "C0HANDOFF"})
    slack.fail("chat.postMessage", error="is_archived")  # archived since; SLACK_CHANNEL moved to C0NEW
    outcome = SlackAdapter(settings_for(slack, slack_channel="C0NEW"), {}).deliver(
        ctx_for(handoff_id="hnd_01TESTHANDOFF0000000000001", earlier=(given_up,)))
    assert outcome.status == "created" and outcome.vendor_id.startswith("C0NEW/")


def test_an_attachments_size_reads_as_in_the_brief(slack: FakeSlack) -> None:
    # A brief review: 4.7 GB in the ticket's brief was 4768.4 MB in the Slack thread.
    packet = full_packet(transcript=[{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "the backup",
                                      "attachments": [{"url": "https://files.example.com/b.tar", "name": "b.tar",
                                                       "content_type": "application/x-tar", "size": 5_000_000_000}]}])
    thread = json.dumps(SlackAdapter(settings_for(slack), {}).render(ctx_for(packet))["thread"])
    assert "(application/x-tar, 4.7 GB)" in thread and "MB" not in thread
