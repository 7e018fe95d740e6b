"""cron/: the wrapper passes exit codes through and is quiet while all is well; the units and the crontab parse."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from etl.testing.fakeapi import Fault

from .helpers import wait_until

CRON = Path(__file__).resolve().parent.parent / "cron"
WRAPPER = CRON / "katapult-etl-wrapper"
README = CRON.parent / "README.md"
STUB = """#!/bin/sh
echo "stub out: $*"
echo "stub err: DATABASE_URL=$DATABASE_URL token=$KATAPULT_API_TOKEN" >&2
exit {code}
"""
# Records each call as one line of arguments, then the lines it was given on stdin.
LOGGER = """#!/bin/sh
echo "logger $*" >>"{log}"
cat >>"{log}"
"""


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def syslog(tmp_path) -> Path:
    return tmp_path / "syslog"


def run_wrapper(tmp_path, syslog, *args, env_file_lines=None, env=None) -> subprocess.CompletedProcess[str]:
    """The wrapper with an environment file in tmp_path, and a logger that writes to `syslog`."""
    env_file = tmp_path / "env"
    if env_file_lines is not None:
        env_file.write_text("".join(f"{line}\n" for line in env_file_lines))
    logger = executable(tmp_path / "logger", LOGGER.format(log=syslog))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KATAPULT_", "DATABASE_URL"))}
    return subprocess.run(
        [str(WRAPPER), *args],
        env={**clean, "KATAPULT_ETL_ENV_FILE": str(env_file), "KATAPULT_ETL_LOGGER": str(logger), **(env or {})},
        stdin=subprocess.DEVNULL,  # as under cron
        capture_output=True,
        text=True,
        timeout=60,
    )


def with_stub(tmp_path, code: int) -> list[str]:
    stub = executable(tmp_path / "katapult-etl", STUB.format(code=code))
    return [f"KATAPULT_ETL_BIN={stub}", "DATABASE_URL=sqlite:////var/lib/katapult-etl/katapult.db"]


def test_a_succeeded_run_prints_nothing_and_goes_to_syslog(tmp_path, syslog):
    result = run_wrapper(tmp_path, syslog, env_file_lines=with_stub(tmp_path, 0))

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert syslog.read_text() == (
        "logger -t katapult-etl -p user.info\n"
        "stub out: sync\n"
        "logger -t katapult-etl -p user.warning\n"
        "stub err: DATABASE_URL=sqlite:////var/lib/katapult-etl/katapult.db token=\n"
    )


@pytest.mark.parametrize("code", [1, 3, 4])
def test_a_failed_run_says_so_on_stderr_and_in_syslog_and_keeps_its_exit_code(tmp_path, syslog, code):
    result = run_wrapper(tmp_path, syslog, "--per-page", "5", env_file_lines=with_stub(tmp_path, code))

    assert result.returncode == code
    assert result.stdout == "stub out: sync --per-page 5\n"
    assert result.stderr == "stub err: DATABASE_URL=sqlite:////var/lib/katapult-etl/katapult.db token=\n"
    assert syslog.read_text() == (
        "logger -t katapult-etl -p user.notice\n"
        "stub out: sync --per-page 5\n"
        "logger -t katapult-etl -p user.err\n"
        "stub err: DATABASE_URL=sqlite:////var/lib/katapult-etl/katapult.db token=\n"
    )


def test_another_run_going_is_a_notice_not_a_mail(tmp_path, syslog):
    result = run_wrapper(tmp_path, syslog, env_file_lines=with_stub(tmp_path, 75))

    assert (result.returncode, result.stdout, result.stderr) == (75, "", "")
    assert syslog.read_text() == (
        "logger -t katapult-etl -p user.notice\n"
        "stub err: DATABASE_URL=sqlite:////var/lib/katapult-etl/katapult.db token=\n"
    )


def test_another_run_going_can_be_mailed(tmp_path, syslog):
    env_file_lines = [*with_stub(tmp_path, 75), "KATAPULT_ETL_MAIL_ON_LOCKED=1"]

    result = run_wrapper(tmp_path, syslog, env_file_lines=env_file_lines)

    assert (result.returncode, result.stdout) == (75, "stub out: sync\n")
    assert result.stderr.startswith("stub err: ")


def test_the_environment_file_is_read_not_executed(tmp_path, syslog):
    lines = [
        "# katapult-etl settings",
        "",
        *with_stub(tmp_path, 1),
        'KATAPULT_API_TOKEN="tok secret"',
        "  ; another comment",
        "DATABASE_URL = 'postgresql+psycopg://etl@db/katapult'",
        f"IGNORED=$(touch {tmp_path / 'executed'})",
    ]

    result = run_wrapper(tmp_path, syslog, env_file_lines=lines)

    assert result.returncode == 1
    assert result.stderr == "stub err: DATABASE_URL=postgresql+psycopg://etl@db/katapult token=tok secret\n"
    assert not (tmp_path / "executed").exists()


def test_an_environment_file_with_windows_line_ends_is_read_as_systemd_reads_it(tmp_path, syslog):
    """CRLF lines: the carriage return is not part of the value (else the job writes katapult.db\\r)."""
    lines = [*with_stub(tmp_path, 1), 'KATAPULT_API_TOKEN="tok_crlf"', "# a comment", ""]
    (tmp_path / "env").write_bytes("".join(f"{line}\r\n" for line in lines).encode())

    result = run_wrapper(tmp_path, syslog)

    assert (result.returncode, result.stdout) == (1, "stub out: sync\n")
    assert result.stderr == "stub err: DATABASE_URL=sqlite:////var/lib/katapult-etl/katapult.db token=tok_crlf\n"


def test_an_env_file_named_on_the_command_line_wins(tmp_path, syslog):
    other = tmp_path / "other.env"
    other.write_text("\n".join([*with_stub(tmp_path, 3), "DATABASE_URL=sqlite:///other.db"]))

    result = run_wrapper(tmp_path, syslog, "--env-file", str(other), "--dry-run")

    assert (result.returncode, result.stdout) == (3, "stub out: sync --dry-run\n")
    assert result.stderr == "stub err: DATABASE_URL=sqlite:///other.db token=\n"


def test_a_missing_env_file_is_a_usage_error(tmp_path, syslog):
    result = run_wrapper(tmp_path, syslog)

    message = f"katapult-etl-wrapper: cannot read the environment file {tmp_path / 'env'}\n"
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)
    assert syslog.read_text() == f"logger -t katapult-etl -p user.err\n{message}"


def test_without_a_logger_the_exit_code_still_passes_through(tmp_path, syslog):
    result = run_wrapper(
        tmp_path, syslog, env_file_lines=with_stub(tmp_path, 3), env={"KATAPULT_ETL_LOGGER": "no-such-logger"}
    )

    assert (result.returncode, result.stdout) == (3, "stub out: sync\n")
    assert not syslog.exists()


def test_sigterm_reaches_katapult_etl_and_its_exit_code_comes_back(tmp_path, syslog):
    started = tmp_path / "started"
    stub = executable(
        tmp_path / "katapult-etl",
        f'#!/bin/sh\ntrap \'echo "stopped by TERM" >&2; exit 143\' TERM\ntouch "{started}"\n'
        "while :; do sleep 0.05; done\n",
    )
    (tmp_path / "env").write_text(f"KATAPULT_ETL_BIN={stub}\n")
    logger = executable(tmp_path / "logger", LOGGER.format(log=syslog))
    env = {**os.environ, "KATAPULT_ETL_ENV_FILE": str(tmp_path / "env"), "KATAPULT_ETL_LOGGER": str(logger)}
    wrapper = subprocess.Popen(
        [str(WRAPPER)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(started.exists, "the wrapper has started katapult-etl")
        wrapper.send_signal(signal.SIGTERM)
        out, err = wrapper.communicate(timeout=30)
    finally:
        wrapper.kill()

    assert (wrapper.returncode, out, err) == (143, "", "stopped by TERM\n")


def test_the_wrapper_runs_the_real_tool_quietly_then_loudly(tmp_path, syslog, api):
    shim = executable(tmp_path / "katapult-etl", f'#!/bin/sh\nexec "{sys.executable}" -m etl "$@"\n')
    lines = [
        f"KATAPULT_ETL_BIN={shim}",
        f"DATABASE_URL=sqlite:///{tmp_path / 'katapult.db'}",
        f"KATAPULT_API_URL={api.url}",
    ]

    quiet = run_wrapper(tmp_path, syslog, env_file_lines=lines)
    api.add_fault(Fault(error_code="invalid_api_token"))
    loud = run_wrapper(tmp_path, syslog, env_file_lines=lines)

    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert (loud.returncode, loud.stdout) == (1, "")
    assert loud.stderr == (
        "katapult-etl: Katapult API refused the request: HTTP 403 invalid_api_token: "
        "The API token provided was not valid (it may not exist or have expired)\n"
    )
    assert syslog.read_text().startswith(
        "logger -t katapult-etl -p user.info\n"
        "sync succeeded: scope=public api=public pages=1 packages_seen=20 created=20 "
    )


def test_the_crontab_line_runs_the_installed_wrapper_as_the_service_user():
    entries = [
        line.split(maxsplit=6)
        for line in (CRON / "katapult-etl.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]

    assert entries == [["17", "*", "*", "*", "*", "katapult-etl", "/usr/local/bin/katapult-etl-wrapper"]]
    # Installed where the line says, and as /etc/cron.d/katapult-etl: cron skips files with a dot in their name.
    assert (
        "sudo install -m 755 cron/katapult-etl-wrapper /usr/local/bin/ && "
        "sudo install -m 644 cron/katapult-etl.cron /etc/cron.d/katapult-etl\n"
    ) in README.read_text()


def test_the_readme_installs_the_systemd_units_in_one_line():
    assert (
        "sudo install -m 644 cron/katapult-etl.service cron/katapult-etl.timer /etc/systemd/system/ && "
        "sudo systemctl daemon-reload && sudo systemctl enable --now katapult-etl.timer\n"
    ) in README.read_text()


def unit(name: str) -> dict[str, str]:
    """KEY=VALUE lines of a unit file (the last value of a repeated key)."""
    lines = (CRON / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Za-z]+=", line))


def test_the_systemd_units_say_what_matters():
    service, timer = unit("katapult-etl.service"), unit("katapult-etl.timer")

    assert service["Type"] == "oneshot"
    assert service["EnvironmentFile"] == "/etc/katapult-etl/env"
    assert service["ExecStart"] == "/opt/katapult-etl/bin/katapult-etl sync"
    assert service["SuccessExitStatus"] == "75"
    assert (service["User"], service["NoNewPrivileges"], service["ProtectSystem"]) == ("katapult-etl", "yes", "strict")
    assert (timer["OnCalendar"], timer["Persistent"], timer["WantedBy"]) == ("hourly", "true", "timers.target")
    assert timer["RandomizedDelaySec"] == "15min"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units_without_a_warning(tmp_path):
    for name in ("katapult-etl.service", "katapult-etl.timer"):
        text = (CRON / name).read_text()
        # verify insists that ExecStart's program exists: point it at one that does.
        (tmp_path / name).write_text(text.replace("/opt/katapult-etl/bin/katapult-etl", shutil.which("true")))

    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "katapult-etl.timer"), str(tmp_path / "katapult-etl.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (result.returncode, result.stderr) == (0, "")
