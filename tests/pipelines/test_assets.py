"""Assets materialise through Dagster's API into a temporary lake and instance."""

import dagster as dg
import pydantic
import pytest

from lake_schema.reader import Selection, read_table
from pipelines.assets.baselines import random_rollouts
from pipelines.resources import default_resources


def test_random_rollouts_materialise_and_replace(lake):
    instance = dg.DagsterInstance.ephemeral()
    run_config = {"ops": {"random_rollouts": {"config": {"episodes": 3, "seed": 0}}}}
    resources = default_resources(lake.root)
    for _ in range(2):  # materialising again replaces the partition, never duplicates it
        result = dg.materialize([random_rollouts], partition_key="lbf/8x8-2p-2f",
                                resources=resources, run_config=run_config, instance=instance)
        assert result.success
    eps = read_table(lake, "episodes", Selection(env="lbf"))
    assert eps.num_rows == 3 and set(eps["run"].to_pylist()) == {"random-seed0"}
    mat = result.asset_materializations_for_node("random_rollouts")[0]
    assert mat.metadata["episodes"].value == 3
    assert mat.metadata["steps"].value == eps["length"].to_numpy().sum()


def test_bad_config_is_refused_before_any_compute(lake):
    with pytest.raises(pydantic.ValidationError, match="episodes") as info:
        dg.materialize([random_rollouts], partition_key="lbf/8x8-2p-2f",
                       resources=default_resources(lake.root),
                       run_config={"ops": {"random_rollouts": {"config": {"episodes": 0}}}})
    assert "greater than or equal to 1" in str(info.value)
    assert lake.find("") == []
