"""Empty routing hints, attributes and metadata are left out: "skills: " with nothing after it, or
"ltv: —", told the agent nothing."""

from __future__ import annotations

import json

import pytest

from adapters import slack_blocks
from connector.brief import render_brief
from tests.factories import minimal_packet


def _packet(**routing: object) -> dict:
    packet = minimal_packet(routing=routing, metadata={"ab": None, "build": "42", "tags": []})
    packet["customer"]["attributes"] = {"ltv": None, "plan": "pro", "note": "  "}
    return packet


def test_empty_values_are_left_out_of_the_brief():
    brief = render_brief(_packet(skills=[], department="billing"), "hnd_1")
    for text in (brief.text, brief.html):
        assert "skills" not in text and "ltv" not in text and "note:" not in text
        assert "ab:" not in text and "tags" not in text
        assert "plan: pro" in text and "department: billing" in text and "build: 42" in text


def test_routing_of_nothing_but_empty_hints_has_no_section():
    brief = render_brief(_packet(skills=[], queue=None), "hnd_1")
    assert "ROUTING HINTS" not in brief.text and "routing hints" not in brief.html


def test_empty_values_are_left_out_of_the_slack_thread():
    thread = json.dumps(slack_blocks.details(_packet(skills=[], department="billing"), "hnd_1"), ensure_ascii=False)
    assert "skills" not in thread and "ltv" not in thread and "ab:" not in thread and "tags" not in thread
    assert "department: billing" in thread and "plan: " in thread and "build: 42" in thread
    assert "Routing hints" not in json.dumps(slack_blocks.details(_packet(skills=[]), "hnd_1"))


@pytest.mark.parametrize(("agent", "shown"), [({"name": "Alex Kim"}, "Alex Kim"),
                                              ({"name": "Alex Kim", "email": "alex@acme.example"},
                                               "Alex Kim (alex@acme.example)"),
                                              ({"id": "381156009921"}, "381156009921"),
                                              # the id was left out beside an e-mail (a review)
                                              ({"email": "sam@acme.example", "id": 381156009921},
                                               "sam@acme.example, id 381156009921")])
def test_a_preferred_agent_named_by_the_bot_is_shown_whatever_it_is_known_by(agent, shown):
    """Sent with a name alone (the contract names id and email), the agent was lost and the Slack
    thread read "*Routing hints:* " with nothing after it."""
    from tests.factories import full_packet

    packet = full_packet(routing={"preferred_agent": agent})
    assert f"preferred agent: {shown}" in render_brief(packet, "hnd_1").text
    thread = "\n".join(b["text"]["text"] for m in slack_blocks.details(packet, "hnd_1") for b in m["blocks"]
                       if b.get("text"))
    assert f"*Routing hints:* preferred agent: {shown}" in thread
    empty = full_packet(routing={"preferred_agent": {"name": " "}, "skills": []})
    assert "Routing hints" not in "\n".join(b["text"]["text"] for m in slack_blocks.details(empty, "hnd_1")
                                            for b in m["blocks"] if b.get("text"))


def test_a_part_sent_with_only_empty_values_is_not_receipted_as_delivered():
    from connector.brief import parts_present
    from tests.factories import full_packet

    assert "routing" not in parts_present(full_packet(routing={"skills": [], "queue": " "}))
    assert "metadata" not in parts_present(full_packet(metadata={"a": None}))
    assert "collected_data" in parts_present(full_packet(collected_data={"order_number": None}))  # "not collected"
    assert "routing" in parts_present(full_packet(routing={"skills": ["billing"]}))
