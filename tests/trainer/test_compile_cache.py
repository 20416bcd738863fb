"""The persistent compilation cache: on by default for every entry point, one switch off."""

import os
import subprocess
import sys

import pytest

PROBE = """
import {first}, {second}, jax.numpy as jnp
print(jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir)
jax.jit(lambda x: jnp.sin(x) * 3.0)(jnp.ones(7)).block_until_ready()
"""


def _probe(setting: str | None, tmp_path, jax_first: bool = False, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("JAX_") and "CACHE" in k)}  # as a user's shell has them
    env.update(JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    env.pop("SABLE_JAX_CACHE", None)
    if setting is not None:
        env["SABLE_JAX_CACHE"] = setting
    env.update(extra)
    order = ("jax", "trainer") if jax_first else ("trainer", "jax")
    probe = PROBE.format(first=order[0], second=order[1])
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.mark.parametrize("jax_first", [False, True])
def test_on_by_default_under_the_user_cache_dir(tmp_path, jax_first):
    default = tmp_path / "xdg" / "sable-lake" / "jax"
    assert _probe(None, tmp_path, jax_first) == f"True {default}"
    assert any(default.iterdir())  # the program was written there


def test_a_directory_of_ones_own_and_the_off_switch(tmp_path):
    mine = tmp_path / "mine"
    assert _probe(str(mine), tmp_path) == f"True {mine}"
    assert any(mine.iterdir())
    assert _probe("off", tmp_path).startswith("False")
    # the one switch wins over JAX's own variables (e.g. inherited from a parent process)
    assert _probe("off", tmp_path, JAX_ENABLE_COMPILATION_CACHE="true").startswith("False")
    assert not (tmp_path / "xdg").exists()
