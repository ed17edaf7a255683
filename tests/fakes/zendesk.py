"""A fake Zendesk at the HTTP boundary, for `responses`: realistic replies from
`tests/fixtures/zendesk/`, and a check of request bodies against Zendesk's own OpenAPI description.

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        zd = FakeZendesk(rsps)
        zd.create_ticket()
        ...                                   # run the adapter, or the web app end to end
        body = zd.json_bodies("POST", "/api/v2/tickets.json")[0]
        zd.assert_ticket_requests_valid()

Every route answers as Zendesk does (create → 201 with `ticket` *and* `audit`, as zenpy expects).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses
import yaml
from responses import matchers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zendesk"
# A copy of Zendesk's own description, kept in the repo so tests need nothing outside it.
SPEC = Path(__file__).resolve().parents[1] / "vendor-specs" / "zendesk-support-oas.yaml"
ORIGIN = "https://acme.zendesk.com"


def fixture(name: str) -> Any:
    """A recorded reply; a fresh copy each time, so tests may edit it."""
    path = FIXTURES / name
    return json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else path.read_text(encoding="utf-8")


class FakeZendesk:
    """Registers Zendesk routes on a `responses.RequestsMock`; each method returns the route."""

    def __init__(self, rsps: responses.RequestsMock, origin: str = ORIGIN):
        self.rsps = rsps
        self.origin = origin.rstrip("/")
        # End users this fake Zendesk holds, by id: what `create_or_update_user` made or `end_user` seeded.
        self.users: dict[int, dict[str, Any]] = {}
        self._tagged: set[str] = set()  # tickets whose Add Tags route is registered (`_tags_beside`)

    # ---- routes -------------------------------------------------------------------------------

    def create_ticket(self, ticket: Mapping[str, Any] | None = None, *, replay: bool = False,
                      quota: Mapping[str, str] | None = None) -> responses.BaseResponse:
        """`quota`: rate-limit headers to answer with (`X-Rate-Limit-Remaining`, `ratelimit-reset`…)."""
        body = fixture("ticket-create-201.json")
        body["ticket"].update(ticket or {})
        headers = {"x-idempotency-lookup": "hit" if replay else "miss", "Location": body["ticket"]["url"], **(quota or {})}
        return self._add("POST", "/api/v2/tickets.json", 201, body, headers)

    def me(self, **user: Any) -> responses.BaseResponse:
        """`GET /api/v2/users/me.json`, shaped as Zendesk's description's example (an agent);
        `id=None` is how Zendesk answers a caller it could not authenticate."""
        body = {"user": {"id": 35436, "name": "Johnny Agent", "email": "johnny@example.com", "role": "agent",
                         "url": f"{self.origin}/api/v2/users/35436", **user}}
        return self._add("GET", "/api/v2/users/me.json", 200, body)

    def update_ticket(self, ticket_id: int = 77120, *, quota: Mapping[str, str] | None = None,
                      status: str = "open", priority: str | None = "normal",
                      assignee_id: int | None = 381156009921) -> responses.BaseResponse:
        """`status`, `priority`, `assignee_id`: the ticket's after the update, as Zendesk answers it
        (priority None: none; assignee None: nobody has it). A handoff's update adds its tags first
        (`add_tags`), which is registered too."""
        body = fixture("ticket-update-200.json")
        body["ticket"]["id"] = body["audit"]["ticket_id"] = ticket_id
        body["ticket"]["assignee_id"] = assignee_id
        body["ticket"]["status"] = status
        body["ticket"]["priority"] = priority
        return self._add("PUT", f"/api/v2/tickets/{ticket_id}.json", 200, body, quota)

    def add_tags(self, ticket_id: int | str = 77120) -> responses.BaseResponse:
        """Add Tags (`PUT /api/v2/tickets/{id}/tags`): answers with the tags sent, as the ticket's.
        Registered with every route that updates a ticket (`_add`, `raises`): a handoff's update
        adds its tags before its note."""
        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            return 200, {}, json.dumps({"tags": json.loads(request.body)["tags"]})

        return self.rsps.add(_Optional("PUT", f"{self.origin}/api/v2/tickets/{ticket_id}/tags", callback=answer,
                                       content_type="application/json"))

    def show_ticket(self, ticket_id: int = 1001, *, status: str | None = None, tags: list[str] | None = None,
                    assignee: int | None = None) -> responses.BaseResponse:
        """Show Ticket; `status`, `tags`, `assignee`: the ticket's, where the recording's (new,
        ["handoff"], nobody) will not do."""
        ticket = fixture("tickets-by-external-id.json")["tickets"][0]
        ticket["id"] = ticket_id
        changes = (("status", status), ("tags", tags), ("assignee_id", assignee))
        ticket.update({key: value for key, value in changes if value is not None})
        return self._add("GET", f"/api/v2/tickets/{ticket_id}.json", 200, {"ticket": ticket})

    def audits(self, ticket_id: int = 77120, *, merged_into: int | None = None) -> responses.BaseResponse:
        """`GET /api/v2/tickets/{id}/audits.json`, newest first: a closed ticket's history. With
        `merged_into`, its last audit is the merge that closed it, as Zendesk records one on each
        ticket merged (`via.source.rel` "merge", the other ticket in `via.source.from.ticket_id`);
        without, that audit is not there (a ticket closed after it was solved). Shaped after
        Zendesk's TicketAuditObject and that `via` as integrations following merges read it: not a
        recording."""
        body = fixture("ticket-audits-merged.json")
        merge, *older = body["audits"]
        if merged_into is None:
            body.update(audits=older, count=len(older))
        else:
            merge["via"]["source"]["from"]["ticket_id"] = merged_into
        for audit in body["audits"]:
            audit["ticket_id"] = ticket_id
        return self._add("GET", f"/api/v2/tickets/{ticket_id}/audits.json", 200, body,
                         match=[matchers.query_param_matcher({"sort_order": "desc"})])

    def tickets_by_external_id(self, external_id: str, *, found: bool = True) -> responses.BaseResponse:
        body = fixture("tickets-by-external-id.json")
        if found:
            body["tickets"][0]["external_id"] = external_id
        else:
            body.update(tickets=[], count=0)
        return self._add("GET", "/api/v2/tickets.json", 200, body, match=[matchers.query_param_matcher(
            {"external_id": external_id})])

    def first_comment(self, ticket_id: int | str, *files: str) -> responses.BaseResponse:
        """List Comments, oldest first, a page of one: the ticket's first comment with `files` attached."""
        comment = {"id": 1, "type": "Comment", "public": False, "html_body": "<p>brief</p>",
                   "attachments": [{"id": 10 + n, "file_name": name, "content_type": "text/plain", "size": 1}
                                   for n, name in enumerate(files)]}
        return self._add("GET", f"/api/v2/tickets/{ticket_id}/comments.json", 200,
                         {"comments": [comment], "next_page": None, "previous_page": None, "count": 1},
                         match=[matchers.query_param_matcher({"sort_order": "asc", "per_page": "1"})])

    def upload(self, filename: str | None = None, token: str = "6bk3gql82em5nmf") -> responses.BaseResponse:
        body = fixture("upload-201.json")
        body["upload"]["token"] = token
        match = [matchers.query_param_matcher({"filename": filename})] if filename else []
        return self._add("POST", "/api/v2/uploads.json", 201, body, match=match)

    def search(self, query: str | None = None, results: list[dict[str, Any]] | None = None) -> responses.BaseResponse:
        body = fixture("search-open-tickets.json")
        if results is not None:
            body.update(results=results, count=len(results))
        match = [matchers.query_param_matcher({"query": query}, strict_match=False)] if query else []
        return self._add("GET", "/api/v2/search.json", 200, body, match=match)

    def requested_tickets(self, user_id: int = 902841177231,
                          tickets: list[dict[str, Any]] | None = None) -> responses.BaseResponse:
        """`GET /api/v2/users/{user_id}/tickets/requested.json`: the tickets a user requested, of any
        status, newest first (a read of the ticket table, not the search index); by default a solved
        ticket and, older, an open one with an agent."""
        body = fixture("tickets-requested.json")
        if tickets is not None:
            body.update(tickets=tickets, count=len(tickets))
        for ticket in body["tickets"]:
            ticket["requester_id"] = user_id
        return self._add("GET", f"/api/v2/users/{user_id}/tickets/requested.json", 200, body)

    def show_user(self, user_id: int = 381156009921, **user: Any) -> responses.BaseResponse:
        body = fixture("user-show-agent.json")
        body["user"].update(id=user_id, **user)
        return self._add("GET", f"/api/v2/users/{user_id}.json", 200, body)

    # ---- end users: a customer known by the bot's id, not by e-mail -------------------------------

    def end_user(self, **user: Any) -> dict[str, Any]:
        """Seed an end user this Zendesk already holds (no route registered); returns it."""
        made = {**fixture("user-end-user-201.json")["user"], **user}
        made.setdefault("id", 902841177231)
        made["url"] = f"{self.origin}/api/v2/users/{made['id']}.json"
        self.users[made["id"]] = made
        return made

    def users_by_external_id(self) -> responses.BaseResponse:
        """`GET /api/v2/users/show_many.json?external_ids=a,b`: the users held with those external ids
        (Zendesk's own lookup of the user table, not its eventually consistent search). Matched as
        Zendesk matches external ids, case-insensitively (its user object: "ian1" and "IAN1" are
        the same value): asked for `abc123`, it answers the user held as `AbC123`, and suspended
        users, agents and admins too."""
        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            wanted = [value for value in _query(request, "external_ids").split(",") if value]
            users = [u for u in self.users.values() if any(_same(u.get("external_id"), value) for value in wanted)]
            return 200, {}, json.dumps({"users": users, "next_page": None, "previous_page": None, "count": len(users)})
        return self.rsps.add_callback("GET", f"{self.origin}/api/v2/users/show_many.json", callback=answer,
                                      content_type="application/json")

    def create_or_update_user(self) -> responses.BaseResponse:
        """`POST /api/v2/users/create_or_update.json` as Zendesk answers it: a user matched by its
        external_id (case-insensitively; the id then takes the case sent) or e-mail is updated with
        what was sent, 200; none matched, a new end user, 201. The same external_id, the same user."""
        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            sent = json.loads(request.body)["user"]
            match = next((u for u in self.users.values() if _same(u.get("external_id"), sent.get("external_id"))
                          or _same(u.get("email"), sent.get("email"))), None)
            fields = {key: value for key, value in sent.items() if key != "skip_verify_email"}
            if match is not None:
                match.update(fields)
                return 200, {}, json.dumps({"user": match})
            made = self.end_user(**fields, id=902841177231 + len(self.users))
            return 201, {"Location": made["url"]}, json.dumps({"user": made})
        return self.rsps.add_callback("POST", f"{self.origin}/api/v2/users/create_or_update.json", callback=answer,
                                      content_type="application/json")

    def error(self, method: str, path: str, status: int, body: Any = None,
              headers: Mapping[str, str] | None = None) -> responses.BaseResponse:
        """An error answer; `body` a fixture name, a dict, or text (e.g. a load balancer's HTML)."""
        if isinstance(body, str) and (FIXTURES / body).exists():
            body = fixture(body)
        return self._add(method, path, status, body, headers)

    def raises(self, method: str, path: str, exc: BaseException) -> responses.BaseResponse:
        """The transport fails (timeout, refused connection) instead of answering."""
        self._tags_beside(method, path)
        return self.rsps.add(method, self.origin + path, body=exc)

    # ---- what was sent ------------------------------------------------------------------------

    def calls(self, method: str, path: str) -> list[Any]:
        url = self.origin + path
        return [c for c in self.rsps.calls if c.request.method == method and c.request.url.split("?")[0] == url]

    def json_bodies(self, method: str, path: str) -> list[dict[str, Any]]:
        return [json.loads(c.request.body) for c in self.calls(method, path)]

    def assert_ticket_requests_valid(self) -> None:
        """Every ticket create / update body, and every end user upsert, sent matches Zendesk's
        OpenAPI request schema (its requester and user objects closed: see `_spec_validators`)."""
        for call in self.rsps.calls:
            path = call.request.url.split("?")[0][len(self.origin):]
            name = None
            if path.startswith("/api/v2/tickets") and call.request.method in ("POST", "PUT"):
                name = "TicketCreateRequest" if call.request.method == "POST" else "TicketUpdateRequest"
            elif path == "/api/v2/users/create_or_update.json" and call.request.method == "POST":
                name = "UserRequest"
            if name is not None:
                errors = validation_errors(json.loads(call.request.body), name)
                assert not errors, f"{call.request.method} {path} breaks Zendesk's {name}: {errors}"

    def _tags_beside(self, method: str, path: str) -> None:
        """Add Tags for a ticket an update is registered for, once (`add_tags`)."""
        match = re.fullmatch(r"/api/v2/tickets/(\d+)\.json", path)
        if method == "PUT" and match and match[1] not in self._tagged:
            self._tagged.add(match[1])
            self.add_tags(match[1])

    def _add(self, method: str, path: str, status: int, body: Any,
             headers: Mapping[str, str] | None = None, match: list[Any] | None = None) -> responses.BaseResponse:
        self._tags_beside(method, path)
        kwargs: dict[str, Any] = {"json": copy.deepcopy(body)} if isinstance(body, (dict, list)) else {
            "body": body or "", "content_type": "text/html"}
        return self.rsps.add(method, self.origin + path, status=status, headers=dict(headers or {}),
                             match=match or [], **kwargs)


class _Optional(responses.CallbackResponse):
    """A route a test may or may not reach (Add Tags beside an update: a batch of messages adds a note
    and no tags), so the mock's "every route was called" check passes it by. What is sent to it is
    asserted where it matters (`json_bodies`)."""

    @property
    def call_count(self) -> int:
        return max(1, len(self._calls))


def _query(request: Any, name: str) -> str:
    values = parse_qs(urlsplit(request.url).query).get(name)
    return values[0] if values else ""


def _same(held: Any, sent: Any) -> bool:
    return isinstance(held, str) and isinstance(sent, str) and bool(sent) and held.casefold() == sent.casefold()


# ---- Zendesk's OpenAPI description ------------------------------------------------------------


@functools.cache
def _spec_validators() -> dict[str, Any]:
    """Load the 1.6 MB spec once per process (about half a second with libyaml)."""
    from openapi_schema_validator import OAS30WriteValidator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        """SafeLoader plus the `=` scalar (tag:yaml.org,2002:value) the spec uses once."""

    Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
    if not SPEC.exists():
        raise AssertionError(f"Zendesk's OpenAPI description is missing: {SPEC} (see tests/vendor-specs/SOURCES.json)")
    with SPEC.open(encoding="utf-8") as handle:
        spec = yaml.load(handle, Loader=Loader)  # a SafeLoader subclass: no arbitrary objects
    _close_user_objects(spec["components"]["schemas"])
    registry = Registry().with_resource("urn:zendesk-support", Resource.from_contents(spec, DRAFT4))
    # The write validator also refuses read-only properties (id, url, created_at…) in a request.
    return {name: OAS30WriteValidator({"$ref": f"urn:zendesk-support#/components/schemas/{name}"}, registry=registry)
            for name in ("TicketCreateRequest", "TicketUpdateRequest", "UserRequest")}


def _close_user_objects(schemas: dict[str, Any]) -> None:
    """The description leaves objects open (no `additionalProperties: false`), so a key Zendesk does
    not take passed the check: a requester's `phone` and `external_id` were sent, and dropped by
    Zendesk, on every handoff without an e-mail. Closed here where a closed object is the truth —
    the ticket's requester object and the user objects of an upsert — not on the ticket itself,
    whose fields a bot's vendor_extra may add before the description knows them."""
    [requester] = [variant for variant in schemas["TicketObject"]["properties"]["requester"]["oneOf"]
                   if variant.get("type") == "object"]
    for closed in (requester, schemas["UserCreateInput"], schemas["UserMergeInput"]):
        assert "properties" in closed and "additionalProperties" not in closed, "the description changed: look again"
        closed["additionalProperties"] = False


def validation_errors(body: Mapping[str, Any], schema: str = "TicketCreateRequest") -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in _spec_validators()[schema].iter_errors(body)]
