"""In-memory caches of compiled XLA programs: small, and droppable all at once (on disk, JAX's
persistent cache keeps them across processes: `trainer.compile_cache`).

Compiled programs are cached so that runs in one process (a sweep, the tests) share
compilation. But every XLA:CPU executable maps its code into thousands of memory regions,
Linux caps a process at `vm.max_map_count` (65,530 by default), and XLA aborts the process
when a compilation cannot map more. So each cache is a small LRU, and `clear()` drops every
compiled program (ours and JAX's), e.g. between test modules.
"""

import functools
import gc
from collections.abc import Callable
from typing import Any, TypeVar

import jax

F = TypeVar("F", bound=Callable[..., Any])
# XLA:CPU's compiler options (`compiler_options`), by how often a program runs. XLA's own HLO
# passes (fusion, simplification) run at every level; the level is LLVM's.
# A program called a few times per run (an initialisation, an evaluation), or one whose
# calls do microseconds of work (one environment's step, as the replay drives it): at -O0
# it compiles in about half the time and runs a few times slower, which such a program does
# not notice (benchmarks/RESULTS.md, 83f658a).
RUNS_RARELY = {"xla_backend_optimization_level": 0}
# Every other program (a training update, an environment's step): XLA's default is -O3, and
# at -O2 online Sable's programs compile in 4/5 of the CPU time and train as fast
# (benchmarks/RESULTS.md, 2026-12-07).
RUNS_OFTEN = {"xla_backend_optimization_level": 2}
_CLEARERS: list[Callable[[], None]] = []


def on_clear(clearer: Callable[[], None]) -> None:
    """Register a cache's clear function with `clear`."""
    _CLEARERS.append(clearer)


def compiled_cache(maxsize: int) -> Callable[[F], F]:
    """`functools.lru_cache(maxsize)` for functions that build compiled programs."""

    def wrap(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        on_clear(cached.cache_clear)
        return cached  # type: ignore[return-value]

    return wrap


def compiler_options(runs_rarely: bool = False) -> dict[str, int] | None:
    """The options a program is compiled with: on CPU `RUNS_RARELY` for one called a few
    times per run, else `RUNS_OFTEN`; on other backends XLA's defaults (None). For
    `jax.jit(f, compiler_options=...)` or `jax.jit(f).lower(...).compile(...)`."""
    if jax.default_backend() != "cpu":
        return None
    return RUNS_RARELY if runs_rarely else RUNS_OFTEN


def compile_on_first_call(fn: F, runs_rarely: bool = False) -> F:
    """`jax.jit(fn)`, compiled for the arguments of its first call (later calls must match
    their shapes) with `compiler_options(runs_rarely)`."""
    jitted = jax.jit(fn)
    compiled: list[Any] = []

    def call(*args: Any) -> Any:
        if not compiled:
            compiled.append(jitted.lower(*args).compile(compiler_options(runs_rarely)))
        return compiled[0](*args)

    call.compiled = compiled  # the one program, once called (tests look)
    return call  # type: ignore[return-value]


def clear() -> None:
    """Drop every cached compiled program, so their memory maps are released."""
    for clearer in _CLEARERS:
        clearer()
    jax.clear_caches()
    gc.collect()

