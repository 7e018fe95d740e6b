"""The README is the manual: every command-line option and every column of the schema is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl.cli import build_parser
from etl.models import Base

from .helpers import subcommands

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


COMMANDS = subcommands(build_parser())


def test_the_commands_are_the_documented_ones():
    assert sorted(COMMANDS) == [
        "changes",
        "db current",
        "db upgrade",
        "demo",
        "history",
        "packages",
        "runs",
        "schema",
        "scopes",
        "scopes retire",
        "sync",
    ]
    for name in COMMANDS:
        assert f"`katapult-etl {name}" in README, name


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_in_the_readme(command):
    options = [
        option
        for action in COMMANDS[command]._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    assert options, command
    missing = [option for option in options if not re.search(rf"`[^`]*{re.escape(option)}\b", README)]
    assert missing == [], f"katapult-etl {command}: not in README.md"


@pytest.mark.parametrize("table", sorted(Base.metadata.tables))
def test_every_column_is_in_the_schema_section(table):
    schema = README.split("## The schema", 1)[1].split("\n## ", 1)[0]
    section = schema.split(f"### `{table}`", 1)[1].split("\n### ", 1)[0]
    columns = [column.name for column in Base.metadata.tables[table].columns]
    missing = [name for name in columns if f"`{name}`" not in section and not _in_a_range(name, section)]
    assert missing == [], f"{table}: columns not documented in README.md"


def _in_a_range(name: str, section: str) -> bool:
    """`name` … `use_dedicated_cpus` and `icon_*` stand for the attribute columns in package_snapshots."""
    attributes = {column.name for column in Base.metadata.tables["packages"].columns}
    return ("`name` … `use_dedicated_cpus`" in section and name in attributes) or (
        "`icon_*`" in section and name.startswith("icon_")
    )
