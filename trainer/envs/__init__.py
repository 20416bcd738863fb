"""Catalogue tasks as pure, jittable multi-agent JAX environments (real Jumanji 1.1.2 inside).

`make_env(task)` -> `MultiAgentEnv` with `reset(key)` / `step(state, actions)` returning
`(EnvState, EnvStep)`; observations are [N, F] in the catalogue's per-environment width and
dtype, so every task of an environment shares one input layer. See `core` for the reward,
termination and autoreset conventions, `adapters` for the observation layouts.
"""

from trainer.envs.adapters import (
    CONNECTOR_WIDTH,
    LBF_WIDTH,
    RWARE_WIDTH,
    connector_obs,
    lbf_obs,
    rware_obs,
)
from trainer.envs.core import EnvState, EnvStep, MultiAgentEnv, make_env
from trainer.envs.rollout import (
    Policy,
    Rollout,
    mean_episode_return,
    random_actions,
    random_policy,
    random_rollout,
    rollout,
)

__all__ = [
    "CONNECTOR_WIDTH",
    "LBF_WIDTH",
    "RWARE_WIDTH",
    "EnvState",
    "EnvStep",
    "MultiAgentEnv",
    "Policy",
    "Rollout",
    "connector_obs",
    "lbf_obs",
    "make_env",
    "mean_episode_return",
    "random_actions",
    "random_policy",
    "random_rollout",
    "rollout",
    "rware_obs",
]
