"""Bots signing with Standard Webhooks (contract §5): every failure refused with its reason, rotation,
and a replayed message answered from the stored result — never acted on twice."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from connector.models import Handoff
from tests.factories import minimal_packet

OLD = "whsec_" + base64.b64encode(b"old-secret-for-support-bot-0001").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-for-support-bot-0002").decode()
OTHER = "whsec_" + base64.b64encode(b"secret-of-the-other-bot-000003").decode()


@pytest.fixture
def signed_app(make_app):
    return make_app(bot_keys=(), bot_secrets=(("support-bot", OLD), ("support-bot", NEW), ("other-bot", OTHER)))


def signed(body: bytes, secret: str = NEW, msg_id: str = "msg_1", at: float | None = None) -> dict[str, str]:
    stamp = dt.datetime.fromtimestamp(int(at if at is not None else time.time()), tz=dt.UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, stamp, body.decode())}


def post(client, body: bytes, headers: dict[str, str]):
    return client.post("/v1/handoffs", data=body, headers=headers, content_type="application/json")


BODY = json.dumps(minimal_packet()).encode()


def test_a_correctly_signed_request_is_accepted_with_either_rotated_secret(signed_app):
    client = signed_app.test_client()
    assert post(client, BODY, signed(BODY, NEW, "msg_new")).status_code == 201
    other = json.dumps(minimal_packet(conversation={"id": "conv-2"})).encode()
    assert post(client, other, signed(other, OLD, "msg_old")).status_code == 201


@pytest.mark.parametrize(("mutate", "header", "reason"), [
    (lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, "webhook-signature", "missing_signature"),
    (lambda h: {k: v for k, v in h.items() if k != "webhook-timestamp"}, "webhook-timestamp", "missing_timestamp"),
    (lambda h: {k: v for k, v in h.items() if k != "webhook-id"}, "webhook-id", "missing_id"),
    (lambda h: {**h, "webhook-signature": "v1,not base64!"}, "webhook-signature", "malformed_signature"),
    (lambda h: {**h, "webhook-timestamp": "yesterday"}, "webhook-timestamp", "malformed_timestamp"),
    (lambda h: {**h, "webhook-id": "msg with spaces"}, "webhook-id", "webhook_id_malformed"),
    (lambda h: {**h, "webhook-signature": signed(BODY, "whsec_" + base64.b64encode(b"x" * 24).decode())["webhook-signature"]},
     "webhook-signature", "mismatch"),
])
def test_each_signature_failure_is_refused_with_its_reason_at_the_header_at_fault(signed_app, mutate, header, reason):
    # The contract's `errors` maps the field at fault: every refusal was filed under webhook-signature,
    # so a bot with a bad clock or id went looking at its signing code.
    response = post(signed_app.test_client(), BODY, mutate(signed(BODY)))
    assert response.status_code == 401
    assert response.get_json()["errors"] == {header: [reason]}
    if reason == "webhook_id_malformed":  # the rule, as an Idempotency-Key's refusal says it
        assert "webhook-id must be 1 to 200 visible ASCII characters" in response.get_json()["detail"]


def test_a_signed_body_that_is_not_utf8_is_refused_as_the_bodys_fault(signed_app):
    body, headers = b'{"a": "\xff"}', signed(b"")
    key = base64.b64decode(NEW.removeprefix("whsec_"))
    digest = hmac.new(key, f"msg_1.{headers['webhook-timestamp']}.".encode() + body, hashlib.sha256).digest()
    headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode()
    response = post(signed_app.test_client(), body, headers)
    assert response.status_code == 401
    assert response.get_json()["errors"] == {"(body)": ["malformed_body"]}


def test_stale_and_future_timestamps_are_refused(signed_app):
    client = signed_app.test_client()
    stale = post(client, BODY, signed(BODY, at=time.time() - 6 * 60))
    future = post(client, BODY, signed(BODY, at=time.time() + 6 * 60))
    assert stale.get_json()["errors"] == {"webhook-timestamp": ["stale_timestamp"]}
    assert future.get_json()["errors"] == {"webhook-timestamp": ["future_timestamp"]}
    # What a developer needs to fix a drifting clock: how far off, the window, and our clock.
    for refused, said in ((stale, "ago"), (future, "in the future")):
        detail = refused.get_json()["detail"]
        assert f" s {said}; the window is 300 s; the connector's clock reads 20" in detail, detail


def test_a_timestamp_in_milliseconds_is_told_as_such(signed_app):
    # Date.now() gave "signature refused (malformed_timestamp)" and nothing more (a review).
    headers = {**signed(BODY), "webhook-timestamp": str(int(time.time() * 1000))}
    detail = post(signed_app.test_client(), BODY, headers).get_json()["detail"]
    assert detail.endswith("(malformed_timestamp): timestamp is not whole unix seconds (this one reads as milliseconds)."), \
        detail
    detail = post(signed_app.test_client(), BODY, {**signed(BODY), "webhook-timestamp": "yesterday"}).get_json()["detail"]
    assert detail.endswith("(malformed_timestamp): timestamp is not whole unix seconds."), detail


def test_a_bearer_key_beside_a_relays_webhook_id_is_told_why_it_was_not_read(make_app):
    # A relay added `webhook-id`: the valid key was ignored and the bot read "signature refused
    # (missing_timestamp)" without a word about its key.
    from tests.conftest import auth

    client = make_app().test_client()
    response = post(client, BODY, {**auth(), "webhook-id": "msg_relay"})
    assert response.status_code == 401
    detail = response.get_json()["detail"]
    assert "its Authorization header was not read" in detail and "without webhook-id" in detail
    assert "Authorization header" not in post(client, BODY, signed(BODY)).get_json()["detail"]  # no key sent


def test_a_tampered_body_is_refused(signed_app):
    headers = signed(BODY)
    tampered = BODY.replace(b"Can I talk", b"Wire me $9k")
    assert post(signed_app.test_client(), tampered, headers).status_code == 401


def test_another_bots_secret_cannot_sign_for_this_bot(signed_app):
    response = post(signed_app.test_client(), BODY, signed(BODY, OTHER))
    assert response.status_code == 403  # authenticated as other-bot; the packet says support-bot


def test_a_replayed_message_is_answered_from_the_stored_result(signed_app):
    client = signed_app.test_client()
    headers = signed(BODY, msg_id="msg_replay")
    first = post(client, BODY, headers)
    again = post(client, BODY, {**headers, "Idempotency-Key": "a-new-key"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_data() == first.get_data()
    with signed_app.extensions["connector"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(Handoff)) == 1


def test_a_webhook_id_reused_with_another_body_is_the_409s_named_header(signed_app):
    # It named an Idempotency-Key the bot never sent: the bot would look in the wrong place.
    client = signed_app.test_client()
    assert post(client, BODY, signed(BODY, msg_id="msg_same")).status_code == 201
    other = json.dumps(minimal_packet(conversation={"id": "another-conversation"})).encode()
    response = post(client, other, signed(other, msg_id="msg_same"))
    assert response.status_code == 409
    assert response.get_json()["errors"] == {"webhook-id": ["reused with another body"]}


def test_an_idempotency_key_reused_with_another_body_is_still_named_as_such(signed_app):
    client = signed_app.test_client()
    assert post(client, BODY, {**signed(BODY, msg_id="msg_a"), "Idempotency-Key": "k-1"}).status_code == 201
    other = json.dumps(minimal_packet(conversation={"id": "another-conversation"})).encode()
    response = post(client, other, {**signed(other, msg_id="msg_b"), "Idempotency-Key": "k-1"})
    assert response.status_code == 409
    assert response.get_json()["errors"] == {"Idempotency-Key": ["reused with another body"]}


def test_a_signature_is_checked_even_in_unauthenticated_development_mode(make_app):
    client = make_app(bot_keys=(), bot_secrets=(("support-bot", NEW),), allow_unauthenticated=True).test_client()
    assert post(client, BODY, {**signed(BODY), "webhook-signature": "v1,AAAA"}).status_code == 401
    assert post(client, BODY, {}).status_code == 201


def test_signed_reads_work_too(signed_app):
    client = signed_app.test_client()
    created = post(client, BODY, signed(BODY, msg_id="m-read")).get_json()
    path = f"/v1/handoffs/{created['id']}"
    assert client.get(path, headers=signed(b"", msg_id="m-get")).status_code == 200
