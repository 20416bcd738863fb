"""Typed, validated configuration of an offline training run (BC-Sable, CQL-Sable, Oryx).

`OfflineConfig` holds every knob of one model: its environment, algorithm, network size,
value learning (HL-Gauss or MSE), the batch shape and the three design-choice switches
(task-balancing mode, HL-Gauss vs MSE, agent masking + shuffling), the optimiser and the loop.
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
from dataclasses import dataclass
from typing import Any

from lake_schema.catalogue import ENVS
from trainer.data import DataSelection, LoaderConfig
from trainer.networks import SableConfig
from trainer.offline.hl_gauss import Support, make_support

ALGORITHMS = ("bc", "cql", "oryx")
VALUE_LOSSES = ("hl_gauss", "mse")
BATCH_MODES = ("balanced", "single_task", "proportional")
TASK_WEIGHTINGS = ("equal", "agent_steps")
PROFILES = ("demo", "paper")
# Fields that do not change the trained model: left out of the config id.
_NOT_IN_ID = frozenset({"log_every", "checkpoint_every", "keep_checkpoints", "eval_every",
                        "eval_episodes", "num_workers"})


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"OfflineConfig.{name} must be an int >= {minimum}, got {value!r}")


def _number(name: str, value: object, low: float, high: float, low_open: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"OfflineConfig.{name} must be a number, got {value!r}")
    if not ((low < value if low_open else low <= value) and value <= high):
        raise ValueError(f"OfflineConfig.{name} must lie in {'(' if low_open else '['}{low}, "
                         f"{high}], got {value!r}")


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(choices)}")


@dataclass(frozen=True)
class OfflineConfig:
    """One offline model. Defaults are the CPU `demo` profile.

    Attributes:
        env: the environment (`lbf`, `rware`, `connector`): one model, one observation space.
        algorithm: `bc` (BC-Sable), `cql` (CQL-Sable) or `oryx` (autoregressive ICQ).
        embed_dim, num_heads, num_blocks, decay_scaling, chunk_timesteps: the Sable network
            (paper: 512, 4, 1, 0.8).
        value_loss: `hl_gauss` (classification over `num_bins` bins, sigma = smoothing_ratio x
            bin width, on `value_support` or the environment's) or `mse` (the ablation).
        batch_size, seq_len: B chunks of T steps per update (paper: 480, 20).
        batch_mode: the loader's task balancing: `balanced` (paper), `single_task` (the
            ablation: each batch from one random task) or `proportional`.
        task_weighting: `equal` (the paper's Eq. 1: the loss is the mean over the batch's
            tasks of each task's mean loss) or `agent_steps` (the ablation: one mean over every
            real agent-step, so a task weighs in proportion to its number of agents).
        agent_masking: agent masking + per-update agent shuffling (paper). Off (the ablation):
            padded agent slots are treated as real agents by the network and the losses, and
            the agent order is fixed.
        pad_agents: agent slots per batch (`env`: the environment's maximum, or a count).
        learning_rate, max_grad_norm, gamma, tau: Adam with global-norm clipping, discount,
            Polyak rate of the target network (updated after every step).
        cql_alpha: CQL's conservative coefficient.
        value_temperature, policy_temperature, critic_coef: Oryx's ICQ settings.
        num_updates, seed: training length and the seed of everything random.
        log_every: updates between progress lines (and NaN checks).
        checkpoint_every, keep_checkpoints: orbax checkpoint spacing and how many to keep.
        eval_every, eval_episodes: periodic evaluation on the training tasks (0 = off): the
            best checkpoint by mean normalised return is kept apart (`best/`).
        num_workers: Grain worker processes for the loader.
    """

    env: str = "lbf"
    algorithm: str = "oryx"
    embed_dim: int = 32
    num_heads: int = 4
    num_blocks: int = 1
    decay_scaling: float = 0.8
    chunk_timesteps: int | None = None
    value_loss: str = "hl_gauss"
    num_bins: int = 51
    smoothing_ratio: float = 0.75
    value_support: tuple[float, float] | None = None
    batch_size: int = 32
    seq_len: int = 20
    batch_mode: str = "balanced"
    task_weighting: str = "equal"
    agent_masking: bool = True
    pad_agents: str | int = "env"
    learning_rate: float = 1e-3
    max_grad_norm: float = 10.0
    gamma: float = 0.99
    tau: float = 0.005
    cql_alpha: float = 10.0
    value_temperature: float = 1000.0
    policy_temperature: float = 0.1
    critic_coef: float = 1.0
    num_updates: int = 2000
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 0
    eval_episodes: int = 32
    num_workers: int = 0

    def __post_init__(self) -> None:
        _choice("environment", self.env, tuple(ENVS))
        _choice("algorithm", self.algorithm, ALGORITHMS)
        _choice("value_loss", self.value_loss, VALUE_LOSSES)
        _choice("batch_mode", self.batch_mode, BATCH_MODES)
        _choice("task_weighting", self.task_weighting, TASK_WEIGHTINGS)
        for name in ("embed_dim", "num_heads", "num_blocks", "batch_size", "seq_len",
                     "num_updates", "log_every", "checkpoint_every", "keep_checkpoints",
                     "eval_episodes"):
            _positive_int(name, getattr(self, name))
        for name in ("seed", "eval_every", "num_workers"):
            _positive_int(name, getattr(self, name), 0)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"OfflineConfig.embed_dim={self.embed_dim} is not divisible by "
                             f"num_heads={self.num_heads}")
        if self.chunk_timesteps is not None:
            _positive_int("chunk_timesteps", self.chunk_timesteps)
            if self.seq_len % self.chunk_timesteps:
                raise ValueError(f"OfflineConfig.seq_len={self.seq_len} is not a multiple of "
                                 f"chunk_timesteps={self.chunk_timesteps}")
        _number("decay_scaling", self.decay_scaling, 0.0, 1.0)
        _positive_int("num_bins", self.num_bins, 2)
        _number("smoothing_ratio", self.smoothing_ratio, 0.0, 100.0)
        if self.value_support is not None:
            support = tuple(self.value_support)
            if len(support) != 2 or not all(isinstance(v, int | float) for v in support):
                raise ValueError(f"OfflineConfig.value_support must be (v_min, v_max), got "
                                 f"{self.value_support!r}")
            object.__setattr__(self, "value_support", (float(support[0]), float(support[1])))
            make_support(*self.value_support, self.num_bins, self.smoothing_ratio)
        if not isinstance(self.agent_masking, bool):
            raise ValueError(f"OfflineConfig.agent_masking must be a bool, got "
                             f"{self.agent_masking!r}")
        if isinstance(self.pad_agents, str):
            _choice("pad_agents", self.pad_agents, ("env",))
        else:
            _positive_int("pad_agents", self.pad_agents)
        _number("learning_rate", self.learning_rate, 0.0, 10.0)
        _number("max_grad_norm", self.max_grad_norm, 0.0, float("inf"))
        _number("gamma", self.gamma, 0.0, 1.0, low_open=False)
        _number("tau", self.tau, 0.0, 1.0)
        _number("cql_alpha", self.cql_alpha, 0.0, float("inf"), low_open=False)
        _number("value_temperature", self.value_temperature, 0.0, float("inf"))
        _number("policy_temperature", self.policy_temperature, 0.0, float("inf"))
        _number("critic_coef", self.critic_coef, 0.0, float("inf"), low_open=False)

    # ------------------------------------------------------------------ presets, JSON

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> OfflineConfig:
        """`demo` (CPU: small model, small batches) or `paper` (appendix K), with overrides."""
        _choice("profile", name, PROFILES)
        base: dict[str, Any] = {}
        if name == "paper":
            base = {"embed_dim": 512, "batch_size": 480, "seq_len": 20, "num_updates": 60_000,
                    "log_every": 100, "checkpoint_every": 1000, "eval_every": 100}
        return cls(**{**base, **overrides})

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["value_support"] is not None:
            d["value_support"] = list(d["value_support"])
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OfflineConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown OfflineConfig field(s) {unknown}")
        d = dict(d)
        if d.get("value_support") is not None:
            d["value_support"] = tuple(d["value_support"])
        return cls(**d)

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
        v_min, v_max = self.value_support or ENVS[self.env].value_support
        return make_support(v_min, v_max, self.num_bins, self.smoothing_ratio)

    def sable_config(self) -> SableConfig:
        """The network: a per-action Q head on the decoder for CQL and Oryx (no value head)."""
        spec = ENVS[self.env]
        return SableConfig(
            obs_width=spec.obs_width,
            num_actions=spec.num_actions,
            embed_dim=self.embed_dim,
            num_heads=self.num_heads,
            num_blocks=self.num_blocks,
            decay_scaling=float(self.decay_scaling),
            value_head=False,
            q_head=self.uses_critic,
            value_bins=self.num_bins if self.support() is not None else None,
            chunk_timesteps=self.chunk_timesteps,
        )

    def loader_config(self) -> LoaderConfig:
        return LoaderConfig(
            batch_size=self.batch_size,
            seq_len=self.seq_len,
            mode=self.batch_mode,
            seed=self.seed,
            shuffle_agents=self.agent_masking,
            pad_agents=self.pad_agents,
            num_workers=self.num_workers,
        )

    def pad_to(self) -> int:
        """Agent slots per batch (what the network sees without agent masking)."""
        return ENVS[self.env].max_agents if self.pad_agents == "env" else int(self.pad_agents)

    def step_key(self) -> OfflineConfig:
        """This config with the loop-only and shape-only settings reset: what a compiled update
        depends on (shapes are jit's own business)."""
        return dataclasses.replace(
            self, batch_size=1, pad_agents="env", batch_mode="balanced", num_updates=1, seed=0,
            log_every=1, checkpoint_every=1, keep_checkpoints=1, eval_every=0, eval_episodes=1,
            num_workers=0)

    def check_selection(self, selection: DataSelection) -> None:
        """A selection this model can train on: same env, enough batch for the tasks."""
        if selection.env_name != self.env:
            raise ValueError(f"the dataset selection is from {selection.env_name!r} "
                             f"({', '.join(selection.task_names)}) but the model is for "
                             f"{self.env!r}")
        self.loader_config().check_tasks(len(selection.task_names))


def config_id(config: OfflineConfig, selection: DataSelection) -> str:
    """A short, stable id of (config, selection): what the model is, not how it is logged."""
    model = {k: v for k, v in config.to_json().items() if k not in _NOT_IN_ID}
    blob = json.dumps({"config": model, "selection": selection.to_json()}, sort_keys=True)
    return f"{config.env}-{config.algorithm}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
