"""A Grain random-access source of fixed-length chunks from a training cache.

Item i of the source is a chunk of `seq_len` consecutive steps of one task: the items are
all valid (task, start) pairs, task by task, so i -> (task, start) is a searchsorted over
the tasks' start counts. Chunks may cross an episode boundary (the paper's sampler does):
the task's selected episodes are one concatenated stream, every start s with
s + T <= its steps is valid, and the per-step `first` flag marks where an episode begins,
so a recurrent model resets its state there. A chunk starting mid-episode has first[0]
False: the model starts it from a fresh state, as the paper's does.

The source is picklable and opens its memory maps lazily, in whichever process (a Grain
worker) first reads from it. `gather` reads many chunks of one task with one fancy-index
per array: the loader's batch path. `__getitem__` (one chunk) is for Grain's protocol.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from trainer.data.balancing import valid_starts
from trainer.data.cache import ARRAYS, TrainingCache


class Chunk(NamedTuple):
    """T consecutive steps of one task, unpadded, in the lake's native dtypes."""

    task: int
    start: int
    obs: np.ndarray  # [T, N, F]
    action: np.ndarray  # [T, N] int8
    legal: np.ndarray  # [T, N, A] bool
    reward: np.ndarray  # [T] float32
    terminated: np.ndarray  # [T] bool
    truncated: np.ndarray  # [T] bool
    first: np.ndarray  # [T] bool: this step starts an episode


class ChunkSource:
    """`grain.sources.RandomAccessDataSource` over a cache: item -> (task, start) chunk."""

    def __init__(self, cache: TrainingCache | str | os.PathLike, seq_len: int,
                 in_memory: bool = False):
        cache = cache if isinstance(cache, TrainingCache) else TrainingCache.open(cache)
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len={seq_len!r} must be a positive integer")
        short = [f"{t.name} ({t.num_steps} steps)" for t in cache.tasks
                 if t.num_steps < seq_len]
        if short:
            raise ValueError(f"seq_len={seq_len} is longer than the selected steps of "
                             f"{', '.join(short)}: select more episodes or a shorter T")
        self.path = str(cache.path)
        self.seq_len = seq_len
        self.in_memory = in_memory
        self.task_names = cache.task_names
        self.num_agents = tuple(t.num_agents for t in cache.tasks)
        self.num_steps = tuple(t.num_steps for t in cache.tasks)
        self.num_starts = tuple(valid_starts(s, seq_len) for s in self.num_steps)
        self.offsets = np.concatenate([[0], np.cumsum(self.num_starts)]).astype(np.int64)
        self._cache = cache
        self._arrays: list[dict[str, np.ndarray]] | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None  # memory maps are reopened in the worker
        return state

    def __repr__(self) -> str:
        return f"ChunkSource(path={self.path!r}, seq_len={self.seq_len})"

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def arrays(self) -> list[dict[str, np.ndarray]]:
        if self._arrays is None:
            if not os.path.isdir(self.path):
                raise FileNotFoundError(
                    f"training cache {self.path} is gone (removed when the same selection was "
                    "rebuilt after the lake changed?): make the loader again")
            # plain ndarray views of the maps: np.memmap's Python-level __getitem__ costs
            # more than the gather itself for small chunks
            self._arrays = [{k: np.asarray(v) for k, v in
                             self._cache.arrays(i, mmap=not self.in_memory).items()}
                            for i in range(len(self.num_steps))]
        return self._arrays

    def locate(self, index: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Item index (or indices) -> (task, start)."""
        index = np.asarray(index, dtype=np.int64)
        if (index < 0).any() or (index >= len(self)).any():
            raise IndexError(f"item index outside 0..{len(self) - 1}")
        task = np.searchsorted(self.offsets, index, side="right") - 1
        return task, index - self.offsets[task]

    def __getitem__(self, index: int) -> Chunk:
        task, start = (int(v) for v in self.locate(index))
        window = slice(start, start + self.seq_len)
        a = self.arrays[task]
        return Chunk(task, start, *(np.asarray(a[k][window]) for k in ARRAYS))

    def gather(self, task: int, starts: np.ndarray) -> dict[str, np.ndarray]:
        """Chunks of one task starting at `starts` [b]: each array [b, T, ...], copied."""
        starts = np.asarray(starts, dtype=np.int64)
        if starts.size and (starts.min() < 0 or starts.max() >= self.num_starts[task]):
            raise IndexError(f"chunk start outside 0..{self.num_starts[task] - 1} "
                             f"for task {self.task_names[task]}")
        rows = starts[:, None] + np.arange(self.seq_len)
        return {k: v[rows] for k, v in self.arrays[task].items()}
