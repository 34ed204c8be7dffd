"""Similarity maths on unit vectors: pure numpy, no models, no I/O.

Names give the output's shape: ``*_matrix`` returns (n, m) for inputs of n and m rows,
``pairwise_*`` returns (n,) for two inputs of n rows each.
"""

from __future__ import annotations

import numpy as np


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cos_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b``.

    >>> cos_matrix(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 2.0]])).tolist()
    [[1.0, 0.0]]
    """
    return normalize_rows(np.atleast_2d(a)) @ normalize_rows(np.atleast_2d(b)).T


def euclidean_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row of ``a`` to every row of ``b`` (raw vectors, not normalised).

    >>> euclidean_matrix(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])).tolist()
    [[5.0]]
    """
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def unit_euclidean(cosine: np.ndarray | float) -> np.ndarray | float:
    """Euclidean distance between unit vectors with the given cosine: sqrt(2 - 2 cos)."""
    return np.sqrt(np.maximum(2.0 - 2.0 * np.asarray(cosine), 0.0))


def pairwise_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of ``a`` with row i of ``b``."""
    return (normalize_rows(a) * normalize_rows(b)).sum(1)


def margin(answer: np.ndarray, wrong: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """How much closer each answer row is to the wrong claim than to its correction.

    Positive means the sentence sides with the misconception.
    """
    return pairwise_cos(answer, wrong) - pairwise_cos(answer, correct)
