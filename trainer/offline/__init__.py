"""Offline multi-task training on the lake (BC-Sable, CQL-Sable, Oryx) and zero-shot evaluation.

    from trainer.data import DataSelection
    from trainer.offline import EvalConfig, OfflineConfig, evaluate, train

    sel = DataSelection(env="lbf", split="demo-train")
    result = train(lake, sel, OfflineConfig(algorithm="oryx", num_updates=2000), "models/x")
    evaluate(lake, result.run_dir, split="demo-test", eval_config=EvalConfig(episodes=32))

Modules: `hl_gauss` (value classification), `losses` (BC, CQL, Oryx; pure), `config`
(OfflineConfig, config ids), `train` (jitted update, loop, checkpoints), `evaluate`
(environment rollouts, normalised returns, the `evaluations` table), `checkpoint` (the run
directory).
"""

from trainer.offline.config import ALGORITHMS, OfflineConfig, config_id
from trainer.offline.evaluate import (
    EvalConfig,
    MissingReferenceError,
    TaskResult,
    evaluate,
    evaluate_params,
    reference_returns,
)
from trainer.offline.hl_gauss import Support, make_support
from trainer.offline.train import (
    NonFiniteLossError,
    TrainResult,
    TrainState,
    UpdateMetrics,
    make_update,
    train,
)

__all__ = [
    "ALGORITHMS",
    "EvalConfig",
    "MissingReferenceError",
    "NonFiniteLossError",
    "OfflineConfig",
    "Support",
    "TaskResult",
    "TrainResult",
    "TrainState",
    "UpdateMetrics",
    "config_id",
    "evaluate",
    "evaluate_params",
    "make_support",
    "make_update",
    "reference_returns",
    "train",
]
