"""Every experiment goes through the Dagster instance's run queue, as one asset backfill.

`submit` registers the experiment's models (each a partition of the offline assets, keyed by
its config id) and submits one backfill of its task datasets, its models with their
evaluations, and the report. From there everything is Dagster's: the backfill daemon starts
each run once what it reads is materialised (asset dependencies), the queued run coordinator
decides how many run at once (`max_concurrent_runs`, and one run per GPU through the
`sable-lake/gpu` tag limit in dagster.yaml), and the run launcher starts each run as its own
process (`DefaultRunLauncher` on one machine; Kubernetes or Docker on a cluster: README,
"Scaling out"). The UI shows each run, its logs and failures, and re-executes a failed one.

`queue_daemon` runs the daemon, and one code server that launches every run, for the length
of a command (`make demo`, `benchmarks/reproduce.py`) when none is running (`make ui` runs
one), and `wait` follows the backfill until it ends, printing each run as it finishes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from lake_schema.catalogue import split_tasks
from pipelines.experiments import Experiment
from pipelines.partitions import HELD_OUT_TASKS, TRAINING_TASKS, model_partitions, task_partitions
from trainer.data.selection import DataSelection
from trainer.offline.config import OfflineConfig, config_id, model_name
from trainer.offline.runs import eval_targets, register_model

ROOT = Path(__file__).resolve().parents[1]
# The definitions' module, and the code location's name: what `-m pipelines.definitions`
# (`make ui`'s `dagster dev`) names it, so the UI re-executes the runs launched here.
LOCATION_NAME = "pipelines.definitions"
DATASET_ASSETS = ("online_sable", "dataset_card")
MODEL_ASSETS = ("offline_model", "offline_eval_train", "offline_eval_test")
# Whether a daemon serves the instance: its queue and backfill threads beat every 30 s.
HEARTBEAT_TOLERANCE_S = 75
GPU_TAG = "sable-lake/gpu"


@dataclass(frozen=True)
class Finished:
    """A run of the backfill that ended: what it ran, whether it succeeded, and why not."""

    run_id: str
    what: str  # `online_sable lbf/8x8-2p-2f`, `model lbf-bc-1a2b3c4d5e6f`, `report`
    success: bool
    seconds: float
    error: str = ""  # the first line of the first failure

    def line(self) -> str:
        outcome = "done" if self.success else f"FAILED: {self.error}"
        return f"{self.what}: {outcome} ({self.seconds:.0f} s, run {self.run_id[:8]})"


def gpu_tags(device: str = "0") -> dict[str, str]:
    """The tags of a run that needs one GPU: `sable-lake/gpu` (dagster.yaml's queue limit,
    one run per device value at a time) and Kubernetes' request of one GPU for the run's
    pod (read by `K8sRunLauncher`; other launchers ignore it)."""
    import json

    return {GPU_TAG: device, "dagster-k8s/config": json.dumps(
        {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}})}


def add_models(instance: dg.DagsterInstance,
               models: Sequence[tuple[OfflineConfig, DataSelection]], models_dir: str = ""
               ) -> list[str]:
    """Register each (config, selection) and add it as a partition of the offline assets
    (once); returns their config ids, in order."""
    keys = list(dict.fromkeys(register_model(models_dir, c, s) for c, s in models))
    known = set(instance.get_dynamic_partitions(model_partitions.name))
    if new := [k for k in keys if k not in known]:
        instance.add_dynamic_partitions(model_partitions.name, new)
    return keys


def submit(instance: dg.DagsterInstance, experiment: Experiment, models_dir: str = "",
           skip_models: Collection[str] = (), tags: dict[str, str] | None = None) -> str:
    """Register the experiment's models as partitions and submit one backfill of its runs;
    returns the backfill id. Models in `skip_models` (config ids, e.g. already evaluated)
    are registered but not run again. A model that would read one of the experiment's
    datasets without waiting for it is a ValueError (`check_waits`), before anything is
    registered."""
    check_waits(experiment)
    keys = [k for k in add_models(instance, experiment.models, models_dir)
            if k not in skip_models]
    subsets: dict[dg.AssetKey, object] = {}
    if experiment.datasets:
        tasks = task_partitions.subset_with_partition_keys(list(experiment.datasets))
        subsets |= {dg.AssetKey(a): tasks for a in DATASET_ASSETS}
    if keys:
        models = model_partitions.subset_with_partition_keys(keys)
        subsets |= {dg.AssetKey(a): models for a in MODEL_ASSETS}
    unpartitioned = {dg.AssetKey("report")}
    if experiment.datasets:
        unpartitioned.add(dg.AssetKey("dataset_status"))
    backfill_id = make_new_backfill_id()
    instance.add_backfill(PartitionBackfill.from_asset_graph_subset(
        backfill_id=backfill_id, backfill_timestamp=time.time(),
        tags={**experiment.run_tags, **(tags or {})}, dynamic_partitions_store=instance,
        asset_graph_subset=AssetGraphSubset(partitions_subsets_by_asset_key=subsets,
                                            non_partitioned_asset_keys=unpartitioned),
        title=experiment.name, description=f"{len(experiment.datasets)} task datasets, "
        f"{len(keys)} models, the report", run_config=experiment.run_config(models_dir)))
    return backfill_id


def check_waits(experiment: Experiment) -> None:
    """ValueError naming the first model whose run would read a dataset the experiment
    records without waiting for it: a model and its training-task evaluation wait for the
    datasets of tasks some split trains on, its held-out evaluation for those some split
    holds out (`pipelines.partitions`)."""
    recorded = set(experiment.datasets)
    for config, selection in experiment.models:
        reads = (
            ("offline_model", TRAINING_TASKS, "trains on", selection.task_names),
            ("offline_eval_train", TRAINING_TASKS, "trains on",
             _evaluated(experiment, "offline_eval_train", config, selection)),
            ("offline_eval_test", HELD_OUT_TASKS, "holds out",
             _evaluated(experiment, "offline_eval_test", config, selection)),
        )
        for asset, waited_for, role, tasks in reads:
            if unwaited := [t for t in tasks if t in recorded and t not in waited_for]:
                name = model_name(config.algorithm, len(selection.task_names), config.seed)
                raise ValueError(
                    f"model {name}: {asset} reads {unwaited[0]}, which this experiment "
                    f"records, but waits only for the datasets of tasks a split {role}; "
                    f"record {unwaited[0]} in a launch of its own first")


def _evaluated(experiment: Experiment, asset: str, config: OfflineConfig,
               selection: DataSelection) -> list[str]:
    """The tasks the evaluation `asset` of the model runs on, by the evaluation's own rule
    (`trainer.offline.runs.eval_targets`) and the experiment's config of that asset; none
    when it names none (the evaluation itself then says so)."""
    op = experiment.ops.get(asset, {})
    info = {"tasks": list(selection.task_names), "selection": {"split": selection.split},
            "config_id": config_id(config, selection)}
    try:
        tasks, split = eval_targets(info, asset.removeprefix("offline_eval_"),
                                    op.get("tasks"), op.get("split"))
    except ValueError:
        return []
    names = tasks or [t.name for t in split_tasks(config.env, split)]
    return [t if "/" in t else f"{config.env}/{t}" for t in names]


def daemon_running(instance: dg.DagsterInstance) -> bool:
    """Whether a daemon serves this instance's queue and backfills (recent heartbeats)."""
    beats = instance.get_daemon_heartbeats()
    now = time.time()
    return all(kind in beats and now - beats[kind].timestamp < HEARTBEAT_TOLERANCE_S
               for kind in ("BACKFILL", "QUEUED_RUN_COORDINATOR"))


@contextmanager
def queue_daemon(instance: dg.DagsterInstance, log: Path | None = None,
                 timeout_s: float = 180) -> Iterator[subprocess.Popen | None]:
    """The instance's daemon for the length of the block: started here (its output in
    `log`, default `$DAGSTER_HOME/daemon.log`; the block gets its process) unless one already
    runs (the block gets None), stopped after.

    Beside it, one code server for the block (`code_server`): the daemon started alone
    starts its own and a new one at each of its workspace reloads (every 60 s), each
    importing the definitions again, which on 2 cores slowed the runs beside them
    (benchmarks/RESULTS.md)."""
    if daemon_running(instance):
        yield None
        return
    log = log or Path(instance.root_directory) / "daemon.log"
    with open(log, "ab") as out, code_server(out) as workspace:
        daemon = _start([str(_binary("dagster-daemon")), "run", "-w", str(workspace)], out)
        try:
            _wait_until(lambda: daemon_running(instance), daemon, timeout_s,
                        f"the Dagster daemon did not start; its log: {log}")
            yield daemon
        finally:
            _stop(daemon)


@contextmanager
def code_server(out: IO[bytes], timeout_s: float = 120) -> Iterator[Path]:
    """A code server of the definitions on a socket for the length of the block, under the
    location name `dagster dev -m pipelines.definitions` gives them (so the UI re-executes
    the runs it launched); the block gets a workspace file pointing at it. It also starts
    each run's process (`DefaultRunLauncher`)."""
    with tempfile.TemporaryDirectory(prefix="sable-lake-") as tmp:
        socket, workspace = Path(tmp) / "code.sock", Path(tmp) / "workspace.yaml"
        workspace.write_text(json.dumps({"load_from": [{"grpc_server": {
            "socket": str(socket), "location_name": LOCATION_NAME}}]}))  # JSON is YAML
        server = _start([str(_binary("dagster")), "api", "grpc", "-m", LOCATION_NAME,
                         "--socket", str(socket), "--location-name", LOCATION_NAME], out)
        try:
            _wait_until(lambda: serving(socket), server, timeout_s,
                        f"the Dagster code server did not start; its log: {out.name}")
            yield workspace
        finally:
            _stop(server)


def serving(socket: Path) -> bool:
    """Whether the code server on `socket` answers gRPC's health check as serving (it
    does once its definitions loaded)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if not socket.exists():
        return False
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="DagsterApi"), timeout=2)
        except grpc.RpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen, timeout_s: float,
                failure: str) -> None:
    """Poll `ready` until it holds; RuntimeError `failure` when `process` ends first or
    `timeout_s` passes."""
    deadline = time.time() + timeout_s
    while not ready():
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.2)


def _binary(name: str) -> Path:
    return Path(sys.executable).with_name(name)


def _start(command: list[str], out: IO[bytes]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": _pythonpath()},
                            stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def _die_with_parent() -> None:
    """In the daemon's process before it starts: on Linux, end it when the command that
    started it dies (killed, not only stopped by `queue_daemon`), so no daemon outlives it
    and goes on launching runs."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pythonpath() -> str:
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def wait(instance: dg.DagsterInstance, backfill_id: str,
         on_finished: Callable[[Finished], None] = lambda f: None,
         poll_s: float = 2.0) -> list[Finished]:
    """Follow the backfill until it ends: every run's outcome, passed to `on_finished` as
    each run ends. It ends when the backfill does, or as soon as its report run ended with
    every other run finished (the report is the last run of an experiment)."""
    seen: dict[str, Finished] = {}
    while True:
        records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        for record in records:
            run = record.dagster_run
            if run.is_finished and run.run_id not in seen:
                seen[run.run_id] = finished = Finished(
                    run.run_id, _describe(run), run.is_success,
                    (record.end_time or 0) - (record.start_time or record.end_time or 0),
                    "" if run.is_success else first_error(instance, run.run_id))
                on_finished(finished)
        backfill = instance.get_backfill(backfill_id)
        reported = any(f.what == "report" for f in seen.values())
        if backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING,
                                   BulkActionStatus.FAILING) or (
                reported and all(r.dagster_run.is_finished for r in records)):
            return list(seen.values())
        time.sleep(poll_s)


def partition_of(run: dg.DagsterRun) -> str:
    """The partition a run materialises: its `dagster/partition` tag, or the one key of its
    partition range (a backfill's dataset runs, `pipelines.partitions.DATASET_RUNS`); ""
    for none."""
    tags = run.tags
    start = tags.get("dagster/asset_partition_range_start")
    if start is not None and start == tags.get("dagster/asset_partition_range_end"):
        return start
    return tags.get("dagster/partition", "")


def _describe(run: dg.DagsterRun) -> str:
    assets = {k.to_user_string() for k in run.asset_selection or ()}
    partition = partition_of(run)
    if "online_sable" in assets:
        return f"online Sable -> lake {partition}"
    if assets & set(MODEL_ASSETS):
        tags = run.tags
        what = "held-out evaluation of model" if assets == {"offline_eval_test"} else "model"
        if {"sable-lake/algorithm", "sable-lake/tasks", "sable-lake/seed"} <= tags.keys():
            name = model_name(tags["sable-lake/algorithm"], tags["sable-lake/tasks"],
                              tags["sable-lake/seed"])
            return f"{what} {partition} ({name})"
        return f"{what} {partition}"
    return ", ".join(sorted(assets)) or run.job_name


def first_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first line of the run's first step failure (the innermost cause: ours, not
    Dagster's wrappers), else of its run failure (e.g. a killed run process)."""
    step_failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    for event in step_failures:
        cause = event.dagster_event.step_failure_data.error
        while cause is not None and cause.cause is not None:
            cause = cause.cause
        if cause is not None:
            return _first_line(cause.message)
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        # the code server's word on a run process that died: "[DagsterApiServer] Run
        # execution process for <id> was terminated by signal 9 (SIGKILL). This usually
        # ...", its first sentence
        message = event.message or ""
        if "Run execution process for" in message:
            said = message.split("] ", 1)[-1]
            return said.split(". ", 1)[0].rstrip(".") + "."
    return "the run failed (see its log in the UI)"


def _first_line(message: str) -> str:
    return next((line.strip() for line in message.splitlines() if line.strip()), message)
