"""A run directory: the model's description, orbax checkpoints, the best parameters, metrics.

    <run_dir>/
        model.json        config id, OfflineConfig, dataset selection, training tasks,
                          observation standardisation stats, agent slots: what evaluation needs
        checkpoints/<u>/  orbax, one per saved update u: `state` (params, target params,
                          optimiser state, update counter), `loader` (the loader iterator's
                          JSON state), `history` (metrics so far): resuming continues exactly
        best/             the parameters of the best periodic evaluation, and best.json
        metrics.jsonl     one line per update (losses, grad norm, per-task loss), for plots

Checkpoints are only written after the NaN/inf guard has checked every update before them,
so the latest checkpoint is always a good one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from lake_schema.storage import write_atomic
from trainer.networks import Sable
from trainer.offline.config import OfflineConfig
from trainer.offline.state import fresh_state

MODEL_JSON = "model.json"
CHECKPOINTS = "checkpoints"
BEST = "best"
BEST_JSON = "best.json"
METRICS = "metrics.jsonl"


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (a reader never sees half a file)."""
    write_atomic(path, json.dumps(data, indent=1))


def read_model_info(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / MODEL_JSON
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: not an offline model run (no {MODEL_JSON})")
    try:
        return json.loads(path.read_text())
    except ValueError as e:  # truncated or foreign: say which file, not only where in it
        raise ValueError(f"{path}: not an offline model's {MODEL_JSON} ({e})") from e


def manager(run_dir: str | os.PathLike, keep: int = 2) -> ocp.CheckpointManager:
    """The run's checkpoint manager (keeps the `keep` most recent checkpoints)."""
    path = (Path(run_dir) / CHECKPOINTS).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(path, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, loader_state: dict,
         history: list[dict]) -> None:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        loader=ocp.args.JsonSave(loader_state),
        history=ocp.args.JsonSave({"rows": history}),
    ))
    mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any,
            with_extras: bool = True) -> tuple[Any, dict | None, list[dict] | None]:
    """(state, loader state, history) of checkpoint `step`; extras None without with_extras."""
    items: dict[str, Any] = {"state": ocp.args.StandardRestore(abstract_state)}
    if with_extras:
        items.update(loader=ocp.args.JsonRestore(), history=ocp.args.JsonRestore())
    out = mngr.restore(step, args=ocp.args.Composite(**items))
    if not with_extras:
        return out["state"], None, None
    return out["state"], dict(out["loader"]), list(out["history"]["rows"])


def latest_step(run_dir: str | os.PathLike) -> int | None:
    path = Path(run_dir) / CHECKPOINTS
    if not path.exists():
        return None
    mngr = manager(run_dir)
    try:
        return mngr.latest_step()
    finally:
        mngr.close()


def save_best(run_dir: str | os.PathLike, params: Any, info: dict) -> None:
    """Replace the best parameters (params only) and best.json."""
    path = (Path(run_dir) / BEST).absolute()
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, params, force=True)
    ckptr.wait_until_finished()
    ckptr.close()
    write_json(Path(run_dir) / BEST_JSON, info)


def read_best(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / BEST_JSON
    return json.loads(path.read_text()) if path.exists() else None


def restore_best(run_dir: str | os.PathLike, abstract_params: Any) -> Any:
    ckptr = ocp.StandardCheckpointer()
    try:
        return ckptr.restore((Path(run_dir) / BEST).absolute(), abstract_params)
    finally:
        ckptr.close()


def abstract(tree: Any, sharding: jax.sharding.Sharding | None = None) -> Any:
    """ShapeDtypeStructs of a pytree (what orbax restores into), placed on `sharding`: a
    checkpoint saved by another set of devices (a multi-process run, read by one process, or
    the reverse) restores onto this one's only when told where."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        tree)


def load_params(run_dir: str | os.PathLike, info: dict,
                which: str | int = "latest") -> tuple[Any, int]:
    """Parameters of checkpoint `which` (`latest`, `best`, or an update) and its update."""
    config = OfflineConfig.from_json(info["config"])
    model = Sable(config.sable_config())
    shapes = abstract(  # onto this process's first device, whoever saved them
        jax.eval_shape(lambda k: fresh_state(model, config, k), jax.random.PRNGKey(0)),
        jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
    if which == "best":
        best = read_best(run_dir)
        if best is None:
            raise FileNotFoundError(f"{run_dir}: no best checkpoint (periodic evaluation off?)")
        return restore_best(run_dir, shapes.params), int(best["update"])
    mngr = manager(run_dir)
    try:
        steps = mngr.all_steps()
        if not steps:
            raise FileNotFoundError(f"{run_dir}: no checkpoint to evaluate")
        step = max(steps) if which == "latest" else int(which)
        if step not in steps:
            raise FileNotFoundError(f"{run_dir}: no checkpoint at update {step}; have {steps}")
        state, _, _ = restore(mngr, step, shapes, with_extras=False)
    finally:
        mngr.close()
    return state.params, step
