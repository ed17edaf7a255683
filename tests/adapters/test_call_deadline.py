"""Every vendor call has a deadline for the whole of it and a cap on its answer (`call_deadline`):
a vendor (or a proxy before it) dripping its answer a byte at a time, each byte in time for the read
timeout, held a delivery thread for as long as it dripped, and an answer of any size was read whole.
Faked with a loopback server, since the point is what happens on a real socket."""

from __future__ import annotations

import os
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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
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
