"""Fit the custom-question score model (and its exemplar blends) on graded answers.

    python -m eval.fit_custom [--data ../shared/eval-data] [--model multilingual-e5-small]

Fits on every answer of the Mohler standard set and the ADS training split together and writes
``grader/calibration/custom-<model>.json``, which the grader loads at start-up for questions that
are not in the bank, with two exemplar blends: one over this model's scores, one over the bank's
score formula (for bank and tenant rubrics, whose scores come from that formula). The same
functions fit the per-fold models of ``grader eval``, on training folds only; every choice below (tree
settings, the linear head's rank and share, exemplar blend numbers) is made by cross-validation inside the
data given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import joblib
import numpy as np
import sklearn
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import nnls
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from grader.answer_features import FEATURES, FROM_VECTORS, HEAD_ONLY, MONOTONE
from grader.answer_views import AnswerViews, ExemplarRidge
from grader.custom_model import CustomModel, ExemplarBlend, LinearHead, custom_model_path, embedding_terms
from grader.scoring import ScoreModel

log = logging.getLogger(__name__)

# Jitter of the similarity features, in training standard deviations. int8 moved them by 0.11-0.14 of one
# (95th percentile over evaluation answers), which stepped scores by up to 1.3 points at tree splits; at
# 0.2 the steps averaged out (at most 0.17) and predictions kept r 0.998 with the unsmoothed ones.
SMOOTHING_WIDTH = 0.2

GRID: list[dict] = [  # chosen per fit by inner cross-validation grouped by question
    dict(max_iter=100, learning_rate=0.05, max_leaf_nodes=8, min_samples_leaf=40),
    dict(max_iter=200, learning_rate=0.03, max_depth=3, min_samples_leaf=30, l2_regularization=1.0),
    dict(max_iter=300, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=20),
]


def tree_features(features: tuple[str, ...]) -> tuple[str, ...]:
    """The features the trees split on (all but ``HEAD_ONLY``); the head reads all of ``features``."""
    return tuple(f for f in features if f not in HEAD_ONLY)


def _regressor(params: dict, features: tuple[str, ...], rows: int) -> HistGradientBoostingRegressor:
    # a small file of graded answers would otherwise leave every leaf too small to split: a constant
    params = {**params, "min_samples_leaf": min(int(params["min_samples_leaf"]), max(3, rows // 8))}
    return HistGradientBoostingRegressor(monotonic_cst=[MONOTONE[f] for f in features], random_state=0, **params)


HEAD_ALPHA = 1.0
HEAD_SHARES = np.round(np.linspace(0.0, 1.0, 11), 2)  # the head's share in the score, chosen by inner CV
# Rank of the head's bilinear terms, chosen by inner CV (0: product and gap only). With 32 directions the
# products number 1,024; their scale (half the coordinates' product over the rank) held them to a penalty
# under which they lifted Mohler without costing ADS more than a few thousandths in development runs.
HEAD_RANKS = (0, 32)
CROSS_SCALE = 0.5


def fit_head(x: np.ndarray, pairs: np.ndarray, y: np.ndarray, features: tuple[str, ...],
             share: float = 1.0, rank: int = 0) -> LinearHead:
    """Ridge over the standardised features and the embedding terms of ``pairs``, each feature's sign held to
    MONOTONE; with ``rank``, bilinear terms on that many principal directions of the rows' embeddings."""
    columns = [FEATURES.index(f) for f in features]
    raw = x[:, columns]
    mean, scale = raw.mean(0), raw.std(0)
    scale[scale == 0] = 1.0
    z = (raw - mean) / scale
    sign = np.array([MONOTONE[f] for f in features])
    held, free = sign != 0, sign == 0
    dim = pairs.shape[1] // 2
    center, basis = np.zeros(dim), np.zeros((0, dim))
    if rank:
        embeddings = np.vstack(np.split(pairs, 2, axis=1))
        pca = PCA(n_components=min(rank, *embeddings.shape), random_state=0).fit(embeddings)
        spread = np.sqrt(np.maximum(pca.explained_variance_, 1e-12))
        center, basis = pca.mean_, pca.components_ / spread[:, None] * np.sqrt(CROSS_SCALE / len(spread))
    terms = embedding_terms(pairs, basis, center)
    held_weights, free_weights, intercept = sign_held_ridge(z[:, held] * sign[held], np.hstack([z[:, free], terms]),
                                                            y, HEAD_ALPHA)
    standardised = np.zeros(len(features))
    standardised[held] = held_weights * sign[held]
    standardised[free] = free_weights[: free.sum()]
    weights = standardised / scale
    embedding = free_weights[free.sum():]
    return LinearHead(share=share, alpha=HEAD_ALPHA, intercept=float(intercept - (weights * mean).sum()),
                      weights={f: float(w) for f, w in zip(features, weights, strict=True)},
                      pair=[float(w) for w in embedding[: 2 * dim]], cross=[float(w) for w in embedding[2 * dim:]],
                      center=[round(float(c), 6) for c in center] if len(basis) else [],
                      basis=[[round(float(v), 6) for v in row] for row in basis])


def sign_held_ridge(held: np.ndarray, free: np.ndarray, y: np.ndarray,
                    alpha: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Ridge regression (intercept unpenalised) whose ``held`` columns' weights are kept >= 0: (held weights,
    free weights, intercept).

    The free weights have a closed form for given held ones, which leaves a small non-negative least squares
    in the held weights alone: min |L^-1 (y - H w)|^2 + |w|^2 with L L' = F F' + alpha I. Exact, and with
    thousands of embedding terms a few seconds faster per fit than an iterative bounded solver.
    """
    h, f, target = held - held.mean(0), free - free.mean(0), y - y.mean()
    gram = cho_factor(f @ f.T + alpha * np.eye(len(y)), lower=True)
    factor = np.tril(gram[0])
    whitened_held = solve_triangular(factor, h, lower=True)
    whitened_target = solve_triangular(factor, target, lower=True)
    w = np.zeros(h.shape[1])
    if h.shape[1]:  # scipy's nnls aborts the interpreter on a matrix without columns
        w, _ = nnls(np.vstack([whitened_held, np.eye(h.shape[1])]),
                    np.concatenate([whitened_target, np.zeros(h.shape[1])]))
    v = f.T @ cho_solve(gram, target - h @ w)
    return w, v, float(y.mean() - held.mean(0) @ w - free.mean(0) @ v)


def choose_settings(x: np.ndarray, y: np.ndarray, questions: np.ndarray, features: tuple[str, ...],
                    pairs: np.ndarray | None = None) -> tuple[dict, float | None, int]:
    """The ``GRID`` entry with the lowest squared error on inner folds that hold out whole questions, and
    with ``pairs`` the head's rank (of ``HEAD_RANKS``) and share (of ``HEAD_SHARES``) that lower it most
    beside those trees."""
    if len(np.unique(questions)) < 3:
        return GRID[0], None, 0
    splits = question_groups(questions, 5)
    on_trees = tree_features(features)
    columns = [FEATURES.index(f) for f in on_trees]
    trees = np.zeros((len(GRID), len(y)))
    heads = np.zeros((len(HEAD_RANKS), len(y)))
    for train, test in splits:
        for i, params in enumerate(GRID):
            fitted = _regressor(params, on_trees, len(train)).fit(x[train][:, columns], y[train])
            trees[i, test] = fitted.predict(x[test][:, columns])
        if pairs is not None:
            for i, rank in enumerate(HEAD_RANKS):
                heads[i, test] = fit_head(x[train], pairs[train], y[train], features, rank=rank).predict(
                    x[test], pairs[test])
    best = int(np.argmin(((np.clip(trees, 0, 1) - y) ** 2).sum(1)))
    if pairs is None:
        return GRID[best], None, 0
    errors = np.array([[((np.clip((1 - w) * trees[best] + w * head, 0, 1) - y) ** 2).sum() for w in HEAD_SHARES]
                       for head in heads])
    rank, share = np.unravel_index(int(np.argmin(errors)), errors.shape)
    return GRID[best], float(HEAD_SHARES[share]), HEAD_RANKS[rank]


def fit_model(x: np.ndarray, y: np.ndarray, model_id: str, features: tuple[str, ...] = FEATURES,
              questions: np.ndarray | None = None, params: dict | None = None, pairs: np.ndarray | None = None,
              share: float | None = None, rank: int = 0) -> CustomModel:
    """Monotone gradient-boosted trees on the named features, with ``pairs`` (the answers' pair vectors)
    mixed with a linear head. Settings ``params`` and the head's ``share`` and ``rank`` as given (no share: no
    head), or without ``params`` all chosen by inner CV when ``questions`` is given, else the first ``GRID``
    entry and no head."""
    if params is None:
        params, share, rank = (choose_settings(x, y, questions, features, pairs) if questions is not None
                               else (GRID[0], None, 0))
    on_trees = tree_features(features)
    columns = [FEATURES.index(f) for f in on_trees]
    fitted = _regressor(params, on_trees, len(y)).fit(x[:, columns], y)
    smoothing = {f: round(SMOOTHING_WIDTH * float(np.std(x[:, FEATURES.index(f)])), 6)
                 for f in FROM_VECTORS if f in on_trees}
    head = fit_head(x, pairs, y, features, share, rank) if pairs is not None and share else None
    model = CustomModel(model=model_id, features=list(on_trees), monotone=[MONOTONE[f] for f in on_trees],
                        params=params, smoothing=smoothing, head=head, sklearn=sklearn.__version__)
    return model.with_estimator(fitted)


def exemplar_terms(blend: ExemplarBlend, views: AnswerViews, questions: np.ndarray, y: np.ndarray,
                   base: np.ndarray, pool: np.ndarray, rows: np.ndarray,
                   ridges: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ridge residual, kNN residual, exemplar count) for each of ``rows``, exemplars from ``pool`` only.

    Neighbours are searched with faiss, one flat inner-product index per question, as ``ExemplarStore``
    does; only exemplars of the row's own question count. ``ridges`` keeps each question's fitted ridges
    (one per penalty) across calls that differ only in the blend's other numbers.
    """
    import faiss

    ridge, knn, total = np.zeros(len(rows)), np.zeros(len(rows)), np.zeros(len(rows), dtype=int)
    for question in np.unique(questions[rows]):
        mine = pool[questions[pool] == question]
        where = np.flatnonzero(questions[rows] == question)
        if not len(mine):
            continue
        residuals = y[mine] - base[mine]
        exemplars, answers = _question_views(views, mine), _question_views(views, rows[where], mine)
        key = (mine.tobytes(), residuals.tobytes())
        fitted = ridges.get(key, {}) if ridges is not None else {}
        if blend.alpha not in fitted:  # every penalty of the search at once: the views are computed once
            penalties = {blend.alpha, *(PENALTIES if ridges is not None else ())}
            fitted = ExemplarRidge.penalties(exemplars, residuals, penalties)
            if ridges is not None:
                ridges[key] = fitted
        ridge[where] = fitted[blend.alpha].predict(answers)
        queries = np.ascontiguousarray(answers.vectors, dtype=np.float32)
        index = faiss.IndexFlatIP(views.vectors.shape[1])
        index.add(np.ascontiguousarray(exemplars.vectors, dtype=np.float32))
        sims, near = index.search(queries, min(blend.k, len(mine)))
        knn[where] = blend.knn_residual(sims, residuals[near])
        total[where] = len(mine)
    return ridge, knn, total


def _question_views(views: AnswerViews, rows: np.ndarray, exemplars: np.ndarray | None = None) -> AnswerViews:
    """``rows`` of one question, with its own token coverage columns (as wide as its ``exemplars``' own,
    ``rows``' by default)."""
    taken = views.take(rows)
    if taken.token_coverage is None:
        return taken
    width = int((~np.isnan(views.token_coverage[(exemplars if exemplars is not None else rows)[0]])).sum())
    return taken._replace(token_coverage=np.nan_to_num(taken.token_coverage[:, :width]) if width else None)


def rubric_base(x: np.ndarray, score: ScoreModel) -> np.ndarray:
    """The bank's score formula (0-1) on a feature table: how a question with a full rubric is scored
    before exemplars (these data sets state no misconceptions, so no penalties)."""
    coverage, reference = x[:, FEATURES.index("coverage")], x[:, FEATURES.index("ref_scaled")]
    return np.clip(score.coverage_weight * coverage + score.reference_weight * reference + score.bias, 0.0, 1.0)


def warm_predict(base: np.ndarray, blend: ExemplarBlend, y: np.ndarray, views: AnswerViews,
                 questions: np.ndarray, pool: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Scores of ``rows`` with exemplars from ``pool``, over ``base`` scores of every row (the exemplars'
    own are in-sample, as when a platform adds graded answers to a model that has seen them)."""
    ridge, knn, total = exemplar_terms(blend, views, questions, y, base, pool, rows)
    return np.array([blend.apply(base[r], ridge[i], knn[i], total[i]) for i, r in enumerate(rows)])


PENALTIES = (0.03, 0.1, 0.3)  # of the exemplar ridge, whose views' kernels have unit mean self-similarity
SEARCH = [dict(alpha=a, temperature=t) for a in PENALTIES for t in (0.02, 0.05)]
WEIGHTS = [dict(prior=p, ridge=r, knn=k) for p in (0.0, 3.0, 10.0, 30.0) for r in (0.0, 0.5, 0.75, 1.0)
           for k in (0.0, 0.25, 0.5)]
# Exemplars per question in the inner folds' pools: all of a training fold (dozens here), and few, as a
# platform that has just started grading has. Without the small pools nothing would teach the blend how
# far to trust two or three grades (``prior``), and one harsh grade could move every answer.
POOL_SIZES: tuple[int | None, ...] = (None, 10, 3)


def _subsample(pool: np.ndarray, questions: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """At most ``size`` rows of ``pool`` per question (all with None)."""
    if size is None:
        return pool
    rng = np.random.default_rng(seed)
    kept = [rng.permutation(pool[questions[pool] == q])[:size] for q in np.unique(questions[pool])]
    return np.sort(np.concatenate(kept))


def fit_blend(x: np.ndarray, y: np.ndarray, views: AnswerViews, questions: np.ndarray, model_id: str,
              folds: int = 5, features: tuple[str, ...] = FEATURES, params: dict | None = None,
              fixed_base: np.ndarray | None = None, pairs: np.ndarray | None = None,
              share: float | None = None, rank: int = 0) -> tuple[ExemplarBlend, float]:
    """Exemplar blend numbers by inner cross-validation (each question's answers split across folds).

    The blend corrects a base score: the custom-question model refitted on each inner training fold
    (settings ``params``, head share ``share`` and rank ``rank`` over ``pairs``), or ``fixed_base`` (the
    bank's formula, which nothing here fits).
    """
    idx = np.arange(len(y))
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=1).split(idx, questions))
    bases = []
    for train, _ in splits:
        if fixed_base is not None:
            bases.append(fixed_base)
            continue
        inner_pairs = pairs[train] if pairs is not None and share else None
        model = fit_model(x[train], y[train], model_id, features, params=params, pairs=inner_pairs, share=share,
                          rank=rank)
        bases.append(model.predict(x, pairs))  # in-sample for the exemplars, out-of-fold for the test rows
    pools = [(base, _subsample(train, questions, size, seed=i), test)
             for i, (base, (train, test)) in enumerate(zip(bases, splits, strict=True)) for size in POOL_SIZES]
    best, best_error, ridges = None, np.inf, {}
    for search in SEARCH:
        probe = ExemplarBlend(k=10, prior=0.0, ridge=1.0, knn=1.0, **search)
        terms = [exemplar_terms(probe, views, questions, y, base, pool, test, ridges)
                 for base, pool, test in pools]
        for weights in WEIGHTS:
            blend = ExemplarBlend(k=10, **search, **weights)
            error = 0.0
            for (base, _, test), (ridge, knn, total) in zip(pools, terms, strict=True):
                say = np.where(total > 0, total / (total + blend.prior + 1e-12), 0.0)
                predicted = np.clip(base[test] + say * (blend.ridge * ridge + blend.knn * knn), 0, 1)
                error += float(((predicted - y[test]) ** 2).sum())
            if error < best_error:
                best, best_error = blend, error
    assert best is not None
    return best, best_error / (len(y) * len(POOL_SIZES))


def head_settings(model: CustomModel) -> dict:
    """The head's share and rank, for refitting the same model on other rows."""
    return {"share": model.head.share, "rank": len(model.head.basis)} if model.head else {"share": None}


def question_groups(questions: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner folds that keep each question's answers together (for cold-start choices)."""
    n = min(folds, len(np.unique(questions)))
    return list(GroupKFold(n).split(np.arange(len(questions)), groups=questions))


def main(argv: list[str] | None = None) -> None:
    from eval.datasets import load_dataset
    from eval.features import FeatureTable, extract
    from grader.grader import Grader

    parser = argparse.ArgumentParser(description="Fit the custom-question score model on graded answers.")
    parser.add_argument("--data", type=Path, help="folder with mohler_v2.jsonl and ads_train.jsonl")
    parser.add_argument("--model", default=None, help="embedding model (default: settings)")
    parser.add_argument("--datasets", nargs="+", default=["mohler", "ads"])
    args = parser.parse_args(argv)
    grader = Grader.from_settings(model=args.model)
    tables = [extract(grader, load_dataset(name, args.data)) for name in args.datasets]
    table = FeatureTable.concat(tables)
    keep = ~table.empty
    x, y = table.x[keep], table.y[keep]
    questions = np.array([f"{i}:{q}" for i, t in enumerate(tables) for q in t.questions])[keep]
    with threadpool_limits(limits=1, user_api="openmp"):  # small data: threads only thrash
        pairs = table.pairs[keep]
        model = fit_model(x, y, grader.embedder.model_id, questions=questions, pairs=pairs)
        views = table.views().take(np.flatnonzero(keep))
        blend, error = fit_blend(x, y, views, questions, grader.embedder.model_id,
                                 params=dict(model.params), pairs=pairs, **head_settings(model))
        rubric_blend, rubric_error = fit_blend(x, y, views, questions, grader.embedder.model_id,
                                               fixed_base=rubric_base(x, grader.calibration.score))
    path = custom_model_path(grader.embedder.model_id)
    artifact = path.with_suffix(".joblib")
    joblib.dump(model._estimator, artifact)
    model = model.model_copy(update={
        "artifact": artifact.name,
        "exemplars": blend,
        "rubric_exemplars": rubric_blend,
        "fitted_on": f"{', '.join(args.datasets)} ({len(y)} graded answers, ../shared/eval-data)",
        "command": "python -m eval.fit_custom " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cross_validated": {"warm_rmse_fraction": round(float(np.sqrt(error)), 4),
                            "rubric_warm_rmse_fraction": round(float(np.sqrt(rubric_error)), 4)},
    })
    path.write_text(json.dumps(model.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    log.warning("wrote %s", path)


if __name__ == "__main__":
    main()
