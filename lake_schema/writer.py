"""Writing to the lake: validated, atomic, replace-by-key.

Everything is checked (catalogue names, tags, shapes, dtypes, episode structure) before the
first byte is written, so bad input never leaves anything behind.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lake_schema.catalogue import Task, get_task
from lake_schema.schema import (
    META_TABLE,
    META_VERSION,
    SCHEMA_VERSION,
    LakeValueError,
    TableSpec,
    table_spec,
    validate_partition,
)
from lake_schema.storage import Lake
from lake_schema.transaction import Transaction, recover, transaction


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
    files: tuple[str, ...]  # root-relative paths now visible
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


def _stamp(table: pa.Table, spec: TableSpec, partition: dict[str, object]) -> pa.Table:
    meta = {
        META_VERSION: SCHEMA_VERSION.encode(),
        META_TABLE: spec.name.encode(),
        b"sable_lake.partition": json.dumps(partition, sort_keys=True).encode(),
    }
    return table.cast(spec.schema).replace_schema_metadata(meta)


def _put(txn: Transaction, spec: TableSpec, partition: dict[str, object], table: pa.Table) -> str:
    """Stage one file for `partition`, replacing every file with the same write key."""
    rel = spec.relpath(**partition)
    for stale in txn.location.glob(spec.key_glob(**partition)):
        if stale != rel:
            txn.delete(stale)
    txn.put_table(rel, _stamp(table, spec, partition))
    return rel


def _result(lake: Lake, files: Sequence[str], rows: int) -> WriteResult:
    size = sum(lake.fs.size(lake.path(f)) for f in files)
    return WriteResult(tuple(files), rows, int(size))


def open_for_writing(lake: Lake) -> Lake:
    """Roll forward transactions a crashed writer left behind (older than a minute)."""
    recover(lake)
    return lake


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
    steps_rel = steps_spec.relpath(**partition)
    episodes = pa.table(
        {
            "episode": np.arange(len(lengths), dtype=np.int32),
            "length": lengths.astype(np.int32),
            "return": batch.episode_returns(),
            "num_agents": np.full(len(lengths), n, np.int16),
            "terminated": batch.terminated[last].astype(bool),
            "truncated": batch.truncated[last].astype(bool),
            "env_steps": np.full(len(lengths), env_steps, np.int64),
            "steps_file": [steps_rel] * len(lengths),
            "first_row": starts,
            "recorded_at": pa.array([now] * len(lengths), pa.timestamp("ms", tz="UTC")),
        }
    )
    with transaction(open_for_writing(lake)) as txn:
        files = [_put(txn, steps_spec, partition, steps),  # the index goes in last
                 _put(txn, episodes_spec, partition, episodes)]
    return _result(lake, files, s)


def write_records(
    lake: Lake, table: str, partition: dict[str, object], records: Sequence[dict]
) -> WriteResult:
    """Write small per-key tables (`references`, `evaluations`) from dict records."""
    if table == "steps" or table == "episodes":
        raise LakeValueError(f"{table} is written with write_episodes()")
    partition = validate_partition(table, partition)
    spec = table_spec(table)
    if not records:
        raise LakeValueError(f"{table}: nothing to write for {partition}")
    missing = [k for k in spec.schema.names if k not in records[0]]
    if missing:
        raise LakeValueError(f"{table}: record lacks column(s) {missing}")
    try:
        data = pa.Table.from_pylist([dict(r) for r in records], schema=spec.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise LakeValueError(f"{table}: bad record for {partition}: {e}") from e
    with transaction(open_for_writing(lake)) as txn:
        rel = _put(txn, spec, partition, data)
    return _result(lake, [rel], len(records))


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
    """Remove every file of one (task, run) from every table, atomically; returns them."""
    task = get_task(task) if isinstance(task, str) else task
    validate_partition("references", {"env": task.env, "task": task.scenario, "run": run})
    prefix = f"env={task.env}/task={task.scenario}/run={run}"
    stale = [f for t in ("steps", "episodes", "references") for f in
             lake.glob(f"{t}/{prefix}/**/*") if f.endswith(".parquet")]
    if stale:
        with transaction(open_for_writing(lake)) as txn:
            for rel in stale:
                txn.delete(rel)
    return stale
