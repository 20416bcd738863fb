"""lake_schema never imports JAX: the Dagster UI process, DuckDB users and the CLI import it,
and JAX would cost them seconds and a device."""

import subprocess
import sys
from pathlib import Path

CODE = """
import importlib, pkgutil, sys
import lake_schema
names = [m.name for m in pkgutil.walk_packages(lake_schema.__path__, "lake_schema.")
         if not m.name.endswith("__main__")]  # __main__ runs the CLI
for name in names:
    importlib.import_module(name)
jax = sorted(m for m in sys.modules if m == "jax" or m.startswith(("jax.", "jaxlib", "flax")))
assert not jax, jax
assert len(names) > 5, names
print(len(names))
"""


def test_importing_every_lake_schema_module_imports_no_jax():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr
