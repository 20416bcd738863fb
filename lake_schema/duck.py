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
from lake_schema.reader import Selection, indexed_steps, snapshot
from lake_schema.schema import ADDED_COLUMNS, TABLES, table_spec
from lake_schema.storage import Lake


def _version(as_of: Mapping[str, int] | None, tid: str) -> int | None:
    return None if as_of is None else as_of.get(tid)


def connect(lake: Lake, database: str = ":memory:",
            as_of: Mapping[str, int] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views `steps`, `episodes`, `cards`, `references`, `evaluations`.

    A table with no data yet gets an empty view, so queries never fail for lack of data.
    `as_of` pins tables to versions ({table id: version}, as `reader.table_versions` gives).
    The steps views hold exactly the steps files that the `episodes` view's index version
    lists (`reader.indexed_steps`), so a join of the two never mixes two writes of a key.
    A steps file the index lists but the lake lacks fails the queries that read that env's
    steps, naming the file; queries of the other views still work.
    """
    lake.check_readable()
    con = duckdb.connect(database)
    if lake.is_s3:
        con.register_filesystem(lake.fs)
    index = snapshot(lake, "episodes", Selection(as_of=_version(as_of, "episodes")))
    files = {"episodes": index.files,
             "steps": indexed_steps(lake, Selection(as_of=index.versions)).files}
    for table in TABLES:
        if table not in files:
            files[table] = snapshot(lake, table, Selection(as_of=_version(as_of, table))).files
        if table == "steps":
            selects = [_steps_view(con, lake, env, [f.rel for f in files[table]
                                                    if f.partition["env"] == env])
                       for env in ENVS]
            selects = [s for s in selects if s]
        else:
            rels = [f.rel for f in files[table]]
            selects = [f"SELECT * FROM {_read_parquet(lake, table, rels)}"] if rels else []
        source = " UNION ALL BY NAME ".join(selects) if selects else _empty_select(table)
        con.execute(f'CREATE OR REPLACE VIEW "{table}" AS {source}')
        _add_missing_columns(con, table, source)
    return con


def _steps_view(con: duckdb.DuckDBPyConnection, lake: Lake, env: str, rels: list[str]) -> str:
    """Create the `steps_<env>` view over `rels` and return its SELECT ('' when empty). When
    a file is missing, the view fails when read, naming it (DuckDB would otherwise fail at
    view creation, taking every other view with it)."""
    if not rels:
        return ""
    missing = sorted(set(rels) - set(lake.find(delta.table_id("steps", env))))
    if missing:
        message = f"{missing[0]}: listed by the episodes index but missing".replace("'", "''")
        select = (f"SELECT *, '{env}' AS env FROM ({_null_row('steps')}) "
                  f"WHERE error('{message}') IS NULL")
    else:
        select = f"SELECT *, '{env}' AS env FROM {_read_parquet(lake, 'steps', rels)}"
    con.execute(f'CREATE OR REPLACE VIEW "steps_{env}" AS {select}')
    return select


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


def _null_row(table: str) -> str:
    """One row of NULLs typed as the table's columns (steps typed as lbf's)."""
    spec = table_spec(table, "lbf") if table == "steps" else table_spec(table)
    con = duckdb.connect()
    con.register("empty", spec.full_schema().empty_table())
    cols = con.execute("DESCRIBE empty").fetchall()
    con.close()
    return "SELECT " + ", ".join(f'NULL::{ctype} AS "{name}"' for name, ctype, *_ in cols)


def _empty_select(table: str) -> str:
    return f"{_null_row(table)} WHERE false"
