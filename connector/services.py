"""What the app holds for its lifetime: settings, database, mappings, adapters, the outbox and the
threads that deliver. Built once by `create_app`, reached through `current_services()`."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from flask import Flask, current_app
from sqlalchemy.exc import SQLAlchemyError

from adapters import registry
from adapters.base import Adapter

from .db import Database
from .mappings import Mappings, load_mappings
from .outbox import Outbox, release_all
from .settings import Settings

log = logging.getLogger(__name__)
REPORT_EVERY_S = 60.0


@dataclass
class Services:
    settings: Settings
    db: Database
    mappings: Mappings
    adapters: dict[str, Adapter]
    outbox: Outbox
    executor: ThreadPoolExecutor
    _loop: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _running: int = 0  # deliveries submitted and not yet finished, in this process

    @classmethod
    def build(cls, settings: Settings, root: str) -> "Services":
        mappings = load_mappings(settings.mappings_dir, root, list(registry.TARGETS))
        adapters = registry.build_adapters(settings, mappings.targets)
        db = Database(settings.database_url, root)
        return cls(
            settings=settings,
            db=db,
            mappings=mappings,
            adapters=adapters,
            outbox=Outbox(db, adapters, settings),
            executor=ThreadPoolExecutor(max_workers=settings.delivery_threads, thread_name_prefix="deliver"),
        )

    def submit(self, delivery_id: int, token: str | None = None) -> Future:
        with self._count_lock:
            self._running += 1
        return self.executor.submit(self._run_logged, delivery_id, token)

    def _run_logged(self, delivery_id: int, token: str | None) -> str | None:
        try:
            return self.outbox.run_delivery(delivery_id, token)
        except Exception:  # the lease expires and the loop retries; never kill the pool thread
            log.exception("delivery run crashed", extra={"delivery_id": delivery_id})
            return None
        finally:
            with self._count_lock:
                self._running -= 1

    # ---- the background loop (embedded worker) ------------------------------------------

    def start_loop(self, interval: float = 1.0) -> None:
        """Deliver what is due (retries, leftovers of a restart) until `stop()`."""
        if self._loop is not None:
            return
        self._stop.clear()
        self._loop = threading.Thread(target=self._run_loop, args=(interval,), name="outbox-loop", daemon=True)
        self._loop.start()
        log.info("outbox loop started", extra={"owner": self.outbox.owner})

    def _run_loop(self, interval: float) -> None:
        last_report = 0.0
        while not self._stop.is_set():
            try:
                # Claim no more than there are free threads: claimed work waits in no queue.
                free = max(0, self.settings.delivery_threads - self._in_flight())
                if free:
                    ids, token = self.outbox.claim_due(limit=free)
                    for delivery_id in ids:
                        self.submit(delivery_id, token)
                if time.monotonic() - last_report >= REPORT_EVERY_S:
                    last_report = time.monotonic()
                    counts = self.outbox.counts()
                    if counts:
                        log.info("outbox backlog", extra={"deliveries": counts})
            except Exception:
                log.exception("outbox loop iteration failed")
            self._stop.wait(interval)

    def _in_flight(self) -> int:
        with self._count_lock:
            return self._running

    def stop(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.join(timeout=5)
            self._loop = None
        self.executor.shutdown(wait=True, cancel_futures=True)
        try:
            released = release_all(self.db, self.outbox.owner)
        except SQLAlchemyError as err:  # the leases will simply expire
            log.warning("could not release leases at shutdown", extra={"error": type(err).__name__})
        else:
            if released:
                log.info("released leases at shutdown", extra={"released": released})
        self.db.dispose()


def current_services() -> Services:
    return current_app.extensions["connector"]


def init_app(app: Flask, services: Services) -> None:
    app.extensions["connector"] = services
