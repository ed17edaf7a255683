"""Liveness and readiness for orchestrators and operators."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..auth import authenticate_scraper
from ..services import Services, current_services
from ..settings import refused_edit

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness.
    ---
    get:
      summary: The process is up
      responses:
        200: {description: Alive, content: {application/json: {schema: Health}}}
    """
    return jsonify({"status": "ok", "checks": {}})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness.
    ---
    get:
      summary: The database answers and the mappings are loaded; refused edits of the mappings or settings; delivery counts per target
      responses:
        200: {description: Ready, content: {application/json: {schema: Health}}}
        503: {description: Not ready, content: {application/json: {schema: Health}}}
    """
    ready, checks = readiness(current_services())
    response = jsonify({"status": "ready" if ready else "unavailable", "checks": checks})
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = "5"
    return response


def readiness(services: Services, *, whole: bool = False) -> tuple[bool, dict[str, Any]]:
    """Whether the service can take handoffs (the database answers), and what an operator checks:
    the mappings serving (and an edit refused), a settings edit a reload refused, the targets, the deliveries per target and state."""
    mappings: dict[str, Any] = {"ok": True, "source": services.mappings.source}
    refused = services.mapping_store.errors
    if refused is not None:
        # Still ready — the last good set serves — but the next start would stop on this file.
        # Placed only, here (the file, line and key): /readyz is open to anyone, and the refusal
        # quotes what the file says; the admin page (`whole`) says why, as for settings below.
        mappings = {**mappings, "ok": False, "serving": "the last good set", "where": refused.source}
        if whole:
            mappings["refused_edit"] = f"{refused.source}: {refused.message}"
    settings: dict[str, Any] = {"ok": True}
    refused_settings = refused_edit()
    if refused_settings is not None:
        # As a mapping edit: still ready — the settings in use serve — but the next start would stop.
        # Named only, here: /readyz is open to anyone, and the refusal may quote the value (a URL,
        # a subdomain, a line of .env that is a secret's start); the admin page (`whole`) says why.
        settings = {"ok": False, "serving": "the settings in use", "variable": os.path.basename(refused_settings.source)}
        if whole:
            settings["refused_edit"] = f"{refused_settings.source}: {refused_settings.message}"
    checks: dict[str, Any] = {"mappings": mappings, "settings": settings, "targets": list(services.adapters)}
    try:
        services.db.ping()
        no_writes = services.db.writes_refused()
        if no_writes is not None:
            checks["database"] = {"ok": False, "dialect": services.db.dialect, "error": no_writes}
            return False, checks
        gap = services.db.schema_gap()
        if gap is not None:
            # Another release migrated the shared database (a rolling upgrade), or it went back:
            # this code cannot use it, and the load balancer should stop sending it bots.
            checks["database"] = {"ok": False, "dialect": services.db.dialect, "schema": gap.words}
            return False, checks
        checks["database"] = {"ok": True, "dialect": services.db.dialect}
        checks["deliveries"] = services.outbox.counts(services.adapters)
    except SQLAlchemyError as err:
        checks["database"] = {"ok": False, "error": type(err).__name__}
        return False, checks
    return True, checks


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus metrics.
    ---
    get:
      summary: Prometheus metrics (text exposition format)
      description: >-
        Requests answered and their times, delivery attempts by target and outcome, status
        callbacks sent, all processes added up; and, read from the database at each scrape,
        deliveries waiting, retrying or given up per target, callbacks owed and paused targets.
        Open like /readyz unless CONNECTOR_METRICS_TOKEN is set; then it needs that bearer token.
      security: [{}, {metricsAuth: []}]
      responses:
        200: {description: The metrics, content: {text/plain: {schema: {type: string}}}}
        401: {$ref: "#/components/responses/Problem"}
    """
    services = current_services()
    authenticate_scraper(request, services.settings)
    return Response(metrics.exposition(services), mimetype=None, content_type=metrics.CONTENT_TYPE)
