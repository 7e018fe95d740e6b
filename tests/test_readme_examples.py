"""The README's Querying section is what the demo's database answers: the demo, each command, each SQL.

Runs `katapult-etl demo --database demo.db` in a new folder, then every `$ katapult-etl …` line of the
section with DATABASE_URL=sqlite:///demo.db, and every SQL block that has an output block after it
(as `sqlite3 -header -column` prints it), and compares each with the README. Times, the seconds a
run took, the database's identity in the Atom feed's ids and the release in its generator differ from
run to run and are masked on both sides; everything else must be the same.
The sync command's summary line, its JSON log lines, the metrics file and the `scopes` examples the README
shows are held to real runs too.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
QUERYING = README.split("\n## Querying\n", 1)[1].split("\n## ", 1)[0]
DEMO = "katapult-etl demo --database demo.db"
TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z?")


def blocks(markdown: str) -> list[tuple[str, str]]:
    """Every fenced block, as (language, text)."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)


def command_examples() -> list[tuple[str, str]]:
    """(command, output) for each `$ katapult-etl …` line of the section's text blocks."""
    examples = []
    for language, text in blocks(QUERYING):
        if language != "text" or not text.startswith("$ katapult-etl "):
            continue
        for chunk in re.split(r"^\$ ", text, flags=re.MULTILINE)[1:]:
            command, _, output = chunk.partition("\n")
            examples.append((command, output))
    return examples


def sql_examples() -> list[tuple[str, str]]:
    """(sql, output) for each SQL block followed directly by a text block."""
    found = re.findall(r"^```sql\n(.*?)^```\n\n```text\n(.*?)^```$", QUERYING, flags=re.MULTILINE | re.DOTALL)
    return [(sql, output) for sql, output in found]


COMMANDS = command_examples()
SQL = sql_examples()


def masked(text: str) -> str:
    """Times as zeros (the width stays, so columns stay aligned) and the seconds a run took as S."""
    text = TIME.sub(lambda match: re.sub(r"[0-9]", "0", match.group()), text)
    text = re.sub(r"seconds=[0-9]+\.[0-9]{2}", "seconds=S", text)
    # The Atom feed's ids carry the database's identity, a time too; its generator, the release.
    text = re.sub(
        r"tag:katapult-etl,[0-9]{4}-[0-9]{2}-[0-9]{2}:[0-9]{8}T[0-9]{6}\.[0-9]{6}Z", "tag:katapult-etl,DB", text
    )
    text = re.sub(r'<generator version="[^"]*">', '<generator version="V">', text)
    return re.sub(r" +[0-9]+\.[0-9]{2}(?= )", " S", text)  # the runs table's seconds column


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A folder holding the demo's demo.db, and what the demo printed."""
    folder = tmp_path_factory.mktemp("readme")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.chdir(folder)
        assert main(shlex.split(DEMO)[1:]) == 0
    yield folder, out.getvalue()


def test_the_section_has_the_examples_this_test_checks():
    assert [command for command, _ in COMMANDS][:1] == [DEMO]
    assert len(COMMANDS) >= 15
    assert len(SQL) == 5


def test_the_demo_prints_what_the_readme_shows(demo_folder):
    _, printed = demo_folder

    assert masked(printed) == masked(COMMANDS[0][1])


@pytest.mark.parametrize(("command", "output"), COMMANDS[1:], ids=[command for command, _ in COMMANDS[1:]])
def test_each_command_prints_what_the_readme_shows(cli, monkeypatch, demo_folder, command, output):
    folder, _ = demo_folder
    monkeypatch.chdir(folder)

    result = cli(*shlex.split(command)[1:], env={"DATABASE_URL": "sqlite:///demo.db"})

    assert masked(result.out + result.err) == masked(output)
    assert (result.exit_code == 0) == (result.err == "")  # an example's error is its only line, on stderr


@pytest.mark.parametrize(("sql", "output"), SQL, ids=[sql.split("\n")[0] for sql, _ in SQL])
def test_each_sql_example_prints_what_the_readme_shows(demo_folder, sql, output):
    folder, _ = demo_folder
    connection = sqlite3.connect(folder / "demo.db")
    try:
        cursor = connection.execute(sql)
        headers = [column[0] for column in cursor.description]
        rows = [["" if value is None else str(value) for value in row] for row in cursor.fetchall()]
    finally:
        connection.close()

    assert masked(sqlite3_columns(headers, rows)) == masked(output)


def sqlite3_columns(headers: list[str], rows: list[list[str]]) -> str:
    """What `sqlite3 -header -column` prints, without its trailing spaces."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() + "\n" for line in lines
    )


# -- the sync command's own examples (Commands and Metrics) ----------------------------------------

SECONDS = re.compile(r"seconds=[0-9]+\.[0-9]{2}")
METRIC_TIME = re.compile(
    r"^(katapult_etl_(?:last_run_timestamp|last_success_timestamp|run_duration)_seconds\S*) \S+$", re.M
)


def _block_after(sentence: str) -> str:
    """The first fenced block after the README's sentence that introduces it."""
    return blocks(README.split(sentence, 1)[1])[0][1]


def test_the_sync_summary_line_is_what_the_readme_shows(cli, api, tmp_path):
    shown = _block_after("On success it prints one line on stdout, in the names of the `sync_runs` columns:")

    result = cli("sync", "--database-url", f"sqlite:///{tmp_path / 'k.db'}", "--api-url", api.url)

    assert result.exit_code == 0
    assert SECONDS.sub("seconds=S", result.out) == SECONDS.sub("seconds=S", shown)


def test_the_metrics_file_is_what_the_readme_shows(cli, api, tmp_path):
    shown = _block_after("by all (`644`). A run that succeeded writes:")
    metrics = tmp_path / "katapult_etl_public.prom"

    result = cli(
        "sync", "--database-url", f"sqlite:///{tmp_path / 'k.db'}", "--api-url", api.url, "--metrics-file", str(metrics)
    )

    assert result.exit_code == 0
    assert METRIC_TIME.sub(r"\1 T", metrics.read_text()) == METRIC_TIME.sub(r"\1 T", shown)


def _records(text: str) -> list[dict[str, object]]:
    """JSON log lines without their time stamps."""
    return [{k: v for k, v in json.loads(line).items() if k != "ts"} for line in text.splitlines() if line]


def test_the_json_log_lines_are_what_the_readme_shows(cli, api, tmp_path):
    from etl.testing.fakeapi import DEFAULT_TOKEN, Fault

    logs = README.split("\n### Logs\n", 1)[1].split("\n### ", 1)[0]
    (_, a_run), (_, refused) = blocks(logs)[:2]
    url = f"sqlite:///{tmp_path / 'k.db'}"
    api.packages = api.packages[:5]
    arguments = ("sync", "--log-format", "json", "-v", "--per-page", "5", "--database-url", url, "--api-url", api.url)
    assert cli(*arguments).exit_code == 0
    second = cli(*arguments)
    api.add_fault(Fault(error_code="invalid_api_token"))
    failed = cli(*arguments, env={"KATAPULT_API_TOKEN": DEFAULT_TOKEN})

    assert all(record in _records(second.err) for record in _records(a_run))
    assert _records(refused) == _records(failed.err)[-1:]


def test_the_scopes_examples_are_what_the_readme_shows(cli, api, tmp_path):
    from etl.testing.catalogue import synthetic_catalogue
    from etl.testing.fakeapi import DEFAULT_TOKEN

    command, _, listing = _block_after("with no scope the table says").partition("\n")
    retire, _, retired = _block_after("`unchanged` those another scope still lists:").partition("\n")
    url = f"sqlite:///{tmp_path / 'k.db'}"
    token = {"KATAPULT_API_TOKEN": DEFAULT_TOKEN}
    acme = ("--organization-id", "org_acme")
    # public; acme with its 3 private packages and the 20 public ones; acme again, now gone (404).
    api.organizations = {"org_acme": {"packages": synthetic_catalogue(3, seed=3, privacy="private")}}
    assert cli("sync", "--database-url", url, "--api-url", api.url).exit_code == 0
    assert cli("sync", "--database-url", url, "--api-url", api.url, *acme, env=token).exit_code == 0
    api.organizations = {}
    assert cli("sync", "--database-url", url, "--api-url", api.url, *acme, env=token).exit_code == 1

    scopes = cli(*shlex.split(command.removeprefix("$ katapult-etl ")), "--database-url", url)
    retired_now = cli(*shlex.split(retire.removeprefix("$ katapult-etl ")), "--database-url", url)

    assert masked(scopes.out) == masked(listing)
    assert SECONDS.sub("seconds=S", retired_now.out) == SECONDS.sub("seconds=S", retired)
