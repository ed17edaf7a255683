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


def _zendesk(fakes):
    from adapters.zendesk import ZendeskAdapter
    from connector.mappings import load_file
    from connector.settings import Settings
    from tests.adapters.test_zendesk import MAPPING_FILE
    from tests.fakes.loopback import ZENDESK_TOKEN

    settings = Settings(zendesk_subdomain="acme", zendesk_email="bot@acme.example", zendesk_api_token=ZENDESK_TOKEN,
                        zendesk_base_url=fakes.zendesk.url)
    return ZendeskAdapter(settings, load_file(MAPPING_FILE))


def test_the_loopback_zendesk_lists_a_tickets_comments_as_stored():
    # After an update timed out the adapter reads the ticket's comments for its handoff id: the
    # fake answered 404 InvalidEndpoint, the ticket was taken for deleted and a second one opened.
    from adapters.base import Link
    from tests.adapters.test_zendesk import ctx

    with Loopback(Behaviour()) as fakes:
        adapter = _zendesk(fakes)
        made = adapter.deliver(ctx())
        link = Link(vendor_id=made.vendor_id)
        again = adapter.deliver(ctx(handoff_id="hnd_01TESTHANDOFF0000000000002", link=link))
        base = fakes.zendesk.url + f"/api/v2/tickets/{made.vendor_id}/comments.json"
        status, _, newest = http("GET", base + "?sort_order=desc&per_page=100")
        _, _, paged = http("GET", base + "?per_page=1&page=1")
        _, _, last = http("GET", base + "?per_page=1&page=2")
        missing = http("GET", fakes.zendesk.url + "/api/v2/tickets/999999/comments.json")[0]
        # An update whose answer was lost: found by its comment, not posted again, no second ticket.
        found = adapter.deliver(ctx(handoff_id="hnd_01TESTHANDOFF0000000000002", link=link, outcome_unknown=True))
        lost = adapter.deliver(ctx(handoff_id="hnd_01TESTHANDOFF0000000000003", link=link, outcome_unknown=True))
        stored = fakes.zendesk.comments(int(made.vendor_id))
    assert again.status == "updated" and status == 200 and missing == 404
    assert newest["count"] == 2 and newest["next_page"] is None
    assert "hnd_01TESTHANDOFF0000000000002" in newest["comments"][0]["html_body"]
    assert "hnd_01TESTHANDOFF0000000000000" in newest["comments"][1]["html_body"]
    assert paged["comments"] == [newest["comments"][1]] and paged["next_page"].endswith("page=2")
    assert last["comments"] == [newest["comments"][0]] and last["next_page"] is None
    assert (found.status, found.vendor_id, found.reply.get("found_by")) == ("updated", made.vendor_id, "comment")
    assert (lost.status, lost.vendor_id) == ("updated", made.vendor_id)  # not there: posted once now
    assert len(stored) == 3 and sum("hnd_01TESTHANDOFF0000000000002" in body for body in stored) == 1


def test_the_loopback_salesforce_answers_an_updates_owner_query(monkeypatch):
    # An update reads the case first (`SELECT IsClosed, OwnerId, Owner.Name, Owner.IsActive, CreatedById`): the
    # fake refused the dotted column as MALFORMED_QUERY, and every update failed.
    from adapters.base import Link
    from adapters.salesforce import SalesforceAdapter
    from connector.settings import Settings
    from tests.adapters.test_salesforce import ctx_for
    from tests.fakes.loopback import HANDOFF_ID_FIELD, SALESFORCE_TOKEN

    with Loopback(Behaviour()) as fakes:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fakes.ca_file)  # simple-salesforce speaks https only
        settings = Settings(salesforce_instance_url=fakes.salesforce.url, salesforce_access_token=SALESFORCE_TOKEN)
        adapter = SalesforceAdapter(settings, {"handoff_id_field": HANDOFF_ID_FIELD})
        made = adapter.deliver(ctx_for())
        again = adapter.deliver(ctx_for(handoff_id="hnd_01TESTHANDOFF0000000000002",
                                         link=Link(vendor_id=made.vendor_id)))
        comments = [c["CommentBody"] for c in fakes.salesforce.records["CaseComment"]]
    assert (again.status, again.vendor_id) == ("updated", made.vendor_id)
    assert again.reply["owner"] == {"id": "005000000000001AAA", "name": "Loopback Integration", "kind": "user"}
    assert any("hnd_01TESTHANDOFF0000000000002" in body.split("\n", 1)[0] for body in comments)
    assert fakes.salesforce.duplicates() == []

