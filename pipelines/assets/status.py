"""The state of every recorded task dataset in one table: what a researcher looks at after a
run died, or before training on a split, without re-running anything.

It applies the online checks' own rules (`lake_schema.checks`) to every task partition the
instance has recorded (finished or not), so the table and the per-partition checks agree.
"""

import dagster as dg
import polars as pl

from lake_schema.catalogue import get_task
from lake_schema.checks import missing_checkpoints, reference_present, task_problems
from lake_schema.verify import verify
from pipelines.assets.online import recorded_run
from pipelines.partitions import task_partitions
from pipelines.resources import LakeResource
from trainer.analysis import markdown_table

COMPLETE_CHECK = "recorded_datasets_complete"


@dg.asset(
    group_name="lake", deps=["online_sable"], kinds={"parquet"},
    check_specs=[dg.AssetCheckSpec(COMPLETE_CHECK, asset="dataset_status",
                                   description="every recorded task dataset is complete")],
)
def dataset_status(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per task with an online run in this instance: finished or not, the checkpoints
    missing from the lake, the reference row, file problems. Trains nothing."""
    the_lake = lake.lake()
    report = verify(the_lake)
    rows = []
    for name in task_partitions.get_partition_keys():
        found = recorded_run(context.instance, name)
        if found is None:
            continue
        task = get_task(name)
        missing, extra = missing_checkpoints(the_lake, task, found.run, found.num_checkpoints)
        reference = reference_present(the_lake, task, found.run).passed
        problems = task_problems(report, task)
        rows.append({
            "task": name, "run": found.run,
            "state": "finished" if found.finished
            else f"unfinished after checkpoint {found.last_checkpoint}",
            "checkpoints": found.num_checkpoints,
            "missing_checkpoints": ", ".join(map(str, missing + extra)) or "-",
            "reference": "yes" if reference else "missing",
            "file_problems": len(problems),
            "complete": not (missing or extra or problems) and reference,
        })
    incomplete = [r["task"] for r in rows if not r["complete"]]
    table = markdown_table(pl.DataFrame(rows)) if rows else "no recorded task datasets yet"
    return dg.MaterializeResult(
        metadata={"tasks": len(rows), "incomplete": ", ".join(incomplete) or "none",
                  "status": dg.MetadataValue.md(table)},
        check_results=[dg.AssetCheckResult(
            check_name=COMPLETE_CHECK, passed=not incomplete,
            metadata={"incomplete": ", ".join(incomplete) or "none",
                      "fix": "materialise these online_sable partitions again (they resume)"},
        )],
    )
