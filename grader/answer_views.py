"""What a question's graded exemplars teach about a new answer: a kernel ridge of their residuals over
four views of an answer.

One view alone misses what a teacher grades on. The embedding says what an answer is about, but blurs
which of the reference's words it found; the reference-token coverage (each reference token's best match
among the answer's tokens, ``grader.alignment``) says which parts of the reference it says, and the ridge
learns which of them this teacher rewards; character n-grams catch the exact terms, formulas and
misspellings the encoder smooths over; the exemplars' own tokens, clustered into a small codebook (each
entry's best match among the answer's tokens), say which of the ways this question's answers put things an
answer shares, wrong ones included, which the references cannot list. Each view gives a centred linear
kernel scaled to unit mean self-similarity, and the ridge runs on their sum, so a view counts as much as
another whatever its width.
On ADS (warm, 5 folds), with the blend's numbers by inner cross-validation, Pearson r went 0.773 -> 0.798
with the first three views (embeddings alone in the same ridge: 0.769) and 0.798 -> 0.802 with the codebook
(``eval/RESULTS.md``).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

# Up to this many exemplars the ridge is solved exactly over their kernel (its cost grows with their cube);
# above, iteratively over the views' columns (sparse characters stay sparse), to the same solution.
EXACT_UP_TO = 400
VIEWS = ("embedding", "token_coverage", "characters", "exemplar_tokens")
MATCH_VIEWS = ("token_coverage", "exemplar_tokens")  # best matches of fixed tokens, standardised over the exemplars
# a reference token (or codebook entry) every exemplar matches alike says nothing, and is not blown up
MATCH_SD_FLOOR = 0.02
# Entries of a question's codebook of its exemplars' tokens. Inner-CV error on ADS warm was the same at 32, 64
# and 128 (eval/RESULTS.md); 32 is the cheapest.
CODEBOOK_SIZE = 32
CODEBOOK_FIT_TOKENS = 8192  # k-means sees at most this many of the exemplars' tokens (a seeded sample)


class AnswerViews(NamedTuple):
    """Answers, row for row, as the exemplar ridge compares them."""

    vectors: np.ndarray  # (n, dim) unit answer embeddings
    texts: list[str] | None = None  # prepared answer texts (None: not known for every answer)
    token_coverage: np.ndarray | None = None  # (n, reference tokens) best match of each, or None
    tokens: list[np.ndarray] | None = None  # each answer's unit token vectors (grader.alignment.TokenStates)

    def take(self, rows: np.ndarray | list[int]) -> AnswerViews:
        rows = np.asarray(rows, dtype=int)
        return AnswerViews(self.vectors[rows], None if self.texts is None else [self.texts[i] for i in rows],
                           None if self.token_coverage is None else self.token_coverage[rows],
                           None if self.tokens is None else [self.tokens[i] for i in rows])


def token_codebook(tokens: list[np.ndarray], size: int = CODEBOOK_SIZE) -> np.ndarray | None:
    """Unit centroids of k-means over the answers' token vectors: the words and phrasings a question's answers
    use, its references' or not (a wrong formula, a common slip), as a fixed list to match an answer against.
    None when the answers have no tokens."""
    sizes = np.array([len(t) for t in tokens], dtype=np.int64)
    if sizes.sum() < 2:
        return None
    if sizes.sum() > CODEBOOK_FIT_TOKENS:  # the sample gathered row by row: the tokens may be mapped from disk
        picked = np.random.default_rng(0).choice(int(sizes.sum()), CODEBOOK_FIT_TOKENS, replace=False)
        owner = np.searchsorted(np.cumsum(sizes), picked, side="right")
        points = np.stack([tokens[o][i] for o, i in zip(owner, picked - (np.cumsum(sizes) - sizes)[owner],
                                                         strict=True)]).astype(np.float32)
    else:
        points = np.concatenate([t for t in tokens if len(t)]).astype(np.float32)
    if len(points) <= size:
        centres = points
    else:
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():  # fewer distinct tokens than entries: some entries repeat, harmlessly
            warnings.simplefilter("ignore", ConvergenceWarning)
            centres = KMeans(size, n_init=1, random_state=0).fit(points).cluster_centers_
    return (centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def codebook_matches(tokens: list[np.ndarray], codebook: np.ndarray) -> np.ndarray:
    """(answers, entries): each codebook entry's best match among each answer's tokens (0 for no tokens)."""
    return np.stack([(t.astype(np.float32) @ codebook.T).max(0) if len(t) else np.zeros(len(codebook), np.float32)
                     for t in tokens]) if tokens else np.zeros((0, len(codebook)), np.float32)


class ExemplarRidge:
    """A kernel ridge of residuals fitted on one question's exemplars, for any number of answers after.

    Each view shared by every exemplar is centred on the exemplars' mean and scaled to unit mean
    self-similarity; the kernel is the sum of the views' linear kernels. The fit depends on the exemplars
    only, so a question's is computed once for all the answers graded against it, and keeps each view's
    weights (a linear kernel's dual solution carried back to the view's columns), so that an answer is
    scored without comparing it with every exemplar. Character n-grams stay sparse (centring them would
    make hundreds of exemplars' rows tens of megabytes): the centring is applied to their products instead.
    """

    def __init__(self, pool: AnswerViews, residuals: np.ndarray, alpha: float):
        solve = self._prepare(pool, residuals)
        self.alpha, self.weights = alpha, solve(alpha)

    @classmethod
    def penalties(cls, pool: AnswerViews, residuals: np.ndarray, alphas: Iterable[float]) -> dict[float, ExemplarRidge]:
        """The same exemplars' ridge under each penalty, the views computed once (fitting searches penalties)."""
        first = cls.__new__(cls)
        solve = first._prepare(pool, residuals)
        fitted = {}
        for alpha in alphas:
            fitted[alpha] = copy.copy(first)
            fitted[alpha].alpha, fitted[alpha].weights = alpha, solve(alpha)
        return fitted

    def _prepare(self, pool: AnswerViews, residuals: np.ndarray) -> Callable[[float], list[np.ndarray]]:
        """Set the views' transforms (what ``predict`` reads); return the solver for a penalty, which alone
        holds the exemplars' rows and kernel, so a fitted ridge keeps only each view's weights."""
        self.mean = float(residuals.mean()) if len(residuals) else 0.0
        self._codebook = None if pool.tokens is None else token_codebook(pool.tokens)
        self._match_scales: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # view: the exemplars' mean, SD
        standardised = {}
        for view in MATCH_VIEWS:
            matches = self._matches(pool, view)
            if matches is not None:
                self._match_scales[view] = (matches.mean(0), matches.std(0) + MATCH_SD_FLOOR)
                standardised[view] = self._rows(pool, view, matches)
        self._characters = None
        if pool.texts is not None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            try:
                self._characters = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True).fit(
                    pool.texts)
            except ValueError:  # not one character in the exemplars: nothing to compare
                pass
        n = self.exemplars = len(residuals)
        self._views: list[tuple[str, np.ndarray, float]] = []  # view, centre, square root of its scale
        views_rows = []
        for view in VIEWS:
            rows = standardised.get(view) if view in MATCH_VIEWS else self._rows(pool, view)
            if rows is None:
                continue
            center = np.asarray(rows.mean(0)).ravel()
            squares = rows.multiply(rows).sum() if hasattr(rows, "multiply") else float((rows ** 2).sum())
            scale = (float(squares) - n * float(center @ center)) / max(n, 1)  # centred rows' mean square
            if scale > 1e-12:  # a view on which every exemplar reads alike tells them nothing apart
                self._views.append((view, center, float(np.sqrt(scale))))
                views_rows.append(rows)
        return _solver([(rows, center, root) for rows, (_, center, root) in zip(views_rows, self._views, strict=True)],
                       residuals - self.mean)

    def nbytes(self) -> int:
        """Memory held, roughly (the exemplar store bounds what it keeps by it)."""
        size = sum(center.nbytes + weights.nbytes for (_, center, _), weights in zip(self._views, self.weights,
                                                                                        strict=True))
        if self._characters is not None:  # its n-gram vocabulary: a dict of short strings
            size += 120 * len(self._characters.vocabulary_)
        size += sum(mean.nbytes + sd.nbytes for mean, sd in self._match_scales.values())
        return size + (0 if self._codebook is None else self._codebook.nbytes)

    def _matches(self, answers: AnswerViews, view: str) -> np.ndarray | None:
        """The answers' best match of each reference token or codebook entry (None where they lack it)."""
        if view == "token_coverage":
            coverage = answers.token_coverage
            return None if coverage is None or not coverage.shape[1] else coverage
        return None if self._codebook is None or answers.tokens is None else codebook_matches(answers.tokens,
                                                                                               self._codebook)

    def _rows(self, answers: AnswerViews, view: str, matches: np.ndarray | None = None) -> Any:
        """The answers' rows in ``view`` (None where they lack it or the exemplars did); ``matches``: theirs in a
        match view, when already computed."""
        if view == "embedding":
            return answers.vectors
        if view in MATCH_VIEWS:
            if view not in self._match_scales:
                return None
            mean, sd = self._match_scales[view]
            matches = self._matches(answers, view) if matches is None else matches
            return None if matches is None or matches.shape[1] != len(mean) else (matches - mean) / sd
        if self._characters is None or answers.texts is None:
            return None
        return self._characters.transform(answers.texts)

    def predict(self, answers: AnswerViews) -> np.ndarray:
        """Each answer's residual: the exemplars' mean, plus what sets the answer apart on the views it shares
        with them (an answer without token coverage is compared on the others)."""
        predicted = np.full(len(answers.vectors), self.mean)
        for (view, center, root), weights in zip(self._views, self.weights, strict=True):
            queries = self._rows(answers, view)
            if queries is not None:
                predicted += (np.asarray(queries @ weights).ravel() - center @ weights) / root
        return predicted


def _solver(views: list[tuple[Any, np.ndarray, float]], centred: np.ndarray) -> Callable[[float], list[np.ndarray]]:
    """For (rows, centre, root of scale) per view and the centred residuals: penalty -> each view's weights on
    its centred, scaled columns. Exactly over the kernel up to ``EXACT_UP_TO`` exemplars, else by lsqr over
    the columns."""
    n = len(centred)
    if n < 2 or not views:
        return lambda alpha: [np.zeros_like(center) for _, center, _ in views]
    if n <= EXACT_UP_TO:
        kernel = np.zeros((n, n))
        for rows, center, root in views:
            row_center = np.asarray(rows @ center).ravel()
            kernel += (_dense(rows @ rows.T) - row_center[:, None] - row_center[None, :]
                       + float(center @ center)) / root ** 2

        def exactly(alpha: float) -> list[np.ndarray]:
            dual = np.linalg.solve(kernel + alpha * np.eye(n), centred)
            return [(np.asarray(rows.T @ dual).ravel() - center * dual.sum()) / root for rows, center, root in views]

        return exactly
    from scipy.sparse.linalg import LinearOperator, lsqr

    bounds = np.cumsum([0, *(center.shape[0] for _, center, _ in views)])
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))

    def matvec(w: np.ndarray) -> np.ndarray:
        return sum((np.asarray(rows @ w[a:b]).ravel() - center @ w[a:b]) / root
                   for (rows, center, root), (a, b) in zip(views, spans, strict=True))

    def rmatvec(u: np.ndarray) -> np.ndarray:
        return np.concatenate([(np.asarray(rows.T @ u).ravel() - center * u.sum()) / root
                               for rows, center, root in views])

    design = LinearOperator((n, int(bounds[-1])), matvec=matvec, rmatvec=rmatvec, dtype=float)

    def iteratively(alpha: float) -> list[np.ndarray]:
        solution = lsqr(design, centred, damp=float(np.sqrt(alpha)), atol=1e-10, btol=1e-10, iter_lim=10 * n)[0]
        return [solution[a:b] for a, b in spans]

    return iteratively


def _dense(product: Any) -> np.ndarray:
    return product.toarray() if hasattr(product, "toarray") else np.asarray(product)
