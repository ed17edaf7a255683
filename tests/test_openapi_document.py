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


def test_document_is_served_the_same_each_time(client):
    assert client.get("/openapi.json").get_data() == client.get("/openapi.json").get_data()
