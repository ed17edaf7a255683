"""Who should take the handoff: team, queue, agent, priority — with a trace of why.

Until the rules engine lands, one default rule: the bot's department hint, else the default team
from `mappings/routing.yaml`; priority from the bot's hint, else the escalation urgency.
"""

from __future__ import annotations

from typing import Any, Mapping

PRIORITIES = ("low", "normal", "high", "urgent")


def assign(packet: Mapping[str, Any], routing: Mapping[str, Any]) -> dict[str, Any]:
    defaults = routing.get("default") or {}
    hints = packet.get("routing") or {}
    escalation = packet.get("escalation") or {}
    trace: list[str] = []

    team = hints.get("department")
    if team:
        trace.append(f"routing.department={team} chose the team")
    else:
        team = defaults.get("team", "support")
        trace.append(f"no department hint: default team {team}")

    priority = hints.get("priority") or escalation.get("urgency")
    if priority:
        trace.append(f"priority {priority} from the bot ({'routing.priority' if hints.get('priority') else 'escalation.urgency'})")
    else:
        priority = defaults.get("priority", "normal")
        trace.append(f"no priority hint: default {priority}")

    team_settings = (routing.get("teams") or {}).get(team) or {}
    return {
        "team": team,
        "queue": hints.get("queue") or team_settings.get("queue"),
        "agent": None,
        "priority": priority,
        "rule": "default",
        "trace": trace,
        "targets": dict(team_settings.get("targets") or {}),
    }


def expected_wait(assignment: Mapping[str, Any], routing: Mapping[str, Any]) -> int | None:
    """A configured figure for the team, else None — never an invented number."""
    team_settings = (routing.get("teams") or {}).get(assignment.get("team")) or {}
    value = team_settings.get("expected_wait_seconds", (routing.get("default") or {}).get("expected_wait_seconds"))
    return int(value) if isinstance(value, (int, float)) else None
