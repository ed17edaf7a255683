"""PII redaction for what a target shows people (`redact: [card, iban, …]` in a mapping).

Kinds, applied in this order so a longer secret is not half-masked as a card or phone first:

* `secret` — Stripe `sk_/rk_live|test_…`, `whsec_…`, Slack `xox[abposr]-…`/`xapp-…`, GitHub `ghp_…`
  (and `gho_ ghu_ ghs_ ghr_ github_pat_`), AWS `AKIA…`/`ASIA…`, OpenAI/Anthropic `sk-…` (digits among
  32 characters or more), Google `AIza…`, GitLab `glpat-…`, npm `npm_…`, JWTs `eyJ….….…`, `Bearer <token>` /
  `Basic <token>`, and assignments such as `password: …`, `pwd=…`, `api_key=…`, `secret_key=…`,
  `aws_secret_access_key=…`, `private_key: …`, `token: …`, `pin: …`
  (after `token` and `pin`, words prose puts before a colon too, only a value that is quoted, holds
  a digit or has 16 characters or more: "token: expired since monday" is a diagnosis); and in prose,
  a password's or a code's name then "is" (ist, es, est, was; "now", "still" may follow) or a
  space, then a value shaped like one — 3–8 digits after `pin`, `cvv`, `cvc`, `security code`
  (a "number" or "code" may follow the name); after a password's name and "is", anything but a
  word or a number under four digits, quoted or not; after the name and a space, six characters or
  more with a digit and no hyphen ("my password is Tr0ub4dor&3", "cvv 123"; "my password is wrong",
  "Password 2FA code never arrives" and "my password is sunshine" are kept).
* `iban` — country + check digits + BBAN, length checked against the country, mod-97 checked;
  printed in groups of four or compact. Keeps country and last four.
* `card` — 13–19 digits, optionally grouped by single spaces or dashes — or by dots when shaped like
  a card (`4111.1111.1111.1111`, `3782.822463.10005`), never a date or a version — Luhn-checked;
  in any script's digits (`４１１１ １１１１ …` fullwidth, `٤١١١…`), as customers type them. Keeps
  last four (in ASCII digits).
* `national_id` — US SSN `123-45-6789` (dashes; area 000, 666 and 9xx, group 00 and serial 0000 are
  never issued, so not masked) and UK National Insurance numbers (`AB 12 34 56 C`, upper case).
* `email` — `local@domain.tld`.
* `phone` — 9–15 digits (8–15 after `+`) with spaces, dots, dashes or brackets, not shaped like a date.

Other kinds recognise ASCII digits only. Every placeholder is `[redacted …]` and holds no run a pattern
could match again; boundaries treat `]` before and `[` after like the letter or digit a placeholder
replaced. So redacting twice gives what redacting once gave. Every pattern is
either anchored on a literal or on a lookbehind that allows one start per run, so time is linear.
"""

from __future__ import annotations

import copy
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from itertools import pairwise
from typing import Any

from .text_rules import DRAWN_AS_NOTHING

KINDS: tuple[str, ...] = ("secret", "iban", "card", "national_id", "email", "phone")  # order of application
MASK = "••••"

_KEY_START = r"(?<![A-Za-z0-9_\]-])"
_SECRET_TOKENS = re.compile(
    _KEY_START + r"(?:(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9+/=]{10,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}|(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9\[])"
    # OpenAI's and Anthropic's (sk-proj-…, sk-ant-…: 48 characters and more, digits among them; so a
    # hyphenated phrase after "sk-" is kept), Google's API keys, GitLab's and npm's tokens.
    r"|sk-(?:[a-z]+-)?(?=[A-Za-z_-]{0,60}[0-9])[A-Za-z0-9_-]{32,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}|npm_[A-Za-z0-9]{36}"
    r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,})"
)
# The scheme word stays, so an agent still sees that a credential was there.
_AUTH_HEADER = re.compile(r"(?<![A-Za-z0-9_\]])([Bb]earer|Basic)(\s+)[A-Za-z0-9._~+/-]{16,}=*")
# A credential's name (a "number" or "code" may follow it: "pin number", "CVV code"), then `:` or
# `=` — or, in prose, "is" (ist, es, est, was, war; "now" or "still" may follow) or only a space
# before the value ("my password is Tr0ub4dor&3", "cvv 123"): `_assignment` judges those values.
# The separator is an atomic group: once taken it is never given back, so a value that fails to
# follow ("is" and a run of spaces) costs one pass, not a pass per split of the spaces, and a
# second redaction cannot take "is:" as the value before a placeholder.
# An unquoted value runs to a space; `&`, `;` and `,` end it only before a space, its end, or the
# next `key=` of a query string ("password: Tr0ub4dor&3" left "&3" showing).
# A session cookie (`;jsessionid=…` after a masked link, `PHPSESSID=…`, `ASP.NET_SessionId=…`,
# `laravel_session=…` in a pasted cookie) lets whoever reads it act as the customer: it was left in the
# ticket after "password: https://host/login" was masked. `_assignment` masks only a value as long as
# one (a support reference, "SessionID: 8842", and "session_token: expired" stay).
_SESSION_NAMES = (r"j?session[_-]?id|phpsessid|session[_-]?token|asp\.net_sessionid|connect\.sid"
                  r"|_?[a-z0-9]*_session(?:_?id)?")
_SESSION_KEY = re.compile(_SESSION_NAMES)
_SESSION_VALUE_MIN = 16  # characters: JSESSIONID's are 32, PHPSESSID's 26 or more, ASP.NET's 24
_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9_\]])(((?:password|passwd|passwort|kennwort|contrase[ñn]a|mot de passe|pwd|pw|passcode"
    r"|pin(?:[ -]?code)?|cvv2?|cvc2?|security code|secret|client_secret|api[_-]?key|access[_-]?token"
    r"|aws_secret_access_key|secret[_-]?key|private[_-]?key"
    r"|auth[_-]?token|token|" + _SESSION_NAMES + r")[\"']?)(?:\s+(?:number|code))?"
    r"((?>\s*[:=]\s*|\s+(?:(?:is|ist|es|est|was|war)\b(?:\s*[:=])?\s*(?:(?:now|still|jetzt|noch)\s+)?)?)))"
    r"(?!\[redacted)(\"[^\"\n]*\"|'[^'\n]*'|(?:[^\s&;,'\"]|[&;,](?=[^\s&;,'\"])(?![A-Za-z_][\w.-]*=))+)"
)
# The spaces and dashes, other than ASCII's, that numbers are copied with (character class ranges),
# and the characters drawn as nothing that join them as a space would (a soft hyphen, a zero-width
# space, a word joiner, a byte order mark, direction marks and isolates, the Arabic letter mark): a
# card so joined reads as one, and went whole to every subject and alert (data protection reviews).
_SPACE_LIKE = "\u00a0\u2000-\u200a\u202f\u205f\u3000\u061c" + DRAWN_AS_NOTHING
# Not the en and em dashes: they join ranges ("2026-01-02 – 2026-01-16", "pages 12–19").
_DASH_LIKE = "\u2010-\u2012\u2212\ufe63\uff0d"
_IBAN_START = re.compile(r"(?<![A-Za-z0-9\]])[A-Za-z]{2}[0-9]{2}")
_IBAN_SEPARATOR = re.compile(rf"[ \t\-{_SPACE_LIKE}{_DASH_LIKE}]")
# SWIFT IBAN registry: total length per country.
_IBAN_LENGTHS = {
    code: int(length) for code, length in (item.split(":") for item in (
        "AD:24 AE:23 AL:28 AT:20 AZ:28 BA:20 BE:16 BG:22 BH:22 BI:27 BR:29 BY:28 CH:21 CR:22 CY:28 CZ:24 "
        "DE:22 DJ:27 DK:18 DO:28 EE:20 EG:29 ES:24 FI:18 FK:18 FO:18 FR:27 GB:22 GE:22 GI:23 GL:18 GR:27 "
        "GT:28 HR:21 HU:28 IE:22 IL:23 IQ:23 IS:26 IT:27 JO:30 KW:30 KZ:20 LB:28 LC:32 LI:21 LT:20 LU:20 "
        "LV:21 LY:25 MC:27 MD:24 ME:22 MK:19 MN:20 MR:27 MT:31 MU:30 NI:28 NL:18 NO:15 OM:23 PK:24 PL:28 "
        "PS:29 PT:25 QA:29 RO:24 RS:22 RU:33 SA:24 SC:31 SD:18 SE:24 SI:19 SK:24 SM:27 SO:23 ST:25 SV:28 "
        "TL:23 TN:24 TR:26 UA:29 VA:22 VG:24 XK:20 YE:30"
    ).split())
}
_DIGIT_RUN = re.compile(r"[0-9](?:[ -]?[0-9])*")  # no required suffix, so no backtracking
# A card's own groups (4-4-4-4…, Amex's 4-6-5, Diners' 4-6-4) apart by up to three spaces or a spaced
# dash ("4111  1111  1111  1111", "4111 - 1111 - …", as a web page or a banking app lays them out):
# only in that shape, as the dotted pass — any run so spaced took date ranges ("2026-01-02 - 2026-01-16"),
# lists of order numbers and table rows for cards whenever their digits passed Luhn (one in ten).
# Not within a longer row of 4-digit numbers — none a gap before it or after it: a row of years or
# counts ("2019  2020  …  2026") had any four of its numbers taken for a card. An expiry or a CVV
# after it ("4111  1111  1111  1111  12/27  123", the usual way a card is given) is no such number.
# Tabs too, in a card's own groups only (a card pasted from a spreadsheet's cells went whole to a
# Slack thread): any digits so joined took rows of dates, order numbers and quantities for cards.
_WIDE = r"(?:[ \t]{1,3}| ?- ?)"
_WIDE_CARD_RUN = re.compile(
    r"(?<![0-9])(?<![0-9]{4}[ \t-])(?<![0-9]{4}  )(?<![0-9]{4}   )(?<![0-9]{4} -)(?<![0-9]{4}- )(?<![0-9]{4} - )"
    rf"(?:(?:[0-9]{{4}}{_WIDE}){{3}}[0-9]{{1,7}}|[0-9]{{4}}{_WIDE}[0-9]{{6}}{_WIDE}[0-9]{{4,5}})"
    rf"(?![0-9]|{_WIDE}[0-9]{{4}}(?![0-9]))")
_WIDE_GAP = re.compile(r"[0-9](?:[ \t]{2}| -|- |\t)")
# A card grouped by dots ("4111.1111.1111.1111"): only in a card's own groups — 4-4-4 and the rest
# (13 to 19 digits), Amex's 4-6-5, Diners' 4-6-4 — since dots also join dates (2026.11.20),
# versions and addresses. A pass of its own before `_DIGIT_RUN`'s: one pattern for both let a run
# of spaced digits before it ("paid 25 4111.1111.1111.1111") take its first group, and it went unmasked.
_DOTTED_CARD = r"(?:[0-9]{4}\.){3}[0-9]{1,7}|[0-9]{4}\.[0-9]{6}\.[0-9]{4,5}"
# Not inside a longer dotted run ("1.4111.…", "….1111.1"); "no.4111.…" is a card after a word.
_DOTTED_CARD_RUN = re.compile(r"(?<![0-9])(?<![0-9]\.)(?:" + _DOTTED_CARD + r")(?![0-9]|\.[0-9])")
# A digit of another script (fullwidth ４, Arabic-Indic ٤), the fullwidth separators typed with them,
# and the spaces and dashes a card is copied with from a web page or a banking app (a no-break space,
# French's narrow one, a figure space, a hyphen or minus sign — each sent a whole card to Slack): read
# as ASCII, one character for one, so a card's place in what was written is unchanged.
_OTHER_DIGIT = re.compile(rf"(?![0-9])\d|[{_SPACE_LIKE}{_DASH_LIKE}\uff0e]")
_DASH = re.compile(f"[{_DASH_LIKE}]")
_DIGITS = re.compile(r"[0-9]+")
_SSN = re.compile(r"(?<![\w\]-])(?!000|666|9)[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![\w\[-])")
_NINO = re.compile(
    r"(?<![A-Za-z0-9\]])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?![A-Za-z0-9\[])"
)
# Local parts may hold any letter and the RFC 5322 specials (o'brien, josé); domains may be IDNs.
_EMAIL = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~\]-])[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})*\.[^\W\d_]{2,24}"
    r"(?![\w\[-])"
)
# The whole run is taken greedily and judged in Python: a trailing lookahead here would make the
# engine retry every start inside a long run of digits (quadratic).
_PHONE_RUN = re.compile(r"(?<![\w.+/\]-])\+?\(?[0-9](?:[ .-]?\(?[0-9]\)?)*")
# Dots appear in versions, IP addresses and decimals: with dots only the US 555.123.4567 shape counts.
_DOTTED_PHONE = re.compile(r"\(?[0-9]{3}\)?\.[0-9]{3}\.[0-9]{4}")
_DATE = re.compile(
    r"(?:19|20)[0-9]{2}[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12][0-9]|3[01])"
    r"|(?:0?[1-9]|[12][0-9]|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:19|20)[0-9]{2}"
)


# Kinds that are nothing without an ASCII digit: a text with none skips their scans (a subject, a
# customer's line: most hold no digit, and each is masked on every handoff).
_DIGIT_KINDS = frozenset({"iban", "card", "national_id", "phone"})
_ANY_DIGIT = re.compile(r"\d")  # any script's: a card in fullwidth digits is masked too


def redact_text(text: str, kinds: Collection[str]) -> tuple[str, Counter[str]]:
    """`text` with every requested kind masked, and how many of each were masked."""
    counts: Counter[str] = Counter()
    digits = None
    for kind in _checked(kinds):
        if kind in _DIGIT_KINDS:
            digits = _ANY_DIGIT.search(text) is not None if digits is None else digits
            if not digits:
                continue
        text = _MASKERS[kind](text, counts)
    return text, counts


def redact_packet(packet: Mapping[str, Any], kinds: Collection[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """A deep copy of a handoff packet with its free text masked, and counts per kind.

    Kept as they are: dict keys, non-text values, and `_STRUCTURAL` — ids, enums, timestamps,
    links (attachment and ticket urls must still open), the contract's `routing` and `bot` fields
    (their others are the bot's, which the brief shows: masked as the rest — a `bot.api_key` went
    out whole beside a `conversation.api_key` redacted; a review), `callback`, `vendor_extra`
    (the bot's explicit vendor fields) and the customer's identity fields, which the adapters need
    to find the requester. Everything else is masked, including nested fields added later.
    Integers in free-text places are checked too (a card number sent as a JSON number).
    """
    order = _checked(kinds)
    counts: Counter[str] = Counter()
    return _walk(packet, (), order, counts), dict(counts)


# Of an earlier contact's ticket, only its own ids and state: the rest a bot copies in (its subject,
# "Refund to card 4111 …") is free text, masked as the contact's summary is (a data protection review).
_STRUCTURAL = frozenset(
    tuple(path.split("."))
    for path in (
        "bot.id bot.platform bot.name conversation.id conversation.channel conversation.language conversation.url "
        "customer.id customer.name customer.email customer.phone customer.account_id customer.segment transcript.[].at "
        "transcript.[].role transcript.[].attachments.[].url transcript.[].attachments.[].content_type "
        "transcript.[].attachments.[].size intent.name intent.confidence sentiment attempted_solutions.[].url "
        "attempted_solutions.[].outcome history.[].at history.[].channel history.[].ticket.system history.[].ticket.id "
        "history.[].ticket.url history.[].ticket.status history.[].agent "
        "escalation.reason escalation.urgency routing.department routing.skills routing.priority routing.queue "
        "routing.preferred_agent.id routing.preferred_agent.email routing.preferred_agent.name targets callback "
        "vendor_extra"
    ).split()
)


def _walk(value: Any, path: tuple[str, ...], kinds: tuple[str, ...], counts: Counter[str],
          credential: bool = False) -> Any:
    if path in _STRUCTURAL:
        return copy.deepcopy(value)
    if isinstance(value, Mapping):
        return {key: _walk(item, (*path, str(key)), kinds, counts,
                           credential or ("secret" in kinds and names_a_credential(str(key))))
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(item, (*path, "[]"), kinds, counts, credential) for item in value]
    text = scalar_text(value)
    if text is None:  # a fraction is an amount (`"token_balance": 12.5`), no credential
        return value
    masked = text
    if credential and masked.strip().casefold() not in _NO_VALUE and not masked.startswith("[redacted "):
        counts["secret"] += 1
        return "[redacted secret]"
    for kind in kinds:
        masked = _MASKERS[kind](masked, counts)
    return value if masked == text else masked


def scalar_text(value: Any) -> str | None:
    """The text a packet's value is masked as: a string, an integer, or a float with nothing after
    its point, as its integer (protobuf's Struct and a chatbot platform's number slots write whole
    numbers so: `"card_number": 4111111111111111.0` and `"pin": 4821.0` reached every vendor whole; a
    data protection review). None for anything else (a fraction, a boolean, null)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


# A name that says its value is a credential, by its words (`new_password`, `cardCvv`, `Security
# code`, `one_time_code`): a bot's collected `{"password": "correct horse battery staple"}`,
# `{"cvv": 123}` reached every vendor as is (a bare value matches no pattern of its own; a review),
# while "password: hunter2xyz" in the transcript was masked. The value goes whole. Not a name about
# one (`secret_question`, `password_reset`, `pin_length`), nor a value that is none ("no", "n/a").
_CREDENTIAL_WORDS = frozenset(
    "password passwd passphrase passcode passwort kennwort contraseña contrasena pwd pin cvv cvv2 cvc cvc2 otp "
    "secret token apikey".split())
_CREDENTIAL_PAIRS = frozenset({("api", "key"), ("security", "code"), ("private", "key"), ("one", "time"),
                               ("access", "key"), ("secret", "key"), ("card", "code")})
_ABOUT_ONE = frozenset(
    "question questions answer hint type name id length reset status set changed updated expired expiry expires "
    "policy required strength url link count attempts attempt".split())
_NO_VALUE = frozenset({"", "-", "no", "yes", "none", "n/a", "na", "null", "unknown", "not provided", "not given",
                       "expired", "reset", "forgot", "forgotten", "wrong", "invalid", "ok", "true", "false"})
_NAME_WORDS = re.compile(r"[A-Z]?[a-zà-öø-ÿ]+|[A-Z]+(?![a-z])|[0-9]+")


def names_a_credential(key: str) -> bool:
    """Whether a field named `key` holds a credential (`_CREDENTIAL_WORDS`). Kept for short names: a
    packet's are mostly the schema's, and reading each again cost a Slack delivery 165 µs; a bot's
    own long names are read each time (they would fill the cache's memory)."""
    return _names_a_credential(key) if len(key) <= _KEPT_NAME else _names_a_credential.__wrapped__(key)


_KEPT_NAME = 64  # characters


@functools.lru_cache(maxsize=4096)
def _names_a_credential(key: str) -> bool:
    words = [word.casefold() for word in _NAME_WORDS.findall(key)]
    if not words or not _ABOUT_ONE.isdisjoint(words):
        return False
    return not _CREDENTIAL_WORDS.isdisjoint(words) or any(pair in _CREDENTIAL_PAIRS for pair in pairwise(words))


def _checked(kinds: Collection[str]) -> tuple[str, ...]:
    # A typo ("cards") must not silently turn redaction off: refuse unknown kinds.
    if isinstance(kinds, str):
        raise TypeError("kinds must be a collection of kind names, not a single string")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown redaction kinds {unknown}; known: {', '.join(KINDS)}")
    return tuple(kind for kind in KINDS if kind in kinds)


def _sub(pattern: re.Pattern[str], kind: str, replacement: str | Callable[[re.Match[str]], str | None]
         ) -> Callable[[str, Counter[str]], str]:
    """A masker: every match replaced; a callable may return None to keep a match as it is."""

    def mask(text: str, counts: Counter[str]) -> str:
        def one(match: re.Match[str]) -> str:
            new = replacement(match) if callable(replacement) else match.expand(replacement)
            if new is None:
                return match.group()
            counts[kind] += 1
            return new

        return pattern.sub(one, text)

    return mask


def _mask_secrets(text: str, counts: Counter[str]) -> str:
    for masker in _SECRET_MASKS:
        text = masker(text, counts)
    return text


def _mask_ibans(text: str, counts: Counter[str]) -> str:
    pieces, pos = [], 0
    for start in _IBAN_START.finditer(text):
        if start.start() < pos or (found := _iban_at(text, start.start())) is None:
            continue
        end, compact = found
        pieces += [text[pos : start.start()], f"[redacted iban {compact[:2]}{MASK}{compact[-4:]}]"]
        pos = end
        counts["iban"] += 1
    return "".join([*pieces, text[pos:]])


def _iban_at(text: str, start: int) -> tuple[int, str] | None:
    """(end, compact IBAN) when a valid IBAN starts at `start`: one space or dash (a no-break one too)
    allowed between groups of 4."""
    length = _IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return None
    chars, pos = [], start
    while len(chars) < length and pos < len(text):
        char = text[pos]
        if char.isascii() and char.isalnum():
            chars.append(char.upper())
        elif not (_IBAN_SEPARATOR.match(char) and chars and len(chars) % 4 == 0 and text[pos - 1].isalnum()):
            return None
        pos += 1
    following = text[pos : pos + 1]
    if len(chars) < length or (following.isascii() and following.isalnum()) or following == "[":
        return None
    compact = "".join(chars)
    rearranged = compact[4:] + compact[:4]
    return (pos, compact) if int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1 else None


def _mask_cards(text: str, counts: Counter[str]) -> str:
    # Each text of every packet goes through here for a target that masks cards: the dotted pass
    # only where a dot is (the mask it leaves holds no run of 13 digits for the second).
    if "." in text or "\uff0e" in text:
        text = _mask_card_runs(text, counts, _DOTTED_CARD_RUN)
    if _WIDE_GAP.search(text) or not text.isascii():  # the wide pass only where a gap could be wide
        text = _mask_card_runs(text, counts, _WIDE_CARD_RUN)
    return _mask_card_runs(text, counts, _DIGIT_RUN)


def _mask_card_runs(text: str, counts: Counter[str], runs: re.Pattern[str]) -> str:
    # Runs are found in `read` (ASCII digits, as long as `text`); what is kept is taken from `text`.
    read = text if text.isascii() or not _OTHER_DIGIT.search(text) else _OTHER_DIGIT.sub(_as_ascii, text)
    pieces, pos = [], 0
    for run in runs.finditer(read):
        start, end = run.span()
        if end - start >= 13:  # most runs (dates, amounts, order numbers) stop here
            pieces += [text[pos:start], _mask_cards_in_run(run.group(), counts, text[start:end])]
            pos = end
    return "".join([*pieces, text[pos:]]) if pieces else text


def _as_ascii(match: re.Match[str]) -> str:
    char = match.group()
    if char.isdecimal():
        return str(unicodedata.decimal(char))
    return "." if char == "\uff0e" else "-" if _DASH.match(char) else " "


def _mask_cards_in_run(run: str, counts: Counter[str], written: str) -> str:
    """Mask Luhn-valid sequences of whole digit groups (13–19 digits) inside one run of digits:
    `run` in ASCII digits, `written` as the text has it (the same length), what is kept.

    Each end group is tried with the longest start first. A group's Luhn contribution is computed
    once for both parities, so each end costs at most 19 additions and a run is linear.
    """
    groups = [(g.start(), g.end(), _luhn_parts(g.group())) for g in _DIGITS.finditer(run)]
    pieces, pos, free = [], 0, 0  # `free`: first group not yet inside a masked card
    for end in range(len(groups)):
        best, total, checksum = None, 0, 0
        for first in range(end, free - 1, -1):
            size, parts = groups[first][1] - groups[first][0], groups[first][2]
            if total + size > 19:
                break
            checksum += parts[total % 2]
            total += size
            if total >= 13 and checksum % 10 == 0:
                best = first
        if best is not None:
            last4 = "".join(_DIGITS.findall(run[groups[best][0] : groups[end][1]]))[-4:]
            pieces += [written[pos : groups[best][0]], f"[redacted card {MASK}{last4}]"]
            pos, free = groups[end][1], end + 1
            counts["card"] += 1
    return "".join([*pieces, written[pos:]])


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a Luhn-doubled digit, its two digits summed


def _luhn_parts(digits: str) -> tuple[int, int]:
    """Luhn sums of `digits` when its last digit is at an even (not doubled) or odd position."""
    if len(digits) > 19:  # never part of a card: skip the work
        return (0, 0)
    plain = doubled = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        plain += _DOUBLED[digit] if index % 2 else digit
        doubled += digit if index % 2 else _DOUBLED[digit]
    return (plain, doubled)


def _phone(match: re.Match[str]) -> str | None:
    run = match.group()
    digits = sum(char.isdigit() for char in run)
    following = match.string[match.end() : match.end() + 1]
    shortest = 8 if run.startswith("+") else 9
    if not shortest <= digits <= 15 or (following.isalnum() or following in ("_", "[")) or _DATE.search(run):
        return None
    if "." in run and not run.startswith("+") and _DOTTED_PHONE.fullmatch(run) is None:
        return None
    return "[redacted phone]"


# Words that prose uses before a colon too ("token: expired since monday" lost the diagnosis): with
# these, an unquoted value is a credential when it holds a digit or is long. A PIN has digits, a
# token digits or length; `password: sunshine` is masked whatever it holds.
_PROSE_KEYS = frozenset({"token", "pin"})
_CODE_KEYS = re.compile(r"(?i)pin|cvv|cvc|security code")  # a PIN or a card's code: digits only
_SPOKEN_KEYS = re.compile(r"(?i)pass|pw|kennwort|contrase|mot de passe|pin|cvv|cvc|security code")
_CODE = re.compile(r"[0-9]{3,8}")
# After "password:" in prose, what names the problem or where to fix it, never the password: "Reset
# password: link expired" became "Reset password: [redacted secret] expired" in every subject, and
# the bot's "To reset your password: https://help…/reset" hid the article it kept sending (a review).
# A link of words alone: one with a user, a query, a fragment, or a digit or other mark in its path
# may carry a password or a reset token in it (`/reset/MjQ/bq7x-4f1e…/`: kept whole, nothing inside
# it was masked; two reviews), and is masked as before.
_LINK = re.compile(r"(?i)https?://[a-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z_.-]*)*")
_ENDS_HERE = re.compile(r"[.,!?)]*(?:\s|$)")  # and nothing of it goes on past the value (`;jsessionid=…`)
_PROBLEM_WORDS = frozenset({"link", "reset", "expired", "incorrect", "wrong", "invalid", "forgot", "forgotten",
                            "not", "locked", "required", "changed", "change", "help", "error", "email", "e-mail"})


def _assignment(match: re.Match[str]) -> str | None:
    prefix, name, separator, value = match.groups()
    name, quoted = name.rstrip("\"'").lower(), value[:1] in "\"'"
    if _SESSION_KEY.fullmatch(name):  # `=` or `:`, or a tab: a cookie's row copied from a browser's tools
        given = ":" in separator or "=" in separator or separator == "\t"
        return f"{prefix}[redacted secret]" if given and len(value.strip("\"'")) >= _SESSION_VALUE_MIN else None
    if ":" not in separator and "=" not in separator:
        # Prose ("is", or a space): only a password's or a code's name, and only a value shaped like
        # one — "password is wrong", "Password 2FA code never arrives", "pin 2 of the cable" and
        # "token was revoked" are diagnoses; "password Tr0ub4dor&3" and "cvv 123" are not. After
        # "is", a password is anything but a word or a small number ("my password is sunshine",
        # "case-sensitive" and "2 weeks old" are kept; "P@ssword!" is not); after a bare space it
        # has a digit, six characters or more and no hyphen; quoted, only after "is" ("password
        # 'Invalid credentials' error" quotes an error).
        if not _SPOKEN_KEYS.match(name):
            return None
        bare = value.rstrip(".!?,;:")
        if _CODE_KEYS.match(name):
            return f"{prefix}[redacted secret]" if _CODE.fullmatch(bare) else None
        if quoted:
            return f"{prefix}[redacted secret]" if separator.strip() else None
        if separator.strip():  # after "is": anything but a word ("wrong", "case-sensitive") or a small number
            if all(c.isalpha() or c in "-'" for c in bare) or (bare.isdigit() and len(bare) < 4):
                return None
        elif len(bare) < 6 or "-" in bare or not any(c.isdigit() for c in bare):
            return None
    elif name in _PROSE_KEYS and not quoted and len(value) < 16 and not any(c.isdigit() for c in value):
        return None
    elif "=" not in separator and not quoted and _SPOKEN_KEYS.match(name) and \
            ((_LINK.fullmatch(value.rstrip(".!,;:")) and _ENDS_HERE.match(match.string, match.end()))
             or value.rstrip(".!?,;:").lower() in _PROBLEM_WORDS):
        return None
    return f"{prefix}[redacted secret]"


# A PEM private key, pasted whole across lines (the assignment's value stops at a space or a line):
# from its BEGIN line through its base64 body and its END line, when there is one. The body holds no
# `-`, so it ends at the END line; each BEGIN starts one bounded match (linear).
# Its header lines too (an encrypted key's "Proc-Type: 4,ENCRYPTED", "DEK-Info: …"; a PGP block's
# "Version: …"), and a PGP key block.
_PEM_KEY = re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:\s*[A-Za-z-]{1,30}:[^\n]{0,200}){0,8}"
                      r"[A-Za-z0-9+/=\s]{0,20000}(?:-----END [A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?")

_SECRET_MASKS = (
    _sub(_PEM_KEY, "secret", "[redacted secret]"),
    _sub(_SECRET_TOKENS, "secret", "[redacted secret]"),
    _sub(_AUTH_HEADER, "secret", r"\1\2[redacted secret]"),
    _sub(_ASSIGNMENT, "secret", _assignment),
)
_SSN_MASK = _sub(_SSN, "national_id", "[redacted national_id]")
_NINO_MASK = _sub(_NINO, "national_id", "[redacted national_id]")
_MASKERS: dict[str, Callable[[str, Counter[str]], str]] = {
    "secret": _mask_secrets,
    "iban": _mask_ibans,
    "card": _mask_cards,
    "national_id": lambda text, counts: _NINO_MASK(_SSN_MASK(text, counts), counts),
    "email": _sub(_EMAIL, "email", "[redacted email]"),
    "phone": _sub(_PHONE_RUN, "phone", _phone),
}
