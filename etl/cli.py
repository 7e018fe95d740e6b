"""The katapult-etl command: parses arguments, builds Settings, calls one library function, reports.

Every EtlError becomes one line on stderr and the exit code the error carries; nothing else is caught.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from . import __version__
from .config import DEFAULT_API_URL, DEFAULT_DATABASE_URL, MAX_PER_PAGE, RetryPolicy, Scope, Settings
from .database import open_engine, upgrade
from .errors import ConfigError, EtlError
from .pipeline import Hooks, RunResult, run_sync

PROG = "katapult-etl"


def main(argv: Sequence[str] | None = None, hooks: Hooks | None = None) -> int:
    """Run one command; `hooks` lets tests inject the HTTP session and the retry sleep."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose - args.quiet)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.command(args, hooks or Hooks())
    except EtlError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="SQLAlchemy URL of the database (env DATABASE_URL; default %(default)s)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="say more (-vv: debug)")
    common.add_argument("-q", "--quiet", action="count", default=0, help="say only warnings and errors")

    parser = argparse.ArgumentParser(prog=PROG, description="Sync Katapult's VM package catalogue into SQL.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    add_sync_command(commands, common)
    add_db_command(commands, common)
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


def add_db_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    db = commands.add_parser("db", help="manage the database schema")
    actions = db.add_subparsers(title="actions", required=True, metavar="ACTION")
    upgrade_parser = actions.add_parser("upgrade", parents=[common], help="migrate the database to the newest schema")
    upgrade_parser.set_defaults(command=cmd_db_upgrade)


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
        return os.environ.get("KATAPULT_API_TOKEN") or None
    try:
        token = token_file.read_text().strip()
    except OSError as error:
        raise ConfigError(f"cannot read the token file {token_file}: {error.strerror}") from None
    if not token:
        raise ConfigError(f"the token file {token_file} is empty")
    return token


def cmd_sync(args: argparse.Namespace, hooks: Hooks) -> int:
    result = run_sync(settings_from(args), hooks)
    print(summary_line(result))
    if result.reason:
        print(f"{PROG}: {result.reason}", file=sys.stderr)
    return result.exit_code


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


def configure_logging(level: int) -> None:
    """Warnings by default (quiet under cron); -v for info, -vv for debug, -q for errors only."""
    levels = [logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG]
    logging.basicConfig(
        level=levels[max(0, min(level + 1, len(levels) - 1))],
        format=f"{PROG}: %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # cron and systemd stop a job with SIGTERM: unwind, so that the run is recorded as failed.
    raise SystemExit(128 + signum)

