"""Where the test suite's time goes: a pytest plugin that logs every JAX compilation.

    PYTHONPATH=benchmarks .venv/bin/python -m pytest -m "not slow" -n auto --dist loadscope \
        -p suite_profile --durations=60
    .venv/bin/python benchmarks/suite_profile.py   # the summary

Each pytest process (each xdist worker) appends one JSON line per compilation to
`benchmarks/_data/suite_compiles.jsonl`: the test that ran, the function's name, the
phase (trace, lowering or XLA compile) and its seconds; and one per test phase with its
wall-clock span, for each worker's timeline (delete the file before a new run).
Compilations in child processes the tests start (the demo chain, the killed run) are not
seen: their tests' durations say what they cost.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

LOG = Path(__file__).parent / "_data" / "suite_compiles.jsonl"
PHASES = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
}
_current = {"test": "(collection)"}


def pytest_configure(config) -> None:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    from jax import monitoring

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")

    def listen(event: str, seconds: float, **kwargs) -> None:
        if event in PHASES:
            record = {"worker": worker, "test": _current["test"], "phase": PHASES[event],
                      "fun": kwargs.get("fun_name", "?"), "seconds": round(seconds, 4)}
            with LOG.open("a") as log:
                log.write(json.dumps(record) + "\n")

    monitoring.register_event_duration_secs_listener(listen)


def pytest_runtest_logstart(nodeid: str, location) -> None:
    _current["test"] = nodeid


def pytest_runtest_logreport(report) -> None:
    """Each test phase's wall-clock span, for the workers' timelines (logged by the process
    that ran it: xdist's controller sees the workers' reports again, with their `node`)."""
    if hasattr(report, "node"):
        return
    record = {"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "test": report.nodeid,
              "phase": f"test {report.when}", "start": report.start, "stop": report.stop}
    with LOG.open("a") as log:
        log.write(json.dumps(record) + "\n")


def summarise(path: Path = LOG, top: int = 40) -> None:
    """Seconds by phase, by module and by (module, function), largest first."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    spans = [r for r in records if "start" in r]
    records = [r for r in records if "seconds" in r]
    timeline(spans)
    by_phase: collections.Counter[str] = collections.Counter()
    by_module: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[tuple[str, str]] = collections.Counter()
    count: collections.Counter[tuple[str, str]] = collections.Counter()
    for record in records:
        module = record["test"].split("::")[0]
        by_phase[record["phase"]] += record["seconds"]
        by_module[module] += record["seconds"]
        by_function[(module, record["fun"])] += record["seconds"]
        count[(module, record["fun"])] += 1
    print("seconds by phase:", {k: round(v, 1) for k, v in by_phase.most_common()})
    print(f"\n{'seconds':>8}  module (trace + lower + compile)")
    for module, seconds in by_module.most_common(top):
        print(f"{seconds:8.1f}  {module}")
    print(f"\n{'seconds':>8} {'n':>4}  module :: function")
    for (module, fun), seconds in by_function.most_common(top):
        print(f"{seconds:8.1f} {count[(module, fun)]:4d}  {module} :: {fun}")


def timeline(spans: list[dict]) -> None:
    """Per worker: busy seconds, when it finished, and the modules in the order it ran them."""
    if not spans:
        return
    t0 = min(s["start"] for s in spans)
    workers: dict[str, list[dict]] = collections.defaultdict(list)
    for span in spans:
        workers[span["worker"]].append(span)
    for worker, items in sorted(workers.items()):
        busy = sum(s["stop"] - s["start"] for s in items)
        end = max(s["stop"] for s in items) - t0
        print(f"{worker}: busy {busy:6.0f} s, finished at {end:6.0f} s")
        modules: dict[str, list[float]] = {}
        for span in sorted(items, key=lambda s: s["start"]):
            first_last = modules.setdefault(span["test"].split("::")[0], [span["start"], 0.0])
            first_last[1] = span["stop"]
        for module, (start, stop) in modules.items():
            print(f"    {start - t0:6.0f} -> {stop - t0:6.0f} s  {module}")


if __name__ == "__main__":
    summarise(Path(sys.argv[1]) if len(sys.argv) > 1 else LOG)
