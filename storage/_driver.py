"""Prebuilt statements run on the driver's cursor, in the caller's transaction (private to ``storage``).

The paper desk's hot statements (an order's insert and compare-and-sets, a fill's rows, its audit
rows) are built once as SQLAlchemy Core statements; :func:`run` and :func:`run_many` compile each
once per dialect and set of parameter keys (the SQL SQLAlchemy itself would send, bind casts
included) and execute it on the transaction's own DBAPI connection, without SQLAlchemy's
per-execution machinery, which cost more than the statements themselves on SQLite. Parameters
pass through the bind processors of the statement's columns (e.g. JSON serialisation), as
SQLAlchemy would apply them. Driver errors come back as SQLAlchemy's (``IntegrityError`` for a
unique key). On a dialect other than SQLite and PostgreSQL the functions return None, for the
caller to use ``conn.execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

DIALECTS = frozenset({"sqlite", "postgresql"})

Processor = Callable[[Any], Any]


_MISSING = object()


@dataclass(frozen=True)
class _Compiled:
    stmt: Any
    """The statement compiled, kept alive by the cache so that its ``id`` (the cache's key)
    names no other statement."""
    sql: str
    plan: tuple[tuple[str, Processor | None, Any], ...]
    """Per parameter of the SQL: its name, its bind processor (None: none) and the value bound in
    the statement itself (``_MISSING``: the caller passes it), e.g. the 0 of ``quantity != 0``."""
    positional: bool
    """A positional paramstyle (a tuple in ``plan``'s order), else by name (a dict)."""
    args: Callable[[Mapping[str, Any]], Any]
    """The driver's arguments from the caller's parameters, as ``plan`` says (a function made
    for the plan once: the per-row work is then one tuple or dict display)."""


_COMPILED: dict[tuple[int, str, tuple[str, ...]], _Compiled] = {}


def _compiled(conn: Connection, stmt: Any, keys: tuple[str, ...]) -> _Compiled:
    dialect = conn.dialect
    key = (id(stmt), dialect.name, keys)
    found = _COMPILED.get(key)
    if found is None:
        built = stmt.compile(dialect=dialect, column_keys=list(keys))
        processors = built._bind_processors
        bound = built.construct_params(_check=False)
        names = built.positiontup if built.positiontup is not None else list(bound)
        plan = []
        for name in names:
            processor = processors.get(name)
            if name in keys:
                plan.append((name, processor, _MISSING))
            else:
                value = bound[name]
                plan.append((name, None, value if processor is None else processor(value)))
        positional = built.positiontup is not None
        found = _COMPILED[key] = _Compiled(stmt, str(built), tuple(plan), positional,
                                           _arguments(tuple(plan), positional))  # fmt: skip
    return found


def _arguments(plan: tuple[tuple[str, Processor | None, Any], ...], positional: bool) -> Callable[..., Any]:
    """A function of the caller's parameters (a mapping) to the driver's arguments: per
    parameter of ``plan`` its value, through its bind processor if it has one, or the literal
    bound in the statement. Made once per compiled statement (the names are data, passed as
    constants, never code)."""
    if positional and len(plan) > 1 and all(p is None and v is _MISSING for _, p, v in plan):
        return itemgetter(*(name for name, _, _ in plan))  # the values as they are, in C
    names: dict[str, Any] = {}
    items = []
    for i, (name, processor, literal) in enumerate(plan):
        names[f"k{i}"] = name
        if literal is not _MISSING:
            names[f"v{i}"] = literal
            item = f"v{i}"
        elif processor is None:
            item = f"p[k{i}]"
        else:
            names[f"f{i}"] = processor
            item = f"f{i}(p[k{i}])"
        items.append(f"k{i}: {item}" if not positional else item)
    body = f"({', '.join(items)},)" if positional else f"{{{', '.join(items)}}}"
    if not items:
        body = "()" if positional else "{}"
    return cast(Callable[..., Any], eval(f"lambda p: {body}", names))


def _raise(conn: Connection, sql: str, args: Any, exc: Exception, cursor: Any) -> None:
    cursor.close()
    dialect = conn.dialect
    raise DBAPIError.instance(sql, args, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc


def run(conn: Connection, stmt: Any, params: Mapping[str, Any]) -> Any:
    """Execute ``stmt`` (built once, e.g. at import) with ``params`` on ``conn``'s transaction;
    the driver's cursor (the caller closes it), or None on another dialect."""
    if conn.dialect.name not in DIALECTS:
        return None
    compiled = _compiled(conn, stmt, tuple(params))
    sql, args = compiled.sql, compiled.args(params)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, args)
    except conn.dialect.loaded_dbapi.Error as exc:
        _raise(conn, sql, args, exc, cursor)
    return cursor


def run_many(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> bool:
    """Execute ``stmt`` once per row of ``rows`` (all with the same keys) in one ``executemany``
    on ``conn``'s transaction; False (nothing done) on another dialect."""
    if conn.dialect.name not in DIALECTS:
        return False
    write_many(conn, stmt, rows)
    return True


def copy_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> bool:
    """Insert ``rows`` (each with every one of ``columns``, values as the driver adapts them) into
    ``table`` with one ``COPY .. FROM STDIN`` on PostgreSQL: one round trip instead of one
    pipelined execution per row (psycopg's ``executemany`` costs tens of microseconds of this
    process's time per row). False (nothing done) on another dialect. ``table`` and ``columns``
    are the caller's constant names, never data."""
    if conn.dialect.name != "postgresql":
        return False
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    try:
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    except conn.dialect.loaded_dbapi.Error as exc:
        _raise(conn, sql, None, exc, cursor)
    cursor.close()
    return True


class Savepoint:
    """A savepoint of ``conn``'s transaction, on the driver's cursor, as a context manager: the
    writes inside it are undone by :meth:`undo` (the block goes on, nothing of it written so far)
    or by an exception (which goes on); it is released when the block ends. On SQLite a
    transaction is begun first if none is open (the driver begins one only before a write; a
    savepoint outside a transaction would be committed by its release). Only on the dialects of
    :data:`DIALECTS`."""

    __slots__ = ("_cursor",)

    _NAME = "fks_all"

    def __init__(self, conn: Connection) -> None:
        dbapi = conn.connection.dbapi_connection
        self._cursor = cursor = dbapi.cursor()  # type: ignore[union-attr]
        if conn.dialect.name == "sqlite" and not dbapi.in_transaction:  # type: ignore[union-attr]
            cursor.execute("BEGIN")

    def __enter__(self) -> Savepoint:
        self._cursor.execute(f"SAVEPOINT {self._NAME}")
        return self

    def undo(self) -> None:
        """Roll back what was written since the savepoint."""
        self._cursor.execute(f"ROLLBACK TO SAVEPOINT {self._NAME}")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        cursor = self._cursor
        try:
            if exc is not None:
                self.undo()
            cursor.execute(f"RELEASE SAVEPOINT {self._NAME}")
        finally:
            cursor.close()


def write_many(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> int:
    """Execute the write ``stmt`` once per row of ``rows`` (all with the same keys) in one
    ``executemany`` on ``conn``'s transaction (the driver's path only: see :data:`DIALECTS`);
    the number of table rows changed, all rows together."""
    if not rows:
        return 0
    compiled = _compiled(conn, stmt, tuple(rows[0]))
    make = compiled.args
    sql, args = compiled.sql, [make(row) for row in rows]
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, args)
    except conn.dialect.loaded_dbapi.Error as exc:
        _raise(conn, sql, args, exc, cursor)
    changed = int(cursor.rowcount)
    cursor.close()
    return changed


def write_all(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> bool:
    """:func:`write_many` of ``rows``, each of which changes at most one table row (e.g. a
    compare-and-set by primary key or an insert if absent), in a :class:`Savepoint`: True when
    every row changed one table row; else the savepoint is rolled back (nothing of ``rows``
    written) and False, for the caller to write them one by one. False without writing on a
    dialect outside :data:`DIALECTS`."""
    if conn.dialect.name not in DIALECTS:
        return False
    with Savepoint(conn) as savepoint:
        done = write_many(conn, stmt, rows) == len(rows)
        if not done:
            savepoint.undo()
    return done


class Row(dict[str, Any]):
    """A result row read by column name as an attribute (as SQLAlchemy's rows are)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def one(conn: Connection, stmt: Any, params: Mapping[str, Any]) -> Any:
    """The one row (or None) that ``stmt`` returns, by the driver where it can."""
    cursor = run(conn, stmt, params)
    if cursor is None:
        return conn.execute(stmt, params).one_or_none()
    try:
        rows = cursor.fetchall()
        if not rows:
            return None
        return Row(zip([d[0] for d in cursor.description], rows[0], strict=True))
    finally:
        cursor.close()


def first_value(conn: Connection, stmt: Any, params: Mapping[str, Any]) -> Any:
    """The first column of the first row that ``stmt`` returns (e.g. ``RETURNING id``), or None
    when it returns no row; by the driver where it can."""
    cursor = run(conn, stmt, params)
    if cursor is None:
        row = conn.execute(stmt, params).first()
        return None if row is None else row[0]
    try:
        rows = cursor.fetchall()
        return rows[0][0] if rows else None
    finally:
        cursor.close()


def all_rows(conn: Connection, stmt: Any, params: Mapping[str, Any]) -> list[Any]:
    """Every row that ``stmt`` returns, by the driver where it can."""
    cursor = run(conn, stmt, params)
    if cursor is None:
        return list(conn.execute(stmt, params).all())
    try:
        names = [d[0] for d in cursor.description]
        return [Row(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        cursor.close()


def rows(conn: Connection, stmt: Any, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Every row that ``stmt`` returns as a tuple, by the driver where it can."""
    cursor = run(conn, stmt, params)
    if cursor is None:
        return [tuple(row) for row in conn.execute(stmt, params).all()]
    try:
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def write(conn: Connection, stmt: Any, params: Mapping[str, Any]) -> int:
    """Execute the write ``stmt``; the number of rows it changed."""
    cursor = run(conn, stmt, params)
    if cursor is None:
        return int(conn.execute(stmt, params).rowcount)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()
