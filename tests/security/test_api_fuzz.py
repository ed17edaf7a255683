"""Schemathesis against our own `/openapi.json`, in-process (WSGI): every documented operation gets
generated requests — valid and deliberately invalid — and every answer must be a non-5xx that
matches the document (status, body, content type).

Bounded so CI is stable and fast: a fixed number of examples per operation, derandomized, no
deadline (the first request of an operation pays for SQLite and the thread pool).

The cases are driven with `@given` over `operation.as_strategy()` rather than schemathesis' pytest
plugin (`schema.parametrize()`), whose subtest reporting does not run under pytest 9.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from connector import create_app
from tests.conftest import ADMIN_TOKEN, BOT_KEY, OTHER_KEY

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Listed rather than discovered so each one is its own test id; `test_every_operation_is_fuzzed`
# fails when a route is added to the document and not here.
OPERATIONS = [
    "POST /v1/handoffs",
    "GET /v1/handoffs",
    "GET /v1/handoffs/{handoff_id}",
    "POST /v1/handoffs/{handoff_id}/messages",
    "GET /v1/handoffs/{handoff_id}/messages",
    "POST /v1/preview",
    "GET /v1/deliveries",
    "POST /v1/deliveries/{delivery_id}/retry",
    "POST /v1/deliveries/{delivery_id}/dismiss",
    "POST /v1/deliveries/retry",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /problems/{name}",
    "POST /webhooks/zendesk",
    "POST /webhooks/slack",
    "POST /webhooks/salesforce",
]


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory) -> Iterator:
    # One app for every operation: handoffs made by the POST cases are there for the GETs later.
    directory = tmp_path_factory.mktemp("fuzz")
    app = create_app({
        "database_url": f"sqlite:///{directory}/connector.db",
        "bot_keys": (("support-bot", BOT_KEY), ("other-bot", OTHER_KEY)),
        "admin_token": ADMIN_TOKEN,
        "sync_budget_ms": 2000,
    })
    app.extensions["connector"].db.upgrade()
    yield app
    app.extensions["connector"].stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)


def credentials(operation) -> dict[str, str]:
    """The token the operation's `security` asks for: admin routes never accept a bot key."""
    schemes = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
    if "adminAuth" in schemes:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if "bearerAuth" in schemes:
        return {"Authorization": f"Bearer {BOT_KEY}"}
    return {}


def test_every_operation_is_fuzzed(api_schema) -> None:
    documented = {result.ok().label for result in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_answers_within_its_document(api_schema, label: str) -> None:
    operation = api_schema.find_operation_by_label(label)
    headers = credentials(operation)
    cases = st.one_of(operation.as_strategy(generation_mode=mode) for mode in GenerationMode)

    @given(case=cases)
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    def run(case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
