"""Observation standardisation statistics: streaming per-feature mean/std, pure numpy.

The cache builder feeds every selected step's real agents through `moments` batch by batch
and merges the partial results with `combine` (Chan et al.'s parallel update), so the
statistics of a dataset larger than memory are exact without a second pass. Statistics are
pooled over agent-steps of all the selection's (training) tasks of one environment.
A feature that is constant over the data (std below `MIN_STD`) gets std 1: it is only
centred, never divided by ~0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_STD = 1e-6


@dataclass(frozen=True, eq=False)
class Moments:
    """Count, per-feature mean and sum of squared deviations (M2) of a set of vectors."""

    count: int
    mean: np.ndarray  # [F] float64
    m2: np.ndarray  # [F] float64

    @classmethod
    def empty(cls, width: int) -> Moments:
        return cls(0, np.zeros(width), np.zeros(width))


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


@dataclass(frozen=True, eq=False)
class ObsStats:
    """Per-feature mean and std of one environment's observations (float32, [F])."""

    mean: np.ndarray
    std: np.ndarray
    count: int  # agent-steps they were computed over

    @classmethod
    def from_moments(cls, m: Moments, min_std: float = MIN_STD) -> ObsStats:
        if m.count == 0:
            raise ValueError("no observations to compute standardisation statistics from")
        std = np.sqrt(m.m2 / m.count)  # population std, as np.std
        std = np.where(std < min_std, 1.0, std)
        return cls(m.mean.astype(np.float32), std.astype(np.float32), int(m.count))

    def standardise(self, obs: np.ndarray, dtype=np.float32) -> np.ndarray:
        """(obs - mean) / std for obs [..., F] of any numeric dtype."""
        out = obs.astype(np.float32)
        out -= self.mean
        out *= np.float32(1.0) / self.std
        return out.astype(dtype, copy=False)

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": self.count}

    @classmethod
    def from_json(cls, d: dict) -> ObsStats:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32),
                   int(d["count"]))
