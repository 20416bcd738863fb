"""The Python loop around the jitted PPO step: checkpoints, recording, progress, resume.

    result = train_online("lbf/8x8-2p-2f", OnlineConfig(), Lake("./lake"), run="sable-seed0")

For each of K recording checkpoints (evenly spaced over the budget) it trains up to the
checkpoint, records E episodes of the current stochastic policy in fresh environments into
the lake (`steps` + `episodes`, quality `low`/`high` by the paper's rule), and saves an orbax
checkpoint of the whole training state (parameters, Adam, RNG, environments, retention
state). The lake write and the orbax save run on a background thread while training goes on;
the lake write comes first, so a saved checkpoint always has its rows. At the end it writes
the task's `references` row (final policy vs random policy).

Resume: an interrupted run (same task, run id and config, not completed) continues from its
last orbax checkpoint; re-recorded checkpoints replace their lake rows (same write key), so
rows are never duplicated. A completed run of the same task, run id and config whose rows are
all in the lake is reused as it is (nothing compiled, trained or written). Any other start is
fresh: the run's old lake rows and checkpoints are deleted first, so a shorter re-run leaves
no stale checkpoints behind.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from lake_schema.catalogue import Task
from lake_schema.checks import missing_checkpoints, reference_present
from lake_schema.reader import Selection, list_files, parse_partition, read_table
from lake_schema.schema import validate_partition
from lake_schema.storage import Lake, write_atomic
from lake_schema.writer import delete_run, write_episodes, write_reference
from trainer import compiled
from trainer.envs import make_env
from trainer.exported import compile_exported
from trainer.knobs import program_key
from trainer.networks import Sable, param_count
from trainer.offline.runs import models_root
from trainer.online.config import OnlineConfig, Schedule, resolve_task
from trainer.online.ppo import (
    PPOMetrics,
    PPOState,
    init_ppo_state,
    make_ppo_update,
    policy_reset_keys,
    policy_rollout,
    sable_config,
)
from trainer.progress import Progress
from trainer.recording import episodes_from_rollout
from trainer.tensorboard import ScalarWriter, online_run, run_directory

logger = logging.getLogger("trainer.online")

CHECKPOINTS_ENV = "SABLE_CHECKPOINTS"
DEFAULT_CHECKPOINTS = "./checkpoints"
_META = "run.json"
MAX_UPDATES_PER_CALL = 1000  # updates in one jitted call (see _train_until)


@dataclass(frozen=True)
class CheckpointRecord:
    """One recording checkpoint: where it sits in training and what was written."""

    checkpoint: int
    update: int
    env_steps: int
    quality: str
    episodes: int
    mean_return: float
    std_return: float
    steps_written: int
    bytes_written: int
    record_s: float  # blocking: evaluation rollout + conversion to lake rows
    write_s: float  # background: lake write + orbax save (overlaps training)


@dataclass
class OnlineResult:
    """What a `train_online` call did. `curve` covers every checkpoint of the run (resumed
    ones included, as read back from the lake); timings cover this call only, except that a
    reused run shows the rates and training returns of the call that completed it."""

    task: str
    run: str
    config: OnlineConfig
    num_updates: int
    total_env_steps: int
    param_count: int
    curve: list[CheckpointRecord] = field(default_factory=list)
    train_curve: list[tuple[int, float]] = field(default_factory=list)  # (env steps, return)
    reference_return: float = math.nan
    reference_std: float = math.nan
    random_return: float = math.nan
    random_std: float = math.nan
    resumed_from: int | None = None  # the checkpoint this call resumed after
    reused: bool = False  # a completed run, found in the lake: nothing trained or written
    compile_s: float = 0.0
    train_s: float = 0.0  # jitted updates only
    trained_env_steps: int = 0  # in this call
    record_s: float = 0.0  # blocking part of the recording (rollouts + conversion)
    write_s: float = 0.0  # background lake writes + orbax saves
    write_wait_s: float = 0.0  # time training waited for a background write
    reference_s: float = 0.0  # final-policy and random reference episodes + write
    wall_s: float = 0.0
    # A reused run trains nothing, so it shows the rates the call that completed the run
    # measured (kept in its run.json, `measured()`).
    measured_steps_per_s: float | None = None
    measured_recording_fraction: float | None = None

    @property
    def steps_per_s(self) -> float:
        """Env steps per second of the training updates (no recording, no compile)."""
        if self.measured_steps_per_s is not None:
            return self.measured_steps_per_s
        return self.trained_env_steps / self.train_s if self.train_s > 0 else math.nan

    @property
    def recording_fraction(self) -> float:
        """Time the recording took from training, relative to training time."""
        if self.measured_recording_fraction is not None:
            return self.measured_recording_fraction
        return (self.record_s + self.write_wait_s) / self.train_s if self.train_s else math.nan

    def measured(self) -> dict[str, Any]:
        """What a later call that reuses this completed run shows (`_reused`): the rates and
        the training episodes' returns, which the lake does not hold."""
        return {"steps_per_s": self.steps_per_s, "recording_fraction": self.recording_fraction,
                "train_curve": self.train_curve}

    @property
    def episodes_written(self) -> int:
        return sum(r.episodes for r in self.curve)

    @property
    def steps_written(self) -> int:
        return sum(r.steps_written for r in self.curve)

    @property
    def bytes_written(self) -> int:
        return sum(r.bytes_written for r in self.curve)

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task, "run": self.run, "updates": self.num_updates,
            "env_steps": self.total_env_steps, "params": self.param_count,
            "steps_per_s": round(self.steps_per_s, 1), "compile_s": round(self.compile_s, 1),
            "final_return": self.reference_return, "random_return": self.random_return,
            "record_fraction": round(self.recording_fraction, 4),
            "curve": [(r.env_steps, round(r.mean_return, 4), r.quality) for r in self.curve],
        }


# ----------------------------------------------------------------------------- compiled programs


def _compile_key(config: OnlineConfig) -> OnlineConfig:
    """The config with every knob that does not change the compiled update (`program=False`:
    budget, schedule, seed) reset, so runs that differ only in those share one compilation."""
    return program_key(config)


class Programs(NamedTuple):
    """The compiled programs of one (task, network/PPO settings): two compilations, the
    environment compiled into each once.

    init(key, total_updates) -> PPOState; update(state, n, learn, uniform) -> (state, metrics
    of n updates, last rollout); record(params, key, uniform, num_envs) -> Rollout of
    `num_envs` fresh episodes (the random policy's with `uniform`), through init and update.
    """

    abstract: PPOState  # shapes and dtypes of the training state
    init: Any
    update: Any
    record: Any


@compiled.compiled_cache(maxsize=4)
def _programs(task_name: str, key: OnlineConfig) -> Programs:
    """The programs, compiled once per process for each (task, `_compile_key`). On disk, the
    traced programs (`trainer.exported`) and their compilations (JAX's persistent cache) serve
    later processes: a warm start traces nothing."""
    env = make_env(task_name)
    model = Sable(sable_config(key, env))
    name = f"online {task_name} {key!r}"
    rng = jax.ShapeDtypeStruct((2,), np.uint32)
    flag = jax.ShapeDtypeStruct((), np.bool_)
    init, abstract = compile_exported(
        lambda k, total: init_ppo_state(env, model, key, k, total),
        (rng, jax.ShapeDtypeStruct((), np.int32)), f"init {name}", runs_rarely=True)
    update, _ = compile_exported(
        make_ppo_update(env, model, key),
        (abstract, jax.ShapeDtypeStruct((), np.int32), flag, flag), f"update {name}",
        donate_argnums=(0,))
    record = functools.partial(policy_rollout, init, update, key, env.time_limit)
    return Programs(abstract, init, update, record)


# ----------------------------------------------------------------------------- checkpoints


def default_checkpoint_dir(task: Task, run: str) -> Path:
    root = os.environ.get(CHECKPOINTS_ENV) or DEFAULT_CHECKPOINTS
    return Path(root).expanduser().absolute() / "online" / task.env / task.scenario / run


class CheckpointStore:
    """Orbax checkpoints of the PPOState, one per recording checkpoint, plus `run.json`
    (task, run, config, completed; once completed, what the run measured) that decides
    whether a later call may resume or reuse the run."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory).absolute()
        self._manager: ocp.CheckpointManager | None = None

    @property
    def manager(self) -> ocp.CheckpointManager:
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
            self._manager = ocp.CheckpointManager(self.directory / "orbax", options=options)
        return self._manager

    def meta(self) -> dict[str, Any] | None:
        path = self.directory / _META
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.directory / _META, json.dumps(meta, sort_keys=True, indent=1))

    def clear(self) -> None:
        self.close()
        if self.directory.exists():
            shutil.rmtree(self.directory)

    def latest(self) -> int | None:
        if not (self.directory / "orbax").exists():
            return None
        return self.manager.latest_step()

    def save(self, checkpoint: int, state: PPOState) -> None:
        self.manager.save(checkpoint, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()

    def restore(self, checkpoint: int, abstract: PPOState) -> PPOState:
        return self.manager.restore(checkpoint, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None


# ----------------------------------------------------------------------------- progress


class TrainingProgress(Progress):
    """Env steps trained, with the mean training return of the episodes finished since the
    last line (the shared `trainer.progress` line and ETA, to `log` or the
    `trainer.online` logger)."""

    def __init__(
        self, total_steps: int, interval_s: float, log: Callable[[str], None] | None
    ) -> None:
        super().__init__(total_steps, "env steps", rate_unit="steps/s", interval_s=interval_s,
                         log=log, logger=logger)
        self.episodes = 0
        self.return_sum = 0.0
        self.curve: list[tuple[int, float]] = []

    def add(self, metrics: PPOMetrics) -> None:
        self.episodes += int(metrics.episodes)
        self.return_sum += float(metrics.return_sum)

    def emit(self, steps: int, steps_per_s: float, extra: str = "") -> str:
        if self.episodes:
            mean = self.return_sum / self.episodes
            self.curve.append((steps, mean))
            ret = f"train return {mean:8.3f} ({self.episodes} episodes)"
        else:
            ret = "train return        - (0 episodes)"
        self.episodes, self.return_sum = 0, 0.0
        return super().emit(steps, steps_per_s, f"  {ret}{extra}")


# ----------------------------------------------------------------------------- the loop


def _policy_returns(
    record: Any, params: Any, config: OnlineConfig, salt: int, count: int,
    uniform: bool = False,
) -> tuple[Any, np.ndarray]:
    """`count` fresh episodes of the stochastic policy (the uniform-random one with
    `uniform`), one per environment, each with its reset key, and their returns. Keys depend
    only on (seed, salt), so recording never draws from the training RNG and a resumed run
    records the same."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1_000_003 * salt)
    batch = episodes_from_rollout(record(params, key, uniform, count), max_per_env=1,
                                  reset_keys=policy_reset_keys(config, key, count))
    return batch, batch.episode_returns()


def _resume_or_start(store: CheckpointStore, lake: Lake, meta: dict[str, Any],
                     schedule: Schedule, programs: Programs, seed: int, resume: bool,
                     progress: TrainingProgress, result: OnlineResult) -> tuple[PPOState, int]:
    """(training state, first checkpoint to record): an interrupted run with the same task,
    run id and config continues after its last orbax checkpoint; any other start is fresh,
    after deleting the run's old lake rows and checkpoints."""
    task, run = schedule.task, meta["run"]
    old = store.meta()
    latest = store.latest() if old is not None else None
    if (
        resume and old is not None and not old.get("completed")
        and {k: old.get(k) for k in meta} == meta and latest is not None
    ):
        result.resumed_from = latest
        result.curve = _curve_from_lake(lake, task, run, schedule, latest)
        progress.say(f"{task.name} run {run}: resuming after checkpoint {latest}")
        return store.restore(latest, programs.abstract), latest + 1
    if resume and old is not None and not old.get("completed"):
        progress.say(f"{task.name} run {run}: an interrupted run with another config (or "
                     "no checkpoint yet) exists; starting over")
    store.clear()
    delete_run(lake, task, run)
    store.write_meta({**meta, "completed": False})
    return programs.init(jax.random.PRNGKey(seed), schedule.num_updates), 0


def _train_until(update: Any, state: PPOState, done: int, target: int, schedule: Schedule,
                 progress: TrainingProgress) -> tuple[PPOState, int]:
    """Jitted updates from `done` to `target` updates; returns the state and the env steps
    trained. Each call runs as many updates as fit in half a progress interval (one at first,
    then sized from the measured time per update, at most MAX_UPDATES_PER_CALL), so on a fast
    device the host does not wait between updates; the same updates run whatever the sizes,
    so the result does not depend on them. Each call's metrics are fetched (which also waits
    for it) for the progress."""
    t_train = time.perf_counter()
    steps, per_call = 0, 1
    while done < target:
        n = min(per_call, target - done)
        t_call = time.perf_counter()
        state, metrics, _ = update(state, np.int32(n), np.bool_(True), np.bool_(False))
        metrics = jax.device_get(metrics)  # also waits for the updates
        seconds_per_update = (time.perf_counter() - t_call) / n
        done += n
        steps += n * schedule.steps_per_update
        progress.add(metrics)
        if progress.due():
            progress.emit(done * schedule.steps_per_update,
                          steps / (time.perf_counter() - t_train))
        per_call = int(np.clip(progress.interval / 2 / max(seconds_per_update, 1e-9), 1,
                               MAX_UPDATES_PER_CALL))
    return state, steps


def _record_checkpoint(record: Any, params: Any, config: OnlineConfig, schedule: Schedule,
                       k: int, update: int) -> tuple[Any, dict[str, Any]]:
    """Checkpoint k's E fresh episodes of the current stochastic policy (`policy_rollout`:
    the training programs without learning) and its record so far (returns, timing)."""
    t_rec = time.perf_counter()
    batch, returns = _policy_returns(record, params, config, k, config.episodes_per_checkpoint)
    rec = dict(
        checkpoint=k, update=update, env_steps=schedule.env_steps_at(k),
        quality=schedule.quality(k), episodes=len(returns),
        mean_return=float(returns.mean()), std_return=float(returns.std()),
        record_s=time.perf_counter() - t_rec,
    )
    return batch, rec


def _write_references(lake: Lake, schedule: Schedule, run: str, record: Any, params: Any,
                      config: OnlineConfig, result: OnlineResult) -> None:
    """The task's `references` row: the final policy's mean return and the random policy's,
    both through the training programs without learning (no program of their own)."""
    t_ref = time.perf_counter()
    _, final = _policy_returns(record, params, config, schedule.num_checkpoints + 1,
                               config.reference_episodes)
    _, rand_returns = _policy_returns(record, params, config, schedule.num_checkpoints + 2,
                                      config.reference_episodes, uniform=True)
    write_reference(
        lake, schedule.task, run, sable_returns=final, random_returns=rand_returns,
        env_steps=schedule.total_env_steps,
    )
    result.reference_s = time.perf_counter() - t_ref
    result.reference_return, result.reference_std = float(final.mean()), float(final.std())
    result.random_return = float(rand_returns.mean())
    result.random_std = float(rand_returns.std())


class CheckpointWriter:
    """Writes each recorded checkpoint on one background thread while training goes on: its
    lake rows first, then its orbax checkpoint (so a saved checkpoint always has its rows).
    One write is in flight at a time, so checkpoints land in order; `finish` waits for it and
    adds its record to the result."""

    def __init__(self, lake: Lake, schedule: Schedule, run: str, store: CheckpointStore,
                 producer: str, result: OnlineResult,
                 on_checkpoint: Callable[[CheckpointRecord], None] | None) -> None:
        self.lake, self.schedule, self.run, self.store = lake, schedule, run, store
        self.producer, self.result, self.on_checkpoint = producer, result, on_checkpoint
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="online-writer")
        self.pending: Future | None = None

    def submit(self, k: int, batch: Any, host_state: PPOState, rec: dict[str, Any]) -> None:
        """Write checkpoint k (its episodes `batch`, its training state on the host) once the
        previous write has landed."""
        self.finish()
        self.pending = self.pool.submit(self._write, k, batch, host_state, rec)

    def finish(self) -> None:
        """Wait for the write in flight (training's wait counts in `write_wait_s`)."""
        if self.pending is None:
            return
        t0 = time.perf_counter()
        record = self.pending.result()
        self.result.write_wait_s += time.perf_counter() - t0
        self.result.curve.append(record)
        self.pending = None
        if self.on_checkpoint is not None:
            self.on_checkpoint(record)

    def close(self) -> None:
        """After an error or interruption, let the write in flight land (its failure is
        logged: the original error is the one raised), then stop the thread."""
        if self.pending is not None:
            try:
                self.pending.result()
            except Exception:
                logger.exception("background checkpoint write failed")
        self.pool.shutdown(wait=True)

    def _write(self, k: int, batch: Any, host_state: PPOState, rec: dict[str, Any]
               ) -> CheckpointRecord:
        t0 = time.perf_counter()
        written = write_episodes(
            self.lake, self.schedule.task, self.run, k, self.schedule.quality(k), batch,
            env_steps=self.schedule.env_steps_at(k), config=self.producer)
        self.store.save(k, host_state)
        return CheckpointRecord(**rec, steps_written=written.rows, bytes_written=written.bytes,
                                write_s=time.perf_counter() - t0)


def _train_and_record(programs: Programs, state: PPOState, start: int, schedule: Schedule,
                      config: OnlineConfig, writer: CheckpointWriter, progress: TrainingProgress,
                      result: OnlineResult) -> PPOState:
    """Checkpoints `start`..K-1: train up to each, record its episodes (blocking), and hand
    them to the background writer while training goes on."""
    done_updates = int(state.update)
    for k in range(start, schedule.num_checkpoints):
        t_train = time.perf_counter()
        state, steps_since = _train_until(
            programs.update, state, done_updates, schedule.checkpoint_updates[k], schedule,
            progress)
        done_updates = max(done_updates, schedule.checkpoint_updates[k])
        train_k = time.perf_counter() - t_train
        result.train_s += train_k
        result.trained_env_steps += steps_since

        host_state = jax.device_get(state)  # the next update donates `state`'s buffers
        batch, rec = _record_checkpoint(programs.record, state.params, config, schedule, k,
                                        done_updates)
        result.record_s += rec["record_s"]
        writer.submit(k, batch, host_state, rec)
        progress.emit(
            schedule.env_steps_at(k), steps_since / train_k if train_k > 0 else math.nan,
            f"  | checkpoint {k + 1}/{schedule.num_checkpoints} ({rec['quality']}): "
            f"policy return {rec['mean_return']:.3f} over {rec['episodes']} episodes")
    writer.finish()
    return state


def train_online(
    task: str | Task,
    config: OnlineConfig,
    lake: Lake,
    run: str,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    log: Callable[[str], None] | None = None,
    on_checkpoint: Callable[[CheckpointRecord], None] | None = None,
) -> OnlineResult:
    """Train online Sable on `task` and record its dataset into `lake` as run `run`.

    Args:
        task: a catalogue task or its `env/scenario` name.
        config: the `OnlineConfig` (validated against the task before anything runs).
        lake: where the `steps`, `episodes` and `references` rows go.
        run: the run id of the rows (e.g. `sable-seed0`).
        checkpoint_dir: orbax checkpoints; default $SABLE_CHECKPOINTS (or ./checkpoints)
            /online/<env>/<scenario>/<run>.
        resume: continue an interrupted run with the same config from its last checkpoint,
            or reuse a completed one whose rows are all in the lake; False always starts
            fresh.
        log: where progress lines go (default: a bar on a terminal, else the logger).
        on_checkpoint: called after each checkpoint's rows and orbax checkpoint are saved.

    Raises:
        ValueError: unknown task, budget smaller than one rollout, more checkpoints than
            updates, episodes per checkpoint < 1, or another bad config value; raised before
            any compilation or environment step.
    """
    wall_start = time.perf_counter()
    task = resolve_task(task)
    schedule = Schedule.of(task, config)  # every check before any compute
    validate_partition("references", {"env": task.env, "task": task.scenario, "run": run})
    lake.prepare_for_writing()  # a file root, an unsafe S3 endpoint: refused before compute
    store = CheckpointStore(checkpoint_dir or default_checkpoint_dir(task, run))
    progress = TrainingProgress(schedule.total_env_steps, config.progress_interval_s, log)
    meta = {"task": task.name, "run": run, "config": config.to_json()}

    if resume and _completed(store, lake, meta, schedule):  # nothing to train or record
        result = _reused(lake, schedule, run, config, store.meta().get("measured") or {})
        result.wall_s = time.perf_counter() - wall_start
        progress.say(f"{task.name} run {run}: already complete in the lake with this config "
                     f"(final return {result.reference_return:.3f}, random "
                     f"{result.random_return:.3f}); reused")
        return result

    t_compile = time.perf_counter()
    programs = _programs(task.name, _compile_key(config))
    result = OnlineResult(
        task=task.name, run=run, config=config, num_updates=schedule.num_updates,
        total_env_steps=schedule.total_env_steps,
        param_count=param_count(programs.abstract.params),
        compile_s=time.perf_counter() - t_compile)
    state, start = _resume_or_start(store, lake, meta, schedule, programs, config.seed, resume,
                                    progress, result)
    progress.say(
        f"{task.name} run {run}: {schedule.num_updates} updates x {schedule.steps_per_update:,} "
        f"env steps, {schedule.num_checkpoints} checkpoints x {config.episodes_per_checkpoint} "
        f"episodes, {result.param_count:,} parameters (compile {result.compile_s:.1f}s)")

    producer = json.dumps({"online_sable": meta["config"]}, sort_keys=True)  # for the cards
    writer = CheckpointWriter(lake, schedule, run, store, producer, result, on_checkpoint)
    try:
        state = _train_and_record(programs, state, start, schedule, config, writer, progress,
                                  result)
        _write_references(lake, schedule, run, programs.record, state.params, config, result)
        result.train_curve = progress.curve
        store.write_meta({**meta, "completed": True, "measured": result.measured()})
        write_curves(result)
    finally:
        writer.close()
        store.close()

    result.write_s = sum(r.write_s for r in result.curve if not math.isnan(r.write_s))
    result.wall_s = time.perf_counter() - wall_start
    progress.say(
        f"{task.name} run {run}: final return {result.reference_return:.3f} "
        f"(random {result.random_return:.3f}), {result.steps_per_s:,.0f} steps/s, recording "
        f"{result.recording_fraction:.1%} of training time, wall {result.wall_s:.0f}s")
    return result


def write_curves(result: OnlineResult) -> None:
    """The run's curves as a TensorBoard run, `online · <task> · <run>` under the models
    root's `tensorboard/` (beside the offline models', so `make tensorboard` shows both):
    training returns and each checkpoint's recorded return by env steps, and the references
    at the end of the budget."""
    curves = ScalarWriter(run_directory(models_root(), online_run(result.task, result.run)),
                          fresh=True)
    for steps, mean in result.train_curve:
        curves.add(steps, {"train_return": mean})
    for record in result.curve:
        curves.add(record.env_steps, {"checkpoint_return": record.mean_return})
    curves.add(result.total_env_steps, {"reference/online_sable": result.reference_return,
                                        "reference/random": result.random_return})
    curves.close()


def _completed(store: CheckpointStore, lake: Lake, meta: dict[str, Any], schedule: Schedule
               ) -> bool:
    """The run finished with this task, run id and config, and the lake still holds every
    checkpoint (steps matching episodes) and its references row."""
    old = store.meta()
    if old is None or not old.get("completed") or {k: old.get(k) for k in meta} != meta:
        return False
    missing, extra = missing_checkpoints(lake, schedule.task, meta["run"],
                                         schedule.num_checkpoints)
    return not (missing or extra) and reference_present(lake, schedule.task, meta["run"]).passed


def _reused(lake: Lake, schedule: Schedule, run: str, config: OnlineConfig,
            measured: dict[str, Any]) -> OnlineResult:
    """The result of a completed run, read back from the lake (no compilation: the parameter
    count comes from the network's shapes), with what the call that completed it `measured`
    (from its run.json; empty for a run.json written without it)."""
    task = schedule.task
    model = Sable(sable_config(config, make_env(task.name)))
    shapes = jax.eval_shape(model.init_params, jax.random.PRNGKey(0))
    ref = read_table(lake, "references", Selection(env=task.env, tasks=[task.scenario],
                                                   runs=[run])).to_pylist()[0]
    return OnlineResult(
        task=task.name, run=run, config=config, num_updates=schedule.num_updates,
        total_env_steps=schedule.total_env_steps, param_count=param_count(shapes),
        curve=_curve_from_lake(lake, task, run, schedule, schedule.num_checkpoints - 1),
        reference_return=ref["sable_return"], reference_std=ref["sable_return_std"],
        random_return=ref["random_return"], random_std=ref["random_return_std"],
        resumed_from=schedule.num_checkpoints - 1, reused=True,
        train_curve=[(int(steps), float(ret)) for steps, ret in measured.get("train_curve", [])],
        measured_steps_per_s=measured.get("steps_per_s"),
        measured_recording_fraction=measured.get("recording_fraction"),
    )


def _curve_from_lake(
    lake: Lake, task: Task, run: str, schedule: Schedule, last: int
) -> list[CheckpointRecord]:
    """Checkpoints 0..last of a resumed run, as written to the lake (timings unknown: NaN)."""
    eps = read_table(
        lake, "episodes", Selection(env=task.env, tasks=[task.scenario], runs=[run],
                                    checkpoints=(0, last)),
        columns=["checkpoint", "return", "length"],
    )
    ck = eps["checkpoint"].to_numpy()
    ret = eps["return"].to_numpy()
    length = eps["length"].to_numpy()
    sizes = np.zeros(last + 1, np.int64)
    for table in ("steps", "episodes"):
        sel = Selection(env=task.env, tasks=[task.scenario], runs=[run], checkpoints=(0, last))
        for rel in list_files(lake, table, sel):
            sizes[int(parse_partition(rel)["checkpoint"])] += lake.fs.size(lake.path(rel))
    out = []
    for k in range(last + 1):
        sel = ck == k
        r = ret[sel]
        out.append(CheckpointRecord(
            checkpoint=k, update=schedule.checkpoint_updates[k],
            env_steps=schedule.env_steps_at(k),
            quality=schedule.quality(k), episodes=int(sel.sum()),
            mean_return=float(r.mean()) if r.size else math.nan,
            std_return=float(r.std()) if r.size else math.nan,
            steps_written=int(length[sel].sum()), bytes_written=int(sizes[k]),
            record_s=math.nan, write_s=math.nan,
        ))
    return out
