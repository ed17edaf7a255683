"""`/openapi.json` is generated, valid OpenAPI 3, and describes every route the app serves."""

from __future__ import annotations

import re

from openapi_spec_validator import validate


def test_document_is_valid_and_complete(client, app):
    document = client.get("/openapi.json").get_json()
    validate(document)
    # Every route but the admin page's: HTML for a browser, not part of the API.
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()
              if rule.endpoint != "static" and not rule.endpoint.startswith("admin_page.")}
    assert routes == set(document["paths"])
    packet = document["components"]["schemas"]["Packet"]
    assert {"bot", "conversation", "customer", "transcript", "escalation"} <= set(packet["required"])
    assert packet["additionalProperties"] is False


def test_document_states_the_limits_this_service_enforces(make_app):
    document = make_app(max_transcript_entries=40, max_entry_chars=500, max_body_bytes=65536).test_client() \
        .get("/openapi.json").get_json()
    validate(document)
    schemas = document["components"]["schemas"]
    assert schemas["Packet"]["properties"]["transcript"]["maxItems"] == 40
    assert schemas["Messages"]["properties"]["messages"]["maxItems"] == 40
    assert schemas["TranscriptEntry"]["properties"]["text"]["maxLength"] == 500
    assert schemas["Customer"]["anyOf"] == [{"required": ["id"]}, {"required": ["email"]}, {"required": ["phone"]}]
    for path in ("/v1/handoffs", "/v1/handoffs/{handoff_id}/messages"):
        assert "65536 bytes" in document["paths"][path]["post"]["requestBody"]["description"]


def test_document_is_served_the_same_each_time_and_built_once(client, monkeypatch):
    from connector.api import docs

    built, build = [], docs.build_spec
    monkeypatch.setattr(docs, "build_spec", lambda app: built.append(app) or build(app))
    assert client.get("/openapi.json").get_data() == client.get("/openapi.json").get_data()
    assert len(built) == 1


def test_the_readme_tells_bots_every_problem_type_they_can_get():
    """Each `type` the API answers is in README's table, in the same words as its page."""
    import re
    from pathlib import Path

    from connector.api.docs import problem_types

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^  \| `([a-z-]+)` \| (\d{3}) \| (.+?) \| (.+?) \|$", readme, re.M)
    assert listed == [(name, str(cls.status), cls.meaning, cls.retry) for name, cls in problem_types().items()]


def test_every_problem_type_is_a_page_the_connector_serves(client):
    """A problem's `type` resolves against the address the caller used: a page, not a dead link."""
    for answer in (client.post("/v1/handoffs", data="{}", content_type="application/json"),  # unauthenticated
                   client.delete("/v1/handoffs"),  # a plain HTTP error: werkzeug's words
                   client.get("/problems/no-such-type")):
        problem = answer.get_json()
        page = client.get(problem["type"])
        assert page.status_code == 200 and page.mimetype == "text/html", problem
        assert f"<h1>{problem['title']} <small>({problem['status']}" in page.get_data(as_text=True)
    for name, advice in [("too-many-requests", "yes, later"), ("not-implemented", "no: the request itself"),
                         ("method-not-allowed", "no: the request itself")]:
        assert f"<dt>Retry?</dt><dd>{advice}" in client.get(f"/problems/{name}").get_data(as_text=True), name
    from flask.testing import FlaskClient

    proxied = FlaskClient(client.application)  # unchecked: the document names no such server
    behind_a_prefix = proxied.post("/v1/handoffs", data="{}", content_type="application/json",
                                   base_url="https://support.example/connector/")
    assert behind_a_prefix.get_json()["type"] == "https://support.example/connector/problems/unauthenticated"
    conflict = client.get("/problems/conflict").get_data(as_text=True)
    assert "the <code>Idempotency-Key</code> (or a signed request&#39;s <code>webhook-id</code>) came earlier with another body" in conflict


def test_with_a_public_url_a_problems_type_is_there_whatever_host_the_caller_named(make_app):
    from flask.testing import FlaskClient

    app = make_app(public_url="https://support.example/connector")
    answer = FlaskClient(app).post("/v1/handoffs", data="{}", content_type="application/json",
                                   headers={"Host": "evil.example"})
    assert answer.get_json()["type"] == "https://support.example/connector/problems/unauthenticated"


def test_the_callbacks_retry_rule_is_described_as_it_is_applied(client):
    # It said "5xx": a bot answering 501 read that it would be retried, and the callback went dead.
    from connector.callbacks import RETRYABLE_STATUS

    document = client.get("/openapi.json").get_json()
    [callbacks] = [op["callbacks"] for path in document["paths"].values() for op in path.values()
                   if isinstance(op, dict) and "callbacks" in op]
    described = " ".join(op["description"] for expr in callbacks.values() for item in expr.values()
                         for op in item.values())
    retried = described.split("Retried with backoff on")[1].split(";")[0]
    assert {int(code) for code in re.findall(r"\b\d{3}\b", retried)} == RETRYABLE_STATUS


def test_packet_times_are_described_as_date_times(client):
    # Described as any string, a bot's generated client sent whatever text it had, and met a 422.
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert schemas["TranscriptEntry"]["properties"]["at"]["format"] == "date-time"
    assert schemas["History"]["properties"]["at"]["format"] == "date-time"


def test_the_admin_target_parameter_lists_the_connectors_targets(client):
    # A plain string let a client's generated code send any typo, which the API refuses (422).
    from adapters import registry

    document = client.get("/openapi.json").get_json()
    for path, method in (("/v1/deliveries", "get"), ("/v1/deliveries/retry", "post")):
        target, = (p for p in document["paths"][path][method]["parameters"] if p["name"] == "target")
        assert target["schema"]["enum"] == ["", *registry.TARGETS], path
