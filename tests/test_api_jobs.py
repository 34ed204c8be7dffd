"""Job storage logic on a real SQLite file, without the model: the exactly-once guard and the give-up path.

The end-to-end behaviour (a real server killed mid-job) is in tests/test_api.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from api.db import Database
from api.jobs import JobRunner, JobStore, read_json_rows, read_upload
from grader.batch import RowPlan, output_row
from grader.errors import InputError


@pytest.fixture
def store(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'api.sqlite'}")
    yield JobStore(db)
    db.close()


def _job(store: JobStore, n: int = 3) -> tuple[str, RowPlan]:
    records, columns = read_json_rows([{"question_id": "attention-cheap", "answer": f"answer {i}"} for i in range(n)])
    job_id = store.create(tenant="acme", key_id="k", records=records, columns=columns, input_format="JSON rows",
                          source="rows", pairs={})
    plan = RowPlan.model_validate_json(store.get(job_id, "acme")["plan"])
    return job_id, plan


def test_a_row_is_committed_once(store):
    job_id, plan = _job(store)
    records = store.pending(job_id, 2)
    assert [r.row for r in records] == [1, 2]
    first = [output_row(r, plan.layout, None, "first") for r in records]
    assert store.commit(job_id, plan, first) == 2
    again = [output_row(r, plan.layout, None, "second") for r in records]
    assert store.commit(job_id, plan, again) == 0  # a batch graded twice (after a crash) keeps its first output
    assert [r.row for r in store.pending(job_id, 10)] == [3]
    assert [row["error"] for row in store.output_rows(job_id)] == ["first", "first"]
    assert store.counts(job_id) == {"done": 2, "errors": 2, "graded": 0}


class _BrokenService:
    grader = None

    async def run(self, fn, *args):
        raise RuntimeError("boom")


def test_a_batch_that_keeps_failing_becomes_error_rows(store):
    job_id, _ = _job(store, n=2)
    runner = JobRunner(store, _BrokenService(), batch_size=4)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        asyncio.run(runner._step(job_id))
    assert store.counts(job_id)["done"] == 0  # nothing committed: the rows wait for the next try
    asyncio.run(runner._step(job_id, give_up=True))
    assert store.counts(job_id) == {"done": 2, "errors": 2, "graded": 0}
    assert all("grading failed 3 times" in e for e in store.row_errors(job_id))
    asyncio.run(runner._step(job_id))
    assert store.get(job_id, "acme")["state"] == "done"


def test_jobs_belong_to_their_tenant(store):
    job_id, _ = _job(store)
    with pytest.raises(Exception, match="no job"):
        store.get(job_id, "globex")


def test_uploads_are_read_with_the_batch_reader():
    records, columns, fmt, described = read_upload(
        b"question_id,answer\nattention-cheap,\"multi\nline\"\nx,y\n", "answers.csv")
    assert fmt == "csv" and columns == ["question_id", "answer"] and described.startswith("CSV")
    assert [(r.row, r.values["answer"]) for r in records] == [(1, "multi\nline"), (2, "y")]
    rows = [json.dumps({"question_id": "a", "answer": "b"}), json.dumps({"answer": "c", "lang": "en"})]
    records, columns, fmt, _ = read_upload("\n".join(rows).encode(), "a.jsonl")
    assert fmt == "jsonl" and columns == ["question_id", "answer", "lang"]  # every key of every row
    with pytest.raises(InputError, match="no rows"):
        read_upload(b"question_id,answer\n", "empty.csv")
