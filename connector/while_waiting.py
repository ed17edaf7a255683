"""The line that announces a batch of messages sent while a handoff waited (`follow_ups`): in the
agent's note (`templates/follow_up.*.j2`, through `brief.FollowUpBrief`) and in the Slack thread
(`adapters.slack_blocks.follow_up`). One place decides the words, so a ticket and a thread say the same."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

# Who else may speak in a batch (the transcript's roles), as the line names them.
FROM = {"bot": "the bot", "agent": "an agent", "system": "the system"}


def announced(messages: Sequence[Mapping[str, Any]], who: str, taken: bool = False) -> str:
    """`who` (the customer, as the caller names them) "wrote again while waiting" only for the
    customer's own messages, the others counted beside them: a batch of the bot's messages alone
    was announced as the customer writing again, and an agent read it as a customer still waiting
    on them.

    "Sam wrote again while waiting for an agent: 2 messages (and 1 from the bot)";
    "1 new message in the conversation while waiting for an agent (from the bot)". `taken`: an agent
    has the handoff (`packet["follow_up"]["taken"]`), and nobody is waiting for one: "Sam wrote
    again: 2 messages" — under "took this handoff", the agent who had it read the customer as still
    waiting for someone (a review)."""
    others = Counter(str(message.get("role")) for message in messages)
    theirs = others.pop("customer", 0)
    counted = ", ".join(f"{n} {_from(role)}" for role, n in others.items())
    waiting = "" if taken else " while waiting for an agent"
    if theirs:
        besides = f" (and {counted})" if counted else ""
        return f"{who} wrote again{waiting}: {_count(theirs)}{besides}"
    source = _from(next(iter(others))) if len(others) == 1 else counted  # "(from the bot)", not "(2 from the bot)"
    return f"{_count(sum(others.values()), 'new message')} in the conversation{waiting} ({source})"


def _from(role: str) -> str:
    return f"from {FROM.get(role, role)}"


def _count(n: int, noun: str = "message") -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
