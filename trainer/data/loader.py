"""The Grain loader: a selection and a config in, an endless, resumable stream of batches out.

    loader = make_loader(lake, DataSelection(env="rware", split="train"), LoaderConfig())
    it = loader.iterator()                    # or loader.iterator(saved_state)
    batch = next(it)                          # Batch of numpy arrays (trainer/data/batches.py)
    state = it.get_state()                    # JSON-able; save it with the model checkpoint

Pipeline: `grain.MapDataset.range(start, ...)` of batch indices, mapped by `BatchTransform`
(plan batch b from (seed, b), gather its chunks from the memory-mapped cache, pad, shuffle,
standardise), turned into an IterDataset and, with `num_workers > 0`, prefetched by Grain
worker processes (`mp_prefetch`). Workers unpickle the source and open the memory maps
themselves.

Resume is exact because batch b is a pure function of (cache, config, seed, b): nothing
carries over from batch to batch (the balanced round-robin position is b itself). The
iterator's state is the index of the next batch plus a fingerprint of what produced it;
`set_state` rebuilds the pipeline at that index, so the next batch is the one the
uninterrupted run would have produced, whatever the worker count before and after.

Multi-host: every JAX process plans the same global batch of `batch_size` chunks and keeps
its contiguous slice (`grain.sharding.ShardByJaxProcess` gives the index and count), so
the global batch is exactly task-balanced. `device_put_batch` places a process's batch on
its devices, split along the batch axis when there are several.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import grain
import jax
import numpy as np

from lake_schema.storage import Lake
from trainer.data.balancing import BatchPlan, Planner
from trainer.data.batches import Batch, assemble_batch
from trainer.data.cache import TrainingCache, build_cache
from trainer.data.config import LoaderConfig
from trainer.data.selection import DataSelection
from trainer.data.source import ChunkSource

STATE_VERSION = 1
_ENDLESS = 2**62


def _shard_of(shard: grain.sharding.ShardOptions | None) -> tuple[int, int]:
    if shard is None:
        shard = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    return int(shard.shard_index), int(shard.shard_count)


def _shared_zeros(shape: tuple, dtype: np.dtype) -> np.ndarray:
    return grain.multiprocessing.SharedMemoryArray(shape, dtype)  # fresh shm is zero-filled


class BatchTransform(grain.transforms.Map):
    """Batch index -> this process's Batch. Picklable: Grain workers run it."""

    def __init__(self, loader: Loader):
        self.source, self.planner, self.stats = loader.source, loader.planner, loader.stats
        self.rows, self.obs_dtype = loader.rows, loader.config.numpy_obs_dtype()
        self.shared_memory = False  # set in Grain workers: outputs allocated in shm

    def map(self, batch_index: int) -> Batch:
        zeros = _shared_zeros if self.shared_memory else np.zeros
        return assemble_batch(self.source, self.planner.plan(int(batch_index)), self.stats,
                              self.rows, self.obs_dtype, zeros)


class _SharedMemoryBatches(grain.IterDataset):
    """The batch stream as handed to `mp_prefetch`. Grain calls `enable_shared_memory_output`
    on it inside each worker; the batch arrays are then built in shared memory directly,
    instead of built in private memory and copied into shared memory for the transfer."""

    def __init__(self, parent: grain.IterDataset, transform: BatchTransform):
        super().__init__(parent)
        self._transform = transform

    def __iter__(self) -> grain.DatasetIterator:
        return iter(self._parent)

    def enable_shared_memory_output(self) -> None:
        self._transform.shared_memory = True


class Loader:
    """Batches of one training cache under one LoaderConfig, for one JAX process."""

    def __init__(self, cache: TrainingCache, config: LoaderConfig | None = None,
                 shard: grain.sharding.ShardOptions | None = None):
        config = config or LoaderConfig()
        config.check_tasks(len(cache.tasks))
        self.cache, self.config = cache, config
        self.source = ChunkSource(cache, config.seq_len)
        self.stats = cache.stats
        self.shard_index, self.shard_count = _shard_of(shard)
        if config.batch_size % self.shard_count:
            raise ValueError(f"batch_size={config.batch_size} does not split evenly over "
                             f"{self.shard_count} processes")
        per = config.batch_size // self.shard_count
        self.rows = slice(self.shard_index * per, (self.shard_index + 1) * per)
        self.planner = Planner(
            mode=config.batch_mode, batch_size=config.batch_size,
            num_starts=self.source.num_starts, num_agents=self.source.num_agents,
            pad_to=config.pad_to(cache.env, self.source.num_agents),
            shuffle_agents=config.shuffle_agents, seed=config.seed,
        )

    def __repr__(self) -> str:
        return f"Loader({self.cache!r}, {self.config!r})"

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.cache.task_names

    def plan(self, batch_index: int) -> BatchPlan:
        """The global batch's composition (every process computes the same one)."""
        return self.planner.plan(batch_index)

    def batch(self, batch_index: int) -> Batch:
        """Batch `batch_index` of this process, made directly (no Grain, no prefetch)."""
        return BatchTransform(self).map(batch_index)

    def dataset(self, start: int = 0) -> grain.IterDataset:
        """The Grain pipeline of batches start, start+1, ... (endless)."""
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start={start!r} must be an integer >= 0")
        cfg = self.config
        transform = BatchTransform(self)
        ds = grain.MapDataset.range(start, _ENDLESS).map(transform)
        it = ds.to_iter_dataset(grain.ReadOptions(
            num_threads=cfg.read_threads, prefetch_buffer_size=2 * cfg.read_threads))
        if cfg.num_workers > 0:
            _absl_flags_parsed()
            it = _SharedMemoryBatches(it, transform).mp_prefetch(grain.MultiprocessingOptions(
                num_workers=cfg.num_workers, per_worker_buffer_size=cfg.worker_buffer_size))
        return it

    def fingerprint(self) -> dict:
        """What a saved iterator state is only valid for. Not the process shard: global
        batch b is the same however many processes split it, and a multi-process run saves
        one state (process 0's) that every process resumes from."""
        c = self.config
        return {"cache": self.cache.key, "seed": c.seed, "mode": c.batch_mode,
                "batch_size": c.batch_size, "seq_len": c.seq_len,
                "shuffle_agents": c.shuffle_agents, "pad_agents": c.pad_agents,
                "obs_dtype": c.obs_dtype}

    def iterator(self, state: dict | None = None) -> BatchIterator:
        it = BatchIterator(self)
        if state is not None:
            it.set_state(state)
        return it


class BatchIterator:
    """A checkpointable iterator of Batches: get_state() / set_state(state), JSON-able."""

    def __init__(self, loader: Loader, start: int = 0):
        self.loader = loader
        self._next = start
        self._it = iter(loader.dataset(start))

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        batch = next(self._it)
        self._next += 1
        return batch

    def get_state(self) -> dict:
        return {"version": STATE_VERSION, "next_batch": self._next,
                **self.loader.fingerprint()}

    def set_state(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')!r}; "
                             f"this loader reads {STATE_VERSION}")
        mine = self.loader.fingerprint()
        differ = {k: (state.get(k), v) for k, v in mine.items()
                  if state.get(k) != (list(v) if isinstance(v, tuple) else v)}
        if differ:
            raise ValueError("the saved loader state belongs to another dataset or config "
                             f"(saved, now): {differ}; resuming would not be exact")
        self.close()
        self._next = int(state["next_batch"])
        self._it = iter(self.loader.dataset(self._next))

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


def make_loader(lake: Lake, selection: DataSelection, config: LoaderConfig | None = None,
                cache_dir: str | os.PathLike | None = None,
                shard: grain.sharding.ShardOptions | None = None,
                log: Callable[[str], None] | None = None) -> Loader:
    """Validate, build (or reuse) the selection's cache, and return its Loader; a build's
    progress lines go to `log` (see `build_cache`)."""
    config = config or LoaderConfig()
    config.check_tasks(len(selection.task_names))  # before any lake I/O
    return Loader(build_cache(lake, selection, cache_dir, log=log), config, shard)


def _absl_flags_parsed() -> None:
    """Grain's worker processes read absl flags; a program that never parsed them (pytest,
    a plain script) would fail, so mark them parsed with their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


# ---------------------------------------------------------------- device placement


def batch_sharding(mesh: jax.sharding.Mesh | None = None,
                   axis: str = "data") -> jax.sharding.NamedSharding:
    """Split the leading (batch) axis over `mesh`'s `axis` (default: all devices)."""
    if mesh is None:
        mesh = jax.sharding.Mesh(np.array(jax.devices()), (axis,))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))


def device_put_batch(batch: Batch, sharding: jax.sharding.Sharding | None = None) -> Batch:
    """Put a batch on devices: as is on a single device, else split over the batch axis.

    With several processes each passes its own slice and gets a global array.
    """
    if sharding is None:
        if jax.device_count() == 1:
            return jax.device_put(batch)
        sharding = batch_sharding()
    if isinstance(sharding, jax.sharding.NamedSharding):
        spec = sharding.spec[0] if len(sharding.spec) else None
        names = (spec,) if isinstance(spec, str) else tuple(spec or ())
        parts = int(np.prod([sharding.mesh.shape[n] for n in names])) if names else 1
        local = parts // jax.process_count() if jax.process_count() > 1 else parts
        if batch.task.shape[0] % max(local, 1):
            raise ValueError(f"a batch of {batch.task.shape[0]} does not split over "
                             f"{local} devices")
    if jax.process_count() > 1:
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                            batch)
    return jax.device_put(batch, sharding)
