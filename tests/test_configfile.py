"""The configuration file: what it may hold, what it refuses (exit 2, naming the file, scope and key,
before anything runs), and the precedence of flags, the environment, the file and the defaults."""

from __future__ import annotations

import pytest

from etl.cli import build_parser
from etl.configfile import SYNC_KEYS
from etl.runplan import SYNC_DEFAULTS, plan_sync
from etl.testing.fakeapi import FakeKatapult

from .helpers import error_line, query, sqlite_url, subcommands, write_config

# Options of `sync` that a file's [sync] does not take, and where they go instead.
NOT_IN_SYNC_TABLE = {
    "all": "chooses the scopes",
    "scope": "chooses the scopes",
    "organization_id": "[[scopes]]",
    "organization_sub_domain": "[[scopes]]",
    "token_file": "[[scopes]]",
    "api_url": "top level",
    "database_url": "top level",
    "config": "names the file",
    "notify_url": "top level: notify",
    "verbose": "every command's",
    "quiet": "every command's",
    "log_format": "every command's",
}


def sync_options() -> set[str]:
    sync = subcommands(build_parser())["sync"]
    return {action.dest for action in sync._actions if action.option_strings and action.dest != "help"}


def test_every_sync_option_is_a_key_of_the_sync_table_or_named_as_left_out():
    assert sync_options() == set(SYNC_KEYS) | set(NOT_IN_SYNC_TABLE)
    assert set(SYNC_DEFAULTS) == set(SYNC_KEYS)


def refused(cli, tmp_path, api, text: str, *extra: str, env=None):
    """`sync --all` with a file of `text`: the result, after checking that nothing ran and nothing was written."""
    path = write_config(tmp_path, text)
    result = cli("sync", "--all", "--config", str(path), "--api-url", api.url, *extra, env=env)
    assert (result.exit_code, result.out) == (2, ""), result.err
    assert api.requests == []
    assert not (tmp_path / "katapult.db").exists()
    return result, path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('colour = "blue"\n', "unknown key 'colour' (known: database_url, api_url, sync, scopes, notify)"),
        (
            'notify = [{url = "https://hooks.example.com/k", secret = "s"}]\n',
            "notify[1]: unknown key 'secret' (known: url, secret_file)",
        ),
        ('notify = [{secret_file = "hook.secret"}]\n', 'notify[1]: every webhook needs a url (url = "https://…")'),
        ('notify = "https://hooks.example.com/k"\n', "key 'notify' must be an array of tables, not a string"),
        (
            "[sync]\nconcurency = 2\n",
            "[sync] unknown key 'concurency' (known: per_page, concurrency, max_attempts, retry_budget, "
            "connect_timeout, read_timeout, dry_run, allow_mass_removal, metrics_file, json, if_locked, pushgateway, "
            "ignore_keys)",
        ),
        (
            '[[scopes]]\nname = "acme"\norganization_subdomain = "acme"\n',
            "scope 'acme': unknown key 'organization_subdomain' (known: name, organization_id, "
            "organization_sub_domain, token_file, token_env)",
        ),
        ("database_url = 5\n", "key 'database_url' must be a string, not a whole number"),
        ('[sync]\nconcurrency = "4"\n', "[sync] key 'concurrency' must be a whole number, not a string"),
        ("[sync]\nread_timeout = true\n", "[sync] key 'read_timeout' must be a number, not true or false"),
        ('[sync]\njson = "yes"\n', "[sync] key 'json' must be true or false, not a string"),
        ('[sync]\nif_locked = "wait"\n', """[sync] key 'if_locked' must be one of "fail", "skip", not a string"""),
        ('sync = "fast"\n', "key 'sync' must be a table, not a string"),
        ('[scopes]\nname = "acme"\n', "key 'scopes' must be an array of tables, not a table"),
        (
            '[[scopes]]\nname = "acme"\ntoken_file = 7\n',
            "scope 'acme': key 'token_file' must be a string, not a whole number",
        ),
        ("[[scopes]]\nname = 7\n", "scopes[1]: key 'name' must be a string, not a whole number"),
        (
            '[[scopes]]\nname = "acme"\norganization_sub_domain = "acme"\ntoken = "tok_secret"\n',
            "scope 'acme': key 'token' is refused: a token is never written into the file (files get committed "
            "and copied); name a file holding it with token_file, or a variable with token_env",
        ),
        (
            'api_key = "tok_secret"\n',
            "key 'api_key' is refused: a token is never written into the file (files get committed "
            "and copied); name a file holding it with token_file, or a variable with token_env",
        ),
        (
            '[[scopes]]\nname = "acme"\n[[scopes]]\nname = "acme"\n',
            "scope 'acme' is named twice: scope names must be unique",
        ),
        ('[[scopes]]\norganization_id = "org_1"\n', 'scopes[1]: every scope needs a name (name = "…")'),
        (
            '[[scopes]]\nname = "acme"\norganization_id = "org_1"\norganization_sub_domain = "acme"\ntoken_env = "T"\n',
            "scope 'acme': give organization_id or organization_sub_domain, not both",
        ),
        (
            '[[scopes]]\nname = "acme"\norganization_id = "org_1"\ntoken_env = "T"\ntoken_file = "t"\n',
            "scope 'acme': give token_file or token_env, not both",
        ),
        (
            '[[scopes]]\nname = "acme"\norganization_sub_domain = "acme"\n',
            "scope 'acme': an organization's packages need a token: add token_file or token_env",
        ),
    ],
)
def test_a_bad_file_is_a_usage_error_naming_file_scope_and_key(cli, tmp_path, api, text, message):
    result, path = refused(cli, tmp_path, api, text)

    assert result.err == error_line(f"{path}: {message}")


def test_a_token_in_the_file_is_never_shown(cli, tmp_path, api):
    result, _ = refused(cli, tmp_path, api, '[[scopes]]\nname = "acme"\ntoken = "tok_secret"\n')

    assert "tok_secret" not in result.err


def test_a_file_that_is_not_toml_says_where(cli, tmp_path, api):
    result, path = refused(cli, tmp_path, api, "[[scopes]]\nname = acme\n")

    assert result.err == error_line(f"{path}: not valid TOML: Invalid value (at line 2, column 8)")


def test_a_missing_file_is_a_usage_error(cli, tmp_path, api):
    missing = tmp_path / "nope.toml"

    result = cli("sync", "--all", "--config", str(missing))

    assert (result.exit_code, result.err) == (
        2,
        error_line(f"cannot read the configuration file {missing}: No such file or directory"),
    )


def test_a_bad_scope_stops_every_scope_before_the_first_runs(cli, tmp_path, api):
    text = (
        f'database_url = "{sqlite_url(tmp_path)}"\n'
        '[[scopes]]\nname = "public"\n'
        '[[scopes]]\nname = "acme"\norganization_sub_domain = "acme"\ntoken_file = "acme.token"\n'
    )

    result, path = refused(cli, tmp_path, api, text)

    assert result.err == error_line(
        f"{path}: scope 'acme': cannot read the token file {tmp_path / 'acme.token'}: No such file or directory"
    )


def test_an_unset_token_variable_stops_every_scope(cli, tmp_path, api):
    text = (
        '[[scopes]]\nname = "public"\n[[scopes]]\nname = "beta"\norganization_id = "org_b"\ntoken_env = "BETA_TOKEN"\n'
    )

    result, path = refused(cli, tmp_path, api, text, "--database-url", sqlite_url(tmp_path))

    assert result.err == error_line(f"{path}: scope 'beta': token_env names BETA_TOKEN, which is not set or is empty")


def test_a_value_out_of_range_in_the_file_is_a_usage_error(cli, tmp_path, api):
    result, _ = refused(cli, tmp_path, api, '[sync]\nconcurrency = 40\n[[scopes]]\nname = "public"\n')

    assert result.err == error_line("--concurrency must be between 1 and 16, not 40")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all"], "--all needs a configuration file: give --config PATH or set KATAPULT_ETL_CONFIG"),
        (["--scope", "acme"], "--scope acme needs a configuration file: give --config PATH or set KATAPULT_ETL_CONFIG"),
    ],
)
def test_all_and_scope_need_a_file(cli, tmp_path, api, args, message):
    result = cli("sync", *args, "--database-url", sqlite_url(tmp_path), "--api-url", api.url)

    assert (result.exit_code, result.out, result.err) == (2, "", error_line(message))
    assert api.requests == []


def test_scope_flags_do_not_mix_with_the_file_scopes(cli, tmp_path, api):
    path = write_config(tmp_path, '[[scopes]]\nname = "public"\n')
    (tmp_path / "t").write_text("tok_good")

    with_org = cli("sync", "--all", "--config", str(path), "--organization-id", "org_1")
    with_token = cli("sync", "--all", "--config", str(path), "--token-file", str(tmp_path / "t"))
    unknown = cli("sync", "--scope", "acme", "--config", str(path))
    both = cli("sync", "--all", "--scope", "public", "--config", str(path))

    assert (with_org.exit_code, with_org.err) == (
        2,
        error_line(f"--all takes its scopes from {path}: not with --organization-id or --organization-sub-domain"),
    )
    assert (with_token.exit_code, with_token.err) == (
        2,
        error_line(
            "--all runs every scope with its own token: not with --token-file "
            "(a scope names its token_file or token_env)"
        ),
    )
    assert (unknown.exit_code, unknown.err) == (
        2,
        error_line(f"--scope acme: {path} has no scope of that name (its scopes: public)"),
    )
    assert both.exit_code == 2 and "argument --scope: not allowed with argument --all" in both.err


def test_a_file_is_never_picked_up_unless_named(cli, tmp_path, api, monkeypatch):
    write_config(tmp_path, 'database_url = "sqlite:///elsewhere.db"\n[sync]\nper_page = 5\n')
    monkeypatch.chdir(tmp_path)

    result = cli("sync", "--api-url", api.url)

    assert result.exit_code == 0, result.err
    assert (tmp_path / "katapult.db").exists() and not (tmp_path / "elsewhere.db").exists()
    assert {r.query["per_page"] for r in api.requests} == {"200"}


# -- precedence: flags, then the environment, then the file, then the defaults -----------------------


def test_database_url_precedence(cli, tmp_path, api, monkeypatch):
    monkeypatch.chdir(tmp_path)
    urls = {name: f"sqlite:///{tmp_path / name}.db" for name in ("flag", "env", "file")}
    path = write_config(tmp_path, f'database_url = "{urls["file"]}"\n')

    def runs_in(*extra: str, env=None) -> list[str]:
        assert cli("sync", "--api-url", api.url, *extra, env=env).exit_code == 0
        return sorted(p.name for p in tmp_path.glob("*.db"))

    assert runs_in() == ["katapult.db"]  # the default
    assert runs_in("--config", str(path)) == ["file.db", "katapult.db"]
    assert runs_in("--config", str(path), env={"DATABASE_URL": urls["env"]}) == ["env.db", "file.db", "katapult.db"]
    assert runs_in("--config", str(path), "--database-url", urls["flag"], env={"DATABASE_URL": urls["env"]}) == [
        "env.db",
        "file.db",
        "flag.db",
        "katapult.db",
    ]
    assert [query(urls[name], "SELECT COUNT(*) FROM sync_runs") for name in ("flag", "env", "file")] == [[(1,)]] * 3


def test_api_url_precedence(cli, tmp_path, api):
    servers = {"flag": api, **{name: FakeKatapult().start() for name in ("env", "file")}}
    try:
        path = write_config(tmp_path, f'api_url = "{servers["file"].url}"\n')
        env = {"KATAPULT_API_URL": servers["env"].url}

        def asked(*extra: str, env=None) -> list[str]:
            for server in servers.values():
                server.requests.clear()
            result = cli("sync", "--database-url", sqlite_url(tmp_path), "--config", str(path), *extra, env=env)
            assert result.exit_code == 0, result.err
            return [name for name, server in servers.items() if server.requests]

        assert asked() == ["file"]
        assert asked(env=env) == ["env"]
        assert asked("--api-url", api.url, env=env) == ["flag"]
    finally:
        for name in ("env", "file"):
            servers[name].stop()


def test_api_url_default(tmp_path):
    plan = plan_sync({"database_url": sqlite_url(tmp_path)}, {}, None)

    assert [run.settings.api_url for run in plan.runs] == ["https://api.katapult.io"]


def test_sync_option_precedence(cli, tmp_path, api):
    path = write_config(tmp_path, "[sync]\nper_page = 5\njson = true\n")

    def page_sizes(*extra: str) -> set[str]:
        api.requests.clear()
        result = cli("sync", "--database-url", sqlite_url(tmp_path), "--api-url", api.url, *extra)
        assert result.exit_code == 0, result.err
        return {r.query["per_page"] for r in api.requests}

    assert page_sizes() == {"200"}  # the default
    assert page_sizes("--config", str(path)) == {"5"}
    assert page_sizes("--config", str(path), "--per-page", "7") == {"7"}


def test_a_flag_from_the_file_applies(cli, tmp_path, api):
    path = write_config(tmp_path, "[sync]\njson = true\n")

    result = cli("sync", "--database-url", sqlite_url(tmp_path), "--api-url", api.url, "--config", str(path))

    assert result.exit_code == 0, result.err
    assert result.out.startswith('{"run_id": 1, "scope": "public"')


def test_the_file_is_named_by_the_environment_too(cli, tmp_path, api):
    path = write_config(tmp_path, f'database_url = "{sqlite_url(tmp_path)}"\n[sync]\nper_page = 5\n')

    result = cli("sync", "--api-url", api.url, env={"KATAPULT_ETL_CONFIG": str(path)})

    assert result.exit_code == 0, result.err
    assert {r.query["per_page"] for r in api.requests} == {"5"}
    assert query(sqlite_url(tmp_path), "SELECT scope, status FROM sync_runs") == [("public", "succeeded")]


def test_the_flag_names_the_file_before_the_environment(cli, tmp_path, api):
    chosen = write_config(tmp_path, "[sync]\nper_page = 7\n", name="chosen.toml")
    other = write_config(tmp_path, "[sync]\nper_page = 5\n", name="other.toml")

    result = cli(
        "sync",
        "--database-url",
        sqlite_url(tmp_path),
        "--api-url",
        api.url,
        "--config",
        str(chosen),
        env={"KATAPULT_ETL_CONFIG": str(other)},
    )

    assert result.exit_code == 0, result.err
    assert {r.query["per_page"] for r in api.requests} == {"7"}
