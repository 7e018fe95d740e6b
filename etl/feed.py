"""`changes --format atom`: the changes as an Atom 1.0 feed (RFC 4287), one entry per run that changed
something, newest first.

Ids are tag: URIs (RFC 4151) that never change, so that a feed reader shows each run once:

    tag:katapult-etl,2026-12-02:20261202T181750.653197Z/run/2        an entry: run 2 of this database
    tag:katapult-etl,2026-12-02:20261202T181750.653197Z/changes      the feed (with ?scope=…&type=… when filtered)

The part after the date is the database's identity: the instant its first run started, to the microsecond,
which two databases practically never share and which one database keeps for as long as it keeps its
history (a copy or a restore of it keeps it too, rightly: it is the same history).
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from . import __version__
from .reports import Change, ChangeFeed, RunChanges
from .results import CHANGE_TYPES, ChangeType

ATOM = "http://www.w3.org/2005/Atom"
TAG_AUTHORITY = "katapult-etl"
AUTHOR = "katapult-etl"
TITLE = "Katapult VM package changes"
NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)  # `updated` of a feed of a database without a run


def atom(feed: ChangeFeed) -> str:
    """The whole feed as XML text, its declaration first and its last newline included."""
    root = ElementTree.Element("feed", xmlns=ATOM)  # the default namespace, written out: no prefixes
    _add(root, "id", feed_id(feed))
    _add(root, "title", _feed_title(feed))
    _add(root, "updated", _time(feed.updated or feed.origin or NO_TIME))
    author = ElementTree.SubElement(root, "author")
    _add(author, "name", AUTHOR)
    _add(root, "generator", "katapult-etl").set("version", __version__)
    for run in feed.runs:
        root.append(_entry(feed, run))
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def database_tag(origin: datetime | None) -> str:
    if origin is None:
        return f"tag:{TAG_AUTHORITY},1970-01-01:no-run-yet"
    origin = origin.astimezone(UTC)
    return f"tag:{TAG_AUTHORITY},{origin:%Y-%m-%d}:{origin:%Y%m%dT%H%M%S.%fZ}"


def feed_id(feed: ChangeFeed) -> str:
    """The feed's id: the database's, with the filter that makes it another feed (a window of time does not)."""
    wanted = []
    if feed.wanted.scope is not None:
        wanted.append(f"scope={quote(feed.wanted.scope, safe='')}")
    if tuple(feed.wanted.types) != CHANGE_TYPES:
        wanted.append(f"type={','.join(feed.wanted.types)}")
    return f"{database_tag(feed.origin)}/changes" + (f"?{'&'.join(wanted)}" if wanted else "")


def entry_id(feed: ChangeFeed, run: RunChanges) -> str:
    return f"{database_tag(feed.origin)}/run/{run.run_id}"


def entry_title(run: RunChanges) -> str:
    """`public: 2 updated, 1 removed (run 2)`."""
    counts = ", ".join(f"{count} {kind}" for kind, count in run.counts.items())
    return f"{run.scope}: {counts} (run {run.run_id})"


def entry_html(run: RunChanges) -> str:
    """The run's changes as an HTML list: each package, what happened, and each field's old → new value."""
    items = "".join(f"<li>{_change_html(change)}</li>" for change in run.changes)
    left_out = sum(run.counts.values()) - len(run.changes)
    more = f"<p>and {left_out} more (<code>katapult-etl changes</code> lists every one)</p>" if left_out > 0 else ""
    return f"<ul>{items}</ul>{more}"


def _entry(feed: ChangeFeed, run: RunChanges) -> ElementTree.Element:
    entry = ElementTree.Element("entry")
    _add(entry, "id", entry_id(feed, run))
    _add(entry, "title", entry_title(run))
    _add(entry, "updated", _time(run.finished_at))
    _add(entry, "content", entry_html(run)).set("type", "html")
    return entry


def _change_html(change: Change) -> str:
    package = f"<b>{html.escape(change.permalink or change.package_id)}</b> ({html.escape(change.package_id)})"
    fields = ", ".join(
        f"{html.escape(field.field)} {html.escape(_shown(field.old))} → {html.escape(_shown(field.new))}"
        for field in change.field_changes
    )
    if not fields and change.change_type in (ChangeType.UPDATED, ChangeType.RESTORED) and change.changed_fields:
        fields = html.escape(", ".join(change.changed_fields))  # past the values shown: the names at least
    return f"{change.change_type} {package}" + (f": {fields}" if fields else "")


def _feed_title(feed: ChangeFeed) -> str:
    title = TITLE
    if feed.wanted.scope is not None:
        title += f" in {feed.wanted.scope}"
    if tuple(feed.wanted.types) != CHANGE_TYPES:
        title += f" ({', '.join(feed.wanted.types)})"
    return title


def _shown(value: Any) -> str:
    """A value as the feed shows it: NULL, true/false, JSON for objects and lists, else as it is."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _time(instant: datetime) -> str:
    """RFC 3339, UTC, to the microsecond: `2026-12-02T18:17:50.738565Z`."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _add(parent: ElementTree.Element, name: str, text: str) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, name)
    element.text = text
    return element
