"""Processes dying, stopping and sharing the outbox on PostgreSQL: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import auth
from tests.durability.conftest import assert_exactly_once, http, post_handoffs, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _queue_while_vendors_down(processes, vendors, db, count: int, tag: str) -> list[str]:
    """Handoffs accepted by a web process while every vendor is down; then the web process stops."""
    vendors.configure(down=True)
    web = processes.web()
    ids = post_handoffs([web.url], count, tag)
    wait_until(lambda: db.rows("SELECT count(*) FROM deliveries WHERE attempts = 0")[0][0] == 0, 30,
               "every delivery to have failed once")
    assert processes.stop(web) == 0
    assert db.unfinished() == 3 * count
    return ids


def test_kill_9_of_a_worker_mid_delivery_then_a_restart(processes, vendors, db):
    ids = _queue_while_vendors_down(processes, vendors, db, 100, "kill")
    # Slow vendors that sometimes act and then time out: the kill lands with calls in flight.
    vendors.configure(down=False, latency_s=(0.02, 0.15), failure_rate=0.15,
                      failures={"timeout": 1, "5xx": 1, "drop": 1}, stall_s=1.3, seed=99)
    worker = processes.worker(CONNECTOR_LEASE_S="3", CONNECTOR_DELIVERY_THREADS="16")
    wait_until(lambda: db.delivered() >= 60, 60, "a fifth of the deliveries", 0.05)
    processes.signal(worker, signal.SIGKILL)
    worker.popen.wait(timeout=10)
    held = db.rows("SELECT count(*) FROM deliveries WHERE state = 'pending' AND lease_owner IS NOT NULL")[0][0]
    delivered_at_kill = db.delivered()
    assert delivered_at_kill < 300 and held > 0, (delivered_at_kill, held)  # it died with work in hand
    processes.worker(CONNECTOR_LEASE_S="3", CONNECTOR_DELIVERY_THREADS="32")
    wait_until(lambda: db.unfinished() == 0, 80, f"every delivery after the restart ({db.states()})", 0.5)
    assert db.states() == {"created": 300}
    assert_exactly_once(vendors, ids)


def test_sigterm_finishes_or_releases_claimed_work(processes, vendors, db):
    ids = _queue_while_vendors_down(processes, vendors, db, 60, "term")
    vendors.configure(down=False, latency_s=(0.05, 0.2), seed=5)
    # A long lease: if SIGTERM left leases behind, nobody could take them within this test.
    worker = processes.worker(CONNECTOR_LEASE_S="600", CONNECTOR_DELIVERY_THREADS="8")
    wait_until(lambda: db.delivered() >= 30, 60, "some deliveries", 0.05)
    started = time.monotonic()
    assert processes.stop(worker, timeout_s=30) == 0, worker.log()[-2000:]
    assert time.monotonic() - started < 15
    assert "leases released" in worker.log()
    held = db.rows("SELECT count(*) FROM deliveries WHERE state = 'pending' AND lease_owner IS NOT NULL")[0][0]
    assert held == 0
    assert db.unfinished() > 0  # stopped mid-way
    processes.worker(CONNECTOR_LEASE_S="600", CONNECTOR_DELIVERY_THREADS="8")
    wait_until(lambda: db.unfinished() == 0, 60, f"the rest, by the next worker ({db.states()})", 0.5)
    assert_exactly_once(vendors, ids)


def test_pending_deliveries_resume_after_a_restart(processes, vendors, db):
    vendors.configure(down=True)
    web = processes.web()
    ids = post_handoffs([web.url], 30, "resume")
    wait_until(lambda: db.rows("SELECT count(*) FROM deliveries WHERE attempts = 0")[0][0] == 0, 30,
               "every delivery to have failed once")
    # Operators see the backlog per target.
    status, _, body = http("GET", web.url + "/readyz")
    assert status == 200, body
    for target in ("zendesk", "salesforce", "slack"):
        counts = body["checks"]["deliveries"][target]
        assert counts["pending"] + counts["retrying"] == 30 and counts["retrying"] > 0, (target, counts)
    assert processes.stop(web) == 0
    vendors.configure(down=False)
    web = processes.web()
    wait_until(lambda: db.unfinished() == 0, 60, f"the pending deliveries to resume ({db.states()})", 0.5)
    assert_exactly_once(vendors, ids)
    assert {http("GET", f"{web.url}/v1/handoffs/{hid}", headers=auth())[2]["status"] for hid in ids} == {"delivered"}
    status, _, body = http("GET", web.url + "/readyz")
    assert status == 200 and all(sum(c.values()) == 0 for c in body["checks"]["deliveries"].values()), body


def test_two_web_processes_and_two_workers_share_the_load(processes, vendors, db):
    vendors.configure(failure_rate=0.2, failures={"5xx": 2, "timeout": 1, "drop": 1}, latency_s=(0.0, 0.05),
                      stall_s=1.3, seed=3)
    threads = {"CONNECTOR_DELIVERY_THREADS": "8"}
    webs = [processes.web(**threads), processes.web(**threads)]
    workers = [processes.worker(**threads), processes.worker(**threads)]
    ids = post_handoffs([web.url for web in webs], 200, "shared")
    wait_until(lambda: db.unfinished() == 0, 80, f"every delivery ({db.states()})", 0.5)
    assert db.states() == {"created": 600}
    assert_exactly_once(vendors, ids)
    # A process logs "delivered" just after its commit, so the last lines may trail the database by a moment.
    def logged() -> list[int]:
        return [proc.delivered_here() for proc in (*webs, *workers)]
    wait_until(lambda: sum(logged()) >= 600, 10, "every delivery's log line", 0.1)
    per_process = logged()
    assert sum(per_process) == 600, per_process  # each delivery recorded once, by one process
    assert sum(1 for n in per_process if n) >= 3, per_process  # and the work was shared


def test_metrics_add_up_every_process_that_shares_their_directory(processes, vendors, db, tmp_path):
    """gunicorn's workers and a `connector worker` write their counts to one directory; a scrape of
    any worker adds them all up. A file an earlier run left there is removed when gunicorn starts."""
    import os
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    shared = tmp_path / "metrics"
    shared.mkdir()
    stale = shared / "counter_4194304.db"
    stale.write_bytes(b"left by an earlier run")  # unreadable: a scrape would fail on it
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared), "CONNECTOR_DELIVERY_THREADS": "4"}
    web = processes.web(workers=2, **env)
    processes.worker(**env)
    post_handoffs([web.url], 30, "metrics")
    wait_until(lambda: db.unfinished() == 0, 60, f"every delivery ({db.states()})", 0.2)
    assert not stale.exists()

    def totals() -> tuple[float, float]:
        with urllib.request.urlopen(web.url + "/metrics", timeout=10) as response:
            families = list(text_string_to_metric_families(response.read().decode()))
        samples = [s for family in families for s in family.samples]
        posted = sum(s.value for s in samples if s.name == "connector_http_requests_total"
                     and s.labels["route"] == "/v1/handoffs" and s.labels["method"] == "POST")
        made = sum(s.value for s in samples if s.name == "connector_delivery_attempts_total"
                   and s.labels["outcome"] == "created")
        return posted, made

    expected = (30, db.delivered())
    wait_until(lambda: totals() == expected, 10, f"the scrape to count {expected} (last: {totals()})", 0.2)
    assert [totals() for _ in range(6)] == [expected] * 6  # whichever worker answers
    writers = {name.rsplit("_", 1)[-1] for name in os.listdir(shared)}
    assert len(writers) >= 2, writers  # more than one process wrote its counts there


def test_a_worker_replaced_while_a_mapping_edit_is_refused_keeps_serving(processes, vendors, mappings_dir, db):
    """gunicorn stops the whole service when a worker cannot boot: one refused mapping edit and one
    dead worker (a crash, an OOM kill) took everything down. The new worker serves the set its
    master last checked, and says the edit is refused; a restart of the service would still stop."""
    import subprocess
    from pathlib import Path

    web = processes.web(workers=1)
    routing = Path(mappings_dir) / "routing.yaml"
    # A good edit the worker takes up live, then a bad one: the new worker serves the good one, not
    # the set the service started with.
    good = routing.read_text(encoding="utf-8").replace("  - name: default", "  - name: edited-live\n    then: {team: billing}")
    routing.write_text(good, encoding="utf-8")
    wait_until(lambda: "mappings reloaded" in web.log(), 30, "the good edit taken up")
    wait_until(lambda: "mappings kept for the workers gunicorn starts next" in web.log(), 30,
               "the good edit kept by the master")
    routing.write_text(good.replace("\nrules:", "\nrulez:", 1), encoding="utf-8")
    wait_until(lambda: "mappings edit refused; keeping the last good set" in web.log(), 30, "the edit refused")
    [first] = subprocess.run(["pgrep", "-P", str(web.popen.pid)], capture_output=True, text=True).stdout.split()
    os.kill(int(first), signal.SIGKILL)

    def replaced() -> bool:
        assert web.alive(), web.log()  # the master must not stop
        found = subprocess.run(["pgrep", "-P", str(web.popen.pid)], capture_output=True, text=True).stdout.split()
        return found not in ([], [first]) and "serving the set gunicorn last checked" in web.log()

    wait_until(replaced, 30, "a new worker booted on the inherited set")
    status, _, ready = http("GET", web.url + "/readyz")
    refused = ready["checks"]["mappings"]
    assert status == 200 and refused["ok"] is False and "routing.yaml" in refused["where"]
    ids = post_handoffs([web.url], 3, "inherited")
    _, _, answer = http("GET", f"{web.url}/v1/handoffs/{ids[0]}", headers=auth())
    assert answer["assignment"]["rule"] == "edited-live" and answer["assignment"]["team"] == "billing"
    wait_until(lambda: db.delivered() >= 9, 30, "the three handoffs delivered to every target")
    assert_exactly_once(vendors, ids)
