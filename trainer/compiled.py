"""Caches of compiled XLA programs: on disk across processes, small and droppable in memory.

On disk: JAX's persistent compilation cache, so a second run of the same program (a second
`make demo`, the next test module, the next task of a sweep) loads it instead of compiling it
again. It is on by default under the user's cache directory; `SABLE_JAX_CACHE` names another
directory, or `off` turns it off. Every entry point gets it by importing `trainer`.

In memory: compiled programs are cached so that runs in one process (a sweep, the tests) share
compilation. But every XLA:CPU executable maps its code into thousands of memory regions,
Linux caps a process at `vm.max_map_count` (65,530 by default), and XLA aborts the process
when a compilation cannot map more. So each cache is a small LRU, and `clear()` drops every
compiled program (ours and JAX's), e.g. between test modules.
"""

import functools
import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jax

JAX_CACHE_ENV = "SABLE_JAX_CACHE"
F = TypeVar("F", bound=Callable[..., Any])
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


def clear() -> None:
    """Drop every cached compiled program, so their memory maps are released."""
    for clearer in _CLEARERS:
        clearer()
    jax.clear_caches()
    gc.collect()


def persistent_cache_dir() -> Path | None:
    """Where compiled programs persist: `$SABLE_JAX_CACHE`, or `<user cache>/sable-lake/jax`;
    None when `SABLE_JAX_CACHE=off`."""
    setting = os.environ.get(JAX_CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    if setting:
        return Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "sable-lake" / "jax"


def enable_persistent_cache() -> Path | None:
    """Point JAX's persistent compilation cache at `persistent_cache_dir()`.

    Every program is cached, however small or quick to compile: on a 2-core CPU the many
    small programs (initialisation, evaluation steps) add up to tens of seconds per run.
    """
    directory = persistent_cache_dir()
    if directory is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
