"""Recording real rollouts: only whole episodes, rows aligned with their rewards and flags.

The rollouts share compiled programs: the window test reads a prefix of the module's one
rollout, and the random episodes have the shape of test_offline_evaluate's random baseline
(one compilation per session on a cold JAX cache)."""

import jax
import numpy as np
import pytest

from lake_schema.catalogue import get_task
from lake_schema.checks import returns_within_bounds
from lake_schema.reader import Selection, read_table
from lake_schema.writer import write_episodes
from trainer.envs import make_env, random_rollout
from trainer.recording import collect_random_episodes, episodes_from_rollout

LBF = "lbf/8x8-2p-2f"


@pytest.fixture(scope="module")
def short_rollout():
    env = make_env(LBF, time_limit=10)
    return random_rollout(env, jax.random.PRNGKey(3), 4, 35)


def test_only_whole_episodes_are_kept(short_rollout):
    batch = episodes_from_rollout(short_rollout)
    done = np.asarray(short_rollout.episode_done)
    assert len(batch.lengths) == done.sum()  # every episode that ended started in the window
    assert (batch.lengths <= 10).all()
    ends = np.cumsum(batch.lengths) - 1
    assert (batch.terminated | batch.truncated)[ends].all()
    assert (batch.terminated | batch.truncated).sum() == len(ends)
    returns = np.asarray(short_rollout.episode_return)[done]
    np.testing.assert_allclose(np.sort(batch.episode_returns()), np.sort(returns), atol=1e-5)
    first = episodes_from_rollout(short_rollout, max_per_env=1)
    assert len(first.lengths) == 4


def test_window_without_a_whole_episode_is_an_error(short_rollout):
    t = 3  # the first 3 steps of the rollout: no episode of this seed ends in them
    window = short_rollout._replace(
        steps=jax.tree.map(lambda x: x[: t + 1], short_rollout.steps),
        actions=short_rollout.actions[:t], episode_return=short_rollout.episode_return[:t],
        episode_done=short_rollout.episode_done[:t],
    )
    assert not np.asarray(window.episode_done).any()
    with pytest.raises(ValueError, match="no episode completed"):
        episodes_from_rollout(window)


def test_random_episodes_round_trip_through_the_lake(lake):
    batch = collect_random_episodes(LBF, num_episodes=48, seed=1)
    assert len(batch.lengths) == 48 and batch.obs.dtype == np.int8
    write_episodes(lake, LBF, "random-seed1", 0, "low", batch)
    eps = read_table(lake, "episodes", Selection(env="lbf"))
    np.testing.assert_allclose(eps["return"].to_numpy(), batch.episode_returns())
    # the lake's own check: float32 rewards of a whole episode may sum to 1 + 3e-8 on lbf
    assert returns_within_bounds(lake, get_task(LBF), "random-seed1").passed
