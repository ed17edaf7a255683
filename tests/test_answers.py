"""`answers.rescued`: the one rule by which a failed handoff shows the tickets its follow-ups reached,
for the ORM's rows (every read of a handoff) and the status callback's dicts (`callbacks.on_given_up`)."""

from __future__ import annotations

from operator import itemgetter
from types import SimpleNamespace

from connector.answers import rescued


def _row(target: str, state: str, vendor_id: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(target=target, state=state, vendor_id=vendor_id)


def test_each_target_shows_the_newest_ticket_a_follow_up_reached():
    own = [_row("zendesk", "failed"), _row("slack", "failed")]
    later = [_row("zendesk", "created", "1"), _row("zendesk", "failed"), _row("zendesk", "created", "2")]

    shown = rescued(own, later)

    assert [(d.target, d.state, d.vendor_id) for d in shown] == [("zendesk", "created", "2"),
                                                                  ("slack", "failed", None)]


def test_a_follow_up_that_reached_nothing_changes_nothing():
    own = [_row("zendesk", "failed")]

    assert rescued(own, [_row("zendesk", "failed"), _row("zendesk", "pending")]) == own


def test_the_status_callbacks_dicts_follow_the_same_rule():
    own = [{"target": "zendesk", "status": "failed", "id": None}, {"target": "salesforce", "status": "failed", "id": None}]
    later = [{"target": "salesforce", "status": "updated", "id": "500A"},
             {"target": "salesforce", "status": "created", "id": "500B"}]

    shown = rescued(own, later, itemgetter("target"), itemgetter("status"))

    assert [t["id"] for t in shown] == [None, "500B"]


def test_a_wait_runs_out_when_the_minutes_the_customer_was_told_are_over():
    # A review: a 20 s wait ("about 1 minute") was dropped after 20 s, a 0 s one at once; a row
    # stored without `if_delayed` would have said "about 5 minutes" beside no wait.
    import datetime as dt
    from types import SimpleNamespace

    from connector.answers import wait_ran_out
    from connector.models import utcnow

    def handoff(wait_s, ago_s, message=None):  # type: ignore[no-untyped-def]
        return SimpleNamespace(estimated_wait_seconds=wait_s, created_at=utcnow() - dt.timedelta(seconds=ago_s),
                               customer_message={"text": "…", "if_delayed": "…"} if message is None else message)

    assert not wait_ran_out(handoff(20, 30)) and wait_ran_out(handoff(20, 61))
    assert not wait_ran_out(handoff(0, 0)) and not wait_ran_out(handoff(300, 299)) and wait_ran_out(handoff(300, 301))
    assert not wait_ran_out(handoff(300, 3600, message={"text": "about 5 minutes"}))  # nothing to say instead
    assert not wait_ran_out(handoff(None, 3600))


def test_routings_own_agent_changes_nothing_the_customer_was_told():
    # A sticky rule's agent, on the ticket from its making: the wait and the team's hours were said
    # knowing it. Counted as someone taking it, the wait went and "closes at 18:00" stood instead
    # of "about 5 minutes". An agent who took it drops both.
    from connector.answers import Holder, render
    from connector.models import utcnow

    message = {"locale": "en", "text": "… in about 5 minutes.", "if_delayed": "… We close at 18:00.",
               "if_assigned": "… as soon as they're free."}
    handoff = SimpleNamespace(id="hnd_1", conversation_id="c", packet={}, completed_at=None, assignment={}, customer_message=message,
                              estimated_wait_seconds=300, created_at=utcnow(), deliveries=[])
    rows = [SimpleNamespace(target="zendesk", state="created", vendor_id="1", url=None, attempts=1,
                            last_error=None, receipt=None, next_attempt_at=None)]
    alone, routed = render(handoff, rows), render(handoff, rows, holder=Holder(routed=True, agent="Dana"))
    taken = render(handoff, rows, holder=Holder(routed=False, agent="Sam"))
    assert (routed["customer_message"], routed["estimated_wait_seconds"]) == (alone["customer_message"], 300)
    assert (taken["customer_message"]["text"], taken["estimated_wait_seconds"]) == ("… as soon as they're free.", None)


def test_the_teams_hours_are_no_longer_said_once_the_opening_they_told_of_has_come():
    # A bot developer's review: "the team is away, we open again at 09:00 Monday" was still the
    # message a read showed on Tuesday afternoon (callbacks are rendered by the same `render`).
    import datetime as dt

    from connector.answers import hours_passed, render
    from connector.models import utcnow

    message = {"locale": "en", "text": "… The team is away: we open again at 09:00 Monday.",
               "if_assigned": "… as soon as they're free."}
    rows = [SimpleNamespace(target="zendesk", state="created", vendor_id="1", url=None, attempts=1,
                            last_error=None, receipt=None, next_attempt_at=None)]

    def read(opening: dt.datetime, out_of_hours: bool = True, state: str = "created") -> str:
        hours = {"next_opening" if out_of_hours else "reopens_at": opening.isoformat()}
        handoff = SimpleNamespace(id="hnd_1", conversation_id="c", packet={}, completed_at=None, customer_message=message, created_at=utcnow(),
                                  assignment={"out_of_hours": out_of_hours, "business_hours": hours},
                                  estimated_wait_seconds=None, deliveries=[])
        return render(handoff, [SimpleNamespace(**{**vars(rows[0]), "state": state})])["customer_message"]["text"]

    past, ahead = utcnow() - dt.timedelta(hours=30), utcnow() + dt.timedelta(hours=30)
    assert read(ahead) == message["text"] and read(past) == message["if_assigned"]
    assert read(past, out_of_hours=False) == message["if_assigned"]  # "closing": its reopening has come too
    assert read(past, state="dead") != message["if_assigned"]  # failed keeps its apology
    assert not hours_passed(SimpleNamespace(assignment={"out_of_hours": True, "business_hours": {"next_opening": "x"}}))


def test_after_the_teams_midnight_a_read_says_the_opening_is_today():
    # A review: "we open again at 09:00 tomorrow", composed at intake, was read after midnight (a
    # `delivered` callback the next morning) until the opening itself had come.
    import datetime as dt

    from connector.answers import render
    from connector.models import utcnow

    message = {"locale": "en", "text": "… we open again at 09:00 tomorrow.", "if_assigned": "… as soon as they're free."}
    today = "… we open again at 09:00 today."
    row = SimpleNamespace(target="zendesk", state="created", vendor_id="1", url=None, attempts=1, last_error=None,
                          receipt=None, next_attempt_at=None)

    def read(day_came: dt.datetime, opening: dt.datetime, state: str = "created") -> str:
        handoff = SimpleNamespace(id="hnd_1", conversation_id="c", packet={}, completed_at=None, created_at=utcnow(),
                                  customer_message={**message, "later": [{"from": day_came.isoformat(), "text": today}]},
                                  assignment={"out_of_hours": True,
                                              "business_hours": {"next_opening": opening.isoformat()}},
                                  estimated_wait_seconds=None, deliveries=[])
        return render(handoff, [SimpleNamespace(**{**vars(row), "state": state})])["customer_message"]["text"]

    now = utcnow()
    assert read(now + dt.timedelta(hours=1), now + dt.timedelta(hours=9)) == message["text"]  # before midnight
    assert read(now - dt.timedelta(hours=1), now + dt.timedelta(hours=9)) == today
    assert read(now - dt.timedelta(hours=9), now - dt.timedelta(hours=1)) == message["if_assigned"]  # opened since
    assert read(now - dt.timedelta(hours=1), now + dt.timedelta(hours=9), state="dead") != today


def test_a_solved_handoff_quotes_no_wait_and_says_no_hours():
    # A review: the test of completion quoted no wait to begin with.
    import datetime as dt

    from connector.answers import render
    from connector.models import utcnow

    message = {"locale": "en", "text": "… in about 5 minutes.", "if_delayed": "… soon. We close at 18:00.",
               "if_assigned": "… as soon as they're free."}
    rows = [SimpleNamespace(target="zendesk", state="created", vendor_id="1", url=None, attempts=1,
                            last_error=None, receipt=None, next_attempt_at=None)]
    handoff = SimpleNamespace(id="hnd_1", conversation_id="c", packet={}, assignment={}, customer_message=message,
                              estimated_wait_seconds=300, created_at=utcnow(), deliveries=[], completed_at=None)
    assert render(handoff, rows)["estimated_wait_seconds"] == 300
    handoff.completed_at = utcnow() - dt.timedelta(minutes=1)
    solved = render(handoff, rows)
    assert (solved["estimated_wait_seconds"], solved["customer_message"]["text"]) == (None, "… as soon as they're free.")


def test_the_agent_who_has_it_is_named_as_routing_names_one():
    # `assignment.agent` names who has the handoff once one is recorded: their name, else their id.
    from connector.answers import Holder, holding

    assert holding(SimpleNamespace(event_id="evt", routed=False, agent_name="Dana", agent_id="agent-7")) == Holder(False, "Dana", "agent-7")
    assert holding(SimpleNamespace(event_id="evt", routed=True, agent_name=None, agent_id="agent-9")) == Holder(True, "agent-9", "agent-9")
    assert holding(None) is None
    # Found holding the conversation's ticket by an update (`assignments.held`): recorded routed (no
    # wait observed), answered as an agent who has it — no wait quoted beside them (a review).
    held = SimpleNamespace(event_id="held:hnd_2", routed=True, agent_name=None, agent_id="agent-9")
    assert holding(held) == Holder(False, "agent-9", "agent-9")


def test_routings_own_agent_keeps_routings_label_when_the_vendor_reports_it_by_id():
    # A review: Zendesk reports the assignee routing gave the ticket by id alone, and every read
    # then showed "381726354" where routing had said "Dana Smith".
    from connector.answers import holding, render
    from connector.models import utcnow

    handoff = SimpleNamespace(id="hnd_1", conversation_id="c", customer_message=None, packet={},
                              assignment={"team": "billing", "agent": "Dana Smith", "rule": "sticky",
                                          "previous_agent": {"id": "381726354", "name": "Dana Smith"}},
                              completed_at=None, estimated_wait_seconds=None, created_at=utcnow(), deliveries=[])
    rows = [SimpleNamespace(target="zendesk", state="created", vendor_id="1", url=None, attempts=1,
                            last_error=None, receipt=None, next_attempt_at=None)]

    def agent(routed: bool, agent_id: str = "381726354") -> str:
        taken = holding(SimpleNamespace(event_id="evt", routed=routed, agent_name=None, agent_id=agent_id))
        return render(handoff, rows, holder=taken)["assignment"]["agent"]

    assert agent(routed=True) == "Dana Smith"
    assert agent(routed=False) == "Dana Smith"  # the same agent, recorded taking it
    # Nobody recorded: routing's agent while its ticket is made with them; none once the handoff only
    # updated the conversation's ticket, which routes nothing (a ticket handed back to its group told
    # the bot "Dana Smith" has it; a review).
    handoff.assignment["previous_agent"]["target"] = "zendesk"
    assert render(handoff, rows)["assignment"]["agent"] == "Dana Smith"
    updated = [SimpleNamespace(**{**vars(rows[0]), "state": "updated"})]
    assert render(handoff, updated)["assignment"]["agent"] is None
    # Nor once that target gave up: no ticket was made with them (a review: the apology, or a Slack
    # alert alone, beside "Dana Smith").
    for given_up in ("failed", "dead", "dismissed"):
        gone = [SimpleNamespace(**{**vars(rows[0]), "state": given_up, "vendor_id": None})]
        assert render(handoff, gone)["assignment"]["agent"] is None, given_up
    pending = [SimpleNamespace(**{**vars(rows[0]), "state": "pending", "vendor_id": None})]
    assert render(handoff, pending)["assignment"]["agent"] == "Dana Smith"  # still being made with them
    assert render(handoff, updated, holder=holding(SimpleNamespace(event_id="evt", routed=True, agent_name=None,
                                                                   agent_id="381726354")))["assignment"]["agent"] \
        == "Dana Smith"
    # Another agent holding the ticket (recorded `routed` when found so): not routing's name (a review).
    assert agent(routed=True, agent_id="555") == "555"


def test_routing_yamls_agents_at_two_vendors_are_each_named_and_each_taken_back_alone():
    # A review: a Zendesk assignee and a Salesforce owner from routing.yaml are two people; only the
    # first was named, every vendor's note said that one, and Salesforce refusing its owner made the
    # answer say nobody while Zendesk's ticket was made with its assignee.
    from connector.answers import Holder, render
    from connector.models import utcnow

    agents = [{"target": "zendesk", "id": "381726354", "label": "Zendesk agent 381726354"},
              {"target": "salesforce", "id": "0055g00000DanaAAAA", "label": "Salesforce agent 0055g00000DanaAAAA"}]
    assignment = {"team": "support", "agent": "Zendesk agent 381726354, Salesforce agent 0055g00000DanaAAAA",
                  "routed_agents": agents, "targets": {"zendesk": {"assignee_id": "381726354"},
                                                       "salesforce": {"owner_id": "0055g00000DanaAAAA"}}}
    handoff = SimpleNamespace(id="hnd_1", conversation_id="c", packet={}, completed_at=None, assignment=assignment,
                              customer_message={"locale": "en", "text": "…"}, estimated_wait_seconds=None,
                              created_at=utcnow(), deliveries=[])

    def row(target, state, receipt=None):  # type: ignore[no-untyped-def]
        return SimpleNamespace(target=target, state=state, vendor_id="1", url=None, attempts=1, last_error=None,
                               receipt=receipt, next_attempt_at=None)

    refused = {"dropped": [{"part": "routing", "field": "owner_id", "reason": "inactive"}]}
    both = [row("zendesk", "created"), row("salesforce", "created")]
    assert render(handoff, both)["assignment"]["agent"] == assignment["agent"]
    one = [row("zendesk", "created"), row("salesforce", "created", refused)]
    assert render(handoff, one)["assignment"]["agent"] == "Zendesk agent 381726354"
    assert render(handoff, [row("zendesk", "dead"), row("salesforce", "created", refused)])["assignment"]["agent"] is None
    # Zendesk reports its assignee by id: named as routing names that one, not both.
    held = Holder(routed=True, agent="381726354", agent_id="381726354")
    assert render(handoff, both, holder=held)["assignment"]["agent"] == "Zendesk agent 381726354"


def test_the_conversation_is_lost_only_where_no_ticket_holds_all_of_it():
    from types import SimpleNamespace

    from connector.answers import UNVERIFIED, context_lost, receipt_for_bot
    from tests.factories import full_packet

    def row(target, receipt, state="created"):
        return SimpleNamespace(target=target, state=state, receipt=receipt)

    packet = full_packet()
    whole = {"delivered": ["transcript"], "dropped": []}
    cut_in_alert = {"delivered": ["transcript"],
                    "dropped": [{"part": "transcript", "reason": "shortened in the alert; in full in the thread"}]}
    file_refused = {"delivered": ["transcript"], "dropped": [
        {"part": "transcript", "file": "t.txt", "reason": "Zendesk refused t.txt: the rest is not on the ticket"}]}
    refused = {"delivered": [], "dropped": [{"part": "transcript", "reason": "none of it reached the case"}]}
    unverified = {"delivered": [], UNVERIFIED: True, "dropped": [{"part": "transcript", "reason": "may lack it"}]}
    assert not context_lost([row("zendesk", whole)], packet)
    assert not context_lost([row("slack", cut_in_alert)], packet)
    assert context_lost([row("zendesk", file_refused)], packet)
    assert context_lost([row("salesforce", refused)], packet)
    assert not context_lost([row("salesforce", refused), row("slack", whole)], packet)
    assert not context_lost([row("salesforce", refused), row("slack", None, state="pending")], packet)
    assert not context_lost([row("zendesk", unverified)], packet)
    assert UNVERIFIED not in receipt_for_bot(unverified)
    assert not context_lost([row("salesforce", refused)], {**packet, "transcript": []})
