"""What an offline model's jitted update carries and its checkpoints hold.

Apart from `training` so that restoring a checkpoint's parameters (`checkpoint.load_params`,
used by evaluation) needs the state's structure, not the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trainer.compiled import compiled_cache, compiler_options
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


def fresh_state(model: Sable, config: OfflineConfig, key: jax.Array) -> TrainState:
    """Fresh parameters, a copy as the target network, fresh Adam state, update 0."""
    params = model.init_params(key)
    target = jax.tree.map(jnp.copy, params)  # own buffers: the update donates the state
    return TrainState(params, target, make_optimizer(config).init(params),
                      jnp.zeros((), jnp.int32))


def init_train_state(config: OfflineConfig, key: jax.Array) -> TrainState:
    """`fresh_state` for `config`'s network and optimiser, compiled once per config as a
    program that runs rarely (`trainer.compiled.RUNS_RARELY`): on a cold start, about half
    the time of initialising op by op. Every run and seed starts here, so seeds trained
    together and alone start from identical parameters."""
    return _initialiser(config.step_key())(key)


@compiled_cache(maxsize=4)
def _initialiser(config: OfflineConfig) -> Callable[[jax.Array], TrainState]:
    model = Sable(config.sable_config())
    init = jax.jit(lambda key: fresh_state(model, config, key))
    return init.lower(jax.random.PRNGKey(0)).compile(compiler_options(runs_rarely=True))
