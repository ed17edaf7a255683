"""Salesforce: one Case per handoff, with the customer's Contact and the whole transcript.

Payload (what `preview` shows is what is sent, in this order): `contact` (SOQL lookup, record to
create), `request` (POST, or PATCH upsert on an External ID), `headers` (`Sforce-Auto-Assign`),
`case` (vendor_extra merges in here, last), then `comments` (CaseComments) or `feed_items`.

Dedup and resume: with `handoff_id_field` the Case carries the handoff id, so after an unknown
outcome `find_existing` finds it by SOQL (consistent, unlike search) instead of making a second one.
Each transcript comment starts with a header naming the handoff and its part, so bodies are unique
per handoff: a resumed delivery reads the case's comments and posts only the missing ones. When the
case exists but its transcript is incomplete, transient errors become `OutcomeUnknown`, so the next
attempt goes through `find_existing` and resumes instead of re-creating.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession
from simple_salesforce.format import format_external_id

from connector.brief import named, subject_line
from connector.decision import lookup_ends
from connector.errors import ConfigError
from connector.mapping_values import MISSING, misspelt_in, resolve
from connector.settings import Settings, salesforce_domain
from connector.text_rules import as_identity, whole_end

from .base import (
    CLOCK_SKEW_S,
    UNDELIVERED,
    WHOLE_IN_THE_DESCRIPTION,
    Adapter,
    Dropped,
    HandoffContext,
    Probed,
    Sent,
    carrying,
    created_at,
    deep_merge,
    mapping_context,
    merge_not_followed,
    routing_field_left_out,
    routings_agent_at,
)
from .errors import (
    AuthError,
    DeliveryError,
    OutcomeUnknown,
    RateLimitedAfterActing,
    RejectedError,
    TicketGone,
    TransientError,
)
from .salesforce_client import (
    DEFAULT_RETRY_AFTER_S,
    Client,
    Redirected,
    Throttled,
    VendorSession,
    auth_mode,
    case_fields_findings,
    check_mapping,
    connect,
    translate,
    vendor_error,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

SUBJECT_MAX = 255  # characters
# The standard fields the adapter fills from the customer, in characters: Case.SuppliedName and
# Contact.LastName 80, Contact.FirstName 40, Case.SuppliedEmail and Contact.Email 80,
# Case.SuppliedPhone and Contact.Phone 40.
FIELD_MAX = {"Name": 80, "FirstName": 40, "Email": 80, "Phone": 40}
DESCRIPTION_MAX = 32_000  # characters, as Salesforce counts them: UTF-16 code units (`_units`)
COMMENT_MAX_BYTES = 4_000  # CaseComment.CommentBody is limited in UTF-8 bytes, not characters
FEED_ITEM_MAX = 10_000  # FeedItem.Body, characters
CONTINUED = "\n(continued)"  # ends every part of a message too long for one comment
# Begins every later part: the rest of a cut line at the margin, a customer's own "[09:20] Agent:
# refund approved" passed for a transcript line (a review), which the brief's indentation prevents.
RESUMED = "(continued) "
# Ends a Description cut to fit. It names the handoff, as the brief's own last line does (cut off
# with the rest): a retry after a timed-out create finds the case by it (`_by_description`).
OVERFLOW = "\n[… the brief continues in the case comments · handoff {}]"
PRIORITY = {"low": "Low", "normal": "Medium", "high": "High", "urgent": "High"}
ORIGIN = {"web_chat": "Web", "email": "Email", "voice": "Phone", "sms": "Phone"}


class SalesforceAdapter(Adapter):
    name = "salesforce"
    mapping_keys = frozenset({"status", "priority", "origin", "default_origin", "contact", "transcript_as",
                                 "comments_published", "rate_limit_retry_after_s", "fields", "handoff_id_field",
                                 "handoff_id_is_external_id"})
    mapping_types = {"comments_published": bool, "handoff_id_is_external_id": bool, "fields": dict, "priority": dict,
                     "origin": dict, "rate_limit_retry_after_s": (int, float)}
    agent_field = "owner_id"  # a user (005…); routing may also put a queue (00G…) there
    ticket_noun = "case"
    routing_keys = frozenset({"owner_id"})

    @classmethod
    def names_an_agent(cls, value: Any) -> bool:
        return str(value).startswith("005")  # a user; a queue (00G…) is nobody yet

    @classmethod
    def routing_id(cls, value: Any) -> Any:
        # Salesforce writes every id it answers with in its 18-character form. Compared as written,
        # routing.yaml's 15-character user was someone else when the case's owner event came: the
        # agent routing put there counted as one who picked the case up, after a wait of 0 s — and
        # three of them made the quoted wait "about 1 minute" (a review).
        return _eighteen(value) if isinstance(value, str) and len(value) == 15 and _OWNER_ID.fullmatch(value) else value

    @classmethod
    def routing_id_problem(cls, key: str, value: Any) -> str | None:
        # A case's owner is a user (005…) or a queue (00G…), by its 15- or 18-character id: a name
        # (`bob`) was refused on every case routed there.
        if isinstance(value, str) and _OWNER_ID.fullmatch(value):
            return None
        return f"a Salesforce user (005…) or queue (00G…) id of 15 or 18 characters, got {value!r}"

    def __init__(self, settings: Settings, mapping: Mapping[str, Any] | None = None):
        super().__init__(settings, mapping)
        check_mapping(self.mapping)
        self._lock = threading.Lock()
        self._conn: Client | None = None  # built on first send: rendering needs no credentials
        # handoff id → case id, for cases whose transcript is incomplete: lets a retry in this process
        # resume even without `handoff_id_field` (which alone survives a restart).
        self._unfinished: dict[str, str] = {}

    @classmethod
    def setting_problems(cls, settings: Settings) -> list[ConfigError]:
        try:
            if auth_mode(settings) == "password" and settings.salesforce_domain:
                salesforce_domain(settings.salesforce_domain)
        except ConfigError as err:
            return [err]
        return []

    # ---- building -----------------------------------------------------------------------------

    def setting_warnings(self) -> list[str]:
        if self.settings.salesforce_webhook_tokens:
            return []
        return ["no SALESFORCE_WEBHOOK_TOKENS: /webhooks/salesforce refuses every Outbound Message, so who took a "
                "handoff's case and its close are never recorded (README: Salesforce's Outbound Message)"]

    def mapping_warnings(self) -> list[str]:
        said = []
        if not self.mapping.get("handoff_id_field"):
            said.append("mappings/salesforce.yaml: no handoff_id_field — after a timeout a case is looked up by its "
                        "subject and the handoff id its description ends with; a vendor_extra that replaces the "
                        "description defeats that, and a retry may then open a second case")
        if self.mapping.get("update_open_ticket"):  # accepted (every mapping may hold it), read by no one here
            said.append("mappings/salesforce.yaml: update_open_ticket is ignored — Salesforce has no lookup of the "
                        "customer's open case; each conversation's first handoff opens a case of its own")
        fields = self.mapping.get("fields") or {}
        return [*said, *misspelt_in("salesforce", [(f"fields.{name}", spec) for name, spec in fields.items()],
                                    self.mapping.get("lookups"))]

    def probe(self, routing: Mapping[str, Any] | None = None) -> Probed:
        # The lookups after a timeout read Case with SOQL; a delivery's first call would log in.
        self._call(lambda sf: sf.query("SELECT Id FROM Case LIMIT 1"), write=False)
        said = f"signed in ({auth_mode(self.settings).replace('_', '-')} auth), cases readable"
        if not self.mapping.get("handoff_id_field") and not self.mapping.get("fields"):
            return Probed(said)
        problem, warnings = case_fields_findings(self.mapping, self._call(lambda sf: sf.Case.describe(), write=False))
        if problem:
            raise RejectedError(problem)
        return Probed(f"{said}, Case's fields read", tuple(warnings))

    def build_create(self, ctx: HandoffContext) -> dict[str, Any]:
        customer = as_identity(ctx.packet.get("customer") or {})
        text = ctx.brief.text
        overflow: list[str] = []
        if _units(text) > DESCRIPTION_MAX:  # the transcript goes as comments anyway: keep the summary here
            text = ctx.brief.summary_text(self._transcript_where())
            if _units(text) > DESCRIPTION_MAX:  # rare; nothing is lost: the whole summary goes as comments too
                marker = OVERFLOW.format(ctx.handoff_id)
                overflow, text = [text], _within(text, DESCRIPTION_MAX - _units(marker)) + marker
        routing = (ctx.assignment.get("targets") or {}).get("salesforce") or {}
        priority = ctx.assignment.get("priority") or (ctx.packet.get("escalation") or {}).get("urgency")
        channel = (ctx.packet.get("conversation") or {}).get("channel")
        case: dict[str, Any] = {
            "Subject": _clip(ctx.brief.subject, SUBJECT_MAX),
            "Description": text,
            "Status": self.mapping.get("status", "New"),
            "Priority": self._table("priority", PRIORITY).get(priority),
            # `origin: {}` leaves Origin to the org's default: its "Web" for any channel went all the same (a review).
            "Origin": self._table("origin", ORIGIN).get(
                channel, self.mapping.get("default_origin", None if self.mapping.get("origin") == {} else "Web")),
            # Salesforce refuses a value longer than its field (STRING_TOO_LONG) and with it the
            # case: a name is shortened, an address or number too long is left out (a cut one is
            # wrong). The brief in the Description carries all three whole.
            "SuppliedName": _clip(customer.get("name") or "", FIELD_MAX["Name"]),
            "SuppliedEmail": _fits(customer.get("email"), "Email"),
            "SuppliedPhone": _fits(customer.get("phone"), "Phone"),
            "OwnerId": routing.get("owner_id"),  # a user (005…) or a queue (00G…)
            "ParentId": ctx.follows_ticket,  # the conversation's closed case, when it came back after it
        }
        context = mapping_context(ctx)
        for api_name, spec in (self.mapping.get("fields") or {}).items():
            # Salesforce reads a field's name in any case: `subject:` is the case's Subject, not a second key.
            api_name = next((key for key in case if key.lower() == api_name.lower()), api_name)
            value = _field_value(resolve(spec, ctx.packet, context, tables=self.mapping.get("lookups"),
                                         where=f"salesforce.yaml fields.{api_name}", one_value=api_name == "Subject",
                                         masked=self.masked))
            if api_name == "Subject":
                # On one line, its secrets masked, as the brief's (list views, searches and e-mails show
                # it); one that finds nothing is the brief's, as Zendesk's mapped subject.
                line = subject_line(str(value), SUBJECT_MAX) if value is not None else ""
                value = _clip(line, SUBJECT_MAX) if line.strip() else case["Subject"]
            case[api_name] = value
        case = {key: value for key, value in case.items() if value not in (None, "")}
        request = {"method": "POST", "path": "sobjects/Case/"}
        field = self.mapping.get("handoff_id_field")
        if field and self.mapping.get("handoff_id_is_external_id"):
            # Upsert on the External ID: the id travels in the URL (Salesforce refuses it in the body too).
            request = {"method": "PATCH", "path": "sobjects/Case/" + format_external_id(field, ctx.handoff_id)}
        elif field:
            case[field] = ctx.handoff_id
        # Without handoff_id_field nothing on the Case says which handoff made it: after a timeout on
        # the create, a later attempt cannot tell whether the case exists, and may make a second one.
        payload = {"contact": self._contact_plan(customer), "request": request, "headers": _headers(case),
                   "case": case}
        return payload | self._transcript(ctx, [("brief", overflow), ("transcript", _dated(ctx))])

    def build_update(self, ctx: HandoffContext) -> dict[str, Any]:
        assert ctx.link is not None
        payload: dict[str, Any] = {
            "case_id": ctx.link.vendor_id,
            "headers": {"Sforce-Auto-Assign": "FALSE"},  # a case being worked must not be re-routed
            "case": {},  # fields to PATCH: an urgent return's priority, and vendor_extra (neither for a batch)
        }
        raised = self._table("priority", PRIORITY).get("urgent")
        # Raised, never lowered (the top), as Zendesk's; an unmapped urgent leaves it alone, not cleared.
        # Only by a new handoff: messages sent while waiting (`follow_up`) carry their handoff's routing,
        # and every batch re-raised a Priority an agent had lowered since triage.
        if ctx.assignment.get("priority") == "urgent" and raised and not ctx.packet.get("follow_up"):
            payload["case"]["Priority"] = raised
        brief = ctx.brief.summary_text(self._transcript_where())
        if ctx.handed_off_again:  # a follow-up's messages say what they are themselves
            brief = f"{ctx.handed_off_again}\n\n{brief}"
        elif ctx.brief.follow_up is not None:  # messages only: the brief they follow is on the case already
            brief = f"{_brief_where(ctx, self._parts_are())}\n\n{brief}"
        parts = [("brief", [brief]), ("transcript", _dated(ctx))]
        return payload | self._transcript(ctx, parts, parent_id=ctx.link.vendor_id)

    def _transcript_where(self) -> str:
        """Where the transcript is, for the summary that leaves it out: the parts' header says
        "transcript · part n/N" (`_header`); Salesforce lists comments newest first."""
        return f"in this case's {self._parts_are()} headed “transcript · part n/N”"

    def _parts_are(self) -> str:
        """What the case's parts (a repeat's brief, the transcript) are posted as: comments or Chatter posts."""
        return "posts" if self.mapping.get("transcript_as", "case_comment") == "feed_item" else "comments"

    def brief_fields_for(self, ctx: HandoffContext) -> Mapping[tuple[str, ...], frozenset[str]]:
        # A new case's Description holds the brief; the transcript goes as comments whatever it holds.
        # An update's brief goes as comments only: a Description the bot sets there is its own business.
        # Salesforce reads a field's name in any letter case: a bot's `description` replaces it too.
        spelt = next((key for key in ctx.vendor_extra if str(key).lower() == "description"), "Description")
        return {} if ctx.link else {(spelt,): frozenset({"transcript"})}

    def apply_extra(self, payload: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        if not extra:
            return payload
        # Salesforce reads a field's name in any letter case, so the bot's `ownerid` is the case's
        # OwnerId: merged under the case's (or Salesforce's) spelling, not beside it as a second key
        # the org's assignment rules then overwrote (`_headers` saw no owner; a review).
        spelling = {str(key).lower(): key for key in (*_NAMED_HERE, *payload["case"])}
        extra = {spelling.get(str(key).lower(), key): value for key, value in extra.items()}
        merged = payload | {"case": deep_merge(payload["case"], extra)}
        if "request" in merged:  # a create: vendor_extra may have chosen the owner
            merged["headers"] = _headers(merged["case"])
        return merged

    def _contact_plan(self, customer: Mapping[str, Any]) -> dict[str, Any] | None:
        mode = self.mapping.get("contact", "find_or_create")
        # An address or number longer than Contact's field names no contact there: not a key.
        key = next(((field, customer[attr]) for field, attr in (("Email", "email"), ("Phone", "phone"))
                    if _fits(customer.get(attr), field)), None)
        if mode == "none" or key is None:
            return None
        soql = "SELECT Id FROM Contact WHERE {field:literal} = {value} ORDER BY CreatedDate ASC LIMIT 1"
        plan: dict[str, Any] = {"query": format_soql(soql, field=key[0], value=key[1])}
        if mode == "find_or_create":
            first, last = _name_parts(customer.get("name") or "") or ("", key[1])  # LastName is required
            record = {"FirstName": _clip(first, FIELD_MAX["FirstName"]), "LastName": _clip(last, FIELD_MAX["Name"]),
                      "Email": _fits(customer.get("email"), "Email"), "Phone": _fits(customer.get("phone"), "Phone")}
            plan["create"] = {k: v for k, v in record.items() if v}
        return plan

    def _transcript(self, ctx: HandoffContext, parts: Sequence[tuple[str, Sequence[str]]],
                    parent_id: str | None = None) -> dict[str, Any]:
        """The brief's overflow and the transcript as CaseComments (or FeedItems), numbered in order."""
        feed = self.mapping.get("transcript_as", "case_comment") == "feed_item"
        limit, in_bytes = (FEED_ITEM_MAX, False) if feed else (COMMENT_MAX_BYTES, True)
        label = named(ctx.handoff_id, ctx.packet)
        budget = limit - _size(_header(label, "transcript", 9999, 9999), in_bytes)
        pieces = [(kind, piece) for kind, blocks in parts for piece in split_blocks(blocks, budget, in_bytes)]
        # A transcript's part after its first says the day and the clock of its lines' times under its
        # header, where it has room: split as before it did (a resumed attempt finds the parts an
        # earlier release posted by their headers, "part 2/5"; split for the line, they were "2/6",
        # and the whole transcript went again — a review of the mend).
        clock = f"{ctx.brief.transcript_clock}\n" if ctx.brief.transcript_clock else ""
        later = {i for i, (kind, _) in enumerate(pieces, 1) if kind == "transcript"}
        later.discard(min(later, default=0))  # the first holds the heading that dates them
        bodies = []
        for i, (kind, piece) in enumerate(pieces, 1):
            head = _header(label, kind, i, len(pieces))
            dated = clock if i in later and _size(head + clock + piece, in_bytes) <= limit else ""
            bodies.append(head + dated + piece)
        parent = {"ParentId": parent_id} if parent_id else {}
        if feed:
            return {"feed_items": [{**parent, "Body": body, "Type": "TextPost", "IsRichText": False}
                                   for body in bodies]}
        published = bool(self.mapping.get("comments_published", False))
        return {"comments": [{**parent, "CommentBody": body, "IsPublished": published} for body in bodies]}

    # ---- sending ------------------------------------------------------------------------------

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        case = dict(payload["case"])
        contact_id, contact_created, left_out = self._contact(payload.get("contact"))
        if contact_id:
            case.setdefault("ContactId", contact_id)
        with carrying(left_out):
            try:
                reply, fields_out = self._create_case(payload["request"], case, payload["headers"], ctx)
            except RejectedError as err:
                if err.status != 300:
                    raise
                several = _several_cases(err)
                # Said by the attempt that finds the case after a timeout completing its transcript too.
                with carrying((several,)):
                    found = self.find_existing(ctx)
                if found is None:
                    raise
                return replace(found, dropped=(*found.dropped, *left_out, several))
        with carrying((*left_out, *fields_out)):
            case_id = reply.get("id")
            if not case_id:  # a 204 from an old API version: the case exists, its id comes from find_existing
                raise OutcomeUnknown("Salesforce upserted the case without returning its id", reply=reply)
            # `created: false` means the upsert found this handoff's case: a retry, so resume its transcript.
            counts, refused = self._finish(case_id, payload, ctx, resume=reply.get("created") is False)
        return self._sent(case_id, {"case": reply, "contact_id": contact_id, "contact_created": contact_created,
                                    **counts}, (*left_out, *fields_out, *refused))

    def _create_case(self, request: Mapping[str, str], case: dict[str, Any], headers: dict[str, str],
                     ctx: HandoffContext) -> tuple[dict[str, Any], Dropped]:
        """Create (or upsert) the case, through `_without_refused`."""
        def send(record: dict[str, Any]) -> dict[str, Any]:
            # Routing's owner refused: the org's assignment rules decide instead.
            sent_headers = {**headers, **_headers(record)} if "OwnerId" in case else headers
            if request["method"] == "PATCH":
                key = request["path"].removeprefix("sobjects/Case/")
                return self._call(lambda sf: _json(sf.Case.upsert(key, record, raw_response=True,
                                                                   headers=sent_headers)))
            return self._call(lambda sf: sf.Case.create(record, headers=sent_headers))

        return self._without_refused(send, case, ctx, "made", keep=frozenset({"Subject", "Description"}))

    def _without_refused(self, send: Callable[[dict[str, Any]], T], case: dict[str, Any], ctx: HandoffContext,
                         done: str, keep: frozenset[str] = frozenset()) -> tuple[T, Dropped]:
        """`send(case)`. A field Salesforce refuses by name — a mapped value longer than the
        org's field, a picklist value it does not have, an owner no longer active, an address it
        will not take — refused the whole case (or a follow-up's update, its comments with it), brief
        and transcript, for good: it is sent once more without it, and the receipt names it. A
        refused request changed nothing, so the second one cannot double anything."""
        try:
            return send(case), ()
        except RejectedError as err:
            # Never left out: the handoff id (a retry finds the case by it), and a new case's subject
            # and brief; an update's brief goes as comments, its Subject or Description are the bot's.
            named_fields = _fields_refused(err.reply, case, keep={*keep, self.mapping.get("handoff_id_field")})
            if not named_fields:
                raise
            why = err.message
        kept = {key: value for key, value in case.items() if key not in named_fields}
        owner_refused = "OwnerId" in named_fields and done == "made"
        queue = _teams_owner(ctx, case["OwnerId"]) if owner_refused else None
        # The vendor's words stay out of the log (they echo the values: an address); the receipt has them.
        log.warning("Salesforce refused fields of the case; sending it without them",
                    extra={"fields": sorted(named_fields), "team_owner_instead": queue is not None})
        if queue is not None:
            queued = _unowned({**kept, "OwnerId": queue}, ctx, why, case["OwnerId"], queue)
            left_out = tuple(self._field_left_out(name, why, ctx, done, queue) for name in sorted(named_fields))
            try:
                with carrying(left_out):
                    return send(queued), left_out
            except RejectedError as err:
                if _fields_refused(err.reply, queued, keep=set()) != {"OwnerId"}:
                    raise
                log.warning("Salesforce refused the team's owner too; the org's assignment rules choose")
        if owner_refused:
            kept = _unowned(kept, ctx, why, case["OwnerId"])
        left_out = tuple(self._field_left_out(name, why, ctx, done) for name in sorted(named_fields))
        with carrying(left_out):
            return send(kept), left_out

    def _field_left_out(self, name: str, why: str, ctx: HandoffContext, done: str,
                        queue: str | None = None) -> dict[str, str]:
        """The receipt's entry for a case field Salesforce refused, named where it came from."""
        # The bot's key as it spelt it: merged under the case's spelling (`apply_extra`), an `ownerid`
        # Salesforce refused was blamed on routing's owner (a review).
        bots = next((str(key) for key in ctx.vendor_extra if str(key).lower() == name.lower()), None)
        if name in (self.mapping.get("fields") or {}):
            part, where = "mapping", f"salesforce.yaml fields.{name}"
        elif bots is not None:
            part, where = "vendor_extra", f"vendor_extra.salesforce.{bots}"
        elif (key := self._mapping_key_of(name, ctx)) is not None:
            part, where = "mapping", f"salesforce.yaml {key}"  # its word for Status, Priority, Origin
        elif name == "OwnerId" and ((ctx.assignment.get("targets") or {}).get("salesforce") or {}).get("owner_id"):
            part, where = "routing", "routing's owner_id"
        else:
            part, where = "field", f"the case's {name}"
        then = " (the org's assignment rules chose the owner)" if name == "OwnerId" and done == "made" else ""
        if name == "OwnerId" and queue is not None:
            then = f" (it went to the team's owner, {queue}, in place of routing's agent)"
        said = {"part": part,
                "reason": f"Salesforce refused {where} ({why[:300]}); the case was {done} without it{then}"}
        return routing_field_left_out(said, "owner_id") if part == "routing" else said

    def _table(self, key: str, built_in: Mapping[str, str]) -> Mapping[str, str]:
        """salesforce.yaml's `priority` or `origin` table; the built-in one only when the key is not
        there — `priority: {}` (Priority left to the org's default) still sent High, Medium, Low."""
        table = self.mapping.get(key)
        return built_in if table is None else table

    def _mapping_key_of(self, name: str, ctx: HandoffContext) -> str | None:
        """The salesforce.yaml key a built-in case field took its value from; None: a default."""
        if name == "Origin":
            channel = (ctx.packet.get("conversation") or {}).get("channel")
            if channel in (self.mapping.get("origin") or {}):
                return f"origin.{channel}"
            return "default_origin" if self.mapping.get("default_origin") is not None else None
        key = _FROM_MAPPING.get(name)
        return key if key is not None and self.mapping.get(key) is not None else None

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        try:
            return self._update(payload, ctx, payload["case_id"])
        except TicketGone as gone:
            # A retry after part of it landed on the case merged into finds the merge again, and
            # resumes there (`_transcript_to`).
            return self.update_merged(ctx, gone, self._update)

    def merged_into(self, gone: TicketGone) -> str | None:
        """The case an agent merged the deleted `gone` into: its `MasterRecordId`, which Salesforce
        sets on the cases a merge deletes, readable with queryAll while they are in the recycle bin
        (15 days). None when it was not merged (deleted, or closed: a merge deletes), emptied from
        the recycle bin, or not readable (a refusal). The update on it tells whether it is open. A
        failure that may pass (a timeout, a 5xx, a 429) is raised, to be retried: taken as "not
        merged", it opened the duplicate of the master case, linked from then on (as Zendesk's)."""
        if gone.closed:
            return None
        soql = format_soql("SELECT MasterRecordId FROM Case WHERE Id = {}", gone.ticket_id)
        try:
            records = self._call(lambda sf: sf.query(soql, include_deleted=True), write=False).get("records") or []
        except DeliveryError as err:
            if not merge_not_followed(err):
                raise
            log.warning("salesforce: the deleted case's merge could not be read (%s); a new case is opened",
                        type(err).__name__, extra={"case": gone.ticket_id, "status": err.status})
            return None
        master = records[0].get("MasterRecordId") if records else None
        return master if isinstance(master, str) and master and master != gone.ticket_id else None

    def merged_away_into(self, ticket_ids: Collection[str], deadline: float | None = None) -> dict[str, str]:
        """`Adapter.merged_away_into`: the deleted cases whose `MasterRecordId` is one of `ticket_ids`
        (queryAll: the recycle bin keeps them 15 days). Case Merge sends no Outbound Message for the
        case it deletes, and the master's name no case a handoff went to. The master is answered as
        it was asked: an Outbound Message may name a case by its 15 characters, the API by its 18."""
        asked = {each[:15]: each for each in ticket_ids}
        if not asked:
            return {}
        soql = format_soql("SELECT Id, MasterRecordId FROM Case WHERE IsDeleted = true AND MasterRecordId IN {}",
                           sorted(asked.values()))
        left = (deadline - time.monotonic()) if deadline is not None else self.settings.vendor_timeout_s
        if left <= 0:
            raise TransientError("the reads used up the time the event may take")
        timeout = min(self.settings.vendor_timeout_s, left)
        try:
            records = self._call(lambda sf: sf.query(soql, include_deleted=True, timeout=timeout),
                                 write=False).get("records") or []
        except TransientError as err:
            # A read timing out, not a connect one: nothing reached Salesforce then, as a refused connection.
            if not (isinstance(err.__cause__, requests.ReadTimeout) or vendor_error(err.reply)[0] == "QUERY_TIMEOUT"):
                raise
            # MasterRecordId is no index: in a large org's recycle bin the read may time out every
            # time, and a message refused for it was refused for a day, every take and close in it.
            raise RejectedError(f"the read of the cases merged away timed out ({err.message}); it may every time",
                                status=err.status, reply=err.reply) from err
        found = {}
        for record in records:
            gone, master = record.get("Id"), str(record.get("MasterRecordId") or "")
            if isinstance(gone, str) and gone and master[:15] in asked and gone[:15] != master[:15]:
                found[gone] = asked[master[:15]]
        return found

    def _update(self, payload: dict[str, Any], ctx: HandoffContext, case_id: str) -> Sent:
        """`payload` on case `case_id` (the link's, or the one it was merged into): its fields, then
        its comments. A case closed or deleted raises `TicketGone`."""
        headers = payload["headers"]

        def unknown(err: DeliveryError) -> OutcomeUnknown:
            # Part of this update is on the case (the brief's comment an agent may be reading): told
            # "failed", the bot apologized for it, and nothing finished the transcript. As a new
            # case's (`_finish`): retried — an admin may renew credentials — the retry resumes it.
            return RateLimitedAfterActing.unknown(f"case {case_id} may hold part of this update: {err.message}", err,
                                                  status=err.status, reply=err.reply)

        try:
            case = self._still_open(case_id)
        except AuthError as err:
            if ctx.outcome_unknown:  # the attempt before ended with part of this update on the case
                raise unknown(err) from err
            raise
        fields_out: tuple[dict[str, str], ...] = ()
        if payload["case"]:
            def send(record: dict[str, Any]) -> None:  # a case being worked keeps its owner: no re-routing
                if record:
                    self._call(lambda sf: sf.Case.update(case_id, record, headers=headers))
            try:
                _, fields_out = self._without_refused(send, dict(payload["case"]), ctx, "updated")
            except (RejectedError, AuthError) as err:
                if isinstance(err, AuthError) and err.status != 403:  # 403: no right to edit this case, not
                    if ctx.outcome_unknown:  # credentials refused (a 401 the client renewed once already)
                        raise unknown(err) from err
                    raise
                fields_out = self._case_unchanged(err, case_id, payload["case"], ctx)
        # The comments of this update on the case: found there by a resumed attempt, or posted now.
        # Its fields carry no brief, and a retry sends them again: they do not count.
        landed: list[str] = []
        try:
            counts, refused = self._transcript_to(case_id, payload, resume=ctx.attempt > 1 or ctx.outcome_unknown,
                                                  landed=landed)
        except DeliveryError as err:
            if isinstance(err, TicketGone) or not landed:
                # Nothing of it on the case: as it is — a refusal (a 403 on a case this user may read
                # but not edit, credentials an operator must renew) told to the bot at once, not
                # kept pending through every retry; a 429 or 5xx retried as any.
                raise
            raise unknown(err) from err
        if (payload.get("comments") or payload.get("feed_items")) and not landed:
            # Every comment refused, its note too (a case locked by an approval process refuses
            # them all): nothing reached the case — "updated" would tell the bot an agent has it.
            raise RejectedError(f"Salesforce refused every comment of this update on case {case_id}: "
                                f"{refused[0]['reason'] if refused else 'no reason given'}")
        sent = self._sent(case_id, {"case_id": case_id, "owner": _owner(case), **counts}, (*fields_out, *refused))
        return replace(sent, holder=_holder(case))

    def _case_unchanged(self, err: DeliveryError, case_id: str, fields: Mapping[str, Any],
                        ctx: HandoffContext) -> Dropped:
        """The receipt's entries for an update's case fields Salesforce refused as a whole — a case
        locked by an approval process (ENTITY_IS_LOCKED), a validation rule or a trigger that names
        no field, an API user who may read the case but not edit it (403). They are the update's
        lesser part (an urgent return's priority, the bot's vendor_extra): the refusal failed the
        update for good, and the repeat's brief and transcript, its comments, never reached the
        case. A case deleted since it was read is gone (`TicketGone`)."""
        if isinstance(err, TicketGone) or err.status == 404:
            raise TicketGone(f"case {case_id} is deleted or not visible to the API user", ticket_id=case_id,
                             closed=False) from err
        log.warning("Salesforce refused the case's update; its comments go all the same",
                    extra={"error_code": vendor_error(err.reply)[0], "status": err.status})
        return tuple(self._field_left_out(name, err.message, ctx, "updated") for name in sorted(fields))

    def _still_open(self, case_id: str) -> Mapping[str, Any]:
        """The case as Salesforce has it now, with who owns it (`_holder`), in the one query made
        before adding to it. Comments on a closed case reach no queue: the customer who came back
        would wait for no one. A closed (or deleted) case makes the base open a new case, its child
        (`TicketGone`)."""
        soql = format_soql("SELECT IsClosed, OwnerId, Owner.Name, Owner.IsActive, CreatedById FROM Case WHERE Id = {}",
                           case_id)
        records = self._call(lambda sf: sf.query(soql), write=False).get("records") or []
        if not records or records[0].get("IsClosed"):
            # No row: deleted, or no longer visible to the API user (private sharing after a change
            # of owner) — either way nothing can be added to it that anyone routed here would see.
            raise TicketGone(f"case {case_id} is {'closed' if records else 'deleted or not visible to the API user'}",
                             ticket_id=case_id, closed=bool(records))
        return records[0]

    def previous_agent(self, packet: Mapping[str, Any], deadline: float | None = None) -> Mapping[str, Any] | None:
        """The user owning the customer's newest open case (`_holder`: not a queue, nor the API user
        who made it and still owns it), found by the address it was made for or its contact's: for
        sticky routing, which offers them as `owner_id`. Only Zendesk was asked, and every sticky
        rule over Salesforce acted as a plain team rule (a review). Asked while the bot waits: the
        query has the lookup's share of the budget (`deadline`); routing goes on without it."""
        email = _fits((packet.get("customer") or {}).get("email"), "Email")
        if not email:
            return None
        started = time.monotonic()
        ends = deadline if deadline is not None else lookup_ends(started + self.settings.sync_budget_ms / 1000, started)
        soql = format_soql("SELECT OwnerId, Owner.Name, Owner.Email, Owner.IsActive, CreatedById FROM Case WHERE "
                           "IsClosed = false AND "
                           "(SuppliedEmail = {email} OR Contact.Email = {email}) ORDER BY CreatedDate DESC LIMIT 20",
                           email=email)
        try:
            left = ends - time.monotonic()
            if left <= 0:
                raise TransientError("the lookup used up its share of the sync budget")
            timeout = min(self.settings.vendor_timeout_s, left)
            records = self._call(lambda sf: sf.query(soql, timeout=timeout), write=False).get("records") or []
        except DeliveryError as err:  # routing goes on without the hint; said once, with what to look at
            log.warning("salesforce: previous agent unknown (%s)", type(err).__name__,
                        extra={"waited_ms": round((time.monotonic() - started) * 1000), "status": err.status,
                               "error_code": vendor_error(err.reply)[0] or None})
            raise  # the trace says the lookup failed: "no previous agent known" read as a fact (a review)
        owned = next((case for case in records if _holder(case) is not None), None)
        if owned is None:
            return None
        owner = owned.get("Owner") or {}
        return {"id": owned["OwnerId"], "name": owner.get("Name"), "email": owner.get("Email")}

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        recorded = ctx.sent_to.get("case_id")
        case_id = self._unfinished.get(ctx.handoff_id) or (recorded if isinstance(recorded, str) and recorded else None)
        field = self.mapping.get("handoff_id_field")
        payload = self.render(ctx)
        if case_id is None and field:
            soql = format_soql("SELECT Id FROM Case WHERE {field:literal} = {value} ORDER BY CreatedDate ASC LIMIT 1",
                               field=field, value=ctx.handoff_id)
            records = self._call(lambda sf: sf.query(soql), write=False).get("records") or []
            case_id = records[0]["Id"] if records else None
        elif case_id is None:
            case_id = self._by_description(ctx, payload["case"])
        if case_id is None:
            return None
        # What the attempt that made it left out goes on with a timeout here too; the base lists it.
        with carrying(tuple(ctx.sent_to.get("left_out") or ())):
            counts, refused = self._finish(case_id, payload, ctx, resume=True)
        return self._sent(case_id, {"case_id": case_id, "found": True, **counts}, refused)

    def _by_description(self, ctx: HandoffContext, case: Mapping[str, Any]) -> str | None:
        """Without `handoff_id_field`: the cases with this handoff's subject made since the handoff
        was (its ULID says when), whose description names the handoff — the brief ends with its id.
        SOQL cannot filter on a long text area, so the few same-subject cases are read and checked
        here; a read, consistent, unlike a search. What it cannot find (a `vendor_extra` that
        replaced the description) is created again."""
        if not case.get("Subject") or ctx.handoff_id not in str(case.get("Description") or ""):
            return None
        since = created_at(ctx.handoff_id) - dt.timedelta(seconds=CLOCK_SKEW_S)
        soql = format_soql("SELECT Id, Description FROM Case WHERE Subject = {} AND CreatedDate >= {:literal} "
                           "ORDER BY CreatedDate ASC LIMIT 200", case["Subject"],
                           since.strftime("%Y-%m-%dT%H:%M:%SZ"))
        records = self._call(lambda sf: sf.query(soql), write=False).get("records") or []
        return next((r["Id"] for r in records if ctx.handoff_id in (r.get("Description") or "")), None)

    def _contact(self, plan: Mapping[str, Any] | None) -> tuple[str | None, bool, Dropped]:
        """Find the contact by SOQL (consistent, so a retry finds one we created), else create it.
        A contact Salesforce refuses for good (a blocking duplicate rule, a validation rule, a field
        the org requires) made no case at all: the case goes without one, its Supplied fields and
        brief naming the customer, and the receipt says so. A fuzzy duplicate match is not taken
        for the customer: it may be another person of the same name."""
        if not plan:
            return None, False, ()
        try:
            records = self._call(lambda sf: sf.query(plan["query"]), write=False).get("records") or []
        except RejectedError as err:
            # The query is ours and well formed: these say Contact (or its Email, Phone) is not
            # visible to the API user. Anything else (a 404: a wrong address) would refuse the case too.
            if vendor_error(err.reply)[0] not in ("INVALID_TYPE", "INVALID_FIELD"):
                raise
            return None, False, _no_contact(err)
        if records:
            return records[0]["Id"], False, ()
        if not plan.get("create"):
            return None, False, ()
        try:
            created = self._call(lambda sf: sf.Contact.create(plan["create"]))
        except (RejectedError, AuthError) as err:
            if isinstance(err, AuthError) and err.status != 403:  # 403: no right to create contacts, not
                raise  # credentials refused (a 401 the client renews once; after that, nothing works)
            return None, False, _no_contact(err)
        return created.get("id"), True, ()

    def _finish(self, case_id: str, payload: Mapping[str, Any], ctx: HandoffContext, *,
                resume: bool) -> tuple[dict[str, int], tuple[dict[str, str], ...]]:
        """Post the transcript to a case that exists; on failure, make the next attempt resume it.

        Every failure once the case exists is an unknown outcome, retried through find_existing —
        credentials refused midway too (an admin may renew them): told "failed" with no case, the
        bot showed the apology beside a routed case, and the conversation's next message opened a
        second one. A comment refused for good is `_transcript_to`'s to note, not a failure."""
        # The Description carries the whole brief, transcript too, when it fits (`build_create`) and
        # is sent as rendered: a bot's `vendor_extra` or a mapping's `fields:` may have replaced it.
        whole_in_description = (payload.get("case") or {}).get("Description") == ctx.brief.text
        try:
            counts = self._transcript_to(case_id, payload, resume=resume, described=whole_in_description)
        except DeliveryError as err:
            self._unfinished[ctx.handoff_id] = case_id
            message = f"case {case_id} exists but its transcript is incomplete: {err.message}"
            reply = {"case_id": case_id, "url": self.ticket_url(case_id), "error": err.reply}
            # `sent_to`: the case, for a retry in another process (or after a restart) to finish
            # it without a lookup first — a lookup the same refused credentials would fail for good.
            raise RateLimitedAfterActing.unknown(message, err, status=err.status, reply=reply,
                                                 sent_to={"case_id": case_id}) from err
        self._unfinished.pop(ctx.handoff_id, None)
        return counts

    def _transcript_to(self, case_id: str, payload: Mapping[str, Any], *, resume: bool,
                       landed: list[str] | None = None,
                       described: bool = False) -> tuple[dict[str, int], tuple[dict[str, str], ...]]:
        """Post the comments; their counts, and what Salesforce refused for good (for the receipt).
        `landed` gets the head of each comment (or stand-in note) on the case, as it is posted or found.
        `described`: the case's Description holds the transcript too (`build_create` when it fits).

        A comment refused for good (a validation rule, a trigger) is refused again on every retry
        while the case waits in a queue: a note with the part's header takes its place, so the
        agent sees a part is missing and a resumed attempt skips it, and the receipt names it.
        A 403 is a refusal too, of every comment: the API user may not edit this case (sharing
        moved it to a queue it cannot write to) — credentials refused are a 401. Raised, a new
        case's 403 was an unknown outcome retried for an hour and then "failed" beside the case
        (a review); the rest are not tried, each would be refused alike."""
        sobject, key, body = ("FeedItem", "feed_items", "Body") if "feed_items" in payload else \
            ("CaseComment", "comments", "CommentBody")
        present: Counter[str] = Counter()
        if resume:  # bodies are unique per handoff (header), so matching them finds what was posted
            soql = format_soql("SELECT {:literal} FROM {:literal} WHERE ParentId = {}", body, sobject, case_id)
            present.update(r[body] for r in self._call(lambda sf: sf.query_all(soql), write=False)["records"])
        posted = skipped = 0
        refused: list[dict[str, str]] = []
        landing = [] if landed is None else landed
        no_access: AuthError | None = None
        carried: list[str] = []  # the heads of comments whose own text is on the case (not a note)
        for record in payload.get(key) or []:
            text = record[body]
            head = text.split("\n", 1)[0]
            note = _refused_note(head)
            found = next((b for b in (text, note) if present[b] > 0), None)
            if found is None:
                # Its own comment posted with other words: a batch's announcement once an agent took
                # the handoff ("wrote again", not "while waiting"), the attempt whose outcome was
                # unknown said before. Its header names the handoff and the part: posted again, it
                # reached the case twice (a review).
                found = next((b for b, n in present.items() if n > 0 and b != note and b.split("\n", 1)[0] == head),
                             None)
            if found is not None:
                present[found] -= 1
                skipped += 1
                landing.append(head)  # an earlier attempt's: on the case all the same
                carried += [head] if found != note else []
                if found == note:  # refused by an earlier attempt: still missing, still said
                    refused.append(_refused(head, "an earlier attempt", described))
                continue
            if no_access is not None:
                refused.append(_refused(head, no_access.message[:300], described))
                posted += 1
                continue
            try:
                self._create(sobject, {**record, "ParentId": case_id})
                landing.append(head)
                carried.append(head)
            except (RejectedError, AuthError) as err:
                if isinstance(err, TicketGone) or (isinstance(err, AuthError) and err.status != 403):
                    raise
                log.warning("salesforce: a comment was refused; a note stands in its place",
                            extra={"error_code": vendor_error(err.reply)[0], "status": err.status})
                if isinstance(err, AuthError):
                    no_access = err
                else:
                    try:
                        self._create(sobject, {**record, body: note, "ParentId": case_id})
                        landing.append(head)
                    except RejectedError:  # the note too (a trigger refusing every comment): said all the same
                        pass
                refused.append(_refused(head, err.message[:300], described))
            posted += 1
        heads = [str(record[body]).split("\n", 1)[0] for record in payload.get(key) or []]
        if not described and _lost(heads, carried, _TRANSCRIPT_PART):
            # Its comments were the only place it went: "delivered" beside twelve refusals told a bot
            # reading `delivered` that the agent had the conversation (a review).
            refused.append({"part": "transcript", UNDELIVERED: True, "reason": "none of the transcript reached "
                            "the case: its Description does not hold it, and Salesforce refused every comment "
                            "carrying it"})
        return {"comments_posted": posted, "comments_skipped": skipped}, tuple(refused)

    def _create(self, sobject: str, record: dict[str, Any]) -> dict[str, Any]:
        return self._call(lambda sf: getattr(sf, sobject).create(record))

    def _sent(self, case_id: str, reply: dict[str, Any], refused: tuple[dict[str, Any], ...]) -> Sent:
        """The case, and the comments Salesforce refused for good (`dropped`: the receipt says what is
        missing; a part none of which reached the case is marked `UNDELIVERED`)."""
        return Sent(vendor_id=case_id, url=self.ticket_url(case_id), reply=reply, dropped=refused)

    def ticket_url(self, vendor_id: str) -> str | None:
        base = self._conn.instance_url if self._conn else self.settings.salesforce_instance_url.rstrip("/")
        # Not signed in yet with a password (the instance is the login's answer): no host to name,
        # and "/lightning/r/Case/…" alone is no page an agent can open.
        return f"{base}/lightning/r/Case/{vendor_id}/view" if base else None

    # ---- the edge -----------------------------------------------------------------------------

    def _call(self, op: Callable[[Salesforce], T], *, write: bool = True) -> T:
        """Run one request; translate every library error; renew an expired login once, ourselves."""
        retry_after = float(self.mapping.get("rate_limit_retry_after_s", DEFAULT_RETRY_AFTER_S))
        try:
            client = self._client()
            try:
                return op(client.sf)
            except SalesforceExpiredSession:
                if not client.renewable:
                    raise
                # `op` re-sends the same request, headers included; a second 401 ends as AuthError.
                return op(self._client(stale=client).sf)
        except (SalesforceError, Throttled, Redirected, requests.RequestException) as err:
            raise translate(err, write=write, rate_limit_after=retry_after) from err

    def _client(self, stale: Client | None = None) -> Client:
        with self._lock:  # one login at a time; a thread that finds a renewed client uses it
            if self._conn is None or self._conn is stale:
                self._conn = connect(self.settings, VendorSession(self.settings.vendor_timeout_s),
                                     auth_mode(self.settings))
            return self._conn


def split_blocks(blocks: Sequence[str], budget: int, in_bytes: bool) -> list[str]:
    """Pack whole blocks (one per message) into pieces of at most `budget`, in order. Only a block that
    cannot fit alone is split, inside itself, each part ending with CONTINUED and the next beginning
    with RESUMED: nothing is cut off.
    Such a block starts in the room the piece before it left: a 20,000-character message made the
    transcript's first comment its heading alone."""
    pieces: list[str] = []
    current: str | None = None
    for block in blocks:
        if current is not None and _size(current + "\n" + block, in_bytes) <= budget:
            current += "\n" + block
            continue
        room = budget - _size(current + "\n" + CONTINUED, in_bytes) if current is not None else 0
        if _size(block, in_bytes) > budget and room >= budget // 4:  # a few bytes' room: "[10:0" alone
            head = _cut(block, room, in_bytes)
            if head and _size(head, in_bytes) <= room:  # `_cut` gives one character at least
                current, block = f"{current}\n{head}{CONTINUED}", RESUMED + block[len(head):]
        if current is not None:
            pieces.append(current)
        while _size(block, in_bytes) > budget:
            head = _cut(block, budget - _size(CONTINUED, in_bytes), in_bytes)
            pieces.append(head + CONTINUED)
            block = RESUMED + block[len(head):]
        current = block
    if current is not None:
        pieces.append(current)
    return pieces


def _cut(text: str, budget: int, in_bytes: bool) -> str:
    """The longest prefix within `budget` ending on a character (not byte) boundary, not inside an
    emoji sequence or before a combining mark, and after a space when one is near the end."""
    fit = len(text.encode()[:budget].decode("utf-8", "ignore")) if in_bytes else _code_points_within(text, budget)
    # Flags are pairs of regional indicators: cut after an odd one, every flag after it paired with
    # the wrong half (🇺🇸🇺🇸 read as 🇸🇺 in the next comment).
    end = whole_end(text, fit) or fit or 1  # a "character" longer than the budget: split it rather than loop forever
    space = max(text.rfind(" ", 0, end), text.rfind("\n", 0, end))
    return text[: space + 1] if space >= end * 0.8 else text[:end]


def _size(text: str, in_bytes: bool) -> int:
    return len(text.encode()) if in_bytes else _units(text)


def _routings_agent_refused(ctx: HandoffContext, refused: Any) -> Mapping[str, Any] | None:
    """Routing's agent — a sticky rule's previous agent (`assignment.previous_agent`), or a user
    routing.yaml names as the owner (`routed_agents`) — when it is the owner Salesforce refused
    (`refused`: the OwnerId sent); not a team's queue, nor a bot's own `OwnerId`."""
    agent = routings_agent_at(ctx.assignment, "salesforce") or {}
    return agent if str(agent.get("id")) == str(refused) else None


def _teams_owner(ctx: HandoffContext, refused: Any) -> str | None:
    """The team's own OwnerId (its queue) that routing's agent went in place of (`in_place_of`),
    when that agent is the owner Salesforce refused: the case goes there. Without it the case went
    to the org's assignment rules — not the team routing chose."""
    team = (_routings_agent_refused(ctx, refused) or {}).get("in_place_of")
    return str(team) if team is not None and str(team) != str(refused) else None


def _unowned(case: dict[str, Any], ctx: HandoffContext, why: str, refused: Any,
             queue: str | None = None) -> dict[str, Any]:
    """A new case made without routing's agent as its owner (`refused`: the OwnerId sent), its
    Description opening with a line saying so: its brief's "Routed to: … / Sam Okafor" told whoever
    the org's rules gave the case that Sam had it. Only when the owner refused was that agent's id
    (not a team's queue, nor a bot's own `OwnerId`); left out when the Description has no room for
    it (a brief near Salesforce's limit). `queue`: the team's owner the case went to instead."""
    refused_agent, description = _routings_agent_refused(ctx, refused), case.get("Description")
    agent = (refused_agent or {}).get("label")
    if not agent or not isinstance(description, str):
        return case
    chose = f"the case went to the team's owner ({queue})" if queue else "the org's assignment rules chose the owner"
    note = (f"Not owned by {str(agent)[:100]}: Salesforce refused routing's owner ({why[:200]}); {chose}. "
            f"The brief below names the agent routing chose.\n\n")
    return {**case, "Description": note + description} if _units(note + description) <= DESCRIPTION_MAX else case


def _units(text: str) -> int:
    """A text's length as Salesforce counts it against a field's limit: UTF-16 code units, so an
    emoji counts two. Counted in code points, an emoji-heavy name or transcript passed our checks and
    was refused (STRING_TOO_LONG): the case was never made."""
    return len(text.encode("utf-16-le")) // 2


def _within(text: str, units: int) -> str:
    """The longest prefix of `text` of at most `units` UTF-16 code units ending on a whole character
    as a reader sees one: a name cut through 👍🏽 lost its skin tone, é its accent, and a family
    ended on a joiner (a review)."""
    return text[: whole_end(text, _code_points_within(text, units))]


def _code_points_within(text: str, units: int) -> int:
    """How many of `text`'s code points fit in `units` UTF-16 code units (never half an emoji)."""
    return len(text.encode("utf-16-le")[: max(0, units) * 2].decode("utf-16-le", "ignore"))


_TRANSCRIPT_PART = " · transcript · "  # in the header line of each comment carrying the transcript (`_header`)


def _lost(heads: list[str], carried: list[str], kind: str) -> bool:
    """Comments of `kind` were to go, and the text of none of them is on the case."""
    return any(kind in head for head in heads) and not any(kind in head for head in carried)


def _refused(head: str, why: str, described: bool = False) -> dict[str, str]:
    """The receipt's entry for a comment Salesforce refused (`head`: its header line). `described`: the
    case's Description holds the whole brief, transcript and all — said, or the customer was told the
    conversation had not reached the agent (`answers.context_lost`; a review)."""
    # The brief's comments carry every other part: named "brief", the reason says which comment.
    whole = f"; {WHOLE_IN_THE_DESCRIPTION}" if described else ""
    return {"part": "transcript" if _TRANSCRIPT_PART in head else "brief",
            "reason": f"Salesforce refused the comment {head!r} ({why}); a note stands in its place where "
                      f"Salesforce took one{whole}"}


def _refused_note(head: str) -> str:
    """What stands in for a comment Salesforce refused: its header line `head` (so it sorts in its
    place, and a resumed attempt knows the part was dealt with), then why the text is not there."""
    return f"{head}\n(Salesforce refused this part; the connector keeps it whole.)"


def _brief_where(ctx: HandoffContext, parts_are: str) -> str:
    """Where the brief of the handoff a batch of messages follows is on its case. The shared template
    said "the handoff's brief above", but Salesforce lists case comments newest first, and the brief
    of the handoff that opened the case is its Description; a later handoff's is in its comments."""
    follows = (ctx.packet.get("follow_up") or {}).get("handoff_id")
    return (f"Handoff {follows}'s brief is in this case's Description — or, for a handoff that came after the "
            f"case was opened, in its {parts_are} headed “Handoff {follows} · brief”.")


def _header(label: str, kind: str, number: int, total: int) -> str:
    # Salesforce lists comments newest first; the number puts them back in order for an agent.
    return f"{label[:1].upper()}{label[1:]} · {kind} · part {number}/{total}\n"


# Salesforce's words for a value of one field it will not store: the field is named in `fields`
# (an unknown field only in the message: "No such column 'Foo__c' on sobject of type Case").
_FIELD_CODES = frozenset({
    "STRING_TOO_LONG", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "INVALID_EMAIL_ADDRESS", "INVALID_FIELD",
    "INVALID_CROSS_REFERENCE_KEY", "FIELD_INTEGRITY_EXCEPTION", "INVALID_TYPE_ON_FIELD_IN_RECORD",
    "INVALID_FIELD_FOR_INSERT_UPDATE", "NUMBER_OUTSIDE_VALID_RANGE", "MALFORMED_ID", "INACTIVE_OWNER_OR_USER",
})
_OWNER_ID = re.compile(r"(?:005|00G)[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?")
_USER_ID = re.compile(r"\b005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?\b")
_NO_SUCH_COLUMN = re.compile(r"No such column '(\w+)'")
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def _eighteen(id15: str) -> str:
    """A 15-character Salesforce id in its 18-character form: each 5 characters' capitals, as bits
    (the first the lowest), pick one suffix character."""
    return id15 + "".join(_SUFFIX[sum(1 << bit for bit, char in enumerate(id15[start:start + 5]) if char.isupper())]
                          for start in (0, 5, 10))


def _no_contact(err: DeliveryError) -> Dropped:
    """The receipt's entry for a case left without the customer's contact, which Salesforce refused."""
    # Its code, not its words: they echo the values refused (the customer's address). The receipt has them.
    log.warning("Salesforce refused the customer's contact; the case goes without one",
                extra={"error_code": vendor_error(err.reply)[0], "status": err.status})
    return ({"part": "contact", "reason": f"Salesforce refused the customer's contact ({err.message[:300]}); "
             "the case names the customer in its Supplied fields and brief, and is linked to no contact"},)


def _several_cases(err: RejectedError) -> dict[str, str]:
    """The receipt's entry, and the log's line, for an upsert answered 300: several cases carry the
    handoff's id already (its External ID field is not Unique, as salesforce.yaml asks), so the case
    exists — the oldest carries on, its transcript completed. It was given up for good: the bot
    apologised while agents had the case, once or more."""
    log.warning("several Salesforce cases carry this handoff's id (make handoff_id_field Unique); the oldest "
                "is taken")
    return {"part": "mapping", "reason": f"several cases carry this handoff's id (Salesforce answered 300: "
            f"{err.message[:200]}); the oldest is taken — make salesforce.yaml's handoff_id_field Unique so "
            "that one handoff has one case"}


# The case's fields set from a salesforce.yaml key of the same meaning, for the receipt to name it.
_FROM_MAPPING = {"Status": "status", "Priority": "priority"}  # Origin: `_mapping_key_of`


def _about_owner(error: Mapping[str, Any], case: Mapping[str, Any]) -> bool:
    """An inactive user's refusal is about the case's owner unless its message names another user:
    the inactive one may own a record the case points to (its contact, its account)."""
    named = set(_USER_ID.findall(str(error.get("message") or "")))
    owner = str(case.get("OwnerId") or "")
    return not named or any(owner[:15] == user[:15] for user in named)


def _fields_refused(reply: Any, case: Mapping[str, Any], keep: set[Any]) -> set[str]:
    """The case's fields a refusal names, when it names nothing else: empty when any error is not
    about a field the case can go without (`keep`: its subject, brief and handoff id)."""
    named: set[str] = set()
    for error in reply if isinstance(reply, list) else []:
        if not isinstance(error, dict) or error.get("errorCode") not in _FIELD_CODES:
            return set()
        fields = [str(f) for f in error.get("fields") or []]
        fields += _NO_SUCH_COLUMN.findall(str(error.get("message") or ""))
        if not fields and error["errorCode"] == "INACTIVE_OWNER_OR_USER" and _about_owner(error, case):
            fields = ["OwnerId"]  # Salesforce names no field
        # Salesforce names a field as it is defined; the case may hold it as a mapping wrote it
        # (`integration__c`): matched in any case, or the case failed for good over one field.
        as_sent = [next((key for key in case if key.lower() == f.lower()), None) for f in fields]
        if not as_sent or any(key is None or key in keep for key in as_sent):
            return set()
        named.update(key for key in as_sent if key is not None)
    return named


def _holder(case: Mapping[str, Any]) -> str | None:
    """The agent a case we added to waits on (`Sent.holder`): its owner when that is a user (005…)
    — an agent took it since, or routing gave it one. A queue (00G…) is nobody yet; so is the user
    who made the case, still its owner (the connector's API user: no assignment rule moved it), and
    one who left (an inactive user keeps their open cases): told as having the conversation, and
    offered to sticky routing, who was then refused as an owner (a review)."""
    owner = case.get("OwnerId")
    if not isinstance(owner, str) or not _OWNER_ID.fullmatch(owner) or not owner.startswith("005"):
        return None
    if (case.get("Owner") or {}).get("IsActive") is False:
        return None
    return None if owner == case.get("CreatedById") else owner


def _owner(case: Mapping[str, Any]) -> dict[str, Any]:
    """Who owns the case, for the delivery's reply (an admin's look): its id, name and kind."""
    owner = str(case.get("OwnerId") or "")
    name = (case.get("Owner") or {}).get("Name") if isinstance(case.get("Owner"), Mapping) else None
    kind = "user" if owner.startswith("005") else "queue" if owner.startswith("00G") else None
    return {"id": owner or None, "name": name, "kind": kind}


# Case fields this adapter acts on by name (`_headers`, `brief_fields_for`), however a bot spells them.
_NAMED_HERE = ("OwnerId", "Description")


def _headers(case: Mapping[str, Any]) -> dict[str, str]:
    # Assignment rules would overwrite an owner routing chose; without one, the org's rules decide.
    return {"Sforce-Auto-Assign": "FALSE" if case.get("OwnerId") else "TRUE"}


# Chinese, Japanese and Korean names are written family name first: "佐藤 花子" went in as
# FirstName 佐藤, LastName 花子 — the Contact filed under the given name.
_FAMILY_FIRST = re.compile(r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def _name_parts(name: str) -> tuple[str, str] | None:
    """(FirstName, LastName) of a customer's name as written; None when there is none."""
    words = name.split()
    if not words:
        return None
    if len(words) > 1 and _FAMILY_FIRST.search(words[0]):
        return " ".join(words[1:]), words[0]
    return " ".join(words[:-1]), words[-1]


def _dated(ctx: HandoffContext) -> list[str]:
    """The transcript's lines under the line that dates them (a one-day transcript's carry times only)."""
    return [ctx.brief.transcript_heading, *ctx.brief.transcript_lines]


def _clip(text: str, limit: int) -> str:
    return text if _units(text) <= limit else _within(text, limit - 1).rstrip() + "…"


def _fits(value: Any, kind: str) -> Any:
    """`value` when it fits the standard fields of its kind (`FIELD_MAX`), else None."""
    return value if isinstance(value, str) and _units(value) <= FIELD_MAX[kind] else None


def _field_value(value: Any) -> Any:
    """A resolved mapping value as Salesforce takes it: lists of scalars become `a;b` (multi-picklist)."""
    if value is MISSING:
        return None
    if isinstance(value, list):
        return ";".join(value)  # text, each (`mapping_values.multi_select`)
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _json(response: Any) -> dict[str, Any]:
    return response.json() if response.content else {}
