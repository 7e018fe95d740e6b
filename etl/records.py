"""A package as Katapult sends it → one row of columns, checked, with the hash of its content.

Older API versions left `group`, `use_dedicated_cpus` and `monthly_bandwidth_allowance_in_gb` out and
sent `icon` as `{"url": ...}` only: a missing key becomes NULL. Keys we do not know stay in `raw`.
A value of the wrong type fails the run: storing a guess would put wrong history in the database.
"""

from __future__ import annotations

import hashlib
import json
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


# One encoder for every package: json.dumps with options builds a new one on each call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """One spelling per content: sorted keys, no spaces, so equal content always hashes equal."""
    return _CANONICAL.encode(value)


def hash_of_text(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def package_row(raw: Any) -> dict[str, Any]:
    """The columns of one package, plus `id`, `content_hash` and `raw_json` (its canonical JSON text).

    RecordError if it cannot be stored. Runs once per package per sync, hence the plain loops.
    """
    if not isinstance(raw, dict):
        raise RecordError(f"a package is {type(raw).__name__}, not a JSON object")
    package_id = raw.get("id")
    if type(package_id) is not str or not package_id:
        raise RecordError(f"a package has no id (name {raw.get('name')!r})")
    row: dict[str, Any] = {"id": package_id}
    _take(row, raw, TOP_LEVEL_FIELDS, package_id, "")
    _take(row, _object(raw, "group", package_id), GROUP_FIELDS, package_id, "group.")
    _take(row, _object(raw, "icon", package_id), ICON_FIELDS, package_id, "icon.")
    text = canonical_json(raw)
    row["content_hash"] = hash_of_text(text)
    row["raw_json"] = text
    return row


def _object(raw: dict[str, Any], key: str, package_id: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if type(value) is not dict:
        raise RecordError(f"package {package_id}: {key} is {value!r}, not an object")
    return value


def _take(
    row: dict[str, Any],
    source: dict[str, Any],
    fields: tuple[tuple[str, str, type], ...],
    package_id: str,
    prefix: str,
) -> None:
    for key, column, kind in fields:
        value = source.get(key)
        # `type(...) is`, not isinstance: JSON true must not pass as the whole number 1.
        if value is not None and type(value) is not kind:
            raise RecordError(f"package {package_id}: {prefix}{key} is {value!r}, not {TYPE_NAMES[kind]}")
        row[column] = value
