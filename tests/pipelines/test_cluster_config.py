"""The documented cluster instance (docs/cluster/dagster.yaml: PostgreSQL storage, the queue,
Kubernetes' run launcher) is a configuration Dagster accepts, and a run tagged for a GPU
(`pipelines.launch.gpu_tags`) asks Kubernetes for exactly one. What this machine cannot do
(start a Kubernetes job) is not tested."""

import shutil
from pathlib import Path

import yaml

from pipelines.launch import GPU_TAG, gpu_tags

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "docs" / "cluster" / "dagster.yaml"


def _class_config_errors(entry: dict) -> list[str]:
    """The errors of a `{module, class, config}` entry against its class's own schema."""
    import importlib

    from dagster._config import process_config, resolve_to_config_type

    cls = getattr(importlib.import_module(entry["module"]), entry["class"])
    result = process_config(resolve_to_config_type(cls.config_type()), entry.get("config", {}))
    return [e.message for e in result.errors or ()]


def test_the_cluster_instance_config_is_valid(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(CLUSTER, tmp_path / "dagster.yaml")
    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(var, "x")
    config, _ = dagster_instance_config(str(tmp_path))  # the instance schema
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    doc = yaml.safe_load(CLUSTER.read_text())
    for section in ("run_launcher", "run_coordinator"):  # each class's own schema
        assert _class_config_errors(doc[section]) == [], section
    # a wrong field is refused, naming it
    doc["run_launcher"]["config"]["job_namespaces"] = "typo"
    assert any("job_namespaces" in e for e in _class_config_errors(doc["run_launcher"]))


def test_a_gpu_run_requests_one_gpu_and_one_queue_slot():
    from dagster_k8s.job import get_user_defined_k8s_config

    tags = gpu_tags("3")
    limits = get_user_defined_k8s_config(tags).container_config["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "1"}
    assert tags[GPU_TAG] == "3"
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    (limit,) = local["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert limit == {"key": GPU_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
