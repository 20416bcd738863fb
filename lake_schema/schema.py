"""Arrow schemas, the schema version and the partition layout of every lake table.

Each table is a Delta table under the lake root, hive-partitioned (`env=lbf/task=8x8-2p-2f/
...`), zstd Parquet underneath. `steps` is one Delta table per environment (`steps/lbf`),
because observation widths and dtypes differ by environment; the others are one table each.
Partition columns live in the path and the Delta log, not in the Parquet files, so any
standard reader (Delta or hive-partitioned Parquet) recovers them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from lake_schema.catalogue import ENVS, env_spec, get_task
from lake_schema.errors import LakeValueError

# 2: Delta tables (1 was plain Parquet files with a staging journal; `migrate` converts).
SCHEMA_VERSION = "2"
META_VERSION = b"sable_lake.schema_version"  # key in a Delta table's description (JSON)
META_TABLE = b"sable_lake.table"
LEGACY_VERSION = "1"
DATA_FILE = "data.parquet"  # the file name of the pre-Delta layout (read by `migrate` only)
INT32_MAX = 2**31 - 1

QUALITIES = ("low", "high")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # matched whole (re.fullmatch)


def quality_for_checkpoint(checkpoint: int, num_checkpoints: int) -> str:
    """Paper, appendix D: the first two thirds of training are `low`, the final third `high`.

    Checkpoint k of K sits at fraction (k + 1) / K of the budget.
    """
    if num_checkpoints < 1 or not 0 <= checkpoint < num_checkpoints:
        raise LakeValueError(
            f"checkpoint {checkpoint} is outside 0..{num_checkpoints - 1} "
            f"(num_checkpoints={num_checkpoints})"
        )
    return "low" if 3 * (checkpoint + 1) <= 2 * num_checkpoints else "high"


@dataclass(frozen=True)
class TableSpec:
    """A table: its file columns, its partition keys (in path order) and its write key.

    The write key is the subset of partition keys that identifies one write; a new write of
    the same key replaces every file matching it, whatever its other partition values.
    """

    name: str
    schema: pa.Schema
    partitions: tuple[str, ...]
    key: tuple[str, ...]

    def partition_types(self) -> dict[str, pa.DataType]:
        return {p: (pa.int32() if p == "checkpoint" else pa.string()) for p in self.partitions}

    def full_schema(self) -> pa.Schema:
        """File columns followed by partition columns: what a reader returns."""
        extra = [pa.field(p, t) for p, t in self.partition_types().items()]
        return pa.schema(list(self.schema) + extra)

    @property
    def delta_partitions(self) -> tuple[str, ...]:
        """Partition columns of the Delta table: `steps` is one table per env, so no env."""
        return tuple(p for p in self.partitions if not (self.name == "steps" and p == "env"))

    def key_predicate(self, values: dict[str, object]) -> str:
        """The Delta predicate selecting one write key's rows (values already validated)."""
        return " AND ".join(
            f"{p} = {values[p]}" if p == "checkpoint" else f"{p} = '{values[p]}'"
            for p in self.key if p in self.delta_partitions
        )

    def key_name(self, values: dict[str, object]) -> str:
        """A write key as people read it: `steps env=lbf/task=.../checkpoint=3`."""
        return f"{self.name} " + "/".join(f"{p}={values[p]}" for p in self.key)


def obs_type(env: str) -> pa.DataType:
    spec = ENVS[env]
    return pa.list_(pa.list_(pa.from_numpy_dtype(spec.obs_dtype), spec.obs_width))


def legal_type(env: str) -> pa.DataType:
    return pa.list_(pa.list_(pa.bool_(), ENVS[env].num_actions))


def steps_schema(env: str) -> pa.Schema:
    """One row per environment step; per-agent arrays as [N][F] nested lists, native dtypes."""
    return pa.schema(
        [
            ("episode", pa.int32()),  # index within its (run, checkpoint) write
            ("step", pa.int32()),
            ("num_agents", pa.int16()),
            ("obs", obs_type(env)),  # [N][obs_width]
            ("action", pa.list_(pa.int8())),  # [N]
            ("legal", legal_type(env)),  # [N][num_actions]
            ("reward", pa.float32()),  # team reward
            ("terminated", pa.bool_()),
            ("truncated", pa.bool_()),
        ]
    )


EPISODES_SCHEMA = pa.schema(
    [
        ("episode", pa.int32()),
        ("length", pa.int32()),
        ("return", pa.float64()),
        ("num_agents", pa.int16()),
        ("terminated", pa.bool_()),
        ("truncated", pa.bool_()),
        ("env_steps", pa.int64()),  # online env steps when this checkpoint was recorded
        ("steps_file", pa.string()),  # where its rows are: path relative to the lake root
        ("first_row", pa.int64()),  # row offset of its first step inside steps_file
        ("recorded_at", pa.timestamp("ms", tz="UTC")),
    ]
)

REFERENCES_SCHEMA = pa.schema(
    [
        ("sable_return", pa.float64()),  # online Sable final return: the normalisation constant
        ("sable_return_std", pa.float64()),
        ("sable_episodes", pa.int32()),
        ("random_return", pa.float64()),
        ("random_return_std", pa.float64()),
        ("random_episodes", pa.int32()),
        ("env_steps", pa.int64()),
        ("recorded_at", pa.timestamp("ms", tz="UTC")),
    ]
)

EVALUATIONS_SCHEMA = pa.schema(
    [
        ("algorithm", pa.string()),
        ("split", pa.string()),  # train or test: the task's role for this model
        ("update", pa.int64()),  # the checkpoint (training update) evaluated
        ("episodes", pa.int32()),
        ("mean_return", pa.float64()),
        ("std_return", pa.float64()),
        ("normalised_return", pa.float64()),
        ("reference_return", pa.float64()),
        ("config", pa.string()),  # the model's config, JSON
        ("evaluated_at", pa.timestamp("ms", tz="UTC")),
        # the lake table versions the model was trained on, JSON {table id: version}
        ("data_versions", pa.string()),
    ]
)
# A checkpoint's dataset card (`lake_schema.cards`): computed from its rows when they are
# written, replaced with them. Moments are mergeable (count, mean, M2), so the card of any
# set of checkpoints is exact; quantiles are exact per checkpoint for returns and come from
# a uniform sample of at most CARD_SAMPLE agent-steps for observations.
CARD_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
CARD_SAMPLE = 1024
CARDS_SCHEMA = pa.schema(
    [
        # the steps file it summarises: the card is current while the key's steps are this file
        ("steps_file", pa.string()),
        ("episodes", pa.int32()),
        ("steps", pa.int64()),
        ("num_agents", pa.int16()),
        ("env_steps", pa.int64()),
        ("return_mean", pa.float64()),
        ("return_m2", pa.float64()),  # sum of squared deviations (mergeable)
        ("return_min", pa.float64()),
        ("return_max", pa.float64()),
        ("return_quantiles", pa.list_(pa.float64())),  # at CARD_QUANTILES
        ("obs_count", pa.int64()),  # agent-steps: steps x num_agents
        ("obs_mean", pa.list_(pa.float64())),  # [F]
        ("obs_m2", pa.list_(pa.float64())),  # [F]
        ("obs_min", pa.list_(pa.float64())),  # [F]
        ("obs_max", pa.list_(pa.float64())),  # [F]
        ("obs_sample", pa.list_(pa.list_(pa.float32()))),  # [K <= CARD_SAMPLE][F], uniform
        ("action_counts", pa.list_(pa.list_(pa.int64()))),  # [N agent slots][A actions]
        ("config", pa.string()),  # what produced the rows (the online config), JSON
        ("code_version", pa.string()),  # sable-lake version and git commit that wrote them
        ("written_at", pa.timestamp("ms", tz="UTC")),
    ]
)

# Columns a record may leave out (written as null).
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"evaluations": ("data_versions",),
                                                "cards": ("config", "code_version")}

_STEP_PARTS = ("env", "task", "run", "quality", "checkpoint")
_STEP_KEY = ("env", "task", "run", "checkpoint")

# table -> (partition keys in path order, write key)
LAYOUT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "steps": (_STEP_PARTS, _STEP_KEY),
    "episodes": (_STEP_PARTS, _STEP_KEY),
    "references": (("env", "task", "run"), ("env", "task", "run")),
    "evaluations": (("env", "task", "model"), ("env", "task", "model")),
    "cards": (_STEP_PARTS, _STEP_KEY),
}
TABLES = tuple(LAYOUT)
_SCHEMAS = {
    "episodes": EPISODES_SCHEMA,
    "references": REFERENCES_SCHEMA,
    "evaluations": EVALUATIONS_SCHEMA,
    "cards": CARDS_SCHEMA,
}


def check_table(table: str) -> str:
    if table not in LAYOUT:
        raise LakeValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    return table


def table_spec(table: str, env: str | None = None) -> TableSpec:
    """The spec of `table`; `steps` needs the env, since observation widths differ."""
    partitions, key = LAYOUT[check_table(table)]
    if table == "steps":
        if env is None:
            raise LakeValueError("the steps table's schema depends on the env: pass env=")
        return TableSpec(table, steps_schema(env), partitions, key)
    return TableSpec(table, _SCHEMAS[table], partitions, key)


def validate_partition(table: str, values: dict[str, object]) -> dict[str, object]:
    """Check partition values against the catalogue and the allowed tags; returns them clean."""
    partitions, _ = LAYOUT[check_table(table)]
    unknown = set(values) - set(partitions)
    if unknown:
        raise LakeValueError(f"{table}: unknown partition key(s) {sorted(unknown)}")
    out = dict(values)
    if "task" in values:
        if "env" not in values:
            raise LakeValueError(f"{table}: task {values['task']!r} given without its env")
        get_task(f"{values['env']}/{values['task']}")
    elif "env" in values:
        env_spec(str(values["env"]))
    if "quality" in values and values["quality"] not in QUALITIES:
        raise LakeValueError(f"bad quality tag {values['quality']!r}; allowed: {QUALITIES}")
    if "checkpoint" in values:
        ck = values["checkpoint"]
        if isinstance(ck, bool) or not isinstance(ck, int) or not 0 <= ck <= INT32_MAX:
            raise LakeValueError(f"bad checkpoint {ck!r}: an integer in 0..{INT32_MAX} (int32)")
    for key in ("run", "model"):
        if key in values and not (
            isinstance(values[key], str) and _RUN_ID.fullmatch(values[key])
        ):
            raise LakeValueError(
                f"bad {key} id {values[key]!r}: 1-128 of [A-Za-z0-9._-], starting alphanumeric"
            )
    return out
