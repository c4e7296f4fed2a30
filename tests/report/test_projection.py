"""The report's 2-D projection and its same-neuron nearest-neighbour score."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.report.projection import pca_2d, same_neuron_neighbours


def test_pca_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) @ np.diag([5.0, 2.0, 1.0, 0.5, 0.2, 0.1]) + 3.0
    points, explained = pca_2d(x)
    # Reference computed another way: eigen-decomposition of the covariance matrix.
    centred = x - x.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(values)[::-1][:2]
    reference = centred @ vectors[:, order]
    for k in range(2):
        assert np.allclose(np.abs(points[:, k]), np.abs(reference[:, k]), atol=1e-8)
        # The sign is fixed so that each axis' largest coordinate is positive.
        assert points[np.argmax(np.abs(points[:, k])), k] > 0
    assert np.allclose(explained, values[order] / values.sum())


def test_pca_of_too_few_rows_still_gives_two_coordinates():
    assert pca_2d(np.ones((1, 4)))[0].shape == (1, 2)
    points, explained = pca_2d(np.array([[0.0, 0.0], [2.0, 0.0]]))
    assert np.allclose(np.abs(points), [[1.0, 0.0], [1.0, 0.0]]) and np.allclose(explained, [1.0, 0.0])


def test_neighbour_score_counts_same_neuron_nearest_neighbours():
    # Animal A: sessions s1 and s2 record neurons 0, 1, 2; s1's neuron 2 is not in s2.
    # Embeddings put each neuron at its own point except s2's neuron 1, placed at neuron 0.
    emb = np.array([[0.0, 0], [10, 0], [20, 0],        # s1: neurons 0, 1, 2
                    [0.1, 0], [0.2, 0]])               # s2: neurons 0, 1 (misplaced)
    sessions = np.array(["s1", "s1", "s1", "s2", "s2"])
    animals = np.array(["A"] * 5)
    neurons = np.array([0, 1, 2, 0, 1])
    score = same_neuron_neighbours(emb, sessions, animals, neurons)
    # Units with a counterpart: s1/0, s1/1, s2/0, s2/1 (s1/2 has none).
    # Nearest other-session unit: s1/0 -> s2/0 (hit), s1/1 -> s2/1 (hit, 9.8 vs 9.9),
    # s2/0 -> s1/0 (hit), s2/1 -> s1/0 (miss).
    assert (score.units, score.hits) == (4, 3)
    # Chance: s1 units have 2 candidates (1 matching), s2 units 3 candidates (1 matching).
    assert score.chance == pytest.approx((0.5 + 0.5 + 1 / 3 + 1 / 3) / 4)
    assert score.rate == pytest.approx(0.75)


def test_neighbour_score_never_matches_across_animals():
    emb = np.zeros((4, 2))
    score = same_neuron_neighbours(emb, np.array(["a", "b", "c", "d"]), np.array(["A", "B", "A", "B"]),
                                   np.array([0, 0, 1, 1]))
    assert score.units == 0 and np.isnan(score.rate)
