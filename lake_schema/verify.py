"""`verify`: every table and file of the lake checked, and every bad one named.

Per table: a Delta table of our schema version. Per file the log lists: a path inside the
table's folder (a log entry pointing elsewhere, `../..` or an absolute URI, is named and never
opened), valid partition values that the path's hive folders repeat (readers take them from
the folders), present, Parquet, the table's columns, the row count the log recorded; with
`deep=True` every data page is read and cast to the table's Arrow schema, and its rows hashed
against the content hash its commit recorded (`lake_schema.integrity`: delta-rs writes no
page checksums, so a flipped byte can decode to other values with no error). Then each row key
is held once (`_duplicates`: a second file of one key makes readers return its rows twice).
Files in a table's folder that the log never listed (left by a killed writer, a losing
concurrent commit, or dropped in by hand) are named; files the log removed but `vacuum` has
not deleted yet are history (readable `as_of` older versions), not problems. Across tables:
every episodes row points at a steps file the steps table holds, for the same key and within
its rows, every steps file has its index rows, and every indexed checkpoint has one current
dataset card (and every card a checkpoint).

A table delta-rs cannot load (a log entry it refuses, such as a `checkpoint` partition value
beyond int32) is named, and its log is then replayed here (`_replay_log`), so the entry that
breaks it is named by its file and log entry and the table's other files are still checked.
`verify` reports, it does not raise: whatever a crafted file or log makes a reader raise
becomes a problem naming the file, entry or table, and every problem prints on one line.
"""

from __future__ import annotations

import json
import re
import unicodedata
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import chain

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.exceptions import DeltaError

from lake_schema import delta, integrity
from lake_schema.catalogue import ENVS
from lake_schema.delta import DELTA_LOG, DataFile
from lake_schema.errors import LakeError, LakeFileError, LegacyLakeError, SchemaVersionError
from lake_schema.reader import (
    check_partition_values,
    open_checked,
    read_files,
    with_added_columns,
)
from lake_schema.schema import ROW_KEYS, TableSpec, table_spec
from lake_schema.storage import Lake

LEGACY_DIRS = ("_journal", "_staging")
# What reading a crafted or damaged lake can raise, from our readers, delta-rs, pyarrow and
# the filesystem (a value beyond int32 is an OverflowError in places, a bad type a
# TypeError); each becomes a problem naming what was being read.
READ_ERRORS = (LakeError, DeltaError, pa.ArrowException, OSError, ValueError, OverflowError,
               KeyError, TypeError)
COMMIT_FILE = re.compile(r"(\d{20})\.json")
CHECKPOINT_FILE = re.compile(r"(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet")
URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
NAMED_FILES = 5  # a repeated row key names at most this many of its files
ESCAPED = ("Cc", "Cf", "Zl", "Zp")  # control, format and line/paragraph separator characters


def printable(text: str) -> str:
    """`text` on one line: control characters (newlines included) escaped as `repr` writes
    them, so a crafted name cannot split a line of the report or forge another."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ESCAPED else c for c in text)


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str
    # A file outside the Delta log (an interrupted or losing write's): no reader sees it, so
    # it blocks nothing; `vacuum` removes it.
    leftover: bool = False

    def __str__(self) -> str:
        return f"{printable(self.path)}: {printable(self.reason)}"


@dataclass(frozen=True)
class VerifyReport:
    files: int
    rows: int
    problems: tuple[Problem, ...]
    versions: dict | None = None  # {table id: version} verified
    unhashed: int = 0  # deep: files whose rows could not be hashed against their commit's

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Tally:
    """What the walk over the tables has found so far, for the cross-table checks."""

    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    rows: int = 0
    unhashed: int = 0  # deep: files without a recorded content hash (written before hashes)
    versions: dict[str, int] = field(default_factory=dict)
    steps: dict[str, dict[str, DataFile]] = field(default_factory=lambda: defaultdict(dict))
    index: list[DataFile] = field(default_factory=list)
    cards: list[DataFile] | None = None  # None: no cards table
    index_ok: bool = True  # the episodes and cards tables are whole: cross-checks mean something


def _reason(e: BaseException) -> str:
    """An exception as one short line; our own errors already name what they are about."""
    text = " ".join(str(e).split())[:300]
    return text if isinstance(e, LakeError) else f"{type(e).__name__}: {text}"


def _problem(e: BaseException, path: str, what: str) -> Problem:
    """A problem from a read that raised: our file errors name their file, others `path`."""
    if isinstance(e, LakeFileError):
        return Problem(e.path, e.reason)
    return Problem(path, f"{what} ({_reason(e)})")


# ---------------------------------------------------------------- one file


def _check_inside(tid: str, f: DataFile) -> None:
    """The log's path for `f` names a file inside the table's folder: readers open the path
    as given, so one that leaves the table (`../..`, an absolute path or URI) would serve
    another folder's file as this table's rows. Checked before anything opens it."""
    inner = f.rel[len(tid) + 1:]
    if (not f.rel.startswith(tid + "/") or URI_SCHEME.match(inner) or inner.startswith("/")
            or ".." in inner.split("/")):
        raise LakeFileError(f.rel, f"outside the table: the Delta log of {tid} lists a path "
                                   "that leaves its folder (not opened)")


def _check_folders(tid: str, f: DataFile) -> None:
    """The path's hive folders are the file's partition values in the log, each once:
    readers take a row's partition columns from the folders, so a file without them would
    give rows without their key (and a table whose files disagree cannot be read at all)."""
    parts = f.rel[len(tid) + 1:].split("/")[:-1]
    folders = [tuple(p.split("=", 1)) if "=" in p else (p, None) for p in parts]
    have = dict(folders)
    want = {k: v for k, v in f.partition.items() if k in delta.spec_of(tid).delta_partitions}
    if len(have) != len(folders) or have != want:
        raise LakeFileError(f.rel, f"its folders ({'/'.join(parts) or 'none'}) are not its "
                                   f"partition values in the Delta log ({_values(want)}): "
                                   "readers take them from the folders")


def _values(values: dict[str, str | None]) -> str:
    return "/".join(f"{k}={v}" for k, v in values.items()) or "none"


def _check_file(lake: Lake, table: str, f: DataFile, deep: bool, expected: str | None
                ) -> int:
    """The file's footer and row count; with `deep`, every data page read and cast, and the
    rows hashed against the content hash its commit recorded (`integrity`), if any."""
    spec = table_spec(table, f.partition.get("env"))
    with open_checked(lake, f.rel) as pf:
        n = pf.metadata.num_rows
        if f.rows and n != f.rows:
            raise LakeFileError(f.rel, f"{n} rows, the Delta log recorded {f.rows}")
        if deep:
            rows = integrity.ContentHash(pf.schema_arrow)
            try:
                for i in range(pf.num_row_groups):
                    group = pf.read_row_group(i, use_threads=False)
                    rows.feed(group)
                    with_added_columns(group, spec, spec.schema.names, group.num_rows).cast(
                        spec.schema)
            except Exception as e:
                raise LakeFileError(f.rel, f"corrupted data pages ({e})") from e
            if expected is not None and rows.hexdigest() != expected:
                raise LakeFileError(f.rel, integrity.mismatch(rows.hexdigest(), expected))
    return n


def _check_entry(lake: Lake, tid: str, f: DataFile, deep: bool, expected: str | None) -> int:
    """One file the log lists: where it is and its partition values first (nothing outside
    the table is opened), then its contents; returns its rows."""
    table = delta.parse_table_id(tid)[0]
    _check_inside(tid, f)
    check_partition_values(table, f)
    _check_folders(tid, f)
    return _check_file(lake, table, f, deep, expected)


# ---------------------------------------------------------------- a table's files


@dataclass(frozen=True)
class _Listing:
    """The files a table's log lists now, and what else verify needs from the log."""

    files: list[DataFile]
    known: set[str]  # every path the log lists or has removed: not untracked
    version: int
    origin: dict[str, str] = field(default_factory=dict)  # replayed: file -> its log entry


def _listing(lake: Lake, tid: str, problems: list[Problem]) -> _Listing | None:
    """The table's files from delta-rs; when delta-rs cannot load them, from our own replay of
    the log (the table is named, and so is each entry the replay finds bad). None: no such
    table, or one of another schema version or layout (named: its files mean nothing here)."""
    try:
        dt = delta.open_table(lake, tid)
        if dt is None:
            return None
        files = delta.data_files(dt, tid)
    except (SchemaVersionError, LegacyLakeError) as e:
        problems.append(Problem(e.path, e.reason))
        return None
    except READ_ERRORS as e:
        p = _problem(e, tid, "Delta readers cannot load the table")
        problems.append(Problem(p.path, f"{p.reason} (verify replayed the log to check the "
                                        "table's other entries)"))
        return _replay_log(lake, tid, problems)
    return _Listing(files, {f.rel for f in files} | _removed(dt, tid), int(dt.version()))


def _removed(dt, tid: str) -> set[str]:
    """Files the log removed that are still on disk (history until `vacuum`)."""
    try:
        return {f"{tid}/{p}" for p in dt.vacuum(
            retention_hours=0, dry_run=True, enforce_retention_duration=False)}
    except READ_ERRORS:  # a log we cannot scan: every extra file is named
        return set()


def _replay_log(lake: Lake, tid: str, problems: list[Problem]) -> _Listing:
    """The table's current files by replaying its log here: the newest complete checkpoint,
    then each later JSON commit's add and remove actions in order. Used where delta-rs
    refuses the whole table for one entry, so that entry is named by its file and commit
    and the other files are still checked."""
    log = f"{tid}/{DELTA_LOG}"
    names = {rel[len(log) + 1:]: rel for rel in lake.find(log)}
    version, live, known = _from_checkpoint(lake, names, problems)
    commits = sorted((int(m[1]), rel) for name, rel in names.items()
                     if (m := COMMIT_FILE.fullmatch(name)) and int(m[1]) > version)
    for number, rel in commits:
        version = number
        for action in _commit_actions(lake, rel, problems):
            _apply(action, rel, live, known, problems)
    files, origin = [], {}
    for path, (entry, add) in sorted(live.items()):
        try:
            f = _entry_file(tid, path, add)
        except READ_ERRORS as e:
            problems.append(Problem(entry, f"an add action of {path!r} that cannot be read "
                                           f"({_reason(e)})"))
            continue
        files.append(f)
        origin[f.rel] = entry
    return _Listing(files, {f"{tid}/{urllib.parse.unquote(p)}" for p in known}, version,
                    origin)


def _from_checkpoint(lake: Lake, names: dict[str, str], problems: list[Problem]
                     ) -> tuple[int, dict[str, tuple[str, dict]], set[str]]:
    """(version, live adds by path, every path seen) of the newest readable complete
    checkpoint; (-1, {}, set()) without one (replay then starts at commit 0)."""
    parts: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
    for name, rel in names.items():
        if m := CHECKPOINT_FILE.fullmatch(name):
            parts[(int(m[1]), int(m[3] or 1))][int(m[2] or 1)] = rel
    complete = sorted(((v, sorted(p.values())) for (v, n), p in parts.items() if len(p) == n),
                      reverse=True)
    for version, rels in complete:
        live: dict[str, tuple[str, dict]] = {}
        known: set[str] = set()
        try:
            for rel in rels:
                for action in _checkpoint_actions(lake, rel):
                    _apply(action, rel, live, known, problems)
        except READ_ERRORS as e:
            problems.append(Problem(rels[0], f"unreadable Delta checkpoint ({_reason(e)})"))
            continue
        return version, live, known
    return -1, {}, set()


def _checkpoint_actions(lake: Lake, rel: str) -> list[dict]:
    """A checkpoint Parquet file's add and remove actions, shaped as in JSON commits."""
    with lake.fs.open(lake.path(rel), "rb") as handle:
        pf = pq.ParquetFile(handle)
        columns = [c for c in ("add", "remove") if c in pf.schema_arrow.names]
        rows = pf.read(columns=columns, use_threads=False).to_pylist()
    out = []
    for row in rows:
        for kind, action in row.items():
            if action is not None:
                values = action.get("partitionValues")
                out.append({kind: {**action, "partitionValues": dict(values or [])}})
    return out


def _commit_actions(lake: Lake, rel: str, problems: list[Problem]) -> list[dict]:
    """A JSON commit's actions, one per line; a line that is not JSON is named."""
    try:
        text = lake.fs.cat_file(lake.path(rel)).decode("utf-8")
    except (OSError, UnicodeError) as e:
        problems.append(Problem(rel, f"unreadable Delta commit ({_reason(e)})"))
        return []
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            problems.append(Problem(rel, f"line {n} is not JSON: a damaged Delta commit, "
                                         "which Delta readers refuse"))
    return out


def _apply(action: object, entry: str, live: dict[str, tuple[str, dict]], known: set[str],
           problems: list[Problem]) -> None:
    """One log action applied to the live files: an add lists its path (with the log entry
    that added it), a remove unlists it."""
    if not isinstance(action, dict):
        return
    for kind in ("add", "remove"):
        body = action.get(kind)
        if body is None:
            continue
        path = body.get("path") if isinstance(body, dict) else None
        if not isinstance(path, str):
            problems.append(Problem(entry, f"a {kind} action without a path"))
            continue
        known.add(path)
        if kind == "add":
            live[path] = (entry, body)
        else:
            live.pop(path, None)


def _entry_file(tid: str, path: str, add: dict) -> DataFile:
    """A replayed add action as `delta.data_files` gives a file: root-relative path,
    partition values as strings (env from the table id for steps), size and rows."""
    values = add.get("partitionValues") or {}
    if not isinstance(values, dict):
        raise ValueError(f"partitionValues is {type(values).__name__}, not an object")
    partition = {str(k): (None if v is None else str(v)) for k, v in values.items()}
    env = delta.parse_table_id(tid)[1]
    if env is not None:
        partition = {"env": env, **partition}
    try:
        rows = int(json.loads(add.get("stats") or "{}").get("numRecords") or 0)
    except (ValueError, TypeError, AttributeError):
        rows = 0  # no usable statistics: the row count is not compared
    return DataFile(f"{tid}/{urllib.parse.unquote(path)}", int(add.get("size") or 0), rows,
                    partition)


# ---------------------------------------------------------------- row keys


def _row_columns(table: str, spec: TableSpec) -> list[str]:
    """The file columns that, with the write key, identify a row (`schema.ROW_KEYS`): steps
    `episode, step`; episodes `episode`; evaluations `update, episodes` (one evaluation of a
    model on a task per evaluated update and episode count, the rows the evaluation writer
    replaces); references and cards none (one row per write key)."""
    return [c for c in ROW_KEYS[table] if c not in spec.partitions]


def _write_key(spec: TableSpec, f: DataFile) -> tuple[tuple[str, str], ...]:
    """The file's write key from its (checked) partition values; a checkpoint as a number,
    so `03` and `3` are one key, as for readers."""
    return tuple((p, str(int(f.partition[p])) if p == "checkpoint" else f.partition[p])
                 for p in spec.key)


def _duplicates(lake: Lake, tid: str, files: list[DataFile]) -> list[Problem]:
    """Each row key held once across the table's files. A row key includes its write key, so
    only files of one write key can repeat one: they are compared key by key, reading only
    the row-key columns. A second file of a key (a copy listed in the log by hand, a foreign
    writer's append) makes readers return its rows twice, and no other check notices."""
    table = delta.parse_table_id(tid)[0]
    spec = delta.spec_of(tid)
    columns = _row_columns(table, spec)
    groups: dict[tuple, list[DataFile]] = defaultdict(list)
    for f in files:
        groups[_write_key(spec, f)].append(f)
    problems = []
    for key, group in sorted(groups.items()):
        path = f"{tid}/" + "/".join(f"{p}={v}" for p, v in key if p in spec.delta_partitions)
        try:
            reason = _repeated(lake, table, spec, group, columns)
        except READ_ERRORS as e:
            problems.append(_problem(e, path, "cannot read its row keys"))
            continue
        if reason:
            problems.append(Problem(path, reason))
    return problems


def _repeated(lake: Lake, table: str, spec: TableSpec, files: list[DataFile],
              columns: list[str]) -> str | None:
    """Why the files of one write key hold a row key twice, naming the files; None if not."""
    env = files[0].partition.get("env") if table == "steps" else None
    by = columns or ["_one"]  # no row-key columns: one row per write key
    parts = []
    for i, f in enumerate(files):
        keys = read_files(lake, [f.rel], table, env, columns)
        if not columns:
            keys = keys.append_column("_one", pa.repeat(pa.scalar(0, pa.int8()), keys.num_rows))
        parts.append(keys.append_column("_file", pa.repeat(pa.scalar(i, pa.int32()),
                                                           keys.num_rows)))
    counts = pa.concat_tables(parts).group_by(by, use_threads=False).aggregate(
        [("_file", "count"), ("_file", "distinct")])
    repeated = counts.filter(pc.greater(counts["_file_count"], 1))
    if not repeated.num_rows:
        return None
    example = ", ".join(f"{c}={repeated[c][0].as_py()}" for c in columns)
    held = sorted(set(chain.from_iterable(repeated["_file_distinct"].to_pylist())))
    named = [files[i].rel for i in held[:NAMED_FILES]]
    more = f" and {len(held) - NAMED_FILES} more" if len(held) > NAMED_FILES else ""
    what = (f"{repeated.num_rows} row key(s) ({', '.join(ROW_KEYS[table])}) held more than once"
            + (f", e.g. {example}" if example else ""))
    return (f"{what}, by {', '.join(named)}{more}: readers return those rows more than once; "
            "writing the key again replaces its files")


# ---------------------------------------------------------------- untracked files


def _untracked(lake: Lake, tid: str, known: set[str]) -> list[str]:
    """Files under the table's folder that no version of its log lists."""
    out = []
    for rel in lake.find(tid):
        inner = rel[len(tid) + 1:]
        if inner.startswith(DELTA_LOG + "/") or rel in known:
            continue
        out.append(rel)
    return out


# ---------------------------------------------------------------- across tables


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


def _check_layout(lake: Lake, problems: list[Problem]) -> None:
    """Folders of the pre-Delta lake, and folders under `steps/` that are no env's table."""
    for legacy in LEGACY_DIRS:
        if lake.exists(legacy):
            problems.append(Problem(legacy, "transaction files of the pre-Delta lake: "
                                            "see `python -m lake_schema migrate`"))
    known = set(delta.all_table_ids())
    if lake.exists("steps"):
        for rel in lake.glob("steps/*"):
            if rel not in known:
                problems.append(Problem(rel, f"not a steps table (environments: "
                                             f"{', '.join(ENVS)})"))


def _verify_table(lake: Lake, tid: str, deep: bool, t: _Tally) -> None:
    """One table: its listing, each file, its row keys, the files its log never listed."""
    table = delta.parse_table_id(tid)[0]
    before = len(t.problems)
    listing = _listing(lake, tid, t.problems)
    if listing is None:
        t.index_ok = t.index_ok and not (len(t.problems) > before
                                         and table in ("episodes", "cards"))
        return
    t.versions[tid] = listing.version
    hashes = integrity.recorded_hashes(lake, tid) if deep else {}
    good = []
    for f in listing.files:
        t.files += 1
        if table == "steps":  # in the log, so an index row may point at it, bad or not
            t.steps[f.partition.get("env") or ""][f.rel] = f
        t.unhashed += deep and f.rel not in hashes
        try:
            t.rows += _check_entry(lake, tid, f, deep, hashes.get(f.rel))
        except READ_ERRORS as e:
            p = _problem(e, f.rel, "cannot be checked")
            entry = listing.origin.get(f.rel)
            t.problems.append(Problem(p.path, f"{p.reason} (added by {entry})") if entry else p)
            continue
        good.append(f)
    if table in ("episodes", "cards") and len(t.problems) > before:
        t.index_ok = False
    if table == "episodes":
        t.index = good
    elif table == "cards":
        t.cards = good
    t.problems.extend(_duplicates(lake, tid, good))
    for rel in _untracked(lake, tid, listing.known):
        t.problems.append(Problem(rel, "not in the Delta log (left by an interrupted or "
                                       "losing write, or foreign): `python -m lake_schema "
                                       "vacuum` removes it", leftover=True))


def verify(lake: Lake, deep: bool = False) -> VerifyReport:
    """Check the whole lake; never raises for bad data or a bad log, it names them (a root
    that cannot be read at all is still a LakeRootError)."""
    lake.check_readable()
    t = _Tally()
    _check_layout(lake, t.problems)
    for tid in delta.all_table_ids():
        try:
            _verify_table(lake, tid, deep, t)
        except READ_ERRORS as e:
            t.problems.append(_problem(e, tid, "cannot be checked"))
            t.index_ok = t.index_ok and tid not in ("episodes", "cards")
    if t.index_ok:
        try:
            _cross_check(lake, t.steps, t.index, t.cards, t.problems)
        except READ_ERRORS as e:
            t.problems.append(_problem(e, "episodes", "cannot check the index against the "
                                                      "steps and cards"))
    first: dict[str, Problem] = {}
    for p in t.problems:  # one problem per path: the first (the file's own) says most
        first.setdefault(p.path, p)
    return VerifyReport(t.files, t.rows, tuple(first.values()), t.versions, t.unhashed)
