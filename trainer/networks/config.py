"""Typed, validated configuration of the Sable network."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trainer.knobs import check_divides, check_knobs, knob


@dataclass(frozen=True)
class SableConfig:
    """Sizes and switches of a Sable network.

    Attributes:
        obs_width: per-agent observation features F.
        num_actions: discrete actions A per agent.
        embed_dim: model width D (paper: 512; Mava: 64).
        num_heads: retention heads H; embed_dim must be divisible by it.
        num_blocks: encoder blocks and decoder blocks (each).
        decay_scaling: factor on the per-head decays, in (0, 1].
        value_head: the encoder's per-agent value head (Oryx drops it).
        q_head: a per-action Q head on the decoder (Oryx).
        value_bins: None for scalar values/Q; an int >= 2 for HL-Gauss logits with that many bins
            (value (B, T, N, bins), Q (B, T, N, A, bins)).
        chunk_timesteps: None trains on the whole sequence as one chunk; an int splits the T
            timesteps into chunks of that many (T must be a multiple), carried recurrently,
            which bounds the (T*N)^2 score memory.
        max_agents: if set, inputs with more agents are refused.
    """

    obs_width: int = knob(dataclasses.MISSING, ge=1, doc="per-agent observation features F")
    num_actions: int = knob(dataclasses.MISSING, ge=1, doc="discrete actions A per agent")
    embed_dim: int = knob(64, ge=1, doc="model width D")
    num_heads: int = knob(4, ge=1, doc="retention heads H")
    num_blocks: int = knob(1, ge=1, doc="encoder and decoder blocks (each)")
    decay_scaling: float = knob(0.8, gt=0.0, le=1.0, doc="factor on the per-head decays")
    value_head: bool = knob(True, doc="the encoder's per-agent value head")
    q_head: bool = knob(False, doc="a per-action Q head on the decoder")
    value_bins: int | None = knob(None, ge=2, doc="HL-Gauss bins of the value and Q heads")
    chunk_timesteps: int | None = knob(None, ge=1, doc="timesteps per chunk in training")
    max_agents: int | None = knob(None, ge=1, doc="inputs with more agents are refused")

    def __post_init__(self) -> None:
        check_knobs(self)
        check_divides(self, "embed_dim", "num_heads")

    @classmethod
    def sized_as(cls, config: object, obs_width: int, num_actions: int, **heads: object
                 ) -> SableConfig:
        """The network of a training config (its embed_dim, num_heads, num_blocks,
        decay_scaling and chunk_timesteps) for F observation features and A actions, with the
        `heads` settings (value_head, q_head, value_bins)."""
        sizes = ("embed_dim", "num_heads", "num_blocks", "decay_scaling", "chunk_timesteps")
        return cls(obs_width=obs_width, num_actions=num_actions,
                   **{k: getattr(config, k) for k in sizes}, **heads)

    @property
    def head_size(self) -> int:
        return self.embed_dim // self.num_heads


@dataclass(frozen=True)
class NetworkKnobs:
    """The Sable size knobs of a training configuration (online and offline share them:
    declared once). Its subclasses run `check_knobs` and add `chunk_timesteps`."""

    embed_dim: int = knob(32, ge=1, doc="Sable model width D (paper: 512; Mava: 64)")
    num_heads: int = knob(4, ge=1, doc="retention heads; embed_dim must be divisible by it")
    num_blocks: int = knob(1, ge=1, doc="encoder and decoder blocks (each)")
    decay_scaling: float = knob(0.8, gt=0.0, le=1.0, doc="factor on the per-head decays")
