"""The API client against the fake Katapult API: pages, errors, and how long it waits to retry."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from etl.client import KatapultClient, parse_retry_after
from etl.config import RetryPolicy, Settings
from etl.errors import FatalApiError, RetryBudgetExhausted, UnexpectedResponseError
from etl.testing.fakeapi import DEFAULT_TOKEN, Fault


def client_for(api, sleeps, clock=lambda: 0.0, **settings):
    """A client whose sleeps are only recorded, and whose clock stands still unless a test moves it."""
    return KatapultClient(Settings(api_url=api.url, **settings), sleep=sleeps.append, clock=clock, rng=random.Random(7))


def test_a_page_of_the_public_api(api):
    with client_for(api, []) as client:
        page = client.fetch_page(1, 5)

    assert page.number == 1
    assert (page.pagination.current_page, page.pagination.total_pages, page.pagination.total) == (1, 4, 20)
    assert [item["name"] for item in page.items] == ["ROCK-1", "ROCK-3", "ROCK-6", "ROCK-12", "ROCK-18"]
    assert page.rate_limit_permitted == 600 and page.rate_limit_remaining == 599
    assert api.requests[0].headers["User-Agent"].startswith("katapult-etl/")
    assert "Authorization" not in api.requests[0].headers


def test_retry_after_is_honoured_and_backoff_grows_with_jitter(api):
    api.add_fault(Fault(error_code="rate_limit_reached", headers={"Retry-After": "7"}))
    api.add_fault(Fault(status=503), times=3)
    sleeps: list[float] = []

    with client_for(api, sleeps) as client:
        page = client.fetch_page(1, 200)

    assert len(page.items) == 20
    assert len(api.requests) == 5
    assert sleeps[0] == 7.0
    # Full jitter: each wait is drawn from [0, 1 s · 2^(attempt-1)].
    assert 0 <= sleeps[1] <= 2 and 0 <= sleeps[2] <= 4 and 0 <= sleeps[3] <= 8
    assert (client.stats.requests, client.stats.retries) == (5, 4)


def test_attempts_per_request_are_bounded(api):
    api.add_fault(Fault(status=500), times=10)
    sleeps: list[float] = []

    with (
        client_for(api, sleeps, retry=RetryPolicy(max_attempts=3)) as client,
        pytest.raises(RetryBudgetExhausted) as gave_up,
    ):
        client.fetch_page(1, 200)

    assert len(api.requests) == 3 and len(sleeps) == 2
    assert str(gave_up.value) == (
        "gave up on page 1 after 3 attempts: Katapult API refused the request: HTTP 500 unhandled_exception"
    )


def test_the_run_budget_caps_the_total_wait(api):
    api.add_fault(Fault(error_code="rate_limit_reached", headers={"Retry-After": "40"}), times=10)
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=10, run_budget_seconds=100)

    with client_for(api, sleeps, retry=policy) as client, pytest.raises(RetryBudgetExhausted):
        client.fetch_page(1, 200)

    assert sleeps == [40.0, 40.0, 20.0]


def test_a_refusal_is_not_retried(api):
    sleeps: list[float] = []
    with client_for(api, sleeps, token="tok_wrong") as client, pytest.raises(FatalApiError) as refused:
        client.fetch_page(1, 200)

    assert (refused.value.status, refused.value.code) == (403, "invalid_api_token")
    assert len(api.requests) == 1 and sleeps == []


def test_json_of_the_wrong_shape_is_not_retried(api):
    api.add_fault(Fault(body=b'{"virtual_machine_packages": []}'))
    with client_for(api, [], token=DEFAULT_TOKEN) as client, pytest.raises(UnexpectedResponseError) as refused:
        client.fetch_page(1, 200)

    assert str(refused.value) == "page 1 has no 'pagination' object"
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("", None), ("12", 12.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None)],
)
def test_retry_after_in_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date():
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= parse_retry_after(format_datetime(when, usegmt=True)) <= 30
