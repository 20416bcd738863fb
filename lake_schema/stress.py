"""Writers and checks for the lake's crash and concurrency tests (and benchmarks): real
processes writing real files, killed or racing, then every reader checked.

A payload is identified by its seed: `payload(task, seed)` gives the episodes, and the
episodes table's `env_steps` column carries the seed, so a reader can tell exactly which
write it sees and check it is whole. Worker functions live here (not in the test module)
because multiprocessing's forkserver children import them by name; the forkserver preloads
this module, so starting a writer is a fork, not a fresh interpreter.

The attack (issue #30, the second half of this module) runs whole classes of these against
one lake and counts every failure instead of stopping at the first: mixed reads, unreadable
checkpoints, silent losses, wrong outcomes, tracebacks and verify failures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing as mp
import os
import posixpath
import queue
import random
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import duckdb
import numpy as np
import pyarrow as pa

from lake_schema import delta
from lake_schema.catalogue import task_names
from lake_schema.delta import DELTA_LOG, existing_tables
from lake_schema.duck import connect
from lake_schema.errors import LakeConflictError, LakeError, LakeValueError
from lake_schema.maintenance import vacuum
from lake_schema.reader import Selection, read_files, read_table, table_versions
from lake_schema.storage import Lake, S3Options
from lake_schema.testing import synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import EpisodeBatch, write_episodes, write_records

# a writer's exit status: 1 is also Python's own for an uncaught exception (a traceback)
EXIT_OK, EXIT_ERROR, EXIT_CONFLICT, EXIT_LAKE_ERROR = 0, 1, 3, 4
COMMIT_FILE = re.compile(r"^\d{20}\.json$")  # a Delta log entry: one commit


def context() -> mp.context.BaseContext:
    """A forkserver context with the lake modules preloaded (cheap, clean children: no
    threads of the parent's delta-rs runtime are inherited)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["lake_schema.stress"])
    return ctx


def payload(task: str, seed: int) -> EpisodeBatch:
    return synthetic_episodes(task, [2 + seed % 7, 3 + seed % 5], seed=seed)


def _lake(root: str, s3: S3Options | None) -> Lake:
    return Lake(root, s3=s3)


def write_payloads(root: str, s3: S3Options | None, task: str, run: str, checkpoint: int,
                   seeds: list[int], barrier=None, pause_s: float = 0.0) -> None:
    """Write the payloads of `seeds` to one key, one after another; exit status 0, or 3
    when the last write lost a same-key race (LakeConflictError); any other error stops
    it: 4 for a one-line LakeError, 1 for anything else (a traceback)."""
    lake = _lake(root, s3)
    if barrier is not None:
        barrier.wait()
    code = EXIT_OK
    for seed in seeds:
        quality = "low" if seed % 2 else "high"
        try:
            write_episodes(lake, task, run, checkpoint, quality, payload(task, seed),
                           env_steps=seed)
            code = EXIT_OK
        except LakeConflictError as e:
            print(f"conflict: {e}", file=sys.stderr)
            code = EXIT_CONFLICT
        except Exception as e:  # reported through the exit status
            print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(EXIT_LAKE_ERROR if is_clean(e) else EXIT_ERROR)
        if pause_s:
            time.sleep(pause_s)
    sys.exit(code)


def evaluation(update: int) -> dict:
    return {"algorithm": "bc", "split": "test", "update": update, "episodes": 4,
            "mean_return": float(update), "std_return": 0.0, "normalised_return": 0.5,
            "reference_return": 1.0, "config": "{}", "evaluated_at": dt.datetime.now(dt.UTC)}


def write_evaluation(root: str, s3: S3Options | None, partition: dict, update: int,
                     barrier=None) -> None:
    """Write one evaluation row (at `update`) of a model; exit status as `write_payloads`."""
    lake = _lake(root, s3)
    if barrier is not None:
        barrier.wait()
    try:
        write_records(lake, "evaluations", partition, [evaluation(update)],
                      replace_rows={"update": update, "episodes": 4})
    except Exception as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(EXIT_LAKE_ERROR if is_clean(e) else EXIT_ERROR)
    sys.exit(EXIT_OK)


def key_seed(lake: Lake, task: str, run: str, checkpoint: int,
             as_of: dict | None = None) -> int | None:
    """The seed of the payload the key holds, checked whole through the episodes index and
    through the steps table; None when the key is absent. AssertionError when mixed."""
    env, scenario = task.split("/")
    sel = Selection(env=env, tasks=[scenario], runs=[run], checkpoints=(checkpoint, checkpoint),
                    as_of=as_of)
    eps = read_table(lake, "episodes", sel)
    if eps.num_rows == 0:
        return None
    seeds = set(eps["env_steps"].to_pylist())
    assert len(seeds) == 1, f"episodes of several writes: {seeds}"
    seed = seeds.pop()
    want = payload(task, seed)
    assert eps["length"].to_pylist() == [int(x) for x in want.lengths], "index mixed"
    files = set(eps["steps_file"].to_pylist())
    assert len(files) == 1, f"index points at several files {files}"
    through_index = read_files(lake, files, "steps", env, ["obs", "reward"])
    np.testing.assert_array_equal(through_index["reward"].to_numpy(), want.reward)
    obs = np.asarray(through_index["obs"].combine_chunks().flatten().flatten())
    np.testing.assert_array_equal(obs.reshape(want.obs.shape), want.obs)
    return seed


def steps_seed_candidates(lake: Lake, task: str, run: str, checkpoint: int,
                          seeds: list[int]) -> list[int]:
    """Which payloads the steps table alone could hold for the key (whole matches only)."""
    env, scenario = task.split("/")
    sel = Selection(env=env, tasks=[scenario], runs=[run], checkpoints=(checkpoint, checkpoint))
    steps = read_table(lake, "steps", sel, ["obs"])
    obs = np.asarray(steps["obs"].combine_chunks().flatten().flatten())
    out = []
    for s in seeds:
        want = payload(task, s).obs
        if want.size == obs.size and (want.reshape(-1) == obs).all():
            out.append(s)
    return out


def write_synthetic(root: str, task: str, run: str, chunks: list[tuple]) -> int:
    """Generate and write `(checkpoint, quality, lengths, seed, env_steps)` chunks of one
    task (the benchmark's parallel writers); returns the agent-steps written."""
    lake, total = Lake(root), 0
    for checkpoint, quality, lengths, seed, env_steps in chunks:
        batch = synthetic_episodes(task, lengths, seed=seed)
        total += write_episodes(lake, task, run, checkpoint, quality, batch,
                                env_steps=env_steps).rows * batch.obs.shape[1]
    return total


# ---------------------------------------------------------------- the attack (issue #30)
#
# Three classes of attack, each against a local root or an S3 server, each counting every
# way the lake fails it instead of stopping at the first: SIGKILLed writers (then every
# reader, a vacuum, a rewrite and verify), writers racing (different tasks, one evaluations
# partition, one checkpoint key), and reader processes looping while a writer replaces one
# key. `run_attack` runs them all at one `AttackSize`; benchmarks/lake_attack.py prints the
# counts as a table.

KILL_TASK = "lbf/8x8-2p-2f"
# Where a kill falls: as soon as the steps table holds the writer's commit (its index is
# still the old write's), as soon as the episodes index does (the card is still old), or at
# a uniformly random moment of an unkilled write's lifetime (before, inside or between the
# three commits).
KILL_POINTS = ("after the steps commit", "random", "after the index commit")
FAILURES = ("mixed_reads", "unreadable", "silent_losses", "wrong_outcomes",
            "unexpected_errors", "verify_failures")
MAX_FINDINGS = 20  # messages kept per attack; the counts go on past them
JOIN_TIMEOUT_S = 300.0  # a writer or reader still running after this has hung


@dataclass
class AttackCounts:
    """What one attack class did to one lake, and how often the lake failed it.

    Every count but `trials`, `reads` and `conflicts` is a failure: zero is a lake that held.
    `findings` keeps the first messages (one line each) so a failure can be traced.
    """

    attack: str
    lake: str  # "local" or "s3"
    trials: int = 0  # kills, writer processes, or replacements
    reads: int = 0  # reads checked, through any reader
    mixed_reads: int = 0  # the steps of one write with the episodes index of another
    unreadable: int = 0  # a read refused (a LakeError), or a file the index names is gone
    silent_losses: int = 0  # an acknowledged write missing afterwards
    # a clean refusal where success was due, a loser's data standing, a race nobody won
    wrong_outcomes: int = 0
    unexpected_errors: int = 0  # anything but a one-line LakeError: a traceback
    verify_failures: int = 0  # verify(lake) not ok where it must be
    conflicts: int = 0  # LakeConflictError of same-key racers: expected, not a failure
    wall_s: float = 0.0
    tally: Counter = field(default_factory=Counter)  # e.g. where the kills fell
    findings: list[str] = field(default_factory=list)

    def record(self, failure: str, message: str) -> None:
        """Count one failure of kind `failure` (one of FAILURES) and keep its message."""
        setattr(self, failure, getattr(self, failure) + 1)
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(f"{failure}: {' '.join(message.split())[:400]}")

    def merge(self, other: AttackCounts) -> None:
        """Add another process's counts (a reader's) to these."""
        for name in ("reads", *FAILURES, "conflicts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tally.update(other.tally)
        self.findings.extend(other.findings[:max(0, MAX_FINDINGS - len(self.findings))])

    @property
    def failures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FAILURES}

    @property
    def ok(self) -> bool:
        return not any(self.failures.values())


@dataclass(frozen=True)
class AttackSize:
    """How hard each class attacks: the full size is what the benchmark reports."""

    kills: int = 40
    rounds: int = 3  # races of the parallel writers
    writers: int = 8  # writers of different tasks in each race
    evaluation_writers: int = 4  # writers of one evaluations partition in each race
    same_key_writers: int = 4  # racers of one checkpoint key: 2 up to this, round by round
    replacements: int = 1000  # writes of one key while the readers loop
    readers: int = 2  # reader processes looping during the replacements
    stall_every: int = 10  # the replacing writer is stalled after every so many steps commits


FULL = AttackSize()
SMALL = AttackSize(kills=6, rounds=2, writers=4, evaluation_writers=3, same_key_writers=3,
                   replacements=20, readers=1, stall_every=4)


class MixedRead(Exception):
    """A read whose steps are not the steps of the write its episodes index names."""


class MissingFile(Exception):
    """A file the lake names (the episodes index, a view) is gone from storage."""


def is_clean(e: BaseException) -> bool:
    """A LakeError with a one-line message: what the CLI prints instead of a traceback."""
    return isinstance(e, LakeError) and "\n" not in str(e).strip()


@lru_cache(maxsize=4096)
def _expected(task: str, seed: int) -> EpisodeBatch:
    """`payload(task, seed)`, generated once per process (readers check thousands of reads)."""
    return payload(task, seed)


def judge_read(task: str, index: list[tuple[int, int, int]], episode: np.ndarray,
               step: np.ndarray, reward: np.ndarray, obs: np.ndarray) -> int | None:
    """The seed of the write a read saw, given the key's episodes index rows
    `(episode, length, env_steps)` and its steps columns (obs flattened); None when the key
    is absent. MixedRead unless the steps are exactly the steps of the write the index
    names: each episode's `length` equals its number of steps rows, and every value is that
    write's (the seed in `env_steps` says which payload to expect)."""
    if not index:
        if len(episode):
            raise MixedRead(f"{len(episode)} steps rows with no episodes index rows")
        return None
    seeds = {s for _, _, s in index}
    if len(seeds) != 1:
        raise MixedRead(f"episodes index rows of several writes {sorted(seeds)}")
    seed = seeds.pop()
    want = _expected(task, seed)
    lengths = [length for _, length, _ in sorted(index)]
    if lengths != [int(n) for n in want.lengths]:
        raise MixedRead(f"the index of write {seed} has lengths {lengths}, that write's "
                        f"are {want.lengths.tolist()}")
    for e, length, _ in sorted(index):
        rows = int((episode == e).sum())
        if rows != length:
            raise MixedRead(f"episode {e}: length {length} in the index of write {seed}, "
                            f"{rows} steps rows (sum(length) {sum(lengths)}, steps rows "
                            f"{len(episode)})")
    if len(episode) != want.num_steps or obs.size != want.obs.size:
        raise MixedRead(f"{len(episode)} steps rows, write {seed} has {want.num_steps}")
    order = np.lexsort((step, episode))
    same = (np.array_equal(reward[order], want.reward) and np.array_equal(
        obs.reshape(len(episode), -1)[order], want.obs.reshape(want.num_steps, -1)))
    if not same:
        raise MixedRead(f"the steps are not those of write {seed}, which the episodes index "
                        "names (another write's, of the same lengths)")
    return seed


def _key_selection(task: str, run: str, checkpoint: int, as_of=None) -> Selection:
    env, scenario = task.split("/")
    return Selection(env=env, tasks=[scenario], runs=[run], checkpoints=(checkpoint, checkpoint),
                     as_of=as_of)


def _index_rows(table: pa.Table) -> list[tuple[int, int, int]]:
    return list(zip(table["episode"].to_pylist(), table["length"].to_pylist(),
                    table["env_steps"].to_pylist(), strict=True))


def _flat_obs(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """`list<list<x>>` observations as one flat numpy array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return np.asarray(column.flatten().flatten())


def seen_by_read_table(lake: Lake, task: str, run: str, checkpoint: int,
                       as_of: dict[str, int] | None = None) -> int | None:
    """The write `read_table` shows for the key: `episodes` and `steps` read separately and
    joined by episode (at `as_of`, e.g. one `table_versions` call, so that a write landing
    between the two reads cannot be blamed on the lake)."""
    sel = _key_selection(task, run, checkpoint, as_of)
    index = read_table(lake, "episodes", sel, ["episode", "length", "env_steps"])
    steps = read_table(lake, "steps", sel, ["episode", "step", "reward", "obs"])
    return judge_read(task, _index_rows(index), steps["episode"].to_numpy(),
                      steps["step"].to_numpy(), steps["reward"].to_numpy(),
                      _flat_obs(steps["obs"]))


def seen_by_duckdb(lake: Lake, task: str, run: str, checkpoint: int,
                   as_of: dict[str, int] | None = None) -> int | None:
    """The write the DuckDB views of one `connect(lake)` show for the key: `steps JOIN
    episodes` must give each episode as many steps rows as its `length`, and the steps rows
    must be the write's the index names."""
    env, scenario = task.split("/")
    key = "env = $env AND task = $task AND run = $run AND checkpoint = $checkpoint"
    params = {"env": env, "task": scenario, "run": run, "checkpoint": checkpoint}
    con = connect(lake, as_of=as_of)
    try:
        index = con.sql(
            "SELECT episode, e.length, e.env_steps, count(s.step) AS rows "
            "FROM episodes e LEFT JOIN steps s USING (env, task, run, checkpoint, episode) "
            f"WHERE {key} GROUP BY ALL ORDER BY episode", params=params).to_arrow_table()
        steps = con.sql(f"SELECT episode, step, reward, obs FROM steps WHERE {key}",
                        params=params).to_arrow_table()
    except duckdb.Error as e:
        # a view over a file that is gone: DuckDB's own error, or the one a view raises
        # naming the file; any other DuckDB error is unexpected
        if isinstance(e, duckdb.IOException) or "missing" in str(e):
            raise MissingFile(f"DuckDB: {e}") from e
        raise
    finally:
        con.close()
    for episode, length, rows in zip(index["episode"].to_pylist(), index["length"].to_pylist(),
                                     index["rows"].to_pylist(), strict=True):
        if rows != length:
            raise MixedRead(f"steps JOIN episodes: episode {episode} has length {length} "
                            f"and {rows} steps rows")
    return judge_read(task, _index_rows(index), steps["episode"].to_numpy(),
                      steps["step"].to_numpy(), steps["reward"].to_numpy(),
                      _flat_obs(steps["obs"]))


def seen_by_polars(lake: Lake, task: str, run: str, checkpoint: int,
                   as_of: dict[str, int] | None = None) -> int | None:
    """The write Polars shows for the key when it reads the steps files the episodes index
    names (`steps_file`, root-relative): what an outside tool following the index gets."""
    import polars as pl  # here, not at import: the forkserver preloads this module

    index = read_table(lake, "episodes", _key_selection(task, run, checkpoint, as_of),
                       ["episode", "length", "env_steps", "steps_file"])
    files = list(dict.fromkeys(index["steps_file"].to_pylist()))
    if len(files) > 1:
        raise MixedRead(f"the index names several steps files {files}")
    frames = []
    for rel in files:
        try:
            with lake.fs.open(lake.path(rel), "rb") as fh:
                frames.append(pl.read_parquet(fh, columns=["episode", "step", "reward", "obs"]))
        except FileNotFoundError as e:
            raise MissingFile(f"{rel}: named by the episodes index, gone from storage") from e
    steps = pl.concat(frames) if frames else pl.DataFrame(
        {"episode": [], "step": [], "reward": [], "obs": []},
        schema={"episode": pl.Int32, "step": pl.Int32, "reward": pl.Float32,
                "obs": pl.List(pl.List(pl.Int8))})
    return judge_read(task, _index_rows(index), steps["episode"].to_numpy(),
                      steps["step"].to_numpy(), steps["reward"].to_numpy(),
                      steps["obs"].explode().explode().to_numpy())


READERS = {"read_table": seen_by_read_table, "duckdb": seen_by_duckdb,
           "polars": seen_by_polars}
_FAILED = object()  # a read that failed (counted); it saw no write


def _observe(counts: AttackCounts, what: str, read: Callable, *args):
    """Run one read and count it; the seed it saw, or _FAILED after counting how it failed."""
    counts.reads += 1
    try:
        return read(*args)
    except MixedRead as e:
        counts.record("mixed_reads", f"{what}: {e}")
    except MissingFile as e:
        counts.record("unreadable", f"{what}: {e}")
    except Exception as e:
        kind = "unreadable" if is_clean(e) else "unexpected_errors"
        counts.record(kind, f"{what}: {type(e).__name__}: {e}")
    return _FAILED


def check_key(counts: AttackCounts, lake: Lake, task: str, run: str, checkpoint: int,
              allowed: set[int], when: str, readers: tuple[str, ...] = tuple(READERS),
              as_of: dict[str, int] | None = None) -> dict[str, int | None]:
    """Read one key through each reader; every read must be whole (else counted mixed or
    unreadable) and show a write in `allowed` (else one silent loss: the acknowledged write
    is missing). Returns the seed each reader saw (None: the key is absent)."""
    seen = {}
    for name in readers:
        result = _observe(counts, f"{name} {when}", READERS[name], lake, task, run,
                          checkpoint, as_of)
        if result is not _FAILED:
            seen[name] = result
    wrong = {name: seed for name, seed in seen.items() if seed not in allowed}
    if wrong:
        counts.record("silent_losses", f"{when}: {task} {run} {checkpoint} shows {wrong}, "
                                       f"an acknowledged write is one of {sorted(allowed)}")
    return seen


def _where(lake: Lake) -> str:
    return "s3" if lake.is_s3 else "local"


def _start(ctx: mp.context.BaseContext, target, *args) -> mp.Process:
    p = ctx.Process(target=target, args=args)
    p.start()
    return p


def _join(counts: AttackCounts, p: mp.Process, what: str) -> int | None:
    """Wait for a child; one that hangs is killed and counted as an unexpected error."""
    p.join(JOIN_TIMEOUT_S)
    if p.exitcode is None:
        p.kill()
        p.join()
        counts.record("unexpected_errors", f"{what}: still running after {JOIN_TIMEOUT_S} s")
        return None
    return p.exitcode


def _writer_outcome(counts: AttackCounts, code: int | None, what: str,
                    conflict_expected: bool = False) -> bool:
    """Count a writer's exit status; True when its write was acknowledged."""
    if code == EXIT_OK:
        return True
    if code == EXIT_CONFLICT and conflict_expected:
        counts.conflicts += 1
    elif code in (EXIT_CONFLICT, EXIT_LAKE_ERROR):
        counts.record("wrong_outcomes", f"{what}: refused (exit {code}) where it had to "
                                        "succeed; its stderr says why")
    elif code is not None:
        counts.record("unexpected_errors", f"{what}: exit {code} (not a one-line LakeError; "
                                           "its stderr has the traceback)")
    return False


def _write(counts: AttackCounts, ctx: mp.context.BaseContext, lake: Lake, task: str,
           run: str, checkpoint: int, seed: int) -> bool:
    """One write that must succeed, in a child like every writer; True when acknowledged."""
    p = _start(ctx, write_payloads, lake.root, _s3(lake), task, run, checkpoint, [seed])
    return _writer_outcome(counts, _join(counts, p, f"write {seed}"), f"write {seed}")


def _guarded(counts: AttackCounts, what: str, failure: str, fn, *args):
    """Run a lake operation that must succeed; a clean LakeError counts as `failure`,
    anything else as unexpected. Returns its result, or None after counting."""
    try:
        return fn(*args)
    except Exception as e:
        counts.record(failure if is_clean(e) else "unexpected_errors",
                      f"{what}: {type(e).__name__}: {e}")
        return None


def _vacuum_all(lake: Lake) -> None:
    for tid in existing_tables(lake):
        vacuum(lake, tid, retention_hours=0)


def _check_verify(counts: AttackCounts, lake: Lake, when: str) -> None:
    report = _guarded(counts, f"verify {when}", "verify_failures", verify, lake)
    if report is not None and not report.ok:
        counts.record("verify_failures", f"verify {when}: " + "; ".join(
            str(p) for p in report.problems[:3]))


def _s3(lake: Lake) -> S3Options | None:
    return lake.s3_options if lake.is_s3 else None


def _log_version(lake: Lake, tid: str) -> int:
    """The table's latest version, from a listing of its Delta log: cheap enough to poll
    (-1: no commit yet)."""
    path = lake.path(f"{tid}/{DELTA_LOG}")
    if lake.is_s3:
        lake.fs.invalidate_cache(path)
    if not lake.fs.exists(path):
        return -1
    names = [posixpath.basename(p) for p in lake.fs.ls(path, detail=False)]
    return max((int(n[:20]) for n in names if COMMIT_FILE.match(n)), default=-1)


def _kill(writer: mp.Process, lake: Lake, point: str, before: dict[str, int],
          window_s: float, rng: random.Random) -> None:
    """SIGKILL `writer` at `point` (one of KILL_POINTS; `before`: each table's version when
    it started); a writer that finished first is a trial too (the kill fell after its last
    commit)."""
    if point == "random":
        time.sleep(rng.uniform(0.1 * window_s, 1.0 * window_s))
    else:
        tid = delta.table_id("steps", "lbf") if "steps" in point else "episodes"
        while writer.is_alive() and _log_version(lake, tid) == before[tid]:
            time.sleep(0.001)
    with contextlib.suppress(ProcessLookupError):
        os.kill(writer.pid, signal.SIGKILL)
    writer.join()


def _commits_landed(before: dict[str, int], after: dict[str, int]) -> str:
    """Where a killed write stopped, from the tables whose version moved."""
    moved = [tid.split("/")[0] for tid in after if after[tid] != before.get(tid)]
    if not moved:
        return "killed before its steps commit"
    return "killed after its " + " + ".join(moved) + " commit" + ("s" if len(moved) > 1 else "")


def attack_kills(lake: Lake, kills: int = 40, rng_seed: int = 0,
                 ctx: mp.context.BaseContext | None = None) -> AttackCounts:
    """SIGKILL a writer of one checkpoint key `kills` times, at the KILL_POINTS in turn.

    After each kill every reader must show the old write or the killed one, whole; a
    vacuum (retention 0) must leave every checkpoint readable, this key's and a bystander
    key's; then the key is written again, which must succeed and be what every reader
    shows, and verify(lake) must be ok."""
    ctx = ctx or context()
    counts, rng = AttackCounts("kills", _where(lake)), random.Random(rng_seed)
    t0 = time.perf_counter()
    run, bystander = "kill", ("bystander", 1)
    tables = [delta.table_id("steps", "lbf"), "episodes", "cards"]
    _write(counts, ctx, lake, KILL_TASK, *bystander, 0)
    started = time.perf_counter()
    held = 1 if _write(counts, ctx, lake, KILL_TASK, run, 0, 1) else None
    window_s = time.perf_counter() - started  # an unkilled writer's whole life
    for trial in range(kills):
        old, new, again = held, 2 + 2 * trial, 3 + 2 * trial
        allowed = {old, new}
        before = {tid: _log_version(lake, tid) for tid in tables}
        writer = _start(ctx, write_payloads, lake.root, _s3(lake), KILL_TASK, run, 0, [new])
        _kill(writer, lake, KILL_POINTS[trial % len(KILL_POINTS)], before, window_s, rng)
        counts.trials += 1
        after = {tid: _log_version(lake, tid) for tid in tables}
        counts.tally[_commits_landed(before, after)] += 1
        check_key(counts, lake, KILL_TASK, run, 0, allowed, f"kill {trial}: after the kill")
        _guarded(counts, f"kill {trial}: vacuum", "wrong_outcomes", _vacuum_all, lake)
        check_key(counts, lake, KILL_TASK, run, 0, allowed, f"kill {trial}: after the vacuum")
        check_key(counts, lake, KILL_TASK, *bystander, {0}, f"kill {trial}: after the vacuum")
        if _write(counts, ctx, lake, KILL_TASK, run, 0, again):
            held = again
        _check_verify(counts, lake, f"kill {trial}: after the rewrite")
        check_key(counts, lake, KILL_TASK, run, 0, {held}, f"kill {trial}: after the rewrite")
    counts.wall_s = time.perf_counter() - t0
    return counts


@dataclass(frozen=True)
class _Racer:
    """One writer of a race: what it writes, and the worker that writes it."""

    group: str  # "different tasks", "evaluations" or "same key"
    key: tuple  # (task, run, checkpoint); for evaluations (model,)
    seed: int  # the payload's seed; for evaluations the update
    worker: Callable
    args: tuple  # the worker's arguments but the barrier


def _racers(lake: Lake, r: int, size: AttackSize) -> list[_Racer]:
    """Round `r`'s writers: different tasks, one evaluations partition, one checkpoint key
    (2 racers in round 0, then one more each round up to `size.same_key_writers`)."""
    s3, tasks = _s3(lake), task_names("lbf")
    if size.writers > len(tasks):
        raise LakeValueError(f"{size.writers} writers of different tasks: lbf has "
                             f"{len(tasks)} tasks")
    racers = []
    for i, task in enumerate(tasks[:size.writers]):
        seed = 1000 * r + i
        racers.append(_Racer("different tasks", (task, "parallel", r), seed, write_payloads,
                             (lake.root, s3, task, "parallel", r, [seed])))
    partition = {"env": "lbf", "task": KILL_TASK.split("/")[1], "model": f"m{r}"}
    for update in range(size.evaluation_writers):
        racers.append(_Racer("evaluations", (f"m{r}",), update, write_evaluation,
                             (lake.root, s3, partition, update)))
    for j in range(2 + r % max(1, size.same_key_writers - 1)):
        seed = 1000 * r + 500 + j
        racers.append(_Racer("same key", (KILL_TASK, "race", r), seed, write_payloads,
                             (lake.root, s3, KILL_TASK, "race", r, [seed])))
    return racers


def attack_parallel_writers(lake: Lake, size: AttackSize = FULL,
                            ctx: mp.context.BaseContext | None = None) -> AttackCounts:
    """`size.rounds` races, each starting at one barrier: `size.writers` writers of
    different tasks (all must succeed), `size.evaluation_writers` of one evaluations
    partition at different updates (all rows must stay) and 2 to `size.same_key_writers`
    of one checkpoint key (a whole write of a writer that succeeded must stand; the others
    raise LakeConflictError). Afterwards a vacuum, verify, and every acknowledged write
    checked again (a later race must not have lost an earlier one)."""
    ctx = ctx or context()
    counts, t0 = AttackCounts("parallel writers", _where(lake)), time.perf_counter()
    held: dict[tuple, int] = {}  # (task, run, checkpoint) -> the seed the key must show
    for r in range(size.rounds):
        racers = _racers(lake, r, size)
        barrier = ctx.Barrier(len(racers))
        procs = [_start(ctx, racer.worker, *racer.args, barrier) for racer in racers]
        counts.trials += len(racers)
        winners, updates = [], []
        for p, racer in zip(procs, racers, strict=True):
            what = f"round {r} {racer.group} {racer.key} {racer.seed}"
            counts.tally[f"{racer.group} writers"] += 1
            ok = _writer_outcome(counts, _join(counts, p, what), what,
                                 conflict_expected=racer.group == "same key")
            if not ok:
                continue
            if racer.group == "different tasks":
                held[racer.key] = racer.seed
            elif racer.group == "evaluations":
                updates.append(racer.seed)
            else:
                winners.append(racer.seed)
        counts.tally["same-key writes acknowledged"] += len(winners)
        if not winners:
            counts.record("wrong_outcomes", f"round {r}: no writer of the key won the race")
        else:
            seen = check_key(counts, lake, KILL_TASK, "race", r, set(winners),
                             f"round {r}: same-key race")
            if seen.get("read_table") is not None:
                held[(KILL_TASK, "race", r)] = seen["read_table"]
        _check_evaluations(counts, lake, f"m{r}", updates)
    _guarded(counts, "vacuum after the races", "wrong_outcomes", _vacuum_all, lake)
    _check_verify(counts, lake, "after the races and a vacuum")
    for (task, run, checkpoint), seed in sorted(held.items()):
        check_key(counts, lake, task, run, checkpoint, {seed}, "after every race")
    counts.wall_s = time.perf_counter() - t0
    return counts


def _check_evaluations(counts: AttackCounts, lake: Lake, model: str,
                       acknowledged: list[int]) -> None:
    """Every acknowledged evaluation of `model` is there, once."""
    counts.reads += 1
    rows = _guarded(counts, f"read the evaluations of {model}", "unreadable", read_table,
                    lake, "evaluations", Selection(env="lbf", models=[model]), ["update"])
    if rows is None:
        return
    have = Counter(rows["update"].to_pylist())
    missing = sorted(set(acknowledged) - set(have))
    if missing:
        counts.record("silent_losses", f"evaluations of {model}: acknowledged updates "
                                       f"{missing} missing (have {sorted(have)})")
    doubled = sorted(u for u, n in have.items() if n > 1)
    if doubled:
        counts.record("wrong_outcomes", f"evaluations of {model}: updates {doubled} twice")


def read_loop(root: str, s3: S3Options | None, task: str, run: str, checkpoint: int,
              seeds: int, stop, results, progress, me: int) -> None:
    """A reader process: until `stop` is set, read the key through `read_table` (both
    tables pinned to one `table_versions` call, as a reader joining them must) and through
    a fresh `connect(lake)`; every read must be one whole write among the first `seeds`.
    Counts its loops in `progress[me]`; puts its AttackCounts on `results`."""
    lake = Lake(root, s3=s3)
    counts = AttackCounts("reader", _where(lake))
    allowed = set(range(seeds))
    tids = [delta.table_id("steps", task.split("/")[0]), "episodes"]
    while not stop.is_set():
        pinned = _guarded(counts, "table_versions", "unreadable", table_versions, lake, tids)
        seen = check_key(counts, lake, task, run, checkpoint, allowed, "while replacing",
                         ("read_table",), as_of=pinned or None)
        seen.update(check_key(counts, lake, task, run, checkpoint, allowed,
                              "while replacing", ("duckdb",)))
        counts.tally.update(seen.values())
        progress[me] += 1
    results.put(counts)


def _wait_for_loops(progress, loops: int, readers: list[mp.Process]) -> None:
    """Wait until every live reader has finished `loops` more loops (30 s at most)."""
    target = [n + loops for n in progress[:]]
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and any(
            p.is_alive() and progress[i] < target[i] for i, p in enumerate(readers)):
        time.sleep(0.005)


def _stall_writer(counts: AttackCounts, lake: Lake, writer: mp.Process, every: int,
                  progress, readers: list[mp.Process]) -> None:
    """While `writer` runs, stop it (SIGSTOP) just after every `every`-th of its steps
    commits, until each reader has looped twice (so one whole read falls inside the stall),
    then let it go on: a writer stalled between its commits, as by a slow network."""
    tid = delta.table_id("steps", KILL_TASK.split("/")[0])
    last, commits = _log_version(lake, tid), 0
    while writer.is_alive():
        version = _log_version(lake, tid)
        if version == last:
            time.sleep(0.002)
            continue
        commits, last = commits + version - last, version
        if commits < every:
            continue
        commits = 0
        index_before = _log_version(lake, "episodes")
        try:
            os.kill(writer.pid, signal.SIGSTOP)
        except ProcessLookupError:
            return
        try:
            between = _log_version(lake, "episodes") == index_before
            counts.tally["stalls between the steps and index commits" if between
                         else "stalls after the index commit"] += 1
            _wait_for_loops(progress, 2, readers)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer.pid, signal.SIGCONT)


def attack_readers(lake: Lake, replacements: int = 1000, readers: int = 2,
                   stall_every: int = 10,
                   ctx: mp.context.BaseContext | None = None) -> AttackCounts:
    """`readers` processes loop (`read_loop`) while one writer replaces one key
    `replacements` times, stalled between its commits after every `stall_every`-th steps
    commit (0: never); no read may mix the steps of one write with the index of another,
    and afterwards the key shows the last write and verify is ok."""
    ctx = ctx or context()
    counts, t0 = AttackCounts("readers during replacements", _where(lake)), time.perf_counter()
    key = (KILL_TASK, "replace", 0)
    _write(counts, ctx, lake, *key, 0)
    stop, results, progress = ctx.Event(), ctx.Queue(), ctx.Array("q", readers)
    procs = [_start(ctx, read_loop, lake.root, _s3(lake), *key, replacements + 1, stop,
                    results, progress, i) for i in range(readers)]
    _wait_for_loops(progress, 1, procs)  # every reader is reading before the first write
    seeds = list(range(1, replacements + 1))
    writer = _start(ctx, write_payloads, lake.root, _s3(lake), *key, seeds)
    if stall_every:
        _stall_writer(counts, lake, writer, stall_every, progress, procs)
    done = _writer_outcome(counts, _join(counts, writer, "the replacing writer"),
                           "the replacing writer")
    counts.trials += replacements
    stop.set()
    seen = Counter()
    for i in range(readers):
        try:
            reader = results.get(timeout=JOIN_TIMEOUT_S)
        except queue.Empty:
            counts.record("unexpected_errors", f"reader {i}: no counts (it died?)")
            continue
        seen.update(reader.tally)
        reader.tally = Counter()
        counts.merge(reader)
    for i, p in enumerate(procs):
        _join(counts, p, f"reader {i}")
    counts.tally["distinct writes seen by the readers"] = len(seen)
    if done:
        check_key(counts, lake, *key, {seeds[-1]}, "after the replacements")
    _check_verify(counts, lake, "after the replacements")
    counts.wall_s = time.perf_counter() - t0
    return counts


ATTACK_CLASSES = ("kills", "parallel", "readers")


def run_attack(lake_factory: Callable[[], Lake], size: AttackSize = FULL,
               ctx: mp.context.BaseContext | None = None,
               log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
               classes: Sequence[str] = ATTACK_CLASSES) -> list[AttackCounts]:
    """The attack `classes` (default every one) at `size`, each on a fresh lake from
    `lake_factory()`; `log` gets one line as each class ends."""
    ctx = ctx or context()
    attacks = {
        "kills": lambda: attack_kills(lake_factory(), size.kills, ctx=ctx),
        "parallel": lambda: attack_parallel_writers(lake_factory(), size, ctx=ctx),
        "readers": lambda: attack_readers(lake_factory(), size.replacements, size.readers,
                                          size.stall_every, ctx=ctx),
    }
    unknown = sorted(set(classes) - set(attacks))
    if unknown:
        raise ValueError(f"unknown attack class(es) {unknown}; choose from {ATTACK_CLASSES}")
    results = []
    for name in classes:
        results.append(attacks[name]())
        c = results[-1]
        log(f"{c.attack} ({c.lake}): {c.trials} trials, {c.wall_s:.0f} s, "
            + ("held" if c.ok else f"failed {c.failures}"))
    return results
