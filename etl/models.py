"""The SQL schema, which is the product's interface: change it only together with a migration.

A test compares these models with what the migrations build, on every supported database. Each table's
and column's `comment` is its one description: the databases' COMMENTs (migration 0005), the dbt
sources of `katapult-etl schema` and the README's schema tables are made from it (etl/schema_docs.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .results import RunStatus
from .sqltypes import BigId, JsonDocument, Key, LongText, UtcDateTime

# Stable constraint names, so that migrations can name what they alter on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every model is mapped to a Table (none to a join or a select), which SQLAlchemy types as any FromClause.
    __table__: ClassVar[Table]
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JsonDocument}


class PackageAttributes:
    """The columns a package and each of its versions share."""

    name: Mapped[str | None] = mapped_column(LongText, comment="the package's name, e.g. `ROCK-1`")
    permalink: Mapped[str | None] = mapped_column(LongText, comment="the package's permalink, e.g. `rock-1`")
    cpu_cores: Mapped[int | None] = mapped_column(BigInteger, comment="CPU cores")
    ipv4_addresses: Mapped[int | None] = mapped_column(BigInteger, comment="IPv4 addresses included")
    memory_in_gb: Mapped[int | None] = mapped_column(BigInteger, comment="memory, in GB")
    storage_in_gb: Mapped[int | None] = mapped_column(BigInteger, comment="storage, in GB")
    monthly_bandwidth_allowance_in_gb: Mapped[int | None] = mapped_column(
        BigInteger, comment="monthly bandwidth allowance, in GB; NULL: none stated (or an older API version)"
    )
    privacy: Mapped[str | None] = mapped_column(LongText, comment="`public` or `private`")
    use_dedicated_cpus: Mapped[bool | None] = mapped_column(
        Boolean, comment="whether the package's CPUs are dedicated; NULL where an older API version left it out"
    )
    icon_url: Mapped[str | None] = mapped_column(LongText, comment="the URL of the package's icon; NULL without one")
    icon_file_name: Mapped[str | None] = mapped_column(LongText, comment="the icon's file name; NULL without one")
    icon_file_type: Mapped[str | None] = mapped_column(LongText, comment="the icon's file type; NULL without one")
    icon_file_size: Mapped[int | None] = mapped_column(BigInteger, comment="the icon's file size; NULL without one")
    icon_digest: Mapped[str | None] = mapped_column(LongText, comment="the icon's digest; NULL without one")
    content_hash: Mapped[str] = mapped_column(
        String(64), comment="SHA-256 of the package's JSON as last received, canonical (sorted keys)"
    )


SCHEMA_CHANGES = (
    "keys (dotted paths) the run's packages had that none of the scope's current versions had (`+`), and keys "
    "they all had that none of the run's packages had (`-`), sorted, comma-separated: `+launch_price,-icon.token`; "
    "empty when none; NULL when not compared (a scope's first run, a run that failed or is running)"
)
# Shared by packages and package_snapshots.
GROUP_ID = "the package's group, a `package_groups.id`; NULL where the API sent no group"
SCOPE = "`public`, `organization[id]=…` or `organization[sub_domain]=…`"


class PackageGroup(Base):
    __tablename__ = "package_groups"
    __table_args__ = ({"comment": "the groups Katapult puts packages in"},)

    id: Mapped[str] = mapped_column(
        Key, primary_key=True, comment="Katapult's group id, e.g. `vmpkgrp_P5kCZvAtvXRC3sVl`"
    )
    name: Mapped[str | None] = mapped_column(LongText, comment="the group's name, e.g. `Standard vCPU`")
    first_seen_at: Mapped[datetime] = mapped_column(comment="when a run first saw the group")
    last_seen_at: Mapped[datetime] = mapped_column(comment="when a run last saw the group")


class Package(PackageAttributes, Base):
    """The current state of every package ever listed; removed_at is NULL while it is listed."""

    __tablename__ = "packages"
    __table_args__ = ({"comment": "the current state of every package ever listed"},)

    id: Mapped[str] = mapped_column(
        Key, primary_key=True, comment="Katapult's package id, e.g. `vmpkg_dhG25G5SX3HrA5j5`"
    )
    group_id: Mapped[str | None] = mapped_column(Key, ForeignKey("package_groups.id"), index=True, comment=GROUP_ID)
    first_seen_at: Mapped[datetime] = mapped_column(comment="when a run first saw the package")
    last_seen_at: Mapped[datetime] = mapped_column(comment="when a run last saw the package")
    removed_at: Mapped[datetime | None] = mapped_column(
        comment="NULL while the package is listed; set when no scope lists it any more"
    )


class PackageListing(Base):
    """Which scope lists which package: a package is removed only when no scope lists it any more."""

    __tablename__ = "package_listings"

    package_id: Mapped[str] = mapped_column(
        Key, ForeignKey("packages.id"), primary_key=True, comment="the package the scope lists"
    )
    scope: Mapped[str] = mapped_column(Key, primary_key=True, comment=SCOPE)
    first_seen_at: Mapped[datetime] = mapped_column(comment="when a run of this scope first saw the package")
    last_seen_at: Mapped[datetime] = mapped_column(comment="when a run of this scope last saw it")
    unlisted_at: Mapped[datetime | None] = mapped_column(
        comment="NULL while this scope lists it; set when both walks of a run of the scope (each complete) missed it"
    )

    __table_args__ = (Index(None, "scope", "unlisted_at"), {"comment": "which scope lists which package"})


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(
        BigId, primary_key=True, autoincrement=True, comment="the run's number, in the order runs started"
    )
    scope: Mapped[str] = mapped_column(Key, comment=SCOPE)
    api: Mapped[str] = mapped_column(String(16), comment="`core` (with a token) or `public`")
    started_at: Mapped[datetime] = mapped_column(comment="when the run started")
    finished_at: Mapped[datetime | None] = mapped_column(comment="when the run finished; NULL while running")
    status: Mapped[str] = mapped_column(String(16), comment="`running`, `succeeded`, `failed` or `incomplete`")
    pages_fetched: Mapped[int] = mapped_column(
        BigInteger,
        default=0,
        comment="pages walked (by every walk of the run: a repeated walk and a confirming walk count too)",
    )
    requests: Mapped[int] = mapped_column(BigInteger, default=0, comment="HTTP requests made, retries included")
    retries: Mapped[int] = mapped_column(BigInteger, default=0, comment="requests that were retried")
    packages_seen: Mapped[int] = mapped_column(BigInteger, default=0, comment="distinct packages the walk saw")
    created: Mapped[int] = mapped_column(BigInteger, default=0, comment="packages the run created")
    updated: Mapped[int] = mapped_column(BigInteger, default=0, comment="packages the run gave a new version")
    restored: Mapped[int] = mapped_column(
        BigInteger, default=0, comment="packages the run restored (came back after a removal)"
    )
    removed: Mapped[int] = mapped_column(BigInteger, default=0, comment="packages the run removed")
    unchanged: Mapped[int] = mapped_column(BigInteger, default=0, comment="packages the run saw unchanged")
    error: Mapped[str | None] = mapped_column(LongText, comment="why the run failed, or why it is `incomplete`")
    host: Mapped[str | None] = mapped_column(String(255), comment="the host the run ran on")
    pid: Mapped[int | None] = mapped_column(BigInteger, comment="the process id the run ran as")
    schema_changes: Mapped[str | None] = mapped_column(
        LongText,
        comment=SCHEMA_CHANGES,
    )

    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(status.value) for status in RunStatus)})", name="status"),
        Index(None, "scope", "started_at"),
        {"comment": "one row per run"},
    )


class Notification(Base):
    """A run's news for one webhook, written in the run's merge transaction, POSTed after it commits."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(
        BigId,
        primary_key=True,
        autoincrement=True,
        comment="the notification's number; it is sent as `Idempotency-Key: katapult-etl-<id>`",
    )
    sync_run_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("sync_runs.id"), index=True, comment="the run whose changes it tells of"
    )
    target_url: Mapped[str] = mapped_column(
        LongText,
        comment="the webhook it is for, without credentials (a user and password in the URL are never stored)",
    )
    payload: Mapped[dict[str, Any]] = mapped_column(
        comment="the JSON it POSTs (sent as canonical JSON: sorted keys, no spaces)"
    )
    created_at: Mapped[datetime] = mapped_column(
        comment="when the run's merge wrote it, in the same transaction as the changes"
    )
    attempts: Mapped[int] = mapped_column(BigInteger, default=0, comment="POSTs sent so far, retries included")
    last_attempt_at: Mapped[datetime | None] = mapped_column(
        comment="when the last POST was sent; NULL before the first"
    )
    last_error: Mapped[str | None] = mapped_column(
        LongText,
        comment=(
            "why the last failed POST failed (`HTTP 503 Service Unavailable`, `connection refused`); "
            "NULL if none failed"
        ),
    )
    delivered_at: Mapped[datetime | None] = mapped_column(
        index=True, comment="when the target took it (a 2xx answer); NULL while it is pending"
    )

    __table_args__ = (
        {"comment": "the webhook notifications of the runs that changed something: one per run and target"},
    )


class PackageSnapshot(PackageAttributes, Base):
    """One version of a package (type-2 history): valid from valid_from until valid_to (NULL: current)."""

    __tablename__ = "package_snapshots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True, comment="the version's number")
    package_id: Mapped[str] = mapped_column(Key, ForeignKey("packages.id"), comment="the package this is a version of")
    sync_run_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("sync_runs.id"), index=True, comment="the run that saw this version first"
    )
    valid_from: Mapped[datetime] = mapped_column(comment="from when this version was the package's content")
    valid_to: Mapped[datetime | None] = mapped_column(comment="until when; NULL for the current version")
    group_id: Mapped[str | None] = mapped_column(Key, comment=GROUP_ID)
    group_name: Mapped[str | None] = mapped_column(LongText, comment="the group's name as this version saw it")
    raw: Mapped[dict[str, Any]] = mapped_column(
        comment=(
            "the package's JSON as last received while this version was current, unknown keys included "
            "(a change only of keys given to `--ignore-key` updates it, and `content_hash`, in place)"
        )
    )
    changed_fields: Mapped[str | None] = mapped_column(
        LongText,
        comment=(
            "the columns that differ from the package's previous version, sorted and comma-separated "
            "(`cpu_cores,memory_in_gb`); `raw` when only keys without a column changed; empty for a package "
            "restored as it was removed; NULL for a package's first version"
        ),
    )
    closed_by_sync_run_id: Mapped[int | None] = mapped_column(
        BigInteger,
        ForeignKey("sync_runs.id"),
        index=True,
        comment=(
            "the run that closed this version, by a newer version or by the package's removal; NULL while current"
        ),
    )

    __table_args__ = (
        Index(None, "package_id", "valid_from"),
        Index(None, "valid_from", "valid_to"),
        # At most one current version per package, where the database can say so.
        Index(
            "uq_package_snapshots_current",
            "package_id",
            unique=True,
            postgresql_where=text("valid_to IS NULL"),
            sqlite_where=text("valid_to IS NULL"),
        ),
        {"comment": "the change history, as versions (slowly changing dimension, type 2)"},
    )
