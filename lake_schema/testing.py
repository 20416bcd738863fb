"""Generating lakes for tests, benchmarks and the lake attack (`lake_schema.stress`): episodes
with a task's real shapes and dtypes, lakes filled with them, evaluation rows.

Observations are sparse small integers (or floats for connector) the way the real
environments' views are: mostly empty cells with a few objects, so compression figures
measured on them are not flattered by constant data nor ruined by white noise. Never used
in training: the lake's real datasets come from online Sable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lake_schema.catalogue import Task, get_task
from lake_schema.schema import quality_for_checkpoint
from lake_schema.storage import Lake
from lake_schema.writer import (
    EpisodeBatch,
    Evaluation,
    write_episodes,
    write_evaluation,
    write_reference,
)


def synthetic_episodes(
    task: str | Task, lengths: Sequence[int], seed: int = 0, truncate_at_limit: bool = True
) -> EpisodeBatch:
    """Episodes back to back; an episode as long as the time limit ends truncated."""
    task = get_task(task) if isinstance(task, str) else task
    spec, rng = task.spec, np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    s, n, f, a = int(lengths.sum()), task.num_agents, spec.obs_width, spec.num_actions
    if spec.obs_dtype == "float32":
        obs = rng.choice(np.array([-1.0, 0.0, 0.0, 0.0, 1.0], np.float32), size=(s, n, f))
    else:
        obs = (rng.random((s, n, f)) < 0.1) * rng.integers(1, 4, (s, n, f))
        obs = obs.astype(spec.obs_dtype)
    legal = rng.random((s, n, a)) < 0.8
    legal[..., 0] = True  # no-op is always legal
    action = np.where(rng.random((s, n)) < 0.5, 0, rng.integers(0, a, (s, n)))
    action = np.where(np.take_along_axis(legal, action[..., None], -1)[..., 0], action, 0)
    reward = (rng.random(s) < 0.05).astype(np.float32)
    ends = np.cumsum(lengths) - 1
    truncated = np.zeros(s, bool)
    terminated = np.zeros(s, bool)
    at_limit = lengths >= task.time_limit if truncate_at_limit else np.zeros(len(lengths), bool)
    truncated[ends[at_limit]] = True
    terminated[ends[~at_limit]] = True
    return EpisodeBatch(obs, action.astype(np.int32), legal, reward, terminated, truncated,
                        lengths)


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


def fill_trainable_lake(lake: Lake, tasks: Sequence[str], referenced: Sequence[str] = ()
                        ) -> None:
    """The smallest lake a model trains on and is evaluated against: one checkpoint of 4
    synthetic episodes (8-30 steps) per task, and a reference (Sable 0.5, random 0.1) for each
    task and each of `referenced` (held-out tasks, evaluated without data)."""
    fill_lake(lake, tasks, checkpoints=1, episodes=4, lengths=(8, 30), seed=1)
    for task in dict.fromkeys([*tasks, *referenced]):
        write_reference(lake, task, "online", sable_returns=[0.5], random_returns=[0.1],
                        env_steps=1)


def add_evaluation_updates(lake: Lake, model: str, updates: int = 3) -> None:
    """`updates` evaluation rows of one model on one task, one write (and one file) each:
    small files for the maintenance tests to compact."""
    for update in range(updates):
        write_evaluation(lake, "lbf/12x12-4p-5f", model, Evaluation(
            "bc", "test", update, episodes=2, mean_return=0.1, std_return=0.0,
            normalised_return=0.1, reference_return=1.0))
