"""Everything that differs between databases, in one place: upserts, locks and partial indexes.

SQLite and PostgreSQL upsert with INSERT ... ON CONFLICT DO UPDATE, MySQL and MariaDB with
INSERT ... ON DUPLICATE KEY UPDATE. The run lock keeps two syncs of one scope apart and dies with its
process: an OS file lock beside a SQLite file, a session advisory lock on PostgreSQL, GET_LOCK on MySQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import signal
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, Table, Text, bindparam, cast, text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from .errors import DatabaseError, RunLockedError, describe
from .urls import sqlite_path

ON_CONFLICT_INSERTS: dict[str, Callable[[Table], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}
# How long MySQL waits for another run's merge or migration: far longer than either takes.
MYSQL_LOCK_WAIT_SECONDS = 3600
# MySQL and MariaDB tables compare and sort text exactly, as SQLite and PostgreSQL do (migration 0004):
# binary, and NO PAD, so that 'vmpkg_A' and 'vmpkg_A ' are two ids (a PAD SPACE collation such as
# utf8mb4_bin compares them equal). A temporary table joined with them must have the same collation,
# or MySQL refuses to compare across the two.
MARIADB_EXACT_COLLATION = "utf8mb4_nopad_bin"
MYSQL_EXACT_COLLATION = "utf8mb4_0900_bin"
# Indexes with a WHERE clause; MySQL and MariaDB cannot build them (migration 0001 leaves them out there).
PARTIAL_INDEXES = ("uq_package_snapshots_current",)


def exact_text_collation(dialect: Dialect) -> str:
    """The NO PAD binary collation of a MySQL or MariaDB server."""
    return MARIADB_EXACT_COLLATION if getattr(dialect, "is_mariadb", False) else MYSQL_EXACT_COLLATION


def create_temporary_table(connection: Connection, table: Table, *, checkfirst: bool = False) -> None:
    """Create `table` (a TEMPORARY one); on MySQL and MariaDB with the server's exact collation."""
    name = connection.dialect.name
    if name in ("mysql", "mariadb"):
        # Set just before each CREATE (the collation depends on the server, MariaDB or MySQL); the
        # other databases ignore these options.
        table.dialect_kwargs[f"{name}_charset"] = "utf8mb4"
        table.dialect_kwargs[f"{name}_collate"] = exact_text_collation(connection.dialect)
    table.create(connection, checkfirst=checkfirst)


def upsert(
    dialect_name: str,
    table: Table,
    source: Select[Any] | None,
    *,
    columns: Sequence[str],
    key: Sequence[str],
    update_from_incoming: Sequence[str],
    update_fixed: Mapping[str, Any] | None = None,
) -> Insert:
    """INSERT (from `source`, or from executemany rows when it is None) that updates rows whose key exists.

    `update_from_incoming` columns take the incoming row's value; `update_fixed` ones a fixed value.
    """
    fixed = dict(update_fixed or {})
    if dialect_name in ON_CONFLICT_INSERTS:
        statement = ON_CONFLICT_INSERTS[dialect_name](table)
        if source is not None:
            statement = statement.from_select(columns, source)
        incoming = {name: statement.excluded[name] for name in update_from_incoming}
        return statement.on_conflict_do_update(index_elements=list(key), set_={**incoming, **fixed})
    if dialect_name in ("mysql", "mariadb"):
        mysql_statement = mysql.insert(table)
        if source is not None:
            mysql_statement = mysql_statement.from_select(columns, source)
        incoming = {name: mysql_statement.inserted[name] for name in update_from_incoming}
        return mysql_statement.on_duplicate_key_update({**incoming, **fixed})
    raise DatabaseError(f"katapult-etl does not support {dialect_name} databases")


class BulkInsert:
    """Appends rows of plain values (text, numbers, booleans, NULL) to a table, a page at a time.

    PostgreSQL takes them by COPY (four times faster than an INSERT per row, measured staging 100,000
    packages); SQLite by INSERTs of many rows each; MySQL and MariaDB by one INSERT sent through the
    driver's executemany (which PyMySQL sends as INSERTs of many rows). Either way no row goes through
    SQLAlchemy's type processing, which would be most of the cost of staging.

    Why many rows per INSERT on SQLite: sqlite3 lets go of the interpreter lock for every statement it
    steps, and executemany steps once per row. While the fetchers decode pages, each step then waits
    for the lock to come back (up to the 5 ms switch interval): staging 100,000 narrow rows took 1.6 s
    of the walk's thread in the profile of an unchanged re-sync, against 0.36 s alone.
    """

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect) -> None:
        self._columns = tuple(columns)
        self._copy: str | None = None
        if dialect.name == "postgresql":
            quote = dialect.identifier_preparer
            names = ", ".join(quote.quote(name) for name in self._columns)
            self._copy = f"COPY {quote.format_table(table)} ({names}) FROM STDIN"
            return
        compiled = table.insert().values({name: bindparam(name) for name in columns}).compile(dialect=dialect)
        self._sql = compiled.string
        # Positional drivers (sqlite3, PyMySQL) take the tuples as they are: the INSERT names the
        # columns in the table's order, which `columns` must follow. A driver that takes named
        # parameters gets a dict per row.
        self._named = compiled.positiontup is None
        if not self._named and tuple(compiled.positiontup or ()) != self._columns:
            raise ValueError(f"columns {self._columns} are not in the order of table {table.name}")
        # SQLite: the INSERT up to VALUES, and one row's placeholders.
        self._values: tuple[str, str] | None = None
        if dialect.name == "sqlite":
            head, placeholders = self._sql.split(" VALUES ")
            self._values = (f"{head} VALUES ", placeholders)

    def _sqlite_statements(self, connection: Connection, rows: list[tuple[Any, ...]]) -> None:
        """The rows in INSERTs of as many rows as SQLite takes parameters."""
        assert self._values is not None
        head, placeholders = self._values
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        per_statement = max(1, driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(self._columns))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            statement = head + ",".join(itertools.repeat(placeholders, len(chunk)))
            connection.exec_driver_sql(statement, tuple(itertools.chain.from_iterable(chunk)))

    def execute(self, connection: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Rows as tuples of values in the order of `columns`."""
        if self._copy is not None:
            self._copy_rows(connection, rows)
            return
        parameters: list[Any] = [dict(zip(self._columns, row, strict=True)) for row in rows] if self._named else rows
        try:
            if self._values is not None:
                self._sqlite_statements(connection, rows)
            else:
                connection.exec_driver_sql(self._sql, parameters)
        except SQLAlchemyError as error:
            raise DatabaseError(f"database error while staging a page: {describe(error)}") from None

    def _copy_rows(self, connection: Connection, rows: list[tuple[Any, ...]]) -> None:
        # The driver's own connection, inside the transaction SQLAlchemy has begun on it. A COPY that a
        # signal stops half-way leaves the connection mid-protocol, so SIGINT and SIGTERM wait the
        # millisecond until this page's COPY has ended, and then stop the run as usual.
        # The COPY goes around SQLAlchemy, so its errors come as the driver's own: made one line here.
        driver_error = connection.dialect.loaded_dbapi.Error
        driver = connection.connection.driver_connection
        # SQLAlchemy types it Optional: it is None only once the pool has invalidated it, never in use.
        assert driver is not None
        try:
            with _stop_signals_held(), driver.cursor() as cursor, cursor.copy(self._copy) as copy:
                for row in rows:
                    copy.write_row(row)
        except driver_error as error:
            raise DatabaseError(f"database error while staging a page: {describe(error)}") from None


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM stay pending in the kernel until the block ends, then arrive as usual."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def json_from_text(dialect_name: str, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """JSON text as a value for a JSON column: PostgreSQL's jsonb wants a cast; the others take text."""
    if dialect_name == "postgresql":
        return cast(column, postgresql.JSONB)
    return column


def text_from_json(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A JSON column's value as text (CAST ... AS TEXT; AS CHAR on MySQL and MariaDB, which SQLAlchemy
    spells for Text). PostgreSQL's jsonb writes it with spaces: text meant for json_from_text again,
    not for hashing."""
    return cast(column, Text())


@contextlib.contextmanager
def run_lock(engine: Engine, database_url: str, scope: str) -> Iterator[None]:
    """Hold the lock of one scope for the whole run; RunLockedError at once if another run has it."""
    name = engine.dialect.name
    if name == "sqlite":
        with _file_lock(database_url, scope):
            yield
    elif name == "postgresql":
        with _postgresql_lock(engine, scope):
            yield
    elif name in ("mysql", "mariadb"):
        with _mysql_lock(engine, scope):
            yield
    else:
        raise DatabaseError(f"katapult-etl does not support {name} databases")


def include_in_schema(dialect_name: str) -> Callable[..., bool]:
    """Alembic's include_object filter for one database: MySQL has no partial indexes, so it has none of ours."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return type_ != "index" or name not in PARTIAL_INDEXES or dialect_name in ("postgresql", "sqlite")

    return include


def merge_lock(connection: Connection) -> None:
    """Serialise the merges of runs of different scopes, which may touch the same packages.

    Taken inside the merge transaction; released by its commit or rollback (SQLite's BEGIN IMMEDIATE
    already serialises writers).
    """
    name = connection.dialect.name
    if name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("merge")})
    elif name in ("mysql", "mariadb"):
        _mysql_wait_for_lock(connection, "merge")


def release_merge_lock(connection: Connection) -> None:
    """MySQL's named locks outlive transactions: let go of the merge lock once the merge is over."""
    if connection.dialect.name in ("mysql", "mariadb"):
        connection.execute(text("DO RELEASE_LOCK(:name)"), {"name": _mysql_lock_name(connection, "merge")})


@contextlib.contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """One migration at a time: two first runs (of different scopes) must not both build the schema.

    Taken inside the migration's transaction; the second run waits, then finds the schema at head.
    SQLite's BEGIN IMMEDIATE already serialises migrations. MySQL commits each DDL statement at once,
    so there the lock is a named one, held until the migration is over.
    """
    name = connection.dialect.name
    if name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("migrate")})
    if name not in ("mysql", "mariadb"):
        yield
        return
    _mysql_wait_for_lock(connection, "migrate")
    try:
        yield
    finally:
        connection.execute(text("DO RELEASE_LOCK(:name)"), {"name": _mysql_lock_name(connection, "migrate")})


def _lock_key(scope: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, stable across processes."""
    digest = hashlib.sha256(f"katapult-etl:{scope}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _file_lock(database_url: str, scope: str) -> Iterator[None]:
    path = sqlite_path(database_url)
    if path is None:  # an in-memory database belongs to one process: nothing to keep apart
        yield
        return
    # One lock file beside the database; each scope locks its own byte of it.
    try:
        descriptor = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:  # a read-only folder, or one the job's user may not write in
        raise DatabaseError(f"cannot create the run lock file {path}.lock: {error.strerror}") from None
    offset = _lock_key(scope) & 0x7FFFFFFF
    try:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            raise RunLockedError(f"another sync of {scope} is running on {path}") from None
        try:
            yield
        finally:
            fcntl.lockf(descriptor, fcntl.LOCK_UN, 1, offset)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _postgresql_lock(engine: Engine, scope: str) -> Iterator[None]:
    key = _lock_key(scope)
    with engine.connect() as connection:
        got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        connection.commit()
        if not got:
            raise RunLockedError(f"another sync of {scope} is running on this database")
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()


def _mysql_lock_name(connection: Connection, scope: str) -> str:
    # GET_LOCK names are server-wide and at most 64 characters: name the database, hash the scope.
    database = connection.execute(text("SELECT DATABASE()")).scalar() or ""
    digest = hashlib.sha256(f"{database}\0{scope}".encode()).hexdigest()[:40]
    return f"katapult-etl:{digest}"


def _mysql_wait_for_lock(connection: Connection, purpose: str) -> None:
    # MariaDB refuses GET_LOCK's "-1 = wait forever" (NULL, no lock): wait a bounded while instead.
    got = connection.execute(
        text("SELECT GET_LOCK(:name, :seconds)"),
        {"name": _mysql_lock_name(connection, purpose), "seconds": MYSQL_LOCK_WAIT_SECONDS},
    ).scalar()
    if got != 1:
        raise DatabaseError(f"another run held the {purpose} lock for over {MYSQL_LOCK_WAIT_SECONDS} s")


@contextlib.contextmanager
def _mysql_lock(engine: Engine, scope: str) -> Iterator[None]:
    with engine.connect() as connection:
        name = _mysql_lock_name(connection, scope)
        got = connection.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": name}).scalar()
        connection.commit()  # the lock belongs to the session: no transaction stays open for the run
        if got != 1:
            raise RunLockedError(f"another sync of {scope} is running on this database")
        try:
            yield
        finally:
            connection.execute(text("DO RELEASE_LOCK(:name)"), {"name": name})
            connection.commit()
