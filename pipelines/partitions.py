"""The two partitionings of the pipeline, and what a model's runs wait for.

One static partition per catalogue task (`env/scenario`), shared by every per-task asset, and
one dynamic partition per offline model (its config id), shared by the model and its
evaluations. Models are added to `model_partitions` when an experiment is planned
(`pipelines.launch`).

What a model waits for, within a backfill (`DATASETS_FOR_TRAINING`, `DATASETS_FOR_HELD_OUT`):
a model and its evaluation on its training tasks wait for the datasets of the tasks that a
split trains on; its held-out evaluation waits for those of the held-out splits. So a model
starts as soon as its training data is in, while the held-out datasets are still being
recorded (Dagster's partition mappings are static, so the split is the catalogue's, not the
model's: `pipelines.launch.submit` refuses an experiment whose model would not wait for a
dataset it reads).

In what order a backfill records datasets (`DATASET_RUNS`): one run per task, created in
catalogue order, each environment's training tasks before its held-out ones, so the models
can start early. (Without a backfill policy, Dagster creates a backfill's runs in the
lexicographic order of their partition keys: `lbf/8x8-2p-2f` last.)
"""

import dagster as dg

from lake_schema.catalogue import DEMO_SPLITS, PAPER_SPLITS, TASKS, splits_of, task_names

task_partitions = dg.StaticPartitionsDefinition(task_names())
model_partitions = dg.DynamicPartitionsDefinition(name="model")


def _in_splits(splits: set[str]) -> list[str]:
    return [name for name, task in TASKS.items() if splits & set(splits_of(task))]


# Tasks some split trains on (`train`, `demo-train`), and tasks some split holds out (`test`,
# `demo-test`); a task can be both (connector's demo holds out two paper training grids).
TRAINING_TASKS = _in_splits({PAPER_SPLITS[0], DEMO_SPLITS[0]})
HELD_OUT_TASKS = _in_splits({PAPER_SPLITS[1], DEMO_SPLITS[1]})

DATASETS_FOR_TRAINING = dg.AssetDep(
    "online_sable", partition_mapping=dg.SpecificPartitionsPartitionMapping(TRAINING_TASKS))
DATASETS_FOR_HELD_OUT = dg.AssetDep(
    "online_sable", partition_mapping=dg.SpecificPartitionsPartitionMapping(HELD_OUT_TASKS))

DATASET_RUNS = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
