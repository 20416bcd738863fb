"""The lake's tables as Delta tables (delta-rs): addressing, schema checks, commits, versions.

A table id is the table's folder relative to the lake root: `episodes`, `cards`,
`references`, `evaluations`, and one `steps/<env>` per environment (observation widths and
dtypes differ by env, and a Delta table has one schema; the folder is not named `env=<env>`
because hive readers such as Polars' `scan_delta` would then expect an `env` column). The
Delta log is the single source of truth: a file is part of a table when the log says so,
never because it sits in the folder.

Delta has no fixed-size lists and stores timestamps in microseconds, so files hold
`list<list<int8>>` and `timestamp[us]`; readers cast back to the lake's Arrow schemas
(`lake_schema.schema`), which also checks every row's widths.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from lake_schema.catalogue import ENVS
from lake_schema.errors import (
    LakeConflictError,
    LakeError,
    LakeFileError,
    LakeStorageError,
    LakeValueError,
    LegacyLakeError,
    SchemaVersionError,
)
from lake_schema.integrity import CONTENT_HASH, content_hash
from lake_schema.schema import (
    ADDED_COLUMNS,
    META_TABLE,
    META_VERSION,
    SCHEMA_VERSION,
    TableSpec,
    check_table,
    table_spec,
)
from lake_schema.storage import Lake

DELTA_LOG = "_delta_log"
WRITER_PROPERTIES = WriterProperties(
    compression="ZSTD", compression_level=6, max_row_group_size=64 * 1024)
ONE_FILE = 1 << 40  # target file size: one write of one key is one Parquet file
STAGING_FILE = re.compile(r"#\d+$")  # object_store's in-progress local writes
COMMIT_RETRIES = 8  # our own retries of a commit that delta-rs reports as a conflict
# An object-store failure quoted inside a DeltaError (a data file's upload that object_store
# gave up on), as opposed to a verdict on the data or the log
_STORE_FAILURE = re.compile(r"Generic (S3|GCS|MicrosoftAzure|HTTP|LocalFileSystem) error|"
                            r"Error performing |error sending request|timed out")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CAUSE_BREAK = re.compile(r"\s*\n\s*↳\s*")  # delta-rs's line before a nested cause
_USERINFO = re.compile(r"//[^/\s@]+@")  # user:password@ in a URL: never printed


# ---------------------------------------------------------------- addressing


def table_id(table: str, env: str | None = None) -> str:
    """`steps/<env>` for steps (env required), else the table's name."""
    check_table(table)
    if table == "steps":
        if env is None:
            raise LakeValueError("the steps table is one Delta table per env: pass env=")
        if env not in ENVS:
            raise LakeValueError(f"unknown environment {env!r}; environments: {', '.join(ENVS)}")
        return f"steps/{env}"
    return table


def parse_table_id(tid: str) -> tuple[str, str | None]:
    """Inverse of `table_id`; accepts `steps/env=lbf` and `steps:lbf` too."""
    tid = tid.strip("/")
    for sep in ("/env=", "/", ":"):
        if tid.startswith("steps" + sep):
            env = tid[len("steps" + sep):]
            table_id("steps", env)  # an unknown env is a LakeValueError
            return "steps", env
    if tid == "steps":
        raise LakeValueError("steps is one table per env: name it steps/<env>")
    return check_table(tid), None


def spec_of(tid: str) -> TableSpec:
    table, env = parse_table_id(tid)
    return table_spec(table, env)


def all_table_ids() -> list[str]:
    """Every table id the lake may hold, in commit order (steps before their index)."""
    return [*(f"steps/{e}" for e in ENVS), "episodes", "cards", "references", "evaluations"]


# ---------------------------------------------------------------- types


def _delta_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        return pa.list_(_delta_type(t.value_type))
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC")
    return t


def file_schema(spec: TableSpec) -> pa.Schema:
    """The columns of the table's Parquet files, in Delta's types, with their meanings (field
    metadata: written into the Delta schema of a new table and into every Parquet file)."""
    return pa.schema([f.with_type(_delta_type(f.type)) for f in spec.schema])


def delta_schema(spec: TableSpec) -> pa.Schema:
    """The Delta table's schema: file columns, then its partition columns.

    Tables created before the columns had meanings lack them in their Delta schema; delta-rs
    ignores field metadata when it checks a write against the table, so they take writes as
    before (tested), and their new files carry the meanings."""
    return pa.schema(list(file_schema(spec)) + [
        f for f in spec.partition_fields() if f.name in spec.delta_partitions])


def _shape(t: pa.DataType) -> str:
    """A type with list kinds and child names erased: what must match between a file and the
    table (delta-rs names list children `element`, pyarrow `item`)."""
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        return f"list<{_shape(t.value_type)}>"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.tz}]"
    return str(t)


def column_differences(got: pa.Schema, spec: TableSpec) -> list[str]:
    """How a file's columns differ from the table's (empty when they match). A column added
    to the table since (`schema.ADDED_COLUMNS`) may be missing: the file predates it."""
    have = {f.name: _shape(f.type) for f in got}
    want = {f.name: _shape(f.type) for f in spec.schema}
    added = ADDED_COLUMNS.get(spec.name, ())
    diff = [f"missing {n}" for n in want if n not in have and n not in added]
    diff += [f"unexpected {n}" for n in have if n not in want]
    diff += [f"{n} is {have[n]}, expected {want[n]}" for n in want
             if n in have and have[n] != want[n]]
    return diff


# ---------------------------------------------------------------- opening


def _description(spec: TableSpec) -> str:
    return json.dumps({META_VERSION.decode(): SCHEMA_VERSION, META_TABLE.decode(): spec.name},
                      sort_keys=True)


def check_metadata(dt: DeltaTable, tid: str) -> None:
    """The table's description names our table and schema version, or it is refused."""
    try:
        meta = json.loads(dt.metadata().description or "")
    except (ValueError, TypeError):
        meta = None
    if not isinstance(meta, dict) or META_VERSION.decode() not in meta:
        raise SchemaVersionError(tid, "a Delta table without a sable_lake schema version "
                                      "(foreign?)")
    version = str(meta[META_VERSION.decode()])
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            tid, f"schema version {version}; this sable-lake reads {SCHEMA_VERSION}")
    table = parse_table_id(tid)[0]
    if meta.get(META_TABLE.decode()) != table:
        raise LakeFileError(tid, f"metadata says table {meta.get(META_TABLE.decode())!r}, "
                                 f"not {table!r}")


def is_table(lake: Lake, tid: str) -> bool:
    return lake.exists(f"{tid}/{DELTA_LOG}")


def open_table(lake: Lake, tid: str, version: int | None = None) -> DeltaTable | None:
    """The Delta table `tid` (at `version`), checked; None when the lake has no such table.

    A folder with files but no log is the pre-Delta layout (or foreign): an error saying how
    to migrate, never an empty table.
    """
    if not is_table(lake, tid):
        files = [p for p in lake.find(tid) if f"/{DELTA_LOG}/" not in p]
        if not is_table(lake, tid):  # again: a concurrent writer may just have created it
            if files:
                raise LegacyLakeError(
                    tid, "files without a Delta log: a lake of the pre-Delta layout (or "
                         "foreign files); convert it with `python -m lake_schema migrate`")
            if version is not None:
                raise LakeValueError(f"{tid}: no such table, so no version {version}")
            return None
    cache = lake.__dict__.setdefault("_delta_tables", {})
    if version is None and tid in cache:
        dt = cache[tid]
        try:  # only the commits since: a full load replays the log (tens of ms)
            dt.update_incremental()
        except (DeltaError, OSError) as e:
            raise _read_error(tid, e) from e
        check_metadata(dt, tid)
        return dt
    try:
        dt = DeltaTable(lake.url(tid), version=version, storage_options=lake.storage_options())
    except TableNotFoundError as e:
        raise LakeFileError(tid, unreadable_log(e)) from e
    except (DeltaError, OSError) as e:
        if is_store_failure(e):
            raise _read_error(tid, e) from e
        if version is not None:
            raise LakeValueError(f"{tid}: cannot load version {version} "
                                 f"({one_line(e)})") from e
        raise LakeFileError(tid, unreadable_log(e)) from e
    check_metadata(dt, tid)
    if version is None:
        cache[tid] = dt  # kept up to date by update_incremental on the next open
    return dt


def ensure_table(lake: Lake, tid: str) -> DeltaTable:
    """Open `tid` for writing, creating it (empty, version 0) if the lake has none, and adding
    the columns the code has added since the table was created (`add_missing_columns`);
    concurrent creators are fine: the loser of the version-0 commit opens the winner's
    table."""
    dt = open_table(lake, tid)
    if dt is not None:
        return add_missing_columns(lake, tid, dt)
    lake.prepare_for_writing()
    spec = spec_of(tid)

    def create() -> None:
        with contextlib.suppress(DeltaError):  # another writer created it first: open theirs
            DeltaTable.create(
                lake.url(tid), delta_schema(spec), mode="ignore",
                partition_by=list(spec.delta_partitions), name=tid.replace("/", "_"),
                description=_description(spec), storage_options=lake.storage_options())

    # a creation whose answer was lost and that did land is ignored by the next try
    _tried_again(lake, tid, "creating the table", create)
    dt = open_table(lake, tid)
    if dt is None:
        raise LakeFileError(tid, "could not create the Delta table")
    return dt


def missing_columns(dt: DeltaTable, tid: str) -> list[pa.Field]:
    """The columns of `schema.ADDED_COLUMNS` that the table's Delta schema lacks (a table
    created before they were added), as the table would hold them."""
    spec = spec_of(tid)
    have = set(pa.schema(dt.schema().to_arrow()).names)
    return [f for f in file_schema(spec)
            if f.name in ADDED_COLUMNS.get(spec.name, ()) and f.name not in have]


def add_missing_columns(lake: Lake, tid: str, dt: DeltaTable) -> DeltaTable:
    """Add the table's missing added columns (nullable) to its Delta schema: one ADD COLUMN
    commit (a metadata change; no data file is rewritten, and every reader gives null for
    the files written before). Why on write: the rows the code writes have the columns, and
    delta-rs refuses rows whose columns the table does not have; a lake only read is never
    changed. A concurrent writer adding the same columns is fine: whichever commit lands,
    the columns are there afterwards (checked, or a LakeFileError naming the table)."""
    fields = missing_columns(dt, tid)
    if not fields:
        return dt
    from deltalake import Field  # delta-rs's own field type: what `alter` takes

    lake.prepare_for_writing()
    try:
        dt.alter.add_columns([Field.from_arrow(f) for f in fields])
    except (CommitFailedError, DeltaError, OSError) as e:
        dt = open_table(lake, tid)
        if dt is None or missing_columns(dt, tid):
            what = f"adding the column(s) {', '.join(f.name for f in fields)}"
            if is_store_failure(e):
                raise storage_error(tid, what, e, 1) from e
            raise LakeFileError(tid, f"{what} failed ({one_line(e)})") from e
        return dt
    dt.update_incremental()
    return dt


def unreadable_log(e: BaseException) -> str:
    return (f"unreadable Delta log ({one_line(e)}); `python -m lake_schema verify` names "
            "the entry")


def one_line(e: BaseException, limit: int | None = 400) -> str:
    """An error's message as one line: delta-rs nests the object store's causes over several
    lines (coloured `↳` marks), which become `: `-joined parts; a message over `limit` keeps
    its start and its end (the innermost cause, e.g. `operation timed out`)."""
    text = _CAUSE_BREAK.sub(": ", _ANSI.sub("", str(e)))
    text = _USERINFO.sub("//", " ".join(text.split())) or type(e).__name__
    if limit is not None and len(text) > limit:
        text = f"{text[:limit // 2 - 2]} .. {text[-(limit // 2):]}"
    return text


def is_store_failure(e: BaseException) -> bool:
    """A request the object store (S3, the disk) failed: timed out, refused, dropped, a
    server error after object_store's own retries; not a verdict on the data or the log.
    delta-rs raises OSError for these, or a DeltaError quoting the store's error."""
    if isinstance(e, LakeError | CommitFailedError):
        return False
    return isinstance(e, OSError) or (
        isinstance(e, DeltaError) and _STORE_FAILURE.search(str(e)) is not None)


def _read_error(tid: str, e: BaseException) -> LakeError:
    """A failed load of the table's log: the store's failure, or an unreadable log."""
    if is_store_failure(e):
        return LakeStorageError(tid, f"cannot read the Delta log: {one_line(e)}")
    return LakeFileError(tid, unreadable_log(e))


def storage_error(tid: str, what: str, e: BaseException, tries: int) -> LakeStorageError:
    """One line naming the table, what failed and the store's cause."""
    times = "once" if tries == 1 else f"{tries} times"
    return LakeStorageError(tid, f"{what} failed (tried {times}): {one_line(e)}")


def _commit_tries(lake: Lake) -> int:
    """How often a commit is tried when the store fails it: on S3 `S3Limits.commit_tries`
    (object_store never repeats a commit: its answer may be lost after it landed); a local
    disk's failure (full, read-only) is not cured by trying again."""
    return lake.s3_options.request_limits.commit_tries if lake.is_s3 else 1


def _try_again_or_raise(lake: Lake, tid: str, what: str, e: BaseException,
                        failures: int) -> None:
    """After the `failures`-th failure of `what` that is not a conflict: wait and return
    (try again) while an OSError has tries left, else raise a LakeStorageError (the store
    failed it) or a LakeFileError (delta-rs refused it), one line naming the table."""
    if isinstance(e, OSError) and failures < _commit_tries(lake):
        _before_next_try(lake, failures)
        return
    if is_store_failure(e):
        raise storage_error(tid, what, e, failures) from e
    raise LakeFileError(tid, f"delta-rs refused {what}: {one_line(e)}") from e


def _before_next_try(lake: Lake, failures: int) -> None:
    time.sleep(lake.s3_options.request_limits.commit_backoff_s * 2 ** (failures - 1))


def _tried_again(lake: Lake, tid: str, what: str, fn):
    """`fn()`, tried again (`_commit_tries`) while the store fails it with an OSError; then a
    LakeStorageError naming `tid` and `what`. Only for operations that a second try after
    a landed first one leaves the same (creating a table with mode="ignore")."""
    tries = _commit_tries(lake)
    for n in range(1, tries + 1):
        try:
            return fn()
        except OSError as e:
            if n == tries:
                raise storage_error(tid, what, e, n) from e
            _before_next_try(lake, n)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- files and partitions


@dataclass(frozen=True)
class DataFile:
    rel: str  # root-relative path
    size: int
    rows: int
    partition: dict[str, str]  # partition values as strings, env included for steps


def data_files(dt: DeltaTable, tid: str) -> list[DataFile]:
    """Every file of the table's snapshot, from the log, with its partition values."""
    return _to_files(pa.table(dt.get_add_actions(flatten=True)), tid)


def _to_files(table: pa.Table, tid: str) -> list[DataFile]:
    keep = [c for c in table.column_names
            if c.startswith("partition.") or c in ("path", "size_bytes", "num_records")]
    actions = table.select(keep).to_pylist()
    _, env = parse_table_id(tid)
    out = []
    for a in actions:
        values = {k[len("partition."):]: (None if v is None else str(v))
                  for k, v in a.items() if k.startswith("partition.")}
        if env is not None:
            values = {"env": env, **values}
        rel = inside_table(tid, urllib.parse.unquote(a["path"]))
        out.append(DataFile(rel, int(a["size_bytes"]), int(a.get("num_records") or 0), values))
    return sorted(out, key=lambda f: f.rel)


def inside_table(tid: str, path: str) -> str:
    """`tid/path`, root-relative, when `path` (a data path from a Delta log, relative to the
    table) names a file inside the table's folder; else a LakeFileError naming it. A log
    entry such as `../../victim/x.parquet` or an absolute URI would make every reader
    return another folder's rows as this table's."""
    rel = posixpath.normpath(f"{tid}/{path}")
    if ("://" in path or path.startswith("/") or not rel.startswith(f"{tid}/")
            or any(part in ("", ".", "..") for part in path.split("/"))):
        raise LakeFileError(f"{tid}/{path}", "a data path outside its table (refused: "
                                             "a crafted or foreign Delta log)")
    return rel


def key_files(dt: DeltaTable, tid: str, values: dict[str, object]) -> list[DataFile]:
    """The files of one write key in the table's snapshot."""
    import pyarrow.compute as pc

    spec = spec_of(tid)
    table = pa.table(dt.get_add_actions(flatten=True))
    mask = None
    for p in spec.key:
        if p not in spec.delta_partitions:
            continue
        col = pc.cast(table[f"partition.{p}"], pa.string())
        m = pc.equal(col, str(values[p]))
        mask = m if mask is None else pc.and_(mask, m)
    if mask is not None:
        table = table.filter(mask)
    return _to_files(table, tid)


# ---------------------------------------------------------------- commits


def is_conflict(e: BaseException) -> bool:
    """delta-rs's report that another commit (maybe our own earlier try's) got in first."""
    if isinstance(e, LakeError):
        return False
    return isinstance(e, CommitFailedError) or "concurrent" in str(e).lower()


def with_table_meanings(data: pa.Table, dt: DeltaTable) -> pa.Table:
    """`data` with the column meanings the table holds, where it holds one.

    delta-rs refuses a write whose field metadata differs from the table's, so a meaning
    reworded in `lake_schema.schema` would otherwise stop every lake created before it from
    taking writes. Such a table keeps its wording (`schema TABLE` prints the code's); a table
    without meanings takes the code's in its new files (`delta_schema`)."""
    stored = {f.name: f.metadata for f in pa.schema(dt.schema().to_arrow()) if f.metadata}
    fields = [f.with_metadata(stored[f.name]) if f.name in stored else f for f in data.schema]
    return pa.Table.from_arrays(data.columns, schema=pa.schema(fields))


def replace_key(
    lake: Lake, tid: str, data: pa.Table, values: dict[str, object],
    snapshot: DeltaTable | None = None, operation: str = "write",
) -> DeltaTable:
    """Replace all of one write key's rows with `data` in one commit (one file, its content
    hash recorded in the commit); returns the table at that commit. With `snapshot`, the
    commit is checked against every commit since it was loaded (CommitFailedError if one
    touched the same key); without, a conflicting commit is retried on a fresh snapshot
    (the last writer wins, whole; LakeConflictError after COMMIT_RETRIES).

    A commit the store fails (a timed-out PUT of the log entry) is tried again, against
    the same snapshot when one is given: if the failed try did land, the next one
    conflicts with it and is resolved like any conflict, so a key is never replaced by
    anything but whole writes. A failure left after `_commit_tries` is a LakeStorageError
    naming the table and the key; delta-rs's other refusals are a LakeFileError."""
    spec = spec_of(tid)
    # one record batch: delta-rs may write several batches in any order, and the rows'
    # order is part of the data (the episodes index points at steps by row number)
    data = data.select(delta_schema(spec).names).cast(delta_schema(spec)).combine_chunks()
    # the key's rows are one file (ONE_FILE), so the rows' hash is the file's (`integrity`)
    recorded = {"sable_lake.operation": operation,
                CONTENT_HASH: content_hash(data.drop_columns(list(spec.delta_partitions)))}
    where = "/".join(f"{p}={values[p]}" for p in spec.key)
    conflicts = failures = 0
    while True:
        dt = snapshot if snapshot is not None else ensure_table(lake, tid)
        try:
            write_deltalake(
                dt, with_table_meanings(data, dt), mode="overwrite",
                predicate=spec.key_predicate(values),
                partition_by=list(spec.delta_partitions), target_file_size=ONE_FILE,
                writer_properties=WRITER_PROPERTIES, storage_options=lake.storage_options(),
                commit_properties=CommitProperties(custom_metadata=recorded),
            )
            return dt
        except (CommitFailedError, DeltaError, OSError) as e:
            if is_conflict(e):
                conflicts += 1
                if snapshot is not None:
                    raise
                if conflicts == COMMIT_RETRIES:
                    raise LakeConflictError(
                        f"{tid} {where}", f"gave up after {COMMIT_RETRIES} conflicting "
                                          "commits") from e
                time.sleep(0.01 * conflicts)
                continue
            failures += 1
            _try_again_or_raise(lake, tid, f"the commit replacing {where}", e, failures)
            continue


def delete_where(lake: Lake, tid: str, predicate: str) -> list[str]:
    """Delete the rows matching `predicate` in one commit (retried on conflict, and when the
    store fails it, as `replace_key`); returns the files that left the table."""
    conflicts = failures = 0
    while True:
        dt = open_table(lake, tid)
        if dt is None:
            return []
        before = {f.rel for f in data_files(dt, tid)}
        try:
            dt.delete(predicate)
        except (CommitFailedError, DeltaError, OSError) as e:
            if is_conflict(e):
                conflicts += 1
                if conflicts == COMMIT_RETRIES:
                    raise LakeConflictError(tid, f"deleting {predicate}: gave up after "
                                                 f"{COMMIT_RETRIES} conflicting commits") from e
                time.sleep(0.01 * conflicts)
                continue
            failures += 1
            _try_again_or_raise(lake, tid, f"deleting {predicate}", e, failures)
            continue
        return sorted(before - {f.rel for f in data_files(dt, tid)})


# ---------------------------------------------------------------- versions


def existing_tables(lake: Lake) -> list[str]:
    """Ids of the tables this lake holds (Delta tables only), in `all_table_ids` order."""
    return [t for t in all_table_ids() if is_table(lake, t)]


def current_versions(lake: Lake, tids: Iterable[str]) -> dict[str, int]:
    """The current version of each table (tables not in the lake are left out)."""
    out = {}
    for tid in tids:
        dt = open_table(lake, tid)
        if dt is not None:
            out[tid] = int(dt.version())
    return out


def history(lake: Lake, tid: str) -> list[dict]:
    """The table's commits, newest first: version, time, operation, rows/files changed."""
    dt = open_table(lake, tid)
    if dt is None:
        raise LakeValueError(f"the lake {lake.root} has no table {tid}")
    try:
        commits = dt.history()
    except (DeltaError, OSError) as e:
        raise _read_error(tid, e) from e
    rows = []
    for h in commits:
        params, metrics = h.get("operationParameters") or {}, h.get("operationMetrics") or {}
        rows.append({
            "version": h.get("version"),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                  time.gmtime((h.get("timestamp") or 0) / 1000)),
            "operation": h.get("operation"),
            "predicate": params.get("predicate", ""),
            "added_files": metrics.get("num_added_files", ""),
            "removed_files": metrics.get("num_removed_files", ""),
            "added_rows": metrics.get("num_added_rows", ""),
        })
    return rows
