"""The offline training loop: one jitted update per algorithm, data parallel, resumable.

    from trainer.offline import OfflineConfig, train
    result = train(lake, DataSelection(env="lbf", split="demo-train"),
                   OfflineConfig(algorithm="oryx", num_updates=2000), "models/run")

`make_update(config, num_tasks, mesh)` returns the pure, jitted
`update(states, batches) -> (states, UpdateMetrics)` of S models at once (S seeds of one
configuration, stacked on a leading axis; PureJaxRL's pattern, vmapped on accelerators, one
seed after another inside the program on CPU: `over_seeds`): forward the Sable network over
each batch (chunkwise, teacher-forced), the algorithm's loss (`losses.py`), Adam with
global-norm clipping, then the Polyak target update (tau after every step). The batches are
sharded over the mesh's `data` axis and the states replicated, so XLA splits the work over all
devices and all-reduces the gradients; losses are means over the global batch, so one device
and several give the same trajectory. In a multi-process run (`trainer.distributed`: one
process per host) the mesh spans every process's devices, each process's loader reads its own
slice of the global batch, and process 0 writes the run's files and reports progress.

`train_seeds(...)` trains several seeds in one program; each seed is its own model, with the
same config id, files and evaluations as when trained alone. `train(...)` is one seed. The
loop validates everything before any I/O, builds each seed's loader (the cache of its
selection), resumes from the run directory's latest checkpoint if there is one (reading the
lake as of the versions the run started on), logs progress (update, losses, rate, ETA:
`trainer.progress`), checks every update's loss for NaN/inf (the error names the update and
the run; no checkpoint is written after a bad update, so the last one stays good),
checkpoints with orbax (parameters, target parameters, optimiser, loader iterator state,
metrics), optionally evaluates periodically on the training tasks and keeps the best
parameters apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lake_schema.checks import Reference, reference_returns
from lake_schema.storage import Lake
from trainer.compiled import compiled_cache, compiler_options
from trainer.data import Batch, DataSelection, Loader, device_put_batch, make_loader
from trainer.errors import NonFiniteLossError
from trainer.networks import Sable
from trainer.offline import checkpoint as ckpt
from trainer.offline.config import OfflineConfig, config_id
from trainer.offline.evaluation import evaluate_params
from trainer.offline.losses import LossTerms, bc_loss, cql_loss, oryx_loss
from trainer.offline.state import TrainState, init_train_state, make_optimizer
from trainer.progress import Progress
from trainer.tensorboard import ScalarWriter, model_run, run_directory, scalars_of

logger = logging.getLogger("trainer.offline")
PROGRESS_INTERVAL_S = 10.0  # at most one progress line per this many seconds (and the last)


class UpdateMetrics(NamedTuple):
    loss: jax.Array
    policy_loss: jax.Array
    critic_loss: jax.Array
    conservative_loss: jax.Array
    q_data: jax.Array
    grad_norm: jax.Array
    task_loss: jax.Array  # [M] mean per-chunk loss of each task in the batch
    task_count: jax.Array  # [M] chunks of each task in the batch


@dataclass
class TrainResult:
    run_dir: Path
    config_id: str
    update: int
    history: list[dict] = field(repr=False)
    best: dict | None = None


# ----------------------------------------------------------------------------- pure pieces


def effective_mask(batch: Batch, config: OfflineConfig) -> jax.Array:
    """Agent masking on: the loader's mask. Off (ablation): every slot counts as an agent."""
    return batch.agent_mask if config.agent_masking else jnp.ones_like(batch.agent_mask)


def compute_loss(params: Any, target_params: Any, model: Sable, batch: Batch,
                 config: OfflineConfig, num_tasks: int) -> LossTerms:
    """The configured algorithm's loss on one batch (arrays [B, T, ...])."""
    mask = effective_mask(batch, config)
    tasks = (jax.nn.one_hot(batch.task, num_tasks) if config.task_weighting == "equal"
             else None)  # [B, M]
    out = model.forward_train(params, batch.obs, batch.actions, batch.legal, batch.first, mask)
    if config.algorithm == "bc":
        return bc_loss(out.policy_logits, batch.actions, mask, tasks)
    target = model.forward_train(target_params, batch.obs, batch.actions, batch.legal,
                                 batch.first, mask)
    target_q = jax.lax.stop_gradient(target.q)
    support = config.support()
    if config.algorithm == "cql":
        return cql_loss(out.q, target_q, batch.actions, batch.legal, batch.reward,
                        batch.terminated, batch.first, mask, gamma=config.gamma,
                        alpha=config.cql_alpha, support=support, tasks=tasks)
    return oryx_loss(out.policy_logits, out.q, target_q, batch.actions, batch.reward,
                     batch.terminated, batch.first, mask, gamma=config.gamma,
                     value_temperature=config.value_temperature,
                     policy_temperature=config.policy_temperature,
                     critic_coef=config.critic_coef, support=support, tasks=tasks)


def update_step(state: TrainState, batch: Batch, model: Sable, config: OfflineConfig,
                num_tasks: int) -> tuple[TrainState, UpdateMetrics]:
    """One gradient step + Polyak update (pure; `make_update` jits it)."""
    tx = make_optimizer(config)

    def loss_fn(params):
        terms = compute_loss(params, state.target_params, model, batch, config, num_tasks)
        return terms.total, terms

    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    target = optax.incremental_update(params, state.target_params, config.tau)
    task = batch.task.astype(jnp.int32)
    sums = jax.ops.segment_sum(terms.per_sample, task, num_segments=num_tasks)
    counts = jax.ops.segment_sum(jnp.ones_like(terms.per_sample), task, num_segments=num_tasks)
    metrics = UpdateMetrics(
        loss=terms.total, policy_loss=terms.policy, critic_loss=terms.critic,
        conservative_loss=terms.conservative, q_data=terms.q_data,
        grad_norm=optax.tree.norm(grads),
        task_loss=sums / jnp.maximum(counts, 1.0), task_count=counts,
    )
    return TrainState(params, target, opt_state, state.update + 1), metrics


def make_mesh(devices: list | None = None) -> jax.sharding.Mesh:
    """A 1-D `data` mesh over `devices` (default: every device of every process, which in a
    single-process run are the local devices). In a multi-process run (`trainer.distributed`)
    the mesh must span all processes: a mesh of one process's devices is refused."""
    devices = list(devices) if devices is not None else jax.devices()
    if jax.process_count() > 1 and {d.process_index for d in devices} != set(
            range(jax.process_count())):
        raise ValueError(f"the data-parallel devices {devices} are not on all "
                         f"{jax.process_count()} processes of this multi-process run: leave "
                         "devices unset to use every process's devices")
    return jax.sharding.Mesh(np.array(devices), ("data",))


def over_seeds(step: Callable, vectorise: bool) -> Callable:
    """`step(state, batch) -> (state, metrics)` of one model, made the same over a leading
    seed axis of every input and output ([S, ...]).

    `vectorise`: one vmapped step for all seeds when there are several (PureJaxRL's pattern:
    a small model leaves most of an accelerator idle). Otherwise, and for a single seed, the
    seeds' steps run one after another inside the one program (`lax.map`; over one seed XLA
    removes the loop): on XLA:CPU the vmapped update is slower than S separate ones,
    and its compiled program has more than twice the transposes and copies (BC's update:
    76 transposes and 107 copies, vmapped over one seed 178 and 209; at S = 3 and 8 the
    vmapped program trained 0.71-0.87x the seed-updates/s of the sequential one on 2 cores;
    benchmarks/RESULTS.md, 931f0e4).
    """
    def run(states: Any, batches: Any) -> Any:
        if vectorise and jax.tree.leaves(batches)[0].shape[0] > 1:
            return jax.vmap(step)(states, batches)
        return jax.lax.map(lambda pair: step(*pair), (states, batches))

    return run


def make_update(config: OfflineConfig, num_tasks: int, mesh: jax.sharding.Mesh,
                vectorise: bool | None = None) -> Callable[[TrainState, Batch],
                                                           tuple[TrainState, UpdateMetrics]]:
    """The jitted update of S models at once (S seeds of one configuration): `update_step`
    over a leading seed axis of the state and the batch ([S, ...] and [S, B, ...]; S = 1 for
    one model); several seeds are vmapped unless the mesh is on CPU (`over_seeds`;
    `vectorise` overrides, for the benchmark). The state is replicated, each seed's batch
    split along B over `mesh`; the metrics come back [S, ...].

    Cached on what the step depends on (not on the loop's settings), so resuming or training
    again in the same process reuses the compiled function.
    """
    if vectorise is None:
        vectorise = mesh.devices.flat[0].platform != "cpu"
    return _make_update(config.step_key(), num_tasks, mesh, vectorise)


@compiled_cache(maxsize=4)
def _make_update(config: OfflineConfig, num_tasks: int, mesh: jax.sharding.Mesh,
                 vectorise: bool):
    P = jax.sharding.PartitionSpec
    replicated = jax.sharding.NamedSharding(mesh, P())
    data = jax.sharding.NamedSharding(mesh, P(None, "data"))
    model = Sable(config.sable_config())

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, UpdateMetrics]:
        return update_step(state, batch, model, config, num_tasks)

    return jax.jit(over_seeds(step, vectorise), in_shardings=(replicated, data),
                   out_shardings=(replicated, replicated), donate_argnums=0,
                   compiler_options=compiler_options())


# ----------------------------------------------------------------------------- the loop


def _check_run(lake: Lake, selection: DataSelection, config: OfflineConfig, run_dir: Path,
               devices: list | None, stop_at: int | None
               ) -> tuple[jax.sharding.Mesh, str, dict[str, float] | None]:
    """Every check of a run before any I/O or compilation: (the data mesh, the config id,
    the training tasks' references when periodic evaluation needs them)."""
    config.check_selection(selection)
    mesh = make_mesh(devices)
    _check_devices(config, mesh)
    if stop_at is not None and (not isinstance(stop_at, int) or stop_at < 1):
        raise ValueError(f"stop_at={stop_at!r} must be a positive int")
    cid = config_id(config, selection)
    if (run_dir / ckpt.MODEL_JSON).exists():
        held = ckpt.read_model_info(run_dir)["config_id"]
        if held != cid:
            raise ValueError(f"{run_dir} holds model {held}, not {cid}: use another run "
                             "directory (models of different configs never share one)")
    references = None
    if 0 < config.eval_every <= config.num_updates:  # a periodic evaluation will run
        references = reference_returns(lake, config.env, selection.task_names)
    return mesh, cid, references


def _check_devices(config: OfflineConfig, mesh: jax.sharding.Mesh) -> None:
    n = mesh.devices.size
    if config.batch_size % n:
        raise ValueError(f"batch_size={config.batch_size} does not split evenly over the {n} "
                         "devices of the data-parallel mesh")


def _model_info(config: OfflineConfig, selection: DataSelection, loader: Loader,
                cid: str, run_dir: Path) -> dict:
    """model.json's contents. `trained_since` (UTC) is when this run directory's training
    began and survives resuming: evaluations carry it, so a model retrained from scratch under
    the same config id never counts (or shows) its predecessor's evaluations."""
    held = ckpt.read_model_info(run_dir) if (run_dir / ckpt.MODEL_JSON).exists() else {}
    return {
        "config_id": cid,
        "trained_since": held.get("trained_since") or dt.datetime.now(dt.UTC).isoformat(),
        "env": config.env,
        "algorithm": config.algorithm,
        "config": config.to_json(),
        "selection": selection.to_json(),
        "tasks": list(loader.task_names),
        "num_agents": [int(n) for n in loader.source.num_agents],
        "pad_to": config.pad_to(loader.source.num_agents),
        "obs_stats": loader.stats.to_json(),
        "cache": loader.cache.key,
        "data_versions": loader.cache.versions,  # lake table versions trained on (as_of)
        "sable": dict(vars(config.sable_config())),
    }


def _rows(pending: list[tuple[int, UpdateMetrics]], tasks: tuple[str, ...],
          runs: int) -> list[list[dict]]:
    """Each run's metrics rows of the pending updates (metrics [S, ...] -> S lists)."""
    host = jax.device_get([m for _, m in pending])
    out: list[list[dict]] = [[] for _ in range(runs)]
    for (u, _), stacked in zip(pending, host, strict=True):
        for i in range(runs):
            m = jax.tree.map(lambda x, i=i: x[i], stacked)
            row: dict[str, Any] = {"update": u}
            for name in ("loss", "policy_loss", "critic_loss", "conservative_loss", "q_data",
                         "grad_norm"):
                row[name] = float(getattr(m, name))
            row["task_loss"] = {t: (float(v) if c > 0 else None)
                                for t, v, c in zip(tasks, m.task_loss, m.task_count,
                                                   strict=True)}
            out[i].append(row)
    return out


def _first_bad(rows: list[dict]) -> dict | None:
    for r in rows:
        if not (math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])):
            return r
    return None


@dataclass
class _Run:
    """One model of a group trained together: what it is, where it lives, its loop state."""

    config: OfflineConfig
    selection: DataSelection
    run_dir: Path
    cid: str
    loader: Loader | None = None
    iterator: Any = None
    stream: Any = None
    mngr: Any = None
    info: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    last_good: int | None = None
    curves: ScalarWriter | None = None  # its TensorBoard run (process 0)


def train(
    lake: Lake,
    selection: DataSelection,
    config: OfflineConfig,
    run_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    devices: list | None = None,
    stop_at: int | None = None,
    batches: Callable[[Any], Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or resume) the model of (config, selection) in `run_dir`.

    Args:
        lake, selection: the dataset; its environment must be `config.env`.
        config: the model and run settings.
        run_dir: the run directory (see `checkpoint`); resumed if it holds checkpoints of
            the same config id, refused if it holds another model. A resumed run reads the
            lake as of the table versions it started on; a finished one returns at once.
        cache_dir: where the loader's training cache lives (default: the loader's).
        devices: the data-parallel devices (default: all local devices).
        stop_at: stop (checkpointed) after this many updates: a time-boxed or preemptible run;
            calling `train` again continues to `config.num_updates`.
        batches: wraps the batch iterator (tests inject faults with it).
        log: where progress lines go (the cache build's, then one line with update, losses,
            rate and ETA at most every PROGRESS_INTERVAL_S, and the last update's); default
            the `trainer.offline` logger. In a multi-process run only process 0 reports.

    Raises ValueError for bad input (before any I/O or compilation), NonFiniteLossError when a
    loss turns NaN/inf.
    """
    return _train_runs(lake, [(config, selection, Path(run_dir))], cache_dir=cache_dir,
                       devices=devices, stop_at=stop_at, batches=batches, log=log)[0]


def train_seeds(
    lake: Lake,
    selection: DataSelection,
    config: OfflineConfig,
    seeds: Sequence[int],
    models_dir: str | os.PathLike,
    **options: Any,
) -> list[TrainResult]:
    """Train (or resume) one model per seed of (config, selection) in one program,
    each in `<models_dir>/<its config id>` (the seed sets the config's and the selection's
    seed: the same models, ids and files as training each seed alone). Options are
    `train`'s. Finished seeds are skipped; seeds resumed from different updates train in
    separate groups. Results in the order of `seeds`."""
    runs = []
    for seed in seeds:
        c = dataclasses.replace(config, seed=seed)
        sel = dataclasses.replace(selection, seed=seed)
        runs.append((c, sel, Path(models_dir) / config_id(c, sel)))
    return _train_runs(lake, runs, **options)


def _train_runs(lake: Lake, runs: list[tuple[OfflineConfig, DataSelection, Path]], *,
                cache_dir: str | os.PathLike | None = None, devices: list | None = None,
                stop_at: int | None = None, batches: Callable[[Any], Any] | None = None,
                log: Callable[[str], None] | None = None) -> list[TrainResult]:
    """Validate every run before any I/O, return the finished ones as they are, and train the
    others, those at the same update together."""
    if not runs:
        raise ValueError("no runs to train")
    dirs = [run_dir for _, _, run_dir in runs]
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"two runs share a run directory: {dirs}")
    config, selection = runs[0][0], runs[0][1]
    checked = [_check_run(lake, sel, c, run_dir, devices, stop_at) for c, sel, run_dir in runs]
    for (c, sel, _), (_, cid, _) in zip(runs, checked, strict=True):
        if (dataclasses.replace(c, seed=0) != dataclasses.replace(config, seed=0)
                or dataclasses.replace(sel, seed=0) != dataclasses.replace(selection, seed=0)):
            raise ValueError(f"runs trained together differ in more than the seed: {cid}")
    mesh, references = checked[0][0], checked[0][2]
    end = config.num_updates if stop_at is None else min(stop_at, config.num_updates)
    results: dict[Path, TrainResult] = {}
    groups: dict[int, list[_Run]] = {}
    for (c, sel, run_dir), (_, cid, _) in zip(runs, checked, strict=True):
        (log or logger.info)(f"model {cid} ({c.algorithm}, seed {c.seed}) on "
                             f"{', '.join(sel.task_names)} -> {run_dir}")
        at = ckpt.latest_step(run_dir) if (run_dir / ckpt.MODEL_JSON).exists() else None
        if at is not None and at >= end:  # nothing to train: no loader, no compilation
            (log or logger.info)(f"{cid} already trained to update {at}")
            results[run_dir] = _finished(run_dir, cid, at)
            continue
        groups.setdefault(at or 0, []).append(
            _Run(c, _pinned_to_run(run_dir, sel), run_dir, cid))
    for group in groups.values():
        for result in _train_group(lake, group, mesh, references, end, cache_dir, batches,
                                   log):
            results[result.run_dir] = result
    return [results[run_dir] for run_dir in dirs]


def _train_group(lake: Lake, group: list[_Run], mesh: jax.sharding.Mesh,
                 references: dict[str, Reference] | None, end: int,
                 cache_dir: str | os.PathLike | None, batches: Callable[[Any], Any] | None,
                 log: Callable[[str], None] | None) -> list[TrainResult]:
    """Train runs that start at the same update to `end`, their states stacked on a seed
    axis through one update program (`over_seeds`); each run keeps its own loader,
    checkpoints, metrics, periodic evaluations and best parameters."""
    primary = jax.process_index() == 0  # writes the run's files; orbax coordinates the rest
    log = log if primary else _quiet
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    try:
        states = [_open_run(r, lake, cache_dir, batches, replicated, primary, log)
                  for r in group]
        start = int(states[0].update)
        state = _stack(states, replicated)
        del states
        state = _run_updates(group, state, start, end, mesh, references, primary, log)
        final = int(jax.device_get(state.update)[0])
    finally:
        for r in group:
            if r.curves is not None:
                r.curves.close()
            if r.mngr is not None:
                r.mngr.close()
            if r.iterator is not None:
                r.iterator.close()
    return [TrainResult(r.run_dir, r.cid, final, r.history, r.best) for r in group]


def _open_run(r: _Run, lake: Lake, cache_dir: str | os.PathLike | None,
              batches: Callable[[Any], Any] | None, replicated: jax.sharding.Sharding,
              primary: bool, log: Callable[[str], None] | None) -> TrainState:
    """Set up run `r` (its loader, `model.json`, checkpoint manager, batch stream, best
    parameters, metrics file) and return its training state on the devices: a fresh one,
    or its last checkpoint's when it resumes."""
    r.loader = make_loader(lake, r.selection, r.config.loader_config(), cache_dir, log=log)
    r.run_dir.mkdir(parents=True, exist_ok=True)
    r.info = _model_info(r.config, r.selection, r.loader, r.cid, r.run_dir)
    if primary:
        ckpt.write_json(r.run_dir / ckpt.MODEL_JSON, r.info)
    state = init_train_state(r.config, jax.random.PRNGKey(r.config.seed))
    r.mngr = ckpt.manager(r.run_dir, r.config.keep_checkpoints)
    r.last_good = r.mngr.latest_step()
    loader_state = None
    if r.last_good is not None:
        state, loader_state, r.history = ckpt.restore(
            r.mngr, r.last_good, ckpt.abstract(state, replicated))
        (log or logger.info)(f"resuming {r.cid} from update {r.last_good}")
    r.iterator = r.loader.iterator(loader_state)
    r.stream = batches(r.iterator) if batches is not None else r.iterator
    r.best = ckpt.read_best(r.run_dir)
    if primary:
        _write_metrics(r, r.history, append=False)
    return jax.device_put(state, replicated)


def _run_updates(group: list[_Run], state: TrainState, start: int, end: int,
                 mesh: jax.sharding.Mesh, references: dict[str, Reference] | None,
                 primary: bool, log: Callable[[str], None] | None) -> TrainState:
    """The update loop from `start` to `end`. Metrics stay on the device between log points
    (every `log_every` updates, and at checkpoints and evaluations), where `_log_point`
    fetches, checks and records them."""
    config = group[0].config
    tasks = group[0].loader.task_names
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    data_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
    update = make_update(config, len(tasks), mesh)
    seeds = f" ({len(group)} seeds in one program)" if len(group) > 1 else ""
    progress = Progress(end, "updates", interval_s=PROGRESS_INTERVAL_S, log=log, logger=logger)
    pending: list[tuple[int, UpdateMetrics]] = []
    t_mark, u_mark = time.perf_counter(), start
    t_first = t_mark
    for u in range(start + 1, end + 1):
        batch = device_put_batch(_stack_host([next(r.stream) for r in group]), data_sharding)
        state, metrics = update(state, batch)
        pending.append((u, metrics))
        if u == start + 1:  # compiled and done: the ETA's rate counts from here
            jax.block_until_ready(metrics)
            t_first = time.perf_counter()
        save_now = u % config.checkpoint_every == 0 or u == end
        eval_now = bool(config.eval_every) and u % config.eval_every == 0
        if not (u % config.log_every == 0 or save_now or eval_now):
            continue
        per_run = _rows(pending, tasks, len(group))
        pending = []
        now = time.perf_counter()
        for rows in per_run:
            rows[-1]["updates_per_s"] = (u - u_mark) / max(now - t_mark, 1e-9)
        _check_finite(group, per_run)
        if progress.due() or u == end:
            # since the first update (not counting its compilation); unknown before
            rate = (u - start - 1) / max(now - t_first, 1e-9) if u > start + 1 else math.nan
            progress.emit(u, rate, _losses(per_run[0][-1]) + seeds)
        _log_point(group, per_run, state, u, save_now, eval_now, references, replicated,
                   progress, primary)
        t_mark, u_mark = time.perf_counter(), u  # the rate counts updates, not saves or evals
    return state


def _check_finite(group: list[_Run], per_run: list[list[dict]]) -> None:
    """NonFiniteLossError at the first update whose loss or gradient norm is NaN/inf."""
    for r, rows in zip(group, per_run, strict=True):
        bad = _first_bad(rows)
        if bad is not None:
            values = {k: bad[k] for k in ("loss", "grad_norm")}
            raise NonFiniteLossError(bad["update"], values, r.last_good, r.run_dir)


def _log_point(group: list[_Run], per_run: list[list[dict]], state: TrainState, u: int,
               save_now: bool, eval_now: bool, references: dict[str, Reference] | None,
               replicated: jax.sharding.Sharding, progress: Progress, primary: bool) -> None:
    """Each run's metrics rows into its history and `metrics.jsonl`, then its periodic
    evaluation (keeping the best parameters) and its checkpoint when they are due."""
    for i, (r, rows) in enumerate(zip(group, per_run, strict=True)):
        r.history.extend(rows)
        if eval_now:
            r.best = _periodic_eval(r.run_dir, r.info, _take(state.params, i, replicated), u,
                                    references, r.config, rows[-1], r.best, progress, primary)
        if primary:
            _write_metrics(r, rows, append=True)
        if save_now:
            ckpt.save(r.mngr, u, _take(state, i, replicated), r.iterator.get_state(),
                      r.history)
            r.last_good = u


def _stack(trees: list[Any], sharding: jax.sharding.Sharding) -> Any:
    """The trees stacked on a new leading axis, on `sharding` (inside jit: the states may be
    global arrays of a multi-process run)."""
    return _stacker(len(trees), sharding)(*trees)


def _take(tree: Any, i: int, sharding: jax.sharding.Sharding) -> Any:
    """Entry `i` of a stacked tree, on `sharding` (inside jit, as `_stack`)."""
    return _taker(i, sharding)(tree)


@compiled_cache(maxsize=4)
def _stacker(count: int, sharding: jax.sharding.Sharding) -> Callable:
    del count  # a key: one program per number of trees
    return jax.jit(lambda *t: jax.tree.map(lambda *x: jnp.stack(x), *t), out_shardings=sharding)


@compiled_cache(maxsize=16)
def _taker(i: int, sharding: jax.sharding.Sharding) -> Callable:
    return jax.jit(lambda t: jax.tree.map(lambda x: x[i], t), out_shardings=sharding)


def _stack_host(batches: list[Batch]) -> Batch:
    """Host batches [B, ...] -> one [S, B, ...] batch (one seed: a view, no copy)."""
    return jax.tree.map(lambda *x: x[0][None] if len(x) == 1 else np.stack(x), *batches)


def _finished(run_dir: Path, cid: str, latest: int) -> TrainResult:
    """The result of a run with nothing left to train (its latest checkpoint is `latest`),
    read from its metrics file."""
    metrics = run_dir / ckpt.METRICS
    history = ([json.loads(line) for line in metrics.read_text().splitlines() if line]
               if metrics.exists() else [])
    return TrainResult(run_dir, cid, latest, [r for r in history if r["update"] <= latest],
                       ckpt.read_best(run_dir))


def _pinned_to_run(run_dir: Path, selection: DataSelection) -> DataSelection:
    """A resumed run reads the lake as of the table versions it started on (its model.json's
    `data_versions`), so rows written since then (another task's dataset, a re-recorded
    checkpoint) neither change its data nor invalidate its saved loader position."""
    if selection.as_of is not None or not (run_dir / ckpt.MODEL_JSON).exists():
        return selection
    versions = ckpt.read_model_info(run_dir).get("data_versions") or None
    return dataclasses.replace(selection, as_of=versions) if versions else selection


def _write_metrics(r: _Run, rows: list[dict], append: bool) -> None:
    """The run's metrics rows into `metrics.jsonl` and its TensorBoard run (both rewritten
    from the history when the run starts or resumes)."""
    with open(r.run_dir / ckpt.METRICS, "a" if append else "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    if not append:
        if r.curves is not None:
            r.curves.close()
        name = model_run(r.cid, r.config.algorithm, len(r.selection.task_names),
                         r.config.seed)
        r.curves = ScalarWriter(run_directory(r.run_dir.parent, name), fresh=True)
    for row in rows:
        r.curves.add(row["update"], scalars_of(row))


def _quiet(text: str) -> None:
    """Where a non-primary process's progress goes: nowhere (process 0 reports the run)."""


def _losses(row: dict) -> str:
    """`  | loss 1.2345 | policy ... | grad 0.123`: a metrics row's losses, for its line."""
    parts = [f"loss {row['loss']:.4f}"]
    for k in ("policy_loss", "critic_loss", "conservative_loss"):
        if row[k]:
            parts.append(f"{k.split('_')[0]} {row[k]:.4f}")
    parts.append(f"grad {row['grad_norm']:.3f}")
    return "  | " + " | ".join(parts)


def _periodic_eval(run_dir: Path, info: dict, params: Any, update: int,
                   references: dict[str, Reference] | None, config: OfflineConfig,
                   row: dict, best: dict | None, progress: Progress,
                   primary: bool) -> dict | None:
    """Evaluate on the training tasks; keep the parameters apart when they are the best
    (process 0 writes them)."""
    returns = evaluate_params(info, params, info["tasks"], config.eval_episodes,
                              seed=config.seed + update, log=progress.log)
    norm = {t: references[t].normalise(float(np.mean(r))) for t, r in returns.items()}
    score = float(np.mean(list(norm.values())))
    row["eval_normalised_return"] = score
    row["eval_task_normalised_return"] = norm
    progress.say(f"evaluation at update {update}: mean normalised return {score:.3f}")
    if best is None or score > best["score"]:
        best = {"update": update, "score": score, "tasks": norm,
                "episodes": config.eval_episodes}
        if primary:
            ckpt.save_best(run_dir, jax.device_get(params), best)
    return best
