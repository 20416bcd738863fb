"""Writers and checks for the lake's crash and concurrency tests (and benchmarks): real
processes writing real files, killed or racing, then every reader checked.

A payload is identified by its seed: `payload(task, seed)` gives the episodes, and the
episodes table's `env_steps` column carries the seed, so a reader can tell exactly which
write it sees and check it is whole. Worker functions live here (not in the test module)
because multiprocessing's forkserver children import them by name; the forkserver preloads
this module, so starting a writer is a fork, not a fresh interpreter.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import sys
import time

import numpy as np

from lake_schema.errors import LakeConflictError
from lake_schema.reader import Selection, read_files, read_table
from lake_schema.storage import Lake, S3Options
from lake_schema.synthetic import synthetic_episodes
from lake_schema.writer import EpisodeBatch, write_episodes, write_records

EXIT_OK, EXIT_CONFLICT, EXIT_ERROR = 0, 3, 1


def context() -> mp.context.BaseContext:
    """A forkserver context with the lake modules preloaded (cheap, clean children: no
    threads of the parent's delta-rs runtime are inherited)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["lake_schema.stress"])
    return ctx


def payload(task: str, seed: int) -> EpisodeBatch:
    return synthetic_episodes(task, [2 + seed % 7, 3 + seed % 5], seed=seed)


def _lake(root: str, s3: S3Options | None) -> Lake:
    return Lake(root, s3=s3)


def write_payloads(root: str, s3: S3Options | None, task: str, run: str, checkpoint: int,
                   seeds: list[int], barrier=None, pause_s: float = 0.0) -> None:
    """Write the payloads of `seeds` to one key, one after another; exit status 0, or 3
    when the last write lost a same-key race (LakeConflictError), 1 on any other error."""
    lake = _lake(root, s3)
    if barrier is not None:
        barrier.wait()
    code = EXIT_OK
    for seed in seeds:
        quality = "low" if seed % 2 else "high"
        try:
            write_episodes(lake, task, run, checkpoint, quality, payload(task, seed),
                           env_steps=seed)
            code = EXIT_OK
        except LakeConflictError as e:
            print(f"conflict: {e}", file=sys.stderr)
            code = EXIT_CONFLICT
        except Exception as e:  # reported through the exit status
            print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(EXIT_ERROR)
        if pause_s:
            time.sleep(pause_s)
    sys.exit(code)


def evaluation(update: int) -> dict:
    return {"algorithm": "bc", "split": "test", "update": update, "episodes": 4,
            "mean_return": float(update), "std_return": 0.0, "normalised_return": 0.5,
            "reference_return": 1.0, "config": "{}", "evaluated_at": dt.datetime.now(dt.UTC)}


def write_evaluation(root: str, s3: S3Options | None, partition: dict, update: int,
                     barrier=None) -> None:
    lake = _lake(root, s3)
    if barrier is not None:
        barrier.wait()
    try:
        write_records(lake, "evaluations", partition, [evaluation(update)],
                      replace_rows={"update": update, "episodes": 4})
    except Exception as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK)


def key_seed(lake: Lake, task: str, run: str, checkpoint: int,
             as_of: dict | None = None) -> int | None:
    """The seed of the payload the key holds, checked whole through the episodes index and
    through the steps table; None when the key is absent. AssertionError when mixed."""
    env, scenario = task.split("/")
    sel = Selection(env=env, tasks=[scenario], runs=[run], checkpoints=(checkpoint, checkpoint),
                    as_of=as_of)
    eps = read_table(lake, "episodes", sel)
    if eps.num_rows == 0:
        return None
    seeds = set(eps["env_steps"].to_pylist())
    assert len(seeds) == 1, f"episodes of several writes: {seeds}"
    seed = seeds.pop()
    want = payload(task, seed)
    assert eps["length"].to_pylist() == [int(x) for x in want.lengths], "index mixed"
    files = set(eps["steps_file"].to_pylist())
    assert len(files) == 1, f"index points at several files {files}"
    through_index = read_files(lake, files, "steps", env, ["obs", "reward"])
    np.testing.assert_array_equal(through_index["reward"].to_numpy(), want.reward)
    obs = np.asarray(through_index["obs"].combine_chunks().flatten().flatten())
    np.testing.assert_array_equal(obs.reshape(want.obs.shape), want.obs)
    return seed


def steps_seed_candidates(lake: Lake, task: str, run: str, checkpoint: int,
                          seeds: list[int]) -> list[int]:
    """Which payloads the steps table alone could hold for the key (whole matches only)."""
    env, scenario = task.split("/")
    sel = Selection(env=env, tasks=[scenario], runs=[run], checkpoints=(checkpoint, checkpoint))
    steps = read_table(lake, "steps", sel, ["obs"])
    obs = np.asarray(steps["obs"].combine_chunks().flatten().flatten())
    out = []
    for s in seeds:
        want = payload(task, s).obs
        if want.size == obs.size and (want.reshape(-1) == obs).all():
            out.append(s)
    return out


def write_synthetic(root: str, task: str, run: str, chunks: list[tuple]) -> int:
    """Generate and write `(checkpoint, quality, lengths, seed, env_steps)` chunks of one
    task (the benchmark's parallel writers); returns the agent-steps written."""
    lake, total = Lake(root), 0
    for checkpoint, quality, lengths, seed, env_steps in chunks:
        batch = synthetic_episodes(task, lengths, seed=seed)
        total += write_episodes(lake, task, run, checkpoint, quality, batch,
                                env_steps=env_steps).rows * batch.obs.shape[1]
    return total
