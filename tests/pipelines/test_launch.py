"""Experiments through the instance's run queue (`pipelines.launch`): a backfill submitted to
a persistent instance runs under a daemon started for the block and stopped after, `wait`
reports each run as it ends with a one-line error for a failed one, and what `submit` queues
is the experiment's datasets, models and report, nothing a second launch need not run."""

import json
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake
from lake_schema.testing import fill_trainable_lake
from pipelines.assets.offline import OfflineModelConfig
from pipelines.experiments import Experiment
from pipelines.launch import (
    LOCATION_NAME,
    code_server,
    daemon_running,
    gpu_tags,
    partition_of,
    queue_daemon,
    serving,
    submit,
    wait,
)
from trainer.data.selection import DataSelection
from trainer.offline.config import OfflineConfig, config_id

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["lbf/8x8-2p-2f", "lbf/10x10-3p-3f"]  # in the lbf training splits
HELD_OUT = "lbf/12x12-4p-5f"  # in the lbf held-out splits only


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
        # launched through the block's code server, under the name `dagster dev -m
        # pipelines.definitions` (`make ui`) gives the location: the UI can re-execute them
        assert {r.dagster_run.remote_job_origin.location_name for r in runs} == {
            LOCATION_NAME}
    assert daemon.poll() is not None  # the daemon started for the block ended with it


def test_the_code_server_serves_for_the_block_and_ends_with_it(tmp_path):
    with open(tmp_path / "server.log", "wb") as out, code_server(out) as workspace:
        (location,) = json.loads(workspace.read_text())["load_from"]
        socket = Path(location["grpc_server"]["socket"])
        assert location["grpc_server"]["location_name"] == LOCATION_NAME
        assert serving(socket)
    assert not socket.exists()
    left = subprocess.run(["pgrep", "-f", str(socket)], capture_output=True, text=True)
    assert not left.stdout.split()  # its process ended with the block


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


def test_a_model_waits_for_its_training_data_not_for_the_held_out_datasets(tmp_path,
                                                                            monkeypatch):
    """A model trains, and is evaluated on its training tasks, without waiting for the
    held-out datasets being recorded beside it (here one that fails); its held-out evaluation
    waits for them, and so never runs."""
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    for var, value in (("DAGSTER_HOME", home), ("SABLE_LAKE", tmp_path / "lake"),
                       ("SABLE_LAKE_CACHE", tmp_path / "cache"),
                       ("SABLE_CHECKPOINTS", tmp_path / "checkpoints")):
        monkeypatch.setenv(var, str(value))
    lake = Lake(tmp_path / "lake")
    fill_trainable_lake(lake, TRAIN)
    model = OfflineModelConfig(env="lbf", algorithm="bc", tasks=TRAIN, embed_dim=16,
                               num_heads=2, num_updates=2, batch_size=8, seq_len=5).build()
    evaluation = {"episodes": 2, "frames": 0}
    experiment = Experiment(
        "held-out data fails", (HELD_OUT,), (model,), ops={
            "online_sable": {"total_env_steps": 1},  # too small for one update: it fails
            "offline_eval_train": evaluation,
            "offline_eval_test": {**evaluation, "tasks": [HELD_OUT]}})
    with dg.DagsterInstance.get() as instance:
        backfill = submit(instance, experiment, str(tmp_path / "models"))
        with queue_daemon(instance):
            finished = {f.what.split(" (")[0]: f for f in wait(instance, backfill)}
        runs = [r.dagster_run for r in instance.get_run_records()]
    cid = config_id(*model)
    assert not finished[f"online Sable -> lake {HELD_OUT}"].success
    assert finished[f"model {cid}"].success, finished[f"model {cid}"].error
    (model_run,) = [r for r in runs if partition_of(r) == cid]  # no held-out evaluation run
    assert {k.to_user_string() for k in model_run.asset_selection} == {
        "offline_model", "offline_eval_train"}
    evaluated = read_table(lake, "evaluations", Selection(env="lbf")).to_pylist()
    assert {(r["model"], r["split"]) for r in evaluated} == {(cid, "train")}


def test_a_model_that_would_not_wait_for_a_dataset_it_reads_is_refused(tmp_path):
    """Training on a task only a held-out split lists, while recording that task: the model's
    run would not wait for it, so nothing is submitted or registered."""
    model = OfflineModelConfig(env="lbf", algorithm="bc", tasks=[HELD_OUT]).build()
    with dg.instance_for_test() as instance:
        with pytest.raises(ValueError, match=(
                f"model bc · 1 task · seed 0: offline_model reads {HELD_OUT}, which this "
                "experiment records, but waits only for the datasets of tasks a split trains "
                f"on; record {HELD_OUT} in a launch of its own first")):
            submit(instance, Experiment("x", (HELD_OUT,), (model,)), str(tmp_path))
        assert instance.get_dynamic_partitions("model") == []
        assert not instance.get_backfills()
        # recorded before (not in this experiment): nothing to wait for, so it is submitted
        submit(instance, Experiment("x", (), (model,)), str(tmp_path))
