"""The report: every evaluation accumulated in the lake, compared without mixing configurations.

Ablations never overwrite each other (each model is its own config id in `evaluations`), so
this asset can be rebuilt at any time from everything accumulated so far. The grouping and
comparison rules live in `lake_schema.report`; this asset renders them: tables as Dagster
table metadata and plots as inline images (both shown on the asset's page without a click;
see `pipelines.plots`), each algorithm's headline numbers as numeric metadata (the UI plots
them across materialisations), and the same under `<lake>/reports/`.
"""

import dagster as dg
import polars as pl

from lake_schema.duck import connect
from lake_schema.report import (
    comparisons,
    configurations,
    latest_evaluations,
    markdown_table,
    multi_vs_single,
    narrow,
)
from pipelines.plots import (
    REPORTS_DIR,
    comparison_png,
    configurations_png,
    publish_png,
    table_metadata,
)
from pipelines.resources import LakeResource


@dg.asset(group_name="reports", deps=["offline_eval_train", "offline_eval_test", "ablation_sweep",
                "reproduction"],
          kinds={"duckdb"})
def report(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Train vs held-out normalised return per configuration (mean, standard error and n over
    seeds), multi- vs single-task on held-out tasks, and each one-knob comparison."""
    the_lake = lake.lake()
    latest = latest_evaluations(connect(the_lake))
    configs = configurations(latest)
    ratio = multi_vs_single(latest)
    compared = comparisons(latest)
    tables = {"Configurations: train vs held-out normalised return": configs,
              "Multi-task over single-task, held-out tasks": ratio,
              **{title: table for title, (_, table) in compared.items()}}
    text = "\n\n".join(f"## {title}\n\n{markdown_table(table)}" for title, table in tables.items())
    metadata: dict[str, object] = {
        "configurations": len(configs),
        "models": latest["model"].n_unique() if not latest.is_empty() else 0,
        "evaluations": len(latest),
        # short, so the UI shows it inline; the tables follow as table metadata
        "report": dg.MetadataValue.md(
            "_no evaluations yet_" if latest.is_empty() else
            f"{len(configs)} configurations of {latest['model'].n_unique()} models; the same "
            f"tables as markdown in `{the_lake.url(f'{REPORTS_DIR}/report.md')}`"),
    }
    files = {"report.md": f"# sable-lake report\n\n{text}\n".encode()}
    if not latest.is_empty():
        # each table with its plot beside it, in the order of `tables`
        metadata.update(headline_numbers(configs))
        metadata["configurations_table"] = table_metadata(narrow(configs))
        plots = {"train_vs_test": configurations_png(configs, "normalised return")}
        metadata["train_vs_test"] = publish_png(the_lake, plots["train_vs_test"],
                                                "train_vs_test.png")
        if not ratio.is_empty():
            metadata["multi_over_single"] = table_metadata(narrow(ratio))
            metadata["multi_over_single_mean"] = round(
                float(ratio["multi_over_single"].mean()), 4)
        for title, (knob, table) in compared.items():
            shown = "num_train_tasks" if knob == "train_tasks" else knob
            name = f"compare_{knob}"
            plots[name] = comparison_png(table, shown, title)
            metadata[f"{name}_table"] = table_metadata(narrow(table))
            metadata[name] = publish_png(the_lake, plots[name], f"{name}.png")
        files.update({f"{name}.png": png for name, png in plots.items()})
    for name, data in files.items():
        path = the_lake.path(f"{REPORTS_DIR}/{name}")
        the_lake.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        the_lake.fs.pipe_file(path, data)
    metadata["files"] = dg.MetadataValue.path(the_lake.url(REPORTS_DIR))
    context.log.info(f"report written to {the_lake.url(REPORTS_DIR)}")
    return dg.MaterializeResult(metadata=metadata)


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
