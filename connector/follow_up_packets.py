"""The packet a follow-up (messages sent while a handoff waited, `follow_ups`) is delivered with:
its handoff's packet with every earlier batch's messages and then its own added to the transcript.

A batch stores its own messages only (`own_only`): each stored a copy of that whole packet, so
what a handoff of long messages stored grew with the square of its batches (50 batches of 95 KB
posted stored ~120 MB), and a tiny batch stored up to a whole packet's bytes. The whole is put
together when it is needed — for each delivery attempt, and the admin page — from the handoff and
the earlier batches. Batches stored before that (the whole packet) are read as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Handoff


def whole(handoff: Handoff, earlier: Sequence[Handoff], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The handoff's packet with the `earlier` follow-ups' messages and then `messages` added to
    its transcript — everything, should this follow-up have to carry it all — marked as a
    follow-up (where its own messages start), without the callback: the handoff's speak for it."""
    packet = {key: value for key, value in handoff.packet.items() if key != "callback"}
    said = [entry for before in earlier for entry in own_messages(before)]
    packet["transcript"] = [*handoff.packet["transcript"], *said]
    # `handoff_ends`: where the handoff's own messages end — the ticket's subject was read from them.
    packet["follow_up"] = {"handoff_id": handoff.id, "first": len(packet["transcript"]),
                           "handoff_ends": len(handoff.packet["transcript"])}
    packet["transcript"].extend(messages)
    return packet


def stored(handoff: Handoff, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """What a batch stores: its own messages, and which handoff they follow."""
    return {"follow_up": {"handoff_id": handoff.id, "first": 0, "own_only": True}, "transcript": messages}


def own_messages(follow_up: Handoff) -> list[dict[str, Any]]:
    """The messages of this batch alone, stored either way."""
    return list(follow_up.packet["transcript"][(follow_up.packet.get("follow_up") or {}).get("first", 0):])


def whole_of(session: Session, follow_up: Handoff) -> dict[str, Any]:
    """The packet `follow_up` is delivered with (`whole`), read from its handoff and the batches
    before it; as stored for a batch stored whole. Retention keeps a handoff while a batch of it
    is left (`retention._forget`); one left without (stored whole before this release, when
    retention let batches outlive their handoff) is read as stored too."""
    if not (follow_up.packet.get("follow_up") or {}).get("own_only"):
        return follow_up.packet
    handoff = session.get(Handoff, follow_up.follows_id)
    if handoff is None:
        return follow_up.packet
    earlier = session.scalars(select(Handoff).where(Handoff.follows_id == follow_up.follows_id,
                                                    Handoff.follow_up_seq < follow_up.follow_up_seq)
                              .order_by(Handoff.follow_up_seq)).all()
    return whole(handoff, earlier, own_messages(follow_up))
