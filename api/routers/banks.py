"""A tenant's own question banks: rubrics in the bank schema, visible only to that tenant's keys."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response

from api import banks, exemplars
from api.deps import AuthorKey, DbDep, GraderDep, ServiceDep
from api.errors import ApiError
from api.routers.questions import question_out
from api.schemas import QuestionOut
from grader.errors import GraderError
from grader.exemplars import tenant_key
from grader.schema import Rubric

log = logging.getLogger("api")

router = APIRouter(prefix="/v1/banks", tags=["banks"])


@router.post("/{bank}/questions", response_model=QuestionOut, status_code=201)
def create_question(bank: str, rubric: Rubric, key: AuthorKey, db: DbDep, grader: GraderDep) -> QuestionOut:
    """Add a question (the rubric schema of `rubrics/*.yaml`); grade against it as `BANK:ID`."""
    banks.check_bank(bank)
    if rubric.id in grader.bank:
        raise ApiError(409, f"{rubric.id!r} is a built-in question's id; choose another id")
    banks.create_rubric(db, key.tenant, bank, rubric)
    return question_out(bank, rubric, key)


@router.put("/{bank}/questions/{question_id}", response_model=QuestionOut)
async def replace_question(bank: str, question_id: str, rubric: Rubric, key: AuthorKey, db: DbDep,
                           service: ServiceDep) -> QuestionOut:
    """Replace a question of your bank (the body's id must match the path); its graded exemplars are
    re-indexed against the new rubric."""
    banks.check_bank(bank)
    await asyncio.to_thread(banks.replace_rubric, db, key.tenant, bank, question_id, rubric)
    try:
        await service.run(exemplars.rebuild, service.grader, db, key.tenant, f"{bank}:{question_id}")
    except GraderError as exc:  # no exemplar blend for this model: they stay stored, as they were
        log.warning("exemplars of %s:%s not re-indexed: %s", bank, question_id, exc)
    return question_out(bank, rubric, key)


@router.delete("/{bank}/questions/{question_id}", status_code=204)
async def delete_question(bank: str, question_id: str, key: AuthorKey, db: DbDep, service: ServiceDep) -> Response:
    """Delete a question of your bank, with its graded exemplars."""
    banks.check_bank(bank)
    await asyncio.to_thread(banks.delete_rubric, db, key.tenant, bank, question_id)
    qualified = f"{bank}:{question_id}"
    await asyncio.to_thread(banks.delete_exemplars, db, key.tenant, qualified)
    await service.run(service.grader.exemplars.drop, tenant_key(key.tenant, qualified))
    return Response(status_code=204)
