"""What a question's graded exemplars teach about a new answer: a kernel ridge of their residuals over
three views of an answer.

One view alone misses what a teacher grades on. The embedding says what an answer is about, but blurs
which of the reference's words it found; the reference-token coverage (each reference token's best match
among the answer's tokens, ``grader.alignment``) says which parts of the reference it says, and the ridge
learns which of them this teacher rewards; character n-grams catch the exact terms, formulas and
misspellings the encoder smooths over. Each view gives a centred linear kernel scaled to unit mean
self-similarity, and the ridge runs on their sum, so a view counts as much as another whatever its width.
On ADS (warm, 5 folds), with the blend's numbers by inner cross-validation, Pearson r went 0.773 -> 0.798
(embeddings alone in the same ridge: 0.769; ``eval/RESULTS.md``).
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

# Exemplars the ridge solves over (the nearest to the answer when a question has more): its cost grows with
# their cube, and far exemplars say little about this answer.
MAX_RIDGE_EXEMPLARS = 400
TOKEN_COVERAGE_SD_FLOOR = 0.02  # a reference token every exemplar matches alike says nothing, and is not blown up


class AnswerViews(NamedTuple):
    """Answers, row for row, as the exemplar ridge compares them."""

    vectors: np.ndarray  # (n, dim) unit answer embeddings
    texts: list[str] | None = None  # prepared answer texts (None: not known for every answer)
    token_coverage: np.ndarray | None = None  # (n, reference tokens) best match of each, or None

    def take(self, rows: np.ndarray | list[int]) -> AnswerViews:
        rows = np.asarray(rows, dtype=int)
        return AnswerViews(self.vectors[rows], None if self.texts is None else [self.texts[i] for i in rows],
                           None if self.token_coverage is None else self.token_coverage[rows])


class ExemplarRidge:
    """A kernel ridge of residuals fitted on one question's exemplars, for any number of answers after.

    Each view shared by every exemplar is centred on the exemplars' mean and scaled to unit mean
    self-similarity; the kernel is the sum of the views' linear kernels. The fit depends on the exemplars
    only, so a question's is computed once for all the answers graded against it.
    """

    def __init__(self, pool: AnswerViews, residuals: np.ndarray, alpha: float):
        self.mean = float(residuals.mean()) if len(residuals) else 0.0
        self._characters = None
        self._token_coverage: tuple[np.ndarray, np.ndarray] | None = None
        blocks = [self._rows(pool, "vectors")]
        if pool.token_coverage is not None and pool.token_coverage.shape[1]:
            self._token_coverage = (pool.token_coverage.mean(0), pool.token_coverage.std(0) + TOKEN_COVERAGE_SD_FLOOR)
            blocks.append(self._rows(pool, "token_coverage"))
        if pool.texts is not None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            try:
                self._characters = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True).fit(
                    pool.texts)
                blocks.append(self._rows(pool, "texts"))
            except ValueError:  # not one character in the exemplars: nothing to compare
                self._characters = None
        self._pool: list[tuple[str, np.ndarray, np.ndarray, float]] = []  # view, centre, centred rows, scale
        kernel = np.zeros((len(residuals), len(residuals)))
        for view, rows in blocks:
            center = rows.mean(0)
            rows = rows - center
            block = rows @ rows.T
            scale = float(np.trace(block)) / max(len(rows), 1)
            if scale > 1e-12:
                kernel += block / scale
                self._pool.append((view, center, rows, scale))
        self._kernel, self._centred = kernel, residuals - self.mean
        self.alpha, self.dual = alpha, self._solve(alpha)

    def _solve(self, alpha: float) -> np.ndarray:
        if len(self._centred) < 2:
            return np.zeros(len(self._centred))
        return np.linalg.solve(self._kernel + alpha * np.eye(len(self._centred)), self._centred)

    def with_alpha(self, alpha: float) -> ExemplarRidge:
        """The same exemplars under another penalty (the views are not computed again)."""
        other = copy.copy(self)
        other.alpha, other.dual = alpha, self._solve(alpha)
        return other

    def _rows(self, answers: AnswerViews, view: str) -> tuple[str, np.ndarray]:
        if view == "vectors":
            return view, answers.vectors
        if view == "token_coverage":
            assert self._token_coverage is not None
            mean, sd = self._token_coverage
            return view, (answers.token_coverage - mean) / sd
        return view, self._characters.transform(answers.texts).toarray()

    def _has(self, answers: AnswerViews, view: str, width: int) -> bool:
        if view == "texts":
            return answers.texts is not None
        if view == "token_coverage":
            return answers.token_coverage is not None and answers.token_coverage.shape[1] == width
        return True

    def predict(self, answers: AnswerViews) -> np.ndarray:
        """Each answer's residual: the exemplars' mean, plus what sets the answer apart on the views it shares
        with them (an answer without coverage is compared on the others)."""
        cross = np.zeros((len(answers.vectors), len(self.dual)))
        for view, center, rows, scale in self._pool:
            if self._has(answers, view, rows.shape[1]):
                cross += (self._rows(answers, view)[1] - center) @ rows.T / scale
        return self.mean + cross @ self.dual

