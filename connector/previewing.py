"""A dry run: everything intake would decide and every vendor would receive, nothing sent or stored."""

from __future__ import annotations

from typing import Any

from adapters import registry
from adapters.base import HandoffContext

from . import customer_message, routing
from .brief import render_brief
from .intake import parse_json, validate_packet
from .services import Services

PREVIEW_ID = "hnd_PREVIEW"


def preview_packet(services: Services, raw: bytes, content_type: str | None = "application/json") -> dict[str, Any]:
    packet = validate_packet(parse_json(raw, content_type, services.settings.max_json_depth), services)
    assignment = routing.assign(packet, services.mappings.routing)
    wait_seconds = routing.expected_wait(assignment, services.mappings.routing)
    brief = render_brief(packet, PREVIEW_ID)
    vendors: dict[str, Any] = {}
    for name in registry.vendor_names():
        adapter = registry.adapter_class(name)(services.settings, services.mappings.targets.get(name, {}))
        ctx = HandoffContext(handoff_id=PREVIEW_ID, target=name, packet=packet, brief=brief, assignment=assignment,
                             idempotency_key=f"{PREVIEW_ID}:{name}", public_url=services.settings.public_url)
        payload = adapter.render(ctx)
        vendors[name] = {"enabled": name in services.adapters, "payload": payload,
                         "receipt": adapter.receipt(ctx, payload)}
    return {
        "assignment": assignment,
        "customer_message": customer_message.compose(packet, assignment, wait_seconds, services.mappings.messages),
        "estimated_wait_seconds": wait_seconds,
        "brief": {"subject": brief.subject, "text": brief.text},
        "vendors": vendors,
    }
