"""`POST /v1/handoffs/{id}/messages` warns of what the handoff endpoint warns of for its transcript:
keys that look misspelt, and messages out of order — here also messages older than what the ticket
already has, which the agent's note would announce as written while the customer waited."""

from __future__ import annotations

import json

from tests.conftest import auth
from tests.factories import minimal_packet

# The minimal packet's one message is at 10:00.


def _handoff(client) -> str:
    response = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                           content_type="application/json")
    assert response.status_code in (201, 202)
    return response.get_json()["id"]


def _send(client, handoff_id, messages, **headers):
    return client.post(f"/v1/handoffs/{handoff_id}/messages", data=json.dumps({"messages": messages}),
                       headers={**auth(), **headers}, content_type="application/json")


def _said(at: str, text: str = "Still there?", **more) -> dict:
    return {"at": at, "role": "customer", "text": text, **more}


def test_a_misspelt_key_in_a_message_is_named_as_in_a_handoff(client):
    handoff_id = _handoff(client)

    response = _send(client, handoff_id, [_said("2026-11-20T10:05:00Z", atachments=[{"url": "https://x.example/a.png"}])])

    assert response.status_code in (201, 202)
    assert response.get_json()["warnings"] == [
        "messages.*.atachments: not a field the connector reads — did you mean messages.*.attachments? "
        "It is kept with the packet, but nothing acts on it"]


def test_messages_older_than_the_handoffs_last_message_are_said_and_the_replay_says_the_same(client):
    handoff_id = _handoff(client)
    late = [_said("2026-11-20T09:00:00Z")]

    first = _send(client, handoff_id, late, **{"Idempotency-Key": "late-1"})
    _send(client, handoff_id, [_said("2026-11-20T10:30:00Z", "A later batch")])  # after it: changes no replay
    again = _send(client, handoff_id, late, **{"Idempotency-Key": "late-1"})

    assert first.get_json()["warnings"] == [
        "messages.0.at: 2026-11-20T09:00:00Z is earlier than the latest message the handoff already has "
        "(2026-11-20T10:00:00Z); messages should be what was said since, and are shown after it as sent"]
    assert again.status_code == 200 and again.get_json() == first.get_json()


def test_messages_older_than_an_earlier_batch_are_said(client):
    handoff_id = _handoff(client)
    _send(client, handoff_id, [_said("2026-11-20T10:30:00Z")])

    response = _send(client, handoff_id, [_said("2026-11-20T10:10:00Z", "Forgot to say")])

    assert response.get_json()["warnings"] == [
        "messages.0.at: 2026-11-20T10:10:00Z is earlier than the latest message the handoff already has "
        "(2026-11-20T10:30:00Z); messages should be what was said since, and are shown after it as sent"]


def test_messages_out_of_order_among_themselves_are_said(client):
    handoff_id = _handoff(client)

    response = _send(client, handoff_id, [_said("2026-11-20T10:20:00Z"), _said("2026-11-20T10:05:00Z")])

    assert response.get_json()["warnings"] == [
        "messages.1.at: 2026-11-20T10:05:00Z is earlier than messages.0.at (2026-11-20T10:20:00Z); "
        "messages should be oldest first and are shown as sent"]


def test_messages_in_order_after_the_handoff_get_no_warnings(client):
    handoff_id = _handoff(client)

    # 20 s before the handoff's last message: another clock, within the tolerance the transcript has.
    response = _send(client, handoff_id, [_said("2026-11-20T09:59:40Z"), _said("2026-11-20T10:01:00Z")])

    assert response.status_code in (201, 202) and "warnings" not in response.get_json()
