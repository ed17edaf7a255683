"""Prometheus metrics: what an operator graphs and alerts on, at `GET /metrics`.

Two kinds, kept apart on purpose:

* **Events** counted where they happen, in the process they happen in — requests answered,
  delivery attempts and their outcomes, status callbacks sent. Under gunicorn every worker (and a
  `connector worker` process sharing the directory) writes them to files in
  `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode, set up by `gunicorn.conf.py`),
  and a scrape of any worker adds them all up. Without that variable they live in this process.
* **Backlog** read from the database at scrape time — deliveries waiting, retrying or given up per
  target, callbacks owed, targets paused. The database is the truth every process shares, so
  these are never summed over workers or lost with one.

Labels have few values: targets, outcomes, a route's pattern (never its path: ids would make a new
series per handoff).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .db import reason
from .settings import refused_edit, writable_directory

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

# The events' own registry: a scrape in one process reads these (or, in multiprocess mode, every
# process's files); the process and platform collectors of the default registry are left out,
# since under gunicorn they would describe only the worker that happened to answer.
EVENTS = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "connector_http_requests", "Requests answered, by route pattern, method and status code.",
    ["route", "method", "status"], registry=EVENTS)
REQUEST_SECONDS = Histogram(
    "connector_http_request_duration_seconds",
    "Time to answer, by route pattern (for POST /v1/handoffs: what a bot waits, the sync budget included).",
    ["route", "method"], registry=EVENTS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
DELIVERY_ATTEMPTS = Counter(
    "connector_delivery_attempts",
    "Delivery attempts by target and outcome: created, updated, retry (will be tried again), "
    "failed (refused for good), dead (retries exhausted).",
    ["target", "outcome"], registry=EVENTS)
DELIVERY_SECONDS = Histogram(
    "connector_delivery_attempt_duration_seconds", "Time of one delivery attempt at the vendor, by target.",
    ["target"], registry=EVENTS, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
CALLBACKS = Counter(
    "connector_status_callbacks", "Status callback attempts by outcome: sent, retry, dead.",
    ["outcome"], registry=EVENTS)
PURGED = Counter(
    "connector_purged", "Rows forgotten for being older than CONNECTOR_RETENTION_DAYS, by kind: handoffs, "
    "follow_ups (messages sent while a handoff waited), conversation_links, unsent_callbacks (given up or put "
    "aside, never to be resent).",
    ["kind"], registry=EVENTS)


def safely(record: Callable[..., None]) -> Callable[..., None]:
    """Counting must never change what happens: a failure to record (its directory removed by a
    /tmp cleaner, say) is logged and dropped — not a retried delivery (a second ticket) or a 500."""
    @functools.wraps(record)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            record(*args, **kwargs)
        except Exception as err:
            log.warning("metrics: could not record", extra={"metric": record.__name__, "error": type(err).__name__})
    return guarded


@safely
def attempted(target: str, state: str, seconds: float | None = None) -> None:
    """One delivery attempt ended in `state` (its row's state after it), at the vendor for `seconds`."""
    DELIVERY_ATTEMPTS.labels(target, delivery_outcome(state)).inc()
    if seconds is not None:
        DELIVERY_SECONDS.labels(target).observe(seconds)


@safely
def callback_sent(status: str) -> None:
    CALLBACKS.labels("retry" if status == "pending" else status).inc()


@safely
def purged(handoffs: int, follow_ups: int, links: int, unsent_callbacks: int = 0) -> None:
    for kind, rows in (("handoffs", handoffs), ("follow_ups", follow_ups), ("conversation_links", links),
                       ("unsent_callbacks", unsent_callbacks)):
        PURGED.labels(kind).inc(rows)


def delivery_outcome(state: str) -> str:
    """A delivery's state after an attempt, as the `outcome` label ("pending" is a retry)."""
    return "retry" if state == "pending" else state


class Backlog(Collector):
    """What the database holds right now, read at scrape time (one grouped query per table)."""

    def __init__(self, services: Services):
        self.services = services

    def collect(self) -> Iterator[Metric]:
        deliveries = GaugeMetricFamily(
            "connector_deliveries", "Deliveries not delivered, by target and state: pending (first try not yet "
            "made or waiting), retrying, dead (retries exhausted, replayable), failed (refused, replayable); not "
            "those whose messages a later batch carried since.",
            labels=["target", "state"])
        callbacks = GaugeMetricFamily(
            "connector_status_callbacks_owed", "Status callbacks owed, by status: pending, dead (given up; "
            "not those dismissed, nor a bot's without a signing secret).",
            labels=["status"])
        paused = GaugeMetricFamily(
            "connector_target_paused", "1 while a target is paused at its vendor's request (a 429).",
            labels=["target"])
        up = GaugeMetricFamily("connector_backlog_up", "1 when this scrape could read the backlog (the database "
                               "answered, the enabled targets could be built).")
        # Read from the files, not the database: answered even while the database is away.
        mappings_ok = GaugeMetricFamily(
            "connector_mappings_ok", "0 while an edit of the mapping files is refused (the last good set serves; "
                                     "a restart would stop on the file): /readyz names the file and line.")
        _ = self.services.mappings  # looks at the files, as /readyz does
        mappings_ok.add_metric([], 0 if self.services.mapping_store.errors is not None else 1)
        yield mappings_ok
        settings_ok = GaugeMetricFamily(
            "connector_settings_ok", "0 while the settings edit a reload (SIGHUP) read is refused (the settings in "
                                     "use serve; a restart would stop on the file): /readyz names the variable.")
        settings_ok.add_metric([], 0 if refused_edit() is not None else 1)
        yield settings_ok
        try:
            # Every enabled target has its series, at 0 when nothing waits: an alert on a series
            # that appears only once there is trouble cannot tell "fine" from "not scraped".
            enabled = set(self.services.adapters)
            counts = self.services.outbox.counts(enabled)
            for target in sorted(counts):
                for state, number in counts[target].items():
                    deliveries.add_metric([target, state], number)
            for status, number in sorted(self.services.callbacks.counts().items()):
                callbacks.add_metric([status], number)
            now_paused = set(self.services.outbox.paused_targets())
            for target in sorted(enabled | now_paused):
                paused.add_metric([target], 1 if target in now_paused else 0)
        except Exception as err:  # the database away, or anything else: say so, answer
            log.warning("metrics: the backlog could not be read", extra={"error": reason(err)})
            up.add_metric([], 0)
            yield up  # the event counters still answer; the backlog is unknown, not zero
            return
        up.add_metric([], 1)
        yield from (deliveries, callbacks, paused, up)


def exposition(services: Services) -> bytes:
    """The text a scrape receives: every process's events (or this one's) and the backlog."""
    registry = CollectorRegistry()
    # The mode prometheus-client chose when first imported, not the variable now: imported before
    # gunicorn.conf.py set it (`--preload`), counts stay in each process, and the directory is empty.
    if getattr(values.ValueClass, "_multiprocess", False):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(EVENTS)
    registry.register(Backlog(services))
    return generate_latest(registry)


def check_directory(environ: Mapping[str, str]) -> None:
    """At start-up: a `PROMETHEUS_MULTIPROC_DIR` this process cannot write would make every counted
    event fail later (a request answered 500, a delivery attempt retried) — refuse to start instead.
    A missing one is made, as gunicorn.conf.py makes it: set in `.env`, it reaches every `flask`
    command too, and `check` or `purge` before the first `make run` should not fail for it."""
    directory = environ.get(MULTIPROCESS_DIR)
    if directory:
        writable_directory(MULTIPROCESS_DIR, directory)


def process_gone(pid: int) -> None:
    """A worker exited: drop its live-gauge files (counters and histograms keep what it counted)."""
    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(pid)


def init_app(app: Flask) -> None:
    """Count and time every request the app answers (error answers included)."""
    app.before_request(_started)
    app.after_request(_answered)


def _started() -> None:
    g.metrics_started = time.perf_counter()


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route_refusing_the_method() -> str:
    """The route of a `405` (`DELETE /v1/handoffs` matched no rule, so it was "(no route)", with the
    paths no route has); "(no route)" for those."""
    refused = request.routing_exception
    if isinstance(refused, MethodNotAllowed) and refused.valid_methods:
        try:
            rule, _ = current_app.url_map.bind_to_environ(request.environ).match(
                method=sorted(refused.valid_methods)[0], return_rule=True)
            return str(rule.rule)
        except HTTPException:
            pass
    return "(no route)"


def _answered(response: Response) -> Response:
    _count_request(response.status_code)
    return response


@safely
def _count_request(status: int) -> None:
    route = request.url_rule.rule if request.url_rule is not None else _route_refusing_the_method()
    # Any word is a method to HTTP: a stranger's made-up ones would each open a series that lives
    # as long as the process (and its file, under gunicorn).
    method = request.method if request.method in _METHODS else "(other)"
    REQUESTS.labels(route, method, str(status)).inc()
    started = g.get("metrics_started")
    if started is not None:
        REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)
