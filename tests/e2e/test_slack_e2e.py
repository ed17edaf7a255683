"""Slack end to end, beside Zendesk: POST /v1/handoffs → the alert and its thread on a loopback Slack,
then the alert updated with the Zendesk ticket's link once it exists."""

from __future__ import annotations

import json
import time

import responses

from tests.conftest import auth
from tests.factories import full_packet
from tests.fakes.slack import FakeSlack
from tests.fakes.zendesk import FakeZendesk

ZENDESK = {"zendesk_subdomain": "acme", "zendesk_email": "bot@acme.example", "zendesk_api_token": "zd-token-123"}


def test_alert_thread_and_links_to_the_other_targets_ticket(make_app):
    with FakeSlack() as slack, responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        zd = FakeZendesk(rsps)
        zd.search(results=[])  # the enterprise rule is sticky: intake asks for the previous agent
        zd.create_ticket({"id": 1001})
        app = make_app(targets=("zendesk", "slack"), slack_bot_token=slack.token, slack_api_url=slack.api_url,
                       slack_channel="C0HANDOFF", **ZENDESK)
        response = app.test_client().post("/v1/handoffs", data=json.dumps(full_packet()), headers=auth(),
                                          content_type="application/json")
        assert response.status_code == 201, response.get_json()
        tickets = {t["target"]: t for t in response.get_json()["tickets"]}
        assert tickets["slack"]["status"] == "created"
        assert tickets["slack"]["url"].startswith("https://acme.slack.com/archives/C0HANDOFF/p")
        assert tickets["slack"]["id"].startswith("C0HANDOFF/")

        [post] = slack.calls_to("chat.postMessage")[:1]
        assert post.headers["authorization"] == f"Bearer {slack.token}"
        alert = json.dumps(post.body["blocks"])
        assert "Dana Whitfield" in alert and "ENTERPRISE" in alert.upper()
        assert post.body["text"]
        [top] = slack.top_level("C0HANDOFF")
        thread = json.dumps(slack.replies("C0HANDOFF", top["ts"]), ensure_ascii=False)
        assert "OAuth token expired (code 4012)" in thread  # the transcript is in the thread

        deadline = time.monotonic() + 5
        while not slack.calls_to("chat.update") and time.monotonic() < deadline:
            time.sleep(0.05)
        updated = json.dumps(slack.calls_to("chat.update")[-1].body)
        assert "https://acme.zendesk.com/agent/tickets/1001" in updated
