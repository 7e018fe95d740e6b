"""The Katapult API client: one page per call, retries, and Katapult's errors as EtlErrors.

It knows HTTP and Katapult's JSON, nothing of pagination strategy or of the database.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests
import tenacity

from . import __version__
from .config import Settings
from .errors import (
    ApiError,
    ApiResponseError,
    FatalApiError,
    InvalidArgumentError,
    MalformedResponseError,
    RetriableApiError,
    RetryBudgetExhausted,
    TransportError,
    UnexpectedResponseError,
)

log = logging.getLogger(__name__)

LIST_PATH = {"core": "/core/v1/virtual_machine_packages", "public": "/public/v1/virtual_machine_packages"}
LIST_KEY = {"core": "virtual_machine_packages", "public": "packages"}
RETRIABLE = (RetriableApiError, TransportError, MalformedResponseError)


@dataclass(frozen=True)
class Pagination:
    current_page: int
    total_pages: int | None
    total: int | None
    per_page: int
    large_set: bool


@dataclass(frozen=True)
class Page:
    """One page of the catalogue as Katapult sent it."""

    number: int
    pagination: Pagination
    items: list[dict[str, Any]]
    rate_limit_remaining: int | None = None
    rate_limit_permitted: int | None = None


@dataclass
class RequestStats:
    """What one run cost in HTTP terms; shared by the threads that fetch pages."""

    requests: int = 0
    retries: int = 0
    retry_seconds: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_retry(self, seconds: float) -> None:
        with self._lock:
            self.retries += 1
            self.retry_seconds += seconds


class KatapultClient:
    """Fetches pages of the VM package list; `sleep` and `rng` are injected so tests never wait."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._session = session or requests.Session()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.stats = RequestStats()
        self._url = settings.api_url.rstrip("/") + LIST_PATH[settings.api]
        self._key = LIST_KEY[settings.api]
        self._headers = {"Accept": "application/json", "User-Agent": f"katapult-etl/{__version__}"}
        if settings.token:
            self._headers["Authorization"] = f"Bearer {settings.token}"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> KatapultClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch_page(self, number: int, per_page: int) -> Page:
        """One page, retried on 429, 5xx, timeouts, dropped connections and unreadable bodies."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RETRIABLE),
            stop=self._stop,
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
        )
        try:
            return retrying(self._fetch_once, number, per_page)
        except tenacity.RetryError as gave_up:
            last = gave_up.last_attempt.exception()
            raise RetryBudgetExhausted(
                f"gave up on page {number} after {gave_up.last_attempt.attempt_number} attempts: {last}"
            ) from last

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        policy = self._settings.retry
        return (
            state.attempt_number >= policy.max_attempts
            or self.stats.retry_seconds >= policy.run_budget_seconds
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Retry-After when Katapult sends one, else exponential backoff with full jitter."""
        policy = self._settings.retry
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            wanted = retry_after
        else:
            ceiling = min(policy.backoff_max, policy.backoff_initial * 2 ** (state.attempt_number - 1))
            wanted = self._rng.uniform(0, ceiling)
        return max(0.0, min(wanted, policy.run_budget_seconds - self.stats.retry_seconds))

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        seconds = state.next_action.sleep if state.next_action else 0.0
        self.stats.count_retry(seconds)
        error = state.outcome.exception() if state.outcome else None
        log.warning("retrying in %.1f s (attempt %d failed: %s)", seconds, state.attempt_number, error)

    def _fetch_once(self, number: int, per_page: int) -> Page:
        params = {"page": str(number), "per_page": str(per_page), **self._settings.scope.query}
        self.stats.count_request()
        try:
            response = self._session.get(
                self._url,
                params=params,
                headers=self._headers,
                timeout=(self._settings.connect_timeout, self._settings.read_timeout),
            )
        except requests.exceptions.SSLError as error:
            certificate = _unverified_certificate(error)
            if certificate is None:
                raise TransportError(f"no whole answer for page {number}: {type(error).__name__}") from error
            # Not retried: a certificate that failed verification fails it again on every attempt.
            raise ApiError(f"could not verify the TLS certificate of {self._settings.api_url}: {certificate}") from error
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
            raise TransportError(f"no whole answer for page {number}: {type(error).__name__}") from error
        except requests.RequestException as error:
            raise ApiError(f"could not request page {number}: {type(error).__name__}: {error}") from error
        if response.status_code >= 400:
            raise error_from_response(response)
        return parse_page(number, self._key, response)


def _unverified_certificate(error: BaseException) -> str | None:
    """Why the server's certificate failed verification (the ssl module's words), or None if it did not."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    return None if cause is None else cause.verify_message or "certificate verify failed"


def error_from_response(response: requests.Response) -> ApiResponseError:
    """Katapult's error body as the right kind of EtlError: retriable (429, 5xx) or fatal."""
    error = _error_body(response)
    args = dict(
        status=response.status_code,
        code=error.get("code"),
        description=error.get("description"),
        detail=error.get("detail"),
    )
    if response.status_code == 429 or response.status_code >= 500:
        return RetriableApiError(**args, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if args["code"] == "invalid_argument":
        return InvalidArgumentError(**args)
    return FatalApiError(**args)


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, in either of its two forms (seconds, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_page(number: int, key: str, response: requests.Response) -> Page:
    try:
        body = response.json()
    except ValueError as error:
        start = response.text[:40].replace("\n", " ")
        raise MalformedResponseError(f"page {number} is not JSON (it starts {start!r})") from error
    if not isinstance(body, dict) or not isinstance(body.get("pagination"), dict):
        raise UnexpectedResponseError(f"page {number} has no 'pagination' object")
    items = body.get(key)
    if not isinstance(items, list):
        raise UnexpectedResponseError(f"page {number} has no '{key}' list")
    return Page(
        number=number,
        pagination=parse_pagination(number, body["pagination"]),
        items=items,
        rate_limit_remaining=_int_header(response, "X-Ratelimit-Remaining"),
        rate_limit_permitted=_int_header(response, "X-Ratelimit-Permitted"),
    )


def parse_pagination(number: int, raw: dict[str, Any]) -> Pagination:
    def integer(name: str, *, nullable: bool = False) -> int | None:
        value = raw.get(name)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise UnexpectedResponseError(f"page {number}: pagination.{name} is {value!r}, not a whole number")
        return value

    return Pagination(
        current_page=integer("current_page"),
        total_pages=integer("total_pages", nullable=True),
        total=integer("total", nullable=True),
        per_page=integer("per_page"),
        large_set=bool(raw.get("large_set", False)),
    )


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None

