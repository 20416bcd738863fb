"""The report groups evaluations by configuration (everything but the seed), gives mean,
standard error and n over seeds, and compares only configurations that differ in one knob."""

import datetime as dt
import json
import os

import dagster as dg
import numpy as np
import pytest

from lake_schema.duck import connect
from lake_schema.writer import Evaluation, write_evaluation, write_records
from pipelines.assets.offline import evaluation_metadata
from pipelines.assets.report import report
from pipelines.plots import INLINE_MARKDOWN_LIMIT
from pipelines.resources import default_resources
from tests.helpers.plots import assert_published
from trainer.analysis import (
    comparisons,
    configurations,
    latest_evaluations,
    model_table,
    narrow,
    task_scaling_gain,
)

TRAIN = ["8x8-2p-2f", "10x10-3p-3f", "15x15-3p-5f"]
TEST = ["12x12-4p-5f", "14x14-3p-3f"]
SEEDS = (0, 1, 2)


def add_model(lake, model, train_tasks, scores, *, algorithm="oryx", quality="all",
              num_updates=300, seed=0, update=100):
    """One model's evaluations, with the `config` JSON laid out as the evaluation writes it."""
    config = json.dumps({
        "config_id": model, "train_tasks": [f"lbf/{t}" for t in train_tasks],
        "config": {"env": "lbf", "algorithm": algorithm, "value_loss": "hl_gauss",
                   "batch_mode": "balanced", "agent_masking": True, "embed_dim": 32,
                   "num_updates": num_updates, "seed": seed, "log_every": 50},
        "selection": {"env": "lbf", "tasks": [f"lbf/{t}" for t in train_tasks],
                      "split": None, "first_k": None, "quality": quality, "seed": seed},
        "evaluation": {"checkpoint": "latest", "greedy": False, "seed": 0},
    })
    for task, score in scores.items():
        write_evaluation(lake, f"lbf/{task}", model, Evaluation(
            algorithm, "train" if task in train_tasks else "test", update, episodes=8,
            mean_return=score / 2, std_return=0.1, normalised_return=score,
            reference_return=0.5, config=config, evaluated_at=dt.datetime.now(dt.UTC)))


# held-out scores (task 0, task 1) of each seed
MULTI = {0: (0.6, 0.8), 1: (0.5, 0.7), 2: (0.7, 0.9)}
SINGLE = {0: (0.3, 0.4), 1: (0.2, 0.4), 2: (0.4, 0.5)}


@pytest.fixture
def evaluated(lake):
    for seed in SEEDS:
        # an older, worse evaluation of a model must not count
        add_model(lake, f"single-{seed}", TRAIN[:1], {TEST[0]: 0.0}, seed=seed, update=1)
        add_model(lake, f"multi-{seed}", TRAIN, {**dict.fromkeys(TRAIN, 0.9),
                                                 **dict(zip(TEST, MULTI[seed], strict=True))},
                  seed=seed)
        add_model(lake, f"single-{seed}", TRAIN[:1], {TRAIN[0]: 1.0,
                                                      **dict(zip(TEST, SINGLE[seed],
                                                                 strict=True))}, seed=seed)
    # another configuration in two knobs at once (quality and length): compared with nothing
    add_model(lake, "other", TRAIN[:1], {TRAIN[0]: 1.0, TEST[0]: 0.0, TEST[1]: 0.1},
              quality="high", num_updates=50)
    return lake


def _mean_se(per_seed):
    means = np.array([np.mean(v) for v in per_seed.values()])
    return means.mean(), means.std(ddof=1) / np.sqrt(len(means))


def test_configurations_group_seeds_with_mean_se_and_n(evaluated):
    latest = latest_evaluations(connect(evaluated))
    table = {r["label"]: r for r in configurations(latest).to_dicts()}
    assert set(table) == {"oryx tasks=3 quality=all num_updates=300",
                          "oryx tasks=8x8-2p-2f quality=all num_updates=300",
                          "oryx tasks=8x8-2p-2f quality=high num_updates=50"}
    multi = table["oryx tasks=3 quality=all num_updates=300"]
    mean, se = _mean_se(MULTI)
    assert multi["test_mean"] == pytest.approx(mean) and multi["test_se"] == pytest.approx(se)
    assert multi["test_n"] == 3 and multi["train_mean"] == pytest.approx(0.9)
    single = table["oryx tasks=8x8-2p-2f quality=all num_updates=300"]
    assert single["test_mean"] == pytest.approx(_mean_se(SINGLE)[0])  # the stale row is out
    lone = table["oryx tasks=8x8-2p-2f quality=high num_updates=50"]
    # one seed: the error is its episodes' (0.1 / sqrt(8) / 0.5 per task, two tasks)
    assert lone["test_n"] == 1 and lone["test_se"] == pytest.approx(0.05)


def test_comparisons_never_mix_configurations(evaluated):
    latest = latest_evaluations(connect(evaluated))
    (gain,) = task_scaling_gain(latest).to_dicts()
    # only the 300-update `all` pair: the 50-update `high` model differs in two more knobs
    assert gain["gain"] == pytest.approx(_mean_se(MULTI)[0] / _mean_se(SINGLE)[0])
    assert gain["seeds"] == 3 and gain["uncertainty"] == "bootstrap over seeds"
    found = comparisons(latest)
    assert list(found) == ["Task scaling"]  # no quality or length comparison is possible
    knob, scaling = found["Task scaling"]
    assert knob == "train_tasks" and scaling["num_train_tasks"].to_list() == [1, 3]


def test_the_paper_s_gain_is_the_best_k_over_one_task_averaged_over_algorithms(lake):
    """By hand: BC's held-out means are 0.4 (k=1), 0.6 (k=3), 0.5 (k=5): gain 0.6/0.4 = 1.5
    at k = 3, test(M)/test(1) = 1.25; Oryx's 0.5, 0.55, 0.75: 1.5 at k = 5, 1.5; their mean
    1.5 and 1.375. The bootstrap over three seeds brackets the point values."""
    held_out = {"bc": (0.4, 0.6, 0.5), "oryx": (0.5, 0.55, 0.75)}
    for algorithm, means in held_out.items():
        for k, mean in zip((1, 3, 5), means, strict=True):
            for seed, offset in zip(SEEDS, (-0.05, 0.0, 0.05), strict=True):
                add_model(lake, f"{algorithm}-{k}-{seed}", (TRAIN * 2)[:k],
                          {TEST[0]: mean + offset, TEST[1]: mean + offset},
                          algorithm=algorithm, seed=seed)
    rows = {r["algorithm"]: r for r in task_scaling_gain(
        latest_evaluations(connect(lake))).to_dicts()}
    assert set(rows) == {"bc", "oryx", "mean"}
    assert (rows["bc"]["gain"], rows["bc"]["best_k"], rows["bc"]["at_m"]) == pytest.approx(
        (1.5, 3, 1.25))
    assert (rows["oryx"]["gain"], rows["oryx"]["best_k"], rows["oryx"]["at_m"]
            ) == pytest.approx((0.75 / 0.5, 5, 0.75 / 0.5))
    assert (rows["mean"]["gain"], rows["mean"]["at_m"]) == pytest.approx((1.5, 1.375))
    for row in rows.values():
        assert row["gain_lo"] < row["gain"] < row["gain_hi"] and row["gain_se"] > 0
        assert row["uncertainty"] == "bootstrap over seeds" and row["seeds"] == 3


def test_one_seed_s_gain_carries_its_per_episode_standard_error(lake):
    """With one seed the uncertainty is the episodes': std_return 0.1 over sqrt(8) episodes,
    normalised by the reference return 0.5, per task, two tasks averaged:
    se(test(k)) = sqrt(2) * (0.1 / sqrt(8) / 0.5) / 2 = 0.05. The ratio 0.6 / 0.4 = 1.5 has,
    by the delta method, se = 1.5 * sqrt((0.05/0.6)^2 + (0.05/0.4)^2) = 0.225."""
    for k, mean in ((1, 0.4), (3, 0.6)):
        add_model(lake, f"bc-{k}", (TRAIN * 2)[:k], {TEST[0]: mean, TEST[1]: mean},
                  algorithm="bc")
    for task in TEST:
        write_records(lake, "references", {"env": "lbf", "task": task, "run": "r"}, [{
            "sable_return": 0.5, "sable_return_std": 0.0, "sable_episodes": 8,
            "random_return": 0.1, "random_return_std": 0.0, "random_episodes": 8,
            "env_steps": 1000, "recorded_at": dt.datetime.now(dt.UTC)}])
    latest = latest_evaluations(connect(lake))
    assert latest["normalised_se"].to_list() == pytest.approx([0.1 / np.sqrt(8) / 0.5] * 4)
    (row,) = task_scaling_gain(latest, resamples=20_000).to_dicts()
    assert row["gain"] == pytest.approx(1.5) and row["seeds"] == 1
    assert row["uncertainty"] == "per-episode s.e. (1 seed)"
    assert row["at_m_se"] == pytest.approx(0.225, rel=0.15)


def test_one_seed_s_configuration_shows_its_per_episode_error_labelled_as_such(lake):
    """A configuration with one seed has no error over seeds: its standard error is the
    episodes', by hand 0.1 / sqrt(8) / 0.5 per task, two tasks: sqrt(2) * that / 2."""
    add_model(lake, "lone", TRAIN[:1], {TEST[0]: 0.4, TEST[1]: 0.6})
    for task in TEST:
        write_records(lake, "references", {"env": "lbf", "task": task, "run": "r"}, [{
            "sable_return": 0.5, "sable_return_std": 0.0, "sable_episodes": 8,
            "random_return": 0.1, "random_return_std": 0.0, "random_episodes": 8,
            "env_steps": 1000, "recorded_at": dt.datetime.now(dt.UTC)}])
    (row,) = configurations(latest_evaluations(connect(lake))).to_dicts()
    se = np.sqrt(2) * (0.1 / np.sqrt(8) / 0.5) / 2
    assert row["test_n"] == 1 and row["test_se"] == pytest.approx(se)
    (cell,) = narrow(configurations(latest_evaluations(connect(lake))))["test"].to_list()
    assert cell == f"0.500 ± {se:.3f} (1 seed, ± over episodes)"


def test_one_knob_comparison_sets_side_by_side_what_differs_in_it_alone(lake):
    for seed in SEEDS:
        for quality, score in (("all", 0.5), ("high", 0.7)):
            add_model(lake, f"{quality}-{seed}", TRAIN, {TEST[0]: score + 0.01 * seed},
                      quality=quality, seed=seed)
    knob, table = comparisons(latest_evaluations(connect(lake)))["Quality subsets"]
    rows = {r["quality"]: r for r in table.to_dicts()}
    assert knob == "quality" and rows["high"]["test_mean"] == pytest.approx(0.71)
    assert rows["all"]["test_n"] == 3


def test_report_asset_writes_tables_plots_and_files(evaluated):
    result = dg.materialize([report], resources=default_resources(evaluated.root))
    meta = result.asset_materializations_for_node("report")[0].metadata
    assert meta["configurations"].value == 3 and meta["models"].value == 7
    assert len(meta["report"].value) < INLINE_MARKDOWN_LIMIT  # shown inline, not a link
    table = meta["configurations_table"]
    assert isinstance(table, dg.TableMetadataValue) and len(table.records) == 3
    # narrow: label and the train / test numbers lead, mean ± s.e. (n) in one cell each
    assert [c.name for c in table.schema.columns][:3] == ["label", "train", "test"]
    multi = next(r.data for r in table.records if r.data["label"].startswith("oryx tasks=3"))
    mean, se = _mean_se(MULTI)
    assert multi["test"] == f"{mean:.3f} ± {se:.3f} (3 seeds)"
    assert multi["train"] == "0.900 ± 0.000 (3 seeds)"
    assert [r.data["compared"] for r in meta["compare_train_tasks_table"].records] == [
        "quality=all num_updates=300"] * 2
    # the headline numbers, per env and algorithm, as floats the UI plots
    # (among the 3-task configurations, best on train: the multi-task one, 0.9 over 3 seeds;
    # the single-task one scores 1.0 on its one training task but is not a candidate)
    assert meta["lbf_oryx_train"].value == 0.9
    assert meta["lbf_oryx_test"].value == pytest.approx(_mean_se(MULTI)[0], abs=1e-4)
    for name in ("train_vs_test", "compare_train_tasks"):
        assert_published(evaluated, meta[name].value, f"{name}.png")
    report_md = evaluated.fs.cat_file(evaluated.path("reports/report.md")).decode()
    assert "Multi-task gain on held-out tasks" in report_md
    # the headline leads the page: the plot of held-out returns by number of training
    # tasks, then the gain with its interval and what it is over
    assert list(meta)[:3] == ["headline_plot", "headline", "task_scaling_gain"]
    assert_published(evaluated, meta["headline_plot"].value, "headline.png")
    assert meta["headline"].value.startswith(
        "- lbf oryx quality=all num_updates=300: max over k of test(k)/test(1) ")
    assert "95% interval, bootstrap over seeds, 3 seed(s)" in meta["headline"].value
    assert meta["lbf_oryx_gain"].value == pytest.approx(
        _mean_se(MULTI)[0] / _mean_se(SINGLE)[0], abs=1e-4)
    # the gain's table on the page: a few short text columns, the interval beside each ratio
    (cells,) = [r.data for r in meta["task_scaling_gain"].records]
    ratio = _mean_se(MULTI)[0] / _mean_se(SINGLE)[0]
    assert list(cells) == ["algorithm", "max_k test(k)/test(1)", "test(3)/test(1)", "seeds",
                           "95% over"]
    assert cells["max_k test(k)/test(1)"].startswith(f"{ratio:.2f}x [")
    assert cells["max_k test(k)/test(1)"].endswith(" k=3")
    assert (cells["seeds"], cells["95% over"]) == (3, "seeds")
    assert sum(max(len(str(k)), len(str(v))) for k, v in cells.items()) < 100  # fits
    names = {p.rsplit("/", 1)[1] for p in evaluated.find("reports")}
    assert {"report.md", "headline.png", "train_vs_test.png", "compare_train_tasks.png"} <= names


def test_report_on_an_empty_lake_says_so(lake):
    os.makedirs(lake.root)  # an empty lake (a root that does not exist is an error)
    result = dg.materialize([report], resources=default_resources(lake.root))
    meta = result.asset_materializations_for_node("report")[0].metadata
    assert meta["evaluations"].value == 0 and "no evaluations yet" in meta["report"].value



def test_every_models_evaluations_in_one_narrow_table(evaluated):
    latest = latest_evaluations(connect(evaluated))
    table = model_table(latest, "test")
    assert table.columns == ["name", "model", "mean", *TEST, "config", "update", "episodes"]
    rows = {r["model"]: r for r in table.to_dicts()}
    assert set(rows) == {*(f"{k}-{s}" for k in ("multi", "single") for s in SEEDS), "other"}
    single = rows["single-1"]  # its latest evaluation, not the stale update-1 row
    assert single[TEST[0]] == SINGLE[1][0] and single["mean"] == pytest.approx(np.mean(SINGLE[1]))
    assert single["config"] == "oryx tasks=8x8-2p-2f quality=all num_updates=300"
    assert single["name"] == "oryx · 1 task · seed 1" and rows["multi-2"]["name"] == (
        "oryx · 3 tasks · seed 2")
    assert model_table(latest, "train")["model"].n_unique() == 7
    assert model_table(latest.clear(), "test").is_empty()


def test_comparison_labels_stay_unique(lake):
    # two groups that differ only in which two tasks they trained on: both would be `tasks=2`
    for tasks in (TRAIN[:2], TRAIN[1:]):
        for quality, score in (("all", 0.5), ("high", 0.7)):
            add_model(lake, f"{quality}-{tasks[0]}", tasks, {TEST[0]: score}, quality=quality)
    _, table = comparisons(latest_evaluations(connect(lake)))["Quality subsets"]
    labels = table["compared"].unique().to_list()
    assert len(labels) == 2 and all(label.startswith("tasks=2 #") for label in labels)


def test_evaluation_page_reads_the_models_rows_back_from_the_lake(evaluated):
    meta = evaluation_metadata(evaluated, "multi-2", {"test"})
    assert meta["mean_normalised_return"] == pytest.approx(np.mean(MULTI[2]))
    assert meta["oryx_mean_normalised_return"] == meta["mean_normalised_return"]
    per_task = meta["per_task"]
    assert [c.name for c in per_task.schema.columns][:2] == ["task", "normalised"]
    assert [r.data["task"] for r in per_task.records] == sorted(TEST)
    assert len(meta["all_models_test"].records) == 7 and "all_models_train" not in meta
    assert_published(evaluated, meta["per_task_plot"].value, "per-task normalised return")
    with pytest.raises(ValueError, match="model lbf-bc-nope: no evaluations"):
        evaluation_metadata(evaluated, "lbf-bc-nope", {"test"})


def test_evaluation_page_shows_the_periodic_score_that_chose_the_checkpoint(evaluated):
    """The best periodic evaluation (its episodes) beside the final one (its episodes): the
    reader sees how much the choice of the luckiest evaluation inflates the former."""
    best = {"update": 100, "score": 0.994, "tasks": {f"lbf/{TRAIN[0]}": 0.994}, "episodes": 32}
    meta = evaluation_metadata(evaluated, "single-1", {"train"}, best)
    (row,) = [r.data for r in meta["per_task"].records]
    assert (row["normalised"], row["episodes"]) == (1.0, 8)  # the final evaluation
    assert (row["periodic"], row["periodic episodes"]) == (0.994, 32)
    assert "update 100" in meta["checkpoint_choice"].value
    # a best checkpoint of another update than the one evaluated is not set beside it
    other = evaluation_metadata(evaluated, "single-1", {"train"}, {**best, "update": 50})
    assert "checkpoint_choice" not in other
    assert "periodic" not in {c.name for c in other["per_task"].schema.columns}


def test_a_numeric_knob_is_compared_in_numeric_order(lake):
    for updates in (1000, 50, 300):
        add_model(lake, f"len-{updates}", TRAIN, {TEST[0]: updates / 1000},
                  num_updates=updates)
    knob, table = comparisons(latest_evaluations(connect(lake)))["Training length"]
    assert knob == "num_updates" and table["num_updates"].to_list() == ["50", "300", "1000"]
    assert table["test_mean"].to_list() == pytest.approx([0.05, 0.3, 1.0])
