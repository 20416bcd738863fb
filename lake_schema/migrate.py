"""`python -m lake_schema migrate`: a lake written before Delta (schema version 1: one
`data.parquet` per key under `<table>/env=.../...`, plus `_journal`/`_staging` folders of
its own transaction layer) converted into the Delta tables, or refused with what to do.

Every old file is checked (readable Parquet, schema version 1, its table's columns) before
anything moves, so a refusal changes nothing. Then the old folders are moved aside under
`_pre_delta/`, each checkpoint is committed like a new write (steps, then the episodes
index pointing at the new steps file), references and evaluations are copied, and the old
files are deleted (kept with `--keep-old`).

A Delta lake whose tables predate a column added since (`schema.ADDED_COLUMNS`) is brought
up to date too: the columns are added to those tables' Delta schemas (null in the rows
written before) and filled in where the lake's own rows determine them (a card's
`rtg_outside_support`, from its steps' rewards: `writer.backfill_rtg`); a value that cannot
be computed stays null, meaning not computed (an episode's `reset_key`, which no stored row
determines: the episode stays not replayable).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from lake_schema import delta
from lake_schema.errors import LakeError, LakeFileError
from lake_schema.reader import with_added_columns
from lake_schema.schema import (
    DATA_FILE,
    LAYOUT,
    LEGACY_VERSION,
    META_TABLE,
    META_VERSION,
    TABLES,
    table_spec,
)
from lake_schema.storage import Lake

OLD = "_pre_delta"
HOW = ("fix or remove it (`verify` of the pre-Delta version names every bad file), then run "
       "`python -m lake_schema migrate` again")


def _values(rel: str) -> dict[str, object]:
    values: dict[str, object] = dict(
        p.split("=", 1) for p in rel.split("/")[1:-1] if "=" in p)
    if "checkpoint" in values:
        values["checkpoint"] = int(str(values["checkpoint"]))
    return values


def legacy_files(lake: Lake, base: str = "") -> dict[str, list[str]]:
    """Old-layout data files per table (root-relative, under `base` if given)."""
    out: dict[str, list[str]] = {}
    for table in TABLES:
        partitions, _ = LAYOUT[table]
        pattern = "/".join([table, *(f"{p}=*" for p in partitions), DATA_FILE])
        found = lake.glob(f"{base}/{pattern}" if base else pattern)
        if found:
            out[table] = found
    return out


def _read_old(lake: Lake, rel: str, table: str, env: str | None) -> pa.Table:
    spec = table_spec(table, env)
    try:
        with lake.fs.open(lake.path(rel), "rb") as f:
            data = pq.read_table(f)
    except Exception as e:
        raise LakeFileError(rel, f"not a readable Parquet file ({e}); {HOW}") from e
    meta = data.schema.metadata or {}
    version = meta.get(META_VERSION, b"").decode()
    if version != LEGACY_VERSION or meta.get(META_TABLE, b"").decode() != table:
        raise LakeFileError(rel, f"not a {table} file of schema version {LEGACY_VERSION} "
                                 f"(version {version or 'none'}); {HOW}")
    if table == "evaluations" and "data_versions" not in data.column_names:
        data = data.append_column("data_versions", pa.nulls(len(data), pa.string()))
    diff = delta.column_differences(data.schema, spec)
    if diff:
        raise LakeFileError(rel, f"wrong columns ({'; '.join(diff)}); {HOW}")
    # columns added since (an episode's reset_key): null, as in a Delta table written before
    data = with_added_columns(data, spec, spec.schema.names, len(data))
    return data.replace_schema_metadata(None).cast(spec.schema)


def migrate(lake: Lake, keep_old: bool = False) -> Iterator[str]:
    """Convert the lake; yields one line per step. Raises LakeError (changing nothing) when
    the old lake has interrupted transactions or a bad file."""
    from lake_schema.writer import commit_checkpoint  # writer imports this package's modules

    if lake.exists(OLD):
        raise LakeError(f"{lake.root}: {OLD}/ exists (an earlier migration stopped midway?): "
                        f"move it back or away, then run migrate again")
    for folder in ("_journal", "_staging"):
        if lake.exists(folder) and lake.find(folder):
            raise LakeError(
                f"{lake.root}/{folder}: interrupted writes of the pre-Delta lake. Finish them "
                "with that version's `python -m lake_schema recover`, or delete _journal/ and "
                "_staging/ to drop them, then run migrate again")
    old = legacy_files(lake)
    if not old:
        lines = list(add_columns(lake))
        yield from lines or [f"{lake.root}: nothing to migrate (no pre-Delta files, no "
                             "column to add)"]
        return
    for table in old:
        tid = "episodes" if table == "steps" else table  # steps tables live in steps/<env>
        if table != "steps" and delta.is_table(lake, tid):
            raise LakeError(f"{lake.root}/{table}: both old files and a Delta table; move the "
                            "old files away or remove the Delta table, then migrate again")
    # check everything before moving anything
    for table, files in old.items():
        for rel in files:
            _read_old(lake, rel, table, str(_values(rel).get("env")))
    for table in old:
        lake.fs.mv(lake.path(table), lake.path(f"{OLD}/{table}"), recursive=True)
        yield f"moved the old {table} files to {OLD}/{table}"
    moved = legacy_files(lake, OLD)
    steps_by_rel = {rel[len(OLD) + 1:]: rel for rel in moved.get("steps", [])}
    indexed: set[str] = set()
    for rel in moved.get("episodes", []):
        values = _values(rel[len(OLD) + 1:])
        env = str(values["env"])
        episodes = _read_old(lake, rel, "episodes", env)
        (steps_rel,) = set(episodes["steps_file"].to_pylist()) or {""}
        if steps_rel not in steps_by_rel:
            yield f"skipped {rel}: its steps file {steps_rel} is missing"
            continue
        indexed.add(steps_rel)
        steps = _read_old(lake, steps_by_rel[steps_rel], "steps", env)
        commit_checkpoint(lake, values, steps, episodes)
        yield f"migrated {rel[len(OLD) + 1:].rsplit('/', 1)[0]}"
    for rel in sorted(set(steps_by_rel) - indexed):
        yield f"skipped {rel}: steps without an episodes index row"
    for table in ("references", "evaluations"):
        for rel in moved.get(table, []):
            values = _values(rel[len(OLD) + 1:])
            data = _read_old(lake, rel, table, None)
            spec = table_spec(table)
            for p in spec.delta_partitions:
                data = data.append_column(p, pa.repeat(pa.scalar(values[p]), len(data)))
            delta.replace_key(lake, table, data, values, operation="migrate")
            yield f"migrated {rel[len(OLD) + 1:].rsplit('/', 1)[0]}"
    for folder in ("_journal", "_staging"):
        if lake.exists(folder):
            lake.fs.rm(lake.path(folder), recursive=True)
    if not keep_old:
        lake.fs.rm(lake.path(OLD), recursive=True)
        yield f"removed {OLD}/ (the old files)"
    else:
        yield f"kept the old files in {OLD}/ (delete it when satisfied)"
    yield from add_columns(lake)
    yield "done: run `python -m lake_schema verify --deep` to check the new tables"


def add_columns(lake: Lake) -> Iterator[str]:
    """Add the columns of `schema.ADDED_COLUMNS` to the lake's Delta tables created before
    them, then fill in what the rows determine; yields one line per change (none: the lake
    is up to date). Readers never need this (they give null for a missing added column);
    it makes the tables' schemas current and the values known."""
    from lake_schema.writer import backfill_rtg

    for tid in delta.existing_tables(lake):
        dt = delta.open_table(lake, tid)
        fields = delta.missing_columns(dt, tid) if dt is not None else []
        if fields:
            delta.add_missing_columns(lake, tid, dt)
            yield (f"{tid}: added column(s) {', '.join(f.name for f in fields)} (null in the "
                   "rows written before: unknown)")
    yield from backfill_rtg(lake)
