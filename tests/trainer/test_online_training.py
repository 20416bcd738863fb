"""Online Sable end to end on lbf/8x8-2p-2f: it learns (beats the random policy, measured),
records whole checkpoints with quality tags, and an interrupted run resumes without
duplicating lake rows. Every run here shares one compiled update (same network and PPO
settings, see `trainer.online.training._compile_key`)."""

import dataclasses

import numpy as np
import polars as pl
import pytest

from lake_schema.catalogue import get_task
from lake_schema.reader import Selection, read_table, table_versions
from lake_schema.storage import Lake
from lake_schema.writer import delete_run
from trainer.online import OnlineConfig, train_online

LBF = "lbf/8x8-2p-2f"
# Small and fast on 2 CPU cores: updates of 32 envs x 64 steps learn lbf 8x8 in ~100k steps.
TEST_CONFIG = OnlineConfig(
    num_envs=32, rollout_length=64, embed_dim=32, num_heads=4, chunk_timesteps=16,
    episodes_per_checkpoint=16, reference_episodes=64, progress_interval_s=5.0,
)


def _episodes(lake: Lake, run: str) -> pl.DataFrame:
    table = read_table(lake, "episodes", Selection(env="lbf", runs=[run]))
    return pl.from_arrow(table).sort(["checkpoint", "episode"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small training run shared by the learning and recording tests."""
    root = tmp_path_factory.mktemp("online")
    lake = Lake(root / "lake")
    config = dataclasses.replace(TEST_CONFIG, total_env_steps=80_000, num_checkpoints=4)
    lines: list[str] = []
    result = train_online(LBF, config, lake, "sable-test", checkpoint_dir=root / "ck",
                          log=lines.append)
    return result, lake, lines


def test_trained_policy_beats_the_random_policy(trained):
    """Final policy vs uniform-random policy, 64 fresh episodes each (the references row)."""
    result, _, _ = trained
    n = TEST_CONFIG.reference_episodes
    se = np.sqrt((result.reference_std**2 + result.random_std**2) / n)
    gap = result.reference_return - result.random_return
    print(f"final {result.reference_return:.3f} +- {result.reference_std:.3f}, random "
          f"{result.random_return:.3f} +- {result.random_std:.3f}, gap/se {gap / se:.1f}; "
          f"compile {result.compile_s:.1f}s train {result.train_s:.1f}s record "
          f"{result.record_s:.1f}s reference {result.reference_s:.1f}s wall {result.wall_s:.1f}s")
    assert gap > 0.15
    assert gap / se > 3.0  # Welch's t over 64 + 64 episodes


def test_the_run_s_curves_are_a_tensorboard_run(trained, tmp_path, monkeypatch):
    """The curves TensorBoard shows (`make tensorboard`) are the result's: the recorded
    checkpoints' returns by env steps, the training returns, the references."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainer.online.training import write_curves
    from trainer.tensorboard import online_run, run_directory

    result, _, _ = trained
    monkeypatch.setenv("SABLE_LAKE_MODELS", str(tmp_path))
    write_curves(result)
    run = run_directory(tmp_path, online_run(LBF, "sable-test"))
    assert run == tmp_path / "tensorboard" / "online · lbf_8x8-2p-2f · sable-test"
    events = EventAccumulator(str(run))
    events.Reload()
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("checkpoint_return")] == [
        (r.env_steps, r.mean_return) for r in result.curve]
    assert len(events.Scalars("train_return")) == len(result.train_curve) > 0
    (final,) = events.Scalars("reference/online_sable")
    assert final.value == pytest.approx(result.reference_return)


def test_checkpoints_are_recorded_whole_with_quality_tags(trained):
    result, lake, lines = trained
    eps = _episodes(lake, "sable-test")
    per_ck = eps.group_by("checkpoint", maintain_order=True).agg(
        pl.len(), pl.col("quality").unique(), pl.col("env_steps").first()
    )
    assert per_ck["checkpoint"].to_list() == [0, 1, 2, 3]
    assert set(per_ck["len"].to_list()) == {TEST_CONFIG.episodes_per_checkpoint}
    assert per_ck["quality"].to_list() == [["low"], ["low"], ["high"], ["high"]]
    env_steps = per_ck["env_steps"].to_list()
    assert env_steps == [r.env_steps for r in result.curve]
    assert env_steps[-1] == result.total_env_steps == 39 * 2048
    steps = read_table(lake, "steps", Selection(env="lbf", runs=["sable-test"]),
                       columns=["checkpoint", "reward"])
    assert steps.num_rows == eps["length"].sum()
    refs = read_table(lake, "references", Selection(env="lbf")).to_pylist()
    assert len(refs) == 1 and refs[0]["sable_return"] == pytest.approx(result.reference_return)
    # The learning curve, timings and progress lines are there.
    assert [r.checkpoint for r in result.curve] == [0, 1, 2, 3]
    assert result.steps_per_s > 0 and result.record_s > 0 and result.train_s > 0
    assert any("checkpoint 4/4 (high)" in line for line in lines)
    assert any("final return" in line for line in lines)


class Killed(Exception):
    pass


def test_interrupted_run_resumes_without_duplicates_and_matches_uninterrupted(tmp_path):
    config = dataclasses.replace(TEST_CONFIG, total_env_steps=6 * 2048, num_checkpoints=3)
    straight = Lake(tmp_path / "straight")
    train_online(LBF, config, straight, "r", checkpoint_dir=tmp_path / "ck0")

    lake, ck = Lake(tmp_path / "lake"), tmp_path / "ck"

    def kill_after_first(record):
        if record.checkpoint == 1:
            raise Killed

    with pytest.raises(Killed):
        train_online(LBF, config, lake, "r", checkpoint_dir=ck, on_checkpoint=kill_after_first)
    partial = _episodes(lake, "r")
    assert partial["checkpoint"].unique().sort().to_list() == [0, 1]  # only whole checkpoints
    assert read_table(lake, "references", Selection(env="lbf")).num_rows == 0

    resumed = train_online(LBF, config, lake, "r", checkpoint_dir=ck)
    assert resumed.resumed_from == 1
    assert resumed.trained_env_steps == 2 * 2048  # only the missing updates were trained
    eps = _episodes(lake, "r")
    assert not eps.select(["checkpoint", "episode"]).is_duplicated().any()
    assert len(eps) == 3 * config.episodes_per_checkpoint
    assert [r.checkpoint for r in resumed.curve] == [0, 1, 2]
    # The restored state (params, Adam, RNG, envs, retention state) continues exactly.
    ref = _episodes(straight, "r")
    np.testing.assert_allclose(eps["return"].to_numpy(), ref["return"].to_numpy(), atol=1e-6)

    # A completed run of the same config is reused: nothing trained, the lake untouched.
    versions = table_versions(lake, ["episodes", "steps/lbf", "references"])
    reused = train_online(LBF, config, lake, "r", checkpoint_dir=ck)
    assert reused.trained_env_steps == 0 and reused.compile_s == 0
    assert reused.reference_return == resumed.reference_return
    assert [r.mean_return for r in reused.curve] == [r.mean_return for r in resumed.curve]
    assert table_versions(lake, ["episodes", "steps/lbf", "references"]) == versions
    # ... and shows what the call that completed it measured (its run.json), not blanks
    assert reused.steps_per_s == resumed.steps_per_s > 0
    assert reused.recording_fraction == resumed.recording_fraction > 0
    assert reused.train_curve == resumed.train_curve and resumed.train_curve
    assert reused.summary()["steps_per_s"] == resumed.summary()["steps_per_s"]

    # Another config starts over, and a shorter re-run (fewer checkpoints) leaves none of the
    # old checkpoints behind.
    shorter = dataclasses.replace(config, num_checkpoints=2)
    again = train_online(LBF, shorter, lake, "r", checkpoint_dir=ck)
    assert again.resumed_from is None
    eps = _episodes(lake, "r")
    assert eps["checkpoint"].unique().sort().to_list() == [0, 1]
    assert len(eps) == 2 * config.episodes_per_checkpoint

    # A completed run whose rows are gone from the lake is trained again, not reused.
    delete_run(lake, get_task(LBF), "r")
    redone = train_online(LBF, shorter, lake, "r", checkpoint_dir=ck)
    assert redone.resumed_from is None and redone.trained_env_steps == 6 * 2048
    assert len(_episodes(lake, "r")) == 2 * config.episodes_per_checkpoint
