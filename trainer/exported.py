"""Traced programs kept on disk (`jax.export`), so a later process skips tracing and lowering.

JAX's persistent cache (`trainer.compile_cache`) skips XLA's compilation of a program seen
before, but every process still traces the Python and lowers it to StableHLO first: about 5 s
per online task on a 2-core CPU (benchmarks/RESULTS.md), most of a warm start. Here the
lowered program itself is serialised beside the persistent cache, keyed by everything that
could change it: the caller's key (task, config), the argument shapes, the JAX / jaxlib /
Jumanji / flax / optax versions, the backend, the JAX settings that change a trace (x64,
PRNG, precision, promotion) and the source of `trainer/` and `lake_schema/`
(an edit anywhere there is a new key, never a stale program). A later process deserialises it
(milliseconds), and the persistent cache then serves its compilation.

Off with the persistent cache (`SABLE_JAX_CACHE=off`): programs are traced as usual.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export

from lake_schema.storage import write_atomic
from trainer.compile_cache import persistent_cache_dir
from trainer.compiled import compiler_options

logger = logging.getLogger("trainer.exported")
_PACKAGES = ("jax", "jaxlib", "jumanji", "flax", "optax")
_SOURCES = ("trainer", "lake_schema")  # what a program can depend on in this project
# JAX settings that change what a trace computes (dtypes, random bits, precision)
_TRACE_SETTINGS = ("jax_enable_x64", "jax_threefry_partitionable", "jax_default_matmul_precision",
                   "jax_numpy_dtype_promotion", "jax_numpy_rank_promotion")


@functools.cache
def source_digest() -> str:
    """sha256 over the project's Python sources that programs are built from, and the
    versions of the packages they come from (cached: the sources do not change in a run)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in _PACKAGES:
        digest.update(f"{package}={importlib.metadata.version(package)}\n".encode())
    for folder in _SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
    """An array's (or a Python scalar's, as JAX would type it) shape and dtype."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    return jax.ShapeDtypeStruct(np.shape(x), jax.numpy.result_type(x))


def compile_exported(
    fn: Callable, args: Sequence[Any], key: str, donate_argnums: tuple[int, ...] = (),
    runs_rarely: bool = False,
) -> tuple[Callable, Any]:
    """(compiled `fn`, its abstract output) for arguments shaped like `args` (arrays or
    ShapeDtypeStructs, pytrees of them).

    The compiled callable takes and returns the same pytrees as `fn`. `key` names what the
    shapes do not (the task, the config); the rest of the store's key is computed here.
    Compiled with `trainer.compiled.compiler_options(runs_rarely)`: `runs_rarely` (an
    initialisation, called a few times per run) without LLVM's optimisation, else at -O2.
    """
    leaves, in_tree = jax.tree.flatten(tuple(args))
    avals = [_abstract(x) for x in leaves]
    donated = _flat_indices(args, donate_argnums)
    directory = persistent_cache_dir()
    path = None
    if directory is not None:
        name = hashlib.sha256("\n".join([
            key, source_digest(), jax.default_backend(), str(in_tree),
            *(f"{setting}={getattr(jax.config, setting)}" for setting in _TRACE_SETTINGS),
            ";".join(f"{a.shape}{a.dtype}" for a in avals),
        ]).encode()).hexdigest()[:40]
        path = directory / "exported" / f"{name}.bin"
    loaded = _load(path) if path is not None else None
    if loaded is None:
        loaded = _export(fn, in_tree, avals)
        if path is not None:
            _save(path, *loaded)
    exported, out_tree = loaded
    compiled = jax.jit(exported.call, donate_argnums=donated).lower(*avals).compile(
        compiler_options(runs_rarely))

    def call(*call_args: Any) -> Any:
        return jax.tree.unflatten(out_tree, compiled(*jax.tree.leaves(call_args)))

    out = jax.tree.unflatten(out_tree, [_abstract(a) for a in exported.out_avals])
    return call, out


def _flat_indices(args: Sequence[Any], argnums: tuple[int, ...]) -> tuple[int, ...]:
    """The flat leaf positions of the arguments `argnums` (donation is per leaf)."""
    sizes = [len(jax.tree.leaves(a)) for a in args]
    starts = np.cumsum([0, *sizes])
    return tuple(int(i) for n in argnums for i in range(starts[n], starts[n] + sizes[n]))


def _export(fn: Callable, in_tree: Any, avals: list) -> tuple[export.Exported, Any]:
    """Trace and lower `fn` over flat leaves; the output's tree is caught while tracing."""
    out_tree: list[Any] = []

    def flat(*leaves: Any) -> list[Any]:
        out, tree = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, leaves)))
        out_tree.append(tree)
        return out

    exported = export.export(jax.jit(flat))(*avals)
    return exported, out_tree[0]


def _load(path: Path) -> tuple[export.Exported, Any] | None:
    """The stored program, or None when there is none (or it cannot be read: it is then
    exported again and replaced)."""
    if not path.exists():
        return None
    try:
        program, out_tree = pickle.loads(path.read_bytes())
        return export.deserialize(bytearray(program)), out_tree
    except Exception as err:  # a torn or foreign file: never fatal, only slower
        logger.warning("ignoring the unreadable exported program %s (%s)", path, err)
        return None


def _save(path: Path, exported: export.Exported, out_tree: Any) -> None:
    """Written whole (two processes writing the same program each write a whole one); a
    store that cannot be written (full, read-only) only costs the next process its tracing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, pickle.dumps((bytes(exported.serialize()), out_tree)))
    except OSError as err:
        logger.warning("could not store the exported program %s (%s)", path, err)
