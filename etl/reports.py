"""What the history answers: the recent runs, one package's versions, what changed since when.

Each function takes a connection, only reads, and returns plain data; printing is etl/tables.py's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, func, select
from sqlalchemy.engine import Connection

from .errors import ConfigError, UnknownPackageError
from .models import Package, PackageSnapshot, SyncRun
from .records import ATTRIBUTE_COLUMNS
from .types import UtcDateTime

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
_AGE = re.compile(r"([0-9]+)([dhm])")
_AGE_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class RecentRuns:
    runs: list[dict[str, Any]]  # newest first, every column of sync_runs
    more: int  # older runs not in `runs`


@dataclass(frozen=True)
class FieldChange:
    field: str  # a column, or raw.KEY when only keys without a column changed
    old: Any
    new: Any


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
class PackageHistory:
    package_id: str
    name: str | None
    permalink: str | None
    removed_at: datetime | None
    changes: list[Change]


def recent_runs(connection: Connection, limit: int) -> RecentRuns:
    runs = SyncRun.__table__
    rows = connection.execute(
        select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
    ).mappings()
    shown = [dict(row) for row in rows]
    total = connection.execute(select(func.count()).select_from(runs)).scalar_one()
    return RecentRuns(shown, total - len(shown))


def changes_since(connection: Connection, since: datetime, scope: str | None = None) -> list[Change]:
    """Every change at or after `since`, oldest first; only those of runs of `scope` when given."""
    query = _changes().where(PACKAGE_CHANGES.c.changed_at >= since)
    if scope is not None:
        query = query.where(SyncRun.scope == scope)
    return [_change(row) for row in connection.execute(query).mappings()]


def package_history(connection: Connection, package: str) -> PackageHistory:
    """Every change of one package (by id or permalink), each with the values it changed, old and new."""
    package_id = find_package(connection, package)
    versions = PackageSnapshot.__table__
    query = (
        _changes()
        .add_columns(*(versions.c[name] for name in VERSION_COLUMNS), versions.c.raw)
        .outerjoin(
            versions,
            (versions.c.package_id == PACKAGE_CHANGES.c.package_id)
            & (versions.c.sync_run_id == PACKAGE_CHANGES.c.sync_run_id)
            & (PACKAGE_CHANGES.c.change_type != "removed"),
        )
        .where(PACKAGE_CHANGES.c.package_id == package_id)
    )
    changes, previous = [], None
    for row in connection.execute(query).mappings():
        if row["change_type"] == "removed":
            changes.append(_change(row))
            continue
        version = {name: row[name] for name in (*VERSION_COLUMNS, "raw")}
        changes.append(_change(row, _field_changes(previous, version), _without_raw(version)))
        previous = version
    packages = Package.__table__
    current = connection.execute(select(packages).where(packages.c.id == package_id)).mappings().one()
    return PackageHistory(package_id, current["name"], current["permalink"], current["removed_at"], changes)


def find_package(connection: Connection, package: str) -> str:
    """The id of the package with this id; else of the one listed, or not, or once, with this permalink."""
    packages, versions = Package.__table__, PackageSnapshot.__table__
    tiers = (
        select(packages.c.id).where(packages.c.id == package),
        select(packages.c.id).where(packages.c.permalink == package, packages.c.removed_at.is_(None)),
        select(packages.c.id).where(packages.c.permalink == package),
        select(versions.c.package_id).where(versions.c.permalink == package).distinct(),
    )
    for tier in tiers:
        ids = sorted(connection.execute(tier).scalars())
        if len(ids) == 1:
            return ids[0]
        if ids:
            raise UnknownPackageError(
                f"{package!r} is the permalink of {len(ids)} packages: give an id ({', '.join(ids)})"
            )
    raise UnknownPackageError(f"no package has the id or permalink {package!r}")


def parse_since(text: str, now: datetime) -> datetime:
    """--since: an age before `now` (7d, 24h, 30m), a date (UTC midnight) or a date and time (UTC if no offset)."""
    age = _AGE.fullmatch(text.strip())
    if age:
        return now - timedelta(**{_AGE_UNITS[age.group(2)]: int(age.group(1))})
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text.strip()):
            return datetime.combine(date.fromisoformat(text.strip()), datetime.min.time(), timezone.utc)
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: give an age (7d, 24h, 30m), a date (2026-03-01) or a UTC date and time "
            "(2026-03-01T12:00)"
        ) from None
    return instant.replace(tzinfo=timezone.utc) if instant.tzinfo is None else instant.astimezone(timezone.utc)


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


def _field_changes(previous: dict[str, Any] | None, version: dict[str, Any]) -> list[FieldChange]:
    """What differs from the previous version: its columns, or else the keys of `raw` that have none."""
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
