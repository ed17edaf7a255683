"""The admin surface: dry runs, deliveries, replays. Needs `CONNECTOR_ADMIN_TOKEN`; bot credentials
never open it."""

from __future__ import annotations

import datetime as dt
import re

from flask import Blueprint, Response, jsonify, request

from adapters import registry

from ..auth import authenticate_admin
from ..errors import MappingsRefused, NotFound, ValidationFailed
from ..outbox import REPLAYABLE, RETRYING, UNTAKEN_TO_DISMISS_S, list_deliveries
from ..previewing import preview_packet
from ..schemas.responses import DELIVERY_STATES
from ..services import current_services
from ..settings import BOOL_WORDS, truth
from . import only_params, query_limit

bp = Blueprint("admin", __name__, url_prefix="/v1")
# What `?state=` lists: a delivery's states, and `retrying` as /readyz and /metrics count it.
LISTED_STATES = (*DELIVERY_STATES, RETRYING)
# `next_before`: where a page ended, its last row's `updated_at` (in UTC) and id.
_POSITION = re.compile(r"(?P<at>[0-9]{8}T[0-9]{6}\.[0-9]{6}Z)\.(?P<id>[0-9]{1,18})", re.ASCII)
_POSITION_AT = "%Y%m%dT%H%M%S.%fZ"


@bp.before_request
def _admin_only() -> None:
    authenticate_admin(request, current_services().settings)


def _row(delivery) -> dict:  # type: ignore[no-untyped-def]
    return {"id": delivery.id, "handoff_id": delivery.handoff_id, "target": delivery.target,
            "state": delivery.state, "attempts": delivery.attempts,
            "rate_limited": delivery.rate_limited, "last_error": delivery.last_error,
            "updated_at": delivery.updated_at.isoformat(), "carried_since": delivery.carried_since}


@bp.post("/preview")
def preview() -> Response:
    """Dry run.
    ---
    post:
      summary: What each vendor would receive for a packet, the routing decision and the message; nothing is sent
      security: [{adminAuth: []}]
      parameters:
        - {in: query, name: at, required: false, description: "Decide as at this RFC 3339 time instead of now (calendars, holidays)", schema: {type: string, format: date-time}}
      requestBody:
        required: true
        content: {application/json: {schema: Packet}}
      responses:
        200: {description: The dry run, content: {application/json: {schema: {type: object}}}}
        400: {$ref: "#/components/responses/Problem"}
        401: {$ref: "#/components/responses/Problem"}
        413: {$ref: "#/components/responses/Problem"}
        415: {$ref: "#/components/responses/Problem"}
        409: {description: "An edit of the mapping files is refused: the service serves the last good set, which is not what was edited", content: {application/problem+json: {schema: Problem}}}
        422: {$ref: "#/components/responses/Problem"}
    """
    only_params("at")  # a misspelt `At=` decided as of now: a holiday checked showed today's routing
    services = current_services()
    services.mapping_store.current(verdict=True)  # looks at the files: an edit made since the last look
    refused = services.mapping_store.errors
    if refused is not None:
        # As the `preview` command: a dry run of the set still served would pass for the edit's.
        raise MappingsRefused(f"the mapping files are refused: {refused}. The service serves the last good set; "
                       "fix the file and preview again.")
    return jsonify(preview_packet(services, request.get_data(), request.content_type, at=request.args.get("at")))


@bp.get("/deliveries")
def deliveries() -> Response:
    """Deliveries by state.
    ---
    get:
      summary: Deliveries, newest first, filtered by state and target (e.g. ?state=dead)
      security: [{adminAuth: []}]
      parameters:
        - {in: query, name: state, required: false, description: "retrying: pending ones tried at least once, as /readyz counts them (pending lists both)", schema: {type: string, enum: [created, updated, pending, retrying, failed, dead, dismissed]}}
        - {in: query, name: target, required: false, description: "One target; empty or absent for every target", schema: {type: string, enum: ["", preview, zendesk, salesforce, slack]}}
        - {in: query, name: limit, required: false, schema: {type: integer, minimum: 1, maximum: 500, default: 100}}
        - {in: query, name: before, required: false, description: "The next page: the last page's `next_before`, where it ended", schema: {type: string}}
      responses:
        200: {description: Deliveries, content: {application/json: {schema: DeliveryList}}}
        401: {$ref: "#/components/responses/Problem"}
        422: {$ref: "#/components/responses/Problem"}
    """
    # A misspelt filter (`tagret=`, the callbacks command's `status=`) listed every delivery, as if
    # asked for; a paging parameter of another API (`offset=`) the first page again, for ever.
    only_params("state", "target", "limit", "before")
    state = request.args.get("state")
    if state is not None and state not in LISTED_STATES:
        raise ValidationFailed(f"state must be one of {', '.join(LISTED_STATES)}.", errors={"state": ["unknown"]})
    limit = query_limit(default=100, most=500)
    target = _target()
    rows = list_deliveries(current_services().db, state=state, target=target, limit=limit, before=_position())
    # Where this page ends, when it is full (there may be none after it): the next page's `before`.
    last = rows[-1] if len(rows) == limit else None
    return jsonify({"items": [_row(row) for row in rows],
                    "next_before": f"{last.updated_at.astimezone(dt.UTC).strftime(_POSITION_AT)}.{last.id}" if last else None})


def _position() -> tuple[dt.datetime, int] | None:
    """`?before=`, a page's `next_before`: its last row's time and id, as they were then."""
    raw = request.args.get("before")
    if raw is None:
        return None
    found = _POSITION.fullmatch(raw)
    try:
        return dt.datetime.strptime(found["at"], _POSITION_AT).replace(tzinfo=dt.UTC), int(found["id"])
    except (TypeError, ValueError):  # no match, or no such moment (month 13)
        raise ValidationFailed("before must be the last page's next_before.",
                               errors={"before": ["not a next_before"]}) from None


@bp.post("/deliveries/<int:delivery_id>/retry")
def retry_one(delivery_id: int) -> Response:
    """Replay one delivery.
    ---
    post:
      summary: Replay a dead or failed delivery (it is looked up at the vendor first, never duplicated)
      security: [{adminAuth: []}]
      parameters:
        - {in: path, name: delivery_id, required: true, schema: {type: integer}}
      responses:
        202: {description: Queued again, content: {application/json: {schema: DeliveryList}}}
        401: {$ref: "#/components/responses/Problem"}
        404: {$ref: "#/components/responses/Problem"}
    """
    services = current_services()
    if not services.replay_one(delivery_id):
        raise NotFound(f"No dead or failed delivery {delivery_id} of an enabled target whose messages later ones "
                       "have not carried since (one of a target disabled since: dismiss it).")
    return _one(delivery_id, 202)


@bp.post("/deliveries/<int:delivery_id>/dismiss")
def dismiss_one(delivery_id: int) -> Response:
    """Put one delivery aside for good.
    ---
    post:
      summary: Dismiss a dead or failed delivery that will not be sent (its target disabled since, the customer reached another way)
      description: >
        It is no longer counted as given up (metrics, /readyz), no replay takes it, and retention may
        forget its handoff; its last error keeps why it gave up. A bot reads it as `failed`.
      security: [{adminAuth: []}]
      parameters:
        - {in: path, name: delivery_id, required: true, schema: {type: integer}}
      responses:
        200: {description: Dismissed, content: {application/json: {schema: DeliveryList}}}
        401: {$ref: "#/components/responses/Problem"}
        404: {$ref: "#/components/responses/Problem"}
    """
    if not current_services().dismiss_one(delivery_id):
        raise NotFound(f"No dead or failed delivery {delivery_id}, nor a pending one of a target not enabled here "
                       f"that no process has taken for {UNTAKEN_TO_DISMISS_S} s.")
    return _one(delivery_id, 200)


def _one(delivery_id: int, status: int) -> Response:
    rows = list_deliveries(current_services().db, state=None, target=None, limit=500)
    response = jsonify({"items": [_row(row) for row in rows if row.id == delivery_id]})
    response.status_code = status
    return response


@bp.post("/deliveries/retry")
def retry_many() -> Response:
    """Replay in bulk.
    ---
    post:
      summary: Replay every dead delivery of an enabled target (optionally of one target, or failed ones too)
      security: [{adminAuth: []}]
      parameters:
        - {in: query, name: target, required: false, description: "One target; empty or absent for every target", schema: {type: string, enum: ["", preview, zendesk, salesforce, slack]}}
        - {in: query, name: include_failed, required: false, schema: {type: boolean, default: false}}
      responses:
        202: {description: "Queued again; `not_enabled`: the given-up ones left alone, their target not enabled here (dismiss them, or enable it)", content: {application/json: {schema: {type: object, required: [replayed, not_enabled], properties: {replayed: {type: array, items: {type: integer}}, not_enabled: {type: array, items: {type: integer}}}}}}}
        401: {$ref: "#/components/responses/Problem"}
        422: {$ref: "#/components/responses/Problem"}
    """
    only_params("target", "include_failed")
    states = REPLAYABLE if _flag("include_failed") else ("dead",)
    replayed, left = current_services().replay_given_up(states, target=_target())
    response = jsonify({"replayed": replayed, "not_enabled": left})
    response.status_code = 202
    return response


def _flag(name: str) -> bool:
    """A yes-or-no query parameter: `True` (Python's requests), `yes`, `1`… — only `1` and `true`
    counted, and anything else replayed nothing, as if none were failed."""
    said = truth(request.args.get(name, ""))
    if said is None:
        raise ValidationFailed(f"{name} must be {BOOL_WORDS}.", errors={name: [f"not a yes or no: {request.args[name][:40]!r}"]})
    return said


def _target() -> str | None:
    """`?target=`, one of the connector's target names: a typo (`Zendesk`, `zendsk`) listed and
    replayed nothing, answered as an all-clear (the CLI refuses it the same way)."""
    target = request.args.get("target") or None  # `?target=` (empty): every target, as before
    if target is not None and target not in registry.TARGETS:
        raise ValidationFailed(f"target must be one of {', '.join(registry.TARGETS)}.",
                               errors={"target": [f"not a target: {target[:40]!r}"]})
    return target
