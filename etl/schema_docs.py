"""The schema described, from one source: the models' comments for the tables, a small registry here for
the views (which have no model). From it: dbt sources (YAML or JSON) and the README's schema tables.

The descriptions are Markdown (dbt renders them; psql shows the backticks as they are). Needs no
database: it describes the schema of this release.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Integer, String, Table, Text

from .models import Base
from .sqltypes import Key, UtcDateTime

FORMATS = ("markdown", "dbt", "json")
SOURCE = "katapult_etl"
# In the README's order: the package tables, then the runs, then their notifications.
TABLE_ORDER = ("package_groups", "packages", "package_snapshots", "package_listings", "sync_runs", "notifications")
# Runs are hourly (see the README's schedule): one missed run warns, a morning of them is an error.
FRESHNESS = {
    "warn_after": {"count": 2, "period": "hour"},
    "error_after": {"count": 6, "period": "hour"},
}
JSON_WORDS = "JSON (`jsonb` on PostgreSQL; on MariaDB `LONGTEXT` checked with `JSON_VALID`)"


@dataclass(frozen=True)
class ColumnDoc:
    name: str
    description: str
    tests: tuple[str, ...] = ()
    type: str = ""  # the README's words for a table's column ("key, nullable, → `packages.id`"); "" for a view's


@dataclass(frozen=True)
class RelationDoc:
    name: str
    kind: str  # "table" or "view"
    description: str
    columns: tuple[ColumnDoc, ...]


# -- the tables, from the models -------------------------------------------------------------------


def table_doc(table: Table) -> RelationDoc:
    single_key = len(table.primary_key.columns) == 1
    return RelationDoc(
        name=table.name,
        kind="table",
        description=table.comment or "",
        columns=tuple(
            ColumnDoc(column.name, column.comment or "", _key_tests(column, single_key), type_words(column))
            for column in table.columns
        ),
    )


def _key_tests(column: Column[Any], single_key: bool) -> tuple[str, ...]:
    """dbt's `unique` holds for a one-column primary key only; each part of a composite key is not null."""
    if not column.primary_key:
        return ()
    return ("unique", "not_null") if single_key else ("not_null",)


def type_words(column: Column[Any]) -> str:
    words = [_kind(column)]
    if column.primary_key:
        words.append("primary key")
    elif column.nullable:
        words.append("nullable")
    words.extend(f"→ `{key.target_fullname}`" for key in column.foreign_keys)
    return ", ".join(words)


def _kind(column: Column[Any]) -> str:
    kind = column.type
    if kind is Key:  # ids and the keys that refer to them; other VARCHAR(255) columns are text
        return "key"
    if isinstance(kind, UtcDateTime):
        return "timestamp"
    if isinstance(kind, Boolean):
        return "boolean"
    if isinstance(kind, JSON):
        return JSON_WORDS
    if isinstance(kind, Integer):
        return "integer"
    if isinstance(kind, (String, Text)):
        return "text"
    raise TypeError(f"{column.table.name}.{column.name}: no words for the type {kind!r}")


# -- the views, described here: they have no model -------------------------------------------------


def _like(table: str, *names: str) -> tuple[ColumnDoc, ...]:
    """View columns that are a table's columns, with its descriptions."""
    columns = Base.metadata.tables[table].columns
    return tuple(ColumnDoc(name, columns[name].comment or "") for name in names)


_PACKAGE_COLUMNS_BEFORE_GROUP = (
    "name",
    "permalink",
    "cpu_cores",
    "ipv4_addresses",
    "memory_in_gb",
    "storage_in_gb",
    "monthly_bandwidth_allowance_in_gb",
    "privacy",
    "use_dedicated_cpus",
    "group_id",
)
_PACKAGE_COLUMNS_AFTER_GROUP = (
    "icon_url",
    "icon_file_name",
    "icon_file_type",
    "icon_file_size",
    "icon_digest",
    "content_hash",
    "first_seen_at",
    "last_seen_at",
)


def view_docs() -> tuple[RelationDoc, ...]:
    """The views of migrations 0002 and 0004, their columns in the order the views have them."""
    return (
        RelationDoc(
            "current_packages",
            "view",
            "the packages listed now (`removed_at IS NULL`), with their group's name",
            (
                replace(_like("packages", "id")[0], tests=("unique", "not_null")),
                *_like("packages", *_PACKAGE_COLUMNS_BEFORE_GROUP),
                ColumnDoc("group_name", "the group's name (`package_groups.name`); NULL without a group"),
                *_like("packages", *_PACKAGE_COLUMNS_AFTER_GROUP),
            ),
        ),
        RelationDoc(
            "package_changes",
            "view",
            "one row per event in a package's history",
            (
                ColumnDoc("package_id", "the package", ("not_null",)),
                ColumnDoc(
                    "permalink",
                    "its permalink in the version the event opened (for a removal: the version it closed)",
                ),
                ColumnDoc("changed_at", "when the run merged the change", ("not_null",)),
                ColumnDoc(
                    "change_type",
                    "`created` (its first version), `updated` (a new version closed the one before), "
                    "`removed` (its version closed with none after it), `restored` (a new version after a removal)",
                    ("not_null",),
                ),
                ColumnDoc("sync_run_id", "the run that made the change"),
                ColumnDoc(
                    "changed_fields",
                    "the new version's `changed_fields` (see `package_snapshots`); NULL for `created` and `removed`",
                ),
            ),
        ),
        RelationDoc(
            "latest_sync_runs",
            "view",
            "the last run of each scope (by `id`, the order runs started in), with every column of `sync_runs`",
            tuple(
                # One row per scope: its id and its scope are each unique.
                replace(column, tests=("unique", "not_null") if column.name in ("id", "scope") else ())
                for column in _like("sync_runs", *Base.metadata.tables["sync_runs"].columns.keys())
            ),
        ),
    )


def relations() -> tuple[RelationDoc, ...]:
    """Every table (README order) and every view."""
    tables = Base.metadata.tables
    return (*(table_doc(tables[name]) for name in TABLE_ORDER), *view_docs())


# -- dbt sources -----------------------------------------------------------------------------------


def dbt_sources() -> dict[str, Any]:
    """dbt's sources.yml as data: one source, every table and view, keys tested, runs' freshness."""
    return {
        "version": 2,
        "sources": [
            {
                "name": SOURCE,
                "description": "Katapult's VM package catalogue and its change history, kept by katapult-etl",
                "tables": [_dbt_table(relation) for relation in relations()],
            }
        ],
    }


def _dbt_table(relation: RelationDoc) -> dict[str, Any]:
    table: dict[str, Any] = {"name": relation.name, "description": relation.description}
    if relation.name == "latest_sync_runs":
        table["loaded_at_field"] = "finished_at"
        table["freshness"] = FRESHNESS
    table["columns"] = [_dbt_column(column) for column in relation.columns]
    return table


def _dbt_column(column: ColumnDoc) -> dict[str, Any]:
    described: dict[str, Any] = {"name": column.name, "description": column.description}
    if column.tests:
        described["tests"] = list(column.tests)
    return described


def dbt_json() -> str:
    return json.dumps(dbt_sources(), indent=2, ensure_ascii=False) + "\n"


DBT_HEADER = (
    "# dbt sources for katapult-etl's schema: `katapult-etl schema --format dbt > models/katapult_etl.yml`.\n"
    "# dbt reads the tables from the schema named after the source unless you add `schema:` to it\n"
    "# (e.g. `schema: public` on PostgreSQL, or the database's name on MySQL and MariaDB).\n"
)


def dbt_yaml() -> str:
    return DBT_HEADER + "".join(yaml_lines(dbt_sources(), 0))


# YAML written by hand (no runtime dependency): block mappings and sequences, strings quoted as JSON
# (a JSON string is a YAML double-quoted scalar) unless they are plain words YAML reads as strings.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def yaml_scalar(value: object) -> str:
    if isinstance(value, bool) or value is None:
        raise TypeError(f"no YAML for {value!r}")  # not needed: keeps the writer small
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def yaml_lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                lines.append(f"{pad}{key}:\n")
                lines.extend(yaml_lines(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {yaml_scalar(item)}\n")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            nested = yaml_lines(item, indent + 2) if isinstance(item, (dict, list)) else None
            if nested:  # "- " takes the place of the first line's indent
                lines.append(f"{pad}- {nested[0][indent + 2 :]}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {yaml_scalar(item)}\n")
        return lines
    return [f"{pad}{yaml_scalar(value)}\n"]


# -- the README's tables ---------------------------------------------------------------------------


def markdown_table(relation: RelationDoc) -> str:
    """A table's columns with their types and meanings; a view's with their meanings."""
    if relation.kind == "table":
        rows = ["| column | type | meaning |", "| --- | --- | --- |"]
        rows += [f"| `{c.name}` | {c.type} | {c.description} |" for c in relation.columns]
    else:
        rows = ["| column | meaning |", "| --- | --- |"]
        rows += [f"| `{c.name}` | {c.description} |" for c in relation.columns]
    return "\n".join(rows) + "\n"


def readme_block(relation: RelationDoc) -> str:
    """What the README holds between `<!-- schema:NAME -->` and `<!-- /schema -->`: a table's heading and
    columns; a view's columns only (its prose and examples are written by hand)."""
    if relation.kind == "table":
        return f"### `{relation.name}`: {relation.description}\n\n{markdown_table(relation)}"
    return markdown_table(relation)


README_BLOCK = re.compile(r"<!-- schema:(?P<name>\w+) -->\n.*?<!-- /schema -->\n", re.DOTALL)


def readme_with_tables(readme: str) -> str:
    """The README with each generated block made again from the models and the views' registry."""
    known = {relation.name: relation for relation in relations()}

    def block(match: re.Match[str]) -> str:
        name = match["name"]
        return f"<!-- schema:{name} -->\n{readme_block(known[name])}\n<!-- /schema -->\n"

    return README_BLOCK.sub(block, readme)


def markdown() -> str:
    sections = [
        f"### `{relation.name}`{' (view)' if relation.kind == 'view' else ''}: {relation.description}\n\n"
        + markdown_table(relation)
        for relation in relations()
    ]
    return "\n".join(sections)


def render(output_format: str) -> str:
    if output_format == "dbt":
        return dbt_yaml()
    if output_format == "json":
        return dbt_json()
    return markdown()


if __name__ == "__main__":  # python -m etl.schema_docs README.md: regenerate its schema tables in place
    import sys
    from pathlib import Path

    path = Path(sys.argv[1])
    path.write_text(readme_with_tables(path.read_text()))
