"""A package as Katapult sends it → one row of columns, checked, with the hash of its content.

Older API versions left `group`, `use_dedicated_cpus` and `monthly_bandwidth_allowance_in_gb` out and
sent `icon` as `{"url": ...}` only: a missing key becomes NULL. Keys we do not know stay in `raw`.
A value of the wrong type fails the run: storing a guess would put wrong history in the database.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from json import encoder as json_encoder
from typing import Any

from .errors import RecordError

# (key in the package, column, JSON type it must have when present)
TOP_LEVEL_FIELDS = (
    ("name", "name", str),
    ("permalink", "permalink", str),
    ("cpu_cores", "cpu_cores", int),
    ("ipv4_addresses", "ipv4_addresses", int),
    ("memory_in_gb", "memory_in_gb", int),
    ("storage_in_gb", "storage_in_gb", int),
    ("monthly_bandwidth_allowance_in_gb", "monthly_bandwidth_allowance_in_gb", int),
    ("privacy", "privacy", str),
    ("use_dedicated_cpus", "use_dedicated_cpus", bool),
)
GROUP_FIELDS = (("id", "group_id", str), ("name", "group_name", str))
ICON_FIELDS = (
    ("url", "icon_url", str),
    ("file_name", "icon_file_name", str),
    ("file_type", "icon_file_type", str),
    ("file_size", "icon_file_size", int),
    ("digest", "icon_digest", str),
)
TYPE_NAMES = {str: "text", int: "a whole number", bool: "true or false"}

# Every column a package row has, in a stable order (the staging table, snapshots and packages share it).
ATTRIBUTE_COLUMNS = tuple(column for _, column, _ in (*TOP_LEVEL_FIELDS, *GROUP_FIELDS, *ICON_FIELDS))
# What package_values returns, in this order.
ROW_COLUMNS = ("id", *ATTRIBUTE_COLUMNS, "content_hash", "raw_json")

_TOP_KEYS = tuple(key for key, _, _ in TOP_LEVEL_FIELDS)
_GROUP_KEYS = tuple(key for key, _, _ in GROUP_FIELDS)
_ICON_KEYS = tuple(key for key, _, _ in ICON_FIELDS)
_FIELDS_BY_COLUMN = tuple(
    (prefix, key, kind)
    for prefix, fields in (("", TOP_LEVEL_FIELDS), ("group.", GROUP_FIELDS), ("icon.", ICON_FIELDS))
    for key, _, kind in fields
)
_NO_OBJECT: dict[str, Any] = {}


def _canonical_encoder() -> Callable[[Any], str]:
    """One spelling per content: sorted keys, no spaces, so equal content always hashes equal.

    The C encoder of the json module, made once: JSONEncoder.encode builds a new one on every call,
    a quarter of the cost of encoding a package. Where there is no C encoder, JSONEncoder is the same.
    """
    options = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False}
    fallback = json.JSONEncoder(**options)  # type: ignore[arg-type]
    if json_encoder.c_make_encoder is None:
        return fallback.encode
    encode = json_encoder.c_make_encoder(
        None, fallback.default, json_encoder.encode_basestring, None, ":", ",", True, False, True
    )

    def canonical(value: Any) -> str:
        return "".join(encode(value, 0))

    return canonical


canonical_json = _canonical_encoder()


def hash_of_text(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def package_row(raw: Any) -> dict[str, Any]:
    """The columns of one package by name, plus `id`, `content_hash` and `raw_json`."""
    return dict(zip(ROW_COLUMNS, package_values(raw)))


def package_values(raw: Any) -> tuple[Any, ...]:
    """One package as the values of ROW_COLUMNS: its id, its columns, the hash of its canonical JSON
    text and that text. RecordError if it cannot be stored.

    Runs once per package per sync (100,000 times for a large catalogue), hence the shape: the values
    are taken with map() and their types checked all at once, as one tuple of types; a catalogue has
    only a handful of those (which fields are null), so each is judged once.
    """
    package_id = package_id_of(raw)
    group = _object(raw, "group", package_id)
    icon = _object(raw, "icon", package_id)
    values = (*map(raw.get, _TOP_KEYS), *map(group.get, _GROUP_KEYS), *map(icon.get, _ICON_KEYS))
    if not _types_are_valid(tuple(map(type, values))):
        _refuse_wrong_type(values, package_id)
    text = canonical_json(raw)
    return (package_id, *values, hash_of_text(text), text)


def package_id_of(raw: Any) -> str:
    """A package's id alone (all a confirming walk keeps), refused as package_values refuses it."""
    if not isinstance(raw, dict):
        raise RecordError(f"a package is {type(raw).__name__}, not a JSON object")
    package_id = raw.get("id")
    if type(package_id) is not str or not package_id:
        raise RecordError(f"a package has no id (name {raw.get('name')!r})")
    return package_id


def _object(raw: dict[str, Any], key: str, package_id: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return _NO_OBJECT
    if type(value) is not dict:
        raise RecordError(f"package {package_id}: {key} is {value!r}, not an object")
    return value


@functools.lru_cache(maxsize=1024)
def _types_are_valid(types: tuple[type, ...]) -> bool:
    return all(_is_allowed(found, kind) for found, (_, _, kind) in zip(types, _FIELDS_BY_COLUMN))


def _refuse_wrong_type(values: tuple[Any, ...], package_id: str) -> None:
    for value, (prefix, key, kind) in zip(values, _FIELDS_BY_COLUMN):
        if not _is_allowed(type(value), kind):
            raise RecordError(f"package {package_id}: {prefix}{key} is {value!r}, not {TYPE_NAMES[kind]}")


def _is_allowed(found: type, kind: type) -> bool:
    # `is`, not issubclass: JSON true must not pass as the whole number 1.
    return found is type(None) or found is kind
