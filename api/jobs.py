"""Async grading jobs: rows stored in SQLite, graded in batches, each batch committed once.

A job's input (CSV/JSONL upload or a JSON list) is parsed with ``grader.batch_input`` when it is
submitted; every row goes into ``job_rows`` with its input values. The runner grades the lowest rows
that have no output yet with ``grader.batch.grade_batch`` and writes their output rows in one
transaction, guarded by ``output IS NULL``. A restart, even after kill -9, finds the rows without
output and goes on: a row is committed exactly once, and a batch cut off mid-way is simply graded again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from api import banks
from api.db import Database
from api.errors import ApiError
from api.grading import GradingService
from grader.batch import LIST_COLUMNS, Columns, OutputLayout, RowPlan, grade_batch, output_row
from grader.batch_input import InputFile, Record, detect_format
from grader.batch_output import ROW_COLUMN, OutputFile
from grader.errors import InputError
from grader.exemplars import tenant_key
from grader.schema import GradeResult, Rubric

if TYPE_CHECKING:
    from grader.grader import Grader

log = logging.getLogger("api")
MAX_LISTED_ERRORS = 20
MAX_BATCH_FAILURES = 3


def stored_record(row: int, line: int, values: dict, problem: str | None = None) -> Record:
    """A ``Record`` for a row kept in the database; its byte offsets (for file progress) have no meaning here."""
    offsets = {f.name: 0 for f in dataclasses.fields(Record) if f.name not in ("row", "line", "values", "problem")}
    return Record(row=row, line=line, values=values, problem=problem, **offsets)


def _plan(columns: list[str], source: Path, pairs: dict[str, str], prefix: str, full: bool) -> RowPlan:
    try:
        wanted = Columns(**pairs)
    except ValueError as exc:
        raise InputError(f"unknown column role in {sorted(pairs)}; roles are: {', '.join(Columns.model_fields)}") \
            from exc
    layout = OutputLayout(input_columns=columns, prefix=prefix, full=full)
    layout.check(source)
    return RowPlan(columns=wanted.resolve(columns, source), layout=layout)


def _union(records: list[Record], first: list[str]) -> list[str]:
    """Every key of every row, in order of first appearance (JSON rows need not share their keys)."""
    names = dict.fromkeys(first)
    for record in records:
        names.update(dict.fromkeys(str(k) for k in record.values))
    return list(names)


def read_upload(data: bytes, filename: str) -> tuple[list[Record], list[str], str, str]:
    """(records, columns, format, description) of an uploaded CSV or JSONL file."""
    suffix = re.sub(r"[^a-z0-9.]+", "", Path(filename or "upload").suffix.lower())  # all detection needs
    with tempfile.TemporaryDirectory(prefix="grader-job-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        fmt = detect_format(path)
        with InputFile(path, fmt) as rows:
            records = list(rows.records())
            columns = rows.columns
    if not records:
        raise InputError(f"{filename or 'upload'}: no rows after the header")
    if fmt.format == "jsonl":
        columns = _union(records, columns)
    return records, columns, fmt.format, fmt.describe()


def read_json_rows(rows: list[dict]) -> tuple[list[Record], list[str]]:
    records = [stored_record(i, i, values) for i, values in enumerate(rows, start=1)]
    return records, _union(records, [])


class JobStore:
    """Jobs and their rows in the API database."""

    def __init__(self, db: Database):
        self.db = db

    def create(self, *, tenant: str, key_id: str, records: list[Record], columns: list[str], input_format: str,
               source: str, pairs: dict[str, str], prefix: str = "", full: bool = False) -> str:
        plan = _plan(columns, Path(source), pairs, prefix, full)
        job_id = "job_" + secrets.token_hex(8)
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO jobs (id, tenant, key_id, state, input_format, plan, total, created_at) "
                         "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                         (job_id, tenant, key_id, input_format, plan.model_dump_json(), len(records), time.time()))
            conn.executemany("INSERT INTO job_rows (job_id, row, line, input, problem) VALUES (?, ?, ?, ?, ?)",
                             [(job_id, r.row, r.line, json.dumps(r.values, ensure_ascii=False), r.problem)
                              for r in records])
        return job_id

    def get(self, job_id: str, tenant: str):
        rows = self.db.query("SELECT * FROM jobs WHERE id = ? AND tenant = ?", (job_id, tenant))
        if not rows:
            raise ApiError(404, f"no job {job_id!r} for your tenant")
        return rows[0]

    def counts(self, job_id: str) -> dict[str, int]:
        row = self.db.query("SELECT COUNT(output) AS done, SUM(status = 'error') AS errors FROM job_rows "
                            "WHERE job_id = ?", (job_id,))[0]
        done, errors = row["done"] or 0, row["errors"] or 0
        return {"done": done, "errors": errors, "graded": done - errors}

    def row_errors(self, job_id: str) -> list[str]:
        rows = self.db.query("SELECT error FROM job_rows WHERE job_id = ? AND status = 'error' ORDER BY row LIMIT ?",
                             (job_id, MAX_LISTED_ERRORS))
        return [row["error"] for row in rows]

    def output_rows(self, job_id: str) -> list[dict]:
        rows = self.db.query("SELECT output FROM job_rows WHERE job_id = ? AND output IS NOT NULL ORDER BY row",
                             (job_id,))
        return [json.loads(row["output"]) for row in rows]

    def unfinished(self) -> list[str]:
        return [row["id"] for row in self.db.query("SELECT id FROM jobs WHERE state != 'done' ORDER BY created_at")]

    def pending(self, job_id: str, limit: int) -> list[Record]:
        rows = self.db.query("SELECT row, line, input, problem FROM job_rows WHERE job_id = ? AND output IS NULL "
                             "ORDER BY row LIMIT ?", (job_id, limit))
        return [stored_record(r["row"], r["line"], json.loads(r["input"]), r["problem"]) for r in rows]

    def commit(self, job_id: str, plan: RowPlan, rows: list[dict]) -> int:
        """Store one graded batch in one transaction; a row that already has output keeps it."""
        status, error, now = plan.layout.name("status"), plan.layout.name("error"), time.time()
        with self.db.transaction() as conn:
            return sum(conn.execute("UPDATE job_rows SET output = ?, status = ?, error = ?, graded_at = ? "
                                    "WHERE job_id = ? AND row = ? AND output IS NULL",
                                    (json.dumps(row, ensure_ascii=False, default=str), row[status],
                                     row[error] or None, now, job_id, row[ROW_COLUMN])).rowcount
                       for row in rows)

    def mark_running(self, job_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?) WHERE id = ?",
                         (time.time(), job_id))

    def finish(self, job_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE jobs SET state = 'done', started_at = COALESCE(started_at, ?), finished_at = ? "
                         "WHERE id = ?", (time.time(), time.time(), job_id))

    def render(self, job, fmt: str, folder: Path) -> Path:
        """The job's output rows so far as a file written exactly like `grader batch` writes it."""
        plan = RowPlan.model_validate_json(job["plan"])
        path = folder / f"{job['id']}.{fmt}"
        output = OutputFile(path, fmt, plan.layout.header(),  # type: ignore[arg-type]
                            joined=frozenset(plan.layout.name(c) for c in LIST_COLUMNS))
        try:
            output.resume(restart=True)
            output.write(self.output_rows(job["id"]))
        finally:
            output.close()
        return path


class TenantView:
    """The grader as one tenant's job sees it: the built-in bank plus the tenant's ``BANK:ID`` questions.

    ``grade_batch`` asks its grader for ``bank`` (``in`` and ``get``) and ``grade_many``; tenant ids are
    swapped for their rubrics on the way in. Rubrics are read when a batch is graded, so an edit made
    while a job runs applies to the rows after it.
    """

    def __init__(self, grader: Grader, tenant: str, questions: dict[str, str | Rubric]):
        self.grader, self.tenant, self.questions = grader, tenant, questions
        self.bank = self

    def __contains__(self, question_id: object) -> bool:
        return question_id in self.questions or question_id in self.grader.bank

    def get(self, question_id: str) -> Rubric:
        return self.grader.bank.get(question_id)  # raises UnknownQuestion with the closest built-in ids

    def grade_many(self, items: list[tuple]) -> list[GradeResult]:
        # jobs have no judge option: a judged batch would hold the one grading thread for the judge's latency
        return self.grader.grade_many([(self.questions.get(q, q) if isinstance(q, str) else q, answer, lang)
                                       for q, answer, lang in items], judge=False,
                                      exemplar_keys=[tenant_key(self.tenant, q) if isinstance(q, str) else None
                                                     for q, _, _ in items])


class JobRunner:
    """Grades unfinished jobs, oldest first, one batch at a time; resumes whatever a restart left."""

    def __init__(self, store: JobStore, service: GradingService, batch_size: int,
                 on_rows: Callable[[int, int], None] | None = None):
        self.store, self.service, self.batch_size, self.on_rows = store, service, batch_size, on_rows
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="job-runner")

    def notify(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Let the batch in progress commit, then stop (nothing is lost: the rest waits in the database)."""
        self._stopping = True
        self._wake.set()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            jobs: list[str] = []
            try:  # a database error here must not end the runner: it retries like a failed batch
                jobs = await asyncio.to_thread(self.store.unfinished)
                if not jobs:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=5)
                    except TimeoutError:
                        pass
                    continue
                await self._step(jobs[0], give_up=failures >= MAX_BATCH_FAILURES)
                failures = 0
            except Exception:
                failures += 1
                log.exception("job %s: grading a batch failed (%d time(s)); retrying in 5 s",
                              jobs[0] if jobs else "queue", failures)
                await asyncio.sleep(5)

    async def _step(self, job_id: str, give_up: bool = False) -> None:
        """Grade and commit the next batch. With ``give_up`` (the batch failed again and again for a reason
        that is no row's fault), its rows become error rows, so that one bad batch cannot stall the queue."""
        # SQLite work (fsynced commits included) runs off the event loop, which keeps answering requests
        db = self.store.db
        job = (await asyncio.to_thread(db.query, "SELECT plan, tenant FROM jobs WHERE id = ?", (job_id,)))[0]
        plan = RowPlan.model_validate_json(job["plan"])
        records = await asyncio.to_thread(self.store.pending, job_id, self.batch_size)
        if not records:
            await asyncio.to_thread(self.store.finish, job_id)
            return
        await asyncio.to_thread(self.store.mark_running, job_id)
        if give_up:
            reason = f"internal error: grading failed {MAX_BATCH_FAILURES} times (see the server log)"
            rows = [output_row(r, plan.layout, None, f"line {r.line}: {reason}") for r in records]
        else:
            grader = self.service.grader
            tenant_rubrics = await asyncio.to_thread(banks.list_rubrics, db, job["tenant"])
            own = {f"{bank}:{rubric.id}": banks.gradable(grader.bank, bank, rubric) for bank, rubric in tenant_rubrics}
            rows = await self.service.run(grade_batch, TenantView(grader, job["tenant"], own), records, plan)
        stored = await asyncio.to_thread(self.store.commit, job_id, plan, rows)
        if self.on_rows:
            errors = sum(1 for row in rows if row[plan.layout.name("status")] == "error")
            self.on_rows(stored, errors)
