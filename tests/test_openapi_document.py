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


def test_the_readme_tells_bots_every_problem_type_they_can_get():
    """Each `type` the API answers is in README's table, with what a bot should do about it."""
    import re
    from pathlib import Path

    from connector import errors

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^  \| `([a-z-]+)` \| \d{3} \|", readme, re.M))
    answered = {cls.type_slug for cls in vars(errors).values()
                if isinstance(cls, type) and issubclass(cls, errors.ApiProblem) and cls is not errors.ApiProblem}
    assert answered | {"internal-error"} == listed
