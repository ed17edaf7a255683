"""A signature is a credential for what it signed: the connector's own status callbacks, signed
with the bot's secrets in the same scheme, must not open the bot's handoffs when replayed to us."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import auth
from tests.factories import full_packet, minimal_packet
from tests.fakes.bot import FakeBot
from tests.test_callbacks import SECRET_A, TWO_SECRETS, send_due


def _post(app, packet, key):
    response = app.test_client().post("/v1/handoffs", data=json.dumps(packet), content_type="application/json",
                                      headers={**auth(), "Idempotency-Key": key})
    assert response.status_code in (201, 202), response.get_json()
    return response.get_json()["id"]


def _signed(msg_id: str, body: str, secret: str = SECRET_A) -> dict[str, str]:
    stamp = dt.datetime.fromtimestamp(int(time.time()), tz=dt.UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, stamp, body)}


def test_a_status_callback_replayed_to_the_connector_reads_nothing(make_app):
    # Anyone who saw one callback (a logging proxy, a relay) could send its headers and body as a
    # GET and read every handoff of the bot for five minutes: packets, briefs, transcripts.
    app = make_app(bot_secrets=TWO_SECRETS, callback_allow_private=True)
    with FakeBot() as bot:
        _post(app, full_packet(callback={"url": bot.url, "events": ["queued"]}), "k-cb")
        other = _post(app, minimal_packet(conversation={"id": "conv-secret"}), "k-other")
        assert send_due(app) == 1
        [callback] = bot.requests
    replayed = {k: callback.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    client = app.test_client()
    for path in (f"/v1/handoffs/{other}", "/v1/handoffs?conversation_id=conv-secret"):
        response = client.open(path, method="GET", data=callback.body, headers=replayed)
        assert response.status_code == 401, response.get_json()
        assert response.get_json()["errors"] == {"webhook-id": ["callback_id"]}


def test_a_signed_read_with_a_body_is_refused(make_app):
    app = make_app(bot_secrets=TWO_SECRETS)
    hid = _post(app, minimal_packet(), "k-1")
    body = json.dumps({"state": "delivered"})
    response = app.test_client().open(f"/v1/handoffs/{hid}", method="GET", data=body,
                                      headers=_signed("msg_1", body))
    assert response.status_code == 401
    assert response.get_json()["errors"] == {"(body)": ["body_on_read"]}


def test_a_signed_read_as_a_bot_makes_it_still_works(make_app):
    app = make_app(bot_secrets=TWO_SECRETS)
    hid = _post(app, minimal_packet(), "k-1")
    assert app.test_client().get(f"/v1/handoffs/{hid}", headers=_signed("msg_read_1", "")).status_code == 200


@pytest.mark.parametrize("msg_id", ["m" * 201, "msg with spaces", "msg_\u00e9"])
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_webhook_id_the_connector_cannot_store_is_refused_before_anything_is_made(make_app, request, db, msg_id):
    # 201 characters, validly signed: stored with the handoff in a String(200), PostgreSQL's refusal
    # was a 500 (a traceback in the log) after the signature had passed.
    url = request.getfixturevalue("postgres_url") if db == "postgres" else None
    app = make_app(bot_secrets=TWO_SECRETS, **({"database_url": url} if url else {}))
    body = json.dumps(minimal_packet())
    response = app.test_client().post("/v1/handoffs", data=body, content_type="application/json",
                                      headers=_signed(msg_id, body))
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["errors"] == {"webhook-id": ["webhook_id_malformed"]}
