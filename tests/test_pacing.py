"""Concurrent page fetches, and how they slow down as Katapult's rate-limit allowance runs low."""

from __future__ import annotations

import re

import pytest

from etl.pacing import Allowance, Pacer, pages_in_flight
from etl.testing.catalogue import synthetic_catalogue

from .helpers import query, sqlite_url, sync

PACED = re.compile(r"INFO X-Ratelimit-Remaining is (\d+) of 1000: fetching (\d+) page\(s\) at a time")
LATENCY = 0.1  # long enough that requests sent together are answered together


@pytest.mark.parametrize(
    ("remaining", "permitted", "expected"),
    [
        (None, None, 4),  # no headers: nothing to pace by
        (100, 1000, 4),  # at the reserve, a tenth of the allowance
        (99, 1000, 3),
        (50, 1000, 2),
        (25, 1000, 1),
        (0, 1000, 1),  # never stop: a 429 is retried with backoff
        (8, 20, 4),  # a small allowance: the reserve is two requests per fetcher
        (7, 20, 3),
        (1, None, 1),
    ],
)
def test_pages_in_flight_falls_with_the_remaining_allowance(remaining, permitted, expected):
    assert pages_in_flight(4, remaining, permitted) == expected


def test_one_fetcher_stays_one():
    assert pages_in_flight(1, 0, 600) == 1


def test_the_pacer_follows_the_lowest_count_of_the_last_pages():
    pacer = Pacer(concurrency=4)

    seen = [(left, pacer.observe(left, 1000), pacer.allowed) for left in (99, 101, 102, 98, 97, 60, 103)]

    # 101 and 102 arrived out of order behind 99: still 3. 60 brings 2 until four newer pages pass.
    assert seen == [
        (99, True, 3),
        (101, False, 3),
        (102, False, 3),
        (98, False, 3),
        (97, False, 3),
        (60, True, 2),
        (103, False, 2),
    ]
    assert pacer.remaining == 60
    for _ in range(4):  # a new minute: once the four pages before it have passed
        pacer.observe(500, 1000)
    assert (pacer.remaining, pacer.allowed) == (500, 4)


def test_the_pacer_without_headers_keeps_full_speed():
    pacer = Pacer(concurrency=4)

    assert (pacer.observe(None, None), pacer.allowed, pacer.remaining) == (False, 4, None)


def test_an_allowance_spent_waits_for_the_rest_of_its_minute_once():
    now = [100.0]
    sleeps: list[float] = []
    allowance = Allowance(sleeps.append, lambda: now[0])

    allowance.observe(3, 600)
    assert (allowance.wait_for_room(), allowance.remaining) == (0.0, 3)
    allowance.observe(0, 600)  # seen at 100 s: the minute it counts is over by 160 s
    now[0] = 115.0
    assert (allowance.wait_for_room(), allowance.wait_for_room(), sleeps, allowance.remaining) == (
        45.0,
        0.0,
        [45.0],
        None,
    )


def test_an_allowance_seen_spent_over_a_minute_ago_does_not_wait():
    now = [0.0]
    allowance = Allowance(lambda seconds: None, lambda: now[0])
    allowance.observe(0, 600)
    now[0] = 61.0

    assert allowance.wait_for_room() == 0.0


@pytest.fixture
def slow_catalogue(api):
    api.packages = synthetic_catalogue(1000)
    api.latency = LATENCY
    api.rate_limit_permitted = 1000
    return api


def test_pages_after_the_first_are_fetched_concurrency_at_a_time(cli, tmp_path, slow_catalogue):
    result = sync(cli, sqlite_url(tmp_path), slow_catalogue, "--concurrency", "3", per_page=100)

    assert result.exit_code == 0, result.err
    assert slow_catalogue.peak_in_flight == 3
    assert len(slow_catalogue.requests) == 10


def test_a_run_low_on_allowance_fetches_fewer_pages_at_a_time(cli, tmp_path, slow_catalogue):
    slow_catalogue.reset_rate_limit(used=920)  # page 1 answers with 79 of 1000 remaining

    result = sync(cli, sqlite_url(tmp_path), slow_catalogue, "--concurrency", "4", "-v", per_page=100)

    assert result.exit_code == 0, result.err
    assert slow_catalogue.peak_in_flight == 3
    # Page 1 is fetched alone, so its count is exact; later pages answer in whatever order they arrive.
    slowdowns = [(int(left), int(fetchers)) for left, fetchers in PACED.findall(result.err)]
    assert slowdowns[0] == (79, 3)
    assert [fetchers for _, fetchers in slowdowns] == [3, 2]
    assert 70 <= slowdowns[1][0] < 75  # below three quarters of the reserve of 100
    assert query(sqlite_url(tmp_path), "SELECT status, requests, retries, packages_seen FROM sync_runs") == [
        ("succeeded", 10, 0, 1000)
    ]


def test_a_nearly_spent_allowance_fetches_one_page_at_a_time(cli, tmp_path, slow_catalogue):
    slow_catalogue.reset_rate_limit(used=980)  # 19 left: enough for the walk, not for haste

    result = sync(cli, sqlite_url(tmp_path), slow_catalogue, "--concurrency", "4", per_page=100)

    assert result.exit_code == 0, result.err
    assert slow_catalogue.peak_in_flight == 1
    assert [r.query["page"] for r in slow_catalogue.requests] == [str(page) for page in range(1, 11)]
