"""Status callbacks to bots (contract §6): `POST callback.url`, signed, retried with backoff.

A callback is owed when its handoff reaches a state the packet's `callback.events` asks for (all
of them when `events` is left out):

- `queued`: the handoff is accepted and stored (its deliveries may still be running);
- `delivered`: the first target holds a ticket — an agent can see the handoff (`tickets` says
  where the other targets stand then; the built-in preview's ticket beside a vendor's is no such
  ticket, `agent_tickets`);
- `failed`: every target has finished and none holds a ticket (the vendors', beside preview);
- `assigned`: a vendor reported an agent taking it (`assignments.record`);
- `completed`: the ticket was solved or closed (Zendesk's status events, `assignments.complete`).

Its row is written in the transaction that records the state (intake's, the delivery's, the
assignment's), with its body fixed then, so a crash cannot separate the two. `Sender` sends due rows
from any process under a lease (one per process, renewed while a send runs), a handoff's in the
order they were owed. Each state is owed once per handoff (a unique key); the bot may receive it more
than once (a process dying mid-send), always with the same `webhook-id` (`{handoff_id}.{state}`),
so it can drop repeats. A replayed delivery that turns `failed` into a ticket owes `delivered` then,
as do messages sent since that open one (`on_given_up`).

Signing is Standard Webhooks with the bot's secrets (`CONNECTOR_BOT_SECRETS`), one signature per
secret so a bot rotating its secret verifies with either. A bot with no usable secret gets nothing:
its answer says so, `connector check` warns, and its callbacks are put aside (`dismissed`) with that
reason at their first turn — not `dead`: nothing failed that an operator could fix by resending,
and each of its handoffs raised the given-up gauge README says to alert on. Named by id, they can
be resent once the bot has a secret; `dead` ones an operator gives up on are dismissed too (not
owed, never claimed; a bot reads a dismissed callback as `dead`, `answers.render`).

What a bot can read back (`last_error` in `GET /v1/handoffs/{id}`) says what kind of failure it
was, never what the connector learnt about the network on the way (a name's private address): that
goes to the log, for operators (`callback_http`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import urlsplit

import requests
import tenacity
from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased
from urllib3.exceptions import MaxRetryError

from adapters.call_deadline import CutOff, request_sent

from . import answers, callback_http, driver_cursor, metrics, vendor_signatures
from .backoff import backoff_seconds
from .db import Database
from .jsonlog import log_each
from .models import DISMISSED, DONE, Assignment, Callback, Delivery, Handoff, utcnow
from .schemas.packet import CALLBACK_EVENTS
from .settings import Settings

log = logging.getLogger(__name__)


def signers(settings: Settings, bot_id: str) -> list[Any]:
    """A signer per usable secret of the bot (`CONNECTOR_BOT_SECRETS`): none, and its callbacks cannot be sent."""
    return vendor_signatures.usable_hooks(secret for bot, secret in settings.bot_secrets if bot == bot_id)


def unsigned(bot_id: str) -> str:
    return f"bot {bot_id!r} has no usable signing secret (CONNECTOR_BOT_SECRETS)"


def warnings_for(packet: Mapping[str, Any], settings: Settings) -> list[str]:
    """What the answer tells a bot that asked for callbacks it will never get: a bearer-key bot has
    no secret to sign them with, and its 201 said nothing of it — the callbacks were given up
    (`dead`) where only a GET of the handoff, or an operator, would see."""
    wanted = any(url_for(packet, state) for state in CALLBACK_EVENTS)  # `events: []` asks for none
    if not wanted or signers(settings, packet["bot"]["id"]):
        return []
    return [f"callback: no status callbacks will be sent: {unsigned(packet['bot']['id'])}; "
            "follow the handoff with GET links.self, or give the bot a signing secret"]


def message_id(handoff_id: str, state: str) -> str:
    """The webhook-id of a handoff's status callback: the same on every resend of it."""
    return f"{handoff_id}.{state}"


# What `message_id` makes. Signed with the bot's own secrets, in the scheme bots sign requests
# with: `auth` refuses a request carrying such an id (a callback replayed to the connector).
MESSAGE_ID = re.compile(r"hnd_[0-9A-Za-z]+\.[a-z]+")

_CALLBACKS, _DELIVERIES, _HANDOFFS = Callback.__table__, Delivery.__table__, Handoff.__table__
# The last deliveries of a handoff may be given up at once in two PostgreSQL transactions, each seeing
# the other's target as pending: the handoff's row lock makes the second read after the first commits.
_LOCK_HANDOFF = select(_HANDOFFS.c.id).where(_HANDOFFS.c.id == bindparam("handoff_id")).with_for_update()
# How far a state takes a bot: a given-up callback a later one of its handoff went past is not resent,
# and no `delivered` follows an `assigned` or `completed` (`_HEARD_OF_A_HOLDER`).
_PROGRESS = {"queued": 0, "delivered": 1, "failed": 1, "assigned": 2, "completed": 3}
_AFTER = _CALLBACKS.alias("after_it")


def _progress(state: Any) -> Any:
    return case(_PROGRESS, value=state, else_=0)


# An `assigned` or `completed` the bot heard, or will (sent or pending), that no later `failed`
# has taken back: a `delivered` now would reach it after, and move it back to "waiting".
_HEARD_OF_A_HOLDER = (select(_CALLBACKS.c.id).where(
    _CALLBACKS.c.handoff_id == bindparam("handoff_id"),
    _CALLBACKS.c.state.in_([literal_column("'assigned'"), literal_column("'completed'")]),
    _CALLBACKS.c.status.in_([literal_column("'sent'"), literal_column("'pending'")]),
    ~exists().where(_AFTER.c.handoff_id == _CALLBACKS.c.handoff_id, _AFTER.c.id > _CALLBACKS.c.id,
                    _AFTER.c.state == literal_column("'failed'"))).limit(1))
_COMPLETED = select(_HANDOFFS.c.id).where(_HANDOFFS.c.id == bindparam("handoff_id"),
                                        _HANDOFFS.c.completed_at.is_not(None))
_OUTCOMES = (select(_DELIVERIES.c.target, _DELIVERIES.c.state, _DELIVERIES.c.vendor_id, _DELIVERIES.c.url)
             .where(_DELIVERIES.c.handoff_id == bindparam("handoff_id")).order_by(_DELIVERIES.c.position))
# The tickets its follow-ups (messages sent while it waited) reached, oldest first (`answers.reached_later`).
_REACHED_LATER = (select(_DELIVERIES.c.target, _DELIVERIES.c.state, _DELIVERIES.c.vendor_id, _DELIVERIES.c.url)
                  .select_from(_DELIVERIES.join(_HANDOFFS, _HANDOFFS.c.id == _DELIVERIES.c.handoff_id))
                  # The states written into the statement: the driver's cursor runs no expanding IN.
                  .where(_HANDOFFS.c.follows_id == bindparam("handoff_id"),
                         _DELIVERIES.c.state.in_([literal_column(f"'{state}'") for state in DONE]))
                  .order_by(_HANDOFFS.c.created_at, _HANDOFFS.c.id, _DELIVERIES.c.position))
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})  # others (501, 505…) will not change


def url_for(packet: Mapping[str, Any], state: str) -> str | None:
    """Where the packet wants `state` sent, or None (no callback, or not among its `events`)."""
    callback = packet.get("callback") or {}
    url = callback.get("url")
    events = callback.get("events")
    if not url or (events is not None and state not in events):
        return None
    return str(url)


def ticket(target: str, status: str, vendor_id: str | None, url: str | None) -> dict[str, Any]:
    """A ticket as a callback's body lists it: its status as the contract words it (`answers.bot_state`)."""
    return {"target": target, "status": answers.bot_state(status), "id": vendor_id, "url": url}


def row(handoff: Handoff, state: str, url: str, tickets: Sequence[Mapping[str, Any]], now: dt.datetime,
        agent: Mapping[str, Any] | None = None, primary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The callback's row, its body as the contract has it (plus every target's `tickets`;
    `schemas.HandoffStatusSchema` describes it in /openapi.json). Its `ticket` is `primary` (the
    agent's) or else the first one made that an agent can see (`agent_tickets`)."""
    done = [primary] if primary is not None else agent_tickets(tickets)
    handoff = answers.as_told(handoff, tickets, itemgetter("target"), itemgetter("status"))  # its message and wait
    body = {
        "type": "handoff.status",
        "handoff_id": handoff.id,
        "conversation_id": handoff.conversation_id,
        "state": state,
        "at": now.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "ticket": dict(done[0]) if done else None,
        "agent": dict(agent) if agent else None,
        "estimated_wait_seconds": answers.shown_wait(handoff.estimated_wait_seconds, state),
        # Ready to show while the customer waits for a ticket, and the apology when every target
        # gave up; after an agent has it, the bot words it itself.
        "message": (answers.shown_message(handoff.customer_message, state) or {}).get("text")
        if state in ("queued", "delivered", "failed") else None,
        "tickets": [dict(t) for t in tickets],
    }
    return {"handoff_id": handoff.id, "bot_id": handoff.bot_id, "state": state, "url": url, "body": body,
            "status": "pending", "attempts": 0, "next_attempt_at": now, "window_started_at": now, "created_at": now}


def queued(handoff: Mapping[str, Any], deliveries: Iterable[Mapping[str, Any]],
           now: dt.datetime) -> dict[str, Any] | None:
    """The `queued` row for a handoff being stored (its row and its deliveries' as intake built
    them), if its packet wants one."""
    url = url_for(handoff["packet"], "queued")
    if url is None:
        return None
    tickets = [ticket(d["target"], "pending", None, None) for d in deliveries]
    return row(cast(Handoff, SimpleNamespace(**handoff)), "queued", url, tickets, now)


def add(connection: Connection | driver_cursor.Pooled, db: Database, new: dict[str, Any]) -> bool:
    """Write a callback's row in the caller's transaction; False (and nothing written) when the
    handoff owes this state already."""
    return driver_cursor.run(connection, db.insert_or_skip(_CALLBACKS), new).rowcount == 1


def on_delivered(connection: Connection | driver_cursor.Pooled, db: Database, handoff: Handoff,
                 now: dt.datetime) -> bool:
    """In the transaction that recorded one of `handoff`'s tickets: the `delivered` callback, if its
    packet asks for it and no other ticket has owed it already. True if one is owed now."""
    url = url_for(handoff.packet, "delivered")
    if url is None:
        return False  # the usual packet: no statement at all
    if db.dialect == "postgresql":
        # As `on_given_up`, and as an assignment being recorded takes it (`assignments.record`): an
        # `assigned` committing meanwhile went unseen below, and `delivered` went out after it (a review).
        driver_cursor.run(connection, _LOCK_HANDOFF, {"handoff_id": handoff.id})
    outcomes = _told(connection, handoff)
    if not agent_tickets(outcomes):
        return False  # preview's ticket beside a vendor's still to come: no agent sees it
    if driver_cursor.run(connection, _HEARD_OF_A_HOLDER, {"handoff_id": handoff.id}).rows:
        # A vendor's event came before this delivery's record (a create that timed out, a trigger
        # assigning the ticket as it is made): the bot heard `assigned` or `completed`, and a
        # `delivered` after it moved it back to "waiting for an agent". It knows the ticket already.
        return False
    return add(connection, db, row(handoff, "delivered", url, outcomes, now))


def on_given_up(connection: Connection | driver_cursor.Pooled, db: Database, handoff: Handoff,
                now: dt.datetime) -> bool:
    """In the transaction that gave up one of `handoff`'s deliveries (or recorded a ticket of one of
    its follow-ups): when every target has finished and none holds a ticket, the `failed` callback
    its packet asks for — or `delivered`, with those tickets, when its follow-ups reached some (the
    answer shows them). True if one is owed now."""
    failed, delivered = url_for(handoff.packet, "failed"), url_for(handoff.packet, "delivered")
    if failed is None and delivered is None:
        return False
    if db.dialect == "postgresql":
        # Both this and a follow-up's ticket, or two give-ups, may be committing at once: the row lock
        # makes the second read what the first wrote.
        driver_cursor.run(connection, _LOCK_HANDOFF, {"handoff_id": handoff.id})
    outcomes = _outcomes(connection, handoff)
    tickets = _told(connection, handoff, outcomes)
    if agent_tickets(tickets):
        # Its follow-ups reached a target where its own delivery gave up — with the others given up
        # too, or still tried: a read shows that ticket (`answers.render`), and the bot hears of it
        # now, not hours later when the last target finishes (once: a `delivered` owed already stays).
        if driver_cursor.run(connection, _HEARD_OF_A_HOLDER, {"handoff_id": handoff.id}).rows:
            return False  # as `on_delivered`: the bot heard someone has it
        return delivered is not None and add(connection, db, row(handoff, "delivered", delivered, tickets, now))
    if answers.handoff_status(outcomes, itemgetter("target"), itemgetter("status")) != "failed":
        return False  # a target still being tried: its own callbacks tell
    if driver_cursor.run(connection, _COMPLETED, {"handoff_id": handoff.id}).rows:
        # The vendor's own event named its ticket solved (by the handoff's name, its create's answer
        # lost and every look failing): "nobody has it yet" came after `completed` (a review).
        log.warning("a handoff whose ticket was solved is not told `failed`: its delivery gave up unrecorded",
                    extra={"handoff_id": handoff.id})
        return False
    return failed is not None and add(connection, db, row(handoff, "failed", failed, outcomes, now))


def agent_tickets(tickets: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Of a callback's `tickets`, those made that an agent can see (`answers.counted`: not the
    preview's beside a vendor's, whose `delivered` told the bot an agent had a handoff nobody had)."""
    return [t for t in answers.counted(tickets, itemgetter("target")) if t["status"] in DONE]


def _outcomes(connection: Connection | driver_cursor.Pooled, handoff: Handoff) -> list[dict[str, Any]]:
    return [ticket(*r) for r in driver_cursor.run(connection, _OUTCOMES, {"handoff_id": handoff.id}).rows]


def _told(connection: Connection | driver_cursor.Pooled, handoff: Handoff,
          outcomes: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The handoff's tickets as a read tells them (`answers.rescued`): a target its own delivery gave
    up on shown by the ticket its follow-ups opened there. A `delivered` listed it `failed` with no
    id while every read of the handoff showed the ticket (a review). Asked only then: `delivered` and
    `failed` are owed before any follow-up could replace a ticket the handoff made, and a query more
    on every delivery's record was the bot's path's (`assigned` and `completed` read the replaced
    one: `assignments._tickets`)."""
    outcomes = _outcomes(connection, handoff) if outcomes is None else outcomes
    if not any(t["status"] in answers.GIVEN_UP for t in outcomes):
        return outcomes  # the usual handoff: no second statement
    reached = [ticket(*r) for r in driver_cursor.run(connection, _REACHED_LATER, {"handoff_id": handoff.id}).rows]
    return answers.rescued(outcomes, reached, itemgetter("target"), itemgetter("status"), itemgetter("id"))


# ---- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    id: int
    handoff_id: str
    bot_id: str
    state: str
    url: str
    body: dict[str, Any]
    attempts: int
    window_started_at: dt.datetime


_EARLIER = aliased(Callback)
_LATER = aliased(Callback)


def _said_each(session: Any, what: str, chosen: list[int]) -> None:
    """A line per callback an operator resent or dismissed (`jsonlog.log_each`)."""
    log_each(log, what, session.execute(
        select(Callback.id.label("callback_id"), Callback.handoff_id, Callback.state.label("callback_state"))
        .where(Callback.id.in_(chosen)).order_by(Callback.id)).mappings())


def _overtaken() -> ColumnElement[bool]:
    """A callback that a later state of its handoff has reached the bot past: resent, it came last —
    a `failed` given up while the bot was down, resent after the replayed delivery's `delivered`,
    left the bot on "failed" for a handoff with a ticket. So it is owed no more: not resent in bulk,
    not counted (the gauge's alert fired for ever over what the bot no longer needs), marked so in
    the listing. By how far each state takes the bot, not by the order written: a `delivered`
    written after an `assigned` (a rescue by messages) does not make the `assigned` stale; a
    `delivered` sent after a `failed` does."""
    return exists().where(
        _LATER.handoff_id == Callback.handoff_id, _LATER.id > Callback.id, _LATER.status == "sent",
        or_(_progress(_LATER.state) > _progress(Callback.state),
            and_(Callback.state == "failed", _LATER.state == "delivered")))


# A process without a bot's signing secret leaves its callbacks this long to one that has it (a
# rolling change of CONNECTOR_BOT_SECRETS, a worker started with another .env) before it puts them
# aside: one process's settings decided for the fleet, and callbacks promised to a bot vanished.
UNSIGNED_GRACE_S = 300
_Verdict = tuple[str, str | None, dt.datetime | None]  # an attempt's status, error and next attempt
# A bot whose endpoint does not answer (a timeout, a connection that hangs or drops) holds a thread
# for up to twice the timeout a send: its sends in a process are taken this many at a time until it
# answers again. The threads are every bot's: one bot's dead endpoint held all of them, round after
# round of its retries, while other bots' callbacks waited behind it (a review).
STRUGGLING_SENDS = 1


class Sender:
    """Claims due callbacks and sends them; any process may, each under its lease."""

    def __init__(self, db: Database, settings: Settings, owner: str):
        self.db = db
        self.settings = settings
        self.owner = owner
        self.http = callback_http.session(settings.callback_allow_private)
        # Renewed by the loop while a send runs (`renew`); a dead process's expires this much later.
        # At least a whole send's deadline (twice the timeout) and time to record its outcome.
        self.lease = dt.timedelta(seconds=max(settings.lease_s, 2 * settings.callback_timeout_s + 10))
        self._lock = threading.Lock()  # the loop claims, the pool's threads send
        self._in_flight: Counter[str] = Counter()  # claimed and not yet sent, by bot
        self._struggling: set[str] = set()  # bots whose last send got no answer (`STRUGGLING_SENDS`)

    def claim_due(self, limit: int) -> list[Due]:
        """Up to `limit` due callbacks, each the oldest its handoff still owes (in order per handoff):
        of the bots this process has a secret for, and of any bot once due for `UNSIGNED_GRACE_S` —
        counted from when it came due, not from when it was owed: a retry (or a resend) of one
        owed long ago was taken at once by a process without the secret, and put aside."""
        now = utcnow()
        ours = or_(Callback.bot_id.in_(self._signable()),
                   Callback.next_attempt_at < now - dt.timedelta(seconds=UNSIGNED_GRACE_S))
        free = or_(Callback.lease_expires_at.is_(None), Callback.lease_expires_at < now)
        owed_before = exists().where(_EARLIER.handoff_id == Callback.handoff_id, _EARLIER.status == "pending",
                                     _EARLIER.id < Callback.id)
        due = (select(Callback).where(Callback.status == "pending", Callback.next_attempt_at <= now, free, ours,
                                      ~owed_before)
               .order_by(Callback.next_attempt_at, Callback.id))
        room = self._room()
        if held := sorted(bot for bot, left in room.items() if left <= 0):
            due = due.where(Callback.bot_id.not_in(held))
        with self.db.reading() as session:  # most looks find nothing: no write lock for those
            if session.scalars(due.with_only_columns(Callback.id).limit(1)).first() is None:
                return []
        # Every other bot's in due order, and each struggling bot's oldest it has room for: filtered
        # after a single query, a struggling bot's backlog filled the claim and left threads idle.
        others = due.where(Callback.bot_id.not_in(sorted(room))) if room else due
        queries = {None: others.limit(limit)} | {
            bot: due.where(Callback.bot_id == bot).limit(left) for bot, left in sorted(room.items()) if left > 0}
        if self.db.dialect == "postgresql":
            queries = {bot: query.with_for_update(skip_locked=True, of=Callback) for bot, query in queries.items()}
        with self.db.session() as session:
            found = {bot: list(session.scalars(query)) for bot, query in queries.items()}
            # A struggling bot owing nothing at all (none due, none waiting out its backoff) is
            # forgotten: or every claim asked for its callbacks again, one query each, for good (a
            # review) — but not one whose retries wait: they would all be claimed at once when due.
            idle = sorted(bot for bot, rows in found.items() if bot is not None and not rows)
            owing = set(session.scalars(select(Callback.bot_id).distinct().where(
                Callback.bot_id.in_(idle), Callback.status == "pending"))) if idle else set()
            rows = sorted((row for some in found.values() for row in some),
                          key=lambda c: (c.next_attempt_at, c.id))[:limit]
            for callback in rows:
                callback.lease_owner, callback.lease_expires_at = self.owner, now + self.lease
                if callback.attempts == 0:  # its retries are counted from its first try, not from when
                    callback.window_started_at = now  # it was owed (it may have waited behind another)
            claimed = [Due(c.id, c.handoff_id, c.bot_id, c.state, c.url, c.body, c.attempts, c.window_started_at)
                       for c in rows]
        with self._lock:
            self._in_flight.update(due.bot_id for due in claimed)
            self._struggling -= {bot for bot in idle if bot not in owing and not self._in_flight[bot]}
        return claimed

    def _room(self) -> dict[str, int]:
        """How many more sends each struggling bot may have in flight here (`STRUGGLING_SENDS`)."""
        with self._lock:
            return {bot: STRUGGLING_SENDS - self._in_flight[bot] for bot in self._struggling}

    def _answered(self, bot_id: str, answered: bool, took_s: float) -> None:
        """Whether `bot_id`'s endpoint answered a send (any status), and how long the send took: no
        answer after a whole timeout (a hang, a drop, a slow name lookup) makes it struggling
        (`STRUGGLING_SENDS`) until it answers; a fast failure (a connection refused) holds no thread."""
        with self._lock:
            if answered:
                self._struggling.discard(bot_id)
            elif took_s >= self.settings.callback_timeout_s:
                self._struggling.add(bot_id)

    def _signable(self) -> list[str]:
        """The bots this process has a signing secret for: another's callbacks it puts aside (`_attempt`)."""
        return sorted({bot for bot, _ in self.settings.bot_secrets})

    def renew(self, ids: Collection[int]) -> int:
        """Extend the leases of the callbacks this process is sending (`ids`), so a slow send is not
        taken over while it runs. Only those: a row whose outcome could not be recorded must lapse."""
        if not ids:
            return 0
        with self.db.session() as session:
            return session.execute(update(Callback).where(Callback.id.in_(ids), Callback.lease_owner == self.owner,
                                                          Callback.status == "pending")
                                   .values(lease_expires_at=utcnow() + self.lease)).rowcount

    def send_due(self, limit: int = 50) -> int:
        """Claim and send what is due, one after the other (tests; the loop uses threads)."""
        claimed = self.claim_due(limit)
        for due in claimed:
            self.send(due)
        return len(claimed)

    def send(self, due: Due) -> str:
        """One attempt, and its outcome recorded; returns the callback's status after it (`sent`,
        `pending` or `dead`). An unexpected error before the outcome is retried like a failed send.
        If the outcome cannot be recorded (the database is away), the error is raised and the lease
        lapses: the callback is sent again later, a repeat the bot drops by its `webhook-id`."""
        try:
            try:
                verdict = self._attempt(due)
            except Exception as err:
                log.exception("status callback failed unexpectedly", extra={"handoff_id": due.handoff_id})
                verdict = self._retry(due, f"internal error: {type(err).__name__}", None)
            return self._record(due, *verdict)
        finally:
            with self._lock:
                self._in_flight[due.bot_id] -= 1
                if self._in_flight[due.bot_id] <= 0:
                    del self._in_flight[due.bot_id]

    def _attempt(self, due: Due) -> _Verdict:
        hooks = signers(self.settings, due.bot_id)
        # No process took it in `UNSIGNED_GRACE_S` that could sign it: none has the secret, and the
        # answer told the bot none would be sent — nothing given up, nothing to alert on.
        if not hooks:
            return DISMISSED, unsigned(due.bot_id), None
        problem = callback_http.url_problem(due.url, self.settings.callback_allow_private)
        if problem is not None:  # stored before a setting changed: what the URL says, nothing learnt
            return "dead", f"callback.url {problem}", None
        payload = json.dumps(self._current_shape(due), ensure_ascii=False, separators=(",", ":"))
        msg_id = message_id(due.handoff_id, due.state)
        signed_at = utcnow().replace(microsecond=0)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": " ".join(hook.sign(msg_id, signed_at, payload) for hook in hooks),
        }
        timeout = self.settings.callback_timeout_s
        # Each step has `timeout`; the whole send has twice that (connecting, then the answer's
        # status and headers: `call_deadline`), so a bot dripping its answer frees the thread all the same.
        started = time.monotonic()
        try:
            callback_http.check_url(due.url, self.settings.callback_allow_private)
            # The body is never read (`stream`, closed at once): a bot's answer is its status.
            with self.http.post(due.url, data=payload.encode("utf-8"), headers=headers,
                                timeout=(timeout, timeout), allow_redirects=False, stream=True) as response:
                status, retry_after = response.status_code, response.headers.get("Retry-After")
        except (callback_http.Refused, requests.RequestException) as err:
            if isinstance(err, callback_http.Refused):
                log.warning("status callback refused", extra={"handoff_id": due.handoff_id, "reason": str(err)})
            else:  # the bot is told less (below); whoever runs the connector needs the cause
                log.warning("status callback not sent", extra={"handoff_id": due.handoff_id,
                                                               "host": urlsplit(due.url).hostname,
                                                               "cause": _cause(err)})
            self._answered(due.bot_id, False, time.monotonic() - started)
            if isinstance(err, CutOff):
                return self._retry(due, f"the bot took longer than {2 * timeout:g} s to answer (cut off)", None)
            if request_sent(err):  # its endpoint had the request: "could not reach" sent its developer to the network
                return self._retry(due, f"the bot did not answer within {timeout:g} s" if isinstance(
                    err, requests.Timeout) else f"the request was sent, and the connection ended without an answer "
                                                f"({type(err).__name__})", None)
            # A refused address, a connection refused or timed out: all read alike to the bot,
            # which learns nothing of our network from them. Past the connection (a read
            # timeout) it may.
            unreachable = isinstance(err, (callback_http.Refused, requests.ConnectionError))
            error = "could not reach the callback URL" + ("" if unreachable else f" ({type(err).__name__})")
            return self._retry(due, error, None)
        self._answered(due.bot_id, True, time.monotonic() - started)
        if 200 <= status < 300:
            return "sent", None, None
        answered = f"the bot answered {status}"
        if status in RETRYABLE_STATUS:
            return self._retry(due, answered, _retry_after(retry_after))
        if 300 <= status < 400:
            answered += " (redirects are not followed)"
        return "dead", answered, None

    def _current_shape(self, due: Due) -> dict[str, Any]:
        """The body as /openapi.json describes it now. An `assigned` body stored before its agent
        had `routed` gets it from the assignments table: that agent still holds the handoff (the
        row says whether routing chose them), or was routing's choice, since only routing's agent
        is ever replaced."""
        if due.state in ("queued", "delivered"):
            if (shown := self._read_now(due)) is None:
                return due.body
            return {**due.body, "estimated_wait_seconds": shown["estimated_wait_seconds"],
                    "message": (shown["customer_message"] or {}).get("text")}
        agent = due.body.get("agent")
        if due.state != "assigned" or not isinstance(agent, dict):
            return due.body
        body = due.body if "routed" in agent else {**due.body, "agent": {**agent, "routed": self._routed(due, agent)}}
        if not body["agent"]["routed"]:
            return body
        # Routing's own agent changes nothing the bot was told (README, "Vendor events"): the wait a
        # read quotes stands — `assigned` said null while GET and the answer still quoted it (a review).
        shown = self._read_now(due)
        return body if shown is None else {**body, "estimated_wait_seconds": shown["estimated_wait_seconds"]}

    def _routed(self, due: Due, agent: Mapping[str, Any]) -> bool:
        """For an `assigned` body stored before its agent had `routed`: from the assignments table."""
        with self.db.reading() as session:
            holder = session.execute(select(Assignment.agent_id, Assignment.routed)
                                     .where(Assignment.handoff_id == due.handoff_id)).first()
        if holder is None:  # cannot happen (an `assigned` is owed with its assignment); claim nothing
            return False
        return bool(holder.routed) if holder.agent_id == agent.get("id") else True

    def _read_now(self, due: Due) -> dict[str, Any] | None:
        """The handoff as a read of it now shows it (`answers.render`), for the wait and message a
        callback tells: written when the handoff was stored, before any attempt, `queued` quoted a
        wait the answer had since held back (the target failing or paused past it, every target
        given up, an agent having it) — the bot got the wait back after the answer; a `delivered`
        owed hours on (a failed handoff's messages opening a ticket) quoted the wait of intake."""
        with self.db.reading() as session:
            handoff = session.get(Handoff, due.handoff_id)
            if handoff is None:
                return None
            deliveries = session.execute(select(*answers.DELIVERY_COLUMNS)
                                         .where(Delivery.handoff_id == due.handoff_id)).all()
            later = answers.reached_later(session, [handoff]).get(handoff.id, [])
            return answers.render(handoff, deliveries, reached_later=later,
                                  holder=answers.taken(session, [handoff]).get(handoff.id))

    def _retry(self, due: Due, error: str, retry_after: float | None) -> _Verdict:
        now, attempts, settings = utcnow(), due.attempts + 1, self.settings
        too_old = (now - due.window_started_at).total_seconds() > settings.max_delivery_age_s
        if attempts >= settings.callback_max_attempts or too_old:
            return "dead", error, None
        delay = backoff_seconds(attempts, retry_after, settings.retry_base_s, settings.retry_max_s)
        return "pending", error, now + dt.timedelta(seconds=delay)

    @tenacity.retry(retry=tenacity.retry_if_exception_type(OperationalError), stop=tenacity.stop_after_attempt(3),
                    wait=tenacity.wait_fixed(0.2), reraise=True)
    def _record(self, due: Due, status: str, error: str | None, next_at: dt.datetime | None) -> str:
        """Write an attempt's outcome; a database blip is tried again twice, as a second send would
        be the cost of giving up."""
        now = utcnow()
        # Put aside unsent (no secret to sign with) is no attempt: GET said `dead` after 1 attempt.
        attempts = due.attempts + (status != DISMISSED)
        values: dict[str, Any] = {"status": status, "attempts": attempts, "last_error": error,
                                  "lease_owner": None, "lease_expires_at": None}
        if status == "pending":
            values["next_attempt_at"] = next_at
        else:
            values["finished_at"] = now
        with self.db.session() as session:
            kept = session.execute(update(Callback).where(Callback.id == due.id, Callback.lease_owner == self.owner)
                                   .values(**values)).rowcount
        extra: dict[str, Any] = {"handoff_id": due.handoff_id, "callback_state": due.state, "status": status,
                                 "attempts": attempts}
        if error:
            extra["error"] = error
        if not kept:  # another process took it over meanwhile; its outcome stands
            log.warning("status callback's lease was lost before its outcome was recorded", extra=extra)
            return status
        if status != DISMISSED:  # no attempt was made
            metrics.callback_sent(status)
        level = {"sent": logging.INFO, "pending": logging.WARNING, DISMISSED: logging.INFO}.get(status, logging.ERROR)
        said = {"sent": "sent", "pending": "will be retried", DISMISSED: "not sent"}.get(status, "given up")
        log.log(level, "status callback " + said, extra=extra)
        return status

    def resend(self, ids: Sequence[int] | None = None) -> list[int]:
        """Queue given-up callbacks again (all of them, or `ids`), with fresh attempts and window:
        after the bot's endpoint was down longer than the retries last, or its secret was added.
        Dismissed ones only when named (`ids`): put aside on purpose, or never sent for want of a
        secret, they are not what "resend everything given up" means."""
        now = utcnow()
        statuses = ("dead",) if ids is None else ("dead", DISMISSED)
        overtaken = _overtaken()
        query = select(Callback.id).where(Callback.status.in_(statuses), ~overtaken)
        if ids is not None:
            query = query.where(Callback.id.in_(ids))
        with self.db.session() as session:
            candidates = list(session.scalars(query.order_by(Callback.id)))
            # Given up still, checked again by the UPDATE itself (as `outbox.replay` does): two
            # resends at once both read "dead" on PostgreSQL, and the second put back a callback
            # the first had queued and a process was already sending.
            chosen = sorted(session.scalars(
                update(Callback).where(Callback.id.in_(candidates), Callback.status.in_(statuses), ~overtaken).values(
                    status="pending", attempts=0, next_attempt_at=now, window_started_at=now, finished_at=None,
                    lease_owner=None, lease_expires_at=None).returning(Callback.id))) if candidates else []
            _said_each(session, "status callback queued again", chosen)
        log.info("status callbacks queued again", extra={"count": len(chosen)})
        return chosen

    def dismiss(self, ids: Sequence[int] | None = None) -> list[int]:
        """Put given-up (`dead`) callbacks aside for good (all of them, or `ids`): the bot's endpoint
        is gone, or it heard another way. No longer owed (the gauge, /readyz), not resent in bulk; the
        last error keeps why they gave up. As `outbox.dismiss` does for deliveries."""
        now = utcnow()
        query = select(Callback.id).where(Callback.status == "dead")
        if ids is not None:
            query = query.where(Callback.id.in_(ids))
        with self.db.session() as session:
            candidates = list(session.scalars(query.order_by(Callback.id)))
            chosen = sorted(session.scalars(  # given up still: a resend may have taken one meanwhile
                update(Callback).where(Callback.id.in_(candidates), Callback.status == "dead").values(
                    status=DISMISSED, finished_at=now, lease_owner=None, lease_expires_at=None,
                    last_error=func.coalesce(Callback.last_error, "no error") + literal(" (dismissed by an operator)"))
                .returning(Callback.id))) if candidates else []
            _said_each(session, "status callback dismissed by an operator", chosen)
        log.info("status callbacks dismissed", extra={"count": len(chosen)})
        return chosen

    def counts(self) -> dict[str, int]:
        """Callbacks owed, by status (`pending`, `dead`): zero included; sent and dismissed ones are not,
        nor the pending ones of a bot without a signing secret, which will be put aside — each handoff
        of a key-only bot showed as owed for `UNSIGNED_GRACE_S`."""
        owed = or_(and_(Callback.status == "dead", ~_overtaken()),
                   and_(Callback.status == "pending", Callback.bot_id.in_(self._signable())))
        with self.db.reading() as session:
            rows = session.execute(select(Callback.status, func.count()).where(owed)
                                   .group_by(Callback.status)).all()
        return {"pending": 0, "dead": 0, **{status: number for status, number in rows}}

    def listed(self, status: str, limit: int) -> list[Callback]:
        """Newest first; each row's `overtaken` says whether a later state was sent past it (`_overtaken`)."""
        with self.db.reading() as session:
            rows = session.execute(select(Callback, _overtaken().label("overtaken")).where(Callback.status == status)
                                   .order_by(Callback.id.desc()).limit(limit)).all()
        for row, overtaken in rows:
            row.overtaken = bool(overtaken)  # not a column: what this listing found
        return [row for row, _ in rows]

    def overtaken_dead(self) -> int:
        """Given-up callbacks a later state was sent past: left out of a bulk resend, and of the count."""
        with self.db.reading() as session:
            return session.scalar(select(func.count()).where(Callback.status == "dead", _overtaken())) or 0

    def release(self) -> int:
        """Give back this process's leases (shutdown)."""
        with self.db.session() as session:
            return session.execute(update(Callback).where(Callback.lease_owner == self.owner,
                                                          Callback.status == "pending")
                                   .values(lease_owner=None, lease_expires_at=None)).rowcount


def _cause(err: requests.RequestException) -> str:
    """What went wrong, without the URL's path or query (a bot's token may ride in it): urllib3's
    reason when it has one (the name not resolved, the TLS handshake, the connection refused)."""
    reason = err.args[0] if err.args else None
    if isinstance(reason, MaxRetryError) and reason.reason is not None:
        return f"{type(reason.reason).__name__}: {reason.reason}"[:300]
    # The guard's own words, which name the host alone (no path, no query).
    if isinstance(reason, str) and reason.startswith(callback_http.RESOLVE_FAILED):
        return f"{type(err).__name__}: {reason}"[:300]
    return type(err).__name__


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds, from either of its forms (seconds, or an HTTP date); at most an hour."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            # An asctime date (`Mon Dec  7 15:09:40 2026`) or a `-0000` offset parses naive: UTC, as
            # RFC 9110 has every HTTP date (subtracted from an aware now, it raised and was dropped).
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp() - utcnow().timestamp()
    return min(max(seconds, 0.0), 3600.0)
