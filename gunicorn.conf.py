"""gunicorn settings for `make run` and production. Every value can be overridden on the command line
or with GUNICORN_CMD_ARGS."""

import atexit
import os
import re
import sys

# gunicorn may be started elsewhere (`--chdir`): the package sits beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from connector import settings as _settings
from connector.errors import ConfigError
from connector.settings import (
    ENV_FILE,
    FILE_READ,
    bind_address,
    count,
    load_env_file,
    pin_env_file,
    reread_env_file,
    writable_directory,
)

# `.env` (or CONNECTOR_ENV_FILE) is read here, in the directory gunicorn starts in: CONNECTOR_BIND
# and the worker counts below are needed before the app exists, and `make run` should honour them.
# The app reads the same file again (to the same effect), named absolutely for it: after a
# `--chdir` it would otherwise look for another `.env`, or resolve a relative name elsewhere.
# connector.settings imports nothing of prometheus-client (see share_metrics).
# gunicorn executes this file again on a reload (SIGHUP), in the master that started: the file is
# then read afresh and judged before any new worker starts on it (`reread_env_file`, `on_reload`).
DEFAULT_BIND = "127.0.0.1:8000"
# The metrics directory `share_metrics` made, removed at exit. In the environment, not in this
# module: gunicorn executes this file again on a reload, and a module list started empty then (one
# directory was left in /tmp after each reload).
MADE_METRICS_DIRECTORY = "_CONNECTOR_METRICS_DIR_MADE"
_refused: ConfigError | None = None
if _settings.GUNICORN_STARTED:
    _in_use = dict(os.environ)

    def _usable(environ):
        """What a worker would refuse, and what a reload cannot apply: the workers would fail to
        boot, and gunicorn then stops the whole service."""
        from adapters.registry import check_targets

        settings = _settings.Settings.from_env(environ)
        check_targets(settings.targets, settings)
        for name in ("CONNECTOR_WEB_WORKERS", "CONNECTOR_WEB_THREADS"):
            if name in environ:  # set but empty too: the module-level `_count` below exits on it
                count(name, environ[name])
        # Listened on by the master, which a reload does not move: a new address (or a typo in it)
        # had gunicorn rebind, fail, and stop the whole service.
        if environ.get("CONNECTOR_BIND", DEFAULT_BIND) != _in_use.get("CONNECTOR_BIND", DEFAULT_BIND):
            raise ConfigError("CONNECTOR_BIND", "changed: a reload does not move the service to another address; "
                              "restart it")
        # Chosen once, at start: the schema is migrated there, and the master's metrics mode too.
        if settings.database_url != _settings.Settings.from_env(_in_use).database_url:
            raise ConfigError("CONNECTOR_DATABASE_URL", "changed: a reload does not move the service to another "
                              "database (its schema is made at start); restart it")
        # The master loaded the mappings once, at start, and follows that directory for the workers
        # it forks: accepted, the current workers moved and one replaced after a crash served the
        # old directory's routing.
        if os.path.abspath(settings.mappings_dir) != os.path.abspath(_settings.Settings.from_env(_in_use).mappings_dir):
            raise ConfigError("CONNECTOR_MAPPINGS_DIR", "changed: a reload does not move the service to another "
                              "mappings directory (the workers gunicorn starts next would still read the old one); "
                              "restart it")
        if environ.get("PROMETHEUS_MULTIPROC_DIR") != _in_use.get("PROMETHEUS_MULTIPROC_DIR") \
                or _file_sets_another_metrics_directory(environ):
            raise ConfigError("PROMETHEUS_MULTIPROC_DIR", "changed: the metrics directory is chosen at start; "
                              "restart the service")

    def _file_sets_another_metrics_directory(environ):
        """The edited file names a metrics directory where the service made its own at start: that
        one, in the master's environment, wins over the file's line, which was taken and ignored."""
        made = _in_use.get(MADE_METRICS_DIRECTORY)
        read = environ.get(FILE_READ)
        if not made or made != _in_use.get("PROMETHEUS_MULTIPROC_DIR") or not read:
            return False
        from dotenv import dotenv_values

        named = dotenv_values(read).get("PROMETHEUS_MULTIPROC_DIR")
        return bool(named) and os.path.abspath(named) != os.path.abspath(made)

    _refused = reread_env_file(_usable)
    _settings.REFUSED_EDIT = _refused  # for the workers forked next: /readyz and /metrics say it
else:
    try:
        _read = load_env_file()
    except ConfigError as err:  # one line saying what to fix, not gunicorn's traceback ending with it
        sys.exit(f"configuration error: {err}")
    pin_env_file(_read)


def _count(name: str, default: int) -> int:
    try:
        return count(name, os.environ.get(name, str(default)))
    except ConfigError as err:  # as above: not "Failed to read config file" and int()'s traceback
        sys.exit(f"configuration error: {err}")


try:
    bind = bind_address("CONNECTOR_BIND", os.environ.get("CONNECTOR_BIND", DEFAULT_BIND))
except ConfigError as err:  # as above
    sys.exit(f"configuration error: {err}")
# One worker more than there are cores, at most four: each worker is one GIL, and on SQLite all of
# them queue for the same writer lock. Intake on 2 cores (make bench): 2 workers 330–345/s,
# 3 workers 383–416/s, 4 workers 352/s.
workers = _count("CONNECTOR_WEB_WORKERS", min((os.cpu_count() or 1) + 1, 4))
# A request thread mostly waits (its sync budget, its group's commit): 8 threads capped a worker
# below what its CPU could do; idle threads cost little.
threads = _count("CONNECTOR_WEB_THREADS", 32)
worker_class = "gthread"
timeout = 60
graceful_timeout = 30
accesslog = "-"
# gunicorn's default line with the path in place of the request line: a query string carries what
# a bot looks up by (`GET /v1/handoffs?conversation_id=` — on WhatsApp or SMS, a phone number).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def limit_malloc_arenas(log, arenas: int = 2) -> bool:
    """glibc gives each thread that meets contention a malloc arena of its own (up to 8 per core),
    and each keeps what it has freed: with 32 request and 16 delivery threads per worker, the worst
    worker's RSS went from 93 MiB after 100 handoffs to 105 MiB after 10,000 with the default, and
    from 89 to 94 MiB with two arenas (bench/FIXES.md, round 7). The GIL already serializes nearly
    all of these allocations, so more arenas buy little. Called in the master before any worker is
    forked (each inherits it); a limit set in the environment (MALLOC_ARENA_MAX, or
    glibc.malloc.arena_max in GLIBC_TUNABLES) wins; elsewhere than glibc this does nothing."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    if os.environ.get("MALLOC_ARENA_MAX") or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    arena_max = -8  # M_ARENA_MAX in glibc's malloc.h
    if ctypes.CDLL(None).mallopt(ctypes.c_int(arena_max), ctypes.c_int(arenas)) != 1:
        log.warning("mallopt(M_ARENA_MAX, %d) was refused; workers keep glibc's default arenas", arenas)
        return False
    return True


# prometheus-client's names for its files in multiprocess mode: counter_, histogram_, summary_,
# gauge_<mode>_ (all, liveall, max, livesum, mostrecent…), then the writing process's pid.
METRICS_FILE = re.compile(r"(?:counter|histogram|summary|gauge_[a-z]+)_(?P<pid>\d+)\.db")


def share_metrics(environ=os.environ) -> str:
    """Every worker writes its metrics to files in one directory, so a scrape of any worker adds
    them all up (prometheus-client's multiprocess mode): PROMETHEUS_MULTIPROC_DIR, else a new
    temporary directory. A previous run's files are removed, or they would be counted again. Must
    run before prometheus-client is first imported (it picks its mode then), so before the app.
    A directory it cannot make or write is a `ConfigError` naming the variable."""
    import tempfile

    directory = environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="connector-metrics-")
        environ[MADE_METRICS_DIRECTORY] = directory
        # gunicorn calls on_exit only after a start: its sys.exit(1) on a port in use, made after
        # this, left one directory in /tmp per try.
        atexit.register(_remove_made, directory, os.getpid())
    writable_directory("PROMETHEUS_MULTIPROC_DIR", directory)  # a file there was a traceback, not a line
    for name in os.listdir(directory):
        # Only prometheus-client's own files, `<kind>_<pid>.db`: any `*.db` took the SQLite database
        # (`connector.db`) or its backup with them when the directory was `instance/`. A live
        # process's (a `connector worker` sharing the directory) is kept: it keeps its file open and
        # mapped — removed, its counts would go on into a file nobody reads.
        found = METRICS_FILE.fullmatch(name)
        if found and not _alive(int(found["pid"])):
            os.remove(os.path.join(directory, name))
    environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def _remove_made(directory: str, maker: int) -> None:
    """At the exit of the process that made `directory`, however it exits: the workers it forks
    inherit the handler, and their exit must leave the directory the others still write to."""
    import shutil

    if os.getpid() == maker:
        shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def on_starting(server):
    """Once, in the master, before any worker: fewer malloc arenas, one directory for every worker's
    metrics, then create or upgrade the schema."""
    _settings.GUNICORN_STARTED = True  # from now on, executing this file again is a reload
    limit_malloc_arenas(server.log)
    try:
        share_metrics()  # before the app: prometheus-client picks its mode as it is imported
    except ConfigError as err:  # one line saying what to fix, not a traceback ending with it
        server.log.error("configuration error: %s", err)
        raise SystemExit(2) from None
    from connector import create_app
    from connector.app import WARNED

    try:
        app = create_app()
    except ConfigError as err:  # one line saying what to fix, not a traceback ending with it
        server.log.error("configuration error: %s", err)
        on_exit(server)  # gunicorn calls it only after a start: the directory made above would stay
        raise SystemExit(2) from None
    os.environ[WARNED] = "1"  # create_app logged the settings' warnings: the workers need not again
    services = app.extensions["connector"]
    try:
        services.db.migrate()
    except ConfigError as err:  # the database out of reach, or migrated by a newer release: one line
        _flush_logs()  # the app's lines (written by a thread) first: the log must end with the reason
        server.log.error("database error: %s", err)
        on_exit(server)
        raise SystemExit(2) from None
    services.db.dispose()
    from connector.mappings import follow_for_workers, keep_for_workers

    keep_for_workers(services.mapping_store)
    follow_for_workers(services.mapping_store.interval)


def _flush_logs() -> None:
    import logging

    for handler in logging.getLogger().handlers:
        handler.flush()


def on_reload(server):
    """After a reload (SIGHUP) read the settings again, before the new workers start: say what
    happened to the edit. Refused, they start on the settings that were in use."""
    if _refused:
        server.log.error("reload: the edited settings are refused, the workers keep the ones in use: %s", _refused)
        return
    server.log.info("reload: settings read again from %s", os.environ.get(ENV_FILE) or "the environment")
    from adapters.registry import build_adapters
    from connector.mappings import inherited
    from connector.services import absent_warnings, mapping_warnings, setup_warnings

    settings = _settings.Settings.from_env()
    held = inherited()  # the mapping set the new workers inherit; None only outside a started master
    # As at start (the workers say none): a target the edit enabled may have its own (Zendesk's
    # missing webhook secrets, Salesforce's missing handoff_id_field).
    adapters = build_adapters(settings, held.targets) if held is not None else {}
    for warning in setup_warnings(settings, adapters):
        server.log.warning("reload: setting to look at: %s", warning)
    # …and of its mapping file (Salesforce's missing handoff_id_field, a Slack channel by name): the
    # workers inherit the master's word that all was said, and an edit of the mappings says them.
    for warning in [*absent_warnings(held, adapters), *mapping_warnings(adapters, held)] if held is not None else ():
        server.log.warning("reload: mapping to look at: %s", warning)


def pre_fork(server, worker):
    """In the master, before each worker is forked (at start and when one is replaced): the
    mappings it will inherit, should an edit be refused as it boots (`connector.mappings`)."""
    from connector.mappings import keep_for_workers

    keep_for_workers()


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


def on_exit(server):
    """The master stops: a metrics directory it made goes with it (one left each start filled
    /tmp); a configured one stays, with the files of any `connector worker` still sharing it."""
    import shutil

    made = os.environ.get(MADE_METRICS_DIRECTORY)
    if made:
        shutil.rmtree(made, ignore_errors=True)


def child_exit(server, worker):
    """A worker is gone: its live-gauge files go too (what it counted stays in the totals)."""
    from connector import metrics

    metrics.process_gone(worker.pid)
