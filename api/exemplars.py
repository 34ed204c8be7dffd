"""Graded exemplars over the API: SQLite keeps them (the record), the grader's faiss store indexes them.

Each tenant's exemplars live under their own keys (``grader.exemplars.tenant_key``), so one platform's
grades never move another's scores. The index is derived data: ``sync`` rebuilds whatever the database
holds and the index lacks (a wiped cache, a crash between the two writes, a new calibration or bank
release), and a rubric that changes gets its index rebuilt, because the scores its exemplars keep
beside their grades were the old rubric's.
"""

from __future__ import annotations

import logging

from api import banks
from api.db import Database
from grader.errors import GraderError, UnknownQuestion
from grader.exemplars import add_graded, tenant_key

log = logging.getLogger("api")


def index(grader, db: Database, tenant: str, question_id: str, rows: list[tuple[str, float]]) -> int:
    """Index graded answers (answer, score 0-10) of a tenant's question; returns its indexed count.

    Raises ``GraderError`` when this model has no exemplar blend (they stay stored, unused)."""
    return _add(grader, tenant_key(tenant, question_id), _gradable(grader, db, tenant, question_id), rows)


def _gradable(grader, db: Database, tenant: str, question_id: str):
    return banks.gradable(grader.bank, *banks.resolve(db, grader.bank, tenant, question_id))


def _add(grader, key: str, question, rows: list[tuple[str, float]]) -> int:
    if rows:
        add_graded(grader, [(question, answer, score) for answer, score in rows], [key] * len(rows))
    return grader.exemplars.count(key)


def rebuild(grader, db: Database, tenant: str, question_id: str) -> int:
    """Re-index a question from the database (after its rubric changed)."""
    grader.exemplars.drop(tenant_key(tenant, question_id))
    return index(grader, db, tenant, question_id, banks.exemplar_rows(db, tenant, question_id))


def sync(grader, db: Database) -> int:
    """Index every stored exemplar the index lacks, and re-index those scored under an earlier calibration
    or rubric; returns how many questions were (re-)indexed."""
    done = 0
    for tenant, question_id in banks.exemplar_questions(db):
        rows = banks.exemplar_rows(db, tenant, question_id)
        key = tenant_key(tenant, question_id)
        try:
            question = _gradable(grader, db, tenant, question_id)
            if grader.exemplars.count(key) >= len({a.strip() for a, _ in rows}) and \
                    grader.exemplars.basis(key) == grader.scoring_basis(question):
                continue
            _add(grader, key, question, rows)  # a stale basis is dropped by the store first
            done += 1
        except UnknownQuestion as exc:  # a built-in question gone from the bank since
            log.warning("exemplars of %s (tenant %s) not indexed: %s", question_id, tenant, exc)
        except GraderError as exc:  # no blend for this model: the same for every question
            log.warning("stored exemplars not indexed: %s", exc)
            break
    return done
