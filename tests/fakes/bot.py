"""A loopback bot that receives status callbacks: records each request as sent, answers as scripted.

    with FakeBot() as bot:
        bot.answer(503, {"Retry-After": "7"})   # the next request gets this, later ones 204
        release = bot.hang()                    # the next one waits until release.set()
        ...
        assert bot.requests[0].json["state"] == "delivered"
"""

from __future__ import annotations

import json
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
        self._answers: deque[tuple[int, dict[str, str], threading.Event | None]] = deque()
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

    def states(self) -> list[str]:
        return [r.json["state"] for r in self.requests]

    def __enter__(self) -> FakeBot:
        bot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with bot._lock:
                    bot.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status, headers, release = bot._answers.popleft() if bot._answers else (204, {}, None)
                if release is not None:
                    release.wait(60)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
