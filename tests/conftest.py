"""Fixtures: an app on a fresh database, a client that checks every response against
`/openapi.json`, and PostgreSQL when the machine has it (required in CI)."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from connector import create_app
from connector.api.docs import openapi_document

BOT_KEY = "test-key-support-bot-0123456789"
OTHER_KEY = "test-key-other-bot-0123456789ab"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
PG_URL = os.environ.get("CONNECTOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@functools.cache
def _checker_of(document: str) -> OpenAPI:
    return OpenAPI.from_dict(json.loads(document), config=Config(
        # A SOAP answer (`/webhooks/salesforce`) is documented as the text it is.
        extra_media_type_deserializers={"application/problem+json": json.loads, "text/xml": bytes.decode}))


def _checker(document: dict[str, Any]) -> OpenAPI:
    """One checker per distinct document (~30 ms to build one; most apps' documents are the same)."""
    return _checker_of(json.dumps(document, sort_keys=True))


class CheckedClient(FlaskClient):
    """Validates every response against the app's own OpenAPI document."""

    def open(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        response = super().open(*args, **kwargs)
        if self.application.config.get("CHECK_OPENAPI", True) and response.request.path != "/openapi.json":
            spec = _checker(openapi_document(self.application))
            try:
                # The request body was consumed by the app; response checks need only method, path and query.
                request = Request({**response.request.environ, "wsgi.input": io.BytesIO(), "CONTENT_LENGTH": "0"})
                spec.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
            except (PathNotFound, OperationNotFound):
                # Undocumented paths and methods (404/405 problems) have no operation to check against.
                assert response.status_code in (404, 405), response.request.path
        return response


def auth(key: str = BOT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def document_errors(app: Flask, body: Any, path: str = "/v1/handoffs",
                    headers: dict[str, str] | None = None) -> str | None:
    """Why the app's own /openapi.json refuses this POST (openapi-core: body, headers), or None: what a
    client generated from the document is told before it sends anything."""
    environ = EnvironBuilder(path=path, method="POST", json=body, headers={**auth(), **(headers or {})}).get_environ()
    try:
        _checker(openapi_document(app)).validate_request(WerkzeugOpenAPIRequest(Request(environ)))
    except OpenAPIError as error:
        return f"{error}: {error.__cause__}"
    return None


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head for the whole session (per xdist worker); each app's
    database is a copy of it. Running every migration again was ~35 ms of each test's setup;
    `upgrade()` on the copy still runs and finds it at head. The migrations themselves are
    tested from an empty database in test_migrations.py."""
    from connector.db import Database

    path = tmp_path_factory.mktemp("sqlite-template") / "connector.db"
    database = Database(f"sqlite:///{path}", root=".")
    try:
        database.upgrade()
    finally:
        database.dispose()  # the last connection closed: the WAL is folded into the file
    return path


@pytest.fixture
def make_app(tmp_path, sqlite_template: Path) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        database = tmp_path / f"connector-{len(apps)}.db"
        if "database_url" not in overrides:
            shutil.copyfile(sqlite_template, database)
            database.chmod(0o600)  # as the service makes its own (copyfile's 0644 draws a start-up warning)
        config: dict[str, Any] = {
            "database_url": f"sqlite:///{database}",
            "bot_keys": (("support-bot", BOT_KEY), ("other-bot", OTHER_KEY)),
            "admin_token": ADMIN_TOKEN,
            "sync_budget_ms": 5000,
        }
        config.update(overrides)
        app = create_app(config)
        app.test_client_class = CheckedClient
        app.extensions["connector"].db.upgrade()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["connector"].stop()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _postgres_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return None
    except psycopg.Error as err:
        return str(err).strip().splitlines()[0]


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """One database migrated to head for the whole session. Each test's database is a copy of it
    (`CREATE DATABASE … TEMPLATE`): a fraction of running the migrations again, which this still
    does once per session on PostgreSQL."""
    from connector.db import Database

    problem = _postgres_reachable()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_URL}: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL} ({problem}); CI runs these")
    name = f"connector_template_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    database = Database(PG_URL.rsplit("/", 1)[0] + f"/{name}", root=".")
    try:
        database.upgrade()
    finally:
        database.dispose()  # a template with a connection open cannot be copied
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _DatabaseSupply:
    """Fresh copies of the template, each made while the test before it runs, and dropped after
    its test while the next one runs: a copy took ~0.3 s of PostgreSQL's writing and flushing,
    waited for in every PostgreSQL test's setup. One thread does both, in order."""

    def __init__(self, template: str):
        self.template = template
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="test-databases")
        self._next: Future[str] | None = None
        self._dropped: list[Future[None]] = []

    def _create(self) -> str:
        name = f"connector_test_{uuid.uuid4().hex[:10]}"
        _admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def take(self) -> str:
        made = self._next or self._thread.submit(self._create)
        self._next = self._thread.submit(self._create)
        return made.result()

    def drop(self, name: str) -> None:
        self._dropped.append(self._thread.submit(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        """Drop the copy no test took, and say if any drop failed (a database left behind)."""
        if self._next is not None:
            with contextlib.suppress(Exception):
                self.drop(self._next.result())
        self._thread.shutdown(wait=True)
        for dropped in self._dropped:
            dropped.result()


@pytest.fixture(scope="session")
def postgres_supply(postgres_template: str) -> Iterator[_DatabaseSupply]:
    supply = _DatabaseSupply(postgres_template)
    yield supply
    supply.close()


@pytest.fixture
def postgres_url(postgres_supply: _DatabaseSupply) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, at the newest migration; dropped afterwards."""
    name = postgres_supply.take()
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    postgres_supply.drop(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_app(request) -> Flask:
    """The same test on the embedded SQLite and on PostgreSQL."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")  # set up first, so it is torn down after the app
        return request.getfixturevalue("make_app")(database_url=url)
    return request.getfixturevalue("make_app")()
