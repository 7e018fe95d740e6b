"""--metrics-file: Prometheus textfile-collector metrics of the last run, replaced atomically."""

from __future__ import annotations

import re

from etl.metrics import RunReport, read_last_success, render
from etl.results import RunCounts
from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import Fault

from .helpers import hold_run_lock, sqlite_url, sync_in_fives, warning_metrics

TIMESTAMP = r"1[0-9]{9}(\.[0-9]{3})?"
SECONDS = r"[0-9]+(\.[0-9]{3})?"


def sync_with_metrics(cli, database_url, api, metrics, *extra):
    return sync_in_fives(cli, database_url, api, "--metrics-file", str(metrics), *extra)


def pattern(series: str, number: str) -> re.Pattern[str]:
    return re.compile(f"{re.escape(series)} {number}")


def head(status: str, exit_code: int, last_success: bool = True) -> list[str | re.Pattern[str]]:
    """The lines every metrics file starts with; timestamps and durations as patterns."""
    lines = [
        "# HELP katapult_etl_last_run_timestamp_seconds When the last run ended, in Unix time.",
        "# TYPE katapult_etl_last_run_timestamp_seconds gauge",
        pattern('katapult_etl_last_run_timestamp_seconds{scope="public"}', TIMESTAMP),
    ]
    if last_success:
        lines += [
            "# HELP katapult_etl_last_success_timestamp_seconds When the last succeeded run ended, in Unix time.",
            "# TYPE katapult_etl_last_success_timestamp_seconds gauge",
            pattern('katapult_etl_last_success_timestamp_seconds{scope="public"}', TIMESTAMP),
        ]
    lines += [
        "# HELP katapult_etl_last_run_status The last run's status: 1 for the status it ended with, 0 for the others.",
        "# TYPE katapult_etl_last_run_status gauge",
        *(
            f'katapult_etl_last_run_status{{scope="public",status="{name}"}} {int(name == status)}'
            for name in ("succeeded", "incomplete", "failed")
        ),
        "# HELP katapult_etl_last_run_exit_code The exit code of the last run.",
        "# TYPE katapult_etl_last_run_exit_code gauge",
        f'katapult_etl_last_run_exit_code{{scope="public"}} {exit_code}',
        "# HELP katapult_etl_run_duration_seconds How long the last run took.",
        "# TYPE katapult_etl_run_duration_seconds gauge",
        pattern('katapult_etl_run_duration_seconds{scope="public"}', SECONDS),
    ]
    return lines


def counts(pages: int, requests: int, retries: int, seen: int, **changes: int) -> list[str]:
    changes = {"created": 0, "updated": 0, "restored": 0, "removed": 0, "unchanged": 0, **changes}
    return [
        "# HELP katapult_etl_pages_fetched Pages the last run fetched (a confirming walk's included).",
        "# TYPE katapult_etl_pages_fetched gauge",
        f'katapult_etl_pages_fetched{{scope="public"}} {pages}',
        "# HELP katapult_etl_requests HTTP requests the last run sent, retries included.",
        "# TYPE katapult_etl_requests gauge",
        f'katapult_etl_requests{{scope="public"}} {requests}',
        "# HELP katapult_etl_retries Requests the last run sent again after a failure.",
        "# TYPE katapult_etl_retries gauge",
        f'katapult_etl_retries{{scope="public"}} {retries}',
        "# HELP katapult_etl_packages_seen Distinct packages the last run saw.",
        "# TYPE katapult_etl_packages_seen gauge",
        f'katapult_etl_packages_seen{{scope="public"}} {seen}',
        "# HELP katapult_etl_packages Packages the last run created, updated, restored, removed or left unchanged.",
        "# TYPE katapult_etl_packages gauge",
        *(f'katapult_etl_packages{{scope="public",change="{name}"}} {value}' for name, value in changes.items()),
        *warning_metrics(),
    ]


def nothing_pending() -> list[str]:
    """The notifications' gauges of a database whose notifications were all delivered (or that has none)."""
    return [
        "# HELP katapult_etl_notifications_pending Webhook notifications not yet delivered, of every run and target "
        "in the database.",
        "# TYPE katapult_etl_notifications_pending gauge",
        'katapult_etl_notifications_pending{scope="public"} 0',
        "# HELP katapult_etl_notifications_oldest_pending_age_seconds How long the oldest pending notification "
        "has waited; 0 when none waits.",
        "# TYPE katapult_etl_notifications_oldest_pending_age_seconds gauge",
        'katapult_etl_notifications_oldest_pending_age_seconds{scope="public"} 0',
    ]


def assert_lines_match(path, expected: list[str | re.Pattern[str]]) -> None:
    """Line by line: equal to a string, or wholly matched by a pattern (for timestamps and durations)."""
    lines = path.read_text().split("\n")
    assert lines.pop() == "", "the file ends with a newline"
    assert len(lines) == len(expected), lines
    for line, wanted in zip(lines, expected, strict=True):
        assert wanted.fullmatch(line) if isinstance(wanted, re.Pattern) else line == wanted, (line, wanted)


def value(path, metric: str) -> str:
    return re.search(rf"^{re.escape(metric)} (\S+)$", path.read_text(), re.MULTILINE).group(1)


def test_a_succeeded_run_writes_every_metric(cli, database_url, api, tmp_path):
    api.packages = synthetic_catalogue(12)
    api.add_fault(Fault(error_code="service_unavailable", page=2))
    metrics = tmp_path / "metrics" / "katapult_etl.prom"
    metrics.parent.mkdir()

    result = sync_with_metrics(cli, database_url, api, metrics)

    assert result.exit_code == 0, result.err
    assert_lines_match(metrics, head("succeeded", 0) + counts(3, 4, 1, 12, created=12) + nothing_pending())
    last_run = 'katapult_etl_last_run_timestamp_seconds{scope="public"}'
    assert value(metrics, last_run) == value(metrics, 'katapult_etl_last_success_timestamp_seconds{scope="public"}')
    assert sorted(p.name for p in metrics.parent.iterdir()) == ["katapult_etl.prom"]  # no temporary file left
    assert metrics.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user


def test_a_failed_run_keeps_the_last_success_and_leaves_out_its_counts(cli, api, tmp_path):
    database_url = sqlite_url(tmp_path)
    api.packages = synthetic_catalogue(12)
    metrics = tmp_path / "katapult_etl.prom"
    assert sync_with_metrics(cli, database_url, api, metrics).exit_code == 0
    succeeded_at = value(metrics, 'katapult_etl_last_success_timestamp_seconds{scope="public"}')
    api.add_fault(Fault(error_code="invalid_api_token", page=3))

    result = sync_with_metrics(cli, database_url, api, metrics)

    assert result.exit_code == 1
    assert_lines_match(metrics, head("failed", 1))
    assert value(metrics, 'katapult_etl_last_success_timestamp_seconds{scope="public"}') == succeeded_at
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".prom", ".tmp")) == ["katapult_etl.prom"]


def test_a_run_that_never_succeeded_has_no_last_success(cli, api, tmp_path):
    database_url = sqlite_url(tmp_path)
    api.add_fault(Fault(error_code="invalid_api_token"))
    metrics = tmp_path / "katapult_etl.prom"

    result = sync_with_metrics(cli, database_url, api, metrics)

    assert result.exit_code == 1
    assert_lines_match(metrics, head("failed", 1, last_success=False))


def test_an_incomplete_run_is_not_a_success(cli, api, tmp_path):
    database_url = sqlite_url(tmp_path)
    api.packages = synthetic_catalogue(12)
    metrics = tmp_path / "katapult_etl.prom"
    assert sync_with_metrics(cli, database_url, api, metrics).exit_code == 0
    succeeded_at = value(metrics, 'katapult_etl_last_success_timestamp_seconds{scope="public"}')
    del api.packages[:10]

    result = sync_with_metrics(cli, database_url, api, metrics)

    assert result.exit_code == 4
    # Two pages, two requests: the ten missing are confirmed by a second walk before the guard counts them.
    assert_lines_match(metrics, head("incomplete", 4) + counts(2, 2, 0, 2, unchanged=2) + nothing_pending())
    assert value(metrics, 'katapult_etl_last_success_timestamp_seconds{scope="public"}') == succeeded_at


def test_a_run_that_finds_another_running_leaves_the_metrics_alone(cli, database_url, api, tmp_path):
    metrics = tmp_path / "katapult_etl.prom"
    assert sync_with_metrics(cli, database_url, api, metrics).exit_code == 0
    before = metrics.read_text()
    holder = hold_run_lock(database_url)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = sync_with_metrics(cli, database_url, api, metrics)
    finally:
        holder.communicate("")

    assert result.exit_code == 75
    assert metrics.read_text() == before


def test_an_unwritable_metrics_folder_is_a_usage_error_before_any_request(cli, api, tmp_path):
    database_url = sqlite_url(tmp_path)
    metrics = tmp_path / "missing" / "katapult_etl.prom"

    result = sync_with_metrics(cli, database_url, api, metrics)

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == (
        f"katapult-etl: cannot write the metrics file {metrics}: {metrics.parent} is not a writable folder\n"
    )
    assert api.requests == []


def test_a_dry_run_writes_no_metrics(cli, api, tmp_path):
    database_url = sqlite_url(tmp_path)
    result = sync_with_metrics(cli, database_url, api, tmp_path / "katapult_etl.prom", "--dry-run")

    assert result.exit_code == 2
    assert result.err == "katapult-etl: --metrics-file records real runs: a --dry-run cannot write it\n"
    assert list(tmp_path.glob("*.prom")) == []


def test_label_values_are_escaped_and_read_back(tmp_path):
    scope = 'organization[sub_domain]=a"b\\c'
    report = RunReport(scope, "succeeded", 0, 1700000000.5, 2.25, RunCounts(pages_fetched=2))
    path = tmp_path / "m.prom"
    path.write_text(render(report, last_success=1700000000.5))

    assert 'katapult_etl_pages_fetched{scope="organization[sub_domain]=a\\"b\\\\c"} 2\n' in path.read_text()
    assert 'katapult_etl_run_duration_seconds{scope="organization[sub_domain]=a\\"b\\\\c"} 2.250\n' in path.read_text()
    assert read_last_success(path, scope) == 1700000000.5
    assert read_last_success(path, "public") is None
    assert read_last_success(tmp_path / "absent.prom", scope) is None
