"""The line that words the customer's problem: the same one in the subject, the brief, the Slack
alert and the customer message — a greeting or a bare request for a person is passed over."""

from __future__ import annotations

import json

from adapters import slack_blocks
from connector.brief import problem_words, render_brief, subject_for
from tests.factories import minimal_packet

GREETING = "Hi there, can you help me please?"
PROBLEM = "My refund for order 5521 never arrived"


def _conversation(*turns: tuple[str, str]) -> dict:
    packet = minimal_packet()
    packet.pop("intent", None)
    packet["transcript"] = [{"at": f"2026-11-20T09:00:0{i}Z", "role": role, "text": text}
                            for i, (role, text) in enumerate(turns)]
    return packet


def _refund() -> dict:
    return _conversation(("customer", GREETING), ("bot", "Of course! What's going on?"),
                         ("customer", PROBLEM), ("customer", "I want to talk to a real person now"))


def test_a_greeting_is_not_the_subject_the_brief_or_the_slack_alerts_problem():
    packet = _refund()
    assert subject_for(packet) == PROBLEM
    brief = render_brief(packet, "hnd_1")
    assert brief.subject == PROBLEM  # Zendesk's subject and Salesforce's Subject
    assert brief.text.startswith(f"HANDOFF — {PROBLEM}\n")
    assert f'They wrote: "{PROBLEM}"' in brief.text and f"They wrote: <em>“{PROBLEM}”</em>" in brief.html
    message, _ = slack_blocks.alert(packet, "hnd_1", {}, [])
    assert PROBLEM in message["blocks"][0]["text"]["text"]
    [intent] = [b for b in message["blocks"] if b.get("block_id") == "intent"]
    assert intent["text"]["text"].startswith(f"*In the customer's words:*\n>{PROBLEM}")
    assert GREETING not in json.dumps(message)
    # …as the customer message says it, from the same rule.
    assert problem_words(packet, echoed=True) == problem_words(packet) == PROBLEM


def test_a_request_for_a_person_is_not_the_problem_either():
    packet = _conversation(("customer", "I want to talk to a real person now"), ("customer", PROBLEM))
    assert subject_for(packet) == PROBLEM == problem_words(packet, echoed=True)


def test_with_nothing_but_greetings_the_agent_still_reads_what_the_customer_wrote():
    packet = _conversation(("customer", "hi"), ("customer", GREETING))
    assert subject_for(packet) == GREETING
    assert problem_words(packet, echoed=True) == ""  # the customer message says its own words instead
