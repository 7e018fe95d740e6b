"""Column types that mean the same on every supported database; migrations use them too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from .records import MAX_KEY_LENGTH

# SQLite only auto-numbers a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Keys (package and group ids, listing keys, every foreign key to them): MySQL and MariaDB index no
# unbounded text, so they are as wide as the longest id records.py lets through, and no wider.
KEY_LENGTH = MAX_KEY_LENGTH
Key = String(KEY_LENGTH)

# Text as long as the API sends it: MySQL's TEXT stops at 64 KB, LONGTEXT at 4 GB.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

# JSONB on PostgreSQL so that `raw` can be queried with its operators and indexed.
JsonDocument = JSON().with_variant(postgresql.JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC instant: timestamptz on PostgreSQL, DATETIME(6) on MySQL, ISO text on SQLite.

    Python always sees an aware datetime in UTC; databases without time zones store UTC wall time.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: katapult-etl stores UTC instants only")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
