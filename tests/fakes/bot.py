"""A loopback bot that receives status callbacks: records each request as sent, answers as scripted.

    with FakeBot() as bot:
        bot.answer(503, {"Retry-After": "7"})   # the next request gets this, later ones 204
        release = bot.hang()                    # the next one waits until release.set()
        bot.drip(0.1)                           # the next answer comes a byte every 0.1 s, for ever
        ...
        assert bot.requests[0].json["state"] == "delivered"
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.serving import serve_in_thread


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class FakeBot:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls  # serve https with this context (its certificate names the host to call)
        self.requests: list[Received] = []
        self.connections = 0  # accepted (one may carry several requests: HTTP/1.1 keep-alive)
        self._answers: deque[tuple[int, dict[str, str], threading.Event | float | None]] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/handoff-status"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._answers.append((status, headers or {}, None))

    def hang(self) -> threading.Event:
        """The next request is recorded, then left waiting until the event is set (then 204)."""
        release = threading.Event()
        with self._lock:
            self._answers.append((204, {}, release))
        return release

    def drip(self, every_s: float) -> None:
        """The next request is recorded, then answered a byte every `every_s` seconds, each one in
        time for any read timeout longer than that, and never finished (for a minute at most)."""
        with self._lock:
            self._answers.append((204, {}, every_s))

    def states(self) -> list[str]:
        return [r.json["state"] for r in self.requests]

    def __enter__(self) -> FakeBot:
        bot = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections alive, as a real endpoint would

            def setup(self) -> None:
                super().setup()
                with bot._lock:
                    bot.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with bot._lock:
                    bot.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status, headers, release = bot._answers.popleft() if bot._answers else (204, {}, None)
                if isinstance(release, float):
                    self._drip(release)
                    return
                if release is not None:
                    release.wait(60)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _drip(self, every_s: float) -> None:
                answer = b"HTTP/1.1 204 No Content\r\nX-Slow: " + b"." * 60_000
                deadline = time.monotonic() + 60
                try:
                    for byte in answer:
                        if time.monotonic() > deadline:
                            break
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(every_s)
                except OSError:  # the caller hung up: what the test hopes for
                    pass
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        serve_in_thread(self._server)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
