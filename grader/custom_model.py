"""The score model for questions outside the bank, and how graded exemplars adjust it.

A question a platform writes itself comes with a question text and reference answers, not with
hand-written key points, paraphrases and misconceptions, so the bank's calibration does not fit it.
This model reads the named features of ``grader.answer_features``: gradient-boosted trees with
monotone constraints (no feature that should only help can lower a score), mixed with a linear head
over the same features and the token alignment ones (``HEAD_ONLY``; signs held to the same constraints)
and the answer's embedding met with its closest reference's (dimension by dimension, and on a few
leading directions against each other). Its settings, data and command are in
``grader/calibration/custom-<model>.json``; the trees, which have no faithful JSON form, are in the
``.joblib`` file it names. Both are written by ``python -m eval.fit_custom``.

With exemplars (``grader.exemplars``), the nearest graded answers of the same question correct the
score: their grades minus the grader's own scores for them, weighted by similarity, move it, more so
the more exemplars the question has. There are two blends, because the residuals they correct differ:
``exemplars`` on top of this model (custom questions), ``rubric_exemplars`` on top of the bank's score
formula (bank and tenant rubrics). Both are fitted on training folds by ``eval.fit_custom``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from grader.answer_features import FEATURES, HEAD_ONLY, MONOTONE
from grader.answer_views import AnswerViews
from grader.scoring import CALIBRATION_DIR, model_slug

log = logging.getLogger(__name__)

SMOOTHING_DRAWS = 32  # jitter offsets per answer, each also mirrored: 64 tree predictions averaged


class ExemplarBlend(BaseModel):
    """score = base + n / (n + prior) * (ridge * ridge_residual + knn * knn_residual).

    Residuals are grade minus the feature model's score. ``ridge_residual`` is a kernel ridge of the
    question's exemplar residuals over their embeddings, reference-token coverage, characters and a codebook
    of their own tokens (``grader.answer_views``), evaluated at the answer (what, in this question, sets
    well-graded answers apart from the model's guess); ``knn_residual`` is the similarity-weighted mean
    residual of the ``k`` nearest exemplars (softmax of cosine / temperature).
    """

    model_config = ConfigDict(extra="forbid")
    k: int = Field(ge=1)
    temperature: float = Field(gt=0)
    alpha: float = Field(gt=0, description="Ridge penalty (each view's kernel has unit mean self-similarity).")
    prior: float = Field(ge=0, description="Exemplar count at which exemplars get half their full say.")
    ridge: float = Field(ge=0, le=1.5)
    knn: float = Field(ge=0, le=1.5)

    def knn_residual(self, similarity: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """Rows of neighbour similarities and their residuals -> one weighted residual per row."""
        similarity = np.atleast_2d(similarity)[:, : self.k]
        residuals = np.atleast_2d(residuals)[:, : self.k]
        z = (similarity - similarity.max(1, keepdims=True)) / self.temperature
        w = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        return (w * residuals).sum(1)

    def apply(self, base: np.ndarray, ridge_residual: np.ndarray, knn_residual: np.ndarray, total: int) -> np.ndarray:
        """Adjusted scores (0-1 scale)."""
        say = total / (total + self.prior) if total else 0.0
        return np.clip(base + say * (self.ridge * ridge_residual + self.knn * knn_residual), 0.0, 1.0)


class LinearHead(BaseModel):
    """score = intercept + features . weights + embedding terms . (pair + cross), mixed into the trees'
    score with ``share``.

    Trees split on a few features at a time and cannot learn from hundreds of embedding dimensions
    over some thousand answers; a ridge can, and it carries across questions where a data set has many.
    The embedding terms are where the answer's embedding agrees with its closest reference's, dimension by
    dimension (their product), where it departs (the absolute gap), and, with a ``basis``, every product of
    one's coordinate on a leading principal direction with the other's on another: a low-rank bilinear form,
    which sees an answer that says in other dimensions what the reference says in these.
    """

    model_config = ConfigDict(extra="forbid")
    share: float = Field(ge=0, le=1, description="Weight of the head in the score (the trees get the rest), by "
                                                 "inner cross-validation grouped by question.")
    alpha: float = Field(gt=0, description="Ridge penalty on standardised features and the embedding terms.")
    intercept: float
    weights: dict[str, float] = Field(description="Per feature, per unit of the raw feature; signs follow MONOTONE.")
    pair: list[float] = Field(description="Weights of the answer-reference product and gap (2 x embedding size).")
    center: list[float] = Field(default_factory=list, description="Mean embedding the basis is taken about.")
    basis: list[list[float]] = Field(default_factory=list, description=(
        "Leading principal directions of the training embeddings, each scaled so that products of coordinates "
        "on them are penalised alike; empty: no bilinear terms."))
    cross: list[float] = Field(default_factory=list, description="Weights of the rank x rank coordinate products.")
    _arrays: tuple = PrivateAttr()

    @model_validator(mode="after")
    def _consistent(self) -> LinearHead:
        wrong = [f for f, w in self.weights.items() if f not in MONOTONE or w * MONOTONE[f] < 0]
        if wrong:
            raise ValueError(f"head weights against MONOTONE (or unknown features): {wrong}")
        dim = len(self.pair) // 2
        if len(self.cross) != len(self.basis) ** 2 or any(len(row) != dim for row in self.basis) or (
                self.basis and len(self.center) != dim):
            raise ValueError("the head's basis, centre and cross weights do not fit its embedding size")
        # read on every answer graded: tens of thousands of floats, not rebuilt from lists each time
        self._arrays = (np.array(self.basis).reshape(len(self.basis), dim), np.array(self.center),
                        np.array(self.pair + self.cross), [FEATURES.index(f) for f in self.weights],
                        np.array(list(self.weights.values())))
        return self

    def predict(self, rows: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """Unclipped scores (0-1 scale) for an (n, len(FEATURES)) table and the answers' ``pair_vector``s."""
        basis, center, embedding, columns, weights = self._arrays
        return (self.intercept + np.asarray(rows, dtype=float)[:, columns] @ weights
                + embedding_terms(pairs, basis, center) @ embedding)


def embedding_terms(pairs: np.ndarray, basis: np.ndarray, center: np.ndarray) -> np.ndarray:
    """The head's embedding columns for rows of ``pair_vector``: product and gap, then with a non-empty
    ``basis`` the flattened outer product of the two embeddings' coordinates on it."""
    pairs = np.asarray(pairs, dtype=float)
    answer, reference = np.split(pairs, 2, axis=1)
    columns = [answer * reference, np.abs(answer - reference)]
    if len(basis):
        a, r = (answer - center) @ basis.T, (reference - center) @ basis.T
        columns.append((a[:, :, None] * r[:, None, :]).reshape(len(pairs), -1))
    return np.hstack(columns)


class CustomModel(BaseModel):
    """Features -> score on a 0-1 scale; the fitted trees live in the ``artifact`` file beside this one."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="Embedding model the features were computed with.")
    features: list[str] = Field(description="What the trees split on (the head may also read HEAD_ONLY ones).")
    monotone: list[int] = Field(description="Per feature: +1 never lowers the score, -1 never raises it, 0 free.")
    params: dict[str, float | int | str] = Field(description="HistGradientBoostingRegressor settings, by inner CV.")
    smoothing: dict[str, float] = Field(default_factory=dict, description=(
        "Per feature: standard deviation of the Gaussian jitter the trees' prediction is averaged over, so "
        "that the score does not step where a tree splits (numerical noise in a similarity could move it)."))
    artifact: str = Field(default="", description="joblib file of the fitted regressor, in grader/calibration/.")
    sklearn: str = Field(default="", description="scikit-learn version that wrote the artifact.")
    head: LinearHead | None = Field(default=None, description="Linear head mixed into the trees' score.")
    exemplars: ExemplarBlend | None = Field(default=None, description="Blend over this model's scores.")
    rubric_exemplars: ExemplarBlend | None = Field(
        default=None, description="Blend over the bank's score formula, for questions graded with a full rubric.")
    fitted_on: str = ""
    command: str = ""
    cross_validated: dict[str, float] = Field(default_factory=dict)
    _estimator: Any = PrivateAttr(default=None)
    _artifact_digest: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _consistent(self) -> CustomModel:
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {', '.join(FEATURES)}")
        if self.monotone != [MONOTONE[f] for f in self.features]:
            raise ValueError("monotone must follow grader.answer_features.MONOTONE for the listed features")
        unread = set(self.smoothing) - set(self.features)
        if unread:
            raise ValueError(f"smoothing names features the model does not read: {sorted(unread)}")
        if self.head is not None and set(self.head.weights) - set(self.features) - set(HEAD_ONLY):
            raise ValueError("the head reads features the model lists neither for its trees nor as HEAD_ONLY")
        return self

    def with_estimator(self, estimator: Any, artifact_digest: str = "") -> CustomModel:
        self._estimator, self._artifact_digest = estimator, artifact_digest
        return self

    def fingerprint(self) -> str:
        """Changes whenever a refit changes the settings or the trees."""
        return hashlib.sha256(f"{self.model_dump_json()}\0{self._artifact_digest}".encode()).hexdigest()

    def predict(self, rows: np.ndarray, pairs: np.ndarray | None = None) -> np.ndarray:
        """Scores on the 0-1 scale for an (n, len(FEATURES)) table in ``FEATURES`` order and, when the
        model has a head, the answers' ``pair_vector``s."""
        trees = self._trees(np.asarray(rows, dtype=float)[:, [FEATURES.index(f) for f in self.features]])
        if self.head is None:
            return np.clip(trees, 0.0, 1.0)
        if pairs is None:
            raise ValueError("this model has a linear head: pass the answers' pair vectors")
        mixed = (1 - self.head.share) * trees + self.head.share * self.head.predict(rows, pairs)
        return np.clip(mixed, 0.0, 1.0)

    def _trees(self, x: np.ndarray) -> np.ndarray:
        if not self.smoothing:
            return self._estimator.predict(x)
        jitter = self._jitter()
        jittered = (x[:, None, :] + jitter[None]).reshape(-1, x.shape[1])
        return self._estimator.predict(jittered).reshape(len(x), len(jitter)).mean(1)

    def _jitter(self) -> np.ndarray:
        """Fixed offsets (the same for every answer, so a score is reproducible), each with its mirror image."""
        draws = np.random.default_rng(0).standard_normal((SMOOTHING_DRAWS, len(self.smoothing)))
        jitter = np.zeros((SMOOTHING_DRAWS, len(self.features)))
        for j, (name, sd) in enumerate(self.smoothing.items()):
            jitter[:, self.features.index(name)] = sd * draws[:, j]
        return np.concatenate([jitter, -jitter])

    def predict_one(self, named: dict[str, float], pair: np.ndarray | None = None) -> float:
        return float(self.predict(np.array([[named[f] for f in FEATURES]]),
                                  None if pair is None else np.asarray(pair).reshape(1, -1))[0])


def custom_model_path(model_id: str) -> Path:
    return CALIBRATION_DIR / f"custom-{model_slug(model_id)}.json"


def load_custom_model(model_id: str) -> CustomModel | None:
    """The fitted custom-question model for this embedding model, if one was fitted."""
    import joblib
    import sklearn

    path = custom_model_path(model_id)
    if not path.is_file():
        return None
    model = CustomModel.model_validate(json.loads(path.read_text(encoding="utf-8")))
    if model.sklearn != sklearn.__version__:
        log.warning("%s was written with scikit-learn %s, running %s; refit with python -m eval.fit_custom",
                    path.name, model.sklearn, sklearn.__version__)
    artifact = path.parent / model.artifact
    return model.with_estimator(joblib.load(artifact), hashlib.sha256(artifact.read_bytes()).hexdigest())


def blend_exemplars(blend: ExemplarBlend, store, key: str, base: float, answer: AnswerViews,
                    basis: str) -> tuple[float, int, float] | None:
    """(adjusted 0-1 score, exemplar count, nearest similarity) from question ``key``'s exemplars for one
    ``answer``; None when it has none, or only exemplars scored under another ``basis`` (their residuals
    would be wrong)."""
    total = store.count(key)
    if not total:
        return None
    if store.basis(key) != basis:
        log.warning("exemplars of %s were scored under an earlier calibration or rubric and are not used; "
                    "add them again (the API re-indexes them at start-up)", key)
        return None
    near = store.search(key, answer.vectors[0], blend.k)
    near_residuals = (np.array(near.score) - np.array(near.base)) / 10
    adjusted = blend.apply(np.array([base]), store.ridge(key, blend.alpha).predict(answer),
                           blend.knn_residual(np.array(near.similarity), near_residuals), total)
    return float(adjusted[0]), total, near.similarity[0]

