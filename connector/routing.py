"""Who should take the handoff: team, queue, agent, priority, per-vendor ids — with a trace of why.

`mappings/routing.yaml` holds ordered rules; the first whose `when:` conditions all hold decides.
A rule without `when:` is the default: one must exist, and it must come last. The file's schema is
in `connector.routing_schema` (`connector.mappings` validates it at start-up and on reload, naming
file and line); mappings/README.md documents the format.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

from adapters import registry

from . import business_hours
from .errors import ConfigError
from .routing_schema import PRIORITIES, Keywords, RoutingConfig, compile_routing, compiled, language_tag
from .text_rules import is_blank

__all__ = ["PRIORITIES", "Facts", "assign", "compile_routing", "expected_wait", "first_match", "keep_with",
           "kept_view", "wait_estimate", "wait_quote", "wants_previous_agent"]

def _word(value: Any) -> str:
    """A packet value as rules compare it: trimmed, lowercase ("" when absent)."""
    return str(value or "").strip().lower()


class Facts:
    """The packet fields rules look at, normalized once (lowercase, trimmed, defaults): a CRM's
    `segment: "VIP "` skipped the vip rule while a department with spaces was tolerated (a review)."""

    def __init__(self, packet: Mapping[str, Any]):
        self.packet = packet
        get = lambda key: packet.get(key) or {}  # noqa: E731
        self.intent = _word(get("intent").get("name"))
        self.department = _word(get("routing").get("department"))
        self.skills = {_word(s) for s in get("routing").get("skills") or ()}
        self.segment = _word(get("customer").get("segment"))
        self.sentiment = _word(get("sentiment").get("label"))
        self.trend = _word(get("sentiment").get("trend"))
        self.score = get("sentiment").get("score")
        self.urgency = _word(get("escalation").get("urgency"))
        self.reason = _word(get("escalation").get("reason"))
        self.keywords = {_word(k) for k in get("escalation").get("keywords") or ()}
        self.language = language_tag(str(get("conversation").get("language") or ""))
        self.channel = _word(get("conversation").get("channel"))
        self._checked: dict[tuple[int, dt.datetime], tuple[Mapping[str, Any], bool, list[str]]] = {}

    def matches(self, rule: Mapping[str, Any], config: RoutingConfig, now: dt.datetime) -> tuple[bool, list[str]]:
        """Whether `rule`'s conditions hold, and what was checked. Kept per rule and clock reading:
        the decision asks twice (is the matching rule sticky? then: assign), keyword rules search
        the whole transcript, and intake runs it on the path the bot waits on."""
        key = (id(rule), now)
        kept = self._checked.get(key)
        if kept is None or kept[0] is not rule:  # the rule is kept too: its id cannot be reused meanwhile
            kept = self._checked[key] = (rule, *_matches(rule, self, config, now))
        return kept[1], list(kept[2])

    @cached_property
    def customer_messages(self) -> list[str]:
        """What the customer wrote (not the bot), message by message: keyword rules look for their
        words only, each within one message."""
        return [str(e.get("text") or "") for e in self.packet.get("transcript") or () if e.get("role") == "customer"]


def _one_of(actual: str, wanted: list[str], label: str) -> tuple[bool, str]:
    return actual in wanted, f"{label}={actual or '(none)'} {'in' if actual in wanted else 'not in'} {wanted}"


def _check(name: str, wanted: Any, f: Facts, ctx: dict[str, Any]) -> tuple[bool, str]:
    """One condition: (held?, what was checked) — the second part goes into the trace."""
    if name == "intent":  # prefix on dotted segments: `billing` matches billing and billing.refund
        hit = next((p for p in wanted if f.intent == p.rstrip(".") or f.intent.startswith(p.rstrip(".") + ".")), None)
        return hit is not None, f"intent={f.intent or '(none)'} {'starts with ' + hit if hit else 'matches none of'}" \
                                f"{'' if hit else ' ' + str(wanted)}"
    if name in ("department", "segment", "sentiment", "urgency", "reason", "channel"):
        label = {"sentiment": "sentiment.label", "reason": "escalation.reason", "urgency": "escalation.urgency"}
        return _one_of(getattr(f, name), wanted, label.get(name, name))
    if name == "sentiment_trend":
        return _one_of(f.trend, wanted, "sentiment.trend")
    if name == "language":  # BCP 47 prefix: `es` matches es-MX
        hit = any(f.language == w or f.language.startswith(w + "-") for w in wanted)
        return hit, f"language={f.language or '(none)'} {'matches' if hit else 'matches none of'} {wanted}"
    if name in ("skills_any", "skills_all"):
        have = f.skills & set(wanted)
        hit = bool(have) if name == "skills_any" else have == set(wanted)
        which = "any" if name == "skills_any" else "all"
        return hit, f"skills {sorted(f.skills)} {'have' if hit else 'lack'} {which} of {wanted}"
    if name in ("score_below", "score_above"):
        score = f.score
        hit = isinstance(score, (int, float)) and (score < wanted if name == "score_below" else score > wanted)
        shown = "(none)" if score is None else score  # as every other condition shows a missing field
        return hit, f"sentiment.score={shown} {'is' if hit else 'is not'} {name.split('_')[1]} {wanted}"
    if name == "keywords":
        return _keywords(wanted, f, ctx["keywords_in"])
    if name == "in_hours":
        calendar, team = ctx["calendar"], ctx["team"]
        if calendar is None:  # a team the bot's department names, without hours (the others are checked at load)
            return wanted, f"team {team} has no calendar: always open"
        is_open = business_hours.is_open(calendar, ctx["now"])
        return is_open == wanted, f"team {team} is {'open' if is_open else 'closed'} now ({calendar.name}, " \
                                  f"{calendar.timezone})"
    raise ConfigError("mappings/routing.yaml", f"unknown condition {name!r}")  # the schema prevents this


KEYWORDS_IN = ("escalation", "transcript")  # where a rule's keywords are looked for, unless it says


def _keywords(patterns: Keywords, f: Facts, where: list[str]) -> tuple[bool, str]:
    in_escalation = "escalation" in where and any(p.pattern_text in f.keywords for p in patterns)
    # Message by message: a keyword of two words matched across two ("…don't cancel", then "my account
    # was charged"), routing on a phrase the customer never wrote.
    if in_escalation or ("transcript" in where and any(map(patterns.any_in, f.customer_messages))):
        return _first_keyword(patterns, f, where)
    return _no_keyword(patterns, where)


def _first_keyword(patterns: Keywords, f: Facts, where: list[str]) -> tuple[bool, str]:
    """Which keyword held, in the rule's order (the trace names it)."""
    for pattern in patterns:
        word = pattern.pattern_text
        if "escalation" in where and word in f.keywords:
            return True, f"keyword {word!r} in escalation.keywords"
        if "transcript" in where and any(map(pattern.search, f.customer_messages)):
            return True, f"keyword {word!r} in the customer's messages"
    return _no_keyword(patterns, where)


def _words_said(rule: Mapping[str, Any], f: Facts) -> list[str]:
    """The matched rule's keywords the customer wrote: the brief's "Routed to" names them. A rule
    that fired on "cancel my account" deep in the transcript read "(rule fraud-or-legal)", and the
    agent searched the messages for why (escalation.keywords, the bot's own, are shown as sent)."""
    when = rule.get("when") or {}
    if "keywords" not in when or "transcript" not in when.get("keywords_in", KEYWORDS_IN):
        return []
    # As typed, and within one message: a keyword of two words matched across two messages ("…don't
    # cancel" then "my account was charged twice"), and an agent searching for the quote found nothing.
    said: list[str] = []
    for pattern in when["keywords"]:
        found = next((words for words in map(pattern.found_in, f.customer_messages) if words is not None), None)
        if found is not None:
            said.append(found)
    return said


def _no_keyword(patterns: Keywords, where: list[str]) -> tuple[bool, str]:
    return False, f"no keyword of {[p.pattern_text for p in patterns]} in {' or '.join(where)}"


def _matches(rule: Mapping[str, Any], f: Facts, config: RoutingConfig, now: dt.datetime) -> tuple[bool, list[str]]:
    when = dict(rule["when"])
    # The team the rule routes to, as `_decide` chooses it: without a `then.team`, the team the bot's
    # department names — `in_hours` read the default team's, and an open billing team's handoff went
    # out as after-hours while New York's support was closed (a review). One without a calendar is
    # always open, as routing.yaml says — so is a department no team matches, which `_decide` makes
    # the team as named (the default team's hours were read for it).
    hinted = department_team((f.packet.get("routing") or {}).get("department"), config["teams"])
    team = when.pop("hours_of", None) or rule["then"].get("team") or hinted or config["default"]["team"]
    ctx = {"now": now, "team": team, "keywords_in": when.pop("keywords_in", KEYWORDS_IN),
           "calendar": (config["teams"].get(team) or {}).get("calendar")}
    checked: list[str] = []
    for name, wanted in when.items():
        held, note = _check(name, wanted, f, ctx)
        checked.append(note)
        if not held:
            return False, checked
    return True, checked


def wants_previous_agent(packet: Mapping[str, Any], routing: Mapping[str, Any], *,
                         now: dt.datetime | None = None, facts: Facts | None = None) -> bool:
    """Whether the first rule whose conditions hold is sticky — the only case where asking a vendor
    for the customer's previous agent (a call made before the handoff is stored) can change anything.
    Pass the same `facts` and `now` to `assign` afterwards and it reuses what was checked here."""
    rule = first_match(packet, routing, now=now, facts=facts)
    return bool(rule is not None and rule["then"].get("sticky"))


def first_match(packet: Mapping[str, Any], routing: Mapping[str, Any], *,
                now: dt.datetime | None = None, facts: Facts | None = None) -> Mapping[str, Any] | None:
    """The first rule whose conditions hold (before a sticky rule's `fallback: next`), as
    `wants_previous_agent` reads it: a sticky one's `target_names` say whom to ask for the previous
    agent. None when none holds (a file without a default, refused at load)."""
    config, facts = compiled(routing), facts or Facts(packet)
    now = now or dt.datetime.now(dt.UTC)
    return next((rule for rule in config["rules"] if facts.matches(rule, config, now)[0]), None)


# What asking for the customer's previous agent gave for a sticky rule: the agent
# (`{"id", "name", "email", "target"}`) or None, and why none is known when asking failed.
Asked = tuple[Mapping[str, Any] | None, str | None]


def assign(packet: Mapping[str, Any], routing: Mapping[str, Any], *, now: dt.datetime | None = None,
           previous_agent: Mapping[str, Any] | None = None, facts: Facts | None = None,
           lookup_failed: str | None = None, ask: Callable[[Mapping[str, Any]], Asked] | None = None) -> dict[str, Any]:
    """The first matching rule's decision. `previous_agent` is the assignee of the customer's recent
    open ticket (`{"id", "name", "email", "target"}`), offered when the rule says `sticky: true`;
    `lookup_failed` says why none is known when asking for one failed (the trace says it). Or
    `ask(rule)` gives both for each sticky rule reached: each asks at the targets it sends to."""
    config = compiled(routing)
    now = now or dt.datetime.now(dt.UTC)
    facts, trace = facts or Facts(packet), []
    for rule in config["rules"]:
        held, checked = facts.matches(rule, config, now)
        if not held:
            trace.append(f"rule {rule['name']}: skipped, {checked[-1]}")
            continue
        if rule["then"].get("sticky") and ask is not None:
            # A sticky rule's `fallback: next` may reach another sticky rule sending elsewhere
            # (`target_names`): it was given the first one's lookup, made at the first one's
            # targets, and its trace said "no previous agent known" of vendors nobody asked.
            previous_agent, lookup_failed = ask(rule)
        if rule["then"].get("sticky") and not previous_agent and rule["then"].get("fallback") == "next":
            trace.append(f"rule {rule['name']}: matched, but sticky with {_no_agent(lookup_failed)}; "
                         "fallback: next rule")
            continue
        why = "; ".join(checked) if checked else "default rule, no conditions"
        trace.append(f"rule {rule['name']}: matched ({why})")
        assignment = _decide(packet, rule, config, now, previous_agent, trace, lookup_failed)
        if said := _words_said(rule, facts):
            assignment["customer_words"] = said
        return assignment
    raise ConfigError("mappings/routing.yaml", "no rule matched; the file needs a default rule (one without 'when:')")


def _decide(packet: Mapping[str, Any], rule: Mapping[str, Any], config: RoutingConfig, now: dt.datetime,
            previous_agent: Mapping[str, Any] | None, trace: list[str], lookup_failed: str | None) -> dict[str, Any]:
    then, default = rule["then"], config["default"]
    escalation = packet.get("escalation") or {}
    # A hint that says nothing is no hint ("a text that says nothing is no text", as for ids): a
    # `department` of spaces (an empty slot, padded) became the team, with no queue, while the
    # customer was told "our support team"; "" already fell back to the default.
    hints = {key: value for key, value in (packet.get("routing") or {}).items()
             if not (isinstance(value, str) and is_blank(value))}
    department = None if then.get("team") else _team_for(hints.get("department"), config, trace)
    team, why = next((v, w) for v, w in ((then.get("team"), f"rule {rule['name']}"),
                                         (department, "routing.department (the bot's hint)"),
                                         (default["team"], "the default team")) if v)
    trace.append(f"team {team} from {why}")
    priority, why = next((v, w) for v, w in ((then.get("priority"), f"rule {rule['name']}"),
                                             (hints.get("priority"), "routing.priority (the bot's hint)"),
                                             (escalation.get("urgency"), "escalation.urgency"),
                                             (default["priority"], "the default priority")) if v)
    trace.append(f"priority {priority} from {why}")
    settings = config["teams"].get(team) or {}
    targets = copy.deepcopy(dict(settings.get("targets") or {}))
    for vendor, ids in (then.get("targets") or {}).items():
        targets.setdefault(vendor, {}).update(ids)
    # The queue shown is the one the ticket lands in: a bot's `routing.queue` ("Nonexistent Queue")
    # replaced the team's in the answer and the brief while the ticket went to the team's group —
    # nothing routes on that hint. It names the queue only where routing.yaml names none.
    queue, why = next(((v, w) for v, w in ((then.get("queue"), f"rule {rule['name']}"),
                                           (settings.get("queue"), f"team {team}"),
                                           (hints.get("queue"), "routing.queue (the bot's hint)")) if v), (None, None))
    if queue is not None:
        trace.append(f"queue {queue} from {why}")
    if hints.get("queue") and hints["queue"] != queue:
        trace.append(f"routing.queue {hints['queue']!r} (the bot's hint) not taken: the ticket goes to {queue}")
    assignment: dict[str, Any] = {
        "team": team, "queue": queue,
        "agent": None, "priority": priority, "rule": rule["name"], "trace": trace, "targets": targets,
        "target_names": list(then["target_names"]) if then.get("target_names") else None,
        "customer_message_template": then.get("message"),
    }
    if then.get("sticky"):
        _offer_previous_agent(assignment, previous_agent, config, trace, lookup_failed)
    if line := _preferred_agent_line(hints.get("preferred_agent"), assignment, rule, lookup_failed):
        trace.append(line)
    assignment.update(_hours(team, settings, now, trace))
    return assignment


def _hours(team: str, settings: Mapping[str, Any], now: dt.datetime, trace: list[str]) -> dict[str, Any]:
    """`business_hours` and `out_of_hours` of a team (none known without a calendar)."""
    calendar = settings.get("calendar")
    if calendar is None:
        return {"business_hours": None, "out_of_hours": False}
    state = business_hours.status(calendar, now)
    trace.append(f"team {team} is {'open' if state['open'] else 'closed'} ({calendar.name}, {calendar.timezone})"
                 + ("" if state["open"] else f"; next opening {state['next_opening'] or 'unknown'}"))
    return {"business_hours": state, "out_of_hours": not state["open"]}


def keep_with(assignment: dict[str, Any], team: str, routing: Mapping[str, Any], now: dt.datetime,
              targets: list[str]) -> None:
    """The conversation's tickets at every target stay with `team`, not the one routing chose
    (`connector.kept_tickets`): while they do, the bot and the customer are told that team's name,
    queue, hours (`kept_view`, kept under `kept`) and wait (`decision.with_kept` adds it and the message).
    The rest stays routing's: the brief says its choice beside the ticket's team, and a ticket found
    closed is followed by a new one where routing sends it — what the answer then says."""
    settings = compiled(routing)["teams"].get(team) or {}
    trace = assignment["trace"]
    trace.append(f"team {team} keeps this handoff: the conversation's tickets at {', '.join(targets)} were opened "
                 f"for {team} and are not moved (routing chose {assignment['team']}); the bot and the customer "
                 f"are told {team}'s wait and hours while they are updated")
    assignment["kept"] = {"team": team, "queue": settings.get("queue"), **_hours(team, settings, now, trace)}


def kept_view(assignment: Mapping[str, Any]) -> Mapping[str, Any]:
    """The assignment with the team the conversation's tickets stay with, where they do (`keep_with`)."""
    kept = assignment.get("kept")
    return {**assignment, **kept} if isinstance(kept, Mapping) else assignment


def _team_for(hint: Any, config: RoutingConfig, trace: list[str]) -> str | None:
    """The configured team a bot's `routing.department` names, as rules compare it (`Facts`): in
    any case ("Billing" is billing) and without the spaces around it ("billing "), nothing more, so
    a team chosen this way is one a rule's `department:` condition matches too. Taken as written,
    "Billing" (and "billing ") lost billing's calendar, queue and vendor ids, and the customer was
    promised a reply from a team that was closed. A department no team matches is still the team
    (a helpdesk group routing.yaml does not describe), without the spaces around it, and the trace
    says it has no calendar, queue or ids here."""
    teams = config["teams"]
    team = department_team(hint, teams)
    if team is not None and teams and team not in teams:
        trace.append(f"routing.department {str(hint)[:100]!r} is no team in routing.yaml "
                     f"({', '.join(sorted(teams))}): no calendar, queue or vendor ids for it")
    return team


def department_team(hint: Any, teams: Mapping[str, Any]) -> str | None:
    """The team a bot's `routing.department` sends the handoff to: the configured one it names
    (`configured_team`), else the department as written, without the spaces around it; None when it
    names nothing. One rule for routing's choice (`_team_for`) and `in_hours`' (`_matches`)."""
    if not hint or not str(hint).strip():
        return None
    return configured_team(hint, teams) or str(hint).strip()


def configured_team(hint: Any, teams: Mapping[str, Any]) -> str | None:
    """The team of routing.yaml that a bot's `routing.department` names, in any case and without the
    spaces around it ("billing " is billing, as a rule's `department:` reads it); None if none."""
    wanted = str(hint).strip().lower()
    return next((name for name in teams if str(name).lower() == wanted), None)


def department_warnings(packet: Mapping[str, Any], assignment: Mapping[str, Any],
                        routing: Mapping[str, Any]) -> list[str]:
    """For the answer's `warnings`: the team came from a `routing.department` routing.yaml has no
    team for. It is taken as written (a helpdesk group the file does not describe), but with no
    queue, calendar or vendor ids: the bot asked for a department and no target routes it there."""
    hint = (packet.get("routing") or {}).get("department")
    if not hint or assignment.get("team") != str(hint).strip():  # the usual handoff: no hint, or a rule's team
        return []
    teams = compiled(routing)["teams"]
    if not teams or configured_team(hint, teams) is not None:
        return []
    return [f"routing.department: {str(hint)[:100]!r} is no team in routing.yaml ({', '.join(sorted(teams))}); "
            "the handoff is assigned to it as written, with no queue, calendar or vendor ids: each target "
            "routes it as one with no team"]


# Trace lines that begin so say the bot's `routing.preferred_agent` was not taken; the answer's
# warnings repeat them (`preferred_agent_warnings`).
PREFERRED_NOT_TAKEN = "routing.preferred_agent "


def _preferred_agent_line(hint: Any, assignment: Mapping[str, Any], rule: Mapping[str, Any],
                          lookup_failed: str | None = None) -> str | None:
    """What became of the bot's `routing.preferred_agent`, for the trace. routing.yaml cannot assign
    an agent a bot names: the only agent it offers is the customer's previous one, on a sticky
    rule (`_offer_previous_agent`). The hint was dropped without a word — the agent null, the trace
    silent — and the bot took it as followed. None when no agent was named."""
    hint = hint if isinstance(hint, Mapping) else {}
    email, agent_id = str(hint.get("email") or ""), str(hint.get("id") or "")
    if not (email or agent_id):
        return None
    named = f"{email} (id {agent_id})" if email and agent_id else email or agent_id
    previous = assignment.get("previous_agent") or {}
    # By its vendor's own form: a Salesforce user named by the 15 characters its pages show is the
    # 18-character one the lookup found ("not taken: … offered Sam instead", of Sam; a review).
    vendor = registry.adapter_class(previous["target"]) if previous.get("target") in registry.TARGETS else None
    as_vendor_writes = str(vendor.routing_id(agent_id)) if vendor is not None else agent_id
    if (email and email.lower() == str(previous.get("email") or "").lower()) or \
            (agent_id and as_vendor_writes == str(previous.get("id") or "")):
        return f"sticky: the previous agent offered is routing.preferred_agent {named} (the bot's hint)"
    if previous:
        why = (f"rule {rule['name']} is sticky and offered the customer's previous agent, {assignment['agent']}, "
               "instead; routing.yaml has no rule that assigns the agent a bot prefers")
    else:
        sticky = f"is sticky, but {_no_agent(lookup_failed)}" if rule["then"].get("sticky") else "is not sticky"
        why = (f"routing.yaml has no rule that assigns the agent a bot prefers (a sticky rule offers the customer's "
               f"previous agent; rule {rule['name']} {sticky}): the ticket goes to team {assignment['team']}")
    return f"{PREFERRED_NOT_TAKEN}{named} (the bot's hint) not taken: {why}"


def preferred_agent_warnings(assignment: Mapping[str, Any]) -> list[str]:
    """For the answer's `warnings`: the bot's `routing.preferred_agent` not taken, as the trace said
    when the handoff was routed (so a replay warns as the first answer did)."""
    return [line for line in assignment.get("trace") or () if line.startswith(PREFERRED_NOT_TAKEN)]


def _offer_previous_agent(assignment: dict[str, Any], agent: Mapping[str, Any] | None, config: RoutingConfig,
                          trace: list[str], lookup_failed: str | None = None) -> None:
    if not agent:
        trace.append(f"sticky: {_no_agent(lookup_failed)}; fallback: team {assignment['team']}")
        return
    label = agent.get("name") or agent.get("email") or agent.get("id")
    assignment["agent"] = label
    assignment["previous_agent"] = {k: agent.get(k) for k in ("id", "name", "email", "target")}
    field = config["agent_fields"].get(str(agent.get("target")))
    if field and agent.get("id"):
        ids = assignment["targets"].setdefault(agent["target"], {})
        team_value, ids[field] = ids.get(field), agent["id"]
        # Where the agent went in place of the team's own id (Salesforce's owner_id: the team's queue),
        # the adapter falls back to that one if the vendor refuses the agent: the case went to nobody's
        # queue, left to the org's assignment rules (a review).
        if team_value is not None and str(team_value) != str(agent["id"]):
            assignment["previous_agent"]["in_place_of"] = team_value
        trace.append(f"sticky: offered previous agent {label} ({agent['target']} {field}={agent['id']})")
    else:
        trace.append(f"sticky: offered previous agent {label} by name only (no id field for {agent.get('target')!r})")


def name_routed_agent(assignment: dict[str, Any], targets: list[str], routing: Mapping[str, Any],
                      preferred: Any = None) -> None:
    """`assignment.agent` for an agent routing.yaml puts on the ticket itself — a rule's or team's
    `assignee_id`, a Salesforce user as `owner_id` — at one of `targets` (where the handoff goes;
    the built-in preview alone renders every vendor's): the ticket was made with them, and the
    answer said nobody (`agent: null`), its trace silent (a review). Named by the vendor and that
    id (routing.yaml has no names; a bare number meant nothing in a Slack alert's "Routed to");
    `routed_agents` says where, one per target that names one (a Zendesk assignee and a Salesforce
    owner are two people), so the answer takes a name back when that delivery does not place them
    (`answers._agent_now`). A sticky rule's previous agent, already named, stays. The
    adapters' own fields: routing.yaml's `agent_fields:` says where a sticky agent may go, and a
    rule's assignee goes on the ticket whatever it says. `preferred`: the bot's `routing.preferred_agent`
    (`_preferred_agent_routed`)."""
    if assignment.get("agent"):
        return
    config, fields = compiled(routing), registry.agent_fields()
    rendered = targets if any(target != registry.BUILT_IN for target in targets) else registry.vendor_names()
    agents = []
    for target in rendered:
        field = fields.get(target)
        value = ((assignment.get("targets") or {}).get(target) or {}).get(field) if field else None
        if value is None or not registry.adapter_class(target).names_an_agent(value):
            continue
        agent = {"target": target, "id": str(value), "label": f"{target.capitalize()} agent {value}"}
        # A rule's agent in place of its team's own id (a Salesforce queue as `owner_id`): the
        # adapter falls back to that one if the vendor refuses the agent, as for a sticky one.
        teams = ((config["teams"].get(assignment["team"]) or {}).get("targets") or {}).get(target) or {}
        if teams.get(field) is not None and str(teams[field]) != str(value):
            agent["in_place_of"] = teams[field]
        agents.append(agent)
        assignment["trace"].append(f"agent: {agent['label']}, {target} {field} from routing.yaml (rule "
                                   f"{assignment['rule']}, team {assignment['team']})")
    if agents:
        assignment["routed_agents"] = agents
        assignment["agent"] = ", ".join(agent["label"] for agent in agents)
        _preferred_agent_routed(assignment, agents, preferred)


def _preferred_agent_routed(assignment: dict[str, Any], agents: list[dict[str, Any]], hint: Any) -> None:
    """The trace's line on the bot's preferred agent (`_preferred_agent_line`, written before routing's
    own agent was named) as it stands once one is: taken, where the rule's or team's agent is that
    one; else naming the agent the ticket goes to. It said "not taken … the ticket goes to team tier2"
    beside a ticket assigned to exactly that agent, and the answer warned of it (a routing review)."""
    trace = assignment["trace"]
    at = next((n for n, line in enumerate(trace) if line.startswith(PREFERRED_NOT_TAKEN)), None)
    if at is None:
        return
    hint = hint if isinstance(hint, Mapping) else {}
    agent_id = str(hint.get("id") or "")
    if agent_id and any(str(registry.adapter_class(agent["target"]).routing_id(agent_id)) == agent["id"]
                        for agent in agents):
        trace[at] = f"agent: routing.preferred_agent {agent_id} (the bot's hint) is the agent routing.yaml names"
        return
    team = f"the ticket goes to team {assignment['team']}"
    trace[at] = trace[at].replace(team, f"{team}, to {', '.join(agent['label'] for agent in agents)}")


def _no_agent(lookup_failed: str | None) -> str:
    """The trace's words for a sticky rule without an agent: a failed lookup is not a customer
    without one — it read "no previous agent known" when the vendor was down (a review)."""
    return f"the previous agent unknown: {lookup_failed}" if lookup_failed else "no previous agent known"


def wait_estimate(assignment: Mapping[str, Any], routing: Mapping[str, Any], *,
                  observed_wait: Callable[[str], int | None] | None = None) -> tuple[int | None, str]:
    """(seconds, where the figure came from). Out of hours there is no wait to quote: the message
    gives the next opening instead. Never an invented number."""
    return wait_quote(assignment, routing, observed_wait=observed_wait)[:2]


def wait_quote(assignment: Mapping[str, Any], routing: Mapping[str, Any], *,
               observed_wait: Callable[[str], int | None] | None = None) -> tuple[int | None, str, int | None]:
    """`wait_estimate`'s (seconds, where the figure came from), and the figure not quoted because it
    runs past the team's closing, else None: the customer message then says when the team closes
    and opens again (`customer_message.compose`), not "as soon as they're free"."""
    if assignment.get("out_of_hours"):
        return None, "out of hours", None
    seconds, source = _wait_figure(assignment, routing, observed_wait)
    closes_in = (assignment.get("business_hours") or {}).get("closes_in_s")
    if seconds is not None and closes_in is not None and seconds > closes_in:
        # "About 30 minutes" at 17:55 to a team leaving at 18:00 promised what nobody would keep.
        return None, f"{source} {seconds} s, but the team closes in {closes_in} s", seconds
    return seconds, source, None


# The least wait quoted: the customer is told "about 1 minute" at the least (`customer_message`),
# and the bot's `estimated_wait_seconds` says the same. A team whose tickets a trigger assigns as
# they are made observes 0 s (Zendesk's whole seconds): quoted so, the bot read "someone is there
# now" beside "about 1 minute" (a review); `expected_wait_seconds: 0` alike.
LEAST_QUOTED_S = 60


def _wait_figure(assignment: Mapping[str, Any], routing: Mapping[str, Any],
                 observed_wait: Callable[[str], int | None] | None) -> tuple[int | None, str]:
    team = str(assignment.get("team") or "")
    observed = observed_wait(team) if observed_wait else None
    if observed is not None:
        return max(LEAST_QUOTED_S, int(observed)), "observed"
    config = compiled(routing)
    for value, source in (((config["teams"].get(team) or {}).get("expected_wait_seconds"), "team"),
                          (config["default"].get("expected_wait_seconds"), "default")):
        if value is not None:
            return max(LEAST_QUOTED_S, int(value)), f"configured ({source})"
    return None, "unknown"


def expected_wait(assignment: Mapping[str, Any], routing: Mapping[str, Any], *,
                  observed_wait: Callable[[str], int | None] | None = None) -> int | None:
    """Observed time-to-assignment for the team, else its configured figure, else None."""
    return wait_estimate(assignment, routing, observed_wait=observed_wait)[0]
