"""Typed, validated configuration of online Sable (PPO) and its recording schedule.

`OnlineConfig` holds every knob; `OnlineConfig.profile("demo" | "paper", **overrides)` gives
the two presets. `plan(task, config)` checks the config against a task and turns the budget
into whole updates and K evenly spaced recording checkpoints. Every check runs before any
JAX compilation or environment step, and every error is a `ValueError` naming the bad value.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from lake_schema.catalogue import Task, UnknownTaskError, get_task
from lake_schema.schema import quality_for_checkpoint

PROFILES = ("demo", "paper")
# The demo profile's per-environment settings, from benchmarks/online_sable.md: on
# rware/tiny-2ag, 64-step rollouts at lr 5e-4 stalled (a 20M-step run fell to 0 deliveries),
# while Mava's 128-step rollouts at lr 2.5e-4 reached 3 deliveries per episode by 8M steps.
DEMO_ENV_SETTINGS: dict[str, dict[str, Any]] = {
    "rware": {"rollout_length": 128, "learning_rate": 2.5e-4},
}


def resolve_task(task: str | Task) -> Task:
    """A catalogue task from its `env/scenario` name; unknown names are a ValueError."""
    if isinstance(task, Task):
        return task
    try:
        return get_task(str(task))
    except UnknownTaskError as e:
        raise ValueError(str(e)) from e


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"OnlineConfig.{name} must be a positive int, got {value!r}")


def _number(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"OnlineConfig.{name} must be a number, got {value!r}")
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"OnlineConfig.{name} must lie in {bracket}{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class OnlineConfig:
    """Online Sable (PPO) settings. Budgets count env steps: one joint step of one environment.

    Defaults are the `demo` profile: they learn lbf/8x8-2p-2f on a 2-core CPU in minutes.

    Attributes:
        total_env_steps: training budget; rounded down to whole updates of
            num_envs * rollout_length steps.
        num_checkpoints: K recording checkpoints, evenly spaced over the updates (the last one
            at the end of training); quality `low` in the first two thirds, `high` after.
        episodes_per_checkpoint: E evaluation episodes recorded at each checkpoint, with the
            current stochastic policy in fresh environments.
        reference_episodes: episodes of the final policy (and of the random policy) whose
            mean return is the task's `references` row.
        num_envs, rollout_length: vmapped environments and steps per rollout (one update).
        embed_dim, num_heads, num_blocks, decay_scaling: the Sable network.
        chunk_timesteps: timesteps per chunk of the chunkwise form in the update (bounds the
            (T*N)^2 score memory and is faster on CPU); None = the whole rollout as one chunk.
        learning_rate, adam_eps, max_grad_norm: Adam with global-norm gradient clipping.
        anneal_lr: decay the learning rate linearly towards 0 over the budget's updates (off
            by default, as in Mava; it steadies long runs).
        ppo_epochs, num_minibatches: passes over each rollout and minibatches (of whole
            environments) per pass.
        gamma, gae_lambda, clip_eps, ent_coef, vf_coef: PPO / GAE coefficients.
        shuffle_agents: a random agent order per epoch (the same for the whole batch).
        recompute_old_log_probs: with shuffled agents, recompute pi_old under the epoch's agent
            order (an extra forward pass per epoch) instead of using the acting log-probs
            (Mava's behaviour, the default: it learned as well on lbf and is ~30% faster).
        seed: everything random derives from it.
        progress_interval_s: seconds between progress lines.
    """

    total_env_steps: int = 2_000_000
    num_checkpoints: int = 10
    episodes_per_checkpoint: int = 16
    reference_episodes: int = 64
    num_envs: int = 64
    rollout_length: int = 64
    embed_dim: int = 32
    num_heads: int = 4
    num_blocks: int = 1
    decay_scaling: float = 0.8
    chunk_timesteps: int | None = 16
    learning_rate: float = 5e-4
    anneal_lr: bool = False
    adam_eps: float = 1e-5
    max_grad_norm: float = 0.5
    ppo_epochs: int = 4
    num_minibatches: int = 2
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    shuffle_agents: bool = True
    recompute_old_log_probs: bool = False
    seed: int = 0
    progress_interval_s: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "total_env_steps", "num_checkpoints", "reference_episodes", "num_envs",
            "rollout_length", "embed_dim", "num_heads", "num_blocks", "ppo_epochs",
            "num_minibatches",
        ):
            _positive_int(name, getattr(self, name))
        e = self.episodes_per_checkpoint
        if isinstance(e, bool) or not isinstance(e, int) or e < 1:
            raise ValueError(
                f"OnlineConfig.episodes_per_checkpoint must be >= 1 (every checkpoint records "
                f"at least one episode), got {e!r}"
            )
        if self.chunk_timesteps is not None:
            _positive_int("chunk_timesteps", self.chunk_timesteps)
            if self.rollout_length % self.chunk_timesteps:
                raise ValueError(
                    f"OnlineConfig.rollout_length={self.rollout_length} is not a multiple of "
                    f"chunk_timesteps={self.chunk_timesteps}"
                )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"OnlineConfig.embed_dim={self.embed_dim} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        if self.num_envs % self.num_minibatches:
            raise ValueError(
                f"OnlineConfig.num_envs={self.num_envs} is not divisible by "
                f"num_minibatches={self.num_minibatches} (minibatches hold whole environments)"
            )
        _number("decay_scaling", self.decay_scaling, 0.0, 1.0, low_open=True)
        _number("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        _number("adam_eps", self.adam_eps, 0.0, 1.0, low_open=True)
        _number("max_grad_norm", self.max_grad_norm, 0.0, float("inf"), low_open=True)
        _number("gamma", self.gamma, 0.0, 1.0)
        _number("gae_lambda", self.gae_lambda, 0.0, 1.0)
        _number("clip_eps", self.clip_eps, 0.0, 1.0, low_open=True)
        _number("ent_coef", self.ent_coef, 0.0, float("inf"))
        _number("vf_coef", self.vf_coef, 0.0, float("inf"))
        _number("progress_interval_s", self.progress_interval_s, 0.0, float("inf"))
        for name in ("anneal_lr", "shuffle_agents", "recompute_old_log_probs"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"OnlineConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"OnlineConfig.seed must be a non-negative int, got {self.seed!r}")

    # ------------------------------------------------------------------ presets

    @classmethod
    def profile(cls, name: str = "demo", env: str | None = None, **overrides: Any
                ) -> OnlineConfig:
        """`demo` (CPU, small model; with `env`, that environment's measured settings) or
        `paper` (GPU; Mava's Sable PPO settings), overridden."""
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown OnlineConfig field(s): {sorted(unknown)}")
        base: dict[str, Any] = {}
        if name == "paper":
            # Mava's recurrent Sable PPO (rec_sable defaults) at the paper's recording scale:
            # 20M steps, 50 checkpoints (the paper's Connector datasets), 32 episodes each.
            base = dict(
                total_env_steps=20_000_000, num_checkpoints=50, episodes_per_checkpoint=32,
                reference_episodes=320, num_envs=512, rollout_length=128, embed_dim=64,
                num_heads=1, chunk_timesteps=None, learning_rate=2.5e-4, ppo_epochs=4,
                num_minibatches=2, max_grad_norm=0.5, progress_interval_s=30.0,
            )
        elif env is not None:
            base = dict(DEMO_ENV_SETTINGS.get(env, {}))
        return cls(**{**base, **overrides})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_length


@dataclass(frozen=True)
class Plan:
    """What a config means for one task: whole updates and the recording schedule."""

    task: Task
    num_updates: int
    steps_per_update: int
    checkpoint_updates: tuple[int, ...]  # updates done when checkpoint k is recorded

    @property
    def num_checkpoints(self) -> int:
        return len(self.checkpoint_updates)

    @property
    def total_env_steps(self) -> int:
        return self.num_updates * self.steps_per_update

    def env_steps_at(self, checkpoint: int) -> int:
        return self.checkpoint_updates[checkpoint] * self.steps_per_update

    def quality(self, checkpoint: int) -> str:
        return quality_for_checkpoint(checkpoint, self.num_checkpoints)


def plan(task: str | Task, config: OnlineConfig) -> Plan:
    """Validate `config` against `task` (before any compute) and lay out the checkpoints.

    Checkpoint k (0-based) of K is recorded after round((k + 1) * U / K) of the U updates, so
    checkpoint k sits at fraction (k + 1) / K of the budget, as the lake's quality rule says.
    """
    task = resolve_task(task)
    per_update = config.steps_per_update
    if config.total_env_steps < per_update:
        raise ValueError(
            f"budget total_env_steps={config.total_env_steps:,} is smaller than one rollout "
            f"(num_envs * rollout_length = {config.num_envs} * {config.rollout_length} = "
            f"{per_update:,} env steps)"
        )
    updates = config.total_env_steps // per_update
    k = config.num_checkpoints
    if k > updates:
        raise ValueError(
            f"num_checkpoints={k} is more than the {updates} update(s) the budget allows "
            f"({config.total_env_steps:,} env steps / {per_update:,} per update)"
        )
    schedule = tuple(((i + 1) * updates + k // 2) // k for i in range(k))  # round half up
    return Plan(task, updates, per_update, schedule)
