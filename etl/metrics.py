"""The last run as Prometheus metrics, in a file for node_exporter's textfile collector, or pushed to a
Prometheus Pushgateway (where a pod has no textfile folder).

The file is replaced atomically (written beside, then renamed over), so the collector never reads half
of it. A failed run keeps the last success's timestamp, read back from the file it replaces.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from .config import mask_password
from .errors import ConfigError, MetricsError
from .results import ChangeType, RunCounts, RunResult, RunStatus, SchemaChanges

PREFIX = "katapult_etl"
STATUSES = (RunStatus.SUCCEEDED, RunStatus.INCOMPLETE, RunStatus.FAILED)
CHANGES = (ChangeType.CREATED, ChangeType.UPDATED, ChangeType.RESTORED, ChangeType.REMOVED, ChangeType.UNCHANGED)
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"
PUSHGATEWAY_JOB = "katapult_etl"
PUSH_TIMEOUT_SECONDS = 10.0
# Prometheus' text exposition format, as the Pushgateway takes it.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunReport:
    """What the metrics say about one run; `counts` is None for a failed run (they died with it)."""

    scope: str
    status: str
    exit_code: int
    finished_at: float  # Unix time
    seconds: float
    counts: RunCounts | None = None
    notifications: PendingNotifications | None = None
    schema_changes: SchemaChanges | None = None
    mass_update: bool = False


@dataclass(frozen=True)
class PendingNotifications:
    """The notifications still pending after the run (of every run and target), and the oldest one's age."""

    count: int
    oldest_age_seconds: float


def report_of(result: RunResult, seconds: float, finished_at: float) -> RunReport:
    pending = None
    if result.notifications is not None:
        oldest = result.notifications.oldest_created_at
        age = 0.0 if oldest is None else max(0.0, finished_at - oldest.timestamp())
        pending = PendingNotifications(result.notifications.pending, age)
    return RunReport(
        result.scope,
        result.status,
        result.exit_code,
        finished_at,
        seconds,
        result.counts,
        pending,
        result.schema_changes,
        result.mass_update is not None,
    )


def check_metrics_path(path: Path, dry_run: bool) -> None:
    """Before the run: a metrics file that cannot be written is a usage error, found before any work."""
    if dry_run:
        raise ConfigError("--metrics-file records real runs: a --dry-run cannot write it")
    if path.is_dir():
        raise ConfigError(f"cannot write the metrics file {path}: it is a folder")
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the metrics file {path}: {folder} is not a writable folder")
    if path.suffix != ".prom":
        log.warning(
            "the metrics file %s does not end in .prom: node_exporter's textfile collector will not read it", path
        )


def check_pushgateway_url(url: str, dry_run: bool) -> None:
    """Before the run: a Pushgateway URL that cannot be one is a usage error."""
    if dry_run:
        raise ConfigError("--pushgateway records real runs: a --dry-run cannot push")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--pushgateway must be an http:// or https:// URL, not {mask_password(url)!r}")


def pushgateway_url(base: str, scope: str) -> str:
    """Where a scope's metrics go: {base}/metrics/job/katapult_etl/scope/<scope>. The scope, as stored
    (`organization[sub_domain]=acme`), is percent-encoded, every character but letters, digits and
    `-._~` (`organization%5Bsub_domain%5D%3Dacme`), which the Pushgateway decodes back into the label's
    value; one with a `/`, which a path cannot carry even encoded, goes in the Pushgateway's base64 form
    (`scope@base64/…`, URL-safe alphabet)."""
    root = f"{base.rstrip('/')}/metrics/job/{PUSHGATEWAY_JOB}"
    if "/" in scope:
        return f"{root}/scope@base64/{urlsafe_b64encode(scope.encode()).decode()}"
    return f"{root}/scope/{quote(scope, safe='')}"


def push_metrics(base: str, report: RunReport, last_success: float | None) -> None:
    """PUT the run's metrics, the same text as the metrics file, replacing the scope's group."""
    url = pushgateway_url(base, report.scope)
    body = render(report, last_success).encode()
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": TEXT_FORMAT})
    shown = mask_password(url)
    try:
        with urllib.request.urlopen(request, timeout=PUSH_TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise MetricsError(f"cannot push the metrics to {shown}: HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise MetricsError(f"cannot push the metrics to {shown}: {error.reason}") from error
    except (OSError, ValueError) as error:  # a timeout mid-answer, a connection dropped
        raise MetricsError(f"cannot push the metrics to {shown}: {error}") from error


def last_success(report: RunReport, path: Path | None) -> float | None:
    """When the scope last succeeded: this run, or as the metrics file written earlier says (if any)."""
    if report.status == RunStatus.SUCCEEDED:
        return report.finished_at
    return None if path is None else read_last_success(path, report.scope)


def write_metrics(path: Path, report: RunReport) -> None:
    """Replace the metrics file with this run's metrics."""
    try:
        write_atomically(path, render(report, last_success(report, path)))
    except OSError as error:
        raise MetricsError(f"cannot write the metrics file {path}: {error.strerror}") from error


def render(report: RunReport, last_success: float | None) -> str:
    """The Prometheus text exposition format; the last success is left out until there is one."""
    scope = f'scope="{_escape(report.scope)}"'
    blocks = [
        _gauge("last_run_timestamp_seconds", "When the last run ended, in Unix time.", [(scope, report.finished_at)])
    ]
    if last_success is not None:
        help_text = "When the last succeeded run ended, in Unix time."
        blocks.append(_gauge("last_success_timestamp_seconds", help_text, [(scope, last_success)]))
    blocks += [
        _gauge(
            "last_run_status",
            "The last run's status: 1 for the status it ended with, 0 for the others.",
            [(f'{scope},status="{status}"', int(status == report.status)) for status in STATUSES],
        ),
        _gauge("last_run_exit_code", "The exit code of the last run.", [(scope, report.exit_code)]),
        _gauge("run_duration_seconds", "How long the last run took.", [(scope, report.seconds)]),
    ]
    if report.counts is not None:
        blocks += _count_gauges(scope, report.counts)
        blocks += _warning_gauges(scope, report)
    if report.notifications is not None:
        blocks += _notification_gauges(scope, report.notifications)
    return "".join(blocks)


def _warning_gauges(scope: str, report: RunReport) -> list[str]:
    """What the run warned of: keys added to or gone from the packages, and an update of half the scope."""
    schema = report.schema_changes or SchemaChanges()
    return [
        _gauge(
            "schema_changes",
            "Keys the last run found new in the packages, or gone from them (sync_runs.schema_changes).",
            [(f'{scope},change="added"', len(schema.added)), (f'{scope},change="removed"', len(schema.removed))],
        ),
        _gauge(
            "mass_update",
            "1 when the last run updated more than half of the scope's listed packages, else 0.",
            [(scope, int(report.mass_update))],
        ),
    ]


def _count_gauges(scope: str, counts: RunCounts) -> list[str]:
    return [
        _gauge(
            "pages_fetched",
            "Pages the last run fetched (a confirming walk's included).",
            [(scope, counts.pages_fetched)],
        ),
        _gauge("requests", "HTTP requests the last run sent, retries included.", [(scope, counts.requests)]),
        _gauge("retries", "Requests the last run sent again after a failure.", [(scope, counts.retries)]),
        _gauge("packages_seen", "Distinct packages the last run saw.", [(scope, counts.packages_seen)]),
        _gauge(
            "packages",
            "Packages the last run created, updated, restored, removed or left unchanged.",
            [(f'{scope},change="{change}"', getattr(counts, change)) for change in CHANGES],
        ),
    ]


def _notification_gauges(scope: str, pending: PendingNotifications) -> list[str]:
    return [
        _gauge(
            "notifications_pending",
            "Webhook notifications not yet delivered, of every run and target in the database.",
            [(scope, pending.count)],
        ),
        _gauge(
            "notifications_oldest_pending_age_seconds",
            "How long the oldest pending notification has waited; 0 when none waits.",
            [(scope, pending.oldest_age_seconds)],
        ),
    ]


def _gauge(name: str, help_text: str, samples: list[tuple[str, float]]) -> str:
    """One metric family: its HELP and TYPE lines, then one line per (labels, value)."""
    lines = [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge"]
    lines += [f"{PREFIX}_{name}{{{labels}}} {_number(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def read_last_success(path: Path, scope: str) -> float | None:
    """The last success of this scope, from a metrics file written earlier; None when there is none."""
    pattern = re.compile(rf'^{LAST_SUCCESS}\{{scope="{re.escape(_escape(scope))}"\}} (\S+)$', re.MULTILINE)
    try:
        match = pattern.search(path.read_text())
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return float(match.group(1)) if match else None
    except ValueError:
        return None


def write_atomically(path: Path, content: str) -> None:
    """Write beside the file, flush it to disk, then rename it over the file in one step."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; the collector runs as another user
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _escape(label_value: str) -> str:
    return label_value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """Whole numbers without a decimal point, others to the millisecond."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
