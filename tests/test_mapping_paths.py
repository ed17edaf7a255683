"""A mapping path or template reading what the connector builds — `assignment`, `handoff`, `brief`
(`adapters.base.mapping_context`) — is checked past its first part: those keys are known, and a
misspelt one found nothing on any handoff, the field left off every ticket (a mappings review)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from connector import routing
from connector.errors import ConfigError
from connector.mapping_values import BUILT_KEYS, check_path, check_template
from connector.mappings import load_mappings
from tests.factories import full_packet, mappings_with_a_first_rule, minimal_packet

MONDAY_NIGHT = dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("path", "words"), [
    ("assignment.teem", "assignment has no 'teem'; did you mean 'team'?"),
    ("handoff.uuid", "handoff has no 'uuid'; "),
    ("brief.summary", "brief has no 'summary'; "),
])
def test_a_misspelt_key_of_what_the_connector_builds_is_refused_at_load(path, words):
    with pytest.raises(ConfigError) as err:
        check_path(path, "salesforce.yaml fields.Team__c")
    assert words in str(err.value)
    with pytest.raises(ConfigError) as err:
        check_template("{{ " + path + " }}", "zendesk.yaml subject")
    assert f"template refers to {path}: " in str(err.value)


@pytest.mark.parametrize("template", [
    "{% for handoff in history %}{{ handoff.summary }}; {% endfor %}",
    "{% set brief = history | first %}{{ brief.channel }}",
    "{% with assignment = routing %}{{ assignment.department }}{% endwith %}",
    "{% macro line(handoff) %}{{ handoff.summary }}{% endmacro %}{{ line(history | first) }}",
    "{% for h in history %}{% set handoff = h %}{{ handoff.summary }}{% endfor %}",
    "{% if history %}{% set brief = history | first %}{% endif %}{{ brief.channel }}",
])
def test_a_name_the_template_binds_itself_is_its_own(template):
    # A review of the mend: a loop variable called `handoff` was refused, and a file that had loaded stopped the service.
    assert check_template(template, "zendesk.yaml custom_fields[0].template") == template


@pytest.mark.parametrize(("template", "read"), [
    ("{% for handoff in history %}{{ handoff.summary }} {% endfor %}Ref {{ handoff.uuid }}", "handoff.uuid"),
    ("{% macro line(brief) %}{{ brief.summary }}{% endmacro %}{{ brief.subjct }}", "brief.subjct"),
    ("{% with assignment = routing %}{% endwith %}{{ assignment.teem }}", "assignment.teem"),
    ("{{ assignment.teem }}{% set assignment = routing %}", "assignment.teem"),
    ("{% for x in history %}{% set handoff = x %}{% endfor %}{{ handoff.uuid }}", "handoff.uuid"),
])
def test_the_connectors_names_are_checked_outside_where_the_template_binds_them(template, read):
    # A second review of the mend: bound anywhere, a misspelt key after the loop loaded again.
    with pytest.raises(ConfigError) as err:
        check_template(template, "x")
    assert f"template refers to {read}: " in str(err.value)


@pytest.mark.parametrize("path", ["assignment.team", "assignment.targets.zendesk.group_id", "handoff.id",
                                  "brief.subject", "collected_data.anything_at_all", "customer.attributes.tier"])
def test_what_the_connector_builds_is_read_by_its_own_keys(path):
    assert check_path(path, "x") == path
    check_template("{{ " + path + " }}{{ assignment.kept.team if assignment.kept }}", "x")


def test_every_key_routing_writes_is_one_a_mapping_may_read(tmp_path):
    # Kept in step with `routing.assign`: a key routing writes and BUILT_KEYS lacks would refuse a
    # mapping that reads it.
    sticky = load_mappings(mappings_with_a_first_rule(
        tmp_path, "  - {name: sticky, when: {segment: vip}, then: {team: billing, sticky: true}}\n"),
        "/", ["zendesk", "salesforce", "slack"])
    shipped = load_mappings(str(Path(__file__).resolve().parents[1] / "mappings"), "/", ["zendesk", "salesforce", "slack"])
    seen: set[str] = set()
    for packet in (full_packet(), minimal_packet(), full_packet(customer={"segment": "vip", "name": "V"},
                                                                escalation={"reason": "regulatory", "detail": "x",
                                                                            "keywords": ["fraud"]})):
        for mappings, previous in ((shipped, None), (sticky, {"id": "7", "name": "Sam", "target": "zendesk"})):
            assignment = routing.assign(packet, mappings.routing, now=MONDAY_NIGHT, previous_agent=previous)
            routing.name_routed_agent(assignment, ["zendesk", "salesforce"], mappings.routing)
            routing.keep_with(assignment, "support", mappings.routing, MONDAY_NIGHT, ["zendesk"])
            seen |= set(assignment)
    assert seen <= BUILT_KEYS["assignment"], seen - BUILT_KEYS["assignment"]
    assert {"team", "queue", "priority", "rule", "targets", "kept", "business_hours", "previous_agent"} <= seen
