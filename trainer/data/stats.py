"""Observation standardisation statistics: per-feature mean/std, pure numpy.

The moments themselves (`Moments`, `moments`, `combine`: Chan et al.'s parallel update) live
in `lake_schema.stats`, shared with the dataset cards: the cache builder takes each whole
selected checkpoint's moments from its card and computes the rest (partly selected
checkpoints, lakes without cards) batch by batch, merging everything with `combine`, so the
statistics are exact without a second pass. Statistics are pooled over agent-steps of all
the selection's (training) tasks of one environment.
A feature that is constant over the data (std below `MIN_STD`) gets std 1: it is only
centred, never divided by ~0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lake_schema.stats import Moments

MIN_STD = 1e-6


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
        std = np.where(m.std < min_std, 1.0, m.std)  # population std, as np.std
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
