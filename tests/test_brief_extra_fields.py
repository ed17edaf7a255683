"""Fields a bot sends beyond the contract inside intent, escalation, conversation or sentiment are
shown with their own part, as key: value — not all under the customer, as JSON."""

from __future__ import annotations

import json

from adapters import slack_blocks
from connector.brief import render_brief, scalar
from tests.factories import minimal_packet

ENTITIES = [{"type": "order_id", "value": "88"}, {"type": "sku", "value": "A1", "note": None}]


def _packet() -> dict:
    packet = minimal_packet(intent={"name": "billing.refund", "entities": ENTITIES},
                            sentiment={"label": "angry", "model": "v2"})
    packet["escalation"]["sla_due_at"] = "2026-11-21T10:00:00Z"
    packet["conversation"]["started_at"] = "2026-11-20T08:55:00+01:00"
    return packet


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n\n", start + len(heading) + 1)
    return text[start:end]


def test_each_extra_field_is_shown_with_its_part_as_key_and_value():
    brief = render_brief(_packet(), "hnd_1")
    entities = "intent.entities: type: order_id, value: 88; type: sku, value: A1"
    assert entities in _section(brief.text, "WHAT THEY WANT")
    assert "escalation.sla_due_at: 2026-11-21T10:00:00Z" in _section(brief.text, "WHY A PERSON IS NEEDED")
    customer = _section(brief.text, "CUSTOMER")
    assert "sentiment.model: v2" in customer and "intent." not in customer and "escalation." not in customer
    assert "conversation.started_at: 2026-11-20T08:55:00+01:00" in brief.text.split("\n—\n")[1]  # the footer
    assert "{" not in brief.text and "&#34;" not in brief.html and "&quot;" not in brief.html
    html_want = brief.html[brief.html.index("<h3>What they want</h3>"):brief.html.index("<h3>Transcript")]
    assert entities in html_want
    thread = json.dumps(slack_blocks.details(_packet(), "hnd_1"), ensure_ascii=False)
    assert entities in thread and "Also sent" not in thread
    assert thread.index("intent.entities") > thread.index("*Intent:*")


def test_objects_inside_objects_keep_their_own_commas_apart():
    assert scalar({"a": {"b": 1, "c": 2}, "d": [1, 2], "e": ""}) == "a: (b: 1, c: 2), d: (1, 2)"
    assert scalar([{"x": 1}, {"x": 2}]) == "x: 1; x: 2" and scalar([1, None, 2]) == "1, 2"


def test_nested_values_keep_their_grouping():
    """A one-item list of objects inside an object, and rows of a list, read as flat siblings."""
    from connector.brief import scalar

    assert scalar({"a": [{"b": 1, "c": 2}], "d": 3}) == "a: (b: 1, c: 2), d: 3"
    assert scalar([["SKU1", 2], ["SKU2", 1]]) == "(SKU1, 2), (SKU2, 1)"
    assert scalar({"x": [1]}) == "x: 1" and scalar([{"a": 1}, {"b": 2}]) == "a: 1; b: 2"


def test_the_bots_own_extras_and_a_preferred_agents_are_shown_too():
    # A review: `bot.model_version` (what an agent judging a bad answer needs) and a preferred agent's
    # `team_hint` reached no agent — brief, note, case or thread — the receipt saying nothing was dropped.
    packet = minimal_packet(routing={"preferred_agent": {"email": "dana@acme.example", "team_hint": "billing"}})
    packet["bot"].update(model_version="2026-11-rc3", name="Helper")
    brief = render_brief(packet, "hnd_1")
    footer = brief.text.split("\n—\n")[1]
    assert "bot.model_version: 2026-11-rc3" in footer and "bot.name" not in footer
    assert "bot.model_version: 2026-11-rc3" in brief.html
    assert "preferred agent: dana@acme.example; team_hint: billing" in brief.text
    assert "team_hint: billing" in brief.html
    thread = json.dumps(slack_blocks.details(packet, "hnd_1"), ensure_ascii=False)
    assert "bot.model_version" in thread and "team_hint: billing" in thread
