"""Routing rules: every condition, every action, first match wins, the default, stickiness, waits."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from connector.errors import ConfigError
from connector.mappings import load_mappings
from connector.routing import assign, compile_routing, expected_wait, wait_estimate
from tests.factories import FIXTURES, full_packet, minimal_packet

TUESDAY_NOON = dt.datetime(2026, 11, 24, 11, 0, tzinfo=dt.UTC)  # 12:00 in Berlin: open
SATURDAY = dt.datetime(2026, 11, 28, 11, 0, tzinfo=dt.UTC)
BASE = """
version: 1
default: {team: support, priority: normal}
calendars:
  berlin: {timezone: Europe/Berlin, hours: {mon-fri: "09:00-17:00"}}
teams:
  support: {queue: Support, targets: {zendesk: {group_id: "100"}}}
  special: {queue: Special, calendar: berlin, targets: {zendesk: {group_id: "900"}, slack: {channel: C0SPECIAL}}}
"""


def config(rules: str, base: str = BASE):  # type: ignore[no-untyped-def]
    return compile_routing(yaml.safe_load(base + "rules:\n" + rules), ["zendesk", "salesforce", "slack"])


def one_rule(when: str, then: str = "{team: special}"):  # type: ignore[no-untyped-def]
    return config(f"  - {{name: r, when: {when}, then: {then}}}\n  - {{name: default}}\n")


def packet(**changes):  # type: ignore[no-untyped-def]
    p = full_packet()
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = p
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return p


CONDITIONS = [  # (when, packet change that matches, packet change that does not)
    ("{intent: billing}", {"intent__name": "billing.refund"}, {"intent__name": "billingish.refund"}),
    ("{intent: [billing.refund, payments]}", {"intent__name": "payments"}, {"intent__name": "billing.invoice"}),
    ("{department: Billing}", {"routing__department": "billing"}, {"routing__department": "sales"}),
    ("{skills_any: [quickbooks, xero]}", {"routing__skills": ["xero"]}, {"routing__skills": ["sage"]}),
    ("{skills_all: [quickbooks, xero]}", {"routing__skills": ["xero", "quickbooks", "sage"]},
     {"routing__skills": ["xero"]}),
    ("{segment: [vip, enterprise]}", {"customer__segment": "VIP"}, {"customer__segment": "standard"}),
    ("{sentiment: angry}", {"sentiment__label": "angry"}, {"sentiment__label": "neutral"}),
    ("{sentiment_trend: worsening}", {"sentiment__trend": "worsening"}, {"sentiment__trend": "stable"}),
    ("{score_below: -0.5}", {"sentiment__score": -0.8}, {"sentiment__score": -0.5}),
    ("{score_above: 0.5}", {"sentiment__score": 0.9}, {"sentiment__score": 0.5}),
    ("{urgency: [urgent]}", {"escalation__urgency": "urgent"}, {"escalation__urgency": "high"}),
    ("{reason: regulatory}", {"escalation__reason": "regulatory"}, {"escalation__reason": "other"}),
    ("{keywords: [fraud]}", {"escalation__keywords": ["Fraud"]}, {"escalation__keywords": ["refund"]}),
    ("{language: es}", {"conversation__language": "es-MX"}, {"conversation__language": "en"}),
    # A rule's tag is read as the packet's ("es_mx" never matched es-MX, nor es_MX, which became es-mx).
    ("{language: [es_mx]}", {"conversation__language": "es_MX"}, {"conversation__language": "es-AR"}),
    ("{language: es_MX}", {"conversation__language": "es-MX"}, {"conversation__language": "es"}),
    ("{channel: [voice, sms]}", {"conversation__channel": "voice"}, {"conversation__channel": "web_chat"}),
    # A CRM's value with spaces around it is the same value (a review: "VIP " skipped the vip rule).
    ("{segment: vip}", {"customer__segment": " VIP "}, {"customer__segment": "VIP gold"}),
    ("{skills_any: [quickbooks]}", {"routing__skills": ["QuickBooks "]}, {"routing__skills": ["Quick Books"]}),
    ("{intent: billing}", {"intent__name": " billing.refund"}, {"intent__name": "bill ing"}),
    ("{channel: voice}", {"conversation__channel": "voice "}, {"conversation__channel": "voicemail"}),
]


@pytest.mark.parametrize(("when", "hit", "miss"), CONDITIONS, ids=[c[0] for c in CONDITIONS])
def test_each_condition_matches_and_misses(when, hit, miss):
    rules = one_rule(when)
    matched = assign(packet(**hit), rules, now=TUESDAY_NOON)
    assert matched["rule"] == "r" and matched["team"] == "special"
    assert any(line.startswith("rule r: matched") for line in matched["trace"])
    missed = assign(packet(**miss), rules, now=TUESDAY_NOON)
    assert missed["rule"] == "default"
    assert any(line.startswith("rule r: skipped") for line in missed["trace"])


def test_a_missing_field_never_matches():
    rules = one_rule("{score_below: 0}")
    decided = assign(minimal_packet(), rules, now=TUESDAY_NOON)
    assert decided["rule"] == "default"
    # Shown as every condition shows a field the packet lacks (it read "sentiment.score=None").
    assert any("sentiment.score=(none) is not below 0" in line for line in decided["trace"]), decided["trace"]


def test_keywords_in_the_customers_own_words_but_not_the_bots():
    rules = one_rule("{keywords: [cancel my account]}")
    p = packet()
    p["transcript"][0]["text"] = "I want to CANCEL  my account now."
    result = assign(p, rules, now=TUESDAY_NOON)
    assert result["rule"] == "r"
    assert any("in the customer's messages" in line for line in result["trace"])
    p["transcript"][0]["text"] = "ok"
    p["transcript"][1]["text"] = "You can cancel my account settings here"  # the bot said it
    assert assign(p, rules, now=TUESDAY_NOON)["rule"] == "default"
    p["transcript"][0]["text"] = "please cancel my accountant"  # whole words only
    assert assign(p, rules, now=TUESDAY_NOON)["rule"] == "default"


def test_keywords_in_can_restrict_to_escalation_keywords():
    rules = one_rule("{keywords: [fraud], keywords_in: [escalation]}")
    p = packet()
    p["transcript"][0]["text"] = "this is fraud"
    assert assign(p, rules, now=TUESDAY_NOON)["rule"] == "default"
    p["escalation"]["keywords"] = ["fraud"]
    assert assign(p, rules, now=TUESDAY_NOON)["rule"] == "r"


def test_in_hours_reads_the_rules_team_calendar_or_hours_of():
    open_rule = one_rule("{in_hours: true}")
    assert assign(packet(), open_rule, now=TUESDAY_NOON)["rule"] == "r"
    assert assign(packet(), open_rule, now=SATURDAY)["rule"] == "default"
    closed = config("  - {name: r, when: {in_hours: false, hours_of: special}, then: {team: support}}\n"
                    "  - {name: default}\n")
    result = assign(packet(), closed, now=SATURDAY)
    assert result["rule"] == "r" and result["team"] == "support"
    assert any("team special is closed now" in line for line in result["trace"])


def test_in_hours_reads_the_calendar_of_the_team_the_bots_department_names():
    # A review: a rule without a team read the default team's hours, so billing's handoff went out as
    # after-hours while billing was open (New York's support closed), and not once billing closed.
    hours = compile_routing(yaml.safe_load("""
version: 1
default: {team: support}
calendars:
  ny: {timezone: America/New_York, hours: {mon-fri: "09:00-17:00"}}
  paris: {timezone: Europe/Paris, hours: {mon-fri: "09:00-18:00"}}
teams:
  support: {calendar: ny}
  billing: {calendar: paris}
  sales: {}
rules:
  - {name: closed, when: {in_hours: false}, then: {priority: urgent}}
  - {name: default}
"""), ["zendesk"])
    morning, evening = (dt.datetime(2026, 11, 24, hour, 30, tzinfo=dt.UTC) for hour in (9, 19))  # Paris open; NY open
    billing = packet(routing__department="Billing")
    assert assign(billing, hours, now=morning)["rule"] == "default"
    evening_billing = assign(billing, hours, now=evening)
    assert evening_billing["rule"] == "closed" and evening_billing["team"] == "billing"
    assert any("team billing is closed now (paris" in line for line in evening_billing["trace"])
    # A department naming a team without hours: always open, as routing.yaml says; naming none: the
    # team is the department as named, without hours either — the default team's were read for it, and
    # the rule said closed (NY) while the assignment, read on the department's team, said open.
    for now in (morning, evening):
        sales = assign(packet(routing__department="sales"), hours, now=now)
        assert sales["rule"] == "default" and "team sales has no calendar: always open" in " ".join(sales["trace"])
        legal = assign(packet(routing__department="Legal "), hours, now=now)
        assert (legal["rule"], legal["team"], legal["out_of_hours"]) == ("default", "Legal", False)
        assert "team Legal has no calendar: always open" in " ".join(legal["trace"])


def test_all_conditions_of_a_rule_must_hold():
    rules = one_rule("{segment: enterprise, sentiment: angry}")
    assert assign(packet(), rules, now=TUESDAY_NOON)["rule"] == "default"  # frustrated, not angry
    assert assign(packet(sentiment__label="angry"), rules, now=TUESDAY_NOON)["rule"] == "r"


def test_first_match_wins():
    rules = config("  - {name: first, when: {segment: enterprise}, then: {team: special}}\n"
                   "  - {name: second, when: {segment: enterprise}, then: {team: support}}\n"
                   "  - {name: default}\n")
    result = assign(packet(), rules, now=TUESDAY_NOON)
    assert (result["rule"], result["team"]) == ("first", "special")
    assert not any("second" in line for line in result["trace"])


def test_every_action():
    rules = one_rule("{segment: enterprise}",
                     "{team: special, priority: urgent, queue: Tier 2, message: vip, target_names: [zendesk, slack],"
                     " targets: {zendesk: {assignee_id: '7'}, salesforce: {owner_id: 00G5g000004SPECEAA}}}")
    result = assign(packet(), rules, now=TUESDAY_NOON)
    assert result["team"] == "special" and result["priority"] == "urgent" and result["queue"] == "Tier 2"
    assert result["customer_message_template"] == "vip"
    assert result["target_names"] == ["zendesk", "slack"]
    assert result["targets"] == {"zendesk": {"group_id": "900", "assignee_id": "7"},  # merged over the team's
                                 "slack": {"channel": "C0SPECIAL"}, "salesforce": {"owner_id": "00G5g000004SPECEAA"}}
    assert result["business_hours"]["open"] is True and result["out_of_hours"] is False


def test_default_rule_uses_the_bots_hints_then_defaults():
    rules = config("  - {name: default}\n")
    result = assign(packet(), rules, now=TUESDAY_NOON)
    assert (result["team"], result["priority"], result["rule"]) == ("technical_support", "high", "default")
    assert "team technical_support from routing.department (the bot's hint)" in result["trace"]
    assert ("routing.department 'technical_support' is no team in routing.yaml (special, support): "
            "no calendar, queue or vendor ids for it") in result["trace"]
    bare = assign(minimal_packet(), rules, now=TUESDAY_NOON)
    assert (bare["team"], bare["priority"], bare["queue"]) == ("support", "normal", "Support")
    assert bare["targets"] == {"zendesk": {"group_id": "100"}}
    assert set(bare) >= {"team", "queue", "agent", "priority", "rule", "trace", "targets"}


@pytest.mark.parametrize("department", ["SPECIAL", "Special"])
def test_the_bots_department_names_a_team_in_any_case(department):
    """Taken as written, "Special" lost the team's calendar, queue and ids: the customer was
    promised a reply from a team that was closed."""
    result = assign(packet(routing__department=department), config("  - {name: default}\n"), now=SATURDAY)
    assert (result["team"], result["queue"]) == ("special", "Special")
    assert result["out_of_hours"] is True and result["targets"]["zendesk"] == {"group_id": "900"}
    assert not any("is no team" in line for line in result["trace"])


def test_a_department_or_queue_of_spaces_is_no_hint():
    # A review: "   " (an empty slot, padded) became the team, with no queue, while the customer was
    # told "our support team"; "" already fell back to the default team.
    blank = minimal_packet(routing={"department": "   ", "queue": " \t "})
    result = assign(blank, config("  - {name: default}\n"), now=TUESDAY_NOON)
    assert (result["team"], result["queue"]) == ("support", "Support")
    assert not any("routing.department" in line or "routing.queue" in line for line in result["trace"])


def test_no_routing_file_routes_everything_by_default():
    result = assign(packet(), {}, now=TUESDAY_NOON)
    assert result["rule"] == "default" and result["team"] == "technical_support"


@pytest.mark.parametrize(("rules", "problem"), [
    ("  - {name: only, when: {segment: vip}}\n", "rules[0].when"),
    ("  - {name: default}\n  - {name: late, when: {segment: vip}}\n", "rules[0].when"),
    ("  - {name: a, when: {segment: vip}, then: {team: nobody}}\n  - {name: default}\n", "rules[0].then.team"),
    ("  - {name: a, when: {segment: vip}, then: {target_names: [jira]}}\n  - {name: default}\n",
     "rules[0].then.target_names"),
    ("  - {name: a, when: {segment: vip}, then: {target_names: [slack, slack]}}\n  - {name: default}\n",
     "rules[0].then.target_names"),  # one delivery per target: a handoff it matched could not be stored
    ("  - {name: a, when: {in_hours: true}}\n  - {name: default}\n", "rules[0].when.in_hours"),
    ("  - {name: a, when: {segment: vip}}\n  - {name: a, when: {segment: x}}\n  - {name: default}\n", "rules[1].name"),
])
def test_a_file_without_a_proper_default_or_with_typos_is_refused(tmp_path, rules, problem):
    (tmp_path / "routing.yaml").write_text(BASE + "rules:\n" + rules)
    with pytest.raises(ConfigError) as err:
        load_mappings(str(tmp_path), "/", ["zendesk", "salesforce", "slack"])
    assert problem in err.value.source and "routing.yaml:" in err.value.source


@pytest.mark.parametrize(("when", "key", "words"), [
    # Alone each held for every handoff: a rule mid-file took them all, unsaid (a review).
    ("{keywords_in: [escalation]}", "keywords_in", "says how `keywords:` is read, and this rule has no `keywords:`"),
    ("{hours_of: special, segment: vip}", "hours_of", "this rule has no `in_hours:`"),
    # A wildcard never matched: `billing.refund` is not `billing.*` (a review).
    ("{intent: [billing.*, payments]}", "intent", "'billing.*': intents are matched by their first parts, not by "
                                                  "wildcards; write 'billing': it matches billing and billing.…"),
    ("{intent: '*.refund'}", "intent", "a rule's intent is a name or its first dotted parts"),
])
def test_a_condition_that_cannot_hold_as_written_is_refused(tmp_path, when, key, words):
    (tmp_path / "routing.yaml").write_text(BASE + f"rules:\n  - {{name: r, when: {when}, then: {{team: special}}}}\n"
                                                  "  - {name: default}\n")
    with pytest.raises(ConfigError) as err:
        load_mappings(str(tmp_path), "/", ["zendesk", "salesforce", "slack"])
    assert f"rules[0].when.{key}" in err.value.source and words in str(err.value), (err.value.source, str(err.value))


def test_an_intent_is_matched_by_its_first_parts_in_any_case():
    rules = one_rule("{intent: [Billing]}")
    assert assign(packet(intent__name="billing.refund"), rules, now=TUESDAY_NOON)["rule"] == "r"
    assert assign(packet(intent__name="billingx"), rules, now=TUESDAY_NOON)["rule"] == "default"


@pytest.mark.parametrize(("targets", "problem", "words"), [
    # Read by no adapter: every billing ticket went to the default group without a word.
    ("{zendsk: {group_id: 360001}}", "teams.billing.targets.zendsk", "did you mean 'zendesk'?"),
    # Each refused by its vendor on every ticket routed there, for good.
    ("{zendesk: {group_id: abc}}", "teams.billing.targets.zendesk", "group_id: Zendesk ids are whole numbers"),
    ("{zendesk: {assignee_id: -4}}", "teams.billing.targets.zendesk", "got -4"),
    ("{salesforce: {owner_id: bob}}", "teams.billing.targets.salesforce", "owner_id: a Salesforce user (005…)"),
    ("{salesforce: {owner_id: 00G5g000004BILLEA}}", "teams.billing.targets.salesforce", "15 or 18 characters"),
    # A number passed `check` and went to chat.postMessage as one: every alert an unknown outcome (a review).
    ("{slack: {channel: 12345}}", "teams.billing.targets.slack", "channel: a Slack channel id (C…) as text, got 12345"),
])
def test_a_teams_misspelt_target_or_malformed_id_is_refused(tmp_path, targets, problem, words):
    base = BASE + f"  billing: {{queue: Billing, targets: {targets}}}\n"
    (tmp_path / "routing.yaml").write_text(base + "rules:\n  - {name: default}\n")
    with pytest.raises(ConfigError) as err:
        load_mappings(str(tmp_path), "/", ["zendesk", "salesforce", "slack"])
    assert problem in err.value.source and words in str(err.value)


@pytest.mark.parametrize(("text", "line", "key"), [
    ("teams:\n  billing:\n    targets:\n      slack:\n        channel: #billing\nrules:\n  - {name: default}\n",
     7, "teams.billing.targets.slack.channel"),
    ("teams:\n  billing:\n    targets:\n      zendesk:\n        group_id: #360001\nrules:\n  - {name: default}\n",
     7, "teams.billing.targets.zendesk.group_id"),
    ("teams:\n  billing: {}\nrules:\n  - name: b\n    when: {intent: billing}\n    then:\n"
     "      targets:\n        slack:\n          channel: #billing\n  - {name: default}\n",
     11, "rules[0].then.targets.slack.channel"),
    ("teams:\n  billing: {targets: {slack: {channel: '  '}}}\nrules:\n  - {name: default}\n",
     4, "teams.billing.targets.slack.channel"),
])
def test_an_empty_id_is_refused_with_its_line_and_why(tmp_path, text, line, key):
    # YAML reads `channel: #billing` as `channel:` and a comment: the id was null, skipped, and the
    # team's alerts went to the default channel while `check` said ok.
    (tmp_path / "routing.yaml").write_text("version: 1\ndefault: {team: billing}\n" + text)
    with pytest.raises(ConfigError) as err:
        load_mappings(str(tmp_path), "/", ["zendesk", "salesforce", "slack"])
    assert err.value.source.endswith(f"routing.yaml:{line} {key}"), err.value.source
    assert "starts a YAML comment" in err.value.message and "quoted" in err.value.message


@pytest.mark.parametrize(("fields", "problem", "words"), [
    # The sticky agent went nowhere, or a user's id went where the team's group goes, while the
    # answer named the agent (a review).
    ("{zendesk: assignee}", "agent_fields.zendesk", "takes an agent by 'assignee_id' only, not 'assignee'"),
    ("{zendesk: group_id}", "agent_fields.zendesk", "not 'group_id'"),
    ("{zendsk: assignee_id}", "agent_fields.zendsk", "did you mean 'zendesk'?"),
    ("{slack: channel}", "agent_fields.slack", "slack takes no agent by id"),
])
def test_an_agent_field_no_target_takes_an_agent_by_is_refused(tmp_path, fields, problem, words):
    (tmp_path / "routing.yaml").write_text(BASE + f"agent_fields: {fields}\nrules:\n  - {{name: default}}\n")
    with pytest.raises(ConfigError) as err:
        load_mappings(str(tmp_path), "/", ["zendesk", "salesforce", "slack"])
    assert problem in err.value.source and words in str(err.value)
    # Naming fewer targets than take an agent is what the key is for: only those take one by id.
    assert config("  - {name: default}\n", BASE + "agent_fields: {salesforce: owner_id}\n")["agent_fields"] == {
        "salesforce": "owner_id"}


def test_well_formed_ids_are_taken_as_their_vendor_writes_them():
    # Salesforce answers and reports owners by 18 characters: a 15-character user in routing.yaml was
    # someone else when the case's owner event came — routing's own agent counted as one who picked
    # it up after 0 s, and the quoted wait fell to "about 1 minute" (a review).
    base = BASE + ("  billing: {targets: {zendesk: {group_id: 360001, assignee_id: '7'}, "
                   "salesforce: {owner_id: 0055g00000AbCdE}}}\n")
    rules = config("  - {name: r, when: {segment: enterprise}, then: {team: billing, targets: "
                   "{salesforce: {owner_id: 00G5g000003Queu}}}}\n  - {name: other, then: {team: billing}}\n", base)
    assert rules["teams"]["billing"]["targets"]["salesforce"] == {"owner_id": "0055g00000AbCdEAAV"}
    assert rules["teams"]["billing"]["targets"]["zendesk"] == {"group_id": 360001, "assignee_id": "7"}
    assert assign(packet(), rules, now=TUESDAY_NOON)["targets"]["salesforce"] == {"owner_id": "00G5g000003QueuEAC"}
    assert assign(packet(customer__segment="standard"), rules, now=TUESDAY_NOON)["targets"]["salesforce"] == {
        "owner_id": "0055g00000AbCdEAAV"}


PREVIOUS = {"id": "123", "name": "Sam", "email": "sam@acme.example", "target": "zendesk"}


def test_sticky_rule_offers_the_previous_agent():
    rules = one_rule("{segment: enterprise}", "{team: special, sticky: true, fallback: team}")
    result = assign(packet(), rules, now=TUESDAY_NOON, previous_agent=PREVIOUS)
    assert result["agent"] == "Sam"
    assert result["targets"]["zendesk"] == {"group_id": "900", "assignee_id": "123"}
    assert "sticky: offered previous agent Sam (zendesk assignee_id=123)" in result["trace"]
    sf = assign(packet(), rules, now=TUESDAY_NOON, previous_agent={**PREVIOUS, "id": "005X", "target": "salesforce"})
    assert sf["targets"]["salesforce"] == {"owner_id": "005X"} and "assignee_id" not in sf["targets"]["zendesk"]
    assert "in_place_of" not in sf["previous_agent"]  # the team had no owner of its own


def test_a_sticky_agent_in_place_of_the_teams_own_id_keeps_that_id_to_fall_back_to():
    # Salesforce's one routing id is the owner: the agent replaced the team's queue, and when Salesforce
    # refused the agent (deactivated since the lookup) the case went to no team at all (a review).
    base = BASE + "  cases: {targets: {salesforce: {owner_id: 00G5g000003QueueAA}}}\n"
    rules = config("  - {name: r, when: {segment: enterprise}, then: {team: cases, sticky: true}}\n"
                   "  - {name: default}\n", base)
    agent = {**PREVIOUS, "id": "0055g00000SamAAA", "target": "salesforce"}
    sf = assign(packet(), rules, now=TUESDAY_NOON, previous_agent=agent)
    assert sf["targets"]["salesforce"] == {"owner_id": "0055g00000SamAAA"}
    assert sf["previous_agent"]["in_place_of"] == "00G5g000003QueueAA"
    same = assign(packet(), rules, now=TUESDAY_NOON, previous_agent={**agent, "id": "00G5g000003QueueAA"})
    assert "in_place_of" not in same["previous_agent"]


def test_sticky_falls_back_to_the_team_without_a_previous_agent():
    rules = one_rule("{segment: enterprise}", "{team: special, sticky: true, fallback: team}")
    result = assign(packet(), rules, now=TUESDAY_NOON)
    assert result["agent"] is None and result["team"] == "special" and result["rule"] == "r"
    assert "sticky: no previous agent known; fallback: team special" in result["trace"]


def test_sticky_with_fallback_next_tries_the_next_rule():
    rules = config("  - {name: mine, when: {segment: enterprise},"
                   " then: {team: special, sticky: true, fallback: next}}\n  - {name: default}\n")
    assert assign(packet(), rules, now=TUESDAY_NOON, previous_agent=PREVIOUS)["rule"] == "mine"
    result = assign(packet(), rules, now=TUESDAY_NOON)
    assert result["rule"] == "default"
    assert any("fallback: next rule" in line for line in result["trace"])


PREFERRED = {"email": "pat@acme.example", "id": "381156009921"}


def test_a_preferred_agent_no_rule_can_assign_is_said_not_taken_and_why():
    """routing.yaml cannot assign the agent a bot names; the hint went without a word (agent null,
    nothing in the trace) and the bot took it as followed."""
    plain = assign(packet(routing__preferred_agent=PREFERRED), one_rule("{segment: enterprise}"), now=TUESDAY_NOON)
    assert plain["agent"] is None
    assert ("routing.preferred_agent pat@acme.example (id 381156009921) (the bot's hint) not taken: routing.yaml has "
            "no rule that assigns the agent a bot prefers (a sticky rule offers the customer's previous agent; "
            "rule r is not sticky): the ticket goes to team special") in plain["trace"]
    sticky = one_rule("{segment: enterprise}", "{team: special, sticky: true, fallback: team}")
    unknown = assign(packet(routing__preferred_agent={"id": "381156009921"}), sticky, now=TUESDAY_NOON)
    assert any(line.startswith("routing.preferred_agent 381156009921 (the bot's hint) not taken: ") and
               "rule r is sticky, but no previous agent known" in line for line in unknown["trace"])
    # Asking failed: the warning the bot gets says so, as the trace's sticky line does (a review).
    failed = assign(packet(routing__preferred_agent={"id": "381156009921"}), sticky, now=TUESDAY_NOON,
                    lookup_failed="asking zendesk failed (TransientError 503)")
    assert any(line.startswith("routing.preferred_agent 381156009921 (the bot's hint) not taken: ") and
               "rule r is sticky, but the previous agent unknown: asking zendesk failed (TransientError 503)" in line
               for line in failed["trace"])
    other = assign(packet(routing__preferred_agent=PREFERRED), sticky, now=TUESDAY_NOON, previous_agent=PREVIOUS)
    assert other["agent"] == "Sam" and any(
        "not taken: rule r is sticky and offered the customer's previous agent, Sam, instead" in line
        for line in other["trace"])


def test_a_preferred_agent_who_is_the_previous_agent_offered_is_said_taken():
    sticky = one_rule("{segment: enterprise}", "{team: special, sticky: true, fallback: team}")
    same = assign(packet(routing__preferred_agent={"email": "SAM@acme.example"}), sticky, now=TUESDAY_NOON,
                  previous_agent=PREVIOUS)
    assert same["agent"] == "Sam"
    assert "sticky: the previous agent offered is routing.preferred_agent SAM@acme.example (the bot's hint)" \
        in same["trace"]
    assert not any(line.startswith("routing.preferred_agent ") for line in same["trace"])
    # A Salesforce user named by the 15 characters its pages show is the 18-character one found (a review).
    salesforce = {**PREVIOUS, "id": "0055g00000AbCdEAAV", "target": "salesforce"}
    fifteen = assign(packet(routing__preferred_agent={"id": "0055g00000AbCdE"}), sticky, now=TUESDAY_NOON,
                     previous_agent=salesforce)
    assert "sticky: the previous agent offered is routing.preferred_agent 0055g00000AbCdE (the bot's hint)" \
        in fifteen["trace"]


def test_a_non_sticky_rule_ignores_the_previous_agent():
    result = assign(packet(), one_rule("{segment: enterprise}"), now=TUESDAY_NOON, previous_agent=PREVIOUS)
    assert result["agent"] is None and "assignee_id" not in result["targets"]["zendesk"]


def test_wait_observed_beats_configured_beats_none():
    rules = compile_routing(yaml.safe_load((FIXTURES / "mappings" / "good" / "routing.yaml").read_text()))
    billing = {"team": "billing"}
    assert wait_estimate(billing, rules, observed_wait=lambda team: 95) == (95, "observed")
    assert expected_wait(billing, rules, observed_wait=lambda team: None) == 240
    assert expected_wait({"team": "support"}, rules) == 600  # the default figure
    assert expected_wait({"team": "billing", "out_of_hours": True}, rules, observed_wait=lambda t: 95) is None
    bare = config("  - {name: default}\n")
    assert wait_estimate({"team": "support"}, bare) == (None, "unknown")


def test_a_wait_under_a_minute_is_quoted_as_the_minute_the_customer_is_told():
    # A review: a team whose tickets a trigger assigns as they are made observes 0 s (whole seconds):
    # the bot read `estimated_wait_seconds: 0` ("someone is there now") beside "about 1 minute".
    rules = compile_routing(yaml.safe_load((FIXTURES / "mappings" / "good" / "routing.yaml").read_text()))
    assert wait_estimate({"team": "billing"}, rules, observed_wait=lambda team: 0) == (60, "observed")
    assert wait_estimate({"team": "billing"}, rules, observed_wait=lambda team: 45) == (60, "observed")
    quick = config("  - {name: default}\n", BASE.replace("{queue: Support,", "{queue: Support, expected_wait_seconds: 0,"))
    assert wait_estimate({"team": "support"}, quick) == (60, "configured (team)")


def test_observed_wait_is_asked_for_the_assigned_team():
    asked: list[str] = []
    expected_wait({"team": "billing"}, {}, observed_wait=lambda team: asked.append(team))
    assert asked == ["billing"]


SHIPPED = load_mappings("mappings", str(FIXTURES.parents[1]), ["zendesk", "salesforce", "slack"]).routing


@pytest.mark.parametrize(("changes", "rule", "team", "priority"), [
    ({"escalation__reason": "regulatory"}, "regulatory", "escalations", "urgent"),
    ({"escalation__urgency": "urgent"}, "urgent", "escalations", "urgent"),
    ({"escalation__keywords": ["chargeback"]}, "fraud-or-legal", "escalations", "high"),
    ({"customer__segment": "vip"}, "vip", "priority_support", "high"),
    ({}, "enterprise", "technical_support", "high"),
    ({"customer__segment": "standard", "intent__name": "billing.refund", "escalation__urgency": "normal"},
     "billing", "billing", "normal"),
    ({"customer__segment": "standard", "sentiment__label": "angry"}, "angry-worsening", "technical_support", "high"),
    ({"customer__segment": "standard", "sentiment__trend": "stable", "sentiment__score": -0.9},
     "very-negative", "technical_support", "high"),
    ({"customer__segment": "standard", "sentiment__trend": "stable"}, "default", "technical_support", "high"),
])
def test_the_shipped_rules(changes, rule, team, priority):
    result = assign(packet(**changes), SHIPPED, now=TUESDAY_NOON)
    assert (result["rule"], result["team"], result["priority"]) == (rule, team, priority)


def test_only_a_sticky_first_match_asks_for_the_previous_agent():
    from connector.routing import wants_previous_agent

    config = {"version": 1, "teams": {"support": {}}, "default": {"team": "support", "priority": "normal"},
              "rules": [{"name": "vip", "when": {"segment": "vip"}, "then": {"sticky": True, "fallback": "team"}},
                        {"name": "default"}]}
    vip, standard = minimal_packet(), minimal_packet()
    vip["customer"]["segment"], standard["customer"]["segment"] = "vip", "standard"
    assert wants_previous_agent(vip, config) is True
    assert wants_previous_agent(standard, config) is False


def test_agent_fields_come_from_the_adapters():
    from adapters import registry

    assert registry.agent_fields() == {"zendesk": "assignee_id", "salesforce": "owner_id"}
    assert compile_routing({"version": 1, "rules": [{"name": "default"}]})["agent_fields"] == registry.agent_fields()


def test_a_decision_checks_each_rule_once_and_asks_again_at_another_time(monkeypatch):
    """Intake asks whether the matching rule is sticky, then assigns: one pass over the rules
    (a keyword rule searches the whole transcript), and the same trace as a fresh one."""
    from connector import routing

    calls: list[str] = []
    real = routing._matches
    monkeypatch.setattr(routing, "_matches", lambda rule, *rest: calls.append(rule["name"]) or real(rule, *rest))
    changes = {"customer__segment": "standard", "sentiment__trend": "stable"}
    facts = routing.Facts(packet(**changes))
    assert routing.wants_previous_agent(facts.packet, SHIPPED, now=TUESDAY_NOON, facts=facts) is False
    result = routing.assign(facts.packet, SHIPPED, now=TUESDAY_NOON, facts=facts)
    assert result["rule"] == "default" and len(calls) == len(set(calls)) == len(SHIPPED["rules"])
    assert result["trace"] == assign(packet(**changes), SHIPPED, now=TUESDAY_NOON)["trace"]
    del calls[:]
    routing.assign(facts.packet, SHIPPED, now=SATURDAY, facts=facts)  # in_hours conditions change with time
    assert len(calls) == len(SHIPPED["rules"])


@pytest.mark.parametrize("text", [
    "", "nothing here", "I want to cancel my account", "CANCEL   my\naccount now", "cancel my accounts",
    "fraudulent?", "it's fraud!", "a chargeback.", "chargebacks", "my lawyer", "lawyers", "data-breach",
    "data breach", "unauthorized  charge", "an unauthorized charges", "défraud", "_fraud", "fraud_",
])
def test_one_pattern_for_all_keywords_agrees_with_each_keyword(text):
    from connector.routing_schema import Keywords

    keywords = Keywords(["fraud", "unauthorized charge", "chargeback", "lawyer", "data breach", "cancel my account"])
    assert keywords.any_in(text) == any(k.search(text) for k in keywords)


def test_no_keywords_match_nothing():
    from connector.routing_schema import Keywords

    assert not Keywords([]).any_in("anything at all")


def test_a_previous_agent_lookup_logs_in_the_requests_context():
    # It ran on a pool thread of its own: its lines named no bot, conversation or handoff.
    import logging
    import time

    from connector.decision import _by
    from connector.jsonlog import _ContextFilter, log_context

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    handler.addFilter(_ContextFilter())
    logger = logging.getLogger("test.lookup")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with log_context(bot_id="support-bot", conversation_id="conv-1"):
            _by(time.monotonic() + 5, lambda packet, deadline: logger.info("asked the vendor"), {})
    finally:
        logger.removeHandler(handler)
    [record] = seen
    assert (record.bot_id, record.conversation_id) == ("support-bot", "conv-1")


def test_a_bots_queue_hint_names_the_queue_only_where_routing_yaml_names_none():
    # An API review: `routing.queue: "Nonexistent Queue"` replaced the team's "Support" in the answer
    # and the brief, while the ticket went to the support team's group — nothing routes on the hint.
    rules = config("  - {name: default}\n")
    shown = assign(minimal_packet(routing={"queue": "Nonexistent Queue"}), rules, now=TUESDAY_NOON)
    assert (shown["team"], shown["queue"]) == ("support", "Support")
    assert "routing.queue 'Nonexistent Queue' (the bot's hint) not taken: the ticket goes to Support" in shown["trace"]
    # A team routing.yaml does not describe has no queue of its own: the bot's word is all there is.
    unknown = assign(minimal_packet(routing={"department": "legal", "queue": "Legal desk"}), rules, now=TUESDAY_NOON)
    assert unknown["queue"] == "Legal desk" and "queue Legal desk from routing.queue (the bot's hint)" in unknown["trace"]


def test_the_brief_names_the_customers_words_that_made_a_keyword_rule_match():
    """A rule that fired on "cancel my account" in the transcript read "(rule fraud-or-legal)", and
    the agent searched the messages for why; the bot's own escalation.keywords are shown as sent."""
    from adapters.slack_blocks import alert
    from connector.brief import render_brief

    said = packet(escalation__keywords=[])
    said["transcript"][-1]["text"] = "Forget it. I want to cancel my account."
    result = assign(said, SHIPPED, now=TUESDAY_NOON)
    assert result["rule"] == "fraud-or-legal" and result["customer_words"] == ["cancel my account"]
    text = render_brief(said, "hnd_1", assignment=result).text
    assert "Routed to: escalations / Escalations (rule fraud-or-legal: the customer wrote “cancel my account”)" in text
    fields = "\n".join(f["text"] for b in alert(said, "hnd_1", result, [])[0]["blocks"] for f in b.get("fields", []))
    assert "the customer wrote “cancel my account”" in fields
    # The bot's own keyword: named under "Trigger words", not claimed as the customer's.
    told = assign(packet(escalation__keywords=["chargeback"]), SHIPPED, now=TUESDAY_NOON)
    assert told["rule"] == "fraud-or-legal" and "customer_words" not in told
    assert "customer_words" not in assign(packet(), SHIPPED, now=TUESDAY_NOON)  # no keyword rule


def test_the_customers_words_are_quoted_as_typed_and_only_from_one_message():
    typed = packet(escalation__keywords=[])
    typed["transcript"][-1]["text"] = "Please CANCEL MY   ACCOUNT today"
    assert assign(typed, SHIPPED, now=TUESDAY_NOON)["customer_words"] == ["CANCEL MY   ACCOUNT"]
    # A keyword of two words across two messages is no match: it routed on (and the brief quoted) a
    # phrase the customer never wrote.
    split = packet(escalation__keywords=[])
    split["transcript"][-1]["text"] = "Whatever you do, please don't cancel"
    split["transcript"].append({"at": "2026-11-20T09:18:00Z", "role": "customer", "text": "my account was charged"})
    result = assign(split, SHIPPED, now=TUESDAY_NOON)
    assert result["rule"] != "fraud-or-legal" and "customer_words" not in result


def test_a_rule_naming_only_the_built_in_preview_is_refused(tmp_path):
    # Beside a vendor preview reaches no agent (intake refuses a packet naming it alone there), and
    # alone it gets every handoff without a rule: such a rule is a mistake whichever is enabled.
    from adapters import registry

    (tmp_path / "routing.yaml").write_text(
        BASE + "rules:\n  - {name: dry, when: {segment: vip}, then: {target_names: [preview]}}\n  - {name: default}\n")
    with pytest.raises(ConfigError) as err:
        load_mappings(str(tmp_path), "/", list(registry.TARGETS))
    assert "rules[0].then.target_names" in err.value.source
    assert "only the built-in 'preview'" in err.value.message
    (tmp_path / "routing.yaml").write_text(
        BASE + "rules:\n  - {name: both, when: {segment: vip}, then: {target_names: [preview, zendesk]}}\n"
        "  - {name: default}\n")
    load_mappings(str(tmp_path), "/", list(registry.TARGETS))  # a vendor beside it: fine


def test_choose_targets_passes_over_a_rule_leaving_only_preview_beside_a_vendor():
    from connector.decision import choose_targets

    def chosen(wanted, enabled):  # type: ignore[no-untyped-def]
        assignment = {"target_names": wanted, "trace": []}
        return choose_targets({}, assignment, enabled), assignment["trace"]

    assert chosen(["preview"], ["zendesk", "preview"]) == (["zendesk", "preview"], [
        "rule targets ['preview'] leave only the built-in preview, which reaches no agent beside zendesk; every "
        "enabled target instead"])
    assert chosen(["preview", "slack"], ["preview"]) == (["preview"], [])  # preview alone: it is everything
    assert chosen(["preview", "zendesk"], ["zendesk", "preview"]) == (["preview", "zendesk"], [])
    assert chosen(["slack"], ["zendesk"])[0] == ["zendesk"]


def _asked_vendor(asked: list[str]):  # type: ignore[no-untyped-def]
    """A vendor class whose previous-agent lookup gives its `agent`, noting its name in `asked`."""

    class Vendor:
        def __init__(self, name, agent):  # type: ignore[no-untyped-def]
            self.name, self.agent = name, agent

        def previous_agent(self, packet, deadline=None):  # type: ignore[no-untyped-def]
            asked.append(self.name)
            return self.agent

    return Vendor


def test_a_sticky_rule_asks_for_the_previous_agent_only_at_the_targets_the_handoff_goes_to():
    # A review: asked among every enabled target, a rule's `target_names: [salesforce]` offered the
    # Zendesk agent (and a Zendesk assignee_id) while only Salesforce got the handoff.
    from types import SimpleNamespace

    from connector.decision import decide

    asked: list[str] = []
    Vendor = _asked_vendor(asked)

    adapters = {"zendesk": Vendor("zendesk", {"id": "381726354", "name": "Zed Zendesk"}),
                "salesforce": Vendor("salesforce", {"id": "0055g00000AbCdEAAZ", "name": "Sal Salesforce"})}
    mappings = SimpleNamespace(messages={}, routing=config(
        "  - {name: sf, when: {segment: vip}, then: {sticky: true, target_names: [salesforce]}}\n"
        "  - {name: default}\n"))
    decision = decide(packet(customer__segment="vip"), mappings, adapters, now=TUESDAY_NOON)
    assert asked == ["salesforce"] and decision.targets == ["salesforce"]
    assert decision.assignment["agent"] == "Sal Salesforce"
    assert decision.assignment["targets"].get("salesforce", {}).get("owner_id") == "0055g00000AbCdEAAZ"
    assert "assignee_id" not in decision.assignment["targets"].get("zendesk", {})
    assert "Zed" not in decision.customer_message["text"]
    # A packet naming its targets is asked at those, as before; a rule without target_names, at every one.
    del asked[:]
    named = {**packet(customer__segment="vip"), "targets": ["zendesk"]}
    assert decide(named, mappings, adapters, now=TUESDAY_NOON).assignment["agent"] == "Zed Zendesk"
    assert asked == ["zendesk"]


def test_a_sticky_rule_reached_by_fallback_next_asks_at_its_own_targets_each_vendor_once():
    # A review: `fallback: next` from a sticky rule sending to Zendesk reached one sending to
    # Salesforce with the first one's lookup: Salesforce was never asked, and the trace said "no
    # previous agent known" while the customer's case had an owner.
    from types import SimpleNamespace

    from connector.decision import decide

    asked: list[str] = []
    Vendor = _asked_vendor(asked)

    adapters = {"zendesk": Vendor("zendesk", None),
                "salesforce": Vendor("salesforce", {"id": "0055g00000AbCdEAAZ", "name": "Sal Salesforce"})}

    def decided(second_targets: str):  # type: ignore[no-untyped-def]
        del asked[:]
        mappings = SimpleNamespace(messages={}, routing=config(
            "  - {name: zd, when: {segment: vip}, then: {sticky: true, fallback: next, target_names: [zendesk]}}\n"
            f"  - {{name: sf, when: {{segment: vip}}, then: {{sticky: true, target_names: {second_targets}}}}}\n"
            "  - {name: default}\n"))
        return decide(packet(customer__segment="vip"), mappings, adapters, now=TUESDAY_NOON).assignment

    assignment = decided("[salesforce]")
    assert asked == ["zendesk", "salesforce"]
    assert (assignment["rule"], assignment["agent"]) == ("sf", "Sal Salesforce")
    assert assignment["targets"]["salesforce"]["owner_id"] == "0055g00000AbCdEAAZ"
    assert "rule zd: matched, but sticky with no previous agent known; fallback: next rule" in assignment["trace"]
    # Zendesk answered already: the second rule asks Salesforce alone.
    assignment = decided("[zendesk, salesforce]")
    assert asked == ["zendesk", "salesforce"] and assignment["agent"] == "Sal Salesforce"
    # Nobody anywhere: the second rule's trace says so of its own targets, each asked once.
    adapters["salesforce"].agent = None
    assignment = decided("[zendesk, salesforce]")
    assert asked == ["zendesk", "salesforce"] and assignment["agent"] is None
    assert any(line.startswith("sticky: no previous agent known") for line in assignment["trace"])


@pytest.mark.parametrize("department", ["special ", " Special", "\tSPECIAL\n"])
def test_the_bots_department_names_a_team_without_the_spaces_around_it(department):
    # A review: "billing " was a team of its own — no queue, calendar or vendor ids — and no
    # `department:` condition matched it.
    from connector.routing import department_warnings

    rules = config("  - {name: r, when: {department: special}, then: {priority: high}}\n  - {name: default}\n")
    hinted = packet(routing__department=department)
    result = assign(hinted, rules, now=SATURDAY)
    assert result["rule"] == "r" and (result["team"], result["queue"]) == ("special", "Special")
    assert result["out_of_hours"] is True and result["targets"]["zendesk"] == {"group_id": "900"}
    assert not any("is no team" in line for line in result["trace"]) and not department_warnings(hinted, result, rules)
    # A department no team matches is the team without its spaces, and still warned of.
    sales = packet(routing__department=department.replace("pecial", "ales").replace("PECIAL", "ALES"))
    unknown = assign(sales, rules, now=SATURDAY)
    assert unknown["team"] == unknown["team"].strip() and unknown["team"].lower() == "sales"
    assert department_warnings(sales, unknown, rules)


def test_the_customer_is_told_the_team_a_spaced_department_names():
    from connector.customer_message import compose

    messages = load_mappings("mappings", str(FIXTURES.parents[1]), ["zendesk", "salesforce", "slack"]).messages
    hinted = packet(routing__department="billing ", conversation__language="es", customer__segment="standard",
                    sentiment__trend="stable", sentiment__score=0.1)
    result = assign(hinted, SHIPPED, now=TUESDAY_NOON)
    assert (result["rule"], result["team"], result["queue"]) == ("default", "billing", "Billing")
    assert "nuestro equipo de facturación" in compose(hinted, result, None, messages, now=TUESDAY_NOON)["text"]


@pytest.mark.parametrize("fallback", ["team", "next"])
def test_a_failed_previous_agent_lookup_is_said_as_failed_not_as_no_agent(fallback: str) -> None:
    # A review: a vendor down (or slow past the lookup's share of the budget) read "no previous agent
    # known" in the trace — a fact about the customer — while the log alone said the lookup failed.
    import time
    from types import SimpleNamespace

    from adapters.errors import RateLimited
    from connector.decision import decide

    class Down:
        def previous_agent(self, packet, deadline=None):  # type: ignore[no-untyped-def]
            raise RateLimited("Zendesk rate limit", status=429)

    class Slow:
        def previous_agent(self, packet, deadline=None):  # type: ignore[no-untyped-def]
            time.sleep(max(0.0, deadline - time.monotonic()) + 0.3)

    class Nobody:
        def previous_agent(self, packet, deadline=None):  # type: ignore[no-untyped-def]
            return None

    mappings = SimpleNamespace(messages={}, routing=config(
        f"  - {{name: mine, when: {{segment: vip}}, then: {{team: special, sticky: true, fallback: {fallback}}}}}\n"
        "  - {name: default}\n"))
    vip = packet(customer__segment="vip")
    said = "; fallback: team special" if fallback == "team" else "; fallback: next rule"
    down = decide(vip, mappings, {"zendesk": Down(), "salesforce": Nobody()}, now=TUESDAY_NOON).assignment
    assert any(line.endswith(f"the previous agent unknown: asking zendesk failed (RateLimited 429){said}")
               for line in down["trace"]), down["trace"]
    slow = decide(vip, mappings, {"zendesk": Slow()}, now=TUESDAY_NOON, deadline=time.monotonic() + 0.2).assignment
    assert any(line.endswith("the previous agent unknown: zendesk did not answer within the lookup's share of the "
                             f"sync budget{said}") for line in slow["trace"]), slow["trace"]
    nobody = decide(vip, mappings, {"zendesk": Nobody()}, now=TUESDAY_NOON).assignment
    assert any(line.endswith(f"no previous agent known{said}") for line in nobody["trace"])


def test_a_vendor_left_behind_by_one_sticky_rule_does_not_stop_the_next_from_asking_another():
    # The decision keeps each vendor's answer for the next sticky rule (`fallback: next`): one left
    # behind at the first lookup's end is not asked again, and does not stop the second lookup, with a
    # share of its own, from asking the vendor the first never reached.
    import time
    from types import SimpleNamespace

    from connector.decision import decide

    asked: list[str] = []

    class Slow:
        def previous_agent(self, packet, deadline=None):  # type: ignore[no-untyped-def]
            asked.append("zendesk")
            time.sleep(max(0.0, deadline - time.monotonic()) + 0.3)

    class Owner:
        def previous_agent(self, packet, deadline=None):  # type: ignore[no-untyped-def]
            asked.append("salesforce")
            return {"id": "0055g00000AbCdEAAZ", "name": "Sal Salesforce"}

    mappings = SimpleNamespace(messages={}, routing=config(
        "  - {name: both, when: {segment: vip}, then: {sticky: true, fallback: next, target_names: [zendesk, salesforce]}}\n"
        "  - {name: again, when: {segment: vip}, then: {sticky: true, target_names: [zendesk, salesforce]}}\n"
        "  - {name: default}\n"))
    assignment = decide(packet(customer__segment="vip"), mappings, {"zendesk": Slow(), "salesforce": Owner()},
                        now=TUESDAY_NOON, deadline=time.monotonic() + 2).assignment
    assert asked == ["zendesk", "salesforce"]
    assert (assignment["rule"], assignment["agent"]) == ("again", "Sal Salesforce")
    assert any("rule both: matched, but sticky with the previous agent unknown: zendesk did not answer" in line
               for line in assignment["trace"]), assignment["trace"]


@pytest.mark.parametrize(("then", "enabled", "agent"), [
    ("{targets: {zendesk: {assignee_id: 381726354}}}", ["zendesk", "slack"], "zendesk 381726354"),
    ("{targets: {salesforce: {owner_id: 0055g00000AbCdEAAZ}}}", ["salesforce"], "salesforce 0055g00000AbCdEAAZ"),
    ("{targets: {salesforce: {owner_id: 00G5g000004XXXXEAA}}}", ["salesforce"], None),  # a queue: nobody yet
    ("{targets: {zendesk: {assignee_id: 381726354}}, target_names: [slack]}", ["zendesk", "slack"], None),
    ("{targets: {zendesk: {group_id: 360001}}}", ["zendesk"], None),
    # The built-in preview alone renders every vendor's payload, this assignee's with it.
    ("{targets: {zendesk: {assignee_id: 381726354}}}", ["preview"], "zendesk 381726354"),
    ("{targets: {zendesk: {assignee_id: 381726354}}, target_names: [slack]}", ["preview", "slack"], None),
])
@pytest.mark.parametrize("agent_fields", ["", "agent_fields: {salesforce: owner_id}\n"])
def test_an_agent_routing_yaml_puts_on_the_ticket_is_the_assignments_agent(then, enabled, agent, agent_fields):
    # A review: a rule's own assignee had the ticket from its making while the answer said
    # `agent: null` and the trace did not name them. Only where the handoff goes, and only a person;
    # named with their vendor (a bare number meant nothing in a Slack alert), whatever
    # `agent_fields:` (a sticky agent's) says.
    from types import SimpleNamespace

    from connector.decision import decide

    mappings = SimpleNamespace(messages={}, routing=config(
        f"  - {{name: direct, when: {{segment: vip}}, then: {then}}}\n  - {{name: default}}\n", BASE + agent_fields))
    adapters = {name: SimpleNamespace() for name in enabled}
    assignment = decide(packet(customer__segment="vip"), mappings, adapters, now=TUESDAY_NOON).assignment
    named = [line for line in assignment["trace"] if line.startswith("agent: ")]
    if agent is None:
        assert assignment["agent"] is None and not named and "routed_agents" not in assignment
    else:
        target, agent_id = agent.split()
        label = f"{target.capitalize()} agent {agent_id}"
        field = {"zendesk": "assignee_id", "salesforce": "owner_id"}[target]
        assert assignment["agent"] == label
        assert named == [f"agent: {label}, {target} {field} from routing.yaml (rule direct, team {assignment['team']})"]
        assert assignment["routed_agents"] == [{"target": target, "id": agent_id, "label": label}]


def test_a_sticky_rules_previous_agent_is_not_replaced_by_the_teams_own_assignee():
    from types import SimpleNamespace

    from connector.decision import decide

    class Vendor:
        def previous_agent(self, packet, deadline=None):  # type: ignore[no-untyped-def]
            return {"id": "381000001", "name": "Sam Okafor"}

    mappings = SimpleNamespace(messages={}, routing=config(
        "  - {name: sticky, when: {segment: vip}, then: {sticky: true, targets: {zendesk: {assignee_id: 381726354}}}}\n"
        "  - {name: default}\n"))
    assignment = decide(packet(customer__segment="vip"), mappings, {"zendesk": Vendor()}, now=TUESDAY_NOON).assignment
    assert assignment["agent"] == "Sam Okafor" and "routed_agents" not in assignment
    assert assignment["targets"]["zendesk"]["assignee_id"] == "381000001"


def test_a_rules_agent_in_place_of_its_teams_own_id_keeps_that_id_to_fall_back_to():
    from types import SimpleNamespace

    from connector.decision import decide

    base = BASE.replace("teams:\n", "teams:\n  queued: {targets: {salesforce: {owner_id: 00G5g000003QueueAA}}}\n", 1)
    assert base != BASE
    mappings = SimpleNamespace(messages={}, routing=config(
        "  - {name: sam, when: {segment: vip}, then: {team: queued, targets: {salesforce: {owner_id: 0055g00000SamAAAAA}}}}\n"
        "  - {name: default}\n", base))
    assignment = decide(packet(customer__segment="vip"), mappings, {"salesforce": None}, now=TUESDAY_NOON).assignment
    assert assignment["routed_agents"] == [{"target": "salesforce", "id": "0055g00000SamAAAAA",
                                            "label": "Salesforce agent 0055g00000SamAAAAA",
                                            "in_place_of": "00G5g000003QueueAA"}]


@pytest.mark.parametrize(("preferred", "said"), [
    ({"id": "381156009921"}, "agent: routing.preferred_agent 381156009921 (the bot's hint) is the agent "
                             "routing.yaml names"),
    ({"id": "42"}, "the ticket goes to team special, to Zendesk agent 381156009921"),
])
def test_a_preferred_agent_beside_the_agent_a_rule_names_is_said_as_it_is(preferred, said):
    # A routing review: a team's assignee was exactly the bot's preferred agent, and the trace and the
    # answer's warnings said "not taken … the ticket goes to team" beside the ticket assigned to them.
    from connector.routing import name_routed_agent, preferred_agent_warnings

    routing = one_rule("{segment: enterprise}", "{team: special, targets: {zendesk: {assignee_id: 381156009921}}}")
    assignment = assign(packet(routing__preferred_agent=preferred), routing, now=TUESDAY_NOON)
    name_routed_agent(assignment, ["zendesk"], routing, preferred)
    assert assignment["agent"] == "Zendesk agent 381156009921"
    assert any(said in line for line in assignment["trace"])
    assert bool(preferred_agent_warnings(assignment)) is (preferred["id"] != "381156009921")


@pytest.mark.parametrize(("earlier", "later", "shadowed"), [
    ({"segment": "vip"}, {"segment": "vip", "intent": "billing"}, True),
    ({"segment": ["vip", "enterprise"]}, {"segment": "vip"}, True),
    ({"segment": "vip"}, {"segment": ["vip", "enterprise"]}, False),  # an enterprise customer reaches it
    ({"intent": "billing"}, {"intent": ["billing.refund", "billing"]}, True),
    ({"intent": "billing.refund"}, {"intent": "billing"}, False),
    ({"language": "de"}, {"language": "de-AT"}, True),
    ({"skills_all": ["a"]}, {"skills_all": ["a", "b"]}, True),
    ({"skills_all": ["a", "b"]}, {"skills_all": ["a"]}, False),
    ({"segment": "vip", "urgency": "high"}, {"segment": "vip"}, False),  # a later condition the earlier lacks
    ({"keywords": ["refund"]}, {"keywords": ["refund"], "segment": "vip"}, False),  # not compared: said nothing
    ({"score_below": -0.5}, {"score_below": -0.7}, False),
])
def test_a_rule_an_earlier_one_takes_every_handoff_of_is_named(earlier, later, shadowed):
    from connector.routing_schema import shadowed_rules

    routing = compile_routing({"version": 1, "rules": [
        {"name": "earlier", "when": earlier, "then": {}}, {"name": "later", "when": later, "then": {}},
        {"name": "default"}]})
    assert bool(shadowed_rules(routing)) is shadowed


def test_a_rule_that_may_pass_a_handoff_on_shadows_nothing():
    from connector.routing_schema import shadowed_rules

    routing = compile_routing({"version": 1, "rules": [
        {"name": "vip", "when": {"segment": "vip"}, "then": {"sticky": True, "fallback": "next"}},
        {"name": "vip-billing", "when": {"segment": "vip", "intent": "billing"}, "then": {}}, {"name": "default"}]})
    assert shadowed_rules(routing) == []
