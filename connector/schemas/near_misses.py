"""Keys a bot most likely misspelt. Nested objects keep fields the connector does not know (they
are stored, and mappings may read them), so `escalation.urgncy: urgent` was taken without a word
and the handoff routed as normal; `callback.evnts` had every state sent. A key close to one the
schema declares in the same place is named in the answer's warnings, with the name it is close to.
Keys close to none are a bot's own fields, and left alone; so is one sent beside the field it is
close to (`channel_id` beside `channel`)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from functools import cache, lru_cache
from typing import Any

from marshmallow import INCLUDE, Schema, fields

from .packet import PacketSchema

# How alike a key and a declared name must be (difflib's ratio): urgncy/urgency 0.92,
# departmnet/department 0.90, evnts/events 0.91; plan/phone 0.44.
CLOSE = 0.8
_MOST_CHECKED = 50  # unknown keys looked at in one object (or one list's entries), the first in order


@dataclass(frozen=True)
class _Node:
    names: tuple[str, ...]  # the keys the schema declares here
    known: frozenset[str]  # the same, to subtract
    lengths: tuple[int, int]  # the shortest name's and the longest's
    open: bool  # unknown keys kept (INCLUDE): the only places a typo passes unseen
    children: Mapping[str, tuple[_Node, bool]]  # key → (node, a list of them)


def near_misses(packet: Mapping[str, Any], schema: type[Schema] = PacketSchema) -> list[str]:
    """One warning per misspelt-looking key, named by its path (`transcript.*.atachments` for a
    key of any entry of a list)."""
    said: list[str] = []
    _look(_tree(schema), [packet], "", said)
    return said


def _look(node: _Node, objects: list[Mapping[str, Any]], path: str, said: list[str]) -> None:
    sent = objects[0].keys() if len(objects) == 1 else set().union(*(o.keys() for o in objects))
    unknown = node.open and sent - node.known
    if unknown:
        # Only keys of a length a name's could be close to (difflib's ratio of 0.8 needs the two
        # lengths within 1.5× of each other: a long key is close to none, and is not cached), and
        # at most `_MOST_CHECKED` of them: a packet of 60,000 extra keys took 0.4 s here.
        shortest, longest = node.lengths
        fit = (key for key in unknown if isinstance(key, str) and shortest * 2 <= len(key) * 3 <= longest * 9 // 2)
        for key in heapq.nsmallest(_MOST_CHECKED, fit):
            close = _close_to(key, node.names)
            # Not a name that extends the field's, sent beside it: `conversation.channel_id` beside
            # `channel` is the bot's own (in a list, beside it in the same entry). `urgncy` beside
            # `urgency` is still said: that one is the typo routing missed.
            extends = close is not None and (key.startswith(close) or key.endswith(close) or close.startswith(key))
            if close and not (extends and any(close in o for o in objects if key in o)):
                said.append(f"{path}{key}: not a field the connector reads — did you mean {path}{close}? "
                            "It is kept with the packet, but nothing acts on it")
    for key, (child, many) in node.children.items():
        found = [value for o in objects if (value := o.get(key)) is not None]
        inside = list(_objects(found, many))
        if inside:
            _look(child, inside, f"{path}{key}.*." if many else f"{path}{key}.", said)


@lru_cache(maxsize=4096)
def _close_to(key: str, names: tuple[str, ...]) -> str | None:
    """The declared name `key` is close to, if any. Cached: a bot sends the same extra keys with
    every packet (`bot.name`), and difflib's ratio is the walk's largest cost."""
    close = get_close_matches(key, names, n=1, cutoff=CLOSE)
    return close[0] if close else None


def _objects(values: Iterable[Any], many: bool) -> Iterable[Mapping[str, Any]]:
    # Parsed JSON: `type() is` (an isinstance of Mapping is an ABC check, on the bot's path).
    for value in values:
        for item in (value if many and type(value) is list else (value,)):
            if type(item) is dict:
                yield item


@cache
def _tree(schema_class: type[Schema]) -> _Node:
    return _node(schema_class())


def _node(schema: Schema) -> _Node:
    children: dict[str, tuple[_Node, bool]] = {}
    for name, declared in schema.fields.items():
        inner, many = (declared.inner, True) if isinstance(declared, fields.List) else (declared, False)
        if isinstance(inner, fields.Nested) and isinstance(inner.schema, Schema):
            children[declared.data_key or name] = (_node(inner.schema), many)
    names = tuple(declared.data_key or name for name, declared in schema.fields.items())
    lengths = (min(map(len, names)), max(map(len, names))) if names else (0, 0)
    return _Node(names, frozenset(names), lengths, schema.unknown == INCLUDE, children)


def _extends(longer: str, word: str) -> bool:
    """Whether `longer` is `word` with a word more before or after it: the character at the seam is
    no lower-case letter (`_`, `-`, a digit, a camelCase capital)."""
    extra = len(longer) - len(word)
    if extra <= 0:
        return False
    return (longer.startswith(word) and not longer[len(word)].islower()) or \
        (longer.endswith(word) and not longer[extra - 1].islower())


def path_near_miss(path: str, schema: type[Schema] = PacketSchema) -> str | None:
    """The declared path a mapping's packet path most likely misspells (`customer.segmnt` →
    `customer.segment`), or None: a key the schema declares no closer than `CLOSE` is a bot's own
    field, read as written. A list's index (`history.0.ticket`) is passed over."""
    node, parts = _tree(schema), path.split(".")
    for depth, key in enumerate(parts):
        if key.isdigit() and depth:  # an index into the list before it
            continue
        if key in node.known:
            if key not in node.children:
                return None  # a declared value (or a free-form object): what is under it is the bot's
            node = node.children[key][0]
            continue
        close = _close_to(key, node.names) if node.open else None
        # A name that extends the field's by a word (`conversation.channel_id`, `channelId`, `channel-id`,
        # `customer.account` of `account_id`) is a bot's own (reviews of the mend); one cut short or a
        # letter added (`customer.emai`, `segments`) is not.
        if close is None or _extends(key, close) or _extends(close, key):
            return None
        return ".".join([*parts[:depth], close, *parts[depth + 1:]])
    return None
