"""Compiler options by how often a program runs (`trainer.compiled.compiler_options`)."""

import jax
import jax.numpy as jnp
import numpy as np

from trainer.compiled import RUNS_OFTEN, RUNS_RARELY, compiler_options


def test_cpu_programs_compile_at_the_llvm_level_of_how_often_they_run():
    assert jax.default_backend() == "cpu"
    assert compiler_options() == RUNS_OFTEN == {"xla_backend_optimization_level": 2}
    assert compiler_options(runs_rarely=True) == RUNS_RARELY == {
        "xla_backend_optimization_level": 0}


def test_both_levels_compute_what_xlas_default_computes():
    def f(x):
        return jnp.cumsum(jnp.sin(x) * x) / (1.0 + jnp.arange(x.shape[0]))

    x = jnp.linspace(0.0, 3.0, 101)
    default = np.asarray(jax.jit(f).lower(x).compile()(x))
    for runs_rarely in (False, True):
        mine = jax.jit(f).lower(x).compile(compiler_options(runs_rarely))(x)
        np.testing.assert_allclose(mine, default, rtol=1e-6)
