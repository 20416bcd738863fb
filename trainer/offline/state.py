"""What an offline model's jitted update carries and its checkpoints hold.

Apart from `training` so that restoring a checkpoint's parameters (`checkpoint.load_params`,
used by evaluation) needs the state's structure, not the training loop.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trainer.networks import Sable
from trainer.offline.config import OfflineConfig


class TrainState(NamedTuple):
    """What the jitted update carries and the checkpoint holds."""

    params: Any
    target_params: Any  # Polyak average of params (unused by BC, kept for a uniform state)
    opt_state: Any
    update: jax.Array  # [] int32: updates done


def make_optimizer(config: OfflineConfig) -> optax.GradientTransformation:
    """Adam with global-norm clipping (og-marl's Oryx settings)."""
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                       optax.adam(config.learning_rate))


def init_train_state(model: Sable, config: OfflineConfig, key: jax.Array) -> TrainState:
    """Fresh parameters, a copy as the target network, fresh Adam state, update 0."""
    params = model.init_params(key)
    target = jax.tree.map(jnp.copy, params)  # own buffers: the update donates the state
    return TrainState(params, target, make_optimizer(config).init(params),
                      jnp.zeros((), jnp.int32))
