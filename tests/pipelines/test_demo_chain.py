"""The demo chain end to end, at a tiny budget: the README's main job in miniature, run as
`make demo` runs it (its own process, the Dagster instance of $DAGSTER_HOME with the
project's dagster.yaml, one backfill through the instance's run queue: its daemon started for
the demo, the task datasets and then the models two at a time, each run a process of its
own). About 3-6 minutes on 2 cores, most of it compiling online and offline programs for
every demo task's shape."""

import json
import os
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import dagster as dg
import yaml

from lake_schema.catalogue import split_tasks
from lake_schema.duck import connect
from lake_schema.storage import Lake
from pipelines.demo import OFFLINE as DEMO_OFFLINE
from pipelines.demo import demo_experiment
from pipelines.launch import partition_of
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
            f"{json.dumps(ONLINE)}, {json.dumps(OFFLINE)}, {{'episodes': 2}}))")
    done = subprocess.run([sys.executable, "-c", demo], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=1800)
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
        (backfill,) = instance.get_backfills()
    # 5 online tasks (each with its card), the dataset status, 3 models (each with its
    # evaluation on its train tasks, and on the held-out ones in the same run or, when the
    # held-out datasets came in later, in a run of its own), the report: every one a run of
    # the demo's backfill
    assert 10 <= len(runs) <= 13 and all(r.dagster_run.is_success for r in runs)
    assert {r.dagster_run.tags["dagster/backfill"] for r in runs} == {backfill.backfill_id}
    assert all(r.dagster_run.tags["sable-lake/experiment"] == "demo" for r in runs)

    def selecting(asset):
        return [r for r in runs if dg.AssetKey(asset) in (r.dagster_run.asset_selection or ())]

    # the datasets queued training tasks first, in catalogue order, so models start early
    train = [t.name for t in split_tasks("lbf", "demo-train")]
    held_out = [t.name for t in split_tasks("lbf", "demo-test")]
    online = {partition_of(r.dagster_run): r
              for r in sorted(selecting("online_sable"), key=lambda r: r.storage_id)}
    assert list(online) == train + held_out
    # the queue's limit (dagster.yaml) holds, and is used: runs overlap
    limit = yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_coordinator"]["config"][
        "max_concurrent_runs"]
    spans = [(r.start_time, r.end_time) for r in runs]
    assert not any(max(s[0] for s in group) < min(s[1] for s in group)
                   for group in combinations(spans, limit + 1))
    assert any(max(a[0], b[0]) < min(a[1], b[1]) for a, b in combinations(spans, 2))
    # each model's run (the partition: its config id) trains it and evaluates it on its
    # training tasks once their datasets are in the lake, and says what it trained; its
    # held-out evaluation runs once the held-out datasets are in too
    expected = {config_id(c, s) for c, s in demo_experiment(ONLINE, OFFLINE).models}
    models = {partition_of(r.dagster_run): r for r in selecting("offline_model")}
    assert set(models) == expected
    train_end = max(online[t].end_time for t in train)
    held_out_end = max(online[t].end_time for t in held_out)
    for cid, r in models.items():
        tags = r.dagster_run.tags
        assert {"offline_model", "offline_eval_train"} <= {
            k.to_user_string() for k in r.dagster_run.asset_selection}
        assert tags["sable-lake/model"] == cid and tags["sable-lake/seed"] == "0"
        assert tags["sable-lake/algorithm"] == cid.split("-")[1]
        assert r.start_time >= train_end
        (held_out_run,) = [e for e in selecting("offline_eval_test")
                           if partition_of(e.dagster_run) == cid]
        assert held_out_run.start_time >= max(held_out_end, r.start_time)
    assert sorted(r.dagster_run.tags["sable-lake/tasks"] for r in models.values()) == [
        "1", "3", "3"]
    (report,) = selecting("report")
    assert report.start_time >= max(r.end_time for r in selecting("offline_model")
                                    + selecting("offline_eval_test"))
