"""Nothing internal leaves: no traceback, secret or filesystem path in any error answer (body or
headers), and the JSON log — read at DEBUG, the most talkative level — carries ids, never the
packet, the customer's data or a credential."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import responses

from connector import jsonlog
from tests.conftest import ADMIN_TOKEN, BOT_KEY, OTHER_KEY, auth
from tests.factories import full_packet
from tests.fakes.zendesk import FakeZendesk

BOT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VENDOR_SECRETS = {
    "zendesk_api_token": "zd-token-leak-canary-0001",
    "salesforce_access_token": "sf-token-leak-canary-0002",
    "slack_bot_token": "xoxb-leak-canary-0003",
    "slack_signing_secret": "slack-signing-leak-canary-0004",
}
WEBHOOK_SECRET = "zendesk-webhook-leak-canary-0005"
SECRETS = (BOT_KEY, OTHER_KEY, ADMIN_TOKEN, BOT_SECRET, WEBHOOK_SECRET, *VENDOR_SECRETS.values())
INTERNALS = ("Traceback", "/work/main", "site-packages", 'File "')
SOURCE_FILE = re.compile(r"[\w/]+\.py\b")  # `connector/intake.py`, `/usr/lib/python3.11/json/decoder.py`
# What the customer said and who they are (from examples/handoff-full.json).
PII = ("Dana Whitfield", "dana.whitfield@example.com", "+1 415 555 0134", "cus_5521", "ACME-88213",
       "QuickBooks", "Business Pro", "OAuth token expired", "month-end close")
ZENDESK = {"targets": ("zendesk",), "zendesk_subdomain": "acme", "zendesk_email": "bot@acme.example"}


@pytest.fixture
def leaky_app(make_app):
    """Every credential set, so a leak of any of them would show."""
    return make_app(bot_secrets=(("support-bot", BOT_SECRET),), zendesk_webhook_secrets=(WEBHOOK_SECRET,),
                    log_level="DEBUG", **VENDOR_SECRETS)


class _Written(io.StringIO):
    """The buffer the handler writes to; reading it first waits for what was logged (the handler
    writes on a thread of its own)."""

    handler: logging.Handler

    def getvalue(self) -> str:
        self.handler.flush()
        return super().getvalue()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The connector's own JSON handler, pointed at a buffer (what an operator's log pipeline gets)."""
    root = logging.getLogger()
    level = root.level
    jsonlog.configure("DEBUG")  # installs the handler if no app has yet (idempotent)
    [handler] = [h for h in root.handlers if getattr(h, "_connector", False)]
    buffer = _Written()
    buffer.handler = handler
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)
        root.setLevel(level)


def assert_clean(response, *extra: str) -> None:
    text = response.get_data(as_text=True) + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for needle in (*SECRETS, *INTERNALS, *extra):
        assert needle not in text, (needle, response.status_code, text)
    assert not SOURCE_FILE.search(text), text
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json", response.status_code


def post(client, body, headers=None, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/v1/handoffs", data=data, headers=headers if headers is not None else auth(),
                       content_type=content_type)


def test_an_internal_error_answers_a_generic_500(leaky_app, monkeypatch, log_lines):
    # The exception message carries what a careless library might put there: a path and a secret.
    def explode(*_args, **_kwargs):
        raise RuntimeError(f"boom in /work/main/connector/intake.py with key {BOT_KEY}")

    monkeypatch.setattr("connector.api.handoffs.accept", explode)
    response = post(leaky_app.test_client(), full_packet())
    assert response.status_code == 500
    assert response.get_json()["type"].endswith("/internal-error")
    assert_clean(response, "boom", "RuntimeError")
    assert "unhandled error" in log_lines.getvalue()  # the operator gets the traceback instead


@pytest.mark.parametrize(("name", "send"), [
    ("malformed JSON", lambda c: post(c, b"{not json")),
    ("not UTF-8", lambda c: post(c, b"\xff\xfe{}")),
    ("wrong media type", lambda c: post(c, "x", content_type="text/plain")),
    ("no credentials", lambda c: post(c, full_packet(), headers={})),
    ("a wrong bearer key", lambda c: post(c, full_packet(), headers=auth(BOT_KEY[:-1] + "X"))),
    ("a bot key on the admin surface", lambda c: c.get("/v1/deliveries", headers=auth(BOT_KEY))),
    ("a forged signature", lambda c: post(c, full_packet(), headers={
        "webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"})),
    ("another bot's packet", lambda c: post(c, full_packet(), headers=auth(OTHER_KEY))),
    ("an invalid packet", lambda c: post(c, {**full_packet(), "customer": {"name": "Dana Whitfield"}})),
    ("an unknown handoff", lambda c: c.get("/v1/handoffs/hnd_nope", headers=auth())),
    ("an unknown path", lambda c: c.get("/v1/../../etc/passwd")),
    ("a wrong method", lambda c: c.delete("/v1/handoffs")),
    ("a body over the limit", lambda c: post(c, b"[" * (2 * 1024 * 1024))),
    ("a forged Zendesk event", lambda c: c.post("/webhooks/zendesk", data=b'{"type": "x"}', headers={
        "X-Zendesk-Webhook-Signature": "AAAA", "X-Zendesk-Webhook-Signature-Timestamp": "2026-11-21T12:00:00Z"})),
    ("an unsigned Zendesk event", lambda c: c.post("/webhooks/zendesk", json={"type": "x"})),
])
def test_error_answers_hold_no_secret_trace_or_path(leaky_app, name, send):
    response = send(leaky_app.test_client())
    assert response.status_code >= 400, name
    assert_clean(response)


def test_logs_of_a_whole_handoff_carry_ids_not_the_packet(leaky_app, log_lines):
    client = leaky_app.test_client()
    # On WhatsApp or SMS the conversation's id is the customer's phone number: a review found it in
    # every handoff's "handoff accepted" line.
    packet = full_packet(conversation={**full_packet()["conversation"], "id": "whatsapp:+14155550132"})
    created = post(client, packet, headers={**auth(), "Idempotency-Key": "leak-1"})
    assert created.status_code == 201
    post(client, packet, headers={**auth(), "Idempotency-Key": "leak-1"})  # the replay path
    client.get(created.get_json()["links"]["self"], headers=auth())
    logged = log_lines.getvalue()
    assert created.get_json()["id"] in logged and "handoff accepted" in logged
    for needle in (*SECRETS, *PII, "4155550132"):
        assert needle not in logged, needle


def test_logs_of_refusals_carry_no_packet_or_credential(leaky_app, log_lines):
    client = leaky_app.test_client()
    invalid = {**full_packet(), "transcript": [{"at": "yesterday", "role": "customer", "text": "Dana Whitfield"}]}
    assert post(client, invalid).status_code == 422
    assert post(client, full_packet(), headers=auth(BOT_KEY[:-1] + "X")).status_code == 401
    assert post(client, full_packet(), headers={"webhook-id": "msg_1", "webhook-timestamp": "1",
                                                "webhook-signature": "v1,AAAA"}).status_code == 401
    logged = log_lines.getvalue()
    assert "bot signature refused" in logged  # refusals are visible to the operator…
    for needle in (*SECRETS, *PII, BOT_KEY[:-1]):  # …without what was sent
        assert needle not in logged, needle


# Vendors echo the values they refused: `Outbox._record_error` keeps that text in
# `deliveries.last_error` and logs only the error's kind and status.
def test_logs_of_a_vendor_refusal_carry_no_pii(make_app, log_lines):
    app = make_app(log_level="DEBUG", zendesk_api_token=VENDOR_SECRETS["zendesk_api_token"], **ZENDESK)
    # Vendors echo what they refused; Zendesk's 422 names the requester's address.
    refusal = {"error": "RecordInvalid", "description": "Record validation errors", "details": {
        "requester": [{"description": "Requester: Email dana.whitfield@example.com is not properly formatted",
                       "error": "InvalidValue"}]}}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        zd = FakeZendesk(rsps)
        zd.search(results=[])
        zd.error("POST", "/api/v2/tickets.json", 422, refusal)
        body = post(app.test_client(), full_packet()).get_json()
    assert body["tickets"][0]["status"] == "failed"
    logged = log_lines.getvalue()
    assert body["id"] in logged
    for needle in (*SECRETS, *PII):
        assert needle not in logged, needle
