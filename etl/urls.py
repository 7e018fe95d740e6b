"""What a database URL names beyond its kind: the SQLite file behind it.

Its own module because the engines (database.py) and the locks (dialects.py) both need it, and
neither should import the other for it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)
