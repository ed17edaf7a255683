"""The agent brief: what an agent reads first, in order, with hostile text left inert."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape
from marshmallow import ValidationError
from sqlalchemy import select, update

from connector.brief import render_brief
from connector.models import Delivery, utcnow
from connector.previewing import preview_packet
from connector.schemas import PacketSchema
from tests.conftest import auth
from tests.factories import full_packet, minimal_packet


def test_full_brief_leads_with_why_then_who_then_what():
    brief = render_brief(full_packet(), "hnd_1")
    text = brief.text
    order = [text.index(heading) for heading in (
        "WHY A PERSON IS NEEDED", "CUSTOMER", "WHAT THEY WANT", "ALREADY TRIED", "WHAT THE BOT COLLECTED",
        "EARLIER CONTACTS", "TRANSCRIPT")]
    assert order == sorted(order)
    assert text.startswith("[HIGH] HANDOFF — Invoices stopped syncing to QuickBooks")
    assert "Mood: frustrated (-0.55), getting worse" in text
    assert "In their words: \"Invoices stopped syncing to QuickBooks; reconnecting did not help\"" in text
    assert "✗ QuickBooks reconnect guide — did not help" in text
    assert "error_code: 4012" in text
    assert "Don't ask again for: email, phone, customer id, account, error code, integration, since" in text
    assert "[zendesk #77120]" in text and "agent sam@acme.example" in text
    assert "[09:15:40] Customer: It says: 'OAuth token expired (code 4012)'" in text
    assert "📎 screenshot.png (image/png, 178.1 KB)" in text
    assert "TRANSCRIPT — 5 messages (3 from the customer), 2026-11-20 09:14 – 09:17 UTC, 3 min" in text


def test_minimal_brief_is_still_useful():
    text = render_brief(minimal_packet(), "hnd_2").text
    assert "The customer asked for a person" in text
    assert 'They wrote: "Can I talk to a person?"' in text
    assert "TRANSCRIPT — 1 message (1 from the customer)" in text


def test_one_message_is_dated_as_a_moment_not_a_span_of_no_time():
    brief = render_brief(minimal_packet(), "hnd_2")
    assert "TRANSCRIPT — 1 message (1 from the customer), 2026-11-20 10:00 UTC\n" in brief.text
    assert "0 s" not in brief.text and "10:00 – 10:00" not in brief.html


def test_a_customer_known_by_email_alone_is_not_shown_twice_but_a_named_one_has_the_email_line():
    from adapters.slack_blocks import alert

    text = render_brief(minimal_packet(), "hnd_2").text
    # Still given, only not repeated; with nothing collected, under the customer, not under what they want.
    assert "CUSTOMER\n  sam.lee@example.net\n  Don't ask again for: email\n\n" in text and "email: sam.lee" not in text
    customer = alert(minimal_packet(), "hnd_2", {}, [])[0]["blocks"][1]["text"]["text"]
    assert customer == "*Customer:* sam.lee@example.net"
    named = render_brief(full_packet(), "hnd_1")
    assert "Dana Whitfield · ENTERPRISE\n  email: dana.whitfield@example.com\n" in named.text
    assert "<br>email: dana.whitfield@example.com" in named.html


@pytest.mark.parametrize("nothing", ["", "   ", "\u200b\u200b", "\u3164", "\u202e"])
def test_a_name_that_says_nothing_is_no_name_the_email_heads_the_customer(nothing):
    """The contract leaves customer.name free: one made of characters nobody sees headed the brief
    and the Slack alert as nothing ("*Customer:* ​"), and named a Zendesk requester ""."""
    from adapters.slack_blocks import alert, follow_up
    from adapters.zendesk import _requester
    from connector.text_rules import as_identity

    packet = minimal_packet(customer={"name": nothing, "email": "sam.lee@example.net", "phone": "\u200b"})
    text = render_brief(packet, "hnd_2").text
    assert "CUSTOMER\n  sam.lee@example.net\n" in text and "email: sam.lee" not in text
    assert alert(packet, "hnd_2", {}, [])[0]["blocks"][1]["text"]["text"] == "*Customer:* sam.lee@example.net"
    assert follow_up(packet, packet["transcript"])["text"].startswith("💬 sam.lee@example.net wrote again")
    assert _requester(as_identity(packet["customer"])) == {"name": "sam.lee@example.net", "email": "sam.lee@example.net"}
    assert as_identity(packet["customer"]) == {"email": "sam.lee@example.net"}  # nor a phone of nothing


def test_the_conversation_s_language_is_with_the_customer():
    brief = render_brief(full_packet(), "hnd_1")
    assert "  account: ACME-88213\n  waiting on: web chat\n  language: en\n" in brief.text
    assert "language: <strong>en</strong>" in brief.html


def _long_conversation() -> dict[str, Any]:
    packet = full_packet()
    packet["transcript"] += [{"at": f"2026-11-20T09:{18 + i}:00Z", "role": role, "text": text} for i, (role, text) in
                             enumerate([("bot", "Let me check."), ("customer", "ok"), ("bot", "Still checking."),
                                        ("customer", "Our auditor arrives at 3pm, please hurry.\nThanks")])]
    return packet


def test_where_a_long_conversation_got_to_is_shown_near_the_top():
    brief = render_brief(_long_conversation(), "hnd_5")
    latest = '  Latest from them (2026-11-20 09:21 UTC): "Our auditor arrives at 3pm, please hurry. Thanks"\n'
    assert latest in brief.text and brief.text.index(latest) < brief.text.index("ALREADY TRIED")
    assert "Latest from them (2026-11-20 09:21 UTC): <em>“Our auditor arrives at 3pm, please hurry. Thanks”</em>" \
        in brief.html
    short = render_brief(full_packet(), "hnd_1")  # five messages: the last is just below
    assert "Latest from them" not in short.text and "Latest from them" in short.summary_text("see below")
    assert "Latest from them" not in render_brief(minimal_packet(), "hnd_2").summary_text("see below")  # their only words


def test_the_slack_alert_quotes_the_latest_words_too():
    from adapters.slack_blocks import alert

    blocks = alert(_long_conversation(), "hnd_5", {}, [])[0]["blocks"]
    intent = next(b for b in blocks if b.get("block_id") == "intent")["text"]["text"]
    assert "*Latest from them (2026-11-20 09:21 UTC):*\n>Our auditor arrives at 3pm, please hurry.\n>Thanks" in intent
    only = next(b for b in alert(minimal_packet(), "hnd_2", {}, [])[0]["blocks"] if b.get("block_id") == "intent")
    assert "Latest" not in only["text"]["text"]


@pytest.mark.parametrize(("text", "html"), [
    ("Our guide: https://help.acme.example/qb.", 'Our guide: <a href="https://help.acme.example/qb">'
                                                   'https://help.acme.example/qb</a>.'),
    ("See (https://en.wikipedia.org/wiki/OAuth_(protocol)) ok",
     'See (<a href="https://en.wikipedia.org/wiki/OAuth_(protocol)">https://en.wikipedia.org/wiki/OAuth_(protocol)</a>) ok'),
    ('"https://x.example/a?b=1&c=<2>"', '&#34;<a href="https://x.example/a?b=1&amp;c=">https://x.example/a?b=1&amp;c=</a>'
                                         '&lt;2&gt;&#34;'),
    ("javascript:alert(1) and ftp://files.example/x", "javascript:alert(1) and ftp://files.example/x"),
    ("line one\nhttps://a.example/x", 'line one<br>\n&emsp;&emsp;<a href="https://a.example/x">https://a.example/x</a>'),
    ("<https://a.example/x|click me>", '&lt;<a href="https://a.example/x">https://a.example/x</a>|click me&gt;'),
    ("https://maps.example/x?m=red|40.7", '<a href="https://maps.example/x?m=red|40.7">https://maps.example/x?m=red|40.7</a>'),
    ("The page “https://shop.acme.example/checkout” shows 4012",
     'The page “<a href="https://shop.acme.example/checkout">https://shop.acme.example/checkout</a>” shows 4012'),
    ("詳細はhttps://shop.acme.example/orders/5521をご覧ください。スクショ（https://f.acme.example/s/1.png）",
     '詳細は<a href="https://shop.acme.example/orders/5521">https://shop.acme.example/orders/5521</a>をご覧ください。'
     'スクショ（<a href="https://f.acme.example/s/1.png">https://f.acme.example/s/1.png</a>）'),
    ("«https://a.example/x» and https://a.example/%E6%97%A5’s",
     '«<a href="https://a.example/x">https://a.example/x</a>» and '
     '<a href="https://a.example/%E6%97%A5">https://a.example/%E6%97%A5</a>’s'),
    # …but a path in a script written with spaces is the address's (a review of the mend: a German
    # shop's domain linked to `https://b`).
    ("Our shop: https://bücher.example/bestellung/55 and https://ru.example/привет/ok",
     'Our shop: <a href="https://bücher.example/bestellung/55">https://bücher.example/bestellung/55</a> and '
     '<a href="https://ru.example/привет/ok">https://ru.example/привет/ok</a>'),
    ("https://vi.wikipedia.org/wiki/Tiếng_Việt, https://x.org/wiki/भारत and https://gr.example/βοήθεια\u037e ok",
     '<a href="https://vi.wikipedia.org/wiki/Tiếng_Việt">https://vi.wikipedia.org/wiki/Tiếng_Việt</a>, '
     '<a href="https://x.org/wiki/भारत">https://x.org/wiki/भारत</a> and '
     '<a href="https://gr.example/βοήθεια">https://gr.example/βοήθεια</a>\u037e ok'),
    ("https://th.example/okขอบคุณ https://をご覧", '<a href="https://th.example/ok">https://th.example/ok</a>ขอบคุณ '
                                                'https://をご覧'),
    ("<https://maps.example/x?m=red|40.7 ok", '&lt;<a href="https://maps.example/x?m=red|40.7">'
                                              'https://maps.example/x?m=red|40.7</a> ok'),  # no label's >
])
def test_addresses_in_the_transcript_are_links_in_html_and_everything_else_stays_text(text, html):
    packet = minimal_packet()
    packet["transcript"][0]["text"] = text
    assert f"<strong>Customer</strong>: {html}</p>" in render_brief(packet, "hnd_6").html


def test_summary_leaves_out_only_the_transcript():
    brief = render_brief(full_packet(), "hnd_3")
    assert "[09:14:02]" not in brief.summary_text("see below") and "[09:14:02]" in brief.text
    assert "WHAT THE BOT COLLECTED" in brief.summary_text("see below")
    assert len(brief.transcript_lines) == 5
    assert brief.transcript_lines[2].endswith("<https://files.acme.example/u/88213/screenshot.png>")


def test_hostile_text_is_inert_in_html_and_templates_stay_text():
    packet = minimal_packet()
    packet["transcript"][0]["text"] = '<script>alert(1)</script><img src=x onerror=alert(2)> {{ 7*7 }} {% raw %}'
    packet["customer"]["name"] = "<b>Mallory</b>"
    brief = render_brief(packet, "hnd_4")
    assert "<script>" not in brief.html and "&lt;script&gt;" in brief.html
    assert "<img" not in brief.html and "<b>Mallory" not in brief.html
    assert "{{ 7*7 }}" in brief.text and "49" not in brief.text
    assert "{% raw %}" in brief.text


def test_the_html_brief_keeps_the_customers_line_breaks_and_escapes_around_them():
    # In HTML a bare newline is a space: numbered steps and pasted errors ran into one line.
    packet = full_packet()
    packet["transcript"][0]["text"] = "Steps I took:\r\n1. <b>Disconnected</b>\n2. Reconnected"
    packet["intent"] = {**packet["intent"], "stated_problem": "Sync broke.\nError: 401"}
    html = render_brief(packet, "hnd_1").html
    assert ("Steps I took:<br>\n&emsp;&emsp;1. &lt;b&gt;Disconnected&lt;/b&gt;<br>\n&emsp;&emsp;2. Reconnected"
            in html)  # a message's own lines indented
    assert "Sync broke.<br>\nError: 401" in html


# Texts made mostly of what the shortcuts look for: every kind of line break, runs of spaces, markup.
_AWKWARD = st.lists(st.sampled_from(["a", " ", "  ", "\n", "\r", "\r\n", "\u2028", "\x0b", "\x85", "<", "&", "é"])
                    | st.characters(), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(_AWKWARD, st.booleans())
def test_the_shortcuts_for_one_line_values_write_what_the_whole_path_writes(text, continued):
    # Most values hold no line break: the HTML brief escapes them at once and the text brief writes
    # them as they are, skipping the work that breaks and indents lines (a benchmark round's saving).
    from connector import brief as briefs

    html = briefs._line_breaks(text, continued)
    assert isinstance(html, Markup) and html == briefs._broken(text, continued)
    text_brief = EvalContext(briefs._env)  # a template name of None: the text brief's, not autoescaped
    assert briefs._finalize(text_brief, text) == briefs._indented(briefs._controls_named(text))


def test_a_line_typed_as_another_message_cannot_pass_for_one():
    # "refund pls\n[10:00:05] Bot: Identity verified" read as a line of the bot's in the text brief,
    # Salesforce's comments and Zendesk's attachment, and (bold) in Slack's thread and alert.
    from adapters import slack_blocks

    forged = "refund pls\n[10:00:05] Bot: Identity verified. Refund approved"
    packet = full_packet(transcript=[{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": forged}], intent={})
    brief = render_brief(packet, "hnd_1")
    assert brief.transcript_lines[0].endswith("refund pls\n    [10:00:05] Bot: Identity verified. Refund approved")
    assert "\n[10:00:05]" not in brief.text
    assert "<br>\n&emsp;&emsp;[10:00:05] Bot:" in brief.html
    thread = json.dumps(slack_blocks.transcript({**packet, "transcript": [
        {"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "hi\n*[10:00:05] Bot:* verified"}]}, "hnd_1"))
    assert "hi\\n\\u2003\\u2003*[10:00:05] Bot:* verified" in thread
    alert, _ = slack_blocks.alert({**packet, "transcript": [
        {"at": "2026-11-20T09:14:02Z", "role": "customer", "text": "hi\n*Bot's summary:* approve it"}]},
        "hnd_1", {"priority": "normal"}, [])
    assert "\\n>*Bot's summary:* approve it" in json.dumps(alert)


def test_multi_line_collected_data_and_history_keep_their_lines_in_the_html_brief():
    packet = full_packet()
    packet["collected_data"]["error_message"] = "Traceback (most recent call last):\n  File \"sync.py\"\nOAuthError: 4012"
    packet["history"][0]["summary"] = "Called twice.\nPromised a refund."
    html = render_brief(packet, "hnd_1").html
    # The indentation keeps its width (HTML collapses a run of spaces to one).
    assert "Traceback (most recent call last):<br>\n&nbsp; File &#34;sync.py&#34;<br>\nOAuthError: 4012" in html
    assert "Called twice.<br>\nPromised a refund." in html


def test_every_line_break_the_text_brief_keeps_the_html_keeps_too():
    # A lone \r (old Mac, some widgets) and U+2028 broke the text brief's lines and not the HTML's.
    packet = full_packet()
    packet["transcript"][0]["text"] = "first\rsecond\u2028third\r\n    indented"
    html = render_brief(packet, "hnd_1").html
    assert ("first<br>\n&emsp;&emsp;second<br>\n&emsp;&emsp;third<br>\n&emsp;&emsp;&nbsp;&nbsp;&nbsp; indented"
            in html)


def test_a_transcript_over_midnight_names_both_days_in_its_heading():
    packet = full_packet()
    packet["transcript"][0]["at"] = "2026-11-19T23:50:00Z"
    for entry in packet["transcript"][1:]:
        entry["at"] = "2026-11-20T00:10:00Z"
    heading = next(line for line in render_brief(packet, "hnd_1").text.splitlines() if line.startswith("TRANSCRIPT"))
    assert "2026-11-19 23:50 – 2026-11-20 00:10 UTC, 20 min" in heading, heading


def test_multi_day_transcripts_show_dates():
    packet = minimal_packet()
    packet["transcript"].append({"at": "2026-11-21T08:00:00+01:00", "role": "customer", "text": "Next day"})
    assert "[2026-11-21 07:00:00] Customer: Next day" in render_brief(packet, "hnd_5").text


def _without_one_optional_key(node: Any, path: tuple = ()) -> Iterator[tuple[str, dict]]:
    """The full packet with one key left out, for every key below the top level whose absence the
    schema accepts: what a bot may leave out, every template must render without."""
    if isinstance(node, dict):
        for key, value in node.items():
            if path:
                packet = copy.deepcopy(full_packet())
                parent = packet
                for step in path:
                    parent = parent[step]
                del parent[key]
                try:
                    PacketSchema().load(packet)
                except ValidationError:
                    pass
                else:
                    yield ".".join(map(str, (*path, key))), packet
            yield from _without_one_optional_key(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _without_one_optional_key(value, (*path, index))


@pytest.mark.parametrize(("left_out", "packet"), list(_without_one_optional_key(full_packet())),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_every_vendor_renders_a_packet_without_any_one_optional_field(make_app, left_out, packet):
    # A history entry without `ticket.id` failed the brief (its templates' StrictUndefined), and
    # with it every Zendesk and Salesforce delivery of the handoff, retried until dead.
    services = make_app().extensions["connector"]
    preview = preview_packet(services, json.dumps(packet).encode())
    assert set(preview["vendors"]) == {"zendesk", "salesforce", "slack"}
    brief = render_brief(packet, "hnd_1")
    assert brief.text and brief.html


def test_the_urgency_shown_is_routings_with_the_bots_beside_it_when_they_differ(make_app):
    # A keyword rule made the ticket urgent while the brief said "Urgency: low" and Slack "⚪ Low".
    packet = minimal_packet()
    packet["escalation"] = {"reason": "regulatory", "urgency": "low", "keywords": ["data breach"]}
    brief = render_brief(packet, "hnd_X", assignment={"priority": "urgent"})
    assert brief.text.startswith("[URGENT] HANDOFF")
    assert "Urgency: urgent (the bot said low)" in brief.text
    assert "Urgency: <strong>urgent</strong> (the bot said low)" in brief.html
    same = render_brief(packet, "hnd_X", assignment={"priority": "low"})
    assert "Urgency: low\n" in same.text and "the bot said" not in same.text

    services = make_app().extensions["connector"]
    packet["customer"]["segment"] = "standard"
    shown = preview_packet(services, json.dumps(packet).encode())
    decided = shown["assignment"]["priority"]
    assert decided == "urgent"  # the shipped regulatory rule: the contradiction this test is about
    zendesk = shown["vendors"]["zendesk"]["payload"]["ticket"]
    slack = shown["vendors"]["slack"]["payload"]["message"]
    assert zendesk["priority"] == decided
    assert f"Urgency: <strong>{decided}</strong>" in zendesk["comment"]["html_body"]
    assert slack["blocks"][0]["text"]["text"].startswith({"urgent": "🔴 Urgent", "high": "🟠 High",
                                                          "normal": "🔵 Normal", "low": "⚪ Low"}[decided])


def test_bidirectional_controls_are_shown_by_name_not_obeyed():
    # "ORD-\u202e1234\u202c" displayed as "ORD-4321" and "\u202e00.05$" as "$50.00" in every vendor.
    from adapters import slack_blocks

    packet = full_packet(collected_data={"order_number": "ORD-\u202e1234\u202c", "refund": "\u202e00.05$"})
    packet["intent"]["stated_problem"] = "Refund \u2067order\u2069 please"
    brief = render_brief(packet, "hnd_1")
    for text in (brief.text, brief.html, brief.subject):
        assert not any(c in text for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert "ORD-[U+202E]1234[U+202C]" in brief.text and "[U+202E]00.05$" in brief.html
    assert brief.subject == "Refund [U+2067]order[U+2069] please"
    # A field's line breaks and links, HTML the brief's filters wrote, stay HTML beside a control:
    # they were escaped a second time, and agents read "&lt;br&gt;" and "&lt;a href=…".
    packet["transcript"][0]["text"] = "\u2067سلام\u2069 R&D <b>\nsee https://help.acme.example/a?x=1&y=2"
    html = render_brief(packet, "hnd_1").html
    assert "[U+2067]سلام[U+2069] R&amp;D &lt;b&gt;<br>" in html
    assert '<a href="https://help.acme.example/a?x=1&amp;y=2">' in html and "&amp;lt;" not in html
    alert, _ = slack_blocks.alert(packet, "hnd_1", {"priority": "normal"}, [])
    rendered = json.dumps(alert, ensure_ascii=False) + json.dumps(slack_blocks.details(packet, "hnd_1"), ensure_ascii=False)
    assert "\u202e" not in rendered and "ORD-[U+202E]1234[U+202C]" in rendered


def test_an_earlier_contact_has_one_day_in_every_rendering():
    # Sliced as written, 2026-10-01T22:00-05:00 was the 1st in Slack's alert, the 2nd in the brief,
    # and the raw text with its offset in Slack's thread.
    from adapters import slack_blocks

    packet = full_packet(history=[{"at": "2026-10-01T22:00:00-05:00", "channel": "email", "summary": "asked"}])
    assert "2026-10-02" in render_brief(packet, "hnd_1").text
    alert, _ = slack_blocks.alert(packet, "hnd_1", {"priority": "normal"}, [])
    shown = json.dumps(alert) + json.dumps(slack_blocks.details(packet, "hnd_1"))
    assert "2026-10-02 email" in shown and "2026-10-01" not in shown


def test_a_one_message_handoff_with_nothing_said_reads_cleanly():
    # "1 messages" in Slack, and an empty "What they want" heading over an attachment-only message.
    from adapters import slack_blocks

    packet = minimal_packet()
    packet["transcript"] = [{"at": "2026-11-20T09:14:02Z", "role": "customer", "text": " ",
                             "attachments": [{"name": "photo.jpg"}]}]
    packet.pop("intent", None)
    assert "What they want" not in render_brief(packet, "hnd_1").html
    alert, _ = slack_blocks.alert(packet, "hnd_1", {"priority": "normal"}, [])
    shown = json.dumps(alert) + json.dumps(slack_blocks.transcript(packet, "hnd_1"))
    assert "1 message in the thread" in shown and "1 message," in shown and "1 messages" not in shown


def test_the_brief_names_the_bots_conversation():
    # The receipt said "conversation" was delivered; its id, what the bot's own logs know it by, was not in the brief.
    brief = render_brief(full_packet(), "hnd_1")
    assert "conversation conv-1029" in brief.text and "conversation conv-1029" in brief.html


def test_a_greeting_is_not_taken_for_the_problem():
    # With no stated problem, "hi" became the ticket's subject and the customer heard "I've passed on: hi."
    from connector.brief import subject_for

    said = ["hi", "agent", "My invoice from March was charged twice", "hello?"]
    packet = minimal_packet()
    packet["transcript"] = [{"at": f"2026-11-20T09:14:0{n}Z", "role": "customer", "text": text}
                            for n, text in enumerate(said)]
    assert subject_for(packet) == "My invoice from March was charged twice"
    packet["transcript"] = packet["transcript"][:2]  # nothing longer: the longest of what was said
    assert subject_for(packet) == "agent"


@pytest.mark.parametrize(("said", "problem"), [
    (["こんにちは", "注文番号A-5521の商品がまだ届きません。", "早く" * 40], "注文番号A-5521の商品がまだ届きません。"),
    (["你好", "我的订单还没到", "快" * 60], "我的订单还没到"),
    (["สวัสดีครับ", "ฉันยังไม่ได้รับสินค้า", "ช่วย" * 30], "ฉันยังไม่ได้รับสินค้า"),
])
def test_a_greeting_is_not_taken_for_the_problem_in_scripts_written_without_spaces(said, problem):
    # Words were counted by spaces: each of these messages was one "word", so the longest (a rant)
    # made the subject, "They wrote" and the customer message, and the order number was lost.
    from connector.brief import subject_for

    packet = minimal_packet()
    packet["transcript"] = [{"at": f"2026-11-20T09:14:0{n}Z", "role": "customer", "text": text}
                            for n, text in enumerate(said)]
    assert subject_for(packet) == problem


def test_latest_words_of_nothing_visible_are_not_the_latest_words():
    packet = _long_conversation()
    packet["transcript"].append({"at": "2026-11-20T09:39:00Z", "role": "customer", "text": "\u200b"})
    assert 'Latest from them (2026-11-20 09:21 UTC): "Our auditor' in render_brief(packet, "hnd_7").text


def test_the_customer_sees_joiners_their_words_need():
    from connector.text_rules import without_invisible

    family, persian = "👨\u200d👩\u200d👧", "می\u200cخواهم"
    assert without_invisible(f"{family} {persian}\u200b\u202e") == f"{family} {persian}"


def test_a_line_typed_in_any_free_text_field_cannot_start_a_section_of_the_text_brief():
    # Only the transcript's lines were indented: a stated problem (or an escalation detail, a
    # collected value, a history summary…) holding "ALREADY TRIED — don't offer these again" put a
    # section of the customer's own at the margin of Salesforce's description and Zendesk's file.
    forged = "charged twice.\r\n\nALREADY TRIED — don't offer these again\u2028  ✗ Refund — customer declined"
    packet = full_packet(
        intent={**full_packet()["intent"], "stated_problem": forged},
        escalation={**full_packet()["escalation"], "detail": "see below\nWHAT THE BOT COLLECTED"},
        collected_data={"note": "a\nCUSTOMER\nVIP"},
        history=[{"at": "2026-10-01T10:00:00Z", "channel": "email", "summary": "first\nEARLIER CONTACTS"}])
    text = render_brief(packet, "hnd_1").text
    headings = [line for line in text.splitlines() if line and not line[0].isspace()]
    assert headings.count("ALREADY TRIED — don't offer these again") == 1  # the brief's own
    assert headings.count("WHAT THE BOT COLLECTED") == headings.count("CUSTOMER") == 1
    assert headings.count("EARLIER CONTACTS") == 1
    assert '  In their words: "charged twice.\n\n    ALREADY TRIED — don\'t offer these again\n      ✗ Refund' in text


def test_the_text_brief_keeps_its_sections_apart_and_an_undated_contact_tidy():
    packet = full_packet(history=[{"channel": "email", "summary": "asked about invoices"}, {"summary": "a call"}])
    brief = render_brief(packet, "hnd_1")
    assert "  Urgency: high\n\nCUSTOMER\n" in brief.text  # ran into the next heading
    assert "\n  email — asked about invoices\n" in brief.text and "\n  (undated) — a call\n" in brief.text
    assert "<li>email — asked about invoices" in brief.html and " · email" not in brief.html


def test_fields_a_bot_adds_to_messages_contacts_and_attempts_reach_the_agent_everywhere():
    # The contract keeps a nested object's other fields; none of these appeared in any vendor's
    # brief, while each receipt said nothing was dropped — a translated conversation lost its translations.
    from adapters import slack_blocks

    packet = full_packet()
    packet["transcript"][0]["translation"] = "Nuestras facturas dejaron de sincronizarse"
    packet["history"] = [{"at": "2026-10-01T10:00:00Z", "channel": "email", "summary": "asked", "outcome": "resolved"}]
    packet["attempted_solutions"][0]["tried_at"] = "2026-11-20T09:15:44Z"
    packet["history"][0]["ticket"] = {"system": "zendesk", "id": "881", "status": "solved"}
    packet["transcript"][2]["attachments"][0]["caption"] = "the Integrations\npage"  # one line, under it
    brief = render_brief(packet, "hnd_1")
    slack = json.dumps([*slack_blocks.transcript(packet, "hnd_1"), *slack_blocks.details(packet, "hnd_1")],
                       ensure_ascii=False)
    for shown in ("translation: Nuestras facturas", "outcome: resolved", "tried_at: 2026-11-20T09:15:44Z",
                  "ticket.status: solved", "caption: the Integrations page"):
        assert shown in brief.text and shown in brief.html and shown in slack, shown
    assert brief.transcript_lines[0].endswith("\n    translation: Nuestras facturas dejaron de sincronizarse")


def test_an_attachments_long_field_reaches_the_agent_whole_on_its_line():
    # A review: cut at 500 characters in every target (the attached transcript too), the receipt
    # saying nothing was dropped — the end of a voice note's transcription is often the request.
    from adapters import slack_blocks

    packet = full_packet()
    said = "Voice note:\n" + " ".join(f"word{i}" for i in range(150)) + " please refund order A-5521"
    packet["transcript"][2]["attachments"][0]["transcription"] = said
    brief = render_brief(packet, "hnd_1")
    whole = "transcription: " + " ".join(said.split())
    slack = "".join(block["text"]["text"] for message in slack_blocks.transcript(packet, "hnd_1")
                    for block in message["blocks"] if block.get("type") == "section")
    assert whole in brief.text and whole in brief.html and whole in "\n".join(brief.transcript_lines)
    assert "please refund order A-5521" in slack and "word149 please" in slack


def test_the_offset_the_times_were_sent_with_is_given_beside_the_utc_times():
    # Every time is shown in UTC: sent at 10:00+09:00, "since this morning" read as 01:00. Labelled as
    # what it is: "local time" passed a bot server's zone off as the customer's clock.
    from adapters import slack_blocks

    packet = full_packet()
    for entry in packet["transcript"]:
        entry["at"] = entry["at"].replace("2026-11-20T09:", "2026-11-20T10:").replace("Z", "+09:00")
    brief = render_brief(packet, "hnd_1")
    shown = "times sent with offset: UTC+09:00 (their messages at 10:14–10:17 at that offset, Friday)"
    assert shown in brief.text and shown in brief.html
    assert "[01:14:02] Customer:" in brief.text  # the transcript stays in UTC
    assert shown in json.dumps(slack_blocks.details(packet, "hnd_1"), ensure_ascii=False)
    assert "offset" not in render_brief(full_packet(), "hnd_1").text  # UTC already: nothing to add
    # Go's zero time is in range in UTC, not at -05:00: it crashed every rendering, and the handoff
    # was retried until given up.
    packet["transcript"][0]["at"], packet["transcript"][-1]["at"] = "0001-01-01T00:30:00Z", "2026-11-20T09:17:10-05:00"
    assert "times sent with offset" not in render_brief(packet, "hnd_1").text
    assert slack_blocks.details(packet, "hnd_1")


def test_a_packet_that_says_nothing_of_what_the_customer_wants_has_no_empty_heading():
    # The text brief printed a bare "WHAT THEY WANT" (the HTML one left it out), then two blank lines.
    packet = {"bot": {"id": "b"}, "conversation": {"id": "c"}, "customer": {"email": "a@b.c"},
              "transcript": [{"at": "2026-11-20T10:00:00Z", "role": "bot", "text": "Let me get someone for you."}],
              "escalation": {"reason": "customer_request"}}
    text = render_brief(packet, "hnd_7").text
    assert "WHAT THEY WANT" not in text and "\n\n\n" not in text
    assert "\n\nWHAT THEY WANT\n" in render_brief(full_packet(), "hnd_8").text


@pytest.mark.parametrize("joiner", [" ", "\u200b", "\u00ad", "\u2060", "\ufeff"])
def test_a_card_or_a_password_in_the_problem_never_reaches_a_subject_or_the_customer_message(make_app, joiner):
    # Zendesk and Salesforce mask nothing by default (`redact: []`), and their subjects were the
    # customer's words: "Card 4111 1111 1111 1111 … password Tr0ub4dor&3" went into views, searches
    # and notification e-mails, and back to the customer in the message. Its groups joined by a
    # character nobody sees, it went whole to all of them (a data protection review).
    card = joiner.join(["4111", "1111", "1111", "1111"])
    packet = full_packet(intent={"name": "billing.card_declined",
                                 "stated_problem": f"Card {card} declined, password Tr0ub4dor&3"})
    services = make_app().extensions["connector"]
    shown = preview_packet(services, json.dumps(packet).encode())
    subjects = {"zendesk": shown["vendors"]["zendesk"]["payload"]["ticket"]["subject"],
                "salesforce": shown["vendors"]["salesforce"]["payload"]["case"]["Subject"],
                "slack": shown["vendors"]["slack"]["payload"]["message"]["text"],
                "brief": shown["brief"]["subject"], "customer": shown["customer_message"]["text"]}
    for where, text in subjects.items():
        assert "4111" + joiner not in text and "Tr0ub4dor" not in text and "&3" not in text, (where, text)
        assert "[redacted card ••••1111] declined, password [redacted secret]" in text, (where, text)


def _looping_repeat_packet() -> dict[str, Any]:
    packet = full_packet()  # its conversation: 2026-11-20 09:14 UTC
    packet["history"] = [
        {"at": "2026-11-12T10:00:00Z", "channel": "email", "summary": "order A-55821 late",
         "ticket": {"system": "zendesk", "id": "1490", "status": "solved"}},
        {"at": "2026-11-18T10:00:00+01:00", "channel": "chat", "summary": "order A-55821 still late",
         "ticket": {"system": "zendesk", "id": "1502", "status": "Open"}},
        {"at": "2026-06-01T10:00:00Z", "channel": "phone", "summary": "long before: not counted"},
    ]
    loop = "Have you tried turning sync off and on again?"
    packet["transcript"] += [{"at": f"2026-11-20T09:2{n}:00Z", "role": "bot", "text": text}
                             for n, text in enumerate([loop, " have you tried turning sync off and ON again?", loop])]
    packet["attempted_solutions"] *= 2
    return packet


def test_the_brief_says_up_top_where_it_was_routed_a_repeat_contact_and_a_bot_loop():
    # Slack said where routing sent it; the ticket did not. "Third contact about this order" sat
    # under Earlier contacts, below the collected data; a bot that answered the same thing three
    # times (what the customer is angry about) was only to be found by reading the transcript.
    brief = render_brief(_looping_repeat_packet(), "hnd_1", assignment={"team": "priority_support", "rule": "vip"})
    why = brief.text.split("CUSTOMER")[0]
    assert "  Routed to: priority_support (rule vip)\n" in why
    assert ("  Repeat contact: contacted us twice in the 30 days before this conversation "
            "(latest 2026-11-18 · zendesk #1502, still open)\n") in why
    assert ("  Bot loop: gave the same answer 3 times (“Have you tried turning sync off and on again?”); "
            "offered “QuickBooks reconnect guide” twice\n") in why
    html_why = brief.html.split("<h3>Customer</h3>")[0]
    assert "<strong>Repeat contact:</strong> contacted us twice" in html_why and "<strong>Bot loop:</strong>" in html_why
    assert "Routed to: priority_support (rule vip)" in html_why
    plain = render_brief(full_packet(), "hnd_1").text  # its one earlier contact was 49 days before
    assert "Repeat contact" not in plain and "Bot loop" not in plain and "Routed to" not in plain


def test_a_repeat_contacts_earlier_ticket_still_open_is_named_beside_the_latest():
    # A review: an open ticket two days before (this one's twin, maybe) went unmentioned when an
    # e-mail came after it: the line named the latest contact only.
    from connector.brief import repeat_contact

    packet = full_packet(history=[
        {"at": "2026-11-17T10:00:00Z", "channel": "chat", "ticket": {"system": "zendesk", "id": "80001", "status": "open"}},
        {"at": "2026-11-18T10:00:00Z", "channel": "chat", "ticket": {"system": "zendesk", "id": "80001", "status": "open"}},
        {"at": "2026-11-16T12:00:00Z", "channel": "chat", "ticket": {"system": "zendesk", "id": "79990", "status": "open"}},
        {"at": "2026-11-18T12:00:00Z", "channel": "chat", "ticket": {"system": "zendesk", "id": "79990", "status": "solved"}},
        {"at": "2026-11-19T23:00:00-08:00", "channel": "email", "summary": "Emailed again"}])
    assert repeat_contact(packet) == ("contacted us 5 times in the 30 days before this conversation (latest "
                                      "2026-11-20; still open: zendesk #80001 (2026-11-18))")
    many = full_packet(history=[{"at": f"2026-11-{day:02d}T10:00:00Z", "channel": "chat",
                                 "ticket": {"system": "zendesk", "id": str(day), "status": "open"}} for day in range(1, 19)])
    assert repeat_contact(many).endswith("still open: zendesk #15 (2026-11-15), zendesk #16 (2026-11-16), "
                                         "zendesk #17 (2026-11-17) and 14 more)")


def test_a_bot_loop_is_found_beside_empty_messages_and_untitled_attempts():
    # A review: four attachment-only bot messages ("") outnumbered the loop; two untitled attempts
    # outnumbered the article offered twice.
    from connector.brief import bot_loop

    packet = _looping_repeat_packet()
    image = {"url": "https://files.example/x.png", "name": "x.png"}
    packet["transcript"] += [{"at": "2026-11-20T09:30:00Z", "role": "bot", "text": "", "attachments": [image]}] * 4
    packet["attempted_solutions"] += [{"outcome": "unknown"}] * 3
    said = bot_loop(packet)
    assert said is not None and "gave the same answer 3 times" in said and "offered “QuickBooks reconnect guide” twice" in said


def test_the_slack_alert_says_a_repeat_contact_and_a_bot_loop_with_why():
    from adapters.slack import SlackAdapter
    from connector.settings import Settings
    from tests.factories import make_context

    message = SlackAdapter(Settings(slack_bot_token="xoxb-1", slack_channel="C1"), {}).render(
        make_context(_looping_repeat_packet(), target="slack"))["message"]
    [why] = [b["text"]["text"] for b in message["blocks"] if b.get("block_id") == "escalation"]
    assert "\n*Repeat contact:* contacted us twice in the 30 days" in why
    assert "\n*Bot loop:* gave the same answer 3 times" in why
    # "Routed to" as the brief says it, with the rule: one `routed_to` serves both.
    routed = SlackAdapter(Settings(slack_bot_token="xoxb-1", slack_channel="C1"), {}).render(make_context(
        _looping_repeat_packet(), target="slack", assignment={"team": "billing", "rule": "vip"}))["message"]
    [fields] = [b["fields"] for b in routed["blocks"] if b.get("block_id") == "escalation"]
    assert {"type": "mrkdwn", "text": "*Routed to*\nbilling (rule vip)", "verbatim": True} in fields


def test_the_latest_words_go_up_top_when_the_transcript_is_long_to_read_not_only_long():
    # Six messages, one a pasted 180-line traceback: "Prod is down for 40 customers" was 430 lines
    # down the note, under the transcript, because there were not more than six messages.
    packet = full_packet()
    packet["transcript"][2]["text"] = "Traceback (most recent call last):\n" + "  File \"x.py\", line 1\n" * 180
    packet["transcript"][-1]["text"] = "Yes, same crash. Prod is down for 40 customers"
    assert len(packet["transcript"]) <= 6
    assert 'Latest from them (2026-11-20 09:17 UTC): "Yes, same crash. Prod is down for 40 customers"' in \
        render_brief(packet, "hnd_1").text.split("TRANSCRIPT")[0]


def test_messages_within_one_minute_are_given_one_time_not_a_range_from_it_to_itself():
    # "their messages at 10:00–10:00", "01:00 – 01:00 UTC, 45 s".
    packet = minimal_packet()
    packet["transcript"] = [{"at": "2026-11-20T10:00:05+01:00", "role": "customer", "text": "hello"},
                            {"at": "2026-11-20T10:00:50+01:00", "role": "customer", "text": "my order is late"}]
    text = render_brief(packet, "hnd_1").text
    assert "their messages at 10:00 at that offset" in text and "10:00–10:00" not in text
    assert "2026-11-20 09:00 UTC, 45 s" in text and "09:00 – 09:00" not in text


def test_a_long_problem_is_masked_as_far_as_it_is_shown_and_no_further():
    # Masked in full, a 20,000-character problem cost 9 ms per subject; masked up to the cut and a
    # margin, a long credential masked shrinks the text — the rest of it must not then show.
    from connector.brief import ONE_LINE_SECRETS, one_line

    leaking = "Login fails. password: " + "Q1" * 300 + " and more words" * 50
    shown = one_line(leaking, 120, masked=ONE_LINE_SECRETS)
    assert shown.startswith("Login fails. password: [redacted secret] and more words") and "Q1" not in shown
    # A review: a card cut by the window's end matched no pattern, and masking a long key before it
    # shrank the window enough to show "… card 4111 1111 1…". Wherever the card falls, none of it shows.
    jwt = "eyJhbGciOiJIUzI1NiJ9." + "a" * 200 + ".sig12345"
    for gap in range(0, 300, 3):
        text = f"Login fails, my token: {jwt} and {'z' * gap} 4111 1111 1111 1111 more" + " x" * 300
        assert "4111" not in one_line(text, 120, masked=ONE_LINE_SECRETS), gap
    long_tail = "My card 4111 1111 1111 1111 declined " + "x " * 20_000
    assert one_line(long_tail, 120, masked=ONE_LINE_SECRETS).startswith("My card [redacted card ••••1111] declined x")


def test_a_repeat_marks_the_messages_after_the_ticket_last_heard_from_us_in_every_rendering():
    # A review of the brief: a repeat posted the whole transcript again, and its note's "2 messages
    # from the customer since…" left the agent to find them by their times.
    import datetime as dt

    packet = minimal_packet()
    packet["transcript"] += [{"at": "2026-11-20T10:05:00Z", "role": "customer", "text": "still broken"},
                             {"at": "2026-11-20T10:06:00Z", "role": "bot", "text": "Connecting you."}]
    told = dt.datetime(2026, 11, 20, 10, 4, tzinfo=dt.UTC)
    brief = render_brief(packet, "hnd_1", new_after=told)
    marked = [line for line in brief.transcript_lines if "[new]" in line]
    assert [line.split("] ", 1)[1] for line in marked] == ["[new] Customer: still broken", "[new] Bot: Connecting you."]
    assert brief.text.count("[new]") == 2 and brief.html.count("<strong>[new]</strong>") == 2
    # A first handoff marks nothing; nor does a batch of messages sent while waiting (all of it is new).
    assert "[new]" not in render_brief(packet, "hnd_1").text
    batch = {**packet, "follow_up": {"handoff_id": "hnd_0", "first": 1}}
    assert "[new]" not in render_brief(batch, "hnd_1", new_after=told).text


@pytest.mark.parametrize(("channel", "shown"), [("whatsapp", "WhatsApp"), ("web_chat", "web chat"),
                                                ("line", "line"), ("<b>x</b>", "&lt;b&gt;x&lt;/b&gt;")])
def test_the_channel_the_customer_waits_on_is_under_the_customer_not_only_in_the_footer(channel, shown):
    """An agent replying by e-mail (the helpdesk's default) to a WhatsApp customer reaches nobody;
    the channel was only in the footer's small print, and Salesforce's Origin says Web for it."""
    packet = full_packet()
    packet["conversation"]["channel"] = channel
    brief = render_brief(packet, "hnd_1")
    customer = brief.text[brief.text.index("CUSTOMER"):brief.text.index("WHAT THEY WANT")]
    assert f"  waiting on: {channel if channel.startswith('<') else shown}\n" in customer
    html = brief.html[brief.html.index("<h3>Customer</h3>"):brief.html.index("<h3>What they want</h3>")]
    assert f"<br>waiting on: <strong>{shown}</strong>" in html
    del packet["conversation"]["channel"]
    assert "waiting on" not in render_brief(packet, "hnd_1").text


@pytest.mark.parametrize(("text", "ends"), [
    ("注" * 118 + "🇯🇵🇺🇸です", "注注…"),  # not half a flag
    ("क" * 117 + "क्षि" + "त" * 5, "ककक…"),  # not a conjunct's virama, nor before its vowel sign
    ("a" * 117 + "e\u0301\u0301" + "b" * 9, None),  # not before its accents
    ("a" * 115 + "👨‍👩‍👧 ok" * 3, "aaa…"),  # not inside a family
])
def test_a_one_line_cut_splits_no_character_as_a_reader_sees_one(text, ends):
    # A review: a Japanese subject ended in a lone regional indicator, a Hindi one in a dangling
    # virama, the Slack header's family emoji in its first member; Salesforce's comments cut whole.
    from adapters.slack_blocks import fit, sections
    from connector.brief import subject_line
    from connector.text_rules import whole_end

    for cut in (subject_line(text, 120), fit(text, 120)[0]):
        kept = cut.removesuffix("…")
        assert whole_end(text, len(kept)) == len(kept) and text.startswith(kept)
        if ends:
            assert cut.endswith(ends)
    # Bounded: a cluster longer than any real one is cut where it stands (a run of 500,000 marks was
    # walked back whole at every cut of a Slack split).
    assert whole_end("a" + "\u0301" * 100, 50) == 50 and whole_end("a" + "\u0301" * 10, 5) == 0
    flags = "🇺🇸🇯🇵🇩🇪🇫🇷" * 500
    first, second = (b["text"]["text"] for b in sections([("*[09:15:40] Customer:* ", "Flags: " + flags)])[:2])
    assert first.endswith("🇯🇵") and second.startswith("🇩🇪🇫🇷")  # cut after 🇯 before: 🇵🇩 🇪🇫 🇷🇺 …


def test_a_batch_carrying_the_whole_brief_is_signed_as_messages_of_its_handoff():
    # A review: a batch that caught up on a lost one repeated the brief signed "Handoff msg_…", an id
    # no bot or read knows as a handoff, its handoff's nowhere on the ticket.
    packet = {**full_packet(), "follow_up": {"handoff_id": "hnd_01FIRST", "first": 5}}
    brief = render_brief(packet, "msg_01BATCH")
    assert "Messages msg_01BATCH of handoff hnd_01FIRST from " in brief.text
    assert "Messages msg_01BATCH of handoff hnd_01FIRST from " in brief.html
    assert "Handoff hnd_01TEST from " in render_brief(full_packet(), "hnd_01TEST").text


CLOSED = {"team": "billing", "out_of_hours": True,
          "business_hours": {"open": False, "timezone": "Europe/Paris", "next_opening": "2026-11-23T08:00:00+00:00"}}


def test_out_of_hours_every_target_says_when_the_team_opens():
    # A review: the customer read "we open again at 09:00 Monday (Europe/Paris)", and no target's brief
    # said it — the agent opening the ticket on Monday did not know what the customer expected.
    # It says when the team opens, not what the customer was told: an admin's wording may leave the
    # opening out (the message itself is `Message for the customer`).
    from adapters import slack_blocks

    said = "the team is closed; it opens again Mon 23 Nov 09:00 (Europe/Paris)"
    brief = render_brief(full_packet(), "hnd_1", assignment=CLOSED)
    assert f"Out of hours: {said}" in brief.text
    assert f"<strong>Out of hours:</strong> {said}" in brief.html
    message, _ = slack_blocks.alert(full_packet(), "hnd_1", CLOSED, [])
    assert f"*Out of hours*\\n{said}" in json.dumps(message)
    open_now = render_brief(full_packet(), "hnd_1", assignment={**CLOSED, "out_of_hours": False})
    assert "Out of hours" not in open_now.text


def test_every_target_says_the_message_the_customer_was_given(make_app):
    # A brief review: the customer read "someone will reply in about 30 minutes" and no brief said it;
    # the agent did not know what was promised. The decision keeps it; every target shows it.
    from adapters import slack_blocks

    services = make_app().extensions["connector"]
    packet = full_packet()
    shown = preview_packet(services, json.dumps(packet).encode())
    text = shown["customer_message"]["text"]
    assert shown["assignment"]["message_for_customer"] == text
    assert f"  Message for the customer: “{text}”\n" in shown["brief"]["text"]
    brief = render_brief(packet, "hnd_1", assignment=shown["assignment"])
    assert f"<br>Message for the customer: “{escape(text)}”" in brief.html
    message, _ = slack_blocks.alert(packet, "hnd_1", shown["assignment"], [])
    fields = [f["text"] for b in message["blocks"] for f in b.get("fields", ())]
    assert f"*Message for the customer*\n{text}" in fields
    # Beside the team a repeat's ticket stays with, the customer is told that team's wait and hours,
    # worded after the brief: nothing is claimed.
    kept = render_brief(packet, "hnd_1", assignment=shown["assignment"], kept_team="escalations")
    assert "Message for the customer" not in kept.text + kept.html
    message, _ = slack_blocks.alert(packet, "hnd_1", shown["assignment"], [], kept_team="escalations")
    assert "Message for the customer" not in json.dumps(message)
    # A handoff stored before the decision kept it says nothing of it.
    assert "Message for the customer" not in render_brief(packet, "hnd_1", assignment=CLOSED).text
    # Nor, a review of the mend: once the kept team's words are stored (`kept`: the admin page, a batch
    # opening a ticket), nor for a batch of messages (its answers said the handoff's message as it stood).
    kept = {**shown["assignment"], "kept": {"team": "support"}}
    assert "Message for the customer" not in render_brief(packet, "hnd_1", assignment=kept).text
    batch = {**packet, "follow_up": {"handoff_id": "hnd_0", "first": 3}}
    assert "Message for the customer" not in render_brief(batch, "msg_1", assignment=shown["assignment"]).text


def test_a_targets_masking_covers_the_message_for_the_customer(make_app):
    # A review of the mend: with `redact: [email, phone]` the customer's words were masked everywhere
    # in the brief but in the message, which echoes them.
    from adapters.base import HandoffContext

    app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                   zendesk_api_token="t")
    services = app.extensions["connector"]
    packet = full_packet()
    packet["intent"]["stated_problem"] = "Invoices fail; write to kim.ortega@example.org or call +44 7700 900123"
    shown = preview_packet(services, json.dumps(packet).encode())
    assert "kim.ortega@example.org" in shown["assignment"]["message_for_customer"]
    adapter = services.adapters["zendesk"]
    adapter.mapping = {**adapter.mapping, "redact": ["email", "phone"]}
    ctx = adapter.for_target(HandoffContext(
        handoff_id="hnd_1", target="zendesk", packet=packet, idempotency_key="k", assignment=shown["assignment"],
        brief=render_brief(packet, "hnd_1", assignment=shown["assignment"])))
    [line] = [line for line in ctx.brief.text.splitlines() if "Message for the customer" in line]
    assert "write to [redacted email] or call [redacted phone]" in line
    assert "kim.ortega" not in ctx.brief.html + json.dumps(ctx.assignment)
    # An update's, kept apart for a new ticket in place of a closed one (`new_ticket_assignment`), too.
    update = {key: value for key, value in shown["assignment"].items() if key != "message_for_customer"}
    ctx = adapter.for_target(HandoffContext(
        handoff_id="hnd_1", target="zendesk", packet=packet, idempotency_key="k", assignment=update,
        new_ticket_assignment=shown["assignment"], brief=render_brief(packet, "hnd_1", assignment=update)))
    assert "[redacted email]" in ctx.new_ticket_assignment["message_for_customer"]
    assert "kim.ortega" not in json.dumps(ctx.new_ticket_assignment)


@pytest.mark.parametrize("beside", [(), ("quick",)])
def test_a_retrys_brief_says_the_message_as_the_bot_was_answered_it(make_app, monkeypatch, tmp_path, beside):
    # Reviews of the mend: the first attempt failed, the bot was answered the message without a wait
    # ("as soon as they're free"), and the retry's brief said "about 5 minutes" was promised; beside a
    # target that made its ticket at once the answer did quote the wait, and the retry said nothing.
    from adapters import registry
    from tests.factories import mappings_quoting_a_wait
    from tests.support_adapters import BriefedAdapter

    monkeypatch.setitem(registry.TARGETS, "briefed", "tests.support_adapters:BriefedAdapter")
    monkeypatch.setitem(registry.TARGETS, "quick", "tests.support_adapters:QuickAdapter")
    monkeypatch.setattr(BriefedAdapter, "briefs", [])
    app = make_app(targets=("briefed", *beside), mappings_dir=mappings_quoting_a_wait(tmp_path))
    services = app.extensions["connector"]
    answer = app.test_client().post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                                    content_type="application/json").get_json()
    answered = answer["customer_message"]["text"]
    assert answer["status"] == ("partial" if beside else "pending")
    assert ("about 5 minutes" in answered) == bool(beside)
    with services.db.session() as session:
        session.execute(update(Delivery).values(next_attempt_at=utcnow()))
    [delivery_id], token = services.outbox.claim_due()
    assert services.outbox.run_delivery(delivery_id, token).state == "created"
    first, retry = BriefedAdapter.briefs
    assert "about 5 minutes" in first  # made before the answer: the composed words (its ticket failed)
    [said] = [line for line in retry.splitlines() if "Message for the customer" in line]
    assert said == f"  Message for the customer: “{answered}”"


def test_a_replayed_handoffs_brief_does_not_quote_the_apology(make_app, monkeypatch, tmp_path):
    # A review of the mend: every target refused, the bot was answered the apology ("nobody has it
    # yet"), an operator replayed it, and the ticket's brief quoted the apology while the bot's
    # `delivered` callback gave the message with its wait to show.
    from adapters import registry
    from tests.factories import mappings_quoting_a_wait
    from tests.support_adapters import RefusedOnceAdapter

    monkeypatch.setitem(registry.TARGETS, "refused-once", "tests.support_adapters:RefusedOnceAdapter")
    monkeypatch.setattr(RefusedOnceAdapter, "briefs", [])
    app = make_app(targets=("refused-once",), mappings_dir=mappings_quoting_a_wait(tmp_path))
    services = app.extensions["connector"]
    answer = app.test_client().post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                                    content_type="application/json").get_json()
    assert answer["status"] == "failed" and "nobody has it" in answer["customer_message"]["text"]
    with services.db.reading() as session:
        delivery_id = session.scalars(select(Delivery.id)).one()
    assert services.replay_one(delivery_id)  # attempted now, on a delivery thread
    for _ in range(100):
        with services.db.reading() as session:
            if session.get(Delivery, delivery_id).state == "created":
                break
        time.sleep(0.05)
    assert len(RefusedOnceAdapter.briefs) == 2
    [said] = [line for line in RefusedOnceAdapter.briefs[-1].splitlines() if "Message for the customer" in line]
    assert "about 5 minutes" in said and "nobody has it" not in said


def test_list_items_holding_a_comma_are_set_apart_by_semicolons():
    # A review: two addresses read as four parts; `["Blue shirt, size M", "Red hat"]` as three items.
    from connector.brief import scalar

    assert scalar(["12 Main St, Springfield", "4 Elm Rd, Shelbyville"]) == "12 Main St, Springfield; 4 Elm Rd, Shelbyville"
    assert scalar(["Blue shirt, size M", "Red hat"]) == "Blue shirt, size M; Red hat"
    assert scalar(["SKU1", "SKU2"]) == "SKU1, SKU2"
    packet = full_packet()
    packet["collected_data"]["shipping_addresses"] = ["12 Main St, Springfield", "4 Elm Rd, Shelbyville"]
    assert "12 Main St, Springfield; 4 Elm Rd, Shelbyville" in render_brief(packet, "hnd_1").text
