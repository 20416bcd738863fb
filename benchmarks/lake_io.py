"""Lake I/O benchmark: write, read, bytes on disk and DuckDB queries on an RWARE-shaped lake.

Writes the 15 RWARE train tasks (2 to 32 agents, 66 int8 observation features) with
`lake_schema.write_episodes`: episodes of RWARE lengths (mostly the 500-step time limit, some
ended early), several checkpoints per task tagged with `quality_for_checkpoint`, the same
number of agent-steps (steps x agents) per task. Data comes from `synthetic_episodes` (sparse
small-integer observations); generating it is not timed, only `write_episodes` is.

Then measures: `read_table` of each task's steps into numpy arrays; bytes on disk per
agent-step against the raw numpy arrays; an episodes aggregate and a steps scan through the
DuckDB views of `connect(lake)` and through DuckDB directly on the files.

An existing lake at --root holding exactly the planned data is reused (query timings can be
re-run without rewriting) unless --rewrite. Prints a markdown section; --out also writes it.

`--parallel N` also writes the same plan again into a second lake with N processes at once
(one task per process at a time) against one after another, both timed with generation
included. `--compare-with REV` first runs the benchmark of git revision REV (its own
`lake_schema` and `benchmarks/lake_io.py`, extracted to a temporary folder, on its own lake)
with the same arguments, then this one, and prints both reports' figures side by side.

    python benchmarks/lake_io.py                          # 20M agent-steps (minutes)
    python benchmarks/lake_io.py --scale 0.025            # smoke run, 500k agent-steps
    python benchmarks/lake_io.py --scale 0.05 --rewrite --parallel 2 --compare-with d8796ae
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake_schema.catalogue import Task, split_tasks
from lake_schema.duck import connect
from lake_schema.reader import Selection, list_files, read_table
from lake_schema.schema import quality_for_checkpoint, table_spec
from lake_schema.storage import Lake
from lake_schema.testing import synthetic_episodes
from lake_schema.writer import EpisodeBatch, write_episodes

ENV = "rware"
RUN = "bench"
MANIFEST = "_benchmark/lake_io.json"  # outside every table folder: readers never see it
LAKE_DIRS = {"steps", "episodes", "references", "evaluations", "_staging", "_journal",
             "_benchmark", "_sable_lake"}
MANIFEST_VERSION = 1

# Targets (DESIGN.md, "The lake"; the project's benchmark targets).
MAX_DISK_RATIO = 0.20
MAX_EPISODES_QUERY_S = 0.5
MAX_STEPS_SCAN_S = 5.0
MAX_VIEW_OVERHEAD = 1.10

EPISODES_SQL = """
SELECT task, quality, count(*) AS episodes, avg("return") AS mean_return,
       sum(length)::BIGINT AS steps, sum(length::BIGINT * num_agents)::BIGINT AS agent_steps
FROM {src} WHERE env = 'rware'
GROUP BY task, quality ORDER BY task, quality
"""
STEPS_SQL = """
SELECT task, quality, count(*) AS steps, sum(reward) AS reward
FROM {src}
GROUP BY task, quality ORDER BY task, quality
"""


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Chunk:
    """One checkpoint of one task: one `write_episodes` call."""

    task: Task
    checkpoint: int
    quality: str
    lengths: tuple[int, ...]
    seed: int

    @property
    def steps(self) -> int:
        return sum(self.lengths)

    @property
    def agent_steps(self) -> int:
        return self.steps * self.task.num_agents


def episode_lengths(rng: np.random.Generator, steps: int, limit: int, p_short: float
                    ) -> list[int]:
    """RWARE-like lengths summing to `steps`: the time limit, or shorter (ended early)."""
    out: list[int] = []
    while steps > 0:
        n = limit if rng.random() >= p_short else int(rng.integers(limit // 10, limit))
        out.append(min(n, steps))  # the last one is cut to fit: an early end
        steps -= out[-1]
    return out


def make_plan(agent_steps: int, checkpoints: int, p_short: float, seed: int) -> list[Chunk]:
    tasks = split_tasks(ENV, "train")
    per_chunk = -(-agent_steps // (len(tasks) * checkpoints))  # agent-steps, rounded up
    plan = []
    for i, task in enumerate(tasks):
        for ck in range(checkpoints):
            rng = np.random.default_rng([seed, i, ck])
            steps = max(1, -(-per_chunk // task.num_agents))
            lengths = episode_lengths(rng, steps, task.time_limit, p_short)
            plan.append(Chunk(task, ck, quality_for_checkpoint(ck, checkpoints),
                              tuple(lengths), seed * 1_000_003 + i * 1_000 + ck))
    return plan


def plan_digest(plan: list[Chunk]) -> str:
    h = hashlib.sha256()
    for c in plan:
        h.update(f"{c.task.name}|{c.checkpoint}|{c.quality}|{c.seed}|{c.lengths}\n".encode())
    return h.hexdigest()


def steps_files(lake: Lake, task: Task) -> list[str]:
    """The task's steps files, from the Delta log (their names are chosen by delta-rs)."""
    return list_files(lake, "steps", Selection(env=ENV, tasks=[task.scenario], runs=[RUN]))


# ---------------------------------------------------------------- lake housekeeping


def load_manifest(lake: Lake) -> dict | None:
    path = Path(lake.path(MANIFEST))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def reusable(lake: Lake, plan: list[Chunk], digest: str) -> dict | None:
    """The manifest of the lake at the root if it holds exactly the planned data, else None."""
    manifest = load_manifest(lake)
    if not manifest or manifest.get("version") != MANIFEST_VERSION or (
        manifest.get("plan_digest") != digest
    ):
        return None
    try:
        eps = read_table(lake, "episodes", Selection(env=ENV, runs=[RUN]),
                         ["task", "checkpoint", "length"])
    except Exception:  # not a lake of this version: rewrite it
        return None
    found: dict[tuple[str, int], tuple[int, int]] = {}
    for t, ck, n in zip(*(eps[c].to_pylist() for c in ("task", "checkpoint", "length")),
                        strict=True):
        e, s = found.get((t, ck), (0, 0))
        found[(t, ck)] = (e + 1, s + n)
    if found != {(c.task.scenario, c.checkpoint): (len(c.lengths), c.steps) for c in plan}:
        return None
    return manifest


def clear_lake(lake: Lake) -> None:
    """Remove a previous benchmark lake; refuses a root holding anything else."""
    root = Path(lake.path())
    if not root.exists():
        return
    foreign = sorted(p.name for p in root.iterdir() if p.name not in LAKE_DIRS)
    if foreign:
        sys.exit(f"refusing to clear {root}: it holds {foreign}, not only a lake; "
                 "pick another --root")
    for name in LAKE_DIRS:
        if (root / name).exists():
            shutil.rmtree(root / name)


# ---------------------------------------------------------------- measurements


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def raw_nbytes(b: EpisodeBatch) -> dict[str, int]:
    return {
        "obs": b.obs.nbytes,
        "action": b.action.nbytes,
        "legal": b.legal.nbytes,
        "reward_flags": b.reward.nbytes + b.terminated.nbytes + b.truncated.nbytes,
    }


def write_lake(lake: Lake, plan: list[Chunk], checkpoints: int, verbose: bool) -> dict:
    gen_s = write_s = 0.0
    raw = {"obs": 0, "action": 0, "legal": 0, "reward_flags": 0}
    written = 0
    for k, c in enumerate(plan):
        t0 = time.perf_counter()
        batch = synthetic_episodes(c.task, c.lengths, seed=c.seed)
        t1 = time.perf_counter()
        res = write_episodes(lake, c.task, RUN, c.checkpoint, c.quality, batch,
                             env_steps=(c.checkpoint + 1) * 20_000_000 // checkpoints)
        t2 = time.perf_counter()
        gen_s, write_s = gen_s + t1 - t0, write_s + t2 - t1
        for key, v in raw_nbytes(batch).items():
            raw[key] += v
        written += res.bytes
        del batch
        if verbose and (k + 1) % checkpoints == 0:
            print(f"  wrote {c.task.name}: {write_s:.1f} s writing, {gen_s:.1f} s generating,"
                  f" peak RSS {peak_rss_mib():.0f} MiB", file=sys.stderr)
    return {"gen_s": gen_s, "write_s": write_s, "raw": raw, "written_bytes": written,
            "peak_rss_mib": peak_rss_mib()}


def disk_usage(lake: Lake) -> dict[str, int]:
    """Bytes of the steps and episodes files, of the steps obs column chunks alone, and of
    the whole lake folder (Delta logs included)."""
    out = {"steps": 0, "episodes": 0, "steps_obs": 0, "steps_files": 0,
           "lake": sum(f.stat().st_size for f in Path(lake.path()).rglob("*")
                       if f.is_file() and "_benchmark" not in f.parts)}
    for rel in list_files(lake, "steps"):
        out["steps"] += os.path.getsize(lake.path(rel))
        out["steps_files"] += 1
        md = pq.ParquetFile(lake.path(rel)).metadata
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            for j in range(rg.num_columns):
                col = rg.column(j)
                if col.path_in_schema.split(".", 1)[0] == "obs":
                    out["steps_obs"] += col.total_compressed_size
    for rel in list_files(lake, "episodes"):
        out["episodes"] += os.path.getsize(lake.path(rel))
    return out


def warm_cache(paths: list[str]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def nested_numpy(col: pa.ChunkedArray, shape: tuple[int, ...]) -> np.ndarray:
    """list<fixed_size_list<T>> (or list<T>) column -> a dense [S, N, ...] numpy array."""
    parts = []
    for chunk in col.chunks:
        values = chunk.flatten()
        while pa.types.is_fixed_size_list(values.type) or pa.types.is_list(values.type):
            values = values.flatten()
        parts.append(values.to_numpy(zero_copy_only=False))
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return flat.reshape(shape)


def to_arrays(table: pa.Table, n: int) -> dict[str, np.ndarray]:
    s, spec = table.num_rows, table_spec("steps", ENV)
    width = spec.schema.field("obs").type.value_type.list_size
    actions = spec.schema.field("legal").type.value_type.list_size
    return {
        "obs": nested_numpy(table["obs"], (s, n, width)),
        "action": nested_numpy(table["action"], (s, n)),
        "legal": nested_numpy(table["legal"], (s, n, actions)),
        "reward": table["reward"].to_numpy(),
    }


def measure_reads(lake: Lake, plan: list[Chunk]) -> dict:
    """read_table per task -> numpy; and plain pyarrow on the same files, for reference."""
    tasks = list(dict.fromkeys(c.task for c in plan))
    files = {t: [lake.path(rel) for rel in steps_files(lake, t)] for t in tasks}
    warm_cache([p for ps in files.values() for p in ps])
    lake_s = plain_s = 0.0
    agent_steps = 0
    for task in tasks:
        t0 = time.perf_counter()
        table = read_table(lake, "steps", Selection(env=ENV, tasks=[task.scenario], runs=[RUN]))
        arrays = to_arrays(table, task.num_agents)
        lake_s += time.perf_counter() - t0
        expected = sum(c.steps for c in plan if c.task == task)
        assert arrays["obs"].shape == (expected, task.num_agents, 66), arrays["obs"].shape
        agent_steps += expected * task.num_agents
        del table, arrays
        t0 = time.perf_counter()
        table = pa.concat_tables(pq.read_table(p) for p in files[task])
        arrays = to_arrays(table, task.num_agents)
        plain_s += time.perf_counter() - t0
        del table, arrays
    return {"lake_s": lake_s, "plain_s": plain_s, "agent_steps": agent_steps}


def timed(con: duckdb.DuckDBPyConnection, sql: str, reps: int) -> tuple[list, list[float]]:
    result = con.execute(sql).fetchall()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - t0)
    return result, times


def measure_queries(lake: Lake, reps: int) -> dict:
    view = connect(lake)
    direct = duckdb.connect()
    out = {}
    for name, sql, table in (("episodes", EPISODES_SQL, "episodes"),
                             ("steps", STEPS_SQL, "steps")):
        # data files only: delta-rs also writes Parquet checkpoints into _delta_log/
        pattern = ("steps/*/task=*/**/*.parquet" if table == "steps"
                   else f"{table}/env=*/**/*.parquet")
        glob = lake.path(pattern).replace("'", "''")
        res_v, t_v = timed(view, sql.format(src=table), reps)
        res_d, t_d = timed(
            direct,
            sql.format(src=f"read_parquet('{glob}', hive_partitioning=true)"),
            reps,
        )
        if res_v != res_d:
            raise AssertionError(f"{name}: the view and direct DuckDB disagree")
        out[name] = {"view": t_v, "direct": t_d, "result": res_v}
    view.close()
    direct.close()
    return out


# ---------------------------------------------------------------- report


def machine() -> str:
    mem = cpu = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 2**20:.1f} GiB RAM"
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       "?")
    except OSError:
        pass
    return (f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu}), {mem}; "
            f"Python {platform.python_version()}, pyarrow {pa.__version__}, "
            f"duckdb {duckdb.__version__}, numpy {np.__version__}")


def fmt_rate(agent_steps: int, seconds: float) -> str:
    return f"{agent_steps / seconds / 1e6:.2f} M agent-steps/s ({seconds:.2f} s)"


def fmt_times(ts: list[float]) -> str:
    return f"{statistics.median(ts) * 1e3:.1f} ms (min {min(ts) * 1e3:.1f}, max " \
           f"{max(ts) * 1e3:.1f})"


def report(args, plan, manifest, reused, disk, reads, queries, wall_s) -> str:
    w = manifest["write"]
    agent_steps = sum(c.agent_steps for c in plan)
    steps = sum(c.steps for c in plan)
    episodes = sum(len(c.lengths) for c in plan)
    raw = w["raw"]
    raw_total = sum(raw.values())
    obs_elems = raw["obs"]  # int8: one byte per element
    ratio = disk["steps"] / raw_total
    q_e, q_s = queries["episodes"], queries["steps"]
    med = {k: {m: statistics.median(q[m]) for m in ("view", "direct")}
           for k, q in (("episodes", q_e), ("steps", q_s))}
    over = {k: v["view"] / v["direct"] for k, v in med.items()}
    tasks = sorted({c.task.num_agents for c in plan})
    ck = max(c.checkpoint for c in plan) + 1
    short = sum(1 for c in plan for n in c.lengths if n < c.task.time_limit)
    written = (f"reused from an earlier run (write figures from its manifest: "
               f"`{manifest.get('command', '?')}`)" if reused else "written by this run")

    def per(x: float) -> str:
        return f"{x / agent_steps:.2f} B"

    rows = [
        ("Write: `write_episodes`, generation excluded", fmt_rate(agent_steps, w["write_s"])),
        ("(generation, not timed above)", f"{w['gen_s']:.2f} s"),
        ("Read: `read_table` per task -> numpy obs/action/legal/reward",
         fmt_rate(reads["agent_steps"], reads["lake_s"])),
        ("(reference: plain `pq.read_table` of the same files -> numpy)",
         fmt_rate(reads["agent_steps"], reads["plain_s"])),
        ("Raw arrays given to the writer, per agent-step",
         f"{per(raw_total)} (obs int8 {per(raw['obs'])}, action "
         f"{per(raw['action'])}, legal {per(raw['legal'])}, reward+flags "
         f"{per(raw['reward_flags'])})"),
        ("Steps table on disk, per agent-step",
         f"{per(disk['steps'])} = **{100 * ratio:.1f}%** of raw "
         f"({disk['steps'] / 2**20:.1f} MiB in {disk['steps_files']} files)"),
        ("Obs column chunks on disk, per agent-step",
         f"{per(disk['steps_obs'])} = {100 * disk['steps_obs'] / obs_elems:.1f}% of int8, "
         f"{100 * disk['steps_obs'] / (4 * obs_elems):.2f}% of int32 (Jumanji's dtype)"),
        ("Episodes table on disk", f"{disk['episodes'] / 2**10:.1f} KiB"),
        ("Whole lake folder on disk (logs included)",
         f"{disk['lake'] / 2**20:.1f} MiB = {100 * disk['lake'] / raw_total:.1f}% of raw"),
        ("Episodes aggregate, `connect(lake)` view", fmt_times(q_e["view"])),
        ("Episodes aggregate, DuckDB on the files", fmt_times(q_e["direct"])),
        ("Steps scan (sum reward, count by task/quality), view", fmt_times(q_s["view"])),
        ("Steps scan, DuckDB on the files", fmt_times(q_s["direct"])),
        ("Peak RSS: after writing / overall",
         f"{w['peak_rss_mib']:.0f} MiB / {peak_rss_mib():.0f} MiB"
         + (" (write peak from the manifest)" if reused else "")),
        *parallel_rows(getattr(args, "parallel_result", None)),
        ("Benchmark wall time (this run)", f"{wall_s:.0f} s"),
    ]
    targets = [
        (f"Steps table on disk <= {MAX_DISK_RATIO:.0%} of raw (integer obs)",
         f"{ratio:.1%}", ratio <= MAX_DISK_RATIO),
        (f"Episodes aggregate < {MAX_EPISODES_QUERY_S} s (view, median)",
         f"{med['episodes']['view']:.3f} s", med["episodes"]["view"] < MAX_EPISODES_QUERY_S),
        (f"Steps scan < {MAX_STEPS_SCAN_S:.0f} s (view, median)",
         f"{med['steps']['view']:.3f} s", med["steps"]["view"] < MAX_STEPS_SCAN_S),
        (f"Views within {MAX_VIEW_OVERHEAD - 1:.0%} of direct DuckDB: episodes aggregate",
         f"x{over['episodes']:.2f}", over["episodes"] <= MAX_VIEW_OVERHEAD),
        (f"Views within {MAX_VIEW_OVERHEAD - 1:.0%} of direct DuckDB: steps scan",
         f"x{over['steps']:.2f}", over["steps"] <= MAX_VIEW_OVERHEAD),
    ]
    lines = [
        "## Lake I/O benchmark",
        "",
        f"- Machine: {machine()}",
        f"- Command: `{shlex.join(sys.orig_argv)}`",
        f"- Lake: {len({c.task for c in plan})} RWARE train tasks ({tasks[0]} to {tasks[-1]} "
        f"agents, 66 int8 obs features), {ck} checkpoints each; {episodes:,} episodes "
        f"({short:,} shorter than the 500-step limit), {steps:,} steps, "
        f"**{agent_steps:,} agent-steps**; synthetic sparse observations; {written}.",
        f"- Reads from a warm page cache (every file read once before timing); query times are "
        f"the median of {args.reps} runs after one warm-up.",
        "",
        "| Figure | Value |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "| Target | Measured | Result |",
        "|---|---|---|",
        *[f"| {a} | {b} | {'pass' if ok else '**FAIL**'} |" for a, b, ok in targets],
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- parallel writers


def _task_chunks(plan: list[Chunk], checkpoints: int) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for c in plan:
        out.setdefault(c.task.name, []).append(
            (c.checkpoint, c.quality, list(c.lengths), c.seed,
             (c.checkpoint + 1) * 20_000_000 // checkpoints))
    return out


def measure_parallel(root: Path, plan: list[Chunk], checkpoints: int, workers: int) -> dict:
    """Write the plan into fresh lakes: tasks one after another, then `workers` processes at
    once (a task each at a time); wall seconds, generation included in both."""
    from concurrent.futures import ProcessPoolExecutor

    from lake_schema import stress

    chunks = _task_chunks(plan, checkpoints)
    out = {"workers": workers, "agent_steps": sum(c.agent_steps for c in plan)}
    for mode in ("sequential", "parallel"):
        lake_dir = root / f"parallel-{mode}"
        shutil.rmtree(lake_dir, ignore_errors=True)
        t0 = time.perf_counter()
        if mode == "sequential":
            for task, cs in chunks.items():
                stress.write_synthetic(str(lake_dir), task, RUN, cs)
        else:
            with ProcessPoolExecutor(workers, mp_context=stress.context()) as pool:
                list(pool.map(stress.write_synthetic, [str(lake_dir)] * len(chunks),
                              list(chunks), [RUN] * len(chunks), list(chunks.values())))
        out[mode] = time.perf_counter() - t0
        rows = read_table(Lake(lake_dir), "episodes", Selection(env=ENV), ["length"])
        assert rows.num_rows == sum(len(c.lengths) for c in plan), (mode, rows.num_rows)
        shutil.rmtree(lake_dir, ignore_errors=True)
    return out


def parallel_rows(p: dict | None) -> list[tuple[str, str]]:
    if not p:
        return []
    return [
        ("Write, tasks one after another (wall, generation included)",
         fmt_rate(p["agent_steps"], p["sequential"])),
        (f"Write, {p['workers']} processes at once, a task each (wall, generation included)",
         fmt_rate(p["agent_steps"], p["parallel"])
         + f", x{p['sequential'] / p['parallel']:.2f}"),
    ]


# ---------------------------------------------------------------- before vs after


def run_revision(rev: str, args, tmp: Path) -> str:
    """Run revision `rev`'s own benchmark (its lake_schema, its lake_io.py) on its own lake
    with this run's data plan; returns its markdown report."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    tree = tmp / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "lake_schema",
                              "benchmarks/lake_io.py"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    out = tmp / "before.md"
    cmd = [sys.executable, str(tree / "benchmarks" / "lake_io.py"), "--root",
           str(tmp / "lake"), "--agent-steps", str(args.agent_steps), "--scale",
           str(args.scale), "--checkpoints", str(args.checkpoints), "--p-short",
           str(args.p_short), "--reps", str(args.reps), "--seed", str(args.seed),
           "--rewrite", "-q", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=tree, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(tree)})
    return out.read_text()


def _figures(markdown: str) -> dict[str, str]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("Figure", "---"):
            rows[cells[0]] = cells[1]
    return rows


def side_by_side(before: str, after: str, rev: str) -> str:
    b, a = _figures(before), _figures(after)
    lines = ["", f"### Before ({rev}, plain Parquet + journal) and after (Delta), one run", "",
             f"| Figure | before ({rev}) | after (Delta) |", "|---|---|---|"]
    lines += [f"| {k} | {b.get(k, '–')} | {v} |" for k, v in a.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--root", default="benchmarks/_data/lake", help="lake root (local)")
    p.add_argument("--agent-steps", type=int, default=20_000_000,
                   help="total agent-steps (steps x agents) to write")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply --agent-steps (e.g. 0.025 for a smoke run)")
    p.add_argument("--checkpoints", type=int, default=10, help="checkpoints per task")
    p.add_argument("--p-short", type=float, default=0.2,
                   help="probability that an episode ends before the 500-step limit")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per query")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rewrite", action="store_true", help="rewrite even a reusable lake")
    p.add_argument("--out", type=Path, help="also write the markdown section to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--parallel", type=int, default=0,
                   help="also time N writer processes against one after another")
    p.add_argument("--compare-with", metavar="REV",
                   help="first run git revision REV's benchmark, then print both side by side")
    args = p.parse_args(argv)

    started = time.perf_counter()
    before = None
    if args.compare_with:
        import tempfile

        with tempfile.TemporaryDirectory(dir=Path(args.root).resolve().parent) as tmp:
            print(f"running the benchmark of {args.compare_with}", file=sys.stderr)
            before = run_revision(args.compare_with, args, Path(tmp))
    lake = Lake(args.root)
    if lake.is_s3:
        sys.exit("this benchmark measures a local lake; --root must be a local path")
    total = int(args.agent_steps * args.scale)
    plan = make_plan(total, args.checkpoints, args.p_short, args.seed)
    digest = plan_digest(plan)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))

    manifest = None if args.rewrite else reusable(lake, plan, digest)
    reused = manifest is not None
    if reused:
        log(f"reusing the lake at {lake.root} ({total:,} agent-steps planned)")
    else:
        log(f"writing {sum(c.agent_steps for c in plan):,} agent-steps to {lake.root}")
        clear_lake(lake)
        write = write_lake(lake, plan, args.checkpoints, not args.quiet)
        manifest = {"version": MANIFEST_VERSION, "plan_digest": digest,
                    "agent_steps": total, "command": shlex.join(sys.orig_argv),
                    "write": write}
        path = Path(lake.path(MANIFEST))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=1))

    log("measuring bytes on disk")
    disk = disk_usage(lake)
    log("reading")
    reads = measure_reads(lake, plan)
    log("querying")
    queries = measure_queries(lake, args.reps)
    if args.parallel:
        log(f"writing again: one after another, then {args.parallel} processes at once")
        args.parallel_result = measure_parallel(Path(lake.path()).parent, plan,
                                                args.checkpoints, args.parallel)
    total_rows = sum(r[2] for r in queries["steps"]["result"])
    if total_rows != sum(c.steps for c in plan):
        raise AssertionError(f"steps scan counted {total_rows} rows, expected "
                             f"{sum(c.steps for c in plan)}")

    text = report(args, plan, manifest, reused, disk, reads, queries,
                  time.perf_counter() - started)
    if before is not None:
        text += side_by_side(before, text, args.compare_with)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
