"""The configuration file (TOML): the database, the API, the sync options, and the scopes to sync.

Read only when named (`--config PATH` or KATAPULT_ETL_CONFIG), never found by itself. What the file may
hold is data, the tables below: each key and the kind of value it takes. A key the tables do not name,
a value of the wrong kind, two scopes of one name or a token written into the file is a usage error
(exit 2) naming the file, the scope and the key, found before anything runs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_ENV = "KATAPULT_ETL_CONFIG"


class Kind:
    """What a key's value must be; `describe()` says it in a message ("must be a whole number")."""

    def describe(self) -> str:
        raise NotImplementedError

    def accepts(self, value: object) -> bool:
        raise NotImplementedError


class _Text(Kind):
    def describe(self) -> str:
        return "a string"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)


class _Whole(Kind):
    def describe(self) -> str:
        return "a whole number"

    def accepts(self, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)


class _Number(Kind):
    def describe(self) -> str:
        return "a number"

    def accepts(self, value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Flag(Kind):
    def describe(self) -> str:
        return "true or false"

    def accepts(self, value: object) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Choice(Kind):
    values: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(f'"{value}"' for value in self.values)

    def accepts(self, value: object) -> bool:
        return value in self.values


@dataclass(frozen=True)
class ListOf(Kind):
    """An array of plain values, e.g. `ignore_keys = ["a", "b"]`."""

    item: Kind

    def describe(self) -> str:
        return f"a list, each {self.item.describe()}"

    def accepts(self, value: object) -> bool:
        return isinstance(value, list) and all(self.item.accepts(item) for item in value)


@dataclass(frozen=True)
class Table(Kind):
    """A table of known keys: `[sync]`, or an inline `{url = "…"}`."""

    keys: Mapping[str, Kind]

    def describe(self) -> str:
        return "a table"

    def accepts(self, value: object) -> bool:
        return isinstance(value, dict)


@dataclass(frozen=True)
class Tables(Kind):
    """An array of tables: `[[scopes]]`, or `notify = [{…}, {…}]`; each entry is named in messages by its
    `label` key when it has one."""

    keys: Mapping[str, Kind]
    label: str | None = None

    def describe(self) -> str:
        return "an array of tables"

    def accepts(self, value: object) -> bool:
        return isinstance(value, list) and all(isinstance(entry, dict) for entry in value)


TEXT, WHOLE, NUMBER, FLAG = _Text(), _Whole(), _Number(), _Flag()
IF_LOCKED = ("fail", "skip")

# Every option of `sync` a file may set, by its long name with underscores. Not here: the options that
# choose what to sync (--all, --scope, the organization, the token: the file's [[scopes]] say that),
# --api-url and --database-url (top-level keys), and --config itself. tests/test_configfile.py checks
# this against the parser, so that a new sync option is either here or named there as left out.
SYNC_KEYS: dict[str, Kind] = {
    "per_page": WHOLE,
    "concurrency": WHOLE,
    "max_attempts": WHOLE,
    "retry_budget": NUMBER,
    "connect_timeout": NUMBER,
    "read_timeout": NUMBER,
    "dry_run": FLAG,
    "allow_mass_removal": FLAG,
    "metrics_file": TEXT,
    "json": FLAG,
    "if_locked": Choice(IF_LOCKED),
    "pushgateway": TEXT,
    "ignore_keys": ListOf(TEXT),
}
SCOPE_KEYS: dict[str, Kind] = {
    "name": TEXT,
    "organization_id": TEXT,
    "organization_sub_domain": TEXT,
    "token_file": TEXT,
    "token_env": TEXT,
}
# A webhook of `notify = [{url = "…", secret_file = "…"}]`; not labelled by its URL in messages: a
# URL may carry credentials.
NOTIFY_KEYS: dict[str, Kind] = {"url": TEXT, "secret_file": TEXT}
FILE_KEYS: dict[str, Kind] = {
    "database_url": TEXT,
    "api_url": TEXT,
    "sync": Table(SYNC_KEYS),
    "scopes": Tables(SCOPE_KEYS, label="name"),
    "notify": Tables(NOTIFY_KEYS),
}
# Paths in the file are read relative to the file's folder, wherever the command runs.
PATH_KEYS = frozenset({"token_file", "metrics_file", "secret_file"})
# Keys that would put a token in the file: refused with a message that says why and what to write instead.
TOKEN_KEYS = frozenset({"token", "api_token", "api_key", "katapult_api_token", "katapult_api_key"})


@dataclass(frozen=True)
class ScopeEntry:
    """One [[scopes]] entry: which packages, and where its token comes from (none: the public API)."""

    name: str
    organization_id: str | None = None
    organization_sub_domain: str | None = None
    token_file: Path | None = None
    token_env: str | None = None


@dataclass(frozen=True)
class NotifyEntry:
    """One webhook of `notify`: its URL, and the file holding the secret that signs it (None: unsigned)."""

    url: str
    secret_file: Path | None = None


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    database_url: str | None
    api_url: str | None
    sync: Mapping[str, Any]
    scopes: tuple[ScopeEntry, ...]
    notify: tuple[NotifyEntry, ...] = ()

    def scope(self, name: str) -> ScopeEntry:
        for entry in self.scopes:
            if entry.name == name:
                return entry
        known = ", ".join(entry.name for entry in self.scopes) or "none"
        raise ConfigError(f"--scope {name}: {self.path} has no scope of that name (its scopes: {known})")

    def where(self, entry: ScopeEntry) -> str:
        """How messages name a scope of this file."""
        return f"{self.path}: scope '{entry.name}'"


def config_path(given: Path | None, environ: Mapping[str, str]) -> Path | None:
    """--config, else KATAPULT_ETL_CONFIG, else none: a file is never picked up without being named."""
    if given is not None:
        return given
    named = environ.get(CONFIG_ENV, "")
    return Path(named) if named else None


def load(path: Path) -> ConfigFile:
    """Read and check the whole file; ConfigError (exit 2) at the first thing wrong."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the configuration file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the configuration file {path} is not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    check_table(document, FILE_KEYS, f"{path}:", "")
    folder = path.parent
    sync = {key: _resolved(key, value, folder) for key, value in document.get("sync", {}).items()}
    return ConfigFile(
        path=path,
        database_url=document.get("database_url"),
        api_url=document.get("api_url"),
        sync=sync,
        scopes=_scopes(path, document.get("scopes", []), folder),
        notify=_webhooks(path, document.get("notify", []), folder),
    )


def check_table(table: Mapping[str, Any], keys: Mapping[str, Kind], where: str, prefix: str) -> None:
    """Every key known and of its kind, recursively; `where` names the file (and the scope), `prefix`
    the table the keys are in (`[sync] `)."""
    for key, value in table.items():
        if key in TOKEN_KEYS:
            raise ConfigError(
                f"{where} {prefix}key '{key}' is refused: a token is never written into the file (files get "
                "committed and copied); name a file holding it with token_file, or a variable with token_env"
            )
        kind = keys.get(key)
        if kind is None:
            raise ConfigError(f"{where} {prefix}unknown key '{key}' (known: {', '.join(keys)})")
        if not kind.accepts(value):
            raise ConfigError(f"{where} {prefix}key '{key}' must be {kind.describe()}, not {_kind_of(value)}")
        if isinstance(kind, Table):
            check_table(value, kind.keys, where, f"[{key}] ")
        elif isinstance(kind, Tables):
            for number, entry in enumerate(value, start=1):
                check_table(entry, kind.keys, f"{where} {_entry_name(key, kind, entry, number)}:", "")


def _entry_name(key: str, kind: Tables, entry: Mapping[str, Any], number: int) -> str:
    label = entry.get(kind.label) if kind.label else None
    if key == "scopes" and isinstance(label, str):
        return f"scope '{label}'"
    return f"{key}[{number}]" if not isinstance(label, str) else f"{key} '{label}'"


def _kind_of(value: object) -> str:
    """A value's TOML kind, for messages (never the value: it could be a secret)."""
    kinds = [
        (bool, "true or false"),
        (int, "a whole number"),
        (float, "a number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
    ]
    return next((name for kind, name in kinds if isinstance(value, kind)), "a date or time")


def _resolved(key: str, value: Any, folder: Path) -> Any:
    return folder / value if key in PATH_KEYS and isinstance(value, str) else value


def _scopes(path: Path, entries: list[dict[str, Any]], folder: Path) -> tuple[ScopeEntry, ...]:
    scopes: list[ScopeEntry] = []
    for number, entry in enumerate(entries, start=1):
        name = entry.get("name")
        if not name:
            raise ConfigError(f'{path}: scopes[{number}]: every scope needs a name (name = "…")')
        if any(scope.name == name for scope in scopes):
            raise ConfigError(f"{path}: scope '{name}' is named twice: scope names must be unique")
        scope = ScopeEntry(**{key: _resolved(key, value, folder) for key, value in entry.items()})
        _check_scope(f"{path}: scope '{name}':", scope)
        scopes.append(scope)
    return tuple(scopes)


def _webhooks(path: Path, entries: list[dict[str, Any]], folder: Path) -> tuple[NotifyEntry, ...]:
    webhooks: list[NotifyEntry] = []
    for number, entry in enumerate(entries, start=1):
        if "url" not in entry:
            raise ConfigError(f'{path}: notify[{number}]: every webhook needs a url (url = "https://…")')
        webhooks.append(NotifyEntry(**{key: _resolved(key, value, folder) for key, value in entry.items()}))
    return tuple(webhooks)


def _check_scope(where: str, scope: ScopeEntry) -> None:
    if scope.organization_id and scope.organization_sub_domain:
        raise ConfigError(f"{where} give organization_id or organization_sub_domain, not both")
    if scope.token_file and scope.token_env:
        raise ConfigError(f"{where} give token_file or token_env, not both")
    if (scope.organization_id or scope.organization_sub_domain) and not (scope.token_file or scope.token_env):
        raise ConfigError(f"{where} an organization's packages need a token: add token_file or token_env")
