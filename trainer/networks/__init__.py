"""Sable network: multi-scale retention (`retention`) and the encoder-decoder (`sable`)."""

from trainer.networks.config import SableConfig
from trainer.networks.sable import (
    ActResult,
    Sable,
    SableOutput,
    SableState,
    init_state,
    param_count,
    previous_action_tokens,
)

__all__ = [
    "ActResult",
    "Sable",
    "SableConfig",
    "SableOutput",
    "SableState",
    "init_state",
    "param_count",
    "previous_action_tokens",
]
