"""How the query commands print: aligned tables for people; JSON, JSON lines or CSV for scripts.

Never cuts a value. Timestamps are UTC: to the second in tables, to the microsecond (ISO-8601, `Z`) in
JSON and CSV. Each `*_output` function returns the whole text to print, its last newline included.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .models import SyncRun
from .reports import SCOPE_COLUMNS, Catalogue, Change, ChangeFilter, PackageHistory, RecentRuns
from .results import CHANGE_TYPES, ChangeType

GAP = "  "
OUTPUT_FORMATS = ("table", "json", "jsonl", "csv")


def render(output: str, records: list[dict[str, Any]], columns: Sequence[str], table: Callable[[], list[str]]) -> str:
    """`records` as `output` asks: a table (made only then), a JSON array, one JSON object a line, or CSV."""
    if output == "table":
        return "".join(f"{line}\n" for line in table())
    if output == "json":
        return as_json(records) + "\n"
    if output == "jsonl":
        return "".join(json.dumps(record, ensure_ascii=False, default=_json_value) + "\n" for record in records)
    if output == "csv":
        return as_csv(columns, records)
    raise ValueError(f"no output format {output!r}")


def as_csv(columns: Sequence[str], records: list[dict[str, Any]]) -> str:
    """A header row, then one row per record: empty for NULL, true/false, a list comma-joined, JSON for objects."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_csv_cell(record[column]) for column in columns] for record in records)
    return text.getvalue()


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
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def moment(instant: datetime | None) -> str:
    """A UTC timestamp to the second, for people."""
    return "" if instant is None else instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- katapult-etl runs ---------------------------------------------------------------------------------

RUN_HEADERS = (
    "id",
    "started_at",
    "scope",
    "status",
    "seconds",
    "pages",
    "retries",
    "seen",
    "created",
    "updated",
    "restored",
    "removed",
    "unchanged",
    "error",
)
RUN_NUMBERS = (0, *range(4, 13))
RUN_COLUMNS = tuple(SyncRun.__table__.columns.keys())


def runs_output(recent: RecentRuns, output: str) -> str:
    return render(output, recent.runs, RUN_COLUMNS, lambda: runs_table(recent))


def runs_table(recent: RecentRuns) -> list[str]:
    if not recent.runs:
        return ["no runs yet"]
    rows = [
        (
            run["id"],
            moment(run["started_at"]),
            run["scope"],
            run["status"],
            _seconds(run),
            run["pages_fetched"],
            run["retries"],
            run["packages_seen"],
            run["created"],
            run["updated"],
            run["restored"],
            run["removed"],
            run["unchanged"],
            run["error"] or "",
        )
        for run in recent.runs
    ]
    lines = aligned(RUN_HEADERS, rows, right=RUN_NUMBERS)
    if recent.more:
        lines.append(f"... {runs_left_out(recent)}")
    return lines


def runs_left_out(recent: RecentRuns) -> str:
    return f"{_count(recent.more, 'older run')} not shown: --limit {len(recent.runs) + recent.more} or --all shows all"


def _seconds(run: dict[str, Any]) -> str:
    if run["finished_at"] is None:
        return ""
    return f"{(run['finished_at'] - run['started_at']).total_seconds():.2f}"


# -- katapult-etl scopes -------------------------------------------------------------------------------

SCOPE_HEADERS = ("scope", "listed", "last_run", "status", "finished_at", "last_success", "succeeded_at")
SCOPE_NUMBERS = (1, 2, 5)


def scopes_output(states: list[dict[str, Any]], output: str) -> str:
    return render(output, states, SCOPE_COLUMNS, lambda: scopes_table(states))


def scopes_table(states: list[dict[str, Any]]) -> list[str]:
    if not states:
        return ["no scopes yet"]
    rows = [
        (
            state["scope"],
            state["listed"],
            state["last_run_id"],
            state["last_run_status"],
            moment(state["last_run_finished_at"]),
            state["last_success_run_id"],
            moment(state["last_success_finished_at"]),
        )
        for state in states
    ]
    return aligned(SCOPE_HEADERS, rows, right=SCOPE_NUMBERS)


# -- katapult-etl packages -------------------------------------------------------------------------------

CATALOGUE_HEADERS = ("id", "name", "permalink", "cpu_cores", "memory_in_gb", "storage_in_gb", "group_name")
CATALOGUE_NUMBERS = (3, 4, 5)


def catalogue_output(catalogue: Catalogue, output: str) -> str:
    return render(output, catalogue.packages, catalogue.columns, lambda: catalogue_table(catalogue))


def catalogue_table(catalogue: Catalogue) -> list[str]:
    if not catalogue.packages:
        return [f"no packages {_catalogue_state(catalogue)}"]
    headers = CATALOGUE_HEADERS + (("removed_at",) if catalogue.removed else ())
    rows = [
        [package[column] for column in CATALOGUE_HEADERS] + [moment(package["removed_at"])] * catalogue.removed
        for package in catalogue.packages
    ]
    return aligned(headers, rows, right=CATALOGUE_NUMBERS)


def _catalogue_state(catalogue: Catalogue) -> str:
    """'listed now', 'listed in public at 2026-03-01T00:00:00Z', 'removed that public listed', ..."""
    if catalogue.removed:
        where = f" that {catalogue.scope} listed" if catalogue.scope else ""
        return f"removed{where}" + ("" if catalogue.at is None else f" by {moment(catalogue.at)}")
    where = f" in {catalogue.scope}" if catalogue.scope else ""
    return f"listed{where} " + ("now" if catalogue.at is None else f"at {moment(catalogue.at)}")


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


HISTORY_CSV_COLUMNS = (
    "package_id",
    "permalink",
    "changed_at",
    "change_type",
    "sync_run_id",
    "scope",
    "field",
    "old",
    "new",
)


def history_output(history: PackageHistory, output: str) -> str:
    if output == "csv":  # flat, as the table: one row per changed field (one for a change without fields)
        return as_csv(HISTORY_CSV_COLUMNS, _history_rows(history))
    return render(output, _history_objects(history), (), lambda: history_table(history))


def _history_objects(history: PackageHistory) -> list[dict[str, Any]]:
    return [
        {
            **_change_object(change),
            "changes": [{"field": f.field, "old": f.old, "new": f.new} for f in change.field_changes],
            "version": change.version,
        }
        for change in history.changes
    ]


def _history_rows(history: PackageHistory) -> list[dict[str, Any]]:
    rows = []
    for change in history.changes:
        fields = change.field_changes or (None,)
        for field in fields:
            row = {**_change_object(change), "field": None, "old": None, "new": None}
            if field is not None:
                row.update(field=field.field, old=field.old, new=field.new)
            rows.append(row)
    return rows


# -- katapult-etl changes ------------------------------------------------------------------------------

CHANGE_HEADERS = ("changed_at", "change", "run", "scope", "permalink", "package_id", "changed_fields")
CHANGE_COLUMNS = ("package_id", "permalink", "changed_at", "change_type", "sync_run_id", "scope", "changed_fields")


def changes_output(changes: list[Change], output: str, nothing: str) -> str:
    """`nothing`: the table's one line when there are no changes (e.g. 'no changes since …')."""
    return render(
        output, [_change_object(change) for change in changes], CHANGE_COLUMNS, lambda: changes_table(changes, nothing)
    )


def no_changes(wanted: ChangeFilter) -> str:
    """What the table says when nothing matched: 'no changes since …', 'no removed changes in run 3', …"""
    kinds = "" if wanted.types == CHANGE_TYPES else f" of type {','.join(wanted.types)}"
    of = f" of {wanted.scope}" if wanted.scope else ""
    if wanted.run_ids is None:
        return f"no changes{kinds} since {moment(wanted.since)}"
    if not wanted.run_ids:
        return f"no succeeded run{of} yet"
    runs = "run" if len(wanted.run_ids) == 1 else "runs"
    return f"no changes{kinds} in {runs} {', '.join(map(str, wanted.run_ids))}"


def creations_line(run: Any, changes: list[Change]) -> str:
    """A first sync's creations in one line: 'run 1 created the 20 packages of the public catalogue'."""
    created = sum(change.change_type == ChangeType.CREATED for change in changes)
    return f"run {run.run_id} created the {_count(created, 'package')} of the {run.scope} catalogue"


def changes_table(changes: list[Change], nothing: str) -> list[str]:
    if not changes:
        return [nothing]
    rows = [
        (
            moment(change.changed_at),
            change.change_type,
            change.sync_run_id,
            change.scope,
            change.permalink,
            change.package_id,
            ",".join(change.changed_fields or ()),
        )
        for change in changes
    ]
    return aligned(CHANGE_HEADERS, rows, right=(2,))


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


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
