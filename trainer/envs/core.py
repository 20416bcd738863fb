"""A uniform, jittable multi-agent interface over the Jumanji environments of the catalogue.

Why a wrapper: the three Jumanji environments disagree on reward shape (per agent vs shared),
on how the time limit is reported (RWARE calls it a termination) and on the observation
format. Training and data collection want one contract: `reset(key)` / `step(state, actions)`
returning `(state, EnvStep)` with [N, F] observations in the catalogue's dtype, an [N, A]
legal mask, a scalar team reward, terminated / truncated kept apart, and automatic reset.

Autoreset: when a step ends an episode, the returned EnvStep keeps that final step's
reward / terminated / truncated, but its obs / legal are the first observation of the next
episode and `first` is True; the episode's final observation is dropped (as in PureJaxRL /
Mava). So a stored sequence reads: obs[t], action[t], then reward / done of EnvStep[t+1].
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jumanji.environments import Connector, LevelBasedForaging, RobotWarehouse
from jumanji.environments.routing.connector.generator import RandomWalkGenerator
from jumanji.environments.routing.lbf.generator import RandomGenerator as LbfGenerator
from jumanji.environments.routing.robot_warehouse import utils as rware_utils
from jumanji.environments.routing.robot_warehouse.generator import (
    RandomGenerator as RwareGenerator,
)

from lake_schema.catalogue import TASKS, EnvSpec, Task, get_task
from trainer.envs.adapters import connector_obs, lbf_obs, rware_obs

# Jumanji's LBF scatters booleans into an integer grid; JAX warns on every trace that this
# will be an error one day (a FutureWarning in every run's log, the replay CLI's output).
# The values are 0/1, so the cast is exact; the pinned Jumanji is what runs.
warnings.filterwarnings("ignore", "scatter inputs have incompatible types", FutureWarning)


class EnvStep(NamedTuple):
    """What the learner sees after `reset` or `step` (unbatched shapes; batched: [B, ...])."""

    obs: jax.Array  # [N, F] catalogue obs dtype
    legal: jax.Array  # [N, A] bool
    reward: jax.Array  # [] float32 team reward of the step that led here (0 after reset)
    terminated: jax.Array  # [] bool: the episode ended by the environment's own rule
    truncated: jax.Array  # [] bool: the time limit was reached without termination
    first: jax.Array  # [] bool: `obs` is the first observation of an episode


class EnvState(NamedTuple):
    """The Jumanji state plus our own key for resets (Jumanji's state key drives dynamics)."""

    inner: Any  # Jumanji State pytree
    key: jax.Array  # [2] uint32 PRNG key


class MultiAgentEnv:
    """One catalogue task as a pure, jittable multi-agent environment.

    Team reward (`EnvStep.reward`, float32 scalar):
    - lbf: the sum of the agents' rewards (Jumanji normalises them: a whole episode sums to at
      most 1 when all food is eaten).
    - rware: Jumanji's shared reward (+1 per delivered requested shelf).
    - connector: the mean over agents of Jumanji's per-agent rewards (each agent +1 when it
      connects, -0.03 per step while it is unconnected). Why the mean: the value models share
      one team value, and the mean keeps Jumanji's (and Mava's) per-agent scale, so an
      episode's connection rewards sum to at most 1, and with the catalogue's time limit the
      discounted returns-to-go fit the paper's HL-Gauss support [-1, 1] (og-marl's evaluation
      of Oryx scores connector the same way: the per-step mean over agents).
    Termination vs truncation: lbf terminates when all food is eaten, rware on an agent
    collision, connector when every agent is connected or blocked; all three truncate at
    `time_limit`. Termination wins when both happen on the same step.

    The object holds no mutable state, so it is safe to share and to close over in jit.
    """

    def __init__(self, task: Task, time_limit: int | None = None) -> None:
        self.task = task
        self.spec: EnvSpec = task.spec
        self.num_agents: int = task.num_agents
        self.num_actions: int = self.spec.num_actions
        self.obs_width: int = self.spec.obs_width
        self.obs_dtype: np.dtype = np.dtype(self.spec.obs_dtype)
        self.time_limit: int = int(time_limit if time_limit is not None else task.time_limit)
        self.env = _build_jumanji(task, self.time_limit)
        if self.env.num_agents != self.num_agents:  # catalogue and Jumanji must agree
            raise ValueError(
                f"{task.name}: Jumanji built {self.env.num_agents} agents, "
                f"catalogue says {self.num_agents}"
            )
        # Jitted entry points, one per instance (make_env shares instances, hence compiles).
        # Shape checks run in the Python wrappers first, so bad input fails before tracing.
        self._reset_jit = jax.jit(self._reset)
        self._step_jit = jax.jit(self._step)
        self._reset_batch_jit = jax.jit(self._reset_batch, static_argnums=1)
        self._step_batch_jit = jax.jit(self._step_batch)

    def __repr__(self) -> str:
        return f"MultiAgentEnv({self.task.name!r}, time_limit={self.time_limit})"

    # ------------------------------------------------------------ per-environment pieces

    def _observe(self, inner: Any, observation: Any) -> tuple[jax.Array, jax.Array]:
        """Jumanji state + observation -> (obs [N, F], legal [N, A])."""
        env = self.task.env
        if env == "lbf":
            obs = lbf_obs(observation.agents_view)
        elif env == "rware":
            obs = rware_obs(observation.agents_view)
        else:
            obs = connector_obs(observation.grid, inner.agents.position, inner.agents.target)
        return obs.astype(self.obs_dtype), observation.action_mask.astype(bool)

    def _episode_end(self, inner: Any, timestep: Any) -> tuple[jax.Array, jax.Array]:
        """(terminated, truncated) of a Jumanji step, kept apart."""
        last = timestep.last()
        if self.task.env == "rware":
            # Jumanji reports the time limit as a termination (discount 0): recompute the
            # collision, which is the only real termination.
            ids = jnp.arange(self.num_agents)
            hit = jax.vmap(functools.partial(rware_utils.is_collision, inner.grid))(
                inner.agents, ids
            )
            terminated = last & jnp.any(hit)
        else:
            # lbf / connector: termination has discount 0 for every agent, truncation does not
            # (connector's truncation keeps discount 1 for the agents still going).
            terminated = last & jnp.all(timestep.discount == 0)
        return terminated, last & ~terminated

    def _team_reward(self, reward: jax.Array) -> jax.Array:
        """Jumanji's reward -> the scalar team reward (see the class docstring)."""
        if self.task.env == "connector":
            return jnp.mean(reward).astype(jnp.float32)
        return jnp.sum(reward).astype(jnp.float32)  # rware's is already a scalar

    # ------------------------------------------------------------ the interface

    def reset(self, key: jax.Array) -> tuple[EnvState, EnvStep]:
        """Start an episode. Jitted; vmappable (see `reset_batch`)."""
        return self._reset_jit(key)

    def _reset(self, key: jax.Array) -> tuple[EnvState, EnvStep]:
        key, sub = jax.random.split(key)
        inner, timestep = self.env.reset(sub)
        obs, legal = self._observe(inner, timestep.observation)
        false = jnp.zeros((), bool)
        step = EnvStep(obs, legal, jnp.zeros((), jnp.float32), false, false, ~false)
        return EnvState(inner, key), step

    def check_actions(self, actions: jax.Array, batch_shape: tuple[int, ...] = ()) -> None:
        """Raise a ValueError naming the problem if `actions` is not integer [*batch, N].

        Runs at trace time (shapes are static under jit / vmap), so it costs nothing.
        """
        want = (*batch_shape, self.num_agents)
        shape = tuple(getattr(actions, "shape", ()))
        if shape != want:
            raise ValueError(
                f"{self.task.name}: actions must have shape {want} (one action per agent), "
                f"got {shape}"
            )
        dtype = getattr(actions, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"{self.task.name}: actions must be integers, got dtype {dtype}")

    def check_obs(self, obs: jax.Array, batch_shape: tuple[int, ...] = ()) -> None:
        """Raise a ValueError if `obs` is not [*batch, N, F] in the catalogue dtype."""
        want = (*batch_shape, self.num_agents, self.obs_width)
        shape = tuple(getattr(obs, "shape", ()))
        if shape != want:
            raise ValueError(f"{self.task.name}: obs must have shape {want}, got {shape}")
        if np.dtype(obs.dtype) != self.obs_dtype:
            raise ValueError(
                f"{self.task.name}: obs must have dtype {self.obs_dtype}, got {obs.dtype}"
            )

    def _transition(
        self, state: EnvState, actions: jax.Array
    ) -> tuple[EnvState, EnvStep, jax.Array]:
        """One Jumanji step without reset -> (state, step with the final obs, reset key)."""
        key, reset_key = jax.random.split(state.key)
        inner, timestep = self.env.step(state.inner, actions.astype(jnp.int32))
        obs, legal = self._observe(inner, timestep.observation)
        terminated, truncated = self._episode_end(inner, timestep)
        step = EnvStep(
            obs, legal, self._team_reward(timestep.reward), terminated, truncated,
            jnp.zeros((), bool),
        )
        return EnvState(inner, key), step, reset_key

    def _autoreset(
        self, state: EnvState, step: EnvStep, reset_key: jax.Array
    ) -> tuple[EnvState, EnvStep]:
        """Swap in a fresh episode where `step` ended one (select, so vmap-friendly)."""
        done = step.terminated | step.truncated
        fresh, first = self._reset(reset_key)  # exactly `reset(reset_key)`, key aside
        inner = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh.inner, state.inner)
        step = step._replace(
            obs=jnp.where(done, first.obs, step.obs),
            legal=jnp.where(done, first.legal, step.legal),
            first=done,
        )
        return EnvState(inner, state.key), step

    def step(self, state: EnvState, actions: jax.Array) -> tuple[EnvState, EnvStep]:
        """Advance one step with `actions` [N] int; resets automatically at episode end.

        Jitted; vmappable. When the step ends an episode, the new one is exactly
        `reset(jax.random.split(state.key)[1])` (its key aside).
        """
        self.check_actions(actions)  # before jit: a clear error, not a trace dump
        return self._step_jit(state, actions)

    def _step(self, state: EnvState, actions: jax.Array) -> tuple[EnvState, EnvStep]:
        state, step, reset_key = self._transition(state, actions)
        return self._autoreset(state, step, reset_key)

    # ------------------------------------------------------------ batched helpers

    def reset_batch(self, key: jax.Array, num_envs: int) -> tuple[EnvState, EnvStep]:
        """`num_envs` independent episodes: every leaf gains a leading [B] axis. Jitted."""
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        return self._reset_batch_jit(key, int(num_envs))

    def _reset_batch(self, key: jax.Array, num_envs: int) -> tuple[EnvState, EnvStep]:
        return jax.vmap(self._reset)(jax.random.split(key, num_envs))

    def step_batch(self, states: EnvState, actions: jax.Array) -> tuple[EnvState, EnvStep]:
        """Step B environments with `actions` [B, N]; same results as vmap(step). Jitted.

        Why not vmap(step): a reset costs about as much as a step (connector's generator
        walks, RWARE computes its observation), and under vmap a per-env reset becomes a reset
        of all B envs on every step. Here only the envs that finished are reset, gathered in
        chunks of `reset_capacity(B)` (a while_loop: zero iterations on most steps).
        """
        num_envs = jax.tree.leaves(states.key)[0].shape[0]
        self.check_actions(actions, (num_envs,))
        return self._step_batch_jit(states, actions)

    @staticmethod
    def reset_capacity(num_envs: int) -> int:
        """How many finished envs `step_batch` resets per chunk (static)."""
        return max(1, num_envs // 16)

    def _step_batch(self, states: EnvState, actions: jax.Array) -> tuple[EnvState, EnvStep]:
        states, steps, reset_keys = jax.vmap(self._transition)(states, actions)
        done = steps.terminated | steps.truncated  # [B]
        num_envs = done.shape[0]
        cap = self.reset_capacity(num_envs)

        def reset_chunk(carry):
            inner, obs, legal, pending = carry
            idx = jnp.nonzero(pending, size=cap, fill_value=num_envs)[0]  # [K]; B = unused
            fresh, first = jax.vmap(self._reset)(reset_keys[jnp.minimum(idx, num_envs - 1)])

            def put(a, b):
                return a.at[idx].set(b, mode="drop")  # unused slots (index B) are dropped

            return (
                jax.tree.map(put, inner, fresh.inner),
                put(obs, first.obs),
                put(legal, first.legal),
                put(pending, jnp.zeros_like(idx, bool)),
            )

        inner, obs, legal, _ = jax.lax.while_loop(
            lambda carry: jnp.any(carry[-1]),
            reset_chunk,
            (states.inner, steps.obs, steps.legal, done),
        )
        return EnvState(inner, states.key), steps._replace(obs=obs, legal=legal, first=done)


def _build_jumanji(task: Task, time_limit: int) -> Any:
    """The real Jumanji 1.1.2 environment of a catalogue task, from its generator kwargs."""
    gen = dict(task.generator)
    if task.env == "lbf":
        return LevelBasedForaging(
            generator=LbfGenerator(**gen), time_limit=time_limit, grid_observation=True
        )
    if task.env == "rware":
        return RobotWarehouse(generator=RwareGenerator(**gen), time_limit=time_limit)
    if task.env == "connector":
        return Connector(generator=RandomWalkGenerator(**gen), time_limit=time_limit)
    raise ValueError(f"no Jumanji builder for environment {task.env!r}")


@functools.cache
def _make_env_cached(name: str, time_limit: int | None) -> MultiAgentEnv:
    return MultiAgentEnv(get_task(name), time_limit)


def make_env(task: Task | str, time_limit: int | None = None) -> MultiAgentEnv:
    """The environment of a catalogue task (`Task` or `env/scenario` name).

    Unknown names raise the catalogue's UnknownTaskError. Environments are stateless, so one
    instance per (task, time_limit) is cached: building a Jumanji environment compiles a few
    small XLA programs (up to ~1 s for RWARE), and sharing the instance also shares jit caches.
    `time_limit` overrides the catalogue's (tests use a tiny one to reach truncation).
    """
    if isinstance(task, Task):
        if TASKS.get(task.name) is not task:  # a hand-made Task: build it as given, uncached
            return MultiAgentEnv(task, time_limit)
        task = task.name
    return _make_env_cached(task, time_limit)
