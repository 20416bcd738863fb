"""The one rollout loop (lax.scan over steps, vmap over environments) for every policy.

Why one: PPO's training rollout, the recording of checkpoints, the reference and random
baselines and the offline evaluation all step environments with a policy and count episode
returns; with one loop the time layout is one convention and shapes that agree share one
program. The layout:
steps[0] is the step the rollout starts from (a reset's, or the last step of the previous
rollout), steps[t + 1] follows actions[t] (so its reward / terminated / truncated belong to
actions[t], and its obs is the next decision's input, a new episode's first observation when
`first` is set).

A policy is an `Actor`: `act(carry, key, step [B, ...]) -> (carry, actions [B, N] int32,
extras)`. The carry is the policy's own state across steps (Sable's retention state; None for
stateless policies); extras are per-step outputs kept in the rollout (PPO's log-probs and
values; None otherwise).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trainer.envs.core import EnvState, EnvStep, MultiAgentEnv

# policy(key, step [B, ...]) -> actions [B, N] int32: a stateless policy
Policy = Callable[[jax.Array, EnvStep], jax.Array]
# act(carry, key, step [B, ...]) -> (carry, actions [B, N] int32, extras [B, ...] or None)
Actor = Callable[[Any, jax.Array, EnvStep], tuple[Any, jax.Array, Any]]


class Rollout(NamedTuple):
    steps: EnvStep  # [T + 1, B, ...]: steps[0] the start, steps[t + 1] after actions[t]
    actions: jax.Array  # [T, B, N] int32
    episode_return: jax.Array  # [T, B] float32: team return of the episode ending at t + 1
    episode_done: jax.Array  # [T, B] bool: an episode ended at t + 1 (return is valid)
    final_state: EnvState  # [B, ...] to continue from
    extras: Any = None  # [T, B, ...] the actor's per-step extras (None for plain policies)
    carry: Any = None  # the actor's carry after the last step
    running_return: Any = None  # [B] return so far of each environment's unfinished episode


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


def stateless(policy: Policy) -> Actor:
    """A stateless policy as an `Actor` (carry None, no extras)."""

    def act(carry: Any, key: jax.Array, step: EnvStep) -> tuple[Any, jax.Array, None]:
        return carry, policy(key, step), None

    return act


def continue_rollout(
    env: MultiAgentEnv,
    act: Actor,
    env_state: EnvState,
    step: EnvStep,
    carry: Any,
    running_return: jax.Array,
    keys: jax.Array,
) -> Rollout:
    """Roll `act` on from (env_state, step [B, ...]) for len(keys) steps (pure: call it under
    jit). `running_return` [B] is each environment's return so far of its current episode."""

    def body(c, step_key):
        state, step, carry, running = c
        carry, actions, extras = act(carry, step_key, step)  # actions [B, N]
        state, nxt = env.step_batch(state, actions)
        running = running + nxt.reward
        done = nxt.terminated | nxt.truncated
        out = (nxt, actions, jnp.where(done, running, 0.0), done, extras)
        return (state, nxt, carry, jnp.where(done, 0.0, running)), out

    init = (env_state, step, carry, running_return)
    (env_state, _, carry, running), (steps, actions, ret, done, extras) = jax.lax.scan(
        body, init, keys
    )
    steps = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), step, steps)
    return Rollout(steps, actions, ret, done, env_state, extras, carry, running)


def fresh_rollout(
    env: MultiAgentEnv, act: Actor, carry: Any, key: jax.Array, num_envs: int, num_steps: int
) -> Rollout:
    """Roll `act` (starting from `carry`) in `num_envs` freshly reset environments for
    `num_steps` steps (pure: call it under jit). With `num_steps` = the time limit, every
    environment's first episode is whole."""
    reset_key, key = jax.random.split(key)
    state, first_step = env.reset_batch(reset_key, num_envs)
    running = jnp.zeros((num_envs,), jnp.float32)
    return continue_rollout(
        env, act, state, first_step, carry, running, jax.random.split(key, num_steps)
    )


def chain_rollouts(parts: list[Rollout]) -> Rollout:
    """Consecutive rollouts of the same environments, each continuing from the one before
    (so its steps[0] is the last one's final step), as one: steps [sum T + 1, B, ...],
    actions and episode ends [sum T, B, ...]; host arrays, no final state or extras."""
    def cat(*x):
        return np.concatenate(x, axis=0)

    steps = [parts[0].steps] + [jax.tree.map(lambda x: x[1:], p.steps) for p in parts[1:]]
    return Rollout(
        steps=jax.tree.map(cat, *steps),
        actions=cat(*(p.actions for p in parts)),
        episode_return=cat(*(p.episode_return for p in parts)),
        episode_done=cat(*(p.episode_done for p in parts)),
        final_state=None,
    )


def first_episode_returns(result: Rollout) -> tuple[jax.Array, jax.Array]:
    """(return [B] of each environment's first episode, whether it finished [B]) of a fresh
    rollout (0 where none finished)."""
    done = result.episode_done  # [T, B]
    first_end = jnp.argmax(done, axis=0)  # [B]
    ret = jnp.take_along_axis(result.episode_return, first_end[None], axis=0)[0]
    finished = jnp.any(done, axis=0)
    return jnp.where(finished, ret, 0.0), finished


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _rollout(
    env: MultiAgentEnv, key: jax.Array, num_envs: int, num_steps: int, policy: Policy
) -> Rollout:
    return fresh_rollout(env, stateless(policy), None, key, num_envs, num_steps)


def rollout(
    env: MultiAgentEnv, key: jax.Array, num_envs: int, num_steps: int, policy: Policy
) -> Rollout:
    """Run the stateless `policy` on `num_envs` fresh environments for `num_steps` steps
    (jitted).

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
