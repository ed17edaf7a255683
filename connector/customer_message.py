"""The message the bot shows the customer: acknowledges the handoff, promises they won't repeat
themselves, restates the problem in one line, and sets an expectation (a wait, no known wait, or —
out of hours — when the team opens).

Templates per locale live in `mappings/messages.yaml`; the packet's `conversation.language`
picks one (`es-MX` → `es` → the default locale). A routing rule may name a variant (`message: vip`);
a locale without that variant uses its `template`. Everything renders in Jinja2's sandbox.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .brief import ONE_LINE_SECRETS, one_line, problem_words
from .errors import ConfigError
from .mapping_values import check_template, variables_used
from .routing_schema import language_tag
from .templating import FailedOnValues, render
from .text_rules import did_you_mean, is_blank, without_invisible

log = logging.getLogger(__name__)

# Shown once every target has given up, where messages.yaml has no `failed` of its own (and for
# handoffs stored before the connector composed one with each message).
# No promise that trying again soon will work: a target may have refused the handoff for good.
FAILED = ("I'm sorry — I couldn't pass this on to our team, so nobody has it yet. "
          "Please reach us another way, or try again later.")
# Shown in place of the message when the conversation reached no agent (`answers.context_lost`): its
# "they'll see our whole conversation, so you won't need to repeat yourself" would be false.
CONTEXT_LOST = ("I'm connecting you with our {{ team }} team now. I couldn't pass on our whole conversation, "
                "so they may need to ask you about some of it again. I've passed on: {{ problem }}. {{ expectation }}")
NO_PROBLEM = "your request"  # `problem` when the packet words none and no locale says it (`no_problem`)
ENGLISH_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FALLBACK = {
    "default_locale": "en",
    "locales": {
        "en": {
            "template": (
                "I'm connecting you with our {{ team }} team now. They'll see our whole conversation, "
                "so you won't need to repeat yourself. I've passed on: {{ problem }}. {{ expectation }}"
            ),
            "wait": "Someone should be with you in about {{ minutes }} minute{{ 's' if minutes != 1 else '' }}.",
            "no_wait": "Someone will reply here as soon as they're free.",
            "closed": "The team is away right now, though: we open again at {{ time }} {{ day }} ({{ timezone }}) and "
                      "will reply then.",
            "closing": ("We close at {{ closes }}{{ ' ' ~ closes_day if closes_day }} ({{ timezone }}); if nobody has "
                        "replied by then, we'll reply when "
                        "we open again at {{ time }} {{ day }}."),
            "failed": FAILED,
            "context_lost": CONTEXT_LOST,
            "no_problem": NO_PROBLEM,
        }
    },
}


class Template(fields.String):
    """A template string, compiled and checked at load time against sandbox escapes and against the
    variables `compose` gives it (`variables`): `{{ teams }}` for `{{ team }}` made every handoff a 500.
    Then rendered once with example values of the kinds `compose` gives (`SAMPLES`): a template that
    uses one as another kind (`{{ date.strftime('%d/%m') }}`: `date` is text) passed the names'
    check and failed every handoff it applied to."""

    def __init__(self, variables: tuple[str, ...], needs: tuple[str, ...] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.variables = variables
        self.needs = needs  # what the message must say (`NEEDS`)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.strip():  # `no_wait: ""` told customers nothing of when anyone would reply
            raise ValidationError("must not be empty: every message says this part")
        try:
            check_template(text, attr or "template", self.variables)
            render(text, attr or "template", **{name: SAMPLES[name] for name in self.variables})
        except FailedOnValues as err:  # Python's own errors inside the sandbox (`minutes + 'x'`)
            said = err.message.replace("template error", "template error with example values", 1)
            raise ValidationError(said) from None
        except ConfigError as err:
            raise ValidationError(err.message) from None
        missing = [name for name in self.needs if name not in variables_used(text)]
        if missing:
            said = " and ".join(f"{{{{ {name} }}}} ({NEEDS[name]})" for name in missing)
            raise ValidationError(f"the message must say {said}")
        return text


# The variables each kind of message is rendered with (`compose`, `_apology`, `_opening_words`),
# and an example of each, of the kind it is given: text, but `minutes` a whole number.
MESSAGE = ("team", "problem", "expectation")
CLOSED = ("time", "day", "date", "timezone")
CLOSING = ("closes", "closes_day", *CLOSED)  # the closing's time and day (none today), then the reopening's words
# A team open now that closes within this many seconds, no wait quoted: the message says when it
# closes and when it reopens — "as soon as they're free" at 17:58 on a Friday meant Monday 09:00.
CLOSING_SOON_S = 3600
# A wait not quoted because it runs past closing is a reply "when we open again" when no more than
# this is left of it after the closing (a morning's first hours); more (days) is not.
REPLY_AFTER_REOPENING_S = 4 * 3600
SAMPLES: dict[str, Any] = {"team": "billing", "problem": "I was charged twice for order 1234",
                           "expectation": "Someone should be with you in about 5 minutes.", "minutes": 5,
                           "time": "09:00", "day": "Monday", "date": "2026-12-07", "timezone": "Europe/Berlin",
                           "closes": "18:00", "closes_day": ""}


# What every message must carry (contract §3: it restates the problem and sets an expectation), by
# the variable that says it: a template without `{{ expectation }}` told a customer out of hours
# nothing of when anyone would reply, and `check` said "ok".
NEEDS = {"problem": "the problem, restated", "expectation": "when someone will reply",
         "minutes": "the wait", "time": "when the team opens", "closes": "when the team closes"}


class PlainText(fields.String):
    """A word or name said as written (a team's name, a day's): template syntax in it is an admin's
    mistake — `{{ team }}` there reached customers as the braces themselves, and `check` said ok (a
    review). Only `template`, `variants`, `wait` … are filled in."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if any(mark in text for mark in ("{{", "{%", "{#")):
            raise ValidationError(f"is plain text, said as written: {text[:60]!r} would reach customers with its "
                                  "braces (only template, variants, wait, no_wait, closed, closing, failed and "
                                  "context_lost are filled in)")
        return text


class LocaleSchema(Schema):
    class Meta:
        unknown = RAISE

    template = Template(MESSAGE, needs=("problem", "expectation"), required=True)
    variants = fields.Dict(keys=fields.String(), values=Template(MESSAGE, needs=("problem", "expectation")),
                           load_default=dict)
    wait = Template(("minutes",), needs=("minutes",), required=True)
    no_wait = Template((), required=True)
    closed = Template(CLOSED, needs=("time",), required=True)
    # Optional (files written before it stay valid): without it, `no_wait` is said instead.
    closing = Template(CLOSING, needs=("closes", "time"))
    failed = Template(("team", "problem"))  # optional: the default locale's, else the built-in English one
    # Optional: without it, this locale's customers keep the whole message when their conversation
    # reached no agent (`context_lost_warnings` says so at load).
    context_lost = Template(MESSAGE, needs=("problem", "expectation"))
    # …and per variant (`urgent`, `vip`): without one, a variant's customers get `context_lost`, and
    # lose what their variant says ("I've flagged this as urgent", "ahead of the usual queue").
    context_lost_variants = fields.Dict(keys=fields.String(), load_default=dict,
                                        values=Template(MESSAGE, needs=("problem", "expectation")))
    teams = fields.Dict(keys=fields.String(), values=PlainText(), load_default=dict)
    weekdays = fields.List(PlainText(), validate=validate.Length(equal=7), load_default=lambda: ENGLISH_DAYS)
    today = PlainText()
    tomorrow = PlainText()
    # `problem` when the packet words none (`_no_problem`): the English subject line ("Conversation
    # handed off") stood in the middle of a Spanish message.
    no_problem = PlainText(validate=validate.Length(min=1, max=140))


class MessagesSchema(Schema):
    class Meta:
        unknown = RAISE

    version = fields.Integer(required=True, validate=validate.Equal(1))
    default_locale = fields.String(load_default="en")
    locales = fields.Dict(keys=fields.String(), values=fields.Nested(LocaleSchema), required=True,
                          validate=validate.Length(min=1))

    def __init__(self, *, named_variants: Collection[str] | None = None, **kwargs: Any):
        """`named_variants`: the variants routing.yaml's rules name (`message:`), when it loaded —
        which of two close spellings is the typo (`_default_exists`)."""
        super().__init__(**kwargs)
        self.named_variants = None if named_variants is None else frozenset(named_variants)

    @validates_schema
    def _default_exists(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("locales") and data["default_locale"] not in data["locales"]:
            raise ValidationError(f"{data['default_locale']!r} is not under locales:", "default_locale")
        named: dict[str, str] = {}
        for locale in data.get("locales") or {}:  # as a language picks them: one of the two was never said
            if (earlier := named.setdefault(language_tag(locale), locale)) != locale:
                raise ValidationError(f"{earlier!r} and {locale!r} name one language (tags are compared in any "
                                      "case, '_' as '-'): keep one", "locales")
        # A rule names a variant of the default locale (`mappings._check_variants`); one only another
        # locale has is never chosen — `es.variants.vpi` told Spanish VIPs the plain message, unsaid (a review).
        locales, first = data.get("locales") or {}, data["default_locale"]
        known = sorted((locales.get(first) or {}).get("variants") or {})
        kinds = ("variants", "context_lost_variants")
        # Where the other locales agree on a name and the default's is close to it, the default's is
        # the typo: `en.variants.vpi` was named only once each other locale's `vip` had been renamed
        # `vpi`, one `check` at a time, as its hint said (an admin's review).
        elsewhere = {variant: sorted(locale for locale, texts in locales.items() if locale != first
                                     and any(variant in (texts.get(kind) or {}) for kind in kinds))
                     for texts in locales.values() for kind in kinds for variant in texts.get(kind) or {}}
        # Which spelling is right, routing's rules say where they loaded: the name a rule uses (with `en`
        # and `es` alone, `es.vpi` blamed `en.vip`, and `en.vpi` then `es.vip`; reviews of the mend). Else
        # two other locales or more agreeing, and none of those with variants saying otherwise.
        named = self.named_variants
        others = [locale for locale, texts in locales.items() if locale != first and texts.get("variants")]
        agreed = {variant for variant, where in elsewhere.items()
                  if (named is not None and variant in named) or (len(where) >= 2 and set(others) <= set(where))}
        lone = [name for name in known if not elsewhere.get(name) and (named is None or name not in named)]
        errors: dict[str, Any] = {}
        for locale, texts in locales.items():
            for kind in kinds:
                for variant in texts.get(kind) or {}:
                    if variant in known:
                        continue
                    odd = difflib.get_close_matches(variant, lone, n=1) if variant in agreed else []
                    if odd:
                        meant = odd[0]
                        who = [*(["routing.yaml's rules"] if named is not None else []), *elsewhere[variant]]
                        errors.setdefault(first, {}).setdefault("variants", {})[meant] = [
                            f"no other locale names {meant!r}, and {', '.join(who)} name {variant!r}: did you "
                            f"mean {variant!r}?"]
                        continue
                    errors.setdefault(locale, {}).setdefault(kind, {})[variant] = [
                        f"no rule can choose it: rules name the variants of the default locale {first!r}, which "
                        f"has no {variant!r}; {did_you_mean(variant, known) if known else ''}"
                        f"its variants: {', '.join(known) or 'none'}"]
        if errors:
            raise ValidationError({"locales": errors})


def pick_locale(language: str | None, available: Mapping[str, Any], default: str) -> str:
    return _matching_locale(language, available) or default


def _matching_locale(language: str | None, available: Mapping[str, Any]) -> str | None:
    """The locale for a language, its tag compared as routing compares it (`language_tag`): in any
    case, as BCP 47 has it — pt-br and zh-hant were told in English while pt_BR found pt-BR. The
    tag is shortened a subtag at a time, as RFC 4647's lookup does (zh-Hant-TW, zh-Hant, zh): the
    whole tag and its language alone told a customer routed by `language: zh-hant` in English (a
    review)."""
    if language:
        parts, locales = language_tag(language).split("-"), {language_tag(locale): locale for locale in available}
        while parts:
            if (candidate := "-".join(parts)) in locales:
                return locales[candidate]
            parts.pop()
            if len(parts) > 1 and len(parts[-1]) == 1:  # a singleton (`x`, `u`) leads what was dropped
                parts.pop()
    return None


def _config(messages: Mapping[str, Any]) -> Mapping[str, Any]:
    """mappings/messages.yaml, or the built-in English one when it has no locales."""
    return messages if messages.get("locales") else FALLBACK


def team_name_warnings(messages: Mapping[str, Any], routing: Mapping[str, Any]) -> list[str]:
    """A locale's `teams:` name that no team of routing.yaml has (`technical-support` for
    `technical_support`): its customers were told the team's own name in English, unsaid. Not
    refused: a bot's `routing.department` may name a team routing.yaml does not describe."""
    teams = set(routing.get("teams") or {})
    if not teams:
        return []
    said = []
    for locale, strings in (messages.get("locales") or {}).items():
        for name in sorted(set(strings.get("teams") or {}) - teams - {"support"}):
            close = difflib.get_close_matches(name, sorted(teams), n=1)
            meant = f" (meant {close[0]!r}?)" if close else ""
            said.append(f"messages.yaml locales.{locale}.teams names {name!r}, no team of routing.yaml{meant}: "
                        f"said only for a bot's routing.department of that name")
    return said


def warnings(messages: Mapping[str, Any], routing: Mapping[str, Any]) -> list[str]:
    """What `check` and the start-up say of messages.yaml."""
    return [*team_name_warnings(messages, routing), *context_lost_warnings(messages), *length_warnings(messages)]


# A whole message longer than this, with the example values, is said at load: chat widgets show it
# as a wall, and SMS carries 1,600 characters at most (a 20,000-character template reached the bot
# whole, `check` saying ok; an admin's review). Not refused: the words are the admin's to choose.
LONG_MESSAGE = 1000


def length_warnings(messages: Mapping[str, Any]) -> list[str]:
    """Whole messages (`template`, `context_lost`, `failed`, and their variants) over `LONG_MESSAGE`
    characters as the example values (`SAMPLES`) render them."""
    said = []
    for locale, strings in (messages.get("locales") or {}).items():
        wholes = [(key, strings.get(key)) for key in ("template", "context_lost", "failed")]
        wholes += [(f"{kind}.{name}", text) for kind in ("variants", "context_lost_variants")
                   for name, text in (strings.get(kind) or {}).items()]
        for key, source in wholes:
            if not source:
                continue
            size = len(" ".join(render(source, key, **SAMPLES).split()))
            if size > LONG_MESSAGE:
                said.append(f"messages.yaml locales.{locale}.{key} says {size:,} characters with the example values: "
                            f"a chat shows it as a wall, and SMS cuts it (over {LONG_MESSAGE:,} is said)")
    return said


def context_lost_warnings(messages: Mapping[str, Any]) -> list[str]:
    """A locale without `context_lost`: its customers are still told they won't repeat themselves
    when their conversation reached no agent (the receipt says so; the message does not)."""
    return [f"messages.yaml locales.{locale} has no context_lost: when the conversation reaches no agent "
            "(a vendor refused the transcript), its customers are still told they won't need to repeat "
            "themselves" for locale, strings in (messages.get("locales") or {}).items()
            if not strings.get("context_lost")]


def language_warnings(packet: Mapping[str, Any], messages: Mapping[str, Any]) -> list[str]:
    """A language with no messages of its own gets the default locale's: the answer's `locale`
    says which, but a bot that only shows `text` would put English before a customer who wrote in
    Portuguese without anyone having said so."""
    language = (packet.get("conversation") or {}).get("language")
    config = _config(messages)
    if not language or _matching_locale(language, config["locales"]) is not None:
        return []
    default = config.get("default_locale", "en")
    return [f"conversation.language: no customer messages for {language!r} (mappings/messages.yaml has "
            f"{', '.join(sorted(config['locales']))}); the message is in {default!r}"]


# A problem the customer ended with "?", "!" or "…" — or a CJK full stop, "。" (also "？", "！"), or
# another script's (Arabic "؟", Urdu "۔", Devanagari "।", full-width "．", "‽"), also inside a closing
# quote or bracket ('He said "stop."') — keeps its own, not the template's "." after it
# ("…表示されています。.", "…شخص؟.", a review).
_ENDS = "?!…。？！؟۔।॥．｡‽⁇⁈⁉"
_DOUBLED_STOP = re.compile(rf"([{_ENDS}]|[.{_ENDS}][\"'”’»」』)\]]+)\.(?=\s|$)")
# One ended mid-sentence (",", ":", ";") gets the template's stop in its place: "wrong,." read as a typo.
_HANGING_MARK = re.compile(r"[,;:、，；：]\.(?=\s|$)")


def compose(packet: Mapping[str, Any], assignment: Mapping[str, Any], wait_seconds: int | None,
            messages: Mapping[str, Any], *, now: dt.datetime | None = None,
            wait_past_closing_s: int | None = None) -> dict[str, str]:
    """`wait_past_closing_s`: a wait not quoted because it runs past the team's closing
    (`routing.wait_quote`): the message says when the team closes and opens again when little of the
    wait is left after the closing (`_closing_soon`)."""
    config = _config(messages)
    locales = config["locales"]
    locale = pick_locale((packet.get("conversation") or {}).get("language"), locales,
                         config.get("default_locale", "en"))
    strings = locales[locale]
    where = f"mappings/messages.yaml: locales.{locale}"
    team = _team_name(strings, assignment)
    # The customer's own words, echoed back: a card number or an ID number in them is masked, as the
    # vendors' mappings mask them — the message travels in the answer, callbacks and the bot's logs.
    # Without the characters nobody sees: the agent's brief names them ([U+202E]); the customer sees none.
    words = one_line(problem_words(packet, echoed=True), 140, shown=without_invisible,
                     masked=ONE_LINE_SECRETS) or _no_problem(config, locale)
    problem = words.rstrip(".")
    hours = assignment.get("business_hours") or {}
    quoted_wait = False
    # The hours' words as said at a moment (`now`): the `closing` wording before the closing, the `closed`
    # one from then (none: the text says nothing of when the team opens or closes).
    hours_words: Callable[[dt.datetime | None], str] | None = None
    opening: str | None = None  # the opening they tell of
    closing: dt.datetime | None = None  # and the closing before it, if they tell of one
    # What is said when no wait is: when the team closes and reopens, within the hour before it
    # closes or before the wait that was not quoted would end (a locale with `closing`); else that
    # someone will reply as soon as they can.
    if _closing_soon(hours, wait_past_closing_s) and strings.get("closing"):
        # `closes_in_s` is whole seconds from a `now` that is not: the closing, always on a minute,
        # is the next whole minute (17:59:59.5 said "17:59").
        at = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=hours["closes_in_s"] + 59)
        at = at.astimezone(ZoneInfo(hours["timezone"])).replace(second=0, microsecond=0)
        reopening = {**hours, "next_opening": hours["reopens_at"]}

        def closing_words(moment: dt.datetime | None) -> str:
            if moment is not None and moment >= at:  # closed since: when it opens again
                return _render(strings["closed"], f"{where}.closed", "closed",
                               **_opening_words(reopening, strings, moment))
            # Its day when not today (`closes_day`): a 24/5 team closing in 38 hours was "We close at 00:00".
            return _render(strings["closing"], f"{where}.closing", "closing", closes=at.strftime("%H:%M"),
                           closes_day=_day_word(at, strings, moment) or "",
                           **_opening_words(reopening, strings, moment))

        hours_words, opening, closing = closing_words, hours["reopens_at"], at
        no_wait = hours_words(now)
    else:
        no_wait = _render(strings["no_wait"], f"{where}.no_wait", "no_wait")
    if assignment.get("out_of_hours") and hours.get("next_opening"):

        def closed_words(moment: dt.datetime | None) -> str:
            return _render(strings["closed"], f"{where}.closed", "closed", **_opening_words(hours, strings, moment))

        hours_words, opening, closing = closed_words, hours["next_opening"], None
        expectation = hours_words(now)
    elif wait_seconds is not None:
        quoted_wait = True
        minutes = told_minutes(wait_seconds)
        expectation = _render(strings["wait"], f"{where}.wait", "wait", minutes=minutes)
    else:
        expectation = no_wait
    variant = assignment.get("customer_message_template")
    key, template = ("template", strings["template"])
    if variant and variant in (strings.get("variants") or {}):
        key, template = f"variants.{variant}", strings["variants"][variant]

    def whole(expected: str) -> str:
        return _whole(template, f"{where}.{key}", "template", team, problem, expected)

    composed: dict[str, Any] = {"locale": locale, "text": whole(expectation)}
    # What it says instead when the conversation reaches no agent (`context_lost`), known only after
    # delivery: its words kept, its template rendered only then (`context_lost_message`) — two more
    # renders on every handoff's path otherwise.
    lost: dict[str, Any] | None = None
    lost_key = f"context_lost_variants.{variant}" if variant in (strings.get("context_lost_variants") or {}) \
        else "context_lost"
    if strings.get("context_lost") or lost_key != "context_lost":
        said = strings["context_lost_variants"][variant] if lost_key != "context_lost" else strings["context_lost"]
        lost = {"locale": locale, "template": said, "where": f"{where}.{lost_key}",
                "team": team, "problem": problem, "text": expectation}
    if quoted_wait:
        # What the answer shows instead while no target has the handoff and attempts are failing
        # (`answers.shown_message`): a wait counted from now would be a promise nobody can keep yet.
        composed["if_delayed"] = whole(no_wait)
        if lost is not None:
            lost["if_delayed"] = no_wait
    if hours_words is not None:
        # What the answer shows once an agent has it (`answers.shown_message`): "the team is away
        # right now … will reply at 09:00 tomorrow" stood beside an agent on it — read the next day too.
        unhoured = _render(strings["no_wait"], f"{where}.no_wait", "no_wait")
        composed["if_assigned"] = whole(unhoured)
        if lost is not None:
            lost["if_assigned"] = unhoured
    if hours_words is not None and opening is not None:
        # Their day words ("tomorrow", "Monday") and "we close at" are the intake's: read after the
        # team's midnight or its closing, before the opening, "we open again at 01:00 tomorrow" was
        # false (a review). What is said from each such moment on (`answers.shown_message`).
        said_at = now or dt.datetime.now(dt.UTC)
        later, told = [], hours_words(now)
        for moment in _turns(said_at, opening, hours["timezone"], closing):
            words = hours_words(moment)
            if words != told:
                later.append({"from": moment.astimezone(dt.UTC).isoformat(), "words": words})
                told = words
        if later:
            composed["later"] = [{"from": turn["from"], "text": whole(turn["words"])} for turn in later]
            if lost is not None:
                lost["later"] = later
    if lost is not None:
        composed["if_context_lost"] = lost
    return {**composed, **_apology(config, locale, assignment, problem)}


def context_lost_message(kept: Mapping[str, Any]) -> dict[str, Any]:
    """The message shown when the conversation reached no agent (`answers.context_lost`), rendered
    from what `compose` kept of it (its `if_context_lost`): the locale's `context_lost` template, with
    the words each of the message's turns says (its wait, without it, the hours as said later)."""
    def said(words: str) -> str:
        return _whole(kept["template"], kept["where"], "context_lost", kept["team"], kept["problem"], words)

    shown: dict[str, Any] = {"locale": kept["locale"], "text": said(kept["text"])}
    shown.update((key, said(kept[key])) for key in ("if_delayed", "if_assigned") if key in kept)
    if kept.get("later"):
        shown["later"] = [{"from": turn["from"], "text": said(turn["words"])} for turn in kept["later"]]
    return shown


def _whole(template: str, where: str, built_in: str, team: str, problem: str, expected: str) -> str:
    """A whole message: `template` rendered, the problem's full stop not doubled."""
    text = _render(template, where, built_in, team=team, problem=problem, expectation=expected)
    # Templates end the problem with a full stop; one the customer ended with "?" or "!" keeps its own.
    return _HANGING_MARK.sub(".", _DOUBLED_STOP.sub(r"\1", " ".join(text.split())))


LATER_MAX = 16  # midnights a message's hours' words are said again at: the last ones before the opening


def _turns(said_at: dt.datetime, opening: str, timezone: str, closing: dt.datetime | None) -> list[dt.datetime]:
    """The moments after `said_at` and before `opening` at which the hours' words may read
    otherwise: its `closing`, and each midnight where the team is — the last `LATER_MAX` of them, as
    the words change in the week before the opening ("Tuesday 2027-01-05", "Tuesday", "tomorrow",
    "today"): the first ones of a longer closure said nothing new, and its last day read "Tuesday"."""
    zone, ends = ZoneInfo(timezone), dt.datetime.fromisoformat(opening)
    first, last = said_at.astimezone(zone).date(), ends.astimezone(zone).date()
    days = [last - dt.timedelta(days=back) for back in range(min((last - first).days, LATER_MAX) - 1, -1, -1)]
    midnights = [m for m in (dt.datetime.combine(day, dt.time(), zone) for day in days) if said_at < m < ends]
    return sorted({*midnights, *([closing] if closing is not None and said_at < closing < ends else [])})


def told_minutes(wait_seconds: int) -> int:
    """The minutes a wait is said in: the nearest, a half up, never none. Python's `round` goes to
    the even one: 150 s was "about 2 minutes" and 210 s "about 4" (a review)."""
    return max(1, int(wait_seconds / 60 + 0.5))


def _no_problem(config: Mapping[str, Any], locale: str) -> str:
    """What the message restates when the packet words no problem, in the message's language."""
    for candidate in (locale, config.get("default_locale", "en")):
        said = (config["locales"].get(candidate) or {}).get("no_problem")
        if said:
            return str(said)
    return NO_PROBLEM


def _render(source: str, where: str, built_in: str, **context: Any) -> str:
    """`source` rendered; should it fail on this packet's values all the same (a branch the check at
    load did not take), the built-in English one in its place, logged: a handoff answered 500 was
    retried by its bot and failed again — no ticket, whatever the vendors could take."""
    text = _rendered(source, where, **context)
    return render(FALLBACK["locales"]["en"][built_in], f"built-in {built_in}", **context) if text is None else text


def _rendered(source: str, where: str, **context: Any) -> str | None:
    """`source` rendered, or None (logged) when it fails on these values — or says nothing on them:
    a branch the load's example values took and these do not (`{% if team == 'billing' %}…{% endif %}`)
    told a support customer "", or a wait of 20 minutes nothing of when anyone would reply (an
    admin's review). The load refuses a template that is empty as written."""
    try:
        text = render(source, where, **context)
    except Exception as err:  # the sandbox's errors and Python's own alike
        log.error("customer message template failed; the built-in one was used",
                  extra={"where": where, "error": str(getattr(err, "message", err))[:300]})
        return None
    if is_blank(text):
        log.error("customer message template said nothing on this handoff's values; the built-in one was used",
                  extra={"where": where, "error": "the template rendered no text"})
        return None
    return text


# A team the messages do not name is said by its id only when that reads as a name: the id may be
# the bot's own `routing.department`, and "our quantum <b>ops</b> team" went to the customer.
_READS_AS_A_NAME = re.compile(r"[A-Za-z][\w \-]{0,39}")
# Every template says "our {{ team }} team": a department the bot called "Billing Team" (or
# "billing_team") read "our Billing Team team".
_TEAM_WORD = re.compile(r"(?:^|[\s_-]+)team[\s_-]*$", re.IGNORECASE)


def _team_name(strings: Mapping[str, Any], assignment: Mapping[str, Any]) -> str:
    teams, team = strings.get("teams") or {}, str(assignment.get("team") or "")
    if team in teams:
        return teams[team]
    named = _TEAM_WORD.sub("", team).replace("_", " ").strip() if _READS_AS_A_NAME.fullmatch(team) else ""
    return named or teams.get("support", "support")


def _apology(config: Mapping[str, Any], locale: str, assignment: Mapping[str, Any], problem: str) -> dict[str, str]:
    """What the answer shows instead once every target has given up (`answers.shown_message`): the
    promise would then be false. Composed with the message, while the mappings are at hand.

    A locale without a `failed` of its own borrows the default locale's, else the built-in English
    one; the apology then names the team as that language does and carries that locale's tag
    (`if_failed_locale`), so a bot never shows one language tagged as another."""
    for candidate in (locale, config.get("default_locale", "en")):
        strings = config["locales"].get(candidate) or {}
        if strings.get("failed"):
            text = _rendered(strings["failed"], f"mappings/messages.yaml: locales.{candidate}.failed",
                             team=_team_name(strings, assignment), problem=problem)
            if text is None:
                break  # the built-in English one, tagged as English
            return _tagged(" ".join(text.split()), candidate, locale)
    return _tagged(FAILED, "en", locale)


def _tagged(text: str, apology_locale: str, locale: str) -> dict[str, str]:
    return {"if_failed": text} if apology_locale == locale else {"if_failed": text, "if_failed_locale": apology_locale}


def _closing_soon(hours: Mapping[str, Any], wait_past_closing_s: int | None = None) -> bool:
    """Whether the team, open now, closes within the hour — or before a wait not quoted because it
    runs past closing, when what is left of it after the closing would end soon after the reopening
    (`REPLY_AFTER_REOPENING_S`): two hours' wait at 16:30 for a team leaving at 18:00 was dropped,
    and the customer told "as soon as they're free" with nothing of the closing, which at 17:30 they
    were. A longer wait (two days) is not a reply at the reopening: "as soon as they're free"."""
    closes_in = hours.get("closes_in_s")
    if not (hours.get("open") and hours.get("reopens_at") and closes_in is not None):
        return False
    left_after = (wait_past_closing_s or 0) - closes_in
    return closes_in <= CLOSING_SOON_S or 0 <= left_after <= REPLY_AFTER_REOPENING_S


def _opening_words(hours: Mapping[str, Any], strings: Mapping[str, Any], now: dt.datetime | None) -> dict[str, str]:
    """`time`, `day`, `date`, `timezone` for the `closed` template, in the team's zone."""
    zone = ZoneInfo(hours["timezone"])
    at = dt.datetime.fromisoformat(hours["next_opening"]).astimezone(zone)
    day = _day_word(at, strings, now) or strings.get("today") or (strings.get("weekdays") or ENGLISH_DAYS)[at.weekday()]
    return {"time": at.strftime("%H:%M"), "day": str(day), "date": at.date().isoformat(), "timezone": zone.key}


def _day_word(at: dt.datetime, strings: Mapping[str, Any], now: dt.datetime | None) -> str | None:
    """The day of `at` (in its zone) as the customer reads it from `now`: None for today, else the
    locale's word for tomorrow, the weekday, or a weekday and its date a week or more away."""
    days = (at.date() - (now or dt.datetime.now(dt.UTC)).astimezone(at.tzinfo).date()).days
    if days == 0:
        return None
    day = (strings.get("weekdays") or ENGLISH_DAYS)[at.weekday()]
    if days == 1 and strings.get("tomorrow"):
        return str(strings["tomorrow"])
    if days >= 7:
        # A weekday a week or more away names the wrong one (a holiday closure: "by Monday" read
        # as this Monday): the date follows it, written the one way every locale reads.
        return f"{day} {at.date().isoformat()}"
    return str(day)
