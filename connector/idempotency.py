"""Which requests are "the same handoff" (contract §4)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import MalformedRequest

# An id a caller chooses and we store (String(200)): an `Idempotency-Key`, a signed request's `webhook-id`.
CALLER_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
CALLER_ID_RULE = "must be 1 to 200 visible ASCII characters"
# An `Idempotency-Key` is one without a comma: a header sent twice (a proxy's or an SDK's retry
# adding it again) reaches us as its values joined by commas — `a1,a1` under gunicorn, a new key
# that made a second handoff when the retry sent `a1` alone (a review).
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x2b\x2d-\x7e]{1,200}$")
KEY_RULE = f"{CALLER_ID_RULE}, no comma, sent once"


def packet_hash(packet: Mapping[str, Any]) -> str:
    """A hash of the packet's meaning: key order and whitespace do not matter."""
    canonical = json.dumps(packet, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def key_for(header: str | None, digest: str) -> str:
    """The `Idempotency-Key` header, or — when absent — the packet hash (scoped to the bot by the caller)."""
    if header is None:
        return f"sha256:{digest}"
    if not IDEMPOTENCY_KEY.match(header):
        raise MalformedRequest(f"Idempotency-Key {KEY_RULE} (a header sent twice arrives joined by commas).",
                               errors={"Idempotency-Key": [KEY_RULE]})
    return header
