"""Everything JAX: environments, the Sable network, online and offline training, evaluation.

Importing the package turns on the persistent compilation cache (see `trainer.compiled`), so
every entry point (CLIs, Dagster runs, tests, benchmarks) reuses programs compiled before.
"""

from trainer.compiled import enable_persistent_cache

enable_persistent_cache()
