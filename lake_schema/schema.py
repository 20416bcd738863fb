"""Arrow schemas, the schema version and the partition layout of every lake table.

Each table is a Delta table under the lake root, hive-partitioned (`env=lbf/task=8x8-2p-2f/
...`), zstd Parquet underneath. `steps` is one Delta table per environment (`steps/lbf`),
because observation widths and dtypes differ by environment; the others are one table each.
Partition columns live in the path and the Delta log, not in the Parquet files, so any
standard reader (Delta or hive-partitioned Parquet) recovers them.

Every column, file or partition, says what it means here and only here: its Arrow field
carries `{"description": ...}`, and a list column its shape (`{"shape": "[N][F]"}`: N agents,
F observation features, A actions, K sampled agent-steps, a number where the length is
fixed); both go into the Delta schema (a table created since) and into every Parquet file
written since. `describe_table` and `python -m lake_schema schema TABLE` print them; the
README's table of tables names every table's partitions and columns, in order, with the
shapes of its list columns (tests/test_readme.py checks it against `describe_table`).
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
DESCRIPTION = "description"  # the field-metadata key of a column's one-line meaning
SHAPE = "shape"  # the field-metadata key of a list column's shape, one [dim] per list level
_DIM = re.compile(r"\[([^\[\]]+)\]")


def _list_sizes(t: pa.DataType) -> list[int | None]:
    """The list levels of a type, outermost first: the fixed size of each, or None."""
    sizes = []
    while pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        sizes.append(t.list_size if pa.types.is_fixed_size_list(t) else None)
        t = t.value_type
    return sizes


def _f(name: str, type_: pa.DataType, description: str, dims: str = "") -> pa.Field:
    """A column with its meaning, and a list column with its shape `dims` (one [dim] per
    list level), in the field metadata (Delta schema and Parquet files)."""
    if len(_DIM.findall(dims)) != len(_list_sizes(type_)):
        raise ValueError(f"column {name}: shape {dims!r} does not match type {type_}")
    return pa.field(name, type_, metadata={DESCRIPTION: description} | (
        {SHAPE: dims} if dims else {}))


def description(field: pa.Field) -> str:
    """A column's one-line meaning ("" for a field without one, e.g. from an older file)."""
    return (field.metadata or {}).get(DESCRIPTION.encode(), b"").decode()


def shape(field: pa.Field) -> str:
    """A list column's shape, e.g. `[N][F]` ("" for other columns and older files)."""
    return (field.metadata or {}).get(SHAPE.encode(), b"").decode()


# The partition columns: in the path (`env=lbf/...`) and the Delta log, not in the files.
PARTITION_DESCRIPTIONS = {
    "env": "environment: lbf, rware or connector (steps: one Delta table each, steps/lbf ...)",
    "task": "the task's scenario within its env, e.g. 8x8-2p-2f (catalogue name env/task)",
    "run": "the run that recorded the data: online Sable (sable-seed0) or an import",
    "quality": "low: recorded in the first two thirds of online training; high: the last third",
    "checkpoint": "index of the online checkpoint the episodes were recorded at, from 0",
    "model": "the offline model's config id, env-algorithm-hash such as lbf-bc-0123456789ab "
             "(its folder in models/)",
}
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

    def partition_fields(self) -> list[pa.Field]:
        """The partition columns as fields, with their meanings."""
        return [_f(p, t, PARTITION_DESCRIPTIONS[p]) for p, t in self.partition_types().items()]

    def full_schema(self) -> pa.Schema:
        """File columns followed by partition columns: what a reader returns."""
        return pa.schema(list(self.schema) + self.partition_fields())

    @property
    def delta_partitions(self) -> tuple[str, ...]:
        """Partition columns of the Delta table: `steps` is one table per env, so no env."""
        return tuple(p for p in self.partitions if not (self.name == "steps" and p == "env"))

    def key_predicate(self, values: dict[str, object]) -> str:
        """The Delta predicate selecting one write key's rows."""
        return equals_predicate({p: values[p] for p in self.key if p in self.delta_partitions})

    def key_name(self, values: dict[str, object]) -> str:
        """A write key as people read it: `steps env=lbf/task=.../checkpoint=3`."""
        return f"{self.name} " + "/".join(f"{p}={values[p]}" for p in self.key)


def sql_literal(value: object) -> str:
    """`value` as a SQL literal for a Delta predicate: an int as digits, a string quoted with
    its quotes doubled, so no value can change the predicate's meaning (`x' OR '1'='1` is
    one string); anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LakeValueError(f"cannot select rows by {value!r}: a predicate value is an int "
                             "or a string")
    if isinstance(value, int):
        return str(int(value))
    if "\x00" in value:
        raise LakeValueError(f"cannot select rows by {value!r}: it holds a NUL character")
    return "'" + value.replace("'", "''") + "'"


def equals_predicate(values: dict[str, object]) -> str:
    """`"col" = literal AND ...`: the Delta predicate selecting rows with these values."""
    return " AND ".join(f'"{c}" = {sql_literal(v)}' for c, v in values.items())


def obs_type(env: str) -> pa.DataType:
    spec = ENVS[env]
    return pa.list_(pa.list_(pa.from_numpy_dtype(spec.obs_dtype), spec.obs_width))


def legal_type(env: str) -> pa.DataType:
    return pa.list_(pa.list_(pa.bool_(), ENVS[env].num_actions))


def _per_env(what, sep: str = ": ", join: str = "; ") -> str:
    return join.join(f"{e}{sep}{what(s)}" for e, s in ENVS.items())


# The meaning of a steps column does not depend on the env (its type does: obs, legal).
_STEPS_DESCRIPTIONS = {
    "episode": "the episode's index within its checkpoint (from 0); with env, task, run and "
               "checkpoint it is the episode key",
    "step": "the step's index within its episode (from 0)",
    "num_agents": "N, the task's number of agents: the length of every per-agent list",
    "obs": "each agent's observation when it chose this step's action, in the env's "
           "own dtype (F and dtype: "
           + _per_env(lambda s: f"{s.obs_width} {s.obs_dtype}", " ", ", ") + ")",
    "action": "each agent's action, an index into the env's A actions (A: "
              + _per_env(lambda s: str(s.num_actions), " ", ", ") + ")",
    "legal": "which actions each agent could take at this step (true: legal)",
    "reward": "the team reward that followed this step's joint action (" + _per_env(
        lambda s: s.team_reward) + ")",
    "terminated": "the environment ended the episode after this step (lbf: all food eaten; "
                  "rware: a collision; connector: every agent connected or blocked)",
    "truncated": "the task's time limit ended the episode after this step (termination wins "
                 "when both happen)",
}
_STEPS_SHAPES = {"obs": "[N][F]", "action": "[N]", "legal": "[N][A]"}


def steps_schema(env: str) -> pa.Schema:
    """One row per environment step; per-agent arrays as [N][F] nested lists, native dtypes.

    Row t holds the observation and legal mask the agents acted on, their actions, and the
    reward and end flags that followed; an episode's rows are step 0..length-1, the last one
    terminated or truncated.
    """
    types = {
        "episode": pa.int32(),
        "step": pa.int32(),
        "num_agents": pa.int16(),
        "obs": obs_type(env),
        "action": pa.list_(pa.int8()),
        "legal": legal_type(env),
        "reward": pa.float32(),  # team reward
        "terminated": pa.bool_(),
        "truncated": pa.bool_(),
    }
    return pa.schema([_f(n, t, _STEPS_DESCRIPTIONS[n], _STEPS_SHAPES.get(n, ""))
                      for n, t in types.items()])


EPISODES_SCHEMA = pa.schema(
    [
        _f("episode", pa.int32(), "the episode's index within its checkpoint, as in steps: "
                                  "(env, task, run, checkpoint, episode) is the episode key"),
        _f("length", pa.int32(), "its number of steps (rows in steps)"),
        _f("return", pa.float64(), "the sum of its team rewards (undiscounted)"),
        _f("num_agents", pa.int16(), "N, the task's number of agents"),
        _f("terminated", pa.bool_(), "the environment ended it (its last step is terminated)"),
        _f("truncated", pa.bool_(), "the time limit ended it (its last step is truncated)"),
        _f("env_steps", pa.int64(), "online env steps trained when its checkpoint was "
                                    "recorded (0 for imported data)"),
        _f("steps_file", pa.string(), "the steps file holding its rows, relative to the lake "
                                      "root"),
        _f("first_row", pa.int64(), "the row of its step 0 in steps_file; its rows are "
                                    "first_row .. first_row + length - 1"),
        _f("recorded_at", pa.timestamp("ms", tz="UTC"), "when its checkpoint was written"),
        _f("reset_key", pa.list_(pa.int64(), 2), "the JAX PRNG key (two uint32 words) "
           "passed to the environment's reset that began it: with its stored actions, the "
           "real environment reproduces it (`python -m trainer.replay`); null: not "
           "replayable (imported data, or recorded before the column)", "[2]"),
    ]
)

REFERENCES_SCHEMA = pa.schema(
    [
        _f("sable_return", pa.float64(), "online Sable's mean return on the task at the end of "
                                         "training: the normalisation constant"),
        _f("sable_return_std", pa.float64(), "the standard deviation of those returns"),
        _f("sable_episodes", pa.int32(), "how many episodes sable_return averages"),
        _f("random_return", pa.float64(), "the mean return of uniformly random legal actions"),
        _f("random_return_std", pa.float64(), "the standard deviation of those returns"),
        _f("random_episodes", pa.int32(), "how many episodes random_return averages"),
        _f("env_steps", pa.int64(), "online env steps trained by the policy of sable_return"),
        _f("recorded_at", pa.timestamp("ms", tz="UTC"), "when the row was written"),
    ]
)

EVALUATIONS_SCHEMA = pa.schema(
    [
        _f("algorithm", pa.string(), "the offline algorithm: bc, cql or oryx"),
        _f("split", pa.string(), "train: the model was trained on this task; test: held out "
                                 "(zero-shot)"),
        _f("update", pa.int64(), "the training update of the checkpoint evaluated"),
        _f("episodes", pa.int32(), "evaluation episodes run on the task"),
        _f("mean_return", pa.float64(), "the mean episode return"),
        _f("std_return", pa.float64(), "the standard deviation of the episode returns"),
        _f("normalised_return", pa.float64(), "mean_return / reference_return (the paper's); "
           "where reference_return <= 0, (mean_return - random) / (reference_return - random) "
           "with the task's references.random_return: 0 = random, 1 = online Sable"),
        _f("reference_return", pa.float64(), "the task's online Sable return it is normalised "
                                             "by (references.sable_return)"),
        _f("config", pa.string(), "JSON: the model's config id, OfflineConfig, DataSelection, "
                                  "training tasks and evaluation settings"),
        _f("evaluated_at", pa.timestamp("ms", tz="UTC"), "when the evaluation ran"),
        _f("data_versions", pa.string(), "JSON {table id: version}: the lake table versions "
                                         "the model was trained on"),
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
        _f("steps_file", pa.string(), "the steps file it summarises: the card is current while "
                                      "its checkpoint's steps are this file"),
        _f("episodes", pa.int32(), "episodes recorded at this checkpoint"),
        _f("steps", pa.int64(), "steps (rows of steps) recorded at this checkpoint"),
        _f("num_agents", pa.int16(), "N, the task's number of agents"),
        _f("env_steps", pa.int64(), "online env steps trained when the checkpoint was recorded"),
        _f("return_mean", pa.float64(), "mean episode return"),
        _f("return_m2", pa.float64(), "sum of squared deviations of the episode returns "
                                      "(mergeable across checkpoints: Chan et al.)"),
        _f("return_min", pa.float64(), "lowest episode return"),
        _f("return_max", pa.float64(), "highest episode return"),
        _f("return_quantiles", pa.list_(pa.float64()), "episode-return quantiles at "
           "CARD_QUANTILES (5/25/50/75/95%)", f"[{len(CARD_QUANTILES)}]"),
        _f("obs_count", pa.int64(), "agent-steps the observation statistics cover: steps x N"),
        _f("obs_mean", pa.list_(pa.float64()), "per-feature mean of the observations", "[F]"),
        _f("obs_m2", pa.list_(pa.float64()), "per-feature sum of squared deviations "
                                             "(mergeable; std = sqrt(m2 / count))", "[F]"),
        _f("obs_min", pa.list_(pa.float64()), "per-feature minimum", "[F]"),
        _f("obs_max", pa.list_(pa.float64()), "per-feature maximum", "[F]"),
        _f("obs_sample", pa.list_(pa.list_(pa.float32())), "a uniform sample of K <= "
           f"CARD_SAMPLE ({CARD_SAMPLE}) agent-step observations (for quantiles)", "[K][F]"),
        _f("action_counts", pa.list_(pa.list_(pa.int64())), "how often each agent slot took "
                                                            "each action", "[N][A]"),
        _f("config", pa.string(), "what produced the rows (the online config), JSON; null "
                                  "when unknown"),
        _f("code_version", pa.string(), "the sable-lake version and git commit that wrote them"),
        _f("written_at", pa.timestamp("ms", tz="UTC"), "when the card was written (UTC)"),
        _f("rtg_outside_support", pa.float64(),
           "share of its steps whose discounted return-to-go (gamma 0.99, to the episode's "
           "end) lies outside the env's HL-Gauss value support ("
           + _per_env(lambda s: f"[{s.value_support[0]:g}, {s.value_support[1]:g}]", " ", ", ")
           + "); null: not computed (a card written before the column)"),
    ]
)

# Columns added to a table after lakes were written without them. A file written before
# lacks them and reads them as null ("not computed"); a table created before gains them in
# its Delta schema on its next write (`delta.ensure_table`: Delta's ADD COLUMN, a metadata
# commit: old files stay as they are, Delta readers give null for them too). How a value is
# filled in later, if it can be: `python -m lake_schema migrate` (cards: `card --backfill`);
# an episode's reset_key cannot be (the rows do not determine it): it stays null, not
# replayable. An added column keeps SCHEMA_VERSION: this code reads the tables written
# before it (as null), and older code refuses the newer files by their unexpected column.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"cards": ("rtg_outside_support",),
                                             "episodes": ("reset_key",)}

# Columns a record may leave out (written as null).
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"evaluations": ("data_versions",),
                                                "cards": ("config", "code_version")}

_STEP_PARTS = ("env", "task", "run", "quality", "checkpoint")
_STEP_KEY = ("env", "task", "run", "checkpoint")

# table -> the columns that identify one row (unique within the table)
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "steps": (*_STEP_KEY, "episode", "step"),
    "episodes": (*_STEP_KEY, "episode"),
    "references": ("env", "task", "run"),
    "evaluations": ("env", "task", "model", "update", "episodes"),
    "cards": _STEP_KEY,  # one row per recorded checkpoint
}

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


# ---------------------------------------------------------------- describing the tables


@dataclass(frozen=True)
class ColumnDoc:
    """One column as people read it: its type written with its shape, e.g. `int8 [N][F=75]`,
    and the shape alone (`[N][F]`; "" for a column that is no list)."""

    name: str
    type: str
    shape: str
    partition: bool
    description: str


@dataclass(frozen=True)
class TableDoc:
    """A table's columns (file columns, then partition columns) and its keys."""

    name: str
    table_ids: tuple[str, ...]  # its Delta tables: steps/<env> for steps
    partitions: tuple[str, ...]
    write_key: tuple[str, ...]  # a write replaces every row of its key
    row_key: tuple[str, ...]  # unique per row
    columns: tuple[ColumnDoc, ...]


def type_name(field: pa.Field) -> str:
    """A column's type with its shape (`shape(field)`): `list<fixed_size_list<int8, 75>>`
    of shape [N][F] reads `int8 [N][F=75]`, a list of shape [F] `float64 [F]`; a fixed
    size the shape does not name is its number, a length nothing declares `[?]`."""
    t = field.type
    sizes = _list_sizes(t)
    names = _DIM.findall(shape(field))
    if len(names) != len(sizes):
        names = [""] * len(sizes)
    dims = []
    for name, size in zip(names, sizes, strict=True):
        if size is None:
            dims.append(f"[{name or '?'}]")
        elif name and name != str(size):
            dims.append(f"[{name}={size}]")
        else:
            dims.append(f"[{size}]")
        t = t.value_type
    if pa.types.is_timestamp(t):
        base = f"timestamp[{t.unit}, {t.tz}]" if t.tz else f"timestamp[{t.unit}]"
    else:
        base = {"float": "float32", "double": "float64", "halffloat": "float16"}.get(
            str(t), str(t))
    return f"{base} {''.join(dims)}" if dims else base


def describe_table(table: str) -> TableDoc:
    """Every column of `table` with its type and meaning, plus its partitions and keys.

    `steps` or `steps/<env>`: bare `steps` gives each env's type where they differ (obs,
    legal), `steps/<env>` that env's. Unknown names are a LakeValueError listing the tables.
    """
    name, _, env = table.partition("/")
    if name == "steps" and env:
        env_spec(env)  # an unknown env is an UnknownTaskError naming it
    check_table(name)
    envs = ([env] if env else list(ENVS)) if name == "steps" else [None]
    specs = [table_spec(name, e) for e in envs]
    columns = []
    for i, field in enumerate(specs[0].full_schema()):
        types = [type_name(s.full_schema().field(i)) for s in specs]
        if len(set(types)) > 1:
            text = "; ".join(f"{e}: {t}" for e, t in zip(envs, types, strict=True))
        else:
            text = types[0]
        columns.append(ColumnDoc(field.name, text, shape(field),
                                 field.name in specs[0].partitions, description(field)))
    ids = tuple(f"steps/{e}" for e in envs) if name == "steps" else (name,)
    return TableDoc(name, ids, specs[0].partitions, specs[0].key, ROW_KEYS[name],
                    tuple(columns))
