"""Tables: handoffs, one delivery per target (the outbox), conversation → ticket links, who took
each handoff (assignments, from vendor events), and the status callbacks owed to bots.

Every change goes through an Alembic migration in `connector/migrations/versions/`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def names_a_row(row_id: int) -> bool:
    """Whether an id given in a URL or on the command line can be a delivery's or callback's: past the
    database's integers it names none (a query with it raised OverflowError: a 500, a traceback)."""
    return 0 < row_id < 2**63


class UTCDateTime(TypeDecorator):
    """SQLite forgets time zones; store UTC and give every datetime back as aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        # PostgreSQL gives it in the session's zone (PGTZ, the server's `timezone`, often the host's):
        # in UTC, or the bot read +09:00 where SQLite said +00:00, and the dashboard labelled Tokyo's
        # time UTC (a review).
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON}


# A handoff still waiting for an agent: no vendor said its ticket was solved, and not a batch of
# messages (`follows_id`), which waits with its handoff. The partial index's condition.
WAITING = text("completed_at IS NULL AND follows_id IS NULL")


class Handoff(Base):
    __tablename__ = "handoffs"
    __table_args__ = (
        UniqueConstraint("bot_id", "idempotency_key", name="uq_handoffs_bot_idempotency"),
        UniqueConstraint("bot_id", "message_id", name="uq_handoffs_bot_message"),
        Index("ix_handoffs_conversation", "bot_id", "conversation_id"),
        Index("ix_handoffs_follows", "follows_id", "follow_up_seq", unique=True),
        Index("ix_handoffs_created", "created_at"),  # retention reads the oldest first
        # The handoffs still waiting for an agent, by conversation (`merges._waiting_elsewhere`): few
        # beside the solved ones, which a Salesforce message's question read every one of.
        Index("ix_handoffs_waiting", "bot_id", "conversation_id", postgresql_where=WAITING, sqlite_where=WAITING),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    # The signed request's webhook-id: the same message again is answered from here, never re-run.
    message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    packet: Mapped[dict[str, Any]]
    # What intake decided, stored so the answer can be rebuilt identically later.
    assignment: Mapped[dict[str, Any]]
    customer_message: Mapped[dict[str, Any]]
    estimated_wait_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Set on a follow-up: messages the customer sent while the handoff named here waited
    # (`follow_ups`). Its packet is that handoff's, with the messages added to the transcript.
    follows_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Its place among that handoff's follow-ups (1, 2, …): the order they reach each target in.
    follow_up_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # When a vendor said its ticket was solved (`assignments.complete`): a read stops promising a reply.
    completed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    deliveries: Mapped[list["Delivery"]] = relationship(
        back_populates="handoff", order_by="Delivery.position", lazy="selectin"
    )


# The delivery states in which the target holds a ticket, case or alert.
DONE = ("created", "updated")
# An operator's "we will not send this": a given-up delivery (dead or failed) put aside for good —
# its target disabled since, or the customer reached another way (`outbox.dismiss`). Not counted as
# given up (the metrics, /readyz), retention may forget its handoff, no replay takes it; a bot
# reads it as `failed` (`answers.bot_state`). A status callback's too, put aside alike or never sent
# for want of the bot's signing secret (`callbacks`): a bot reads it as `dead`.
DISMISSED = "dismissed"


class Delivery(Base):
    """One target's share of a handoff — the outbox row workers claim with a lease."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("handoff_id", "target", name="uq_deliveries_handoff_target"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        # Vendor events name the ticket: find the handoffs delivered to it.
        Index("ix_deliveries_vendor", "target", "vendor_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Of those, the ones a vendor turned away with a rate limit: not counted against
    # CONNECTOR_MAX_ATTEMPTS (`Outbox._record_error`).
    rate_limited: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    vendor_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # An attempt was sent and its outcome is unknown (timeout after the request left):
    # the next attempt must look the handoff up at the vendor before sending again.
    outcome_unknown: Mapped[bool] = mapped_column(default=False)
    # Where such an attempt went when a mapping decides it (`OutcomeUnknown.sent_to`: Slack's
    # channel), so the lookup searches there even after an admin changed it.
    sent_to: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Start of the current retry window (intake, or the last replay): bounds the age of retries.
    window_started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    vendor_reply: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    handoff: Mapped[Handoff] = relationship(back_populates="deliveries")

    # Not a column: set by `outbox.list_deliveries` — given up, and its messages carried to the same
    # target by a later batch since (nothing of it is missing there; a replay skips it).
    carried_since = False


class ConversationLink(Base):
    """The ticket a conversation already has at a target, so a second handoff updates it.

    `owner_delivery_id` is the delivery creating the ticket: while it has no `vendor_id`, other
    deliveries for the same conversation wait rather than open a second ticket.
    """

    __tablename__ = "conversation_links"
    __table_args__ = (
        UniqueConstraint("bot_id", "conversation_id", "target", name="uq_links_conversation_target"),
        # A vendor's event names a ticket: the conversations linked to it (a solve, a merge, a click's thread).
        Index("ix_links_ticket", "target", "vendor_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bot_id: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(40))
    owner_delivery_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    vendor_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @staticmethod
    def key_for(handoff: Handoff, target: str) -> dict[str, str]:
        """What names a conversation's ticket at one target (the unique key above)."""
        return ConversationLink.key(handoff.bot_id, handoff.conversation_id, target)

    @staticmethod
    def key(bot_id: str, conversation_id: str, target: str) -> dict[str, str]:
        return {"bot_id": bot_id, "conversation_id": conversation_id, "target": target}

    @staticmethod
    def naming(target: str, ticket_id: str) -> tuple[Any, Any]:
        """The links naming ticket `ticket_id` at `target` (a vendor's event names a ticket)."""
        return ConversationLink.target == target, ConversationLink.vendor_id == ticket_id


class TargetPause(Base):
    """A target told us to slow down (429): every worker holds its deliveries until `until`."""

    __tablename__ = "target_pauses"

    target: Mapped[str] = mapped_column(String(40), primary_key=True)
    until: Mapped[dt.datetime]
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Assignment(Base):
    """An agent took a handoff, as a vendor reported it (Zendesk assignee event, Slack claim).

    One per handoff: the first report is the customer's time to assignment — unless it is the agent
    routing itself put on the ticket (`routed`), whom the first other agent to take it replaces;
    later reassignments and a second target's report are not a second wait. `event_id` is the vendor's id for the
    event, unique per target, because vendors deliver events at least once.
    """

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("handoff_id", name="uq_assignments_handoff"),
        UniqueConstraint("target", "event_id", name="uq_assignments_target_event"),
        # The observed-wait query reads (team, not routed, recent assigned_at) → wait_seconds from the index alone.
        Index("ix_assignments_team_recent", "team", "routed", "assigned_at", "wait_seconds"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(40))
    vendor_ticket_id: Mapped[str] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(String(200))
    agent_id: Mapped[str] = mapped_column(String(200))
    agent_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    event_id: Mapped[str] = mapped_column(String(200))
    # When the bot handed off (the handoff's created_at): the customer has waited since then.
    handed_off_at: Mapped[dt.datetime]
    assigned_at: Mapped[dt.datetime]  # the vendor's time for the event
    wait_seconds: Mapped[int] = mapped_column(Integer)
    # The agent routing itself put on the ticket (a sticky previous agent, a rule's assignee), as the
    # vendor reported it: the handoff is theirs, but no one was waited for — never an observed wait.
    # A later report of another agent taking the ticket replaces it.
    routed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Callback(Base):
    """A status callback owed to a bot (contract §6): one per handoff and state, its body fixed when
    the state was reached (in the same transaction) — but `queued`'s and `delivered`'s wait and
    message, and the wait of an `assigned` naming routing's own agent, read again when it is sent
    (`callbacks.Sender._read_now`) — sent by
    `callbacks.Sender` with a lease like a delivery, and retried until the bot answers 2xx or it is
    given up (`dead`)."""

    __tablename__ = "callbacks"
    __table_args__ = (
        UniqueConstraint("handoff_id", "state", name="uq_callbacks_handoff_state"),
        Index("ix_callbacks_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id", ondelete="CASCADE"))
    bot_id: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))  # the handoff's: queued, delivered, assigned, failed, completed
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sent, dead, dismissed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Start of the current retry window (the state, or the last resend): bounds the age of retries.
    window_started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
