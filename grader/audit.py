"""``grader audit``: grade the answers inside reference documents against the bank.

A platform importing interview material (such as the seed articles) finds out which answers teach
errors. Each numbered item of a document is matched to a bank question by embedding its first
sentence; the text after it is graded as that question's answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from grader.grader import Grader
from grader.schema import GradeResult
from grader.similarity import cos_matrix
from grader.sources import clean_document, read_document, split_items

MIN_ANSWER_CHARS = 5
_ANSWER_PREFIX = re.compile(r"^\s*(?:答案|回答|答|解答|参考答案)\s*[:：]\s*")


class AuditItem(BaseModel):
    source: str
    number: int = Field(description="The item's number in the document.")
    question_id: str
    match: float = Field(description="Similarity of the item's question to the bank question (anchor scale).")
    question_text: str
    status: Literal["graded", "no_answer"]
    answer_chars: int
    result: GradeResult | None = None


class AuditSummary(BaseModel):
    files: int
    questions_found: int
    answers_graded: int
    answers_with_errors: int
    errors_flagged: int
    mean_score: float | None


class AuditReport(BaseModel):
    items: list[AuditItem]
    summary: AuditSummary


def audit(grader: Grader, paths: list[Path], min_match: float = 0.75) -> AuditReport:
    """Find the bank's questions in each document and grade the answers found under them."""
    bank_ids = [r.id for r in grader.bank]
    question_rows = [(i, grader.compiled(qid).questions.vectors) for i, qid in enumerate(bank_ids)]
    owners = np.concatenate([[i] * len(v) for i, v in question_rows])
    question_matrix = np.vstack([v for _, v in question_rows])
    found: list[AuditItem] = []
    pending: list[tuple[AuditItem, str]] = []
    for path in paths:
        items = split_items(clean_document(read_document(path)))
        heads = [item.head or item.body[:80] for item in items]
        if not heads:
            continue
        sims = cos_matrix(grader.embedder.encode(heads), question_matrix)
        best: dict[str, tuple[AuditItem, str]] = {}
        for item, row in zip(items, sims, strict=True):
            per_question = np.full(len(bank_ids), -1.0)
            np.maximum.at(per_question, owners, row)
            index = int(per_question.argmax())
            match = float(grader.calibration.scale(per_question[index], "zh"))
            if match < min_match:
                continue
            answer = _ANSWER_PREFIX.sub("", item.body).strip()
            entry = AuditItem(
                source=str(path), number=item.number, question_id=bank_ids[index], match=round(match, 3),
                question_text=item.head[:200], status="graded" if len(answer) >= MIN_ANSWER_CHARS else "no_answer",
                answer_chars=len(answer),
            )
            key = f"{item.number}:{entry.question_id}"
            # A question listed twice (a contents list, then the answers) keeps its longest answer.
            if key not in best or len(answer) > best[key][0].answer_chars:
                best[key] = (entry, answer)
        for entry, answer in sorted(best.values(), key=lambda pair: pair[0].number):
            (pending if entry.status == "graded" else found).append((entry, answer) if entry.status == "graded" else entry)
    # Reference material is checked for recall: flag at the calibration's audit operating point.
    strict = grader.calibration
    grader.calibration = strict.model_copy(update={"misconception_flag": strict.misconception_audit_flag})
    try:
        results = grader.grade_many([(entry.question_id, answer, None) for entry, answer in pending])
    finally:
        grader.calibration = strict
    found += [entry.model_copy(update={"result": result}) for (entry, _), result in zip(pending, results, strict=True)]
    found.sort(key=lambda e: (e.source, e.number))
    graded = [e.result for e in found if e.result is not None]
    summary = AuditSummary(
        files=len(paths), questions_found=len(found), answers_graded=len(graded),
        answers_with_errors=sum(1 for r in graded if r.errors), errors_flagged=sum(len(r.errors) for r in graded),
        mean_score=round(float(np.mean([r.score for r in graded])), 2) if graded else None,
    )
    return AuditReport(items=found, summary=summary)
