"""`/openapi.json` is generated, valid OpenAPI 3, and describes every route the app serves."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate

from tests.conftest import document_errors


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


def test_every_operation_documents_the_503_a_database_away_gives_with_its_retry_after(client):
    # A review: a generated client never read Retry-After (no 503 declared it), and reads declared no 503.
    document = client.get("/openapi.json").get_json()
    unavailable = document["components"]["responses"]["Unavailable"]
    assert unavailable["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    for path in ("/v1/handoffs", "/v1/handoffs/{handoff_id}", "/v1/handoffs/{handoff_id}/messages"):
        for method, operation in document["paths"][path].items():
            assert operation["responses"]["503"] == {"$ref": "#/components/responses/Unavailable"}, (method, path)
    # …and not where the database is never read: a liveness probe documented as failing with it misled.
    for path in ("/healthz", "/openapi.json", "/problems/{name}", "/metrics"):
        assert "503" not in document["paths"][path]["get"]["responses"], path
    assert document["paths"]["/readyz"]["get"]["responses"]["503"]["content"]  # its own body


def test_document_states_the_limits_this_service_enforces(make_app):
    document = make_app(max_transcript_entries=40, max_entry_chars=500, max_body_bytes=65536).test_client() \
        .get("/openapi.json").get_json()
    validate(document)
    schemas = document["components"]["schemas"]
    assert schemas["Packet"]["properties"]["transcript"]["maxItems"] == 40
    assert schemas["Messages"]["properties"]["messages"]["maxItems"] == 40
    assert schemas["TranscriptEntry"]["properties"]["text"]["maxLength"] == 500
    assert [rule["required"] for rule in schemas["Customer"]["anyOf"]] == [["id"], ["email"], ["phone"]]
    for path in ("/v1/handoffs", "/v1/handoffs/{handoff_id}/messages"):
        assert "65536 bytes" in document["paths"][path]["post"]["requestBody"]["description"]
    # Map keys' limits, which OpenAPI 3.0 cannot state as a rule (a client was told a longer key was fine).
    assert schemas["Customer"]["properties"]["attributes"]["description"] == "Keys of at most 200 characters."
    assert schemas["Packet"]["properties"]["collected_data"]["description"] == "Keys of at most 200 characters."
    assert "at most 40 characters" in schemas["Packet"]["properties"]["vendor_extra"]["description"]


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


# ---- What the document accepts is what the server accepts ------------------------------------
# A review posted 1,500 generated packets and compared the answers with /openapi.json: a client
# generated from the document sent packets it called valid and met 422s (the rules below were
# checked while loading, where apispec could not see them), and could not send the nulls the server
# takes as a field left out. Each row is posted to the server and validated against the document.


def _posted(client, body, path: str = "/v1/handoffs", headers: dict[str, str] | None = None):
    import uuid

    from tests.conftest import auth

    return client.post(path, json=body, headers={**auth(), "Idempotency-Key": str(uuid.uuid4()), **(headers or {})})


def _entry(**fields):
    return {"at": "2026-11-20T10:00:00Z", "role": "customer", "text": "hi", **fields}


REFUSED = {
    "attachment with neither url nor name": {"transcript": [_entry(attachments=[{"content_type": "image/png"}])]},
    "attachment named with spaces only": {"transcript": [_entry(attachments=[{"name": "  \t"}])]},
    "attachment with a null name only": {"transcript": [_entry(attachments=[{"name": None, "size": 3}])]},
    "attachment url empty": {"transcript": [_entry(attachments=[{"url": ""}])]},
    "collected value an object": {"collected_data": {"order": {"id": 1}}},
    "collected value a list of objects": {"collected_data": {"orders": [{"id": 1}]}},
    "collected value a list of lists": {"collected_data": {"sizes": [[1, 2]]}},
    "collected string over 20000": {"collected_data": {"note": "x" * 20_001}},
    "collected string over 20000 in a list": {"collected_data": {"notes": ["x" * 20_001]}},
    "attribute a list": {"customer": {"email": "sam@example.net", "attributes": {"tags": ["vip"]}}},
    "attribute an object": {"customer": {"email": "sam@example.net", "attributes": {"plan": {}}}},
    "attribute string over 20000": {"customer": {"email": "sam@example.net", "attributes": {"bio": "x" * 20_001}}},
    "targets twice": {"targets": ["preview", "preview"]},
    "customer id of spaces": {"customer": {"id": "   "}},
    "customer id of a zero-width space": {"customer": {"id": "\u200b"}},
    "customer id of a Hangul filler": {"customer": {"id": "\u3164"}},
    "customer id of joiners": {"customer": {"id": "\u200d\u200c\ufe0f"}},
    "customer phone blank, nothing else": {"customer": {"phone": " \u200b "}},
    "customer id null, nothing else": {"customer": {"id": None, "name": "Sam"}},
    "bot id blank": {"bot": {"id": "\u2060"}},
    "conversation id blank": {"conversation": {"id": "\u00a0"}},
    "account id blank": {"customer": {"email": "sam@example.net", "account_id": " "}},
    "ticket id blank": {"history": [{"ticket": {"id": "\ufeff"}}]},
    "text empty without attachments": {"transcript": [_entry(text="")]},
    "text of spaces without attachments": {"transcript": [_entry(text=" \n ")]},
    "text invisible without attachments": {"transcript": [_entry(text="\u200e\u200b")]},
    "blank text with an empty attachment list": {"transcript": [_entry(text="", attachments=[])]},
    "blank text with null attachments": {"transcript": [_entry(text="", attachments=None)]},
    "conversation url not http": {"conversation": {"id": "c-1", "url": "mailto:sam@example.net"}},
    "conversation url relative": {"conversation": {"id": "c-1", "url": "/chats/1"}},
    "callback url ftp": {"callback": {"url": "ftp://bots.example/cb"}},
    "callback url plain http": {"callback": {"url": "http://bots.example/cb"}},
    "required bot id null": {"bot": {"id": None}},
    "a target null": {"targets": [None]},
}


@pytest.mark.parametrize("overrides", REFUSED.values(), ids=REFUSED.keys())
def test_a_packet_the_server_refuses_the_document_refuses(client, app, overrides):
    from tests.factories import minimal_packet

    packet = minimal_packet(**overrides)
    answer = _posted(client, packet)
    assert answer.status_code == 422, answer.get_json()
    assert document_errors(app, packet) is not None, answer.get_json()["errors"]


ACCEPTED = {
    "every optional top-level field null": {key: None for key in (
        "intent", "sentiment", "attempted_solutions", "collected_data", "history", "routing", "targets", "callback",
        "vendor_extra", "metadata")},
    "optional nested fields null": {
        "bot": {"id": "support-bot", "platform": None},
        "conversation": {"id": "c-1", "channel": None, "language": None, "url": None},
        "customer": {"id": None, "email": "sam@example.net", "name": None, "phone": None, "attributes": None},
        "intent": {"name": None, "confidence": None},
        "sentiment": {"label": None, "score": None, "trend": None},
        "history": [{"at": None, "ticket": None}, {"ticket": {"id": None, "url": None, "status": None}}],
        "routing": {"priority": None, "preferred_agent": None, "skills": None},
        "escalation": {"reason": "other", "urgency": None, "keywords": None},
        "callback": {"url": "https://bots.example/cb", "events": None},
        "transcript": [_entry(attachments=[{"url": None, "name": "a.png", "size": None, "content_type": None}])],
    },
    "scalars and lists of them": {"collected_data": {"a": "x" * 20_000, "b": 1.5, "c": False, "d": None,
                                                     "e": [1, "two", None, True]},
                                  "customer": {"email": "sam@example.net", "attributes": {"vip": True, "n": None}}},
    "blank text with an attachment": {"transcript": [_entry(text="", attachments=[{"name": "scan.pdf"}])]},
    "urls in any case, without a TLD": {"conversation": {"id": "c-1", "url": "HTTP://chat:8080/1"},
                                        "callback": {"url": "HTTPS://bots.example/cb"}},
    "an attachment name with an invisible character beside visible ones":
        {"transcript": [_entry(attachments=[{"name": "\u200bscan.pdf"}])]},
    "ids with invisible characters beside visible ones": {"customer": {"id": "\u200bsam\u200d"},
                                                          "conversation": {"id": "\ufeffc-1"}},
}


@pytest.mark.parametrize("overrides", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_packet_the_server_accepts_the_document_accepts(client, app, overrides):
    from tests.factories import minimal_packet

    packet = minimal_packet(**overrides)
    answer = _posted(client, packet)
    assert answer.status_code in (201, 202), answer.get_json()
    assert document_errors(app, packet) is None


def test_the_examples_are_packets_the_document_accepts(app):
    from pathlib import Path

    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.json"))
    assert examples
    for example in examples:
        assert document_errors(app, json.loads(example.read_text(encoding="utf-8"))) is None, example.name


def test_messages_that_say_nothing_are_refused_by_the_document_too(client, app):
    from urllib.parse import urlsplit

    from tests.factories import minimal_packet

    path = urlsplit(_posted(client, minimal_packet()).headers["Location"]).path + "/messages"
    blank = {"messages": [_entry(text="\u200b")]}
    assert _posted(client, blank, path=path).status_code == 422
    assert document_errors(app, blank, path=path) is not None
    attached = {"messages": [_entry(text="", attachments=[{"name": "scan.pdf"}])]}
    assert _posted(client, attached, path=path).status_code in (201, 202)
    assert document_errors(app, attached, path=path) is None


@pytest.mark.parametrize("key, status", [
    ("", 400), (" ", 400), ("two words", 400), ("clé", 400), ("\t", 400), ("k" * 201, 400),
    ("k" * 200, 201), ("order-42:retry~1", 201), ("a1,a1", 400)])
def test_the_idempotency_key_is_described_as_it_is_checked(client, app, key, status):
    from connector.idempotency import IDEMPOTENCY_KEY
    from tests.factories import minimal_packet

    packet = minimal_packet()
    assert _posted(client, packet, headers={"Idempotency-Key": key}).status_code == status
    assert (document_errors(app, packet, headers={"Idempotency-Key": key}) is None) == (status == 201)
    document = client.get("/openapi.json").get_json()
    assert document["components"]["parameters"]["IdempotencyKey"]["schema"]["pattern"] == IDEMPOTENCY_KEY.pattern


def test_urls_are_uris_and_nothing_is_described_with_a_format_openapi_does_not_know(client):
    # "url" is apispec's name; OpenAPI's formats and JSON Schema's are what validators and generators know.
    known = {"date-time", "email", "uri", "int32", "int64", "float", "double", "byte", "binary", "password", "date"}
    text = client.get("/openapi.json").get_data(as_text=True)
    assert set(re.findall(r'"format":\s*"([^"]+)"', text)) <= known
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert schemas["Callback"]["properties"]["url"]["format"] == "uri"


def test_a_plain_http_callback_is_in_the_document_when_the_settings_allow_it(make_app):
    from tests.factories import minimal_packet

    packet = minimal_packet(callback={"url": "http://bots.example/cb"})
    assert document_errors(make_app(), packet) is not None
    allowing = make_app(callback_allow_private=True)
    assert _posted(allowing.test_client(), packet).status_code in (201, 202)
    assert document_errors(allowing, packet) is None


def test_an_answers_null_object_is_null_alone_not_any_object(client):
    # A bot developer's review: apispec's `{"type": "object", "nullable": true}` beside a nested
    # answer field takes any object in 3.0 — a callback's `ticket: {"ticket_id": 5}` passed.
    from openapi_schema_validator import OAS30Validator

    document = client.get("/openapi.json").get_json()
    loose = []

    def walk(node, where):
        if isinstance(node, dict):
            if {"type": "object", "nullable": True} in node.get("anyOf", []):  # a branch beside a $ref
                loose.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                walk(value, f"{where}.{n}")

    walk(document, "")
    assert loose == []

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
            return {key: inline(value) for key, value in node.items()}
        return [inline(value) for value in node] if isinstance(node, list) else node

    status = OAS30Validator(inline(document["components"]["schemas"]["HandoffStatus"]))
    body = {"type": "handoff.status", "handoff_id": "hnd_1", "conversation_id": "c", "state": "assigned",
            "at": "2026-12-07T12:00:00Z", "ticket": None, "agent": None, "estimated_wait_seconds": None,
            "message": None, "tickets": []}
    assert not list(status.iter_errors(body))
    assert list(status.iter_errors({**body, "ticket": {"ticket_id": 5}}))
    assert list(status.iter_errors({**body, "agent": {"who": ["x"]}}))
