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
from typing import Any, NamedTuple

import numpy as np

# Exemplars the ridge solves over (the nearest to the answer when a question has more): its cost grows with
# their cube, and far exemplars say little about this answer.
MAX_RIDGE_EXEMPLARS = 400
VIEWS = ("embedding", "token_coverage", "characters")
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
    only, so a question's is computed once for all the answers graded against it. Character n-grams stay
    sparse (centring them would make hundreds of exemplars' rows tens of megabytes): the centring is
    applied to their products instead.
    """

    def __init__(self, pool: AnswerViews, residuals: np.ndarray, alpha: float):
        self.mean = float(residuals.mean()) if len(residuals) else 0.0
        self._coverage_scale: tuple[np.ndarray, np.ndarray] | None = None
        self._characters = None
        if pool.token_coverage is not None and pool.token_coverage.shape[1]:
            self._coverage_scale = (pool.token_coverage.mean(0),
                                    pool.token_coverage.std(0) + TOKEN_COVERAGE_SD_FLOOR)
        if pool.texts is not None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            try:
                self._characters = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True).fit(
                    pool.texts)
            except ValueError:  # not one character in the exemplars: nothing to compare
                pass
        self._views: list[tuple[str, Any, np.ndarray, np.ndarray, float, float]] = []
        kernel = np.zeros((len(residuals), len(residuals)))
        for view in VIEWS:
            rows = self._rows(pool, view)
            if rows is None:
                continue
            center = np.asarray(rows.mean(0)).ravel()
            row_center = np.asarray(rows @ center).ravel()
            center_center = float(center @ center)
            block = _dense(rows @ rows.T) - row_center[:, None] - row_center[None, :] + center_center
            scale = float(np.trace(block)) / max(len(residuals), 1)
            if scale > 1e-12:  # a view on which every exemplar reads alike tells them nothing apart
                kernel += block / scale
                self._views.append((view, rows, center, row_center, center_center, scale))
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

    def nbytes(self) -> int:
        """Memory held, roughly (the exemplar store bounds what it keeps by it)."""
        size = self._kernel.nbytes + self.dual.nbytes
        for _, rows, center, row_center, _, _ in self._views:
            parts = (rows.data, rows.indices, rows.indptr) if hasattr(rows, "indptr") else (rows,)
            size += center.nbytes + row_center.nbytes + sum(part.nbytes for part in parts)
        if self._characters is not None:  # its n-gram vocabulary: a dict of short strings
            size += 120 * len(self._characters.vocabulary_)
        return size

    def _rows(self, answers: AnswerViews, view: str) -> Any:
        """The answers' rows in ``view`` (None where they lack it or the exemplars did)."""
        if view == "embedding":
            return answers.vectors
        if view == "token_coverage":
            if self._coverage_scale is None or answers.token_coverage is None or \
                    answers.token_coverage.shape[1] != len(self._coverage_scale[0]):
                return None
            mean, sd = self._coverage_scale
            return (answers.token_coverage - mean) / sd
        if self._characters is None or answers.texts is None:
            return None
        return self._characters.transform(answers.texts)

    def predict(self, answers: AnswerViews) -> np.ndarray:
        """Each answer's residual: the exemplars' mean, plus what sets the answer apart on the views it shares
        with them (an answer without token coverage is compared on the others)."""
        cross = np.zeros((len(answers.vectors), len(self.dual)))
        for view, rows, center, row_center, center_center, scale in self._views:
            queries = self._rows(answers, view)
            if queries is not None:
                query_center = np.asarray(queries @ center).ravel()
                cross += (_dense(queries @ rows.T) - query_center[:, None] - row_center[None, :]
                          + center_center) / scale
        return self.mean + cross @ self.dual


def _dense(product: Any) -> np.ndarray:
    return product.toarray() if hasattr(product, "toarray") else np.asarray(product)
