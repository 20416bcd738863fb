"""Vault import throughput: an og-marl-shaped Vault -> the lake with `import_vault`.

Writes a Vault in flashbax's layout (og-marl's leaves: observations float32 (1, T, N, F),
actions, rewards, terminals, truncations (1, T, N), infos.legals (1, T, N, A), infos.state
(1, T, N*F)) of synthetic episodes of the task's shapes, with `VaultWriter` (not timed),
then times:

- read: `iter_parts` alone (tensorstore reads, gzip decoding, episode splitting, mapping
  onto the task's dtypes), nothing written;
- import: `import_vault` into a fresh lake (the read plus `write_episodes` per part),
  each in a fresh process, with its peak RSS (VmHWM).

Prints a markdown section (machine, load from `uptime`, command, figures); --out also
writes it.

    python benchmarks/vault_import.py                              # 200k rware steps
    python benchmarks/vault_import.py --steps 20000                # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lake_schema.catalogue import get_task
from lake_schema.testing import synthetic_episodes
from lake_schema.vault import VaultWriter

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys, time
from lake_schema.catalogue import get_task
from lake_schema.storage import Lake
from lake_schema.vault import budget_for, import_vault, iter_parts, open_vault, plan_fields
mode, vault, lake, task, memory = sys.argv[1:6]
task, memory = get_task(task), int(memory)

def hwm():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM")) * 1024

t0 = time.perf_counter()
if mode == "read":
    src = open_vault(vault + "/Good")
    fm = plan_fields(src, task)
    b = budget_for(src, task, memory)
    src = open_vault(vault + "/Good", cache_bytes=b.cache_bytes)
    steps = parts = 0
    for batch in iter_parts(src, fm, b):
        steps += batch.num_steps
        parts += 1
else:
    (r,) = import_vault(Lake(lake), vault, task, memory_bytes=memory)
    steps, parts = r.steps, r.parts
print(json.dumps({"seconds": time.perf_counter() - t0, "steps": steps, "parts": parts,
                  "peak_rss": hwm()}))
"""


def make_vault(path: Path, task_name: str, steps: int, seed: int = 0) -> tuple[int, int]:
    """Episodes of the task's length (some ended early) until `steps`; returns (steps,
    decoded bytes of the leaves an import reads)."""
    task = get_task(task_name)
    n, f, a = task.num_agents, task.spec.obs_width, task.spec.num_actions
    w = VaultWriter(path, "Good", {
        "observations": ((n, f), "float32"), "actions": ((n,), "int32"),
        "rewards": ((n,), "float32"), "terminals": ((n,), "float32"),
        "truncations": ((n,), "float32"), "infos.legals": ((n, a), "float32"),
        "infos.state": ((n * f,), "float32")})
    rng = np.random.default_rng(seed)
    while w.steps < steps:
        lengths: list[int] = []
        while sum(lengths) < min(20_000, steps - w.steps):
            lengths.append(task.time_limit if rng.random() < 0.7
                           else int(rng.integers(20, task.time_limit)))
        e = synthetic_episodes(task, lengths, seed=int(rng.integers(1 << 30)))
        s = e.num_steps
        obs = e.obs.astype(np.float32)

        def per_agent(v: np.ndarray, s: int = s) -> np.ndarray:
            return np.broadcast_to(v.astype(np.float32)[:, None], (s, n))

        w.append({"observations": obs, "actions": e.action.astype(np.int32),
                  "rewards": per_agent(e.reward), "terminals": per_agent(e.terminated),
                  "truncations": per_agent(e.truncated),
                  "infos.legals": e.legal.astype(np.float32),
                  "infos.state": obs.reshape(s, n * f)})
    w.close()
    read_bytes = n * f * 4 + n * 4 * 4 + n * a * 4
    return w.steps, w.steps * read_bytes


def child(mode: str, vault: Path, lake: Path, task: str, memory: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", _CHILD, mode, str(vault), str(lake), task,
                        str(memory)], capture_output=True, text=True, cwd=ROOT, env=env,
                       check=False)
    if p.returncode:
        sys.exit(f"{mode} failed: {p.stderr.strip().splitlines()[-1]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="rware/tiny-4ag")
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--memory-mb", type=int, default=256, help="import_vault's budget")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each; best is reported")
    ap.add_argument("--dir", help="work folder (default: a temporary one, removed)")
    ap.add_argument("--out", help="also write the markdown section here")
    args = ap.parse_args()
    task = get_task(args.task)
    work = Path(args.dir or tempfile.mkdtemp(prefix="vault-bench-"))
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    try:
        vault = work / "bench.vlt"
        shutil.rmtree(vault, ignore_errors=True)
        t0 = time.perf_counter()
        steps, decoded = make_vault(vault, args.task, args.steps)
        made = time.perf_counter() - t0
        disk = sum(p.stat().st_size for p in vault.rglob("*") if p.is_file())
        memory = args.memory_mb << 20
        tiny = work / "tiny.vlt"  # one part's worth at most: the fixed cost of an import
        shutil.rmtree(tiny, ignore_errors=True)
        tiny_steps, _ = make_vault(tiny, args.task, task.time_limit, seed=1)
        runs: dict[str, list[dict]] = {"read": [], "import": [], "tiny": []}
        for _ in range(args.repeats):
            for mode in runs:
                lake = work / "lake"
                shutil.rmtree(lake, ignore_errors=True)
                runs[mode].append(child("import" if mode == "tiny" else mode,
                                        tiny if mode == "tiny" else vault, lake, args.task,
                                        memory))
        best = {m: min(r, key=lambda x: x["seconds"]) for m, r in runs.items()}
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    n = task.num_agents
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        "## Vault import (issue 16: `benchmarks/vault_import.py`)",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, {mem_gib:.1f} GiB RAM; "
        f"Python {platform.python_version()}",
        f"- Load (`uptime`): before `{load_before.split('load average:')[-1].strip()}`, "
        f"after `{load_after.split('load average:')[-1].strip()}`",
        f"- Command: `{cmd}`",
        f"- Vault: {args.task}, {steps:,} steps ({steps * n:,} agent-steps) in flashbax's "
        f"layout with og-marl's leaves, {decoded / 2**20:.0f} MiB decoded in the leaves an "
        f"import reads (infos.state not read), {disk / 2**20:.1f} MiB on disk (gzip); "
        f"written in {made:.1f} s (not timed below)",
        f"- Budget: `--memory-mb {args.memory_mb}`; each figure the best of {args.repeats} "
        "runs, each run a fresh process",
        "",
        "| what | seconds | steps/s | agent-steps/s | decoded MiB/s | parts | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, label in (("read", "read only (`iter_parts`)"),
                        ("import", "import (`import_vault` -> lake)")):
        r = best[mode]
        s = r["seconds"]
        lines.append(f"| {label} | {s:.2f} | {steps / s:,.0f} | {steps * n / s:,.0f} | "
                     f"{decoded / 2**20 / s:.0f} | {r['parts']} | "
                     f"{r['peak_rss'] / 2**20:.0f} MiB |")
    t = best["tiny"]
    lines += ["", f"Fixed cost: importing a {tiny_steps}-step Vault the same way peaks at "
                  f"{t['peak_rss'] / 2**20:.0f} MiB ({t['seconds']:.2f} s)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
