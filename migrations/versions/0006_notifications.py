"""Notifications: one row per webhook target of each run that changed something, written in the run's
merge transaction (a transactional outbox) and POSTed after it commits; a row stays pending
(`delivered_at` NULL) until its target takes it.

The descriptions are the model's (etl/models.py) as they were at this revision, copied here so that this
migration never changes; PostgreSQL, MySQL and MariaDB keep them as COMMENTs (as migration 0005 did for
the other tables). MySQL and MariaDB commit each DDL statement on its own: each step looks first
whether it is done, so an upgrade killed half-way finishes when run again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.sqltypes import BigId, JsonDocument, LongText, UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLE = "notifications"
DESCRIPTION = "the webhook notifications of the runs that changed something: one per run and target"
COLUMNS = {
    "id": "the notification's number; it is sent as `Idempotency-Key: katapult-etl-<id>`",
    "sync_run_id": "the run whose changes it tells of",
    "target_url": "the webhook it is for, without credentials (a user and password in the URL are never stored)",
    "payload": "the JSON it POSTs (sent as canonical JSON: sorted keys, no spaces)",
    "created_at": "when the run's merge wrote it, in the same transaction as the changes",
    "attempts": "POSTs sent so far, retries included",
    "last_attempt_at": "when the last POST was sent; NULL before the first",
    "last_error": (
        "why the last failed POST failed (`HTTP 503 Service Unavailable`, `connection refused`); NULL if none failed"
    ),
    "delivered_at": "when the target took it (a 2xx answer); NULL while it is pending",
}
INDEXES = {"ix_notifications_sync_run_id": ["sync_run_id"], "ix_notifications_delivered_at": ["delivered_at"]}


def upgrade() -> None:
    found = sa.inspect(op.get_bind())
    if not found.has_table(TABLE):
        op.create_table(
            TABLE,
            sa.Column("id", BigId, primary_key=True, autoincrement=True, comment=COLUMNS["id"]),
            sa.Column("sync_run_id", sa.BigInteger(), nullable=False, comment=COLUMNS["sync_run_id"]),
            sa.Column("target_url", LongText, nullable=False, comment=COLUMNS["target_url"]),
            sa.Column("payload", JsonDocument, nullable=False, comment=COLUMNS["payload"]),
            sa.Column("created_at", UtcDateTime(), nullable=False, comment=COLUMNS["created_at"]),
            sa.Column("attempts", sa.BigInteger(), nullable=False, comment=COLUMNS["attempts"]),
            sa.Column("last_attempt_at", UtcDateTime(), comment=COLUMNS["last_attempt_at"]),
            sa.Column("last_error", LongText, comment=COLUMNS["last_error"]),
            sa.Column("delivered_at", UtcDateTime(), comment=COLUMNS["delivered_at"]),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
            sa.ForeignKeyConstraint(
                ["sync_run_id"], ["sync_runs.id"], name=op.f("fk_notifications_sync_run_id_sync_runs")
            ),
            comment=DESCRIPTION,
        )
    existing = {index["name"] for index in found.get_indexes(TABLE)} if found.has_table(TABLE) else set()
    for name, columns in INDEXES.items():
        if name not in existing:
            op.create_index(op.f(name), TABLE, columns)


def downgrade() -> None:
    op.drop_table(TABLE)
