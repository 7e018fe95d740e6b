"""Pages fetched concurrently and handed out in page order.

A walk stores pages in order, but waiting for page k must not leave the fetchers of k+1, k+2, ...
idle: page numbers are handed to the fetchers ahead of need, so a fetcher that is done takes the next
one at once instead of waiting for the walk. Bounded twice: at most `allowed` requests in flight (the
pacer lowers it as the rate limit runs low; never more than the `concurrency` fetchers), and at most
`window` pages handed out ahead of the one being stored, so memory stays a fixed number of pages
whatever the size of the catalogue. Once a fetch has failed (after the client's own retries) no more
start: the walk will stop at that page. Knows pages only by number; the client and the walk are the
caller's.

Only the walk's thread keeps the books, and it talks to the fetchers through two SimpleQueues, with no
lock of its own: a signal (SIGTERM from cron or systemd, Ctrl-C) raises wherever that thread is, and
an exception raised just as a lock was taken can leave the lock held, and a fetcher waiting on it
forever. The fetchers are daemon threads, so a stopped run does not wait for their requests to end.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeAlias, TypeVar

PageT = TypeVar("PageT")


class _Skipped:
    """What a fetcher answers for a page it did not fetch: another fetch had failed (or the walk was over)."""


_Outcome: TypeAlias = PageT | BaseException | _Skipped


class OrderedFetcher(Generic[PageT]):
    """Use as a context manager; `want()` page numbers, then take them with `next()`, in that order."""

    def __init__(self, fetch: Callable[[int], PageT], concurrency: int, window: int) -> None:
        self._fetch = fetch
        self._concurrency = concurrency
        self._window = max(window, concurrency)
        self._allowed = concurrency
        self._wanted: deque[int] = deque()  # not yet handed out
        self._handed_out: deque[int] = deque()  # in page order, not yet taken by next()
        self._arrived: dict[int, _Outcome[PageT]] = {}
        self._in_flight = 0  # handed out and not arrived
        self._stopped = False  # read by the fetchers: once set, they fetch nothing more
        self._failure: BaseException | None = None  # the first fetch that failed
        self._work: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[int, _Outcome[PageT]]] = queue.SimpleQueue()
        self._fetchers = [
            threading.Thread(target=self._fetcher, name=f"fetch_{n}", daemon=True) for n in range(concurrency)
        ]
        for fetcher in self._fetchers:
            fetcher.start()

    def __enter__(self) -> OrderedFetcher[PageT]:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        self._stopped = True  # nothing handed out but not started is fetched any more
        for _ in self._fetchers:
            self._work.put(None)
        if exc_type is None:  # a walk that ended well waits for its idle fetchers; a stopped one does not
            for fetcher in self._fetchers:
                fetcher.join()

    @property
    def pending(self) -> bool:
        """Pages wanted or handed out that `next()` has not handed over yet."""
        return bool(self._wanted or self._handed_out)

    def want(self, numbers: Iterable[int]) -> None:
        self._wanted.extend(numbers)
        self._hand_out()

    def allow(self, in_flight: int) -> None:
        """Requests allowed in flight from now on; those already sent finish."""
        self._allowed = max(1, min(in_flight, self._concurrency))
        self._hand_out()

    def next(self) -> tuple[int, PageT]:
        """The lowest wanted page, once fetched; its fetch's exception if it failed."""
        number = self._handed_out[0]
        while number not in self._arrived:
            arrived, outcome = self._done.get()  # one C call: a signal leaves it whole
            self._arrived[arrived] = outcome
            self._in_flight -= 1
        self._handed_out.popleft()
        outcome = self._arrived.pop(number)
        self._hand_out()
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, _Skipped):  # a later page's fetch failed first: that is why the walk stops
            raise self._failure or RuntimeError(f"page {number} was not fetched")
        return number, outcome

    def _hand_out(self) -> None:
        # Paced below the fetchers' number, hand out no more than may be in flight; otherwise fill the
        # window, and the fetchers themselves keep `concurrency` requests in flight.
        limit = self._allowed if self._allowed < self._concurrency else self._window
        while self._wanted and self._in_flight < limit and len(self._handed_out) < self._window:
            number = self._wanted.popleft()
            self._handed_out.append(number)
            self._in_flight += 1
            self._work.put(number)

    def _fetcher(self) -> None:
        while (number := self._work.get()) is not None:
            if self._stopped:
                self._done.put((number, _Skipped()))
                continue
            try:
                outcome: _Outcome[PageT] = self._fetch(number)
            except BaseException as error:  # handed to the walk, which raises it in its turn
                self._failure = self._failure or error
                self._stopped = True
                outcome = error
            self._done.put((number, outcome))
