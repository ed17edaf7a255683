"""JSON text the connector writes on the bot's path: the database's JSON columns (the packet, the
assignment, receipts, vendor replies), the bodies sent to Zendesk and the API's answers (Flask's
`jsonify`, through `JSONProvider`).

orjson encodes the sample packet in ~3 µs where the standard library takes ~43 µs, and both
happen between a bot's request and its answer. What orjson refuses is written by the standard
library as before (SQLAlchemy's and requests' default): integers beyond 64 bits, non-string keys,
lone surrogates (escaped), and — passed through on purpose — datetimes, dataclasses and
subclasses of str, int, dict and list, which orjson would otherwise encode where the standard
library refuses them or encodes them its own way. Differences that remain: orjson writes NaN and
the infinities as null, where the standard library writes the non-JSON `NaN`/`Infinity` (which
PostgreSQL refuses) — a packet cannot hold them, intake refuses them (`json_body.parse_json`); and it
encodes `uuid.UUID` and plain `enum.Enum` values, which the standard library refuses (nothing here
passes those).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

_LIKE_THE_STANDARD_LIBRARY = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                              | orjson.OPT_PASSTHROUGH_SUBCLASS)


def dumps_bytes(value: Any) -> bytes:
    """UTF-8 JSON, compact."""
    try:
        return orjson.dumps(value, option=_LIKE_THE_STANDARD_LIBRARY)
    except orjson.JSONEncodeError:  # every type orjson does not encode itself, and its limits
        pass
    # As compact as orjson's, non-ASCII as UTF-8: a packet holding a number past 64 bits was measured
    # with every CJK character as a 6-byte escape and spaces after separators, twice its size, and
    # its `/messages` refused as over CONNECTOR_MAX_BODY_BYTES (a review).
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (a vendor's reply): escaped, as UTF-8 cannot hold it
        return json.dumps(value, separators=(",", ":")).encode("utf-8")


def dumps(value: Any) -> str:
    """JSON text for a JSON column (SQLAlchemy's `json_serializer`)."""
    return dumps_bytes(value).decode("utf-8")


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, encoded by orjson for the compact answers of production (`jsonify` and
    `response()` out of debug mode: 9 µs warm for a handoff's answer with the standard library,
    0.6 µs with orjson), keys in insertion order, non-ASCII as UTF-8 (the app turns Flask's sorting
    and escaping off). Every other call — no options (Flask's default `", "` and `": "` separators:
    the test client's bodies, `tojson`), debug mode's indentation, sorted keys, escaping — and
    whatever orjson refuses goes to Flask's own, with its `default` for dates, decimals and UUIDs.
    On the compact path orjson differs from the standard library as `dumps_bytes` does: NaN and the
    infinities as null (no answer carries them), exponents as `1e-7` rather than `1e-07` (the same
    number), and plain `enum.Enum` values encoded where Flask refuses them (no answer holds one)."""

    _COMPACT = {"separators": (",", ":")}

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs == self._COMPACT and not self.sort_keys and not self.ensure_ascii:
            try:
                return orjson.dumps(obj, option=_LIKE_THE_STANDARD_LIBRARY).decode("utf-8")
            except orjson.JSONEncodeError:
                pass
        return super().dumps(obj, **kwargs)
