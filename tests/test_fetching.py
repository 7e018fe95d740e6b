"""OrderedFetcher: pages handed out in order, fetched concurrently and ahead, within its two bounds.

The fetch function here is a plain function that blocks on events the test controls, so each test
knows exactly which fetches have started; nothing waits on a clock.
"""

from __future__ import annotations

import threading

import pytest

from etl.fetching import OrderedFetcher

WAIT = 10  # seconds: only reached when a test is about to fail


class Pages:
    """A fetch function whose pages each return only once released; it records what it was asked."""

    def __init__(self, released: set[int] | None = None) -> None:
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.gates: dict[int, threading.Event] = {}
        self.failing: set[int] = set()
        self.changed = threading.Condition(self.lock)
        for number in released or ():
            self.gate(number).set()

    def gate(self, number: int) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(number, threading.Event())

    def release(self, *numbers: int) -> None:
        for number in numbers:
            self.gate(number).set()

    def __call__(self, number: int) -> str:
        with self.changed:
            self.started.append(number)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.changed.notify_all()
        try:
            assert self.gate(number).wait(WAIT), f"page {number} was never released"
            if number in self.failing:
                raise RuntimeError(f"page {number} failed")
            return f"page {number}"
        finally:
            with self.changed:
                self.in_flight -= 1
                self.changed.notify_all()

    def wait_started(self, count: int) -> list[int]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.started) >= count, WAIT), self.started
            return sorted(self.started)


def test_pages_come_out_in_page_order_whatever_order_they_are_fetched_in():
    pages = Pages()
    with OrderedFetcher(pages, concurrency=3, window=6) as fetcher:
        fetcher.want(range(1, 7))
        pages.wait_started(3)
        pages.release(3, 2, 6, 5, 4, 1)  # the first page last

        taken = [fetcher.next() for _ in range(6)]

        assert taken == [(n, f"page {n}") for n in range(1, 7)]
        assert not fetcher.pending


def test_a_slow_page_does_not_idle_the_other_fetchers_up_to_the_window():
    pages = Pages(released=set(range(2, 20)))  # page 1 holds up the order
    with OrderedFetcher(pages, concurrency=2, window=4) as fetcher:
        fetcher.want(range(1, 11))

        # Page 1 is still in flight, yet its neighbours are fetched until the window is full.
        assert pages.wait_started(4) == [1, 2, 3, 4]
        assert len(pages.started) == 4  # and no further: the window holds four pages
        pages.release(1)
        assert [fetcher.next()[0] for _ in range(10)] == list(range(1, 11))
    assert pages.peak_in_flight <= 2


def test_taking_a_page_frees_its_place_in_the_window():
    pages = Pages(released=set(range(1, 10)))
    with OrderedFetcher(pages, concurrency=1, window=3) as fetcher:
        fetcher.want(range(1, 10))
        assert pages.wait_started(3) == [1, 2, 3]

        assert fetcher.next() == (1, "page 1")

        assert pages.wait_started(4) == [1, 2, 3, 4]


def test_never_more_requests_in_flight_than_allowed_and_allow_lowers_it():
    pages = Pages()
    with OrderedFetcher(pages, concurrency=4, window=16) as fetcher:
        fetcher.allow(2)
        fetcher.want(range(1, 9))
        assert pages.wait_started(2) == [1, 2]
        pages.release(1)
        assert fetcher.next() == (1, "page 1")
        assert pages.wait_started(3) == [1, 2, 3]  # one taken, one more started: still two at a time
        assert pages.in_flight == 2
        fetcher.allow(4)
        assert pages.wait_started(5) == [1, 2, 3, 4, 5]
        pages.release(*range(2, 9))
        assert [fetcher.next()[0] for _ in range(7)] == list(range(2, 9))
    assert pages.peak_in_flight == 4


def test_a_failed_fetch_raises_when_its_turn_comes_and_the_rest_are_not_started():
    pages = Pages(released=set(range(1, 50)))
    pages.failing.add(2)
    with pytest.raises(RuntimeError, match="page 2 failed"), OrderedFetcher(pages, concurrency=1, window=2) as fetcher:
        fetcher.want(range(1, 50))
        assert fetcher.next() == (1, "page 1")
        fetcher.next()
    assert len(pages.started) <= 4  # pages 1 and 2, and at most the window of two behind them: not 49


def test_no_fetch_starts_after_one_has_failed():
    pages = Pages(released=set(range(1, 50)))
    pages.failing.add(2)
    with OrderedFetcher(pages, concurrency=1, window=8) as fetcher:
        fetcher.want(range(1, 50))
        assert fetcher.next() == (1, "page 1")
        with pytest.raises(RuntimeError, match="page 2 failed"):
            fetcher.next()
        fetcher.want([50])
    assert pages.started == [1, 2]


def test_pages_wanted_later_are_fetched_too():
    pages = Pages(released={1, 2, 3})
    with OrderedFetcher(pages, concurrency=2, window=4) as fetcher:
        fetcher.want([1])
        assert fetcher.next() == (1, "page 1")
        assert not fetcher.pending
        fetcher.want([2, 3])
        assert fetcher.pending
        assert [fetcher.next() for _ in range(2)] == [(2, "page 2"), (3, "page 3")]
