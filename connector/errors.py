"""The project's exception tree.

Two families, kept apart on purpose:

* `ConfigError` — the operator must fix a setting or a file. Never retried, never a 503.
* `ApiProblem` — what a caller did wrong (or a state it must wait out); rendered once, at the
  edge, as RFC 9457 `application/problem+json`.

Vendor failures have their own tree in `adapters.errors`; the outbox decides what to do with them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# A mapping file named in an error's source, as the connector reads them or as it refuses them
# (`zendesk.yml`, `Routing.YAML`): a stray `.yml` was taken for a setting, and a worker replaced
# meanwhile failed to boot, which stops gunicorn, instead of serving the last good set.
_A_YAML_FILE = re.compile(r"\.ya?ml\b", re.IGNORECASE)


class ConfigError(Exception):
    """A setting or admin file is missing or wrong. `source` is the variable or file to fix."""

    def __init__(self, source: str, message: str):
        self.source = source
        self.message = message
        super().__init__(f"{source}: {message} (see {self.guide})")

    @classmethod
    def joined(cls, errors: Sequence[ConfigError], also: str = "; ") -> ConfigError:
        """One error for several: the first's source and message, then each other's after `also`
        (one start-up, one `check`, names everything there is to fix, not one thing per try)."""
        first, *others = errors
        if not others:
            return first
        return cls(first.source, first.message + "".join(f"{also}{err.source}: {err.message}" for err in others))

    @property
    def in_mappings(self) -> bool:
        """The mapping files are to fix — one of them, or their directory (gone in a deploy's
        swap) — rather than a setting: a gunicorn worker may serve an older set meanwhile."""
        return _A_YAML_FILE.search(self.source) is not None or self.source == "CONNECTOR_MAPPINGS_DIR"

    @property
    def guide(self) -> str:
        """Where the fix is explained: a mapping file's format, or the settings."""
        if _A_YAML_FILE.search(self.source):
            return "mappings/README.md"
        return ".env.example and README.md, 'Configuration'"


class MappingProblem(ConfigError):
    """A vendor's own check refused a key of its mapping file (`adapters`): raised with the file
    and key path, and located by the mapping store, which knows the directory and the file's
    lines (`mappings.MappingStore.load`) — the adapters named `mappings/x.yaml` and no line."""

    def __init__(self, target: str, key_path: str, message: str):
        self.file, self.key_path = f"{target}.yaml", key_path
        super().__init__(f"mappings/{self.file}: {key_path}", message)


class ApiProblem(Exception):
    """An error answered to the caller as problem+json. Its `type` is the address of a page saying
    what it means and what a caller should do (`meaning`, `retry`; `/problems/<type_slug>`), the
    same words as README's table of problem types."""

    status = 400
    title = "Bad request"
    type_slug = "bad-request"
    meaning = ""
    retry = ""

    def __init__(
        self,
        detail: str,
        *,
        errors: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        title: str | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            # The connector serves the page; an answer makes this absolute (`problems.problem_response`).
            "type": f"/problems/{self.type_slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            # Always there, empty when no field is to blame: the contract's shape has it, and a bot
            # reading `errors` of a 401 or a 415 must not meet a KeyError.
            "errors": self.errors,
        }
        return body


class MalformedRequest(ApiProblem):
    status, title, type_slug = 400, "Malformed request", "malformed-request"
    meaning = "not JSON, not UTF-8, nested too deep to parse; an unusable Idempotency-Key header"
    retry = "no: fix the body"


class Unauthenticated(ApiProblem):
    status, title, type_slug = 401, "Authentication required", "unauthenticated"
    meaning = "no or wrong key or signature, or a stale `webhook-timestamp`"
    retry = "no: fix the credentials"

    def __init__(self, detail: str, **kwargs: Any):
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="handoff-connector"'})
        super().__init__(detail, **kwargs)


class Forbidden(ApiProblem):
    status, title, type_slug = 403, "Forbidden", "forbidden"
    meaning = "the credentials belong to another bot than `bot.id`"
    retry = "no"


class NotFound(ApiProblem):
    status, title, type_slug = 404, "Not found", "not-found"
    meaning = "nothing at this address for this caller: no such handoff for this bot, or no such route"
    retry = "no"


class Conflict(ApiProblem):
    status, title, type_slug = 409, "Conflict", "conflict"
    meaning = "the `Idempotency-Key` (or a signed request's `webhook-id`) came earlier with another body"
    retry = "no: a new key for a new handoff"


class MappingsRefused(ApiProblem):
    status, title, type_slug = 409, "Mappings refused", "mappings-refused"
    meaning = ("an edit of the mapping files is refused (the detail names file and line): the service serves the "
               "last good set")
    retry = "after fixing the file: the admin's dry run"


class PayloadTooLarge(ApiProblem):
    status, title, type_slug = 413, "Payload too large", "payload-too-large"
    meaning = "over `CONNECTOR_MAX_BODY_BYTES`"
    retry = "no: trim the transcript"

    @classmethod
    def over(cls, limit: int) -> "PayloadTooLarge":
        return cls(f"The body is larger than {limit} bytes (CONNECTOR_MAX_BODY_BYTES).",
                   errors={"(body)": [f"at most {limit} bytes"]})


class UnsupportedMediaType(ApiProblem):
    status, title, type_slug = 415, "Unsupported media type", "unsupported-media-type"
    meaning = "not `application/json`, not UTF-8 (naming the charset it declared), or compressed (`Content-Encoding`)"
    retry = "no"


class ValidationFailed(ApiProblem):
    status, title, type_slug = 422, "Validation failed", "validation-failed"
    meaning = "a field breaks a rule or a limit (`errors` lists them)"
    retry = "no: fix the fields"


class ServiceUnavailable(ApiProblem):
    status, title, type_slug = 503, "Service unavailable", "service-unavailable"
    meaning = ("the database cannot be reached or takes no writes (a read-only SQLite file; PostgreSQL read-only or a "
               "role without grants), or another request for the same handoff holds it; nothing was recorded")
    retry = "yes, after `Retry-After`, same key"


class InternalError(ApiProblem):
    status, title, type_slug = 500, "Internal server error", "internal-error"
    meaning = "a fault of ours, logged"
    retry = "yes, same key: a stored handoff is answered, not made twice"
