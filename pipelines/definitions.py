"""The one code location: `dagster dev -m pipelines.definitions` (or `make ui`).

Asset groups follow the data flow: online (Sable per task, recorded into the lake) -> lake
(random baselines, the state of every task dataset, each task's dataset card) -> offline
(models trained on the lake, evaluated on train and held-out tasks) -> reports.
"""

import warnings

import dagster as dg

with warnings.catch_warnings():
    # Dagster calls partitioned asset checks (`online_checks`, one per task) a preview and
    # says so on every load of the code location, the first thing `dagster dev` shows a
    # newcomer; the checks need the feature, so that one warning is not shown.
    warnings.filterwarnings("ignore", category=dg.PreviewWarning,
                            message="Specifying a partitions_def on an AssetCheckSpec")
    # Likewise the beta `backfill_policy` of the per-task assets, which orders a backfill's
    # dataset runs (`pipelines.partitions.DATASET_RUNS`).
    warnings.filterwarnings("ignore", category=dg.BetaWarning,
                            message="Parameter `backfill_policy`")
    from pipelines.assets.baselines import random_rollouts
    from pipelines.assets.card import dataset_card
    from pipelines.assets.offline import (
        offline_checks,
        offline_eval_test,
        offline_eval_train,
        offline_model,
    )
    from pipelines.assets.online import online_checks, online_sable
    from pipelines.assets.report import report
    from pipelines.assets.status import dataset_status
    from pipelines.jobs import JOBS
    from pipelines.resources import default_resources

defs = dg.Definitions(
    assets=[random_rollouts, online_sable, dataset_status, dataset_card, offline_model,
            offline_eval_train, offline_eval_test, report],
    asset_checks=[*online_checks, *offline_checks],
    jobs=JOBS,
    resources=default_resources(),
    # A run's steps (an asset, each of its checks) run one after another in the run's own
    # process: the multiprocess executor would start a Python process per step (an online
    # run's seven checks: seven imports of the project, 10-20 s each on 2 busy cores), and
    # the runs themselves are what the queue runs side by side.
    executor=dg.in_process_executor,
)
