"""The compute resource: CPU/GPU selection, validated before any compute, naming the field."""

import os
import subprocess
import sys

import dagster as dg
import jax
import pydantic
import pytest

from pipelines.assets.baselines import random_rollouts
from pipelines.resources import COMPUTE_ENV, ComputeError, ComputeResource, default_resources

HAS_GPU = any(d.platform == "gpu" for d in jax.devices())


def test_auto_uses_the_cpu_on_a_cpu_host_and_places_computations_there():
    if HAS_GPU:
        pytest.skip("this host has a GPU")
    compute = ComputeResource(platform="auto")
    assert [d.platform for d in compute.devices()] == ["cpu"] * jax.local_device_count()
    with compute.placed() as devices:
        assert jax.numpy.ones(2).devices() == {devices[0]}


def test_platform_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv(COMPUTE_ENV, "cpu")
    assert ComputeResource().platform == "cpu"
    monkeypatch.delenv(COMPUTE_ENV)
    assert ComputeResource().platform == "auto"


def test_unknown_platform_is_refused_naming_the_field():
    with pytest.raises(pydantic.ValidationError, match="platform"):
        ComputeResource(platform="tpu")
    with pytest.raises(pydantic.ValidationError, match="num_devices"):
        ComputeResource(num_devices=-1)


def test_more_devices_than_the_host_has_is_an_error():
    with pytest.raises(ComputeError, match=r"compute\.num_devices is 64"):
        ComputeResource(platform="cpu", num_devices=64).devices()


def test_a_gpu_run_on_a_cpu_host_fails_before_writing_anything(lake):
    if HAS_GPU:
        pytest.skip("this host has a GPU")
    resources = {**default_resources(lake.root), "compute": ComputeResource(platform="gpu")}
    with pytest.raises(ComputeError, match=r"compute\.platform is 'gpu' but JAX has no gpu"):
        dg.materialize([random_rollouts], partition_key="lbf/8x8-2p-2f", resources=resources,
                       run_config={"ops": {"random_rollouts": {"config": {"episodes": 2}}}})
    assert lake.find("") == []


def test_num_devices_selects_among_several_host_devices():
    """Two CPU devices forced by XLA_FLAGS (the multi-device path, tested without a GPU)."""
    code = ("from pipelines.resources import ComputeResource as C; "
            "print(len(C(platform='cpu').devices()), len(C(platform='cpu', num_devices=1)"
            ".devices()))")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["2", "1"]
