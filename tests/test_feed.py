"""`katapult-etl changes --format atom`: an Atom 1.0 feed, one entry per run that changed something, newest
first, with stable ids; read back with a real feed parser (feedparser), on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import datetime

import feedparser
import pytest
from sqlalchemy import create_engine, select

from etl import __version__, reports
from etl.models import SyncRun

from .helpers import iso, sync_ok

ATOM = "http://www.w3.org/2005/Atom"


def changes_feed(cli, database_url, *extra):
    result = cli("changes", "--database-url", database_url, "--format", "atom", "--since", "30d", *extra)
    assert (result.exit_code, result.err) == (0, "")
    parsed = feedparser.parse(result.out)
    assert (parsed.version, parsed.bozo) == ("atom10", False), parsed.get("bozo_exception")
    return result.out, parsed


def runs(url: str) -> list[tuple[int, datetime, datetime]]:
    """(id, started_at, finished_at) of every run, as UTC datetimes whatever the database."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [
                tuple(row) for row in connection.execute(select(SyncRun.id, SyncRun.started_at, SyncRun.finished_at))
            ]
    finally:
        engine.dispose()


def run_times(url: str) -> dict[int, str]:
    return {run_id: iso(finished) for run_id, _, finished in runs(url)}


def database_tag(url: str) -> str:
    [started] = [started for run_id, started, _ in runs(url) if run_id == 1]
    return f"tag:katapult-etl,{started:%Y-%m-%d}:{started:%Y%m%dT%H%M%S.%fZ}"


def entries(parsed) -> list[tuple[str, str, str, str]]:
    return [(entry.id, entry.title, entry.updated, entry.content[0].value) for entry in parsed.entries]


def created_html(packages) -> str:
    items = sorted((package["permalink"], package["id"]) for package in packages)
    return "<ul>" + "".join(f"<li>created <b>{link}</b> ({pid})</li>" for link, pid in items) + "</ul>"


@pytest.fixture
def four_runs(cli, database_url, api):
    """Run 1 creates the 20 packages; run 2 updates rock-1 and removes rock-288; run 3 changes nothing;
    run 4 restores rock-288 and gives boulder-20 dedicated CPUs."""
    first = [dict(package) for package in api.packages]
    sync_ok(cli, database_url, api)
    by_permalink = {package["permalink"]: package for package in api.packages}
    rock_1, rock_288, boulder_20 = (by_permalink[name] for name in ("rock-1", "rock-288", "boulder-20"))
    rock_1["storage_in_gb"] += 10
    api.packages.remove(rock_288)
    sync_ok(cli, database_url, api)
    sync_ok(cli, database_url, api)
    api.packages.append(rock_288)
    boulder_20["use_dedicated_cpus"] = True
    sync_ok(cli, database_url, api)
    return {"first": first, "rock-1": rock_1, "rock-288": rock_288, "boulder-20": boulder_20}


def test_the_feed_is_atom_with_one_entry_per_changing_run_newest_first(cli, database_url, four_runs):
    text, parsed = changes_feed(cli, database_url)

    tag, times = database_tag(database_url), run_times(database_url)
    rock_1, rock_288, boulder_20 = (four_runs[name] for name in ("rock-1", "rock-288", "boulder-20"))
    assert parsed.feed.id == f"{tag}/changes"
    assert parsed.feed.title == "Katapult VM package changes"
    assert parsed.feed.updated == times[4]
    assert parsed.feed.author == "katapult-etl"
    assert (parsed.feed.generator, parsed.feed.generator_detail.version) == ("katapult-etl", __version__)
    assert entries(parsed) == [
        (
            f"{tag}/run/4",
            "public: 1 updated, 1 restored (run 4)",
            times[4],
            f"<ul><li>updated <b>boulder-20</b> ({boulder_20['id']}): use_dedicated_cpus NULL → true</li>"
            f"<li>restored <b>rock-288</b> ({rock_288['id']})</li></ul>",
        ),
        (
            f"{tag}/run/2",
            "public: 1 updated, 1 removed (run 2)",
            times[2],
            f"<ul><li>updated <b>rock-1</b> ({rock_1['id']}): storage_in_gb 10 → 20</li>"
            f"<li>removed <b>rock-288</b> ({rock_288['id']})</li></ul>",
        ),
        (f"{tag}/run/1", "public: 20 created (run 1)", times[1], created_html(four_runs["first"])),
    ]
    # What the parser forgives, checked as written: the Atom namespace, and the HTML content type.
    root = ElementTree.fromstring(text)
    assert root.tag == f"{{{ATOM}}}feed"
    assert {element.get("type") for element in root.iter(f"{{{ATOM}}}content")} == {"html"}


def test_entry_ids_stay_as_runs_are_added_and_a_filtered_feed_is_another_feed(cli, database_url, api, four_runs):
    _, before = changes_feed(cli, database_url)
    four_runs["rock-1"]["memory_in_gb"] += 1
    sync_ok(cli, database_url, api)

    _, after = changes_feed(cli, database_url)
    _, updates = changes_feed(cli, database_url, "--scope", "public", "--type", "updated")

    tag = database_tag(database_url)
    assert [entry.id for entry in after.entries] == [f"{tag}/run/5"] + [entry.id for entry in before.entries]
    assert after.feed.id == before.feed.id
    assert updates.feed.id == f"{tag}/changes?scope=public&type=updated"
    assert updates.feed.title == "Katapult VM package changes in public (updated)"
    assert [(entry.id, entry.title) for entry in updates.entries] == [
        (f"{tag}/run/5", "public: 1 updated (run 5)"),
        (f"{tag}/run/4", "public: 1 updated (run 4)"),
        (f"{tag}/run/2", "public: 1 updated (run 2)"),
    ]


def test_a_run_with_many_changes_lists_the_first_and_counts_the_rest(cli, database_url, api, monkeypatch):
    monkeypatch.setattr(reports, "FEED_CHANGES_PER_RUN", 2)
    sync_ok(cli, database_url, api)

    _, parsed = changes_feed(cli, database_url)

    [entry] = parsed.entries
    assert entry.title == "public: 20 created (run 1)"
    shown = sorted((package["permalink"], package["id"]) for package in api.packages)[:2]
    assert entry.content[0].value == (
        "<ul>"
        + "".join(f"<li>created <b>{link}</b> ({pid})</li>" for link, pid in shown)
        + "</ul><p>and 18 more (<code>katapult-etl changes</code> lists every one)</p>"
    )


def test_a_feed_without_changes_is_a_valid_empty_feed(cli, database_url, api):
    sync_ok(cli, database_url, api)

    _, parsed = changes_feed(cli, database_url, "--type", "restored")

    assert parsed.entries == []
    assert parsed.feed.id == f"{database_tag(database_url)}/changes?type=restored"
    assert parsed.feed.updated == run_times(database_url)[1]
