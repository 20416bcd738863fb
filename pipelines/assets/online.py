"""Online Sable per task: PPO training whose rollouts at K checkpoints become the task's
dataset in the lake (`steps`, `episodes`, quality low/high) plus its `references` row.

Wiring only: the algorithm is `trainer.online.train_online`; the checks read the lake back
through `lake_schema.reader`.
"""

import math
from dataclasses import dataclass

import dagster as dg
import numpy as np
from pydantic import Field

from lake_schema.catalogue import Task, get_task
from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake
from lake_schema.verify import Problem, VerifyReport, verify
from pipelines.partitions import task_partitions
from pipelines.plots import learning_curve_png, png_markdown
from pipelines.resources import ComputeResource, LakeResource

ASSET = "online_sable"


class OnlineSableConfig(dg.Config):
    """The knobs of one online run; unset (null) fields take the profile's value."""

    profile: str = Field(default="demo", description="'demo' (CPU, small model) or 'paper' (GPU)")
    total_env_steps: int | None = Field(default=None, ge=1, description="training budget")
    num_checkpoints: int | None = Field(default=None, ge=1, description="K recording checkpoints")
    episodes_per_checkpoint: int | None = Field(
        default=None, ge=1, description="E episodes recorded at each checkpoint"
    )
    reference_episodes: int | None = Field(
        default=None, ge=1, description="episodes for the final and random reference returns"
    )
    embed_dim: int | None = Field(default=None, ge=1, description="Sable embedding size")
    num_heads: int | None = Field(default=None, ge=1)
    num_envs: int | None = Field(default=None, ge=1, description="vmapped environments")
    rollout_length: int | None = Field(default=None, ge=1, description="steps per update")
    learning_rate: float | None = Field(default=None, gt=0)
    anneal_lr: bool | None = None
    seed: int = Field(default=0, ge=0)
    run: str = Field(default="", description="run id of the rows; default sable-seed<seed>")
    resume: bool = Field(default=True, description="continue an interrupted run of this config")
    checkpoint_dir: str = Field(
        default="", description="orbax checkpoints; default $SABLE_CHECKPOINTS or ./checkpoints"
    )

    def run_id(self) -> str:
        return self.run or f"sable-seed{self.seed}"

    def overrides(self) -> dict:
        knobs = (
            "total_env_steps", "num_checkpoints", "episodes_per_checkpoint", "reference_episodes",
            "embed_dim", "num_heads", "num_envs", "rollout_length", "learning_rate", "anneal_lr",
        )
        out = {k: getattr(self, k) for k in knobs if getattr(self, k) is not None}
        return {**out, "seed": self.seed}


@dg.asset(group_name="online", partitions_def=task_partitions, kinds={"jax", "parquet"})
def online_sable(
    context: dg.AssetExecutionContext, config: OnlineSableConfig, lake: LakeResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    """Online Sable (PPO) on the partition's task; its rollouts at K evenly spaced checkpoints
    (E episodes each, quality `low` then `high`) and the final/random reference returns are
    written to the lake as run `sable-seed<seed>`. Materialising again replaces that run's rows;
    an interrupted materialisation resumes from its last checkpoint."""
    from trainer.online import OnlineConfig, train_online  # JAX only in the run process

    task = get_task(context.partition_key)
    online_config = OnlineConfig.profile(config.profile, env=task.env, **config.overrides())
    the_lake = lake.lake()
    run = config.run_id()

    def observe(record) -> None:
        # Committed progress, in the event log as it happens: if the run dies, the checks
        # still know its run id and K, and report which checkpoints are missing.
        context.log_event(dg.AssetObservation(
            asset_key=context.asset_key, partition=context.partition_key,
            metadata={"run": run, "num_checkpoints": online_config.num_checkpoints,
                      "checkpoint": record.checkpoint, "quality": record.quality,
                      "env_steps": record.env_steps, "mean_return": record.mean_return},
        ))

    with compute.placed():
        result = train_online(
            task, online_config, the_lake, run, checkpoint_dir=config.checkpoint_dir or None,
            resume=config.resume, log=context.log.info, on_checkpoint=observe,
        )
    png = learning_curve_png(result, f"online Sable on {task.name} (run {run})")
    curve = "\n".join(
        f"| {r.checkpoint} | {r.env_steps:,} | {r.quality} | {r.mean_return:.3f} | {r.episodes} |"
        for r in result.curve
    )
    partition = f"env={task.env}/task={task.scenario}/run={run}"
    return dg.MaterializeResult(
        metadata={
            "run": run,
            "num_checkpoints": len(result.curve),
            "episodes": result.episodes_written,
            "steps": result.steps_written,
            "bytes": result.bytes_written,
            "env_steps": result.total_env_steps,
            "final_return": result.reference_return,
            "random_return": result.random_return,
            "steps_per_s": round(result.steps_per_s, 1),
            "recording_fraction": round(result.recording_fraction, 4),
            "params": result.param_count,
            "resumed_from": -1 if result.resumed_from is None else result.resumed_from,
            "learning_curve": png_markdown(png, "learning curve"),
            "checkpoints": dg.MetadataValue.md(
                "| checkpoint | env steps | quality | mean return | episodes |\n"
                "| --- | --- | --- | --- | --- |\n" + curve
            ),
            "steps_partition": dg.MetadataValue.path(the_lake.url(f"steps/{partition}")),
            "episodes_partition": dg.MetadataValue.path(the_lake.url(f"episodes/{partition}")),
        }
    )


# ----------------------------------------------------------------------------- checks
# Each check reads the partition's latest recorded run back through lake_schema.reader; the
# evaluations are plain functions of (lake, task, run).


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


def _selection(task: Task, run: str) -> Selection:
    return Selection(env=task.env, tasks=[task.scenario], runs=[run])


def missing_checkpoints(lake: Lake, task: Task, run: str, num_checkpoints: int
                        ) -> tuple[list[int], list[int]]:
    """(checkpoints of 0..K-1 without episodes or whose step rows do not match the episodes'
    lengths, checkpoint indices outside 0..K-1)."""
    k = num_checkpoints
    eps = read_table(lake, "episodes", _selection(task, run), ["checkpoint", "length"])
    # ("reward" too: lake_schema.reader returns zero rows when only partition columns are
    # asked for.)
    steps = read_table(lake, "steps", _selection(task, run), ["checkpoint", "reward"])
    ck_eps = eps["checkpoint"].to_numpy()
    episodes = np.bincount(ck_eps, minlength=k)
    lengths = np.bincount(ck_eps, weights=eps["length"].to_numpy(), minlength=k)
    rows = np.bincount(steps["checkpoint"].to_numpy(), minlength=k)
    missing = [i for i in range(k) if episodes[i] == 0 or rows[i] != lengths[i]]
    return missing, sorted(set(ck_eps.tolist()) - set(range(k)))


def checkpoint_rows(lake: Lake, task: Task, run: str, num_checkpoints: int) -> dg.AssetCheckResult:
    """Every recording checkpoint 0..K-1 has episodes, and its steps match their lengths."""
    missing, extra = missing_checkpoints(lake, task, run, num_checkpoints)
    return dg.AssetCheckResult(
        passed=not missing and not extra,
        metadata={"run": run, "checkpoints": num_checkpoints,
                  "missing_or_mismatched": str(missing), "unexpected": str(extra)},
    )


def no_nan(lake: Lake, task: Task, run: str) -> dg.AssetCheckResult:
    """No NaN or inf in episode returns, step rewards or (float) observations."""
    columns = ["reward", "obs"] if task.spec.obs_dtype.startswith("float") else ["reward"]
    steps = read_table(lake, "steps", _selection(task, run), columns)
    eps = read_table(lake, "episodes", _selection(task, run), ["return"])
    bad = {
        "return": int((~np.isfinite(eps["return"].to_numpy())).sum()),
        "reward": int((~np.isfinite(steps["reward"].to_numpy())).sum()),
    }
    if "obs" in columns:
        values = steps["obs"].combine_chunks().flatten().flatten().to_numpy()
        bad["obs"] = int((~np.isfinite(values)).sum())
    return dg.AssetCheckResult(
        passed=eps.num_rows > 0 and not any(bad.values()),
        metadata={"non_finite": str(bad), "episodes": eps.num_rows},
    )


def returns_within_bounds(lake: Lake, task: Task, run: str) -> dg.AssetCheckResult:
    """Every recorded episode return lies within the task's return bounds."""
    lo, hi = task.return_bounds()
    r = read_table(lake, "episodes", _selection(task, run), ["return"])["return"].to_numpy()
    outside = int(((r < lo - 1e-6) | (r > hi + 1e-6)).sum())
    return dg.AssetCheckResult(
        passed=outside == 0 and r.size > 0,
        metadata={"bounds": f"[{lo}, {hi}]", "outside": outside,
                  "min": float(r.min()) if r.size else math.nan,
                  "max": float(r.max()) if r.size else math.nan},
    )


def reference_present(lake: Lake, task: Task, run: str) -> dg.AssetCheckResult:
    """The task's `references` row of this run exists, once, with finite returns."""
    rows = read_table(lake, "references", _selection(task, run)).to_pylist()
    finite = all(
        math.isfinite(r["sable_return"]) and math.isfinite(r["random_return"]) for r in rows
    )
    meta = {"rows": len(rows)}
    if rows:
        meta |= {"sable_return": rows[0]["sable_return"], "random_return": rows[0]["random_return"]}
    return dg.AssetCheckResult(passed=len(rows) == 1 and finite, metadata=meta)


def _evaluate(
    context: dg.AssetCheckExecutionContext, lake: LakeResource, evaluate
) -> dg.AssetCheckResult:
    found = recorded_run(context.instance, context.partition_key)
    if found is None:
        return dg.AssetCheckResult(
            passed=False, metadata={"reason": f"{context.partition_key} is not materialised"}
        )
    result = evaluate(lake.lake(), get_task(context.partition_key), found.run,
                      found.num_checkpoints)
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
    return _evaluate(context, lake, checkpoint_rows)


@dg.asset_check(asset=online_sable, partitions_def=task_partitions)
def online_no_nan(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """No NaN or inf in episode returns, step rewards or (float) observations."""
    return _evaluate(context, lake, lambda lk, task, run, _: no_nan(lk, task, run))


@dg.asset_check(asset=online_sable, partitions_def=task_partitions)
def online_returns_within_bounds(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Every recorded episode return lies within the task's return bounds."""
    return _evaluate(context, lake, lambda lk, task, run, _: returns_within_bounds(lk, task, run))


@dg.asset_check(asset=online_sable, partitions_def=task_partitions)
def online_reference_present(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """The task's `references` row of this run exists, once, with finite returns."""
    return _evaluate(context, lake, lambda lk, task, run, _: reference_present(lk, task, run))


def task_problems(report: VerifyReport, task: Task) -> list[Problem]:
    """The verify report's problems in the task's files (`steps/<env>/task=...`, the other
    tables' `env=<env>/task=...`)."""
    markers = (f"/env={task.env}/task={task.scenario}/", f"steps/{task.env}/task={task.scenario}/")
    return [p for p in report.problems if any(m in p.path for m in markers)]


def files_valid(lake: Lake, task: Task) -> dg.AssetCheckResult:
    """`python -m lake_schema verify` on the task's files (schema version, columns, footers,
    partition values, files outside the Delta log, index vs steps): the CLI's own code."""
    report = verify(lake)
    bad = task_problems(report, task)
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={"files_checked": report.files,
                  "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in bad) or "none")},
    )


@dg.asset_check(asset=online_sable, partitions_def=task_partitions, blocking=True)
def online_files_valid(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Every lake file of the task passes `verify` (blocking: nothing trains on bad files)."""
    return files_valid(lake.lake(), get_task(context.partition_key))


online_checks = [
    online_files_valid,
    online_checkpoints_have_rows,
    online_no_nan,
    online_returns_within_bounds,
    online_reference_present,
]
