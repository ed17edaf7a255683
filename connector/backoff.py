"""When to try again: the schedule deliveries and status callbacks share, and the one of the
courtesies (a notice to an agent, a ticket's links to the others) tried again at once."""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from adapters.errors import OutcomeUnknown, TransientError

# A courtesy is tried this often, and waits this long in all, before it is given up (logged).
COURTESY_TRIES, COURTESY_WAIT_MAX_S = 3, 30.0


def courtesy_retrying(sleep: Callable[[float], None]) -> tenacity.Retrying:
    """Runs a courtesy edit, again after the vendor's Retry-After (1 s when it names none) while it
    met a rate limit or never reached the vendor — not once its fate is unknown (it may have been
    made) — up to `COURTESY_TRIES` tries and `COURTESY_WAIT_MAX_S` of waiting, then raises what it met.
    `sleep`: the wait (a service's, cut short by its stop)."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_worth_another_try),
        stop=tenacity.stop_any(tenacity.stop_after_attempt(COURTESY_TRIES), _waits_too_long),
        wait=_vendors_wait, sleep=sleep, reraise=True)


def _worth_another_try(err: BaseException) -> bool:
    return isinstance(err, TransientError) and not isinstance(err, OutcomeUnknown)


def _waits_too_long(state: tenacity.RetryCallState) -> bool:
    """The next wait would take the courtesy's waiting past `COURTESY_WAIT_MAX_S` in all: it is stale."""
    return state.idle_for + state.upcoming_sleep > COURTESY_WAIT_MAX_S


def _vendors_wait(state: tenacity.RetryCallState) -> float:
    err = state.outcome.exception() if state.outcome else None
    return float(getattr(err, "retry_after", None) or 1.0)


def backoff_seconds(attempt: int, retry_after: float | None, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential backoff with jitter (tenacity's), never sooner than the other side's Retry-After.

    Retries are scheduled in the database rather than slept through, so any worker can take them.
    """
    wait = tenacity.wait_exponential_jitter(multiplier=base, max=cap, exp_base=2, jitter=base)
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return max(wait(state), retry_after or 0.0)
