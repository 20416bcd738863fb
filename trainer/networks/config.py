"""Typed, validated configuration of the Sable network."""

from __future__ import annotations

from dataclasses import dataclass


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"SableConfig.{name} must be a positive int, got {value!r}")


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

    obs_width: int
    num_actions: int
    embed_dim: int = 64
    num_heads: int = 4
    num_blocks: int = 1
    decay_scaling: float = 0.8
    value_head: bool = True
    q_head: bool = False
    value_bins: int | None = None
    chunk_timesteps: int | None = None
    max_agents: int | None = None

    def __post_init__(self) -> None:
        for name in ("obs_width", "num_actions", "embed_dim", "num_heads", "num_blocks"):
            _check_positive_int(name, getattr(self, name))
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"SableConfig.embed_dim={self.embed_dim} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        if isinstance(self.decay_scaling, bool) or not isinstance(self.decay_scaling, int | float):
            raise ValueError(
                f"SableConfig.decay_scaling must be a number, got {self.decay_scaling!r}"
            )
        if not 0.0 < self.decay_scaling <= 1.0:
            raise ValueError(
                f"SableConfig.decay_scaling must lie in (0, 1], got {self.decay_scaling!r}"
            )
        for name in ("value_head", "q_head"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"SableConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.value_bins is not None:
            _check_positive_int("value_bins", self.value_bins)
            if self.value_bins < 2:
                raise ValueError(
                    f"SableConfig.value_bins must be None or >= 2, got {self.value_bins!r}"
                )
        if self.chunk_timesteps is not None:
            _check_positive_int("chunk_timesteps", self.chunk_timesteps)
        if self.max_agents is not None:
            _check_positive_int("max_agents", self.max_agents)

    @property
    def head_size(self) -> int:
        return self.embed_dim // self.num_heads
