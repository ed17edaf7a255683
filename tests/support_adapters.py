"""Stand-in targets for pipeline tests (registered through the registry, as a real vendor would be)."""

from __future__ import annotations

import threading
from typing import Any

from adapters.base import Adapter, HandoffContext, Sent
from adapters.errors import OutcomeUnknown, RateLimited, RejectedError, TicketGone, TransientError


class _Recording(Adapter):
    calls: list[dict[str, Any]]

    def build_create(self, ctx: HandoffContext) -> dict[str, Any]:
        return {"op": "create", "subject": ctx.brief.subject}

    def build_update(self, ctx: HandoffContext) -> dict[str, Any]:
        return {"op": "update", "on": ctx.link.vendor_id if ctx.link else None}

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        assert ctx.link is not None
        return Sent(vendor_id=ctx.link.vendor_id, url=ctx.link.url)


class BrokenAdapter(_Recording):
    """Always refuses: a permanent vendor error."""

    name = "broken"

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        raise RejectedError("Subject is too long for this vendor", status=422, reply={"error": "RecordInvalid"})


class PickyAdapter(_Recording):
    """Refuses a handoff, takes the messages sent while it waited (a follow-up, which opens the ticket)."""

    name = "picky"

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        if not ctx.handoff_id.startswith("msg_"):  # a follow-up's id
            raise RejectedError("Subject is too long for this vendor", status=422)
        return Sent(vendor_id="T-7", url="https://vendor.example/tickets/T-7")


class ReplacedAdapter(_Recording):
    """Its handoff's ticket (T-1) is deleted once made: an update of it is `TicketGone`, and the
    messages sent since open another (T-2)."""

    name = "replaced"

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        ticket = "T-2" if ctx.handoff_id.startswith("msg_") else "T-1"
        return Sent(vendor_id=ticket, url=f"https://vendor.example/tickets/{ticket}")

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        assert ctx.link is not None
        if ctx.link.vendor_id == "T-1":
            raise TicketGone("deleted", ticket_id="T-1", closed=False, status=404)
        return Sent(vendor_id=ctx.link.vendor_id, url=ctx.link.url)


class DownAdapter(_Recording):
    """A vendor that is down: every attempt fails, transiently."""

    name = "down"

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        raise TransientError("503 from vendor", status=503)


class FlakyAdapter(_Recording):
    """Fails the first attempt of each delivery with a transient error, then succeeds."""

    name = "flaky"
    seen: set[str] = set()
    lock = threading.Lock()

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        with self.lock:
            first = ctx.idempotency_key not in self.seen
            self.seen.add(ctx.idempotency_key)
        if first:
            raise TransientError("503 from vendor", status=503)
        return Sent(vendor_id=f"flaky-{ctx.handoff_id}", url=f"https://flaky.example/t/{ctx.handoff_id}")


class QuickAdapter(_Recording):
    """Succeeds at once: a vendor that answers fast beside a slow one (the built-in preview named
    alone beside a vendor is refused at intake)."""

    name = "quick"

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        return Sent(vendor_id=f"quick-{ctx.handoff_id}", url=f"https://quick.example/t/{ctx.handoff_id}")


class RenderingAdapter(_Recording):
    """Makes tickets; a repeat's first update times out after acting (an unknown outcome). Keeps what
    each update was rendered against: the note's "new since" and the transcript's [new] boundary."""

    name = "rendering"
    seen: list[tuple[Any, str | None]] = []

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        return Sent(vendor_id=f"T-{ctx.handoff_id}", url=None)

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        assert ctx.link is not None
        self.seen.append((ctx.brief.new_after, ctx.since_opened))
        if len(self.seen) == 1:
            raise OutcomeUnknown("the third comment timed out")
        return Sent(vendor_id=ctx.link.vendor_id, url=None)


class SlowAdapter(_Recording):
    """Takes longer than the test's sync budget, then succeeds."""

    name = "slow"
    delay = 1.0
    release = threading.Event()

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        self.release.wait(self.delay)
        return Sent(vendor_id=f"slow-{ctx.handoff_id}", url=f"https://slow.example/t/{ctx.handoff_id}")


class LimitedAdapter(_Recording):
    """Answers 429 to the first `limited` attempts of each delivery, then succeeds (`then_fail`:
    fails transiently instead)."""

    name = "limited"
    limited = 3
    then_fail = False
    seen: dict[str, int] = {}

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        tries = self.seen[ctx.idempotency_key] = self.seen.get(ctx.idempotency_key, 0) + 1
        if tries <= self.limited:
            raise RateLimited("429 from vendor", retry_after=1, status=429)
        if self.then_fail:
            raise TransientError("503 from vendor", status=503)
        return Sent(vendor_id=f"limited-{ctx.handoff_id}", url=None)


class QuotaAdapter(_Recording):
    """Succeeds, and says (as Zendesk's quota headers do) that its allowance is nearly spent."""

    name = "quota"
    hold_s = 30.0

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        return Sent(vendor_id=f"quota-{ctx.handoff_id}", url=None, slow_down_s=self.hold_s)


class LinkingAdapter(_Recording):
    """Succeeds with a ticket whose link carries data of its own, and records what it is told of
    the other targets' tickets (`related_changed`), as Slack edits its alert."""

    related_calls: list[tuple[str, HandoffContext]] = []

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        return Sent(vendor_id=f"{self.name}-{ctx.handoff_id}", url=f"https://{self.name}.example/t/{ctx.handoff_id}",
                    extra={"handoff_id": ctx.handoff_id, "k": [1]})

    def related_changed(self, ctx: HandoffContext) -> None:
        self.related_calls.append((self.name, ctx))


class LinkedAAdapter(LinkingAdapter):
    name = "linked_a"


class LinkedBAdapter(LinkingAdapter):
    name = "linked_b"


class LookingAdapter(_Recording):
    """Creates a ticket per call and finds it again after an unknown outcome, as Zendesk's
    `external_id` lookup does; `creates` says, per create, whether the attempt was told to look first."""

    name = "looking"
    creates: list[tuple[str, bool]] = []

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        self.creates.append((ctx.handoff_id, ctx.outcome_unknown))
        return Sent(vendor_id=f"looking-{len(self.creates)}", url=None)

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        made = [n for n, (handoff_id, _) in enumerate(self.creates, 1) if handoff_id == ctx.handoff_id]
        return Sent(vendor_id=f"looking-{made[0]}", url=None) if made else None


class TakenOverAdapter(_Recording):
    """Runs `during` (the test's hand: another process taking the delivery over) inside the vendor
    call, then succeeds, or fails transiently when `fails`."""

    name = "takeover"
    during: Any = None
    fails: bool | Exception = False  # True: a 503; an exception: that one

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        if self.during is not None:
            self.during(ctx)
        if isinstance(self.fails, Exception):
            raise self.fails
        if self.fails:
            raise TransientError("503 from vendor", status=503)
        return Sent(vendor_id=f"taken-{ctx.handoff_id}", url=f"https://taken.example/t/{ctx.handoff_id}")


class LostAnswerAdapter(_Recording):
    """Its first attempt's answer is lost after the request went to channel C-1 (as Slack's may
    be), its second is refused before sending, its third ends unknown without saying where
    (an unexpected error), its fourth creates; `looked` records what each lookup was told about
    where that first request went (`HandoffContext.sent_to`)."""

    name = "lost"
    looked: list[dict[str, Any]] = []

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        if ctx.attempt == 1:
            raise OutcomeUnknown("no answer", sent_to={"channel": "C-1"})
        if ctx.attempt == 2:
            raise TransientError("503 before anything was posted", status=503)
        if ctx.attempt == 3:
            raise OutcomeUnknown("no answer, nothing said about where")
        return Sent(vendor_id=f"lost-{ctx.handoff_id}", url=None)

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        self.looked.append(dict(ctx.sent_to))
        return None


class ActsThenBreaksAdapter(_Recording):
    """Makes its ticket, then fails on the vendor's reply with an error outside `adapters.errors`
    (a `KeyError`, as reading an id missing from an odd answer does); finds it again when asked."""

    name = "breaks"
    made: list[str] = []

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        self.made.append(ctx.handoff_id)
        raise KeyError("id")

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        return Sent(vendor_id=f"breaks-{ctx.handoff_id}", url=None) if ctx.handoff_id in self.made else None


class LookLimitedAdapter(ActsThenBreaksAdapter):
    """`ActsThenBreaksAdapter` whose lookups are turned away by a rate limit `limited` times first."""

    name = "looklimited"
    limited = 1

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        if self.limited > 0:
            type(self).limited -= 1
            raise RateLimited("429 on the lookup", retry_after=1)
        return super().find_existing(ctx)


class ClosingAdapter(_Recording):
    """A vendor whose tickets an agent may close (`closed`: an update of one is `TicketGone`). The
    test holds a handoff's answer back by the customer's name: `answer_update` after its update is
    applied (the reply slow to come back), `answer_create` after its ticket is made."""

    name = "closing"
    lock = threading.Lock()
    closed: set[str] = set()
    created: list[tuple[str, str]] = []
    answer_update: dict[str, threading.Event] = {}
    answer_create: dict[str, threading.Event] = {}

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        name = ctx.packet["customer"]["name"]
        with self.lock:
            ticket = f"T{len(self.created) + 1}"
            self.created.append((name, ticket))
        if name in self.answer_create:
            self.answer_create[name].wait(10)
        return Sent(vendor_id=ticket, url=None)

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        assert ctx.link is not None
        if ctx.link.vendor_id in self.closed:
            raise TicketGone("closed", ticket_id=ctx.link.vendor_id, closed=True, status=422)
        name = ctx.packet["customer"]["name"]
        if name in self.answer_update:
            self.answer_update[name].wait(10)
        return Sent(vendor_id=ctx.link.vendor_id, url=None)


class VanishingAdapter(_Recording):
    """Every create's answer is lost after sending (the ticket may be made), and every lookup for it
    fails, its link's too: only the vendor's own event can say where it went."""

    name = "vanishing"

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        raise OutcomeUnknown("no answer (timed out after sending)")

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        raise TransientError("503 on the lookup", status=503)

    def ticket_url(self, vendor_id: str) -> str | None:  # asked of the vendor (Slack's permalink), down too
        raise TransientError("503 on the permalink", status=503)


class ThreadedAdapter(_Recording):
    """Opens alert C1/A-1 (its url and where it is kept with the conversation's link); with
    `losing`, an update loses its answer after sending, and every look for it fails."""

    name = "threaded"
    losing = False

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        return Sent(vendor_id="C1/A-1", url="https://vendor.example/A-1",
                    extra={"channel": "C1", "ts": "A-1", "handoff_id": ctx.handoff_id})

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        assert ctx.link is not None
        if self.losing:
            raise OutcomeUnknown("no answer (timed out after sending)")
        return Sent(vendor_id=ctx.link.vendor_id, url=ctx.link.url)

    def find_existing_update(self, ctx: HandoffContext) -> Sent | None:
        raise TransientError("503 on the lookup", status=503)


class ClosedThenLostAdapter(_Recording):
    """Opens T<n>; with `losing`, every create and update loses its answer after sending; an update
    of a ticket in `closed` is `TicketGone` (the base then opens another in its place)."""

    name = "closedthenlost"
    losing = False
    closed: set[str] = set()
    made: list[str] = []

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        self.made.append(ctx.handoff_id)
        if self.losing:
            raise OutcomeUnknown("no answer (timed out after sending)")
        return Sent(vendor_id=f"T{len(self.made)}", url=f"https://vendor.example/T{len(self.made)}")

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        assert ctx.link is not None
        if ctx.link.vendor_id in self.closed:
            raise TicketGone("closed", ticket_id=ctx.link.vendor_id, closed=True, status=422)
        if self.losing:
            raise OutcomeUnknown("no answer (timed out after sending)")
        return Sent(vendor_id=ctx.link.vendor_id, url=ctx.link.url)

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        raise TransientError("503 on the lookup", status=503)

    def find_existing_update(self, ctx: HandoffContext) -> Sent | None:
        raise TransientError("503 on the lookup", status=503)


class BriefedAdapter(_Recording):
    """Fails each delivery's first attempt, transiently, then succeeds; keeps each attempt's brief."""

    name = "briefed"
    briefs: list[str] = []

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        self.briefs.append(ctx.brief.text)
        if len(self.briefs) == 1:
            raise TransientError("503 from vendor", status=503)
        return Sent(vendor_id=f"briefed-{ctx.handoff_id}", url=f"https://briefed.example/t/{ctx.handoff_id}")


class RefusedOnceAdapter(BriefedAdapter):
    """Refuses each delivery's first attempt for good (a 422), then succeeds: an operator's replay."""

    name = "refused-once"

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        self.briefs.append(ctx.brief.text)
        if len(self.briefs) == 1:
            raise RejectedError("Subject is too long for this vendor", status=422)
        return Sent(vendor_id=f"refused-{ctx.handoff_id}", url=f"https://refused.example/t/{ctx.handoff_id}")
