"""The IO manager of values passed between steps: a step reads the value its own run produced,
even when another run produced the same asset in between (two `train_and_evaluate` runs side
by side must each evaluate their own model); a run that did not produce it reads the latest."""

import dagster as dg
import pytest

from pipelines.resources import RunScopedIOManager


class ValueConfig(dg.Config):
    value: int


@dg.asset
def produced(config: ValueConfig) -> dict:
    return {"value": config.value}


@dg.asset(deps=[produced])
def interloper(context: dg.AssetExecutionContext) -> None:
    """Between this run's `produced` and `consumed`: another run produces value 2."""
    other = dg.materialize([produced], instance=context.instance, resources=RESOURCES,
                           run_config=_config(2))
    assert other.success


@dg.asset(deps=[interloper])
def consumed(produced: dict) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"value": produced["value"]})


RESOURCES = {"io_manager": RunScopedIOManager()}


def _config(value: int) -> dict:
    return {"ops": {"produced": {"config": {"value": value}}}}


def _consumed_value(result: dg.ExecuteInProcessResult) -> int:
    return result.asset_materializations_for_node("consumed")[0].metadata["value"].value


def test_a_run_reads_its_own_value_though_another_run_wrote_one_since():
    with dg.instance_for_test() as instance:
        run = dg.materialize([produced, interloper, consumed], instance=instance,
                             resources=RESOURCES, run_config=_config(1))
        assert run.success and _consumed_value(run) == 1

        # a run that does not produce it reads the latest value (the interloper's)
        alone = dg.materialize([produced, interloper, consumed], instance=instance,
                               resources=RESOURCES, selection=[consumed])
        assert alone.success and _consumed_value(alone) == 2


def test_a_value_never_produced_is_a_one_line_failure():
    with (dg.instance_for_test() as instance,
          pytest.raises(dg.Failure, match="produced has no value in this Dagster instance")):
        dg.materialize([produced, interloper, consumed], instance=instance,
                       resources=RESOURCES, selection=[consumed])
