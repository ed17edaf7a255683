"""The requests sessions read the proxy and CA variables once per origin, with requests' meaning."""

from __future__ import annotations

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
