"""Zendesk Support: a ticket per handoff, the agent brief as its first (internal) comment.

Payloads are plain JSON built from the packet and `mappings/zendesk.yaml`; no credentials are needed
to build one (the `preview` target renders them with none). The client is made on first send.

Every call goes as raw JSON through the session zenpy authenticates (`Zenpy(session=...)`), not
through zenpy's object model: the dict we render, preview and validate is exactly what goes on the
wire (vendor_extra fields zenpy does not know included); `Idempotency-Key` goes per request
(thread-safe, no shared session headers); reply headers are readable; search queries are
URL-encoded (zenpy does not encode them); and ZENDESK_BASE_URL works (zenpy only parses replies
from `{subdomain}.zendesk.com`). zenpy still owns the authentication conventions (API token or
OAuth) on that session.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from zenpy import Zenpy

from connector import json_codec
from connector.brief import PARTS, subject_line
from connector.decision import lookup_ends
from connector.errors import ConfigError, MappingProblem
from connector.mapping_values import KINDS as VALUE_KINDS
from connector.mapping_values import MISSING, compile_for, looks_like_template, misspelt_in, resolve
from connector.settings import Settings, http_address
from connector.text_rules import as_identity, called

from .base import (
    FOUND_BY,
    MAX_MERGES,
    OPEN_TICKET_SEARCH,
    UNDELIVERED,
    Adapter,
    HandoffContext,
    Link,
    MergeEnd,
    Probed,
    Sent,
    carrying,
    deep_merge,
    mapping_context,
    merge_not_followed,
    merge_target_context,
    priority_map_problem,
)
from .errors import (
    AuthError,
    DeliveryError,
    OutcomeUnknown,
    RateLimited,
    RateLimitedAfterActing,
    RejectedError,
    TicketGone,
    TransientError,
)
from .zendesk_events import MERGED_TAG
from .zendesk_http import ZendeskSession, edge, id_problem, quota_pause, vendor_message
from .zendesk_refused import create_or_without, update_or_without
from .zendesk_users import EndUsers, customer_external_id

log = logging.getLogger(__name__)
# Of a call that must end within its share (`_timeouts(whole=True)`), what its connection may take:
# a kept-alive one takes none.
CONNECT_S = 1.0

# Zendesk caps a comment at about 64 KB. Stay well under it: the limit counts the stored body and
# Zendesk may add markup of its own.
COMMENT_LIMIT_BYTES = 60_000
SUBJECT_MAX = 250  # characters of a mapped subject (mappings/README.md); the brief's is shorter
PRIORITIES = {"low": "low", "normal": "normal", "high": "high", "urgent": "urgent"}
RANK = {"low": 1, "normal": 2, "high": 3, "urgent": 4}  # Zendesk's priorities, lowest first; none (null) is 0
TICKET_TYPES = ("question", "incident", "problem", "task")
DEFAULTS: dict[str, Any] = {"type": "question", "public_comment": False, "tags": [], "custom_fields": [],
                            "reopen_solved": True}
# Zendesk's answer to any update of a closed ticket (422 RecordInvalid); a deleted one answers 404.
CLOSED_TICKET = "closed prevents ticket update"
OPEN_STATUSES = ("new", "open", "pending", "hold")
# A ticket in these is in no agent's queue: solved, or pending (the agent waits for the customer).
# A note that the customer came back reopens it (`reopen_solved`), as a reply of theirs would.
# On hold waits for a third party, not the customer: left as it is.
WAITS_ON_NOBODY = ("solved", "pending")
SEARCHABLE_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+")
_TAG_UNSAFE = re.compile(r"[^\w\-]+")


RECENT_CONTACTS = 5  # earlier contacts a comment keeps when the whole history does not fit (`_sized`)
# The parts a shortened comment leaves to the file (brief.html.j2's `include_transcript`, `include_lists`).
_TRANSCRIPT = ("transcript", "attachments")
_LISTS = ("attempted_solutions", "collected_data", "history", "routing")


@dataclass(frozen=True)
class _Comment:
    html_body: str
    attachment: tuple[str, str] | None = None  # (file name, text) uploaded and linked at send time
    attached_part: str = ""
    carries: str = ""  # what the comment still holds, for the receipt
    note: str = ""  # the line in `html_body` that says what is attached (`_unattached` rewrites it)
    only_attached: tuple[str, ...] = ()  # the parts (`brief.PARTS`) the comment holds nothing of
    # Other words of `html_body` that send the agent to the file (the transcript's heading, the older
    # contacts' line), each with what it says instead when Zendesk refuses the file (`_unattached`).
    swaps: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Client:
    session: ZendeskSession
    zenpy: Zenpy


class ZendeskAdapter(Adapter):
    name = "zendesk"
    mapping_keys = frozenset({"type", "public_comment", "priority", "tags", "custom_fields", "brand_id", "subject",
                              "reopen_solved"})
    mapping_types = {"public_comment": bool, "reopen_solved": bool, "tags": list, "custom_fields": list,
                     "priority": dict, "type": str,
                     "subject": (str, dict)}  # a template as text, or any value spec ({lookup: …}, {path: …})
    required_settings = ("zendesk_subdomain", ("zendesk_api_token", "zendesk_oauth_token"))
    agent_field = "assignee_id"
    routing_keys = frozenset({"group_id", "assignee_id"})

    @classmethod
    def routing_id_problem(cls, key: str, value: Any) -> str | None:
        return id_problem(value)

    def __init__(self, settings: Settings, mapping: Mapping[str, Any] | None = None):
        super().__init__(settings, mapping)
        self._conf = _config(self.mapping)
        self._client_cache: _Client | None = None
        self._lock = threading.Lock()
        self._users = EndUsers(self._call)

    def setting_warnings(self) -> list[str]:
        said = []
        base = urlsplit(self.settings.zendesk_base_url or "")
        if base.scheme == "http" and base.hostname not in ("localhost", "127.0.0.1", "::1"):
            said.append(f"ZENDESK_BASE_URL is plain http:// ({base.hostname}): the API token and every packet "
                        "cross the network unencrypted")
        if self.settings.zendesk_api_token and self.settings.zendesk_oauth_token:  # `_client` takes the OAuth one
            said.append("ZENDESK_API_TOKEN and ZENDESK_OAUTH_TOKEN are both set: the OAuth token signs in and "
                        "ZENDESK_API_TOKEN (with ZENDESK_EMAIL) is ignored; remove the one you do not mean")
        if not self.settings.zendesk_webhook_secrets:
            said.append("no ZENDESK_WEBHOOK_SECRETS: /webhooks/zendesk refuses every event, so who took a handoff "
                        "is never recorded and quoted waits stay the configured figures (README: Vendor events)")
        return said

    def mapping_warnings(self) -> list[str]:
        specs = [(f"custom_fields[{i}]", _spec(entry)) for i, entry in enumerate(self._conf["custom_fields"])]
        if self.mapping.get("subject"):
            specs.append(("subject", self.mapping["subject"]))
        return misspelt_in("zendesk", specs, self.mapping.get("lookups"))

    @classmethod
    def setting_problems(cls, settings: Settings) -> list[ConfigError]:
        problems = super().setting_problems(settings)
        if not settings.zendesk_oauth_token and not settings.zendesk_email:
            problems.append(ConfigError("ZENDESK_EMAIL", "must be set with ZENDESK_API_TOKEN (an OAuth token needs "
                                                         "none)"))
        subdomain = settings.zendesk_subdomain
        if subdomain and not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", subdomain):
            # `acme.zendesk.com` passed, and every link went to acme.zendesk.com.zendesk.com.
            problems.append(ConfigError("ZENDESK_SUBDOMAIN", f"must be the account's name alone (acme for "
                                        f"acme.zendesk.com), got {subdomain[:60]!r}"))
        if settings.zendesk_base_url:
            try:  # a path may follow the host (a proxy's prefix): the API's paths are added to it
                http_address("ZENDESK_BASE_URL", settings.zendesk_base_url, "https://acme.zendesk.com")
            except ConfigError as err:
                problems.append(err)
        return problems

    # ---- payloads ---------------------------------------------------------------------------

    def _value(self, spec: Mapping[str, Any], ctx: HandoffContext, where: str) -> Any:
        return resolve(_spec(spec), ctx.packet, mapping_context(ctx), tables=self.mapping.get("lookups"),
                       where=f"zendesk.yaml {where}", masked=self.masked)

    def _subject(self, ctx: HandoffContext) -> str:
        """The brief's one-line subject, unless the mapping gives a value spec (e.g. a template): on one
        line and its secrets masked as the brief's (views, searches and notification e-mails show it)."""
        spec = self.mapping.get("subject")
        if not spec:
            return ctx.brief.subject
        value = resolve(spec, ctx.packet, mapping_context(ctx), tables=self.mapping.get("lookups"),
                        where="zendesk.yaml subject", one_value=True, masked=self.masked)
        # Nothing found is the brief's; so is null (a lookup's `default: null`, a table entry or a literal
        # mapped to null), which went as the subject "None" (Salesforce's fields.Subject already fell back).
        subject = "" if value is MISSING or value is None else subject_line(str(value), SUBJECT_MAX)
        return subject if subject.strip() else ctx.brief.subject

    def build_create(self, ctx: HandoffContext) -> dict[str, Any]:
        packet, mapping = ctx.packet, self._conf
        ticket: dict[str, Any] = {
            # Subject is plain text in Zendesk (never rendered as HTML): no escaping needed.
            "subject": self._subject(ctx),
            "comment": self._comment_json(self._comment(ctx)),
            "requester": _requester(as_identity(packet.get("customer") or {})),
            "type": mapping["type"],
            "tags": self._tags(ctx),
            "external_id": ctx.handoff_id,  # find_existing looks tickets up by it
        }
        if ctx.follows_ticket is not None and ctx.follows_ticket.isdigit():
            # A follow-up of the conversation's closed ticket: Zendesk links the two for the agent.
            ticket["via_followup_source_id"] = int(ctx.follows_ticket)
        priority = ctx.assignment.get("priority")
        if priority:
            # An unmapped value goes as is: Zendesk rejects it by name rather than us dropping it.
            ticket["priority"] = mapping["priority"].get(priority, str(priority).lower())
        ids = (ctx.assignment.get("targets") or {}).get("zendesk") or {}
        for key in ("group_id", "assignee_id"):
            if ids.get(key) is not None:
                # Zendesk ids are integers; routing hands them over as written (a previous agent's
                # id arrives as a string), so a numeric string is sent as the number it is.
                value = ids[key]
                ticket[key] = int(value) if isinstance(value, str) and value.isdigit() else value
        if mapping.get("brand_id") is not None:
            ticket["brand_id"] = mapping["brand_id"]
        fields = [{"id": f["id"], "value": v} for i, f in enumerate(mapping["custom_fields"])
                  if (v := self._value(f, ctx, f"custom_fields[{i}]")) is not MISSING and v is not None]
        if fields:
            ticket["custom_fields"] = fields
        return {"ticket": ticket}

    def build_update(self, ctx: HandoffContext) -> dict[str, Any]:
        comment = self._comment_json(self._comment(ctx))
        if ctx.packet.get("follow_up"):
            # Messages the customer sent while waiting: a comment, nothing else. The batch carries its
            # handoff's packet and routing, so every batch re-raised an urgent handoff's priority an
            # agent had lowered since triage (a "thanks" undid it), and re-added the handoff's tags an
            # agent had removed. Only a new handoff may raise priority or add routing tags.
            return {"ticket": {"comment": comment}}
        # The tags go by Add Tags (`tags`, beside the ticket: `send_update`), which adds to the ticket's
        # own. Update Ticket takes `tags` as the whole list (an agent's would go) and documents no
        # `additional_tags` — Zendesk: "If you use the Update Ticket endpoint to add one or more tags
        # to a ticket, the new tags replace any existing tags" — so a repeat's were sent where Zendesk
        # does not say it reads them. No team tag: an update routes nothing (no group, no assignee),
        # so `team_<routing's choice>` claimed a move that never happened — a repeat routing chose
        # escalations for, on a ticket left with technical support (`not_moved`), showed in
        # escalations' tag views and SLAs. The ticket's own team's tag is on it since its creation,
        # unless an agent removed it.
        ticket: dict[str, Any] = {"comment": comment}
        if self._raises_to(ctx) == "urgent":
            # Raised, never lowered: the ticket's own priority is not known here (an agent may have
            # raised it), and urgent is Zendesk's top, so it goes with the note. Mapped lower
            # (`urgent: high`), sent here it took an agent's urgent down: it is raised after the note
            # instead, once the note's reply shows the ticket's own (`_settle`).
            ticket["priority"] = "urgent"
        return {"ticket": ticket, "tags": self._tags(ctx, routed=False)}

    def _raises_to(self, ctx: HandoffContext) -> str | None:
        """The priority an update raises its ticket to: the mapped value of urgent, when this is a new
        urgent handoff of the conversation (a batch of messages, `follow_up`, raises nothing); None
        otherwise, and for `urgent: null` (no priority), which would clear the ticket's own."""
        if ctx.packet.get("follow_up") or ctx.assignment.get("priority") != "urgent":
            return None
        return self._conf["priority"].get("urgent")

    def _raises_after_note(self, ctx: HandoffContext) -> str | None:
        """`_raises_to`, unless it is urgent: that went with the note (`build_update`), in the same call."""
        raise_to = self._raises_to(ctx)
        return None if raise_to == "urgent" else raise_to

    brief_fields = {("comment", "html_body"): frozenset()}  # the comment is the brief

    @classmethod
    def vendor_extra_problems(cls, extra: Mapping[str, Any]) -> dict[str, str]:
        """Tags that are not text (`[{"name": "vip"}]`): Zendesk takes none, and a repeat's, added by
        Add Tags (`apply_extra`), crashed every attempt (a review). Custom fields without an id."""
        tags, fields = extra.get("tags"), extra.get("custom_fields")
        problems = {}
        if "tags" in extra and not _tags_as_text(tags):
            problems["vendor_extra.zendesk.tags"] = (f"{json_codec.dumps(tags)[:100]} is not a list of tags: each is "
                                                     "text (or a number), as Zendesk takes them")
        if "custom_fields" in extra and not (isinstance(fields, list) and
                                             all(isinstance(f, Mapping) and f.get("id") is not None for f in fields)):
            # Each replaces the mapping's field of its id (`apply_extra`); one without took the
            # mapping's every field off the ticket, unsaid (a review).
            said = f"{json_codec.dumps(fields)[:100]} is not a list of fields: each is {{\"id\": …, \"value\": …}}"
            problems["vendor_extra.zendesk.custom_fields"] = f"{said}, as Zendesk takes them"
        return problems

    def apply_extra(self, payload: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        # vendor_extra.zendesk speaks of the ticket ({"ticket_form_id": …}), not of the envelope.
        if not extra:
            return payload
        tags, fields = extra.get("tags"), extra.get("custom_fields")
        ticket, used = payload["ticket"], set()
        if "tags" in extra and _tags_as_text(tags):  # (others are refused at intake: `vendor_extra_problems`)
            # Beside the connector's, never in place of them: on an update (its tags beside the ticket,
            # for Add Tags) Update Ticket took them for the ticket's whole list — every tag on it gone
            # at each repeat handoff; on a new ticket `chatbot`, `team_…`, `segment_…`, which views,
            # triggers and SLA policies key on, were replaced by a bot's campaign tag (a review).
            added = tags.split() if isinstance(tags, str) else tags  # Zendesk's own reading of a string
            used.add("tags")
            if "tags" in payload:
                payload = {**payload, "tags": list(dict.fromkeys([*payload["tags"], *added]))}
            else:
                ticket = {**ticket, "tags": list(dict.fromkeys([*(ticket.get("tags") or []), *added]))}
        if isinstance(fields, list):
            # Each with an id (`vendor_extra_problems`); an entry without, in a packet stored before
            # intake refused them, failed every attempt (a KeyError; a review of the mend): Zendesk
            # takes none, so it is left out, and the log says so.
            named = [f for f in fields if isinstance(f, Mapping) and f.get("id") is not None]
            if len(named) < len(fields):
                log.warning("vendor_extra.zendesk.custom_fields entries without an id are left out",
                            extra={"left_out": len(fields) - len(named)})
            fields = named
            # By field: the bot's value for a field the mapping fills wins; the mapping's others stay.
            theirs = {str(f["id"]) for f in fields}
            used.add("custom_fields")
            ticket = {**ticket, "custom_fields": [
                *(f for f in ticket.get("custom_fields") or [] if str(f.get("id")) not in theirs), *fields]}
        rest = {name: value for name, value in extra.items() if name not in used}
        return {**payload, "ticket": deep_merge(ticket, rest)}

    def receipt(self, ctx: HandoffContext, payload: Mapping[str, Any]) -> dict[str, Any]:
        receipt = super().receipt(ctx, payload)
        comment = self._comment(ctx)
        if comment.attachment:
            receipt["attached"] = [{
                "part": comment.attached_part, "file": comment.attachment[0],
                "reason": f"the brief exceeds Zendesk's comment limit ({COMMENT_LIMIT_BYTES} bytes); "
                          f"the comment carries {comment.carries} and the whole text is attached, nothing cut",
            }]
        return receipt

    def _comment(self, ctx: HandoffContext) -> _Comment:
        """The brief, or its summary plus a file when the whole brief is too long for one comment.
        A new handoff on the conversation's ticket opens with a line saying so (its brief reads like
        the first one's, and an agent took it for a repeat), inside the size every form is held to."""
        lead = _note(ctx.handed_off_again) if ctx.handed_off_again else ""
        comment = self._sized(ctx, lead)
        return replace(comment, html_body=lead + comment.html_body)

    def _sized(self, ctx: HandoffContext, lead: str) -> _Comment:
        """`_comment`'s body, chosen so that with `lead` before it it fits one comment. Each step
        down keeps what an agent needs most in the comment and attaches the rest, nothing cut: all
        of it; the transcript and the most recent earlier contacts; the summary; the summary with
        the most recent contacts; who, why, what they want and the urgency; the subject. Each step
        from the summary down keeps the transcript's last messages that fit below its heading."""
        if _fits(lead + ctx.brief.html):
            return _Comment(ctx.brief.html)
        safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", ctx.handoff_id)
        brief_file = f"handoff-{safe_id}.txt"
        whole = (brief_file, ctx.brief.text)
        attached = _note(f"The whole brief is attached as {brief_file}: it is too long for a Zendesk comment. "
                         f"Nothing was cut.")
        # A long history (eighty old tickets) used to push what was tried, what was collected and a
        # five-message transcript out of the comment, down to its core, with room to spare.
        recent = ctx.brief.html_recent_contacts(RECENT_CONTACTS, include_transcript=True)
        if recent is not None and _fits(lead + recent + attached):
            return _Comment(recent + attached, whole, "brief",
                            f"everything but the earlier contacts before the {RECENT_CONTACTS} most recent", attached,
                            swaps=(_OLDER_CONTACTS,))
        # Each heading of a transcript the comment leaves out says where it is: "see below / attached"
        # sent agents below for a five-message transcript that only the file held (a review).
        count = len(ctx.brief.transcript_lines)
        name = f"transcript-{safe_id}.txt"
        note = _note(f"The whole transcript ({count} messages) is attached as {name}: with it the brief is too long "
                     f"for a Zendesk comment. Nothing was cut.")
        in_file = f"in the attached {name}, not in this comment"
        bare = ctx.brief.summary_html_with(note, in_file)
        if _fits(lead + bare):
            text = "\n".join((ctx.brief.transcript_heading, "", *ctx.brief.transcript_lines)) + "\n"
            # The end of the conversation stays in the comment, as much of it as fits: with the whole
            # transcript in a file, an agent read none of it without downloading it (and then only
            # the last ten, of 400 messages in 5 KB of a 60 KB comment).
            shown, body = _most_that_fit(
                count, lambda n: ctx.brief.summary_html_with(note + ctx.brief.html_latest_messages(n),
                                                             _below(n, count, name)),
                lambda body: _fits(lead + body))
            if shown:
                return _Comment(body, (name, text), "transcript", f"the summary and the last {shown} messages", note,
                                _files_left_out(ctx, shown),
                                (_heading(_below(shown, count, name), _below_refused(shown, count)),))
            return _Comment(bare, (name, text), "transcript", "the summary", note, _TRANSCRIPT,
                            (_heading(in_file, _NOT_ON_TICKET),))
        # The steps below leave the transcript to the brief's file with the long lists, and keep its last
        # messages that fit as the step above does: eighty earlier contacts beside 120 long messages left
        # none of them in the comment, ~52 KB of its 60 KB unused — none on the ticket at all when Zendesk
        # refused the file; a five-message transcript went to the file beside long collected values (a review).
        in_brief = f"in the attached {brief_file} with the whole brief, not in this comment"
        recent = ctx.brief.html_recent_contacts(RECENT_CONTACTS, include_transcript=False, transcript_where=in_brief)
        if recent is not None and _fits(lead + recent + attached):
            contacts = f"the summary with the {RECENT_CONTACTS} most recent earlier contacts"

            def recent_and_latest(n: int) -> str:
                return (ctx.brief.html_recent_contacts(RECENT_CONTACTS, include_transcript=False,
                                                       transcript_where=_below(n, count, brief_file),
                                                       inserted=ctx.brief.html_latest_messages(n)) or "") + attached

            shown, body = _most_that_fit(count, recent_and_latest, lambda body: _fits(lead + body))
            if shown:
                return _Comment(body, whole, "brief", f"{contacts} and the last {shown} messages", attached,
                                _files_left_out(ctx, shown),
                                (_heading(_below(shown, count, brief_file), _below_refused(shown, count)),
                                 _OLDER_CONTACTS))
            return _Comment(recent + attached, whole, "brief", contacts, attached, _TRANSCRIPT,
                            (_heading(in_brief, _NOT_ON_TICKET), _OLDER_CONTACTS))
        # Who, why, what they want and the urgency stay in the comment an agent opens first; the long
        # lists (earlier contacts, what was tried, collected data) and the transcript go in the file.
        # Only a subject line was left here before: two hundred earlier contacts hid even the urgency.
        # Not each of them is long: a five-message transcript was said to be "too long" (a review).

        def rest(n: int) -> str:  # the note over a core with the last `n` messages
            return _note(f"{_left_out(n, count)} not in this comment: with them the brief is too long for a Zendesk "
                         f"comment. The whole brief is attached as {brief_file}. Nothing was cut.")

        core = ctx.brief.core_html(in_brief)
        if _fits(lead + core + rest(0)):
            shown, body = _most_that_fit(
                count, lambda n: ctx.brief.core_html(_below(n, count, brief_file), ctx.brief.html_latest_messages(n))
                + rest(n), lambda body: _fits(lead + body))
            if shown:
                return _Comment(body, whole, "brief", f"who, why, what they want, the urgency and the last {shown} "
                                f"messages", rest(shown), _LISTS + _files_left_out(ctx, shown),
                                (_heading(_below(shown, count, brief_file), _below_refused(shown, count)),))
            return _Comment(core + rest(0), whole, "brief", "who, why, what they want and the urgency",
                            rest(0), _LISTS + _TRANSCRIPT, (_heading(in_brief, _NOT_ON_TICKET),))
        alone = _note(f"Handoff {ctx.handoff_id}: the brief is too long for a Zendesk comment. "
                      f"It is attached in full as {brief_file}.")
        return _Comment(alone + f"<p>{html.escape(ctx.brief.subject)}</p>", whole, "brief", "the subject only", alone,
                        PARTS)

    def _comment_json(self, comment: _Comment) -> dict[str, Any]:
        return {"html_body": comment.html_body, "public": bool(self._conf["public_comment"])}

    def _tags(self, ctx: HandoffContext, routed: bool = True) -> list[str]:
        # Routing's decision and the customer's segment and language too: a VIP's or an escalation's
        # ticket looked like any other in views, triggers and SLA policies (group ids are an admin's).
        # `routed`: the ticket goes where routing chose (a new ticket); else no team tag.
        #
        # Tags only add up across a conversation's handoffs (Add Tags): a repeat that is now
        # angry adds sentiment_angry beside the first one's sentiment_frustrated. Removing the older
        # one (`remove_tags`) could remove the same tag an agent, a trigger or another integration
        # set — Zendesk's tags carry no author — so each stays a fact of some handoff of the ticket.
        packet = ctx.packet
        facets = {"bot": (packet.get("bot") or {}).get("id"), "intent": (packet.get("intent") or {}).get("name"),
                  "sentiment": (packet.get("sentiment") or {}).get("label"),
                  "escalation": (packet.get("escalation") or {}).get("reason"),
                  "segment": (packet.get("customer") or {}).get("segment"),
                  "team": ctx.assignment.get("team") if routed else None,
                  "lang": str((packet.get("conversation") or {}).get("language") or "").replace("_", "-").split("-")[0]}
        tags = [*map(str, self._conf["tags"]), "handoff", *(f"{key}_{value}" for key, value in facets.items() if value)]
        if ctx.brief.repeat_contact:
            tags.append("repeat_contact")
        return list(dict.fromkeys(tag for tag in map(_tag, tags) if tag))

    # ---- sending ------------------------------------------------------------------------------

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        """The ticket; one whose field Zendesk refuses by name (`zendesk_refused.CAN_GO_WITHOUT`) is
        made once more without it, and the receipt names it: routing's previous agent outside the
        team's group, a group deleted since the mapping named it, a requester address Zendesk will
        not take — each lost the whole ticket, brief and transcript, for good (Salesforce's cases did
        not).

        A customer known by the bot's id and no e-mail is first found or made as an end user
        (`EndUsers.with_end_user`), so the payload sent names them by `requester_id`: what the preview
        shows (`requester: {name}`) is what goes when that is not possible."""
        payload, user_left_out = self._users.with_end_user(payload, ctx)
        body, unattached = self._with_upload(payload, ctx)
        left_out = (*user_left_out, *unattached)
        with carrying(left_out):
            # What a refused requester becomes: the name `_requester` gives the customer, alone.
            name_alone = _requester(as_identity(ctx.packet.get("customer") or {}))["name"]
            sent = create_or_without(self._create, body, ctx, name_alone)
        return replace(sent, dropped=(*left_out, *sent.dropped))

    def _create(self, body: dict[str, Any], key: str) -> Sent:
        reply, response = self._call("POST", "/api/v2/tickets.json", write=True, json=body,
                                     headers={"Idempotency-Key": key}, expect="ticket")
        # "hit": Zendesk replayed the ticket an earlier attempt with this key created.
        sent = self._sent(reply["ticket"], reply, idempotency_lookup=response.headers.get("x-idempotency-lookup"))
        return replace(sent, slow_down_s=quota_pause(response))

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        assert ctx.link is not None  # the base calls this only with a link
        body, unattached = self._with_upload(payload, ctx)
        try:
            return self._update(body, ctx, str(ctx.link.vendor_id), unattached)
        except TicketGone as gone:
            def uploaded(whole: dict[str, Any], on: HandoffContext, into: str) -> Sent:
                whole_body, whole_unattached = self._with_upload(whole, on)
                return self._update(whole_body, on, into, whole_unattached)

            return self.update_merged(ctx, gone, uploaded)

    def merged_into(self, gone: TicketGone, timeout: Callable[[], Any] = lambda: None) -> str | None:
        """The ticket an agent merged the closed `gone` into, from its audits (newest first, one
        page: the merge closed it, so it is among its last): None when it was not merged, or its
        audits cannot be read (a 403 for an OAuth token without the global `read` scope Zendesk
        asks for them). The update on it tells whether it is still open. A failure that may pass (a
        timeout, a 5xx, a 429) is raised, to be retried: taken as "not merged", one passing failure
        opened the duplicate of the merge target the conversation was linked to from then on (a review).
        `timeout` as `_latest_open_ticket`'s."""
        if not gone.closed:
            return None
        path = f"/api/v2/tickets/{quote(gone.ticket_id, safe='')}/audits.json"
        try:
            reply, _ = self._call("GET", path, write=False, params={"sort_order": "desc"}, expect="audits",
                                  timeout=timeout())
        except DeliveryError as err:
            if not merge_not_followed(err):
                raise
            log.warning("zendesk: the closed ticket's audits could not be read (%s); a follow-up names it",
                        type(err).__name__, extra={"ticket": gone.ticket_id})
            return None
        return _merge_target(reply["audits"], gone.ticket_id)

    def merge_end(self, gone: TicketGone, deadline: float | None = None) -> MergeEnd | None:
        into = self.merged_into(gone, self._timeouts(deadline, whole=True))
        return self.merge_left_on(into, seen=(gone.ticket_id,), deadline=deadline) if into is not None else None

    def merge_left_on(self, ticket_id: str, seen: Collection[str] = (),
                      deadline: float | None = None) -> MergeEnd | None:
        """`Adapter.merge_left_on`: each ticket read (Show Ticket) — one its own merge closed since
        (status closed, tagged `closed_by_merge`) is followed on; its audits alone cannot tell, as a
        merge target's name the tickets merged into it, the way back. None where a ticket on the way
        may not be read (a refusal, a 403, deleted)."""
        seen, timeout = set(seen), self._timeouts(deadline, whole=True)
        for _ in range(MAX_MERGES):
            if ticket_id in seen:
                return None
            seen.add(ticket_id)
            try:
                reply, _ = self._call("GET", f"/api/v2/tickets/{quote(ticket_id, safe='')}.json", write=False,
                                      expect="ticket", timeout=timeout())
            except DeliveryError as err:
                if not merge_not_followed(err):
                    raise
                log.warning("zendesk: the ticket a merge names could not be read (%s)", type(err).__name__,
                            extra={"ticket": ticket_id, "status": err.status})
                return None
            ticket = reply["ticket"]
            status, tags = ticket.get("status"), ticket.get("tags")
            if not (status == "closed" and isinstance(tags, list) and MERGED_TAG in tags):
                return MergeEnd(ticket_id, self.ticket_url(ticket_id), finished=status in ("solved", "closed"),
                                holder=_holder(ticket, reopened=False))
            into = self.merged_into(TicketGone(f"ticket {ticket_id} was closed by a merge", ticket_id=ticket_id,
                                               closed=True), timeout)
            if into is None:
                return None
            ticket_id = into
        return None

    def _update(self, body: dict[str, Any], ctx: HandoffContext, ticket_id: str,
                unattached: tuple[dict[str, str], ...] = ()) -> Sent:
        """`body` (its attachment uploaded, or `unattached` saying why not) on ticket `ticket_id`: its
        tags, its note, then the ticket settled (`_settle`). A ticket that takes no more updates
        raises `TicketGone`."""
        path = f"/api/v2/tickets/{quote(ticket_id, safe='')}.json"
        try:
            # The tags first: adding them again is harmless, so a failure after them only sends them
            # again, where a note already in would be looked for before anything else (`find_existing_update`).
            refused = (*unattached, *(self._add_tags(ticket_id, body["tags"]) if body.get("tags") else ()))
            # Tags refused, then the note's outcome unknown: the attempt that finds the note says so too.
            with carrying(refused):
                (reply, response), left_out = update_or_without(
                    lambda ticket: self._call("PUT", path, write=True, json={"ticket": ticket}, expect="ticket"),
                    body["ticket"], ctx)
        except RejectedError as err:
            raise _gone(err, ticket_id) or err from err
        refused = (*refused, *left_out)
        with carrying(refused):
            reopened, raised, holder = self._settle(path, ticket_id, reply["ticket"], self._raises_after_note(ctx))
        sent = self._sent(reply["ticket"], reply, reopened=reopened, raised_priority=raised)
        return replace(sent, slow_down_s=quota_pause(response), holder=holder, dropped=(*sent.dropped, *refused))

    def _add_tags(self, ticket_id: str, tags: list[str]) -> tuple[dict[str, str], ...]:
        """Add Tags (`PUT /api/v2/tickets/{id}/tags`): `tags` beside the ticket's own, none replaced.
        A ticket that takes no more updates raises (`_gone`, by the caller); any other refusal leaves
        the note to go without them, and the receipt says so — the note is what the agent needs.
        Safe to redo: a timeout is a plain failure, retried."""
        try:
            self._call("PUT", f"/api/v2/tickets/{quote(ticket_id, safe='')}/tags", write=False, json={"tags": tags},
                       expect="tags")
        except (RejectedError, AuthError) as err:
            # A 403 is a permission the API user lacks (a custom role that may not edit tags), not its
            # credentials: a 401, or the note's own call on them, says that.
            if _gone(err, ticket_id) is not None or (isinstance(err, AuthError) and err.status != 403):
                raise
            log.warning("Zendesk refused the handoff's tags; adding the note without them",
                        extra={"ticket": ticket_id, "status": err.status})
            return ({"part": "mapping", "reason": f"Zendesk refused the tags {', '.join(tags)} ({err.message[:300]}); "
                     "the note was added without them"},)
        return ()

    def _settle(self, path: str, ticket_id: str, ticket: Mapping[str, Any],
                raise_to: str | None) -> tuple[bool, str | None, str | None]:
        """A ticket our note is on, as Zendesk shows it: reopened if the note left it waiting on
        nobody (`reopen_solved`); raised to `raise_to` (`_raises_after_note`) if that ranks above its own
        priority, never lowered; both in one call. Returns whether it was reopened, the priority it
        was raised to (or None) and who has it then (`_holder`)."""
        changes: dict[str, Any] = {}
        if ticket.get("status") in WAITS_ON_NOBODY and self._conf["reopen_solved"]:
            changes["status"] = "open"
        if raise_to is not None and RANK.get(raise_to, 0) > RANK.get(ticket.get("priority"), 0):
            # Only a raise: an agent's higher priority (urgent, where urgent is mapped to high) stays.
            changes["priority"] = raise_to
        done = bool(changes) and self._change(path, ticket_id, changes)
        reopened = done and "status" in changes
        return reopened, changes.get("priority") if done else None, _holder(ticket, reopened)

    def _change(self, path: str, ticket_id: str, changes: Mapping[str, Any]) -> bool:
        """`changes` to a ticket our note is on (`_settle`): its status open, its priority raised.
        A note on a solved ticket leaves it solved, out of every queue, until it closes; on a
        pending one (the agent waiting for the customer), pending: the customer who came back would
        wait for no one. Reopened as a reply of theirs would. An urgent return raises the ticket's
        priority to what urgent is mapped to, where that is below Zendesk's urgent (`urgent: high`):
        only after the note, whose reply shows the ticket's own.

        The note is in already. A refusal is logged and the note left as it is (trying again cannot
        change Zendesk's mind); a failure that may pass (429 — Update Ticket allows 100 a minute —
        a 5xx, a timeout) is an unknown outcome: the next attempt finds the note by its handoff id
        (`find_existing_update`, which does not post it again) and settles the ticket then. It was
        logged and reported delivered, on a ticket no queue showed."""
        try:
            self._call("PUT", path, write=True, json={"ticket": dict(changes)}, expect="ticket")
        except TransientError as err:
            raise _not_settled(ticket_id, err, changes) from err
        except DeliveryError as err:
            log.warning(_NOT_DONE[frozenset(changes)], extra={"ticket": ticket_id, "error": type(err).__name__,
                                                               "status": err.status})
            return False
        return True

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        """The ticket a timed-out create of this handoff made, by its external_id (a read of the
        ticket table; search is eventually consistent). A bot's own `vendor_extra.zendesk.external_id`
        (its conversation's id, say) is on its earlier tickets too — Zendesk keeps external ids
        unique to nothing — and the oldest, a closed ticket of last month, was taken for the new one:
        then only a ticket whose first comment names the handoff is ours (none made before it can),
        read newest first, so a hundred older ones do not hide it. One whose comment `vendor_extra`
        replaced is not found, and made again."""
        own = ctx.vendor_extra.get("external_id")
        external_id = str(own or ctx.handoff_id)
        params = {"external_id": external_id}
        if own:
            params.update(sort_by="created_at", sort_order="desc", per_page="100")
        reply, _ = self._call("GET", "/api/v2/tickets.json", write=False, params=params, expect="tickets")
        tickets = sorted(reply.get("tickets") or [], key=lambda t: t["id"])
        if own:
            tickets = [t for t in tickets if ctx.handoff_id in str(t.get("description") or "")]
        return self._with_its_file(ctx, self._sent(tickets[0], {}, found_by="external_id")) if tickets else None

    def _with_its_file(self, ctx: HandoffContext, found: Sent) -> Sent:
        """`found`, the ticket a timed-out or interrupted create made, with the file its comment was to
        carry checked: the attempt that made it may have met the upload refused (attachments off, a
        role that may not upload) and died before saying so — a worker killed, its record refused —
        and the receipt rebuilt from the render said "the whole text is attached, nothing cut" of a
        ticket holding the last messages only (a black-hole review). An unknown outcome raised after
        the refusal carries it already (`_carried`). Its first comment is read (one call, only when a
        file was planned)."""
        planned = self._file_to_check(ctx)
        if planned is None:
            return found
        reply, _ = self._call("GET", f"/api/v2/tickets/{quote(found.vendor_id)}/comments.json", write=False,
                              params={"sort_order": "asc", "per_page": 1}, expect="comments")
        return replace(found, dropped=self._file_missing(ctx, planned, next(iter(reply.get("comments") or ()), {})))

    def _file_to_check(self, ctx: HandoffContext) -> _Comment | None:
        """`ctx`'s comment as planned, when it was to carry a file whose refusal the unknown outcome
        raised after it does not carry already (`carrying`): the file to look for on what was found."""
        planned = self._comment(ctx)
        if planned.attachment is None or any(entry.get("file") == planned.attachment[0]
                                             for entry in ctx.sent_to.get("left_out") or ()
                                             if isinstance(entry, Mapping)):
            return None
        return planned

    def _file_missing(self, ctx: HandoffContext, planned: _Comment | None,
                      comment: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
        """The receipt's entries for the file `planned` (`_file_to_check`) was to carry, when `comment` —
        the one found after an unknown outcome, the ticket's first or the note — does not have it."""
        if planned is None or planned.attachment is None:
            return ()
        name = planned.attachment[0]
        if any(isinstance(a, Mapping) and a.get("file_name") == name for a in comment.get("attachments") or ()):
            return ()
        log.warning("the comment found after an unknown outcome lacks the file it was to carry")
        said = (f"{name} is not on the ticket (Zendesk refused it when the comment was made, or it was removed): "
                f"the comment carries {planned.carries}; the rest of the {planned.attached_part} is not on the ticket")
        return _file_refused(planned, said, ctx.brief.parts_present)

    def find_existing_update(self, ctx: HandoffContext) -> Sent | None:
        """After a timed-out comment: did it land? Updates have no Idempotency-Key at Zendesk, but
        every brief names its handoff id, so the ticket's newest comments tell — a page of 100,
        Zendesk's most (20 missed the note on a busy ticket replayed later: posted twice). One that
        went to the ticket the link's was merged into (`update_merged`) is looked for there."""
        assert ctx.link is not None
        merged = str(ctx.sent_to.get("merged_into") or "")
        ticket_id = merged or ctx.link.vendor_id
        try:
            reply, _ = self._call("GET", f"/api/v2/tickets/{quote(ticket_id)}/comments.json", write=False,
                                  params={"sort_order": "desc", "per_page": 100}, expect="comments")
        except RejectedError as err:  # deleted since: the comment cannot be there, a new ticket may
            if merged:
                return None  # the update meets the link's ticket closed, and looks for its merge again
            raise _gone(err, ticket_id) or err from err
        # The link moves from the ticket merged away, and only while it names that one: a later handoff
        # may have moved it to this one already (its `told` was put back; a review), or further on.
        merged_from = str(ctx.sent_to.get("merged_from") or ctx.link.vendor_id)
        moved_from = merged_from if merged else None
        for comment in reply["comments"]:
            if ctx.handoff_id in (comment.get("html_body") or comment.get("body") or ""):
                reopened, raised, holder = self._after_found_note(ticket_id, self._raises_after_note(ctx))
                # On the merge target it went with the whole brief: the receipt says that (it said a
                # batch's messages alone and no file; a review).
                sent_as = (None, merge_target_context(ctx, f"{self.ticket_noun} {merged_from}"), ()) if merged else None
                as_sent = sent_as[1] if sent_as else ctx
                return Sent(vendor_id=ticket_id, url=self.ticket_url(ticket_id),
                            dropped=self._file_missing(as_sent, self._file_to_check(as_sent), comment),
                            reply={"found_by": "comment", **({"reopened": True} if reopened else {}),
                                   **({"raised_priority": raised} if raised else {})}, holder=holder,
                            moved_from=moved_from if moved_from != ticket_id else None, sent_as=sent_as)
        return None

    def probe(self, routing: Mapping[str, Any] | None = None) -> Probed:
        reply, _ = self._call("GET", "/api/v2/users/me.json", write=False, expect="user")
        user = reply["user"]
        who = user.get("email") or user.get("name") or f"user {user.get('id')}"
        if user.get("id") is None:  # Zendesk answers a caller it could not authenticate as "Anonymous user"
            raise AuthError("Zendesk took these credentials for an anonymous user")
        if user.get("role") == "end-user":
            raise AuthError(f"Zendesk signs these credentials in as {who}, an end user: tickets need an agent")
        return Probed(f"signed in as {who} ({user.get('role')})")

    def _after_found_note(self, ticket_id: str, raise_to: str | None) -> tuple[bool, str | None, str | None]:
        """A note a timed-out attempt posted, found: the ticket as `send_update` would have left it
        — reopened if solved, its priority raised to `raise_to` if lower (that attempt may not have
        got so far), and who has it (`_holder`)."""
        path = f"/api/v2/tickets/{quote(str(ticket_id), safe='')}.json"
        try:
            reply, _ = self._call("GET", path, write=False, expect="ticket")
        except TransientError as err:
            # Whether it waits on nobody, or is below `raise_to`, is not known: the next attempt reads it again.
            wanted = {**({"status": "open"} if self._conf["reopen_solved"] else {}),
                      **({"priority": raise_to} if raise_to is not None else {})}
            if wanted:
                raise _not_settled(ticket_id, err, wanted) from err
            return False, None, None  # only who has it was asked: left unknown, the note is in
        except DeliveryError as err:
            log.warning("zendesk: the ticket could not be read after its note was found (not reopened, "
                        "priority not raised, who has it unknown)",
                        extra={"ticket": ticket_id, "error": type(err).__name__, "status": err.status})
            return False, None, None
        return self._settle(path, ticket_id, reply["ticket"], raise_to)

    def find_open_ticket(self, ctx: HandoffContext) -> Link | None:
        try:
            ticket = self._latest_open_ticket(ctx.packet)
        except (RateLimited, AuthError):
            raise  # would fail the create just the same; let the outbox pause / report
        except DeliveryError as err:
            # The vendor's text can quote the customer; the log gets the kind of failure only.
            log.warning("zendesk: open-ticket search failed (%s), creating a new ticket", type(err).__name__)
            return None
        return Link(vendor_id=str(ticket["id"]), url=self.ticket_url(ticket["id"]),
                    extra={FOUND_BY: OPEN_TICKET_SEARCH}) if ticket else None

    def previous_agent(self, packet: Mapping[str, Any], deadline: float | None = None) -> Mapping[str, Any] | None:
        # Asked before the handoff is stored, while the bot waits: the search (for a customer
        # without e-mail, their end user's lookup and ticket list) and the agent's read share the
        # lookup's time (`deadline`, a time.monotonic(), from `decision.lookup_ends`; without one,
        # the same share of a whole budget from now), each call capped by the delivery timeout —
        # a Zendesk that does not answer made the bot wait 15 s more, with nothing stored yet.
        # Routing falls back then.
        started = time.monotonic()
        ends = deadline if deadline is not None else lookup_ends(started + self.settings.sync_budget_ms / 1000, started)
        timeout = self._timeouts(ends, "the lookup used up its share of the sync budget")
        try:
            assignees = list(dict.fromkeys(str(t["assignee_id"]) for t in self._open_tickets(packet, True, timeout)))
            for assignee in assignees[:PREVIOUS_AGENTS_READ]:
                reply, _ = self._call("GET", f"/api/v2/users/{quote(assignee)}.json", write=False, expect="user",
                                      timeout=timeout())
                user = reply["user"]
                if user.get("active") is not False and not user.get("suspended") \
                        and user.get("role") in (None, "agent", "admin"):
                    return {"id": str(user["id"]), "name": user.get("name"), "email": user.get("email")}
                # Suspended, deleted or no longer an agent: offered, they held the ticket and nobody in the
                # group was asked to take it (a review). The next open ticket's, as Salesforce's lookup
                # skips an inactive owner for the next case's.
                log.info("zendesk: a previous agent no longer takes tickets; not offered",
                         extra={"agent_role": user.get("role"), "suspended": bool(user.get("suspended"))})
            return None
        except (DeliveryError, ConfigError) as err:
            # Routing goes on without the hint; say why once. Raised on: the trace says the lookup
            # failed, where "no previous agent known" read as a fact about the customer (a review).
            log.warning("zendesk: previous agent unknown (%s)", type(err).__name__,
                        extra={"waited_ms": round((time.monotonic() - started) * 1000)})  # no conversation id:
            # on WhatsApp or SMS it is the customer's phone number
            raise

    def _latest_open_ticket(self, packet: Mapping[str, Any], assigned: bool = False,
                            timeout: Callable[[], float | None] = lambda: None) -> dict[str, Any] | None:
        """The customer's newest open ticket (`assigned`: with an assignee), or None. `timeout`
        gives each call's timeout in seconds as it is made (None: the delivery timeout)."""
        return next(iter(self._open_tickets(packet, assigned, timeout)), None)

    def _open_tickets(self, packet: Mapping[str, Any], assigned: bool,
                      timeout: Callable[[], float | None]) -> list[dict[str, Any]]:
        """The customer's open tickets, newest first (`assigned`: with an assignee)."""
        if (external_id := customer_external_id(packet)) is not None:
            return _open(self._requested_tickets(external_id, assigned, timeout), assigned)
        email = str((packet.get("customer") or {}).get("email") or "")
        if not SEARCHABLE_EMAIL.fullmatch(email):
            # Zendesk's search reads `*` as a wildcard and other characters as its syntax: an
            # address such as *@bigcorp.com would find another customer's open ticket (routing
            # their agent in, or adding this brief to it). Such an address is not looked up.
            return []
        query = f"type:ticket requester:{email} status<solved"
        reply, _ = self._call("GET", "/api/v2/search.json", write=False, timeout=timeout(),
                              params={"query": query, "sort_by": "created_at", "sort_order": "desc"}, expect="results")
        return _open([result for result in reply.get("results") or [] if result.get("result_type") == "ticket"],
                     assigned)

    def _requested_tickets(self, external_id: str, assigned: bool,
                           timeout: Callable[[], float | None]) -> list[dict[str, Any]]:
        """The newest tickets (open or not: `_open` says) of a customer the bot knows by its id and no
        e-mail: their end user (`EndUsers.find`, under `external_id`; never made here) requested them.
        Read from the ticket table (List User Requested Tickets), not searched: search is eventually consistent and its
        syntax is not in Zendesk's description. Nobody found who may be the customer, nothing is read:
        a user held under the id that is someone else's (an agent, suspended, the id in another
        case) would lend this customer their ticket or their agent."""
        user_id = self._users.find(external_id, timeout=timeout())
        if user_id is None:
            return []
        # Newest first, a page of 100 (Zendesk's most), archived tickets (closed ones) left out: a
        # customer's open ticket is among their latest.
        try:
            reply, _ = self._call("GET", f"/api/v2/users/{user_id}/tickets/requested.json", write=False,
                                  timeout=timeout(), expect="tickets", params={
                                      "sort_by": "created_at", "sort_order": "desc", "per_page": 100,
                                      "exclude_archived": "true"})
        except AuthError as err:
            if err.status != 403:
                raise  # the credentials refused: the ticket would be too
            # The API user may not list a user's tickets (a role's permission): as a 403 on the user
            # lookup (`EndUsers.find`), the customer's open ticket is not looked for and a new one is
            # made — raised, it failed the delivery for good, no ticket at all.
            log.warning("Zendesk would not list the customer's tickets; their open ticket is not looked for",
                        extra={"status": err.status})
            return []
        if len(reply["tickets"]) >= 100 and _latest_open(reply["tickets"], assigned) is None:
            log.info("zendesk: the customer's newest 100 tickets hold no open one; older ones are not read")
        return reply["tickets"]

    def _with_upload(self, payload: dict[str, Any],
                     ctx: HandoffContext) -> tuple[dict[str, Any], tuple[dict[str, str], ...]]:
        """Upload the attachment `_comment` planned and link its token to the comment; and what the
        receipt must add as dropped when Zendesk refuses the file (`_unattached`).

        The token exists only once uploaded, so the preview shows the payload without it.
        """
        planned = self._comment(ctx)
        if planned.attachment is None:
            return payload, ()
        name, text = planned.attachment
        try:
            reply, _ = self._call("POST", "/api/v2/uploads.json", write=False, expect="upload",
                                  params={"filename": name}, data=text.encode("utf-8"),
                                  headers={"Content-Type": "text/plain; charset=utf-8"})
        except (RejectedError, AuthError) as err:
            if err.status == 401:
                raise  # the credentials: the ticket would be refused too
            # Attachments turned off in the account (a 422), a role that may not upload (a 403): the
            # comment still carries what an agent reads first. Raised, it failed every long handoff
            # for good — no ticket, no note on the open one (a review).
            log.warning("Zendesk refused the file holding the rest of the brief; sending the comment without it",
                        extra={"vendor_status": err.status})
            return _unattached(payload, planned, err, ctx.brief.parts_present)
        # An upload only becomes visible to agents once a comment links it: safe to redo.
        token = reply["upload"]["token"]
        comment = payload["ticket"].get("comment") or {}
        return deep_merge(payload, {"ticket": {"comment": {"uploads": [*comment.get("uploads", []), token]}}}), ()

    def _timeouts(self, ends: float | None, used_up: str = "the reads used up the time the event may take", *,
                  whole: bool = False) -> Callable[[], Any]:
        """Each call's timeout, as it is made, for calls that share one allowance ending at `ends` (a
        time.monotonic()): what is left of it, at most the delivery timeout; none left raises
        `TransientError` (`used_up`). Without `ends`, the delivery timeout. `whole`: the whole call
        within what is left — requests' (connect, read) pair, the connection given at most
        `CONNECT_S` of it, as a call may otherwise take its timeout twice (`call_deadline.whole_call_s`):
        a merge event's reads answered after Zendesk had stopped waiting (a review)."""
        def timeout() -> Any:
            if ends is None:
                return None
            left = min(self.settings.vendor_timeout_s, ends - time.monotonic())
            if left <= 0:
                raise TransientError(used_up)
            if not whole:
                return left
            connect = min(CONNECT_S, left / 2)
            return connect, left - connect

        return timeout

    def _call(self, method: str, path: str, *, write: bool, expect: str, timeout: Any = None,
              **kwargs: Any) -> tuple[dict[str, Any], requests.Response]:
        """One raw call; `expect` is the key a 2xx answer must carry (a proxy's HTML page has none);
        `timeout` in seconds (or requests' (connect, read) pair), else the delivery timeout (VENDOR_TIMEOUT_S)."""
        client = self._client()
        if "json" in kwargs:  # encoded by orjson (`json_codec`): requests' `json=` uses the standard library
            kwargs["data"] = json_codec.dumps_bytes(kwargs.pop("json"))
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        with edge(write=write):
            # Redirects are not followed: requests drops the credentials on another host but sends
            # the whole packet there again (a 307), and took its answer for the ticket.
            response = client.session.request(method, client.session.origin + path, allow_redirects=False,
                                              timeout=timeout or self.settings.vendor_timeout_s, **kwargs)
            if response.is_redirect:
                raise RejectedError(f"Zendesk answered a redirect (HTTP {response.status_code}), not followed: is "
                                    "ZENDESK_SUBDOMAIN / ZENDESK_BASE_URL the account's address?",
                                    status=response.status_code)
            reply = response.json()
        if not isinstance(reply, dict) or not isinstance(reply.get(expect), (dict, list)):
            kind = OutcomeUnknown if write else TransientError
            raise kind(f"Zendesk answered {response.status_code} without {expect!r}", status=response.status_code)
        return reply, response

    def _client(self) -> _Client:
        with self._lock:
            if self._client_cache is None:
                settings = self.settings
                self.check_settings(settings)
                session = ZendeskSession(self._origin)
                # OAuth when given (no email needed), else email + API token. zenpy puts either on the
                # session; no password path (Zendesk has retired passwords for the API).
                credentials = ({"oauth_token": settings.zendesk_oauth_token} if settings.zendesk_oauth_token
                               else {"email": settings.zendesk_email, "token": settings.zendesk_api_token})
                zenpy = Zenpy(subdomain=settings.zendesk_subdomain, session=session, disable_cache=True,
                              timeout=settings.vendor_timeout_s, **credentials)
                self._client_cache = _Client(session, zenpy)
            return self._client_cache

    @property
    def _origin(self) -> str:
        return self.settings.zendesk_base_url.rstrip("/") or f"https://{self.settings.zendesk_subdomain}.zendesk.com"

    def ticket_url(self, vendor_id: Any) -> str:
        # Where agents open it: the account's own address, even when the API is reached through
        # ZENDESK_BASE_URL (a proxy's internal address no agent can open).
        return f"https://{self.settings.zendesk_subdomain}.zendesk.com/agent/tickets/{vendor_id}"

    def _sent(self, ticket: Mapping[str, Any], reply: Mapping[str, Any], **notes: Any) -> Sent:
        # A small reply for debugging: ids and states, no customer data, no comment bodies.
        kept = {k: ticket.get(k) for k in ("id", "status", "priority", "type", "group_id", "assignee_id",
                                           "brand_id", "external_id", "created_at", "updated_at") if k in ticket}
        small: dict[str, Any] = {"ticket": kept}
        if isinstance(reply.get("audit"), Mapping):
            small["audit_id"] = reply["audit"].get("id")
        small.update((key, value) for key, value in notes.items() if value)
        ticket_id = ticket.get("id")
        if isinstance(ticket_id, bool) or not isinstance(ticket_id, int | str) or not str(ticket_id).isdigit():
            # A ticket without a usable id (an odd proxy or API answer): recorded, it became a link
            # to …/tickets/None; unread, a KeyError. Looked up by its external_id instead.
            raise OutcomeUnknown(f"Zendesk answered without the ticket's id (got {str(ticket_id)[:40]!r})",
                                 reply=small)
        return Sent(vendor_id=str(ticket_id), url=self.ticket_url(ticket_id), reply=small)


def _most_that_fit(most: int, render: Callable[[int], str], fits: Callable[[str], bool]) -> tuple[int, str]:
    """The largest n ≤ `most` whose `render(n)` `fits`, and that rendering; (0, "") when none does.
    A bisection: each try renders n messages, and a long transcript has thousands."""
    low, high, best = 1, most, (0, "")
    while low <= high:
        n = (low + high) // 2
        body = render(n)
        if fits(body):
            low, best = n + 1, (n, body)
        else:
            high = n - 1
    return best


# The agents of a customer's open tickets read, newest first, for one who still takes tickets
# (`previous_agent`): each read shares the lookup's part of the sync budget.
PREVIOUS_AGENTS_READ = 3


def _latest_open(tickets: list[Any], assigned: bool) -> dict[str, Any] | None:
    """The first of `tickets` (newest first) still open (`assigned`: with an assignee), or None."""
    return next(iter(_open(tickets, assigned)), None)


def _open(tickets: list[Any], assigned: bool) -> list[dict[str, Any]]:
    """Those of `tickets` (newest first) still open (`assigned`: with an assignee)."""
    return [ticket for ticket in tickets if isinstance(ticket, dict) and ticket.get("status") in OPEN_STATUSES
            and (ticket.get("assignee_id") or not assigned)]


def _holder(ticket: Mapping[str, Any], reopened: bool) -> str | None:
    """The agent a ticket we updated waits on (`Sent.holder`): its assignee — reopened, a solved
    ticket's assignee has it again (Zendesk keeps them); left solved or pending, nobody is on it."""
    if ticket.get("status") in WAITS_ON_NOBODY and not reopened:
        return None
    assignee = ticket.get("assignee_id")
    return str(assignee) if id_problem(assignee) is None else None


# What a refused `_change` logs, by what it was to change.
_NOT_DONE = {frozenset({"status"}): "solved ticket not reopened",
             frozenset({"priority"}): "ticket's priority not raised",
             frozenset({"status", "priority"}): "solved ticket not reopened nor its priority raised"}


def _not_settled(ticket_id: str, cause: TransientError, changes: Mapping[str, Any]) -> OutcomeUnknown:
    """The note is on `ticket_id`, which still waits on nobody or is below the priority it is to be
    raised to (`changes`): the next attempt looks, finds the note and settles the ticket (a 429
    still pauses the target)."""
    log.warning("%s yet; the next attempt does it", _NOT_DONE[frozenset(changes)],
                extra={"ticket": ticket_id, "error": type(cause).__name__, "status": cause.status})
    undone = " and ".join([*(["reopened"] if "status" in changes else []),
                           *([f"raised to {changes['priority']}"] if "priority" in changes else [])])
    # Not reopened, it is in no agent's queue: no wait is quoted meanwhile (a review of the mend).
    return RateLimitedAfterActing.unknown(f"the note is on ticket {ticket_id}, which could not be {undone} yet "
                                          f"({type(cause).__name__})", cause, made="status" not in changes)


def _tags_as_text(tags: Any) -> bool:
    """Tags Zendesk takes: a list of text (or numbers), or one text of them separated by spaces."""
    return isinstance(tags, str) or (isinstance(tags, list) and all(
        isinstance(tag, (str, int, float)) and not isinstance(tag, bool) for tag in tags))


def _merge_target(audits: list[Any], ticket_id: str) -> str | None:
    """The ticket the newest merge audit of closed ticket `ticket_id` names, or None. Zendesk
    records a merge in the audits of the tickets merged, `via.source.rel` "merge", the other ticket
    in `via.source.from.ticket_id` (the ticket object's own `via` is how it was made, not merged).
    Zendesk's OpenAPI description leaves `via.source` open; this is how integrations that follow
    merges read it.
    A ticket merged into this one is closed by its merge as well: named, its update meets it closed,
    and the follow-up is opened as before — no other open ticket can be updated by mistake."""
    for audit in audits:
        source = ((audit.get("via") if isinstance(audit, dict) else None) or {}).get("source")
        if isinstance(source, dict) and source.get("rel") == "merge":
            target = (source.get("from") or {}).get("ticket_id") if isinstance(source.get("from"), dict) else None
            return str(target) if id_problem(target) is None and str(target) != ticket_id else None
    return None


def _gone(err: RejectedError, ticket_id: str) -> TicketGone | None:
    """Zendesk's refusal as `TicketGone` when the ticket takes no more updates: closed (422 with
    `CLOSED_TICKET`) or deleted (404); None for any other refusal."""
    closed = err.status == 422 and CLOSED_TICKET in err.message
    if not closed and err.status != 404:
        return None
    return TicketGone(f"ticket {ticket_id} is {'closed' if closed else 'gone'}: {err.message}",
                      ticket_id=str(ticket_id), closed=closed, status=err.status, reply=err.reply)


def _spec(entry: Mapping[str, Any]) -> Any:
    """A custom field's value spec (connector.mapping_values): `path`, `template`, `literal` or `lookup`."""
    return {key: value for key, value in entry.items() if key in (*VALUE_KINDS, "from", "default")}


def _config(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping over the shipped defaults; a malformed entry names its key (checked at start-up)."""
    conf = {**DEFAULTS, **{key: value for key, value in mapping.items() if value is not None}}
    if problem := priority_map_problem("zendesk", mapping.get("priority")):
        raise problem
    conf["priority"] = {**PRIORITIES, **(mapping.get("priority") or {})}
    # Zendesk's own, fixed sets: any other value is refused by name on every ticket.
    if conf["type"] not in TICKET_TYPES:
        raise MappingProblem("zendesk", "type", f"must be one of {', '.join(TICKET_TYPES)}, got {conf['type']!r}")
    for ours, theirs in conf["priority"].items():
        if theirs is not None and theirs not in PRIORITIES:  # null: no priority (Zendesk's is nullable)
            raise MappingProblem("zendesk", f"priority.{ours}",
                                 f"must be one of Zendesk's {', '.join(PRIORITIES)} (or null), got {theirs!r}")
    if conf.get("brand_id") is not None:
        if problem := id_problem(conf["brand_id"]):
            raise MappingProblem("zendesk", "brand_id", problem)
        conf["brand_id"] = int(conf["brand_id"])
    fields: list[dict[str, Any]] = []
    for i, entry in enumerate(conf["custom_fields"]):
        if not isinstance(entry, Mapping) or "id" not in entry or all(entry.get(k) is None for k in VALUE_KINDS):
            raise MappingProblem("zendesk", f"custom_fields[{i}]",
                                 "needs an 'id' and a value: path, template, literal or lookup")
        if problem := id_problem(entry["id"]):
            raise MappingProblem("zendesk", f"custom_fields[{i}].id", problem)
        # A misspelt `default` (`defualt: tier_2`) was dropped before the value was checked: the
        # field went missing from tickets with no warning, where subject: and Salesforce refuse it.
        if unknown := sorted(set(entry) - {"id", *VALUE_KINDS, "from", "default"}):
            raise MappingProblem("zendesk", f"custom_fields[{i}]", f"unknown key(s) {unknown}")
        if int(entry["id"]) in (field["id"] for field in fields):  # Zendesk keeps one of the two values
            raise MappingProblem("zendesk", f"custom_fields[{i}].id", f"{entry['id']} is mapped twice")
        compile_for("zendesk", _spec(entry), f"custom_fields[{i}]", mapping.get("lookups"))
        # Ids are integers to Zendesk (TicketObject's brand_id, TicketFieldValueInput's id): one
        # written in quotes (`id: "360001"`, as YAML keeps a long number safe) was sent as a string.
        fields.append({**entry, "id": int(entry["id"])})
    conf["custom_fields"] = fields
    if not isinstance(conf["tags"], list):
        raise MappingProblem("zendesk", "tags", "must be a list")
    for i, tag in enumerate(conf["tags"]):  # `{a: 1}` became the tag `a_1`, `null` the tag `none`
        if isinstance(tag, bool) or not isinstance(tag, (str, int, float)) or not _tag(str(tag)):
            raise MappingProblem("zendesk", f"tags[{i}]", f"must be a word or a number, got {tag!r}")
        if isinstance(tag, str) and looks_like_template(tag):  # every ticket got the tag `intent_name` (a review)
            raise MappingProblem("zendesk", f"tags[{i}]", f"is a tag as written, not a template: {tag!r} would be the "
                                 f"tag {_tag(tag)!r} on every ticket (a value of the packet goes in custom_fields, "
                                 "with template:)")
    if mapping.get("subject"):  # a value spec, as a custom field's: checked now, not at every delivery
        compile_for("zendesk", mapping["subject"], "subject", mapping.get("lookups"))
    return conf


def _requester(customer: Mapping[str, Any]) -> dict[str, Any]:
    """The ticket's requester object: Zendesk finds or creates the end user by its e-mail. It takes
    no phone and no external_id; a customer with our id and no e-mail is sent as `requester_id`
    instead (`EndUsers.with_end_user`, at send time: it needs a call).

    With neither (a phone alone), only the name: no call can find the same user again safely.
    Create Or Update User matches by e-mail or external_id only — it would make a user per
    handoff, and a second one with the same number Zendesk may refuse (a direct line belongs to
    one user). A search by phone is eventually consistent, matches partial numbers, and a number
    the customer typed could be another person's: this handoff's transcript would land in that
    person's ticket history. The phone stays in the brief; the name shows it when none is given."""
    requester: dict[str, Any] = {"name": called(customer, "Customer")}
    if customer.get("email"):
        requester["email"] = customer["email"]
    return requester


def _tag(value: str) -> str:
    # Zendesk splits tags on spaces and lowercases them; keep letters, digits, _ and -.
    return re.sub(r"_{2,}", "_", _TAG_UNSAFE.sub("_", value.strip().lower())).strip("_")[:80]


def _unattached(payload: dict[str, Any], planned: _Comment, err: DeliveryError,
                present: Collection[str]) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """`payload` whose comment says the file it names was refused rather than attached, and the
    receipt's entries for it: the part cut is named, with Zendesk's reason (`with_dropped` takes the
    file off the receipt's `attached`), and each of the packet's parts (`present`) that only the
    file held is marked `UNDELIVERED`."""
    assert planned.attachment is not None
    name = planned.attachment[0]
    why = f"{err.status}: {vendor_message(err.reply) or err.message}"[:200]
    said = (f"Zendesk refused {name} ({why}): the comment carries {planned.carries}; "
            f"the rest of the {planned.attached_part} is not on the ticket")
    comment = payload["ticket"].get("comment") or {}
    body = comment.get("html_body")
    if isinstance(body, str) and planned.note and planned.note in body:  # (vendor_extra may have replaced it)
        # About as long as the note it replaces: the comment was sized with that one (60,000 bytes of
        # Zendesk's ~64 KB).
        body = body.replace(planned.note, _note(f"The whole {planned.attached_part} is too long for a Zendesk "
                                                f"comment, and Zendesk refused it as a file ({why}). This comment "
                                                f"carries {planned.carries}."), 1)
        for said_attached, said_refused in planned.swaps:  # nothing of it may send the agent to the file
            body = body.replace(said_attached, said_refused, 1)
        payload = deep_merge(payload, {"ticket": {"comment": {"html_body": body}}})
    return payload, _file_refused(planned, said, present)


def _below(shown: int, count: int, name: str) -> str:
    """Where a transcript's heading over its last `shown` of `count` messages says it is, the file
    `name` holding all of them."""
    return f"below, and in the attached {name}" if shown == count else \
        f"the last {shown} below, all {count} in the attached {name}"


def _below_refused(shown: int, count: int) -> str:
    """`_below` where Zendesk refused the file."""
    return "below" if shown == count else f"the last {shown} below (Zendesk refused the file holding all)"


def _left_out(shown: int, count: int) -> str:
    """What a comment down to its core leaves out, with the last `shown` of the transcript's `count`
    messages kept ("… are")."""
    lists = ["Earlier contacts", "what was tried", "what the bot collected"]
    if not shown:
        lists.append("the transcript")
    elif shown < count:
        lists.append(f"the first {count - shown} messages of the transcript")
    return f"{', '.join(lists[:-1])} and {lists[-1]} are"


def _files_left_out(ctx: HandoffContext, shown: int) -> tuple[str, ...]:
    """`("attachments",)` when a message the comment leaves out (all but its last `shown`) has a file:
    only the attached brief or transcript holds its link, and a refused upload left the receipt saying
    the customer's files were delivered (a review)."""
    entries = ctx.packet.get("transcript") or []
    left_out = entries[:max(0, len(entries) - shown)]
    return ("attachments",) if any(entry.get("attachments") for entry in left_out) else ()


def _heading(where: str, refused: str) -> tuple[str, str]:
    """A `_Comment.swaps` entry for the transcript heading saying `where` the transcript is
    (`Brief.summary_html_with`), and saying `refused` instead when Zendesk refuses the file."""
    return f": {html.escape(where)}.</h3>", f": {html.escape(refused)}.</h3>"


_NOT_ON_TICKET = "not on this ticket (Zendesk refused the file holding it)"
# brief.html.j2's line counting the earlier contacts a comment leaves to the file (`html_recent_contacts`).
_OLDER_CONTACTS = (", in the attached brief</em></li>",
                   ", not on this ticket (Zendesk refused the file holding them)</em></li>")


def _file_refused(planned: _Comment, said: str, present: Collection[str]) -> tuple[dict[str, Any], ...]:
    """The receipt's entries for the file `planned` names, not on the ticket (`said`: why): the part cut,
    and each of the packet's parts (`present`) that only the file held, marked `UNDELIVERED`."""
    assert planned.attachment is not None
    name = planned.attachment[0]
    lost = tuple({"part": part, UNDELIVERED: True, "reason": f"not on the ticket: only {name} held it"}
                 for part in planned.only_attached if part in present)
    return ({"part": planned.attached_part, "file": name, "reason": said}, *lost)


def _fits(html_body: str) -> bool:
    return len(html_body.encode("utf-8")) <= COMMENT_LIMIT_BYTES


def _note(text: str) -> str:
    return f"<p><em>{html.escape(text)}</em></p>"
