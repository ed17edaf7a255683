"""The requests sessions read the proxy and CA variables once per origin, with requests' meaning."""

from __future__ import annotations

import requests
import requests.sessions

from adapters.http_session import SettledEnvironmentSession
from adapters.salesforce_client import VendorSession
from adapters.zendesk_http import ZendeskSession


def _counting(monkeypatch):
    calls = []
    original = requests.sessions.get_environ_proxies

    def counted(url, no_proxy=None):
        calls.append(url)
        return original(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    return calls


def test_the_environment_is_read_once_per_origin(monkeypatch):
    calls = _counting(monkeypatch)
    session = SettledEnvironmentSession()
    for path in ("/api/v2/tickets.json", "/api/v2/search.json?query=x", "/api/v2/tickets/1.json"):
        session.merge_environment_settings(f"https://acme.zendesk.com{path}", {}, None, None, None)
    assert len(calls) == 1
    session.merge_environment_settings("https://acme.my.salesforce.com/services", {}, None, None, None)
    session.merge_environment_settings("http://acme.zendesk.com/api", {}, None, None, None)  # another scheme
    assert len(calls) == 3


def test_what_is_read_means_what_requests_makes_of_it(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "bypassed.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-ca.pem")
    session, plain = SettledEnvironmentSession(), requests.Session()
    for url in ("https://acme.zendesk.com/api/v2/tickets.json", "https://bypassed.example/x"):
        for _ in range(2):  # the kept answer equals requests' own, the first time and after
            assert session.merge_environment_settings(url, {}, None, None, None) == \
                plain.merge_environment_settings(url, {}, None, None, None)
    settings = session.merge_environment_settings("https://acme.zendesk.com/x", {}, None, None, None)
    assert settings["proxies"]["https"] == "http://proxy.internal:3128"
    assert settings["verify"] == "/etc/ssl/our-ca.pem"
    assert "https" not in session.merge_environment_settings("https://bypassed.example/y", {}, None, None, None)[
        "proxies"]


def test_call_arguments_are_part_of_the_key_and_answers_are_copies(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    session = SettledEnvironmentSession()
    first = session.merge_environment_settings("https://acme.zendesk.com/x", {}, None, None, None)
    first["proxies"]["https"] = "http://edited"  # requests may edit what it is handed
    again = session.merge_environment_settings("https://acme.zendesk.com/x", {}, None, None, None)
    assert again["proxies"]["https"] == "http://proxy.internal:3128"
    assert session.merge_environment_settings("https://acme.zendesk.com/x", {}, None, False, None)["verify"] is False
    explicit = session.merge_environment_settings("https://acme.zendesk.com/x", {"https": "http://other:1"},
                                                  None, None, None)
    assert explicit["proxies"]["https"] == "http://other:1"
    unhashable = session.merge_environment_settings("https://acme.zendesk.com/x", {}, None, None, ["c.pem", "k"])
    assert unhashable["cert"] == ["c.pem", "k"]


def test_session_settings_changed_after_the_first_call_apply(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-ca.pem")
    session = SettledEnvironmentSession()
    assert session.merge_environment_settings("https://acme.zendesk.com/x", {}, None, None, None)["verify"] == \
        "/etc/ssl/our-ca.pem"
    session.proxies = {"https": "http://set-later:3128"}  # as simple-salesforce does when given proxies
    session.cert = "client.pem"
    settings = session.merge_environment_settings("https://acme.zendesk.com/x", {}, None, None, None)
    assert settings["proxies"]["https"] == "http://set-later:3128" and settings["cert"] == "client.pem"


def test_without_trust_env_the_environment_is_not_read(monkeypatch):
    calls = _counting(monkeypatch)
    session = SettledEnvironmentSession()
    session.trust_env = False
    session.merge_environment_settings("https://acme.zendesk.com/x", {}, None, None, None)
    assert calls == []


def test_the_vendor_sessions_are_settled_ones():
    assert isinstance(ZendeskSession("https://acme.zendesk.com"), SettledEnvironmentSession)
    assert isinstance(VendorSession(15), SettledEnvironmentSession)
    assert VendorSession(15).trust_env and ZendeskSession("https://acme.zendesk.com").trust_env


def _tls_server(tmp_path):
    """An https server on loopback whose certificate only a throwaway CA (in ca.pem) vouches for."""
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import trustme

    from tests.fakes.serving import serve_in_thread

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    serve_in_thread(server)
    return server, f"https://127.0.0.1:{server.server_address[1]}/"


def test_ssl_cert_file_is_trusted_by_every_requests_session_as_the_contract_promises(tmp_path, monkeypatch):
    """requests itself reads only REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE: with SSL_CERT_FILE alone,
    a TLS-inspecting proxy's CA was ignored and every delivery failed verification."""
    import pytest

    from connector.callback_http import session as callback_session

    server, url = _tls_server(tmp_path)
    try:
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(requests.exceptions.SSLError), ZendeskSession(url) as refusing:
            refusing.get(url, timeout=5)
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        for made in (ZendeskSession(url), VendorSession(5), callback_session(allow_private=True)):
            # Closed: a kept-alive TLS connection left to the collector was reported, as an unraisable
            # ResourceWarning, in whichever test of the worker the collection fell on (a CI run).
            with made:
                assert made.get(url, timeout=5).status_code == 200, type(made).__name__
        # requests' own variable still wins over it, as it would over any session's bundle
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
        with pytest.raises(OSError), ZendeskSession(url) as missing:
            missing.get(url, timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def _tls_server_breaking_its_answer(tmp_path):
    """A loopback TLS server that reads a whole request, then answers with a garbled TLS record (a
    TLS-inspecting proxy failing mid-answer): the request left, and the client's TLS layer fails."""
    import os
    import socket
    import ssl
    import threading

    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with tls.wrap_socket(conn, server_side=True) as secure:
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                data += secure.recv(65536)
            received.append(data)
            with socket.socket(fileno=os.dup(secure.fileno())) as raw:  # under TLS: a record no key opens
                raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
                raw.recv(1024)  # until the client gives up

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"https://127.0.0.1:{listener.getsockname()[1]}/", received


def test_tls_broken_after_the_request_left_is_not_taken_for_nothing_sent(tmp_path, monkeypatch):
    # A review: requests raises SSLError for a refused handshake and for a garbled answer alike, and
    # both were "nothing was sent" — a retry then made a second case (Salesforce takes no key).
    import pytest

    from adapters.call_deadline import request_sent
    from adapters.errors import OutcomeUnknown, TransientError
    from adapters.salesforce_client import translate
    from adapters.zendesk_http import edge

    listener, url, received = _tls_server_breaking_its_answer(tmp_path)
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
        with pytest.raises(requests.exceptions.SSLError) as broken, VendorSession(5) as vendor:
            vendor.post(url + "services/data/v59.0/sobjects/Case/", data=b'{"Subject": "x"}', timeout=5)
        assert received and received[0].startswith(b"POST /services/data/v59.0/sobjects/Case/")
        assert request_sent(broken.value)
        assert isinstance(translate(broken.value, write=True), OutcomeUnknown)
        with pytest.raises(OutcomeUnknown), edge(write=True):
            raise broken.value
    finally:
        listener.close()
    # A handshake refused (a CA not trusted) sent nothing: still a plain retry.
    (tmp_path / "other").mkdir()
    server, trusted_url = _tls_server(tmp_path / "other")  # its own CA, which nothing trusts now
    try:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        for name in ("CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(requests.exceptions.SSLError) as refused, VendorSession(5) as vendor:
            vendor.post(trusted_url, data=b"{}", timeout=5)
        assert not request_sent(refused.value)
        assert isinstance(translate(refused.value, write=True), TransientError)
        assert not isinstance(translate(refused.value, write=True), OutcomeUnknown)
    finally:
        server.shutdown()
        server.server_close()


def test_the_operators_netrc_never_replaces_a_vendors_bearer_token(monkeypatch, tmp_path):
    # A review: with no session `auth`, requests sends ~/.netrc's login as Basic auth over the call's
    # own Authorization — a `default` entry replaced Salesforce's (and Zendesk OAuth's) bearer token.
    netrc = tmp_path / ".netrc"
    netrc.write_text("default login deploy password mirror-pw\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for session in (VendorSession(5.0), ZendeskSession("https://acme.zendesk.com")):
        sent = session.prepare_request(requests.Request("GET", "https://acme.my.salesforce.com/services/data/",
                                                        headers={"Authorization": "Bearer the-token"}))
        assert sent.headers["Authorization"] == "Bearer the-token"
    plain = requests.Session().prepare_request(requests.Request("GET", "https://acme.my.salesforce.com/",
                                                                headers={"Authorization": "Bearer the-token"}))
    assert plain.headers["Authorization"].startswith("Basic ")  # what requests does without it
