"""Every adapter's message for a failure on the way to its vendor begins as
`adapters.errors.TRANSPORT_FAILURE` says: a bot reads those without what the transport library adds
(it quotes host names), and reads a vendor's refusal whole (`connector.answers.for_bot`). A new
transport message that began otherwise would reach bots with the internal host in it."""

from __future__ import annotations

import urllib.error

import pytest
import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceGeneralError
from urllib3.exceptions import MaxRetryError, NewConnectionError

from adapters import salesforce_client, zendesk_http
from adapters.errors import TRANSPORT_FAILURE, DeliveryError
from adapters.slack import SlackAdapter
from connector.answers import for_bot
from connector.settings import Settings

URL = "http://zendesk-proxy.internal:8443/api/v2/tickets.json"


def _request() -> requests.PreparedRequest:
    return requests.Request("POST", URL).prepare()


def _refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to resolve 'zendesk-proxy.internal'")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, URL, reason), request=_request())  # type: ignore[arg-type]


TRANSPORT = [
    requests.ConnectTimeout("HTTPConnectionPool(host='zendesk-proxy.internal', port=8443)", request=_request()),
    requests.exceptions.SSLError("certificate is not valid for 'zendesk-proxy.internal'", request=_request()),
    requests.exceptions.ProxyError("Unable to connect to proxy 'proxy.internal:3128'", request=_request()),
    requests.exceptions.RetryError("Max retries exceeded at zendesk-proxy.internal", request=_request()),
    _refused(),
    requests.ReadTimeout("HTTPConnectionPool(host='zendesk-proxy.internal', port=8443): read timed out",
                         request=_request()),
]


@pytest.mark.parametrize("err", TRANSPORT, ids=lambda err: type(err).__name__)
@pytest.mark.parametrize("write", [True, False])
def test_zendesk_and_salesforce_transport_messages_are_recognised_and_name_no_host(err, write):
    for translated in (zendesk_http._from_requests(err, write), salesforce_client.translate(err, write=write)):
        recorded = f"{type(translated).__name__}: {translated.message}"
        assert TRANSPORT_FAILURE.match(recorded), recorded
        assert "internal" not in for_bot(recorded), for_bot(recorded)


def test_slacks_transport_messages_are_recognised(monkeypatch):
    adapter = SlackAdapter(Settings(slack_bot_token="xoxb-1", slack_channel="C0HANDOFF",
                                    slack_api_url="https://slack.internal/api/"), {})
    for failure in (urllib.error.URLError("[Errno -2] Name or service not known: slack.internal"),
                    ConnectionResetError("[Errno 104] reset by slack.internal")):
        def fail(**_: object) -> None:
            raise failure

        monkeypatch.setattr(adapter, "_client", lambda: type("C", (), {"chat_postMessage": staticmethod(fail)})())
        with pytest.raises(DeliveryError) as caught:
            adapter._call("chat_postMessage", acts=True, channel="C0HANDOFF")
        recorded = f"{type(caught.value).__name__}: {caught.value.message}"
        assert TRANSPORT_FAILURE.match(recorded), recorded
        assert "internal" not in for_bot(recorded), for_bot(recorded)


PAGE = "<html><body><h1>502 Bad Gateway</h1>upstream proxy-7.corp.internal timed out; call ops</body></html>"


def _page_answer() -> requests.Response:
    response = requests.Response()
    response.status_code, response.reason, response._content = 502, "Bad Gateway", PAGE.encode()
    response.headers["Content-Type"] = "text/html"
    response.request = _request()
    return response


def _raised(call) -> DeliveryError:  # type: ignore[no-untyped-def]
    try:
        call()
    except DeliveryError as err:
        return err
    raise AssertionError("nothing raised")


def _slack_page_error() -> DeliveryError:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.slack_response import SlackResponse

    from adapters.slack import NOT_JSON, _api_error

    data = {"ok": False, "error": f"{NOT_JSON}: {PAGE}"}  # what slack-sdk makes of a body that is not JSON
    response = SlackResponse(client=None, http_verb="POST", api_url="", req_args={}, data=data, headers={},
                             status_code=502)
    return _api_error("chat.postMessage", SlackApiError("failed", response), acts=True, channel="C0HANDOFF")


class _PageSession:
    def post(self, *_: object, **__: object) -> requests.Response:
        answer = _page_answer()
        answer.status_code = 403
        return answer


@pytest.mark.parametrize("made", [
    lambda: zendesk_http.error_for_response(_page_answer()),
    # a login answered by a proxy's page: simple-salesforce passes the status and the page's text
    lambda: salesforce_client.translate(SalesforceAuthenticationFailed(502, PAGE), write=True),
    lambda: _raised(lambda: salesforce_client._client_credentials(
        Settings(salesforce_instance_url="https://acme.my.salesforce.com", salesforce_client_id="id",
                 salesforce_client_secret="secret"), _PageSession())),
    lambda: salesforce_client.translate(SalesforceGeneralError(URL, 502, "Case", PAGE), write=True),
    _slack_page_error,
], ids=["zendesk", "salesforce-login", "salesforce-token", "salesforce", "slack"])
def test_a_proxys_page_is_for_admins_and_the_bot_reads_that_it_came(made):
    # A gateway's page in front of a vendor reached the bot as the error's text (`<html>…`, and the
    # internal host it named): not the vendor's words on the request. Admins read it whole.
    recorded = f"{type(made()).__name__}: {made().message}"
    assert "an answer that is not" in recorded and "upstream proxy-7.corp.internal" in recorded
    shown = for_bot(recorded)
    assert "internal" not in shown and "<html>" not in shown, shown
    assert shown.endswith("(what it said is on the admin page)") and "answer that is not" in shown


def test_a_proxys_page_quoted_in_a_receipts_reason_is_cut_for_the_bot_too():
    # A comment refused by a gateway's 413 page: the receipt's reason quoted the page to the bot.
    from connector.answers import receipt_for_bot

    refused = salesforce_client.translate(SalesforceGeneralError(URL, 413, "CaseComment", PAGE), write=True)
    receipt = {"delivered": ["summary"], "dropped": [
        {"part": "transcript", "reason": f"Salesforce refused the comment 'part 2/3' ({refused.message})"},
        {"part": "mapping", "reason": "zendesk.yaml custom_fields[0]: template error"}]}
    shown = receipt_for_bot(receipt)
    assert "internal" not in str(shown) and shown["dropped"][1] == receipt["dropped"][1]
    assert shown["dropped"][0]["reason"].startswith("Salesforce refused the comment 'part 2/3' (Salesforce 413")
    assert receipt_for_bot(shown) == shown and receipt_for_bot({"delivered": []}) == {"delivered": []}


# ---- a transport failure after the adapter's own words --------------------------------------------

EGRESS = "https://zendesk-egress.corp.internal:8443"


class _BrokenAfterSending(requests.exceptions.SSLError):
    """A TLS record broken in the answer, after the request left (`call_deadline.request_sent`)."""

    request_sent = property(lambda self: True, lambda self, value: None)


def _posted(client, packet):
    import json

    from tests.conftest import auth

    answer = client.post("/v1/handoffs", data=json.dumps(packet), headers=auth(), content_type="application/json")
    read = client.get(answer.get_json()["links"]["self"], headers=auth()).get_json()
    return answer.get_json(), read


def test_tls_broken_after_sending_reaches_the_bot_without_the_proxys_host(make_app):
    # A review: "TLS broke after the request was sent to https://zendesk-egress.corp.internal:8443/…"
    # was no transport message, and reached the bot whole.
    import responses

    from tests.factories import minimal_packet

    client = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                      zendesk_api_token="t", zendesk_base_url=EGRESS).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add("POST", f"{EGRESS}/api/v2/tickets.json", body=_BrokenAfterSending(
            "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed or bad record mac (_ssl.c:2580) talking "
            "to zendesk-egress.corp.internal (10.20.30.40)"))
        answer, read = _posted(client, minimal_packet())
    error = answer["tickets"][0]["error"]
    assert error.startswith("OutcomeUnknown: TLS broke after the request was sent to") and "details are on" in error
    assert "corp.internal" not in str(answer) and "10.20.30.40" not in str(answer)
    assert "corp.internal" not in str(read) and "10.20.30.40" not in str(read)


def test_a_transport_failure_after_a_case_was_made_reaches_the_bot_without_the_host(make_app):
    # A review: "case … exists but its transcript is incomplete: could not reach Salesforce: … host=
    # 'sfdc-egress.corp.internal', port=3128" — the transport words after the adapter's own.
    import responses

    from tests.factories import full_packet
    from tests.fakes.salesforce import INSTANCE, TOKEN, SalesforceFake

    client = make_app(targets=("salesforce",), salesforce_instance_url=INSTANCE,
                      salesforce_access_token=TOKEN).test_client()
    url = f"{INSTANCE}/services/data/v60.0/sobjects/CaseComment/"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        org = SalesforceFake(rsps)
        org.query([])
        org.create("Contact")
        org.create("Case")
        reason = NewConnectionError(None, "HTTPSConnection(host='sfdc-egress.corp.internal', port=3128): "  # type: ignore[arg-type]
                                          "Failed to establish a new connection: [Errno 111] Connection refused")
        org.raise_("POST", "sobjects/CaseComment/", requests.ConnectionError(MaxRetryError(None, url, reason)))  # type: ignore[arg-type]
        answer, read = _posted(client, full_packet())
    error = answer["tickets"][0]["error"]
    assert "exists but its transcript is incomplete: could not reach Salesforce" in error, error
    assert "corp.internal" not in str(answer) and "3128" not in str(answer) and "corp.internal" not in str(read)


def test_slacks_words_after_posting_keep_the_transport_out_too():
    said = ("OutcomeUnknown: alert C0HANDOFF/1732190000.000100 posted, then: Slack chat.postMessage: cannot reach "
            "Slack: <urlopen error [Errno -2] Name or service not known: slack-egress.corp.internal:8443>")
    assert "corp.internal" not in for_bot(said) and for_bot(said).startswith("OutcomeUnknown: alert C0HANDOFF")


def test_a_vendors_refusal_that_says_could_not_connect_is_read_whole():
    # A review: a search anywhere in the message took a validation rule's words for a transport
    # failure, and cut them ("…attach the warranty (the connection's details are on the admin page)").
    from simple_salesforce.exceptions import SalesforceMalformedRequest

    rule = ("Warranty cases could not connect to a product without its serial: attach the warranty certificate "
            "under 'Files' before 17:30, see https://acme.my.salesforce.com/help")
    refused = salesforce_client.translate(SalesforceMalformedRequest(
        URL, 400, "Case", [{"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": rule}]), write=True)
    recorded = f"{type(refused).__name__}: {refused.message}"
    assert rule in recorded and for_bot(recorded) == recorded
