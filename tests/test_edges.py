"""The smaller edges: a token file that is not UTF-8, a read-only SQLite folder, and http_proxy with a
loopback API (the token must not go to the proxy)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.testing.fakeapi import DEFAULT_TOKEN

from .helpers import catalogue_tables, every_table, recording_server, runs, sync_in_fives

# -- a token file that is not UTF-8 -----------------------------------------------------------------


def test_a_token_file_that_is_not_utf8_is_a_usage_error(cli, api, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_bytes(b"tok_\xff\xfe_latin1_\xe9")
    database = tmp_path / "katapult.db"

    result = sync_in_fives(cli, f"sqlite:///{database}", api, "--token-file", str(token_file))

    assert (result.exit_code, result.out, result.err) == (
        2,
        "",
        f"katapult-etl: the token file {token_file} is not UTF-8 text\n",
    )
    assert not database.exists() and api.requests == []


# -- a read-only SQLite folder ----------------------------------------------------------------------


@contextlib.contextmanager
def writable_folder_made_read_only(folder: Path) -> Iterator[contextlib.ExitStack]:
    """`folder`, writable until `make_read_only()` is called on what this yields.

    Root ignores permission bits, so as root the folder is a small tmpfs of its own, remounted
    read-only (the kernel then refuses every write with EROFS, as a read-only filesystem does); as
    anyone else it is chmod 555 (EACCES). Skipped where root may not mount.
    """
    folder.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m,mode=700", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to make a read-only folder: {mounted.stderr.strip()}")
    try:
        with contextlib.ExitStack() as stack:

            def make_read_only(read_only: bool = True) -> None:
                if as_root:
                    mode = "remount,ro" if read_only else "remount,rw"
                    subprocess.run(["mount", "-o", mode, str(folder)], check=True, timeout=30)
                else:
                    folder.chmod(0o555 if read_only else 0o755)

            stack.make_read_only = make_read_only  # type: ignore[attr-defined]
            yield stack
            make_read_only(False)
    finally:
        if as_root:
            subprocess.run(["umount", "-l", str(folder)], check=False, timeout=30)
        else:
            folder.chmod(0o755)


def read_only_error() -> str:
    return os.strerror(30) if os.geteuid() == 0 else os.strerror(13)  # EROFS as root, EACCES otherwise


def test_a_read_only_folder_with_a_database_is_one_line_and_changes_nothing(cli, api, tmp_path):
    folder = tmp_path / "data"
    with writable_folder_made_read_only(folder) as ro:
        database = folder / "katapult.db"
        url = f"sqlite:///{database}"
        assert sync_in_fives(cli, url, api).exit_code == 0
        before = every_table(url)
        (folder / "katapult.db.lock").unlink()  # as if the folder had been read-only from the start
        ro.make_read_only()

        result = sync_in_fives(cli, url, api)

        assert (result.exit_code, result.out, result.err) == (
            1,
            "",
            f"katapult-etl: cannot create the run lock file {database}.lock: {read_only_error()}\n",
        )
        ro.make_read_only(False)
        assert every_table(url) == before
        assert runs(url) == [("succeeded", None)]


def test_a_read_only_folder_without_a_database_is_one_line(cli, api, tmp_path):
    folder = tmp_path / "data"
    with writable_folder_made_read_only(folder) as ro:
        ro.make_read_only()
        database = folder / "katapult.db"

        result = sync_in_fives(cli, f"sqlite:///{database}", api)

        assert (result.exit_code, result.out, result.err) == (
            1,
            "",
            f"katapult-etl: cannot create the SQLite database {database}: {read_only_error()}\n",
        )
        assert api.requests == []
        ro.make_read_only(False)
        assert sorted(os.listdir(folder)) == []


# -- http_proxy and a loopback API ------------------------------------------------------------------


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[bytes]]]:
    """A real little HTTP proxy on 127.0.0.1 that records what reaches it and answers 502."""

    def answer_502(connection: socket.socket) -> bytes:
        request = connection.recv(65536)
        with contextlib.suppress(OSError):
            connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return request

    with recording_server(answer_502) as (port, received):
        yield f"http://127.0.0.1:{port}", received


def test_a_loopback_api_is_asked_directly_not_through_http_proxy(cli, database_url, api, proxy, monkeypatch):
    proxy_url, received = proxy
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy_url)

    result = sync_in_fives(cli, database_url, api, "--max-attempts", "2", env={"KATAPULT_API_TOKEN": DEFAULT_TOKEN})

    assert received == []
    assert result.exit_code == 0, result.err
    assert runs(database_url) == [("succeeded", None)]
    assert len(catalogue_tables(database_url)["packages"]) == 20
    assert {request.headers["Authorization"] for request in api.requests} == {f"Bearer {DEFAULT_TOKEN}"}
