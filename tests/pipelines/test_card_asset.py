"""The `dataset_card` asset shows a task's card from real lake rows (written by the lake's
writer, cards included) through Dagster's API: tables, numbers and plots as metadata; a
task without data fails naming it."""


import dagster as dg
import numpy as np

from lake_schema.catalogue import ENVS
from lake_schema.reader import Selection, read_table
from lake_schema.testing import fill_lake
from lake_schema.writer import write_reference
from pipelines.assets.card import dataset_card
from pipelines.resources import default_resources
from tests.helpers.plots import assert_published

TASK = "lbf/10x10-3p-3f"


def _digits(x: float) -> int:
    """Significant digits of `x` as printed."""
    return len(f"{x!r}".split("e")[0].replace("-", "").replace(".", "").strip("0"))


def _materialise(lake, task=TASK, run=""):
    return dg.materialize(
        [dataset_card], partition_key=task, resources=default_resources(lake.root),
        run_config={"ops": {"dataset_card": {"config": {"run": run}}}},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_dataset_card_asset_metadata(lake):
    fill_lake(lake, [TASK], runs=("r1", "r2"), checkpoints=3, episodes=3, seed=2)
    write_reference(lake, TASK, "r2", sable_returns=[0.7], random_returns=[0.05], env_steps=9)
    result = _materialise(lake)
    assert result.success
    meta = result.asset_materializations_for_node("dataset_card")[0].metadata
    eps = read_table(lake, "episodes", Selection(env="lbf", tasks=["10x10-3p-3f"]))
    assert meta["runs"].value == "r1, r2" and meta["checkpoints"].value == 6
    assert meta["episodes"].value == eps.num_rows == 18
    assert meta["steps"].value == int(eps["length"].to_numpy().sum())
    assert meta["sable_return"].value == 0.7 and meta["random_return"].value == 0.05
    assert meta["stale_checkpoints"].value == "none"
    per_ck = meta["per_checkpoint"].value
    rows = [r.data for r in per_ck.records]
    assert [(r["run"], r["ckpt"], r["quality"]) for r in rows] == [
        (run, ck, q) for run in ("r1", "r2") for ck, q in enumerate(("low", "low", "high"))]
    # narrow enough for the page (short names; the constant episodes column is dropped:
    # 3 per checkpoint, as the `card` text says), floats to at most 3 significant digits
    assert [c.name for c in per_ck.schema.columns] == [
        "run", "ckpt", "quality", "env steps", "return", "std", "min", "max", "rtg out"]
    assert all(_digits(v) <= 3 for r in rows for v in r.values() if isinstance(v, float))
    for r in rows:  # each row equals numpy over that checkpoint's episodes
        ret = eps.filter((eps["run"].to_numpy() == r["run"])
                         & (eps["checkpoint"].to_numpy() == r["ckpt"]))["return"]
        assert len(ret) == 3
        assert np.isclose(r["return"], np.mean(ret.to_numpy()), rtol=5e-3, atol=1e-3)
    actions = [r.data for r in meta["action_frequencies"].value.records]
    assert len(actions) == 2 * 3 and actions[0]["slot"] == 0  # runs x agent slots
    names = ENVS["lbf"].action_names  # the columns are the env's actions, by name
    assert all(abs(sum(a[name] for name in names) - 1) < 1e-2 for a in actions)
    assert len(meta["observations"].value.records) == 75
    assert meta["observations_run"].value == "r2"
    for key, alt in (("returns_by_checkpoint", "returns by checkpoint and quality"),
                     ("action_histogram", "action frequencies per agent slot")):
        assert_published(lake, meta[key].value, alt)
    assert "dataset card: lbf/10x10-3p-3f, run r1" in meta["card"].value
    assert "sable-lake" in meta["produced_by"].value
    # the share of discounted returns-to-go outside the value support: per checkpoint (the
    # card rows), per run (steps-weighted) and the latest run's as a number
    cards = {(c["run"], c["checkpoint"]): c for c in read_table(
        lake, "cards", Selection(env="lbf", tasks=["10x10-3p-3f"])).to_pylist()}
    for r in rows:
        want = cards[(r["run"], r["ckpt"])]["rtg_outside_support"]
        assert want is not None and np.isclose(r["rtg out"], want, rtol=5e-3, atol=1e-3)
    r2 = [c for (run, _), c in cards.items() if run == "r2"]
    share = sum(c["rtg_outside_support"] * c["steps"] for c in r2) / sum(c["steps"] for c in r2)
    assert np.isclose(meta["rtg_outside_fraction"].value, share, rtol=5e-4)  # 4 digits shown
    assert all(_digits(v.value) <= 4 for v in meta.values() if isinstance(v.value, float))
    text = meta["rtg_outside_support"].value
    assert "- run r1: returns-to-go (gamma 0.99) outside the value support [-1, 1]: " in text
    assert f"- run r2: returns-to-go (gamma 0.99) outside the value support [-1, 1]: " \
           f"{share:.2%} of the steps" in text

    one = _materialise(lake, run="r1")
    assert one.success
    meta = one.asset_materializations_for_node("dataset_card")[0].metadata
    assert meta["runs"].value == "r1" and "sable_return" not in meta  # r1 has no references
    # one run: its name is the `runs` entry, not a column of every table
    assert "run" not in [c.name for c in meta["per_checkpoint"].value.schema.columns]
    assert "run" not in [c.name for c in meta["action_frequencies"].value.schema.columns]


def test_dataset_card_asset_fails_naming_a_task_without_data(lake):
    fill_lake(lake, [TASK], checkpoints=1, episodes=2)
    result = _materialise(lake, task="lbf/8x8-2p-2f")
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    cause = failure.step_failure_data.error.cause  # the asset's own error, one line
    assert cause.message.strip().endswith(f"no data for lbf/8x8-2p-2f in {lake.root}")
