"""Pages fetched concurrently and handed out in page order.

A walk stores pages in order, but waiting for page k must not leave the fetchers of k+1, k+2, ...
idle: each fetcher starts the next wanted page the moment its own is done, not when the page being
stored is. Bounded twice: at most `allowed` requests in flight (the pacer lowers it as the rate limit
runs low), and at most `window` pages fetched ahead of the one being stored, so memory stays a
fixed number of pages, whatever the size of the catalogue. Once a fetch has failed (after the client's own retries) no more are started: the
walk will stop at that page. Knows pages only by number; the client and the walk are the caller's.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

PageT = TypeVar("PageT")


class OrderedFetcher(Generic[PageT]):
    """Use as a context manager; `want()` page numbers, then take them with `next()`, in that order."""

    def __init__(self, fetch: Callable[[int], PageT], concurrency: int, window: int) -> None:
        self._fetch = fetch
        self._window = max(window, concurrency)
        self._allowed = concurrency
        self._lock = threading.Lock()
        self._wanted: deque[int] = deque()
        self._ahead: deque[tuple[int, Future[PageT]]] = deque()  # in page order; fetched or in flight
        self._in_flight = 0
        self._stopped = False  # closed, or a fetch failed
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch")

    def __enter__(self) -> OrderedFetcher[PageT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._stopped = True
            for _, future in self._ahead:
                future.cancel()
        self._pool.shutdown(wait=True)

    @property
    def pending(self) -> bool:
        """Pages wanted or fetched that `next()` has not handed out yet."""
        with self._lock:
            return bool(self._wanted or self._ahead)

    def want(self, numbers: Iterable[int]) -> None:
        with self._lock:
            self._wanted.extend(numbers)
            self._start_more()

    def allow(self, in_flight: int) -> None:
        """Requests allowed in flight from now on; those already sent finish."""
        with self._lock:
            self._allowed = max(1, in_flight)
            self._start_more()

    def next(self) -> tuple[int, PageT]:
        """The lowest wanted page, once fetched; its fetch's exception if it failed."""
        with self._lock:
            number, future = self._ahead.popleft()
            self._start_more()  # its place in the window is free
        return number, future.result()

    def _start_more(self) -> None:
        # Called with the lock held, from the walk's thread or from a fetcher that just finished.
        while (
            not self._stopped
            and self._wanted
            and self._in_flight < self._allowed
            and len(self._ahead) < self._window
        ):
            number = self._wanted.popleft()
            self._in_flight += 1
            self._ahead.append((number, self._pool.submit(self._fetch_and_start_more, number)))

    def _fetch_and_start_more(self, number: int) -> PageT:
        failed = True
        try:
            page = self._fetch(number)
            failed = False
            return page
        finally:
            with self._lock:
                self._in_flight -= 1
                self._stopped = self._stopped or failed
                self._start_more()
