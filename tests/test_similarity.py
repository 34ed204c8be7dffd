import numpy as np
import pytest

from grader.similarity import cos_matrix, euclidean_matrix, margin, pairwise_cos, unit_euclidean


def test_cosine_of_known_vectors():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 3.0], [2.0, 0.0], [-1.0, -1.0]])
    expected = np.array([[0.0, 1.0, -np.sqrt(0.5)], [np.sqrt(0.5), np.sqrt(0.5), -1.0]])
    np.testing.assert_allclose(cos_matrix(a, b), expected, atol=1e-12)


def test_cosine_ignores_length_and_matches_numpy_on_random_vectors():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 16)), rng.normal(size=(5, 16))
    expected = (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(cos_matrix(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(cos_matrix(3 * a, b), expected, atol=1e-12)


def test_euclidean_of_known_vectors():
    a = np.array([[0.0, 0.0], [1.0, 1.0]])
    b = np.array([[3.0, 4.0], [1.0, 1.0]])
    np.testing.assert_allclose(euclidean_matrix(a, b), [[5.0, np.sqrt(2)], [np.sqrt(13), 0.0]], atol=1e-12)


def test_euclidean_matches_numpy_and_cosine_relation_on_unit_vectors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 8)), rng.normal(size=(4, 8))
    brute = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    np.testing.assert_allclose(euclidean_matrix(a, b), brute, atol=1e-9)
    ua, ub = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(euclidean_matrix(ua, ub), unit_euclidean(cos_matrix(ua, ub)), atol=1e-9)


def test_pairwise_and_margin():
    answer = np.array([[1.0, 0.0], [0.0, 1.0]])
    wrong = np.array([[1.0, 0.1], [1.0, 0.0]])
    right = np.array([[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(pairwise_cos(answer, right), [0.0, 1.0])
    sides = margin(answer, wrong, right)
    assert sides[0] > 0.9 and sides[1] == pytest.approx(-1.0)
