"""Given-up deliveries that a later batch of the same handoff's messages has carried since.

A batch of messages (`follow_ups`) goes to a target caught up: only once everything before it
arrived, and then with everything that had not. So a given-up delivery (the handoff's own, or an
earlier batch's) whose later batch reached the same target owes nothing there: a replay posted its
messages a second time, after newer ones (`outbox`), and it is settled for retention too — kept as
"dead", it held the customer's data past CONNECTOR_RETENTION_DAYS for ever, while /readyz and the
metrics, which do not count it, showed nothing to act on (a review).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_
from sqlalchemy.orm import aliased

from .models import DONE, Delivery, Handoff

GIVEN_UP = ("dead", "failed")


def carried_later(handoff_id: Any = Delivery.handoff_id, target: Any = Delivery.target) -> ColumnElement[bool]:
    """Whether a later batch of the handoff (`handoff_id`'s, a column of the delivery looked at)
    reached `target` (its target column)."""
    mine, later, delivered = aliased(Handoff), aliased(Handoff), aliased(Delivery)
    return exists().where(
        mine.id == handoff_id,
        later.follows_id == func.coalesce(mine.follows_id, mine.id),
        or_(mine.follows_id.is_(None), later.follow_up_seq > mine.follow_up_seq),
        delivered.handoff_id == later.id, delivered.target == target, delivered.state.in_(DONE))


def carried_since(handoff_id: Any, target: Any, state: Any) -> ColumnElement[bool]:
    """A given-up delivery (its `state` column) whose messages a later batch carried since."""
    return and_(state.in_(GIVEN_UP), carried_later(handoff_id, target))
