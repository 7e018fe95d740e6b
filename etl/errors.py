"""The one exception tree of katapult-etl: every error the tool raises on purpose is an EtlError.

Each error knows the exit code the CLI should end with, so the CLI maps errors to exits in one place.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_MASS_REMOVAL = 4
EXIT_LOCKED = 75  # EX_TEMPFAIL: cron overlap is normal, not an incident


class EtlError(Exception):
    """Root of every error katapult-etl raises on purpose."""

    exit_code = EXIT_FAILED


class ConfigError(EtlError, ValueError):
    """The settings or command-line arguments are unusable."""

    exit_code = EXIT_USAGE


class ApiError(EtlError):
    """The Katapult API could not be read."""


class ApiResponseError(ApiError):
    """Katapult answered with an error status (and usually an error body)."""

    def __init__(
        self,
        status: int,
        code: str | None = None,
        description: str | None = None,
        detail: Any = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.description = description
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        words = f"Katapult API refused the request: HTTP {self.status}"
        if self.code:
            words += f" {self.code}"
        if self.description:
            words += f": {self.description}"
        return words


class RetriableApiError(ApiResponseError):
    """A refusal that may pass: 429 rate_limit_reached and every 5xx."""


class FatalApiError(ApiResponseError):
    """A refusal that asking again cannot fix: a bad token, a missing scope, an unknown organization."""


class InvalidArgumentError(FatalApiError):
    """400 invalid_argument: Katapult does not accept one of the query parameters (e.g. per_page)."""


class TransportError(ApiError):
    """The request did not get a whole answer: timeout, refused or dropped connection."""


class ConnectError(TransportError):
    """No connection to the API at all: its name does not resolve, it refuses, or connecting timed out."""

    def __init__(self, message: str, *, unresolvable: bool = False) -> None:
        super().__init__(message)
        self.unresolvable = unresolvable


class MalformedResponseError(ApiError):
    """The answer is not JSON, or not the JSON Katapult sends for this endpoint."""


class UnexpectedResponseError(ApiError):
    """JSON, but not shaped like Katapult's list answer: asking again will not change it."""


class RetryBudgetExhausted(ApiError):
    """Retries stopped: too many attempts for one request, or the run's retry time is spent."""


class PaginationError(EtlError):
    """The pages do not add up to one walk of the catalogue (wrong page, a loop, no end)."""


class RecordError(EtlError, ValueError):
    """A package in the API's answer cannot be stored as it is.

    `package_id` is the package's id when it has a usable one (so that its previous version can be
    kept), None when it has not; `reason` says what is wrong, without the id.
    """

    def __init__(self, reason: str, package_id: str | None = None) -> None:
        self.reason = reason
        self.package_id = package_id
        super().__init__(reason if package_id is None else f"package {package_id}: {reason}")


class DatabaseError(EtlError):
    """The database could not be reached, locked us out, or is at an unknown revision."""


class UnknownPackageError(EtlError):
    """No package, or more than one, has the id or permalink asked about."""


class RunLockedError(EtlError):
    """Another sync of the same scope holds the run lock."""

    exit_code = EXIT_LOCKED


class MetricsError(EtlError):
    """The metrics file (--metrics-file) could not be written."""


class NotificationError(EtlError):
    """A notification could not be delivered to its webhook; `attempts` is how many POSTs were sent."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class RetriableNotificationError(NotificationError):
    """A delivery that may pass if sent again: 429, 5xx, a timeout, a refused or dropped connection;
    `retry_after` is the receiver's Retry-After, in seconds, when it sent one."""

    def __init__(self, message: str, attempts: int = 1, retry_after: float | None = None) -> None:
        super().__init__(message, attempts)
        self.retry_after = retry_after


def describe(error: BaseException) -> str:
    """A database error in one line, without the SQL statement and parameters SQLAlchemy appends."""
    original = getattr(error, "orig", None) or error
    # PostgreSQL's first line says what went wrong; the next ones quote the statement ("LINE 2: ...").
    first = str(original).strip().split("\n")[0]
    return " ".join(first.split()) or type(original).__name__
