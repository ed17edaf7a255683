"""Builders for tests: sample packets and adapter contexts, so tests state only what they vary."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from adapters.base import HandoffContext, Link, kept_team, last_message_told
from connector.brief import render_brief

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"  # the sample packets the README posts


def _example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def full_packet(**overrides: Any) -> dict[str, Any]:
    packet = copy.deepcopy(_example("handoff-full.json"))
    packet.update(overrides)
    return packet


def minimal_packet(**overrides: Any) -> dict[str, Any]:
    packet = copy.deepcopy(_example("handoff-minimal.json"))
    packet.update(overrides)
    return packet


def make_context(
    packet: dict[str, Any] | None = None,
    *,
    target: str = "preview",
    handoff_id: str = "hnd_01TESTHANDOFF0000000000000",
    link: Link | None = None,
    assignment: dict[str, Any] | None = None,
    **kwargs: Any,
) -> HandoffContext:
    packet = packet if packet is not None else full_packet()
    # As routing's default rule decides: the priority the bot gave (routing.assign), else normal.
    stated = (packet.get("routing") or {}).get("priority") or (packet.get("escalation") or {}).get("urgency")
    assignment = assignment or {"team": "support", "queue": None, "agent": None, "priority": stated or "normal",
                                "rule": "default", "trace": [], "targets": {}}
    return HandoffContext(
        handoff_id=handoff_id,
        target=target,
        packet=packet,
        # As the outbox renders it: a repeat's transcript marks what came after the ticket last heard
        # from us, and its "Routed to" the team its ticket stays with.
        brief=render_brief(packet, handoff_id, assignment=assignment,
                           new_after=last_message_told(link.extra) if link is not None else None,
                           kept_team=kept_team(link, assignment, packet)),
        assignment=assignment,
        idempotency_key=f"{handoff_id}:{target}",
        link=link,
        **kwargs,
    )


def mappings_quoting_a_wait(tmp_path: Path, seconds: int = 300) -> str:
    """A copy of the shipped mappings whose routing quotes `seconds` as every team's wait (the
    shipped file quotes none), for `make_app(mappings_dir=…)`."""
    return _routing_edited(tmp_path / "mappings-with-a-wait", "  # expected_wait_seconds: 300   #",
                           f"  expected_wait_seconds: {seconds}   #")


def mappings_with_a_first_rule(tmp_path: Path, rule: str) -> str:
    """A copy of the shipped mappings with `rule` (YAML lines under `rules:`) tried first."""
    return _routing_edited(tmp_path / "mappings-with-a-rule", "rules:\n", "rules:\n" + rule)


def _routing_edited(root: Path, shipped: str, instead: str) -> str:
    """The shipped mappings copied to `root`, routing.yaml's first `shipped` made `instead`."""
    import shutil

    shutil.copytree(Path(__file__).resolve().parents[1] / "mappings", root)
    routing = root / "routing.yaml"
    assert shipped in routing.read_text()
    routing.write_text(routing.read_text().replace(shipped, instead, 1))
    return str(root)
