"""Salesforce end to end: POST /v1/handoffs → a real SalesforceAdapter → Salesforce faked at the HTTP boundary."""

from __future__ import annotations

import json

import responses

from tests.conftest import auth
from tests.factories import full_packet
from tests.fakes.salesforce import IDS, INSTANCE, TOKEN, SalesforceFake

SALESFORCE = {"targets": ("salesforce",), "salesforce_instance_url": INSTANCE, "salesforce_access_token": TOKEN}


def test_handoff_opens_a_case_with_the_transcript_as_comments(make_app):
    client = make_app(**SALESFORCE).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        org = SalesforceFake(rsps)
        org.new_case()
        response = client.post("/v1/handoffs", data=json.dumps(full_packet()), headers=auth(),
                               content_type="application/json")
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        [ticket] = body["tickets"]
        assert ticket["status"] == "created" and ticket["id"] == IDS["Case"]
        assert ticket["url"] == f"{INSTANCE}/lightning/r/Case/{IDS['Case']}/view"
        [case] = org.sent("Case")
        assert case["Subject"].startswith("Invoices stopped syncing to QuickBooks")
        assert "WHY A PERSON IS NEEDED" in case["Description"]
        [comment] = org.sent("CaseComment")
        assert "[09:17:10] Customer: Did that. Still broken" in comment["CommentBody"]
