"""`/openapi.json`, generated from the marshmallow schemas and the views' docstrings — never by hand."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify

from adapters.zendesk_events import ZendeskEventSchema

from .. import schemas

bp = Blueprint("docs", __name__)

_COMPONENTS = {
    "Packet": schemas.PacketSchema,
    "HandoffResponse": schemas.HandoffResponseSchema,
    # Before HandoffDetail, which nests it: apispec would register it first under the same name.
    "MessagesResponse": schemas.MessagesResponseSchema,
    "Messages": schemas.MessagesSchema,
    "MessagesList": schemas.MessagesListSchema,
    "HandoffDetail": schemas.HandoffDetailSchema,
    "HandoffList": schemas.HandoffListSchema,
    "HandoffStatus": schemas.HandoffStatusSchema,
    "DeliveryList": schemas.DeliveryListSchema,
    "Health": schemas.HealthSchema,
    "Problem": schemas.ProblemSchema,
    "WebhookReceipt": schemas.WebhookReceiptSchema,
    "ZendeskEvent": ZendeskEventSchema,
}


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(
        title="Handoff connector",
        version="1.0.0",
        openapi_version="3.0.3",
        info={"description": "Chatbot → human handoff: tickets, cases and alerts with the whole context."},
        plugins=[FlaskPlugin(), MarshmallowPlugin()],
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer",
                                                    "description": "A bot's key (CONNECTOR_BOT_KEYS)"})
    spec.components.security_scheme("botSignature", {
        "type": "apiKey", "in": "header", "name": "webhook-signature",
        "description": "Standard Webhooks: `v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}` "
                       "keyed with one of the bot's CONNECTOR_BOT_SECRETS, with the webhook-id and "
                       "webhook-timestamp headers; five-minute window. The alternative to a bearer key."})
    spec.components.security_scheme("adminAuth", {"type": "http", "scheme": "bearer",
                                                   "description": "CONNECTOR_ADMIN_TOKEN"})
    spec.components.security_scheme("metricsAuth", {"type": "http", "scheme": "bearer",
                                                     "description": "CONNECTOR_METRICS_TOKEN, when it is set"})
    spec.components.security_scheme("zendeskSignature", {
        "type": "apiKey", "in": "header", "name": "X-Zendesk-Webhook-Signature",
        "description": "base64 HMAC-SHA256 of the timestamp header and the raw body, keyed with one of "
                       "ZENDESK_WEBHOOK_SECRETS; five-minute window"})
    spec.components.security_scheme("slackSignature", {
        "type": "apiKey", "in": "header", "name": "X-Slack-Signature",
        "description": "v0= hex HMAC-SHA256 of 'v0:{timestamp}:{raw body}', keyed with SLACK_SIGNING_SECRET; "
                       "five-minute window"})
    for name, schema in _COMPONENTS.items():
        spec.components.schema(name, schema=schema)
    spec.components.response(
        "Problem",
        {"description": "RFC 9457 problem details", "content": {"application/problem+json": {"schema": "Problem"}}},
    )
    with app.test_request_context():
        for endpoint, view in app.view_functions.items():
            if endpoint != "static" and (view.__doc__ or "").find("---") >= 0:
                spec.path(view=view, app=app)
    document = spec.to_dict()
    # Any operation can meet a bug: `problems._unexpected` answers it as a generic 500 problem, so
    # the document says so once here rather than in every docstring (clients and checkers rely on it).
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("500", {"$ref": "#/components/responses/Problem"})
    return document


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document.
    ---
    get:
      summary: This API's OpenAPI 3 description
      responses:
        200: {description: The document, content: {application/json: {schema: {type: object}}}}
    """
    cached = current_app.extensions.setdefault("openapi", build_spec(current_app))
    return jsonify(cached)
