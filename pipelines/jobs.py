"""The common workflows, each one launch from the UI's launchpad or `dagster job execute`."""

import dagster as dg

from pipelines.experiments import LaunchConfig
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

# One model partition (registered by `launch_experiment` or `pipelines.launch`): trained,
# then evaluated on its train and held-out tasks.
train_and_evaluate = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.assets("offline_model", "offline_eval_train", "offline_eval_test"),
    description="Train one model (a partition: its config id) and evaluate it on its train and "
                "held-out tasks.",
)

# Every evaluation in the lake, compared.
refresh_report = dg.define_asset_job(
    "refresh_report", selection=dg.AssetSelection.assets("report"),
    description="Rebuild the report from every evaluation in the lake.",
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


@dg.op(description="Register the experiment's models as partitions and submit one backfill "
                   "of its datasets, models, evaluations and report to the run queue.")
def submit_experiment(context: dg.OpExecutionContext, config: LaunchConfig) -> None:
    from pipelines.launch import submit

    experiment = config.experiment()  # every model's config validated before anything runs
    backfill_id = submit(context.instance, experiment, config.models_dir)
    context.log.info(f"backfill {backfill_id}: {len(experiment.datasets)} task datasets, "
                     f"{len(experiment.models)} models and the report, queued (the Overview "
                     "page's Backfills tab follows it)")


@dg.job(description="An experiment (a reproduction preset, or a grid of models) as runs of "
                    "the instance's queue: one per task dataset, one per model, the report.")
def launch_experiment():
    submit_experiment()


JOBS = [build_datasets, check_datasets, train_and_evaluate, refresh_report, launch_experiment,
        random_baselines, maintain_lake]
