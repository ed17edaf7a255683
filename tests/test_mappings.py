"""Mapping files: validated at load with file, line and key; reloaded on edit, last good kept;
the value language (paths, templates, literals, lookups); sandbox escapes refused."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.mapping_values import MISSING, compile_value, lookup, resolve, template_failures
from connector.mappings import MappingStore, load_file, load_mappings
from tests.factories import FIXTURES, full_packet, minimal_packet

ROOT = Path(__file__).parents[1]
TARGETS = ["preview", "zendesk", "salesforce", "slack"]
GOOD = FIXTURES / "mappings" / "good"
ESCAPES = ["{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ cycler.__init__.__globals__ }}",
           "{{ x | attr('__class__') }}", "{{ self._TemplateReference__context }}"]


def test_the_shipped_mappings_load():
    mappings = load_mappings("mappings", str(ROOT), TARGETS)
    assert [rule["name"] for rule in mappings.routing["rules"]][-1] == "default"
    assert set(mappings.messages["locales"]) == {"en", "es", "fr", "de"}
    assert set(mappings.targets) == {"zendesk", "salesforce", "slack"}


@pytest.fixture
def mapdir(tmp_path: Path) -> Path:
    directory = tmp_path / "mappings"
    shutil.copytree(GOOD, directory)
    return directory


def load(directory: Path):  # type: ignore[no-untyped-def]
    return load_mappings(str(directory), "/", TARGETS)


def test_a_bad_key_is_named_with_its_file_and_line(tmp_path):
    shutil.copytree(FIXTURES / "mappings" / "bad", tmp_path / "m")
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "m")
    assert err.value.source.endswith("routing.yaml:8 rules[0].when.mood")
    assert "Unknown field" in err.value.message


def test_the_relative_directory_is_shown_as_configured(mapdir):
    (mapdir / "routing.yaml").write_text("version: 1\nrules:\n  - {name: x, when: {segment: 3}}\n")
    with pytest.raises(ConfigError) as err:
        load_mappings("mappings", str(mapdir.parent), TARGETS)
    assert err.value.source == "mappings/routing.yaml:3 rules[0].when.segment"


@pytest.mark.parametrize(("text", "source"), [
    ("version: 2\nrules: []\n", "routing.yaml:1 version"),
    ("version: 1\nrules:\n  - name: a\n    name: b\n", "routing.yaml:4 rules[0].name"),  # duplicate key
    ("version: 1\nrules: [\n", "routing.yaml:3"),  # not YAML
    ("version: 1\nteams:\n  support: {calendar: nope}\nrules:\n  - {name: default}\n",
     "routing.yaml:3 teams.support.calendar"),
    ("version: 1\nrules:\n  - {name: a, when: {segment: vip}, then: {message: gold}}\n  - {name: default}\n",
     "routing.yaml:3 rules[0].then.message"),  # no such variant in messages.yaml
    ("version: 1\ndefault:\n  observed_wait:\n    window_minutes: 0\nrules:\n  - {name: default}\n",
     "routing.yaml:4 default.observed_wait.window_minutes"),
    ("version: 1\ndefault:\n  observed_wait: {min_samples: 2, median: true}\nrules:\n  - {name: default}\n",
     "routing.yaml:3 default.observed_wait.median"),
    # Rules that could never match, refused rather than never run: a value no packet holds there…
    ("version: 1\nrules:\n  - name: a\n    when: {sentiment: furious}\n  - {name: default}\n",
     "routing.yaml:4 rules[0].when.sentiment"),
    ("version: 1\nrules:\n  - name: a\n    when: {urgency: [high, critical]}\n  - {name: default}\n",
     "routing.yaml:4 rules[0].when.urgency"),
    ("version: 1\nrules:\n  - name: a\n    when: {reason: regulator}\n  - {name: default}\n",
     "routing.yaml:4 rules[0].when.reason"),
    # An id no adapter reads, which was silently ignored (the ticket went to no group).
    ("version: 1\nteams:\n  support:\n    targets: {zendesk: {groupid: 360001}}\nrules:\n  - {name: default}\n",
     "routing.yaml:4 teams.support.targets.zendesk"),
    ("version: 1\nrules:\n  - name: a\n    when: {segment: vip}\n    then: {targets: {slack: {chanel: C0B}}}\n"
     "  - {name: default}\n", "routing.yaml:5 rules[0].then.targets.slack"),
    # …or scores no sentiment has.
    ("version: 1\nrules:\n  - name: a\n    when: {score_below: -0.5, score_above: 0.5}\n  - {name: default}\n",
     "routing.yaml:4 rules[0].when.score_below"),
    ("version: 1\nrules:\n  - name: a\n    when: {score_below: -1}\n  - {name: default}\n",
     "routing.yaml:4 rules[0].when.score_below"),
    ("version: 1\nrules:\n  - name: a\n    when:\n      score_above: 1.0\n  - {name: default}\n",
     "routing.yaml:5 rules[0].when.score_above"),
])
def test_routing_errors_name_file_line_and_key(mapdir, text, source):
    (mapdir / "routing.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith(source), err.value.source


def test_a_score_bound_no_score_passes_names_the_limit(mapdir):
    (mapdir / "routing.yaml").write_text("version: 1\nrules:\n  - {name: a, when: {score_below: -1}}\n"
                                         "  - {name: b, when: {score_above: 1}}\n  - {name: default}\n")
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert "no sentiment.score is below -1" in err.value.message and "from -1 to 1" in err.value.message
    assert "rules[1].when.score_above: in rule 'b': no sentiment.score is above 1" in err.value.message


def test_every_routing_problem_is_listed_at_once_with_its_line_and_rule(mapdir):
    (mapdir / "routing.yaml").write_text(
        "version: 1\nrules:\n  - name: vip\n    when: {segment: vip}\n    then: {priority: hgh}\n"
        "  - name: angry\n    when: {sentiment: angry}\n    then: {priority: urgnt}\n  - {name: default}\n")
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith("routing.yaml:5 rules[0].then.priority")
    first, also = err.value.message.split("\n")
    assert first.startswith("in rule 'vip': Must be one of: low, normal, high, urgent.")
    assert also.startswith("  also ") and "routing.yaml:8 rules[1].then.priority: in rule 'angry': Must be one of" in also


@pytest.mark.parametrize("escape", ESCAPES)
def test_sandbox_escapes_are_refused_at_load_in_messages(mapdir, escape):
    text = (mapdir / "messages.yaml").read_text().replace('no_wait: "Soon."', f'no_wait: "{escape}"')
    (mapdir / "messages.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith("messages.yaml:8 locales.en.no_wait")
    assert "not allowed" in err.value.message


@pytest.mark.parametrize(("line", "where"), [
    ("    teams: {support: '{{ team }} crew'}", "locales.en.teams.support"),
    ("    no_problem: 'your {{ team }} request'", "locales.en.no_problem"),
    ("    today: '{% if x %}today{% endif %}'", "locales.en.today"),
    ("    weekdays: [Mo, Tu, We, Th, Fr, Sa, '{# Sunday #}']", "locales.en.weekdays[6]"),
])
def test_template_syntax_in_messages_plain_words_is_refused_at_load(mapdir, line, where):
    # A review: said as written, `{{ team }}` reached customers as the braces, and `check` said ok.
    with (mapdir / "messages.yaml").open("a") as file:
        file.write(line + "\n")
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith(f"messages.yaml:10 {where}")
    assert "is plain text, said as written" in err.value.message


@pytest.mark.parametrize("escape", ESCAPES)
def test_sandbox_escapes_are_refused_at_load_in_vendor_files(mapdir, escape):
    (mapdir / "zendesk.yaml").write_text(f'version: 1\ncustom_fields:\n  - {{id: 1, template: "{escape}"}}\n')
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith("zendesk.yaml:3 custom_fields[0].template")


def test_vendor_files_paths_and_lookups_are_checked(mapdir):
    (mapdir / "zendesk.yaml").write_text("version: 1\ncustom_fields:\n  - {id: 1, path: 'collected_data..x'}\n")
    with pytest.raises(ConfigError, match="not a dotted path") as err:
        load(mapdir)
    assert err.value.source.endswith("zendesk.yaml:3 custom_fields[0].path")
    (mapdir / "zendesk.yaml").write_text("version: 1\nx:\n  y: {lookup: nope, from: sentiment.label}\n")
    with pytest.raises(ConfigError, match="no lookup table 'nope'"):
        load(mapdir)
    (mapdir / "zendesk.yaml").write_text("version: 1\nsubject: '{{ intent.name '\n")
    with pytest.raises(ConfigError, match="template syntax error") as err:
        load(mapdir)
    assert err.value.source.endswith("zendesk.yaml:2 subject")


@pytest.mark.parametrize("subject", [
    "'[{{ assignment.team }}] {{ brief.subject }}'",
    "{template: '[{{ assignment.team }}] {{ brief.subject }}'}",
    "{lookup: teams, from: assignment.team}",
    "{path: intent.name}",
])
def test_a_zendesk_subject_takes_every_value_form_the_readme_names(mapdir, subject):
    # `subject: str` refused the mapping forms mappings/README.md offers ("must be text").
    from adapters.registry import mapping_keys

    (mapdir / "zendesk.yaml").write_text(f"version: 1\nlookups: {{teams: {{billing: Billing}}}}\nsubject: {subject}\n")
    assert load_mappings(str(mapdir), "/", TARGETS, mapping_keys).targets["zendesk"]["subject"]
    (mapdir / "zendesk.yaml").write_text("version: 1\nsubject: [a, b]\n")
    with pytest.raises(ConfigError, match="must be text or a value"):
        load_mappings(str(mapdir), "/", TARGETS, mapping_keys)


def test_the_common_checks_leave_vendor_keys_to_the_adapter(mapdir):
    (mapdir / "slack.yaml").write_text("version: 1\nanything: {nested: [1, 2]}\nmention_on_urgent: '<!here>'\n")
    assert load(mapdir).targets["slack"]["anything"] == {"nested": [1, 2]}


@pytest.mark.parametrize(("file", "text", "where", "hint"), [
    # A misspelt `redact:` would send unmasked card numbers to the channel without a word.
    ("slack.yaml", "version: 1\nmention_on_urgent: '<!here>'\nredcat: [card]\n", "slack.yaml:3 redcat",
     "did you mean 'redact'?"),
    ("slack.yaml", "version: 1\nmention_on_urgnet: '<!here>'\n", "slack.yaml:2 mention_on_urgnet",
     "did you mean 'mention_on_urgent'?"),
    ("zendesk.yaml", "version: 1\nupdate_open_tickets: true\n", "zendesk.yaml:2 update_open_tickets",
     "did you mean 'update_open_ticket'?"),
    ("salesforce.yaml", "version: 1\nfeilds: {Subject: {path: intent.summary}}\n", "salesforce.yaml:2 feilds",
     "did you mean 'fields'?"),
    ("zendesk.yaml", "version: 1\ncompletely_else: 1\n", "zendesk.yaml:2 completely_else", "this file's keys are"),
])
def test_a_key_the_target_does_not_read_is_refused_with_file_line_and_a_guess(mapdir, file, text, where, hint):
    err = refused_by_the_service(mapdir, file, text)
    assert err.source.endswith(where)
    assert err.message.startswith("unknown key") and hint in err.message


def refused_by_the_service(mapdir: Path, file: str, text: str) -> ConfigError:
    """`file` written as `text`, loaded as the service loads (every target's keys known): its refusal."""
    from adapters.registry import mapping_keys

    (mapdir / file).write_text(text)
    with pytest.raises(ConfigError) as err:
        load_mappings(str(mapdir), "/", TARGETS, mapping_keys)
    return err.value


@pytest.mark.parametrize(("file", "text", "where", "words"), [
    # Quoted, "false" is text, and text is true: every brief went out as a public reply.
    ("zendesk.yaml", 'version: 1\npublic_comment: "false"\n', "zendesk.yaml:2 public_comment",
     "must be true or false, unquoted (got 'false', which is text)"),
    ("salesforce.yaml", "version: 1\ncomments_published: 'no'\n", "salesforce.yaml:2 comments_published",
     "must be true or false"),
    ("zendesk.yaml", "version: 1\nupdate_open_ticket: 1\n", "zendesk.yaml:2 update_open_ticket", "true or false"),
    ("zendesk.yaml", "version: 1\ntags: chatbot\n", "zendesk.yaml:2 tags", "must be a list"),
    ("salesforce.yaml", "version: 1\nrate_limit_retry_after_s: soon\n", "salesforce.yaml:2 rate_limit_retry_after_s",
     "must be a number"),
    ("slack.yaml", "version: 1\nmention_urgencies: urgent\n", "slack.yaml:2 mention_urgencies", "must be a list"),
])
def test_a_key_holding_the_wrong_type_is_refused_with_file_and_line(mapdir, file, text, where, words):
    err = refused_by_the_service(mapdir, file, text)
    assert err.source.endswith(where) and words in err.message


def test_every_key_the_shipped_files_and_their_docs_use_is_known():
    from adapters.registry import mapping_keys

    load_mappings("mappings", str(ROOT), TARGETS, mapping_keys)
    load_mappings(str(GOOD), "/", TARGETS, mapping_keys)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def touch(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))


def test_a_good_edit_is_picked_up_without_a_restart(mapdir):
    clock = Clock()
    store = MappingStore(str(mapdir), "/", TARGETS, clock=clock)
    first = store.current()
    routing = mapdir / "routing.yaml"
    touch(routing, routing.read_text().replace("expected_wait_seconds: 600", "expected_wait_seconds: 30"), 5)
    assert store.current() is first  # checked at most once a second
    clock.now += 1.5
    assert store.current().routing["default"]["expected_wait_seconds"] == 30
    assert store.errors is None


def test_while_one_request_reloads_an_edit_the_others_are_served_the_set_in_force(mapdir, monkeypatch):
    # A review: the reload parsed under the store's lock, and every other request of the process waited
    # for it (12 s for a 4.5 MB lookup table) instead of being served the last good set.
    import threading

    clock = Clock()
    store = MappingStore(str(mapdir), "/", TARGETS, clock=clock)
    first = store.current()
    parsing, release, load = threading.Event(), threading.Event(), store.load

    def slow_load():  # type: ignore[no-untyped-def]
        parsing.set()
        release.wait(10)
        return load()

    monkeypatch.setattr(store, "load", slow_load)
    routing = mapdir / "routing.yaml"
    touch(routing, routing.read_text().replace("expected_wait_seconds: 600", "expected_wait_seconds: 30"), 5)
    clock.now += 1.5
    reloading = threading.Thread(target=store.current)
    reloading.start()
    assert parsing.wait(10)
    clock.now += 1.5  # another request, another second later
    assert store.current() is first  # at once, not after the parse
    release.set()
    reloading.join(10)
    assert store.current().routing["default"]["expected_wait_seconds"] == 30


def test_a_bad_edit_keeps_the_last_good_set_and_is_logged(mapdir, caplog):
    clock = Clock()
    store = MappingStore(str(mapdir), "/", TARGETS, clock=clock)
    good = store.current()
    routing = mapdir / "routing.yaml"
    touch(routing, routing.read_text().replace("when: {segment: vip}", "when: {segmnt: vip}"), 5)
    clock.now += 2
    with caplog.at_level(logging.ERROR, logger="connector.mappings"):
        assert store.current() is good
    assert store.errors is not None and store.errors.source.endswith("routing.yaml:15 rules[0].when.segmnt")
    assert [r.source for r in caplog.records] == [store.errors.source]  # type: ignore[attr-defined]
    clock.now += 2
    caplog.clear()
    assert store.current() is good and not caplog.records  # reported once, not every second
    touch(routing, routing.read_text().replace("segmnt", "segment"), 10)  # fixed
    clock.now += 2
    assert store.current() is not good and store.errors is None


def test_a_file_removed_while_serving_is_said_and_its_defaults_serve(mapdir, caplog):
    # `mv zendesk.yaml` while running: "mappings reloaded" at INFO, and its mapping gone unsaid
    # (for Slack, its redaction).
    clock = Clock()
    store = MappingStore(str(mapdir), "/", TARGETS, clock=clock)
    assert "zendesk.yaml" not in store.current().absent
    (mapdir / "zendesk.yaml").unlink()
    clock.now += 2
    with caplog.at_level(logging.WARNING, logger="connector.mappings"):
        assert "zendesk" not in store.current().targets
    assert [(r.getMessage(), r.file) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("mapping file removed; the built-in defaults serve in its place", "zendesk.yaml")]
    assert store.errors is None


def test_a_bad_file_at_start_up_is_refused(tmp_path):
    shutil.copytree(FIXTURES / "mappings" / "bad", tmp_path / "m")
    with pytest.raises(ConfigError):
        MappingStore(str(tmp_path / "m"), "/", TARGETS)


def test_with_a_fallback_a_bad_file_at_start_serves_it_and_says_the_edit_is_refused(tmp_path, mapdir, caplog):
    """What a gunicorn worker does when it boots while an edit is refused (`mappings.inherited`)."""
    checked = MappingStore(str(mapdir), "/", TARGETS).current()
    shutil.copytree(FIXTURES / "mappings" / "bad", tmp_path / "m")
    with caplog.at_level(logging.ERROR, logger="connector.mappings"):
        store = MappingStore(str(tmp_path / "m"), "/", TARGETS, fallback=checked)
    assert store.current() is checked and store.errors is not None
    assert "mappings edit refused at start; serving the set gunicorn last checked" in caplog.text


def test_with_a_fallback_a_mappings_directory_gone_at_start_serves_it_too(tmp_path, mapdir):
    """A deploy swapping the directory, a volume briefly unmounted: a worker booting then keeps
    serving rather than failing to boot, which would stop the whole service."""
    checked = MappingStore(str(mapdir), "/", TARGETS).current()
    store = MappingStore(str(tmp_path / "gone"), "/", TARGETS, fallback=checked)
    assert store.current() is checked and store.errors is not None
    assert store.errors.source == "CONNECTOR_MAPPINGS_DIR"


def test_a_fallback_never_hides_a_setting_to_fix(mapdir, caplog):
    """Only a refused mapping edit serves the older set; a missing variable stops the worker, once
    and without claiming an edit was refused."""
    checked = MappingStore(str(mapdir), "/", TARGETS).current()

    def needs_a_token(mappings):  # type: ignore[no-untyped-def]
        raise ConfigError("ZENDESK_API_TOKEN", "must be set when the 'zendesk' target is enabled")

    with pytest.raises(ConfigError) as err, caplog.at_level(logging.ERROR, logger="connector.mappings"):
        MappingStore(str(mapdir), "/", TARGETS, check=needs_a_token, fallback=checked)
    assert err.value.source == "ZENDESK_API_TOKEN" and "refused" not in caplog.text


PACKET = full_packet()
TABLES = {"sentiment_priority": {"angry": "urgent", "frustrated": "high"}}


@pytest.mark.parametrize(("spec", "expected"), [
    ({"path": "collected_data.error_code"}, "4012"),
    ("customer.attributes.plan", "Business Pro"),  # a bare string starting at a packet field is a path
    ({"path": "transcript.0.text"}, "Our invoices stopped syncing to QuickBooks since Monday."),
    ({"path": "transcript.99.text"}, MISSING),
    ({"path": "collected_data.order_number"}, MISSING),
    ({"template": "{{ intent.name | default('') }} / {{ customer.segment }}"},
     "integrations.quickbooks.sync_failure / enterprise"),
    ("{{ assignment.team }}", "billing"),
    ({"literal": "customer.id"}, "customer.id"),
    ("Web", "Web"),
    (360001234567, 360001234567),
    ({"lookup": "sentiment_priority", "from": "sentiment.label", "default": "normal"}, "high"),
    ({"lookup": {"billing": "00G1"}, "from": "assignment.team"}, "00G1"),
    ({"lookup": "sentiment_priority", "from": "intent.name", "default": "normal"}, "normal"),
])
def test_resolve(spec, expected):
    assert resolve(spec, PACKET, {"assignment": {"team": "billing"}}, tables=TABLES) == expected


@pytest.mark.parametrize(("template", "expected"), [
    # A template's own fallback works when a parent is missing (the contract's minimal packet has no
    # intent, sentiment or segment): StrictUndefined raised at `intent.name`, and mappings/README.md's
    # own example left the field out of every such packet, with nothing said (a review).
    ("{{ intent.name | default('unknown') }}", "unknown"),
    ("{{ intent.name | default('') }} ({{ customer.segment | default('standard') }})", " (standard)"),
    ("{% if sentiment is defined %}{{ sentiment.label }}{% else %}none{% endif %}", "none"),
    ("{{ intent.name is defined }}", "False"),
    # Printed, tested or computed with, a missing value still leaves the field out — not an empty value
    # (`map` and `select` skip a false one), nor "[Undefined]" (a review of the mend).
    ("{{ intent.name }}", MISSING), ("{{ intent.name ~ '!' }}", MISSING), ("{{ intent.name == 'x' }}", MISSING),
    ("{{ customer.segment or 'standard' }}", "standard"),
    ("{% if sentiment %}{{ sentiment.label }}{% else %}none{% endif %}", "none"),
    ("{{ intent.entities | map(attribute='value') | join(', ') }}", MISSING),
    ("{{ customer.tags | select | join(', ') }}", MISSING), ("{{ [intent.name, 'x'] }}", MISSING),
])
def test_a_templates_fallback_stands_in_for_a_missing_parent(template, expected):
    assert resolve({"template": template}, minimal_packet()) == expected


@pytest.mark.parametrize(("template", "expected"), [
    # An optional key only some messages have, tested: the whole field was left out of nearly every packet
    # (a review of the mends) — only one message of the full example has attachments.
    ("{{ transcript | selectattr('attachments') | list | length }}", "1"),
    ("{% for m in transcript %}{% if m.attachments %}{{ m.attachments | length }}{% endif %}{% endfor %}", "1"),
])
def test_an_optional_key_of_each_message_may_be_tested(template, expected):
    assert resolve({"template": template}, full_packet()) == expected


def test_packet_text_is_never_compiled():
    packet = full_packet()
    packet["intent"]["name"] = "{{ 7*7 }}"
    assert resolve({"template": "[{{ intent.name }}]"}, packet) == "[{{ 7*7 }}]"


def test_a_runtime_sandbox_violation_leaves_the_value_out_and_names_the_file_and_key():
    # `_`-names are refused at load; one built at run time is caught by the sandbox itself. Raised, it
    # failed the delivery, retried as a transient error with no ticket; the field is left out instead.
    from connector.mapping_values import template_failures

    value = compile_value({"template": "{{ (cycler | attr(metadata.name)) }}"}, "mappings/zendesk.yaml:9 subject")
    with template_failures() as failed:
        assert resolve(value, {**PACKET, "metadata": {"name": "__init__"}}) is MISSING
    [err] = failed
    assert err.source == "mappings/zendesk.yaml:9 subject" and "unsafe" in err.message


@pytest.mark.parametrize(("text", "source"), [
    ("version: 1\ncustom_fields:\n  - {id: 1, template: \"{{ customer.attributes.pop('plan') }}\"}\n",
     "zendesk.yaml:3 custom_fields[0].template"),
    ("version: 1\nsubject: \"{{ collected_data.update(x=1) }}{{ intent.name }}\"\n", "zendesk.yaml:2 subject"),
])
def test_a_template_the_sandbox_refuses_on_the_samples_is_refused_at_load(mapdir, text, source):
    # It compiled, so `check` said "ok" and every delivery of the vendor raised the sandbox's error.
    (mapdir / "zendesk.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith(source)
    assert "is unsafe" in err.value.message and "on the values of handoff-full.json" in err.value.message


def test_a_template_past_its_limits_is_refused_at_load_not_hung_on(mapdir):
    # A loop of loops in messages.yaml hung the reload, every caller waiting on it, and `check`.
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    (mapdir / "messages.yaml").write_text(
        (mapdir / "messages.yaml").read_text().replace('no_wait: "Soon."', f'no_wait: "Soon.{loops}"'))
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith("messages.yaml:8 locales.en.no_wait") and "(MAX_RANGE)" in err.value.message
    (mapdir / "messages.yaml").write_text((GOOD / "messages.yaml").read_text())
    (mapdir / "zendesk.yaml").write_text("version: 1\nsubject: \"{{ intent.name * 1000000 }}\"\n")
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith("zendesk.yaml:2 subject") and "(MAX_SIZE)" in err.value.message


def test_a_template_failing_on_the_samples_values_is_still_only_warned_of(mapdir):
    (mapdir / "zendesk.yaml").write_text(
        "version: 1\ncustom_fields:\n  - {id: 1, template: \"{{ customer.attributes.seats + ' seats' }}\"}\n")
    assert load(mapdir).targets["zendesk"]["custom_fields"][0]["id"] == 1


def test_lookup_is_case_insensitive_and_has_a_default():
    assert lookup({"Billing": 1}, "billing", 0) == 1
    assert lookup({"billing": 1}, "sales", 0) == 0
    assert lookup({"billing": 1}, MISSING, "x") == "x"


def test_a_lookup_matches_as_text_a_key_yaml_read_as_a_number_or_true_false():
    # `4012:` is a number to YAML and `yes:` true: matched exactly, neither met the packet's "4012" or
    # "yes", and the field was left out without a word (a review).
    import yaml

    table = yaml.safe_load("{4012: oauth, yes: opted_in, no: opted_out, 2.5: half, '77': quoted}")
    values = ("4012", 4012, "YES", "on", True, "no", False, "2.5", 77)
    assert [lookup(table, value, None) for value in values] == [
        "oauth", "oauth", "opted_in", "opted_in", "opted_in", "opted_out", "opted_out", "half", "quoted"]
    versions = yaml.safe_load("{1.0: classic, 2: next}")  # a number however written (1.0 matched 1 before)
    assert [lookup(versions, value, None) for value in (1, "1", "1.0", 2.0, "2.00")] == ["classic"] * 3 + ["next"] * 2
    assert lookup({1: "one"}, True, None) is None and lookup({True: "yes"}, 1, None) is None
    assert lookup({16: "hex"}, "0x10", None) is None and lookup({"on": "x"}, True, None) == "x"
    # Exactly, and as text first: ids past 2**53 were one number as floats, and '007' beat 7 (a review).
    ids = yaml.safe_load("{'9007199254740993': silver, '9007199254740992': gold, '007': bond, 7: seven}")
    assert [lookup(ids, value, None) for value in (9007199254740992, "9007199254740992", 7, "7", "007", 7.0)] == [
        "gold", "gold", "seven", "seven", "bond", "seven"]
    # No number Decimal cannot hold: a huge exponent failed every delivery (InvalidOperation; a review).
    assert lookup({7: "x"}, "1e" + "9" * 30, "default") == lookup({7: "x"}, "1e-" + "9" * 40, "default") == "default"


def test_a_lookup_from_a_list_looks_up_each_item_for_a_multi_select():
    # A review: the list itself was looked up (unhashable), an internal error that failed every
    # delivery of a packet holding it. An item the table lacks is left out, or its default given.
    packet = {"routing": {"skills": ["Billing", "quickbooks", 7]}, "customer": {"attributes": {"plan": "pro"}}}
    table = {"billing": "billing_team", 7: "seven"}
    assert resolve({"lookup": table, "from": "routing.skills"}, packet) == ["billing_team", "seven"]
    assert resolve({"lookup": table, "from": "routing.skills", "default": "other"}, packet) == [
        "billing_team", "other", "seven"]
    assert resolve({"lookup": {"x": 1}, "from": "routing.skills"}, packet) is MISSING  # none found: left out
    # An entry (or the default) that is a list gives its options, as for one value; an option once.
    several = {"billing": ["billing_team", "finance"], "quickbooks": "finance"}
    assert resolve({"lookup": several, "from": "routing.skills", "default": ["triage"]}, packet) == [
        "billing_team", "finance", "triage"]
    with template_failures() as failures:  # an object is left out and named, as at a path
        assert resolve({"lookup": table, "from": "customer.attributes"}, packet) is MISSING
    assert "customer.attributes is an object" in str(failures[0])


@pytest.mark.parametrize("spec", [{"path": "a", "template": "b"}, {"path": "a b"}, {"lookup": "t", "from": "x"},
                                  [1, 2], {"literal": 1, "extra": 2}])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ConfigError):
        compile_value(spec, "here", TABLES)


def test_load_file_keeps_its_interface():
    data = load_file(GOOD / "zendesk.yaml")
    assert data["version"] == 1 and data["custom_fields"][0]["path"] == "collected_data.order_number"


def test_every_key_an_adapter_reads_from_its_mapping_is_one_it_declares():
    """Drift guard: a key read in an adapter's source but missing from `mapping_keys` would refuse
    a valid file (and a declared key nobody reads would accept a useless one)."""
    import re

    from adapters.base import COMMON_MAPPING_KEYS
    from adapters.registry import adapter_class

    adapters = ROOT / "adapters"
    for target in ("zendesk", "salesforce", "slack"):
        source = "".join(path.read_text() for path in adapters.glob(f"{target}*.py"))
        read = set(re.findall(r'(?:mapping|_conf|conf)(?:\.get\(|\[)"([a-z_]+)"', source))
        declared = adapter_class(target).mapping_keys | COMMON_MAPPING_KEYS
        assert read <= declared, (target, read - declared)
        assert adapter_class(target).mapping_keys <= read | set(re.findall(r'"([a-z_]+)"', source)), target


@pytest.mark.parametrize(("edit", "words"), [
    # Both passed `check` and the reload; then every handoff was a 500.
    ("{{ teams }}", "template uses teams, which it is not given here (it is given: expectation, problem, team)"),
    ("{{ team | uper }}", "No filter named 'uper'"),
])
def test_a_customer_message_naming_what_it_is_not_given_is_refused_at_load(mapdir, edit, words):
    text = (mapdir / "messages.yaml").read_text().replace("Connecting you with {{ team }}", f"Connecting you with {edit}")
    (mapdir / "messages.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith("messages.yaml:5 locales.en.template")
    assert words in err.value.message


@pytest.mark.parametrize(("old", "new", "where", "words"), [
    # `check` said "ok"; out of hours the customer was told nothing of when anyone would reply.
    (" {{ expectation }}\"", "\"", "5 locales.en.template", "must say {{ expectation }} (when someone will reply)"),
    ("VIP: {{ team }}. {{ problem }}.", "VIP: {{ team }}.", "6 locales.en.variants.vip",
     "must say {{ problem }} (the problem, restated)"),
    ("About {{ minutes }} min.", "Shortly.", "7 locales.en.wait", "must say {{ minutes }} (the wait)"),
    ("reply by {{ time }} {{ day }}", "reply {{ day }}", "9 locales.en.closed", "must say {{ time }}"),
])
def test_a_customer_message_that_leaves_out_what_every_message_must_say_is_refused(mapdir, old, new, where, words):
    text = (mapdir / "messages.yaml").read_text()
    assert old in text
    (mapdir / "messages.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith(f"messages.yaml:{where}") and words in err.value.message


def test_a_vendor_template_must_start_at_a_packet_field(mapdir):
    (mapdir / "zendesk.yaml").write_text('version: 1\ncustom_fields:\n  - {id: 1, template: "{{ intnt.name }}"}\n')
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith("zendesk.yaml:3 custom_fields[0].template")
    assert "template uses intnt" in err.value.message


def test_a_vendor_template_reading_what_this_packet_lacks_leaves_the_field_out():
    # The shipped example; with no sentiment, every delivery failed (ConfigError) until dead.
    value = compile_value({"template": "{{ intent.name }} ({{ sentiment.label }})"}, "zendesk.yaml:9 custom_fields[0]")
    assert resolve(value, {k: v for k, v in PACKET.items() if k != "sentiment"}) is MISSING
    assert resolve(value, PACKET) == f"{PACKET['intent']['name']} ({PACKET['sentiment']['label']})"


def test_a_file_read_again_is_parsed_once_and_each_reader_gets_its_own_copy(mapdir, monkeypatch):
    import yaml

    from connector import mappings as mappings_module

    parses = []
    loader = yaml.SafeLoader
    monkeypatch.setattr(mappings_module.yaml, "SafeLoader", lambda text: parses.append(text) or loader(text))
    mappings_module._parsed.cache_clear()
    path = mapdir / "routing.yaml"
    first, lines = mappings_module.read_yaml(path, "routing.yaml")
    first["rules"].clear()
    lines.clear()
    again, lines_again = mappings_module.read_yaml(path, "routing.yaml")
    assert len(parses) == 1 and again["rules"] and lines_again[("rules",)] > 1
    path.write_text(path.read_text() + "# an edit\n")
    mappings_module.read_yaml(path, "routing.yaml")
    assert len(parses) == 2  # a changed text is read anew


def test_a_date_that_does_not_exist_is_refused_with_its_line(mapdir):
    # 2026-24-12 (day and month swapped) is a date to YAML; building it raised a ValueError that
    # stopped start-up and every command with a traceback, and a live reload's loop with another.
    text = (mapdir / "routing.yaml").read_text().replace("holidays: [2026-12-25]", "holidays: [2026-24-12]")
    (mapdir / "routing.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert err.value.source.endswith("routing.yaml:8")
    assert "no real one" in err.value.message and "month must be in 1..12" in err.value.message


@pytest.mark.parametrize(("spec", "words"), [
    # As a bare string it went to the vendor as the text "colected_data.order_number", every time.
    ("colected_data.order_number", "reads as a misspelt path: did you mean 'collected_data'?"),
    # Written out, it found nothing in any packet: the field silently left out.
    ({"path": "colected_data.order_number"}, "not a packet field; did you mean 'collected_data'?"),
    ({"lookup": {"a": 1}, "from": "Customer.segment"}, "starts at 'Customer', which is not a packet field"),
])
def test_a_misspelt_path_is_refused_not_sent_as_text_or_left_out(spec, words):
    with pytest.raises(ConfigError) as err:
        compile_value(spec, "salesforce.yaml:4 fields.Order_Number__c")
    assert words in err.value.message


def test_text_that_only_looks_like_a_path_stays_text():
    assert compile_value("acme.com", "x").kind == "literal"
    assert compile_value("v1.2", "x").kind == "literal"


@pytest.mark.parametrize(("target", "mapping", "words"), [
    ("salesforce", {"contact": "find_or_creat"}, "contact"),
    ("zendesk", {"custom_fields": [{"template": "{{ intent.name }}"}]}, "custom_fields[0]"),
    ("slack", {"mention_on_urgent": "@here"}, "mention_on_urgent"),
])
def test_each_vendors_own_checks_run_with_only_preview_enabled(target, mapping, words):
    # The default, where admins try mappings out: these passed `check` and the reload, then failed
    # every preview delivery and the `preview` command with a traceback.
    from adapters.registry import build_adapters
    from connector.settings import Settings

    settings = Settings()
    assert settings.targets == ("preview",)
    with pytest.raises(ConfigError) as err:
        build_adapters(settings, {target: mapping})
    assert words in err.value.source


def test_the_readmes_routing_example_loads_as_written(tmp_path):
    # Copied as written it was refused: its default team was under no `teams:`.
    from adapters.registry import TARGETS as ALL
    from adapters.registry import mapping_keys

    readme = (ROOT / "mappings" / "README.md").read_text(encoding="utf-8")
    example = readme.split("## Routing (`routing.yaml`)")[1].split("```yaml\n")[1].split("```")[0]
    shutil.copytree(ROOT / "mappings", tmp_path / "m")
    (tmp_path / "m" / "routing.yaml").write_text(example)
    loaded = load_mappings(str(tmp_path / "m"), "/", list(ALL), mapping_keys)
    assert [rule["name"] for rule in loaded.routing["rules"]] == ["vip-billing", "default"]


@pytest.mark.parametrize(("stranger", "hint"), [("routing.yml", "did you mean 'routing.yaml'?"),
                                                 ("Zendesk.yaml", "did you mean 'zendesk.yaml'?"),
                                                 ("old-routing.yaml", "it reads"),
                                                 ("preview.yaml", "it reads")])
def test_a_yaml_file_the_connector_does_not_read_is_refused(mapdir, stranger, hint):
    # Skipped without a word: with routing.yaml renamed, the built-in defaults served in its place.
    from adapters.registry import mapping_keys

    (mapdir / "routing.yaml").rename(mapdir / stranger)
    with pytest.raises(ConfigError) as err:
        load_mappings(str(mapdir), "/", TARGETS, mapping_keys)
    assert err.value.source.endswith(stranger)
    assert err.value.message.startswith("is not a file the connector reads") and hint in err.value.message
    # The built-in preview has no file of its own (it renders every vendor's): read, one was used by nothing.
    assert "preview.yaml" not in err.value.message.split("it reads", 1)[1].split("\n")[0]


def test_a_misnamed_file_is_listed_with_every_other_bad_file(mapdir):
    # It was refused on its own, before any file was read: the next `check` met the next problem.
    from adapters.registry import mapping_keys

    (mapdir / "Slack.yaml").write_text("version: 1\n")
    (mapdir / "zendesk.yaml").write_text("version: 1\npublic_comment: 'false'\n")
    with pytest.raises(ConfigError) as err:
        load_mappings(str(mapdir), "/", TARGETS, mapping_keys)
    assert err.value.source.endswith("Slack.yaml")
    assert "also " in err.value.message and "zendesk.yaml:2 public_comment" in err.value.message


def test_a_misspelt_bare_path_in_a_vendor_file_is_refused_when_the_file_is_loaded(tmp_path):
    # The form the README and the shipped file show: it passed `check` and the reload, then failed
    # every delivery to that vendor (and the preview) with an error naming no file or line.
    from adapters.registry import build_adapters, mapping_keys
    from connector.settings import Settings

    mapdir = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mapdir)
    text = (mapdir / "salesforce.yaml").read_text()
    assert "\n# fields:\n" in text
    (mapdir / "salesforce.yaml").write_text(text.replace("\n# fields:\n", "\nfields:\n  Error_Code__c: colected_data.error_code\n"))
    with pytest.raises(ConfigError) as err:
        MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys,
                     check=lambda mappings: build_adapters(Settings(), mappings.targets))
    line = text[:text.index("\n# fields:\n")].count("\n") + 3  # the line of Error_Code__c's value
    assert err.value.source.endswith(f"salesforce.yaml:{line} fields.Error_Code__c")
    assert "did you mean 'collected_data'?" in err.value.message


@pytest.mark.parametrize(("file", "old", "new"), [
    # Values a vendor takes as written, never value specs: they loaded before, and must still.
    ("salesforce.yaml", "\nstatus: New\n", "\nstatus: Escalation.L2\n"),
    ("zendesk.yaml", "\n  - chatbot\n", "\n  - customers.portal\n"),
])
def test_a_vendors_own_value_that_looks_like_a_path_still_loads(tmp_path, file, old, new):
    from adapters.registry import build_adapters, mapping_keys
    from connector.settings import Settings

    mapdir = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mapdir)
    text = (mapdir / file).read_text()
    assert old in text
    (mapdir / file).write_text(text.replace(old, new, 1))
    MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys,
                 check=lambda mappings: build_adapters(Settings(), mappings.targets))


@pytest.mark.parametrize("stranger", ["zendesk.yml", "Routing.YAML"])
def test_with_a_fallback_a_stray_yaml_file_at_start_serves_it_too(tmp_path, mapdir, stranger):
    """A copy left as `zendesk.yml`: its refusal was taken for a setting's, and a worker replaced
    meanwhile (an OOM kill) failed to boot, which stopped the whole service."""
    from adapters.registry import mapping_keys

    checked = MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys).current()
    (mapdir / stranger).write_text((mapdir / "zendesk.yaml").read_text())
    store = MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys, fallback=checked)
    assert store.current() is checked and store.errors is not None
    assert store.errors.source.endswith(stranger) and store.errors.guide == "mappings/README.md"


@pytest.mark.parametrize(("file", "old", "new", "where", "words"), [
    # Zendesk's own fixed sets: each went out on every ticket, and Zendesk refused it by name.
    ("zendesk.yaml", "type: question", "type: questoin", "zendesk.yaml:{line} type", "must be one of question, incident"),
    ("zendesk.yaml", "  urgent: urgent", "  urgent: urgnet", "zendesk.yaml:{line} priority.urgent", "got 'urgnet'"),
    ("salesforce.yaml", "contact: find_or_create", "contact: find_or_creat", "salesforce.yaml:{line} contact", "got 'find_or_creat'"),
    ("slack.yaml", 'mention_on_urgent: ""', "mention_on_urgent: '@here'", "slack.yaml:{line} mention_on_urgent", "<!here>"),
    # A YAML comment: the key held nothing, and every alert went to SLACK_CHANNEL without a word.
    # (Only `channel:`: a null mention_on_urgent or Zendesk type means off, or the default.)
    ("slack.yaml", "# channel: C0HANDOFF", "channel: #handoffs", "slack.yaml:{line} channel",
     "empty: a '#' after a space starts a YAML comment"),
    ("zendesk.yaml", "type: question", "type: #question", "zendesk.yaml:{line} type",
     "empty: a '#' after a space starts a YAML comment"),
])
def test_a_vendors_own_refusal_names_the_file_as_read_and_the_line(tmp_path, file, old, new, where, words):
    # They named `mappings/<vendor>.yaml` (wherever CONNECTOR_MAPPINGS_DIR pointed) and no line.
    from adapters.registry import build_adapters, mapping_keys
    from connector.settings import Settings

    mapdir = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "mappings", mapdir)
    text = (mapdir / file).read_text()
    assert f"\n{old}\n" in text
    (mapdir / file).write_text(text.replace(f"\n{old}\n", f"\n{new}\n", 1))
    with pytest.raises(ConfigError) as err:
        MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys,
                     check=lambda mappings: build_adapters(Settings(), mappings.targets))
    line = text[:text.index(f"\n{old}\n")].count("\n") + 2  # the edited line's, as the file reads now
    assert err.value.source == f"{mapdir}/{where.format(line=line)}" and words in err.value.message


def test_a_null_text_key_other_than_a_channel_still_means_off(tmp_path):
    # A review: refusing every empty text key stopped `mention_on_urgent:` (off) and Zendesk's `type: ~`.
    from adapters.registry import build_adapters, mapping_keys
    from connector.settings import Settings

    mapdir = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "mappings", mapdir)
    text = (mapdir / "slack.yaml").read_text()
    (mapdir / "slack.yaml").write_text(text.replace('\nmention_on_urgent: ""\n', "\nmention_on_urgent:\n", 1))
    text = (mapdir / "zendesk.yaml").read_text()
    (mapdir / "zendesk.yaml").write_text(text.replace("\ntype: question\n", "\ntype: ~\n", 1))
    MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys,
                 check=lambda mappings: build_adapters(Settings(), mappings.targets))


@pytest.mark.parametrize(("old", "new", "words"), [
    # It said "team 'biling' has no calendar", sending the admin to calendars: for a typo.
    ("hours_of: billing", "hours_of: biling",
     "routing.yaml:79 rules[5].when.hours_of: in rule 'billing-after-hours-urgent': 'biling' is not under teams: — "
     "did you mean 'billing'?"),
    ("then: {team: billing}", "then: {team: biling}", "routing.yaml:85 rules[6].then.team: in rule "
     "'billing': 'biling' is not under teams: — did you mean 'billing'?"),
])
def test_a_misspelt_team_in_a_rule_is_named_with_the_team_it_meant(tmp_path, old, new, words):
    mapdir = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mapdir)
    text = (mapdir / "routing.yaml").read_text()
    assert old in text
    (mapdir / "routing.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load(mapdir)
    assert words in str(err.value)


def test_every_refused_file_is_named_at_once(tmp_path):
    # `check` named the first refused file only: an admin fixing it met the next one only then.
    from adapters.registry import mapping_keys

    mapdir = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mapdir)
    (mapdir / "routing.yaml").write_text("version: 1\nrules: [{name: x, when: {segmnt: vip}}]\n")
    (mapdir / "messages.yaml").write_text("version: 1\nlocales: {en: {template: '{{ teams }}'}}\n")
    (mapdir / "slack.yaml").write_text("version: 1\nmention_on_urgnet: '<!here>'\n")
    with pytest.raises(ConfigError) as err:
        load_mappings(str(mapdir), "/", TARGETS, mapping_keys)
    said = str(err.value)
    assert err.value.source.endswith("slack.yaml:2 mention_on_urgnet")
    assert "\n  also " in said and "routing.yaml:2 rules[0].when.segmnt" in said and "messages.yaml:2" in said


def test_every_file_a_vendor_refuses_is_named_at_once_with_the_others(tmp_path, make_app):
    # The vendors' own checks ran once the set had loaded, one vendor at a time: a routing typo hid
    # a Zendesk `type` typo, which hid a Salesforce one (a review).
    mapdir = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mapdir)
    (mapdir / "routing.yaml").write_text("version: 1\nrules: [{name: x, when: {segmnt: vip}}]\n")
    (mapdir / "zendesk.yaml").write_text("version: 1\ntype: questoin\n")
    (mapdir / "salesforce.yaml").write_text("version: 1\ncontact: find_or_craete\n")
    with pytest.raises(ConfigError) as err:
        make_app(mappings_dir=str(mapdir))
    said = str(err.value)
    assert err.value.source.endswith("zendesk.yaml:2 type")
    assert "also " in said and "salesforce.yaml:2 contact" in said and "routing.yaml:2 rules[0].when.segmnt" in said


@pytest.mark.parametrize("stranger", ["zendesk.yml", "Routing.YAML"])
def test_a_stray_yaml_file_appearing_and_going_while_serving_is_noticed(mapdir, stranger):
    """Only `*.yaml` was looked at: a `zendesk.yml` copied in went unnoticed, and once it was
    removed /readyz said "refused" until another file happened to change."""
    from adapters.registry import mapping_keys

    clock = Clock()
    store = MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys, clock=clock)
    good = store.current()
    (mapdir / stranger).write_text("version: 1\n")
    clock.now += 2
    assert store.current() is good and store.errors is not None and store.errors.source.endswith(stranger)
    (mapdir / stranger).unlink()
    clock.now += 2
    assert store.current() is not good and store.errors is None


def test_an_editors_lock_file_is_not_read_and_a_dangling_link_coming_and_going_is_noticed(mapdir):
    """A review: Emacs' `.#routing.yaml` (a link to nothing, while a buffer is unsaved) refused the
    set — /readyz failing, `check` passing — and, never stamped, its removal went unnoticed."""
    from adapters.registry import mapping_keys

    clock = Clock()
    store = MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys, clock=clock)
    good = store.current()
    (mapdir / ".#routing.yaml").symlink_to("root@host.1234:1700000000")
    (mapdir / "._zendesk.yaml").write_bytes(b"\x00\x05\x16\x07")  # macOS's resource fork on a shared volume
    edited = (mapdir / "messages.yaml").read_text().replace("version: 1", "version: 1  # edited", 1)
    (mapdir / "messages.yaml").write_text(edited)
    clock.now += 2
    assert store.current() is not good and store.errors is None  # the edit is served
    (mapdir / "routing.yml").symlink_to("nowhere")  # a stray name, dangling: refused, then gone
    clock.now += 2
    refused = store.current()
    assert store.errors is not None and store.errors.source.endswith("routing.yml")
    (mapdir / "routing.yml").unlink()
    clock.now += 2
    assert store.current() is not refused and store.errors is None


def test_salesforce_fields_named_twice_in_another_letter_case_are_refused(tmp_path):
    # A review: `Team__c:` and `team__c:` loaded without a word; Salesforce reads them as one field,
    # and the later mapping silently replaced the other's value on every case.
    from adapters.registry import build_adapters, mapping_keys
    from connector.settings import Settings

    mapdir = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mapdir)
    text = (mapdir / "salesforce.yaml").read_text()
    (mapdir / "salesforce.yaml").write_text(text.replace(
        "\n# fields:\n", "\nfields:\n  Team__c: assignment.team\n  team__c: customer.segment\n"))
    with pytest.raises(ConfigError) as err:
        MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys,
                     check=lambda mappings: build_adapters(Settings(), mappings.targets))
    assert err.value.source.endswith("fields.team__c") and "is Team__c in another letter case" in err.value.message


@pytest.mark.parametrize("key", ["Description", "description"])
def test_salesforce_fields_may_not_replace_the_description_the_brief_and_its_handoff_id_live_in(tmp_path, key):
    # A review: `fields: {Description: intent.summary}` gave the agent one line for a brief, a receipt
    # saying everything was delivered, and — without handoff_id_field — a second case after a timed-out create.
    from adapters.registry import build_adapters, mapping_keys
    from connector.settings import Settings

    mapdir = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mapdir)
    text = (mapdir / "salesforce.yaml").read_text()
    (mapdir / "salesforce.yaml").write_text(text.replace("\n# fields:\n", f"\nfields:\n  {key}: intent.summary\n"))
    with pytest.raises(ConfigError) as err:
        MappingStore(str(mapdir), "/", TARGETS, keys_of=mapping_keys,
                     check=lambda mappings: build_adapters(Settings(), mappings.targets))
    assert err.value.source.endswith(f"fields.{key}") and "holds the agent's brief" in err.value.message


@pytest.mark.parametrize(("lookups", "field", "source"), [
    ("", "{id: 360001234570, lookup: {frustrated: low}, from: sentiment.label, default: {x: 1}}",
     "custom_fields[0].default"),
    ("", "{id: 360001234570, literal: {x: 1}}", "custom_fields[0].literal"),
    # A review: YAML reads them as a date and a timestamp — `check` said ok, every render failed.
    ("", "{id: 360001234570, literal: 2026-12-07}", "custom_fields[0].literal"),
    ("", "{id: 360001234570, lookup: {zzz: a}, from: sentiment.label, default: 2026-12-07T10:00:00Z}",
     "custom_fields[0].default"),
])
def test_a_default_or_literal_no_field_can_take_is_refused_at_load(tmp_path, lookups, field, source):
    # A review: it loaded, warned per handoff blaming `customer.segment` (text) for being an object,
    # and the field went off every ticket that fell through to it.
    err = _zendesk_field_refused(tmp_path, lookups, field)
    assert source in err.source
    assert "cannot be a field's value: a mapping value is text" in err.message or "write it quoted" in err.message


@pytest.mark.parametrize(("lookups", "field", "source"), [
    ("lookups:\n  tiers:\n    frustrated: {x: 1}\n", "{id: 360001234570, lookup: tiers, from: sentiment.label}",
     "lookups.tiers.frustrated"),
    ("", "{id: 360001234570, lookup: {frustrated: [low, {x: 1}]}, from: sentiment.label}",
     "custom_fields[0].lookup.frustrated"),
])
def test_a_lookup_table_whose_value_no_field_can_take_is_refused_at_load(tmp_path, lookups, field, source):
    # A review: it loaded, and each matching handoff's WARNING blamed `sentiment.label` (text) for
    # being an object, the field left off every such ticket.
    err = _zendesk_field_refused(tmp_path, lookups, field)
    assert source in err.source
    assert "cannot be a field's value: a lookup gives text, a number, true/false, or a list of those" in err.message


def _zendesk_field_refused(tmp_path, lookups: str, field: str) -> ConfigError:
    directory = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", directory)
    with (directory / "zendesk.yaml").open("a") as file:
        file.write(f"{lookups}custom_fields:\n  - {field}\n")
    with pytest.raises(ConfigError) as err:
        load(directory)
    return err.value


def test_a_file_saved_in_another_encoding_is_refused_with_its_line_and_what_to_do(tmp_path):
    # An admin's review: "position 5610" and no advice, for a messages.yaml an editor saved as Latin-1.
    shutil.copytree(Path(__file__).resolve().parents[1] / "mappings", tmp_path / "m")
    messages = tmp_path / "m" / "messages.yaml"
    text = messages.read_text(encoding="utf-8")
    messages.write_bytes(text.encode("utf-8").replace("facturación".encode(), "facturación".encode("latin-1")))
    line = text[:text.index("facturación")].count("\n") + 1
    with pytest.raises(ConfigError) as err:
        load_mappings(str(tmp_path / "m"), str(tmp_path), [])
    assert (err.value.source, err.value.message) == (f"{tmp_path / 'm' / 'messages.yaml'}:{line}", (
        "is not UTF-8 (byte 0xf3): save the file as UTF-8 — an editor's Latin-1 or Windows-1252 writes é and ü so"))
