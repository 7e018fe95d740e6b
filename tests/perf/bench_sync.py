"""Benchmark: what a sync costs next to what the network costs. Run by hand, not by pytest:

    python tests/perf/bench_sync.py                       # SQLite; PostgreSQL too if TEST_DATABASE_URL is set
    python tests/perf/bench_sync.py --sizes 10000 --latencies 0   # a quick look
    python tests/perf/bench_sync.py --repeat 3                    # each figure the median of 3 runs

For each catalogue size N and per-request latency it starts the fake Katapult API (in this process)
and runs, each in a fresh child process so that its peak RSS is its own:
  - the reference: the same HTTP requests, JSON decoded, no database (the network limit);
  - for scale, a minimal hand-written loop: the same requests into one sqlite3 table, nothing else;
  - a first sync, an unchanged re-sync, and a re-sync after 1% of the packages changed.
It prints every figure with its ratio to the reference and whether each target is met. Only ratios
within one run are compared, never absolute times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

PER_PAGE = 200
CONCURRENCY = 4

# Targets, as ratios to the reference measured in the same run (issue 5).
FIRST_SYNC_AT_LATENCY = 1.5
FIRST_SYNC_NO_LATENCY = 2.5
UNCHANGED_NO_LATENCY = 1.5
RSS_GROWTH = 1.3

SYNC_SCENARIOS = ("first sync", "unchanged re-sync", "1% changed re-sync")


@dataclass(frozen=True)
class Figures:
    seconds: float
    cpu_seconds: float  # the process's CPU time, all its threads, over the same span as `seconds`
    requests: int
    rss_mb: float


# -- children: each measures itself and prints one JSON line ----------------------------------------


def child_reference(api_url: str, pages: int, concurrency: int, database_path: str | None = None) -> Figures:
    """The network limit: fetch and decode every page, as the sync would, and keep nothing.

    With a database path, the minimal hand-written loop instead: each page also goes straight into one
    sqlite3 table, with no checks, no history and no staging; the floor under any loader.
    """
    session = requests.Session()
    url = f"{api_url}/public/v1/virtual_machine_packages"

    def fetch(page: int) -> list[dict]:
        response = session.get(url, params={"page": page, "per_page": PER_PAGE}, timeout=(10, 30))
        response.raise_for_status()
        return response.json()["packages"]

    keep = _minimal_loop(database_path) if database_path else (lambda items: None)
    started, cpu_started = time.perf_counter(), time.process_time()
    keep(fetch(1))
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for items in pool.map(fetch, range(2, pages + 1)):
            keep(items)
    keep(None)
    return Figures(time.perf_counter() - started, time.process_time() - cpu_started, pages, _peak_rss_mb())


def _minimal_loop(database_path: str) -> Callable[[list[dict] | None], None]:
    """Keeps each page it is given in one table; None commits."""
    database = sqlite3.connect(database_path, isolation_level=None)
    database.execute(
        "CREATE TABLE packages (id TEXT PRIMARY KEY, name TEXT, cpu_cores INT, memory_in_gb INT, raw TEXT)"
    )
    database.execute("BEGIN")
    insert = "INSERT INTO packages VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET raw = excluded.raw"

    def keep(items: list[dict] | None) -> None:
        if items is None:
            database.execute("COMMIT")
            return
        rows = [(p["id"], p["name"], p["cpu_cores"], p["memory_in_gb"], json.dumps(p)) for p in items]
        database.executemany(insert, rows)

    return keep


def child_sync(api_url: str, database_url: str, concurrency: int) -> Figures:
    from etl.config import Settings
    from etl.pipeline import run_sync

    settings = Settings(database_url=database_url, api_url=api_url, concurrency=concurrency)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run_sync(settings)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if result.status != "succeeded":
        raise SystemExit(f"sync ended {result.status}: {result.reason}")
    return Figures(seconds, cpu_seconds, result.counts.requests, _peak_rss_mb())


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would inherit the peak of the driver
    # process (which holds the whole catalogue for the fake API) it was forked from.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(*args: str) -> Figures:
    output = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    ).stdout
    return Figures(**json.loads(output.strip().splitlines()[-1]))


# -- the driver ------------------------------------------------------------------------------------


@dataclass
class Row:
    size: int
    latency_ms: int
    database: str
    scenario: str
    figures: Figures
    reference: Figures
    target: float | None
    expected_requests: int | None

    @property
    def ratio(self) -> float:
        return self.figures.seconds / self.reference.seconds

    @property
    def verdicts(self) -> list[str]:
        verdicts = []
        if self.target is not None:
            verdicts.append("pass" if self.ratio <= self.target else "MISS")
        if self.expected_requests is not None:
            verdicts.append("pass" if self.figures.requests == self.expected_requests else "MISS")
        return verdicts


def time_target(args: argparse.Namespace, scenario: str, latency_ms: int, size: int, database: str) -> float | None:
    if size != max(args.sizes) or database != "sqlite":
        return None
    if scenario == "first sync":
        return FIRST_SYNC_AT_LATENCY if latency_ms else FIRST_SYNC_NO_LATENCY
    if scenario == "unchanged re-sync" and not latency_ms:
        return UNCHANGED_NO_LATENCY
    return None


def fresh_database(args: argparse.Namespace, kind: str, folder: Path, label: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / (label + '.db')}"
    from sqlalchemy import create_engine, text

    url = args.postgresql_url
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def bench_size(args: argparse.Namespace, size: int, latency_ms: int, folder: Path) -> list[Row]:
    """Every figure for one N and latency; with --repeat, each is the median of that many runs."""
    from etl.testing.catalogue import synthetic_catalogue
    from etl.testing.fakeapi import FakeKatapult

    pages = math.ceil(size / PER_PAGE)
    catalogue = synthetic_catalogue(size)
    server = FakeKatapult(catalogue, large_set_threshold=10**9, latency=latency_ms / 1000, rate_limit_permitted=10**9)
    measured: dict[tuple[str, str], list[Figures]] = {}
    with server:
        for run in range(args.repeat):
            measured.setdefault(("", "reference"), []).append(
                run_child("reference", server.url, str(pages), str(CONCURRENCY))
            )
            minimal_db = folder / f"minimal-{size}-{latency_ms}-{run}.db"
            measured.setdefault(("sqlite", "minimal loop"), []).append(
                run_child("reference", server.url, str(pages), str(CONCURRENCY), str(minimal_db))
            )
            for database in args.databases:
                for package in catalogue:  # every database, every run, starts from the same catalogue
                    package.pop("bench_generation", None)
                url = fresh_database(args, database, folder, f"{size}-{latency_ms}-{run}")
                for scenario in SYNC_SCENARIOS:
                    if scenario == "1% changed re-sync":
                        for package in catalogue[::100]:
                            package["bench_generation"] = package.get("bench_generation", 0) + 1
                    figures = run_child("sync", server.url, url, str(CONCURRENCY))
                    measured.setdefault((database, scenario), []).append(figures)
                print(
                    f"  measured N={size} latency={latency_ms}ms {database} (run {run + 1} of {args.repeat})",
                    file=sys.stderr,
                )
    reference = median_figures(measured.pop(("", "reference")))
    # The reference's own row, for its CPU time and peak RSS; its ratio is 1 by definition.
    network = Row(size, latency_ms, "", "network limit", reference, reference, None, None)
    return [network] + [
        Row(
            size,
            latency_ms,
            database,
            scenario,
            median_figures(runs),
            reference,
            time_target(args, scenario, latency_ms, size, database),
            pages,
        )
        for (database, scenario), runs in measured.items()
    ]


def median_figures(runs: list[Figures]) -> Figures:
    """The median time and CPU time; the most requests and the highest peak RSS of any run (the worst,
    not the middle)."""

    def middle(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    seconds, cpu_seconds = middle([f.seconds for f in runs]), middle([f.cpu_seconds for f in runs])
    return Figures(seconds, cpu_seconds, max(f.requests for f in runs), max(f.rss_mb for f in runs))


def large_set_requests(size: int) -> tuple[int, int]:
    """Requests for one first sync of a large_set catalogue (no totals): at most one page more."""
    from etl.testing.catalogue import synthetic_catalogue
    from etl.testing.fakeapi import FakeKatapult

    with (
        tempfile.TemporaryDirectory() as folder,
        FakeKatapult(synthetic_catalogue(size), rate_limit_permitted=10**9) as server,
    ):
        server.force_large_set = True
        figures = run_child("sync", server.url, f"sqlite:///{folder}/large.db", str(CONCURRENCY))
    return figures.requests, math.ceil(size / PER_PAGE)


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'N':>7} {'latency':>7} {'database':<10} {'scenario':<19} {'seconds':>8} {'CPU s':>6} {'network':>8} "
        f"{'ratio':>6} {'target':>6} {'requests':>8} {'RSS MB':>7}  result"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        target = f"{row.target:.1f}x" if row.target is not None else ""
        verdict = " ".join(row.verdicts)
        print(
            f"{row.size:>7} {row.latency_ms:>5}ms {row.database:<10} {row.scenario:<19} "
            f"{row.figures.seconds:>8.2f} {row.figures.cpu_seconds:>6.2f} {row.reference.seconds:>8.2f} "
            f"{row.ratio:>5.2f}x {target:>6} "
            f"{row.figures.requests:>8} {row.figures.rss_mb:>7.1f}  {verdict}"
        )


def print_memory_targets(args: argparse.Namespace, rows: list[Row]) -> list[bool]:
    """Peak RSS of each sync scenario at the largest N next to the smallest: flat, not growing with N."""
    small, large = min(args.sizes), max(args.sizes)
    if small == large:
        return []
    peaks = {(r.size, r.latency_ms, r.database, r.scenario): r.figures.rss_mb for r in rows}
    results = []
    for database in args.databases:
        for latency in args.latencies:
            for scenario in SYNC_SCENARIOS:
                low, high = peaks[small, latency, database, scenario], peaks[large, latency, database, scenario]
                ok = high / low <= RSS_GROWTH
                results.append(ok)
                print(
                    f"peak RSS, {scenario}, {database}, {latency} ms: N={large} {high:.1f} MB / "
                    f"N={small} {low:.1f} MB = {high / low:.2f}x (target <= {RSS_GROWTH}x): {'pass' if ok else 'MISS'}"
                )
    return results


def machine_line(args: argparse.Namespace) -> str:
    database = f"SQLite {sqlite3.sqlite_version}"
    if "postgresql" in args.databases:
        database += ", PostgreSQL"
    return (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, {database}; "
        f"per_page={PER_PAGE}, concurrency={CONCURRENCY}"
        + (f"; median of {args.repeat} runs" if args.repeat > 1 else "")
    )


def main(args: argparse.Namespace) -> int:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            for latency in args.latencies:
                rows.extend(bench_size(args, size, latency, Path(folder)))
    print(machine_line(args))
    print_table(rows)
    memory = print_memory_targets(args, rows)
    made, limit = large_set_requests(min(args.sizes))
    large_ok = made <= limit + 1
    print(
        f"large_set, N={min(args.sizes)}: {made} requests for {limit} pages of data "
        f"(target <= {limit + 1}): {'pass' if large_ok else 'MISS'}"
    )
    verdicts = [v for row in rows for v in row.verdicts] + ["pass" if ok else "MISS" for ok in [*memory, large_ok]]
    missed = verdicts.count("MISS")
    print(f"{len(verdicts) - missed} targets met, {missed} missed")
    return 1 if missed else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--latencies", type=lambda s: [int(x) for x in s.split(",")], default=[0, 20], help="ms")
    parser.add_argument("--databases", type=lambda s: s.split(","), default=None)
    parser.add_argument("--postgresql-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each figure; the median time is shown")
    args = parser.parse_args(argv)
    if args.databases is None:
        args.databases = ["sqlite", "postgresql"] if args.postgresql_url else ["sqlite"]
    return args


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        kind, *rest = sys.argv[2:]
        if kind == "reference":
            figures = child_reference(rest[0], int(rest[1]), int(rest[2]), *rest[3:])
        else:
            figures = child_sync(rest[0], rest[1], int(rest[2]))
        print(json.dumps(vars(figures)))
        sys.exit(0)
    sys.exit(main(parse_args(sys.argv[1:])))
