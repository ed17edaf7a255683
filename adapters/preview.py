"""The built-in target: renders what every vendor adapter would send, stores it, sends nothing.

It runs the vendors' own build hooks (`Adapter.render`), so the preview is the real payload. A
second handoff of a conversation renders the vendors' *update* payloads, as they would be sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from . import registry
from .base import Adapter, HandoffContext, Link, Sent


class PreviewAdapter(Adapter):
    name = "preview"

    # `self.mapping` is every vendor's mapping, keyed by target name (see registry.build_adapters).

    def _vendors(self) -> dict[str, Adapter]:
        return {
            name: registry.adapter_class(name)(self.settings, self.mapping.get(name, {}))
            for name in registry.vendor_names()
        }

    def _render_all(self, ctx: HandoffContext) -> dict[str, Any]:
        rendered: dict[str, Any] = {"brief": {"text": ctx.brief.text, "html": ctx.brief.html}, "vendors": {}}
        for name, vendor in self._vendors().items():
            vendor_ctx = vendor.for_target(_as_target(ctx, name))
            payload = vendor.render(vendor_ctx)
            rendered["vendors"][name] = {
                "operation": "update" if ctx.link else "create",
                "payload": payload,
                "receipt": vendor.receipt(vendor_ctx, payload),
            }
        return rendered

    def setting_warnings(self) -> list[str]:
        # README's "add a vendor to CONNECTOR_TARGETS" left `preview,zendesk`: its tickets reach no
        # agent, so they are not counted (`registry.reaches_agents`), and an operator should know.
        if registry.reaches_agents(self.name, self.settings.targets):
            return []
        beside = [name for name in self.settings.targets if name != self.name]
        return [f"CONNECTOR_TARGETS: preview beside {', '.join(beside)} reaches no agent: its ticket is not "
                "counted as anyone having a handoff (status, customer message, callbacks follow the vendors); "
                "remove preview to stop rendering every vendor's payload for each handoff"]

    def receipt(self, ctx: HandoffContext, payload: Mapping[str, Any]) -> dict[str, Any]:
        """What would reach the vendors, as each one's receipt in the preview says: a part is
        delivered when every vendor carries it; what any of them drops, attaches as a file or masks
        is listed, named by that vendor. The base's said nothing was lost beside a Zendesk receipt
        that dropped every part (a bot's `vendor_extra.zendesk.comment.html_body`), and bots try
        their vendor_extra here before a vendor is enabled."""
        rendered = payload.get("vendors") or self._render_all(ctx)["vendors"]  # none: a found ticket's
        receipts = {name: vendor["receipt"] for name, vendor in rendered.items()}
        merged: dict[str, Any] = {
            "delivered": [part for part in super().receipt(ctx, payload)["delivered"]
                          if all(part in receipt["delivered"] for receipt in receipts.values())],
            "dropped": _named(receipts, "dropped"),
        }
        if attached := _named(receipts, "attached"):
            merged["attached"] = attached
        # Per vendor as well: Slack masks a card number that Zendesk's mapping keeps.
        if redacted := {f"{name}.{kind}": count for name, receipt in receipts.items()
                        for kind, count in (receipt.get("redacted") or {}).items()}:
            merged["redacted"] = redacted
        return merged

    def build_create(self, ctx: HandoffContext) -> dict[str, Any]:
        return self._render_all(ctx)

    def build_update(self, ctx: HandoffContext) -> dict[str, Any]:
        return self._render_all(ctx)

    def apply_extra(self, payload: dict[str, Any], extra: Any) -> dict[str, Any]:
        return payload  # each vendor applied its own share of vendor_extra in render()

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        return Sent(vendor_id=f"preview-{ctx.handoff_id}", url=self._url(ctx))

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        # The conversation's "ticket" keeps its id, as a vendor's would; the link shows what this
        # handoff rendered (the update payloads), which is what a preview is for.
        assert ctx.link is not None
        return Sent(vendor_id=ctx.link.vendor_id, url=self._url(ctx))

    @staticmethod
    def _url(ctx: HandoffContext) -> str:
        follows = (ctx.packet.get("follow_up") or {}).get("handoff_id")
        if follows:  # messages while waiting are shown with their handoff's
            return f"{ctx.public_url}/v1/handoffs/{follows}/messages"
        return f"{ctx.public_url}/v1/handoffs/{ctx.handoff_id}"


def _named(receipts: Mapping[str, Mapping[str, Any]], key: str) -> list[dict[str, Any]]:
    """Every vendor's `key` entries (`dropped`, `attached`), each reason naming its vendor."""
    return [{**entry, "reason": f"{name}: {entry['reason']}"}
            for name, receipt in receipts.items() for entry in receipt.get(key) or ()]


# What the base reads of a link for a repeat's note (`HandoffContext.handed_off_again`): kept, the
# preview of a repeat left out "New since…", "not moved" and "Careful: another customer".
_CONVERSATION_KEYS = ("customer", "opened_with", "told")


def _as_target(ctx: HandoffContext, target: str) -> HandoffContext:
    """The same context seen by another target: its own vendor_extra, a link with a stand-in id and
    what the conversation's link says of the conversation."""
    link = Link(vendor_id="(existing ticket)", url=None,
                extra={key: ctx.link.extra[key] for key in _CONVERSATION_KEYS if key in ctx.link.extra}) \
        if ctx.link else None
    return replace(ctx, target=target, link=link, idempotency_key=f"{ctx.handoff_id}:{target}")
