"""A package as Katapult sends it → one row, on its own."""

from __future__ import annotations

import hashlib
import json

import pytest

from etl.errors import RecordError
from etl.records import (
    canonical_json,
    key_paths,
    key_tree,
    package_row,
    package_values,
    same_json,
    storable_values,
    without_keys,
)
from etl.testing.catalogue import public_catalogue


def rock_1() -> dict:
    return public_catalogue()[0]


def test_a_current_package_becomes_one_row():
    row = package_row(rock_1())

    assert {k: v for k, v in row.items() if k not in ("content_hash", "raw_json")} == {
        "id": "vmpkg_dhG25G5SX3HrA5j5",
        "name": "ROCK-1",
        "permalink": "rock-1",
        "cpu_cores": 1,
        "ipv4_addresses": 1,
        "memory_in_gb": 1,
        "storage_in_gb": 10,
        "monthly_bandwidth_allowance_in_gb": 1024,
        "privacy": "public",
        "use_dedicated_cpus": False,
        "group_id": "vmpkgrp_P5kCZvAtvXRC3sVl",
        "group_name": "Standard vCPU",
        "icon_url": None,
        "icon_file_name": None,
        "icon_file_type": None,
        "icon_file_size": None,
        "icon_digest": None,
    }
    assert json.loads(row["raw_json"]) == rock_1()
    assert row["content_hash"] == hashlib.sha256(row["raw_json"].encode()).hexdigest()


def test_the_hash_ignores_key_order_and_sees_every_value():
    package = rock_1()
    reordered = dict(reversed(list(package.items())))
    changed = {**package, "storage_in_gb": 11}

    assert package_row(reordered)["content_hash"] == package_row(package)["content_hash"]
    assert package_row(changed)["content_hash"] != package_row(package)["content_hash"]
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'


def test_an_older_api_version_leaves_columns_null_and_unknown_keys_in_raw():
    package = rock_1()
    for key in ("group", "use_dedicated_cpus", "monthly_bandwidth_allowance_in_gb"):
        del package[key]
    package["icon"] = {"url": "https://katapult.example/rock.png"}
    package["launch_price"] = 5

    row = package_row(package)

    assert (row["group_id"], row["group_name"], row["use_dedicated_cpus"]) == (None, None, None)
    assert (row["icon_url"], row["icon_file_size"]) == ("https://katapult.example/rock.png", None)
    assert json.loads(row["raw_json"])["launch_price"] == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": None}, "a package has no id (name 'ROCK-1')"),
        ({"id": ""}, "a package has no id (name 'ROCK-1')"),
        ({"id": 7}, "a package has no id (name 'ROCK-1')"),
        ({"cpu_cores": "1"}, "package vmpkg_dhG25G5SX3HrA5j5: cpu_cores is '1', not a whole number"),
        ({"memory_in_gb": 1.5}, "package vmpkg_dhG25G5SX3HrA5j5: memory_in_gb is 1.5, not a whole number"),
        ({"storage_in_gb": True}, "package vmpkg_dhG25G5SX3HrA5j5: storage_in_gb is True, not a whole number"),
        ({"use_dedicated_cpus": 1}, "package vmpkg_dhG25G5SX3HrA5j5: use_dedicated_cpus is 1, not true or false"),
        ({"name": 7}, "package vmpkg_dhG25G5SX3HrA5j5: name is 7, not text"),
        ({"group": "Standard"}, "package vmpkg_dhG25G5SX3HrA5j5: group is 'Standard', not an object"),
        ({"group": {"id": 5}}, "package vmpkg_dhG25G5SX3HrA5j5: group.id is 5, not text"),
        ({"icon": {"file_size": "2kB"}}, "package vmpkg_dhG25G5SX3HrA5j5: icon.file_size is '2kB', not a whole number"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(change, message):
    with pytest.raises(RecordError) as refused:
        package_row({**rock_1(), **change})
    assert str(refused.value) == message


def test_a_package_that_is_not_an_object_is_refused():
    with pytest.raises(RecordError, match=r"^a package is list, not a JSON object$"):
        package_row(["vmpkg_dhG25G5SX3HrA5j5"])


ROCK_1_ID = "vmpkg_dhG25G5SX3HrA5j5"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"memory_in_gb": 2**64}, "memory_in_gb is 18446744073709551616, beyond a 64-bit integer"),
        ({"cpu_cores": 2**63}, "cpu_cores is 9223372036854775808, beyond a 64-bit integer"),
        ({"storage_in_gb": -(2**63) - 1}, "storage_in_gb is -9223372036854775809, beyond a 64-bit integer"),
        ({"icon": {"file_size": 2**70}}, "icon.file_size is 1180591620717411303424, beyond a 64-bit integer"),
        ({"name": "ROCK\x00-1"}, "name is 'ROCK\\x00-1', with a NUL character"),
        ({"launch": {"notes": ["ok", "a\x00b"]}}, "launch.notes[1] is 'a\\x00b', with a NUL character"),
        ({"launch": {"a\x00": 1}}, "a key of launch is 'a\\x00', with a NUL character"),
        ({"name": "ROCK-\ud83d"}, "name is 'ROCK-\\ud83d', with half a surrogate pair (not UTF-8 text)"),
        ({"\udc00": 1}, "a key of the package is '\\udc00', with half a surrogate pair (not UTF-8 text)"),
        ({"launch_price": float("nan")}, "a number that is not finite (NaN or Infinity)"),
        ({"launch_price": float("inf")}, "a number that is not finite (NaN or Infinity)"),
        ({"group": {"id": "g" * 256}}, "group.id is 256 characters long, over 255"),
        ({"cpu_cores": "x" * 100}, f"cpu_cores is {repr('x' * 100)[:60]}…, not a whole number"),
    ],
)
def test_a_package_no_database_can_store_exactly_is_refused_with_its_id(change, reason):
    with pytest.raises(RecordError) as refused:
        package_row({**rock_1(), **change})
    assert (refused.value.package_id, refused.value.reason) == (ROCK_1_ID, reason)
    assert str(refused.value) == f"package {ROCK_1_ID}: {reason}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "v" * 256}, "a package has an id of 256 characters, over 255 (name 'ROCK-1')"),
        ({"id": "vmpkg_\x00"}, "a package has an id with a NUL character: 'vmpkg_\\x00' (name 'ROCK-1')"),
        ({"id": "vmpkg_\ud83d"}, "a package has an id with half a surrogate pair: 'vmpkg_\\ud83d' (name 'ROCK-1')"),
    ],
)
def test_a_package_whose_id_cannot_be_a_key_is_refused_without_an_id(change, message):
    with pytest.raises(RecordError) as refused:
        package_row({**rock_1(), **change})
    assert (refused.value.package_id, str(refused.value)) == (None, message)


@pytest.mark.parametrize(
    "change",
    [
        {"cpu_cores": 2**63 - 1, "memory_in_gb": -(2**63), "storage_in_gb": 2**31},
        {"name": "N" * 300, "permalink": "p" * 1000},
        {"id": "v" * 255, "group": {"id": "g" * 255, "name": "G" * 300}},
        {"name": "ROCK-\U0001f680", "launch": {"note": "\\u0000 is how JSON spells NUL"}},
        {"launch_price": 2**200},  # only the columns are 64-bit: raw keeps any JSON number
    ],
)
def test_what_every_database_can_store_is_not_refused(change):
    row = package_row({**rock_1(), **change})
    assert json.loads(row["raw_json"]) == {**rock_1(), **change}


def test_a_package_whose_content_is_known_gives_its_id_group_and_hash_alone():
    known, changed, new = public_catalogue()[:3]
    changed_before = {**changed, "memory_in_gb": changed["memory_in_gb"] - 1}
    digests = {bytes.fromhex(package_row(package)["content_hash"]) for package in (known, changed_before)}
    refused = {**known, "id": ""}  # a package that cannot be stored stays refused, known hashes or not

    rows, errors = storable_values([known, changed, new, refused], digests)

    assert rows == [
        (known["id"], "vmpkgrp_P5kCZvAtvXRC3sVl", "Standard vCPU", package_row(known)["content_hash"]),
        package_values(changed),
        package_values(new),
    ]
    assert [str(error) for error in errors] == ["a package has no id (name 'ROCK-1')"]


# -- keys: schema drift and --ignore-key ------------------------------------------------------------


def test_key_paths_are_dotted_through_objects_but_not_lists():
    raw = {"id": "x", "icon": {"url": "u", "meta": {"token": 1}}, "group": None, "tags": [{"a": 1}]}

    assert key_paths(raw) == {"id", "icon", "icon.url", "icon.meta", "icon.meta.token", "group", "tags"}


def test_without_keys_drops_each_path_and_whole_objects_and_keeps_the_rest():
    raw = {"a": 1, "launch_price": 2, "icon": {"url": "u", "token": "t"}, "meta": {"b": 1}, "n": None}
    tree = key_tree(["launch_price", "icon.token", "meta", "meta.b", "n.deeper"])

    assert without_keys(raw, tree) == {"a": 1, "icon": {"url": "u"}, "n": None}
    assert raw["icon"] == {"url": "u", "token": "t"}  # the package itself is left as it was


def test_same_json_compares_numbers_by_value_and_nothing_else_loosely():
    assert same_json({"a": [1, 2.0], "b": None}, {"b": None, "a": [1.0, 2]})
    assert not same_json({"a": True}, {"a": 1})
    assert not same_json({"a": "1"}, {"a": 1})
    assert not same_json({"a": [1]}, {"a": [1, 1]})
    assert not same_json({"a": 1}, {"a": 1, "b": None})
