"""The loopback fake's own contract, as benchmarks use it: a child process driven over HTTP."""

from __future__ import annotations

from tests.durability.conftest import http
from tests.fakes.loopback import SLACK_TOKEN, Behaviour, Loopback


def test_spawned_loopback_serves_counts_and_takes_new_behaviour():
    with Loopback.spawn(Behaviour(rate_limit_per_minute=2)) as remote:
        env = remote.env()
        assert env["SALESFORCE_INSTANCE_URL"].startswith("https://127.0.0.1:") and env["REQUESTS_CA_BUNDLE"]
        api = env["SLACK_API_URL"] + "chat.postMessage"
        body = {"channel": "C1", "text": "hi", "metadata": {"event_type": "handoff_created",
                                                            "event_payload": {"handoff_id": "hnd_1"}}}
        headers = {"Authorization": f"Bearer {SLACK_TOKEN}"}
        assert http("POST", api, body, headers)[0] == 200
        assert http("POST", api, body, headers)[0] == 200
        status, answer_headers, _ = http("POST", api, body, headers)  # the third call in a minute
        assert status == 429 and int(answer_headers["Retry-After"]) >= 1
        assert remote.counts()["slack"] == {"hnd_1": 2}
        assert remote.duplicates() == ["slack: hnd_1 made 2 times"]
        remote.configure("zendesk", down=True)
        assert http("GET", env["ZENDESK_BASE_URL"] + "/api/v2/tickets.json?external_id=x")[0] == 503
        assert remote.stats()["zendesk"]["faults"] == {"down": 1}
    assert remote.process.returncode == 0
