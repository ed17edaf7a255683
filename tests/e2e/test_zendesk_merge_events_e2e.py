"""Zendesk end to end: a ticket an agent merged into another (Zendesk closes it, tagged
`closed_by_merge`) — the conversation is linked to the ticket it was merged into, and its handoffs
are completed when that ticket is solved (`connector.merges`, `assignments.complete`)."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
import responses
from requests.exceptions import ReadTimeout
from sqlalchemy import select, update

from adapters.call_deadline import whole_call_s
from connector import merges
from connector.merges import EVENT_READS_S, NOTHING_LINKED
from connector.models import Callback, ConversationLink, Handoff
from tests.conftest import auth
from tests.e2e.test_zendesk_e2e import ZENDESK, post, signed_post
from tests.factories import full_packet
from tests.fakes.zendesk import FakeZendesk, fixture

MERGED = "merged into ticket 88001: its handoffs are completed when that ticket is solved"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def zendesk(request):
    """A client of an app delivering to Zendesk, on SQLite and PostgreSQL (the database first, so it
    is dropped after the app stops), and the fake Zendesk."""
    database = {"database_url": request.getfixturevalue("postgres_url")} if request.param == "postgres" else {}
    client = request.getfixturevalue("make_app")(**ZENDESK, **database).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield client, FakeZendesk(rsps)


def status_changed(client, ticket_id: int, handoff_id: str | None, event_id: str, status: str, *,
                   merged: bool = False, at: dt.datetime | None = None):
    """Zendesk's `ticket.status_changed`, signed as Zendesk signs (written out here, not our verifier)."""
    body = fixture("event-agent-assignment-changed.json")
    body.update(type="zen:event-type:ticket.status_changed", id=event_id, subject=f"zen:ticket:{ticket_id}",
                time=(at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                event={"current": status, "previous": "OPEN"})
    body["detail"].update(id=str(ticket_id), external_id=handoff_id, status=status,
                          tags=["handoff", *(["closed_by_merge"] if merged else [])])
    return signed_post(client, body)


def assigned(client, ticket_id: int, event_id: str, agent: str = "381156009921", previous: str | None = None):
    body = fixture("event-agent-assignment-changed.json")
    body.update(id=event_id, subject=f"zen:ticket:{ticket_id}", time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                event={"current": agent, "previous": previous})
    body["detail"].update(id=str(ticket_id), external_id=None)
    return signed_post(client, body)


def came_back(text: str) -> dict:
    packet = full_packet()
    packet["transcript"].append({"at": "2026-11-27T11:00:00Z", "role": "customer", "text": text})
    return packet


def completed_at(client, handoff_id: str):
    return client.get(f"/v1/handoffs/{handoff_id}", headers=auth()).get_json()["completed_at"]


def link_of(client) -> tuple[str | None, str | None]:
    with client.application.extensions["connector"].db.reading() as session:
        link = session.scalars(select(ConversationLink).where(ConversationLink.target == "zendesk")).one()
        return link.vendor_id, link.url


def merged_into_open(zd, into: int = 88001) -> None:
    """Ticket 1001 was merged into `into`, open: its audits say so, and Zendesk shows that one."""
    zd.audits(1001, merged_into=into)
    zd.show_ticket(into, status="open")


def first_handoff(client, zd) -> str:
    zd.search(results=[])
    zd.create_ticket({"id": 1001})
    body = post(client, full_packet()).get_json()
    assert body["tickets"][0]["id"] == "1001"
    return body["id"]


def test_a_handoff_whose_ticket_was_merged_is_completed_when_the_ticket_it_went_into_is_solved(zendesk):
    """The merge's close is no completion (agents have only begun on the problem, under another
    number); the solve of the ticket it was merged into is — with no later handoff to say where it went."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    merged_into_open(zd)
    merge = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert merge.status_code == 200, merge.get_json()
    assert merge.get_json() == {"outcome": "recorded", "detail": MERGED, "handoff_id": first}
    assert completed_at(client, first) is None
    assert link_of(client) == ("88001", "https://acme.zendesk.com/agent/tickets/88001")

    solved = status_changed(client, 88001, None, "evt-solved", "SOLVED")
    assert solved.get_json() == {"outcome": "recorded", "detail": "completed", "handoff_id": first}
    assert completed_at(client, first) is not None
    again = status_changed(client, 88001, None, "evt-solved-copy", "CLOSED")
    assert again.get_json()["outcome"] == "duplicate"


def test_the_next_handoff_after_a_merge_updates_the_ticket_it_went_into_straight_away(zendesk):
    client, zd = zendesk
    first = first_handoff(client, zd)
    merged_into_open(zd)
    assert status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()["outcome"] == "recorded"
    zd.update_ticket(88001)
    second = post(client, came_back("It broke again.")).get_json()
    assert second["tickets"][0]["status"] == "updated" and second["tickets"][0]["id"] == "88001"
    assert zd.calls("PUT", "/api/v2/tickets/1001.json") == []  # the merged ticket is not tried
    assert len(zd.calls("GET", "/api/v2/tickets/1001/audits.json")) == 1  # the merge event's read only
    # One solve completes both: the later handoff on the ticket, and the one whose ticket went into it.
    solved = status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()
    assert solved == {"outcome": "recorded", "detail": "completed", "handoff_id": second["id"]}
    assert completed_at(client, first) is not None and completed_at(client, second["id"]) is not None


def test_a_merge_followed_by_the_next_handoffs_update_completes_the_first_at_the_solve_too(zendesk):
    """No merge event reached us (the webhook was set up after it): the second handoff's update met
    the closed ticket, followed the merge and moved the link; the solve completes the first handoff too."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.error("PUT", "/api/v2/tickets/1001.json", 422, "error-422-closed-ticket.json")
    zd.audits(1001, merged_into=88001)
    zd.update_ticket(88001)
    second = post(client, came_back("It broke again.")).get_json()
    assert second["tickets"][0]["id"] == "88001"
    solved = status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()
    assert solved == {"outcome": "recorded", "detail": "completed", "handoff_id": second["id"]}
    assert completed_at(client, first) is not None


def test_the_bot_hears_completed_of_the_ticket_its_handoffs_went_into(make_app):
    from tests.test_callbacks import TWO_SECRETS

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        app = make_app(**ZENDESK, bot_secrets=TWO_SECRETS)
        client, zd = app.test_client(), FakeZendesk(rsps)
        zd.search(results=[])
        zd.create_ticket({"id": 1001})
        packet = full_packet(callback={"url": "https://bot.example.com/handoff-status", "events": ["completed"]})
        first = post(client, packet).get_json()["id"]
        merged_into_open(zd)
        status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
        status_changed(client, 88001, None, "evt-solved", "SOLVED")
        with app.extensions["connector"].db.reading() as session:
            [row] = session.scalars(select(Callback).where(Callback.handoff_id == first, Callback.state == "completed"))
            told = row.body
    # The solved ticket, with its own page — not the merged ticket's page beside the other's number.
    assert told["ticket"] == {"target": "zendesk", "status": "created", "id": "88001",
                              "url": "https://acme.zendesk.com/agent/tickets/88001"}


@pytest.mark.parametrize("audits", ["not merged", "refused"])
def test_a_close_by_a_merge_that_cannot_be_followed_completes_the_handoff_as_any_close(zendesk, audits):
    client, zd = zendesk
    first = first_handoff(client, zd)
    if audits == "not merged":
        zd.audits(1001)
    else:  # an OAuth token without the global `read` scope the audits need
        zd.error("GET", "/api/v2/tickets/1001/audits.json", 403, {"error": "Forbidden"})
    answer = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()
    assert answer == {"outcome": "recorded", "detail": "completed", "handoff_id": first}
    assert completed_at(client, first) is not None
    assert link_of(client)[0] == "1001"


def test_a_merge_whose_record_cannot_be_read_now_is_refused_for_zendesk_to_send_again(zendesk):
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.raises("GET", "/api/v2/tickets/1001/audits.json", ReadTimeout("read timed out"))
    refused = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    assert "ticket 1001" in refused.get_json()["detail"]
    assert completed_at(client, first) is None and link_of(client)[0] == "1001"
    merged_into_open(zd)
    again = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert again.get_json()["detail"] == MERGED and link_of(client)[0] == "88001"


def test_a_merge_events_reads_end_before_zendesk_stops_waiting_for_the_answer(zendesk):
    """Zendesk waits 10 s for a webhook's answer: each read's timeout is what is left of the event's
    allowance, never the delivery timeout (15 s, a whole call up to 30 s), which answered the 503
    after Zendesk had counted the event failed — and sent it no more."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    merged_into_open(zd)
    zd.show_ticket(88001, status="open")  # read again once the link names it
    started = len(zd.rsps.calls)
    assert status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()["detail"] == MERGED
    reads = [call.request.req_kwargs["timeout"] for call in zd.rsps.calls[started:]]
    # Each whole call within what is left (connecting and answering): a read's timeout of what was
    # left may take twice that, and answered after Zendesk had stopped waiting (a review).
    assert len(reads) == 3 and all(0 < whole_call_s(timeout) <= EVENT_READS_S for timeout in reads), reads


@pytest.mark.parametrize("read_s", [2.5, 3.5])
def test_a_slow_zendesk_gets_its_merge_followed_within_zendesks_wait_or_on_the_resend(zendesk, monkeypatch, read_s):
    """A review: with 4.5 s for the reads, a Zendesk taking 2.5 s a read timed the second out at every
    resend — the merge never followed, the handoff never completed. Each read here takes `read_s` on a
    clock of the test's, or times out at the timeout it was given."""
    from types import SimpleNamespace

    from adapters import zendesk as zendesk_module
    from adapters.errors import TransientError
    from adapters.zendesk import ZendeskAdapter

    client, zd = zendesk
    first = first_handoff(client, zd)
    clock, spent = [1000.0], []
    slow = SimpleNamespace(monotonic=lambda: clock[0])
    monkeypatch.setattr(zendesk_module, "time", slow)
    monkeypatch.setattr(merges, "time", slow)
    real = ZendeskAdapter._call

    def slow_call(self, method, path, *, timeout=None, **kwargs):
        assert whole_call_s(timeout) <= EVENT_READS_S - sum(spent) + 1e-9  # never past what is left
        took = min(read_s, timeout[1])  # an answer slower than the read timeout: timed out
        clock[0] += took
        spent.append(took)
        if took < read_s:
            raise TransientError(f"read timed out ({took:.2f} s)")
        return real(self, method, path, timeout=timeout, **kwargs)

    monkeypatch.setattr(ZendeskAdapter, "_call", slow_call)
    merged_into_open(zd)
    zd.show_ticket(88001, status="open")  # read again once the link names it
    answer = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert sum(spent) <= EVENT_READS_S < 10  # answered before Zendesk stops waiting
    if read_s == 2.5:
        assert answer.get_json()["detail"] == MERGED
    else:  # the third read timed out: refused, but the links moved — the resend reads 88001 alone
        assert answer.status_code == 503 and link_of(client)[0] == "88001"
        spent.clear()
        assert status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).status_code == 200
        assert spent == [read_s] and link_of(client)[0] == "88001"
    assert status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()["handoff_id"] == first
    assert completed_at(client, first) is not None


def test_a_merge_whose_reads_use_up_their_time_is_refused_for_zendesk_to_send_again(zendesk, monkeypatch):
    client, zd = zendesk
    first = first_handoff(client, zd)
    monkeypatch.setattr(merges, "EVENT_READS_S", 0.0)  # nothing asked of Zendesk: the time is up
    refused = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    assert completed_at(client, first) is None and link_of(client)[0] == "1001"


def test_a_merge_of_a_ticket_no_handoff_reached_asks_zendesk_nothing(zendesk):
    client, _zd = zendesk  # every call to the fake would have to be registered
    answer = status_changed(client, 5005, None, "evt-merge", "CLOSED", merged=True).get_json()
    assert answer == {"outcome": "ignored", "detail": NOTHING_LINKED, "handoff_id": None}


def test_the_solve_leaves_the_handoffs_of_other_conversations_waiting(zendesk):
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.search(results=[])
    zd.create_ticket({"id": 1002})
    other = full_packet()
    other["conversation"]["id"] = "conv-other"
    elsewhere = post(client, other).get_json()["id"]
    merged_into_open(zd)
    status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()["handoff_id"] == first
    assert completed_at(client, elsewhere) is None  # its ticket is another


def test_merges_whose_events_come_out_of_order_are_followed_to_the_ticket_still_in_use(zendesk):
    """1001 was merged into 88001, and 88001 into 99001; 88001's event came first (Zendesk keeps no
    order; a 503 sends one again later): 1001's is followed through 88001, closed by its own merge."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    early = status_changed(client, 88001, None, "evt-merge-2", "CLOSED", merged=True).get_json()
    assert early == {"outcome": "ignored", "detail": NOTHING_LINKED, "handoff_id": None}
    zd.audits(1001, merged_into=88001)
    zd.show_ticket(88001, status="closed", tags=["handoff", "closed_by_merge"])
    zd.audits(88001, merged_into=99001)
    zd.show_ticket(99001, status="open")
    answer = status_changed(client, 1001, first, "evt-merge-1", "CLOSED", merged=True).get_json()
    assert answer["detail"].startswith("merged into ticket 99001") and link_of(client)[0] == "99001"
    assert status_changed(client, 99001, None, "evt-solved", "SOLVED").get_json()["handoff_id"] == first
    assert completed_at(client, first) is not None


def test_a_merge_into_a_ticket_solved_already_completes_the_handoff_at_once(zendesk):
    """The solve of the ticket it went into came first ("merge and solve", or a merge event sent
    again after a 503): nothing would complete the handoff after it."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    assert status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()["outcome"] == "ignored"
    zd.audits(1001, merged_into=88001)
    zd.show_ticket(88001, status="solved")
    answer = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()
    assert answer == {"outcome": "recorded", "detail": "completed", "handoff_id": first}
    assert completed_at(client, first) is not None and link_of(client)[0] == "88001"


def test_a_copy_of_a_merge_event_reads_only_the_ticket_its_handoff_waits_on(zendesk):
    client, zd = zendesk
    first = first_handoff(client, zd)
    merged_into_open(zd)
    assert status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()["outcome"] == "recorded"
    assert len(zd.calls("GET", "/api/v2/tickets/88001.json")) == 2  # read again once the link named it
    copy = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()
    assert copy == {"outcome": "ignored", "detail": NOTHING_LINKED, "handoff_id": None}
    assert len(zd.calls("GET", "/api/v2/tickets/1001/audits.json")) == 1
    assert len(zd.calls("GET", "/api/v2/tickets/88001.json")) == 3
    assert completed_at(client, first) is None


def test_an_agent_taking_the_ticket_a_handoffs_went_into_takes_the_handoff(zendesk):
    client, zd = zendesk
    first = first_handoff(client, zd)
    merged_into_open(zd)
    status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    taken = assigned(client, 88001, "evt-taken").get_json()
    assert taken["outcome"] == "recorded" and taken["handoff_id"] == first
    read = client.get(f"/v1/handoffs/{first}", headers=auth()).get_json()
    assert read["assigned"]["agent_id"] == "381156009921"


def test_a_customer_back_just_after_the_solve_of_the_ticket_their_handoff_went_into_is_not_done(zendesk):
    """The solve's webhook came late: the handoff stored after it updated (reopened) the ticket and waits."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    merged_into_open(zd)
    status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    solved_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with client.application.extensions["connector"].db.session() as session:  # the first, stored well before
        session.execute(update(Handoff).where(Handoff.id == first)
                        .values(created_at=solved_at - dt.timedelta(minutes=10)))
    time.sleep(3.1)  # past the clocks' ordinary difference (TICKET_HAD_ONE_SKEW)
    zd.update_ticket(88001)
    second = post(client, came_back("Actually it is still broken.")).get_json()
    answer = status_changed(client, 88001, None, "evt-solved", "SOLVED", at=solved_at).get_json()
    assert answer["handoff_id"] == first
    assert completed_at(client, first) is not None and completed_at(client, second["id"]) is None


def test_the_agent_the_ticket_a_handoffs_went_into_has_holds_the_handoff(zendesk):
    """Merge targets usually have an agent already: no event says they took it, yet the customer waits on them."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.audits(1001, merged_into=88001)
    zd.show_ticket(88001, status="open", assignee=381156004412)
    status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    read = client.get(f"/v1/handoffs/{first}", headers=auth()).get_json()
    assert (read["assigned"]["agent_id"], read["assigned"]["routed"]) == ("381156004412", True)
    # Another agent taking it from them is the one the customer waited for.
    taken = assigned(client, 88001, "evt-taken", agent="20978392", previous="381156004412").get_json()
    assert taken["outcome"] == "recorded" and taken["handoff_id"] == first
    assert client.get(f"/v1/handoffs/{first}", headers=auth()).get_json()["assigned"]["agent_id"] == "20978392"


def test_a_solve_handled_while_the_merge_was_being_read_is_not_lost(zendesk, monkeypatch):
    """A review: merge and solve came together; the solve, handled between the merge's read of the
    target (open) and the links' move, found nothing linked to it — the handoff waited for ever."""
    from adapters.zendesk import ZendeskAdapter

    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.audits(1001, merged_into=88001)
    zd.show_ticket(88001, status="open")
    zd.show_ticket(88001, status="solved")  # read again once the link names it
    real = ZendeskAdapter.merge_end

    def solved_meanwhile(self, gone, deadline=None):
        end = real(self, gone, deadline)
        assert status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()["outcome"] == "ignored"
        return end

    monkeypatch.setattr(ZendeskAdapter, "merge_end", solved_meanwhile)
    answer = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()
    assert answer == {"outcome": "recorded", "detail": "completed", "handoff_id": first}
    assert completed_at(client, first) is not None


def test_a_resend_after_the_links_moved_completes_a_handoff_whose_ticket_was_solved_meanwhile(zendesk):
    """A review: the read after the move failed (a 503), the solve came and found the links moved
    — the handoff's resend found nothing linked to the merged ticket and ignored it."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.audits(1001, merged_into=88001)
    zd.show_ticket(88001, status="open")
    zd.raises("GET", "/api/v2/tickets/88001.json", ReadTimeout("read timed out"))
    assert status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).status_code == 503
    assert link_of(client)[0] == "88001"
    zd.show_ticket(88001, status="solved")
    resent = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()
    assert resent == {"outcome": "recorded", "detail": "completed", "handoff_id": first}


def test_the_bot_hears_assigned_with_the_page_of_the_ticket_its_handoffs_went_into(make_app):
    from tests.test_callbacks import TWO_SECRETS

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        app = make_app(**ZENDESK, bot_secrets=TWO_SECRETS)
        client, zd = app.test_client(), FakeZendesk(rsps)
        zd.search(results=[])
        zd.create_ticket({"id": 1001})
        packet = full_packet(callback={"url": "https://bot.example.com/handoff-status", "events": ["assigned"]})
        first = post(client, packet).get_json()["id"]
        merged_into_open(zd)
        status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
        assert assigned(client, 88001, "evt-taken").get_json()["handoff_id"] == first
        with app.extensions["connector"].db.reading() as session:
            [row] = session.scalars(select(Callback).where(Callback.handoff_id == first, Callback.state == "assigned"))
    assert row.body["ticket"] == {"target": "zendesk", "status": "created", "id": "88001",
                                  "url": "https://acme.zendesk.com/agent/tickets/88001"}


def read(client, handoff_id: str) -> dict:
    return client.get(f"/v1/handoffs/{handoff_id}", headers=auth()).get_json()


def test_a_resend_after_the_links_moved_records_the_agent_the_ticket_has(zendesk):
    """A review: the read after the move failed (a 503) before the target's agent was recorded; the
    resend only looked for a solve, and a later take from that agent was a reassignment — never assigned."""
    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.audits(1001, merged_into=88001)
    zd.show_ticket(88001, status="open", assignee=381156004412)
    zd.raises("GET", "/api/v2/tickets/88001.json", ReadTimeout("read timed out"))
    assert status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).status_code == 503
    zd.show_ticket(88001, status="open", assignee=381156004412)
    status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True)
    assert read(client, first)["assigned"]["agent_id"] == "381156004412"
    taken = assigned(client, 88001, "evt-taken", agent="20978392", previous="381156004412").get_json()
    assert (taken["outcome"], taken["handoff_id"]) == ("recorded", first)


def test_a_merge_of_the_target_handled_while_the_merge_was_read_is_followed_too(zendesk, monkeypatch):
    """A review: 88001 was merged into 99001 while 1001's merge into it was handled; 88001's own event
    found nothing linked to it, and the link stayed on 88001, closed — 99001's solve completed nothing."""
    from adapters.zendesk import ZendeskAdapter

    client, zd = zendesk
    first = first_handoff(client, zd)
    zd.audits(1001, merged_into=88001)
    zd.show_ticket(88001, status="open")
    zd.show_ticket(88001, status="closed", tags=["handoff", "closed_by_merge"])  # read again once linked
    zd.audits(88001, merged_into=99001)
    zd.show_ticket(99001, status="open")
    real = ZendeskAdapter.merge_end

    def merged_on_meanwhile(self, gone, deadline=None):
        end = real(self, gone, deadline)
        assert status_changed(client, 88001, None, "evt-merge-2", "CLOSED", merged=True).get_json()["outcome"] == \
            "ignored"
        return end

    monkeypatch.setattr(ZendeskAdapter, "merge_end", merged_on_meanwhile)
    answer = status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()
    assert answer["detail"].startswith("merged into ticket 99001") and link_of(client)[0] == "99001"
    assert status_changed(client, 99001, None, "evt-solved", "SOLVED").get_json()["handoff_id"] == first


def test_a_merge_event_before_the_handoff_recorded_its_ticket_is_refused_for_zendesk_to_send_again(zendesk):
    """A review: answered `ignored` while the create's outcome was unknown, the retry then linked the
    conversation to the merged ticket and nothing followed the merge."""
    client, zd = zendesk
    zd.search(results=[])
    zd.raises("POST", "/api/v2/tickets.json", ReadTimeout("read timed out"))
    handoff = post(client, full_packet()).get_json()
    assert handoff["tickets"][0]["status"] == "pending"
    refused = status_changed(client, 1001, handoff["id"], "evt-merge", "CLOSED", merged=True)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    assert "not recorded its ticket yet" in refused.get_json()["detail"]


def test_a_merge_event_for_a_handoff_whose_create_was_given_up_is_answered(zendesk):
    """A review: a given-up create with an unknown outcome will record no ticket: every resend was a 503."""
    from sqlalchemy import update as change

    from connector.models import Delivery

    client, zd = zendesk
    zd.search(results=[])
    zd.raises("POST", "/api/v2/tickets.json", ReadTimeout("read timed out"))
    handoff = post(client, full_packet()).get_json()
    with client.application.extensions["connector"].db.session() as session:
        session.execute(change(Delivery).values(state="dead"))
    answer = status_changed(client, 1001, handoff["id"], "evt-merge", "CLOSED", merged=True)
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "ignored"


@pytest.mark.parametrize("holder", [None, 381156004412])
def test_an_older_chat_merged_into_a_ticket_whose_newer_merged_chat_was_solved_is_taken_there(zendesk, holder):
    # A review: a customer's two chats merged into their e-mail ticket (none of ours), the newer one's
    # solved before the older one's came in: a take, or the agent the ticket has, went to the completed
    # handoff — the waiting one was never assigned.
    client, zd = zendesk
    older = first_handoff(client, zd)  # conv-1 on 1001
    zd.search(results=[])
    zd.create_ticket({"id": 1002})
    packet = full_packet()
    packet["conversation"]["id"] = "conv-newer"
    newer = post(client, packet).get_json()["id"]
    zd.audits(1002, merged_into=88001)
    zd.show_ticket(88001, status="open")
    assert status_changed(client, 1002, newer, "evt-merge-n", "CLOSED", merged=True).get_json()["outcome"] == "recorded"
    assert status_changed(client, 88001, None, "evt-solved", "SOLVED").get_json()["handoff_id"] == newer
    time.sleep(1.1)  # the customer writes again, 88001 reopens; Zendesk's times are whole seconds
    zd.audits(1001, merged_into=88001)
    zd.show_ticket(88001, status="open", **({"assignee": holder} if holder else {}))
    assert status_changed(client, 1001, older, "evt-merge-o", "CLOSED", merged=True).get_json()["outcome"] == "recorded"
    if holder is None:
        assert assigned(client, 88001, "evt-taken").get_json()["handoff_id"] == older
    read = client.get(f"/v1/handoffs/{older}", headers=auth()).get_json()
    assert read["assigned"]["agent_id"] == str(holder or "381156009921") and read["completed_at"] is None


def test_messages_after_the_merge_event_moved_the_link_carry_the_whole_brief_to_the_ticket_it_went_into(zendesk):
    # A review: the merge's event (the normal order with webhooks) moved the conversation's link to 88001
    # before any update met the closed ticket; the next batch's short note went there, pointing its agent
    # to "the handoff's brief above" — which is on 1001.
    from tests.e2e.test_follow_ups_e2e import SAID, send

    client, zd = zendesk
    first = first_handoff(client, zd)
    merged_into_open(zd)
    assert status_changed(client, 1001, first, "evt-merge", "CLOSED", merged=True).get_json()["outcome"] == "recorded"
    zd.update_ticket(88001)
    zd.update_ticket(88001)
    assert send(client, first).get_json()["tickets"][0]["id"] == "88001"
    again = [{"at": "2026-11-20T09:40:00Z", "role": "customer", "text": "Hello?"}]
    assert send(client, first, again).get_json()["tickets"][0]["id"] == "88001"
    whole, short = (body["ticket"]["comment"]["html_body"] for body in zd.json_bodies("PUT", "/api/v2/tickets/88001.json"))
    assert "brief above has the rest" not in whole and "Self-service reconnect failed twice" in whole
    assert whole.startswith(f"<p><em>Messages the customer sent while handoff {first} waited (2 messages, marked "
                            "[new] in the transcript). This conversation&#x27;s ticket 1001 was merged into this "
                            "one, so the handoff&#x27;s whole brief is here with them.</em></p>"), whole[:400]
    rows = re.findall(r"<p><small>[\d:]+</small> (.*?)</p>", whole)
    assert [row for row in rows if row.startswith("<strong>[new]</strong>")] == [
        f"<strong>[new]</strong> <strong>Customer</strong>: {message['text']}" for message in SAID]
    # The next batch finds the first one's whole brief on 88001: its own messages alone.
    assert "brief above has the rest" in short and "Self-service reconnect failed twice" not in short
