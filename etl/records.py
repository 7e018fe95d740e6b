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

INTEGER_FIELDS = (
    "cpu_cores",
    "ipv4_addresses",
    "memory_in_gb",
    "storage_in_gb",
    "monthly_bandwidth_allowance_in_gb",
)
TEXT_FIELDS = ("name", "permalink", "privacy")
ICON_TEXT_FIELDS = ("url", "file_name", "file_type", "digest")

# Every column a package row has, in a stable order (the staging table, snapshots and packages share it).
ATTRIBUTE_COLUMNS = (
    "name",
    "permalink",
    "cpu_cores",
    "ipv4_addresses",
    "memory_in_gb",
    "storage_in_gb",
    "monthly_bandwidth_allowance_in_gb",
    "privacy",
    "use_dedicated_cpus",
    "group_id",
    "group_name",
    "icon_url",
    "icon_file_name",
    "icon_file_type",
    "icon_file_size",
    "icon_digest",
)


def canonical_json(value: Any) -> str:
    """One spelling per content: sorted keys, no spaces, so equal content always hashes equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(raw: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(raw).encode()).hexdigest()


def package_row(raw: Any) -> dict[str, Any]:
    """The columns of one package, plus `id`, `content_hash` and `raw`; RecordError if it cannot be stored."""
    if not isinstance(raw, dict):
        raise RecordError(f"a package is {type(raw).__name__}, not a JSON object")
    package_id = raw.get("id")
    if not isinstance(package_id, str) or not package_id:
        raise RecordError(f"a package has no id (name {raw.get('name')!r})")
    row: dict[str, Any] = {"id": package_id}
    for name in TEXT_FIELDS:
        row[name] = _text(raw, name, package_id)
    for name in INTEGER_FIELDS:
        row[name] = _integer(raw, name, package_id)
    row["use_dedicated_cpus"] = _boolean(raw, "use_dedicated_cpus", package_id)
    row.update(_group_columns(raw.get("group"), package_id))
    row.update(_icon_columns(raw.get("icon"), package_id))
    row["content_hash"] = content_hash(raw)
    row["raw"] = raw
    return row


def _group_columns(group: Any, package_id: str) -> dict[str, Any]:
    if group is None:
        return {"group_id": None, "group_name": None}
    if not isinstance(group, dict):
        raise RecordError(f"package {package_id}: group is {group!r}, not an object")
    return {
        "group_id": _text(group, "id", package_id, "group.id"),
        "group_name": _text(group, "name", package_id, "group.name"),
    }


def _icon_columns(icon: Any, package_id: str) -> dict[str, Any]:
    if icon is None:
        icon = {}
    if not isinstance(icon, dict):
        raise RecordError(f"package {package_id}: icon is {icon!r}, not an object")
    columns = {f"icon_{name}": _text(icon, name, package_id, f"icon.{name}") for name in ICON_TEXT_FIELDS}
    columns["icon_file_size"] = _integer(icon, "file_size", package_id, "icon.file_size")
    return columns


def _text(source: dict[str, Any], key: str, package_id: str, label: str | None = None) -> str | None:
    value = source.get(key)
    if value is None or isinstance(value, str):
        return value
    raise RecordError(f"package {package_id}: {label or key} is {value!r}, not text")


def _integer(source: dict[str, Any], key: str, package_id: str, label: str | None = None) -> int | None:
    value = source.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise RecordError(f"package {package_id}: {label or key} is {value!r}, not a whole number")


def _boolean(source: dict[str, Any], key: str, package_id: str) -> bool | None:
    value = source.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise RecordError(f"package {package_id}: {key} is {value!r}, not true or false")
