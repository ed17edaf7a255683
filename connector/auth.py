"""Who is calling: a bot (Standard Webhooks signature or bearer key) or an admin (admin token).

A signed request (`webhook-signature` present) is checked against every bot's secrets — several per
bot during a rotation — over the raw body, in a five-minute window (`connector.vendor_signatures`).
Bearer comparisons are constant-time and every configured key is checked, so timing reveals neither
which bot nor how much of a key matched. No credentials configured → refused, unless the explicit
development switch `CONNECTOR_ALLOW_UNAUTHENTICATED=1` is on. A signature that is present but wrong
is refused even in that mode: it is a bot that is misconfigured or an attacker, never a developer.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import time
from dataclasses import dataclass
from typing import NoReturn

from flask import Request

from . import callbacks
from .errors import Forbidden, Unauthenticated
from .idempotency import CALLER_ID, CALLER_ID_RULE
from .settings import Settings
from .vendor_signatures import SignatureError, at_fault, signed_by

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    bot_id: str | None  # None: unauthenticated development mode, any bot
    method: str  # "signature", "bearer" or "unauthenticated"
    message_id: str | None = None  # the signed request's webhook-id: a replay is answered, not acted on


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("The Authorization header must be 'Bearer <key>'.")
    return token.strip()


def _signed(request: Request, settings: Settings, now: float) -> Caller:
    # Refused before any signature is checked. A read carries no body: one with a body is another
    # message's signature put to use (a callback's, above) to read every handoff of the bot.
    # The connector signs its status callbacks with the bot's own secrets, in the same scheme: one
    # replayed to us by anyone who saw it (a logging proxy, a relay) would pass the signature check.
    if callbacks.MESSAGE_ID.fullmatch(request.headers.get("webhook-id", "").strip()):
        return _refused("callback_id")
    if request.method in ("GET", "HEAD") and request.get_data():
        return _refused("body_on_read")
    # Stored with the handoff it made (replays are answered from it): one longer than its column
    # failed on PostgreSQL as a 500, after a valid signature.
    message_id = request.headers.get("webhook-id")
    if message_id is not None and not CALLER_ID.match(message_id):
        # The rule said, as an Idempotency-Key's is: the reason alone left a bot guessing (a review).
        return _refused("webhook_id_malformed", f": webhook-id {CALLER_ID_RULE}")
    by_bot: dict[str, list[str]] = {}
    for bot_id, secret in settings.bot_secrets:
        by_bot.setdefault(bot_id, []).append(secret)
    try:  # a header or clock problem is the same for every bot, and says more than "no bot matched"
        bot_id = signed_by(request.get_data(), request.headers, by_bot, now)
    except SignatureError as err:
        said = ""
        if err.reason in ("stale_timestamp", "future_timestamp"):  # what a developer needs to fix a clock
            clock = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            said = f": {err.detail}; the connector's clock reads {clock}"
        elif err.reason == "malformed_timestamp":  # JavaScript's Date.now() is in milliseconds: the usual slip
            stamp = request.headers.get("webhook-timestamp", "").strip()
            said = f": {err.detail}" + (" (this one reads as milliseconds)" if stamp.isdigit() and len(stamp) >= 13
                                        else "")
        if "webhook-signature" not in request.headers and request.headers.get("Authorization"):
            # A relay that adds `webhook-id` made a bearer-key request a signed one, refused as unsigned.
            said += ("; a webhook-id header makes this a signed request, so its Authorization header was not "
                     "read — send the bearer key without webhook-id and webhook-timestamp")
        return _refused(err.reason, said)
    return Caller(bot_id=bot_id, method="signature", message_id=request.headers.get("webhook-id"))


def _refused(reason: str, said: str = "") -> NoReturn:
    log.warning("bot signature refused", extra={"reason": reason})
    raise Unauthenticated(f"The request signature was refused ({reason}){said}.",
                          errors={at_fault("bot", reason): [reason]})


def authenticate_bot(request: Request, settings: Settings, now: float | None = None) -> Caller:
    if not settings.bot_keys and not settings.bot_secrets and not settings.allow_unauthenticated:
        raise Unauthenticated(
            "No bot credentials are configured on this connector (CONNECTOR_BOT_KEYS or CONNECTOR_BOT_SECRETS), "
            "so every request is refused."
        )
    if "webhook-signature" in request.headers or "webhook-id" in request.headers:
        return _signed(request, settings, time.time() if now is None else now)
    token = _bearer(request)
    if token is not None:
        matched = None
        for bot_id, key in settings.bot_keys:
            if hmac.compare_digest(token.encode(), key.encode()):
                matched = bot_id
        if matched is None:
            raise Unauthenticated("The bearer key is not valid for any bot.")
        return Caller(bot_id=matched, method="bearer")
    if settings.allow_unauthenticated:
        return Caller(bot_id=None, method="unauthenticated")
    raise Unauthenticated(
        "Missing credentials: sign the request (Standard Webhooks) or send 'Authorization: Bearer <key>'."
    )


def check_bot(caller: Caller, bot_id: str) -> None:
    """A bot may act only as itself."""
    if caller.bot_id is not None and caller.bot_id != bot_id:
        raise Forbidden(f"bot.id {bot_id!r} does not match the authenticated bot.", errors={"bot.id": ["not yours"]})


def authenticate_admin(request: Request, settings: Settings) -> None:
    if not settings.admin_token:
        raise Unauthenticated("The admin surface is off: set CONNECTOR_ADMIN_TOKEN to use it.")
    _require_token(request, settings.admin_token, "CONNECTOR_ADMIN_TOKEN", "admin token")


def authenticate_scraper(request: Request, settings: Settings) -> None:
    """`/metrics`: open like `/readyz` unless CONNECTOR_METRICS_TOKEN is set (a scraper's own token,
    so it never holds the admin's, which can replay deliveries)."""
    if settings.metrics_token:
        _require_token(request, settings.metrics_token, "CONNECTOR_METRICS_TOKEN", "metrics token")


def _require_token(request: Request, expected: str, variable: str, what: str) -> None:
    token = _bearer(request)
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthenticated(f"A valid {what} is required (Authorization: Bearer <{variable}>).")
