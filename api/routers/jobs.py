"""Async jobs for large batches: submit a CSV/JSONL file or a JSON list, poll, fetch the results."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.deps import GradeKey, JobsDep
from api.errors import ApiError, field_errors
from api.jobs import read_json_rows, read_upload
from api.schemas import JobCounts, JobOut, JobRows
from grader.batch import Columns

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
_UPLOAD_HELP = ("Send either JSON ({\"rows\": [...]}) or a multipart form with a `file` field (CSV or JSONL, "
                "with the columns of `grader batch`)")


def job_out(store, job) -> JobOut:
    counts = store.counts(job["id"])
    total = job["total"]
    return JobOut(id=job["id"], state=job["state"], input_format=job["input_format"],
                  counts=JobCounts(total=total, **counts), progress=round(counts["done"] / total, 4) if total else 1.0,
                  errors=store.row_errors(job["id"]), created_at=job["created_at"], started_at=job["started_at"],
                  finished_at=job["finished_at"])


@router.post("", response_model=JobOut, status_code=202, openapi_extra={"requestBody": {"content": {
    "application/json": {"schema": JobRows.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"},
        "column": {"type": "array", "items": {"type": "string"}, "description": "ROLE=NAME, as `--column`"},
        "prefix": {"type": "string"}, "full": {"type": "boolean"}}}}}}})
async def create_job(request: Request, key: GradeKey, store: JobsDep) -> JobOut:
    """Queue a batch: the rows are stored at once, graded in the background, and survive a restart."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = JobRows.model_validate_json(await request.body())
        except ValidationError as exc:
            raise ApiError(422, "the request is not valid; see details for each field",
                           details=field_errors(exc.errors())) from None
        records, columns = read_json_rows(body.rows)
        job_id = await run_in_threadpool(
            store.create, tenant=key.tenant, key_id=key.id, records=records, columns=columns, input_format="JSON rows",
            source="rows", pairs=body.columns, full=body.full)
    elif kind == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(422, "the form has no file", details=[{"field": "body.file", "message": "field required",
                                                                 "type": "missing"}])
        data = await upload.read()
        records, columns, _, described = await run_in_threadpool(read_upload, data, upload.filename or "upload")
        pairs = Columns.from_pairs([str(v) for v in form.getlist("column")]).model_dump(exclude_unset=True)
        name = upload.filename or "upload"
        job_id = await run_in_threadpool(
            store.create, tenant=key.tenant, key_id=key.id, records=records, columns=columns, input_format=described,
            source=name, pairs=pairs, prefix=str(form.get("prefix") or ""),
            full=str(form.get("full") or "").lower() in ("1", "true", "yes"))
    else:
        raise ApiError(415, f"unsupported content type {kind or '(none)'!r}. {_UPLOAD_HELP}")
    if request.app.state.runner is not None:
        request.app.state.runner.notify()
    return job_out(store, store.get(job_id, key.tenant))


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, key: GradeKey, store: JobsDep) -> JobOut:
    """State, progress, counts and the first row errors."""
    return job_out(store, store.get(job_id, key.tenant))


@router.get("/{job_id}/results", response_class=FileResponse,
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
def get_results(job_id: str, key: GradeKey, store: JobsDep,
                format: Annotated[Literal["csv", "jsonl"], Query(description="Output format.")] = "csv",
                ) -> FileResponse:
    """The rows graded so far (all of them once the job is done), as `grader batch` writes them."""
    job = store.get(job_id, key.tenant)
    folder = Path(tempfile.mkdtemp(prefix="grader-results-"))
    path = store.render(job, format, folder)

    def cleanup() -> None:
        path.unlink(missing_ok=True)
        folder.rmdir()

    return FileResponse(path, media_type="text/csv" if format == "csv" else "application/x-ndjson",
                        filename=f"{job_id}.{format}", headers={"X-Job-State": job["state"]},
                        background=BackgroundTask(cleanup))
