"""One sync run, end to end. The pipeline owns the run's lock, its run record and its transaction.

    lock the scope → mark dead runs failed → record this run as running (committed)
    → walk every page into a temporary staging table → if that walk missed a listed package, walk
    again, noting only ids, to confirm it → merge, in ONE transaction, with the run's final record
    → or, on any error, roll the merge back and record the run as failed.

So a failed, partial or killed run changes nothing but its own sync_runs row. A dry run takes the
same path (walk, confirm, classify, decide what may be removed); only its writes differ: it counts
what the run would remove and rolls back, writing nothing, not even a sync_runs row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import requests
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import outbox
from .client import KatapultClient, Page
from .clock import RunClock, utc_now
from .config import Settings
from .database import head_revision, known_revision, open_engine, upgrade
from .delivery import deliver_pending
from .dialects import run_lock
from .drift import ChangedKeys, schema_changes
from .errors import (
    DatabaseError,
    EtlError,
    InvalidArgumentError,
    RecordError,
    describe,
)
from .fetching import OrderedFetcher
from .pacing import Allowance, Pacer
from .paginator import PageWalk
from .payload import MAX_CHANGES, RunSummary, build_payload, changed_anything
from .records import package_id_of, storable_values
from .results import ChangeType, MassUpdate, NotificationBacklog, RunCounts, RunResult, RunStatus, SchemaChanges
from .store import Store
from .urls import sqlite_path
from .webhooks import WebhookSender

log = logging.getLogger(__name__)

FALLBACK_PAGE_SIZES = (100, 30)
# Staging commits are cheap for the database but not free: SQLite flushes the temporary table's cache
# on each (per-page commits made staging 100,000 packages 3x slower). Committing now and then keeps a
# PostgreSQL transaction from staying open for a whole long walk.
PAGES_PER_STAGING_COMMIT = 50
# Pages each fetcher may have fetched ahead of the page being stored: enough to keep every fetcher busy
# while one slow page holds up the order; at 4 fetchers and 200 packages a page, about 7 MB of pages
# (2 per fetcher walked as fast at 20 ms; 8 is what the benchmark in the README measured).
READ_AHEAD_PER_FETCHER = 8
# How many packages that could not be stored a run's message names; the log (-v) names every one.
REFUSALS_NAMED = 10
# Ids named in the warning about packages only one walk missed; the count is always given.
MISSED_ONCE_IDS_SHOWN = 10
WITHOUT_ID = "nothing removed: a package without a usable id could be any package the walk missed"


@dataclass(frozen=True)
class Refusal:
    """A package the walk saw on `page` but could not store as it is."""

    page: int
    error: RecordError

    def __str__(self) -> str:
        if self.error.package_id is None:
            return f"page {self.page}: {self.error}"
        return f"{self.error.package_id}: {self.error.reason}"


@dataclass(frozen=True)
class WalkOutcome:
    pages: int
    complete: bool
    reason: str | None
    refused: tuple[Refusal, ...] = ()
    per_page: int = 0  # the page size Katapult took

    @property
    def without_id(self) -> bool:
        """Whether a refused package had no usable id: it could be any one the walk missed."""
        return any(refusal.error.package_id is None for refusal in self.refused)


@dataclass(frozen=True)
class Proof:
    """The walk whose content the run merges, and whether this run's walks prove what is missing:
    `reason` says why not (None: they do)."""

    outcome: WalkOutcome
    reason: str | None = None


@dataclass
class Hooks:
    """What tests, the demo and the CLI inject: the HTTP session, the sleep between retries, the
    monotonic clock that times the run, the wall clock whose times the run records, and
    `on_page(pages_done, total_pages or None)`, called after each page of a walk is stored; and the
    rate-limit `allowance` of the run's token, which `sync --all` shares between the scopes of one token
    (None: the run's own)."""

    http: requests.Session | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = utc_now
    on_page: Callable[[int, int | None], None] = lambda done, total: None
    allowance: Allowance | None = None


def run_sync(settings: Settings, hooks: Hooks | None = None) -> RunResult:
    """One complete sync of one scope; raises an EtlError when the run failed."""
    hooks = hooks or Hooks()
    engine = _engine_for(settings)
    try:
        if settings.dry_run:
            return _dry_run(engine, settings, hooks)
        # Lock first: a second run of the scope exits at once, without waiting on a migration or a merge.
        with run_lock(engine, settings.database_url, settings.scope.key):
            upgrade(engine)
            result = _locked_run(engine, settings, hooks)
            # After the commit, and outside the run's record: a delivery that fails is a warning, never the run's.
            return replace(result, notifications=_deliver_notifications(engine, settings, hooks))
    except SQLAlchemyError as error:
        raise DatabaseError(f"database error: {describe(error)}") from error
    finally:
        engine.dispose()


def _deliver_notifications(engine: Engine, settings: Settings, hooks: Hooks) -> NotificationBacklog | None:
    """Deliver what is pending (this run's notifications and any older ones, of every scope); the
    backlog left, for the metrics. Nothing here changes the run's status or exit code."""
    try:
        with WebhookSender(sleep=hooks.sleep) as sender:
            return deliver_pending(engine, settings.notify, sender, hooks.wall_clock).backlog
    except (SQLAlchemyError, EtlError) as error:
        words = describe(error) if isinstance(error, SQLAlchemyError) else str(error)
        log.warning("could not deliver the pending notifications: %s", words)
        return None


def _engine_for(settings: Settings) -> Engine:
    path = sqlite_path(settings.database_url)
    if settings.dry_run and path is not None and not path.exists():
        raise DatabaseError(f"{path} does not exist: a dry run compares with a database and writes nothing")
    return open_engine(settings.database_url)


def _locked_run(engine: Engine, settings: Settings, hooks: Hooks) -> RunResult:
    started = hooks.clock()
    clock = RunClock(hooks.wall_clock)
    run_id = record_start(engine, settings.scope.key, settings.api, clock)
    counts = RunCounts()
    try:
        return _run(engine, settings, hooks, counts, _Merge(settings, run_id, clock), started)
    except BaseException as error:
        record_failure(engine, run_id, counts, error, clock)
        raise


def _dry_run(engine: Engine, settings: Settings, hooks: Hooks) -> RunResult:
    """The run's own path, with a rehearsal for its writes: nothing is written, not even a sync_runs row."""
    return _run(engine, settings, hooks, RunCounts(), _Rehearsal(settings), hooks.clock())


def record_start(engine: Engine, scope: str, api: str, clock: RunClock) -> int:
    """Record a run of `scope` as running, committed at once; called under the scope's run lock (a sync's
    or a retire's), so any other run of the scope still marked running is dead and marked failed."""
    with Session(bind=engine) as session:
        store = Store(session)
        # Under the scope's run lock: no run of this scope records anything until we have started.
        clock.not_before(store.newest_recorded_time())
        now = clock.now()
        abandoned = store.abandon_running(scope, now)
        if abandoned:
            log.warning("marked %d abandoned run(s) of %s as failed", abandoned, scope)
        run_id = store.start_run(
            scope=scope,
            api=api,
            started_at=now,
            host=socket.gethostname(),
            pid=os.getpid(),
            **vars(RunCounts()),
        )
        session.commit()
        log.info("run %d of %s started", run_id, scope, extra={"run_id": run_id, "scope": scope})
        return run_id


def record_failure(engine: Engine, run_id: int, counts: RunCounts, error: BaseException, clock: RunClock) -> None:
    """Record a run as failed, with why, on a connection of its own (the run's may be gone)."""
    message = _failure_message(error)
    try:
        with Session(bind=engine) as session:
            Store(session).finish_run(
                run_id, status=RunStatus.FAILED, finished_at=clock.now(), error=message, **vars(counts)
            )
            session.commit()
    except SQLAlchemyError as second:
        log.error("could not record run %d as failed: %s", run_id, describe(second))


def _failure_message(error: BaseException) -> str:
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "interrupted: the run was stopped before it finished"
    if isinstance(error, SQLAlchemyError):
        return f"database error: {describe(error)}"
    return str(error) or type(error).__name__


@dataclass(frozen=True)
class RemovalDecision:
    allowed: bool
    missing: int = 0
    reason: str | None = None
    refused: bool = False


@dataclass(frozen=True)
class Verdict:
    """What a run decided: what it may remove, and why it is incomplete (None: it is not)."""

    removal: RemovalDecision
    reason: str | None
    schema_changes: SchemaChanges | None = None
    mass_update: MassUpdate | None = None

    @property
    def status(self) -> RunStatus:
        return RunStatus.SUCCEEDED if self.reason is None else RunStatus.INCOMPLETE

    @property
    def removes(self) -> bool:
        # With nothing missing, there is nothing to unlist (nor to count).
        return self.removal.allowed and self.removal.missing > 0


class _Writes(Protocol):
    """All that differs between the real run and the dry run: what it checks on the connection, the
    transaction it decides in, and what it does with the decision. The rest is one path, so that a
    dry run says what the real run would do."""

    @property
    def run_id(self) -> int | None: ...

    def open(self, connection: Connection) -> None: ...

    def deciding(
        self, connection: Connection, session: Session, store: Store
    ) -> contextlib.AbstractContextManager[None]: ...

    def write(self, store: Store, verdict: Verdict, counts: RunCounts) -> None: ...


def _run(
    engine: Engine, settings: Settings, hooks: Hooks, counts: RunCounts, writes: _Writes, started: float
) -> RunResult:
    """Every run, real or dry: walk, confirm, classify, decide; only `writes` differ."""
    with (
        engine.connect() as connection,
        KatapultClient(
            settings, session=hooks.http, sleep=hooks.sleep, clock=hooks.clock, allowance=hooks.allowance
        ) as client,
    ):
        try:
            writes.open(connection)
            verdict = _walk_and_decide(connection, client, settings, counts, hooks.on_page, writes)
        finally:
            _copy_request_stats(client, counts)
        # The temporary tables are left to go with the connection, closed right after: dropping them
        # first would write every staged page to SQLite's free list.
    return RunResult(
        run_id=writes.run_id,
        scope=settings.scope.key,
        api=settings.api,
        status=verdict.status,
        counts=counts,
        seconds=hooks.clock() - started,
        dry_run=writes.run_id is None,  # only a dry run has no sync_runs row
        reason=verdict.reason,
        mass_removal_refused=verdict.removal.refused,
        schema_changes=verdict.schema_changes,
        mass_update=verdict.mass_update,
    )


def _walk_and_decide(
    connection: Connection,
    client: KatapultClient,
    settings: Settings,
    counts: RunCounts,
    on_page: Callable[[int, int | None], None],
    writes: _Writes,
) -> Verdict:
    with Session(bind=connection) as session, discarded_if_interrupted(connection):
        store = Store(session)
        proof = _Walk(connection, session, store, client, settings, counts, on_page).with_proof()
        _copy_request_stats(client, counts)  # before the writes: the run's record counts the walk's requests
        with writes.deciding(connection, session, store):
            _apply_classification(counts, store.classify())
            listed = store.count_listed(settings.scope.key)  # before the merge: what the scope listed
            changed = _settle_changed_packages(store, settings, counts, listed)
            schema = _schema_changes(store, settings.scope.key, changed, listed)
            removal = _removal_decision(store, settings, proof, listed)
            mass_update = _mass_update(settings, counts, listed)
            verdict = Verdict(removal, _run_reason(proof.outcome, removal), schema, mass_update)
            writes.write(store, verdict, counts)
    return verdict


@contextlib.contextmanager
def discarded_if_interrupted(connection: Connection) -> Iterator[None]:
    """A signal (SIGTERM from cron or systemd, Ctrl-C) can land in the middle of a database call, a
    COPY half sent: the connection's state is then unknown, and rolling it back fails and hides the
    interruption. It is thrown away instead; the database drops its transaction and temporary tables
    with it, and the run is recorded as interrupted on a fresh connection."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        connection.invalidate()
        raise


@dataclass(frozen=True)
class _Merge:
    """The real run's writes: the merge and the run's final record, in one transaction under the merge lock."""

    settings: Settings
    run_id: int
    clock: RunClock

    def open(self, connection: Connection) -> None:
        """Nothing to check: run_sync has brought the schema to head under the run lock."""

    @contextlib.contextmanager
    def deciding(self, connection: Connection, session: Session, store: Store) -> Iterator[None]:
        # End the walk's last read: on SQLite a merge that grew out of a DEFERRED read would fail at once
        # ("database is locked") instead of waiting while another scope's merge holds the write lock.
        session.commit()
        connection.execution_options(sqlite_begin="IMMEDIATE")
        with merging(session, store, self.clock):
            yield

    def write(self, store: Store, verdict: Verdict, counts: RunCounts) -> None:
        now = self.clock.now()
        scope = self.settings.scope.key
        store.upsert_groups(now)
        store.close_versions_of_updated(self.run_id, now)
        store.upsert_packages(now, unchanged=counts.unchanged)
        store.insert_versions(self.run_id, now)
        store.refresh_in_place(now)
        store.upsert_listings(scope, now)
        if verdict.removes:
            counts.removed = store.remove_missing(scope, self.run_id, now)
        finished_at = self.clock.now()
        store.finish_run(
            self.run_id,
            status=verdict.status,
            finished_at=finished_at,
            error=verdict.reason,
            schema_changes=None if verdict.schema_changes is None else str(verdict.schema_changes),
            **vars(counts),
        )
        if self.settings.notify and changed_anything(counts):
            # In the merge's transaction: no change lands without its notification, none tells of a rollback.
            summary = RunSummary(
                self.run_id,
                scope,
                self.settings.api,
                verdict.status,
                finished_at,
                counts,
                verdict.reason,
                verdict.schema_changes,
                verdict.mass_update,
            )
            payload = build_payload(summary, outbox.run_changes(store.session, self.run_id, MAX_CHANGES))
            urls = [target.stored_url for target in self.settings.notify]
            outbox.add_notifications(store.session, self.run_id, urls, payload, finished_at)


@contextlib.contextmanager
def merging(session: Session, store: Store, clock: RunClock) -> Iterator[None]:
    """The merge's transaction, under the merge lock that every writer of versions holds: committed when
    the block ends, rolled back if it raises; the lock let go either way."""
    try:
        store.lock_for_merge()
        # Under the merge lock: nothing newer can be recorded meanwhile.
        clock.not_before(store.newest_recorded_time())
        yield
        session.commit()
    except Exception:  # not an interruption: discarded_if_interrupted throws that connection away
        session.rollback()
        _unlock_merge(store, session)
        raise
    _unlock_merge(store, session)


def _unlock_merge(store: Store, session: Session) -> None:
    store.unlock_after_merge()
    session.commit()


@dataclass(frozen=True)
class _Rehearsal:
    """The dry run's writes: count what the run would remove, then roll everything back."""

    settings: Settings
    run_id: None = None

    def open(self, connection: Connection) -> None:
        connection.execution_options(sqlite_begin="DEFERRED")  # a reader: never take SQLite's write lock
        _require_head(connection)

    @contextlib.contextmanager
    def deciding(self, connection: Connection, session: Session, store: Store) -> Iterator[None]:
        yield
        session.rollback()  # the temporary tables go with the connection

    def write(self, store: Store, verdict: Verdict, counts: RunCounts) -> None:
        if verdict.removes:
            counts.removed = store.count_would_remove(self.settings.scope.key)


def _removal_decision(store: Store, settings: Settings, proof: Proof, listed: int) -> RemovalDecision:
    """Whether this run may remove packages: only what two complete walks, in which every package had
    an id, both missed, and not half the catalogue."""
    if proof.reason is not None:
        return RemovalDecision(False, reason=proof.reason)
    missing = store.count_missing(settings.scope.key)
    if missing and missing * 2 > listed and not settings.allow_mass_removal:
        reason = (
            f"mass removal refused: {missing} of the {listed} packages listed in {settings.scope.key} "
            "are missing; nothing removed (run again with --allow-mass-removal if that is right)"
        )
        return RemovalDecision(False, missing, reason, refused=True)
    return RemovalDecision(True, missing)


def _settle_changed_packages(store: Store, settings: Settings, counts: RunCounts, listed: int) -> ChangedKeys | None:
    """Judge the packages classify() found changed or new, with their previous versions, in one streamed
    read: an update only in ignored keys becomes a refresh of the current version, not a new version.
    None when there is nothing to judge: a scope's first run without --ignore-key (all its packages are
    new to it, and its keys have nothing to be compared with)."""
    if not listed and not settings.ignore_keys:
        return None
    changed = ChangedKeys(settings.ignore_keys)
    for package_id, change, staged_json, previous in store.changes_with_previous():
        changed.judge(package_id, change, staged_json, previous)
    store.refresh_instead_of_update(changed.refreshed)
    counts.updated -= len(changed.refreshed)
    counts.unchanged += len(changed.refreshed)
    return changed


def _schema_changes(store: Store, scope: str, changed: ChangedKeys | None, listed: int) -> SchemaChanges | None:
    """The keys the scope's packages gained or lost, said in one warning; None when not compared (the
    scope's first run). The scope's current versions are read only when a changed package's keys differ
    from its previous version's, or a package is new."""
    if changed is None or not listed:
        return None
    if not changed.scope_needed:
        return SchemaChanges()
    found = schema_changes(changed, store.current_versions_of_scope(scope))
    if found:
        log.warning(
            "keys changed in the packages of %s: %s (+ no current version had it; - every one had it, no package "
            "has it now); recorded in sync_runs.schema_changes",
            scope,
            found,
            extra={"schema_changes": str(found)},
        )
    return found


def _mass_update(settings: Settings, counts: RunCounts, listed: int) -> MassUpdate | None:
    """More than half of the scope's listed packages updated at once: said, not refused (the data is true)."""
    if not listed or counts.updated * 2 <= listed:
        return None
    found = MassUpdate(counts.updated, listed, settings.scope.key)
    log.warning("%s", found, extra={"updated": found.updated, "listed": found.listed})
    return found


def _run_reason(outcome: WalkOutcome, removal: RemovalDecision) -> str | None:
    """Why the run is incomplete, in one line: the packages it could not store, what it did not remove."""
    parts = [_refusals_reason(outcome.refused), removal.reason]
    return "; ".join(part for part in parts if part) or None


def _refusals_reason(refused: tuple[Refusal, ...]) -> str | None:
    if not refused:
        return None
    named = "; ".join(str(refusal) for refusal in refused[:REFUSALS_NAMED])
    more = f"; and {len(refused) - REFUSALS_NAMED} more" if len(refused) > REFUSALS_NAMED else ""
    noun = "package" if len(refused) == 1 else "packages"
    return f"{len(refused)} {noun} not stored: {named}{more}"


def _apply_classification(counts: RunCounts, classified: dict[ChangeType, int]) -> None:
    counts.created = classified[ChangeType.CREATED]
    counts.updated = classified[ChangeType.UPDATED]
    counts.restored = classified[ChangeType.RESTORED]
    counts.unchanged = classified[ChangeType.UNCHANGED]
    counts.packages_seen = sum(classified.values())


@dataclass
class _Walk:
    """One run's walk of the catalogue into its staging table, with what the walk needs and counts."""

    connection: Connection
    session: Session
    store: Store
    client: KatapultClient
    settings: Settings
    counts: RunCounts
    on_page: Callable[[int, int | None], None]

    def with_proof(self) -> Proof:
        """Walk until shown complete; if that walk missed listed packages, confirm with a second walk
        of ids only, so that a package is removed only if both missed it (items that shift while the
        pages are read make one walk miss a live package)."""
        outcome = self.until_shown_complete()
        if not outcome.complete:
            return Proof(outcome, f"walk not shown complete, nothing removed: {outcome.reason}")
        if outcome.without_id:
            return Proof(outcome, WITHOUT_ID)
        scope = self.settings.scope.key
        missing = self.store.count_missing(scope)
        self.session.commit()
        if not missing:
            return Proof(outcome)
        log.info("%d listed package(s) missing from the walk: walking again to confirm before removing", missing)
        confirming = self._confirming_walk(outcome.per_page)
        if not confirming.complete:
            return Proof(outcome, f"confirming walk not shown complete, nothing removed: {confirming.reason}")
        if confirming.without_id:
            return Proof(outcome, WITHOUT_ID)
        self._warn_of_missed_once(scope)
        return Proof(outcome)

    def _warn_of_missed_once(self, scope: str) -> None:
        count, ids = self.store.missed_once(scope, MISSED_ONCE_IDS_SHOWN)
        self.session.commit()
        if count:
            more = f" and {count - len(ids)} more" if count > len(ids) else ""
            log.warning(
                "%d package(s) missed by one walk but seen by the other stay listed: %s%s",
                count,
                ", ".join(ids),
                more,
            )

    def until_shown_complete(self) -> WalkOutcome:
        """Walk; a walk that cannot be shown complete is walked once more before we settle for it."""
        self.connection.execution_options(sqlite_begin="DEFERRED")  # staging touches the temporary table only
        self.store.load_known(self.settings.scope.key)
        self._clear_staging()
        outcome = self._with_page_size_fallback()
        if not outcome.complete:
            log.warning("walk not shown complete (%s): walking once more", outcome.reason)
            self._clear_staging()
            outcome = self._with_page_size_fallback()
        return outcome

    def _with_page_size_fallback(self) -> WalkOutcome:
        """Katapult's page-size cap is believed to be 200; if it refuses ours, try 100, then 30."""
        first = self.settings.per_page
        sizes = [first, *(size for size in FALLBACK_PAGE_SIZES if size < first)]
        for size in sizes[:-1]:
            try:
                return self._walk(size)
            except InvalidArgumentError as error:
                log.warning("Katapult refused per_page=%d (%s): walking again with a smaller page", size, error)
                self.session.rollback()
                self._clear_staging()
        return self._walk(sizes[-1])

    def _walk(self, per_page: int) -> WalkOutcome:
        """One walk into the staging table, each package whole."""
        return self._walk_into(per_page, self._stage, self.store.finish_staging)

    def _confirming_walk(self, per_page: int) -> WalkOutcome:
        """One walk that notes only the ids it sees (the merge takes the first walk's content)."""
        self.store.create_confirming()
        self.session.commit()
        return self._walk_into(per_page, self._confirm, self.store.finish_confirming)

    def _walk_into(
        self, per_page: int, keep: Callable[[Page], list[Refusal]], finish: Callable[[], int]
    ) -> WalkOutcome:
        """Walk every page, each kept by `keep`, which returns the page's packages it could not keep."""
        walk = PageWalk()
        counts = self.counts
        refused: list[Refusal] = []
        for page in _fetch_in_order(walk, self.client, per_page, self.settings.concurrency):
            on_page = keep(page)
            refused += on_page
            counts.pages_fetched += 1
            if counts.pages_fetched % PAGES_PER_STAGING_COMMIT == 0:
                self.session.commit()
            kept = len(page.items) - len(on_page)
            log.info("page %d: %d packages", page.number, kept, extra={"page": page.number, "packages": kept})
            self.on_page(walk.pages_accepted, page.pagination.total_pages)
        distinct = finish()
        self.session.commit()
        # A package without an id is a package the walk saw, but cannot count among the distinct ids.
        without_id = sum(1 for refusal in refused if refusal.error.package_id is None)
        complete, reason = walk.shown_complete(distinct + without_id)
        return WalkOutcome(walk.pages_accepted, complete, reason, tuple(refused), per_page=per_page)

    def _stage(self, page: Page) -> list[Refusal]:
        """Stage a page's packages that can be stored; the others are kept as they were, and noted."""
        rows, errors = storable_values(page.items, self.store.known)
        for error in errors:
            log.info("page %d: package not stored: %s", page.number, error)
        self.store.keep(error.package_id for error in errors if error.package_id is not None)
        self.store.stage(rows)
        return [Refusal(page.number, error) for error in errors]

    def _confirm(self, page: Page) -> list[Refusal]:
        """Note the ids of a page's packages; one without a usable id is returned as refused."""
        ids: list[str] = []
        refused: list[Refusal] = []
        for item in page.items:
            try:
                ids.append(package_id_of(item))
            except RecordError as error:
                refused.append(Refusal(page.number, error))
        self.store.confirm(ids)
        return refused

    def _clear_staging(self) -> None:
        self.store.create_staging()
        self.session.commit()


def _fetch_in_order(walk: PageWalk, client: KatapultClient, per_page: int, concurrency: int) -> Iterator[Page]:
    """Pages in order, each checked by the walk; known pages are fetched up to `concurrency` at a time,
    fewer as Katapult's rate limit runs low."""
    pacer = Pacer(concurrency)
    # Start at the pace the token's allowance was last seen at: by an earlier walk of this run, or by
    # the run of another scope of the same token (`sync --all`).
    pacer.observe(client.allowance.remaining, client.allowance.permitted)
    window = concurrency * READ_AHEAD_PER_FETCHER
    with OrderedFetcher(lambda number: client.fetch_page(number, per_page), concurrency, window) as fetcher:
        fetcher.allow(pacer.allowed)
        fetcher.want(walk.start())
        while fetcher.pending:
            number, page = fetcher.next()
            ids = [item.get("id") if isinstance(item, dict) else None for item in page.items]
            further = walk.accept(number, page.pagination, [str(i) for i in ids])
            if _pace(pacer, page):  # before asking for more: page 1 may already say to slow down
                fetcher.allow(pacer.allowed)
            fetcher.want(further)
            yield page


def _pace(pacer: Pacer, page: Page) -> bool:
    """Let the pacer see this page's rate-limit headers; say so, and True, when it changes the pace."""
    changed = pacer.observe(page.rate_limit_remaining, page.rate_limit_permitted)
    if changed:
        log.info(
            "X-Ratelimit-Remaining is %s of %s: fetching %d page(s) at a time",
            pacer.remaining,
            page.rate_limit_permitted,
            pacer.allowed,
            extra={"rate_limit_remaining": pacer.remaining, "in_flight": pacer.allowed},
        )
    return changed


def _copy_request_stats(client: KatapultClient, counts: RunCounts) -> None:
    counts.requests = client.stats.requests
    counts.retries = client.stats.retries


def _require_head(connection: Connection) -> None:
    current = known_revision(connection)
    connection.rollback()
    if current != head_revision():
        raise DatabaseError(
            f"the database schema is at revision {current or 'none'}, not {head_revision()}: "
            "run `katapult-etl db upgrade` first (a dry run writes nothing)"
        )
