"""`POST /webhooks/slack`: the alert's Claim button. Verified over the raw form body (fail closed);
the first agent to click takes the handoff, recorded once; every other interaction is ignored."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from sqlalchemy import select

from adapters.events import Holder
from connector.models import Assignment, Callback, ConversationLink, Delivery, Handoff

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
SECRET = "slack-signing-secret-test-0001"
CLAIM_TEXT = (FIXTURES / "block_actions.claim.json").read_text(encoding="utf-8")
CLAIM_BODY = ("payload=" + quote_plus(CLAIM_TEXT)).encode()
T0 = 1795262400  # 2026-11-21T12:00:00Z
SIGNED_AT = "1795262410"
# Known answer: "v0=" + hex HMAC-SHA256(SECRET, "v0:" + SIGNED_AT + ":" + CLAIM_BODY), computed once
# with hmac/hashlib in a throwaway snippet — not with the code under test.
CLAIM_SIG = "v0=654978a40cbc77fbceb4dce3c3644bb21c80f5e1a5acb6eac4a8d3273b049003"
# Slack's own published example (docs.slack.dev, "Verifying requests from Slack"): a slash command.
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TS = "1531420618"
DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
HANDOFF = "hnd_01TESTHANDOFF0000000000000"
ALERT = "C0HANDOFF/1795262300.000100"


def headers(signature: str = CLAIM_SIG, timestamp: str = SIGNED_AT) -> dict[str, str]:
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": timestamp}


def form(payload: dict | str) -> bytes:
    return ("payload=" + quote_plus(payload if isinstance(payload, str) else json.dumps(payload))).encode()


def signed(body: bytes, secret: str = SECRET, timestamp: str = SIGNED_AT) -> dict[str, str]:
    """Slack's scheme written out here, independent of `connector.vendor_signatures`."""
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return headers("v0=" + digest, timestamp)


def claim(**changes) -> dict:
    """The recorded Claim click with changes: `user__id="U2"`, `action__value=…` (the first action)."""
    payload = copy.deepcopy(json.loads(CLAIM_TEXT))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = payload
        for key in parents:
            node = node["actions"][0] if key == "action" else node[key]
        node[leaf] = value
    return payload


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def slack_app(request):
    database = {"database_url": request.getfixturevalue("postgres_url")} if request.param == "postgres" else {}
    app = request.getfixturevalue("make_app")(slack_signing_secret=SECRET, **database)
    app.extensions["connector"].clock = lambda: T0 + 15
    return app


def alerted(app, handoff_id: str = HANDOFF, alert: str | None = ALERT, *, team: str = "billing",
            created: float = -115, state: str = "created", outcome_unknown: bool = False,
            sent_to: dict | None = None) -> None:
    """A handoff made `created` seconds from T0 whose Slack delivery is alert `alert`."""
    with app.extensions["connector"].db.session() as session:
        session.add(Handoff(id=handoff_id, bot_id="support-bot", conversation_id="conv-1", idempotency_key=handoff_id,
                            request_hash="0" * 64, packet={}, assignment={"team": team, "trace": []},
                            customer_message={}, created_at=dt.datetime.fromtimestamp(T0 + created, dt.UTC),
                            deliveries=[Delivery(target="slack", state=state, vendor_id=alert,
                                                 outcome_unknown=outcome_unknown, sent_to=sent_to)]))


def post(app, body: bytes | dict, hdrs=None, content_type="application/x-www-form-urlencoded"):
    data = body if isinstance(body, bytes) else form(body)
    return app.test_client().post("/webhooks/slack", data=data, content_type=content_type,
                                  headers=hdrs if hdrs is not None else signed(data))


def assignments(app) -> list[Assignment]:
    with app.extensions["connector"].db.reading() as session:
        return list(session.scalars(select(Assignment).order_by(Assignment.id)))


# ---- signatures --------------------------------------------------------------------------------


def test_known_answer_claim_is_recorded_with_the_agent(slack_app):
    alerted(slack_app)
    response = post(slack_app, CLAIM_BODY, headers())
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"outcome": "recorded", "detail": "assigned after 120 s", "handoff_id": HANDOFF}
    [row] = assignments(slack_app)
    assert (row.target, row.vendor_ticket_id, row.team, row.wait_seconds) == ("slack", ALERT, "billing", 120)
    assert (row.agent_id, row.agent_name) == ("U0AGENT01", "dana.agent")
    assert row.event_id == "7281926354.1795262405.5f0c7a9e3b6d4c2a9e8f7d6c5b4a3f21"


def test_slacks_published_vector_passes_verification(make_app):
    app = make_app(slack_signing_secret=DOC_SECRET)
    app.extensions["connector"].clock = lambda: int(DOC_TS) + 30
    response = post(app, DOC_BODY, headers(DOC_SIG, DOC_TS))
    assert response.status_code == 422  # verified; a slash command is not an interaction
    assert "payload" in response.get_json()["errors"]


@pytest.mark.parametrize(("hdrs", "reason", "at_fault"), [
    ({"X-Slack-Request-Timestamp": SIGNED_AT}, "missing_signature", "X-Slack-Signature"),
    # The timestamp's own faults name its header: a developer looks at the clock, not the signing code.
    ({"X-Slack-Signature": CLAIM_SIG}, "missing_timestamp", "X-Slack-Request-Timestamp"),
    (headers(CLAIM_SIG, "17639xx"), "malformed_timestamp", "X-Slack-Request-Timestamp"),
    (headers(CLAIM_SIG.replace("6549", "6548")), "mismatch", "X-Slack-Signature"),
    (headers(CLAIM_SIG, str(int(SIGNED_AT) + 1)), "mismatch", "X-Slack-Signature"),
    (headers("sha256=abc"), "malformed_signature", "X-Slack-Signature"),
])
def test_a_bad_signature_is_refused_with_its_reason(slack_app, hdrs, reason, at_fault):
    alerted(slack_app)
    response = post(slack_app, CLAIM_BODY, hdrs)
    assert response.status_code == 401
    assert response.get_json()["errors"] == {at_fault: [reason]}
    assert assignments(slack_app) == []


def test_outside_the_window_is_refused(slack_app):
    slack_app.extensions["connector"].clock = lambda: T0 + 10 + 6 * 60
    response = post(slack_app, CLAIM_BODY, headers())
    assert response.get_json()["errors"] == {"X-Slack-Request-Timestamp": ["stale_timestamp"]}
    assert "The Slack signature was refused (stale_timestamp): signed 360 s ago; the window is 300 s." in response.get_json()["detail"]


def test_without_the_signing_secret_every_click_is_refused(make_app):
    app = make_app()
    app.extensions["connector"].clock = lambda: T0 + 15
    alerted(app)
    response = post(app, CLAIM_BODY, headers())
    assert response.status_code == 401
    assert response.get_json()["errors"] == {"X-Slack-Signature": ["no_secret_configured"]}
    assert "SLACK_SIGNING_SECRET" in response.get_json()["detail"]
    assert assignments(app) == []


# ---- clicks ------------------------------------------------------------------------------------


def told(app) -> list[tuple[str, Holder]]:
    """What the Slack target is asked to tell agents (`Services.tell_agent`): (clicker, holder),
    always on the matched handoff's own alert."""
    said: list[tuple[str, Holder]] = []

    def tell(event, holder, ticket_id):
        assert ticket_id == ALERT, ticket_id
        said.append((event.agent_id, holder))

    app.extensions["connector"].tell_agent = tell
    return said


def test_two_agents_clicking_at_once_the_first_takes_it_and_each_is_told_who_did(slack_app):
    alerted(slack_app)
    said = told(slack_app)
    clicks = [claim(trigger_id=f"trigger-{n}", user__id=f"U0AGENT{n:02d}") for n in range(5)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(lambda payload: post(slack_app, payload).get_json(), clicks))
    assert sorted(a["outcome"] for a in answers) == ["ignored"] * 4 + ["recorded"]
    [row] = assignments(slack_app)
    winner = next(n for n, a in enumerate(answers) if a["outcome"] == "recorded")
    assert row.agent_id == f"U0AGENT{winner:02d}"
    # Those who lost a race (their insert refused) are told as well as those who came later.
    assert sorted(clicker for clicker, _ in said) == [f"U0AGENT{n:02d}" for n in range(5)]
    assert {(h.agent_id, h.first) for clicker, h in said if clicker == row.agent_id} == {(row.agent_id, True)}
    assert {(h.agent_id, h.first) for clicker, h in said if clicker != row.agent_id} == {(row.agent_id, False)}


def test_an_agent_who_took_it_elsewhere_is_named_to_a_later_click(slack_app):
    alerted(slack_app)
    with slack_app.extensions["connector"].db.session() as session:
        session.add(Assignment(handoff_id=HANDOFF, target="zendesk", vendor_ticket_id="1001", team="billing",
                               agent_id="381156009921", agent_name="Sam Agent", event_id="zd-1",
                               handed_off_at=dt.datetime.fromtimestamp(T0 - 115, dt.UTC),
                               assigned_at=dt.datetime.fromtimestamp(T0, dt.UTC), wait_seconds=115))
    said = told(slack_app)
    assert post(slack_app, claim()).get_json()["outcome"] == "ignored"
    assert said == [("U0AGENT01", Holder("zendesk", "381156009921", "Sam Agent", first=False))]


def test_a_click_is_answered_on_the_handoffs_alert_not_where_the_payload_says(slack_app):
    alerted(slack_app)
    said = told(slack_app)  # asserts the alert
    in_thread = claim(container__message_ts="1795262999.000000", message__ts="1795262999.000000",
                      message__thread_ts="1795262300.000100")
    assert post(slack_app, in_thread).get_json()["outcome"] == "recorded"  # matched by the button's handoff id
    assert said == [("U0AGENT01", Holder("slack", "U0AGENT01", "dana.agent", first=True, handoff_id=HANDOFF))]


@pytest.mark.parametrize("where", [
    {"container__channel_id": "C0GENERAL"},  # another channel, no thread said
    {},  # a message of its own in the alert's channel (a bot's vendor_extra moved it out of its thread)
    {"message__thread_ts": "1795262777.000300"},  # another thread of the alert's channel
    {"container__thread_ts": "1795262777.000300"},
])
def test_a_button_naming_a_handoff_away_from_its_alert_takes_nothing(slack_app, where):
    # A security review: a bot's `vendor_extra.slack` can post blocks of its own — a Claim button
    # naming another bot's handoff under its own alert — and a click on it took that handoff.
    alerted(slack_app)
    said = told(slack_app)
    forged = claim(container__message_ts="1795262999.000000", message__ts="1795262999.000000", **where)
    assert post(slack_app, forged).get_json()["outcome"] == "ignored"
    assert assignments(slack_app) == [] and said == []


@pytest.mark.parametrize("state", ["pending", "dead"])
def test_a_click_on_an_alert_whose_ts_is_not_recorded_takes_its_handoff(slack_app, state):
    # The alert went up, then its delivery failed (an unknown outcome, its channel said): retried
    # (pending) or given up (dead) — its button is still there to click.
    alerted(slack_app, alert=None, state=state, outcome_unknown=True, sent_to={"channel": "C0HANDOFF"})
    elsewhere = claim(container__channel_id="C0ELSEWHERE", container__message_ts="1795262999.000000",
                      message__ts="1795262999.000000")  # a bot's own message, in another channel
    assert post(slack_app, elsewhere).get_json()["outcome"] == "ignored"
    assert post(slack_app, claim()).get_json()["outcome"] == "recorded"


def test_a_click_before_the_alert_is_recorded_is_not_taken_for_it(slack_app):
    # Nothing says where its post went yet: a forged button anywhere would have taken it. The
    # agent clicks again a moment later, on the recorded alert.
    alerted(slack_app, alert=None, state="pending")
    assert post(slack_app, claim()).get_json()["outcome"] == "ignored"


def test_a_handoff_whose_ticket_is_not_recorded_is_taken_only_from_its_conversations_thread(slack_app):
    # A review: any button anywhere naming a handoff still being delivered took it (one retrying
    # for minutes too). A re-escalation's reply is in its conversation's thread: that one counts.
    alerted(slack_app, "hnd_AGAIN", alert=None, state="pending")
    with slack_app.extensions["connector"].db.session() as session:
        session.add(ConversationLink(bot_id="support-bot", conversation_id="conv-1", target="slack", vendor_id=ALERT))
    elsewhere = claim(container__message_ts="1795262999.000000", action__value="hnd_AGAIN",
                      message__ts="1795262999.000000", message__thread_ts="1795262777.000300")
    assert post(slack_app, elsewhere).get_json()["outcome"] == "ignored"
    reply = claim(container__message_ts="1795262350.000200", action__value="hnd_AGAIN",
                  message__ts="1795262350.000200", message__thread_ts="1795262300.000100")
    assert post(slack_app, reply).get_json()["handoff_id"] == "hnd_AGAIN"


def test_a_click_takes_over_from_the_agent_routing_put_on_the_zendesk_ticket(slack_app):
    alerted(slack_app)
    with slack_app.extensions["connector"].db.session() as session:
        session.add(Assignment(handoff_id=HANDOFF, target="zendesk", vendor_ticket_id="1001", team="billing",
                               agent_id="381156009921", agent_name="Sam Agent", event_id="zd-1", routed=True,
                               handed_off_at=dt.datetime.fromtimestamp(T0 - 115, dt.UTC),
                               assigned_at=dt.datetime.fromtimestamp(T0 - 110, dt.UTC), wait_seconds=5))
    said = told(slack_app)
    assert post(slack_app, claim()).get_json()["outcome"] == "recorded"
    [row] = assignments(slack_app)
    assert (row.target, row.agent_id, row.routed, row.wait_seconds) == ("slack", "U0AGENT01", False, 120)
    assert said == [("U0AGENT01", Holder("slack", "U0AGENT01", "dana.agent", first=True, handoff_id=HANDOFF))]


def test_a_click_matching_no_handoff_and_a_repeated_click_tell_nobody(slack_app):
    alerted(slack_app)
    said = told(slack_app)
    unknown = claim(container__message_ts="1795262999.000000", action__value="hnd_UNKNOWN")
    assert post(slack_app, unknown).get_json()["outcome"] == "ignored"
    assert post(slack_app, claim()).get_json()["outcome"] == "recorded"
    assert post(slack_app, claim()).get_json()["outcome"] == "duplicate"  # Slack's retry: told once
    assert said == [("U0AGENT01", Holder("slack", "U0AGENT01", "dana.agent", first=True, handoff_id=HANDOFF))]


def test_the_same_click_twice_is_recorded_once(slack_app):
    alerted(slack_app)
    assert post(slack_app, claim()).get_json()["outcome"] == "recorded"
    assert post(slack_app, claim()).get_json()["outcome"] == "duplicate"
    assert len(assignments(slack_app)) == 1


def test_a_claim_on_a_re_escalations_reply_takes_that_handoff(slack_app):
    alerted(slack_app, "hnd_FIRST", created=-900)
    alerted(slack_app, "hnd_AGAIN", created=-100, state="updated")  # its reply is in the alert's thread
    reply = claim(container__message_ts="1795262350.000200", action__value="hnd_AGAIN",
                  message__ts="1795262350.000200", message__thread_ts="1795262300.000100")
    assert post(slack_app, reply).get_json()["handoff_id"] == "hnd_AGAIN"


def test_a_claim_on_a_re_escalations_reply_names_the_alert_as_the_ticket(slack_app):
    # A review: the reply's own ts was the `assigned` callback's ticket id (its url, `tickets` and
    # `delivered` the alert's) and the assignment's ticket, which GET shows.
    alerted(slack_app, "hnd_FIRST", created=-900)
    alerted(slack_app, "hnd_AGAIN", created=-100, state="updated")
    with slack_app.extensions["connector"].db.session() as session:
        session.get(Handoff, "hnd_AGAIN").packet = {"callback": {"url": "https://bot.example/cb"}}
    assert post(slack_app, reply_claim("hnd_AGAIN", "1795262350.000200")).get_json()["handoff_id"] == "hnd_AGAIN"
    [row] = assignments(slack_app)
    assert row.vendor_ticket_id == ALERT
    with slack_app.extensions["connector"].db.reading() as session:
        [callback] = session.scalars(select(Callback)).all()
    assert callback.body["ticket"] == {"target": "slack", "status": "updated", "id": ALERT, "url": None}
    assert callback.body["tickets"] == [callback.body["ticket"]]


# A click in a modal or on the App Home: no message, its container a view (Slack's block_actions).
IN_A_VIEW = {"type": "block_actions", "user": {"id": "U0AGENT01", "username": "dana.agent"},
             "container": {"type": "view", "view_id": "V0SETTINGS"}, "trigger_id": "7281926354.1795262405.aa",
             "view": {"id": "V0SETTINGS", "type": "home", "blocks": []},
             "actions": [{"action_id": "settings_open", "block_id": "b1", "type": "button", "value": "open",
                          "action_ts": "1795262405.123456"}]}


@pytest.mark.parametrize(("payload", "detail"), [
    (claim(action__action_id="handoff_open_conversation"), "not a Claim click"),
    # A review: a bot's own button (`vendor_extra.slack` blocks) may carry a value up to Slack's
    # 2,000 characters, and a click in a view has no channel nor message: both were refused with
    # 422 (Slack shows the agent an error) before it was known they were no Claim.
    (claim(action__action_id="bot_rate_us", action__value="r" * 2_000), "not a Claim click"),
    (IN_A_VIEW, "not a Claim click"),
    (claim(container__message_ts="1795262999.000000", action__value="hnd_UNKNOWN"),
     "no handoff was delivered to this ticket before this event"),
])
def test_other_interactions_are_ignored_without_error(slack_app, payload, detail):
    alerted(slack_app)
    response = post(slack_app, payload)
    assert response.status_code == 200
    assert response.get_json() == {"outcome": "ignored", "detail": detail, "handoff_id": None}
    assert assignments(slack_app) == []


@pytest.mark.parametrize(("body", "field"), [
    (b"token=x", "payload"),
    (b"payload=not-json", "payload"),
    (form([1, 2]), "payload"),
    (form({k: v for k, v in claim().items() if k != "user"}), "payload.user"),
    (form(claim(user={"name": "dana"})), "payload.user.id"),
    (form(claim(action__action_ts="yesterday")), "payload.actions.0.action_ts"),
    (form(claim(trigger_id="t\u0000")), "payload.trigger_id"),
    (b"payload=%FF", "(body)"),
    # Read as every JSON body: a key twice, nesting past CONNECTOR_MAX_JSON_DEPTH, NaN.
    (b'payload={"type":"block_actions","type":"x"}', "payload.type"),
    (b"payload=" + quote_plus('{"a":' * 40 + "1" + "}" * 40).encode(), "payload" + ".a" * 32),  # past the depth
    (b'payload={"type":NaN}', "payload"),
    (b'payload={"type":"block_actions","n":1e400}', "payload.n"),  # a number no float holds
    # A time past the year 9999: a 500, which Slack retries.
    (form(claim(action__action_ts="999999999999")), "payload.actions.0.action_ts"),
])
def test_a_malformed_interaction_is_422_naming_the_field(slack_app, body, field):
    response = post(slack_app, body)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"], response.get_json()


def test_only_form_bodies_are_interactions(slack_app):
    body = json.dumps(claim()).encode()
    assert post(slack_app, body, content_type="application/json").status_code == 415


def reply_claim(handoff_id: str, ts: str, **changes) -> dict:
    """A click on the Claim button of a re-escalation's reply (`ts`) in the alert's thread."""
    return claim(container__message_ts=ts, action__value=handoff_id, message__ts=ts,
                 message__thread_ts="1795262300.000100", **changes)


def test_a_claim_on_a_superseded_reply_takes_the_newest_handoff_and_a_later_click_is_told(slack_app):
    # A review: the button of an older re-escalation's reply took the handoff the newer one had
    # superseded; the newest kept waiting, and a second agent was told "you took it" for that one.
    alerted(slack_app, "hnd_FIRST", created=-900)
    alerted(slack_app, "hnd_AGAIN", created=-500, state="updated")
    alerted(slack_app, "hnd_THIRD", created=-100, state="updated")
    said = told(slack_app)
    assert post(slack_app, reply_claim("hnd_AGAIN", "1795262350.000200")).get_json()["handoff_id"] == "hnd_THIRD"
    later = reply_claim("hnd_THIRD", "1795262380.000300", trigger_id="trigger-b", user__id="U0AGENTB")
    assert post(slack_app, later).get_json()["outcome"] == "ignored"
    assert [(row.handoff_id, row.agent_id) for row in assignments(slack_app)] == [("hnd_THIRD", "U0AGENT01")]
    assert said == [("U0AGENT01", Holder("slack", "U0AGENT01", "dana.agent", first=True, handoff_id="hnd_THIRD")),
                    ("U0AGENTB", Holder("slack", "U0AGENT01", "dana.agent", first=False))]


def test_a_click_before_a_handoff_was_stored_is_not_that_handoffs_on_the_alert_or_on_a_reply(slack_app):
    # A review: a handoff stored 25 s after the click (within the minute given to the clocks while a
    # ticket has no handoff yet) took the click made on a reply, while the same click on the alert
    # took the handoff that was waiting then; that one was left promising a wait.
    alerted(slack_app, "hnd_FIRST", created=-900)
    alerted(slack_app, "hnd_AGAIN", created=-500, state="updated")
    alerted(slack_app, "hnd_THIRD", created=30, state="updated")  # the click is at about +5
    assert post(slack_app, reply_claim("hnd_AGAIN", "1795262350.000200")).get_json()["handoff_id"] == "hnd_AGAIN"
    alert = claim(trigger_id="trigger-b", user__id="U0AGENTB")  # the same moment, on the alert
    assert post(slack_app, alert).get_json()["outcome"] == "ignored"  # hnd_AGAIN's, taken already
    assert [(row.handoff_id, row.agent_id) for row in assignments(slack_app)] == [("hnd_AGAIN", "U0AGENT01")]


def test_a_claim_on_a_taken_reply_takes_the_newer_handoff_still_waiting(slack_app):
    alerted(slack_app, "hnd_FIRST", created=-900)
    alerted(slack_app, "hnd_AGAIN", created=-500, state="updated")
    assert post(slack_app, reply_claim("hnd_AGAIN", "1795262350.000200")).get_json()["outcome"] == "recorded"
    alerted(slack_app, "hnd_THIRD", created=-50, state="updated")  # the customer came back: a new wait
    later = reply_claim("hnd_AGAIN", "1795262350.000200", trigger_id="trigger-b", user__id="U0AGENTB")
    assert post(slack_app, later).get_json()["handoff_id"] == "hnd_THIRD"
    assert [(row.handoff_id, row.agent_id) for row in assignments(slack_app)] == [
        ("hnd_AGAIN", "U0AGENT01"), ("hnd_THIRD", "U0AGENTB")]


def test_a_claim_on_a_completed_handoffs_alert_takes_nothing_and_the_agent_is_told(slack_app):
    # A review: a click on the old alert of a handoff whose ticket was solved was recorded — the
    # bot heard `assigned` after `completed`, and the channel that the agent took it.
    alerted(slack_app)
    with slack_app.extensions["connector"].db.session() as session:
        handoff = session.get(Handoff, HANDOFF)
        handoff.packet = {"callback": {"url": "https://bot.example/cb"}}
        handoff.completed_at = dt.datetime.fromtimestamp(T0 - 60, dt.UTC)
    said = told(slack_app)
    answer = post(slack_app, claim()).get_json()
    assert answer == {"outcome": "ignored", "detail": "the handoff was completed already", "handoff_id": None}
    assert assignments(slack_app) == []
    with slack_app.extensions["connector"].db.reading() as session:
        assert session.scalars(select(Callback)).all() == []  # no `assigned` owed
    assert said == [("U0AGENT01", Holder("slack", "", None, first=False, completed=True))]
