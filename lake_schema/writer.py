"""Writing to the lake: validated Delta transactions that replace one key each.

Everything is checked (catalogue names, tags, shapes, dtypes, episode structure, finite
numbers) before the first byte is written, so bad input never leaves anything behind. Each
table's write is one Delta commit replacing the key's rows by predicate. A checkpoint's
`steps` commit precedes its `episodes` commit (the index that points at the steps file),
which precedes its dataset card's (`lake_schema.cards`, computed from the same rows);
concurrent writers of one key: one whole write stands, the others raise LakeConflictError
naming the key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake_schema import delta
from lake_schema.cards import card_record, code_version, current_cards, rtg_fit
from lake_schema.catalogue import ENVS, Task, get_task
from lake_schema.delta import DataFile
from lake_schema.errors import (
    LakeConflictError,
    LakeFileError,
    LakeStorageError,
    LakeValueError,
)
from lake_schema.reader import Selection, read_files, read_table
from lake_schema.schema import (
    EPISODES_SCHEMA,
    OPTIONAL_COLUMNS,
    TableSpec,
    equals_predicate,
    table_spec,
    validate_partition,
)
from lake_schema.storage import Lake


@dataclass(frozen=True)
class EpisodeBatch:
    """Whole episodes stored back to back: row s is one environment step.

    obs [S, N, F], action [S, N] int, legal [S, N, A] bool, reward [S] team reward,
    terminated / truncated [S] bool (set on an episode's last step only), lengths [E];
    reset_keys [E, 2] uint32: the PRNG key each episode's environment was reset with, which
    with the actions reproduces it (None: not replayable, e.g. imported data).
    """

    obs: np.ndarray
    action: np.ndarray
    legal: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    lengths: np.ndarray
    reset_keys: np.ndarray | None = None

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
    _check_reset_keys(task, b.reset_keys, len(lengths))
    last = np.zeros(s, bool)
    last[np.cumsum(lengths) - 1] = True
    done = b.terminated.astype(bool) | b.truncated.astype(bool)
    if (done != last).any():
        raise LakeValueError(
            f"{task.name}: every episode must end with terminated or truncated on its last "
            "step and nowhere else"
        )
    return _narrow(task, b.obs)


def _check_reset_keys(task: Task, keys: np.ndarray | None, episodes: int) -> None:
    """None, or one key of two uint32 words per episode."""
    if keys is None:
        return
    keys = np.asarray(keys)
    if keys.shape != (episodes, 2) or not np.issubdtype(keys.dtype, np.integer) or (
            keys.size and (keys.min() < 0 or keys.max() > np.iinfo(np.uint32).max)):
        raise LakeValueError(
            f"{task.name}: reset_keys must be {episodes} PRNG keys of two uint32 words "
            f"([{episodes}, 2]), got shape {keys.shape} of {keys.dtype}")


def _reset_key_column(keys: np.ndarray | None, episodes: int) -> pa.Array:
    """The episodes' `reset_key` values: each key's two words, or all null."""
    if keys is None:
        return pa.nulls(episodes, EPISODES_SCHEMA.field("reset_key").type)
    return pa.FixedSizeListArray.from_arrays(
        pa.array(np.asarray(keys).reshape(-1).astype(np.int64)), 2)


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
    config: str | None = None,
) -> WriteResult:
    """Write one checkpoint's recorded episodes (`steps` + `episodes`, and its dataset card)
    as one transaction; `config` (JSON) names what produced them, e.g. the online config, and
    goes into the card with this code's version."""
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
    # the spec's columns, in its order and types
    episodes = pa.Table.from_pydict(
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
            "reset_key": _reset_key_column(batch.reset_keys, len(lengths)),
        },
        schema=episodes_spec.schema,
    )
    files = commit_checkpoint(lake, partition, steps.cast(steps_spec.schema), episodes,
                              config, code_version())
    return WriteResult(tuple(f.rel for f in files), s, sum(f.size for f in files))


def commit_checkpoint(lake: Lake, partition: dict[str, object], steps: pa.Table,
                      episodes: pa.Table, config: str | None = None,
                      version: str | None = None) -> list[DataFile]:
    """Commit one checkpoint's validated `steps`, its `episodes` index (their `steps_file`
    column is filled in here) and its dataset card (`lake_schema.cards`, computed here from
    the same rows; `config` and `version` say what produced them); returns the files the
    three commits added.

    Table order: steps are committed first, then the episodes index that points at them, then
    the card, so a reader going through `episodes` never meets a missing step, and a card
    names the steps file it summarises (a write killed before its card leaves the old card,
    which no longer matches: stale, named by `verify`). The index's and the card's snapshots
    are taken before the steps commit: a same-key writer that committed since makes ours
    conflict instead of silently pointing at replaced steps; the writer whose steps are
    current retries, any other raises LakeConflictError. A commit the store fails is a
    LakeStorageError that says what the lake holds of the write.
    """
    env = str(partition["env"])
    task = get_task(f"{env}/{partition['task']}")
    steps_spec, episodes_spec = table_spec("steps", env), table_spec("episodes")
    steps_tid = delta.table_id("steps", env)
    key = episodes_spec.key_name(partition)
    # computed before the first commit: nothing is left behind if it fails, and the window
    # between the commits stays short (steps_file is set once the steps commit names it)
    card = card_record(task, steps, episodes, "", config, version)
    lake.prepare_for_writing()
    snapshots = {tid: delta.ensure_table(lake, tid) for tid in ("episodes", "cards")}
    sdt = delta.replace_key(lake, steps_tid, _with_partition(steps, steps_spec, partition),
                            partition, operation=f"write {key}")
    steps_file = _steps_file_of(sdt, steps_tid, partition)
    episodes = episodes.set_column(episodes.schema.get_field_index("steps_file"), "steps_file",
                                   pa.array([steps_file.rel] * len(episodes), pa.string()))
    where = key.partition(" ")[2]  # `episodes env=lbf/...`: the key, not the table
    edt = _commit_pointing_at(
        lake, "episodes", episodes, partition, snapshots["episodes"], steps_file.rel, key,
        if_lost=f"readers see the previous write of {where} (if any) unless a try landed "
                "after all; writing it again replaces what this one left")
    card["steps_file"] = steps_file.rel
    cdt = _commit_pointing_at(
        lake, "cards", pa.Table.from_pylist([card], schema=table_spec("cards").schema),
        partition, snapshots["cards"], steps_file.rel, key,
        if_lost=f"the steps and episodes of {where} are written, its dataset card may be "
                "stale (`python -m lake_schema card --backfill` recomputes it)")
    return [steps_file, *delta.key_files(edt, "episodes", partition),
            *delta.key_files(cdt, "cards", partition)]


def _commit_pointing_at(lake: Lake, tid: str, data: pa.Table, partition: dict[str, object],
                        snapshot, steps_file: str, key: str, if_lost: str = ""):
    """Commit rows that point at the key's steps file `steps_file` (the episodes index, the
    card) against `snapshot`; on a conflict, retry only while those steps are still the
    key's current ones (else the concurrent writer whose steps stand wins). A commit the
    store fails is a LakeStorageError, which `if_lost` completes with what the lake then
    holds of the write."""
    steps_tid = delta.table_id("steps", str(partition["env"]))
    rows = _with_partition(data, table_spec(tid), partition)
    for attempt in range(delta.COMMIT_RETRIES):
        try:
            dt = delta.replace_key(lake, tid, rows, partition, snapshot=snapshot,
                                   operation=f"write {key}")
            break
        except LakeStorageError as e:
            if not if_lost:
                raise
            raise LakeStorageError(e.what, f"{e.reason}; {if_lost}") from e
        except Exception as e:
            if not delta.is_conflict(e):
                raise
            snapshot = delta.ensure_table(lake, tid)  # fresh, before the check below
            _check_still_ours(lake, steps_tid, partition, steps_file, key)
            time.sleep(0.01 * (attempt + 1))
    else:
        raise LakeConflictError(key, f"gave up after {delta.COMMIT_RETRIES} conflicting "
                                     f"commits of the {tid} table")
    _check_still_ours(lake, steps_tid, partition, steps_file, key)
    return dt


def backfill_cards(lake: Lake, env: str | None = None, task: str | None = None
                   ) -> list[str]:
    """Compute the dataset card of every checkpoint that has none or a stale one (a lake
    written before cards, a write killed before its card) from its rows, and remove cards of
    checkpoints that no longer exist; returns one line per card written or removed. Each is
    one commit, keyed like a write of the checkpoint; run it while nobody writes those
    checkpoints (a concurrent rewrite leaves a stale card, which the next backfill replaces).
    """
    lake.check_readable()
    envs = [env] if env is not None else [e for e in ENVS if delta.is_table(
        lake, delta.table_id("steps", e))]
    spec = table_spec("cards")
    done = []
    for e in envs:
        sel = Selection(env=e, tasks=None if task is None else [task])
        index = read_table(lake, "episodes", sel)
        have = current_cards(lake, sel, ["task", "run", "checkpoint"])
        indexed = set(index["steps_file"].to_pylist())
        for rel in sorted(indexed - set(have)):
            episodes = index.filter(pc.equal(index["steps_file"], rel))
            first = episodes.slice(0, 1).to_pylist()[0]
            partition = {p: first[p] for p in spec.partitions}
            steps = read_files(lake, [rel], "steps", e, None)
            card = card_record(get_task(f"{e}/{first['task']}"), steps, episodes, rel)
            key = spec.key_name(partition)
            _commit_pointing_at(lake, "cards", pa.Table.from_pylist([card], schema=spec.schema),
                                partition, delta.ensure_table(lake, "cards"), rel, key)
            done.append(f"wrote the card of {key}: {card['episodes']} episodes, "
                        f"{card['steps']} steps")
        keys = {(r["task"], r["run"], r["checkpoint"]) for r in index.select(
            ["task", "run", "checkpoint"]).to_pylist()}
        for rel, r in sorted(have.items()):
            if (r["task"], r["run"], r["checkpoint"]) not in keys:
                values = {"env": e, "task": r["task"], "run": r["run"],
                          "checkpoint": r["checkpoint"]}
                delta.delete_where(lake, "cards", spec.key_predicate(values))
                done.append(f"removed the card of {spec.key_name(values)} (no such checkpoint; "
                            f"it summarised {rel})")
    return done + backfill_rtg(lake, env, task)


def backfill_rtg(lake: Lake, env: str | None = None, task: str | None = None) -> list[str]:
    """Fill in `rtg_outside_support` (the share of returns-to-go outside the env's value
    support) of every current card written before that column, from its steps' `step` and
    `reward` columns only; returns one line per card filled. The rest of each card row is
    kept as it was. A lake without cards, or whose cards all have it, is left unchanged (no
    commit, not even the column's)."""
    lake.check_readable()
    if not delta.is_table(lake, "cards"):
        return []
    envs = [env] if env is not None else list(ENVS)
    spec = table_spec("cards")
    done = []
    for e in envs:
        sel = Selection(env=e, tasks=None if task is None else [task])
        index = read_table(lake, "episodes", sel, ["steps_file"])
        indexed = set(index["steps_file"].to_pylist())
        cards = current_cards(lake, sel)
        todo = [(rel, row) for rel, row in sorted(cards.items())
                if row["rtg_outside_support"] is None and rel in indexed]
        for rel, row in todo:
            steps = read_files(lake, [rel], "steps", e, ["step", "reward"])
            fit = rtg_fit(get_task(f"{e}/{row['task']}"), steps)
            partition = {p: row[p] for p in spec.partitions}
            key = spec.key_name(partition)
            _commit_pointing_at(
                lake, "cards", pa.Table.from_pylist(
                    [{**row, "rtg_outside_support": fit.fraction}], schema=spec.schema),
                partition, delta.ensure_table(lake, "cards"), rel, key)
            done.append(f"filled rtg_outside_support of the card of {key}: {fit.fraction:.2%} "
                        f"of {fit.total} returns-to-go outside the value support")
    return done


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
    if table in ("steps", "episodes", "cards"):
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
    for col, value in (replace_rows or {}).items():
        if col not in spec.schema.names or not isinstance(value, int | str) or isinstance(
                value, bool):
            raise LakeValueError(f"{table}: cannot replace rows by {col}={value!r}")
        if any(r.get(col) != value for r in records):
            raise LakeValueError(f"{table}: every record must have {col}={value!r}")
    lake.prepare_for_writing()
    key = spec.key_name(partition)
    if replace_rows:
        dt = _replace_some_rows(lake, table, partition, data, replace_rows, key)
    else:
        dt = delta.replace_key(lake, table, _with_partition(data, spec, partition), partition,
                               operation=f"write {key}")
    files = delta.key_files(dt, table, partition)
    return WriteResult(tuple(f.rel for f in files), len(records), sum(f.size for f in files))


def _replace_some_rows(lake: Lake, table: str, partition: dict[str, object], data: pa.Table,
                       replace_rows: dict[str, object], key: str):
    """Rewrite the key with its rows that do not hold `replace_rows`' values plus `data`, in
    one commit against the snapshot those rows were read from (a concurrent commit to the
    key makes it conflict: read again and retry). The key stays one file, whose content
    hash the commit records (`lake_schema.integrity`)."""
    spec = table_spec(table)
    for attempt in range(delta.COMMIT_RETRIES):
        dt = delta.ensure_table(lake, table)
        kept = read_files(lake, [f.rel for f in delta.key_files(dt, table, partition)], table,
                          None, spec.schema.names)
        if kept.num_rows:
            drop = None
            for col, value in replace_rows.items():
                m = pc.fill_null(pc.equal(kept[col], pa.scalar(value, kept[col].type)), False)
                drop = m if drop is None else pc.and_(drop, m)
            kept = kept.filter(pc.invert(drop))
        rows = pa.concat_tables([kept.cast(spec.schema), data])
        try:
            return delta.replace_key(lake, table, _with_partition(rows, spec, partition),
                                     partition, snapshot=dt, operation=f"write {key}")
        except Exception as e:
            if not delta.is_conflict(e):
                raise
            time.sleep(0.01 * (attempt + 1))
    raise LakeConflictError(key, f"gave up after {delta.COMMIT_RETRIES} conflicting commits")


@dataclass(frozen=True)
class Evaluation:
    """One `evaluations` row: a model evaluated on one task at one training update with one
    number of episodes (its partition, env/task/model, is given to `write_evaluation`)."""

    algorithm: str
    split: str  # train: a training task of the model; test: held out
    update: int
    episodes: int
    mean_return: float
    std_return: float
    normalised_return: float
    reference_return: float
    config: str = "{}"  # JSON, `trainer.offline.evaluation.evaluation_config_json`
    evaluated_at: dt.datetime | None = None
    data_versions: str | None = None  # JSON {table id: version} the model trained on

    def record(self) -> dict:
        """The row's columns (a subclass's own fields are not columns)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Evaluation)}


def write_evaluation(lake: Lake, task: str | Task, model: str,
                     evaluation: Evaluation) -> WriteResult:
    """Write one evaluation of `model` on `task`, replacing only the row of the same
    (update, episodes): the model's other evaluations stay, also when written concurrently."""
    task = get_task(task) if isinstance(task, str) else task
    return write_records(
        lake, "evaluations", {"env": task.env, "task": task.scenario, "model": model},
        [evaluation.record()],
        replace_rows={"update": evaluation.update, "episodes": evaluation.episodes})


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

    The episodes index goes first, then the cards and the steps it pointed at, then the
    references: a reader going through `episodes` never meets a missing step.
    """
    task = get_task(task) if isinstance(task, str) else task
    validate_partition("references", {"env": task.env, "task": task.scenario, "run": run})
    if not lake.is_s3 and not os.path.exists(lake.root):
        return []  # a new lake: nothing to delete (a writer may start one)
    lake.check_readable()
    where = equals_predicate({"task": task.scenario, "run": run})
    with_env = equals_predicate({"env": task.env, "task": task.scenario, "run": run})
    removed = delta.delete_where(lake, "episodes", with_env)
    removed += delta.delete_where(lake, "cards", with_env)
    removed += delta.delete_where(lake, delta.table_id("steps", task.env), where)
    removed += delta.delete_where(lake, "references", with_env)
    return removed
