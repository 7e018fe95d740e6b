"""The wall clock of one run, which never goes back past what the database has recorded.

Clocks go back: an NTP step, a VM restored from a snapshot, two cron hosts writing one database. A
version must never start before the one it closes, and a run's times must never come before the last
run's, so each time the run writes is the later of the wall clock and just after the newest time
recorded (one microsecond, the resolution every supported database keeps: equal times would make a
new version look like its predecessor's twin in the package_changes view). When the clock is behind,
the run says so once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)

RESOLUTION = timedelta(microseconds=1)


def utc_now() -> datetime:
    """The wall clock, in UTC: what a run records unless the database already holds a later time."""
    return datetime.now(UTC)


class RunClock:
    def __init__(self, wall: Callable[[], datetime]) -> None:
        self._wall = wall
        self._recorded: datetime | None = None  # the newest time the database holds
        self._floor: datetime | None = None  # no time handed out from now on is earlier
        self._warned = False

    def not_before(self, recorded: datetime | None) -> None:
        """Times handed out from now on come after `recorded`, a time the database holds."""
        if recorded is None:
            return
        if self._recorded is None or recorded > self._recorded:
            self._recorded = recorded
        self._raise_floor(recorded + RESOLUTION)

    def now(self) -> datetime:
        """The wall clock, unless that is before the floor: then the floor (and a warning, once)."""
        wall = self._wall()
        if self._floor is None or wall >= self._floor:
            self._floor = wall
            return wall
        if self._recorded is not None and wall < self._recorded and not self._warned:
            self._warned = True
            log.warning(
                "the clock is %.1f s behind the last recorded run: using %s",
                (self._recorded - wall).total_seconds(),
                _iso(self._floor),
            )
        return self._floor

    def _raise_floor(self, floor: datetime) -> None:
        if self._floor is None or floor > self._floor:
            self._floor = floor


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
