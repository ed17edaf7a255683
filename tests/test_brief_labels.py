"""What an agent reads first: the customer's words that say something, objects as key: value, and a
batch of messages named as what it is (with its handoff's id), wherever it is delivered."""

from __future__ import annotations

import json

from adapters import slack_blocks
from adapters.salesforce import _header
from connector.brief import named, render_brief, scalar
from tests.factories import minimal_packet


def _said(*lines: str) -> dict:
    packet = minimal_packet()
    packet.pop("intent", None)
    packet["transcript"] = [{"at": f"2026-11-20T09:00:0{i}Z", "role": "customer", "text": text}
                            for i, text in enumerate(lines)]
    return packet


def test_the_slack_alert_quotes_the_customers_first_line_that_says_something():
    # "hi" was quoted as the customer's words; the order number in the next line was missing.
    message, _ = slack_blocks.alert(_said("hi", "my order ORD-7781 never arrived and I was charged"), "hnd_1",
                                    {"team": "billing"}, [])
    [intent] = [b for b in message["blocks"] if b.get("block_id") == "intent"]
    assert ">my order ORD-7781 never arrived" in intent["text"]["text"]


def test_an_object_reads_as_its_keys_and_values_not_as_python_or_json():
    assert scalar({"arm": "B", "id": 7}) == "arm: B, id: 7"
    packet = minimal_packet(metadata={"experiment": {"arm": "B", "id": 7}})
    assert "experiment: arm: B, id: 7" in render_brief(packet, "hnd_1").text


def test_a_batch_of_messages_is_named_with_its_handoff_not_as_one():
    batch = {**_said("still there?"), "follow_up": {"handoff_id": "hnd_1", "first": 0}}
    assert named("msg_2", batch) == "messages msg_2 of handoff hnd_1" and named("hnd_1", minimal_packet()) == "handoff hnd_1"
    assert render_brief(batch, "msg_2").transcript_heading.startswith("Transcript of messages msg_2 of handoff hnd_1")
    assert _header(named("msg_2", batch), "transcript", 1, 2) == "Messages msg_2 of handoff hnd_1 · transcript · part 1/2\n"
    [thread] = slack_blocks.transcript(batch, "msg_2")
    assert "Transcript of messages msg_2 of handoff hnd_1" in json.dumps(thread)


def test_fields_beyond_the_contract_reach_the_agent_as_sent():
    # A customer's time zone and locale, a conversation's start: kept by validation, shown nowhere,
    # while the receipt said nothing was dropped.
    packet = minimal_packet()
    packet["customer"].update(timezone="Europe/Berlin", locale="de-DE")
    packet["conversation"]["started_at"] = "2026-11-20T08:55:00+01:00"
    brief = render_brief(packet, "hnd_1")
    for line in ("customer.timezone: Europe/Berlin", "customer.locale: de-DE",
                 "conversation.started_at: 2026-11-20T08:55:00+01:00"):
        assert line in brief.text and line in brief.html
    [details] = slack_blocks.details(packet, "hnd_1")
    assert "customer.timezone: Europe/Berlin" in json.dumps(details)
    assert "customer.email" not in brief.text  # the contract's own fields stay where they are shown
