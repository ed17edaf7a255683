"""GET /metrics: events counted where they happen, the backlog read from the database at each scrape.

Counters are process-wide (one registry per process, as in production), so each test compares
what it did with the value before it.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert
from sqlalchemy.exc import OperationalError

from connector.models import TargetPause, utcnow
from tests.conftest import auth
from tests.factories import minimal_packet
from tests.test_handoffs import post, test_targets  # noqa: F401  (the fixture registers stand-in targets)


def scrape(client, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of one scrape: (name, sorted labels) → value."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_pattern_and_status_never_by_id(client):
    before = scrape(client)
    created = post(client, minimal_packet()).get_json()
    client.get(f"/v1/handoffs/{created['id']}", headers=auth())
    client.get("/v1/handoffs/hnd_unknown", headers=auth())
    client.post("/v1/handoffs", data=json.dumps(minimal_packet()), content_type="application/json")  # no key
    after = scrape(client)

    def grew(route: str, method: str, status: str) -> float:
        labels = {"route": route, "method": method, "status": status}
        return value(after, "connector_http_requests_total", **labels) - value(
            before, "connector_http_requests_total", **labels)

    assert grew("/v1/handoffs", "POST", "201") == 1
    assert grew("/v1/handoffs", "POST", "401") == 1
    assert grew("/v1/handoffs/<handoff_id>", "GET", "200") == 1
    assert grew("/v1/handoffs/<handoff_id>", "GET", "404") == 1
    assert not any("hnd_" in str(labels) for _, labels in after)  # one series per route, not per handoff
    timed = {"route": "/v1/handoffs", "method": "POST"}
    assert value(after, "connector_http_request_duration_seconds_count", **timed) - value(
        before, "connector_http_request_duration_seconds_count", **timed) == 2


def test_a_body_refused_before_any_view_is_timed_as_it_is_counted(make_app):
    # A review: a gzip body's 415 and a chunked body's 413 (refused by body_limit's hooks, which ran
    # before the timer's) were counted in connector_http_requests_total and missing from the durations.
    import gzip
    import io

    client = make_app(max_body_bytes=2048).test_client()
    packet = minimal_packet()
    before = scrape(client)
    assert client.post("/v1/handoffs", data=gzip.compress(json.dumps(packet).encode()), headers={
        **auth(), "Content-Encoding": "gzip"}, content_type="application/json").status_code == 415
    packet["transcript"][0]["text"] = "x" * 4096
    assert client.post("/v1/handoffs", input_stream=io.BytesIO(json.dumps(packet).encode()), headers={
        **auth(), "Transfer-Encoding": "chunked"}, content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True}).status_code == 413
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for status in ("415", "413"):
        assert grew("connector_http_requests_total", route="/v1/handoffs", method="POST", status=status) == 1
    assert grew("connector_http_request_duration_seconds_count", route="/v1/handoffs", method="POST") == 2


def test_delivery_attempts_by_target_and_outcome_and_what_waits(make_app, test_targets):  # noqa: F811
    app = make_app(targets=("preview", "broken"))
    client = app.test_client()
    before = scrape(client)
    assert post(client, minimal_packet()).status_code == 201
    after = scrape(client)
    attempts = "connector_delivery_attempts_total"
    assert value(after, attempts, target="preview", outcome="created") - value(
        before, attempts, target="preview", outcome="created") == 1
    assert value(after, attempts, target="broken", outcome="failed") - value(
        before, attempts, target="broken", outcome="failed") == 1
    # The backlog is the database's: the refused delivery waits for an admin's replay.
    assert value(after, "connector_deliveries", target="broken", state="failed") == 1
    assert value(after, "connector_deliveries", target="preview", state="failed") == 0
    assert ("connector_deliveries", (("state", "pending"), ("target", "preview"))) in after  # at 0, not absent
    assert value(after, "connector_backlog_up") == 1


def test_a_paused_target_and_the_callbacks_owed_are_shown(app, client):
    with app.extensions["connector"].db.session() as session:
        session.execute(insert(TargetPause).values(target="preview", until=utcnow() + dt.timedelta(minutes=1),
                                                   reason="429", updated_at=utcnow()))
    samples = scrape(client)
    assert value(samples, "connector_target_paused", target="preview") == 1
    assert value(samples, "connector_status_callbacks_owed", status="pending") == 0
    assert ("connector_status_callbacks_owed", (("status", "dead"),)) in samples


def test_a_scrape_while_the_database_is_away_says_so_and_still_answers(app, client, monkeypatch):
    def away(*_args, **_kwargs):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(app.extensions["connector"].outbox, "counts", away)
    samples = scrape(client)
    assert value(samples, "connector_backlog_up") == 0
    assert not any(name == "connector_deliveries" for name, _ in samples)  # unknown, not zero
    assert any(name == "connector_http_requests_total" for name, _ in samples)


@pytest.mark.parametrize(("token", "sent", "status"), [
    ("", None, 200),  # open like /readyz
    ("scrape-token-0123456789abcdef", None, 401),
    ("scrape-token-0123456789abcdef", "wrong", 401),
    ("scrape-token-0123456789abcdef", "scrape-token-0123456789abcdef", 200),
])
def test_the_metrics_token_when_set_is_required(make_app, token, sent, status):
    client = make_app(metrics_token=token).test_client()
    headers = {"Authorization": f"Bearer {sent}"} if sent else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert "CONNECTOR_METRICS_TOKEN" in response.get_json()["detail"]


def test_the_admin_token_is_not_a_metrics_token(make_app):
    from tests.conftest import ADMIN_TOKEN

    client = make_app(metrics_token="scrape-token-0123456789abcdef").test_client()
    assert client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 401


def test_a_metrics_directory_that_cannot_be_made_stops_start_up_naming_the_variable(tmp_path, monkeypatch):
    from connector import create_app
    from connector.errors import ConfigError

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "a-file" / "metrics"))
    with pytest.raises(ConfigError) as refused:
        create_app({"database_url": f"sqlite:///{tmp_path}/c.db"})
    assert refused.value.source == "PROMETHEUS_MULTIPROC_DIR" and "cannot be made" in refused.value.message


def test_a_missing_metrics_directory_is_made_so_a_command_before_the_first_run_works(tmp_path, monkeypatch):
    from connector import create_app

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "run" / "metrics"))
    create_app({"database_url": f"sqlite:///{tmp_path}/c.db"}).extensions["connector"].stop()
    assert (tmp_path / "run" / "metrics").is_dir()


def test_a_method_a_route_refuses_is_counted_under_that_route(client):
    # Counted as "(no route)", with the paths nothing serves: a client sending DELETE to
    # /v1/handoffs could not be told from a scanner's guesses.
    before = scrape(client)
    assert client.delete("/v1/handoffs", headers=auth()).status_code == 405
    after = scrape(client)
    labels = {"route": "/v1/handoffs", "method": "DELETE", "status": "405"}
    assert value(after, "connector_http_requests_total", **labels) - value(
        before, "connector_http_requests_total", **labels) == 1


def test_a_made_up_method_or_path_opens_no_series_of_its_own(client):
    client.open("/v1/handoffs", method="BREW")
    client.get("/no/such/path/hnd_123")
    samples = scrape(client)
    labels = {dict(found).get("method") for name, found in samples if name == "connector_http_requests_total"}
    assert "BREW" not in labels and "(other)" in labels
    assert not any("/no/such" in str(found) for _, found in samples)


def test_each_attempt_is_timed_by_target(client):
    count = "connector_delivery_attempt_duration_seconds_count"
    before = value(scrape(client), count, target="preview")
    post(client, minimal_packet())
    assert value(scrape(client), count, target="preview") - before == 1


def test_a_failure_to_count_changes_nothing_the_delivery_or_the_answer_does(client, monkeypatch):
    from connector import metrics

    class Broken:
        def labels(self, *_args):
            raise OSError("the metrics directory is gone")

    for name in ("REQUESTS", "DELIVERY_ATTEMPTS", "DELIVERY_SECONDS"):
        monkeypatch.setattr(metrics, name, Broken())
    response = post(client, minimal_packet())
    assert response.status_code == 201
    [ticket] = response.get_json()["tickets"]
    assert (ticket["status"], ticket["attempts"]) == ("created", 1)  # delivered once, not retried


def test_an_edit_only_the_adapter_refuses_still_lets_the_scrape_answer(app, client, monkeypatch):
    from connector.errors import ConfigError

    def refused(*_args, **_kwargs):
        raise ConfigError("mappings/zendesk.yaml: custom_fields[0]", "needs an id")

    monkeypatch.setattr(app.extensions["connector"].outbox, "counts", refused)
    samples = scrape(client)
    assert value(samples, "connector_backlog_up") == 0


def test_a_metrics_directory_this_process_cannot_write_stops_start_up(tmp_path, monkeypatch):
    from unittest import mock

    from connector.errors import ConfigError
    from connector.metrics import check_directory

    with mock.patch("os.access", return_value=False), pytest.raises(ConfigError) as refused:  # as root, mode won't do
        check_directory({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert refused.value.message == f"{str(tmp_path)!r} is not a directory this process can write"


def test_a_refused_mapping_edit_shows_in_the_metrics(make_app, tmp_path):
    """/readyz said so in its body and stayed 200: nothing a Prometheus alert could see."""
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "mappings", tmp_path / "m")
    app = make_app(mappings_dir=str(tmp_path / "m"))
    app.extensions["connector"].mapping_store.interval = 0  # look at the files on every use
    client = app.test_client()
    assert value(scrape(client), "connector_mappings_ok") == 1
    (tmp_path / "m" / "routing.yaml").write_text("version: 1\nrules: [{name: x, when: {segmnt: vip}}]\n")
    assert value(scrape(client), "connector_mappings_ok") == 0


def test_a_refused_settings_edit_shows_in_the_metrics_and_readyz(app, client, monkeypatch):
    """A reload (SIGHUP) refusing `.env` said so in one log line only: /readyz stayed ready with no
    word of it, and the next restart stopped on the file."""
    from connector import settings
    from connector.errors import ConfigError

    assert value(scrape(client), "connector_settings_ok") == 1
    assert client.get("/readyz").get_json()["checks"]["settings"] == {"ok": True}
    # What gunicorn.conf.py leaves the workers it forks after the refusal.
    monkeypatch.setattr(settings, "REFUSED_EDIT", ConfigError("CONNECTOR_MAX_ATTEMPTS", "must be a whole number, "
                                                                                         "got 'abc'"))
    assert value(scrape(client), "connector_settings_ok") == 0
    ready = client.get("/readyz")
    assert ready.status_code == 200  # the settings in use still serve, as after a refused mapping edit
    # Named, not quoted: /readyz is open to anyone and a refusal may quote the value (a review).
    assert ready.get_json()["checks"]["settings"] == {
        "ok": False, "serving": "the settings in use", "variable": "CONNECTOR_MAX_ATTEMPTS"}
