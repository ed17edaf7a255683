"""Child processes of a benchmark run: the vendor fakes and the connector under gunicorn.

Every child starts in its own session (process group) and is stopped by `stop_group`: SIGTERM to
the group, then SIGKILL after a grace period. Callers use them as context managers, so a failing
scenario still leaves no process behind. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BOT_ID, BOT_KEY = "support-bot", "bench-key-0123456789abcdefghijklmnop"
PG_ADMIN_URL = os.environ.get("CONNECTOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """End `proc` and everything it started (its own process group), by its id only."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_for(check: Any, timeout_s: float, what: str, proc: subprocess.Popen, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready\n{tail}")
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout_s:.0f} s")


# ---- the fakes ------------------------------------------------------------------------------


@dataclass
class Fakes:
    """The loopback vendors of `tests/fakes/loopback.py`, run in a child process."""

    remote: Any

    def url(self, vendor: str) -> str:
        return str(self.remote.urls[vendor])

    def stats(self, vendor: str) -> dict[str, Any]:
        """Calls by route, 429 answers, handoffs served and duplicates, for one vendor."""
        raw = self.remote.stats()[vendor]
        return {"calls": sum(raw["calls"].values()), "by_route": raw["calls"],
                "rate_limited": raw["faults"].get("rate_limit", 0) + raw["faults"].get("429", 0),
                "handoffs": len(raw["per_handoff"]), "duplicates": len(raw["duplicates"])}

    def connector_env(self) -> dict[str, str]:
        """The vendor variables that point the connector at these fakes (and trust their CA)."""
        return {k: v for k, v in self.remote.env().items() if k != "CONNECTOR_TARGETS"}


@contextlib.contextmanager
def fakes(work: Path, latency_ms: float, rate_limited: str | None = None,
          per_minute: int | None = None) -> Iterator[Fakes]:
    """Zendesk, Salesforce (TLS) and Slack on loopback, each call taking `latency_ms`; `rate_limited`
    names the one vendor that allows only `per_minute` calls per clock minute (429 + Retry-After)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.fakes.loopback import Behaviour, Loopback

    remote = Loopback.spawn(Behaviour(latency_s=latency_ms / 1000), python=sys.executable, timeout_s=30)
    try:
        if rate_limited:
            remote.configure(rate_limited, rate_limit_per_minute=per_minute)
        yield Fakes(remote)
    finally:
        remote.stop()


# ---- databases ------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, work: Path) -> Iterator[str]:
    """A fresh, empty database: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        path = work / f"connector-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(PG_ADMIN_URL).set(drivername="postgresql")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_reachable() -> bool:
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(PG_ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:
        return False


# ---- the connector --------------------------------------------------------------------------


@dataclass
class Connector:
    proc: subprocess.Popen
    port: int
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status_of(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)

    def worker_rss_kib(self) -> dict[int, int]:
        return {pid: rss_kib(pid) for pid in self.worker_pids()}

    def worker_cpu_s(self) -> dict[int, float]:
        """CPU seconds (user + system) each worker has used so far."""
        return {pid: cpu_s(pid) for pid in self.worker_pids()}


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, counted in ticks


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def server_settings(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """gunicorn.conf.py's workers and threads as it computes them under `env` (one source of truth)."""
    import runpy
    from unittest import mock

    with mock.patch.dict(os.environ, dict(env or {}), clear=env is not None):
        conf = runpy.run_path(str(REPO / "gunicorn.conf.py"))
    return {"workers": conf["workers"], "threads": conf["threads"]}


def connector_env(database_url: str, targets: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Production settings (gunicorn.conf.py and the .env.example defaults) plus what a run varies."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CONNECTOR_", "ZENDESK_", "SALESFORCE_", "SLACK_", "GUNICORN_"))}
    env.update({
        "CONNECTOR_DATABASE_URL": database_url,
        "CONNECTOR_TARGETS": targets,
        "CONNECTOR_BOT_KEYS": f"{BOT_ID}:{BOT_KEY}",
        "CONNECTOR_ENV_FILE": "",  # a developer's .env (credentials, targets) stays out of the run
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.update(extra)
    return env


@contextlib.contextmanager
def connector(work: Path, database_url: str, targets: str, extra: Mapping[str, str] | None = None,
              startup_s: float = 60.0, app: str = "wsgi:app") -> Iterator[Connector]:
    """`gunicorn -c gunicorn.conf.py wsgi:app` (or `app`, such as `bench.floor_app:app`) on a free port,
    up when /healthz answers 200 and every worker is running (the schema is migrated before workers
    start). The intake scenario asks /readyz too, and RESULTS.md says so if it did not answer 200
    while handoffs were accepted."""
    port = free_port()
    env = connector_env(database_url, targets, {"CONNECTOR_BIND": f"127.0.0.1:{port}", **(extra or {})})
    log = work / f"gunicorn-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],  # noqa: S603
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait_for(ready, startup_s, "gunicorn", proc, log)
        expected = server_settings(env)["workers"]
        _wait_for(lambda: len(children(proc.pid)) >= expected, 30, "gunicorn workers", proc, log)
        yield Connector(proc, port, log, env)
    finally:
        stop_group(proc, grace_s=15)
