"""Experiments through the instance's run queue (`pipelines.launch`): a backfill submitted to
a persistent instance runs under a daemon started for the block and stopped after, `wait`
reports each run as it ends with a one-line error for a failed one, and what `submit` queues
is the experiment's datasets, models and report, nothing a second launch need not run."""

import shutil
from pathlib import Path

import dagster as dg

from lake_schema.storage import Lake
from pipelines.experiments import Experiment
from pipelines.launch import daemon_running, gpu_tags, queue_daemon, submit, wait
from trainer.data.selection import DataSelection
from trainer.offline.config import OfflineConfig, config_id

ROOT = Path(__file__).resolve().parents[2]


def test_a_backfill_runs_under_the_daemon_and_each_run_is_reported(tmp_path, monkeypatch):
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SABLE_LAKE", str(tmp_path / "lake"))
    Lake(tmp_path / "lake").prepare_for_writing()  # an empty lake: the report has nothing yet
    with dg.DagsterInstance.get() as instance:
        ok = submit(instance, Experiment("empty"))  # the report alone
        seen = []
        with queue_daemon(instance) as daemon:
            assert daemon is not None and daemon_running(instance)
            finished = wait(instance, ok, seen.append)
            # a run that fails: its lake is gone (one line, naming the root)
            shutil.rmtree(tmp_path / "lake")
            failed = wait(instance, submit(instance, Experiment("no lake")))
        assert [f.what for f in seen] == ["report"] and seen == finished
        assert finished[0].success and finished[0].line().startswith("report: done (")
        (broken,) = failed
        assert not broken.success and "\n" not in broken.error
        assert f"lake root {tmp_path / 'lake'} does not exist" in broken.error
        runs = instance.get_run_records()
        assert {r.dagster_run.tags["sable-lake/experiment"] for r in runs} == {"empty",
                                                                                "no lake"}
    assert daemon.poll() is not None  # the daemon started for the block ended with it


def test_submit_queues_the_models_not_yet_evaluated(tmp_path):
    configs = [OfflineConfig.profile("demo", env="lbf", algorithm=a) for a in ("bc", "oryx")]
    selection = DataSelection(env="lbf", split="demo-train")
    models = tuple((c, selection) for c in configs)
    done = config_id(*models[0])
    with dg.instance_for_test() as instance:
        backfill_id = submit(instance, Experiment("x", ("lbf/8x8-2p-2f",), models),
                             str(tmp_path), skip_models={done}, tags=gpu_tags("1"))
        backfill = instance.get_backfill(backfill_id)
        target = backfill.asset_backfill_data.target_subset
        by_asset = {k.to_user_string(): set(v.get_partition_keys())
                    for k, v in target.partitions_subsets_by_asset_key.items()}
        assert by_asset["offline_model"] == {config_id(*models[1])}  # the evaluated one skipped
        assert by_asset["online_sable"] == by_asset["dataset_card"] == {"lbf/8x8-2p-2f"}
        # both registered, so the UI can re-run the skipped one
        assert sorted(instance.get_dynamic_partitions("model")) == sorted(
            config_id(*m) for m in models)
        assert backfill.tags["sable-lake/gpu"] == "1"
        assert backfill.tags["sable-lake/experiment"] == "x"
