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


def test_a_request_cut_off_mid_body_makes_nothing():
    # A process killed as it sent: a real server never sees the request. The fake made a ticket of
    # the empty body, and the kill test found a stranger "None" among the tickets (now and then).
    import socket
    import time
    from urllib.parse import urlsplit

    with Loopback.spawn(Behaviour()) as remote:
        url = urlsplit(remote.env()["ZENDESK_BASE_URL"])
        with socket.create_connection((url.hostname, url.port)) as conn:
            conn.sendall(b"POST /api/v2/tickets.json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 200\r\n\r\n" + b'{"ticket": {"external_id": "hnd_')
        time.sleep(0.3)  # the fake reads to the end of what came
        assert remote.counts()["zendesk"] == {}


def test_a_repeat_on_the_loopback_zendesk_adds_its_tags_beside_its_note():
    # The benchmarks' and kill tests' Zendesk takes Add Tags as the adapter sends it: answered
    # 404, the ticket would have been taken for deleted and a second one opened.
    from adapters.base import Link
    from adapters.zendesk import ZendeskAdapter
    from connector.mappings import load_file
    from connector.settings import Settings
    from tests.adapters.test_zendesk import MAPPING_FILE, ctx
    from tests.fakes.loopback import ZENDESK_TOKEN

    with Loopback(Behaviour()) as fakes:
        settings = Settings(zendesk_subdomain="acme", zendesk_email="bot@acme.example", zendesk_api_token=ZENDESK_TOKEN,
                            zendesk_base_url=fakes.zendesk.url)
        adapter = ZendeskAdapter(settings, load_file(MAPPING_FILE))
        made = adapter.deliver(ctx())
        again = adapter.deliver(ctx(link=Link(vendor_id=made.vendor_id)))
        ticket = fakes.zendesk.tickets[int(made.vendor_id)]
    assert (again.status, again.vendor_id) == ("updated", made.vendor_id)
    assert len(ticket["comments"]) == 2 and "handoff" in ticket["tags"]
