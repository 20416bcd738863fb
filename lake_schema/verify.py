"""`verify`: every table and file of the lake checked, and every bad one named.

Per table: a Delta table of our schema version. Per file the log lists: valid partition
values (the path agreeing with the log), present, Parquet, the table's columns, the row
count the log recorded; with `deep=True` every data page is read and cast to the table's
Arrow schema. Files in a table's folder that the log never listed (left by a killed
writer, a losing concurrent commit, or dropped in by hand) are named; files the log removed
but `vacuum` has not deleted yet are history (readable `as_of` older versions), not
problems. Across tables: every episodes row points at a steps file the steps table holds,
for the same key and within its rows, every steps file has its index rows, and every
indexed checkpoint has one current dataset card (and every card a checkpoint).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from lake_schema import delta
from lake_schema.catalogue import ENVS
from lake_schema.delta import DELTA_LOG, DataFile
from lake_schema.errors import LakeError, LakeFileError
from lake_schema.reader import (
    check_partition_values,
    open_checked,
    read_files,
    with_added_columns,
)
from lake_schema.schema import TABLES, table_spec
from lake_schema.storage import Lake

LEGACY_DIRS = ("_journal", "_staging")


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str
    # A file outside the Delta log (an interrupted or losing write's): no reader sees it, so
    # it blocks nothing; `vacuum` removes it.
    leftover: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class VerifyReport:
    files: int
    rows: int
    problems: tuple[Problem, ...]
    versions: dict | None = None  # {table id: version} verified

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_file(lake: Lake, table: str, f: DataFile, deep: bool) -> int:
    check_partition_values(table, f)
    spec = table_spec(table, f.partition.get("env"))
    with open_checked(lake, f.rel) as pf:
        n = pf.metadata.num_rows
        if f.rows and n != f.rows:
            raise LakeFileError(f.rel, f"{n} rows, the Delta log recorded {f.rows}")
        if deep:
            try:
                for i in range(pf.num_row_groups):
                    group = pf.read_row_group(i, use_threads=False)
                    with_added_columns(group, spec, spec.schema.names, group.num_rows).cast(
                        spec.schema)
            except Exception as e:
                raise LakeFileError(f.rel, f"corrupted data pages ({e})") from e
    return n


def _untracked(lake: Lake, tid: str, dt, live: set[str]) -> list[str]:
    """Files under the table's folder that no version of its log lists."""
    try:
        removed = {f"{tid}/{p}" for p in dt.vacuum(
            retention_hours=0, dry_run=True, enforce_retention_duration=False)}
    except Exception:  # a log we cannot scan: every extra file is named
        removed = set()
    out = []
    for rel in lake.find(tid):
        inner = rel[len(tid) + 1:]
        if inner.startswith(DELTA_LOG + "/") or rel in live or rel in removed:
            continue
        out.append(rel)
    return out


def _check_cards(lake: Lake, index_rows: list[dict], card_files: list[DataFile] | None,
                 problems: list[Problem]) -> None:
    """Every indexed checkpoint has one current dataset card (naming the steps file its
    episodes point at), and every card a checkpoint: a lake written before cards, or a write
    killed between its episodes and card commits, is named with the command that fixes it."""
    fix = "`python -m lake_schema card --backfill` recomputes it"
    if card_files is None:  # no cards table
        if index_rows:
            problems.append(Problem("cards", "no dataset cards (a lake written before cards): "
                                             "`python -m lake_schema card --backfill` "
                                             "computes them"))
        return
    parts = ["env", "task", "run", "quality", "checkpoint"]
    cards = read_files(lake, [f.rel for f in card_files], "cards", None,
                       [*parts, "steps_file"]).to_pylist() if card_files else []

    def key(r: dict) -> str:
        return "cards/" + "/".join(f"{p}={r[p]}" for p in parts)

    have = {key(r): r["steps_file"] for r in cards}
    want = {key(r): r["steps_file"] for r in index_rows}
    for k, steps_file in sorted(want.items()):
        if k not in have:
            problems.append(Problem(k, f"no dataset card for this checkpoint (a write killed "
                                       f"before its card?): {fix}"))
        elif have[k] != steps_file:
            problems.append(Problem(k, f"stale dataset card: it summarises {have[k]}, the "
                                       f"checkpoint's steps are {steps_file}: {fix}"))
    for k in sorted(set(have) - set(want)):
        problems.append(Problem(k, "dataset card of a checkpoint the episodes table does not "
                                   f"hold (its rows were deleted): {fix} (and removes it)"))


def _cross_check(lake: Lake, steps: dict[str, dict[str, DataFile]],
                 index_files: list[DataFile], card_files: list[DataFile] | None,
                 problems: list[Problem]) -> None:
    """Every index row has its steps file (same key, rows in range); no unindexed steps; the
    cards match the index."""
    if not index_files:
        rows = None
    else:
        rows = read_files(lake, [f.rel for f in index_files], "episodes", None,
                          ["env", "task", "run", "quality", "checkpoint", "steps_file",
                           "first_row", "length"]).to_pylist()
    referenced: set[str] = set()
    bad_keys: dict[str, str] = {}
    for r in rows or ():
        key = (f"episodes/env={r['env']}/task={r['task']}/run={r['run']}/"
               f"quality={r['quality']}/checkpoint={r['checkpoint']}")
        target = steps.get(r["env"], {}).get(r["steps_file"])
        referenced.add(r["steps_file"])
        if target is None:
            bad_keys.setdefault(key, f"its episodes point at {r['steps_file']}, which the "
                                     "steps table does not hold (replaced or deleted)")
            continue
        want = {"env": r["env"], "task": r["task"], "run": r["run"],
                "quality": r["quality"], "checkpoint": str(r["checkpoint"])}
        if target.partition != want:
            bad_keys.setdefault(key, f"its episodes point at {r['steps_file']}, a file of "
                                     "another key")
        elif target.rows and r["first_row"] + r["length"] > target.rows:
            bad_keys.setdefault(key, f"an episode runs past the {target.rows} rows of "
                                     f"{r['steps_file']}")
    problems.extend(Problem(k, v) for k, v in sorted(bad_keys.items()))
    _check_cards(lake, rows or [], card_files, problems)
    if rows is None and not any(steps.values()):
        return
    for env_files in steps.values():
        for rel in sorted(set(env_files) - referenced):
            problems.append(Problem(rel, "steps with no episodes index row (a write that "
                                         "died between its two commits?): write the "
                                         "checkpoint again or delete its run"))


def verify(lake: Lake, deep: bool = False) -> VerifyReport:
    """Check the whole lake; never raises for bad data, it names it."""
    lake.check_readable()
    problems: list[Problem] = []
    files = rows = 0
    versions: dict[str, int] = {}
    steps: dict[str, dict[str, DataFile]] = defaultdict(dict)
    index: list[DataFile] = []
    cards: list[DataFile] | None = None  # None: no cards table
    index_ok = True
    for legacy in LEGACY_DIRS:
        if lake.exists(legacy):
            problems.append(Problem(legacy, "transaction files of the pre-Delta lake: "
                                            "see `python -m lake_schema migrate`"))
    known = set(delta.all_table_ids())
    for name in TABLES:
        if name == "steps" and lake.exists("steps"):
            for rel in lake.glob("steps/*"):
                if rel not in known:
                    problems.append(Problem(rel, f"not a steps table (environments: "
                                                 f"{', '.join(ENVS)})"))
    for tid in delta.all_table_ids():
        table = delta.parse_table_id(tid)[0]
        try:
            dt = delta.open_table(lake, tid)
        except LakeError as e:
            problems.append(Problem(getattr(e, "path", tid), getattr(e, "reason", str(e))))
            index_ok = index_ok and table not in ("episodes", "cards")
            continue
        if dt is None:
            continue
        if table == "cards":
            cards = []
        versions[tid] = int(dt.version())
        live = delta.data_files(dt, tid)
        for f in live:
            files += 1
            if table == "steps":  # in the log, so an index row may point at it, bad or not
                steps[f.partition["env"]][f.rel] = f
            try:
                rows += _check_file(lake, table, f, deep)
            except LakeFileError as e:
                problems.append(Problem(e.path, e.reason))
                if table in ("episodes", "cards"):
                    index_ok = False
                continue
            if table == "episodes":
                index.append(f)
            elif table == "cards":
                cards.append(f)
        for rel in _untracked(lake, tid, dt, {f.rel for f in live}):
            problems.append(Problem(rel, "not in the Delta log (left by an interrupted or "
                                         "losing write, or foreign): `python -m lake_schema "
                                         "vacuum` removes it", leftover=True))
    if index_ok:
        try:
            _cross_check(lake, steps, index, cards, problems)
        except LakeFileError as e:
            problems.append(Problem(e.path, e.reason))
    first: dict[str, Problem] = {}
    for p in problems:  # one problem per path: the first (the file's own) says most
        first.setdefault(p.path, p)
    return VerifyReport(files, rows, tuple(first.values()), versions)
