"""Evaluation episodes played back: every episode of an evaluation, started from its reset key
and stepped with the actions the evaluation took, gives the return the evaluation computed,
bit for bit; `evaluate` keeps each task's best and worst episode, the same ones for the same
seed, and they draw as GIFs."""

import jax
import numpy as np
import pytest
from PIL import Image

from lake_schema.checks import reference_returns
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from lake_schema.writer import write_reference
from trainer.data import DataSelection
from trainer.offline import EvalConfig, OfflineConfig, evaluate, train
from trainer.offline.checkpoint import load_params, read_model_info
from trainer.offline.episodes import (
    EvaluationEpisode,
    play_episode,
    render_evaluation_episode,
)
from trainer.offline.evaluation import evaluate_episodes
from trainer.replay import worst_to_best

# lbf tasks where a barely trained policy, acting almost at random, eats some food: returns
# of several steps' rewards (thirds, quarters) whose float32 sum depends on its order
TASKS = ("lbf/8x8-2p-2f", "lbf/10x10-3p-3f")
# test_offline_evaluate.py's model: one compiled episode runner serves both modules
TINY = dict(embed_dim=16, num_heads=2, batch_size=8, seq_len=5, pad_agents=4, log_every=1,
            checkpoint_every=1, num_updates=2)
EPISODES = 8


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(lake, run dir) of a BC model trained 2 updates on synthetic data, with references."""
    root = tmp_path_factory.mktemp("evaluation-episodes")
    lake = Lake(root / "lake")
    fill_lake(lake, TASKS, checkpoints=1, episodes=4, lengths=(8, 30), seed=9)
    for task in TASKS:
        write_reference(lake, task, "online", sable_returns=[0.8], random_returns=[0.1],
                        env_steps=1)
    result = train(lake, DataSelection(env="lbf", tasks=TASKS),
                   OfflineConfig(**{**TINY, "algorithm": "bc"}), root / "run",
                   cache_dir=root / "cache")
    return lake, result.run_dir


def test_every_evaluation_episode_plays_back_to_the_evaluated_return(model):
    _, run_dir = model
    info = read_model_info(run_dir)
    params, _ = load_params(run_dir, info, "latest")
    played = evaluate_episodes(info, params, TASKS, EPISODES, seed=3)
    assert sum(float(e.returns.sum()) for e in played.values()) > 0  # some food was eaten
    for task, e in played.items():
        assert e.returns.shape == e.lengths.shape == (EPISODES,)
        assert e.reset_keys.shape == (EPISODES, 2) and e.reset_keys.dtype == np.uint32
        assert e.actions.shape[1] == EPISODES and len(np.unique(e.reset_keys, axis=0)) == 8
        for i in range(EPISODES):
            episode = EvaluationEpisode(task, "any", i, EPISODES, float(e.returns[i]), 0.0,
                                        e.reset_keys[i], e.actions[:e.lengths[i], i])
            states: list = []
            ret = play_episode(episode, states)
            assert ret.dtype == np.float32 and ret == e.returns[i], (task, i)
            assert len(states) == e.lengths[i] + 1
            # the last state is where the episode ended: the time limit or all food eaten
            last = jax.device_get(states[-1])
            assert int(last.step_count) == e.lengths[i]


def test_evaluate_keeps_the_best_and_the_worst_episode_of_each_task(model, tmp_path):
    lake, run_dir = model
    config = EvalConfig(episodes=EPISODES, seed=3, checkpoint="latest")
    results = evaluate(lake, run_dir, tasks=list(TASKS), eval_config=config, write=False)
    info = read_model_info(run_dir)
    params, _ = load_params(run_dir, info, "latest")
    played = evaluate_episodes(info, params, TASKS, EPISODES, seed=3)
    refs = reference_returns(lake, "lbf", list(TASKS))
    for result in results:
        e = played[result.task]
        assert result.mean_return == float(e.returns.astype(np.float64).mean())
        best, worst = result.extremes
        order = worst_to_best(e.returns, e.lengths)
        assert (best.label, best.index) == ("best", order[-1])
        assert (worst.label, worst.index) == ("worst", order[0])
        assert best.episode_return == e.returns.max() and worst.episode_return == e.returns.min()
        assert best.of == worst.of == EPISODES
        for x in (best, worst):
            assert x.length == e.lengths[x.index]
            assert x.normalised_return == refs[result.task].normalise(x.episode_return)
            assert play_episode(x) == np.float32(x.episode_return)  # reproduced exactly
    # the same seed, the same episodes: a later evaluation draws the same ones
    again = evaluate(lake, run_dir, tasks=list(TASKS), eval_config=config, write=False)
    for a, b in zip(results, again, strict=True):
        for x, y in zip(a.extremes, b.extremes, strict=True):
            assert (x.index, x.episode_return) == (y.index, y.episode_return)
            np.testing.assert_array_equal(x.actions, y.actions)
    # drawn: a GIF of a few small frames, and the return it played back is the evaluation's
    best = results[0].extremes[0]
    played_back, frames = render_evaluation_episode(best, tmp_path / "best.gif", 4, 96)
    assert played_back == np.float32(best.episode_return)
    assert frames == min(4, best.length + 1)
    with Image.open(tmp_path / "best.gif") as gif:
        assert gif.format == "GIF" and gif.size == (96, 96) and 1 < gif.n_frames <= frames
