"""Engines and migrations: how katapult-etl connects to each supported database and brings it to head.

Alembic is imported only to migrate: the revision a database is at is read with one query, and the
revisions this release knows are the names of its migration files, so that the commands that only read
(and a sync of a database already at head) never load Alembic nor log its lines.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from .errors import DatabaseError, describe
from .urls import sqlite_path

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry
log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_SECONDS = 30


def open_engine(url: str) -> Engine:
    """An engine for a database URL; a new SQLite file is created readable by its owner only."""
    try:
        parsed = make_url(url)
    except Exception as error:
        raise DatabaseError(f"not a database URL: {error}") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, "timeout" in parsed.query)
    options: dict[str, str] = {}
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        # PostgreSQL's default, which the merge is written for. MySQL's REPEATABLE READ also locks the
        # gaps between index entries, so two runs recording their start at once would deadlock.
        options["isolation_level"] = "READ COMMITTED"
    try:
        engine = create_engine(url, pool_pre_ping=True, **options)
    except (ImportError, SQLAlchemyError) as error:
        raise DatabaseError(f"cannot use {parsed.render_as_string(hide_password=True)}: {error}") from None
    if parsed.get_backend_name() == "postgresql":
        event.listen(engine, "connect", _without_jit)
    return engine


def _without_jit(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # The merge's statements look expensive to PostgreSQL's planner (a correlated subquery per staged
    # package), so it compiled them with JIT: ~2 s of compiling for a statement that runs in less.
    # Only this job's own sessions are affected.
    with contextlib.closing(dbapi_connection.cursor()) as cursor:
        cursor.execute("SET jit = off")
    dbapi_connection.commit()


def _sqlite_engine(url: str, database: str | None, timeout_in_url: bool) -> Engine:
    if database and database != ":memory:":
        _create_private_file(Path(database))
    # A `?timeout=SECONDS` in the URL wins over our default busy timeout.
    connect_args = {} if timeout_in_url else {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that DDL and
        # the merge are transactional too.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock at once, so that two writers queue on the busy timeout
        # instead of one failing when it upgrades a read lock.
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _create_private_file(path: Path) -> None:
    if path.exists():
        return
    if path.parent and not path.parent.exists():
        raise DatabaseError(f"cannot create the SQLite database {path}: folder {path.parent} does not exist")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as error:  # a read-only folder, or one the job's user may not write in
        raise DatabaseError(f"cannot create the SQLite database {path}: {error.strerror}") from None


def migrations_folder() -> Path:
    """Where the migrations are: beside the package when installed, migrations/ in a checkout."""
    # etl.migrations is the top-level migrations/ folder, put into the package by the install
    # (pyproject's package-dir): it is found at run time, not in etl/ where a type checker reads.
    return Path(str(importlib.resources.files("etl.migrations")))


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_folder()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def known_revisions() -> list[str]:
    """The revisions this release has migrations for, oldest first: each migration's file is named
    after its revision (0001_initial_schema.py is revision 0001), and each revises the one before."""
    names = (path.name for path in (migrations_folder() / "versions").glob("[0-9]*_*.py"))
    return sorted(name.split("_", 1)[0] for name in names)


def head_revision() -> str | None:
    return known_revisions()[-1]


def current_revision(connection: Connection) -> str | None:
    """The revision recorded in the database's alembic_version table; None before the first migration."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def known_revision(connection: Connection) -> str | None:
    """The database's revision; DatabaseError if this release has no migration of that name (a newer
    release made the database: migrating it "back" or reading it as ours would be guesses)."""
    revision = current_revision(connection)
    if revision is not None and revision not in known_revisions():
        raise DatabaseError(
            f"the database was made by a newer katapult-etl: revision {revision} is unknown to this "
            f"release (newest known: {head_revision()}); upgrade katapult-etl"
        )
    return revision


def upgrade(engine: Engine) -> str | None:
    """Bring the database to the newest schema (a no-op when it is there already); returns the
    revision it was at."""
    from .dialects import migration_lock

    try:
        with (
            engine.connect() as connection,
            _sqlite_foreign_keys_off(connection),
            connection.begin(),
            migration_lock(connection),
        ):
            before = known_revision(connection)
            if before != head_revision():
                from alembic import command

                command.upgrade(alembic_config(connection), "head")
                _check_foreign_keys(connection)
    except SQLAlchemyError as error:
        raise DatabaseError(f"could not migrate the database: {describe(error)}") from None
    _use_write_ahead_log(engine)
    return before


def _use_write_ahead_log(engine: Engine) -> None:
    """Put a SQLite file in WAL journal mode, which the file keeps: readers then read the state before a
    writer's transaction instead of blocking its commit (in the default rollback-journal mode, a
    dashboard holding a read transaction makes the sync wait, then fail). Asked on every run, changed
    once: a file from an older release or `db upgrade` gets it too."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return
    with engine.connect() as connection:
        # The driver's own connection: SQLAlchemy would first BEGIN, and SQLite changes the journal
        # mode only outside a transaction.
        driver = _sqlite_driver(connection)
        try:
            if driver.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                driver.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as error:  # e.g. a reader's lock: the next run tries again
            log.warning("could not switch %s to WAL journal mode: %s", engine.url.database, error)


def migrate(url: str) -> str | None:
    """`db upgrade`: the database at `url` brought to the newest schema; returns the revision it was at."""
    engine = open_engine(url)
    try:
        return upgrade(engine)
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    """The schema revision of the database at `url` (None: no schema yet); creates and changes nothing."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    with _read_only(url) as connection:
        return known_revision(connection)


@contextlib.contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite changes a column only by rebuilding its table, and cannot drop a table others refer to
    while foreign keys are on. The pragma works only outside a transaction: set on the driver's
    connection before SQLAlchemy begins one, and set back on after it ends."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = _sqlite_driver(connection)
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


def _sqlite_driver(connection: Connection) -> sqlite3.Connection:
    """The sqlite3 connection under SQLAlchemy's (sqlite3 is the one SQLite driver config accepts)."""
    driver = connection.connection.driver_connection
    # SQLAlchemy types it Optional: it is None only once the pool has invalidated it, never in use.
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _check_foreign_keys(connection: Connection) -> None:
    """With SQLite's foreign keys off, check them all once before the migration commits."""
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
        if broken is not None:
            raise DatabaseError(f"a migration broke a foreign key: {tuple(broken)}")


@contextlib.contextmanager
def reading(url: str) -> Iterator[Connection]:
    """A connection to an existing database at the newest schema, for commands that only read.

    Creates nothing and migrates nothing: a missing SQLite file or an old schema is a DatabaseError.
    """
    require_existing(url)
    with _read_only(url) as connection:
        require_head(connection)
        yield connection


def require_existing(url: str) -> None:
    """A command that works on a database it does not create: a missing SQLite file is a DatabaseError."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise DatabaseError(f"{path} does not exist: run `katapult-etl sync` first")


def require_head(connection: Connection) -> None:
    """The database must be at the newest schema: a command that does not migrate says how to get there."""
    revision = known_revision(connection)
    if revision != head_revision():
        raise DatabaseError(
            f"the database schema is at revision {revision or 'none'}, not {head_revision()}: "
            "run `katapult-etl db upgrade` (or a sync) first"
        )


@contextlib.contextmanager
def _read_only(url: str) -> Iterator[Connection]:
    """A connection that only reads, its database errors as one line; the engine goes with it."""
    # DEFERRED: a reader must not take SQLite's write lock, and so never waits for a running sync.
    engine = open_engine(url)
    try:
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:
            yield connection
    except SQLAlchemyError as error:
        raise DatabaseError(f"database error: {describe(error)}") from None
    finally:
        engine.dispose()
