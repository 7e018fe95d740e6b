"""What one `katapult-etl sync` runs: its scopes, each with its Settings, made whole before the first run.

Every value is taken from, in this order: the command-line flags, the environment, the configuration
file, the defaults. A run needs nothing from the network or the database to be planned, so every usage
error of every scope (a bad value, an unreadable token file, an unset token variable) stops the
command, exit 2, before the first run starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DEFAULT_API_URL, MAX_PER_PAGE, NotifyTarget, RetryPolicy, Scope, Settings
from .configfile import CONFIG_ENV, ConfigFile, ScopeEntry
from .errors import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_LOCKED,
    EXIT_MASS_REMOVAL,
    EXIT_OK,
    ConfigError,
)

log = logging.getLogger(__name__)

API_URL_ENV = "KATAPULT_API_URL"
TOKEN_ENV = "KATAPULT_API_TOKEN"
# As Katapult's Terraform provider reads it: an organization's id (org_…) or its sub-domain.
ORGANIZATION_ENV = "KATAPULT_ORGANIZATION"
ORGANIZATION_ID_PREFIX = "org_"
# The defaults of the options a file's [sync] may set (etl.configfile.SYNC_KEYS), in one place: the
# parser leaves an option it was not given as None, so that the file's value can show through.
SYNC_DEFAULTS: dict[str, Any] = {
    "per_page": MAX_PER_PAGE,
    "concurrency": 4,
    "max_attempts": 8,
    "retry_budget": 300.0,
    "connect_timeout": 10.0,
    "read_timeout": 30.0,
    "dry_run": False,
    "allow_mass_removal": False,
    "metrics_file": None,
    "json": False,
    "if_locked": "fail",
    "pushgateway": None,
    "ignore_keys": (),  # --ignore-key given replaces the file's list (as every flag replaces its key)
}
# Most serious first: the exit code of `sync --all` is the first of these that any scope ended with.
SEVERITY = (EXIT_FAILED, EXIT_MASS_REMOVAL, EXIT_INCOMPLETE, EXIT_LOCKED, EXIT_OK)
SCOPE_PLACEHOLDER = "{scope}"


@dataclass(frozen=True)
class PlannedRun:
    """One scope's run: `name` is its name in the file (for a scope given by flags, its key)."""

    name: str
    settings: Settings
    metrics_file: Path | None
    from_file: bool = False


@dataclass(frozen=True)
class Plan:
    runs: tuple[PlannedRun, ...]
    options: Mapping[str, Any]  # every option of SYNC_KEYS, resolved
    every_scope: bool  # --all: the runs report one by one, and the exit code is the most serious


def plan_sync(flags: Mapping[str, Any], environ: Mapping[str, str], config: ConfigFile | None) -> Plan:
    """The runs of one `sync`. `flags` are the parser's values (None: not given), with `database_url`
    already resolved (flag, DATABASE_URL, the file, the default)."""
    options = {
        key: _first(flags.get(key), config.sync.get(key) if config else None, default)
        for key, default in SYNC_DEFAULTS.items()
    }
    api_url = _first(
        flags.get("api_url"), environ.get(API_URL_ENV) or None, config.api_url if config else None, DEFAULT_API_URL
    )
    settings = dict(
        database_url=flags["database_url"],
        api_url=api_url,
        per_page=options["per_page"],
        concurrency=options["concurrency"],
        connect_timeout=options["connect_timeout"],
        read_timeout=options["read_timeout"],
        retry=RetryPolicy(max_attempts=options["max_attempts"], run_budget_seconds=options["retry_budget"]),
        allow_mass_removal=options["allow_mass_removal"],
        dry_run=options["dry_run"],
        notify=notify_targets(flags.get("notify_url") or (), config),
        ignore_keys=tuple(sorted(set(options["ignore_keys"]))),
    )
    Settings(**settings)  # the values every scope shares, checked once and named without a scope
    if flags.get("all") or flags.get("scope"):
        runs = _file_runs(flags, environ, _required(config, flags), settings)
    else:
        scope = _scope_from(flags, environ)
        token = read_token(flags.get("token_file"), environ)
        runs = [PlannedRun(scope.key, Settings(**settings, scope=scope, token=token), None)]
    metrics = _metrics_files(options["metrics_file"], runs)
    return Plan(
        tuple(PlannedRun(run.name, run.settings, path, run.from_file) for run, path in zip(runs, metrics, strict=True)),
        options,
        every_scope=bool(flags.get("all")),
    )


def notify_targets(urls: Sequence[str], config: ConfigFile | None) -> tuple[NotifyTarget, ...]:
    """The webhooks: those given with --notify-url (each once, unsigned: the command line takes no
    secret), else the file's `notify`, each with the secret its secret_file holds."""
    if urls:
        return tuple(NotifyTarget(url) for url in dict.fromkeys(urls))
    if config is None:
        return ()
    targets = []
    for number, entry in enumerate(config.notify, start=1):
        try:
            secret = None if entry.secret_file is None else _read_secret(entry.secret_file)
            targets.append(NotifyTarget(entry.url, secret))
        except ConfigError as error:
            raise ConfigError(f"{config.path}: notify[{number}]: {error}") from None
    return tuple(targets)


def _read_secret(path: Path, what: str = "secret") -> str:
    """The text a token or secret file holds, stripped; ConfigError (exit 2) if it cannot be read or is empty."""
    try:
        secret = path.read_bytes().decode("utf-8").strip()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the {what} file {path} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"the {what} file {path} is empty")
    return secret


def most_serious(exit_codes: Sequence[int]) -> int:
    """The exit code of many runs: 1, then 4, 3, 75, 0; a code outside that list outranks them all."""
    for code in exit_codes:
        if code not in SEVERITY:
            return code
    return min(exit_codes, key=SEVERITY.index, default=EXIT_OK)


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _required(config: ConfigFile | None, flags: Mapping[str, Any]) -> ConfigFile:
    option = "--all" if flags.get("all") else f"--scope {flags['scope']}"
    if config is None:
        raise ConfigError(f"{option} needs a configuration file: give --config PATH or set {CONFIG_ENV}")
    if flags.get("organization_id") or flags.get("organization_sub_domain"):
        raise ConfigError(
            f"{option} takes its scopes from {config.path}: not with --organization-id or --organization-sub-domain"
        )
    if flags.get("all") and flags.get("token_file"):
        raise ConfigError(
            "--all runs every scope with its own token: not with --token-file "
            "(a scope names its token_file or token_env)"
        )
    if flags.get("all") and not config.scopes:
        raise ConfigError(f"--all: {config.path} has no [[scopes]]")
    return config


def _file_runs(
    flags: Mapping[str, Any], environ: Mapping[str, str], config: ConfigFile, settings: dict[str, Any]
) -> list[PlannedRun]:
    entries = config.scopes if flags.get("all") else (config.scope(flags["scope"]),)
    runs = []
    for entry in entries:
        where = config.where(entry)
        try:
            # --token-file, a flag, outranks the scope's own token (--scope only; --all refuses it).
            token = read_token(flags["token_file"], environ) if flags.get("token_file") else _token_of(entry, environ)
            scope = Scope(organization_id=entry.organization_id, organization_sub_domain=entry.organization_sub_domain)
            runs.append(PlannedRun(entry.name, Settings(**settings, scope=scope, token=token), None, from_file=True))
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    return runs


def _token_of(entry: ScopeEntry, environ: Mapping[str, str]) -> str | None:
    """A file scope's token: from its token_file, or its token_env variable; none: the public API.
    KATAPULT_API_TOKEN is not read for it: each scope of a file says where its own token is."""
    if entry.token_file is not None:
        return read_token(entry.token_file, environ)
    if entry.token_env is not None:
        token = environ.get(entry.token_env, "").strip()
        if not token:
            raise ConfigError(f"token_env names {entry.token_env}, which is not set or is empty")
        return token
    return None


def _scope_from(flags: Mapping[str, Any], environ: Mapping[str, str]) -> Scope:
    """The scope flags name; else KATAPULT_ORGANIZATION's organization; else the public catalogue."""
    if flags.get("organization_id") or flags.get("organization_sub_domain"):
        return Scope(
            organization_id=flags.get("organization_id"), organization_sub_domain=flags.get("organization_sub_domain")
        )
    organization = environ.get(ORGANIZATION_ENV, "").strip()
    if not organization:
        return Scope()
    if organization.startswith(ORGANIZATION_ID_PREFIX):
        return Scope(organization_id=organization)
    return Scope(organization_sub_domain=organization)


def read_token(token_file: Path | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token from `token_file`, else KATAPULT_API_TOKEN; never from the command line itself."""
    if token_file is None:
        token = environ.get(TOKEN_ENV, "").strip() or None
        if token is None and environ.get("KATAPULT_API_KEY"):
            # The name Katapult's Terraform provider reads: a user of both tools may have set only that.
            log.warning("KATAPULT_API_KEY is set, but katapult-etl reads KATAPULT_API_TOKEN: reading the public API")
        return token
    return _read_secret(token_file, "token")


def _metrics_files(path: Path | None, runs: list[PlannedRun]) -> list[Path | None]:
    """Each run's metrics file: `{scope}` in the path is the scope's name; several scopes need it, else
    each run's metrics would replace the last one's."""
    if path is None:
        return [None] * len(runs)
    if SCOPE_PLACEHOLDER not in str(path):
        if len(runs) > 1:
            raise ConfigError(
                f"--metrics-file {path}: several scopes need {SCOPE_PLACEHOLDER} in the name (e.g. "
                f"katapult_etl_{SCOPE_PLACEHOLDER}.prom), else each scope's metrics would replace the last one's"
            )
        return [path]
    return [Path(str(path).replace(SCOPE_PLACEHOLDER, run.name)) for run in runs]
