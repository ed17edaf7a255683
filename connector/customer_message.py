"""The message the bot shows the customer: acknowledges the handoff, promises they won't repeat
themselves, restates the problem in one line, and sets an expectation.

Templates per locale live in `mappings/messages.yaml`; the packet's `conversation.language`
picks one (`es-MX` → `es` → the default locale).
"""

from __future__ import annotations

from typing import Any, Mapping

from .brief import one_line, subject_for
from .templating import render

FALLBACK = {
    "default_locale": "en",
    "locales": {
        "en": {
            "template": (
                "I'm connecting you with our {{ team }} team now. They'll see our whole conversation, "
                "so you won't need to repeat yourself. I've passed on: {{ problem }}. {{ expectation }}"
            ),
            "wait": "Someone should be with you in about {{ minutes }} minute{{ 's' if minutes != 1 }}.",
            "no_wait": "Someone will reply here as soon as they're free.",
        }
    },
}


def pick_locale(language: str | None, available: Mapping[str, Any], default: str) -> str:
    if language:
        tag = language.replace("_", "-")
        for candidate in (tag, tag.split("-")[0].lower()):
            if candidate in available:
                return candidate
    return default


def compose(packet: Mapping[str, Any], assignment: Mapping[str, Any], wait_seconds: int | None,
            messages: Mapping[str, Any]) -> dict[str, str]:
    config = messages if messages.get("locales") else FALLBACK
    locales = config["locales"]
    locale = pick_locale((packet.get("conversation") or {}).get("language"), locales,
                         config.get("default_locale", "en"))
    strings = locales[locale]
    where = f"mappings/messages.yaml: locales.{locale}"
    teams = strings.get("teams") or {}
    team = teams.get(assignment.get("team"), str(assignment.get("team") or "support").replace("_", " "))
    problem = one_line(subject_for(packet), 140).rstrip(".")
    if wait_seconds is not None:
        minutes = max(1, round(wait_seconds / 60))
        expectation = render(strings["wait"], f"{where}.wait", minutes=minutes)
    else:
        expectation = render(strings["no_wait"], f"{where}.no_wait")
    text = render(strings["template"], f"{where}.template", team=team, problem=problem, expectation=expectation)
    return {"locale": locale, "text": " ".join(text.split())}
