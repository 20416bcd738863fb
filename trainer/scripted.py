"""A scripted, better-than-random LBF data policy, for learning tests and CPU benchmarks.

The lake's real datasets come from online Sable; tests and quick benchmarks need data whose
behaviour is clearly better than random without training anything online. In LBF, each agent
sees a 5x5 window (3 channels: agent levels, food levels, accessibility) centred on itself:
this policy loads when a food is next to it (up/down/left/right), otherwise steps towards the
nearest visible food (the longer axis first, the other if blocked), otherwise moves randomly;
with probability `epsilon` it takes a uniformly random legal action instead. On
lbf/8x8-2p-2f it returns about 0.9 per episode against about 0.3 for the uniform policy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lake_schema.catalogue import Task
from lake_schema.writer import EpisodeBatch
from trainer.compiled import compiled_cache
from trainer.envs import EnvStep, make_env, random_actions, rollout
from trainer.recording import episodes_from_rollout, fresh_reset_keys

NOOP, UP, DOWN, LEFT, RIGHT, LOAD = range(6)  # Jumanji's LBF actions


def lbf_heuristic_actions(key: jax.Array, obs: jax.Array, legal: jax.Array,
                          epsilon: float = 0.2) -> jax.Array:
    """obs [..., N, 75] (the (3, 5, 5) view flattened), legal [..., N, 6] -> actions [..., N]."""
    view = obs.reshape(*obs.shape[:-1], 3, 5, 5)
    food = view[..., 1, :, :] > 0  # [..., N, 5, 5]
    dr = jnp.arange(5)[:, None] - 2
    dc = jnp.arange(5)[None, :] - 2
    dist = jnp.abs(dr) + jnp.abs(dc)
    adjacent = jnp.any(food & (dist == 1), axis=(-2, -1))
    flat = jnp.where(food, dist, 99).reshape(*food.shape[:-2], 25)
    nearest = jnp.argmin(flat, axis=-1)
    visible = jnp.min(flat, axis=-1) < 99
    row, col = nearest // 5 - 2, nearest % 5 - 2
    vertical = jnp.where(row < 0, UP, DOWN)
    horizontal = jnp.where(col < 0, LEFT, RIGHT)
    rows_first = jnp.abs(row) >= jnp.abs(col)
    move = jnp.where(rows_first, vertical, horizontal)
    other = jnp.where(rows_first, jnp.where(col != 0, horizontal, vertical),
                      jnp.where(row != 0, vertical, horizontal))
    move = jnp.where(jnp.take_along_axis(legal, move[..., None], -1)[..., 0], move, other)
    k_random, k_explore = jax.random.split(key)
    rand = random_actions(k_random, legal)
    action = jnp.where(adjacent, LOAD, jnp.where(visible, move, rand))
    action = jnp.where(jnp.take_along_axis(legal, action[..., None], -1)[..., 0], action, rand)
    explore = jax.random.uniform(k_explore, action.shape) < epsilon
    return jnp.where(explore, rand, action).astype(jnp.int32)


@compiled_cache(maxsize=8)
def lbf_heuristic_policy(epsilon: float = 0.2):
    """The policy as `trainer.envs.rollout` wants it (one object per epsilon: compiled once)."""

    def policy(key: jax.Array, step: EnvStep) -> jax.Array:
        return lbf_heuristic_actions(key, step.obs, step.legal, epsilon)

    return policy


def collect_lbf_heuristic_episodes(task: str | Task, num_episodes: int, seed: int = 0,
                                   epsilon: float = 0.2) -> EpisodeBatch:
    """`num_episodes` fresh LBF episodes of the scripted policy, ready for `write_episodes`,
    each with its reset key (replayable)."""
    env = make_env(task)
    if env.task.env != "lbf":
        raise ValueError(f"the scripted policy is for lbf tasks, not {env.task.name}")
    key = jax.random.PRNGKey(seed)
    result = rollout(env, key, num_episodes, env.time_limit, lbf_heuristic_policy(float(epsilon)))
    return episodes_from_rollout(result, max_per_env=1,
                                 reset_keys=fresh_reset_keys(key, num_episodes))
