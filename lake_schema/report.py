"""Comparison tables over every evaluation in the lake: one SQL query each, no JAX.

Each offline model is one `model` (its config id) in the `evaluations` table; its config,
dataset selection and training tasks are a JSON column, so ablations are compared by
reading knobs out of it. Only each model's latest evaluation per task counts.
"""

from __future__ import annotations

import duckdb
import polars as pl

# The knobs an ablation varies, pulled out of the `config` JSON column.
LATEST_EVALUATIONS = """
WITH ranked AS (
  SELECT *, row_number() OVER (
      PARTITION BY model, task ORDER BY "update" DESC, episodes DESC, evaluated_at DESC) AS r
  FROM evaluations
)
SELECT env, task, model, algorithm, split, "update", episodes, mean_return,
       normalised_return, reference_return,
       coalesce(json_extract_string(config, '$.selection.quality'), 'all') AS quality,
       json_array_length(json_extract(config, '$.train_tasks'))::INTEGER AS num_train_tasks,
       json_extract_string(config, '$.config.value_loss') AS value_loss,
       json_extract_string(config, '$.config.batch_mode') AS batch_mode,
       json_extract_string(config, '$.config.agent_masking') AS agent_masking,
       json_extract(config, '$.config.embed_dim')::INTEGER AS embed_dim
FROM ranked WHERE r = 1
"""

_KNOBS = ("algorithm", "quality", "num_train_tasks", "value_loss", "batch_mode",
          "agent_masking", "embed_dim")


def latest_evaluations(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return pl.from_arrow(con.sql(LATEST_EVALUATIONS).to_arrow_table())


def per_model(latest: pl.DataFrame) -> pl.DataFrame:
    """Train vs test mean normalised return per model, with the knobs that tell them apart."""
    if latest.is_empty():
        return pl.DataFrame()
    by_split = latest.group_by(["env", "model", *_KNOBS, "split"]).agg(
        pl.col("normalised_return").mean().alias("normalised"), pl.len().alias("tasks"))
    wide = by_split.pivot(on="split", index=["env", "model", *_KNOBS], values="normalised")
    for split in ("train", "test"):
        if split not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(split))
    return wide.rename({"train": "train_normalised", "test": "test_normalised"}).sort(
        ["env", "algorithm", "num_train_tasks", "model"])


def multi_vs_single(latest: pl.DataFrame) -> pl.DataFrame:
    """Held-out normalised return of multi-task models over single-task ones, per algorithm."""
    test = latest.filter(pl.col("split") == "test")
    if test.is_empty():
        return pl.DataFrame()
    kind = pl.when(pl.col("num_train_tasks") > 1).then(pl.lit("multi")).otherwise(pl.lit("single"))
    means = test.with_columns(kind.alias("kind")).group_by(["env", "algorithm", "kind"]).agg(
        pl.col("normalised_return").mean().alias("test_normalised"))
    wide = means.pivot(on="kind", index=["env", "algorithm"], values="test_normalised")
    for kind_name in ("multi", "single"):
        if kind_name not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(kind_name))
    return wide.with_columns((pl.col("multi") / pl.col("single")).alias("multi_over_single")).sort(
        ["env", "algorithm"])


def by_knob(latest: pl.DataFrame, knob: str) -> pl.DataFrame:
    """Mean normalised return on train and test tasks per algorithm and value of `knob`."""
    if latest.is_empty():
        return pl.DataFrame()
    return (
        latest.group_by(["env", "algorithm", knob, "split"])
        .agg(pl.col("normalised_return").mean().alias("normalised"),
             pl.col("model").n_unique().alias("models"))
        .sort(["env", "algorithm", knob, "split"])
    )


def markdown_table(df: pl.DataFrame, floats: int = 3) -> str:
    """A GitHub-flavoured markdown table (what the Dagster UI renders in metadata)."""
    if df.is_empty():
        return "_no evaluations yet_"
    rows = [[_cell(v, floats) for v in row] for row in df.iter_rows()]
    head = "| " + " | ".join(df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    return "\n".join([head, rule, *("| " + " | ".join(r) + " |" for r in rows)])


def _cell(v: object, floats: int) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{floats}f}"
    return str(v)
