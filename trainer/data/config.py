"""How the loader samples and shapes batches: `LoaderConfig`, apart from the loader so that
configuration (and the Dagster configs derived from it) imports no JAX or Grain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lake_schema.catalogue import ENVS
from trainer.data.balancing import MODES
from trainer.knobs import check_knobs, knob

PAD_MODES = ("env", "selection", "batch")
OBS_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class BatchKnobs:
    """The batch knobs a training configuration sets, declared once: `OfflineConfig` inherits
    them and hands them to the loader (`OfflineConfig.loader_config`)."""

    batch_size: int = knob(32, ge=1, program=False, doc=(
        "B chunks per update, the global batch of all processes together (paper: 480)"))
    seq_len: int = knob(20, ge=1, doc="T steps per chunk (paper: 20)")
    batch_mode: str = knob("balanced", choices=MODES, program=False, doc=(
        "switch: the task balancing of the batches: `balanced` (paper), `single_task` (the "
        "ablation: each batch from one random task) or `proportional`"))
    pad_agents: str | int = knob("selection", choices=PAD_MODES, ge=1, program=False, doc=(
        "agent slots per batch: `selection` (the selected tasks' largest team), `env` (the "
        "environment's maximum: the paper profile), `batch` (each batch's largest team; the "
        "loader only) or a count. With agent masking, BC's and CQL's losses do not depend on "
        "the count (an update at 3 slots is about 3x faster than at lbf's 8); Oryx's batch "
        "softmax compares the entries that share a slot, so its weights do "
        "(benchmarks/RESULTS.md, 1bdd043)"))
    num_workers: int = knob(0, ge=0, model=False, doc=(
        "Grain worker processes for the loader (0: batches made in the calling thread)"))


@dataclass(frozen=True)
class LoaderConfig(BatchKnobs):
    """How batches are sampled and shaped; validated on construction."""

    seed: int = knob(0, ge=0, doc="the sampling seed")
    shuffle_agents: bool = knob(True, doc="per-sample agent order, every batch")
    obs_dtype: str = knob("float32", choices=OBS_DTYPES, doc="observations as float32 or bfloat16")
    worker_buffer_size: int = knob(2, ge=1, doc="batches each worker prepares ahead")
    read_threads: int = knob(0, ge=0, doc="Grain prefetch threads when num_workers == 0")

    def __post_init__(self):
        check_knobs(self)

    def check_tasks(self, num_tasks: int) -> None:
        """B < M is an error for task-balanced batches."""
        if self.batch_mode == "balanced" and self.batch_size < num_tasks:
            raise ValueError(
                f"batch_size={self.batch_size} is smaller than the {num_tasks} selected tasks: "
                "task-balanced batches need batch_size >= number of tasks")

    def pad_to(self, env: str, num_agents: tuple[int, ...]) -> int | None:
        """The fixed agent-slot count, or None for the batch's maximum."""
        if self.pad_agents == "batch":
            return None
        if self.pad_agents == "env":
            return ENVS[env].max_agents
        if self.pad_agents == "selection":
            return max(num_agents)
        if self.pad_agents < max(num_agents):
            raise ValueError(f"pad_agents={self.pad_agents} is fewer than the {max(num_agents)} "
                             "agents of the largest selected task")
        return int(self.pad_agents)

    def numpy_obs_dtype(self) -> np.dtype:
        if self.obs_dtype == "bfloat16":
            import jax  # only here: configuration itself imports no JAX

            return np.dtype(jax.numpy.bfloat16)
        return np.dtype(np.float32)
