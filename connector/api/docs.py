"""`/openapi.json`, generated from the marshmallow schemas and the views' docstrings — never by hand;
and `/problems/<name>`, the page each problem answer's `type` points to."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from apispec.ext.marshmallow.field_converter import DEFAULT_FIELD_MAPPING
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template
from marshmallow import Schema, fields, validate
from werkzeug.exceptions import default_exceptions

from adapters.zendesk_events import ZendeskEventSchema

from .. import errors, schemas
from ..callback_http import ALLOW_VARIABLE
from ..callbacks import RETRYABLE_STATUS
from ..errors import NotFound
from ..idempotency import IDEMPOTENCY_KEY
from ..problems import http_type_slug
from ..schemas.json_schema import any_case, null
from ..schemas.packet import null_is_absent

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


class _Converter(OpenAPIConverter):
    """apispec's, and what it cannot read off these schemas by itself: the JSON Schema a rule of
    the packet's carries (`schemas.json_schema`: a validator's, a field class's, a schema's
    `@validates_schema` check's), a URL's schemes, and the nulls `_NullIsAbsent` takes as a field
    left out. Without them the document took packets the server refuses (422) and refused nulls it
    takes: a client generated from it learnt the rules one refusal at a time."""

    # OpenAPI defines no format "url" (apispec's name for it): "uri" is the one validators know.
    field_mapping = {**DEFAULT_FIELD_MAPPING, fields.Url: ("string", "uri")}

    def init_attribute_functions(self) -> None:
        super().init_attribute_functions()
        self.attribute_functions += [self._rules, self._url_schemes, self._null_is_absent, self._null_branch]

    def _null_branch(self, field: fields.Field, ret: dict[str, Any]) -> dict[str, Any]:
        """apispec writes a nested field's null as `{"type": "object", "nullable": true}`, which in
        3.0 takes any object: the answers' `ticket`, `agent` and `assigned` were checked for nothing
        (a bot developer's review). `null()` is null alone."""
        if "anyOf" in ret:
            ret["anyOf"] = [null() if branch == {"type": "object", "nullable": True} else branch
                            for branch in ret["anyOf"]]
        return {}

    def _rules(self, field: fields.Field, ret: dict[str, Any]) -> dict[str, Any]:
        own = getattr(field, "json_schema", None)
        if own is not None:  # the field's whole type (a Scalar's anyOf), in place of apispec's guess
            for key in ("type", "format", "nullable"):
                ret.pop(key, None)
            _merge(ret, own())
        for validator in field.validators:
            rule = getattr(validator, "json_schema", None)
            if rule is not None:
                _merge(ret, rule())
        return {}

    def _url_schemes(self, field: fields.Field, ret: dict[str, Any]) -> dict[str, Any]:
        for validator in field.validators:
            if isinstance(validator, validate.URL) and validator.absolute and not validator.relative:
                schemes = sorted(validator.schemes)
                _merge(ret, {"pattern": f"^(?:{'|'.join(any_case(scheme) for scheme in schemes)})://",
                             "description": f"An absolute {', '.join(schemes)} URL."})
        return {}

    def _null_is_absent(self, field: fields.Field, ret: dict[str, Any]) -> dict[str, Any]:
        if not null_is_absent(field):
            return {}
        if "$ref" in ret:
            ret["anyOf"] = [{"$ref": ret.pop("$ref")}, null()]
        elif "allOf" in ret:
            ret["anyOf"] = [*ret.pop("allOf"), null()]
        elif "anyOf" in ret:
            if null() not in ret["anyOf"]:
                ret["anyOf"].append(null())
        else:
            ret["nullable"] = True
            if "enum" in ret and None not in ret["enum"]:
                ret["enum"] = [*ret["enum"], None]  # 3.0.3: `nullable` does not add null to an enum
        return {}

    def schema2jsonschema(self, schema: Schema) -> dict[str, Any]:
        document = super().schema2jsonschema(schema)
        for name, _, _ in type(schema)._hooks.get("validates_schema", ()):
            rule = getattr(getattr(type(schema), name), "json_schema", None)
            if rule is not None:
                _merge(document, rule())
        return document


def _merge(schema: dict[str, Any], rule: dict[str, Any]) -> None:
    """`rule`'s keywords into `schema`: descriptions are joined, and a second `anyOf` or `pattern`
    (which would replace the first) goes under `allOf`."""
    for key, value in rule.items():
        if key == "description" and schema.get(key):
            schema[key] = f"{schema[key]} {value}"
        elif key in ("anyOf", "pattern") and key in schema:
            schema.setdefault("allOf", []).append({key: value})
        else:
            schema[key] = value


class _Plugin(MarshmallowPlugin):
    Converter = _Converter


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(
        title="Handoff connector",
        version="1.0.0",
        openapi_version="3.0.3",
        info={"description": "Chatbot → human handoff: tickets, cases and alerts with the whole context."},
        plugins=[FlaskPlugin(), _Plugin()],
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
    spec.components.security_scheme("salesforceToken", {
        "type": "apiKey", "in": "query", "name": "token",
        "description": "One of SALESFORCE_WEBHOOK_TOKENS, in the endpoint URL of the Outbound Message (Salesforce "
                       "signs nothing); OrganizationId must also be SALESFORCE_ORG_ID when that is set"})
    for name, schema in _COMPONENTS.items():
        spec.components.schema(name, schema=schema)
    # `idempotency.key_for`'s rule, as it checks it (a 400 otherwise).
    spec.components.parameter("IdempotencyKey", "header", {
        "name": "Idempotency-Key", "required": False,
        "description": "1 to 200 visible ASCII characters (no spaces, no comma: a header sent twice arrives "
                       "joined by commas), sent once; the same key with the same body is the same request.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": IDEMPOTENCY_KEY.pattern}})
    spec.components.response(
        "Problem",
        {"description": "RFC 9457 problem details", "content": {"application/problem+json": {"schema": "Problem"}}},
    )
    spec.components.response("Unavailable", {
        "description": "RFC 9457 problem details: the database cannot be reached (or another request for the "
                       "same handoff holds it); retry the same request after Retry-After",
        "headers": {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}},
        "content": {"application/problem+json": {"schema": "Problem"}}})
    with app.test_request_context():
        for endpoint, view in app.view_functions.items():
            if endpoint != "static" and (view.__doc__ or "").find("---") >= 0:
                spec.path(view=view, app=app)
    document = spec.to_dict()
    _state_limits(document, app.extensions["connector"].settings)
    # Any operation can meet a bug (`problems._unexpected`: a generic 500 problem), and any that reads
    # the database can find it away (`problems._database_away`: a 503 with Retry-After), so the document
    # says so once here rather than in every docstring (clients and checkers rely on it; a read's 503
    # was in none). Not the probes, the document and its problem pages, nor /metrics: they answer
    # without it (/readyz with its own 503).
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("500", {"$ref": "#/components/responses/Problem"})
                if path.startswith(_READS_THE_DATABASE):
                    operation["responses"].setdefault("503", {"$ref": "#/components/responses/Unavailable"})
    return document


_READS_THE_DATABASE = ("/v1/", "/webhooks/")


def _state_limits(document: dict[str, Any], settings: Any) -> None:
    """The limits this service enforces, as it is configured: they are checked while loading
    (`Transcript`, the body limit before any parsing), and a bot's generated client learnt of them
    only from a 413 or 422. (The schemas' own rules are `_Converter`'s.)"""
    schemas_ = document["components"]["schemas"]
    most, longest = settings.max_transcript_entries, settings.max_entry_chars
    for schema, field in (("Packet", "transcript"), ("Messages", "messages")):
        schemas_[schema]["properties"][field].update(
            maxItems=most, description=f"At most {most} entries (CONNECTOR_MAX_TRANSCRIPT_ENTRIES).")
    schemas_["TranscriptEntry"]["properties"]["text"].update(
        maxLength=longest, description=f"At most {longest} characters (CONNECTOR_MAX_ENTRY_CHARS).")
    if not settings.callback_allow_private:  # `callback_http.url_problem`, before any lookup (a 422)
        schemas_["Callback"]["properties"]["url"].update(
            pattern=f"^{any_case('https')}://",
            description=f"An absolute https URL of a public address (http, localhost and private addresses only "
                        f"with {ALLOW_VARIABLE}).")
    body = f"At most {settings.max_body_bytes} bytes (CONNECTOR_MAX_BODY_BYTES); larger bodies are answered 413."
    for path in ("/v1/handoffs", "/v1/handoffs/{handoff_id}/messages"):
        request_body = document["paths"][path]["post"]["requestBody"]
        request_body["description"] = body


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document.
    ---
    get:
      summary: This API's OpenAPI 3 description
      responses:
        200: {description: The document, content: {application/json: {schema: {type: object}}}}
    """
    return jsonify(openapi_document(current_app))


def openapi_document(app: Flask) -> dict[str, Any]:
    """`build_spec` once per app: its routes and settings do not change after it is made. (A
    `setdefault` here built the whole document again, ~25 ms, on every request for it.)"""
    document = app.extensions.get("openapi")
    if document is None:
        document = app.extensions["openapi"] = build_spec(app)
    return document


def problem_types() -> dict[str, type[errors.ApiProblem]]:
    """Every problem `type` this API answers with words of its own, by name."""
    found = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.ApiProblem) and value is not errors.ApiProblem:
            found[value.type_slug] = value
    return found


def _http_types() -> dict[str, tuple[int, str, str]]:
    # What `problems._http` answers for a plain HTTP error (a wrong method, say): werkzeug's words.
    errors_ = [cls() for cls in default_exceptions.values()]
    return {http_type_slug(err.name): (err.code or 500, err.name, err.description or "") for err in errors_}


@bp.get("/problems/<name>")
def problem_type(name: str) -> Response:
    """What a problem `type` means and what a caller should do about it (README lists the same).
    ---
    get:
      summary: The page a problem answer's `type` points to
      parameters:
        - {in: path, name: name, required: true, schema: {type: string}}
      responses:
        200: {description: What it means and whether to retry, content: {text/html: {schema: {type: string}}}}
        404: {$ref: "#/components/responses/Problem"}
    """
    known = problem_types().get(name)
    if known is not None:
        page = {"status": known.status, "title": known.title, "meaning": known.meaning, "retry": known.retry}
    elif name in _http_types():
        status, title, description = _http_types()[name]
        page = {"status": status, "title": title, "meaning": description,
                "retry": "yes, later (after `Retry-After` when the answer has one)" if status in RETRYABLE_STATUS
                else "no: the request itself must change"}
    else:
        raise NotFound(f"No problem type is called {name!r}.")
    return Response(render_template("problem.html", name=name, **page), mimetype="text/html")
