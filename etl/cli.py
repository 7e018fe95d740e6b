"""The katapult-etl command: parses arguments, builds Settings, calls one library function, reports.

Every EtlError becomes one line on stderr and the exit code the error carries; nothing else is caught.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType

from . import __version__, demo, reports, tables
from .config import DEFAULT_API_URL, DEFAULT_DATABASE_URL, MAX_PER_PAGE, RetryPolicy, Scope, Settings
from .database import open_engine, reading, upgrade
from .errors import ConfigError, EtlError, MetricsError, RunLockedError
from .logs import FORMATS, configure_logging, is_terminal
from .metrics import RunReport, check_writable, report_of, write_metrics
from .pipeline import Hooks, RunResult, run_sync
from .progress import PageProgress
from .types import utc_now

PROG = "katapult-etl"
log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None, hooks: Hooks | None = None) -> int:
    """Run one command; `hooks` lets tests inject the HTTP session and the retry sleep."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(PROG, args.verbose - args.quiet, args.log_format)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.command(args, hooks or Hooks())
    except EtlError as error:
        complain(args, str(error), error.exit_code)
        return error.exit_code
    except KeyboardInterrupt:
        complain(args, "interrupted", 130)
        return 130


def complain(args: argparse.Namespace, message: str, exit_code: int) -> None:
    """One line on stderr: `katapult-etl: message`, or with --log-format json an error record."""
    if args.log_format == "json":
        log.error(message, extra={"exit_code": exit_code})
    else:
        print(f"{PROG}: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="SQLAlchemy URL of the database (env DATABASE_URL; default %(default)s)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="say more (-vv: debug)")
    common.add_argument("-q", "--quiet", action="count", default=0, help="say only errors")
    common.add_argument(
        "--log-format", choices=FORMATS, default="text", help="text lines, or one JSON object per line (default text)"
    )

    parser = argparse.ArgumentParser(prog=PROG, description="Sync Katapult's VM package catalogue into SQL.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    add_sync_command(commands, common)
    add_db_command(commands, common)
    add_query_commands(commands, common)
    add_demo_command(commands, common)
    return parser


def add_sync_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sync = commands.add_parser(
        "sync", parents=[common], help="walk the whole catalogue once and record what changed"
    )
    sync.set_defaults(command=cmd_sync)
    sync.add_argument(
        "--api-url",
        default=os.environ.get("KATAPULT_API_URL", DEFAULT_API_URL),
        help="Katapult API root (env KATAPULT_API_URL; default %(default)s)",
    )
    sync.add_argument(
        "--token-file",
        type=Path,
        help="read the API token from this file (else env KATAPULT_API_TOKEN; none: the public API)",
    )
    scope = sync.add_mutually_exclusive_group()
    scope.add_argument("--organization-id", metavar="ID", help="an organization's packages, by id")
    scope.add_argument("--organization-sub-domain", metavar="SUB", help="an organization's packages, by sub-domain")
    sync.add_argument("--per-page", type=int, default=MAX_PER_PAGE, help="page size to ask for (default %(default)s)")
    sync.add_argument("--concurrency", type=int, default=4, help="pages fetched at once when totals are known (default %(default)s)")
    sync.add_argument("--max-attempts", type=int, default=8, help="attempts per request (default %(default)s)")
    sync.add_argument("--retry-budget", type=float, default=300.0, metavar="SECONDS", help="total time a run may spend waiting to retry (default %(default)s)")
    sync.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS", help="default %(default)s")
    sync.add_argument("--read-timeout", type=float, default=30.0, metavar="SECONDS", help="default %(default)s")
    sync.add_argument("--dry-run", action="store_true", help="walk and report what would change; write nothing")
    sync.add_argument("--allow-mass-removal", action="store_true", help="let this run remove more than half of the scope's packages")
    sync.add_argument("--metrics-file", type=Path, metavar="PATH", help="write Prometheus textfile-collector metrics of the run here")


def add_db_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    db = commands.add_parser("db", help="manage the database schema")
    actions = db.add_subparsers(title="actions", required=True, metavar="ACTION")
    upgrade_parser = actions.add_parser("upgrade", parents=[common], help="migrate the database to the newest schema")
    upgrade_parser.set_defaults(command=cmd_db_upgrade)


def add_query_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    # etl.tables.OUTPUT_FORMATS, written out: importing etl.tables would load SQLAlchemy for --help.
    formats = ("table", "json", "jsonl", "csv")
    output = argparse.ArgumentParser(add_help=False, parents=[common])
    shape = output.add_mutually_exclusive_group()
    shape.add_argument(
        "--format", choices=formats, default="table", dest="output",
        help="a table for people (default); a JSON array, one JSON object a line, or CSV with a header row",
    )
    shape.add_argument("--json", action="store_const", const="json", default="table", dest="output",
                       help="the same as --format json")
    packages = commands.add_parser("packages", parents=[output], help="the catalogue now, or as it was at a time")
    packages.set_defaults(command=cmd_packages)
    packages.add_argument(
        "--at", metavar="WHEN", help="as it was then: an age (2w, 7d, 24h, 30m) or a UTC date or time"
    )
    packages.add_argument("--scope", metavar="S", help="only the packages this scope listed, e.g. public")
    packages.add_argument("--removed", action="store_true", help="the removed packages instead, with when")
    runs = commands.add_parser("runs", parents=[output], help="the recent runs, newest first")
    runs.set_defaults(command=cmd_runs)
    how_many = runs.add_mutually_exclusive_group()
    how_many.add_argument("--limit", type=positive, default=20, metavar="N", help="show N runs (default %(default)s)")
    how_many.add_argument("--all", action="store_true", help="show every run")
    history = commands.add_parser("history", parents=[output], help="one package's changes, old → new")
    history.set_defaults(command=cmd_history)
    history.add_argument("package", metavar="PACKAGE", help="a package id, permalink or name (any case)")
    changes = commands.add_parser("changes", parents=[output], help="packages created, updated, removed, restored")
    changes.set_defaults(command=cmd_changes)
    changes.add_argument(
        "--since", default="7d", metavar="WHEN",
        help="an age (2w, 7d, 24h, 30m), a UTC date or time, or last-run: the newest succeeded run of each "
             "scope (default %(default)s)",
    )
    changes.add_argument("--scope", metavar="S", help="only the changes of runs of this scope, e.g. public")
    change_types = ("created", "updated", "removed", "restored")  # etl.reports.CHANGE_TYPES

    def types(text: str) -> tuple[str, ...]:
        asked = [word.strip() for word in text.split(",")]
        unknown = [word for word in asked if word not in change_types]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"{unknown[0]!r} is not a change type: give any of {', '.join(change_types)}, comma-separated"
            )
        return tuple(kind for kind in change_types if kind in asked)

    changes.add_argument(
        "--type", type=types, default=change_types, metavar="TYPES",
        help="only these kinds, comma-separated: created,updated,removed,restored (default all)",
    )


def add_demo_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    demo = commands.add_parser(
        "demo", help="try it offline: sync a built-in fake API twice into a new SQLite file"
    )
    demo.set_defaults(command=cmd_demo, log_format="text", verbose=0, quiet=0)
    demo.add_argument(
        "--database", type=Path, metavar="PATH", help="the new SQLite file (default: one in a new temporary folder)"
    )


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        database_url=args.database_url,
        api_url=args.api_url,
        token=read_token(args.token_file),
        scope=Scope(organization_id=args.organization_id, organization_sub_domain=args.organization_sub_domain),
        per_page=args.per_page,
        concurrency=args.concurrency,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        retry=RetryPolicy(max_attempts=args.max_attempts, run_budget_seconds=args.retry_budget),
        allow_mass_removal=args.allow_mass_removal,
        dry_run=args.dry_run,
    )


def read_token(token_file: Path | None) -> str | None:
    """The token from --token-file, else KATAPULT_API_TOKEN; never from the command line itself."""
    if token_file is None:
        return os.environ.get("KATAPULT_API_TOKEN", "").strip() or None
    try:
        token = token_file.read_text().strip()
    except OSError as error:
        raise ConfigError(f"cannot read the token file {token_file}: {error.strerror}") from None
    if not token:
        raise ConfigError(f"the token file {token_file} is empty")
    return token


def cmd_sync(args: argparse.Namespace, hooks: Hooks) -> int:
    settings = settings_from(args)
    if args.metrics_file:
        check_metrics_file(args.metrics_file, settings.dry_run)
    started = hooks.clock()
    try:
        with page_progress(args, hooks) as on_page:
            result = run_sync(settings, replace(hooks, on_page=on_page))
    except EtlError as error:
        # A run that found another one running did nothing: the running one writes the metrics.
        if args.metrics_file and not isinstance(error, RunLockedError):
            record_failed_run(args.metrics_file, settings.scope.key, error, hooks.clock() - started)
        raise
    print(summary_line(result))
    if result.reason:
        complain(args, result.reason, result.exit_code)
    if args.metrics_file:
        write_metrics(args.metrics_file, report_of(result, hooks.clock() - started, time.time()))
    return result.exit_code


def check_metrics_file(path: Path, dry_run: bool) -> None:
    if dry_run:
        raise ConfigError("--metrics-file records real runs: a --dry-run cannot write it")
    check_writable(path)


def record_failed_run(path: Path, scope: str, error: EtlError, seconds: float) -> None:
    try:
        write_metrics(path, RunReport(scope, "failed", error.exit_code, time.time(), seconds))
    except MetricsError as second:
        log.error("%s", second)  # and the run's own error is still the one reported and exited with


def page_progress(
    args: argparse.Namespace, hooks: Hooks
) -> contextlib.AbstractContextManager[Callable[[int, int | None], None]]:
    """A progress bar over pages on an interactive terminal only: never under cron, with -q or JSON logs."""
    if is_terminal(sys.stderr) and not args.quiet and args.log_format == "text":
        return PageProgress(PROG, sys.stderr)
    return contextlib.nullcontext(hooks.on_page)


def summary_line(result: RunResult) -> str:
    counts = result.counts
    verb = "dry run" if result.dry_run else f"sync {result.status}"
    return (
        f"{verb}: scope={result.scope} api={result.api} pages={counts.pages_fetched} "
        f"packages_seen={counts.packages_seen} created={counts.created} updated={counts.updated} "
        f"restored={counts.restored} removed={counts.removed} unchanged={counts.unchanged} "
        f"seconds={result.seconds:.2f}" + (f" run={result.run_id}" if result.run_id else "")
    )


def cmd_db_upgrade(args: argparse.Namespace, hooks: Hooks) -> int:
    engine = open_engine(args.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    print("database is at the newest schema")
    return 0


def cmd_runs(args: argparse.Namespace, hooks: Hooks) -> int:
    from . import reports, tables
    from .database import reading

    with reading(args.database_url) as connection:
        recent = reports.recent_runs(connection, None if args.all else args.limit)
    # Only the table says how many runs it left out: JSON, JSON lines and CSV hold what was asked.
    sys.stdout.write(tables.runs_output(recent, args.output))
    return 0


def cmd_packages(args: argparse.Namespace, hooks: Hooks) -> int:
    from . import reports, tables
    from .database import reading
    from .types import utc_now

    at = None if args.at is None else reports.parse_since(args.at, utc_now(), "--at")
    with reading(args.database_url) as connection:
        reports.check_scope(connection, args.scope)
        catalogue = reports.catalogue(connection, at, args.scope, args.removed)
    sys.stdout.write(tables.catalogue_output(catalogue, args.output))
    return 0


def cmd_history(args: argparse.Namespace, hooks: Hooks) -> int:
    from . import reports, tables
    from .database import reading

    with reading(args.database_url) as connection:
        history = reports.package_history(connection, args.package)
    sys.stdout.write(tables.history_output(history, args.output))
    return 0


def cmd_changes(args: argparse.Namespace, hooks: Hooks) -> int:
    from . import reports, tables
    from .database import reading
    from .types import utc_now

    last_run = args.since.strip() == reports.LAST_RUN
    since = None if last_run else reports.parse_since(args.since, utc_now())
    with reading(args.database_url) as connection:
        reports.check_scope(connection, args.scope)
        run_ids = reports.last_succeeded_runs(connection, args.scope) if last_run else None
        wanted = reports.ChangeFilter(since=since, run_ids=run_ids, scope=args.scope, types=args.type)
        changes = reports.find_changes(connection, wanted)
    sys.stdout.write(tables.changes_output(changes, args.output, tables.no_changes(wanted)))
    return 0


def cmd_demo(args: argparse.Namespace, hooks: Hooks) -> int:
    from . import demo, tables

    database = args.database or Path(tempfile.mkdtemp(prefix="katapult-demo-")) / "katapult.db"
    demo.check_new(database)  # a refused demo prints no banner: stdout stays empty, the reason on stderr
    print(
        "Starting a fake Katapult API on 127.0.0.1 with Katapult's 20-package public catalogue "
        f"as its API answered it on {demo.RECORDED_AS_OF}."
    )

    def tell(run: RunResult, changes: list[object]) -> None:
        print(summary_line(run))
        if run.run_id == 1:  # the new database's first sync: 20 creations are one fact, not 20 rows
            print(tables.creations_line(run, changes))
            print(f"\n{demo.BETWEEN_THE_SYNCS}")
        else:
            print("".join(tables.changes_output(changes, "table", f"run {run.run_id} changed nothing")), end="")

    demo.run_demo(database, hooks, tell)
    print(
        f"\nThe database is {database}; try:\n"
        f"  export DATABASE_URL=sqlite:///{database}\n"
        "  katapult-etl history rock-1\n"
        "  katapult-etl changes --since last-run\n"
        "  katapult-etl packages\n"
        "  katapult-etl runs\n"
        f"  sqlite3 {database} 'SELECT name, cpu_cores, memory_in_gb FROM current_packages'"
    )
    return 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # cron and systemd stop a job with SIGTERM: unwind, so that the run is recorded as failed.
    raise SystemExit(128 + signum)

