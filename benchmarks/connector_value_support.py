"""Connector's discounted returns-to-go against its value support, per time limit.

Why: HL-Gauss clips value targets to the env's support (the paper's [-1, 1] for connector),
so the team reward and the time limit must keep the returns-to-go inside it. This measures,
with the project's random rollout (uniform over legal actions: `trainer.envs.random_rollout`,
one fresh episode per environment, as `trainer.recording.collect_random_episodes` records
the random baseline), for each candidate time limit and task:
- the fraction of the discounted returns-to-go (gamma 0.99, no bootstrap:
  `lake_schema.returns`) outside [-1, 1], with the team reward as the mean over agents (the
  environment's) and, for comparison, as the sum (mean x N, the old convention);
- the worst case of the mean convention, an episode where no agent ever connects:
  -0.03 (1 - 0.99^T) / 0.01 at its first step;
- whether the limit leaves time to connect: the share of agents the random policy connects,
  how episodes end, and the head-to-target Manhattan distances of the generated grids.

    .venv/bin/python benchmarks/connector_value_support.py [--episodes 64] [--limits 40 50 100]
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from lake_schema.catalogue import ENVS, split_tasks
from lake_schema.returns import GAMMA, returns_to_go, support_fit
from trainer.envs import make_env, random_rollout
from trainer.recording import episodes_from_rollout

DEMO = [t.name for t in split_tasks("connector", "demo-train")
        + split_tasks("connector", "demo-test")]


def worst_case(limit: int, gamma: float = GAMMA) -> float:
    """The lowest return-to-go of the mean convention: -0.03 on every step of a whole
    episode of `limit` steps (no agent connects, none is ever blocked)."""
    return -0.03 * (1 - gamma ** limit) / (1 - gamma)


def measure(task: str, limit: int, episodes: int, seed: int) -> dict:
    env = make_env(task, time_limit=limit)
    n = env.num_agents
    key = jax.random.PRNGKey(seed)
    batch = episodes_from_rollout(random_rollout(env, key, episodes, limit), max_per_env=1)
    reward = np.asarray(batch.reward, np.float64)  # the env's team reward: the mean
    support = ENVS["connector"].value_support
    mean_fit = support_fit(returns_to_go(reward, batch.lengths), support)
    sum_fit = support_fit(returns_to_go(reward * n, batch.lengths), support)
    # n x mean = (#agents connecting now) - 0.03 (#unconnected): round() counts connections
    connected = np.clip(np.round(reward * n), 0, None).sum() / (n * len(batch.lengths))
    states, _ = env.reset_batch(jax.random.fold_in(key, 1), episodes)
    dist = np.abs(np.asarray(states.inner.agents.position)
                  - np.asarray(states.inner.agents.target)).sum(-1)  # [B, N]
    return {
        "task": task, "limit": limit, "agents": n, "episodes": len(batch.lengths),
        "steps": int(batch.lengths.sum()),
        "outside_mean": mean_fit.fraction, "outside_sum": sum_fit.fraction,
        "rtg_min_mean": mean_fit.min, "rtg_max_mean": mean_fit.max,
        "rtg_min_sum": sum_fit.min,
        "worst_case_mean": worst_case(limit),
        "connected": float(connected),
        "terminated": float(np.asarray(batch.terminated).sum() / len(batch.lengths)),
        "truncated": float(np.asarray(batch.truncated).sum() / len(batch.lengths)),
        "mean_length": float(batch.lengths.mean()),
        "distance_mean": float(dist.mean()), "distance_p95": float(np.quantile(dist, 0.95)),
        "distance_max": int(dist.max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=DEMO)
    ap.add_argument("--limits", nargs="+", type=int, default=[40, 50, 100])
    ap.add_argument("--episodes", type=int, default=64, help="per task and limit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    rows = []
    header = (f"{'task':<22} {'T':>4} {'eps':>4} {'steps':>6} {'out(mean)':>9} "
              f"{'out(sum)':>9} {'min(mean)':>9} {'worst':>7} {'conn':>5} {'term':>5} "
              f"{'len':>6} {'dist':>5} {'d95':>4} {'dmax':>4}")
    print(header, flush=True)
    for task in args.tasks:
        for limit in args.limits:
            r = measure(task, limit, args.episodes, args.seed)
            rows.append(r)
            print(f"{task:<22} {limit:>4} {r['episodes']:>4} {r['steps']:>6} "
                  f"{r['outside_mean']:>9.2%} {r['outside_sum']:>9.2%} "
                  f"{r['rtg_min_mean']:>9.3f} {r['worst_case_mean']:>7.3f} "
                  f"{r['connected']:>5.2f} {r['terminated']:>5.2f} {r['mean_length']:>6.1f} "
                  f"{r['distance_mean']:>5.1f} {r['distance_p95']:>4.0f} "
                  f"{r['distance_max']:>4}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
