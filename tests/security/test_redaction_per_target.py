"""PII masking is per target, from the mappings: masked in Slack, kept in Zendesk (the shipped
defaults), reported in the receipt — and never in the logs."""

from __future__ import annotations

import json
import logging

from tests.conftest import ADMIN_TOKEN, auth
from tests.factories import full_packet

CARD = "4242 4242 4242 4242"
SSN = "123-45-6789"
TOKEN = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


def hostile_packet() -> dict:
    packet = full_packet()
    packet["transcript"].append({"at": "2026-11-20T09:18:00Z", "role": "customer",
                                 "text": f"My card is {CARD}, SSN {SSN}, and our key is {TOKEN}"})
    return packet


def test_preview_masks_in_slack_and_keeps_in_zendesk(client):
    body = client.post("/v1/preview", data=json.dumps(hostile_packet()), headers=auth(ADMIN_TOKEN),
                       content_type="application/json").get_json()
    slack = json.dumps(body["vendors"]["slack"]["payload"], ensure_ascii=False)
    zendesk = json.dumps(body["vendors"]["zendesk"]["payload"], ensure_ascii=False)
    for secret in (CARD, SSN, TOKEN):
        assert secret not in slack
        assert secret in zendesk
    assert "4242" in slack  # the last four stay, so an agent can match the card
    assert body["vendors"]["slack"]["receipt"]["redacted"] == {"card": 1, "national_id": 1, "secret": 1}
    assert "redacted" not in body["vendors"]["zendesk"]["receipt"]


def test_stored_preview_payloads_mask_per_vendor_and_logs_carry_no_packet(client, caplog):
    caplog.set_level(logging.DEBUG)
    created = client.post("/v1/handoffs", data=json.dumps(hostile_packet()), headers=auth(),
                          content_type="application/json").get_json()
    detail = client.get(created["links"]["self"], headers=auth()).get_json()
    vendors = detail["deliveries"][0]["payload"]["vendors"]
    assert CARD not in json.dumps(vendors["slack"], ensure_ascii=False)
    assert CARD in json.dumps(vendors["zendesk"], ensure_ascii=False)
    logged = "\n".join(record.getMessage() + json.dumps(record.__dict__, default=str) for record in caplog.records)
    for secret in (CARD, SSN, TOKEN, "Dana Whitfield", "dana.whitfield@example.com", "QuickBooks"):
        assert secret not in logged
    assert created["id"] in logged  # logs carry the handoff id instead


def test_an_unknown_pii_kind_is_refused_naming_file_and_line(tmp_path):
    import shutil
    from pathlib import Path

    import pytest

    from connector.errors import ConfigError
    from connector.mappings import load_mappings

    shutil.copytree(Path(__file__).parents[2] / "mappings", tmp_path / "m")
    path = tmp_path / "m" / "slack.yaml"
    path.write_text(path.read_text().replace("redact: [card, iban, national_id, secret]", "redact: [cards]"))
    with pytest.raises(ConfigError) as caught:
        load_mappings(str(tmp_path / "m"), str(tmp_path), ["slack"])
    assert "slack.yaml:" in caught.value.source and "redact" in caught.value.source


def test_a_packet_with_nothing_to_mask_keeps_its_brief_as_rendered():
    # Every Slack alert rendered the brief a second time, from a copy of the packet identical to it.
    from adapters.slack import SlackAdapter
    from connector.settings import Settings
    from tests.factories import make_context

    adapter = SlackAdapter(Settings(), {})
    plain = make_context(full_packet(), target="slack")
    assert adapter.for_target(plain) is plain
    masked = adapter.for_target(make_context(hostile_packet(), target="slack"))
    assert CARD not in masked.brief.text and masked.redactions == {"card": 1, "national_id": 1, "secret": 1}
