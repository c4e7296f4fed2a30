"""Two-dimensional pictures of embedding tables, and a number that says what they show.

POYO gives every (session, unit) pair its own embedding row and never tells the model which
units of two sessions are the same neuron. If training nonetheless puts the same neuron,
recorded in two sessions, in the same place, the model has found the correspondence on its
own. On simulated data the hidden pool neuron of every unit is known, so this can be
checked:

- :func:`pca_2d` projects rows onto their first two principal components (an SVD of the
  centred rows; no extra dependency) for the scatter plots;
- :func:`same_neuron_neighbours` measures, in the full embedding space rather than the 2-D
  picture, how often a unit's nearest neighbour among the *other* sessions of its animal is
  the same neuron, against the rate a random neighbour would reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` [N, D] projected on their two main axes.

    Returns ``(points [N, 2], explained [2])``: ``explained`` is the share of the total
    variance along each axis. With fewer than three rows (or rank below two) the missing
    axes are zero, so callers can always plot two coordinates.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    points = np.zeros((n, 2))
    explained = np.zeros(2)
    if n < 2:
        return points, explained
    centred = x - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    # u * s are the coordinates along the principal axes; fix each axis' sign so that the
    # picture does not flip between runs with the same embeddings.
    coords = u[:, :k] * s[:k]
    signs = np.sign(coords[np.argmax(np.abs(coords), axis=0), np.arange(k)])
    points[:, :k] = coords * np.where(signs == 0, 1.0, signs)
    total = float(np.sum(s**2))
    if total > 0:
        explained[:k] = s[:k] ** 2 / total
    return points, explained


@dataclass
class NeighbourScore:
    """How often the nearest other-session unit of the same animal is the same neuron."""

    units: int  # units whose neuron is also recorded in another session of their animal
    hits: int  # of those, units whose nearest neighbour is that same neuron
    chance: float  # expected share of hits for a neighbour drawn at random

    @property
    def rate(self) -> float:
        return self.hits / self.units if self.units else float("nan")


def same_neuron_neighbours(
    embeddings: np.ndarray, sessions: np.ndarray, animals: np.ndarray, neurons: np.ndarray
) -> NeighbourScore:
    """Nearest-neighbour test of the learned unit embeddings against the hidden neurons.

    Args:
        embeddings: [N, D] unit embedding rows.
        sessions, animals, neurons: [N] the session, animal and hidden pool neuron of each
            row (neuron indices are only comparable within one animal).

    For each unit, the candidates are the units of the same animal in other sessions
    (Euclidean distance in the full space). A unit counts only when its neuron appears
    among its candidates; ``chance`` averages, over those units, the share of candidates
    that are its neuron.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    sessions, animals, neurons = (np.asarray(a) for a in (sessions, animals, neurons))
    units = hits = 0
    chance = 0.0
    for animal in np.unique(animals):
        idx = np.nonzero(animals == animal)[0]
        e = emb[idx]
        sq = np.sum(e**2, axis=1)
        dist = sq[:, None] + sq[None, :] - 2.0 * e @ e.T
        same_session = sessions[idx][:, None] == sessions[idx][None, :]
        dist[same_session] = np.inf  # candidates live in other sessions only
        same_neuron = neurons[idx][:, None] == neurons[idx][None, :]
        candidates = ~same_session
        has_match = (same_neuron & candidates).any(axis=1)
        if not has_match.any():
            continue
        nearest = np.argmin(dist, axis=1)
        units += int(has_match.sum())
        hits += int(same_neuron[np.arange(len(idx)), nearest][has_match].sum())
        share = (same_neuron & candidates).sum(axis=1) / np.maximum(candidates.sum(axis=1), 1)
        chance += float(share[has_match].sum())
    return NeighbourScore(units=units, hits=hits, chance=chance / units if units else float("nan"))
