"""Migration steps that look before they act, and keep the objects users made on our tables.

MySQL and MariaDB commit each DDL statement on its own: a migration killed half-way leaves its first
steps done and the database still at the previous revision, so the next upgrade runs the whole
migration again. Each step here checks whether it is done already and skips it if so.

SQLite changes a column's type only by rebuilding the table, and PostgreSQL refuses to change the type
of a column a view reads: `views_kept` and `sqlite_objects_kept` keep users' views and indexes across
such changes, with the definitions they had.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from alembic import op


def dialect_name() -> str:
    return op.get_context().dialect.name


def is_mysql() -> bool:
    return dialect_name() in ("mysql", "mariadb")


# -- MySQL and MariaDB: steps that check first ------------------------------------------------------


def foreign_key_exists(table: str, name: str) -> bool:
    return bool(
        op.get_bind()
        .execute(
            sa.text(
                "SELECT COUNT(*) FROM information_schema.table_constraints "
                "WHERE constraint_schema = DATABASE() AND table_name = :table "
                "AND constraint_name = :name AND constraint_type = 'FOREIGN KEY'"
            ),
            {"table": table, "name": name},
        )
        .scalar()
    )


def drop_foreign_key_if_present(table: str, name: str) -> None:
    if foreign_key_exists(table, name):
        op.drop_constraint(op.f(name), table, type_="foreignkey")


def create_foreign_key_if_missing(table: str, name: str, referred: str, column: str) -> None:
    if not foreign_key_exists(table, name):
        op.create_foreign_key(op.f(name), table, referred, [column], ["id"])


def table_collation(table: str) -> str | None:
    return (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name = :table"
            ),
            {"table": table},
        )
        .scalar()
    )


def column_facts(table: str) -> dict[str, tuple[str, int | None, str | None, bool]]:
    """Each column's (data type, character length, collation, nullable), as the server has it now."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT column_name, data_type, character_maximum_length, collation_name, is_nullable "
            "FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = :table"
        ),
        {"table": table},
    )
    return {
        name: (data_type.lower(), length, collation, nullable == "YES")
        for name, data_type, length, collation, nullable in rows
    }


# -- PostgreSQL: views that read columns whose type changes -----------------------------------------


@contextlib.contextmanager
def views_kept(tables: Iterable[str], ours: Iterable[str]) -> Iterator[None]:
    """Drop every view (plain or materialized) that reads `tables`, directly or through another view;
    recreate the users' ones afterwards with their definitions, in the order they were made.

    Our own views (`ours`) are dropped too; the migration recreates them from its own SQL inside the
    block. A user's grants and comments on a dropped view are not carried over.
    """
    bind = op.get_bind()
    views = bind.execute(
        sa.text(
            """
            WITH RECURSIVE readers(oid) AS (
                SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                WHERE d.refobjid = ANY(CAST(:tables AS regclass[])) AND r.ev_class <> d.refobjid
                UNION
                SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                JOIN readers ON d.refobjid = readers.oid WHERE r.ev_class <> d.refobjid
            )
            SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relname, c.relkind,
                   pg_get_viewdef(c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid IN (SELECT oid FROM readers) ORDER BY c.oid
            """
        ),
        {"tables": list(tables)},
    ).all()
    for qualified, _, kind, _ in reversed(views):
        op.execute(f"DROP {'MATERIALIZED VIEW' if kind == 'm' else 'VIEW'} IF EXISTS {qualified}")
    yield
    own = set(ours)
    for qualified, name, kind, definition in views:
        if name not in own:
            op.execute(f"CREATE {'MATERIALIZED VIEW' if kind == 'm' else 'VIEW'} {qualified} AS {definition}")


# -- SQLite: tables rebuilt in batch mode ----------------------------------------------------------


@contextlib.contextmanager
def sqlite_objects_kept(tables: Iterable[str], ours: Iterable[str]) -> Iterator[None]:
    """Drop every view, and the indexes and triggers of `tables`, before their rebuild; make the
    users' ones again afterwards from the SQL SQLite kept of them.

    Why not PRAGMA legacy_alter_table: it only stops the final RENAME of a rebuild from checking views,
    while batch mode would still rebuild indexes from reflection, which loses what SQLAlchemy cannot
    reflect (expression indexes) and partial indexes' WHERE clauses on some versions. Saving the SQL
    keeps every object exactly as it was made. Our own views (`ours`) are recreated by the migration.
    """
    bind = op.get_bind()
    names = list(tables)
    marks = ", ".join(f":t{index}" for index in range(len(names)))
    params = {f"t{index}": name for index, name in enumerate(names)}
    views = bind.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid")).all()
    others = bind.execute(
        sa.text(
            f"SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
            f"AND sql IS NOT NULL AND tbl_name IN ({marks}) ORDER BY rowid"
        ),
        params,
    ).all()
    # INSTEAD OF triggers belong to a view and go with it.
    view_triggers = (
        bind.execute(
            sa.text(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name IN (SELECT name FROM sqlite_master WHERE type = 'view') ORDER BY rowid"
            )
        )
        .scalars()
        .all()
    )
    for name, _ in reversed(views):
        op.execute(f'DROP VIEW "{name}"')
    for kind, name, _ in others:
        op.execute(f'DROP {kind.upper()} "{name}"')
    yield
    for _, _, sql in others:
        op.execute(sql)
    own = set(ours)
    for name, sql in views:
        if name not in own:
            op.execute(sql)
    for sql in view_triggers:
        op.execute(sql)


# -- MySQL and MariaDB: indexes over columns that become unbounded text -----------------------------

# Characters of a text column a rewritten index keeps: 191 four-byte characters (764 bytes), so that an
# index of up to four such columns stays within InnoDB's 3072 bytes.
TEXT_INDEX_PREFIX = 191


def index_rewrites(table: str, text_columns: Iterable[str]) -> list[str]:
    """ALTER TABLE clauses that rebuild each index over a column becoming LONGTEXT with a prefix of it:
    MySQL indexes no unbounded text, and MariaDB's own prefix (768 characters) is too long for an index
    of more than one column. A unique index stays whole (MariaDB keeps it unique by a hash)."""
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT index_name, non_unique, column_name, sub_part, index_type FROM information_schema.statistics "
                "WHERE table_schema = DATABASE() AND table_name = :table ORDER BY index_name, seq_in_index"
            ),
            {"table": table},
        )
        .all()
    )
    becoming_text = set(text_columns)
    indexes: dict[str, list[tuple[int, str, int | None, str]]] = {}
    for name, non_unique, column, sub_part, index_type in rows:
        indexes.setdefault(name, []).append((non_unique, column, sub_part, index_type))
    clauses = []
    for name, columns in indexes.items():
        non_unique, _, _, index_type = columns[0]
        if name == "PRIMARY" or index_type != "BTREE" or not non_unique:
            continue
        if not any(column in becoming_text and sub_part is None for _, column, sub_part, _ in columns):
            continue
        parts = ", ".join(
            f"`{column}`({TEXT_INDEX_PREFIX})"
            if column in becoming_text
            else (f"`{column}`({sub_part})" if sub_part else f"`{column}`")
            for _, column, sub_part, _ in columns
        )
        clauses += [f"DROP INDEX `{name}`", f"ADD INDEX `{name}` ({parts})"]
    return clauses


# -- comments: PostgreSQL's COMMENT ON, MySQL's and MariaDB's column definitions ----------------------


def pg_literal(text: str | None) -> str:
    """A standard SQL string (standard_conforming_strings: backslashes are plain); NULL removes a comment."""
    return "NULL" if text is None else "'" + text.replace("'", "''") + "'"


# A column's line in SHOW CREATE TABLE: "  `name` definition," (the last one without its comma).
COLUMN_LINE = re.compile(r"^  `(?P<name>[^`]+)` (?P<definition>.*?),?$")
# A COMMENT '…' already in a definition (quotes doubled or backslash-escaped inside).
COMMENT = re.compile(r" COMMENT '(?:[^'\\]|\\.|'')*'")


def mysql_column_definitions(table: str) -> dict[str, str]:
    """Each column's definition as the server would write it, without any comment it has."""
    create = op.get_bind().execute(sa.text(f"SHOW CREATE TABLE `{table}`")).one()[1]
    definitions = {}
    for line in create.splitlines():
        match = COLUMN_LINE.match(line)
        if match:
            definitions[match["name"]] = COMMENT.sub("", match["definition"])
    return definitions


def with_mysql_comment(definition: str, words: str) -> str:
    if not words:
        return definition
    # MariaDB takes a column's CHECK after its COMMENT, not before.
    head, check, tail = definition.partition(" CHECK (")
    return f"{head} COMMENT {mysql_literal(words)}{check}{tail}"


def mysql_literal(text: str) -> str:
    """A MySQL string: backslashes are escapes there, so they are doubled too."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
