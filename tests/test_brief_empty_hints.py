"""Empty routing hints, attributes and metadata are left out: "skills: " with nothing after it, or
"ltv: —", told the agent nothing."""

from __future__ import annotations

import json

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
