"""A sentiment score without a label, or an intent's confidence without a name, is still shown:
the score may be what made the handoff urgent."""

from __future__ import annotations

import json

from adapters import slack_blocks
from connector.brief import render_brief
from tests.factories import minimal_packet


def _fields(packet: dict) -> list[str]:
    message, _ = slack_blocks.alert(packet, "hnd_1", {}, [])
    [why] = [b for b in message["blocks"] if b.get("block_id") == "escalation"]
    return [f["text"] for f in why.get("fields", [])]


def test_a_score_without_a_label_is_the_mood():
    packet = minimal_packet(sentiment={"score": -0.95})
    brief = render_brief(packet, "hnd_1")
    assert "  Mood: -0.95 (score from -1 to +1; no label)\n" in brief.text
    assert "Mood: <strong>-0.95</strong> (score from -1 to +1; no label)" in brief.html
    assert "*Sentiment*\n-0.95 (no label)" in _fields(packet)


def test_a_label_keeps_its_score_and_a_trend_alone_is_still_said():
    brief = render_brief(minimal_packet(sentiment={"label": "angry", "score": -0.8, "trend": "worsening"}), "hnd_1")
    assert "Mood: angry (-0.80), getting worse" in brief.text
    assert "Mood: unknown, steady" in render_brief(minimal_packet(sentiment={"trend": "stable"}), "hnd_1").text
    assert "*Sentiment*\nangry (-0.80), getting worse" in _fields(minimal_packet(
        sentiment={"label": "angry", "score": -0.8, "trend": "worsening"}))


def test_a_confidence_without_an_intent_name_is_shown():
    packet = minimal_packet(intent={"confidence": 0.31})
    brief = render_brief(packet, "hnd_1")
    assert "  Intent: (no name) (31% confident)\n" in brief.text and "Intent: (no name) (31% confident)" in brief.html
    assert "*Intent*\n(no name) (31%)" in _fields(packet)
    assert "(no name) (31%)" in json.dumps(slack_blocks.details(packet, "hnd_1"))


def test_a_score_that_rounds_to_zero_carries_no_sign():
    from connector.brief import signed_score

    assert (signed_score(-0.004), signed_score(-0.0), signed_score(-0.95), signed_score(True)) == \
        ("+0.00", "+0.00", "-0.95", None)
