"""A PostgreSQL that stops answering is given up after the service's busy timeout, as SQLite's lock
is: libpq waited ~130 s for a new connection, and every gunicorn thread came to wait on the
database — bots got no 503 for minutes, `/healthz` no answer (an operator review)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from connector.db import make_engine, postgres_waits


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that takes connections and never says a word (a server that stopped answering)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for sock in [*held, listener]:
        sock.close()


def test_a_new_connection_to_a_server_that_does_not_answer_is_given_up_after_the_busy_timeout(tmp_path,
                                                                                             silent_server):
    engine = make_engine(f"postgresql+psycopg://u@127.0.0.1:{silent_server}/db", str(tmp_path), busy_timeout_s=2)
    began = time.monotonic()
    with pytest.raises(OperationalError):
        engine.connect()
    assert time.monotonic() - began < 10  # libpq's own wait is ~130 s
    assert engine.pool.timeout() == 2  # and a free pooled connection is waited for as long


def test_the_urls_own_bounds_win():
    assert postgres_waits({}, 5) == {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5,
                                     "keepalives_interval": 1, "keepalives_count": 3, "tcp_user_timeout": 5000}
    assert "connect_timeout" not in postgres_waits({"connect_timeout": "30"}, 5)
