"""Every request and every run has a deadline, and every page a size: trickling bodies, retry budgets
that count the failed attempts, pages over the bound, corrupt gzip, and the bound on --concurrency.

Where time matters the client's clock is injected and moved by the fake API (`api.on_answer`); the few
tests that need a server really trickling keep it to about a second, and that server's body is short,
so that even the old code (no deadline on a body) ends within seconds.
"""

from __future__ import annotations

import gzip
import random
import re
import time

import pytest

from etl.client import KatapultClient
from etl.config import MAX_CONCURRENCY, MAX_PAGE_BYTES, RetryPolicy, Settings
from etl.errors import RetryBudgetExhausted, UnexpectedResponseError
from etl.testing.fakeapi import ERRORS, Fault

from .helpers import (
    CONFIRMING,
    assert_changed_nothing,
    assert_landed,
    catalogue_tables,
    every_table,
    runs,
    sync_in_fives,
)

# 40 bytes sent a byte every 0.1 s: four seconds for the whole body, a read timeout of 1 s cuts it.
TRICKLE = Fault(body=b'{"pagination": null, "packages": [] }   ', trickle=0.1)


class Clock:
    """Monotonic seconds that move only when a test moves them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_client(api, sleeps: list[float], clock=lambda: 0.0, **settings) -> KatapultClient:
    return KatapultClient(Settings(api_url=api.url, **settings), sleep=sleeps.append, clock=clock, rng=random.Random(7))


def unavailable() -> str:
    status, description = ERRORS["service_unavailable"]
    return f"Katapult API refused the request: HTTP {status} service_unavailable: {description}"


# -- the read timeout bounds the whole answer ------------------------------------------------------


def test_a_trickling_body_fails_its_attempt_at_the_read_timeout(api):
    """A real server sending a byte every 0.1 s: each byte beats the socket timeout, the whole does not."""
    api.add_fault(TRICKLE)
    sleeps: list[float] = []

    with (
        make_client(api, sleeps, clock=time.monotonic, read_timeout=1.0, retry=RetryPolicy(max_attempts=1)) as client,
        pytest.raises(RetryBudgetExhausted) as gave_up,
    ):
        client.fetch_page(1, 200)

    assert str(gave_up.value) == "gave up on page 1 after 1 attempts: no whole answer for page 1 within 1 s"
    assert client.stats.requests == 1 and sleeps == []


def test_an_answer_that_takes_longer_than_the_read_timeout_is_retried(api):
    """The clock says 31 s passed while the server answered: past the 30 s deadline, retried, then fine."""
    clock = Clock()
    moves = iter([31.0])
    api.on_answer = lambda request: setattr(clock, "now", clock.now + next(moves, 0.0))
    sleeps: list[float] = []

    with make_client(api, sleeps, clock=clock) as client:
        page = client.fetch_page(1, 200)

    assert len(page.items) == 20
    assert (client.stats.requests, client.stats.retries, client.stats.failed_seconds) == (2, 1, 31.0)


def test_a_trickling_page_is_retried_and_the_run_lands(cli, database_url, api, seeded):
    api.add_fault(Fault(**{**TRICKLE.__dict__, "page": 2}))

    result = sync_in_fives(cli, database_url, api, "--read-timeout", "1")

    assert_landed(database_url, api, seeded, result, retries=1, requests=4 + CONFIRMING)
    assert re.search(
        r"WARNING .*retrying in [0-9.]+ s \(attempt 1 failed: no whole answer for page 2 within 1 s\)", result.err
    ), result.err


# -- the retry budget pays for failed attempts as well as for the waits ----------------------------


def test_the_retry_budget_counts_the_time_of_failed_attempts(api):
    """Each failed attempt takes 20 s by the clock: a 100 s budget is spent after three, waits included."""
    clock = Clock()
    api.on_answer = lambda request: setattr(clock, "now", clock.now + 20.0)
    api.add_fault(Fault(status=503, headers={"Retry-After": "40"}), times=10)
    sleeps: list[float] = []

    retry = RetryPolicy(max_attempts=10, run_budget_seconds=100)
    with make_client(api, sleeps, clock=clock, retry=retry) as client, pytest.raises(RetryBudgetExhausted) as gave_up:
        client.fetch_page(1, 200)

    # 20 failed + 40 waited, 20 + 20 more (the wait cut to what is left), then the third attempt spends it.
    assert sleeps == [40.0, 20.0]
    assert len(api.requests) == 3
    assert str(gave_up.value) == f"gave up on page 1 after 3 attempts: {unavailable()}"
    assert (client.stats.retry_seconds, client.stats.failed_seconds) == (60.0, 60.0)


def test_a_trickling_server_is_given_up_on_within_the_retry_budget(cli, database_url, api, seeded):
    """The issue's case, shortened: every answer trickles; the run fails within its budget, not hours."""
    api.add_fault(Fault(**{**TRICKLE.__dict__, "page": 2}), times=8)

    result = sync_in_fives(cli, database_url, api, "--read-timeout", "1", "--retry-budget", "1.5")

    message = result.err.splitlines()[-1].removeprefix("katapult-etl: ")
    assert re.fullmatch(r"gave up on page 2 after [12] attempts: no whole answer for page 2 within 1 s", message)
    assert_changed_nothing(database_url, seeded, result, message)


# -- a page has a size bound ------------------------------------------------------------------------


def test_a_page_over_the_bound_is_refused_without_retrying(api):
    with make_client(api, [], max_page_bytes=1000) as client, pytest.raises(UnexpectedResponseError) as refused:
        client.fetch_page(1, 200)

    assert str(refused.value) == "page 1 is larger than 1000 bytes"
    assert len(api.requests) == 1


def test_a_compressed_page_is_read_no_further_than_50_mb(api):
    """51 MB of zeros in 50 KB of gzip: the size the Content-Length promises is no bound; the reading is."""
    bomb = gzip.compress(b"0" * (MAX_PAGE_BYTES + 1024 * 1024))
    api.add_fault(Fault(body=bomb, headers={"Content-Encoding": "gzip"}))

    with make_client(api, []) as client, pytest.raises(UnexpectedResponseError) as refused:
        client.fetch_page(1, 200)

    assert MAX_PAGE_BYTES == 50 * 1024 * 1024
    assert str(refused.value) == "page 1 is larger than 50 MB"
    assert len(api.requests) == 1


def test_a_page_over_the_bound_fails_the_run_and_changes_nothing(cli, database_url, api, seeded):
    api.add_fault(Fault(body=gzip.compress(b" " * (MAX_PAGE_BYTES + 1)), headers={"Content-Encoding": "gzip"}, page=2))

    result = sync_in_fives(cli, database_url, api)

    assert_changed_nothing(database_url, seeded, result, "page 2 is larger than 50 MB")


# -- a corrupt compressed body is retried like a cut one -------------------------------------------

CORRUPT_GZIP = {
    "not gzip at all": b"this is not gzip",
    "gzip cut short, then garbage": gzip.compress(b'{"pagination": {}}' * 50)[:30] + b"\x00garbage\xff" * 4,
}


@pytest.mark.parametrize("body", CORRUPT_GZIP.values(), ids=CORRUPT_GZIP.keys())
def test_a_corrupt_gzip_body_is_retried(api, body):
    api.add_fault(Fault(body=body, headers={"Content-Encoding": "gzip"}))
    sleeps: list[float] = []

    with make_client(api, sleeps) as client:
        page = client.fetch_page(1, 200)

    assert len(page.items) == 20
    assert (client.stats.requests, client.stats.retries, len(sleeps)) == (2, 1, 1)


def test_a_corrupt_gzip_page_is_retried_and_the_run_lands(cli, database_url, api, seeded):
    api.add_fault(Fault(body=b"this is not gzip", headers={"Content-Encoding": "gzip"}, page=2))

    result = sync_in_fives(cli, database_url, api)

    assert_landed(database_url, api, seeded, result, retries=1, requests=4 + CONFIRMING)
    assert "attempt 1 failed: no whole answer for page 2: ContentDecodingError" in result.err


# -- --concurrency has an upper bound --------------------------------------------------------------


def test_concurrency_over_the_bound_is_a_usage_error_and_writes_nothing(cli, database_url, api):
    assert MAX_CONCURRENCY == 16

    result = sync_in_fives(cli, database_url, api, "--concurrency", "17")

    assert (result.exit_code, result.out, result.err) == (
        2,
        "",
        "katapult-etl: --concurrency must be between 1 and 16, not 17\n",
    )
    assert api.requests == []
    assert every_table(database_url) == {}


def test_concurrency_at_the_bound_is_accepted(cli, database_url, api):
    result = sync_in_fives(cli, database_url, api, "--concurrency", "16")

    assert result.exit_code == 0, result.err
    assert runs(database_url) == [("succeeded", None)]
    assert len(catalogue_tables(database_url)["packages"]) == 20
