"""A reproduction preset is one experiment submitted to the run queue: the `launch_experiment`
job (as the UI launches it) registers every model of the narrowed, scaled-down preset as a
partition and submits one backfill of its task datasets, models and report; bad launches are
refused before anything is registered or queued."""

import dagster as dg
import pytest

from pipelines.definitions import defs
from pipelines.experiments import ReproduceConfig
from trainer.experiments import dataset_tasks, seed_groups
from trainer.offline.config import config_id
from trainer.offline.runs import registered_model

TINY = {"num_updates": 2, "batch_size": 6, "seq_len": 5, "embed_dim": 16, "num_heads": 2}
QUALITY = {"preset": "cpu-small", "envs": ["lbf"], "experiments": ["quality"], "seeds": [0, 1],
           "offline": TINY, "eval_episodes": 2}


def _launch(instance: dg.DagsterInstance, reproduce: dict, models_dir: str):
    return defs.resolve_job_def("launch_experiment").execute_in_process(
        instance=instance, raise_on_error=False, run_config={"ops": {"submit_experiment": {
            "config": {"reproduce": reproduce, "models_dir": models_dir}}}})


def test_a_preset_is_one_backfill_of_its_datasets_models_and_report(tmp_path):
    with dg.instance_for_test() as instance:
        assert _launch(instance, QUALITY, str(tmp_path)).success
        (backfill,) = instance.get_backfills()
        preset = ReproduceConfig(**QUALITY).narrowed()
        expected = [config_id(c, s) for g in seed_groups(preset, TINY) for _, c, s in g]
        assert len(expected) == 8  # all, high, low, high + 10% low; two seeds
        # every model registered (its spec says what to train) and added as a partition
        assert sorted(instance.get_dynamic_partitions("model")) == sorted(expected)
        for cid in expected:
            config, selection = registered_model(tmp_path, cid)
            assert config_id(config, selection) == cid and config.num_updates == 2
        target = backfill.asset_backfill_data.target_subset
        keys = {k.to_user_string(): set(v.get_partition_keys())
                for k, v in target.partitions_subsets_by_asset_key.items()}
        tasks = set(dataset_tasks(preset))
        assert keys == {"online_sable": tasks, "dataset_card": tasks,
                        "offline_model": set(expected), "offline_eval_train": set(expected),
                        "offline_eval_test": set(expected)}
        assert {k.to_user_string() for k in target.non_partitioned_asset_keys} == {
            "dataset_status", "report"}
        ops = backfill.run_config["ops"]
        assert ops["online_sable"]["config"] == {"preset": "cpu-small"}
        assert ops["offline_eval_test"]["config"] == {"episodes": 2, "models_dir": str(tmp_path)}
        assert backfill.tags["sable-lake/experiment"] == "cpu-small"


@pytest.mark.parametrize("config, message", [
    ({"preset": "huge"}, "unknown preset 'huge'"),
    ({"experiments": ["model_size"]}, "experiments ['model_size'] not in preset 'cpu-small'"),
    ({"seeds": [7]}, "seeds [7] not in preset 'cpu-small'"),
    ({"offline": {"embed_dim": 0}}, "embed_dim"),
])
def test_a_bad_launch_is_refused_before_anything_is_queued(tmp_path, config, message):
    with dg.instance_for_test() as instance:
        result = _launch(instance, config, str(tmp_path))
        assert not result.success
        assert message in result.failure_data_for_node("submit_experiment").error.to_string()
        assert instance.get_backfills() == [] and instance.get_dynamic_partitions("model") == []
        assert not (tmp_path / "specs").exists()


def test_the_online_config_of_a_preset_is_per_task():
    from lake_schema.catalogue import get_task
    from pipelines.assets.online import OnlineSableConfig
    from trainer.experiments import get_preset

    preset = get_preset("cpu-small")
    config = OnlineSableConfig(preset="cpu-small")
    train, held_out = "lbf/8x8-2p-2f", "lbf/12x12-4p-5f"
    assert not preset.held_out(train) and preset.held_out(held_out)
    for task in (train, held_out, "connector/12x12x4a"):
        knobs = preset.online_config(task.split("/")[0], preset.held_out(task))
        got = config.online_config(get_task(task))
        assert all(getattr(got, k) == v for k, v in knobs.items() if k != "profile"), task
    # a knob set beside the preset wins
    assert OnlineSableConfig(preset="cpu-small", seed=5).online_config(get_task(train)).seed == 5
