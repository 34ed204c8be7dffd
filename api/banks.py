"""Tenant question banks and graded exemplars, kept in the API database.

A tenant's question is addressed as ``BANK:ID`` (a colon never occurs in a bank id, so the two kinds
of id cannot collide). Only keys of the same tenant can see, grade or change it; to everyone else it
does not exist (404, never 403, so ids do not leak across tenants).
"""

from __future__ import annotations

import re
import time

from api.db import Database
from api.errors import ApiError
from grader.bank import Bank
from grader.errors import UnknownQuestion
from grader.schema import Rubric

BANK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
BUILTIN = "builtin"


def check_bank(bank: str) -> str:
    if not BANK.match(bank) or bank == BUILTIN:
        raise ApiError(422, f"bank {bank!r} must be lower-case letters, digits, '-' or '_' (and not {BUILTIN!r})",
                       details=[{"field": "path.bank", "message": "invalid bank name", "type": "value_error"}])
    return bank


def split_id(question_id: str) -> tuple[str, str] | None:
    """(bank, id) of a tenant question id ``BANK:ID``; None for a built-in id."""
    bank, sep, rest = question_id.partition(":")
    return (bank, rest) if sep else None


def get_rubric(db: Database, tenant: str, bank: str, question_id: str) -> Rubric | None:
    rows = db.query("SELECT rubric FROM tenant_questions WHERE tenant = ? AND bank = ? AND id = ?",
                    (tenant, bank, question_id))
    return Rubric.model_validate_json(rows[0]["rubric"]) if rows else None


def list_rubrics(db: Database, tenant: str) -> list[tuple[str, Rubric]]:
    rows = db.query("SELECT bank, rubric FROM tenant_questions WHERE tenant = ? ORDER BY bank, id", (tenant,))
    return [(row["bank"], Rubric.model_validate_json(row["rubric"])) for row in rows]


def create_rubric(db: Database, tenant: str, bank: str, rubric: Rubric) -> None:
    now = time.time()
    with db.transaction() as conn:
        exists = conn.execute("SELECT 1 FROM tenant_questions WHERE tenant = ? AND bank = ? AND id = ?",
                              (tenant, bank, rubric.id)).fetchone()
        if exists:
            raise ApiError(409, f"question {bank}:{rubric.id} already exists; PUT "
                           f"/v1/banks/{bank}/questions/{rubric.id} replaces it")
        conn.execute("INSERT INTO tenant_questions VALUES (?, ?, ?, ?, ?, ?)",
                     (tenant, bank, rubric.id, rubric.model_dump_json(), now, now))


def replace_rubric(db: Database, tenant: str, bank: str, question_id: str, rubric: Rubric) -> None:
    if rubric.id != question_id:
        raise ApiError(422, f"the rubric's id {rubric.id!r} differs from the id in the path {question_id!r}",
                       details=[{"field": "body.id", "message": "must match the path", "type": "value_error"}])
    with db.transaction() as conn:
        updated = conn.execute("UPDATE tenant_questions SET rubric = ?, updated_at = ? "
                               "WHERE tenant = ? AND bank = ? AND id = ?",
                               (rubric.model_dump_json(), time.time(), tenant, bank, question_id)).rowcount
    if not updated:
        raise ApiError(404, f"no question {bank}:{question_id} in your banks")


def delete_rubric(db: Database, tenant: str, bank: str, question_id: str) -> None:
    with db.transaction() as conn:
        deleted = conn.execute("DELETE FROM tenant_questions WHERE tenant = ? AND bank = ? AND id = ?",
                               (tenant, bank, question_id)).rowcount
    if not deleted:
        raise ApiError(404, f"no question {bank}:{question_id} in your banks")


def add_exemplar(db: Database, *, tenant: str, question_id: str, answer: str, score: float, lang: str | None,
                 key_id: str) -> tuple[int, float]:
    now = time.time()
    with db.transaction() as conn:
        cursor = conn.execute("INSERT INTO exemplars (tenant, question_id, answer, score, lang, key_id, created_at) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)", (tenant, question_id, answer, score, lang, key_id, now))
    return int(cursor.lastrowid or 0), now


def list_exemplars(db: Database, tenant: str, question_id: str) -> list[dict]:
    rows = db.query("SELECT id, answer, score, lang, created_at FROM exemplars WHERE tenant = ? AND question_id = ? "
                    "ORDER BY id", (tenant, question_id))
    return [dict(row) for row in rows]


def delete_exemplar(db: Database, tenant: str, question_id: str, exemplar_id: int) -> None:
    with db.transaction() as conn:
        deleted = conn.execute("DELETE FROM exemplars WHERE tenant = ? AND question_id = ? AND id = ?",
                               (tenant, question_id, exemplar_id)).rowcount
    if not deleted:
        raise ApiError(404, f"no exemplar {exemplar_id} of {question_id} in your tenant")


def exemplar_rows(db: Database, tenant: str, question_id: str) -> list[tuple[str, float]]:
    """(answer, score) of each stored exemplar, as the index takes them."""
    return [(row["answer"], float(row["score"])) for row in list_exemplars(db, tenant, question_id)]


def exemplar_questions(db: Database) -> list[tuple[str, str]]:
    """(tenant, question id) of every question with stored exemplars."""
    rows = db.query("SELECT DISTINCT tenant, question_id FROM exemplars ORDER BY tenant, question_id")
    return [(row["tenant"], row["question_id"]) for row in rows]


def delete_exemplars(db: Database, tenant: str, question_id: str) -> None:
    with db.transaction() as conn:
        conn.execute("DELETE FROM exemplars WHERE tenant = ? AND question_id = ?", (tenant, question_id))


def resolve(db: Database, bank: Bank, tenant: str, question_id: str) -> tuple[str, Rubric]:
    """(bank name, rubric) of a built-in id or of ``BANK:ID`` in the caller's tenant; 404 otherwise."""
    parts = split_id(question_id)
    if parts is None:
        return BUILTIN, bank.get(question_id)  # UnknownQuestion (404) names the closest ids
    rubric = get_rubric(db, tenant, *parts)
    if rubric is None:
        raise UnknownQuestion(question_id, [])
    return parts[0], rubric


def gradable(bank: Bank, bank_name: str, rubric: Rubric) -> str | Rubric:
    """What ``Grader.grade_many`` takes: a built-in id, or the tenant's rubric.

    A tenant rubric whose id is also a built-in id is graded under another id: the grader caches
    compiled questions by id, and the built-in question must stay the built-in one for everybody.
    """
    if bank_name == BUILTIN:
        return rubric.id
    if rubric.id in bank:
        return rubric.model_copy(update={"id": f"{bank_name}-{rubric.id}"})
    return rubric
