"""The requests session every requests-based adapter sends through."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from .call_deadline import WatchedAdapter


def honour_ssl_cert_file(session: requests.Session, environ: Mapping[str, str] | None = None) -> None:
    """The contract promises `SSL_CERT_FILE` for outbound HTTPS, and requests reads only
    REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE: behind a TLS-inspecting proxy with only SSL_CERT_FILE
    set, every delivery would fail verification and die. It becomes the session's bundle, which
    requests' own variables still override (they are applied per request, over the session's)."""
    environ = os.environ if environ is None else environ
    if environ.get("SSL_CERT_FILE") and session.trust_env:
        session.verify = environ["SSL_CERT_FILE"]


def no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A session's `auth` that adds nothing. With none, requests reads `~/.netrc` (or `$NETRC`) and
    sends its login for the host as Basic auth, over whatever Authorization the call set: a
    `default` entry (common on build machines, for package mirrors) went to every bot's callback
    address (a review), and replaced Salesforce's and Zendesk OAuth's bearer token. Each call's own
    credentials are set by its client (zenpy's API-token `auth` replaces this one)."""
    return request


class SettledEnvironmentSession(requests.Session):
    """A requests session that reads the environment's proxy and CA variables once per origin.

    `trust_env` stays on: HTTPS_PROXY / NO_PROXY, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE apply as
    requests documents, and SSL_CERT_FILE too (`honour_ssl_cert_file`). requests reads them again
    on *every* call, walking the whole of `os.environ` twice (`urllib.request.getproxies`); in the
    benchmark's profile of a worker that was the largest
    single item of a delivery's CPU. The connector reads its settings once at start and never edits
    its environment, so what requests derives from it is kept per origin (scheme and host) and for
    the same call arguments and session settings; anything unusual (an unhashable value) takes
    requests' own path.
    """

    def __init__(self, **adapter: Any) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.auth = no_netrc
        honour_ssl_cert_file(self)
        # Every call with a deadline for the whole of it and a cap on its answer (`call_deadline`);
        # `adapter`: more for the adapter (Zendesk's `max_retries`).
        for prefix in ("https://", "http://"):
            self.mount(prefix, WatchedAdapter(**adapter))

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url if isinstance(url, str) else str(url))
        try:
            # The session's own settings are merged in too, and may be set after the first call.
            key = (parts.scheme, parts.netloc, frozenset((proxies or {}).items()), stream, verify, cert,
                   frozenset((self.proxies or {}).items()), self.stream, self.verify, self.cert)
            merged = self._environment.get(key)
        except TypeError:  # an unhashable argument (a list as cert…)
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if merged is None:
            merged = super().merge_environment_settings(url, dict(proxies or {}), stream, verify, cert)
            self._environment[key] = merged
        return {**merged, "proxies": dict(merged["proxies"])}  # requests may edit what it is given
