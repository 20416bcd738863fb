"""Dataset cards: what a task dataset (task, run) holds, computed when its rows are written.

Why: a researcher reads a card before training (Minari's and LeRobot's dataset cards: episode
counts, per-feature statistics, reference scores), and the training loader standardises
observations by statistics that should not need a pass over every step again. So each
checkpoint's write also commits one row of the `cards` table (same key as its `steps` and
`episodes`, replaced with them; `lake_schema.writer`) summarising exactly those rows:
episodes and steps, return moments and quantiles, per-feature observation moments (count,
mean, M2: mergeable), min, max and a uniform sample of agent-steps (for quantiles), action
counts per agent slot, what produced the rows (config, code version), and the share of its
steps whose discounted return-to-go lies outside the env's HL-Gauss value support
(`lake_schema.returns`: what the offline critics would see clipped; null on a card written
before that column, until `card --backfill` or `migrate` fills it in).

The card of a (task, run) is the aggregation of its checkpoint rows (`dataset_cards`): exact
moments for any subset of checkpoints (Chan et al.'s combine), observation quantiles from
the count-weighted union of the checkpoints' samples, plus the task's `references` row (online
Sable's final return and the random policy's, like Minari's ref max/min). A card row names
the steps file it summarises, so a reader can tell a current card from a stale one (a write
killed between its commits): `verify` names stale and missing cards, and
`python -m lake_schema card --backfill` recomputes them from the rows (a lake written before
cards has none).

No JAX here (see `lake_schema.catalogue`).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from lake_schema.catalogue import Task
from lake_schema.errors import LakeValueError
from lake_schema.reader import Selection, read_table
from lake_schema.returns import (
    GAMMA,
    MAX_OUTSIDE,
    SupportFit,
    lengths_from_steps,
    returns_to_go_fit,
)
from lake_schema.schema import CARD_QUANTILES, CARD_SAMPLE
from lake_schema.stats import Moments, combine, moments
from lake_schema.storage import Lake

_CHUNK_AGENT_STEPS = 1 << 13  # agent-steps per chunk while summarising: float64 temporaries
# of a few MB, whatever the checkpoint's size


@functools.cache
def code_version() -> str:
    """The code that writes: `sable-lake 0.1.0 git 8b2305712ab3[-dirty]` (the git part when
    the package is a git checkout and git is installed)."""
    try:
        version = f"sable-lake {importlib.metadata.version('sable-lake')}"
    except importlib.metadata.PackageNotFoundError:
        version = "sable-lake (not installed)"
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} git {out.stdout.strip()}" if out.returncode == 0 else version


# ----------------------------------------------------------------------------- computing


def _numpy_steps(steps: pa.Table, num_agents: int) -> tuple[np.ndarray, np.ndarray]:
    """obs [S, N, F] (native dtype, no copy where Arrow allows) and action [S, N]."""
    s = steps.num_rows
    obs = steps["obs"].combine_chunks().flatten().flatten().to_numpy(zero_copy_only=False)
    action = steps["action"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return obs.reshape(s, num_agents, -1), action.reshape(s, num_agents)


def rtg_fit(task: Task, steps: pa.Table) -> SupportFit:
    """The discounted returns-to-go (gamma 0.99, no bootstrap) of a checkpoint's `steps`
    rows (their `step` and `reward` columns, episodes back to back as stored) against the
    env's value support."""
    step = steps["step"].to_numpy()
    reward = steps["reward"].to_numpy()
    return returns_to_go_fit(reward, lengths_from_steps(step), task.spec.value_support)


def card_record(task: Task, steps: pa.Table, episodes: pa.Table, steps_file: str,
                config: str | None = None, version: str | None = None) -> dict:
    """One checkpoint's card row (the `cards` table's file columns) from its rows.

    steps: the checkpoint's `steps` rows (obs [S][N][F], action [S][N]); episodes: its
    `episodes` rows (return, length, env_steps). Observation statistics are accumulated in
    chunks of agent-steps in float64, so memory stays bounded whatever the checkpoint's size.
    """
    n, width, num_actions = task.num_agents, task.spec.obs_width, task.spec.num_actions
    obs, action = _numpy_steps(steps, n)
    flat = obs.reshape(-1, width)  # [S*N, F]: agent-steps
    m = Moments.empty(width)
    lo = np.full(width, np.inf)
    hi = np.full(width, -np.inf)
    for start in range(0, flat.shape[0], _CHUNK_AGENT_STEPS):
        part = flat[start:start + _CHUNK_AGENT_STEPS]
        m = combine(m, moments(part))
        lo = np.minimum(lo, part.min(axis=0))
        hi = np.maximum(hi, part.max(axis=0))
    rng = np.random.default_rng(0)  # deterministic: the same rows give the same card
    take = np.sort(rng.choice(flat.shape[0], min(CARD_SAMPLE, flat.shape[0]), replace=False))
    slots = np.broadcast_to(np.arange(n), action.shape)
    counts = np.bincount((slots * num_actions + action.astype(np.int64)).ravel(),
                         minlength=n * num_actions).reshape(n, num_actions)
    returns = episodes["return"].to_numpy().astype(np.float64)
    r = moments(returns[:, None])
    env_steps = episodes["env_steps"].to_numpy()
    return {
        "steps_file": steps_file,
        "episodes": len(returns),
        "steps": steps.num_rows,
        "num_agents": n,
        "env_steps": int(env_steps.max()) if env_steps.size else 0,
        "return_mean": float(r.mean[0]),
        "return_m2": float(r.m2[0]),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "return_quantiles": np.quantile(returns, CARD_QUANTILES).tolist(),
        "obs_count": int(m.count),
        "obs_mean": m.mean.tolist(),
        "obs_m2": m.m2.tolist(),
        "obs_min": lo.tolist(),
        "obs_max": hi.tolist(),
        "obs_sample": flat[take].astype(np.float32).tolist(),
        "action_counts": counts.tolist(),
        "config": config,
        "code_version": version,
        "written_at": dt.datetime.now(dt.UTC),
        "rtg_outside_support": rtg_fit(task, steps).fraction,
    }


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ObsSummary:
    """Per-feature statistics of a set of agent-step observations ([F] each)."""

    moments: Moments
    min: np.ndarray
    max: np.ndarray
    quantiles: np.ndarray  # [len(CARD_QUANTILES), F]


def obs_summary(rows: Sequence[dict]) -> ObsSummary:
    """The observation statistics of the union of some checkpoints' card rows: exact moments,
    min and max; quantiles of the samples, each sampled agent-step weighted by how many
    agent-steps of its checkpoint it stands for."""
    if not rows:
        raise LakeValueError("no card rows to summarise")
    m = Moments.empty(len(rows[0]["obs_mean"]))
    for r in rows:
        m = combine(m, card_moments(r))
    sample = np.concatenate([np.asarray(r["obs_sample"], np.float64) for r in rows])
    weights = np.concatenate([np.full(len(r["obs_sample"]), r["obs_count"]
                                      / max(len(r["obs_sample"]), 1)) for r in rows])
    quantiles = np.quantile(sample, CARD_QUANTILES, axis=0, weights=weights,
                            method="inverted_cdf")
    return ObsSummary(m, np.min([r["obs_min"] for r in rows], axis=0),
                      np.max([r["obs_max"] for r in rows], axis=0), quantiles)


def card_moments(row: dict) -> Moments:
    """A card row's observation moments (what the loader merges instead of recomputing)."""
    return Moments(int(row["obs_count"]), np.asarray(row["obs_mean"], np.float64),
                   np.asarray(row["obs_m2"], np.float64))


def return_moments(rows: Sequence[dict]) -> Moments:
    """Episode-return moments of the union of some checkpoints (count = episodes)."""
    m = Moments.empty(1)
    for r in rows:
        m = combine(m, Moments(int(r["episodes"]), np.array([r["return_mean"]]),
                               np.array([r["return_m2"]])))
    return m


def rtg_share(rows: Sequence[dict]) -> float | None:
    """The returns-to-go share outside the value support of the union of some checkpoints'
    card rows (weighted by their steps), over the rows that have it; None if none has."""
    rows = [r for r in rows if r.get("rtg_outside_support") is not None]
    steps = sum(r["steps"] for r in rows)
    if not steps:
        return None
    return sum(r["rtg_outside_support"] * r["steps"] for r in rows) / steps


@dataclass(frozen=True)
class DatasetCard:
    """The card of one task dataset (task, run): its current checkpoint rows (sorted by
    checkpoint) and its references row (None when the run has not written one)."""

    task: Task
    run: str
    checkpoints: tuple[dict, ...]
    reference: dict | None
    stale: tuple[int, ...] = field(default=())  # checkpoints whose card is stale or missing

    @property
    def episodes(self) -> int:
        return sum(r["episodes"] for r in self.checkpoints)

    @property
    def steps(self) -> int:
        return sum(r["steps"] for r in self.checkpoints)

    def of_quality(self, quality: str) -> list[dict]:
        return [r for r in self.checkpoints if r["quality"] == quality]

    def obs(self, quality: str | None = None) -> ObsSummary:
        return obs_summary(self.checkpoints if quality is None else self.of_quality(quality))

    def action_frequencies(self) -> np.ndarray:
        """[N agent slots, A actions]: each slot's share of each action over the run."""
        counts = np.sum([r["action_counts"] for r in self.checkpoints], axis=0)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)

    @property
    def rtg_outside_support(self) -> float | None:
        """The share of the dataset's steps whose discounted return-to-go lies outside the
        env's value support: the checkpoints' shares weighted by their steps (exact: each is
        a count over steps). None when no checkpoint's card has it (cards written before the
        column); `rtg_unknown` names the checkpoints left out."""
        return rtg_share(self.checkpoints)

    @property
    def rtg_unknown(self) -> tuple[int, ...]:
        """Checkpoints whose card does not have the returns-to-go share (written before it)."""
        return tuple(r["checkpoint"] for r in self.checkpoints
                     if r.get("rtg_outside_support") is None)

    @property
    def producers(self) -> list[tuple[str | None, str | None]]:
        """The distinct (config, code version) pairs that wrote the checkpoints."""
        return list(dict.fromkeys((r["config"], r["code_version"]) for r in self.checkpoints))


def current_cards(lake: Lake, selection: Selection, columns: list[str] | None = None
                  ) -> dict[str, dict]:
    """The card rows of `selection` keyed by the steps file they summarise; a caller pairs
    them with its `episodes` rows by `steps_file`, so a stale card (of replaced steps) never
    matches. A lake without a `cards` table gives {}."""
    cols = None if columns is None else sorted({*columns, "steps_file"})
    rows = read_table(lake, "cards", selection, cols).to_pylist()
    return {r["steps_file"]: r for r in rows}


def dataset_cards(lake: Lake, task: Task, run: str | None = None) -> list[DatasetCard]:
    """The card of each run of `task` (or of `run`), from the `cards`, `episodes` and
    `references` tables. Raises LakeValueError, one line, when the lake has no data for it,
    or has data but no cards (a lake written before cards: says how to backfill)."""
    sel = Selection(env=task.env, tasks=[task.scenario], runs=None if run is None else [run])
    index = read_table(lake, "episodes", sel, ["run", "quality", "checkpoint", "steps_file"])
    if index.num_rows == 0:
        runs = sorted(set(read_table(lake, "episodes", Selection(
            env=task.env, tasks=[task.scenario]), ["run"])["run"].to_pylist()))
        which = f"run {run!r} of {task.name}" if run is not None else task.name
        raise LakeValueError(
            f"no data for {which} in {lake.root}"
            + (f" (its runs: {', '.join(runs)})" if runs and run is not None else ""))
    cards = current_cards(lake, sel)
    refs = {r["run"]: r for r in read_table(lake, "references", sel).to_pylist()}
    keys = sorted({(r["run"], r["checkpoint"], r["steps_file"]) for r in index.to_pylist()})
    out = []
    for name in sorted({k[0] for k in keys}):
        mine = [k for k in keys if k[0] == name]
        rows = [cards[f] for _, _, f in mine if f in cards]
        stale = tuple(ck for _, ck, f in mine if f not in cards)
        if not rows:
            raise LakeValueError(
                f"{task.name} run {name}: no dataset card (rows written before cards, or a "
                f"write killed before its card): run `python -m lake_schema card --backfill`")
        out.append(DatasetCard(task, name, tuple(sorted(rows, key=lambda r: r["checkpoint"])),
                               refs.get(name), stale))
    return out


# ----------------------------------------------------------------------------- printing


def _num(x: float) -> str:
    return f"{x:.4g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [list(map(str, header))] + [[str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def rtg_line(card: DatasetCard) -> str:
    """One line: the dataset's share of returns-to-go outside the value support, and the
    checkpoints it does not cover (cards written before it), with the fix."""
    lo, hi = card.task.spec.value_support
    share = card.rtg_outside_support
    line = (f"returns-to-go (gamma {GAMMA}) outside the value support [{lo:g}, {hi:g}]: "
            + ("not computed" if share is None else f"{share:.2%} of the steps")
            + (f" (over {MAX_OUTSIDE:.0%}: the critic's targets are clipped)"
               if share is not None and share > MAX_OUTSIDE else ""))
    if card.rtg_unknown:
        line += (f"; not computed for checkpoint(s) {', '.join(map(str, card.rtg_unknown))} "
                 "(cards written before it): `python -m lake_schema card --backfill`")
    return line


def format_card(card: DatasetCard, max_features: int | None = None) -> str:
    """The card as text: what `python -m lake_schema card TASK` prints."""
    t = card.task
    lines = [f"dataset card: {t.name}, run {card.run}",
             f"  agents {t.num_agents}, time limit {t.time_limit}, obs width "
             f"{t.spec.obs_width} ({t.spec.obs_dtype}), actions {t.spec.num_actions}",
             f"  {len(card.checkpoints)} checkpoints, {card.episodes} episodes, "
             f"{card.steps} steps"]
    if card.stale:
        lines.append(f"  WARNING: checkpoint(s) {', '.join(map(str, card.stale))} have no "
                     "current card: `python -m lake_schema card --backfill`")
    ref = card.reference
    if ref is None:
        lines.append("  references: none (the run has not finished)")
    else:
        lines.append(f"  references: online Sable {_num(ref['sable_return'])} "
                     f"(std {_num(ref['sable_return_std'])}, {ref['sable_episodes']} episodes), "
                     f"random {_num(ref['random_return'])} (std {_num(ref['random_return_std'])}, "
                     f"{ref['random_episodes']} episodes)")
    for config, version in card.producers:
        lines.append(f"  produced by: {version or 'unknown code'}; config {config or 'unknown'}")
    lines.append("  " + rtg_line(card))
    q_names = [f"p{round(q * 100)}" for q in CARD_QUANTILES]
    lines += ["", "returns per checkpoint:"]
    lines += ["  " + x for x in _table(
        ["checkpoint", "quality", "env_steps", "episodes", "steps", "mean", "std", "min",
         *q_names, "max", "rtg_out"],
        [[r["checkpoint"], r["quality"], r["env_steps"], r["episodes"], r["steps"],
          _num(r["return_mean"]), _num(np.sqrt(r["return_m2"] / r["episodes"])),
          _num(r["return_min"]), *map(_num, r["return_quantiles"]), _num(r["return_max"]),
          _share(r.get("rtg_outside_support"))]
         for r in card.checkpoints])]
    lines += ["", "returns per quality:"]
    per_quality = []
    for q in ("low", "high"):
        rows = card.of_quality(q)
        if rows:
            m = return_moments(rows)
            per_quality.append([q, len(rows), m.count, sum(r["steps"] for r in rows),
                                _num(m.mean[0]), _num(m.std[0]),
                                _num(min(r["return_min"] for r in rows)),
                                _num(max(r["return_max"] for r in rows)),
                                _share(rtg_share(rows))])
    lines += ["  " + x for x in _table(
        ["quality", "checkpoints", "episodes", "steps", "mean", "std", "min", "max",
         "rtg_out"], per_quality)]
    obs = card.obs()
    width = t.spec.obs_width if max_features is None else min(max_features, t.spec.obs_width)
    lines += ["", f"observations per feature ({obs.moments.count} agent-steps; quantiles from a "
                  f"sample of up to {CARD_SAMPLE} per checkpoint):"]
    lines += ["  " + x for x in _table(
        ["feature", "mean", "std", "min", *q_names, "max"],
        [[t.spec.obs_features[i], _num(obs.moments.mean[i]), _num(obs.moments.std[i]),
          _num(obs.min[i]), *(_num(v) for v in obs.quantiles[:, i]), _num(obs.max[i])]
         for i in range(width)])]
    if width < t.spec.obs_width:
        lines.append(f"  ... {t.spec.obs_width - width} more features")
    freq = card.action_frequencies()
    lines += ["", "action frequencies per agent slot:"]
    lines += ["  " + x for x in _table(
        ["slot", *t.spec.action_names],
        [[i, *(f"{v:.3f}" for v in row)] for i, row in enumerate(freq)])]
    return "\n".join(lines)


def card_json(card: DatasetCard) -> dict:
    """The card as plain JSON values (`card --format json`): per-checkpoint rows without the
    observation sample, the merged observation statistics, action frequencies, references,
    and the env's feature and action names (the order of the obs lists and action columns)."""
    obs = card.obs()
    skip = {"obs_sample", "obs_m2", "obs_mean", "obs_min", "obs_max", "written_at"}
    return {
        "task": card.task.name, "run": card.run, "episodes": card.episodes,
        "steps": card.steps, "stale_checkpoints": list(card.stale),
        "value_support": list(card.task.spec.value_support),
        "rtg_outside_support": card.rtg_outside_support,
        "rtg_not_computed": list(card.rtg_unknown),
        "reference": None if card.reference is None else {
            k: v for k, v in card.reference.items() if k != "recorded_at"},
        "checkpoints": [{k: v for k, v in r.items() if k not in skip}
                        for r in card.checkpoints],
        "quantile_levels": list(CARD_QUANTILES),
        "obs": {"count": obs.moments.count, "mean": obs.moments.mean.tolist(),
                "std": obs.moments.std.tolist(), "min": obs.min.tolist(),
                "max": obs.max.tolist(), "quantiles": obs.quantiles.tolist()},
        "obs_features": list(card.task.spec.obs_features),
        "action_frequencies": card.action_frequencies().tolist(),
        "action_names": list(card.task.spec.action_names),
    }
