"""Slack target: an alert in a channel, the details and the whole transcript as thread replies.

Payload (what `render` shows and `send_*` sends)::

    {"message": <chat.postMessage arguments>, "thread": [{"text", "blocks", "metadata"}, …]}

Slack has no idempotency key, so every message we post carries Slack message metadata naming
the handoff (`handoff_created` on the alert, `handoff_thread` + part number on each reply). After
an unknown outcome `find_existing` looks the alert up by that metadata and finishes its thread
instead of posting a second alert. Block Kit layout and limits live in `slack_blocks`.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import os
import re
import ssl
import threading
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, NamedTuple
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

from connector.errors import ConfigError, MappingProblem
from connector.schemas.packet import URGENCIES
from connector.settings import Settings, http_address

from . import call_deadline
from . import slack_blocks as kit
from .base import Adapter, Dropped, HandoffContext, Probed, Sent, batch_again, created_at, deep_merge
from .errors import (
    AuthError,
    DeliveryError,
    LookupUnreadable,
    OutcomeUnknown,
    RateLimited,
    RateLimitedAfterActing,
    RejectedError,
    TicketGone,
    TransientError,
    page_of,
)
from .events import AssignmentEvent, Holder

CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")  # what Slack reads history by; a name is not
log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
CREATED, UPDATED, THREAD = "handoff_created", "handoff_updated", "handoff_thread"
AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
                         "missing_scope", "no_permission", "ekm_access_denied"})
# Slack's own failures, answered with HTTP 200 and `ok: false`: its API description lists
# `fatal_error` and `request_timeout` (of which Slack says the operation may have partly
# succeeded), and `internal_error`, `service_unavailable` come the same way. A retry, looking
# first when the call posts, like a 5xx — refused for good, a short Slack incident failed handoffs.
SERVER_FAILURES = frozenset({"fatal_error", "internal_error", "service_unavailable", "request_timeout"})
# An alert's thread that takes no replies any more, whatever is sent: its channel archived
# (`is_archived`), deleted or made private without the bot (`channel_not_found`), the bot removed
# from it (`not_in_channel`) — chat.postMessage's own refusals in Slack's API description — or its
# message deleted (`thread_not_found`, conversations.replies'; `message_not_found`).
THREAD_GONE = frozenset({"is_archived", "channel_not_found", "not_in_channel", "thread_not_found",
                         "message_not_found"})
# A channel whose history cannot be read at all (conversations.history's refusals): deleted or made
# private without the app, the app not in it, or not a channel id.
UNREADABLE = frozenset({"channel_not_found", "not_in_channel"})
# slack-sdk's `error` for an answer that is not JSON (a proxy's HTML page, an empty 200): not
# Slack refusing anything — a post may be up behind it. Looked for and retried, as a 5xx is.
NOT_JSON = "Received a response in a non-JSON format"
# find_existing reads at most LOOKUP_PAGES × PAGE_SIZE messages of the channel, newest first, no
# older than the handoff (its ULID) less a margin for clock skew; a thread, PAGES × 4 pages.
PAGES, PAGE_SIZE, SKEW_S = 5, 200, 600
# chat.update's `parse` defaults to `client`, unlike chat.postMessage's `none`, and an edit that
# leaves it out sets the message to it (Slack's API description): every edit says `none`, as posted,
# so the fallback text (the customer's words in it) is still taken as written.
AS_POSTED = "none"
LOOKUP_PAGES = 15  # 3,000 messages since the handoff: Slack's tier 3 (50 a minute) allows it
_ONE_MENTION = rf"(?:<!here>|<!channel>|<!subteam\^[A-Z0-9]+>|<@{kit.USER_ID}>)"
MENTION = re.compile(rf"^{_ONE_MENTION}(?: {_ONE_MENTION})*$")


class Posted(NamedTuple):
    """What an earlier attempt left in an alert's thread (`SlackAdapter._posted_in_thread`)."""

    update: dict[str, Any] | None  # this handoff's reply to a conversation's alert
    highest: int  # the highest thread part posted; -1: none
    refused: Dropped  # the parts Slack refused, as the receipt lists them


class SlackAdapter(Adapter):
    name = "slack"
    mapping_keys = frozenset({"mention_on_urgent", "mention_urgencies", "broadcast_updates", "channel"})
    mapping_types = {"mention_on_urgent": str, "mention_urgencies": list, "broadcast_updates": bool, "channel": str}
    required_settings = ("slack_bot_token", "slack_channel")
    # A channel is read by more people than a ticket: without its file (moved away in a deploy), or
    # a file without `redact:`, card numbers went to it unmasked. As mappings/slack.yaml ships.
    default_redact = ("card", "iban", "national_id", "secret")
    routing_keys = frozenset({"channel"})

    @classmethod
    def routing_id_problem(cls, key: str, value: Any) -> str | None:
        # A number (`channel: 12345` in routing.yaml) passed `check` and went to chat.postMessage as
        # one: every alert routed there an unknown outcome, retried for its whole window (a review).
        # A name is warned of (`_named_channels`), not refused: it posts.
        return None if isinstance(value, str) and value.strip() else f"a Slack channel id (C…) as text, got {value!r}"

    def __init__(self, settings: Settings, mapping: Mapping[str, Any] | None = None):
        super().__init__(settings, mapping)
        self._web: WebClient | None = None  # built on first send: `preview` renders without credentials
        self._lock = threading.Lock()
        mention = self.mapping.get("mention_on_urgent") or ""
        if mention and not MENTION.match(mention):  # admin-edited: only real mention syntax, never free mrkdwn
            raise MappingProblem("slack", "mention_on_urgent",
                                 "must be <!here>, <!channel>, <@U…> or <!subteam^S…> (several: separated by spaces)")
        urgencies = self.mapping.get("mention_urgencies", ["urgent"])
        if not all(isinstance(u, str) and u.lower() in URGENCIES for u in urgencies or ()):
            raise MappingProblem("slack", "mention_urgencies",
                                 f"must list urgencies from {', '.join(URGENCIES)}")
        self._mention_urgencies = frozenset(u.lower() for u in urgencies or ())  # as routing reads them: any case

    @classmethod
    def setting_problems(cls, settings: Settings) -> list[ConfigError]:
        problems = super().setting_problems(settings)
        if settings.slack_api_url:
            try:  # the client adds each method's name to it (…/api/chat.postMessage)
                http_address("SLACK_API_URL", settings.slack_api_url, "https://slack.com/api/")
            except ConfigError as err:
                problems.append(err)
        return problems

    def mapping_warnings(self) -> list[str]:
        return _named_channels([("mappings/slack.yaml: channel", self.mapping.get("channel"))])

    def setting_warnings(self) -> list[str]:
        said = _named_channels([("SLACK_CHANNEL", self.settings.slack_channel)])
        if not self.settings.slack_signing_secret:  # as Zendesk's missing webhook secrets are warned about
            said.append("no SLACK_SIGNING_SECRET: alerts are posted without a Claim button (/webhooks/slack could "
                        "not verify its clicks), so who took a handoff is never recorded and quoted waits stay "
                        "the configured figures (README: Vendor events)")
        return said

    def routing_warnings(self, routing: Mapping[str, Any]) -> list[str]:
        return _named_channels((f"mappings/routing.yaml: {'teams' if kind == 'team' else 'rules'}.{name}"
                                f"{'.then' if kind == 'rule' else ''}.targets.slack.channel", channel)
                               for kind, name, channel in _routed_channels(routing))

    # ---- build ---------------------------------------------------------------------------

    def build_create(self, ctx: HandoffContext) -> dict[str, Any]:
        return self._compose(ctx, update=False)[0]

    def build_update(self, ctx: HandoffContext) -> dict[str, Any]:
        return self._compose(ctx, update=True)[0]

    def apply_extra(self, payload: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        ours = payload["message"]
        message = deep_merge(ours, extra)
        for key in _kept_from_extra(update="thread_ts" in ours):  # ours, or none where we set none
            if key in ours:
                message[key] = ours[key]
            else:
                message.pop(key, None)
        return {**payload, "message": message}

    def receipt(self, ctx: HandoffContext, payload: Mapping[str, Any]) -> dict[str, Any]:
        # Everything reaches the thread in full; the alert itself may have had to shorten parts,
        # and agents triage from the alert, so those cuts are reported as not intact.
        result = super().receipt(ctx, payload)
        update = ctx.link is not None
        kept = [{"part": "vendor_extra", "reason": f"vendor_extra.slack.{key} was not applied: {why}"}
                for key, why in _kept_from_extra(update).items() if key in ctx.vendor_extra]
        result["dropped"] = [*result["dropped"], *self._compose(ctx, update=update)[1], *kept]
        return result

    def _compose(self, ctx: HandoffContext, update: bool) -> tuple[dict[str, Any], list[kit.Note]]:
        """The payload and what the alert had to shorten. `update`: a reply on `ctx.link`'s alert."""
        packet, messages = ctx.packet, ctx.brief.follow_up
        # A batch of messages not caught up (an earlier one did not arrive) carries the whole brief,
        # but is no re-escalation: titled "Handed off again", broadcast to the channel with the
        # urgent mention, it paged everyone for a customer's next message (a review).
        batch = (packet.get("follow_up") or {}).get("handoff_id")
        if messages is not None:  # a follow-up's reply: a line, then only the messages it adds
            message = kit.follow_up(packet, messages)
            notes = kit.unlinked(packet, messages_from=packet["follow_up"]["first"])  # as the brief takes them
        else:
            # The Claim button needs Slack's interactivity, which posts back signed with
            # SLACK_SIGNING_SECRET: without that secret a click could not be verified, so no button.
            in_thread = update and batch is not None
            held = _held(ctx) if update else None
            message, notes = kit.alert(packet, ctx.handoff_id, ctx.assignment, ctx.related,
                                       mention="" if in_thread else self._mention(ctx), repeat=update,
                                       claim=bool(self.settings.slack_signing_secret),
                                       caution=kit.of_the_thread(ctx.another_customer) if update else None,
                                       since=kit.of_the_thread(batch_again(packet) if in_thread else ctx.news)
                                       if update else None,
                                       kept_team=ctx.brief.kept_team if update else None,
                                       again=_batch_title(packet) if in_thread else "Handed off again",
                                       held=kit.held_notice(held) if held else None)
            notes = [*notes, *kit.unlinked(packet)]
        event = {"event_type": UPDATED if update else CREATED, "event_payload": {"handoff_id": ctx.handoff_id}}
        message = {"channel": self._channel(ctx), **message, "metadata": event, "unfurl_links": False,
                   "unfurl_media": False}
        if update:
            channel, ts = _link_target(ctx)
            # A re-escalation is news: broadcast the first reply to the channel unless the mapping
            # says no, one an agent holds already too (`_held`: its reply names them, and another
            # may take it over). Messages while waiting stay in the thread, where whoever holds it looks.
            broadcast = messages is None and batch is None and bool(self.mapping.get("broadcast_updates", True))
            message.update(channel=channel, thread_ts=ts, reply_broadcast=broadcast)
        if messages is not None:
            # With the batch's `follow_up`: its replies are named as messages of the handoff they follow.
            replies = [("transcript", reply) for reply in
                       kit.transcript({"transcript": messages, "follow_up": packet.get("follow_up")}, ctx.handoff_id)]
        else:
            replies = [*(("details", reply) for reply in kit.details(packet, ctx.handoff_id)),
                       *(("transcript", reply)
                         for reply in kit.transcript(packet, ctx.handoff_id, ctx.brief.new_after))]
        # `carries`: what a reply holds, for the receipt should Slack refuse it (`_post_thread`).
        thread = [{**reply, "metadata": {"event_type": THREAD, "event_payload": {"handoff_id": ctx.handoff_id,
                                                                                 "part": n, "carries": carries}}}
                  for n, (carries, reply) in enumerate(replies)]
        return {"message": message, "thread": thread}, notes

    def _channel(self, ctx: HandoffContext) -> str:
        """Where the alert goes — and so where a lookup after a timeout must search: a bot's
        `vendor_extra.slack.channel` (merged into the message last), else routing's, else the
        mapping's, else SLACK_CHANNEL."""
        chosen = ctx.vendor_extra.get("channel")
        if isinstance(chosen, str) and chosen:
            return chosen
        routed = ((ctx.assignment.get("targets") or {}).get("slack") or {}).get("channel")
        return routed or self._configured_channel()[0]

    def _configured_channel(self) -> tuple[str, str]:
        """Where alerts go when neither the bot nor routing names a channel, and what says so."""
        if self.mapping.get("channel"):
            return self.mapping["channel"], "mappings/slack.yaml: channel"
        return self.settings.slack_channel, "SLACK_CHANNEL"

    def _mention(self, ctx: HandoffContext) -> str:
        urgent = kit.urgency_of(ctx.packet, ctx.assignment) in self._mention_urgencies
        return (self.mapping.get("mention_on_urgent") or "") if urgent else ""

    # ---- send ----------------------------------------------------------------------------

    @classmethod
    def vendor_extra_problems(cls, extra: Mapping[str, Any]) -> dict[str, str]:
        """What is wrong with a bot's `vendor_extra.slack`, by field. A channel given by name
        (`#vip-support`) posts, but the lookup after a timeout reads the channel's history, which
        takes only its id: the retry failed for good beside a live alert — and so did every later
        handoff of the conversation, looking for that alert."""
        if "channel" in extra and not (isinstance(extra["channel"], str) and CHANNEL_ID.fullmatch(extra["channel"])):
            return {"vendor_extra.slack.channel": f"{str(extra['channel'])[:100]!r} is not a channel id: give its id "
                                                  "(C…, from the channel's details in Slack), not its name"}
        return {}

    def send_create(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        if problems := self.vendor_extra_problems(ctx.vendor_extra):  # refused before anything is posted
            raise RejectedError("; ".join(f"{where}: {why}" for where, why in problems.items()))
        # Before the alert is up, errors keep their kind (a timeout here is already OutcomeUnknown).
        # After it, every failure becomes OutcomeUnknown: see _after_posting.
        posted = self._call("chat_postMessage", acts=True, **payload["message"])
        channel, ts = posted.get("channel"), posted.get("ts")
        if not (isinstance(channel, str) and channel and isinstance(ts, str) and ts):
            # `ok` without saying where: the alert is likely up, and only the lookup can find it.
            raise OutcomeUnknown("Slack chat.postMessage: answered ok without the alert's channel and ts",
                                 sent_to=_where(payload["message"]), reply=posted)
        with _after_posting(f"alert {channel}/{ts}", channel):
            refused = self._post_thread(channel, ts, payload["thread"], start=0)
            permalink = self._permalink(channel, ts)
        return replace(self._sent(ctx, channel, ts, permalink, posted.get("message")), dropped=refused)

    def send_update(self, payload: dict[str, Any], ctx: HandoffContext) -> Sent:
        assert ctx.link is not None
        channel, ts = _link_target(ctx)
        first, start = None, 0
        earlier: Dropped = ()
        try:
            if ctx.outcome_unknown:  # an earlier attempt may have posted some of these replies: resume
                first, highest, earlier = self._posted_in_thread(channel, ts, ctx.handoff_id)
                start = highest + 1
            if first is None:
                first = self._call("chat_postMessage", acts=True, **payload["message"])
        except RejectedError as err:
            raise _gone(err, ctx.link.vendor_id) or err from err
        with _after_posting(f"update of {channel}/{ts}", channel):
            refused = self._post_thread(channel, ts, payload["thread"], start=start)
        # Whoever claimed the alert has the conversation (the reply said so — a batch's carrying the
        # whole brief too): as Zendesk's answer names the assignee of a ticket updated, they hold
        # this handoff too, until another agent clicks its Claim. A batch's plain messages said nothing of it.
        held = _held(ctx) if ctx.brief.follow_up is None else None
        return Sent(vendor_id=ctx.link.vendor_id, url=ctx.link.url, extra=dict(ctx.link.extra),
                    reply={"ts": first.get("ts"), "replies": len(payload["thread"]) + 1},
                    dropped=(*earlier, *refused), holder=held.agent_id if held else None)

    def find_existing(self, ctx: HandoffContext) -> Sent | None:
        # First where the unanswered post went (recorded with that attempt): a mapping edit or a
        # new SLACK_CHANNEL since then moves where the next alert goes, not where that one is.
        # Then where this attempt would post, in case an attempt nobody recorded (a process
        # killed mid-post) went there.
        recorded, now = ctx.sent_to.get("channel"), self._channel(ctx)
        alert, channel = None, now
        if isinstance(recorded, str) and recorded and recorded != now:
            alert, channel = self._find_alert_in_former(recorded, ctx.handoff_id), recorded
        if alert is None:
            alert, channel = self._find_alert(now, ctx.handoff_id), now
        if alert is None:
            return None
        ts = alert["ts"]
        log.info("found the alert of an unknown outcome", extra={"vendor_id": f"{channel}/{ts}"})
        thread = self.render(ctx)["thread"]
        posted = self._posted_in_thread(channel, ts, ctx.handoff_id)
        refused = self._post_thread(channel, ts, thread, start=posted.highest + 1)
        permalink = self._permalink(channel, ts)
        return replace(self._sent(ctx, channel, ts, permalink, alert), dropped=(*posted.refused, *refused))

    def _find_alert_in_former(self, channel: str, handoff_id: str) -> dict[str, Any] | None:
        """`_find_alert` in a channel the mapping no longer names: one Slack will not read (deleted,
        or the bot removed from it — maybe why it was changed) holds no alert we can update, and
        must not fail the delivery for good; it is said, and the lookup goes on where it would post."""
        try:
            return self._find_alert(channel, handoff_id)
        except (RejectedError, AuthError) as err:  # AuthError: a private channel the token may not read
            log.warning("slack: the channel an unanswered alert went to cannot be read; looking where it would go "
                        "now", extra={"channel": channel, "error": err.message})
            return None

    def related_changed(self, ctx: HandoffContext) -> None:
        assert ctx.link is not None
        # Only our own alert is rewritten; an alert made by an earlier handoff of the conversation
        # describes that handoff and keeps its own metadata (find_existing relies on it).
        if ctx.link.extra.get("handoff_id") != ctx.handoff_id:
            self._relate_reply(ctx)
            return
        channel, ts = _link_target(ctx)
        message = self.apply_extra(self.build_create(ctx), ctx.vendor_extra)["message"]
        blocks = message["blocks"]
        if kit.offers_claim(blocks):
            # Rebuilt as posted, the alert would offer its Claim button again after an agent took
            # the handoff: whoever reads it next would take it too. What the alert says about who
            # took it is read back and kept. (A claim whose edit lands between this read and the
            # update below is still overwritten: Slack has no conditional update.)
            notice = kit.taken_notice((self._read_message(channel, ts) or {}).get("blocks") or [])
            if notice:
                blocks = kit.claimed(blocks, notice)
        self._call("chat_update", channel=channel, ts=ts, text=message["text"], blocks=blocks,
                   metadata=message["metadata"], parse=AS_POSTED)

    def _relate_reply(self, ctx: HandoffContext) -> None:
        """A re-escalation's tickets linked in its own reply in the alert's thread (only that section
        changed): a closed Zendesk ticket's successor, opened for it while the reply was posted, was
        reachable from nowhere in Slack — the alert links the first handoff's ticket (a review)."""
        channel, ts = _link_target(ctx)
        reply = self._posted_in_thread(channel, ts, ctx.handoff_id).update
        blocks = kit.with_related(reply.get("blocks") or [], ctx.related) if reply and reply.get("ts") else None
        if reply is None or blocks is None:
            return
        kept = {"metadata": reply["metadata"]} if reply.get("metadata") else {}
        self._call("chat_update", channel=channel, ts=str(reply["ts"]), text=reply.get("text") or "", blocks=blocks,
                   parse=AS_POSTED, **kept)

    def probe(self, routing: Mapping[str, Any] | None = None) -> Probed:
        who = self._call("auth_test")
        # The alert channel's history is what the lookup after a timeout reads: it needs the
        # history scope and, for a private channel, the bot in it. The channel alerts go to (routing
        # aside): the mapping's overrides SLACK_CHANNEL, and reading SLACK_CHANNEL approved a channel
        # the bot was in while every alert went to one it was not (`not_in_channel`). Then each
        # channel routing.yaml gives a team or a rule, once: one the bot was not in passed, and every
        # handoff of that team then failed for good (`not_in_channel`; a review).
        channel, where = self._configured_channel()
        channels: dict[str, list[str]] = {channel: [where]}
        for kind, name, routed in _routed_channels(routing or {}):
            if isinstance(routed, str) and routed.strip():
                channels.setdefault(routed, []).append(f"{kind} {name}")
        said = []
        for channel, users in channels.items():
            by = ", ".join(users) if users[0] == where else f"routing.yaml: {', '.join(users)}"
            try:
                self._call("conversations_history", channel=channel, limit=1)
            except (RejectedError, AuthError) as err:  # not_in_channel; missing_scope (a private one's groups:history)
                kind = AuthError if isinstance(err, AuthError) else RejectedError
                raise kind(f"{err.message} (reading {channel}, {by})", status=err.status, reply=err.reply) from err
            said.append(f"{channel} readable ({by})")
        return Probed(f"signed in as {who.get('user')} in {who.get('team')}; {'; '.join(said)}")

    def claim_answered(self, event: AssignmentEvent, holder: Holder, ticket_id: str) -> None:
        """Slack shows nothing when a button is clicked. The first claim is answered in the alert's
        thread and in the channel (`reply_broadcast`), so nobody else takes the handoff too; a
        later click, with a message only that agent sees, naming who has it. Both go to the alert
        our delivery posted (`ticket_id`), never to a channel the click's payload names; a click
        inside the thread (a re-escalation's reply, `event.ticket_id`) is answered in the thread."""
        channel, ts = _alert(ticket_id)
        clicked = _alert(event.ticket_id)[1]  # in the alert's channel: only the ts is the payload's
        text = kit.claim_notice(holder, event.agent_id)
        if holder.first:
            # First: a retry of this notice must not post twice.
            self._mark_taken(channel, ts, text, holder, clicked)
            self._call("chat_postMessage", acts=True, channel=channel, thread_ts=ts, reply_broadcast=True, text=text,
                       unfurl_links=False, unfurl_media=False)
            return
        in_thread = {"thread_ts": ts} if clicked != ts else {}
        self._call("chat_postEphemeral", acts=True, channel=channel, user=event.agent_id, text=text, **in_thread)

    def taken_elsewhere(self, holder: Holder, ticket_id: str) -> None:
        """An agent took the handoff in Zendesk (or Salesforce): the alert loses its Claim button and
        says who has it, as after a claim here. Left live, the channel saw a handoff nobody had, and
        an agent who clicked learned only then (a review). Nothing is posted: the alert says it."""
        channel, ts = _alert(ticket_id)
        self._mark_taken(channel, ts, kit.claim_notice(holder, ""), holder, None)

    def completed_elsewhere(self, handoff_id: str, solved_at: str, ticket_id: str) -> None:
        """Its ticket at another target was solved: the alert (and the handoff's own reply, a
        re-escalation's) loses its Claim button and says so. Left live, the channel saw an unclaimed
        handoff for good, and an agent who clicked learned only then that it was done (a review).
        One that says who took it already is left as it is."""
        channel, ts = _alert(ticket_id)
        notice = kit.solved_notice(solved_at)
        alert = self._show_taken(channel, ts, notice)
        if alert is not None and not _ours(alert, CREATED, handoff_id):
            if (reply := self._reply_of(channel, ts, handoff_id)) and reply != ts:
                # Its line naming who held the conversation gives way with its Claim: left, it still said
                # "Claim to take it over" over a solved handoff with no button (a review).
                self._show_taken(channel, reply, notice, held=True)

    def _mark_taken(self, channel: str, ts: str, text: str, holder: Holder, clicked: str | None) -> None:
        """The alert says who took the handoff, its Claim button gone; so does the reply clicked
        (`clicked`, shown in the channel too), and the taken handoff's own reply when the click was
        elsewhere (the alert's Claim takes the newest)."""
        alert = self._show_taken(channel, ts, text, held=True)
        # The taken handoff's own reply is looked for only when it is not the alert's handoff
        # (a re-escalation's): every claim read the whole thread.
        mine = alert is not None and _ours(alert, CREATED, holder.handoff_id or "")
        for edited in dict.fromkeys((clicked, None if mine else self._reply_of(channel, ts, holder.handoff_id))):
            if edited and edited != ts:
                self._show_taken(channel, edited, text, held=True)

    def _reply_of(self, channel: str, ts: str, handoff_id: str | None) -> str | None:
        """The ts of `handoff_id`'s own reply in the alert's thread (a re-escalation's), if it has one.
        Cosmetic, as `_show_taken` is: only a rate limit or an outage is raised, for the retry."""
        if not handoff_id:
            return None
        try:
            update = self._posted_in_thread(channel, ts, handoff_id).update
        except TransientError:
            raise
        except DeliveryError as err:
            log.warning("slack: the taken handoff's reply could not be looked for", extra={"error": str(err)})
            return None
        return str(update["ts"]) if update and update.get("ts") else None

    def _show_taken(self, channel: str, ts: str, notice: str, held: bool = False) -> dict[str, Any] | None:
        """The alert itself (or a re-escalation's reply in its thread) says who took it, its Claim
        button gone. Read back first (its blocks as posted, its metadata, which the lookups after a
        timeout rely on); one already edited is left alone, so a retried notice changes nothing
        twice. Cosmetic: a refusal is logged and the announcement still goes out, except a rate
        limit or an outage, which the notice's own retry waits out. The related-tickets edit
        (`related_changed`), should it come later, keeps what this one says. Returns the message as
        read (None when it could not be). `held`: the line saying who held the conversation as the
        reply was posted gives way too (`kit.claimed`) — to a take, and to a solve of a re-escalation's
        reply, whose Claim it stood over."""
        alert = None
        try:
            alert = self._read_message(channel, ts)
            blocks = kit.claimed(alert.get("blocks") or [], notice, held) if alert else None
            if alert is None or blocks is None:
                return alert
            kept = {"metadata": alert["metadata"]} if alert.get("metadata") else {}
            self._call("chat_update", acts=True, channel=channel, ts=ts, text=alert.get("text") or notice,
                       blocks=blocks, parse=AS_POSTED, **kept)
        except OutcomeUnknown as err:  # Slack may have made the edit: go on to the announcement
            log.warning("slack: the alert may not say who took it", extra={"error": str(err)})
        except TransientError:  # a rate limit or an outage: the notice's retry waits it out
            raise
        except DeliveryError as err:
            log.warning("slack: the alert does not say who took it", extra={"error": str(err)})
        return alert

    def _read_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The alert, or a reply in its thread, as it stands in Slack (its blocks as last edited, its
        metadata). A reply's ts reads its thread, whose parent may come first: only that moment is
        asked for, and the message is picked by its ts."""
        page = self._call("conversations_replies", channel=channel, ts=ts, oldest=ts, latest=ts, inclusive=True,
                          limit=2, include_all_metadata=True)
        return next((m for m in page.get("messages") or [] if m.get("ts") == ts), None)

    def _post_thread(self, channel: str, ts: str, thread: list[dict[str, Any]],
                     start: int) -> tuple[dict[str, str], ...]:
        """Post `thread[start:]` under the alert; what Slack refused for good, for the receipt.

        A reply refused for good (blocks Slack will not take, a limit it counts otherwise than we
        do) is refused again on every retry, and the alert is already up: failing the delivery
        told the bot "failed" beside a live alert, and left the conversation's next handoff to
        post a second one. A note takes the reply's place — with its part number, so a resumed
        thread goes on after it — and the receipt says what the thread is missing.
        """
        refused: list[dict[str, str]] = []
        for reply in thread[start:]:
            try:
                self._call("chat_postMessage", acts=True, channel=channel, thread_ts=ts, unfurl_links=False,
                           unfurl_media=False, **reply)
            except RejectedError as err:
                if (gone := _gone(err, f"{channel}/{ts}")) is not None:
                    # Archived (or left) mid-thread: a note cannot go there either, and the retry
                    # would resume the thread, skip the post that meets it gone, and fail the same
                    # way until the delivery died. The base opens a new alert instead.
                    raise gone from err
                about = reply["metadata"]["event_payload"]
                part = f"part {about['part'] + 1} of the thread"
                said = {"part": str(about.get("carries", "thread")),
                        "reason": f"Slack refused {part} ({err.message[:300]}); a note stands in its place"}
                # The note says in its metadata what it stands in for: a retry that resumes the
                # thread after a later failure reads it back (`_posted_in_thread`), or its receipt
                # would say nothing was dropped.
                note = {**reply["metadata"], "event_payload": {**about, "refused": said["reason"]}}
                self._call("chat_postMessage", acts=True, channel=channel, thread_ts=ts, metadata=note,
                           text=f"(Slack refused {part}: {err.message[:300]}. The connector keeps it: handoff "
                                f"{about['handoff_id']}.)")
                log.warning("slack: a thread reply was refused; a note stands in its place",
                            extra={"error": err.message[:300]})
                refused.append(said)
        return tuple(refused)

    def _find_alert(self, channel: str, handoff_id: str) -> dict[str, Any] | None:
        # From when the handoff was made (its ULID; SKEW_S for the two clocks): an admin's replay
        # comes any time later, and a window ending at the oldest delivery still retried missed an
        # alert posted before it. Not from further back: each page read the channel's messages
        # newest first, and a window of a whole delivery age (a day) spent the pages on messages
        # older than the handoff — in a busy channel, before reaching its alert.
        oldest = created_at(handoff_id).timestamp() - SKEW_S
        cursor = None
        for _ in range(LOOKUP_PAGES):
            try:
                page = self._call("conversations_history", channel=channel, oldest=f"{oldest:.6f}",
                                  limit=PAGE_SIZE, include_all_metadata=True, cursor=cursor)
            except RejectedError as err:
                code = (err.reply or {}).get("error") if isinstance(err.reply, Mapping) else None
                if code not in UNREADABLE:
                    raise
                raise LookupUnreadable(f"channel {channel} cannot be read ({code}): {err.message}",
                                       status=err.status, reply=err.reply) from err
            for message in page.get("messages", []):
                if _ours(message, CREATED, handoff_id):
                    return message
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                return None
        # Not found, not looked through: the alert may be there. Posted again all the same — an
        # alert twice is found by the agent; one never posted (a delivery failing for ever on a
        # channel this busy, replays included) is not — and said, for whoever sees two.
        log.warning("slack: alert not found among the channel's newest messages since the handoff; taken for "
                    "not posted (it may be there)", extra={"channel": channel, "read": LOOKUP_PAGES * PAGE_SIZE,
                                                           "handoff_id": handoff_id})
        return None

    def _posted_in_thread(self, channel: str, ts: str, handoff_id: str) -> Posted:
        """This handoff's update reply (if any), the highest thread part posted (-1: none), and
        the receipt's entries for the parts Slack refused, whose notes say so (`_post_thread`).

        Parts go out one by one, in order, so everything after the highest one is missing.
        """
        update, highest, cursor, refused = None, -1, None, []
        for _ in range(PAGES * 4):
            page = self._call("conversations_replies", channel=channel, ts=ts, limit=PAGE_SIZE,
                              include_all_metadata=True, cursor=cursor)
            for message in page.get("messages", []):
                if _ours(message, THREAD, handoff_id):
                    about = message["metadata"]["event_payload"]
                    highest = max(highest, int(about.get("part", -1)))
                    if about.get("refused"):
                        refused.append({"part": str(about.get("carries", "thread")), "reason": str(about["refused"])})
                elif _ours(message, UPDATED, handoff_id):
                    update = message
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                break
        return Posted(update, highest, tuple(refused))

    def ticket_url(self, vendor_id: str) -> str | None:
        # Slack alone knows a message's permalink (the workspace's own host): asked, as a post asks.
        return self._permalink(*_alert(vendor_id))

    def _permalink(self, channel: str, ts: str) -> str | None:
        return self._call("chat_getPermalink", channel=channel, message_ts=ts).get("permalink")

    def _sent(self, ctx: HandoffContext, channel: str, ts: str, permalink: str | None, message: Any) -> Sent:
        return Sent(vendor_id=f"{channel}/{ts}", url=permalink,
                    extra={"channel": channel, "ts": ts, "handoff_id": ctx.handoff_id},
                    reply={"channel": channel, "ts": ts, "permalink": permalink,
                           "message_metadata": (message or {}).get("metadata")})

    # ---- transport -----------------------------------------------------------------------

    def _client(self) -> WebClient:
        with self._lock:
            if self._web is None:
                self._web = _make_client(self.settings.slack_bot_token, self.settings.slack_api_url or DEFAULT_API_URL,
                                         self.settings.vendor_timeout_s, os.environ)
            return self._web

    def _call(self, method: str, *, acts: bool = False, **kwargs: Any) -> dict[str, Any]:
        """One Web API call; every library and socket error leaves as an `adapters.errors` error.

        `acts`: the call changes something at Slack, so a reply lost after the request left means
        the outcome is unknown (the retry must look before posting again).
        """
        api = method.replace("_", ".", 1)
        try:
            return getattr(self._client(), method)(**kwargs).data
        except SlackApiError as err:
            raise _api_error(api, err, acts, kwargs.get("channel")) from err
        except URLError as err:  # urllib wraps failures while connecting or sending: nothing arrived
            raise TransientError(f"Slack {api}: cannot reach Slack ({err.reason})") from err
        except (OSError, http.client.HTTPException) as err:  # timeout / reset while awaiting the reply
            message = f"Slack {api}: no answer ({type(err).__name__}: {err})"
            if acts:
                raise OutcomeUnknown(message, sent_to=_where(kwargs)) from err
            raise TransientError(message) from err
        except SlackClientError as err:
            raise RejectedError(f"Slack {api}: {err}") from err
        except ValueError as err:  # an answer the library could not decode (cut-off JSON, not UTF-8)
            message = f"Slack {api}: an answer that is not Slack's ({type(err).__name__})"
            if acts:  # it came back, so the request arrived: Slack may have posted
                raise OutcomeUnknown(message, sent_to=_where(kwargs)) from err
            raise TransientError(message) from err


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Slack's Web API never redirects. urllib follows a redirect with every header of the request,
    our bearer token included, to wherever it points — another host too (a review saw the token
    arrive there). Not followed, it is answered as what it is: an HTTP error (`_api_error`)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _SlackClient(WebClient):
    """slack-sdk's client sending through one urllib opener made once (`_make_client`: no
    redirects, our proxy decision, the CA bundle) instead of `urlopen` building one per call. It
    replaces the library's one transport method and keeps its contract: status, headers and the
    body as text (undecodable bytes replaced, so such an answer reads as not JSON, not a crash)."""

    def __init__(self, *args: Any, opener: urllib.request.OpenerDirector, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._opener = opener

    def _perform_urllib_http_request(self, *, url: str, args: dict[str, dict[str, Any]]) -> dict[str, Any]:
        # As for every vendor call (`call_deadline`): a deadline for the whole call, twice the
        # per-step timeout — around the library's retry of a connection error too, which would
        # otherwise start a second deadline after the first had cut the call off.
        with call_deadline.deadline(call_deadline.whole_call_s(self.timeout)):
            return super()._perform_urllib_http_request(url=url, args=args)

    def _perform_urllib_http_request_internal(self, url: str, req: urllib.request.Request) -> dict[str, Any]:
        if not url.lower().startswith(("http://", "https://")):  # urllib also opens file:// and ftp://
            raise SlackRequestError(f"Invalid URL detected: {url}")
        cut_off = f"no whole answer within {call_deadline.whole_call_s(self.timeout):g} s (cut off)"
        try:
            # The answer is capped — an error's body too, read here rather than by the library.
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    charset = resp.headers.get_content_charset() or "utf-8"
                    body = call_deadline.read_capped(resp).decode(charset, "replace")
                answer: dict[str, Any] | HTTPError = {"status": resp.code, "headers": resp.headers, "body": body}
            except HTTPError as err:
                with err:
                    capped = io.BytesIO(call_deadline.read_capped(err))
                    answer = HTTPError(err.url, err.code, err.msg, err.headers, capped)
        except URLError as err:  # nothing was sent: so it stays, however it ended
            if call_deadline.cut_off():
                raise URLError(f"{cut_off}: {err.reason}") from err
            raise
        except (OSError, http.client.HTTPException) as err:
            if call_deadline.cut_off():
                raise TimeoutError(cut_off) from err
            raise
        if call_deadline.cut_off():  # cut mid-answer: what came may still parse
            raise TimeoutError(cut_off)
        if isinstance(answer, HTTPError):
            raise answer
        return answer


class _InTimeRetryHandler(ConnectionErrorRetryHandler):
    """No retry once the call's deadline has cut it off: it would only wait, then be cut at once."""

    def _can_retry(self, **kwargs: Any) -> bool:
        return not call_deadline.cut_off() and super()._can_retry(**kwargs)


class _WatchedHTTPHandler(call_deadline.WatchedHandlerMixin, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPSHandler(call_deadline.WatchedHandlerMixin, urllib.request.HTTPSHandler):
    pass


def _make_client(token: str, base_url: str, timeout: int, environ: Mapping[str, str]) -> WebClient:
    # slack-sdk reads HTTPS_PROXY but ignores NO_PROXY; decide ourselves, then urllib does the rest.
    host = urlsplit(base_url).hostname or ""
    proxy = environ.get("HTTPS_PROXY") or environ.get("https_proxy") or ""
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    proxy = proxy if proxy and not urllib.request.proxy_bypass_environment(host, {"no": no_proxy}) else ""
    # The CA bundle is loaded only where TLS is spoken — Slack over https, or a proxy over https.
    secure = urlsplit(base_url).scheme == "https" or urlsplit(proxy).scheme == "https"
    variable = next((name for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE") if environ.get(name)), None) \
        if secure else None
    try:  # enterprise TLS interception: the CA bundle the rest of the service trusts
        context = ssl.create_default_context(cafile=environ[variable]) if variable else None
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(str(variable), f"cannot load the CA bundle: {err}") from None
    handlers: list[urllib.request.BaseHandler] = [
        _NoRedirects(), urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy else {}),
        _WatchedHTTPHandler(), _WatchedHTTPSHandler(context=context) if context else _WatchedHTTPSHandler()]
    client = _SlackClient(
        opener=urllib.request.build_opener(*handlers),
        token=token, base_url=base_url, timeout=timeout, ssl=context,
        # Our outbox owns retrying (with backoff and the find_existing check), so no rate-limit or
        # server-error handlers here. The one kept retries URLError only — raised while connecting
        # or sending, before Slack could act. slack-sdk's default would also retry a connection
        # reset *after* the request left, which re-posts an alert.
        retry_handlers=[_InTimeRetryHandler(max_retry_count=1, error_types=[URLError])],
    )
    client.proxy = proxy or None
    return client


def _api_error(api: str, err: SlackApiError, acts: bool, channel: Any = None) -> DeliveryError:
    response = err.response
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    code = str(data.get("error") or f"HTTP {status}")
    message = f"Slack {api}: {code[:300]}"
    if code.startswith(NOT_JSON):  # slack-sdk's words, then the page: a proxy's, not Slack's answer
        page = page_of(code[len(NOT_JSON):].removeprefix(":"))
        message = f"Slack {api}: an answer that is not Slack's JSON (HTTP {status}){page}"
    if code == "missing_scope" and data.get("needed"):  # name what to add to the Slack app
        message += f" (the bot token needs {str(data['needed'])[:100]}; see .env.example, SLACK_BOT_TOKEN)"
    if code == "channel_not_found" and isinstance(channel, str) and not CHANNEL_ID.fullmatch(channel):
        # A name (#support) posts, but reading the channel's history (the lookup after a timeout) needs its id.
        message += f" ({channel!r} is a name: give the channel's id, C…, and invite the bot to it)"
    if status == 429 or code in ("ratelimited", "rate_limited"):  # the latter: the API description's spelling
        headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        raw = headers.get("retry-after")
        raw = raw[0] if isinstance(raw, list) else raw
        try:
            retry_after = float(raw) if raw is not None else None
        except ValueError:
            retry_after = None
        return RateLimited(message, retry_after=retry_after, status=status, reply=data)
    if code in AUTH_ERRORS:
        return AuthError(message, status=status, reply=data)
    if 300 <= status < 400:  # not followed (`_NoRedirects`): nothing was done where it pointed
        return RejectedError(f"Slack {api}: redirected (HTTP {status}); Slack's API never redirects — is "
                             "SLACK_API_URL its address?", status=status)
    if status >= 500 or code in SERVER_FAILURES or code.startswith(NOT_JSON):
        # A 5xx to a post may come from a gateway after Slack stored the message: look before re-posting.
        if acts:
            return OutcomeUnknown(message, status=status, reply=data, sent_to=_where({"channel": channel}))
        return TransientError(message, status=status, reply=data)
    return RejectedError(message, status=status, reply=data)


@contextlib.contextmanager
def _after_posting(what: str, channel: str) -> Iterator[None]:
    """Failures once the first message is up are unknown outcomes, never plain retries.

    The retry then goes through find_existing (or the resume in send_update), which finds what
    was posted and finishes the thread, instead of posting the alert a second time. A 429 stays a
    rate limit too (`RateLimitedAfterActing`): the whole target pauses, not only this delivery.
    """
    try:
        yield
    except DeliveryError as err:
        if isinstance(err, OutcomeUnknown | TicketGone):  # the alert takes no more: nothing to look for
            raise
        raise RateLimitedAfterActing.unknown(f"{what} posted, then: {err.message}", err, status=err.status,
                                            reply=err.reply, sent_to={"channel": channel}) from err
    except Exception as err:  # anything else (an odd answer's KeyError): still after the alert went up
        raise OutcomeUnknown(f"{what} posted, then: {type(err).__name__}", sent_to={"channel": channel}) from err


def _gone(err: RejectedError, alert: str) -> TicketGone | None:
    """Slack's refusal of a reply as `TicketGone` when the alert's thread takes no more: its channel
    archived, deleted or left by the bot, its message deleted. The conversation's every later
    handoff failed there for good; now a new alert is posted where routing says (the base's
    replacement), and the conversation's link moves to it. None for any other refusal."""
    code = (err.reply or {}).get("error") if isinstance(err.reply, Mapping) else None
    if code not in THREAD_GONE:
        return None
    return TicketGone(f"alert {alert} takes no more replies ({code}): {err.message}", ticket_id=alert,
                      closed=False, status=err.status, reply=err.reply)


def _kept_from_extra(update: bool) -> dict[str, str]:
    """What a bot's `vendor_extra.slack` may not change in the message we post, and why (the
    receipt says so). Our metadata is what a lookup after a timeout finds a message by: the bot's,
    merged over it, hid the alert (or a repeat's reply), and the retry posted it again. A repeat's
    reply stays in its conversation's thread: moved elsewhere by the bot, it was recorded as that
    thread's all the same, and a Claim button in it took the handoff of the thread it was posted
    in instead (`slack_events`). An alert is a message of its own: made a reply in some thread, it
    was never in the channel's history, which the lookup reads, and a retry posted it again."""
    kept = {"metadata": "the connector's message metadata is how a retry after a timeout finds what was posted"}
    if update:
        return {**kept, "channel": "a reply stays in its conversation's thread",
                "thread_ts": "a reply stays in its conversation's thread"}
    return {**kept, "thread_ts": "an alert is a message of its own in the channel, where a retry after a timeout "
                                 "looks for it"}


def _where(kwargs: Mapping[str, Any]) -> dict[str, str] | None:
    """`OutcomeUnknown.sent_to` of a call that may have posted: the channel it named."""
    channel = kwargs.get("channel")
    return {"channel": channel} if isinstance(channel, str) and channel else None


def _link_target(ctx: HandoffContext) -> tuple[str, str]:
    assert ctx.link is not None
    extra = ctx.link.extra
    if extra.get("channel") and extra.get("ts"):
        return str(extra["channel"]), str(extra["ts"])
    return _alert(ctx.link.vendor_id)


def _held(ctx: HandoffContext) -> Holder | None:
    """The Slack user recorded holding the conversation's alert (`HandoffContext.held_by`: a claim
    of an earlier handoff in its thread), who has this re-escalation too. Nobody for an alert posted
    anew in place of the claimed one (`held_by` is the link's alert's), nor for someone elsewhere."""
    held = ctx.held_by
    return held if held is not None and held.target == SlackAdapter.name and held.agent_id else None


def _alert(vendor_id: str) -> tuple[str, str]:
    """An alert's channel and ts from the `vendor_id` our delivery recorded (`<channel>/<ts>`)."""
    channel, _, ts = vendor_id.partition("/")
    return channel, ts


def _ours(message: Mapping[str, Any], event_type: str, handoff_id: str) -> bool:
    metadata = message.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return metadata.get("event_type") == event_type and payload.get("handoff_id") == handoff_id


def _routed_channels(routing: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """The channels routing.yaml sends alerts to, as given: ("team" or "rule", its name, the channel)."""
    teams = [("team", str(name), team.get("targets")) for name, team in (routing.get("teams") or {}).items()
             if isinstance(team, Mapping)]
    rules = [("rule", str(rule.get("name") or n), (rule.get("then") or {}).get("targets"))
             for n, rule in enumerate(routing.get("rules") or []) if isinstance(rule, Mapping)]
    return [(kind, name, targets["slack"]["channel"]) for kind, name, targets in [*teams, *rules]
            if isinstance(targets, Mapping) and isinstance(targets.get("slack"), Mapping)
            and targets["slack"].get("channel") is not None]


def _named_channels(places: Iterable[tuple[str, Any]]) -> list[str]:
    """A name posts, but the lookup after an unknown outcome reads the channel's history, which
    takes only its id: found out by the first delivery that needed it, `failed`."""
    return [f"{where} is {channel!r}, a channel's name: give its id (C…, from the channel's details in "
            "Slack), or a delivery whose outcome was unknown cannot find its alert"
            for where, channel in places if isinstance(channel, str) and channel and not CHANNEL_ID.fullmatch(channel)]


def _batch_title(packet: Mapping[str, Any]) -> str:
    """The title of a thread reply carrying a batch's whole brief: not "while waiting" once an agent has it."""
    taken = (packet.get("follow_up") or {}).get("taken")
    return "Messages since an agent took it" if taken else "Messages while waiting"
