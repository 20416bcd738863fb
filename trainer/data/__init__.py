"""The Grain loader: dataset selection, training cache, task-balanced batches.

from trainer.data import DataSelection, LoaderConfig, make_loader
loader = make_loader(lake, DataSelection(env="lbf", split="demo-train"), LoaderConfig())
for batch in loader.iterator(): ...
"""

from trainer import lazy_exports

_MODULES = {
    "trainer.data.balancing": ("BatchPlan", "Planner", "balanced_counts", "valid_starts"),
    "trainer.data.batches": ("Batch", "PAD_LEGAL_ACTION", "assemble_batch"),
    "trainer.data.cache": ("TrainingCache", "build_cache", "default_cache_dir"),
    "trainer.data.config": ("LoaderConfig",),
    "trainer.data.loader": (
        "BatchIterator", "Loader", "batch_sharding", "device_put_batch", "make_loader",
    ),
    "trainer.data.selection": ("DataSelection", "SelectionError", "resolve_selection"),
    "trainer.data.source": ("Chunk", "ChunkSource"),
    "trainer.data.stats": ("ObsStats",),
}
__all__ = sorted(name for names in _MODULES.values() for name in names)

__getattr__ = lazy_exports(__name__, _MODULES)
