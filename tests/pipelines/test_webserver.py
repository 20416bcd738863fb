"""The Dagster webserver serves the project's definitions: asset graph and metadata over GraphQL."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from pipelines.assets.baselines import random_rollouts
from pipelines.resources import default_resources
from tests.helpers.dagster_ui import free_port, graphql

ROOT = Path(__file__).resolve().parents[2]

ASSET_GRAPH = """
{ assetNodes { assetKey { path } groupName isPartitioned
               partitionDefinition { name }
               assetChecksOrError { ... on AssetChecks { checks { name } } } } }
"""
LATEST_MATERIALIZATION = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 1) {
      partition
      metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }
"""




@pytest.fixture
def dagster_home(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def test_webserver_serves_asset_graph_and_materialization_metadata(dagster_home, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    lake_root = str(tmp_path / "lake")
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [random_rollouts], instance=instance, partition_key="lbf/8x8-2p-2f",
            resources=default_resources(lake_root),
            run_config={"ops": {"random_rollouts": {"config": {"episodes": 2}}}},
        )
        assert result.success

    port = free_port()
    webserver = Path(sys.executable).parent / "dagster-webserver"
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "SABLE_LAKE": lake_root}
    proc = subprocess.Popen(
        [str(webserver), "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"webserver did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)

        nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(port, ASSET_GRAPH)["assetNodes"]}
        rollouts = nodes[("random_rollouts",)]
        assert rollouts["groupName"] == "lake" and rollouts["isPartitioned"]
        partitioned = {k[0] for k, n in nodes.items() if n["isPartitioned"]}
        # the per-task assets, and the per-model ones
        assert partitioned == {"random_rollouts", "online_sable", "dataset_card",
                               "offline_model", "offline_eval_train", "offline_eval_test"}
        assert all(nodes[(k,)]["partitionDefinition"] is not None for k in partitioned)
        assert {k[0]: n["groupName"] for k, n in nodes.items()} == {
            "random_rollouts": "lake", "dataset_status": "lake", "dataset_card": "lake",
            "online_sable": "online", "offline_model": "offline",
            "offline_eval_train": "offline", "offline_eval_test": "offline",
            "report": "reports"}

        def checks(asset: str) -> set[str]:
            return {c["name"] for c in nodes[(asset,)]["assetChecksOrError"]["checks"]}

        assert checks("online_sable") == {
            "online_files_valid", "online_checkpoints_have_rows", "online_no_nan",
            "online_returns_within_bounds", "online_returns_to_go_in_value_support",
            "online_reference_present", "online_episodes_replay"}
        assert checks("offline_model") == {"offline_references_present"}
        assert checks("dataset_status") == {"recorded_datasets_complete"}

        mats = graphql(port, LATEST_MATERIALIZATION, {"path": ["random_rollouts"]})
        latest = mats["assetOrError"]["assetMaterializations"][0]
        assert latest["partition"] == "lbf/8x8-2p-2f"
        entries = {e["label"]: e.get("intValue") for e in latest["metadataEntries"]}
        assert entries["episodes"] == 2 and entries["steps"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
