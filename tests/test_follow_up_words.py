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
