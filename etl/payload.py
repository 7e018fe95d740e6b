"""What a notification says: the JSON a webhook receives, made from a run's summary and its changes (pure).

One function makes it, `build_payload(run, changes)`: the run, its changes, and what it warned of
(keys the API started or stopped sending, a mass update), as fields and as lines of the text. The body
sent is the payload as canonical JSON (sorted keys, no spaces), so that the bytes, and so their
signature, are the same whichever database kept the payload (PostgreSQL's jsonb reorders keys).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .results import CHANGE_TYPES, FieldChange, MassUpdate, RunCounts, SchemaChanges

# Changes one notification lists at most; beyond that it gives the counts and how many it left out.
MAX_CHANGES = 1000
# Changes the `text` names one by one: chat clients cut long messages (Slack at 40,000 characters).
TEXT_CHANGES = 20
COUNTED = ("created", "updated", "restored", "removed", "unchanged", "packages_seen")


@dataclass(frozen=True)
class PackageChange:
    """One package a run created, updated, removed or restored, with each field it changed."""

    package_id: str
    name: str | None
    permalink: str | None
    change_type: str
    fields: tuple[FieldChange, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """The run a notification tells of."""

    run_id: int
    scope: str
    api: str
    status: str
    finished_at: datetime
    counts: RunCounts
    reason: str | None = None  # why the run is incomplete; None when it succeeded
    schema_changes: SchemaChanges | None = None  # keys the packages gained or lost (None: not compared)
    mass_update: MassUpdate | None = None  # more than half of the scope updated


def changed_anything(counts: RunCounts) -> bool:
    """Whether a run's merge created, updated, removed or restored anything: only then is there news."""
    return _changes_counted(counts) > 0


def build_payload(run: RunSummary, changes: Sequence[PackageChange]) -> dict[str, Any]:
    """The notification of `run`: its counts, its first MAX_CHANGES `changes`, its warnings and a `text`."""
    listed = list(changes[:MAX_CHANGES])
    left_out = max(0, _changes_counted(run.counts) - len(listed))
    mass = run.mass_update
    payload: dict[str, Any] = {
        "run_id": run.run_id,
        "scope": run.scope,
        "api": run.api,
        "status": run.status,
        "error": run.reason,
        "finished_at": _iso(run.finished_at),
        "counts": {name: getattr(run.counts, name) for name in COUNTED},
        "changes": [_change_object(change) for change in listed],
        "changes_left_out": left_out,
        # As sync_runs.schema_changes has it; null when the keys did not change (or were not compared).
        "schema_changes": str(run.schema_changes) if run.schema_changes else None,
        "mass_update": None if mass is None else {"updated": mass.updated, "listed": mass.listed},
    }
    payload["text"] = summary_text(run, listed, left_out)
    return payload


def body_of(payload: Mapping[str, Any]) -> bytes:
    """The bytes POSTed (and signed): canonical JSON, UTF-8."""
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def summary_text(run: RunSummary, listed: Sequence[PackageChange], left_out: int) -> str:
    """A few lines for people (chat webhooks show `text` as it is): the counts, then each change."""
    counts = ", ".join(f"{getattr(run.counts, kind)} {kind}" for kind in CHANGE_TYPES if getattr(run.counts, kind))
    lines = [f"katapult-etl run {run.run_id} of {run.scope}: {counts}"]
    if run.reason:
        lines.append(f"(run {run.status}: {run.reason})")
    if run.schema_changes:
        lines.append(f"⚠ keys changed in the packages: {run.schema_changes}")
    if run.mass_update is not None:
        lines.append(f"⚠ {run.mass_update}")
    lines += [f"• {_change_line(change)}" for change in listed[:TEXT_CHANGES]]
    more = len(listed) - TEXT_CHANGES + left_out
    if more > 0:
        lines.append(f"… and {more} more (`katapult-etl changes --scope {run.scope}` lists them all)")
    return "\n".join(lines)


def _change_line(change: PackageChange) -> str:
    who = change.name or change.package_id
    if change.permalink:
        who += f" ({change.permalink})"
    fields = ", ".join(f"{field.field} {_shown(field.old)} → {_shown(field.new)}" for field in change.fields)
    return f"{change.change_type} {who}" + (f": {fields}" if fields else "")


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False) if not isinstance(value, str) else value


def _change_object(change: PackageChange) -> dict[str, Any]:
    return {
        "package_id": change.package_id,
        "name": change.name,
        "permalink": change.permalink,
        "change_type": change.change_type,
        "fields": [{"field": field.field, "old": field.old, "new": field.new} for field in change.fields],
    }


def _changes_counted(counts: RunCounts) -> int:
    return counts.created + counts.updated + counts.removed + counts.restored


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
