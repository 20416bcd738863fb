"""Where models live and what a model is evaluated on: the rules the assets, the reproduction
and `python -m trainer.offline` share (`trainer.offline.runs`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lake_schema.catalogue import held_out_split
from trainer.offline.runs import MODELS_ENV, eval_targets, models_root

INFO = {"config_id": "abc", "tasks": ["lbf/8x8-2p-2f", "lbf/10x10-3p-3f"],
        "selection": {"split": "demo-train"}}


def test_models_live_where_asked_else_where_the_environment_says(monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert models_root() == Path("models") and models_root("") == Path("models")
    monkeypatch.setenv(MODELS_ENV, "/srv/models")
    assert models_root() == Path("/srv/models")
    assert models_root("here") == Path("here")


def test_each_training_split_has_its_held_out_split():
    assert held_out_split("train") == "test"
    assert held_out_split("demo-train") == "demo-test"
    assert held_out_split("test") is None and held_out_split("") is None


def test_a_model_is_evaluated_on_its_tasks_or_its_held_out_split():
    assert eval_targets(INFO, "train") == (INFO["tasks"], None)
    assert eval_targets(INFO, "test") == (None, "demo-test")
    assert eval_targets(INFO, "test", tasks=["lbf/15x15-4p-3f"]) == (["lbf/15x15-4p-3f"], None)
    assert eval_targets(INFO, "train", split="test") == (None, "test")
    by_tasks = {**INFO, "selection": {"split": None}}
    with pytest.raises(ValueError, match="model abc was not trained on a named train split"):
        eval_targets(by_tasks, "test")


def test_a_model_is_done_when_its_current_run_is_evaluated_on_both_splits(lake, tmp_path):
    import json

    from lake_schema.writer import Evaluation, write_evaluation
    from trainer.offline.runs import evaluated_models

    def evaluate(model: str, task: str, split: str, since: str, episodes: int = 8) -> None:
        write_evaluation(lake, task, model, Evaluation(
            "bc", split, 10, episodes, 1.0, 0.1, 0.5, 2.0,
            config=json.dumps({"trained_since": since})))

    def trained(model: str, since: str) -> None:
        (tmp_path / model).mkdir(exist_ok=True)
        (tmp_path / model / "model.json").write_text(json.dumps({"trained_since": since}))

    assert evaluated_models(lake, tmp_path) == set()  # no evaluations table yet
    for model in ("both", "train-only", "retrained", "gone"):
        trained(model, "t0")
        evaluate(model, "lbf/8x8-2p-2f", "train", "t0")
        if model != "train-only":
            evaluate(model, "lbf/12x12-4p-5f", "test", "t0")
    trained("retrained", "t1")  # its rows are its predecessor's
    (tmp_path / "gone" / "model.json").unlink()  # its run directory was removed
    assert evaluated_models(lake, tmp_path) == {"both"}
    assert evaluated_models(lake, tmp_path, episodes=8) == {"both"}
    assert evaluated_models(lake, tmp_path, episodes=320) == set()
