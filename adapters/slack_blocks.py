"""Block Kit for the Slack adapter: limits, mrkdwn escaping, and the alert / thread layouts.

Pure functions over the packet: no client, no settings, so `preview` renders without credentials.

Two rules hold for every string a customer or bot wrote:

* it is escaped (`&` `<` `>`) before it enters any text object, so `<!channel>` or
  `<https://evil|bank.com>` stays inert text; only links built here use `<url|label>`;
* it is measured *after* escaping, in UTF-16 code units (an emoji counts 2), and shortened with a
  visible "…" — never cut inside an entity or a link, never left for Slack to reject.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from connector.brief import (
    OFFSET_LABEL,
    OUTCOMES,
    REASONS,
    ROLES,
    TRENDS,
    also_sent,
    attachment_more,
    attempt_title,
    bot_loop,
    byte_size,
    clock,
    collected_of,
    first_customer_line,
    holds_something,
    is_number,
    last_customer_entry,
    local_time,
    message_for_customer,
    more_of,
    most_recent,
    named,
    newlines,
    out_of_hours,
    preferred_agent,
    repeat_contact,
    routed_to,
    scalar,
    signed_score,
    subject_for,
    urgency_shown,
)
from connector.text_rules import (
    CONTROL_NAMES,
    called,
    code_point_names,
    identity_of,
    name_of,
    rfc3339_utc,
    said_text,
    whole_end,
)
from connector.while_waiting import announced

from .base import IN_FULL_ON_THE_TICKET
from .events import Holder

# Slack's documented limits, and the ones we hold ourselves to (a margin under each).
MAX_BLOCKS = 50
SECTION_TEXT = 3000
HEADER_TEXT = 150
MAX_FIELDS = 10
FIELD_TEXT = 2000
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
BUTTON_URL = 3000  # a link button's `url`
AGGREGATE = 13_000  # `msg_blocks_too_long` fires near here; Slack does not say how it counts
SAFE_BLOCKS = 45
SAFE_AGGREGATE = 11_500  # measured on the serialized blocks, structure included: the strictest reading
# The label part of a thread line (a key, a link); the value part is never cut. Room for a link to
# the longest URL a packet may hold (2,000, each `&` five once escaped) and its label: at 1,000 a
# signed download link lost its whole label and link ("📎 …(application/pdf)"), and the receipt
# said nothing was dropped. Its value starts in the same section and continues in the next ones.
PREFIX_TEXT = 2_900
FALLBACK_TEXT = 300  # top-level `text`: notifications show ~1 line; Slack's own cap is 40k
# A thread link's label (a file name, a title, a ticket): the packet's longest name (500) whole.
WHOLE_LABEL = 500

# What one character becomes in what we send (`escape`): an entity, a control's name, or itself.
# Cuts and splits count with it: counted as one, a control named [U+2067] overflowed the thread's
# sections (their ends clipped, words lost) and a cut alert field kept the control itself.
# C0 control characters (an escape sequence pasted from a terminal) are named too: invisible in
# Slack, each took six once JSON-escaped, and a section of them outgrew what a message may carry.
_NAMED = {**CONTROL_NAMES, **code_point_names((*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F))}
_NAMED_PATTERN = re.compile("[" + "".join(map(re.escape, _NAMED)) + "]")
_WRITTEN = {"&": "&amp;", "<": "&lt;", ">": "&gt;", **_NAMED}
ELLIPSIS = "…"
Note = dict[str, str]
Message = dict[str, Any]  # {"text": …, "blocks": […]}

CLAIM_ACTION = "handoff_claim"  # the action id `adapters.slack_events` looks for

URGENCY = {"urgent": ("🔴", "Urgent"), "high": ("🟠", "High"), "normal": ("🔵", "Normal"), "low": ("⚪", "Low")}


def size(text: str) -> int:
    """Length as Slack's JavaScript counts it (UTF-16 code units): never under-counts emoji."""
    return len(text.encode("utf-16-le")) // 2


def escape(raw: Any) -> str:
    # `&` first, so the entities written next are not escaped again. (A generator over the
    # characters took a fifth of a preview's CPU: every line of a brief passes through here.)
    text = str(raw)
    if _NAMED_PATTERN.search(text):
        text = _NAMED_PATTERN.sub(lambda m: _NAMED[m.group()], text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(raw: Any, limit: int, more: str = "") -> tuple[str, bool]:
    """`raw` escaped, within `limit`; when cut, ends with "…" and `more` (mrkdwn, e.g. a link)."""
    text = escape(raw)
    if size(text) <= limit:
        return text, False
    tail = ELLIPSIS + more
    budget, used, out, raw = limit - size(tail), 0, [], str(raw)
    for ch in raw:  # escape per character, so the cut never lands inside an entity
        piece = _WRITTEN.get(ch, ch)
        if used + size(piece) > budget:
            break
        out.append(piece)
        used += size(piece)
    return "".join(out[:whole_end(raw, len(out))]).rstrip() + tail, True  # not through a character (🇯🇵)


def split(raw: str, limit: int, first: int | None = None) -> list[str]:
    """`raw` escaped and cut into chunks of at most `limit` (the first one at most `first`, when
    given: what is left of a section begun), at a space or newline when one is near.

    Lossless: the chunks, joined, are exactly `escape(raw)`.
    """
    chunks: list[str] = []
    start = 0
    while start < len(raw):
        cap = first if first is not None and not chunks else limit
        end = _fitting_end(raw, start, cap)
        last_break = max(raw.rfind(" ", start, end), raw.rfind("\n", start, end))
        if end < len(raw) and last_break > start + (end - start) // 2:
            end = last_break + 1
        elif whole_end(raw, end) > start:  # not through a character: a flag's halves paired the next ones wrongly
            end = whole_end(raw, end)
        end = max(end, start + 1)  # always progress, even if one character outgrows a tiny limit
        chunks.append(escape(raw[start:end]))
        start = end
    return chunks or [""]


def _fitting_end(raw: str, start: int, cap: int) -> int:
    """The end of the longest run of `raw` from `start` whose escape is at most `cap` long. Every
    character costs at least one, so the run is at most `cap` characters: that window whole when it
    fits, else the longest of its beginnings that does, found by halving — an escaped prefix is the
    escape's prefix, so the size only grows. (Character by character, a 1 MB packet value took a
    second of CPU to split, a delivery past the bot's budget: a review.)"""
    low, high = start, min(len(raw), start + cap)
    if size(escape(raw[start:high])) <= cap:
        return high
    while low < high:  # the answer is in [low, high): a prefix ending at low fits, one ending at high does not
        middle = (low + high + 1) // 2
        if size(escape(raw[start:middle])) <= cap:
            low = middle
        else:
            high = middle - 1
    return low


# What a URL keeps as written: RFC 3986's reserved characters and the `%` of its own escapes (`quote`
# keeps letters, digits and `-._~`). Anything else the packet accepts in a URL is percent-encoded: `|`
# and `>` end the address of `<url|label>`, and `<`, `"`, `{`, `\`, a backtick or non-ASCII make no
# URL a button takes — such a link was shown as its bare label, the conversation's button left out.
_URL_KEPT = "!#$%&'()*+,/:;=?@[]"
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PATH_END = re.compile(r"[?#]|$")


def safe_url(url: Any, longest: int = 2000) -> str | None:
    """`url`, when it is an http(s) URL, as it can go in `<url|label>` or a button (what a URL may
    not hold as written percent-encoded); else None."""
    if not isinstance(url, str) or len(url) > longest or re.search(r"\s", url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # a `[` or `]` not around an IPv6 host: no URL either, not a failed delivery
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    # A browser reads a `\` before the query as `/` (WHATWG, for http(s)): `/a\b` is `/a/b`, which
    # `%5C` would have made another address.
    path_end = _PATH_END.search(url).start()
    url = url[:path_end].replace("\\", "/") + url[path_end:]
    return quote(_STRAY_PERCENT.sub("%25", url), safe=_URL_KEPT)


def button_url(url: Any) -> str | None:
    """`url` as a link button's `url`, or None when it cannot be one."""
    checked = safe_url(url)
    return checked if checked is not None and len(checked) <= BUTTON_URL else None


# What a link in a thread line's label part may take (`PREFIX_TEXT`, less room for the line around it).
LINK_ROOM = PREFIX_TEXT - 200


def link_target(url: Any, longest: int = 2000, room: int = LINK_ROOM) -> str | None:
    """`url` as `link` writes it (made safe, escaped), or None when it cannot be linked within
    `room`: not an http(s) URL, or too long even without its label."""
    checked = safe_url(url, longest)
    target = escape(checked) if checked else None
    return target if target is not None and size(target) + 2 <= room else None  # < and >


def link(url: Any, label: Any, limit: int = 200, longest: int = 2000, room: int = LINK_ROOM) -> str:
    """A link we build: the url made safe, the label escaped, the whole within `room`. An unusable
    url shows as text. Each `&` of a url takes five once escaped: a long signed download link left a
    300-character label no room, and the whole link was cut away — the label gives way first, then
    the label itself; a url that alone outgrows `room` is named as not shown. (`unlinked` says in
    the receipt which of the packet's urls the thread shows without their link.)"""
    target, label = link_target(url, longest, room), flat(label)  # a label's lines: no row of their own
    if target is None:
        shown = fit(label, limit)[0]
        return f"{shown} _(its address is too long to link here)_" if safe_url(url, longest) else shown
    label_room = min(limit, room - size(target) - 3)  # <, | and >
    if label_room >= 20:
        return f"<{target}|{fit(label, label_room)[0]}>"
    return f"<{target}>"


UNLINKED = "cannot be a link in Slack (not an http(s) address, or too long)"


def unlinked(packet: Mapping[str, Any], messages_from: int | None = None) -> list[Note]:
    """The packet's urls Slack gets without their link, for the receipt: the conversation's (no
    button), and the thread's attachments, attempts and earlier tickets (their labels alone) — by
    the thread's rule (`link_target`), where everything is whole. `messages_from`: a follow-up's
    reply, which carries the transcript's messages from there on, and nothing else."""
    entries = list(enumerate(packet.get("transcript") or []))[messages_from or 0:]
    places = [("attachments", f"transcript[{n}].attachments[{m}].url", attachment.get("url"))
              for n, entry in entries for m, attachment in enumerate(entry.get("attachments") or [])]
    notes: list[Note] = []
    if messages_from is None:
        url = (packet.get("conversation") or {}).get("url")
        if url and button_url(url) is None:
            notes.append({"part": "conversation",
                          "reason": f"conversation.url {UNLINKED}: no Open conversation button"})
        places += [("attempted_solutions", f"attempted_solutions[{n}].url", attempt.get("url"))
                   for n, attempt in enumerate(packet.get("attempted_solutions") or [])]
        places += [("history", f"history[{n}].ticket.url", (contact.get("ticket") or {}).get("url"))
                   for n, contact in enumerate(packet.get("history") or [])]
    return [*notes, *({"part": part, "reason": f"{where} {UNLINKED}: its label is shown without it"}
                      for part, where, url in places if url and link_target(url) is None)]


def clip(mrkdwn: str, limit: int) -> str:
    """Last-resort cut of already-built mrkdwn: never inside `&…;` or `<…>`."""
    if size(mrkdwn) <= limit:
        return mrkdwn
    used, end = 0, 0
    while used + size(mrkdwn[end]) <= limit - 1:
        used += size(mrkdwn[end])
        end += 1
    cut = mrkdwn[:end]
    for opener, closer in (("<", ">"), ("&", ";")):
        if cut.rfind(opener) > cut.rfind(closer):
            cut = cut[: cut.rfind(opener)]
    return cut + ELLIPSIS


# ---- blocks -------------------------------------------------------------------------------


def mrkdwn(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    # verbatim: no auto-parsing of bare "@here" or #channel in text we did not write.
    return {"type": "mrkdwn", "text": clip(text, limit), "verbatim": True}


def header(raw: str) -> dict[str, Any]:
    # plain_text is escaped too: Slack treats & < > as control characters in every text object.
    return {"type": "header", "text": {"type": "plain_text", "text": fit(raw, HEADER_TEXT)[0], "emoji": True}}


def section(text: str, fields: Sequence[str] = (), block_id: str = "") -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": mrkdwn(text)}
    if block_id:  # the packet part it shows: lets the size guard and the receipt name it
        block["block_id"] = block_id
    if fields:
        block["fields"] = [mrkdwn(field, FIELD_TEXT) for field in fields[:MAX_FIELDS]]
    return block


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [mrkdwn(text, 2000) for text in texts[:10] if text]}


def button(label: str, url: str | None, action_id: str, value: str, style: str = "") -> dict[str, Any]:
    """A link button (`url`), or one Slack posts back to the connector when clicked (no `url`)."""
    element: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": fit(label, BUTTON_TEXT)[0]},
                               "action_id": action_id, "value": value[:BUTTON_VALUE]}
    if url:
        element["url"] = url
    if style:
        element["style"] = style
    return element


def blocks_size(blocks: Sequence[Mapping[str, Any]]) -> int:
    return size(json.dumps(list(blocks), ensure_ascii=False, separators=(",", ":")))


def sections(pieces: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Pieces (`prefix` mrkdwn, `raw` text) joined by newlines into sections of at most 3,000.

    A piece too long for one section continues in the next one, in order, nothing dropped.
    """
    blocks, current = [], ""
    for prefix, raw in pieces:
        raw = _fences_closed(continued(raw))  # a value's later lines indented: no forged rows
        prefix = clip(prefix, PREFIX_TEXT)  # labels built from packet keys: bounded, the text is not
        room = SECTION_TEXT - size(current) - (1 if current else 0)
        body = prefix + escape(raw)
        if size(body) <= room:
            current = f"{current}\n{body}" if current else body
            continue
        if current:
            blocks.append(section(current))
        chunks = split(raw, SECTION_TEXT, first=SECTION_TEXT - size(prefix))
        chunks[0] = prefix + chunks[0]
        blocks.extend(section(chunk) for chunk in chunks[:-1])
        current = chunks[-1]
    if current:
        blocks.append(section(current))
    return blocks


def of_the_thread(note: str | None) -> str | None:
    """A note shared with the ticket vendors (a repeat's `HandoffContext.news`, `another_customer`,
    the brief's "Routed to"), written of a ticket, as a reply in the first alert's thread reads it:
    "New since this thread was opened", not of a ticket Slack has none of."""
    return note.replace("this ticket", "this thread") if note else note


def fit_closed(text: str, limit: int, tail: str = "") -> tuple[str, bool]:
    """`fit`, its ``` fences closed (`_fences_closed`) before and after the cut (which may leave one
    of a pair): a customer's stray fence in one piece of the alert paired with the next piece's, and
    ran the alert's own headings into a code block (a review)."""
    whole = _fences_closed(text)
    cut, was_cut = fit(whole, limit - whole.count("```"), tail)
    return _fences_closed(cut), was_cut


def _fences_closed(raw: str) -> str:
    """A piece with an odd number of ``` fences: the last one opened a code block that ran on into
    the pieces after it in the section (the next messages, their labels shown as raw `*[09:15:40]
    Bot:*`). Its fences are broken with a zero-width space; a balanced piece (a bot's code sample)
    keeps its block."""
    return raw.replace("```", "``\u200b`") if raw.count("```") % 2 else raw


def pack(blocks: Sequence[dict[str, Any]], label: str) -> list[Message]:
    """Blocks spread over as few messages as fit our limits, each with its own fallback text."""
    groups: list[list[dict[str, Any]]] = [[]]
    for block in blocks:
        if groups[-1] and (len(groups[-1]) >= SAFE_BLOCKS or blocks_size([*groups[-1], block]) > SAFE_AGGREGATE):
            groups.append([])
        groups[-1].append(block)
    total = len(groups)
    return [{"text": fit(f"{label} ({n} of {total})" if total > 1 else label, FALLBACK_TEXT)[0], "blocks": group}
            for n, group in enumerate(groups, 1) if group]


# ---- the alert ----------------------------------------------------------------------------


def urgency_of(packet: Mapping[str, Any], assignment: Mapping[str, Any]) -> str:
    return urgency_shown(packet, assignment) or "normal"


def alert(packet: Mapping[str, Any], handoff_id: str, assignment: Mapping[str, Any],
          related: Sequence[Mapping[str, Any]], mention: str = "", repeat: bool = False,
          claim: bool = False, caution: str | None = None, since: str | None = None,
          kept_team: str | None = None, again: str = "Handed off again",
          held: str | None = None) -> tuple[Message, list[Note]]:
    """The one message agents triage from, and notes on what it had to shorten (for the receipt).
    `repeat`: a reply in the first alert's thread, titled `again`.

    `claim`: a "Claim" button (`CLAIM_ACTION`, value the handoff id) that Slack posts to
    `/webhooks/slack` — the agent who clicks it first takes the handoff. `held` (`held_notice`): an
    agent has the conversation already; the line saying so stands where the button would."""
    notes: list[Note] = []

    def short(part: str, raw: Any, limit: int, lines: Callable[[Any], str] = continued) -> str:
        """`raw` within `limit`, its later lines indented (`continued`): an escalation detail ending
        "\n*Collected data:*" read as a heading of the alert, a contact's summary as another contact."""
        text, cut = fit_closed(lines(raw), limit, " _(in full in the thread)_")
        if cut:
            notes.append({"part": part, "reason": f"shortened in the alert; {IN_FULL_ON_THE_TICKET}"})
        return text

    def quote(part: str, raw: Any, limit: int) -> str:
        """`raw` as a quote of at most `limit`, its `>` markers counted: a list pasted one item a
        line nearly doubled past its limit, and the section's end (the bot's summary) was cut unsaid."""
        raw = newlines(str(raw))
        breaks = raw.count("\n")
        return short(part, raw, max(limit - breaks, limit // 2), str).replace("\n", "\n>")

    customer, escalation = packet.get("customer") or {}, packet.get("escalation") or {}
    intent, sentiment = packet.get("intent") or {}, packet.get("sentiment") or {}
    conversation = packet.get("conversation") or {}
    urgency = urgency_of(packet, assignment)
    emoji, label = URGENCY.get(urgency, ("🔵", urgency.title()))
    subject = subject_for(packet)
    who = flat(called(customer, "Customer"))  # a name on one line: its later lines forged rows
    title = f"{emoji} {again if repeat else label}: {subject}"
    blocks: list[dict[str, Any]] = [header(title)]
    if mention:
        blocks.append(section(f"{mention} {escape(label.lower())} handoff"))
    if since:  # under the title: what a repeat brings that the alert above did not (`HandoffContext.news`)
        blocks.append(section(escape(since), block_id="since"))
    if caution:  # a reply for another customer than the alert's (`another_customer`)
        blocks.append(section(f"⚠️ {escape(caution)}", block_id="caution"))

    known = [value for _, value in identity_of(customer, ("email", "phone", "id", "account_id"))]
    # Without a name the first of them is the customer's line already, not repeated under it.
    identity = " · ".join(known if name_of(customer) else known[1:])
    segment = f" · _{short('customer', customer['segment'], 100)}_" if customer.get("segment") else ""
    identity = f"\n{short('customer', identity, 400)}" if identity else ""
    blocks.append(section(f"*Customer:* {short('customer', who, 200)}{segment}{identity}", block_id="customer"))

    why = f"*Why:* {escape(REASONS.get(escalation.get('reason', ''), escalation.get('reason', '')))}"
    if escalation.get("detail"):
        why += f" — {short('escalation', escalation['detail'], 1200)}"
    if escalation.get("keywords"):
        why += f"\n*Trigger words:* {short('escalation', ', '.join(map(str, escalation['keywords'])), 300)}"
    for heading, said in (("Repeat contact", repeat_contact(packet)), ("Bot loop", bot_loop(packet))):
        if said:
            why += f"\n*{heading}:* {short('escalation', said, 400)}"
    fields = []
    if sentiment:
        fields.append(f"*Sentiment*\n{fit_closed(continued(_mood(sentiment)), 200)[0]}")
    if intent.get("name") or is_number(intent.get("confidence")):
        fields.append(f"*Intent*\n{short('intent', _intent(intent), 200)}")
    channel = " · ".join(str(v) for v in (conversation.get("channel"), conversation.get("language")) if v)
    if channel:  # "*Channel* en" when only the language was known: it names what it holds
        # Its own name: `label` is the urgency's, which the notification's text says further down.
        heading = "Channel" if conversation.get("channel") else "Language"
        fields.append(f"*{heading}*\n{short('conversation', channel, 200)}")
    # As the brief says it, with the rule that sent it there; of the thread a repeat replies in.
    team = of_the_thread(routed_to(assignment, kept_team))
    if team:
        fields.append(f"*Routed to*\n{fit_closed(continued(team), 200)[0]}")  # a department hint's lines
    if closed := out_of_hours(assignment):
        fields.append(f"*Out of hours*\n{closed}")
    if told := message_for_customer(packet, assignment, kept_team):
        fields.append(f"*Message for the customer*\n{fit_closed(continued(told), 600)[0]}")
    # The alert's times are UTC: "call me after 8am" and "tomorrow" were the customer's, and only
    # the thread (and Zendesk's, Salesforce's brief) said which clock they read. Labelled as what it
    # is (the offset the times came with: a bot server's zone writes them so), not the customer's clock.
    if clock_there := local_time(packet):
        fields.append(f"*{OFFSET_LABEL.capitalize()}*\n{short('customer', clock_there, 200)}")
    blocks.append(section(why, fields, block_id="escalation"))

    # The line the ticket's subject takes (`brief.first_customer_line`): "hi" said nothing, and the
    # order number in the next message was missing from the one message people triage from.
    # (`brief.first_customer_line` is the one rule for it, the customer message's too.)
    stated = said_text(intent.get("stated_problem"))
    words = stated or first_customer_line(packet)
    summary = said_text(intent.get("summary"))
    if words or summary:
        # Every line quoted: after the first, a line typed as "*Bot's summary:* …" read as the alert's own.
        # A cut is the part's the words came from: one of the transcript's was told as `intent` dropped,
        # to a bot that sent no intent (a bot developer's review).
        part = "intent" if stated else "transcript"
        text = f"*In the customer's words:*\n>{quote(part, words, 1200)}" if words else ""
        latest = last_customer_entry(packet)
        if latest is not None and latest["text"] != words:  # where the conversation got to: the thread is below
            quoted = quote("transcript", latest["text"], 600)
            when = clock(latest.get("at"))  # a moment: messages sent after the handoff go to the thread
            text += f"\n*Latest from them{f' ({when})' if when else ''}:*\n>{quoted}"
        if summary:
            text += f"\n*Bot's summary:* {short('intent', summary, 600)}"
        blocks.append(section(text.strip(), block_id="intent"))

    # A value the bot sent empty (null, "", []) is no field: it was asked for, not collected.
    collected, not_collected = collected_of(packet)
    if collected or not_collected:
        shown = [f"*{fit_closed(flat(k), 100)[0]}*\n{short('collected_data', scalar(v), 150)}"
                 for k, v in collected[:MAX_FIELDS]]
        heading = "*Collected data*"
        if len(collected) > MAX_FIELDS:
            heading += f" — {MAX_FIELDS} of {len(collected)} shown; all in the thread"
            notes.append({"part": "collected_data",
                          "reason": f"{MAX_FIELDS} of {len(collected)} fields shown in the alert; all in the thread"})
        if not_collected:
            heading += f"\n_Not collected (sent empty):_ {short('collected_data', ', '.join(not_collected), 300)}"
        blocks.append(section(heading, shown, block_id="collected_data"))

    attempts = packet.get("attempted_solutions") or []
    if attempts:
        named_by = [attempt_title(a, 150) for a in attempts[:5]]  # a title, else the detail that says what it was
        titles = [_fences_closed(title) for title, _ in named_by]
        # A link's label takes no marker: said in the receipt (as a detail cut to name the attempt).
        if any(fit(title, 150)[1] or (key == "detail" and title.endswith(ELLIPSIS)) for title, key in named_by):
            notes.append({"part": "attempted_solutions", "reason": f"shortened in the alert; {IN_FULL_ON_THE_TICKET}"})
        lines = [f"• {link(a.get('url'), title, 150, 500)} — "
                 f"{escape(OUTCOMES.get(a.get('outcome', 'unknown'), a.get('outcome')))}"
                 for a, title in zip(attempts[:5], titles, strict=True)]
        listed, shown = _listed("*What the bot tried:*", lines, len(attempts))
        if shown < len(attempts):
            notes.append({"part": "attempted_solutions",
                          "reason": f"{shown} of {len(attempts)} shown in the alert; all in the thread"})
        blocks.append(section(listed, block_id="attempted_solutions"))

    history = packet.get("history") or []
    if history:
        lines = [f"• {escape(_day(h.get('at')))} {escape(flat(h.get('channel') or ''))} — "
                 f"{short('history', h.get('summary') or '', 150)} {_ticket_link(h.get('ticket') or {}, 500)}".rstrip()
                 for h in (history[i] for i in most_recent(history, 3))]
        listed, shown = _listed("*Earlier contacts:*", lines, len(history))
        if shown < len(history):
            notes.append({"part": "history", "reason": f"{shown} of {len(history)} earlier contacts shown in the "
                                                       "alert; all in the thread"})
        blocks.append(section(listed, block_id="history"))

    if tickets := related_section(related):
        blocks.append(tickets)

    if held:  # as a claimed alert says who took it (`claimed`): the same line, where its button was
        blocks.append({**context(held), "block_id": HELD_BLOCK})
    url = button_url(conversation.get("url"))
    # Beside a holder's line too: whoever holds the conversation holds it as routing's choice does, and
    # the first other agent to click takes it over — with Slack alone no event ever ends a hold, and a
    # customer back months later, urgent, waited unseen on a claimer long gone (a review).
    actions = [button("Claim", None, CLAIM_ACTION, handoff_id, style="primary")] if claim else []
    if url:
        actions.append(button("Open conversation", url, "handoff_open_conversation", handoff_id))
    if actions:
        blocks.append({"type": "actions", "elements": actions})
    bot = (packet.get("bot") or {}).get("name") or (packet.get("bot") or {}).get("id") or ""
    count = len(packet.get("transcript") or [])
    follows = (packet.get("follow_up") or {}).get("handoff_id")  # a batch's alert names its handoff (`named`)
    named_as = f"Messages `{escape(handoff_id)}` of handoff `{escape(str(follows))}`" if follows else \
        f"Handoff `{escape(handoff_id)}`"
    blocks.append(context(f"{named_as} · conversation "
                          f"`{short('conversation', conversation.get('id', ''), 100)}` · {short('bot', bot, 80)} · "
                          f"{count} message{'s' if count != 1 else ''} in the thread"))

    # Belt and braces: if the parts still add up past our margin (long URLs, many fields), give up
    # the least urgent blocks, then halve the longest texts — never send what Slack would refuse.
    # What is given up is said in the alert itself, not only in the receipt no agent reads: a list
    # ending in "• …" (its "…and 3 more" line cut away) or no earlier contacts at all read as all there was.
    def left_out_line(names: Sequence[str]) -> dict[str, Any]:
        return section(f"_Left out of this alert (too long): {', '.join(names)} — all in the thread._",
                       block_id="left_out")

    left_out: list[str] = []
    room = 0  # once a list goes, the line saying so must fit too: counted before the next is weighed
    for part in ("history", "attempted_solutions", "collected_data"):
        if blocks_size(blocks) + room > SAFE_AGGREGATE and any(b.get("block_id") == part for b in blocks):
            blocks = [b for b in blocks if b.get("block_id") != part]
            left_out.append(_LEFT_OUT[part])
            notes.append({"part": part, "reason": f"left out of the alert (size); {IN_FULL_ON_THE_TICKET}"})
            room = blocks_size([left_out_line(list(_LEFT_OUT.values()))])  # its longest wording
    if left_out:  # above the context line, the alert's last
        blocks.insert(len(blocks) - 1, left_out_line(left_out))
    while blocks_size(blocks) > SAFE_AGGREGATE:
        longest = max((b for b in blocks if b["type"] == "section"), key=lambda b: size(b["text"]["text"]))
        text = longest["text"]["text"].removesuffix(CUT_FOR_SIZE)  # said once, however often it is halved
        if size(text) < 200:
            break
        longest["text"]["text"] = clip(text, size(text) // 2 - size(CUT_FOR_SIZE)) + CUT_FOR_SIZE
        notes.append({"part": longest.get("block_id") or "alert",
                      "reason": f"cut in the alert (size); {IN_FULL_ON_THE_TICKET}"})
    fallback = f"{emoji} {again if repeat else label + ' handoff'}: {subject} — {who}"
    text = f"{mention} {fit(fallback, FALLBACK_TEXT)[0]}" if mention else fit(fallback, FALLBACK_TEXT)[0]
    reasons: dict[str, list[str]] = {}  # one note per part, its reasons in order, each once
    for note in notes:
        seen = reasons.setdefault(note["part"], [])
        if note["reason"] not in seen:
            seen.append(note["reason"])
    return {"text": text, "blocks": blocks}, [{"part": p, "reason": "; ".join(r)} for p, r in reasons.items()]


def _listed(heading: str, lines: Sequence[str], total: int) -> tuple[str, int]:
    """A section's text: `heading`, as many of `lines` as fit a section, and a line counting the
    rest of `total` — said in the alert, not only in the receipt no agent reads. Long links made the
    attempts' section outgrow 3,000 and its cut ended in "• …", its "…and 15 more" line cut away;
    150 earlier contacts showed 3 and said nothing of the others. Returns the text and how many it shows."""
    kept: list[str] = []

    def text(shown: list[str]) -> str:
        rest = total - len(shown)
        return "\n".join([heading, *shown, *([f"_…and {rest} more in the thread_"] if rest else [])])

    for line in lines:
        if size(text([*kept, line])) > SECTION_TEXT:
            break
        kept.append(line)
    if lines and not kept:  # a first line too long alone: what fits of it (`clip`), not none
        kept = [clip(lines[0], SECTION_TEXT - size(text([""])))]
    return text(kept), len(kept)


_LEFT_OUT = {"history": "earlier contacts", "attempted_solutions": "what the bot tried",
             "collected_data": "collected data"}
CUT_FOR_SIZE = "\n_(cut here: the alert was too long — the rest is in the thread)_"


def follow_up(packet: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> Message:
    """The reply that brings a waiting handoff's thread what was said since: one line saying so, in
    the words of the agent's note (`while_waiting.announced`: the customer named only for their own
    messages); the messages follow in the thread (`transcript` of them)."""
    who = flat(called(packet.get("customer") or {}, "The customer"))  # a name's lines: no message of their own
    taken = bool((packet.get("follow_up") or {}).get("taken"))
    return {"text": fit(f"💬 {announced(messages, who, taken)}", FALLBACK_TEXT)[0],
            "blocks": [section(f"💬 {announced(messages, fit(who, 200)[0], taken)}:")]}


def _intent(intent: Mapping[str, Any]) -> str:
    """The intent's name and, when the bot gave one, its confidence: `billing.refund (82%)`; a
    confidence without a name is said too: `(no name) (82%)`."""
    confidence = f" ({intent['confidence']:.0%})" if is_number(intent.get("confidence")) else ""
    return f"{intent.get('name') or '(no name)'}{confidence}"


def _ticket_link(ticket: Mapping[str, Any], longest: int = 2000, limit: int = 120) -> str:
    if not ticket.get("id") and not ticket.get("url"):
        return ""
    label = " ".join(str(v) for v in (str(ticket.get("system") or "").title(), ticket.get("id")) if v)
    return link(ticket.get("url"), label or "ticket", limit, longest)


# ---- the thread ---------------------------------------------------------------------------


def _mood(sentiment: Mapping[str, Any]) -> str:
    score = signed_score(sentiment.get("score")) or ""
    trend = f", {TRENDS.get(sentiment.get('trend', ''), sentiment.get('trend'))}" if sentiment.get("trend") else ""
    # A score without a label is the mood (it may have made the priority): "— (-0.95)" hid it.
    if sentiment.get("label"):
        mood = f"{sentiment['label']} ({score})" if score else str(sentiment["label"])
    else:
        mood = f"{score} (no label)" if score else "unknown"
    return mood + trend


def details(packet: Mapping[str, Any], handoff_id: str) -> list[Message]:
    """Everything known, unshortened: what the alert had to cut is always here."""
    customer, escalation = packet.get("customer") or {}, packet.get("escalation") or {}
    intent, routing = packet.get("intent") or {}, packet.get("routing") or {}
    pieces: list[tuple[str, str]] = [("*Everything the bot passed on*", "")]
    who = [f"{k}: {value}" for k, value in identity_of(customer, ("name", "email", "phone", "id", "account_id",
                                                                  "segment"))]
    pieces.append(("*Customer:* ", " · ".join(who)))
    if clock_there := local_time(packet):  # the thread's times are UTC: the offset they were sent with
        pieces.append((f"• {OFFSET_LABEL}: ", clock_there))
    # The customer's attributes under the customer: after the intent line they read as its data.
    pieces += [(f"• {escape(flat(k))}: ", scalar(v)) for k, v in (customer.get("attributes") or {}).items()
               if holds_something(v)]  # "ltv: —" told nothing
    # What the bot sent beyond the contract, each with the part it came in (`brief.also_sent`).
    pieces += [(f"• {escape(flat(k))}: ", v) for k, v in also_sent(packet, "customer")]
    # What the alert's fields, context line and buttons shorten or carry (the mood, the conversation
    # and its link, the bot, the intent): here too, whole — a bot's `vendor_extra.slack.blocks`
    # replaces the alert, and the sentiment and the conversation's link then reached no agent.
    if packet.get("sentiment"):
        pieces.append(("*Sentiment:* ", _mood(packet["sentiment"])))
    pieces += [(f"• {escape(flat(k))}: ", v) for k, v in also_sent(packet, "sentiment")]
    conversation, bot = packet.get("conversation") or {}, packet.get("bot") or {}
    said = [str(v) for v in (conversation.get("id"), conversation.get("channel"), conversation.get("language")) if v]
    by = " ".join(filter(None, (str(bot.get("name") or bot.get("id") or ""),
                                f"({bot['platform']})" if bot.get("platform") else "")))
    pieces.append(("*Conversation:* ", " · ".join([*said, f"bot: {by}"])))
    if conversation.get("url") and link_target(conversation["url"]) is not None:
        pieces.append(("• " + link(conversation["url"], "open the conversation", WHOLE_LABEL), ""))
    elif conversation.get("url"):  # an address no link can carry (ftp, too long once escaped): as text
        pieces.append(("• conversation address: ", str(conversation["url"])))
    pieces += [(f"• {escape(flat(k))}: ", v) for k, v in also_sent(packet, "conversation", "bot")]
    if intent.get("name") or is_number(intent.get("confidence")):
        pieces.append(("*Intent:* ", _intent(intent)))
    pieces += [(f"• {escape(flat(k))}: ", v) for k, v in also_sent(packet, "intent")]
    reason = REASONS.get(escalation.get("reason", ""), escalation.get("reason", ""))
    pieces.append(("*Why:* ", " — ".join(filter(None, (reason, escalation.get("detail"))))))
    if escalation.get("keywords"):  # the alert shortens them to 300 characters
        pieces.append(("*Trigger words:* ", ", ".join(map(str, escalation["keywords"]))))
    if escalation.get("urgency"):  # the bot's word; the header shows routing's priority
        pieces.append(("*Urgency, as the bot said:* ", str(escalation["urgency"])))
    pieces += [(f"• {escape(flat(k))}: ", v) for k, v in also_sent(packet, "escalation")]
    for key, title in (("stated_problem", "In the customer's words"), ("summary", "Bot's summary")):
        if said_text(intent.get(key)):
            pieces.append((f"*{title}:* ", intent[key]))
    collected, not_collected = collected_of(packet)
    if collected or not_collected:
        pieces.append(("*Collected data:*", ""))
        pieces += [(f"• *{escape(flat(k))}:* ", scalar(v)) for k, v in collected]
        if not_collected:
            pieces.append(("• _Not collected (sent empty):_ ", ", ".join(not_collected)))
    if packet.get("attempted_solutions"):
        pieces.append(("*What the bot tried:*", ""))
        for a in packet["attempted_solutions"]:
            said = OUTCOMES.get(a.get("outcome", "unknown"), a.get("outcome"))
            name, named_by = attempt_title(a, WHOLE_LABEL)
            if named_by == "detail":
                # Named by its detail, as in the alert, whole ("(untitled) — did not help. Sent the…"
                # read as an attempt nobody named); its link, if any, on a line of its own.
                pieces.append(("• ", f"{a['detail']} — {said}"))
                if a.get("url"):
                    pieces.append((f"    {link(a.get('url'), 'open the link', WHOLE_LABEL)}", ""))
            else:
                outcome, title = escape(said), link(a.get("url"), name, WHOLE_LABEL)  # a blank title is no label
                if named_by == "title" and a.get("url") and fit(flat(name), WHOLE_LABEL)[0] not in title:
                    # A long signed address left the title's label no room (cut, while the receipt says
                    # "in full in the thread"): the title whole, the address on a line of its own.
                    title = f"{escape(flat(name))}\n    {link(a.get('url'), 'open the link', WHOLE_LABEL)}"
                pieces.append((f"• {title} — {outcome}" + (". " if a.get("detail") else ""), a.get("detail") or ""))
            pieces += [(f"    {escape(flat(key))}: ", value) for key, value in more_of("attempted_solutions", a)]
    if packet.get("history"):
        pieces.append(("*Earlier contacts:*", ""))
        for h in packet["history"]:
            ticket = _ticket_link(h.get("ticket") or {}, limit=WHOLE_LABEL)
            pieces.append((f"• {escape(_day(h.get('at')))} {escape(flat(h.get('channel') or ''))} {ticket} — ",
                           " · ".join(filter(None, (h.get("summary"), h.get("agent"))))))
            pieces += [(f"    {escape(flat(key))}: ", value) for key, value in more_of("history", h)]
    hints = [f"{k}: {scalar(v)}" for k, v in routing.items() if k != "preferred_agent" and holds_something(v)]
    if preferred := preferred_agent(routing):  # as the brief names them, not a dict's repr
        hints.append(f"preferred agent: {preferred}")
    if hints:
        pieces.append(("*Routing hints:* ", " · ".join(hints)))
    if metadata := [f"{k}: {scalar(v)}" for k, v in (packet.get("metadata") or {}).items() if holds_something(v)]:
        pieces.append(("*Metadata:* ", " · ".join(metadata)))
    return pack(sections((p, r) for p, r in pieces if p or r), f"Details of {named(handoff_id, packet)}")


def transcript(packet: Mapping[str, Any], handoff_id: str, new_after: dt.datetime | None = None) -> list[Message]:
    """The whole conversation, oldest first, over as many replies as it takes; the messages after
    `new_after` marked new, as the brief marks them (`Brief.new_after`)."""
    entries = packet.get("transcript") or []
    # In UTC, as the brief gives them: sliced as written, a bot's mixed offsets showed three
    # consecutive messages at 04:14, 09:14 and 10:15, and one day as two, out of order.
    moments = [rfc3339_utc(e.get("at")) for e in entries]
    days = {m.date() for m in moments if m is not None}
    many = "s" if len(entries) != 1 else ""
    # One day: it is said once, at the top (its times alone read as today's: a conversation escalated
    # the next morning had no date anywhere in the alert, a review); over several, each time has it.
    on = f", on {next(iter(days)):%Y-%m-%d}" if len(days) == 1 else ""
    pieces: list[tuple[str, str]] = [(f"*Transcript* — {len(entries)} message{many}{on}, times in UTC", "")]
    for entry, moment in zip(entries, moments, strict=True):
        at = str(entry.get("at", ""))
        stamp = moment.strftime("%Y-%m-%d %H:%M:%S" if len(days) > 1 else "%H:%M:%S") if moment else at
        role = ROLES.get(entry.get("role", ""), entry.get("role", ""))
        new = "[new] " if new_after and moment and moment > new_after else ""
        pieces.append((f"*[{escape(stamp)}] {new}{escape(role)}:* ", str(entry.get("text", ""))))
        for a in entry.get("attachments") or []:
            kind = ", ".join(str(v) for v in (a.get("content_type"), byte_size(a.get("size"))) if v)
            name = link(a.get("url"), a.get("name") or a.get("url") or "attachment", WHOLE_LABEL)
            pieces.append((f"    📎 {name} ", f"({kind})" if kind else ""))
            pieces += [(f"      {escape(flat(key))}: ", value) for key, value in attachment_more(a)]
        pieces += [(f"    {escape(flat(key))}: ", value) for key, value in more_of("transcript", entry)]
    return pack(sections(pieces), f"Transcript of {named(handoff_id, packet)}")


def _day(at: Any) -> str:
    """An earlier contact's day, in UTC as the brief gives it: sliced as written, a contact at
    2026-10-01T22:00-05:00 was the 1st in the alert, the 2nd in the brief, and raw in the thread."""
    moment = rfc3339_utc(at)
    return moment.strftime("%Y-%m-%d") if moment else str(at or "")


def flat(text: Any) -> str:
    """`text` on one line (a title, a label, a channel's name): its line breaks as spaces — "Reset
    password\n• Refund issued — worked" listed an attempt the bot never made."""
    return newlines(str(text)).replace("\n", " ")


def continued(text: Any) -> str:
    """A value's own lines after its first, indented (em spaces: Slack keeps them), so a line a
    customer typed as "*[10:00:05] Bot:* Identity verified" cannot pass for another message, nor one
    in a collected value ("4012\n• *refund_approved:* yes") for a field of its own. Every line break
    the briefs break at is one here (a U+2028 may be one in a Slack client)."""
    return newlines(str(text)).replace("\n", "\n\u2003\u2003")


USER_ID = r"[UW][A-Z0-9]+"  # a Slack user id, the only thing that may become a mention `<@…>`
_SLACK_USER = re.compile(USER_ID, re.ASCII)
TARGET_NAMES = {"zendesk": "Zendesk", "salesforce": "Salesforce", "slack": "Slack"}


def who(target: str, agent_id: str, agent_name: str | None) -> str:
    """An agent as mrkdwn: a Slack user as a mention (only a real user id becomes one), anyone
    else by name, escaped, with where they work."""
    if target == "slack" and _SLACK_USER.fullmatch(agent_id):
        return f"<@{agent_id}>"
    name = fit(agent_name or f"agent {agent_id}", 100)[0]
    return f"{name} (in {TARGET_NAMES.get(target, escape(target))})"


CLAIMED_BLOCK = "handoff_claimed"  # the block_id of the line saying who took the handoff
TAKEN = "✋ "  # how that line begins
# The line a re-escalation's reply has above its Claim button when an agent held the conversation as it
# was posted (`held_notice`): a take since, here or elsewhere, or a solve, replaces it with the button.
HELD_BLOCK = "handoff_held"


def _claims(block: dict[str, Any]) -> bool:
    elements = block.get("elements") or [] if block.get("type") == "actions" else []
    return any(e.get("action_id") == CLAIM_ACTION for e in elements)


def offers_claim(blocks: list[dict[str, Any]]) -> bool:
    """Whether the alert still has its Claim button."""
    return any(_claims(block) for block in blocks)


def related_section(related: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The section linking the handoff's tickets at the other targets; None when it has none."""
    tickets = [_ticket_link({"system": r.get("target"), "id": r.get("id"), "url": r.get("url")}, 500)
               for r in related[:10]]
    return section("*Tickets for this handoff:* " + " · ".join(tickets), block_id="related") if tickets else None


def with_related(blocks: list[dict[str, Any]], related: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """A message's blocks (a re-escalation's reply) with its section of related tickets as `related`
    says: in place of the one it has, else before its buttons. None when nothing changes."""
    tickets = related_section(related)
    kept = [block for block in blocks if block.get("block_id") != "related"]
    if tickets is None:
        return kept if len(kept) != len(blocks) else None
    if tickets in blocks:
        return None
    at = next((n for n, block in enumerate(kept) if block.get("type") == "actions"), len(kept))
    changed = [*kept[:at], tickets, *kept[at:]]
    return changed if len(changed) <= MAX_BLOCKS else None


def claimed(blocks: list[dict[str, Any]], notice: str, held: bool = False) -> list[dict[str, Any]] | None:
    """The alert's blocks once its handoff is taken: the Claim button gives way to who took it, so
    nobody reads the alert as still waiting. None when it has no Claim button (already edited, or
    posted without one): nothing to change. `held`: the line saying who held the conversation as a
    reply was posted (`HELD_BLOCK`) gives way too — left, the thread named an agent who no longer had
    the customer once a Zendesk agent took the handoff (a review)."""
    changed, found = [], False
    # A held reply has both, the line above its button: the line says who took it, once.
    said = held and any(block.get("block_id") == HELD_BLOCK for block in blocks)
    for block in blocks:
        if held and block.get("block_id") == HELD_BLOCK:
            found = True
            changed.append({**context(notice), "block_id": CLAIMED_BLOCK})
        elif _claims(block):
            found = True
            if not said:
                changed.append({**context(notice), "block_id": CLAIMED_BLOCK})
            rest = [e for e in block["elements"] if e.get("action_id") != CLAIM_ACTION]
            if rest:  # "Open conversation" stays
                changed.append({**block, "elements": rest})
        else:
            changed.append(block)
    return changed if found else None


def taken_notice(blocks: list[dict[str, Any]]) -> str | None:
    """What an alert already says about who took its handoff (`claimed`'s line), if anything. An
    alert claimed before that line had its `block_id` is known by the line's words (`claim_notice`)."""
    def text(block: dict[str, Any]) -> str | None:
        return next((e.get("text") for e in block.get("elements") or [] if e.get("text")), None)

    contexts = [block for block in blocks if block.get("type") == "context"]
    marked = [text(block) for block in contexts if block.get("block_id") == CLAIMED_BLOCK]
    worded = [text(block) for block in contexts if (text(block) or "").startswith(TAKEN)]
    return (marked or worded or [None])[0]


def held_notice(holder: Holder) -> str:
    """What a re-escalation's reply says above its Claim button when an agent holds the conversation
    already (`HandoffContext.held_by`): offered to the channel as new, a second agent took the
    customer without a word that the first one had them (a review). Its Claim takes it over."""
    taker = who(holder.target, holder.agent_id, holder.agent_name)
    held = escape(str(holder.handoff_id))
    return f"{TAKEN}{taker} has this conversation (handoff `{held}` is theirs); Claim to take it over."


def solved_notice(target: str) -> str:
    """What an alert says in place of its Claim button once its ticket at `target` was solved (""
    when that is not known: a solve before the alert was recorded)."""
    where = f" in {TARGET_NAMES.get(target, escape(target))}" if target else ""
    return f"✔ Solved{where}: nobody needs to take this handoff."


def claim_notice(holder: Holder, clicker: str) -> str:
    """What an agent who clicked Claim is told: who took the handoff (the channel's reply for the
    first claim; a message only the clicker sees for a later one)."""
    if holder.completed:  # its ticket was solved: a claim now would tell the bot `assigned` after `completed`
        return "This handoff was completed already; nothing changed."
    taker = who(holder.target, holder.agent_id, holder.agent_name)
    if holder.first:
        return f"{TAKEN}{taker} took this handoff."
    if holder.target == "slack" and holder.agent_id == clicker:
        return "You took this handoff already."
    return f"{taker} took this handoff already; nothing changed."
