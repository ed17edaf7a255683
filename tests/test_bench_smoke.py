"""A smoke run of the benchmark harness (bench/): one scenario, a few handoffs, seconds.

It proves the pieces fit — loopback fakes in their own process, gunicorn with a fresh database,
the load driver, RESULTS.md and the plot — and that no child process outlives the run. It measures
nothing: `make bench` does.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("trustme") is None,
                                reason="the loopback fakes need trustme (requirements-dev.txt)")


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid:
                found |= {int(entry.name)} | _descendants(int(entry.name))
    return found


def test_quick_run_writes_results_and_leaves_no_process(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--scenarios", "latency", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "GUNICORN_"))},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "| cores (nproc) |" in results
    assert "| 1 added latency | p50, one target (Zendesk) |" in results
    assert "scenario failed" not in results
    assert "| 1 added latency | p50, one target (Zendesk), the floor (`floor_app.py`) |" in results
    assert re.search(r"the floor answered 201: \d+ and added", results)  # every call, and only 201s
    assert "### Round 2" in results  # the hand-kept history of fixes (bench/FIXES.md) survives every run
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not _descendants(os.getpid()), "a benchmark child process is still running"


def test_alternating_calls_take_turns_per_client_and_split_by_side():
    from bench import driver

    class Conn:
        def __init__(self, name: str):
            self.name, self.closed = name, False

        def close(self) -> None:
            self.closed = True

    calls: list[tuple[str, int]] = []
    opened: list[Conn] = []

    def side(name: str, status: int, fail_on: int | None = None) -> tuple:
        def call(conn: Conn, n: int) -> int:
            calls.append((conn.name, n))
            if n == fail_on:
                raise ConnectionResetError("dropped")
            return status

        return (lambda: opened.append(Conn(name)) or opened[-1], call)

    both = driver.Alternating(a=side("a", 201), b=side("b", 202, fail_on=3))
    result = driver.run(both.connect, both, clients=1, total=6)
    assert calls == [("a", 0), ("b", 1), ("a", 2), ("b", 3), ("a", 4), ("b", 5)]
    # the failed call closed b's connection only; b's next turn opened another, a kept its own
    assert [(c.name, c.closed) for c in opened] == [("a", True), ("b", True), ("b", True)]
    assert result.of("a").statuses() == {201: 3} and result.of("b").statuses() == {0: 1, 202: 2}
    assert result.errors == ["ConnectionResetError: dropped"]

    # clients start on different sides, so both sides run at any moment
    starts = driver.Alternating(a=side("a", 201), b=side("b", 202))
    first, second = starts.connect(), starts.connect()
    calls.clear()
    starts(first, 10), starts(second, 11)
    assert [name for name, _ in calls] == ["a", "b"]


def test_a_warm_up_call_opens_a_new_connection_each_time_so_every_worker_gets_some():
    """A keep-alive connection stays with the gunicorn worker that accepted it: the warm-up's calls
    (`reconnect=True`) each take a new one; measured calls keep theirs."""
    import http.server

    from bench import driver
    from tests.fakes.serving import serve_in_thread

    peers: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            peers.append(self.client_address[1])
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        serve_in_thread(server)
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            for reconnect, connections in ((True, 3), (False, 1)):
                peers.clear()
                call = driver.Handoffs(url, "t", reconnect=reconnect)
                result = driver.run(call.connect, call, clients=1, total=3)
                assert result.statuses() == {201: 3}
                assert len(set(peers)) == connections, (reconnect, peers)
        finally:
            server.shutdown()


@pytest.mark.parametrize(("argv", "committed"), [
    ([], True),
    (["--keep-work"], True),
    (["--scenarios", "latency"], False),
    (["--quick"], False),
    (["--latency-ms", "5"], False),
    (["--burst-handoffs", "2000", "--burst-per-minute", "1200"], False),
])
def test_only_a_whole_default_run_writes_where_the_committed_results_are(argv, committed):
    from bench.run import _committed_kind, _parser

    parser = _parser()
    assert _committed_kind(parser, parser.parse_args(argv)) is committed
