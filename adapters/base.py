"""The adapter interface. The base class owns the pipeline; a vendor fills in hooks.

    deliver(ctx):  outcome of the last attempt unknown? ─ yes ─▶ find_existing(_update) → found? → done,
                        │ no / not found          (find_existing: the link's                nothing re-sent
                        │                          ticket is this handoff's own)
                        ▼
                 no link? ─▶ a given-up delivery's ticket (find_existing for `ctx.earlier`), else
                        │    the customer's open one (`update_open_ticket`: find_open_ticket) → becomes
                        │    the link (outcome unknown: find_existing_update there first)
                        ▼
                 link?  ── yes ─▶ build_update → apply vendor_extra → send_update → "updated"
                        │ no                                   │ TicketGone (closed, deleted)
                        ▼                                      ▼
                 build_create → apply vendor_extra → send_create → "created" (a closed ticket is
                                                     named as the new one's predecessor)

`render(ctx)` runs the same build steps without sending: the `preview` target shows it, and the
admin preview uses it, so what is previewed is what is sent.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from ulid import ULID

from connector.brief import REASONS, Brief, attempt_title, collected_of, masked_message, one_line, render_brief
from connector.errors import ConfigError, MappingProblem
from connector.mapping_values import template_failures
from connector.redaction import redact_packet, redact_text, scalar_text
from connector.schemas.packet import URGENCIES
from connector.settings import Settings
from connector.text_rules import did_you_mean, rfc3339_utc

from .errors import (
    AuthError,
    DeliveryError,
    FoundOnlyByTheVendor,
    LookupUnreadable,
    OutcomeUnknown,
    RejectedError,
    ReplacementUnderway,
    TicketGone,
    TransientError,
)
from .events import AssignmentEvent, Holder

log = logging.getLogger(__name__)
REPLACEMENT_WAIT_S = 2.0  # before a delivery that met a closed ticket looks again for the new one

Status = Literal["created", "updated"]
# Entries of a receipt's `dropped`: {"part", "reason"}.
Dropped = tuple[Mapping[str, str], ...]
# Keys every vendor mapping file may hold: the pipeline here reads `redact` and `update_open_ticket`,
# `connector.mappings` reads `version` and `lookups`.
COMMON_MAPPING_KEYS = frozenset({"version", "redact", "lookups", "update_open_ticket"})
# What some keys must hold (`Adapter.mapping_types`), checked at load with the file and line:
# `public_comment: "false"` (quoted, so text, so true) made every brief a public reply.
COMMON_MAPPING_TYPES: Mapping[str, type | tuple[type, ...]] = {"update_open_ticket": bool}


# The kinds a template's output is masked for again (`Adapter.masked`): numbers a template can join
# from pieces the packet's masking saw apart. Not identity (email, phone) nor credentials: a template
# writes the customer's address and a link's token on purpose.
REJOINED = frozenset({"card", "iban", "national_id"})
MAX_MERGES = 5  # merges followed from the conversation's gone ticket (`Adapter.update_merged`), one look each

# The key of a link's `extra` naming the handoff whose delivery made its ticket (the outbox keeps it;
# Slack's alerts said it before): a replay of that delivery finds its own ticket, not the conversation's.
MADE_FOR = "handoff_id"
# The key of a link's `extra` naming the ticket an agent merged into the link's (the outbox and
# `merges` keep it): a batch whose handoff's brief is on that one sends it whole (`merge_target_context`).
LINK_MERGED_FROM = "merged_from"
# The key of a delivery's `sent_to` naming the ticket the vendor's own event named as the handoff's
# (an agent took it after the delivery was given up: `outbox.revive_named`): a lookup that finds
# nothing records that one (`FoundOnlyByTheVendor`), never makes a second ticket beside it.
NAMED_TICKET = "named_ticket"
# A link's `extra` key and value for the customer's open ticket a search found (`update_open_ticket`):
# the handoff is added to it, and is not its conversation's repeat (`HandoffContext.handed_off_again`).
FOUND_BY, OPEN_TICKET_SEARCH = "found_by", "search"
# The key of a delivery's `sent_to` saying its last failed attempt had made the ticket all the same
# (`OutcomeUnknown.made`): the answer still quotes the wait (`answers.is_delayed`).
TICKET_MADE = "ticket_made"
# How a receipt's `dropped` says a part was only shortened or refused somewhere, and is whole on the
# same ticket all the same — a Slack alert's cut, in its thread; a Salesforce comment refused, in the
# case's Description: nothing of it is lost (`answers.context_lost`).
IN_FULL_ON_THE_TICKET = "in full in the thread"
WHOLE_IN_THE_DESCRIPTION = "it is whole in the case's Description"
SAID_WHOLE = (IN_FULL_ON_THE_TICKET, WHOLE_IN_THE_DESCRIPTION)


@dataclass(frozen=True)
class Link:
    """The ticket this conversation already has at the target."""

    vendor_id: str
    url: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Found as the ticket a delivery given up with its outcome unknown made (`Adapter._ticket_to_update`):
    # that delivery's handoff and the outcome its own next attempt would have recorded (`Outcome.made_earlier`).
    made_earlier: tuple[str, Outcome] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class HandoffContext:
    """Everything an adapter may use. Built once per attempt by the outbox."""

    handoff_id: str
    target: str
    packet: Mapping[str, Any]
    brief: Brief
    assignment: Mapping[str, Any]
    idempotency_key: str
    link: Link | None = None
    outcome_unknown: bool = False
    # With `outcome_unknown`: where the last unanswered request went, as its adapter said
    # (`OutcomeUnknown.sent_to`); empty when none said. An attempt nobody recorded (a process
    # killed mid-attempt) leaves an earlier one's there, or none: look where the next would go too.
    sent_to: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1
    # Tickets already made at the other targets of this handoff (Slack links to them).
    related: tuple[Mapping[str, Any], ...] = ()
    public_url: str = ""
    # What this target's mapping masked before anything left (`redact:` kinds → how many).
    redactions: Mapping[str, int] = field(default_factory=dict)
    # The conversation's earlier ticket, closed for good: the new one names it (Zendesk's follow-up
    # ticket, Salesforce's parent case).
    follows_ticket: str | None = None
    # Asked, with the gone ticket's id and whether it was closed, before a new ticket replaces one
    # that takes no more updates (`TicketGone`): True when this delivery may open it; False when
    # another delivery of the conversation already is (the outbox's conversation link decides, and
    # keeps the closed ticket's id for whoever opens it). None: nothing to coordinate with.
    take_replacement: Callable[[str, bool], bool] | None = field(default=None, repr=False, compare=False)
    # The contexts of the conversation's earlier deliveries to this target given up with their
    # outcome unknown (a last try may have made the ticket), whose place this one takes: their
    # tickets are looked for, and the one found updated, before another is opened.
    earlier: tuple[HandoffContext, ...] = field(default=(), repr=False, compare=False)
    # An update's assignment leaves the message for the customer out (an agent may have the ticket,
    # and the answer names them instead, `brief.as_answered`); a new ticket in place of one that
    # takes no more updates is a first one, and shows it (`_instead_of`). None: as `assignment`.
    new_ticket_assignment: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    # The conversation's ticket an agent merged into the one this update goes to, as the agent reads
    # it ("ticket 77120", "case 500…": `merge_target_context`): a batch of messages there says so, not
    # that an earlier batch failed (`batch_again`).
    merged_from: str | None = None
    # When the handoff a batch of messages follows was completed (a vendor's event: its ticket solved
    # or closed). The batch still goes where its ticket takes it (a solved one reopens), but no new
    # ticket is opened in its place (`_instead_of`): one stored before the close and retried, or
    # replayed, after it opened a ticket nobody held while the handoff read `completed` (a review).
    handoff_completed_at: dt.datetime | None = None
    # The agent recorded holding the conversation's ticket here (the newest earlier handoff's on it,
    # `Holder.handoff_id`), for a vendor whose ticket does not say who has it, as Zendesk's assignee
    # does: a Slack alert an agent claimed. None: nobody, or no ticket yet (or a new one since).
    held_by: Holder | None = None

    @property
    def handed_off_again(self) -> str | None:
        """The line a new handoff on the conversation's ticket opens with: its brief reads like the
        first one's, and an agent took it for a repeat. None for a first handoff, or for messages
        sent while one waited (a batch behind the ticket carries the whole brief, and was announced
        as a handoff under its messages' id) — one that does says so (`BATCH_AGAIN`)."""
        follows = (self.packet.get("follow_up") or {}).get("handoff_id")
        if self.link is not None and follows and self.brief.follow_up is None:
            # Its whole brief again, with nothing saying why (a review).
            return batch_again(self.packet, self.merged_from)
        if self.link is None or self.packet.get("follow_up"):
            return None
        if self.link.extra.get(FOUND_BY) == OPEN_TICKET_SEARCH:
            # The customer's open ticket (`update_open_ticket`), not this conversation's: "Handed off
            # again" told its agent an e-mail about an invoice was this chat's repeat (a review).
            conversation = (self.packet.get("conversation") or {}).get("id")
            return (f"A new handoff from this customer (handoff {self.handoff_id}, conversation {conversation}), "
                    "added to their open ticket: a conversation of its own, not this ticket's — what it is "
                    "about is below.")
        said = f"Handed off again: the conversation came back to a person (handoff {self.handoff_id})."
        return " ".join(part for part in (said, self.news, self.another_customer) if part)

    @property
    def news(self) -> str | None:
        """What a repeat's note says changed: what is new (`since_opened`), a team routing chose that
        the ticket is not with (`not_moved`). Every target's note says it (Slack under its title)."""
        return " ".join(part for part in (self.since_opened, self.not_moved) if part) or None

    @property
    def not_moved(self) -> str | None:
        """Routing chose another team for this handoff than the one its ticket was opened for: the
        ticket is not moved (a case being worked keeps its group and owner), and the repeated
        brief's "Routed to: escalations" read as if that team had it — nobody there ever saw it."""
        was = kept_team(self.link, self.assignment, self.packet)
        return None if was is None else (f"Routing chose {self.assignment['team']} for this handoff, but this ticket "
                                         f"was opened for {was} and was not moved.")

    @property
    def since_opened(self) -> str | None:
        """What is new since the ticket last heard from us — its opening, or the last update we
        posted there (`told`, kept by the outbox): a second handoff's note repeated the whole brief
        and said nothing of what had changed (how many messages came since, and from when; an
        urgency raised), and a third listed again what the second had posted. None when nothing is
        known or nothing changed."""
        extra = self.link.extra if self.link is not None else {}
        was, told = last_told(extra), extra.get("told")
        if was is None or self.packet.get("follow_up"):  # a batch's messages say it
            return None
        last = last_message_told(extra)
        # The customer's: a bot's "let me connect you" read as the customer having written again.
        later = sorted(at for entry in self.packet.get("transcript") or [] if entry.get("role") == "customer"
                       and (at := rfc3339_utc(entry.get("at"))) is not None and last is not None and at > last)
        news = [f"{len(later)} message{'s' if len(later) != 1 else ''} from the customer "
                f"(from {later[0]:%Y-%m-%d %H:%M} UTC, marked [new] in the transcript)"] if later else []
        urgency = self.assignment.get("priority")
        if was.get("urgency") and urgency and urgency != was["urgency"]:
            # Only urgent raises the ticket's priority (README): "urgency normal → high" above "[HIGH]"
            # read as the ticket's own, while views and SLAs kept it at normal (a review).
            kept = "" if urgency == "urgent" else " (the ticket's priority is left as it is: only urgent raises it)"
            news.append(f"urgency {was['urgency']} → {urgency}{kept}")
        if collected := collected_news(was.get("collected"), collected_marks(self.packet)):
            news.append(collected)
        news.extend(escalation_news(was, self.packet))
        if not news:
            return None
        since = "this ticket was opened"
        if was is told:
            told_at = rfc3339_utc(was.get("at"))
            since = f"our last update here ({told_at:%Y-%m-%d %H:%M} UTC)" if told_at else "our last update here"
        return f"New since {since}: {'; '.join(news)}."

    @property
    def another_customer(self) -> str | None:
        """A warning when this handoff names another customer than the one the conversation's
        ticket was opened for: bot platforms reuse conversation ids (per device, per number,
        "default"), and another customer's details went onto the ticket without a word. Only an
        identifier both name and that differs counts (the same person with an e-mail added, or a
        phone written another way, is not another customer)."""
        opened_for = self.link.extra.get("customer") if self.link is not None else None
        if not isinstance(opened_for, Mapping) or self.packet.get("follow_up"):  # none kept, or a batch
            return None
        now_for = customer_marks(self.packet)
        shared = [kind for kind in now_for if kind in opened_for]
        # Another customer only when no identifier both name matches: the same person with a new
        # phone is not another one (and was named by the very e-mail that matched).
        if not shared or any(opened_for[kind] == now_for[kind] for kind in shared):
            return None
        customer = self.packet.get("customer") or {}
        return (f"Careful: it names another customer ({shared[0]} {customer[shared[0]]}) than the one this "
                "ticket was opened for — the bot may have reused the conversation id.")

    @property
    def vendor_extra(self) -> Mapping[str, Any]:
        # A batch of messages sent while the handoff waited carries the handoff's packet, and so
        # its `vendor_extra`: the bot's wishes for the ticket the handoff opens. Merged into every
        # batch's update, they put a ticket an agent had taken back in the queue (status, group,
        # assignee, an owner), and a field the vendor takes only at creation had every later batch
        # refused — nothing the customer said reached the agent. A batch that opens the ticket
        # itself (the handoff given up there) still applies them.
        if self.link is not None and self.packet.get("follow_up"):
            return {}
        return (self.packet.get("vendor_extra") or {}).get(self.target, {})


# What a batch of messages that carries the whole brief (an earlier batch did not arrive) opens with
# on the conversation's ticket (`HandoffContext.handed_off_again`; Slack's reply says it under its title).
BATCH_AGAIN = ("Messages the customer sent while handoff {} waited. An earlier batch of them did not reach this "
               "ticket, so everything is here again.")
# …and once an agent has the handoff (`follow_up.taken`): nobody is waiting for one (a review).
BATCH_AGAIN_TAKEN = ("Messages the customer sent since an agent took handoff {}. An earlier batch of them did not "
                     "reach this ticket, so everything is here again.")


# …and on the ticket an agent merged the conversation's into (`merge_target_context`): nothing failed
# there — the brief and the earlier batches went to the ticket merged away, and "an earlier batch did
# not reach this ticket" sent its agent looking for a failure (a review). The batch's own messages are
# marked [new] (`render_brief`'s `batch_new`): under the whole transcript, they were told only by their times.
BATCH_MERGED = ("{} ({}, marked [new] in the transcript). This conversation's {} was merged into this one, "
                "so the handoff's whole brief is here with them.")
BATCH_WAITED = "Messages the customer sent while handoff {} waited"
BATCH_TAKEN = "Messages the customer sent since an agent took handoff {}"


def batch_again(packet: Mapping[str, Any], merged_from: str | None = None) -> str:
    """`BATCH_AGAIN` for a batch's packet, as its handoff stands (`follow_up.taken`); `BATCH_MERGED`
    on the ticket the conversation's, `merged_from`, was merged into."""
    follow_up = packet.get("follow_up") or {}
    taken, handoff = follow_up.get("taken"), follow_up.get("handoff_id")
    if merged_from is None:
        return (BATCH_AGAIN_TAKEN if taken else BATCH_AGAIN).format(handoff)
    own = len(packet.get("transcript") or ()) - int(follow_up.get("first") or 0)
    return BATCH_MERGED.format((BATCH_TAKEN if taken else BATCH_WAITED).format(handoff),
                               f"{own} message{'s' if own != 1 else ''}", merged_from)


@dataclass(frozen=True)
class MergeEnd:
    """Where a conversation whose ticket an agent merged goes on (`Adapter.merge_end`)."""

    ticket_id: str  # the ticket it was merged into, merges made one after another followed
    url: str | None
    finished: bool  # solved or closed already (not by a merge): the conversation's handoffs are done
    holder: str | None = None  # the agent on it (its assignee, while it waits on one), who holds them


@dataclass(frozen=True)
class Probed:
    """`connector check --vendors`: who the vendor takes us for, and what it showed that works
    today but should be mended (each a line of `check`'s warnings)."""

    said: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sent:
    """What a send hook reports back: the vendor's id for people and machines."""

    vendor_id: str
    url: str | None
    reply: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Seconds the vendor's quota headers ask us to hold this target (its per-minute allowance is
    # nearly spent): the outbox pauses the target as for a 429, but before any call is refused.
    slow_down_s: float | None = None
    # What the vendor refused once the ticket was up (a Slack thread reply, a Salesforce case
    # comment): added to the receipt's `dropped`, so a delivery that lost part of the context says so.
    # An entry marked `UNDELIVERED` says none of its part reached the ticket (every comment carrying
    # it refused, the file holding it refused): the part is taken off the receipt's `delivered`.
    dropped: Dropped = ()
    # The agent the vendor's answer to an update says has the ticket, waiting on them: no event
    # comes for an assignee who does not change, and the handoff stayed unassigned for good.
    holder: str | None = None
    # An update that went to another ticket than the link's, which takes its place (Zendesk: the
    # open ticket an agent merged the link's closed one into): the link's ticket id, so the outbox
    # links the conversation to this one, as it does a new ticket.
    moved_from: str | None = None
    # What was sent when it was not the payload `deliver` rendered (the merge target's whole brief,
    # `update_merged`): the payload and the context it was rendered from, which the outcome keeps and
    # its receipt reads — they said the short note, and no file, reached the ticket (a review). No
    # payload when found there after a timeout (`find_existing_update`): the context alone.
    sent_as: tuple[dict[str, Any] | None, HandoffContext, Dropped] | None = field(default=None, repr=False,
                                                                                  compare=False)


@dataclass(frozen=True)
class Outcome:
    status: Status
    vendor_id: str
    url: str | None
    payload: Mapping[str, Any] | None
    receipt: Mapping[str, Any]
    reply: Any = None
    link_extra: Mapping[str, Any] = field(default_factory=dict)
    slow_down_s: float | None = None  # from `Sent.slow_down_s`
    # Who the packet delivered names (`customer_marks`), and where its conversation stood
    # (`opened_with`): kept with a new ticket's link by the outbox.
    customer: Mapping[str, str] = field(default_factory=dict)
    opened_with: Mapping[str, Any] = field(default_factory=dict)
    holder: str | None = None  # from `Sent.holder`
    moved_from: str | None = None  # from `Sent.moved_from`
    # The ticket this delivery went to was made by a delivery of an earlier handoff given up with its
    # outcome unknown (`Link.made_earlier`): the outbox records that one as made there too — it stayed
    # `dead`, its bot told nobody had the handoff, and a replay of it updated its own ticket.
    made_earlier: tuple[str, Outcome] | None = None


def mapping_context(ctx: HandoffContext) -> dict[str, Any]:
    """What a mapping value may read besides the packet (`connector.mapping_values.ROOTS` lists
    both): the routing decision, the handoff's id, the brief's subject."""
    return {"assignment": ctx.assignment, "handoff": {"id": ctx.handoff_id}, "brief": {"subject": ctx.brief.subject}}


def priority_map_problem(target: str, priorities: Any) -> MappingProblem | None:
    """A mapping's `priority:` keys are the packet's urgencies: `hihg: high` was read by no one, and
    high handoffs took the default word without a sign of it."""
    if priorities is None:
        return None
    if not isinstance(priorities, Mapping):
        return MappingProblem(target, "priority", f"must map {', '.join(URGENCIES)} to the vendor's words")
    for ours in priorities:
        if ours not in URGENCIES:
            return MappingProblem(target, f"priority.{ours}",
                                  f"not a priority; {did_you_mean(ours, URGENCIES)}they are {', '.join(URGENCIES)}")
    return None


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` wins; nested dicts merge key by key; lists and scalars are replaced."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@contextlib.contextmanager
def _still_unknown() -> Iterator[None]:
    """Around a lookup for what a timed-out attempt may have made: credentials refused there (a
    token expired, a re-login failed) leave the outcome as unknown as it was. Raised as they came,
    the delivery failed on the spot and the bot showed the apology beside the ticket that attempt
    may have made (a review); retried as any unknown outcome (within the attempts), an operator
    may renew them meanwhile."""
    try:
        yield
    except AuthError as err:
        raise OutcomeUnknown(f"what an earlier attempt may have made could not be looked for: {err.message}",
                             status=err.status, reply=err.reply) from err


class Adapter(abc.ABC):
    """Base of every target. Subclasses set `name` and implement the abstract hooks."""

    name: ClassVar[str]
    # Settings attributes that must be non-empty when the target is enabled. A tuple inside the
    # tuple means "one of these" (e.g. API token or OAuth token).
    required_settings: ClassVar[tuple[str | tuple[str, ...], ...]] = ()
    # The routing field that names an agent at this vendor (a sticky rule offers the previous agent
    # through it); None when the vendor assigns no one by id.
    agent_field: ClassVar[str | None] = None
    # The top-level keys this target reads from its mapping file, besides `COMMON_MAPPING_KEYS`. Any
    # other key is refused at load with its file and line: a misspelt `redact:` would otherwise
    # switch masking off without a word.
    mapping_keys: ClassVar[frozenset[str]] = frozenset()
    # The ids routing may give this target (routing.yaml's `targets: {<name>: {…}}`); another key
    # is refused at load (`groupid:` was silently ignored, and the ticket went to no group).
    routing_keys: ClassVar[frozenset[str]] = frozenset()
    # The type some of those keys must hold (see `COMMON_MAPPING_TYPES`); the rest the adapter checks.
    mapping_types: ClassVar[Mapping[str, type | tuple[type, ...]]] = {}
    # The PII kinds masked when the mapping says nothing (no `redact:`, or no file at all): what the
    # shipped file lists. `redact: []` masks nothing.
    default_redact: ClassVar[tuple[str, ...]] = ()
    # What this vendor calls the record a handoff makes, where the agent reads of another one of it
    # (`merge_target_context`: "This conversation's case 500… was merged into this one").
    ticket_noun: ClassVar[str] = "ticket"

    @classmethod
    def names_an_agent(cls, value: Any) -> bool:
        """Whether `value` under `agent_field` is a person (an agent has the ticket from its making),
        not a place it waits in (Salesforce's owner may be a queue)."""
        return True

    @classmethod
    def routing_id(cls, value: Any) -> Any:
        """A routing id (checked by `routing_id_problem`) as the vendor's own answers and events
        write it: what routing put on a ticket is compared with who the vendor says has it."""
        return value

    @classmethod
    def routing_id_problem(cls, key: str, value: Any) -> str | None:
        """What is wrong with `value` for the routing id `key` (one of `routing_keys`), or None.
        Checked at load: a vendor refuses a malformed id on every ticket routed there, for good."""
        return None

    @classmethod
    def vendor_extra_problems(cls, extra: Mapping[str, Any]) -> dict[str, str]:
        """What a bot's `vendor_extra.<this target>` holds that this adapter cannot work with, by
        field (`vendor_extra.slack.channel`): intake refuses the packet with a 422 naming it, before
        anything is stored or sent. Most of it is the vendor's to judge; none by default."""
        return {}

    def __init__(self, settings: Settings, mapping: Mapping[str, Any] | None = None):
        self.settings = settings
        self.mapping: Mapping[str, Any] = mapping or {}

    # ---- configuration -------------------------------------------------------------------

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        """Raise `ConfigError` naming every problem of this target's settings (one start-up, or one
        `check`, tells them all). Called at start-up."""
        problems = cls.setting_problems(settings)
        if problems:
            raise ConfigError.joined(problems)

    @classmethod
    def setting_problems(cls, settings: Settings) -> list[ConfigError]:
        """What is wrong with this target's settings: the missing variables, as one problem.
        Adapters add their own checks of the values."""
        missing = []
        for requirement in cls.required_settings:
            options = requirement if isinstance(requirement, tuple) else (requirement,)
            if not any(getattr(settings, attr) for attr in options):
                missing.append(" or ".join(Settings.variable_for(attr) for attr in options))
        if not missing:
            return []
        also = f"; so must {', '.join(missing[1:])}" if missing[1:] else ""
        return [ConfigError(missing[0], f"must be set when the {cls.name!r} target is enabled{also}")]

    def warnings(self) -> list[str]:
        """What `connector check` should tell an operator about this target's setup (not fatal)."""
        return [*self.setting_warnings(), *self.mapping_warnings()]

    def setting_warnings(self) -> list[str]:
        """Those of its settings: said at start-up, by `check` and when the settings are reloaded."""
        return []

    def mapping_warnings(self) -> list[str]:
        """Those of its mapping file: said again after an edit of the mappings, which a missing secret
        was logged with as "mapping to look at" (an operations review)."""
        return []

    def routing_warnings(self, routing: Mapping[str, Any]) -> list[str]:
        """The same, of the values routing.yaml gives this target (a team's or a rule's `targets`)."""
        return []

    def probe(self, routing: Mapping[str, Any] | None = None) -> Probed | None:
        """`connector check --vendors`: one cheap authenticated read that a delivery's calls would
        need to pass, and who the vendor takes us for; None when there is no vendor to ask. Raises
        `DeliveryError` as a delivery would (bad credentials: `AuthError`), or for what the vendor
        shows would fail every delivery (`RejectedError`) — or every delivery routing sends to one of
        the places its `routing` (routing.yaml) names for this target (a team's Slack channel)."""
        return None

    # ---- hooks ---------------------------------------------------------------------------

    @abc.abstractmethod
    def build_create(self, ctx: HandoffContext) -> dict[str, Any]:
        """The vendor payload that opens a ticket / case / message for this handoff."""

    @abc.abstractmethod
    def build_update(self, ctx: HandoffContext) -> dict[str, Any]:
        """The payload that adds this handoff to `ctx.link` (comment, case comment, thread reply)."""

    @abc.abstractmethod
    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        """Send `payload`; translate the library's errors into `adapters.errors`."""

    @abc.abstractmethod
    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        """Send an update to `ctx.link`; translate errors likewise."""

    def merged_into(self, gone: TicketGone) -> str | None:
        """The ticket an agent merged the conversation's `gone` one into, as the vendor records it
        (`update_merged`); None when it was not merged, or that cannot be read for good. A failure
        that may pass is raised, to be retried: taken as "not merged", one opened the duplicate of
        the merge target, linked from then on. The default: no merges."""
        return None

    def merge_end(self, gone: TicketGone, deadline: float | None = None) -> MergeEnd | None:
        """Where the conversation of `gone`, a ticket an agent's merge closed, goes on: the ticket it
        was merged into (`merged_into`), followed through merges made one after another
        (`MAX_MERGES`, never back to a ticket seen), and whether that one is finished already. Its
        merge event may come before the event of a merge before it, or after the solve of where it
        went (Zendesk sends events in no set order). None when it was not merged, or that cannot be
        read for good; a failure that may pass is raised — as is `deadline` (a time.monotonic() the
        reads must end by: a webhook's sender waits only so long) passing. The default: no merges."""
        return None

    def merge_left_on(self, ticket_id: str, seen: Collection[str] = (),
                      deadline: float | None = None) -> MergeEnd | None:
        """`merge_end` from `ticket_id`, a ticket a merge left a conversation on: itself while in
        use, finished or not — or, merged on since, where that went (never back to one in `seen`).
        Read again once the conversation is linked to it: its solve may have come in between."""
        return None

    def merged_away_into(self, ticket_ids: Collection[str], deadline: float | None = None) -> dict[str, str]:
        """The tickets an agent's merge removed into one of `ticket_ids` (tickets the vendor's events
        name), each with the one of them it went into, as named there — for a vendor that sends
        nothing of a merge (`connector.merges.follow_merged_away`). A failure that may pass is
        raised, as is `deadline` passing. The default: none (Zendesk sends an event of its merges)."""
        return {}

    def update_merged(self, ctx: HandoffContext, gone: TicketGone,
                      update: Callable[[dict[str, Any], HandoffContext, str], Sent]) -> Sent:
        """`update` (payload, context, ticket id: the conversation's update sent there) on the ticket an
        agent merged the conversation's gone one into (`merged_into`), where the conversation goes
        on: the gone ticket's successor was opened instead, a duplicate of the ticket agents were
        already working on. The link names that ticket from now on (`Sent.moved_from`). Merged on in
        turn (duplicates consolidated in steps), the merges are followed, `MAX_MERGES` of them, never
        back to a ticket seen; one not merged, gone for good or refused raises `gone`: its successor
        is opened as before."""
        closed, seen, whole = gone, {gone.ticket_id}, None
        for _ in range(MAX_MERGES):
            into = self.merged_into(closed)
            if into is None or into in seen:
                break
            seen.add(into)
            if whole is None:
                whole = merge_target_context(ctx, f"{self.ticket_noun} {gone.ticket_id}")
                payload, left_out = self.rendered(whole)
            try:
                return replace(update(payload, whole, into), moved_from=gone.ticket_id,
                               sent_as=(payload, whole, left_out))
            except TicketGone as again:  # gone (merged on?) since
                closed = again
            except (RejectedError, AuthError) as err:
                if not merge_not_followed(err):
                    raise
                log.info("the ticket the conversation's was merged into takes no update; opening its successor",
                         extra={"target": self.name, "vendor_id": gone.ticket_id, "merged_into": into,
                                "vendor_status": err.status})
                break
            except OutcomeUnknown as err:  # part of it may be there: the next attempt looks there
                # With the ticket merged away: found there, it moves the link only if the link still
                # names that one (a later handoff may have moved it on, or further).
                err.sent_to = {**(err.sent_to or {}), "merged_into": into, "merged_from": gone.ticket_id}
                raise
        raise gone

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        """After an unknown outcome: the ticket this handoff already made, if the vendor has it.

        The default trusts the vendor's idempotency on re-send; override when there is none.
        """
        return None

    def find_existing_update(self, ctx: HandoffContext) -> Sent | None:
        """After an unknown outcome of an *update*: has this handoff already reached `ctx.link`?

        The default finds nothing, so the update is sent again; vendors without idempotent
        updates should look for the handoff id on the ticket.
        """
        return None

    def find_open_ticket(self, ctx: HandoffContext) -> Link | None:
        """The customer's open ticket at this vendor, when the mapping sets `update_open_ticket: true`.

        Used only to *add to* an existing ticket, never to deduplicate our own creates (vendor
        searches are eventually consistent).
        """
        return None

    def ticket_url(self, vendor_id: str) -> str | None:
        """The page an agent opens for this target's ticket `vendor_id` (a `Sent.vendor_id`): the
        url a create gives it, for a ticket recorded without one (the vendor's event named it: the
        outbox's `_taken_ticket`). None when it cannot be told (the default); where the vendor must
        be asked, raises `adapters.errors` errors as a delivery would."""
        return None

    def previous_agent(self, packet: Mapping[str, Any], deadline: float | None = None) -> Mapping[str, Any] | None:
        """The assignee of the customer's most recent open ticket (`{"id", "name", "email"}`), for routing.
        Asked while the bot waits: `deadline` (a `time.monotonic()`, `decision.lookup_ends`) is when
        the lookup must be done; None: the adapter's own bound."""
        return None

    def link_related(self, ctx: HandoffContext) -> None:
        """What the outbox calls when the other targets' tickets exist: `related_changed` with the
        context as this target may see it, as `deliver` gives it — an adapter that rewrites what it
        posted (Slack's alert) must not rewrite it from the unmasked packet."""
        self.related_changed(self.for_target(ctx))

    def related_changed(self, ctx: HandoffContext) -> None:
        """Another target of this handoff finished: `ctx.related` lists its ticket. Default: nothing.

        Called only after this target's own delivery succeeded, with `ctx.link` its own ticket.
        """
        return None

    def claim_answered(self, event: AssignmentEvent, holder: Holder, ticket_id: str) -> None:
        """An agent's action at this vendor (`event`) was matched to a handoff `holder` now holds,
        whose ticket here is `ticket_id` (a `Sent.vendor_id`): tell that agent, where the vendor
        shows them nothing of its own. Default: nothing (a helpdesk's own screen shows the
        assignee). Called off the request, after the commit; raises `adapters.errors` errors,
        which are only logged."""
        return None

    def taken_elsewhere(self, holder: Holder, ticket_id: str) -> None:
        """An agent took the handoff at another target (`holder.target`, not routing's own choice):
        where this target's ticket `ticket_id` invites its agents to take it too, it says who has
        it. Default: nothing (a helpdesk's ticket shows its own assignee, nobody else's). Called off
        the request, after the commit; raises `adapters.errors` errors, which are only logged."""
        return None

    def completed_elsewhere(self, handoff_id: str, solved_at: str, ticket_id: str) -> None:
        """The handoff `handoff_id` was solved at another target (`solved_at`): where this target's
        ticket `ticket_id` still invites its agents to take it, it says so instead. Default: nothing.
        Called off the request, after the commit; raises `adapters.errors` errors, only logged."""
        return None

    def apply_extra(self, payload: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `vendor_extra` last. Override when the payload wraps the object (`{"ticket": …}`)."""
        return deep_merge(payload, extra)

    @property
    def redact_kinds(self) -> Collection[str]:
        """The PII kinds this target's mapping masks (`redact:`, else the adapter's default)."""
        return self.mapping["redact"] if "redact" in self.mapping else self.default_redact

    def masked(self, value: Any) -> Any:
        """What a mapping's template wrote, the numbers of `redact_kinds` masked in it as the packet's
        were: the packet is masked before rendering, and a template put a card back together from
        pieces (`join`, two fields side by side) — whole in a Zendesk custom field and a Salesforce
        field with `redact: [card]` (a review). Only the numbers a template can join (`REJOINED`):
        the customer's identity fields and the packet's links are never masked (README), and a
        template writing them (`{{ customer.email }}`, a signed `conversation.url`) sends them whole.
        A number that masks is sent as the masked text (the vendor may refuse it: the field is left
        out, and the receipt says so), never whole. Said in the log: the receipt counts the packet's."""
        kinds = [kind for kind in self.redact_kinds if kind in REJOINED]
        if not kinds:
            return value
        if isinstance(value, list):
            return [self.masked(item) for item in value]
        if (written := scalar_text(value)) is not None:
            text, counts = redact_text(written, kinds)
            if any(counts.values()):
                log.info("a template's output masked again", extra={"target": self.name, "redacted": dict(counts)})
                return text
        return value

    def for_target(self, ctx: HandoffContext) -> HandoffContext:
        """The context as this target may see it: the PII kinds its mapping lists under `redact:`
        masked in every free-text field, and the brief rendered from that."""
        kinds = self.redact_kinds
        if not kinds:
            return ctx
        packet, counts = redact_packet(ctx.packet, kinds)
        if not any(counts.values()):  # nothing masked (the usual packet): the brief as rendered
            return ctx
        # The same form of brief as given: a follow-up's short one stays short (`render_brief`), a
        # repeat's marks what is new (its note says so: a masked card took the marks away).
        assignment = masked_message(ctx.assignment, kinds)  # the customer's words are in it (Slack reads it here)
        brief = render_brief(packet, ctx.handoff_id, update=ctx.brief.follow_up is not None, assignment=assignment,
                             new_after=ctx.brief.new_after, kept_team=ctx.brief.kept_team,
                             batch_new=ctx.brief.new_from is not None)
        fresh = ctx.new_ticket_assignment
        return replace(ctx, packet=packet, brief=brief, assignment=assignment,
                       new_ticket_assignment=masked_message(fresh, kinds) if fresh is not None else None,
                       redactions={kind: n for kind, n in counts.items() if n})

    def receipt(self, ctx: HandoffContext, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Which parts of the packet reach the vendor. Every adapter carries the whole brief —
        unless the bot's `vendor_extra` replaced the field that carries it (`brief_fields`)."""
        present = ctx.brief.parts_present
        extra = {"redacted": dict(ctx.redactions)} if ctx.redactions else {}
        delivered = [part for part in present if part in ctx.brief.sections]
        dropped = [{"part": part, "reason": "not carried by this target"}
                   for part in present if part not in ctx.brief.sections]
        replaced = self._brief_replaced(ctx)
        if replaced is not None:
            field, kept = replaced
            reason = (f"vendor_extra.{self.name}.{field} replaced the text that carries the brief: "
                      "the agent does not see this part")
            dropped += [{"part": part, "reason": reason} for part in delivered if part not in kept]
            delivered = [part for part in delivered if part in kept]
        return {**extra, "delivered": delivered, "dropped": dropped}

    # Where, in what `apply_extra` merges `vendor_extra` into, the brief's text travels: a path
    # there → the parts still carried elsewhere when the bot's own value replaces it. A receipt
    # said everything arrived while the ticket held only the bot's "see attached".
    brief_fields: ClassVar[Mapping[tuple[str, ...], frozenset[str]]] = {}

    def brief_fields_for(self, ctx: HandoffContext) -> Mapping[tuple[str, ...], frozenset[str]]:
        return self.brief_fields

    def _brief_replaced(self, ctx: HandoffContext) -> tuple[str, frozenset[str]] | None:
        for path, kept in self.brief_fields_for(ctx).items():
            node: Any = ctx.vendor_extra
            for depth, key in enumerate(path):
                if not isinstance(node, Mapping) or key not in node:
                    break
                node = node[key]
                if depth < len(path) - 1 and not isinstance(node, Mapping):
                    return ".".join(path[:depth + 1]), kept  # a value where an object was: all of it replaced
            else:
                return ".".join(path), kept
        return None

    # ---- pipeline (owned here, not by vendors) --------------------------------------------

    def render(self, ctx: HandoffContext) -> dict[str, Any]:
        """The exact payload `deliver` would send for `ctx`."""
        payload = self.build_update(ctx) if ctx.link else self.build_create(ctx)
        return self.apply_extra(payload, ctx.vendor_extra)

    def deliver(self, ctx: HandoffContext) -> Outcome:
        ctx = self.for_target(ctx)
        # An unknown outcome is resolved first: the ticket our timed-out create made must not be
        # mistaken for "the customer's open ticket" and commented on a second time.
        if ctx.outcome_unknown:
            # A link naming this handoff's own ticket (`MADE_FOR`: a later handoff found what this
            # delivery made, given up, and took it for the conversation's) is looked up as made: a
            # replay updated it as the conversation's — Zendesk answered `updated` on the ticket this
            # handoff opened, Slack posted "Handed off again" under its own alert (contract §4).
            own = ctx.link if ctx.link is not None and ctx.link.extra.get(MADE_FOR) == ctx.handoff_id else None
            ctx = ctx if own is None else replace(ctx, link=None)
            try:
                with _still_unknown():
                    found = self.find_existing_update(ctx) if ctx.link else self.find_existing(ctx)
            except TicketGone as gone:  # the ticket went meanwhile
                ctx, found = self._instead_of(gone, ctx)
            else:
                # Not found by a lookup that cannot tell it (`vendor_extra` replaced its mark): the link's record.
                if found is None and own is not None:
                    found = Sent(vendor_id=own.vendor_id, url=own.url, extra=dict(own.extra))
            if found is None and ctx.link is None and ctx.sent_to.get(NAMED_TICKET):
                raise FoundOnlyByTheVendor(f"no ticket of this handoff found by its lookup; {self.name}'s own event "
                                           f"named {ctx.sent_to[NAMED_TICKET]} as its ticket, which an agent took")
            if found is not None:
                if found.sent_as is not None:  # found where it went in place of the link's (a merge target)
                    _, ctx, _ = found.sent_as
                return self._outcome("updated" if ctx.link else "created", found, None, ctx, _carried(ctx))
        if ctx.link is None:
            found_link = self._ticket_to_update(ctx)
            if found_link is not None:
                ctx = replace(ctx, link=found_link)
                # This delivery's timed-out try may have added to that ticket already (no ticket of
                # its own was made, as looked above): comments take no idempotency key.
                with _still_unknown():
                    found = self._already_on(ctx) if ctx.outcome_unknown else None
                if found is not None:
                    return self._outcome("updated", found, None, ctx, _carried(ctx))
        payload, left_out = self.rendered(ctx)
        if ctx.link is not None:
            try:
                with carrying(left_out):
                    sent = self.send_update(payload, ctx)
                if sent.sent_as is not None:
                    payload, ctx, left_out = sent.sent_as
                return self._outcome("updated", sent, payload, ctx, left_out)
            except TicketGone as gone:
                ctx, found = self._instead_of(gone, ctx)
                if found is not None:
                    return self._outcome("created", found, None, ctx, _carried(ctx))
                payload, left_out = self.rendered(ctx)
        with carrying(left_out):
            return self._outcome("created", self.send_create(payload, ctx), payload, ctx, left_out)

    def rendered(self, ctx: HandoffContext, *, quiet: bool = False) -> tuple[dict[str, Any], Dropped]:
        """`render`, and the receipt's entries for what the mapping's templates could not give on
        this packet's values: a custom field an admin mapped went missing with only a log line to
        say so, while the receipt told the bot that everything arrived. `quiet`: not logged (a dry run)."""
        with template_failures(quiet=quiet) as failed:
            payload = self.render(ctx)
        said = dict.fromkeys((err.source, err.message) for err in failed)
        return payload, tuple({"part": "mapping", "reason": f"{source}: {message} on this handoff's values; "
                               "that value was not sent"} for source, message in said)

    def _ticket_to_update(self, ctx: HandoffContext) -> Link | None:
        """A ticket that exists for this conversation though the outbox knows none: one a delivery
        given up with its outcome unknown made (`ctx.earlier`; found, it is completed as that
        delivery would have — its thread, its comments — and it was opened a second time), else
        the customer's open one when the mapping says so (not for the successor of a closed
        ticket: that one is opened, naming it)."""
        for given_up in ctx.earlier:
            earlier = self.for_target(given_up)
            try:
                made = self.find_existing(earlier)
            except (LookupUnreadable, TicketGone) as err:
                # Where that delivery went cannot be read (a channel the bot left, or named in a way
                # the lookup cannot read), or what it made takes no more (an alert found in a channel
                # archived since): this delivery failed the same way, and so did every later handoff
                # of the conversation. Taken for not made, and said. Only those: any other refusal of
                # the lookup fails as before — a ticket may be there, and a second one would be made.
                log.warning("the ticket of a delivery given up cannot be looked for; taken for not made",
                            extra={"made_for": earlier.handoff_id, "error": err.message})
                continue
            if made is not None:
                log.info("the conversation's ticket was made by a delivery given up; updating it",
                         extra={"vendor_id": made.vendor_id, "made_for": earlier.handoff_id})
                return Link(vendor_id=made.vendor_id, url=made.url, extra=dict(made.extra), made_earlier=(
                    earlier.handoff_id, self._outcome("created", made, None, earlier, _carried(earlier))))
        if ctx.follows_ticket is None and self.mapping.get("update_open_ticket"):
            return self.find_open_ticket(ctx)
        return None

    def _already_on(self, ctx: HandoffContext) -> Sent | None:
        """`find_existing_update` on the customer's open ticket; one gone since is not where it is
        (the update then meets it gone, and a new ticket takes its place)."""
        try:
            return self.find_existing_update(ctx)
        except TicketGone:
            return None

    def _instead_of(self, gone: TicketGone, ctx: HandoffContext) -> tuple[HandoffContext, Sent | None]:
        """The context for a new ticket in place of one that takes no more updates: with the whole
        brief (a follow-up's short one assumed the old ticket held the rest) and, when the old one
        was closed, its id to name; and that new ticket if an earlier attempt made it before timing
        out. The outbox then links the conversation to the new ticket."""
        # Before the conversation's link is taken for the new ticket: taken, and the batch then given up,
        # the next batch or a replay found it empty and opened the new ticket all the same (a review).
        if ctx.handoff_completed_at is not None and ctx.packet.get("follow_up"):
            raise completed_gone(gone, ctx.handoff_completed_at)
        if ctx.take_replacement is not None and not ctx.take_replacement(gone.ticket_id, gone.closed):
            # Two deliveries of the conversation met the same closed ticket: one new ticket, which
            # the other then updates (the outbox holds it while that ticket is being made).
            raise ReplacementUnderway(f"ticket {gone.ticket_id} takes no more updates and another delivery of "
                                      "this conversation is opening the new one", retry_after=REPLACEMENT_WAIT_S)
        log.info("the conversation's ticket takes no more updates; opening a new one",
                 extra={"target": self.name, "ticket": gone.ticket_id, "closed": gone.closed})
        # Always rendered afresh: a follow-up's short brief assumed the old ticket held the rest, and
        # a repeat's marked [new] what the old ticket had not seen — a new ticket has no note saying so.
        # With the message for the customer, which an update's assignment leaves out (a Salesforce
        # case opened under a closed one never said what the customer was promised; a review).
        assignment = ctx.assignment if ctx.new_ticket_assignment is None else ctx.new_ticket_assignment
        brief = render_brief(ctx.packet, ctx.handoff_id, assignment=assignment)
        ctx = replace(ctx, link=None, brief=brief, assignment=assignment,
                      follows_ticket=gone.ticket_id if gone.closed else None, new_ticket_assignment=None)
        with _still_unknown():
            return ctx, self.find_existing(ctx) if ctx.outcome_unknown else None

    def _outcome(self, status: Status, sent: Sent, payload: dict[str, Any] | None, ctx: HandoffContext,
                 left_out: Dropped = ()) -> Outcome:
        return Outcome(
            status=status,
            vendor_id=sent.vendor_id,
            url=sent.url,
            payload=payload,
            receipt=_undelivered(self.receipt(ctx, payload or {}), (*left_out, *sent.dropped)),
            reply=sent.reply,
            link_extra=sent.extra,
            slow_down_s=sent.slow_down_s,
            holder=sent.holder,
            moved_from=sent.moved_from,
            made_earlier=ctx.link.made_earlier if ctx.link is not None else None,
            # From the packet as delivered: a batch of messages that opens the ticket carries its
            # handoff's customer only here (its stored packet holds its own messages).
            customer=customer_marks(ctx.packet),
            opened_with=opened_with(ctx),
        )


def completed_gone(gone: TicketGone, completed_at: dt.datetime) -> TicketGone:
    """`gone`, met by a batch of messages whose handoff was completed (`HandoffContext.handoff_completed_at`),
    as the refusal that gives the batch up: why, and what the bot can do (the 422 such a batch is told
    when it is posted after the completion, `follow_ups.accept`)."""
    return TicketGone(f"the handoff was completed ({completed_at.isoformat()}) and its ticket "
                      f"{'closed' if gone.closed else 'is gone'}: "
                      f"{gone.message}. No new ticket is opened for these messages in place of it, "
                      "where nobody would hold the handoff; send a new handoff of the conversation "
                      "with them instead.", ticket_id=gone.ticket_id, closed=gone.closed, status=gone.status,
                      reply=gone.reply)


def merge_not_followed(err: DeliveryError) -> bool:
    """Whether a failure on the way to a merge target (reading the merge, or updating the ticket it
    names) ends the following of merges, its successor opened as before: a refusal, a 403 too (a
    ticket or history the API user may not see) — not a failure that may pass, raised to be retried
    (taken for "not merged", one opened the duplicate of the merge target, linked from then on), nor
    the credentials (a 401, which the successor's create would meet too)."""
    return not isinstance(err, TransientError) and not (isinstance(err, AuthError) and err.status != 403)


def merge_target_context(ctx: HandoffContext, merged_from: str) -> HandoffContext:
    """`ctx` with the whole brief, for the ticket the conversation's (`merged_from`, as the agent reads
    it: "ticket 77120", the adapter's `ticket_noun` and its id) was merged into
    (`update_merged`), as a successor gets it (`_instead_of`): the merge target holds none of it
    (Zendesk copies the merged ticket's last comment, Salesforce keeps the master's own Description),
    and a batch's short note sent agents to "the brief above", which was not there (a review). Its
    [new] marks and kept team as the short one had them: the note's heading names them; a batch's
    own messages marked new, as its note says (`batch_again`)."""
    return replace(ctx, merged_from=merged_from, brief=render_brief(
        ctx.packet, ctx.handoff_id, assignment=ctx.assignment, new_after=ctx.brief.new_after,
        kept_team=ctx.brief.kept_team, batch_new=True))


def routing_field_left_out(said: dict[str, str], field: str) -> dict[str, str]:
    """A receipt's entry (`said`) for a routing id the vendor refused, the ticket made without it,
    naming routing's `field` (`assignee_id`): the answer named routing's agent as the one to reply
    while the ticket waited in its queue for anyone (`refused_routing_fields`)."""
    return {**said, "field": field}


def routings_agents(assignment: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The agents routing sent by id, one per target (`{"target", "id", "label"}`): a sticky rule's
    previous agent, or routing.yaml's own (`routing.name_routed_agent`: one at each vendor it names
    one at — a Zendesk assignee and a Salesforce owner are two people)."""
    previous = assignment.get("previous_agent")
    return [{**previous, "label": assignment.get("agent")}] if previous else list(assignment.get("routed_agents") or ())


def routings_agent_at(assignment: Mapping[str, Any], target: str) -> Mapping[str, Any] | None:
    """Routing's agent sent to `target` by id, or None."""
    return next((agent for agent in routings_agents(assignment) if agent.get("target") == target), None)


def refused_routing_fields(receipt: Mapping[str, Any] | None) -> set[str]:
    """The routing fields a delivery's receipt says its vendor refused (`routing_field_left_out`)."""
    dropped = (receipt or {}).get("dropped") or []
    return {str(entry["field"]) for entry in dropped
            if isinstance(entry, Mapping) and entry.get("part") == "routing" and entry.get("field")}


# A `dropped` entry's mark (between an adapter and `_outcome`, never in a receipt): none of its part
# reached the ticket — listed `delivered` beside its refusals, it told a bot the agent had it (a review).
UNDELIVERED = "_undelivered"


def _undelivered(receipt: dict[str, Any], refused: Dropped) -> dict[str, Any]:
    """`with_dropped(receipt, refused)`, the parts `refused` marks `UNDELIVERED` off its `delivered`."""
    gone = {str(entry["part"]) for entry in refused if entry.get(UNDELIVERED)}
    receipt = with_dropped(receipt, tuple({k: v for k, v in entry.items() if k != UNDELIVERED} for entry in refused))
    if not gone:
        return receipt
    return {**receipt, "delivered": [part for part in receipt.get("delivered", []) if part not in gone]}


def with_dropped(receipt: dict[str, Any], refused: Dropped) -> dict[str, Any]:
    """`receipt` with `refused` added to what it lists as dropped, each entry once (an adapter's
    lookup may name again what the attempt that made the ticket left out: `_carried`). A file
    refused (an entry naming its `file`) is no longer among the receipt's `attached`."""
    if not refused:
        return receipt
    listed = [*receipt.get("dropped", []), *map(dict, refused)]
    receipt = {**receipt, "dropped": list({tuple(sorted(entry.items())): entry for entry in listed}.values())}
    files = {entry.get("file") for entry in refused if entry.get("file")}
    if files and "attached" in receipt:
        kept = [entry for entry in receipt["attached"] if entry.get("file") not in files]
        receipt = {**{k: v for k, v in receipt.items() if k != "attached"}, **({"attached": kept} if kept else {})}
    return receipt


@contextlib.contextmanager
def carrying(left_out: Dropped) -> Iterator[None]:
    """An unknown outcome raised inside carries `left_out` (a mapping value whose template failed,
    a Salesforce field or contact refused) in its `sent_to` to the attempt that finds the ticket
    after the timeout (`_carried`): that attempt's receipt listed none of it, and the bot read that
    everything arrived. Said when empty too: the outbox keeps an earlier unknown outcome's
    `sent_to` when a later one has none, and an earlier attempt's list would be read as this one's."""
    try:
        yield
    except OutcomeUnknown as err:
        sent = dict(err.sent_to or {})
        sent["left_out"] = [*sent.get("left_out", []), *map(dict, left_out)]
        err.sent_to = sent
        raise


def _carried(ctx: HandoffContext) -> Dropped:
    """What the attempt whose outcome was unknown left out (`carrying`), for the one that found its ticket."""
    return tuple(entry for entry in ctx.sent_to.get("left_out") or () if isinstance(entry, Mapping))


def last_told(extra: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Where the conversation stood when its ticket last heard from us, as its link keeps it: our
    last update there (`told`), else the ticket's opening (`opened_with`); None when neither is kept."""
    told = extra.get("told")
    was = told if isinstance(told, Mapping) else extra.get("opened_with")
    return was if isinstance(was, Mapping) else None


def last_message_told(extra: Mapping[str, Any]) -> dt.datetime | None:
    """The time of the conversation's last message when its ticket last heard from us (`last_told`):
    later ones are new to the ticket — counted in a repeat's note, marked in its transcript."""
    was = last_told(extra)
    return rfc3339_utc(was.get("last_message_at")) if was is not None else None


def opened_with(ctx: HandoffContext) -> dict[str, Any]:
    """Where the conversation stood when this delivery's ticket was opened: its last message's time,
    the urgency and the team routing gave it, and a digest of what the bot had collected, for the
    next handoff's note to say what is new."""
    times = [at for entry in ctx.packet.get("transcript") or [] if (at := rfc3339_utc(entry.get("at"))) is not None]
    stood = {"last_message_at": max(times).isoformat() if times else None, "urgency": ctx.assignment.get("priority"),
             "team": ctx.assignment.get("team")}
    stood = {key: value for key, value in stood.items() if value}
    # Kept when empty too: `{}` is "nothing collected then", a key missing is "not known" (a link
    # kept before this was), which says nothing is new.
    if (collected := collected_marks(ctx.packet)) is not None:
        stood["collected"] = collected
    stood.update(escalation_marks(ctx.packet))
    return stood


def kept_team(link: Link | None, assignment: Mapping[str, Any], packet: Mapping[str, Any]) -> str | None:
    """The team a repeat's ticket stays with when routing chose another for this handoff: the one it
    was opened for (a ticket being worked keeps its group and owner). None for a first handoff, a
    batch of messages, or when routing chose the ticket's own team."""
    opened = link.extra.get("opened_with") if link is not None else None
    was = opened.get("team") if isinstance(opened, Mapping) else None
    team = assignment.get("team")
    if not was or not team or was == team or packet.get("follow_up"):
        return None
    return str(was)


# More collected values than this are not kept with the link (a bot's dump of a form): the note then
# says nothing of them rather than keep a digest per key beside the conversation's ticket.
MOST_COLLECTED_MARKS = 100
# How many changed or new keys the note names before "and N more".
COLLECTED_NAMED = 5


def collected_marks(packet: Mapping[str, Any]) -> dict[str, str] | None:
    """A short digest of each value the bot collected that holds something, by its key — to tell a
    repeat's agent which values are new or changed without keeping an order number or an address
    beside the conversation's ticket. None past `MOST_COLLECTED_MARKS` values."""
    given, _ = collected_of(packet)
    if len(given) > MOST_COLLECTED_MARKS:
        return None
    return {key: _mark(value) for key, value in given}


def _mark(value: Any) -> str:
    """A short digest of a packet value: tells whether it changed without keeping it."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _attempt_mark(attempt: Any) -> str:
    """An attempted solution by what names it (its outcome may be told again differently)."""
    attempt = attempt if isinstance(attempt, Mapping) else {}
    return _mark([attempt.get("title"), attempt.get("detail"), attempt.get("url")])


def _keyword_mark(word: Any) -> str:
    return _mark(" ".join(str(word).casefold().split()))


def escalation_marks(packet: Mapping[str, Any]) -> dict[str, Any]:
    """Why the bot handed off, as the ticket heard it: the reason, and digests of its trigger words
    and of what it tried — for the next handoff's note to say what changed. A second handoff "because
    the customer is upset", with the bot's two new tries, said only how many messages came since, and
    the brief below repeated every reason and try unmarked (a brief review). A list longer than
    `MOST_COLLECTED_MARKS` is not kept (the note then says nothing of it)."""
    escalation = packet.get("escalation") or {}
    keywords, attempts = escalation.get("keywords") or [], packet.get("attempted_solutions") or []
    marks: dict[str, Any] = {"reason": escalation.get("reason")} if escalation.get("reason") else {}
    if len(keywords) <= MOST_COLLECTED_MARKS:
        marks["keywords"] = [_keyword_mark(word) for word in keywords]
    if len(attempts) <= MOST_COLLECTED_MARKS:
        marks["attempts"] = [_attempt_mark(attempt) for attempt in attempts]
    return marks


def escalation_news(was: Mapping[str, Any], packet: Mapping[str, Any]) -> list[str]:
    """What a repeat's note says of why the bot handed off again (`escalation_marks`): a changed
    reason, new trigger words, what the bot tried since. Nothing of what was not kept (a link kept
    before these were)."""
    escalation = packet.get("escalation") or {}
    news = []
    reason, before = escalation.get("reason"), was.get("reason")
    if reason and before and reason != before:
        news.append(f"why: {REASONS.get(before, before)} → {REASONS.get(reason, reason)}")
    if isinstance(was.get("keywords"), list):
        # Each once ("Chargeback" and "chargeback" are one word), as the ticket heard them.
        words = [one_line(str(word), 40) for word in _unheard(escalation.get("keywords") or [], _keyword_mark,
                                                               was["keywords"])]
        if words:
            news.append(f"new trigger words: {_few(words, ', ')}")
    if isinstance(was.get("attempts"), list):
        tried = [a for a in packet.get("attempted_solutions") or [] if isinstance(a, Mapping)]
        titles = [one_line(attempt_title(a, 60)[0], 60) for a in _unheard(tried, _attempt_mark, was["attempts"])]
        if titles:
            things = "thing" if len(titles) == 1 else "things"
            news.append(f"the bot tried {len(titles)} more {things}: {_few(titles, '; ')}")
    return news


def _unheard(items: Sequence[Any], mark_of: Callable[[Any], str], heard: Sequence[str]) -> list[Any]:
    """The items whose mark is not among `heard`, each mark once (the first item with it)."""
    seen, unheard = set(heard), []
    for item in items:
        if (mark := mark_of(item)) not in seen:
            seen.add(mark)
            unheard.append(item)
    return unheard


def _few(items: Sequence[str], separator: str) -> str:
    """The first `COLLECTED_NAMED` of `items`, and how many more."""
    more = f" and {len(items) - COLLECTED_NAMED} more" if len(items) > COLLECTED_NAMED else ""
    return separator.join(items[:COLLECTED_NAMED]) + more


def collected_news(was: Any, now: Mapping[str, str] | None) -> str | None:
    """What a repeat's note says of the collected values: those new or changed since the ticket last
    heard from us ("collected: order_number (changed), refund_reason (new)"). A second handoff with a
    corrected order number said only how many messages came since, and the agent worked from the
    number in the first brief. None when nothing is known (`was` not kept) or nothing changed; a
    value no longer sent is not news (the brief shows what is)."""
    if not isinstance(was, Mapping) or now is None:
        return None
    named = [f"{one_line(key, 60)} ({'changed' if key in was else 'new'})" for key, mark in now.items()
             if was.get(key) != mark]
    if not named:
        return None
    return f"collected: {_few(named, ', ')}"


def customer_marks(packet: Mapping[str, Any]) -> dict[str, str]:
    """A short digest of each of the customer's identifiers (e-mail, phone, id), to tell two
    customers apart without keeping an address beside the conversation's ticket. An e-mail in any
    case; a phone by its last nine digits ("+1 415 555 0134" is "(415) 555-0134"), none when it has
    no digit ("n/a")."""
    customer = packet.get("customer") or {}
    marks: dict[str, str] = {}
    for kind in ("email", "phone", "id"):
        value = customer.get(kind)
        if not isinstance(value, str) or not value.strip():
            continue
        value = "".join(c for c in value if c.isdigit())[-9:] if kind == "phone" else value.strip().casefold()
        if value:
            marks[kind] = hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:16]
    return marks


# Between this host's clock (a handoff id's time) and a vendor's (a ticket's created_at, a case's CreatedDate).
CLOCK_SKEW_S = 600


def created_at(handoff_id: str) -> dt.datetime:
    """When a handoff (or follow-up) was made, from the ULID its id holds; a day ago for an id
    that holds none (tests', previews'). Where a lookup after a timeout starts reading: an attempt
    may come long after (an admin's replay), what it looks for was made after this."""
    try:
        return ULID.from_str(handoff_id.split("_", 1)[-1]).datetime
    except ValueError:
        return dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
