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
# Compiler options for a program called a few times per run (an initialisation): XLA:CPU
# with LLVM at -O0 compiles it in about half the time and runs it a few times slower, which
# a program run once does not notice (benchmarks/RESULTS.md, 83f658a). XLA's own HLO
# passes (fusion, simplification) still run. Usage: `jit(f).lower(...).compile(RUNS_RARELY)`.
RUNS_RARELY = {"xla_backend_optimization_level": 0}
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


def compile_on_first_call(fn: F, runs_rarely: bool = False) -> F:
    """`jax.jit(fn)`, compiled for the arguments of its first call (later calls must match
    their shapes); `runs_rarely` compiles it with `RUNS_RARELY` on CPU. Why: jit takes no
    compiler options for a function that calls other jitted functions (the environment's),
    but a lowered one does."""
    jitted = jax.jit(fn)
    compiled: list[Any] = []

    def call(*args: Any) -> Any:
        if not compiled:
            options = RUNS_RARELY if runs_rarely and jax.default_backend() == "cpu" else None
            compiled.append(jitted.lower(*args).compile(options))
        return compiled[0](*args)

    call.compiled = compiled  # the one program, once called (tests look)
    return call  # type: ignore[return-value]


def clear() -> None:
    """Drop every cached compiled program, so their memory maps are released."""
    for clearer in _CLEARERS:
        clearer()
    jax.clear_caches()
    gc.collect()

