"""`connector check --vendors`: each enabled vendor signs in once, and a refusal is a problem."""

from __future__ import annotations

import pytest
import responses

from tests.fakes.zendesk import FakeZendesk

ZENDESK = dict(targets=("preview", "zendesk"), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
               zendesk_api_token="s3cr3t-token")


def test_check_stays_offline_without_vendors(make_app):
    with responses.RequestsMock():  # any call out would fail: nothing is registered
        result = make_app(**ZENDESK).test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    assert "zendesk:" not in result.output


def test_check_vendors_says_who_each_vendor_signs_in_and_preview_says_nothing(make_app):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        FakeZendesk(rsps).me()
        result = make_app(**ZENDESK).test_cli_runner().invoke(args=["connector", "check", "--vendors"])
    assert result.exit_code == 0, result.output
    assert "zendesk: signed in as johnny@example.com (agent)\n" in result.output
    assert "preview:" not in result.output


def test_check_vendors_with_refused_credentials_is_a_problem_and_fails(make_app):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.add("GET", "https://acme.zendesk.com/api/v2/users/me.json", status=401,
                 json={"error": "Couldn't authenticate you"})
        result = make_app(**ZENDESK).test_cli_runner().invoke(args=["connector", "check", "--vendors"])
    assert result.exit_code == 1
    assert "problem: zendesk: Zendesk refused the credentials (401): Couldn't authenticate you" in result.output


def test_check_vendors_warns_of_a_salesforce_handoff_id_field_that_is_not_unique(make_app, tmp_path):
    # Only a duplicate case showed it, long after the go-live; Case's describe shows it before.
    import shutil
    from pathlib import Path

    from tests.fakes.salesforce import INSTANCE, TOKEN, SalesforceFake

    root = tmp_path / "mappings"
    shutil.copytree(Path(__file__).resolve().parents[1] / "mappings", root)
    shipped = (root / "salesforce.yaml").read_text()
    (root / "salesforce.yaml").write_text(shipped.replace("# handoff_id_field: Handoff_Id__c", "handoff_id_field: "
                                                          "Handoff_Id__c\nhandoff_id_is_external_id: true", 1))
    app = make_app(targets=("salesforce",), salesforce_instance_url=INSTANCE, salesforce_access_token=TOKEN,
                   mappings_dir=str(root))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        org.query([], soql="SELECT Id FROM Case LIMIT 1", sobject="Case")
        org.describe_case({"name": "Handoff_Id__c", "type": "string", "length": 64, "externalId": True,
                           "unique": False})
        result = app.test_cli_runner().invoke(args=["connector", "check", "--vendors"])
    assert result.exit_code == 0, result.output
    assert "salesforce: signed in (token auth), cases readable, Case's fields read\n" in result.output
    assert "warning: salesforce: mappings/salesforce.yaml handoff_id_field: Handoff_Id__c is not Unique" \
        in result.output
    assert result.output.rstrip().endswith("warning(s)")


def test_check_vendors_with_no_vendor_enabled_says_so(make_app):
    result = make_app().test_cli_runner().invoke(args=["connector", "check", "--vendors"])
    assert result.exit_code == 0, result.output
    assert "vendors: none enabled to sign in to (CONNECTOR_TARGETS)\n" in result.output


def test_deliveries_lists_the_whole_error_whose_cause_comes_last(make_app, monkeypatch):
    from sqlalchemy import text

    from adapters import registry
    from tests.factories import minimal_packet
    from tests.test_handoffs import post

    monkeypatch.setitem(registry.TARGETS, "broken", "tests.support_adapters:BrokenAdapter")
    app = make_app(targets=("broken",))
    post(app.test_client(), minimal_packet())
    cause = "HTTPSConnectionPool(host='acme.zendesk.com', port=443): Max retries exceeded (Failed to resolve " \
            "'acme.zendesk.com'\n[Errno -3] Temporary failure in name resolution)"
    with app.extensions["connector"].db.engine.begin() as connection:
        connection.execute(text("UPDATE deliveries SET last_error = :e"), {"e": "TransientError: " + cause})
    result = app.test_cli_runner().invoke(args=["connector", "deliveries", "--state", "failed"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith(
        "Failed to resolve 'acme.zendesk.com' [Errno -3] Temporary failure in name resolution)")


def test_zendesk_over_plain_http_off_this_machine_is_warned_about(make_app):
    warned = make_app(**{**ZENDESK, "zendesk_base_url": "http://zendesk-proxy.internal"}).extensions["connector"]
    assert "ZENDESK_BASE_URL is plain http:// (zendesk-proxy.internal): the API token and every packet cross the " \
           "network unencrypted" in warned.warnings()
    local = make_app(**{**ZENDESK, "zendesk_base_url": "http://127.0.0.1:9000"}).extensions["connector"]
    assert not any("plain http" in said for said in local.warnings())


def test_both_zendesk_sign_ins_are_warned_about_by_the_adapter_that_chooses(make_app):
    # The OAuth token wins without a word (`ZendeskAdapter._client`): said where that choice is made.
    both = make_app(**{**ZENDESK, "zendesk_oauth_token": "zd-oauth"}).extensions["connector"]
    assert any(said.startswith("ZENDESK_API_TOKEN and ZENDESK_OAUTH_TOKEN are both set: the OAuth token signs in")
               for said in both.warnings())
    assert not any("both set" in said for said in make_app(**ZENDESK).extensions["connector"].warnings())


@pytest.mark.parametrize("command", [["deliveries", "--target", "zendsk"], ["replay", "--all-dead", "--target", "Zendesk"]])
def test_a_mistyped_target_is_refused_not_answered_with_nothing_found(make_app, command):
    # "0 deliveries" and exit 0 for a typo read as "nothing dead".
    result = make_app().test_cli_runner().invoke(args=["connector", *command])
    assert result.exit_code == 2 and "Invalid value for '--target'" in result.output


@pytest.mark.parametrize("command", ["replay", "dismiss"])
def test_delivery_ids_beside_all_dead_are_refused_not_one_of_them_ignored(make_app, command):
    # A review: `replay --all-dead 12` took only 12 (a wrong id: "no such delivery"), every dead one left
    # dead, and nothing said --all-dead did nothing.
    result = make_app().test_cli_runner().invoke(args=["connector", command, "--all-dead", "12"])
    assert result.exit_code == 2 and "delivery ids or --all-dead, not both" in result.output


@pytest.mark.parametrize(("command", "noun"), [(["replay"], "delivery"), (["dismiss"], "delivery"),
                                             (["callbacks", "--resend"], "callback"),
                                             (["callbacks", "--dismiss"], "callback")])
def test_an_id_past_the_databases_integers_is_no_such_row_not_a_traceback(make_app, command, noun):
    # A review: 2**63 raised OverflowError out of the query (a traceback), where the API answers 404 and
    # a smaller unknown id is "no such"; nor does naming only such ids act on every given-up row.
    runner = make_app().test_cli_runner()
    for ids in (["9223372036854775808"], ["999", str(2**70)]):
        result = runner.invoke(args=["connector", *command, *ids])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert f"0 {noun[:-1]}ies" in result.output or f"0 {noun}s" in result.output
        assert result.output.endswith(f"no such {noun}: {' '.join(ids)}\n")


def test_check_names_a_vendor_template_that_fails_on_the_sample_packets_values(make_app, tmp_path):
    # It compiles, so the edit was taken; on a packet with a number of seats it raised, and only the
    # deliveries said so. Tried on examples/, `check` (and start-up, and an edit's reload) say where.
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "zendesk.yaml").write_text(
        "version: 1\ncustom_fields:\n  - {id: 1, template: \"{{ customer.attributes.seats + ' seats' }}\"}\n")
    result = make_app(**ZENDESK, mappings_dir=str(tmp_path / "m")).test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    assert ("warning: zendesk.yaml custom_fields[0]: template error: TypeError: unsupported operand type(s) for +: "
            "'int' and 'str' — on the values of handoff-full.json; deliveries with such values leave that field out"
            in result.output.splitlines())


def test_check_refuses_a_vendor_template_the_sandbox_refuses_on_the_samples(make_app, tmp_path):
    # A warning ("could not be built"), then "ok": and every delivery was retried, no ticket.
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    app = make_app(**ZENDESK, mappings_dir=str(tmp_path / "m"))
    with (tmp_path / "m" / "zendesk.yaml").open("a") as file:
        file.write("custom_fields:\n  - {id: 1, template: \"{{ customer.attributes.pop('plan') }}\"}\n")
    result = app.test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code != 0
    assert "zendesk.yaml:" in result.output and "custom_fields[0].template: template error: access to attribute " \
        "'pop' of 'dict' object is unsafe" in result.output


def test_check_names_each_mapping_file_not_there_and_what_serves_instead(make_app, tmp_path):
    (tmp_path / "m").mkdir()  # an empty directory: a deploy that did not copy the files
    zendesk_alone = {**ZENDESK, "targets": ("zendesk",)}
    result = make_app(**zendesk_alone, mappings_dir=str(tmp_path / "m")).test_cli_runner().invoke(
        args=["connector", "check"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "is not in" in line]
    assert lines == [f"warning: zendesk.yaml is not in {tmp_path / 'm'}: the built-in defaults serve for that target",
                     f"warning: routing.yaml is not in {tmp_path / 'm'}: one rule, no teams, no business hours: "
                     "every handoff goes to the default team",
                     f"warning: messages.yaml is not in {tmp_path / 'm'}: the built-in customer messages, in English only"]
    shipped = make_app(**ZENDESK).test_cli_runner().invoke(args=["connector", "check"])
    assert "is not in" not in shipped.output
    # The built-in preview renders every vendor's payload from its file: each is named (a review).
    previewed = make_app(targets=("preview",), mappings_dir=str(tmp_path / "m")).test_cli_runner()
    lines = [line for line in previewed.invoke(args=["connector", "check"]).output.splitlines() if "is not in" in line]
    assert [line.split(" is not in")[0] for line in lines] == [
        "warning: zendesk.yaml", "warning: salesforce.yaml", "warning: slack.yaml", "warning: routing.yaml",
        "warning: messages.yaml"]


def test_a_trial_that_cannot_build_a_payload_is_a_warning_not_a_crash():
    # Run at start-up, by check and in the request that first meets an edit: a failure there must
    # be said, never raised.
    from unittest import mock

    from connector.template_trial import template_warnings

    broken = mock.Mock()
    broken.for_target.side_effect = lambda ctx: ctx
    broken.render.side_effect = KeyError("boom")
    assert template_warnings({"zendesk": broken}) == [
        "zendesk: the payload for handoff-full.json could not be built: KeyError: 'boom'",
        "zendesk: the payload for handoff-minimal.json could not be built: KeyError: 'boom'"]


@pytest.mark.parametrize(("name", "value"), [("CONNECTOR_BIND", "8080"), ("CONNECTOR_BIND", "unix:"),
                                             ("CONNECTOR_WEB_WORKERS", "0"), ("CONNECTOR_WEB_THREADS", "many")])
def test_check_refuses_what_would_stop_gunicorn(make_app, monkeypatch, name, value):
    # gunicorn.conf.py reads these, not the app: check said "ok", and the service did not start.
    monkeypatch.setenv(name, value)
    result = make_app().test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 1 and f"problem: {name}" in result.output, result.output


def test_check_warns_of_a_slack_channel_routing_names_by_name(make_app, tmp_path):
    # Only SLACK_CHANNEL and slack.yaml were looked at: a team's '#vip' passed, and failed the first
    # lookup after an unknown outcome.
    import shutil
    from pathlib import Path

    root = tmp_path / "mappings"
    shutil.copytree(Path(__file__).resolve().parents[1] / "mappings", root)
    routing = root / "routing.yaml"
    routing.write_text(routing.read_text().replace("  billing:\n    queue: Billing\n",
                                                   "  billing:\n    queue: Billing\n    targets: {slack: {channel: '#vip'}}\n", 1))
    app = make_app(targets=("slack",), slack_bot_token="xoxb-1", slack_channel="C0HANDOFF", mappings_dir=str(root))
    result = app.test_cli_runner().invoke(args=["connector", "check"])
    assert "warning: mappings/routing.yaml: teams.billing.targets.slack.channel is '#vip', a channel's name" \
        in result.output, result.output


def test_slack_without_its_signing_secret_is_warned_about_as_zendesk_without_webhook_secrets(make_app):
    # The alerts went out without their Claim button, and nothing said why.
    slack = {"targets": ("slack",), "slack_bot_token": "xoxb-1", "slack_channel": "C0HANDOFF"}
    result = make_app(**slack).test_cli_runner().invoke(args=["connector", "check"])
    assert "warning: no SLACK_SIGNING_SECRET: alerts are posted without a Claim button" in result.output
    signed = make_app(**slack, slack_signing_secret="s" * 32).extensions["connector"]
    assert not any("SLACK_SIGNING_SECRET" in said for said in signed.warnings())


def test_salesforce_without_webhook_tokens_is_warned_about(make_app):
    # Every Outbound Message would be refused 401, and no agent taking a case, nor its close, recorded.
    salesforce = {"targets": ("salesforce",), "salesforce_instance_url": "https://acme.my.salesforce.com",
                  "salesforce_access_token": "00D5g000004ABCD!AQ4AQGivenToken"}
    result = make_app(**salesforce).test_cli_runner().invoke(args=["connector", "check"])
    assert "warning: no SALESFORCE_WEBHOOK_TOKENS: /webhooks/salesforce refuses every Outbound Message" \
        in result.output, result.output
    tokened = make_app(**salesforce, salesforce_webhook_tokens=("t" * 32,)).extensions["connector"]
    assert not any("SALESFORCE_WEBHOOK_TOKENS" in said for said in tokened.warnings())


@pytest.mark.parametrize(("zone", "offset"), [("EST", "UTC-05:00"), ("Etc/GMT+2", "UTC-02:00"), ("Europe/Paris", None)])
def test_check_warns_of_a_calendar_in_a_zone_of_one_offset_all_year(make_app, tmp_path, zone, offset):
    # An admin's review: `timezone: EST` for a New York team closed it an hour early every summer
    # morning, and Etc/GMT+2 is UTC−2; `check` said ok.
    from tests.factories import _routing_edited

    root = _routing_edited(tmp_path / "m", "timezone: Europe/Paris", f"timezone: {zone}")
    result = make_app(**ZENDESK, mappings_dir=root).test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if ".timezone:" in line]
    assert said == ([f"warning: routing.yaml calendars.office.timezone: {zone} is {offset} all year, with no "
                     "summer time; a region's name (America/New_York, Europe/Berlin) follows its clock"]
                    if offset else [])


def test_check_warns_of_a_mapping_path_that_misspells_a_packet_field(make_app, tmp_path):
    # An admin's review: `customer.segmnt` found nothing in any packet — every VIP got the lookup's
    # default, `sentiment.lable` every ticket 'unknown' — and `check` said ok. A bot's own key stays quiet.
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "zendesk.yaml").write_text(
        "version: 1\ncustom_fields:\n"
        "  - {id: 1, lookup: {vip: tier_1}, from: customer.segmnt, default: tier_2}\n"
        "  - {id: 2, template: \"{{ sentiment.lable | default('unknown') }}\"}\n"
        "  - {id: 3, path: customer.plan_tier}\n  - {id: 4, path: history.0.tickt.id}\n"
        "  - {id: 5, path: conversation.channel_id}\n"  # a bot's own, extending `channel` (a review of the mend)
        "  - {id: 6, path: customer.emai}\n"  # cut short: a typo still (a review of that mend)
        "  - {id: 7, path: conversation.channelId}\n")  # camelCase: a bot's own too (a review of that one)
    result = make_app(**ZENDESK, mappings_dir=str(tmp_path / "m")).test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "no field the packet declares" in line]
    assert said == [f"warning: mappings/zendesk.yaml: custom_fields[{i}]: {wrote} is no field the packet declares — "
                    f"did you mean {meant}? (a bot's own field is read as written)"
                    for i, wrote, meant in [(0, "customer.segmnt", "customer.segment"),
                                            (1, "sentiment.lable", "sentiment.label"),
                                            (3, "history.0.tickt.id", "history.0.ticket.id"),
                                            (5, "customer.emai", "customer.email")]]


def test_check_warns_of_a_rule_an_earlier_one_takes_every_handoff_of(make_app, tmp_path):
    # An admin's review: `vip-billing` added after `vip` never fired, and `check` said ok. A rule an
    # earlier one covers only in part (billing after vip: a billing customer who is not a VIP) is fine.
    from tests.factories import _routing_edited

    added = ("  - name: vip-billing\n    when: {segment: vip, intent: billing.refund}\n    then: {team: billing}\n"
             "  - name: billing-vip\n    when: {intent: billing}\n    then: {team: billing}\n")
    root = _routing_edited(tmp_path / "m", "  - name: enterprise\n", added + "  - name: enterprise\n")
    result = make_app(**ZENDESK, mappings_dir=root).test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if "never runs" in line] == [
        "warning: routing.yaml rules[4] (vip-billing) never runs: every handoff it matches, rules[3] (vip) matches "
        "first — move it above that rule, or narrow that one"]


def test_check_vendors_reads_a_slack_channel_routing_gives_a_team(make_app, tmp_path):
    # A review: only SLACK_CHANNEL was read; a team's own channel the bot was not in passed, and
    # that team's handoffs then failed for good with not_in_channel.
    import shutil
    from pathlib import Path

    from tests.fakes.slack import FakeSlack

    root = tmp_path / "mappings"
    shutil.copytree(Path(__file__).resolve().parents[1] / "mappings", root)
    routing = root / "routing.yaml"
    routing.write_text(routing.read_text().replace("  billing:\n    queue: Billing\n",
                                                   "  billing:\n    queue: Billing\n    targets: {slack: {channel: C0BILLING}}\n", 1))
    with FakeSlack() as slack:
        app = make_app(targets=("slack",), slack_bot_token=slack.token, slack_api_url=slack.api_url,
                       slack_channel="C0HANDOFF", mappings_dir=str(root))
        slack.fail("conversations.history", error="not_in_channel", after=1)
        result = app.test_cli_runner().invoke(args=["connector", "check", "--vendors"])
        assert [c.body["channel"] for c in slack.calls_to("conversations.history")] == ["C0HANDOFF", "C0BILLING"]
    assert result.exit_code == 1
    assert "problem: slack: Slack conversations.history: not_in_channel (reading C0BILLING, routing.yaml: team " \
           "billing)" in result.output, result.output
