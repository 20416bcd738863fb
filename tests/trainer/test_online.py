"""Online Sable, the pure pieces: GAE, PPO losses, agent permutation, chunked forward from a
stored state, and config validation (errors before any compute)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainer.networks import Sable, SableConfig
from trainer.online import OnlineConfig, Schedule, train_online
from trainer.online.ppo import (
    PPOBatch,
    action_log_probs,
    entropy,
    gae,
    masked_mean,
    normalise,
    permute_agents,
    policy_loss,
    sable_config,
    value_loss,
    with_agent_ids,
)

LBF = "lbf/8x8-2p-2f"


# ----------------------------------------------------------------------------- GAE


def slow_gae(reward, value, done, last_value, gamma, lam):
    """The textbook recursion, one environment and agent at a time."""
    t_len, b_len, n_len = value.shape
    adv = np.zeros_like(value)
    for b in range(b_len):
        for n in range(n_len):
            running = 0.0
            for t in reversed(range(t_len)):
                next_v = last_value[b, n] if t == t_len - 1 else value[t + 1, b, n]
                if done[t, b]:  # the episode ended with step t: no bootstrap, no carry
                    next_v, running = 0.0, 0.0
                delta = reward[t, b] + gamma * next_v - value[t, b, n]
                running = delta + gamma * lam * running
                adv[t, b, n] = running
    return adv, adv + value


@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (0.9, 1.0), (0.5, 0.0)])
def test_gae_matches_slow_reference_across_episode_boundaries(gamma, lam):
    rng = np.random.default_rng(0)
    t, b, n = 9, 4, 3
    reward = rng.normal(size=(t, b)).astype(np.float32)
    value = rng.normal(size=(t, b, n)).astype(np.float32)
    done = rng.random((t, b)) < 0.25
    done[2, 0] = done[3, 0] = True  # back-to-back ends (a one-step episode)
    done[-1, 1] = True  # an episode ending on the last step ignores last_value
    done[:, 2] = False  # one environment with no boundary at all
    last_value = rng.normal(size=(b, n)).astype(np.float32)
    adv, target = gae(jnp.asarray(reward), jnp.asarray(value), jnp.asarray(done),
                      jnp.asarray(last_value), gamma, lam)
    ref_adv, ref_target = slow_gae(reward, value, done, last_value, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target, ref_target, rtol=1e-5, atol=1e-5)


def test_gae_with_lambda_one_is_the_discounted_return_minus_value():
    reward = jnp.array([[1.0], [0.0], [2.0]])
    value = jnp.array([[[0.5]], [[0.2]], [[0.1]]])
    done = jnp.array([[False], [False], [True]])
    adv, target = gae(reward, value, done, jnp.array([[9.0]]), 0.5, 1.0)
    np.testing.assert_allclose(target[:, 0, 0], [1.0 + 0.25 * 2.0, 0.5 * 2.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(adv, target - value, atol=1e-6)


# ----------------------------------------------------------------------------- losses


def test_policy_loss_unclipped_clipped_and_stats():
    adv = jnp.array([1.0, -1.0, 2.0, -2.0])
    old = jnp.zeros(4)
    loss, (kl, frac) = policy_loss(old, old, adv, 0.2)
    assert float(loss) == pytest.approx(-float(adv.mean()))
    assert float(kl) == pytest.approx(0.0) and float(frac) == 0.0

    ratio = jnp.array([1.5, 1.5, 0.5, 0.5])  # all outside [0.8, 1.2]
    loss, (kl, frac) = policy_loss(jnp.log(ratio), old, adv, 0.2)
    # min(r A, clip(r) A): A>0,r=1.5 -> 1.2; A<0,r=1.5 -> -1.5; A>0,r=0.5 -> 1.0; A<0,r=0.5 -> -1.6
    assert float(loss) == pytest.approx(-(1.2 * 1 - 1.5 * 1 + 0.5 * 2 - 0.8 * 2) / 4, rel=1e-5)
    assert float(frac) == 1.0
    assert float(kl) == pytest.approx(float(jnp.mean(ratio - 1 - jnp.log(ratio))), rel=1e-5)


def test_policy_loss_gradient_vanishes_where_clipped():
    adv = jnp.array([1.0, -1.0])
    grad = jax.grad(lambda lp: policy_loss(lp, jnp.zeros(2), adv, 0.2)[0])(jnp.log(jnp.array(
        [1.5, 1.5])))
    assert float(grad[0]) == 0.0  # A > 0 and r above 1 + eps: clipped, no push further
    assert float(grad[1]) != 0.0  # A < 0 and r above 1 + eps: the unclipped term is active


def test_value_loss_takes_the_worse_of_clipped_and_unclipped():
    old, target = jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0])
    value = jnp.array([0.5, -0.5])
    # entry 0: (0.5-1)^2=0.25 vs clipped 0.2 -> (0.2-1)^2=0.64 ; entry 1: 2.25 vs (-0.2-1)^2=1.44
    assert float(value_loss(value, old, target, 0.2)) == pytest.approx(0.5 * (0.64 + 2.25) / 2)
    mask = jnp.array([True, False])
    assert float(value_loss(value, old, target, 0.2, mask)) == pytest.approx(0.5 * 0.64)


def test_entropy_and_log_probs_respect_legal_actions():
    min_f = float(jnp.finfo(jnp.float32).min)
    logits = jnp.array([[0.0, 0.0, min_f, 0.0], [3.0, min_f, min_f, min_f]])
    legal = logits > min_f
    np.testing.assert_allclose(entropy(logits, legal), [math.log(3), 0.0], atol=1e-6)
    np.testing.assert_allclose(
        action_log_probs(logits, jnp.array([1, 0])), [-math.log(3), 0.0], atol=1e-6
    )
    assert np.isfinite(jax.grad(lambda x: entropy(x, legal).sum())(logits)).all()


def test_normalise_and_masked_mean():
    x = jnp.array([1.0, 2.0, 3.0, 100.0])
    mask = jnp.array([True, True, True, False])
    assert float(masked_mean(x, mask)) == pytest.approx(2.0)
    z = normalise(x, mask)
    assert float(masked_mean(z, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(jnp.sqrt(masked_mean(z**2, mask))) == pytest.approx(1.0, rel=1e-4)


# ----------------------------------------------------------------------------- batch plumbing


def test_permute_agents_moves_every_per_agent_leaf_and_nothing_else():
    b, t, n, f, a = 2, 3, 4, 5, 6
    per = np.arange(b * t * n, dtype=np.float32).reshape(b, t, n)
    batch = PPOBatch(
        obs=jnp.asarray(np.repeat(per[..., None], f, -1)),
        legal=jnp.asarray(np.repeat(per[..., None] % 2 == 0, a, -1)),
        first=jnp.zeros((b, t), bool).at[:, 0].set(True),
        action=jnp.asarray(per.astype(np.int32)),
        old_log_prob=jnp.asarray(per), old_value=jnp.asarray(per + 1),
        advantage=jnp.asarray(per + 2), target=jnp.asarray(per + 3),
        hstate=jnp.ones((b, 7)),
    )
    order = jnp.array([2, 0, 3, 1])
    out = permute_agents(batch, order)
    for name in ("obs", "legal", "action", "old_log_prob", "old_value", "advantage", "target"):
        np.testing.assert_array_equal(
            getattr(out, name), np.take(np.asarray(getattr(batch, name)), np.asarray(order), 2)
        )
    np.testing.assert_array_equal(out.first, batch.first)
    np.testing.assert_array_equal(out.hstate, batch.hstate)


def test_agent_ids_are_appended_and_travel_with_their_agents():
    b, t, n, f = 2, 3, 4, 5
    obs = np.random.default_rng(0).integers(0, 9, (b, t, n, f)).astype(np.int8)
    with_ids = np.asarray(with_agent_ids(jnp.asarray(obs)))
    assert with_ids.shape == (b, t, n, f + n) and with_ids.dtype == np.int8
    for i in range(n):  # by hand: agent i's features, then e_i
        np.testing.assert_array_equal(with_ids[:, :, i, :f], obs[:, :, i])
        e_i = np.broadcast_to(np.eye(n)[i], (b, t, n))
        np.testing.assert_array_equal(with_ids[:, :, i, f:], e_i)
    zeros = jnp.zeros((b, t, n))
    batch = PPOBatch(
        obs=jnp.asarray(with_ids), legal=jnp.ones((b, t, n, 2), bool),
        first=jnp.zeros((b, t), bool), action=zeros.astype(jnp.int32), old_log_prob=zeros,
        old_value=zeros, advantage=zeros, target=zeros, hstate=jnp.ones((b, 7)),
    )
    order = [2, 0, 3, 1]
    out = np.asarray(permute_agents(batch, jnp.array(order)).obs)
    for slot, agent in enumerate(order):  # the slot holds the agent's features and its own id
        np.testing.assert_array_equal(out[:, :, slot, :f], obs[:, :, agent])
        assert (out[:, :, slot, f:].argmax(-1) == agent).all()


def test_agent_ids_widen_the_network_input_only():
    from trainer.envs import make_env

    env = make_env(LBF)
    assert sable_config(OnlineConfig(), env).obs_width == env.obs_width + env.num_agents
    assert sable_config(OnlineConfig(agent_ids=False), env).obs_width == env.obs_width


def test_chunked_forward_from_a_stored_state_matches_one_chunk():
    """The update's chunked forward (`forward_train` from a state) continues from the
    rollout-start state exactly as the single-chunk form does (chunks carry the state;
    episode starts inside chunks reset it)."""
    b, t, n, f, a = 2, 8, 3, 5, 4
    config = SableConfig(obs_width=f, num_actions=a, embed_dim=16, num_heads=2)
    model = Sable(config)
    params = jax.jit(model.init_params)(jax.random.PRNGKey(0))  # eager flax is slow on CPU
    rng = np.random.default_rng(1)
    obs = jnp.asarray(rng.normal(size=(b, t, n, f)).astype(np.float32))
    actions = jnp.asarray(rng.integers(0, a, (b, t, n)).astype(np.int32))
    legal = jnp.ones((b, t, n, a), bool)
    first = jnp.zeros((b, t), bool).at[0, 5].set(True).at[1, 2].set(True)
    # A non-zero stored state: the state after a previous stretch of the same episodes.
    prev = jnp.asarray(rng.normal(size=(b, 4, n, f)).astype(np.float32))
    _, state = jax.jit(model.forward_chunk)(
        params, model.init_state(b), prev, actions[:, :4], legal[:, :4],
        jnp.zeros((b, 4), bool), jnp.ones((b, 4, n), bool),
    )
    mask = jnp.ones((b, t, n), bool)

    def forward(s, chunk):
        chunked = Sable(dataclasses.replace(config, chunk_timesteps=chunk))
        return chunked.forward_train(params, obs, actions, legal, first, mask, state=s)

    run = jax.jit(forward, static_argnums=1)
    whole, chunked, zero = run(state, None), run(state, 2), run(model.init_state(b), None)
    np.testing.assert_allclose(chunked.policy_logits, whole.policy_logits, atol=1e-4)
    np.testing.assert_allclose(chunked.value, whole.value, atol=1e-4)
    # The stored state matters before the first episode start, not after it.
    assert not np.allclose(zero.value[0, :5], whole.value[0, :5], atol=1e-4)
    np.testing.assert_allclose(zero.value[0, 5:], whole.value[0, 5:], atol=1e-4)


@pytest.fixture(scope="module")
def small_programs():
    """(env, config, init, update) of a small PPO config: one update program for the tests of
    the update's flags and call sizes."""
    from trainer.envs import make_env
    from trainer.online.ppo import init_ppo_state, make_ppo_update

    config = OnlineConfig(num_envs=4, rollout_length=32, embed_dim=16, num_heads=2,
                          chunk_timesteps=None, ppo_epochs=1, num_minibatches=1)
    env = make_env(LBF)
    model = Sable(sable_config(config, env))
    init = jax.jit(lambda k, total: init_ppo_state(env, model, config, k, total))
    return env, config, init, make_ppo_update(env, model, config)


def test_recording_runs_through_the_training_program_without_learning(small_programs):
    """Checkpoints and references are recorded through the task's training programs (no
    rollout program of their own): without learning the parameters stay; every environment's
    first episode is whole, `num_envs` of them in batches of the training's environments;
    with `uniform` the actions are legal, do not depend on the parameters, and are uniform
    over each step's legal actions (counts within 5 sigma of that); without it they are the
    policy's."""
    from trainer.online.ppo import policy_rollout
    from trainer.recording import episodes_from_rollout

    env, config, init, update = small_programs
    state = init(jax.random.PRNGKey(0), np.int32(1))
    params_a = jax.tree.map(jnp.copy, state.params)
    params_b = init(jax.random.PRNGKey(1), np.int32(1)).params
    state, metrics, _ = update(state, np.int32(2), np.bool_(False), np.bool_(False))
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params_a), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(metrics.total_loss) == 0.0 and int(state.update) == 2

    def record(params, uniform):  # 10 episodes: 3 batches of 4 environments, 4 rollouts each
        return policy_rollout(init, update, config, env.time_limit, params,
                              jax.random.PRNGKey(7), uniform, 10)

    rand_a, rand_b = record(params_a, True), record(params_b, True)
    assert rand_a.actions.shape == (128, 10, env.num_agents)  # 4 x 32 steps >= time limit
    episodes = episodes_from_rollout(rand_a, max_per_env=1)
    assert len(episodes.lengths) == 10
    # chained across the rollouts' seams without a step lost or repeated: each episode ends
    # exactly once, at its last step, by termination or by the time limit at step 100
    ends = np.cumsum(episodes.lengths) - 1
    done = episodes.terminated | episodes.truncated
    assert done[ends].all() and done.sum() == 10
    assert np.all(episodes.terminated[ends] | (episodes.lengths == env.time_limit))
    np.testing.assert_array_equal(rand_a.actions, rand_b.actions)
    legal = np.asarray(rand_a.steps.legal[:-1])  # the step each action was chosen on
    actions = np.asarray(rand_a.actions)
    assert np.take_along_axis(legal, actions[..., None], -1).all()
    counts = np.bincount(actions.ravel(), minlength=env.num_actions)
    expected = (legal / legal.sum(-1, keepdims=True)).reshape(-1, env.num_actions).sum(0)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 1), (counts, expected)
    policy_a, policy_b = record(params_a, False), record(params_b, False)
    assert not np.array_equal(policy_a.actions, policy_b.actions)
    assert not np.array_equal(policy_a.actions, rand_a.actions)


# ----------------------------------------------------------------------------- config


def test_profiles_and_plan_spacing():
    paper = OnlineConfig.profile("paper")
    assert paper.embed_dim == 64 and paper.num_checkpoints == 50
    assert OnlineConfig.profile("demo") == OnlineConfig()
    assert OnlineConfig.profile("demo", env="lbf") == OnlineConfig(num_envs=32)
    assert OnlineConfig.profile("demo", env="connector") == OnlineConfig()
    rware = OnlineConfig.profile("demo", env="rware")
    assert (rware.rollout_length, rware.learning_rate) == (128, 2.5e-4)
    assert OnlineConfig.profile("demo", env="rware", rollout_length=32).rollout_length == 32
    assert OnlineConfig.profile("paper", env="rware") == paper
    p = Schedule.of(LBF, OnlineConfig(total_env_steps=10 * 4096 + 5, num_checkpoints=3))
    assert p.num_updates == 10 and p.total_env_steps == 40960
    assert p.checkpoint_updates == (3, 7, 10)  # at 1/3, 2/3 and 3/3 of the updates
    assert [p.quality(k) for k in range(3)] == ["low", "low", "high"]
    p = Schedule.of(LBF, OnlineConfig(total_env_steps=7 * 4096, num_checkpoints=7))
    assert p.checkpoint_updates == tuple(range(1, 8))


@pytest.mark.parametrize(
    "task, kwargs, message",
    [
        ("lbf/9x9-2p-2f", {}, "unknown task 'lbf/9x9-2p-2f'"),
        ("nope/x", {}, "unknown environment 'nope'"),
        (LBF, {"total_env_steps": 4095}, "smaller than one rollout"),
        (LBF, {"total_env_steps": 3 * 4096, "num_checkpoints": 4}, "more than the 3 update"),
        (LBF, {"episodes_per_checkpoint": 0}, "episodes_per_checkpoint must be an int >= 1"),
        (LBF, {"num_envs": 10, "num_minibatches": 3}, "not divisible by num_minibatches"),
        (LBF, {"rollout_length": 50}, "not a multiple of chunk_timesteps"),
        (LBF, {"gamma": 1.5}, "gamma must lie in"),
        (LBF, {"learning_rate": 0}, "learning_rate must lie in"),
        (LBF, {"seed": -1}, "seed must be an int >= 0"),
    ],
)
def test_bad_input_is_a_clear_error_before_any_compute(lake, tmp_path, task, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_online(task, OnlineConfig(**kwargs) if kwargs else OnlineConfig(), lake, "r0",
                     checkpoint_dir=tmp_path / "ck")
    assert lake.find("") == []  # nothing written, nothing deleted
    assert not (tmp_path / "ck").exists()


def test_bad_run_id_and_profile_are_refused(lake, tmp_path):
    with pytest.raises(ValueError, match="bad run id"):
        train_online(LBF, OnlineConfig(), lake, "bad/run", checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ValueError, match="unknown profile"):
        OnlineConfig.profile("huge")
    with pytest.raises(ValueError, match="unknown OnlineConfig field"):
        OnlineConfig.profile("demo", batch_size=3)
    assert not (tmp_path / "ck").exists()


def test_progress_lines_give_an_eta():
    from trainer.online.training import TrainingProgress
    from trainer.progress import duration

    assert [duration(s) for s in (5, 65, 3725, float("nan"))] == ["5s", "1m05s", "1h02m", "?"]
    lines: list[str] = []
    progress = TrainingProgress(total_steps=10_000, interval_s=0.0, log=lines.append)
    progress.emit(2_000, steps_per_s=100.0)
    assert "2,000/10,000 env steps" in lines[0] and "ETA 1m20s" in lines[0]


# ----------------------------------------------------------------------------- updates per call


def test_n_updates_in_one_call_equal_n_calls_of_one(small_programs):
    """`update(state, n, ...)` runs the same n updates as n calls: the training loop may size
    its calls freely. Metrics: episodes and returns summed, the rest averaged; the rollout
    returned is the last update's."""
    _, _, init, update = small_programs

    def fresh():
        return init(jax.random.PRNGKey(3), np.int32(3))

    learn, policy = np.bool_(True), np.bool_(False)
    together, summed, last = update(fresh(), np.int32(3), learn, policy)
    state, singles = fresh(), []
    for _ in range(3):
        state, m, roll = update(state, np.int32(1), learn, policy)
        singles.append(jax.device_get(m))
    for a, b in zip(jax.tree.leaves(last), jax.tree.leaves(roll), strict=True):
        np.testing.assert_array_equal(a, b)  # the last update's rollout
    assert int(together.update) == int(state.update) == 3
    for a, b in zip(jax.tree.leaves(together.params), jax.tree.leaves(state.params),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert int(summed.episodes) == sum(int(m.episodes) for m in singles) > 0  # 96 > 50 steps
    np.testing.assert_allclose(summed.return_sum, sum(m.return_sum for m in singles),
                               rtol=1e-5)
    np.testing.assert_allclose(summed.total_loss, np.mean([m.total_loss for m in singles]),
                               rtol=1e-4, atol=1e-6)
