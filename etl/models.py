"""The SQL schema, which is the product's interface: change it only together with a migration.

A test compares these models with what the migrations build, on every supported database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    MetaData,
    String,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import BigId, JsonDocument, Key, LongText, UtcDateTime

# Stable constraint names, so that migrations can name what they alter on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = ("running", "succeeded", "failed", "incomplete")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JsonDocument}


class PackageAttributes:
    """The columns a package and each of its versions share."""

    name: Mapped[str | None] = mapped_column(LongText)
    permalink: Mapped[str | None] = mapped_column(LongText)
    cpu_cores: Mapped[int | None] = mapped_column(BigInteger)
    ipv4_addresses: Mapped[int | None] = mapped_column(BigInteger)
    memory_in_gb: Mapped[int | None] = mapped_column(BigInteger)
    storage_in_gb: Mapped[int | None] = mapped_column(BigInteger)
    monthly_bandwidth_allowance_in_gb: Mapped[int | None] = mapped_column(BigInteger)
    privacy: Mapped[str | None] = mapped_column(LongText)
    use_dedicated_cpus: Mapped[bool | None] = mapped_column(Boolean)
    icon_url: Mapped[str | None] = mapped_column(LongText)
    icon_file_name: Mapped[str | None] = mapped_column(LongText)
    icon_file_type: Mapped[str | None] = mapped_column(LongText)
    icon_file_size: Mapped[int | None] = mapped_column(BigInteger)
    icon_digest: Mapped[str | None] = mapped_column(LongText)
    content_hash: Mapped[str] = mapped_column(String(64))


class PackageGroup(Base):
    __tablename__ = "package_groups"

    id: Mapped[str] = mapped_column(Key, primary_key=True)
    name: Mapped[str | None] = mapped_column(LongText)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class Package(PackageAttributes, Base):
    """The current state of every package ever listed; removed_at is NULL while it is listed."""

    __tablename__ = "packages"

    id: Mapped[str] = mapped_column(Key, primary_key=True)
    group_id: Mapped[str | None] = mapped_column(Key, ForeignKey("package_groups.id"), index=True)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]


class PackageListing(Base):
    """Which scope lists which package: a package is removed only when no scope lists it any more."""

    __tablename__ = "package_listings"

    package_id: Mapped[str] = mapped_column(Key, ForeignKey("packages.id"), primary_key=True)
    scope: Mapped[str] = mapped_column(Key, primary_key=True)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    unlisted_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "scope", "unlisted_at"),)


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(255))
    api: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    pages_fetched: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    retries: Mapped[int] = mapped_column(BigInteger, default=0)
    packages_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[int] = mapped_column(BigInteger, default=0)
    updated: Mapped[int] = mapped_column(BigInteger, default=0)
    restored: Mapped[int] = mapped_column(BigInteger, default=0)
    removed: Mapped[int] = mapped_column(BigInteger, default=0)
    unchanged: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(LongText)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'incomplete')", name="status"
        ),
        Index(None, "scope", "started_at"),
    )


class PackageSnapshot(PackageAttributes, Base):
    """One version of a package (type-2 history): valid from valid_from until valid_to (NULL: current)."""

    __tablename__ = "package_snapshots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    package_id: Mapped[str] = mapped_column(Key, ForeignKey("packages.id"))
    sync_run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("sync_runs.id"), index=True)
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    group_id: Mapped[str | None] = mapped_column(Key)
    group_name: Mapped[str | None] = mapped_column(LongText)
    raw: Mapped[dict[str, Any]]
    # The columns that differ from the package's previous version, comma-separated and sorted
    # ("raw" when only keys without a column changed); NULL for a package's first version.
    changed_fields: Mapped[str | None] = mapped_column(LongText)
    # The run that closed this version, by a newer version or by the package's removal.
    closed_by_sync_run_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("sync_runs.id"), index=True)

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
    )
