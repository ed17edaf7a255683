"""The app factory: settings once, services, error handlers, CLI, blueprints."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from adapters import registry

from . import body_limit, cli, json_codec, jsonlog, mappings, metrics, problems
from . import settings as _settings
from .services import Services, init_app
from .settings import Settings, load_env_file

ROOT = str(Path(__file__).resolve().parent.parent)
log = logging.getLogger(__name__)
WARNED = "_CONNECTOR_SETTINGS_WARNED"  # set in gunicorn's master once it has logged the settings' warnings


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. With `test_config`, the process environment is ignored: tests are hermetic;
    pass `environ` to simulate variables and any `Settings` attribute to override it."""
    if test_config is None:
        load_env_file()
        settings = Settings.from_env()
    else:
        overrides = dict(test_config)
        settings = Settings.from_env(overrides.pop("environ", {})).override(overrides)

    metrics.check_directory(os.environ)
    jsonlog.configure(settings.log_level)
    app = Flask(__name__, instance_path=os.path.join(ROOT, "instance"))
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.json = json_codec.JSONProvider(app)
    app.json.sort_keys = False
    app.json.ensure_ascii = False

    # A gunicorn worker (its master checked everything and said so: WARNED) may serve the set its
    # master last checked when an edit is bad as it boots (`mappings.inherited`); a `flask` command
    # starts on no mappings then (`mappings.none_loaded`), and those that need them refuse.
    fallback = None
    if test_config is None and os.environ.get(WARNED):
        fallback = mappings.inherited()
    elif test_config is None and cli.in_command():
        fallback = mappings.none_loaded(settings.mappings_dir, ROOT, list(registry.TARGETS))
    init_app(app, Services(settings, ROOT, fallback=fallback))
    problems.init_app(app)
    # Before body_limit: before_request hooks run in the order registered, and one that refuses the body
    # (415, 413) ends the request before those after it — its answer was counted, never timed.
    metrics.init_app(app)
    body_limit.init_app(app)
    cli.init_app(app)

    from .api import admin, admin_page, docs, handoffs, health, webhooks

    for blueprint in (handoffs.bp, admin.bp, admin_page.bp, health.bp, webhooks.bp, docs.bp):
        app.register_blueprint(blueprint)
    services = app.extensions["connector"]
    if cli.in_command():  # a flask command reports for itself
        return app
    # gunicorn's master builds the app to check the setup and migrate before any worker: "ready"
    # there came before the database was even reached (and before a start that then failed); each
    # worker says it as it begins to serve.
    in_gunicorn_master = _settings.GUNICORN_STARTED and not os.environ.get(WARNED)
    if not in_gunicorn_master:
        log.info("connector ready", extra={"targets": list(settings.targets)})
    # Said once per start: gunicorn's master says it (`gunicorn.conf.on_starting`) and marks the
    # environment its workers inherit, rather than each of them saying it again.
    if not os.environ.get(WARNED):
        log_warnings(services)
    return app


def log_warnings(services: Services) -> None:
    """What is risky or useless in the setup, one line each (`connector check` lists the same)."""
    for warning in services.warnings():
        log.warning("setting to look at", extra={"warning": warning})
