"""Graded exemplars: a platform's past human grades, searched by meaning when a new answer comes in.

One faiss inner-product index per question and embedding model (vectors are unit length, so inner
product is cosine), stored under ``<cache dir>/exemplars/<model>/`` with a JSON file beside each
index holding the grades. Answers to the same question that read alike tend to get alike grades; the
grader blends the nearest exemplars' grades with its feature model (``grader.custom_model``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from grader.errors import GraderError
from grader.schema import CustomQuestion, Rubric
from grader.scoring import model_slug
from grader.text import prepare


def question_key(rubric: Rubric, custom: bool) -> str:
    """Bank questions by id; custom questions by their text, so the same question finds its exemplars."""
    if not custom:
        return rubric.id
    text = "\0".join([rubric.question.en, *(r.en for r in rubric.references)])
    return "c-" + hashlib.sha256(text.encode()).hexdigest()[:20]


class Grades(BaseModel):
    """The grades stored beside one question's index, row for row."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="The question's text (for people browsing the folder).")
    scores: list[float] = Field(default_factory=list, description="Human scores, 0-10.")
    base: list[float] = Field(default_factory=list, description="The feature model's score when added, 0-10.")
    digests: list[str] = Field(default_factory=list, description="Answer hashes; re-adding an answer is a no-op.")


class Neighbours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    similarity: list[float]
    score: list[float]
    base: list[float]


class ExemplarStore:
    """Per-question exemplar indexes for one embedding model, persisted on every ``add``.

    Example:
        >>> store = ExemplarStore(Path("/tmp/cache"), "multilingual-e5-small", 384)  # doctest: +SKIP
        >>> store.add("q1", "What is a stack?", vectors, scores=[10, 4], base=[8, 5], answers=[...])  # doctest: +SKIP
        >>> store.search("q1", vector, k=10).score  # doctest: +SKIP
    """

    def __init__(self, cache_dir: Path, model_id: str, dim: int):
        self.folder = Path(cache_dir) / "exemplars" / model_slug(model_id)
        self.dim = dim
        self._loaded: dict[str, tuple[faiss.Index, Grades]] = {}

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.faiss", self.folder / f"{key}.json"

    def _get(self, key: str) -> tuple[faiss.Index, Grades] | None:
        if key not in self._loaded:
            index_path, grades_path = self._paths(key)
            if not index_path.is_file():
                return None
            self._loaded[key] = (faiss.read_index(str(index_path)),
                                 Grades.model_validate_json(grades_path.read_text(encoding="utf-8")))
        return self._loaded[key]

    def count(self, key: str) -> int:
        found = self._get(key)
        return found[0].ntotal if found else 0

    def add(self, key: str, question: str, vectors: np.ndarray, scores: list[float], base: list[float],
            answers: list[str]) -> int:
        """Add graded answers (scores 0-10); returns how many were new."""
        index, grades = self._get(key) or (faiss.IndexFlatIP(self.dim), Grades(question=question))
        seen = set(grades.digests)
        keep = []
        for i, answer in enumerate(answers):
            digest = hashlib.sha256(answer.strip().encode()).hexdigest()[:24]
            if digest not in seen:
                seen.add(digest)
                keep.append(i)
                grades.digests.append(digest)
                grades.scores.append(float(scores[i]))
                grades.base.append(float(base[i]))
        if keep:
            index.add(np.ascontiguousarray(vectors[keep], dtype=np.float32))
            self._save(key, index, grades)
        self._loaded[key] = (index, grades)
        return len(keep)

    def _save(self, key: str, index: faiss.Index, grades: Grades) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        index_path, grades_path = self._paths(key)
        # write then rename, so a reader never sees an index without its grades
        faiss.write_index(index, str(index_path) + ".tmp")
        grades_path.with_suffix(".tmp").write_text(grades.model_dump_json(), encoding="utf-8")
        os.replace(str(index_path) + ".tmp", index_path)
        os.replace(grades_path.with_suffix(".tmp"), grades_path)

    def all(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(vectors, scores, model scores) of every exemplar of question ``key``, or None."""
        found = self._get(key)
        if not found or not found[0].ntotal:
            return None
        index, grades = found
        return index.reconstruct_n(0, index.ntotal), np.array(grades.scores), np.array(grades.base)

    def search(self, key: str, vector: np.ndarray, k: int) -> Neighbours | None:
        """The ``k`` most similar exemplars of question ``key`` (None when it has none)."""
        found = self._get(key)
        if not found or not found[0].ntotal:
            return None
        index, grades = found
        sims, rows = index.search(np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32), min(k, index.ntotal))
        rows = [int(r) for r in rows[0] if r >= 0]
        return Neighbours(similarity=[float(s) for s in sims[0][: len(rows)]],
                          score=[grades.scores[r] for r in rows], base=[grades.base[r] for r in rows])


def add_graded(grader, items: list[tuple[CustomQuestion, str, float]]) -> dict[str, int]:
    """Store graded answers (question, answer, human score 0-10) as exemplars; new ones per question key.

    Each exemplar keeps the feature model's own score for it, which the blend compares with its grade.
    """
    from grader.answer_features import feature_vector

    if grader.exemplars is None:
        raise GraderError("this grader has no exemplar store (build it with Grader.from_settings)")
    if grader.custom_model is None:  # the blend corrects the model's own score: without it there is nothing to learn
        raise GraderError(f"no custom-question model for {grader.embedder.model_id}; fit one with "
                          "python -m eval.fit_custom before adding exemplars")
    raws = grader.features_many([(q, a) for q, a, _ in items])
    groups: dict[str, list[int]] = {}
    for i, (question, _, _) in enumerate(items):
        groups.setdefault(question.model_dump_json(), []).append(i)
    added: dict[str, int] = {}
    for rows in groups.values():
        rows = [i for i in rows if raws[i] is not None]
        if not rows:
            continue
        compiled = grader.compiled(items[rows[0]][0])
        texts = [prepare(items[i][1], grader.max_answer_chars).text for i in rows]
        base = []
        for i, text in zip(rows, texts, strict=True):
            named = feature_vector(raws[i], compiled, text, grader.calibration)
            base.append(10 * grader.custom_model.predict_one(named))
        key = question_key(compiled.rubric, custom=True)
        # two ids with the same question text and references share one index
        added[key] = added.get(key, 0) + grader.exemplars.add(
            key, compiled.rubric.question.en, grader.cache.encode(texts), [items[i][2] for i in rows], base, texts)
    return added
