"""The admin surface: its own token, dry runs, dead deliveries and replays that never duplicate."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import select, update

from adapters import registry
from connector.models import Callback, Delivery, utcnow
from tests.conftest import ADMIN_TOKEN, BOT_KEY, auth
from tests.factories import full_packet, minimal_packet
from tests.support_adapters import FlakyAdapter


@pytest.fixture
def flaky(monkeypatch):
    monkeypatch.setitem(registry.TARGETS, "flaky", "tests.support_adapters:FlakyAdapter")
    FlakyAdapter.seen = set()


def admin(**extra):
    return {**auth(ADMIN_TOKEN), **extra}


@pytest.mark.parametrize("path", ["/v1/deliveries", "/v1/deliveries?state=dead"])
def test_bot_credentials_never_open_the_admin_surface(client, path):
    assert client.get(path, headers=auth(BOT_KEY)).status_code == 401
    assert client.get(path).status_code == 401
    assert client.get(path, headers=admin()).status_code == 200


def test_admin_token_does_not_work_as_a_bot_key(client):
    response = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=admin(),
                           content_type="application/json")
    assert response.status_code == 401


def test_admin_surface_is_off_without_a_token(make_app):
    client = make_app(admin_token="").test_client()
    response = client.get("/v1/deliveries", headers=admin())
    assert response.status_code == 401 and "CONNECTOR_ADMIN_TOKEN" in response.get_json()["detail"]


def test_preview_shows_every_vendor_and_sends_nothing(client, app):
    response = client.post("/v1/preview", data=json.dumps(full_packet()), headers=admin(),
                           content_type="application/json")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body["vendors"]) == {"zendesk", "salesforce", "slack"}
    assert body["assignment"]["trace"] and body["customer_message"]["text"]
    assert set(body["customer_message"]) == {"locale", "text"}  # as the answer shows it, no stored apology inside
    assert body["customer_message_if_failed"] == {
        "locale": "en", "text": "I'm sorry — I couldn't pass this on to our technical support team, so nobody "
                                "has it yet. Please reach us another way, or try again later."}
    assert "may need to ask you about some of it again" in body["customer_message_if_context_lost"]["text"]
    assert body["vendors"]["zendesk"]["payload"]["ticket"]["subject"].startswith("Invoices stopped syncing")
    with app.extensions["connector"].db.session() as session:
        assert session.scalars(select(Delivery)).all() == []
    # The full packet meets a sticky rule: the dry run says it did not ask for the previous agent, not
    # only "no previous agent known", which read as a fact about the customer (a review).
    assert any(line.startswith("dry run: the customer's previous agent is not looked up for sticky rule ")
               for line in body["assignment"]["trace"]), body["assignment"]["trace"]


def test_preview_decides_as_at_another_moment_when_asked(client):
    """An admin checks what a customer is told on a holiday (billing's office calendar, Paris)."""
    billing = json.dumps(minimal_packet(intent={"name": "billing.refund"}))

    def preview(at: str):
        response = client.post(f"/v1/preview?at={at.replace('+', '%2B')}", data=billing, headers=admin(),
                               content_type="application/json")
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    open_, holiday = preview("2026-12-22T10:00:00+01:00"), preview("2026-12-25T10:00:00+01:00")
    assert open_["decided_at"] == "2026-12-22T10:00:00+01:00" and open_["assignment"]["team"] == "billing"
    assert not open_["assignment"].get("out_of_hours")
    assert holiday["assignment"]["out_of_hours"] and holiday["estimated_wait_seconds"] is None
    assert "The team is away right now, though: we open again at 09:00 Monday" in holiday["customer_message"]["text"]
    refused = client.post("/v1/preview?at=tomorrow", data=billing, headers=admin(), content_type="application/json")
    assert refused.status_code == 422 and "at" in refused.get_json()["errors"]
    assert "%2B" not in refused.get_json()["detail"]
    # The example, typed into a URL as it is: its + arrives as a space.
    typed = client.post("/v1/preview?at=2026-12-24T19:30:00+01:00", data=billing, headers=admin(),
                        content_type="application/json")
    assert typed.status_code == 422 and "write it %2B" in typed.get_json()["detail"]
    # A valid time past what a calendar can look ahead from: a 500 (a review).
    late = client.post("/v1/preview?at=9999-12-30T12:00:00Z", data=billing, headers=admin(),
                       content_type="application/json")
    assert late.status_code == 422 and late.get_json()["errors"] == {"at": ["from 1900 to before 9000"]}
    early = client.post("/v1/preview?at=0001-01-01T00:00:00Z", data=billing, headers=admin(),
                        content_type="application/json")
    assert early.status_code == 422 and early.get_json()["errors"] == {"at": ["from 1900 to before 9000"]}


def test_preview_warns_as_the_answer_would(client):
    # A conversation in Portuguese, with no messages for it, was previewed in English without a word.
    packet = minimal_packet(conversation={"id": "c", "language": "pt-BR"})
    response = client.post("/v1/preview", data=json.dumps(packet), headers=admin(), content_type="application/json")
    assert response.status_code == 200
    assert any("no customer messages for 'pt-BR'" in said for said in response.get_json()["warnings"])
    assert client.post("/v1/preview", data=json.dumps(minimal_packet()), headers=admin(),
                       content_type="application/json").get_json()["warnings"] == []


def test_preview_receipt_names_a_mapping_value_its_template_could_not_give(make_app, tmp_path, caplog):
    # The dry run an admin uses to check a mapping said every part arrived while the ticket would go
    # without the field; the receipt names it as a handoff's answer does, and nothing is logged.
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    with (tmp_path / "m" / "zendesk.yaml").open("a") as file:
        file.write("custom_fields:\n  - {id: 7, template: \"{{ customer.attributes.seats + ' seats' }}\"}\n")
    client = make_app(mappings_dir=str(tmp_path / "m")).test_client()
    with caplog.at_level("WARNING", logger="connector.mapping_values"):
        response = client.post("/v1/preview", data=json.dumps(full_packet()), headers=admin(),
                               content_type="application/json")
    assert response.status_code == 200
    dropped = response.get_json()["vendors"]["zendesk"]["receipt"]["dropped"]
    assert [d["reason"].split(": template error")[0] for d in dropped if d["part"] == "mapping"] == [
        "zendesk.yaml custom_fields[0]"]
    assert not [r for r in caplog.records if r.name == "connector.mapping_values"]


def test_preview_names_a_value_the_sandbox_refuses_on_this_packet_instead_of_a_500(make_app, tmp_path):
    # Not on the samples' values, so the edit was taken: the dry run answered 500 naming nothing.
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    with (tmp_path / "m" / "zendesk.yaml").open("a") as file:
        file.write("custom_fields:\n  - {id: 7, template: \"{{ customer.attributes.pop('plan') "
                   "if customer.attributes.plan == 'Gold' else '' }}\"}\n")
    packet = full_packet()
    packet["customer"]["attributes"] = {"plan": "Gold"}
    response = make_app(mappings_dir=str(tmp_path / "m")).test_client().post(
        "/v1/preview", data=json.dumps(packet), headers=admin(), content_type="application/json")
    assert response.status_code == 200
    dropped = response.get_json()["vendors"]["zendesk"]["receipt"]["dropped"]
    assert [d["reason"].split(": template error")[0] for d in dropped if d["part"] == "mapping"] == [
        "zendesk.yaml custom_fields[0]"]


def test_preview_reports_packet_errors(client):
    response = client.post("/v1/preview", data=json.dumps({"bot": {}}), headers=admin(),
                           content_type="application/json")
    assert response.status_code == 422 and "bot.id" in response.get_json()["errors"]


def _kill(app):
    """Make every pending delivery dead, as exhausted retries would."""
    with app.extensions["connector"].db.session() as session:
        session.execute(update(Delivery).where(Delivery.state == "pending").values(state="dead", attempts=12))


@pytest.mark.parametrize("said", ["True", "yes", "1", "ON"])
def test_a_retry_including_failed_deliveries_takes_any_way_of_saying_yes(make_app, flaky, said):
    # An operator's review: `?include_failed=True` (Python's requests) replayed none of the failed
    # deliveries and answered `{"replayed": []}`, an all-clear.
    app = make_app(targets=("flaky",))
    client = app.test_client()
    client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(), content_type="application/json")
    with app.extensions["connector"].db.session() as session:
        [refused] = session.scalars(select(Delivery.id)).all()
        session.execute(update(Delivery).values(state="failed", attempts=1))
    answer = client.post(f"/v1/deliveries/retry?include_failed={said}", headers=admin())
    assert answer.status_code == 202 and answer.get_json()["replayed"] == [refused]


@pytest.mark.parametrize(("query", "named"), [("include_failed=maybe", "include_failed"),
                                               ("include-failed=1", "include-failed"),
                                               ("target=flaky&dry_run=1", "dry_run")])
def test_a_retry_refuses_a_parameter_it_does_not_read_or_a_flag_it_cannot_read(client, flaky, query, named):
    answer = client.post(f"/v1/deliveries/retry?{query}", headers=admin())
    assert answer.status_code == 422 and named in answer.get_json()["errors"]


def test_dead_deliveries_are_listed_and_replayed_once(make_app, flaky):
    app = make_app(targets=("flaky",))
    client = app.test_client()
    handoff = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                          content_type="application/json").get_json()
    _kill(app)
    dead = client.get("/v1/deliveries?state=dead", headers=admin()).get_json()["items"]
    assert [(d["handoff_id"], d["state"], d["attempts"]) for d in dead] == [(handoff["id"], "dead", 12)]
    response = client.post(f"/v1/deliveries/{dead[0]['id']}/retry", headers=admin())
    assert response.status_code == 202
    app.extensions["connector"].executor.shutdown(wait=True)
    final = client.get(handoff["links"]["self"], headers=auth()).get_json()
    assert final["tickets"][0]["status"] == "created"
    with app.extensions["connector"].db.session() as session:
        row = session.scalars(select(Delivery)).one()
        assert row.attempts == 1 and row.outcome_unknown is False
    assert client.post(f"/v1/deliveries/{dead[0]['id']}/retry", headers=admin()).status_code == 404


@pytest.mark.parametrize("limit", ["\u00b2", "\uff11\uff10", "\u0661", "0", "501", " 5"])
def test_a_deliveries_limit_is_whole_ascii_digits_in_range(client, limit):
    # "²" passed str.isdigit() and int() refused it: a 500. "１０" passed both.
    response = client.get("/v1/deliveries", query_string={"limit": limit}, headers=admin())
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["errors"] == {"limit": ["1 to 500"]}
    assert client.get("/v1/deliveries", query_string={"limit": "500"}, headers=admin()).status_code == 200


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_deliveries_listing_pages_and_refuses_a_parameter_it_does_not_read(request, make_app, database):
    # A review: past 500 an outage's dead deliveries could not be listed (`offset=`, `page=` gave the
    # first page again), and `tagret=slack` or `status=dead` listed every delivery as if asked for.
    url = {"database_url": request.getfixturevalue("postgres_url")} if database == "postgres" else {}
    app = make_app(**url)
    client = app.test_client()
    for index in range(5):
        client.post("/v1/handoffs", data=json.dumps(minimal_packet(conversation={"id": f"c{index}"})),
                    headers={**auth(), "Idempotency-Key": f"p{index}"}, content_type="application/json")
    with app.extensions["connector"].db.session() as session:  # two share one moment: the id breaks the tie
        session.execute(update(Delivery).where(Delivery.id <= 2).values(updated_at=select(Delivery.updated_at)
                                                                         .where(Delivery.id == 3).scalar_subquery()))
    everything = [row["id"] for row in client.get("/v1/deliveries", headers=admin()).get_json()["items"]]
    pages, before = [], None
    while True:
        page = client.get("/v1/deliveries", query_string={"limit": 2, **({"before": before} if before else {})},
                          headers=admin()).get_json()
        pages.append([row["id"] for row in page["items"]])
        before = page["next_before"]
        if before is None:
            break
    assert [delivery for page in pages for delivery in page] == everything and len(everything) == 5
    assert [len(page) for page in pages] == [2, 2, 1]
    # Where the page ended, not where its last row is now: replayed or retried meanwhile, it moved to
    # the top and the next page began with the first page again (a review).
    first = client.get("/v1/deliveries", query_string={"limit": 2}, headers=admin()).get_json()
    with app.extensions["connector"].db.session() as session:
        session.execute(update(Delivery).where(Delivery.id == first["items"][-1]["id"]).values(updated_at=utcnow()))
    second = client.get("/v1/deliveries", query_string={"limit": 2, "before": first["next_before"]},
                        headers=admin()).get_json()
    assert [row["id"] for row in second["items"]] == everything[2:4]
    for query in ("tagret=slack", "status=dead", "offset=2", "before=x", "before=%C2%B2", "before=5",
                  "before=20261399T000000.000000Z.5"):
        refused = client.get(f"/v1/deliveries?{query}", headers=admin())
        assert refused.status_code == 422, query
        assert list(refused.get_json()["errors"]) == [query.split("=")[0]]
    misspelt = client.post("/v1/preview?At=2026-12-25T10:00:00Z", data=json.dumps(minimal_packet()),
                           headers=admin(), content_type="application/json")
    assert misspelt.status_code == 422 and misspelt.get_json()["errors"] == {"At": ["unknown parameter"]}


def test_bulk_replay_and_cli(make_app, flaky):
    app = make_app(targets=("flaky",))
    client = app.test_client()
    for index in range(3):
        client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers={**auth(), "Idempotency-Key": f"b{index}"},
                    content_type="application/json")
    _kill(app)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["connector", "deliveries"])
    assert listed.exit_code == 0 and listed.output.count("\tdead\t") == 3
    # A typo'd target or a limit of 0 listed nothing, or replayed nothing: a false all-clear.
    for path, method in (("/v1/deliveries?state=dead&target=Flaky", client.get),
                         ("/v1/deliveries/retry?target=flaky-typo", client.post)):
        refused = method(path, headers=admin())
        assert refused.status_code == 422 and "target must be one of" in refused.get_json()["detail"], path
    assert runner.invoke(args=["connector", "deliveries", "--limit", "0"]).exit_code == 2
    assert len(client.get("/v1/deliveries?state=dead&target=", headers=admin()).get_json()["items"]) == 3
    replayed = runner.invoke(args=["connector", "replay", "--all-dead"])
    assert replayed.exit_code == 0 and replayed.output.startswith("replayed 3 deliveries: ")
    _kill(app)
    response = client.post("/v1/deliveries/retry?target=flaky", headers=admin())
    assert response.status_code == 202 and len(response.get_json()["replayed"]) == 3
    # A delivery in another state, and an id that names none: each said as what it is.
    pending = runner.invoke(args=["connector", "replay", "1", "999"])
    assert pending.exit_code == 1 and "not dead or failed, or its messages carried since by later ones, left alone: 1\nno such delivery: 999" in pending.output


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_given_up_delivery_of_a_target_disabled_since_is_dismissed_not_replayed(make_app, flaky, request, database):
    # Slack disabled after its deliveries died: a replay said "replayed 1", then the attempt failed
    # at once ("not enabled here", attempts 0); and nothing could take them off the failed gauge,
    # /readyz, or retention's list of handoffs to keep.
    import datetime as dt

    from connector.models import Handoff

    on = {"database_url": request.getfixturevalue("postgres_url")} if database == "postgres" else {}
    app = make_app(targets=("flaky",), **on)
    client, runner, services = app.test_client(), app.test_cli_runner(), app.extensions["connector"]
    ids = [client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers={**auth(), "Idempotency-Key": f"d{n}"},
                       content_type="application/json").get_json()["id"] for n in range(2)]
    _kill(app)
    with services.db.session() as session:
        session.execute(update(Delivery).where(Delivery.handoff_id == ids[0]).values(target="slack"))
        [gone, dead] = [session.scalars(select(Delivery.id).where(Delivery.handoff_id == handoff_id)).one()
                        for handoff_id in ids]
    assert services.outbox.counts()["slack"]["dead"] == 1

    replayed = runner.invoke(args=["connector", "replay", str(gone)])
    assert replayed.exit_code == 1 and replayed.output.startswith("replayed 0")
    assert f"of a target not enabled here (CONNECTOR_TARGETS), left alone: {gone}" in replayed.output
    refused = client.post(f"/v1/deliveries/{gone}/retry", headers=admin())
    assert refused.status_code == 404 and "dismiss it" in refused.get_json()["detail"]
    bulk = client.post("/v1/deliveries/retry", headers=admin()).get_json()
    assert (bulk["replayed"], bulk["not_enabled"]) == ([dead], [gone])  # flaky's only; the other said
    _kill(app)

    dismissed = runner.invoke(args=["connector", "dismiss", str(gone)])
    assert dismissed.exit_code == 0 and dismissed.output.strip() == f"dismissed 1 delivery: {gone}"
    assert "slack" not in services.outbox.counts()  # off the gauges and /readyz
    listed = client.get("/v1/deliveries?state=dismissed", headers=admin()).get_json()["items"]
    assert [(d["id"], d["state"]) for d in listed] == [(gone, "dismissed")]
    assert listed[0]["last_error"].endswith(" (dismissed by an operator)")
    assert runner.invoke(args=["connector", "replay", str(gone)]).exit_code == 1  # never replayed now
    bot = client.get(f"/v1/handoffs/{ids[0]}", headers=auth()).get_json()  # as the contract's statuses say it
    assert (bot["status"], bot["tickets"][0]["status"], bot["deliveries"][0]["state"]) == ("failed", "failed", "failed")

    answered = client.post(f"/v1/deliveries/{dead}/dismiss", headers=admin())
    assert answered.status_code == 200 and answered.get_json()["items"][0]["state"] == "dismissed"
    assert client.post(f"/v1/deliveries/{dead}/dismiss", headers=admin()).status_code == 404
    assert client.post("/v1/deliveries/99999999999999999999/dismiss", headers=admin()).status_code == 404

    with services.db.session() as session:  # retention keeps a given-up handoff; a dismissed one it may forget
        session.execute(update(Handoff).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40)))
    forgot = runner.invoke(args=["connector", "purge", "--days", "30"])
    assert forgot.exit_code == 0 and "forgot 2 handoff(s)" in forgot.output, forgot.output


def test_a_delivery_still_retrying_for_a_target_switched_off_can_be_dismissed(make_app, flaky):
    # An operator's review: Slack taken out of CONNECTOR_TARGETS while a delivery retried; no process
    # would try it, `dismiss` refused it as not given up, and the bot was told for a day that someone
    # would reply.
    from connector.models import Callback
    from tests.test_callbacks import TWO_SECRETS

    app = make_app(targets=("flaky",), max_attempts=5, bot_secrets=TWO_SECRETS)
    client, runner, services = app.test_client(), app.test_cli_runner(), app.extensions["connector"]
    packets = [minimal_packet() | {"conversation": {"id": f"conv-{n}"},
                                   "callback": {"url": "https://bot.example/cb", "events": ["failed"]}}
               for n in range(3)]
    ids = [client.post("/v1/handoffs", data=json.dumps(p), headers=auth(), content_type="application/json")
           .get_json()["id"] for p in packets]
    with services.db.session() as session:
        session.execute(update(Delivery).where(Delivery.handoff_id.in_(ids[:2])).values(target="slack"))
        rows = {d.handoff_id: d for d in session.scalars(select(Delivery))}
        assert all(d.state == "pending" for d in rows.values())
    off, also_off, served = (rows[h].id for h in ids)
    # Due a moment ago: another process may serve slack (a rolling change of CONNECTOR_TARGETS) and
    # take it at its next poll — not dismissed from here (a review of the mend).
    assert client.post(f"/v1/deliveries/{off}/dismiss", headers=admin()).status_code == 404
    import datetime as dt

    from connector.models import utcnow
    from connector.outbox import UNTAKEN_TO_DISMISS_S

    with services.db.session() as session:  # untaken since: nobody serves slack
        untaken = utcnow() - dt.timedelta(seconds=UNTAKEN_TO_DISMISS_S + 1)
        session.execute(update(Delivery).values(next_attempt_at=untaken))

    assert runner.invoke(args=["connector", "dismiss", "--all-dead"]).output.startswith("dismissed 0")  # dead only
    assert client.post(f"/v1/deliveries/{served}/dismiss", headers=admin()).status_code == 404  # flaky serves it
    answered = client.post(f"/v1/deliveries/{off}/dismiss", headers=admin())
    assert answered.status_code == 200 and answered.get_json()["items"][0]["state"] == "dismissed"
    by_target = runner.invoke(args=["connector", "dismiss", "--all-dead", "--target", "slack"])
    assert by_target.output.strip() == f"dismissed 1 delivery: {also_off}"
    bot = client.get(f"/v1/handoffs/{ids[0]}", headers=auth()).get_json()
    assert bot["status"] == "failed" and "as soon as they're free" not in bot["customer_message"]["text"]
    with services.db.reading() as session:  # its bot asked to hear of a failure: owed now
        owed = {c.handoff_id: c.state for c in session.scalars(select(Callback))}
    assert owed == {ids[0]: "failed", ids[1]: "failed"}


def test_a_dismissed_delivery_is_said_to_the_bot_as_failed_everywhere_and_hides_what_it_hid(make_app, flaky):
    # The review's finds: "dismissed by an operator; before: " in front of a connection failure
    # kept `for_bot` from knowing it (the proxy's host went to the bot), and a status callback
    # listed `dismissed`, which the contract's ticket statuses do not have.
    from connector import callbacks
    from connector.outbox import dismiss

    app = make_app(targets=("flaky",))
    client, services = app.test_client(), app.extensions["connector"]
    handoff_id = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                             content_type="application/json").get_json()["id"]
    hidden = ("TransientError: could not connect to https://zendesk-proxy.internal:8443/api/v2/tickets.json: "
              "Failed to resolve 'zendesk-proxy.internal'")
    with services.db.session() as session:
        session.execute(update(Delivery).values(state="dead", last_error=hidden))
    before = client.get(f"/v1/handoffs/{handoff_id}", headers=auth()).get_json()["tickets"][0]["error"]
    assert dismiss(services.db, states=("dead",))
    after = client.get(f"/v1/handoffs/{handoff_id}", headers=auth()).get_json()
    assert "zendesk-proxy" not in json.dumps(after) and after["tickets"][0]["error"] == before
    assert callbacks.ticket("slack", "dismissed", None, None)["status"] == "failed"  # every callback body's tickets


def test_messages_do_not_go_to_a_target_whose_delivery_was_dismissed(make_app, flaky, monkeypatch):
    # Each batch went there too: it failed at once (the target disabled), back on the failed
    # counts, or carried the whole handoff where an operator had said it was not to go.
    from connector.outbox import dismiss

    # Two vendors (stand-ins): preview left alone beside a vendor reaches no agent, and is refused so.
    monkeypatch.setitem(registry.TARGETS, "linked_a", "tests.support_adapters:LinkedAAdapter")
    app = make_app(targets=("flaky", "linked_a"))
    client, services = app.test_client(), app.extensions["connector"]
    handoff_id = client.post("/v1/handoffs", data=json.dumps(minimal_packet(targets=["flaky", "linked_a"])),
                             headers=auth(), content_type="application/json").get_json()["id"]
    with services.db.session() as session:
        session.execute(update(Delivery).where(Delivery.target == "flaky").values(state="dead"))
    dismiss(services.db, states=("dead",))
    batch = {"messages": [{"at": "2026-11-20T10:00:00Z", "role": "customer", "text": "still there?"}]}
    sent = client.post(f"/v1/handoffs/{handoff_id}/messages", data=json.dumps(batch), headers=auth(),
                       content_type="application/json")
    assert sent.status_code in (201, 202) and [t["target"] for t in sent.get_json()["tickets"]] == ["linked_a"]
    with services.db.session() as session:
        session.execute(update(Delivery).where(Delivery.target == "linked_a").values(state="dead"))
    dismiss(services.db, states=("dead",))
    refused = client.post(f"/v1/handoffs/{handoff_id}/messages", data=json.dumps({"messages": [
        {"at": "2026-11-20T10:01:00Z", "role": "customer", "text": "hello?"}]}), headers=auth(),
        content_type="application/json")
    assert refused.status_code == 422 and "dismissed" in refused.get_json()["detail"]


def test_check_reports_insecure_settings_and_risky_mappings(make_app):
    from tests.fakes.salesforce import INSTANCE, TOKEN

    app = make_app(allow_unauthenticated=True, targets=("preview", "salesforce"),
                   salesforce_instance_url=INSTANCE, salesforce_access_token=TOKEN)
    result = app.test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    assert "CONNECTOR_ALLOW_UNAUTHENTICATED=1" in result.output
    assert "no handoff_id_field" in result.output


@pytest.mark.parametrize(("secrets", "warned"), [((), True), (("whsec-zendesk-0123456789",), False)])
def test_check_warns_when_zendesk_is_on_without_a_webhook_secret(make_app, secrets, warned):
    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="token", zendesk_webhook_secrets=secrets)
    result = app.test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    assert ("no ZENDESK_WEBHOOK_SECRETS" in result.output) is warned


def test_check_fails_on_a_bad_mapping_edit(make_app, tmp_path):
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    app = make_app(mappings_dir=str(tmp_path / "m"))
    (tmp_path / "m" / "routing.yaml").write_text("version: 1\nrules: [{name: x, when: {segmnt: vip}}]\n")
    result = app.test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 1 and "routing.yaml:2" in result.output


def test_a_bad_mapping_is_one_line_naming_file_line_and_guide_and_commands_that_need_none_still_run(tmp_path):
    """Every CLI command builds the app in wsgi.py. With a broken file, in a fresh process: `check`
    says what to fix and where it is explained; the commands that use no mapping (the ones an
    operator needs while an edit is refused) run; those that act on the mappings refuse."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    shutil.copytree(root / "mappings", tmp_path / "m")
    (tmp_path / "m" / "routing.yaml").write_text("version: 1\nrules: [{name: x, when: {segmnt: vip}}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "PROMETHEUS_", "FLASK_"))}
    env.update(CONNECTOR_MAPPINGS_DIR=str(tmp_path / "m"), CONNECTOR_DATABASE_URL=f"sqlite:///{tmp_path}/c.db",
               PYTHONPATH=str(root))

    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "connector", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    checked = flask("check")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    [line] = [text for text in checked.stderr.splitlines() if text.startswith("problem: ")]
    assert "routing.yaml:2 rules[0].when.segmnt" in line and line.endswith("(see mappings/README.md)")
    assert f"mappings: {tmp_path / 'm'} (refused: see the problem below)" in checked.stdout  # not as if fine
    assert flask("migrate").returncode == 0
    listed = flask("deliveries")
    assert listed.returncode == 0 and listed.stderr.strip() == "0 deliveries"
    previewed = flask("preview", str(root / "examples" / "handoff-full.json"))
    assert previewed.returncode == 1
    assert previewed.stderr.startswith("Error: the mappings are refused: ") and "routing.yaml:2" in previewed.stderr
    worker = flask("worker")  # it would deliver on every default instead of the admins' mappings
    assert worker.returncode == 1 and worker.stderr.startswith("Error: the mappings are refused: ")


def test_short_admin_and_metrics_tokens_are_warned_about_by_check_and_at_start_up(make_app, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="connector.app"):
        app = make_app(admin_token="short", metrics_token="also-short")
    result = app.test_cli_runner().invoke(args=["connector", "check"])
    assert result.exit_code == 0, result.output
    for said in ("CONNECTOR_ADMIN_TOKEN is shorter than 24 characters",
                 "CONNECTOR_METRICS_TOKEN is shorter than 24 characters"):
        assert f"warning: {said}" in result.output
        assert said in [getattr(r, "warning", None) for r in caplog.records]


def test_a_service_that_will_refuse_every_bot_says_so_when_it_starts(make_app, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="connector.app"):
        make_app(bot_keys=(), bot_secrets=())
    assert "no CONNECTOR_BOT_KEYS or CONNECTOR_BOT_SECRETS: every bot request will be refused" in [
        getattr(r, "warning", None) for r in caplog.records]


def test_readyz_shows_a_refused_mapping_edit_while_the_last_good_set_serves(make_app, tmp_path):
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    app = make_app(mappings_dir=str(tmp_path / "m"))
    store = app.extensions["connector"].mapping_store
    store.interval = 0  # look at the files on every use
    client = app.test_client()
    assert client.get("/readyz").get_json()["checks"]["mappings"]["ok"] is True
    (tmp_path / "m" / "routing.yaml").write_text("version: 1\nrules: [{name: x, when: {segmnt: vip}}]\n")
    response = client.get("/readyz")
    assert response.status_code == 200  # still serving, on the last good set
    shown = response.get_json()["checks"]["mappings"]
    assert shown["ok"] is False and shown["serving"] == "the last good set"
    assert shown["where"].endswith("routing.yaml:2 rules[0].when.segmnt")
    # Placed, not quoted: /readyz is open to anyone and the refusal quotes the file; the admin page says why.
    assert "refused_edit" not in shown and "segmnt" not in str({k: v for k, v in shown.items() if k != "where"})
    from tests.test_admin_page import signed_in
    app.config["CHECK_OPENAPI"] = False  # HTML pages, not in the API's document
    page = signed_in(app).get("/admin").get_data(as_text=True)
    assert "an edit was refused" in page and "rules[0].when.segmnt" in page and "unknown" in page.lower()
    # A dry run of the set still served would pass for the edit's: refused, as the command is.
    previewed = client.post("/v1/preview", json=minimal_packet(), headers=admin())
    assert previewed.status_code == 409 and previewed.get_json()["type"].endswith("/problems/mappings-refused")
    assert "the mapping files are refused" in previewed.get_json()["detail"]
    assert "routing.yaml:2 rules[0].when.segmnt" in previewed.get_json()["detail"]


def test_an_edit_the_adapter_refuses_is_refused_like_any_other_not_a_500(make_app, tmp_path):
    """The mapping loader passed it; the Zendesk adapter, built from it, refuses a custom field
    without an id. It used to serve anyway: every request that built the adapters answered 500."""
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    app = make_app(mappings_dir=str(tmp_path / "m"), targets=("zendesk",), zendesk_subdomain="acme",
                   zendesk_email="bot@acme.example", zendesk_api_token="zd-token-123")
    services = app.extensions["connector"]
    services.mapping_store.interval = 0
    before = services.adapters["zendesk"]
    zendesk = tmp_path / "m" / "zendesk.yaml"
    zendesk.write_text(zendesk.read_text() + "custom_fields:\n  - literal: gold\n")
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()
    shown = response.get_json()["checks"]["mappings"]
    assert shown["ok"] is False and "custom_fields[0]" in shown["where"]
    assert services.adapters["zendesk"] is before  # the last good set serves
    assert app.test_client().get("/metrics").status_code == 200


def test_an_edit_that_names_a_slack_channel_instead_of_its_id_is_logged_as_at_start(make_app, tmp_path, caplog):
    """`connector check` and the start-up log say it; an edit of a running service said nothing."""
    import logging
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    app = make_app(mappings_dir=str(tmp_path / "m"), targets=("slack",), slack_bot_token="xoxb-test",
                   slack_channel="C0HANDOFF")
    services = app.extensions["connector"]
    services.mapping_store.interval = 0
    assert services.adapters["slack"]
    routing = tmp_path / "m" / "routing.yaml"
    routing.write_text(routing.read_text().replace("    queue: Billing\n",
                                                   "    queue: Billing\n    targets: {slack: {channel: '#vip'}}\n", 1))
    with caplog.at_level(logging.WARNING, logger="connector.services"):
        assert services.adapters["slack"]
    said = [r.warning for r in caplog.records if r.message == "mapping to look at"]
    assert any(w.startswith("mappings/routing.yaml: teams.billing.targets.slack.channel is '#vip'") for w in said), said
    assert services.mapping_store.errors is None

    # An operator's review: slack.yaml's own channel by name, and a team name in messages.yaml that
    # routing.yaml has not, were said by `check` only — an edit logged "mappings reloaded" alone.
    caplog.clear()
    slack = tmp_path / "m" / "slack.yaml"
    slack.write_text(slack.read_text() + "channel: handoffs\n")
    messages = tmp_path / "m" / "messages.yaml"
    messages.write_text(messages.read_text().replace("technical_support: soporte técnico", "technical-support: soporte técnico"))
    with caplog.at_level(logging.WARNING, logger="connector.services"):
        assert services.adapters["slack"]
    said = [r.warning for r in caplog.records if r.message == "mapping to look at"]
    assert any("'handoffs'" in w and "channel" in w for w in said), said
    assert any(w.startswith("messages.yaml locales.es.teams names 'technical-support', no team of routing.yaml "
                            "(meant 'technical_support'?)") for w in said), said
    assert any("technical-support" in w for w in services.warnings())  # and `check`, as before the edit
    # A setting's warning is not a mapping's: the missing signing secret was logged with every edit as
    # "mapping to look at" (an operations review); the start-up and `check` say it.
    assert not any("SLACK_SIGNING_SECRET" in w for w in said), said
    assert any("SLACK_SIGNING_SECRET" in w for w in services.warnings())


def test_the_loop_reads_an_edited_mapping_without_waiting_for_a_request(make_app, tmp_path, caplog):
    import logging
    import shutil
    import time
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    app = make_app(mappings_dir=str(tmp_path / "m"))
    services = app.extensions["connector"]
    services.mapping_store.interval = 0
    (tmp_path / "m" / "slack.yaml").write_text("version: 1\nredcat: [card]\n")
    refused = "mappings edit refused; keeping the last good set"
    with caplog.at_level(logging.ERROR, logger="connector.mappings"):
        services.start_loop(0.05)
        deadline = time.monotonic() + 5
        while not any(r.message == refused for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert any(r.message == refused for r in caplog.records)
    assert services.mapping_store.errors is not None and "redcat" in services.mapping_store.errors.source


def test_a_preview_while_another_request_reloads_an_edit_waits_for_the_files_verdict(make_app, tmp_path):
    # A review of the mend: with the store's lock no longer waited for, a preview made while the outbox
    # loop was parsing a refused edit answered 200 with the set the edit was replacing, not 409.
    import shutil
    import threading
    import time
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    app = make_app(mappings_dir=str(tmp_path / "m"))
    store = app.extensions["connector"].mapping_store
    parsing, load = threading.Event(), store.load

    def slow_load():  # type: ignore[no-untyped-def]
        parsing.set()
        time.sleep(1)
        return load()

    store.load = slow_load
    (tmp_path / "m" / "routing.yaml").write_text("version: 1\nrules: [{name: x, when: {segmnt: vip}}]\n")
    store.interval = 0
    other = threading.Thread(target=store.current)  # another request, or the outbox loop, looks first
    other.start()
    assert parsing.wait(5)
    previewed = app.test_client().post("/v1/preview", json=minimal_packet(), headers=admin())
    other.join(10)
    assert previewed.status_code == 409, previewed.get_json()


def test_retrying_deliveries_are_listed_as_readyz_and_metrics_count_them(make_app):
    # An operator review: alerted on connector_deliveries{state="retrying"}, they could not list
    # those by that name (`--state retrying` and `?state=retrying` were refused).
    from connector.models import Handoff

    app = make_app(targets=("preview",))
    with app.extensions["connector"].db.session() as session:
        for n, (state, attempts) in enumerate((("pending", 0), ("pending", 3), ("dead", 12))):
            session.add(Handoff(id=f"hnd_{n}", bot_id="support-bot", conversation_id=f"c{n}", idempotency_key=f"k{n}",
                                request_hash="0" * 64, packet={}, assignment={"team": "support", "trace": []},
                                customer_message={"locale": "en", "text": "x"},
                                deliveries=[Delivery(target="preview", state=state, attempts=attempts,
                                                     next_attempt_at=utcnow())]))
    client = app.test_client()
    listed = client.get("/v1/deliveries?state=retrying", headers=admin()).get_json()["items"]
    assert [(d["handoff_id"], d["attempts"]) for d in listed] == [("hnd_1", 3)]
    assert len(client.get("/v1/deliveries?state=pending", headers=admin()).get_json()["items"]) == 2
    counts = client.get("/readyz").get_json()["checks"]["deliveries"]["preview"]
    assert (counts["pending"], counts["retrying"]) == (1, 1)
    result = app.test_cli_runner().invoke(args=["connector", "deliveries", "--state", "retrying"])
    assert result.exit_code == 0 and "hnd_1\tpreview\tpending\tattempts=3" in result.output
    assert "hnd_0" not in result.output


def test_each_delivery_and_callback_an_operator_acts_on_is_logged_with_its_handoff(make_app, flaky, caplog):
    # An operator's review: a search of the log for a handoff showed its attempts stop (dismissed) or
    # start again at 1 (replayed) with nothing between; the bulk lines said a count only.
    from connector.outbox import dismiss, replay

    app = make_app(targets=("flaky",))
    client, services = app.test_client(), app.extensions["connector"]
    handoff_id = client.post("/v1/handoffs", data=json.dumps(minimal_packet(callback={
        "url": "https://bot.example.com/cb"})), headers=auth(), content_type="application/json").get_json()["id"]
    with services.db.session() as session:
        session.execute(update(Delivery).values(state="dead"))
        session.execute(update(Callback).values(status="dead"))
    with caplog.at_level(logging.INFO):
        [replayed] = replay(services.db)
        with services.db.session() as session:
            session.execute(update(Delivery).values(state="dead", lease_owner=None))
        dismiss(services.db)
        services.callbacks.dismiss()
    said = [(r.getMessage(), getattr(r, "handoff_id", None)) for r in caplog.records
            if r.getMessage().endswith(("replayed", "by an operator"))]
    assert ("delivery replayed", handoff_id) in said and ("delivery dismissed by an operator", handoff_id) in said
    assert ("status callback dismissed by an operator", handoff_id) in said
    [line] = [r for r in caplog.records if r.getMessage() == "delivery replayed"]
    assert (line.delivery_id, line.target) == (str(replayed), "flaky")


def test_messages_waiting_behind_a_dismissed_delivery_are_put_aside_with_it(make_app, monkeypatch):
    # An operator's review: the batch queued while the vendor was down found nothing delivered before
    # it and carried the whole handoff there once the vendor came back — where the operator had
    # dismissed it — and could not be dismissed itself (404).
    from connector.outbox import BEHIND_DISMISSED, dismiss

    monkeypatch.setitem(registry.TARGETS, "down", "tests.support_adapters:DownAdapter")
    app = make_app(targets=("down",))
    client, services = app.test_client(), app.extensions["connector"]
    handoff_id = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                             content_type="application/json").get_json()["id"]
    batch = client.post(f"/v1/handoffs/{handoff_id}/messages", headers=auth(), content_type="application/json",
                        data=json.dumps({"messages": [{"at": "2026-11-20T10:00:00Z", "role": "customer",
                                                       "text": "hello?"}]})).get_json()
    with services.db.session() as session:
        session.execute(update(Delivery).where(Delivery.handoff_id == handoff_id).values(state="dead"))
        session.execute(update(Delivery).values(lease_owner=None, lease_expires_at=None))
    assert len(dismiss(services.db, states=("dead",))) == 1  # the handoff's own; the batch's below
    with services.db.reading() as session:
        rows = {d.handoff_id: (d.state, d.last_error) for d in session.scalars(select(Delivery))}
    assert rows[batch["id"]] == ("dismissed", BEHIND_DISMISSED)
    with services.db.session() as session:  # the vendor back: whatever still waits is due
        session.execute(update(Delivery).where(Delivery.state == "pending").values(next_attempt_at=utcnow()))
    assert services.outbox.claim_due()[0] == []  # nothing left to carry the handoff there
