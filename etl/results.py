"""What a run did, as the pipeline returns it and the CLI, the demo and the metrics report it.

Its own module so that reporting a run does not import the machinery that makes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import EXIT_INCOMPLETE, EXIT_MASS_REMOVAL, EXIT_OK


class RunStatus(StrEnum):
    """A run's status, as sync_runs.status stores it (the database holds the value, e.g. 'succeeded')."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    INCOMPLETE = "incomplete"
    FAILED = "failed"


class ChangeType(StrEnum):
    """What a run did to a package, as package_changes.change_type and the counts of sync_runs name it.

    UNCHANGED is a count only: package_changes has no row for a package that did not change.
    """

    CREATED = "created"
    UPDATED = "updated"
    REMOVED = "removed"
    RESTORED = "restored"
    UNCHANGED = "unchanged"


# The changes package_changes holds, in the order the commands list them.
CHANGE_TYPES = (ChangeType.CREATED, ChangeType.UPDATED, ChangeType.REMOVED, ChangeType.RESTORED)


@dataclass(frozen=True)
class FieldChange:
    """One field a change changed: a column, or raw.KEY when only keys without a column changed."""

    field: str
    old: Any
    new: Any


@dataclass
class RunCounts:
    pages_fetched: int = 0
    requests: int = 0
    retries: int = 0
    packages_seen: int = 0
    created: int = 0
    updated: int = 0
    restored: int = 0
    removed: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class NotificationBacklog:
    """The notifications still pending after a run's deliveries, and when the oldest was written."""

    pending: int
    oldest_created_at: datetime | None

    def oldest_age(self, now: datetime) -> float:
        """Seconds the oldest pending notification has waited; 0 when none waits."""
        return 0.0 if self.oldest_created_at is None else max(0.0, (now - self.oldest_created_at).total_seconds())


@dataclass(frozen=True)
class SchemaChanges:
    """Keys (dotted paths, e.g. `icon.token`) the packages of a run had that none of the scope's current
    versions had (`added`), and keys every current version had that no package of the run had
    (`removed`); each sorted. As sync_runs.schema_changes stores it: `+launch_price,-icon.token`."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ",".join([*(f"+{key}" for key in self.added), *(f"-{key}" for key in self.removed)])

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


@dataclass(frozen=True)
class MassUpdate:
    """More than half of a scope's listed packages got a new version in one run: a warning, not a refusal."""

    updated: int
    listed: int
    scope: str

    def __str__(self) -> str:
        return (
            f"{self.updated} of the {self.listed} packages listed in {self.scope} were updated in one run: "
            "if a key changed in every package, --ignore-key KEY keeps such a change from making versions"
        )


@dataclass(frozen=True)
class RunResult:
    """What a run did; `status` is succeeded or incomplete (a failed run raises instead)."""

    run_id: int | None
    scope: str
    api: str
    status: RunStatus
    counts: RunCounts
    seconds: float
    dry_run: bool = False
    reason: str | None = None
    mass_removal_refused: bool = False
    notifications: NotificationBacklog | None = None  # None: a dry run, or the backlog could not be read
    # None: not compared (the scope's first run has nothing to compare with); empty: compared, none found.
    schema_changes: SchemaChanges | None = None
    mass_update: MassUpdate | None = None

    @property
    def exit_code(self) -> int:
        if self.mass_removal_refused:
            return EXIT_MASS_REMOVAL
        return EXIT_INCOMPLETE if self.status == RunStatus.INCOMPLETE else EXIT_OK
