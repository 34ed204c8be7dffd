"""Graded exemplars: a platform's past human grades, searched by meaning when a new answer comes in.

One faiss inner-product index per question and embedding model (vectors are unit length, so inner
product is cosine), stored under ``<cache dir>/exemplars/<model>/`` with a JSON file beside each
index holding the grades, and a file of the answers' token vectors (half precision, about 50 kB an
answer of ADS's length), read only when the question's ridge is fitted. Answers to the same question
that read alike tend to get alike grades; the grader blends the nearest exemplars' grades with its own
score (``grader.custom_model``). The CLI keeps one store per model; the API keeps each tenant's exemplars
apart (``tenant_key``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
from pathlib import Path

import faiss
import numpy as np
from cachetools import LRUCache
from pydantic import BaseModel, ConfigDict, Field

from grader.answer_views import AnswerViews, ExemplarRidge
from grader.errors import GraderError
from grader.schema import CustomQuestion, Rubric
from grader.scoring import model_slug
from grader.text import prepare

log = logging.getLogger(__name__)


def question_key(rubric: Rubric, custom: bool) -> str:
    """Bank questions by id; custom questions by their text, so the same question finds its exemplars."""
    if not custom:
        return rubric.id
    text = "\0".join([rubric.question.en, *(r.en for r in rubric.references)])
    return "c-" + hashlib.sha256(text.encode()).hexdigest()[:20]


_SAFE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*(:[a-z0-9][a-z0-9-]*)?$")


def tenant_key(tenant: str, question_id: str) -> str:
    """A tenant's exemplars of one question (a built-in id or ``BANK:ID``), apart from everybody else's.

    The key is a relative path: tenant, bank and question ids are lower-case letters, digits, '-' and
    '_', and '.' (in none of them) stands for the colon; anything else is hashed, never a path.
    """
    parts = [tenant, question_id.replace(":", ".")]
    safe = [p if _SAFE_ID.match(p.replace(".", ":", 1)) else "x-" + hashlib.sha256(p.encode()).hexdigest()[:20]
            for p in parts]
    return f"tenants/{safe[0]}/{safe[1]}"


class Grades(BaseModel):
    """The grades stored beside one question's index, row for row."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="The question's text (for people browsing the folder).")
    scores: list[float] = Field(default_factory=list, description="Human scores, 0-10.")
    base: list[float] = Field(default_factory=list, description="The feature model's score when added, 0-10.")
    digests: list[str] = Field(default_factory=list, description="Answer hashes; re-adding an answer is a no-op.")
    texts: list[str] = Field(default_factory=list, description="The answers as graded (their character n-grams "
                                                                "are one view of the exemplar ridge).")
    token_coverage: list[list[float]] = Field(default_factory=list, description=(
        "Each reference token's best match in the answer (grader.answer_views); [] where none was computed."))
    token_counts: list[int] = Field(default_factory=list, description=(
        "Each answer's rows in the question's token file, in order; -1 where none were kept."))
    basis: str = Field(default="", description="What the base scores were computed under (Grader.scoring_basis).")


class Neighbours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    similarity: list[float]
    score: list[float]
    base: list[float]


class _Loaded:
    """One question's exemplars in memory and what is derived from them, evicted together."""

    __slots__ = ("index", "grades", "pool", "ridges")

    def __init__(self, index: faiss.Index, grades: Grades):
        self.index, self.grades = index, grades
        self.pool: tuple[AnswerViews, np.ndarray, np.ndarray] | None = None
        self.ridges: dict[float, ExemplarRidge] = {}

    def nbytes(self) -> int:
        grades = self.grades
        size = self.index.ntotal * self.index.d * 4 + sum(sys.getsizeof(t) for t in grades.texts)
        size += 32 * (len(grades.scores) * 3 + sum(len(c) for c in grades.token_coverage))  # numbers in lists
        if self.pool is not None:
            views, scores, base = self.pool
            size += views.vectors.nbytes + scores.nbytes + base.nbytes
            size += 0 if views.token_coverage is None else views.token_coverage.nbytes
        return size + sum(ridge.nbytes() for ridge in self.ridges.values())


class ExemplarStore:
    """Per-question exemplar indexes for one embedding model, persisted on every ``add``.

    Questions in use are held in memory with what is derived from their exemplars (about 3.5 MB at 400
    exemplars), least recently used first out once they pass ``max_bytes``: an evicted question is read
    from disk again when next graded. Safe to share between threads.

    Example:
        >>> store = ExemplarStore(Path("/tmp/cache"), "multilingual-e5-small", 384)  # doctest: +SKIP
        >>> store.add("q1", "What is a stack?", vectors, scores=[10, 4], base=[8, 5], answers=[...])  # doctest: +SKIP
        >>> store.search("q1", vector, k=10).score  # doctest: +SKIP
    """

    def __init__(self, cache_dir: Path, model_id: str, dim: int, max_bytes: int = 512 << 20):
        self.folder = Path(cache_dir) / "exemplars" / model_slug(model_id)
        self.dim = dim
        self._loaded: LRUCache[str, _Loaded] = LRUCache(max_bytes, getsizeof=_Loaded.nbytes)
        self._lock = threading.RLock()

    def held(self) -> tuple[int, int]:
        """(questions, bytes) held in memory now."""
        with self._lock:
            return len(self._loaded), int(self._loaded.currsize)

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        return self.folder / f"{key}.faiss", self.folder / f"{key}.json", self.folder / f"{key}.tokens.f16"

    def _get(self, key: str) -> _Loaded | None:
        found = self._loaded.get(key)
        if found is None:
            index_path, grades_path, _ = self._paths(key)
            if not index_path.is_file():
                return None
            found = _Loaded(faiss.read_index(str(index_path)),
                            Grades.model_validate_json(grades_path.read_text(encoding="utf-8")))
            self._keep(key, found)
        return found

    def _keep(self, key: str, loaded: _Loaded) -> None:
        """(Re)cache ``loaded``, sized again now that it may hold more."""
        try:
            self._loaded[key] = loaded
        except ValueError:  # larger than the whole budget alone: served, never kept
            self._loaded.pop(key, None)

    def count(self, key: str) -> int:
        with self._lock:
            found = self._get(key)
            return found.index.ntotal if found else 0

    def basis(self, key: str) -> str | None:
        """The scoring basis question ``key``'s exemplars were scored under (None: it has none)."""
        with self._lock:
            found = self._get(key)
            return found.grades.basis if found and found.index.ntotal else None

    def add(self, key: str, question: str, vectors: np.ndarray, scores: list[float], base: list[float],
            answers: list[str], basis: str = "", token_coverage: list[np.ndarray | None] | None = None,
            tokens: list[np.ndarray | None] | None = None) -> int:
        """Add graded answers (scores 0-10, the grader's own ``base`` scores under ``basis``, each answer's
        ``token_coverage`` and unit token vectors where known); returns how many were new. Exemplars scored
        under another basis are dropped first: their residuals would compare a grade with a score the grader
        no longer gives."""
        with self._lock:
            if self.basis(key) not in (None, basis):
                log.warning("exemplars of %s were scored under an earlier calibration or rubric; starting afresh", key)
                self.drop(key)
            loaded = self._get(key) or _Loaded(faiss.IndexFlatIP(self.dim), Grades(question=question, basis=basis))
            grades = loaded.grades
            stored_tokens = sum(max(c, 0) for c in grades.token_counts)
            grades.token_counts += [-1] * (len(grades.scores) - len(grades.token_counts))  # kept before tokens were
            seen = set(grades.digests)
            keep, new_tokens = [], []
            for i, answer in enumerate(answers):
                digest = hashlib.sha256(answer.strip().encode()).hexdigest()[:24]
                if digest not in seen:
                    seen.add(digest)
                    keep.append(i)
                    grades.digests.append(digest)
                    grades.scores.append(float(scores[i]))
                    grades.base.append(float(base[i]))
                    grades.texts.append(answer)
                    found = None if token_coverage is None else token_coverage[i]
                    grades.token_coverage.append([] if found is None else [round(float(v), 4) for v in found])
                    states = None if tokens is None else tokens[i]
                    grades.token_counts.append(-1 if states is None else len(states))
                    if states is not None:
                        new_tokens.append(np.asarray(states, dtype=np.float16).reshape(-1, self.dim))
            if keep:
                loaded.index.add(np.ascontiguousarray(vectors[keep], dtype=np.float32))
                self._save(key, loaded.index, grades, stored_tokens, new_tokens)
                loaded.pool, loaded.ridges = None, {}  # derived from the exemplars there were
            self._keep(key, loaded)
            return len(keep)

    def drop(self, key: str) -> None:
        """Forget every exemplar of question ``key``."""
        with self._lock:
            self._loaded.pop(key, None)
            for path in self._paths(key):
                path.unlink(missing_ok=True)

    def _save(self, key: str, index: faiss.Index, grades: Grades, stored_tokens: int,
              new_tokens: list[np.ndarray]) -> None:
        index_path, grades_path, tokens_path = self._paths(key)
        index_path.parent.mkdir(parents=True, exist_ok=True)
        # Token vectors are appended (rewriting megabytes on every add would be wasteful), after cutting what an
        # add that stopped before writing its grades left past the rows they count; readers take only those.
        with open(tokens_path, "ab") as tokens_file:
            tokens_file.truncate(stored_tokens * self.dim * 2)
            for block in new_tokens:
                tokens_file.write(block.tobytes())
        # write then rename, so a reader never sees an index without its grades
        faiss.write_index(index, str(index_path) + ".tmp")
        grades_path.with_suffix(".tmp").write_text(grades.model_dump_json(), encoding="utf-8")
        os.replace(str(index_path) + ".tmp", index_path)
        os.replace(grades_path.with_suffix(".tmp"), grades_path)

    def all(self, key: str) -> tuple[AnswerViews, np.ndarray, np.ndarray] | None:
        """(answers, scores, model scores) of every exemplar of question ``key``, or None. Exemplars stored
        before their texts or coverage were kept leave that view out."""
        with self._lock:
            found = self._with_pool(key)
            return found.pool if found else None

    def ridge(self, key: str, alpha: float) -> ExemplarRidge | None:
        """The kernel ridge of question ``key``'s residuals over all its exemplars (``grader.answer_views``),
        fitted once per set of exemplars and penalty; None when it has none."""
        with self._lock:
            found = self._with_pool(key)
            if found is None:
                return None
            if alpha in found.ridges:
                return found.ridges[alpha]
            pool, scores, base = stored = found.pool
            counts = found.grades.token_counts[: len(scores)]
        # fitted outside the lock (seconds at thousands of exemplars): nothing else need wait for it
        ridge = ExemplarRidge(pool._replace(tokens=self._tokens(key, counts)), (scores - base) / 10, alpha)
        with self._lock:
            if self._loaded.get(key) is found and found.pool is stored:  # not dropped, evicted or added to since
                found.ridges[alpha] = ridge
                self._keep(key, found)
        return ridge

    def _tokens(self, key: str, counts: list[int]) -> list[np.ndarray] | None:
        """The token vectors of the exemplars ``counts`` describes, mapped from disk rather than read into memory
        (thousands of exemplars hold hundreds of megabytes); None unless every one has them."""
        if not counts or min(counts) < 0 or not sum(counts):
            return None
        try:
            block = np.memmap(self._paths(key)[2], dtype=np.float16, mode="r", shape=(sum(counts), self.dim))
        except (FileNotFoundError, ValueError):  # dropped meanwhile (the ridge fitted now is not kept), or cut short
            log.warning("the token file of %s is missing or shorter than its grades say: its exemplars are compared "
                        "without their tokens' codebook until they are added again", key)
            return None
        return np.split(block, np.cumsum(counts)[:-1])

    def _with_pool(self, key: str) -> _Loaded | None:
        found = self._get(key)
        if not found or not found.index.ntotal:
            return None
        if found.pool is None:
            grades, n = found.grades, found.index.ntotal
            texts = list(grades.texts) if len(grades.texts) == n else None  # a copy: add appends to the list
            widths = {len(c) for c in grades.token_coverage}
            complete = len(grades.token_coverage) == n and len(widths) == 1 and 0 not in widths
            token_coverage = np.array(grades.token_coverage) if complete else None
            found.pool = (AnswerViews(found.index.reconstruct_n(0, n), texts, token_coverage),
                          np.array(grades.scores), np.array(grades.base))
            self._keep(key, found)
        return found

    def search(self, key: str, vector: np.ndarray, k: int) -> Neighbours | None:
        """The ``k`` most similar exemplars of question ``key`` (None when it has none)."""
        with self._lock:
            found = self._get(key)
            if not found or not found.index.ntotal:
                return None
            index, grades = found.index, found.grades
            sims, rows = index.search(np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32),
                                      min(k, index.ntotal))
        rows = [int(r) for r in rows[0] if r >= 0]
        return Neighbours(similarity=[float(s) for s in sims[0][: len(rows)]],
                          score=[grades.scores[r] for r in rows], base=[grades.base[r] for r in rows])


def add_graded(grader, items: list[tuple[str | CustomQuestion | Rubric, str, float]],
               keys: list[str] | None = None) -> dict[str, int]:
    """Store graded answers (question, answer, human score 0-10) as exemplars; returns new ones per key.

    ``keys``: where each answer's exemplars go (default: its question's own key). Each exemplar keeps
    the grader's own score for it (before exemplars and caps), which the blend compares with its grade.
    """
    if grader.exemplars is None:
        raise GraderError("this grader has no exemplar store (build it with Grader.from_settings)")
    for question in {id(q): q for q, _, _ in items}.values():
        if grader.exemplar_blend(question) is None:  # the blend corrects the grader's own score: none, nothing to learn
            raise GraderError(f"no exemplar blend for {grader.embedder.model_id}; fit one with "
                              "python -m eval.fit_custom before adding exemplars")
    keys = keys or [grader.exemplar_key(q) for q, _, _ in items]
    unblended = grader.unblended([(q, a) for q, a, _ in items])
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if unblended[i] is not None:
            groups.setdefault(key, []).append(i)
    added: dict[str, int] = {}
    for key, rows in groups.items():
        question = grader.compiled(items[rows[0]][0]).rubric.question.en
        texts = [prepare(items[i][1], grader.max_answer_chars).text for i in rows]
        added[key] = grader.exemplars.add(key, question, np.stack([unblended[i].vector for i in rows]),
                                          [items[i][2] for i in rows], [unblended[i].score for i in rows], texts,
                                          basis=grader.scoring_basis(items[rows[0]][0]),
                                          token_coverage=[unblended[i].token_coverage for i in rows],
                                          tokens=[unblended[i].tokens for i in rows])
    return added
