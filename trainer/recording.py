"""From vmapped rollouts to the lake's whole-episode batches.

A rollout window of T decisions over B environments holds, per environment, a partial
episode at each end; only episodes that start and end inside the window are recorded, so
every stored episode is whole (its return is a real return, its last step is done).
"""

from __future__ import annotations

import jax
import numpy as np

from lake_schema.catalogue import Task
from lake_schema.writer import EpisodeBatch
from trainer.envs import Rollout, make_env, random_rollout


def episodes_from_rollout(rollout: Rollout, max_per_env: int | None = None) -> EpisodeBatch:
    """Whole episodes of a `Rollout`, environment by environment, back to back.

    `max_per_env` keeps only each environment's first episodes: with a window of one time
    limit, `max_per_env=1` gives exactly one fresh episode per environment.

    Row layout (see `trainer.envs.rollout`): decision t uses steps[t].obs / legal and
    actions[t]; its reward and done flags are those of steps[t + 1].
    """
    steps = rollout.steps
    first = np.asarray(steps.first[:-1])  # [T, B]: decision t starts an episode
    done = np.asarray(rollout.episode_done)  # [T, B]: decision t ends one
    t_idx, b_idx, lengths = [], [], []
    for b in range(first.shape[1]):
        starts = np.flatnonzero(first[:, b])
        ends = np.flatnonzero(done[:, b])
        for s in starts[:max_per_env]:
            after = ends[ends >= s]
            if after.size == 0:
                break  # the last episode runs past the window
            e = int(after[0])
            t_idx.append(np.arange(s, e + 1))
            b_idx.append(np.full(e + 1 - s, b))
            lengths.append(e + 1 - s)
    if not lengths:
        raise ValueError(
            "no episode completed inside the rollout window: roll out for longer than the "
            "task's time limit"
        )
    t, b = np.concatenate(t_idx), np.concatenate(b_idx)
    return EpisodeBatch(
        obs=np.asarray(steps.obs)[t, b],
        action=np.asarray(rollout.actions)[t, b],
        legal=np.asarray(steps.legal)[t, b],
        reward=np.asarray(steps.reward)[t + 1, b],
        terminated=np.asarray(steps.terminated)[t + 1, b],
        truncated=np.asarray(steps.truncated)[t + 1, b],
        lengths=np.asarray(lengths, np.int64),
    )


def collect_random_episodes(task: str | Task, num_episodes: int, seed: int = 0) -> EpisodeBatch:
    """`num_episodes` fresh episodes of the uniform-random policy (the random baseline)."""
    env = make_env(task)
    result = random_rollout(env, jax.random.PRNGKey(seed), num_episodes, env.time_limit)
    return episodes_from_rollout(result, max_per_env=1)
