"""What can go wrong when delivering to a vendor, in the project's own terms.

Each adapter catches its client library's exceptions at its edge and raises one of these
`from err`. `decide()` is the one place that turns an error into retry / give up.
Configuration problems are `connector.errors.ConfigError`, outside this tree: never retried.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

# How each adapter's messages for a failure on the way to its vendor begin (connect, TLS, proxy,
# no usable answer): what follows them is the transport library's own words, which quote host names.
# A bot reads such a message without them (`connector.answers.for_bot`); a vendor's refusal, the
# vendor's words, it reads whole. An adapter's new transport message must begin one of these ways,
# after one of the adapters' words for what had been done before it failed ("case … exists but its
# transcript is incomplete: could not reach Salesforce: …") or none — anchored: a vendor's refusal
# that says "could not connect to" somewhere is still its own words (tests/adapters/test_transport_messages.py).
TRANSPORT_FAILURE = re.compile(
    r"(?:\w+: )?(?:(?:case \S+ (?:exists but its transcript is incomplete|may hold part of this update)"
    r"|(?:alert|update of) \S+ posted, then): )?"
    r"(?:could not connect to|TLS failed with|TLS broke after|the proxy refused|Zendesk kept failing"
    r"|reading from Zendesk failed|no usable answer from|no answer from Salesforce|could not reach Salesforce"
    r"|Slack \S+: cannot reach Slack|Slack \S+: no answer)")


# What a failure's message carries of an answer that was not the vendor's JSON (a proxy's or a
# gateway's page) comes after this mark: for admins, who read `last_error` whole. A bot reads the
# message without it (`connector.answers.for_bot`): such a page is no vendor's word on the request,
# and may name internal hosts.
PAGE_MARK = " — the answer began: "


def page_of(text: Any, limit: int = 300) -> str:
    """`PAGE_MARK` and the start of a page's text on one line; "" for an empty answer."""
    words = " ".join(str(text or "").split())[:limit]
    return f"{PAGE_MARK}{words}" if words else ""


class DeliveryError(Exception):
    """Base of every vendor failure. `reply` is the vendor's answer, kept for debugging."""

    def __init__(self, message: str, *, status: int | None = None, reply: Any = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.reply = reply


class TransientError(DeliveryError):
    """Worth retrying: timeouts before sending, connection errors, 5xx, 429.

    `retry_after` (seconds) is the vendor's own word on when to come back.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = _bounded(retry_after)


# At most an hour from one answer's Retry-After, whatever it said: a proxy's `inf` crashed the
# attempt's recording (the delivery was retried for ever, never counted), and a date in year 9999
# paused the whole target for millennia. A vendor that still wants quiet says so again in an hour.
RETRY_AFTER_MAX_S = 3600.0


def _bounded(seconds: float | None) -> float | None:
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


class RateLimited(TransientError):
    """429: the whole target pauses for `retry_after`, not just this delivery."""


class OutcomeUnknown(TransientError):
    """The request left and no answer came back: the vendor may have acted.

    The next attempt must look the handoff up at the vendor before sending again. `sent_to`: where
    the request went, when that is not fixed by the handoff (Slack's channel comes from a mapping
    an admin may edit before the retry): recorded with the attempt and handed back to the lookup
    (`HandoffContext.sent_to`), so it searches where the alert may be, not where the next would go.
    """

    def __init__(self, message: str, *, sent_to: Mapping[str, Any] | None = None, made: bool = False,
                 **kwargs: Any):
        super().__init__(message, **kwargs)
        self.sent_to = dict(sent_to) if sent_to else None
        # The ticket is known to be there (the vendor acted; a later part of the delivery failed:
        # a case's comments, an alert's thread): an agent may take it while the attempts go on.
        self.made = made


class FoundOnlyByTheVendor(OutcomeUnknown):
    """After an unknown outcome, the lookup found no ticket of this handoff, while the vendor's own
    event named one (an agent took it after the delivery was given up: `outbox.revive_named` put it
    back with that ticket in its `sent_to`, `NAMED_TICKET`). Never a second ticket made beside the
    one an agent works: the outbox records the named one (`Outbox._taken_ticket`)."""


class RateLimitedAfterActing(OutcomeUnknown, RateLimited):
    """A 429 once part of the delivery is at the vendor (an alert's thread reply, a case's
    transcript comment): the next attempt looks first, and the whole target pauses all the same."""

    @classmethod
    def unknown(cls, message: str, cause: DeliveryError, *, made: bool = True, **kwargs: Any) -> OutcomeUnknown:
        """The OutcomeUnknown that `cause`, met after the vendor acted, becomes: still a rate
        limit when it was one, so other deliveries stop pressing on the limit too. `made`: the
        ticket is in the agents' queue (`OutcomeUnknown.made`) — not a solved one not reopened."""
        kind = cls if isinstance(cause, RateLimited) else OutcomeUnknown
        return kind(message, retry_after=getattr(cause, "retry_after", None), made=made, **kwargs)


class AuthError(DeliveryError):
    """The vendor refused our credentials (401/403). An operator must act; not retried."""


class RejectedError(DeliveryError):
    """The vendor refused the content (4xx validation). Retrying the same payload cannot help."""


class LookupUnreadable(RejectedError):
    """Where an earlier attempt may have made the ticket cannot be read at all (a Slack channel the
    app left, deleted, or named in a way the lookup cannot read). For that attempt's own retry, a
    refusal as any; for a later handoff of the conversation looking for it, taken for not made
    (`Adapter._ticket_to_update`) — the conversation's every later handoff failed on it."""


class TicketGone(RejectedError):
    """The conversation's ticket takes no more updates: closed for good (`closed`), or deleted.
    The base pipeline opens a new one instead — naming the old one when it was closed — so a
    customer who comes back is not lost on a ticket nobody will see again. Left unhandled, it
    fails the delivery like any refusal."""

    def __init__(self, message: str, *, ticket_id: str, closed: bool, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.ticket_id = ticket_id
        self.closed = closed


class ReplacementUnderway(TransientError):
    """Another delivery of the conversation is opening the ticket that replaces one gone
    (`TicketGone`): the outbox holds this one for it — not an attempt — and it then updates that
    ticket. Anywhere else it is a plain retry."""


Decision = Literal["retry", "fail"]


def decide(error: DeliveryError) -> Decision:
    """Retry transient failures; everything else needs a person."""
    return "retry" if isinstance(error, TransientError) else "fail"
