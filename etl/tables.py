"""How the query commands print: aligned tables for people, JSON for scripts. Never cuts a value.

Timestamps are UTC: to the second in tables, to the microsecond (ISO-8601, `Z`) in JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from .reports import Change, PackageHistory, RecentRuns

GAP = "  "


def aligned(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] = ()) -> list[str]:
    """Columns as wide as their widest cell; the columns numbered in `right` right-aligned (numbers)."""
    right = set(right)
    cells = [list(headers), *([_cell(value) for value in row] for row in rows)]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    return [
        GAP.join(
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]


def as_json(objects: list[dict[str, Any]]) -> str:
    return json.dumps(objects, indent=2, ensure_ascii=False, default=_json_value)


def iso(instant: datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z, to the microsecond: for JSON."""
    if instant is None:
        return None
    return instant.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def moment(instant: datetime | None) -> str:
    """A UTC timestamp to the second, for people."""
    return "" if instant is None else instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- katapult-etl runs ---------------------------------------------------------------------------------

RUN_HEADERS = (
    "id", "started_at", "scope", "status", "seconds", "pages", "retries", "seen",
    "created", "updated", "restored", "removed", "unchanged", "error",
)
RUN_NUMBERS = (0, *range(4, 13))


def runs_table(recent: RecentRuns) -> list[str]:
    if not recent.runs:
        return ["no runs yet"]
    rows = [
        (
            run["id"], moment(run["started_at"]), run["scope"], run["status"], _seconds(run),
            run["pages_fetched"], run["retries"], run["packages_seen"], run["created"], run["updated"],
            run["restored"], run["removed"], run["unchanged"], run["error"] or "",
        )
        for run in recent.runs
    ]
    lines = aligned(RUN_HEADERS, rows, right=RUN_NUMBERS)
    if recent.more:
        lines.append(f"... {runs_left_out(recent)}")
    return lines


def runs_left_out(recent: RecentRuns) -> str:
    return f"{_count(recent.more, 'older run')} not shown: --limit {len(recent.runs) + recent.more} shows all"


def runs_json(recent: RecentRuns) -> str:
    return as_json(recent.runs)


def _seconds(run: dict[str, Any]) -> str:
    if run["finished_at"] is None:
        return ""
    return f"{(run['finished_at'] - run['started_at']).total_seconds():.2f}"


# -- katapult-etl history PACKAGE ----------------------------------------------------------------------

def history_table(history: PackageHistory) -> list[str]:
    state = "listed" if history.removed_at is None else f"removed at {moment(history.removed_at)}"
    heading = f"{history.package_id}  {history.permalink}  {history.name}: {state}"
    rows = []
    for change in history.changes:
        first = (moment(change.changed_at), change.change_type, change.sync_run_id)
        if not change.field_changes:
            rows.append((*first, "", "", ""))
        for number, field in enumerate(change.field_changes):
            lead = first if number == 0 else ("", "", "")
            rows.append((*lead, field.field, _value(field.old), _value(field.new)))
    return [heading, *aligned(("changed_at", "change", "run", "field", "old", "new"), rows, right=(2,))]


def history_json(history: PackageHistory) -> str:
    return as_json([
        {
            **_change_object(change),
            "changes": [{"field": f.field, "old": f.old, "new": f.new} for f in change.field_changes],
            "version": change.version,
        }
        for change in history.changes
    ])


# -- katapult-etl changes ------------------------------------------------------------------------------

CHANGE_HEADERS = ("changed_at", "change", "run", "scope", "permalink", "package_id", "changed_fields")


def changes_table(changes: list[Change], since: datetime) -> list[str]:
    if not changes:
        return [f"no changes since {moment(since)}"]
    rows = [
        (
            moment(change.changed_at), change.change_type, change.sync_run_id, change.scope,
            change.permalink, change.package_id, ",".join(change.changed_fields or ()),
        )
        for change in changes
    ]
    return aligned(CHANGE_HEADERS, rows, right=(2,))


def changes_json(changes: list[Change]) -> str:
    return as_json([_change_object(change) for change in changes])


def _change_object(change: Change) -> dict[str, Any]:
    return {
        "package_id": change.package_id,
        "permalink": change.permalink,
        "changed_at": change.changed_at,
        "change_type": change.change_type,
        "sync_run_id": change.sync_run_id,
        "scope": change.scope,
        "changed_fields": change.changed_fields,
    }


# -- cells -----------------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    # A line break would break the columns; it is the only thing a cell does not keep as it is.
    return "" if value is None else str(value).replace("\n", " ")


def _value(value: Any) -> str:
    """A column's value as the history shows it: NULL, true/false, JSON for objects, else as it is."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
