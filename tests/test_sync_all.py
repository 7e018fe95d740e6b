"""`sync --all` and `sync --scope` over the scopes of a configuration file: a run each, the exit code the
most serious of theirs, one token's allowance shared; KATAPULT_ORGANIZATION; `--if-locked skip`;
`--pushgateway`."""

from __future__ import annotations

import json
import socket

import pytest

from etl.runplan import most_serious
from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import READ_SCOPE

from .helpers import error_line, hold_run_lock, query, recording_server, sqlite_url, write_config

PRIVATE = 3
REFUSED = (
    "Katapult API refused the request: HTTP 403 permission_denied: "
    "The authenticated identity is not permitted to perform this action"
)


@pytest.fixture
def organizations(api):
    """acme (by sub-domain, token tok_acme) owns 3 private packages; beta (by id) lets in only tok_other,
    so its token tok_beta, valid, is refused with 403 permission_denied."""
    api.tokens = {"tok_acme": {READ_SCOPE}, "tok_beta": {READ_SCOPE}, "tok_other": {READ_SCOPE}}
    api.organizations = {
        "org_acme": {"sub_domain": "acme", "packages": synthetic_catalogue(PRIVATE, seed=7, privacy="private")},
        "org_beta": {"sub_domain": "beta", "packages": [], "tokens": {"tok_other"}},
    }
    return api


def three_scopes(folder, database_url: str, api_url: str):
    (folder / "acme.token").write_text("tok_acme\n")
    return write_config(
        folder,
        f'database_url = "{database_url}"\n'
        f'api_url = "{api_url}"\n'
        "[sync]\nper_page = 5\n"
        '[[scopes]]\nname = "public"\n'
        '[[scopes]]\nname = "beta"\norganization_id = "org_beta"\ntoken_env = "KATAPULT_TOKEN_BETA"\n'
        '[[scopes]]\nname = "acme"\norganization_sub_domain = "acme"\ntoken_file = "acme.token"\n',
    )


BETA_TOKEN = {"KATAPULT_TOKEN_BETA": "tok_beta"}


def test_all_runs_every_scope_and_a_refused_one_changes_nothing_but_its_run(cli, database_url, organizations, tmp_path):
    path = three_scopes(tmp_path, database_url, organizations.url)

    result = cli("sync", "--all", "--config", str(path), env=BETA_TOKEN)

    assert result.exit_code == 1
    assert [line.split(" seconds=")[0] for line in result.out.splitlines()] == [
        "sync succeeded: scope=public api=public pages=4 packages_seen=20 "
        "created=20 updated=0 restored=0 removed=0 unchanged=0",
        "sync succeeded: scope=organization[sub_domain]=acme api=core pages=5 packages_seen=23 "
        "created=3 updated=0 restored=0 removed=0 unchanged=20",
    ]
    assert result.err == error_line(f"scope beta: {REFUSED}")
    assert query(database_url, "SELECT id, scope, api, status, packages_seen, error FROM sync_runs ORDER BY id") == [
        (1, "public", "public", "succeeded", 20, None),
        (2, "organization[id]=org_beta", "core", "failed", 0, REFUSED),
        (3, "organization[sub_domain]=acme", "core", "succeeded", 23, None),
    ]
    assert query(database_url, "SELECT scope, COUNT(*) FROM package_listings GROUP BY scope ORDER BY scope") == [
        ("organization[sub_domain]=acme", 23),
        ("public", 20),
    ]
    assert query(
        database_url, "SELECT sync_run_id, COUNT(*) FROM package_snapshots GROUP BY sync_run_id ORDER BY 1"
    ) == [
        (1, 20),
        (3, PRIVATE),
    ]
    assert query(database_url, "SELECT COUNT(*) FROM packages") == [(20 + PRIVATE,)]


def test_all_with_json_prints_a_line_per_scope(cli, tmp_path, organizations):
    path = three_scopes(tmp_path, sqlite_url(tmp_path), organizations.url)

    result = cli("sync", "--all", "--json", "--config", str(path), env=BETA_TOKEN)

    lines = [json.loads(line) for line in result.out.splitlines()]
    assert result.exit_code == 1
    assert [
        (line["name"], line["scope"], line["status"], line["exit_code"], line.get("run_id", "-")) for line in lines
    ] == [
        ("public", "public", "succeeded", 0, 1),
        ("beta", "organization[id]=org_beta", "failed", 1, "-"),
        ("acme", "organization[sub_domain]=acme", "succeeded", 0, 3),
    ]
    assert lines[1] == {
        "name": "beta",
        "scope": "organization[id]=org_beta",
        "api": "core",
        "status": "failed",
        "exit_code": 1,
        "error": REFUSED,
    }


def test_scope_runs_one_scope_of_the_file(cli, tmp_path, organizations):
    path = three_scopes(tmp_path, sqlite_url(tmp_path), organizations.url)

    result = cli("sync", "--scope", "acme", "--config", str(path))

    assert result.exit_code == 0, result.err
    assert query(sqlite_url(tmp_path), "SELECT scope, status FROM sync_runs") == [
        ("organization[sub_domain]=acme", "succeeded")
    ]


def test_a_refused_scope_alone_fails_as_a_single_sync_does(cli, tmp_path, organizations):
    path = three_scopes(tmp_path, sqlite_url(tmp_path), organizations.url)

    result = cli("sync", "--scope", "beta", "--config", str(path), env=BETA_TOKEN)

    assert (result.exit_code, result.out, result.err) == (1, "", error_line(REFUSED))


def test_the_token_file_flag_outranks_the_scope_s_token(cli, tmp_path, organizations):
    path = three_scopes(tmp_path, sqlite_url(tmp_path), organizations.url)
    (tmp_path / "other.token").write_text("tok_other")

    result = cli("sync", "--scope", "beta", "--config", str(path), "--token-file", str(tmp_path / "other.token"))

    assert result.exit_code == 0, result.err
    assert {r.headers["Authorization"] for r in organizations.requests} == {"Bearer tok_other"}


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([0, 0], 0),
        ([0, 75], 75),
        ([75, 3, 0], 3),
        ([3, 4], 4),
        ([4, 1, 3, 75], 1),
        ([0, 1], 1),
        ([1, 130], 130),  # an interruption outranks every run's code
    ],
)
def test_the_exit_code_is_the_most_serious(codes, expected):
    assert most_serious(codes) == expected


# -- one token's allowance, shared ---------------------------------------------------------------------


class NewMinuteOnSleep(list):
    """The retry sleeps of the cli fixture, where a wait lasts a minute: Katapult's allowance is new after."""

    def __init__(self, api):
        super().__init__()
        self.api = api

    def append(self, seconds):
        super().append(seconds)
        self.api.reset_rate_limit()


@pytest.fixture
def one_token_two_scopes(api, tmp_path, cli):
    """Two organizations of one token, each scope ten pages of five; an allowance of ten requests a minute,
    so the first scope spends it to the last request."""
    api.packages = synthetic_catalogue(45)
    api.rate_limit_permitted = 10
    api.tokens = {"tok_agency": {READ_SCOPE}}
    api.organizations = {
        name: {"sub_domain": name, "packages": synthetic_catalogue(5, seed=seed, privacy="private")}
        for name, seed in (("org_a", 3), ("org_b", 4))
    }
    (tmp_path / "agency.token").write_text("tok_agency")
    cli.sleeps = NewMinuteOnSleep(api)
    cli.clock = lambda: 0.0  # a wait for the next minute is then exactly 60 s
    return write_config(
        tmp_path,
        f'database_url = "{sqlite_url(tmp_path)}"\napi_url = "{api.url}"\n[sync]\nper_page = 5\n'
        + "".join(
            f'[[scopes]]\nname = "{name}"\norganization_id = "{name}"\ntoken_file = "agency.token"\n'
            for name in ("org_a", "org_b")
        ),
    )


def test_scopes_of_one_token_share_its_allowance(cli, api, tmp_path, one_token_two_scopes):
    result = cli("sync", "--all", "--config", str(one_token_two_scopes))

    assert result.exit_code == 0, result.err
    assert api.avoidable_429s == 0
    assert cli.sleeps == [60.0]  # the second scope waited for the next minute instead of asking into a 429
    assert query(sqlite_url(tmp_path), "SELECT scope, pages_fetched, requests, retries FROM sync_runs ORDER BY id") == [
        ("organization[id]=org_a", 10, 10, 0),
        ("organization[id]=org_b", 10, 10, 0),
    ]


def test_separate_commands_do_not_share_it(cli, api, tmp_path, one_token_two_scopes):
    """The control: the fake counts the 429 a scope that knew nothing of the other's allowance runs into."""
    for name in ("org_a", "org_b"):
        assert cli("sync", "--scope", name, "--config", str(one_token_two_scopes)).exit_code == 0

    assert api.avoidable_429s == 1
    assert query(sqlite_url(tmp_path), "SELECT retries FROM sync_runs ORDER BY id") == [(0,), (1,)]


# -- KATAPULT_ORGANIZATION -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("organization", "scope"),
    [("org_acme", "organization[id]=org_acme"), ("acme", "organization[sub_domain]=acme")],
)
def test_katapult_organization_names_the_organization(cli, tmp_path, organizations, organization, scope):
    env = {"KATAPULT_ORGANIZATION": organization, "KATAPULT_API_TOKEN": "tok_acme"}

    result = cli("sync", "--database-url", sqlite_url(tmp_path), "--api-url", organizations.url, env=env)

    assert result.exit_code == 0, result.err
    assert query(sqlite_url(tmp_path), "SELECT scope, packages_seen FROM sync_runs") == [(scope, 20 + PRIVATE)]


def test_a_scope_flag_or_scope_outranks_katapult_organization(cli, tmp_path, organizations):
    path = three_scopes(tmp_path, sqlite_url(tmp_path), organizations.url)
    env = {"KATAPULT_ORGANIZATION": "org_nope", "KATAPULT_API_TOKEN": "tok_acme"}

    by_flag = cli("sync", "--config", str(path), "--organization-sub-domain", "acme", env=env)
    by_scope = cli("sync", "--config", str(path), "--scope", "public", env=env)

    assert (by_flag.exit_code, by_scope.exit_code) == (0, 0), by_flag.err + by_scope.err
    assert query(sqlite_url(tmp_path), "SELECT scope FROM sync_runs ORDER BY id") == [
        ("organization[sub_domain]=acme",),
        ("public",),
    ]


# -- --if-locked -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_locked", "exit_code"), [([], 75), (["--if-locked", "fail"], 75), (["--if-locked", "skip"], 0)]
)
def test_if_locked(cli, database_url, api, if_locked, exit_code):
    holder = hold_run_lock(database_url)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = cli("sync", "--database-url", database_url, "--api-url", api.url, "--json", *if_locked)
    finally:
        holder.stdin.close()
        holder.wait()

    assert api.requests == []
    if exit_code == 0:
        assert json.loads(result.out) == {"scope": "public", "status": "skipped", "exit_code": 0}
        assert result.err.startswith("katapult-etl: WARNING another sync of public is running")
        assert result.err.endswith(": skipped (--if-locked skip)\n") and result.err.count("\n") == 1
    else:
        assert result.out == ""
        assert result.err.startswith("katapult-etl: another sync of public is running")
    assert result.exit_code == exit_code


def test_if_locked_skip_in_the_file_skips_one_scope_of_all(cli, tmp_path, organizations):
    path = three_scopes(tmp_path, sqlite_url(tmp_path), organizations.url)
    path.write_text(path.read_text().replace("[sync]\n", '[sync]\nif_locked = "skip"\n'))
    holder = hold_run_lock(sqlite_url(tmp_path))
    try:
        assert holder.stdout.readline() == "locked\n"
        result = cli("sync", "--all", "--config", str(path), env={"KATAPULT_TOKEN_BETA": "tok_other"})
    finally:
        holder.stdin.close()
        holder.wait()

    assert result.exit_code == 0, result.err
    assert query(sqlite_url(tmp_path), "SELECT scope, status FROM sync_runs ORDER BY id") == [
        ("organization[id]=org_beta", "succeeded"),
        ("organization[sub_domain]=acme", "succeeded"),
    ]


# -- --pushgateway ---------------------------------------------------------------------------------------


def http_request(connection: socket.socket, status: bytes = b"200 OK") -> bytes:
    """Read one HTTP request whole, answer `status`; the request's bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    connection.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    return head + b"\r\n\r\n" + body


def parts(request: bytes) -> tuple[str, str, str, str]:
    head, _, body = request.partition(b"\r\n\r\n")
    method, path, _ = head.split(b"\r\n")[0].decode().split(" ")
    content_type = next(
        line.split(b": ", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-type:")
    )
    return method, path, content_type.decode(), body.decode()


def test_pushgateway_gets_the_metrics_file_s_text(cli, tmp_path, organizations):
    path = three_scopes(tmp_path, sqlite_url(tmp_path), organizations.url)
    metrics = tmp_path / "katapult_etl_{scope}.prom"
    with recording_server(http_request) as (port, received):
        result = cli(
            "sync",
            "--all",
            "--config",
            str(path),
            "--metrics-file",
            str(metrics),
            "--pushgateway",
            f"http://127.0.0.1:{port}/",
            env=BETA_TOKEN,
        )

    assert result.exit_code == 1
    pushed = [parts(request) for request in received]
    assert [(method, path, kind) for method, path, kind, _ in pushed] == [
        ("PUT", "/metrics/job/katapult_etl/scope/public", "text/plain; version=0.0.4; charset=utf-8"),
        (
            "PUT",
            "/metrics/job/katapult_etl/scope/organization%5Bid%5D%3Dorg_beta",
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (
            "PUT",
            "/metrics/job/katapult_etl/scope/organization%5Bsub_domain%5D%3Dacme",
            "text/plain; version=0.0.4; charset=utf-8",
        ),
    ]
    files = [(tmp_path / f"katapult_etl_{name}.prom").read_text() for name in ("public", "beta", "acme")]
    assert [body for *_, body in pushed] == files
    assert 'katapult_etl_last_run_status{scope="organization[id]=org_beta",status="failed"} 1' in files[1]


def test_a_push_that_fails_is_a_warning(cli, tmp_path, api):
    """A push refused: a warning, and the run's own exit code."""
    with recording_server(lambda connection: http_request(connection, b"500 Internal Server Error")) as (port, _):
        result = cli(
            "sync",
            "--database-url",
            sqlite_url(tmp_path),
            "--api-url",
            api.url,
            "--pushgateway",
            f"http://127.0.0.1:{port}",
        )

    assert (result.exit_code, result.out[:28]) == (0, "sync succeeded: scope=public")
    assert result.err == (
        "katapult-etl: WARNING cannot push the metrics to "
        f"http://127.0.0.1:{port}/metrics/job/katapult_etl/scope/public: "
        "HTTP 500 Internal Server Error\n"
    )


def test_a_scope_with_a_slash_is_pushed_in_base64():
    from etl.metrics import pushgateway_url

    assert pushgateway_url("http://pg:9091", "organization[sub_domain]=a/b") == (
        "http://pg:9091/metrics/job/katapult_etl/scope@base64/b3JnYW5pemF0aW9uW3N1Yl9kb21haW5dPWEvYg=="
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pushgateway", "pg:9091"], "--pushgateway must be an http:// or https:// URL, not 'pg:9091'"),
        (["--pushgateway", "http://pg:9091", "--dry-run"], "--pushgateway records real runs: a --dry-run cannot push"),
    ],
)
def test_a_pushgateway_that_cannot_be_is_a_usage_error(cli, tmp_path, api, args, message):
    result = cli("sync", "--database-url", sqlite_url(tmp_path), "--api-url", api.url, *args)

    assert (result.exit_code, result.err) == (2, error_line(message))
    assert api.requests == []


def test_several_scopes_need_their_own_metrics_files(cli, tmp_path, organizations):
    path = three_scopes(tmp_path, sqlite_url(tmp_path), organizations.url)

    result = cli("sync", "--all", "--config", str(path), "--metrics-file", str(tmp_path / "k.prom"), env=BETA_TOKEN)

    assert (result.exit_code, result.err) == (
        2,
        error_line(
            f"--metrics-file {tmp_path / 'k.prom'}: several scopes need {{scope}} in the name (e.g. "
            "katapult_etl_{scope}.prom), else each scope's metrics would replace the last one's"
        ),
    )
    assert organizations.requests == []
