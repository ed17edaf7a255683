"""Talking to Salesforce: checking the settings and mapping, logging in, and the one place that
turns simple-salesforce and requests exceptions into `adapters.errors`.

Every client we build is a *direct* `Salesforce(instance_url=, session_id=)`, even after a password
or client-credentials login that we run ourselves. That keeps simple-salesforce's own 401 refresh
switched off: it re-sends without our extra headers (`Sforce-Auto-Assign`) and can recurse until
`RecursionError`. The adapter renews once, itself, and re-sends the same request with its headers.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import simple_salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from connector.errors import ConfigError, MappingProblem
from connector.mapping_values import compile_for, looks_like_template
from connector.settings import Settings, http_address

from .base import priority_map_problem
from .call_deadline import request_sent
from .errors import AuthError, DeliveryError, OutcomeUnknown, RateLimited, RejectedError, TransientError, page_of
from .http_session import SettledEnvironmentSession

API_VERSION = "59.0"
DEFAULT_RETRY_AFTER_S = 60.0

# Auth mode → the settings it needs, in the order we name a missing one.
AUTH_MODES: dict[str, tuple[str, ...]] = {
    "token": ("salesforce_instance_url", "salesforce_access_token"),
    "password": ("salesforce_username", "salesforce_password", "salesforce_security_token"),
    "client_credentials": ("salesforce_instance_url", "salesforce_client_id", "salesforce_client_secret"),
}
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # field names go into SOQL and URLs unquoted
_SHARED = {"salesforce_instance_url"}  # set in two modes, so it says nothing about which one is meant


def auth_mode(settings: Settings) -> str:
    """The one complete auth mode the settings describe; `ConfigError` naming what to fix otherwise."""
    var = Settings.variable_for
    started = [mode for mode, attrs in AUTH_MODES.items()
               if any(getattr(settings, attr) for attr in attrs if attr not in _SHARED)]
    if not started and settings.salesforce_domain:
        started = ["password"]  # SALESFORCE_DOMAIN only means something for password login
    if not started:
        raise ConfigError(
            var("salesforce_access_token") if settings.salesforce_instance_url else var("salesforce_instance_url"),
            "must be set when the 'salesforce' target is enabled: set SALESFORCE_INSTANCE_URL + "
            "SALESFORCE_ACCESS_TOKEN, or SALESFORCE_USERNAME + SALESFORCE_PASSWORD + SALESFORCE_SECURITY_TOKEN, "
            "or SALESFORCE_INSTANCE_URL + SALESFORCE_CLIENT_ID + SALESFORCE_CLIENT_SECRET",
        )
    if len(started) > 1:
        extra = next(attr for attr in AUTH_MODES[started[1]] if attr not in _SHARED and getattr(settings, attr))
        raise ConfigError(var(extra), f"set the variables of one Salesforce auth mode only; {started[0]} and "
                                      f"{started[1]} are both (partly) configured")
    mode = started[0]
    missing = [var(attr) for attr in AUTH_MODES[mode] if not getattr(settings, attr)]
    if missing:  # every one at once: named one per start, an operator fixed one variable per restart
        also = f" (and {', '.join(missing[1:])})" if missing[1:] else ""
        raise ConfigError(missing[0], f"must be set for Salesforce {mode.replace('_', '-')} auth{also}")
    if settings.salesforce_instance_url:
        url = http_address(var("salesforce_instance_url"), settings.salesforce_instance_url,
                           "https://acme.my.salesforce.com", schemes=("https",))
        if url.path.strip("/"):
            # simple-salesforce builds https:// URLs from the host alone, so a path was ignored there
            # — and kept in every case link the bot got (an address copied from the browser,
            # `…/lightning/page/home`, made `…/lightning/page/home/lightning/r/Case/…`; a review).
            raise ConfigError(var("salesforce_instance_url"), "must be an https:// URL like "
                              "https://acme.my.salesforce.com (the org's address alone, without a path)")
    return mode


def check_mapping(mapping: Mapping[str, Any]) -> None:
    """Refuse values that would fail every delivery, or put text into SOQL unquoted."""
    choices = {"transcript_as": ("case_comment", "feed_item"), "contact": ("find_or_create", "find", "none")}
    for key, allowed in choices.items():
        if key in mapping and mapping[key] not in allowed:
            raise MappingProblem("salesforce", key, f"must be one of {', '.join(allowed)}, got {mapping[key]!r}")
    named = [("handoff_id_field", mapping.get("handoff_id_field") or "Id"),
             *((f"fields.{name}", name) for name in mapping.get("fields") or {})]
    if problem := priority_map_problem("salesforce", mapping.get("priority")):
        raise problem
    _picklist_words(mapping)
    seen: dict[str, str] = {}
    for name, spec in (mapping.get("fields") or {}).items():
        # Salesforce reads a name in any letter case: `Team__c:` and `team__c:` (a merge of two edits)
        # are one field, and the later one silently replaced the other's value (a review).
        if isinstance(name, str) and (first := seen.setdefault(name.lower(), name)) != name:
            raise MappingProblem("salesforce", f"fields.{name}", f"is {first} in another letter case: "
                                 "Salesforce reads them as one field, mapped twice")
        if isinstance(name, str) and name.lower() == "description":
            # The brief's place, and the handoff id a retry finds the case by (without handoff_id_field):
            # the agent got one line, the receipt said all was delivered, a timed-out create made two cases.
            raise MappingProblem("salesforce", f"fields.{name}", "the Description holds the agent's brief and the "
                                 "handoff id a retry finds the case by: map this value to a field of its own "
                                 "(Summary__c)")
        # A misspelt path (`colected_data.error_code`) failed every delivery, naming no file or line.
        compile_for("salesforce", spec, f"fields.{name}", mapping.get("lookups"))
    for key, name in named:
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise MappingProblem("salesforce", key,
                                 f"{name!r} is not a Salesforce field API name (like Order_Number__c)")


def _picklist_words(mapping: Mapping[str, Any]) -> None:
    """The Case's picklist values a mapping names are words: `status: [New]` or `origin: {web_chat: {x:
    Web}}` went into every case as a list or an object, which Salesforce refuses, while `check` said
    ok (a review); `status: on` is true to YAML."""
    given = [(key, mapping[key]) for key in ("status", "default_origin") if key in mapping]
    for table in ("priority", "origin"):
        if isinstance(mapping.get(table), Mapping):
            given += [(f"{table}.{ours}", word) for ours, word in mapping[table].items()]
    for key, word in given:
        if isinstance(word, (bool, list, tuple, Mapping)):
            seen = ("true/false (quote it)" if isinstance(word, bool)
                    else "a mapping" if isinstance(word, Mapping) else "a list")
            raise MappingProblem("salesforce", key, f"must be one picklist value (a word such as New), got {seen}")
        if isinstance(word, str) and looks_like_template(word):  # every case sent with the braces (a review)
            raise MappingProblem("salesforce", key, f"is one picklist value as written, not a template: every case "
                                 f"would be sent {word!r} (a value of the packet goes under fields:, with template:)")


# "hnd_" and a ULID's 26 characters: what handoff_id_field must hold.
HANDOFF_ID_LENGTH = 30


def case_fields_findings(mapping: Mapping[str, Any], described: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """What Case's describe (`GET sobjects/Case/describe`, the fields the API user can see) shows of
    the mapping's fields, before any delivery runs into it: the problem that would refuse every new
    case (None if none), and what works but loses something. A handoff_id_field that was not there
    or too short was found by the first handoff, which failed; one not Unique, only by a duplicate."""
    fields = {str(spec.get("name", "")).lower(): spec for spec in described.get("fields") or ()}
    warnings = [f"mappings/salesforce.yaml fields.{name}: Case has no field {name} the API user can see; "
                "every case is sent without it (its receipt says so)"
                for name in mapping.get("fields") or {} if name.lower() not in fields]
    name = mapping.get("handoff_id_field")
    if not name:
        return None, warnings
    where = f"mappings/salesforce.yaml handoff_id_field: {name}"
    spec = fields.get(name.lower())
    if spec is None:
        return (f"{where} is not a field of Case the API user can see (create it, or grant the API user's "
                "profile access to it): every new case would be refused"), warnings
    kind = spec.get("type")
    if kind not in ("string", "textarea"):
        return f"{where} is a {kind} field, and a handoff id is text: every new case would be refused " \
               "(make it Text(64))", warnings
    if spec.get("createable") is False:
        return (f"{where} cannot be written by the API user (read-only to its profile, or a formula): every "
                "new case would be refused"), warnings
    if spec.get("filterable") is False:
        return (f"{where} cannot be searched (a Long Text Area): a retry after a lost answer could not find "
                "its case, and would open a second one (make it Text(64))"), warnings
    length = spec.get("length")
    if isinstance(length, int) and length < HANDOFF_ID_LENGTH:
        return (f"{where} holds {length} characters, a handoff id {HANDOFF_ID_LENGTH}: every new case would be "
                "refused (make it Text(64))"), warnings
    if mapping.get("handoff_id_is_external_id"):
        if not spec.get("externalId"):
            return (f"{where} is not an External ID field, and handoff_id_is_external_id asks to upsert on "
                    "it: every new case would be refused (mark it External ID, or drop that line)"), warnings
        if not spec.get("unique"):
            warnings.append(f"{where} is not Unique: two cases can carry one handoff's id, and the oldest is "
                            "taken (mark it Unique)")
    elif spec.get("externalId") and spec.get("unique"):
        warnings.append(f"{where} is Unique and an External ID: set handoff_id_is_external_id: true, so the "
                        "create itself is an upsert and a retry after a lost answer cannot open a second case")
    return None, warnings


class Redirected(Exception):
    """A 3xx seen by the session, not followed (`VendorSession.request`)."""

    def __init__(self, status: int):
        super().__init__(f"redirected (HTTP {status})")
        self.status = status


class Throttled(Exception):
    """A 429 seen by the session. Raised there because simple-salesforce's errors drop headers."""

    def __init__(self, retry_after: float | None, status: int):
        super().__init__(f"rate limited (HTTP {status})")
        self.retry_after = retry_after
        self.status = status


class VendorSession(SettledEnvironmentSession):
    """requests session with our timeout on every call (simple-salesforce passes none).

    `trust_env` (the default, kept on purpose) makes requests read REQUESTS_CA_BUNDLE, SSL_CERT_FILE
    and the proxy variables, as the contract promises for all outbound HTTPS (read once per origin:
    `SettledEnvironmentSession`).
    """

    def __init__(self, timeout_s: float):
        super().__init__()
        self.trust_env = True
        self.timeout_s = timeout_s

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        # Not followed: requests re-sends a 307's body to wherever it points — a case's packet, the
        # token request's client_secret — and its answer was taken for Salesforce's.
        kwargs["allow_redirects"] = False
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 429:
            raise Throttled(parse_retry_after(response.headers.get("Retry-After")), response.status_code)
        if response.is_redirect:
            raise Redirected(response.status_code)
        return response


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Client:
    sf: simple_salesforce.Salesforce
    instance_url: str  # https://host[:port], for agent links
    renewable: bool  # False for a given token: nobody can renew it but its owner


def connect(settings: Settings, session: VendorSession, mode: str) -> Client:
    """Log in as `mode` says (network for password and client credentials, none for a token)."""
    if mode == "token":
        token, instance_url = settings.salesforce_access_token, settings.salesforce_instance_url
    elif mode == "password":
        token, host = simple_salesforce.SalesforceLogin(
            username=settings.salesforce_username,
            password=settings.salesforce_password,
            security_token=settings.salesforce_security_token,
            domain=settings.salesforce_domain or "login",
            sf_version=API_VERSION,
            session=session,
        )
        instance_url = f"https://{host}"
    else:
        token, instance_url = _client_credentials(settings, session)
    instance_url = instance_url.rstrip("/")
    sf = simple_salesforce.Salesforce(instance_url=instance_url, session_id=token, session=session, version=API_VERSION)
    return Client(sf=sf, instance_url=instance_url, renewable=mode != "token")


def _client_credentials(settings: Settings, session: VendorSession) -> tuple[str, str]:
    """OAuth client-credentials flow against the org's My Domain (the connected app's run-as user)."""
    url = f"{settings.salesforce_instance_url.rstrip('/')}/services/oauth2/token"
    response = session.post(url, data={
        "grant_type": "client_credentials",
        "client_id": settings.salesforce_client_id,
        "client_secret": settings.salesforce_client_secret,
    })
    try:
        body = response.json()
    except ValueError:  # a proxy's page: for admins (`page_of`), not for the bot
        body = {"error": f"an answer that is not JSON (HTTP {response.status_code}){page_of(response.text)}"}
    if response.status_code >= 500:
        raise TransientError(f"Salesforce token endpoint answered {response.status_code}",
                             status=response.status_code, reply=body)
    if response.status_code != 200 or not body.get("access_token"):
        raise AuthError(f"Salesforce refused the client credentials: {body.get('error')}: "
                        f"{body.get('error_description', '')}".rstrip(": "), status=response.status_code, reply=body)
    return body["access_token"], body.get("instance_url") or settings.salesforce_instance_url


# Login faults that say the org's limits are spent for now (its API quota; the user's logins per
# hour), to wait out as a 429: a login refused for its rate took the whole target for bad
# credentials, and every handoff needing a login in that hour failed for good (a review).
LOGIN_LIMITS = frozenset({"REQUEST_LIMIT_EXCEEDED", "LOGIN_RATE_EXCEEDED"})
# Login faults that say Salesforce cannot answer now (its SOAP API's `ExceptionCode`s), not that
# the credentials are wrong.
LOGIN_OUTAGES = frozenset({"SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION", "UNKNOWN_EXCEPTION_CODE"})
# Errors of a refused request that a plain retry may get past: another transaction held the row
# (a busy org's Account or Case). A failed request's changes are rolled back, so nothing doubles.
# A query Salesforce gave up on (QUERY_TIMEOUT, sent as a 400) is the same: a busy org, not a refusal.
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"})


def vendor_error(content: Any) -> tuple[str, str]:
    """(errorCode, message) from Salesforce's error list `[{"errorCode", "message", "fields"}]`: the
    first error's code, and every error's words — a refusal listing a missing field and a
    validation rule told only the first, and the admin who mended it met the rule on the replay."""
    errors = [error for error in content if isinstance(error, dict)] if isinstance(content, list) else []
    first = errors[0] if errors else content if isinstance(content, dict) else {}
    code = str(first.get("errorCode") or first.get("error") or "")
    if isinstance(content, (str, bytes)) and content.strip():  # not JSON: a proxy's or a gateway's page
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        return code, f"an answer that is not Salesforce's JSON{page_of(text)}"
    message = _error_words(first, content)
    for error in errors[1:MAX_ERRORS_TOLD]:
        message += f"; {error.get('errorCode') or 'error'}: {_error_words(error, '')}"
    if len(errors) > MAX_ERRORS_TOLD:
        message += f"; and {len(errors) - MAX_ERRORS_TOLD} more"
    return code, message


MAX_ERRORS_TOLD = 5  # of one refusal's list (each error's words cut at 1,000 characters)


def _error_words(error: Mapping[str, Any], otherwise: Any) -> str:
    message = str(error.get("message") or error.get("error_description") or otherwise)[:1000]
    if error.get("fields"):
        message += f" (fields: {', '.join(map(str, error['fields']))})"
    return message


def translate(err: Exception, *, write: bool, rate_limit_after: float = DEFAULT_RETRY_AFTER_S) -> DeliveryError:
    """The one mapping from library exceptions to ours. `write`: the call may change data."""
    if isinstance(err, Throttled):
        return RateLimited(str(err), retry_after=err.retry_after or rate_limit_after, status=err.status)
    if isinstance(err, Redirected):  # nothing was done where it pointed: an address to correct
        return RejectedError(f"Salesforce answered a redirect (HTTP {err.status}), not followed: is "
                             "SALESFORCE_INSTANCE_URL the org's My Domain address?", status=err.status)
    if isinstance(err, SalesforceAuthenticationFailed):
        # simple-salesforce passes the SOAP fault's exceptionCode, or the HTTP status when the page
        # was no XML. Every SOAP fault comes as a 500, a wrong password's too: the code decides.
        status = err.code if isinstance(err.code, int) else None
        text = f"Salesforce login failed: {err.code}: {err.auth_message}"
        if status is not None:  # an HTTP status: the answer was no SOAP fault, a proxy's page perhaps
            page = page_of(err.auth_message)
            text = f"Salesforce login failed (HTTP {status}), an answer that is not Salesforce's{page}"
        if err.code in LOGIN_LIMITS:
            return RateLimited(text, retry_after=rate_limit_after, status=status)
        if (status and status >= 500) or err.code in LOGIN_OUTAGES or not err.code:
            # Salesforce (or what stands before it) is down, not the credentials wrong: failed
            # for good, every handoff needing a login during an outage waited for an admin's replay.
            return TransientError(text, status=status)
        return AuthError(text, status=status)
    if isinstance(err, SalesforceError):
        code, message = vendor_error(err.content)
        text = f"Salesforce {err.status} {code}: {message}"
        if isinstance(err, SalesforceExpiredSession):
            return AuthError(text, status=401, reply=err.content)
        if isinstance(err, SalesforceRefusedRequest):
            if code == "REQUEST_LIMIT_EXCEEDED":  # the org's API quota, sent as 403 without Retry-After
                return RateLimited(text, retry_after=rate_limit_after, status=403, reply=err.content)
            return AuthError(text, status=403, reply=err.content)
        if code in RETRYABLE_CODES:
            return TransientError(text, status=err.status, reply=err.content)
        if isinstance(err, (SalesforceMalformedRequest, SalesforceResourceNotFound, SalesforceMoreThanOneRecord)):
            return RejectedError(text, status=err.status, reply=err.content)
        if err.status >= 500:
            # Salesforce's own error list means it answered, and a request's changes roll back on an
            # error; anything else (a gateway's 502/504 page) may have come after it acted. A write
            # answered so is looked up before it is sent again.
            unknown = write and not code
            return (OutcomeUnknown if unknown else TransientError)(text, status=err.status, reply=err.content)
        return RejectedError(text, status=err.status, reply=err.content)
    if isinstance(err, requests.RequestException):
        if write and _request_left(err):
            return OutcomeUnknown(f"no answer from Salesforce after sending: {err}")
        return TransientError(f"could not reach Salesforce: {err}")
    raise TypeError(f"not a Salesforce or requests error: {err!r}") from err


def _request_left(err: requests.RequestException) -> bool:
    """Could Salesforce have received (and acted on) the request before `err`?"""
    if isinstance(err, requests.exceptions.SSLError):
        # A handshake refused sent nothing; TLS broken once the Case had left (a record garbled in
        # the answer, a TLS-inspecting proxy failing) may come after Salesforce made it: a plain
        # retry opened a second case.
        return request_sent(err)
    if isinstance(err, (requests.ConnectTimeout, requests.exceptions.ProxyError)):
        return False
    if isinstance(err, requests.ConnectionError):
        reason = err.args[0] if err.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        # Refused, unresolvable, connect timeout: nothing was sent. A reset while waiting is ambiguous.
        return not isinstance(reason, ConnectTimeoutError)
    return True  # read timeouts, broken or undecodable answers: it may have acted
