"""Delivering the outbox: claim a delivery with a lease, call its adapter, record what happened.

The handoff and its deliveries are committed before any vendor is called (intake). From then on
the request thread and the background loop run the same `run_delivery`, so there is one path to
a vendor. A lease (`lease_owner`, `lease_expires_at`) makes a delivery run in one place at a time;
an expired lease (a crashed process) lets another take over.

Conversation links make a second handoff of a conversation *update* the ticket: the first delivery
to a target owns the link until it has a vendor id; later ones wait for it instead of opening a
second ticket.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Connection, and_, bindparam, case, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from adapters.base import (
    LINK_MERGED_FROM,
    MADE_FOR,
    NAMED_TICKET,
    TICKET_MADE,
    Adapter,
    HandoffContext,
    Link,
    Outcome,
    kept_team,
    last_message_told,
    last_told,
    merge_target_context,
)
from adapters.errors import (
    DeliveryError,
    FoundOnlyByTheVendor,
    OutcomeUnknown,
    RateLimited,
    ReplacementUnderway,
    TransientError,
    decide,
)
from adapters.events import Holder

from . import answers, callbacks, driver_cursor, follow_up_packets, metrics
from .backoff import backoff_seconds
from .brief import ANSWERED, as_answered, parts_present, render_brief
from .carried import GIVEN_UP, carried_later, carried_since
from .db import Database
from .errors import ConfigError
from .jsonlog import handoff_fields, log_context, log_each
from .models import DISMISSED, DONE, Assignment, ConversationLink, Delivery, Handoff, TargetPause, utcnow
from .settings import Settings
from .text_rules import rfc3339_utc

if TYPE_CHECKING:  # assignments imports this module
    from .assignments import Received

log = logging.getLogger(__name__)

TERMINAL = ("created", "updated", "failed", "dead", DISMISSED)
WAIT_FOR_OWNER_S = 2.0
# How long a delivery past its age may stay due with no process taking it before any process gives
# it up (`claim_due`): a process serving its target takes a due delivery within a poll or two, a
# backlog within minutes (the benchmark's burst of 10,000 drained in under three).
UNSERVED_AFTER_S = 3600
# How long a pending delivery of a target this process does not serve must have been due, untaken,
# before an operator may dismiss it from here (`dismiss`): no process serves its target.
UNTAKEN_TO_DISMISS_S = 300
# `Delivery.sent_to`'s mark of the one more attempt `_record_error` grants a delivery whose tries ran
# out on an unknown outcome (a second is not granted): the delivery's attempts when it was granted.
ONE_MORE = "one_more"


# The statements every attempt runs, built once (compiled once, cached by SQLAlchemy) on the tables.
_DELIVERIES, _LINKS, _PAUSES = Delivery.__table__, ConversationLink.__table__, TargetPause.__table__
_PAUSED_UNTIL = select(_PAUSES.c.until).where(_PAUSES.c.target == bindparam("target"))
_OWNER_OF = (select(_DELIVERIES.c.state, _DELIVERIES.c.outcome_unknown, _DELIVERIES.c.handoff_id)
             .where(_DELIVERIES.c.id == bindparam("delivery_id")))
# Only while the lease is still the attempt's own (`token`): held after it was lost, the row's new
# holder lost its lease in turn, and the next claim no longer knew to look before sending.
_HOLD = (update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("delivery_id"),
                                   _DELIVERIES.c.lease_owner == bindparam("token"))
         .values(next_attempt_at=bindparam("until"), lease_owner=None, lease_expires_at=None))
# A follow-up held for its turn: its retry window starts when it may go, not while it waits.
_HOLD_FOR_TURN = _HOLD.values(window_started_at=bindparam("until"))
# What a delivery's recorded outcome writes (`_done` gives the values).
_OUTCOME = dict(state=bindparam("state"), vendor_id=bindparam("vendor_id"), url=bindparam("url"),
                receipt=bindparam("receipt"), vendor_reply=bindparam("vendor_reply"), last_error=None,
                outcome_unknown=False, sent_to=None, lease_owner=None, lease_expires_at=None,
                finished_at=bindparam("now"), updated_at=bindparam("now"))
# Only while the attempt's lease is still its own (`_LeaseLost`).
_DELIVERED = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("delivery_id"), _DELIVERIES.c.lease_owner == bindparam("token"))
    .values(attempts=_DELIVERIES.c.attempts + 1, **_OUTCOME)
)
# A delivery given up with its outcome unknown whose ticket a later handoff's attempt found
# (`Outcome.made_earlier`), recorded in that attempt's transaction — only while still given up: a
# replay of it under way records what its own lookup finds.
_MADE_EARLIER = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.handoff_id == bindparam("handoff_id"), _DELIVERIES.c.target == bindparam("target"),
           # Dismissed too: `_link_for` looks for what such a delivery made as for the others (a review).
           or_(*(_DELIVERIES.c.state == state for state in (*GIVEN_UP, DISMISSED))),  # no expanding IN on the cursor
           _DELIVERIES.c.outcome_unknown.is_(True))
    .values(**_OUTCOME)
)
_DELIVERED_WITH_PAYLOAD = _DELIVERED.values(payload=bindparam("payload"))
_RENEW_OWN = (update(_DELIVERIES)
              .where(_DELIVERIES.c.id == bindparam("delivery_id"), _DELIVERIES.c.lease_owner == bindparam("token"),
                     _DELIVERIES.c.state == "pending")
              .values(lease_expires_at=bindparam("until")))
_THE_LINK = and_(_LINKS.c.bot_id == bindparam("bot_id"), _LINKS.c.conversation_id == bindparam("conversation_id"),
                 _LINKS.c.target == bindparam("target"))  # a conversation's link at one target
_LINK_OF = select(_LINKS.c.id, _LINKS.c.vendor_id, _LINKS.c.url, _LINKS.c.extra, _LINKS.c.owner_delivery_id).where(
    _THE_LINK)
# What the other attempts of a handoff wrote: its deliveries' outcomes, in the answer's order.
_OUTCOMES_OF_HANDOFF = (
    select(_DELIVERIES.c.id, _DELIVERIES.c.target, _DELIVERIES.c.state, _DELIVERIES.c.vendor_id, _DELIVERIES.c.url)
    .where(_DELIVERIES.c.handoff_id == bindparam("handoff_id")).order_by(_DELIVERIES.c.position)
)
_HANDOFFS = Handoff.__table__
# The first batch of a handoff's messages that reached a target (`_claim_and_load`): one that went
# while the handoff's own delivery there was given up carried the whole brief with it — opening the
# ticket, completing the one that delivery's timed-out try made, or on the conversation's ticket as
# a comment. The rule replays keep too (`carried.carried_later`): such a delivery is not replayed either.
_CARRIED_BY = (
    select(_DELIVERIES.c.state, _DELIVERIES.c.vendor_id, _DELIVERIES.c.url, _DELIVERIES.c.receipt,
           _DELIVERIES.c.handoff_id)
    .join(_HANDOFFS, _HANDOFFS.c.id == _DELIVERIES.c.handoff_id)
    .where(_HANDOFFS.c.follows_id == bindparam("handoff_id"), _DELIVERIES.c.target == bindparam("target"),
           _DELIVERIES.c.state.in_(DONE))
    .order_by(_HANDOFFS.c.follow_up_seq).limit(1)
)
# Who the conversation's ticket at a target is recorded with (`HandoffContext.held_by`): the newest
# take of its other handoffs, at any target — theirs only when it is on that very ticket. Not one on a
# ticket it replaced (a Slack alert posted anew after the old one took no more replies: nobody claimed
# that one), nor one a take elsewhere since replaced: a Zendesk agent who took the handoff after a
# Slack claim has the conversation, and the next one was recorded as the Slack claimer's (a review).
_HELD_ON = (
    select(Assignment.target, Assignment.vendor_ticket_id, Assignment.agent_id, Assignment.agent_name,
           Assignment.handoff_id, Handoff.completed_at)
    .join(Handoff, Handoff.id == Assignment.handoff_id)
    .where(Handoff.bot_id == bindparam("bot_id"), Handoff.conversation_id == bindparam("conversation_id"),
           Handoff.id != bindparam("handoff_id"))
    .order_by(Handoff.created_at.desc(), Handoff.id.desc()).limit(1)
)
# What came before a follow-up at its target: its handoff's delivery there, and earlier follow-ups'.
_BEFORE_FOLLOW_UP = (
    select(_DELIVERIES.c.state, _DELIVERIES.c.next_attempt_at, _HANDOFFS.c.follow_up_seq, _DELIVERIES.c.vendor_id)
    .join(_HANDOFFS, _HANDOFFS.c.id == _DELIVERIES.c.handoff_id)
    .where(_DELIVERIES.c.target == bindparam("target"),
           or_(_HANDOFFS.c.id == bindparam("follows_id"),
               and_(_HANDOFFS.c.follows_id == bindparam("follows_id"), _HANDOFFS.c.follow_up_seq < bindparam("seq"))))
)
# Taken over only as read: on PostgreSQL two deliveries that both read a given-up owner would
# both take it (each then opening a ticket); the second now finds the row changed and waits.
_SET_LINK_OWNER = (update(_LINKS).where(_LINKS.c.id == bindparam("link_id"),
                                        _LINKS.c.owner_delivery_id.is_not_distinct_from(bindparam("was")),
                                        or_(_LINKS.c.vendor_id.is_(None), _LINKS.c.vendor_id == ""))
                   .values(owner_delivery_id=bindparam("owner"), extra=bindparam("extra"), updated_at=bindparam("now")))
# A new ticket replaces the conversation's link; an update of its ticket fills a link that has
# none — unless another delivery owns it: that one is opening the successor of a ticket closed
# since this update was sent, and the closed ticket put back freed the link for a second one.
# An update that went to the ticket the link's was merged into (`Outcome.moved_from`) replaces
# the link while it still names the merged ticket: the next handoff read its closed ticket again.
# A ticket made that the link names already (a replay finding its own: `adapters.base.MADE_FOR`) leaves
# it as it is: rewritten, it lost where the later handoffs' updates had left the conversation (`told`).
_NO_TICKET = or_(_LINKS.c.vendor_id.is_(None), _LINKS.c.vendor_id == "")
_OWNED_BY_NONE_BUT_THIS = or_(_LINKS.c.owner_delivery_id.is_(None),
                              _LINKS.c.owner_delivery_id == bindparam("delivery_id"))
_LINK_TICKET_BY_KEY = (
    update(_LINKS).where(_THE_LINK, or_(and_(_NO_TICKET, _OWNED_BY_NONE_BUT_THIS),
                                        and_(bindparam("replaces", type_=Boolean),
                                             _LINKS.c.vendor_id.is_distinct_from(bindparam("vendor_id"))),
                                        _LINKS.c.vendor_id == bindparam("moved_from")))
    .values(vendor_id=bindparam("vendor_id"), url=bindparam("url"), extra=bindparam("extra"),
            owner_delivery_id=None, updated_at=bindparam("now"))
)
# The ticket gone (closed, deleted) — or no ticket yet, this delivery owning the link — is left
# for the new ticket this delivery opens; 0 rows when another delivery took it first.
_TAKE_FOR_REPLACEMENT = (
    update(_LINKS).where(_THE_LINK, or_(_LINKS.c.vendor_id == bindparam("gone"),
                                        and_(_LINKS.c.vendor_id.is_(None),
                                             _LINKS.c.owner_delivery_id == bindparam("owner"))))
    .values(vendor_id=None, url=None, extra=bindparam("extra"), owner_delivery_id=bindparam("owner"),
            updated_at=bindparam("now"))
)
# This delivery no longer owns the link; another delivery's ownership is left as it is.
_LINK_OWNER_BY_KEY = update(_LINKS).where(_THE_LINK).values(
    owner_delivery_id=case((_LINKS.c.owner_delivery_id == bindparam("delivery_id"), None),
                           else_=_LINKS.c.owner_delivery_id),
    updated_at=bindparam("now"))
_LONGER_PAUSE = (update(_PAUSES).where(_PAUSES.c.target == bindparam("paused"), _PAUSES.c.until < bindparam("later"))
                 .values(until=bindparam("later"), reason=bindparam("why"), updated_at=bindparam("now")))
_NEW_LINK = insert(_LINKS)
# Where the conversation stood when the link's ticket last heard from us (`told`, see `_told`).
_LINK_EXTRA = select(_LINKS.c.extra).where(_THE_LINK, _LINKS.c.vendor_id == bindparam("vendor_id")).with_for_update()
_LINK_TOLD = update(_LINKS).where(_THE_LINK, _LINKS.c.vendor_id == bindparam("vendor_id")).values(
    extra=bindparam("extra"), updated_at=bindparam("now"))


def _told(connection: driver_cursor.Pooled, key: Mapping[str, str], outcome: Outcome, now: dt.datetime,
          batch: bool) -> None:
    """Keep with the link where the conversation stood when this update reached its ticket, for
    the next handoff's note (`HandoffContext.since_opened`): a third handoff's "new since this
    ticket was opened" listed again what the second had already posted. Never moved back: a batch
    of older messages delivered late does not make them news again."""
    rows = driver_cursor.run(connection, _LINK_EXTRA, {**key, "vendor_id": outcome.vendor_id}).rows
    if not rows:  # the link names another ticket now (a successor opened meanwhile)
        return
    extra = dict(rows[0][0] or {})
    stood = {**dict(outcome.opened_with), "at": now.isoformat()}
    if batch and (was := last_told(extra)) is not None:
        # A batch of messages carries its handoff's packet: only its messages are news to the ticket.
        # Its reason, tries, urgency and collected values, kept, were an older handoff's, and the next
        # repeat's note said again what the one between had posted (a review of the mend).
        stood = {**was, "at": stood["at"], **{k: v for k, v in stood.items() if k == "last_message_at"}}
    before, after = (rfc3339_utc((was or {}).get("last_message_at")) for was in (last_told(extra), stood))
    if before is not None and (after is None or before > after):
        return
    driver_cursor.run(connection, _LINK_TOLD, {**key, "vendor_id": outcome.vendor_id, "now": now,
                                               "extra": {**extra, "told": stood}})


HOST_SHOWN = 40  # characters of the host's name in a lease: a lease token fits `lease_owner` (80)


def worker_id() -> str:
    """This process, as its leases name it: host, pid and a random part. A long host name keeps its
    start and its end (a Kubernetes pod's differs at the end, an FQDN's at the start): whole, a
    name of 56 characters or more made every lease too long for its column, and every handoff a 500
    on PostgreSQL (SQLite does not hold a VARCHAR to its length)."""
    host = socket.gethostname()
    if len(host) > HOST_SHOWN:
        host = f"{host[:HOST_SHOWN // 2 - 1]}~{host[-(HOST_SHOWN // 2):]}"
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Attempted:
    """What an attempt left in its delivery's row: the columns an answer shows (`answers.DELIVERY_COLUMNS`)."""

    target: str
    state: str
    vendor_id: str | None
    url: str | None
    attempts: int
    last_error: str | None
    receipt: dict[str, Any] | None
    next_attempt_at: dt.datetime | None = None  # when still pending: not tried again before then
    # The agent the updated ticket waits on (`Outcome.holder`), recorded holding the handoff
    # (`assignments.held`): the answer reads who is recorded, as a replay or a read does.
    holder: str | None = None
    sent_to: dict[str, Any] | None = None  # whether a failed attempt made the ticket (`TICKET_MADE`)


    @classmethod
    def of(cls, row: Delivery) -> Attempted:
        return cls(row.target, row.state, row.vendor_id, row.url, row.attempts, row.last_error, row.receipt,
                   row.next_attempt_at, sent_to=row.sent_to)


@dataclass
class _Claimed:
    delivery: Delivery
    handoff: Handoff
    link: Link | None
    related: tuple[Mapping[str, Any], ...]
    # A follow-up whose handoff (and every earlier follow-up) reached this target: its update
    # carries only its own messages. Otherwise it carries everything (`brief.render_brief`).
    caught_up: bool = False
    # The closed ticket the conversation's new one replaces (`_TAKE_FOR_REPLACEMENT`), to name it.
    follows_ticket: str | None = None
    # A follow-up's packet as it is delivered (`follow_up_packets.whole_of`); None: the handoff's own.
    packet: Mapping[str, Any] | None = None
    # `_Opening.after`: those handoffs, each with the packet it is delivered with.
    after: tuple[tuple[Handoff, Mapping[str, Any]], ...] = ()
    # The batch of this handoff's messages that reached the target while its own delivery there was
    # given up, with the whole brief (`_CARRIED_BY`): the delivery is done by it, nothing is sent.
    carried_by: Any = None
    # A follow-up's: when its handoff was completed (`HandoffContext.handoff_completed_at`), and the
    # ticket its handoff and earlier batches reached when a merge has moved the conversation's link
    # off it since (`merge_target_context`: the brief is not on the link's ticket).
    completed_at: dt.datetime | None = None
    merged_from: str | None = None
    held_by: Holder | None = None  # `HandoffContext.held_by`


@dataclass(frozen=True)
class _Opening:
    """`_link_for`: this delivery opens the conversation's ticket, the successor of `replaces`;
    `after`: in place of the handoffs whose deliveries there were given up with their outcome unknown."""

    replaces: str | None = None
    after: tuple[str, ...] = ()


class Outbox:
    def __init__(self, db: Database, adapters: Callable[[], Mapping[str, Adapter]], settings: Settings,
                 defer: Callable[[Callable[[], None]], Any] | None = None,
                 callback_owed: Callable[[], None] | None = None,
                 held: Callable[..., Any] | None = None,
                 kept: Callable[[Any, Delivery], dict[str, Any] | None] | None = None,
                 recorded: Callable[[str, str], Any] | None = None):
        self.db = db
        self.defer = defer or (lambda work: work())  # where follow-up work runs (services: its thread pool)
        self.callback_owed = callback_owed or (lambda: None)  # after a commit that may owe a status callback
        # An update's answer named the agent who has the ticket: (handoff, target, ticket, agent).
        self.held = held or (lambda *_, **__: None)
        self.kept = kept or (lambda *_: None)
        # A handoff's ticket at a target whose tickets say who took it elsewhere (`Adapter.taken_elsewhere`).
        self.recorded = recorded or (lambda *_: None)
        self.adapters = adapters  # a provider: the set changes when an admin edits the mappings
        self.settings = settings
        self.owner = worker_id()

    # ---- claiming --------------------------------------------------------------------------

    def new_token(self) -> str:
        """A lease token per claim, so two threads of one process never run the same delivery."""
        return f"{self.owner}/{uuid.uuid4().hex[:8]}"

    def claim(self, session: Session, delivery_id: int, now: dt.datetime, token: str) -> bool:
        lease_until = now + dt.timedelta(seconds=self.settings.lease_s)
        result = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.state == "pending", _lease_free(now))
            .values(lease_owner=token, lease_expires_at=lease_until, **_taken_over_values())
        )
        return result.rowcount == 1

    def claim_due(self, limit: int = 50) -> tuple[list[int], str]:
        """Claim up to `limit` deliveries whose time has come, skipping paused targets and targets
        this process does not serve: processes sharing a database may enable different targets (a
        rolling configuration change, a worker started with another .env), and one without the
        target failed for good the retries of a delivery another process had started. Deliveries of
        a target no process serves now wait, counted in the backlog, until one does — or until they
        are older than `max_delivery_age_s` and have been due for `UNSERVED_AFTER_S` with no process
        taking them, when any process takes them and gives them up (a target removed for good must
        not leave its bots waiting for ever). Both: a served delivery past that age still gets its
        last try from a process that serves it, which takes a due one within seconds.

        On PostgreSQL the candidates are locked with `FOR UPDATE SKIP LOCKED`, so workers sharing
        the database take different rows without waiting on each other; SQLite serializes writers.
        """
        now, token = utcnow(), self.new_token()
        too_old = now - dt.timedelta(seconds=self.settings.max_delivery_age_s)
        # Untaken for `UNSERVED_AFTER_S` — counted from the end of a vendor's pause too: when a pause
        # of hours lifts, every delivery it held is that long overdue, and the processes serving
        # the target take them in turn.
        untaken_since = now - dt.timedelta(seconds=UNSERVED_AFTER_S)
        unserved = and_(Delivery.window_started_at < too_old, Delivery.next_attempt_at < untaken_since,
                        Delivery.target.not_in(select(TargetPause.target).where(TargetPause.until > untaken_since)))
        query = (
            select(Delivery.id)
            .where(
                Delivery.state == "pending",
                or_(Delivery.target.in_(sorted(self.adapters())), unserved),
                Delivery.next_attempt_at <= now,
                _lease_free(now),
                Delivery.target.not_in(select(TargetPause.target).where(TargetPause.until > now)),
            )
            .order_by(Delivery.next_attempt_at)
            .limit(limit)
        )
        # Most polls find nothing due: a read (no write lock on SQLite, no row locks) says so, and
        # only then is the claim's transaction opened. Idle loops in every worker took the writer
        # lock each second, and a request's commit could queue behind one.
        with self.db.reading() as session:
            if session.scalars(query.limit(1)).first() is None:
                return [], token
        if self.db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True, of=Delivery)
        with self.db.session() as session:
            ids = list(session.scalars(query))
            if ids:
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(ids))
                    .values(lease_owner=token, lease_expires_at=now + dt.timedelta(seconds=self.settings.lease_s),
                            **_taken_over_values())
                )
        return ids, token

    def renew_leases(self, running: Collection[int]) -> int:
        """Extend the leases of the attempts this process is running (`running`: their delivery
        ids), called by its loop while it is alive.

        Without it an attempt that outlasts `lease_s` (many slow vendor calls, a short lease) was
        claimed again — by another process or by this one's own loop — while still running, and
        both runs sent (the durability tests saw doubled cases). A live process now keeps what it
        runs; a dead one stops renewing, and its leases expire `lease_s` later. Only what runs:
        renewing every lease of this process kept an attempt that had crashed (its result not
        recorded: the database refused) claimed for as long as other work ran, never retried.
        """
        if not running:
            return 0
        now = utcnow()
        with self.db.session() as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.id.in_(sorted(running)),
                       Delivery.lease_owner.startswith(f"{self.owner}/", autoescape=True), Delivery.state == "pending",
                       Delivery.lease_expires_at.is_not(None))
                .values(lease_expires_at=now + dt.timedelta(seconds=self.settings.lease_s))
            )
            return result.rowcount

    # ---- one attempt -----------------------------------------------------------------------

    def run_delivery(self, delivery_id: int, token: str | None = None, *, fresh: Handoff | None = None,
                     prepared: bool = False) -> Attempted | None:
        """One attempt at one delivery. Returns what it left in the row (None if not run now).

        `token` is the lease of a delivery already claimed (by `claim_due`, or by intake in the
        transaction that stored it); without one it is claimed here. `fresh` is the handoff intake
        has just committed with this delivery claimed under `token`: its rows are not read again;
        `prepared` says that intake's transaction also took the conversation's link for it and
        found the target unpaused (`handoff_store`), so the attempt starts at the vendor.
        """
        if fresh is not None and token is not None and not self._still_leased(_member(fresh, delivery_id), token):
            return None
        if fresh is not None and token is not None and prepared:
            delivery = _member(fresh, delivery_id)
            claimed: _Claimed | None = _Claimed(delivery, fresh, None, ())
        else:
            claimed = self._claim_and_load(delivery_id, token, fresh)
        if claimed is None:
            return None
        delivery, handoff = claimed.delivery, claimed.handoff
        with log_context(**handoff_fields(handoff), target=delivery.target, delivery_id=str(delivery.id)):
            adapter = self.adapters().get(delivery.target)
            if self._lapsed_too_often(delivery):
                return self._finish_failure(delivery, handoff, "dead", (
                    f"{LEASE_LAPSED}: {delivery.attempts - delivery.rate_limited} attempts, past "
                    "CONNECTOR_MAX_ATTEMPTS and the one more an unknown outcome gets"))
            if adapter is None:
                return self._finish_failure(delivery, handoff, "failed",
                                            f"target {delivery.target!r} is not enabled here")
            if (carried := claimed.carried_by) is not None:
                log.info("delivered by the messages sent while it waited", extra={"carried_by": carried.handoff_id})
                # The delivery's row alone: the link is the batch's, which kept there what its ticket
                # was opened with (a repeat's note says what is new since, and which team has it).
                return self._record_success(delivery, handoff, Outcome(
                    status=carried.state, vendor_id=carried.vendor_id, url=carried.url, payload=None,
                    receipt=carried.receipt or {}), 0.0, link=False)
            started = time.perf_counter()
            link, caught_up = _as_first_rendered(claimed, delivery)
            try:
                # The brief is rendered inside the attempt: a packet it cannot render (a bug) is a
                # failed attempt, retried and in the end dead, its failure told — not a crash
                # before any attempt is counted, which left the handoff pending for ever.
                packet = handoff.packet if claimed.packet is None else claimed.packet
                # The message for the customer as the bot was answered it (`brief.as_answered`).
                assignment = as_answered(handoff.assignment, handoff.customer_message, update=link is not None)
                fresh = _new_ticket_assignment(handoff) if link else None
                ctx = HandoffContext(
                    handoff_id=handoff.id,
                    target=delivery.target,
                    packet=packet,
                    brief=render_brief(packet, handoff.id,
                                       update=link is not None and caught_up,
                                       assignment=assignment,
                                       new_after=last_message_told(link.extra) if link else None,
                                       kept_team=kept_team(link, assignment, packet)),
                    assignment=assignment,
                    idempotency_key=f"{handoff.id}:{delivery.target}",
                    link=link,
                    outcome_unknown=delivery.outcome_unknown,
                    sent_to=(delivery.sent_to or {}) if delivery.outcome_unknown else {},
                    attempt=delivery.attempts + 1,
                    related=claimed.related,
                    public_url=self.settings.public_url,
                    follows_ticket=claimed.follows_ticket,
                    take_replacement=self._replacement_taker(delivery, handoff),
                    earlier=self._earlier_context(claimed, delivery.target),
                    new_ticket_assignment=fresh,
                    handoff_completed_at=claimed.completed_at,
                    held_by=claimed.held_by,
                )
                if claimed.merged_from is not None and link is not None:
                    # Its handoff's brief and earlier batches are on the ticket merged away: sent as an
                    # update that meets the merge itself sends it (`Adapter.update_merged`).
                    ctx = merge_target_context(ctx, f"{adapter.ticket_noun} {claimed.merged_from}")
                log.info("delivery attempt", extra={"attempt": ctx.attempt, "update": ctx.link is not None})
                outcome = adapter.deliver(ctx)
            except ReplacementUnderway:
                return self._hold_for_replacement(delivery)
            except DeliveryError as err:
                if (taken := self._taken_ticket(adapter, delivery, handoff, err, link)) is None:
                    return self._record_error(delivery, handoff, _rendered_as(err, link, caught_up),
                                              time.perf_counter() - started)
                # An update of the conversation's ticket leaves its link as it is: the link keeps what it
                # knows (its ticket's url, what it was opened with and for whom), which an outcome made of
                # an event does not — written, it wiped them for every later handoff (a review). A ticket
                # made is the link's now: without it, the next handoff of the conversation opened another.
                return self._record_success(delivery, handoff, taken, time.perf_counter() - started,
                                            link=taken.status == "created")
            except ConfigError as err:  # a mapping that cannot serve this packet: retried, as an admin may fix it
                log.error("mapping error in delivery", extra={"source": err.source})
                return self._record_error(delivery, handoff, TransientError(f"mapping error: {err}"),
                                          time.perf_counter() - started)
            except Exception as err:  # a bug must not lose the handoff: retry, then dead
                # Nor double it: raised after the vendor acted (an answer a library could not
                # decode, a reply without the id we read), a plain retry posted the alert or the
                # case again. Whatever it was, the next attempt looks before it sends.
                log.exception("unexpected error in delivery")
                unknown = OutcomeUnknown(f"internal error: {type(err).__name__}")
                return self._record_error(delivery, handoff, _rendered_as(unknown, link, caught_up),
                                          time.perf_counter() - started)
            # `{}` for the packet: a batch of messages too, which keeps its handoff's (`kept_tickets.keep`).
            if outcome.status == "updated" and kept_team(link, handoff.assignment, {}) is not None:
                # The ticket was opened for another team than routing chose: what the bot and the
                # customer are told becomes that team's — stored before the success, whose
                # `delivered` callback and any read show it, and set on this same handoff object
                # (intake's own, `fresh`), from which the answer is made.
                try:
                    kept = self.kept(handoff, delivery)
                except Exception:  # the answer names routing's team, as before; the ticket is recorded next
                    log.exception("could not record the team the conversation's tickets stay with")
                    kept = None
                if kept is not None:
                    handoff.assignment = kept
            attempted = self._record_success(delivery, handoff, outcome, time.perf_counter() - started)
            # By the name their own take was recorded with, where the holder is the one recorded.
            known = claimed.held_by if claimed.held_by and claimed.held_by.agent_id == outcome.holder else None
            if attempted is not None and outcome.status == "updated" and outcome.holder \
                    and (not handoff.follows_id or known):
                # Recorded before the answer, which names who has it as a replay or a read does: two
                # targets' agents, or a newer handoff on the ticket first, and only one is recorded.
                # Only a repeat onto a ticket an agent has pays for it on the bot's path. A batch's
                # handoff too, where the batch's reply named the conversation's holder (`held_by`):
                # the handoff's own reply was refused, so none said who has it.
                try:
                    received = self.held(handoff.follows_id or handoff.id, delivery.target, outcome.vendor_id,
                                         outcome.holder, agent_name=known.agent_name if known else None)
                    self._held_by_another(adapter, handoff, outcome, received)
                    if not handoff.follows_id:  # a batch's answer says where it went, not who has it
                        attempted = replace(attempted, holder=outcome.holder)
                except Exception:  # the ticket is recorded; who has it is for the next vendor event
                    log.exception("could not record the agent the updated ticket waits on")
        # A ticket that says who took the handoff (`Adapter.taken_elsewhere`) is told of a take made
        # before it was recorded — elsewhere, or on it: a Slack claim on an alert whose posting timed
        # out was announced to nobody, its Claim button left live (a review) — a batch of messages
        # too, which may have opened it when its handoff's delivery was given up.
        marks = attempted is not None and type(adapter).taken_elsewhere is not Adapter.taken_elsewhere
        if len(handoff.deliveries) > 1 and not handoff.follows_id:
            # Linking the targets' tickets to each other is cosmetic: it must not delay the answer.
            self.defer(lambda: self._related_then_taken(handoff, delivery.target, marks))
        elif marks and (outcome.status == "created" or claimed.link is None):
            # A batch that opened the alert, or found the one a given-up delivery made (no link to the
            # conversation's ticket was recorded); one posted in a recorded alert's thread found it marked.
            self._taken_before(handoff, delivery.target)
        if handoff.follows_id and attempted is not None and outcome.status == "created":
            # A batch of messages that opened a ticket (its handoff's delivery there had given up, or
            # found its ticket closed): the handoff's other tickets link it now, as they link each
            # other — a Slack alert never linked the Zendesk ticket such a batch opened (a review).
            # After the mark above: the edit reads what the alert says of who took it, and keeps it.
            self.defer(lambda: self._relink_for_batch(handoff, delivery.target))
        return attempted

    def _taken_ticket(self, adapter: Adapter, delivery: Delivery, handoff: Handoff, err: DeliveryError,
                      link: Link | None) -> Outcome | None:
        """The ticket the vendor's own event named as this handoff's — an agent took it (`assignments`
        matched it by the handoff's id while the delivery may have made a ticket not recorded yet) —
        when this failed attempt would give up a delivery whose create may have landed: recorded as
        made. Given up, the bot heard `failed` ("nobody has it") after `assigned` had named the agent
        and the ticket, and GET said both (a review). The looks for it failed, so whether all of the
        context reached it is not known: the receipt says so part by part. An update of the
        conversation's ticket (`link`, the ticket the event named) is recorded as that: `updated`, on
        the ticket and url it has; another ticket (one made in place of the link's, closed since) as made,
        with the url a create gives it (`Adapter.ticket_url`): without one, the answer, GET and the
        callbacks gave the bot a ticket with no link for an agent to open (a review)."""
        if handoff.follows_id or not (delivery.outcome_unknown or isinstance(err, OutcomeUnknown)):
            return None
        if not (self._spent(delivery, utcnow()) or decide(err) == "fail" or isinstance(err, FoundOnlyByTheVendor)):
            return None  # tries left: the next looks for it, and completes what it lacks
        with self.db.reading() as session:
            ticket = session.scalar(select(Assignment.vendor_ticket_id).where(
                Assignment.handoff_id == handoff.id, Assignment.target == delivery.target))
        if ticket is None:
            return None
        # Its lookup answered and found nothing (a Slack channel busy past the pages read, a comment
        # `vendor_extra` replaced), or every look failed (the vendor down): said as it was (a review).
        looked = "its lookup found no ticket of this handoff" if isinstance(err, FoundOnlyByTheVendor) \
            else f"every look for it failed ({type(err).__name__})"
        log.warning("delivery recorded from the vendor's event naming its ticket; its own looks did not find it",
                    extra={"vendor_id": ticket, "error_type": type(err).__name__})
        reason = (f"{delivery.target}'s own event named ticket {ticket} as this handoff's (an agent took it), but "
                  f"{looked}: it may lack this part")
        receipt = {"delivered": [], answers.UNVERIFIED: True,
                   "dropped": [{"part": part, "reason": reason} for part in parts_present(handoff.packet)]}
        if link is not None and str(link.vendor_id) == str(ticket):
            return Outcome(status="updated", vendor_id=link.vendor_id, url=link.url, payload=None, receipt=receipt)
        return Outcome(status="created", vendor_id=str(ticket), url=_url_of(adapter, str(ticket)), payload=None,
                       receipt=receipt)

    def _related_then_taken(self, handoff: Handoff, target: str, marks: bool) -> None:
        """The targets' tickets linked to each other, then — with `marks` — `_taken_before`. In
        that order: the link's edit of a Slack alert, read before the mark and written after it,
        put the Claim button back (a review, and a test under load)."""
        try:
            self._notify_related(handoff, target)
        finally:
            if marks:
                self._taken_before(handoff, target)

    def _held_by_another(self, adapter: Adapter, handoff: Handoff, outcome: Outcome,
                         received: Received | None) -> None:
        """The ticket's answer named an agent (`Outcome.holder`: a Slack reply saying who has the
        conversation) but another was recorded holding the handoff first — Zendesk's assignee, its
        own update answered first beside Slack: where the ticket says who took it
        (`Adapter.taken_elsewhere`), it says who is recorded instead. Left, the thread named one agent
        while the bot was told another had the customer (a review)."""
        holder = received.holder if received is not None else None  # None: `held` not wired (tests)
        if holder is None or holder.completed or holder.agent_id == outcome.holder or received.outcome == "recorded" \
                or type(adapter).taken_elsewhere is Adapter.taken_elsewhere:
            return
        # Said as the take it was (`first`): as answered to this record, "…took this handoff already;
        # nothing changed" — the words for a later click, told privately — went into the thread (a review).
        holder = replace(holder, handoff_id=handoff.follows_id or handoff.id, first=True)
        self.defer(lambda: adapter.taken_elsewhere(holder, str(outcome.vendor_id)))

    def _taken_before(self, handoff: Handoff, target: str) -> None:
        """`recorded`, queued on the notices' pool, for the handoff the batch is of, in its log context."""
        with log_context(**handoff_fields(handoff)):
            self.recorded(handoff.follows_id or handoff.id, target)

    def _still_leased(self, delivery: Delivery, token: str) -> bool:
        """Whether intake's lease on a delivery it has just stored is still its own.

        The lease runs from before the commit that stored it. A commit that stalled (a lock a
        migration held, a failover) could end with it lapsed and the delivery claimed by another
        process: both attempts ran, and the vendor had two tickets. With most of the lease left
        (the usual case) nothing is asked; else it is renewed under the same token, or the
        attempt is left to whoever holds it now."""
        now = utcnow()
        expires = delivery.lease_expires_at
        if expires is not None and (expires - now).total_seconds() > self.settings.lease_s / 2:
            return True
        with self.db.writing() as connection:
            renewed = connection.execute(_RENEW_OWN, {"delivery_id": delivery.id, "token": token,
                                                      "until": now + dt.timedelta(seconds=self.settings.lease_s)})
        if renewed.rowcount != 1:
            log.warning("the lease ran out while the handoff was stored; another attempt has the delivery",
                        extra={"delivery_id": str(delivery.id)})
            return False
        return True

    def _replacement_taker(self, delivery: Delivery, handoff: Handoff) -> Callable[[str, bool], bool]:
        """For `HandoffContext.take_replacement`: the conversation's link gives up the ticket that
        takes no more updates and names this delivery as the one opening its successor — once. A
        second delivery that met the same ticket finds the link changed, retries, and is then held
        for the new ticket (`_link_for`) and updates it, instead of opening a third."""
        key = ConversationLink.key_for(handoff, delivery.target)

        def take(gone: str, closed: bool) -> bool:
            # The closed ticket's id stays on the link until its successor is recorded there: if
            # this delivery fails, whoever opens the ticket instead still names it (`_link_for`).
            with self.db.statements() as connection:
                taken = driver_cursor.run(connection, _TAKE_FOR_REPLACEMENT, {
                    **key, "gone": gone, "owner": delivery.id, "now": utcnow(),
                    "extra": {"replaces": gone} if closed else None})
                return taken.rowcount == 1
        return take

    def _hold_for_replacement(self, delivery: Delivery) -> None:
        """Another delivery is opening the ticket this one must update: held, not an attempt (it
        would count towards giving up), until `_link_for` finds that ticket or takes over."""
        with self.db.writing() as connection:
            held = connection.execute(_HOLD, {"delivery_id": delivery.id, "token": delivery.lease_owner,
                                              "until": utcnow() + dt.timedelta(seconds=WAIT_FOR_OWNER_S)}).rowcount
        if not held:
            _lease_lost("held", None)
            return None
        log.info("waiting for the ticket that replaces the conversation's closed one")
        return None

    def _take_new_link(self, connection: Connection, key: Mapping[str, str], delivery_id: int,
                       now: dt.datetime) -> bool:
        """The conversation's first handoff (the usual case) takes its link row in one statement."""
        return connection.execute(
            self.db.insert_or_skip(_LINKS).values(**key, owner_delivery_id=delivery_id, created_at=now, updated_at=now)
        ).rowcount == 1

    def _claim_and_load(self, delivery_id: int, token: str | None, fresh: Handoff | None) -> _Claimed | None:
        now = utcnow()
        with self.db.session() as session:
            if fresh is not None and token is not None:
                # Nothing else can have changed it since intake's commit (the lease is ours): the
                # rows in memory are current, and are only read here (by several threads at once).
                handoff = fresh
                delivery = _member(fresh, delivery_id)
            else:
                if token is None and not self.claim(session, delivery_id, now, self.new_token()):
                    return None
                found = session.get(Delivery, delivery_id)
                if found is None or found.state != "pending" or (token and found.lease_owner != token):
                    return None
                delivery, handoff = found, found.handoff
            connection = session.connection()
            until = connection.execute(_PAUSED_UNTIL, {"target": delivery.target}).scalar()
            if until is not None and until > now:
                # The vendor asked everyone to wait: hold this delivery until then; not an attempt.
                connection.execute(_HOLD, {"delivery_id": delivery.id, "token": delivery.lease_owner, "until": until})
                return None
            caught_up, reached, packet, completed_at = False, None, None, None
            if handoff.follows_id is not None:
                turn = self._follow_up_may_go(connection, delivery, handoff, now)
                if turn is None:
                    return None
                caught_up, reached = turn
                packet = follow_up_packets.whole_of(session, handoff)
                if (parent := session.get(Handoff, handoff.follows_id)) is not None:
                    completed_at = parent.completed_at
                if session.scalar(select(Assignment.id).where(Assignment.handoff_id == handoff.follows_id).limit(1)):
                    # An agent has the handoff: its messages are not announced as sent "while waiting for an
                    # agent" under the line saying who took it (a review; `while_waiting.announced`).
                    packet = {**packet, "follow_up": {**packet["follow_up"], "taken": True}}
            link = self._link_for(connection, delivery, handoff, now)
            if link is False:
                return None
            follows = link.replaces if isinstance(link, _Opening) else None
            earlier = [session.get(Handoff, id_) for id_ in (link.after if isinstance(link, _Opening) else ())]
            after = tuple((h, follow_up_packets.whole_of(session, h)) for h in earlier if h is not None)
            link = None if isinstance(link, _Opening) else link
            # A replayed (or retried) delivery whose messages went meanwhile: they went with everything,
            # opening or updating the ticket, so it is done. Sent, it posted the whole brief again as
            # "Handed off again" (the same handoff), with an older transcript under the newer one.
            carried_by = None
            if link is not None and handoff.follows_id is None:
                carried_by = connection.execute(_CARRIED_BY, {"handoff_id": handoff.id,
                                                              "target": delivery.target}).first()
            related = tuple(
                {"target": d.target, "status": d.state, "id": d.vendor_id, "url": d.url}
                for d in handoff.deliveries
                if d.id != delivery.id and d.state in DONE
            )
            held_by = None
            if link and carried_by is None:
                # A batch's too: one carrying its handoff's whole brief into the thread (its own reply
                # refused) offered a live Claim there, and a second agent took the customer (a review).
                held = connection.execute(_HELD_ON, {"bot_id": handoff.bot_id,
                                                     "conversation_id": handoff.conversation_id,
                                                     "handoff_id": handoff.follows_id or handoff.id}).first()
                # Nobody once that take's handoff was completed (its ticket solved): the customer coming
                # back, weeks on, was parked on the old claimer with no Claim and no broadcast (a review).
                if held is not None and held.completed_at is None and held.target == delivery.target \
                        and held.vendor_ticket_id == link.vendor_id:
                    held_by = Holder(held.target, held.agent_id, held.agent_name, first=False,
                                     handoff_id=held.handoff_id)
            return _Claimed(delivery, handoff, link or None, related, caught_up, follows, packet, after, carried_by,
                            completed_at, _merged_away(link or None, caught_up, reached), held_by)

    def _follow_up_may_go(self, connection: Connection, delivery: Delivery, handoff: Handoff,
                          now: dt.datetime) -> tuple[bool, str | None] | None:
        """Messages sent while a handoff waited go to a target after the handoff, and after the
        earlier messages: None (held, not an attempt) while any of those is still being delivered
        there. Else whether all of them reached it, or a later one of them carried what one given up had
        not (`_all_arrived`) — then only these messages need to; else this follow-up carries
        everything (the packet holds it all), so nothing is lost. With it, the ticket the latest of
        them reached (`_reached`)."""
        before = connection.execute(_BEFORE_FOLLOW_UP, {"target": delivery.target, "follows_id": handoff.follows_id,
                                                         "seq": handoff.follow_up_seq}).all()
        waiting_for = [next_at for state, next_at, *_ in before if state == "pending"]
        if not waiting_for:
            return _all_arrived(before), _reached(before)
        link = connection.execute(_LINK_OF, ConversationLink.key_for(handoff, delivery.target)).first()
        if link is not None and link.owner_delivery_id == delivery.id and not link.vendor_id:
            # It went ahead once (all before it given up), took the conversation's link and is
            # opening the ticket with everything: what was replayed since waits for it (`_link_for`),
            # so waiting for that in turn would hold both for ever.
            return False, None
        # Until the latest of their next attempts (a vendor down for an hour: not a poll every
        # 2 s per batch), and no sooner than the wait for a conversation's first ticket.
        until = max(now + dt.timedelta(seconds=WAIT_FOR_OWNER_S), *waiting_for)
        connection.execute(_HOLD_FOR_TURN, {"delivery_id": delivery.id, "token": delivery.lease_owner, "until": until})
        # Named in full, as `_wait_for_owner` says why: the loop's claim comes here before the attempt's
        # log context is set, and the line named no handoff, batch or delivery.
        log.info("messages wait for what came before them at this target",
                 extra={**handoff_fields(handoff), "target": delivery.target, "delivery_id": str(delivery.id)})
        return None

    def _link_for(self, connection: Connection, delivery: Delivery, handoff: Handoff,
                  now: dt.datetime) -> Link | _Opening | None | bool:
        """The conversation's ticket at this target; False when another delivery is creating it."""
        key = ConversationLink.key_for(handoff, delivery.target)
        if self._take_new_link(connection, key, delivery.id, now):
            return None
        # Another handoff of this conversation got there first: its row says whether the ticket exists yet.
        row = connection.execute(_LINK_OF, key).one()
        if row.vendor_id:
            return Link(vendor_id=row.vendor_id, url=row.url, extra=row.extra or {})
        extra = dict(row.extra or {})
        if row.owner_delivery_id not in (None, delivery.id):
            owner = connection.execute(_OWNER_OF, {"delivery_id": row.owner_delivery_id}).first()
            if owner is not None and owner.state == "pending":
                return self._wait_for_owner(connection, delivery, handoff, now, row.owner_delivery_id)
            if owner is not None and owner.outcome_unknown:
                # Given up, its last try may have made the ticket: looked for first, by every attempt
                # of the owners to come until the link has its ticket (kept on the link, as
                # `replaces` is).
                extra["after"] = list(dict.fromkeys([*extra.get("after", []), owner.handoff_id]))
        taken = connection.execute(_SET_LINK_OWNER, {"link_id": row.id, "owner": delivery.id, "now": now,
                                                     "was": row.owner_delivery_id, "extra": extra}).rowcount
        if not taken:  # another delivery took it (or its ticket came) since it was read
            return self._wait_for_owner(connection, delivery, handoff, now, None)
        replaces, after = extra.get("replaces"), tuple(extra.get("after", ()))
        return _Opening(replaces, after) if replaces or after else None

    def _earlier_context(self, claimed: _Claimed, target: str) -> tuple[HandoffContext, ...]:
        """The contexts of the deliveries this one takes the place of (`_Opening.after`), as their
        own attempts would have built them, for the adapter to look their tickets up."""
        return tuple(
            HandoffContext(handoff_id=handoff.id, target=target, packet=packet,
                           brief=render_brief(packet, handoff.id, assignment=(
                               told := as_answered(handoff.assignment, handoff.customer_message, update=False))),
                           assignment=told, idempotency_key=f"{handoff.id}:{target}",
                           outcome_unknown=True, sent_to=_sent_to(handoff, target), public_url=self.settings.public_url)
            for handoff, packet in claimed.after)

    @staticmethod
    def _wait_for_owner(connection: Connection, delivery: Delivery, handoff: Handoff, now: dt.datetime,
                        owner: int | None) -> bool:
        """Wait for the conversation's first ticket rather than open a second one; not an attempt."""
        connection.execute(_HOLD, {"delivery_id": delivery.id, "token": delivery.lease_owner,
                                   "until": now + dt.timedelta(seconds=WAIT_FOR_OWNER_S)})
        # Named in full: a claim by intake or the loop comes here before the attempt's log context is
        # set, and the line said only which delivery it waited for, not which one waited.
        log.info("waiting for the conversation's first ticket",
                 extra={**handoff_fields(handoff), "target": delivery.target,
                        "delivery_id": str(delivery.id), "owner_delivery": owner})
        return False

    # ---- recording -------------------------------------------------------------------------

    def _record_success(self, delivery: Delivery, handoff: Handoff, outcome: Outcome, seconds: float,
                        link: bool = True) -> Attempted:
        now = utcnow()
        # Prepared statements, not loaded rows: the attempt knows every value it writes (the ORM's
        # read and flush of both rows showed in the benchmark's profile of every delivery).
        done = {"delivery_id": delivery.id, "token": delivery.lease_owner, **_done(outcome, now)}
        # Which customer a ticket was opened for, as marks (no address kept with the link), and where
        # its conversation stood: a later handoff says what is new, and when it names another
        # customer (`HandoffContext.handed_off_again`).
        # Whatever the outcome: an "updated" one (the ticket an earlier given-up delivery made, the
        # customer's open one) may be what first fills the link; a link with its ticket already
        # is not written again (`_LINK_TICKET_BY_KEY`), so nothing kept there is replaced.
        # And which handoff made the ticket (`MADE_FOR`): a replay of a given-up delivery whose ticket
        # a later handoff found, taken for the conversation's, updated it.
        made_earlier = outcome.made_earlier
        made_for = made_earlier[0] if made_earlier else handoff.id if outcome.status == "created" else None
        kept = {"customer": dict(outcome.customer), "opened_with": dict(outcome.opened_with), MADE_FOR: made_for}
        ticket = {"vendor_id": outcome.vendor_id, "url": outcome.url,
                  "extra": {**outcome.link_extra, **{key: value for key, value in kept.items() if value}}}
        key = ConversationLink.key_for(handoff, delivery.target)
        # Messages sent while a handoff waited, delivered: if every target had given up on the
        # handoff itself, its bot was told `failed` — it is owed `delivered` now (read before the
        # transaction: the handoff's packet and answer do not change). So is the handoff whose
        # given-up delivery made the ticket found (`Outcome.made_earlier`).
        parent = self._parent(handoff) if handoff.follows_id else None
        earlier = self._stored(made_earlier[0]) if made_earlier else None
        try:
            owed, recorded = self._write_success(done, ticket, key if link else None, outcome, delivery, handoff, now,
                                                 parent, earlier)
        except _LeaseLost:
            _lease_lost(outcome.status, outcome.vendor_id)
            return None
        if owed:
            self.callback_owed()
        if recorded is not None:
            # As its own attempt's success would: its other tickets linked to this one, and a take
            # recorded before told it (a Slack alert found so never linked the Zendesk ticket; a review).
            if len(recorded.deliveries) > 1:
                self.defer(lambda: self._related_then_taken(recorded, delivery.target, True))
            else:
                self._taken_before(recorded, delivery.target)
        metrics.attempted(delivery.target, outcome.status, seconds)
        log.info("delivered", extra={"state": outcome.status, "vendor_id": outcome.vendor_id})
        return Attempted(delivery.target, outcome.status, outcome.vendor_id, outcome.url, delivery.attempts + 1,
                         None, done["receipt"])

    def _parent(self, follow_up: Handoff) -> Handoff | None:
        return self._stored(follow_up.follows_id)

    def _stored(self, handoff_id: str | None) -> Handoff | None:
        with self.db.reading() as session:
            stored = session.get(Handoff, handoff_id)
            if stored is not None:
                session.expunge(stored)
            return stored

    def _write_success(self, done: dict[str, Any], ticket: dict[str, Any], key: Mapping[str, str] | None,
                       outcome: Outcome, delivery: Delivery, handoff: Handoff, now: dt.datetime,
                       parent: Handoff | None = None, earlier: Handoff | None = None) -> tuple[bool, Handoff | None]:
        """`_record_success`'s transaction: whether a status callback is owed, and `earlier` (the
        handoff of `Outcome.made_earlier`) when its delivery was recorded too. Raises `_LeaseLost`
        (rolling it all back) when the delivery is no longer this attempt's. Statements straight on
        the driver's cursor (`driver_cursor`): this transaction is on the path between the vendor's
        answer and the bot's."""
        with self.db.statements() as connection:
            if outcome.payload is None:
                written = driver_cursor.run(connection, _DELIVERED, done)
            else:
                written = driver_cursor.run(connection, _DELIVERED_WITH_PAYLOAD,
                                            {**done, "payload": dict(outcome.payload)})
            if not written.rowcount:
                raise _LeaseLost
            if key is None:  # the conversation's link left as it is (`carried_by`)
                return callbacks.on_delivered(connection, self.db, handoff, now), None
            if outcome.moved_from:
                ticket = _carried_over(connection, key, ticket, outcome.moved_from)
            # The usual case, one statement: the link this delivery took at intake gets its ticket.
            filled = driver_cursor.run(connection, _LINK_TICKET_BY_KEY,
                                       {**key, **ticket, "replaces": outcome.status == "created", "now": now,
                                        "delivery_id": delivery.id, "moved_from": outcome.moved_from})
            if not filled.rowcount:
                # No link (taken over from an older handoff without one), one whose ticket was
                # updated, or one another delivery is opening a successor on.
                kept = driver_cursor.run(connection, _LINK_OWNER_BY_KEY,
                                         {**key, "now": now, "delivery_id": delivery.id})
                if not kept.rowcount:
                    driver_cursor.run(connection, _NEW_LINK, {**key, **ticket, "owner_delivery_id": None,
                                                              "created_at": now, "updated_at": now})
            if outcome.status == "updated" and outcome.opened_with:
                _told(connection, key, outcome, now, batch=handoff.follows_id is not None)
            if outcome.slow_down_s:
                self._pause(connection, delivery.target, now + dt.timedelta(seconds=outcome.slow_down_s),
                            "the vendor's per-minute allowance is nearly spent", level=logging.INFO)
            if parent is not None:  # the handoff's own question, asked again: it shows this ticket now
                owed = callbacks.on_given_up(connection, self.db, parent, now)
            else:
                owed = callbacks.on_delivered(connection, self.db, handoff, now)
            # The earlier handoff's rows after this one's: `assignments.complete` locks the newest
            # handoff's first, and the other order deadlocked with it on PostgreSQL (a review).
            if earlier is None or outcome.made_earlier is None:
                return owed, None
            made, told = self._made_earlier(connection, earlier, delivery.target, outcome.made_earlier[1], now)
            return owed or told, earlier if made else None

    def _made_earlier(self, connection: Connection | driver_cursor.Pooled, earlier: Handoff, target: str,
                      made: Outcome, now: dt.datetime) -> tuple[bool, bool]:
        """In the transaction recording a later handoff's outcome, which found the ticket the given-up
        delivery of `earlier` to `target` made (`Outcome.made_earlier`): that delivery recorded as
        `made`, as its own next attempt would have, and `delivered` owed to its bot. Left `dead`, its
        bot heard `failed` ("nobody has it yet") of a ticket the connector had found and updated, and
        a replay of it took that ticket for the conversation's and updated it. Whether it was
        recorded, and whether a callback is owed."""
        found = driver_cursor.run(connection, _MADE_EARLIER, {"handoff_id": earlier.id, "target": target,
                                                              **_done(made, now)})
        if not found.rowcount:  # replayed meanwhile (its attempt records what it finds), or recorded already
            return False, False
        log.info("a given-up delivery recorded: a later handoff found the ticket it made",
                 extra={"made_for": earlier.id, "vendor_id": made.vendor_id})
        return True, callbacks.on_delivered(connection, self.db, earlier, now)

    def _record_error(self, delivery: Delivery, handoff: Handoff, err: DeliveryError,
                      seconds: float | None = None) -> Attempted | None:
        now = utcnow()
        message = f"{type(err).__name__}: {err.message}"[:2000]  # stored for admins, never logged
        with self.db.session() as session:
            row = session.get(Delivery, delivery.id, with_for_update=True)  # the lease cannot change under us
            assert row is not None
            if row.lease_owner != delivery.lease_owner:
                _lease_lost("error", None, error_type=type(err).__name__)
                return None
            row.attempts += 1
            # A rate limit is the vendor asking us to wait, not a try that failed: counted against
            # CONNECTOR_MAX_ATTEMPTS, a long Slack thread paced by 429s (each attempt posting what it
            # could) went `dead` with its alert up. Still an attempt (adapters resume by it, and the
            # bot and the admin page read it); CONNECTOR_MAX_DELIVERY_AGE_S still bounds it.
            row.rate_limited += 1 if isinstance(err, RateLimited) else 0
            row.last_error = message
            row.vendor_reply = _jsonable(err.reply)
            row.lease_owner = row.lease_expires_at = None
            if isinstance(err, OutcomeUnknown):
                row.outcome_unknown = True
                # Kept until the next unknown outcome says otherwise, key by key: a later plain
                # failure (refused before sending), or an unknown outcome that does not say where
                # it went, leaves the unanswered one where it went (each attempt says its `left_out`).
                row.sent_to = {**(row.sent_to or {}), **(err.sent_to or {}),
                               **({TICKET_MADE: True} if err.made else {})} or None
            if isinstance(err, RateLimited):
                self._pause(session.connection(), row.target, now + dt.timedelta(seconds=err.retry_after or 30),
                            err.message)
            given_up, failed = "", row.attempts - row.rate_limited
            too_old = (now - row.window_started_at).total_seconds() > self.settings.max_delivery_age_s
            # This attempt was the one more granted below: marked with the attempts it was granted at,
            # which a replay (attempts back to 0) or any later attempt no longer matches.
            extra = self._spent(delivery, now) and (delivery.sent_to or {}).get(ONE_MORE) == delivery.attempts
            if decide(err) == "fail":
                row.state, row.finished_at = "failed", now
                given_up = "refused: retrying the same payload cannot help"
            elif ((failed >= self.settings.max_attempts or too_old) and row.outcome_unknown
                  and ((isinstance(err, OutcomeUnknown) and not extra)
                       or (isinstance(err, RateLimited) and extra and not too_old))):
                # Its tries spent on an unknown outcome (that try may have made the ticket): one more
                # attempt, which looks first as every retry after one does — found, it is recorded; not,
                # sent. Given up on the spot, the bot and the customer were told nobody had the handoff
                # while an agent worked its ticket. That one turned away by a rate limit (not counted)
                # tries again after it, within the age limit.
                row.next_attempt_at = now + dt.timedelta(seconds=backoff_seconds(
                    failed, err.retry_after, self.settings.retry_base_s, self.settings.retry_max_s))
                row.sent_to = {**(row.sent_to or {}), ONE_MORE: row.attempts}
            elif failed >= self.settings.max_attempts:
                row.state, row.finished_at = "dead", now
                given_up = (f"{failed - extra} attempt(s), as many as CONNECTOR_MAX_ATTEMPTS allows"
                            + (", and one more after an unknown outcome" if extra else "")
                            + (f" (and {row.rate_limited} more turned away by a rate limit, not counted)"
                               if row.rate_limited else ""))
            elif too_old:
                row.state, row.finished_at = "dead", now
                given_up = f"tried for over {self.settings.max_delivery_age_s} s (CONNECTOR_MAX_DELIVERY_AGE_S)"
            else:
                retry_after = err.retry_after if isinstance(err, TransientError) else None
                settings = self.settings
                # Only failed tries raise the backoff: a run of 429s waits what the vendor asks, not
                # minutes more each time (a long Slack thread waited up to CONNECTOR_RETRY_MAX_S a chunk).
                delay = backoff_seconds(failed, retry_after, settings.retry_base_s, settings.retry_max_s)
                row.next_attempt_at = now + dt.timedelta(seconds=delay)
            owed = False
            if row.state != "pending":
                session.flush()
                owed = callbacks.on_given_up(session.connection(), self.db, handoff, now)
            state, attempts, next_at, attempted = row.state, row.attempts, row.next_attempt_at, Attempted.of(row)
        if owed:
            self.callback_owed()
        if state != "pending":
            self._relate_the_others(handoff, delivery.target)
        metrics.attempted(delivery.target, state, seconds)
        level = logging.WARNING if state == "pending" else logging.ERROR
        # Vendors quote back what they refused (a requester's address…): the text stays in
        # `last_error` for admins; the log gets its kind and status only.
        # A delivery given up says why, and names no next attempt (it had a time already past).
        ended = {"given_up": given_up} if state != "pending" else {"next_attempt_at": next_at.isoformat()}
        log.log(level, "delivery attempt failed",
                extra={"state": state, "attempts": attempts, "error_type": type(err).__name__,
                       "vendor_status": err.status, **ended})
        return attempted

    def _lapsed_too_often(self, delivery: Delivery) -> bool:
        """Taken over from a process that stopped (`LEASE_LAPSED`) with more attempts counted than
        CONNECTOR_MAX_ATTEMPTS and the one more after an unknown outcome allow: given up, dead (a
        replay looks before it sends), not tried again."""
        return delivery.last_error == LEASE_LAPSED and \
            delivery.attempts - delivery.rate_limited > self.settings.max_attempts

    def _spent(self, delivery: Delivery, now: dt.datetime) -> bool:
        """Whether `delivery` (as claimed) had had its tries when this attempt began: the attempts
        CONNECTOR_MAX_ATTEMPTS allows (rate limits aside), or CONNECTOR_MAX_DELIVERY_AGE_S."""
        return (delivery.attempts - delivery.rate_limited >= self.settings.max_attempts
                or (now - delivery.window_started_at).total_seconds() > self.settings.max_delivery_age_s)

    def _pause(self, connection: Connection | driver_cursor.Pooled, target: str, until: dt.datetime, reason: str,
               level: int = logging.WARNING) -> None:
        """Pause `target` until `until`, or leave a longer pause as it is.

        An upsert, not a read then an insert: threads meeting 429s together all pause the target,
        and the second insert failed on the primary key (the chaos test's log showed the crash)."""
        reason = reason[:500]
        now = utcnow()
        driver_cursor.run(connection, self.db.insert_or_skip(_PAUSES),
                          {"target": target, "until": until, "reason": reason, "updated_at": now})
        driver_cursor.run(connection, _LONGER_PAUSE, {"paused": target, "later": until, "why": reason, "now": now})
        log.log(level, "target paused", extra={"paused_target": target, "until": until.isoformat()})

    def _finish_failure(self, delivery: Delivery, handoff: Handoff, state: str, message: str) -> Attempted | None:
        with self.db.session() as session:
            row = session.get(Delivery, delivery.id, with_for_update=True)
            assert row is not None
            if row.lease_owner != delivery.lease_owner:  # as `_record_error`: the holder's outcome stands
                _lease_lost(state, None)
                return None
            row.state, row.last_error, row.finished_at = state, message, utcnow()
            row.lease_owner = row.lease_expires_at = None
            session.flush()
            owed = callbacks.on_given_up(session.connection(), self.db, handoff, row.finished_at)
            attempted = Attempted.of(row)
        if owed:
            self.callback_owed()
        self._relate_the_others(handoff, delivery.target)
        metrics.attempted(attempted.target, attempted.state)
        log.error("delivery not possible", extra={"error": message})
        return attempted

    def _relate_the_others(self, handoff: Handoff, given_up: str) -> None:
        """A target given up may have been the last to finish: the others' tickets are linked to each
        other then, as after a success (a Slack alert never linked the Salesforce case when Zendesk,
        the last, went dead; a review). Deferred, as there: it must not delay anything."""
        if len(handoff.deliveries) > 1 and not handoff.follows_id:
            self.defer(lambda: self._notify_related(handoff, given_up))

    def _relink_for_batch(self, follow_up: Handoff, target: str) -> None:
        """`_notify_related` for the handoff of a batch of messages that opened a ticket at `target`."""
        parent = self._parent(follow_up)
        if parent is not None:
            self._notify_related(parent, target, with_batches=True)

    def _notify_related(self, handoff: Handoff, finished_target: str, *, with_batches: bool = False) -> None:
        """Tell the finished targets of this handoff about each other's tickets (Slack links) — once,
        when the last target has finished (an edit per finished target cost the bench 2 Slack calls
        per handoff). The packet and assignment are the attempt's own; only what the other attempts
        wrote is read: the deliveries' outcomes and the conversation's links (reading the whole
        handoff back through the ORM, packet included, took ~10 % of the workers' time in the
        benchmark's intake with three targets, `bench/FIXES.md` round 8). `with_batches`: each target
        shown by the newest ticket its batches of messages opened where it gave up or lost its ticket
        (`answers.rescued`, as reads show it)."""
        with self.db.reading() as session:
            connection = session.connection()
            outcomes = driver_cursor.run(connection, _OUTCOMES_OF_HANDOFF, {"handoff_id": handoff.id}).rows
            if with_batches:
                later = [(None, d.target, d.state, d.vendor_id, d.url)
                         for d in answers.reached_later(session, [handoff]).get(handoff.id, [])]
                shown = answers.rescued(outcomes, later, itemgetter(1), itemgetter(2), itemgetter(3))
                outcomes = [(own[0], *told[1:]) for own, told in zip(outcomes, shown, strict=True)]
            if any(state == "pending" for _, _, state, _, _ in outcomes):
                return
            done = [(delivery_id, target, state, vendor_id, url)
                    for delivery_id, target, state, vendor_id, url in outcomes if state in DONE]
            contexts = []
            for delivery_id, target, *_ in done:
                if target == finished_target and len(done) == 1:
                    continue
                related = tuple({"target": other, "status": state, "id": vendor_id, "url": url}
                                for other_id, other, state, vendor_id, url in done if other_id != delivery_id)
                links = driver_cursor.run(connection, _LINK_OF, ConversationLink.key_for(handoff, target)).rows
                if not links or not related:
                    continue
                [(_, ticket_id, ticket_url, extra, _)] = links  # one per conversation and target
                if ticket_id:
                    contexts.append((target, Link(ticket_id, ticket_url, extra or {}), related))
        for target, link, related in contexts:
            adapter = self.adapters().get(target)
            if adapter is None:
                continue
            # The alert or ticket as made (Slack's is made again whole): its message as answered.
            told = as_answered(handoff.assignment, handoff.customer_message, update=False)
            ctx = HandoffContext(
                handoff_id=handoff.id, target=target, packet=handoff.packet,
                brief=render_brief(handoff.packet, handoff.id, assignment=told),
                assignment=told,
                idempotency_key=f"{handoff.id}:{target}", link=link, related=related,
                public_url=self.settings.public_url,
            )
            try:
                adapter.link_related(ctx)
            except DeliveryError as err:  # cosmetic: the tickets exist; the links can wait
                log.warning("could not link related tickets",
                            extra={"target": target, "error_type": type(err).__name__, "vendor_status": err.status})

    # ---- operators ----------------------------------------------------------------------------

    def paused_targets(self) -> list[str]:
        """The targets paused now at their vendor's request (a 429, or a quota nearly spent)."""
        with self.db.reading() as session:
            return list(session.scalars(select(TargetPause.target).where(TargetPause.until > utcnow())))

    def counts(self, enabled: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Deliveries per target and state (pending split into waiting and retrying), every
        `enabled` target at 0 when it has none: a target that appears only once there is trouble
        cannot tell "fine" from "not counted" (`/readyz` showed `{}` beside `/metrics`' zeros). A given-up
        one whose messages a later batch carried since (`carried.carried_later`) is not counted: nothing
        of it is missing at the vendor, nor can a replay take it — a `dead` gauge that never went
        back to zero had an operator look for a loss there was not."""
        from sqlalchemy import func, literal_column

        # `attempts > 0` written twice with a bound 0 becomes two parameters ($1, $2), and PostgreSQL
        # then refuses the select as not grouped (GroupingError), so /readyz answered 503 on every
        # PostgreSQL deployment. One labelled expression with a literal 0 is the same on both sides.
        retried = (Delivery.attempts > literal_column("0")).label("retried")
        # A read: /readyz (asked every few seconds by an orchestrator) must not queue for SQLite's writer.
        with self.db.reading() as session:
            rows = session.execute(
                select(Delivery.target, Delivery.state, retried, func.count())
                .where(or_(Delivery.state == "pending", and_(Delivery.state.in_(REPLAYABLE), ~carried_later())))
                .group_by(Delivery.target, Delivery.state, retried)
            ).all()
        counts = {target: dict.fromkeys(COUNTED, 0) for target in enabled}
        for target, state, retried, number in rows:
            name = RETRYING if state == "pending" and retried else state
            bucket = counts.setdefault(target, dict.fromkeys(COUNTED, 0))
            bucket[name] += number
        return counts


REPLAYABLE = GIVEN_UP
RETRYING = "retrying"  # a pending delivery tried at least once, as counted and listed
COUNTED = ("pending", RETRYING, "dead", "failed")  # `Outbox.counts`' states, as /readyz and /metrics name them


def replay(db: Database, *, ids: list[int] | None = None, states: tuple[str, ...] = ("dead",),
           target: str | None = None, enabled: Collection[str] | None = None) -> list[int]:
    """Put given-up deliveries back in the queue, with a fresh retry window; only those of the
    `enabled` targets when given (one of a target disabled since failed at once, attempts 0).

    They are marked *outcome unknown*, so the first new attempt looks the handoff up at the vendor
    before sending: a replay never duplicates what already reached it.
    """
    now = utcnow()
    given_up = _in_states(states)
    query = _given_up(given_up, ids, target)
    if enabled is not None:
        query = query.where(Delivery.target.in_(sorted(enabled)))
    with db.session() as session:
        candidates = list(session.scalars(query.order_by(Delivery.id)))
        chosen: list[int] = []
        if candidates:
            # Given up still, checked again by the UPDATE itself: two replays at once (a double
            # click) both read "failed" on PostgreSQL, and the second reset the delivery the first
            # had put back and a thread was already attempting — a second concurrent attempt.
            chosen = sorted(session.scalars(
                update(Delivery)
                .where(Delivery.id.in_(candidates), given_up)
                .values(state="pending", attempts=0, rate_limited=0, next_attempt_at=now, window_started_at=now,
                        outcome_unknown=True, finished_at=None, lease_owner=None, lease_expires_at=None)
                .returning(Delivery.id)
            ))
        _said_each(session, "delivery replayed", chosen)
    log.info("deliveries replayed", extra={"count": len(chosen)})
    return chosen


def revive_named(session: Session, handoff_id: str, target: str, ticket: str) -> int | None:
    """In the transaction recording that an agent took the ticket a vendor's event named as
    `handoff_id`'s (by its name: `assignments.delivered_to`), its delivery to `target` given up after
    an attempt whose outcome was unknown (`dead`, `failed`, or dismissed since) is put back: the id
    of the delivery to attempt now, or None. Left given up, its bot read `failed` and the apology
    ("nobody has it yet") while GET named the agent working that ticket (a review). The attempt looks
    the handoff up first, as every attempt after an unknown outcome does: it finds the ticket and
    completes what it lacks; when the looks fail, or find nothing (a Slack channel busy past its
    pages, a Zendesk comment `vendor_extra` replaced), `Outbox._taken_ticket` records `ticket`, the one
    the event named (`NAMED_TICKET`): a second alert was posted beside the one an agent had claimed.
    Its attempts are kept: they were spent, and the next failed look records it at once."""
    row = session.scalars(
        select(Delivery)
        .where(Delivery.handoff_id == handoff_id, Delivery.target == target, Delivery.vendor_id.is_(None),
               Delivery.state.in_((*GIVEN_UP, DISMISSED)), Delivery.outcome_unknown.is_(True), ~carried_later())
        .with_for_update()).first()
    if row is None:
        return None
    row.state, row.next_attempt_at, row.finished_at, row.lease_owner, row.lease_expires_at = \
        "pending", utcnow(), None, None, None
    row.sent_to = {**(row.sent_to or {}), NAMED_TICKET: ticket}
    log.warning("a given-up delivery put back: the vendor's event named its ticket, which an agent took",
                extra={"delivery_id": row.id, "vendor_id": ticket})
    return row.id


def dismiss(db: Database, *, ids: list[int] | None = None, states: tuple[str, ...] = ("dead",),
            target: str | None = None, served: Collection[str] | None = None) -> list[int]:
    """Put given-up deliveries aside for good (`DISMISSED`); their last error keeps why they gave up.

    `served`: the targets this process serves. Named by id or by `target`, a pending delivery of a
    target not among them, due and untaken for `UNTAKEN_TO_DISMISS_S`, is put aside too: a target
    switched off left its deliveries retrying nowhere for a day (`UNSERVED_AFTER_S` past the age
    limit), the bot told someone would reply, and `dismiss` refused them as not given up. Its
    handoff's `failed` callback is owed then, if that was its last target."""
    now = utcnow()
    given_up = taken = _in_states(states)
    unserved = None
    if served is not None and (ids is not None or target is not None):
        # Due and untaken for a while, as `claim_due` judges a target no process serves: another
        # process may serve it (a rolling change of CONNECTOR_TARGETS), and takes a due delivery
        # within a poll or two — dismissed from here, its next try, which would have made the
        # ticket, never came. A target's pause holds its deliveries, served or not.
        untaken_since = now - dt.timedelta(seconds=UNTAKEN_TO_DISMISS_S)
        unserved = and_(pending_unserved(served), _lease_free(now), Delivery.next_attempt_at < untaken_since,
                        Delivery.target.not_in(select(TargetPause.target).where(TargetPause.until > untaken_since)))
        taken = or_(given_up, unserved)
    with db.session() as session:
        # Carried since by later messages too: nothing of it is missing, and it kept its handoff from
        # retention for ever (no replay takes it).
        candidates = list(session.scalars(_given_up(taken, ids, target, carried=True).order_by(Delivery.id)))
        pending = set(session.scalars(select(Delivery.id).where(Delivery.id.in_(candidates), unserved))) \
            if unserved is not None and candidates else set()
        chosen = sorted(session.scalars(  # given up still: a replay may have taken one meanwhile
            update(Delivery).where(Delivery.id.in_(candidates), taken)
            # Said after the error, not before it: a bot reads the error through `answers.for_bot`,
            # which knows a connection failure (and hides its hosts) by how it starts.
            .values(state=DISMISSED, finished_at=now, updated_at=now, lease_owner=None, lease_expires_at=None,
                    last_error=func.coalesce(Delivery.last_error, "no error") + literal(" (dismissed by an operator)"))
            .returning(Delivery.id))) if candidates else []
        if pending & set(chosen):
            session.flush()
            for handoff_id in sorted(set(session.scalars(select(Delivery.handoff_id).where(
                    Delivery.id.in_(sorted(pending & set(chosen))))))):
                handoff = session.get(Handoff, handoff_id)
                if handoff is not None:
                    callbacks.on_given_up(session.connection(), db, handoff, now)
        _said_each(session, "delivery dismissed by an operator", chosen)
        behind = _batches_behind(session, chosen, now)
        _said_each(session, "delivery dismissed with the handoff's there", behind)
    log.info("deliveries dismissed", extra={"count": len(chosen)})
    return chosen


# `last_error` of a batch of messages put aside with its handoff's delivery at the same target.
BEHIND_DISMISSED = "not sent: its handoff's delivery to this target was dismissed by an operator"


def _batches_behind(session: Session, chosen: list[int], now: dt.datetime) -> list[int]:
    """The batches of messages waiting behind the dismissed deliveries `chosen`, at their targets,
    put aside too (none running now): finding nothing delivered before them, they carried the whole
    handoff where the operator had said it was not to go, and a batch could not be dismissed itself
    (an operator's review). Later batches are not sent there at all (`follow_ups`)."""
    behind: list[int] = []
    for handoff_id, target in session.execute(select(Delivery.handoff_id, Delivery.target)
                                              .where(Delivery.id.in_(chosen)).order_by(Delivery.id)).all():
        behind += session.scalars(
            update(Delivery)
            .where(Delivery.target == target, Delivery.state == "pending", _lease_free(now),
                   Delivery.handoff_id.in_(select(Handoff.id).where(Handoff.follows_id == handoff_id)))
            .values(state=DISMISSED, finished_at=now, updated_at=now, lease_owner=None, lease_expires_at=None,
                    last_error=literal(BEHIND_DISMISSED))
            .returning(Delivery.id)).all()
    return sorted(behind)


def _said_each(session: Session, what: str, chosen: list[int]) -> None:
    """A line per delivery an operator replayed or dismissed (`jsonlog.log_each`)."""
    log_each(log, what, session.execute(select(Delivery.id.label("delivery_id"), Delivery.handoff_id, Delivery.target)
                                        .where(Delivery.id.in_(chosen)).order_by(Delivery.id)).mappings())


def pending_unserved(served: Collection[str]) -> Any:
    """A pending delivery of a target not among `served` (this process's): no process here will try it.
    It waits for one that does (a rolling change of CONNECTOR_TARGETS) — or for an operator, who may
    dismiss it once it has been due `UNTAKEN_TO_DISMISS_S` with no process taking it (`dismiss`)."""
    return and_(Delivery.state == "pending", Delivery.target.not_in(sorted(served)))


def of_targets_not_enabled(db: Database, *, ids: list[int] | None, states: tuple[str, ...], target: str | None,
                           enabled: Collection[str]) -> list[int]:
    """The given-up deliveries a replay with `enabled` leaves alone: their target is not enabled here."""
    query = _given_up(_in_states(states), ids, target)
    with db.reading() as session:
        return list(session.scalars(query.where(Delivery.target.not_in(sorted(enabled))).order_by(Delivery.id)))


def _in_states(states: tuple[str, ...]) -> Any:
    """A delivery given up in one of `states` (those of them a replay or a dismissal may take)."""
    return Delivery.state.in_([s for s in states if s in REPLAYABLE])


def _given_up(given_up: Any, ids: list[int] | None, target: str | None, *, carried: bool = False) -> Any:
    """The given-up deliveries a replay (not those carried since) or a dismissal may take."""
    query = select(Delivery.id).where(given_up) if carried else select(Delivery.id).where(given_up, ~carried_later())
    if ids is not None:
        query = query.where(Delivery.id.in_(ids))
    if target is not None:
        query = query.where(Delivery.target == target)
    return query


def list_deliveries(db: Database, *, state: str | None, target: str | None, limit: int,
                    carried: bool = True, before: tuple[dt.datetime, int] | None = None,
                    unserved_by: Collection[str] | None = None) -> list[Delivery]:
    """Newest first. Each row's `carried_since` says whether it is a given-up one whose messages a
    later batch carried since (nothing of it is missing at its target; a replay skips it);
    `carried` False leaves those out. `before`: the position (`updated_at`, id) of the last row of
    the page before — where that row was then, not where it is now: replayed meanwhile, it moved
    to the top, and the next page began with the first page again. `unserved_by`: only the pending
    deliveries of a target not among these (`pending_unserved`)."""
    since = carried_since(Delivery.handoff_id, Delivery.target, Delivery.state)
    query = select(Delivery, since.label("carried_since"))
    if before is not None:
        at, last = before
        query = query.where(or_(Delivery.updated_at < at, and_(Delivery.updated_at == at, Delivery.id < last)))
    if state == RETRYING:  # as /readyz and /metrics count them (`Outbox.counts`): pending, tried before
        query = query.where(Delivery.state == "pending", Delivery.attempts > 0)
    elif state:
        query = query.where(Delivery.state == state)
    if not carried:
        query = query.where(~since)
    if unserved_by is not None:
        query = query.where(pending_unserved(unserved_by))
    if target:
        query = query.where(Delivery.target == target)
    with db.session() as session:
        rows = session.execute(query.order_by(Delivery.updated_at.desc(), Delivery.id.desc()).limit(limit)).all()
    for row, was_carried in rows:
        row.carried_since = bool(was_carried)  # not a column: what this listing found
    return [row for row, _ in rows]


def release_all(db: Database, owner: str) -> int:
    """Give back every lease this process holds (shutdown), so another process can take over.

    What is still leased at this point never started (its thread's queue was cancelled) or ended
    without recording its result, perhaps after the vendor acted: each is marked as of unknown
    outcome, as an expired lease is (`_taken_over`), so the next attempt looks before it sends.
    Released without the mark, the next process sent a plain create — a second Slack alert."""
    with db.session() as session:
        result = session.execute(
            update(Delivery)
            .where(and_(Delivery.lease_owner.startswith(f"{owner}/"), Delivery.state == "pending"))
            .values(lease_owner=None, lease_expires_at=None, outcome_unknown=True)
        )
        return result.rowcount


class _LeaseLost(Exception):
    """The delivery is no longer this attempt's: its lease expired (its process could not renew it,
    the database out of reach for longer than `lease_s`) and another attempt claimed it."""


def _lease_lost(state: str, vendor_id: str | None, **extra: Any) -> None:
    # The attempt that holds the lease now looked the handoff up at the vendor first (a taken-over
    # claim is `outcome_unknown`), and records what it finds: writing this one's result over it
    # would clear its lease while it runs, or replace the ticket it recorded.
    log.error("delivery result not recorded: the lease was taken over by another attempt",
              extra={"state": state, "vendor_id": vendor_id, **extra})


def _lease_free(now: dt.datetime):  # type: ignore[no-untyped-def]
    return or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now)


# `last_error` of a delivery taken over from a process that stopped: counted as an attempt there
# (`_taken_over_values`), so a packet that kills its process every time is given up by
# CONNECTOR_MAX_ATTEMPTS (`Outbox._lapsed_too_often`), not claimed again every CONNECTOR_LEASE_S for
# ever as "pending, 0 attempts, no error" (an operator's review).
LEASE_LAPSED = ("its process stopped before or during an attempt (the lease ran out); the next attempt looks "
                "for what it may have made before it sends")


def _taken_over_values() -> dict[str, Any]:
    """What a claim sets beside its lease: an unknown outcome (`_taken_over`), and where the row
    still names an owner whose lease ran out, one more attempt and why (`LEASE_LAPSED`)."""
    lapsed = Delivery.lease_owner.is_not(None)
    return {"outcome_unknown": _taken_over(), "attempts": Delivery.attempts + case((lapsed, 1), else_=0),
            "last_error": case((lapsed, literal(LEASE_LAPSED)), else_=Delivery.last_error)}


def _taken_over():  # type: ignore[no-untyped-def]
    """`outcome_unknown` for a claim: set when the row still names an owner whose lease expired.

    Every orderly end of an attempt clears `lease_owner`; one left behind means a process died (or
    hung) mid-attempt, perhaps after the vendor acted. Found by the kill -9 test: the next attempt
    sent a plain create and Salesforce got a second case. Now it looks the handoff up first.
    (In an UPDATE, SET expressions read the row's values from before the update.)
    """
    return or_(Delivery.outcome_unknown, Delivery.lease_owner.is_not(None))


# `sent_to`'s key for what an attempt whose outcome is unknown rendered against: where the ticket
# stood (`told`) and whether the handoff was caught up. The next attempt renders the same text: a later
# handoff of the conversation may have updated the ticket in between, and rendered against the link
# it left, a retry's note ("New since our last update") and [new] marks read otherwise — Salesforce's
# resume, finding its comments by their text, posted them again, reworded.
RENDERED_AS = "rendered_as"


def _all_arrived(before: Sequence[Any]) -> bool:
    """Whether everything before a batch of messages reached its target (`before`: state, next
    attempt, batch number — None for the handoff's own delivery): each delivery there, or a later
    one of them, which carried what a given-up one had not (`carried`). Counted missing for ever,
    one given-up delivery made every later batch post the whole brief and all earlier messages
    again — "Handed off again" in a Slack thread per batch, a review."""
    if not before:
        return False
    reached = [-1 if seq is None else seq for state, _, seq, _ in before if state in DONE]
    latest = max(reached, default=None)
    return all(state in DONE or (latest is not None and (-1 if seq is None else seq) < latest)
               for state, _, seq, _ in before)


def _reached(before: Sequence[Any]) -> str | None:
    """The ticket the latest of `before` (as `_all_arrived`'s) to arrive reached: where the brief, and
    every earlier batch's messages, are (one that carried everything took them there)."""
    done = [(-1 if seq is None else seq, ticket) for state, _, seq, ticket in before if state in DONE]
    return max(done, key=lambda arrived: arrived[0])[1] if done else None


def _merged_away(link: Link | None, caught_up: bool, reached: str | None) -> str | None:
    """`reached` (`_reached`), when a merge has moved the conversation's link to another ticket since
    (`LINK_MERGED_FROM`): the batch's short note there pointed to "the brief above", on the ticket merged
    away — the link moved by Zendesk's merge event before the update met the closed ticket (a review)."""
    if link is None or not caught_up or not reached or reached == link.vendor_id:
        return None
    return reached if link.extra.get(LINK_MERGED_FROM) else None


def _as_first_rendered(claimed: _Claimed, delivery: Delivery) -> tuple[Link | None, bool]:
    """The link and `caught_up` to render this attempt with: the claim's, unless an attempt whose
    outcome is unknown recorded what it rendered against (`RENDERED_AS`)."""
    link, caught_up = claimed.link, claimed.caught_up
    rendered = (delivery.sent_to or {}).get(RENDERED_AS) if delivery.outcome_unknown else None
    if link is None or not isinstance(rendered, Mapping) or rendered.get("ticket") != link.vendor_id:
        # Not the ticket it rendered for (closed since and replaced by a follow-up): that one's own
        # "told up to" — the old one's called messages its opening brief showed "new since" it.
        return link, caught_up
    extra = {key: value for key, value in link.extra.items() if key != "told"}
    if isinstance(rendered.get("told"), Mapping):
        extra["told"] = rendered["told"]
    return replace(link, extra=extra), bool(rendered.get("caught_up"))


def _rendered_as(err: DeliveryError, link: Link | None, caught_up: bool) -> DeliveryError:
    """`err`, an unknown outcome carrying what its attempt rendered against (`RENDERED_AS`)."""
    if isinstance(err, OutcomeUnknown) and link is not None:
        err.sent_to = {**(err.sent_to or {}), RENDERED_AS: {"ticket": link.vendor_id, "told": link.extra.get("told"),
                                                            "caught_up": caught_up}}
    return err


def _carried_over(connection: Connection | driver_cursor.Pooled, key: Mapping[str, str], ticket: dict[str, Any],
                  moved_from: str) -> dict[str, Any]:
    """`ticket` for the link moving from `moved_from` (merged into it): with whom and for which team
    the conversation's ticket was opened, and what it was told, as the link kept them. Routing's
    choice for the moving handoff, which the merge did not apply, was read as the team the ticket was
    opened for: the next handoff named that team to its bot, and its note a move that never was (a review)."""
    rows = driver_cursor.run(connection, _LINK_EXTRA, {**key, "vendor_id": moved_from}).rows
    kept = rows[0][0] if rows else None
    carried = {name: value for name, value in (kept or {}).items() if name in ("customer", "opened_with", "told")}
    # And that a merge brought it there: a batch whose handoff's brief is on the ticket merged away (`_merged_away`).
    return {**ticket, "extra": {**ticket["extra"], **carried, LINK_MERGED_FROM: moved_from}}


def _done(outcome: Outcome, now: dt.datetime) -> dict[str, Any]:
    """The values `_OUTCOME` writes for `outcome`."""
    return {"state": outcome.status, "vendor_id": outcome.vendor_id, "url": outcome.url,
            "receipt": dict(outcome.receipt), "vendor_reply": _jsonable(outcome.reply), "now": now}


def _url_of(adapter: Adapter, ticket: str) -> str | None:
    """`Adapter.ticket_url` of a ticket the vendor's event named; None when it cannot be told now
    (Slack's permalink is asked of a Slack whose every look just failed): the ticket is recorded
    all the same — the delivery's outcome is not this link's to decide."""
    try:
        return adapter.ticket_url(ticket)
    except DeliveryError as err:
        log.warning("the url of the ticket the vendor's event named could not be told",
                    extra={"vendor_id": ticket, "error_type": type(err).__name__, "vendor_status": err.status})
    except Exception:  # a bug: recorded without it, as before
        log.exception("the url of the ticket the vendor's event named could not be told")
    return None


def _new_ticket_assignment(handoff: Handoff) -> Mapping[str, Any]:
    """The assignment a new ticket in place of the conversation's closed one shows
    (`HandoffContext.new_ticket_assignment`): with the message as the bot was answered it — but not
    the words of the team the tickets stayed with (`kept`): the new ticket goes where routing sends
    the repeat, and reads of the handoff say routing's team, wait and message again (`answers.as_told`);
    with `kept` the brief said no message at all (a review of the mend), and routing's own words,
    answered without their wait, are still the answer's (a review of that mend)."""
    kept = handoff.assignment.get("kept")
    if not isinstance(kept, Mapping):
        return as_answered(handoff.assignment, handoff.customer_message, update=False)
    routed = {key: value for key, value in handoff.assignment.items() if key != "kept"}
    message = handoff.customer_message or {}
    answered = message.get(ANSWERED)
    # Routing's own words first: a template without `{{ team }}` words both teams' alike (a review).
    own = _words_of({key: value for key, value in message.items() if key != ANSWERED})
    if answered not in own and answered in _words_of(kept.get("customer_message")):
        return routed
    return as_answered(routed, message, update=False)


def _words_of(message: Any) -> set[str]:
    """Every text a composed customer message holds (its text, without its wait, with the hours as
    said later…), to tell whose words an answer said."""
    if isinstance(message, str):
        return {message}
    if isinstance(message, Mapping):
        return {words for value in message.values() for words in _words_of(value)}
    if isinstance(message, list):
        return {words for value in message for words in _words_of(value)}
    return set()


def _sent_to(handoff: Handoff, target: str) -> Mapping[str, Any]:
    """Where `handoff`'s delivery to `target` sent its unanswered request, if recorded."""
    return next((d.sent_to or {} for d in handoff.deliveries if d.target == target), {})


def _member(handoff: Handoff, delivery_id: int) -> Delivery:
    return next(d for d in handoff.deliveries if d.id == delivery_id)


def _jsonable(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    return {"reply": str(value)[:2000]}
