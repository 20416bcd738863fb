"""Runs side by side (`pipelines.launch`): each in its own process, in the parent's Dagster
instance, with what came back (success, metadata, a one-line error) per run; a refused or
failed run does not stop the others."""

import os

import dagster as dg
import pytest

from lake_schema.storage import Lake
from pipelines.launch import Launch, default_workers, run_parallel


def test_runs_come_back_with_metadata_and_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SABLE_LAKE", str(tmp_path / "lake"))
    Lake(tmp_path / "lake").prepare_for_writing()  # an empty lake
    missing = tmp_path / "no-lake"
    launches = [
        Launch("status", "check_datasets", {}),
        Launch("no lake", "check_datasets",
               {"resources": {"lake": {"config": {"root": str(missing)}}}}),
        Launch("bad config", "build_datasets",
               {"ops": {"online_sable": {"config": {"no_such_knob": 1}}}},
               partition_key="lbf/8x8-2p-2f"),
        Launch("bad task", "build_datasets", {}, partition_key="lbf/99x99-9p-9f"),
        Launch("status again", "check_datasets", {}),
    ]
    with dg.instance_for_test() as instance:
        outcomes = {o.launch.label: o for o in run_parallel(launches, instance, workers=2)}
        runs = {r.run_id: r for r in instance.get_runs()}

    assert set(outcomes) == {launch.label for launch in launches}
    for label in ("status", "status again"):
        ok = outcomes[label]
        assert ok.success and ok.error == "" and runs[ok.run_id].is_success
        assert ok.metadata["dataset_status"]["tasks"] == 0  # an empty lake
    for label, words in (("bad config", "no_such_knob"), ("bad task", "99x99-9p-9f")):
        refused = outcomes[label]
        assert not refused.success and refused.run_id is None
        assert words in refused.error and "\n" not in refused.error
        assert refused.failure.startswith(f"{label}: ")
    failed = outcomes["no lake"]  # started, then failed
    assert not failed.success and runs[failed.run_id].is_failure
    assert f"lake root {missing} does not exist" in failed.error and "\n" not in failed.error
    assert len(runs) == 3  # the refused ones never started


def test_a_launch_starts_after_the_ones_it_needs_and_never_after_a_failure(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("SABLE_LAKE", str(tmp_path / "lake"))
    Lake(tmp_path / "lake").prepare_for_writing()
    no_lake = {"resources": {"lake": {"config": {"root": str(tmp_path / "no-lake")}}}}
    launches = [
        Launch("no lake", "check_datasets", no_lake),
        Launch("status", "check_datasets", {}),
        Launch("after the failure", "check_datasets", {}, after=("no lake",)),
        Launch("after that", "check_datasets", {}, after=("after the failure",)),
        Launch("after status", "check_datasets", {}, after=("status",)),
    ]
    with dg.instance_for_test() as instance:
        outcomes = {o.launch.label: o for o in run_parallel(launches, instance, workers=2)}
        runs = {r.dagster_run.run_id: r for r in instance.get_run_records()}

    assert set(outcomes) == {launch.label for launch in launches}
    assert not outcomes["no lake"].success and outcomes["status"].success
    for label, cause in (("after the failure", "no lake"), ("after that", "after the failure")):
        assert not outcomes[label].success and outcomes[label].run_id is None
        assert outcomes[label].error == f"not run: {cause} failed"
    after, before = (runs[outcomes[label].run_id] for label in ("after status", "status"))
    assert outcomes["after status"].success and after.start_time >= before.end_time
    assert len(runs) == 3  # the two after the failure never started


@pytest.mark.parametrize("launches, message", [
    ([Launch("a", "check_datasets", {}, after=("b",)), Launch("b", "check_datasets", {})],
     "launch 'a' comes after 'b', which is not an earlier launch"),
    ([Launch("a", "check_datasets", {}), Launch("a", "check_datasets", {})],
     "two launches are labelled 'a'"),
])
def test_an_order_that_cannot_run_is_refused_before_any_process_starts(launches, message):
    with dg.instance_for_test() as instance, pytest.raises(ValueError, match=message):
        list(run_parallel(launches, instance))


def test_an_ephemeral_instance_is_refused_before_any_process_starts():
    with pytest.raises(ValueError, match="persistent Dagster instance"):
        list(run_parallel([Launch("status", "check_datasets", {})],
                          dg.DagsterInstance.ephemeral()))


def test_one_worker_per_core_this_process_may_use():
    allowed = len(os.sched_getaffinity(0))
    assert default_workers() == allowed and 1 <= allowed <= os.cpu_count()
