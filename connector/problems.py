"""Every error a caller can meet, as RFC 9457 `application/problem+json` — wrapped once, here."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, json, url_for
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .db import reason
from .errors import ApiProblem, InternalError, PayloadTooLarge, ServiceUnavailable
from .loop_failures import unreachable

log = logging.getLogger(__name__)


def problem_response(problem: ApiProblem) -> Response:
    body = problem.body()
    # Absolute: a bot that logs the problem logs a link that opens its page. At the address people
    # use (CONNECTOR_PUBLIC_URL) when it is set — not one any caller can choose with its Host
    # header — else as the caller reached us (a path prefix and a proxy's forwarded host included).
    public = current_app.extensions["connector"].settings.public_url if "connector" in current_app.extensions else ""
    body["type"] = (f"{public.rstrip('/')}/problems/{problem.type_slug}" if public
                    else url_for("docs.problem_type", name=problem.type_slug, _external=True))
    response = Response(json.dumps(body), status=problem.status, mimetype="application/problem+json")
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def _api_problem(err: ApiProblem) -> Response:
    if err.status >= 500:
        log.error("request failed", extra={"status": err.status, "title": err.title})
    return problem_response(err)


def _too_large(_err: RequestEntityTooLarge) -> Response:
    return problem_response(PayloadTooLarge.over(current_app.config["MAX_CONTENT_LENGTH"]))


def _http(err: HTTPException) -> Response:
    problem = ApiProblem(err.description or err.name, status=err.code or 500, title=err.name)
    problem.type_slug = http_type_slug(err.name)
    response = problem_response(problem)
    if err.code == 405 and err.valid_methods:  # type: ignore[attr-defined]
        response.headers["Allow"] = ", ".join(err.valid_methods)  # type: ignore[attr-defined]
    return response


def http_type_slug(name: str) -> str:
    """A plain HTTP error's problem type: "Method Not Allowed" → method-not-allowed."""
    return name.lower().replace(" ", "-")


def _database_away(err: DBAPIError) -> Response:
    """The database unreachable on any route that did not say more itself (intake does: nothing was
    recorded): a read, a batch of messages looking its handoff up, a vendor's event. It was a 500,
    which a bot takes for a fault of ours rather than a moment to wait out (the README's 503 says
    "retry after Retry-After, same key"); a vendor retries a 503 too. Only an outage (`unreachable`):
    a query the database refused ("no such table": a schema this code does not expect) is a bug, a
    500 with its traceback, not a wait a bot would retry forever."""
    if not unreachable(err):
        return _unexpected(err)
    log.error("database unavailable", extra={"error": reason(err)})
    return problem_response(ServiceUnavailable(
        "The connector cannot reach its database right now. Retry shortly with the same request: one "
        "already recorded is answered, not made twice.", headers={"Retry-After": "5"}))


def _unexpected(err: Exception) -> Response:
    # The traceback goes to the log (with the handoff id from the log context), never to the caller.
    log.exception("unhandled error")
    return problem_response(InternalError("Something went wrong on our side; the error was logged."))


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiProblem, _api_problem)
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(DBAPIError, _database_away)
    app.register_error_handler(Exception, _unexpected)

