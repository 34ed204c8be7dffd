"""Batch inputs: how a file is written (format, encoding, delimiter) and its rows as numbered records.

Inputs are CSV (comma, tab or semicolon; UTF-8, UTF-8 with BOM or GBK/GB18030, as Chinese
spreadsheets save it) or JSONL. Bytes that are not valid in the file's encoding are kept as surrogate
escapes while reading, so that one bad row becomes an error row instead of stopping the run.

Every record knows the byte offset of its first line (``Position``): reading can start again there,
which is how a Ray worker reads exactly the rows of its batch without the whole file being shipped.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from grader.errors import InputError

Format = Literal["csv", "jsonl"]
SAMPLE_BYTES = 1 << 20
MAX_RECORD_LINES = 1000  # a quoted field running longer than this is an unterminated quote
DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon"}
_ESCAPED = re.compile("[\udc80-\udcff]+")  # bytes the decoder could not read (surrogateescape)
# csv's default field limit (128 KiB) would split a long quoted answer into bogus rows; answers are
# capped later (GRADER_MAX_ANSWER_CHARS), so only the reader needs the room.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))
_SUFFIX_FORMATS: dict[str, Format] = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl",
                                      ".ndjson": "jsonl", ".json": "jsonl"}


class InputFormat(BaseModel):
    """How an input file is written (detected, or given on the command line)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format: Format
    encoding: str
    delimiter: str = ","

    def describe(self) -> str:
        if self.format == "jsonl":
            return f"JSONL, {self.encoding}"
        return f"CSV, {self.encoding}, {DELIMITERS.get(self.delimiter, repr(self.delimiter))}-separated"


def detect_encoding(sample: bytes) -> str:
    """The encoding of a file from its first bytes: a BOM, else UTF-8 unless the bytes read as GB18030.

    A UTF-8 file with a few broken rows stays UTF-8 (those rows become error rows); a file whose
    non-ASCII bytes are mostly not UTF-8 but read as GB18030 (a superset of GBK) is GB18030, even
    with a few bytes that are not valid GB18030 either.

    >>> detect_encoding("问题,回答".encode("gbk")), detect_encoding("问题".encode()), detect_encoding(b"a,b")
    ('gb18030', 'utf-8', 'utf-8')
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError("the file is UTF-16 (Excel's 'Unicode text'); save it as 'CSV UTF-8', or convert it "
                         "with: iconv -f UTF-16 -t UTF-8")
    text = _decode_sample(sample, "utf-8")
    utf8_bad = _escaped_count(text)
    utf8_good = sum(1 for ch in text if ord(ch) > 0x7F) - utf8_bad
    if utf8_bad == 0 or utf8_good >= utf8_bad:
        return "utf-8"
    return "gb18030" if 4 * _escaped_count(_decode_sample(sample, "gb18030")) < utf8_bad else "utf-8"


def _decode_sample(sample: bytes, encoding: str) -> str:
    return codecs.getincrementaldecoder(encoding)("surrogateescape").decode(sample, final=False)


def _escaped_count(text: str) -> int:
    return sum(len(run) for run in _ESCAPED.findall(text))


def detect_delimiter(header_line: str) -> str:
    """The delimiter used most in the header line (comma when none is used)."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def detect_format(path: Path, encoding: str | None = None, delimiter: str | None = None) -> InputFormat:
    """Detect the format (by suffix, else content), encoding and delimiter of an input file."""
    try:
        with open(path, "rb") as handle:
            sample = handle.read(SAMPLE_BYTES)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None
    if not sample.strip():
        raise InputError(f"{path}: the file is empty")
    if encoding:
        try:
            encoding = codecs.lookup("gb18030" if encoding.lower() in ("gbk", "gb2312") else encoding).name
        except LookupError:
            raise InputError(f"unknown encoding {encoding!r}; use for example utf-8, utf-8-sig or gbk") from None
        if encoding.startswith(("utf-16", "utf-32")):  # a newline byte may sit inside a character
            raise InputError(f"{encoding} input is not supported; convert it with: iconv -f {encoding} -t UTF-8")
    encoding = encoding or detect_encoding(sample)
    text = codecs.getincrementaldecoder(encoding)("replace").decode(sample, final=False).lstrip("\ufeff")
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower()) or ("jsonl" if text.lstrip().startswith("{") else "csv")
    if fmt == "jsonl":
        return InputFormat(format="jsonl", encoding=encoding)
    if delimiter is not None:
        delimiter = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise InputError(f"--delimiter must be one character (or tab, comma, semicolon), not {delimiter!r}")
    elif path.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        delimiter = detect_delimiter(next((line for line in text.splitlines() if line.strip()), ""))
    return InputFormat(format="csv", encoding=encoding, delimiter=delimiter)


def undecodable(values: dict[str, object], encoding: str) -> str | None:
    """Why a record's text cannot be trusted (bytes invalid in the encoding), or None."""
    for column, value in values.items():
        if isinstance(value, str) and (run := _ESCAPED.search(value)):
            raw = run.group().encode("utf-8", "surrogateescape")[:6]
            return f"invalid {encoding} bytes in column {column!r} ({raw.hex(' ')})"
    return None


def clean(value: object) -> object:
    """The value with unreadable bytes shown as U+FFFD, so that the output is valid UTF-8."""
    return _ESCAPED.sub("\ufffd", value) if isinstance(value, str) else value


# ------------------------------------------------------------------ reading


class Position(BaseModel):
    """Where a record starts: its row number, its first line's number and that line's byte offset."""

    model_config = ConfigDict(frozen=True)
    row: int
    line: int
    offset: int


@dataclass(frozen=True)
class Record:
    """One input row: its number (1 = first row after any header), values by column, and why it is
    unreadable (``problem``), in which case ``values`` holds what could be read of it."""

    row: int
    line: int
    values: dict[str, object]
    start: int  # byte offset of the record's first line
    end: int  # bytes of the input read when it was yielded (for progress)
    problem: str | None = None

    @property
    def position(self) -> Position:
        return Position(row=self.row, line=self.line, offset=self.start)


Line = tuple[int, int, str]  # (line number, byte offset, text with its line end)


class InputFile:
    """An input opened for streaming: ``columns`` and then ``records()``, one pass, flat memory.

    Example:
        >>> with InputFile(path, detect_format(path)) as source:   # doctest: +SKIP
        ...     for record in source.records(): ...
    """

    def __init__(self, path: Path, fmt: InputFormat):
        self.path, self.fmt = path, fmt
        self.size = path.stat().st_size
        self.bytes_read = 0
        if fmt.format == "csv":
            self._lines: Generator[Line, None, None] | None = self._lines_from(0, 1)
            self.columns = self._read_csv_header(self._lines)
        else:
            self._lines = None
            self.columns = self._jsonl_columns()

    def __enter__(self) -> InputFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()  # closes the file the header was read from

    def _lines_from(self, offset: int, number: int) -> Generator[Line, None, None]:
        """The file's lines from a line start (line ends kept, as csv needs), with their byte offsets.

        Offsets are counted by encoding each line back: surrogate escapes give back the exact bytes."""
        codec = "utf-8" if self.fmt.encoding == "utf-8-sig" else self.fmt.encoding
        with open(self.path, "rb") as raw:
            raw.seek(offset)
            for text in io.TextIOWrapper(raw, encoding=codec, errors="surrogateescape", newline=""):
                size = len(text.encode(codec, "surrogateescape"))
                yield number, offset, text.lstrip("\ufeff") if offset == 0 else text  # the BOM, if any
                offset += size
                number += 1
                self.bytes_read = max(self.bytes_read, offset)

    def _read_csv_header(self, lines: Iterator[Line]) -> list[str]:
        for _, _, text in lines:
            if text.strip():
                header = next(csv.reader([text], delimiter=self.fmt.delimiter))
                return _checked_header([name.strip() for name in header], self.path)
        raise InputError(f"{self.path}: no header row")

    def _jsonl_columns(self) -> list[str]:
        """JSONL has no header: the keys of the first object are the columns (later keys are added
        after them in the output)."""
        with open(self.path, encoding=self.fmt.encoding, errors="replace") as handle:
            for line in handle:
                try:
                    first = json.loads(line)
                except ValueError:
                    continue
                if isinstance(first, dict):
                    return [str(key) for key in first]
        raise InputError(f"{self.path}: no JSON object found (one object per line expected)")

    def records(self, start: Position | None = None) -> Iterator[Record]:
        """Every record after the header, or from ``start`` (a position an earlier pass returned)."""
        if start is not None:
            lines, first_row = self._lines_from(start.offset, start.line), start.row
        elif self._lines is not None:
            lines, self._lines, first_row = self._lines, None, 1
        elif self.fmt.format == "jsonl":
            lines, first_row = self._lines_from(0, 1), 1
        else:
            raise RuntimeError("records() without a start position reads the file once")
        reader = self._csv_records(lines) if self.fmt.format == "csv" else _jsonl_records(lines)
        for row, (line, offset, values, problem) in enumerate(reader, start=first_row):
            problem = problem or undecodable(values, self.fmt.encoding)
            yield Record(row=row, line=line, values=values, start=offset, end=self.bytes_read, problem=problem)

    def _csv_records(self, lines: Iterable[Line]) -> Iterator[tuple[int, int, dict[str, object], str | None]]:
        width = len(self.columns)
        for line, offset, fields, problem in split_csv_records(lines, self.fmt.delimiter, width):
            yield line, offset, dict(zip(self.columns, fields + [""] * (width - len(fields)), strict=False)), problem


def _jsonl_records(lines: Iterable[Line]) -> Iterator[tuple[int, int, dict[str, object], str | None]]:
    for number, offset, text in lines:
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            yield number, offset, {}, f"not valid JSON: {exc}"
            continue
        if not isinstance(value, dict):
            yield number, offset, {}, f"expected a JSON object, got {type(value).__name__}"
            continue
        yield number, offset, value, None


def _checked_header(header: list[str], path: Path) -> list[str]:
    seen: set[str] = set()
    header = [name or f"column_{i}" for i, name in enumerate(header, start=1)]  # spreadsheets leave some blank
    for name in header:
        if name in seen:
            raise InputError(f"{path}: the header names column {name!r} twice")
        seen.add(name)
    return header


class _TooLong(Exception):
    pass


def split_csv_records(
    lines: Iterable[Line], delimiter: str, width: int, max_lines: int = MAX_RECORD_LINES
) -> Iterator[tuple[int, int, list[str], str | None]]:
    """(line number, byte offset, fields, problem) for each CSV record; blank lines are skipped.

    A record that breaks CSV quoting, or has another number of fields than the header, is yielded with
    its problem. If a stray quote on its first line swallowed the lines after it, those lines are read
    again as records of their own, so one broken row costs one row. Each record starts at a line
    start and nothing before it matters, so reading from a record's offset gives the same records.

    >>> rows = ['x,"broken\\n', 'y,fine\\n', 'z,"quoted, ok"\\n']
    >>> [(n, f, p is not None) for n, _, f, p in split_csv_records([(i, 0, r) for i, r in enumerate(rows)], ",", 2)]
    [(0, ['x', 'broken'], True), (1, ['y', 'fine'], False), (2, ['z', 'quoted, ok'], False)]
    """
    source = iter(lines)
    pending: deque[Line] = deque()

    def next_line() -> Line:
        return pending.popleft() if pending else next(source)

    while True:
        try:
            first = next_line()
        except StopIteration:
            return
        taken = [first]

        def feed(first: Line = first, taken: list[Line] = taken) -> Iterator[str]:
            yield first[2]
            while True:
                if len(taken) >= max_lines:
                    raise _TooLong
                try:
                    taken.append(next_line())
                except StopIteration:
                    return
                yield taken[-1][2]

        problem = None
        try:
            fields = next(csv.reader(feed(), delimiter=delimiter, strict=True), [])
        except csv.Error as exc:
            fields, problem = [], f"broken CSV quoting or field: {exc}"
        except _TooLong:
            fields, problem = [], f"unterminated quote (the field runs past {max_lines} lines)"
        if problem is None and not fields:
            continue  # a blank line is no record
        if problem is None and not any(field.strip() for field in fields):
            problem = "empty row"
        if problem is None and len(fields) != width:
            problem = f"{len(fields)} fields where the header has {width} (a stray quote or {delimiter!r}?)"
        if problem is None:
            yield first[0], first[1], fields, None
            continue
        pending.extendleft(reversed(taken[1:]))
        yield first[0], first[1], _lenient_fields(first[2], delimiter, width), problem


def _lenient_fields(line: str, delimiter: str, width: int) -> list[str]:
    """What can be read of a broken one-line record, to keep its columns in the output."""
    try:
        fields = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter), [])
    except csv.Error:
        fields = [line.rstrip("\r\n")]
    return fields[: width - 1] + [delimiter.join(fields[width - 1 :])] if len(fields) > width else fields
