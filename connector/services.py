"""What the app holds for its lifetime: settings, database, mappings, adapters, the outbox and the
threads that deliver. Built once by `create_app`, reached through `current_services()`."""

from __future__ import annotations

import logging
import threading
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

    def submit(self, delivery_id: int) -> Future:
        return self.executor.submit(self._run_logged, delivery_id)

    def _run_logged(self, delivery_id: int) -> str | None:
        try:
            return self.outbox.run_delivery(delivery_id)
        except Exception:  # the lease expires and the loop retries; never kill the pool thread
            log.exception("delivery run crashed", extra={"delivery_id": delivery_id})
            return None

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
        while not self._stop.is_set():
            try:
                for delivery_id in self.outbox.due():
                    self.submit(delivery_id)
            except Exception:
                log.exception("outbox loop iteration failed")
            self._stop.wait(interval)

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
