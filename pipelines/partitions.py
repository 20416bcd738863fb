"""One static partition per catalogue task (`env/scenario`), shared by every per-task asset."""

import dagster as dg

from lake_schema.catalogue import task_names

task_partitions = dg.StaticPartitionsDefinition(task_names())
