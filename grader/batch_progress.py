"""Progress of a batch run: a rich bar with rows/s and ETA on a terminal, plain periodic lines in logs."""

from __future__ import annotations

import time
from datetime import timedelta

from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class BatchProgress(BaseModel):
    """Where a run stands; passed to the progress callback after each committed batch."""

    rows: int = 0
    graded: int = 0
    errors: int = 0
    already_done: int = 0
    last_row: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    bytes_at_start: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        done = self.bytes_read - self.bytes_at_start
        if done <= 0 or self.seconds <= 0:
            return None
        return max(self.bytes_total - self.bytes_read, 0) / (done / self.seconds)


def _eta(seconds: float | None) -> str:
    return "?" if seconds is None else str(timedelta(seconds=round(seconds)))


def describe(state: BatchProgress) -> str:
    """One line: rows done, errors, rate, share of the input read and time left."""
    share = state.bytes_read / state.bytes_total if state.bytes_total else 0.0
    return (f"{state.rows:,} rows graded this run ({state.errors:,} error rows), last row {state.last_row:,}, "
            f"{state.rows_per_second:.1f} rows/s, {share:.0%} of the input, ETA {_eta(state.eta_seconds)}")


class PlainProgress:
    """A line every ``every`` seconds (and none in between), for logs and pipes."""

    def __init__(self, console: Console, every: float = 10.0):
        self.console, self.every = console, every
        self._last = time.monotonic()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, state: BatchProgress) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.console.print(f"batch: {describe(state)}", highlight=False, soft_wrap=True)


class BarProgress:
    """A rich progress bar over the bytes of the input, with rows, rows/s and ETA."""

    def __init__(self, console: Console):
        self._progress = Progress(
            TextColumn("[bold]grading"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[rows]:,} rows · {task.fields[rate]:.1f} rows/s · {task.fields[errors]:,} errors"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> BarProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, state: BatchProgress) -> None:
        if self._task is None:
            self._task = self._progress.add_task("grading", total=state.bytes_total, completed=state.bytes_at_start,
                                                 rows=0, rate=0.0, errors=0)
        self._progress.update(self._task, completed=state.bytes_read, rows=state.rows, rate=state.rows_per_second,
                              errors=state.errors)


def progress_for(console: Console, every: float = 10.0) -> PlainProgress | BarProgress:
    """A bar on a terminal, plain lines otherwise."""
    return BarProgress(console) if console.is_terminal else PlainProgress(console, every)
