"""Random-policy rollouts of a task, recorded into the lake: the floor every policy must beat."""

import json

import dagster as dg
from pydantic import Field

from lake_schema.catalogue import get_task
from lake_schema.writer import write_episodes
from pipelines.partitions import task_partitions
from pipelines.resources import ComputeResource, LakeResource


class RandomRolloutsConfig(dg.Config):
    episodes: int = Field(default=16, ge=1, description="episodes to record")
    seed: int = Field(default=0, ge=0)


@dg.asset(group_name="lake", partitions_def=task_partitions, kinds={"jax", "parquet"})
def random_rollouts(
    context: dg.AssetExecutionContext, config: RandomRolloutsConfig, lake: LakeResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    """Uniform-random-over-legal-actions episodes in the task's real Jumanji environment,
    stored as run `random-seed<seed>`, checkpoint 0 (quality `low`)."""
    from trainer.recording import collect_random_episodes  # JAX only in the run process

    task = get_task(context.partition_key)
    with compute.placed():
        batch = collect_random_episodes(task, config.episodes, config.seed)
    run = f"random-seed{config.seed}"
    result = write_episodes(lake.lake(), task, run, 0, "low", batch, config=json.dumps(
        {"random_policy": {"episodes": config.episodes, "seed": config.seed}}))
    returns = batch.episode_returns()
    return dg.MaterializeResult(
        metadata={
            "episodes": len(batch.lengths),
            "steps": result.rows,
            "bytes": result.bytes,
            "mean_return": float(returns.mean()),
            "run": run,
            "steps_file": dg.MetadataValue.path(lake.lake().url(result.files[0])),
        }
    )
