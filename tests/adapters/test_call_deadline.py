"""Every vendor call has a deadline for the whole of it and a cap on its answer (`call_deadline`):
a vendor (or a proxy before it) dripping its answer a byte at a time, each byte in time for the read
timeout, held a delivery thread for as long as it dripped, and an answer of any size was read whole.
Faked with a loopback server, since the point is what happens on a real socket."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from adapters import call_deadline
from adapters.call_deadline import AnswerTooLarge, CutOff
from adapters.errors import OutcomeUnknown, TransientError
from adapters.salesforce_client import VendorSession, _request_left
from adapters.slack import SlackAdapter
from adapters.zendesk import ZendeskAdapter
from adapters.zendesk_http import ZendeskSession
from connector.settings import Settings
from tests.factories import make_context
from tests.fakes.serving import serve_in_thread


class _Vendor:
    """Answers every request as `mode` says: "drip", a status line a byte every 0.2 s (for a minute
    at most); "huge", `size` bytes with `status`; else a small JSON object — over kept-alive
    connections. Counts the connections it accepted."""

    def __init__(self) -> None:
        self.connections, self.mode, self.size, self.status = 0, "ok", 0, 200
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                vendor.connections += 1

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if vendor.mode == "drip":
                    for byte in b"HTTP/1.1 200 OK\r\n"[: 60 * 5]:
                        try:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.2)
                    return
                body = b"x" * vendor.size if vendor.mode == "huge" else b'{"ok": true, "ticket": {"id": 1}}'
                self.send_response(vendor.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> _Vendor:
        serve_in_thread(self.server)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vendor() -> Iterator[_Vendor]:
    with _Vendor() as fake:
        yield fake


@pytest.mark.parametrize("session", [VendorSession(1), ZendeskSession("unused")], ids=["salesforce", "zendesk"])
def test_a_dripped_answer_is_cut_off_at_the_calls_deadline(vendor: _Vendor, session: requests.Session) -> None:
    vendor.mode = "drip"
    started = time.monotonic()
    with pytest.raises(CutOff, match=r"within 1 s \(cut off\)"):
        session.get(vendor.url, timeout=0.5)  # each byte in time for the 0.5 s read timeout
    assert time.monotonic() - started < 1 + 2 * call_deadline.TICK_S + 0.5  # not the minute it drips for
    assert _request_left(CutOff("x"))  # Salesforce: it may have acted, as after any read timeout
    vendor.mode = "ok"
    assert session.get(vendor.url, timeout=0.5).json()["ok"]  # the session goes on


def test_an_answer_over_the_cap_is_not_read(vendor: _Vendor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_deadline, "MAX_ANSWER_BYTES", 1000)
    session, vendor.mode, vendor.size = VendorSession(5), "huge", 1000
    assert len(session.get(vendor.url).content) == 1000
    vendor.size = 1001
    with pytest.raises(AnswerTooLarge, match="more than 1000 bytes"):
        session.get(vendor.url)


def test_a_kept_alive_connection_serves_the_next_call_after_the_deadline_of_the_last(vendor: _Vendor) -> None:
    session = ZendeskSession("unused")
    assert session.get(vendor.url, timeout=0.1).json()["ok"]
    time.sleep(0.2 + 2 * call_deadline.TICK_S)  # the first call's deadline long past
    assert session.get(vendor.url, timeout=5).json()["ok"]
    assert vendor.connections == 1  # the same connection, not cut by the first call's watch


def test_a_connection_back_in_the_pool_is_not_cut_when_the_call_that_read_it_runs_out_of_time(
        vendor: _Vendor, monkeypatch: pytest.MonkeyPatch) -> None:
    # The answer read, its connection goes back to the pool, where another thread's call may take
    # it; if the first call's deadline then passes, its watch must no longer hold that connection.
    build, late = call_deadline.WatchedAdapter.build_response, [True]

    def late_after_reading(self, req, resp):  # type: ignore[no-untyped-def]
        response = build(self, req, resp)  # read whole: the connection is back in the pool
        if late.pop():
            time.sleep(0.1 + 2 * call_deadline.TICK_S)  # the call's deadline (0.1 s) passes
        return response

    monkeypatch.setattr(call_deadline.WatchedAdapter, "build_response", late_after_reading)
    session = ZendeskSession("unused")
    with pytest.raises(CutOff):
        session.get(vendor.url, timeout=0.05)
    late.append(False)
    assert session.get(vendor.url, timeout=5).json()["ok"]
    assert vendor.connections == 1  # the pooled connection served it, not shut by the first watch


def test_a_zendesk_create_left_dripping_is_an_unknown_outcome_the_retry_looks_for(vendor: _Vendor) -> None:
    settings = Settings(zendesk_subdomain="acme", zendesk_email="bot@acme.example", zendesk_api_token="t",
                        zendesk_base_url=vendor.url, vendor_timeout_s=1)
    adapter, vendor.mode = ZendeskAdapter(settings, {}), "drip"
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown, match=r"cut off"):
        adapter.send_create({"ticket": {"subject": "x", "comment": {"body": "y"}}}, make_context(target="zendesk"))
    assert time.monotonic() - started < 2 + 2 * call_deadline.TICK_S + 0.5


def _slack(vendor: _Vendor) -> SlackAdapter:
    return SlackAdapter(Settings(slack_bot_token="xoxb-test", slack_api_url=f"{vendor.url}/api/",
                                 vendor_timeout_s=1), {})


def test_a_slack_post_left_dripping_is_cut_off_as_an_unknown_outcome(vendor: _Vendor) -> None:
    vendor.mode, started = "drip", time.monotonic()
    with pytest.raises(OutcomeUnknown, match=r"cut off"):
        _slack(vendor)._call("chat_postMessage", acts=True, channel="C1", text="hi")
    assert time.monotonic() - started < 2 + 2 * call_deadline.TICK_S + 0.5
    with pytest.raises(TransientError, match=r"cut off"):  # a read: only retried
        _slack(vendor)._call("conversations_history", channel="C1")


@pytest.mark.parametrize("status", [200, 500])
def test_a_slack_answer_over_the_cap_is_not_read(vendor: _Vendor, monkeypatch: pytest.MonkeyPatch, status: int):
    monkeypatch.setattr(call_deadline, "MAX_ANSWER_BYTES", 1000)
    vendor.mode, vendor.size, vendor.status = "huge", 5000, status
    with pytest.raises(OutcomeUnknown, match="over 1000 bytes"):  # an error's body too
        _slack(vendor)._call("chat_postMessage", acts=True, channel="C1", text="x")



def test_a_forked_worker_runs_a_watchdog_of_its_own(vendor: _Vendor) -> None:
    # gunicorn forks its workers: the parent's watchdog thread is not in the child.
    assert VendorSession(1).get(vendor.url).json()["ok"]  # the parent's watchdog is running
    vendor.mode = "drip"
    pid = os.fork()
    if pid == 0:  # the child: cut off as the parent would be, or exit 1
        try:
            VendorSession(1).get(vendor.url, timeout=0.5)
        except CutOff:
            os._exit(0)
        except BaseException:
            pass
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# ---- raw sockets: a proxy, and answers no HTTP server library would give --------------------


@pytest.fixture
def raw_server() -> Iterator[Any]:
    """`raw_server(handle)`: a loopback listener whose every connection goes to `handle(conn)`
    on a thread of its own; its port."""
    listeners: list[socket.socket] = []

    def start(handle: Any) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve(conn: socket.socket) -> None:
            with conn, contextlib.suppress(OSError):
                handle(conn)

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return listener.getsockname()[1]

    yield start
    for listener in listeners:
        listener.close()


def _dripping(conn: socket.socket, start: bytes, byte: bytes) -> None:
    # A byte every 50 ms: well inside the 1 s read timeout even on a loaded host (at 200 ms, a
    # stalled server thread once let the read time out first, and the error said "timed out", not
    # "cut off"), and for 30 s: far past the whole call's deadline.
    conn.recv(65536)
    conn.sendall(start)
    for _ in range(600):
        conn.sendall(byte)
        time.sleep(0.05)


def test_a_callback_through_a_proxy_at_a_private_address_reaches_the_proxy(raw_server: Any) -> None:
    # A corporate proxy sits at a private address (HTTPS_PROXY=http://10.0.0.5:3128): the
    # callbacks' peer check is for direct connections, and had refused every proxied callback.
    from connector import callback_http

    seen: list[bytes] = []

    def proxy(conn: socket.socket) -> None:
        seen.append(conn.recv(65536).split(b"\r\n")[0])
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    port = raw_server(proxy)
    with pytest.raises(requests.exceptions.ProxyError):  # the proxy's own 403 to CONNECT
        callback_http.session(allow_private=False).post(
            "https://bot.example.com/hook", data=b"{}", timeout=(2, 2), stream=True,
            proxies={"https": f"http://127.0.0.1:{port}"})
    assert [line.rsplit(b" ", 1)[0] for line in seen] == [b"CONNECT bot.example.com:443"]


def test_a_slack_call_cut_off_in_its_proxy_tunnel_is_not_retried_past_its_deadline(
        raw_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The cut ends the tunnel while it is set up: urllib says URLError (nothing was sent), which
    # slack-sdk retries — with a deadline of its own, the call ran twice as long.
    attempts: list[int] = []

    def proxy(conn: socket.socket) -> None:
        attempts.append(1)
        _dripping(conn, b"HTTP/1.1 200 Connection established\r\n", b"x")

    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{raw_server(proxy)}")
    adapter = SlackAdapter(Settings(slack_bot_token="xoxb-test", slack_api_url="https://slack.example/api/",
                                    vendor_timeout_s=1), {})
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"cannot reach Slack \(no whole answer within 2 s \(cut off\)"):
        adapter._call("chat_postMessage", acts=True, channel="C1", text="hi")  # nothing sent: only retried
    # Retried, it ran twice as long (4 s): the margin is for a loaded machine, not the deadline's.
    assert time.monotonic() - started < 2 + 2 * call_deadline.TICK_S + 1.5 and attempts == [1]


def test_a_slack_error_answer_cut_off_mid_body_says_so(raw_server: Any) -> None:
    port = raw_server(lambda conn: _dripping(
        conn, b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{", b" "))
    adapter = SlackAdapter(Settings(slack_bot_token="xoxb-test", slack_api_url=f"http://127.0.0.1:{port}/api/",
                                    vendor_timeout_s=1), {})
    with pytest.raises(OutcomeUnknown, match="cut off"):
        adapter._call("chat_postMessage", acts=True, channel="C1", text="hi")
