"""Offline multi-task training on the lake (BC-Sable, CQL-Sable, Oryx) and zero-shot evaluation.

    from trainer.data import DataSelection
    from trainer.offline import EvalConfig, OfflineConfig, evaluate, train

    sel = DataSelection(env="lbf", split="demo-train")
    result = train(lake, sel, OfflineConfig(algorithm="oryx", num_updates=2000), "models/x")
    evaluate(lake, result.run_dir, split="demo-test", eval_config=EvalConfig(episodes=32))

Modules: `hl_gauss` (value classification), `losses` (BC, CQL, Oryx; pure), `config`
(OfflineConfig, config ids), `state` (what the update carries), `training` (jitted update,
loop, checkpoints), `evaluation` (environment rollouts, normalised returns, the `evaluations`
table), `checkpoint` (the run directory, restoring parameters).
"""

from trainer import lazy_exports

_MODULES = {
    "lake_schema.checks": ("reference_returns",),
    "lake_schema.errors": ("MissingReferenceError",),
    "trainer.errors": ("NonFiniteLossError",),
    "trainer.offline.config": ("ALGORITHMS", "EvalConfig", "OfflineConfig", "config_id"),
    "trainer.offline.evaluation": ("TaskResult", "evaluate", "evaluate_params"),
    "trainer.offline.hl_gauss": ("Support", "make_support"),
    "trainer.offline.state": ("TrainState",),
    "trainer.offline.training": ("TrainResult", "UpdateMetrics", "make_update", "train",
                                  "train_seeds"),
}
__all__ = sorted(name for names in _MODULES.values() for name in names)

__getattr__ = lazy_exports(__name__, _MODULES)
