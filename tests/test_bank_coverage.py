"""The bank against the seed catalog: every question has a rubric, every catalogued error is caught."""

import pytest

from eval.catalog import CATALOG, catalog_entries

pytestmark = pytest.mark.skipif(not CATALOG.exists(), reason="needs ../shared/seeds/CATALOG.md beside the clone")


def catalog_ids() -> set[str]:
    text = CATALOG.read_text(encoding="utf-8")
    section = text[text.index("## 2. Master list"):text.index("## 3. Topic grouping")]
    import re

    return set(re.findall(r"^\| \d+ \| `([a-z0-9-]+)`", section, re.M))


def test_one_rubric_per_catalog_question(bank):
    ids = catalog_ids()
    assert len(ids) == 131
    assert {r.id for r in bank} == ids


def test_every_catalogued_error_is_a_sourced_misconception_on_its_question(bank):
    """Each §4.1 entry appears as a misconception source on the right question, or, where the expert
    review found the seed claim defensible, the rubric's notes explain why it is not flagged."""
    missing = []
    for entry in catalog_entries():
        rubric = bank.get(entry.question_id)
        sources = {(s.seed, s.question) for m in rubric.misconceptions for s in m.sources}
        if (entry.seed, entry.question) in sources:
            continue
        if entry.id in (rubric.notes or ""):
            continue
        missing.append(f"{entry.id} ({entry.seed} Q{entry.question}, {entry.question_id})")
    assert not missing, missing


def test_false_premise_questions_reward_challenging_them(bank):
    for qid in ("naive-bayes-vs-bayesian", "bayesian-ideal", "attention-solves-all", "nb-generative-process"):
        rubric = bank.get(qid)
        assert rubric.premise_false and rubric.notes, qid
