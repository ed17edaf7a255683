"""Start a test server's `serve_forever` on a thread of its own."""

from __future__ import annotations

import socketserver
import threading

# `shutdown()` returns only when `serve_forever` next looks at its flag: every `poll_interval`,
# 0.5 s by default, which every test with a fake server waited at its teardown.
POLL_S = 0.05


def serve_in_thread(server: socketserver.BaseServer, name: str | None = None, daemon: bool = True) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_S}, name=name,
                              daemon=daemon)
    thread.start()
    return thread
