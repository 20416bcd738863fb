"""Which episodes a model trains on: a typed selection resolved through the `episodes` table.

`DataSelection` names the environment, the tasks (an explicit list, a split, or the first k
tasks of a split), the quality subset (`all`, `high`, `low`, or `high+low`: every high
episode plus a fraction of the low ones), the dataset size (episodes per task or a fraction)
and the runs. `resolve_selection` reads only the `episodes` table (never `steps`) and returns,
per task, the chosen episodes in a canonical order (run, checkpoint, episode).

Subsets are deterministic for a seed, and per task: task t's random choices come from a
generator seeded with (seed, crc32(task name)), so adding or removing other tasks (the
task-scaling experiment's first k tasks) never changes which episodes of t are chosen.
Counts from fractions round half up and keep at least one episode:
`fraction_count(n, f) = max(1, floor(f * n + 0.5))` for n > 0.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from lake_schema.catalogue import get_task, scenario
from lake_schema.reader import Selection, list_files, read_files
from lake_schema.storage import Lake
from trainer.errors import SelectionError
from trainer.tasks import resolve_tasks

QUALITY_SUBSETS = ("all", "high", "low", "high+low")
EPISODE_COLUMNS = ("run", "quality", "checkpoint", "episode", "length", "steps_file",
                   "first_row")


def fraction_count(n: int, fraction: float) -> int:
    """How many of n items a fraction keeps: round half up, at least one (if n > 0)."""
    if n <= 0:
        return 0
    return max(1, min(n, math.floor(fraction * n + 0.5)))


def choose(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k of range(n) without replacement, sorted (order stays canonical)."""
    if k >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


def _check_fraction(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, int | float) and 0 < value <= 1):
        raise SelectionError(f"{name}={value!r} is outside (0, 1]")


@dataclass(frozen=True)
class DataSelection:
    """A validated dataset selection. Tasks are `env/scenario` or scenarios of `env`."""

    env: str | None = None
    tasks: tuple[str, ...] | None = None
    split: str | None = None
    first_k: int | None = None  # the first k tasks of `split` (task-scaling experiment)
    quality: str = "all"
    low_fraction: float | None = None  # with quality="high+low": share of low episodes kept
    episodes_per_task: int | None = None
    fraction: float | None = None  # of each task's episodes (after the quality filter)
    runs: tuple[str, ...] | None = None
    seed: int = 0
    # Pin the lake tables read to versions ({table id: version}, lake_schema's
    # `table_versions`), so a model can be retrained on exactly its data. None: current.
    as_of: dict[str, int] | None = field(default=None, compare=False, hash=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        for name in ("tasks", "runs"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "_names", self._resolve_names())
        if self.quality not in QUALITY_SUBSETS:
            raise SelectionError(
                f"unknown quality subset {self.quality!r}; choose from {QUALITY_SUBSETS}")
        if self.quality == "high+low":
            if self.low_fraction is None:
                raise SelectionError("quality='high+low' needs low_fraction in (0, 1]")
            _check_fraction("low_fraction", self.low_fraction)
        elif self.low_fraction is not None:
            raise SelectionError(
                f"low_fraction={self.low_fraction!r} only applies to quality='high+low', "
                f"not {self.quality!r}")
        _check_fraction("fraction", self.fraction)
        if self.episodes_per_task is not None:
            if self.fraction is not None:
                raise SelectionError("give episodes_per_task or fraction, not both")
            if not isinstance(self.episodes_per_task, int) or self.episodes_per_task < 1:
                raise SelectionError(
                    f"episodes_per_task={self.episodes_per_task!r} must be a positive integer")
        if self.runs is not None and not self.runs:
            raise SelectionError("runs=() selects nothing; use None for every run")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SelectionError(f"seed={self.seed!r} must be a non-negative integer")

    def _resolve_names(self) -> tuple[str, ...]:
        names = [t.name for t in resolve_tasks(self.env, self.tasks, self.split, self.first_k)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SelectionError(f"task(s) selected twice: {dup}")
        return tuple(names)

    @property
    def env_name(self) -> str:
        return get_task(self._names[0]).env

    @property
    def task_names(self) -> tuple[str, ...]:
        """The selected tasks as `env/scenario`, in selection (= task index) order."""
        return self._names

    def standardisation_scope(self) -> DataSelection:
        """The episodes whose observation statistics standardise this selection's model: every
        episode (every quality, every checkpoint) of the whole split, or of the named tasks,
        of the same runs at the same table versions.

        Why not the selection itself: the paper standardises per environment, and a
        comparison of models (1 task against 5, `high` against `all`) must not also compare
        different input statistics. Every model of one experiment names the same split, so
        all of them see one statistic."""
        if self.split is not None:
            return DataSelection(env=self.env_name, split=self.split, runs=self.runs,
                                 as_of=self.as_of)
        return DataSelection(env=self.env_name, tasks=self.task_names, runs=self.runs,
                             as_of=self.as_of)

    @classmethod
    def from_json(cls, d: dict) -> DataSelection:
        """Inverse of `to_json` (a split selection stays a split selection)."""
        kw = {k: d.get(k) for k in ("low_fraction", "episodes_per_task", "fraction")}
        kw.update(quality=d.get("quality") or "all", seed=d.get("seed") or 0,
                  runs=tuple(d["runs"]) if d.get("runs") is not None else None,
                  as_of=d.get("as_of"))
        if d.get("split") is not None:
            return cls(env=d["env"], split=d["split"], first_k=d.get("first_k"), **kw)
        return cls(env=d.get("env"), tasks=tuple(d["tasks"]), **kw)

    def to_json(self) -> dict:
        return {
            "env": self.env_name, "tasks": list(self.task_names), "split": self.split,
            "first_k": self.first_k, "quality": self.quality, "low_fraction": self.low_fraction,
            "episodes_per_task": self.episodes_per_task, "fraction": self.fraction,
            "runs": list(self.runs) if self.runs is not None else None, "seed": self.seed,
        } | ({"as_of": dict(self.as_of)} if self.as_of is not None else {})


@dataclass(frozen=True, eq=False)
class TaskEpisodes:
    """One task's chosen episodes, in canonical order; columns as in EPISODE_COLUMNS."""

    task: str
    num_agents: int
    columns: dict[str, np.ndarray]

    @property
    def num_episodes(self) -> int:
        return len(self.columns["episode"])

    @property
    def num_steps(self) -> int:
        return int(self.columns["length"].sum())

    def to_json(self) -> dict:
        return {k: v.tolist() for k, v in self.columns.items()}


@dataclass(frozen=True, eq=False)
class ResolvedSelection:
    selection: DataSelection
    tasks: tuple[TaskEpisodes, ...]
    episode_files: tuple[str, ...]  # the `episodes` files read, root-relative

    @property
    def steps_files(self) -> tuple[str, ...]:
        return tuple(sorted({f for t in self.tasks for f in t.columns["steps_file"]}))


def _subset(table: pa.Table, sel: DataSelection, task: str) -> np.ndarray:
    """Row indices of one task's episodes (canonical order) that the selection keeps."""
    seed = [sel.seed, zlib.crc32(task.encode())]
    quality = np.asarray(table["quality"].to_pylist(), dtype=object)
    rows = np.arange(table.num_rows)
    if sel.quality in ("high", "low"):
        rows = rows[quality == sel.quality]
    elif sel.quality == "high+low":
        low = rows[quality == "low"]
        keep = low[choose(len(low), fraction_count(len(low), sel.low_fraction),
                          np.random.default_rng([*seed, 0]))]
        rows = np.sort(np.concatenate([rows[quality == "high"], keep]))
    n = len(rows)
    if sel.episodes_per_task is not None:
        if sel.episodes_per_task > n:
            raise SelectionError(
                f"{task}: episodes_per_task={sel.episodes_per_task} but only {n} episodes "
                f"match (quality={sel.quality!r}, runs={sel.runs})")
        k = sel.episodes_per_task
    elif sel.fraction is not None:
        k = fraction_count(n, sel.fraction)
    else:
        k = n
    return rows[choose(n, k, np.random.default_rng([*seed, 1]))]


def resolve_selection(lake: Lake, sel: DataSelection) -> ResolvedSelection:
    """The episodes `sel` chooses, per task, from the lake's `episodes` table only."""
    env = sel.env_name
    scenarios = [scenario(n) for n in sel.task_names]
    quality = {"high": "high", "low": "low"}.get(sel.quality)
    files = list_files(lake, "episodes", Selection(env=env, tasks=scenarios, runs=sel.runs,
                                                   quality=quality, as_of=sel.as_of))
    cols = ["task", *EPISODE_COLUMNS]
    table = read_files(lake, files, "episodes", env, cols)
    table = table.sort_by([("task", "ascending"), ("run", "ascending"),
                           ("checkpoint", "ascending"), ("episode", "ascending")])
    task_col = np.asarray(table["task"].to_pylist(), dtype=object)
    out, empty = [], []
    for name, scen in zip(sel.task_names, scenarios, strict=True):
        part = table.filter(pa.array(task_col == scen))
        part = part.take(pa.array(_subset(part, sel, name), pa.int64()))
        if part.num_rows == 0:
            empty.append(name)
            continue
        columns = {c: part[c].to_numpy(zero_copy_only=False) for c in EPISODE_COLUMNS}
        columns = {c: (v.astype(str) if v.dtype == object else v) for c, v in columns.items()}
        out.append(TaskEpisodes(name, get_task(name).num_agents, columns))
    if empty:
        raise SelectionError(
            f"no episodes match for {len(empty)} task(s): {empty} "
            f"(quality={sel.quality!r}, runs={sel.runs}, lake {lake.root})")
    return ResolvedSelection(sel, tuple(out), tuple(files))

