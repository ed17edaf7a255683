"""HTTP for status callbacks: a bot names the URL, so the connector must not become a way into the
network it runs in (SSRF).

Unless `CONNECTOR_CALLBACK_ALLOW_PRIVATE` is on (development, tests), a callback goes only to
`https` on a public address:

- before sending, every address the host resolves to must be public (`check_url`), which also
  covers a proxy from the environment, where the connector never sees the bot's address itself
  (but a name that changes its answer after this check is the proxy's to refuse);
- on a direct connection, the address actually connected to is checked again before a byte is
  sent (`_Guarded._new_conn`), so a name that resolves to a public address for the check and to a
  private one for the connection (DNS rebinding) is still refused.

Redirects are not followed (the sender says so as the error): a public URL must not forward the
signed body elsewhere.

A send has a deadline for the whole of it (`adapters.call_deadline`, as every vendor call does):
the per-step timeouts bound each connect and each read, but a bot that drips its answer a byte at
a time, each within the read timeout, would otherwise hold a callback thread (shared by every
bot) for as long as it liked. When the time is up, the sockets the send is using are shut down,
which ends whatever step is blocked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import SplitResult, urlsplit

import idna
import requests
from requests.auth import HTTPBasicAuth
from requests.utils import get_auth_from_url

from adapters.call_deadline import WatchedAdapter, watched_pools
from adapters.http_session import honour_ssl_cert_file, no_netrc

ALLOW_VARIABLE = "CONNECTOR_CALLBACK_ALLOW_PRIVATE"


class Refused(Exception):
    """The URL may not be called; the message says why and is safe to store and log."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: the last 32 bits are the IPv4 address
_NOT_PUBLIC_V6 = tuple(ipaddress.ip_network(n) for n in (
    "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
    "::/96",  # IPv4-compatible (deprecated): ::10.0.0.1 reaches 10.0.0.1 on some stacks
    "fec0::/10",  # site-local (deprecated, still routed inside some networks)
    "::ffff:0:0:0/96",  # IPv4-translated (RFC 2765): refused whole, whatever IPv4 address it carries
    "5f00::/16",  # SRv6 segment identifiers (RFC 9602), not for hosts
    "3fff::/20",  # documentation (RFC 9637)
))


# The IETF protocol assignments block (RFC 6890): Python before 3.11.10 / 3.12.4 (CVE-2024-4032)
# took 246 of its 256 addresses for global, and callbacks went to 192.0.0.8. Refused here whatever
# the interpreter says; its two global anycast addresses (.9, .10) are no callback's either.
_NOT_PUBLIC_V4 = (ipaddress.ip_network("192.0.0.0/24"),)


def is_public(address: str) -> bool:
    """A globally routable unicast address (not loopback, private, link-local, CGNAT, reserved…).
    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by it."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in _NOT_PUBLIC_V6):
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    if isinstance(ip, ipaddress.IPv4Address) and any(ip in network for network in _NOT_PUBLIC_V4):
        return False
    return ip.is_global and not ip.is_multicast


def literal_address(host: str) -> str | None:
    """The address `host` is written as (IPv6 without brackets), else None (a name). An IPv4 address
    in a form the resolver reads as one (`127.0.0.01`, `0x7f.1`, `2130706433`: `inet_aton`'s) is the
    address it reaches: `ipaddress` refuses those forms, and they passed intake as names."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if not re.fullmatch(r"[0-9a-fx.]+", host, flags=re.IGNORECASE):  # inet_aton ignores what follows a space
        return None
    try:
        return str(ipaddress.IPv4Address(socket.inet_aton(host)))
    except OSError:
        return None


def _as_sent(host: str) -> str:
    """`host` as requests sends it (IDNA with UTS 46's mapping): `１２７.0.0.1` (full-width digits)
    and `127。0。0。1` are 127.0.0.1, and passed intake as names — refused only at each send, after a
    201, until the callback was given up (a review). A host IDNA refuses is left as written: requests
    refuses it too."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii").rstrip(".")
    except (idna.IDNAError, UnicodeError):
        return host


def url_problem(url: str, allow_private: bool) -> str | None:
    """What is wrong with a callback URL before any lookup (intake answers it as a 422), or None."""
    try:
        parts = urlsplit(url)
    except ValueError as err:  # `ｂｏｔｓ.acme／example.com`: a 500 the bot retried for good (a review)
        return f"cannot be sent: {err}"
    problem = None if allow_private else _not_public(parts)
    return problem or _unsendable(url)


def _unsendable(url: str) -> str | None:
    """Why requests would refuse `url` at every send, else None: a host strict IDNA refuses
    (`bots.acme。example.com`, a decomposed `bu\u0308cher`, full-width letters) was accepted with a
    201 and "could not reach the callback URL" for a day (a review)."""
    try:
        requests.Request("POST", url).prepare()
    except (requests.RequestException, ValueError) as err:
        return f"cannot be sent: {err}"
    return None


def _not_public(parts: SplitResult) -> str | None:
    """Why a callback may not go to `parts` without CONNECTOR_CALLBACK_ALLOW_PRIVATE, else None."""
    host = _as_sent((parts.hostname or "").rstrip(".").lower())
    if parts.scheme != "https":
        return f"must be https (plain {parts.scheme} only with {ALLOW_VARIABLE})"
    try:
        port = parts.port  # urllib parses it only when asked, and raises for 65536 and up
    except ValueError:
        port = 0
    if port == 0:
        return "has a port outside 1-65535"
    address = literal_address(host)
    # A name without a dot is a local one (a compose service's, a search domain's): no public DNS name is.
    local = host == "localhost" or host.endswith(".localhost") or (address is None and "." not in host)
    if local or (address is not None and not is_public(address)):
        written = host if address in (None, host) else f"{host} ({address})"
        return f"must reach a public address, not {written} (only with {ALLOW_VARIABLE})"
    return None


RESOLVE_FAILED = "cannot resolve"  # how a name that does not resolve is said (`callbacks._cause` logs it)


def check_url(url: str, allow_private: bool) -> None:
    """Refuse what a callback may not reach: anything but https, or a host with a non-public address."""
    problem = url_problem(url, allow_private)
    if problem is not None:
        raise Refused(f"callback.url {problem}")
    if allow_private:
        return
    parts = urlsplit(url)
    # The name requests sends (IDNA 2008 with UTS 46), not the one `socket` would make of the
    # written host (IDNA 2003: `ß.example` is `ss.example` to it, `xn--zca.example` to requests).
    # A proxy is told the sent name and connects there itself, past `_Guarded`'s peer check: the
    # check resolved a name the bot also owned, and the proxy tunnelled to an internal one (a review).
    host = _as_sent(parts.hostname or "")
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise requests.ConnectionError(f"{RESOLVE_FAILED} {host!r}: {err}") from None  # may resolve later: retried
    private = sorted({info[4][0] for info in infos if not is_public(info[4][0])})
    if private:
        raise Refused(f"{host} resolves to {', '.join(private)}, not a public address ({ALLOW_VARIABLE})")


class _Guarded:
    """Mixed into the connections: checks the peer of each new direct connection before anything
    is sent on it."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        peer = sock.getpeername()[0]
        if not is_public(peer):
            sock.close()
            raise Refused(f"{self.host} connected to {peer}, not a public address ({ALLOW_VARIABLE})")  # type: ignore[attr-defined]
        return sock


_POOLS = {True: watched_pools(), False: watched_pools(_Guarded)}  # by `allow_private`


def _the_address_own_credentials(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A callback carries no credentials but those the bot wrote in its address (`no_netrc`: the
    operator's `~/.netrc` went to any address a bot named), as requests sends those."""
    user, password = get_auth_from_url(request.url)
    return HTTPBasicAuth(user, password)(request) if user or password else no_netrc(request)


def session(allow_private: bool) -> requests.Session:
    """A session for callbacks: its connections are under a send's `deadline`, and with
    `allow_private` off, its direct connections check their peer. Proxies and CA bundles come from
    the environment, as for the vendors."""
    http = requests.Session()
    # Shared by every bot's callbacks: a cookie one bot's endpoint sets must never reach another's.
    http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    http.headers["User-Agent"] = "handoff-connector/1 (status callbacks)"
    http.auth = _the_address_own_credentials
    honour_ssl_cert_file(http)
    for prefix in ("http://", "https://"):
        # The answer is never read: only its status and headers, within the send's deadline.
        http.mount(prefix, WatchedAdapter(read_answer=False, pools=_POOLS[allow_private], proxy_pools=_POOLS[True]))
    return http
