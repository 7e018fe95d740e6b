"""The revisions a release knows, read from its migration files' names, are Alembic's own."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from etl.database import alembic_config, head_revision, known_revisions


def test_the_migration_files_name_alembics_revisions_in_order():
    scripts = ScriptDirectory.from_config(alembic_config())
    chain = [script.revision for script in reversed(list(scripts.walk_revisions()))]

    assert known_revisions() == chain
    assert head_revision() == scripts.get_current_head()
