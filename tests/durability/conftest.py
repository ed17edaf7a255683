"""Durability harness: PostgreSQL, the loopback vendors, connector processes, and bounded waits.

Every scenario runs against the real PostgreSQL (`postgres_url`: a fresh database per test; CI
fails when it is unreachable) and the stateful loopback fakes of `tests.fakes.loopback`. Processes
are started with the same commands operators use (`gunicorn -c gunicorn.conf.py wsgi:app`,
`flask --app wsgi connector worker`) and are always killed in the fixture's teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.conftest import ADMIN_TOKEN, BOT_KEY
from tests.factories import minimal_packet
from tests.fakes.loopback import HANDOFF_ID_FIELD, Behaviour, Loopback

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Short retry settings: a scenario's whole retry story fits in seconds.
FAST = {
    "CONNECTOR_RETRY_BASE_S": "0.05",
    "CONNECTOR_RETRY_MAX_S": "0.5",
    "CONNECTOR_POLL_INTERVAL_S": "0.05",
    "CONNECTOR_VENDOR_TIMEOUT_S": "1",
    "CONNECTOR_MAX_ATTEMPTS": "1000",
    "CONNECTOR_SYNC_BUDGET_MS": "0",
    "CONNECTOR_LOG_LEVEL": "INFO",
}
DONE = ("created", "updated")
CHAOS = "test_500_handoffs_through_a_third_of_calls_failing"
BESIDE_CHAOS = ("test_dead_and_replay.py", "test_callback_processes.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs these scenarios in two pytest-xdist workers (`--dist loadgroup`): the
    500-handoff chaos run (~2 of ~6 minutes' work) with the replay and callback scenarios in one,
    every other scenario one after another in the other, so both end at about the same time.
    Each keeps its processes to itself; their waits are bounds, not timings."""
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == here:
            beside_chaos = item.name == CHAOS or path.name in BESIDE_CHAOS
            item.add_marker(pytest.mark.xdist_group("chaos" if beside_chaos else "scenarios"))


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    """Poll `predicate` until it is truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def packet(n: int, tag: str = "d") -> dict[str, Any]:
    """A small, distinct handoff: its own conversation and customer, so no two share a ticket."""
    return minimal_packet(conversation={"id": f"conv-{tag}-{n}"}, customer={"email": f"c{n}.{tag}@example.net",
                                                                          "name": f"Customer {n}"})


# ---- the database, seen from outside ---------------------------------------------------------


class Db:
    """Direct SQL on the test database (what an operator would query)."""

    def __init__(self, url: str):
        self.url = url.replace("postgresql+psycopg", "postgresql")

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return list(conn.execute(sql, args).fetchall())

    def states(self) -> dict[str, int]:
        return dict(self.rows("SELECT state, count(*) FROM deliveries GROUP BY state"))

    def unfinished(self) -> int:
        return self.rows("SELECT count(*) FROM deliveries WHERE state NOT IN ('created', 'updated')")[0][0]

    def handoff_ids(self) -> set[str]:
        return {row[0] for row in self.rows("SELECT id FROM handoffs")}

    def delivered(self) -> int:
        return self.rows("SELECT count(*) FROM deliveries WHERE state IN ('created', 'updated')")[0][0]


@pytest.fixture
def db(postgres_url: str) -> Db:
    return Db(postgres_url)


@pytest.fixture
def mappings_dir(tmp_path: Path) -> str:
    """The shipped mappings, with Salesforce told which Case field carries the handoff id."""
    target = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", target)
    path = target / "salesforce.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["handoff_id_field"] = HANDOFF_ID_FIELD
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(target)


@pytest.fixture
def vendors() -> Iterator[Loopback]:
    with Loopback(Behaviour(seed=11)) as fakes:
        yield fakes


# ---- connector processes -------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def delivered_here(self) -> int:
        return sum(1 for line in self.log().splitlines() if '"message": "delivered"' in line)

    def alive(self) -> bool:
        return self.popen.poll() is None


class Processes:
    """Starts connector processes and guarantees they die with the test."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.tmp_path = tmp_path
        self.env = env
        self.procs: list[Proc] = []

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.tmp_path / f"{name}-{len(self.procs)}.log"
        handle = log_path.open("wb")
        try:
            popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # its own group: kill reaches gunicorn's workers
        finally:
            handle.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def worker(self, **env: str) -> Proc:
        proc = self._spawn("worker", [str(BIN / "flask"), "--app", "wsgi", "connector", "worker"],
                           {**self.env, **env})
        wait_until(lambda: "running" in proc.log() or not proc.alive(), 30, "the worker to start")
        assert proc.alive(), proc.log()
        return proc

    def web(self, workers: int = 1, **env: str) -> Proc:
        port = free_port()
        argv = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                "--access-logfile", "/dev/null", "wsgi:app"]
        proc = self._spawn("web", argv, {**self.env, **env})
        proc.url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.alive(), proc.log()
            try:
                with urllib.request.urlopen(proc.url + "/readyz", timeout=2) as response:
                    return response.status == 200
            except (OSError, urllib.error.URLError):
                return False

        wait_until(ready, 30, "the web process to be ready")
        return proc

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "flask"), "--app", "wsgi", "connector", *args], cwd=ROOT,
                              env={**self.env, **env}, capture_output=True, text=True, timeout=60)

    def signal(self, proc: Proc, sig: int) -> None:
        if proc.alive():
            os.killpg(proc.popen.pid, sig)

    def stop(self, proc: Proc, timeout_s: float = 30) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit code."""
        self.signal(proc, signal.SIGTERM)
        try:
            return proc.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(proc, signal.SIGKILL)
            return proc.popen.wait(timeout=10)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.alive():
                self.signal(proc, signal.SIGKILL)
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def connector_env(postgres_url: str, vendors: Loopback, mappings_dir: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CONNECTOR_", "ZENDESK_",
                                                                                    "SALESFORCE_", "SLACK_",
                                                                                    "PROMETHEUS_"))}
    env.update(vendors.env())
    env.update(FAST)
    env.update({
        "CONNECTOR_DATABASE_URL": postgres_url,
        "CONNECTOR_MAPPINGS_DIR": mappings_dir,
        "CONNECTOR_BOT_KEYS": f"support-bot:{BOT_KEY}",
        "CONNECTOR_ADMIN_TOKEN": ADMIN_TOKEN,
        # A developer's .env must not reach these processes: not the app's read, nor the flask CLI's.
        "CONNECTOR_ENV_FILE": "",
        "FLASK_SKIP_DOTENV": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture
def processes(tmp_path: Path, connector_env: dict[str, str]) -> Iterator[Processes]:
    # Their temporary files under the test's own directory: a gunicorn these tests kill (SIGKILL runs no
    # exit handler) left its /tmp/connector-metrics-* folder behind, dozens a run.
    procs = Processes(tmp_path, {**connector_env, "TMPDIR": str(tmp_path)})
    try:
        yield procs
    finally:
        procs.kill_all()


# ---- talking to a web process --------------------------------------------------------------


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), json.loads(err.read() or b"null")


def post_handoffs(base_urls: list[str], count: int, tag: str, threads: int = 8,
                  extra: dict[str, Any] | None = None) -> list[str]:
    """POST `count` handoffs spread over `base_urls` (`extra`: top-level packet fields to add); the
    handoff ids, in order."""

    def one(n: int) -> str:
        url = base_urls[n % len(base_urls)]
        status, _, body = http("POST", url + "/v1/handoffs", {**packet(n, tag), **(extra or {})},
                               {"Authorization": f"Bearer {BOT_KEY}", "Idempotency-Key": f"{tag}-{n}"})
        assert status in (200, 201, 202), (status, body)
        return body["id"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


def assert_exactly_once(vendors: Loopback, handoff_ids: list[str] | set[str]) -> None:
    """One ticket, one case, one top-level Slack alert per handoff; nothing else, nothing twice."""
    counts = vendors.counts()
    wanted = {hid: 1 for hid in handoff_ids}
    for vendor, made in counts.items():
        missing = sorted(set(wanted) - set(made))
        doubled = {hid: n for hid, n in made.items() if n != 1}
        strangers = sorted(set(made) - set(wanted))
        assert not missing and not doubled and not strangers, (
            f"{vendor}: {len(missing)} missing (e.g. {missing[:3]}), doubled {dict(list(doubled.items())[:5])}, "
            f"unknown {strangers[:3]}")
    assert vendors.duplicates() == []
