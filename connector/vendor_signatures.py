"""Signature checks for inbound webhooks (Slack, Zendesk, bots signing with Standard Webhooks).

Pure functions over the raw body bytes, run before anything parses the body (in Flask: call
`request.get_data()` first, never `request.form` / `request.json`, so the bytes are the ones signed).
They fail closed: no secret, a missing or malformed header, a timestamp outside the window or no
matching digest all raise `SignatureError`, whose `reason` is one of `REASONS` so logs and metrics
can tell an attack from a clock skew from a forgotten secret. Nothing here logs, and no message
carries a secret, an expected digest or the received signature.

`now` is passed in (unix seconds) so tests run at a fixed time and the route decides the clock.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, get_args

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

WINDOW_S = 5 * 60  # every vendor here allows five minutes either way

Reason = Literal[
    "no_secret_configured",
    "missing_signature",
    "missing_timestamp",
    "missing_id",
    "malformed_signature",
    "malformed_timestamp",
    "malformed_body",
    "stale_timestamp",
    "future_timestamp",
    "mismatch",
    "callback_id",
    "body_on_read",
]
REASONS: frozenset[str] = frozenset(get_args(Reason))

# Unix seconds as the vendors send them: ASCII digits, no sign, no leading zero, no fraction.
# Bounded length so a hostile header cannot make int() expensive.
_UNIX_SECONDS = re.compile(r"[1-9][0-9]{0,11}", re.ASCII)
_SLACK_SIGNATURE = re.compile(r"v0=([0-9a-fA-F]{64})", re.ASCII)
_DIGEST_SIZE = hashlib.sha256().digest_size
_MAX_SIGNATURES = 16  # Standard Webhooks allows several; more than this is not a rotation


# Each signer's headers, by the part of a signed request they carry (as errors name them).
HEADERS = {
    "bot": {"id": "webhook-id", "timestamp": "webhook-timestamp", "signature": "webhook-signature"},
    "slack": {"timestamp": "X-Slack-Request-Timestamp", "signature": "X-Slack-Signature"},
    "zendesk": {"timestamp": "X-Zendesk-Webhook-Signature-Timestamp", "signature": "X-Zendesk-Webhook-Signature"},
}
# The part at fault for each refusal: a stale timestamp was reported against the signature header,
# and a developer looked at the signing code, not the clock. The body's own refusals are `(body)`,
# as a packet's are; the rest (a wrong or missing signature, no secret to check it with) the signature's.
_PART = {
    "missing_id": "id", "webhook_id_malformed": "id", "callback_id": "id",
    "missing_timestamp": "timestamp", "malformed_timestamp": "timestamp",
    "stale_timestamp": "timestamp", "future_timestamp": "timestamp",
}


def at_fault(signer: str, reason: str) -> str:
    """The header (or `(body)`) a refusal's `errors` names for `signer` (`bot`, `slack`, `zendesk`)."""
    if reason in ("malformed_body", "body_on_read"):
        return "(body)"
    headers = HEADERS[signer]
    return headers.get(_PART.get(reason, "signature"), headers["signature"])


class SignatureError(Exception):
    """A webhook was refused. `reason` is machine-readable; the message is safe to log."""

    def __init__(self, vendor: str, reason: Reason, detail: str):
        self.vendor = vendor
        self.reason = reason
        self.detail = detail
        super().__init__(f"{vendor} webhook refused ({reason}): {detail}")


def verify_slack(raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float) -> None:
    """Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:{timestamp}:{body}")>`."""
    keys = [secret.encode("utf-8") for secret in _configured("slack", secrets)]
    signature = _require(headers, "slack", "x-slack-signature", "missing_signature", "malformed_signature")
    timestamp = _require(headers, "slack", "x-slack-request-timestamp", "missing_timestamp", "malformed_timestamp")
    seconds = _unix_seconds("slack", timestamp)
    match = _SLACK_SIGNATURE.fullmatch(signature)
    if match is None:
        raise SignatureError("slack", "malformed_signature", "X-Slack-Signature is not 'v0=' and 64 hex digits")
    _check_window("slack", seconds, now)
    signed = b"v0:" + timestamp.encode("ascii") + b":" + raw_body
    _compare("slack", (_hmac(key, signed) for key in keys), [bytes.fromhex(match[1])])


def verify_zendesk(raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float) -> None:
    """Zendesk: `X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(secret, timestamp + body)),
    the timestamp being `X-Zendesk-Webhook-Signature-Timestamp` exactly as sent (ISO 8601)."""
    keys = [secret.encode("utf-8") for secret in _configured("zendesk", secrets)]
    signature = _require(
        headers, "zendesk", "x-zendesk-webhook-signature", "missing_signature", "malformed_signature"
    )
    timestamp = _require(
        headers, "zendesk", "x-zendesk-webhook-signature-timestamp", "missing_timestamp", "malformed_timestamp"
    )
    seconds = _iso_seconds(timestamp)
    received = _b64_digest(signature)
    if received is None:
        raise SignatureError("zendesk", "malformed_signature", "signature is not the base64 of a SHA-256 digest")
    _check_window("zendesk", seconds, now)
    signed = timestamp.encode("ascii") + raw_body
    _compare("zendesk", (_hmac(key, signed) for key in keys), [received])


def verify_standard_webhook(
    raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float
) -> None:
    """Standard Webhooks (contract §5): `webhook-signature: v1,<base64> [v1,<base64> …]` over
    `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the base64 part of `whsec_…`: one
    signer's secrets (`signed_by` for several)."""
    _standard_hooks(secrets)  # none usable: refused before any header is read
    signed_by(raw_body, headers, {"": secrets}, now)


def signed_by(raw_body: bytes, headers: Mapping[str, str], secrets_by_signer: Mapping[str, Sequence[str]],
              now: float) -> str:
    """The first signer (in order) one of whose secrets signed the request; `SignatureError` else.

    The `standardwebhooks` package decodes each secret (`usable_hooks`, `signing_key`); the digest
    is computed here, over the signed bytes built once: the package's `sign` builds them again per
    secret from text, and with each bot checked apart a 1 MiB body and forty secrets cost an
    unsigned request 52 ms of CPU. Its `verify()` is not used because it reads the wall clock
    itself (`datetime.now()`), which would make `now` impossible to inject, and it raises bare
    ValueError/binascii errors on malformed headers instead of one reason per failure.
    """
    msg_id = _require(headers, "bot", "webhook-id", "missing_id", "missing_id")
    timestamp = _require(headers, "bot", "webhook-timestamp", "missing_timestamp", "malformed_timestamp")
    header = _require(headers, "bot", "webhook-signature", "missing_signature", "malformed_signature")
    seconds = _unix_seconds("bot", timestamp)
    received = [
        digest
        for version, _, value in (entry.partition(",") for entry in header.split()[:_MAX_SIGNATURES])
        if version == "v1" and (digest := _b64_digest(value)) is not None
    ]
    if not received:
        raise SignatureError("bot", "malformed_signature", "webhook-signature holds no 'v1,<base64>' signature")
    _check_window("bot", seconds, now)
    try:
        raw_body.decode("utf-8")  # the scheme signs text; a packet is UTF-8 JSON
    except UnicodeDecodeError:
        raise SignatureError("bot", "malformed_body", "body is not UTF-8") from None
    signed = f"{msg_id}.{seconds}.".encode() + raw_body  # as `Webhook.sign` writes it
    configured = False
    for signer, secrets in secrets_by_signer.items():
        keys = [signing_key(secret) for secret in _usable_of(secrets)]
        configured = configured or bool(keys)
        try:
            _compare("bot", (_hmac(key, signed) for key in keys), received)
        except SignatureError:
            continue
        return signer
    if not configured:
        raise SignatureError("bot", "no_secret_configured", "no usable whsec_ secret is configured")
    raise SignatureError("bot", "mismatch", "no configured secret produces this signature")


def _usable_of(secrets: Sequence[str]) -> list[str]:
    try:
        return [secret for secret in _configured("bot", secrets) if usable_hooks([secret])]
    except SignatureError:  # this signer has none
        return []


def _configured(vendor: str, secrets: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too: each character would become a "secret". Refuse it.
    if isinstance(secrets, (str, bytes)):
        raise TypeError("secrets must be a sequence of strings, not a single string")
    usable = [secret for secret in secrets if isinstance(secret, str) and secret.strip()]
    if not usable:
        raise SignatureError(vendor, "no_secret_configured", "no signing secret is configured; refusing every request")
    return usable


def _standard_hooks(secrets: Sequence[str]) -> list[Webhook]:
    hooks = usable_hooks(_configured("bot", secrets))
    if not hooks:
        raise SignatureError("bot", "no_secret_configured", "no usable whsec_ secret is configured")
    return hooks


def usable_secret(secret: str) -> bool:
    """Whether a Standard Webhooks secret is `whsec_` (optional) and base64, nothing else, and not
    empty: settings refuse one that is not, naming CONNECTOR_BOT_SECRETS. Stricter than the library,
    whose decoding skips what is not base64 (`not-a-secret!` passed, as the key of its letters)."""
    body = secret.removeprefix("whsec_")
    try:  # padded here as the library pads (`==`): a secret written without its `=` is a whole one
        strict = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (ValueError, binascii.Error):
        return False
    return bool(strict) and bool(usable_hooks([secret]))


def signing_key(secret: str) -> bytes:
    """The key a Standard Webhooks secret signs with, decoded as the library decodes it: its
    `whsec_` is optional and base64 decoding skips what is not base64, so `whsec_<b64>` and `<b64>`
    are two texts and one key. Two bots must not share a *key* (settings compare these)."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_") + "==")
    except (ValueError, binascii.Error):  # not base64 at all: refused as unusable anyway
        return secret.encode()


def usable_hooks(secrets: Iterable[str]) -> list[Webhook]:
    """A signer per secret that decodes; the others are skipped. The settings refuse a bot secret
    that does not decode at start-up (`usable_secret`); skipping is what is left for a list that
    bypassed them."""
    hooks = []
    for secret in secrets:
        try:
            hooks.append(Webhook(secret))
        except (ValueError, EmptyWebhookSecretError):  # undecodable or empty after 'whsec_'
            continue
    return hooks


def _require(headers: Mapping[str, str], vendor: str, name: str, missing: Reason, malformed: Reason) -> str:
    """The one value of header `name` (matched case-insensitively), stripped."""
    values = {str(value).strip() for key, value in headers.items() if key.lower() == name}
    values.discard("")
    if not values:
        raise SignatureError(vendor, missing, f"header {name} is missing or empty")
    if len(values) > 1:  # e.g. {"X-Slack-Signature": a, "x-slack-signature": b}: which one was signed?
        raise SignatureError(vendor, malformed, f"header {name} is sent more than once with different values")
    return values.pop()


def _unix_seconds(vendor: str, value: str) -> int:
    if _UNIX_SECONDS.fullmatch(value) is None:
        raise SignatureError(vendor, "malformed_timestamp", "timestamp is not whole unix seconds")
    return int(value)


def _iso_seconds(value: str) -> float:
    try:
        parsed = dt.datetime.fromisoformat(value) if value.isascii() and len(value) <= 40 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:  # a time without offset is ambiguous: refuse
        raise SignatureError("zendesk", "malformed_timestamp", "timestamp is not ISO 8601 with a time zone")
    return parsed.timestamp()


def _b64_digest(value: str) -> bytes | None:
    try:
        digest = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    return digest if len(digest) == _DIGEST_SIZE else None


def _check_window(vendor: str, seconds: float, now: float) -> None:
    age = now - seconds
    if age > WINDOW_S:
        raise SignatureError(vendor, "stale_timestamp", f"signed {age:.0f} s ago; the window is {WINDOW_S} s")
    if -age > WINDOW_S:
        detail = f"signed {-age:.0f} s in the future; the window is {WINDOW_S} s"
        raise SignatureError(vendor, "future_timestamp", detail)


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _compare(vendor: str, expected: Iterable[bytes], received: Sequence[bytes]) -> None:
    # Every pair is compared (no early exit) so timing does not tell which secret matched.
    matched = False
    for digest in expected:
        for candidate in received:
            matched |= hmac.compare_digest(digest, candidate)
    if not matched:
        raise SignatureError(vendor, "mismatch", "no configured secret produces this signature")
