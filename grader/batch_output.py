"""Batch outputs: graded rows appended one committed batch at a time, resumable after any stop.

Each batch is one write, then flush and fsync. Every output row starts with the input row number, so a
restart reads the output, cuts off a torn tail and continues after the last complete row.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from grader.batch_input import Format
from grader.errors import InputError

ROW_COLUMN = "input_row"


class ResumePoint(BaseModel):
    """What an existing output already holds."""

    header: list[str] | None = None
    last_row: int = 0
    rows: int = 0
    committed_bytes: int = 0
    torn_bytes: int = 0
    unreadable_at: int | None = None  # byte offset of a complete record that is no graded row
    last_record: dict[str, object] | None = None  # the last row as stored (CSV cells are strings)


def scan_output(path: Path, fmt: Format) -> ResumePoint:
    """Read an existing output: its header, its last complete row, and where the complete part ends.

    A CSV record ends at a newline outside quotes: our writer quotes any field holding a newline and
    doubles quotes inside fields, so counting quote characters per line finds the record ends exactly
    (a quote byte never occurs inside a UTF-8 multi-byte character).
    """
    point = ResumePoint()
    if not path.exists():
        return point
    offset, pieces, in_quotes = 0, [], False
    with open(path, "rb") as handle:
        for line in handle:
            offset += len(line)
            pieces.append(line)
            if fmt == "csv":  # JSONL escapes quotes inside strings: one record per line
                in_quotes ^= line.count(b'"') % 2 == 1
            if in_quotes or not line.endswith(b"\n"):
                continue
            raw, pieces = b"".join(pieces), []
            parsed = _parse_output_record(raw, fmt, point)
            row = None if parsed is None else parsed[0]
            if parsed is None or row is None or (row and row <= point.last_row):
                point.unreadable_at = offset - len(raw)
                break
            if row > 0:
                point.last_row, point.rows, point.last_record = row, point.rows + 1, parsed[1]
            point.committed_bytes = offset
    point.torn_bytes = path.stat().st_size - point.committed_bytes
    return point


def _parse_output_record(raw: bytes, fmt: Format, point: ResumePoint) -> tuple[int, dict[str, object]] | None:
    """(input row number, the record by column) of a complete output record (row 0: the header), or
    None if it is unreadable."""
    try:
        text = raw.decode("utf-8-sig" if point.committed_bytes == 0 else "utf-8")
        if fmt == "jsonl":
            value = json.loads(text)
            return (int(value[ROW_COLUMN]), value) if isinstance(value, dict) else None
        fields = next(csv.reader([text]))
    except (ValueError, KeyError, TypeError, csv.Error, StopIteration):
        return None
    if point.header is None:
        point.header = fields
        return 0, {}
    if len(fields) != len(point.header) or not fields[0].isdigit():
        return None
    return int(fields[0]), dict(zip(point.header, fields, strict=True))


class OutputFile:
    """A batch output: graded rows appended one committed batch at a time.

    Holds an exclusive lock on the file, so that two runs can never write the same output.
    """

    def __init__(self, path: Path, fmt: Format, header: list[str], joined: frozenset[str], bom: bool = False,
                 added: frozenset[str] = frozenset()):
        self.path, self.fmt, self.header, self.joined, self.bom = path, fmt, header, joined, bom
        self.added = added  # the columns grading adds, which every row carries
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "ab+")  # noqa: SIM115 - closed by close()
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise InputError(f"{path}: another `grader batch` is writing this output right now") from None

    def resume(self, restart: bool) -> ResumePoint:
        """Cut the output back to its last complete row (or to nothing with ``restart``) and return
        what it holds; refuses an output written for other columns."""
        point = ResumePoint() if restart else scan_output(self.path, self.fmt)
        # JSONL has no header: its last row shows whether it was written with the same --prefix / --full
        other_jsonl = (self.fmt == "jsonl" and point.last_record is not None
                       and not self.added <= set(point.last_record))
        if other_jsonl or (point.header is not None and self.fmt == "csv" and point.header != self.header):
            raise InputError(
                f"{self.path} already holds rows with other columns "
                f"({', '.join((point.header or list(point.last_record or {}))[:6])}…); "
                "pass --restart to grade again from the first row, or choose another output with -o")
        if point.unreadable_at is not None:
            raise InputError(
                f"{self.path} is not an output of `grader batch`, or was edited: the record at byte "
                f"{point.unreadable_at} is not a graded row; pass --restart to overwrite it, or choose another -o")
        self._handle.truncate(point.committed_bytes)
        self._handle.seek(0, os.SEEK_END)
        if point.committed_bytes == 0 and self.fmt == "csv":
            self._commit(("\ufeff" if self.bom else "") + self._csv_line(self.header))
        return point

    def write(self, rows: list[dict[str, object]]) -> None:
        """Append one batch of rows as a single write, then flush and fsync (the commit point)."""
        if self.fmt == "jsonl":
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        else:
            text = "".join(self._csv_line([self.cell(column, row.get(column)) for column in self.header])
                           for row in rows)
        self._commit(text)

    def _commit(self, text: str) -> None:
        self._handle.write(text.encode("utf-8", "replace"))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def cell(self, column: str, value: object) -> str:
        """A value as this output's CSV writes it."""
        if value is None:
            return ""
        if isinstance(value, list) and column in self.joined:
            return ";".join(str(v) for v in value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            return json.dumps(value, ensure_ascii=False)
        # the csv module leaves a lone CR unquoted with "\n" line ends, which breaks reading the file back
        return str(value).replace("\r\n", "\n").replace("\r", "\n")

    @staticmethod
    def _csv_line(fields: list[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(fields)
        return buffer.getvalue()

    def close(self) -> None:
        self._handle.close()


def read_output_rows(path: Path, fmt: Format) -> Iterator[dict[str, object]]:
    """Stream the rows of a finished output (for the report)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        if fmt == "jsonl":
            for line in handle:
                if line.strip():
                    yield json.loads(line)
        else:
            yield from csv.DictReader(handle)
