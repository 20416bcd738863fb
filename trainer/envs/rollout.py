"""Batched rollouts (lax.scan over steps, vmap over environments), random policy included.

Why: random baselines, data-collection smoke tests and environment tests all need the same
loop; keeping it here makes the time layout one convention:
steps[0] comes from reset, steps[t + 1] follows actions[t] (so its reward / terminated /
truncated belong to actions[t], and its obs is the next decision's input, a new episode's
first observation when `first` is set).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trainer.envs.core import EnvState, EnvStep, MultiAgentEnv

# policy(key, step [B, ...]) -> actions [B, N] int32
Policy = Callable[[jax.Array, EnvStep], jax.Array]


class Rollout(NamedTuple):
    steps: EnvStep  # [T + 1, B, ...]: steps[0] from reset, steps[t + 1] after actions[t]
    actions: jax.Array  # [T, B, N] int32
    episode_return: jax.Array  # [T, B] float32: team return of the episode ending at t + 1
    episode_done: jax.Array  # [T, B] bool: an episode ended at t + 1 (return is valid)
    final_state: EnvState  # [B, ...] to continue from


def random_actions(key: jax.Array, legal: jax.Array) -> jax.Array:
    """Uniform over legal actions: legal [..., N, A] bool -> actions [..., N] int32.

    An agent with no legal action (never the case in these Jumanji envs: no-op is always
    legal) samples uniformly over all actions rather than producing garbage.
    """
    any_legal = jnp.any(legal, axis=-1, keepdims=True)
    logits = jnp.where(legal | ~any_legal, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def random_policy(key: jax.Array, step: EnvStep) -> jax.Array:
    return random_actions(key, step.legal)


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _rollout(
    env: MultiAgentEnv, key: jax.Array, num_envs: int, num_steps: int, policy: Policy
) -> Rollout:
    reset_key, key = jax.random.split(key)
    state, first_step = env.reset_batch(reset_key, num_envs)

    def body(carry, step_key):
        state, step, running = carry
        actions = policy(step_key, step)  # [B, N]
        state, nxt = env.step_batch(state, actions)
        running = running + nxt.reward
        done = nxt.terminated | nxt.truncated
        out = (nxt, actions, jnp.where(done, running, 0.0), done)
        return (state, nxt, jnp.where(done, 0.0, running)), out

    init = (state, first_step, jnp.zeros((num_envs,), jnp.float32))
    (state, _, _), (steps, actions, ret, done) = jax.lax.scan(
        body, init, jax.random.split(key, num_steps)
    )
    steps = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first_step, steps)
    return Rollout(steps, actions, ret, done, state)


def rollout(
    env: MultiAgentEnv, key: jax.Array, num_envs: int, num_steps: int, policy: Policy
) -> Rollout:
    """Run `policy` on `num_envs` fresh environments for `num_steps` steps (jitted).

    `policy` must be hashable (a module-level function, not a fresh lambda per call) for the
    compiled rollout to be reused.
    """
    if num_envs < 1 or num_steps < 1:
        raise ValueError(f"num_envs and num_steps must be >= 1, got {num_envs}, {num_steps}")
    return _rollout(env, key, int(num_envs), int(num_steps), policy)


def random_rollout(
    env: MultiAgentEnv, key: jax.Array, num_envs: int, num_steps: int
) -> Rollout:
    """Uniform-random-over-legal-actions rollout: random baselines and tests."""
    return rollout(env, key, num_envs, num_steps, random_policy)


def mean_episode_return(result: Rollout) -> float:
    """Mean team return over the episodes that completed in `result` (NaN if none did)."""
    done = np.asarray(result.episode_done)
    if not done.any():
        return float("nan")
    return float(np.asarray(result.episode_return)[done].mean())
