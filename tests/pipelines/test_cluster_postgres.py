"""The cluster shape on one machine: a real PostgreSQL server (Debian's package) holds the
Dagster instance (dagster-postgres); the webserver and the daemon run as their own processes
against it, as on a cluster; a backfill of `build_datasets` over three task partitions,
launched through the webserver's GraphQL API as the UI launches it, runs three at once
(queued run coordinator, concurrency 3; the default launcher starts each run as its own
process) and writes into one lake on the S3 server (moto, 127.0.0.1); then `check_datasets`
finds every partition complete, every check green, nothing lost.

Slow (215 s on 2 CPU cores shared with other tests: three JAX processes train at once), so
in `make test-slow`.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake, S3Options
from lake_schema.verify import verify
from pipelines.assets.status import COMPLETE_CHECK
from tests.helpers.dagster_ui import free_port, graphql

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["lbf/8x8-2p-2f", "lbf/10x10-3p-3f", "lbf/15x15-3p-5f"]
EPISODES = 16
# test_online_asset.py's tiny budget: two checkpoints of 16 episodes each.
ONLINE = {
    "total_env_steps": 4 * 2048, "num_checkpoints": 2, "episodes_per_checkpoint": EPISODES,
    "reference_episodes": 32, "num_envs": 32, "rollout_length": 64, "embed_dim": 32,
}
LOCATION = "pipelines.definitions"
BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
  } }
"""
LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  } }
"""



def _postgres_bin() -> Path:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        reason = ("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
                  "install Debian's postgresql (`make system-packages`)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(found[-1]).parent


@pytest.fixture
def postgres_port() -> Iterator[int]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off), stopped and
    deleted at teardown. The server refuses to run as root, so as root it runs as Debian's
    `postgres` user, in a directory that user owns."""
    bindir = _postgres_bin()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="sable-pg-"))
    if as_user:
        shutil.chown(base, "postgres")
    data, port = base / "data", free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    try:
        pg(str(bindir / "initdb"), "-D", str(data), "-U", "dagster", "--auth=trust",
           "-E", "UTF8", "--no-sync")
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w",
           "-o", f"-h 127.0.0.1 -p {port} -k {base} -F", "start")
        pg(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster",
           "dagster")
        yield port  # database `dagster`, user `dagster`, no password
    except subprocess.CalledProcessError as e:
        pytest.fail(f"PostgreSQL did not start: {e.cmd[len(as_user)]}: {e.stderr.decode()}")
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                            "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)



def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as f:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def _wait_for(what: str, done, deadline: float, logs: list[Path]) -> None:
    while not done():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}; " + " | ".join(_tail(p) for p in logs))
        time.sleep(1)


def _serving_webserver(env: dict, log: Path, logs: list[Path]
                       ) -> tuple[subprocess.Popen, int]:
    """The Dagster webserver on the code location, once it answers; (process, port)."""
    port = free_port()
    webserver = _start([str(Path(sys.executable).parent / "dagster-webserver"), "-m",
                        LOCATION, "-h", "127.0.0.1", "-p", str(port)], env, log)

    def serving() -> bool:
        assert webserver.poll() is None, _tail(log)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
            return True
        except OSError:
            return False

    try:
        _wait_for("the webserver", serving, time.time() + 180, logs)
    except BaseException:
        _stop(webserver)
        raise
    return webserver, port


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.s3
def test_backfill_on_postgres_three_at_once_into_one_s3_lake(
        postgres_port: int, s3_server: S3Options, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    # `scheme`: SQLAlchemy 2.1 maps postgresql:// to psycopg 3; dagster-postgres ships psycopg2
    (home / "dagster.yaml").write_text(f"""
storage:
  postgres:
    postgres_db: {{hostname: 127.0.0.1, port: {postgres_port}, db_name: dagster,
                  username: dagster, password: "", scheme: postgresql+psycopg2}}
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config: {{max_concurrent_runs: 3, dequeue_interval_seconds: 1}}
run_launcher:
  module: dagster._core.launcher
  class: DefaultRunLauncher
telemetry: {{enabled: false}}
""")
    bucket = "cluster-lake"
    lake = Lake(f"s3://{bucket}/lake", s3=s3_server)
    lake.fs.mkdir(bucket)
    # What every process of the deployment sees: the instance, the lake and its endpoint.
    env = {
        "DAGSTER_HOME": str(home), "SABLE_LAKE": lake.root, "JAX_PLATFORMS": "cpu",
        "SABLE_CHECKPOINTS": str(tmp_path / "checkpoints"), "SABLE_COMPUTE": "cpu",
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": s3_server.key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret, "AWS_REGION": s3_server.region,
        "SABLE_LAKE_S3_ADDRESSING_STYLE": "path",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bindir = Path(sys.executable).parent
    logs = [tmp_path / "webserver.log", tmp_path / "daemon.log"]
    daemon = _start([str(bindir / "dagster-daemon"), "run", "-m", LOCATION],
                    {**os.environ, **env}, logs[1])
    webserver = None
    try:
        webserver, port = _serving_webserver({**os.environ, **env}, logs[0], logs)
        repo = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
        launched = graphql(port, BACKFILL, {"params": {
            "selector": {"partitionSetName": "build_datasets_partition_set",
                         "repositorySelector": repo},
            "partitionNames": TASKS,
            "runConfigData": {"ops": {"online_sable": {"config": ONLINE}}},
        }})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        with dg.DagsterInstance.get() as instance:
            def backfill_runs() -> list:
                return instance.get_run_records(
                    dg.RunsFilter(tags={"dagster/backfill": backfill_id}))

            def backfill_finished() -> bool:
                assert daemon.poll() is None, _tail(logs[1])
                runs = backfill_runs()
                return len(runs) == len(TASKS) and all(r.dagster_run.is_finished for r in runs)

            _wait_for("the backfill's runs", backfill_finished, time.time() + 1500, logs)
            runs = backfill_runs()
            failed = [r.dagster_run.run_id for r in runs if not r.dagster_run.is_success]
            assert not failed, [
                e.message for rid in failed for e in instance.all_logs(rid)
                if e.is_dagster_event and e.dagster_event.is_failure][:5]
            assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == sorted(TASKS)
            # Three at once: every run started before any of them ended.
            assert max(r.start_time for r in runs) < min(r.end_time for r in runs), [
                (r.start_time, r.end_time) for r in runs]

            # Every partition's checks (run inside its backfill run) passed.
            for task in TASKS:
                mats = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey("online_sable"),
                                          asset_partitions=[task]), limit=10).records
                assert len(mats) == 1, task
            evaluations = [
                e.dagster_event.event_specific_data
                for r in runs for e in instance.all_logs(
                    r.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
            assert len(evaluations) == 7 * len(TASKS)  # the seven online checks per partition
            assert all(c.passed for c in evaluations), [
                (c.check_name, c.partition) for c in evaluations if not c.passed]
            assert sorted({c.partition for c in evaluations}) == sorted(TASKS)

            # check_datasets, queued like any run: every task dataset complete.
            status = graphql(port, LAUNCH, {"params": {
                "selector": {**repo, "jobName": "check_datasets"}, "mode": "default",
            }})["launchRun"]
            assert status["__typename"] == "LaunchRunSuccess", status
            run_id = status["run"]["runId"]
            _wait_for("check_datasets", lambda: instance.get_run_by_id(run_id).is_finished,
                      time.time() + 600, logs)
            assert instance.get_run_by_id(run_id).is_success
            mat = instance.fetch_materializations(dg.AssetKey("dataset_status"),
                                                  limit=1).records[0]
            meta = mat.asset_materialization.metadata
            assert meta["tasks"].value == len(TASKS) and meta["incomplete"].value == "none"
            (complete,) = [
                e.dagster_event.event_specific_data for e in instance.all_logs(
                    run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
            assert complete.check_name == COMPLETE_CHECK and complete.passed

        # Nothing lost: the one lake holds every checkpoint's episodes of every task, once,
        # each with its steps and references; every file verifies.
        episodes = read_table(lake, "episodes", Selection(env="lbf"))
        counts = {}
        for task, ck in zip(episodes["task"].to_pylist(), episodes["checkpoint"].to_pylist(),
                            strict=True):
            counts[(task, ck)] = counts.get((task, ck), 0) + 1
        assert counts == {(t.split("/")[1], k): EPISODES for t in TASKS for k in range(2)}
        assert read_table(lake, "references", Selection(env="lbf")).num_rows == len(TASKS)
        steps = read_table(lake, "steps", Selection(env="lbf"), columns=["task"])
        assert steps.num_rows == sum(episodes["length"].to_pylist())
        report = verify(lake)
        assert report.ok, report
    finally:
        _stop(daemon)
        if webserver is not None:
            _stop(webserver)


# A model that trains for tens of seconds on 2 cores (long enough to be killed mid-way) and
# compiles once for all four models of the test.
TINY_MODEL = {"env": "lbf", "split": "demo-train", "embed_dim": 16, "num_heads": 2,
              "num_updates": 300, "batch_size": 6, "seq_len": 5, "eval_every": 1000}
REEXECUTE = """
mutation ($params: ReexecutionParams!) {
  launchPipelineReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  } }
"""


def _instance_yaml(home: Path, postgres_port: int) -> None:
    """dagster.yaml's queue (one run per `sable-lake/gpu` value) at 2 runs at once, on
    PostgreSQL."""
    import yaml

    queue = yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_coordinator"]
    queue["config"]["max_concurrent_runs"] = 2
    (home / "dagster.yaml").write_text(yaml.safe_dump({
        "storage": {"postgres": {"postgres_db": {
            "hostname": "127.0.0.1", "port": postgres_port, "db_name": "dagster",
            "username": "dagster", "password": "", "scheme": "postgresql+psycopg2"}}},
        "run_coordinator": queue, "telemetry": {"enabled": False}}))


def _overlap(records: list) -> int:
    """The most runs of `records` that ran at one moment."""
    edges = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
@pytest.mark.cluster
def test_models_as_partitions_through_the_postgres_queue(postgres_port: int, tmp_path: Path,
                                                         monkeypatch) -> None:
    """Four model partitions in one backfill run at most two at once (the queue's limit) and
    all land; one killed mid-training is failed in the instance with its error, the others
    go on, and its re-execution (as the UI launches it) finishes that model alone; runs
    tagged for one GPU never share it."""
    from lake_schema.catalogue import split_tasks
    from lake_schema.testing import fill_lake
    from lake_schema.writer import write_reference
    from pipelines.assets.offline import OfflineModelConfig
    from pipelines.experiments import Experiment
    from pipelines.launch import gpu_tags, queue_daemon, submit, wait

    home = tmp_path / "dagster"
    home.mkdir()
    _instance_yaml(home, postgres_port)
    env = {"DAGSTER_HOME": str(home), "SABLE_LAKE": str(tmp_path / "lake"),
           "SABLE_LAKE_MODELS": str(tmp_path / "models"), "JAX_PLATFORMS": "cpu",
           "SABLE_LAKE_CACHE": str(tmp_path / "cache"), "SABLE_COMPUTE": "cpu"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    lake = Lake(tmp_path / "lake")
    train = [t.name for t in split_tasks("lbf", "demo-train")]
    test = [t.name for t in split_tasks("lbf", "demo-test")]
    fill_lake(lake, train, checkpoints=2, episodes=4, lengths=(8, 30), seed=3)
    for task in train + test:
        write_reference(lake, task, "online", sable_returns=[0.6], random_returns=[0.1],
                        env_steps=1)
    models = tuple(OfflineModelConfig(**TINY_MODEL, algorithm=a, first_k=k).build()
                   for a in ("bc", "oryx") for k in (1, None))
    evaluation = {"episodes": 2}
    experiment = Experiment("queue", (), models, ops={"offline_eval_train": evaluation,
                                                      "offline_eval_test": evaluation})
    logs = [tmp_path / "daemon.log", tmp_path / "webserver.log"]
    with dg.DagsterInstance.get() as instance, queue_daemon(instance, logs[0]):
        backfill_id = submit(instance, experiment)

        def model_runs() -> list:
            return instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill":
                                                                backfill_id}))

        def training_run() -> tuple[str, int] | None:
            """(run id, pid) of a model run's process once it trains (its step started)."""
            for record in model_runs():
                run = record.dagster_run
                if run.status != dg.DagsterRunStatus.STARTED:
                    continue
                events = instance.all_logs(run.run_id)
                started = any(e.is_dagster_event and e.dagster_event.is_step_start
                              for e in events)
                pids = [e.message for e in events if "Started process for run (pid:" in
                        (e.message or "")]
                if started and pids:
                    return run.run_id, int(pids[0].split("pid: ")[1].rstrip(").").strip())
            return None

        found: list[tuple[str, int]] = []
        _wait_for("a model run training",
                  lambda: bool(found.append(training_run()) or found[-1]),
                  time.time() + 600, logs)
        victim, pid = found[-1]
        time.sleep(3)  # mid-training
        os.kill(pid, signal.SIGKILL)
        finished = {f.run_id: f for f in wait(instance, backfill_id)}
        killed = finished[victim]
        assert not killed.success and "\n" not in killed.error
        assert any(w in killed.error for w in ("unexpectedly", "-9", "SIGKILL")), killed.error
        records = model_runs()
        assert _overlap(records) == 2  # the limit, and used
        landed = {r.dagster_run.tags["dagster/partition"] for r in records
                  if r.dagster_run.is_success}
        assert len(landed) == 3  # the others went on

        # re-executed as the UI does it, through the webserver and the queue
        webserver, port = _serving_webserver(
            {**os.environ, **env, "PYTHONPATH": str(ROOT)}, logs[1], logs)
        try:
            again = graphql(port, REEXECUTE, {"params": {
                "parentRunId": killed.run_id, "strategy": "ALL_STEPS"}})
            again = again["launchPipelineReexecution"]
            assert again["__typename"] == "LaunchRunSuccess", again
            rerun = again["run"]["runId"]
            _wait_for("the re-execution", lambda: instance.get_run_by_id(rerun).is_finished,
                      time.time() + 900, logs)
            assert instance.get_run_by_id(rerun).is_success
            partition = instance.get_run_by_id(killed.run_id).tags["dagster/partition"]
            assert instance.get_run_by_id(rerun).tags["dagster/partition"] == partition
            evaluated = {r["model"] for r in read_table(lake, "evaluations",
                                                          Selection(env="lbf")).to_pylist()}
            assert evaluated == landed | {partition}

            # three report runs tagged for GPU 0 (queued together): one at a time
            gpu = submit(instance, Experiment("gpu"), tags=gpu_tags("0"))
            second = submit(instance, Experiment("gpu"), tags=gpu_tags("0"))
            third = submit(instance, Experiment("gpu"), tags=gpu_tags("0"))
            for backfill in (gpu, second, third):
                wait(instance, backfill)
            tagged = instance.get_run_records(dg.RunsFilter(tags={"sable-lake/gpu": "0"}))
            assert len(tagged) == 3 and all(r.dagster_run.is_success for r in tagged)
            assert _overlap(tagged) == 1
        finally:
            _stop(webserver)
