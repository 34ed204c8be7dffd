"""Questions: the built-in bank and the caller's tenant banks. Answers only for `author` keys."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api import banks, exemplars
from api.auth import ApiKey
from api.deps import AuthorKey, DbDep, GradeKey, GraderDep, ServiceDep
from api.errors import ApiError
from api.schemas import ExemplarIn, ExemplarList, ExemplarOut, ExemplarRecord, QuestionOut, QuestionPage
from grader.errors import GraderError
from grader.exemplars import tenant_key
from grader.schema import Lang, Rubric, Topic
from grader.text import prepare

log = logging.getLogger("api")

router = APIRouter(prefix="/v1/questions", tags=["questions"])


def question_out(bank: str, rubric: Rubric, key: ApiKey) -> QuestionOut:
    qid = rubric.id if bank == banks.BUILTIN else f"{bank}:{rubric.id}"
    return QuestionOut(id=qid, bank=bank, topic=rubric.topic, difficulty=rubric.difficulty, question=rubric.question,
                       key_point_count=len(rubric.key_points), rubric=rubric if key.allows("author") else None)


@router.get("", response_model=QuestionPage)
def list_questions(
    key: GradeKey, db: DbDep, grader: GraderDep,
    topic: Topic | None = None,
    difficulty: Annotated[int | None, Query(ge=1, le=3)] = None,
    language: Annotated[Lang | None, Query(description="Every question has its text in zh and en; with a language, "
                                                       "only questions whose text in it is non-empty.")] = None,
    bank: Annotated[str | None, Query(description="`builtin` or one of your banks; default: all.")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> QuestionPage:
    """The questions you can grade against, filtered and paginated."""
    everything = [(banks.BUILTIN, r) for r in grader.bank] + banks.list_rubrics(db, key.tenant)
    chosen = [(b, r) for b, r in everything
              if (bank is None or b == bank) and (topic is None or r.topic == topic)
              and (difficulty is None or r.difficulty == difficulty)
              and (language is None or r.question.get(language).strip())]
    page = chosen[offset: offset + limit]
    return QuestionPage(data=[question_out(b, r, key) for b, r in page], count=len(chosen), offset=offset, limit=limit)


@router.get("/{question_id}", response_model=QuestionOut)
def get_question(question_id: str, key: GradeKey, db: DbDep, grader: GraderDep) -> QuestionOut:
    """One question; its rubric (reference answers, key points, misconceptions) only for `author` keys."""
    return question_out(*banks.resolve(db, grader.bank, key.tenant, question_id), key)


@router.post("/{question_id}/exemplars", response_model=ExemplarOut, status_code=201)
async def add_exemplar(question_id: str, body: ExemplarIn, key: AuthorKey, db: DbDep,
                       service: ServiceDep) -> ExemplarOut:
    """Store a human-graded answer for a question; your later grades of it are informed by its nearest
    graded answers (your tenant's only). A result says how in its `exemplars` field."""
    grader = service.grader
    banks.resolve(db, grader.bank, key.tenant, question_id)
    if not prepare(body.answer, grader.max_answer_chars).text:
        raise ApiError(422, "the answer holds nothing to grade once markup and control characters are removed",
                       details=[{"field": "body.answer", "message": "nothing to grade", "type": "value_error"}])
    exemplar_id, created = await asyncio.to_thread(
        banks.add_exemplar, db, tenant=key.tenant, question_id=question_id, answer=body.answer, score=body.score,
        lang=body.lang, key_id=key.id)
    detail = None
    try:  # on the grading thread: indexing grades the answer to learn the grader's own score for it
        count = await service.run(exemplars.index, grader, db, key.tenant, question_id, [(body.answer, body.score)])
    except GraderError as exc:
        detail, count = f"stored, not used: {exc}", 0
    return ExemplarOut(id=exemplar_id, question_id=question_id, score=body.score, lang=body.lang, created_at=created,
                       used_in_scoring=detail is None, exemplars=count, detail=detail)


@router.get("/{question_id}/exemplars", response_model=ExemplarList)
def list_exemplars(question_id: str, key: AuthorKey, db: DbDep, grader: GraderDep) -> ExemplarList:
    """Your tenant's graded answers of a question (oldest first)."""
    banks.resolve(db, grader.bank, key.tenant, question_id)
    rows = banks.list_exemplars(db, key.tenant, question_id)
    return ExemplarList(question_id=question_id, data=[ExemplarRecord(**row) for row in rows],
                        indexed=grader.exemplars.count(tenant_key(key.tenant, question_id)) if grader.exemplars else 0)


@router.delete("/{question_id}/exemplars/{exemplar_id}", status_code=204)
async def delete_exemplar(question_id: str, exemplar_id: int, key: AuthorKey, db: DbDep,
                          service: ServiceDep) -> Response:
    """Delete one graded answer (a grade entered by mistake); the question's index is rebuilt without it."""
    grader = service.grader
    banks.resolve(db, grader.bank, key.tenant, question_id)
    await asyncio.to_thread(banks.delete_exemplar, db, key.tenant, question_id, exemplar_id)
    try:
        await service.run(exemplars.rebuild, grader, db, key.tenant, question_id)
    except GraderError as exc:  # no exemplar blend for this model: nothing was indexed to rebuild
        log.warning("exemplars of %s not re-indexed: %s", question_id, exc)
    return Response(status_code=204)
