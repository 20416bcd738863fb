"""Mergeable per-feature moments, pure numpy (no JAX): one definition for the dataset cards
(`lake_schema.cards`, computed when a checkpoint is written) and the training loader's
standardisation statistics (`trainer.data.stats`).

`moments` summarises a set of vectors by (count, mean, M2); `combine` merges two summaries of
disjoint sets exactly (Chan, Golub and LeVeque's parallel update), so the statistics of any
union of checkpoints (quality `high`, checkpoints 0..2, a whole run) follow from the stored
per-checkpoint summaries without reading a step again, and a dataset larger than memory is
summarised batch by batch with no second pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Moments:
    """Count, per-feature mean and sum of squared deviations (M2) of a set of vectors."""

    count: int
    mean: np.ndarray  # [F] float64
    m2: np.ndarray  # [F] float64

    @classmethod
    def empty(cls, width: int) -> Moments:
        return cls(0, np.zeros(width), np.zeros(width))

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per feature (as np.std); zeros when empty."""
        return np.sqrt(self.m2 / self.count) if self.count else np.zeros_like(self.m2)


def moments(x: np.ndarray) -> Moments:
    """Moments of x [..., F] over every leading axis, accumulated in float64."""
    flat = np.asarray(x).reshape(-1, x.shape[-1]).astype(np.float64)
    if flat.shape[0] == 0:
        return Moments.empty(x.shape[-1])
    mean = flat.mean(axis=0)
    return Moments(flat.shape[0], mean, ((flat - mean) ** 2).sum(axis=0))


def combine(a: Moments, b: Moments) -> Moments:
    """Moments of the union of two disjoint sets (exact, order-independent up to rounding)."""
    if a.count == 0:
        return b
    if b.count == 0:
        return a
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / n)
    m2 = a.m2 + b.m2 + delta**2 * (a.count * b.count / n)
    return Moments(n, mean, m2)
