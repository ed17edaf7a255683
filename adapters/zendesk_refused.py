"""A ticket field Zendesk refuses by name: the ticket made once more without it, and the receipt
naming it. A 422 whose `details` name only fields a ticket can be made without (`CAN_GO_WITHOUT`:
routing's previous agent outside the team's group, a group deleted since the mapping named it, a
requester address Zendesk will not take) cost the whole ticket, brief and transcript, for good.

Kept apart from `adapters/zendesk.py` (payloads and sending) so each file stays small; only that
module imports it, and hands it the create (`ZendeskAdapter._create`: its session, limits and
errors)."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from .base import HandoffContext, Sent, carrying, routing_field_left_out, routings_agent_at
from .errors import RejectedError

log = logging.getLogger("adapters.zendesk")  # the adapter's logger: one place to read Zendesk's lines

Create = Callable[[dict[str, Any], str], Sent]  # `ZendeskAdapter._create`: (body, Idempotency-Key) → Sent
Update = Callable[[dict[str, Any]], Any]  # the note's Update Ticket: (the body's `ticket`) → its answer

# What a 422's `details` may name (Zendesk's words) that a ticket can be made without, and the
# ticket's keys that carry it. Anything else refused (the comment, the subject) fails the delivery as
# before. A custom field's value is named only as "base" ("Custom field Plan: value is not valid", by
# its title, not its id): the ticket goes without its custom fields, all of them — a dropdown the
# mapping fills from `intent.name` failed every ticket of an intent its options lacked. A "base"
# refusal of anything else is refused again without them, and fails the delivery then.
CAN_GO_WITHOUT = {"assignee": ("assignee_id",), "group": ("group_id",), "brand": ("brand_id",),
                  "ticket_form": ("ticket_form_id",), "organization": ("organization_id",),
                  "requester": ("requester", "requester_id"), "base": ("custom_fields",)}
_LEFT_WITHOUT = {"assignee_id": " (it waits in its group's queue for anyone)",
                 "requester": " (the API user is its requester; the brief names the customer)",
                 "requester_id": " (the API user is its requester; the brief names the customer)",
                 "custom_fields": " (all of them: Zendesk names the field by its title; the brief carries the values)"}
_NAMED_ONLY = (" (its requester is the customer's name alone: a reply by e-mail does not reach them; the brief "
               "names the customer)")


def create_or_without(create: Create, body: dict[str, Any], ctx: HandoffContext, name_alone: str) -> Sent:
    """The ticket `body` (its attachment uploaded) made by `create` under the handoff's key; refused
    by name for fields it can be made without, made once more without them, and the receipt names
    each. `name_alone`: the customer's name, the requester a refused one becomes (`_without`)."""
    try:
        return create(body, ctx.idempotency_key)
    except RejectedError as err:
        refused = _refused_fields(err, body["ticket"])
        if not refused:
            raise
        why = err.message
    without = {**body, "ticket": _without(body["ticket"], refused, name_alone)}
    named = routings_agent_at(ctx.assignment, "zendesk")
    if "assignee_id" in refused and (agent := named["label"] if named else ctx.assignment.get("agent")):
        without["ticket"]["comment"] = _unassigned(without["ticket"]["comment"], str(agent), why)
    named = "requester" in without["ticket"]  # a refused requester left as the customer's name alone
    left_out = tuple(_field_left_out(name, why, ctx, named) for name in refused)
    # The vendor's words stay out of the log (they echo the values: an address); the receipt has them.
    log.warning("Zendesk refused fields of the ticket; making it without them", extra={"fields": list(refused)})
    # Its own key: Zendesk refuses a key it saw with another body. A timeout here is found by the
    # handoff's external_id, as any create's.
    key = f"{ctx.idempotency_key}:without:{','.join(refused)}"
    try:
        with carrying(left_out):
            sent = create(without, key)
    except RejectedError as err:
        if not named or _refused_fields(err, without["ticket"]) != ("requester",):
            raise
        # The customer's name alone refused too: a name-only requester is always a new user, and
        # the account may let no one make users. The ticket, brief and transcript, still goes —
        # the API user its requester — rather than failing for good.
        left_out = (*(entry for name, entry in zip(refused, left_out, strict=True)
                      if not name.startswith("requester")), _no_requester(why, err.message))
        log.warning("Zendesk refused the customer's name alone as the requester; making the ticket without one")
        with carrying(left_out):
            sent = create({**without, "ticket": {k: v for k, v in without["ticket"].items()
                                                 if k != "requester"}}, f"{key}:no-requester")
    return replace(sent, dropped=(*sent.dropped, *left_out))


def update_or_without(update: Update, ticket: dict[str, Any],
                      ctx: HandoffContext) -> tuple[Any, tuple[dict[str, str], ...]]:
    """A repeat's note (`ticket`: the comment, and what `vendor_extra.zendesk` adds to it) put by
    `update`; refused by name for fields it can go without (an `assignee_id` the bot sends with every
    handoff, its agent since moved to another group or deactivated), put once more without them.
    Returns the answer and the receipt's entries naming each: the whole note, the repeat's brief
    and transcript, was lost for good. Nothing of a refused update is applied, so it is safe to send
    again (the note has no Idempotency-Key)."""
    try:
        return update(ticket), ()
    except RejectedError as err:
        refused = _refused_fields(err, ticket)
        if not refused:
            raise
        why = err.message
    left_out = tuple(_field_left_out(name, why, ctx, made="the note was added without it") for name in refused)
    log.warning("Zendesk refused fields of the update; adding the note without them", extra={"fields": list(refused)})
    with carrying(left_out):
        return update({key: value for key, value in ticket.items() if key not in refused}), left_out


def _without(ticket: Mapping[str, Any], refused: tuple[str, ...], name_alone: str) -> dict[str, Any]:
    """The ticket without the fields Zendesk refused. A refused requester (an address its rules will
    not take, an end user suspended) becomes the customer's name alone (`name_alone`) rather than
    nobody: without one, the API user was the requester — agents' replies went to the integration's
    mailbox, and the customer's ticket was found by no lookup of theirs. One that was a name alone
    goes."""
    kept = {key: value for key, value in ticket.items() if key not in refused}
    was = ticket.get("requester")
    if {"requester", "requester_id"} & set(refused) and not (isinstance(was, Mapping) and set(was) == {"name"}):
        kept["requester"] = {"name": name_alone}
    return kept


def _unassigned(comment: Mapping[str, Any], agent: str, why: str) -> dict[str, Any]:
    """The ticket's comment opening with a note that routing's agent was refused: its brief's "Routed
    to: … / Sam Okafor" told the agent who opened the unassigned ticket that Sam had it. Short, it
    fits the room `COMMENT_LIMIT_BYTES` leaves under Zendesk's own limit."""
    note = (f"Not assigned to {agent[:100]}: Zendesk refused routing's assignee ({why[:200]}). This ticket waits in "
            f"its group's queue for anyone; the brief below names the agent routing chose.")
    return {**comment, "html_body": f"<p><em>{html.escape(note)}</em></p>{comment.get('html_body', '')}"}


def _refused_fields(err: RejectedError, ticket: Mapping[str, Any]) -> tuple[str, ...]:
    """The ticket's keys Zendesk's 422 refused that it can be made without; none when it refused
    anything else too (sent without some, it would be refused again)."""
    details = err.reply.get("details") if err.status == 422 and isinstance(err.reply, Mapping) else None
    if not isinstance(details, Mapping) or not details or any(name not in CAN_GO_WITHOUT for name in details):
        return ()
    if "base" in details and "custom_fields" not in ticket:  # the ticket itself: nothing to leave out
        return ()
    return tuple(key for name in details for key in CAN_GO_WITHOUT[name] if key in ticket)


def _field_left_out(key: str, why: str, ctx: HandoffContext, named: bool = False, *,
                    made: str = "the ticket was made without it") -> dict[str, str]:
    """The receipt's entry for a ticket field Zendesk refused, named where it came from; `named`: a
    refused requester was left as the customer's name alone (`_without`); `made`: what went without it."""
    if key in ctx.vendor_extra:
        part, where = "vendor_extra", f"vendor_extra.zendesk.{key}"
    elif key in ("group_id", "assignee_id"):
        part, where = "routing", f"routing's {key}"
    elif key.startswith("requester"):
        part, where = "customer", "the requester"
    else:
        part, where = "mapping", f"zendesk.yaml {key}"
    then = _NAMED_ONLY if named and key.startswith("requester") else _LEFT_WITHOUT.get(key, "") \
        if made.startswith("the ticket") else ""
    said = {"part": part, "reason": f"Zendesk refused {where} ({why[:300]}); {made}{then}"}
    return routing_field_left_out(said, key) if part == "routing" else said


def _no_requester(first: str, then: str) -> dict[str, str]:
    """The receipt's entry for a ticket made without a requester: Zendesk refused the customer's
    own, then their name alone (`create_or_without`)."""
    return {"part": "customer", "reason": f"Zendesk refused the requester ({first[:200]}), then the customer's name "
            f"alone as its requester ({then[:200]}); the ticket was made without one{_LEFT_WITHOUT['requester']}"}
