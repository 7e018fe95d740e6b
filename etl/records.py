"""A package as Katapult sends it → one row of columns, checked, with the hash of its content.

Older API versions left `group`, `use_dedicated_cpus` and `monthly_bandwidth_allowance_in_gb` out and
sent `icon` as `{"url": ...}` only: a missing key becomes NULL. Keys we do not know stay in `raw`.

A package that cannot be stored exactly as it is on every supported database is refused here, the same
way whatever the database: a value of the wrong type (storing a guess would put wrong history in the
database), a whole number beyond 64 bits in a column, a NUL character or half a surrogate pair anywhere
(PostgreSQL refuses the first, and UTF-8 cannot spell the second), a number that is not finite, an id
or group id longer than a key column. The pipeline skips a refused package, keeps its previous version
and says so; only a package without a usable id cannot be kept, not knowing which one it is.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Container, Iterable
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
# The widest whole number every supported database stores in an integer column (BIGINT).
SMALLEST_INTEGER, LARGEST_INTEGER = -(2**63), 2**63 - 1
# The longest id or group id: the key columns are VARCHAR(255).
MAX_KEY_LENGTH = 255
# How much of a refused value a message quotes.
SHOWN_CHARACTERS = 60

# Every column a package row has, in a stable order (the staging table, snapshots and packages share it).
ATTRIBUTE_COLUMNS = tuple(column for _, column, _ in (*TOP_LEVEL_FIELDS, *GROUP_FIELDS, *ICON_FIELDS))
# What package_values returns, in this order.
ROW_COLUMNS = ("id", *ATTRIBUTE_COLUMNS, "content_hash", "raw_json")
# What storable_values gives, in this order, of a package whose content is known already (its hash is
# among the known ones): its id, its group (which the run records as seen) and its hash.
SEEN_ROW_COLUMNS = ("id", "group_id", "group_name", "content_hash")

_TOP_KEYS = tuple(key for key, _, _ in TOP_LEVEL_FIELDS)
_GROUP_KEYS = tuple(key for key, _, _ in GROUP_FIELDS)
_ICON_KEYS = tuple(key for key, _, _ in ICON_FIELDS)
_FIELDS_BY_COLUMN = tuple(
    (prefix, key, kind)
    for prefix, fields in (("", TOP_LEVEL_FIELDS), ("group.", GROUP_FIELDS), ("icon.", ICON_FIELDS))
    for key, _, kind in fields
)
_NO_OBJECT: dict[str, Any] = {}
_INTEGER_POSITIONS = tuple(position for position, (_, _, kind) in enumerate(_FIELDS_BY_COLUMN) if kind is int)
_GROUP_ID_POSITION = _FIELDS_BY_COLUMN.index(("group.", "id", str))


def _canonical_encoder() -> Callable[[Any], str]:
    """One spelling per content: sorted keys, no spaces, so equal content always hashes equal.

    The C encoder of the json module, made once: JSONEncoder.encode builds a new one on every call,
    a quarter of the cost of encoding a package. Where there is no C encoder, JSONEncoder is the same.
    """
    # NaN and Infinity are refused (ValueError): they are not JSON, and PostgreSQL and MariaDB say so.
    fallback = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # typeshed does not declare json.encoder.c_make_encoder (the C accelerator, None where it is missing):
    # its type is written here, from CPython's _json.make_encoder.
    make_encoder: Callable[..., Callable[[Any, int], Iterable[str]]] | None
    make_encoder = json_encoder.c_make_encoder  # type: ignore[attr-defined]
    if make_encoder is None:
        return fallback.encode
    encode = make_encoder(None, fallback.default, json_encoder.encode_basestring, None, ":", ",", True, False, False)

    def canonical(value: Any) -> str:
        return "".join(encode(value, 0))

    return canonical


canonical_json = _canonical_encoder()


def hash_of_text(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def package_row(raw: Any) -> dict[str, Any]:
    """The columns of one package by name, plus `id`, `content_hash` and `raw_json`."""
    return dict(zip(ROW_COLUMNS, package_values(raw), strict=True))


def package_values(raw: Any) -> tuple[Any, ...]:
    """One package as the values of ROW_COLUMNS: its id, its columns, the hash of its canonical JSON
    text and that text. RecordError if it cannot be stored exactly as it is on every database.

    Runs once per package per sync (100,000 times for a large catalogue), hence the shape: the values
    are taken with map() and their types checked all at once, as one tuple of types; a catalogue has
    only a handful of those (which fields are null), so each is judged once. The rarer faults are
    looked for only where a cheap test (the text does not encode, has an escaped NUL) says they may be.
    """
    return _checked_values(raw, package_id_of(raw), None)


def _checked_values(raw: dict[str, Any], package_id: str, fingerprint: tuple[str, str] | None) -> tuple[Any, ...]:
    """package_values() of a package with a usable id; `fingerprint` is its (canonical text, hash) when
    already made."""
    group = _object(raw, "group", package_id)
    icon = _object(raw, "icon", package_id)
    values = (*map(raw.get, _TOP_KEYS), *map(group.get, _GROUP_KEYS), *map(icon.get, _ICON_KEYS))
    if not _types_are_valid(tuple(map(type, values))):
        _refuse_wrong_type(values, package_id)
    _refuse_out_of_range(values, package_id)
    if fingerprint is None:
        try:
            text = canonical_json(raw)
        except ValueError:
            raise RecordError("a number that is not finite (NaN or Infinity)", package_id) from None
        try:
            content_hash = hash_of_text(text)
        except UnicodeEncodeError:
            _refuse_text(raw, package_id, _has_half_a_surrogate, "with half a surrogate pair (not UTF-8 text)")
            raise
    else:
        text, content_hash = fingerprint
    if "\\u0000" in text:  # an escaped NUL, or an escaped backslash before "u0000": look closer
        _refuse_text(raw, package_id, _has_nul, "with a NUL character")
    return (package_id, *values, content_hash, text)


def storable_values(
    items: Iterable[Any], known: Container[bytes] = frozenset()
) -> tuple[list[tuple[Any, ...]], list[RecordError]]:
    """Of each package of a page: its SEEN_ROW_COLUMNS if the SHA-256 digest of its content is `known`,
    else its package_values() if it can be stored, else its refusal.

    A known package was checked when its content was first stored, and that content is the same (the
    hash says so), so its checks are not made again: for an unchanged re-sync they were most of the
    cost of this step. Only its id, its canonical text and its hash are.
    """
    rows: list[tuple[Any, ...]] = []
    refused: list[RecordError] = []
    for item in items:
        try:
            rows.append(_seen_or_checked_values(item, known) if known else package_values(item))
        except RecordError as error:
            refused.append(error)
    return rows, refused


def _seen_or_checked_values(raw: Any, known: Container[bytes]) -> tuple[Any, ...]:
    package_id = package_id_of(raw)
    try:
        text = canonical_json(raw)
        digest = hashlib.sha256(text.encode()).digest()
    except (ValueError, UnicodeEncodeError):  # not storable: package_values says why
        return _checked_values(raw, package_id, None)
    content_hash = digest.hex()
    if digest not in known:
        return _checked_values(raw, package_id, (text, content_hash))
    group = raw.get("group") or _NO_OBJECT  # an object or null, as it was when it was stored
    return (package_id, group.get("id"), group.get("name"), content_hash)


def package_id_of(raw: Any) -> str:
    """A package's id alone (all a confirming walk keeps), refused as package_values refuses it."""
    if not isinstance(raw, dict):
        raise RecordError(f"a package is {type(raw).__name__}, not a JSON object")
    return _usable_id(raw)


def _usable_id(raw: dict[str, Any]) -> str:
    """The package's id, if it can be a key on every database; a RecordError without an id if not."""
    package_id = raw.get("id")
    # ASCII: no surrogate either. The usual case, checked first.
    if (
        type(package_id) is str
        and 0 < len(package_id) <= MAX_KEY_LENGTH
        and package_id.isascii()
        and "\x00" not in package_id
    ):
        return package_id
    name = _shown(raw.get("name"))
    if type(package_id) is not str or not package_id:
        raise RecordError(f"a package has no id (name {name})")
    if len(package_id) > MAX_KEY_LENGTH:
        raise RecordError(f"a package has an id of {len(package_id)} characters, over {MAX_KEY_LENGTH} (name {name})")
    for problem, what in ((_has_nul, "a NUL character"), (_has_half_a_surrogate, "half a surrogate pair")):
        if problem(package_id):
            raise RecordError(f"a package has an id with {what}: {_shown(package_id)} (name {name})")
    return package_id


def _object(raw: dict[str, Any], key: str, package_id: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return _NO_OBJECT
    if type(value) is not dict:
        raise RecordError(f"{key} is {_shown(value)}, not an object", package_id)
    return value


@functools.lru_cache(maxsize=1024)
def _types_are_valid(types: tuple[type, ...]) -> bool:
    return all(_is_allowed(found, kind) for found, (_, _, kind) in zip(types, _FIELDS_BY_COLUMN, strict=True))


def _refuse_wrong_type(values: tuple[Any, ...], package_id: str) -> None:
    for value, (prefix, key, kind) in zip(values, _FIELDS_BY_COLUMN, strict=True):
        if not _is_allowed(type(value), kind):
            raise RecordError(f"{prefix}{key} is {_shown(value)}, not {TYPE_NAMES[kind]}", package_id)


def _refuse_out_of_range(values: tuple[Any, ...], package_id: str) -> None:
    for position in _INTEGER_POSITIONS:
        value = values[position]
        if value is not None and not SMALLEST_INTEGER <= value <= LARGEST_INTEGER:
            prefix, key, _ = _FIELDS_BY_COLUMN[position]
            raise RecordError(f"{prefix}{key} is {value}, beyond a 64-bit integer", package_id)
    group_id = values[_GROUP_ID_POSITION]
    if group_id is not None and len(group_id) > MAX_KEY_LENGTH:
        raise RecordError(f"group.id is {len(group_id)} characters long, over {MAX_KEY_LENGTH}", package_id)


def _refuse_text(raw: dict[str, Any], package_id: str, problem: Callable[[str], bool], what: str) -> None:
    """RecordError naming the first text in the package (a value or a key) that has `problem`."""
    found = _first_text_with(raw, "", problem)
    if found is not None:
        where, value = found
        raise RecordError(f"{where} is {_shown(value)}, {what}", package_id)


def _first_text_with(value: Any, path: str, problem: Callable[[str], bool]) -> tuple[str, str] | None:
    """(where, text) of the first string in a JSON value, keys included, that has `problem`."""
    if isinstance(value, str):
        return (path, value) if problem(value) else None
    items: Iterable[tuple[str, Any]] = ()
    if isinstance(value, dict):
        for key in value:
            if problem(key):
                return (f"a key of {path or 'the package'}", key)
        items = ((_printable(f"{path}.{key}" if path else key), item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    for where, item in items:
        found = _first_text_with(item, where, problem)
        if found is not None:
            return found
    return None


def _has_nul(text: str) -> bool:
    return "\x00" in text


def _has_half_a_surrogate(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _shown(value: Any) -> str:
    """A value as a message quotes it: its repr (which escapes NULs and surrogates), cut if long."""
    shown = repr(value)
    return shown if len(shown) <= SHOWN_CHARACTERS else f"{shown[:SHOWN_CHARACTERS]}…"


def _printable(text: str) -> str:
    """Text a message can carry into any database: NULs and half surrogates escaped."""
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


def _is_allowed(found: type, kind: type) -> bool:
    # `is`, not issubclass: JSON true must not pass as the whole number 1.
    return found is type(None) or found is kind


# -- keys: what schema drift compares, and what --ignore-key leaves out of a version ------------------

# The keys katapult-etl keeps in columns (and `id`), as dotted paths, and the objects that hold some.
COLUMN_KEYS = frozenset({"id", *(f"{prefix}{key}" for prefix, key, _ in _FIELDS_BY_COLUMN), "group", "icon"})


def key_paths(raw: Any) -> frozenset[str]:
    """Every key of a package as a dotted path (`icon`, `icon.url`), nested objects included; a list's
    items are values, not keys. A key that itself holds a dot reads as a path (it is one, to the user)."""
    paths: set[str] = set()
    _collect_paths(raw, "", paths)
    return frozenset(paths)


def _collect_paths(value: Any, prefix: str, paths: set[str]) -> None:
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(item, dict):
            _collect_paths(item, f"{path}.", paths)


def ignored_key_problem(key: str) -> str | None:
    """Why `key` cannot be an --ignore-key (None: it can): it must be a dotted path of non-empty parts,
    and not a key katapult-etl keeps in a column, whose change always opens a version."""
    if not key or key != key.strip() or any(not part for part in key.split(".")):
        return "give a key, or a dotted path to a nested key (icon.token)"
    if key in COLUMN_KEYS:
        return "that key is kept in a column of its own (or holds some), so its change always makes a new version"
    return None


def key_tree(paths: Iterable[str]) -> dict[str, Any]:
    """Dotted paths as nested dicts, a leaf as None: {"launch_price": None, "icon": {"token": None}}."""
    tree: dict[str, Any] = {}
    for path in paths:
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            child = node.setdefault(part, {})
            if child is None:  # a whole object is ignored already: its keys go with it
                break
            node = child
        else:
            node[leaf] = None
    return tree


def without_keys(raw: Any, tree: dict[str, Any]) -> Any:
    """`raw` without the keys of `tree` (from key_tree); the rest as it is."""
    if not tree or not isinstance(raw, dict):
        return raw
    kept: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in tree:
            kept[key] = value
        elif tree[key] is not None:
            kept[key] = without_keys(value, tree[key])
    return kept


def same_json(first: Any, second: Any) -> bool:
    """Whether two JSON values are the same content: numbers by value (PostgreSQL's jsonb gives 1e2 back
    as 100), but true is never 1 and "1" never 1, as Python's == would have it."""
    kind = _json_kind(first)
    if kind != _json_kind(second):
        return False
    if kind == "object":
        return first.keys() == second.keys() and all(same_json(first[key], second[key]) for key in first)
    if kind == "array":
        return len(first) == len(second) and all(map(same_json, first, second))
    return bool(first == second)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__  # str, NoneType
