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
import polars as pl

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

# Settings of how a model was trained that are not what it is: logging, checkpointing,
# workers, and the lake versions it read (repeats of a configuration may read newer data).
NOT_KNOBS = frozenset({"seed", "log_every", "checkpoint_every", "keep_checkpoints",
                       "num_workers", "data_versions"})
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
    """Each model's latest evaluation per task, with its seed and a `configuration` id."""
    latest = pl.from_arrow(con.sql(LATEST_EVALUATIONS).to_arrow_table())
    if latest.is_empty():
        return latest
    knobs = [knobs_of(c, e) for c, e in zip(latest["config"], latest["episodes"], strict=True)]
    names = sorted({k for row in knobs for k in row} - {"seed"}, key=_knob_order)
    columns = {name: [row.get(name, "null") for row in knobs] for name in ["seed", *names]}
    columns["configuration"] = [
        json.dumps({n: row.get(n, "null") for n in names}, sort_keys=True) for row in knobs]
    # `algorithm` comes back as a knob, from the config
    return latest.drop("config", "algorithm").hstack(pl.DataFrame(columns))


def _knob_order(name: str) -> tuple[int, str]:
    """Knobs the comparisons vary first (in `COMPARISONS` order), then the rest by name."""
    order = ["algorithm", "num_train_tasks", *(knob for _, knob in COMPARISONS)]
    return (order.index(name), "") if name in order else (len(order), name)


def knob_columns(latest: pl.DataFrame) -> list[str]:
    """The knob columns of `latest_evaluations` (everything but the fixed columns)."""
    fixed = {"env", "task", "model", "split", "update", "episodes", "mean_return",
             "std_return", "normalised_return", "reference_return", "seed", "configuration"}
    return [c for c in latest.columns if c not in fixed]


def differing(table: pl.DataFrame, knobs: list[str]) -> list[str]:
    """The knobs that take more than one value in `table`."""
    return [k for k in knobs if table[k].n_unique() > 1]


def _mean_se_n(values: pl.Expr, name: str) -> list[pl.Expr]:
    return [values.mean().alias(f"{name}_mean"),
            (values.std(ddof=1) / values.count().sqrt()).alias(f"{name}_se"),
            values.count().alias(f"{name}_n")]


def per_seed(latest: pl.DataFrame) -> pl.DataFrame:
    """Each model's mean normalised return over the tasks of each split (one row a model)."""
    index = ["env", "configuration", "model", "seed", *knob_columns(latest)]
    by_split = latest.group_by([*index, "split"]).agg(pl.col("normalised_return").mean())
    wide = by_split.pivot(on="split", index=index, values="normalised_return")
    for split in SPLITS:
        if split not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(split))
    return wide


def configurations(latest: pl.DataFrame, with_id: bool = False) -> pl.DataFrame:
    """One row per configuration: a readable label, every knob that differs between the
    configurations of its env, and train / test normalised return as mean, standard error
    and n over seeds (each seed: its model's mean over the split's tasks). `with_id` keeps
    the `configuration` id column (JSON of every knob; too wide to show)."""
    if latest.is_empty():
        return pl.DataFrame()
    knobs = knob_columns(latest)
    seeds = per_seed(latest)
    out = []
    for (env,), part in seeds.group_by(["env"], maintain_order=True):
        shown = ["algorithm", *[k for k in differing(part, knobs) if k != "algorithm"]]
        stats = part.group_by(["configuration", *shown]).agg(
            *_mean_se_n(pl.col("train"), "train"), *_mean_se_n(pl.col("test"), "test"))
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
                *_mean_se_n(pl.col("train"), "train"), *_mean_se_n(pl.col("test"), "test"))
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
    model, narrow enough to read at 1600 px: `model`, `mean` (normalised return over the
    tasks), the normalised return on each task (a column per task), then `config` (its
    configuration's label), `algo`, `seed`, `update`, `episodes`. Newest models first."""
    rows = latest.filter(pl.col("split") == split) if not latest.is_empty() else latest
    if rows.is_empty():
        return pl.DataFrame()
    labels = dict(configurations(latest, with_id=True).select("configuration", "label")
                  .iter_rows())
    head = ["model", "algorithm", "seed", "configuration"]
    per_task = rows.pivot(on="task", index=head, values="normalised_return",
                          aggregate_function="first")
    tasks = sorted(c for c in per_task.columns if c not in head)
    summary = rows.group_by("model").agg(
        pl.col("normalised_return").mean().alias("mean"), pl.col("update").max(),
        pl.col("episodes").max())
    return (per_task.join(summary, on="model")
            .with_columns(pl.col("configuration").replace_strict(labels, default=None)
                          .alias("config"))
            .select(["model", "mean", *tasks, "config", pl.col("algorithm").alias("algo"),
                     "seed", "update", "episodes"])
            .sort(["update", "model"], descending=[True, False]))


def multi_vs_single(latest: pl.DataFrame) -> pl.DataFrame:
    """Held-out normalised return of the multi-task configuration (most training tasks) over
    the single-task ones (their mean), within each group that differs only in its tasks."""
    scaling = compare(latest, "train_tasks")
    if scaling.is_empty():
        return pl.DataFrame()
    rows = []
    for (env, compared), group in scaling.group_by(["env", "compared"], maintain_order=True):
        single = group.filter(pl.col("num_train_tasks") == 1)
        most = group["num_train_tasks"].max()
        if single.is_empty() or most == 1:
            continue
        multi = group.filter(pl.col("num_train_tasks") == most)
        m, s = multi["test_mean"].mean(), single["test_mean"].mean()
        rows.append({"env": env, "compared": compared, "multi_tasks": int(most),
                     "multi_test": m, "single_test": s,
                     "multi_over_single": m / s if s else None,
                     "seeds_multi": int(multi["test_n"].sum()),
                     "seeds_single": int(single["test_n"].sum())})
    return pl.DataFrame(rows) if rows else pl.DataFrame()


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
LEADING = ("label", "compared", "model", "multi_over_single", *SPLITS, "mean")


def narrow(table: pl.DataFrame, floats: int = 3) -> pl.DataFrame:
    """`table` for a narrow screen: each split's `_mean`, `_se`, `_n` become one text column
    (`0.700 ± 0.058 (n=3)`; no ± where n = 1), the name and the numbers lead and the knobs
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


def _mean_se_text(mean: float | None, se: float | None, n: int, floats: int) -> str | None:
    if mean is None:
        return None
    text = f"{mean:.{floats}f}"
    if se is not None and not math.isnan(se):
        text += f" ± {se:.{floats}f}"
    return f"{text} (n={n})"


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
