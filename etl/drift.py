"""What the keys of a run's changed packages say: which changed only in ignored keys, and whether the
catalogue's keys changed (schema drift). Pure: the pipeline feeds it rows the store read.

Cheap by design: a package whose content_hash did not change has the keys it had, so only the new and
changed packages (the merge's CHANGES, empty on an unchanged re-sync) have their keys looked at. The
scope's current versions are read (every one, streamed) only when one of those packages' keys differ
from its own previous version's, or it is new: only then can the scope's keys have changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .records import key_paths, key_tree, same_json, without_keys
from .results import ChangeType, SchemaChanges


@dataclass
class ChangedKeys:
    """The run's changed and new packages, judged one by one as the store streams them."""

    ignore_keys: tuple[str, ...] = ()
    judged: set[str] = field(default_factory=set)  # the ids of the changed and new packages
    refreshed: list[str] = field(default_factory=list)  # updated only in ignored keys: no new version
    seen: set[str] = field(default_factory=set)  # every key of the changed and new packages
    gained: set[str] = field(default_factory=set)  # keys a package has that its previous version had not
    lost: set[str] = field(default_factory=set)  # keys a package's previous version had that it has not
    known: set[str] = field(default_factory=set)  # keys of the updated packages' current versions

    def __post_init__(self) -> None:
        self._tree = key_tree(self.ignore_keys)

    def judge(self, package_id: str, change: str, staged_json: str, previous: dict[str, Any] | None) -> None:
        """Note one changed package: its keys next to its previous version's, and whether its change is
        only in ignored keys (an update only: a new or restored package always gets a version)."""
        self.judged.add(package_id)
        staged = json.loads(staged_json)
        keys = key_paths(staged)
        self.seen |= keys
        if previous is None:
            self.gained |= keys
            return
        old_keys = key_paths(previous)
        self.gained |= keys - old_keys
        self.lost |= old_keys - keys
        if change != ChangeType.UPDATED:
            return
        self.known |= old_keys
        if self._tree and same_json(without_keys(staged, self._tree), without_keys(previous, self._tree)):
            self.refreshed.append(package_id)

    @property
    def scope_needed(self) -> bool:
        """Whether the scope's current versions must be read to tell the schema changes: a package lost
        a key, or gained one that no updated package's current version has (a new one's keys included)."""
        return bool(self.lost) or not self.gained <= self.known


def schema_changes(changed: ChangedKeys, scope_versions: Iterable[tuple[str, dict[str, Any]]]) -> SchemaChanges | None:
    """Keys this run's packages had that none of the scope's current versions had (+), and keys every
    current version had that none of this run's packages had (-). `scope_versions` gives each current
    version's package id and raw. None when the scope has no current version (its first run): there is
    nothing to compare with.

    A listed package that did not change keeps its keys: they are this run's too (so is a package this
    run did not see, still listed until a run removes it: its keys are not gone until it is)."""
    had_any: set[str] = set()
    had_all: set[str] | None = None
    now: set[str] = set(changed.seen)
    for package_id, raw in scope_versions:
        keys = key_paths(raw)
        had_any |= keys
        had_all = set(keys) if had_all is None else had_all & keys
        if package_id not in changed.judged:
            now |= keys
    if had_all is None:
        return None
    return SchemaChanges(added=tuple(sorted(now - had_any)), removed=tuple(sorted(had_all - now)))
