"""The Grain loader: dataset selection, training cache, task-balanced batches.

    from trainer.data import DataSelection, LoaderConfig, make_loader
    loader = make_loader(lake, DataSelection(env="lbf", split="demo-train"), LoaderConfig())
    for batch in loader.iterator(): ...
"""

from trainer.data.balancing import BatchPlan, Planner, balanced_counts, valid_starts
from trainer.data.batches import PAD_LEGAL_ACTION, Batch, assemble_batch
from trainer.data.cache import TrainingCache, build_cache, default_cache_dir
from trainer.data.loader import (
    BatchIterator,
    Loader,
    LoaderConfig,
    batch_sharding,
    device_put_batch,
    make_loader,
)
from trainer.data.selection import DataSelection, SelectionError, resolve_selection
from trainer.data.source import Chunk, ChunkSource
from trainer.data.stats import ObsStats

__all__ = [
    "PAD_LEGAL_ACTION",
    "Batch",
    "BatchIterator",
    "BatchPlan",
    "Chunk",
    "ChunkSource",
    "DataSelection",
    "Loader",
    "LoaderConfig",
    "ObsStats",
    "Planner",
    "SelectionError",
    "TrainingCache",
    "assemble_batch",
    "balanced_counts",
    "batch_sharding",
    "build_cache",
    "default_cache_dir",
    "device_put_batch",
    "make_loader",
    "resolve_selection",
    "valid_starts",
]
