"""Reading a JSON body the way every caller's is read (packets, messages, vendor events, Slack's
interaction payload): UTF-8, numbers Python can hold, a bounded depth, no key given twice in one object, no
text that cannot be stored — each refusal naming where. One reader, so that what a packet may not
hold a vendor event may not either."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from functools import partial
from typing import Any

from .errors import MalformedRequest, UnsupportedMediaType, ValidationFailed
from .text_rules import UNSTORABLE


def parse_json(raw: bytes, content_type: str | None, max_depth: int, what: str = "packet") -> Any:
    """The body as a JSON object; `what` names it in the errors ("packet", "event")."""
    mimetype, *params = (content_type or "").lower().split(";")
    mimetype = mimetype.strip()
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise UnsupportedMediaType(f"Send the {what} as application/json (got {mimetype or 'no content type'}).")
    # JSON is UTF-8 (RFC 8259). A body declared in another charset is read as UTF-8 all the same
    # (us-ascii, or Spring's ISO-8859-1 default over ASCII bytes, is); one that is not UTF-8 is
    # refused naming the charset it declared — it was answered "not valid UTF-8" without a word of it.
    charset = next((value.strip().strip('"') for name, _, value in (p.partition("=") for p in params)
                    if name.strip() == "charset"), "") or "utf-8"
    try:
        # A leading byte order mark is taken as RFC 8259 §8.1 allows (a file saved by Windows Notepad,
        # sent with `curl --data @file.json`, was told to "decode using utf-8-sig"; a review). A
        # signature covers the bytes as sent.
        text = raw.decode("utf-8").removeprefix("\ufeff")
        repeated: list[bool] = []  # set by `_object` when an object names a key twice
        unheld: list[bool] = []  # set by `_whole`/`_finite` when a number is put as `_Unheld` in its place
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=partial(_finite, unheld),
                          parse_int=partial(_whole, unheld), object_pairs_hook=partial(_object, repeated))
    except UnicodeDecodeError:
        if charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"Send the {what} as UTF-8 JSON (got charset={charset}, and bytes that "
                                       "are not UTF-8).") from None
        raise MalformedRequest("The body is not valid UTF-8.") from None
    except RecursionError:
        raise MalformedRequest(f"The JSON nests deeper than {max_depth} levels (CONNECTOR_MAX_JSON_DEPTH).") from None
    except ValueError as err:
        if charset not in ("utf-8", "utf8", "us-ascii", "ascii"):  # UTF-16 without a BOM reads as UTF-8
            raise UnsupportedMediaType(f"Send the {what} as UTF-8 JSON (got charset={charset}, and a body that "
                                       f"is not JSON read as UTF-8: {err}).") from None
        raise MalformedRequest(f"The body is not valid JSON: {err}") from None
    # Only a \u escape can put U+0000 or a lone surrogate in the parsed text (raw control characters
    # and invalid UTF-8 were refused above), so the per-string check runs only when one is present.
    depth, suspect = _depth(data, check_text="\\u" in text)
    unstorable = _scan(data) if suspect else []
    if depth > max_depth:
        raise ValidationFailed(f"The JSON nests deeper than {max_depth} levels (CONNECTOR_MAX_JSON_DEPTH).",
                               errors={_too_deep(data, max_depth): [f"nesting deeper than {max_depth}"]})
    if unstorable:
        named, more = _first(unstorable)
        raise ValidationFailed(
            "Text may not hold U+0000 or unpaired surrogates (\\ud800-\\udfff): they cannot be stored or sent." + more,
            errors={path: ["contains U+0000 or an unpaired surrogate"] for path in named},
        )
    if repeated:
        named, more = _first(_twice(data))
        raise ValidationFailed(
            "A key appears twice in one object: JSON readers disagree on which value counts, so neither "
            "is taken. Send each key once." + more,
            errors={path: ["given more than once in the same object"] for path in named},
        )
    if unheld:
        named, more = _first(_unheld(data))
        raise ValidationFailed(
            "A number is valid JSON but beyond what the connector can hold (an integer of at most "
            f"{sys.get_int_max_str_digits()} digits, any other number within ±1.8e308). Send it within these "
            "limits, or as a string where the field takes text." + more,
            errors={path: [reason] for path, reason in named},
        )
    if not isinstance(data, dict):
        raise ValidationFailed(f"The {what} must be a JSON object.", errors={"(body)": ["must be an object"]})
    return data


class _Unheld:
    """In a number's place, one JSON allows and Python cannot hold: refused after the parse, named
    by its path (raising from the parse named no field, and CPython's message told the bot to call
    `sys.set_int_max_str_digits()`)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _finite(unheld: list[bool], literal: str) -> float | _Unheld:
    # A literal too large for a float (1e400) would load as infinity, which JSON cannot carry on:
    # stored or sent, it would come out as null or be refused by PostgreSQL and the vendors.
    value = float(literal)
    if math.isfinite(value):
        return value
    unheld.append(True)
    return _Unheld("a number within ±1.8e308")


def _whole(unheld: list[bool], literal: str) -> int | _Unheld:
    # CPython refuses to convert an integer of more digits than `sys.get_int_max_str_digits()`
    # (4300 by default; the digit count is checked before any conversion work). The scanner hands
    # only well-formed integers here, so that is the one ValueError `int` can raise.
    try:
        return int(literal)
    except ValueError:
        unheld.append(True)
        digits = len(literal) - literal.startswith("-")
        return _Unheld(f"a number of at most {sys.get_int_max_str_digits()} digits (this one has {digits})")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


_MAX_REPORTED = 20  # paths named in an answer refusing unstorable text (`text_rules.UNSTORABLE`)


def _depth(value: Any, *, check_text: bool) -> tuple[int, bool]:
    """The document's nesting depth, and whether any string (keys too) may not be storable."""
    deepest, suspect = 0, False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            suspect = suspect or (check_text and any(UNSTORABLE.search(key) for key in item))
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
        elif check_text and isinstance(item, str) and UNSTORABLE.search(item):
            suspect = True
    return deepest, suspect


class _Repeated(dict):  # type: ignore[type-arg]
    """A JSON object that named a key more than once (its last value kept, as `json` does); `twice` says which."""

    twice: tuple[str, ...] = ()


def _object(repeated: list[bool], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads`' object hook: `{"email": "a", "email": "b"}` read as the last one silently; the
    signature, the bot's own parser and a proxy in between may each have read another one."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    flagged = _Repeated(obj)
    flagged.twice = tuple(sorted(key for key, count in Counter(key for key, _ in pairs).items() if count > 1))
    repeated.append(True)
    return flagged


def _nodes(value: Any) -> Iterator[tuple[str, Any]]:
    """Every value of the document with its path (`customer.email`, `transcript.0`; `""` for the body)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        yield path, item
        if isinstance(item, dict):
            stack.extend((child, _child(path, _shown(key))) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, _child(path, str(index))) for index, child in enumerate(item))


def _too_deep(value: Any, max_depth: int) -> str:
    """The path of a value just past `max_depth` (the body's depth is 1, as `_depth` counts): the
    answer named "(body)" when the deep part was in the bot's `metadata`, and left it to search.
    Each value keeps only its name and its parent's trail, the path is written for the one found:
    writing every value's path (`_nodes`) cost a copy of its parent's, ~1,000 levels deep in a MiB."""
    stack: list[tuple[Any, int, Any]] = [(value, 1, None)]  # (value, its depth, (its name, its parent's trail))
    while stack:
        item, level, trail = stack.pop()
        if level > max_depth:
            names: list[str] = []
            while trail is not None:
                name, trail = trail
                names.append(name)
            return ".".join(reversed(names)) or "(body)"
        if isinstance(item, dict):
            stack.extend((child, level + 1, (_shown(key), trail)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, level + 1, (str(index), trail)) for index, child in enumerate(item))
    return "(body)"


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _scan(value: Any) -> list[str]:
    """The paths of strings (keys too) that cannot be stored."""
    unstorable = []
    for path, item in _nodes(value):
        if isinstance(item, dict):
            unstorable.extend(_child(path, _shown(key)) for key in item if UNSTORABLE.search(key))
        elif isinstance(item, str) and UNSTORABLE.search(item):
            unstorable.append(path or "(body)")
    return sorted(unstorable, key=_in_order)


def _twice(value: Any) -> list[str]:
    """The paths of keys given more than once in their object."""
    return sorted((_child(path, _shown(key)) for path, item in _nodes(value) if isinstance(item, _Repeated)
                   for key in item.twice), key=_in_order)


def _unheld(value: Any) -> list[tuple[str, str]]:
    """The paths of numbers that could not be held (`_Unheld`), each with its limit."""
    return sorted(((path or "(body)", item.reason) for path, item in _nodes(value) if isinstance(item, _Unheld)),
                  key=lambda named: _in_order(named[0]))


def _in_order(path: str) -> tuple[tuple[int, int | str], ...]:
    """A path's place in the document: `transcript.5` before `transcript.10` (as strings, the answer
    cut at 20 named entries 0-4 and 10-24, and left out 5-9; a review)."""
    # ASCII digits of a list's index only: `isdigit` is true of "²" and of a 5,000-digit key, which
    # `int` refuses (a 500 in place of the 422; a review).
    return tuple((0, int(part)) if part.isascii() and part.isdigit() and len(part) <= 18 else (1, part)
                 for part in path.split("."))


def _first(paths: list[Any]) -> tuple[list[Any], str]:
    """The paths an answer names (the first `_MAX_REPORTED`), and what it adds to its detail when
    there were more: a silent cut had the bot fix what it was told of and meet the rest next time."""
    if len(paths) <= _MAX_REPORTED:
        return paths, ""
    return paths[:_MAX_REPORTED], f" The first {_MAX_REPORTED} of {len(paths)} are named."


def _shown(key: str) -> str:
    """A key as it can appear in an answer: a lone surrogate written as `\\ud800`."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")
