"""Typed, validated configuration of an offline training run (BC-Sable, CQL-Sable, Oryx).

`OfflineConfig` declares every knob of one model (`trainer.knobs`: default, bounds, help; the
Dagster config is derived from it): its environment, algorithm, network size, value learning
(HL-Gauss or MSE), the batch shape and the three design-choice switches (task-balancing mode,
HL-Gauss vs MSE, agent masking + shuffling), the optimiser and the loop.
`OfflineConfig.profile("demo" | "paper", **overrides)` gives the two presets. Every check runs
on construction, before any I/O or compilation, and every error is a `ValueError` naming the
bad value.

`config_id(config, selection)` is the model's identity: a hash of everything that changes
what is trained (not of how often it logs), so runs of different configs never share a
directory nor an `evaluations` partition.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lake_schema.catalogue import ENVS
from trainer.data.config import BatchKnobs, LoaderConfig
from trainer.data.selection import DataSelection
from trainer.knobs import (
    check_divides,
    check_knobs,
    fields_without,
    from_json,
    knob,
    preset,
    program_key,
    to_json,
)
from trainer.networks.config import NetworkKnobs, SableConfig

if TYPE_CHECKING:
    from trainer.offline.hl_gauss import Support

ALGORITHMS = ("bc", "cql", "oryx")
VALUE_LOSSES = ("hl_gauss", "mse")
TASK_WEIGHTINGS = ("equal", "agent_steps")
# Every profile, defined here once: `demo` is the defaults (what `make demo` trains), `paper`
# the seed paper's settings (appendix K).
PROFILES: dict[str, dict[str, Any]] = {
    "demo": {},
    "paper": {"embed_dim": 512, "batch_size": 480, "seq_len": 20, "num_updates": 60_000,
              "pad_agents": "env", "log_every": 100, "checkpoint_every": 1000,
              "eval_every": 100},
}


@dataclass(frozen=True)
class OfflineConfig(NetworkKnobs, BatchKnobs):
    """One offline model. Defaults are the CPU `demo` profile, what `make demo` trains; each
    field's meaning, bounds and default are its `knob`. The three design-choice switches of
    the paper's ablations: `batch_mode`, `value_loss`, `agent_masking`."""

    env: str = knob("lbf", choices=tuple(ENVS), doc=(
        "the environment: one model, one observation space"))
    algorithm: str = knob("oryx", choices=ALGORITHMS, doc=(
        "`bc` (BC-Sable), `cql` (CQL-Sable) or `oryx` (autoregressive ICQ)"))
    value_loss: str = knob("hl_gauss", choices=VALUE_LOSSES, doc=(
        "switch: `hl_gauss` (classification over num_bins bins, sigma = smoothing_ratio x bin "
        "width, on value_support or the environment's) or `mse` (the ablation)"))
    num_bins: int = knob(51, ge=2, doc="HL-Gauss bins")
    smoothing_ratio: float = knob(0.75, gt=0.0, le=100.0, doc="HL-Gauss sigma / bin width")
    value_support: tuple[float, float] | None = knob(None, doc=(
        "HL-Gauss (v_min, v_max); null = the environment's"))
    task_weighting: str = knob("equal", choices=TASK_WEIGHTINGS, doc=(
        "switch: `equal` (the paper's Eq. 1: the loss is the mean over the batch's tasks of "
        "each task's mean loss) or `agent_steps` (the ablation: one mean over every real "
        "agent-step, so a task weighs in proportion to its number of agents)"))
    agent_masking: bool = knob(True, doc=(
        "switch: agent masking + per-update agent shuffling (paper). Off (the ablation): padded "
        "agent slots are treated as real agents and the agent order is fixed"))
    learning_rate: float = knob(1e-3, gt=0.0, le=10.0, doc="Adam step size")
    max_grad_norm: float = knob(10.0, gt=0.0, doc="global-norm gradient clipping")
    gamma: float = knob(0.99, ge=0.0, le=1.0, doc="discount")
    tau: float = knob(0.005, gt=0.0, le=1.0, doc=(
        "Polyak rate of the target network (updated after every step)"))
    cql_alpha: float = knob(10.0, ge=0.0, doc="CQL's conservative coefficient")
    value_temperature: float = knob(1000.0, gt=0.0, doc="Oryx's ICQ value temperature")
    policy_temperature: float = knob(0.1, gt=0.0, doc="Oryx's ICQ policy temperature")
    critic_coef: float = knob(1.0, ge=0.0, doc="Oryx's critic loss coefficient")
    num_updates: int = knob(300, ge=1, program=False, doc="training length (paper: 60k)")
    seed: int = knob(0, ge=0, program=False, doc="the seed of everything random")
    log_every: int = knob(50, ge=1, model=False,
                          doc="updates between progress lines (and NaN checks)")
    checkpoint_every: int = knob(500, ge=1, model=False, doc="updates between orbax checkpoints")
    keep_checkpoints: int = knob(2, ge=1, model=False, doc="orbax checkpoints kept")
    eval_every: int = knob(100, ge=0, model=False, doc=(
        "periodic evaluation on the training tasks (0 = off): the best checkpoint by mean "
        "normalised return is kept apart (`best/`), and is what evaluation takes by default "
        "(the paper's protocol: selected on training tasks only)"))
    eval_episodes: int = knob(32, ge=1, model=False,
                              doc="episodes per task of a periodic evaluation")

    def __post_init__(self) -> None:
        if isinstance(self.value_support, list):
            object.__setattr__(self, "value_support", tuple(self.value_support))
        check_knobs(self)
        check_divides(self, "embed_dim", "num_heads")
        check_divides(self, "seq_len", "chunk_timesteps", "is not a multiple of")
        if self.pad_agents == "batch":
            raise ValueError("OfflineConfig.pad_agents 'batch' is the loader's alone: a model's "
                             "update compiles for one agent count; choose env, selection or a "
                             "count")
        if self.value_support is not None:
            support = tuple(self.value_support)
            if len(support) != 2 or not all(isinstance(v, int | float) for v in support):
                raise ValueError(f"OfflineConfig.value_support must be (v_min, v_max), got "
                                 f"{self.value_support!r}")
            object.__setattr__(self, "value_support", (float(support[0]), float(support[1])))
            from trainer.offline.hl_gauss import make_support  # its own checks of the support

            make_support(*self.value_support, self.num_bins, self.smoothing_ratio)

    # ------------------------------------------------------------------ presets, JSON

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> OfflineConfig:
        """`demo` (CPU: small model, small batches) or `paper` (appendix K), with overrides."""
        return preset(cls, PROFILES, name, overrides)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OfflineConfig:
        return from_json(cls, d)

    # ------------------------------------------------------------------ derived

    @property
    def hl_gauss(self) -> bool:
        return self.value_loss == "hl_gauss"

    @property
    def uses_critic(self) -> bool:
        return self.algorithm in ("cql", "oryx")

    def support(self) -> Support | None:
        """The HL-Gauss support (None with MSE or for BC, which learns no values)."""
        if not (self.hl_gauss and self.uses_critic):
            return None
        from trainer.offline.hl_gauss import make_support  # JAX: only when a model is built

        v_min, v_max = self.value_support or ENVS[self.env].value_support
        return make_support(v_min, v_max, self.num_bins, self.smoothing_ratio)

    def sable_config(self) -> SableConfig:
        """The network: a per-action Q head on the decoder for CQL and Oryx (no value head)."""
        spec = ENVS[self.env]
        return SableConfig.sized_as(
            self, spec.obs_width, spec.num_actions, value_head=False, q_head=self.uses_critic,
            value_bins=self.num_bins if self.support() is not None else None)

    def loader_config(self) -> LoaderConfig:
        """The loader of this model: its batch knobs, its seed, agent shuffling with masking."""
        batch = {f.name: getattr(self, f.name) for f in dataclasses.fields(BatchKnobs)}
        return LoaderConfig(**batch, seed=self.seed, shuffle_agents=self.agent_masking)

    def pad_to(self, num_agents: Sequence[int]) -> int:
        """Agent slots per batch for tasks of `num_agents` agents (what the network sees
        without agent masking): the loader's rule."""
        return self.loader_config().pad_to(self.env, tuple(num_agents))

    def step_key(self) -> OfflineConfig:
        """This config with the knobs the compiled update does not depend on (`program=False`:
        the loop, the budget, the seed, shapes, which are jit's own business) reset."""
        return program_key(self)

    def check_selection(self, selection: DataSelection) -> None:
        """A selection this model can train on: same env, enough batch for the tasks."""
        if selection.env_name != self.env:
            raise ValueError(f"the dataset selection is from {selection.env_name!r} "
                             f"({', '.join(selection.task_names)}) but the model is for "
                             f"{self.env!r}")
        self.loader_config().check_tasks(len(selection.task_names))


def config_id(config: OfflineConfig, selection: DataSelection) -> str:
    """A short, stable id of (config, selection): what the model is, not how it is logged."""
    model = {k: v for k, v in config.to_json().items()
             if k not in fields_without(OfflineConfig, "model")}
    blob = json.dumps({"config": model, "selection": selection.to_json()}, sort_keys=True)
    return f"{config.env}-{config.algorithm}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def model_name(algorithm: str, num_tasks: int, seed: int | str) -> str:
    """A model's readable name, shown beside its config id in tables and plots:
    `bc · 3 tasks · seed 0` (the id tells apart models the name does not)."""
    return f"{algorithm} · {num_tasks} task{'' if int(num_tasks) == 1 else 's'} · seed {seed}"


@dataclass(frozen=True)
class EvalConfig:
    """How a model is evaluated; each field's meaning, bounds and default are its `knob`."""

    episodes: int = knob(320, ge=1, doc="E episodes per task (paper: 32 periodic, 320 final)")
    seed: int = knob(0, ge=0, doc="the evaluation seed")
    greedy: bool = knob(False, doc="argmax actions for BC/Oryx (CQL is always greedy in Q)")
    checkpoint: str | int = knob("best", choices=("latest", "best"), ge=0, doc=(
        "which parameters: `best` (the best periodic evaluation on the training tasks; the "
        "latest when there was none), `latest` or an update number"))
    reference_run: str | None = knob(None, doc=(
        "which `references` run normalises (null: the most recent per task)"))

    def __post_init__(self) -> None:
        check_knobs(self)
