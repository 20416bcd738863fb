"""Reading the lake by partition: only matching files are opened, and every file is checked.

A file with an unknown schema version, a foreign or corrupted file, is an error naming it:
never silently skipped or half-read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lake_schema.catalogue import split_tasks
from lake_schema.schema import (
    DATA_FILE,
    LAYOUT,
    META_TABLE,
    META_VERSION,
    SCHEMA_VERSION,
    LakeValueError,
    check_table,
    table_spec,
    validate_partition,
)
from lake_schema.storage import Lake


class LakeFileError(Exception):
    """A lake file that cannot be trusted: corrupted, foreign, or of another schema."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class SchemaVersionError(LakeFileError):
    pass


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
    """`table/k=v/.../data.parquet` -> {k: v}."""
    return dict(p.split("=", 1) for p in rel.split("/")[1:-1] if "=" in p)


def list_files(lake: Lake, table: str, selection: Selection = Selection()) -> list[str]:
    """Root-relative data files of `table` matching `selection`, opening none of them."""
    partitions, _ = LAYOUT[check_table(table)]
    allowed = selection.values()
    glob = [table]
    for p in partitions:
        only = allowed.get(p)
        glob.append(f"{p}={next(iter(only))}" if only and len(only) == 1 else f"{p}=*")
    files = []
    for rel in lake.glob("/".join([*glob, DATA_FILE])):
        values = parse_partition(rel)
        if any(allowed.get(p) is not None and values[p] not in allowed[p] for p in values):
            continue
        if selection.checkpoints is not None and "checkpoint" in values:
            lo, hi = selection.checkpoints
            if not lo <= int(values["checkpoint"]) <= hi:
                continue
        files.append(rel)
    return files


@contextmanager
def open_checked(lake: Lake, rel: str) -> Iterator[pq.ParquetFile]:
    """Open a lake file and check its footer: Parquet, our table, our schema version."""
    with lake.fs.open(lake.path(rel), "rb") as handle:
        try:
            pf = pq.ParquetFile(handle)
        except Exception as e:  # pyarrow raises several types for truncated/foreign bytes
            raise LakeFileError(rel, f"not a readable Parquet file ({e})") from e
        _check_footer(pf, rel)
        yield pf


def _check_footer(pf: pq.ParquetFile, rel: str) -> None:
    meta = pf.schema_arrow.metadata or {}
    version = meta.get(META_VERSION)
    if version is None:
        raise SchemaVersionError(rel, "no sable_lake schema version in its metadata (foreign?)")
    if version.decode() != SCHEMA_VERSION:
        raise SchemaVersionError(
            rel, f"schema version {version.decode()}; this sable-lake reads {SCHEMA_VERSION}"
        )
    table = rel.split("/", 1)[0]
    if meta.get(META_TABLE, b"").decode() != table:
        raise LakeFileError(rel, f"metadata says table {meta.get(META_TABLE)!r}, not {table!r}")


def _with_partitions(table: pa.Table, rel: str) -> pa.Table:
    for p, v in parse_partition(rel).items():
        scalar = pa.scalar(int(v), pa.int32()) if p == "checkpoint" else pa.scalar(v)
        table = table.append_column(p, pa.repeat(scalar, table.num_rows))
    return table


def read_files(
    lake: Lake, files: Iterable[str], table: str, env: str | None, columns: list[str] | None
) -> pa.Table:
    spec = table_spec(table, env)
    parts: list[pa.Table] = []
    for rel in files:
        with open_checked(lake, rel) as pf:
            expected = spec.schema
            if pf.schema_arrow.remove_metadata() != expected.remove_metadata():
                raise LakeFileError(rel, f"columns differ from the {table} schema")
            wanted = [c for c in columns if c in expected.names] if columns is not None else None
            try:
                if wanted == []:  # partition columns only: keep the row count, read nothing
                    n = pf.metadata.num_rows
                    data = pa.table({"_": pa.nulls(n)}).drop_columns(["_"])
                else:
                    data = pf.read(columns=wanted).replace_schema_metadata(None)
            except Exception as e:
                raise LakeFileError(rel, f"corrupted data ({e})") from e
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


def read_polars(
    lake: Lake, table: str, selection: Selection = Selection(), columns: list[str] | None = None
) -> pl.DataFrame:
    return pl.from_arrow(read_table(lake, table, selection, columns))
