import subprocess
import sys
from pathlib import Path

import dagster as dg

from pipelines.definitions import defs


def test_definitions_load_with_groups_jobs_and_checks():
    assert isinstance(defs, dg.Definitions)
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"build_datasets", "check_datasets", "train_and_evaluate", "refresh_report",
            "launch_experiment", "random_baselines", "maintain_lake"} <= jobs
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "random_rollouts": "lake", "dataset_status": "lake", "dataset_card": "lake",
        "online_sable": "online",
        "offline_model": "offline",
        "offline_eval_train": "offline", "offline_eval_test": "offline",
        "report": "reports",
    }
    assert graph.get(dg.AssetKey("online_sable")).partitions_def is not None
    # one partition per model: the model, its evaluations
    for asset in ("offline_model", "offline_eval_train", "offline_eval_test"):
        assert graph.get(dg.AssetKey(asset)).partitions_def.name == "model"
    checks = {key.name for key in graph.asset_check_keys}
    assert "online_checkpoints_have_rows" in checks


def test_dagster_cli_validates_the_code_location(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(Path("dagster.yaml").read_text())
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "pipelines.definitions"],
        capture_output=True, text=True, env={"DAGSTER_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Validation successful" in proc.stderr + proc.stdout


def test_loading_the_definitions_prints_no_warning():
    """What `dagster dev` shows first: the code location loads without a warning (Dagster's
    preview warning for partitioned asset checks is silenced, nothing else)."""
    proc = subprocess.run([sys.executable, "-c", "import pipelines.definitions"],
                          capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
