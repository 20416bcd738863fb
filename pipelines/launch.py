"""Several Dagster runs at once, each in its own process: the demo's and the reproduction's
independent runs (one per task dataset, one per offline model or env) side by side.

Why processes: one online or offline training run keeps about 1.3-1.5 of this machine's 2
cores busy (XLA compiles on one thread; small env and network ops run one at a time), so two
runs side by side finish 1.5x sooner than one after the other (benchmarks/RESULTS.md). Each
run is an ordinary `execute_in_process` run of a job of `pipelines.definitions` in the
parent's Dagster instance, so the UI shows it as any other; the lake's Delta transactions
keep parallel writers apart. Workers are started with `spawn` (JAX does not survive `fork`)
and reused from one run to the next.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import dagster as dg


@dataclass(frozen=True)
class Launch:
    """One run: a job of `pipelines.definitions` with its run config; `label` names it in the
    progress lines and errors."""

    label: str
    job: str
    run_config: dict[str, Any]
    partition_key: str | None = None
    asset_selection: tuple[str, ...] = ()  # asset names; empty: the job's whole selection
    tags: dict[str, str] = field(default_factory=dict)
    after: tuple[str, ...] = ()  # labels of earlier launches that must succeed first


@dataclass(frozen=True)
class Outcome:
    """What came back from a run: whether it succeeded, per asset its first materialisation's
    plain metadata values (numbers, strings, booleans), and why it failed."""

    launch: Launch
    success: bool
    run_id: str | None  # None: the run never started (its config was refused)
    metadata: dict[str, dict[str, Any]]
    error: str = ""  # why it failed, one line

    @property
    def failure(self) -> str:
        """`label: error`, the line a caller prints for a failed run."""
        return f"{self.launch.label}: {self.error}"


def default_workers() -> int:
    """One run per CPU core this process may use (its affinity: a container's share, not
    the host's count)."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return max(1, len(cores) if cores else os.cpu_count() or 1)


def run_parallel(launches: Sequence[Launch], instance: dg.DagsterInstance,
                 workers: int | None = None, started: float | None = None
                 ) -> Iterator[Outcome]:
    """Run `launches` in up to `workers` processes (default: `default_workers()`), yielding
    each `Outcome` as its run ends. A launch starts once the launches it comes `after` have
    succeeded (of those ready, the first in the list first), so a chain of stages keeps every
    worker busy: the next stage's first run starts while the last one's slowest still runs.
    A failed run does not stop the others; the launches after it never start (their Outcome
    says why). `instance` must be persistent (a DAGSTER_HOME or `dg.instance_for_test()`),
    since the workers open it by reference; `started` (a `time.time()`) dates the progress
    lines."""
    if not launches:
        return
    if instance.is_ephemeral:
        raise ValueError("run_parallel needs a persistent Dagster instance (DAGSTER_HOME or "
                         "dg.instance_for_test()): its worker processes cannot open an "
                         "ephemeral one")
    _check_order(launches)
    ref = instance.get_ref()
    workers = min(workers or default_workers(), len(launches))
    started = time.time() if started is None else started
    pending, running = list(launches), {}
    succeeded, failed = set(), set()
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
    try:
        while pending or running:
            for launch in list(pending):
                blocked = [label for label in launch.after if label in failed]
                if blocked:
                    pending.remove(launch)
                    failed.add(launch.label)
                    yield Outcome(launch, False, None, {}, error=f"not run: {blocked[0]} failed")
                elif len(running) < workers and succeeded.issuperset(launch.after):
                    pending.remove(launch)
                    running[pool.submit(_run, ref, launch, started)] = launch
            if not running:  # everything left waits on a failed launch: reported above
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                outcome = future.result()
                (succeeded if outcome.success else failed).add(outcome.launch.label)
                yield outcome
    finally:  # a caller that stops early (or ^C) cancels the runs not yet started
        pool.shutdown(cancel_futures=True)


def _check_order(launches: Sequence[Launch]) -> None:
    """Labels are unique and each launch comes after earlier ones only (so no cycle)."""
    seen: set[str] = set()
    for launch in launches:
        if launch.label in seen:
            raise ValueError(f"two launches are labelled {launch.label!r}")
        unknown = [label for label in launch.after if label not in seen]
        if unknown:
            raise ValueError(f"launch {launch.label!r} comes after {unknown[0]!r}, which is not "
                             "an earlier launch")
        seen.add(launch.label)


def _run(ref: Any, launch: Launch, started: float) -> Outcome:
    """A worker's run (module level: `spawn` pickles it by name)."""
    import warnings

    from pipelines.definitions import defs

    warnings.filterwarnings("ignore", "scatter inputs have incompatible types", FutureWarning)
    print(f"[{time.time() - started:5.0f}s] {launch.label}", flush=True)
    job = defs.resolve_job_def(launch.job)
    with dg.DagsterInstance.from_ref(ref) as instance:
        try:
            result = job.execute_in_process(
                instance=instance, run_config=launch.run_config, raise_on_error=False,
                partition_key=launch.partition_key, tags=launch.tags or None,
                asset_selection=[dg.AssetKey(a) for a in launch.asset_selection] or None)
        except dg.DagsterInvalidConfigError as e:  # refused before the run started
            errors = "; ".join(_first_line(err.message) for err in e.errors)
            return Outcome(launch, False, None, {}, error=errors or _first_line(str(e)))
        except dg.DagsterError as e:  # e.g. an unknown partition
            return Outcome(launch, False, None, {}, error=_first_line(str(e)))
    metadata = {}
    for event in result.get_asset_materialization_events():
        key = event.asset_key.to_user_string()
        values = {k: v.value for k, v in event.materialization.metadata.items()
                  if isinstance(v.value, int | float | str | bool)}
        metadata.setdefault(key, values)
    error = ""
    for event in result.get_step_failure_events():
        cause = event.step_failure_data.error
        while cause is not None and cause.cause is not None:  # Dagster's wrappers, then ours
            cause = cause.cause
        if cause is not None:
            error = _first_line(cause.message)
            break
    return Outcome(launch, result.success, result.run_id, metadata,
                   error=error or ("" if result.success else "the run failed"))


def _first_line(message: str) -> str:
    return next((line.strip() for line in message.splitlines() if line.strip()), message)
