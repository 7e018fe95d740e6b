"""The walk over the catalogue's pages: which pages to ask for, and whether the answers add up.

Pure: it sends no requests and reads no clock. The pipeline asks it for pages, fetches them, and hands
each answer back, in page order, with `accept`. A page of a set with totals looks like

    {"current_page": 2, "total_pages": 3, "total": 450, "per_page": 200, "large_set": false}

and of a large set (over 1000 packages), where Katapult does not count:

    {"current_page": 7, "total_pages": null, "total": null, "per_page": 200, "large_set": true}

With totals every page is known after the first, so they may be fetched together; a large set is
walked one page at a time until a page is shorter than the per_page the server reports. So is a set
whose totals are null or left out, whatever its large_set says (Katapult's framework leaves out keys):
missing totals are unknown, never a catalogue of one page.

A walk is shown complete only if every page agrees on the totals: a count that changes while the pages
are read means items moved between them (a package deleted or added), and some may have been missed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import PaginationError

MAX_PAGES = 10_000


@dataclass(frozen=True)
class Pagination:
    """A page's `pagination` object as Katapult sent it; null or absent totals are None."""

    current_page: int
    total_pages: int | None
    total: int | None
    per_page: int
    large_set: bool


class PageWalk:
    def __init__(self, max_pages: int = MAX_PAGES) -> None:
        self._max_pages = max_pages
        self._page_bound: int | None = None
        self._handed_out = 0
        self._accepted = 0
        self._finished = False
        self._fingerprints: set[bytes] = set()
        self._first_totals: tuple[int | None, int | None] | None = None
        self._totals_changed: str | None = None  # why, once a page disagreed with page 1's totals
        self.total: int | None = None

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def pages_accepted(self) -> int:
        return self._accepted

    def start(self) -> list[int]:
        """The first page to request."""
        return self._claim_through(1)

    def accept(self, number: int, pagination: Pagination, item_ids: Sequence[str]) -> list[int]:
        """Check one answer, in page order; returns the further pages it shows are needed."""
        self._check_order(number, pagination)
        self._check_not_a_repeat(number, item_ids)
        self._accepted = number
        self._compare_totals(number, pagination)
        if not _counted(pagination):
            return self._after_uncounted_page(number, pagination, len(item_ids))
        return self._after_counted_page(number, pagination)

    def shown_complete(self, distinct_ids: int) -> tuple[bool, str | None]:
        """Whether the walk saw the whole catalogue: its last page, the same totals on every page, and
        with totals every counted id."""
        if not self._finished:
            return False, "the walk did not reach the last page"
        if self._totals_changed is not None:
            return False, self._totals_changed
        if self.total is not None and distinct_ids < self.total:
            return False, f"saw {distinct_ids} distinct packages of the {self.total} Katapult counted"
        return True, None

    def _compare_totals(self, number: int, pagination: Pagination) -> None:
        totals = (pagination.total, pagination.total_pages)
        if self._first_totals is None:
            self._first_totals = totals
            self.total = pagination.total if _counted(pagination) else None
        elif totals != self._first_totals and self._totals_changed is None:
            self._totals_changed = (
                f"Katapult's count changed during the walk: {_described(self._first_totals)} on page 1, "
                f"{_described(totals)} on page {number}"
            )

    def _check_order(self, number: int, pagination: Pagination) -> None:
        if number != self._accepted + 1 or number > self._handed_out:
            raise PaginationError(f"page {number} was accepted out of order (after page {self._accepted})")
        if pagination.current_page != number:
            raise PaginationError(f"asked for page {number}, Katapult answered page {pagination.current_page}")
        bound = min(self._max_pages, self._page_bound or self._max_pages)
        if number > bound:
            raise PaginationError(f"the walk passed {bound} pages without reaching the end")

    def _check_not_a_repeat(self, number: int, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        # surrogatepass: an id with half a surrogate pair (refused later, by records.py) must not stop the walk.
        # Fed an id at a time: hashlib lets go of the interpreter lock for 2 KB or more, and getting it
        # back from the fetchers decoding pages cost the walk's thread 1.2 s over 500 pages (profiled).
        hasher = hashlib.sha256()
        for item_id in item_ids:
            hasher.update(item_id.encode("utf-8", "surrogatepass") + b"\n")
        fingerprint = hasher.digest()
        if fingerprint in self._fingerprints:
            raise PaginationError(f"page {number} repeats the packages of an earlier page: the API is not paging")
        self._fingerprints.add(fingerprint)

    def _after_counted_page(self, number: int, pagination: Pagination) -> list[int]:
        total_pages = pagination.total_pages or 0
        if self._page_bound is None:
            # One page more than first counted follows a catalogue that grows during the walk, so that
            # its new packages land; such a walk is not shown complete (its totals changed).
            self._page_bound = total_pages + 1
        if number < self._handed_out:
            return self._claim_through(total_pages) if total_pages > self._handed_out else []
        if number >= total_pages:
            self._finished = True
            return []
        return self._claim_through(total_pages)

    def _after_uncounted_page(self, number: int, pagination: Pagination, count: int) -> list[int]:
        self._page_bound = None
        if count < pagination.per_page:
            if number >= self._handed_out:
                self._finished = True
            return []
        if number >= self._handed_out:
            return self._claim_through(number + 1)
        return []

    def _claim_through(self, last: int) -> list[int]:
        pages = list(range(self._handed_out + 1, last + 1))
        self._handed_out = max(self._handed_out, last)
        return pages


def _counted(pagination: Pagination) -> bool:
    """Whether a page gives totals to walk by: both of them, and not a large set."""
    return pagination.total is not None and pagination.total_pages is not None and not pagination.large_set


def _described(totals: tuple[int | None, int | None]) -> str:
    total, total_pages = totals
    return f"{_or_unknown(total)} packages in {_or_unknown(total_pages)} pages"


def _or_unknown(value: int | None) -> str:
    return "an unknown number of" if value is None else str(value)
