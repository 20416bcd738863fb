"""The common workflows, each one launch from the UI's launchpad or `dagster job execute`."""

import dagster as dg

from pipelines.resources import LakeResource

# Online Sable + recording for one task per run, then its dataset card; backfill a split's
# partitions in the UI.
build_datasets = dg.define_asset_job(
    "build_datasets",
    selection=dg.AssetSelection.assets("online_sable", "dataset_card"),
    description="Train online Sable on a task, record its dataset and references, and show "
                "its dataset card.",
)

# The state of every recorded task dataset (e.g. after a run died), without training anything.
check_datasets = dg.define_asset_job(
    "check_datasets",
    selection=dg.AssetSelection.assets("dataset_status"),
    description="Tabulate every recorded task dataset: finished, missing checkpoints, "
                "references, file problems.",
)

# One offline configuration (set in the launchpad), its evaluations and the refreshed report.
train_and_evaluate = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.assets(
        "offline_model", "offline_eval_train", "offline_eval_test", "report"),
    description="Train one offline model, evaluate it on train and held-out tasks, report.",
)

# A grid of offline models (algorithms x task counts x quality subsets) and the report.
run_ablation_sweep = dg.define_asset_job(
    "run_ablation_sweep",
    selection=dg.AssetSelection.assets("ablation_sweep", "report"),
    description="Train and evaluate a grid of offline configurations, then report.",
)

# The paper's experiments at a named scale (trainer.experiments presets), then the report;
# benchmarks/reproduce.py builds the preset's task datasets first.
reproduce = dg.define_asset_job(
    "reproduce",
    selection=dg.AssetSelection.assets("reproduction", "report"),
    description="Train and evaluate every model of a reproduction preset (seeds included), "
                "skipping what is done, then report.",
)

random_baselines = dg.define_asset_job(
    "random_baselines",
    selection=dg.AssetSelection.assets("random_rollouts"),
    description="Record uniform-random-policy episodes of a task.",
)



class MaintenanceConfig(dg.Config):
    retention_hours: float = 168.0  # older versions stay readable (as_of) this long


@dg.op(description="Compact small files (optimize) and delete files no kept version needs "
                   "(vacuum) in every lake table. Run while nobody writes.")
def compact_and_vacuum(context: dg.OpExecutionContext, lake: LakeResource,
                       config: MaintenanceConfig) -> None:
    from lake_schema import delta, maintenance

    the_lake = lake.lake()
    the_lake.check_readable()
    for tid in delta.existing_tables(the_lake):
        compacted = maintenance.optimize(the_lake, tid)
        gone = maintenance.vacuum(the_lake, tid, config.retention_hours)
        context.log.info(f"{tid}: {compacted.get('numFilesRemoved', 0)} files compacted, "
                         f"{len(gone)} deleted")


@dg.job(description="Lake maintenance: optimize + vacuum every table (while nobody writes).")
def maintain_lake():
    compact_and_vacuum()


JOBS = [build_datasets, check_datasets, train_and_evaluate, run_ablation_sweep, reproduce,
        random_baselines, maintain_lake]
