"""A fake Salesforce org at the HTTP boundary, for `responses`.

Registers realistic routes (SOAP login, OAuth token, SOQL query, sObject create / upsert / update)
answered from `tests/fixtures/salesforce/`, and reads back what was sent. Reusable by any test that
runs the Salesforce adapter, down to an end-to-end test through the web app:

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        org.query([])                      # no contact yet
        org.create("Contact", "003...")
        org.create("Case", "500...")
        org.create("CaseComment", "00a...")
        ...
        assert org.sent("Case")[0]["Subject"] == ...
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import parse_qs, urlparse

import responses
from responses import matchers

from adapters.salesforce_client import API_VERSION

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce"
HOST = "acme.my.salesforce.com"
INSTANCE = f"https://{HOST}"
TOKEN = "00D5g000004ABCD!AQ4AQGivenToken"
# Realistic 18-character ids by key prefix: 500 Case, 003 Contact, 00a CaseComment, 0D5 FeedItem.
IDS = {"Case": "5005g00000Hnd0fAAB", "Contact": "0035g00000Cst0mAAB", "CaseComment": "00a5g00000Cmt%02dAAB",
       "FeedItem": "0D55g00000Fd%02dAAB"}
QUEUE = "00G5g000003QueueAA"  # a case's owner: a queue (00G…) or a user (005…)
API_USER = "0055g00000ApiUsAAB"  # the connector's own user, who creates every case


def fixture(name: str, **values: Any) -> str:
    return Template((FIXTURES / name).read_text(encoding="utf-8")).substitute(values)


class SalesforceFake:
    def __init__(self, rsps: responses.RequestsMock, host: str = HOST):
        self.rsps = rsps
        self.host = host
        self.api = f"https://{host}/services/data/v{API_VERSION}"

    # ---- authentication ---------------------------------------------------------------------

    def password_login(self, session_id: str = "00D5g000004ABCD!AQ4AQLoggedIn", domain: str = "login") -> None:
        self.rsps.post(f"https://{domain}.salesforce.com/services/Soap/u/{API_VERSION}",
                       body=fixture("soap-login-ok.xml", host=self.host, session_id=session_id),
                       content_type="text/xml", match=[matchers.header_matcher({"SOAPAction": "login"})])

    def password_login_refused(self, domain: str = "login", code: str = "INVALID_LOGIN", status: int = 500) -> None:
        """The SOAP login's fault (every fault is a 500): `code` its exceptionCode."""
        body = fixture("soap-login-invalid.xml").replace("INVALID_LOGIN", code)
        self.rsps.post(f"https://{domain}.salesforce.com/services/Soap/u/{API_VERSION}", status=status,
                       body=body, content_type="text/xml")

    def client_credentials(self, access_token: str = "00D5g000004ABCD!AQ4AQClientCreds", status: int = 200) -> None:
        body = fixture("oauth-token-ok.json", access_token=access_token, host=self.host) if status == 200 \
            else fixture("oauth-token-invalid-client.json")
        self.rsps.post(f"https://{self.host}/services/oauth2/token", status=status, body=body,
                       content_type="application/json")

    # ---- data -------------------------------------------------------------------------------

    def query(self, records: list[dict[str, Any]], soql: str | None = None, sobject: str = "Contact") -> None:
        """GET query/ answering `records`; with `soql`, only that exact query string matches, else any
        query of `sobject`."""
        body = {"totalSize": len(records), "done": True, "records": [
            {"attributes": {"type": sobject, "url": f"/services/data/v{API_VERSION}/sobjects/{sobject}/{r.get('Id')}"},
             **r} for r in records]}
        match = [matchers.query_param_matcher({"q": soql})] if soql else [_from(sobject)]
        self.rsps.get(f"{self.api}/query/", json=body, match=match)

    def create(self, sobject: str, record_id: str | None = None, *, headers: dict[str, str] | None = None) -> str:
        """POST sobjects/<sobject>/ → 201; `headers` must then be on the request (e.g. Authorization)."""
        record_id = record_id or IDS[sobject]
        match = [matchers.header_matcher(headers)] if headers else []
        self.rsps.post(f"{self.api}/sobjects/{sobject}/", status=201, body=fixture("create-ok.json", id=record_id),
                       content_type="application/json", match=match)
        return record_id

    def new_case(self, comments: int = 1) -> None:
        """A handoff's first delivery: no contact found, so one is made, then the case (routed by
        Salesforce's assignment rules) and its transcript as `comments` case comments."""
        self.query([])
        self.create("Contact")
        self.create("Case", headers={"Sforce-Auto-Assign": "TRUE"})
        self.comments(comments)

    def case_state(self, case_id: str, *, closed: bool = False, gone: bool = False, owner: str = QUEUE,
                   owner_name: str = "Support", created_by: str = API_USER, active: bool = True) -> None:
        """The look at a conversation's case before adding to it: open, closed, or deleted (no row),
        and who owns it — by default the queue Salesforce's assignment rules put it in."""
        record = {"Id": case_id, "IsClosed": closed, "OwnerId": owner, "CreatedById": created_by,
                  "Owner": {"attributes": {"type": "Name", "url": f"/services/data/v{API_VERSION}/sobjects/"
                                                                  f"{'User' if owner.startswith('005') else 'Group'}"
                                                                  f"/{owner}"}, "Name": owner_name,
                            "IsActive": active if owner.startswith("005") else None}}
        self.query([] if gone else [record], sobject="Case",
                   soql=f"SELECT IsClosed, OwnerId, Owner.Name, Owner.IsActive, CreatedById FROM Case WHERE Id = "
                        f"'{case_id}'")

    def merged(self, case_id: str, into: str | None = None) -> None:
        """The look at a deleted case's merge, through queryAll (the recycle bin's rows too): the
        case Case Merge deleted it into (`MasterRecordId`), or None — deleted by hand, not merged."""
        record = {"attributes": {"type": "Case", "url": f"/services/data/v{API_VERSION}/sobjects/Case/{case_id}"},
                  "MasterRecordId": into}
        self.rsps.get(f"{self.api}/queryAll/", json={"totalSize": 1, "done": True, "records": [record]},
                      match=[matchers.query_param_matcher({"q": f"SELECT MasterRecordId FROM Case WHERE Id = "
                                                                f"'{case_id}'"})])

    def merged_away(self, masters: list[str], found: dict[str, str] | None = None, *, status: int = 200,
                    code: str | None = None) -> None:
        """The look, through queryAll, for the cases Case Merge deleted into one of `masters` (the
        cases an Outbound Message names): `found` maps each deleted case to its MasterRecordId. With
        `status` other than 200, Salesforce's error for it instead (`code` its errorCode)."""
        soql = ("SELECT Id, MasterRecordId FROM Case WHERE IsDeleted = true AND MasterRecordId IN "
                f"({','.join(repr(each) for each in sorted(masters))})")
        match = [matchers.query_param_matcher({"q": soql})]
        if status != 200:
            self.rsps.get(f"{self.api}/queryAll/", status=status, match=match,
                          json=[{"errorCode": code or ("INSUFFICIENT_ACCESS" if status == 403 else "SERVER_UNAVAILABLE"),
                                 "message": "refused" if status == 403 else "try again"}])
            return
        records = [{"attributes": {"type": "Case", "url": f"/services/data/v{API_VERSION}/sobjects/Case/{gone}"},
                    "Id": gone, "MasterRecordId": master} for gone, master in (found or {}).items()]
        self.rsps.get(f"{self.api}/queryAll/", json={"totalSize": len(records), "done": True, "records": records},
                      match=match)

    def comments(self, count: int, sobject: str = "CaseComment") -> list[str]:
        return [self.create(sobject, IDS[sobject] % n) for n in range(1, count + 1)]

    def upsert_case(self, path: str, record_id: str = IDS["Case"], *, created: bool = True) -> None:
        """PATCH sobjects/Case/<Field>/<value> → 201 created, or 200 when the record existed."""
        self.rsps.patch(f"{self.api}/sobjects/Case/{path}", status=201 if created else 200,
                        body=fixture("upsert-created.json" if created else "upsert-existing.json", id=record_id),
                        content_type="application/json")

    def describe_case(self, *fields: dict[str, Any]) -> None:
        """GET sobjects/Case/describe: Case's standard fields and `fields` (each a describe entry:
        name, type, length, externalId, unique), as the API user sees them."""
        standard = [{"name": "Id", "type": "id", "length": 18, "externalId": False, "unique": False},
                    {"name": "Subject", "type": "string", "length": 255, "externalId": False, "unique": False}]
        self.rsps.get(f"{self.api}/sobjects/Case/describe", json={"name": "Case", "fields": [*standard, *fields]})

    def update(self, sobject: str, record_id: str) -> None:
        self.rsps.patch(f"{self.api}/sobjects/{sobject}/{record_id}", status=204)

    def error(self, method: str, path: str, status: int, name: str, *, headers: dict[str, str] | None = None,
              match: list[Any] | None = None) -> None:
        """Answer `method path` (relative to the API root) with a recorded error body."""
        self.rsps.add(method, f"{self.api}/{path}", status=status, body=fixture(name),
                      content_type="application/json", headers=headers, match=match or [])

    def raise_(self, method: str, path: str, exc: Exception) -> None:
        """The transport fails: `exc` is raised where the answer would be (timeouts, resets)."""
        self.rsps.add(method, f"{self.api}/{path}", body=exc)

    # ---- what was sent ----------------------------------------------------------------------

    def calls(self, method: str | None = None, path: str | None = None) -> list[Any]:
        """Calls to the REST API, in order, optionally only `method` and paths starting with `path`."""
        return [c for c in self.rsps.calls
                if c.request.url.startswith(self.api)
                and (method is None or c.request.method == method)
                and (path is None or urlparse(c.request.url).path.startswith(urlparse(f"{self.api}/{path}").path))]

    def sent(self, sobject: str, method: str = "POST") -> list[dict[str, Any]]:
        """JSON bodies sent to sobjects/<sobject>/…, in order."""
        return [json.loads(c.request.body) for c in self.calls(method, f"sobjects/{sobject}/")]

    def queries(self, resource: str = "query/") -> list[str]:
        """SOQL strings sent to `resource` (queryAll/: deleted rows too), decoded, in order."""
        return [parse_qs(urlparse(c.request.url).query)["q"][0] for c in self.calls("GET", resource)]


def _from(sobject: str) -> Any:
    """A `responses` matcher: a SOQL query of `sobject` (`… FROM Contact …`)."""
    def match(request: Any) -> tuple[bool, str]:
        soql = parse_qs(urlparse(request.url).query).get("q", [""])[0]
        return f" FROM {sobject} " in f"{soql} ", f"not a query of {sobject}: {soql[:80]}"
    return match
