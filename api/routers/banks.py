"""A tenant's own question banks: rubrics in the bank schema, visible only to that tenant's keys."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api import banks
from api.deps import AuthorKey, DbDep, GraderDep
from api.errors import ApiError
from api.routers.questions import question_out
from api.schemas import QuestionOut
from grader.schema import Rubric

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
def replace_question(bank: str, question_id: str, rubric: Rubric, key: AuthorKey, db: DbDep) -> QuestionOut:
    """Replace a question of your bank (the body's id must match the path)."""
    banks.check_bank(bank)
    banks.replace_rubric(db, key.tenant, bank, question_id, rubric)
    return question_out(bank, rubric, key)


@router.delete("/{bank}/questions/{question_id}", status_code=204)
def delete_question(bank: str, question_id: str, key: AuthorKey, db: DbDep) -> Response:
    banks.check_bank(bank)
    banks.delete_rubric(db, key.tenant, bank, question_id)
    return Response(status_code=204)
