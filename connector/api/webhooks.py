"""Vendor events: `/webhooks/<vendor>`. Each view verifies the vendor's signature over the raw
body first (no secret configured → refused) — Salesforce, which signs nothing, the token in the
address its admin configured — then hands the payload to that vendor's event module in `adapters/`
and records what it says (`connector.assignments`)."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from flask import Blueprint, Response, jsonify, request

from adapters import salesforce_events, slack_events, zendesk_events

from ..errors import Unauthenticated, UnsupportedMediaType
from ..json_body import parse_json
from ..services import current_services
from ..vendor_events import receive, receive_each, refused_as_invalid
from ..vendor_signatures import SignatureError, at_fault, verify_slack, verify_zendesk

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

Verifier = Callable[[bytes, Mapping[str, str], Sequence[str], float], None]


def _verified(verify: Verifier, secrets: Sequence[str], variable: str) -> tuple[bytes, float]:
    """The raw body, read before anything parses it, once its signature holds; and the time."""
    services = current_services()
    raw, now = request.get_data(), services.clock()
    try:
        verify(raw, request.headers, secrets, now)
    except SignatureError as err:
        log.warning("vendor webhook refused", extra={"vendor": err.vendor, "reason": err.reason})
        detail = (f"{variable} is not set on this connector, so every {err.vendor} event is refused."
                  if err.reason == "no_secret_configured" else
                  f"The {err.vendor.capitalize()} signature was refused ({err.reason}): {err.detail}.")
        raise Unauthenticated(detail, errors={at_fault(err.vendor, err.reason): [err.reason]},
                              headers={"WWW-Authenticate": f'Signature realm="{err.vendor}-webhooks"'}) from None
    return raw, now


@bp.post("/zendesk")
def zendesk() -> Response:
    """Zendesk events.
    ---
    post:
      summary: Zendesk event webhook (agent assignment changed, status changed), signed by Zendesk
      description: >-
        An agent taking an unassigned ticket of a handoff is recorded once per event id and
        feeds the observed wait; the agent routing itself put on the ticket is recorded as
        holding it (`routed`), never as an observed wait, until another agent takes the ticket
        and replaces it. A ticket solved or closed is recorded (GET shows completed_at) and
        owes the handoff's bot its `completed` status callback, once, if it asked for it. A
        close by an agent's merge (tagged `closed_by_merge`) links the conversation to the
        ticket it was merged into, whose solve completes its handoffs; a merge that cannot be
        followed is a close like any other, and one whose record Zendesk could not give now
        is answered 503 with Retry-After, nothing recorded. Other event types, unassignments, reassignments between agents other than routing's
        own, other statuses and tickets that no handoff made are answered 200 with outcome
        `ignored`.
      security: [{zendeskSignature: []}]
      parameters:
        - {in: header, name: X-Zendesk-Webhook-Signature-Timestamp, required: true, schema: {type: string}}
      requestBody:
        required: true
        content: {application/json: {schema: ZendeskEvent}}
      responses:
        200: {description: "Recorded, a duplicate, or ignored", content: {application/json: {schema: WebhookReceipt}}}
        400: {$ref: "#/components/responses/Problem"}
        401: {$ref: "#/components/responses/Problem"}
        413: {$ref: "#/components/responses/Problem"}
        415: {$ref: "#/components/responses/Problem"}
        422: {$ref: "#/components/responses/Problem"}
        503: {$ref: "#/components/responses/Problem"}
    """
    services = current_services()
    raw, now = _verified(verify_zendesk, services.settings.zendesk_webhook_secrets, "ZENDESK_WEBHOOK_SECRETS")
    data = parse_json(raw, request.content_type, services.settings.max_json_depth, what="event")
    received = receive(services, zendesk_events.parse, data, dt.datetime.fromtimestamp(now, dt.UTC))
    return jsonify(received.body())


@bp.post("/slack")
def slack() -> Response:
    """Slack interactivity.
    ---
    post:
      summary: Slack interactivity (the alert's Claim button), signed by Slack
      description: >-
        The first agent to click an alert's Claim button takes the handoff: recorded once,
        shown by GET /v1/handoffs/{id} and fed to the observed wait. Later clicks and every
        other interaction are answered 200 with outcome `ignored`. Slack wants an answer
        within three seconds, so the answer calls no vendor; the agent who clicked is told
        who holds the handoff by a Slack message posted beside it, on the handoff's alert,
        and the first claim replaces the alert's Claim button with who took it.
      security: [{slackSignature: []}]
      parameters:
        - {in: header, name: X-Slack-Request-Timestamp, required: true, schema: {type: string}}
      requestBody:
        required: true
        content:
          application/x-www-form-urlencoded:
            schema:
              type: object
              required: [payload]
              properties:
                payload: {type: string, description: "The JSON of a block_actions interaction"}
      responses:
        200: {description: "Recorded, a duplicate, or ignored", content: {application/json: {schema: WebhookReceipt}}}
        401: {$ref: "#/components/responses/Problem"}
        413: {$ref: "#/components/responses/Problem"}
        415: {$ref: "#/components/responses/Problem"}
        422: {$ref: "#/components/responses/Problem"}
    """
    services = current_services()
    raw, now = _verified(verify_slack, (services.settings.slack_signing_secret,), "SLACK_SIGNING_SECRET")
    mimetype = request.mimetype  # werkzeug's: lower-case, without its parameters
    if mimetype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(f"Slack interactivity is form-encoded (got {mimetype or 'no content type'}).")
    parse = partial(slack_events.parse, max_depth=services.settings.max_json_depth)
    received = receive(services, parse, raw, dt.datetime.fromtimestamp(now, dt.UTC))
    return jsonify(received.body())


@bp.post("/salesforce")
def salesforce() -> Response:
    """Salesforce Outbound Messages.
    ---
    post:
      summary: Salesforce Outbound Message on Case (owner changed, case closed), with the token in its URL
      description: >-
        The SOAP 1.1 message a Flow's or workflow rule's Outbound Message action on Case sends, with
        at least the fields Id, OwnerId, CreatedById and IsClosed (LastModifiedDate and the mapping's
        handoff_id_field when there is one). Outbound Messages are not signed: the endpoint URL the
        admin configures carries one of SALESFORCE_WEBHOOK_TOKENS as `token` (none configured: every
        message is refused), and OrganizationId must be SALESFORCE_ORG_ID when that is set. Each
        notification is recorded once by its Id, which Salesforce keeps in its resends: an open case
        owned by a user other than the one who made it (the connector's API user) is that agent
        taking the handoff, as a Zendesk assignment is; a closed case completes it (GET shows
        completed_at; the bot's `completed` callback is owed once). A case owned by a queue is
        ignored. A conversation whose case an agent merged into one the message names (Case Merge
        deletes it in silence) is linked to that one first, as its deleted case's MasterRecordId
        says. The answer is Salesforce's `notificationsResponse` with Ack true once every
        notification is recorded, a duplicate or ignored; anything else, and a 503 when the
        database is away or those merges could not be read now, makes Salesforce send the whole
        message again (for up to 24 hours). A
        body that is not an Outbound Message of 1 to 100 Cases, or declares a DTD, is refused.
      security: [{salesforceToken: []}]
      requestBody:
        required: true
        content:
          text/xml:
            schema: {type: string, description: "A SOAP 1.1 Envelope holding Salesforce's `notifications`"}
      responses:
        200:
          description: "Every notification recorded, a duplicate, or ignored: Ack true"
          content:
            text/xml:
              schema: {type: string, description: "A SOAP 1.1 Envelope holding `notificationsResponse/Ack` true"}
        400: {$ref: "#/components/responses/Problem"}
        401: {$ref: "#/components/responses/Problem"}
        413: {$ref: "#/components/responses/Problem"}
        415: {$ref: "#/components/responses/Problem"}
        422: {$ref: "#/components/responses/Problem"}
        503: {$ref: "#/components/responses/Problem"}
    """
    services = current_services()
    settings = services.settings
    _token_holds(settings.salesforce_webhook_tokens)
    raw, now = request.get_data(), services.clock()
    mimetype = request.mimetype
    if mimetype not in ("text/xml", "application/xml"):
        raise UnsupportedMediaType(f"A Salesforce Outbound Message is SOAP 1.1, text/xml (got {mimetype or 'no content type'}).")
    received_at = dt.datetime.fromtimestamp(now, dt.UTC)
    field = services.mappings.targets.get("salesforce", {}).get("handoff_id_field")
    with refused_as_invalid("Outbound Message"):
        message = salesforce_events.parse(raw, received_at, field if isinstance(field, str) else None)
    if settings.salesforce_org_id and not salesforce_events.same_org(settings.salesforce_org_id,
                                                                     message.organization_id):
        log.warning("vendor webhook refused", extra={"vendor": "salesforce", "reason": "org_mismatch"})
        raise Unauthenticated("The Outbound Message is from another Salesforce organization than SALESFORCE_ORG_ID.",
                              errors={"OrganizationId": ["org_mismatch"]}, headers=_SALESFORCE_REALM)
    received = receive_each(services, message.events, received_at)
    log.info("salesforce outbound message acknowledged",
             extra={"notifications": len(received), **{outcome: sum(r.outcome == outcome for r in received)
                                                      for outcome in ("recorded", "duplicate", "ignored")}})
    return Response(salesforce_events.ACK, status=200, mimetype="text/xml")


_SALESFORCE_REALM = {"WWW-Authenticate": 'Token realm="salesforce-webhooks"'}


def _token_holds(tokens: Sequence[str]) -> None:
    """The `token` query parameter is one of SALESFORCE_WEBHOOK_TOKENS (fail closed: none set,
    nothing holds). Compared in constant time; neither it nor the tokens are ever logged."""
    sent = request.args.get("token", "")
    reason = "no_token_configured" if not tokens else "missing_token" if not sent else None
    if reason is None:
        # Every token compared, none short-circuiting: the time taken says nothing of which was near.
        matches = [hmac.compare_digest(sent.encode(), token.encode()) for token in tokens]
        reason = None if any(matches) else "mismatch"
    if reason is None:
        return
    log.warning("vendor webhook refused", extra={"vendor": "salesforce", "reason": reason})
    detail = ("SALESFORCE_WEBHOOK_TOKENS is not set on this connector, so every Salesforce Outbound Message is refused."
              if reason == "no_token_configured" else
              "The Outbound Message's endpoint URL must carry one of SALESFORCE_WEBHOOK_TOKENS as ?token=… "
              f"({'none was sent' if reason == 'missing_token' else 'the one sent is not configured'}).")
    raise Unauthenticated(detail, errors={"token": [reason]}, headers=_SALESFORCE_REALM)
