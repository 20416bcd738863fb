"""`python -m lake_schema`: look into a lake from the shell, without JAX or Dagster.

    python -m lake_schema ls                    tables, tasks, files, rows, bytes
    python -m lake_schema du                    bytes per table and env
    python -m lake_schema query "SELECT ..."    DuckDB over the lake's views
    python -m lake_schema verify [--deep]       every bad file named; exit 1 if any
    python -m lake_schema history TABLE         the table's versions (e.g. steps/lbf)
    python -m lake_schema versions              the current version of every table
    python -m lake_schema optimize [TABLE ...]  compact small files (while nobody writes)
    python -m lake_schema vacuum [--retention-hours H] [--dry-run]
                                                delete files no version needs any more
    python -m lake_schema migrate               convert a pre-Delta lake to Delta tables
    python -m lake_schema tasks [--env lbf] [--split demo-train] [--names]
                                                the task catalogue and its splits
    python -m lake_schema schema TABLE [--format table|markdown|json]
                                                every column's type and meaning, the keys
    python -m lake_schema import-vault PATH --task ENV/SCENARIO [--uid U] [--quality Q]
                                                an og-marl / flashbax Vault into the lake
    python -m lake_schema export-vault DEST --task ENV/SCENARIO --uid U [--quality Q]
                                                a lake selection as a Vault (og-marl reads it)
    python -m lake_schema export-hf DIR --task ENV/SCENARIO [--quality Q] [--run R]
                                                a lake selection as a Hugging Face dataset
    python -m lake_schema card ENV/SCENARIO [--run R] [--features N]
                                                a task dataset's card (statistics, references)
    python -m lake_schema card --backfill [ENV/SCENARIO]
                                                compute missing or stale cards from the rows

`--lake ROOT` (default: $SABLE_LAKE, else ./lake) names the lake, before or after the
command. Every command but `tasks`, `schema` and `import-vault` (which may start a lake)
needs a lake there: a root that holds none is an error naming it, never an empty lake.

Bad arguments exit with status 2, bad data (a missing root, a root that holds no lake, a
corrupted or foreign file, a table of another schema version, a table the lake does not
hold) or unreachable storage with status 1, each with one line on stderr naming it; never a
traceback. Ctrl-C exits 130; a reader that stops early (`| head`) ends it quietly, 141.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Sequence

import duckdb
from deltalake.exceptions import DeltaError

from lake_schema import delta, maintenance
from lake_schema.catalogue import (
    TASKS,
    UnknownTaskError,
    get_task,
    split_names,
    split_tasks,
    splits_of,
)
from lake_schema.duck import connect
from lake_schema.errors import LakeError, LakeRootError, LakeValueError
from lake_schema.schema import QUALITIES, SCHEMA_VERSION, TableDoc, describe_table
from lake_schema.storage import ROOT_ENV, Lake, resolve_root
from lake_schema.vault import TEAM_REWARD_RULES
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
    """(table, env, task, files, rows, bytes) from the Delta logs; no data file opened."""
    stats: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for tid in delta.existing_tables(lake):
        table = delta.parse_table_id(tid)[0]
        for f in delta.data_files(delta.open_table(lake, tid), tid):
            s = stats[(table, f.partition.get("env", "?"), f.partition.get("task", "?"))]
            s[0] += 1
            s[1] += f.rows
            s[2] += f.size
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


# The query's own fault (exit 2); any other DuckDB error is the data's or the disk's (exit 1).
_USER_SQL_ERRORS = (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException,
                    duckdb.ConversionException, duckdb.OutOfRangeException)


def _duckdb_message(e: duckdb.Error) -> str:
    """DuckDB's whole message on one line, hints included (`Candidate bindings: ...`), less
    the caret line that points into the query."""
    lines = [line.strip() for line in str(e).splitlines()]
    return " ".join(line for line in lines if line and set(line) != {"^"})


def cmd_query(lake: Lake, args: argparse.Namespace) -> int:
    con = connect(lake)
    try:
        cur = con.execute(args.sql)
        if cur is None:  # DuckDB's answer to SQL of only blanks and comments
            raise UsageError("query: the SQL holds no statement")
        columns = [d[0] for d in cur.description or []]
        rows = cur.fetchall()
    except _USER_SQL_ERRORS as e:
        raise UsageError(f"query failed: {_duckdb_message(e)}") from e
    except duckdb.Error as e:  # the data or the disk, not the query: exit 1
        raise LakeError(f"query failed: {_duckdb_message(e)}") from e
    except OSError as e:
        raise LakeError(f"query failed: {_first_line(e)}") from e
    _print_rows(columns, rows, args.format)
    return 0


def cmd_verify(lake: Lake, args: argparse.Namespace) -> int:
    report = verify(lake, deep=args.deep)
    for p in report.problems:
        print(f"BAD {p}")
    status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"verified {report.files} files, {report.rows} rows in {lake.root}: {status}")
    if report.unhashed:
        print(f"note: {report.unhashed} file(s) have no recorded content hash (written before "
              "hashes were recorded, or by another tool): their pages were read, their values "
              "not compared")
    return 0 if report.ok else 1


def _table_arg(tid: str) -> str:
    """An argparse type: a table id (`steps/lbf`, `episodes`), checked before the lake is."""
    try:
        table, env = delta.parse_table_id(tid)
    except LakeError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return delta.table_id(table, env)


def _task_arg(name: str) -> str:
    """An argparse type: a catalogue task name (`env/scenario`)."""
    try:
        return get_task(name).name
    except UnknownTaskError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def cmd_history(lake: Lake, args: argparse.Namespace) -> int:
    rows = delta.history(lake, args.table)
    cols = ["version", "time", "operation", "predicate", "added_files", "removed_files",
            "added_rows"]
    _print_rows(cols, [[r[c] for c in cols] for r in rows], args.format)
    return 0


def cmd_versions(lake: Lake, args: argparse.Namespace) -> int:
    versions = delta.current_versions(lake, delta.existing_tables(lake))
    _print_rows(["table", "version"], sorted(versions.items()), args.format)
    return 0


def _tables_arg(lake: Lake, tids: Sequence[str]) -> list[str]:
    """The tables named (each checked to be in the lake, as `history` does, so a mistyped
    env is an error rather than a quiet `0 0`), or every table the lake holds."""
    if not tids:
        return delta.existing_tables(lake)
    for tid in tids:
        if delta.open_table(lake, tid) is None:
            raise LakeValueError(f"the lake {lake.root} has no table {tid}")
    return tids


def cmd_optimize(lake: Lake, args: argparse.Namespace) -> int:
    rows = []
    for tid in _tables_arg(lake, args.tables):
        m = maintenance.optimize(lake, tid)
        rows.append((tid, m.get("numFilesRemoved", 0), m.get("numFilesAdded", 0)))
    _print_rows(["table", "files_removed", "files_added"], rows, args.format)
    return 0


def cmd_vacuum(lake: Lake, args: argparse.Namespace) -> int:
    rows = []
    for tid in _tables_arg(lake, args.tables):
        gone = maintenance.vacuum(lake, tid, args.retention_hours, dry_run=args.dry_run)
        rows.append((tid, len(gone)))
    _print_rows(["table", "would_delete" if args.dry_run else "deleted"], rows, args.format)
    return 0


def cmd_migrate(lake: Lake, args: argparse.Namespace) -> int:
    from lake_schema.migrate import migrate

    for line in migrate(lake, keep_old=args.keep_old):
        print(line)
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


def cmd_schema(lake: Lake, args: argparse.Namespace) -> int:
    """A table's columns, types, partitions, keys and meanings, from the code's schema (no
    lake needed): what `lake_schema.schema` defines and every new file carries."""
    try:
        doc = describe_table(args.table)
    except LakeValueError as e:
        raise UsageError(str(e)) from e
    if args.format == "json":
        print(json.dumps(dataclasses.asdict(doc)))
    elif args.format == "markdown":
        print(schema_markdown(doc))
    else:
        print(f"table {doc.name}: Delta table(s) {', '.join(doc.table_ids)}, schema version "
              f"{SCHEMA_VERSION}")
        print(f"partitions: {'/'.join(doc.partitions)}")
        print(f"write key: {', '.join(doc.write_key)} (a write replaces every row of its key)")
        print(f"row key: {', '.join(doc.row_key)} (one row each)")
        _print_rows(["column", "type", "partition", "meaning"],
                    [(c.name, c.type, "yes" if c.partition else "", c.description)
                     for c in doc.columns], "table")
    return 0


def schema_markdown(doc: TableDoc) -> str:
    """A table's columns as a Markdown table: what `schema TABLE --format markdown` prints."""
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    for c in doc.columns:
        where = " (partition)" if c.partition else ""
        cells = [f"`{c.name}`{where}", c.type, c.description]
        lines.append("| " + " | ".join(v.replace("|", "\\|") for v in cells) + " |")
    return "\n".join(lines)


def _add_schema_command(sub) -> None:
    p = sub.add_parser("schema", help="a table's columns, types, keys and meanings")
    p.set_defaults(fn=cmd_schema)
    p.add_argument("table", help="steps (or steps/<env>), episodes, references, evaluations")
    p.add_argument("--format", choices=["table", "markdown", "json"], default="table")


# delta-rs holds the retention as i64 milliseconds (it panics past ~2.5e12 hours); a billion
# hours keeps every version of any lake just as well.
MAX_RETENTION_HOURS = 10**9


def _retention_hours(text: str) -> int:
    """An argparse type: whole hours in [0, MAX_RETENTION_HOURS], a fraction rounded up (Delta
    vacuums by whole hours; rounding down would delete files the user asked to keep)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_RETENTION_HOURS:  # nan fails both
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of hours from 0 to {MAX_RETENTION_HOURS:,}")
    return math.ceil(value)


def _root_arg(text: str) -> str:
    """An argparse type: a root `Lake` accepts (not empty, a local path or s3://bucket)."""
    try:
        resolve_root(text)
    except LakeRootError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return text


def _path_arg(text: str) -> str:
    """An argparse type: a path, not empty (which would mean the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return text


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (argparse turns the error into exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def cmd_import_vault(lake: Lake, args: argparse.Namespace) -> int:
    """`import-vault`: one line per uid as it is imported (so a later uid's failure does
    not hide the runs already in the lake). tensorstore loads here, on use."""
    from lake_schema.vault import TeamRewardError, import_vault

    try:
        import_vault(lake, args.path, args.task, args.uid or None, args.quality, args.run,
                     replace=args.replace, team_reward=args.team_reward,
                     memory_bytes=args.memory_mb << 20,
                     on_done=lambda r: print(r.line(), flush=True))
    except TeamRewardError as e:  # the Vault is fine; the command needs --team-reward
        raise UsageError(str(e)) from e
    return 0


def cmd_export_vault(lake: Lake, args: argparse.Namespace) -> int:
    """`export-vault`: one line naming the Vault written."""
    from lake_schema.vault import export_vault

    r = export_vault(lake, args.dest, args.task, args.uid, args.quality, args.checkpoints,
                     args.run or None)
    print(f"wrote {r.path}: {r.episodes} episodes, {r.steps} steps")
    return 0


def _checkpoint_range(text: str) -> tuple[int, int]:
    """An argparse type: `K` or `LO:HI` (inclusive)."""
    lo, _, hi = text.partition(":")
    try:
        return (int(lo), int(hi)) if hi else (int(lo), int(lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K or LO:HI") from None


def _add_vault_commands(sub) -> None:
    """`import-vault` / `export-vault` (lake_schema.vault)."""

    def add(name: str, fn, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(fn=fn)
        return p

    imp = add("import-vault", cmd_import_vault, "convert an og-marl / flashbax Vault")
    imp.add_argument("path", type=_path_arg,
                     help="<rel_dir>/<vault_name> (its uids) or one <uid> folder")
    imp.add_argument("--task", required=True, type=_task_arg,
                     help="env/scenario, e.g. rware/tiny-2ag")
    imp.add_argument("--uid", action="append", help="uid to import (repeatable; default all)")
    imp.add_argument("--quality", choices=QUALITIES,
                     help="default from the uid: Good -> high, Medium / Poor -> low")
    imp.add_argument("--run", help="run id (default vault-<uid>; a prefix for several uids)")
    imp.add_argument("--replace", action="store_true", help="replace a run already imported")
    imp.add_argument("--team-reward", choices=TEAM_REWARD_RULES,
                     help="per-agent rewards -> team reward: sum, mean, or shared (every "
                          "agent holds the team's; default: the Vault's rule if it names "
                          "one, else the env's)")
    imp.add_argument("--memory-mb", type=_positive_int, default=256,
                     help="memory budget (default 256)")
    exp = add("export-vault", cmd_export_vault, "write a lake selection as a Vault")
    exp.add_argument("dest", type=_path_arg, help="<rel_dir>/<vault_name>; the Vault is DEST/<uid>")
    exp.add_argument("--task", required=True, type=_task_arg, help="env/scenario")
    exp.add_argument("--uid", required=True, help="the Vault uid, e.g. Good")
    exp.add_argument("--quality", choices=QUALITIES)
    exp.add_argument("--checkpoints", type=_checkpoint_range, help="K or LO:HI (inclusive)")
    exp.add_argument("--run", action="append", help="run id (repeatable; default all)")


def _new_folder_arg(text: str) -> str:
    """An argparse type: a folder that does not exist yet or is empty (checked before the
    lake, so a mistake costs no read)."""
    from lake_schema.export_hf import check_dest

    try:
        check_dest(_path_arg(text))
    except LakeValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return text


def _add_export_hf_command(sub) -> None:
    """`export-hf`: a lake selection as a Hugging Face dataset folder (lake_schema.export_hf)."""

    def cmd_export_hf(lake: Lake, args: argparse.Namespace) -> int:
        from lake_schema.export_hf import export_hf

        r = export_hf(lake, args.dest, args.task, args.quality, args.run)
        configs = ", ".join(dict.fromkeys(s.config for s in r.splits))
        print(f"wrote {r.path}: {r.episodes} episodes, {r.steps} steps; configs {configs}")
        return 0

    p = sub.add_parser("export-hf", help="write a lake selection as a Hugging Face dataset")
    p.set_defaults(fn=cmd_export_hf)
    p.add_argument("dest", type=_new_folder_arg, help="the dataset folder (new or empty)")
    p.add_argument("--task", required=True, action="append", type=_task_arg,
                   help="env/scenario, one config each (repeatable)")
    p.add_argument("--quality", action="append", choices=QUALITIES,
                   help="a split to write (repeatable; default: every quality held)")
    p.add_argument("--run", action="append", help="run id (repeatable; default all)")


def _add_card_command(sub) -> None:
    """`card`: print a task dataset's card, or backfill cards (lake_schema.cards)."""

    def cmd_card(lake: Lake, args: argparse.Namespace) -> int:
        from lake_schema.cards import card_json, dataset_cards, format_card
        from lake_schema.writer import backfill_cards

        if args.backfill:
            task = get_task(args.task) if args.task is not None else None
            lines = backfill_cards(lake, task.env if task else None,
                                   task.scenario if task else None)
            for line in lines:
                print(line)
            print(f"{len(lines)} card(s) written or removed in {lake.root}")
            return 0
        if args.task is None:
            raise UsageError("card needs a task (env/scenario), or --backfill")
        if args.features is not None and args.features < 0:
            raise UsageError("--features must be >= 0")
        cards = dataset_cards(lake, get_task(args.task), args.run)
        if args.format == "json":
            print(json.dumps([card_json(c) for c in cards]))
        else:
            print("\n\n".join(format_card(c, args.features) for c in cards))
        return 0

    p = sub.add_parser("card", help="a task dataset's card; --backfill computes missing ones")
    p.set_defaults(fn=cmd_card)
    p.add_argument("task", nargs="?", type=_task_arg, help="env/scenario, e.g. lbf/8x8-2p-2f")
    p.add_argument("--run", help="one run's card (default: every run of the task)")
    p.add_argument("--features", type=int, help="print the first N observation features only")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--backfill", action="store_true",
                   help="compute the cards of checkpoints without a current one (all tasks, "
                        "or TASK's), remove cards of deleted checkpoints")


# The commands that read no lake (`tasks`, `schema`: the code's catalogue and schema) or may
# start one (`import-vault`, as a writer does); every other needs a lake at the root.
NO_LAKE_NEEDED = ("tasks", "schema", "import-vault")


def _add_lake_flag(parser: argparse.ArgumentParser) -> None:
    """`--lake` on the main parser and on every command's, so it goes before or after the
    command; unset (SUPPRESS) where not given, so one position never blanks the other."""
    parser.add_argument("--lake", type=_root_arg, default=argparse.SUPPRESS,
                        help="lake root (default: $SABLE_LAKE, else ./lake)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lake_schema", description=__doc__.split("\n")[0])
    _add_lake_flag(parser)
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
    add("history", cmd_history, "a table's versions").add_argument(
        "table", type=_table_arg, help="episodes, references, evaluations or steps/<env>")
    add("versions", cmd_versions, "the current version of every table")
    add("optimize", cmd_optimize, "compact small files (run while nobody writes)").add_argument(
        "tables", nargs="*", type=_table_arg, help="table ids (default: all)")
    vac = add("vacuum", cmd_vacuum, "delete files that no kept version needs (while nobody "
                                    "writes)")
    vac.add_argument("tables", nargs="*", type=_table_arg, help="table ids (default: all)")
    vac.add_argument("--retention-hours", type=_retention_hours, default=168,
                     help="keep files older versions need for this long, in whole hours (a "
                          "fraction rounds up; default 168; 0: only the current version "
                          "stays readable)")
    vac.add_argument("--dry-run", action="store_true", help="only count what would go")
    add("migrate", cmd_migrate, "convert a pre-Delta lake into Delta tables").add_argument(
        "--keep-old", action="store_true", help="keep the old files under _pre_delta/")
    _add_vault_commands(sub)
    _add_export_hf_command(sub)
    _add_schema_command(sub)
    _add_card_command(sub)
    tasks = add("tasks", cmd_tasks, "list the task catalogue")
    tasks.add_argument("--env")
    tasks.add_argument("--split", help="only this split's tasks (needs --env)")
    tasks.add_argument("--names", action="store_true",
                       help="comma-separated task names only (a split's partitions)")
    for command in sub.choices.values():
        _add_lake_flag(command)
    return parser


def _first_line(e: BaseException) -> str:
    """The message on one line (delta-rs's nested causes too), never cut short."""
    return delta.one_line(e, limit=None)


def _silence_stdout() -> None:
    """After a closed pipe: stdout to /dev/null, so the interpreter's flush at exit does not
    report the same broken pipe again."""
    try:
        stdout = sys.stdout.fileno()
    except (OSError, ValueError):  # no file descriptor (a captured stdout): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stdout)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure is one line on stderr (2: usage, 1: the lake)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"sable-lake: error: {_first_line(e)}", file=sys.stderr)
        return 2
    try:
        lake = Lake(getattr(args, "lake", None))
    except LakeRootError as e:  # --lake passed _root_arg: the root is $SABLE_LAKE's
        print(f"sable-lake: error: ${ROOT_ENV}: {_first_line(e)}", file=sys.stderr)
        return 2
    try:
        if args.command not in NO_LAKE_NEEDED:
            lake.check_holds_lake()
        status = args.fn(lake, args)
        sys.stdout.flush()  # a reader gone (`| head -1`) shows here, not at exit
        return status
    except BrokenPipeError:  # the reader has what it wanted: no error, the shell's status
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a command killed by the closed pipe returns
    except (UsageError, UnknownTaskError) as e:
        print(f"sable-lake: error: {_first_line(e)}", file=sys.stderr)
        return 2
    except (LakeError, DeltaError, duckdb.Error, OSError, ValueError) as e:
        print(f"sable-lake: error: {_first_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sable-lake: error: interrupted", file=sys.stderr)
        return 130  # the shell's status for a command ended by SIGINT
    except Exception as e:  # a case the lake has no message for: still one line, named
        print(f"sable-lake: error: {_first_line(e)} ({type(e).__name__}; unexpected, please "
              "report it)", file=sys.stderr)
        return 1
