"""The admin page: signing in with the admin token, the dashboard, one handoff in full, replays —
and that a customer's words stay text, forms need the session's CSRF token, and nothing opens it
without the token."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select, update

from connector.models import Delivery
from tests.conftest import ADMIN_TOKEN, BOT_KEY, auth
from tests.factories import full_packet, minimal_packet


@pytest.fixture
def app(make_app):
    app = make_app()
    app.config["CHECK_OPENAPI"] = False  # HTML pages, not in the API's document
    return app


def signed_in(app):
    client = app.test_client()
    response = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert response.status_code == 302 and response.headers["Location"] == "/admin"
    return client


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def handoff(client_or_app, packet=None) -> str:
    client = client_or_app.test_client() if hasattr(client_or_app, "test_client") else client_or_app
    response = client.post("/v1/handoffs", data=json.dumps(packet or minimal_packet()), headers=auth(),
                           content_type="application/json")
    return response.get_json()["id"]


def test_signing_in_takes_the_admin_token_and_sets_a_strict_cookie(app):
    client = app.test_client()
    assert client.get("/admin").headers["Location"] == "/admin/login"
    assert "Admin token" in client.get("/admin/login").get_data(as_text=True)
    for wrong in ("", "nope", BOT_KEY):
        refused = client.post("/admin/login", data={"token": wrong})
        assert refused.status_code == 401 and "not the admin token" in refused.get_data(as_text=True)
        assert "Set-Cookie" not in refused.headers
    ok = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    cookie = ok.headers["Set-Cookie"]
    assert cookie.startswith("connector_admin=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/admin" in cookie and "Secure" not in cookie  # http here; https public URLs get Secure
    assert client.get("/admin").status_code == 200
    page = client.get("/admin").get_data(as_text=True)
    assert client.post("/admin/logout", data={"csrf": csrf_of(page)}).status_code == 302
    assert client.get("/admin").status_code == 302  # signed out


def test_another_token_signs_every_session_out(make_app, tmp_path):
    first = make_app(database_url=f"sqlite:///{tmp_path}/a.db")
    first.config["CHECK_OPENAPI"] = False
    client = signed_in(first)
    cookie = client.get_cookie("connector_admin", path="/admin").value
    rotated = make_app(database_url=f"sqlite:///{tmp_path}/a.db", admin_token="another-admin-token-0123456789ab")
    rotated.config["CHECK_OPENAPI"] = False
    other = rotated.test_client()
    other.set_cookie("connector_admin", cookie, path="/admin")
    assert other.get("/admin").status_code == 302


def test_without_an_admin_token_the_page_is_off(make_app):
    app = make_app(admin_token="")
    app.config["CHECK_OPENAPI"] = False
    response = app.test_client().get("/admin/login")
    assert response.status_code == 404 and "set CONNECTOR_ADMIN_TOKEN" in response.get_data(as_text=True)
    assert app.test_client().post("/admin/login", data={"token": ""}).status_code == 404


def test_the_dashboard_shows_readiness_backlog_and_what_was_given_up_and_replays_it(app):
    client = signed_in(app)
    handoff_id = handoff(client)
    services = app.extensions["connector"]
    with services.db.session() as session:
        session.execute(update(Delivery).values(state="dead", last_error="TransientError: 503 from the vendor"))
    page = client.get("/admin").get_data(as_text=True)
    assert "Ready" in page and "answers (sqlite)" in page and "preview" in page
    assert handoff_id in page and "503 from the vendor" in page and "Replay every dead delivery" in page
    [delivery_id] = re.findall(r'/admin/deliveries/(\d+)/retry', page)

    assert client.post(f"/admin/deliveries/{delivery_id}/retry").status_code == 400  # no CSRF token
    assert client.post(f"/admin/deliveries/{delivery_id}/retry", data={"csrf": "forged"}).status_code == 400
    with services.db.reading() as session:
        assert session.get(Delivery, int(delivery_id)).state == "dead"
    replayed = client.post(f"/admin/deliveries/{delivery_id}/retry",
                           data={"csrf": csrf_of(page), "back": "//evil.example/"}, follow_redirects=True)
    assert replayed.request.path == "/admin"  # back only to a page of ours
    assert f"Delivery {delivery_id} is being delivered again" in replayed.get_data(as_text=True)
    services.executor.shutdown(wait=True)  # the replay's attempt ran on the pool
    with services.db.reading() as session:
        assert session.get(Delivery, int(delivery_id)).state in ("created", "updated")

    with services.db.session() as session:
        session.execute(update(Delivery).values(state="dead"))
    bulk = client.post("/admin/deliveries/retry", data={"csrf": csrf_of(page)}, follow_redirects=True)
    assert "1 dead delivery queued again." in bulk.get_data(as_text=True)


def test_a_given_up_delivery_is_dismissed_from_the_dashboard(app):
    client = signed_in(app)
    handoff(client)
    services = app.extensions["connector"]
    with services.db.session() as session:
        session.execute(update(Delivery).values(state="dead", last_error="TransientError: 503 from the vendor"))
    page = client.get("/admin").get_data(as_text=True)
    [delivery_id] = re.findall(r'/admin/deliveries/(\d+)/dismiss', page)
    assert client.post(f"/admin/deliveries/{delivery_id}/dismiss").status_code == 400  # no CSRF token
    done = client.post(f"/admin/deliveries/{delivery_id}/dismiss", data={"csrf": csrf_of(page)}, follow_redirects=True)
    assert f"Delivery {delivery_id} is dismissed" in done.get_data(as_text=True)
    assert "No dead or failed deliveries." in done.get_data(as_text=True)
    again = client.post(f"/admin/deliveries/{delivery_id}/dismiss", data={"csrf": csrf_of(page)}, follow_redirects=True)
    assert "nothing dismissed" in again.get_data(as_text=True)


def test_a_handoff_page_shows_everything_and_a_customers_markup_stays_text(app):
    client = signed_in(app)
    packet = full_packet()
    packet["customer"]["name"] = "<script>alert('name')</script>"
    packet["transcript"][0]["text"] = '<img src=x onerror="alert(1)"> {{ 7*7 }}'
    handoff_id = handoff(client, packet)
    response = client.get(f"/admin/handoffs/{handoff_id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and f"Handoff {handoff_id}" in page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in page and "{{ 7*7 }}" in page
    assert "What was sent" in page and "WHY A PERSON IS NEEDED" in page  # the brief and the preview's payload
    assert "<dt>solved</dt><dd>not yet</dd>" in page
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Frame-Options"] == "DENY"
    assert client.get("/admin/style.css").mimetype == "text/css"

    said = {"messages": [{"at": "2026-11-20T09:30:00Z", "role": "customer", "text": "hello again?"}]}
    batch = client.post(f"/v1/handoffs/{handoff_id}/messages", data=json.dumps(said), headers=auth(),
                        content_type="application/json").get_json()["id"]
    page = client.get(f"/admin/handoffs/{handoff_id}").get_data(as_text=True)
    assert batch in page and "Messages while waiting" in page
    messages = client.get(f"/admin/handoffs/{batch}").get_data(as_text=True)
    assert "Sent while handoff" in messages and "hello again?" in messages and "WHY A PERSON" not in messages
    found = client.get(f"/admin/handoffs?id=+{handoff_id}+")
    assert found.headers["Location"] == f"/admin/handoffs/{handoff_id}"
    assert client.get("/admin/handoffs/hnd_nope").status_code == 404


def test_the_dashboard_says_when_the_database_is_away(make_app, tmp_path):
    import shutil

    app = make_app(database_url=f"sqlite:///{tmp_path}/gone/x.db")
    app.config["CHECK_OPENAPI"] = False
    client = signed_in(app)
    app.extensions["connector"].db.dispose()
    shutil.rmtree(tmp_path / "gone")
    page = client.get("/admin")
    assert page.status_code == 200
    assert "Not ready" in page.get_data(as_text=True) and "refused with 503" in page.get_data(as_text=True)


def test_the_session_holds_on_another_worker_and_ends_eight_hours_after_signing_in(make_app, tmp_path, monkeypatch):
    """Every gunicorn worker derives the same key from the token; the 8 hours count from signing in,
    not from the last page (the cookie is re-signed as it is used)."""
    import time

    first = make_app(database_url=f"sqlite:///{tmp_path}/a.db")
    first.config["CHECK_OPENAPI"] = False
    cookie = signed_in(first).get_cookie("connector_admin", path="/admin").value
    second = make_app(database_url=f"sqlite:///{tmp_path}/a.db")
    second.config["CHECK_OPENAPI"] = False
    other = second.test_client()
    other.set_cookie("connector_admin", cookie, path="/admin")
    assert other.get("/admin").status_code == 200
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 7.9 * 3600)
    assert other.get("/admin").status_code == 200
    monkeypatch.setattr(time, "time", lambda: now + 8.1 * 3600)
    assert other.get("/admin").headers["Location"] == "/admin/login"


def test_the_cookie_is_secure_over_https_and_never_reaches_the_api(make_app):
    app = make_app(public_url="https://connector.example")
    app.config["CHECK_OPENAPI"] = False
    assert "Secure" in app.test_client().post("/admin/login", data={"token": ADMIN_TOKEN}).headers["Set-Cookie"]
    plain = make_app()
    plain.config["CHECK_OPENAPI"] = False
    over_tls = plain.test_client().post("/admin/login", data={"token": ADMIN_TOKEN}, base_url="https://localhost")
    assert "Secure" in over_tls.headers["Set-Cookie"]  # the request came over https: so is the cookie
    client = signed_in(plain)
    api = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                      content_type="application/json")
    assert "Set-Cookie" not in api.headers and "Cookie" not in api.headers.get("Vary", "")


def test_every_changing_form_needs_the_csrf_token(app):
    client = signed_in(app)
    assert client.post("/admin/deliveries/retry").status_code == 400
    assert client.post("/admin/logout").status_code == 400
    assert client.get("/admin").status_code == 200  # still signed in


def test_odd_input_and_a_database_away_are_pages_not_500s(make_app, tmp_path):
    import shutil

    app = make_app(database_url=f"sqlite:///{tmp_path}/gone/x.db")
    app.config["CHECK_OPENAPI"] = False
    client = signed_in(app)
    csrf = csrf_of(client.get("/admin").get_data(as_text=True))
    huge = client.post("/admin/deliveries/99999999999999999999999/retry", data={"csrf": csrf}, follow_redirects=True)
    assert huge.status_code == 200 and "nothing replayed" in huge.get_data(as_text=True)
    crlf = client.post("/admin/deliveries/1/retry", data={"csrf": csrf, "back": "/admin\r\nX-Evil: 1"})
    assert crlf.status_code == 302 and crlf.headers["Location"] == "/admin"
    assert client.get("/admin/handoffs/hnd_%00x").status_code == 404
    app.extensions["connector"].db.dispose()
    shutil.rmtree(tmp_path / "gone")
    for response in (client.get("/admin/handoffs/hnd_x"), client.post("/admin/deliveries/retry", data={"csrf": csrf})):
        assert response.status_code == 503 and "does not answer" in response.get_data(as_text=True)


def test_a_handoff_page_says_what_the_answer_said_while_attempts_failed(app):
    # "customer was told … in about 10 minutes" while the bot's 202 had said no wait at all.
    from connector.models import Handoff

    client = signed_in(app)
    handoff_id = handoff(client, full_packet())
    services = app.extensions["connector"]
    message = {"locale": "en", "text": "Our team will be with you in about 10 minutes.",
               "if_delayed": "Our team will reply here as soon as they're free."}
    with services.db.session() as session:
        session.execute(update(Handoff).values(customer_message=message, estimated_wait_seconds=600))
    page = client.get(f"/admin/handoffs/{handoff_id}").get_data(as_text=True)
    assert "in about 10 minutes. <span class=\"note\">(as the bot reads it now; wait quoted: 600 s)" in page
    assert "While the first attempts failed" not in page  # delivered at once: it was never shown

    with services.db.session() as session:
        session.execute(update(Delivery).values(attempts=2))  # delivered on its second attempt
    page = client.get(f"/admin/handoffs/{handoff_id}").get_data(as_text=True)
    assert "as soon as they&#39;re free." in page.split("While the first attempts failed", 1)[1]
    assert "rate limit" not in page

    with services.db.session() as session:  # past the attempts' limit: the page says why
        session.execute(update(Delivery).values(attempts=9, rate_limited=4))
    page = client.get(f"/admin/handoffs/{handoff_id}").get_data(as_text=True)
    assert "9 attempts (4 turned away by a rate limit, not counted against the limit)" in page


def test_bots_are_not_told_the_vendors_address_and_the_admin_page_shows_it_all(make_app):
    # "could not connect to http://zendesk-proxy.internal:8443/api/v2/tickets.json …" reached bots
    # in tickets[].error, and with it an internal host the ticket links had been kept clear of.
    # A name that does not resolve (the transport library quotes it) and a refused port.
    for base, host in (("http://zendesk-proxy.invalid:8443", "zendesk-proxy.invalid"), ("http://127.0.0.1:1", "127.0.0.1")):
        app = make_app(targets=("zendesk",), zendesk_subdomain="acme", zendesk_email="bot@acme.example",
                       zendesk_api_token="s3cr3t-token", zendesk_base_url=base)
        app.config["CHECK_OPENAPI"] = False
        client = app.test_client()
        answer = client.post("/v1/handoffs", data=json.dumps(minimal_packet()), headers=auth(),
                             content_type="application/json").get_json()
        error = answer["tickets"][0]["error"]
        assert error == ("TransientError: could not connect to … (nothing was sent) "
                         "(the connection's details are on the admin page)"), error
        read = client.get(answer["links"]["self"], headers=auth()).get_json()
        assert [d["last_error"] for d in read["deliveries"]] == [error] and host not in json.dumps(read)
        page = signed_in(app).get(f"/admin/handoffs/{answer['id']}").get_data(as_text=True)
        assert f"could not connect to {base}/api/v2/tickets.json" in page


@pytest.mark.parametrize("error", [
    "TransientError: TLS failed with https://10.20.30.40/x (check REQUESTS_CA_BUNDLE / SSL_CERT_FILE): "
    "HTTPSConnectionPool(host='10.20.30.40', port=443): Max retries exceeded (Caused by SSLError("
    "\"certificate is not valid for '10.20.30.40'\"))",
    "TransientError: Slack chat.postMessage: cannot reach Slack ([Errno -2] Name or service not known)",
    "TransientError: could not reach Salesforce: HTTPSConnectionPool(host='acme.internal', port=443): Max retries",
    "OutcomeUnknown: Slack chat.postMessage: no answer (ConnectionResetError: [Errno 104] reset by 10.9.8.7)",
])
def test_what_a_bot_reads_of_a_transport_failure_names_no_host(error):
    from connector.answers import for_bot

    shown = for_bot(error)
    assert shown.endswith("(the connection's details are on the admin page)")
    assert not any(host in shown for host in ("10.20.30.40", "acme.internal", "Errno", "10.9.8.7")), shown


@pytest.mark.parametrize("refused", [
    "RejectedError: Zendesk rejected the request (422): Requester: Email is invalid",
    # A vendor's words that look like a transport library's: a bot's developer needs them whole.
    "RejectedError: Salesforce 400 FIELD_CUSTOM_VALIDATION_EXCEPTION: Attach the customer's warranty certificate "
    "before opening a Case (see https://acme.my.salesforce.com/help)",
    "RejectedError: Zendesk rejected the request (422): Unprocessable: Failed to resolve the requester",
    "RejectedError: Zendesk rejected the request (422): " + "a" * 1950,
])
def test_a_vendors_refusal_reaches_the_bot_whole(refused):
    from connector.answers import for_bot

    assert for_bot(refused) == refused


def test_the_latest_handoffs_say_who_took_each(app):
    # The list could not tell a handoff still waiting from one an agent had.
    import datetime as dt

    from connector.models import Assignment

    waiting, taken = handoff(app), handoff(app, {**minimal_packet(), "conversation": {"id": "conv-taken"}})
    now = dt.datetime.now(dt.UTC)
    with app.extensions["connector"].db.session() as session:
        session.add(Assignment(handoff_id=taken, target="zendesk", vendor_ticket_id="1001", team="billing",
                               agent_id="381", agent_name="Sam Agent", event_id="evt-1", handed_off_at=now,
                               assigned_at=now, wait_seconds=60))
    page = signed_in(app).get("/admin").get_data(as_text=True)
    rows = dict(re.findall(r'/admin/handoffs/([^"]+)">[^<]+</a></td>(.*?)</tr>', page, re.S))
    assert "<td>Sam Agent</td>" in rows[taken] and "<td>—</td>" in rows[waiting]


def test_a_handoff_page_says_when_its_ticket_was_solved(app):
    import datetime as dt

    from sqlalchemy import update

    from connector.models import Handoff

    client = signed_in(app)
    handoff_id = handoff(client, full_packet())
    with app.extensions["connector"].db.session() as session:
        session.execute(update(Handoff).where(Handoff.id == handoff_id)
                        .values(completed_at=dt.datetime(2026, 11, 21, 9, 30, tzinfo=dt.UTC)))
    page = client.get(f"/admin/handoffs/{handoff_id}").get_data(as_text=True)
    assert "<dt>solved</dt><dd>2026-11-21T09:30:00+00:00</dd>" in page


def test_the_dashboard_says_when_a_reload_refused_the_edited_settings(app, monkeypatch):
    from connector import settings
    from connector.errors import ConfigError

    client = signed_in(app)
    assert "a reload's edit was refused" not in client.get("/admin").get_data(as_text=True)
    monkeypatch.setattr(settings, "REFUSED_EDIT", ConfigError("CONNECTOR_MAX_ATTEMPTS", "must be a whole number"))
    page = client.get("/admin").get_data(as_text=True)
    assert "a reload's edit was refused — CONNECTOR_MAX_ATTEMPTS: must be a whole number" in page


def test_a_pending_delivery_of_a_target_not_served_here_is_explained_and_can_be_dismissed(app):
    # An operator's review: it read "pending … next at <a time past>", as if about to be tried, with no
    # Dismiss button (the route worked), and a refused dismissal's flash named dead or failed ones only.
    import datetime as dt

    from connector.models import utcnow

    client = signed_in(app)
    handoff_id = handoff(client)
    services = app.extensions["connector"]
    with services.db.session() as session:
        session.execute(update(Delivery).values(state="pending", target="zendesk", lease_owner=None,
                                                next_attempt_at=utcnow() - dt.timedelta(minutes=1)))
    page = client.get(f"/admin/handoffs/{handoff_id}").get_data(as_text=True)
    assert "No process here serves zendesk (it is not in CONNECTOR_TARGETS)" in page
    [delivery_id] = re.findall(r'/admin/deliveries/(\d+)/dismiss', page)
    early = client.post(f"/admin/deliveries/{delivery_id}/dismiss", data={"csrf": csrf_of(page)},
                        follow_redirects=True).get_data(as_text=True)
    assert "nor pending for a target not enabled here that no process has taken for 300 s" in early
    with services.db.session() as session:
        session.execute(update(Delivery).values(next_attempt_at=utcnow() - dt.timedelta(minutes=10)))
    done = client.post(f"/admin/deliveries/{delivery_id}/dismiss", data={"csrf": csrf_of(page)}, follow_redirects=True)
    assert f"Delivery {delivery_id} is dismissed" in done.get_data(as_text=True)
    assert "No process here serves" not in client.get(f"/admin/handoffs/{handoff_id}").get_data(as_text=True)


def test_the_dashboard_lists_pending_deliveries_of_a_target_not_served_here_with_dismiss(app):
    # An operator's review: CONNECTOR_TARGETS lost a target while deliveries to it were pending, and the
    # dashboard listed them nowhere — "Given up" has dead and failed ones only; the handoff's page alone said.
    import datetime as dt

    from connector.models import utcnow

    client = signed_in(app)
    stranded, served = handoff(client), handoff(client, minimal_packet(conversation={"id": "conv-2002"}))
    services = app.extensions["connector"]
    with services.db.session() as session:
        session.execute(update(Delivery).values(state="pending", lease_owner=None,
                                                next_attempt_at=utcnow() - dt.timedelta(minutes=10)))
        session.execute(update(Delivery).where(Delivery.handoff_id == stranded).values(target="zendesk"))
    page = client.get("/admin").get_data(as_text=True)
    assert "<h2>Waiting for a target no process here serves</h2>" in page
    listed = page.split("<h2>Waiting for a target no process here serves</h2>")[1].split("<h2>Latest handoffs</h2>")[0]
    assert f'href="/admin/handoffs/{stranded}"' in listed and served not in listed  # preview is served: not here
    [delivery_id] = re.findall(r'/admin/deliveries/(\d+)/dismiss', listed)
    assert "not in CONNECTOR_TARGETS here: each waits for a process that serves its target" in listed
    assert "zendesk <span class=\"warn\">(not served here)</span>" in page  # its row of the counts, as /readyz's
    assert "Nothing waiting, retrying or given up." not in page and "No dead or failed deliveries." in page

    done = client.post(f"/admin/deliveries/{delivery_id}/dismiss", data={"csrf": csrf_of(page)}, follow_redirects=True)
    assert f"Delivery {delivery_id} is dismissed" in done.get_data(as_text=True)
    with services.db.reading() as session:
        assert session.scalars(select(Delivery.state).where(Delivery.handoff_id == served)).all() == ["pending"]
    assert "Waiting for a target no process here serves" not in done.get_data(as_text=True)  # the served one waits
