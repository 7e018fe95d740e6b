"""The schema's words live once, in the models (and the views' registry): the databases' COMMENTs,
`katapult-etl schema` and the README's schema tables are all made from them."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, inspect

from etl import schema_docs
from etl.database import head_revision, open_engine, upgrade
from etl.models import Base

from .helpers import kill_upgrade_waiting_on_lock, migrate_to, python_importing, query, scalar

README_PATH = Path(__file__).resolve().parent.parent / "README.md"
TABLES = {relation.name: relation for relation in schema_docs.relations() if relation.kind == "table"}
VIEWS = {relation.name: relation for relation in schema_docs.relations() if relation.kind == "view"}


# The words migration 0005 wrote (later migrations change some).
COMMENTED_BY_0005 = importlib.import_module("etl.migrations.versions.0005_schema_comments").TABLES


def words(relation: schema_docs.RelationDoc) -> tuple[str, dict[str, str]]:
    return relation.description, {column.name: column.description for column in relation.columns}


# -- the one source --------------------------------------------------------------------------------


def test_every_table_and_column_of_the_models_is_described():
    assert set(TABLES) == set(Base.metadata.tables)
    for table in Base.metadata.tables.values():
        assert table.comment, table.name
        assert [name for name, column in table.columns.items() if not column.comment] == [], table.name
    for view in VIEWS.values():
        assert view.description and all(column.description for column in view.columns), view.name


def test_the_views_registry_names_the_views_columns_in_their_order(database_url):
    engine = open_engine(database_url)
    upgrade(engine)
    engine.dispose()
    engine = create_engine(database_url)
    found = inspect(engine)

    assert set(found.get_view_names()) == set(VIEWS)
    for name, view in VIEWS.items():
        assert [column["name"] for column in found.get_columns(name)] == [c.name for c in view.columns], name
    engine.dispose()


# -- the databases' comments (migration 0005) ------------------------------------------------------


def test_every_table_view_and_column_carries_its_description(database_url):
    engine = open_engine(database_url)
    upgrade(engine)
    engine.dispose()
    kind = database_url.split(":", 1)[0].split("+", 1)[0]

    if kind == "postgresql":
        assert postgresql_comments(database_url) == {name: words(r) for name, r in {**TABLES, **VIEWS}.items()}
    elif kind in ("mysql", "mariadb"):
        # Views cannot take comments there.
        assert mysql_comments(database_url) == {name: words(relation) for name, relation in TABLES.items()}
    else:  # SQLite has no comments: the upgrade reached the newest revision, and that is all
        assert scalar(database_url, "SELECT version_num FROM alembic_version") == head_revision()


def postgresql_comments(url: str) -> dict[str, tuple[str, dict[str, str]]]:
    relations = query(
        url,
        "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v') AND c.relname <> 'alembic_version'",
    )
    columns = query(
        url,
        "SELECT c.relname, a.attname, col_description(c.oid, a.attnum) FROM pg_class c "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v') AND c.relname <> 'alembic_version'",
    )
    return {
        name: (description, {column: words for table, column, words in columns if table == name})
        for name, description in relations
    }


def mysql_comments(url: str) -> dict[str, tuple[str, dict[str, str]]]:
    tables = query(
        url,
        "SELECT table_name, table_comment FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' AND table_name <> 'alembic_version'",
    )
    columns = query(
        url,
        "SELECT table_name, column_name, column_comment FROM information_schema.columns "
        "WHERE table_schema = DATABASE()",
    )
    return {
        name: (description, {column: words for table, column, words in columns if table == name})
        for name, description in tables
    }


def test_a_comment_migration_killed_half_way_on_mariadb_finishes_on_the_next_upgrade(mariadb_url):
    migrate_to(mariadb_url, "0004")
    # sync_runs is commented last: the tables before it are done when the upgrade waits on its lock.
    kill_upgrade_waiting_on_lock(mariadb_url, "sync_runs", "ALTER TABLE `sync_runs`")
    half = mysql_comments(mariadb_url)
    assert scalar(mariadb_url, "SELECT version_num FROM alembic_version") == "0004"
    assert half["packages"] == COMMENTED_BY_0005["packages"]  # its words then: 0007 changed some since
    assert half["sync_runs"][0] == ""

    engine = open_engine(mariadb_url)
    upgrade(engine)
    engine.dispose()

    assert scalar(mariadb_url, "SELECT version_num FROM alembic_version") == head_revision()
    assert mysql_comments(mariadb_url) == {name: words(relation) for name, relation in TABLES.items()}


# -- katapult-etl schema ---------------------------------------------------------------------------


def test_schema_dbt_is_a_dbt_sources_file_of_every_table_view_and_column(cli, tmp_path):
    database = tmp_path / "never.db"
    result = cli("schema", "--format", "dbt", "--database-url", f"sqlite:///{database}")

    assert (result.exit_code, result.err) == (0, "")
    assert not database.exists()  # it describes this release; it needs no database
    document = yaml.safe_load(result.out)
    assert document["version"] == 2
    [source] = document["sources"]
    assert source["name"] == "katapult_etl"
    described = {table["name"]: table for table in source["tables"]}
    assert list(described) == [*schema_docs.TABLE_ORDER, *VIEWS]
    for name, relation in {**TABLES, **VIEWS}.items():
        assert described[name]["description"] == relation.description
        assert [(c["name"], c["description"]) for c in described[name]["columns"]] == [
            (c.name, c.description) for c in relation.columns
        ]
    for name, table in Base.metadata.tables.items():
        assert [column["name"] for column in described[name]["columns"]] == list(table.columns.keys())
    runs = described["latest_sync_runs"]
    assert runs["loaded_at_field"] == "finished_at"
    assert runs["freshness"] == {
        "warn_after": {"count": 2, "period": "hour"},
        "error_after": {"count": 6, "period": "hour"},
    }
    assert [name for name, table in described.items() if "freshness" in table] == ["latest_sync_runs"]


def test_schema_dbt_tests_the_keys(cli):
    document = yaml.safe_load(cli("schema", "--format", "dbt").out)
    tested = {
        (table["name"], column["name"]): column["tests"]
        for table in document["sources"][0]["tables"]
        for column in table["columns"]
        if "tests" in column
    }

    assert tested == {
        ("package_groups", "id"): ["unique", "not_null"],
        ("packages", "id"): ["unique", "not_null"],
        ("package_snapshots", "id"): ["unique", "not_null"],
        # A composite key: each part is not null; dbt's own tests have none for the pair's uniqueness.
        ("package_listings", "package_id"): ["not_null"],
        ("package_listings", "scope"): ["not_null"],
        ("sync_runs", "id"): ["unique", "not_null"],
        ("notifications", "id"): ["unique", "not_null"],
        ("current_packages", "id"): ["unique", "not_null"],
        ("package_changes", "package_id"): ["not_null"],
        ("package_changes", "changed_at"): ["not_null"],
        ("package_changes", "change_type"): ["not_null"],
        ("latest_sync_runs", "id"): ["unique", "not_null"],
        ("latest_sync_runs", "scope"): ["unique", "not_null"],
    }


def test_schema_json_is_the_same_data(cli):
    dbt = cli("schema", "--format", "dbt")
    as_json = cli("schema", "--format", "json")

    assert (as_json.exit_code, as_json.err) == (0, "")
    assert json.loads(as_json.out) == yaml.safe_load(dbt.out) == schema_docs.dbt_sources()


def test_schema_markdown_is_the_default_and_has_every_table_and_view(cli):
    result = cli("schema")

    assert (result.exit_code, result.err) == (0, "")
    assert result.out == cli("schema", "--format", "markdown").out
    for name, relation in TABLES.items():
        assert schema_docs.readme_block(relation) in result.out, name
    for name, relation in VIEWS.items():
        assert f"### `{name}` (view): {relation.description}\n\n{schema_docs.markdown_table(relation)}" in result.out


def test_schema_imports_no_alembic(tmp_path):
    finished = python_importing(tmp_path, "schema", "--format", "dbt")

    assert finished.returncode == 0, finished.stderr
    assert finished.stderr.splitlines()[-1] == "sqlalchemy"


@pytest.mark.parametrize(
    "value", ["yes", "No", "null", "True", "off", "1", "1.5", "", "a: b", "- x", "#x", "it's", '"q"', "é → …", "x\ny"]
)
def test_the_yaml_writer_keeps_every_string_a_string(value):
    written = "".join(schema_docs.yaml_lines({"key": value, "list": [value, {"name": value}]}, 0))

    assert yaml.safe_load(written) == {"key": value, "list": [value, {"name": value}]}


# -- the README ------------------------------------------------------------------------------------


def test_the_readmes_schema_tables_are_generated_from_the_models():
    readme = README_PATH.read_text()
    blocks = schema_docs.README_BLOCK.findall(readme)

    assert sorted(blocks) == sorted([*TABLES, "package_changes"])
    assert schema_docs.readme_with_tables(readme) == readme, "run `python -m etl.schema_docs README.md`"


def test_a_readme_table_edited_by_hand_is_found():
    readme = README_PATH.read_text()
    edited = readme.replace("| when a run first saw the group |", "| when a run first met the group |", 1)

    assert edited != readme
    assert schema_docs.readme_with_tables(edited) == readme
