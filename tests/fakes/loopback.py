"""Loopback fakes of Zendesk, Salesforce and Slack that keep state, for chaos tests and benchmarks.

Each vendor is a real HTTP server on 127.0.0.1 (port 0: the kernel picks a free one); Salesforce
speaks TLS with a throwaway CA from `trustme` (simple-salesforce hard-codes https), so the process
under test must trust `Loopback.ca_file` through `REQUESTS_CA_BUNDLE` (`env()` sets it).

In a test (servers in threads of this process)::

    with Loopback(Behaviour(failure_rate=0.33, latency_s=(0, 0.02), seed=7)) as vendors:
        app = create_app({... , **vendors.settings()})       # or: subprocess env={**os.environ, **vendors.env()}
        ...
        vendors.zendesk.configure(down=True)                  # every call answers 503, nothing acts
        assert vendors.counts()["slack"] == {handoff_id: 1, ...}
        assert not vendors.duplicates()

As a separate process (benchmarks; stop it with SIGTERM)::

    with Loopback.spawn(Behaviour(latency_s=0.05, rate_limit_per_minute=700)) as remote:
        remote.env()            # the same variables as above
        remote.counts()         # read over HTTP: GET {vendor}/_loopback/stats
        remote.configure("slack", failure_rate=0.5)   # POST {vendor}/_loopback/config

or from a shell: `python -m tests.fakes.loopback --failure-rate 0.3 --latency-ms 20` prints one JSON line
(`{"env": {...}, "urls": {...}}`) and serves until SIGTERM / SIGINT.

`Behaviour` (per vendor, changeable at run time with `configure`):

* `latency_s`: seconds added to every answer, or a `(low, high)` range drawn uniformly;
* `failure_rate`: the share of calls that fail, the kind drawn by `failures` weights:
  `5xx` (503, nothing done), `429` (with `Retry-After: retry_after_s`, nothing done),
  `timeout` (the vendor **acts**, then stalls `stall_s` — longer than the client's timeout — so the
  caller cannot know), `drop` (the connection is reset; the vendor acted or not, half and half);
* `rate_limit_per_minute`: calls beyond it in a clock minute get 429 with `Retry-After` to the
  next minute; Zendesk's answers also carry its quota headers (`X-Rate-Limit-Remaining`,
  `ratelimit-remaining`, `ratelimit-reset`…), as the real one does;
* `down`: every call answers 503 and nothing is done (a vendor outage).

Counters: `counts()` gives, per vendor, the number of tickets / cases / top-level Slack messages
each handoff id produced (Zendesk `external_id`, the Salesforce handoff-id field, Slack message
metadata); `duplicates()` lists what was made more than once (including Slack thread parts and
Salesforce case comments posted twice); `stats()` adds call and fault counts.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fakes.serving import serve_in_thread

ZENDESK_TOKEN = "zd-loopback-token"
SALESFORCE_TOKEN = "00D000000000000!loopback-token"
SLACK_TOKEN = "xoxb-loopback-0000-token"
SLACK_CHANNEL = "C0HANDOFF"
SALESFORCE_USER = "005000000000001AAA"  # the API user the token signs in as: a case's creator, its owner by default
HANDOFF_ID_FIELD = "Handoff_Id__c"  # the Salesforce custom field the mapping must name (`handoff_id_field`)
SF_API = "/services/data/v59.0/"
FAULTS = ("5xx", "429", "timeout", "drop")


@dataclass
class Behaviour:
    latency_s: float | tuple[float, float] = 0.0
    failure_rate: float = 0.0
    failures: Mapping[str, float] = field(default_factory=lambda: {kind: 1.0 for kind in FAULTS})
    retry_after_s: float = 1.0
    stall_s: float = 1.6
    rate_limit_per_minute: int | None = None
    down: bool = False
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeVendor(abc.ABC):
    """One vendor: an HTTP(S) server, its state, and the chaos in front of it. Subclasses route."""

    name = "vendor"

    def __init__(self, behaviour: Behaviour | None = None, tls: ssl.SSLContext | None = None):
        self.behaviour = dataclasses.replace(behaviour or Behaviour())
        self._random = random.Random(self.behaviour.seed)
        self._tls = tls
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self._minute, self._in_minute = -1, 0
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeVendor:
        handler = type("Handler", (_Handler,), {"vendor": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = False  # server_close() joins handler threads: nothing outlives stop()
        server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        if self._tls is not None:
            # The handshake runs in the handler thread (first read), never in the accepting thread.
            server.socket = self._tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = serve_in_thread(server, name=f"loopback-{self.name}")
        return self

    def stop(self) -> None:
        self.stopping.set()  # ends stalls and latency waits at once
        if self._server is None:
            return
        self._server.shutdown()
        with self.lock:  # idle keep-alive connections would hold their handler threads: cut them
            for sock in list(self._connections):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def configure(self, **changes: Any) -> None:
        """Change the behaviour while running (e.g. `down=True`, `failure_rate=0`)."""
        with self.lock:
            if "latency_s" in changes and isinstance(changes["latency_s"], list):
                changes["latency_s"] = tuple(changes["latency_s"])
            self.behaviour = dataclasses.replace(self.behaviour, **changes)
            if "seed" in changes:
                self._random = random.Random(changes["seed"])

    # ---- chaos ---------------------------------------------------------------------------------

    def _fault(self) -> tuple[str | None, float, Reply | None]:
        """(fault kind, latency, early reply) for the next call."""
        with self.lock:
            b = self.behaviour
            latency = b.latency_s if isinstance(b.latency_s, (int, float)) else self._random.uniform(*b.latency_s)
            if b.down:
                return "down", latency, self.error_reply(503, "service unavailable")
            if b.rate_limit_per_minute:
                minute = int(time.time() // 60)
                if minute != self._minute:
                    self._minute, self._in_minute = minute, 0
                self._in_minute += 1
                if self._in_minute > b.rate_limit_per_minute:
                    wait = max(1, int(60 - time.time() % 60) + 1)
                    return "rate_limit", latency, self.rate_limited_reply(str(wait))
            if b.failure_rate and self._random.random() < b.failure_rate:
                kinds = [k for k in FAULTS if b.failures.get(k)]
                kind = self._random.choices(kinds, weights=[b.failures[k] for k in kinds])[0] if kinds else None
                if kind == "5xx":
                    return kind, latency, self.error_reply(503, "chaos: service unavailable")
                if kind == "429":
                    return kind, latency, self.rate_limited_reply(_seconds(b.retry_after_s))
                if kind == "drop":
                    return ("drop" if self._random.random() < 0.5 else "drop_before"), latency, None
                return kind, latency, None
            return None, latency, None

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply(status, {"error": message})

    def quota_headers(self) -> dict[str, str]:
        """What this vendor says about its rate limit on every answer (none by default)."""
        return {}

    def _window(self) -> tuple[int, int]:
        """(calls left in this clock minute, seconds until it resets) under `rate_limit_per_minute`."""
        limit = self.behaviour.rate_limit_per_minute or 0
        return max(0, limit - self._in_minute), max(1, int(60 - time.time() % 60))

    def rate_limited_reply(self, retry_after: str) -> Reply:
        return Reply(429, {"error": "rate limited"}, {"Retry-After": retry_after})

    def new_id(self) -> int:
        return next(self._ids)

    # ---- routing and counters (subclasses) ---------------------------------------------------

    @abc.abstractmethod
    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> Reply:
        """Answer one request of this vendor's API."""

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """Things made per handoff id."""

    def duplicates(self) -> list[str]:
        return [f"{self.name}: {hid} made {n} times" for hid, n in sorted(self.counts().items()) if n > 1]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"calls": dict(self.calls), "faults": dict(self.faults), "per_handoff": self.counts(),
                    "duplicates": self.duplicates(), "behaviour": self.behaviour.to_json()}


class FakeZendesk(FakeVendor):
    """Tickets (create with Idempotency-Key semantics, update, list by external_id), a ticket's
    comments as stored (List Comments), search, users, uploads."""

    name = "zendesk"

    def __init__(self, behaviour: Behaviour | None = None):
        super().__init__(behaviour)
        self.tickets: dict[int, dict[str, Any]] = {}
        self._keys: dict[str, tuple[str, int]] = {}  # Idempotency-Key → (body digest, ticket id)

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply(status, {"error": "ServiceUnavailable", "description": message})

    def rate_limited_reply(self, retry_after: str) -> Reply:
        return Reply(429, {"error": "APIRateLimitExceeded", "description": "Rate limit exceeded"},
                     {"Retry-After": retry_after})

    def quota_headers(self) -> dict[str, str]:
        """Zendesk's account-wide per-minute counters, on every answer (its "Rate limits" page)."""
        limit = self.behaviour.rate_limit_per_minute
        if not limit:
            return {}
        remaining, reset = self._window()
        return {"X-Rate-Limit": str(limit), "X-Rate-Limit-Remaining": str(remaining),
                "ratelimit-limit": str(limit), "ratelimit-remaining": str(remaining), "ratelimit-reset": str(reset)}

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> Reply:
        with self.lock:
            if method == "POST" and path == "/api/v2/tickets.json":
                return self._create(headers.get("idempotency-key"), body)
            if method == "GET" and path == "/api/v2/tickets.json":
                found = [t for t in self.tickets.values() if t.get("external_id") == query.get("external_id")]
                return Reply(200, {"tickets": found, "count": len(found), "next_page": None})
            if match := re.fullmatch(r"/api/v2/tickets/(\d+)\.json", path):
                ticket = self.tickets.get(int(match[1]))
                if ticket is None:
                    return Reply(404, {"error": "RecordNotFound", "description": "Not found"})
                if method == "PUT":
                    wanted = dict((body or {}).get("ticket") or {})
                    if wanted.get("comment"):  # a status-only update (a reopen) adds no comment
                        ticket["comments"].append(self._comment(wanted["comment"]))
                    if wanted.get("status"):
                        ticket["status"] = wanted["status"]
                    ticket["updated_at"] = _now()
                return Reply(200, {"ticket": _public(ticket), "audit": {"id": self.new_id(), "ticket_id": ticket["id"]}})
            if method == "GET" and (match := re.fullmatch(r"/api/v2/tickets/(\d+)/comments(?:\.json)?", path)):
                return self._comments(int(match[1]), query)
            if method == "PUT" and (match := re.fullmatch(r"/api/v2/tickets/(\d+)/tags", path)):
                ticket = self.tickets.get(int(match[1]))
                if ticket is None:
                    return Reply(404, {"error": "RecordNotFound", "description": "Not found"})
                ticket["tags"] = list(dict.fromkeys([*(ticket.get("tags") or []), *(body or {}).get("tags", [])]))
                return Reply(200, {"tags": ticket["tags"]})
            if method == "GET" and path == "/api/v2/search.json":
                email = (re.search(r"requester:(\S+)", query.get("query", "")) or [None, None])[1]
                results = [{**_public(t), "result_type": "ticket"} for t in self.tickets.values()
                           if t.get("requester", {}).get("email") == email and t["status"] != "solved"]
                return Reply(200, {"results": results[::-1], "count": len(results), "next_page": None})
            if match := re.fullmatch(r"/api/v2/users/(\d+)\.json", path):
                return Reply(200, {"user": {"id": int(match[1]), "name": "Agent", "email": "agent@example.com"}})
            if method == "POST" and path == "/api/v2/uploads.json":
                return Reply(201, {"upload": {"token": f"upload-{self.new_id()}"}})
        return Reply(404, {"error": "InvalidEndpoint", "description": f"{method} {path}"})

    def _create(self, key: str | None, body: Any) -> Reply:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if key and key in self._keys:
            seen_digest, ticket_id = self._keys[key]
            if seen_digest != digest:
                return Reply(400, {"error": "IdempotentRequestError",
                                   "description": "Request parameters do not match the original request"})
            ticket = self.tickets[ticket_id]
            return Reply(201, {"ticket": _public(ticket), "audit": {"id": self.new_id(), "ticket_id": ticket_id}},
                         {"x-idempotency-lookup": "hit"})
        wanted = dict((body or {}).get("ticket") or {})
        ticket_id = self.new_id()
        ticket = {**wanted, "id": ticket_id, "url": f"{self.url}/api/v2/tickets/{ticket_id}.json", "status": "new",
                  "created_at": _now(), "updated_at": _now(),
                  "comments": [self._comment(wanted["comment"])] if wanted.get("comment") else []}
        self.tickets[ticket_id] = ticket
        if key:
            self._keys[key] = (digest, ticket_id)
        return Reply(201, {"ticket": _public(ticket), "audit": {"id": self.new_id(), "ticket_id": ticket_id}},
                     {"x-idempotency-lookup": "miss"})

    def _comment(self, sent: Mapping[str, Any]) -> dict[str, Any]:
        """A comment as Zendesk keeps it (List Comments' `TicketCommentObject`): what was sent as
        `html_body` or `body`, both forms, with its own id and audit."""
        html = sent.get("html_body")
        text = sent.get("body")
        html = html if isinstance(html, str) else f"<p>{text or ''}</p>"
        text = text if isinstance(text, str) else re.sub(r"<[^>]*>", "", html)
        return {"id": self.new_id(), "type": "Comment", "author_id": 1, "body": text, "html_body": html,
                "plain_body": text, "public": bool(sent.get("public", True)), "attachments": [],
                "audit_id": self.new_id(), "created_at": _now(), "uploads": list(sent.get("uploads") or [])}

    def _comments(self, ticket_id: int, query: Mapping[str, str]) -> Reply:
        """List Comments (`GET /api/v2/tickets/{id}/comments.json`), offset pagination: oldest first
        unless `sort_order=desc`, `per_page` up to 100 (its default), `page` from 1; `next_page` the
        next page's address or null. What creates and updates of the ticket actually stored."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return Reply(404, {"error": "RecordNotFound", "description": "Not found"})
        comments = list(ticket["comments"])
        if query.get("sort_order") == "desc":
            comments.reverse()
        per_page = min(max(int(query.get("per_page") or 100), 1), 100)
        page = max(int(query.get("page") or 1), 1)
        start = (page - 1) * per_page
        base = f"{self.url}/api/v2/tickets/{ticket_id}/comments.json?sort_order={query.get('sort_order') or 'asc'}" \
               f"&per_page={per_page}&page="
        return Reply(200, {"comments": [{k: v for k, v in c.items() if k != "uploads"}
                                        for c in comments[start:start + per_page]],
                           "next_page": f"{base}{page + 1}" if start + per_page < len(comments) else None,
                           "previous_page": f"{base}{page - 1}" if page > 1 else None, "count": len(comments)})

    def comments(self, ticket_id: int) -> list[str]:
        """The html bodies of a ticket's comments, oldest first."""
        with self.lock:
            return [c["html_body"] for c in self.tickets[ticket_id]["comments"]]

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(Counter(str(t.get("external_id")) for t in self.tickets.values()))


class FakeSalesforce(FakeVendor):
    """REST API v59.0 over TLS, token auth: SOQL `SELECT f FROM Obj WHERE g = '…'` (and a case's
    `Owner.Name`), sobject create/update. The token's user makes every record and owns a case no
    routing gave an owner."""

    name = "salesforce"
    PREFIX = {"Case": "500", "Contact": "003", "CaseComment": "00a", "FeedItem": "0D5"}

    def __init__(self, behaviour: Behaviour | None = None, tls: ssl.SSLContext | None = None):
        super().__init__(behaviour, tls)
        self.records: dict[str, list[dict[str, Any]]] = {name: [] for name in self.PREFIX}

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply(status, [{"errorCode": "SERVER_ERROR", "message": message}])

    def rate_limited_reply(self, retry_after: str) -> Reply:
        return Reply(429, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "rate limited"}],
                     {"Retry-After": retry_after})

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> Reply:
        if headers.get("authorization") != f"Bearer {SALESFORCE_TOKEN}":
            return Reply(401, [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}])
        rest = path.removeprefix(SF_API)
        with self.lock:
            if method == "GET" and rest in ("query/", "query"):
                return self._query(query.get("q", ""))
            if match := re.fullmatch(r"sobjects/(\w+)/?", rest):
                if method != "POST" or match[1] not in self.records:
                    return Reply(404, [{"errorCode": "NOT_FOUND", "message": rest}])
                record_id = f"{self.PREFIX[match[1]]}{self.new_id():015d}"
                record = {**(body or {}), "Id": record_id, "_seq": self.new_id(), "CreatedById": SALESFORCE_USER}
                if match[1] == "Case":  # no owner named, no assignment rule here: the API user owns it
                    record.setdefault("IsClosed", False)
                    record["OwnerId"] = record.get("OwnerId") or SALESFORCE_USER
                self.records[match[1]].append(record)
                return Reply(201, {"id": record_id, "success": True, "errors": []})
            if (match := re.fullmatch(r"sobjects/(\w+)/(\w+)", rest)) and method == "PATCH":
                for record in self.records.get(match[1], []):
                    if record["Id"] == match[2]:
                        record.update(body or {})
                        return Reply(204, None)
                return Reply(404, [{"errorCode": "NOT_FOUND", "message": match[2]}])
        return Reply(404, [{"errorCode": "NOT_FOUND", "message": f"{method} {path}"}])

    def _query(self, soql: str) -> Reply:
        # Only the first condition filters (a time bound after AND is taken as met).
        match = re.match(r"SELECT\s+([\w., ]+?)\s+FROM\s+(\w+)\s+WHERE\s+(\w+)\s*=\s*'((?:[^'\\]|\\.)*)'(.*)$", soql, re.S)
        if not match or match[2] not in self.records:
            return Reply(400, [{"errorCode": "MALFORMED_QUERY", "message": soql[:200]}])
        columns, sobject, where, value, rest = match.groups()
        value = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m[1], m[1]), value)
        rows = [r for r in self.records[sobject] if str(r.get(where)) == value]
        if limit := re.search(r"LIMIT\s+(\d+)", rest):
            rows = rows[: int(limit[1])]
        records = []
        for r in rows:
            record: dict[str, Any] = {"attributes": {"type": sobject, "url": f"{SF_API}sobjects/{sobject}/{r['Id']}"}}
            for column in (c.strip() for c in columns.split(",")):
                if column in ("Owner.Name", "Owner.IsActive"):  # the relationship's fields asked for (`_still_open`)
                    record["Owner"] = _owner(r.get("OwnerId"))
                elif "." in column:
                    return Reply(400, [{"errorCode": "INVALID_FIELD", "message": f"No such relation: {column}"}])
                else:
                    record[column] = r.get(column)
            records.append(record)
        return Reply(200, {"totalSize": len(records), "done": True, "records": records})

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(Counter(str(c.get(HANDOFF_ID_FIELD)) for c in self.records["Case"]))

    def duplicates(self) -> list[str]:
        found = super().duplicates()
        with self.lock:
            bodies = Counter((c.get("ParentId"), c.get("CommentBody")) for c in self.records["CaseComment"])
        found += [f"salesforce: comment on {parent} posted {n} times" for (parent, _), n in bodies.items() if n > 1]
        return found


class FakeSlack(FakeVendor):
    """chat.postMessage (metadata), chat.update, chat.getPermalink, conversations.history / .replies."""

    name = "slack"

    def __init__(self, behaviour: Behaviour | None = None):
        super().__init__(behaviour)
        self.channels: dict[str, list[dict[str, Any]]] = {}
        self._clock = itertools.count()

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply(status, {"ok": False, "error": "internal_error"})

    def rate_limited_reply(self, retry_after: str) -> Reply:
        return Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": retry_after})

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> Reply:
        if headers.get("authorization") != f"Bearer {SLACK_TOKEN}":
            return Reply(200, {"ok": False, "error": "invalid_auth"})
        api = path.rsplit("/", 1)[-1]
        handler = getattr(self, "api_" + api.replace(".", "_"), None)
        if handler is None:
            return Reply(200, {"ok": False, "error": "unknown_method"})
        with self.lock:
            return Reply(200, handler({**query, **(body or {})}))

    def api_chat_postMessage(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = body.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        ts = f"{time.time():.0f}.{next(self._clock):06d}"
        message = {"type": "message", "ts": ts, "text": body.get("text", ""), "bot_id": "B0LOOPBACK"}
        if body.get("thread_ts"):
            message["thread_ts"] = body["thread_ts"]
        if body.get("metadata"):
            metadata = body["metadata"]
            message["metadata"] = json.loads(metadata) if isinstance(metadata, str) else metadata
        self.channels.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def api_chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        for message in self.channels.get(body.get("channel", ""), []):
            if message["ts"] == body.get("ts"):
                for key in ("text", "metadata"):
                    if key in body:
                        value = body[key]
                        message[key] = json.loads(value) if key == "metadata" and isinstance(value, str) else value
                return {"ok": True, "channel": body["channel"], "ts": message["ts"], "text": message["text"]}
        return {"ok": False, "error": "message_not_found"}

    def api_chat_getPermalink(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, ts = body.get("channel", ""), body.get("message_ts", "")
        if not any(m["ts"] == ts for m in self.channels.get(channel, [])):
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": channel,
                "permalink": f"https://acme.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    def api_conversations_history(self, body: dict[str, Any]) -> dict[str, Any]:
        oldest = float(body.get("oldest") or 0)
        top = [m for m in self.channels.get(body.get("channel", ""), []) if "thread_ts" not in m]
        return self._page([m for m in reversed(top) if float(m["ts"]) > oldest], body)

    def api_conversations_replies(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, ts = body.get("channel", ""), body.get("ts", "")
        messages = self.channels.get(channel, [])
        parent = [m for m in messages if m["ts"] == ts]
        if not parent:
            return {"ok": False, "error": "thread_not_found"}
        return self._page(parent + [m for m in messages if m.get("thread_ts") == ts], body)

    @staticmethod
    def _page(messages: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        start, limit = int(body.get("cursor") or 0), int(body.get("limit") or 100)
        page = messages[start:start + limit]
        if str(body.get("include_all_metadata")).lower() not in ("1", "true"):
            page = [{k: v for k, v in m.items() if k != "metadata"} for m in page]
        more = start + limit < len(messages)
        return {"ok": True, "messages": page, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def _ours(self, event_type: str) -> Counter[tuple[str, Any]]:
        found: Counter[tuple[str, Any]] = Counter()
        for messages in self.channels.values():
            for m in messages:
                meta = m.get("metadata") or {}
                if meta.get("event_type") == event_type:
                    payload = meta.get("event_payload") or {}
                    found[(str(payload.get("handoff_id")), payload.get("part"))] += 1
        return found

    def counts(self) -> dict[str, int]:
        """Top-level alerts per handoff (thread replies are not counted here)."""
        with self.lock:
            return {hid: n for (hid, _), n in self._ours("handoff_created").items()}

    def duplicates(self) -> list[str]:
        found = super().duplicates()
        with self.lock:
            parts = self._ours("handoff_thread")
        return found + [f"slack: {hid} thread part {part} posted {n} times" for (hid, part), n in parts.items() if n > 1]


class Loopback:
    """The three fakes together; a context manager (or `start()` / `stop()`)."""

    def __init__(self, behaviour: Behaviour | None = None, *, zendesk: Behaviour | None = None,
                 salesforce: Behaviour | None = None, slack: Behaviour | None = None):
        import trustme  # test-only dependency (requirements-dev.txt)

        self._dir = tempfile.TemporaryDirectory(prefix="loopback-")
        ca = trustme.CA()
        self.ca_file = os.path.join(self._dir.name, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(tls)
        base = behaviour or Behaviour()

        def own(specific: Behaviour | None, offset: int) -> Behaviour:  # distinct random streams per vendor
            chosen = specific or base
            return dataclasses.replace(chosen, seed=None if chosen.seed is None else chosen.seed + offset)

        self.zendesk = FakeZendesk(own(zendesk, 1))
        self.salesforce = FakeSalesforce(own(salesforce, 2), tls=tls)
        self.slack = FakeSlack(own(slack, 3))
        self.vendors: dict[str, FakeVendor] = {v.name: v for v in (self.zendesk, self.salesforce, self.slack)}

    def start(self) -> Loopback:
        for vendor in self.vendors.values():
            vendor.start()
        return self

    def stop(self) -> None:
        for vendor in self.vendors.values():
            vendor.stop()
        self._dir.cleanup()

    def __enter__(self) -> Loopback:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def configure(self, vendor: str | None = None, **changes: Any) -> None:
        """Change one vendor's behaviour (or every vendor's, when `vendor` is None)."""
        for name, fake in self.vendors.items():
            if vendor in (None, name):
                fake.configure(**changes)

    def env(self) -> dict[str, str]:
        """Environment for a connector process: the three targets pointed here, the CA trusted."""
        return {
            "CONNECTOR_TARGETS": "zendesk,salesforce,slack",
            "ZENDESK_SUBDOMAIN": "acme", "ZENDESK_EMAIL": "bot@acme.example", "ZENDESK_API_TOKEN": ZENDESK_TOKEN,
            "ZENDESK_BASE_URL": self.zendesk.url,
            "SALESFORCE_INSTANCE_URL": self.salesforce.url, "SALESFORCE_ACCESS_TOKEN": SALESFORCE_TOKEN,
            "SLACK_BOT_TOKEN": SLACK_TOKEN, "SLACK_CHANNEL": SLACK_CHANNEL, "SLACK_API_URL": self.slack.url + "/api/",
            "REQUESTS_CA_BUNDLE": self.ca_file,
        }

    def settings(self) -> dict[str, Any]:
        """The same, as `create_app(test_config)` overrides. The process must still trust `ca_file`
        (set `REQUESTS_CA_BUNDLE` in `os.environ`, e.g. with monkeypatch)."""
        env = self.env()
        return {"targets": tuple(env["CONNECTOR_TARGETS"].split(",")), "zendesk_subdomain": "acme",
                "zendesk_email": env["ZENDESK_EMAIL"], "zendesk_api_token": ZENDESK_TOKEN,
                "zendesk_base_url": env["ZENDESK_BASE_URL"],
                "salesforce_instance_url": env["SALESFORCE_INSTANCE_URL"], "salesforce_access_token": SALESFORCE_TOKEN,
                "slack_bot_token": SLACK_TOKEN, "slack_channel": SLACK_CHANNEL, "slack_api_url": env["SLACK_API_URL"]}

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: vendor.counts() for name, vendor in self.vendors.items()}

    def duplicates(self) -> list[str]:
        return [line for vendor in self.vendors.values() for line in vendor.duplicates()]

    def stats(self) -> dict[str, Any]:
        return {name: vendor.stats() for name, vendor in self.vendors.items()}

    @staticmethod
    def spawn(behaviour: Behaviour | None = None, *, python: str = sys.executable,
              timeout_s: float = 20.0) -> RemoteLoopback:
        """Run the fakes in a child process (`python -m tests.fakes.loopback`); stop with `.stop()`."""
        return RemoteLoopback(behaviour or Behaviour(), python, timeout_s)


class RemoteLoopback:
    """A `Loopback` in a child process, driven over HTTP (`/_loopback/stats`, `/_loopback/config`)."""

    def __init__(self, behaviour: Behaviour, python: str, timeout_s: float):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.process = subprocess.Popen(
            [python, "-m", "tests.fakes.loopback", "--behaviour", json.dumps(behaviour.to_json())],
            cwd=root, stdout=subprocess.PIPE, text=True)
        try:
            ready = _readline(self.process, timeout_s)
            info = json.loads(ready)
        except BaseException:
            self.stop()
            raise
        self._env: dict[str, str] = info["env"]
        self.urls: dict[str, str] = info["urls"]

    def env(self) -> dict[str, str]:
        return dict(self._env)

    def stats(self) -> dict[str, Any]:
        return {name: _http_json("GET", url + "/_loopback/stats") for name, url in self.urls.items()}

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: stats["per_handoff"] for name, stats in self.stats().items()}

    def duplicates(self) -> list[str]:
        return [line for stats in self.stats().values() for line in stats["duplicates"]]

    def configure(self, vendor: str | None = None, **changes: Any) -> None:
        for name, url in self.urls.items():
            if vendor in (None, name):
                _http_json("POST", url + "/_loopback/config", changes)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> RemoteLoopback:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---- HTTP plumbing -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    vendor: FakeVendor
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection ends on its own; stop() cuts it sooner
    # The status line and headers go out in one write and the body in another: with Nagle's
    # algorithm on, the body waited for the client's delayed ACK, and every answer took ~40 ms more
    # than its configured latency (the benchmark's "80 ms" fake answered in 124 ms).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        with self.vendor.lock:
            self.vendor._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.vendor.lock:
            self.vendor._connections.discard(self.connection)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        declared = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(declared)
        if len(raw) < declared:
            # The client went away mid-body (a process killed as it sent): a real server never sees
            # a request, and nothing acts. Acted on, it made a ticket of nothing, counted as "None".
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = _decode(raw, headers.get("content-type", ""))
        vendor = self.vendor
        if path.startswith("/_loopback/"):
            if path == "/_loopback/config" and self.command == "POST":
                vendor.configure(**(body or {}))
            return self._answer(Reply(200, vendor.stats()))
        fault, latency, early = vendor._fault()
        with vendor.lock:
            vendor.calls[f"{self.command} {path}"] += 1
            if fault:
                vendor.faults[fault] += 1
            self.quota = vendor.quota_headers()  # as counted when this call was let in
        if latency and vendor.stopping.wait(latency):
            return self._drop()
        if early is not None:
            return self._answer(early)
        if fault == "drop_before":
            return self._drop()
        reply = vendor.route(self.command, path, query, headers, body)  # the vendor acts
        if fault == "drop":
            return self._drop()
        if fault == "timeout":
            vendor.stopping.wait(vendor.behaviour.stall_s)  # past the client's timeout: it gave up
        self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            if payload:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in {**getattr(self, "quota", {}), **reply.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client already gave up (a stall): nothing to answer
            self.close_connection = True

    def _drop(self) -> None:
        """Reset the connection without answering (SO_LINGER 0 → RST on close)."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            return None
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    return {"_raw": raw[:200].decode("utf-8", "replace")}


def _owner(owner_id: Any) -> dict[str, Any] | None:
    """A case's `Owner` as SOQL returns `Owner.Name`: polymorphic (a user or a queue), typed `Name`."""
    if not owner_id:
        return None
    kind = "Group" if str(owner_id).startswith("00G") else "User"
    name = "Loopback Integration" if owner_id == SALESFORCE_USER else f"{kind} {owner_id}"
    return {"attributes": {"type": "Name", "url": f"{SF_API}sobjects/{kind}/{owner_id}"}, "Name": name,
            "IsActive": True if kind == "User" else None}


def _public(ticket: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ticket.items() if k not in ("comment", "comments")}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _http_json(method: str, url: str, body: Any = None) -> Any:
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    context = ssl._create_unverified_context() if url.startswith("https") else None
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.loads(response.read())


def _readline(process: subprocess.Popen, timeout_s: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline() if process.stdout else ""))
    reader.start()
    reader.join(timeout_s)
    if not result or not result[0]:
        raise RuntimeError(f"the loopback process did not start within {timeout_s} s")
    return result[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Loopback fakes of Zendesk, Salesforce and Slack.")
    parser.add_argument("--behaviour", default=None, help="Behaviour as JSON (overrides the other options)")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit-per-minute", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.behaviour:
        values = json.loads(args.behaviour)
        if isinstance(values.get("latency_s"), list):
            values["latency_s"] = tuple(values["latency_s"])
        behaviour = Behaviour(**values)
    else:
        behaviour = Behaviour(latency_s=args.latency_ms / 1000, failure_rate=args.failure_rate,
                              rate_limit_per_minute=args.rate_limit_per_minute, seed=args.seed)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Loopback(behaviour) as vendors:
        urls = {name: vendor.url for name, vendor in vendors.vendors.items()}
        print(json.dumps({"env": vendors.env(), "urls": urls}), flush=True)
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    main()
