"""The team a repeat handoff's tickets stay with, known before it is decided what the bot is told.

A conversation's second handoff updates the ticket its first one opened (`ConversationLink`), and
a ticket being worked is not moved: it keeps its group and owner (`adapters.base.kept_team`, the
note saying so). When routing chose another team for the repeat, the answer named that team and
the customer was told its wait and hours ("our escalations team, about 30 minutes") while the
ticket stayed with billing, whose agents were the ones to reply. Intake reads here which team each
of the conversation's tickets was opened for, and the decision tells the bot and the customer that
team (`routing.keep_with`) when every target the handoff goes to has one, the same one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import bindparam, select

from adapters import registry

from .db import Database
from .models import ConversationLink, Delivery, Handoff

_LINKS, _DELIVERIES, _HANDOFFS = ConversationLink.__table__, Delivery.__table__, Handoff.__table__
_OF_CONVERSATION = {"bot_id": bindparam("bot_id"), "conversation_id": bindparam("conversation_id")}

# Each link's ticket, what it was opened with, and — a ticket still being opened by another
# handoff's delivery — that handoff's assignment: the team it is being opened for.
_TICKETS = (
    select(_LINKS.c.target, _LINKS.c.vendor_id, _LINKS.c.extra, _HANDOFFS.c.assignment)
    .select_from(_LINKS.outerjoin(_DELIVERIES, _DELIVERIES.c.id == _LINKS.c.owner_delivery_id)
                 .outerjoin(_HANDOFFS, _HANDOFFS.c.id == _DELIVERIES.c.handoff_id))
    .where(*(_LINKS.c[name] == value for name, value in _OF_CONVERSATION.items()))
)
# Whether the conversation's newest handoff was solved (`completed_at`): its ticket may be closed by
# now, and a closed ticket is followed by a new one where routing sends it — nothing is kept then.
_NEWEST_SOLVED = (
    select(_HANDOFFS.c.completed_at)
    .where(*(_HANDOFFS.c[name] == value for name, value in _OF_CONVERSATION.items()), _HANDOFFS.c.follows_id.is_(None))
    .order_by(_HANDOFFS.c.created_at.desc()).limit(1)
)


def teams(db: Database, bot_id: str, conversation_id: str) -> dict[str, str]:
    """The team each of the conversation's tickets was opened for, by target; those whose team is not
    known (a link kept before it was recorded) are left out. None at all when the conversation's
    newest handoff was solved: its tickets may be closed."""
    key = {"bot_id": bot_id, "conversation_id": conversation_id}
    found = {target: team for target, vendor_id, extra, owner in db.read(_TICKETS, key)
             if (team := _opened_for(vendor_id, extra, owner))}
    if not found:  # a first handoff: one read
        return {}
    solved = db.read(_NEWEST_SOLVED, key)
    return {} if solved and solved[0][0] is not None else found


def _opened_for(vendor_id: str | None, extra: Any, owner: Any) -> str | None:
    """A ticket's team: as its opening recorded it (`adapters.base.opened_with`), else — still being
    opened — the team its opening handoff was routed to."""
    if vendor_id is not None:
        opened = extra.get("opened_with") if isinstance(extra, Mapping) else None
        team = opened.get("team") if isinstance(opened, Mapping) else None
    else:
        team = owner.get("team") if isinstance(owner, Mapping) else None
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
