"""Which requests are "the same handoff" (contract §4)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from decimal import Decimal
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


# How json.dumps writes a float with no fraction (`49.0`, `1e+20`): maybe one in a packet, maybe
# only a string's words — the fast test before the walk that writes them as whole numbers.
_WHOLE_FLOAT = re.compile(r"\d(?:\.0|e\+\d+)[,}\]]")


def _whole_float_in(canonical: str) -> bool:
    """Whether `canonical` may write a whole-valued float (`_WHOLE_FLOAT`). The substring tests
    come first: the pattern tries every digit of the text, 19 µs of the sample packet's 40 µs hash,
    and nearly no packet holds any of these."""
    return ("e+" in canonical or ".0," in canonical or ".0}" in canonical or ".0]" in canonical) \
        and _WHOLE_FLOAT.search(canonical) is not None


def packet_hash(packet: Mapping[str, Any]) -> str:
    """A hash of the packet's meaning: key order, whitespace and how a number is written do not
    matter. The free-form values (`collected_data`, `metadata`, attributes) keep the number the bot
    wrote: a retry re-serialised on its way (a JavaScript or Go relay writing `49.0` as `49`) was
    a new handoff without a key, and a 409 telling the bot to use a new key with one (a review).
    A packet with no whole-valued float hashes as it did before."""
    canonical = _dumped(packet)
    if _whole_float_in(canonical):
        canonical = _dumped(_whole_numbers(packet))
    return _sha256(canonical)


def earlier_hash(packet: Mapping[str, Any]) -> str | None:
    """The hash a release before `packet_hash` wrote whole numbers one way gave this packet, when it
    differs (a whole-valued float in it: `sentiment.score: 0.0`): a retry across the upgrade is the
    handoff that release stored, not a 409 or a second handoff (a review)."""
    canonical = _dumped(packet)
    return _sha256(canonical) if _whole_float_in(canonical) and packet_hash(packet) != _sha256(canonical) else None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _dumped(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _whole_numbers(value: Any) -> Any:
    """`value` with each float that is a whole number written as an int (`49.0` → `49`); past 2**53
    as its shortest digits, as JavaScript writes them (`1.2345678901234567e19` → 12345678901234567000,
    where `int()` gives the double's exact 12345678901234567168)."""
    if isinstance(value, float):
        if not value.is_integer():
            return value
        return int(value) if abs(value) < 2**53 else int(Decimal(repr(value)))
    if isinstance(value, Mapping):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def key_for(header: str | None, digest: str) -> str:
    """The `Idempotency-Key` header, or — when absent — the packet hash (scoped to the bot by the caller)."""
    if header is None:
        return f"sha256:{digest}"
    if not IDEMPOTENCY_KEY.match(header):
        raise MalformedRequest(f"Idempotency-Key {KEY_RULE} (a header sent twice arrives joined by commas).",
                               errors={"Idempotency-Key": [KEY_RULE]})
    return header
