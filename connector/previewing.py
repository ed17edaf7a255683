"""A dry run: everything intake would decide and every vendor would receive, nothing sent or stored."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from adapters import registry
from adapters.base import HandoffContext, with_dropped

from . import answers
from .brief import render_brief
from .customer_message import context_lost_message
from .decision import decide
from .errors import PayloadTooLarge, ValidationFailed
from .intake import validate_packet, warnings_for
from .json_body import parse_json
from .services import Services
from .text_rules import rfc3339, rfc3339_problem

PREVIEW_ID = "hnd_PREVIEW"


def preview_packet(services: Services, raw: bytes, content_type: str | None = "application/json", *,
                   read_waits: bool = True, at: str | None = None) -> dict[str, Any]:
    """`read_waits` False: the wait is estimated without the database's observed waits (the
    command, on a database not made or not migrated yet, must not make it by reading). `at`: an
    RFC 3339 time to decide at instead of now — what a customer is told out of hours, on a holiday."""
    if len(raw) > services.settings.max_body_bytes:  # the command's file, as the service's request body
        raise PayloadTooLarge.over(services.settings.max_body_bytes)
    mappings, adapters = services.mappings, services.adapters
    moment = _moment(at) or dt.datetime.now(dt.UTC)
    packet = validate_packet(parse_json(raw, content_type, services.settings.max_json_depth), services)
    decision = decide(packet, mappings, adapters, ask_vendors=False,
                      observed_wait=services.observed_wait if read_waits else None, now=moment)
    brief = render_brief(packet, PREVIEW_ID, assignment=decision.assignment)
    vendors: dict[str, Any] = {}
    for name in registry.vendor_names():
        adapter = registry.adapter_class(name)(services.settings, mappings.targets.get(name, {}))
        ctx = adapter.for_target(HandoffContext(
            handoff_id=PREVIEW_ID, target=name, packet=packet, brief=brief, assignment=decision.assignment,
            idempotency_key=f"{PREVIEW_ID}:{name}", public_url=services.settings.public_url))
        payload, left_out = adapter.rendered(ctx, quiet=True)
        vendors[name] = {"enabled": name in adapters, "would_receive": name in decision.targets,
                         "payload": payload, "receipt": with_dropped(adapter.receipt(ctx, payload), left_out)}
    return {
        "decided_at": moment.isoformat(),  # calendars were read at this moment
        "assignment": decision.assignment,
        "targets": decision.targets,
        # As the answer shows it while the handoff is being delivered, and what it says instead if
        # every target gives up (`answers.shown_message`).
        "customer_message": answers.shown_message(decision.customer_message, "pending"),
        "customer_message_if_failed": answers.shown_message(decision.customer_message, "failed"),
        # …and instead if the conversation reaches no agent (`answers.context_lost`), where the locale says that.
        "customer_message_if_context_lost": answers.shown_message(context_lost_message(lost), "pending")
        if (lost := decision.customer_message.get("if_context_lost")) else None,
        "estimated_wait_seconds": decision.wait_seconds,
        "wait_source": decision.wait_source,
        "brief": {"subject": brief.subject, "text": brief.text},
        "vendors": vendors,
        # What a handoff's answer would warn of (a language with no messages of its own is answered in
        # the default locale's: the dry run showed it without a word).
        "warnings": warnings_for(packet, decision.targets, decision.assignment, services),
    }


def _moment(at: str | None) -> dt.datetime | None:
    if not at:
        return None
    moment = rfc3339(at)
    if moment is None:
        # A `+` written as is in a query string reads as a space: the example, typed, was refused.
        plus = _SPACE_FOR_PLUS.search(at) and rfc3339(at.replace(" ", "+")) is not None
        hint = " A + in a query string is read as a space: write it %2B (…T19:30:00%2B01:00)." if plus else ""
        raise ValidationFailed("`at` must be an RFC 3339 time with a time zone (e.g. 2026-12-24T19:30:00+01:00)."
                               + hint, errors={"at": [rfc3339_problem(at)]})
    if not FIRST_MOMENT <= moment < LAST_MOMENT:
        # A calendar's next opening is looked for up to a year on, and its day begins at local
        # midnight: past 9998, or in year 1, that overflowed Python's dates, a 500 (a review).
        between = f"from {FIRST_MOMENT.year} to before {LAST_MOMENT.year}"
        raise ValidationFailed(f"`at` must be {between} (got {at}).", errors={"at": [between]})
    return moment


FIRST_MOMENT, LAST_MOMENT = dt.datetime(1900, 1, 1, tzinfo=dt.UTC), dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


_SPACE_FOR_PLUS = re.compile(r"\d \d\d:?\d\d$")
