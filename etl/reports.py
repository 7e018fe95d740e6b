"""What the history answers: the recent runs, the catalogue at a time, one package's versions, what changed.

Each function takes a connection, only reads, and returns plain data; printing is etl/tables.py's.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    MetaData,
    String,
    Table,
    Text,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.engine import Connection

from .errors import ConfigError, UnknownPackageError
from .models import Package, PackageListing, PackageSnapshot, SyncRun
from .records import ATTRIBUTE_COLUMNS
from .results import CHANGE_TYPES, ChangeType, FieldChange, RunStatus
from .sqltypes import UtcDateTime

# The views are made by migration 0002 and are not part of the models, which migrations are compared with.
_views = MetaData()
PACKAGE_CHANGES = Table(
    "package_changes",
    _views,
    Column("package_id", String),
    Column("permalink", String),
    Column("changed_at", UtcDateTime()),
    Column("change_type", String),
    Column("sync_run_id", BigInteger),
    Column("changed_fields", Text),
)
VERSION_COLUMNS = (*ATTRIBUTE_COLUMNS, "content_hash", "valid_from", "valid_to")
# What `packages` gives of each package, in this order in JSON and CSV: the version's own columns
# (id and valid_from aside), between id and valid_from; removed_at is when its last version ended.
CATALOGUE_COLUMNS = (
    "id",
    "name",
    "permalink",
    "cpu_cores",
    "memory_in_gb",
    "storage_in_gb",
    "monthly_bandwidth_allowance_in_gb",
    "ipv4_addresses",
    "use_dedicated_cpus",
    "privacy",
    "group_id",
    "group_name",
    "valid_from",
    "removed_at",
)
LAST_RUN = "last-run"
# The changes a feed entry lists with their values; the rest of the run's are counted in its title.
FEED_CHANGES_PER_RUN = 100
# What `scopes` gives of each scope, in this order in JSON and CSV.
SCOPE_COLUMNS = (
    "scope",
    "listed",
    "last_run_id",
    "last_run_status",
    "last_run_finished_at",
    "last_success_run_id",
    "last_success_finished_at",
)
_AGE = re.compile(r"([0-9]+)([wdhm])")
_AGE_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class RecentRuns:
    runs: list[dict[str, Any]]  # newest first, every column of sync_runs
    more: int  # older runs not in `runs`


@dataclass(frozen=True)
class Change:
    """One row of package_changes, with its run's scope; history adds the values that changed."""

    package_id: str
    permalink: str | None
    changed_at: datetime
    change_type: str
    sync_run_id: int | None
    scope: str | None
    changed_fields: list[str] | None
    field_changes: tuple[FieldChange, ...] = ()
    version: dict[str, Any] | None = None  # the version this change opened; None for a removal


@dataclass(frozen=True)
class ChangeFilter:
    """Which changes `changes` shows: at or after `since`, or those of the runs `run_ids`; of `scope`'s runs."""

    since: datetime | None = None
    run_ids: tuple[int, ...] | None = None
    scope: str | None = None
    types: tuple[str, ...] = CHANGE_TYPES


@dataclass(frozen=True)
class Catalogue:
    """`packages`: the packages listed (or removed) at `at` (None: now), of `scope` when given."""

    packages: list[dict[str, Any]]  # CATALOGUE_COLUMNS each, in name order
    at: datetime | None
    scope: str | None
    removed: bool
    columns: tuple[str, ...] = field(default=CATALOGUE_COLUMNS)


@dataclass(frozen=True)
class PackageHistory:
    package_id: str
    name: str | None
    permalink: str | None
    removed_at: datetime | None
    changes: list[Change]


@dataclass(frozen=True)
class RunChanges:
    """One run's changes, as a feed entry tells them: the first FEED_CHANGES_PER_RUN with their values."""

    run_id: int
    scope: str
    started_at: datetime
    finished_at: datetime
    counts: dict[str, int]  # of every change of the run the filter kept, by change type
    changes: list[Change]  # oldest first, each with field_changes (none for a creation or a removal)


@dataclass(frozen=True)
class ChangeFeed:
    """`changes --format atom`: the runs that changed something, newest first.

    `origin` is the start of the database's first run: the database's identity in the feed's ids, the
    same for as long as the database keeps its history (None: no run yet). `updated` is the newest run's
    end (of `wanted.scope`), whether it changed anything or not."""

    wanted: ChangeFilter
    runs: list[RunChanges]
    origin: datetime | None
    updated: datetime | None


def recent_runs(connection: Connection, limit: int | None) -> RecentRuns:
    """The newest `limit` runs (None: all of them), newest first."""
    runs = SyncRun.__table__
    rows = connection.execute(select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)).mappings()
    shown = [dict(row) for row in rows]
    total = connection.execute(select(func.count()).select_from(runs)).scalar_one()
    return RecentRuns(shown, total - len(shown))


def known_scopes(connection: Connection) -> list[str]:
    """The scopes this database has runs of, sorted."""
    return sorted(connection.execute(select(SyncRun.scope).distinct()).scalars())


def scope_names(connection: Connection) -> list[str]:
    """Every scope this database knows, sorted: those it has runs of, and those with listings (whose runs
    may have been deleted)."""
    listed = connection.execute(select(PackageListing.scope).distinct()).scalars()
    return sorted({*known_scopes(connection), *listed})


def scope_states(connection: Connection) -> list[dict[str, Any]]:
    """`scopes`: each scope the database knows (SCOPE_COLUMNS), in name order: how many packages it lists
    now, its last run and its last succeeded run (by id: ids grow with start)."""
    counts = connection.execute(
        select(PackageListing.scope, func.count())
        .where(PackageListing.unlisted_at.is_(None))
        .group_by(PackageListing.scope)
    )
    listed: dict[str, int] = {scope: count for scope, count in counts}
    last = _newest_run_of_each_scope(connection, succeeded=False)
    success = _newest_run_of_each_scope(connection, succeeded=True)
    states = []
    for scope in scope_names(connection):
        run, won = last.get(scope, {}), success.get(scope, {})
        states.append(
            {
                "scope": scope,
                "listed": listed.get(scope, 0),
                "last_run_id": run.get("id"),
                "last_run_status": run.get("status"),
                "last_run_finished_at": run.get("finished_at"),
                "last_success_run_id": won.get("id"),
                "last_success_finished_at": won.get("finished_at"),
            }
        )
    return states


def _newest_run_of_each_scope(connection: Connection, *, succeeded: bool) -> dict[str, dict[str, Any]]:
    """Scope -> its newest run (of those that succeeded, when `succeeded`): id, status, finished_at."""
    runs = SyncRun.__table__
    newest = select(func.max(runs.c.id)).group_by(runs.c.scope)
    if succeeded:
        newest = newest.where(runs.c.status == RunStatus.SUCCEEDED)
    rows = connection.execute(
        select(runs.c.scope, runs.c.id, runs.c.status, runs.c.finished_at).where(runs.c.id.in_(newest))
    ).mappings()
    return {row["scope"]: dict(row) for row in rows}


def check_scope(connection: Connection, scope: str | None) -> None:
    """A --scope no run ever had is a typo, not an empty answer: a usage error naming the known ones."""
    if scope is None:
        return
    scopes = known_scopes(connection)
    if scope not in scopes:
        known = f"it knows {', '.join(scopes)}" if scopes else "it has no runs yet"
        raise ConfigError(f"--scope {scope!r}: no run in this database had that scope; {known}")


def last_succeeded_runs(connection: Connection, scope: str | None) -> tuple[int, ...]:
    """The newest succeeded run of each scope (of `scope` only, when given), by id: ids grow with start."""
    query = select(func.max(SyncRun.id)).where(SyncRun.status == RunStatus.SUCCEEDED).group_by(SyncRun.scope)
    if scope is not None:
        query = query.where(SyncRun.scope == scope)
    return tuple(sorted(connection.execute(query).scalars()))


def find_changes(connection: Connection, wanted: ChangeFilter) -> list[Change]:
    """The changes `wanted` asks for, oldest first."""
    query = _changes().where(PACKAGE_CHANGES.c.change_type.in_(wanted.types))
    if wanted.since is not None:
        query = query.where(PACKAGE_CHANGES.c.changed_at >= wanted.since)
    if wanted.run_ids is not None:
        query = query.where(PACKAGE_CHANGES.c.sync_run_id.in_(wanted.run_ids))
    if wanted.scope is not None:
        query = query.where(SyncRun.scope == wanted.scope)
    return [_change(row) for row in connection.execute(query).mappings()]


def catalogue(
    connection: Connection, at: datetime | None = None, scope: str | None = None, removed: bool = False
) -> Catalogue:
    """The packages listed at `at` (None: now), read from the versions; or, with `removed`, those removed by then.

    A package is listed at T when one of its versions is valid at T; it is removed at T when its newest
    version that began by T had ended by T. With `scope`, only the packages that scope's listing held at T
    (listed: first seen by T and not unlisted by T; removed: first seen by T).
    """
    versions = PackageSnapshot.__table__
    query = select(
        *(versions.c[name] for name in CATALOGUE_COLUMNS[1:-2]),  # name … group_name
        versions.c.package_id.label("id"),
        versions.c.valid_from,
        versions.c.valid_to.label("removed_at"),
    )
    query = query.where(_removed_by(versions, at) if removed else _valid_at(versions, at))
    if scope is not None:
        query = query.where(_listed_in(versions.c.package_id, scope, at, removed))
    rows = [dict(row) for row in connection.execute(query).mappings()]
    for row in rows:
        if not removed:  # a version valid at T may have ended since: it was not removed at T
            row["removed_at"] = None
    rows.sort(key=lambda row: (_natural(row["name"]), row["id"]))
    return Catalogue([{name: row[name] for name in CATALOGUE_COLUMNS} for row in rows], at, scope, removed)


def _valid_at(versions: Table, at: datetime | None) -> ColumnElement[bool]:
    if at is None:
        return versions.c.valid_to.is_(None)
    return (versions.c.valid_from <= at) & or_(versions.c.valid_to.is_(None), versions.c.valid_to > at)


def _removed_by(versions: Table, at: datetime | None) -> ColumnElement[bool]:
    later = versions.alias("later")
    newer: ColumnElement[bool] = later.c.valid_from > versions.c.valid_from
    ended: ColumnElement[bool] = versions.c.valid_to.is_not(None)
    if at is not None:
        newer = newer & (later.c.valid_from <= at)
        ended = ended & (versions.c.valid_to <= at)
    return ended & ~exists().where(later.c.package_id == versions.c.package_id, newer)


def _listed_in(package_id: Any, scope: str, at: datetime | None, removed: bool) -> Any:
    listings = PackageListing.__table__
    held = (listings.c.package_id == package_id) & (listings.c.scope == scope)
    if at is not None:
        held = held & (listings.c.first_seen_at <= at)
    if not removed:
        held = held & (
            listings.c.unlisted_at.is_(None)
            if at is None
            else or_(listings.c.unlisted_at.is_(None), listings.c.unlisted_at > at)
        )
    return exists().where(held)


def _natural(name: str | None) -> list[Any]:
    """ROCK-3 before ROCK-12: digits compare as numbers, letters without case."""
    parts = re.split(r"([0-9]+)", (name or "").casefold())
    return [int(part) if number % 2 else part for number, part in enumerate(parts)]


def package_history(connection: Connection, package: str) -> PackageHistory:
    """Every change of one package (by id, permalink or name), each with the values it changed, old and new."""
    package_id = find_package(connection, package)
    versions = PackageSnapshot.__table__
    query = (
        _changes()
        .add_columns(*(versions.c[name] for name in VERSION_COLUMNS), versions.c.raw)
        .outerjoin(
            versions,
            (versions.c.package_id == PACKAGE_CHANGES.c.package_id)
            & (versions.c.sync_run_id == PACKAGE_CHANGES.c.sync_run_id)
            & (PACKAGE_CHANGES.c.change_type != ChangeType.REMOVED),
        )
        .where(PACKAGE_CHANGES.c.package_id == package_id)
    )
    changes, previous = [], None
    for row in connection.execute(query).mappings():
        if row["change_type"] == ChangeType.REMOVED:
            changes.append(_change(row))
            continue
        version = {name: row[name] for name in (*VERSION_COLUMNS, "raw")}
        changes.append(_change(row, field_changes(previous, version), _without_raw(version)))
        previous = version
    packages = Package.__table__
    current = connection.execute(select(packages).where(packages.c.id == package_id)).mappings().one()
    return PackageHistory(package_id, current["name"], current["permalink"], current["removed_at"], changes)


def find_package(connection: Connection, package: str) -> str:
    """The id of the package this id, permalink or name (any case) means; the first tier that matches wins.

    The exact id; then a listed package's permalink, then its name; then any package's permalink, name
    or id (removed ones too), in any case; then a permalink or name one of its versions once had.
    """
    packages, versions = Package.__table__, PackageSnapshot.__table__
    wanted = func.lower(literal(package, String()))  # the database's lower() on both sides: one notion of case
    listed = packages.c.removed_at.is_(None)
    tiers = (
        ("id", select(packages.c.id).where(packages.c.id == package)),
        ("permalink", select(packages.c.id).where(func.lower(packages.c.permalink) == wanted, listed)),
        ("name", select(packages.c.id).where(func.lower(packages.c.name) == wanted, listed)),
        ("permalink", select(packages.c.id).where(func.lower(packages.c.permalink) == wanted)),
        ("name", select(packages.c.id).where(func.lower(packages.c.name) == wanted)),
        ("id", select(packages.c.id).where(func.lower(packages.c.id) == wanted)),
        (
            "former permalink or name",
            select(versions.c.package_id)
            .where(or_(func.lower(versions.c.permalink) == wanted, func.lower(versions.c.name) == wanted))
            .distinct(),
        ),
    )
    for what, tier in tiers:
        ids: list[str] = sorted(connection.execute(tier).scalars())
        if len(ids) == 1:
            return ids[0]
        if ids:
            raise UnknownPackageError(
                f"{package!r} is the {what} of {len(ids)} packages: give an id ({', '.join(ids)})"
            )
    nearest = _suggestions(connection, package)
    raise UnknownPackageError(f"no package has the id, permalink or name {package!r}{nearest}")


def _suggestions(connection: Connection, package: str) -> str:
    """'; nearest: rock-12, rock-1, rock-3' from the permalinks, names and ids known (difflib), or ''."""
    packages = Package.__table__
    known: dict[str, str] = {}
    rows = connection.execute(select(packages.c.permalink, packages.c.name, packages.c.id)).all()
    for column in range(3):  # permalinks first: when a name and a permalink differ only in case, say the permalink
        for row in rows:
            if row[column]:
                known.setdefault(row[column].casefold(), row[column])
    nearest = difflib.get_close_matches(package.casefold(), list(known), n=3)
    return f"; nearest: {', '.join(known[key] for key in nearest)}" if nearest else ""


def parse_since(text: str, now: datetime, option: str = "--since") -> datetime:
    """An age before `now` (2w, 7d, 24h, 30m), a date (UTC midnight) or a date and time (UTC if no offset)."""
    age = _AGE.fullmatch(text.strip())
    if age:
        return now - timedelta(**{_AGE_UNITS[age.group(2)]: int(age.group(1))})
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text.strip()):
            return datetime.combine(date.fromisoformat(text.strip()), datetime.min.time(), UTC)
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        kinds = ["an age (2w, 7d, 24h, 30m)", "a date (2026-03-01)", "a UTC date and time (2026-03-01T12:00)"]
        if option == "--since":
            kinds.append(LAST_RUN)
        raise ConfigError(f"{option} {text!r}: give {', '.join(kinds[:-1])} or {kinds[-1]}") from None
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def change_feed(connection: Connection, wanted: ChangeFilter) -> ChangeFeed:
    """The changes `wanted` asks for, one RunChanges per run, newest first."""
    by_run: dict[int, list[Change]] = {}
    for change in find_changes(connection, wanted):
        if change.sync_run_id is not None:  # a version older than migration 0002's backfill had no run
            by_run.setdefault(change.sync_run_id, []).append(change)
    runs = SyncRun.__table__
    found = connection.execute(
        select(runs.c.id, runs.c.scope, runs.c.started_at, runs.c.finished_at).where(runs.c.id.in_(list(by_run)))
    ).all()
    entries = [
        RunChanges(
            run_id,
            scope,
            started_at,
            finished_at or started_at,
            _counts_by_type(by_run[run_id]),
            _with_values(connection, run_id, by_run[run_id][:FEED_CHANGES_PER_RUN]),
        )
        for run_id, scope, started_at, finished_at in found
    ]
    entries.sort(key=lambda entry: (entry.finished_at, entry.run_id), reverse=True)
    origin = connection.execute(select(runs.c.started_at).order_by(runs.c.id).limit(1)).scalar()
    newest = select(func.max(runs.c.finished_at))
    if wanted.scope is not None:
        newest = newest.where(runs.c.scope == wanted.scope)
    return ChangeFeed(wanted, entries, origin, connection.execute(newest).scalar())


def _counts_by_type(changes: list[Change]) -> dict[str, int]:
    return {kind: count for kind in CHANGE_TYPES if (count := sum(c.change_type == kind for c in changes))}


def _with_values(connection: Connection, run_id: int, changes: list[Change]) -> list[Change]:
    """The changes of one run, each update and restoration with its fields' values, old and new: one
    query for the versions the run opened and the ones before them."""
    opened = [
        change.package_id for change in changes if change.change_type in (ChangeType.UPDATED, ChangeType.RESTORED)
    ]
    if not opened:
        return changes
    version, before, between = (PackageSnapshot.__table__.alias(name) for name in ("version", "before", "between"))
    columns = (*VERSION_COLUMNS, "raw")
    latest_before = ~exists().where(
        between.c.package_id == version.c.package_id,
        between.c.valid_from < version.c.valid_from,
        between.c.valid_from > before.c.valid_from,
    )
    rows = connection.execute(
        select(version.c.package_id, *(version.c[name] for name in columns), *(before.c[name] for name in columns))
        .select_from(
            version.join(
                before,
                (before.c.package_id == version.c.package_id) & (before.c.valid_from < version.c.valid_from),
            )
        )
        .where(version.c.sync_run_id == run_id, version.c.package_id.in_(opened), latest_before)
    ).all()
    values = {
        row[0]: field_changes(
            dict(zip(columns, row[len(columns) + 1 :], strict=True)),
            dict(zip(columns, row[1 : len(columns) + 1], strict=True)),
        )
        for row in rows
    }
    return [replace(change, field_changes=tuple(values.get(change.package_id, ()))) for change in changes]


def _changes() -> Any:
    changes = PACKAGE_CHANGES
    return (
        select(changes, SyncRun.scope)
        .select_from(changes)
        .outerjoin(SyncRun, SyncRun.id == changes.c.sync_run_id)
        .order_by(changes.c.changed_at, changes.c.permalink, changes.c.package_id)
    )


def _change(row: Any, field_changes: Sequence[FieldChange] = (), version: dict[str, Any] | None = None) -> Change:
    fields = row["changed_fields"]
    return Change(
        package_id=row["package_id"],
        permalink=row["permalink"],
        changed_at=row["changed_at"],
        change_type=row["change_type"],
        sync_run_id=row["sync_run_id"],
        scope=row["scope"],
        changed_fields=None if fields is None else [name for name in fields.split(",") if name],
        field_changes=tuple(field_changes),
        version=version,
    )


def field_changes(previous: dict[str, Any] | None, version: dict[str, Any]) -> list[FieldChange]:
    """What differs from the previous version (each a dict of VERSION_COLUMNS and raw): its columns, or
    else the keys of `raw` that have none. Used by `history` and by the notifications' payload."""
    if previous is None:
        return []
    changed = [
        FieldChange(name, previous[name], version[name])
        for name in sorted(ATTRIBUTE_COLUMNS)
        if previous[name] != version[name]
    ]
    if changed or previous["content_hash"] == version["content_hash"]:
        return changed
    old, new = previous["raw"], version["raw"]
    return [
        FieldChange(f"raw.{key}", old.get(key), new.get(key))
        for key in sorted(old.keys() | new.keys())
        if key not in old or key not in new or old[key] != new[key]
    ]


def _without_raw(version: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in version.items() if name != "raw"}
