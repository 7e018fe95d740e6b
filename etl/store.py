"""Reads and writes of the catalogue tables, set-based. Takes a session; never commits.

A run streams its pages into a temporary staging table (so that the catalogue is never held in
Python), then merges the staging table into the real tables with a handful of statements.

Staging only appends: no key, no index while the walk runs, so each page is written once, in order,
and the table never has to be read back to place a row. Before the walk, the content hashes of the
packages the scope lists are loaded once: a package the walk finds with its known hash is staged by id
alone (with its hash and group), not whole; only new, changed and restored packages are staged whole.
Under the merge lock the narrow rows are checked again, set-based, against the packages as they are
then, so that a package another run changed after the look-up is not missed. At the end of a walk one index is built (a
single sort) and an id staged twice (items shift while paging) keeps only its newest content. The
merge then notes, in a second, narrow temporary table, the packages whose version changes, instead of
rewriting every staged row with its verdict.

A package is removed only if two walks missed it: when the staged walk misses a listed package, a
confirming walk records the ids it sees in another temporary table, and only what neither walk saw
counts as missing.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import reduce
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    MetaData,
    String,
    Table,
    Update,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from .dialects import (
    BulkInsert,
    create_temporary_table,
    json_from_text,
    merge_lock,
    release_merge_lock,
    text_from_json,
    upsert,
)
from .errors import DatabaseError
from .models import Package, PackageGroup, PackageListing, PackageSnapshot, SyncRun
from .records import ATTRIBUTE_COLUMNS, ROW_COLUMNS, SEEN_ROW_COLUMNS
from .results import ChangeType, RunStatus
from .sqltypes import Key, LongText, UtcDateTime

# What classify() tells of each staged package.
VERDICTS = (ChangeType.CREATED, ChangeType.UPDATED, ChangeType.RESTORED, ChangeType.UNCHANGED)

_SEEN_WIDTH = len(SEEN_ROW_COLUMNS)
# Staged rows are written this many at a time (ten pages of 200), not a page at a time: every write
# lets go of the interpreter lock (a statement stepped, a COPY sent), and while the fetchers decode
# pages on the other core, getting it back costs up to the 5 ms switch interval. At 2,000 rows of
# at most a few KB each, what waits in memory stays small whatever the catalogue's size.
STAGING_BATCH_ROWS = 2000
# The known content hashes are read this many at a time.
KNOWN_BATCH_ROWS = 10_000

_staging_metadata = MetaData()
STAGING = Table(
    "katapult_etl_staging",
    _staging_metadata,
    # The package's position in the walk: of an id staged twice, the later copy wins.
    Column("seq", BigInteger, nullable=False),
    # As wide as the columns of the real tables (models.py), so that what stages also merges.
    Column("id", Key, nullable=False),
    Column("name", LongText),
    Column("permalink", LongText),
    Column("cpu_cores", BigInteger),
    Column("ipv4_addresses", BigInteger),
    Column("memory_in_gb", BigInteger),
    Column("storage_in_gb", BigInteger),
    Column("monthly_bandwidth_allowance_in_gb", BigInteger),
    Column("privacy", LongText),
    Column("use_dedicated_cpus", Boolean),
    Column("group_id", Key),
    Column("group_name", LongText),
    Column("icon_url", LongText),
    Column("icon_file_name", LongText),
    Column("icon_file_type", LongText),
    Column("icon_file_size", BigInteger),
    Column("icon_digest", LongText),
    Column("content_hash", String(64), nullable=False),
    # Text, not JSON: the canonical text records.py already made, stored without a second encoding.
    # LONGTEXT on MySQL, whose TEXT stops at 64 KB. NULL in a narrow row: a package staged by id alone
    # (SEEN_COLUMNS), whose content is its current version's.
    Column("raw_json", LongText),
    prefixes=["TEMPORARY"],
)
# Built once the walk is over: one sort instead of an index kept in order through every page. With seq
# in it, finding the ids staged twice reads the index alone, not 100,000 staged rows in id order
# (0.18 s -> 0.03 s). (Plain DDL: an Index object would join the Table and be built with it.)
CREATE_STAGING_INDEX = text(f"CREATE INDEX ix_katapult_etl_staging_id_seq ON {STAGING.name} (id, seq)")
# The staged packages whose version changes, with the verdict and the columns that differ.
CHANGES = Table(
    "katapult_etl_changes",
    _staging_metadata,
    Column("id", Key, primary_key=True),
    Column("change", String(16), nullable=False),
    Column("changed_fields", LongText),
    prefixes=["TEMPORARY"],
)
# The ids of the packages a walk saw but could not stage (records.py refused them): each keeps its
# previous version, and is not removed for being missing from the staging table.
KEPT = Table(
    "katapult_etl_kept",
    _staging_metadata,
    Column("id", Key, primary_key=True),
    prefixes=["TEMPORARY"],
)
# The ids a confirming walk saw: all removal needs of it. No key while the walk runs (the same id may
# come twice when items shift); an index once it is over.
CONFIRMED = Table(
    "katapult_etl_confirmed",
    _staging_metadata,
    Column("id", Key, nullable=False),
    prefixes=["TEMPORARY"],
)
# The updated packages whose only change is in keys given to --ignore-key: no new version; the merge
# writes their JSON and hash into their current version instead.
REFRESHED = Table(
    "katapult_etl_refreshed",
    _staging_metadata,
    Column("id", Key, primary_key=True),
    prefixes=["TEMPORARY"],
)
CREATE_CONFIRMED_INDEX = text(f"CREATE INDEX ix_katapult_etl_confirmed_id ON {CONFIRMED.name} (id)")
# Rows a streamed read holds at once (the changed packages, or a scope's current versions).
STREAMED_ROWS = 1000
PACKAGE_COLUMNS = tuple(name for name in ROW_COLUMNS if name != "raw_json")
STAGED_COLUMNS = ("seq", *ROW_COLUMNS)
# A narrow row, for a package the walk saw with the hash the look-up found: its content is already its
# current version. The group stays, for the groups' last_seen_at and name (upsert_groups). In the
# table's order, as BulkInsert needs.
SEEN_COLUMNS = ("seq", *SEEN_ROW_COLUMNS)
# packages has no group_name: the group's name lives in package_groups (and in each version).
PACKAGE_TABLE_COLUMNS = tuple(name for name in PACKAGE_COLUMNS if name != "group_name")


class Store:
    def __init__(self, session: Session) -> None:
        self.session = session
        dialect = session.get_bind().dialect
        self._dialect = dialect.name
        self._staging_insert = BulkInsert(STAGING, STAGED_COLUMNS, dialect)
        self._seen_insert = BulkInsert(STAGING, SEEN_COLUMNS, dialect)
        self._confirmed_insert = BulkInsert(CONFIRMED, ("id",), dialect)
        self._confirming = False  # whether CONFIRMED holds a confirming walk's ids
        self._staged = 0  # rows appended to staging, which numbers the next page's rows
        self._distinct = 0  # packages staged once the walk is finished
        self._kept: set[str] = set()  # ids noted in KEPT
        self._refreshed = 0  # packages noted in REFRESHED
        # Staged rows not yet written (stage): whole ones and narrow ones.
        self._whole: list[tuple[Any, ...]] = []
        self._seen: list[tuple[Any, ...]] = []
        # SHA-256 digests of the packages the scope lists (load_known): 32 bytes, half the memory of the
        # hex text (about 10 MB at 100,000 packages).
        self._known: frozenset[bytes] = frozenset()

    # -- staging ---------------------------------------------------------------------------------

    def create_staging(self) -> None:
        """An empty staging table, without its index: a walk (or a walk again) starts here."""
        self.drop_staging()
        create_temporary_table(self.session.connection(), STAGING)
        create_temporary_table(self.session.connection(), KEPT)
        self._staged = self._distinct = self._refreshed = 0
        self._kept = set()
        self._whole, self._seen = [], []

    def drop_staging(self) -> None:
        connection = self.session.connection()
        CHANGES.drop(connection, checkfirst=True)
        REFRESHED.drop(connection, checkfirst=True)
        CONFIRMED.drop(connection, checkfirst=True)
        STAGING.drop(connection, checkfirst=True)
        KEPT.drop(connection, checkfirst=True)
        self._confirming = False

    def load_known(self, scope: str) -> None:
        """Load, once before the walk, the content hash of every package the scope lists and that is not
        removed: a package found with one of them is staged by id alone.

        The hashes alone, without the ids: each is the hash of the package's canonical JSON, which holds
        its id, so a hash names one package. A hash that is not hex (never written by this job) is left
        out: its package is staged whole, as if it had changed.
        """
        current, listing = Package.__table__, PackageListing.__table__
        listed = (
            select(current.c.content_hash)
            .join(listing, listing.c.package_id == current.c.id)
            .where(listing.c.scope == scope, listing.c.unlisted_at.is_(None), current.c.removed_at.is_(None))
        )
        # On the session's connection, not through the ORM, which would make each row an object; in
        # batches from a server-side cursor, so that the driver never holds the whole answer as well as
        # the set (psycopg would: 10 MB more at the peak at 100,000 packages, measured).
        hashes = self.session.connection().execute(listed, execution_options={"yield_per": KNOWN_BATCH_ROWS}).scalars()
        self._known = frozenset(filter(None, map(_digest, hashes)))

    @property
    def known(self) -> frozenset[bytes]:
        """The SHA-256 digests of the content of the packages the scope lists (load_known)."""
        return self._known

    def stage(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Append one page of storable_values() rows, numbered in walk order: a package_values() tuple
        whole, a package's SEEN_ROW_COLUMNS as a narrow row. Written STAGING_BATCH_ROWS at a time."""
        whole, seen = self._whole, self._seen
        seq = self._staged
        for row in rows:
            seq += 1
            (seen if len(row) == _SEEN_WIDTH else whole).append((seq, *row))
        self._staged = seq
        if len(whole) + len(seen) >= STAGING_BATCH_ROWS:
            self._write_staged()

    def _write_staged(self) -> None:
        connection = self.session.connection()
        if self._whole:
            self._staging_insert.execute(connection, self._whole)
        if self._seen:
            self._seen_insert.execute(connection, self._seen)
        self._whole, self._seen = [], []

    def keep(self, package_ids: Iterable[str]) -> None:
        """Note packages the walk saw but could not stage: they keep their versions and listings."""
        new = sorted(set(package_ids) - self._kept)
        if new:
            self.session.execute(KEPT.insert(), [{"id": package_id} for package_id in new])
            self._kept.update(new)

    def finish_staging(self) -> int:
        """Index the staged packages and keep, of an id staged twice, its newest content; returns how
        many distinct packages the walk saw, staged or kept."""
        self._write_staged()
        self.session.execute(CREATE_STAGING_INDEX)
        repeated = self.session.execute(
            select(STAGING.c.id, func.max(STAGING.c.seq).label("newest"))
            .group_by(STAGING.c.id)
            .having(func.count() > 1)
        ).all()
        if repeated:
            self.session.execute(
                STAGING.delete().where(STAGING.c.id == bindparam("b_id"), STAGING.c.seq < bindparam("b_newest")),
                [{"b_id": package_id, "b_newest": newest} for package_id, newest in repeated],
            )
        self._distinct = self.session.execute(select(func.count()).select_from(STAGING)).scalar_one()
        kept_only = 0
        if self._kept:  # a package refused on one page and staged from another is counted once
            kept_only = self.session.execute(
                select(func.count()).select_from(KEPT).where(~exists().where(STAGING.c.id == KEPT.c.id))
            ).scalar_one()
        return self._distinct + kept_only

    def create_confirming(self) -> None:
        """An empty table for a confirming walk's ids; from now on a package is missing only if it is in
        neither walk."""
        connection = self.session.connection()
        CONFIRMED.drop(connection, checkfirst=True)
        create_temporary_table(connection, CONFIRMED)
        self._confirming = True

    def confirm(self, ids: list[str]) -> None:
        """Append the ids of one page of the confirming walk."""
        if ids:
            self._confirmed_insert.execute(self.session.connection(), [(package_id,) for package_id in ids])

    def finish_confirming(self) -> int:
        """Index the confirmed ids; returns how many distinct packages the confirming walk saw."""
        self.session.execute(CREATE_CONFIRMED_INDEX)
        return self.session.execute(select(func.count(CONFIRMED.c.id.distinct()))).scalar_one()

    def classify(self) -> dict[ChangeType, int]:
        """Note each staged package whose version changes (created, updated or restored, with the
        columns that differ from its latest version) in CHANGES; returns the counts of each verdict.

        Under the merge lock: the verdicts are those of the packages as they are now. A narrow row
        judged changed is a package another run changed (or removed) after the look-up: it is staged
        whole again, and the verdicts made again."""
        create_temporary_table(self.session.connection(), CHANGES, checkfirst=True)
        self._note_changes()
        if self._restage_changed_since_look_up():
            self.session.execute(CHANGES.delete())
            self._note_changes()
        counts = dict.fromkeys(VERDICTS, 0)
        rows = self.session.execute(select(CHANGES.c.change, func.count()).group_by(CHANGES.c.change))
        counts.update({change: count for change, count in rows})
        counts[ChangeType.UNCHANGED] = self._distinct - sum(counts.values())
        return counts

    def _note_changes(self) -> None:
        """The verdicts: each staged package that is new, restored or whose hash differs from its
        current one goes into CHANGES, with the columns that differ from its latest version."""
        current = Package.__table__
        verdict = case(
            (current.c.id.is_(None), literal(ChangeType.CREATED.value)),
            (current.c.removed_at.is_not(None), literal(ChangeType.RESTORED.value)),
            else_=literal(ChangeType.UPDATED.value),
        )
        changed = (
            select(STAGING.c.id, verdict, case((current.c.id.is_not(None), _changed_fields_of_latest())))
            .select_from(STAGING.outerjoin(current, current.c.id == STAGING.c.id))
            .where(
                or_(
                    current.c.id.is_(None),
                    current.c.removed_at.is_not(None),
                    current.c.content_hash != STAGING.c.content_hash,
                )
            )
            .order_by(STAGING.c.id)  # key order: each page of the index is written once
        )
        self.session.execute(CHANGES.insert().from_select(("id", "change", "changed_fields"), changed))

    def _restage_changed_since_look_up(self) -> int:
        """Stage whole again the narrow rows that _note_changes judged changed: packages another run
        changed or removed after the look-up (which knew them with the content the walk saw); returns
        how many. Set-based, from CHANGES, which is small: in the usual run this costs one look-up of
        each change, not a pass over the staged packages.

        The content the walk saw is the one the look-up knew: a version in the package's history, with
        the same hash, hence the same content. It is read back from there.
        """
        stale = and_(STAGING.c.raw_json.is_(None), STAGING.c.id.in_(select(CHANGES.c.id)))
        count = self.session.execute(select(func.count()).select_from(STAGING).where(stale)).scalar_one()
        if not count:
            return 0
        self._bulk_update(update(STAGING).where(stale).values(_content_from_history()))
        lost = self.session.execute(select(STAGING.c.id).where(stale).order_by(STAGING.c.id).limit(1)).scalar()
        if lost is not None:  # only if its history was deleted by hand meanwhile
            raise DatabaseError(
                f"package {lost} changed while the run walked, and the content the walk saw is no longer "
                "in its history: run again"
            )
        return count

    # -- the changed packages next to their previous versions: ignored keys, schema drift ----------

    def changes_with_previous(self) -> Iterator[tuple[str, str, str, dict[str, Any] | None]]:
        """Each package classify() noted as changing: its id, its verdict, its JSON as staged (text) and
        the `raw` of its latest version (None for a new package). One streamed query: on an unchanged
        re-sync CHANGES is empty, and this costs nothing."""
        latest = PackageSnapshot.__table__.alias("latest")
        later = PackageSnapshot.__table__.alias("later")
        newest = ~exists().where(later.c.package_id == latest.c.package_id, later.c.valid_from > latest.c.valid_from)
        query = (
            select(CHANGES.c.id, CHANGES.c.change, STAGING.c.raw_json, latest.c.raw)
            .select_from(
                CHANGES.join(STAGING, STAGING.c.id == CHANGES.c.id).outerjoin(
                    latest, and_(latest.c.package_id == CHANGES.c.id, newest)
                )
            )
            .order_by(CHANGES.c.id)
        )
        for row in self.session.execute(query, execution_options={"yield_per": STREAMED_ROWS}):
            yield row[0], row[1], row[2], row[3]

    def current_versions_of_scope(self, scope: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The package id and `raw` of the current version of every package the scope lists, streamed."""
        version = PackageSnapshot.__table__.alias("version")
        query = select(version.c.package_id, version.c.raw).where(
            version.c.valid_to.is_(None),
            exists().where(PackageListing.package_id == version.c.package_id, _listed_in(scope)),
        )
        for row in self.session.execute(query, execution_options={"yield_per": STREAMED_ROWS}):
            yield row[0], row[1]

    def refresh_instead_of_update(self, package_ids: list[str]) -> None:
        """These updated packages changed only in ignored keys: they get no new version (they leave
        CHANGES); the merge writes their JSON and hash into their current version (refresh_in_place)."""
        if not package_ids:
            return
        create_temporary_table(self.session.connection(), REFRESHED, checkfirst=True)
        self.session.execute(REFRESHED.insert(), [{"id": package_id} for package_id in sorted(package_ids)])
        self.session.execute(CHANGES.delete().where(CHANGES.c.id.in_(select(REFRESHED.c.id))))
        self._refreshed = len(package_ids)

    def refresh_in_place(self, now: datetime) -> None:
        """The merge's part for refreshed packages: their current version takes the JSON and hash as
        received (so that `raw` is always what Katapult last sent, and dropping the key from
        --ignore-key later opens no version), and so does the package's hash.

        An upsert on the version's own key (every row conflicts, so each is an UPDATE): the one set-based
        UPDATE taking values from another table that every database spells alike, and that names each
        temporary table once (MySQL cannot open a temporary table twice in one statement)."""
        if not self._refreshed:
            return
        current = PackageSnapshot.__table__.alias("current")
        versions = (
            select(
                current.c.id,
                current.c.package_id,
                current.c.sync_run_id,
                current.c.valid_from,
                STAGING.c.content_hash,
                json_from_text(self._dialect, STAGING.c.raw_json),
            )
            .select_from(
                REFRESHED.join(STAGING, STAGING.c.id == REFRESHED.c.id).join(
                    current, and_(current.c.package_id == REFRESHED.c.id, current.c.valid_to.is_(None))
                )
            )
            .where(true())  # SQLite needs a WHERE to tell ON CONFLICT from a join's ON
            .order_by(current.c.id)
        )
        self.session.execute(
            upsert(
                self._dialect,
                PackageSnapshot.__table__,
                versions,
                columns=("id", "package_id", "sync_run_id", "valid_from", "content_hash", "raw"),
                key=["id"],
                update_from_incoming=("content_hash", "raw"),
            )
        )
        packages = (
            select(*(STAGING.c[name] for name in PACKAGE_TABLE_COLUMNS), _at(now), _at(now), _at(None))
            .select_from(REFRESHED.join(STAGING, STAGING.c.id == REFRESHED.c.id))
            .where(true())
            .order_by(REFRESHED.c.id)
        )
        self.session.execute(
            upsert(
                self._dialect,
                Package.__table__,
                packages,
                columns=(*PACKAGE_TABLE_COLUMNS, "first_seen_at", "last_seen_at", "removed_at"),
                key=["id"],
                update_from_incoming=("content_hash", "last_seen_at"),
            )
        )

    # -- the merge -------------------------------------------------------------------------------

    def lock_for_merge(self) -> None:
        merge_lock(self.session.connection())

    def unlock_after_merge(self) -> None:
        if self._dialect in ("mysql", "mariadb"):
            release_merge_lock(self.session.connection())

    def upsert_groups(self, now: datetime) -> None:
        groups = (
            select(STAGING.c.group_id, func.max(STAGING.c.group_name), _at(now), _at(now))
            .where(STAGING.c.group_id.is_not(None))
            .group_by(STAGING.c.group_id)
        )
        self.session.execute(
            upsert(
                self._dialect,
                PackageGroup.__table__,
                groups,
                columns=("id", "name", "first_seen_at", "last_seen_at"),
                key=["id"],
                update_from_incoming=("name", "last_seen_at"),
            )
        )

    def close_versions_of_updated(self, run_id: int, now: datetime) -> None:
        updated = select(CHANGES.c.id).where(CHANGES.c.change == ChangeType.UPDATED)
        self._bulk_update(
            update(PackageSnapshot)
            .where(PackageSnapshot.valid_to.is_(None), PackageSnapshot.package_id.in_(updated))
            .values(valid_to=now, closed_by_sync_run_id=run_id)
        )

    def upsert_packages(self, now: datetime, *, unchanged: int) -> None:
        """Write the changed packages whole; of the unchanged ones, only last_seen_at changes."""
        source = (
            select(*(STAGING.c[name] for name in PACKAGE_TABLE_COLUMNS), _at(now), _at(now), _at(None))
            .select_from(CHANGES.join(STAGING, STAGING.c.id == CHANGES.c.id))
            .where(true())  # SQLite needs a WHERE to tell ON CONFLICT from a join's ON
            .order_by(CHANGES.c.id)  # in key order, each index page is read and written once
        )
        self.session.execute(
            upsert(
                self._dialect,
                Package.__table__,
                source,
                columns=(*PACKAGE_TABLE_COLUMNS, "first_seen_at", "last_seen_at", "removed_at"),
                key=["id"],
                update_from_incoming=(*PACKAGE_TABLE_COLUMNS[1:], "last_seen_at", "removed_at"),
            )
        )
        if unchanged:  # a first sync has none: it need not pass over every package again
            self._bulk_update(
                update(Package)
                .where(Package.id.in_(select(STAGING.c.id)), Package.last_seen_at != now)
                .values(last_seen_at=now)
            )

    def insert_versions(self, run_id: int, now: datetime) -> None:
        changed = (
            select(
                STAGING.c.id,
                literal(run_id),
                _at(now),
                *(STAGING.c[name] for name in (*ATTRIBUTE_COLUMNS, "content_hash")),
                json_from_text(self._dialect, STAGING.c.raw_json),
                CHANGES.c.changed_fields,
            )
            .select_from(CHANGES.join(STAGING, STAGING.c.id == CHANGES.c.id))
            .order_by(CHANGES.c.id)  # key order: each index page once
        )
        columns = (
            "package_id",
            "sync_run_id",
            "valid_from",
            *ATTRIBUTE_COLUMNS,
            "content_hash",
            "raw",
            "changed_fields",
        )
        self.session.execute(PackageSnapshot.__table__.insert().from_select(columns, changed))

    def upsert_listings(self, scope: str, now: datetime) -> None:
        source = select(STAGING.c.id, literal(scope), _at(now), _at(now)).where(true()).order_by(STAGING.c.id)
        self.session.execute(
            upsert(
                self._dialect,
                PackageListing.__table__,
                source,
                columns=("package_id", "scope", "first_seen_at", "last_seen_at"),
                key=["package_id", "scope"],
                update_from_incoming=("last_seen_at",),
                update_fixed={"unlisted_at": None},
            )
        )

    # -- removals --------------------------------------------------------------------------------

    def count_listed(self, scope: str) -> int:
        return self.session.execute(
            select(func.count()).select_from(PackageListing).where(_listed_in(scope))
        ).scalar_one()

    def count_missing(self, scope: str) -> int:
        """Packages this scope listed that no walk of this run saw."""
        return self.session.execute(
            select(func.count()).select_from(PackageListing).where(_listed_in(scope), self._unseen())
        ).scalar_one()

    def missed_once(self, scope: str, limit: int) -> tuple[int, list[str]]:
        """Packages this scope listed that the staged walk missed and the confirming walk saw: how
        many, and the first `limit` of their ids in id order."""
        missed = and_(_listed_in(scope), _not_staged(), _confirmed())
        count = self.session.execute(select(func.count()).select_from(PackageListing).where(missed)).scalar_one()
        if not count:
            return 0, []
        ids = self.session.execute(
            select(PackageListing.package_id).where(missed).order_by(PackageListing.package_id).limit(limit)
        ).scalars()
        return count, list(ids)

    def count_would_remove(self, scope: str) -> int:
        """Missing packages that no other scope lists either: what removal would mark removed."""
        return self._count_listed_only_in(scope, self._unseen())

    def count_listed_only_in(self, scope: str) -> int:
        """Packages this scope lists that no other scope lists: what retiring the scope would remove."""
        return self._count_listed_only_in(scope, true())

    def _count_listed_only_in(self, scope: str, which: Any) -> int:
        listing = PackageListing.__table__
        elsewhere = listing.alias("elsewhere")
        listed_elsewhere = exists().where(
            elsewhere.c.package_id == listing.c.package_id,
            elsewhere.c.scope != scope,
            elsewhere.c.unlisted_at.is_(None),
        )
        return self.session.execute(
            select(func.count()).select_from(listing).where(_listed_in(scope), which, not_(listed_elsewhere))
        ).scalar_one()

    def remove_missing(self, scope: str, run_id: int, now: datetime) -> int:
        """Unlist what no walk saw; remove the packages no scope lists any more."""
        self._bulk_update(update(PackageListing).where(_listed_in(scope), self._unseen()).values(unlisted_at=now))
        return self._remove_unlisted_everywhere(scope, run_id, now)

    def unlist_scope(self, scope: str, run_id: int, now: datetime) -> tuple[int, int]:
        """Unlist every package the scope lists (retiring it); remove the packages no scope lists any
        more. Returns how many it unlisted, and how many of them it removed."""
        unlisted = self._bulk_update(update(PackageListing).where(_listed_in(scope)).values(unlisted_at=now))
        return unlisted, self._remove_unlisted_everywhere(scope, run_id, now)

    def _remove_unlisted_everywhere(self, scope: str, run_id: int, now: datetime) -> int:
        """Close the open version, and set removed_at, of each package this scope has unlisted that no
        scope lists any more; returns how many packages that removed."""
        orphans = _unlisted_everywhere(scope)
        self._bulk_update(
            update(PackageSnapshot)
            .where(PackageSnapshot.valid_to.is_(None), PackageSnapshot.package_id.in_(orphans))
            .values(valid_to=now, closed_by_sync_run_id=run_id)
        )
        return self._bulk_update(
            update(Package).where(Package.removed_at.is_(None), Package.id.in_(orphans)).values(removed_at=now)
        )

    def _unseen(self) -> Any:
        """Not seen by the staged walk, nor by the confirming walk when there was one."""
        return and_(_not_staged(), not_(_confirmed())) if self._confirming else _not_staged()

    def _bulk_update(self, statement: Update) -> int:
        """Run an UPDATE of many rows; returns how many it changed.

        Without synchronize_session=False the ORM would fetch back the key of every row it updates
        (RETURNING), to refresh objects this session never loaded: 100,000 keys in memory on a re-sync.
        """
        result = self.session.execute(statement, execution_options={"synchronize_session": False})
        # An UPDATE's result is a CursorResult, which has the count; Session.execute is typed as any Result.
        assert isinstance(result, CursorResult)
        return result.rowcount

    # -- runs ------------------------------------------------------------------------------------

    def abandon_running(self, scope: str, now: datetime) -> int:
        """Mark failed the runs of a scope still 'running': called under the scope's lock, they are dead."""
        return self._bulk_update(
            update(SyncRun)
            .where(SyncRun.scope == scope, SyncRun.status == RunStatus.RUNNING)
            .values(
                status=RunStatus.FAILED,
                finished_at=now,
                error="abandoned: the process ended before the run finished (killed or crashed)",
            )
        )

    def newest_recorded_time(self) -> datetime | None:
        """The newest time this job has written: every version's times are also some run's, but a
        version's valid_from is read too, through its index, in case runs were deleted."""
        newest = self.session.execute(select(func.max(SyncRun.started_at), func.max(SyncRun.finished_at))).one()
        version = self.session.execute(select(func.max(PackageSnapshot.valid_from))).scalar_one()
        times = [time for time in (*newest, version) if time is not None]
        return max(times, default=None)

    def last_api(self, scope: str) -> str | None:
        """The API the newest run of `scope` read (None: it has no runs)."""
        newest = select(SyncRun.api).where(SyncRun.scope == scope).order_by(SyncRun.id.desc()).limit(1)
        return self.session.execute(newest).scalar()

    def start_run(self, **values: Any) -> int:
        run = SyncRun(status=RunStatus.RUNNING, **values)
        self.session.add(run)
        self.session.flush()
        return run.id

    def finish_run(self, run_id: int, **values: Any) -> None:
        self.session.execute(update(SyncRun).where(SyncRun.id == run_id).values(**values))


def _listed_in(scope: str) -> Any:
    return and_(PackageListing.scope == scope, PackageListing.unlisted_at.is_(None))


def _not_staged() -> Any:
    # NOT EXISTS, not NOT IN: PostgreSQL plans NOT IN (subquery) as a subplan scanned once per listing
    # whenever it expects few listings (stale statistics after a first sync): 100,000 of each took
    # 400 s. NOT EXISTS is an anti-join, as fast whatever the statistics say. A kept package (seen,
    # but not stageable) counts as seen.
    return and_(
        ~exists().where(STAGING.c.id == PackageListing.package_id),
        ~exists().where(KEPT.c.id == PackageListing.package_id),
    )


def _confirmed() -> Any:
    return exists().where(CONFIRMED.c.id == PackageListing.package_id)


def _unlisted_everywhere(scope: str) -> Any:
    """Ids this scope has unlisted that have no listing left in any scope."""
    listing = PackageListing.__table__
    active = listing.alias("active")
    return select(listing.c.package_id).where(
        listing.c.scope == scope,
        listing.c.unlisted_at.is_not(None),
        ~exists().where(active.c.package_id == listing.c.package_id, active.c.unlisted_at.is_(None)),
    )


def _digest(content_hash: str) -> bytes | None:
    try:
        return bytes.fromhex(content_hash)
    except ValueError:
        return None


def _content_from_history() -> dict[str, Any]:
    """The values of a narrow row's columns, from a version of its package with the staged hash."""
    version = PackageSnapshot.__table__.alias("seen")

    def of_version(column: Any) -> Any:
        return (
            select(column)
            .where(version.c.package_id == STAGING.c.id, version.c.content_hash == STAGING.c.content_hash)
            .limit(1)
            .scalar_subquery()
        )

    values = {name: of_version(version.c[name]) for name in ATTRIBUTE_COLUMNS}
    return {**values, "raw_json": of_version(text_from_json(version.c.raw))}


def _changed_fields_of_latest() -> Any:
    """The columns in which a staged package differs from its latest version (a scalar subquery)."""
    latest = PackageSnapshot.__table__.alias("latest")
    later = PackageSnapshot.__table__.alias("later")
    return (
        select(_changed_fields(latest, STAGING))
        .where(
            latest.c.package_id == STAGING.c.id,
            ~exists().where(later.c.package_id == latest.c.package_id, later.c.valid_from > latest.c.valid_from),
        )
        .scalar_subquery()
    )


def _changed_fields(previous: Any, staged: Any) -> Any:
    """The sorted names of the columns that differ, comma-separated; "raw" when only keys without a
    column differ; "" when nothing does (a package restored as it was removed).

    Built as ",a,b" and cut after the first character: `+` on strings becomes each database's concat.
    """
    listed = reduce(
        operator.add,
        (
            case((staged.c[name].is_distinct_from(previous.c[name]), literal(f",{name}")), else_=literal(""))
            for name in sorted(ATTRIBUTE_COLUMNS)
        ),
    )
    only_raw = case((staged.c.content_hash != previous.c.content_hash, literal("raw")), else_=literal(""))
    return case((listed == "", only_raw), else_=func.substr(listed, 2))


def _at(instant: datetime | None) -> Any:
    """A timestamp as a SQL value of the UTC column type, so each database gets its own spelling."""
    return literal(instant, UtcDateTime())
