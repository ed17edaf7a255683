"""`POST /v1/handoffs`: parse → validate → decide → commit handoff and deliveries → deliver within
the budget → answer. Nothing reaches a vendor before the handoff is committed (transactional outbox).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from concurrent.futures import wait
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from ulid import ULID

from . import answers
from .auth import Caller, check_bot
from .decision import decide
from .errors import Conflict, MalformedRequest, ServiceUnavailable, UnsupportedMediaType, ValidationFailed
from .idempotency import key_for, packet_hash
from .jsonlog import log_context
from .models import Delivery, Handoff, utcnow
from .schemas import Limits, PacketSchema, flatten_errors
from .services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def parse_json(raw: bytes, content_type: str | None, max_depth: int) -> Any:
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise UnsupportedMediaType(f"Send the packet as application/json (got {mimetype or 'no content type'}).")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise MalformedRequest("The body is not valid UTF-8.") from None
    except RecursionError:
        raise MalformedRequest(f"The JSON nests deeper than {max_depth} levels (CONNECTOR_MAX_JSON_DEPTH).") from None
    except ValueError as err:
        raise MalformedRequest(f"The body is not valid JSON: {err}") from None
    depth, unstorable = _scan(data)
    if depth > max_depth:
        raise ValidationFailed(f"The JSON nests deeper than {max_depth} levels (CONNECTOR_MAX_JSON_DEPTH).",
                               errors={"(body)": [f"nesting deeper than {max_depth}"]})
    if unstorable:
        raise ValidationFailed(
            "Text may not hold U+0000 or unpaired surrogates (\\ud800-\\udfff): they cannot be stored or sent.",
            errors={path: ["contains U+0000 or an unpaired surrogate"] for path in unstorable[:_MAX_REPORTED]},
        )
    if not isinstance(data, dict):
        raise ValidationFailed("The packet must be a JSON object.", errors={"(body)": ["must be an object"]})
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


# `"\u0000"` and `"\ud800"` are valid JSON, yet PostgreSQL text refuses NUL and a lone surrogate
# cannot be encoded as UTF-8 (for the answer, a vendor or the log): refused here, named by path.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_MAX_REPORTED = 20


def _scan(value: Any) -> tuple[int, list[str]]:
    """The document's nesting depth, and the paths of strings (keys too) that cannot be stored."""
    deepest, unstorable = 0, []
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, level, path = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{_shown(key)}" if path else _shown(key)
                if _UNSTORABLE.search(key):
                    unstorable.append(child_path)
                stack.append((child, level + 1, child_path))
        elif isinstance(item, list):
            stack.extend((child, level + 1, f"{path}.{index}" if path else str(index))
                         for index, child in enumerate(item))
        elif isinstance(item, str) and _UNSTORABLE.search(item):
            unstorable.append(path or "(body)")
    return deepest, sorted(unstorable)


def _shown(key: str) -> str:
    """A key as it can appear in an answer: a lone surrogate written as `\\ud800`."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def validate_packet(data: dict[str, Any], services: Services) -> dict[str, Any]:
    settings = services.settings
    schema = PacketSchema(Limits(settings.max_transcript_entries, settings.max_entry_chars))
    try:
        packet = schema.load(data)
    except ValidationError as err:
        errors = flatten_errors(err.messages)
        detail = f"The packet is not valid: {len(errors)} field(s) need attention."
        raise ValidationFailed(detail, errors=errors) from None
    for index, name in enumerate(packet.get("targets") or []):
        if name not in services.adapters:
            raise ValidationFailed(
                f"Target {name!r} is not enabled on this connector.",
                errors={f"targets.{index}": [f"not enabled; enabled: {', '.join(services.adapters)}"]},
            )
    return packet


def accept(services: Services, caller: Caller, raw: bytes, content_type: str | None,
           idempotency_header: str | None) -> Answer:
    data = parse_json(raw, content_type, services.settings.max_json_depth)
    packet = validate_packet(data, services)
    bot_id = packet["bot"]["id"]
    check_bot(caller, bot_id)
    digest = packet_hash(packet)
    key = key_for(idempotency_header, digest)

    try:
        existing = _find(services, bot_id, key, caller.message_id)
        if existing is not None:
            return _replay(existing, digest)
        handoff = _commit(services, packet, bot_id, key, digest, caller.message_id)
    except IntegrityError:  # the same key or message arrived twice at once: the other request won
        existing = _find(services, bot_id, key, caller.message_id)
        assert existing is not None
        return _replay(existing, digest)
    except OperationalError as err:
        log.error("database unavailable at intake", extra={"error": type(err).__name__})
        raise ServiceUnavailable("The connector cannot store handoffs right now; nothing was recorded. Retry shortly.",
                                 headers={"Retry-After": "5"}) from None

    with log_context(handoff_id=handoff.id):
        log.info("handoff accepted", extra={"targets": [d.target for d in handoff.deliveries],
                                            "conversation_id": handoff.conversation_id})
        futures = [services.submit(d.id, d.lease_owner) for d in handoff.deliveries]
        wait(futures, timeout=services.settings.sync_budget_ms / 1000)
        try:
            with services.db.reading() as session:
                stored = session.get(Handoff, handoff.id)
                assert stored is not None
                body = answers.render(stored)
                status = 201 if answers.finished(stored) else 202
        except OperationalError as err:
            # The handoff is committed and will be delivered; only reading it back failed. Say what
            # is certain — accepted, pending — rather than a 500 the bot would retry as a failure.
            log.warning("could not read the handoff back; answering from what was stored",
                        extra={"error": type(err).__name__})
            body, status = answers.render(handoff), 202
        log.info("handoff answered", extra={"status": body["status"], "http_status": status})
    return Answer(status, body)


def _find(services: Services, bot_id: str, key: str, message_id: str | None) -> Handoff | None:
    """The handoff this request repeats: same signed message id, or same idempotency key."""
    same = Handoff.idempotency_key == key
    if message_id is not None:
        same = or_(same, Handoff.message_id == message_id)
    with services.db.reading() as session:
        return session.scalars(select(Handoff).where(Handoff.bot_id == bot_id, same)).first()


def _replay(existing: Handoff, digest: str) -> Answer:
    if existing.request_hash != digest:
        raise Conflict("This Idempotency-Key was already used with a different packet.",
                       errors={"Idempotency-Key": ["reused with another body"]})
    log.info("idempotent replay", extra={"handoff_id": existing.id})
    return Answer(200, answers.render(existing))


def _commit(services: Services, packet: dict[str, Any], bot_id: str, key: str, digest: str,
            message_id: str | None) -> Handoff:
    decision = decide(packet, services.mappings, services.adapters, observed_wait=services.observed_wait)
    handoff = Handoff(
        id=f"hnd_{ULID()}",
        bot_id=bot_id,
        conversation_id=packet["conversation"]["id"],
        idempotency_key=key,
        request_hash=digest,
        message_id=message_id,
        packet=packet,
        assignment=decision.assignment,
        customer_message=decision.customer_message,
        estimated_wait_seconds=decision.wait_seconds,
    )
    # Claimed by this request in the same transaction: the background loop must not take a fresh
    # delivery from under the request thread (the bench saw quick 202s for work that took 80 ms).
    # If this process dies, the lease expires and another takes over.
    token = services.outbox.new_token()
    lease_until = utcnow() + dt.timedelta(seconds=services.settings.lease_s)
    handoff.deliveries = [Delivery(target=name, position=index, lease_owner=token, lease_expires_at=lease_until)
                          for index, name in enumerate(decision.targets)]
    with services.db.session() as session:
        session.add(handoff)
    return handoff
