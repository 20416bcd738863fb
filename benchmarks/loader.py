"""Loader benchmark: cache build, batches/s with 0/1/2 Grain workers, in-memory bound, RSS.

On the RWARE lake of `benchmarks/lake_io.py` (15 train tasks, 2 to 32 agents, 20M
agent-steps by default), B=480, T=20:
- cache build time (from the lake's Parquet) and the reuse check's time;
- batches/s through the Grain pipeline with 0, 1 and 2 worker processes, against an
  in-memory gather of the identical batches in the same run (the same assembly code on
  arrays loaded into RAM: the upper bound, checked equal), plus the bare numpy gather of
  the observations alone (no padding, shuffling or standardisation) for scale;
- peak RSS growth while iterating against the cache size. The cache is memory-mapped, so
  the pages batches touch count in RSS as file-backed, shared, reclaimable page cache
  (`RssFile`; bounded by the cache size, evicted under memory pressure); the process's
  own memory is `RssAnon`. The target is checked on RssAnon; both are reported.
Two configurations: all 15 tasks padded to the environment's 32 agents, and the tasks with
at most 8 agents padded to 8 (the target's N_max=8).

    python benchmarks/lake_io.py                       # make the 20M agent-step lake first
    python benchmarks/loader.py                        # full run (minutes)
    python benchmarks/loader.py --root /tmp/small --batches 20 --workers 0   # smoke run

Prints a markdown section; --out also writes it (for benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from lake_schema.catalogue import split_tasks
from lake_schema.reader import Selection, list_files
from lake_schema.storage import Lake
from trainer.data import DataSelection, Loader, LoaderConfig, build_cache
from trainer.data.cache import cache_path_for
from trainer.data.source import ChunkSource

ENV = "rware"
TARGET_AGENT_STEPS = 20_000_000
MIN_BATCHES_PER_S = 100.0  # with 0 workers, N_max = 8
MIN_SHARE_OF_IN_MEMORY = 0.25
MAX_RSS_SHARE = 0.25


def rss_mib() -> dict[str, float]:
    """Resident memory of this process and its children (Grain workers), by kind."""
    out = {"anon": 0.0, "file": 0.0}
    procs = [psutil.Process()]
    procs += procs[0].children(recursive=True)
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                        key = "anon" if line.startswith("RssAnon") else "file"
                        out[key] += int(line.split()[1]) / 1024
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


@dataclass
class Rate:
    batches_per_s: float
    peak: dict[str, float]


def measure(next_batch, n: int, warmup: int, base: dict[str, float]) -> Rate:
    for _ in range(warmup):
        next_batch()
    peak = dict(base)
    t0 = time.perf_counter()
    for i in range(n):
        next_batch()
        if i % 10 == 0:
            now = rss_mib()
            peak = {k: max(peak[k], now[k]) for k in peak}
    dt = time.perf_counter() - t0
    return Rate(n / dt, {k: peak[k] - base[k] for k in peak})


def bench_config(cache, label: str, pad: str, args) -> dict:
    cfg = dict(batch_size=args.batch_size, seq_len=args.seq_len, pad_agents=pad, seed=0)
    result: dict = {"label": label, "tasks": len(cache.tasks)}
    base = rss_mib()
    for w in args.workers:
        loader = Loader(cache, LoaderConfig(**cfg, num_workers=w))
        it = loader.iterator()
        r = measure(lambda it=it: next(it), args.batches, args.warmup + (2 if w else 0), base)
        it.close()
        result[f"workers={w}"] = r
        del it
    # identical batches from RAM: the same planner and assembly, arrays loaded
    mem = Loader(cache, LoaderConfig(**cfg))
    direct = Loader(cache, LoaderConfig(**cfg))
    mem.source = ChunkSource(cache, args.seq_len, in_memory=True)
    first = mem.batch(0)
    same = all(np.array_equal(a, b) for a, b in zip(first, direct.batch(0), strict=True))
    counter = iter(range(10**9))
    result["in_memory"] = measure(lambda: mem.batch(next(counter)), args.batches,
                                  args.warmup, rss_mib())
    result["identical"] = same
    arrays = mem.source.arrays
    counter = iter(range(10**9))

    def bare():
        plan = mem.plan(next(counter))
        for t in np.unique(plan.task):
            starts = plan.start[plan.task == t]
            _ = arrays[t]["obs"][starts[:, None] + np.arange(args.seq_len)]

    result["bare_gather"] = measure(bare, args.batches, args.warmup, rss_mib())
    result["n_max"] = first.obs.shape[2]
    result["batch_mib"] = sum(x.nbytes for x in first) / 2**20
    return result


def report(args, lake_steps, build_s, reuse_s, caches, results) -> str:
    lines = [
        "## Loader (benchmarks/loader.py)", "",
        f"`python benchmarks/loader.py {' '.join(sys.argv[1:])}`".rstrip(), "",
        f"Lake: {args.root} ({lake_steps / 1e6:.2f}M agent-steps in the {ENV} train tasks"
        + ("" if lake_steps >= TARGET_AGENT_STEPS else
           f"; below the issue's {TARGET_AGENT_STEPS / 1e6:.0f}M: a smoke run") + ").",
        f"B={args.batch_size}, T={args.seq_len}, {args.batches} timed batches after "
        f"{args.warmup} warm-up; machine: {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB.", "",
        f"Cache build (15 tasks, from Parquet): {build_s:.1f} s for "
        f"{caches[0].nbytes() / 2**20:.0f} MiB; reuse check (unchanged lake): {reuse_s:.2f} s.",
        "",
        "| config | N_max | batch MiB | " + " | ".join(f"{w} workers b/s" for w in args.workers)
        + " | in-memory b/s | bare obs gather b/s | 0 workers / in-memory | RSS growth, 0 workers: "
        "anon (file-backed) MiB | cache MiB |",
        "|---" * (8 + len(args.workers)) + "|",
    ]
    checks = []
    for res, cache in zip(results, caches, strict=True):
        size = cache.nbytes() / 2**20
        rates = " | ".join(f"{res[f'workers={w}'].batches_per_s:.1f}" for w in args.workers)
        mem = res["in_memory"].batches_per_s
        zero = res.get("workers=0")
        share = zero.batches_per_s / mem if zero else float("nan")
        peak = (zero or res["in_memory"]).peak  # workers add their own interpreters' memory
        anon, file_ = peak["anon"], peak["file"]
        lines.append(
            f"| {res['label']} ({res['tasks']} tasks) | {res['n_max']} | "
            f"{res['batch_mib']:.1f} | {rates} | {mem:.1f} | "
            f"{res['bare_gather'].batches_per_s:.1f} | {share:.0%} | {anon:.0f} ({file_:.0f}) "
            f"| {size:.0f} |")
        if not res["identical"]:
            checks.append(("in-memory batches identical to the loader's", "no", False))
        if zero and res["n_max"] == 8:
            checks.append((f">= {MIN_BATCHES_PER_S:.0f} batches/s, 0 workers, N_max=8",
                           f"{zero.batches_per_s:.1f}", zero.batches_per_s >= MIN_BATCHES_PER_S))
        if zero:
            checks.append((f">= {MIN_SHARE_OF_IN_MEMORY:.0%} of the in-memory rate "
                           f"({res['label']})", f"{share:.0%}", share >= MIN_SHARE_OF_IN_MEMORY))
        checks.append((f"RSS growth (anon) < {MAX_RSS_SHARE:.0%} of the cache ({res['label']})",
                       f"{anon / size:.1%}", anon < MAX_RSS_SHARE * size))
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'pass' if ok else 'FAIL'} |" for name, value, ok in checks]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="benchmarks/_data/lake", help="lake root (lake_io.py's)")
    p.add_argument("--cache-dir", default="benchmarks/_data/loader-cache")
    p.add_argument("--batch-size", type=int, default=480)
    p.add_argument("--seq-len", type=int, default=20)
    p.add_argument("--batches", type=int, default=200, help="timed batches per measurement")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    p.add_argument("--reuse", action="store_true", help="reuse an existing cache (no build)")
    p.add_argument("--out", type=Path, help="also write the markdown section to this file")
    args = p.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]

    lake = Lake(args.root)
    if not list_files(lake, "episodes", Selection(env=ENV)):
        print(f"no {ENV} lake at {lake.root}. Make it first with the lake benchmark:\n"
              f"  python benchmarks/lake_io.py --root {args.root}              # 20M agent-steps\n"
              f"  python benchmarks/lake_io.py --root {args.root} --scale 0.025  # smoke size",
              file=sys.stderr)
        return 2
    small = tuple(t.name for t in split_tasks(ENV, "train") if t.num_agents <= 8)
    selections = [("all tasks, env max", DataSelection(env=ENV, split="train"), "env"),
                  ("tasks with <= 8 agents", DataSelection(env=ENV, tasks=small), "selection")]
    if not args.reuse:
        for _, sel, _ in selections:
            path, _, _ = cache_path_for(lake, sel, args.cache_dir)
            shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    caches = [build_cache(lake, selections[0][1], args.cache_dir)]
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_cache(lake, selections[0][1], args.cache_dir)
    reuse_s = time.perf_counter() - t0
    caches.append(build_cache(lake, selections[1][1], args.cache_dir))
    lake_steps = sum(t.num_steps * t.num_agents for t in caches[0].tasks)
    results = []
    for (label, _, pad), cache in zip(selections, caches, strict=True):
        print(f"measuring: {label}", file=sys.stderr)
        results.append(bench_config(cache, label, pad, args))
    text = report(args, lake_steps, build_s, reuse_s, caches, results)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
