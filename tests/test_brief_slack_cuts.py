"""What the Slack alert leaves out of a list, or gives up for size, it says in the alert itself: the
receipt is read by admins, not by the agent triaging from the alert."""

from __future__ import annotations

import json

from adapters import slack_blocks as kit
from tests.factories import full_packet

BIG = "<😡>&" * 2000
URL = "https://x.example/" + "a" * 480
ESCAPED = '"\\n' * 3000  # a quote and a backslash: two each in JSON, the size the guard counts


def _block(message: dict, block_id: str) -> dict | None:
    return next((b for b in message["blocks"] if b.get("block_id") == block_id), None)


def test_a_long_history_says_how_many_earlier_contacts_the_alert_leaves_out():
    history = [{"at": f"2026-10-{1 + n % 28:02d}T00:00:00Z", "summary": f"contact {n}"} for n in range(150)]
    message, notes = kit.alert(full_packet(history=history), "hnd_1", {}, [])
    text = _block(message, "history")["text"]["text"]
    assert text.count("\n• ") == 3 and text.endswith("\n_…and 147 more in the thread_")
    assert {"part": "history", "reason": "3 of 150 earlier contacts shown in the alert; all in the thread"} in notes


def test_a_list_too_long_for_its_section_keeps_its_count_of_the_rest_not_a_bare_ellipsis():
    packet = full_packet(attempted_solutions=[{"title": BIG, "url": URL, "outcome": "not_helpful"}] * 20)
    message, _ = kit.alert(packet, "hnd_1", {}, [])
    text = _block(message, "attempted_solutions")["text"]["text"]
    shown = text.count("\n• ")
    assert 0 < shown < 5 and text.endswith(f"\n_…and {20 - shown} more in the thread_")
    assert not text.endswith("• …")


def test_blocks_given_up_for_size_are_named_in_the_alert():
    packet = full_packet(
        intent={"stated_problem": BIG, "summary": BIG},
        escalation={"reason": "other", "detail": BIG, "keywords": [BIG] * 10},
        collected_data={"k" * 90 + str(n): BIG for n in range(40)},
        attempted_solutions=[{"title": BIG, "url": URL, "outcome": "not_helpful"}] * 20,
        history=[{"at": "2026-11-01T00:00:00Z", "summary": BIG,
                  "ticket": {"system": "zendesk", "id": "1", "url": URL}}] * 20)
    message, _ = kit.alert(packet, "hnd_1", {}, [])
    assert _block(message, "history") is None
    said = _block(message, "left_out")["text"]["text"]
    assert said == "_Left out of this alert (too long): earlier contacts — all in the thread._"
    assert message["blocks"][-1]["type"] == "context"  # the line above the alert's last


def test_a_section_halved_for_size_says_it_was_cut():
    related = [{"target": BIG, "id": BIG, "url": URL}] * 10
    packet = full_packet(
        customer={"name": BIG, "email": BIG, "segment": BIG, "account_id": BIG, "phone": BIG},
        intent={"name": BIG, "stated_problem": ESCAPED, "summary": ESCAPED, "confidence": 0.5},
        escalation={"reason": BIG, "detail": BIG, "keywords": [BIG] * 10, "urgency": "urgent"},
        collected_data={BIG[:300] + str(n): BIG for n in range(40)},
        attempted_solutions=[{"title": BIG, "url": URL, "outcome": BIG}] * 20,
        history=[{"at": BIG, "summary": BIG, "ticket": {"system": BIG, "id": BIG, "url": URL}}] * 20,
        conversation={"id": BIG, "url": URL, "channel": BIG, "language": BIG})
    message, _ = kit.alert(packet, "hnd_1", {"team": BIG, "priority": "urgent"}, related)
    assert kit.blocks_size(message["blocks"]) <= kit.SAFE_AGGREGATE
    cut = [b for b in message["blocks"] if b["type"] == "section" and b["text"]["text"].endswith(kit.CUT_FOR_SIZE)]
    assert cut and all(b["text"]["text"].count(kit.CUT_FOR_SIZE.strip()) == 1 for b in cut)
    assert "Left out of this alert (too long): earlier contacts, what the bot tried, collected data" in json.dumps(
        message, ensure_ascii=False)


def test_the_left_out_line_is_counted_before_a_list_is_weighed_so_no_list_is_halved_for_it():
    """Inserted after the lists were weighed, the line saying one was left out pushed the alert
    back over its size: the attempts' section was then halved, ending "• …" with its count gone
    (and the receipt still said "4 of 5 shown")."""
    packet = full_packet(
        transcript=[{"at": "2026-11-20T10:00:00Z", "role": "customer", "text": "My refund never arrived " + "y" * 1100},
                    {"at": "2026-11-20T10:00:01Z", "role": "customer", "text": "z" * 600}],
        attempted_solutions=[{"title": "t" * 150, "url": URL, "outcome": "not_helpful"}] * 5,
        history=[{"at": "2026-11-19T10:00:00Z", "summary": "s" * 150, "ticket": {"id": "1", "url": URL}}] * 3,
        collected_data={f"k{i}": "v" * 150 for i in range(10)}, intent={"summary": "x" * 600},
        escalation={"reason": "other", "detail": "d" * 1200})
    left_out = 0
    for length in range(1000, 3000, 4):  # the caution's length moves the alert across each threshold
        message, _ = kit.alert(packet, "hnd_1", {}, [], caution="c" * length)
        assert kit.blocks_size(message["blocks"]) <= kit.SAFE_AGGREGATE
        if _block(message, "left_out") is not None:
            left_out += 1
            cut = [b.get("block_id") for b in message["blocks"]
                   if b["type"] == "section" and b["text"]["text"].endswith(kit.CUT_FOR_SIZE)]
            assert cut == [], length
    assert left_out > 100  # the scan crossed the thresholds it is about
