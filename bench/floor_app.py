"""The floor of scenario 1: a proxy with the connector's hops and none of its work.

It runs as the connector does (`gunicorn -c gunicorn.conf.py bench.floor_app:app`: the same worker
class, workers and threads), so a request takes the same path through the machine: gunicorn's main
thread hands it to a request thread, which hands the vendor call to a pool thread (as intake hands
a delivery to the outbox's pool) and waits; the pool thread makes the direct call's own request
(`scenarios.DirectZendesk`, requests, a keep-alive session per thread); the answer is a few bytes
of JSON. Measured in the same run as the connector, against the same fake: what the connector adds
beyond this floor is its own work (parsing and validating the packet, routing, two transactions,
the brief and the payload, the answer).
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
# As many threads as the connector's delivery pool, so that neither waits for a free one sooner.
_pool = ThreadPoolExecutor(int(os.environ.get("CONNECTOR_DELIVERY_THREADS", "16")), thread_name_prefix="floor")
_numbers = itertools.count()
_sessions = threading.local()


def _deliver(number: int) -> int:
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = _direct.connect()
    return _direct(session, number)


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    route = (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
    if route == ("GET", "/healthz"):  # what `procs.connector` waits for
        status, body = "200 OK", {"status": "ok"}
    elif route == ("POST", "/v1/handoffs"):
        environ["wsgi.input"].read()
        try:
            vendor_status = _pool.submit(_deliver, next(_numbers)).result(timeout=60)
        except Exception as err:  # the run counts it as a failed call; the type says why
            status, body = "502 Bad Gateway", {"error": type(err).__name__}
        else:
            status = "201 Created" if vendor_status == 201 else "502 Bad Gateway"
            body = {"vendor_status": vendor_status}
    else:
        status, body = "404 Not Found", {"error": "the floor serves POST /v1/handoffs and GET /healthz"}
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]
