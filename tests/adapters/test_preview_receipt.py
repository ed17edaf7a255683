"""The preview's context receipt says what the vendors' payloads it rendered would lose: bots try
their `vendor_extra` against preview before a vendor is enabled, and were told nothing was lost."""

from __future__ import annotations

import json

from tests.conftest import auth
from tests.factories import full_packet, minimal_packet

CARD = "4242 4242 4242 4242"


def handed_off(client, packet):
    """The answer's preview receipt, and the vendors' receipts its stored payload holds."""
    body = client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(),
                       content_type="application/json").get_json()
    detail = client.get(body["links"]["self"], headers=auth()).get_json()
    vendors = {name: rendered["receipt"] for name, rendered in detail["deliveries"][0]["payload"]["vendors"].items()}
    assert detail["context_receipt"] == body["context_receipt"]
    return body["context_receipt"]["preview"], vendors


def test_a_part_a_vendor_drops_is_dropped_naming_the_vendor(client):
    # A reviewer's run: Zendesk's receipt dropped every part (the bot's own html_body replaced the
    # brief) while the answer's preview receipt listed them all delivered, nothing dropped.
    packet = minimal_packet(vendor_extra={"zendesk": {"comment": {"html_body": "replaced"}}})
    receipt, vendors = handed_off(client, packet)
    parts = vendors["salesforce"]["delivered"]
    assert parts and vendors["zendesk"]["delivered"] == []
    assert receipt == {"delivered": [], "dropped": [
        {"part": part, "reason": "zendesk: vendor_extra.zendesk.comment.html_body replaced the text that carries "
                                 "the brief: the agent does not see this part"} for part in parts]}


def test_what_a_vendor_attached_as_a_file_is_carried(client):
    lines = [f"message {i}: {'the order never arrived ' * 40}" for i in range(120)]
    packet = full_packet(transcript=[{"at": f"2026-11-20T09:{i // 60:02d}:{i % 60:02d}Z", "role": "customer",
                                      "text": line} for i, line in enumerate(lines)])
    receipt, vendors = handed_off(client, packet)
    [attached] = vendors["zendesk"]["attached"]
    assert receipt["attached"] == [{**attached, "reason": f"zendesk: {attached['reason']}"}]
    # Slack's alert had to shorten it too: named, as the vendors' other notes are.
    assert receipt["dropped"] == [{**entry, "reason": f"{name}: {entry['reason']}"}
                                  for name, said in vendors.items() for entry in said["dropped"]]
    assert receipt["dropped"][0]["reason"].startswith("slack: shortened in the alert")


def test_what_a_vendor_masked_is_named_by_vendor_and_nothing_lost_says_so(client):
    packet = full_packet()
    receipt, vendors = handed_off(client, packet)
    assert receipt == {"delivered": vendors["zendesk"]["delivered"], "dropped": []}  # nothing lost anywhere
    packet["transcript"].append({"at": "2026-11-20T09:18:00Z", "role": "customer", "text": f"My card is {CARD}"})
    receipt, vendors = handed_off(client, packet)
    assert vendors["slack"]["redacted"] == {"card": 1} and "redacted" not in vendors["zendesk"]
    assert receipt["redacted"] == {"slack.card": 1}  # Zendesk's mapping keeps it: not "masked" for all
