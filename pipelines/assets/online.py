"""Online Sable per task: PPO training whose rollouts at K checkpoints become the task's
dataset in the lake (`steps`, `episodes`, quality low/high) plus its `references` row.

Wiring only: the algorithm is `trainer.online.train_online`; the checks are the rules of
`lake_schema.checks`, and the replay of recorded episodes in the real environment
(`trainer.replay`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from lake_schema import checks
from lake_schema.catalogue import Task, get_task
from lake_schema.delta import table_id
from lake_schema.storage import Lake
from pipelines.checks import check_result
from pipelines.configs import derive, knob_values
from pipelines.metadata import rounded
from pipelines.partitions import DATASET_RUNS, task_partitions
from pipelines.plots import learning_curve_png, publish_png, table_metadata
from pipelines.resources import ComputeResource, LakeResource
from trainer.experiments import PRESETS, get_preset
from trainer.online.config import PROFILES as ONLINE_PROFILES
from trainer.online.config import OnlineConfig

ASSET = "online_sable"
REPLAYED_PER_CHECKPOINT = 2  # episodes of each checkpoint `online_episodes_replay` replays


class _OnlineRun(dg.Config):
    """The knobs of one online run (every field of `trainer.online.OnlineConfig`); unset
    (null) fields take the profile's value."""

    profile: Literal[tuple(ONLINE_PROFILES)] = Field(
        default="demo", description="'demo' (CPU, small model; what `make demo` runs) or "
        "'paper' (GPU)")
    run: str = Field(default="", description="run id of the rows; default sable-seed<seed>")
    resume: bool = Field(default=True, description=(
        "continue an interrupted run of this config, or reuse a completed one whose rows are "
        "all in the lake; false: train afresh"))
    checkpoint_dir: str = Field(
        default="", description="orbax checkpoints; default $SABLE_CHECKPOINTS or ./checkpoints"
    )
    preset: Literal[("", *PRESETS)] = Field(default="", description=(
        "a reproduction preset (trainer.experiments): its profile and online config for the "
        "partition's task (its env's, and its held-out tasks' scale-down); knobs set here "
        "override it"))

    def online_config(self, task: Task) -> OnlineConfig:
        """The validated trainer config of this run on `task`."""
        profile, knobs = self.profile, {}
        if self.preset:
            preset = get_preset(self.preset)
            knobs = preset.online_config(task.env, preset.held_out(task.name))
            profile = knobs.pop("profile", profile)
        return OnlineConfig.profile(profile, env=task.env,
                                    **{**knobs, **knob_values(self, OnlineConfig)})


OnlineSableConfig = derive("OnlineSableConfig", _OnlineRun, OnlineConfig)


@dg.asset(group_name="online", partitions_def=task_partitions, kinds={"jax", "parquet"},
          backfill_policy=DATASET_RUNS)
def online_sable(
    context: dg.AssetExecutionContext, config: OnlineSableConfig, lake: LakeResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    """Online Sable (PPO) on the partition's task; its rollouts at K evenly spaced checkpoints
    (E episodes each, quality `low` then `high`) and the final/random reference returns are
    written to the lake as run `sable-seed<seed>`. Materialising again with the same config
    reuses the completed run (its rows and references as they are, and the speed and
    learning curve its training measured: `reused` is true); another config, or
    `resume: false`, replaces that run's rows. An interrupted materialisation resumes from
    its last checkpoint."""
    from trainer.online import train_online  # JAX only in the run process

    task = get_task(context.partition_key)
    online_config = config.online_config(task)
    the_lake = lake.lake()
    run = config.run or f"sable-seed{online_config.seed}"

    def observe(record) -> None:
        # Committed progress, in the event log as it happens: if the run dies, the checks
        # still know its run id and K, and report which checkpoints are missing.
        context.log_event(dg.AssetObservation(
            asset_key=context.asset_key, partition=context.partition_key,
            metadata=rounded({
                "run": run, "num_checkpoints": online_config.num_checkpoints,
                "checkpoint": record.checkpoint, "quality": record.quality,
                "env_steps": record.env_steps, "mean_return": record.mean_return}),
        ))

    with compute.placed():
        result = train_online(
            task, online_config, the_lake, run, checkpoint_dir=config.checkpoint_dir or None,
            resume=config.resume, log=context.log.info, on_checkpoint=observe,
        )
    png = learning_curve_png(result, f"online Sable on {task.name} (run {run})")
    curve = pl.DataFrame([{"checkpoint": r.checkpoint, "env_steps": r.env_steps,
                           "quality": r.quality, "mean_return": r.mean_return,
                           "episodes": r.episodes} for r in result.curve])
    run_folder = f"task={task.scenario}/run={run}"  # the run's folder in each table
    return dg.MaterializeResult(
        metadata=rounded({
            "run": run,
            "num_checkpoints": len(result.curve),
            "episodes": result.episodes_written,
            "steps": result.steps_written,
            "bytes": result.bytes_written,
            "env_steps": result.total_env_steps,
            "final_return": result.reference_return,
            "random_return": result.random_return,
            "steps_per_s": result.steps_per_s,  # a reused run's: as its training measured
            "recording_fraction": result.recording_fraction,
            "params": result.param_count,
            "resumed_from": -1 if result.resumed_from is None else result.resumed_from,
            "reused": result.reused,
            "learning_curve": publish_png(the_lake, png, "learning curve"),
            "checkpoints": table_metadata(curve),  # inline however many checkpoints
            "steps_partition": dg.MetadataValue.path(
                the_lake.url(f"{table_id('steps', task.env)}/{run_folder}")),
            "episodes_partition": dg.MetadataValue.path(
                the_lake.url(f"episodes/env={task.env}/{run_folder}")),
        })
    )


# ----------------------------------------------------------------------------- checks
# Each check applies a rule of `lake_schema.checks` to the partition's latest recorded run.


@dataclass(frozen=True)
class RecordedRun:
    """What the event log says the lake should hold for a partition."""

    run: str
    num_checkpoints: int
    finished: bool  # False: the latest event is a checkpoint observation (the run died or runs)
    last_checkpoint: int | None = None


def recorded_run(instance: dg.DagsterInstance, partition: str) -> RecordedRun | None:
    """The partition's latest materialisation, or a newer checkpoint observation when a run
    started since has not finished."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(ASSET), asset_partitions=[partition])
    events = [
        (r.storage_id, r.asset_event)
        for fetch in (instance.fetch_materializations, instance.fetch_observations)
        for r in fetch(records_filter, limit=1).records
    ]
    if not events:
        return None
    _, event = max(events, key=lambda e: e[0])
    meta = event.metadata
    finished = isinstance(event, dg.AssetMaterialization)
    return RecordedRun(
        run=str(meta["run"].value), num_checkpoints=int(meta["num_checkpoints"].value),
        finished=finished, last_checkpoint=None if finished else int(meta["checkpoint"].value),
    )


def _of_run(rule: Callable[[Lake, Task, str], checks.Outcome]
            ) -> Callable[[Lake, Task, RecordedRun], checks.Outcome]:
    return lambda lk, task, found: rule(lk, task, found.run)


def _check_run(
    context: dg.AssetCheckExecutionContext, lake: LakeResource,
    rule: Callable[[Lake, Task, RecordedRun], checks.Outcome],
) -> dg.AssetCheckResult:
    """`rule` on the partition's latest recorded run, noting an unfinished one."""
    found = recorded_run(context.instance, context.partition_key)
    if found is None:
        return dg.AssetCheckResult(
            passed=False, metadata={"reason": f"{context.partition_key} is not materialised"}
        )
    result = check_result(rule(lake.lake(), get_task(context.partition_key), found))
    if found.finished:
        return result
    # The checks themselves say what is missing (checkpoints, references); this says why.
    note = (f"run {found.run} has not finished: its last committed checkpoint is "
            f"{found.last_checkpoint} of 0..{found.num_checkpoints - 1}; materialise the "
            "partition again to resume it")
    return dg.AssetCheckResult(passed=result.passed,
                               metadata={**result.metadata, "unfinished": note})


@dg.asset_check(asset=online_sable, partitions_def=task_partitions, blocking=True)
def online_checkpoints_have_rows(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Every recording checkpoint 0..K-1 has episodes, and its steps match their lengths."""
    return _check_run(context, lake, lambda lk, task, run: checks.checkpoint_rows(
        lk, task, run.run, run.num_checkpoints))


@dg.asset_check(asset=online_sable, partitions_def=task_partitions)
def online_no_nan(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """No NaN or inf in episode returns, step rewards or (float) observations."""
    return _check_run(context, lake, _of_run(checks.no_nan))


@dg.asset_check(asset=online_sable, partitions_def=task_partitions)
def online_returns_within_bounds(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Every recorded episode return lies within the task's return bounds."""
    return _check_run(context, lake, _of_run(checks.returns_within_bounds))


@dg.asset_check(asset=online_sable, partitions_def=task_partitions)
def online_returns_to_go_in_value_support(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """At most 1% of the recorded discounted returns-to-go (gamma 0.99) lie outside the env's
    HL-Gauss value support, which the offline critics clip to; fails naming the task and the
    share (`summary`)."""
    return _check_run(context, lake, _of_run(checks.returns_to_go_in_support))


@dg.asset_check(asset=online_sable, partitions_def=task_partitions)
def online_reference_present(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """The task's `references` row of this run exists, once, with finite returns."""
    return _check_run(context, lake, _of_run(checks.reference_present))


@dg.asset_check(asset=online_sable, partitions_def=task_partitions, blocking=True)
def online_files_valid(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Every lake file of the task passes `verify` (blocking: nothing trains on bad files)."""
    outcome = checks.files_valid(lake.lake(), get_task(context.partition_key))
    return check_result(outcome, markdown=("problems", "leftover_files"))


@dg.asset_check(asset=online_sable, partitions_def=task_partitions)
def online_episodes_replay(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """A few episodes of each checkpoint (REPLAYED_PER_CHECKPOINT), reset from their recorded
    keys in the real environment and stepped with their stored actions, reproduce every
    stored observation, legal mask, reward and end flag; fails naming the first episode, step
    and field that differ (`difference`), or when no episode has a reset key (`reason`)."""
    from trainer.replay import replay_run  # JAX only in the run process

    return _check_run(context, lake, lambda lk, task, run: replay_run(
        lk, task, run.run, REPLAYED_PER_CHECKPOINT))


online_checks = [
    online_files_valid,
    online_checkpoints_have_rows,
    online_no_nan,
    online_returns_within_bounds,
    online_returns_to_go_in_value_support,
    online_reference_present,
    online_episodes_replay,
]
