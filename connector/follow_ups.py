"""`POST /v1/handoffs/{id}/messages`: what the customer says while a handoff waits for an agent.

A batch of messages is stored as a *follow-up*: a handoff row naming the handoff it follows
(`follows_id`) and its place among that handoff's follow-ups (`follow_up_seq`), with its own
messages (the packet it is delivered with — the handoff's, every batch's messages in its
transcript — is put together for each attempt: `follow_up_packets`), the handoff's routing, and a
delivery for each of the handoff's targets. The outbox delivers it as it delivers a second handoff
of the conversation — an update of the ticket, case and Slack thread — with the same leases,
retries, 429 pauses, look-ups after an unknown outcome, dead letters and replay. What differs
(`Outbox._follow_up_may_go`):

- at each target it waits (held, not an attempt) until the handoff and every earlier follow-up
  have finished there, so an agent reads them in order;
- when they all reached the target, the update carries only its own messages, under a line saying
  what they are (`brief.FollowUpBrief`); when any was given up, it carries everything — the brief
  and every batch's messages, on a new ticket if there is none — so nothing the customer said is
  lost on the way.

Follow-ups send no status callbacks (the handoff's own say where it stands), are never matched to
vendor events (agents take the handoff, not its messages), and are not listed as handoffs.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from functools import lru_cache
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from ulid import ULID

from adapters import registry

from . import answers, follow_up_packets, json_codec
from .db import reason
from .errors import NotFound, ServiceUnavailable, ValidationFailed
from .handoff_store import HandoffGone
from .idempotency import earlier_hash, key_for, packet_hash
from .intake import (
    Answer,
    deliver_and_answer,
    find_repeat,
    out_of_order,
    replay,
    store,
    unserved_warnings,
    with_warnings,
)
from .json_body import parse_json
from .jsonlog import log_context
from .loop_failures import unreachable
from .models import DISMISSED, Handoff, utcnow
from .schemas import Limits, MessagesSchema, flatten_errors
from .schemas.near_misses import near_misses
from .services import Services

log = logging.getLogger(__name__)
# Each batch may have to carry its handoff's packet and every batch's messages (to open a ticket
# with everything), and that whole is bounded as a handoff is (`_within_the_transcript_limit`,
# `_within_the_body_limit`); a bot posting every line as a batch would still grow one handoff's
# rows, and every read of it, without end.
MAX_BATCHES = 100
# Batches of one handoff posted at the same moment: each takes the next place in turn, the ones that
# lost a place waiting a moment (up to `PLACE_WAIT_S` times the try, at random) before reading the
# places again. Five tries at once answered 503 to four of ten batches posted together (a bot sending
# each line a customer pasted as it came; an idempotency review).
PLACE_TRIES = 12
PLACE_WAIT_S = 0.01


@lru_cache(maxsize=8)
def _schema(limits: Limits) -> MessagesSchema:
    return MessagesSchema(limits)


def validate_messages(data: dict[str, Any], services: Services) -> list[dict[str, Any]]:
    settings = services.settings
    schema = _schema(Limits(settings.max_transcript_entries, settings.max_entry_chars))
    try:
        loaded = schema.load(data)
    except ValidationError as err:
        errors = flatten_errors(err.messages, schema=schema)
        raise ValidationFailed(f"The messages are not valid: {len(errors)} field(s) need attention.",
                               errors=errors) from None
    return loaded["messages"]


def accept(services: Services, handoff: Handoff, message_id: str | None, raw: bytes, content_type: str | None,
           idempotency_header: str | None) -> Answer:
    """Store the batch for `handoff` (the caller's, found by the route) and deliver it within the
    sync budget, as intake does; a repeat (same Idempotency-Key, or the same messages again
    without one, or the same signed message) is answered from what was stored."""
    data = parse_json(raw, content_type, services.settings.max_json_depth, what="messages")
    messages = validate_messages(data, services)
    digest = packet_hash({"messages": messages})
    # Keys are the bot's, one namespace for handoffs and messages: scoped here to the handoff (and
    # hashed, so the stored key keeps to its 200 characters), the same key may serve each handoff.
    scoped = hashlib.sha256(key_for(idempotency_header, digest).encode("utf-8")).hexdigest()
    key = f"{handoff.id}:{scoped}"
    # Not to a target an operator dismissed the handoff's delivery to (`outbox.dismiss`): each batch
    # failed there at once when it was disabled, or carried the whole handoff to where it was not to go.
    targets = [delivery.target for delivery in handoff.deliveries if delivery.state != DISMISSED]
    # Nor to the built-in preview alone where the handoff also went to a vendor (dismissed since):
    # its answer said `delivered` beside the handoff's `failed`, and no agent would ever see them.
    among = [delivery.target for delivery in handoff.deliveries]
    reaches = any(registry.reaches_agents(target, among) for target in targets)
    # …and not to preview alone while a vendor is enabled (below). A batch stored before either
    # refusal applied is answered as stored, as any repeat is (a retry was told 422 beside its 201).
    # …nor to a handoff whose ticket was solved or closed (`completed_at`, from the vendor's event): a
    # closed Zendesk ticket's batch opened a new one that nobody held, while a read of the handoff
    # still said `completed`, named the old ticket's agent beside the new ticket's link, and the new
    # one's own events were dropped as the handoff's, recorded already (a bot developer's review).
    # A new handoff of the conversation is the way back: it reopens or follows up the ticket, and
    # its answer, reads and callbacks say where it stands.
    completed = handoff.completed_at is not None
    if completed or not (reaches and any(registry.reaches_agents(target, [*among, *services.adapters])
                                         for target in targets)):
        if (repeat := find_repeat(services, handoff.bot_id, key, message_id)) is not None:
            return _replayed(services, repeat, digest, key, handoff, _earlier(services, handoff), messages)
    if completed:
        raise ValidationFailed(
            f"This handoff was completed at {handoff.completed_at.isoformat()}: its ticket was solved or closed, "
            "and nobody is waiting to read these messages there. Send a new handoff of the conversation with the "
            "whole transcript instead.", errors={"messages": ["the handoff was completed: its ticket was solved or "
                                                              "closed"]})
    if not reaches:
        raise ValidationFailed(
            "Every target of this handoff that reaches an agent was dismissed by an operator: nothing would "
            "deliver these messages. Send a new handoff of the conversation with the whole transcript instead.",
            errors={"messages": ["every target of the handoff was dismissed"]})
    # Nor to preview alone while a vendor is enabled (a rule sent a handoff there before
    # `decision.choose_targets` passed such a rule over): it stands in for the vendors only where none is.
    if not any(registry.reaches_agents(target, [*among, *services.adapters]) for target in targets):
        vendors = ", ".join(name for name in services.adapters if name != registry.BUILT_IN)
        raise ValidationFailed(
            f"This handoff went only to the built-in preview, which reaches no agent while {vendors} is enabled: "
            "nobody would see these messages. Send a new handoff of the conversation with the whole transcript "
            "instead.", errors={"messages": [f"the handoff's only target, preview, reaches no agent beside {vendors}"]})
    try:
        for tried in range(PLACE_TRIES):
            earlier = _earlier(services, handoff)
            if len(earlier) >= MAX_BATCHES:
                repeat = find_repeat(services, handoff.bot_id, key, message_id)
                if repeat is not None:
                    return _replayed(services, repeat, digest, key, handoff, earlier, messages)
                raise ValidationFailed(
                    f"A handoff takes at most {MAX_BATCHES} batches of messages, and this one has them. Send a new "
                    "handoff of the conversation with the whole transcript instead.",
                    errors={"messages": [f"at most {MAX_BATCHES} batches per handoff"]})
            # Checked whole (a batch may have to carry it all), stored as its own messages alone.
            packet = follow_up_packets.whole(handoff, earlier, messages)
            try:
                _within_the_transcript_limit(packet, len(messages), services.settings.max_transcript_entries)
                _within_the_body_limit(packet, len(messages), services.settings.max_body_bytes)
            except ValidationFailed:
                # A retry of a batch stored already counts its messages twice (`earlier` holds
                # it): answered as stored, as any repeat is, not refused.
                repeat = find_repeat(services, handoff.bot_id, key, message_id)
                if repeat is not None:
                    return _replayed(services, repeat, digest, key, handoff, earlier, messages)
                raise
            now = utcnow()
            row = dict(
                id=f"msg_{ULID()}", bot_id=handoff.bot_id, conversation_id=handoff.conversation_id,
                idempotency_key=key, request_hash=digest, message_id=message_id,
                packet=follow_up_packets.stored(handoff, messages), assignment=handoff.assignment,
                customer_message=handoff.customer_message, estimated_wait_seconds=None, follows_id=handoff.id,
                follow_up_seq=(earlier[-1].follow_up_seq if earlier else 0) + 1, created_at=now, updated_at=now,
            )
            # Unclaimed, so none takes the conversation's link: each attempt first checks that the
            # handoff and the earlier messages went before it (`Outbox._follow_up_may_go`).
            try:
                stored = store(services, row, targets, claim=False)
            except HandoffGone:
                log.warning("messages came for a handoff forgotten meanwhile; nothing stored",
                            extra={"handoff_id": handoff.id})
                raise NotFound(f"Handoff {handoff.id!r} was forgotten (CONNECTOR_RETENTION_DAYS) while these messages "
                               "arrived; nothing was recorded. Send a new handoff of the conversation with its "
                               "whole transcript.") from None
            if stored is not None:
                break
            repeat = find_repeat(services, handoff.bot_id, key, message_id)
            if repeat is not None:
                return _replayed(services, repeat, digest, key, handoff, earlier, messages)
            # Not a repeat: a batch posted at the same moment took the next place. Read them again,
            # so this one follows it and carries its messages too — after the others had their turn.
            time.sleep(random.uniform(0, PLACE_WAIT_S * (tried + 1)))  # noqa: S311 (spreading retries, no secret)
        else:
            raise ServiceUnavailable("Other messages for this handoff are being stored at this moment; nothing "
                                     "was recorded. Retry shortly.", headers={"Retry-After": "1"})
    except DBAPIError as err:
        if not unreachable(err):  # a query refused: a bug (a 500 with its traceback), not an outage
            raise
        log.error("database unavailable for messages", extra={"error": reason(err)})
        raise ServiceUnavailable("The connector cannot store messages right now; nothing was recorded. "
                                 "Retry shortly.", headers={"Retry-After": "5"}) from None
    with log_context(handoff_id=handoff.id, follow_up_id=row["id"]):
        log.info("messages accepted", extra={"messages": len(messages), "targets": targets})
        answer = deliver_and_answer(services, stored, answers.render_follow_up, claimed=False)
        # What the ticket has before this batch: the packet built above, up to its own messages.
        held = packet["transcript"][:packet["follow_up"]["first"]]
        return with_warnings(answer, warnings_for(messages, held) + unserved_warnings(answer.body, services))


def _replayed(services: Services, repeat: Handoff, digest: str, key: str, handoff: Handoff,
              earlier: list[Handoff], messages: list[dict[str, Any]]) -> Answer:
    """The stored answer to a repeated batch, warning as its first answer did: of what the ticket
    had before it, not of the batch itself or those posted after it."""
    answer = replay(repeat, digest, key, answers.render_follow_up, services.settings.sync_budget_ms / 1000,
                    earlier_hash({"messages": messages}))
    return with_warnings(answer, warnings_for(messages, _held(handoff, earlier, repeat.follow_up_seq))
                         + unserved_warnings(answer.body, services))


def warnings_for(messages: list[dict[str, Any]], held: list[dict[str, Any]]) -> list[str]:
    """What the answer warns of, as a handoff's does for its transcript (`intake.warnings_for`): keys
    that look misspelt (`messages.*.atachments`), and messages not oldest first or older than what the
    ticket already has (`held`) — the agent's note says they came while the customer waited."""
    return near_misses({"messages": messages}, MessagesSchema) + out_of_order(messages, "messages", held)


def _held(handoff: Handoff, earlier: list[Handoff], seq: int | None) -> list[dict[str, Any]]:
    """What the ticket has before the batch at place `seq`: the handoff's transcript and the messages
    of the batches before it."""
    before = [batch for batch in earlier if seq is None or (batch.follow_up_seq or 0) < seq]
    return follow_up_packets.whole(handoff, before, [])["transcript"]


def _within_the_transcript_limit(packet: dict[str, Any], sent: int, most: int) -> None:
    """The handoff's transcript with every batch's messages is a transcript too, and has the same
    limit: a batch may have to carry it all, and a vendor take it in one payload."""
    total = len(packet["transcript"])
    if total > most:
        raise ValidationFailed(
            f"With these {sent} message(s) the handoff's transcript would hold {total} entries; at most {most} "
            "(CONNECTOR_MAX_TRANSCRIPT_ENTRIES). Send a new handoff of the conversation instead.",
            errors={"messages": [f"the transcript would hold {total} entries; at most {most}"]})


def _within_the_body_limit(packet: dict[str, Any], sent: int, most: int) -> None:
    """The packet this batch may have to be delivered with (the handoff's, every batch's messages)
    is one a bot could have sent as a new handoff, and has the same size limit."""
    size = len(json_codec.dumps_bytes(packet))
    if size > most:
        raise ValidationFailed(
            f"With these {sent} message(s) the handoff and its messages would take {size} bytes; at most {most} "
            "(CONNECTOR_MAX_BODY_BYTES), as a handoff sent whole. Send a new handoff of the conversation instead.",
            errors={"messages": [f"the handoff and its messages would take {size} bytes; at most {most}"]})


def _earlier(services: Services, handoff: Handoff) -> list[Handoff]:
    """The handoff's follow-ups so far, in their order."""
    with services.db.reading() as session:
        found = list(session.scalars(select(Handoff).where(Handoff.follows_id == handoff.id)
                                     .order_by(Handoff.follow_up_seq)))
        session.expunge_all()
        return found
