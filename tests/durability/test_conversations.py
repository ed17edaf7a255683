"""Several handoffs of one conversation, under vendor faults: each conversation keeps ONE Zendesk
ticket, ONE Salesforce case and ONE Slack alert, and every later handoff lands on it once — a
comment on the ticket, comments on the case, a reply in the alert's thread — none doubled, none
missing, whichever process delivers it and however many of its attempts timed out after acting."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import BOT_KEY
from tests.durability.conftest import http, wait_until
from tests.factories import minimal_packet
from tests.fakes.loopback import HANDOFF_ID_FIELD, SLACK_CHANNEL

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CONVERSATIONS, HANDOFFS = 10, 5
HANDOFF_ID = re.compile(r"hnd_[0-9A-Z]{26}")


def _packet(conversation: int, turn: int) -> dict[str, Any]:
    """The conversation's `turn`-th handoff: the same conversation and customer, its transcript one
    customer message longer than the handoff before it."""
    transcript = [{"at": f"2026-11-20T10:{minute:02d}:00Z", "role": "customer",
                   "text": f"Still not working, try {minute + 1} (conversation {conversation})"}
                  for minute in range(turn + 1)]
    return minimal_packet(conversation={"id": f"conv-multi-{conversation}"}, transcript=transcript,
                          customer={"email": f"multi{conversation}@example.net", "name": f"Customer {conversation}"})


def _post_all(base_urls: list[str]) -> dict[int, list[str]]:
    """Every conversation's handoffs, posted at once from many threads across the web processes
    (one conversation's handoffs through different processes); its handoff ids, by conversation."""
    jobs = [(conversation, turn) for turn in range(HANDOFFS) for conversation in range(CONVERSATIONS)]

    def one(job: tuple[int, int]) -> tuple[int, int, Any]:
        conversation, turn = job
        url = base_urls[(conversation + turn) % len(base_urls)]
        status, _, body = http("POST", url + "/v1/handoffs", _packet(conversation, turn),
                               {"Authorization": f"Bearer {BOT_KEY}", "Idempotency-Key": f"multi-{conversation}-{turn}"})
        return status, conversation, body

    ids: dict[int, list[str]] = defaultdict(list)
    with ThreadPoolExecutor(16) as pool:
        for status, conversation, body in pool.map(one, jobs):
            assert status in (201, 202), (status, body)  # every handoff accepted, none taken for a replay
            ids[conversation].append(body["id"])
    return ids


def _zendesk(vendors, ids: dict[int, list[str]]) -> list[str]:
    """What is wrong at Zendesk: a conversation without exactly one ticket, a handoff whose
    comment is missing from it or on it twice."""
    wrong = []
    with vendors.zendesk.lock:
        tickets = {tid: dict(t) for tid, t in vendors.zendesk.tickets.items()}
    by_email = defaultdict(list)
    for tid, ticket in tickets.items():
        by_email[(ticket.get("requester") or {}).get("email")].append(tid)
    for conversation, handoffs in ids.items():
        found = by_email.pop(f"multi{conversation}@example.net", [])
        if len(found) != 1:
            wrong.append(f"conversation {conversation}: {len(found)} tickets {found}")
            continue
        # A brief names its own handoff (and none other): each handoff's comment, counted by that.
        named = Counter(hid for body in vendors.zendesk.comments(found[0]) for hid in set(HANDOFF_ID.findall(body)))
        wanted = Counter(handoffs)
        if named != wanted:
            wrong.append(f"conversation {conversation}, ticket {found[0]}: comments per handoff "
                         f"{dict(named)} (missing {sorted(set(wanted) - set(named))}, "
                         f"doubled {[h for h, n in named.items() if n > 1]})")
    wrong += [f"tickets of no conversation: {left}" for left in by_email.values()]
    return wrong


def _salesforce(vendors, ids: dict[int, list[str]]) -> list[str]:
    """A conversation without exactly one case; a handoff whose comments (its brief, its transcript,
    each headed `Handoff <id> · <kind> · part i/N`) are not on that case each exactly once — a
    retry's comment posted again reworded too (`test_a_resumed_salesforce_update_finds_its_brief_…`)."""
    wrong = []
    with vendors.salesforce.lock:
        cases = [dict(c) for c in vendors.salesforce.records["Case"]]
        comments = [dict(c) for c in vendors.salesforce.records["CaseComment"]]
    owner = {hid: conversation for conversation, handoffs in ids.items() for hid in handoffs}
    per_conversation = defaultdict(list)
    for case in cases:
        per_conversation[owner.get(str(case.get(HANDOFF_ID_FIELD)))].append(case["Id"])
    for conversation, handoffs in ids.items():
        found = per_conversation.pop(conversation, [])
        if len(found) != 1:
            wrong.append(f"conversation {conversation}: {len(found)} cases {found}")
            continue
        bodies = defaultdict(list)
        for comment in comments:
            if comment.get("ParentId") == found[0]:
                bodies[comment["CommentBody"].split("\n", 1)[0]].append(comment["CommentBody"])
        heads = Counter({head: len(posted) for head, posted in bodies.items()})
        for head, posted in bodies.items():
            if len(posted) > 1:
                wrong.append(f"case {found[0]}: comments posted twice {head!r}")
        for hid in handoffs:
            parts = [re.search(r" · part (\d+)/(\d+)$", head) for head in heads if hid in head]
            numbers = sorted(int(p[1]) for p in parts if p)
            totals = {int(p[2]) for p in parts if p}
            if not numbers or len(totals) != 1 or numbers != list(range(1, totals.pop() + 1)):
                wrong.append(f"case {found[0]}, handoff {hid}: comment parts {numbers}")
    wrong += [f"cases of no conversation: {left}" for left in per_conversation.values()]
    return wrong


def _slack(vendors, ids: dict[int, list[str]]) -> list[str]:
    """A conversation without exactly one alert; a later handoff without exactly one reply of its
    own (`handoff_updated`) in that alert's thread; a thread part missing or posted twice."""
    wrong = []
    with vendors.slack.lock:
        messages = [dict(m) for m in vendors.slack.channels.get(SLACK_CHANNEL, [])]

    def about(message: dict[str, Any]) -> tuple[str | None, str | None, Any]:
        meta = message.get("metadata") or {}
        payload = meta.get("event_payload") or {}
        return meta.get("event_type"), payload.get("handoff_id"), payload.get("part")

    alerts = {m["ts"]: about(m)[1] for m in messages if "thread_ts" not in m and about(m)[0] == "handoff_created"}
    for conversation, handoffs in ids.items():
        found = [ts for ts, hid in alerts.items() if hid in handoffs]
        if len(found) != 1:
            wrong.append(f"conversation {conversation}: {len(found)} alerts {found}")
            continue
        thread = [about(m) for m in messages if m.get("thread_ts") == found[0]]
        opener = alerts[found[0]]
        replies = Counter(hid for kind, hid, _ in thread if kind == "handoff_updated")
        if replies != Counter(h for h in handoffs if h != opener):
            wrong.append(f"alert {found[0]}: update replies per handoff {dict(replies)}")
        parts = Counter((hid, part) for kind, hid, part in thread if kind == "handoff_thread")
        for hid in handoffs:
            mine = sorted(part for (h, part), n in parts.items() if h == hid for _ in range(n))
            if not mine or mine != list(range(len(mine))):
                wrong.append(f"alert {found[0]}, handoff {hid}: thread parts {mine}")
    strangers = [ts for ts, hid in alerts.items() if not any(hid in h for h in ids.values())]
    if len(alerts) != len(ids) or strangers:
        wrong.append(f"{len(alerts)} alerts for {len(ids)} conversations (of none: {strangers})")
    return wrong


def test_several_handoffs_of_each_conversation_through_vendor_faults(processes, vendors, db):
    """10 conversations × 5 handoffs, posted at once through two web processes, delivered by them
    and a worker while a fifth of the vendor calls fail (5xx, 429, timeouts after acting, dropped
    connections before or after acting)."""
    vendors.configure(failure_rate=0.2, failures={"5xx": 2, "429": 1, "timeout": 1, "drop": 1}, retry_after_s=0.05,
                      stall_s=1.3, latency_s=(0.0, 0.02), seed=20261206)
    threads = {"CONNECTOR_DELIVERY_THREADS": "8"}
    webs = [processes.web(**threads), processes.web(**threads)]
    processes.worker(**threads)
    ids = _post_all([web.url for web in webs])
    handoffs = [hid for each in ids.values() for hid in each]
    assert len(set(handoffs)) == CONVERSATIONS * HANDOFFS
    wait_until(lambda: db.unfinished() == 0, 120, f"every delivery ({db.states()})", 0.5)
    # Nothing pending, retrying, dead or failed; per target, one delivery made the conversation's
    # ticket and every other one updated it.
    per_target = db.rows("SELECT target, state, count(*) FROM deliveries GROUP BY target, state")
    expected = {(target, state): n for target in ("zendesk", "salesforce", "slack")
                for state, n in (("created", CONVERSATIONS), ("updated", CONVERSATIONS * (HANDOFFS - 1)))}
    assert {(t, s): n for t, s, n in per_target} == expected, per_target
    links = db.rows("SELECT target, count(*), count(vendor_id) FROM conversation_links GROUP BY target")
    assert sorted(links) == [(t, CONVERSATIONS, CONVERSATIONS) for t in ("salesforce", "slack", "zendesk")], links
    # Every delivery of a conversation at a target names the conversation's one ticket.
    spread = db.rows("SELECT h.conversation_id, d.target, count(DISTINCT d.vendor_id) FROM deliveries d "
                     "JOIN handoffs h ON h.id = d.handoff_id GROUP BY h.conversation_id, d.target "
                     "HAVING count(DISTINCT d.vendor_id) <> 1 OR count(d.vendor_id) <> count(*)")
    assert spread == [], spread
    # The vendors' side: one ticket, case and alert per conversation, each handoff on it once.
    assert vendors.duplicates() == []
    assert _zendesk(vendors, ids) == []
    assert _salesforce(vendors, ids) == []
    assert _slack(vendors, ids) == []
    faults = {name: s["faults"] for name, s in vendors.stats().items()}
    for name, kinds in faults.items():  # the faults really happened, at every vendor
        assert {"5xx", "timeout"} <= set(kinds) and {"drop", "drop_before"} & set(kinds), (name, kinds)
    print(f"\nconversations: faults {faults}")


def test_a_resumed_salesforce_update_finds_its_brief_after_the_next_handoff(monkeypatch):
    """The adapter's half of the double the conversations scenario met, on the loopback Salesforce:
    handoff B's update posts its brief, then its transcript comment fails (503); handoff C of the
    same conversation updates the case; B's retry (attempt 2, outcome unknown), rendered as its first
    attempt was (the outbox's half: test_outbox_claims.py), finds what it posted among C's comments
    and posts only the rest."""
    from adapters.base import Link
    from adapters.errors import OutcomeUnknown
    from adapters.salesforce import SalesforceAdapter
    from connector.settings import Settings
    from tests.factories import make_context
    from tests.fakes.loopback import SALESFORCE_TOKEN, Behaviour, Loopback, Reply

    first, later = "hnd_01M951HAS0A6VRBQRRQN6EZ8VG", "hnd_01M951HATM6H6ZSKS6T7FQWWZ7"

    def ctx(hid: str, turn: int, told_up_to: int | None = None, **kwargs: Any):
        told = {"told": {"last_message_at": f"2026-11-20T10:{told_up_to:02d}:00+00:00"}} if told_up_to is not None \
            else {}
        link = Link(vendor_id=case, extra=told) if told_up_to is not None else None
        return make_context(_packet(0, turn), target="salesforce", handoff_id=hid, link=link, **kwargs)

    with Loopback(Behaviour()) as fakes:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fakes.ca_file)
        adapter = SalesforceAdapter(Settings(salesforce_instance_url=fakes.salesforce.url,
                                             salesforce_access_token=SALESFORCE_TOKEN),
                                    {"handoff_id_field": HANDOFF_ID_FIELD})
        case = None
        case = adapter.deliver(ctx(first, 0)).vendor_id
        route, failed = fakes.salesforce.route, []

        def transcript_fails_once(method, path, query, headers, body):
            if method == "POST" and "/sobjects/CaseComment" in path and " · transcript · " in str(
                    (body or {}).get("CommentBody")) and later in str((body or {}).get("CommentBody")) and not failed:
                failed.append(body)
                return Reply(503, [{"errorCode": "SERVER_ERROR", "message": "chaos"}])
            return route(method, path, query, headers, body)

        monkeypatch.setattr(fakes.salesforce, "route", transcript_fails_once)
        # B: the case was told up to message 1 (10:00): its 10:01 message is new, so its note says so.
        with pytest.raises(OutcomeUnknown):  # its brief is on the case, its transcript is not
            adapter.deliver(ctx(later, 1, told_up_to=0))
        assert failed
        # C (a later handoff of the conversation) updated the case meanwhile: told up to 10:04.
        adapter.deliver(ctx("hnd_01M951HAW0000000000000000C", 4, told_up_to=0))
        # B again, as the outbox builds its next attempt: rendered against the link as B's first attempt
        # saw it, not as C left it (`outbox.RENDERED_AS`; test_outbox_claims.py shows the outbox does):
        # the same comments, found by their text — none posted twice, none skipped that differs.
        again = adapter.deliver(ctx(later, 1, told_up_to=0, attempt=2, outcome_unknown=True))
        briefs = [c["CommentBody"] for c in fakes.salesforce.records["CaseComment"]
                  if c["CommentBody"].startswith(f"Handoff {later} · brief")]
    assert again.status == "updated"
    assert len(briefs) == 1, briefs
