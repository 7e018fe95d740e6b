"""The Katapult API client: one page per call, retries, and Katapult's errors as EtlErrors.

It knows HTTP and Katapult's JSON, nothing of pagination strategy or of the database.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
import tenacity
import urllib3.exceptions

from . import __version__
from .config import Settings, is_loopback_url
from .errors import (
    ApiError,
    ApiResponseError,
    ConnectError,
    FatalApiError,
    InvalidArgumentError,
    MalformedResponseError,
    RetriableApiError,
    RetryBudgetExhausted,
    TransportError,
    UnexpectedResponseError,
)
from .pacing import Allowance
from .paginator import Pagination

log = logging.getLogger(__name__)

LIST_PATH = {"core": "/core/v1/virtual_machine_packages", "public": "/public/v1/virtual_machine_packages"}
LIST_KEY = {"core": "virtual_machine_packages", "public": "packages"}
RETRIABLE = (RetriableApiError, TransportError, MalformedResponseError)
# A name that does not resolve is most often a mistyped --api-url: asked once more (a resolver can
# fail once), not for the whole retry budget.
ATTEMPTS_FOR_AN_UNRESOLVED_NAME = 2
# A body is read this much at a time at most (less when less has arrived), so that the deadline of the
# whole answer is checked often even when a server trickles it.
CHUNK_BYTES = 64 * 1024
# Errors while reading a body, named as requests names them when it reads a body itself.
_BODY_ERRORS = {
    urllib3.exceptions.ReadTimeoutError: "ReadTimeout",
    urllib3.exceptions.DecodeError: "ContentDecodingError",
    urllib3.exceptions.ProtocolError: "ChunkedEncodingError",
}


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
    retry_seconds: float = 0.0  # waits between attempts
    failed_seconds: float = 0.0  # attempts that failed and may be retried, summed over the fetchers

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_retry(self, seconds: float) -> None:
        with self._lock:
            self.retries += 1
            self.retry_seconds += seconds

    def count_failed_attempt(self, seconds: float) -> None:
        with self._lock:
            self.failed_seconds += seconds

    @property
    def budget_spent(self) -> float:
        """What the retry budget has paid for: failed attempts and the waits after them."""
        return self.retry_seconds + self.failed_seconds


class KatapultClient:
    """Fetches pages of the VM package list; `sleep`, `clock` (monotonic seconds) and `rng` are injected
    so tests never wait."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        allowance: Allowance | None = None,
    ) -> None:
        self._settings = settings
        # Shared with the other runs of this token in one `sync --all`; else this run's own.
        self.allowance = allowance or Allowance(sleep, clock)
        self._session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self.stats = RequestStats()
        self._url = settings.api_url.rstrip("/") + LIST_PATH[settings.api]
        self._key = LIST_KEY[settings.api]
        self._headers = {"Accept": "application/json", "User-Agent": f"katapult-etl/{__version__}"}
        if settings.token:
            self._headers["Authorization"] = f"Bearer {settings.token}"
        # An API on this machine is asked directly, never through http_proxy: over plain http a proxy
        # would read the token (and could not reach our loopback anyway).
        self._proxies = {"no_proxy": "*"} if is_loopback_url(settings.api_url) else None

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
            return retrying(self._attempt, number, per_page)
        except tenacity.RetryError as gave_up:
            last = gave_up.last_attempt.exception()
            raise RetryBudgetExhausted(
                f"gave up on page {number} after {gave_up.last_attempt.attempt_number} attempts: {last}"
            ) from last

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        policy = self._settings.retry
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ConnectError) and error.unresolvable:
            return state.attempt_number >= min(policy.max_attempts, ATTEMPTS_FOR_AN_UNRESOLVED_NAME)
        return state.attempt_number >= policy.max_attempts or self.stats.budget_spent >= policy.run_budget_seconds

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Retry-After when Katapult sends one, else exponential backoff with full jitter."""
        policy = self._settings.retry
        error = state.outcome.exception() if state.outcome else None
        # Only an error answer carries a Retry-After; a transport error or a bad body has none.
        retry_after = error.retry_after if isinstance(error, ApiResponseError) else None
        if retry_after is not None:
            wanted = retry_after
        else:
            ceiling = min(policy.backoff_max, policy.backoff_initial * 2 ** (state.attempt_number - 1))
            wanted = self._rng.uniform(0, ceiling)
        return max(0.0, min(wanted, policy.run_budget_seconds - self.stats.budget_spent))

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        seconds = state.next_action.sleep if state.next_action else 0.0
        self.stats.count_retry(seconds)
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying in %.1f s (attempt %d failed: %s)",
            seconds,
            state.attempt_number,
            error,
            extra={
                "page": state.args[0],
                "attempt": state.attempt_number,
                "delay_s": round(seconds, 3),
                "error": str(error),
            },
        )

    def _attempt(self, number: int, per_page: int) -> Page:
        """One attempt; the time of one that failed and may be retried is charged to the retry budget."""
        self.allowance.wait_for_room()  # not charged: waiting for a new minute is not a failed attempt
        started = self._clock()
        try:
            return self._fetch_once(number, per_page, started + self._settings.read_timeout)
        except RETRIABLE:
            self.stats.count_failed_attempt(self._clock() - started)
            raise

    def _fetch_once(self, number: int, per_page: int, deadline: float) -> Page:
        params = {"page": str(number), "per_page": str(per_page), **self._settings.scope.query}
        self.stats.count_request()
        try:
            # stream: the body is read here, in chunks, against the deadline of the whole answer; the
            # socket's own timeout (read_timeout) still bounds each wait for the next bytes.
            response = self._session.get(
                self._url,
                params=params,
                headers=self._headers,
                timeout=(self._settings.connect_timeout, self._settings.read_timeout),
                proxies=self._proxies,
                stream=True,
            )
            # Closing drops the connection of an answer not read to its end; a whole one was already
            # handed back to the pool for the next request.
            with contextlib.closing(response):
                body = self._read_body(number, response, deadline)
        except urllib3.exceptions.HTTPError as error:
            name = next((n for kind, n in _BODY_ERRORS.items() if isinstance(error, kind)), type(error).__name__)
            raise TransportError(f"no whole answer for page {number}: {name}") from error
        except requests.exceptions.SSLError as error:
            certificate = _unverified_certificate(error)
            if certificate is None:
                raise TransportError(f"no whole answer for page {number}: {type(error).__name__}") from error
            # Not retried: a certificate that failed verification fails it again on every attempt.
            raise ApiError(
                f"could not verify the TLS certificate of {self._settings.api_url}: {certificate}"
            ) from error
        except requests.ConnectionError as error:
            raise self._connection_error(number, error) from error
        except (
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,  # a corrupt gzip body: as retriable as a cut one
        ) as error:
            raise TransportError(f"no whole answer for page {number}: {type(error).__name__}") from error
        except requests.RequestException as error:
            raise ApiError(f"could not request page {number}: {type(error).__name__}: {error}") from error
        if response.status_code >= 400:
            raise error_from_response(response, body)
        page = parse_page(number, self._key, response, body)
        self.allowance.observe(page.rate_limit_remaining, page.rate_limit_permitted)
        return page

    def _connection_error(self, number: int, error: requests.ConnectionError) -> TransportError:
        """Why no connection was made, in words that name the URL; a connection that broke once made
        is a body not wholly received."""
        url = self._settings.api_url
        if isinstance(error, requests.ConnectTimeout):
            return ConnectError(f"cannot connect to {url}: timed out after {self._settings.connect_timeout:g} s")
        causes = list(_causes(error))
        if any(isinstance(cause, socket.gaierror) for cause in causes):
            return ConnectError(f"cannot connect to {url}: the name does not resolve", unresolvable=True)
        if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
            return ConnectError(f"cannot connect to {url}: connection refused")
        return TransportError(f"no whole answer for page {number}: {type(error).__name__}")

    def _read_body(self, number: int, response: requests.Response, deadline: float) -> bytes:
        """The whole (decoded) body, or TransportError past the deadline, or UnexpectedResponseError
        past the size bound (not retried: the same page comes back as big), read no further than it."""
        bound = self._settings.max_page_bytes
        if (_int_header(response, "Content-Length") or 0) > bound:
            raise UnexpectedResponseError(f"page {number} is larger than {_size(bound)}")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
            if self._clock() > deadline:
                raise TransportError(f"no whole answer for page {number} within {self._settings.read_timeout:g} s")
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > bound:
                raise UnexpectedResponseError(f"page {number} is larger than {_size(bound)}")
            chunks.append(chunk)


def _size(count: int) -> str:
    megabytes, rest = divmod(count, 1024 * 1024)
    return f"{megabytes} MB" if megabytes and not rest else f"{count} bytes"


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it, through urllib3's MaxRetryError.reason too."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else cause.__cause__ or cause.__context__


def _unverified_certificate(error: BaseException) -> str | None:
    """Why the server's certificate failed verification (the ssl module's words), or None if it did not."""
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or "certificate verify failed"
    return None


def error_from_response(response: requests.Response, body: bytes) -> ApiResponseError:
    """Katapult's error body as the right kind of EtlError: retriable (429, 5xx) or fatal."""
    error = _error_body(body)
    status = response.status_code
    kind: type[ApiResponseError] = FatalApiError
    retry_after = None
    if status == 429 or status >= 500:
        kind = RetriableApiError
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
    elif error.get("code") == "invalid_argument":
        kind = InvalidArgumentError
    return kind(
        status=status,
        code=error.get("code"),
        description=error.get("description"),
        detail=error.get("detail"),
        retry_after=retry_after,
    )


def _error_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
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


def parse_page(number: int, key: str, response: requests.Response, raw: bytes) -> Page:
    try:
        body = json.loads(raw)
    except ValueError as error:
        start = raw[:40].decode("utf-8", "replace").replace("\n", " ")
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
    def integer(name: str) -> int:
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UnexpectedResponseError(f"page {number}: pagination.{name} is {value!r}, not a whole number")
        return value

    def optional_integer(name: str) -> int | None:
        return None if raw.get(name) is None else integer(name)

    return Pagination(
        current_page=integer("current_page"),
        total_pages=optional_integer("total_pages"),
        total=optional_integer("total"),
        per_page=integer("per_page"),
        large_set=bool(raw.get("large_set", False)),
    )


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None
