"""The notifications table, as a transactional outbox: written in a run's merge transaction, read and
marked by whoever delivers it. Takes a session or a connection; never commits.

A run's notification is written with the changes it tells of, so a change never lands without its
notification and a notification never tells of a change that rolled back. Delivery happens after the
commit (etl/delivery.py), and a notification stays pending until its target takes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from .models import Notification, PackageSnapshot, SyncRun
from .payload import PackageChange
from .reports import VERSION_COLUMNS, field_changes
from .results import ChangeType, NotificationBacklog

# What `notifications` lists of each row, in this order (the payload only in JSON, JSON lines and CSV).
LISTED_COLUMNS = (
    "id",
    "sync_run_id",
    "scope",
    "target_url",
    "created_at",
    "attempts",
    "last_attempt_at",
    "last_error",
    "delivered_at",
    "payload",
)


@dataclass(frozen=True)
class Pending:
    """A notification not yet delivered, as its deliverer needs it."""

    id: int
    target_url: str
    attempts: int


# -- in the merge's transaction ----------------------------------------------------------------------


def add_notifications(
    session: Session, run_id: int, target_urls: Sequence[str], payload: dict[str, Any], at: datetime
) -> None:
    """One pending notification of run `run_id` per target (its URL without credentials)."""
    session.execute(
        insert(Notification),
        [
            {"sync_run_id": run_id, "target_url": url, "payload": payload, "created_at": at, "attempts": 0}
            for url in target_urls
        ],
    )


def run_changes(session: Session, run_id: int, limit: int) -> list[PackageChange]:
    """The first `limit` packages run `run_id` created, updated, restored or removed (in permalink
    order, as `katapult-etl changes` lists them), each with the fields it changed, old and new.

    Read in the run's own transaction: the versions it opened (and their predecessors), and the ones it
    closed with none after them (its removals).
    """
    opened = _opened_versions(session, run_id, limit)
    removed = _removed_versions(session, run_id, limit)
    previous = _previous_versions(session, [version["package_id"] for version in opened], run_id)
    changes = [_opened_change(version, previous.get(version["package_id"])) for version in opened]
    changes += [PackageChange(v["package_id"], v["name"], v["permalink"], ChangeType.REMOVED) for v in removed]
    changes.sort(key=lambda change: (change.permalink is None, change.permalink or "", change.package_id))
    return changes[:limit]


def _version_columns() -> list[Any]:
    versions = PackageSnapshot.__table__
    return [versions.c.package_id, versions.c.sync_run_id, versions.c.raw, *(versions.c[n] for n in VERSION_COLUMNS)]


def _opened_versions(session: Session, run_id: int, limit: int) -> list[dict[str, Any]]:
    versions = PackageSnapshot.__table__
    query = (
        select(*_version_columns())
        .where(versions.c.sync_run_id == run_id)
        .order_by(versions.c.permalink, versions.c.package_id)
        .limit(limit)
    )
    return [dict(row) for row in session.execute(query).mappings()]


def _removed_versions(session: Session, run_id: int, limit: int) -> list[dict[str, Any]]:
    versions = PackageSnapshot.__table__
    newer = versions.alias("newer")
    query = (
        select(versions.c.package_id, versions.c.name, versions.c.permalink)
        .where(
            versions.c.closed_by_sync_run_id == run_id,
            ~exists().where(newer.c.package_id == versions.c.package_id, newer.c.sync_run_id == run_id),
        )
        .order_by(versions.c.permalink, versions.c.package_id)
        .limit(limit)
    )
    return [dict(row) for row in session.execute(query).mappings()]


def _previous_versions(session: Session, package_ids: list[str], run_id: int) -> dict[str, dict[str, Any]]:
    """The version each of these packages had before run `run_id` opened a new one: its newest other version."""
    if not package_ids:
        return {}
    versions = PackageSnapshot.__table__
    newest = (
        select(versions.c.package_id, func.max(versions.c.valid_from).label("valid_from"))
        .where(versions.c.package_id.in_(package_ids), versions.c.sync_run_id != run_id)
        .group_by(versions.c.package_id)
        .subquery("newest")
    )
    query = select(*_version_columns()).join(
        newest, and_(newest.c.package_id == versions.c.package_id, newest.c.valid_from == versions.c.valid_from)
    )
    return {row["package_id"]: dict(row) for row in session.execute(query).mappings()}


def _opened_change(version: dict[str, Any], previous: dict[str, Any] | None) -> PackageChange:
    if previous is None:
        kind = ChangeType.CREATED
    elif previous["valid_to"] == version["valid_from"]:
        kind = ChangeType.UPDATED  # it closed the version before: a new version, not a comeback
    else:
        kind = ChangeType.RESTORED
    fields = tuple(field_changes(previous, version))
    return PackageChange(version["package_id"], version["name"], version["permalink"], kind, fields)


# -- delivery ------------------------------------------------------------------------------------------


def pending(session: Session) -> list[Pending]:
    """Every notification not yet delivered, oldest first: the order they are delivered in."""
    query = (
        select(Notification.id, Notification.target_url, Notification.attempts)
        .where(Notification.delivered_at.is_(None))
        .order_by(Notification.id)
    )
    return [Pending(*row) for row in session.execute(query)]


def payload_of(session: Session, notification_id: int) -> dict[str, Any]:
    payload: dict[str, Any] = session.execute(
        select(Notification.payload).where(Notification.id == notification_id)
    ).scalar_one()
    return payload


def record_delivered(session: Session, notification_id: int, attempts: int, at: datetime) -> None:
    _record(session, notification_id, attempts, at, delivered_at=at)


def record_failed(session: Session, notification_id: int, attempts: int, at: datetime, error: str) -> None:
    _record(session, notification_id, attempts, at, last_error=error)


def _record(session: Session, notification_id: int, attempts: int, at: datetime, **values: Any) -> None:
    session.execute(
        update(Notification)
        .where(Notification.id == notification_id)
        .values(attempts=Notification.attempts + attempts, last_attempt_at=at, **values),
        execution_options={"synchronize_session": False},
    )


def backlog(session: Session) -> NotificationBacklog:
    count, oldest = session.execute(
        select(func.count(), func.min(Notification.created_at)).where(Notification.delivered_at.is_(None))
    ).one()
    return NotificationBacklog(count, oldest)


# -- katapult-etl notifications ------------------------------------------------------------------------


def notifications(connection: Connection, pending_only: bool) -> list[dict[str, Any]]:
    """Every notification (or every pending one), oldest first, with its run's scope."""
    table = Notification.__table__
    query = (
        select(table, SyncRun.scope)
        .select_from(table.outerjoin(SyncRun.__table__, SyncRun.id == table.c.sync_run_id))
        .order_by(table.c.id)
    )
    if pending_only:
        query = query.where(table.c.delivered_at.is_(None))
    return [{name: row[name] for name in LISTED_COLUMNS} for row in connection.execute(query).mappings()]
