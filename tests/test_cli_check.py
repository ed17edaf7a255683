"""`connector check --vendors`: each enabled vendor signs in once, and a refusal is a problem."""

from __future__ import annotations

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
