"""How many page requests may be in flight, from the rate-limit headers Katapult sends with each page.

Katapult allows a number of requests a minute (`X-Ratelimit-Permitted`) and says how many are left
(`X-Ratelimit-Remaining`); past that it answers 429, which costs a backoff. Fetching pages at full
concurrency into a nearly spent allowance only buys 429s, so the walk slows down first, and once the
allowance is spent it waits for the next minute. No I/O: sleeping and the clock are injected.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

# Below this share of the allowance (or two requests per fetcher, if more) the walk slows down.
RESERVE_SHARE = 10


def pages_in_flight(concurrency: int, remaining: int | None, permitted: int | None) -> int:
    """`concurrency` with plenty left; below the reserve, proportionally fewer, down to one at a time."""
    if remaining is None:
        return concurrency
    reserve = max(2 * concurrency, (permitted or 0) // RESERVE_SHARE)
    if remaining >= reserve:
        return concurrency
    return max(1, remaining * concurrency // reserve)


class Pacer:
    """Follows the rate-limit headers of the pages as the walk takes them, in page order.

    Pages fetched together are counted by Katapult in the order their requests arrived, which is not
    always page order, so a later page may report more left than an earlier one. The lowest count of
    the last `concurrency` pages is the freshest one can be sure of; a new minute's allowance shows
    once those pages have passed.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.allowed = concurrency
        self.remaining: int | None = None
        self._recent: deque[int] = deque(maxlen=concurrency)

    def observe(self, remaining: int | None, permitted: int | None) -> bool:
        """Take one page's headers; True when the pages allowed in flight changed."""
        if remaining is not None:
            self._recent.append(remaining)
        self.remaining = min(self._recent) if self._recent else None
        allowed = pages_in_flight(self.concurrency, self.remaining, permitted)
        changed, self.allowed = allowed != self.allowed, allowed
        return changed


# Katapult's allowance is counted a minute at a time; the minute's start is not sent, so a count of 0
# is known to have passed at the latest a minute after it was seen.
ALLOWANCE_WINDOW_SECONDS = 60.0
# Answers remembered: as many as can be in flight at once (etl.config.MAX_CONCURRENCY), whose counts
# may arrive out of order.
RECENT_ANSWERS = 16


class Allowance:
    """One token's per-minute allowance, as the latest answers counted it: shared by every request of a
    run, and by the runs of scopes that use the same token (`sync --all`), so that a scope starting
    after another has spent the allowance waits for the next minute instead of asking into a 429.

    Thread-safe: the fetchers of a walk observe answers and ask for room at once. `sleep` and `clock`
    (monotonic seconds) are injected, so tests never wait.
    """

    def __init__(self, sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[int] = deque(maxlen=RECENT_ANSWERS)
        self.permitted: int | None = None
        self._spent_at: float | None = None  # when an answer last said nothing was left
        self._resume_at: float | None = None  # when the spent minute is over
        self.waits: list[float] = []  # seconds waited for a new minute

    @property
    def remaining(self) -> int | None:
        """The lowest count of the latest answers (None: none seen since the last new minute)."""
        with self._lock:
            return min(self._recent) if self._recent else None

    def observe(self, remaining: int | None, permitted: int | None) -> None:
        """Take one answer's X-Ratelimit-Remaining and X-Ratelimit-Permitted (429s included)."""
        if remaining is None:
            return
        with self._lock:
            self._recent.append(remaining)
            self.permitted = permitted if permitted is not None else self.permitted
            if remaining <= 0:
                self._spent_at = self._clock()

    def wait_for_room(self) -> float:
        """Before a request: if an answer said the allowance is spent, wait until that minute is over
        (every fetcher asking meanwhile waits too). Returns the seconds waited (0: there was room)."""
        with self._lock:
            if self._spent_at is not None:
                self._resume_at = self._spent_at + ALLOWANCE_WINDOW_SECONDS
                self._spent_at = None
                self._recent.clear()  # the counts seen were the spent minute's
            wait = 0.0 if self._resume_at is None else self._resume_at - self._clock()
            if wait <= 0:
                self._resume_at = None
                return 0.0
            self.waits.append(wait)
        log.info("X-Ratelimit-Remaining was 0: waiting %.0f s for the next minute's allowance", wait)
        self._sleep(wait)
        with self._lock:
            self._resume_at = None  # the minute is over (an injected sleep does not move the clock)
        return wait
