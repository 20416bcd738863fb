"""`python -m lake_schema`: look into a lake from the shell, without JAX or Dagster.

    python -m lake_schema ls                    tables, tasks, files, rows, bytes
    python -m lake_schema du                    bytes per table and env
    python -m lake_schema query "SELECT ..."    DuckDB over the lake's views
    python -m lake_schema verify [--deep]       every bad file named; exit 1 if any
    python -m lake_schema recover               roll interrupted writes forward
    python -m lake_schema tasks [--env lbf] [--split demo-train] [--names]
                                                the task catalogue and its splits

Bad arguments exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence

import duckdb

from lake_schema.catalogue import TASKS, UnknownTaskError, split_names, split_tasks, splits_of
from lake_schema.duck import connect
from lake_schema.reader import open_checked, parse_partition
from lake_schema.schema import TABLES
from lake_schema.storage import Lake
from lake_schema.transaction import recover
from lake_schema.verify import verify


class UsageError(Exception):
    """Bad command-line input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; we want one line
        raise UsageError(message)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[object]], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
        return
    if fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows(rows)
        return
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for i, r in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({len(rows)} rows)")


def _partition_stats(lake: Lake) -> list[tuple[str, str, str, int, int, int]]:
    """(table, env, task, files, rows, bytes) from file footers; no data pages read."""
    stats: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for table in TABLES:
        for rel in lake.glob(f"{table}/env=*/task=*/**/*.parquet"):
            values = parse_partition(rel)
            s = stats[(table, values.get("env", "?"), values.get("task", "?"))]
            s[0] += 1
            with open_checked(lake, rel) as pf:
                s[1] += pf.metadata.num_rows
            s[2] += lake.fs.size(lake.path(rel))
    return [(*k, *v) for k, v in sorted(stats.items())]


def cmd_ls(lake: Lake, args: argparse.Namespace) -> int:
    rows = [(t, e, k, f, r, _human(b)) for t, e, k, f, r, b in _partition_stats(lake)]
    print(f"lake: {lake.root}")
    _print_rows(["table", "env", "task", "files", "rows", "bytes"], rows, args.format)
    return 0


def cmd_du(lake: Lake, args: argparse.Namespace) -> int:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for table, env, _task, _f, _r, size in _partition_stats(lake):
        totals[(table, env)] += size
    rows = [(t, e, _human(b), b) for (t, e), b in sorted(totals.items())]
    rows.append(("total", "", _human(sum(totals.values())), sum(totals.values())))
    _print_rows(["table", "env", "size", "bytes"], rows, args.format)
    return 0


def cmd_query(lake: Lake, args: argparse.Namespace) -> int:
    con = connect(lake)
    try:
        cur = con.execute(args.sql)
    except duckdb.Error as e:
        raise UsageError(f"query failed: {str(e).splitlines()[0]}") from e
    columns = [d[0] for d in cur.description or []]
    _print_rows(columns, cur.fetchall(), args.format)
    return 0


def cmd_verify(lake: Lake, args: argparse.Namespace) -> int:
    report = verify(lake, deep=args.deep)
    for p in report.problems:
        print(f"BAD {p}")
    status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"verified {report.files} files, {report.rows} rows in {lake.root}: {status}")
    return 0 if report.ok else 1


def cmd_recover(lake: Lake, args: argparse.Namespace) -> int:
    for line in recover(lake, min_age_s=args.min_age):
        print(line)
    print("lake is consistent")
    return 0


def cmd_tasks(lake: Lake, args: argparse.Namespace) -> int:
    if args.split is not None:
        if args.env is None:
            raise UsageError("--split needs --env (splits are per environment)")
        tasks = split_tasks(args.env, args.split)  # unknown env or split -> UnknownTaskError
    else:
        if args.env is not None:
            split_names(args.env)  # unknown env -> UnknownTaskError
        tasks = [t for t in TASKS.values() if args.env is None or t.env == args.env]
    if args.names:  # e.g. the partitions of a split's backfill
        print(",".join(t.name for t in tasks))
        return 0
    rows = [(t.name, t.num_agents, t.time_limit, ",".join(splits_of(t)), t.note) for t in tasks]
    _print_rows(["task", "agents", "time_limit", "splits", "note"], rows, args.format)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lake_schema", description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="lake root (default: $SABLE_LAKE or ./lake)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, fn, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(fn=fn)
        p.add_argument("--format", choices=["table", "csv", "json"], default="table")
        return p

    add("ls", cmd_ls, "tables, tasks, files, rows and bytes per partition")
    add("du", cmd_du, "bytes per table and env")
    add("query", cmd_query, "run SQL over the views").add_argument("sql")
    add("verify", cmd_verify, "check every file").add_argument(
        "--deep", action="store_true", help="also read every data page")
    add("recover", cmd_recover, "roll interrupted writes forward").add_argument(
        "--min-age", type=float, default=0.0, help="only journals older than this (s)")
    tasks = add("tasks", cmd_tasks, "list the task catalogue")
    tasks.add_argument("--env")
    tasks.add_argument("--split", help="only this split's tasks (needs --env)")
    tasks.add_argument("--names", action="store_true",
                       help="comma-separated task names only (a split's partitions)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        lake = Lake(args.root)
        return args.fn(lake, args)
    except (UsageError, UnknownTaskError, ValueError) as e:
        print(f"sable-lake: error: {e}", file=sys.stderr)
        return 2
