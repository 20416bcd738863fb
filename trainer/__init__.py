"""Everything JAX: environments, the Sable network, online and offline training, evaluation.

The subpackages load their modules on first use (`lazy_exports`), so that importing a
configuration module (`trainer.online.config`, `trainer.offline.config`, as the Dagster
process does to derive its configs) imports no JAX. Importing the package turns on the
persistent compilation cache (`trainer.compile_cache`) for every entry point.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from trainer.compile_cache import enable_persistent_cache

enable_persistent_cache()


def lazy_exports(package: str, modules: dict[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """A PEP 562 module `__getattr__` for `package`: the names each module defines, that
    module imported on first access of one of them."""
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
