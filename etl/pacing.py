"""How many page requests may be in flight, from the rate-limit headers Katapult sends with each page.

Katapult allows a number of requests a minute (`X-Ratelimit-Permitted`) and says how many are left
(`X-Ratelimit-Remaining`); past that it answers 429, which costs a backoff. Fetching pages at full
concurrency into a nearly spent allowance only buys 429s, so the walk slows down first. Pure.
"""

from __future__ import annotations

from collections import deque

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
