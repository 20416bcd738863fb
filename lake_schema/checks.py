"""Data-quality rules on the lake, as plain functions of (lake, task, run): what the Dagster
asset checks report and what evaluation relies on.

Why here: the rules are about the lake's tables, not about Dagster; keeping them beside the
reader lets `pipelines/` only wire them (a check is one call) and lets evaluation and the
asset checks share one reading of the `references` table, so they cannot disagree.

No JAX here (see `lake_schema.catalogue`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lake_schema.cards import current_cards, rtg_fit
from lake_schema.catalogue import Task, scenario
from lake_schema.errors import MissingReferenceError
from lake_schema.reader import Selection, read_files, read_table
from lake_schema.returns import GAMMA, MAX_OUTSIDE
from lake_schema.storage import Lake
from lake_schema.verify import Problem, VerifyReport, verify


@dataclass(frozen=True)
class Outcome:
    """A rule's verdict and what it found (plain values, for a check's metadata)."""

    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)


def _selection(task: Task, run: str) -> Selection:
    return Selection(env=task.env, tasks=[task.scenario], runs=[run])


# ----------------------------------------------------------------------------- references


@dataclass(frozen=True)
class Reference:
    """A task's normalisation constants: its `references` row's online Sable and random returns.

    The paper divides a return by online Sable's (1 = online Sable, 0 = a return of 0). That
    reads as intended only when Sable's return is positive. Where it is not (connector at a
    CPU budget: its per-step penalties make every return negative), dividing inverts the
    scale, and the best checkpoint would be the worst one. There a return is placed on the
    line from the random policy (0) to online Sable (1) instead. Both maps are linear in the
    return and give 1 at online Sable's; `problem` says when neither is defined."""

    sable_return: float
    random_return: float

    @property
    def problem(self) -> str | None:
        """Why no normalisation is defined (None: one is)."""
        if not (math.isfinite(self.sable_return) and math.isfinite(self.random_return)):
            return "not finite"
        if self.sable_return <= 0 and self.sable_return <= self.random_return:
            return ("zero" if self.sable_return == 0 else "negative") + " and not above random"
        return None

    def normalise(self, mean_return: float) -> float:
        """`mean_return` / sable_return (the paper's) when sable_return > 0, else
        (mean_return - random_return) / (sable_return - random_return)."""
        if self.sable_return > 0:
            return mean_return / self.sable_return
        return (mean_return - self.random_return) / (self.sable_return - self.random_return)


def latest_references(lake: Lake, env: str, tasks: Sequence[str], run: str | None = None
                      ) -> tuple[dict[str, Reference], dict[str, str]]:
    """The most recent reference row of each task (of `run`, or of any run).

    tasks: `env/scenario` names. Returns (usable references by task, the problem of every
    task without a usable one: `missing` or a `Reference.problem`)."""
    sel = Selection(env=env, tasks=[scenario(t) for t in tasks],
                    runs=[run] if run is not None else None)
    table = read_table(lake, "references", sel,
                       ["task", "run", "sable_return", "random_return", "recorded_at"])
    rows = sorted(table.to_pylist(), key=lambda r: r["recorded_at"])
    latest = {f"{env}/{r['task']}": Reference(r["sable_return"], r["random_return"])
              for r in rows}
    good, problems = {}, {}
    for t in tasks:
        ref = latest.get(t)
        problem = "missing" if ref is None else ref.problem
        if problem is None:
            good[t] = ref
        else:
            problems[t] = problem
    return good, problems


def reference_returns(lake: Lake, env: str, tasks: Sequence[str],
                      run: str | None = None) -> dict[str, Reference]:
    """The normalisation constants of every task (`latest_references`); a task without
    usable ones is a MissingReferenceError naming it."""
    good, problems = latest_references(lake, env, tasks, run)
    missing = [t for t, p in problems.items() if p == "missing"]
    if missing:
        raise MissingReferenceError(
            f"no online Sable reference return for {', '.join(missing)} in {lake.root}"
            + (f" (run {run!r})" if run else "")
            + ": run online Sable on them first (normalised returns need it)")
    if problems:
        raise MissingReferenceError(
            "reference return is " + ", ".join(f"{p} for {t}" for t, p in problems.items())
            + ": normalised returns are undefined")
    return good


def references_cover(lake: Lake, env: str, tasks: Sequence[str]) -> Outcome:
    """Every task an evaluation needs has a usable reference (what `reference_returns`
    accepts)."""
    _, problems = latest_references(lake, env, tasks)
    return Outcome(not problems, {"tasks": len(tasks), "missing": str(sorted(problems)),
                                  "problems": str(problems)})


def reference_present(lake: Lake, task: Task, run: str) -> Outcome:
    """The task's `references` row of this run exists, once, with finite returns."""
    rows = read_table(lake, "references", _selection(task, run)).to_pylist()
    finite = all(
        math.isfinite(r["sable_return"]) and math.isfinite(r["random_return"]) for r in rows
    )
    meta: dict[str, Any] = {"rows": len(rows)}
    if rows:
        meta |= {"sable_return": rows[0]["sable_return"], "random_return": rows[0]["random_return"]}
    return Outcome(len(rows) == 1 and finite, meta)


# ----------------------------------------------------------------------------- recorded runs


def missing_checkpoints(lake: Lake, task: Task, run: str, num_checkpoints: int
                        ) -> tuple[list[int], list[int]]:
    """(checkpoints of 0..K-1 without episodes or whose step rows do not match the episodes'
    lengths, checkpoint indices outside 0..K-1)."""
    k = num_checkpoints
    eps = read_table(lake, "episodes", _selection(task, run), ["checkpoint", "length"])
    # ("reward" too: lake_schema.reader returns zero rows when only partition columns are
    # asked for.)
    steps = read_table(lake, "steps", _selection(task, run), ["checkpoint", "reward"])
    ck_eps = eps["checkpoint"].to_numpy()
    episodes = np.bincount(ck_eps, minlength=k)
    lengths = np.bincount(ck_eps, weights=eps["length"].to_numpy(), minlength=k)
    rows = np.bincount(steps["checkpoint"].to_numpy(), minlength=k)
    missing = [i for i in range(k) if episodes[i] == 0 or rows[i] != lengths[i]]
    return missing, sorted(set(ck_eps.tolist()) - set(range(k)))


def checkpoint_rows(lake: Lake, task: Task, run: str, num_checkpoints: int) -> Outcome:
    """Every recording checkpoint 0..K-1 has episodes, and its steps match their lengths."""
    missing, extra = missing_checkpoints(lake, task, run, num_checkpoints)
    return Outcome(not missing and not extra,
                   {"run": run, "checkpoints": num_checkpoints,
                    "missing_or_mismatched": str(missing), "unexpected": str(extra)})


def no_nan(lake: Lake, task: Task, run: str) -> Outcome:
    """No NaN or inf in episode returns, step rewards or (float) observations."""
    columns = ["reward", "obs"] if task.spec.obs_dtype.startswith("float") else ["reward"]
    steps = read_table(lake, "steps", _selection(task, run), columns)
    eps = read_table(lake, "episodes", _selection(task, run), ["return"])
    bad = {
        "return": int((~np.isfinite(eps["return"].to_numpy())).sum()),
        "reward": int((~np.isfinite(steps["reward"].to_numpy())).sum()),
    }
    if "obs" in columns:
        values = steps["obs"].combine_chunks().flatten().flatten().to_numpy()
        bad["obs"] = int((~np.isfinite(values)).sum())
    return Outcome(eps.num_rows > 0 and not any(bad.values()),
                   {"non_finite": str(bad), "episodes": eps.num_rows})


def returns_within_bounds(lake: Lake, task: Task, run: str) -> Outcome:
    """Every recorded episode return lies within the task's return bounds."""
    lo, hi = task.return_bounds()
    r = read_table(lake, "episodes", _selection(task, run), ["return"])["return"].to_numpy()
    outside = int(((r < lo - 1e-6) | (r > hi + 1e-6)).sum())
    return Outcome(outside == 0 and r.size > 0,
                   {"bounds": f"[{lo}, {hi}]", "outside": outside,
                    "min": float(r.min()) if r.size else math.nan,
                    "max": float(r.max()) if r.size else math.nan})


def returns_to_go_in_support(lake: Lake, task: Task, run: str,
                             max_outside: float = MAX_OUTSIDE) -> Outcome:
    """At most `max_outside` (1%) of the run's discounted returns-to-go (gamma 0.99, to each
    episode's end, no bootstrap) lie outside the env's HL-Gauss value support.

    Why: the offline critics classify values over that support and clip what lies outside,
    so a dataset whose targets fall outside trains a critic that cannot represent them
    (connector's summed reward over a g * g limit put most of them outside [-1, 1]). Each
    checkpoint's share comes from its current dataset card; a checkpoint whose card lacks it
    (written before the column) or has none is computed from its steps' rewards."""
    lo, hi = task.spec.value_support
    sel = _selection(task, run)
    files = sorted(set(read_table(lake, "episodes", sel, ["steps_file"])["steps_file"]
                       .to_pylist()))
    cards = current_cards(lake, sel, ["steps", "rtg_outside_support"])
    outside, total, computed = 0.0, 0, 0
    for rel in files:
        card = cards.get(rel)
        if card is not None and card["rtg_outside_support"] is not None:
            outside += card["rtg_outside_support"] * card["steps"]
            total += card["steps"]
        else:
            fit = rtg_fit(task, read_files(lake, [rel], "steps", task.env, ["step", "reward"]))
            outside, total, computed = outside + fit.outside, total + fit.total, computed + 1
    fraction = outside / total if total else math.nan
    passed = total > 0 and fraction <= max_outside
    if not total:
        summary = f"{task.name} run {run}: no steps recorded"
    else:
        summary = (f"{task.name} run {run}: {fraction:.2%} of {total} discounted returns-to-go "
                   f"(gamma {GAMMA}) lie outside the value support [{lo:g}, {hi:g}] "
                   f"({'at most' if passed else 'more than'} {max_outside:.0%})")
    return Outcome(passed, {"summary": summary, "task": task.name, "run": run,
                            "outside_fraction": fraction, "max_outside": max_outside,
                            "value_support": f"[{lo:g}, {hi:g}]", "steps": total,
                            "checkpoints": len(files), "computed_from_steps": computed})


# ----------------------------------------------------------------------------- files


def task_problems(report: VerifyReport, task: Task, leftovers: bool = False) -> list[Problem]:
    """The verify report's problems in the task's files (`steps/<env>/task=...`, the other
    tables' `env=<env>/task=...`); files outside the Delta log (`Problem.leftover`: no
    reader sees them) only with `leftovers`."""
    markers = (f"/env={task.env}/task={task.scenario}/", f"steps/{task.env}/task={task.scenario}/")
    return [p for p in report.problems if any(m in p.path for m in markers)
            and (leftovers or not p.leftover)]


def files_valid(lake: Lake, task: Task) -> Outcome:
    """`python -m lake_schema verify` on the task's files (schema version, columns, footers,
    partition values, index vs steps): the CLI's own code, so they agree. Files outside the
    Delta log (a killed write's) are listed but do not fail it: no reader sees them."""
    report = verify(lake)
    found = task_problems(report, task, leftovers=True)
    bad = [p for p in found if not p.leftover]
    leftovers = [p.path for p in found if p.leftover]
    return Outcome(not bad, {"files_checked": report.files,
                             "problems": "\n".join(f"- {p}" for p in bad) or "none",
                             "leftover_files": "\n".join(f"- {p}" for p in leftovers)
                             or "none (`python -m lake_schema vacuum` removes any)"})
