"""Which chunks make up batch b: task allocation and the per-batch index plan, pure numpy.

Task-balanced allocation (paper, section 2.2): batch size B, M tasks, q = floor(B / M),
r = B - q*M. Every task gets q chunks; the r remaining chunks go round-robin, and the
round-robin continues across batches: batch b's extra chunks go to tasks
(b*r + j) mod M for j < r. Over any M consecutive batches every task gets exactly q*M + r
chunks (the indices b*r + j cover M*r consecutive integers, each residue r times).

The plan of batch b is a pure function of (seed, b): its random numbers come from a
generator seeded with [seed, b], so any batch can be recomputed on its own. That is what
makes a resumed loader exact (it only needs the next batch index) and what lets every JAX
process compute the same global batch and keep its own slice of it.

Within a task every valid start s (s + T <= the task's steps, in its concatenated step
stream) is equally likely; `proportional` draws uniformly over all tasks' starts together,
so a task's share is proportional to its number of starts (~ its size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

MODES: tuple[str, ...] = ("balanced", "single_task", "proportional")


def balanced_counts(batch_size: int, num_tasks: int, batch_index: int) -> np.ndarray:
    """Chunks per task [M] in batch `batch_index`: q each, plus the rotating remainder."""
    if num_tasks < 1:
        raise ValueError(f"num_tasks={num_tasks}: at least one task is needed")
    if batch_size < num_tasks:
        raise ValueError(
            f"batch size B={batch_size} is smaller than the number of tasks M={num_tasks}: "
            "task-balanced batches need B >= M"
        )
    if batch_index < 0:
        raise ValueError(f"batch_index={batch_index} must be >= 0")
    q, r = divmod(batch_size, num_tasks)
    counts = np.full(num_tasks, q, dtype=np.int64)
    extra = (batch_index * r + np.arange(r)) % num_tasks
    counts[extra] += 1
    return counts


def valid_starts(num_steps: int, seq_len: int) -> int:
    """How many chunk starts a stream of `num_steps` steps has (s + T <= num_steps)."""
    return max(0, num_steps - seq_len + 1)


def batch_rng(seed: int, batch_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, batch_index])


class BatchPlan(NamedTuple):
    """What the global batch b is made of; every array has the batch axis first."""

    task: np.ndarray  # [B] int64 task index
    start: np.ndarray  # [B] int64 first step of the chunk in the task's stream
    agent_order: np.ndarray  # [B, N_out] int64: output slot k holds source agent order[k]
    num_agents_out: int  # N_out: padded agent count of this batch


@dataclass(frozen=True)
class Planner:
    """Deterministic batch plans for one cache and one sampling config."""

    mode: str
    batch_size: int
    num_starts: tuple[int, ...]  # valid starts per task
    num_agents: tuple[int, ...]  # real agents per task
    pad_to: int | None  # fixed N_out, or None for the batch's maximum
    shuffle_agents: bool
    seed: int

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; modes: {', '.join(MODES)}")
        if len(self.num_starts) != len(self.num_agents) or not self.num_starts:
            raise ValueError("num_starts and num_agents must name the same, non-empty tasks")
        if min(self.num_starts) < 1:
            raise ValueError(f"every task needs at least one valid start: {self.num_starts}")
        if self.mode == "balanced" and self.batch_size < len(self.num_starts):
            balanced_counts(self.batch_size, len(self.num_starts), 0)  # raises B < M

    def tasks_of(self, batch_index: int, rng: np.random.Generator) -> np.ndarray:
        m, b = len(self.num_starts), self.batch_size
        if self.mode == "balanced":
            counts = balanced_counts(b, m, batch_index)
            return np.repeat(np.arange(m), counts)
        if self.mode == "single_task":
            return np.full(b, rng.integers(m), dtype=np.int64)
        return np.empty(0, np.int64)  # proportional: drawn with the starts

    def plan(self, batch_index: int) -> BatchPlan:
        rng = batch_rng(self.seed, batch_index)
        starts_per_task = np.asarray(self.num_starts, dtype=np.int64)
        if self.mode == "proportional":
            offsets = np.concatenate([[0], np.cumsum(starts_per_task)])
            flat = rng.integers(0, offsets[-1], self.batch_size)
            task = np.searchsorted(offsets, flat, side="right") - 1
            start = flat - offsets[task]
        else:
            task = self.tasks_of(batch_index, rng)
            start = rng.integers(0, starts_per_task[task])
            order = rng.permutation(self.batch_size)  # mix tasks across process slices
            task, start = task[order], start[order]
        agents = np.asarray(self.num_agents)[task]
        n_out = self.pad_to if self.pad_to is not None else int(agents.max())
        if self.shuffle_agents:
            agent_order = np.argsort(rng.random((self.batch_size, n_out)), axis=1)
        else:
            agent_order = np.broadcast_to(np.arange(n_out), (self.batch_size, n_out))
        return BatchPlan(task.astype(np.int64), start.astype(np.int64), agent_order, n_out)
