"""The report: every evaluation accumulated in the lake, compared without mixing configurations.

Ablations never overwrite each other (each model is its own config id in `evaluations`), so
this asset can be rebuilt at any time from everything accumulated so far. The grouping and
comparison rules live in `trainer.analysis`; this asset renders them: tables as Dagster
table metadata and plots as inline images (both shown on the asset's page without a click;
see `pipelines.plots`), each algorithm's headline numbers as numeric metadata (the UI plots
them across materialisations), and the same under `<lake>/reports/`.
"""

import dagster as dg
import polars as pl

from lake_schema.duck import connect
from pipelines.plots import (
    REPORTS_DIR,
    comparison_png,
    configurations_png,
    headline_png,
    publish_png,
    table_metadata,
)
from pipelines.resources import LakeResource
from trainer.analysis import (
    comparisons,
    configurations,
    gain_cells,
    latest_evaluations,
    markdown_table,
    narrow,
    page_configurations,
    task_scaling_gain,
)


@dg.asset(group_name="reports", deps=["offline_eval_train", "offline_eval_test"],
          kinds={"duckdb"})
def report(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The headline first: held-out normalised return of models trained on 1 and on k tasks
    per algorithm (a plot with error bars and the random / online Sable lines) and the
    multi-task gain (the paper's max over k of test(k) / test(1), test(M) / test(1) beside
    it, each with its uncertainty); then train vs held-out normalised return per
    configuration (mean, standard error, seeds) and each one-knob comparison."""
    the_lake = lake.lake()
    latest = latest_evaluations(connect(the_lake))
    configs = configurations(latest)
    gain = task_scaling_gain(latest)
    compared = comparisons(latest)
    tables = {"Multi-task gain on held-out tasks (max over k of test(k) / test(1))": gain,
              "Configurations: train vs held-out normalised return": configs,
              **{title: table for title, (_, table) in compared.items()}}
    text = "\n\n".join(f"## {title}\n\n{markdown_table(table)}" for title, table in tables.items())
    # The first screen: the headline plot and its numbers; then the tables and plots; counts
    # and the per-algorithm numbers (the UI's Plots tab tracks them) last.
    metadata: dict[str, object] = {}
    files = {"report.md": f"# sable-lake report\n\n{text}\n".encode()}
    plots: dict[str, bytes] = {}
    scaling = compared.get("Task scaling", (None, pl.DataFrame()))[1]
    if not scaling.is_empty():
        plots["headline"] = headline_png(scaling)
        metadata["headline_plot"] = publish_png(the_lake, plots["headline"], "headline.png")
    metadata["headline"] = dg.MetadataValue.md(headline_text(gain))
    if not gain.is_empty():
        metadata["task_scaling_gain"] = table_metadata(gain_cells(gain))
    if not latest.is_empty():
        metadata["configurations_table"] = table_metadata(page_configurations(configs))
        plots["train_vs_test"] = configurations_png(configs, "normalised return")
        metadata["train_vs_test"] = publish_png(the_lake, plots["train_vs_test"],
                                                "train_vs_test.png")
        for title, (knob, table) in compared.items():
            shown = "num_train_tasks" if knob == "train_tasks" else knob
            name = f"compare_{knob}"
            plots[name] = comparison_png(table, shown, title)
            metadata[f"{name}_table"] = table_metadata(narrow(table))
            metadata[name] = publish_png(the_lake, plots[name], f"{name}.png")
    metadata.update({
        "report": dg.MetadataValue.md(
            "_no evaluations yet_" if latest.is_empty() else
            f"{len(configs)} configurations of {latest['model'].n_unique()} models; the same "
            f"tables as markdown in `{the_lake.url(f'{REPORTS_DIR}/report.md')}`"),
        "configurations": len(configs),
        "models": latest["model"].n_unique() if not latest.is_empty() else 0,
        "evaluations": len(latest),
    })
    if not latest.is_empty():
        metadata.update(headline_numbers(configs))
    if not gain.is_empty():
        for row in gain.filter(pl.col("gain").is_not_null()).iter_rows(named=True):
            metadata.setdefault(f"{row['env']}_{row['algorithm']}_gain", round(row["gain"], 4))
    files.update({f"{name}.png": png for name, png in plots.items()})
    for name, data in files.items():
        path = the_lake.path(f"{REPORTS_DIR}/{name}")
        the_lake.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        the_lake.fs.pipe_file(path, data)
    metadata["files"] = dg.MetadataValue.path(the_lake.url(REPORTS_DIR))
    context.log.info(f"report written to {the_lake.url(REPORTS_DIR)}")
    return dg.MaterializeResult(metadata=metadata)


def headline_text(gain: pl.DataFrame) -> str:
    """One line per env and algorithm: the gain with its 95% interval, test(M) / test(1)
    beside it, and what the uncertainty is over (shown first on the asset's page)."""
    if gain.is_empty():
        return "_no task-scaling comparison yet (models on 1 and on several training tasks)_"
    return "\n".join(gain_line(r) for r in gain.iter_rows(named=True))


def gain_line(row: dict) -> str:
    """`lbf bc: 1.12x [0.95, 1.31] (best k = 3); test(5)/test(1) 1.05x [...]; bootstrap ...`"""
    def interval(value, lo, hi):
        if value is None:
            return "undefined (test(1) not positive)"
        bounds = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        return f"{value:.2f}x{bounds}"

    best = f" (best k = {row['best_k']})" if row.get("best_k") is not None else ""
    if row.get("best_k") == 1:  # the maximum includes k = 1, so it is never below 1
        best = " (no k beat one task: the statistic is at least 1 by definition)"
    m = row.get("m") or "M"
    which = " ".join(x for x in (row["env"], row["algorithm"], row.get("compared")) if x)
    return (f"- {which}: max over k of test(k)/test(1) "
            f"{interval(row['gain'], row['gain_lo'], row['gain_hi'])}{best}; test({m})/test(1) "
            f"{interval(row['at_m'], row['at_m_lo'], row['at_m_hi'])}; 95% interval, "
            f"{row['uncertainty']}, {row['seeds']} seed(s)")


def headline_numbers(configs) -> dict[str, float]:
    """Per env and algorithm, among the configurations trained on the most tasks of the env
    (the multi-task models the product is for: a single-task model's training score is on
    one easy task, not comparable), the one best on its training tasks (the paper selects
    on train, never on held-out tasks): `<env>_<algorithm>_train` / `_test`, its mean
    normalised return over seeds (ties: more seeds, then the label). Float metadata, so the
    UI's Plots tab tracks them across materialisations."""
    out: dict[str, float] = {}
    if "num_train_tasks" in configs.columns:  # a column only where it differs
        tasks = pl.col("num_train_tasks").cast(pl.Int64)
        configs = configs.filter(tasks == tasks.max().over("env"))
    ranked = configs.filter(configs["train_mean"].is_not_null()).sort(
        ["train_mean", "train_n", "label"], descending=[True, True, False])
    for row in ranked.unique(["env", "algorithm"], keep="first", maintain_order=True).to_dicts():
        for split in ("train", "test"):
            if row[f"{split}_mean"] is not None:
                out[f"{row['env']}_{row['algorithm']}_{split}"] = round(
                    float(row[f"{split}_mean"]), 4)
    return out
