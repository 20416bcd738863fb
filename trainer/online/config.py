"""Typed, validated configuration of online Sable (PPO) and its recording schedule.

`OnlineConfig` declares every knob (`trainer.knobs`: default, bounds, help; the Dagster
config is derived from it); `OnlineConfig.profile("demo" | "paper", **overrides)` gives the
presets. `Schedule.of(task, config)` checks the config against a task and turns the budget into
whole updates and K evenly spaced recording checkpoints. Every check runs before any JAX
compilation or environment step, and every error is a `ValueError` naming the bad value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lake_schema.catalogue import Task
from lake_schema.schema import quality_for_checkpoint
from trainer.knobs import check_divides, check_knobs, knob, preset, to_json, with_default
from trainer.networks.config import NetworkKnobs
from trainer.tasks import resolve_task

# Every profile, defined here once: `demo` is the defaults (what `make demo` runs); `paper` is
# Mava's recurrent Sable PPO. The paper gives no online budget: this one is Mava's rec_sable
# default, 1220 updates of 32 environments (16 per device x 2 update batches) x 128 steps,
# about 5M env steps. Its recording (checkpoints, episodes) is each env's, set by the
# `paper` reproduction preset from the paper's appendix L (`trainer.experiments`).
PROFILES: dict[str, dict[str, Any]] = {
    "demo": {},
    "paper": dict(
        total_env_steps=1220 * 32 * 128, num_checkpoints=50, episodes_per_checkpoint=128,
        reference_episodes=320, num_envs=32, rollout_length=128, embed_dim=64, num_heads=1,
        chunk_timesteps=None, learning_rate=2.5e-4, ppo_epochs=4, num_minibatches=2,
        max_grad_norm=0.5, progress_interval_s=30.0,
    ),
}
# The demo profile's per-environment settings, from benchmarks/online_sable.md: on
# rware/tiny-2ag, 64-step rollouts at lr 5e-4 stalled (a 20M-step run fell to 0 deliveries),
# while Mava's 128-step rollouts at lr 2.5e-4 reached 3 deliveries per episode by 8M steps.
# On lbf, 32 environments make twice the updates of 64 from the same env steps, at the same
# steps/s on CPU: in 300k steps 15x15-3p-5f's last checkpoints reach 0.23-0.24 against
# 0.16-0.18 (benchmarks/RESULTS.md, 1bdd043).
DEMO_ENV_SETTINGS: dict[str, dict[str, Any]] = {
    "lbf": {"num_envs": 32},
    "rware": {"rollout_length": 128, "learning_rate": 2.5e-4},
}


@dataclass(frozen=True)
class OnlineConfig(NetworkKnobs):
    """Online Sable (PPO) settings. Budgets count env steps: one joint step of one environment.

    Defaults are the `demo` profile, what `make demo` runs with its per-environment settings
    (`DEMO_ENV_SETTINGS`: lbf at 32 environments): they learn lbf/8x8-2p-2f on a 2-core CPU
    in minutes. Each field's meaning, bounds and default are its `knob`.
    """

    total_env_steps: int = knob(300_000, ge=1, program=False, doc=(
        "training budget; rounded down to whole updates of num_envs * rollout_length steps"))
    num_checkpoints: int = knob(6, ge=1, program=False, doc=(
        "K recording checkpoints, evenly spaced over the updates (the last at the end of "
        "training); quality `low` in the first two thirds, `high` after"))
    episodes_per_checkpoint: int = knob(64, ge=1, program=False, doc=(
        "E episodes recorded at each checkpoint, with the current stochastic policy in fresh "
        "environments (the paper records by steps: about 4M steps a task on LBF, 10.24M on "
        "Connector, 128 episodes an evaluation on RWARE, appendix L; the demo's short "
        "training moves returns less than 16 "
        "episodes' noise, so its quality tags need more)"))
    reference_episodes: int = knob(64, ge=1, program=False, doc=(
        "episodes of the final policy (and of the random policy) whose mean return is the "
        "task's `references` row (every normalised return divides by it)"))
    num_envs: int = knob(64, ge=1, doc="vmapped environments")
    rollout_length: int = knob(64, ge=1, doc="steps per rollout (one update)")
    chunk_timesteps: int | None = with_default(NetworkKnobs, "chunk_timesteps", 16)
    learning_rate: float = knob(5e-4, gt=0.0, le=1.0, doc="Adam step size")
    anneal_lr: bool = knob(False, doc=(
        "decay the learning rate linearly towards 0 over the budget's updates (off, as in "
        "Mava; it steadies long runs)"))
    adam_eps: float = knob(1e-5, gt=0.0, le=1.0, doc="Adam epsilon")
    max_grad_norm: float = knob(0.5, gt=0.0, doc="global-norm gradient clipping")
    ppo_epochs: int = knob(4, ge=1, doc="passes over each rollout")
    num_minibatches: int = knob(2, ge=1, doc="minibatches (of whole environments) per pass")
    gamma: float = knob(0.99, ge=0.0, le=1.0, doc="discount")
    gae_lambda: float = knob(0.95, ge=0.0, le=1.0, doc="GAE lambda")
    clip_eps: float = knob(0.2, gt=0.0, le=1.0, doc="PPO ratio (and value) clipping")
    ent_coef: float = knob(0.01, ge=0.0, doc="entropy bonus coefficient")
    vf_coef: float = knob(0.5, ge=0.0, doc="value loss coefficient")
    agent_ids: bool = knob(True, doc=(
        "append a one-hot agent id to each agent's observation at the network's input "
        "(Mava's add_agent_id, on by default there); the ids travel with the agents when "
        "their order is shuffled. The lake's observations never hold them"))
    shuffle_agents: bool = knob(True, doc=(
        "a random agent order per epoch (the same for the whole batch)"))
    recompute_old_log_probs: bool = knob(False, doc=(
        "with shuffled agents, recompute pi_old under the epoch's agent order (an extra "
        "forward pass per epoch) instead of using the acting log-probs (Mava's behaviour, the "
        "default: it learned as well on lbf and is ~30% faster)"))
    seed: int = knob(0, ge=0, program=False, doc="everything random derives from it")
    progress_interval_s: float = knob(10.0, ge=0.0, model=False,
                                      doc="seconds between progress lines")

    def __post_init__(self) -> None:
        check_knobs(self)
        check_divides(self, "rollout_length", "chunk_timesteps", "is not a multiple of")
        check_divides(self, "embed_dim", "num_heads")
        check_divides(self, "num_envs", "num_minibatches",
                      why="minibatches hold whole environments")

    # ------------------------------------------------------------------ presets

    @classmethod
    def profile(cls, name: str = "demo", env: str | None = None, **overrides: Any
                ) -> OnlineConfig:
        """`demo` (CPU, small model; with `env`, that environment's measured settings) or
        `paper` (GPU; Mava's Sable PPO settings), overridden."""
        measured = DEMO_ENV_SETTINGS.get(env, {}) if name == "demo" else {}
        return preset(cls, PROFILES, name, {**measured, **overrides})

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_length


@dataclass(frozen=True)
class Schedule:
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

    @classmethod
    def of(cls, task: str | Task, config: OnlineConfig) -> Schedule:
        """Validate `config` against `task` (before any compute) and lay out the checkpoints.

        Checkpoint k (0-based) of K is recorded after round((k + 1) * U / K) of the U updates,
        so checkpoint k sits at fraction (k + 1) / K of the budget, as the lake's quality rule
        says.
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
        at = tuple(((i + 1) * updates + k // 2) // k for i in range(k))  # round half up
        return cls(task, updates, per_update, at)
