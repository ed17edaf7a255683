"""Values the bot sent empty (null, "", blank, []) are not given: the agent is not told "don't ask
again" for them, nor shown blank lines and dashes."""

from __future__ import annotations

import json

from adapters import slack_blocks
from connector.brief import render_brief
from tests.factories import full_packet, minimal_packet

EMPTY = {"order_number": None, "tracking_id": "", "items": [], "zip": "   "}


def test_empty_collected_values_are_not_collected_not_already_given():
    packet = minimal_packet(collected_data={**EMPTY, "product": "Router X2"})
    brief = render_brief(packet, "hnd_1")
    for text in (brief.text, brief.html):
        assert "Don't ask again for: email, product" in text
        assert "Not collected (sent empty): order number, tracking id, items, zip" in text
    assert "order_number:" not in brief.text and "zip:" not in brief.text and ": —" not in brief.text
    assert ">order_number<" not in brief.html


def test_all_empty_collected_values_leave_only_the_customers_identity_to_not_ask_for():
    brief = render_brief(minimal_packet(collected_data=EMPTY), "hnd_1")
    assert "Don't ask again for: email\n" in brief.text and "tracking id" not in brief.text.split("Not collected")[0]
    assert "<table>" not in brief.html


def test_slack_shows_empty_collected_values_as_not_collected():
    packet = full_packet(collected_data={**EMPTY, "product": "Router X2"})
    message, _ = slack_blocks.alert(packet, "hnd_1", {}, [])
    [collected] = [b for b in message["blocks"] if b.get("block_id") == "collected_data"]
    assert [f["text"] for f in collected["fields"]] == ["*product*\nRouter X2"]
    assert collected["text"]["text"].endswith("_Not collected (sent empty):_ order_number, tracking_id, items, zip")
    details = json.dumps(slack_blocks.details(packet, "hnd_1"))
    assert "order_number:*" not in details and "Not collected (sent empty):_ order_number, tracking_id, items, zip" in details


def test_blank_extra_fields_of_a_message_an_attempt_or_a_contact_are_no_lines():
    """`more_of` kept " ", {"a": null} and [null]: "extra:  ", "note: ", "tags: " in every vendor."""
    packet = full_packet()
    packet["attempted_solutions"][0]["extra"] = " "
    packet["history"][0]["note"] = {"a": None}
    packet["transcript"][0]["translation"] = "\u200b"
    packet["transcript"][0]["tags"] = [None]
    packet["customer"].update(name="\u200b", phone="   ")
    brief = render_brief(packet, "hnd_1")
    for said in ("extra:", "note:", "translation:", "tags:"):
        assert said not in brief.text and said not in brief.html, said
    thread = "\n".join(b["text"]["text"] for m in slack_blocks.details(packet, "hnd_1") for b in m["blocks"]
                       if b.get("text"))
    assert "extra:" not in thread and "translation:" not in thread
    customer = next(line for line in thread.splitlines() if line.startswith("*Customer:*"))
    assert "name:" not in customer and "phone:" not in customer and "email: dana.whitfield@example.com" in customer
