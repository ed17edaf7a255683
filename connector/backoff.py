"""When to try again: the schedule deliveries and status callbacks share."""

from __future__ import annotations

import tenacity


def backoff_seconds(attempt: int, retry_after: float | None, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential backoff with jitter (tenacity's), never sooner than the other side's Retry-After.

    Retries are scheduled in the database rather than slept through, so any worker can take them.
    """
    wait = tenacity.wait_exponential_jitter(multiplier=base, max=cap, exp_base=2, jitter=base)
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return max(wait(state), retry_after or 0.0)
