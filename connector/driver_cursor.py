"""The hot path's statements, compiled once and run straight on the driver's cursor.

A handoff's latency is mostly Python: per statement SQLAlchemy's execution path (execution
context, parameter processing, result wrapping) costs ~0.1 ms, and ~0.3 ms on a CPU that has just
been idle, where SQLite itself takes ~0.02 ms. Storing one handoff took 2.1 ms that way and 1.4 ms
with its statements on the driver's cursor (`bench/FIXES.md`, round 5).

The statements stay SQLAlchemy Core constructs, one definition for both databases. SQLAlchemy
compiles each once per dialect and set of parameter names, and the columns' own types convert the
values both ways, as on its usual path. What this path does not do:

- Python-side column defaults: a statement that would need one is refused when it is prepared,
  so every value is given by the caller;
- invalidate a `Connection` the server dropped under one of these statements: its next statement
  of its own, or `pool_pre_ping` at the next checkout (PostgreSQL), finds it. A `Pooled` one is
  invalidated at once (`Database.statements`).

The database's errors are SQLAlchemy's (`IntegrityError`, `OperationalError`, …), without the
parameters in their text, like the engine's (`hide_parameters`); a value a column's type refuses
(a naive datetime) raises that type's own error. Engine events (`before_cursor_execute`, echo)
do not see these statements. `Database.statements()` runs a transaction of them on a pooled
driver connection (`Pooled`), without SQLAlchemy's `Connection` around it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable, Select
from sqlalchemy.sql.dml import Insert, UpdateBase

_GIVEN = object()  # the value comes from the caller's parameters


class Ran(NamedTuple):
    rows: list[tuple[Any, ...]]
    rowcount: int


@dataclass(frozen=True)
class _Prepared:
    sql: str
    positional: bool
    # Per bind, in the order the driver wants them: its name, where its value comes from
    # (`_GIVEN` or the statement's own literal) and the type's conversion.
    binds: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]
    results: tuple[Callable[[Any], Any] | None, ...]

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        converted = []
        for name, literal, convert in self.binds:
            value = params[name] if literal is _GIVEN else literal
            converted.append((name, convert(value) if convert is not None else value))
        if self.positional:
            return tuple(value for _, value in converted)
        return dict(converted)

    def row(self, raw: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self.results:
            return tuple(raw)
        return tuple(convert(value) if convert is not None else value
                     for value, convert in zip(raw, self.results, strict=False))


def run(connection: Connection | Pooled, statement: Executable, params: Mapping[str, Any]) -> Ran:
    """Execute one statement with one set of parameters inside `connection`'s transaction."""
    prepared = _prepare(statement, connection.dialect, tuple(sorted(params)))
    with _cursor(connection, prepared.sql) as cursor:
        cursor.execute(prepared.sql, prepared.values(params))
        rows = cursor.fetchall() if cursor.description is not None else []
        return Ran([prepared.row(row) for row in rows], cursor.rowcount)


def plain(connection: Connection | Pooled, sql: str) -> None:
    """Run SQL without parameters or results (`BEGIN IMMEDIATE`), errors as from `run`. Usable
    inside the engine's `begin` event, where the connection has no transaction yet."""
    with _cursor(connection, sql) as cursor:
        cursor.execute(sql)


class Pooled(NamedTuple):
    """A pooled driver connection without SQLAlchemy's `Connection` around it, for transactions
    of `run` statements only (`Database.statements`). `run` and `plain` take either."""

    dialect: Dialect
    connection: Any  # the pool's proxy of the driver's connection: cursor(), commit(), rollback(), close()

    @classmethod
    def checkout(cls, engine: Engine) -> Pooled:
        """A connection from `engine`'s pool; a database that cannot be reached raises SQLAlchemy's
        `OperationalError`, as `engine.connect()` would (the pool itself raises the driver's)."""
        with _errors(engine.dialect, "connect"):
            return cls(engine.dialect, engine.raw_connection())

    def commit(self) -> None:
        with _errors(self.dialect, "COMMIT", self.connection):
            self.connection.commit()


@contextlib.contextmanager
def _cursor(connection: Connection | Pooled, sql: str) -> Iterator[Any]:
    with _errors(connection.dialect, sql, connection.connection if isinstance(connection, Pooled) else None):
        cursor = connection.connection.cursor()  # inside: a dropped connection may fail here already
        try:
            yield cursor
        finally:
            cursor.close()


@contextlib.contextmanager
def _errors(dialect: Dialect, sql: str, pooled: Any = None) -> Iterator[None]:
    """The driver's errors as SQLAlchemy's (`OperationalError`, `IntegrityError`…), without parameters.
    On a `Pooled` connection, one the database dropped says so (`connection_invalidated`), and
    `Database.statements` invalidates it, as SQLAlchemy's `Connection` would; a `Connection`'s own
    error handling does that for its statements."""
    try:
        yield
    except dialect.loaded_dbapi.Error as err:
        lost = pooled is not None and dialect.is_disconnect(err, pooled.dbapi_connection, None)
        raise exc.DBAPIError.instance(sql, None, err, dialect.loaded_dbapi.Error, hide_parameters=True,
                                      dialect=dialect, connection_invalidated=lost) from err


@functools.lru_cache(maxsize=128)  # keyed by the statement object: hot statements are module constants
def _prepare(statement: Executable, dialect: Dialect, names: tuple[str, ...]) -> _Prepared:
    # An INSERT takes its columns from the parameters; any other statement names its own (and its
    # WHERE may then reuse a column's name for a parameter).
    compiled = statement.compile(dialect=dialect, column_keys=list(names) if isinstance(statement, Insert) else None)
    defaulted = [column.key for column in (*compiled.insert_prefetch, *compiled.update_prefetch)]
    if defaulted:
        raise ValueError(f"give every value: {', '.join(defaulted)} would take a Python-side default")
    # Named styles: the names the SQL uses (`binds` also lists SQLAlchemy's internal anonymous ones).
    order = compiled.positiontup if compiled.positiontup is not None else list(dict.fromkeys(
        compiled.bind_names.values()))
    binds = []
    for name in order:
        bind = compiled.binds[name]
        if name in names:
            literal = _GIVEN
        elif bind.callable is None and not bind.required:
            literal = bind.value
        else:
            raise ValueError(f"no value given for {name!r}")
        binds.append((name, literal, bind.type.dialect_impl(dialect).bind_processor(dialect)))
    if isinstance(statement, Select):
        columns = list(statement.selected_columns)
    elif isinstance(statement, UpdateBase):
        columns = list(statement.exported_columns)
    else:
        columns = []
    results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
    return _Prepared(compiled.string, compiled.positiontup is not None, tuple(binds),
                     results if any(results) else ())
