"""The floor of scenario 1: a proxy with the connector's hops and none of its work.

It runs as the connector does (`gunicorn -c gunicorn.conf.py bench.floor_app:app`: the same worker
class, workers and threads), so a request takes the same path through the machine: gunicorn's main
thread hands it to a request thread, which hands the vendor call to a pool thread (as intake hands
a delivery to the outbox's pool) and waits; the pool thread makes the direct call's own request
(`scenarios.DirectZendesk`, requests, a keep-alive session per thread); the answer is a few bytes
of JSON. What the connector adds beyond this floor, in the same minutes, is its own work: parsing and
validating the packet, routing, two transactions, the brief and the payload, the answer.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .scenarios import DirectZendesk

_direct = DirectZendesk(os.environ["ZENDESK_BASE_URL"], f"floor-{uuid.uuid4().hex[:8]}")  # one per worker
_pool = ThreadPoolExecutor(16, thread_name_prefix="floor-delivery")
_numbers = itertools.count()
_sessions = threading.local()


def _deliver(number: int) -> int:
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = _direct.connect()
    return _direct(session, number)


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ.get("PATH_INFO") == "/healthz":  # what `procs.connector` waits for
        status, body = "200 OK", {"status": "ok"}
    else:
        environ["wsgi.input"].read()
        vendor_status = _pool.submit(_deliver, next(_numbers)).result(timeout=60)
        status, body = ("201 Created", {"vendor_status": vendor_status}) if vendor_status == 201 else \
            ("502 Bad Gateway", {"vendor_status": vendor_status})
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]
