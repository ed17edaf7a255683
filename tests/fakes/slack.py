"""A loopback fake of the Slack Web API, for slack-sdk (which speaks urllib, so `responses` can't help).

    with FakeSlack() as slack:
        settings = Settings(slack_bot_token=slack.token, slack_api_url=slack.api_url, ...)
        slack.fail("chat.postMessage", status=429, headers={"Retry-After": "7"})
        ...
        assert slack.calls_to("chat.postMessage")[0].body["channel"] == "C0HANDOFF"

It records every call (method, headers, decoded form or JSON body), keeps channels with messages,
threads and metadata so `conversations.history` / `.replies` answer like Slack (metadata only with
`include_all_metadata`), and plays scripted answers per method: an HTTP status, an `ok: false`
error, a delay (to outlast the client's timeout) with or without the real effect.
"""

from __future__ import annotations

import itertools
import json
import re
import ssl
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.serving import serve_in_thread

TOKEN = "xoxb-test-0000000000-token"
WORKSPACE = "https://acme.slack.com"


@dataclass
class Call:
    method: str
    headers: dict[str, str]
    body: dict[str, Any]
    content_type: str
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class Script:
    """One scripted answer. `act=True` applies the method's real effect before answering."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    act: bool = False
    raw: bytes | None = None  # a non-JSON body (a proxy's HTML error page)


class FakeSlack:
    def __init__(self, token: str = TOKEN, tls: Any = None):
        """`tls`: a `trustme.CA` to serve HTTPS with, under a certificate for 127.0.0.1 it issues."""
        self.token = token
        self.tls = tls
        self.calls: list[Call] = []
        self.channels: dict[str, list[dict[str, Any]]] = defaultdict(list)  # channel → messages, oldest first
        self._scripts: dict[str, deque[Script]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._clock = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FakeSlack:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.issue_cert("127.0.0.1").configure_cert(context)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = False  # server_close() waits for handlers: no socket outlives a test
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._thread = serve_in_thread(self._server, daemon=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()  # cut scripted delays short
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def api_url(self) -> str:
        assert self._server is not None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}/api/"

    # ---- scripting and inspection ---------------------------------------------------------

    def fail(self, method: str, *, times: int = 1, after: int = 0, status: int = 200, error: str | None = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        """The next `times` calls of `method` (after `after` normal ones) answer `status` / `error`."""
        body = {"ok": False, "error": error} if error else {"ok": False, "error": f"http_{status}"}
        for _ in range(after):
            self._scripts[method].append(Script(act=True))
        for _ in range(times):
            self._scripts[method].append(Script(status=status, body=body, headers=headers or {}, raw=raw))

    def acts_then_answers(self, method: str, *, raw: bytes | None = None, body: dict[str, Any] | None = None,
                          status: int = 200, headers: dict[str, str] | None = None) -> None:
        """The next call of `method` does its work, then is answered with `raw` or `body` instead."""
        self._scripts[method].append(Script(status=status, body=body, raw=raw, headers=headers or {}, act=True))

    def delay(self, method: str, seconds: float, *, act: bool = True, times: int = 1) -> None:
        """Answer `method` only after `seconds`; with `act`, Slack did the work all the same."""
        for _ in range(times):
            self._scripts[method].append(Script(delay=seconds, act=act))

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.channels[channel] if m.get("thread_ts") in (None, m["ts"])]

    def replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.channels[channel] if m.get("thread_ts") == ts and m["ts"] != ts]

    # ---- the API --------------------------------------------------------------------------

    def handle(self, method: str, headers: dict[str, str], body: dict[str, Any], content_type: str) -> Script:
        with self._lock:
            self.calls.append(Call(method, headers, body, content_type))
            script = self._scripts[method].popleft() if self._scripts[method] else None
        if script and not script.act:
            return script
        auth = headers.get("authorization", "")
        if not auth:
            return Script(body={"ok": False, "error": "not_authed"})
        if auth != f"Bearer {self.token}":
            return Script(body={"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        answer = handler(body) if handler else {"ok": False, "error": "unknown_method"}
        if script and (script.raw is not None or script.body is not None):  # done, then answered oddly
            return script
        return Script(body=answer, delay=script.delay if script else 0.0)

    def _ts(self) -> str:
        return f"{time.time():.0f}.{next(self._clock):06d}"

    def api_chat_postMessage(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = body.get("channel")
        if not channel or channel.startswith("#missing"):
            return {"ok": False, "error": "channel_not_found"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        message = {"type": "message", "ts": self._ts(), "text": body.get("text", ""), "blocks": body.get("blocks", []),
                   "bot_id": "B0FAKE"}
        if body.get("thread_ts"):
            message["thread_ts"] = body["thread_ts"]
        if body.get("metadata"):
            metadata = body["metadata"]
            message["metadata"] = json.loads(metadata) if isinstance(metadata, str) else metadata
        with self._lock:
            self.channels[channel].append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def api_chat_postEphemeral(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, user = body.get("channel"), body.get("user")
        if not channel or channel.startswith("#missing"):
            return {"ok": False, "error": "channel_not_found"}
        if not user:
            return {"ok": False, "error": "user_not_in_channel"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        return {"ok": True, "message_ts": self._ts()}

    def api_chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        for message in self.channels.get(body.get("channel", ""), []):
            if message["ts"] == body.get("ts"):
                message.update({k: body[k] for k in ("text", "blocks", "metadata") if k in body})
                return {"ok": True, "channel": body["channel"], "ts": message["ts"], "text": message["text"]}
        return {"ok": False, "error": "message_not_found"}

    def api_chat_getPermalink(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, ts = body.get("channel", ""), body.get("message_ts", "")
        if not any(m["ts"] == ts for m in self.channels.get(channel, [])):
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": channel, "permalink": f"{WORKSPACE}/archives/{channel}/p{ts.replace('.', '')}"}

    def api_auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"{WORKSPACE}/", "team": "Acme", "user": "handoff-bot", "team_id": "T0ACME",
                "user_id": "U0BOT", "bot_id": "B0FAKE"}

    def api_conversations_history(self, body: dict[str, Any]) -> dict[str, Any]:
        if not re.fullmatch(r"[CGD][A-Z0-9]+", body.get("channel", "")):  # Slack reads history by id only
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(body.get("oldest") or 0)
        messages = [m for m in reversed(self.top_level(body.get("channel", ""))) if float(m["ts"]) > oldest]
        return self._page(messages, body)

    def api_conversations_replies(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, ts = body.get("channel", ""), body.get("ts", "")
        found = [m for m in self.channels.get(channel, []) if m["ts"] == ts]
        if not found:
            return {"ok": False, "error": "thread_not_found"}
        # `ts` may name "a thread's parent message or a message in the thread" (Slack): either
        # reads the whole thread, its parent first — taken here as always first, whatever the times.
        head = found[0].get("thread_ts") or ts
        parent = [m for m in self.channels[channel] if m["ts"] == head]
        low, high = float(body.get("oldest") or 0), float(body.get("latest") or "inf")
        inclusive = body.get("inclusive") in ("1", "true", True)
        replies = [m for m in self.replies(channel, head)
                   if (low <= float(m["ts"]) <= high if inclusive else low < float(m["ts"]) < high)]
        return self._page(parent + replies, body)

    def _page(self, messages: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        start, limit = int(body.get("cursor") or 0), int(body.get("limit") or 100)
        page = messages[start:start + limit]
        if body.get("include_all_metadata") not in ("1", "true", True):
            page = [{k: v for k, v in m.items() if k != "metadata"} for m in page]
        more = start + limit < len(messages)
        return {"ok": True, "messages": page, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlack
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            body = json.loads(raw or b"{}")
        else:
            body = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        method = self.path.rsplit("/", 1)[-1].split("?")[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        script = self.fake.handle(method, headers, body, content_type)
        if script.delay and self.fake._stopping.wait(script.delay):
            return
        payload = script.raw if script.raw is not None else json.dumps(script.body).encode()
        try:
            self.send_response(script.status)
            kind = "text/html" if script.raw is not None else "application/json; charset=utf-8"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in script.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up waiting (a scripted timeout): nothing to answer
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass
