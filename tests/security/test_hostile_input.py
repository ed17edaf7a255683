"""A hostile customer types into the bot: whatever they write must land at every vendor as text —
never markup in Zendesk, never a mention or a disguised link in Slack, never SOQL, never a template
— and oversized or over-nested input is refused with a problem naming the limit."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, auth
from tests.factories import full_packet, minimal_packet

MARKUP = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>")
SLACK_TRICKS = ("<!channel>", "<!here>", "<@U123>", "<https://evil.example|bank>", "<!subteam^S0ALL>")
TEMPLATES = ("{{ 7*7 }}", "{% for x in range(3) %}X{% endfor %}", "${7*7}", "{{ config }}")
# Quoting tricks that are still valid URLs: they must stay inside the attribute they are put in.
SLIPPERY_URL = 'https://files.example/a"onmouseover="alert(1)'


def preview(client, packet: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/preview", data=json.dumps(packet), headers=auth(ADMIN_TOKEN),
                           content_type="application/json")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (*strings(key), *strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return [value] if isinstance(value, str) else []


def hostile_packet() -> dict[str, Any]:
    packet = full_packet()
    everything = " ".join((*TEMPLATES, *MARKUP, *SLACK_TRICKS))  # the subject starts with a template
    packet["customer"]["name"] = f"{MARKUP[0]} {TEMPLATES[0]}"
    packet["intent"]["stated_problem"] = everything
    packet["escalation"]["detail"] = everything
    packet["collected_data"] = {"note": everything, SLACK_TRICKS[0]: TEMPLATES[1]}
    packet["transcript"].append({"at": "2026-11-20T09:18:00Z", "role": "customer", "text": everything,
                                 "attachments": [{"url": SLIPPERY_URL, "name": MARKUP[2]}]})
    return packet


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def test_zendesk_html_body_holds_only_our_own_markup(client):
    html = preview(client, hostile_packet())["vendors"]["zendesk"]["payload"]["ticket"]["comment"]["html_body"]
    parser = _Tags()
    parser.feed(html)
    # Only the brief template's own tags; no event handler; every link is http(s) and whole.
    allowed = {"p", "strong", "em", "br", "h3", "ul", "li", "a", "table", "tr", "th", "td", "code", "small", "hr"}
    assert {tag for tag, _ in parser.tags} <= allowed
    for tag, attrs in parser.tags:
        assert not [name for name, _ in attrs if name.startswith("on")], (tag, attrs)
        if tag == "a":
            assert dict(attrs)["href"].startswith(("https://", "http://"))
    assert [dict(a)["href"] for t, a in parser.tags if t == "a" and "files.example" in dict(a)["href"]] == [
        SLIPPERY_URL]  # the quote stayed inside href (escaped), it did not open a new attribute
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("path", [
    "conversation.url", "transcript.0.attachments.0.url", "attempted_solutions.0.url", "history.0.ticket.url",
    "callback.url",
])
@pytest.mark.parametrize("url", ["javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,<script>x</script>",
                                 "vbscript:msgbox(1)"])
def test_script_urls_are_refused_where_a_link_is_expected(client, path, url):
    packet = full_packet(callback={"url": "https://bot.example/cb"})
    packet["transcript"][0]["attachments"] = [{"url": "https://files.example/a.png"}]
    node, *keys, last = path.split(".")
    target = packet[node]
    for key in keys:
        target = target[int(key)] if key.isdigit() else target[key]
    target[last] = url
    response = client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")
    assert response.status_code == 422
    assert path in response.get_json()["errors"]


def test_slack_gets_no_mention_and_no_disguised_link(client):
    packet = hostile_packet()
    packet["conversation"]["url"] = "https://bots.example/c/1>|<!channel>"
    payload = preview(client, packet)["vendors"]["slack"]["payload"]
    for text in strings(payload):
        for trick in (*SLACK_TRICKS, "<!"):
            assert trick not in text, (trick, text)
    assert any("&lt;!channel&gt;" in text for text in strings(payload))  # shown, not acted on


@pytest.mark.parametrize(("customer", "literal"), [
    ({"email": "o'brien@example.com"}, r"Email = 'o\'brien@example.com'"),
    ({"phone": "555' OR Name != '"}, r"Phone = '555\' OR Name != \''"),
    ({"phone": "1\\' OR '1'='1"}, r"Phone = '1\\\' OR \'1\'=\'1'"),
])
def test_salesforce_lookups_quote_what_the_customer_typed(client, customer, literal):
    packet = full_packet()
    packet["customer"] = {"name": "Pat Quote", **customer}
    query = preview(client, packet)["vendors"]["salesforce"]["payload"]["contact"]["query"]
    assert query == f"SELECT Id FROM Contact WHERE {literal} ORDER BY CreatedDate ASC LIMIT 1"


def test_template_syntax_stays_literal_everywhere(client):
    body = preview(client, hostile_packet())
    texts = {"subject": body["brief"]["subject"], "brief": body["brief"]["text"],
             "customer message": body["customer_message"]["text"]}
    texts |= {name: json.dumps(vendor["payload"], ensure_ascii=False) for name, vendor in body["vendors"].items()}
    for name, text in texts.items():
        assert "XXX" not in text and "<Config" not in text, name  # nothing was evaluated
        assert "{{ 7*7 }}" in text or "{{ 7*7 }}".replace("{", "&#123;") in text, name
    assert "{% for x in range(3) %}X{% endfor %}" in texts["customer message"]


def post_raw(client, raw: bytes):
    return client.post("/v1/handoffs", data=raw, headers=auth(), content_type="application/json")


def assert_problem(response, status: int, *named: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    text = json.dumps(problem)
    for name in named:
        assert name in text, (name, problem)
    return problem


def test_a_body_over_the_limit_is_413_naming_it(make_app):
    client = make_app(max_body_bytes=10_000).test_client()
    packet = minimal_packet()
    packet["transcript"][0]["text"] = "x" * 10_001
    assert_problem(post_raw(client, json.dumps(packet).encode()), 413, "CONNECTOR_MAX_BODY_BYTES", "10000")


@pytest.mark.parametrize(("depth", "status"), [(33, 422), (900, 422), (1000, 400), (100_000, 400)])
def test_json_nested_too_deep_is_refused_naming_the_limit(client, depth, status):
    # 100k brackets are 200 kB — under the body limit — and blow the JSON parser's stack; that is
    # caught as a malformed body (400, pinned by test_packet_validation.py), still naming the limit.
    raw = b'{"bot": {"id": "support-bot"}, "metadata": ' + b"[" * depth + b"]" * depth + b"}"
    assert_problem(post_raw(client, raw), status, "CONNECTOR_MAX_JSON_DEPTH", "32")


def test_transcript_entries_and_entry_length_over_the_limits_are_422(make_app):
    client = make_app(max_transcript_entries=3, max_entry_chars=100).test_client()
    packet = minimal_packet()
    packet["transcript"] = packet["transcript"] * 4
    problem = assert_problem(post_raw(client, json.dumps(packet).encode()), 422, "CONNECTOR_MAX_TRANSCRIPT_ENTRIES")
    assert list(problem["errors"]) == ["transcript"]
    packet = minimal_packet()
    packet["transcript"][0]["text"] = "x" * 101
    problem = assert_problem(post_raw(client, json.dumps(packet).encode()), 422, "CONNECTOR_MAX_ENTRY_CHARS", "100")
    assert list(problem["errors"]) == ["transcript.0.text"]


@pytest.mark.parametrize(("path", "value", "limit"), [
    ("customer.name", "n" * 501, "500"),
    ("bot.id", "b" * 201, "200"),
    ("conversation.url", "https://x.example/" + "p" * 2000, "2000"),
    ("intent.summary", "s" * 20_001, "20000"),
    ("customer.attributes.note", "a" * 20_001, "20000"),
    ("escalation.keywords", ["k"] * 51, "50"),
])
def test_field_lengths_are_refused_naming_the_limit(client, path, value, limit):
    packet = full_packet()
    node, *keys, last = path.split(".")
    target = packet[node]
    for key in keys:
        target = target[key]
    target[last] = value
    problem = assert_problem(post_raw(client, json.dumps(packet).encode()), 422, limit)
    assert path in problem["errors"], problem["errors"]


# Found by fuzzing: `"\ud800"` is valid JSON but not text (500 when encoded), and PostgreSQL text
# refuses NUL (500 on insert or compare). Both are refused up front, on both databases.
@pytest.mark.parametrize(("replace", "path"), [
    ('"conv-2001"', "conversation.id"),
    ('"Can I talk to a person?"', "transcript.0.text"),
    ('"email"', "customer.X"),  # a key
])
@pytest.mark.parametrize("bad", [r"\u0000", r"\ud800", r"\udfff"])
def test_nul_and_lone_surrogates_are_422_on_every_database(any_db_app, replace, path, bad):
    quoted = f'"{bad}x"' if replace != '"email"' else f'"{bad}X"'
    raw = json.dumps(minimal_packet()).replace(replace, quoted).encode()
    problem = assert_problem(post_raw(any_db_app.test_client(), raw), 422)
    shown = path.replace("X", (bad if bad != r"\u0000" else "\x00") + "X")
    assert list(problem["errors"]) == [shown]


def test_past_twenty_unstorable_texts_the_first_twenty_are_named_in_order_and_the_cut_is_said(client):
    # Sorted as strings, entries 0-4 and 10-24 were named, 5-9 left out, and nothing said so (a review).
    packet = minimal_packet()
    packet["transcript"] = [{"at": f"2026-11-20T10:00:{n:02}Z", "role": "customer", "text": "x\x00"} for n in range(25)]
    problem = assert_problem(post_raw(client, json.dumps(packet).encode()), 422)
    assert list(problem["errors"]) == [f"transcript.{n}.text" for n in range(20)]
    assert problem["detail"].endswith(" The first 20 of 25 are named.")
    for key in ("\u00b2", "9" * 5000):  # digits `int` cannot read, as keys: a 500 (a review)
        packet = {**minimal_packet(), "collected_data": {key: "a\x00", "1": "b\x00"}}
        problem = assert_problem(post_raw(client, json.dumps(packet).encode()), 422)
        assert list(problem["errors"]) == ["collected_data.1", f"collected_data.{key}"]


# `{"email": "a", "email": "b"}` was read as its last value: a proxy or the bot's own logs may have
# read the first, so what was checked and what was stored could differ. Refused, each path named.
def test_a_key_given_twice_in_one_object_is_refused_naming_where(client):
    raw = json.dumps(minimal_packet()).replace('"conversation": {', '"conversation": {"id": "conv-other", ', 1)
    raw = raw.replace('"bot": {', '"bot": {"id": "other-bot", ', 1).encode()
    problem = assert_problem(post_raw(client, raw), 422, "twice")
    assert problem["errors"] == {"bot.id": ["given more than once in the same object"],
                                 "conversation.id": ["given more than once in the same object"]}
    assert client.get("/v1/handoffs?conversation_id=conv-other", headers=auth()).get_json()["items"] == []
    # Follow-up messages are read the same way.
    created = post_raw(client, json.dumps(minimal_packet()).encode())
    assert created.status_code in (201, 202), created.get_json()
    said = b'{"messages": [{"role": "customer", "text": "hi", "text": "bye", "timestamp": "2026-11-21T10:00:00Z"}]}'
    sent = client.post(f"/v1/handoffs/{created.get_json()['id']}/messages", data=said, headers=auth(),
                       content_type="application/json")
    assert assert_problem(sent, 422)["errors"] == {"messages.0.text": ["given more than once in the same object"]}


def test_nul_in_lookups_is_refused_on_every_database(any_db_app):
    client = any_db_app.test_client()
    assert client.get("/v1/handoffs/hnd_%00", headers=auth()).status_code == 404
    assert_problem(client.get("/v1/handoffs?conversation_id=a%00b", headers=auth()), 422, "conversation_id")
