"""The load driver: closed-loop clients on keep-alive connections, bounded by count and by time.

`run(call, clients, total, duration_s)` starts `clients` threads; each repeats `call(conn, i)` (i is a
unique sequence number) until `total` calls were started or `duration_s` has passed, and records
the latency and status of each. A stuck call cannot outlive the run: every connection has a
timeout, and the run joins its threads with a deadline.
"""

from __future__ import annotations

import copy
import http.client
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import BOT_KEY, REPO

PACKET = REPO / "examples" / "handoff-full.json"


@dataclass(frozen=True)
class Sample:
    started: float  # seconds since the run began
    latency: float  # seconds
    status: int  # HTTP status; 0 for a transport error
    side: str = ""  # which call of an `Alternating` run answered


@dataclass
class Result:
    samples: list[Sample] = field(default_factory=list)
    elapsed: float = 0.0
    errors: list[str] = field(default_factory=list)

    def latencies(self, statuses: Sequence[int] = (200, 201, 202)) -> list[float]:
        return [s.latency for s in self.samples if s.status in statuses]

    def count(self, *statuses: int) -> int:
        return sum(1 for s in self.samples if s.status in statuses)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for sample in self.samples:
            counts[sample.status] = counts.get(sample.status, 0) + 1
        return dict(sorted(counts.items()))

    def of(self, side: str) -> Result:
        """The samples one side of an `Alternating` run answered (`errors` stay the run's)."""
        return Result([s for s in self.samples if s.side == side], self.elapsed, self.errors)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): p99 of 100 values is the 99th smallest."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


Call = Callable[[Any, int], int]


def run(connect: Callable[[], Any], call: Call, *, clients: int, total: int | None = None,
        duration_s: float | None = None, hard_limit_s: float = 600.0) -> Result:
    """Run closed-loop clients; stop at `total` calls or after `duration_s`, whichever comes first."""
    assert total or duration_s, "bound the run by a count or a duration"
    counter = itertools.count()
    result, lock = Result(), threading.Lock()
    begin = time.perf_counter()
    end = begin + min(duration_s or hard_limit_s, hard_limit_s)

    def client() -> None:
        conn = None
        while time.perf_counter() < end:
            number = next(counter)
            if total is not None and number >= total:
                break
            if conn is None:
                conn = connect()
            start, failed = time.perf_counter(), False
            try:
                status = call(conn, number)
            except (OSError, http.client.HTTPException) as err:
                status, failed = 0, True
                with lock:
                    if len(result.errors) < 20:
                        result.errors.append(f"{type(err).__name__}: {err}")
            finished = time.perf_counter()
            side = getattr(conn, "side", "")  # an `Alternating` call's connections say whose turn it was
            if failed:
                if isinstance(conn, _Connections):
                    conn.reset()  # only the side that failed reconnects
                else:
                    conn.close()
                    conn = None
            with lock:
                result.samples.append(Sample(start - begin, finished - start, status, side))
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, name=f"client-{n}", daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, end - time.perf_counter()) + 120)
    result.elapsed = time.perf_counter() - begin
    return result


# ---- calls ----------------------------------------------------------------------------------


class _Connections(dict):
    """One client's connections of an `Alternating` run, one per side, opened when first needed,
    and whose turn is next."""

    def __init__(self, connects: dict[str, Callable[[], Any]], turn: int):
        super().__init__()
        self.connects, self.turn, self.side = connects, turn, ""

    def of(self, side: str) -> Any:
        if side not in self:
            self[side] = self.connects[side]()
        return self[side]

    def reset(self) -> None:
        """Close the connection of the side that just failed; its next turn opens a new one."""
        failed = self.pop(self.side, None)
        if failed is not None:
            failed.close()

    def close(self) -> None:
        for conn in self.values():
            conn.close()


class Alternating:
    """Several calls that each client takes in turn (a, b, a, b …), holding a connection for every
    side: the sides of one run share the host's moments, so its drift falls on all of them alike.
    Clients start on different sides, so at any moment some run each. `Result.of(side)` splits the
    samples afterwards."""

    def __init__(self, **sides: tuple[Callable[[], Any], Call]):
        self.sides, self.names = sides, list(sides)
        self._starts = itertools.count()

    def connect(self) -> _Connections:
        return _Connections({name: connect for name, (connect, _) in self.sides.items()}, next(self._starts))

    def __call__(self, conns: _Connections, number: int) -> int:
        conns.side = self.names[conns.turn % len(self.names)]
        conns.turn += 1
        return self.sides[conns.side][1](conns.of(conns.side), number)


class Handoffs:
    """POST /v1/handoffs of the full sample packet, a new conversation each time (a new ticket).

    The packet is serialized once with placeholders; each call substitutes its own ids.
    """

    def __init__(self, base_url: str, run_id: str, targets: Sequence[str] | None = None, *,
                 reconnect: bool = False):
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port, self.run_id = host, int(port), run_id
        # Each call on a new connection (http.client opens one when the last was closed): the
        # worker that accepts a connection serves all of its requests, so only new connections
        # reach every worker (the warm-up's).
        self.reconnect = reconnect
        packet = copy.deepcopy(json.loads(PACKET.read_text(encoding="utf-8")))
        # Not a sticky-routed segment: sticky routing asks Zendesk for the previous agent before the
        # handoff is stored (a vendor round trip of its own); the benchmark measures the delivery path.
        packet["customer"]["segment"] = "standard"
        # No status callbacks: the benchmark's bot has no receiver, and the direct call has none to send.
        packet.pop("callback", None)
        # A new conversation and customer each time: every handoff opens a ticket of its own.
        packet["conversation"]["id"] = "@@CONV@@"
        packet["customer"]["email"] = "customer-@@CONV@@@example.com"
        if targets:
            packet["targets"] = list(targets)
        self.template = json.dumps(packet)
        self.statuses: dict[int, int] = {}

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=65)

    def body(self, number: int) -> bytes:
        return self.template.replace("@@CONV@@", f"bench-{self.run_id}-{number}").encode()

    def __call__(self, conn: http.client.HTTPConnection, number: int) -> int:
        conn.request("POST", "/v1/handoffs", body=self.body(number), headers={
            "Authorization": f"Bearer {BOT_KEY}", "Content-Type": "application/json",
            "Idempotency-Key": f"bench-{self.run_id}-{number}"})
        response = conn.getresponse()
        response.read()
        if self.reconnect or response.getheader("Connection", "").lower() == "close":
            conn.close()
        return response.status


def write_samples(path: Path, result: Result) -> None:
    path.write_text("\n".join(f"{s.started:.6f} {s.latency:.6f} {s.status}" for s in result.samples) + "\n")
