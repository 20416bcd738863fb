"""Throughput of the Sable network on the local JAX device.

Training: forward and forward+backward of the chunkwise form on (B, T, N) sequences,
in agent-steps per second (B * T * N / seconds). Acting: recurrent joint actions per second
(environments * steps / seconds).

    python benchmarks/network_throughput.py                 # full grid (embed 64, 128)
    python benchmarks/network_throughput.py --embed 64 --agents 2 --reps 2   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from trainer.networks import Sable, SableConfig, param_count

OBS_WIDTH, NUM_ACTIONS = 66, 5  # rware-like


def timeit(fn: Callable[[], object], reps: int) -> float:
    """Best-of-`reps` wall time of fn() after one warm-up (compilation) call."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def make_inputs(b: int, t: int, n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(b, t, n, OBS_WIDTH)).astype(np.float32)
    actions = rng.integers(0, NUM_ACTIONS, size=(b, t, n)).astype(np.int32)
    legal = np.ones((b, t, n, NUM_ACTIONS), bool)
    first = rng.random((b, t)) < 0.05
    mask = np.ones((b, t, n), bool)
    return obs, actions, legal, first, mask


def bench_train(embed: int, b: int, t: int, n: int, reps: int) -> tuple[float, float, int]:
    model = Sable(SableConfig(obs_width=OBS_WIDTH, num_actions=NUM_ACTIONS, embed_dim=embed))
    params = model.init_params(jax.random.PRNGKey(0))
    inputs = make_inputs(b, t, n)

    def loss(p: dict) -> jax.Array:
        out = model.forward_train(p, *inputs)
        logp = jax.nn.log_softmax(out.policy_logits)
        logp = jnp.take_along_axis(logp, inputs[1][..., None], -1)
        return -logp.mean() + (out.value**2).mean()

    fwd = jax.jit(model.forward_train)
    grad = jax.jit(jax.value_and_grad(loss))
    fwd_s = timeit(lambda: fwd(params, *inputs), reps)
    bwd_s = timeit(lambda: grad(params), reps)
    steps = b * t * n
    return steps / fwd_s, steps / bwd_s, param_count(params)


def bench_act(embed: int, envs: int, n: int, steps: int, reps: int) -> float:
    model = Sable(SableConfig(obs_width=OBS_WIDTH, num_actions=NUM_ACTIONS, embed_dim=embed))
    params = model.init_params(jax.random.PRNGKey(0))
    obs, _, legal, first, mask = make_inputs(envs, steps, n)
    xs = tuple(jnp.swapaxes(x, 0, 1) for x in (obs, legal, first, mask))

    @jax.jit
    def rollout(key: jax.Array) -> jax.Array:
        def body(state, x):
            o, lg, f, m, k = x
            res = model.act(params, state, o, lg, f, m, k)
            return res.state, res.actions

        keys = jax.random.split(key, steps)
        _, actions = jax.lax.scan(body, model.init_state(envs), (*xs, keys))
        return actions

    seconds = timeit(partial(rollout, jax.random.PRNGKey(0)), reps)
    return envs * steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embed", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--agents", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=20)
    parser.add_argument("--envs", type=int, default=256)
    parser.add_argument("--act-agents", type=int, default=4)
    parser.add_argument("--act-steps", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, "
        f"device {jax.devices()[0].device_kind}"
    )
    print(f"\n## Training (B={args.batch}, T={args.seq}), agent-steps/s\n")
    print("| embed | params | N | forward | forward+backward |")
    print("|---:|---:|---:|---:|---:|")
    for embed in args.embed:
        for n in args.agents:
            fwd, bwd, count = bench_train(embed, args.batch, args.seq, n, args.reps)
            print(f"| {embed} | {count:,} | {n} | {fwd:,.0f} | {bwd:,.0f} |", flush=True)

    print(f"\n## Acting ({args.envs} envs, N={args.act_agents}), joint actions/s\n")
    print("| embed | sampled joint actions/s |")
    print("|---:|---:|")
    for embed in args.embed:
        rate = bench_act(embed, args.envs, args.act_agents, args.act_steps, args.reps)
        print(f"| {embed} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
