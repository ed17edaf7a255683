"""The whole request path on the embedded default: intake, idempotency, updates, failures, reads."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient
from werkzeug.datastructures import Headers

from adapters import registry
from connector import idempotency
from tests.conftest import OTHER_KEY, auth
from tests.factories import full_packet, mappings_quoting_a_wait, mappings_with_a_first_rule, minimal_packet
from tests.support_adapters import SlowAdapter


def post(client, packet, key=None, bot_key=None):
    headers = auth(bot_key) if bot_key else auth()
    if key:
        headers["Idempotency-Key"] = key
    return client.post("/v1/handoffs", data=json.dumps(packet), headers=headers, content_type="application/json")


@pytest.fixture
def test_targets(monkeypatch):
    """Register stand-in targets the way a vendor module is registered."""
    monkeypatch.setitem(registry.TARGETS, "broken", "tests.support_adapters:BrokenAdapter")
    monkeypatch.setitem(registry.TARGETS, "flaky", "tests.support_adapters:FlakyAdapter")
    monkeypatch.setitem(registry.TARGETS, "slow", "tests.support_adapters:SlowAdapter")
    # One that takes every handoff: `preview` beside a vendor is no ticket anyone sees, not counted.
    monkeypatch.setitem(registry.TARGETS, "linked_a", "tests.support_adapters:LinkedAAdapter")


def test_sample_packet_gets_a_complete_answer(any_db_app):
    client = any_db_app.test_client()
    response = post(client, full_packet(), key="k-1")
    assert response.status_code == 201
    body = response.get_json()
    assert body["id"].startswith("hnd_") and body["status"] == "delivered"
    assert body["conversation_id"] == "conv-1029"
    [ticket] = body["tickets"]
    assert ticket == {"target": "preview", "status": "created", "id": f"preview-{body['id']}",
                      "url": f"/v1/handoffs/{body['id']}", "attempts": 1, "error": None}
    assert body["assignment"]["team"] == "technical_support"
    assert body["assignment"]["priority"] == "high"
    assert body["assignment"]["trace"]
    message = body["customer_message"]["text"]
    assert "won't need to repeat" in message and "QuickBooks" in message
    receipt = body["context_receipt"]["preview"]
    assert {"transcript", "customer", "sentiment", "intent", "attempted_solutions", "collected_data",
            "history", "escalation"} <= set(receipt["delivered"])
    assert receipt["dropped"] == []
    assert response.headers["Location"] == body["links"]["self"] and "Retry-After" not in response.headers
    again = post(client, full_packet(), key="k-1")
    assert again.status_code == 200 and again.headers["Location"] == body["links"]["self"]
    assert "Retry-After" not in again.headers  # nothing still going


def test_location_keeps_the_path_prefix_the_service_is_reached_under(make_app):
    # A bot resolving Location as HTTP says (against the request's address) polled the host's root:
    # `/v1/handoffs/…` without the `/connector` the service sits under. `links.self` stays the path
    # under the service's base, as the contract shows it (a bot joins it to its base URL).
    app = make_app()
    app.test_client_class = FlaskClient  # the OpenAPI check knows no server under /connector
    behind = app.test_client()
    response = behind.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                           content_type="application/json", base_url="http://localhost/connector")
    path = f"/v1/handoffs/{response.get_json()['id']}"
    assert response.status_code == 201 and response.get_json()["links"]["self"] == path
    assert response.headers["Location"] == f"/connector{path}"
    public = make_app(public_url="https://support.example.com/connector/").test_client()
    response = post(public, minimal_packet())
    path = f"/v1/handoffs/{response.get_json()['id']}"
    assert response.headers["Location"] == f"https://support.example.com/connector{path}"
    messages = public.post(f"{path}/messages", data=json.dumps({"messages": [
        {"at": "2026-11-20T10:06:00Z", "role": "customer", "text": "still there?"}]}), headers=auth(),
        content_type="application/json")
    assert messages.status_code in (200, 201, 202), messages.get_json()
    assert messages.headers["Location"] == f"https://support.example.com/connector{path}/messages"


def test_a_read_carries_the_warnings_the_answer_did(app):
    # A review: a bot that lost the POST's answer to a timeout and read the handoff instead never
    # learnt that its misspelt key was kept but not acted on, or that its vendor_extra went nowhere.
    client = app.test_client()
    packet = minimal_packet(vendor_extra={"zendsk": {"x": 1}})
    packet["escalation"] = {"reason": "customer_request", "urgncy": "high"}
    answer = post(client, packet).get_json()
    assert len(answer["warnings"]) >= 2
    read = client.get(f"/v1/handoffs/{answer['id']}", headers=auth()).get_json()
    [listed] = client.get(f"/v1/handoffs?conversation_id={packet['conversation']['id']}", headers=auth()).get_json()["items"]
    assert read["warnings"] == listed["warnings"] == answer["warnings"]
    quiet = post(client, minimal_packet(conversation={"id": "conv-quiet"})).get_json()
    assert "warnings" not in client.get(f"/v1/handoffs/{quiet['id']}", headers=auth()).get_json()


def test_same_request_again_returns_the_identical_body_with_200(any_db_app):
    client = any_db_app.test_client()
    first = post(client, full_packet(), key="k-2")
    again = post(client, full_packet(), key="k-2")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_data() == first.get_data()


@pytest.mark.postgres
def test_times_are_answered_in_utc_whatever_the_database_sessions_zone(postgres_url, make_app, monkeypatch):
    # PostgreSQL answers in its session's zone (PGTZ, or the server's `timezone`): the bot read
    # +09:00 where SQLite said +00:00, and the dashboard labelled Tokyo's time UTC (a review).
    monkeypatch.setenv("PGTZ", "Asia/Tokyo")
    client = make_app(database_url=postgres_url).test_client()
    answer = post(client, minimal_packet()).get_json()
    read = client.get(f"/v1/handoffs/{answer['id']}", headers=auth()).get_json()
    created = dt.datetime.fromisoformat(read["created_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=1)


def test_without_a_key_the_packet_hash_identifies_the_handoff(client):
    first = post(client, minimal_packet())
    reordered = json.loads(json.dumps(minimal_packet()), object_pairs_hook=lambda p: dict(reversed(p)))
    again = post(client, reordered)
    assert again.status_code == 200 and again.get_json() == first.get_json()


@pytest.mark.parametrize("key", [None, "k-num"])
def test_a_retry_writing_a_whole_number_another_way_is_the_same_handoff(client, key):
    # A review: `49.0` re-serialised as `49` on its way (a JavaScript or Go relay) was a second
    # handoff without a key and a 409 ("use a new key") with one.
    packet = minimal_packet(collected_data={"order_total": 49.0, "big": 1e20, "half": 0.5},
                            metadata={"note": "v 2.0,", "n": [3.0]})
    sent = json.dumps(packet)
    headers = {**auth(), **({"Idempotency-Key": key} if key else {})}
    first = client.post("/v1/handoffs", data=sent, headers=headers, content_type="application/json")
    resent = sent.replace("49.0", "49").replace("1e+20", "100000000000000000000").replace("[3.0]", "[3]")
    again = client.post("/v1/handoffs", data=resent, headers=headers, content_type="application/json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    # Another value is another body still.
    other = client.post("/v1/handoffs", data=sent.replace("0.5", "0.25"), headers=headers,
                        content_type="application/json")
    assert other.status_code == (201 if key is None else 409)


@pytest.mark.parametrize("canonical", [
    '{"a":49.0,"b":1}', '{"a":49.0}', '[3.0]', '{"a":1e+20,"b":2}', '{"a":"v 2.0,"}',  # whole floats, or words like one
    '{"a":0.05}', '{"a":1.05,"b":[0.5]}', '{"a":"e+"}', '{"a":1e-05}', '{"a":".0,"}', '{}'])
def test_the_quick_test_for_a_whole_float_agrees_with_the_pattern(canonical):
    # The substring tests before the pattern only save its walk: what either finds, both do.
    assert idempotency._whole_float_in(canonical) is bool(idempotency._WHOLE_FLOAT.search(canonical))


@pytest.mark.parametrize("key", ["k-up"])
def test_a_retry_across_the_upgrade_that_wrote_whole_numbers_one_way_is_the_stored_handoff(client, key):
    # A mends review: a release before hashed `0.0` as written; the same bytes retried with their key
    # after the upgrade were a 409. (Without a key such a retry is a new handoff: README, "Upgrading".)
    import hashlib

    from sqlalchemy import update

    from connector.models import Handoff

    body = json.dumps(minimal_packet(sentiment={"label": "neutral", "score": 0.0}))
    headers = {**auth(), **({"Idempotency-Key": key} if key else {})}
    first = client.post("/v1/handoffs", data=body, headers=headers, content_type="application/json")
    assert first.status_code == 201
    with client.application.extensions["connector"].db.session() as session:
        row = session.get(Handoff, first.get_json()["id"])
        then = hashlib.sha256(json.dumps(row.packet, sort_keys=True, separators=(",", ":"),
                                         ensure_ascii=False).encode()).hexdigest()  # the release before's
        session.execute(update(Handoff).where(Handoff.id == row.id).values(
            request_hash=then, idempotency_key=key or f"sha256:{then}"))
    again = client.post("/v1/handoffs", data=body, headers=headers, content_type="application/json")
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]


def test_same_key_other_body_is_409(client):
    assert post(client, minimal_packet(), key="k-3").status_code == 201
    changed = minimal_packet()
    changed["transcript"][0]["text"] = "Something else"
    response = post(client, changed, key="k-3")
    assert response.status_code == 409 and response.mimetype == "application/problem+json"
    assert "Idempotency-Key" in response.get_json()["errors"]


def test_keys_are_scoped_per_bot(client):
    assert post(client, minimal_packet(), key="shared").status_code == 201
    other = minimal_packet(bot={"id": "other-bot"})
    assert post(client, other, key="shared", bot_key=OTHER_KEY).status_code == 201


def test_concurrent_duplicates_make_one_handoff(client, app):
    results = []

    def send():
        results.append(post(app.test_client(), minimal_packet(), key="race"))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in results) == [200] * 5 + [201]
    assert len({r.get_json()["id"] for r in results}) == 1


def test_second_handoff_of_a_conversation_updates_the_ticket(any_db_app):
    client = any_db_app.test_client()
    first = post(client, full_packet()).get_json()
    follow_up = full_packet()
    follow_up["transcript"].append({"at": "2026-11-20T10:30:00Z", "role": "customer", "text": "Still waiting…"})
    second = post(client, follow_up)
    assert second.status_code == 201
    body = second.get_json()
    assert body["id"] != first["id"]
    [ticket] = body["tickets"]
    assert ticket["status"] == "updated" and ticket["id"] == first["tickets"][0]["id"]
    detail = client.get(body["links"]["self"], headers=auth()).get_json()
    assert detail["deliveries"][0]["payload"]["vendors"]["zendesk"]["operation"] == "update"


def test_a_failing_target_does_not_fail_the_others(make_app, test_targets):
    client = make_app(targets=("linked_a", "broken")).test_client()
    response = post(client, minimal_packet())
    assert response.status_code == 201  # every target finished, one of them by failing
    body = response.get_json()
    assert body["status"] == "partial"
    tickets = {t["target"]: t for t in body["tickets"]}
    assert tickets["linked_a"]["status"] == "created"
    assert tickets["broken"]["status"] == "failed"
    assert "Subject is too long" in tickets["broken"]["error"]
    # Nothing reached it, and the receipt says so part by part (an API review: it said nothing).
    assert body["context_receipt"]["broken"] == {"delivered": [], "dropped": [
        {"part": part, "reason": "nothing reached broken: its delivery was given up (failed; its ticket's error "
                                 "says why)"} for part in body["context_receipt"]["linked_a"]["delivered"]]}


def test_when_every_target_gave_up_the_customer_message_promises_no_reply(make_app, test_targets):
    client = make_app(targets=("broken",)).test_client()
    spanish = full_packet()
    spanish["conversation"]["language"] = "es"
    for packet, text in [
        (full_packet(), "I'm sorry — I couldn't pass this on to our technical support team, so nobody has it "
                        "yet. Please reach us another way, or try again later."),
        (spanish, "Lo siento: no he podido pasarle esto a nuestro equipo de soporte técnico, así que nadie lo "
                  "tiene todavía. Contáctanos por otra vía o vuelve a intentarlo más tarde."),
    ]:
        body = post(client, packet).get_json()
        assert body["status"] == "failed"
        assert body["customer_message"] == {"locale": packet["conversation"].get("language", "en"), "text": text}
        again = client.get(body["links"]["self"], headers=auth()).get_json()
        assert again["customer_message"]["text"] == text
        # Nor a wait to quote beside the apology: it would be a wait for nobody.
        assert body["estimated_wait_seconds"] is None and again["estimated_wait_seconds"] is None


def test_the_wait_is_quoted_until_every_target_has_given_up():
    from types import SimpleNamespace

    from connector.answers import render
    from connector.models import utcnow

    def answer(*states):
        deliveries = [SimpleNamespace(target=f"t{n}", state=state, vendor_id=None, url=None, attempts=1,
                                      last_error=None, receipt=None) for n, state in enumerate(states)]
        handoff = SimpleNamespace(id="hnd_1", conversation_id="c", packet={}, completed_at=None, customer_message=None, estimated_wait_seconds=240,
                                  assignment={}, deliveries=deliveries, created_at=utcnow())
        # Messages sent since opened a ticket at t0: someone has it now.
        later = [SimpleNamespace(target="t0", state="created", vendor_id="7", url="u", attempts=1, last_error=None,
                                 receipt=None)]
        return render(handoff)["estimated_wait_seconds"], render(handoff, reached_later=later)["estimated_wait_seconds"]

    assert answer("pending") == (240, 240) and answer("created", "failed") == (240, 240)
    assert answer("failed", "dead") == (None, 240)


def test_a_handoff_stored_before_the_apology_existed_gets_the_built_in_one():
    from connector.answers import shown_message
    from connector.customer_message import FAILED

    stored = {"locale": "en", "text": "I'm connecting you with our support team now. …"}
    assert shown_message(stored, "failed") == {"locale": "en", "text": FAILED}
    assert shown_message(stored, "pending") == stored and shown_message(stored, "partial") == stored


def test_the_sync_budget_counts_from_the_request_so_a_slow_lookup_comes_out_of_it(make_app, monkeypatch):
    """A sticky rule's previous-agent lookup runs before the handoff is stored; the wait for the
    deliveries gets what is left of the budget, not a whole one on top."""
    from types import SimpleNamespace

    import connector.decision as decision
    import connector.intake as intake
    from adapters.preview import PreviewAdapter

    clock = [1000.0]
    monkeypatch.setattr(intake, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(decision, "time", SimpleNamespace(monotonic=lambda: clock[0]))

    deadlines: list[float] = []

    def slow_lookup(self, packet, deadline=None):  # type: ignore[no-untyped-def]
        deadlines.append(deadline)  # when the lookup must be done: half of what is left of the budget
        clock[0] += 2.0
        return None

    monkeypatch.setattr(PreviewAdapter, "previous_agent", slow_lookup)
    waited: list[float] = []
    real_wait = intake.wait
    monkeypatch.setattr(intake, "wait", lambda futures, timeout: waited.append(timeout) or real_wait(futures, 5))
    client = make_app(targets=("preview",), sync_budget_ms=5000).test_client()
    assert post(client, full_packet()).status_code == 201  # enterprise: the shipped rules ask for the agent
    assert waited == [3.0] and deadlines == [1002.5]


def test_a_lookup_that_does_not_end_by_its_share_of_the_budget_is_left_behind(make_app, monkeypatch):
    """A vendor trickling its answer byte by byte keeps each socket read under its timeout; the
    bot must not wait for it: routing goes on without the previous agent."""
    import threading
    import time

    from adapters.preview import PreviewAdapter

    release = threading.Event()

    def stuck(self, packet, deadline=None):  # type: ignore[no-untyped-def]
        release.wait(10)
        return {"id": "A1", "name": "Too late"}

    monkeypatch.setattr(PreviewAdapter, "previous_agent", stuck)
    client = make_app(targets=("preview",), sync_budget_ms=2000).test_client()
    started = time.monotonic()
    try:
        body = post(client, full_packet()).get_json()  # enterprise: the shipped rules ask for the agent
    finally:
        release.set()
    took = time.monotonic() - started
    assert 0.9 < took < 1.9, took  # the lookup's share (1 s of the 2 s budget), not the lookup's 10 s
    assert body["status"] == "delivered" and body["assignment"]["agent"] is None


def test_transient_failure_answers_202_and_retries(make_app, test_targets):
    app = make_app(targets=("flaky",))
    client = app.test_client()
    response = post(client, minimal_packet())
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "pending" and body["tickets"][0]["attempts"] == 1
    # Where and when to read it again: after the sync budget (5 s by default), in whole seconds.
    assert response.headers["Location"] == body["links"]["self"] and response.headers["Retry-After"] == "5"
    assert "503" in body["tickets"][0]["error"]
    # A bot that retried after a timeout gets the same hints with the stored answer.
    again = post(client, minimal_packet())
    assert again.status_code == 200 and again.get_json()["tickets"][0]["status"] == "pending"
    assert (again.headers["Location"], again.headers["Retry-After"]) == (body["links"]["self"], "5")
    services = app.extensions["connector"]
    # Make the retry due now instead of after its backoff, then let the outbox run it.
    from sqlalchemy import update

    from connector.models import Delivery, utcnow

    with services.db.session() as session:
        session.execute(update(Delivery).values(next_attempt_at=utcnow()))
    [delivery_id], token = services.outbox.claim_due()
    attempted = services.outbox.run_delivery(delivery_id, token)
    assert attempted is not None and attempted.state == "created"
    final = client.get(body["links"]["self"], headers=auth()).get_json()
    assert final["status"] == "delivered" and final["tickets"][0]["attempts"] == 2
    # A backoff longer than the budget: the next read that can find it further on is after it.
    slow_client = make_app(targets=("flaky",), retry_base_s=60).test_client()
    slow_retry = post(slow_client, minimal_packet(), key="slow-1")
    assert slow_retry.status_code == 202 and 59 <= int(slow_retry.headers["Retry-After"]) <= 121
    # The bot's retry of it (200) keeps that hint: it was told the sync budget's 5 s (a review).
    again = post(slow_client, minimal_packet(), key="slow-1")
    assert again.status_code == 200 and 58 <= int(again.headers["Retry-After"]) <= 121


def test_where_an_unanswered_request_went_is_kept_for_every_lookup_until_one_resolves_it(make_app, monkeypatch):
    # Slack's channel comes from a mapping an admin may edit before the retry: the lookup must be
    # told where the unanswered post went, also after a later attempt failed before sending.
    from sqlalchemy import select, update

    from connector.models import Delivery, utcnow
    from tests.support_adapters import LostAnswerAdapter

    monkeypatch.setitem(registry.TARGETS, "lost", "tests.support_adapters:LostAnswerAdapter")
    LostAnswerAdapter.looked = []
    app = make_app(targets=("lost",))
    services = app.extensions["connector"]
    assert post(app.test_client(), minimal_packet()).status_code == 202
    with services.db.session() as session:
        assert session.scalars(select(Delivery.sent_to)).one() == {"channel": "C-1", "left_out": []}
    for _ in range(3):
        with services.db.session() as session:
            session.execute(update(Delivery).values(next_attempt_at=utcnow()))
        [delivery_id], token = services.outbox.claim_due()
        attempted = services.outbox.run_delivery(delivery_id, token)
    assert attempted is not None and attempted.state == "created"
    assert LostAnswerAdapter.looked == [{"channel": "C-1", "left_out": []}] * 3  # the third says nothing of where
    with services.db.session() as session:  # resolved: nothing left to look for
        assert session.scalars(select(Delivery.sent_to)).one() is None


def test_slow_target_sets_latency_not_the_sum_and_finishes_in_background(make_app, test_targets):
    SlowAdapter.release.clear()
    # A budget linked_a meets under a loaded CI host (it missed 300 ms once beside a full suite).
    client = make_app(targets=("linked_a", "slow"), sync_budget_ms=1000).test_client()
    response = post(client, minimal_packet())
    assert response.status_code == 202 and response.headers["Retry-After"] == "1"  # never "0": at least a second
    body = response.get_json()
    assert body["status"] == "partial"
    assert {t["target"]: t["status"] for t in body["tickets"]} == {"linked_a": "created", "slow": "pending"}
    SlowAdapter.release.set()
    for _ in range(50):
        final = client.get(body["links"]["self"], headers=auth()).get_json()
        if final["status"] == "delivered":
            break
        threading.Event().wait(0.1)
    assert final["status"] == "delivered"
    again = post(client, minimal_packet())  # the replay tells the current truth
    assert again.status_code == 200 and again.get_json()["status"] == "delivered"


def test_get_shows_what_each_vendor_would_have_received(client):
    body = post(client, full_packet()).get_json()
    detail = client.get(f"/v1/handoffs/{body['id']}", headers=auth()).get_json()
    [delivery] = detail["deliveries"]
    payload = delivery["payload"]
    assert set(payload["vendors"]) == {"zendesk", "salesforce", "slack"}
    assert "Invoices stopped syncing" in payload["brief"]["text"]
    assert payload["vendors"]["zendesk"]["payload"]["ticket"]["external_id"] == body["id"]
    assert detail["status"] == "delivered" and detail["created_at"]


def test_list_by_conversation_newest_first_and_only_own_bot(client):
    ids = [post(client, minimal_packet(), key=f"l-{i}").get_json()["id"] for i in range(3)]
    post(client, minimal_packet(bot={"id": "other-bot"}), bot_key=OTHER_KEY)
    listed = client.get("/v1/handoffs?conversation_id=conv-2001", headers=auth()).get_json()["items"]
    assert [item["id"] for item in listed] == list(reversed(ids))
    response = client.get("/v1/handoffs", headers=auth())
    assert response.status_code == 422 and "conversation_id" in response.get_json()["errors"]


@pytest.mark.parametrize(("query", "errors"), [
    ("conversation_id=conv-2001&limt=1", {"limt": ["unknown parameter"]}),
    ("conversation_id=conv-2001&conversation_id=conv-9", {"conversation_id": ["given more than once"]}),
])
def test_a_list_query_with_a_parameter_it_does_not_read_or_one_given_twice_is_refused(client, query, errors):
    # `?limt=1` was read as the default 20, a second conversation_id dropped, each without a word (a review).
    response = client.get(f"/v1/handoffs?{query}", headers=auth())
    assert response.status_code == 422 and response.get_json()["errors"] == errors


def test_the_messages_list_refuses_a_parameter_as_it_reads_none(client):
    # `?limit=1` answered every batch, read as a limit kept (a review).
    handoff_id = post(client, minimal_packet(), key="m-1").get_json()["id"]
    response = client.get(f"/v1/handoffs/{handoff_id}/messages?limit=1", headers=auth())
    assert response.status_code == 422 and response.get_json()["errors"] == {"limit": ["unknown parameter"]}
    assert response.get_json()["detail"] == "'limit' is no parameter of this route; it reads none."
    assert client.get(f"/v1/handoffs/{handoff_id}/messages", headers=auth()).status_code == 200


@pytest.mark.parametrize("limit", ["\uff11\uff10", "\u0661", "\u00b2", " 2", "+2", "1_0", "0", "101", "9" * 40])
def test_a_list_limit_is_whole_ascii_digits_in_range(client, limit):
    # int() read "１０" (fullwidth), "١" (Arabic-Indic), " 2", "+2" and "1_0" as numbers: a limit no
    # client sends, taken where the OpenAPI document says "integer".
    post(client, minimal_packet(), key="l-1")
    response = client.get("/v1/handoffs", query_string={"conversation_id": "conv-2001", "limit": limit}, headers=auth())
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"] == {"limit": ["1 to 100"]}
    ok = client.get("/v1/handoffs", query_string={"conversation_id": "conv-2001", "limit": "1"}, headers=auth())
    assert len(ok.get_json()["items"]) == 1


def test_another_bots_handoff_is_not_found(client):
    body = post(client, minimal_packet()).get_json()
    response = client.get(f"/v1/handoffs/{body['id']}", headers=auth(OTHER_KEY))
    assert response.status_code == 404


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json()["status"] == "ok"
    post(client, minimal_packet())
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready"
    assert ready["checks"]["database"]["ok"] is True
    # Every enabled target, at 0: nothing pending, retrying or dead (it showed `{}`, where /metrics had zeros).
    assert ready["checks"]["deliveries"] == {"preview": {"pending": 0, "retrying": 0, "dead": 0, "failed": 0}}


def test_readyz_is_503_when_the_database_is_gone(make_app, tmp_path):
    app = make_app(database_url=f"sqlite:///{tmp_path}/missing-dir/sub/x.db")
    services = app.extensions["connector"]
    services.db.dispose()
    import shutil

    shutil.rmtree(tmp_path / "missing-dir")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.get_json()["checks"]["database"]["ok"] is False


def test_readyz_is_503_on_a_schema_a_newer_release_migrated(app):
    """A rolling upgrade: the new release migrated the shared database. The old instances answered
    ready, and went on taking bots they could no longer serve."""
    from sqlalchemy import text

    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    with app.extensions["connector"].db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    response = client.get("/readyz")
    assert response.status_code == 503
    database = response.get_json()["checks"]["database"]
    assert database["ok"] is False and "a newer release made it" in database["schema"]


def test_readyz_does_not_read_the_migration_scripts_again(app, monkeypatch):
    # A load balancer polls it: each probe re-read every migration file (~7 ms of a 7.5 ms answer).
    from alembic.script import ScriptDirectory

    client = app.test_client()
    assert client.get("/readyz").status_code == 200

    def read_again(*args, **kwargs):
        raise AssertionError("the migration scripts were read again")

    monkeypatch.setattr(ScriptDirectory, "from_config", read_again)
    assert client.get("/readyz").status_code == 200


def test_a_delivery_given_up_is_logged_with_why_and_no_next_attempt(make_app, monkeypatch, caplog):
    """It carried a `next_attempt_at` already past, and no reason."""
    import logging

    from adapters import registry
    from tests.support_adapters import FlakyAdapter

    monkeypatch.setitem(registry.TARGETS, "flaky", "tests.support_adapters:FlakyAdapter")
    monkeypatch.setitem(registry.TARGETS, "broken", "tests.support_adapters:BrokenAdapter")
    FlakyAdapter.seen = set()
    app = make_app(targets=("flaky", "broken"), max_attempts=1)
    with caplog.at_level(logging.WARNING, logger="connector.outbox"):
        post(app.test_client(), minimal_packet())
    ended = {r.state: r for r in caplog.records if r.getMessage() == "delivery attempt failed"}
    assert ended["dead"].given_up == "1 attempt(s), as many as CONNECTOR_MAX_ATTEMPTS allows"
    assert ended["failed"].given_up == "refused: retrying the same payload cannot help"
    assert not any(hasattr(r, "next_attempt_at") for r in ended.values())


def test_vendor_extra_for_no_target_of_the_handoff_is_said_to_go_nowhere(make_app, test_targets):
    client = make_app(targets=("preview", "broken")).test_client()
    packet = minimal_packet(vendor_extra={"zendsk": {"priority": "urgent"}, "zendesk": {"ticket": {"tags": ["x"]}},
                                          "broken": {"a": 1}})
    body = post(client, packet).get_json()
    assert body["warnings"] == ["vendor_extra.zendsk: no target of this handoff is called 'zendsk' (its targets: "
                                "preview, broken); nothing of it is sent"]  # preview renders zendesk's: used
    alone = make_app(targets=("broken",)).test_client()
    said = post(alone, minimal_packet(vendor_extra={"zendesk": {"ticket": {}}})).get_json()["warnings"]
    assert said == ["vendor_extra.zendesk: no target of this handoff is called 'zendesk' (its targets: broken); "
                    "nothing of it is sent"]
    assert "warnings" not in post(alone, minimal_packet(vendor_extra={"broken": {}})).get_json()


def test_a_transcript_not_oldest_first_is_said_to_be_shown_as_sent(app):
    # An API review: a transcript sent newest first was taken without a word, and the brief's
    # "Latest from them" then showed its oldest line, stamped with the oldest time.
    client = app.test_client()
    packet = minimal_packet(conversation={"id": "c-reversed"})
    packet["transcript"] = [{"at": f"2026-11-20T09:{minute:02d}:00Z", "role": "customer", "text": f"line {minute}"}
                            for minute in (9, 8, 7)]
    assert post(client, packet).get_json()["warnings"] == [
        "transcript.1.at: 2026-11-20T09:08:00Z is earlier than transcript.0.at (2026-11-20T09:09:00Z); the "
        "transcript should be oldest first and is shown as sent"]
    # Two clocks a few seconds apart (the bot's, the customer's) are not out of order.
    packet = minimal_packet(conversation={"id": "c-skewed"})
    packet["transcript"] = [{"at": "2026-11-20T09:00:05Z", "role": "customer", "text": "hello there"},
                            {"at": "2026-11-20T09:00:01Z", "role": "bot", "text": "Hi! How can I help?"}]
    assert "warnings" not in post(client, packet).get_json()


def test_a_preferred_agent_routing_does_not_assign_is_warned_of_and_a_replay_says_the_same(client):
    # It was ignored without a word: the agent null, nothing in the trace nor the warnings.
    packet = minimal_packet(routing={"preferred_agent": {"email": "sam@acme.example", "id": "381156009921"}})
    first = post(client, packet, key="preferred-1")
    body = first.get_json()
    [said] = [line for line in body["assignment"]["trace"] if line.startswith("routing.preferred_agent ")]
    assert said.startswith("routing.preferred_agent sam@acme.example (id 381156009921) (the bot's hint) not taken: "
                           "routing.yaml has no rule that assigns the agent a bot prefers")
    assert body["assignment"]["agent"] is None and body["warnings"] == [said]
    again = post(client, packet, key="preferred-1")
    assert again.status_code == 200 and again.get_json() == body


def test_a_language_with_no_messages_of_its_own_is_said_to_fall_back(make_app):
    # pt-BR got the English message with `locale: en` and nothing else said: a bot showing only
    # `text` put English before a customer who wrote in Portuguese.
    client = make_app().test_client()
    body = post(client, minimal_packet(conversation={"id": "c-pt", "language": "pt-BR"})).get_json()
    assert body["customer_message"]["locale"] == "en"
    assert body["warnings"] == ["conversation.language: no customer messages for 'pt-BR' (mappings/messages.yaml "
                                "has de, en, es, fr); the message is in 'en'"]
    # A region or case of a locale there: no warning. `_` as `-` (Amazon Lex's `es_US`): refused
    # whole before, while the messages and the routing read it so (a review).
    for language in ("es-MX", "FR", "de-AT", "en", "es_MX", "DE_at"):
        said = post(client, minimal_packet(conversation={"id": f"c-{language}", "language": language}))
        assert said.status_code == 201 and "warnings" not in said.get_json(), language
        assert said.get_json()["customer_message"]["locale"] == language[:2].lower()
    unsaid = post(client, minimal_packet(conversation={"id": "c-none"}))  # no language: the default, unremarked
    assert unsaid.status_code == 201 and "warnings" not in unsaid.get_json()


def test_once_the_quoted_wait_has_run_out_with_nobody_on_it_no_read_quotes_it(make_app, tmp_path):
    # Three hours on, with no agent yet, a read, a retried key and the list still said "about 5
    # minutes" and 300 s; they now say someone will reply as soon as they are free, and no number.
    import datetime as dt

    from connector.models import Handoff

    app = make_app(mappings_dir=mappings_quoting_a_wait(tmp_path))
    services, client = app.extensions["connector"], app.test_client()
    first = post(client, minimal_packet(), key="k-late").get_json()
    assert first["estimated_wait_seconds"] == 300 and "about 5 minutes" in first["customer_message"]["text"]
    read = client.get(first["links"]["self"], headers=auth()).get_json()
    assert read["estimated_wait_seconds"] == 300  # within the wait: as quoted
    with services.db.session() as session:
        for handoff in session.query(Handoff):
            handoff.created_at -= dt.timedelta(seconds=301)
    [listed] = client.get(f"/v1/handoffs?conversation_id={first['conversation_id']}",
                          headers=auth()).get_json()["items"]
    for again in (post(client, minimal_packet(), key="k-late").get_json(),
                  client.get(first["links"]["self"], headers=auth()).get_json(), listed):
        assert again["estimated_wait_seconds"] is None and again["status"] == "delivered"
        assert again["customer_message"]["text"].endswith("Someone will reply here as soon as they're free.")


def test_once_an_agent_has_it_a_retried_request_quotes_no_wait_as_a_read_does(make_app, tmp_path):
    # The replay of a key quoted the wait the GET had cleared, and both kept "about 5 minutes"
    # in the message shown to a customer who already had an agent.
    from adapters.events import AssignmentEvent
    from connector import assignments
    from connector.models import utcnow

    app = make_app(mappings_dir=mappings_quoting_a_wait(tmp_path))
    services, client = app.extensions["connector"], app.test_client()
    first = post(client, minimal_packet(), key="k-taken").get_json()
    assert first["estimated_wait_seconds"] == 300 and "about 5 minutes" in first["customer_message"]["text"]
    event = AssignmentEvent(target="preview", event_id="e1", ticket_id=f"preview-{first['id']}", handoff_id=None,
                            agent_id="a1", agent_name="Dana", at=utcnow())
    assert assignments.record(services, event).outcome == "recorded"
    [listed] = client.get(f"/v1/handoffs?conversation_id={first['conversation_id']}",
                          headers=auth()).get_json()["items"]
    for again in (post(client, minimal_packet(), key="k-taken").get_json(),
                  client.get(first["links"]["self"], headers=auth()).get_json(), listed):
        assert again["estimated_wait_seconds"] is None
        assert "about 5 minutes" not in again["customer_message"]["text"]


def test_a_failed_handoff_an_agent_took_keeps_its_apology(make_app, test_targets, tmp_path):
    # An agent may take a case whose comments then failed until dead: the promise replaced the apology.
    from adapters.events import AssignmentEvent
    from connector import assignments
    from connector.models import Delivery, utcnow

    app = make_app(targets=("broken",), mappings_dir=mappings_quoting_a_wait(tmp_path))
    services, client = app.extensions["connector"], app.test_client()
    first = post(client, minimal_packet(), key="k-failed").get_json()
    assert first["status"] == "failed"
    with services.db.session() as session:  # as a vendor that made the ticket before giving up would have it
        session.query(Delivery).update({"vendor_id": "T-1"})
    event = AssignmentEvent(target="broken", event_id="e1", ticket_id="T-1", handoff_id=None, agent_id="a1",
                            agent_name="Dana", at=utcnow())
    assert assignments.record(services, event).outcome == "recorded"
    for again in (post(client, minimal_packet(), key="k-failed").get_json(),
                  client.get(first["links"]["self"], headers=auth()).get_json()):
        assert again["status"] == "failed" and again["customer_message"] == first["customer_message"]


def test_a_database_failure_at_intake_is_logged_with_its_cause(make_app, monkeypatch, caplog):
    # The log said `"error": "OperationalError"` only: a lock, a refused connection and a missing
    # database read the same at the first place an operator looks.
    import logging

    from sqlalchemy.exc import OperationalError

    from connector import intake

    def locked(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT …", {}, Exception("database is locked"))

    monkeypatch.setattr(intake, "_commit", locked)
    with caplog.at_level(logging.ERROR, logger="connector.intake"):
        assert post(make_app().test_client(), minimal_packet()).status_code == 503
    [record] = [r for r in caplog.records if r.getMessage() == "database unavailable at intake"]
    assert record.error == "OperationalError: database is locked"


@pytest.mark.parametrize(("department", "warned"), [("billing team", True), ("BILLING", False), (None, False)])
def test_a_department_routing_yaml_has_no_team_for_is_a_warning_in_the_answer(client, department, warned):
    # It is taken as the team, as written, but with no queue, calendar or vendor ids: the answer's
    # `warnings` (what the bot asked for that will not happen) said nothing; only the trace did.
    packet = minimal_packet()
    if department:
        packet["routing"] = {"department": department}
    body = post(client, packet).get_json()
    said = [w for w in body.get("warnings", []) if w.startswith("routing.department:")]
    assert bool(said) is warned, body.get("warnings")
    if warned:
        assert body["assignment"]["team"] == "billing team"
        assert "'billing team' is no team in routing.yaml (" in said[0] and "billing" in said[0]


def test_a_key_that_looks_misspelt_is_named_in_the_warnings_with_the_field_it_is_close_to(client):
    # Nested objects keep keys the connector does not know: `escalation.urgncy: urgent` was taken
    # with a 201 and no word, and the handoff routed as normal; `callback.evnts` had every state sent.
    packet = full_packet()
    del packet["escalation"]["urgency"], packet["routing"]["department"]
    packet["escalation"]["urgncy"] = "urgent"
    packet["routing"]["departmnet"] = "billing"
    packet["transcript"][0]["atachments"] = []  # entry 2 sends `attachments`: beside it, this one would be its own
    packet["customer"]["loyalty_tier"] = "gold"  # a bot's own field, close to none: left alone
    packet["conversation"]["channel_id"] = "C042"  # beside `channel`, which it sent too: its own field
    body = post(client, packet).get_json()
    said = [w for w in body.get("warnings", []) if "did you mean" in w]
    assert said == [
        "transcript.*.atachments: not a field the connector reads — did you mean transcript.*.attachments? "
        "It is kept with the packet, but nothing acts on it",
        "escalation.urgncy: not a field the connector reads — did you mean escalation.urgency? "
        "It is kept with the packet, but nothing acts on it",
        "routing.departmnet: not a field the connector reads — did you mean routing.department? "
        "It is kept with the packet, but nothing acts on it",
    ]
    sample = post(client, full_packet()).get_json().get("warnings", [])
    assert not [w for w in sample if "did you mean" in w], sample  # the sample: nothing misspelt
    # Beside the field it misspells, still said (a second review: the typo routing missed).
    both = full_packet(conversation={"id": "c-both", "channel": "web", "channel_id": "C042"})
    both["escalation"]["urgncy"] = "urgent"
    said = [w for w in post(client, both).get_json().get("warnings", []) if "did you mean" in w]
    assert [w.split(":")[0] for w in said] == ["escalation.urgncy"]


def test_a_conversation_id_reused_for_another_customer_is_said_on_the_ticket(make_app):
    # Bot platforms reuse conversation ids (per device, per number, "default"): Carol's handoff was
    # added to Alice's ticket without a word. The note it opens with now says so; the same customer
    # again (written another way) is not remarked on. Only a digest of who the ticket was opened for
    # is kept with the conversation's link, not an address.
    from connector.models import ConversationLink

    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    services, client = app.extensions["connector"], app.test_client()
    seen: list[str] = []

    def update_comment(packet) -> str:  # what the second handoff's note would say, as rendered
        from adapters.base import HandoffContext, Link
        from connector.brief import render_brief

        with services.db.reading() as session:
            [link] = session.query(ConversationLink).all()
            extra = dict(link.extra or {})
        seen.append(str(extra))
        ctx = HandoffContext(handoff_id="hnd_2", target="zendesk", packet=packet, brief=render_brief(packet, "hnd_2"),
                             assignment={}, idempotency_key="k", link=Link(vendor_id="1", extra=extra))
        return ctx.handed_off_again or ""

    import responses

    with responses.RequestsMock() as mock:
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201,
                  json={"ticket": {"id": 1, "status": "new"}})
        alice = minimal_packet(conversation={"id": "default"}, customer={"email": "Alice@Example.com"})
        assert post(client, alice).status_code == 201
    carol = minimal_packet(conversation={"id": "default"}, customer={"email": "carol@example.com"})
    said = update_comment(carol)
    assert "Careful: it names another customer (email carol@example.com) than the one this ticket was opened for" in said
    assert "Careful" not in update_comment(minimal_packet(customer={"email": "alice@example.COM "}))
    assert "example.com" not in seen[0].lower()  # a digest, not the address
    # A second review: the same person with a phone added is not another customer; one with another
    # phone written another way neither; a phone with no digit says nothing, the id does.
    assert "Careful" not in update_comment(minimal_packet(customer={"email": "alice@example.com",
                                                                    "phone": "+1 415 555 0134"}))


def test_a_second_handoff_says_what_is_new_since_the_ticket_was_opened(make_app):
    # A support lead's review: the second note repeated the whole brief and said nothing of what
    # had changed. What the first handoff's conversation ended on is kept with the link.
    import responses

    from adapters.base import HandoffContext, Link
    from connector.brief import render_brief
    from connector.models import ConversationLink

    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    services, client = app.extensions["connector"], app.test_client()
    first = minimal_packet(conversation={"id": "conv-again"})
    with responses.RequestsMock() as mock:
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201, json={"ticket": {"id": 1}})
        answer = post(client, first).get_json()
    with services.db.reading() as session:
        [link] = session.query(ConversationLink).all()
        extra = dict(link.extra or {})
    last = first["transcript"][-1]["at"]
    again = minimal_packet(conversation={"id": "conv-again"})
    again["transcript"] += [{"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "still broken"},
                            {"at": "2026-11-20T10:06:30+01:00", "role": "customer", "text": "anyone?"}]

    def note(packet, priority):  # type: ignore[no-untyped-def]
        return HandoffContext(handoff_id="hnd_2", target="zendesk", packet=packet, brief=render_brief(packet, "h"),
                              assignment={"priority": priority}, idempotency_key="k",
                              link=Link(vendor_id="1", extra=extra)).handed_off_again

    was = answer["assignment"]["priority"]
    assert last < "2026-11-20T10:05:00Z" and was != "urgent"
    said = note(again, "urgent")
    assert (f"New since this ticket was opened: 1 message from the customer (from 2026-11-20 10:05 UTC, marked [new] "
            f"in the transcript); urgency {was} → urgent.") in said
    # A review: raised short of urgent, the brief said "[HIGH]" while the ticket's priority stayed.
    other = "high" if was != "high" else "low"
    assert f"urgency {was} → {other} (the ticket's priority is left as it is: only urgent raises it)." \
        in note(again, other)
    assert "New since" not in note(first, was)  # nothing new: nothing said
    # A review: the bot's own "let me connect you" read as the customer having written again.
    bots = minimal_packet(conversation={"id": "conv-again"})
    bots["transcript"].append({"at": "2026-11-20T10:07:00Z", "role": "bot", "text": "Let me connect you."})
    assert "New since" not in note(bots, was)


def test_a_repeat_routed_to_another_team_says_the_ticket_was_not_moved(make_app):
    # A review of the brief: the repeat's note said "Routed to: escalations" while its ticket stayed
    # with technical support — the agent believed escalations had it, and nobody there saw it.
    import responses

    from adapters.base import HandoffContext, Link
    from connector.brief import render_brief
    from connector.models import ConversationLink

    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    services, client = app.extensions["connector"], app.test_client()
    with responses.RequestsMock() as mock:
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201, json={"ticket": {"id": 1}})
        team = post(client, minimal_packet(conversation={"id": "conv-moved"})).get_json()["assignment"]["team"]
    with services.db.reading() as session:
        extra = dict(session.query(ConversationLink).one().extra)
    assert extra["opened_with"]["team"] == team

    def note(routed_to: str) -> str:
        packet = minimal_packet(conversation={"id": "conv-moved"})
        return HandoffContext(handoff_id="hnd_2", target="zendesk", packet=packet, brief=render_brief(packet, "h"),
                              assignment={"team": routed_to}, idempotency_key="k",
                              link=Link(vendor_id="1", extra=extra)).handed_off_again or ""

    assert (f"Routing chose escalations for this handoff, but this ticket was opened for {team} and was not "
            "moved.") in note("escalations")
    assert "not moved" not in note(team)


def test_a_repeat_not_moved_says_so_where_its_brief_says_routed_to(make_app):
    # A review of the brief: the note under "Handed off again" said the ticket was not moved, and the
    # brief below it still said "Routed to: escalations (rule fraud-or-legal…)" as if that team had it.
    import responses

    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    client = app.test_client()
    first = minimal_packet(conversation={"id": "conv-kept"})
    again = copy.deepcopy(first)
    again["transcript"].append({"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "This is fraud."})
    with responses.RequestsMock() as mock:
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201, json={"ticket": {"id": 1}})
        mock.put("https://acme.zendesk.com/api/v2/tickets/1/tags", json={"tags": ["handoff"]})  # Add Tags, first
        put = mock.put("https://acme.zendesk.com/api/v2/tickets/1.json", json={"ticket": {"id": 1, "status": "open"}})
        assert post(client, first).get_json()["assignment"]["team"] == "support"
        answer = post(client, again).get_json()
        body = json.loads(put.calls[-1].request.body)["ticket"]["comment"]["html_body"]
    # The bot and the customer hear of the team that has the ticket (`test_kept_tickets.py`).
    assert (answer["assignment"]["team"], answer["assignment"]["queue"]) == ("support", "Support")
    assert "our support team" in answer["customer_message"]["text"]
    assert "this ticket was opened for support and was not moved" in body
    assert "Routed to: escalations / Escalations (rule fraud-or-legal: the customer wrote “fraud”) — not moved: this " \
        "ticket stays with support" in body


def test_a_repeat_names_the_collected_values_that_are_new_or_changed(make_app):
    # A review of the brief: a second handoff with a corrected order number said only how many
    # messages came since; the agent worked from the number in the first brief.
    import responses

    from connector.models import ConversationLink

    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    services, client = app.extensions["connector"], app.test_client()
    first = minimal_packet(conversation={"id": "conv-collected"}, collected_data={
        "order_number": "A-100", "email_verified": True, "refund_reason": None})
    again = copy.deepcopy(first)
    again["collected_data"].update(order_number="A-101", refund_reason="damaged", tracking=["T1", "T2"])
    with responses.RequestsMock() as mock:
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201, json={"ticket": {"id": 1}})
        mock.put("https://acme.zendesk.com/api/v2/tickets/1/tags", json={"tags": ["handoff"]})  # Add Tags, first
        put = mock.put("https://acme.zendesk.com/api/v2/tickets/1.json", json={"ticket": {"id": 1, "status": "open"}})
        assert post(client, first).status_code == 201
        with services.db.reading() as session:
            kept = dict(session.query(ConversationLink).one().extra)["opened_with"]["collected"]
        # Digests, not the values: no order number is kept beside the conversation's ticket.
        assert set(kept) == {"order_number", "email_verified"} and "A-100" not in json.dumps(kept)
        assert post(client, again).status_code == 201
        note = json.loads(put.calls[-1].request.body)["ticket"]["comment"]["html_body"]
        assert "New since this ticket was opened: collected: order_number (changed), refund_reason (new), " \
            "tracking (new)." in note
        # The update's values are what the next repeat compares with: the same again is no news.
        assert post(client, again, key="again-2").status_code == 201
        assert "New since" not in json.loads(put.calls[-1].request.body)["ticket"]["comment"]["html_body"]


@contextlib.contextmanager
def ticket_one(make_app) -> Iterator[tuple[FlaskClient, Callable[[], str]]]:
    """A client of an app delivering to Zendesk, where every conversation's ticket is 1, and what
    gives the last note put on it."""
    import responses

    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    with responses.RequestsMock() as mock:
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201, json={"ticket": {"id": 1}})
        mock.put("https://acme.zendesk.com/api/v2/tickets/1/tags", json={"tags": ["handoff"]})  # Add Tags, first
        put = mock.put("https://acme.zendesk.com/api/v2/tickets/1.json", json={"ticket": {"id": 1, "status": "open"}})
        yield app.test_client(), lambda: json.loads(put.calls[-1].request.body)["ticket"]["comment"]["html_body"]


def test_a_repeat_names_a_changed_reason_new_trigger_words_and_what_the_bot_tried_since(make_app):
    # A brief review: a second handoff "because the customer is upset", with two new tries of the bot's,
    # said only how many messages came since; the brief below repeated every reason and try unmarked.
    tried = {"title": "Reset password", "outcome": "not_helpful"}
    first = minimal_packet(conversation={"id": "conv-why"}, attempted_solutions=[tried],
                           escalation={"reason": "ai_unable", "keywords": ["Refund"]})
    again = copy.deepcopy(first)
    again["escalation"] = {"reason": "negative_sentiment", "keywords": ["refund ", "chargeback"]}
    again["attempted_solutions"] = [{**tried, "outcome": "declined"},  # told again with another outcome: not new
                                    {"title": "Resent the invoice", "outcome": "not_helpful"},
                                    {"detail": "Offered a callback\ntomorrow", "outcome": "declined"}]
    with ticket_one(make_app) as (client, last_note):
        assert post(client, first).status_code == 201
        assert post(client, again).status_code == 201
        note = last_note()
        # (Upset: routing's rules raise the urgency and choose escalations, said before and after.)
        assert ("New since this ticket was opened: urgency normal → high (the ticket&#x27;s priority is left as it "
                "is: only urgent raises it); why: The bot could not handle the request → The customer is "
                "upset; new trigger words: chargeback; the bot tried 2 more things: Resent the invoice; Offered a "
                "callback tomorrow.") in note
        # The update's reason, words and tries are what the next repeat compares with: the same again is no news.
        assert post(client, again, key="again-2").status_code == 201
        assert "New since" not in last_note()


def test_a_batch_of_an_older_handoff_does_not_make_its_reasons_news_again(make_app):
    # A review of the mend: a batch of messages for the first handoff, delivered after the second, kept
    # the first's reason, words and tries as what the ticket last heard; the third handoff's note then
    # said again what the second had posted.
    first = minimal_packet(conversation={"id": "conv-batch"}, attempted_solutions=[{"title": "Reset password"}],
                           escalation={"reason": "ai_unable", "keywords": ["refund"]})
    second = copy.deepcopy(first)
    second["escalation"] = {"reason": "repeated_failure", "keywords": ["refund", "chargeback"]}
    second["attempted_solutions"].append({"title": "Resent the invoice"})
    second["transcript"].append({"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "Still broken."})
    third = copy.deepcopy(second)
    third["transcript"].append({"at": "2026-11-20T10:20:00Z", "role": "customer", "text": "Hello?"})
    with ticket_one(make_app) as (client, last_note):
        first_id = post(client, first).get_json()["id"]
        assert post(client, second).status_code == 201
        assert "why: The bot could not handle" in last_note()
        said = {"messages": [{"at": "2026-11-20T10:10:00Z", "role": "customer", "text": "Any news?"}]}
        assert client.post(f"/v1/handoffs/{first_id}/messages", data=json.dumps(said), headers=auth(),
                           content_type="application/json").status_code == 201
        assert post(client, third).status_code == 201
        note = last_note()
    assert "New since our last update here" in note and "1 message from the customer (from 2026-11-20 10:20" in note
    assert "why:" not in note and "trigger words" not in note and "the bot tried" not in note


def test_escalation_news_says_nothing_of_what_was_not_kept():
    from adapters.base import escalation_marks, escalation_news

    packet = {"escalation": {"reason": "keyword", "keywords": ["a", "b"]},
              "attempted_solutions": [{"title": f"try {n}"} for n in range(7)]}
    assert escalation_news({}, packet) == []  # a link kept before these were
    assert escalation_news(escalation_marks(packet), packet) == []
    news = escalation_news({"reason": "other", "keywords": [], "attempts": []}, packet)
    assert news == ["why: Other → A trigger word was said", "new trigger words: a, b",
                    "the bot tried 7 more things: try 0; try 1; try 2; try 3; try 4 and 2 more"]
    # Each once, on one line (a review of the mend): "Chargeback" and "chargeback" are one word, and a
    # title told twice with another outcome one try.
    twice = {"escalation": {"reason": "keyword", "keywords": ["Chargeback", "chargeback "]},
             "attempted_solutions": [{"title": "Resent\ninvoice", "outcome": "declined"},
                                     {"title": "Resent\ninvoice", "outcome": "not_helpful"}]}
    assert escalation_news({"keywords": [], "attempts": []}, twice) == [
        "new trigger words: Chargeback", "the bot tried 1 more thing: Resent invoice"]
    many = {"escalation": {"reason": "other"}, "attempted_solutions": [{"title": "t"}] * 101}
    assert "attempts" not in escalation_marks(many)  # not kept: the next note says nothing of them


def test_collected_news_names_a_few_keys_and_says_nothing_without_what_was_kept():
    from adapters.base import collected_marks, collected_news

    marks = collected_marks({"collected_data": {f"k{n}": n for n in range(8)}})
    assert collected_news({}, marks) == "collected: k0 (new), k1 (new), k2 (new), k3 (new), k4 (new) and 3 more"
    assert collected_news(None, marks) is None  # a link kept before digests were: nothing is known
    assert collected_news(marks, marks) is None
    assert collected_news(marks, collected_marks({"collected_data": {}})) is None  # a value no longer sent
    assert collected_marks({"collected_data": {f"k{n}": n for n in range(101)}}) is None


def test_a_third_handoff_says_what_is_new_since_the_second_not_since_the_ticket_was_opened(make_app):
    # A review: "new since this ticket was opened" compared with the first handoff only, so the
    # third handoff's note listed again the messages the second had already posted there.
    import responses

    from connector.models import ConversationLink

    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    services, client = app.extensions["connector"], app.test_client()
    first = minimal_packet(conversation={"id": "conv-thrice"})
    second = copy.deepcopy(first)
    second["transcript"] += [{"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "still broken"}]
    third = copy.deepcopy(second)
    third["transcript"] += [{"at": "2026-11-20T10:20:00Z", "role": "customer", "text": "hello?"}]

    def told() -> dict:
        with services.db.reading() as session:
            [link] = session.query(ConversationLink).all()
            return dict((link.extra or {}).get("told") or {})

    with responses.RequestsMock() as mock:
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201, json={"ticket": {"id": 1}})
        mock.put("https://acme.zendesk.com/api/v2/tickets/1/tags", json={"tags": ["handoff"]})  # Add Tags, first
        put = mock.put("https://acme.zendesk.com/api/v2/tickets/1.json", json={"ticket": {"id": 1, "status": "open"}})
        assert post(client, first).status_code == 201
        assert told() == {}  # opened: `opened_with` says where it stood
        assert post(client, second).status_code == 201
        second_note = json.loads(put.calls[-1].request.body)["ticket"]["comment"]["html_body"]
        assert "New since this ticket was opened: 1 message from the customer (from 2026-11-20 10:05 UTC, marked " \
            "[new] in the transcript)" in second_note
        # The transcript it repeats marks what came since (the first handoff's messages are not).
        assert second_note.count("[new]") == 2 and "<strong>[new]</strong> <strong>Customer</strong>: still broken" \
            in second_note
        after_second = told()
        assert after_second["last_message_at"] == "2026-11-20T10:05:00+00:00"
        assert post(client, third).status_code == 201
        note = json.loads(put.calls[-1].request.body)["ticket"]["comment"]
        text = note.get("html_body") or note.get("body")
        stamp = dt.datetime.fromisoformat(after_second["at"])
        assert f"New since our last update here ({stamp:%Y-%m-%d %H:%M} UTC): 1 message from the customer " \
               "(from 2026-11-20 10:20 UTC, marked [new] in the transcript)" in text
        # Marked since the second's update, not since the opening: "still broken" was posted already.
        assert "<strong>[new]</strong> <strong>Customer</strong>: hello?" in text
        assert "[new]</strong> <strong>Customer</strong>: still broken" not in text
        # A handoff whose conversation ends earlier (a bot's stale copy) does not make old messages news again.
        assert post(client, second, key="a-stale-copy").status_code == 201
        assert len(put.calls) == 3 and told()["last_message_at"] == "2026-11-20T10:20:00+00:00"


def test_what_is_new_is_kept_for_the_links_own_ticket_and_said_without_a_time_when_none_is_known(make_app):
    # A review: nothing failed when `told` was written whatever ticket the link names now (an
    # update's answer coming after a successor ticket replaced it), or read without its time.
    from adapters.base import HandoffContext, Link, Outcome
    from connector.brief import render_brief
    from connector.models import ConversationLink, utcnow
    from connector.outbox import _told

    services = make_app().extensions["connector"]
    key = ConversationLink.key("support-bot", "conv-told", "zendesk")
    with services.db.session() as session:
        session.add(ConversationLink(**key, vendor_id="2", extra={"opened_with": {"last_message_at": "2026-11-20T10:00:00+00:00"}}))

    def update_of(ticket: str) -> None:
        outcome = Outcome(status="updated", vendor_id=ticket, url=None, payload=None, receipt={},
                          opened_with={"last_message_at": "2026-11-20T10:05:00+00:00"})
        with services.db.statements() as connection:
            _told(connection, key, outcome, utcnow(), batch=False)

    def extra() -> dict:
        with services.db.reading() as session:
            return dict(session.query(ConversationLink).one().extra)

    update_of("1")  # the ticket the link named before a successor replaced it
    assert "told" not in extra()
    update_of("2")
    assert extra()["told"]["last_message_at"] == "2026-11-20T10:05:00+00:00"
    packet = minimal_packet()
    packet["transcript"].append({"at": "2026-11-20T10:09:00Z", "role": "customer", "text": "and?"})
    note = HandoffContext(handoff_id="hnd_3", target="zendesk", packet=packet, brief=render_brief(packet, "h"),
                          assignment={}, idempotency_key="k",
                          link=Link(vendor_id="2", extra={"told": {"last_message_at": "2026-11-20T10:05:00Z"}}))
    assert "New since our last update here: 1 message from the customer (from 2026-11-20 10:09 UTC, marked [new] in " \
        "the transcript)." \
        in (note.handed_off_again or "")


def test_a_handoff_updating_a_ticket_an_agent_has_is_theirs(make_app):
    # A review of the flows: no Zendesk event comes for an assignee who does not change, so a second
    # handoff onto the ticket Sam had was "waiting" for good — no `assigned` for the bot, ever.
    import responses

    from connector.models import Assignment

    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    services, client = app.extensions["connector"], app.test_client()
    sam, solved_by = {"assignee_id": 381156009921}, {"assignee_id": 381156009922}  # the second's solver
    with responses.RequestsMock() as mock:
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201, json={"ticket": {"id": 1}})
        mock.post("https://acme.zendesk.com/api/v2/tickets.json", status=201, json={"ticket": {"id": 2}})
        for ticket in (1, 2):  # Add Tags, before each repeat's note
            mock.put(f"https://acme.zendesk.com/api/v2/tickets/{ticket}/tags", json={"tags": ["handoff"]})
        mock.put("https://acme.zendesk.com/api/v2/tickets/1.json", json={"ticket": {"id": 1, "status": "open", **sam}})
        mock.put("https://acme.zendesk.com/api/v2/tickets/2.json",
                 json={"ticket": {"id": 2, "status": "solved", **solved_by}})
        mock.put("https://acme.zendesk.com/api/v2/tickets/2.json", status=422,
                 json={"error": "RecordInvalid", "description": "Record validation errors"})  # not reopened
        first = post(client, minimal_packet(conversation={"id": "conv-sam"})).get_json()
        assert post(client, minimal_packet(conversation={"id": "conv-solved"})).status_code == 201
        with services.db.session() as session:  # Sam took the first handoff's ticket (as Zendesk's event records it)
            session.add(Assignment(handoff_id=first["id"], target="zendesk", vendor_ticket_id="1", team="billing",
                                   agent_id="381156009921", agent_name="Sam Agent", event_id="zd-1", routed=False,
                                   handed_off_at=dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
                                   assigned_at=dt.datetime(2026, 11, 20, 0, 2, tzinfo=dt.UTC), wait_seconds=120))
        again = minimal_packet(conversation={"id": "conv-sam"})
        again["transcript"].append({"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "still broken"})
        second = post(client, again).get_json()
        back = minimal_packet(conversation={"id": "conv-solved"})
        back["transcript"].append({"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "it broke again"})
        nobody = post(client, back).get_json()
        services.executor.shutdown(wait=True)  # the assignment is recorded off the bot's path
    assert (second["tickets"][0]["status"], nobody["tickets"][0]["status"]) == ("updated", "updated")
    held = client.get(f"/v1/handoffs/{second['id']}", headers=auth()).get_json()["assigned"]
    assert {k: held[k] for k in ("target", "ticket_id", "agent_id", "routed")} == {
        "target": "zendesk", "ticket_id": "1", "agent_id": "381156009921", "routed": True}
    # A late answer for an older handoff on the ticket (its messages, a replay) marks no newer one.
    from connector import assignments

    late = assignments.held(services, first["id"], "zendesk", "1", "381156009929")
    assert (late.outcome, late.detail) == ("ignored", "a newer handoff is on the ticket")
    # Left solved (its reopen refused), nobody waits on the ticket: not anyone's.
    assert client.get(f"/v1/handoffs/{nobody['id']}", headers=auth()).get_json()["assigned"] is None


def test_only_an_identifier_both_handoffs_name_and_that_differs_makes_another_customer():
    from adapters.base import HandoffContext, Link, customer_marks
    from connector.brief import render_brief

    def said(first: dict, then: dict) -> str | None:
        packet = minimal_packet(customer=then)
        return HandoffContext(handoff_id="hnd_2", target="zendesk", packet=packet, brief=render_brief(packet, "h"),
                              assignment={}, idempotency_key="k",
                              link=Link(vendor_id="1", extra={"customer": customer_marks({"customer": first})}),
                              ).another_customer

    assert said({"id": "u1", "phone": "+1 415 555 0134"}, {"id": "u1", "phone": "(415) 555-0134",
                                                            "email": "al@example.com"}) is None
    assert said({"id": "u1"}, {"id": "u1", "email": "al@example.com"}) is None
    assert said({"id": "alice", "phone": "n/a"}, {"id": "carol", "phone": "n/a"}) == (
        "Careful: it names another customer (id carol) than the one this ticket was opened for — the bot may "
        "have reused the conversation id.")
    assert said({"email": "a@example.com"}, {"email": "b@example.com", "id": "u1"}) is not None
    # A review: the same e-mail with a new phone was "another customer", named by that very e-mail.
    assert said({"email": "d@example.com", "phone": "+1 415 555 0134"},
                {"email": "d@example.com", "phone": "+1 212 555 0199"}) is None
    assert HandoffContext(handoff_id="h", target="zendesk", packet=minimal_packet(), brief=render_brief(
        minimal_packet(), "h"), assignment={}, idempotency_key="k",
        link=Link(vendor_id="1", extra={"customer": "0123abcd"})).another_customer is None  # a mark of old


@pytest.mark.parametrize("routed", [False, True])
def test_once_an_agent_has_it_the_message_no_longer_says_the_team_is_away(make_app, tmp_path, routed):
    # Out of hours the customer is told when the team opens; an agent on call took it, and every
    # read still said "the team is away right now … will reply at 09:00" (the next day too).
    import shutil
    from pathlib import Path

    from connector.business_hours import DAYS
    from connector.models import Assignment, utcnow

    root = tmp_path / "m"
    shutil.copytree(Path(__file__).resolve().parents[1] / "mappings", root)
    in_two_days = DAYS[(dt.datetime.now(dt.UTC).weekday() + 2) % 7]  # closed today, whatever the hour
    routing = root / "routing.yaml"
    routing.write_text(routing.read_text().replace('mon-fri: "09:00-18:00"', f'{in_two_days}: "09:00-18:00"', 1))
    app = make_app(mappings_dir=str(root))
    client = app.test_client()
    body = post(client, minimal_packet(routing={"department": "billing"})).get_json()
    assert "away right now" in body["customer_message"]["text"]
    with app.extensions["connector"].db.session() as session:
        session.add(Assignment(handoff_id=body["id"], target="preview", vendor_ticket_id="x", team="billing",
                               agent_id="U1", agent_name="dana", event_id="e1", handed_off_at=utcnow(),
                               assigned_at=utcnow(), wait_seconds=60, routed=routed))
    reads = [client.get(f"/v1/handoffs/{body['id']}", headers=auth()).get_json(),
             client.get(f"/v1/handoffs?conversation_id={body['conversation_id']}", headers=auth()).get_json()["items"][0],
             post(client, minimal_packet(routing={"department": "billing"})).get_json()]  # its replay
    for read in reads:
        if routed:  # routing's own agent, on the ticket from its making: nothing changed for the customer
            assert read["customer_message"] == body["customer_message"]
        else:
            assert read["customer_message"]["text"].endswith("Someone will reply here as soon as they're free.")
            assert read["customer_message"]["text"].startswith(body["customer_message"]["text"].split(" The team")[0])


def test_what_the_settings_cannot_serve_is_named_at_once_and_a_retry_stored_before_still_gets_its_answer(
        make_app):
    # A bot developer's review: an unusable callback URL and a target not enabled came back one per
    # request; and a retry of a handoff stored before its target was disabled got a 422, not its answer.
    app = make_app()
    packet = minimal_packet(targets=["preview", "zendesk"], callback={"url": "http://bot.example.com/cb"})
    refused = post(app.test_client(), packet)
    assert refused.status_code == 422
    body = refused.get_json()
    assert set(body["errors"]) == {"callback.url", "targets.1"} and "2 field(s)" in body["detail"]
    database = app.extensions["connector"].settings.database_url
    stored = post(app.test_client(), minimal_packet(targets=["preview"]), key="before-the-change")
    assert stored.status_code == 201
    later = make_app(database_url=database, targets=("zendesk",), zendesk_subdomain="acme",
                     zendesk_email="bot@acme.example", zendesk_api_token="t")  # preview no longer enabled
    retried = post(later.test_client(), minimal_packet(targets=["preview"]), key="before-the-change")
    assert (retried.status_code, retried.get_json()["id"]) == (200, stored.get_json()["id"])
    assert post(later.test_client(), minimal_packet(targets=["preview"]), key="new").status_code == 422


def test_preview_alone_beside_a_vendor_is_refused_for_it_would_reach_nobody(make_app):
    # A contract review: with zendesk and preview enabled, `"targets": ["preview"]` was answered 201
    # `delivered`, the customer told "Someone will reply here", and nothing reached an agent.
    app = make_app(targets=("zendesk", "preview"), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    refused = post(app.test_client(), minimal_packet(targets=["preview"]))
    assert refused.status_code == 422
    [said] = refused.get_json()["errors"]["targets"]
    # Said the same by the dry run, which agrees with intake: no "for a dry run, POST /v1/preview" there.
    assert "reaches no agent beside zendesk: name a vendor" in said and "/v1/preview" not in said
    # Alone, preview stands in for the vendors (the quickstart), and beside one it may go along.
    assert post(make_app().test_client(), minimal_packet(targets=["preview"])).status_code == 201


@pytest.mark.parametrize("key", ["a b", "a1,a1"])
def test_an_unusable_idempotency_key_names_its_limit(app, key):
    response = post(app.test_client(), minimal_packet(), key=key)
    assert response.status_code == 400
    assert response.get_json()["errors"] == {
        "Idempotency-Key": ["must be 1 to 200 visible ASCII characters, no comma, sent once"]}


def test_an_idempotency_key_sent_twice_is_refused_not_taken_for_another_key(app):
    # A review: gunicorn joins a header sent twice with "," (Werkzeug with ", "): stored under `a1,a1`,
    # the retry that sent `a1` once made a second handoff.
    headers = Headers(auth())
    headers.add("Idempotency-Key", "a1")
    headers.add("Idempotency-Key", "a1")
    response = app.test_client().post("/v1/handoffs", json=minimal_packet(), headers=headers)
    assert response.status_code == 400 and "sent twice" in response.get_json()["detail"]


def test_the_preview_of_a_repeat_shows_the_note_it_would_send(app):
    # A review of the brief: the preview's stand-in link dropped what the conversation's link keeps,
    # so a repeat's preview left out "New since…" that the vendors really receive.
    client = app.test_client()
    assert post(client, minimal_packet(conversation={"id": "conv-preview"})).status_code == 201
    again = minimal_packet(conversation={"id": "conv-preview"})
    again["transcript"].append({"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "still broken"})
    body = post(client, again).get_json()
    [delivery] = client.get(f"/v1/handoffs/{body['id']}", headers=auth()).get_json()["deliveries"]
    zendesk_note = json.dumps(delivery["payload"]["vendors"]["zendesk"], ensure_ascii=False)
    assert "New since this ticket was opened: 1 message from the customer (from 2026-11-20 10:05 UTC, marked [new] " \
        "in the transcript)" in zendesk_note


def test_a_refusal_that_must_look_for_a_stored_answer_is_a_503_while_the_database_is_away(app, monkeypatch):
    # A review: the look for a repeat before a settings refusal had no outage handling (a 500).
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from connector import intake

    def away(*_args, **_kwargs):
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("unable to open database file"))

    monkeypatch.setattr(intake, "find_repeat", away)
    response = post(app.test_client(), minimal_packet(targets=["zendesk"]))
    assert (response.status_code, response.headers["Retry-After"]) == (503, "5")


def test_reads_and_messages_are_a_503_to_retry_while_the_database_is_away(app, monkeypatch):
    # A review: only intake said 503; a read, and a batch of messages looking its handoff up, were a
    # 500 "internal error" with no Retry-After, which a bot takes for a fault rather than a wait.
    import sqlite3

    from sqlalchemy.exc import OperationalError

    client = app.test_client()
    handoff = post(client, minimal_packet()).get_json()
    services = app.extensions["connector"]

    def away(*_args, **_kwargs):
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("unable to open database file"))

    monkeypatch.setattr(services.db, "reading", away)
    monkeypatch.setattr(services.db, "session", away)
    read = client.get(f"/v1/handoffs/{handoff['id']}", headers=auth())
    listed = client.get("/v1/handoffs?conversation_id=conv-1", headers=auth())
    messages = client.post(f"/v1/handoffs/{handoff['id']}/messages", headers=auth(), content_type="application/json",
                           data=json.dumps({"messages": [{"at": "2026-11-20T10:06:00Z", "role": "customer",
                                                          "text": "still there?"}]}))
    for response in (read, listed, messages):
        assert (response.status_code, response.headers.get("Retry-After")) == (503, "5"), response.get_json()
        assert response.get_json()["type"].endswith("/problems/service-unavailable")

    # A query the database refused is a bug of ours, not an outage to wait out: a 500, its traceback
    # logged (a review: "no such table" was told to retry every 5 s, for ever, and nothing traced).
    def refused(*_args, **_kwargs):
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: deliveries"))

    monkeypatch.setattr(services.db, "reading", refused)
    monkeypatch.setattr(services.db, "session", refused)
    monkeypatch.setattr(services, "store_handoff", refused)
    read = client.get(f"/v1/handoffs/{handoff['id']}", headers=auth())
    new = post(client, minimal_packet(conversation={"id": "conv-refused"}))
    assert (read.status_code, new.status_code) == (500, 500) and "Retry-After" not in read.headers


def test_a_slack_channel_given_by_name_in_vendor_extra_is_refused_with_a_422_naming_it(make_app):
    # A review: a name posted, but the lookup after a timeout reads the channel by its id only — the
    # delivery then failed for good beside a live alert, after the bot had been told 202.
    app = make_app(targets=("preview", "slack"), slack_bot_token="xoxb-1", slack_channel="C0HANDOFF")
    client = app.test_client()
    response = post(client, minimal_packet(vendor_extra={"slack": {"channel": "#vip-support"}}))
    assert response.status_code == 422
    [reason] = response.get_json()["errors"]["vendor_extra.slack.channel"]
    assert reason.startswith("'#vip-support' is not a channel id: give its id")
    # To preview alone too, which renders Slack's payload: a bot trying its vendor_extra there is told
    # what Slack would refuse (a review: its receipt said nothing was lost).
    alone = make_app(targets=("preview",)).test_client()
    assert post(alone, minimal_packet(vendor_extra={"slack": {"channel": "#vip"}})).status_code == 422
    assert post(alone, minimal_packet(vendor_extra={"slack": {"channel": "C0VIP"}})).status_code == 201


@pytest.mark.parametrize("tags", [[{"name": "vip"}], [["x"]], [True], {"vip": 1}, 7])
def test_zendesk_tags_in_vendor_extra_that_are_not_text_are_refused_with_a_422_naming_them(make_app, tags):
    # A second review: on a repeat they were added by Add Tags and crashed every attempt (unhashable).
    client = make_app(targets=("preview",)).test_client()  # it renders Zendesk's payload: judged so
    response = post(client, minimal_packet(vendor_extra={"zendesk": {"tags": tags}}))
    assert response.status_code == 422
    [reason] = response.get_json()["errors"]["vendor_extra.zendesk.tags"]
    assert reason.endswith("is not a list of tags: each is text (or a number), as Zendesk takes them")
    for fine in (["vip", 7], "vip callback"):
        assert post(client, minimal_packet(vendor_extra={"zendesk": {"tags": fine}})).status_code == 201


@pytest.mark.parametrize("fields", [[{"id": 360001, "value": "bot"}, {"value": "no id"}], {"360001": "x"},
                                    [{"id": None, "value": "x"}], ["360001"]])
def test_zendesk_custom_fields_in_vendor_extra_without_an_id_are_refused_with_a_422_naming_them(make_app, fields):
    # A review: one entry without an id made the bot's list replace the mapping's every field, unsaid.
    client = make_app(targets=("preview",)).test_client()
    response = post(client, minimal_packet(vendor_extra={"zendesk": {"custom_fields": fields}}))
    assert response.status_code == 422
    [reason] = response.get_json()["errors"]["vendor_extra.zendesk.custom_fields"]
    assert reason.endswith('is not a list of fields: each is {"id": …, "value": …}, as Zendesk takes them')
    fine = [{"id": 360001, "value": "bot"}, {"id": "360002", "value": None}]
    assert post(client, minimal_packet(vendor_extra={"zendesk": {"custom_fields": fine}})).status_code == 201


def test_slack_vendor_extra_is_judged_the_same_whatever_routing_chooses(make_app, tmp_path, test_targets,
                                                                        monkeypatch):
    # Two reviews: judged against routing's choice, a retry arriving while the first request was
    # storing could be told 422 beside its 201 (a sticky rule's lookup timing out changes the
    # choice), and the dry run approved what the endpoint refused. Judged against the targets the
    # packet names, else every enabled one: a value this connector's Slack cannot use is refused even
    # for a handoff a rule sends elsewhere; a handoff stored before the check is still replayed.
    import shutil
    from pathlib import Path

    from adapters.slack import SlackAdapter

    root = tmp_path / "m"
    shutil.copytree(Path(__file__).resolve().parents[1] / "mappings", root)
    routing = root / "routing.yaml"
    routing.write_text(routing.read_text().replace(
        "rules:\n", "rules:\n  - name: only-a\n    when: {urgency: urgent}\n"
        "    then: {team: escalations, target_names: [linked_a]}\n", 1))
    app = make_app(targets=("linked_a", "slack"), slack_bot_token="xoxb-1", slack_channel="C0HANDOFF",
                   mappings_dir=str(root))
    client = app.test_client()
    urgent = minimal_packet(vendor_extra={"slack": {"channel": "#vip-support"}}, escalation={
        "reason": "customer_request", "urgency": "urgent"})
    assert post(client, urgent).status_code == 422
    from tests.conftest import ADMIN_TOKEN

    dry = client.post("/v1/preview", data=json.dumps(urgent), headers=auth(ADMIN_TOKEN),
                      content_type="application/json")
    assert dry.status_code == 422 and "vendor_extra.slack.channel" in dry.get_json()["errors"]
    named = {**urgent, "targets": ["linked_a"]}  # a handoff naming its targets: judged by them
    answer = post(client, named)
    assert answer.status_code == 201 and [t["target"] for t in answer.get_json()["tickets"]] == ["linked_a"]

    previewed = make_app(targets=("preview",)).test_client()  # it renders Slack's payload: judged
    stored_before = minimal_packet(vendor_extra={"slack": {"channel": "#vip"}})
    with monkeypatch.context() as before_the_check:
        before_the_check.setattr(SlackAdapter, "vendor_extra_problems", classmethod(lambda cls, extra: {}))
        assert post(previewed, stored_before, key="k-old").status_code == 201
    assert post(previewed, stored_before, key="k-old").status_code == 200
    assert post(previewed, stored_before, key="k-new").status_code == 422


def test_a_rule_leaving_only_preview_beside_a_vendor_sends_the_handoff_to_every_enabled_target(make_app, tmp_path,
                                                                                            test_targets):
    # A review: a rule's `target_names` left only the built-in preview (Slack not enabled here)
    # while a vendor was: 201 `delivered`, the ticket at preview alone, the customer told someone
    # would reply — no agent ever saw it. Passed over as a rule naming disabled targets is.
    mappings = mappings_with_a_first_rule(tmp_path, "  - name: to-preview\n    when: {urgency: urgent}\n"
                                                     "    then: {team: escalations, target_names: [preview, slack]}\n")
    client = make_app(targets=("linked_a", "preview"), mappings_dir=mappings).test_client()
    body = post(client, minimal_packet(escalation={"reason": "customer_request", "urgency": "urgent"})).get_json()
    assert body["assignment"]["rule"] == "to-preview"
    assert sorted(t["target"] for t in body["tickets"]) == ["linked_a", "preview"]
    assert any("leave only the built-in preview, which reaches no agent beside linked_a" in line
               for line in body["assignment"]["trace"])
    # Preview alone enabled: the rule's preview is where every handoff goes, as before.
    alone = make_app(targets=("preview",), mappings_dir=mappings).test_client()
    body = post(alone, minimal_packet(escalation={"reason": "customer_request", "urgency": "urgent"})).get_json()
    assert [t["target"] for t in body["tickets"]] == ["preview"] and body["status"] == "delivered"


def test_messages_of_a_handoff_to_preview_alone_are_refused_once_a_vendor_is_enabled(make_app, test_targets):
    # A review: such a handoff's batches were answered `delivered` (`reaches_agents` among the
    # handoff's own targets only): preview stands in for the vendors only where none is enabled.
    first = make_app(targets=("preview",))
    handoff = post(first.test_client(), minimal_packet()).get_json()
    assert [t["target"] for t in handoff["tickets"]] == ["preview"]
    database_url = first.extensions["connector"].settings.database_url
    later = make_app(targets=("preview", "linked_a"), database_url=database_url).test_client()
    batch = {"messages": [{"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "Still there?"}]}
    response = later.post(f"/v1/handoffs/{handoff['id']}/messages", headers=auth(), content_type="application/json",
                          data=json.dumps(batch))
    assert response.status_code == 422
    assert response.get_json()["errors"] == {
        "messages": ["the handoff's only target, preview, reaches no agent beside linked_a"]}
    # With preview alone enabled they are taken, as in the quickstart.
    alone = make_app(targets=("preview",), database_url=database_url).test_client()
    taken = alone.post(f"/v1/handoffs/{handoff['id']}/messages", content_type="application/json",
                       headers={**auth(), "Idempotency-Key": "batch-1"}, data=json.dumps(batch))
    assert taken.status_code == 201
    # A review: its retry once a vendor is enabled was refused 422 beside its 201 — a repeat is answered
    # as stored (the contract's "the same key and body return the stored response").
    again = later.post(f"/v1/handoffs/{handoff['id']}/messages", content_type="application/json",
                       headers={**auth(), "Idempotency-Key": "batch-1"}, data=json.dumps(batch))
    assert (again.status_code, again.get_json()["id"]) == (200, taken.get_json()["id"])


def test_a_target_taken_out_of_the_settings_is_said_where_its_ticket_waits(make_app, monkeypatch, tmp_path):
    # An operations review: messages for a handoff whose target an operator took out of
    # CONNECTOR_TARGETS were answered 202, `pending`, "retry in 5 s", without a word of why.
    from tests.support_adapters import FlakyAdapter

    monkeypatch.setitem(registry.TARGETS, "flaky", "tests.support_adapters:FlakyAdapter")
    monkeypatch.setitem(registry.TARGETS, "quick", "tests.support_adapters:QuickAdapter")
    monkeypatch.setattr(FlakyAdapter, "seen", set())
    database = {"database_url": f"sqlite:///{tmp_path}/shared.db"}
    before = make_app(targets=("quick", "flaky"), **database).test_client()
    handoff = post(before, minimal_packet(targets=["quick", "flaky"])).get_json()  # flaky: retrying
    assert handoff["status"] == "partial" and "warnings" not in handoff
    after = make_app(targets=("quick",), **database).test_client()
    said = ("flaky is not enabled on this connector (CONNECTOR_TARGETS): its ticket waits for a process that "
            "serves it, or for an operator to dismiss it")
    assert said in after.get(f"/v1/handoffs/{handoff['id']}", headers=auth()).get_json()["warnings"]
    messages = {"messages": [{"at": "2026-11-20T11:00:00Z", "role": "customer", "text": "anyone?"}]}
    sent = after.post(f"/v1/handoffs/{handoff['id']}/messages", data=json.dumps(messages), headers=auth(),
                      content_type="application/json")
    assert sent.status_code == 202 and sent.get_json()["warnings"] == [said]
    again = after.post(f"/v1/handoffs/{handoff['id']}/messages", data=json.dumps(messages), headers=auth(),
                       content_type="application/json")
    assert again.status_code == 200 and again.get_json()["warnings"] == [said]
    # Where it is served, nothing is said.
    assert "warnings" not in before.get(f"/v1/handoffs/{handoff['id']}", headers=auth()).get_json()


def test_a_whole_number_past_two_to_the_53_is_hashed_as_javascript_writes_it():
    # A mends review: int() gave the double's exact digits (…567168) where a JavaScript relay writes
    # the shortest ones (…567000): one JSON value, two hashes.
    from connector.idempotency import packet_hash
    from connector.json_body import parse_json

    def hashed(text):
        return packet_hash(parse_json(text.encode(), "application/json", 100))

    assert hashed('{"a": 1.2345678901234567e19}') == hashed('{"a": 12345678901234567000}')
    assert hashed('{"a": [1e16, -0.0, 2.5]}') == hashed('{"a": [10000000000000000, 0, 2.5]}')
