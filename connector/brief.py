"""The agent brief: the note an agent reads first, in plain text and HTML.

One view model (`_view`) is built from the packet and rendered by two templates in Jinja2's
sandbox (`templates/brief.txt.j2`, `brief.html.j2`); the HTML one autoescapes, so a customer's
`<script>` or `{{ }}` stays text. Order follows what an agent needs first: why, who, how they feel,
what they want, what was tried, what is known — then the whole transcript.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import FileSystemLoader, StrictUndefined, pass_eval_context, select_autoescape
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape

from .redaction import redact_text
from .schemas.packet import (
    AttachmentSchema,
    AttemptSchema,
    BotSchema,
    ConversationSchema,
    CustomerSchema,
    EscalationSchema,
    HistorySchema,
    IntentSchema,
    SentimentSchema,
    TicketRefSchema,
    TranscriptEntrySchema,
)
from .templating import Sandbox
from .text_rules import (
    identity_of,
    is_blank,
    name_of,
    rfc3339,
    rfc3339_utc,
    said_text,
    visible_controls,
    whole_end,
    without_invisible,
)
from .while_waiting import announced

TEMPLATES = Path(__file__).parent / "templates"

REASONS = {
    "customer_request": "The customer asked for a person",
    "ai_unable": "The bot could not handle the request",
    "negative_sentiment": "The customer is upset",
    "repeated_failure": "The bot's answers did not solve it",
    "keyword": "A trigger word was said",
    "data_collected": "The bot gathered what an agent needs",
    "regulatory": "Regulation requires a person",
    "other": "Other",
}
OUTCOMES = {
    "not_helpful": "did not help",
    "partially_helpful": "helped partly",
    "declined": "customer declined",
    "unknown": "outcome unknown",
}
TRENDS = {"worsening": "getting worse", "stable": "steady", "improving": "improving"}
# The contract's channels as an agent names them; any other is shown as sent.
CHANNELS = {"web_chat": "web chat", "whatsapp": "WhatsApp", "sms": "SMS", "voice": "voice (phone)", "email": "e-mail",
            "messenger": "Messenger"}
ROLES = {"customer": "Customer", "bot": "Bot", "agent": "Agent", "system": "System"}
# Parts of the packet an agent can be given (the context receipt speaks in these names).
PARTS = (
    "escalation", "customer", "conversation", "sentiment", "intent", "attempted_solutions",
    "collected_data", "history", "routing", "transcript", "attachments", "metadata",
)

# Where a summary's transcript heading says the transcript is, unless its caller says (`Brief.core_html`).
SEE_BELOW = "see below / attached"


class Brief:
    """The brief of one handoff. Each rendering is done on first use: an adapter reads one or two of
    them (Zendesk the HTML, Salesforce the text, Slack the summary and the transcript lines), and
    rendering all five on every attempt was a third of a delivery's CPU in the benchmark."""

    template = "brief"  # templates/<template>.txt.j2 and .html.j2
    # The messages a follow-up adds (transcript entries), when this is a follow-up's brief.
    follow_up: tuple[Mapping[str, Any], ...] | None = None

    def __init__(self, packet: Mapping[str, Any], handoff_id: str, assignment: Mapping[str, Any] | None = None,
                 new_after: dt.datetime | None = None, kept_team: str | None = None, new_from: int | None = None):
        self._view = _view(packet, handoff_id, assignment or {}, new_after, kept_team, new_from)
        self._packet = packet
        # The transcript's messages after this are marked new (`render_brief`); Slack, which writes
        # its own transcript, reads it here.
        self.new_after = new_after
        self.new_from = new_from  # …and those from this entry on (a batch's own: `render_brief`'s `batch_new`)
        self.kept_team = kept_team  # and its "Routed to", here
        self.subject: str = self._view["subject"]
        present = parts_present(packet)
        self.sections: tuple[str, ...] = present  # packet parts the brief carries (the receipt's vocabulary)
        self.parts_present: tuple[str, ...] = present  # packet parts the bot sent

    @cached_property
    def text(self) -> str:
        return self._render("txt", include_transcript=True)

    @property
    def repeat_contact(self) -> str | None:
        """`repeat_contact` of the packet, as the brief says it (a target's tags read it too)."""
        return self._view["repeat_contact"]

    @cached_property
    def html(self) -> str:
        return self._render("html", include_transcript=True)

    def summary_text(self, transcript_where: str) -> str:
        """The brief without the transcript, for a target that carries it apart, saying where
        (Salesforce: in the case's comments — "see below / attached" sent agents looking for a file)."""
        return self._render("txt", include_transcript=False, transcript_where=transcript_where)

    @cached_property
    def summary_html(self) -> str:
        return self._render("html", include_transcript=False)

    def summary_html_with(self, inserted: str, transcript_where: str = SEE_BELOW) -> str:
        """`summary_html` with `inserted` (HTML of ours: where the transcript went, its last
        messages) where the transcript would be — above the footer, which it followed before, as if
        added after the signature — its heading saying where the transcript is (`transcript_where`)."""
        return self._render("html", include_transcript=False, inserted=inserted, transcript_where=transcript_where)

    def core_html(self, transcript_where: str = SEE_BELOW, inserted: str = "") -> str:
        """The summary without its long lists (earlier contacts, attempts, collected data, hints):
        who, why, what they want, the urgency — for a target whose limit the summary overflows. Its
        transcript heading says where the transcript is (`transcript_where`): "see below / attached"
        over nothing below sent agents looking for a five-message transcript (a review). `inserted`
        under that heading, as `summary_html_with`'s."""
        return self._render("html", include_transcript=False, include_lists=False, transcript_where=transcript_where,
                            inserted=inserted)

    def html_recent_contacts(self, shown: int, include_transcript: bool,
                             transcript_where: str = SEE_BELOW, inserted: str = "") -> str | None:
        """The HTML brief with only the `shown` most recent earlier contacts and a line counting the
        rest, for a target whose limit a long history overflows: what was tried, what was collected
        and the transcript are worth more in the comment than the tenth old ticket. None when the
        history has no more than `shown`. Without the transcript, its heading says where it is
        (`transcript_where`), `inserted` under it (as `summary_html_with`'s)."""
        history = self._view["history"]
        if len(history) <= shown:
            return None
        kept = most_recent(self._packet.get("history") or [], shown)
        view = {**self._view, "history": [history[i] for i in kept], "history_more": len(history) - shown}
        return self._render("html", include_transcript, view=view, transcript_where=transcript_where,
                            inserted=inserted)

    def html_latest_messages(self, shown: int) -> str:
        """The last `shown` messages as HTML, under a heading saying they are the last of how many,
        for a target whose transcript goes in a file: an agent read nothing of the conversation in
        the comment without downloading it."""
        rows = self._view["transcript"]["rows"][-shown:]
        return _env.get_template("latest_messages.html.j2").render(b=self._view, rows=rows)

    def _render(self, kind: str, include_transcript: bool, include_lists: bool = True,
                transcript_where: str = SEE_BELOW, view: Mapping[str, Any] | None = None,
                inserted: str = "") -> str:
        # `inserted` is HTML this module's templates and the adapter's own notes wrote, escaped there.
        return _env.get_template(f"{self.template}.{kind}.j2").render(
            b=self._view if view is None else view, include_lists=include_lists,
            include_transcript=include_transcript, transcript_where=transcript_where,
            inserted=Markup(inserted))  # noqa: S704

    @property
    def transcript_heading(self) -> str:
        """The line that dates the transcript's lines where they go apart from the brief (Zendesk's
        attachment, Salesforce's comments): a one-day transcript's lines carry times only."""
        transcript = self._view["transcript"]
        count = transcript["count"]
        span = f", {transcript['span']}" if transcript["span"] else ""
        label = named(self._view["handoff_id"], self._packet)
        return f"Transcript of {label} — {count} message{'s' if count != 1 else ''}{span}"

    @property
    def transcript_clock(self) -> str | None:
        """What a part of the transcript posted apart from its heading says of its lines' times
        (Salesforce's later comments): "[10:05:00] Customer:" under "part 2/3" said neither the day
        nor the clock (a brief review). None where the lines carry their dates (several days)."""
        day = self._view["transcript"]["day"]
        return f"(times UTC, {day})" if day else None

    @cached_property
    def transcript_lines(self) -> tuple[str, ...]:
        """One plain-text line (or block) per message, oldest first."""
        entry = _env.get_template("transcript_entry.txt.j2")
        return tuple(entry.render(row=row).rstrip("\n") for row in self._view["transcript"]["rows"])


def _controls_named(value: Any) -> Any:
    """A value as a template writes it, its bidirectional controls named ([U+202E]). Markup (a
    filter's escaped HTML: line breaks, links) stays Markup: returned as plain text, it was escaped a
    second time, and agents read `&lt;br&gt;` in every field of a packet holding such a control."""
    if not isinstance(value, str):
        return value
    shown = visible_controls(value)  # the same object when it holds no control, as nearly every value
    if shown is value or not isinstance(value, Markup):
        return shown
    return Markup(shown)  # noqa: S704 — escaped already; a control's name adds no markup


CONTINUED = "    "  # a value's own later lines in the text brief (a transcript message's, as `indent(4)` did)


@pass_eval_context
def _finalize(eval_ctx: EvalContext, value: Any) -> Any:
    """Every value a template writes: its bidirectional controls named (`_controls_named`) and, in
    the text brief, its own later lines indented — a customer's "…charged twice.\n\nALREADY TRIED —
    don't offer these again" started a section of its own at the margin, in any free-text field."""
    value = _controls_named(value)
    if eval_ctx.autoescape or not isinstance(value, str) or _one_line(value):
        return value  # the HTML brief breaks lines itself (`line_breaks`), escaped
    return _indented(value)


def _indented(text: str) -> str:
    """`text` with its later lines indented (`CONTINUED`); a text of one line is itself."""
    first, *rest = _LINE_BREAK.sub("\n", text).rstrip("\n").split("\n")
    return "\n".join([first, *(CONTINUED + line if line else line for line in rest)])


_env = Sandbox(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    auto_reload=False,  # the templates ship with the code; a stat() per render showed in the profile
    # Every value a template writes, before escaping: a bidirectional override in a packet cannot
    # reorder what an agent reads (an order number, an amount) — it is shown by name instead.
    finalize=_finalize,
)


def _line_breaks(text: Any, continued: bool = False) -> Markup:
    """Free text for the HTML brief, escaped, its line breaks kept: in HTML a bare newline is a
    space, and a customer's numbered steps or pasted error output ran into one line in Zendesk.
    `continued`: a message's own lines are indented (as in the text brief, `indent`), so a line a
    customer typed as "[10:00:05] Bot: Identity verified" cannot pass for another message."""
    text = str(text)
    if _one_line(text) and "  " not in text:
        return escape(text)  # nearly every value: nothing to break or to keep wide
    return _broken(text, continued)


def _broken(text: str, continued: bool = False) -> Markup:
    """`_line_breaks` for a text that may hold line breaks or runs of spaces."""
    breaks = Markup("<br>\n&emsp;&emsp;") if continued else Markup("<br>\n")
    # Every line break the text brief breaks at (a lone \r, U+2028…) is one here too; a run of
    # spaces keeps its width (HTML makes it one: a pasted traceback lost its indentation).
    escaped = str(escape(_LINE_BREAK.sub("\n", text)))
    spaced = _SPACES.sub(lambda run: "&nbsp;" * (len(run.group()) - 1) + " ", escaped)
    return Markup(spaced).replace("\n", breaks)  # noqa: S704 — escaped above; only &nbsp; added


_LINE_BREAK = re.compile("\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # str.splitlines' breaks
_SPACES = re.compile(" {2,}")


def newlines(text: str) -> str:
    """`text` with every line break the briefs break at (`\r\n`, a lone `\r`, U+2028…) as `\n`."""
    return text if _one_line(text) else _LINE_BREAK.sub("\n", text)


def _one_line(text: str) -> bool:
    """Whether `text` holds no line break of any kind (most values: the check saves the rest)."""
    return "\n" not in text and _LINE_BREAK.search(text) is None


# http(s) addresses in free text; the closing punctuation of a sentence is not part of one. Only
# the characters an address is written in (`_address_end`): RFC 3986's (`%` for the rest), the `|` of
# a Slack label, and the letters, marks and digits of scripts written with spaces between words
# (`bücher.example`, `/Tiếng_Việt`, `/привет`, `/भारत`). Japanese, Chinese, Korean or Thai after an
# address, with no space (the way they are written), and a smart quote, a guillemet or a Greek
# question mark closing it, went into the link ("…/orders/5521をご覧ください。", "…/checkout”"); a path
# written in those scripts is cut there instead (a browser copies it percent-encoded).
_URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%|\u0080-\U0010ffff]+")
# Scripts written without spaces between words (`_address_end` stops at them): Thai to Myanmar and
# Khmer, Hangul jamo, CJK punctuation to ideographs, Hangul syllables, compatibility ideographs,
# full-width forms, and the ideographs' supplementary planes.
_NO_SPACES = re.compile("[\u0e00-\u109f\u1100-\u11ff\u1780-\u17ff\u2e80-\ua4cf\uac00-\ud7ff"
                        "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff]")


def _address_end(url: str) -> str:
    """`url` up to its first character no address is written in: not a letter, mark or digit (a
    quote, a guillemet, U+037E), or one of a script written without spaces (`_NO_SPACES`)."""
    for index, char in enumerate(url):
        if char >= "\x80" and (unicodedata.category(char)[0] not in "LMN" or _NO_SPACES.match(char)):
            return url[:index]
    return url
_URL_TAIL = ".,;:!?)]}"
_SLACK_LABEL = re.compile(r"\|[^<>|\n]*>")


def _with_links(text: Any, continued: bool = False) -> Markup:
    """`_line_breaks`, and an address in the text a link: Zendesk's HTML comments do not link bare
    addresses (the bot's "here is our guide: https://…" was text to copy)."""
    raw, out, last = str(text), [], 0
    # Searched on from where each address ends, not where the match did: an address with Japanese
    # after it took the next one, in the same sentence, into what was cut away.
    while (found := _URL.search(raw, last)) is not None:
        url = _address_end(found.group())
        if url.endswith("://"):  # nothing of an address after the scheme
            out.append(_line_breaks(raw[last:found.start() + len(url)], continued))
            last = found.start() + len(url)
            continue
        pipe = url.find("|")
        # Slack's `<https://…|label>`, pasted: the address, not "…|label" (one holding a | keeps it).
        if raw[found.start() - 1 : found.start()] == "<" and pipe > 0 and _SLACK_LABEL.match(raw, found.start() + pipe):
            url = url[:pipe]
        url = url.rstrip(_URL_TAIL)
        if url.count("(") > url.count(")") and raw[found.start() + len(url):].startswith(")"):
            url += ")"  # a Wikipedia-style address keeps its own closing parenthesis
        end = found.start() + len(url)
        out += [_line_breaks(raw[last:found.start()], continued),
                Markup('<a href="{0}">{0}</a>').format(url)]
        last = end
    out.append(_line_breaks(raw[last:], continued))
    return Markup("").join(out)


_env.filters["line_breaks"] = _line_breaks
_env.filters["with_links"] = _with_links


class FollowUpBrief(Brief):
    """What a follow-up adds to a ticket that holds its handoff's brief already: only the messages
    the customer sent while waiting (`follow_ups`), under a line saying so. The ticket has the rest."""

    template = "follow_up"

    def __init__(self, packet: Mapping[str, Any], handoff_id: str, assignment: Mapping[str, Any] | None = None):
        follows = packet["follow_up"]
        self.follow_up = tuple(packet["transcript"][follows["first"]:])
        super().__init__({**packet, "transcript": list(self.follow_up)}, handoff_id, assignment)
        self._view["follows"] = follows["handoff_id"]
        # The conversation's problem, as its ticket's subject says it: read from the batch alone, a
        # packet without stated_problem or summary headed the note with the batch's first line
        # ("Also my password reset link is broken") as if it were the problem (a review); read from the
        # handoff's own messages, not an earlier batch's too: the second batch's note was headed by the
        # first batch's line (a later review). A packet stored whole by an older release says `first`.
        before = {**packet, "transcript": packet["transcript"][:follows.get("handoff_ends", follows["first"])]}
        self._view["subject"] = self.subject = subject_for(before)
        self._view["taken"] = bool(follows.get("taken"))
        self._view["announced"] = announced(self.follow_up, self._view["customer_name"] or "The customer",
                                            self._view["taken"])
        self.sections = self.parts_present = tuple(
            part for part in ("transcript", "attachments") if _has({"transcript": self.follow_up}, part))


def parts_present(packet: Mapping[str, Any]) -> tuple[str, ...]:
    """The parts of the packet the bot sent, in the receipt's vocabulary (`PARTS`)."""
    return tuple(part for part in PARTS if _has(packet, part))


def render_brief(packet: Mapping[str, Any], handoff_id: str, update: bool = False,
                 assignment: Mapping[str, Any] | None = None, new_after: dt.datetime | None = None,
                 kept_team: str | None = None, batch_new: bool = False) -> Brief:
    """The brief of `handoff_id`. `update`: the ticket holds everything before this follow-up (its
    handoff and the earlier follow-ups all reached it: `Outbox._follow_up_may_go`), so a follow-up
    carries only its own messages; otherwise it carries everything its packet holds. `assignment`:
    routing's decision, whose priority is the urgency shown (the ticket's own). `new_after`: when
    the conversation's ticket last heard from us (its last message then): the transcript's later
    messages are marked new — a repeat posts the whole transcript again, and its note's "3 messages
    from the customer since…" left the agent to find them by their times. `kept_team`: the team a
    repeat's ticket stays with when routing chose another (`adapters.base.kept_team`), which its
    "Routed to" says. `batch_new`: a batch's whole brief on a ticket that never had its handoff's
    (the one the conversation's was merged into: `adapters.base.merge_target_context`) marks the
    batch's own messages new (`follow_up.first` on) — there they are all the whole transcript's news,
    and its note said which were the customer's latest only by their times."""
    follows = packet.get("follow_up")
    if update and follows:
        return FollowUpBrief(packet, handoff_id, assignment)
    new_from = follows.get("first") if batch_new and follows else None
    return Brief(packet, handoff_id, assignment, None if follows else new_after, kept_team, new_from)


def urgency_shown(packet: Mapping[str, Any], assignment: Mapping[str, Any]) -> str | None:
    """The urgency an agent is shown: routing's priority (what the ticket got), else the bot's."""
    escalation, routing = packet.get("escalation") or {}, packet.get("routing") or {}
    return assignment.get("priority") or escalation.get("urgency") or routing.get("priority")


def _has(packet: Mapping[str, Any], part: str) -> bool:
    if part == "attachments":
        return any(entry.get("attachments") for entry in packet.get("transcript", []))
    if part == "collected_data":  # its keys sent empty are shown too ("not collected")
        return bool(packet.get(part))
    # A part holding only empty values (`"routing": {"skills": []}`) shows nowhere in the brief: the
    # receipt said it was delivered.
    return holds_something(packet.get(part))


# Masked wherever the problem is said on one line — a ticket's subject, the customer message —
# whatever a target's `redact:` says: a subject travels into views, searches and notification
# e-mails, a customer message into the bot's logs; "Card 4111 1111 1111 1111 declined, password
# Tr0ub4dor&3" was both.
ONE_LINE_SECRETS = ("secret", "iban", "card", "national_id")


def subject_for(packet: Mapping[str, Any]) -> str:
    """One line an agent can triage by: the problem, in the customer's words when we have them."""
    return subject_line(problem_words(packet) or "Conversation handed off", 120)


def subject_line(text: str, limit: int) -> str:
    """`text` as a ticket's subject: one line, its secrets masked — the brief's, and an admin's mapped
    subject alike (a `subject:` template of `intent.stated_problem` sent a card number unmasked)."""
    return one_line(text, limit, masked=ONE_LINE_SECRETS)


def problem_words(packet: Mapping[str, Any], *, echoed: bool = False) -> str:
    """The problem as the packet words it (the customer's, else the bot's), unflattened; "" if none.
    The customer's line is their first that says something (`first_customer_line`), for the agent
    as for the customer. `echoed` (said back to the customer): when no line does, none — "I've
    passed on: agent." restated nothing; an agent's subject then shows the line all the same. Nor
    the bot's `intent.summary` (contract §2: what the bot understood, written for the agent — "angry
    customer, chargeback risk, low value: deprioritise" was said back to the customer; a review):
    the customer hears their own words, or the locale's `no_problem`."""
    intent = packet.get("intent") or {}
    line = first_customer_line(packet, echoed=echoed)
    stated = intent.get("stated_problem")
    said = (stated, line) if echoed else (stated, intent.get("summary"), line)
    return next((text for text in said if text and not is_blank(text)), "")


# The words of a line that says nothing but "hello", "yes", "a person, please" or "I have a
# question", in the shipped locales' languages (and a few greetings beyond them). A line made of
# nothing else — or of no word at all ("?", "!!!") — is not said back to the customer: "I've passed
# on: agent." restated nothing, and "Hi, I have a question" was the subject while the double charge
# came in the next line (a review). "Refund please" or "transfer" is a problem, and is.
_NOTHING_SAID = frozenset("""
hi hello hey hiya yo good morning afternoon evening day there agent agents human humans being person
people representative rep operator supervisor manager someone somebody anyone real live talk speak
me to a an the with please pls plz help support customer service care thanks thank you ok okay yes
no yeah yep nope can i d m could would like want need get give bot now right away immediately asap just
actual have has got ve question questions quick problem problems issue issues something some query inquiry
enquiry complaint ask about my of for
hola buenos buenas días dias tardes noches agente humano humana persona alguien por favor hablar con
un una quiero necesito ayuda sí si gracias ahora ya tengo pregunta preguntas duda consulta problema algo
bonjour salut bonsoir humain humaine personne quelqu quelqu'un svp s il vous plaît plait parler à
a conseiller conseillère je veux voudrais besoin aide oui non merci maintenant j ai question problème souci
quelque chose demande
hallo guten tag morgen abend mitarbeiter mitarbeiterin mensch menschen bitte sprechen mit einem einen einer
jemandem jemanden echten echte echter ich möchte will brauche hilfe ja nein danke jetzt sofort habe eine frage
fragen ein problem anliegen anfrage etwas
une vrai vraie
你好 您好 人工 转人工 こんにちは
""".split())
_WORD = re.compile(r"\w+")


def _says_something(line: str) -> bool:
    words = _WORD.findall(unicodedata.normalize("NFC", line).casefold())
    return any(word not in _NOTHING_SAID for word in words)


# Fewer words than this, a customer's message is most likely a greeting or a bare request for a
# person ("hi", "agent please"): the subject and the restated problem take the first longer one.
_SAYS_SOMETHING = 4
# Scripts written without spaces between words, and about how many of their characters make a word:
# counted by spaces, "注文番号A-5521の商品がまだ届きません。" was one word, as short as "こんにちは".
_UNSPACED = ((re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"), 1.5),  # Han
             (re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]"), 2.5),  # kana
             (re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]"), 5.0))  # Thai, Lao, Myanmar, Khmer


def _words(text: str) -> float:
    words = 0.0
    for script, per_word in _UNSPACED:
        text, found = script.subn(" ", text)
        words += found / per_word
    return words + len(text.split())


def first_customer_line(packet: Mapping[str, Any], *, echoed: bool = False) -> str:
    """The customer's line that words their problem, wherever it is shown (the subject, the brief's
    "They wrote", the Slack alert's header and quote, the customer message): their first message
    that says something (`_SAYS_SOMETHING` words or more, not only greetings and requests for a
    person: `_says_something`), else the longest such. "Hi there, can you help me please?" made the
    ticket's subject and the Slack header, and the refund in the next message was nowhere in the
    alert, while the customer message passed over it. When no line says something: "" if `echoed`
    (said back to the customer), else their first of four words or more, else their longest ("Can
    I talk to a person?" tells an agent more than "Conversation handed off")."""
    said = [entry["text"] for entry in packet.get("transcript", [])
            if entry.get("role") == "customer" and not is_blank(entry.get("text", ""))]
    longest = None  # the longest line that says something, should none have enough words
    for text in said:  # to the first that will do: a transcript of 2,000 lines is checked on the bot's path
        if _says_something(without_invisible(text)):
            if _words(text) >= _SAYS_SOMETHING:
                return text
            longest = text if longest is None or len(text) > len(longest) else longest
    if longest is not None or echoed:
        return longest or ""
    return next((text for text in said if _words(text) >= _SAYS_SOMETHING), max(said, key=len, default=""))


# The fields the contract names in each part the brief shows; a bot's others are kept (README: nested
# objects keep fields the contract does not list) and shown as sent (`also_sent`).
_NAMED = {part: frozenset(schema().fields) for part, schema in (
    ("customer", CustomerSchema), ("conversation", ConversationSchema), ("intent", IntentSchema),
    ("sentiment", SentimentSchema), ("escalation", EscalationSchema), ("bot", BotSchema))}
# The footer names the bot by its `name` (outside the contract, read all the same): not again among its others.
_NAMED["bot"] |= {"name"}


# The same for each entry of the lists: a message's `translation`, an earlier contact's `outcome`.
_NAMED_IN = {part: frozenset(schema().fields) for part, schema in (
    ("transcript", TranscriptEntrySchema), ("history", HistorySchema), ("attempted_solutions", AttemptSchema),
    ("attachments", AttachmentSchema), ("ticket", TicketRefSchema))}
# The templates write an earlier ticket's system, id and link; its status (an extension the
# repeat-contact line reads) goes with the bot's other keys, as `ticket.status: solved`.
_NAMED_IN["ticket"] -= {"status"}


def local_time(packet: Mapping[str, Any]) -> str | None:
    """The offset the customer's messages' times were sent with (an offset other than UTC's), and
    their times at it: the brief gives every time in UTC, and "since this morning" or "call me after
    6" could not be read. Shown as "times sent with offset" (`OFFSET_LABEL`), not as the customer's
    clock: a bot server in that zone writes its times so, wherever the customer is. Their latest
    message's offset (they may have travelled)."""
    said = [moment for entry in packet.get("transcript") or [] if entry.get("role") == "customer"
            and (moment := rfc3339(entry.get("at"))) is not None]
    offset = said[-1].utcoffset() if said else None
    if not offset:
        return None
    try:
        there = sorted(moment.astimezone(said[-1].tzinfo) for moment in said)
    except OverflowError:  # 0001-01-01T00:30Z (Go's zero time) is no date at -05:00: not a crash of every brief
        return None
    minutes = int(offset.total_seconds()) // 60
    zone = f"UTC{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    first, last = there[0], there[-1]
    same_day = first.date() == last.date()
    # Within one minute, one time: "their messages at 10:00–10:00" read as a typo.
    span = f"{first:%H:%M}" if same_day and f"{first:%H:%M}" == f"{last:%H:%M}" else \
        f"{first:%H:%M}–{last:%H:%M}" if same_day else f"{first:%Y-%m-%d %H:%M}–{last:%Y-%m-%d %H:%M}"
    return f"{zone} (their messages at {span} at that offset{f', {last:%A}' if same_day else ''})"


OFFSET_LABEL = "times sent with offset"  # what `local_time` is, as the brief and Slack label it


_LONG_AGO = dt.datetime.min.replace(tzinfo=dt.UTC)


def most_recent(history: Sequence[Mapping[str, Any]], shown: int) -> list[int]:
    """The indexes of the `shown` most recent earlier contacts (one without a time counts as the
    oldest), in the order the bot sent them: a list cut at its first few showed the oldest and hid
    the open ticket from last week."""
    def when(index: int) -> dt.datetime:
        return rfc3339_utc(history[index].get("at")) or _LONG_AGO

    return sorted(sorted(range(len(history)), key=when, reverse=True)[:shown])


def more_of(part: str, entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the bot sent in one entry of `part` beyond the contract's fields, as `key: value` — a
    translated conversation's translations reached no agent, while the receipt said nothing was dropped."""
    known = _NAMED_IN[part]
    more = [(key, scalar(value)) for key, value in entry.items() if key not in known and holds_something(value)]
    if part == "history" and isinstance(entry.get("ticket"), Mapping):  # the earlier ticket's own (its status)
        more += [(f"ticket.{key}", value) for key, value in more_of("ticket", entry["ticket"])]
    return more


def attachment_more(attachment: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An attachment's fields beyond the contract's, each whole on the attachment's own line: a
    caption's line break started a line that read as the message's, and a voice note's transcription
    cut at 500 characters lost the request at its end, in every target, the receipt saying nothing."""
    return [(key, " ".join(visible_controls(value).split())) for key, value in more_of("attachments", attachment)]


def also_sent(packet: Mapping[str, Any], *parts: str) -> list[tuple[str, str]]:
    """What the bot sent beyond the contract's fields in `parts` (all of them when none is named),
    as `part.key: value`: a customer's time zone or locale reached no agent, while the receipt said
    nothing was dropped. Each is shown with its own part (an intent's entities under what the
    customer wants, an SLA under why a person is needed), not all under the customer."""
    return [(f"{part}.{key}", scalar(value)) for part, known in _NAMED.items() if not parts or part in parts
            for key, value in (packet.get(part) or {}).items()
            if key not in known and holds_something(value)]


def preferred_agent(routing: Mapping[str, Any]) -> str | None:
    """The bot's preferred agent as an agent reads it: their e-mail or id (the contract's), with a
    name the bot sent beside them — one sent with a name alone was lost, "Routing hints:" left empty."""
    agent = routing.get("preferred_agent")
    if not isinstance(agent, Mapping):
        return None
    # Both when both are sent: the id may be the helpdesk's own, which an agent reassigns by (it was
    # left out whenever an e-mail came with it).
    email = said_text(agent.get("email"))
    agent_id = said_text(str(agent["id"])) if agent.get("id") is not None else None
    handle = f"{email}, id {agent_id}" if email and agent_id else email or agent_id
    name = said_text(agent.get("name"))
    said = f"{name} ({handle})" if name and handle else name or handle
    # The bot's other keys, as sent (`team_hint: billing`): they reached no agent, the receipt saying
    # `routing` was delivered (a review).
    others = [f"{key}: {scalar(value)}" for key, value in agent.items()
              if key not in ("email", "id", "name") and holds_something(value)]
    return "; ".join([said, *others]) if said else "; ".join(others) or None


def holds_something(value: Any) -> bool:
    """Whether a packet value holds anything: not null, not text that says nothing (`is_blank`), not
    an empty list or object, nor one of only such. `false` and `0` are values."""
    if value is None:
        return False
    if isinstance(value, str):
        return not is_blank(value)
    if isinstance(value, list | tuple):
        return any(holds_something(item) for item in value)
    if isinstance(value, Mapping):
        return any(holds_something(item) for item in value.values())
    return True


def collected_of(packet: Mapping[str, Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    """What the bot collected: (key, value) of each value that holds something, and the keys of
    those that hold nothing. A bot sends `"order_number": null` or `""` for what it asked for and
    never got: shown blank and listed under "Don't ask again for", it told the agent not to ask for
    what nobody had."""
    given, missing = [], []
    for key, value in (packet.get("collected_data") or {}).items():
        if holds_something(value):
            given.append((key, value))
        else:
            missing.append(key)
    return given, missing


def named(handoff_id: str, packet: Mapping[str, Any]) -> str:
    """How an agent finds what is delivered by its id: a handoff, or a batch of messages sent while
    one waited — with that handoff's id (`msg_…` alone was labelled a handoff, and is not one)."""
    follows = (packet.get("follow_up") or {}).get("handoff_id")
    return f"messages {handoff_id} of handoff {follows}" if follows else f"handoff {handoff_id}"


_MASK_MARGIN = 200  # characters masked past a one-line cut: more than any card or credential spans
_CUT_SECRET = 64  # the longest a secret's start can be and still match no pattern (an IBAN's 42, a key's)


def one_line(text: str, limit: int, shown: Callable[[str], str] = visible_controls,
             masked: Collection[str] = ()) -> str:
    """`text` on one line, at most `limit` characters; `shown`: what is done with the characters
    nobody sees (an agent is shown bidirectional controls by name; a customer, `without_invisible`).
    `masked`: redaction kinds masked once the text is on one line (a card across a line break or
    spaced by an invisible character is masked then) and before it is cut (a cut through a card's
    groups showed them)."""
    flat = " ".join(shown(text).split())
    if masked:
        # What is kept and a margin past it (a card or a credential across the cut is masked whole
        # first): a 20,000-character problem was masked in full for a 120-character subject.
        size = limit + _MASK_MARGIN
        while True:
            window = redact_text(flat[:size], masked)[0]
            # A card or a key cut by the window's end matches no pattern: that end must stay out of
            # what is kept. Masking a long credential before it shrinks the window and can bring it
            # into view ("… tried card 4111 1111 1…"): then a window four times the size.
            if size >= len(flat) or len(window) - _CUT_SECRET >= limit:
                break
            size *= 4
        flat = window
    if len(flat) <= limit:
        return flat
    cut = flat[: whole_end(flat, limit - 1) or limit - 1]  # not through a character (🇯🇵, क्ष, 👨‍👩‍👧)
    # At a word's end when one is near ("…Sentence num…" read as a typo); a long unbroken run
    # (a URL, a token) is cut where it stands.
    if flat[limit - 1] != " ":  # else `cut` ends on a whole word already
        space = cut.rfind(" ")
        cut = cut[:space] if space >= limit * 0.6 else cut
    return (cut.rstrip(" ,;:") or cut) + "…"


def _ticket_ref(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """An earlier contact's ticket with every key the templates read: the packet requires none of
    them (a call or chat in another tool may have a link only, or nothing), and the templates'
    StrictUndefined made a missing `id` an error — the brief failed, and with it the delivery."""
    return {"system": ticket.get("system") or "ticket", "id": ticket.get("id"), "url": ticket.get("url")}


_SCREENFUL = 6  # transcript entries an agent sees below the brief without scrolling far
# …or characters of them: six messages, one a pasted 180-line traceback, put the latest 400 lines down.
_SCREENFUL_CHARS = 2000


def _far(entries: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the transcript runs past what an agent sees below the brief without scrolling far."""
    return len(entries) > _SCREENFUL or sum(len(str(e.get("text") or "")) for e in entries) > _SCREENFUL_CHARS


REPEAT_WINDOW_DAYS = 30
_OPEN_TICKET = frozenset({"new", "open", "pending", "hold", "on-hold", "on_hold"})


def repeat_contact(packet: Mapping[str, Any]) -> str | None:
    """The customer's earlier contacts in the 30 days before this conversation, in a line at the
    top: under "Earlier contacts", below what the bot collected, an agent met "third time about
    this order" last — and an earlier ticket still open may be this one's twin."""
    started = next((rfc3339_utc(e.get("at")) for e in packet.get("transcript") or []), None) or dt.datetime.now(dt.UTC)
    recent = sorted(((when, h) for h in packet.get("history") or []
                     if (when := rfc3339_utc(h.get("at"))) is not None
                     and dt.timedelta(0) <= started - when <= dt.timedelta(days=REPEAT_WINDOW_DAYS)),
                    key=lambda pair: pair[0])
    if not recent:
        return None
    when, latest = recent[-1]
    times = _times(len(recent))
    named, still_open = _ticket_of(latest)
    about = ", ".join(part for part in (named, "still open" if still_open else "") if part)
    # An earlier one still open is named too: only the latest was, and a twin of this ticket opened
    # two days before went unmentioned when an e-mail came after it (a review).
    # Each ticket as its newest mention says (one solved since is not open).
    earlier = {name: (at, is_open) for at, entry in recent[:-1] for name, is_open in [_ticket_of(entry)] if name}
    still = [f"{name} ({at:%Y-%m-%d})" for name, (at, is_open) in earlier.items() if is_open and name != named]
    more = f" and {len(still) - _OPEN_NAMED} more" if len(still) > _OPEN_NAMED else ""  # the line stays a line
    also = f"; still open: {', '.join(still[-_OPEN_NAMED:])}{more}" if still else ""
    return (f"contacted us {times} in the {REPEAT_WINDOW_DAYS} days before this conversation (latest "
            f"{when:%Y-%m-%d}{' · ' + about if about else ''}{also})")


_OPEN_NAMED = 3  # the newest earlier tickets still open the repeat-contact line names


def _ticket_of(entry: Mapping[str, Any]) -> tuple[str, bool]:
    """An earlier contact's ticket as the line names it ("zendesk #80001", or ""), and whether it is open."""
    ticket = entry.get("ticket") if isinstance(entry.get("ticket"), Mapping) else {}
    named = f"{ticket.get('system') or 'ticket'} #{ticket['id']}" if ticket.get("id") else ""
    return named, str(ticket.get("status") or "").casefold() in _OPEN_TICKET


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def _tally(texts: Iterable[str]) -> tuple[str, int]:
    """The text said most often, as first written, and how often (compared casefolded, spaces
    collapsed); ("", 0) when there is none. Empty ones are left out: four attachment-only messages
    outnumbered a loop."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for text in texts:
        if key := " ".join(text.casefold().split()):
            counts[key] += 1
            first.setdefault(key, text)
    return next(((first[key], n) for key, n in counts.most_common(1)), ("", 0))


_LOOPED = 3  # the same bot answer this many times in one conversation: a loop the agent should know of


def bot_loop(packet: Mapping[str, Any]) -> str | None:
    """The bot repeating itself — the same answer three times, or the same article offered twice —
    in a line at the top: it is what the customer is angry about, and what the agent apologises for."""
    said = _tally(str(e.get("text") or "") for e in packet.get("transcript") or [] if e.get("role") == "bot")
    offered = _tally(str(a.get("title") or a.get("url") or "") for a in packet.get("attempted_solutions") or [])
    loops = []
    for (first, times), looped, words in ((said, _LOOPED, "gave the same answer {n} (“{it}”)"),
                                          (offered, 2, "offered “{it}” {n}")):
        if times >= looped:
            loops.append(words.format(n=_times(times), it=one_line(first, 80)))
    return "; ".join(loops) or None


def last_customer_entry(packet: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The customer's last message with words in it: where a long conversation has got to (the
    problem is stated at its start, the deadline or the anger at its end), shown near the top."""
    return next((entry for entry in reversed(packet.get("transcript") or [])
                 if entry.get("role") == "customer" and not is_blank(entry.get("text") or "")), None)


def clock(at: Any) -> str:
    """A message's time as the brief's headings write it (empty when it cannot be read)."""
    moment = rfc3339_utc(at)
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def byte_size(size: Any) -> str:
    """An attachment's size as every brief shows it (the Slack alert's too: it said 4768.4 MB for 4.7 GB)."""
    if not isinstance(size, int):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return ""


def scalar(value: Any) -> str:
    """A packet value as an agent reads it (also in Slack's details): lists joined, booleans as yes/no,
    an object as its `key: value` pairs — it read as Python's `{'arm': 'B'}`, then as JSON, quotes
    and braces (`[{"type": "order_id", "value": "88"}]`) an agent had to read through. Objects in a
    list are set apart by ";", and so are texts holding a comma (two addresses, "12 Main St,
    Springfield" and "4 Elm Rd, Shelbyville", read as four parts); one inside another by
    parentheses. Empty values are left out."""
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_inner(item)}" for key, item in value.items() if holds_something(item))
    if isinstance(value, list | tuple):
        # A list inside a list in parentheses: [["SKU1", 2], ["SKU2", 1]] read "SKU1, 2, SKU2, 1".
        shown = [f"({scalar(item)})" if isinstance(item, list | tuple) else scalar(item)
                 for item in value if holds_something(item)]
        apart = any(isinstance(item, Mapping) or (isinstance(item, str) and "," in item) for item in value)
        return ("; " if apart else ", ").join(shown)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "—" if value is None else str(value)


def _inner(value: Any) -> str:
    """A value inside an object: an object, a list of several or a list of objects in parentheses,
    so its commas are its own ({"a": [{"b": 1, "c": 2}], "d": 3} read "a: b: 1, c: 2, d: 3")."""
    shown = scalar(value)
    nested = isinstance(value, list | tuple) and (len(value) > 1 or any(isinstance(v, Mapping | list) for v in value))
    return f"({shown})" if isinstance(value, Mapping) or nested else shown


def _transcript(entries: list[Mapping[str, Any]], new_after: dt.datetime | None,
                new_from: int | None = None) -> dict[str, Any]:
    times = [rfc3339_utc(entry.get("at")) for entry in entries]
    known = [t for t in times if t]
    start, end = (min(known), max(known)) if known else (None, None)
    multi_day = bool(start and end and start.date() != end.date())
    rows = []
    for n, (entry, at) in enumerate(zip(entries, times, strict=True)):
        stamp = at.strftime("%Y-%m-%d %H:%M:%S" if multi_day else "%H:%M:%S") if at else entry.get("at", "")
        rows.append({
            "at": stamp,
            "role": ROLES.get(entry.get("role", ""), entry.get("role", "")),
            "is_customer": entry.get("role") == "customer",
            "is_new": bool(new_after and at and at > new_after) or (new_from is not None and n >= new_from),
            "text": entry.get("text", ""),
            "attachments": [
                {"name": a.get("name") or a.get("url"), "url": a.get("url"),
                 "type": a.get("content_type") or "", "size": byte_size(a.get("size")),
                 "more": attachment_more(a)}
                for a in entry.get("attachments") or []
            ],
            "more": more_of("transcript", entry),
        })
    span = ""
    if start and end and end - start < dt.timedelta(seconds=1):  # one message: a moment, not "10:00 – 10:00, 0 s"
        span = f"{start:%Y-%m-%d %H:%M} UTC"
    elif start and end and f"{start:%Y-%m-%d %H:%M}" == f"{end:%Y-%m-%d %H:%M}":  # "01:00 – 01:00 UTC, 45 s"
        span = f"{start:%Y-%m-%d %H:%M} UTC, {_duration((end - start).total_seconds())}"
    elif start and end:
        ends = f"{end:%Y-%m-%d %H:%M}" if multi_day else f"{end:%H:%M}"  # over midnight: the day it ended too
        span = f"{start:%Y-%m-%d %H:%M} – {ends} UTC, {_duration((end - start).total_seconds())}"
    return {
        "rows": rows,
        "count": len(rows),
        "customer_count": sum(1 for e in entries if e.get("role") == "customer"),
        "span": span,
        # The day of a one-day transcript, whose lines carry times only (`Brief.transcript_clock`).
        "day": f"{start:%Y-%m-%d}" if start and not multi_day else None,
    }


def routed_to(assignment: Mapping[str, Any], kept_team: str | None = None) -> str | None:
    """Where routing sent the handoff, and by which rule: Slack said it, the ticket did not, and a
    VIP's ticket looked like any other. `kept_team`: a repeat's ticket stays with the team it was
    opened for — "Routed to: escalations" under the note saying it was not moved read as if
    escalations had it."""
    where = " / ".join(str(assignment[k]) for k in ("team", "queue", "agent") if assignment.get(k))
    rule = assignment.get("rule")
    said = assignment.get("customer_words") or []
    # The words in the customer's messages that made the rule match (`routing._words_said`).
    quoted = ", ".join(f"“{word}”" for word in said)
    because = f": the customer wrote {quoted}" if said else ""
    shown = f"{where} (rule {rule}{because})" if where and rule else where or None
    return f"{shown} — not moved: this ticket stays with {kept_team}" if shown and kept_team else shown


def out_of_hours(assignment: Mapping[str, Any]) -> str | None:
    """When the team routing chose opens again, where it is closed. No target said it, and the
    agent opening the ticket on Monday did not know what the customer expected (a review). What the
    customer was told of it is `message_for_customer`'s: an admin's wording may leave the opening out."""
    if not assignment.get("out_of_hours"):
        return None
    hours = assignment.get("business_hours") or {}
    if not hours.get("next_opening"):
        return "the team is closed, and no opening is known"
    try:
        zone = ZoneInfo(str(hours.get("timezone")))
        at = dt.datetime.fromisoformat(hours["next_opening"]).astimezone(zone)
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        return f"the team is closed; it opens again at {hours['next_opening']}"
    return f"the team is closed; it opens again {at:%a %d %b %H:%M} ({zone.key})"


# The assignment's key for the customer message composed with it (`decision.decide`).
MESSAGE_FOR_CUSTOMER = "message_for_customer"


def message_for_customer(packet: Mapping[str, Any], assignment: Mapping[str, Any],
                         kept_team: str | None = None) -> str | None:
    """The message composed for the customer with routing's decision, as the bot was given it to
    show them: the wait it quoted ("about 30 minutes") or the opening it named was in no brief, and
    the agent did not know what the customer expected (a brief review). None for a handoff stored
    before it was kept, and beside `kept_team`: the customer is then told that team's wait and hours,
    worded after this brief (`decision.with_kept`), or once `kept` is stored; and for a batch of
    messages, whose answers said its handoff's message as it stood then (a review of the mend)."""
    said = assignment.get(MESSAGE_FOR_CUSTOMER)
    if kept_team is not None or isinstance(assignment.get("kept"), Mapping) or packet.get("follow_up") \
            or said_text(said) is None:
        return None
    return one_line(said, 600)


# The customer message's key for the words the bot was answered, where they were not the composed
# ones (`intake`: a delay said no wait, an agent already on the ticket).
ANSWERED = "answered_text"


def as_answered(assignment: Mapping[str, Any], customer_message: Mapping[str, Any] | None, *,
                update: bool) -> Mapping[str, Any]:
    """`assignment` with the message for the customer as the bot was answered it: the composed one,
    unless the answer said other words (kept with the message as `ANSWERED`) — a retry's brief after
    a failed first attempt quoted "about 5 minutes" where the bot had been answered no wait (a review
    of the mend). An attempt made before the answer gives the composed words, which are the answer's
    whenever that attempt makes the ticket within the sync budget (a `pending` answer only says no
    wait). Not when it was still running at the answer while another target had failed or waited out a
    pause: the answer said no wait, and that ticket quotes the wait (a limit, in README). `update`:
    none, a repeat's ticket may have an agent on it already, which its answer says instead."""
    if MESSAGE_FOR_CUSTOMER not in assignment:
        return assignment
    if update:
        return {key: value for key, value in assignment.items() if key != MESSAGE_FOR_CUSTOMER}
    answered = (customer_message or {}).get(ANSWERED)
    return {**assignment, MESSAGE_FOR_CUSTOMER: answered} if isinstance(answered, str) else assignment


def masked_message(assignment: Mapping[str, Any], kinds: Collection[str]) -> Mapping[str, Any]:
    """`assignment` with the customer message masked for a target's `redact:` kinds (the customer's
    own words are in it: a target masking e-mails showed one in clear under "Message for the customer")."""
    said = assignment.get(MESSAGE_FOR_CUSTOMER)
    if not isinstance(said, str):
        return assignment
    return {**assignment, MESSAGE_FOR_CUSTOMER: redact_text(said, kinds)[0]}


def attempt_title(attempt: Mapping[str, Any], limit: int) -> tuple[str, str]:
    """What names an attempted solution, and which of its fields that is: its title, else its detail
    on one line (cut at `limit`), else its link. Slack showed "• (untitled) — did not help" and hid
    the detail that said what it was."""
    for key in ("title", "detail", "url"):
        if (value := said_text(attempt.get(key))) is not None:
            return (value if key == "title" else one_line(value, limit)), key
    return "(untitled)", ""


def signed_score(score: Any) -> str | None:
    """A sentiment score as shown ("+0.40", "-0.95"), None when there is none. Rounded first: -0.004
    was "-0.00", a sign without a mood."""
    return f"{round(score, 2) + 0.0:+.2f}" if is_number(score) else None


def is_number(value: Any) -> bool:
    """Whether a packet value is a number (a score, a confidence): JSON's true is not one."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _view(packet: Mapping[str, Any], handoff_id: str, assignment: Mapping[str, Any],
          new_after: dt.datetime | None = None, kept_team: str | None = None,
          new_from: int | None = None) -> dict[str, Any]:
    bot = packet.get("bot") or {}
    conversation = packet.get("conversation") or {}
    customer = packet.get("customer") or {}
    escalation = packet.get("escalation") or {}
    intent = packet.get("intent") or {}
    sentiment = packet.get("sentiment") or {}
    routing = packet.get("routing") or {}
    collected, not_collected = collected_of(packet)
    # Routing's priority is the ticket's: a keyword rule that made it urgent while the bot said
    # "low" showed the agent "Urgency: low". What the bot said stays beside it when it differs.
    stated = escalation.get("urgency") or routing.get("priority")
    urgency = urgency_shown(packet, assignment)
    labels = {"email": "email", "phone": "phone", "id": "customer id", "account_id": "account"}
    identity = [(labels[key], value) for key, value in identity_of(customer, labels)]
    already_given = [label for label, _ in identity] + [key.replace("_", " ") for key, _ in collected]
    customer_name = name_of(customer) or next((value for _, value in identity), None)
    if not name_of(customer):  # the first of them heads the section: not "sam@x.net", then "email: sam@x.net"
        identity = identity[1:]
    stated_problem, summary = said_text(intent.get("stated_problem")), said_text(intent.get("summary"))
    first_line = None if stated_problem else first_customer_line(packet)  # "They wrote", when nothing else says it
    latest = last_customer_entry(packet)
    if latest is not None and first_line is not None and latest["text"] == first_line:
        latest = None  # shown already as what they wrote (and only then: a stated problem replaces that line)
    called_so = named(handoff_id, packet)
    return {
        "handoff_id": handoff_id,
        # The footer's: a batch of messages that carries the whole brief was signed "Handoff msg_…",
        # an id no bot or read knows as a handoff, its handoff's nowhere (a review).
        "named": called_so[:1].upper() + called_so[1:],
        "subject": subject_for(packet),
        "bot": bot.get("name") or bot.get("id"),
        "bot_id": bot.get("id"),
        "platform": bot.get("platform"),
        "channel": conversation.get("channel"),
        # Under the customer, not only in the footer: an agent answering a WhatsApp customer by
        # e-mail (the helpdesk's default reply) reaches nobody. Salesforce's Origin says Web for it.
        "waiting_on": CHANNELS.get(conversation.get("channel") or "", conversation.get("channel")),
        "language": conversation.get("language"),
        "local_time": local_time(packet),
        "offset_label": OFFSET_LABEL,
        "conversation_url": conversation.get("url"),
        "conversation_id": conversation.get("id"),
        "reason": REASONS.get(escalation.get("reason", ""), escalation.get("reason", "")),
        "reason_detail": escalation.get("detail"),
        "keywords": escalation.get("keywords") or [],
        "urgency": urgency,
        "stated_urgency": stated if stated and stated != urgency else None,
        "urgent": urgency in ("high", "urgent"),
        "customer_name": customer_name,
        # Above a transcript longer than a screen, or in a brief without it (Slack, Zendesk's summary).
        "latest": latest and {"text": one_line(latest["text"], 300), "at": clock(latest.get("at")),
                              "far": _far(packet.get("transcript") or [])},
        "routed": routed_to(assignment, kept_team),
        "out_of_hours": out_of_hours(assignment),
        "message_for_customer": message_for_customer(packet, assignment, kept_team),
        "repeat_contact": repeat_contact(packet),
        "bot_loop": bot_loop(packet),
        "identity": identity,
        "segment": customer.get("segment"),
        # An empty value is left out: "skills: " with nothing after it, or "ltv: —", told nothing.
        "attributes": [(k, scalar(v)) for k, v in (customer.get("attributes") or {}).items() if holds_something(v)],
        # What the bot sent beyond the contract, by the part it came in, each shown with that part.
        "also_sent": {part: also_sent(packet, part) for part in _NAMED},
        "sentiment": sentiment.get("label"),
        # The score alone is a mood too (it may have made the priority): "%+.2f", or None.
        "mood_score": signed_score(sentiment.get("score")),
        "trend": TRENDS.get(sentiment.get("trend", ""), sentiment.get("trend")),
        "worsening": sentiment.get("trend") == "worsening",
        "stated_problem": stated_problem,
        "summary": summary,
        "intent": intent.get("name"),
        "confidence": f"{intent['confidence']:.0%}" if is_number(intent.get("confidence")) else None,
        "first_words": one_line(first_line, 300) if first_line is not None else None,
        "attempts": [
            {"title": (named_by := attempt_title(a, 120))[0], "url": a.get("url"),
             # A detail that names the attempt whole is not said twice.
             "detail": None if named_by[1] == "detail" and named_by[0] == one_line(a["detail"], 10**6)
             else a.get("detail"),
             "outcome": OUTCOMES.get(a.get("outcome", "unknown"), a.get("outcome")),
             "more": more_of("attempted_solutions", a)}
            for a in packet.get("attempted_solutions") or []
        ],
        "collected": [(k, scalar(v)) for k, v in collected],
        "not_collected": [key.replace("_", " ") for key in not_collected],
        "already_given": already_given,
        "history": [
            {"at": (rfc3339_utc(h.get("at")) or dt.datetime.min).strftime("%Y-%m-%d") if h.get("at") else "",
             "channel": h.get("channel"), "summary": h.get("summary"), "agent": h.get("agent"),
             "ticket": _ticket_ref(h.get("ticket") or {}), "more": more_of("history", h)}
            for h in packet.get("history") or []
        ],
        "history_more": 0,  # earlier contacts left out of this rendering (`Brief.html_recent_contacts`)
        "routing": {k: scalar(v) for k, v in routing.items() if k != "preferred_agent" and holds_something(v)},
        "preferred_agent": preferred_agent(routing),
        "transcript": _transcript(packet.get("transcript") or [], new_after, new_from),
        "metadata": [(k, scalar(v)) for k, v in (packet.get("metadata") or {}).items() if holds_something(v)],
    }
