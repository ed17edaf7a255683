"""Zendesk transport: the session the adapter talks through, and the one place that turns Zendesk's
HTTP answers and the libraries' exceptions into `adapters.errors`.

Kept apart from `adapters.zendesk` (payloads) so each file stays small; only that module imports it.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded, ZenpyException

from .call_deadline import request_sent
from .errors import AuthError, DeliveryError, OutcomeUnknown, RateLimited, RejectedError, TransientError, page_of
from .http_session import SettledEnvironmentSession

MESSAGE_LIMIT = 500  # characters of a vendor error kept in our message (the full body stays in `reply`)
RESERVE_SHARE, RESERVE_MIN = 0.05, 10  # of the per-minute allowance, left unspent (see quota_pause)


class ZendeskSession(SettledEnvironmentSession):
    """The session zenpy authenticates (`Zenpy(session=...)`) and the adapter sends through.

    * Every 4xx/5xx raises our own error from a response hook, inside `Session.send`. Should a
      zenpy API method ever be called on this session, its `_call_api` never sees a 429, so its
      sleep-and-resend loop (which never gives up) cannot run in a delivery thread. The outbox
      owns retries and honours `retry_after` for the whole target.
    * Transport retries are off (`total=0, read=False`): zenpy's default adapter replays PUT on 503
      and a comment could land twice. A read timeout surfaces as `ReadTimeout`, never retried here.
    * `trust_env` stays on, so REQUESTS_CA_BUNDLE, SSL_CERT_FILE and proxy variables apply (read
      once per origin: `SettledEnvironmentSession`), as do its deadline for a whole call and its
      cap on an answer's size (`call_deadline`).
    """

    def __init__(self, origin: str):
        super().__init__(max_retries=Retry(total=0, read=False))
        self.origin = origin  # https://{subdomain}.zendesk.com, or ZENDESK_BASE_URL
        self.hooks["response"].append(_raise_for_status)


def _raise_for_status(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    if response.status_code >= 400:
        raise error_for_response(response)
    return response


def error_for_response(response: requests.Response) -> DeliveryError:
    """One function decides what a Zendesk error status means for us."""
    status = response.status_code
    body = _body(response)
    if isinstance(body, str) and body.strip():  # not JSON: a proxy's or a gateway's page, not Zendesk's words
        message = f"{response.reason or f'HTTP {status}'}, an answer that is not Zendesk's JSON{page_of(body)}"
    else:
        message = vendor_message(body) or response.reason or f"HTTP {status}"
    kwargs: dict[str, Any] = {"status": status, "reply": body}
    if status == 429:
        return RateLimited(f"Zendesk rate limit: {message}", retry_after=retry_after(response), **kwargs)
    if status == 401:
        return AuthError(f"Zendesk refused the credentials (401): {message}", **kwargs)
    if status == 403:
        # The credentials were taken; the API user may not do this (a role, a plan, a setting): an
        # operator told "refused the credentials" went looking for a token that was fine (a review).
        return AuthError(f"Zendesk does not let the API user do this (403): {message}", **kwargs)
    if status == 400 and "IdempotentRequestError" in message:
        # The key was already used with another body (e.g. a fresh upload token on a retry): the
        # first attempt probably made the ticket. Unknown outcome → the next attempt looks it up.
        return OutcomeUnknown(f"Zendesk saw this idempotency key with another body: {message}", **kwargs)
    if status in (408, 409) or status >= 500:
        # 409 is Zendesk's "ticket is being updated by someone else": retrying is the documented fix.
        return TransientError(f"Zendesk is unavailable ({status}): {message}", retry_after=retry_after(response),
                              **kwargs)
    return RejectedError(f"Zendesk rejected the request ({status}): {message}", **kwargs)


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:MESSAGE_LIMIT]


def vendor_message(body: Any) -> str:
    """`{"error", "description", "details": {field: [{"description"}]}}` → one readable line."""
    if not isinstance(body, dict):
        return str(body or "").strip()[:MESSAGE_LIMIT]
    error = body.get("error")
    if isinstance(error, dict):  # newer endpoints: {"error": {"title", "message"}}
        error = ": ".join(str(error[key]) for key in ("title", "message") if error.get(key))
    parts = [str(part) for part in (error, body.get("description")) if part]
    for field, problems in (body.get("details") or {}).items():
        for problem in problems if isinstance(problems, list) else [problems]:
            text = problem.get("description") if isinstance(problem, dict) else problem
            parts.append(f"{field}: {text}")
    if not parts and body.get("errors"):
        parts.append(json.dumps(body["errors"])[:MESSAGE_LIMIT])
    return " — ".join(parts)[:MESSAGE_LIMIT]


def retry_after(response: requests.Response) -> float | None:
    """`Retry-After` in seconds (delta or HTTP date); None when absent or unreadable."""
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def quota_pause(response: requests.Response) -> float | None:
    """Seconds to hold the Zendesk target because the account's per-minute allowance is nearly
    spent; None while there is room.

    Zendesk counts calls per minute for the whole account (agents' apps and other integrations
    too) and says on every answer how many are left and when the window resets
    (`ratelimit-remaining` / `X-Rate-Limit-Remaining`, `ratelimit-reset`, in seconds). Waiting
    for the reset once `RESERVE_SHARE` of the allowance is left (at least `RESERVE_MIN` calls)
    keeps that room for the account's other users and for our own calls already in flight,
    instead of learning of the limit from a round of 429s.
    """
    headers = response.headers
    remaining = _number(headers.get("ratelimit-remaining") or headers.get("x-rate-limit-remaining"))
    reset = _number(headers.get("ratelimit-reset"))
    if remaining is None or reset is None or reset <= 0:
        return None
    limit = _number(headers.get("ratelimit-limit") or headers.get("x-rate-limit"))
    keep = max(RESERVE_MIN, (limit or 0) * RESERVE_SHARE)
    if limit:
        keep = min(keep, limit // 2)  # a tiny allowance is still used, not reserved whole
    # The window is a minute: a larger figure (a timestamp from a proxy) must not pause for days.
    return min(reset, 60.0) if remaining <= keep else None


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


@contextmanager
def edge(*, write: bool) -> Iterator[None]:
    """Wrap one vendor call: every zenpy / requests exception leaves as an `adapters.errors` one.

    `write` says whether the call may have changed something at Zendesk, which decides between
    `TransientError` (safe to resend) and `OutcomeUnknown` (look up before resending).
    """
    try:
        yield
    except TransientError as err:
        if write and type(err) is TransientError and (err.status or 0) >= 500:
            # A 5xx may come from a gateway after Zendesk acted on the request: look before
            # resending. A comment has no idempotency key; a create's Idempotency-Key is kept by
            # Zendesk for two hours only, and retries (backoff, a pause for the rate limit, an
            # outage) can come later than that — trusted, a late retry opened a second ticket.
            raise OutcomeUnknown(err.message, retry_after=err.retry_after, status=err.status, reply=err.reply) from err
        raise
    except DeliveryError:
        raise
    except APIException as err:  # not a ZenpyException subclass
        raise _from_zenpy(err, write) from err
    except ZenpyException as err:
        raise _from_zenpy(err, write) from err
    except requests.RequestException as err:
        raise _from_requests(err, write) from err


def _from_zenpy(err: Exception, write: bool) -> DeliveryError:
    response = getattr(err, "response", None)
    if isinstance(response, requests.Response) and response.status_code >= 400:
        return error_for_response(response)
    if isinstance(err, RatelimitBudgetExceeded):
        return RateLimited(f"Zendesk rate limit: {err}")
    kind = OutcomeUnknown if write else TransientError
    return kind(f"zenpy could not handle Zendesk's answer: {str(err)[:MESSAGE_LIMIT]}")


def _from_requests(err: requests.RequestException, write: bool) -> DeliveryError:
    url = getattr(err.request, "url", None) or "Zendesk"
    if isinstance(err, requests.ConnectTimeout):
        return TransientError(f"could not connect to {url} in time (nothing was sent)")
    if isinstance(err, requests.exceptions.SSLError):
        if write and request_sent(err):  # broken in the answer: the note may be in (comments take no key)
            return OutcomeUnknown(f"TLS broke after the request was sent to {url}: {err}")
        return TransientError(f"TLS failed with {url} (check REQUESTS_CA_BUNDLE / SSL_CERT_FILE): {err}")
    if isinstance(err, requests.exceptions.ProxyError):
        return TransientError(f"the proxy refused the request to {url}: {err}")
    if isinstance(err, requests.exceptions.RetryError):
        return TransientError(f"Zendesk kept failing: {err}")
    if isinstance(err, requests.ConnectionError) and err.args and isinstance(err.args[0], MaxRetryError):
        # urllib3 reports a failure to *open* the connection this way: the request never left.
        return TransientError(f"could not connect to {url} (nothing was sent): {err.args[0].reason}")
    if not write:
        return TransientError(f"reading from Zendesk failed: {type(err).__name__}: {err}")
    # A read timeout, a connection dropped mid-answer, an unreadable reply: the request left,
    # Zendesk may have acted on it.
    return OutcomeUnknown(f"no usable answer from {url} after sending ({type(err).__name__}): {err}")


def id_problem(value: Any) -> str | None:
    """Zendesk's ids are whole numbers: `abc` (or a name where an id goes) was refused on every ticket."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else (
        int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else 0)
    return None if number > 0 else f"Zendesk ids are whole numbers (like 360000123456), got {value!r}"
