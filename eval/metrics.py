"""Agreement between the grader and people: Pearson, Spearman, quadratic-weighted kappa, RMSE."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import cohen_kappa_score, mean_squared_error


class Agreement(BaseModel):
    """Scores on the dataset's own scale; ``qwk`` on its integer grades (0..integer_max)."""

    model_config = ConfigDict(extra="forbid")
    pearson: float
    spearman: float
    qwk: float
    rmse: float
    n: int


def to_grades(scores: np.ndarray, scale_max: float, integer_max: int) -> np.ndarray:
    """Scores to the nearest integer grade (halves round up, as a teacher would).

    >>> to_grades(np.array([0.0, 2.5, 4.74, 5.0]), 5.0, 5).tolist()
    [0, 3, 5, 5]
    """
    return np.clip(np.floor(np.asarray(scores) / scale_max * integer_max + 0.5), 0, integer_max).astype(int)


def _nan_to_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else float(value)


def agreement(human: np.ndarray, predicted: np.ndarray, scale_max: float, integer_max: int) -> Agreement:
    """Agreement of ``predicted`` with ``human`` (both on the 0..scale_max scale).

    A constant prediction has no correlation, and kappa is undefined when the two sides share at most
    one grade (a small question); both are reported as 0 rather than NaN.
    """
    human, predicted = np.asarray(human, dtype=float), np.asarray(predicted, dtype=float)
    constant = len(human) < 2 or np.ptp(human) == 0 or np.ptp(predicted) == 0
    pearson = 0.0 if constant else _nan_to_zero(pearsonr(human, predicted).statistic)
    spearman = 0.0 if constant else _nan_to_zero(spearmanr(human, predicted).statistic)
    labels = list(range(integer_max + 1))
    qwk = _nan_to_zero(cohen_kappa_score(to_grades(human, scale_max, integer_max),
                                         to_grades(predicted, scale_max, integer_max),
                                         weights="quadratic", labels=labels, replace_undefined_by=0.0))
    rmse = float(np.sqrt(mean_squared_error(human, predicted)))
    return Agreement(pearson=round(pearson, 4), spearman=round(spearman, 4), qwk=round(qwk, 4),
                     rmse=round(rmse, 4), n=len(human))
