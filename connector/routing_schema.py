"""The schema of `mappings/routing.yaml`: rules, teams, calendars — validated at load, compiled once.

`connector.mappings` loads the file and names file, line and key on error; `connector.routing`
matches packets against the compiled `RoutingConfig`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from adapters import registry

from . import business_hours
from .errors import ConfigError
from .schemas.packet import REASONS, SENTIMENTS, TRENDS, URGENCIES, distinct
from .text_rules import did_you_mean, is_blank

PRIORITIES = URGENCIES  # a priority routing gives is one a packet may ask for
SCORES = (-1, 1)  # the lowest and highest sentiment.score a packet holds (schemas/packet.py)
# Which id field carries a named agent, per vendor, comes from the adapters (`agent_field`);
# routing.yaml's `agent_fields:` overrides; only vendors listed there can take a sticky agent by id.
# No routing.yaml at all: the bot's department hint, else the default team.
BUILT_IN: dict[str, Any] = {"version": 1, "rules": [{"name": "default"}]}
LIST_CONDITIONS = ("intent", "department", "skills_any", "skills_all", "segment", "sentiment", "sentiment_trend",
                   "urgency", "reason", "language", "channel")


class RoutingConfig(dict):
    """A routing.yaml that passed `RoutingSchema`: calendars built, keywords compiled."""


class Keyword:
    """A trigger word or phrase: equal to an escalation keyword, or whole words in the customer's text."""

    def __init__(self, text: str):
        self.pattern_text = text.strip().lower()
        self.regex_source = r"\s+".join(map(re.escape, self.pattern_text.split()))  # the words, any spacing
        self._regex = re.compile(rf"(?<!\w){self.regex_source}(?!\w)", re.IGNORECASE)

    def search(self, text: str) -> bool:
        return bool(self._regex.search(text))

    def found_in(self, text: str) -> str | None:
        """The words as `text` has them (its case and spacing), or None."""
        found = self._regex.search(text)
        return None if found is None else found.group(0)


class Keywords(list[Keyword]):
    """A rule's keywords, with one pattern for all of them: a transcript that holds none (most
    handoffs) is read once, not once per keyword (6 µs against 22 µs for the sample packet)."""

    def __init__(self, words: list[str]):
        super().__init__(Keyword(word) for word in words)
        either = "|".join(k.regex_source for k in self) or "(?!)"  # no keywords: a pattern that never matches
        self._any = re.compile(rf"(?<!\w)(?:{either})(?!\w)", re.IGNORECASE)

    def any_in(self, text: str) -> bool:
        return bool(self._any.search(text))


def language_tag(tag: str) -> str:
    """A BCP 47 tag as a rule's `language:`, a packet's `conversation.language` and messages.yaml's
    locales are compared: any case, `_` read as `-` (a rule's `es_mx` never matched es_MX, read as es-mx)."""
    return tag.lower().replace("_", "-")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class Words(fields.Field):
    """A string or a list of strings, kept lowercase (`normal`: as the packet's field is read, for
    one that is more than lowercased); `choices`: the only values a packet can hold there
    (`sentiment: furious` made a rule that never matched, without a word)."""

    def __init__(self, choices: tuple[str, ...] | None = None, normal: Callable[[str], str] = str.lower,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.choices, self.normal = choices, normal

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> list[str]:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(i, str) and i.strip() for i in items):
            raise ValidationError("must be a word or a list of words")
        words = [self.normal(i.strip()) for i in items]
        if self.choices is not None and (never := [w for w in words if w not in self.choices]):
            raise ValidationError(f"{', '.join(map(repr, never))}: no packet holds that here; "
                                  f"one of {', '.join(self.choices)}")
        return words


# The conditions whose packet field has a fixed set of values (schemas/packet.py).
_CHOICES = {"sentiment": SENTIMENTS, "sentiment_trend": TRENDS, "urgency": URGENCIES, "reason": REASONS}
_NORMAL = {"language": language_tag}  # the conditions whose packet field is read as more than lowercase


def _intent_prefix(word: str) -> str:
    """An intent as a rule names it: `billing` matches billing and billing.refund (`routing._check`).
    A wildcard never matched — the intent `billing.refund` is not `billing.*` — and the shipped
    routing.yaml's own words, "intent billing.* or payments.*", invited it (a review)."""
    if any(char in word for char in "*?[]"):
        prefix = word.split("*", 1)[0].rstrip(".") if word.endswith("*") and "*" not in word[:-1] else None
        hint = f"write {prefix!r}: it matches {prefix} and {prefix}.…" if prefix else \
            "a rule's intent is a name or its first dotted parts (`billing` matches billing.refund)"
        raise ValidationError(f"{word!r}: intents are matched by their first parts, not by wildcards; {hint}")
    return word.lower()


class WhenSchema(_Strict):
    locals().update({name: Words(_CHOICES.get(name), _NORMAL.get(name, str.lower)) for name in LIST_CONDITIONS})
    intent = Words(normal=_intent_prefix)
    keywords = Words()
    keywords_in = fields.List(fields.String(validate=validate.OneOf(("escalation", "transcript"))),
                              validate=validate.Length(min=1))
    score_below = fields.Float(validate=validate.Range(*SCORES))
    score_above = fields.Float(validate=validate.Range(*SCORES))
    in_hours = fields.Boolean()
    hours_of = fields.String()  # whose calendar `in_hours` reads; default: the rule's team

    @validates_schema
    def _can_hold(self, data: dict[str, Any], **_: Any) -> None:
        # A bound at the end of the scale holds for no packet: `score_below: -1` never ran.
        lowest, highest = SCORES
        errors = {key: [f"no sentiment.score is {side} {limit}: scores run from {lowest} to {highest}"]
                  for key, side, limit in (("score_below", "below", lowest), ("score_above", "above", highest))
                  if data.get(key) == limit}
        # Each says how another condition is read, and is none itself: alone, the rule held for every
        # handoff — a rule mid-file that took them all, the rules after it never run (a review).
        for modifier, condition in (("keywords_in", "keywords"), ("hours_of", "in_hours")):
            if modifier in data and condition not in data:
                errors[modifier] = [f"says how `{condition}:` is read, and this rule has no `{condition}:`: "
                                    f"alone it is no condition (the rule would hold for every handoff)"]
        if errors:
            raise ValidationError(errors)
        if "score_below" in data and "score_above" in data and data["score_above"] >= data["score_below"]:
            raise ValidationError(f"no score is below {data['score_below']} and above {data['score_above']}",
                                  "score_below")

    @post_load
    def _compile(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "keywords" in data:
            data["keywords"] = Keywords(data["keywords"])
        return data


class ThenSchema(_Strict):
    team = fields.String(validate=validate.Length(min=1))
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    queue = fields.String()
    targets = fields.Dict(keys=fields.String(), values=fields.Dict(keys=fields.String()))
    target_names = fields.List(fields.String(), validate=[validate.Length(min=1), distinct])
    message = fields.String(validate=validate.Length(min=1))
    sticky = fields.Boolean(load_default=False)
    fallback = fields.String(validate=validate.OneOf(("team", "next")), load_default="team")


class RuleSchema(_Strict):
    name = fields.String(required=True, validate=validate.Length(min=1))
    description = fields.String()
    when = fields.Nested(WhenSchema, load_default=dict)
    then = fields.Nested(ThenSchema, load_default=dict)


class TeamSchema(_Strict):
    queue = fields.String()
    calendar = fields.String()
    expected_wait_seconds = fields.Integer(validate=validate.Range(min=0))
    targets = fields.Dict(keys=fields.String(), values=fields.Dict(keys=fields.String()))


class ObservedWaitSchema(_Strict):
    """How the quoted wait is learnt from assignments (`connector.observed_wait`)."""

    window_minutes = fields.Integer(validate=validate.Range(min=1, max=7 * 24 * 60), load_default=120)
    min_samples = fields.Integer(validate=validate.Range(min=1, max=1000), load_default=3)


class DefaultSchema(_Strict):
    team = fields.String(load_default="support")
    priority = fields.String(validate=validate.OneOf(PRIORITIES), load_default="normal")
    expected_wait_seconds = fields.Integer(validate=validate.Range(min=0))
    observed_wait = fields.Nested(ObservedWaitSchema, load_default=lambda: ObservedWaitSchema().load({}))


class RoutingSchema(_Strict):
    version = fields.Integer(required=True, validate=validate.Equal(1))
    default = fields.Nested(DefaultSchema, load_default=lambda: DefaultSchema().load({}))
    calendars = fields.Dict(keys=fields.String(), values=fields.Nested(business_hours.CalendarSchema),
                            load_default=dict)
    teams = fields.Dict(keys=fields.String(), values=fields.Nested(TeamSchema), load_default=dict)
    agent_fields = fields.Dict(keys=fields.String(), values=fields.String(), load_default=registry.agent_fields)
    rules = fields.List(fields.Nested(RuleSchema), required=True, validate=validate.Length(min=1))

    def __init__(self, *, known_targets: list[str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.known_targets = known_targets

    @validates_schema
    def _coherent(self, data: dict[str, Any], **_: Any) -> None:
        """Cross-references: a typo here would silently route everything to the default."""
        errors: dict[str, Any] = {}
        teams, calendars = data.get("teams") or {}, data.get("calendars") or {}
        for name, team in teams.items():
            if team.get("calendar") and team["calendar"] not in calendars:
                message = f"no calendar {team['calendar']!r} under calendars:"
                errors.setdefault("teams", {})[name] = {"calendar": [message]}
            if wrong := _routing_keys(team.get("targets") or {}, names=True):
                errors.setdefault("teams", {}).setdefault(name, {})["targets"] = wrong
        if teams and data["default"]["team"] not in teams:
            errors["default"] = {"team": [_not_a_team(data["default"]["team"], teams)]}
        if wrong := _agent_fields(data.get("agent_fields") or {}):
            errors["agent_fields"] = wrong
        seen: set[str] = set()
        rules = data.get("rules") or []
        for i, rule in enumerate(rules):
            then, problems = rule["then"], {}
            if rule["name"] in seen:
                problems["name"] = [f"{rule['name']!r} is used by an earlier rule"]
            seen.add(rule["name"])
            team = rule["when"].get("hours_of") or then.get("team") or data["default"]["team"]
            if then.get("team") and teams and then["team"] not in teams:
                problems.setdefault("then", {})["team"] = [_not_a_team(then["team"], teams)]
            hours_of = rule["when"].get("hours_of")
            if hours_of and teams and hours_of not in teams:
                problems.setdefault("when", {})["hours_of"] = [_not_a_team(hours_of, teams)]
            elif "in_hours" in rule["when"] and not (teams.get(team) or {}).get("calendar"):
                problems.setdefault("when", {})["in_hours"] = [f"team {team!r} has no calendar"]
            unknown = [n for n in [*(then.get("target_names") or ()), *(then.get("targets") or {})]
                       if self.known_targets is not None and n not in self.known_targets]
            if unknown:
                problems.setdefault("then", {})["target_names" if then.get("target_names") else "targets"] = [
                    f"unknown target(s) {unknown}; known: {self.known_targets}"]
            elif then.get("target_names") and all(n == registry.BUILT_IN for n in then["target_names"]):
                # Which targets are enabled is not known here (a disabled one is passed over when
                # routing: `decision.choose_targets`), but this rule is wrong either way: beside a
                # vendor preview reaches no agent, and alone it gets every handoff without a rule.
                problems.setdefault("then", {})["target_names"] = [
                    f"only the built-in {registry.BUILT_IN!r}: beside a vendor it reaches no agent (its handoffs "
                    "would go to every enabled target instead), and alone it is where every handoff goes "
                    "already; name a vendor, or leave target_names out"]
            if wrong := _routing_keys(then.get("targets") or {}):
                problems.setdefault("then", {})["targets"] = wrong
            if not rule["when"] and i != len(rules) - 1:
                problems["when"] = ["a rule without conditions must be the last: rules after it never run"]
            if not rule["when"] and then.get("fallback") == "next":
                problems.setdefault("then", {})["fallback"] = ["the default rule cannot fall through to a next rule"]
            if problems:
                errors.setdefault("rules", {})[i] = problems
        if rules and rules[-1]["when"]:
            errors.setdefault("rules", {}).setdefault(len(rules) - 1, {})["when"] = [
                "the last rule must be a default (no 'when:'), so every handoff is routed"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> RoutingConfig:
        for ids_by_target in [*(team.get("targets") for team in data["teams"].values()),
                              *(rule["then"].get("targets") for rule in data["rules"])]:
            for target, ids in (ids_by_target or {}).items():
                if target in registry.TARGETS:  # (checked by `_routing_keys`: others are refused)
                    adapter = registry.adapter_class(target)
                    ids.update({key: adapter.routing_id(value) for key, value in ids.items()})
        calendars = business_hours.build_calendars(data["calendars"])
        for team in data["teams"].values():
            if team.get("calendar"):
                team["calendar"] = calendars[team["calendar"]]
        return RoutingConfig(data, calendars=calendars)


def _not_a_team(name: Any, teams: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(str(name), [str(t) for t in teams], n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return f"{name!r} is not under teams:{hint}"


def _routing_keys(targets: Mapping[str, Mapping[str, Any]], *, names: bool = False) -> dict[str, Any]:
    """Per target, the keys its adapter does not read (`Adapter.routing_keys`), with a guess, and
    the ids it cannot take; an empty id under its key (the line to fix).
    `names`: a target no adapter is called, too (a team's: a rule's are named in `_coherent`) —
    a team's `zendsk:` ids were read by no one, and its tickets went to the default group unsaid."""
    wrong: dict[str, Any] = {}
    for target, ids in targets.items():
        if target not in registry.TARGETS:
            if names:
                hint = did_you_mean(target, registry.TARGETS)
                wrong[target] = [f"no target is called {target!r}; {hint}targets: {', '.join(registry.TARGETS)}"]
            continue
        adapter = registry.adapter_class(target)
        known = adapter.routing_keys
        for key, value in ids.items():
            if key not in known:
                hint = did_you_mean(key, sorted(known))
                reads = ", ".join(sorted(known)) or "nothing"
                problem = f"{key!r} is not an id {target} reads; {hint}it reads {reads}"
                wrong.setdefault(target, {}).setdefault("_schema", []).append(problem)
            elif value is None or (isinstance(value, str) and is_blank(value)):
                # `channel: #billing` is `channel:` and a comment: the alerts went to the default channel unsaid.
                wrong.setdefault(target, {})[key] = [
                    f"empty: a '#' after a space starts a YAML comment, so `{key}: #…` holds nothing; "
                    f"write the {target} id itself (quoted if it must begin with '#')"]
            elif problem := adapter.routing_id_problem(key, value):
                wrong.setdefault(target, {}).setdefault("_schema", []).append(f"{key}: {problem}")
    return wrong


def _agent_fields(given: Mapping[str, str]) -> dict[str, list[str]]:
    """`agent_fields:` entries no adapter reads: `zendesk: assignee` put the sticky agent nowhere,
    `zendesk: group_id` put a user's id where a group's goes, and `zendsk:` was read by no one — while
    the answer named the agent (a review). Each target takes an agent by one field of its own."""
    wrong: dict[str, list[str]] = {}
    takes = registry.agent_fields()
    for target, field in given.items():
        if target not in registry.TARGETS:
            hint = did_you_mean(target, takes)
            wrong[target] = [f"no target is called {target!r}; {hint}targets that take an agent: {', '.join(takes)}"]
        elif target not in takes:
            wrong[target] = [f"{target} takes no agent by id; targets that do: {', '.join(takes)}"]
        elif field != takes[target]:
            wrong[target] = [f"{target} takes an agent by {takes[target]!r} only, not {field!r}"]
    return wrong


def flatten(messages: Any, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested messages as (key path, message): `rules[2].when.segment`."""
    if isinstance(messages, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in messages.items():
            path = f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}" if prefix else str(key)
            # `_schema` (whole-object errors) and `value` (a Dict field's value) add no key of their own
            out.extend(flatten(value, prefix if key in ("_schema", "value") else path))
        return out
    return [(prefix, str(m)) for m in (messages if isinstance(messages, list) else [messages])]


def compile_routing(data: Mapping[str, Any], known_targets: list[str] | None = None) -> RoutingConfig:
    """A validated, ready-to-match config; raises marshmallow's ValidationError (mappings adds lines)."""
    if isinstance(data, RoutingConfig):
        return data
    raw = data if data.get("rules") is not None or data.get("version") else {**BUILT_IN, **data}
    return RoutingSchema(known_targets=known_targets).load(raw)


def compiled(routing: Mapping[str, Any]) -> RoutingConfig:
    try:
        return compile_routing(routing)
    except ValidationError as err:
        raise ConfigError("mappings/routing.yaml", "; ".join(f"{k}: {v}" for k, v in flatten(err.messages))) from None


# Conditions a later rule's may be compared with (`shadowed_rules`): each a set of words matched as
# equal, or as a prefix (an intent's dotted parts, a language tag's); `skills_all` the other way round.
_EQUAL = ("department", "segment", "sentiment", "sentiment_trend", "urgency", "reason", "channel", "skills_any")
_PREFIX = {"intent": ".", "language": "-"}


def shadowed_rules(routing: Mapping[str, Any]) -> list[str]:
    """Rules that never run: every handoff one matches, an earlier rule matches first — a rule
    added after a broader one (`vip-billing` after `vip`), or a copy of one (an admin's review).
    Only plain word conditions are compared; an earlier rule that may pass a handoff on (`fallback:
    next`, `target_names`) or reads keywords, scores or hours is taken as shadowing nothing."""
    rules, said = routing.get("rules") or [], []
    for i, later in enumerate(rules):
        if not later["when"]:
            continue  # the default: it takes what every rule before it did not
        for j, earlier in enumerate(rules[:i]):
            if earlier["when"] and _covers(earlier, later["when"]):
                said.append(f"routing.yaml rules[{i}] ({later['name']}) never runs: every handoff it matches, "
                            f"rules[{j}] ({earlier['name']}) matches first — move it above that rule, or narrow "
                            "that one")
                break
    return said


def _covers(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> bool:
    """Whether every handoff `later`'s conditions hold for, `earlier` (a rule) takes."""
    when, then = earlier["when"], earlier["then"]
    if then.get("fallback") == "next" or then.get("target_names") or set(when) - {*_EQUAL, *_PREFIX, "skills_all"}:
        return False
    for key, wanted in when.items():
        if key not in later:
            return False
        if key == "skills_all":  # a handoff with all of later's skills has all of the earlier's
            if not set(wanted) <= set(later[key]):
                return False
        elif key in _PREFIX:
            mark = _PREFIX[key]
            if not all(any(word == w.rstrip(mark) or word.startswith(w.rstrip(mark) + mark) for w in wanted)
                       for word in later[key]):
                return False
        elif not set(later[key]) <= set(wanted):
            return False
    return True
