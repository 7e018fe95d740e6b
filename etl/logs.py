"""Logging for the command line: one text line per record, or one JSON object per line, on stderr.

Warnings by default (so cron stays quiet while all is well), -v for info, -vv for debug, -q for errors.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)
# "\r" + "erase the line": a log line on a terminal first wipes the progress bar drawn there.
CLEAR_LINE = "\r\x1b[K"
# Every attribute a plain LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def configure_logging(prog: str, verbosity: int, log_format: str = "text") -> None:
    """Send the root logger's records to stderr; `verbosity` is the number of -v minus the number of -q."""
    text = log_format == "text"
    handler = _StderrHandler(wipe_progress_bar=text)
    handler.setFormatter(logging.Formatter(f"{prog}: %(levelname)s %(message)s") if text else JsonFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_for(verbosity))


def level_for(verbosity: int) -> int:
    return LEVELS[max(0, min(verbosity + 1, len(LEVELS) - 1))]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (ISO 8601, UTC), level, logger, message, and the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is when a record comes (tests swap it), wiping a progress bar first."""

    def __init__(self, wipe_progress_bar: bool) -> None:
        super().__init__(sys.stderr)
        self.wipe_progress_bar = wipe_progress_bar

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr, looked up afresh

    def emit(self, record: logging.LogRecord) -> None:
        if self.wipe_progress_bar and is_terminal(self.stream):
            self.stream.write(CLEAR_LINE)
        super().emit(record)


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stream-like object
        return False
