"""Batch grading of CSV and JSONL files (``grader batch``).

Rows stream from the input (``grader.batch_input``) and are grouped into batches aligned on row numbers
(rows 1-64, 65-128, ...). An *engine* grades each batch (``LocalEngine``: one ``Grader.grade_many`` call
per batch, so answers are encoded together while rubric embeddings are reused), and every batch is
appended to the output and fsynced before the next one. A run stopped by Ctrl-C or kill -9 continues
after its last complete row when the same command is run again. A row that cannot be graded becomes
an error row with the reason, and the run goes on.

Example:
    >>> with BatchJob(Path("answers.csv")) as job:                      # doctest: +SKIP
    ...     summary = job.run(LocalEngine(Grader.from_settings()))
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from grader.batch_input import Format, InputFile, Record, clean, detect_format
from grader.batch_output import ROW_COLUMN, OutputFile, ResumePoint
from grader.batch_progress import BatchProgress
from grader.errors import GraderError, InputError
from grader.schema import CustomQuestion, GradeResult, Lang

if TYPE_CHECKING:
    from grader.bank import Bank
    from grader.grader import Grader

RESULT_COLUMNS = ("score", "covered_points", "missing_points", "errors", "flags", "feedback", "status", "error")
LIST_COLUMNS = ("covered_points", "missing_points", "errors", "flags")
EXTRA_COLUMN = "extra_fields"  # JSONL keys that the first row did not have, when writing CSV
FULL_COLUMN = "result"
_LANGS: dict[str, Lang] = {"zh": "zh", "cn": "zh", "chinese": "zh", "中文": "zh", "en": "en", "english": "en",
                           "英文": "en"}


class Columns(BaseModel):
    """Which input column holds what (matched case-insensitively).

    A row names its question either by ``question_id`` (a bank id) or inline, with ``question`` and
    ``reference`` columns (and optionally ``key_points``, separated by newlines or semicolons).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    question_id: str = "question_id"
    answer: str = "answer"
    candidate_id: str = "candidate_id"
    lang: str = "lang"
    question: str = "question"
    reference: str = "reference"
    key_points: str = "key_points"

    @classmethod
    def from_pairs(cls, pairs: list[str]) -> Columns:
        """From ``ROLE=NAME`` pairs, for example ``["answer=回答", "question_id=题号"]``."""
        mapping = {}
        for pair in pairs:
            role, sep, name = pair.partition("=")
            if not sep or not name.strip():
                raise InputError(f"--column takes ROLE=NAME (for example answer=回答), not {pair!r}")
            if role.strip() not in cls.model_fields:
                raise InputError(f"unknown column role {role.strip()!r}; roles are: {', '.join(cls.model_fields)}")
            mapping[role.strip()] = name.strip()
        return cls(**mapping)

    def resolve(self, header: list[str], source: Path) -> ColumnMap:
        """The actual header names for each role; fails with the header's names when one is missing."""
        lookup = {name.strip().casefold(): name for name in header}
        found = {role: lookup.get(wanted.strip().casefold()) for role, wanted in self.model_dump().items()}

        def missing(role: str) -> InputError:
            wanted = getattr(self, role)
            close = difflib.get_close_matches(wanted, header, n=2, cutoff=0.5)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            return InputError(f"{source}: no column {wanted!r} ({role}); the columns are {', '.join(header)}{hint}. "
                              f"Name it with --column {role}=NAME")

        for role in self.model_fields_set:
            if found[role] is None:
                raise missing(role)
        if found["answer"] is None:
            raise missing("answer")
        if found["question_id"] is None and not (found["question"] and found["reference"]):
            raise missing("question_id")
        return ColumnMap.model_validate(found)


class ColumnMap(BaseModel):
    """The input's columns by role; None where the input has no such column."""

    model_config = ConfigDict(frozen=True)
    question_id: str | None
    answer: str
    candidate_id: str | None
    lang: str | None
    question: str | None
    reference: str | None
    key_points: str | None


class OutputLayout(BaseModel):
    """The output's columns: the input row number, every input column, then the grading columns."""

    model_config = ConfigDict(frozen=True)
    input_columns: list[str]
    prefix: str = ""
    full: bool = False
    extra: bool = False

    def name(self, column: str) -> str:
        return self.prefix + column

    def added(self) -> list[str]:
        """The columns the output adds after the input's own."""
        tail = ([EXTRA_COLUMN] if self.extra else []) + ([self.name(FULL_COLUMN)] if self.full else [])
        return [*(self.name(c) for c in RESULT_COLUMNS), *tail]

    def header(self) -> list[str]:
        return [ROW_COLUMN, *self.input_columns, *self.added()]

    def check(self, source: Path) -> None:
        taken = sorted(set(self.input_columns) & {*self.added(), ROW_COLUMN})
        if taken:
            raise InputError(f"{source} already has column(s) {', '.join(taken)}, which the output adds; pass "
                             "--prefix graded_ to name the added columns differently")


class RowPlan(BaseModel):
    """Everything an engine needs to turn records into output rows (plain data, easy to ship)."""

    model_config = ConfigDict(frozen=True)
    columns: ColumnMap
    layout: OutputLayout


class RowProblem(Exception):
    """Why one row cannot be graded; it becomes the row's ``error``."""


# ------------------------------------------------------------------ one batch


def _text(value: object) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _lang(value: str) -> Lang | None:
    key = value.strip().casefold()
    if not key:
        return None
    lang = _LANGS.get(key) or _LANGS.get(key[:2])
    if lang is None:
        raise RowProblem(f"lang must be zh or en, not {value!r}")
    return lang


@lru_cache(maxsize=512)
def custom_question(question_id: str, question: str, reference: str, key_points: str) -> CustomQuestion:
    """An inline question, validated once per distinct question (the grader compiles it once too)."""
    slug = re.sub(r"[^a-z0-9]+", "-", question_id.lower()).strip("-") or "custom"
    points = [p.strip() for p in re.split(r"[\n;；]", key_points) if p.strip()]
    try:
        return CustomQuestion(id=slug, question=question, references=[reference], key_points=points)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RowProblem(f"inline question is not usable: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def grading_item(record: Record, columns: ColumnMap, bank: Bank) -> tuple[str | CustomQuestion, str, Lang | None]:
    """(question, answer, lang) for ``Grader.grade_many``; raises ``RowProblem`` or ``GraderError``."""
    def get(role: str) -> str:
        column = getattr(columns, role)
        return _text(record.values.get(column)) if column else ""

    question_id, lang = get("question_id").strip(), _lang(get("lang"))
    if question_id in bank:
        return question_id, get("answer"), lang
    question, reference = get("question").strip(), get("reference").strip()
    if question and reference:
        return custom_question(question_id, question, reference, get("key_points")), get("answer"), lang
    if question_id:
        bank.get(question_id)  # raises UnknownQuestion with the closest ids
    inline = " and no inline question and reference" if columns.question else ""
    raise RowProblem(f"no question: {columns.question_id or 'question_id'} is empty{inline}")


def output_row(record: Record, layout: OutputLayout, result: GradeResult | None, problem: str | None) -> dict:
    """One output row: the row number, the input values, and the result (or the error)."""
    row: dict[str, object] = {ROW_COLUMN: record.row}
    extra = {}
    added = {ROW_COLUMN, EXTRA_COLUMN, *(layout.name(c) for c in (*RESULT_COLUMNS, FULL_COLUMN))}
    for key, value in record.values.items():
        if layout.extra and key not in layout.input_columns:
            extra[key] = clean(value)
        elif key in added:  # a later JSONL object may carry a key the output adds: keep it, renamed
            row[f"input.{key}"] = clean(value)
        else:
            row[key] = clean(value)
    if result is None:
        grades: dict[str, object] = {c: [] for c in LIST_COLUMNS}
        grades.update(score=None, feedback="", status="error", error=problem or "not graded")
    else:
        grades = {
            "score": result.score,
            "covered_points": [p.id for p in result.points if p.covered],
            "missing_points": [p.id for p in result.points if not p.covered],
            "errors": [e.misconception_id for e in result.errors],
            "flags": list(result.flags),
            "feedback": result.feedback,
            "status": "ok",
            "error": "",
        }
    row.update((layout.name(key), value) for key, value in grades.items())
    if layout.extra:
        row[EXTRA_COLUMN] = extra or None
    if layout.full:
        row[layout.name(FULL_COLUMN)] = result.model_dump(mode="json") if result else None
    return row


def grade_batch(grader: Grader, records: list[Record], plan: RowPlan) -> list[dict]:
    """Grade one batch of records with a single ``grade_many`` call; one output row per record.

    Rows that cannot be read or have no usable question become error rows. If ``grade_many`` refuses
    the batch, its rows are graded one by one so that only the guilty row fails.
    """
    items: dict[int, tuple] = {}
    problems: dict[int, str] = {}
    lines = {record.row: record.line for record in records}
    for record in records:
        try:
            if record.problem:
                raise RowProblem(record.problem)
            items[record.row] = grading_item(record, plan.columns, grader.bank)
        except (RowProblem, GraderError) as exc:
            problems[record.row] = f"line {record.line}: {exc}"
    results: dict[int, GradeResult] = {}
    try:
        results = dict(zip(items, grader.grade_many(list(items.values())) if items else [], strict=True))
    except GraderError:
        for row, item in items.items():
            try:
                results[row] = grader.grade_many([item])[0]
            except GraderError as exc:
                problems[row] = f"line {lines[row]}: {exc}"
    return [output_row(r, plan.layout, results.get(r.row), problems.get(r.row)) for r in records]


@dataclass(frozen=True)
class Graded:
    """One graded batch: its output rows, and the input bytes its records span (for progress)."""

    rows: list[dict]
    start: int
    end: int


class Engine(Protocol):
    """Grades the records after ``after_row`` in batches aligned on row numbers, and yields the graded
    batches in input order. The job writes them; an engine never touches the output."""

    def grade(self, source: InputFile, after_row: int, batch_size: int, plan: RowPlan) -> Iterator[Graded]: ...


class LocalEngine:
    """Grades each batch in this process with one loaded ``Grader``."""

    def __init__(self, grader: Grader):
        self.grader = grader

    def grade(self, source: InputFile, after_row: int, batch_size: int, plan: RowPlan) -> Iterator[Graded]:
        todo = (r for r in source.records() if r.row > after_row)
        for records in aligned_batches(todo, batch_size):
            yield Graded(grade_batch(self.grader, records, plan), records[0].start, records[-1].end)


def aligned_batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    """Records grouped by row number (rows 1..size, size+1..2*size, ...), so that a resumed run forms
    the same batches as an uninterrupted one."""
    batch: list[Record] = []
    for record in records:
        if batch and (record.row - 1) // size != (batch[0].row - 1) // size:
            yield batch
            batch = []
        batch.append(record)
    if batch:
        yield batch


# ------------------------------------------------------------------ the run


class BatchSummary(BaseModel):
    input: Path
    output: Path
    input_format: str
    already_done: int = 0
    rows: int = 0
    graded: int = 0
    errors: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    report: Path | None = None


def default_output(input_path: Path, fmt: Format) -> Path:
    return input_path.with_name(f"{input_path.stem}.graded.{'jsonl' if fmt == 'jsonl' else 'csv'}")


def report_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.report.md")


class BatchJob:
    """A batch run, opened: input format detected, columns resolved, output locked and cut back to
    its last complete row. Everything that can be refused is refused here, before a model loads."""

    def __init__(self, input_path: Path, output_path: Path | None = None, *, columns: Columns | None = None,
                 batch_size: int = 64, encoding: str | None = None, delimiter: str | None = None,
                 restart: bool = False, prefix: str = "", full: bool = False):
        if batch_size < 1:
            raise InputError(f"the batch size must be at least 1, not {batch_size}")
        self.batch_size = batch_size
        self.fmt = detect_format(input_path, encoding, delimiter)
        self.input = InputFile(input_path, self.fmt)
        try:
            self.output_path = output_path or default_output(input_path, self.fmt.format)
            if self.output_path.resolve() == input_path.resolve():
                raise InputError(f"{input_path}: the output must be another file than the input")
            out_format: Format = "jsonl" if self.output_path.suffix.lower() in (".jsonl", ".ndjson") else "csv"
            layout = OutputLayout(input_columns=self.input.columns, prefix=prefix, full=full,
                                  extra=self.fmt.format == "jsonl" and out_format == "csv")
            layout.check(input_path)
            self.plan = RowPlan(columns=(columns or Columns()).resolve(self.input.columns, input_path), layout=layout)
            self.output = OutputFile(self.output_path, out_format, layout.header(),
                                     joined=frozenset(layout.name(c) for c in LIST_COLUMNS),
                                     added=frozenset(layout.added()),
                                     bom=out_format == "csv" and self.fmt.encoding != "utf-8")
        except BaseException:
            self.input.close()
            raise
        try:
            self.resumed: ResumePoint = self.output.resume(restart)
            self.last_row = self.resumed.last_row  # the last row committed to the output
            self._check_same_input()
        except BaseException:
            self.close()
            raise

    def _check_same_input(self) -> None:
        """Rows are matched by number on resume, so the output's last row must still be that row of the
        input: an input edited between runs would otherwise lose rows or grade some twice."""
        stored = self.resumed.last_record
        if stored is None:
            return
        with InputFile(self.input.path, self.fmt) as again:
            record = next((r for r in again.records() if r.row == self.resumed.last_row), None)

        def as_stored(column: str) -> object:
            value = clean(record.values.get(column)) if record else None
            return self.output.cell(column, value) if self.output.fmt == "csv" else value

        changed = [c for c in self.plan.layout.input_columns if as_stored(c) != stored.get(c)]
        if record is None or changed:
            what = f"column {changed[0]!r} differs" if record else "the input has fewer rows"
            raise InputError(
                f"{self.input.path} changed since {self.output_path} was written: its row {self.resumed.last_row} "
                f"is not the one the output holds ({what}); pass --restart to grade it all again, or choose "
                "another -o")

    def __enter__(self) -> BatchJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.input.close()
        self.output.close()

    def run(self, engine: Engine, progress: Callable[[BatchProgress], None] | None = None) -> BatchSummary:
        """Grade every row after the last committed one; commit each batch before the next."""
        state = BatchProgress(already_done=self.resumed.rows, last_row=self.resumed.last_row,
                              bytes_total=self.input.size)
        started = time.perf_counter()
        for batch in engine.grade(self.input, self.resumed.last_row, self.batch_size, self.plan):
            rows = batch.rows
            # Every record becomes one output row, so the rows must continue the output without a gap:
            # an engine that lost, repeated or reordered a batch is a bug that must not reach the file.
            numbers = [int(row[ROW_COLUMN]) for row in rows]  # type: ignore[call-overload]
            if numbers != list(range(state.last_row + 1, state.last_row + 1 + len(rows))):
                raise RuntimeError(f"engine returned rows {numbers[:1]}..{numbers[-1:]} after row {state.last_row}")
            if not rows:
                continue
            if not state.rows:
                state.bytes_at_start = batch.start
            state.bytes_read = batch.end
            self.output.write(rows)
            errors = sum(1 for row in rows if row[self.plan.layout.name("status")] == "error")
            state.rows += len(rows)
            state.errors += errors
            state.graded += len(rows) - errors
            state.last_row = self.last_row = int(rows[-1][ROW_COLUMN])  # type: ignore[call-overload]
            state.seconds = time.perf_counter() - started
            if progress:
                progress(state)
        seconds = time.perf_counter() - started
        return BatchSummary(input=self.input.path, output=self.output_path, input_format=self.fmt.describe(),
                            already_done=state.already_done, rows=state.rows, graded=state.graded,
                            errors=state.errors, seconds=round(seconds, 2),
                            rows_per_second=round(state.rows / seconds, 2) if seconds > 0 else 0.0)

    def write_report(self, bank: Bank | None = None) -> Path:
        """The Markdown report (with PNG histograms) of the whole output, next to it."""
        from grader.report import write_report

        return write_report(self.output_path, self.output.fmt, self.plan, report_path(self.output_path), bank)

