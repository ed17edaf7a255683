"""Zendesk's end users: the customer a ticket is for, when the bot knows them by its own id and no
e-mail (WhatsApp, SMS, voice). A ticket's `requester` object takes an e-mail or a name; anyone else
is found (Show Many Users) or made (Create Or Update User) under an external id of ours, and the
ticket names them by `requester_id`. Every rule of which user may be the customer lives here;
`adapters/zendesk.py` asks `EndUsers.with_end_user` before it makes a ticket, and `EndUsers.find`
(which makes nothing) before it looks for the customer's open ticket."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from connector import json_codec
from connector.text_rules import as_identity

from .base import Dropped, HandoffContext, _carried
from .errors import AuthError, DeliveryError, RejectedError, TransientError
from .zendesk_http import id_problem

log = logging.getLogger("adapters.zendesk")  # the adapter's logger: one place to read Zendesk's lines

Call = Callable[..., tuple[Any, Any]]  # `ZendeskAdapter._call`: (method, path, write=, …) → (reply, response)


class EndUsers:
    """The end-user calls of one adapter, through its `_call` (its session, limits and errors)."""

    def __init__(self, call: Call):
        self._call = call

    def with_end_user(self, payload: dict[str, Any], ctx: HandoffContext) -> tuple[dict[str, Any], Dropped]:
        """The ticket with `requester_id` the customer's end user, when the bot names them by its id
        and no e-mail; and what the receipt notes. A ticket's `requester` object takes no phone
        and no external_id (Zendesk's TicketObject: email, locale, name, organization_id, role,
        verified): sent there, they were dropped and every WhatsApp or SMS handoff had a new
        identity-less user, no phone and no history for the agent.

        Asked before the ticket is made, so every failure that may pass (429, 5xx, a timeout) is a
        plain retry: nothing exists yet but, at most, the end user, which the next attempt finds
        or upserts again (same external_id, same user, same ticket body for the Idempotency-Key).
        Not on updates: the ticket has its requester. A bot's own `vendor_extra.zendesk.requester`
        or `requester_id` is left as it says."""
        external_id = customer_external_id(ctx.packet)
        if external_id is None or {"requester", "requester_id"} & set(ctx.vendor_extra):
            return payload, ()
        customer = as_identity(ctx.packet.get("customer") or {})
        ticket = payload["ticket"]
        # What an earlier attempt, whose ticket was not found after a timeout, noted of the user it
        # made: this one finds that user (no upsert, nothing refused), and the note is still true.
        earlier = tuple(entry for entry in _carried(ctx) if str(entry.get("reason", "")).startswith(PHONE_REFUSED))
        user_id, left_out = self.find_or_make(external_id, str(ticket["requester"]["name"]), customer.get("phone"),
                                           earlier)
        if user_id is None:
            return payload, left_out
        ticket = {key: value for key, value in ticket.items() if key != "requester"}
        return {**payload, "ticket": {**ticket, "requester_id": user_id}}, left_out

    def find_or_make(self, external_id: str, name: str, phone: Any,
                     earlier: Dropped = ()) -> tuple[int | None, Dropped]:
        """The end user Zendesk holds under `external_id` (`_external_id`: the bot's and the
        customer's ids), else the one it makes for it; None (the ticket goes with the customer's
        name alone as its requester) when Zendesk will make none or holds someone else under that
        id, and the receipt says so.

        Looked up first (Show Many Users reads the user table; agents may): a returning customer
        keeps the name and phone agents gave their profile — the upsert overwrites them with the
        bot's — and is found by an API user that may not manage end users. Zendesk matches external
        ids case-insensitively, so the lookup answers a user held as `ABC` to `abc`: only one held
        with exactly our id, an end user not suspended, is the customer. Any other it answers (held
        in another case, an agent, a suspended user) is not written to either: Create Or Update
        User matches the same way, and would have rewritten that person's profile and given them
        this customer's ticket — agents' public replies e-mailed to a stranger. Nothing found,
        the upsert makes the user, matched by external_id, so a retry or a concurrent handoff
        cannot make a second one. It needs an admin, or an agent in a custom role allowed to manage
        end users: refused (403), or refused as a record (422), the ticket is still made.

        `earlier`: what an earlier attempt noted of the user it made (a phone refused), listed again
        when this one finds that user."""
        try:
            user_id, someone_else = self._held(external_id)
            if user_id is not None:
                return user_id, earlier
            if someone_else:
                return None, _someone_else(someone_else)
            user = {"name": name, "external_id": external_id}
            number = _e164(phone)
            if not number:
                return self._upserted(user, ())
            try:
                return self._upserted({**user, "phone": number}, ())
            except RejectedError as err:
                # Zendesk may validate numbers (E.164), and a direct line belongs to one user: the
                # customer is made without it, the brief still carries it.
                log.warning("Zendesk refused the customer's phone on their end user; made without it",
                            extra={"status": err.status})
                return self._upserted(user, ({"part": "customer", "reason": f"{PHONE_REFUSED} ({err.message[:300]}); "
                                              "the user was made without it and the brief carries it"},))
        except (RejectedError, AuthError) as err:
            if isinstance(err, AuthError) and err.status != 403:
                raise  # the credentials refused: the ticket would be too
            return None, _no_end_user(err)

    def find(self, external_id: str, timeout: float | None = None) -> int | None:
        """The id of the end user Zendesk holds under `external_id` that may be the customer (the
        rules of `find_or_make`: exactly our id, an end user, not suspended), for a look at their
        tickets; None when there is none, only someone else, or the API user may not read users
        (403, which `find_or_make` takes as no end user too: the ticket is still made). Nothing is
        made or written: a lookup must not make the customer a user. `timeout` in seconds, else the
        delivery timeout. Any other failure is raised, as the ticket search's are."""
        try:
            user_id, _ = self._held(external_id, timeout)
        except AuthError as err:
            if err.status != 403:
                raise  # the credentials refused: the search and the ticket would be too
            log.warning("Zendesk would not show the customer's end user; their open ticket is not looked for",
                        extra={"status": err.status})
            return None
        return user_id

    def _held(self, external_id: str, timeout: float | None = None) -> tuple[int | None, str | None]:
        """Who Zendesk holds under `external_id` (Show Many Users: a read of the user table, not
        the eventually consistent search): (the customer's end user's id, None); (None, why the
        user it holds is not the customer — `find_or_make` says why); (None, None) when it holds
        nobody."""
        # `_external_id` has no comma, Show Many Users' separator: the lookup asks for one id.
        reply, _ = self._call("GET", "/api/v2/users/show_many.json", write=False, timeout=timeout,
                              params={"external_ids": external_id}, expect="users")
        held = [user for user in reply["users"] if isinstance(user, Mapping)
                and str(user.get("external_id") or "").casefold() == external_id.casefold()]
        for user in held:
            if user.get("external_id") == external_id and not _not_the_customer(user) \
                    and id_problem(user.get("id")) is None:
                return int(user["id"]), None
        if held:
            return None, _not_the_customer(held[0]) or "its external id in another case"
        return None, None

    def _upserted(self, user: dict[str, Any], left_out: Dropped) -> tuple[int | None, Dropped]:
        """The end user Create Or Update User answers for `user`, unless it is not one a ticket can
        be for (made between our lookup and the upsert: an agent, a suspended user)."""
        answered = self._upsert_user(user)
        if problem := _not_the_customer(answered):
            return None, _someone_else(problem)
        return int(answered["id"]), left_out

    def _upsert_user(self, user: dict[str, Any]) -> Mapping[str, Any]:
        # Sent as a read (`write=False`): a timeout or 5xx is a plain retry — the upsert is idempotent
        # by external_id, and no ticket exists yet to look for.
        reply, _ = self._call("POST", "/api/v2/users/create_or_update.json", write=False, json={"user": user},
                              expect="user")
        user_id = reply["user"].get("id")
        if id_problem(user_id) is not None:
            raise TransientError(f"Zendesk answered the end user without a usable id (got {str(user_id)[:40]!r})")
        return reply["user"]


# Country codes whose numbers keep their leading 0 when dialled from abroad (`_e164`).
_ZERO_KEPT = re.compile(r"\+(?:39|378|379)[\s.-]*\(0\)")


def _e164(phone: Any) -> str | None:
    """A phone as Zendesk stores it when it validates numbers (E.164: + and digits): separators
    taken out of an international number; any other form sent as given, for Zendesk to judge.

    A "(0)" right after the country code is the trunk prefix dialled only from inside the country
    (+44 (0)20 7946 0000 is +442079460000): dropped. Kept, it made +4402079460000, another number.
    Where the 0 is part of the international number (Italy, San Marino, Vatican City), it stays:
    +39 (0)6 6988 3145 is +390669883145 (dropped, another number). Any other parenthesised 0
    (+44 (020) 7946 0000) is not read: sent as given."""
    if not isinstance(phone, str) or not phone.strip():
        return None
    given = phone.strip()
    if not re.fullmatch(r"\+[0-9\s().-]+", given):
        return given
    if _ZERO_KEPT.match(given):  # the 0 stays, its parentheses go
        number = given.replace("(0)", "0", 1)
    else:
        number = re.sub(r"^(\+[0-9]{1,3})[\s.-]*\(0\)", r"\1 ", given)
    if re.search(r"\(\s*0", number):
        return given
    digits = re.sub(r"[^0-9]", "", number)  # ASCII digits: a "٤" is no digit Zendesk dials
    return f"+{digits}" if digits else given


# Bot customer ids as Zendesk external ids (`_external_id`): lower-case ASCII letters, digits and
# `_ . @ + -` — what no case fold changes, without the `:` that joins the two ids or Show Many
# Users' `,`.
_FOLD_PROOF = re.compile(r"[a-z0-9_.@+-]+", re.ASCII)
READABLE_ID_MAX = 255  # Zendesk's limit for the external ids it describes one for (a channel's)
PHONE_REFUSED = "Zendesk refused the customer's phone on their end user"


def customer_external_id(packet: Mapping[str, Any]) -> str | None:
    """The external id of the customer's end user (`_external_id`) when the bot names them by its id
    and no e-mail; None when an e-mail names them (the ticket's requester is found by it), or nothing."""
    customer = packet.get("customer") or {}
    if customer.get("email") or not customer.get("id"):
        return None
    return _external_id(str((packet.get("bot") or {}).get("id") or ""), str(customer["id"]))


def _external_id(bot_id: str, customer_id: str) -> str:
    """The Zendesk external id of the bot's customer `customer_id`: `<bot id>:<customer id>`.

    Namespaced by the bot: the customer id alone is only unique within one bot, and an account's
    SSO or another integration sets external ids of its own — two bots' `cus_1`, or an SSO user
    with the id our customer has, were the same Zendesk user, their histories joined and agents'
    replies e-mailed to the wrong person. Zendesk matches external ids case-insensitively ("ian1"
    and "IAN1" are the same value, its user object says), where the bot's `AbC123` and `abc123`
    are two customers: an id that a case fold could change (upper case, any non-ASCII letter),
    one with `:` (`a:b` + `c` and `a` + `b:c` would meet) or `,`, or a long one, goes as
    `sha256-` and the hex digest of both ids — no fold changes it, it has no `:` so it never equals
    a readable one, and it is unique per bot and customer. The readable form is kept where it is
    safe: agents see `support-bot:wa_447700900123` on the profile.

    Users made before this namespace (external id the customer id alone) are not found again: a
    returning customer gets a new end user once."""
    readable = f"{bot_id}:{customer_id}"
    if _FOLD_PROOF.fullmatch(bot_id) and _FOLD_PROOF.fullmatch(customer_id) and len(readable) <= READABLE_ID_MAX:
        return readable
    return "sha256-" + hashlib.sha256(json_codec.dumps_bytes([bot_id, customer_id])).hexdigest()


def _not_the_customer(user: Mapping[str, Any]) -> str | None:
    """Why a user Zendesk holds under our external id cannot be the ticket's requester; None when it can."""
    if user.get("role") != "end-user":
        return f"it is not an end user but {'an' if user.get('role') in ('agent', 'admin') else 'a'} " \
               f"{str(user.get('role') or 'user')[:20]}"
    if user.get("suspended"):
        return "it is suspended (its tickets would be suspended too)"
    return None


def _someone_else(why: str) -> Dropped:
    """The receipt's entry for a ticket not given the user Zendesk holds under the customer's
    external id: not taken for the customer, and not updated (`EndUsers.find_or_make`)."""
    log.warning("Zendesk holds a user under the customer's external id that is not theirs; the ticket names "
                "them only", extra={"why": why})
    return ({"part": "customer", "reason": f"Zendesk holds a user under this customer's external id that may be "
             f"someone else ({why}): it was neither taken for the customer nor updated; the ticket's requester is "
             "the customer's name alone, linked to no customer id, phone or earlier tickets; the brief names them"},)


def _no_end_user(err: DeliveryError) -> Dropped:
    """The receipt's entry for a ticket whose requester is the customer's name alone: Zendesk would not
    find or make the customer's end user (no right to manage end users: 403; a refused record)."""
    log.warning("Zendesk would not find or make the customer's end user; the ticket names them only",
                extra={"status": err.status, "error": type(err).__name__})
    why = " — the API user needs to be an admin, or an agent in a custom role allowed to manage end users" \
        if err.status == 403 else ""
    return ({"part": "customer", "reason": f"Zendesk would not find or make the customer's end user "
             f"({err.message[:300]}){why}; the ticket goes with their name only as its requester (a new user, if "
             "Zendesk accepts one), linked to no customer id, phone or earlier tickets; the brief names them"},)
