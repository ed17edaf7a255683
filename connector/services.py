"""What the app holds for its lifetime: settings, database, mappings, adapters, the outbox and the
threads that deliver. Built once by `create_app`, reached through `current_services()`."""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import tenacity
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from adapters import registry
from adapters.base import Adapter
from adapters.errors import DeliveryError, OutcomeUnknown, TransientError
from adapters.events import AssignmentEvent, Holder

from . import (
    assignments,
    business_hours,
    callbacks,
    customer_message,
    handoff_store,
    kept_tickets,
    retention,
    routing_schema,
)
from .db import Database, reason, service_busy_timeout
from .group_commit import GroupCommit
from .jsonlog import log_context
from .loop_failures import LoopFailures
from .mappings import Mappings, MappingStore
from .models import Handoff, names_a_row
from .observed_wait import ObservedWait
from .outbox import REPLAYABLE, Attempted, Outbox, dismiss, of_targets_not_enabled, release_all, replay
from .settings import Settings
from .template_trial import template_warnings

log = logging.getLogger(__name__)
REPORT_EVERY_S = 60.0
CLAIM_COALESCE_S = 0.05
# An agent's notice is worth a short wait: Slack allows about one message a second per channel, so
# claims at once meet 429s whose Retry-After is a second or two. Longer than this, it is stale.
NOTICE_TRIES, NOTICE_WAIT_MAX_S = 3, 30.0


def setup_warnings(settings: Settings, adapters: Mapping[str, Adapter], db: Database | None = None) -> list[str]:
    """The settings', the targets' and the database's warnings (`Services.warnings`); without `db`
    for a reload, which cannot change the database."""
    return [*settings.warnings(), *(w for adapter in adapters.values() for w in adapter.setting_warnings()),
            *template_warnings(adapters), *(db.warnings() if db is not None else ())]


# What serves in place of a mapping file that is not there.
_IN_PLACE = {"routing.yaml": "one rule, no teams, no business hours: every handoff goes to the default team",
             "messages.yaml": "the built-in customer messages, in English only"}


def absent_warnings(mappings: Mappings, enabled: Collection[str]) -> list[str]:
    """A mapping file not there serves the built-in defaults: said, since a file moved away (or never
    copied in a deploy) changed routing, messages or a target's redaction without a word. The
    built-in preview renders every vendor's payload from that vendor's file: each is named where
    it is enabled (a staging copy without zendesk.yaml previewed the shipped ticket, unsaid)."""
    if not mappings.loaded:
        return []
    renders = registry.vendor_names() if registry.BUILT_IN in enabled else []
    names = [f"{target}.yaml" for target in dict.fromkeys([*enabled, *renders]) if f"{target}.yaml" in mappings.absent]
    names += [name for name in _IN_PLACE if name in mappings.absent]
    return [f"{name} is not in {mappings.source}: {_IN_PLACE.get(name, 'the built-in defaults serve for that target')}"
            for name in names]


def routing_warnings(adapters: Mapping[str, Adapter], routing: Mapping[str, Any]) -> list[str]:
    """What each enabled target finds risky in routing.yaml (a Slack channel named, not its id)."""
    return [warning for adapter in adapters.values() for warning in adapter.routing_warnings(routing)]


def mapping_warnings(adapters: Mapping[str, Adapter], mappings: Mappings) -> list[str]:
    """What an edit of the mappings is logged with (`check` and the start-up say it too): each
    target's own (a Slack channel named, not its id; a Salesforce key it ignores), routing's, and
    messages.yaml's team names. After an edit only routing's were, and `check` alone said the rest."""
    return [*(w for adapter in adapters.values() for w in adapter.mapping_warnings()),
            *routing_warnings(adapters, mappings.routing),
            *business_hours.zone_warnings(mappings.routing.get("calendars") or {}),
            *routing_schema.shadowed_rules(mappings.routing),
            *customer_message.warnings(mappings.messages, mappings.routing)]


class Services:
    """Mappings are live (`MappingStore`): an edit is picked up without a restart, and the adapters
    are rebuilt from the new set; a bad edit keeps the last good set (and `check` reports it)."""

    def __init__(self, settings: Settings, root: str, fallback: Mappings | None = None):
        self.settings = settings
        # A set serves only if the enabled adapters can be built from it: missing credentials stop
        # start-up, naming the variable, and an edit an adapter refuses is refused like any other.
        # `fallback`: what a gunicorn worker serves when an edit is bad as it boots (`mappings.inherited`).
        self.mapping_store = MappingStore(settings.mappings_dir, root, list(registry.TARGETS),
                                          keys_of=registry.mapping_keys, fallback=fallback,
                                          vendor_check=lambda name, data: registry.adapter_class(name)(settings, data),
                                          check=lambda mappings: registry.build_adapters(settings, mappings.targets))
        self._adapters_lock = threading.Lock()
        self._adapters_source: Mappings | None = None
        self._adapters: dict[str, Adapter] = {}
        self.adapters  # build once now, from the set the store checked  # noqa: B018
        self.db = Database(settings.database_url, root, service_busy_timeout(settings.sync_budget_ms))
        # Concurrent requests store their handoffs together, in one transaction (group_commit.py).
        self.store_handoff: GroupCommit[handoff_store.NewHandoff, handoff_store.Stored | None] = GroupCommit(
            lambda group: handoff_store.store(self.db, group))
        self.observed_wait = ObservedWait(self.db, lambda: self.mappings.routing)
        self.clock: Callable[[], float] = time.time  # the wall clock signature windows are checked against
        self.outbox = Outbox(self.db, lambda: self.adapters, settings, defer=self._defer,
                             callback_owed=self.wake_callbacks,
                             held=lambda *held, **named: assignments.held(self, *held, **named),
                             recorded=self.ticket_recorded,
                             kept=lambda handoff, delivery: kept_tickets.keep(self, handoff, delivery))
        self.executor = ThreadPoolExecutor(max_workers=settings.delivery_threads, thread_name_prefix="deliver")
        self._loop: threading.Thread | None = None
        self._stop = threading.Event()
        self._freed = threading.Event()  # a delivery thread finished (the loop may claim again)
        self._left_for_loop = threading.Event()  # a request left deliveries to the loop (pool full)
        self._count_lock = threading.Lock()
        self._running = 0  # deliveries submitted and not yet finished, in this process
        self._attempting: set[int] = set()  # the deliveries whose attempt is running now (their leases renewed)
        # Status callbacks to bots: their own outbox, threads and loop, so a slow bot never holds
        # a thread a delivery needs.
        self.callbacks = callbacks.Sender(self.db, settings, self.outbox.owner)
        self._callback_pool = ThreadPoolExecutor(max_workers=settings.callback_threads, thread_name_prefix="callback")
        self._callback_loop: threading.Thread | None = None
        self._sending: set[int] = set()  # ids of the callbacks handed to the pool and not yet recorded
        self._callbacks_due = threading.Event()  # a send finished or a state was reached here: look now
        # Messages to agents about their own actions (a Claim click answered): few, quick, cosmetic.
        self._notices = ThreadPoolExecutor(max_workers=2, thread_name_prefix="notice")

    @property
    def mappings(self) -> Mappings:
        return self.mapping_store.current()

    @property
    def adapters(self) -> dict[str, Adapter]:
        """The enabled targets, built from the current mappings (rebuilt when they change)."""
        current = self.mappings
        if current is not self._adapters_source:
            with self._adapters_lock:
                if current is not self._adapters_source:
                    edited = self._adapters_source is not None
                    self._adapters = registry.build_adapters(self.settings, current.targets)
                    self._adapters_source = current
                    if edited:  # at start-up `log_warnings` says it; after an edit, here
                        for warning in [*template_warnings(self._adapters), *mapping_warnings(self._adapters, current)]:
                            log.warning("mapping to look at", extra={"warning": warning})
        return self._adapters

    def warnings(self) -> list[str]:
        """What is risky or useless in this setup without being wrong: `connector check` lists it,
        the service logs it at start-up."""
        return [*setup_warnings(self.settings, self.adapters, self.db), *absent_warnings(self.mappings, self.adapters),
                *mapping_warnings(self.adapters, self.mappings)]

    def reserve(self, wanted: int) -> int:
        """Take up to `wanted` of the pool's free threads for a request's fresh deliveries.

        What a request cannot run at once it leaves, unclaimed and due, to the loop, which claims
        no more than there are free threads. Queuing it on the pool instead kept every waiting
        handoff in memory: in the benchmark's burst (10,000 handoffs in 29 s) a worker grew 27 %
        and kept it.
        """
        with self._count_lock:
            taken = max(0, min(wanted, self.settings.delivery_threads - self._running))
            self._running += taken
        if taken < wanted:
            self._left_for_loop.set()
        return taken

    def release(self, count: int) -> None:
        """Give back reserved threads that were not used."""
        if count > 0:
            with self._count_lock:
                self._running -= count
            self._freed.set()

    def submit(self, delivery_id: int, token: str | None = None, fresh: Handoff | None = None,
               prepared: bool = False, reserved: bool = False) -> Future:
        """Run one attempt on the pool; the future's result is the `Attempted` (or None).
        `reserved`: its thread was taken by `reserve`."""
        if not reserved:
            with self._count_lock:
                self._running += 1
        return self.executor.submit(self._run_logged, delivery_id, token, fresh, prepared)

    def replay_one(self, delivery_id: int) -> bool:
        """Put one dead or failed delivery back and attempt it now (it looks the handoff up at the
        vendor first: `outbox.replay`); False when it was neither. An id beyond the database's
        integers names no delivery (a URL may hold any number: not an overflow's 500)."""
        if not names_a_row(delivery_id) or not replay(self.db, ids=[delivery_id], states=REPLAYABLE,
                                                      enabled=self.settings.targets):
            return False
        self.submit(delivery_id)
        return True

    def replay_given_up(self, states: tuple[str, ...], *, ids: list[int] | None = None,
                        target: str | None = None) -> tuple[list[int], list[int]]:
        """Queue given-up deliveries again (`outbox.replay`): those replayed, and those left alone
        because their target is not enabled here (a replay of one failed at once, attempts 0)."""
        enabled = self.settings.targets
        return (replay(self.db, ids=ids, states=states, target=target, enabled=enabled),
                of_targets_not_enabled(self.db, ids=ids, states=states, target=target, enabled=enabled))

    def dismiss_one(self, delivery_id: int) -> bool:
        """Put one dead or failed delivery, or a pending one of a target not served here, aside for good
        (`outbox.dismiss`); False when it was none of these."""
        return names_a_row(delivery_id) and bool(dismiss(self.db, ids=[delivery_id], states=REPLAYABLE,
                                                         served=list(self.adapters)))

    def _run_logged(self, delivery_id: int, token: str | None, fresh: Handoff | None = None,
                    prepared: bool = False) -> Attempted | None:
        with self._count_lock:
            self._attempting.add(delivery_id)
        try:
            return self.outbox.run_delivery(delivery_id, token, fresh=fresh, prepared=prepared)
        except Exception:  # its lease is no longer renewed: it expires, and the loop retries, looking first
            log.exception("delivery run crashed", extra={"delivery_id": delivery_id})
            return None
        finally:
            with self._count_lock:
                self._attempting.discard(delivery_id)
                self._running -= 1
            self._freed.set()

    # ---- the background loop (embedded worker) ------------------------------------------

    def start_loop(self, interval: float = 1.0) -> None:
        """Deliver what is due (retries, leftovers of a restart) until `stop()`."""
        if self._loop is not None:
            return
        self._stop.clear()
        # Each loop renews its running leases once a turn: a turn longer than a third of a lease
        # (CONNECTOR_POLL_INTERVAL_S 60 beside CONNECTOR_LEASE_S 60) let a running attempt's lease
        # lapse, and another worker ran the same delivery at the same time.
        turn = min(interval, self.settings.lease_s / 3)
        callback_turn = min(interval, self.callbacks.lease.total_seconds() / 3)
        if turn < interval:
            log.warning("the poll interval is longer than a third of the lease: the loop turns every %g s to keep "
                        "running attempts' leases alive", turn,
                        extra={"poll_interval_s": interval, "lease_s": self.settings.lease_s})
        self._loop = threading.Thread(target=self._run_loop, args=(turn,), name="outbox-loop", daemon=True)
        self._loop.start()
        self._callback_loop = threading.Thread(target=self._run_callbacks, args=(callback_turn,), name="callback-loop",
                                               daemon=True)
        self._callback_loop.start()
        log.info("outbox loop started", extra={"owner": self.outbox.owner})

    def _run_loop(self, interval: float) -> None:
        last_report = last_renewal = next_purge = 0.0
        failures = LoopFailures("outbox")
        while not self._stop.is_set():
            full = False
            try:
                # Keep the leases of running attempts alive (see Outbox.renew_leases).
                if time.monotonic() - last_renewal >= self.settings.lease_s / 3:
                    last_renewal = time.monotonic()
                    self._renew_running()
                # An edited mapping file is read (and a bad edit logged) now, not when the next
                # request happens to arrive: an admin watching the log sees the verdict at once.
                self.mapping_store.current()
                # Claim no more than there are free threads: claimed work waits in no queue.
                free = max(0, self.settings.delivery_threads - self._in_flight())
                if free:
                    self._freed.clear()
                    ids, token = self.outbox.claim_due(limit=free)
                    full = len(ids) == free
                    for delivery_id in ids:
                        self.submit(delivery_id, token)
                if time.monotonic() - last_report >= REPORT_EVERY_S:
                    last_report = time.monotonic()
                    counts = self.outbox.counts()
                    # Only while something waits: given-up rows alone (dead, failed) stay until an
                    # operator replays or dismisses them, and repeated them every minute for ever.
                    if any(states["pending"] or states["retrying"] for states in counts.values()):
                        log.info("outbox backlog", extra={"deliveries": counts})
                if self.settings.retention_days and time.monotonic() >= next_purge:
                    # One chunk per turn (deliveries are claimed between chunks); at once again
                    # while whole chunks go, then hourly. A failure waits for the hour too.
                    next_purge = time.monotonic() + retention.EVERY_S
                    before = retention.cutoff(self.settings.retention_days)
                    if retention.purge(self.db, before, max_chunks=1).more:
                        next_purge = 0.0
                failures.succeeded()
            except Exception as err:
                failures.failed(err)
            if full or self._left_for_loop.is_set():
                self._left_for_loop.clear()
                # More may be due: claim again once threads free up, not a whole interval later.
                # Polling once per interval drained a backlog (deliveries held by a 429 pause) at
                # `delivery_threads` per second per worker, whatever the vendor's pace: the
                # benchmark's burst spent its last ~50 s there. The short pause lets a few
                # threads free up, so one claim serves several.
                self._freed.wait(interval)
                self._stop.wait(CLAIM_COALESCE_S)
            else:
                self._stop.wait(interval)

    def _run_callbacks(self, interval: float) -> None:
        """Send the status callbacks that are due, a pool thread each, until `stop()`; keep the
        leases of those being sent alive meanwhile (a slow bot must not get a second copy)."""
        last_renewal = 0.0
        failures = LoopFailures("callback")
        while not self._stop.is_set():
            full = False
            self._callbacks_due.clear()
            try:
                renew_every = self.callbacks.lease.total_seconds() / 3
                sending = self._callbacks_sending()
                if sending and time.monotonic() - last_renewal >= renew_every:
                    last_renewal = time.monotonic()
                    self.callbacks.renew(sending)
                free = self.settings.callback_threads - len(sending)
                if free > 0:
                    due = self.callbacks.claim_due(free)
                    full = len(due) == free
                    for one in due:
                        with self._count_lock:
                            self._sending.add(one.id)
                        self._callback_pool.submit(self._send_callback, one)
                failures.succeeded()
            except Exception as err:  # the next turn tries again; claimed callbacks' leases expire
                failures.failed(err)
            if full:  # more may be due: look again soon rather than an interval later
                self._stop.wait(CLAIM_COALESCE_S)
            else:  # a new state, or a handoff's next callback (held back for order): claim it at once
                self._callbacks_due.wait(interval)

    def _send_callback(self, due: callbacks.Due) -> None:
        try:
            self.callbacks.send(due)
        except Exception:  # its outcome could not be recorded: no longer renewed, its lease lapses
            log.exception("status callback crashed", extra={"handoff_id": due.handoff_id})
        finally:
            with self._count_lock:
                self._sending.discard(due.id)
            self._callbacks_due.set()

    def wake_callbacks(self) -> None:
        """A callback was owed in this process: the loop looks at once (others, at their next poll)."""
        self._callbacks_due.set()

    def tell_agent(self, event: AssignmentEvent, holder: Holder, ticket_id: str) -> None:
        """The target tells the agent whose action `event` reported who holds the handoff, on its
        ticket `ticket_id` (`Adapter.claim_answered`). On a small pool of its own, never on the
        request (Slack wants its answer within three seconds) nor on the delivery threads. Best
        effort: a notice the vendor refused for its rate limit, or that never reached it, is sent
        again after the vendor's Retry-After — up to `NOTICE_TRIES` tries and `NOTICE_WAIT_MAX_S`
        of waiting in all, and never once `stop()` has begun; one whose fate is unknown is not
        (the agent may have been told). Then a failure is logged. Two threads: notices waiting
        out a rate limit hold up the others, which would meet the same limit."""
        self._notify(event.target, "claim_answered", lambda: ((event, holder, ticket_id),))

    def tell_other_targets(self, handoff_id: str, holder: Holder) -> None:
        """The handoff's tickets at its other targets say that `holder` took it at theirs, where
        they would invite their own agents to take it too (`Adapter.taken_elsewhere`: a Slack
        alert's Claim button). Its tickets are read on the notices' pool, off the request."""
        for target in self.adapters:
            if target != holder.target:
                self._notify(target, "taken_elsewhere", functools.partial(self._to_mark, handoff_id, target, holder))

    def tell_solved(self, handoff_ids: Sequence[str], solved_at: str) -> None:
        """The handoffs' tickets at their other targets say they were solved at `solved_at`, where
        they would invite their own agents to take them (`Adapter.completed_elsewhere`: a Slack
        alert's Claim button). Read and sent on the notices' pool, off the request."""
        for target in self.adapters:
            if target != solved_at and handoff_ids:
                # One notice for them all, in turn: their alert, shared, was read and edited by each at once.
                self._notify(target, "completed_elsewhere",
                             functools.partial(self._to_close, list(handoff_ids), target, solved_at))

    def _to_close(self, handoff_ids: Sequence[str], target: str, solved_at: str,
                  only_completed: bool = False) -> list[tuple[Any, ...]]:
        """`completed_elsewhere`'s arguments for each of the handoffs' tickets at `target`;
        `only_completed`: of those the vendors said were solved."""
        with self.db.reading() as session:
            if only_completed:  # one light read: most recorded tickets' handoffs are not solved (nothing more)
                handoff_ids = session.scalars(select(Handoff.id).where(Handoff.id.in_(handoff_ids),
                                                                       Handoff.completed_at.is_not(None))).all()
            return [(handoff_id, solved_at, ticket) for handoff_id in handoff_ids
                    for _, ticket in assignments.to_mark(session, handoff_id, target,
                                                         Holder(solved_at, "", None, first=False))]

    def ticket_recorded(self, handoff_id: str, target: str) -> None:
        """`target`'s ticket of the handoff was just recorded: if an agent took the handoff at
        another target before (their take found no ticket here to mark: a Slack alert still being
        posted, or retried), it says so now — it went up inviting the channel to Claim (a review).
        Whichever of the two reads second sees the other's commit: one of them marks it. So with a
        solve before it was recorded (`completed_elsewhere`; where is not kept: said without it) —
        a Slack alert retried past a 429 kept its Claim button for good (a review of the mend)."""
        self._notify(target, "taken_elsewhere", functools.partial(self._to_mark, handoff_id, target, None))
        self._notify(target, "completed_elsewhere",
                     functools.partial(self._to_close, [handoff_id], target, "", only_completed=True))

    def _to_mark(self, handoff_id: str, target: str, holder: Holder | None) -> list[tuple[Any, ...]]:
        """`taken_elsewhere`'s arguments for each of the handoff's tickets at `target`."""
        with self.db.reading() as session:
            return assignments.to_mark(session, handoff_id, target, holder)

    def _notify(self, target: str, method: str, calls: Callable[[], Sequence[tuple[Any, ...]]]) -> None:
        """`method` of `target`'s adapter called with each of `calls()`'s arguments, on a small pool
        of its own (see `tell_agent`). Nothing queued when the adapter does not override it."""
        adapter = self.adapters.get(target)
        if adapter is None or getattr(type(adapter), method) is getattr(Adapter, method):
            return  # the vendor shows the agent the assignment itself: nothing to queue
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_notice_worth_another_try),
            stop=tenacity.stop_any(tenacity.stop_after_attempt(NOTICE_TRIES), _notice_waits_too_long),
            wait=_vendors_wait, sleep=self._nap, reraise=True)

        def tell() -> None:
            ticket_id = None  # the last argument of each call
            try:
                with log_context(target=target):  # the adapter's own lines too: not the event's target
                    for args in calls():
                        ticket_id = args[-1]
                        retrying(getattr(adapter, method), *args)
            except _ShuttingDown:
                log.info("notice to the agent dropped at shutdown", extra={"target": target})
            except DeliveryError as err:
                log.warning("could not tell the agent who holds the handoff",
                            extra={"target": target, "ticket_id": ticket_id, "error": str(err)})
            except Exception:  # nobody reads the future: unlogged, the failure would vanish
                log.exception("telling the agent who holds the handoff failed", extra={"target": target})

        try:
            # In the caller's log context (a pool thread has its own): the notice's lines, and the
            # adapter's on the way, name the handoff as the event's own lines do.
            self._notices.submit(contextvars.copy_context().run, tell)
        except RuntimeError:  # shutting down: the notice is a courtesy, skip it
            pass

    def _nap(self, seconds: float) -> None:
        """A notice's wait for the vendor's Retry-After, cut short by `stop()`, which then ends it:
        tenacity would otherwise try once more after a sleep that returned early."""
        if self._stop.wait(seconds):
            raise _ShuttingDown

    def _callbacks_sending(self) -> set[int]:
        with self._count_lock:
            return set(self._sending)

    def _defer(self, work: Callable[[], None]) -> None:
        """Follow-up work on the delivery pool, counted as a running thread like a delivery (so
        `reserve` never hands out a thread it occupies)."""
        def logged() -> None:
            try:
                work()
            except Exception:  # follow-up work is best effort; the deliveries are recorded
                log.exception("follow-up work failed")
            finally:
                self.release(1)

        with self._count_lock:
            self._running += 1
        try:
            self.executor.submit(logged)
        except RuntimeError:  # shutting down: the links are cosmetic, skip them
            self.release(1)

    def _renew_running(self) -> None:
        with self._count_lock:
            running = set(self._attempting)
        self.outbox.renew_leases(running)

    def _finish_attempts(self) -> None:
        """Wait for the running attempts, their leases still renewed: the loop that renews them has
        stopped, and an attempt outlasting its lease (a slow Slack posting a long thread, at a
        SIGTERM) was claimed by another worker and run there at the same time — parts posted twice.
        Each attempt ends within its vendor calls' deadlines; gunicorn's graceful timeout ends a
        web worker's wait, and the leases of what it cut then lapse as a crash's do."""
        finished = threading.Event()

        def renew() -> None:
            while not finished.wait(self.settings.lease_s / 3):
                try:
                    self._renew_running()
                except SQLAlchemyError as err:  # tried again next turn; the lease may still lapse
                    log.warning("could not renew running attempts' leases while stopping",
                                extra={"error": reason(err)})

        renewer = threading.Thread(target=renew, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            self.executor.shutdown(wait=True, cancel_futures=True)
        finally:
            finished.set()
            renewer.join(timeout=5)

    def _in_flight(self) -> int:
        with self._count_lock:
            return self._running

    def stop(self) -> None:
        self._stop.set()
        self._freed.set()
        self._callbacks_due.set()
        for loop in (self._loop, self._callback_loop):
            if loop is not None:
                loop.join(timeout=5)
        self._loop = self._callback_loop = None
        self._finish_attempts()
        self._callback_pool.shutdown(wait=True, cancel_futures=True)
        self._notices.shutdown(wait=True, cancel_futures=True)
        try:
            self.callbacks.release()
        except SQLAlchemyError as err:  # they will simply expire
            log.warning("could not release callback leases at shutdown", extra={"error": reason(err)})
        try:
            released = release_all(self.db, self.outbox.owner)
        except SQLAlchemyError as err:  # the leases will simply expire
            log.warning("could not release leases at shutdown", extra={"error": reason(err)})
        else:
            if released:
                log.info("released leases at shutdown", extra={"released": released})
        self.db.dispose()


def current_services() -> Services:
    return current_app.extensions["connector"]


def init_app(app: Flask, services: Services) -> None:
    app.extensions["connector"] = services


class _ShuttingDown(Exception):
    """`stop()` began while a notice waited to be sent again."""


def _notice_worth_another_try(err: BaseException) -> bool:
    return isinstance(err, TransientError) and not isinstance(err, OutcomeUnknown)


def _notice_waits_too_long(state: tenacity.RetryCallState) -> bool:
    """The next wait would take the notice's waiting past `NOTICE_WAIT_MAX_S` in all: it is stale."""
    return state.idle_for + state.upcoming_sleep > NOTICE_WAIT_MAX_S


def _vendors_wait(state: tenacity.RetryCallState) -> float:
    err = state.outcome.exception() if state.outcome else None
    return float(getattr(err, "retry_after", None) or 1.0)
