"""gunicorn settings for `make run` and production. Every value can be overridden on the command line
or with GUNICORN_CMD_ARGS."""

import os

bind = os.environ.get("CONNECTOR_BIND", "127.0.0.1:8000")
# One worker more than there are cores, at most four: each worker is one GIL, and on SQLite all of
# them queue for the same writer lock. Intake on 2 cores (make bench): 2 workers 330–345/s,
# 3 workers 383–416/s, 4 workers 352/s.
workers = int(os.environ.get("CONNECTOR_WEB_WORKERS", str(min((os.cpu_count() or 1) + 1, 4))))
# A request thread mostly waits (its sync budget, its group's commit): 8 threads capped a worker
# below what its CPU could do; idle threads cost little.
threads = int(os.environ.get("CONNECTOR_WEB_THREADS", "32"))
worker_class = "gthread"


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that meets contention a malloc arena of its own (up to 8 per core),
    and each keeps what it has freed: with 32 request and 16 delivery threads per worker, RSS grew
    +10 to +13 % over 10,000 handoffs, against +7 to +10 % with two arenas (bench/FIXES.md, round 7).
    The GIL already serializes nearly all of these allocations, so more arenas buy little. Set in
    the master, before any thread, so every forked worker inherits it; MALLOC_ARENA_MAX in the
    environment wins, and elsewhere than glibc this does nothing."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(ctypes.c_int(-8), ctypes.c_int(arenas))  # M_ARENA_MAX from glibc's malloc.h
    except (OSError, AttributeError):  # not glibc
        pass


_limit_malloc_arenas()
timeout = 60
graceful_timeout = 30
accesslog = "-"


def on_starting(server):
    """Once, in the master, before any worker: create or upgrade the schema."""
    from connector import create_app

    app = create_app()
    services = app.extensions["connector"]
    services.db.upgrade()
    services.db.dispose()


def post_worker_init(worker):
    """Each web worker also runs the outbox loop (retries, leftovers after a restart), so one
    command runs everything; dedicated workers (`flask --app wsgi connector worker`) can be added."""
    from flask import Flask

    app = worker.wsgi
    if isinstance(app, Flask):
        services = app.extensions["connector"]
        services.start_loop(services.settings.poll_interval_s)


def worker_exit(server, worker):
    from flask import Flask

    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        app.extensions["connector"].stop()
