"""The built-in `preview` target enabled beside a real vendor (`CONNECTOR_TARGETS=preview,zendesk`,
what README's "add it to CONNECTOR_TARGETS" used to give): its ticket reaches no agent, so it never
tells the bot or the customer that someone has the handoff. `preview` alone keeps counting."""

from __future__ import annotations

import json

import pytest

from adapters import registry
from tests.conftest import auth
from tests.factories import minimal_packet


@pytest.fixture
def vendors(monkeypatch):
    """Stand-in vendors, registered as a vendor module is: one that refuses, one that is down."""
    monkeypatch.setitem(registry.TARGETS, "broken", "tests.support_adapters:BrokenAdapter")
    monkeypatch.setitem(registry.TARGETS, "down", "tests.support_adapters:DownAdapter")


def post(client, packet):
    return client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")


def test_a_vendor_given_up_beside_preview_is_failed_with_the_apology_as_without_preview(make_app, vendors):
    # A reviewer's run: `preview,zendesk` with Zendesk failing for good answered `partial` and
    # "Someone will reply here as soon as they're free" — nobody had it; `zendesk` alone said `failed`.
    alone = post(make_app(targets=("broken",)).test_client(), minimal_packet()).get_json()
    client = make_app(targets=("preview", "broken")).test_client()
    response = post(client, minimal_packet())
    assert response.status_code == 201
    body = response.get_json()
    assert (body["status"], body["customer_message"], body["estimated_wait_seconds"]) == (
        alone["status"], alone["customer_message"], alone["estimated_wait_seconds"])
    assert body["status"] == "failed" and "so nobody has it yet" in body["customer_message"]["text"]
    # Its ticket is still listed, and what it rendered is still there to read.
    assert {t["target"]: t["status"] for t in body["tickets"]} == {"preview": "created", "broken": "failed"}
    read = client.get(body["links"]["self"], headers=auth()).get_json()
    assert (read["status"], read["customer_message"]) == ("failed", body["customer_message"])
    assert "preview" in read["context_receipt"]


def test_preview_made_while_the_vendor_is_still_tried_is_pending_not_partial(make_app, vendors):
    # The budget bounds the wait for both first attempts (each ends at once: preview's made, down's
    # 503): 300 ms was passed under a loaded CI's two workers, preview's answer still pending.
    client = make_app(targets=("preview", "down"), sync_budget_ms=3000).test_client()
    response = post(client, minimal_packet())
    assert response.status_code == 202
    body = response.get_json()
    assert {t["target"]: t["status"] for t in body["tickets"]} == {"preview": "created", "down": "pending"}
    # Nobody has it and its vendor's attempts fail: no wait promised, as for `down` alone.
    alone = post(make_app(targets=("down",), sync_budget_ms=3000).test_client(), minimal_packet()).get_json()
    assert (body["status"], body["customer_message"], body["estimated_wait_seconds"]) == (
        "pending", alone["customer_message"], None)


def test_preview_alone_still_holds_the_handoff(make_app):
    body = post(make_app(targets=("preview",)).test_client(), minimal_packet()).get_json()
    assert body["status"] == "delivered" and "nobody" not in body["customer_message"]["text"]


def test_preview_beside_a_vendor_is_warned_about_at_check(make_app, vendors):
    said = make_app(targets=("preview", "broken")).extensions["connector"].warnings()
    assert ("CONNECTOR_TARGETS: preview beside broken reaches no agent: its ticket is not counted as anyone "
            "having a handoff (status, customer message, callbacks follow the vendors); remove preview to stop "
            "rendering every vendor's payload for each handoff") in said
    assert not any("preview beside" in line for line in make_app(targets=("preview",)).extensions["connector"]
                   .warnings())


def test_messages_are_refused_when_only_preview_is_left_of_a_handoff_to_a_vendor(make_app, vendors):
    # A review: the vendor's delivery dismissed, a batch went to preview alone and was answered
    # `delivered` beside the handoff's `failed` — no agent would ever see the messages.
    from connector import outbox

    app = make_app(targets=("preview", "broken"))
    client = app.test_client()
    handoff = post(client, minimal_packet()).get_json()
    outbox.dismiss(app.extensions["connector"].db, states=("failed",))
    response = client.post(f"/v1/handoffs/{handoff['id']}/messages", headers=auth(), content_type="application/json",
                           data=json.dumps({"messages": [{"at": "2026-11-20T10:05:00Z", "role": "customer",
                                                          "text": "Still there?"}]}))
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"messages": ["every target of the handoff was dismissed"]}
    # Preview alone (the quickstart) still takes messages.
    alone = make_app(targets=("preview",)).test_client()
    first = post(alone, minimal_packet()).get_json()
    assert alone.post(f"/v1/handoffs/{first['id']}/messages", headers=auth(), content_type="application/json",
                      data=json.dumps({"messages": [{"at": "2026-11-20T10:05:00Z", "role": "customer",
                                                     "text": "Still there?"}]})).status_code == 201
