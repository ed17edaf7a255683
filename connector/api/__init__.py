"""HTTP blueprints. Views stay thin: parse, call the domain, serialize."""

from __future__ import annotations

import re

from flask import request

from ..errors import ValidationFailed

# A query's whole number as clients write one: ASCII digits. int() also reads "１０" (fullwidth),
# "٣" (Arabic-Indic), " 10", "+10" and "1_0", and str.isdigit() lets "²" through to an int() that
# refuses it (a 500). Bounded: a limit is never longer.
_WHOLE = re.compile(r"[0-9]{1,6}")


def query_limit(default: int, most: int) -> int:
    """`?limit=`: a whole number from 1 to `most`, `default` when left out; else 422 naming it."""
    raw = request.args.get("limit", str(default))
    if not _WHOLE.fullmatch(raw) or not 1 <= int(raw) <= most:
        raise ValidationFailed(f"limit must be a whole number from 1 to {most}.", errors={"limit": [f"1 to {most}"]})
    return int(raw)
