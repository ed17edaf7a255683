"""Engine, sessions and schema upgrades.

SQLite runs in WAL mode with a busy timeout so the request thread and delivery threads can write
side by side; PostgreSQL needs nothing special. The schema is owned by Alembic.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from . import driver_cursor, json_codec
from .errors import ConfigError
from .settings import DEFAULT_DATABASE_URL, exposed_mode

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
READONLY = "connector_readonly"
# pg_advisory_xact_lock key of schema upgrades ("hand" in ASCII): any constant the database's other users do not take.
MIGRATION_LOCK = 0x68616E64
SUPPORTED = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
# How long a SQLite writer waits for a lock held outside the writer lock (a `sqlite3` shell, a backup):
# a `Database` made without saying; the service's (and its flask commands') no longer than a bot's
# answer may take (`service_busy_timeout`).
BUSY_TIMEOUT_S = 30.0


def service_busy_timeout(sync_budget_ms: int) -> float:
    """The service's SQLite busy timeout: the sync budget, at least 5 s, at most 30 s. A bot waited
    30 s for a 503 while an outside process held the database; its own processes queue on the
    writer lock (`WriterLock`), not on this."""
    return min(BUSY_TIMEOUT_S, max(5.0, sync_budget_ms / 1000))


def make_engine(url: str, root: str, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as err:  # sqlalchemy raises ArgumentError with the URL in it
        raise ConfigError("CONNECTOR_DATABASE_URL", "is not a database URL") from err
    if parsed.drivername not in SUPPORTED:
        # Else the missing driver's ImportError, and flask's "No such command 'connector'" after it.
        raise ConfigError("CONNECTOR_DATABASE_URL", f"must start sqlite:/// or postgresql+psycopg://, got "
                                                    f"{parsed.drivername}:// (the drivers installed)")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if _in_memory(database, parsed.query):
            # Each process has its own: gunicorn's master migrated its memory, every worker started on
            # an empty database (/readyz 503, every handoff 500) while `check` and `migrate` passed.
            raise ConfigError("CONNECTOR_DATABASE_URL", "names an in-memory SQLite database, which each process "
                                                        "has its own of: give a file path "
                                                        "(sqlite:///instance/connector.db)")
        plain = not database.startswith("file:")  # not a URI
        if plain and not os.path.isabs(database):
            database = os.path.join(root, database)
            parsed = parsed.set(database=database)
        if os.path.isdir(database if plain else _uri_path(database)):
            # SQLite said only "unable to open database file", and `check` advised a chmod 600 of it.
            raise ConfigError("CONNECTOR_DATABASE_URL", f"names a directory ({database}), not a database file: add "
                                                        "the file's name (sqlite:///instance/connector.db)")
        # hide_parameters: an error's text must not carry the packets a statement was writing
        # (a group commit writes several customers' at once) into a log line.
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
                               hide_parameters=True, json_serializer=json_codec.dumps)
        if plain or _uri_makes(parsed.query):
            # Made when first connected to, not before: `check` or `deliveries` with a mistyped
            # path must say there is no such database rather than leave an empty one behind. A URI
            # filename's too: SQLite made it readable by all (0644), and without a word (a review).
            default, file = url == DEFAULT_DATABASE_URL, sqlite_file_of(database)
            event.listen(engine, "do_connect", lambda *_: _private_file(file, default))
        event.listen(engine, "connect", partial(_sqlite_pragmas, busy_timeout_ms=round(busy_timeout_s * 1000)))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    waits = max(2, math.ceil(busy_timeout_s))
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20, hide_parameters=True,
                         json_serializer=json_codec.dumps, pool_timeout=waits,
                         connect_args=postgres_waits(parsed.query, waits))


def postgres_waits(query: Mapping[str, Any], seconds: int) -> dict[str, int]:
    """libpq's bounds on a server that stops answering, but those the URL sets itself: a new
    connection given up after `seconds` (libpq waited ~130 s); one whose peer is gone (a failover
    moving the address, a partition) dropped once its unacknowledged data or keep-alive probes go
    unanswered for `seconds` (it waited for ever). Without them every gunicorn thread came to wait
    on the database — `/healthz` unanswered too — and bots waited minutes for the 503 the README
    promises (a review). A server process that freezes while its host still acknowledges the
    bytes is not bounded here: README, "PostgreSQL"."""
    bounds = {"connect_timeout": seconds, "keepalives": 1, "keepalives_idle": seconds,
              "keepalives_interval": max(1, seconds // 3), "keepalives_count": 3, "tcp_user_timeout": seconds * 1000}
    return {name: value for name, value in bounds.items() if name not in query}


def sqlite_file_of(database: str) -> str:
    """The file a SQLite URL's database part names: a path as it is, a URI filename's own path."""
    return _uri_path(database) if database.startswith("file:") else database


def _uri_makes(query: Mapping[str, Any]) -> bool:
    """Whether SQLite makes the file a URI filename names when it is not there (`mode=rwc`, the
    default; the URL's query carries the URI's parameters)."""
    def last(name: str, default: str) -> str:
        value = query.get(name, default)
        return str(value[-1] if isinstance(value, tuple) else value)

    return last("mode", "rwc") == "rwc" and last("immutable", "0") in ("0", "")


def _uri_path(database: str) -> str:
    """The file a SQLite URI filename (`file:…`) names: its path, decoded, without its query (relative
    to the working directory, as SQLite takes it; `file://localhost/…` or `file:///…` absolute)."""
    path = unquote(database.removeprefix("file:").split("?", 1)[0].split("#", 1)[0])
    return "/" + path[2:].partition("/")[2] if path.startswith("//") else path


def _in_memory(database: str, query: Any) -> bool:
    """SQLite's in-memory database: `sqlite://`, `sqlite:///:memory:`, or a URI filename saying so."""
    if database.startswith("file:"):
        return database.removeprefix("file:").startswith(":memory:") or query.get("mode") == "memory"
    return database in ("", ":memory:")


def _private_file(database: str, default: bool = False) -> None:
    """The database holds packets — names, addresses, whole transcripts: a directory or file made
    here is its owner's alone (0700, 0600; SQLite gives its -wal and -shm files the database's
    mode). What already exists keeps its mode (`Database.warnings` names a readable one). Where
    nothing can be made, SQLite's own error says so when the database is first used."""
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(database), mode=0o700, exist_ok=True)
        if not os.path.exists(database):  # follows a symlink: its target is made private too
            os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
            # Said once, when made: a mistyped path (`instanse/`) started the service on an empty
            # database ("schema at head", "ready"), the real one's pending deliveries and
            # idempotency keys stranded, without a word.
            # The quickstart's first start makes the default one, as it should: not a warning there.
            if default:
                log.info("a new SQLite database is made at the default path (CONNECTOR_DATABASE_URL unset)",
                         extra={"path": os.path.abspath(database)})
            else:
                log.warning("no SQLite database was there: a new, empty one is made; if one exists elsewhere, "
                            "CONNECTOR_DATABASE_URL does not name it", extra={"path": os.path.abspath(database)})


def _could_make(path: str) -> bool:
    """Whether a file could be made at `path`: its nearest existing ancestor is a directory we may write in."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    return os.path.isdir(parent) and os.access(parent, os.W_OK)


def _sqlite_pragmas(dbapi_connection, _record, busy_timeout_ms: int) -> None:  # type: ignore[no-untyped-def]
    # pysqlite's own transaction handling breaks SAVEPOINT and begins late; take it over
    # (SQLAlchemy's documented recipe) and begin explicitly in `_sqlite_begin`.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection) -> None:  # type: ignore[no-untyped-def]
    # IMMEDIATE takes the write lock up front: concurrent writers wait on busy_timeout instead of
    # failing with SQLITE_BUSY_SNAPSHOT when a read transaction later tries to write (WAL).
    # Read-only sessions (`Database.reading`) need no lock at all: WAL readers never wait.
    # Straight on the driver: SQLAlchemy's execution path around one BEGIN cost ~0.1 ms, twice per
    # handoff (intake and recording), on the path a bot waits on.
    readonly = connection.get_execution_options().get(READONLY, False)
    driver_cursor.plain(connection, "BEGIN" if readonly else "BEGIN IMMEDIATE")


class WriterLock:
    """One SQLite writer at a time, handed over as soon as it is free.

    SQLite admits one writer; the others wait in `BEGIN IMMEDIATE`, where busy_timeout *polls*: it
    sleeps 1, 2, 5 … 100 ms between tries, so under load the database sat unlocked while its
    waiters slept (the benchmark saw BEGIN waits of 9 ms on average, 20 ms at p90, for
    transactions that held the lock ~2 ms). Here a writer first queues on a thread lock (this
    process) and on an `flock` of a file beside the database (gunicorn's other workers), which the
    kernel hands to the next waiter the moment it is released. Whatever does not take this lock
    (a CLI command, a migration) still meets busy_timeout, as before.

    A thread waits for its process's turn at most `wait_s` (the busy timeout), then gets the error
    SQLite gives when busy_timeout runs out: while a lock is held from outside, each writer in turn
    waits that long for it, and the threads queued behind would otherwise wait their turns' sum (a
    bot's request behind thirty others: minutes). Background writers meet the same limit: an
    attempt whose result cannot be recorded is left to its lease, and the next attempt looks at the
    vendor before sending. The one thread whose turn it is waits for the file lock without a limit:
    each other worker holds it one transaction at a time.
    """

    def __init__(self, database_path: str | None, wait_s: float = BUSY_TIMEOUT_S):
        self.path = f"{database_path}-writer.lock" if database_path else None
        self.wait_s = wait_s
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._fd_pid: int | None = None
        self._warned = False
        # A child forked while this process held the lock would inherit the thread lock as held by
        # its own (forking) thread and take itself for nested inside the parent's turn.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (lock := ref()) is not None and lock._forget_parent())

    def _forget_parent(self) -> None:
        self._threads = threading.RLock()
        self._depth = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        threads = self._threads  # the one released below, should a fork replace it meanwhile
        if not threads.acquire(timeout=self.wait_s):
            locked = sqlite3.OperationalError(f"database is locked (no turn to write within {self.wait_s:g} s)")
            raise OperationalError("BEGIN IMMEDIATE (the writer lock)", None, locked)
        try:
            self._depth += 1
            fd = self._file() if self._depth == 1 else None
            try:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                self._depth -= 1
        finally:
            threads.release()

    def _file(self) -> int | None:
        if self.path is None:
            return None
        if self._fd_pid != os.getpid():
            # A descriptor inherited across fork shares its lock with the parent: open our own.
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
            self._fd = None
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as err:
                if self._warned:
                    return None
                self._warned = True
                # Not fatal: the database's own busy_timeout still orders writers (slowly), and if
                # the directory is gone the database reports that itself, as it always did.
                log.warning("no writer lock file; writers fall back to busy_timeout",
                            extra={"path": self.path, "error": type(err).__name__})
                return None
            self._fd_pid = os.getpid()
        return self._fd


def reason(err: BaseException) -> str:
    """The driver's own first line (SQLAlchemy's adds the statement and a link): it names the host
    or file and why, never the password."""
    text = str(getattr(err, "orig", None) or err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


@dataclass(frozen=True)
class SchemaGap:
    """How the database's schema differs from this code's: `words` say it; `migrate` is whether
    `connector migrate` closes the gap (not for a newer release's schema)."""

    words: str
    migrate: bool
    state: str  # how `check` shows it: "not created yet", "behind", "from a newer release"
    no_file: bool = False  # SQLite: the file does not exist (nothing was connected to, or made)


# The first grant the role lacks, and on what: every table read, written and updated; rows deleted
# from the tables retention deletes from (`_DELETED_FROM`: the rest go by ON DELETE CASCADE, which
# needs no grant — asked of every table, a least-privilege role was never ready); the id sequences
# of the tables whose ids are numbered (`ON ALL SEQUENCES` forgotten: every insert refused; `nextval`
# takes USAGE or UPDATE, either). Each table right asked alone: several in one `has_table_privilege`
# are true if any is held. A table not made yet (`to_regclass` NULL) is the schema's gap, said apart.
_DENIED = text(
    "SELECT 'read and write table ' || name FROM unnest(CAST(:tables AS text[])) AS name WHERE NOT ("
    "has_table_privilege(current_user, to_regclass(name), 'SELECT') AND "
    "has_table_privilege(current_user, to_regclass(name), 'INSERT') AND "
    "has_table_privilege(current_user, to_regclass(name), 'UPDATE')) "
    "UNION ALL SELECT 'delete from table ' || name FROM unnest(CAST(:deleted AS text[])) AS name "
    "WHERE NOT has_table_privilege(current_user, to_regclass(name), 'DELETE') "
    "UNION ALL SELECT 'use the id sequence of table ' || name FROM unnest(CAST(:numbered AS text[])) AS name "
    "WHERE CASE WHEN to_regclass(name) IS NULL THEN false ELSE NOT COALESCE("
    "has_sequence_privilege(current_user, pg_get_serial_sequence(name, 'id'), 'USAGE, UPDATE'), true) END LIMIT 1")
_DELETED_FROM = ("conversation_links", "handoffs")  # `retention.purge`'s deletes


class Database:
    def __init__(self, url: str, root: str, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.engine = make_engine(url, root, busy_timeout_s)
        database = self.engine.url.database if self.dialect == "sqlite" else None
        # A URI filename's file too: its writers took no turns (no -writer.lock), a mistyped one was
        # made empty by `check`, and a readable one drew no warning (a review).
        self.sqlite_file = sqlite_file_of(database) if database else None
        self._writer = WriterLock(self.sqlite_file, busy_timeout_s) if self.dialect == "sqlite" else None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.readers = sessionmaker(self.engine.execution_options(**{READONLY: True}), expire_on_commit=False)
        self._skipping: dict[tuple[str, tuple[str, ...]], Any] = {}

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self._writing_turn(), self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A unit of work of plain statements, without an ORM session (hot paths)."""
        with self._writing_turn(), self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def statements(self) -> Iterator[driver_cursor.Pooled]:
        """A unit of work of `driver_cursor` statements only, on a pooled driver connection: no
        SQLAlchemy `Connection`, whose checkout, begin and close cost ~0.1 ms a transaction on a CPU
        that has just been idle (`bench/FIXES.md`, round 6) — twice per handoff on the bot's path."""
        with self._writing_turn():
            pooled = driver_cursor.Pooled.checkout(self.engine)
            try:
                if self.dialect == "sqlite":  # PostgreSQL's driver begins at the first statement
                    driver_cursor.plain(pooled, "BEGIN IMMEDIATE")
                yield pooled
                pooled.commit()
            except BaseException as err:
                if isinstance(err, DBAPIError) and err.connection_invalidated:
                    pooled.connection.invalidate(err)  # dropped by the database: never back into the pool
                else:
                    with contextlib.suppress(Exception):  # the error that got here is the one to report
                        pooled.connection.rollback()
                raise
            finally:
                pooled.connection.close()  # back to the pool

    def _writing_turn(self) -> contextlib.AbstractContextManager[None]:
        return self._writer.held() if self._writer is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only unit of work (on SQLite it takes no write lock); never commits.

        Closing (not rolling back) ends it, so the objects read stay loaded for the caller.
        """
        with self.readers() as session:
            yield session

    def insert_or_skip(self, table: Table, returning: tuple[str, ...] = ()) -> Any:
        """`INSERT … ON CONFLICT DO NOTHING [RETURNING …]` in this database's dialect: rowcount 1 if
        inserted. Built once per table and returned columns: the same object each time is compiled
        once (`driver_cursor`, SQLAlchemy's cache), where a new one is keyed again on every call."""
        key = (table.name, returning)
        statement = self._skipping.get(key)
        if statement is None:
            dialect_insert = postgresql_insert if self.dialect == "postgresql" else sqlite_insert
            statement = dialect_insert(table).on_conflict_do_nothing()
            if returning:
                statement = statement.returning(*(table.c[name] for name in returning))
            self._skipping[key] = statement
        return statement

    def migrate(self) -> None:
        """`upgrade`, for the commands and the service's start: a database out of reach, or one a
        newer release has migrated, is one `ConfigError` naming it — both were a traceback of a
        hundred lines (Alembic's "Can't locate revision" for the second), the cause at its end."""
        try:
            gap = self.schema_gap()
            if gap is not None and not gap.migrate:
                raise ConfigError("CONNECTOR_DATABASE_URL", f"the database cannot be used by this code: {gap.words}")
            self.upgrade()
        except SQLAlchemyError as err:
            raise ConfigError("CONNECTOR_DATABASE_URL",
                              f"the database could not be migrated: {reason(err)}") from None
        except CommandError as err:
            # Moved on by a newer release while this one waited for the migration lock (a rolling
            # deploy): the gap read before the wait said "migrate", Alembic then met a revision
            # this code does not have.
            gap = self.schema_gap()
            words = gap.words if gap is not None else str(err)
            raise ConfigError("CONNECTOR_DATABASE_URL", f"the database cannot be used by this code: {words}") from None

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        config = _alembic_config()
        with self.engine.connect() as connection, self._foreign_keys_off(connection):
            with connection.begin():
                if self.dialect == "postgresql":
                    # One at a time: two processes starting together (gunicorn masters, `migrate`
                    # beside a deploy) both created the schema and one failed on PostgreSQL's
                    # catalog. The second waits, then finds it at head. (SQLite's writer lock serializes.)
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                config.attributes["connection"] = connection
                orphans = self._orphans(connection)
                command.upgrade(config, "head")
                if made := self._orphans(connection) - orphans:
                    # Only what the migration made: a row orphaned by hand before (a DELETE in the
                    # sqlite3 shell, which has foreign keys off) stopped every start.
                    raise ConfigError("CONNECTOR_DATABASE_URL", "the migration would leave rows naming rows that "
                                      f"are not there, so nothing was changed: {sorted(made)[:5]}")
        log.info("database schema at head", extra={"dialect": self.dialect})

    def _orphans(self, connection: Connection) -> set[tuple[Any, ...]]:
        """SQLite's rows naming a row that is not there (table, rowid, parent table); none checked elsewhere."""
        if self.dialect != "sqlite":
            return set()
        return {tuple(row[:3]) for row in connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()}

    @contextlib.contextmanager
    def _foreign_keys_off(self, connection: Connection) -> Iterator[None]:
        """SQLite's foreign keys off for a migration, as Alembic's batch mode asks: it changes a
        table by copying it and dropping the old one, and with them on the drop cascaded — 0003's
        copy of `handoffs` deleted every delivery of a database upgraded from 0001 or 0002 (their
        pending handoffs were never sent, and read as delivered). The pragma does nothing inside a
        transaction: it goes to the driver before the migration's begins, and back on after."""
        if self.dialect != "sqlite":
            yield
            return
        raw = connection.connection.dbapi_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            yield
        finally:
            raw.execute("PRAGMA foreign_keys=ON")

    def schema_gap(self) -> SchemaGap | None:
        """None when the schema is at the newest migration, else how it differs. Reads only
        Alembic's version table (a database the service never started on has none), directly:
        Alembic's context logs two lines."""
        from sqlalchemy import inspect

        if self.sqlite_file and not os.path.exists(self.sqlite_file) and _could_make(self.sqlite_file):
            # Connecting would make it (a path that cannot be made fails below, with SQLite's reason).
            return SchemaGap(f"there is no database file at {self.sqlite_file} yet (is the path right?)",
                             migrate=True, state="not created yet", no_file=True)
        script = _migrations()
        head = script.get_current_head()
        with self._reader() as connection:
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                if inspect(connection).has_table("alembic_version") else None
        if current == head:
            return None
        if current is None:
            return SchemaGap("it holds no connector schema yet", migrate=True, state="not created yet")
        try:
            script.get_revision(current)
        except CommandError:
            return SchemaGap(f"its schema is at revision {current}, which this code does not know: a newer "
                             "release made it; run that release, or restore a backup taken before it", migrate=False,
                             state="from a newer release")
        return SchemaGap(f"its schema is at revision {current}; this code needs {head}", migrate=True, state="behind")

    def warnings(self) -> list[str]:
        """A SQLite file other users of the machine may read (made before the service made its
        files private, or by hand): it holds packets."""
        mode = exposed_mode(self.sqlite_file or "")
        if not mode:
            return []
        return [f"the SQLite database {self.sqlite_file} can be read by other users of this machine (mode "
                f"{mode:04o}); it holds whole packets: chmod 600 '{self.sqlite_file}'*"]

    def ping(self) -> None:
        with self._reader() as connection:
            connection.execute(text("SELECT 1"))

    def writes_refused(self) -> str | None:
        """Why a database that answers takes no writes: PostgreSQL read-only (a standby, a primary
        a failover demoted while the address still names it, `default_transaction_read_only`) — every
        handoff refused while /readyz said ready and the load balancer kept sending bots (an
        operator's review). None otherwise; SQLite is not asked (nothing is connected to, no file
        made: a read-only file is refused at intake, 503)."""
        if self.dialect != "postgresql":
            return None
        from .models import Base

        with self._reader() as connection:
            if connection.execute(text("SHOW transaction_read_only")).scalar() == "on":
                return "read-only: it takes no writes (a standby, or default_transaction_read_only)"
            # A role without the grants (a table a migration made as another role): every handoff a
            # 503 while /readyz said ready (a review of the mend). `to_regclass`: a table not made yet
            # is the schema's gap, said apart.
            tables = Base.metadata.sorted_tables
            numbered = [t.name for t in tables if "id" in t.c and t.c.id.primary_key and t.c.id.type.python_type is int]
            denied = connection.execute(_DENIED, {"tables": [t.name for t in tables], "deleted": list(_DELETED_FROM),
                                                  "numbered": numbered}).scalar()
        return f"not writable by this role: it may not {denied} (grants)" if denied else None

    def _reader(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection that begins without the write lock: SQLite's `BEGIN IMMEDIATE` would queue a
        readiness probe or a CLI look at the schema behind the service's writers, and block them."""
        return self.engine.execution_options(**{READONLY: True}).connect()

    def dispose(self) -> None:
        self.engine.dispose()


@lru_cache(maxsize=1)
def _migrations() -> ScriptDirectory:
    """The migration scripts, read once per process: they ship with the code. Read again on every
    /readyz (which a load balancer polls), they were nearly all of its 7 ms."""
    return ScriptDirectory.from_config(_alembic_config())


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
