"""POSTs one notification's body to its webhook: headers, signature, retries (knows nothing of SQL).

Each POST carries `Idempotency-Key: katapult-etl-<notification id>`, the same on every attempt and
every run, so that a receiver can drop a notification it already has (delivery is at least once);
with a secret, `X-Katapult-ETL-Signature: sha256=<HMAC-SHA256 of the body>`, as GitHub signs its
webhooks. 429, 5xx, timeouts and refused or dropped connections are retried a few times; any other
answer is not (a receiver that refuses a notification refuses it again). No message ever holds the
URL's credentials or the secret: errors are words of our own, never the HTTP library's.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests
import tenacity

from . import __version__
from .config import NotifyTarget, is_loopback_url
from .errors import NotificationError, RetriableNotificationError

log = logging.getLogger(__name__)

# A few attempts, close together: what still fails stays pending for the next run (or `notify`), so a
# receiver that is down costs a run seconds, not minutes.
ATTEMPTS = 3
BACKOFF_SECONDS = (1.0, 2.0)  # the waits after the first and the second failed attempt
MAX_RETRY_AFTER = 30.0  # a receiver's Retry-After is honoured up to this
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
IDEMPOTENCY_PREFIX = "katapult-etl-"
SIGNATURE_HEADER = "X-Katapult-ETL-Signature"


def signature(secret: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of the body, keyed with the secret (GitHub's scheme)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def headers_for(notification_id: int, body: bytes, secret: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"katapult-etl/{__version__}",
        "Idempotency-Key": f"{IDEMPOTENCY_PREFIX}{notification_id}",
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    return headers


class WebhookSender:
    """Sends notifications; `session` and `sleep` are injected so that tests never wait."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = ATTEMPTS,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self._session = session or requests.Session()
        self._sleep = sleep
        self._attempts = attempts
        self._timeouts = (connect_timeout, read_timeout)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, target: NotifyTarget, notification_id: int, body: bytes) -> int:
        """POST until the receiver takes it (2xx); returns the attempts made, or raises a
        NotificationError that says why and how many attempts were made."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RetriableNotificationError),
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=lambda state: self._before_sleep(state, target, notification_id),
            reraise=True,
        )
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            self._post(target, notification_id, body)

        try:
            retrying(attempt)
        except NotificationError as error:
            error.attempts = attempts
            raise
        return attempts

    def _post(self, target: NotifyTarget, notification_id: int, body: bytes) -> None:
        try:
            response = self._session.post(
                target.url,  # with its credentials, if any: requests sends them as basic auth
                data=body,
                headers=headers_for(notification_id, body, target.secret),
                timeout=self._timeouts,
                allow_redirects=False,  # a redirected POST would become a GET, or go elsewhere
                proxies={"no_proxy": "*"} if is_loopback_url(target.url) else None,
                stream=True,  # the answer's body is not wanted: closed unread
            )
        except requests.RequestException as error:
            raise _transport_error(error, self._timeouts) from None  # from None: the library's words name the URL
        with response:
            status = response.status_code
            if 200 <= status < 300:
                return
            words = f"HTTP {status}" + (f" {response.reason}" if response.reason else "")
            if status == 429 or status >= 500:
                raise RetriableNotificationError(words, retry_after=_retry_after(response.headers.get("Retry-After")))
            raise NotificationError(words)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetriableNotificationError) and error.retry_after is not None:
            return min(error.retry_after, MAX_RETRY_AFTER)
        return BACKOFF_SECONDS[min(state.attempt_number, len(BACKOFF_SECONDS)) - 1]

    def _before_sleep(self, state: tenacity.RetryCallState, target: NotifyTarget, notification_id: int) -> None:
        seconds = state.next_action.sleep if state.next_action else 0.0
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "notification %d to %s: retrying in %.1f s (attempt %d failed: %s)",
            notification_id,
            target.stored_url,
            seconds,
            state.attempt_number,
            error,
            extra={"notification_id": notification_id, "attempt": state.attempt_number, "error": str(error)},
        )


def _transport_error(error: requests.RequestException, timeouts: tuple[float, float]) -> NotificationError:
    """Why no answer came, in our own words (the library's name the URL, and so its credentials)."""
    if isinstance(error, requests.ConnectTimeout):
        return RetriableNotificationError(f"timed out connecting after {timeouts[0]:g} s")
    if isinstance(error, requests.ReadTimeout):
        return RetriableNotificationError(f"no answer within {timeouts[1]:g} s")
    if isinstance(error, requests.ConnectionError):
        return RetriableNotificationError(_connection_words(error))
    return NotificationError(f"could not send: {type(error).__name__}")


def _connection_words(error: BaseException) -> str:
    """Refused, unresolvable, or dropped: read from the chain of errors under requests' own."""
    cause: BaseException | None = error
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "the name does not resolve"
        cause = cause.__cause__ or cause.__context__ or _first_arg_error(cause)
    return "connection dropped"


def _first_arg_error(error: BaseException) -> BaseException | None:
    """urllib3 keeps the underlying error in an argument (MaxRetryError.reason), not as the cause."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    first = error.args[0] if error.args else None
    return first if isinstance(first, BaseException) else None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
