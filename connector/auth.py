"""Who is calling: a bot (bearer key) or an admin (admin token).

Comparisons are constant-time and every configured key is checked, so timing reveals neither
which bot nor how much of a key matched. No credentials configured → refused, unless the explicit
development switch `CONNECTOR_ALLOW_UNAUTHENTICATED=1` is on.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask import Request

from .errors import Forbidden, Unauthenticated
from .settings import Settings


@dataclass(frozen=True)
class Caller:
    bot_id: str | None  # None: unauthenticated development mode, any bot
    method: str


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("The Authorization header must be 'Bearer <key>'.")
    return token.strip()


def authenticate_bot(request: Request, settings: Settings) -> Caller:
    token = _bearer(request)
    if not settings.bot_keys and not settings.bot_secrets and not settings.allow_unauthenticated:
        raise Unauthenticated(
            "No bot credentials are configured on this connector (CONNECTOR_BOT_KEYS), so every request is refused."
        )
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
    raise Unauthenticated("Missing credentials: send 'Authorization: Bearer <key>'.")


def check_bot(caller: Caller, bot_id: str) -> None:
    """A bot may act only as itself."""
    if caller.bot_id is not None and caller.bot_id != bot_id:
        raise Forbidden(f"bot.id {bot_id!r} does not match the authenticated bot.", errors={"bot.id": ["not yours"]})


def authenticate_admin(request: Request, settings: Settings) -> None:
    if not settings.admin_token:
        raise Unauthenticated("The admin surface is off: set CONNECTOR_ADMIN_TOKEN to use it.")
    token = _bearer(request)
    if token is None or not hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        raise Unauthenticated("A valid admin token is required (Authorization: Bearer <CONNECTOR_ADMIN_TOKEN>).")
