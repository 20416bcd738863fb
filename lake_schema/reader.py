"""Reading the lake by partition: the Delta log says which files, only matching ones are
opened, and every file is checked.

A table of an unknown schema version, a file the log lists but that is missing, foreign,
corrupted or of the wrong columns, a partition value the catalogue does not know: an error
naming the table or file, never silently skipped or half-read. Reads can be pinned to table
versions (`Selection.as_of`), and `snapshot()` says which versions a read used, so a model
can record exactly the data it was trained on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake_schema import delta
from lake_schema.catalogue import ENVS, Task, split_tasks
from lake_schema.delta import DataFile
from lake_schema.errors import (
    LakeFileError,
    LakeValueError,
    SchemaVersionError,
    UnknownTaskError,
)
from lake_schema.schema import (
    ADDED_COLUMNS,
    LAYOUT,
    TableSpec,
    check_table,
    table_spec,
    validate_partition,
)
from lake_schema.storage import Lake

__all__ = ["LakeFileError", "SchemaVersionError", "Selection", "Snapshot", "list_files",
           "open_checked", "parse_partition", "read_episode", "read_files", "read_table",
           "snapshot", "table_versions", "with_added_columns"]


@dataclass(frozen=True)
class Selection:
    """Partition filters; None means any. Lists match any of their values."""

    env: str | None = None
    tasks: Sequence[str] | None = None  # scenarios, e.g. ["8x8-2p-2f"]
    split: str | None = None  # a catalogue split name; needs env
    quality: str | Sequence[str] | None = None
    checkpoints: tuple[int, int] | None = None  # inclusive range
    runs: Sequence[str] | None = None
    models: Sequence[str] | None = None
    # Pin reads to table versions: {table id: version} (ids as in `table_versions`, e.g.
    # "episodes", "steps/lbf"), or one int for the table being read. None: current. Steps
    # are read through the episodes index, so its "episodes" version (or the int) pins them.
    as_of: Mapping[str, int] | int | None = field(default=None, hash=False)

    def version_of(self, tid: str) -> int | None:
        if self.as_of is None:
            return None
        if isinstance(self.as_of, int) and not isinstance(self.as_of, bool):
            return self.as_of
        if isinstance(self.as_of, Mapping):
            v = self.as_of.get(tid)
            if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                return v
        raise LakeValueError(f"bad as_of {self.as_of!r}: a version number or "
                             "{table id: version}")

    def values(self) -> dict[str, set[str] | None]:
        """Allowed values per partition key (as path strings), after validation."""
        if self.split is not None:
            if self.env is None:
                raise LakeValueError("a split selection needs env=")
            split = {t.scenario for t in split_tasks(self.env, self.split)}
        tasks = set(self.tasks) if self.tasks is not None else None
        if self.split is not None:
            tasks = split if tasks is None else tasks & split
        for t in tasks or ():
            if self.env is None:
                raise LakeValueError(f"task {t!r} selected without env=")
            validate_partition("references", {"env": self.env, "task": t})
        if self.env is not None:
            validate_partition("references", {"env": self.env})
        quality = [self.quality] if isinstance(self.quality, str) else self.quality
        for q in quality or ():
            validate_partition("steps", {"quality": q})
        return {
            "env": {self.env} if self.env else None,
            "task": tasks,
            "quality": set(quality) if quality is not None else None,
            "run": set(self.runs) if self.runs is not None else None,
            "model": set(self.models) if self.models is not None else None,
        }


def parse_partition(rel: str) -> dict[str, str]:
    """`table/k=v/.../file.parquet` -> {k: v}; `steps/<env>/...` gives env too."""
    parts = rel.split("/")
    values = {}
    if parts[0] == "steps" and len(parts) > 2 and "=" not in parts[1]:
        values["env"] = parts[1]
    values.update(p.split("=", 1) for p in parts[1:-1] if "=" in p)
    return values


@dataclass(frozen=True)
class Snapshot:
    """What one read sees: the files of the selected partitions, and each table's version."""

    files: tuple[DataFile, ...]
    versions: dict[str, int]

    @property
    def paths(self) -> list[str]:
        return [f.rel for f in self.files]


def _typed(values: Mapping[str, str]) -> dict[str, object]:
    typed: dict[str, object] = dict(values)
    if "checkpoint" in typed:
        with contextlib.suppress(TypeError, ValueError):  # validate_partition names a bad one
            typed["checkpoint"] = int(values["checkpoint"])
    return typed


def check_partition_values(table: str, f: DataFile) -> None:
    """A file's partition values must be ones the catalogue and tag rules allow."""
    partitions, _ = LAYOUT[table]
    if set(f.partition) != set(partitions) or any(v is None for v in f.partition.values()):
        raise LakeFileError(f.rel, f"partition columns {sorted(f.partition)}, expected "
                                   f"{list(partitions)}")
    try:
        validate_partition(table, _typed(f.partition))
    except (LakeValueError, UnknownTaskError) as e:
        raise LakeFileError(f.rel, f"bad partition value: {e}") from e
    path = parse_partition(f.rel)  # readers take partition columns from the folders
    for p, v in path.items():  # so the path must agree with the log
        if f.partition.get(p) != v:
            raise LakeFileError(f.rel, f"path says {p}={v}, the Delta log "
                                       f"{p}={f.partition.get(p)}")
    if set(path) != set(f.partition):
        raise LakeFileError(f.rel, f"its folders hold {sorted(path) or 'no'} partition "
                                   f"values, the Delta log {sorted(f.partition)}")


def _table_ids(table: str, selection: Selection) -> list[str]:
    if table != "steps":
        return [table]
    if selection.env is not None:
        return [delta.table_id("steps", selection.env)]
    return [delta.table_id("steps", e) for e in ENVS]


def snapshot(lake: Lake, table: str, selection: Selection = Selection()) -> Snapshot:
    """The files of `table` matching `selection` (from the Delta log, at `selection.as_of`
    or the current version) and the version of each table read; opens no data file, except
    for steps, which are read through the episodes index (`indexed_steps`)."""
    check_table(table)
    lake.check_readable()
    if table == "steps":
        return indexed_steps(lake, selection)
    allowed = selection.values()
    files: list[DataFile] = []
    versions: dict[str, int] = {}
    for tid in _table_ids(table, selection):
        dt = delta.open_table(lake, tid, selection.version_of(tid))
        if dt is None:
            continue
        versions[tid] = int(dt.version())
        for f in delta.data_files(dt, tid):
            values = f.partition
            if any(allowed.get(p) is not None and values.get(p) not in allowed[p]
                   for p in values):
                continue
            if selection.checkpoints is not None and "checkpoint" in values:
                lo, hi = selection.checkpoints
                try:
                    if not lo <= int(values["checkpoint"]) <= hi:
                        continue
                except (TypeError, ValueError):
                    pass  # named by the check below
            check_partition_values(table, f)
            files.append(f)
    return Snapshot(tuple(files), versions)


def indexed_steps(lake: Lake, selection: Selection = Selection()) -> Snapshot:
    """The steps files that the episodes index lists, at the index version the selection
    pins (`as_of`'s "episodes", else the current one): the lake's commit point.

    A checkpoint's write commits its steps, then its index rows, in two Delta tables, so
    between the two commits (or after a writer killed there) the steps table already holds
    the new steps while the index still describes the old ones. Reading the files the index
    names, rather than the steps table's current files, gives every reader one snapshot
    across the two tables: exactly the steps its episodes rows describe. The files an index
    names stay on disk while it names them (`maintenance.vacuum` keeps them)."""
    index_selection = replace(selection, as_of=selection.version_of("episodes"))
    index = snapshot(lake, "episodes", index_selection)
    files: dict[str, DataFile] = {}
    for f in index.files:
        tid = delta.table_id("steps", f.partition["env"])
        names = read_files(lake, [f.rel], "episodes", None, ["steps_file"])["steps_file"]
        for rel in pc.unique(names).to_pylist():
            if not isinstance(rel, str) or not rel.startswith(f"{tid}/"):
                raise LakeFileError(f.rel, f"steps_file {rel!r} is not a file of {tid}")
            rel = delta.inside_table(tid, rel[len(tid) + 1:])
            steps = DataFile(rel, 0, 0, parse_partition(rel))  # size, rows: not in the index
            check_partition_values("steps", steps)
            if {p: v for p, v in steps.partition.items() if p in f.partition} != {
                    p: v for p, v in f.partition.items() if p in steps.partition}:
                raise LakeFileError(f.rel, f"steps_file {rel} is another key's steps")
            files[rel] = steps
    return Snapshot(tuple(files[r] for r in sorted(files)), index.versions)


def list_files(lake: Lake, table: str, selection: Selection = Selection()) -> list[str]:
    """Root-relative data files of `table` matching `selection`, opening none of them."""
    return snapshot(lake, table, selection).paths


def table_versions(lake: Lake, tables: Iterable[str] | None = None) -> dict[str, int]:
    """Current version of each table id (default: every table the lake holds), e.g.
    {"episodes": 12, "steps/lbf": 9}: what a model records to name its data."""
    lake.check_readable()
    return delta.current_versions(lake, delta.existing_tables(lake) if tables is None
                                  else tables)


@contextmanager
def open_checked(lake: Lake, rel: str) -> Iterator[pq.ParquetFile]:
    """Open a lake file: present, Parquet, and the columns of its table."""
    table = rel.split("/", 1)[0]
    spec = table_spec(check_table(table), parse_partition(rel).get("env"))
    try:
        handle = lake.fs.open(lake.path(rel), "rb")
    except FileNotFoundError as e:
        raise LakeFileError(rel, "listed by the Delta log but missing") from e
    except OSError as e:
        raise LakeFileError(rel, f"cannot open ({e})") from e
    with handle:
        try:
            pf = pq.ParquetFile(handle)
        except Exception as e:  # pyarrow raises several types for truncated/foreign bytes
            raise LakeFileError(rel, f"not a readable Parquet file ({e})") from e
        diff = delta.column_differences(pf.schema_arrow, spec)
        if diff:
            raise LakeFileError(rel, f"wrong columns for {table}: {'; '.join(diff)}")
        yield pf


def _with_partitions(table: pa.Table, rel: str) -> pa.Table:
    for p, v in parse_partition(rel).items():
        scalar = pa.scalar(int(v), pa.int32()) if p == "checkpoint" else pa.scalar(v)
        table = table.append_column(p, pa.repeat(scalar, table.num_rows))
    return table


def with_added_columns(data: pa.Table, spec: TableSpec, wanted: Sequence[str],
                       num_rows: int) -> pa.Table:
    """`data` (one file's columns) plus, as nulls, the `wanted` columns the file predates
    (`schema.ADDED_COLUMNS`: null means not computed), in the table's column order."""
    missing = [c for c in ADDED_COLUMNS.get(spec.name, ())
               if c in wanted and c not in data.column_names]
    for c in missing:
        data = data.append_column(spec.schema.field(c), pa.nulls(num_rows,
                                                                 spec.schema.field(c).type))
    if missing:
        data = data.select([c for c in spec.schema.names if c in data.column_names])
    return data


def read_files(
    lake: Lake, files: Iterable[str], table: str, env: str | None, columns: list[str] | None
) -> pa.Table:
    """Rows of the given files (from `list_files`), cast to the table's Arrow schema, with
    partition columns from their paths; a bad file is a LakeFileError naming it."""
    spec = table_spec(table, env)
    parts: list[pa.Table] = []
    for rel in files:
        with open_checked(lake, rel) as pf:
            expected = spec.schema
            wanted = [c for c in columns if c in expected.names] if columns is not None else (
                expected.names)
            present = set(pf.schema_arrow.names)
            try:
                if not any(c in present for c in wanted):  # partition or added columns only:
                    n = pf.metadata.num_rows  # keep the row count, read nothing
                    data = pa.table({"_": pa.nulls(n)}).drop_columns(["_"])
                else:
                    data = pf.read(columns=[c for c in wanted if c in present],
                                   use_threads=False)
                    target = pa.schema([expected.field(c) for c in data.column_names])
                    data = data.cast(target)
            except Exception as e:
                raise LakeFileError(rel, f"corrupted data ({e})") from e
            data = with_added_columns(data, spec, wanted, pf.metadata.num_rows)
        parts.append(_with_partitions(data, rel))
    full = spec.full_schema()
    if columns is not None:
        full = pa.schema([full.field(c) for c in columns])
    if not parts:
        return full.empty_table()
    out = pa.concat_tables(parts)
    return out.select(full.names)


def read_table(
    lake: Lake,
    table: str,
    selection: Selection = Selection(),
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows of `table` in the selected partitions, partition columns included, as Arrow."""
    if table == "steps" and selection.env is None:
        raise LakeValueError("reading steps needs env= (observation widths differ by env)")
    return read_files(lake, list_files(lake, table, selection), table, selection.env, columns)


def read_episode(lake: Lake, task: Task, run: str, checkpoint: int, episode: int
                 ) -> tuple[dict, pa.Table]:
    """One episode by its key: its `episodes` row and its steps (rows `first_row` ..
    `first_row + length - 1` of its `steps_file`, step 0 first). An episode the lake does not
    hold is a LakeValueError naming the key; steps that are not that episode's, a
    LakeFileError naming the file."""
    values = {"env": task.env, "task": task.scenario, "run": run, "checkpoint": checkpoint}
    validate_partition("episodes", values)
    name = f"{task.name} run {run} checkpoint {checkpoint}"
    if isinstance(episode, bool) or not isinstance(episode, int) or episode < 0:
        raise LakeValueError(f"{name}: bad episode {episode!r}: an index from 0")
    index = read_table(lake, "episodes", Selection(
        env=task.env, tasks=[task.scenario], runs=[run], checkpoints=(checkpoint, checkpoint)))
    rows = index.filter(pc.equal(index["episode"], episode)).to_pylist()
    if not rows:
        held = f"episodes 0..{index.num_rows - 1}" if index.num_rows else "no episodes"
        raise LakeValueError(f"{name}: no episode {episode} (the lake holds {held})")
    row = rows[0]
    rel = row["steps_file"]
    steps = read_files(lake, [rel], "steps", task.env, None).slice(row["first_row"],
                                                                    row["length"])
    if steps.num_rows != row["length"] or steps["episode"].to_pylist() != [episode] * len(
            steps) or steps["step"].to_pylist() != list(range(len(steps))):
        raise LakeFileError(rel, f"rows {row['first_row']}.. are not the {row['length']} "
                                 f"steps of episode {episode} its index row names")
    return row, steps
