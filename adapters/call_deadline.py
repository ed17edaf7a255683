"""A deadline for the whole of one HTTP call, and a cap on the answer a vendor call reads.

requests' and urllib's timeouts bound each connect and each read. An answer dripped a byte at a
time, each byte within the read timeout, holds the calling thread for as long as the other side
likes: a bot's callback endpoint (shared callback threads), or a vendor or a proxy in front of it
gone wrong (a delivery thread, its lease renewed all the while, so no other worker takes over; the
target's threads fill one by one with calls that never end). And an answer of unbounded size is
read whole into memory.

`deadline(seconds)` puts the connections the current thread uses under one watch. One watchdog
thread per process looks at the watches a few times a second and shuts down the connections of
any whose time is up, which ends whatever step is blocked (a TLS handshake included); the caller
sees `Watch.expired` and says so. Each connection is watched through a descriptor of its own (a
dup of its socket's, closed when the call ends or gives a pooled connection back), so a shutdown
never reaches another connection that reused a number, nor a kept-alive connection that another
call has taken from the pool since. No timer thread per call: vendor calls are on the bot's path.

Wired in three ways: urllib3's pools and connections (`watched_pools`, used by `WatchedAdapter`
for the vendors' requests sessions and by the callback sender), and urllib's handlers
(`WatchedHandlerMixin`, Slack's client).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

log = logging.getLogger(__name__)

TICK_S = 0.25  # how late past its deadline a call may be cut
# A vendor's answer larger than this is not read (nor kept): Zendesk's and Salesforce's pages of
# search results run to hundreds of KiB, Slack's history pages a few MiB.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


def whole_call_s(timeout: Any) -> float | None:
    """The deadline of a call given requests' `timeout`: its connect and read timeouts added (a
    single number is both), so a call whose every step takes its whole allowance still finishes."""
    if timeout is None:
        return None
    if isinstance(timeout, tuple):
        parts = [part for part in timeout if part is not None]
        return float(sum(parts)) if len(parts) == len(timeout) else None
    return 2.0 * float(timeout)


class Watch:
    """One call's connections and when they are cut."""

    __slots__ = ("_watched", "ends", "expired", "sending")

    def __init__(self, ends: float):
        self.ends = ends
        self.expired = False
        self.sending = False  # the request started to leave (`WatchedConnection.request`)
        self._watched: dict[int, socket.socket] = {}  # by id of what uses the connection


class _Watchdog:
    def __init__(self) -> None:
        self.local = threading.local()
        self._after_fork()
        # A forked worker starts with no watchdog thread, and must not inherit a lock held mid-call.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self.lock = threading.Lock()
        self.active: set[Watch] = set()
        self.running = False

    def start(self, watch: Watch) -> None:
        with self.lock:
            self.active.add(watch)
            if not self.running:
                try:
                    threading.Thread(target=self._run, name="call-deadlines", daemon=True).start()
                except RuntimeError as err:  # shutting down, or out of threads: the per-step timeouts still hold
                    log.warning("calls have no whole-call deadline: the watchdog thread did not start (%s)", err)
                    return
                self.running = True

    def end(self, watch: Watch) -> None:
        with self.lock:
            self.active.discard(watch)
            for watched in watch._watched.values():
                watched.close()
            watch._watched.clear()

    def watch(self, key: object, sock: socket.socket | None) -> None:
        """Put `sock` (used by `key`) under the current thread's watch, if it has one."""
        watch = current()
        if watch is None or sock is None:
            return
        try:
            # Not `sock.dup()`: an SSLSocket refuses to be duplicated; its descriptor does not.
            descriptor = os.dup(sock.fileno())
        except OSError:  # closed meanwhile: nothing to cut
            return
        try:
            watched = socket.socket(fileno=descriptor)
        except BaseException:
            os.close(descriptor)
            raise
        with self.lock:
            old = watch._watched.pop(id(key), None)
            if old is not None:
                old.close()
            watch._watched[id(key)] = watched
            if watch.expired:  # connected just as time ran out
                _shut(watched)

    def release(self, key: object) -> None:
        """`key` no longer belongs to this call (a pooled connection going back): stop watching it."""
        watch = current()
        if watch is None:
            return
        with self.lock:
            watched = watch._watched.pop(id(key), None)
            if watched is not None:
                watched.close()

    def _run(self) -> None:
        while True:
            time.sleep(TICK_S)
            now = time.monotonic()
            with self.lock:
                for watch in self.active:
                    if not watch.expired and now >= watch.ends:
                        watch.expired = True
                        for watched in watch._watched.values():
                            _shut(watched)


def _shut(watched: socket.socket) -> None:
    with contextlib.suppress(OSError):
        watched.shutdown(socket.SHUT_RDWR)


_dog = _Watchdog()


def current() -> Watch | None:
    """The watch of the call this thread is making, if any."""
    return getattr(_dog.local, "watch", None)


def cut_off() -> bool:
    """Whether the call this thread is making has been cut off by its deadline."""
    watch = current()
    return watch is not None and watch.expired


def read_capped(answer: Any) -> bytes:
    """A urllib answer's body, up to `MAX_ANSWER_BYTES` (`WatchedAdapter` caps requests' alike)."""
    body = answer.read(MAX_ANSWER_BYTES + 1)
    if len(body) > MAX_ANSWER_BYTES:
        raise http.client.HTTPException(f"an answer over {MAX_ANSWER_BYTES} bytes; not read")
    return body


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[Watch]:
    """Run one call on this thread with a deadline `seconds` from now (none: a watch that never
    expires); `Watch.expired` says whether it was cut off."""
    watch = Watch(time.monotonic() + seconds if seconds is not None else float("inf"))
    outer = current()
    _dog.local.watch = watch
    _dog.start(watch)
    try:
        yield watch
    finally:
        _dog.local.watch = outer
        _dog.end(watch)


# ---- urllib3 (requests) ----------------------------------------------------------------------


class WatchedConnection:
    """Mixed into urllib3's connections: a socket opened during a call is under its watch."""

    _connects_to_send = False  # plain http: the connection is made inside `request`

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _dog.watch(self, sock)
        if self._connects_to_send and (watch := current()) is not None:
            watch.sending = True  # connected: what follows is the request leaving
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        # The request starts to leave here: an https pool connects (and finishes TLS's handshake)
        # before. A TLS error after this — a record broken in the answer — may come after the vendor
        # read the request and acted on it (`request_sent`). A plain http connection is made inside
        # (`_new_conn`): a connection refused there was taken for a request sent.
        watch = current()
        self._connects_to_send = getattr(self, "sock", None) is None
        if watch is not None and not self._connects_to_send:
            watch.sending = True
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedPool:
    """Mixed into urllib3's pools: a kept-alive connection taken for a call is under its watch
    until it goes back to the pool."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        _dog.watch(conn, getattr(conn, "sock", None))
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            _dog.release(conn)
        super()._put_conn(conn)  # type: ignore[misc]


def watched_pools(*mixins: type) -> dict[str, type]:
    """urllib3 pool classes by scheme whose connections are watched, with `mixins` (such as the
    callbacks' peer check) mixed into the connections before `WatchedConnection`."""
    def conn(base: type) -> type:
        return type(f"Watched{base.__name__}", (*mixins, WatchedConnection, base), {})

    return {scheme: type(f"Watched{pool.__name__}", (_WatchedPool, pool), {"ConnectionCls": conn(base)})
            for scheme, pool, base in (("http", HTTPConnectionPool, HTTPConnection),
                                       ("https", HTTPSConnectionPool, HTTPSConnection))}


_VENDOR_POOLS = watched_pools()


def request_sent(err: requests.RequestException) -> bool:
    """Whether the request had started to leave when `err` came (`WatchedAdapter`): requests
    raises `SSLError` for a failed handshake (nothing sent) and for a broken record in the answer
    (the vendor may have acted) alike."""
    return bool(getattr(err, "request_sent", False))


class CutOff(requests.exceptions.ReadTimeout):
    """The call's deadline passed: it may have been acted on, as after any read timeout."""


class AnswerTooLarge(requests.RequestException):
    """The answer was larger than `MAX_ANSWER_BYTES`; it was not read."""


class WatchedAdapter(HTTPAdapter):
    """requests' adapter with a deadline for each whole call (`whole_call_s` of its timeout) and,
    with `read_answer`, the answer read here within that deadline and up to `MAX_ANSWER_BYTES`
    (decoded: a small gzip that inflates to gigabytes is refused too). Without it (the callback
    sender, which never reads an answer) the body is left to the caller."""

    def __init__(self, *args: Any, read_answer: bool = True, pools: dict[str, type] | None = None,
                 proxy_pools: dict[str, type] | None = None, **kwargs: Any):
        self._read_answer = read_answer
        # `proxy_pools` for the connections to a proxy (HTTPS_PROXY): the callbacks' peer check is
        # for direct connections only — a corporate proxy sits at a private address.
        self._pools, self._proxy_pools = pools or _VENDOR_POOLS, proxy_pools or pools or _VENDOR_POOLS
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._proxy_pools  # watched through HTTPS_PROXY too
        return manager

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             *args: Any, **kwargs: Any) -> requests.Response:
        seconds = whole_call_s(timeout)
        with deadline(seconds) as watch:
            try:
                response = super().send(request, stream, timeout, *args, **kwargs)
            except requests.RequestException as err:
                if not watch.expired:
                    err.request_sent = watch.sending  # type: ignore[attr-defined]  # read by `request_sent`
                    raise
                cause: BaseException | None = err
            else:
                # Cut mid-answer, what came may still parse ("HTTP/1.1 200", then nothing): not an
                # answer. (A whole one that came just as time ran out is taken for a cut one too: a
                # callback is then sent again, which its webhook-id lets the bot drop.)
                if not watch.expired:
                    return response
                response.close()
                cause = None
        raise CutOff(f"no whole answer from {request.url} within {seconds:g} s (cut off)", request=request) from cause

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        if not self._read_answer:
            return response
        limit, size, chunks = MAX_ANSWER_BYTES, 0, []
        for chunk in response.iter_content(64 * 1024):  # requests' own errors for a broken answer
            size += len(chunk)
            if size > limit:
                response.close()
                raise AnswerTooLarge(f"{req.url} answered more than {limit} bytes; not read", request=req,
                                     response=response)
            chunks.append(chunk)
        response._content = b"".join(chunks)  # what `.content` and `.json()` read from now on
        return response


# ---- urllib (Slack) --------------------------------------------------------------------------


def _watched_connection(base: type[http.client.HTTPConnection]) -> type:
    class Watched(base):  # type: ignore[misc, valid-type]
        def connect(self) -> None:
            # http.client opens a new connection per urllib request: watch its socket before TLS
            # (which takes it over) and before a byte is sent.
            create = self._create_connection

            def created(*args: Any, **kwargs: Any) -> socket.socket:
                sock = create(*args, **kwargs)
                _dog.watch(self, sock)
                return sock

            self._create_connection = created
            try:
                super().connect()
            finally:
                self._create_connection = create

    Watched.__name__ = f"Watched{base.__name__}"
    return Watched


_WATCHED_CLASSES = {base: _watched_connection(base) for base in (http.client.HTTPConnection,
                                                                 http.client.HTTPSConnection)}


class WatchedHandlerMixin:
    """Mixed into urllib's HTTP and HTTPS handlers: the connections they open are under the
    current call's watch."""

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        return super().do_open(_WATCHED_CLASSES.get(http_class, http_class), req, **kwargs)  # type: ignore[misc]
