"""Dataset cards: written with each checkpoint, equal to numpy over the lake's own rows,
replaced with the checkpoint, checked by `verify`, backfilled, and printed by the CLI."""

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest

from lake_schema import delta
from lake_schema.cards import dataset_cards, format_card
from lake_schema.catalogue import get_task
from lake_schema.cli import main
from lake_schema.errors import LakeValueError
from lake_schema.reader import Selection, read_table
from lake_schema.schema import CARD_QUANTILES
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake, synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import backfill_cards, delete_run, write_episodes, write_reference

TASK = "lbf/8x8-2p-2f"
SEL = Selection(env="lbf", tasks=["8x8-2p-2f"], runs=["r1"])


def _numpy_rows(lake, **where):
    """Agent-step observations [M, F] (float64), actions [S, N], returns and lengths of the
    lake's own rows (read back, not the written batches), optionally filtered."""
    steps = read_table(lake, "steps", SEL).to_pylist()
    eps = read_table(lake, "episodes", SEL).to_pylist()
    keep = [r for r in steps if all(r[k] in v for k, v in where.items())]
    keep_eps = [r for r in eps if all(r[k] in v for k, v in where.items())]
    obs = np.array([agent for r in keep for agent in r["obs"]], np.float64)
    action = np.array([r["action"] for r in keep])
    return obs, action, np.array([r["return"] for r in keep_eps]), len(keep_eps), len(keep)


@pytest.fixture
def filled(lake):
    fill_lake(lake, [TASK], runs=("r1",), checkpoints=3, episodes=4)
    write_reference(lake, TASK, "r1", sable_returns=[0.8, 0.9], random_returns=[0.1, 0.2],
                    env_steps=1000)
    return lake


def test_checkpoint_cards_equal_numpy_over_the_rows(filled):
    (card,) = dataset_cards(filled, get_task(TASK))
    assert card.run == "r1" and [r["checkpoint"] for r in card.checkpoints] == [0, 1, 2]
    assert [r["quality"] for r in card.checkpoints] == ["low", "low", "high"]
    for row in card.checkpoints:
        obs, action, returns, n_eps, n_steps = _numpy_rows(filled, checkpoint={row["checkpoint"]})
        assert (row["episodes"], row["steps"], row["obs_count"]) == (n_eps, n_steps, len(obs))
        np.testing.assert_allclose(row["return_mean"], returns.mean())
        np.testing.assert_allclose(np.sqrt(row["return_m2"] / n_eps), returns.std(), atol=1e-12)
        assert (row["return_min"], row["return_max"]) == (returns.min(), returns.max())
        np.testing.assert_allclose(row["return_quantiles"], np.quantile(returns, CARD_QUANTILES))
        np.testing.assert_allclose(row["obs_mean"], obs.mean(0))
        np.testing.assert_allclose(np.sqrt(np.asarray(row["obs_m2"]) / len(obs)), obs.std(0),
                                   atol=1e-12)
        np.testing.assert_array_equal(row["obs_min"], obs.min(0))
        np.testing.assert_array_equal(row["obs_max"], obs.max(0))
        counts = np.array([np.bincount(action[:, i], minlength=6) for i in range(2)])
        np.testing.assert_array_equal(row["action_counts"], counts)
        assert row["steps_file"].startswith("steps/lbf/task=8x8-2p-2f/run=r1/")
        assert row["code_version"].startswith("sable-lake ")
    # the card of a subset of checkpoints is exact: merged moments, min/max, and (each
    # checkpoint here under the sample size, so the sample is every row) quantiles
    for quality, cks in (("high", {2}), ("low", {0, 1}), (None, {0, 1, 2})):
        obs, *_ = _numpy_rows(filled, checkpoint=cks)
        got = card.obs(quality)
        assert got.moments.count == len(obs)
        np.testing.assert_allclose(got.moments.mean, obs.mean(0))
        np.testing.assert_allclose(got.moments.std, obs.std(0), atol=1e-12)
        np.testing.assert_array_equal(got.max, obs.max(0))
        np.testing.assert_array_equal(
            got.quantiles, np.quantile(obs, CARD_QUANTILES, axis=0, method="inverted_cdf"))
    _, action, returns, n_eps, n_steps = _numpy_rows(filled)
    assert (card.episodes, card.steps) == (n_eps, n_steps)
    counts = np.array([np.bincount(action[:, i], minlength=6) for i in range(2)])
    np.testing.assert_allclose(card.action_frequencies(), counts / counts.sum(1, keepdims=True))
    assert card.reference["sable_return"] == pytest.approx(0.85)
    assert card.reference["random_return"] == pytest.approx(0.15)


def test_sampled_quantiles_of_a_large_checkpoint(lake):
    """More agent-steps than the sample: moments stay exact, quantiles come from the sample
    (uniform, so close to the exact ones on this data)."""
    batch = synthetic_episodes(TASK, [100] * 12, seed=3)  # 2400 agent-steps > 1024
    write_episodes(lake, TASK, "r1", 0, "low", batch, config='{"made_by": "test"}')
    (card,) = dataset_cards(lake, get_task(TASK))
    row = card.checkpoints[0]
    obs = batch.obs.reshape(-1, 75).astype(np.float64)
    assert len(row["obs_sample"]) == 1024 and row["obs_count"] == len(obs)
    np.testing.assert_allclose(card.obs().moments.mean, obs.mean(0))
    exact = np.quantile(obs, CARD_QUANTILES, axis=0)
    assert np.abs(card.obs().quantiles - exact).max() <= 1  # small integers: at most one step
    assert card.producers == [('{"made_by": "test"}', row["code_version"])]


def test_rewriting_a_checkpoint_replaces_its_card(filled):
    task = get_task(TASK)
    new = synthetic_episodes(TASK, [7, 9], seed=99)
    write_episodes(filled, TASK, "r1", 1, "high", new)  # another quality tag, same key
    cards = read_table(filled, "cards", SEL).to_pylist()
    assert sorted((r["checkpoint"], r["quality"]) for r in cards) == [
        (0, "low"), (1, "high"), (2, "high")]  # one card per checkpoint, no stale one
    (card,) = dataset_cards(filled, task)
    row = card.checkpoints[1]
    assert (row["episodes"], row["steps"]) == (2, 16)
    np.testing.assert_allclose(row["obs_mean"], new.obs.reshape(-1, 75).mean(0))
    assert verify(filled).ok
    delete_run(filled, task, "r1")
    assert read_table(filled, "cards").num_rows == 0 and verify(filled).ok


def test_verify_names_missing_stale_and_orphan_cards_and_backfill_repairs(filled, capsys):
    before = {r["checkpoint"]: r for r in read_table(filled, "cards", SEL).to_pylist()}
    # stale: checkpoint 0 rewritten, then its old card put back (a write killed between
    # its episodes and card commits leaves exactly this)
    write_episodes(filled, TASK, "r1", 0, "low", synthetic_episodes(TASK, [6], seed=5))
    old = read_table(filled, "cards", Selection(env="lbf", checkpoints=(1, 1)))
    old = old.set_column(old.schema.get_field_index("steps_file"), "steps_file",
                         pa.array([before[0]["steps_file"]]))
    key = {"env": "lbf", "task": "8x8-2p-2f", "run": "r1", "checkpoint": 0}
    delta.replace_key(filled, "cards", old.set_column(
        old.schema.get_field_index("checkpoint"), "checkpoint", pa.array([0], pa.int32())), key)
    (card,) = dataset_cards(filled, get_task(TASK))  # a stale card is never shown as current
    assert card.stale == (0,) and [r["checkpoint"] for r in card.checkpoints] == [1, 2]
    # missing: checkpoint 1's card gone; orphan: checkpoint 2's rows gone, its card kept
    delta.delete_where(filled, "cards", "checkpoint = 1")
    delta.delete_where(filled, "episodes", "checkpoint = 2")
    delta.delete_where(filled, "steps/lbf", "checkpoint = 2")
    problems = {p.path.rsplit("/", 1)[-1]: p.reason for p in verify(filled).problems}
    assert set(problems) == {"checkpoint=0", "checkpoint=1", "checkpoint=2"}
    assert problems["checkpoint=0"].startswith("stale dataset card")
    assert problems["checkpoint=1"].startswith("no dataset card")
    assert "does not hold" in problems["checkpoint=2"]
    assert all("card --backfill" in r for r in problems.values())
    with pytest.raises(LakeValueError, match=r"no dataset card.*card --backfill"):
        dataset_cards(filled, get_task(TASK))  # none of the run's checkpoints has one

    assert main(["--lake", filled.root, "card", "--backfill"]) == 0
    out = capsys.readouterr().out
    assert "3 card(s) written or removed" in out and "removed the card" in out
    assert verify(filled).ok
    (card,) = dataset_cards(filled, get_task(TASK))
    assert [r["checkpoint"] for r in card.checkpoints] == [0, 1] and card.stale == ()
    assert card.checkpoints[1]["obs_mean"] == before[1]["obs_mean"]  # recomputed, the same
    assert card.checkpoints[0]["steps"] == 6
    assert backfill_cards(filled) == []  # nothing left to do


def test_a_lake_written_before_cards(filled, capsys):
    """No cards table: verify says how to backfill, `card` refuses in one line, backfill
    computes the same cards the writer did."""
    written = read_table(filled, "cards", SEL).to_pylist()
    filled.fs.rm(filled.path("cards"), recursive=True)
    filled = Lake(filled.root)  # a new process: no Delta table cached from before
    report = verify(filled)
    assert [(p.path, "card --backfill" in p.reason) for p in report.problems] == [
        ("cards", True)]
    assert main(["--lake", filled.root, "card", TASK]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no dataset card" in err[0] and "--backfill" in err[0]
    assert len(backfill_cards(filled, "lbf", "8x8-2p-2f")) == 3
    again = read_table(filled, "cards", SEL).to_pylist()
    for a, b in zip(written, again, strict=True):
        assert a["obs_mean"] == b["obs_mean"] and a["action_counts"] == b["action_counts"]
        assert b["code_version"] is None  # unknown: the backfill did not produce the rows
    assert verify(filled).ok


def test_cli_prints_the_card_and_refuses_bad_input(filled, capsys):
    fill_lake(filled, [TASK], runs=("r2",), checkpoints=1, episodes=2, seed=7)
    assert main(["--lake", filled.root, "card", TASK, "--run", "r1", "--features", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dataset card: lbf/8x8-2p-2f, run r1\n")
    assert "references: online Sable 0.85" in out and "random 0.15" in out
    assert "3 checkpoints, 12 episodes" in out and "... 72 more features" in out
    assert "action frequencies per agent slot:" in out and "produced by: sable-lake" in out
    # features and actions by name, in the catalogue's order
    features = [line.split()[0] for line in out.split("observations per feature")[1]
                .split("\n\n")[0].splitlines()[3:-1]]
    assert features == ["agent_level(-2,-2)", "agent_level(-2,-1)", "agent_level(-2,+0)"]
    assert out.split("action frequencies per agent slot:\n")[1].split()[:7] == [
        "slot", "noop", "up", "down", "left", "right", "load"]
    assert main(["--lake", filled.root, "card", TASK]) == 0  # every run
    out = capsys.readouterr().out
    assert "run r1\n" in out and "run r2\n" in out and "references: none" in out
    assert main(["--lake", filled.root, "card", TASK, "--run", "r2", "--format", "json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["run"] == "r2" and doc["episodes"] == 2 and len(doc["obs"]["mean"]) == 75
    assert np.asarray(doc["action_frequencies"]).sum(1) == pytest.approx([1.0, 1.0])
    assert doc["action_names"] == list(get_task(TASK).spec.action_names)
    assert doc["obs_features"] == list(get_task(TASK).spec.obs_features)

    for args, status, words in (
        (["card", "lbf/9x9-1p-1f"], 2, "9x9-1p-1f"),  # not in the catalogue
        (["card"], 2, "needs a task"),
        (["card", TASK, "--features", "-1"], 2, "--features"),
        (["card", "lbf/10x10-3p-3f"], 1, "no data for lbf/10x10-3p-3f"),
        (["card", TASK, "--run", "r9"], 1, "its runs: r1, r2"),
    ):
        assert main(["--lake", filled.root, *args]) == status, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (args, err)
    assert main(["--lake", filled.root + "-missing", "card", TASK]) == 1
    assert "-missing does not exist" in capsys.readouterr().err


def _rtg_by_hand(rewards: list[float]) -> list[float]:
    out, g = [], 0.0
    for r in reversed(rewards):
        g = r + 0.99 * g
        out.append(g)
    return out[::-1]


def test_cards_report_the_share_of_returns_to_go_outside_the_value_support(filled, capsys):
    """Per checkpoint (the card row) and for the run (steps-weighted), equal to the
    recursion G = r + 0.99 G' over the lake's own rows against lbf's support [-1, 1]."""
    steps = read_table(filled, "steps", SEL, ["checkpoint", "episode", "step", "reward"])
    rows = sorted(steps.to_pylist(), key=lambda r: (r["checkpoint"], r["episode"], r["step"]))
    outside, total = {}, {}
    for ck in (0, 1, 2):
        for ep in {r["episode"] for r in rows if r["checkpoint"] == ck}:
            g = _rtg_by_hand([r["reward"] for r in rows
                              if (r["checkpoint"], r["episode"]) == (ck, ep)])
            outside[ck] = outside.get(ck, 0) + sum(abs(x) > 1 + 1e-6 for x in g)
            total[ck] = total.get(ck, 0) + len(g)
    (card,) = dataset_cards(filled, get_task(TASK))
    for row in card.checkpoints:
        ck = row["checkpoint"]
        assert row["rtg_outside_support"] == pytest.approx(outside[ck] / total[ck])
    # synthetic rewards are 0/1 (not lbf's normalised ones): some targets lie above 1
    assert sum(outside.values()) > 0
    share = sum(outside.values()) / sum(total.values())
    assert card.rtg_outside_support == pytest.approx(share) and card.rtg_unknown == ()
    text = format_card(card)
    assert f"outside the value support [-1, 1]: {share:.2%} of the steps" in text
    assert main(["--lake", filled.root, "card", TASK, "--format", "json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["rtg_outside_support"] == pytest.approx(share)
    assert doc["value_support"] == [-1.0, 1.0]
    assert [c["rtg_outside_support"] for c in doc["checkpoints"]] == pytest.approx(
        [outside[k] / total[k] for k in (0, 1, 2)])


def test_a_card_row_without_the_share_reads_as_not_computed(filled):
    """A card written before the column: null, left out of the run's share, named in the
    printed card with the command that fills it in."""
    rows = read_table(filled, "cards", SEL).to_pylist()
    (card,) = dataset_cards(filled, get_task(TASK))
    partial = dataclasses.replace(card, checkpoints=tuple(
        {**r, "rtg_outside_support": None} if r["checkpoint"] == 1 else r
        for r in card.checkpoints))
    kept = [r for r in rows if r["checkpoint"] != 1]
    assert partial.rtg_unknown == (1,)
    assert partial.rtg_outside_support == pytest.approx(
        sum(r["rtg_outside_support"] * r["steps"] for r in kept)
        / sum(r["steps"] for r in kept))
    assert "not computed for checkpoint(s) 1" in format_card(partial)
    none = dataclasses.replace(card, checkpoints=tuple(
        {**r, "rtg_outside_support": None} for r in card.checkpoints))
    assert none.rtg_outside_support is None
    assert "value support [-1, 1]: not computed" in format_card(none)
