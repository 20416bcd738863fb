"""og-marl / flashbax Vaults in and out of the lake, read and written with tensorstore.

Researchers hold offline MARL data as Vaults; this module converts them to the lake's
tables and back without JAX (a Vault is read and written here with tensorstore, numpy and
pyarrow only), window by window, so memory stays bounded whatever the Vault's size.

A Vault (flashbax 0.1.x, `flashbax.vault.Vault(vault_name, experience_structure, rel_dir,
vault_uid)`) is the folder `<rel_dir>/<vault_name>/<vault_uid>/` holding

- `metadata.json`: {"version": 1.2, "structure_shape": the experience tree with a string
  "(B, T, ...)" per leaf, "structure_dtype": the same tree with dtype names, any extra
  keys}; og-marl's quality tiers Good / Medium / Poor are uids of one vault_name;
- one OCDBT key-value store holding a zarr (v2) array per leaf, named by the leaf's path
  joined with dots plus a trailing dot (`observations.`, `infos.legals.`), of shape
  (B, 10**13, ...): the time axis is pre-sized, chunked by tensorstore's default (about
  4 MiB per chunk), gzip level 5;
- `vault_index`: a zarr int32 array of shape (1,), the number of time steps written.

og-marl's experience (per time step t of batch row b): observations (B, T, N, O), actions
(B, T, N), rewards (B, T, N), terminals (B, T, N), truncations (B, T, N), infos: {legals
(B, T, N, A), state (B, T, S)}; `terminals[b, t]` says the episode ended with step t.

Import (`import_vault`): each uid becomes one run of one task, its episodes written with
`write_episodes` in parts of bounded size (part k is checkpoint k of the run: a lake write
replaces one (task, run, checkpoint) key, so a part is the unit of one transaction).
Export (`export_vault`) writes a lake selection as a Vault that `flashbax.vault.Vault`
and og-marl's loaders read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from lake_schema.catalogue import Task, get_task
from lake_schema.errors import LakeValueError, VaultFormatError
from lake_schema.reader import Selection, read_files, read_table
from lake_schema.storage import Lake
from lake_schema.writer import EpisodeBatch, delete_run, write_episodes

if TYPE_CHECKING:

    import tensorstore as ts

METADATA_FILE = "metadata.json"
INDEX_STORE = "vault_index"
TIME_AXIS_MAX_LENGTH = int(10e12)  # flashbax's pre-sized time axis
VAULT_VERSION = 1.2  # flashbax's metadata version (readers check the major version only)
COMPRESSION = {"id": "gzip", "level": 5}  # flashbax's default compressor
DEFAULT_MEMORY_MB = 256

# og-marl's tiers (vault uids) -> the lake's quality tags. Anything else needs --quality.
UID_QUALITY = {"good": "high", "expert": "high", "medium": "low", "poor": "low"}
TEAM_REWARD_RULES = ("sum", "mean", "shared")
# How each environment's team reward is formed from per-agent rewards (catalogue's
# EnvSpec.team_reward): rware's reward is shared (every agent holds the team's), so summing
# it would count each delivery N times; connector's is the mean over agents (Mava's Vaults
# hold Jumanji's per-agent rewards; the catalogue explains why the mean).
DEFAULT_TEAM_REWARD = {"lbf": "sum", "rware": "shared", "connector": "mean"}
_META_KEY = "sable_lake"  # our extra key in the metadata of an exported Vault
# Steps of one batch row read at once when checking that a Vault's per-agent rewards are
# all equal: 64k steps of 32 agents' float32 rewards is 8 MiB.
_REWARD_SCAN_STEPS = 1 << 16

# The fields an import reads: vault leaf -> what it becomes. Others are ignored (reported).
OBS, ACTIONS, REWARDS = "observations", "actions", "rewards"
TERMINALS, TRUNCATIONS, LEGALS, STATE = "terminals", "truncations", "infos.legals", "infos.state"
_READ = (OBS, ACTIONS, REWARDS, TERMINALS, TRUNCATIONS, LEGALS)


def _ts():  # -> the tensorstore module
    """tensorstore, imported on first use: the CLI's other commands do not pay for it."""
    import tensorstore

    return tensorstore


# ---------------------------------------------------------------- opening a Vault


@dataclass
class VaultSource:
    """An opened Vault uid: its leaves (tensorstore arrays) and how many steps they hold."""

    path: str  # the uid folder
    uid: str
    metadata: dict
    leaves: dict[str, ts.TensorStore]  # dotted leaf name -> (B, TIME_AXIS_MAX_LENGTH, ...)
    length: int  # vault_index: time steps written
    batch: int  # B

    def per_step_bytes(self, names: Sequence[str]) -> int:
        """Decoded bytes of one time step of one batch row, over the named leaves."""
        return sum(math.prod(self.leaves[n].shape[2:]) * self.leaves[n].dtype.numpy_dtype
                   .itemsize for n in names if n in self.leaves)

    def chunk_bytes(self, names: Sequence[str]) -> int:
        """Decoded bytes of one storage chunk of each named leaf, summed: tensorstore
        decodes whole chunks, so a cache smaller than this decodes a chunk again for every
        window that touches it (flashbax's chunks are about 4 MiB per leaf)."""
        return sum(math.prod(self.leaves[n].chunk_layout.read_chunk.shape)
                   * self.leaves[n].dtype.numpy_dtype.itemsize
                   for n in names if n in self.leaves)


def _flatten_structure(tree: object, prefix: str = "") -> list[str]:
    """metadata's structure_shape tree -> dotted leaf names ("infos.legals")."""
    if isinstance(tree, dict):
        out: list[str] = []
        for k, v in tree.items():
            out += _flatten_structure(v, f"{prefix}{k}.")
        return out
    return [prefix[:-1]]


def _context(cache_bytes: int) -> ts.Context:
    # The cache keeps decoded chunks between windows: a leaf whose chunks span more time
    # steps than a window would otherwise be decoded once per window.
    return _ts().Context({"cache_pool": {"total_bytes_limit": int(cache_bytes)},
                          "data_copy_concurrency": {"limit": 2}})


def _spec(base: str, name: str) -> dict:
    return {"driver": "zarr",
            "kvstore": {"driver": "ocdbt", "base": f"file://{os.path.abspath(base)}",
                        "path": name}}


def open_vault(path: str | os.PathLike, cache_bytes: int = 64 << 20) -> VaultSource:
    """Open one Vault uid folder (the one holding metadata.json) for reading."""
    path = os.fspath(path)
    meta_path = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(meta_path):
        raise VaultFormatError(f"{path}: not a Vault (no {METADATA_FILE})")
    try:
        with open(meta_path) as f:
            metadata = json.load(f)
        version = float(metadata["version"])
        names = _flatten_structure(metadata["structure_shape"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise VaultFormatError(f"{meta_path}: unreadable Vault metadata ({e})") from e
    if version // 1 != VAULT_VERSION // 1:
        raise VaultFormatError(f"{meta_path}: Vault version {version}, this reads "
                               f"{VAULT_VERSION // 1:.0f}.x")
    ts = _ts()
    ctx = _context(cache_bytes)
    leaves: dict[str, ts.TensorStore] = {}
    try:
        for name in names:
            leaves[name] = ts.open(_spec(path, name + "."), open=True, read=True,
                                   context=ctx).result()
        index = ts.open(_spec(path, INDEX_STORE), open=True, read=True,
                        context=ctx).result()
        length = int(index.read().result()[0])
    except ValueError as e:  # tensorstore's NOT_FOUND / corrupt metadata
        raise VaultFormatError(f"{path}: cannot open the Vault's arrays "
                               f"({' '.join(str(e).split())[:300]})") from e
    batches = {n: s.shape[0] for n, s in leaves.items() if s.rank >= 2}
    if len(set(batches.values())) > 1:
        raise VaultFormatError(f"{path}: leaves disagree on the batch size: {batches}")
    short = [n for n, s in leaves.items() if s.rank < 2 or s.shape[1] < length]
    if short:
        raise VaultFormatError(f"{path}: {short[0]} is not a (B, T, ...) array of at least "
                               f"{length} steps")
    return VaultSource(path, os.path.basename(os.path.normpath(path)), metadata, leaves,
                       length, next(iter(batches.values()), 0))


def vault_uids(path: str | os.PathLike) -> list[str]:
    """The uids under a vault_name folder (or [the folder's name] for a uid folder)."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, METADATA_FILE)):
        return [os.path.basename(os.path.normpath(path))]
    if not os.path.isdir(path):
        raise VaultFormatError(f"{path}: no such Vault folder")
    uids = sorted(d for d in os.listdir(path)  # hidden: a VaultWriter's unfinished folder
                  if not d.startswith(".") and os.path.isfile(os.path.join(path, d,
                                                                          METADATA_FILE)))
    if not uids:
        raise VaultFormatError(f"{path}: no Vault here (no <uid>/{METADATA_FILE})")
    return uids


def _uid_folder(path: str, uid: str) -> str:
    if os.path.isfile(os.path.join(path, METADATA_FILE)):
        return path
    return os.path.join(path, uid)


# ---------------------------------------------------------------- mapping onto a task


@dataclass(frozen=True)
class FieldMap:
    """How a Vault's leaves map onto one task's step arrays; checked before any write."""

    task: Task
    team_reward: str  # "sum", "mean" or "shared"
    team_reward_chosen: bool  # by the caller or the Vault's metadata, not the env's default
    per_agent_reward: bool  # rewards (B, T, N) rather than (B, T)
    per_agent_flags: dict[str, bool]  # terminals / truncations: (B, T, N) or (B, T)
    has_truncations: bool
    has_legals: bool
    ignored: tuple[str, ...]


def _refuse(field_: str, task: Task, why: str) -> VaultFormatError:
    return VaultFormatError(f"{field_}: {why} (task {task.name})")


def plan_fields(src: VaultSource, task: Task, team_reward: str | None = None) -> FieldMap:
    """Check every leaf the import reads against the task's shapes; name the first that
    cannot be mapped. Observations may have any trailing shape whose size is the env's
    per-agent width (e.g. (3, 5, 5) for lbf's 75): they are flattened in C order."""
    spec, n = task.spec, task.num_agents
    missing = [f for f in (OBS, ACTIONS, REWARDS, TERMINALS) if f not in src.leaves]
    if missing:
        raise _refuse(missing[0], task, f"missing from the Vault (its leaves: "
                                        f"{', '.join(sorted(src.leaves))})")
    shape = {k: tuple(s.shape[2:]) for k, s in src.leaves.items()}
    obs = shape[OBS]
    if not obs or obs[0] != n:
        raise _refuse(OBS, task, f"per-step shape {obs}: expected ({n}, ...) for {n} agents")
    if math.prod(obs[1:]) != spec.obs_width:
        raise _refuse(OBS, task, f"per-agent shape {obs[1:]} holds {math.prod(obs[1:])} "
                                 f"values; {task.env} observations are {spec.obs_width} wide")
    if shape[ACTIONS] != (n,):
        raise _refuse(ACTIONS, task, f"per-step shape {shape[ACTIONS]}: expected ({n},), one "
                                     "discrete action per agent")
    for f in (REWARDS, TERMINALS, TRUNCATIONS):
        if f in shape and shape[f] not in ((n,), ()):
            raise _refuse(f, task, f"per-step shape {shape[f]}: expected ({n},) or ()")
    if LEGALS in shape and shape[LEGALS] != (n, spec.num_actions):
        raise _refuse(LEGALS, task, f"per-step shape {shape[LEGALS]}: expected "
                                    f"({n}, {spec.num_actions})")
    for f in _READ:
        if f in src.leaves and src.leaves[f].dtype.numpy_dtype.kind not in "biuf":
            raise _refuse(f, task, f"dtype {src.leaves[f].dtype} is not numeric")
    meta_rule = (src.metadata.get(_META_KEY) or {}).get("team_reward")
    rule = team_reward or meta_rule or DEFAULT_TEAM_REWARD[task.env]
    if rule not in TEAM_REWARD_RULES:
        raise LakeValueError(f"team reward rule {rule!r}: one of {TEAM_REWARD_RULES}")
    return FieldMap(
        task, rule, team_reward_chosen=bool(team_reward or meta_rule),
        per_agent_reward=shape[REWARDS] == (n,),
        per_agent_flags={f: shape[f] == (n,) for f in (TERMINALS, TRUNCATIONS) if f in shape},
        has_truncations=TRUNCATIONS in shape, has_legals=LEGALS in shape,
        ignored=tuple(sorted(set(src.leaves) - set(_READ))))


def _exact(field_: str, task: Task, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`x` as `dtype`, refusing (naming the field) any value the cast would change. The
    comparison upcasts element by element: no second full-size copy of the window."""
    out = x.astype(dtype, copy=False)
    if out.dtype != x.dtype:
        with np.errstate(invalid="ignore"):
            same = out == x
        if not same.all():
            bad = x[~same].flat[0]
            raise _refuse(field_, task, f"value {bad!r} cannot be stored exactly as {dtype}")
    return out


def _binary(x: np.ndarray) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def _flag(field_: str, task: Task, x: np.ndarray, per_agent: bool) -> np.ndarray:
    """0/1 flags (any numeric dtype) -> the team's flag per step: every agent's flag set."""
    if not _binary(x):
        raise _refuse(field_, task, "flags must be 0 or 1")
    x = x.astype(bool)
    return x.all(axis=-1) if per_agent else x


def _map_window(fm: FieldMap, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One window of one batch row, raw Vault arrays (w, ...) -> the lake's step arrays:
    obs (w, N, F) native dtype, action (w, N) int32, legal (w, N, A) bool, reward (w,)
    float32 team reward, terminated / truncated (w,) bool."""
    task, spec = fm.task, fm.task.spec
    w, n = raw[OBS].shape[0], task.num_agents
    obs = _exact(OBS, task, raw[OBS].reshape(w, n, spec.obs_width), np.dtype(spec.obs_dtype))
    actions = _exact(ACTIONS, task, raw[ACTIONS], np.dtype(np.int32))
    if actions.size and (actions.min() < 0 or actions.max() >= spec.num_actions):
        raise _refuse(ACTIONS, task, f"actions must be in [0, {spec.num_actions})")
    if fm.has_legals:
        legal_raw = raw[LEGALS]
        if not _binary(legal_raw):
            raise _refuse(LEGALS, task, "legal-action masks must be 0 or 1")
        legal = legal_raw.astype(bool)
    else:
        legal = np.ones((w, n, spec.num_actions), bool)
    rewards = raw[REWARDS]
    if rewards.dtype.kind != "f":
        rewards = rewards.astype(np.float64)
    if fm.per_agent_reward:
        if fm.team_reward == "shared":
            if not (rewards == rewards[:, :1]).all():
                raise _refuse(REWARDS, task, "agents' rewards differ within a step, but the "
                                             "team reward rule is 'shared' (pass "
                                             "--team-reward sum to add them)")
            team = rewards[:, 0]
        elif fm.team_reward == "mean":
            team = rewards.mean(axis=-1)
        else:
            team = rewards.sum(axis=-1)
    else:
        team = rewards
    reward = team.astype(np.float32)  # the lake's reward column (the writer checks finite)
    terminated = _flag(TERMINALS, task, raw[TERMINALS], fm.per_agent_flags[TERMINALS])
    truncated = (_flag(TRUNCATIONS, task, raw[TRUNCATIONS], fm.per_agent_flags[TRUNCATIONS])
                 if fm.has_truncations else np.zeros(w, bool))
    return {"obs": obs, "action": actions, "legal": legal, "reward": reward,
            "terminated": terminated, "truncated": truncated}


class TeamRewardError(LakeValueError):
    """A Vault whose team reward the import would get wrong by the env's default rule (a
    shared reward stored per agent, which `sum` counts N times): the caller must choose."""


def _rewards_shared(src: VaultSource) -> bool:
    """Every step's per-agent rewards equal across the agents, and some reward not zero:
    a team reward stored once per agent. Reads the rewards leaf only, a window at a time,
    and stops at the first step whose agents' rewards differ (per-agent rewards show one
    within the first rewarded steps)."""
    leaf, nonzero = src.leaves[REWARDS], False
    for b in range(src.batch):
        for start in range(0, src.length, _REWARD_SCAN_STEPS):
            r = leaf[b, start:min(src.length, start + _REWARD_SCAN_STEPS)].read().result()
            if not (r == r[:, :1]).all():
                return False
            nonzero = nonzero or bool(r.any())
    return nonzero


def check_team_reward(src: VaultSource, fm: FieldMap) -> None:
    """Refuse the env's default `sum` on a Vault whose agents all hold the same reward at
    every step: that is a shared team reward stored per agent (as a Vault written from a
    team reward holds it), and summing it counts it N times. Neither the caller nor the
    Vault's metadata chose a rule, so the caller must (`--team-reward`)."""
    n = fm.task.num_agents
    if (fm.team_reward_chosen or fm.team_reward != "sum" or not fm.per_agent_reward
            or n == 1 or not _rewards_shared(src)):
        return
    raise TeamRewardError(
        f"{REWARDS}: every step's rewards are equal across the {n} agents of {src.path}, a "
        f"team reward stored per agent, which {fm.task.env}'s default rule 'sum' would count "
        f"{n} times; pass --team-reward shared to import it as it is, or --team-reward sum "
        f"to add them all the same (task {fm.task.name})")


# ---------------------------------------------------------------- import


@dataclass(frozen=True)
class Budget:
    """Sizes derived from a memory budget: steps read per window, steps per lake write."""

    window_steps: int
    part_steps: int
    cache_bytes: int

    @classmethod
    def for_memory(cls, memory_bytes: int, src_step_bytes: int, lake_step_bytes: int,
                   task: Task) -> Budget:
        """Split a budget: the tensorstore chunk cache 1/8; a window's raw arrays 1/16
        (mapping them makes short-lived copies, ~3x); a part's arrays 1/32 of it as the
        lake's bytes (held twice while it is gathered, then ~10-14x inside
        `write_episodes`: Arrow, the Delta cast to nested lists, Parquet pages and levels
        of the whole file; measured on rware-4ag). The peak is then about the budget above
        the fixed cost of the libraries and the lake's writer (~200-250 MiB). A part holds
        at least one whole episode (the task's time limit)."""
        window = max(1, memory_bytes // 16 // max(1, src_step_bytes))
        part = max(task.time_limit, memory_bytes // 32 // max(1, lake_step_bytes))
        return cls(window, part, memory_bytes // 8)


def budget_for(src: VaultSource, task: Task, memory_bytes: int) -> Budget:
    """`Budget.for_memory` for this Vault and task, with a chunk cache that holds one chunk
    of every leaf read, whatever the budget (see `VaultSource.chunk_bytes`)."""
    b = Budget.for_memory(memory_bytes, src.per_step_bytes(_READ), _lake_step_bytes(task),
                          task)
    return dataclasses.replace(b, cache_bytes=max(b.cache_bytes,
                                                  src.chunk_bytes(_READ) + (1 << 20)))


def _lake_step_bytes(task: Task) -> int:
    spec, n = task.spec, task.num_agents
    return (n * spec.obs_width * np.dtype(spec.obs_dtype).itemsize + n * spec.num_actions
            + 4 * n + 16)


@dataclass
class _Part:
    """Whole episodes collected for one lake write: lists of (steps, ...) arrays."""

    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)
    steps: int = 0

    def add(self, piece: dict[str, np.ndarray], lengths: Sequence[int]) -> None:
        for k, v in piece.items():
            self.arrays.setdefault(k, []).append(v)
        self.lengths += list(lengths)
        self.steps += int(sum(lengths))

    def batch(self) -> EpisodeBatch:
        a = {k: np.concatenate(v) for k, v in self.arrays.items()}
        return EpisodeBatch(a["obs"], a["action"], a["legal"], a["reward"], a["terminated"],
                            a["truncated"], np.asarray(self.lengths, np.int64))


def iter_parts(src: VaultSource, fm: FieldMap, budget: Budget,
               stats: dict | None = None) -> Iterator[EpisodeBatch]:
    """The Vault's whole episodes, in order (row by row, then time), as EpisodeBatches of
    about `budget.part_steps` steps. Reads `budget.window_steps` steps of every leaf at a
    time; an episode running across windows is carried (at most the task's time limit).
    A row's unfinished last episode is dropped (counted in stats["dropped_steps"])."""
    stats = stats if stats is not None else {}
    stats.setdefault("dropped_steps", 0)
    stats.setdefault("max_window_steps", 0)
    stats.setdefault("max_part_steps", 0)
    task = fm.task
    names = [f for f in _READ if f in src.leaves]
    part = _Part()
    for b in range(src.batch):
        carry: list[dict[str, np.ndarray]] = []
        carried = 0
        for start in range(0, src.length, budget.window_steps):
            stop = min(src.length, start + budget.window_steps)
            futures = {f: src.leaves[f][b, start:stop].read() for f in names}
            raw = {f: fut.result() for f, fut in futures.items()}
            stats["max_window_steps"] = max(stats["max_window_steps"], stop - start)
            win = _map_window(fm, raw)
            del raw
            ends = np.flatnonzero(win["terminated"] | win["truncated"])
            cut = 0
            for e in ends:
                piece = {k: v[cut:e + 1] for k, v in win.items()}
                length = carried + e + 1 - cut
                if length > task.time_limit:
                    raise _refuse(TERMINALS, task, f"an episode of batch row {b} ending at "
                                                   f"step {start + e} is {length} steps "
                                                   f"long, over the time limit "
                                                   f"{task.time_limit}")
                if carry:
                    piece = {k: np.concatenate([c[k] for c in carry] + [piece[k]])
                             for k in piece}
                part.add(piece, [length])
                carry, carried, cut = [], 0, e + 1
            if cut < stop - start:
                carry.append({k: v[cut:].copy() for k, v in win.items()})
                carried += stop - start - cut
                if carried > task.time_limit:
                    raise _refuse(TERMINALS, task, f"no terminal or truncation flag within "
                                                   f"the time limit {task.time_limit} "
                                                   f"from step {stop - carried} of batch "
                                                   f"row {b}")
            if part.steps >= budget.part_steps:
                stats["max_part_steps"] = max(stats["max_part_steps"], part.steps)
                yield part.batch()
                part = _Part()
        stats["dropped_steps"] += carried
    if part.steps:
        stats["max_part_steps"] = max(stats["max_part_steps"], part.steps)
        yield part.batch()


@dataclass(frozen=True)
class ImportResult:
    uid: str
    run: str
    quality: str
    parts: int
    episodes: int
    steps: int
    dropped_steps: int  # an unfinished episode at the end of a batch row
    ignored: tuple[str, ...]  # leaves the lake has no column for (e.g. infos.state)
    team_reward: str
    window_steps: int  # the most steps (per batch row) read at once
    part_steps: int  # the most steps of one part (one lake write)

    def line(self) -> str:
        out = (f"{self.uid} -> run {self.run} (quality {self.quality}): {self.episodes} "
               f"episodes, {self.steps} steps in {self.parts} part(s)")
        if self.dropped_steps:
            out += f"; dropped {self.dropped_steps} steps of unfinished episodes"
        if self.ignored:
            out += f"; ignored {', '.join(self.ignored)}"
        return out


def quality_of_uid(uid: str, quality: str | None = None) -> str:
    """The lake's quality tag for a Vault uid: the flag if given, else og-marl's tier."""
    if quality is not None:
        if quality not in ("low", "high"):
            raise LakeValueError(f"bad quality {quality!r}: low or high")
        return quality
    tier = UID_QUALITY.get(uid.lower())
    if tier is None:
        raise LakeValueError(f"uid {uid!r} is not an og-marl tier ({', '.join(UID_QUALITY)}); "
                             "pass --quality low|high")
    return tier


def run_of_uid(uid: str, run: str | None, several: bool) -> str:
    """`--run` names the run (a prefix `<run>-<uid>` when importing several uids); by default
    `vault-<uid>`, with characters a run id cannot hold replaced by '-'."""
    base = (f"{run}-{uid}" if several else run) if run else f"vault-{uid}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", base)[:128]


def _has_run(lake: Lake, task: Task, run: str) -> bool:
    if not lake.is_s3 and not os.path.exists(lake.root):
        return False
    rows = read_table(lake, "episodes", Selection(env=task.env, tasks=[task.scenario],
                                                   runs=[run]), columns=["episode"])
    return rows.num_rows > 0


def import_vault(
    lake: Lake,
    path: str | os.PathLike,
    task: str | Task,
    uids: Sequence[str] | None = None,
    quality: str | None = None,
    run: str | None = None,
    *,
    replace: bool = False,
    team_reward: str | None = None,
    memory_bytes: int = DEFAULT_MEMORY_MB << 20,
    budget: Budget | None = None,
    progress: Callable[[str], None] | None = None,
    on_done: Callable[[ImportResult], None] | None = None,
) -> list[ImportResult]:
    """Import Vault uids (default: every uid under `path`) into the lake, one run each.

    Everything that can be checked without reading the data (uids, quality, run ids,
    shapes and dtypes of every leaf, an existing run) is checked for every uid before the
    first write. A failure while streaming (a value the lake cannot hold, an episode over
    the time limit) removes the run's parts written so far, so a refused import leaves the
    lake's current version as it was.
    """
    task = get_task(task) if isinstance(task, str) else task
    path = os.fspath(path)
    available = vault_uids(path)
    chosen = list(uids) if uids else available
    unknown = [u for u in chosen if u not in available]
    if unknown:
        raise VaultFormatError(f"{path}: no uid {unknown[0]!r}; uids: {', '.join(available)}")
    plans = []
    for uid in chosen:
        q = quality_of_uid(uid, quality)
        r = run_of_uid(uid, run, several=len(chosen) > 1)
        src = open_vault(_uid_folder(path, uid))
        fm = plan_fields(src, task, team_reward)
        if src.length == 0:
            raise VaultFormatError(f"{src.path}: the Vault holds no steps")
        check_team_reward(src, fm)
        if not replace and _has_run(lake, task, r):
            raise LakeValueError(f"run {r} of {task.name} is already in the lake; pass "
                                 "--replace to import it again")
        plans.append((uid, q, r, src, fm))
    results = []
    for uid, q, r, src, fm in plans:
        if replace:
            delete_run(lake, task, r)
        b = budget or budget_for(src, task, memory_bytes)
        src = open_vault(src.path, cache_bytes=b.cache_bytes)
        stats: dict = {}
        parts = episodes = steps = 0
        try:
            for batch in iter_parts(src, fm, b, stats):
                write_episodes(lake, task, r, parts, q, batch, config=json.dumps(
                    {"vault": {"path": src.path, "uid": uid}}))
                parts += 1
                episodes += len(batch.lengths)
                steps += batch.num_steps
                if progress:
                    progress(f"{uid}: part {parts - 1}: {steps} steps")
        except BaseException:
            # The run was absent (or removed by --replace): every row of it is ours.
            with contextlib.suppress(Exception):
                delete_run(lake, task, r)
            raise
        if not parts:
            raise VaultFormatError(f"{src.path}: no finished episode (no step has a terminal "
                                   "or truncation flag for every agent)")
        results.append(ImportResult(uid, r, q, parts, episodes, steps, stats["dropped_steps"],
                                    fm.ignored, fm.team_reward, stats["max_window_steps"],
                                    stats["max_part_steps"]))
        if on_done:
            on_done(results[-1])
    return results


# ---------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportResult:
    path: str  # the uid folder written
    episodes: int
    steps: int


def _steps_arrays(table: pa.Table, task: Task) -> dict[str, np.ndarray]:
    """A steps file's rows -> obs (S, N, F), action (S, N), legal (S, N, A), reward (S,),
    terminated / truncated (S,), episode (S,)."""
    spec, n, s = task.spec, task.num_agents, table.num_rows

    def values(col: str) -> np.ndarray:
        arr = table[col].combine_chunks()
        while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type) or (
                pa.types.is_large_list(arr.type)):
            arr = arr.flatten()
        return arr.to_numpy(zero_copy_only=False)

    return {
        "obs": values("obs").reshape(s, n, spec.obs_width),
        "action": values("action").reshape(s, n),
        "legal": values("legal").reshape(s, n, spec.num_actions),
        "reward": table["reward"].to_numpy(),
        "terminated": table["terminated"].to_numpy(zero_copy_only=False),
        "truncated": table["truncated"].to_numpy(zero_copy_only=False),
        "episode": table["episode"].to_numpy(),
    }


class VaultWriter:
    """Writes one Vault uid the way flashbax lays it out, batch row 0 appended window by
    window, into a hidden folder that `close` renames into place: a reader (flashbax,
    og-marl, `import_vault`) never sees half a Vault.

    leaves: dotted name ("infos.legals") -> (per-step shape without B and T, dtype name).
    """

    def __init__(self, dest: str | os.PathLike, uid: str,
                 leaves: dict[str, tuple[tuple[int, ...], str]], batch: int = 1) -> None:
        dest = os.fspath(dest)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", uid):
            raise LakeValueError(f"bad uid {uid!r}: letters, digits, '.', '_', '-'")
        self.final = os.path.join(dest, uid)
        if os.path.exists(self.final):
            raise LakeValueError(f"{self.final} exists: a Vault uid is written once (choose "
                                 "another --uid or remove it)")
        os.makedirs(dest, exist_ok=True)
        self.tmp = os.path.join(dest, f".{uid}.tmp-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.tmp)
        self.shapes = {k: ((batch, *shape), dtype) for k, (shape, dtype) in leaves.items()}
        self._next = [0] * batch  # steps written per batch row
        self._ctx = _context(32 << 20)
        try:
            self._leaves = {k: self._create(k, shape, dtype)
                            for k, (shape, dtype) in self.shapes.items()}
        except BaseException:
            self.abort()
            raise

    def _create(self, name: str, shape: tuple[int, ...], dtype: str) -> ts.TensorStore:
        spec = _spec(self.tmp, name + ".")
        spec["metadata"] = {"compressor": COMPRESSION}
        return _ts().open(spec, shape=(shape[0], TIME_AXIS_MAX_LENGTH, *shape[1:]),
                          dtype=dtype, create=True, context=self._ctx).result()

    def append(self, arrays: dict[str, np.ndarray], row: int = 0) -> None:
        """Write (w, ...) arrays, one per leaf, at the next w steps of batch row `row`."""
        w = {len(v) for v in arrays.values()}
        if len(w) != 1 or set(arrays) != set(self._leaves):
            raise LakeValueError(f"append needs every leaf ({sorted(self._leaves)}) with one "
                                 f"step count, got {({k: v.shape for k, v in arrays.items()})}")
        n, t = w.pop(), self._next[row]
        futures = [self._leaves[k][row, t:t + n].write(v) for k, v in arrays.items()]
        for fut in futures:
            fut.result()
        self._next[row] += n

    @property
    def steps(self) -> int:
        """The Vault's length (vault_index): the longest row; shorter rows end in zeros."""
        return max(self._next)

    def close(self, extra_metadata: dict | None = None) -> str:
        """Write vault_index and metadata.json, then move the Vault into place."""
        try:
            index = _ts().open(_spec(self.tmp, INDEX_STORE), shape=(1,), dtype="int32",
                               create=True, context=self._ctx).result()
            index.write(np.array([self.steps], np.int32)).result()
            metadata = {
                "version": VAULT_VERSION,
                # flashbax keeps the shape of the buffer it was given; (B, steps, ...) here
                "structure_shape": _tree({k: str((s[0], self.steps, *s[1:]))
                                          for k, (s, _) in self.shapes.items()}),
                "structure_dtype": _tree({k: d for k, (_, d) in self.shapes.items()}),
                **(extra_metadata or {}),
            }
            with open(os.path.join(self.tmp, METADATA_FILE), "w") as fh:
                json.dump(metadata, fh)
            del index
            self._leaves.clear()
            os.rename(self.tmp, self.final)
        except BaseException:
            self.abort()
            raise
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def export_vault(
    lake: Lake,
    dest: str | os.PathLike,
    task: str | Task,
    uid: str,
    quality: str | Sequence[str] | None = None,
    checkpoints: tuple[int, int] | None = None,
    runs: Sequence[str] | None = None,
) -> ExportResult:
    """Write the selected episodes of one task as the Vault `<dest>/<uid>` (dest is
    og-marl's `<rel_dir>/<vault_name>`), in lake order: run, checkpoint, episode.

    Leaves (B=1, og-marl's dtypes): observations (1, T, N, F) float32, actions (1, T, N)
    int32, rewards (1, T, N) float32 (the team reward, shared by every agent: og-marl's
    convention), terminals / truncations (1, T, N) float32, infos.legals (1, T, N, A)
    float32, infos.state (1, T, N*F) float32, the agents' observations concatenated (the
    lake stores no global state; og-marl's centralised critics need one). Written one
    steps file (one lake key) at a time into a hidden folder renamed into place at the end,
    so a reader never sees half a Vault.
    """
    task = get_task(task) if isinstance(task, str) else task
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise LakeValueError(f"{dest}: is a file; export-vault writes the Vault folder "
                             f"{dest}/{uid}, so DEST must be a folder (or not exist yet)")
    sel = Selection(env=task.env, tasks=[task.scenario], quality=quality,
                    checkpoints=checkpoints, runs=runs)
    index = read_table(lake, "episodes", sel, columns=["run", "checkpoint", "episode",
                                                        "steps_file"])
    if index.num_rows == 0:
        raise LakeValueError(f"no episodes of {task.name} match the selection")
    index = index.sort_by([("run", "ascending"), ("checkpoint", "ascending"),
                           ("episode", "ascending")])
    files = list(dict.fromkeys(index["steps_file"].to_pylist()))
    spec, n = task.spec, task.num_agents
    f, a = spec.obs_width, spec.num_actions
    writer = VaultWriter(dest, uid, {
        OBS: ((n, f), "float32"), ACTIONS: ((n,), "int32"), REWARDS: ((n,), "float32"),
        TERMINALS: ((n,), "float32"), TRUNCATIONS: ((n,), "float32"),
        LEGALS: ((n, a), "float32"), STATE: ((n * f,), "float32")})
    try:
        for rel in files:  # one key (run, checkpoint) each: selections are by partition
            x = _steps_arrays(read_files(lake, [rel], "steps", task.env, None), task)
            s = len(x["reward"])
            obs = x["obs"].astype(np.float32)

            def per_agent(v: np.ndarray, s: int = s) -> np.ndarray:  # (S,) -> (S, N)
                return np.broadcast_to(v.astype(np.float32)[:, None], (s, n))

            writer.append({
                OBS: obs, ACTIONS: x["action"].astype(np.int32),
                REWARDS: per_agent(x["reward"]), TERMINALS: per_agent(x["terminated"]),
                TRUNCATIONS: per_agent(x["truncated"]), LEGALS: x["legal"].astype(np.float32),
                STATE: obs.reshape(s, n * f),
            })
    except BaseException:
        writer.abort()
        raise
    path = writer.close({_META_KEY: {
        "task": task.name, "team_reward": "shared",
        "state": "the agents' observations, concatenated",
        "selection": {"quality": quality, "checkpoints": checkpoints,
                      "runs": list(runs) if runs else None},
        "episodes": index.num_rows}})
    return ExportResult(path, index.num_rows, writer.steps)


def _tree(flat: dict[str, str]) -> dict:
    """{"infos.legals": v} -> {"infos": {"legals": v}} (keys sorted like flashbax's)."""
    out: dict = {}
    for k in sorted(flat):
        node = out
        *parents, leaf = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = flat[k]
    return out


__all__ = ["Budget", "ExportResult", "FieldMap", "ImportResult", "VaultSource", "VaultWriter",
           "budget_for", "export_vault", "import_vault", "iter_parts", "open_vault", "plan_fields",
           "quality_of_uid", "run_of_uid", "vault_uids"]
