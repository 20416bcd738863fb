"""Exact replay: every episode a tiny online run (and the random-policy rollouts) records
replays identically in the real environment from its reset key; a number changed in place, a
wrong task label or a missing key is named, with the first step and field that differ. The
same replay renders an episode with the environment's own viewer to an animated GIF."""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lake_schema.reader import Selection, read_episode, read_table
from lake_schema.storage import Lake
from lake_schema.testing import synthetic_episodes
from lake_schema.writer import write_episodes
from trainer.online import OnlineConfig, train_online
from trainer.recording import collect_random_episodes
from trainer.replay import (
    RENDER_INTERVAL_MS,
    Rendering,
    main,
    replay_episode,
    replay_run,
    replay_steps,
)
from trainer.tasks import resolve_task

LBF = "lbf/8x8-2p-2f"
RUN = "rec"
# The network/PPO settings of test_pinned.py and test_online_training.py: one compilation of
# the task's programs serves them all (and the persistent cache a later session).
CONFIG = OnlineConfig(
    num_envs=32, rollout_length=64, chunk_timesteps=16, embed_dim=32, num_heads=4,
    total_env_steps=32 * 64 * 3, num_checkpoints=2, episodes_per_checkpoint=4,
    reference_episodes=4, progress_interval_s=1e9, seed=3,
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Lake:
    """A tiny online run's lake: 2 checkpoints x 4 episodes, as `train_online` records them."""
    root = tmp_path_factory.mktemp("replay")
    lake = Lake(root / "lake")
    train_online(LBF, CONFIG, lake, RUN, checkpoint_dir=root / "ck", log=lambda _: None)
    return lake


def _episodes(lake: Lake, task: str = LBF, run: str = RUN) -> list[dict]:
    t = resolve_task(task)
    return read_table(lake, "episodes", Selection(env=t.env, tasks=[t.scenario], runs=[run]),
                      ["checkpoint", "episode", "length", "reset_key"]).to_pylist()


def test_every_recorded_episode_replays_identically(recorded):
    episodes = _episodes(recorded)
    assert len(episodes) == 8 and all(e["reset_key"] is not None for e in episodes)
    assert len({tuple(e["reset_key"]) for e in episodes}) == 8  # one environment each
    for e in episodes:
        result = replay_episode(recorded, LBF, RUN, e["checkpoint"], e["episode"])
        assert result.identical, (e, result.line())
        assert result.line() == f"replayed {e['length']} steps: identical"
    outcome = replay_run(recorded, LBF, RUN, per_checkpoint=2)
    assert outcome.passed and outcome.metadata["replayed"] == 4, outcome.metadata


def _altered_copy(recorded: Lake, tmp_path: Path, change) -> Lake:
    """A copy of the lake whose checkpoint-0 steps file is rewritten in place by
    `change(rows)` (valid Parquet with other numbers; its content hash no longer matches)."""
    shutil.copytree(recorded.root, tmp_path / "lake")
    lake = Lake(tmp_path / "lake")
    row, _ = read_episode(lake, resolve_task(LBF), RUN, 0, 0)
    path = lake.path(row["steps_file"])
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path, compression="zstd")
    return lake


def _rewarded_step(recorded: Lake) -> tuple[int, int, float]:
    """(episode, step, reward) of checkpoint 0's first step with a reward."""
    steps = read_table(recorded, "steps", Selection(env="lbf", runs=[RUN],
                                                    checkpoints=(0, 0)))
    for r in steps.to_pylist():
        if r["reward"] > 0:
            return r["episode"], r["step"], r["reward"]
    raise AssertionError("no rewarded step at checkpoint 0")


@pytest.mark.parametrize("field", ["action", "reward", "obs"])
def test_a_number_changed_in_place_is_named_by_step_and_field(recorded, tmp_path, field):
    episode, step, reward = _rewarded_step(recorded)

    def at(rows):
        return next(r for r in rows if r["episode"] == episode and r["step"] == step)

    if field == "action":  # no agent loads: the food stays, the reward is 0
        def change(rows):
            at(rows)["action"] = [0] * len(at(rows)["action"])
        expected = f"step {step}: reward {np.float32(reward)} stored, 0.0 replayed"
    elif field == "reward":
        def change(rows):
            at(rows)["reward"] += 0.25
        expected = (f"step {step}: reward {np.float32(reward + 0.25)} stored, "
                    f"{np.float32(reward)} replayed")
    else:
        stored = {}

        def change(rows):
            stored["value"] = at(rows)["obs"][1][40]
            at(rows)["obs"][1][40] += 1
    lake = _altered_copy(recorded, tmp_path, change)
    if field == "obs":
        value = stored["value"]
        expected = f"step {step}: obs[1][40] {value + 1} stored, {value} replayed"
    result = replay_episode(lake, LBF, RUN, 0, episode)
    assert not result.identical and result.difference == expected
    assert result.line() == f"episode {episode} {expected}"
    outcome = replay_run(lake, LBF, RUN, per_checkpoint=4)  # every episode of checkpoint 0
    assert not outcome.passed
    assert outcome.metadata["difference"] == (f"{LBF} run {RUN} checkpoint 0 episode "
                                              f"{episode} {expected}")


def test_episodes_under_the_wrong_task_label_do_not_replay(lake, tmp_path):
    """The random-policy rollouts carry their reset keys too: under their own task they
    replay, under another task of the same shapes they do not."""
    batch = collect_random_episodes("lbf/10x10-3p-3f", 2, seed=4)
    assert batch.reset_keys is not None and batch.reset_keys.shape == (2, 2)
    for task in ("lbf/10x10-3p-3f", "lbf/14x14-3p-3f"):  # 3 agents each
        write_episodes(lake, task, "random-seed4", 0, "low", batch)
    assert all(replay_episode(lake, "lbf/10x10-3p-3f", "random-seed4", 0, e).identical
               for e in (0, 1))
    wrong = replay_episode(lake, "lbf/14x14-3p-3f", "random-seed4", 0, 0)
    assert wrong.replayable and wrong.difference.startswith("step 0: obs["), wrong.line()
    # rendering plays every stored action all the same: the frames are the environment's
    task = resolve_task("lbf/14x14-3p-3f")
    row, steps = read_episode(lake, task, "random-seed4", 0, 0)
    states: list = []
    assert replay_steps(task, row, steps, states) == wrong
    assert len(states) == row["length"] + 1
    assert Rendering(wrong, tmp_path / "ep.gif", len(states)).line() == (
        f"{wrong.line()}; rendered {len(states)} frames to {tmp_path / 'ep.gif'} "
        f"(the environment's states, not the stored data)")
    outcome = replay_run(lake, "lbf/14x14-3p-3f", "random-seed4", per_checkpoint=2)
    assert not outcome.passed
    assert "checkpoint 0 episode 0 step 0: obs[" in outcome.metadata["difference"]


def test_the_scripted_policy_s_episodes_replay_too(lake):
    from trainer.scripted import collect_lbf_heuristic_episodes

    write_episodes(lake, "lbf/8x8-2p-2f", "scripted", 0, "high",
                   collect_lbf_heuristic_episodes("lbf/8x8-2p-2f", 2, seed=3))
    assert all(replay_episode(lake, "lbf/8x8-2p-2f", "scripted", 0, e).identical
               for e in range(2))


def test_episodes_without_a_reset_key_are_not_replayable(lake, recorded, capsys, tmp_path):
    write_episodes(lake, LBF, "imported", 0, "low", synthetic_episodes(LBF, [5, 7]))
    result = replay_episode(lake, LBF, "imported", 0, 1)
    assert not result.replayable and not result.identical
    assert result.line() == "episode 1: not replayable (imported data)"
    outcome = replay_run(lake, LBF, "imported", per_checkpoint=2)
    assert not outcome.passed and outcome.metadata["not_replayable"] == 2
    assert "no episode with a reset key" in outcome.metadata["reason"]
    # the CLI: its one line and exit status, in this process (one subprocess below)
    assert main([LBF, "--run", "imported", "--checkpoint", "0", "--episode", "1",
                 "--lake", str(lake.root)]) == 1
    assert capsys.readouterr().out == "episode 1: not replayable (imported data)\n"
    assert main([LBF, "--run", "imported", "--checkpoint", "0", "--episode", "9",
                 "--lake", str(lake.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no episode 9 (the lake holds episodes 0..1)" in err[0]
    gif = tmp_path / "ep.gif"
    assert main([LBF, "--run", "imported", "--checkpoint", "0", "--episode", "1",
                 "--lake", str(lake.root), "--render", str(gif)]) == 1
    assert capsys.readouterr().out == "episode 1: not replayable (imported data)\n"
    assert not gif.exists()


def test_the_cli_replays_one_episode_in_one_line(recorded):
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.replay", LBF, "--run", RUN, "--checkpoint", "1",
         "--episode", "3", "--lake", str(recorded.root)],
        capture_output=True, text=True, cwd=Path(__file__).parents[2])
    (length,) = [e["length"] for e in _episodes(recorded)
                 if (e["checkpoint"], e["episode"]) == (1, 3)]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"replayed {length} steps: identical\n"


def _drawn(state) -> np.ndarray:
    """What the lbf viewer draws of a Jumanji state: agents and food, places and levels."""
    return np.concatenate([np.ravel(np.asarray(x)) for x in (
        state.agents.position, state.agents.level, state.food_items.position,
        state.food_items.level, state.food_items.eaten)])


def test_the_cli_renders_an_episode_as_a_gif_of_its_states(recorded, tmp_path, capsys):
    """One frame per state, the reset state and the state after each of the L steps: L + 1
    frames of RENDER_INTERVAL_MS. Pillow keeps a run of identical frames (no agent moved) as
    one frame shown for their summed time, so the GIF holds one frame per run."""
    e = min(_episodes(recorded), key=lambda e: e["length"])  # the quickest to draw
    length, path = e["length"], tmp_path / "ep.gif"
    assert main([LBF, "--run", RUN, "--checkpoint", str(e["checkpoint"]), "--episode",
                 str(e["episode"]), "--lake", str(recorded.root), "--render", str(path)]) == 0
    assert capsys.readouterr().out == (f"replayed {length} steps: identical; "
                                       f"rendered {length + 1} frames to {path}\n")
    task = resolve_task(LBF)
    states: list = []
    replay_steps(task, *read_episode(recorded, task, RUN, e["checkpoint"], e["episode"]),
                 states)
    runs = 1 + sum(not np.array_equal(_drawn(a), _drawn(b))
                   for a, b in itertools.pairwise(states))
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.size == (500, 500)
        assert gif.n_frames == runs and 1 < runs <= length + 1
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert sum(durations) == (length + 1) * RENDER_INTERVAL_MS


@pytest.mark.parametrize("name, why", [("missing/ep.gif", "no directory"),
                                       ("ep.png", "must end in .gif")])
def test_a_render_path_that_cannot_be_written_fails_before_any_work(tmp_path, capsys, name,
                                                                     why):
    """Exit 2 in one line, before the lake is read (a missing lake would be exit 1)."""
    assert main([LBF, "--run", RUN, "--checkpoint", "0", "--episode", "0",
                 "--lake", str(tmp_path / "no-lake"), "--render", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and why in err[0] and str(tmp_path / name) in err[0], err
    assert not (tmp_path / "no-lake").exists() and not (tmp_path / name).exists()


def test_keys_of_an_episode_that_starts_mid_window_are_refused():
    from trainer.envs import make_env, random_rollout
    from trainer.recording import episodes_from_rollout, fresh_reset_keys

    env = make_env(LBF, time_limit=5)
    key = np.asarray([0, 7], np.uint32)
    result = random_rollout(env, key, 2, 12)  # each env: episodes of 5 steps, back to back
    batch = episodes_from_rollout(result, max_per_env=1, reset_keys=fresh_reset_keys(key, 2))
    assert batch.reset_keys.shape == (2, 2)
    with pytest.raises(ValueError, match="no known reset key"):
        episodes_from_rollout(result, reset_keys=fresh_reset_keys(key, 2))
    assert dataclasses.replace(batch, reset_keys=None).reset_keys is None
