"""JAX's persistent compilation cache, on for every entry point, without importing JAX.

A second run of the same program (a second `make demo`, the next test module, the next task
of a sweep) loads it from disk instead of compiling it again. On by default under the user's
cache directory; `SABLE_JAX_CACHE` names another directory, or `off` turns it off. Importing
`trainer` turns it on; this module imports no JAX, so configuration-only processes (the
Dagster code location) stay JAX-free.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

JAX_CACHE_ENV = "SABLE_JAX_CACHE"


def persistent_cache_dir() -> Path | None:
    """`$SABLE_JAX_CACHE`, or `<user cache>/sable-lake/jax`; None when it is `off`."""
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
    Before JAX is imported this sets the environment variables JAX reads its defaults from
    (so child processes inherit them); after, it updates JAX's config. `SABLE_JAX_CACHE` is
    the one switch: it overrides JAX's own cache variables.
    """
    directory = persistent_cache_dir()
    settings: dict[str, object] = {"jax_enable_compilation_cache": directory is not None}
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        settings.update(jax_compilation_cache_dir=str(directory),
                        jax_persistent_cache_min_compile_time_secs=0.0,
                        jax_persistent_cache_min_entry_size_bytes=0)
    jax = sys.modules.get("jax")
    for name, value in settings.items():
        if jax is not None:
            jax.config.update(name, value)
        else:
            os.environ[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return directory
