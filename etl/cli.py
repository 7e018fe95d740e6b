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
from .config import DEFAULT_API_URL, DEFAULT_DATABASE_URL, MAX_CONCURRENCY, MAX_PER_PAGE, database_url
from .configfile import CONFIG_ENV, IF_LOCKED, ConfigFile, config_path
from .configfile import load as load_config
from .errors import EXIT_LOCKED, EXIT_OK, ConfigError, EtlError
from .logs import FORMATS, configure_logging, is_terminal
from .results import CHANGE_TYPES, RunStatus

# Imported when a command runs, not here: --help, --version and usage errors must not pay for SQLAlchemy
# and Alembic, and the query commands never import Alembic.
if TYPE_CHECKING:
    from .metrics import RunReport
    from .pipeline import Hooks
    from .reports import Change
    from .results import RunResult
    from .retire import Retirement
    from .runplan import PlannedRun

    # What add_subparsers returns; argparse's class is generic only in its type stubs.
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "katapult-etl"
log = logging.getLogger(__name__)
# The `run finished` record: in JSON logs it is written at every verbosity but -q, for log pipelines
# that count runs; in text the summary line on stdout says the same.
run_log = logging.getLogger("etl.run")
# Options every command takes, before the command's name or after it.
GLOBAL_DEFAULTS = {"config": None, "database_url": None, "verbose": 0, "quiet": 0, "log_format": "text"}


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
        args.config_file = read_config(args.config)
        configured = args.config_file.database_url if args.config_file else None
        args.database_url = database_url(args.database_url, os.environ, configured)
        return int(args.command(args, hooks))
    except EtlError as error:
        complain(args, str(error), error.exit_code)
        return error.exit_code
    except KeyboardInterrupt:
        complain(args, "interrupted", 130)
        return 130


def read_config(given: Path | None) -> ConfigFile | None:
    """The configuration file --config or KATAPULT_ETL_CONFIG names, checked whole; None when neither does."""
    path = config_path(given, os.environ)
    return None if path is None else load_config(path)


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
    add_scopes_command(commands, common)
    add_demo_command(commands, common)
    add_schema_command(commands, common)
    return parser


def add_global_options(parser: argparse.ArgumentParser, defaults: Mapping[str, object]) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        default=defaults["config"],
        help=f"the configuration file (TOML): database, API, sync options, scopes (env {CONFIG_ENV}; default none)",
    )
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
    # No defaults here: an option not given is None, so that the configuration file's value shows
    # through; the defaults are etl.runplan.SYNC_DEFAULTS (their numbers are written out in the help).
    which = sync.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", default=None, help="sync every scope of the configuration file")
    which.add_argument("--scope", metavar="NAME", help="sync one scope of the configuration file")
    sync.add_argument("--api-url", help=f"Katapult API root (env KATAPULT_API_URL; default {DEFAULT_API_URL})")
    sync.add_argument(
        "--token-file",
        type=Path,
        help="read the API token from this file (else env KATAPULT_API_TOKEN; none: the public API)",
    )
    scope = sync.add_mutually_exclusive_group()
    scope.add_argument("--organization-id", metavar="ID", help="an organization's packages, by id")
    scope.add_argument("--organization-sub-domain", metavar="SUB", help="an organization's packages, by sub-domain")
    sync.add_argument("--per-page", type=int, help=f"page size to ask for (default {MAX_PER_PAGE})")
    sync.add_argument(
        "--concurrency",
        type=int,
        help=f"pages fetched at once when totals are known, 1 to {MAX_CONCURRENCY} (default 4)",
    )
    sync.add_argument("--max-attempts", type=int, help="attempts per request (default 8)")
    sync.add_argument(
        "--retry-budget",
        type=float,
        metavar="SECONDS",
        help="total time a run may spend on failed attempts and the waits between them (default 300)",
    )
    sync.add_argument("--connect-timeout", type=float, metavar="SECONDS", help="default 10")
    sync.add_argument(
        "--read-timeout", type=float, metavar="SECONDS", help="time for a whole answer, body included (default 30)"
    )
    sync.add_argument(
        "--dry-run", action="store_true", default=None, help="walk and report what would change; write nothing"
    )
    sync.add_argument(
        "--allow-mass-removal",
        action="store_true",
        default=None,
        help="let this run remove more than half of the scope's packages",
    )
    sync.add_argument(
        "--ignore-key",
        action="append",
        default=None,
        dest="ignore_keys",
        metavar="KEY",
        help="a key (or dotted nested key, e.g. icon.token) kept in raw whose change alone makes no new version; "
        "repeatable",
    )
    sync.add_argument(
        "--metrics-file",
        type=Path,
        metavar="PATH",
        help="write Prometheus textfile-collector metrics of the run here ({scope}: the scope's name)",
    )
    sync.add_argument(
        "--pushgateway",
        metavar="URL",
        help="push the run's metrics to this Prometheus Pushgateway (PUT URL/metrics/job/katapult_etl/scope/S)",
    )
    sync.add_argument(
        "--json",
        action="store_true",
        default=None,
        help="print each run's summary as one JSON object, one line on stdout per scope",
    )
    sync.add_argument(
        "--if-locked",
        choices=IF_LOCKED,
        help="when another run holds the scope: fail with exit 75 (default), or skip it with a warning, exit 0",
    )
    add_notify_url(sync)


def add_notify_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notify-url",
        action="append",
        default=[],
        metavar="URL",
        help="a webhook to POST each run's changes to (repeatable); pending ones go out with the next run",
    )


def add_notify_commands(commands: Commands, common: argparse.ArgumentParser, output: argparse.ArgumentParser) -> None:
    notify = _command_parser(commands, "notify", parents=[common], help="deliver the pending webhook notifications now")
    notify.set_defaults(command=cmd_notify)
    add_notify_url(notify)
    listing = _command_parser(
        commands, "notifications", parents=[output], help="the webhook notifications, oldest first"
    )
    listing.set_defaults(command=cmd_notifications)
    listing.add_argument("--pending", action="store_true", help="only those not yet delivered")


def add_db_command(commands: Commands, common: argparse.ArgumentParser) -> None:
    db = _command_parser(commands, "db", parents=[common], help="manage the database schema")
    actions = db.add_subparsers(title="actions", required=True, metavar="ACTION")
    upgrade = _command_parser(actions, "upgrade", parents=[common], help="migrate the database to the newest schema")
    upgrade.set_defaults(command=cmd_db_upgrade)
    current = _command_parser(
        actions, "current", parents=[common], help="the database's schema revision; exit 1 when an upgrade is pending"
    )
    current.set_defaults(command=cmd_db_current)


def output_options(common: argparse.ArgumentParser, *, atom: bool = False) -> argparse.ArgumentParser:
    """--format and --json, which every command that reads the history takes; `changes` has an Atom feed too."""
    # etl.tables.OUTPUT_FORMATS, written out: importing etl.tables would load SQLAlchemy for --help.
    formats = ("table", "json", "jsonl", "csv", *(("atom",) if atom else ()))
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


def add_query_commands(commands: Commands, common: argparse.ArgumentParser) -> None:
    output = output_options(common)
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
    add_notify_commands(commands, common, output)
    history = _command_parser(commands, "history", parents=[output], help="one package's changes, old → new")
    history.set_defaults(command=cmd_history)
    history.add_argument("package", metavar="PACKAGE", help="a package id, permalink or name (any case)")
    changes = _command_parser(
        commands,
        "changes",
        parents=[output_options(common, atom=True)],
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


def add_scopes_command(commands: Commands, common: argparse.ArgumentParser) -> None:
    scopes = _command_parser(
        commands,
        "scopes",
        parents=[output_options(common)],
        help="every scope the database knows: packages it lists, its last run and last success",
    )
    scopes.set_defaults(command=cmd_scopes)
    actions = scopes.add_subparsers(title="actions", metavar="ACTION")  # none: list the scopes
    retire = _command_parser(
        actions, "retire", parents=[common], help="unlist every package of a scope that is gone, in a run of its own"
    )
    retire.set_defaults(command=cmd_scopes_retire)
    retire.add_argument(
        "scope",
        metavar="SCOPE",
        help="the scope as `scopes` lists it: public, organization[id]=ID or organization[sub_domain]=SUB",
    )
    retire.add_argument(
        "--allow-mass-removal", action="store_true", help="let it remove more than half of the scope's packages"
    )
    retire.add_argument("--dry-run", action="store_true", help="say what it would unlist and remove; write nothing")


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


def cmd_sync(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from .runplan import plan_sync  # first: every usage error of every scope before anything is imported

    plan = plan_sync(vars(args), os.environ, args.config_file)
    for option, value in plan.options.items():  # as resolved: the flag, else the file, else the default
        setattr(args, option, value)
    check_outputs(args, plan.runs)
    hooks = _hooks(hooks)
    if not plan.every_scope:
        return sync_scope(args, plan.runs[0], hooks)
    from .pacing import Allowance
    from .runplan import most_serious

    allowances: dict[str | None, Allowance] = {}  # one per token: its scopes share Katapult's allowance
    exit_codes = []
    for run in plan.runs:
        allowance = allowances.setdefault(run.settings.token, Allowance(hooks.sleep, hooks.clock))
        try:
            exit_codes.append(sync_scope(args, run, replace(hooks, allowance=allowance)))
        except EtlError as error:  # one scope failing does not stop the others
            report_failure(args, run, error)
            exit_codes.append(error.exit_code)
    return most_serious(exit_codes)


def check_outputs(args: argparse.Namespace, runs: Sequence[PlannedRun]) -> None:
    """Before any run: metrics that could not be written or pushed are usage errors, found before any work."""
    from .metrics import check_metrics_path, check_pushgateway_url

    for run in runs:
        if run.metrics_file:
            check_metrics_path(run.metrics_file, run.settings.dry_run)
    if args.pushgateway:
        check_pushgateway_url(args.pushgateway, args.dry_run)


def sync_scope(args: argparse.Namespace, run: PlannedRun, hooks: Hooks) -> int:
    """One scope's run, reported: its summary, its metrics; an EtlError raised when the run failed."""
    from .errors import RunLockedError
    from .metrics import RunReport, report_of
    from .pipeline import run_sync

    started = hooks.clock()
    try:
        with page_progress(args, hooks) as on_page:
            result = run_sync(run.settings, replace(hooks, on_page=on_page))
    except RunLockedError as error:
        if args.if_locked != "skip":
            raise  # a run that found another one running did nothing: the running one writes the metrics
        log.warning("%s: skipped (--if-locked skip)", error)
        if args.json:
            print(json.dumps({**_name(run), "scope": run.settings.scope.key, "status": "skipped", "exit_code": 0}))
        return EXIT_OK
    except EtlError as error:
        seconds = hooks.clock() - started
        failed = RunReport(run.settings.scope.key, RunStatus.FAILED, error.exit_code, time.time(), seconds)
        publish_metrics(args, run, failed)
        raise
    report_run(args, run, result)
    publish_metrics(args, run, report_of(result, hooks.clock() - started, time.time()))
    return result.exit_code


def report_run(args: argparse.Namespace, run: PlannedRun, result: RunResult) -> None:
    """The summary on stdout (unless -q), the reason a run did not succeed on stderr, and a final
    `run finished` log record."""
    if args.json:
        print(json.dumps({**_name(run), **summary_of(result)}))
    elif not args.quiet:
        print(summary_line(result))
    if result.reason:
        complain(args, result.reason, result.exit_code)
    summary = summary_of(result)
    counts = {name: summary.pop(name) for name in vars(result.counts)}  # `created` is a LogRecord attribute
    run_log.info("run finished", extra={**summary, "counts": counts})


def report_failure(args: argparse.Namespace, run: PlannedRun, error: EtlError) -> None:
    """A scope of `sync --all` that failed: its line on stderr, named, and with --json its line on stdout."""
    if args.json:
        scope, api = run.settings.scope.key, run.settings.api
        line = {**_name(run), "scope": scope, "api": api, "status": "failed", "exit_code": error.exit_code}
        print(json.dumps({**line, "error": str(error)}))
    complain(args, f"scope {run.name}: {error}", error.exit_code)


def _name(run: PlannedRun) -> dict[str, str]:
    """The scope's name in the configuration file, first in its JSON line (nothing for a scope of flags)."""
    return {"name": run.name} if run.from_file else {}


def publish_metrics(args: argparse.Namespace, run: PlannedRun, report: RunReport) -> None:
    """The run's metrics to its --metrics-file and --pushgateway. A failed run's are best effort: its own
    error is the one reported. A push that fails is a warning: the metrics are not the run."""
    from .errors import MetricsError
    from .metrics import last_success, push_metrics, write_metrics

    if run.metrics_file:
        try:
            write_metrics(run.metrics_file, report)
        except MetricsError as error:
            if report.status != RunStatus.FAILED:
                raise
            log.error("%s", error)  # and the run's own error is still the one reported and exited with
    if args.pushgateway:
        try:
            push_metrics(args.pushgateway, report, last_success(report, run.metrics_file))
        except MetricsError as error:
            log.warning("%s", error)


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


def cmd_scopes(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from . import reports, tables
    from .database import reading

    with reading(args.database_url) as connection:
        states = reports.scope_states(connection)
    sys.stdout.write(tables.scopes_output(states, args.output))
    return 0


def cmd_scopes_retire(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from .retire import retire_scope

    retired = retire_scope(
        args.database_url,
        args.scope,
        allow_mass_removal=args.allow_mass_removal,
        dry_run=args.dry_run,
        hooks=_hooks(hooks),
    )
    if not args.quiet:
        print(retirement_line(retired))
    if retired.reason:
        complain(args, retired.reason, retired.exit_code)
    return retired.exit_code


def retirement_line(retired: Retirement) -> str:
    if retired.nothing_to_do:
        return f"nothing to retire: {retired.scope} lists no packages"
    verb = "dry run" if retired.dry_run else f"retire {retired.status}"
    return (
        f"{verb}: scope={retired.scope} unlisted={retired.unlisted} removed={retired.removed} "
        f"unchanged={retired.still_listed} seconds={retired.seconds:.2f}"
        + (f" run={retired.run_id}" if retired.run_id else "")
    )


def cmd_notify(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from .runplan import notify_targets

    targets = notify_targets(
        args.notify_url, args.config_file
    )  # first: a bad URL is a usage error before anything is imported
    if not targets:
        raise ConfigError(
            "notify needs the targets to deliver to: give --notify-url URL (repeatable), "
            "or a configuration file with notify"
        )
    from .delivery import notify
    from .errors import NotificationError
    from .webhooks import WebhookSender

    hooks = _hooks(hooks)
    with WebhookSender(sleep=hooks.sleep) as sender:
        report = notify(args.database_url, targets, sender, hooks.wall_clock)
    if not args.quiet:
        print(f"notify: delivered={report.delivered} failed={report.failed} pending={report.backlog.pending}")
    if report.failed:
        noun = "notification" if report.failed == 1 else "notifications"
        raise NotificationError(f"{report.failed} {noun} not delivered: pending until a run or `notify` delivers them")
    return 0


def cmd_notifications(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from . import outbox, tables
    from .database import reading

    with reading(args.database_url) as connection:
        rows = outbox.notifications(connection, args.pending)
    sys.stdout.write(tables.notifications_output(rows, args.output, args.pending))
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
