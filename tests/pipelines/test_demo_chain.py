"""The demo chain end to end through Dagster's Python API, at a tiny budget: the README's main
job in miniature (about 3 minutes on 2 cores, most of it compiling online and offline programs
for every demo task's shape)."""

import dagster as dg

from lake_schema.duck import connect
from lake_schema.report import latest_evaluations, multi_vs_single
from lake_schema.storage import Lake
from pipelines.demo import run_demo


def test_demo_chain_materialises_end_to_end(tmp_path, monkeypatch, capsys):
    for var, sub in (("SABLE_LAKE", "lake"), ("SABLE_LAKE_MODELS", "models"),
                     ("SABLE_CHECKPOINTS", "checkpoints"), ("SABLE_LAKE_CACHE", "cache")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    online = {"total_env_steps": 4096, "num_checkpoints": 1, "episodes_per_checkpoint": 2,
              "reference_episodes": 16}  # enough that no task's reference return is 0
    offline = {"env": "lbf", "split": "demo-train", "num_updates": 2, "batch_size": 6,
               "seq_len": 5, "embed_dim": 16, "num_heads": 2, "profile": "demo"}
    instance = dg.DagsterInstance.ephemeral()
    assert run_demo(instance, online, offline, {"episodes": 2}) == 0

    con = connect(Lake(tmp_path / "lake"))
    tasks = con.execute("select count(distinct task) from episodes").fetchone()[0]
    assert tasks == 5
    assert con.execute('select count(*) from "references"').fetchone()[0] == 5
    rows = con.execute("select algorithm, split, count(*) from evaluations "
                       "group by all order by all").fetchall()
    # BC on 3 tasks and on 1 (the single-task baseline), Oryx on 3; each on the 2 test tasks
    assert rows == [("bc", "test", 4), ("bc", "train", 4), ("oryx", "test", 2),
                    ("oryx", "train", 3)]
    ratio = multi_vs_single(latest_evaluations(con))
    assert ratio["multi_tasks"].to_list() == [3] and ratio["seeds_single"].to_list() == [1]
    assert "multi-task over single-task" in capsys.readouterr().out
    assert (tmp_path / "lake" / "reports" / "report.md").exists()
    runs = instance.get_runs()  # 5 online tasks, the dataset status, 3 train + evaluate
    assert len(runs) == 9 and all(r.is_success for r in runs)
