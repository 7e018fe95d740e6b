"""A progress bar over pages, for people watching a terminal; the CLI shows it on a terminal only."""

from __future__ import annotations

from types import TracebackType
from typing import TextIO

from .logs import CLEAR_LINE


class PageProgress:
    """`katapult-etl: page 3/5` (or `page 7` when Katapult gives no totals), redrawn in place, wiped at the end.

    Call it as the pipeline's `on_page` hook: with the pages done so far and the total, if known.
    """

    def __init__(self, prog: str, stream: TextIO) -> None:
        self._prog = prog
        self._stream = stream
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        of_total = f"/{total}" if total else ""
        self._stream.write(f"{CLEAR_LINE}{self._prog}: page {done}{of_total}")
        self._stream.flush()
        self._drawn = True

    def __enter__(self) -> PageProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # Leave the line empty, so that the summary or the error message starts on a clean line.
        if self._drawn:
            self._stream.write(CLEAR_LINE)
            self._stream.flush()
