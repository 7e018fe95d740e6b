"""The reference for the benchmark: the sync a careful person would write by hand in an afternoon.

Plain requests + json + sqlite3, nothing of katapult-etl. It keeps history honestly, so that the ratio
of a sync to it measures our overhead and nothing else (issue 18):
  - one transaction for the whole run;
  - the known (id, content hash) of every current package loaded once, before the walk;
  - each package fingerprinted (SHA-256 of its canonical JSON) and written only when new or changed:
    its current row upserted, its previous version closed, one history row for the new version;
  - what the walk did not see marked removed, and its current version closed.
It has its own tables (`loop_packages`, `loop_versions`), and asks the fake API the same requests the
sync does: page 1, then pages 2..total_pages, `concurrency` at a time, processed in page order.

What it leaves out is what the contract asks of a sync and a hand-written loop can skip: per-package
checks (types, ranges, text every database can store), a second walk before removing, listings per
scope, groups, last_seen_at on every package and listing, changed_fields, run records and locks.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS loop_packages (
        id TEXT PRIMARY KEY, name TEXT, permalink TEXT, cpu_cores INTEGER, ipv4_addresses INTEGER,
        memory_in_gb INTEGER, storage_in_gb INTEGER, monthly_bandwidth_allowance_in_gb INTEGER,
        privacy TEXT, use_dedicated_cpus INTEGER, group_id TEXT, group_name TEXT, icon_url TEXT,
        content_hash TEXT NOT NULL, raw TEXT NOT NULL, first_seen_at TEXT NOT NULL, removed_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS loop_versions (
        id INTEGER PRIMARY KEY, package_id TEXT NOT NULL REFERENCES loop_packages (id),
        valid_from TEXT NOT NULL, valid_to TEXT, content_hash TEXT NOT NULL, raw TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS loop_versions_current ON loop_versions (package_id) WHERE valid_to IS NULL",
)
UPSERT = """INSERT INTO loop_packages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, permalink = excluded.permalink,
    cpu_cores = excluded.cpu_cores, ipv4_addresses = excluded.ipv4_addresses,
    memory_in_gb = excluded.memory_in_gb, storage_in_gb = excluded.storage_in_gb,
    monthly_bandwidth_allowance_in_gb = excluded.monthly_bandwidth_allowance_in_gb,
    privacy = excluded.privacy, use_dedicated_cpus = excluded.use_dedicated_cpus,
    group_id = excluded.group_id, group_name = excluded.group_name, icon_url = excluded.icon_url,
    content_hash = excluded.content_hash, raw = excluded.raw, removed_at = NULL"""
CLOSE = "UPDATE loop_versions SET valid_to = ? WHERE package_id = ? AND valid_to IS NULL"
INSERT_VERSION = "INSERT INTO loop_versions (package_id, valid_from, content_hash, raw) VALUES (?, ?, ?, ?)"
REMOVE = "UPDATE loop_packages SET removed_at = ? WHERE id = ?"


def run(api_url: str, database_path: str, per_page: int, concurrency: int) -> int:
    """One sync of the public catalogue into `database_path`; returns the requests it made."""
    database = sqlite3.connect(database_path, isolation_level=None)
    for statement in SCHEMA:
        database.execute(statement)
    now = datetime.now(UTC).isoformat()
    database.execute("BEGIN IMMEDIATE")
    known = dict(database.execute("SELECT id, content_hash FROM loop_packages WHERE removed_at IS NULL"))
    seen: set[str] = set()
    pages = _Pages(api_url, per_page, concurrency)
    for items in pages:
        changed = []
        for package in items:
            text = json.dumps(package, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            content_hash = hashlib.sha256(text.encode()).hexdigest()
            package_id = package["id"]
            seen.add(package_id)
            if known.get(package_id) != content_hash:
                changed.append((package, content_hash, text))
        if changed:
            _write(database, changed, now)
    gone = [(now, package_id) for package_id in known.keys() - seen]
    database.executemany(REMOVE, gone)
    database.executemany(CLOSE, gone)
    database.execute("COMMIT")
    database.close()
    return pages.requests


def _write(database: sqlite3.Connection, changed: list[tuple[dict[str, Any], str, str]], now: str) -> None:
    rows = []
    for package, content_hash, text in changed:
        group, icon = package.get("group") or {}, package.get("icon") or {}
        rows.append(
            (
                package["id"],
                package.get("name"),
                package.get("permalink"),
                package.get("cpu_cores"),
                package.get("ipv4_addresses"),
                package.get("memory_in_gb"),
                package.get("storage_in_gb"),
                package.get("monthly_bandwidth_allowance_in_gb"),
                package.get("privacy"),
                package.get("use_dedicated_cpus"),
                group.get("id"),
                group.get("name"),
                icon.get("url"),
                content_hash,
                text,
                now,
            )
        )
    database.executemany(UPSERT, rows)
    database.executemany(CLOSE, [(now, row[0]) for row in rows])
    database.executemany(INSERT_VERSION, [(row[0], now, row[13], row[14]) for row in rows])


class _Pages:
    """Every page's packages in page order, up to `concurrency` requests in flight (and as many pages
    fetched ahead, no more: the catalogue is never held whole)."""

    def __init__(self, api_url: str, per_page: int, concurrency: int) -> None:
        self._session = requests.Session()
        self._url = f"{api_url}/public/v1/virtual_machine_packages"
        self._per_page = per_page
        self._concurrency = concurrency
        self.requests = 0

    def _fetch(self, page: int) -> dict[str, Any]:
        response = self._session.get(self._url, params={"page": page, "per_page": self._per_page}, timeout=(10, 30))
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        first = self._fetch(1)
        self.requests = 1
        yield first["packages"]
        total = first["pagination"]["total_pages"]
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            window: deque[Future[dict[str, Any]]] = deque()
            following = iter(range(2, total + 1))
            for page in following:
                window.append(pool.submit(self._fetch, page))
                if len(window) == 2 * self._concurrency:
                    break
            while window:
                body = window.popleft().result()
                self.requests += 1
                page = next(following, None)
                if page is not None:
                    window.append(pool.submit(self._fetch, page))
                yield body["packages"]
