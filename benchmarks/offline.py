"""Offline trainer benchmarks: update throughput per model size, and the demo-split learning run.

    python benchmarks/offline.py throughput                    # CPU: embed 32/64/128, B=32, T=20
    python benchmarks/offline.py throughput --embeds 512 --batch 480   # the paper's shape (GPU)
    python benchmarks/offline.py throughput --embeds 32 --chunk 5 --seeds 1 3 8  # S seeds
    python benchmarks/offline.py throughput --embeds 32 --seeds 1 3 --seed-program vmap
    python benchmarks/offline.py demo --updates 300            # BC / CQL / Oryx on lbf demo split

`throughput`: the jitted update (forward of online + target network, loss, Adam, Polyak)
on batches from the real loader (synthetic lbf data of the demo-train tasks, agents padded to
the env's 8), preloaded on the device so the figure is the update itself; the loader's own
batch time is reported beside it.

`demo`: a scripted, better-than-random LBF policy (`trainer.scripted`) records each
demo-train task's dataset (a `low` checkpoint at epsilon 0.5 and a `high` one at epsilon
0.1); each algorithm trains on the three tasks together (task-balanced batches, HL-Gauss,
agent masking), then runs zero-shot on the train and test tasks. Online Sable references are
not available to this benchmark (they need the online trainer's runs), so the references
written here are the scripted policy's own returns on every task: a normalised return of 1
means "as good as the scripted policy", and the random policy's normalised return is shown
beside it. Results go to benchmarks/_data/offline.json and are printed as markdown.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages

import jax
import numpy as np

from lake_schema.catalogue import split_tasks
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from lake_schema.writer import write_episodes, write_reference
from trainer.data import DataSelection, device_put_batch, make_loader
from trainer.networks import param_count
from trainer.offline import EvalConfig, OfflineConfig, evaluate, train
from trainer.offline.state import init_train_state
from trainer.offline.training import make_mesh, make_update
from trainer.recording import collect_random_episodes
from trainer.scripted import collect_lbf_heuristic_episodes

DATA = Path(__file__).parent / "_data" / "offline"
ENV = "lbf"


def _header() -> dict:
    return {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "devices": [str(d) for d in jax.devices()], "jax": jax.__version__}


def throughput(embeds: list[int], batch: int, seq: int, updates: int,
               algorithms: list[str], chunk: int | None = None,
               seeds: list[int] = (1,), env: str = ENV, pad: str | int = "env",
               seed_program: str = "auto") -> list[dict]:
    """Updates/s of the jitted update for each (algorithm, embed, S seeds in one program);
    `model_updates_per_s` = S x updates/s is what S seeds of one configuration get done.
    `seed_program`: how the program runs the seeds (`vmap`, `map` one after another, or
    `auto`: the trainer's choice for this backend, `trainer.offline.training.over_seeds`)."""
    vectorise = {"auto": None, "vmap": True, "map": False}[seed_program]
    root = DATA / f"throughput_{env}"
    lake = Lake(root / "lake")
    tasks = tuple(t.name for t in split_tasks(env, "demo-train"))
    if not (root / "lake").exists():
        fill_lake(lake, tasks, checkpoints=2, episodes=8, lengths=(30, 100), seed=0)
    selection = DataSelection(env=env, tasks=tasks)
    mesh = make_mesh()
    P = jax.sharding.PartitionSpec
    rows = []
    for algorithm in algorithms:
        for embed in embeds:
            config = OfflineConfig(env=env, algorithm=algorithm, embed_dim=embed,
                                   batch_size=batch, seq_len=seq, chunk_timesteps=chunk,
                                   pad_agents=pad)
            loader = make_loader(lake, selection, config.loader_config(), root / "cache")
            t0 = time.perf_counter()
            host = [loader.batch(i) for i in range(8)]
            batch_s = (time.perf_counter() - t0) / 8
            update = make_update(config, len(tasks), mesh, vectorise)
            for num_seeds in seeds:
                data = jax.sharding.NamedSharding(mesh, P(None, "data"))
                batches = [device_put_batch(jax.tree.map(lambda x, s=num_seeds: np.stack([x] * s),
                                                         b), data) for b in host]
                init = [init_train_state(config, jax.random.PRNGKey(k))
                        for k in range(num_seeds)]
                state = jax.device_put(jax.tree.map(lambda *x: np.stack(x), *init),
                                       jax.sharding.NamedSharding(mesh, P()))
                t0 = time.perf_counter()
                state, m = update(state, batches[0])
                jax.block_until_ready(m.loss)
                compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                for i in range(updates):
                    state, m = update(state, batches[i % 8])
                jax.block_until_ready(m.loss)
                rate = updates / (time.perf_counter() - t0)
                row = {"env": env, "algorithm": algorithm, "embed": embed, "B": batch, "T": seq,
                       "N": config.pad_to(loader.source.num_agents), "chunk": chunk,
                       "seeds": num_seeds, "seed_program": seed_program,
                       "params": param_count(init[0].params), "compile_s": round(compile_s, 1),
                       "updates_per_s": round(rate, 2),
                       "model_updates_per_s": round(num_seeds * rate, 2),
                       "loader_batch_ms": round(1000 * batch_s, 1),
                       "load_1min": os.getloadavg()[0]}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def demo(updates: int, episodes: int, data_episodes: int, algorithms: list[str],
         batch: int, seq: int, embed: int, chunk: int | None = None) -> dict:
    root = DATA / "demo"
    shutil.rmtree(root, ignore_errors=True)
    lake = Lake(root / "lake")
    train_tasks = [t.name for t in split_tasks(ENV, "demo-train")]
    test_tasks = [t.name for t in split_tasks(ENV, "demo-test")]
    t0 = time.perf_counter()
    scripted, random_ = {}, {}
    for i, task in enumerate(train_tasks + test_tasks):
        if task in train_tasks:
            for ck, (eps, quality) in enumerate(((0.5, "low"), (0.1, "high"))):
                eb = collect_lbf_heuristic_episodes(task, data_episodes, seed=10 * i + ck,
                                                    epsilon=eps)
                write_episodes(lake, task, "scripted", ck, quality, eb)
        ref = collect_lbf_heuristic_episodes(task, episodes, seed=1000 + i, epsilon=0.1)
        rnd = collect_random_episodes(task, episodes, seed=2000 + i)
        scripted[task] = float(ref.episode_returns().mean())
        random_[task] = float(rnd.episode_returns().mean())
        write_reference(lake, task, "scripted", sable_returns=ref.episode_returns(),
                        random_returns=rnd.episode_returns(), env_steps=0)
    data_s = time.perf_counter() - t0
    print(f"data and references: {data_s:.0f}s", flush=True)
    results: dict = {"data_s": round(data_s), "scripted": scripted, "random": random_,
                     "algorithms": {}}
    selection = DataSelection(env=ENV, split="demo-train")
    for algorithm in algorithms:
        config = OfflineConfig(algorithm=algorithm, embed_dim=embed, batch_size=batch,
                               seq_len=seq, chunk_timesteps=chunk, num_updates=updates,
                               log_every=max(updates // 5, 1),
                               checkpoint_every=updates)
        t0 = time.perf_counter()
        res = train(lake, selection, config, root / "models" / algorithm,
                    cache_dir=root / "cache")
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = evaluate(lake, res.run_dir, tasks=train_tasks + test_tasks,
                       eval_config=EvalConfig(episodes=episodes, seed=7))
        eval_s = time.perf_counter() - t0
        results["algorithms"][algorithm] = {
            "train_s": round(train_s), "eval_s": round(eval_s),
            "final_loss": res.history[-1]["loss"],
            "tasks": {r.task: {"split": r.split, "return": r.mean_return,
                               "normalised": r.normalised_return} for r in out}}
        print(json.dumps({algorithm: results["algorithms"][algorithm]}), flush=True)
    return results


def markdown(results: dict) -> str:
    lines = []
    for row in results.get("throughput", []):
        if not lines:
            lines += ["| algorithm | embed | params | B x T x N | seeds S (program) | compile s | "
                      "updates/s | S x updates/s | loader ms/batch |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        chunk = f" (chunks of {row['chunk']})" if row.get("chunk") else ""
        seeds = f"{row.get('seeds', 1)} ({row.get('seed_program', 'vmap')})"
        lines.append(f"| {row['algorithm']} | {row['embed']} | {row['params']:,} | "
                     f"{row['B']} x {row['T']} x {row['N']}{chunk} | {seeds} | "
                     f"{row['compile_s']} | {row['updates_per_s']} | "
                     f"{row.get('model_updates_per_s', row['updates_per_s'])} | "
                     f"{row['loader_batch_ms']} |")
    demo_ = results.get("demo")
    if demo_:
        tasks = list(demo_["scripted"])
        algs = list(demo_["algorithms"])
        lines += ["", "| task | split | scripted return | random (norm.) | "
                  + " | ".join(f"{a} (norm.)" for a in algs) + " |",
                  "| --- | --- | --- | --- | " + " | ".join("---" for _ in algs) + " |"]
        for t in tasks:
            split = next(iter(demo_["algorithms"].values()))["tasks"][t]["split"]
            cells = [f"{demo_['algorithms'][a]['tasks'][t]['return']:.3f} "
                     f"({demo_['algorithms'][a]['tasks'][t]['normalised']:.2f})" for a in algs]
            rnd = demo_["random"][t]
            lines.append(f"| {t} | {split} | {demo_['scripted'][t]:.3f} | {rnd:.3f} "
                         f"({rnd / demo_['scripted'][t]:.2f}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["throughput", "demo", "all"])
    p.add_argument("--embeds", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--algorithms", nargs="+", default=["bc", "cql", "oryx"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=20)
    p.add_argument("--timed-updates", type=int, default=20)
    p.add_argument("--chunk", type=int, default=None, help="chunk_timesteps")
    p.add_argument("--env", default=ENV, help="throughput: synthetic data of this env")
    p.add_argument("--pad", type=lambda v: int(v) if v.isdigit() else v, default="env",
                   help="throughput: agent slots N (`env`, `selection` or a count)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1],
                   help="S: seeds trained in one program (throughput)")
    p.add_argument("--seed-program", choices=["auto", "vmap", "map"], default="auto",
                   help="throughput: how the program runs S seeds (auto: the trainer's choice)")
    p.add_argument("--updates", type=int, default=300, help="demo training updates")
    p.add_argument("--embed", type=int, default=32, help="demo model size")
    p.add_argument("--episodes", type=int, default=32, help="evaluation episodes per task")
    p.add_argument("--data-episodes", type=int, default=64,
                   help="recorded episodes per train task and quality")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)
    out = DATA.parent / "offline.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results["header"] = _header()
    if args.part in ("throughput", "all"):
        rows = throughput(args.embeds, args.batch, args.seq, args.timed_updates,
                          args.algorithms, args.chunk, args.seeds, args.env, args.pad,
                          args.seed_program)
        keep = [r for r in results.get("throughput", []) if r.get("chunk") != args.chunk]
        results["throughput"] = keep + rows
    if args.part in ("demo", "all"):
        results["demo"] = demo(args.updates, args.episodes, args.data_episodes,
                               args.algorithms, args.batch, args.seq, args.embed, args.chunk)
        results["demo"]["settings"] = vars(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
