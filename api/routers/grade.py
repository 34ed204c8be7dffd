"""Grading: one answer (micro-batched with concurrent requests) or a small synchronous batch."""

from __future__ import annotations

from fastapi import APIRouter

from api import banks
from api.auth import ApiKey
from api.db import Database
from api.deps import DbDep, GradeKey, MetricsDep, ServiceDep, SettingsDep
from api.errors import ApiError
from api.metrics import Metrics
from api.schemas import BatchGradeRequest, BatchGradeResponse, GradeRequest
from grader.config import Settings
from grader.exemplars import tenant_key
from grader.grader import Grader
from grader.schema import GradeResult

router = APIRouter(prefix="/v1/grade", tags=["grading"])


def _field_error(field: str, message: str, kind: str = "value_error") -> ApiError:
    return ApiError(422, "the request is not valid; see details for each field",
                    code="validation_error", details=[{"field": field, "message": message, "type": kind}])


def grading_item(request: GradeRequest, key: ApiKey, db: Database, grader: Grader, settings: Settings,
                 field: str = "body") -> tuple:
    """(question, answer, lang, exemplar key) for the grading service, after the limits and the tenant check.

    Exemplars are the caller tenant's, of questions named by id (an inline question has none)."""
    if len(request.answer) > settings.max_answer_chars:
        raise _field_error(f"{field}.answer", f"the answer has {len(request.answer)} characters; at most "
                           f"{settings.max_answer_chars} are accepted", "string_too_long")
    if request.question is not None:
        if request.question.id in grader.bank:
            raise _field_error(f"{field}.question.id", f"{request.question.id!r} is a bank question's id; give the "
                               "inline question another id, or grade against the bank with question_id")
        return request.question, request.answer, request.lang, None
    question_id = request.question_id or ""
    bank, rubric = banks.resolve(db, grader.bank, key.tenant, question_id)
    return banks.gradable(grader.bank, bank, rubric), request.answer, request.lang, tenant_key(key.tenant, question_id)


def finish(result: GradeResult, request: GradeRequest, metrics: Metrics, source: str) -> GradeResult:
    """Count the grade and any judge fall-back. The judge runs when the request asks for it and the server
    has one configured (GRADER_JUDGE_*); on a server without one the result says ``judge.status == "off"``."""
    metrics.grades.labels(source).inc()
    status = result.judge.status
    if request.judge and status == "off":
        metrics.judge_fallbacks.labels("not_configured").inc()
    elif status not in ("off", "ok"):
        metrics.judge_fallbacks.labels(status).inc()
    return result


@router.post("", response_model=GradeResult)
async def grade(body: GradeRequest, key: GradeKey, db: DbDep, service: ServiceDep, settings: SettingsDep,
                metrics: MetricsDep) -> GradeResult:
    """Grade one answer against a bank question (``question_id``) or an inline question."""
    item = grading_item(body, key, db, service.grader, settings)
    return finish(await service.grade(item, body.judge), body, metrics, "grade")


@router.post("/batch", response_model=BatchGradeResponse)
async def grade_batch(body: BatchGradeRequest, key: GradeKey, db: DbDep, service: ServiceDep, settings: SettingsDep,
                      metrics: MetricsDep) -> BatchGradeResponse:
    """Grade up to GRADER_API_MAX_BATCH answers in one call (use /v1/jobs for more)."""
    if len(body.items) > settings.api_max_batch:
        raise ApiError(413, f"{len(body.items)} answers in one batch; at most {settings.api_max_batch} (submit a job "
                       "with POST /v1/jobs for more)", details={"max_items": settings.api_max_batch,
                                                                "items": len(body.items)})
    items = [grading_item(request, key, db, service.grader, settings, f"body.items.{i}")
             for i, request in enumerate(body.items)]
    results = await service.grade_many(items, [request.judge for request in body.items])
    return BatchGradeResponse(results=[finish(r, q, metrics, "batch") for r, q in zip(results, body.items,
                                                                                        strict=True)])
