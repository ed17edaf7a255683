"""HTTP blueprints. Views stay thin: parse, call the domain, serialize."""

from __future__ import annotations

import re

from flask import request

from ..errors import ValidationFailed

# A query's whole number as clients write one: ASCII digits. int() also reads "１０" (fullwidth),
# "٣" (Arabic-Indic), " 10", "+10" and "1_0", and str.isdigit() lets "²" through to an int() that
# refuses it (a 500). Bounded: a limit is never longer.
_WHOLE = re.compile(r"[0-9]{1,6}")


def only_params(*names: str) -> None:
    """Refuse a query parameter the route does not read, or one given twice: `include-failed=1` (the
    CLI's spelling) replayed none of the failed deliveries, answered `{"replayed": []}` — an
    all-clear; a bot's `?limt=5` was read as the default 20, `?conversation_id=a&conversation_id=b` as `a`."""
    unknown = sorted(set(request.args) - set(names))
    if unknown:
        reads = f"it reads {', '.join(names)}" if names else "it reads none"
        raise ValidationFailed(f"{unknown[0][:40]!r} is no parameter of this route; {reads}.",
                               errors={name[:40]: ["unknown parameter"] for name in unknown})
    twice = sorted(name for name in names if len(request.args.getlist(name)) > 1)
    if twice:
        raise ValidationFailed(f"{twice[0]} is given more than once; send it once.",
                               errors={name: ["given more than once"] for name in twice})


def query_limit(default: int, most: int) -> int:
    """`?limit=`: a whole number from 1 to `most`, `default` when left out; else 422 naming it."""
    raw = request.args.get("limit", str(default))
    if not _WHOLE.fullmatch(raw) or not 1 <= int(raw) <= most:
        raise ValidationFailed(f"limit must be a whole number from 1 to {most}.", errors={"limit": [f"1 to {most}"]})
    return int(raw)
