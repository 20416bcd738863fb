"""Online Sable (PPO) on one catalogue task, recording its dataset into the lake.

    from trainer.online import OnlineConfig, train_online
    result = train_online("lbf/8x8-2p-2f", OnlineConfig.profile("demo"), Lake(), "sable-seed0")

`config` (validated settings and the recording `Schedule`), `ppo` (GAE, losses, the jitted
rollout + update step), `training` (the Python loop: checkpoints, recording, progress, resume).
CLI: `python -m trainer.online --help`.
"""

from trainer import lazy_exports

_MODULES = {
    "trainer.online.config": ("OnlineConfig", "PROFILES", "Schedule", "resolve_task"),
    "trainer.online.training": (
        "CheckpointRecord", "CheckpointStore", "OnlineResult", "default_checkpoint_dir",
        "train_online",
    ),
}
__all__ = sorted(name for names in _MODULES.values() for name in names)

__getattr__ = lazy_exports(__name__, _MODULES)
