"""The team a repeat handoff's tickets stay with, and what its bot and customer are told then.

A conversation's second handoff updates the ticket its first one opened (`ConversationLink`), and
a ticket being worked is not moved: it keeps its group and owner (`adapters.base.kept_team`, the
note saying so). When routing chose another team for the repeat, the answer named that team and
the customer was told its wait and hours ("our escalations team, about 2 minutes") while the
ticket stayed with support, whose agents were the ones to reply. Once a delivery has updated one
of the conversation's tickets opened for another team (`keep`, called by the outbox before the
answer is made), the handoff's assignment gains what is told for that team (`routing.keep_with`)
when every target the handoff goes to has a ticket of that one team — said while none of them
opens a new ticket where routing sends it (a ticket closed for good: `connector.answers.as_told`).
Nothing is read on intake's path: a first handoff, nearly every one, pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import bindparam, select, update

from adapters import registry

from . import decision
from .db import Database
from .models import ConversationLink, Delivery, Handoff

_LINKS, _DELIVERIES, _HANDOFFS = ConversationLink.__table__, Delivery.__table__, Handoff.__table__

# Each link's ticket, what it was opened with, and — a ticket still being opened by another
# handoff's delivery — that delivery's state and its handoff's assignment: the team it is being
# opened for, while it is still pending (one given up opened nothing: the repeat opens a ticket).
_TICKETS = (
    select(_LINKS.c.target, _LINKS.c.vendor_id, _LINKS.c.extra, _DELIVERIES.c.state, _HANDOFFS.c.assignment)
    .select_from(_LINKS.outerjoin(_DELIVERIES, _DELIVERIES.c.id == _LINKS.c.owner_delivery_id)
                 .outerjoin(_HANDOFFS, _HANDOFFS.c.id == _DELIVERIES.c.handoff_id))
    .where(_LINKS.c.bot_id == bindparam("bot_id"), _LINKS.c.conversation_id == bindparam("conversation_id"))
)


def teams(db: Database, bot_id: str, conversation_id: str) -> dict[str, str]:
    """The team each of the conversation's tickets was opened for, by target; those whose team is not
    known (a link kept before it was recorded, an opening given up) are left out. A ticket solved
    since is still its team's: the repeat's note reopens it there. One closed for good is followed
    by a new ticket where routing sends the repeat — the answer then says routing's team
    (`connector.answers.as_told`), as the delivery's `created` shows it."""
    with db.reading() as session:
        rows = session.execute(_TICKETS, {"bot_id": bot_id, "conversation_id": conversation_id}).all()
    return {target: team for target, vendor_id, extra, state, owner in rows
            if (team := _opened_for(vendor_id, extra, state, owner))}


def _opened_for(vendor_id: str | None, extra: Any, state: str | None, owner: Any) -> str | None:
    """A ticket's team: as its opening recorded it (`adapters.base.opened_with`), else — still being
    opened — the team its opening handoff was routed to."""
    if vendor_id is not None:
        opened = extra.get("opened_with") if isinstance(extra, Mapping) else None
        team = opened.get("team") if isinstance(opened, Mapping) else None
    else:
        team = owner.get("team") if state == "pending" and isinstance(owner, Mapping) else None
    return str(team) if team else None


def kept_team(targets: Collection[str], tickets: Mapping[str, str], routed: Any) -> str | None:
    """The team every ticket the handoff reaches an agent through stays with, when that is one team
    and not the one routing chose (`routed`); else None — a first handoff, a target with no ticket
    yet (it opens one where routing sends it), tickets of different teams."""
    reaching = [name for name in targets if registry.reaches_agents(name, targets)]
    kept = {tickets.get(name) for name in reaching}
    if not reaching or len(kept) != 1 or None in kept:
        return None
    team = kept.pop()
    return None if team == routed else team


def keep(services: Any, handoff: Any, delivery: Any) -> dict[str, Any] | None:
    """Before a delivery of `handoff` that updated one of its conversation's tickets, opened for
    another team than routing chose, is recorded (its `delivered` callback is read from what is
    stored): its assignment with what is told for the team every ticket stays with
    (`decision.with_kept`), stored — or None, none kept (tickets of several teams, a target with no
    ticket yet, already kept). Worded as at the handoff's arrival: its hours as they were then.
    A batch of messages (`follows_id`) keeps its handoff's: given up, it is rescued by the batch's
    ticket (`answers.rescued`) and told as that ticket's team's. Stored only while `delivery` (the
    attempt's) is still its lease's: one taken over and given up meanwhile had its `failed` told."""
    if handoff.follows_id:
        with services.db.reading() as session:
            parent = session.get(Handoff, handoff.follows_id)
            targets = [row.target for row in parent.deliveries] if parent is not None else []
        if parent is not None:
            _keep(services, parent, targets, delivery)
        return None
    return _keep(services, handoff, [row.target for row in handoff.deliveries], delivery)


def _keep(services: Any, handoff: Any, targets: list[str], delivery: Any) -> dict[str, Any] | None:
    assignment = handoff.assignment or {}
    if isinstance(assignment.get("kept"), Mapping):
        return None
    team = kept_team(targets, teams(services.db, handoff.bot_id, handoff.conversation_id), assignment.get("team"))
    if team is None:
        return None
    kept = decision.with_kept(handoff.packet, assignment, team, services.mappings, targets,
                              observed_wait=services.observed_wait, now=handoff.created_at)
    attempting = select(_DELIVERIES.c.id).where(_DELIVERIES.c.id == delivery.id, _DELIVERIES.c.state == "pending",
                                                _DELIVERIES.c.lease_owner == delivery.lease_owner).exists()
    with services.db.writing() as connection:
        stored = connection.execute(update(_HANDOFFS).where(_HANDOFFS.c.id == handoff.id, attempting)
                                    .values(assignment=kept)).rowcount
    return kept if stored else None
