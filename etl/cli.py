"""The katapult-etl command: parses arguments, builds Settings, calls one library function, reports.

Every EtlError becomes one line on stderr and the exit code the error carries; nothing else is caught.
Quick to start: a command imports the library it needs when it runs, so --help, --version and usage
errors never load SQLAlchemy or Alembic.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from . import __version__
from .config import (
    DEFAULT_API_URL,
    DEFAULT_DATABASE_URL,
    MAX_CONCURRENCY,
    MAX_PER_PAGE,
    RetryPolicy,
    Scope,
    Settings,
    database_url,
)
from .errors import EXIT_LOCKED, ConfigError, EtlError
from .logs import FORMATS, configure_logging, is_terminal
from .results import CHANGE_TYPES, RunStatus

# Imported when a command runs, not here: --help, --version and usage errors must not pay for SQLAlchemy
# and Alembic, and the query commands never import Alembic.
if TYPE_CHECKING:
    from .pipeline import Hooks
    from .reports import Change
    from .results import RunResult

    # What add_subparsers returns; argparse's class is generic only in its type stubs.
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "katapult-etl"
log = logging.getLogger(__name__)
# The `run finished` record: in JSON logs it is written at every verbosity but -q, for log pipelines
# that count runs; in text the summary line on stdout says the same.
run_log = logging.getLogger("etl.run")
# Options every command takes, before the command's name or after it.
GLOBAL_DEFAULTS = {"database_url": None, "verbose": 0, "quiet": 0, "log_format": "text"}


def main(argv: Sequence[str] | None = None, hooks: Hooks | None = None) -> int:
    """Run one command; `hooks` lets tests inject the HTTP session and the retry sleep."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said in the words, and with the usage, of the command that was given
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    configure_logging(PROG, args.verbose - args.quiet, args.log_format)
    json_run_record = args.log_format == "json" and not args.quiet
    run_log.setLevel(logging.INFO if json_run_record else logging.NOTSET)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        args.database_url = database_url(args.database_url, os.environ)
        return int(args.command(args, hooks))
    except EtlError as error:
        complain(args, str(error), error.exit_code)
        return error.exit_code
    except KeyboardInterrupt:
        complain(args, "interrupted", 130)
        return 130


def _hooks(given: Hooks | None) -> Hooks:
    """The hooks a test gave, else the real ones (imported only by the commands that run a sync)."""
    from .pipeline import Hooks

    return given or Hooks()


def complain(args: argparse.Namespace, message: str, exit_code: int) -> None:
    """One line on stderr: `katapult-etl: message`, or with --log-format json an error record (a
    warning for a run that found its scope already running: cron overlap is normal)."""
    if args.log_format == "json":
        level = logging.WARNING if exit_code == EXIT_LOCKED else logging.ERROR
        log.log(level, message, extra={"exit_code": exit_code})
    else:
        print(f"{PROG}: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Sync Katapult's VM package catalogue into SQL.", allow_abbrev=False
    )
    add_global_options(parser, GLOBAL_DEFAULTS)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.set_defaults(parser=parser)
    # After the command's name the same options leave unset what they do not name, so that
    # `katapult-etl -v sync` keeps its -v.
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_global_options(common, dict.fromkeys(GLOBAL_DEFAULTS, argparse.SUPPRESS))
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    add_sync_command(commands, common)
    add_db_command(commands, common)
    add_query_commands(commands, common)
    add_demo_command(commands, common)
    add_schema_command(commands, common)
    return parser


def add_global_options(parser: argparse.ArgumentParser, defaults: Mapping[str, object]) -> None:
    parser.add_argument(
        "--database-url",
        default=defaults["database_url"],
        help=f"SQLAlchemy URL of the database (env DATABASE_URL; default {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument("-v", "--verbose", action="count", default=defaults["verbose"], help="say more (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="count", default=defaults["quiet"], help="say only errors")
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=defaults["log_format"],
        help="text lines, or one JSON object per line (default text)",
    )


def _command_parser(
    commands: Commands, name: str, *, parents: list[argparse.ArgumentParser], help: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, allow_abbrev=False, parents=parents, help=help)
    parser.set_defaults(parser=parser)
    return parser


def add_sync_command(commands: Commands, common: argparse.ArgumentParser) -> None:
    sync = _command_parser(
        commands, "sync", parents=[common], help="walk the whole catalogue once and record what changed"
    )
    sync.set_defaults(command=cmd_sync)
    sync.add_argument(
        "--api-url",
        default=os.environ.get("KATAPULT_API_URL", DEFAULT_API_URL),
        help=f"Katapult API root (env KATAPULT_API_URL; default {DEFAULT_API_URL})",
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
    sync.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help=f"pages fetched at once when totals are known, 1 to {MAX_CONCURRENCY} (default %(default)s)",
    )
    sync.add_argument("--max-attempts", type=int, default=8, help="attempts per request (default %(default)s)")
    sync.add_argument(
        "--retry-budget",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="total time a run may spend on failed attempts and the waits between them (default %(default)s)",
    )
    sync.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS", help="default %(default)s")
    sync.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="time for a whole answer, body included (default %(default)s)",
    )
    sync.add_argument("--dry-run", action="store_true", help="walk and report what would change; write nothing")
    sync.add_argument(
        "--allow-mass-removal", action="store_true", help="let this run remove more than half of the scope's packages"
    )
    sync.add_argument(
        "--ignore-key",
        action="append",
        default=[],
        dest="ignore_keys",
        metavar="KEY",
        help="a key (or dotted nested key, e.g. icon.token) kept in raw whose change alone makes no new version; "
        "repeatable",
    )
    sync.add_argument(
        "--metrics-file", type=Path, metavar="PATH", help="write Prometheus textfile-collector metrics of the run here"
    )
    sync.add_argument(
        "--json", action="store_true", help="print the run's summary as one JSON object, the only line on stdout"
    )


def add_db_command(commands: Commands, common: argparse.ArgumentParser) -> None:
    db = _command_parser(commands, "db", parents=[common], help="manage the database schema")
    actions = db.add_subparsers(title="actions", required=True, metavar="ACTION")
    upgrade = _command_parser(actions, "upgrade", parents=[common], help="migrate the database to the newest schema")
    upgrade.set_defaults(command=cmd_db_upgrade)
    current = _command_parser(
        actions, "current", parents=[common], help="the database's schema revision; exit 1 when an upgrade is pending"
    )
    current.set_defaults(command=cmd_db_current)


def add_query_commands(commands: Commands, common: argparse.ArgumentParser) -> None:
    # etl.tables.OUTPUT_FORMATS, written out: importing etl.tables would load SQLAlchemy for --help.
    formats = ("table", "json", "jsonl", "csv")
    output = _output_options(common, formats)
    packages = _command_parser(commands, "packages", parents=[output], help="the catalogue now, or as it was at a time")
    packages.set_defaults(command=cmd_packages)
    packages.add_argument(
        "--at", metavar="WHEN", help="as it was then: an age (2w, 7d, 24h, 30m) or a UTC date or time"
    )
    packages.add_argument("--scope", metavar="S", help="only the packages this scope listed, e.g. public")
    packages.add_argument("--removed", action="store_true", help="the removed packages instead, with when")
    runs = _command_parser(commands, "runs", parents=[output], help="the recent runs, newest first")
    runs.set_defaults(command=cmd_runs)
    how_many = runs.add_mutually_exclusive_group()
    how_many.add_argument("--limit", type=positive, default=20, metavar="N", help="show N runs (default %(default)s)")
    how_many.add_argument("--all", action="store_true", help="show every run")
    history = _command_parser(commands, "history", parents=[output], help="one package's changes, old → new")
    history.set_defaults(command=cmd_history)
    history.add_argument("package", metavar="PACKAGE", help="a package id, permalink or name (any case)")
    changes = _command_parser(
        commands,
        "changes",
        parents=[_output_options(common, (*formats, "atom"), atom=True)],
        help="packages created, updated, removed, restored",
    )
    changes.set_defaults(command=cmd_changes)
    changes.add_argument(
        "--since",
        default="7d",
        metavar="WHEN",
        help="an age (2w, 7d, 24h, 30m), a UTC date or time, or last-run: the newest succeeded run of each "
        "scope (default %(default)s)",
    )
    changes.add_argument("--scope", metavar="S", help="only the changes of runs of this scope, e.g. public")
    change_types = tuple(CHANGE_TYPES)

    def types(text: str) -> tuple[str, ...]:
        asked = [word.strip() for word in text.split(",")]
        unknown = [word for word in asked if word not in change_types]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"{unknown[0]!r} is not a change type: give any of {', '.join(change_types)}, comma-separated"
            )
        return tuple(kind for kind in change_types if kind in asked)

    changes.add_argument(
        "--type",
        type=types,
        default=change_types,
        metavar="TYPES",
        help="only these kinds, comma-separated: created,updated,removed,restored (default all)",
    )


def _output_options(
    common: argparse.ArgumentParser, formats: tuple[str, ...], *, atom: bool = False
) -> argparse.ArgumentParser:
    """--format (and --json, its JSON shorthand) of a query command."""
    output = argparse.ArgumentParser(add_help=False, parents=[common], allow_abbrev=False)
    shape = output.add_mutually_exclusive_group()
    shape.add_argument(
        "--format",
        choices=formats,
        default="table",
        dest="output",
        help="a table for people (default); a JSON array, one JSON object a line, or CSV with a header row"
        + ("; an Atom 1.0 feed, one entry per run" if atom else ""),
    )
    shape.add_argument(
        "--json", action="store_const", const="json", default="table", dest="output", help="the same as --format json"
    )
    return output


def add_demo_command(commands: Commands, common: argparse.ArgumentParser) -> None:
    demo = _command_parser(
        commands, "demo", parents=[common], help="try it offline: sync a built-in fake API twice into a new SQLite file"
    )
    demo.set_defaults(command=cmd_demo)
    demo.add_argument(
        "--database", type=Path, metavar="PATH", help="the new SQLite file (default: one in a new temporary folder)"
    )


def add_schema_command(commands: Commands, common: argparse.ArgumentParser) -> None:
    schema = _command_parser(
        commands, "schema", parents=[common], help="describe the tables and views of this release (no database needed)"
    )
    schema.set_defaults(command=cmd_schema)
    schema.add_argument(
        "--format",
        choices=("markdown", "dbt", "json"),
        default="markdown",
        dest="output",  # etl.schema_docs.FORMATS
        help="the README's tables (default); a dbt sources.yml; the same as JSON",
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
        ignore_keys=tuple(sorted(set(args.ignore_keys))),
    )


def read_token(token_file: Path | None) -> str | None:
    """The token from --token-file, else KATAPULT_API_TOKEN; never from the command line itself."""
    if token_file is None:
        token = os.environ.get("KATAPULT_API_TOKEN", "").strip() or None
        if token is None and os.environ.get("KATAPULT_API_KEY"):
            # The name Katapult's Terraform provider reads: a user of both tools may have set only that.
            log.warning("KATAPULT_API_KEY is set, but katapult-etl reads KATAPULT_API_TOKEN: reading the public API")
        return token
    try:
        token = token_file.read_bytes().decode("utf-8").strip()
    except OSError as error:
        raise ConfigError(f"cannot read the token file {token_file}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the token file {token_file} is not UTF-8 text") from None
    if not token:
        raise ConfigError(f"the token file {token_file} is empty")
    return token


def cmd_sync(args: argparse.Namespace, hooks: Hooks | None) -> int:
    settings = settings_from(args)  # first: a bad value is a usage error before anything is imported
    from .metrics import check_metrics_path
    from .pipeline import run_sync

    hooks = _hooks(hooks)
    if args.metrics_file:
        check_metrics_path(args.metrics_file, settings.dry_run)
    started = hooks.clock()
    try:
        with page_progress(args, hooks) as on_page:
            result = run_sync(settings, replace(hooks, on_page=on_page))
    except EtlError as error:
        # A run that found another one running did nothing: the running one writes the metrics.
        if args.metrics_file and error.exit_code != EXIT_LOCKED:
            record_failed_run(args.metrics_file, settings.scope.key, error, hooks.clock() - started)
        raise
    report_run(args, result)
    if args.metrics_file:
        from .metrics import report_of, write_metrics

        write_metrics(args.metrics_file, report_of(result, hooks.clock() - started, time.time()))
    return result.exit_code


def report_run(args: argparse.Namespace, result: RunResult) -> None:
    """The summary on stdout (unless -q), the reason a run did not succeed on stderr, and a final
    `run finished` log record."""
    if args.json:
        print(json.dumps(summary_of(result)))
    elif not args.quiet:
        print(summary_line(result))
    if result.reason:
        complain(args, result.reason, result.exit_code)
    summary = summary_of(result)
    counts = {name: summary.pop(name) for name in vars(result.counts)}  # `created` is a LogRecord attribute
    run_log.info("run finished", extra={**summary, "counts": counts})


def record_failed_run(path: Path, scope: str, error: EtlError, seconds: float) -> None:
    from .errors import MetricsError
    from .metrics import RunReport, write_metrics

    try:
        write_metrics(path, RunReport(scope, RunStatus.FAILED, error.exit_code, time.time(), seconds))
    except MetricsError as second:
        log.error("%s", second)  # and the run's own error is still the one reported and exited with


def page_progress(
    args: argparse.Namespace, hooks: Hooks
) -> contextlib.AbstractContextManager[Callable[[int, int | None], None]]:
    """A progress bar over pages on an interactive terminal only: never under cron, with -q or JSON logs."""
    if is_terminal(sys.stderr) and not args.quiet and args.log_format == "text" and not args.json:
        from .progress import PageProgress

        return PageProgress(PROG, sys.stderr)
    return contextlib.nullcontext(hooks.on_page)


def summary_of(result: RunResult) -> dict[str, object]:
    """The run as one flat object: what `sync --json` prints and the `run finished` record carries."""
    return {
        "run_id": result.run_id,
        "scope": result.scope,
        "api": result.api,
        "status": "dry run" if result.dry_run else result.status,
        "exit_code": result.exit_code,
        **vars(result.counts),
        "schema_changes": None if result.schema_changes is None else str(result.schema_changes),
        "mass_update": result.mass_update is not None,
        "seconds": round(result.seconds, 3),
    }


def summary_line(result: RunResult) -> str:
    counts = result.counts
    verb = "dry run" if result.dry_run else f"sync {result.status}"
    return (
        f"{verb}: scope={result.scope} api={result.api} pages={counts.pages_fetched} "
        f"packages_seen={counts.packages_seen} created={counts.created} updated={counts.updated} "
        f"restored={counts.restored} removed={counts.removed} unchanged={counts.unchanged} "
        f"seconds={result.seconds:.2f}" + (f" run={result.run_id}" if result.run_id else "")
    )


def cmd_db_upgrade(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from .database import head_revision, migrate

    before = migrate(args.database_url)
    head = head_revision()
    if args.quiet:
        return 0
    if before == head:
        print(f"already at {head}, the newest")
    else:
        print(f"migrated from {before or 'none'} to {head}")
    return 0


def cmd_db_current(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from .database import head_revision, revision_of

    current = revision_of(args.database_url)
    head = head_revision()
    if current == head:
        print(f"at {head}, the newest")
        return 0
    print(f"at {current or 'none'}; the newest is {head}: run `katapult-etl db upgrade`")
    return 1


def cmd_runs(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from . import reports, tables
    from .database import reading

    with reading(args.database_url) as connection:
        recent = reports.recent_runs(connection, None if args.all else args.limit)
    # Only the table says how many runs it left out: JSON, JSON lines and CSV hold what was asked.
    sys.stdout.write(tables.runs_output(recent, args.output))
    return 0


def cmd_packages(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from . import reports, tables
    from .clock import utc_now
    from .database import reading

    at = None if args.at is None else reports.parse_since(args.at, utc_now(), "--at")
    with reading(args.database_url) as connection:
        reports.check_scope(connection, args.scope)
        catalogue = reports.catalogue(connection, at, args.scope, args.removed)
    sys.stdout.write(tables.catalogue_output(catalogue, args.output))
    return 0


def cmd_history(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from . import reports, tables
    from .database import reading

    with reading(args.database_url) as connection:
        history = reports.package_history(connection, args.package)
    sys.stdout.write(tables.history_output(history, args.output))
    return 0


def cmd_changes(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from . import reports, tables
    from .clock import utc_now
    from .database import reading

    last_run = args.since.strip() == reports.LAST_RUN
    since = None if last_run else reports.parse_since(args.since, utc_now())
    with reading(args.database_url) as connection:
        reports.check_scope(connection, args.scope)
        run_ids = reports.last_succeeded_runs(connection, args.scope) if last_run else None
        wanted = reports.ChangeFilter(since=since, run_ids=run_ids, scope=args.scope, types=args.type)
        if args.output == "atom":
            from .feed import atom

            sys.stdout.write(atom(reports.change_feed(connection, wanted)))
            return 0
        changes = reports.find_changes(connection, wanted)
    sys.stdout.write(tables.changes_output(changes, args.output, tables.no_changes(wanted)))
    return 0


def cmd_demo(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from . import demo, tables

    hooks = _hooks(hooks)
    database = args.database or Path(tempfile.mkdtemp(prefix="katapult-demo-")) / "katapult.db"
    demo.check_new(database)  # a refused demo prints no banner: stdout stays empty, the reason on stderr
    print(
        "Starting a fake Katapult API on 127.0.0.1 with Katapult's 20-package public catalogue "
        f"as its API answered it on {demo.RECORDED_AS_OF}."
    )

    def tell(run: RunResult, changes: list[Change]) -> None:
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


def cmd_schema(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from . import schema_docs

    sys.stdout.write(schema_docs.render(args.output))
    return 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # cron and systemd stop a job with SIGTERM: unwind, so that the run is recorded as failed.
    raise SystemExit(128 + signum)
