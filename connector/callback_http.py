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

A send has a deadline for the whole of it (`deadline`): the per-step timeouts bound each connect
and each read, but a bot that drips its answer a byte at a time, each within the read timeout,
would otherwise hold a callback thread (shared by every bot) for as long as it liked. When the
time is up, the sockets the send is using are shut down, which ends whatever step is blocked.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from adapters.http_session import honour_ssl_cert_file

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
    return ip.is_global and not ip.is_multicast


def literal_address(host: str) -> str | None:
    """`host` if it is an IP address literal (IPv6 without brackets), else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def url_problem(url: str, allow_private: bool) -> str | None:
    """What is wrong with a callback URL before any lookup (intake answers it as a 422), or None."""
    if allow_private:
        return None
    parts = urlsplit(url)
    if parts.scheme != "https":
        return f"must be https (plain {parts.scheme} only with {ALLOW_VARIABLE})"
    try:
        port = parts.port  # urllib parses it only when asked, and raises for 65536 and up
    except ValueError:
        port = 0
    if port == 0:
        return "has a port outside 1-65535"
    host = (parts.hostname or "").rstrip(".").lower()
    address = literal_address(host)
    if host == "localhost" or host.endswith(".localhost") or (address is not None and not is_public(address)):
        return f"must reach a public address, not {host} (only with {ALLOW_VARIABLE})"
    return None


def check_url(url: str, allow_private: bool) -> None:
    """Refuse what a callback may not reach: anything but https, or a host with a non-public address."""
    problem = url_problem(url, allow_private)
    if problem is not None:
        raise Refused(f"callback.url {problem}")
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise requests.ConnectionError(f"cannot resolve {host!r}: {err}") from None  # may resolve later: retried
    private = sorted({info[4][0] for info in infos if not is_public(info[4][0])})
    if private:
        raise Refused(f"{host} resolves to {', '.join(private)}, not a public address ({ALLOW_VARIABLE})")


class _Send(threading.local):
    track: Callable[[socket.socket], None] | None = None  # the current thread's send, while it runs


_send = _Send()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Run one send on this thread with a deadline; the event is set if it was cut off.

    Each connection the send opens is watched through a descriptor of its own (`socket.dup`:
    the same connection, whoever owns the original — TLS takes it over at once). When `seconds`
    have passed, a timer shuts the connection down through that descriptor: the blocked step, TLS
    handshake included, raises (a connection error to requests), so the thread is free again. The
    descriptors are ours until the send ends, so a shutdown can never reach another connection
    that reused a number.
    """
    watched: list[socket.socket] = []
    expired = threading.Event()
    lock = threading.Lock()
    over = False

    def cut() -> None:
        with lock:
            if over:
                return
            expired.set()
            for watch in watched:
                with contextlib.suppress(OSError):
                    watch.shutdown(socket.SHUT_RDWR)

    def track(watch: socket.socket) -> None:
        with lock:
            watched.append(watch)
            if expired.is_set():  # connected just as time ran out
                with contextlib.suppress(OSError):
                    watch.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    _send.track = track
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()
        _send.track = None
        with lock:  # a `cut` already running finishes first; none starts after
            over = True
            for watch in watched:
                watch.close()


class _Tracked:
    """Puts each connection a send opens under the send's `deadline`. Connections are never
    reused: the sender closes every answer unread, which closes its connection (a test holds to
    that), so every send's connections are new ones."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        if _send.track is not None:
            _send.track(sock.dup())
        return sock


class _Guarded(_Tracked):
    """Checks the peer of each new direct connection before anything is sent on it."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        peer = sock.getpeername()[0]
        if not is_public(peer):
            sock.close()
            raise Refused(f"{self.host} connected to {peer}, not a public address ({ALLOW_VARIABLE})")  # type: ignore[attr-defined]
        return sock


def _pools(kind: type) -> dict[str, type]:
    """Connection pools, by scheme, whose connections mix in `kind` (`_Tracked` or `_Guarded`)."""
    return {scheme: type(f"{kind.__name__.strip('_')}{pool.__name__}", (pool,),
                         {"ConnectionCls": type(f"{kind.__name__.strip('_')}{conn.__name__}", (kind, conn), {})})
            for scheme, pool, conn in (("http", HTTPConnectionPool, HTTPConnection),
                                       ("https", HTTPSConnectionPool, HTTPSConnection))}


_POOLS = {True: _pools(_Tracked), False: _pools(_Guarded)}  # by `allow_private`


class _Adapter(HTTPAdapter):
    def __init__(self, pools: dict[str, type]):
        self._pools = pools
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


def session(allow_private: bool) -> requests.Session:
    """A session for callbacks: its connections are under a send's `deadline`, and with
    `allow_private` off, its direct connections check their peer. Proxies and CA bundles come from
    the environment, as for the vendors."""
    http = requests.Session()
    # Shared by every bot's callbacks: a cookie one bot's endpoint sets must never reach another's.
    http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    http.headers["User-Agent"] = "handoff-connector/1 (status callbacks)"
    honour_ssl_cert_file(http)
    for prefix in ("http://", "https://"):
        http.mount(prefix, _Adapter(_POOLS[allow_private]))
    return http
