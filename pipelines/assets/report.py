"""The report: every evaluation accumulated in the lake, compared without mixing configurations.

Ablations never overwrite each other (each model is its own config id in `evaluations`), so
this asset can be rebuilt at any time from everything accumulated so far. The grouping and
comparison rules live in `lake_schema.report`; this asset renders them: tables as Dagster
table metadata (inline on the asset's page), plots, and files under `<lake>/reports/`.
"""

import dagster as dg

from lake_schema.duck import connect
from lake_schema.report import (
    comparisons,
    configurations,
    latest_evaluations,
    markdown_table,
    multi_vs_single,
)
from pipelines.plots import comparison_png, configurations_png, png_markdown, table_metadata
from pipelines.resources import LakeResource

REPORT_DIR = "reports"


@dg.asset(group_name="reports", deps=["offline_eval_train", "offline_eval_test", "ablation_sweep"],
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
        "report": dg.MetadataValue.md(text),
    }
    if not configs.is_empty():
        metadata["configurations_table"] = table_metadata(configs)
    if not ratio.is_empty():
        metadata["multi_over_single"] = table_metadata(ratio)
        metadata["multi_over_single_mean"] = float(ratio["multi_over_single"].mean())
    files = {"report.md": f"# sable-lake report\n\n{text}\n".encode()}
    if not latest.is_empty():
        plots = {"train_vs_test.png": configurations_png(configs, "normalised return")}
        for title, (knob, table) in compared.items():
            shown = "num_train_tasks" if knob == "train_tasks" else knob
            plots[f"compare_{knob}.png"] = comparison_png(table, shown, title)
        files.update(plots)
        for name, png in plots.items():
            metadata[name.removesuffix(".png")] = png_markdown(png, name)
    for name, data in files.items():
        path = the_lake.path(f"{REPORT_DIR}/{name}")
        the_lake.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        the_lake.fs.pipe_file(path, data)
    metadata["files"] = dg.MetadataValue.path(the_lake.url(REPORT_DIR))
    context.log.info(f"report written to {the_lake.url(REPORT_DIR)}")
    return dg.MaterializeResult(metadata=metadata)
