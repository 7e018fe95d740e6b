"""Benchmark: what a sync costs next to a minimal hand-written loop and the network. Run by hand, not by pytest:

    python tests/perf/bench_sync.py                       # SQLite; PostgreSQL too if TEST_DATABASE_URL is set
    python tests/perf/bench_sync.py --sizes 20000 --latencies 0 --repeat 1   # a quick look

For each catalogue size N and per-request latency it starts the fake Katapult API (in this process)
and runs, each in a fresh child process so that its peak RSS is its own:
  - the network limit: the same HTTP requests, JSON decoded, no database;
  - the reference: a minimal hand-written loop that keeps history (tests/perf/minimal_loop.py), its
    first sync, unchanged re-sync and re-sync after 1% of the packages changed;
  - the same three scenarios with katapult-etl, on SQLite and on PostgreSQL.
It prints every figure, its ratio to the network limit, and each target of issue 18 as pass or MISS.
Only ratios within one run are compared, never absolute times.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

PER_PAGE = 200
CONCURRENCY = 4

SYNC_SCENARIOS = ("first sync", "unchanged re-sync", "1% changed re-sync")
NETWORK, LOOP = "network limit", "loop"

# Targets (issue 18), as ratios measured in the same run, at the largest N. At 0 ms on SQLite, each
# scenario against the same scenario of the minimal loop:
AGAINST_LOOP = {"first sync": 1.6, "unchanged re-sync": 1.3, "1% changed re-sync": 1.4}
# With latency, a first sync on SQLite against the network limit at the same concurrency:
FIRST_SYNC_AT_LATENCY = 1.3
# At 0 ms on PostgreSQL, each scenario against the same scenario on SQLite:
POSTGRESQL_AGAINST_SQLITE = 1.5
# Peak RSS at the largest N against the smallest, in each scenario:
RSS_GROWTH = 1.3


@dataclass(frozen=True)
class Figures:
    seconds: float
    cpu_seconds: float  # the process's CPU time, all its threads, over the same span as `seconds`
    requests: int
    rss_mb: float


# -- children: each measures itself and prints one JSON line ----------------------------------------


def child_network(api_url: str, pages: int, concurrency: int) -> Figures:
    """The network limit: fetch and decode every page, as the sync would, and keep nothing."""
    session = requests.Session()
    url = f"{api_url}/public/v1/virtual_machine_packages"

    def fetch(page: int) -> list[dict]:
        response = session.get(url, params={"page": page, "per_page": PER_PAGE}, timeout=(10, 30))
        response.raise_for_status()
        return response.json()["packages"]

    started, cpu_started = time.perf_counter(), time.process_time()
    fetch(1)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in pool.map(fetch, range(2, pages + 1)):
            pass
    return Figures(time.perf_counter() - started, time.process_time() - cpu_started, pages, _peak_rss_mb())


def child_loop(api_url: str, database_path: str, concurrency: int) -> Figures:
    """The minimal hand-written loop (minimal_loop.py), one run of it."""
    import minimal_loop

    started, cpu_started = time.perf_counter(), time.process_time()
    requests_made = minimal_loop.run(api_url, database_path, PER_PAGE, concurrency)
    return Figures(time.perf_counter() - started, time.process_time() - cpu_started, requests_made, _peak_rss_mb())


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


@dataclass(frozen=True)
class Target:
    """A time target: at most `limit` times the figure of `against` (a row's key) in the same run."""

    against: tuple[int, int, str, str]  # (size, latency_ms, database, scenario)
    limit: float
    label: str  # what it is against, as the table shows it


@dataclass
class Row:
    size: int
    latency_ms: int
    database: str  # "" for the network limit, LOOP for the minimal loop, else the sync's database
    scenario: str
    figures: Figures
    expected_requests: int

    @property
    def key(self) -> tuple[int, int, str, str]:
        return (self.size, self.latency_ms, self.database, self.scenario)


def time_target(args: argparse.Namespace, row: Row) -> Target | None:
    """The issue's time target for a row, if it has one."""
    if row.size != max(args.sizes):
        return None
    base = (row.size, row.latency_ms)
    if row.database == "sqlite" and row.latency_ms == 0:
        return Target((*base, LOOP, row.scenario), AGAINST_LOOP[row.scenario], "loop")
    if row.database == "sqlite" and row.scenario == "first sync":
        return Target((*base, "", NETWORK), FIRST_SYNC_AT_LATENCY, "network")
    if row.database == "postgresql" and row.latency_ms == 0:
        return Target((*base, "sqlite", row.scenario), POSTGRESQL_AGAINST_SQLITE, "sqlite")
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
    memory_sizes = [package["memory_in_gb"] for package in catalogue]
    server = FakeKatapult(catalogue, large_set_threshold=10**9, latency=latency_ms / 1000, rate_limit_permitted=10**9)
    measured: dict[tuple[str, str], list[Figures]] = {}
    with server:
        for run in range(args.repeat):
            measured.setdefault(("", NETWORK), []).append(
                run_child("network", server.url, str(pages), str(CONCURRENCY))
            )
            for database in (LOOP, *args.databases):
                for package, memory in zip(catalogue, memory_sizes, strict=True):  # every loader starts alike
                    package["memory_in_gb"] = memory
                label = f"{size}-{latency_ms}-{run}"
                target = str(folder / f"loop-{label}.db") if database == LOOP else None
                target = target or fresh_database(args, database, folder, label)
                for scenario in SYNC_SCENARIOS:
                    if scenario == "1% changed re-sync":
                        # A change of a value, as prices and sizes change: the packages keep their keys
                        # (a key new to the scope is a schema change, which reads every current version).
                        for package in catalogue[::100]:
                            package["memory_in_gb"] += 1
                    kind = "loop" if database == LOOP else "sync"
                    figures = run_child(kind, server.url, target, str(CONCURRENCY))
                    measured.setdefault((database, scenario), []).append(figures)
                print(
                    f"  measured N={size} latency={latency_ms}ms {database} (run {run + 1} of {args.repeat})",
                    file=sys.stderr,
                )
    return [
        Row(size, latency_ms, database, scenario, median_figures(runs), pages)
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


def print_table(args: argparse.Namespace, rows: list[Row]) -> list[bool]:
    """The table, one row per figure; returns whether each target in it is met."""
    by_key = {row.key: row for row in rows}
    header = (
        f"{'N':>7} {'latency':>7} {'database':<10} {'scenario':<19} {'seconds':>8} {'CPU s':>6} {'/network':>8} "
        f"{'ratio':>6} {'target':>13} {'requests':>8} {'RSS MB':>7}  result"
    )
    print(header)
    print("-" * len(header))
    met = []
    for row in rows:
        network = by_key[row.size, row.latency_ms, "", NETWORK].figures.seconds
        verdicts = []
        ratio = target_text = ""
        target = time_target(args, row)
        if target is not None:
            against = by_key[target.against].figures.seconds
            ok = row.figures.seconds / against <= target.limit
            ratio, target_text = f"{row.figures.seconds / against:.2f}x", f"{target.limit:.1f}x {target.label}"
            verdicts.append(ok)
        requests_ok = row.figures.requests == row.expected_requests
        verdicts.append(requests_ok)
        met.extend(verdicts)
        print(
            f"{row.size:>7} {row.latency_ms:>5}ms {row.database:<10} {row.scenario:<19} "
            f"{row.figures.seconds:>8.2f} {row.figures.cpu_seconds:>6.2f} {row.figures.seconds / network:>7.2f}x "
            f"{ratio:>6} {target_text:>13} {row.figures.requests:>8} {row.figures.rss_mb:>7.1f}  "
            + " ".join("pass" if ok else "MISS" for ok in verdicts)
        )
    return met


def print_memory_targets(args: argparse.Namespace, rows: list[Row]) -> list[bool]:
    """Peak RSS of each sync scenario at the largest N next to the smallest: flat, not growing with N."""
    small, large = min(args.sizes), max(args.sizes)
    if small == large:
        return []
    peaks = {row.key: row.figures.rss_mb for row in rows}
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
    met = print_table(args, rows)
    met += print_memory_targets(args, rows)
    made, limit = large_set_requests(min(args.sizes))
    met.append(made <= limit + 1)
    print(
        f"large_set, N={min(args.sizes)}: {made} requests for {limit} pages of data "
        f"(target <= {limit + 1}): {'pass' if met[-1] else 'MISS'}"
    )
    missed = met.count(False)
    print(f"{len(met) - missed} targets met, {missed} missed")
    return 1 if missed else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--latencies", type=lambda s: [int(x) for x in s.split(",")], default=[0, 20], help="ms")
    parser.add_argument("--databases", type=lambda s: s.split(","), default=None)
    parser.add_argument("--postgresql-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each figure; the median time is shown")
    args = parser.parse_args(argv)
    if args.databases is None:
        args.databases = ["sqlite", "postgresql"] if args.postgresql_url else ["sqlite"]
    return args


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        kind, *rest = sys.argv[2:]
        if kind == "network":
            figures = child_network(rest[0], int(rest[1]), int(rest[2]))
        elif kind == "loop":
            figures = child_loop(rest[0], rest[1], int(rest[2]))
        else:
            figures = child_sync(rest[0], rest[1], int(rest[2]))
        print(json.dumps(vars(figures)))
        sys.exit(0)
    sys.exit(main(parse_args(sys.argv[1:])))
