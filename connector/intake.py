"""`POST /v1/handoffs`: parse → validate → decide → commit handoff and deliveries → deliver within
the budget → answer. Nothing reaches a vendor before the handoff is committed (transactional outbox).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import wait
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from ulid import ULID

from adapters import registry
from adapters.errors import RETRY_AFTER_MAX_S

from . import answers, assignments, callback_http, callbacks, customer_message, routing
from .auth import Caller, check_bot
from .brief import ANSWERED
from .db import reason
from .decision import decide
from .errors import Conflict, ServiceUnavailable, ValidationFailed
from .handoff_store import Stored, new_handoff
from .idempotency import earlier_hash, key_for, packet_hash
from .json_body import parse_json
from .jsonlog import log_context
from .loop_failures import unreachable
from .models import Delivery, Handoff, utcnow
from .outbox import Attempted
from .schemas import Limits, PacketSchema, flatten_errors, plain_load
from .schemas.near_misses import near_misses
from .services import Services
from .text_rules import rfc3339_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    poll_after_s: int | None = None  # a 202's Retry-After, when longer than the sync budget (`_poll_after`)


@lru_cache(maxsize=8)
def _packet_schema(limits: Limits) -> PacketSchema:
    """One schema per set of limits: building one builds its nested schemas too (a fifth of
    intake's CPU in the benchmark's profile). Loading keeps no state on the schema, so threads share it."""
    return PacketSchema(limits)


def validate_packet(data: dict[str, Any], services: Services) -> dict[str, Any]:
    packet = _loaded(data, services)
    _refuse(_unservable(packet, services))
    return packet


def _loaded(data: dict[str, Any], services: Services) -> dict[str, Any]:
    """The packet as the contract's schema reads it; 422 naming every field it refuses."""
    settings = services.settings
    try:
        schema = _packet_schema(Limits(settings.max_transcript_entries, settings.max_entry_chars))
        return plain_load.load(schema, data)
    except ValidationError as err:
        errors = flatten_errors(err.messages, schema=schema)
        # What the settings cannot serve is said beside what the schema refused, from the parts it
        # took: a bot fixed `transcript.0.at`, then met `callback.url` and `targets.0` (a review).
        for field, (_, said) in _unservable_beside(data, errors, services).items():
            errors.setdefault(field, [said])
        detail = f"The packet is not valid: {len(errors)} field(s) need attention."
        raise ValidationFailed(detail, errors=errors) from None


def _unservable_beside(data: Mapping[str, Any], errors: Mapping[str, Any],
                       services: Services) -> dict[str, tuple[str, str]]:
    """`_unservable` of the parts the schema refused nothing of, as the bot sent them. With `targets`
    refused (a name twice, say), `vendor_extra` is judged against the enabled names it lists: against
    every enabled target it was refused for one the bot never named (a review)."""
    def sound(key: str) -> bool:
        return key in data and not any(field == key or field.startswith(f"{key}.") for field in errors)
    parts = {key: data[key] for key in ("callback", "targets", "vendor_extra") if sound(key)}
    if "targets" not in data or "targets" in parts:
        return _unservable(parts, services)
    extra = parts.pop("vendor_extra", None)
    named = data["targets"] if isinstance(data["targets"], list) else []
    going = [name for name in dict.fromkeys(n for n in named if isinstance(n, str)) if name in services.adapters]
    return _unservable(parts, services) | _vendor_extra_problems({"vendor_extra": extra}, going)


def _unservable(packet: Mapping[str, Any], services: Services) -> dict[str, tuple[str, str]]:
    """What this connector's settings cannot serve in a valid packet — a callback URL it may not
    call, targets it has not enabled, a `vendor_extra` its adapters cannot work with — by field:
    (the detail, the reason). All of them at once:
    a bot fixed one and met the next."""
    problems: dict[str, tuple[str, str]] = {}
    callback = packet.get("callback")
    problem = callback_http.url_problem(callback["url"], services.settings.callback_allow_private) if callback else None
    if problem is not None:
        problems["callback.url"] = (f"The callback URL cannot be used: it {problem}.", problem)
    named = packet.get("targets") or []
    for index, name in enumerate(named):
        if name not in services.adapters:
            problems[f"targets.{index}"] = (f"Target {name!r} is not enabled on this connector.",
                                            f"not enabled; enabled: {', '.join(services.adapters)}")
    if vendors := registry.unreached_beside_preview(named, services.adapters):
        # Beside a vendor the built-in preview reaches no agent: the bot was told `delivered` and the
        # customer "someone will reply here", and nobody ever had it. A dry run is POST /v1/preview.
        problems["targets"] = ("Only the built-in preview is named, and it reaches no agent while "
                               f"{', '.join(vendors)} is enabled: name a vendor, or leave targets out.",
                               f"preview alone reaches no agent beside {', '.join(vendors)}: name a vendor")
    # Against the targets the packet names, else every enabled one — not routing's choice, which
    # may differ between a request and its retry (a sticky rule's lookup timing out): a retry
    # arriving while the first was storing was told 422 beside its 201, and the dry run, which
    # judges here too, approved what the endpoint refused.
    going = [name for name in packet.get("targets") or services.adapters if name in services.adapters]
    return problems | _vendor_extra_problems(packet, going)


def _vendor_extra_problems(packet: Mapping[str, Any], targets: Iterable[str]) -> dict[str, tuple[str, str]]:
    """What of the bot's `vendor_extra` the `targets` could not work with, by field, as `_unservable`
    says it (a value for a vendor this connector serves, whichever a rule picks). A value an adapter
    could post but not find again after a timeout (a Slack channel by name) was refused only at
    delivery: the handoff failed for good after the bot had been told 202. The built-in preview
    renders every vendor's payload: a bot trying its vendor_extra there is refused as the vendor
    would refuse it, not told that nothing was lost."""
    extra = packet.get("vendor_extra") or {}
    if not extra:
        return {}
    vendors = {vendor for name in targets
               for vendor in (registry.vendor_names() if name == registry.BUILT_IN else [name])}
    problems: dict[str, tuple[str, str]] = {}
    for name in sorted(vendors):
        if isinstance(extra.get(name), Mapping):
            for field, reason in registry.adapter_class(name).vendor_extra_problems(extra[name]).items():
                problems[field] = (f"{field}: {reason}.", reason)
    return problems


def _refuse(problems: Mapping[str, tuple[str, str]]) -> None:
    if not problems:
        return
    if len(problems) == 1:
        [(detail, _)] = problems.values()
    else:
        detail = f"This connector cannot serve the packet: {len(problems)} field(s) need attention."
    raise ValidationFailed(detail, errors={field: [reason] for field, (_, reason) in problems.items()})


def accept(services: Services, caller: Caller, raw: bytes, content_type: str | None,
           idempotency_header: str | None) -> Answer:
    # The sync budget counts from here: a sticky rule's vendor lookup, made before the handoff is
    # stored, comes out of it rather than on top of it.
    deadline = time.monotonic() + services.settings.sync_budget_ms / 1000
    data = parse_json(raw, content_type, services.settings.max_json_depth)
    packet = _loaded(data, services)
    bot_id = packet["bot"]["id"]
    check_bot(caller, bot_id)
    digest = packet_hash(packet)
    key = key_for(idempotency_header, digest)
    unservable = _unservable(packet, services)
    if unservable:
        # A retry of a handoff stored before a setting changed (its target disabled since, private
        # callbacks no longer allowed) still gets its stored answer: it was refused, as a new one.
        with _database_away("read its handoffs"):
            existing = find_repeat(services, bot_id, key, caller.message_id)
        if existing is None:
            _refuse(unservable)
        return _replayed(services, existing, digest, key, packet)

    with _database_away("store handoffs"):
        # Insert first: the unique keys (bot, Idempotency-Key) and (bot, signed message id) say
        # whether this repeats a handoff. A lookup before every insert cost a read transaction per
        # handoff for the rare retry; a retry pays the decision again instead (a vendor lookup
        # when its rule is sticky) and is answered from the stored handoff.
        stored = _commit(services, packet, bot_id, key, digest, caller.message_id, deadline)
    if stored is None:
        existing = find_repeat(services, bot_id, key, caller.message_id)
        if existing is None:  # skipped as a repeat, yet nothing matches: a state this code does not expect
            raise RuntimeError("a handoff was skipped as a repeat but no stored handoff matches it")
        return _replayed(services, existing, digest, key, packet)
    if callbacks.url_for(packet, "queued"):
        services.wake_callbacks()  # its `queued` row is committed: send it now, not at the next poll
    with log_context(handoff_id=stored.handoff.id):
        # No conversation id: on WhatsApp or SMS it is the customer's phone number (kept out of the
        # access log for the same reason); `GET /v1/handoffs?conversation_id=` gives the handoff ids.
        log.info("handoff accepted", extra={"targets": [d.target for d in stored.handoff.deliveries]})
        answer = deliver_and_answer(services, stored, answers.render, deadline=deadline)
        _keep_answered(services, stored.handoff, answer.body)
        return _warned(answer, packet, services)


def _keep_answered(services: Services, handoff: Handoff, body: Mapping[str, Any]) -> None:
    """The words the bot was answered for the customer, kept with the message where they are not the
    composed ones (no wait while the targets fail or wait out a pause; an agent already on the
    ticket): the briefs of later attempts say what the customer was told (`brief.as_answered`).
    Written only then — one statement more on the rare answer, none on the usual one."""
    said = (body.get("customer_message") or {}).get("text")
    message = handoff.customer_message or {}
    # Not the apology of a handoff every target refused: an operator's replay then makes the ticket,
    # and the bot is told the message again (its `delivered` callback) — the brief quoted "nobody has
    # it" (a review of the mend).
    if not isinstance(said, str) or said == message.get("text") or message.get(ANSWERED) \
            or body.get("status") == "failed":
        return
    try:
        with services.db.writing() as connection:
            connection.execute(update(Handoff).where(Handoff.id == handoff.id)
                               .values(customer_message={**message, ANSWERED: said}))
    except DBAPIError as err:  # the answer stands; a later attempt's brief then quotes the composed words
        log.warning("could not keep the words the customer was told", extra={"error": reason(err)})


@contextlib.contextmanager
def _database_away(what: str) -> Iterator[None]:
    """The database unreachable: a 503 the bot retries with the same key, nothing recorded. A query
    it refused (`unreachable` says which) is a bug: raised, a 500 with its traceback."""
    try:
        yield
    except DBAPIError as err:
        if not unreachable(err):
            raise
        log.error("database unavailable at intake", extra={"error": reason(err)})
        raise ServiceUnavailable(f"The connector cannot {what} right now; nothing was recorded. Retry shortly.",
                                 headers={"Retry-After": "5"}) from None


def _replayed(services: Services, existing: Handoff, digest: str, key: str, packet: dict[str, Any]) -> Answer:
    with services.db.reading() as session:  # a failed handoff's messages may have opened a ticket since
        later = answers.reached_later(session, [existing]).get(existing.id, [])
        # …and an agent may have taken it: no wait then, as a read of it says.
        holder = assignments.assignment_of(session, existing.id)
    shown = partial(answers.render, reached_later=later, holder=answers.holding(holder))
    answer = replay(existing, digest, key, shown, services.settings.sync_budget_ms / 1000, earlier_hash(packet))
    return _warned(answer, packet, services)


def _warned(answer: Answer, packet: dict[str, Any], services: Services) -> Answer:
    """The answer, with `warnings` when part of what the bot asked for will not happen (`callbacks.warnings_for`)."""
    warned(answer.body, packet, services)
    return answer


def warned(body: dict[str, Any], packet: Mapping[str, Any], services: Services) -> dict[str, Any]:
    """A handoff's answer `body` with the `warnings` its targets and assignment call for (absent when
    there is nothing to say): the POST's, its replay's and a read's alike."""
    targets = [ticket["target"] for ticket in body.get("tickets") or []]
    return _with(body, warnings_for(packet, targets, body.get("assignment") or {}, services)
                 + unserved_warnings(body, services))


def unserved_warnings(body: Mapping[str, Any], services: Services) -> list[str]:
    """Targets the answer's tickets wait on that this connector does not serve — taken out of
    CONNECTOR_TARGETS since the handoff (a rolling change, or for good): messages sent meanwhile were
    answered `pending`, "retry in 5 s", without a word of why (an operations review)."""
    waiting = sorted({ticket["target"] for ticket in body.get("tickets") or []
                      if ticket.get("status") == "pending" and ticket["target"] not in services.adapters})
    return [f"{name} is not enabled on this connector (CONNECTOR_TARGETS): its ticket waits for a process that "
            "serves it, or for an operator to dismiss it" for name in waiting]


def with_warnings(answer: Answer, said: list[str]) -> Answer:
    """`answer` with `said` as its `warnings`, when there is anything to say (the field is absent otherwise)."""
    _with(answer.body, said)
    return answer


def _with(body: dict[str, Any], said: list[str]) -> dict[str, Any]:
    if said:
        body["warnings"] = said
    return body


def warnings_for(packet: Mapping[str, Any], targets: list[str], assignment: Mapping[str, Any],
                 services: Services) -> list[str]:
    """What the answer (and the dry run) warns of: keys that look misspelt, callbacks that will not
    be sent, `vendor_extra` for a target it does not go to, the routing, the customer's message."""
    return (near_misses(packet) + callbacks.warnings_for(packet, services.settings)
            + _unused_vendor_extra(packet, targets) + out_of_order(packet.get("transcript") or [], "transcript")
            + routing.department_warnings(packet, assignment, services.mappings.routing)
            + routing.preferred_agent_warnings(assignment)
            + customer_message.language_warnings(packet, services.mappings.messages))


# How far a message may be stamped before the one above it and still pass for in order: the bot's
# messages and the customer's are often stamped by different clocks.
OUT_OF_ORDER_S = 30
_ORDER_RULE = {"transcript": "the transcript should be oldest first and is shown as sent",
               "messages": "messages should be oldest first and are shown as sent"}


def out_of_order(entries: Sequence[Mapping[str, Any]], field: str,
                 held: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """Entries (a packet's `transcript`, a batch's `messages`) that are not oldest first (sent newest
    first, say) are shown as sent — their times are the bot's, and their order too — but the brief's
    "latest from them" read the last entry, the oldest: said, with the first entry that steps back, as
    a 201 that kept quiet was taken as fine. `held`: what the ticket already has (a batch follows its
    handoff's transcript and the batches before it); the first entry older than the latest of those is
    said too: the agent's note announced a 09:00 message as written "while waiting" after the handoff's
    10:00."""
    times = [rfc3339_utc(entry.get("at")) for entry in entries]
    said = []
    latest = max(((at, entry["at"]) for entry in held if (at := rfc3339_utc(entry.get("at"))) is not None),
                 default=None, key=lambda pair: pair[0])
    if latest is not None:
        for n, at in enumerate(times):
            if at is not None and _steps_back(latest[0], at):
                said.append(f"{field}.{n}.at: {entries[n]['at']} is earlier than the latest message the handoff "
                            f"already has ({latest[1]}); {field} should be what was said since, and are shown after "
                            "it as sent")
                break
    for n in range(1, len(times)):
        before, at = times[n - 1], times[n]
        if before is not None and at is not None and _steps_back(before, at):
            said.append(f"{field}.{n}.at: {entries[n]['at']} is earlier than {field}.{n - 1}.at "
                        f"({entries[n - 1]['at']}); {_ORDER_RULE[field]}")
            break
    return said


def _steps_back(before: dt.datetime, at: dt.datetime) -> bool:
    return (before - at).total_seconds() > OUT_OF_ORDER_S


def _unused_vendor_extra(packet: Mapping[str, Any], targets: list[str]) -> list[str]:
    """`vendor_extra` for a target this handoff does not go to (a typo, `zendsk`, or a target not
    enabled here) is sent nowhere: said, as a 201 that kept quiet about it was taken as applied."""
    used = set(targets) | (set(registry.vendor_names()) if "preview" in targets else set())  # it renders them all
    return [f"vendor_extra.{name}: no target of this handoff is called {name!r} (its targets: "
            f"{', '.join(targets) or 'none'}); nothing of it is sent"
            for name in (packet.get("vendor_extra") or {}) if name not in used]


Render = Callable[..., dict[str, Any]]  # `answers.render` or `answers.render_follow_up`: (handoff, rows=None)


def deliver_and_answer(services: Services, stored: Stored, render: Render, claimed: bool = True,
                       deadline: float | None = None) -> Answer:
    """Run the deliveries the request holds within the sync budget (until `deadline`, a
    `time.monotonic()`, when the request began counting it), then answer with `render`.
    Held (paused target) or left unclaimed (no free thread): the loop takes those. `claimed`
    False (stored with `claim=False`): each delivery is claimed and checked by its own attempt."""
    handoff, prepared = stored.handoff, stored.prepared
    if claimed:
        futures = [services.submit(d.id, d.lease_owner, fresh=handoff, prepared=d.id in prepared, reserved=True)
                   for d in handoff.deliveries if d.lease_owner]
    else:  # as many as there are free threads now; the loop takes the rest (`Services.reserve`)
        # Of the targets this process serves: a batch of messages takes its handoff's targets, and
        # one reaching a process without one of them (a rolling change of CONNECTOR_TARGETS) failed
        # that delivery for good — "not enabled here" — where a process serving it takes it (a review).
        ours = [d for d in handoff.deliveries if d.target in services.adapters]
        free = services.reserve(len(ours))
        futures = [services.submit(d.id, reserved=True) for d in ours[:free]]
    budget_s = services.settings.sync_budget_ms / 1000
    finished, _ = wait(futures, timeout=budget_s if deadline is None else max(0.0, deadline - time.monotonic()))
    body, status, rows = _answer(services, handoff, [future.result() for future in finished], render)
    log.info("handoff answered", extra={"status": body["status"], "http_status": status})
    return Answer(status, body, _poll_after(rows, budget_s) if status == 202 else None)


def _poll_after(rows: Iterable[Any], budget_s: float) -> int | None:
    """Seconds before a read of a 202 can find a target further on, when every target still going
    waits longer than the sync budget — paused by its vendor (a Retry-After, a spent per-minute
    allowance) or backing off after a failure: the budget's few seconds sent a bot polling all
    through a pause of minutes. None (the budget) when any may move sooner, or is not known to."""
    dues = [getattr(row, "next_attempt_at", None) for row in rows if row.state == "pending"]
    if not dues or None in dues:
        return None
    left = min(dues) - utcnow()
    seconds = math.ceil(min(left.total_seconds(), RETRY_AFTER_MAX_S))
    return seconds if seconds > budget_s else None


def _answer(services: Services, handoff: Handoff, attempted: list[Attempted | None],
            render: Render) -> tuple[dict[str, Any], int, list[Any]]:
    """201 when every target finished within the budget, else 202. What the request committed is
    in memory, and each finished attempt says what it wrote; only an attempt that did not run
    (its target paused meanwhile, another handoff of the conversation creating the ticket) makes
    the rows worth reading again. An updated ticket's agent (`Attempted.holder`) has the handoff:
    the answer names whoever is recorded holding it, as a replay or a read does (a replay named
    them where the answer had not)."""
    if any(a is not None and a.holder for a in attempted):
        render = partial(render, holder=_holder(services, handoff.id))
    if None not in attempted:
        ended = {a.target: a for a in attempted if a is not None}
        rows = [ended.get(d.target, d) for d in handoff.deliveries]
        return render(handoff, rows), 201 if answers.all_finished(rows) else 202, rows
    try:
        with services.db.reading() as session:
            rows = session.execute(
                select(*answers.DELIVERY_COLUMNS).where(Delivery.handoff_id == handoff.id).order_by(Delivery.position)
            ).all()
    except OperationalError as err:
        # The handoff is committed and will be delivered; only reading it back failed. Say what
        # is certain — accepted, pending — rather than a 500 the bot would retry as a failure.
        log.warning("could not read the handoff back; answering from what was stored",
                    extra={"error": reason(err)})
        return render(handoff), 202, []
    return render(handoff, rows), 201 if answers.all_finished(rows) else 202, rows


def _holder(services: Services, handoff_id: str) -> answers.Holder | None:
    """Who is recorded holding the handoff (`answers.taken`); None if that cannot be read now."""
    try:
        with services.db.reading() as session:
            return answers.holding(assignments.assignment_of(session, handoff_id))
    except OperationalError as err:
        log.warning("could not read who has the handoff; answering without", extra={"error": reason(err)})
        return None


def find_repeat(services: Services, bot_id: str, key: str, message_id: str | None) -> Handoff | None:
    """The stored handoff (or follow-up) a request repeats: same signed message id, or same
    idempotency key."""
    same = Handoff.idempotency_key == key
    if message_id is not None:
        same = or_(same, Handoff.message_id == message_id)
    with services.db.reading() as session:
        return session.scalars(select(Handoff).where(Handoff.bot_id == bot_id, same)).first()


def replay(existing: Handoff, digest: str, key: str, render: Render, budget_s: float | None = None,
           earlier: str | None = None) -> Answer:
    """The stored answer to a repeated request (200), or 409 when the key came with another body;
    with `budget_s` (the sync budget), the polling hint of a target paused past it (`_poll_after`):
    a retry during a 120 s pause was told to poll every 5 s (a review).
    A key names one request of one kind: a handoff's key reused for messages is another body.
    `key` is this request's; when the stored one differs, the signed message id matched, and the
    409 names webhook-id — not an Idempotency-Key the bot may never have sent. `earlier`: the
    hash an earlier release gave the same body (`idempotency.earlier_hash`)."""
    if existing.request_hash not in (digest, earlier):
        header = "Idempotency-Key" if existing.idempotency_key == key else "webhook-id"
        raise Conflict(f"This {header} was already used with a different body.",
                       errors={header: ["reused with another body"]})
    log.info("idempotent replay", extra={"handoff_id": existing.id})
    return Answer(200, render(existing), None if budget_s is None else _poll_after(existing.deliveries, budget_s))


def _commit(services: Services, packet: dict[str, Any], bot_id: str, key: str, digest: str,
            message_id: str | None, deadline: float) -> Stored | None:
    """Decide, build the rows, and store them with whatever other requests are storing at the same
    moment (`handoff_store`); None when the handoff repeats a stored one."""
    decision = decide(packet, services.mappings, services.adapters, observed_wait=services.observed_wait,
                      deadline=deadline)
    now = utcnow()
    row = dict(
        id=f"hnd_{ULID()}", bot_id=bot_id, conversation_id=packet["conversation"]["id"], idempotency_key=key,
        request_hash=digest, message_id=message_id, packet=packet, assignment=decision.assignment,
        customer_message=decision.customer_message, estimated_wait_seconds=decision.wait_seconds,
        created_at=now, updated_at=now,
    )
    return store(services, row, decision.targets)


def store(services: Services, row: dict[str, Any], targets: list[str], claim: bool = True) -> Stored | None:
    """Store `row`'s handoff and a delivery per target, the request claiming as many as there are
    free delivery threads (none without `claim`: nor do they take the conversation's link); None
    when it repeats a stored one."""
    lease_until = row["created_at"] + dt.timedelta(seconds=services.settings.lease_s)
    slots = services.reserve(len(targets)) if claim else 0  # the rest wait, unclaimed, for the loop
    try:
        stored = services.store_handoff(
            new_handoff(row, targets, services.outbox.new_token(), lease_until, leased=slots))
    except BaseException:
        services.release(slots)
        raise
    used = sum(1 for d in stored.handoff.deliveries if d.lease_owner) if stored is not None else 0
    services.release(slots - used)  # a repeat, or a target paused meanwhile
    return stored
