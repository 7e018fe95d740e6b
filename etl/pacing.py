"""How many page requests may be in flight, from the rate-limit headers Katapult sends with each page.

Katapult allows a number of requests a minute (`X-Ratelimit-Permitted`) and says how many are left
(`X-Ratelimit-Remaining`); past that it answers 429, which costs a backoff. Fetching pages at full
concurrency into a nearly spent allowance only buys 429s, so the walk slows down first. Pure.
"""

from __future__ import annotations

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
