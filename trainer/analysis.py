"""Comparisons over every evaluation in the lake that never mix configurations. No JAX.

Each offline model is one `model` (its config id) in `evaluations`, with its whole
configuration in the `config` JSON column (see `knobs_of` for the layout it reads). Models
whose configurations differ only in the seed are repeats of one *configuration*: the report
groups by the full configuration minus the seed, and gives each configuration's mean over
seeds, its standard error and n. A comparison along one knob (task count, quality, an
ablation switch) only sets side by side configurations that differ in that knob alone.

Only each model's latest evaluation per task counts.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import duckdb
import numpy as np
import polars as pl

from trainer.knobs import fields_without
from trainer.offline.config import OfflineConfig, model_name

# A model's latest evaluation per task: rows of its current training run first (a model
# retrained under the same config id has a later `trained_since`), then the most trained
# checkpoint, the most episodes, the most recent.
LATEST_EVALUATIONS = """
WITH ranked AS (
  SELECT *, row_number() OVER (
      PARTITION BY model, task
      ORDER BY json_extract_string(config, '$.trained_since') DESC NULLS LAST,
               "update" DESC, episodes DESC, evaluated_at DESC) AS r
  FROM evaluations
)
SELECT env, task, model, algorithm, split, "update", episodes, mean_return, std_return,
       normalised_return, reference_return, config
FROM ranked WHERE r = 1
"""
# The random policy's return of the `references` row each evaluation was normalised with
# (the row whose online Sable return is the evaluation's `reference_return`): the
# normalisation's scale where that return is not positive (`lake_schema.checks.Reference`).
RANDOM_OF_REFERENCE = """
SELECT env, task, sable_return AS reference_return, any_value(random_return) AS random_return
FROM "references" GROUP BY ALL
"""

# Settings of how a model was trained that are not what it is (the knobs declared
# `model=False`: logging, checkpointing, workers), the seed (repeats of a configuration) and
# the lake versions it read (repeats may read newer data).
NOT_KNOBS = fields_without(OfflineConfig, "model") | {"seed", "data_versions"}
# The data selection's fields that choose the training tasks: replaced by `train_tasks`.
TASK_FIELDS = frozenset({"tasks", "split", "first_k", "env"})
# The columns every table leads with, in this order (train before test everywhere).
SPLITS = ("train", "test")


def knobs_of(config_json: str, episodes: int) -> dict[str, str]:
    """Every knob of one evaluated model, as strings, from the `evaluations.config` JSON.

    Layout read (written by `trainer.offline` evaluation):
    `{"config_id", "config": {OfflineConfig fields}, "selection": {DataSelection fields},
    "train_tasks": [task, ...], "evaluation": {"checkpoint", "greedy", "reference_run", ...}}`.
    A knob's name is the field's name; the selection's task fields become `train_tasks`
    (`+`-joined scenario names) and `num_train_tasks`; `episodes` is the evaluation's count.
    """
    doc = json.loads(config_json)
    knobs: dict[str, Any] = {}
    for name, value in (doc.get("config") or {}).items():
        if name not in NOT_KNOBS and name != "env":
            knobs[name] = value
    for name, value in (doc.get("selection") or {}).items():
        if name not in NOT_KNOBS and name not in TASK_FIELDS:
            knobs[name] = value
    knobs.setdefault("quality", "all")
    tasks = doc.get("train_tasks") or []
    knobs["train_tasks"] = "+".join(t.split("/", 1)[-1] for t in tasks)
    knobs["num_train_tasks"] = len(tasks)
    evaluation = doc.get("evaluation") or {}
    for name in ("checkpoint", "greedy", "reference_run"):
        if name in evaluation:
            knobs[f"eval_{name}"] = evaluation[name]
    knobs["eval_episodes"] = episodes
    seed = (doc.get("config") or {}).get("seed")
    return {"seed": str(seed), **{k: _text(v) for k, v in knobs.items()}}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def latest_evaluations(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Each model's latest evaluation per task, with its seed, a `configuration` id and
    `normalised_se`: the per-episode standard error of its normalised return (the episodes'
    standard deviation over sqrt(episodes), in normalised units; null without a scale)."""
    latest = pl.from_arrow(con.sql(LATEST_EVALUATIONS).to_arrow_table())
    if latest.is_empty():
        return latest
    latest = latest.with_columns(normalised_se=_per_episode_se(con, latest))
    knobs = [knobs_of(c, e) for c, e in zip(latest["config"], latest["episodes"], strict=True)]
    names = sorted({k for row in knobs for k in row} - {"seed"}, key=_knob_order)
    columns = {name: [row.get(name, "null") for row in knobs] for name in ["seed", *names]}
    columns["configuration"] = [
        json.dumps({n: row.get(n, "null") for n in names}, sort_keys=True) for row in knobs]
    # `algorithm` comes back as a knob, from the config
    return latest.drop("config", "algorithm").hstack(pl.DataFrame(columns))


def _per_episode_se(con: duckdb.DuckDBPyConnection, latest: pl.DataFrame) -> pl.Series:
    """std_return / sqrt(episodes) / scale, where scale is the normalisation's: online Sable's
    return when positive (the paper's R / R_Sable), else online Sable's minus random's."""
    try:
        randoms = pl.from_arrow(con.sql(RANDOM_OF_REFERENCE).to_arrow_table())
    except duckdb.Error:  # a lake without references: no scale known
        randoms = pl.DataFrame(schema={"env": pl.String, "task": pl.String,
                                       "reference_return": pl.Float64,
                                       "random_return": pl.Float64})
    joined = latest.select("env", "task", "reference_return", "std_return", "episodes").join(
        randoms, on=["env", "task", "reference_return"], how="left", maintain_order="left")
    ref = pl.col("reference_return")
    scale = pl.when(ref > 0).then(ref).otherwise(ref - pl.col("random_return"))
    se = pl.col("std_return") / pl.col("episodes").cast(pl.Float64).sqrt() / scale.abs()
    return joined.select(se.alias("normalised_se")).to_series()


def _knob_order(name: str) -> tuple[int, str]:
    """Knobs the comparisons vary first (in `COMPARISONS` order), then the rest by name."""
    order = ["algorithm", "num_train_tasks", *(knob for _, knob in COMPARISONS)]
    return (order.index(name), "") if name in order else (len(order), name)


def knob_columns(latest: pl.DataFrame) -> list[str]:
    """The knob columns of `latest_evaluations` (everything but the fixed columns)."""
    fixed = {"env", "task", "model", "split", "update", "episodes", "mean_return",
             "std_return", "normalised_return", "reference_return", "seed", "configuration",
             "normalised_se"}
    return [c for c in latest.columns if c not in fixed]


def differing(table: pl.DataFrame, knobs: list[str]) -> list[str]:
    """The knobs that take more than one value in `table`."""
    return [k for k in knobs if table[k].n_unique() > 1]


def _mean_se_n(split: str) -> list[pl.Expr]:
    """Aggregations over the seeds of a configuration (rows of `per_seed`): the mean of the
    split's normalised return, its standard error and n. The error is over seeds when there
    are several; with one seed it is that model's per-episode standard error (how far the
    evaluation's own noise moves the number), so a one-seed number still shows its noise."""
    values, n = pl.col(split), pl.col(split).count()
    over_seeds = values.std(ddof=1) / n.sqrt()
    return [values.mean().alias(f"{split}_mean"),
            pl.when(n > 1).then(over_seeds).otherwise(pl.col(f"{split}_episode_se").first())
            .alias(f"{split}_se"),
            n.alias(f"{split}_n")]


def per_seed(latest: pl.DataFrame) -> pl.DataFrame:
    """Each model's mean normalised return over the tasks of each split (one row a model),
    and `<split>_episode_se`: its per-episode standard error (the tasks' errors combined:
    sqrt(sum se_t^2) / T; null when a task has none)."""
    index = ["env", "configuration", "model", "seed", *knob_columns(latest)]
    by_split = latest.group_by([*index, "split"]).agg(
        pl.col("normalised_return").mean(),
        ((pl.col("normalised_se") ** 2).sum().sqrt() / pl.len()).alias("episode_se"),
        pl.col("normalised_se").null_count().alias("missing_se"))
    by_split = by_split.with_columns(
        pl.when(pl.col("missing_se") == 0).then(pl.col("episode_se")).alias("episode_se"))
    wide = by_split.pivot(on="split", index=index, values="normalised_return")
    se = by_split.pivot(on="split", index=index, values="episode_se")
    se = se.rename({split: f"{split}_episode_se" for split in SPLITS if split in se.columns})
    wide = wide.join(se, on=index, how="left", nulls_equal=True)
    for split in SPLITS:
        for column in (split, f"{split}_episode_se"):
            if column not in wide.columns:
                wide = wide.with_columns(pl.lit(None, pl.Float64).alias(column))
    return wide


def configurations(latest: pl.DataFrame, with_id: bool = False) -> pl.DataFrame:
    """One row per configuration: a readable label, every knob that differs between the
    configurations of its env, and train / test normalised return as mean, standard error
    and n over seeds (each seed: its model's mean over the split's tasks; the error of one
    seed is over its episodes, `_mean_se_n`). `with_id` keeps
    the `configuration` id column (JSON of every knob; too wide to show)."""
    if latest.is_empty():
        return pl.DataFrame()
    knobs = knob_columns(latest)
    seeds = per_seed(latest)
    out = []
    for (env,), part in seeds.group_by(["env"], maintain_order=True):
        shown = ["algorithm", *[k for k in differing(part, knobs) if k != "algorithm"]]
        stats = part.group_by(["configuration", *shown]).agg(
            *_mean_se_n("train"), *_mean_se_n("test"))
        labels = unique_labels([label(row, shown) for row in stats.select(shown).to_dicts()],
                               stats["configuration"].to_list())
        out.append(stats.with_columns(pl.lit(env).alias("env"), pl.Series("label", labels))
                   .select(["env", "label", *shown, *_stat_columns(),
                            *(["configuration"] if with_id else [])]).sort(["label"]))
    return pl.concat(out, how="diagonal_relaxed")


def _stat_columns() -> list[str]:
    return [f"{s}_{x}" for s in SPLITS for x in ("mean", "se", "n")]


def label(row: dict[str, str], shown: list[str]) -> str:
    """A short name from the knobs in `shown`: the algorithm by itself, the training tasks by
    name when there is one (else by count), every other knob as `knob=value`."""
    parts = []
    for k in shown:
        if k == "num_train_tasks":
            continue
        if k == "algorithm":
            parts.append(row[k])
        elif k == "train_tasks":
            tasks = row[k].split("+")
            parts.append(f"tasks={tasks[0] if len(tasks) == 1 else len(tasks)}")
        else:
            parts.append(f"{k}={row[k]}")
    return " ".join(parts) or "all"


def unique_labels(labels: list[str], ids: list[str]) -> list[str]:
    """Labels made unique by a short hash of the configuration where two would collide."""
    seen: dict[str, int] = {}
    for name in labels:
        seen[name] = seen.get(name, 0) + 1
    return [f"{name} #{hashlib.sha256(i.encode()).hexdigest()[:6]}" if seen[name] > 1 else name
            for name, i in zip(labels, ids, strict=True)]


def compare(latest: pl.DataFrame, knob: str) -> pl.DataFrame:
    """Configurations that differ in `knob` alone, side by side: one row per (group, value),
    where a group is a set of configurations equal in every other knob; groups with a single
    value of `knob` are left out. `train_tasks` and `num_train_tasks` count as one knob."""
    if latest.is_empty():
        return pl.DataFrame()
    knobs = knob_columns(latest)
    together = {"train_tasks", "num_train_tasks"} if knob in ("train_tasks",
                                                              "num_train_tasks") else {knob}
    others = [k for k in knobs if k not in together]
    seeds = per_seed(latest)
    shown_value = "num_train_tasks" if knob == "train_tasks" else knob
    rows = []
    for (env,), part in seeds.group_by(["env"], maintain_order=True):
        context = differing(part, others)
        groups = [g for _, g in part.group_by(others, maintain_order=True)
                  if g[knob].n_unique() > 1]
        names = unique_labels([label(g.row(0, named=True), context) for g in groups],
                              [g["configuration"][0] for g in groups])
        for name, group in zip(names, groups, strict=True):
            stats = group.group_by(sorted(together)).agg(
                *_mean_se_n("train"), *_mean_se_n("test"))
            rows.append(stats.with_columns(pl.lit(env).alias("env"),
                                           pl.lit(name).alias("compared")))
    if not rows:
        return pl.DataFrame()
    table = pl.concat(rows, how="diagonal_relaxed")
    order = ["env", "compared", shown_value]
    if knob == "train_tasks":
        order.append("train_tasks")
        table = table.with_columns(pl.col("num_train_tasks").cast(pl.Int64))
    table = table.select([*order, *_stat_columns()])
    if knob != "train_tasks" and ordered_knob(table[knob].to_list()):
        # numbers kept as text (knobs are strings): sort by value, not "1024" < "128"
        return table.sort(["env", "compared", pl.col(knob).cast(pl.Float64)])
    return table.sort(order)


def ordered_knob(values: list) -> bool:
    """Whether a knob's values are numbers (task count, size, length: an ordered axis)."""
    try:
        [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return True


def model_table(latest: pl.DataFrame, split: str) -> pl.DataFrame:
    """Every model's latest evaluation on the tasks of `split` (train or test), one row per
    model, narrow enough to read at 1600 px: `name` (`model_name`), `model` (its id), `mean`
    (normalised return over the tasks), the normalised return on each task (a column per
    task), then `config` (its configuration's label), `update`, `episodes`. Newest models
    first."""
    rows = latest.filter(pl.col("split") == split) if not latest.is_empty() else latest
    if rows.is_empty():
        return pl.DataFrame()
    labels = dict(configurations(latest, with_id=True).select("configuration", "label")
                  .iter_rows())
    head = ["model", "algorithm", "seed", "num_train_tasks", "configuration"]
    per_task = rows.pivot(on="task", index=head, values="normalised_return",
                          aggregate_function="first")
    tasks = sorted(c for c in per_task.columns if c not in head)
    summary = rows.group_by("model").agg(
        pl.col("normalised_return").mean().alias("mean"), pl.col("update").max(),
        pl.col("episodes").max())
    return (per_task.join(summary, on="model")
            .with_columns(pl.col("configuration").replace_strict(labels, default=None)
                          .alias("config"),
                          pl.struct("algorithm", "num_train_tasks", "seed").map_elements(
                              lambda m: model_name(m["algorithm"], m["num_train_tasks"],
                                                   m["seed"]), pl.String).alias("name"))
            .select(["name", "model", "mean", *tasks, "config", "update", "episodes"])
            .sort(["update", "model"], descending=[True, False]))


def task_scaling_gain(latest: pl.DataFrame, resamples: int = 4000, seed: int = 0
                      ) -> pl.DataFrame:
    """The paper's headline (Figures 1 and 4): on held-out tasks, the maximum over the number
    of training tasks k of test(k) / test(1), per algorithm and averaged over the algorithms
    of each env; beside it test(M) / test(1) at the most training tasks M.

    test(k) is the mean over seeds of a model's mean normalised return on the held-out tasks,
    within one task-scaling group (configurations equal in every knob but their tasks).
    Uncertainty: a bootstrap over seeds (each k's seeds resampled with replacement, the
    statistics recomputed) when every k has several seeds; with one seed, each test(k) is
    drawn from a normal with its per-episode standard error instead. Columns `*_lo`/`*_hi`
    are the 2.5 and 97.5 percentiles, `*_se` the bootstrap standard deviation. The maximum
    over k is biased upwards by noise (it picks the luckiest k): `at_m` does not pick.
    Rows: one per (env, algorithm, `compared`: the other knobs that tell the groups apart),
    then one `mean` row per env averaging them (the paper's figure); a gain is null where
    test(1) is not positive."""
    scaling = per_seed(latest) if not latest.is_empty() else pl.DataFrame()
    if scaling.is_empty():
        return pl.DataFrame()
    rng = np.random.default_rng(seed)
    knobs = [k for k in knob_columns(latest) if k not in ("train_tasks", "num_train_tasks")]
    rows = []
    for (env,), part in scaling.group_by(["env"], maintain_order=True):
        context = differing(part, knobs)
        groups = []
        for _, group in part.group_by(knobs, maintain_order=True):
            counts = sorted({int(k) for k in group["num_train_tasks"].to_list()})
            if len(counts) < 2 or counts[0] != 1 or group["test"].null_count():
                continue
            by_k = [group.filter(pl.col("num_train_tasks") == str(k)) for k in counts]
            first = group.row(0, named=True)
            others = label(first, [k for k in context if k != "algorithm"])
            groups.append(((first["algorithm"], "" if others == "all" else others), counts,
                           by_k))
        if not groups:
            continue
        draws, one_seed = [], False
        for name, counts, by_k in groups:
            point = np.array([g["test"].mean() for g in by_k])
            n = [len(g) for g in by_k]
            one_seed |= min(n) == 1
            sample = np.empty((resamples, len(counts)))
            for j, g in enumerate(by_k):
                values = g["test"].to_numpy()
                if min(n) > 1:
                    pick = rng.integers(0, len(values), (resamples, len(values)))
                    sample[:, j] = values[pick].mean(axis=1)
                else:
                    se = g["test_episode_se"].to_numpy().astype(float)
                    se = np.sqrt(np.sum(np.nan_to_num(se) ** 2)) / len(se)
                    sample[:, j] = rng.normal(values.mean(), se, resamples)
            gain, at_m = _gains(point[None, :])
            gains, at_ms = _gains(sample)
            draws.append((gains, at_ms))
            rows.append(_gain_row(env, name, counts, point, gain[0], at_m[0], gains, at_ms,
                                  n, one_seed=min(n) == 1))
        if len(groups) > 1:
            mine = rows[-len(groups):]
            mean_gain = np.mean([np.nan if r["gain"] is None else r["gain"] for r in mine])
            mean_at_m = np.mean([np.nan if r["at_m"] is None else r["at_m"] for r in mine])
            rows.append(_gain_row(
                env, ("mean", ""), None, None, mean_gain, mean_at_m,
                np.mean([d[0] for d in draws], axis=0), np.mean([d[1] for d in draws], axis=0),
                [min(r["seeds"] for r in mine)], one_seed=one_seed))
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def _gains(test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max_k test[:, k] / test[:, 0] and test[:, -1] / test[:, 0] per row of [draws, K]
    (NaN where test(1) is not positive: a ratio to a non-positive return means nothing)."""
    base = test[:, :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(base > 0, test / base, np.nan)
    return ratio.max(axis=1), ratio[:, -1]


def _gain_row(env: str, name: tuple[str, str], counts: list[int] | None, point: np.ndarray | None,
              gain: float, at_m: float, gains: np.ndarray, at_ms: np.ndarray, seeds: list[int],
              one_seed: bool) -> dict[str, Any]:
    def q(x: np.ndarray, p: float) -> float | None:
        x = x[np.isfinite(x)]
        return float(np.percentile(x, p)) if len(x) else None

    def sd(x: np.ndarray) -> float | None:
        x = x[np.isfinite(x)]
        return float(x.std(ddof=1)) if len(x) > 1 else None

    best = None if point is None or not np.isfinite(gain) else counts[int(np.nanargmax(
        point / point[0]))]
    return {"env": env, "algorithm": name[0], "compared": name[1],
            "gain": float(gain) if np.isfinite(gain) else None, "gain_se": sd(gains),
            "gain_lo": q(gains, 2.5), "gain_hi": q(gains, 97.5), "best_k": best,
            "at_m": float(at_m) if np.isfinite(at_m) else None, "at_m_se": sd(at_ms),
            "at_m_lo": q(at_ms, 2.5), "at_m_hi": q(at_ms, 97.5),
            "m": None if counts is None else counts[-1],
            "test_by_k": None if point is None else " / ".join(
                f"{k}: {v:.3f}" for k, v in zip(counts, point, strict=True)),
            "seeds": min(seeds),
            "uncertainty": "per-episode s.e. (1 seed)" if one_seed else "bootstrap over seeds"}


# The comparisons the report draws (the paper's experiments): a title and the one knob that
# differs between the configurations set side by side.
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("Task scaling", "train_tasks"),
    ("Algorithms", "algorithm"),
    ("Quality subsets", "quality"),
    ("HL-Gauss vs MSE value loss", "value_loss"),
    ("Task-balanced batches", "batch_mode"),
    ("Agent masking and shuffling", "agent_masking"),
    ("Task weighting of the loss", "task_weighting"),
    ("Model size", "embed_dim"),
    ("Dataset size (episodes per task)", "episodes_per_task"),
    ("Dataset size (fraction)", "fraction"),
    ("Training length", "num_updates"),
)


def comparisons(latest: pl.DataFrame) -> dict[str, tuple[str, pl.DataFrame]]:
    """Every comparison of `COMPARISONS` the lake's evaluations allow: title -> (knob, table)."""
    if latest.is_empty():
        return {}
    known = set(knob_columns(latest))
    out = {}
    for title, knob in COMPARISONS:
        if knob in known:
            table = compare(latest, knob)
            if not table.is_empty():
                out[title] = (knob, table)
    return out


# Leading columns of a table shown at 1600 px, in this order (what a reader looks for first).
LEADING = ("label", "compared", "model", *SPLITS, "mean")


def narrow(table: pl.DataFrame, floats: int = 3) -> pl.DataFrame:
    """`table` for a narrow screen: each split's `_mean`, `_se`, `_n` become one text column
    (`_mean_se_text`), the name and the numbers lead and the knobs
    follow (the env last). The full-width tables stay in report.md."""
    if table.is_empty():
        return table
    out = table
    for split in SPLITS:
        mean, se, n = f"{split}_mean", f"{split}_se", f"{split}_n"
        if mean in out.columns:
            text = [_mean_se_text(m, e, k, floats) for m, e, k in out.select(mean, se, n).rows()]
            out = out.with_columns(pl.Series(split, text, pl.String)).drop(mean, se, n)
    lead = [c for c in LEADING if c in out.columns]
    rest = [c for c in out.columns if c not in lead and c != "env"]
    return out.select([*lead, *rest, *(["env"] if "env" in out.columns else [])])


def page_configurations(configs: pl.DataFrame) -> pl.DataFrame:
    """`configurations` on an asset page (about 535 px at 1600): the label, which names every
    knob that differs, train and test as `narrow` writes them, and the env where there are
    several; the knob columns stay in report.md."""
    out = narrow(configs)
    keep = ["label", *SPLITS, *(["env"] if configs["env"].n_unique() > 1 else [])]
    return out.select([c for c in keep if c in out.columns])


def gain_cells(gain: pl.DataFrame) -> pl.DataFrame:
    """`task_scaling_gain` for a narrow page (about 75 characters a row): per env and
    algorithm, the gain with its interval and best k, test(M) / test(1) with its interval,
    the seeds and what the interval is over. The full table stays in report.md."""
    def ratio(value, lo, hi) -> str:
        if value is None:
            return "undefined"
        return f"{value:.2f}x" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else "")

    rows = []
    for r in gain.iter_rows(named=True):
        name = " ".join(x for x in (r["algorithm"], r.get("compared")) if x)
        best = f" k={r['best_k']}" if r.get("best_k") is not None else ""
        rows.append({"env": r["env"], "algorithm": name,
                     "max_k test(k)/test(1)": ratio(r["gain"], r["gain_lo"], r["gain_hi"]) + best,
                     f"test({r.get('m') or 'M'})/test(1)": ratio(r["at_m"], r["at_m_lo"],
                                                                r["at_m_hi"]),
                     "seeds": r["seeds"],
                     "95% over": "seeds" if r["uncertainty"].startswith("bootstrap")
                     else "episodes"})
    out = pl.DataFrame(rows, infer_schema_length=None)
    return out.drop("env") if out["env"].n_unique() == 1 else out


def _mean_se_text(mean: float | None, se: float | None, n: int, floats: int) -> str | None:
    """`0.700 ± 0.058 (3 seeds)`; one seed: `0.566 ± 0.020 (1 seed, ± over episodes)`."""
    if mean is None:
        return None
    text = f"{mean:.{floats}f}"
    if se is not None and not math.isnan(se):
        text += f" ± {se:.{floats}f}"
        return f"{text} ({n} seeds)" if n > 1 else f"{text} (1 seed, ± over episodes)"
    return f"{text} ({n} seed{'s' if n > 1 else ''})"


def markdown_table(df: pl.DataFrame, floats: int = 3) -> str:
    """A GitHub-flavoured markdown table (what the Dagster UI renders in metadata)."""
    if df.is_empty():
        return "_no evaluations yet_"
    rows = [[_cell(v, floats) for v in row] for row in df.iter_rows()]
    head = "| " + " | ".join(df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    return "\n".join([head, rule, *("| " + " | ".join(r) + " |" for r in rows)])


def _cell(v: object, floats: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{floats}f}"
    return str(v)
