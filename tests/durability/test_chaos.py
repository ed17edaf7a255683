"""Chaos: a third of all vendor calls fail (5xx, 429 with Retry-After, timeouts after the vendor
acted, dropped connections), and every handoff still ends with exactly one ticket, one case and
one top-level Slack alert."""

from __future__ import annotations

import json
import time

import pytest

from connector import create_app
from tests.conftest import BOT_KEY, auth
from tests.durability.conftest import assert_exactly_once, http, packet, post_handoffs, wait_until

pytestmark = [pytest.mark.postgres]

FAST_SETTINGS = {"retry_base_s": 0.05, "retry_max_s": 0.5, "poll_interval_s": 0.05, "vendor_timeout_s": 1,
                 "max_attempts": 1000, "sync_budget_ms": 0, "delivery_threads": 48,
                 "log_level": "ERROR"}


def _app(postgres_url, mappings_dir, vendors, **overrides):
    app = create_app({"database_url": postgres_url, "mappings_dir": mappings_dir,
                      "bot_keys": (("support-bot", BOT_KEY),), **vendors.settings(), **FAST_SETTINGS, **overrides})
    services = app.extensions["connector"]
    services.db.upgrade()
    return app, services


def _run(postgres_url, mappings_dir, vendors, db, count, deadline_s):
    app, services = _app(postgres_url, mappings_dir, vendors)
    try:
        services.start_loop(services.settings.poll_interval_s)
        client = app.test_client()
        ids = []
        for n in range(count):
            response = client.post("/v1/handoffs", data=json.dumps(packet(n, "chaos")), headers=auth(),
                                   content_type="application/json")
            assert response.status_code in (201, 202), response.get_json()
            ids.append(response.get_json()["id"])
        wait_until(lambda: db.unfinished() == 0, deadline_s, f"all deliveries done (states: {db.states()})", 0.5)
        statuses = {client.get(f"/v1/handoffs/{hid}", headers=auth()).get_json()["status"] for hid in ids[:20]}
        return ids, statuses
    finally:
        services.stop()


def test_a_few_handoffs_reach_every_loopback_vendor_once(postgres_url, mappings_dir, db, vendors, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", vendors.ca_file)
    ids, statuses = _run(postgres_url, mappings_dir, vendors, db, 5, 30)
    assert statuses == {"delivered"}
    assert_exactly_once(vendors, ids)


@pytest.mark.slow
def test_500_handoffs_through_a_third_of_calls_failing(processes, vendors, db):
    """A web process (embedded loop) and a worker; a third of the vendor calls fail at random."""
    quiet = {"CONNECTOR_LOG_LEVEL": "WARNING", "CONNECTOR_DELIVERY_THREADS": "32"}
    web = processes.web(**quiet)
    processes.worker(**quiet)
    # 429s pause the whole target (as the vendor asks), so they are a smaller share with a short
    # Retry-After; timeouts hold a delivery thread for the whole client timeout (1 s).
    vendors.configure(failure_rate=0.33, failures={"5xx": 3, "429": 1, "timeout": 1, "drop": 2}, retry_after_s=0.05,
                      stall_s=1.3, latency_s=(0.0, 0.01), seed=20261120)
    started = time.monotonic()
    ids = post_handoffs([web.url], 500, "chaos")
    intake = time.monotonic() - started
    # A bound, not a timing (~75 s alone; `make test` runs the other scenarios beside it).
    wait_until(lambda: db.unfinished() == 0, 300, f"all deliveries done (states: {db.states()})", 0.5)
    elapsed = time.monotonic() - started
    stats = vendors.stats()
    assert db.states() == {"created": 1500}
    assert len(set(ids)) == 500
    statuses = {http("GET", f"{web.url}/v1/handoffs/{hid}", headers=auth())[2]["status"] for hid in ids[:25]}
    assert statuses == {"delivered"}
    assert_exactly_once(vendors, ids)
    faults = {name: s["faults"] for name, s in stats.items()}
    # The chaos really happened, of every kind, at every vendor.
    for name, kinds in faults.items():
        assert {"5xx", "429", "timeout", "drop", "drop_before"} <= set(kinds), (name, kinds)
    calls = {name: sum(s["calls"].values()) for name, s in stats.items()}
    print(f"\nchaos: 500 handoffs in {elapsed:.1f} s (intake {intake:.1f} s); calls {calls}; faults {faults}")
