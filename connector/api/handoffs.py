"""The bot-facing API: `/v1/handoffs`."""

from __future__ import annotations

import math

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import answers, follow_ups
from ..auth import authenticate_bot
from ..errors import NotFound, ValidationFailed
from ..intake import Answer, accept, warned
from ..models import Assignment, Callback, Handoff
from ..services import current_services
from . import only_params, query_limit

bp = Blueprint("handoffs", __name__, url_prefix="/v1/handoffs")


def _json(body: dict, status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _location(path: str) -> str:
    """`links.self` (a path under the connector's base, as the contract shows it) as `Location`,
    which a client resolves against the request's address (RFC 9110): under a path prefix —
    CONNECTOR_PUBLIC_URL's, else the one the caller came through (SCRIPT_NAME) — the bare path sent
    a bot polling `/v1/handoffs/…` at the host's root, another service or a 404. At the address
    people use when it is set, as problem types are (`problems.problem_response`)."""
    public = current_services().settings.public_url.rstrip("/")
    return f"{public}{path}" if public else f"{request.script_root}{path}"


def _answered(answer: Answer, budget_ms: int) -> Response:
    """Every answer names where to read it again; one with a target still going also says when: a
    bot polling sooner than its own wait (the sync budget), or than a paused target's next try,
    would only find the same targets still going. A replay (200) too: a bot that retried after a
    timeout lost the first answer's polling hint with it."""
    response = _json(answer.body, answer.status)
    response.headers["Location"] = _location(answer.body["links"]["self"])
    going = answer.status == 202 or (answer.status == 200 and any(
        ticket.get("status") == "pending" for ticket in answer.body.get("tickets") or []))
    if going:
        response.headers["Retry-After"] = str(answer.poll_after_s or max(1, math.ceil(budget_ms / 1000)))
    return response


@bp.post("")
def create_handoff() -> Response:
    """Hand a conversation off to people.
    ---
    post:
      summary: Hand a conversation off to people
      description: >-
        Validates the packet, stores it, delivers it to every target within
        CONNECTOR_SYNC_BUDGET_MS and answers with what is known. A repeated
        Idempotency-Key (or, without one, the same packet from the same bot) returns
        the stored answer with 200.
      security: [{bearerAuth: []}, {botSignature: []}]
      parameters:
        - IdempotencyKey
      requestBody:
        required: true
        content:
          application/json:
            schema: Packet
      responses:
        200: {description: The same handoff was seen before; its stored answer, content: {application/json: {schema: HandoffResponse}},
              headers: {Location: {description: "Where to read this answer again", schema: {type: string}}, Retry-After: {description: "While a target is still going: seconds until reading it again may find more finished (as a 202's: the sync budget, at least 1; longer when every target still going waits longer: paused, backing off)", schema: {type: integer}}}}
        201: {description: "Every target finished: has the handoff, or gave up on it (`status` says which: `failed` when none has it; the customer message is then an apology)", content: {application/json: {schema: HandoffResponse}},
              headers: {Location: {description: "Where to read this answer again", schema: {type: string}}}}
        202: {description: Some targets are still being delivered, content: {application/json: {schema: HandoffResponse}},
              headers: {Location: {description: "Where to read this answer again", schema: {type: string}}, Retry-After: {description: "Seconds until reading it again may find more finished (the sync budget, at least 1; longer when every target still going waits longer: paused, backing off)", schema: {type: integer}}}}
        400: {$ref: "#/components/responses/Problem"}
        401: {$ref: "#/components/responses/Problem"}
        403: {$ref: "#/components/responses/Problem"}
        409: {$ref: "#/components/responses/Problem"}
        413: {$ref: "#/components/responses/Problem"}
        415: {$ref: "#/components/responses/Problem"}
        422: {$ref: "#/components/responses/Problem"}
        503: {$ref: "#/components/responses/Unavailable"}
      callbacks:
        handoffStatus:
          "{$request.body#/callback/url}":
            post:
              summary: A state the handoff reached, among the packet's `callback.events`
              description: >-
                Signed with each of the bot's CONNECTOR_BOT_SECRETS (Standard Webhooks headers
                webhook-id, webhook-timestamp, webhook-signature). Retried with backoff on timeouts,
                408, 425, 429, 500, 502, 503 and 504; any other non-2xx answer (501, 505…) ends it.
                Owed once per handoff and state (a retry after a lost answer may bring one twice:
                deduplicate on webhook-id), sent one at a time in the order their rows were written.
              requestBody:
                required: true
                content: {application/json: {schema: HandoffStatus}}
              responses:
                2XX: {description: Received}
    """
    services = current_services()
    caller = authenticate_bot(request, services.settings)
    answer = accept(services, caller, request.get_data(), request.content_type,
                    request.headers.get("Idempotency-Key"))
    return _answered(answer, services.settings.sync_budget_ms)


@bp.get("/<handoff_id>")
def get_handoff(handoff_id: str) -> Response:
    """The current state of one handoff.
    ---
    get:
      summary: The current state of a handoff, with what each target received
      security: [{bearerAuth: []}, {botSignature: []}]
      parameters:
        - {in: path, name: handoff_id, required: true, schema: {type: string}}
      responses:
        200: {description: The handoff, content: {application/json: {schema: HandoffDetail}}}
        401: {$ref: "#/components/responses/Problem"}
        404: {$ref: "#/components/responses/Problem"}
    """
    services = current_services()
    caller = authenticate_bot(request, services.settings)
    with services.db.reading() as session:
        handoff = _callers_handoff(session, handoff_id, caller.bot_id)
        # A read says what the answer said will not happen: a bot that lost the answer to a timeout
        # and read the handoff instead never learnt its `escalation.urgncy` was not acted on.
        return _json(warned(detail_of(session, handoff), handoff.packet, services), 200)


def detail_of(session: Session, handoff: Handoff, *, whole_errors: bool = False) -> dict:
    """`GET /v1/handoffs/{id}`'s body (the admin page shows the same, with `whole_errors`): the
    answer, each delivery, who took it, the callbacks and the messages sent while it waited."""
    assigned = session.scalars(select(Assignment).filter_by(handoff_id=handoff.id)).first()
    callbacks = session.scalars(select(Callback).filter_by(handoff_id=handoff.id).order_by(Callback.id)).all()
    return answers.render_detail(handoff, assigned, callbacks, follow_ups_of(session, handoff.id),
                                 whole_errors=whole_errors)


@bp.post("/<handoff_id>/messages")
def add_messages(handoff_id: str) -> Response:
    """What the customer says while the handoff waits.
    ---
    post:
      summary: Bring the agent what the customer said while waiting
      description: >-
        Stores the messages and adds them to the ticket, case and Slack thread of each of the
        handoff's targets, after the handoff and any earlier messages are there — only the new
        messages, under a line saying they came while the customer waited; where the handoff or
        earlier messages were given up, everything, these messages included, so nothing is lost
        (a new ticket if there is none). Delivered within CONNECTOR_SYNC_BUDGET_MS like
        a handoff, then retried in the background. No status callbacks are sent for messages; GET
        the handoff, or this route, to see where they are. A repeated Idempotency-Key (or, without
        one, the same messages for the same handoff) returns the stored answer with 200. Refused with
        422 (`errors.messages` says why), for a new handoff of the conversation instead: once the
        handoff was completed (its ticket solved or closed), every target reaching an agent was
        dismissed, it has 100 batches, or they would take it over a handoff's limits.
      security: [{bearerAuth: []}, {botSignature: []}]
      parameters:
        - {in: path, name: handoff_id, required: true, schema: {type: string}}
        - IdempotencyKey
      requestBody:
        required: true
        content:
          application/json:
            schema: Messages
      responses:
        200: {description: The same messages were seen before; their stored answer, content: {application/json: {schema: MessagesResponse}},
              headers: {Location: {description: "Where to read this answer again", schema: {type: string}}, Retry-After: {description: "While a target is still going: seconds until reading it again may find more finished (as a 202's: the sync budget, at least 1; longer when every target still going waits longer: paused, backing off)", schema: {type: integer}}}}
        201: {description: "Every target finished: has them, or gave up (`status` says which)", content: {application/json: {schema: MessagesResponse}},
              headers: {Location: {description: "Where to read this answer again", schema: {type: string}}}}
        202: {description: Some targets are still being given them, content: {application/json: {schema: MessagesResponse}},
              headers: {Location: {description: "Where to read this answer again", schema: {type: string}}, Retry-After: {description: "Seconds until reading it again may find more finished (the sync budget, at least 1; longer when every target still going waits longer: paused, backing off)", schema: {type: integer}}}}
        400: {$ref: "#/components/responses/Problem"}
        401: {$ref: "#/components/responses/Problem"}
        404: {$ref: "#/components/responses/Problem"}
        409: {$ref: "#/components/responses/Problem"}
        413: {$ref: "#/components/responses/Problem"}
        415: {$ref: "#/components/responses/Problem"}
        422: {$ref: "#/components/responses/Problem"}
        503: {$ref: "#/components/responses/Unavailable"}
    """
    services = current_services()
    caller = authenticate_bot(request, services.settings)
    with services.db.reading() as session:
        handoff = _callers_handoff(session, handoff_id, caller.bot_id)
        session.expunge_all()  # its rows are read after the session: they must be loaded now
    answer = follow_ups.accept(services, handoff, caller.message_id, request.get_data(), request.content_type,
                               request.headers.get("Idempotency-Key"))
    return _answered(answer, services.settings.sync_budget_ms)


@bp.get("/<handoff_id>/messages")
def list_messages(handoff_id: str) -> Response:
    """The messages sent while a handoff waited, oldest first.
    ---
    get:
      summary: The batches of messages sent while a handoff waited, and where each target has them
      security: [{bearerAuth: []}, {botSignature: []}]
      parameters:
        - {in: path, name: handoff_id, required: true, schema: {type: string}}
      responses:
        200: {description: The batches, content: {application/json: {schema: MessagesList}}}
        401: {$ref: "#/components/responses/Problem"}
        404: {$ref: "#/components/responses/Problem"}
        422: {$ref: "#/components/responses/Problem"}
    """
    services = current_services()
    caller = authenticate_bot(request, services.settings)
    # Every batch, always: a bot's `?limit=1` answered with all of them read as a limit kept (a review).
    only_params()
    with services.db.reading() as session:
        handoff = _callers_handoff(session, handoff_id, caller.bot_id)
        return _json({"items": [answers.render_follow_up(f) for f in follow_ups_of(session, handoff.id)]}, 200)


def follow_ups_of(session: Session, handoff_id: str) -> list[Handoff]:
    return list(session.scalars(select(Handoff).where(Handoff.follows_id == handoff_id)
                                .order_by(Handoff.created_at, Handoff.id)))


def _callers_handoff(session: Session, handoff_id: str, bot_id: str | None) -> Handoff:
    """The handoff, if the calling bot may see it (`bot_id` None: any); else 404, alike for a handoff
    that does not exist and one of another bot, so ids cannot be probed."""
    if "\x00" in handoff_id:  # no id holds NUL, and PostgreSQL refuses it in a query (a 500)
        raise NotFound("No handoff with this id for this bot.")
    handoff = session.get(Handoff, handoff_id)
    # A follow-up (messages while waiting) is a handoff row, but not a handoff a bot can address.
    if handoff is None or handoff.follows_id is not None or (bot_id is not None and handoff.bot_id != bot_id):
        raise NotFound(f"No handoff {handoff_id!r} for this bot.")
    return handoff


@bp.get("")
def list_handoffs() -> Response:
    """Handoffs of one conversation, newest first.
    ---
    get:
      summary: The handoffs of one conversation, newest first
      security: [{bearerAuth: []}, {botSignature: []}]
      parameters:
        - {in: query, name: conversation_id, required: true, schema: {type: string}}
        - {in: query, name: limit, required: false, schema: {type: integer, minimum: 1, maximum: 100, default: 20}}
      responses:
        200: {description: Handoffs, content: {application/json: {schema: HandoffList}}}
        401: {$ref: "#/components/responses/Problem"}
        422: {$ref: "#/components/responses/Problem"}
    """
    services = current_services()
    caller = authenticate_bot(request, services.settings)
    only_params("conversation_id", "limit")
    conversation_id = request.args.get("conversation_id", "")
    if not conversation_id:
        raise ValidationFailed("Say which conversation: ?conversation_id=…", errors={"conversation_id": ["required"]})
    if "\x00" in conversation_id:  # intake refuses NUL, and PostgreSQL cannot compare text with it (a 500)
        raise ValidationFailed("conversation_id may not hold U+0000.", errors={"conversation_id": ["contains U+0000"]})
    limit = query_limit(default=20, most=100)
    query = select(Handoff).filter_by(conversation_id=conversation_id, follows_id=None)
    if caller.bot_id is not None:
        query = query.filter_by(bot_id=caller.bot_id)
    with services.db.reading() as session:
        rows = session.scalars(query.order_by(Handoff.created_at.desc(), Handoff.id.desc()).limit(limit)).all()
        later, agent_has = answers.reached_later(session, rows), answers.taken(session, rows)
        return _json({"items": [warned(answers.render(row, reached_later=later.get(row.id, []),
                                                      holder=agent_has.get(row.id)), row.packet, services)
                                for row in rows]}, 200)
