"""From vmapped rollouts to the lake's whole-episode batches.

A rollout window of T decisions over B environments holds, per environment, a partial
episode at each end; only episodes that start and end inside the window are recorded, so
every stored episode is whole (its return is a real return, its last step is done).

An episode that starts at the window's first step of a freshly reset environment is
replayable: the key that reset it (`fresh_reset_keys`, or the online programs'
`trainer.online.ppo.policy_reset_keys`) goes with it into the lake, and the real environment
reset with that key and stepped with its actions gives its steps again (`trainer.replay`).
"""

from __future__ import annotations

import jax
import numpy as np

from lake_schema.catalogue import Task
from lake_schema.writer import EpisodeBatch
from trainer.envs import Rollout, make_env, random_rollout


def episodes_from_rollout(rollout: Rollout, max_per_env: int | None = None,
                          reset_keys: np.ndarray | None = None) -> EpisodeBatch:
    """Whole episodes of a `Rollout`, environment by environment, back to back.

    `max_per_env` keeps only each environment's first episodes: with a window of one time
    limit, `max_per_env=1` gives exactly one fresh episode per environment.
    `reset_keys` [B, 2]: the key each environment was reset with just before steps[0] (a
    fresh rollout); each episode then carries its environment's key. Only an episode that
    starts at steps[0] has one (a later one's reset key is drawn inside the program), so
    with keys every recorded episode must start there (`max_per_env=1`), else ValueError.

    Row layout (see `trainer.envs.rollout`): decision t uses steps[t].obs / legal and
    actions[t]; its reward and done flags are those of steps[t + 1].
    """
    steps = rollout.steps
    first = np.asarray(steps.first[:-1])  # [T, B]: decision t starts an episode
    done = np.asarray(rollout.episode_done)  # [T, B]: decision t ends one
    if reset_keys is not None and np.shape(reset_keys) != (first.shape[1], 2):
        raise ValueError(f"reset_keys must be [{first.shape[1]}, 2] (one key per environment), "
                         f"got shape {np.shape(reset_keys)}")
    t_idx, b_idx, lengths, keys = [], [], [], []
    for b in range(first.shape[1]):
        starts = np.flatnonzero(first[:, b])
        ends = np.flatnonzero(done[:, b])
        for s in starts[:max_per_env]:
            after = ends[ends >= s]
            if after.size == 0:
                break  # the last episode runs past the window
            if reset_keys is not None and s != 0:
                raise ValueError(
                    f"environment {b}'s episode at step {s} has no known reset key: with "
                    "reset_keys, record each environment's first episode (max_per_env=1) of "
                    "a fresh rollout")
            e = int(after[0])
            t_idx.append(np.arange(s, e + 1))
            b_idx.append(np.full(e + 1 - s, b))
            lengths.append(e + 1 - s)
            keys.append(b)
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
        reset_keys=None if reset_keys is None else np.asarray(reset_keys, np.uint32)[keys],
    )


def fresh_reset_keys(key: jax.Array, num_envs: int) -> np.ndarray:
    """[num_envs, 2] uint32: the key each environment of `trainer.envs.rollout.fresh_rollout`
    (`rollout`, `random_rollout`) with `key` was reset with, derived as it derives them (its
    first split of `key`, then `reset_batch`'s split into one key per environment)."""
    reset_key, _ = jax.random.split(key)
    return np.asarray(jax.random.split(reset_key, num_envs))


def collect_random_episodes(task: str | Task, num_episodes: int, seed: int = 0) -> EpisodeBatch:
    """`num_episodes` fresh episodes of the uniform-random policy (the random baseline), each
    with its reset key."""
    env = make_env(task)
    key = jax.random.PRNGKey(seed)
    result = random_rollout(env, key, num_episodes, env.time_limit)
    return episodes_from_rollout(result, max_per_env=1,
                                 reset_keys=fresh_reset_keys(key, num_episodes))
