"""The two partitionings of the pipeline: one static partition per catalogue task
(`env/scenario`), shared by every per-task asset, and one dynamic partition per offline model
(its config id), shared by the model and its evaluations. Models are added to
`model_partitions` when an experiment is planned (`pipelines.launch`)."""

import dagster as dg

from lake_schema.catalogue import task_names

task_partitions = dg.StaticPartitionsDefinition(task_names())
model_partitions = dg.DynamicPartitionsDefinition(name="model")
