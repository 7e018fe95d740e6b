"""The initial schema: groups, packages, their listings per scope, versions, and sync runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.sqltypes import BigId, JsonDocument, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def attribute_columns() -> list[sa.Column]:
    """The columns a package and each of its versions share, in the order the README lists them."""
    return [
        sa.Column("name", sa.String(255)),
        sa.Column("permalink", sa.String(255)),
        sa.Column("cpu_cores", sa.Integer()),
        sa.Column("ipv4_addresses", sa.Integer()),
        sa.Column("memory_in_gb", sa.Integer()),
        sa.Column("storage_in_gb", sa.Integer()),
        sa.Column("monthly_bandwidth_allowance_in_gb", sa.Integer()),
        sa.Column("privacy", sa.String(32)),
        sa.Column("use_dedicated_cpus", sa.Boolean()),
    ]


def icon_columns() -> list[sa.Column]:
    return [
        sa.Column("icon_url", sa.Text()),
        sa.Column("icon_file_name", sa.String(255)),
        sa.Column("icon_file_type", sa.String(255)),
        sa.Column("icon_file_size", sa.BigInteger()),
        sa.Column("icon_digest", sa.String(255)),
        sa.Column("content_hash", sa.String(64), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "package_groups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("first_seen_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("api", sa.String(16), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pages_fetched", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("packages_seen", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("restored", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer()),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'incomplete')", name="status"),
    )
    op.create_index(op.f("ix_sync_runs_scope_started_at"), "sync_runs", ["scope", "started_at"])
    op.create_table(
        "packages",
        sa.Column("id", sa.String(64), primary_key=True),
        *attribute_columns(),
        sa.Column("group_id", sa.String(64), sa.ForeignKey("package_groups.id")),
        *icon_columns(),
        sa.Column("first_seen_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("removed_at", UtcDateTime()),
    )
    op.create_index(op.f("ix_packages_group_id"), "packages", ["group_id"])
    op.create_table(
        "package_listings",
        sa.Column("package_id", sa.String(64), sa.ForeignKey("packages.id"), primary_key=True),
        sa.Column("scope", sa.String(255), primary_key=True),
        sa.Column("first_seen_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("unlisted_at", UtcDateTime()),
    )
    op.create_index(op.f("ix_package_listings_scope_unlisted_at"), "package_listings", ["scope", "unlisted_at"])
    op.create_table(
        "package_snapshots",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("package_id", sa.String(64), sa.ForeignKey("packages.id"), nullable=False),
        sa.Column("sync_run_id", sa.BigInteger(), sa.ForeignKey("sync_runs.id"), nullable=False),
        sa.Column("valid_from", UtcDateTime(), nullable=False),
        sa.Column("valid_to", UtcDateTime()),
        *attribute_columns(),
        sa.Column("group_id", sa.String(64)),
        sa.Column("group_name", sa.String(255)),
        *icon_columns(),
        sa.Column("raw", JsonDocument, nullable=False),
    )
    op.create_index(
        op.f("ix_package_snapshots_package_id_valid_from"), "package_snapshots", ["package_id", "valid_from"]
    )
    op.create_index(op.f("ix_package_snapshots_valid_from_valid_to"), "package_snapshots", ["valid_from", "valid_to"])
    op.create_index(op.f("ix_package_snapshots_sync_run_id"), "package_snapshots", ["sync_run_id"])
    if op.get_context().dialect.name in ("postgresql", "sqlite"):
        op.create_index(
            "uq_package_snapshots_current",
            "package_snapshots",
            ["package_id"],
            unique=True,
            postgresql_where=sa.text("valid_to IS NULL"),
            sqlite_where=sa.text("valid_to IS NULL"),
        )


def downgrade() -> None:
    for table in ("package_snapshots", "package_listings", "packages", "sync_runs", "package_groups"):
        op.drop_table(table)
