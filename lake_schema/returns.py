"""Discounted returns-to-go of recorded episodes, and how many fall outside a value support.

Why: the offline critics (CQL-Sable's and Oryx's value heads) classify values with HL-Gauss
over a fixed support per environment (the paper's appendix K: [-1, 1] for lbf and
connector, [-20, 20] for rware). A return-to-go outside that support is clipped to its edge,
so the critic cannot represent it: the share of a dataset's targets outside the support says
whether the support (or the environment's reward and time limit) fits the data. The dataset
cards report it per checkpoint (`lake_schema.cards`) and an asset check fails a task whose
share is above `MAX_OUTSIDE`.

The return-to-go of step t of an episode is G_t = sum_{k >= t} gamma^(k - t) r_k up to the
episode's last step, with no bootstrap beyond it (a truncated episode's tail is unknown, and
the lake does not store a value to bootstrap from): the Monte-Carlo target of the recorded
data, the one a value head sees from whole episodes.

Pure numpy (no JAX: see `lake_schema.catalogue`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GAMMA = 0.99  # the paper's discount (appendix K), the trainer's default
MAX_OUTSIDE = 0.01  # the asset check's threshold: at most 1% of the targets clipped
# A return-to-go this close to a support edge counts as inside: rewards are stored as
# float32, so a return that is exactly the edge in the environment (lbf: all food eaten on
# one step) can sum to a hair beyond it.
EDGE_TOLERANCE = 1e-6


def returns_to_go(reward: np.ndarray, lengths: Sequence[int] | np.ndarray,
                  gamma: float = GAMMA) -> np.ndarray:
    """[S] float64 discounted returns-to-go of episodes stored back to back.

    reward: [S] team rewards, episode after episode; lengths: [E] the episodes' lengths (in
    order, summing to S). G_t = r_t + gamma * G_{t+1} within an episode, G = r on its last
    step (no bootstrap). Computed by distance to the episode's end, one vectorised step per
    distance, so the cost is O(S) whatever the mix of lengths, and exact (no gamma^-t
    rescaling, which overflows on long episodes).
    """
    r = np.asarray(reward, dtype=np.float64).reshape(-1)
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if (lens <= 0).any() or int(lens.sum()) != r.size:
        raise ValueError(f"episode lengths must be positive and sum to the {r.size} rewards, "
                         f"got {lens.tolist()[:8]}{'...' if lens.size > 8 else ''}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    out = np.empty_like(r)
    if r.size == 0:
        return out
    to_end = np.repeat(np.cumsum(lens), lens) - 1 - np.arange(r.size)  # 0 on the last step
    order = np.argsort(to_end, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(to_end))])
    last = order[bounds[0]:bounds[1]]
    out[last] = r[last]
    for d in range(1, len(bounds) - 1):
        rows = order[bounds[d]:bounds[d + 1]]
        out[rows] = r[rows] + gamma * out[rows + 1]  # row + 1: the same episode's next step
    return out


def lengths_from_steps(step: np.ndarray) -> np.ndarray:
    """[E] episode lengths from a steps table's `step` column (episodes back to back, each
    counting 0, 1, ... as the lake stores them)."""
    step = np.asarray(step).reshape(-1)
    starts = np.flatnonzero(step == 0)
    if step.size and (starts.size == 0 or starts[0] != 0):
        raise ValueError("the step column must start an episode (step 0) on its first row")
    return np.diff(np.append(starts, step.size))


@dataclass(frozen=True)
class SupportFit:
    """How many of a set of returns-to-go lie outside a value support [lo, hi]."""

    outside: int
    total: int
    low: int  # of `outside`, below lo
    min: float  # the extreme returns-to-go (nan when total == 0)
    max: float

    @property
    def fraction(self) -> float:
        """outside / total (nan for no steps)."""
        return self.outside / self.total if self.total else float("nan")


def support_fit(values: np.ndarray, support: tuple[float, float]) -> SupportFit:
    """Count `values` outside `support` (beyond EDGE_TOLERANCE of its edges)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    lo, hi = support
    below = v < lo - EDGE_TOLERANCE
    above = v > hi + EDGE_TOLERANCE
    return SupportFit(int((below | above).sum()), int(v.size), int(below.sum()),
                      float(v.min()) if v.size else float("nan"),
                      float(v.max()) if v.size else float("nan"))


def returns_to_go_fit(reward: np.ndarray, lengths: Sequence[int] | np.ndarray,
                      support: tuple[float, float], gamma: float = GAMMA) -> SupportFit:
    """The discounted returns-to-go of these episodes (`returns_to_go`) against `support`,
    e.g. an env's HL-Gauss support (`catalogue.ENVS[env].value_support`)."""
    return support_fit(returns_to_go(reward, lengths, gamma), support)
