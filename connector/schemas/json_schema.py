"""What a packet rule says in /openapi.json, kept beside the rule (`packet.py`): a validator, a field
class or a schema-level check carries `json_schema`, a callable returning the JSON Schema (OpenAPI
3.0) keywords that say the same, and `api/docs.py` adds them to the document it generates.

Written for OpenAPI 3.0.3: no type arrays (null is `nullable`, or `null()` in an `anyOf`), and
patterns that mean the same in ECMA-262 and Python (`\\uXXXX` escapes of the Basic Multilingual Plane
only; no `\\s`, whose members differ between the two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any, TypeVar

from ..text_rules import is_blank

Rule = Callable[[], dict[str, Any]]
F = TypeVar("F", bound=Callable[..., Any])


def null() -> dict[str, Any]:
    """The value null, alone: an `anyOf` branch beside a `$ref` (OpenAPI 3.0 has no null type;
    `nullable` beside a `$ref` is ignored, and within `allOf` it cannot undo the referenced schema's
    type). 3.0.3 gives `nullable` meaning only beside a `type`, and `enum` keeps it to null."""
    return {"type": "object", "nullable": True, "enum": [None]}


def json_schema(rule: Rule) -> Callable[[F], F]:
    """Marks a validator (or a `@validates_schema` check) with what it says in JSON Schema."""

    def mark(check: F) -> F:
        check.json_schema = rule  # type: ignore[attr-defined]
        return check

    return mark


def _class_of(codes: Iterable[int]) -> str:
    """A character class body naming `codes`, in ranges, as `\\uXXXX` escapes."""
    parts: list[str] = []
    run: list[int] = []
    for code in [*sorted(codes), None]:
        if run and code == run[-1] + 1:
            run.append(code)
            continue
        if run:
            first, last = run[0], run[-1]
            parts.append(f"\\u{first:04x}" if first == last else f"\\u{first:04x}-\\u{last:04x}")
        run = [code] if code is not None else []
    return "".join(parts)


def _bmp() -> Iterable[str]:
    return (chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF)


@cache
def visible() -> str:
    """A pattern that finds a character `text_rules.is_blank` counts as saying something: read off
    `is_blank` itself, one character of the Basic Multilingual Plane at a time (~30 ms, once). The
    tag characters (U+E0000 to U+E007F) are blank too, but lie beyond it: a pattern cannot name them
    the same way in both dialects, so a text of tags alone passes this pattern and is refused."""
    return f"[^{_class_of(ord(char) for char in _bmp() if is_blank(char))}]"


def any_case(word: str) -> str:
    """`word` in either case, for a pattern (`http` -> `[Hh][Tt][Tt][Pp]`)."""
    return "".join(f"[{char.upper()}{char.lower()}]" if char.isalpha()
                   else char if char.isalnum() or char == "-" else f"\\{char}" for char in word)
