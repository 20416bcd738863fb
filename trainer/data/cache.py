"""The training cache: the selected lake rows as memory-mapped numpy arrays, one set per task.

Parquet is for storage and queries, not random access (a chunk would decode a whole row
group). The cache holds each task's selected episodes back to back, one `.npy` file per
array, opened with `np.load(mmap_mode="r")`, so a chunk of T steps is a slice and the
dataset never has to fit in RAM: the OS pages in what batches touch.

Format, by measurement (one task, 200k steps x 8 agents x 66 int8 features plus 5 legal
flags per agent, B=480 chunks of T=20, 2-core CPU, warm page cache):
- numpy `.npy` + mmap, one vectorised fancy-index gather per array: 1.7 ms per batch,
  opening 2 ms;
- Arrow IPC memory-mapped, per-chunk `table.slice` + to_numpy: 7.8 ms per batch, opening
  11 ms;
- Arrow IPC viewed as numpy: the same gather as .npy for fixed-width columns, but booleans
  are bit-packed, so the legal mask has no zero-copy view (7.1 ms per batch, and it unpacks
  the whole column each time).
So `.npy`: the arrays come back as ndarrays of the right shape and dtype with no
conversion, booleans are bytes, and the loader's gather is one numpy call per array.

Layout of `<cache_dir>/<env>-<selection hash>-<data hash>/`:
    manifest.json        key, lake root, selection, tasks, lake table versions, lake files
                         (path + size), standardisation stats of the selection's
                         `standardisation_scope` (the whole split: one statistic for every
                         model of an experiment), its scope and how many checkpoints' came
                         from their dataset cards: written last
    episodes.json        which episodes, per task, in stream order (run, quality,
                         checkpoint, episode, length, steps_file, first_row)
    NN-<scenario>/       per task, S = its selected steps (canonical episode order):
        obs.npy [S, N, F] native dtype (int8 / float32: standardised per batch, not here)
        action.npy [S, N] int8, legal.npy [S, N, A] bool, reward.npy [S] float32,
        terminated.npy / truncated.npy / first.npy [S] bool (first: an episode starts)

The key: the selection hash covers the cache version, the lake root and the selection; the
data hash covers the Delta table versions read (`episodes`, `steps/<env>`), every lake file
read (path and size: Delta never changes a file in place, a new write is a new file name)
and the resolved episode list. Unchanged lake -> the same directory, reused; a changed lake
-> a new data hash, a rebuild, and the same selection's stale directories removed. The
selection is read pinned to the episodes version (or the selection's own `as_of`), and the
manifest records the versions (`TrainingCache.versions`) so a model can name its data.
An existing cache is opened only after every array file is checked against its expected
shape, dtype and byte size (a truncated memory-mapped file would kill the reader with
SIGBUS): a damaged cache is removed and rebuilt, never returned. A build writes into
`.tmp-*` and renames the finished directory into place (atomic: a reader sees all or
nothing), reading the lake file by file and row group by row group, so memory stays
bounded by one record batch. S3 lakes are cached to local disk the same way.

Cache directory: the `cache_dir` argument, else `$SABLE_LAKE_CACHE`, else
`$XDG_CACHE_HOME/sable-lake` (default `~/.cache/sable-lake`): local disk, outside the
repository and outside the lake (the lake stays pure data, and an S3 lake needs a local
place anyway).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake_schema.cards import card_moments, current_cards
from lake_schema.catalogue import ENVS
from lake_schema.integrity import check_file, recorded_hashes
from lake_schema.reader import LakeFileError, Selection, open_checked, table_versions
from lake_schema.stats import Moments, combine, moments
from lake_schema.storage import Lake
from trainer.data.selection import DataSelection, ResolvedSelection, TaskEpisodes, resolve_selection
from trainer.data.stats import ObsStats
from trainer.errors import SelectionError
from trainer.progress import Progress

logger = logging.getLogger(__name__)

CACHE_VERSION = 3
CACHE_ENV = "SABLE_LAKE_CACHE"
MANIFEST = "manifest.json"
EPISODES = "episodes.json"
ARRAYS = ("obs", "action", "legal", "reward", "terminated", "truncated", "first")
_STEP_COLUMNS = ["episode", "step", "obs", "action", "legal", "reward", "terminated",
                 "truncated"]
_BATCH_AGENT_STEPS = 1 << 16  # agent-steps per record batch while building


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "sable-lake"


def _sha(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class CacheDamagedError(ValueError):
    """A cache directory whose files do not match its manifest (truncated, replaced)."""


def file_stamps(lake: Lake, rels: list[str]) -> dict[str, int]:
    """Size of each root-relative lake file; a file the index names but the lake lacks (a
    vacuum removed a version the selection is pinned to) is a LakeFileError naming it."""
    stamps: dict[str, int] = {}
    for rel in sorted(set(rels)):
        try:
            stamps[rel] = int(lake.fs.size(lake.path(rel)))
        except FileNotFoundError as e:
            raise LakeFileError(rel, "listed by the episodes table but not found (vacuumed?)"
                                ) from e
    return stamps


def check_contents(lake: Lake, env: str, resolved: ResolvedSelection) -> None:
    """Every lake file the build reads holds the rows its commit recorded (`lake_schema.
    integrity`; a file without a recorded hash is read as it is): a byte flipped on disk can
    decode to other values with no Parquet error, and the cache would keep them. One more
    read of each file, once per cache build."""
    for tid, rels in (("episodes", resolved.episode_files),
                      (f"steps/{env}", resolved.steps_files)):
        hashes = recorded_hashes(lake, tid)
        for rel in sorted(set(rels)):
            if rel in hashes:
                with open_checked(lake, rel) as pf:
                    check_file(pf, rel, hashes[rel])


def _expected_arrays(env: str, task: CacheTask) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    spec = ENVS[env]
    s, n = task.num_steps, task.num_agents
    return {"obs": ((s, n, spec.obs_width), np.dtype(spec.obs_dtype)),
            "action": ((s, n), np.dtype(np.int8)),
            "legal": ((s, n, spec.num_actions), np.dtype(np.bool_)),
            "reward": ((s,), np.dtype(np.float32)), "terminated": ((s,), np.dtype(np.bool_)),
            "truncated": ((s,), np.dtype(np.bool_)), "first": ((s,), np.dtype(np.bool_))}


def _check_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """The .npy header says `shape`/`dtype` and the file holds every byte of it."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            got_shape, fortran, got_dtype = header(f)
            offset = f.tell()
    except (OSError, ValueError) as e:
        raise CacheDamagedError(f"{path}: unreadable array header ({e})") from e
    if tuple(got_shape) != tuple(shape) or got_dtype != dtype or fortran:
        raise CacheDamagedError(f"{path}: {got_dtype}{list(got_shape)}, the manifest says "
                                f"{dtype}{list(shape)}")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != need:
        raise CacheDamagedError(f"{path}: {size} bytes, expected {need} (truncated?)")


@dataclass(frozen=True)
class CacheTask:
    name: str  # env/scenario
    num_agents: int
    num_steps: int
    num_episodes: int
    dir: str  # relative to the cache directory


class TrainingCache:
    """An opened cache directory: metadata in memory, arrays memory-mapped on request."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self.key: str = manifest["key"]
        self.env: str = manifest["env"]
        self.tasks = tuple(CacheTask(**t) for t in manifest["tasks"])
        self.stats = ObsStats.from_json(manifest["stats"])
        self._checked: set[int] = set()

    @classmethod
    def open(cls, path: str | os.PathLike) -> TrainingCache:
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{path}: not a training cache (no {MANIFEST})") from e
        except ValueError as e:
            raise CacheDamagedError(f"{path}: unreadable {MANIFEST} ({e})") from e
        if manifest.get("version") != CACHE_VERSION:
            raise ValueError(f"{path}: cache version {manifest.get('version')}, "
                             f"this sable-lake reads {CACHE_VERSION}: rebuild it")
        return cls(path, manifest)

    def __repr__(self) -> str:
        return f"TrainingCache({str(self.path)!r}, tasks={len(self.tasks)})"

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def selection(self) -> dict:
        return self.manifest["selection"]

    @property
    def versions(self) -> dict[str, int]:
        """The lake table versions this cache holds ({"episodes": 7, "steps/lbf": 7})."""
        return dict(self.manifest.get("versions") or {})

    def check(self) -> None:
        """Every task's array files match the manifest; CacheDamagedError names one that
        does not. `arrays` runs it before memory-mapping anything."""
        for i in range(len(self.tasks)):
            self._check_task(i)

    def _check_task(self, task: int) -> None:
        if task in self._checked:
            return
        d = self.path / self.tasks[task].dir
        for name, (shape, dtype) in _expected_arrays(self.env, self.tasks[task]).items():
            _check_npy(d / f"{name}.npy", shape, dtype)
        self._checked.add(task)

    def arrays(self, task: int, mmap: bool = True) -> dict[str, np.ndarray]:
        """One task's arrays, checked: memory-mapped (read-only) or, with mmap=False, loaded."""
        self._check_task(task)
        d = self.path / self.tasks[task].dir
        return {a: np.load(d / f"{a}.npy", mmap_mode="r" if mmap else None) for a in ARRAYS}

    def episodes(self) -> dict[str, dict[str, list]]:
        """The selected episodes per task, as recorded at build time."""
        return json.loads((self.path / EPISODES).read_text())

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*.npy"))


def _columns_to_numpy(batch: pa.RecordBatch, n: int, f: int, a: int, rel: str) -> dict:
    """A steps record batch as numpy arrays [rows, ...], checking the agent count."""
    rows = batch.num_rows
    obs_col = batch.column("obs")
    lens = np.diff(obs_col.offsets.to_numpy())
    if rows and (lens != n).any():
        raise LakeFileError(rel, f"rows with {set(lens.tolist())} agents, the task has {n}")
    out = {
        "obs": obs_col.flatten().flatten().to_numpy(zero_copy_only=False).reshape(rows, n, f),
        "action": batch.column("action").flatten().to_numpy(zero_copy_only=False)
        .reshape(rows, n),
        "legal": batch.column("legal").flatten().flatten().to_numpy(zero_copy_only=False)
        .reshape(rows, n, a),
    }
    for c in ("episode", "step", "reward", "terminated", "truncated"):
        out[c] = batch.column(c).to_numpy(zero_copy_only=False)
    return out


def _build_task(lake: Lake, te: TaskEpisodes, out_dir: Path, env: str) -> None:
    """Copy one task's selected episodes into .npy files, steps file by steps file."""
    spec = ENVS[env]
    n, f, a, s = te.num_agents, spec.obs_width, spec.num_actions, te.num_steps
    out_dir.mkdir(parents=True)
    shapes = {"obs": ((s, n, f), spec.obs_dtype), "action": ((s, n), np.int8),
              "legal": ((s, n, a), np.bool_), "reward": ((s,), np.float32),
              "terminated": ((s,), np.bool_), "truncated": ((s,), np.bool_)}
    out = {k: np.lib.format.open_memmap(out_dir / f"{k}.npy", "w+", dt_, shape)
           for k, (shape, dt_) in shapes.items()}
    cols = te.columns
    lengths = cols["length"].astype(np.int64)
    ep_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    first = np.zeros(s, np.bool_)
    first[ep_start] = True
    np.save(out_dir / "first.npy", first)
    files = cols["steps_file"]
    # Episodes of one steps file are contiguous in canonical order (one file per run+checkpoint)
    change = np.flatnonzero(np.r_[True, files[1:] != files[:-1], True])
    for lo, hi in itertools.pairwise(change):
        idx = np.arange(lo, hi)
        want = {
            "src": np.concatenate([np.arange(cols["first_row"][i],
                                             cols["first_row"][i] + lengths[i]) for i in idx]),
            "episode": np.repeat(cols["episode"][idx], lengths[idx]),
            "step": np.concatenate([np.arange(lengths[i]) for i in idx]),
        }
        with open_checked(lake, str(files[lo])) as pf:
            _copy_file(pf, str(files[lo]), want, out, int(ep_start[lo]), env, n)
    for arr in out.values():
        arr.flush()
    del out


def standardisation_moments(lake: Lake, scope: ResolvedSelection) -> tuple[Moments, int]:
    """The observation moments of every agent-step of `scope` (whole checkpoints: see
    `DataSelection.standardisation_scope`) and how many of its checkpoints they came from
    dataset cards for. A checkpoint's card holds exact moments computed when it was written;
    one without a current card (a lake written before cards) is read and computed."""
    env = scope.selection.env_name
    f = ENVS[env].obs_width
    cards = current_cards(lake, Selection(
        env=env, tasks=[t.task.split("/", 1)[1] for t in scope.tasks],
        runs=scope.selection.runs), ["episodes", "obs_count", "obs_mean", "obs_m2"])
    total, from_cards = Moments.empty(f), 0
    for te in scope.tasks:
        files, counts = np.unique(te.columns["steps_file"], return_counts=True)
        for rel, count in zip(files.tolist(), counts.tolist(), strict=True):
            card = cards.get(rel)
            if card is not None and int(card["episodes"]) == count:
                total, from_cards = combine(total, card_moments(card)), from_cards + 1
                continue
            rows = max(64, _BATCH_AGENT_STEPS // te.num_agents)
            with open_checked(lake, rel) as pf:
                for batch in pf.iter_batches(batch_size=rows, columns=["obs"],
                                             use_threads=False):
                    obs = batch.column("obs").flatten().flatten().to_numpy(zero_copy_only=False)
                    total = combine(total, moments(obs.reshape(-1, f)))
    return total, from_cards


def _copy_file(pf: pq.ParquetFile, rel: str, want: dict[str, np.ndarray],
               out: dict[str, np.ndarray], dst0: int, env: str, n: int) -> None:
    """Copy rows want["src"] of one steps file to out[dst0:], reading only the row groups
    that hold them, one record batch at a time."""
    spec = ENVS[env]
    f, a = spec.obs_width, spec.num_actions  # columns checked by open_checked
    src = want["src"]
    if src.max() >= pf.metadata.num_rows:
        raise LakeFileError(rel, f"the episodes index points at row {src.max()}, the file "
                                 f"has {pf.metadata.num_rows}")
    rg_rows = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    rg_start = np.concatenate([[0], np.cumsum(rg_rows)])
    batch_rows = max(64, _BATCH_AGENT_STEPS // n)
    order = np.argsort(src, kind="stable")
    sorted_src = src[order]
    for g in range(pf.num_row_groups):
        lo_g, hi_g = np.searchsorted(sorted_src, rg_start[g:g + 2])
        if lo_g == hi_g:
            continue  # no selected row in this row group: not read
        row0 = int(rg_start[g])
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[g],
                                     columns=_STEP_COLUMNS, use_threads=False):
            row1 = row0 + batch.num_rows
            lo, hi = np.searchsorted(sorted_src, [row0, row1])
            pos = order[lo:hi]
            if pos.size:
                data = _columns_to_numpy(batch, n, f, a, rel)
                take = src[pos] - row0
                if ((data["episode"][take] != want["episode"][pos]).any()
                        or (data["step"][take] != want["step"][pos]).any()):
                    raise LakeFileError(rel, "rows do not match the episodes index "
                                             "(episode/step columns disagree)")
                for k in out:
                    out[k][dst0 + pos] = data[k][take]
            row0 = row1


def _key(lake: Lake, selection: DataSelection, resolved: ResolvedSelection,
         versions: dict[str, int], stamps: dict[str, int]) -> tuple[str, str]:
    # the versions read are the data key's; `as_of` is left out here so that the selection
    # pinned to the versions it read now has the same key as the same selection unpinned
    chosen = {k: v for k, v in selection.to_json().items() if k != "as_of"}
    sel = _sha({"version": CACHE_VERSION, "root": lake.root, "selection": chosen})
    data = _sha({"versions": versions, "files": stamps,
                 "episodes": {t.task: t.to_json() for t in resolved.tasks}})
    return sel[:16], data[:16]


def _pinned(lake: Lake, selection: DataSelection) -> tuple[DataSelection, dict[str, int]]:
    """The selection pinned to table versions: its own `as_of`, else the current ones."""
    env = selection.env_name
    tables = ["episodes", f"steps/{env}"]
    versions = table_versions(lake, tables)
    versions.update({t: v for t, v in (selection.as_of or {}).items() if t in tables})
    return dataclasses.replace(selection, as_of=versions), versions


def cache_path_for(lake: Lake, selection: DataSelection,
                   cache_dir: str | os.PathLike | None = None) -> tuple[Path, ResolvedSelection,
                                                                   dict[str, int]]:
    """Where the cache of `selection` on the lake as it is now lives (built or not)."""
    pinned, versions = _pinned(lake, selection)
    resolved = resolve_selection(lake, pinned)
    stamps = file_stamps(lake, [*resolved.episode_files, *resolved.steps_files])
    sel_key, data_key = _key(lake, selection, resolved, versions, stamps)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"{selection.env_name}-{sel_key}-{data_key}", resolved, versions


def _open_checked(final: Path) -> TrainingCache | None:
    """The finished cache at `final`, every array checked; None (after removing it) when it
    is damaged, so the caller rebuilds it."""
    if not (final / MANIFEST).exists():
        return None
    try:
        cache = TrainingCache.open(final)
        cache.check()
        return cache
    except (CacheDamagedError, FileNotFoundError, KeyError, TypeError) as e:
        logger.warning("training cache %s is damaged (%s): rebuilding it", final, e)
        shutil.rmtree(final, ignore_errors=True)
        return None


def build_cache(lake: Lake, selection: DataSelection,
                cache_dir: str | os.PathLike | None = None,
                prune_stale: bool = True,
                log: Callable[[str], None] | None = None) -> TrainingCache:
    """The cache of `selection`: reused when the lake tables it read are unchanged, else built.

    After a rebuild, `prune_stale` removes the same selection's caches of older lake states
    (a process already reading one keeps its open maps; one opening it later gets a clear
    error). Raises SelectionError for a bad or empty selection, LakeFileError for a bad file.
    A build reports one progress line per task (steps, rate, ETA) to `log` (default: this
    module's logger); a reused cache reports nothing.
    """
    final, resolved, versions = cache_path_for(lake, selection, cache_dir)
    existing = _open_checked(final)
    if existing is not None:
        return existing
    stamps = file_stamps(lake, [*resolved.episode_files, *resolved.steps_files])
    check_contents(lake, selection.env_name, resolved)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    env = selection.env_name
    try:
        tmp.mkdir()
        tasks = []
        # Progress in steps (what a task's build time grows with), a line per task.
        progress = Progress(sum(te.num_steps for te in resolved.tasks), "steps cached",
                            rate_unit="steps/s", log=log, logger=logger)
        progress.say(f"building the training cache {final.name} ({len(resolved.tasks)} "
                     f"tasks of {env})")
        for i, te in enumerate(resolved.tasks):
            d = f"{i:02d}-{te.task.split('/', 1)[1]}"
            _build_task(lake, te, tmp / d, env)
            tasks.append(CacheTask(te.task, te.num_agents, te.num_steps, te.num_episodes, d))
            progress.emit(sum(t.num_steps for t in tasks),
                          extra=f"  | task {i + 1}/{len(resolved.tasks)} {te.task}")
        try:
            scope = resolve_selection(lake, dataclasses.replace(
                selection.standardisation_scope(), as_of=versions))
        except SelectionError as e:
            raise SelectionError(f"standardisation statistics come from every task of the "
                                 f"selection's split or tasks: {e}") from None
        total, from_cards = standardisation_moments(lake, scope)
        checkpoints = len(scope.steps_files)
        progress.say(f"standardisation statistics of {len(scope.tasks)} task(s) "
                     f"({', '.join(t.task for t in scope.tasks)}): {from_cards} of "
                     f"{checkpoints} checkpoints from their dataset cards, the rest computed")
        (tmp / EPISODES).write_text(json.dumps({t.task: t.to_json() for t in resolved.tasks}))
        manifest = {
            "version": CACHE_VERSION, "key": final.name, "env": env, "lake": lake.root,
            "selection": selection.to_json(), "versions": versions,
            "tasks": [t.__dict__ for t in tasks],
            "files": stamps, "stats": ObsStats.from_moments(total).to_json(),
            "stats_scope": scope.selection.to_json(),
            "stats_from_cards": {"checkpoints": from_cards, "of": checkpoints},
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).exists():  # not a concurrent builder's finished copy
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if prune_stale:
        _prune_stale(final)
    cache = TrainingCache.open(final)
    cache.check()
    return cache


def _prune_stale(final: Path) -> None:
    """Remove caches of the same selection built from an older state of the lake."""
    prefix = final.name.rsplit("-", 1)[0] + "-"
    for other in final.parent.glob(prefix + "*"):
        if other != final and other.is_dir() and len(other.name) == len(final.name):
            shutil.rmtree(other, ignore_errors=True)
