"""The line announcing a batch of messages sent while a handoff waited names the customer only for
their own messages — in the ticket's note (text and HTML) and in the Slack thread alike."""

from __future__ import annotations

import pytest

from adapters.slack_blocks import follow_up
from connector.brief import render_brief
from tests.factories import minimal_packet


def _batch(*roles: str) -> dict:
    """The minimal packet (customer sam.lee@example.net, one message at 10:00) with a batch of
    messages from `roles` after it, as a follow-up is delivered."""
    packet = minimal_packet()
    packet["transcript"] += [{"at": f"2026-11-20T10:0{n + 1}:00Z", "role": role, "text": f"said by the {role}"}
                             for n, role in enumerate(roles)]
    packet["follow_up"] = {"handoff_id": "hnd_0", "first": 1}
    return packet


@pytest.mark.parametrize(("roles", "line"), [
    (("bot",), "1 new message in the conversation while waiting for an agent (from the bot)"),
    (("bot", "agent", "bot"), "3 new messages in the conversation while waiting for an agent "
                              "(2 from the bot, 1 from an agent)"),
    (("customer", "bot", "customer"), "sam.lee@example.net wrote again while waiting for an agent: 2 messages "
                                      "(and 1 from the bot)"),
    (("customer",), "sam.lee@example.net wrote again while waiting for an agent: 1 message"),
])
def test_the_customer_is_said_to_have_written_only_for_their_own_messages(roles, line):
    packet = _batch(*roles)
    brief = render_brief(packet, "msg_1", update=True)
    slack = follow_up(packet, packet["transcript"][1:])

    assert f"\n{line}, 2026-11-20 " in brief.text
    assert f"<p>{line}, 2026-11-20 " in brief.html
    assert slack["text"] == f"💬 {line}"
    assert slack["blocks"][0]["text"]["text"] == f"💬 {line}:"


def test_the_note_without_its_transcript_does_not_call_the_bots_messages_theirs():
    brief = render_brief(_batch("bot"), "msg_1", update=True)

    assert "The messages are in the case's comments." in brief.summary_text("in the case's comments")


def test_a_batch_after_an_agent_took_the_handoff_is_not_said_to_wait_for_one():
    # A review: under "✋ Dana took this handoff", the next message read "wrote again while waiting for
    # an agent", and the note was headed "New messages while waiting".
    packet = _batch("customer", "bot")
    packet["follow_up"]["taken"] = True
    brief = render_brief(packet, "msg_1", update=True)
    slack = follow_up(packet, packet["transcript"][1:])
    line = "sam.lee@example.net wrote again: 1 message (and 1 from the bot)"
    assert f"\n{line}, 2026-11-20 " in brief.text and f"<p>{line}, 2026-11-20 " in brief.html
    assert slack["text"] == f"💬 {line}"
    assert "waiting" not in brief.text and "waiting" not in brief.html


def test_a_batchs_heading_names_the_conversations_problem_not_its_own_first_line():
    # A review: with no stated problem or summary, the note was headed by the batch's first line, as if
    # that were the problem the ticket is about.
    packet = _batch("customer")
    packet["transcript"][-1]["text"] = "Also my password reset link is broken, separate thing"
    brief = render_brief(packet, "msg_1", update=True)
    subject = render_brief(minimal_packet(), "hnd_0").subject
    assert f"New messages while waiting — {subject}</h2>" in brief.html
    assert "password reset" not in brief.html.split("</h2>")[0]
