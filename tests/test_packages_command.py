"""katapult-etl packages: the catalogue now, as it was at a time, of one scope, or what was removed."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from etl.testing.fakeapi import DEFAULT_TOKEN

from .helpers import iso, second, sync_ok
from .scenario import merge_times

TOKEN = {"KATAPULT_API_TOKEN": DEFAULT_TOKEN}
# The table of the six packages below: permalink as wide as boulder-20, group_name last.
HEADER = "id                      name        permalink   cpu_cores  memory_in_gb  storage_in_gb  group_name"
BOULDER_20 = "vmpkg_Xr1hcf7e1oZYZMkK  BOULDER-20  boulder-20          2            20             25"
ROCK_1 = "vmpkg_dhG25G5SX3HrA5j5  ROCK-1      rock-1              1             1             10  Standard vCPU"
ROCK_1_BIGGER = "vmpkg_dhG25G5SX3HrA5j5  ROCK-1      rock-1              2             2             10  Standard vCPU"
ROCK_3 = "vmpkg_Eh5LYVKScVHpj7sM  ROCK-3      rock-3              1             3             25  Standard vCPU"
ROCK_6 = "vmpkg_dMeEyd1g8hwIlxR8  ROCK-6      rock-6              2             6             50"
ROCK_6_BIGGER = "vmpkg_dMeEyd1g8hwIlxR8  ROCK-6      rock-6              2             6             80"
ROCK_12 = "vmpkg_vYQHiDoHeSvsFCFI  ROCK-12     rock-12             4            12            100"
ROCK_18 = "vmpkg_WHJ4euoDO9S5Ncrc  ROCK-18     rock-18             6            18            150"


def read(cli, database_url, *args):
    result = cli("packages", *args, "--database-url", database_url)
    assert (result.exit_code, result.err) == (0, "")
    return result.out.splitlines()


@pytest.fixture
def three_runs(cli, database_url, api):
    """Six packages; run 2: ROCK-1 gets 2 cores and 2 GB, ROCK-6 is withdrawn; run 3: ROCK-6 comes back
    with 80 GB of storage and ROCK-18 is withdrawn. Returns when each run merged."""
    api.packages = api.packages[:6]
    by_name = {package["name"]: package for package in api.packages}
    sync_ok(cli, database_url, api)
    by_name["ROCK-1"].update(cpu_cores=2, memory_in_gb=2)
    api.packages.remove(by_name["ROCK-6"])
    sync_ok(cli, database_url, api)
    by_name["ROCK-6"]["storage_in_gb"] = 80
    api.packages.append(by_name["ROCK-6"])
    api.packages.remove(by_name["ROCK-18"])
    sync_ok(cli, database_url, api)
    return merge_times(database_url)


def test_the_catalogue_now_in_name_order_numbers_as_numbers(cli, database_url, three_runs):
    assert read(cli, database_url) == [HEADER, BOULDER_20, ROCK_1_BIGGER, ROCK_3, ROCK_6_BIGGER, ROCK_12]


def test_the_catalogue_as_it_was_at_each_run(cli, database_url, three_runs):
    merged = three_runs

    assert read(cli, database_url, "--at", iso(merged[1])) == [
        HEADER,
        BOULDER_20,
        ROCK_1,
        ROCK_3,
        ROCK_6,
        ROCK_12,
        ROCK_18,
    ]
    assert read(cli, database_url, "--at", iso(merged[2])) == [
        HEADER,
        BOULDER_20,
        ROCK_1_BIGGER,
        ROCK_3,
        ROCK_12,
        ROCK_18,
    ]
    assert read(cli, database_url, "--at", iso(merged[3] - timedelta(microseconds=1))) == [
        HEADER,
        BOULDER_20,
        ROCK_1_BIGGER,
        ROCK_3,
        ROCK_12,
        ROCK_18,
    ]
    before = merged[1] - timedelta(seconds=1)
    assert read(cli, database_url, "--at", iso(before)) == [f"no packages listed at {second(before)}"]


def test_the_removed_packages_with_when_now_and_at_a_time(cli, database_url, three_runs):
    merged = three_runs

    assert read(cli, database_url, "--removed") == [
        "id                      name     permalink  cpu_cores  memory_in_gb  storage_in_gb  group_name  removed_at",
        f"vmpkg_WHJ4euoDO9S5Ncrc  ROCK-18  rock-18            6            18            150              "
        f"{second(merged[3])}",
    ]
    assert read(cli, database_url, "--removed", "--at", iso(merged[2])) == [
        "id                      name    permalink  cpu_cores  memory_in_gb  storage_in_gb  group_name  removed_at",
        f"vmpkg_dMeEyd1g8hwIlxR8  ROCK-6  rock-6             2             6             50              "
        f"{second(merged[2])}",
    ]
    assert read(cli, database_url, "--removed", "--at", iso(merged[1])) == [
        f"no packages removed by {second(merged[1])}"
    ]


def test_a_scope_shows_only_what_that_scope_listed(cli, database_url, api):
    api.packages = api.packages[:2]
    private = {**api.packages[0], "id": "vmpkg_private0000001", "name": "ACME-1", "permalink": "acme-1"}
    api.organizations = {"org_acme": {"sub_domain": "acme", "packages": [private]}}
    sync_ok(cli, database_url, api)
    sync_ok(cli, database_url, api, "--organization-id", "org_acme", env=TOKEN)
    api.organizations["org_acme"]["packages"] = []
    sync_ok(cli, database_url, api, "--organization-id", "org_acme", env=TOKEN)
    merged = merge_times(database_url)
    acme = "organization[id]=org_acme"
    header = "id                      name    permalink  cpu_cores  memory_in_gb  storage_in_gb  group_name"
    rock_1 = "vmpkg_dhG25G5SX3HrA5j5  ROCK-1  rock-1             1             1             10  Standard vCPU"
    rock_3 = "vmpkg_Eh5LYVKScVHpj7sM  ROCK-3  rock-3             1             3             25  Standard vCPU"
    acme_1 = "vmpkg_private0000001    ACME-1  acme-1             1             1             10  Standard vCPU"

    assert read(cli, database_url, "--scope", "public") == [header, rock_1, rock_3]
    assert read(cli, database_url, "--scope", acme, "--at", iso(merged[2])) == [header, acme_1, rock_1, rock_3]
    assert read(cli, database_url, "--scope", acme) == [header, rock_1, rock_3]
    assert read(cli, database_url, "--scope", "public", "--removed") == ["no packages removed that public listed"]
    assert [row["name"] for row in json.loads("".join(read(cli, database_url, "--scope", acme, "--json")))] == [
        "ROCK-1",
        "ROCK-3",
    ]
    assert [
        row["name"] for row in json.loads("".join(read(cli, database_url, "--scope", acme, "--removed", "--json")))
    ] == ["ACME-1"]


def test_a_scope_no_run_had_is_a_usage_error(cli, database_url, api):
    sync_ok(cli, database_url, api)

    result = cli("packages", "--scope", "organization[id]=org_nope", "--database-url", database_url)

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == (
        "katapult-etl: --scope 'organization[id]=org_nope': no run in this database had that scope; it knows public\n"
    )


def test_a_time_that_is_not_one_is_a_usage_error(cli, tmp_path):
    result = cli("packages", "--at", "yesterday", "--database-url", f"sqlite:///{tmp_path / 'none.db'}")

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == (
        "katapult-etl: --at 'yesterday': give an age (2w, 7d, 24h, 30m), a date (2026-03-01) or a UTC date and "
        "time (2026-03-01T12:00)\n"
    )
    assert not (tmp_path / "none.db").exists()


def test_json_jsonl_and_csv_carry_every_column(cli, tmp_path, api):
    url = f"sqlite:///{tmp_path / 'katapult.db'}"
    api.packages = api.packages[:1]
    sync_ok(cli, url, api)
    merged = iso(merge_times(url)[1])
    rock_1 = {
        "id": "vmpkg_dhG25G5SX3HrA5j5",
        "name": "ROCK-1",
        "permalink": "rock-1",
        "cpu_cores": 1,
        "memory_in_gb": 1,
        "storage_in_gb": 10,
        "monthly_bandwidth_allowance_in_gb": 1024,
        "ipv4_addresses": 1,
        "use_dedicated_cpus": False,
        "privacy": "public",
        "group_id": "vmpkgrp_P5kCZvAtvXRC3sVl",
        "group_name": "Standard vCPU",
        "valid_from": merged,
        "removed_at": None,
    }

    assert json.loads("\n".join(read(cli, url, "--json"))) == [rock_1]
    assert json.loads("\n".join(read(cli, url, "--format", "json"))) == [rock_1]
    assert [json.loads(line) for line in read(cli, url, "--format", "jsonl")] == [rock_1]
    assert read(cli, url, "--format", "csv") == [
        "id,name,permalink,cpu_cores,memory_in_gb,storage_in_gb,monthly_bandwidth_allowance_in_gb,ipv4_addresses,"
        "use_dedicated_cpus,privacy,group_id,group_name,valid_from,removed_at",
        f"vmpkg_dhG25G5SX3HrA5j5,ROCK-1,rock-1,1,1,10,1024,1,false,public,vmpkgrp_P5kCZvAtvXRC3sVl,Standard vCPU,"
        f"{merged},",
    ]
    assert read(cli, url, "--removed", "--format", "csv") == [
        "id,name,permalink,cpu_cores,memory_in_gb,storage_in_gb,monthly_bandwidth_allowance_in_gb,ipv4_addresses,"
        "use_dedicated_cpus,privacy,group_id,group_name,valid_from,removed_at",
    ]
    assert read(cli, url, "--removed", "--format", "jsonl") == []
