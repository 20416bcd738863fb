"""Training curves as TensorBoard event files, beside the PNGs on the asset pages.

Why: researchers compare runs in TensorBoard (smoothing, overlays, filtering runs by name or
seed). Every offline model writes its metrics rows, and every online run its training and
recording curves, under `<models>/tensorboard/<run name>/`, so `make tensorboard`
(`tensorboard --logdir <models>/tensorboard`) overlays them all. Written with TensorBoard's
own event writer: no TensorFlow, and nothing here imports JAX.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainer.offline.config import model_name

TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_PORT = 6006
TENSORBOARD_URL_ENV = "SABLE_TENSORBOARD_URL"


def tensorboard_url() -> str:
    """Where the curves are served: $SABLE_TENSORBOARD_URL, else `make tensorboard`'s server
    on 127.0.0.1:6006."""
    return (os.environ.get(TENSORBOARD_URL_ENV) or f"http://127.0.0.1:{TENSORBOARD_PORT}"
            ).rstrip("/")


def model_run(cid: str, algorithm: str, num_tasks: int, seed: int) -> str:
    """An offline model's run name: its readable name and its id
    (`bc · 3 tasks · seed 0 · lbf-bc-...`)."""
    return f"{model_name(algorithm, num_tasks, seed)} · {cid}"


def online_run(task: str, run: str) -> str:
    """An online Sable run's name: `online · lbf/8x8-2p-2f · sable-seed0`."""
    return f"online · {task} · {run}"


def run_directory(models_root: str | Path, name: str) -> Path:
    """Where run `name`'s event files live: `<models>/tensorboard/<name>` (TensorBoard's run
    name is this folder's path under its logdir)."""
    return Path(models_root) / TENSORBOARD_DIR / name.replace("/", "_")


def scalars_of(row: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a metrics row as TensorBoard tags: `loss`, and a nested dict's
    entries as `task_loss/lbf/8x8-2p-2f`; a metric's `eval_` prefix becomes an `eval/`
    section, so periodic evaluations sit apart from the losses."""
    out: dict[str, float] = {}
    for key, value in row.items():
        tag = prefix + (f"eval/{key[len('eval_'):]}" if key.startswith("eval_") else key)
        if isinstance(value, Mapping):
            out.update(scalars_of(value, f"{tag}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool) \
                and math.isfinite(value):
            out[tag] = float(value)
    return out


class ScalarWriter:
    """One run's event file: `add(step, scalars)`. `fresh` starts the run's folder over (a
    resumed model rewrites its whole history, as its metrics.jsonl is rewritten)."""

    def __init__(self, directory: str | Path, fresh: bool = False) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.directory = Path(directory)
        if fresh and self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(self.directory))

    def add(self, step: int, scalars: Mapping[str, float]) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=tag, simple_value=v) for tag, v in scalars.items()]
        if values:
            self._writer.add_event(Event(wall_time=time.time(), step=int(step),
                                         summary=Summary(value=values)))

    def close(self) -> None:
        self._writer.close()
