"""DuckDB over the lake: one view per table, local or S3, with hive partition pruning.

The views are plain `read_parquet(..., hive_partitioning=true)` over the table folders, so a
query that filters on env/task/run/quality/checkpoint opens only the matching files, exactly
as a user running DuckDB directly on the files would.
For S3 the lake's s3fs filesystem is registered with DuckDB (its httpfs extension is fetched
at run time, which these machines cannot do).
"""

from __future__ import annotations

import duckdb

from lake_schema.schema import LAYOUT, TABLES, table_spec
from lake_schema.storage import Lake


def _hive_types(table: str) -> str:
    partitions, _ = LAYOUT[table]
    types = {p: "INTEGER" if p == "checkpoint" else "VARCHAR" for p in partitions}
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in types.items()) + "}"


def table_source(lake: Lake, table: str) -> str:
    """The `read_parquet(...)` expression for one table: what a view is defined as."""
    glob = lake.url(f"{table}/**/*.parquet").replace("'", "''")
    return (
        f"read_parquet('{glob}', hive_partitioning = true, hive_types = {_hive_types(table)})"
    )


def connect(lake: Lake, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views `steps`, `episodes`, `references`, `evaluations`.

    A table with no files yet gets an empty view, so queries never fail for lack of data.
    Binding a view reads one file's footer; a filtered query opens only matching files.
    """
    con = duckdb.connect(database)
    if lake.is_s3:
        con.register_filesystem(lake.fs)
    for table in TABLES:
        if lake.glob(f"{table}/**/*.parquet"):
            source = f"SELECT * FROM {table_source(lake, table)}"
        else:
            source = _empty_select(table)
        con.execute(f'CREATE OR REPLACE VIEW "{table}" AS {source}')
    return con


def _empty_select(table: str) -> str:
    spec = table_spec(table, "lbf") if table == "steps" else table_spec(table)
    con = duckdb.connect()
    con.register("empty", spec.full_schema().empty_table())
    cols = con.execute("DESCRIBE empty").fetchall()
    con.close()
    casts = ", ".join(f'NULL::{ctype} AS "{name}"' for name, ctype, *_ in cols)
    return f"SELECT {casts} WHERE false"
