"""The API token: sent only where it should go, and never printed, logged, stored or put in a message.

The test runs every way a sync can end, with a known token and debug logging, then searches all the
output, every row of every table and the database's files for it.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import READ_SCOPE, FakeKatapult, Fault

from .helpers import every_table, recording_server

TOKEN = "tok_CANARY_7fd2c1e9a04b4c55"
REJECTED_TOKEN = "tok_CANARY_rejected_0b9e33d1"  # a token Katapult does not know: never shown either


@pytest.fixture
def api() -> Iterator[FakeKatapult]:
    with FakeKatapult(synthetic_catalogue(12), tokens={TOKEN: {READ_SCOPE}}) as server:
        yield server


def page_1(packages: list[Any], **pagination: Any) -> bytes:
    block = {"current_page": 1, "total_pages": 1, "total": len(packages), "per_page": 200, "large_set": False}
    return json.dumps({"pagination": {**block, **pagination}, "virtual_machine_packages": packages}).encode()


# Each path arranges the fake API and returns (extra arguments, the exit code it must end with).
Arrange = Callable[[FakeKatapult], tuple[list[str], int]]


def _faults(fault: Fault, times: int = 2) -> Arrange:
    def arrange(api: FakeKatapult) -> tuple[list[str], int]:
        api.add_fault(fault, times)
        return ["--max-attempts", str(times)], 1

    return arrange


def _refused_page_size(api: FakeKatapult) -> tuple[list[str], int]:
    api.per_page_cap = 20
    return [], 1


def _scope_not_granted(api: FakeKatapult) -> tuple[list[str], int]:
    api.tokens[TOKEN] = set()
    return [], 1


def _incomplete(api: FakeKatapult) -> tuple[list[str], int]:
    api.add_fault(Fault(body=page_1(api.packages, total=999)), times=2)
    return [], 3


def _mass_removal(api: FakeKatapult) -> tuple[list[str], int]:
    api.add_fault(Fault(body=page_1([])), times=2)  # an empty catalogue, for the walk and the confirming walk
    return [], 4


FAILURE_PATHS: dict[str, Arrange] = {
    "429 until the attempts run out": _faults(Fault(error_code="rate_limit_reached")),
    "503 until the attempts run out": _faults(Fault(status=503)),
    "connection reset mid-body": _faults(Fault(truncate_body=True)),
    "read timeouts": lambda api: (_faults(Fault(delay=0.5))(api)[0] + ["--read-timeout", "0.1"], 1),
    "not JSON": _faults(Fault(body=b"<html>oops</html>")),
    "JSON of the wrong shape": _faults(Fault(body=b"{}"), times=1),
    "a package without id": lambda api: (_faults(Fault(body=page_1([{"name": "X"}])), times=1)(api)[0], 3),
    "the wrong page": _faults(Fault(body=page_1([], current_page=2)), times=1),
    "scope_not_granted": _scope_not_granted,
    "organization_not_found": lambda api: (["--organization-id", "org_nope"], 1),
    "every page size refused": _refused_page_size,
    "an incomplete walk": _incomplete,
    "mass removal refused": _mass_removal,
    "a dry run": lambda api: (["--dry-run"], 0),
    "the database unreachable": lambda api: (["--database-url", "postgresql+psycopg://etl@127.0.0.1:1/x"], 1),
    "plain http to another host": lambda api: (["--api-url", "http://192.0.2.10"], 2),
}


def test_the_token_is_never_printed_logged_or_stored(cli, database_url, api, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    base = ("sync", "--database-url", database_url, "--api-url", api.url, "-vv")
    results = [cli(*base, "--token-file", str(token_file))]
    assert results[0].exit_code == 0, results[0].err

    for name, arrange in FAILURE_PATHS.items():
        for log_format in ("text", "json"):
            args, exit_code = arrange(api)
            result = cli(*base, "--log-format", log_format, *args, env={"KATAPULT_API_TOKEN": TOKEN})
            assert result.exit_code == exit_code, (name, result.err)
            results.append(result)
            api.tokens[TOKEN] = {READ_SCOPE}
            api.per_page_cap = 200
    results.append(cli(*base, env={"KATAPULT_API_TOKEN": REJECTED_TOKEN}))
    results.append(cli(*base, env={"KATAPULT_API_TOKEN": f"{TOKEN}\nX-Trace: 1"}))
    assert [r.exit_code for r in results[-2:]] == [1, 2]

    assert any(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in api.requests)
    output = "".join(r.out + r.err for r in results)
    assert "DEBUG" in output and "refused the request" in output  # debug logging and errors were on
    assert TOKEN not in output and REJECTED_TOKEN not in output
    stored = repr(every_table(database_url))
    assert "sync_runs" in stored and TOKEN not in stored and REJECTED_TOKEN not in stored
    for path in database_files(database_url):
        assert TOKEN.encode() not in path.read_bytes()


def database_files(database_url: str) -> list[Path]:
    """The SQLite file and whatever lies beside it (journal, lock file); nothing for a server database."""
    if make_url(database_url).get_backend_name() != "sqlite":
        return []
    path = Path(make_url(database_url).database)
    return sorted(path.parent.glob(f"{path.name}*"))


def test_a_token_with_a_newline_is_refused_without_showing_it(cli, api, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\r\nX-Forwarded-For: 10.0.0.1\n")

    result = cli(
        "sync",
        "--database-url",
        f"sqlite:///{tmp_path / 'k.db'}",
        "--api-url",
        api.url,
        "--token-file",
        str(token_file),
    )

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == (
        "katapult-etl: the API token has spaces, control or non-ASCII characters in it: check "
        "KATAPULT_API_TOKEN or --token-file (the token is not shown)\n"
    )
    assert api.requests == []


def test_surrounding_whitespace_in_the_environment_is_not_part_of_the_token(cli, api, tmp_path):
    result = cli(
        "sync",
        "--database-url",
        f"sqlite:///{tmp_path / 'k.db'}",
        "--api-url",
        api.url,
        env={"KATAPULT_API_TOKEN": f" {TOKEN}\n"},
    )

    assert result.exit_code == 0, result.err
    assert api.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("host", ["192.0.2.10", "katapult.example", "[2001:db8::1]"])
def test_the_token_goes_over_plain_http_to_no_other_host(cli, tmp_path, host):
    result = cli(
        "sync",
        "--database-url",
        f"sqlite:///{tmp_path / 'k.db'}",
        "--api-url",
        f"http://{host}:8080",
        env={"KATAPULT_API_TOKEN": TOKEN},
    )

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == f"katapult-etl: refusing to send the API token to http://{host.strip('[]')}: use https\n"
    assert not (tmp_path / "k.db").exists()


def test_plain_http_to_this_machine_by_name_is_allowed(cli, api, tmp_path):
    result = cli(
        "sync",
        "--database-url",
        f"sqlite:///{tmp_path / 'k.db'}",
        "--api-url",
        f"http://localhost:{api.port}",
        env={"KATAPULT_API_TOKEN": TOKEN},
    )

    assert result.exit_code == 0, result.err
    assert api.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.fixture
def self_signed_https(tmp_path) -> Iterator[tuple[str, list[bytes]]]:
    """An https server on loopback whose certificate no CA signed; it records what clients send it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def read_over_tls(connection: socket.socket) -> bytes:
        with context.wrap_socket(connection, server_side=True) as tls:  # OSError: the client refused the handshake
            return tls.recv(65536)

    with recording_server(read_over_tls) as (port, received):
        yield f"https://127.0.0.1:{port}", received


def test_tls_certificates_are_always_verified(cli, tmp_path, self_signed_https):
    url, received = self_signed_https

    result = cli(
        "sync",
        "--database-url",
        f"sqlite:///{tmp_path / 'k.db'}",
        "--api-url",
        url,
        env={"KATAPULT_API_TOKEN": TOKEN, "REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""},
    )

    assert (result.exit_code, result.out) == (1, "")
    assert result.err == f"katapult-etl: could not verify the TLS certificate of {url}: self-signed certificate\n"
    assert cli.sleeps == []  # not retried: it would fail the same way every time
    assert received == []  # no request, so no token, went to the server


def test_a_new_sqlite_database_and_its_lock_file_are_readable_by_their_owner_only(cli, api, tmp_path):
    result = cli(
        "sync",
        "--database-url",
        f"sqlite:///{tmp_path / 'k.db'}",
        "--api-url",
        api.url,
        env={"KATAPULT_API_TOKEN": TOKEN},
    )

    assert result.exit_code == 0, result.err
    assert {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()} == {
        "k.db": 0o600,
        "k.db.lock": 0o600,
    }
