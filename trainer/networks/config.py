"""Typed, validated configuration of the Sable network.

`NetworkKnobs` declares the network's size knobs once; the training configurations (online
and offline) inherit them, and `SableConfig` adds what a task and an algorithm fix (the
observation and action sizes, the heads).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trainer.knobs import check_divides, check_knobs, knob


@dataclass(frozen=True)
class NetworkKnobs:
    """The Sable size knobs: what a researcher sets. Subclasses validate them (`check_knobs`)
    together with their own knobs."""

    embed_dim: int = knob(32, ge=1, doc="Sable model width D (paper: 512; Mava: 64)")
    num_heads: int = knob(4, ge=1, doc="retention heads; embed_dim must be divisible by it")
    num_blocks: int = knob(1, ge=1, doc="encoder and decoder blocks (each)")
    decay_scaling: float = knob(0.8, gt=0.0, le=1.0, doc="factor on the per-head decays")
    chunk_timesteps: int | None = knob(None, ge=1, doc=(
        "timesteps per chunk of the chunkwise form in training (the training sequence must be "
        "a multiple; the state is carried between chunks): bounds the (T*N)^2 score memory "
        "and is faster on CPU; null = the whole sequence as one chunk"))


@dataclass(frozen=True, kw_only=True)
class SableConfig(NetworkKnobs):
    """A Sable network: the size knobs, plus what the task and the algorithm fix.

    value_bins: None for scalar values/Q; an int >= 2 for HL-Gauss logits with that many bins
    (value (B, T, N, bins), Q (B, T, N, A, bins)).
    """

    obs_width: int = knob(dataclasses.MISSING, ge=1, doc="per-agent observation features F")
    num_actions: int = knob(dataclasses.MISSING, ge=1, doc="discrete actions A per agent")
    value_head: bool = knob(True, doc="the encoder's per-agent value head (Oryx drops it)")
    q_head: bool = knob(False, doc="a per-action Q head on the decoder (CQL, Oryx)")
    value_bins: int | None = knob(None, ge=2, doc="HL-Gauss bins of the value and Q heads")
    max_agents: int | None = knob(None, ge=1, doc="inputs with more agents are refused")

    def __post_init__(self) -> None:
        check_knobs(self)
        check_divides(self, "embed_dim", "num_heads")

    @classmethod
    def sized_as(cls, config: NetworkKnobs, obs_width: int, num_actions: int, **heads: object
                 ) -> SableConfig:
        """The network of a training config (its `NetworkKnobs`) for F observation features
        and A actions, with the `heads` settings (value_head, q_head, value_bins)."""
        sizes = {f.name: getattr(config, f.name) for f in dataclasses.fields(NetworkKnobs)}
        return cls(obs_width=obs_width, num_actions=num_actions, **sizes, **heads)

    @property
    def head_size(self) -> int:
        return self.embed_dim // self.num_heads
