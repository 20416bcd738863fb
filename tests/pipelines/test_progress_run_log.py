"""The offline assets' progress (cache build, training updates, evaluation) lands in the
Dagster run log, with ETAs, through the `log` the assets pass to the trainer."""

import dagster as dg

from lake_schema.testing import fill_trainable_lake
from pipelines.assets.offline import OfflineModelConfig, offline_eval_train, offline_model
from pipelines.launch import add_models
from pipelines.resources import default_resources

TASKS = ["lbf/8x8-2p-2f", "lbf/10x10-3p-3f"]
# test_offline_asset.py's tiny model, a metrics row (and a progress line) per update
MODEL = {"env": "lbf", "algorithm": "bc", "tasks": TASKS, "embed_dim": 16, "num_heads": 2,
         "num_updates": 2, "batch_size": 8, "seq_len": 5, "log_every": 1}


def test_offline_progress_lines_are_in_the_run_log(lake, tmp_path, monkeypatch):
    monkeypatch.setenv("SABLE_LAKE_CACHE", str(tmp_path / "cache"))  # built in this run
    fill_trainable_lake(lake, TASKS)
    models = str(tmp_path / "models")
    instance = dg.DagsterInstance.ephemeral()
    (cid,) = add_models(instance, [OfflineModelConfig(**MODEL).build()], models)
    result = dg.materialize(
        [offline_model, offline_eval_train], resources=default_resources(lake.root),
        instance=instance, partition_key=cid, run_config={"ops": {
            "offline_model": {"config": {"models_dir": models}},
            "offline_eval_train": {"config": {"episodes": 2, "models_dir": models}}}})
    assert result.success
    messages = [e.user_message for e in instance.all_logs(result.run_id)
                if not e.is_dagster_event]
    def having(*parts: str) -> list[str]:
        return [m for m in messages if all(p in m for p in parts)]

    assert having("building the training cache")
    assert having("/", "steps cached (100.0%)", "steps/s", "ETA 0s", "task 2/2")
    assert having("2/2 updates (100.0%)", "updates/s", "ETA 0s", "| loss ")
    assert having("1/2 updates (50.0%)", "ETA ?")  # the first line, early (rate unknown yet)
    assert having("1/2 tasks evaluated (50.0%)", "tasks/s", "ETA ", "| lbf/8x8-2p-2f: mean "
                  "return ")
    assert having("2/2 tasks evaluated (100.0%)", "ETA 0s")
    assert having("lbf/10x10-3p-3f (train): return ", "normalised ")
