"""What a run says on stderr: warnings by default, -v/-q, --log-format json, and the progress bar."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest

from etl.progress import PageProgress
from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import Fault

from .helpers import sqlite_url, sync_in_fives

RETRY_WARNING = re.compile(
    r"katapult-etl: WARNING retrying in [0-9.]+ s \(attempt 1 failed: Katapult API refused the request: "
    r"HTTP 503 service_unavailable: The service is temporarily unavailable, please try again later\)"
)
WIPE = "\r\x1b[K"  # back to the start of the line, and erase it
REFUSED = (
    "Katapult API refused the request: HTTP 403 invalid_api_token: "
    "The API token provided was not valid (it may not exist or have expired)"
)


@pytest.fixture
def twelve_packages_and_a_503(api):
    """Three pages of five; page 2 answers 503 once, so the run logs one warning and succeeds."""
    api.packages = synthetic_catalogue(12)
    api.add_fault(Fault(error_code="service_unavailable", page=2))
    return api


def test_by_default_only_warnings_reach_stderr(cli, tmp_path, twelve_packages_and_a_503):
    result = sync_in_fives(cli, sqlite_url(tmp_path), twelve_packages_and_a_503)

    assert result.exit_code == 0
    assert RETRY_WARNING.fullmatch(result.err.removesuffix("\n")), result.err


def test_quiet_silences_warnings_but_not_errors(cli, tmp_path, twelve_packages_and_a_503):
    assert sync_in_fives(cli, sqlite_url(tmp_path), twelve_packages_and_a_503, "-q").err == ""

    twelve_packages_and_a_503.add_fault(Fault(error_code="invalid_api_token"))
    result = sync_in_fives(cli, sqlite_url(tmp_path), twelve_packages_and_a_503, "-q")
    assert (result.exit_code, result.err) == (1, f"katapult-etl: {REFUSED}\n")


def test_verbose_says_what_each_page_held(cli, tmp_path, twelve_packages_and_a_503):
    result = sync_in_fives(cli, sqlite_url(tmp_path), twelve_packages_and_a_503, "-v")

    lines = result.err.splitlines()
    assert [line for line in lines if line.startswith("katapult-etl: INFO page ")] == [
        "katapult-etl: INFO page 1: 5 packages",
        "katapult-etl: INFO page 2: 5 packages",
        "katapult-etl: INFO page 3: 2 packages",
    ]
    assert "katapult-etl: INFO run 1 of public started" in lines
    assert sum(bool(RETRY_WARNING.fullmatch(line)) for line in lines) == 1


def test_json_logs_are_one_object_per_line_with_structured_extras(cli, tmp_path, twelve_packages_and_a_503):
    result = sync_in_fives(cli, sqlite_url(tmp_path), twelve_packages_and_a_503, "--log-format", "json", "-v")

    assert result.exit_code == 0
    records = [json.loads(line) for line in result.err.splitlines()]
    for record in records:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record["ts"]), record
        assert set(record) >= {"ts", "level", "logger", "message"}
    pages = [r for r in records if "packages" in r]
    assert [(r["level"], r["logger"], r["message"], r["page"], r["packages"]) for r in pages] == [
        ("info", "etl.pipeline", "page 1: 5 packages", 1, 5),
        ("info", "etl.pipeline", "page 2: 5 packages", 2, 5),
        ("info", "etl.pipeline", "page 3: 2 packages", 3, 2),
    ]
    started = [r for r in records if "run_id" in r]
    assert [(r["message"], r["run_id"], r["scope"]) for r in started] == [
        ("run 1 of public started", 1, "public"),
        ("run finished", 1, "public"),
    ]
    [warning] = [r for r in records if r["level"] == "warning"]
    assert warning["logger"] == "etl.client"
    assert RETRY_WARNING.fullmatch(f"katapult-etl: WARNING {warning['message']}"), warning
    assert result.out.startswith("sync succeeded: scope=public api=public pages=3 packages_seen=12 created=12 ")


def test_json_logs_end_with_a_run_finished_record_without_v(cli, tmp_path, twelve_packages_and_a_503):
    result = sync_in_fives(cli, sqlite_url(tmp_path), twelve_packages_and_a_503, "--log-format", "json")

    records = [json.loads(line) for line in result.err.splitlines()]
    assert [record["level"] for record in records] == ["warning", "info"]
    finished = {k: v for k, v in records[-1].items() if k not in ("ts", "seconds")}
    assert finished == {
        "level": "info",
        "logger": "etl.run",
        "message": "run finished",
        "run_id": 1,
        "scope": "public",
        "api": "public",
        "status": "succeeded",
        "exit_code": 0,
        "schema_changes": None,
        "mass_update": False,
        "counts": {
            "pages_fetched": 3,
            "requests": 4,
            "retries": 1,
            "packages_seen": 12,
            "created": 12,
            "updated": 0,
            "restored": 0,
            "removed": 0,
            "unchanged": 0,
        },
    }


def test_json_logs_carry_the_error_and_its_exit_code(cli, tmp_path, api):
    api.add_fault(Fault(error_code="invalid_api_token"))

    result = sync_in_fives(cli, sqlite_url(tmp_path), api, "--log-format", "json")

    assert (result.exit_code, result.out) == (1, "")
    [record] = [json.loads(line) for line in result.err.splitlines()]
    assert {k: v for k, v in record.items() if k != "ts"} == {
        "level": "error",
        "logger": "etl.cli",
        "message": REFUSED,
        "exit_code": 1,
    }


def test_every_command_takes_the_log_options(cli, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'katapult.db'}"

    result = cli("db", "upgrade", "--database-url", database_url, "--log-format", "json", "-q")

    assert (result.exit_code, result.out, result.err) == (0, "", "")


def run_with_stderr(stderr, tmp_path, api, *extra) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KATAPULT_API_URL", "KATAPULT_API_TOKEN")}
    database_url = f"sqlite:///{tmp_path / 'katapult.db'}"
    command = [sys.executable, "-m", "etl", "sync", "--database-url", database_url, "--api-url", api.url]
    return subprocess.run(
        [*command, "--per-page", "5", "--concurrency", "1", *extra],
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        timeout=60,
    )


def run_on_a_terminal(tmp_path, api, *extra) -> tuple[int, str]:
    """The exit code, and all the run wrote on stderr, which is a pseudo-terminal."""
    controller, terminal = os.openpty()
    try:
        result = run_with_stderr(terminal, tmp_path, api, *extra)
    finally:
        os.close(terminal)
    chunks = []
    try:
        while chunk := os.read(controller, 4096):
            chunks.append(chunk)
    except OSError:  # Linux says EIO once the terminal's other end is closed and read to the end
        pass
    finally:
        os.close(controller)
    return result.returncode, b"".join(chunks).decode()


def test_a_terminal_shows_a_progress_bar_over_pages(tmp_path, api):
    api.packages = synthetic_catalogue(12)
    api.add_fault(Fault(error_code="service_unavailable", page=2, headers={"Retry-After": "0"}))

    exit_code, err = run_on_a_terminal(tmp_path, api)

    assert exit_code == 0
    # A log line first wipes the bar, then the bar is drawn again below it; at the end it is wiped.
    # (The terminal turns each "\n" into "\r\n".) Page 2's retry is logged by a fetcher thread while
    # the walk draws page 1's bar, so the warning may come before or after "page 1/3".
    warning = f"{WIPE}katapult-etl: WARNING retrying in 0.0 s (attempt 1 failed: "
    assert err.count(warning) == 1
    assert re.findall(r"katapult-etl: page (\d)/3", err) == ["1", "2", "3"]
    assert err.startswith(WIPE)
    assert err.endswith(f"{WIPE}katapult-etl: page 3/3{WIPE}")


def test_without_totals_the_progress_bar_counts_pages():
    terminal = io.StringIO()

    with PageProgress("katapult-etl", terminal) as on_page:
        on_page(1, None)
        on_page(2, None)

    assert terminal.getvalue() == f"{WIPE}katapult-etl: page 1{WIPE}katapult-etl: page 2{WIPE}"


def test_no_progress_bar_with_quiet(tmp_path, api):
    # (Nor when stderr is not a terminal: the tests above, run with stderr captured, show none.)
    assert run_on_a_terminal(tmp_path, api, "-q") == (0, "")


def test_no_progress_bar_with_json_logs_only_the_run_finished_record(tmp_path, api):
    exit_code, err = run_on_a_terminal(tmp_path, api, "--log-format", "json")

    assert exit_code == 0
    [record] = [json.loads(line) for line in err.splitlines()]
    assert (record["message"], record["exit_code"]) == ("run finished", 0)
