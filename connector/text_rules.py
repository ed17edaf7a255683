"""Text the connector can store and send, wherever it comes from (packets, vendor events), and the
one reading of a packet's times (`rfc3339`).

`"\\u0000"` and `"\\ud800"` are valid JSON, yet PostgreSQL text refuses NUL, and a lone surrogate
cannot be encoded as UTF-8 (for the answer, a vendor or the log): such text is refused on arrival.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# Unicode's bidirectional embeddings, overrides and isolates: "ORD-\u202e1234\u202c" displays as
# "ORD-4321", "\u202e00.05$" as "$50.00". Kept in what is stored, shown by name to agents.
def code_point_names(codes: Iterable[int]) -> dict[str, str]:
    """Each character as an agent reads it when it must not act: `[U+202E]`."""
    return {chr(code): f"[U+{code:04X}]" for code in codes}


# Each control as `visible_controls` writes it, one character at a time (a renderer counting what a
# text will take once written needs it per character).
CONTROL_NAMES = code_point_names((*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
_BIDI_CONTROLS = re.compile(f"[{''.join(CONTROL_NAMES)}]")


# Bidirectional controls and marks, the zero-width space, word joiner and byte-order mark: nothing a
# reader sees. Not the zero-width (non-)joiner (U+200C, U+200D): Persian and Indic words need them,
# and emoji sequences (👨‍👩‍👧) are made with them. The Hangul fillers U+3164 and U+FFA0 are letters
# to Python, so `str.strip` kept them, yet they are drawn as nothing: "\u3164" was a customer's id
# and a requester's name.
_INVISIBLE_SET = "\u200b\u200e\u200f\u202a-\u202e\u2060-\u2069\u3164\ufeff\uffa0"
_INVISIBLE = re.compile(f"[{_INVISIBLE_SET}]")

# Drawn as nothing alone, but part of what the characters beside them show, so `without_invisible`
# keeps them: the joiners, the soft hyphen (a hyphen where a line breaks), the combining grapheme
# joiner, the Mongolian vowel separator and variation selectors (❤️), tags (🏴 flags' subdivisions),
# and the conjoining Hangul fillers (U+115F, U+1160), parts of old-Hangul syllables with the jamo
# beside them: taken out, a name written with them lost part of its syllables.
_ONLY_WITH_OTHERS = "\u00ad\u034f\u115f\u1160\u180e\u200c\u200d\ufe00-\ufe0f\U000e0000-\U000e007f"
# A character someone sees. Searched for, not stripped out: it stops at the first one, and a
# transcript's 20,000-character entries are checked on the bot's path.
_SEEN = re.compile(f"[^\\s{_INVISIBLE_SET}{_ONLY_WITH_OTHERS}]")
# Both, as character class ranges: what masking reads as a space between a number's digits
# (`redaction`: a card so joined showed whole).
DRAWN_AS_NOTHING = _INVISIBLE_SET + _ONLY_WITH_OTHERS


def without_invisible(text: str) -> str:
    """`text` without the characters nobody sees: what a customer is shown of their own words (the
    agent's brief names bidirectional controls instead, `visible_controls`), and how a text that
    holds nothing else is told from one that says something (`is_blank`)."""
    return _INVISIBLE.sub("", text)


def is_blank(text: str) -> bool:
    """Whether `text` says nothing: whitespace, the characters `without_invisible` takes out and
    those it keeps for the characters beside them, only. A packet's ids, its customer's identity and
    a message's text must say something ("\\u200b" passed `str.strip`)."""
    return _SEEN.search(text) is None


def as_identity(customer: Mapping[str, Any]) -> dict[str, Any]:
    """The customer as a vendor's own fields take them (a requester's or contact's name and phone):
    without the characters nobody sees, and without a name or phone that says nothing (`name_of`).
    Named in a brief ([U+202E]), a control here has no place to be shown — raw, "+1 415 \u202e4321
    555" displayed as another number, the one an agent dials."""
    return {key: without_invisible(value) if key in ("name", "phone") and isinstance(value, str) else value
            for key, value in customer.items()
            if key not in ("name", "phone") or not isinstance(value, str) or not is_blank(value)}


def said_text(value: Any) -> str | None:
    """A free text of the packet when it says something (not `is_blank`), else None: the schema
    takes "  " for an intent's stated_problem, shown as `In their words: "  "` in place of theirs."""
    return value if isinstance(value, str) and not is_blank(value) else None


def name_of(customer: Mapping[str, Any]) -> str | None:
    """The customer's name, when it says something. The contract leaves `customer.name` free (a bot
    sends "" for unknown), and one made of "\u200b" or "\u3164" headed the brief and the Slack alert
    as nothing and became a Zendesk requester named "": the e-mail, phone or id stand in instead."""
    return said_text(customer.get("name"))


def identity_of(customer: Mapping[str, Any], keys: Iterable[str]) -> list[tuple[str, str]]:
    """(key, value) of each of `keys` the customer has and that says something: a phone of "\u200b"
    (the contract asks an id, e-mail or phone to say something, not all three) is no line."""
    return [(key, str(customer[key])) for key in keys if customer.get(key) and not is_blank(str(customer[key]))]


def called(customer: Mapping[str, Any], default: str) -> str:
    """What to call the customer on one line: their name, else the first of their e-mail, phone and
    id, else `default`."""
    return name_of(customer) or next((value for _, value in identity_of(customer, ("email", "phone", "id"))), default)


def visible_controls(text: str) -> str:
    """`text` with each bidirectional control written as its code point ([U+202E]), for agents."""
    return _BIDI_CONTROLS.sub(lambda m: CONTROL_NAMES[m.group()], text) if _BIDI_CONTROLS.search(text) else text

# RFC 3339's date-time (section 5.6): T and Z in either case, seconds required, any fraction, an
# offset with its colon. datetime.fromisoformat alone took ISO 8601 forms no bot's RFC 3339 writer
# makes (2026-W47-5T09:14Z, 20261120T091402Z, 2026-11-20T09Z) and refused a lower-case t or z.
# RFC 3339's offset: hours 00-23, minutes 00-59 (Python read +05:60 as +06:00, and took it).
# Its digits are ASCII (RFC 3339's DIGIT): `\d` alone took "٢٠٢٦-11-20T10:00:00Z" as well formed, and
# the bot was told its Arabic-Indic year was no real date rather than no RFC 3339 time.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)",
                      re.ASCII)
_ANY_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?([+-]\d{2}:\d{2})", re.ASCII)
# Python's str(datetime) ("2026-11-20 10:00:00+00:00") and strftime's %z ("+0000"): `rfc3339_problem`'s hint.
_NO_T = re.compile(r"^(\d{4}-\d{2}-\d{2}) (?=\d{2}:)", re.ASCII)
_NO_COLON = re.compile(r"(:\d{2}(?:\.\d+)?[+-]\d{2})(\d{2})$", re.ASCII)


def rfc3339(text: object) -> dt.datetime | None:
    """The moment an RFC 3339 time names (with its offset), or None when `text` is not one — or
    names no real date (2026-02-30), or one that is not a date in UTC (9999-12-31T23:59:59-01:00:
    accepted, it crashed every rendering of the brief, and the handoff stayed pending for ever)."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        return None
    try:
        moment = dt.datetime.fromisoformat(text.upper())
        moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
    return moment


def rfc3339_problem(text: str) -> str:
    """Why `rfc3339` refused `text`, in words a bot's developer can act on: a time that is well
    formed but no real moment was told its *format* was wrong."""
    if not _RFC3339.fullmatch(text):
        # The two forms a bot's own library writes most often, which carry a time zone: "Not … with a
        # time zone" sent its developer to fix what was right (a bot developer's review).
        spaced = _NO_T.sub(r"\1T", text, count=1)
        mended = _NO_COLON.sub(r"\1:\2", spaced, count=1)
        if mended != text and (_RFC3339.fullmatch(mended) or _ANY_OFFSET.fullmatch(mended)):
            said = [*(["“T” between the date and the time, not a space"] if spaced != text else []),
                    *(["a colon in the offset"] if mended != spaced else [])]
            # A date that is no real one is said too: told only the form, the bot met a second refusal.
            real = "" if rfc3339(mended) is not None else f" {rfc3339_problem(mended)}"
            return f"Write it {mended}: {'; '.join(said)} (RFC 3339).{real}"
        odd = _ANY_OFFSET.fullmatch(text)
        if odd:
            # With the date's own problem, where it has one: said apart, each fix met another refusal.
            moment = f"{text[:odd.start(1)]}Z"
            date = "" if rfc3339(moment) is not None else f" {rfc3339_problem(moment)}"
            return f"The offset {odd.group(1)} is not a time zone offset (hours 00 to 23, minutes 00 to 59).{date}"
        return "Not an RFC 3339 time with a time zone (e.g. 2026-11-20T09:14:02Z)."
    if text[17:19] == "60":
        return "A leap second (:60) is not accepted; send :59."
    try:
        dt.datetime.fromisoformat(text.upper())
    except ValueError:
        return "Not a real date or time of day (e.g. February 30th, hour 24)."
    return "Out of range: in UTC it falls outside the years 1 to 9999."


def rfc3339_utc(text: object) -> dt.datetime | None:
    """`rfc3339`, in UTC: how every brief (and Slack's thread) shows a packet's times."""
    moment = rfc3339(text)
    return moment.astimezone(dt.UTC) if moment is not None else None



def did_you_mean(word: Any, names: Iterable[Any], cutoff: float = 0.6) -> str:
    """`did you mean 'x'? ` for the name closest to a misspelt `word`, or "" when none is close: one
    wording for every refusal of a name the connector does not know (keys, files, targets, paths)."""
    close = difflib.get_close_matches(str(word), [str(name) for name in names], n=1, cutoff=cutoff)
    return f"did you mean {close[0]!r}? " if close else ""


# What may not begin a cut's rest (it belongs to the character before): the joiner and the variation
# selectors of emoji sequences; skin tones, and marks (`_a_mark`), are looked up below.
_JOINERS = frozenset({"\u200d", "\ufe0e", "\ufe0f"})


def whole_end(text: str, end: int) -> int:
    """`end`, or the nearest cut before it that splits no character as a reader sees one: not
    before a combining or spacing mark (ि, ́), a joiner or a variation selector, nor after a zero-width
    joiner (👨‍👩‍👧) or a virama (क्ष), nor before a skin tone; nor through a run of flags' halves at an
    odd place (🇯🇵🇺🇸 cut after 🇯 read as 🇵🇺 after it). 0 when the first character alone reaches `end`."""
    if not 0 < end < len(text):
        return end
    # Bounded walks: a run of 500,000 marks was walked back whole at every cut of a Slack split, a
    # large message's delivery 12 times slower. A cluster longer than that is cut where it stands.
    wanted, stop = end, max(0, end - _CLUSTER_MOST)
    while end > stop and (_a_mark(text[end]) or text[end] in _JOINERS or text[end - 1] == "\u200d"
                          or "\U0001f3fb" <= text[end] <= "\U0001f3ff" or unicodedata.combining(text[end - 1]) == 9):
        end -= 1
    if end == stop and stop > 0:
        return wanted
    if 0 < end and _flag_half(text[end]):
        run, stop = end, max(0, end - _FLAGS_MOST)
        while run > stop and _flag_half(text[run - 1]):
            run -= 1
        if run > stop or stop == 0:  # the run's start found: its parity known
            end -= (end - run) % 2
    return end


_CLUSTER_MOST = 32  # code points a cut walks back over for one character as a reader sees it
_FLAGS_MOST = 4096  # flags' halves it counts back to pair them


def _a_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "M"


def _flag_half(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"
