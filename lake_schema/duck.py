"""DuckDB over the lake: one view per table, local or S3, with partition pruning.

Each view is DuckDB's own `read_parquet([...], hive_partitioning = true)` over exactly the
files the Delta log lists for the table's current snapshot (or a pinned version): no DuckDB
extension is downloaded (these machines cannot; on S3 the lake's s3fs filesystem is
registered with DuckDB), files outside the log are never read, and a filter on
env/task/run/quality/checkpoint opens only the matching files. (A view over
`DeltaTable.to_pyarrow_dataset()` works too, but measured 2-3x slower: DuckDB's own Parquet
reader is parallel.) Tables of another schema version and partition values the catalogue
does not know are refused when the connection is made, naming the table or file.

`steps` is one Delta table per env; its view is their union (by column name) with an `env`
column, and `steps_<env>` views hold one env each.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from lake_schema import delta
from lake_schema.catalogue import ENVS
from lake_schema.reader import check_partition_values
from lake_schema.schema import ADDED_COLUMNS, TABLES, table_spec
from lake_schema.storage import Lake


def _version(as_of: Mapping[str, int] | None, tid: str) -> int | None:
    return None if as_of is None else as_of.get(tid)


def connect(lake: Lake, database: str = ":memory:",
            as_of: Mapping[str, int] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views `steps`, `episodes`, `cards`, `references`, `evaluations`.

    A table with no data yet gets an empty view, so queries never fail for lack of data.
    `as_of` pins tables to versions ({table id: version}, as `reader.table_versions` gives).
    """
    lake.check_readable()
    con = duckdb.connect(database)
    if lake.is_s3:
        con.register_filesystem(lake.fs)
    for table in TABLES:
        tids = [delta.table_id("steps", e) for e in ENVS] if table == "steps" else [table]
        selects = []
        for tid in tids:
            dt = delta.open_table(lake, tid, _version(as_of, tid))
            if dt is None:
                continue
            files = delta.data_files(dt, tid)
            for f in files:
                check_partition_values(table, f)
            if not files:
                continue
            src = _read_parquet(lake, table, [f.rel for f in files])
            if table == "steps":
                env = tid.split("/", 1)[1]
                selects.append(f"SELECT *, '{env}' AS env FROM {src}")
                con.execute(f'CREATE OR REPLACE VIEW "steps_{env}" AS {selects[-1]}')
            else:
                selects.append(f"SELECT * FROM {src}")
        source = " UNION ALL BY NAME ".join(selects) if selects else _empty_select(table)
        con.execute(f'CREATE OR REPLACE VIEW "{table}" AS {source}')
        _add_missing_columns(con, table, source)
    return con


def _add_missing_columns(con: duckdb.DuckDBPyConnection, table: str, source: str) -> None:
    """Give the view the table's added columns (`schema.ADDED_COLUMNS`) that none of its
    files has yet (a lake written before them), as NULL: not computed."""
    added = ADDED_COLUMNS.get(table, ())
    if not added:
        return
    have = {row[0] for row in con.execute(f'DESCRIBE "{table}"').fetchall()}
    missing = [c for c in added if c not in have]
    if not missing:
        return
    types = {name: ctype for name, ctype, *_ in con.execute(
        f"DESCRIBE {_empty_select(table)}").fetchall()}
    nulls = ", ".join(f'NULL::{types[c]} AS "{c}"' for c in missing)
    con.execute(f'CREATE OR REPLACE VIEW "{table}" AS SELECT *, {nulls} FROM ({source})')


def _read_parquet(lake: Lake, table: str, rels: list[str]) -> str:
    spec = table_spec(table, "lbf" if table == "steps" else None)
    types = {p: "INTEGER" if p == "checkpoint" else "VARCHAR" for p in spec.delta_partitions}
    hive = "{" + ", ".join(f"'{k}': '{v}'" for k, v in types.items()) + "}"
    paths = ", ".join("'" + lake.url(r).replace("'", "''") + "'" for r in rels)
    # files written before an added column lack it: match the files' columns by name
    union = ", union_by_name = true" if ADDED_COLUMNS.get(table) else ""
    return f"read_parquet([{paths}], hive_partitioning = true, hive_types = {hive}{union})"


def _empty_select(table: str) -> str:
    spec = table_spec(table, "lbf") if table == "steps" else table_spec(table)
    con = duckdb.connect()
    con.register("empty", spec.full_schema().empty_table())
    cols = con.execute("DESCRIBE empty").fetchall()
    con.close()
    casts = ", ".join(f'NULL::{ctype} AS "{name}"' for name, ctype, *_ in cols)
    return f"SELECT {casts} WHERE false"
