"""Small synthetic lakes for the loader's tests and smoke runs (not used in training)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lake_schema.catalogue import get_task
from lake_schema.schema import quality_for_checkpoint
from lake_schema.storage import Lake
from lake_schema.synthetic import synthetic_episodes
from lake_schema.writer import Evaluation, write_episodes, write_evaluation


def fill_lake(lake: Lake, tasks: Sequence[str], runs: Sequence[str] = ("r1",),
              checkpoints: int = 3, episodes: int = 4, lengths: tuple[int, int] = (5, 40),
              seed: int = 0) -> int:
    """Write `episodes` synthetic episodes per (task, run, checkpoint), lengths drawn from
    [lo, hi] (capped at the task's time limit), quality tagged by checkpoint as the paper's
    rule; returns the number of episodes written."""
    rng = np.random.default_rng(seed)
    total = 0
    for ti, name in enumerate(tasks):
        task = get_task(name)
        for ri, run in enumerate(runs):
            for ck in range(checkpoints):
                lens = np.minimum(rng.integers(lengths[0], lengths[1] + 1, episodes),
                                  task.time_limit)
                batch = synthetic_episodes(task, lens, seed=seed + 1000 * ti + 100 * ri + ck)
                write_episodes(lake, task, run, ck, quality_for_checkpoint(ck, checkpoints),
                               batch)
                total += episodes
    return total


def add_evaluation_updates(lake: Lake, model: str, updates: int = 3) -> None:
    """`updates` evaluation rows of one model on one task, one write (and one file) each:
    small files for the maintenance tests to compact."""
    for update in range(updates):
        write_evaluation(lake, "lbf/12x12-4p-5f", model, Evaluation(
            "bc", "test", update, episodes=2, mean_return=0.1, std_return=0.0,
            normalised_return=0.1, reference_return=1.0))
