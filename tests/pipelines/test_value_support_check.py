"""The `online_returns_to_go_in_value_support` asset check: passes on data whose discounted
returns-to-go fit the env's value support, fails naming the task and the share when more
than 1% lie outside (connector's rewards summed over agents, the old convention)."""

import dataclasses

import dagster as dg
import numpy as np
import pytest

from lake_schema.catalogue import get_task
from lake_schema.checks import returns_to_go_in_support
from lake_schema.testing import synthetic_episodes
from lake_schema.writer import write_episodes
from pipelines.assets.online import (
    ASSET,
    online_checks,
    online_returns_to_go_in_value_support,
)
from pipelines.partitions import task_partitions
from pipelines.resources import default_resources

CONNECTOR = "connector/12x12x4a"
LBF = "lbf/8x8-2p-2f"


@pytest.fixture(scope="module")
def connector_random():
    """Real connector episodes: the project's random baseline (one fresh episode per env)."""
    from trainer.recording import collect_random_episodes

    return collect_random_episodes(CONNECTOR, 24, seed=1)


def _run_check(lake, task: str, run: str, num_checkpoints: int) -> dg.AssetCheckEvaluation:
    """The asset check as Dagster runs it after `online_sable` materialised `run` of the
    partition: a stand-in `online_sable` (same key and partitions, no training) reports the
    metadata the real one does, then the real check reads the lake."""

    @dg.asset(name=ASSET, partitions_def=task_partitions)
    def recorded() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"run": run, "num_checkpoints": num_checkpoints})

    result = dg.materialize(
        [recorded, online_returns_to_go_in_value_support], partition_key=task,
        resources=default_resources(lake.root), instance=dg.DagsterInstance.ephemeral())
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_passes_on_lbf_data_within_its_support(lake):
    # lbf's rewards are normalised: an episode's sum to at most 1 (all food eaten)
    task = get_task(LBF)
    for ck in range(2):
        batch = synthetic_episodes(task, [12, 30, 7], seed=ck)
        starts = np.concatenate([[0], np.cumsum(batch.lengths)[:-1]])
        sums = np.add.reduceat(batch.reward, starts)
        scale = np.repeat(1.0 / np.maximum(sums, 1.0), batch.lengths).astype(np.float32)
        write_episodes(lake, task, "r1", ck, "low",
                       dataclasses.replace(batch, reward=batch.reward * scale))
    evaluation = _run_check(lake, LBF, "r1", 2)
    assert evaluation.passed, evaluation.metadata
    assert evaluation.metadata["outside_fraction"].value == 0.0
    assert evaluation.metadata["steps"].value == 2 * (12 + 30 + 7)


def test_connector_random_data_passes_and_summed_rewards_fail_naming_task_and_share(
        lake, connector_random):
    task = get_task(CONNECTOR)
    batch = connector_random
    assert batch.lengths.max() <= task.time_limit == 40
    write_episodes(lake, task, "random", 0, "low", batch)
    evaluation = _run_check(lake, CONNECTOR, "random", 1)
    assert evaluation.passed, evaluation.metadata
    assert evaluation.metadata["outside_fraction"].value == 0.0

    # the same episodes with the team reward summed over agents (the old convention)
    summed = dataclasses.replace(batch, reward=batch.reward * task.num_agents)
    write_episodes(lake, task, "summed", 0, "low", summed)
    outcome = returns_to_go_in_support(lake, task, "summed")
    share = outcome.metadata["outside_fraction"]
    assert not outcome.passed and share > 0.5
    evaluation = _run_check(lake, CONNECTOR, "summed", 1)
    assert not evaluation.passed
    summary = evaluation.metadata["summary"].value
    assert summary.startswith(f"{CONNECTOR} run summed: {share:.2%} of ")
    assert "outside the value support [-1, 1] (more than 1%)" in summary
    assert evaluation.metadata["task"].value == CONNECTOR
    assert evaluation.metadata["outside_fraction"].value == pytest.approx(share)


def test_the_threshold_is_one_percent(lake):
    """Just over 1% outside fails; exactly 1% passes (checked on hand-made rewards)."""
    task = get_task(LBF)
    lengths = [1] * 100
    batch = synthetic_episodes(task, lengths, seed=0)
    for run, outside in (("one", 1), ("two", 2)):
        reward = np.zeros(100, np.float32)
        reward[:outside] = 2.0  # a one-step episode of reward 2: its return-to-go is 2
        write_episodes(lake, task, run, 0, "low", dataclasses.replace(batch, reward=reward))
    assert returns_to_go_in_support(lake, task, "one").passed
    failed = returns_to_go_in_support(lake, task, "two")
    assert not failed.passed and failed.metadata["outside_fraction"] == pytest.approx(0.02)
    assert returns_to_go_in_support(lake, task, "no-such-run").passed is False


def test_the_check_is_one_of_the_online_checks():
    assert online_returns_to_go_in_value_support in online_checks
