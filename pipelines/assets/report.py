"""The report: every evaluation accumulated in the lake, compared side by side.

Ablations never overwrite each other (each model is its own config id in `evaluations`),
so this asset can be rebuilt at any time from everything accumulated so far. Tables and
plots go to the asset's metadata (the UI) and as files under `<lake>/reports/`.
"""

import dagster as dg

from lake_schema.duck import connect
from lake_schema.report import (
    by_knob,
    latest_evaluations,
    markdown_table,
    multi_vs_single,
    per_model,
)
from pipelines.plots import knob_lines_png, png_markdown, train_test_bars_png
from pipelines.resources import LakeResource

REPORT_DIR = "reports"


@dg.asset(group_name="reports", deps=["offline_eval_train", "offline_eval_test", "ablation_sweep"],
          kinds={"duckdb"})
def report(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Train vs test normalised return per model, multi- vs single-task on held-out tasks,
    and the quality-subset and task-count comparisons."""
    the_lake = lake.lake()
    latest = latest_evaluations(connect(the_lake))
    models = per_model(latest)
    sections = {
        "Train vs held-out normalised return, per model": markdown_table(models),
        "Multi-task over single-task, held-out tasks": markdown_table(multi_vs_single(latest)),
        "By quality subset": markdown_table(by_knob(latest, "quality")),
        "By number of training tasks": markdown_table(by_knob(latest, "num_train_tasks")),
    }
    text = "\n\n".join(f"## {title}\n\n{body}" for title, body in sections.items())
    metadata: dict[str, object] = {
        "models": len(models),
        "evaluations": len(latest),
        "report": dg.MetadataValue.md(text),
    }
    files = {"report.md": f"# sable-lake report\n\n{text}\n".encode()}
    if not latest.is_empty():
        plots = {
            "train_vs_test.png": train_test_bars_png(models, "normalised return per model"),
            "task_scaling.png": knob_lines_png(by_knob(latest, "num_train_tasks"),
                                               "num_train_tasks", "task scaling"),
            "quality.png": knob_lines_png(by_knob(latest, "quality"), "quality",
                                          "quality subsets"),
        }
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
