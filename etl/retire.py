"""Retiring a scope: one run that unlists every package the scope lists, for an organization that is gone.

A package is removed only when no scope lists it any more, so the listings of an organization that was
deleted, or whose token was revoked for good, would keep its packages in the catalogue for ever. A
retire run is a run of the scope, as a sync is, with the sync's guarantees:

    the database must exist, at the newest schema → lock the scope (as a sync does) → the scope must
    be one the database knows → record the run as running (committed) → in ONE transaction, under the
    merge lock: the mass-removal guard, then unlist, close the versions of the packages no scope lists
    any more, mark them removed, and the run's final record → or, on any error, roll back and record
    the run as failed.

It reads nothing from Katapult. A dry run only counts, on a read-only connection, and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .clock import RunClock
from .database import open_engine, reading, require_existing, require_head
from .dialects import run_lock
from .errors import EXIT_MASS_REMOVAL, EXIT_OK, ConfigError, DatabaseError, describe
from .pipeline import Hooks, discarded_if_interrupted, merging, record_failure, record_start
from .reports import scope_names
from .results import RunCounts, RunStatus
from .store import Store


@dataclass(frozen=True)
class Plan:
    """What retiring a scope would do now: unlist its `listed` packages, of which `removing` no other
    scope lists; `refusal` is the mass-removal guard's reason not to (None: it may)."""

    listed: int
    removing: int
    refusal: str | None


@dataclass(frozen=True)
class Retirement:
    """What retiring a scope did (or, in a dry run, would do)."""

    scope: str
    run_id: int | None  # None: a dry run, or nothing to retire (neither records a run)
    status: RunStatus
    unlisted: int  # the packages the scope listed, all unlisted
    removed: int  # of them, those no other scope lists: they left the catalogue
    seconds: float
    dry_run: bool = False
    reason: str | None = None  # why nothing was unlisted: the mass-removal guard refused

    @property
    def still_listed(self) -> int:
        """Unlisted here, but listed by another scope: they stay in the catalogue, unchanged."""
        return self.unlisted - self.removed

    @property
    def nothing_to_do(self) -> bool:
        return self.run_id is None and not self.dry_run

    @property
    def exit_code(self) -> int:
        return EXIT_MASS_REMOVAL if self.reason else EXIT_OK


def retire_scope(
    database_url: str,
    scope: str,
    *,
    allow_mass_removal: bool = False,
    dry_run: bool = False,
    hooks: Hooks | None = None,
) -> Retirement:
    """Unlist every package of `scope` in a run of its own; raises an EtlError when the run failed."""
    hooks = hooks or Hooks()
    started = hooks.clock()
    if dry_run:
        with reading(database_url) as connection, Session(bind=connection) as session:
            plan = _plan(connection, Store(session), scope, allow_mass_removal)
        return _outcome(scope, None, plan, _counts_of(plan), hooks.clock() - started, dry_run=True)
    require_existing(database_url)
    engine = open_engine(database_url)
    try:
        with run_lock(engine, database_url, scope):
            return _locked_retire(engine, scope, allow_mass_removal, hooks, started)
    except SQLAlchemyError as error:
        raise DatabaseError(f"database error: {describe(error)}") from error
    finally:
        engine.dispose()


def _locked_retire(engine: Engine, scope: str, allow_mass_removal: bool, hooks: Hooks, started: float) -> Retirement:
    with engine.connect() as connection, Session(bind=connection) as session:
        connection.execution_options(sqlite_begin="DEFERRED")  # only reads: no write lock yet
        require_head(connection)
        store = Store(session)
        plan = _plan(connection, store, scope, allow_mass_removal)
        api = store.last_api(scope) or _api_of(scope)
    if not plan.listed:  # nothing would change: no run to record
        return _outcome(scope, None, plan, RunCounts(), hooks.clock() - started)
    clock = RunClock(hooks.wall_clock)
    run_id = record_start(engine, scope, api, clock)
    try:
        plan, counts = _retire(engine, scope, run_id, allow_mass_removal, clock)
    except BaseException as error:
        record_failure(engine, run_id, RunCounts(), error, clock)
        raise
    return _outcome(scope, run_id, plan, counts, hooks.clock() - started)


def _retire(
    engine: Engine, scope: str, run_id: int, allow_mass_removal: bool, clock: RunClock
) -> tuple[Plan, RunCounts]:
    """The run's one transaction: decide again under the merge lock (a sync of another scope may have
    merged meanwhile), then unlist and remove, or only record the refusal."""
    counts = RunCounts()
    with engine.connect() as connection, Session(bind=connection) as session, discarded_if_interrupted(connection):
        store = Store(session)
        with merging(session, store, clock):
            plan = _plan(connection, store, scope, allow_mass_removal)
            if plan.refusal is None:
                unlisted, counts.removed = store.unlist_scope(scope, run_id, clock.now())
                counts.unchanged = unlisted - counts.removed
            status = RunStatus.SUCCEEDED if plan.refusal is None else RunStatus.INCOMPLETE
            store.finish_run(run_id, status=status, finished_at=clock.now(), error=plan.refusal, **vars(counts))
    return plan, counts


def _plan(connection: Connection, store: Store, scope: str, allow_mass_removal: bool) -> Plan:
    """What retiring `scope` would do now; a ConfigError if the database does not know the scope."""
    known = scope_names(connection)
    if scope not in known:
        it_knows = f"it knows {', '.join(known)}" if known else "it has no scopes yet"
        raise ConfigError(f"scope {scope!r}: this database has no run or listing of it; {it_knows}")
    listed = store.count_listed(scope)
    removing = store.count_listed_only_in(scope)
    refusal = None
    # The sync's guard, on what would leave the catalogue: not more than half of the scope's packages.
    if removing * 2 > listed and not allow_mass_removal:
        refusal = (
            f"mass removal refused: retiring {scope} would remove {removing} of the {listed} packages it lists, "
            "which no other scope lists; nothing removed (run again with --allow-mass-removal if that is right)"
        )
    return Plan(listed, removing, refusal)


def _counts_of(plan: Plan) -> RunCounts:
    """What carrying out `plan` would count: nothing when the guard refuses."""
    if plan.refusal is not None:
        return RunCounts()
    return RunCounts(removed=plan.removing, unchanged=plan.listed - plan.removing)


def _outcome(
    scope: str, run_id: int | None, plan: Plan, counts: RunCounts, seconds: float, *, dry_run: bool = False
) -> Retirement:
    """What a retire did (a dry run: would do), from its counts as its sync_runs row holds them."""
    return Retirement(
        scope=scope,
        run_id=run_id,
        status=RunStatus.INCOMPLETE if plan.refusal else RunStatus.SUCCEEDED,
        unlisted=counts.removed + counts.unchanged,
        removed=counts.removed,
        seconds=seconds,
        dry_run=dry_run,
        reason=plan.refusal,
    )


def _api_of(scope: str) -> str:
    """The API a scope's packages come from, for a scope whose runs were all deleted."""
    return "public" if scope == "public" else "core"
