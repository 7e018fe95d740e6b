"""Helpers the tests share, in one place: run `katapult-etl sync` against the fake API, read a database with
plain SQL (every row of every table, to compare before and after), empty one for the next test, assert what
a landed or a failed run leaves, and drive other processes (a lock holder, a fresh Python, a killed upgrade).

(Not in conftest.py: conftest holds fixtures, which pytest finds by itself; a test imports helpers.)
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from etl.database import alembic_config, open_engine
from etl.records import package_row

CATALOGUE_TABLES = ("package_groups", "packages", "package_listings", "package_snapshots")


def sync(cli, database_url: str, api, *extra: str, per_page: int | None = None, env=None):
    """`katapult-etl sync` against the fake API, `per_page` packages a page (None: the command's default)."""
    paging = () if per_page is None else ("--per-page", str(per_page))
    return cli("sync", "--database-url", database_url, "--api-url", api.url, *paging, *extra, env=env)


# Five a page: the fault tests' catalogue of 12 packages is three pages, so a fault can strike mid-walk.
sync_in_fives = partial(sync, per_page=5)


def sync_ok(cli, database_url: str, api, *extra: str, **options: Any):
    """`sync` that must succeed: for tests whose subject is what the runs leave, not the run."""
    result = sync(cli, database_url, api, *extra, **options)
    assert result.exit_code == 0, result.err
    return result


def sqlite_url(folder: Path) -> str:
    """A SQLite database in `folder`: for what does not depend on the database."""
    return f"sqlite:///{folder / 'katapult.db'}"


def empty_database(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        backend = make_url(url).get_backend_name()
        if backend == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        elif backend in ("mysql", "mariadb"):
            _drop_everything_in_mysql(connection)
    engine.dispose()


def _drop_everything_in_mysql(connection: Any) -> None:
    """MySQL has no schema to drop and recreate: drop each view and table of the database instead, and
    give it back the server's default collation (the migrations change it)."""
    charset, collation = connection.execute(text("SELECT @@character_set_server, @@collation_server")).one()
    connection.execute(text(f"ALTER DATABASE CHARACTER SET {charset} COLLATE {collation}"))
    objects = connection.execute(
        text(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = DATABASE() ORDER BY table_type = 'VIEW' DESC"
        )
    ).all()
    connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
    for name, kind in objects:
        connection.execute(text(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS `{name}`"))
    connection.execute(text("SET FOREIGN_KEY_CHECKS = 1"))


def with_short_lock_wait(database_url: str) -> str:
    """The URL with a lock wait of a fraction of a second, so a locked database fails fast."""
    url = make_url(database_url)
    wait = {
        "sqlite": {"timeout": "0.2"},
        "postgresql": {"options": "-c lock_timeout=200"},
        "mysql": {"init_command": "SET SESSION lock_wait_timeout = 1"},  # whole seconds only
    }[url.get_backend_name()]
    return url.update_query_dict(wait).render_as_string(hide_password=False)


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of one SQL query, as plain tuples."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


def execute(url: str, sql: str, **params: Any) -> None:
    """One SQL statement that writes, committed: for a test that changes a database by hand."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(sql), params)
    finally:
        engine.dispose()


def scalar(url: str, sql: str, **params: Any) -> Any:
    rows = query(url, sql, **params)
    return rows[0][0]


def catalogue_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every catalogue table: what a failed run must leave exactly as it was."""
    return {table: sorted(query(url, f"SELECT * FROM {table}"), key=repr) for table in CATALOGUE_TABLES}


def runs(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT status, error FROM sync_runs ORDER BY id")


def every_table(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database, whoever made it (None: the database is empty)."""
    engine = create_engine(url)
    try:
        names = sorted(inspect(engine).get_table_names())
        with engine.connect() as connection:
            return {
                name: sorted((tuple(row) for row in connection.execute(text(f"SELECT * FROM {name}"))), key=repr)
                for name in names
            }
    finally:
        engine.dispose()


def listed_catalogue(url: str) -> list[tuple[str, str]]:
    """(id, content_hash) of every package not removed, in id order."""
    return query(url, "SELECT id, content_hash FROM packages WHERE removed_at IS NULL ORDER BY id")


def expected_catalogue(packages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((package["id"], package_row(package)["content_hash"]) for package in packages)


def current_versions(url: str) -> list[tuple[str, str]]:
    """(package id, content_hash) of every open version: one per listed package, never two."""
    return query(
        url, "SELECT package_id, content_hash FROM package_snapshots WHERE valid_to IS NULL ORDER BY package_id"
    )


# The seeded catalogue has a package gone: a walk that misses it is confirmed by a second walk, of
# three pages, before the package is removed.
CONFIRMING = 3


def warning_metrics(added: int = 0, removed: int = 0, mass_update: int = 0, scope: str = "public") -> list[str]:
    """The last lines of a metrics file of a run that landed: its schema changes and mass-update gauges."""
    return [
        "# HELP katapult_etl_schema_changes Keys the last run found new in the packages, or gone from them "
        "(sync_runs.schema_changes).",
        "# TYPE katapult_etl_schema_changes gauge",
        f'katapult_etl_schema_changes{{scope="{scope}",change="added"}} {added}',
        f'katapult_etl_schema_changes{{scope="{scope}",change="removed"}} {removed}',
        "# HELP katapult_etl_mass_update 1 when the last run updated more than half of the scope's listed packages, "
        "else 0.",
        "# TYPE katapult_etl_mass_update gauge",
        f'katapult_etl_mass_update{{scope="{scope}"}} {mass_update}',
    ]


def error_line(message: str) -> str:
    return f"katapult-etl: {message}\n"


def last_line(err: str) -> str:
    """stderr's last line, the failure's one-line message; only log records may come before it."""
    *logged, last = err.splitlines(keepends=True)
    assert all(line.startswith(("katapult-etl: WARNING ", "katapult-etl: ERROR ")) for line in logged), err
    return last


def assert_landed(database_url, api, seeded, result, **counts: int) -> None:
    """The run succeeded and the tables hold exactly the API's catalogue: nothing lost, changed or doubled."""
    assert result.exit_code == 0, result.err
    assert listed_catalogue(database_url) == expected_catalogue(api.packages)
    assert current_versions(database_url) == expected_catalogue(api.packages)
    assert query(database_url, "SELECT removed_at IS NOT NULL FROM packages WHERE id = :id", id=seeded["gone"]) == [
        (True,)
    ]
    wanted = {"created": 1, "updated": 1, "removed": 1, "unchanged": 10, **counts}
    columns = ", ".join(wanted)
    assert query(database_url, f"SELECT status, error, {columns} FROM sync_runs ORDER BY id DESC LIMIT 1") == [
        ("succeeded", None, *wanted.values())
    ]


def assert_changed_nothing(database_url, seeded, result, message: str) -> None:
    """The run failed with `message`, and changed nothing but its own sync_runs row."""
    assert (result.exit_code, result.out, last_line(result.err)) == (1, "", error_line(message))
    assert catalogue_tables(database_url) == seeded["before"]
    assert runs(database_url) == [*seeded["runs"], ("failed", message)]


def removed_ids(url: str) -> list[str]:
    return [row[0] for row in query(url, "SELECT id FROM packages WHERE removed_at IS NOT NULL ORDER BY id")]


def second(instant) -> str:
    """An instant as the commands print it to the second: 2026-03-01T12:00:00Z."""
    return f"{instant:%Y-%m-%dT%H:%M:%SZ}"


def iso(instant) -> str:
    """An instant as the commands print it in full: 2026-03-01T12:00:00.000000Z."""
    return f"{instant:%Y-%m-%dT%H:%M:%S.%fZ}"


# -- subprocesses -----------------------------------------------------------------------------------

WAIT_SECONDS = 60  # the most any wait on another process may take; normally a fraction of a second

# A Python process that takes the run lock of the database named in argv[1], for the scope in argv[2], says
# "locked", and keeps it until its stdin closes.
HOLD_LOCK = """
import sys
import threading
from etl.database import open_engine
from etl.dialects import run_lock
engine = open_engine(sys.argv[1])
with run_lock(engine, sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()
"""

# Runs the CLI with argv[1:] and prints on stderr which of SQLAlchemy and Alembic it imported.
IMPORTED = """
import sys
import threading
from etl.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted({name.split(".")[0] for name in sys.modules} & {"sqlalchemy", "alembic"})), file=sys.stderr)
"""


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail, naming `what`, if it does not within WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


@contextmanager
def recording_server(answer: Callable[[socket.socket], bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """A real TCP server on 127.0.0.1: yields its port and the list of what reached it. `answer` serves one
    connection and returns what it read; a connection that fails (OSError) is dropped and not recorded."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:  # the accept timed out: look at `stop` again
                continue
            with connection:
                connection.settimeout(5)
                with suppress(OSError):
                    received.append(answer(connection))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@dataclass(frozen=True)
class Delivery:
    """One POST a webhook receiver got: its path, its headers (names in lower case) and its body."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records every POST. `answers` are the statuses it answers
    with, one per POST, then 200; `stop()` closes it (connections are refused) and `start()` opens it
    again on the same port."""

    def __init__(self) -> None:
        self.received: list[Delivery] = []
        self.answers: list[int | tuple[int, dict[str, str]]] = []
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.received.append(Delivery(self.path, headers, body))
                answer = receiver.answers.pop(0) if receiver.answers else 200
                status, extra = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows stderr
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def idempotency_keys(self) -> list[str]:
        return [delivery.headers["idempotency-key"] for delivery in self.received]


def run_lock_released(database_url: str) -> bool:
    """Whether no process holds a run lock: the OS drops file locks at once; PostgreSQL ends the dead
    client's session a moment after the kernel closes its socket."""
    if make_url(database_url).get_backend_name() != "postgresql":
        return True
    held = query(
        database_url,
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return held == [(0,)]


def other_sessions_waiting_on_a_lock(database_url: str) -> int:
    [(waiting,)] = query(
        database_url,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database() AND pid <> pg_backend_pid()",
    )
    return waiting


def hold_run_lock(database_url: str, scope: str = "public") -> subprocess.Popen[str]:
    """Another process holding the run lock of `scope`, as a sync of it does; it prints "locked" once it has
    it, and lets go when its stdin closes."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, database_url, scope],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def python_importing(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`katapult-etl *args` in a fresh Python; its stderr's last line names what it imported of SQLAlchemy
    and Alembic."""
    return subprocess.run(
        [sys.executable, "-c", IMPORTED, *args], capture_output=True, text=True, timeout=WAIT_SECONDS, cwd=folder
    )


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command, by its full name ("sync", "db upgrade", "scopes", "scopes retire", ...): the leaves, and
    a command whose actions are optional ("scopes" lists, "scopes retire" retires)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                below = subcommands(child, f"{prefix}{name} ")
                if not below or not _actions_required(child):
                    found[f"{prefix}{name}"] = child
                found.update(below)
    return found


def _actions_required(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(action, argparse._SubParsersAction) and action.required for action in parser._actions)


# -- a migration killed half-way (MariaDB) ---------------------------------------------------------------


def migrate_to(url: str, revision: str) -> None:
    engine = open_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)
    engine.dispose()


def kill_upgrade_waiting_on_lock(url: str, table: str, statement: str) -> None:
    """kill -9 a `katapult-etl db upgrade` once its `statement` waits for `table`'s metadata lock.

    An open transaction that read `table` holds that lock, so the upgrade stops at its first ALTER of it,
    after the steps before it have been committed (MariaDB commits each DDL statement)."""
    engine = create_engine(url)
    holder = engine.connect()
    holder.execute(text(f"SELECT * FROM {table} LIMIT 1"))
    process = subprocess.Popen(
        [sys.executable, "-m", "etl", "db", "upgrade", "--database-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        thread = _wait_for_statement(holder, statement)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=WAIT_SECONDS)
        # The server would notice the dead client on its next read; end its session now, as it would.
        holder.execute(text(f"KILL {thread}"))
        _wait_until_gone(holder, thread)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT_SECONDS)
        holder.rollback()
        holder.close()
        engine.dispose()


def _wait_for_statement(holder, prefix: str) -> int:
    """The server thread of the statement starting with `prefix` once it waits for a metadata lock."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        row = holder.execute(
            text(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                "AND state = 'Waiting for table metadata lock' AND info LIKE :prefix"
            ),
            {"prefix": prefix + "%"},
        ).first()
        if row is not None:
            return row[0]
        time.sleep(0.05)
    raise AssertionError(f"no {prefix!r} waited for the lock within {WAIT_SECONDS} s")


def _wait_until_gone(holder, thread: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if (
            holder.execute(
                text("SELECT COUNT(*) FROM information_schema.processlist WHERE id = :id"), {"id": thread}
            ).scalar()
            == 0
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"server thread {thread} still there after {WAIT_SECONDS} s")


# -- the configuration file ----------------------------------------------------------------------------


def write_config(folder: Path, text: str, name: str = "katapult-etl.toml") -> Path:
    """A configuration file in `folder`, its TOML written as the test gives it."""
    path = folder / name
    path.write_text(text)
    return path
