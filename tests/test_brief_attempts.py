"""An attempted solution without a title is named by its detail, not "(untitled)"."""

from __future__ import annotations

import json

from adapters import slack_blocks
from connector.brief import render_brief
from tests.factories import minimal_packet

DETAIL = "Sent the password reset e-mail twice"


def _alert_attempts(packet: dict) -> tuple[str, list[dict]]:
    message, notes = slack_blocks.alert(packet, "hnd_1", {}, [])
    [attempts] = [b for b in message["blocks"] if b.get("block_id") == "attempted_solutions"]
    return attempts["text"]["text"], notes


def test_an_untitled_attempt_is_named_by_its_detail_in_slack_and_in_the_brief():
    packet = minimal_packet(attempted_solutions=[{"detail": DETAIL, "outcome": "not_helpful"}])
    text, _ = _alert_attempts(packet)
    assert f"• {DETAIL} — did not help" in text and "(untitled)" not in text
    brief = render_brief(packet, "hnd_1")
    assert f"  ✗ {DETAIL} — did not help\n" in brief.text and "(untitled)" not in brief.text
    assert brief.text.count(DETAIL) == 1  # not said again as its detail
    assert f"<li>{DETAIL} — did not help</li>" in brief.html


def test_a_long_untitled_detail_is_cut_in_the_alert_said_in_the_receipt_and_whole_in_the_brief():
    long = "Walked the customer through resetting the router, " * 8
    packet = minimal_packet(attempted_solutions=[{"detail": long, "outcome": "not_helpful"}])
    text, notes = _alert_attempts(packet)
    assert "• Walked the customer through resetting the router" in text and "… — did not help" in text
    assert any(n["part"] == "attempted_solutions" for n in notes)
    brief = render_brief(packet, "hnd_1").text
    assert "  ✗ Walked the customer through" in brief and long.strip() in brief


def test_an_attempt_with_nothing_to_name_it_is_still_untitled():
    text, _ = _alert_attempts(minimal_packet(attempted_solutions=[{"outcome": "declined"}]))
    assert "• (untitled) — customer declined" in text


def test_the_thread_names_an_untitled_attempt_by_its_detail_too():
    packet = minimal_packet(attempted_solutions=[
        {"detail": DETAIL, "outcome": "not_helpful", "url": "https://help.example/reset"}])
    thread = json.dumps(slack_blocks.details(packet, "hnd_1"), ensure_ascii=False)
    assert f"• {DETAIL} — did not help\\n    <https://help.example/reset|open the link>" in thread
    assert "(untitled)" not in thread


def test_a_blank_title_is_no_label_of_the_link_in_the_thread():
    """The thread linked "• <https://ex.com/kb/1| > — customer declined": a link with a blank label."""
    from tests.factories import full_packet

    packet = full_packet(attempted_solutions=[{"title": " ", "url": "https://ex.com/kb/1", "outcome": "declined"}])
    thread = "\n".join(b["text"]["text"] for m in slack_blocks.details(packet, "hnd_1") for b in m["blocks"]
                       if b.get("text"))
    assert "| >" not in thread and "<https://ex.com/kb/1|https://ex.com/kb/1>" in thread
