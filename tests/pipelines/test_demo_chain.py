"""The demo chain end to end, at a tiny budget: the README's main job in miniature, run as
`make demo` runs it (its own process, the Dagster instance of $DAGSTER_HOME with the
project's dagster.yaml, the task datasets and then the models two at a time, each run in a
process of its own). About 2-5 minutes on 2 cores, most of it compiling online and offline
programs for every demo task's shape. (Inside pytest's own process, in the full suite under
pytest-xdist, pytest's output capture found its file closed after the runs side by side;
the cause was not found, and a process of its own is how the demo runs anyway.)"""

import json
import os
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import dagster as dg

from lake_schema.catalogue import split_tasks
from lake_schema.duck import connect
from lake_schema.storage import Lake
from pipelines.assets.offline import OfflineModelConfig
from pipelines.demo import OFFLINE as DEMO_OFFLINE
from trainer.analysis import latest_evaluations, task_scaling_gain
from trainer.offline.config import config_id

ROOT = Path(__file__).resolve().parents[2]
# 16 reference episodes: enough that no task's reference return is 0. The demo profile's lbf
# network/PPO settings are the other online tests' (32 environments), so lbf/8x8-2p-2f
# compiles once per session.
ONLINE = {"total_env_steps": 4096, "num_checkpoints": 1, "episodes_per_checkpoint": 2,
          "reference_episodes": 16}
# The demo's own offline settings (its agent padding included), at a tiny budget.
OFFLINE = {**DEMO_OFFLINE, "num_updates": 2, "batch_size": 6, "seq_len": 5, "embed_dim": 16,
           "num_heads": 2}


def test_demo_chain_materialises_end_to_end(tmp_path, monkeypatch):
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    for var, sub in (("SABLE_LAKE", "lake"), ("SABLE_LAKE_MODELS", "models"),
                     ("SABLE_CHECKPOINTS", "checkpoints"), ("SABLE_LAKE_CACHE", "cache")):
        env[var] = str(tmp_path / sub)
    demo = (f"import sys; from pipelines.demo import run_demo; sys.exit(run_demo(None, "
            f"{json.dumps(ONLINE)}, {json.dumps(OFFLINE)}, {{'episodes': 2}}, workers=2))")
    done = subprocess.run([sys.executable, "-c", demo], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "multi-task over single-task on the held-out tasks, at the demo's scale" in done.stdout
    assert "95% interval, per-episode s.e. (1 seed), 1 seed(s)" in done.stdout

    con = connect(Lake(tmp_path / "lake"))
    tasks = con.execute("select count(distinct task) from episodes").fetchone()[0]
    assert tasks == 5
    assert con.execute('select count(*) from "references"').fetchone()[0] == 5
    rows = con.execute("select algorithm, split, count(*) from evaluations "
                       "group by all order by all").fetchall()
    # BC on 3 tasks and on 1 (the single-task baseline), Oryx on 3; each on the 2 test tasks
    assert rows == [("bc", "test", 4), ("bc", "train", 4), ("oryx", "test", 2),
                    ("oryx", "train", 3)]
    gain = task_scaling_gain(latest_evaluations(con))
    assert gain["m"].to_list() == [3] and gain["seeds"].to_list() == [1]
    assert (tmp_path / "lake" / "reports" / "report.md").exists()
    # padded to the selection's largest team: 3 agents (demo-train), 2 (8x8-2p-2f alone)
    pads = [json.loads(p.read_text())["pad_to"] for p in (tmp_path / "models").rglob(
        "model.json")]
    assert sorted(pads) == [2, 3, 3]

    monkeypatch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml reads it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_run_records()
    # 5 online tasks, the dataset status, 3 models (with their train-task evaluations), their
    # 3 held-out evaluations, the report
    assert len(runs) == 13 and all(r.dagster_run.is_success for r in runs)
    online = {r.dagster_run.tags["dagster/partition"]: r for r in runs
              if r.dagster_run.job_name == "build_datasets"}
    assert len(online) == 5
    online_runs = sorted(online.values(), key=lambda r: r.start_time)
    # two at a time: a run started before the one before it ended
    assert any(b.start_time < a.end_time for a, b in pairwise(online_runs))

    # each run started once what it reads existed: a model after its train tasks' datasets,
    # its held-out evaluation after the model and every dataset (the held-out references)
    def selecting(asset):
        return [r for r in runs if dg.AssetKey(asset) in (r.dagster_run.asset_selection or ())]

    models = {config_id(*OfflineModelConfig(**r.dagster_run.run_config["ops"][
        "offline_model"]["config"]).build()): r for r in selecting("offline_model")}
    held_out = selecting("offline_eval_test")
    assert len(models) == 3 and len(held_out) == 3
    # every run says what it is: the experiment, and a model's run what it trained
    assert all(r.dagster_run.tags.get("sable-lake/experiment") == "demo" for r in runs
               if r.dagster_run.job_name != "train_and_evaluate" or r in held_out
               or r in models.values())
    for cid, r in models.items():
        tags = r.dagster_run.tags
        assert tags["sable-lake/model"] == cid and tags["sable-lake/seed"] == "0"
        assert tags["sable-lake/algorithm"] == cid.split("-")[1]
    assert sorted(r.dagster_run.tags["sable-lake/tasks"] for r in models.values()) == [
        "1", "3", "3"]
    assert {r.dagster_run.tags["sable-lake/model"] for r in held_out} == set(models)
    train_end = max(online[t.name].end_time for t in split_tasks("lbf", "demo-train"))
    assert all(r.start_time >= train_end for r in models.values())
    for r in held_out:
        model = models[r.dagster_run.run_config["ops"]["offline_eval_test"]["config"]["model"]]
        assert r.start_time >= max(model.end_time, *(o.end_time for o in online.values()))
