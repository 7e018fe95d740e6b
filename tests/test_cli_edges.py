"""The command line's edges: bad input is one line and exit 2 with nothing written, secrets stay out of
every output, -q is quiet, options are never guessed from abbreviations, and --help starts fast."""

from __future__ import annotations

import json

import pytest

from etl.cli import build_parser
from etl.testing.catalogue import synthetic_catalogue

from .helpers import hold_run_lock, python_importing, query, subcommands

COMMANDS = sorted(subcommands(build_parser()))
SUPPORTED = "(use sqlite:///PATH, postgresql://…, mysql://… or mariadb://…)"
PASSWORD = "hunter2"
SECRET_URL = f"postgresql://admin:{PASSWORD}@db.internal/prod"
# The arguments a command needs besides the ones under test.
REQUIRED = {"history": ["rock-1"], "scopes retire": ["public"]}


def words(command: str) -> list[str]:
    return [*command.split(), *REQUIRED.get(command, [])]


@pytest.fixture
def run(cli):
    """The cli fixture: any exception but argparse's exit fails the test, which is the traceback check."""
    return cli


def database_files(tmp_path) -> list[str]:
    return sorted(path.name for path in tmp_path.iterdir())


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "url, message",
    [
        ("nonsense", f"not a database URL katapult-etl supports: 'nonsense' {SUPPORTED}"),
        (
            "oracle://scott:tiger@db/orcl",
            f"not a database URL katapult-etl supports: 'oracle://scott:***@db/orcl' {SUPPORTED}",
        ),
        (
            "postgres://admin@db/prod",
            f"not a database URL katapult-etl supports: 'postgres://admin@db/prod' {SUPPORTED}",
        ),
    ],
    ids=["nonsense", "oracle", "postgres-scheme"],
)
def test_an_unsupported_database_url_is_one_line_and_exit_2_on_every_command(
    run, tmp_path, monkeypatch, command, url, message
):
    monkeypatch.chdir(tmp_path)

    result = run(*words(command), "--database-url", url)

    assert (result.exit_code, result.out, result.err) == (2, "", f"katapult-etl: {message}\n")
    assert database_files(tmp_path) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_is_not_a_database_is_one_line_and_no_lock_file_on_every_command(run, tmp_path, command):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")

    result = run(*words(command), "--database-url", f"sqlite:///{notes}")

    assert (result.exit_code, result.out, result.err) == (2, "", f"katapult-etl: {notes} is not a SQLite database\n")
    assert database_files(tmp_path) == ["notes.txt"]
    assert notes.read_text() == "not a database\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--read-timeout", "0"], "--read-timeout must be more than 0 seconds, not 0"),
        (["--read-timeout", "nan"], "--read-timeout must be more than 0 seconds, not nan"),
        (["--connect-timeout", "-1"], "--connect-timeout must be more than 0 seconds, not -1"),
        (["--max-attempts", "0"], "--max-attempts must be at least 1, not 0"),
        (["--max-attempts", "-3"], "--max-attempts must be at least 1, not -3"),
        (["--retry-budget", "-1"], "--retry-budget must be 0 seconds or more, not -1"),
        (["--per-page", "0"], "--per-page must be between 1 and 200, not 0"),
        (["--concurrency", "0"], "--concurrency must be between 1 and 16, not 0"),
        (
            ["--token-file", "/nonexistent/token"],
            "cannot read the token file /nonexistent/token: No such file or directory",
        ),
    ],
)
def test_a_bad_sync_option_is_one_line_exit_2_and_writes_nothing(run, api, tmp_path, args, message):
    database_url = f"sqlite:///{tmp_path / 'katapult.db'}"
    assert run("db", "upgrade", "--database-url", database_url).exit_code == 0

    result = run("sync", "--database-url", database_url, "--api-url", api.url, *args)

    assert (result.exit_code, result.out, result.err) == (2, "", f"katapult-etl: {message}\n")
    assert query(database_url, "SELECT COUNT(*) FROM sync_runs") == [(0,)]
    assert api.requests == []


def test_a_metrics_path_that_is_a_folder_is_a_usage_error_before_the_run(run, api, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'katapult.db'}"

    result = run("sync", "--database-url", database_url, "--api-url", api.url, "--metrics-file", str(tmp_path))

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == f"katapult-etl: cannot write the metrics file {tmp_path}: it is a folder\n"
    assert database_files(tmp_path) == []
    assert api.requests == []


def test_a_metrics_file_not_ending_in_prom_is_written_with_a_warning(run, api, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'katapult.db'}"
    metrics = tmp_path / "katapult.txt"

    result = run("sync", "--database-url", database_url, "--api-url", api.url, "--metrics-file", str(metrics))

    assert (result.exit_code, result.out[:15]) == (0, "sync succeeded:")
    assert result.err == (
        f"katapult-etl: WARNING the metrics file {metrics} does not end in .prom: "
        "node_exporter's textfile collector will not read it\n"
    )
    assert "katapult_etl_last_success_timestamp_seconds" in metrics.read_text()


@pytest.mark.parametrize("command", COMMANDS)
def test_no_help_shows_a_database_password(run, command):
    result = run(*command.split(), "--help", env={"DATABASE_URL": SECRET_URL})

    assert result.exit_code == 0
    assert "--database-url" in result.out
    assert PASSWORD not in result.out + result.err


def test_a_database_that_cannot_be_reached_is_named_without_its_password(run, api):
    result = run("sync", "--database-url", f"postgresql://admin:{PASSWORD}@127.0.0.1:1/prod", "--api-url", api.url)

    assert (result.exit_code, result.out) == (1, "")
    assert result.err.startswith("katapult-etl: ") and result.err.count("\n") == 1
    assert PASSWORD not in result.err


def test_sync_quiet_prints_nothing_on_success(run, api, tmp_path):
    result = run("sync", "-q", "--database-url", f"sqlite:///{tmp_path / 'k.db'}", "--api-url", api.url)

    assert (result.exit_code, result.out, result.err) == (0, "", "")


def test_sync_quiet_still_says_why_a_run_did_not_succeed(run, api, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    assert run("sync", "-q", "--database-url", database_url, "--api-url", api.url).exit_code == 0
    api.packages = api.packages[:5]

    result = run("sync", "-q", "--database-url", database_url, "--api-url", api.url)

    assert (result.exit_code, result.out) == (4, "")
    assert result.err == (
        "katapult-etl: mass removal refused: 15 of the 20 packages listed in public are missing; nothing removed "
        "(run again with --allow-mass-removal if that is right)\n"
    )


def test_sync_json_prints_one_object_the_only_line_on_stdout(run, api, tmp_path):
    api.packages = synthetic_catalogue(12)
    database_url = f"sqlite:///{tmp_path / 'k.db'}"

    result = run("sync", "--json", "--per-page", "5", "--database-url", database_url, "--api-url", api.url)

    assert (result.exit_code, result.err) == (0, "")
    [line] = result.out.splitlines()
    summary = json.loads(line)
    assert summary.pop("seconds") >= 0
    assert summary == {
        "run_id": 1,
        "scope": "public",
        "api": "public",
        "status": "succeeded",
        "exit_code": 0,
        "pages_fetched": 3,
        "requests": 3,
        "retries": 0,
        "packages_seen": 12,
        "created": 12,
        "updated": 0,
        "restored": 0,
        "removed": 0,
        "unchanged": 0,
        "schema_changes": None,  # a scope's first run has nothing to compare keys with
        "mass_update": False,
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_global_options_work_before_the_command_too(run, api, tmp_path, command):
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    assert run("sync", "-q", "--database-url", database_url, "--api-url", api.url).exit_code == 0
    extra = {
        "sync": ["--api-url", api.url],
        "demo": ["--database", str(tmp_path / "demo.db")],
        "scopes retire": ["--allow-mass-removal"],
        "notify": ["--notify-url", "http://127.0.0.1:9/hook"],
    }.get(command, [])

    result = run("-q", "--log-format", "json", "--database-url", database_url, *words(command), *extra)

    assert result.exit_code in (0, 1), result.err  # db current: 0; history of rock-1: 0
    assert "Traceback" not in result.err
    assert all(json.loads(line) for line in result.err.splitlines())  # JSON logs, as asked before the command


def test_verbose_before_the_command_is_kept(run, api, tmp_path):
    result = run("-v", "sync", "--database-url", f"sqlite:///{tmp_path / 'k.db'}", "--api-url", api.url)

    assert result.exit_code == 0
    assert "katapult-etl: INFO run 1 of public started" in result.err.splitlines()


@pytest.mark.parametrize(
    "args, usage, message",
    [
        (["sync", "--dry"], "usage: katapult-etl sync ", "unrecognized arguments: --dry"),
        (["sync", "--allow-mass"], "usage: katapult-etl sync ", "unrecognized arguments: --allow-mass"),
        (["runs", "--lim", "3"], "usage: katapult-etl runs ", "unrecognized arguments: --lim 3"),
        (["--verb", "runs"], "usage: katapult-etl runs ", "unrecognized arguments: --verb"),
    ],
)
def test_abbreviations_are_refused_with_the_given_commands_usage(run, tmp_path, args, usage, message):
    result = run(*args)

    assert (result.exit_code, result.out) == (2, "")
    assert result.err.startswith(usage)
    assert result.err.endswith(f": error: {message}\n")
    assert database_files(tmp_path) == []


def test_katapult_api_key_without_katapult_api_token_is_warned_about(run, api, tmp_path):
    result = run(
        "sync",
        "--database-url",
        f"sqlite:///{tmp_path / 'k.db'}",
        "--api-url",
        api.url,
        env={"KATAPULT_API_KEY": "a-terraform-token"},
    )

    assert (result.exit_code, result.out[:15]) == (0, "sync succeeded:")
    assert result.err == (
        "katapult-etl: WARNING KATAPULT_API_KEY is set, but katapult-etl reads KATAPULT_API_TOKEN: "
        "reading the public API\n"
    )
    assert [request.path for request in api.requests] == ["/public/v1/virtual_machine_packages"]


def test_db_upgrade_says_what_it_did_and_db_current_whether_it_is_needed(run, tmp_path):
    from etl.database import head_revision

    head = head_revision()
    database_url = f"sqlite:///{tmp_path / 'k.db'}"

    assert (run("db", "current", "--database-url", database_url).exit_code) == 1
    assert run("db", "current", "--database-url", database_url).out == (
        f"at none; the newest is {head}: run `katapult-etl db upgrade`\n"
    )
    assert database_files(tmp_path) == []
    first = run("db", "upgrade", "--database-url", database_url)
    second = run("db", "upgrade", "--database-url", database_url)
    current = run("db", "current", "--database-url", database_url)

    assert (first.exit_code, first.out) == (0, f"migrated from none to {head}\n")
    assert (second.exit_code, second.out) == (0, f"already at {head}, the newest\n")
    assert (current.exit_code, current.out, current.err) == (0, f"at {head}, the newest\n", "")


def test_an_overlapping_run_logs_a_warning_in_json(run, api, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    assert run("db", "upgrade", "--database-url", database_url).exit_code == 0
    holder = hold_run_lock(database_url)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = run("sync", "--log-format", "json", "--database-url", database_url, "--api-url", api.url)
    finally:
        holder.communicate("", timeout=30)

    assert (result.exit_code, result.out) == (75, "")
    [record] = [json.loads(line) for line in result.err.splitlines()]
    assert (record["level"], record["exit_code"]) == ("warning", 75)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["sync", "--help"],
        ["runs", "--help"],
        ["schema", "--help"],
        ["scopes", "retire", "--help"],
        ["sync", "--dry"],
        ["sync", "--read-timeout", "0"],
    ],
    ids=["help", "version", "sync-help", "runs-help", "schema-help", "retire-help", "usage-error", "bad-value"],
)
def test_help_version_and_usage_errors_import_neither_sqlalchemy_nor_alembic(tmp_path, args):
    finished = python_importing(tmp_path, *args)

    assert finished.stderr.splitlines()[-1] == ""


@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["changes"],
        ["history", "rock-1"],
        ["db", "current"],
        ["scopes"],
        ["scopes", "retire", "public", "--dry-run"],
    ],
)
def test_the_query_commands_never_import_alembic(run, api, tmp_path, command):
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    assert run("sync", "-q", "--database-url", database_url, "--api-url", api.url).exit_code == 0

    finished = python_importing(tmp_path, *command, "--database-url", database_url)

    assert finished.returncode == 0, finished.stderr
    assert finished.stderr.splitlines()[-1] == "sqlalchemy"


def test_alembics_lines_appear_only_when_a_migration_runs(run, api, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'k.db'}"

    first = run("sync", "-v", "--database-url", database_url, "--api-url", api.url)
    second = run("sync", "-v", "--database-url", database_url, "--api-url", api.url)

    assert (
        "katapult-etl: INFO Running upgrade  -> 0001, The initial schema: groups, packages, their listings per scope, "
        "versions, and sync runs." in first.err.splitlines()
    )
    assert "Context impl" in first.err
    assert "Context impl" not in second.err and "Running upgrade" not in second.err
    assert "katapult-etl: INFO run 2 of public started" in second.err.splitlines()


def test_a_name_that_does_not_resolve_is_tried_twice_and_named(run, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'k.db'}"

    result = run("sync", "--database-url", database_url, "--api-url", "https://api.katapult.invalid")

    assert (result.exit_code, result.out) == (1, "")
    assert result.err.splitlines()[-1] == (
        "katapult-etl: gave up on page 1 after 2 attempts: "
        "cannot connect to https://api.katapult.invalid: the name does not resolve"
    )
    assert len(run.sleeps) == 1
    assert query(database_url, "SELECT status, requests, retries FROM sync_runs") == [("failed", 2, 1)]


def test_a_refused_connection_is_named_with_its_url(run, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'k.db'}"

    result = run("sync", "--database-url", database_url, "--api-url", "http://127.0.0.1:1", "--max-attempts", "3")

    assert (result.exit_code, result.out) == (1, "")
    assert result.err.splitlines()[-1] == (
        "katapult-etl: gave up on page 1 after 3 attempts: cannot connect to http://127.0.0.1:1: connection refused"
    )


def test_a_connect_timeout_is_named_with_its_url_and_seconds():
    import requests

    from etl.client import KatapultClient
    from etl.config import Settings

    client = KatapultClient(Settings(api_url="https://api.katapult.io", connect_timeout=10))

    error = client._connection_error(1, requests.ConnectTimeout("connect timed out"))

    assert str(error) == "cannot connect to https://api.katapult.io: timed out after 10 s"


def test_retry_warnings_carry_page_attempt_delay_and_error_in_json(run, api, tmp_path):
    from etl.testing.fakeapi import Fault

    api.add_fault(Fault(error_code="service_unavailable", headers={"Retry-After": "2"}))

    result = run(
        "sync", "--log-format", "json", "--database-url", f"sqlite:///{tmp_path / 'k.db'}", "--api-url", api.url
    )

    assert result.exit_code == 0
    [warning] = [json.loads(line) for line in result.err.splitlines() if '"warning"' in line]
    assert {key: warning[key] for key in ("page", "attempt", "delay_s")} == {"page": 1, "attempt": 1, "delay_s": 2.0}
    assert warning["error"].startswith("Katapult API refused the request: HTTP 503 service_unavailable")


@pytest.mark.parametrize(
    "code, description",
    [
        ("unauthorized_network_for_api_token", "Network is not allowed to access the API with this API token"),
        ("invalid_capabilities_token", "The capabilities token provided was not valid"),
        ("organization_suspended", "The organization is suspended and cannot be used"),
        ("organization_not_activated", "The organization has not been activated yet"),
        ("permission_denied", "The authenticated identity is not permitted to perform this action"),
    ],
)
def test_katapults_documented_403s_are_fatal_with_their_code_and_description(run, api, tmp_path, code, description):
    from etl.testing.fakeapi import Fault

    token = tmp_path / "token"
    token.write_text("tok_good\n")
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    api.add_fault(Fault(error_code=code))

    result = run("sync", "--database-url", database_url, "--api-url", api.url, "--token-file", str(token))

    assert (result.exit_code, result.out) == (1, "")
    assert result.err == f"katapult-etl: Katapult API refused the request: HTTP 403 {code}: {description}\n"
    assert len(api.requests) == 1
    assert query(database_url, "SELECT status, error FROM sync_runs") == [("failed", result.err[14:-1])]
