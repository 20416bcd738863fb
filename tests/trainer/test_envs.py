"""trainer.envs: every catalogue task as a real Jumanji env, autoreset, adapters, rollouts.

CPU and compile-bound: environments are cached by `make_env`, rollouts are module-scoped and
shared, and per-task checks over the whole catalogue use `jax.eval_shape` (the real Jumanji
reset / step code is traced, nothing is compiled).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lake_schema.catalogue import ENVS, UnknownTaskError, get_task, task_names
from trainer.envs import (
    CONNECTOR_WIDTH,
    EnvStep,
    connector_obs,
    lbf_obs,
    make_env,
    mean_episode_return,
    random_actions,
    random_rollout,
    rware_obs,
)

SMALL = ("lbf/8x8-2p-2f", "rware/tiny-2ag", "connector/12x12x4a")
ROLLOUT = SMALL[:2]  # connector is checked through `connector_walk` (one compile fewer)
KEY = jax.random.PRNGKey(0)


# ------------------------------------------------------------------ the whole catalogue


@pytest.mark.parametrize("name", task_names())
def test_every_task_builds_and_resets_with_catalogue_shapes(name):
    task = get_task(name)
    env = make_env(name)
    spec = ENVS[task.env]
    assert env.env.num_agents == task.num_agents  # the real Jumanji env agrees
    assert type(env.env).__name__ == {
        "lbf": "LevelBasedForaging", "rware": "RobotWarehouse", "connector": "Connector"
    }[task.env]
    assert env.env.time_limit == task.time_limit
    n, f, a = task.num_agents, spec.obs_width, spec.num_actions

    _, step = jax.eval_shape(env.reset, KEY)
    assert step.obs.shape == (n, f)
    assert step.obs.dtype == np.dtype(spec.obs_dtype)
    assert step.legal.shape == (n, a) and step.legal.dtype == np.bool_
    for scalar, dtype in ((step.reward, np.float32), (step.terminated, np.bool_),
                          (step.truncated, np.bool_), (step.first, np.bool_)):
        assert scalar.shape == () and scalar.dtype == dtype


@pytest.mark.slow
@pytest.mark.parametrize("name", task_names())
def test_every_task_really_resets_and_steps(name):
    """Executed, not traced: a real reset and a few random steps of every catalogue task,
    with the catalogue's widths and values that fit its dtype (slow: compiles 52 times)."""
    task = get_task(name)
    env = make_env(name)
    result = random_rollout(env, KEY, 2, 3)
    obs = np.asarray(result.steps.obs)
    assert obs.shape == (4, 2, task.num_agents, task.spec.obs_width)
    assert obs.dtype == np.dtype(task.spec.obs_dtype)
    raw_view = np.asarray(jax.jit(env.env.reset)(KEY)[1].observation.action_mask)
    assert raw_view.shape == (task.num_agents, task.spec.num_actions)
    if task.env == "connector":
        assert np.isfinite(obs).all() and np.abs(obs).max() <= 1.0


@pytest.mark.parametrize("name", ["lbf/17x17-8p-10f", "rware/titanic-32ag",
                                  "connector/72x72x45a"])
def test_step_shapes_on_largest_tasks(name):
    env = make_env(name)
    state, step = jax.eval_shape(env.reset, KEY)
    actions = jax.ShapeDtypeStruct((env.num_agents,), jnp.int32)
    _, nxt = jax.eval_shape(env.step, state, actions)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), nxt) == jax.tree.map(
        lambda x: (x.shape, x.dtype), step
    )


def test_obs_width_is_fixed_per_env():
    for env_name, spec in ENVS.items():
        widths = {make_env(n).obs_width for n in task_names(env_name)}
        assert widths == {spec.obs_width}
        assert len({make_env(n).num_agents for n in task_names(env_name)}) > 1


def test_unknown_task_raises_catalogue_error():
    with pytest.raises(UnknownTaskError, match="8x8-2p-2f"):
        make_env("lbf/8x8-2p-3f")
    with pytest.raises(UnknownTaskError):
        make_env("nope/tiny")


def test_make_env_accepts_task_and_caches():
    assert make_env(get_task(SMALL[0])) is make_env(SMALL[0])
    assert make_env(SMALL[0], time_limit=3) is not make_env(SMALL[0])


# ------------------------------------------------------------------ shared rollouts


@pytest.fixture(scope="module")
def rollouts():
    """Random rollouts of small tasks, a little longer than one full episode."""
    out = {}
    for i, name in enumerate(ROLLOUT):
        env = make_env(name)
        out[name] = random_rollout(env, jax.random.PRNGKey(i), 8, env.time_limit + 20)
    return out


@pytest.mark.parametrize("name", ROLLOUT)
def test_concrete_reset_and_rollout_layout(name, rollouts):
    env, r = make_env(name), rollouts[name]
    t, b, n = env.time_limit + 20, 8, env.num_agents
    steps = jax.tree.map(np.asarray, r.steps)
    assert steps.obs.shape == (t + 1, b, n, env.obs_width)
    assert steps.obs.dtype == env.obs_dtype
    assert steps.legal.shape == (t + 1, b, n, env.num_actions)
    assert r.actions.shape == (t, b, n) and r.actions.dtype == np.int32
    assert steps.first[0].all() and (steps.reward[0] == 0).all()
    assert not (steps.terminated[0] | steps.truncated[0]).any()
    assert steps.legal[..., 0].all()  # no-op is always legal in all three envs
    acts = np.asarray(r.actions)
    picked = np.take_along_axis(steps.legal[:-1], acts[..., None], axis=-1)
    assert picked.all()  # the random policy only picks legal actions
    done = steps.terminated | steps.truncated
    assert not (steps.terminated & steps.truncated).any()
    np.testing.assert_array_equal(steps.first[1:], done[1:])
    assert done[1:].any(axis=0).all()  # every env finished at least one episode


@pytest.mark.parametrize("name", ROLLOUT)
def test_random_rollout_returns_within_task_bounds(name, rollouts):
    task, r = get_task(name), rollouts[name]
    lo, hi = task.return_bounds()
    tol = 1e-4 * max(1.0, abs(lo), abs(hi))
    done = np.asarray(r.episode_done)
    rets = np.asarray(r.episode_return)[done]
    assert done.sum() >= 8
    assert ((rets >= lo - tol) & (rets <= hi + tol)).all(), (rets.min(), rets.max())
    assert mean_episode_return(r) == pytest.approx(rets.mean())
    # Partial returns (episodes still running) stay in bounds too: rewards are re-summed
    # per episode from the stored steps, which also checks the rollout's bookkeeping.
    reward = np.asarray(r.steps.reward)[1:]
    running = np.zeros(reward.shape[1])
    for t in range(reward.shape[0]):
        running += reward[t]
        assert ((running >= lo - tol) & (running <= hi + tol)).all()
        np.testing.assert_allclose(running[done[t]], np.asarray(r.episode_return)[t][done[t]],
                                   rtol=1e-5, atol=1e-5)
        running[done[t]] = 0.0


def test_mean_episode_return_nan_without_episodes(rollouts):
    r = rollouts[SMALL[0]]
    none = r._replace(episode_done=np.zeros_like(r.episode_done))
    assert np.isnan(mean_episode_return(none))


# ------------------------------------------------------------------ autoreset semantics


def _episode_lengths(first: np.ndarray, done: np.ndarray):
    """(length, t, b) of every episode ending at step t of env b in a [T + 1, B] record."""
    for b in range(first.shape[1]):
        start = 0
        for t in range(1, first.shape[0]):
            if done[t, b]:
                yield t - start, t, b
                start = t


@pytest.mark.parametrize("name", ["lbf/8x8-2p-2f", "rware/tiny-2ag"])
def test_time_limit_is_truncation_not_termination(name, rollouts):
    # RWARE reports its time limit as a termination (discount 0): we must say truncated.
    env, r = make_env(name), rollouts[name]
    steps = jax.tree.map(np.asarray, r.steps)
    done = steps.terminated | steps.truncated
    truncations = 0
    for length, t, b in _episode_lengths(steps.first, done):
        if steps.truncated[t, b]:
            truncations += 1
            assert length == env.time_limit
        else:
            assert length <= env.time_limit
    assert truncations >= 1


@pytest.fixture(scope="module")
def connector_walk():
    """4 connector envs stepped 60 times with `step_batch`, beside the raw Jumanji step,
    `vmap(step)` and the resets autoreset must swap in. Env 1 is a twin of env 0 (same key,
    same actions), so its episodes end together with env 0's: with `reset_capacity(4) == 1`,
    two envs finishing on one step take two reset chunks in `step_batch`, a single one one."""
    env = make_env("connector/12x12x4a")
    raw_step = jax.jit(jax.vmap(env.env.step))
    vstep = jax.jit(jax.vmap(env.step))
    reset_keys_of = jax.jit(jax.vmap(lambda k: jax.random.split(k)[1]))
    states, steps = env.reset_batch(jax.random.PRNGKey(3), 4)
    states, steps = jax.tree.map(lambda x: x.at[1].set(x[0]), (states, steps))
    record = [(None, None, states, steps, None, None, None)]
    for i in range(60):
        actions = random_actions(jax.random.PRNGKey(100 + i), steps.legal)
        actions = actions.at[1].set(actions[0])
        new_states, new_steps = env.step_batch(states, actions)
        _, raw = raw_step(states.inner, actions)
        reset_keys = reset_keys_of(states.key)
        record.append((states, actions, new_states, new_steps, raw, reset_keys,
                       vstep(states, actions)))
        states, steps = new_states, new_steps
    return env, record


def test_autoreset_keeps_final_step_and_swaps_in_reset(connector_walk):
    env, record = connector_walk
    assert env.reset_capacity(4) == 1  # resets are gathered one env per chunk here
    ended, gathered, many = 0, 0, 0
    for _, _, state, step, raw, reset_keys, (vs, ve) in record[1:]:
        jax.tree.map(np.testing.assert_array_equal, (state, step), (vs, ve))  # step == batch
        raw_last = np.asarray(raw.last())
        raw_term = raw_last & np.all(np.asarray(raw.discount) == 0, axis=-1)
        np.testing.assert_array_equal(step.terminated, raw_term)
        np.testing.assert_array_equal(step.truncated, raw_last & ~raw_term)
        # the team reward is the mean over agents of Jumanji's own per-agent reward
        np.testing.assert_allclose(step.reward, np.asarray(raw.reward).mean(-1), rtol=1e-6)
        np.testing.assert_array_equal(step.first, raw_last)
        gathered += int(raw_last.sum() == 1)
        many += int(raw_last.sum() > 1)
        for b in range(len(raw_last)):
            if raw_last[b]:  # obs / legal / state: the next episode's, exactly reset(k)
                ended += 1
                fresh, first = env.reset(reset_keys[b])
                np.testing.assert_array_equal(step.obs[b], first.obs)
                np.testing.assert_array_equal(step.legal[b], first.legal)
                np.testing.assert_array_equal(state.inner.grid[b], fresh.inner.grid)
                assert int(state.inner.step_count[b]) == 0
            else:  # obs / state: the raw step's
                np.testing.assert_array_equal(state.inner.grid[b], raw.observation.grid[b])
                np.testing.assert_array_equal(step.legal[b], raw.observation.action_mask[b])
    assert ended >= 2 and gathered >= 1 and many >= 1


def test_connector_team_reward_is_the_mean_of_jumanjis_per_agent_rewards(connector_walk):
    """Against Jumanji's own `timestep.reward` ([N] per agent: +1 on connecting, -0.03 per
    step while unconnected) on real steps: the team reward is their mean, never the sum."""
    env, record = connector_walk
    n = env.num_agents
    seen_connection = seen_penalty = False
    for _, _, _, step, raw, *_ in record[1:]:
        per_agent = np.asarray(raw.reward)  # [B, N]
        assert per_agent.shape == (4, n)
        np.testing.assert_allclose(np.asarray(step.reward), per_agent.mean(-1), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(step.reward) * n, per_agent.sum(-1), rtol=1e-5,
                                   atol=1e-6)
        seen_connection |= bool((per_agent > 0.5).any())
        seen_penalty |= bool(np.isclose(per_agent, -0.03).any())
    assert seen_penalty and seen_connection  # both parts of Jumanji's reward occurred


def test_connector_episodes_truncate_at_the_catalogue_limit(connector_walk):
    """Connector's time limit is the catalogue's 40 steps (not g * g): an episode that the
    environment does not end is truncated on its 40th step, never later."""
    env, record = connector_walk
    assert env.time_limit == get_task("connector/12x12x4a").time_limit == 40
    first = np.stack([np.asarray(r[3].first) for r in record])  # [61, B]
    terminated = np.stack([np.asarray(r[3].terminated) for r in record])
    truncated = np.stack([np.asarray(r[3].truncated) for r in record])
    truncations = 0
    for length, t, b in _episode_lengths(first, terminated | truncated):
        assert length <= 40
        if truncated[t, b]:
            truncations += 1
            assert length == 40 and not terminated[t, b]
    assert truncations >= 1


def test_connector_random_returns_within_task_bounds(connector_walk):
    env, record = connector_walk
    lo, hi = env.task.return_bounds()
    running, finished = np.zeros(4), []
    for (_, _, _, before, *_), (_, actions, _, step, *_) in itertools.pairwise(record):
        picked = np.take_along_axis(np.asarray(before.legal), np.asarray(actions)[..., None], -1)
        assert picked.all()  # the random policy only picks legal actions
        running += np.asarray(step.reward)
        assert ((running >= lo - 1e-3) & (running <= hi + 1e-3)).all()
        done = np.asarray(step.terminated | step.truncated)
        finished += list(running[done])
        running[done] = 0.0
    assert len(finished) >= 2
    assert all(lo - 1e-3 <= r <= hi + 1e-3 for r in finished)


# ------------------------------------------------------------------ observation adapters


def _connector_reference(grid: np.ndarray, num_agents: int) -> np.ndarray:
    """Slow, loop-based reading of the documented 54-feature layout, from the grid alone."""
    g = grid.shape[0]
    out = np.zeros((num_agents, CONNECTOR_WIDTH), np.float32)
    for i in range(num_agents):
        head = target = None
        for r in range(g):
            for c in range(g):
                if grid[r, c] == 2 + 3 * i:
                    head = (r, c)
                if grid[r, c] == 3 + 3 * i:
                    target = (r, c)
        assert head is not None
        if target is None:  # connected: Jumanji replaced the target by the head
            target = head
        feats = [head[0] / g, head[1] / g, target[0] / g, target[1] / g]
        blockers, targets = [], []
        for dr in range(-2, 3):
            for dc in range(-2, 3):
                r, c = head[0] + dr, head[1] + dc
                if not (0 <= r < g and 0 <= c < g):
                    blockers.append(1.0)
                    targets.append(0.0)
                    continue
                v = int(grid[r, c])
                b = t = 0.0
                if v != 0:
                    owner, kind = (v - 1) // 3, (v - 1) % 3
                    if kind == 0:
                        b = -1.0
                    elif kind == 1 and owner != i:
                        b = 1.0
                    elif kind == 2:
                        t = 1.0 if owner == i else -1.0
                blockers.append(b)
                targets.append(t)
        out[i] = feats + blockers + targets
    return out


def test_connector_adapter_matches_slow_reference_in_wrapper(connector_walk):
    env, record = connector_walk
    checked = 0
    for i in (0, 1, 5, 20, 45, 60):
        _, _, state, step, *_ = record[i]
        grids = np.asarray(state.inner.grid)
        for b in range(grids.shape[0]):
            ref = _connector_reference(grids[b], env.num_agents)
            np.testing.assert_allclose(np.asarray(step.obs[b]), ref, atol=1e-6)
            checked += 1
    assert checked == 24


@pytest.mark.parametrize("name", ["connector/15x15x3a", "connector/21x21x5a"])
def test_connector_adapter_matches_slow_reference(name):
    raw = make_env(name).env  # raw Jumanji states: cheaper to compile than the wrapper

    @jax.jit
    def walk(key):
        def body(state, k):
            actions = random_actions(k, state.action_mask)
            state, _ = raw.step(state, actions)
            agents = state.agents
            return state, (state.grid, connector_obs(state.grid, agents.position, agents.target))

        state, _ = raw.reset(key)
        return jax.lax.scan(body, state, jax.random.split(key, 12))[1]

    for seed in range(2):
        grids, obs = jax.tree.map(np.asarray, walk(jax.random.PRNGKey(seed)))
        for t in (0, 3, 11):
            np.testing.assert_allclose(obs[t], _connector_reference(grids[t], raw.num_agents),
                                       atol=1e-6)


def test_connector_adapter_edges_hand_made():
    # 5x5 grid, agent 0 head at the corner (0, 0) with its path at (0, 1) and target at
    # (4, 4); agent 1 head at (1, 1), path (2, 1), target (0, 2).
    grid = np.zeros((5, 5), np.int32)
    grid[0, 0], grid[0, 1], grid[4, 4] = 2, 1, 3
    grid[1, 1], grid[2, 1], grid[0, 2] = 5, 4, 6
    heads = jnp.array([[0, 0], [1, 1]])
    targets = jnp.array([[4, 4], [0, 2]])
    obs = np.asarray(connector_obs(jnp.asarray(grid), heads, targets))
    np.testing.assert_allclose(obs[0, :4], [0, 0, 0.8, 0.8])
    blk0 = obs[0, 4:29].reshape(5, 5)
    tgt0 = obs[0, 29:].reshape(5, 5)
    assert (blk0[:2, :] == 1).all() and (blk0[:, :2] == 1).all()  # off-grid rows / cols
    assert blk0[2, 2] == 0  # own head
    assert blk0[2, 3] == -1  # own path at (0, 1)
    assert blk0[3, 3] == 1  # agent 1's head at (1, 1)
    assert blk0[4, 3] == -1  # agent 1's path at (2, 1)
    assert tgt0[2, 4] == -1  # agent 1's target at (0, 2)
    assert tgt0.sum() == -1  # own target (4, 4) is out of the window
    tgt1 = obs[1, 29:].reshape(5, 5)
    assert tgt1[1, 3] == 1 and tgt1[4, 4] == 0  # own target (0, 2); (4,4) is offset (3,3)
    np.testing.assert_allclose(obs, _connector_reference(grid, 2), atol=1e-6)


@pytest.mark.parametrize("name", ["lbf/17x17-8p-10f", "rware/titanic-32ag"])
def test_int8_obs_values_fit_on_largest_grids(name):
    """The raw int32 Jumanji observations must fit int8 before the adapters cast them."""
    env = make_env(name)
    raw = env.env

    def run(key):
        def body(carry, k):
            state, ts = carry
            actions = random_actions(k, ts.observation.action_mask)
            state, ts = raw.step(state, actions)
            view = ts.observation.agents_view
            return (state, ts), (view.min(), view.max())

        state, ts = raw.reset(key)
        _, (lo, hi) = jax.lax.scan(body, (state, ts), jax.random.split(key, 40))
        first = ts.observation.agents_view
        return jnp.minimum(lo.min(), first.min()), jnp.maximum(hi.max(), first.max())

    lo, hi = jax.jit(jax.vmap(run))(jax.random.split(KEY, 4))
    info = np.iinfo(np.int8)
    assert info.min <= int(lo.min()) and int(hi.max()) <= info.max, (int(lo.min()), int(hi.max()))
    assert ENVS[get_task(name).env].obs_dtype == "int8"


def test_lbf_and_rware_adapters_flatten_and_cast():
    view = jnp.arange(2 * 75, dtype=jnp.int32).reshape(2, 3, 5, 5) % 7
    out = lbf_obs(view)
    assert out.shape == (2, 75) and out.dtype == jnp.int8
    np.testing.assert_array_equal(out[1], np.asarray(view[1]).reshape(-1))
    feats = jnp.ones((3, 66), jnp.int32) * 55
    assert rware_obs(feats).dtype == jnp.int8 and int(rware_obs(feats).max()) == 55


# ------------------------------------------------------------------ bad input


def test_bad_shapes_raise_clear_value_errors():
    env = make_env("rware/tiny-2ag")
    state, step = jax.eval_shape(env.reset, KEY)
    with pytest.raises(ValueError, match=r"actions must have shape \(2,\).*got \(3,\)"):
        env.step(state, jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match="actions must be integers"):
        env.step(state, jnp.zeros(2, jnp.float32))
    states, _ = jax.eval_shape(lambda k: env.reset_batch(k, 4), KEY)
    with pytest.raises(ValueError, match=r"actions must have shape \(4, 2\)"):
        env.step_batch(states, jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match=r"obs must have shape \(2, 66\)"):
        env.check_obs(jnp.zeros((2, 75), jnp.int8))
    with pytest.raises(ValueError, match="obs must have dtype int8"):
        env.check_obs(jnp.zeros((4, 2, 66), jnp.float32), (4,))
    env.check_obs(jnp.zeros((4, 2, 66), jnp.int8), (4,))
    with pytest.raises(ValueError, match="lbf agents_view"):
        lbf_obs(jnp.zeros((2, 75), jnp.int32))
    with pytest.raises(ValueError, match="rware agents_view"):
        rware_obs(jnp.zeros((2, 3, 22), jnp.int32))
    with pytest.raises(ValueError, match="square"):
        connector_obs(jnp.zeros((4, 5), jnp.int32), jnp.zeros((1, 2), jnp.int32),
                      jnp.zeros((1, 2), jnp.int32))
    with pytest.raises(ValueError, match="num_envs"):
        random_rollout(env, KEY, 0, 4)
    assert isinstance(step, EnvStep)
