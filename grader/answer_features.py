"""The named numbers a learned score model reads for one answer (custom questions and exemplars).

They come from what ``Grader.features`` already computes (probe coverage of each key point, the best
reference's cosine and distance, detector outputs) plus word overlap with the references, which
sentence encoders blur: English content words, Chinese character 1-2-grams, and the same taken token by
token on the encoder's contextual vectors (``grader.alignment``). Overlap is also taken with the
question's own words removed ("question demoting"): repeating the question is no evidence.
"""

from __future__ import annotations

import math
import re

import numpy as np

from grader.alignment import ALIGNMENT_FEATURES
from grader.compiled import CompiledQuestion
from grader.scoring import Calibration
from grader.text import content_terms

# +1: a higher value should never lower the score; -1: never raise it; 0: no constraint.
MONOTONE: dict[str, int] = {
    "coverage": 1,
    "coverage_min": 1,
    "point_cos_mean": 1,
    "point_cos_max": 1,
    "ref_cos": 1,
    "ref_dist": -1,
    "ref_scaled": 1,
    "recall": 1,
    "precision": 0,
    "f1": 1,
    "demoted_recall": 1,
    "demoted_f1": 1,
    "question_cos": 0,
    "copied": 0,
    "log_chars": 0,
    "length_ratio": 0,
    "fluency": 0,
    "grammar": -1,
    "dont_know": -1,
    "tok_recall": 1,
    "tok_precision": 0,
    "tok_f1": 1,
    "tok_recall_all": 1,
}
FEATURES: tuple[str, ...] = tuple(MONOTONE)
# Read by the linear head only: in the trees as well they added nothing on Mohler (r 0.631 against 0.632)
# and cost ADS cold 0.005 (0.658 against 0.663, development runs).
HEAD_ONLY: tuple[str, ...] = ALIGNMENT_FEATURES
# Computed from vector similarities, so they move with the model's numerics (another backend, int8): the
# score model averages its prediction over a small jitter of these (``CustomModel.smoothing``).
FROM_VECTORS: tuple[str, ...] = ("coverage", "coverage_min", "point_cos_mean", "point_cos_max", "ref_cos",
                                 "ref_dist", "ref_scaled", "question_cos")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_PUNCT = re.compile(r"[\s\W_]+")


def terms(text: str) -> set[str]:
    """Overlap units: Chinese character 1- and 2-grams, English content words (both, for mixed text).

    >>> sorted(terms("栈是LIFO"))
    ['lifo', '是', '栈', '栈是']
    """
    units = set()
    if _HAN.search(text):
        for run in _PUNCT.split(re.sub(r"[A-Za-z0-9]+", " ", text)):
            units.update(run)
            units.update(run[i : i + 2] for i in range(len(run) - 1))
    units.update(t for t in content_terms(text) if not _HAN.search(t))
    return units


def overlap(answer: set[str], reference: set[str]) -> tuple[float, float, float]:
    """(recall of the reference's units, precision of the answer's, F1)."""
    shared = len(answer & reference)
    recall = shared / len(reference) if reference else 0.0
    precision = shared / len(answer) if answer else 0.0
    f1 = 2 * recall * precision / (recall + precision) if shared else 0.0
    return recall, precision, f1


def pair_vector(answer: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """An answer's embedding and its closest reference's, side by side: what the score model's linear head
    reads (``grader.custom_model.embedding_terms``), because one cosine sums their agreement up with every
    dimension weighted alike."""
    answer, reference = np.asarray(answer, dtype=float), np.asarray(reference, dtype=float)
    return np.concatenate([answer, reference], axis=-1)


def feature_vector(raw: dict, compiled: CompiledQuestion, answer: str, calibration: Calibration) -> dict[str, float]:
    """Named features of one (non-empty) answer; ``raw`` is ``Grader.features``'s output for it."""
    lang = raw["lang"]
    point_p = calibration.point(raw["point_probe"], calibration.scale(raw["point_cos"], lang))
    weights = np.array([k.weight for k in compiled.rubric.key_points])
    answer_terms = terms(answer)
    question_terms = terms(" ".join(compiled.questions.texts))
    best = (0.0, 0.0, 0.0)
    demoted = (0.0, 0.0, 0.0)
    for reference in compiled.references.texts:
        reference_terms = terms(reference)
        best = max(best, overlap(answer_terms, reference_terms))
        demoted = max(demoted, overlap(answer_terms - question_terms, reference_terms - question_terms))
    reference_chars = max(np.mean([len(r) for r in compiled.references.texts]), 1.0)
    return {
        "coverage": float((weights * point_p).sum() / weights.sum()),
        "coverage_min": float(point_p.min()),
        "point_cos_mean": float(np.mean(raw["point_cos"])),
        "point_cos_max": float(np.max(raw["point_cos"])),
        "ref_cos": raw["ref_cos"],
        "ref_dist": raw["ref_dist"],
        "ref_scaled": float(calibration.scale(raw["ref_cos"], lang)),
        "recall": best[0],
        "precision": best[1],
        "f1": best[2],
        "demoted_recall": demoted[0],
        "demoted_f1": demoted[2],
        "question_cos": raw["question_cos"],
        "copied": raw["copied"],
        "log_chars": math.log1p(len(answer)),
        "length_ratio": math.log((len(answer) + 1) / reference_chars),
        "fluency": float(min(raw["fluency"].ratio, 3.0)),
        "grammar": raw["grammar"],
        "dont_know": float(raw["dont_know"]),
        **raw["alignment"],
    }
