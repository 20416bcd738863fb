"""The report compares every accumulated evaluation: tables, ratios, plots and files."""

import datetime as dt
import json
import os

import dagster as dg
import pytest

from lake_schema.duck import connect
from lake_schema.report import latest_evaluations, multi_vs_single, per_model
from lake_schema.writer import write_records
from pipelines.assets.report import report
from pipelines.resources import default_resources

TRAIN = ["8x8-2p-2f", "10x10-3p-3f", "15x15-3p-5f"]
TEST = ["12x12-4p-5f", "14x14-3p-3f"]


def add_model(lake, model, algorithm, train_tasks, quality, scores, update=100):
    config = json.dumps({
        "config_id": model, "train_tasks": [f"lbf/{t}" for t in train_tasks],
        "config": {"algorithm": algorithm, "value_loss": "hl_gauss", "batch_mode": "balanced",
                   "agent_masking": True, "embed_dim": 32},
        "selection": {"quality": quality},
    })
    for task, score in scores.items():
        write_records(lake, "evaluations", {"env": "lbf", "task": task, "model": model}, [{
            "algorithm": algorithm, "split": "train" if task in train_tasks else "test",
            "update": update, "episodes": 8, "mean_return": score / 2,
            "std_return": 0.1, "normalised_return": score, "reference_return": 0.5,
            "config": config, "evaluated_at": dt.datetime.now(dt.UTC)}])


@pytest.fixture
def evaluated(lake):
    add_model(lake, "multi", "oryx", TRAIN, "all",
              {**dict.fromkeys(TRAIN, 0.9), TEST[0]: 0.6, TEST[1]: 0.8})
    add_model(lake, "single", "oryx", TRAIN[:1], "high", {TRAIN[0]: 1.0, TEST[0]: 0.3,
                                                          TEST[1]: 0.4})
    # an older, worse evaluation of the same model must not count
    add_model(lake, "stale", "oryx", TRAIN[:1], "high", {TEST[0]: 0.0}, update=1)
    add_model(lake, "stale", "oryx", TRAIN[:1], "high", {TEST[1]: 0.2}, update=5)
    return lake


def test_tables_compare_models(evaluated):
    latest = latest_evaluations(connect(evaluated))
    models = {r["model"]: r for r in per_model(latest).to_dicts()}
    assert models["multi"]["train_normalised"] == pytest.approx(0.9)
    assert models["multi"]["test_normalised"] == pytest.approx(0.7)
    assert models["single"]["num_train_tasks"] == 1 and models["single"]["quality"] == "high"
    ratio = multi_vs_single(latest).to_dicts()[0]
    # single-task held-out mean: (0.3 + 0.4 + 0.0 + 0.2) / 4 over the two single-task models
    assert ratio["multi_over_single"] == pytest.approx(0.7 / 0.225)


def test_report_asset_writes_tables_plots_and_files(evaluated):
    result = dg.materialize([report], resources=default_resources(evaluated.root))
    meta = result.asset_materializations_for_node("report")[0].metadata
    assert meta["models"].value == 3
    assert "Multi-task over single-task" in meta["report"].value
    assert meta["train_vs_test"].value.startswith("![train_vs_test.png](data:image/png;base64,")
    names = {p.rsplit("/", 1)[1] for p in evaluated.find("reports")}
    assert names == {"report.md", "train_vs_test.png", "task_scaling.png", "quality.png"}


def test_report_on_an_empty_lake_says_so(lake):
    os.makedirs(lake.root)  # an empty lake (a root that does not exist is an error)
    result = dg.materialize([report], resources=default_resources(lake.root))
    meta = result.asset_materializations_for_node("report")[0].metadata
    assert meta["evaluations"].value == 0 and "no evaluations yet" in meta["report"].value
