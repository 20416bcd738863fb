"""Writing to the lake: validated Delta transactions that replace one key each.

Everything is checked (catalogue names, tags, shapes, dtypes, episode structure, finite
numbers) before the first byte is written, so bad input never leaves anything behind. Each
table's write is one Delta commit replacing the key's rows by predicate. A checkpoint's
`steps` commit precedes its `episodes` commit (the index that points at the steps file);
concurrent writers of one key: one whole write stands, the others raise LakeConflictError
naming the key.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lake_schema import delta
from lake_schema.catalogue import Task, get_task
from lake_schema.delta import DataFile
from lake_schema.errors import LakeConflictError, LakeFileError, LakeValueError
from lake_schema.schema import (
    OPTIONAL_COLUMNS,
    TableSpec,
    table_spec,
    validate_partition,
)
from lake_schema.storage import Lake


@dataclass(frozen=True)
class EpisodeBatch:
    """Whole episodes stored back to back: row s is one environment step.

    obs [S, N, F], action [S, N] int, legal [S, N, A] bool, reward [S] team reward,
    terminated / truncated [S] bool (set on an episode's last step only), lengths [E].
    """

    obs: np.ndarray
    action: np.ndarray
    legal: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    lengths: np.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.reward.shape[0])

    def episode_returns(self) -> np.ndarray:
        starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        return np.add.reduceat(self.reward.astype(np.float64), starts)


@dataclass(frozen=True)
class WriteResult:
    files: tuple[str, ...]  # root-relative paths of the key's files after the commit
    rows: int
    bytes: int


def _check_episode_batch(task: Task, b: EpisodeBatch) -> np.ndarray:
    """Validate a batch against its task; returns the observations in the lake's dtype."""
    spec = task.spec
    s, n, f, a = b.num_steps, task.num_agents, spec.obs_width, spec.num_actions
    expected = {
        "obs": (b.obs, (s, n, f)),
        "action": (b.action, (s, n)),
        "legal": (b.legal, (s, n, a)),
        "reward": (b.reward, (s,)),
        "terminated": (b.terminated, (s,)),
        "truncated": (b.truncated, (s,)),
    }
    for name, (arr, shape) in expected.items():
        if arr.shape != shape:
            raise LakeValueError(
                f"{task.name}: {name} has shape {arr.shape}, expected {shape} "
                f"(steps={s}, agents={n}, obs_width={f}, actions={a})"
            )
    lengths = np.asarray(b.lengths)
    if s == 0 or lengths.ndim != 1 or (lengths <= 0).any() or lengths.sum() != s:
        raise LakeValueError(
            f"{task.name}: episode lengths must be positive and sum to the {s} steps"
        )
    if not np.issubdtype(b.action.dtype, np.integer) or b.action.min() < 0 or (
        b.action.max() >= a
    ):
        raise LakeValueError(f"{task.name}: actions must be integers in [0, {a})")
    if b.legal.dtype != np.bool_:
        raise LakeValueError(f"{task.name}: legal must be bool, got {b.legal.dtype}")
    if not np.take_along_axis(b.legal, b.action[..., None].astype(np.int64), -1).all():
        raise LakeValueError(f"{task.name}: a recorded action is not legal in its step")
    if not np.isfinite(b.reward).all():
        raise LakeValueError(f"{task.name}: reward has NaN or inf")
    last = np.zeros(s, bool)
    last[np.cumsum(lengths) - 1] = True
    done = b.terminated.astype(bool) | b.truncated.astype(bool)
    if (done != last).any():
        raise LakeValueError(
            f"{task.name}: every episode must end with terminated or truncated on its last "
            "step and nowhere else"
        )
    return _narrow(task, b.obs)


def _narrow(task: Task, obs: np.ndarray) -> np.ndarray:
    """Cast observations to the lake's native dtype, refusing values it cannot hold."""
    dtype = np.dtype(task.spec.obs_dtype)
    if np.issubdtype(dtype, np.integer):
        if not np.issubdtype(obs.dtype, np.integer):
            raise LakeValueError(f"{task.name}: obs must be integers, got {obs.dtype}")
        info = np.iinfo(dtype)
        if obs.size and (obs.min() < info.min or obs.max() > info.max):
            raise LakeValueError(
                f"{task.name}: obs values [{obs.min()}, {obs.max()}] do not fit {dtype}"
            )
    elif not np.isfinite(obs).all():
        raise LakeValueError(f"{task.name}: obs has NaN or inf")
    return obs.astype(dtype, copy=False)


def _nested(flat: np.ndarray, rows: int, per_row: int, width: int) -> pa.Array:
    """[rows, per_row, width] numpy -> list<fixed_size_list<width>> without copying values."""
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), width)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * per_row)
    return pa.ListArray.from_arrays(offsets, inner)


def _with_partition(table: pa.Table, spec: TableSpec, values: dict[str, object]) -> pa.Table:
    """`table` (the file columns) plus the Delta table's partition columns, constant."""
    types = spec.partition_types()
    for p in spec.delta_partitions:
        table = table.append_column(p, pa.repeat(pa.scalar(values[p], types[p]), len(table)))
    return table


def _steps_file_of(dt, tid: str, values: dict[str, object]) -> DataFile:
    files = delta.key_files(dt, tid, values)
    if len(files) != 1:  # one write of one key is one file (ONE_FILE target size)
        raise LakeFileError(tid, f"expected one file for {values} after the commit, the log "
                                 f"has {len(files)}")
    return files[0]


def _check_still_ours(lake: Lake, steps_tid: str, values: dict[str, object], mine: str,
                      key: str) -> None:
    """The steps of `key` in the current steps table must be the file this write added;
    otherwise a concurrent writer of the same key replaced them after us and its write is
    the one that stands (it commits the episodes index after its steps)."""
    dt = delta.open_table(lake, steps_tid)
    now = [f.rel for f in delta.key_files(dt, steps_tid, values)] if dt is not None else []
    if now != [mine]:
        raise LakeConflictError(
            key, "another writer replaced this key's steps concurrently; its write won "
                 "and this one's data is not in the lake (write it again to replace it)")


def write_episodes(
    lake: Lake,
    task: str | Task,
    run: str,
    checkpoint: int,
    quality: str,
    batch: EpisodeBatch,
    env_steps: int = 0,
) -> WriteResult:
    """Write one checkpoint's recorded episodes (`steps` + `episodes`) as one transaction."""
    task = get_task(task) if isinstance(task, str) else task
    partition = validate_partition(
        "steps",
        {"env": task.env, "task": task.scenario, "run": run, "quality": quality,
         "checkpoint": checkpoint},
    )
    obs = _check_episode_batch(task, batch)
    s, n = batch.num_steps, task.num_agents
    spec = task.spec
    steps_spec, episodes_spec = table_spec("steps", task.env), table_spec("episodes")
    lengths = np.asarray(batch.lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    episode_of_row = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    step_of_row = (np.arange(s) - np.repeat(starts, lengths)).astype(np.int32)

    steps = pa.table(
        {
            "episode": episode_of_row,
            "step": step_of_row,
            "num_agents": np.full(s, n, np.int16),
            "obs": _nested(obs, s, n, spec.obs_width),
            "action": pa.ListArray.from_arrays(
                pa.array(np.arange(s + 1, dtype=np.int32) * n),
                pa.array(batch.action.reshape(-1).astype(np.int8)),
            ),
            "legal": _nested(batch.legal, s, n, spec.num_actions),
            "reward": batch.reward.astype(np.float32),
            "terminated": batch.terminated.astype(bool),
            "truncated": batch.truncated.astype(bool),
        }
    )
    last = starts + lengths - 1
    now = dt.datetime.now(dt.UTC)
    episodes = pa.table(
        {
            "episode": np.arange(len(lengths), dtype=np.int32),
            "length": lengths.astype(np.int32),
            "return": batch.episode_returns(),
            "num_agents": np.full(len(lengths), n, np.int16),
            "terminated": batch.terminated[last].astype(bool),
            "truncated": batch.truncated[last].astype(bool),
            "env_steps": np.full(len(lengths), env_steps, np.int64),
            "steps_file": [""] * len(lengths),  # set once the steps commit names the file
            "first_row": starts,
            "recorded_at": pa.array([now] * len(lengths), pa.timestamp("ms", tz="UTC")),
        }
    )
    files = commit_checkpoint(lake, partition, steps.cast(steps_spec.schema),
                              episodes.cast(episodes_spec.schema))
    return WriteResult(tuple(f.rel for f in files), s, sum(f.size for f in files))


def commit_checkpoint(lake: Lake, partition: dict[str, object], steps: pa.Table,
                      episodes: pa.Table) -> list[DataFile]:
    """Commit one checkpoint's validated `steps` and its `episodes` index (their
    `steps_file` column is filled in here); returns the files the two commits added.

    Table order: steps are committed first, then the episodes index that points at them, so
    a reader going through `episodes` never meets a missing step. The index's snapshot is
    taken before the steps commit: a same-key writer that committed its index since then
    makes ours conflict instead of silently pointing the index at replaced steps; the writer
    whose steps are current retries its index, any other raises LakeConflictError.
    """
    env = str(partition["env"])
    steps_spec, episodes_spec = table_spec("steps", env), table_spec("episodes")
    steps_tid = delta.table_id("steps", env)
    key = episodes_spec.key_name(partition)
    lake.prepare_for_writing()
    index = delta.ensure_table(lake, "episodes")
    sdt = delta.replace_key(lake, steps_tid, _with_partition(steps, steps_spec, partition),
                            partition, operation=f"write {key}")
    steps_file = _steps_file_of(sdt, steps_tid, partition)
    episodes = episodes.set_column(episodes.schema.get_field_index("steps_file"), "steps_file",
                                   pa.array([steps_file.rel] * len(episodes), pa.string()))
    rows = _with_partition(episodes, episodes_spec, partition)
    for attempt in range(delta.COMMIT_RETRIES):
        try:
            edt = delta.replace_key(lake, "episodes", rows, partition, snapshot=index,
                                    operation=f"write {key}")
            break
        except Exception as e:
            if not delta.is_conflict(e):
                raise
            index = delta.ensure_table(lake, "episodes")  # fresh, before the check below
            _check_still_ours(lake, steps_tid, partition, steps_file.rel, key)
            time.sleep(0.01 * (attempt + 1))
    else:
        raise LakeConflictError(key, f"gave up after {delta.COMMIT_RETRIES} conflicting "
                                     "commits of the episodes index")
    _check_still_ours(lake, steps_tid, partition, steps_file.rel, key)
    return [steps_file, *delta.key_files(edt, "episodes", partition)]


def _check_finite(table: str, data: pa.Table, partition: dict[str, object]) -> None:
    for name in data.column_names:
        col = data[name]
        if pa.types.is_floating(col.type):
            bad = ~np.isfinite(col.to_numpy(zero_copy_only=False).astype(np.float64))
            if col.null_count:
                bad &= ~np.asarray(col.is_null().to_numpy(zero_copy_only=False))
            if bad.any():
                raise LakeValueError(f"{table}: {name} is NaN or inf for {partition}")


def write_records(
    lake: Lake, table: str, partition: dict[str, object], records: Sequence[dict],
    replace_rows: dict[str, object] | None = None,
) -> WriteResult:
    """Write small per-key tables (`references`, `evaluations`) from dict records.

    By default the key's rows are replaced; `replace_rows` (column -> value) narrows that to
    the key's rows with those values, so e.g. two evaluations of one model and task at
    different updates, written at once, both stay (the loser of the commit race retries).
    """
    if table == "steps" or table == "episodes":
        raise LakeValueError(f"{table} is written with write_episodes()")
    partition = validate_partition(table, partition)
    spec = table_spec(table)
    missing_keys = [p for p in spec.partitions if p not in partition]
    if missing_keys:
        raise LakeValueError(f"{table}: missing partition value(s) {missing_keys}")
    if not records:
        raise LakeValueError(f"{table}: nothing to write for {partition}")
    optional = OPTIONAL_COLUMNS.get(table, ())
    missing = [k for k in spec.schema.names if k not in records[0] and k not in optional]
    if missing:
        raise LakeValueError(f"{table}: record lacks column(s) {missing}")
    try:
        data = pa.Table.from_pylist([dict(r) for r in records], schema=spec.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
        raise LakeValueError(f"{table}: bad record for {partition}: {e}") from e
    _check_finite(table, data, partition)
    narrow = ""
    for col, value in (replace_rows or {}).items():
        if col not in spec.schema.names or not isinstance(value, int | str) or isinstance(
                value, bool):
            raise LakeValueError(f"{table}: cannot replace rows by {col}={value!r}")
        if any(r.get(col) != value for r in records):
            raise LakeValueError(f"{table}: every record must have {col}={value!r}")
        narrow += f' AND "{col}" = ' + (f"'{value}'" if isinstance(value, str) else str(value))
    lake.prepare_for_writing()
    key = spec.key_name(partition)
    dt = delta.replace_key(lake, table, _with_partition(data, spec, partition), partition,
                           operation=f"write {key}", extra_predicate=narrow)
    files = delta.key_files(dt, table, partition)
    return WriteResult(tuple(f.rel for f in files), len(records), sum(f.size for f in files))


def write_reference(
    lake: Lake,
    task: str | Task,
    run: str,
    *,
    sable_returns: Sequence[float],
    random_returns: Sequence[float],
    env_steps: int,
) -> WriteResult:
    """The task's normalisation constant (online Sable's final return) and random baseline."""
    task = get_task(task) if isinstance(task, str) else task
    sable, rand = np.asarray(sable_returns, float), np.asarray(random_returns, float)
    if sable.size == 0 or rand.size == 0:
        raise LakeValueError(f"{task.name}: a reference needs at least one episode of each")
    record = {
        "sable_return": float(sable.mean()), "sable_return_std": float(sable.std()),
        "sable_episodes": int(sable.size),
        "random_return": float(rand.mean()), "random_return_std": float(rand.std()),
        "random_episodes": int(rand.size),
        "env_steps": int(env_steps), "recorded_at": dt.datetime.now(dt.UTC),
    }
    return write_records(
        lake, "references", {"env": task.env, "task": task.scenario, "run": run}, [record]
    )


def delete_run(lake: Lake, task: str | Task, run: str) -> list[str]:
    """Remove every row of one (task, run) from every table; returns the files that left.

    The episodes index goes first, then the steps it pointed at, then the references: a
    reader going through `episodes` never meets a missing step.
    """
    task = get_task(task) if isinstance(task, str) else task
    validate_partition("references", {"env": task.env, "task": task.scenario, "run": run})
    if not lake.is_s3 and not os.path.exists(lake.root):
        return []  # a new lake: nothing to delete (a writer may start one)
    lake.check_readable()
    where = f"task = '{task.scenario}' AND run = '{run}'"
    removed = delta.delete_where(lake, "episodes", f"env = '{task.env}' AND {where}")
    removed += delta.delete_where(lake, delta.table_id("steps", task.env), where)
    removed += delta.delete_where(lake, "references", f"env = '{task.env}' AND {where}")
    return removed
