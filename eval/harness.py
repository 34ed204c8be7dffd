"""``grader eval``: the grader's agreement with human grades under a dataset's standard protocol.

Every fold's model (and exemplar blend) is fitted on that fold's training answers only; the test
answers' questions are graded as custom questions (question text + references), and exemplars, when
on, come only from training answers of the same question. With ``rubric`` (a ``ScoreModel``) the base
score is the bank's fixed formula instead of the custom-question model: that is how bank and tenant
rubrics are scored, and how their exemplar blend is measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold
from threadpoolctl import threadpool_limits

from eval.datasets import GradedSet
from eval.features import FeatureTable
from eval.fit_custom import fit_blend, fit_model, head_settings, rubric_base, warm_predict
from eval.metrics import Agreement, agreement
from grader.answer_features import FEATURES
from grader.errors import InputError
from grader.scoring import ScoreModel

Mode = Literal["cold", "warm"]


class FoldResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fold: str
    agreement: Agreement


class Report(BaseModel):
    """What ``grader eval`` prints; ``--json`` prints ``overall``'s keys at the top level plus the rest."""

    model_config = ConfigDict(extra="forbid")
    dataset: str
    protocol: str
    mode: Mode
    model: str
    base: str = "custom-question model"
    overall: Agreement
    folds: list[FoldResult]
    questions: list[FoldResult]

    def flat(self) -> dict:
        return {**self.overall.model_dump(), **self.model_dump(exclude={"overall"})}


def standard_splits(graded: GradedSet, table: FeatureTable, mode: Mode) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, train rows, test rows) per fold of the dataset's protocol."""
    idx = np.arange(len(table.y))
    if graded.protocol == "folds" or (all(table.folds) and len(set(table.folds)) > 1):
        groups = table.folds
        splits = [(f"fold {groups[te][0]}", tr, te) for tr, te in LeaveOneGroupOut().split(idx, groups=groups)]
        if mode == "warm" and all(not set(table.questions[te]) & set(table.questions[tr]) for _, tr, te in splits):
            # a "warm" number from folds that hold out whole questions would be a cold one under another name
            raise InputError(f"{graded.name}: its folds hold out whole questions, so no test question has graded "
                             "answers in training; --warm needs a set without a fold column, or --train/--test")
        return splits
    if mode == "cold":  # no graded answer of the test question is ever seen
        groups = table.questions
        if len(set(groups)) < 2:
            raise InputError(f"{graded.name}: one question only; cold cross-validation holds out whole questions "
                             "(use --warm, a fold column, or --train/--test)")
        return [(f"question {groups[te][0]}", tr, te) for tr, te in LeaveOneGroupOut().split(idx, groups=groups)]
    folds = StratifiedKFold(5, shuffle=True, random_state=0).split(idx, table.questions)
    return [(f"fold {i + 1}", tr, te) for i, (tr, te) in enumerate(folds)]


def predict_fold(train: FeatureTable, test: FeatureTable, model_id: str, mode: Mode,
                 features: tuple[str, ...] = FEATURES, rubric: ScoreModel | None = None,
                 head: bool = True, every_view: bool = True) -> np.ndarray:
    """Scores (0-1) for ``test`` from a model fitted on ``train`` only (``head``: with the linear head over
    the answers' pair vectors, as shipped; ``every_view``: exemplars compared on every view of an answer, as
    shipped, or on their embeddings only)."""
    # a few thousand rows: OpenMP threads cost more than they save, and thrash on shared cores
    with threadpool_limits(limits=1, user_api="openmp"):
        return _predict_fold(train, test, model_id, mode, features, rubric, head, every_view)


def _predict_fold(train: FeatureTable, test: FeatureTable, model_id: str, mode: Mode,
                  features: tuple[str, ...], rubric: ScoreModel | None, head: bool,
                  every_view: bool) -> np.ndarray:
    keep = ~train.empty
    both = FeatureTable.concat([train, test])
    params, head_choice = None, {}
    if rubric is not None:
        base = rubric_base(both.x, rubric)
    else:
        model = fit_model(train.x[keep], train.y[keep], model_id, features, questions=train.questions[keep],
                          pairs=train.pairs[keep] if head else None)
        base, params = model.predict(both.x, both.pairs), dict(model.params)
        head_choice = head_settings(model)
    n = len(train.y)
    rows = np.arange(n, n + len(test.y))
    predicted = base[rows]
    if mode == "warm":
        blend, _ = fit_blend(train.x[keep], train.y[keep], train.views(every_view).take(np.flatnonzero(keep)),
                             train.questions[keep], model_id,
                             features=features, params=params, pairs=train.pairs[keep], **head_choice,
                             fixed_base=base[:n][keep] if rubric is not None else None)
        predicted = warm_predict(base, blend, both.y, both.views(every_view), both.questions,
                                 np.flatnonzero(~train.empty), rows)
    predicted = np.minimum(predicted, test.ceiling)
    predicted[test.empty] = 0.0
    return predicted


def _take(table: FeatureTable, rows: np.ndarray) -> FeatureTable:
    return FeatureTable(**{k: v[rows] for k, v in table.__dict__.items()})


def _breakdown(graded: GradedSet, human: np.ndarray, predicted: np.ndarray, labels: np.ndarray) -> list[FoldResult]:
    results = []
    for label in dict.fromkeys(labels.tolist()):
        rows = labels == label
        results.append(FoldResult(fold=str(label), agreement=agreement(
            human[rows], predicted[rows], graded.scale_max, graded.integer_max)))
    return results


def evaluate(graded: GradedSet, table: FeatureTable, model_id: str, mode: Mode = "cold",
             features: tuple[str, ...] = FEATURES, rubric: ScoreModel | None = None, head: bool = True,
             every_view: bool = True) -> Report:
    """Cross-validated agreement under the dataset's protocol."""
    predicted = np.zeros(len(table.y))
    fold_of = np.empty(len(table.y), dtype=object)
    for name, train, test in standard_splits(graded, table, mode):
        predicted[test] = predict_fold(_take(table, train), _take(table, test), model_id, mode, features, rubric,
                                       head, every_view)
        fold_of[test] = name
    return _report(graded, table, predicted, fold_of.astype(str), model_id, mode, graded.protocol_text, rubric)


def evaluate_fixed(train_set: GradedSet, train: FeatureTable, test_set: GradedSet, test: FeatureTable,
                   model_id: str, mode: Mode = "cold", rubric: ScoreModel | None = None) -> Report:
    """Fit on one file, report on another."""
    predicted = predict_fold(train, test, model_id, mode, rubric=rubric)
    labels = np.full(len(test.y), "test")
    protocol = f"fit on {train_set.name} ({len(train.y)} answers), tested on {test_set.name}"
    return _report(test_set, test, predicted, labels, model_id, mode, protocol, rubric)


def _report(graded: GradedSet, table: FeatureTable, predicted: np.ndarray, folds: np.ndarray, model_id: str,
            mode: Mode, protocol: str, rubric: ScoreModel | None = None) -> Report:
    human = table.y * graded.scale_max
    scores = predicted * graded.scale_max
    return Report(
        dataset=graded.name, protocol=protocol, mode=mode, model=model_id,
        base="bank score formula" if rubric is not None else "custom-question model",
        overall=agreement(human, scores, graded.scale_max, graded.integer_max),
        folds=_breakdown(graded, human, scores, folds),
        questions=_breakdown(graded, human, scores, table.questions),
    )


def table_for(graded: GradedSet, model: str | None = None, cache: Path | None = None) -> tuple[FeatureTable, str]:
    """The dataset's feature table from a grader built from settings (embeddings come from the disk cache)."""
    from eval.features import extract
    from grader.grader import Grader

    grader = Grader.from_settings(model=model)
    return extract(grader, graded), grader.embedder.model_id


def run(dataset: str | None, data: Path | None = None, train: Path | None = None, test: Path | None = None,
        mode: Mode = "cold", model: str | None = None, rubric_formula: bool = False) -> Report:
    """What ``grader eval`` does: a named dataset under its protocol, or ``train`` -> ``test`` files.

    ``rubric_formula``: score with the bank's formula (as bank and tenant rubrics are) instead of the
    custom-question model."""
    from eval.datasets import load_dataset, load_graded
    from eval.features import extract
    from grader.grader import Grader

    if (train is None) != (test is None):
        raise InputError("--train and --test go together: fit on one file, report on the other")
    if train is None and not dataset:
        raise InputError("name a dataset (mohler, ads or a file) or give --train FILE --test FILE")
    grader = Grader.from_settings(model=model)
    model_id = grader.embedder.model_id
    rubric = grader.calibration.score if rubric_formula else None
    if train is not None and test is not None:
        train_set, test_set = load_graded(train), load_graded(test)
        return evaluate_fixed(train_set, extract(grader, train_set), test_set, extract(grader, test_set),
                              model_id, mode, rubric)
    graded = load_dataset(dataset, data)
    return evaluate(graded, extract(grader, graded), model_id, mode, rubric=rubric)


def render(report: Report, breakdown: int = 20) -> str:
    """Plain-text table: overall, then the folds (or questions), worst first when there are many."""
    head = f"{report.dataset}: {report.protocol}; {report.mode}, {report.base}, model {report.model}"
    cells = "{:<22} {:>6} {:>8} {:>8} {:>6} {:>7}"
    lines = [head, cells.format("", "n", "pearson", "spearman", "qwk", "rmse")]

    def line(name: str, a: Agreement) -> str:
        return cells.format(name[:22], a.n, f"{a.pearson:.3f}", f"{a.spearman:.3f}", f"{a.qwk:.3f}", f"{a.rmse:.3f}")

    lines.append(line("overall", report.overall))
    parts = report.folds if len(report.folds) > 1 else report.questions
    for part in sorted(parts, key=lambda p: p.agreement.pearson)[:breakdown]:
        lines.append(line(part.fold, part.agreement))
    if len(parts) > breakdown:
        lines.append(f"... {len(parts) - breakdown} more (--json lists all)")
    return "\n".join(lines)
