"""BC, CQL and Oryx losses: reference formulas, masks, episode boundaries inside a chunk."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainer.networks.sable import NEG_INF
from trainer.offline import hl_gauss
from trainer.offline.losses import (
    batch_softmax_weights,
    bc_loss,
    cql_loss,
    oryx_loss,
    take_action,
    td_mask,
    td_targets,
)

B, T, N, A = 4, 6, 3, 5
GAMMA = 0.99
SUPPORT = hl_gauss.make_support(-1.0, 1.0, 11, 0.75)


def _inputs(seed=0, bins=None):
    rng = np.random.default_rng(seed)
    legal = rng.random((B, T, N, A)) < 0.7
    legal[..., 0] = True
    actions = np.where(rng.random((B, T, N)) < 0.5, 0, rng.integers(0, A, (B, T, N)))
    actions = np.where(np.take_along_axis(legal, actions[..., None], -1)[..., 0], actions, 0)
    tail = () if bins is None else (bins,)
    return dict(
        logits=np.where(legal, rng.normal(size=(B, T, N, A)), NEG_INF).astype(np.float32),
        q=rng.normal(scale=0.5, size=(B, T, N, A, *tail)).astype(np.float32),
        target_q=rng.normal(scale=0.5, size=(B, T, N, A, *tail)).astype(np.float32),
        actions=actions.astype(np.int32), legal=legal,
        reward=rng.random((B, T)).astype(np.float32),
    )


def _oryx(x, terminated, first, mask, support=None, value_t=1000.0, policy_t=0.1, tasks=None):
    return oryx_loss(x["logits"], x["q"], x["target_q"], x["actions"], x["reward"], terminated,
                     first, mask, gamma=GAMMA, value_temperature=value_t,
                     policy_temperature=policy_t, critic_coef=1.0, support=support, tasks=tasks)


def _cql(x, terminated, first, mask, support=None, alpha=10.0, tasks=None):
    return cql_loss(x["q"], x["target_q"], x["actions"], x["legal"], x["reward"], terminated,
                    first, mask, gamma=GAMMA, alpha=alpha, support=support, tasks=tasks)


def _softmax0(z):
    e = np.exp(z - z.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


# one terminated episode boundary inside the chunk (step 2 ends it, step 3 starts the next)
TERMINATED = np.zeros((B, T), bool)
TERMINATED[:, 2] = True
FIRST = np.zeros((B, T), bool)
FIRST[:, 0] = FIRST[:, 3] = True
ALL = np.ones((B, T, N), bool)


def test_td_mask_and_targets_at_episode_boundaries():
    # sample 0: terminates at 2; sample 1: truncated at 2 (next episode starts at 3);
    # sample 2: terminates on the chunk's last step; sample 3: no boundary at all
    first = np.zeros((4, 6), bool)
    terminated = np.zeros((4, 6), bool)
    first[0, 3] = first[1, 3] = True
    terminated[0, 2] = terminated[2, 5] = True
    mask = np.ones((4, 6, 1), bool)
    valid = np.asarray(td_mask(mask, terminated, first))[..., 0]
    expected = np.array([[1, 1, 1, 1, 1, 0],   # 2 terminal (y = r), 5 has no next step
                         [1, 1, 0, 1, 1, 0],   # 2 truncated: nothing to bootstrap from
                         [1, 1, 1, 1, 1, 1],   # 5 terminal: y = r even at the chunk's end
                         [1, 1, 1, 1, 1, 0]], bool)
    np.testing.assert_array_equal(valid, expected)
    reward = np.arange(24, dtype=np.float32).reshape(4, 6)
    nxt = np.full((4, 6, 1), 10.0, np.float32)
    y = np.asarray(td_targets(reward, nxt, terminated, 0.5))[..., 0]
    np.testing.assert_allclose(y[0, 2], reward[0, 2])  # terminal: no bootstrap
    np.testing.assert_allclose(y[2, 5], reward[2, 5])
    np.testing.assert_allclose(y[3, :5], reward[3, :5] + 5.0)
    # a padded slot at t + 1 is never bootstrapped from
    mask2 = np.ones((4, 6, 2), bool)
    mask2[3, 4:, 1] = False
    valid2 = np.asarray(td_mask(mask2, terminated, first))
    assert not valid2[3, 3, 1] and not valid2[3, 4, 1] and valid2[3, 3, 0]


def test_batch_softmax_weights():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3))
    w = np.asarray(batch_softmax_weights(x, np.ones_like(x, bool), 0.5))
    np.testing.assert_allclose(w, 5 * _softmax0(x / 0.5), rtol=1e-5)
    np.testing.assert_allclose(w.mean(0), 1.0, rtol=1e-5)
    mask = rng.random((5, 3)) < 0.6
    mask[:, 2] = False  # a position with no real entry: all weights 0, no NaN
    wm = np.asarray(batch_softmax_weights(x, mask, 0.5))
    assert np.isfinite(wm).all() and (wm[~mask] == 0).all()
    for j in range(2):
        if mask[:, j].any():
            np.testing.assert_allclose(wm[mask[:, j], j].mean(), 1.0, rtol=1e-5)
    # a high temperature gives uniform weights (ICQ's value weight at 1000)
    np.testing.assert_allclose(batch_softmax_weights(x, np.ones_like(x, bool), 1e6), 1.0,
                               rtol=1e-5)
    # huge values do not overflow
    assert np.isfinite(np.asarray(batch_softmax_weights(x * 1e4, np.ones_like(x, bool), 0.1))
                       ).all()


def test_take_action_with_and_without_bins():
    x = jnp.arange(2 * 1 * 1 * 3 * 4, dtype=jnp.float32).reshape(2, 1, 1, 3, 4)
    a = jnp.array([2, 0]).reshape(2, 1, 1)
    np.testing.assert_array_equal(take_action(x, a), x[jnp.arange(2), 0, 0, a[:, 0, 0]][:, None,
                                                                                         None])
    assert take_action(x[..., 0], a).shape == (2, 1, 1)


def test_bc_loss_is_the_masked_autoregressive_nll():
    x = _inputs()
    mask = np.ones((B, T, N), bool)
    mask[:, :, 2] = False  # a padded slot
    terms = bc_loss(x["logits"], x["actions"], mask)
    logp = np.take_along_axis(_log_softmax(x["logits"].astype(np.float64)),
                              x["actions"][..., None], -1)[..., 0]
    np.testing.assert_allclose(terms.total, -logp[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(terms.per_sample, [-logp[b][mask[b]].mean() for b in range(B)],
                               rtol=1e-5)
    # padded slots' logits change nothing (and get no gradient)
    other = x["logits"].copy()
    other[:, :, 2] = 123.0
    np.testing.assert_allclose(bc_loss(other, x["actions"], mask).total, terms.total, rtol=1e-6)
    grad = jax.grad(lambda lg: bc_loss(lg, x["actions"], mask).total)(jnp.asarray(x["logits"]))
    assert float(jnp.abs(grad[:, :, 2]).max()) == 0.0


def test_oryx_loss_matches_og_marl_formula():
    """Steps 1-7 of the facts, written out in numpy as og-marl does (all agents real, the
    only episode boundary a termination, so og-marl's shifted done flags equal `first`)."""
    x = _inputs(2)
    terms = _oryx(x, TERMINATED, FIRST, ALL)
    a = x["actions"][..., None]
    q_sa = np.take_along_axis(x["q"], a, -1)[..., 0]
    tq_sa = np.take_along_axis(x["target_q"], a, -1)[..., 0]
    boot = B * _softmax0(tq_sa / 1000.0) * tq_sa
    done_next = FIRST[:, 1:, None].astype(np.float32)
    y = x["reward"][:, :-1, None] + GAMMA * (1 - done_next) * boot[:, 1:]
    td = 0.5 * np.mean((y - q_sa[:, :-1]) ** 2)
    log_pi = _log_softmax(x["logits"].astype(np.float64))
    baseline = (np.exp(log_pi) * x["q"]).sum(-1)
    w_pi = B * _softmax0((q_sa - baseline) / 0.1)
    policy = np.mean(-w_pi * np.take_along_axis(log_pi, a, -1)[..., 0])
    np.testing.assert_allclose(terms.critic, td, rtol=1e-5)
    np.testing.assert_allclose(terms.policy, policy, rtol=1e-4)
    np.testing.assert_allclose(terms.total, td + policy, rtol=1e-4)
    np.testing.assert_allclose(terms.q_data, q_sa.mean(), rtol=1e-5)


def test_cql_loss_matches_its_reference():
    x = _inputs(3)
    terms = _cql(x, TERMINATED, FIRST, ALL)
    a = x["actions"][..., None]
    q_sa = np.take_along_axis(x["q"], a, -1)[..., 0]
    next_max = np.where(x["legal"], x["target_q"], -np.inf).max(-1)
    done_next = FIRST[:, 1:, None].astype(np.float32)
    y = x["reward"][:, :-1, None] + GAMMA * (1 - done_next) * next_max[:, 1:]
    td = 0.5 * np.mean((y - q_sa[:, :-1]) ** 2)
    ql = np.where(x["legal"], x["q"], -np.inf)
    lse = np.log(np.exp(ql - ql.max(-1, keepdims=True)).sum(-1)) + ql.max(-1)
    conservative = np.mean(lse - q_sa)
    np.testing.assert_allclose(terms.critic, td, rtol=1e-5)
    np.testing.assert_allclose(terms.conservative, conservative, rtol=1e-5)
    np.testing.assert_allclose(terms.total, td + 10 * conservative, rtol=1e-5)
    # the conservative term is >= 0 and pushes Q(a_data) up relative to the others
    assert terms.conservative >= 0


@pytest.mark.parametrize("algorithm", ["cql", "oryx"])
def test_hl_gauss_critic_is_the_cross_entropy_against_the_projected_target(algorithm):
    x = _inputs(4, bins=SUPPORT.num_bins)
    terms = (_cql if algorithm == "cql" else _oryx)(x, TERMINATED, FIRST, ALL, support=SUPPORT)
    qv = np.asarray(hl_gauss.expectation(jnp.asarray(x["q"]), SUPPORT))
    tqv = np.asarray(hl_gauss.expectation(jnp.asarray(x["target_q"]), SUPPORT))
    a = x["actions"][..., None]
    if algorithm == "cql":
        boot = np.where(x["legal"], tqv, -np.inf).max(-1)
    else:
        tq_sa = np.take_along_axis(tqv, a, -1)[..., 0]
        boot = B * _softmax0(tq_sa / 1000.0) * tq_sa
    y = x["reward"][:, :-1, None] + GAMMA * (1 - FIRST[:, 1:, None]) * boot[:, 1:]
    logits_sa = np.take_along_axis(x["q"], a[..., None], 3)[:, :, :, 0]  # (B, T, N, bins)
    ce = hl_gauss.cross_entropy(jnp.asarray(logits_sa[:, :-1]), jnp.asarray(y), SUPPORT)
    np.testing.assert_allclose(terms.critic, float(jnp.mean(ce)), rtol=1e-5)
    q_sa = np.take_along_axis(qv, a, -1)[..., 0]
    np.testing.assert_allclose(terms.q_data, q_sa.mean(), rtol=1e-5)


@pytest.mark.parametrize("algorithm", ["cql", "oryx"])
@pytest.mark.parametrize("support", [None, SUPPORT])
def test_padded_agents_change_nothing(algorithm, support):
    bins = None if support is None else support.num_bins
    x = _inputs(5, bins=bins)
    mask = np.ones((B, T, N), bool)
    mask[0, :, 1] = mask[2, :, 0] = mask[3, :, 2] = False
    fn = _cql if algorithm == "cql" else _oryx
    base = fn(x, TERMINATED, FIRST, mask, support=support)
    y = {k: v.copy() for k, v in x.items()}
    for k in ("logits", "q", "target_q"):
        y[k][~mask] = 7.5  # anything: padded agents' outputs
    moved = fn(y, TERMINATED, FIRST, mask, support=support)
    for a_, b_ in zip(base, moved, strict=True):
        np.testing.assert_allclose(a_, b_, rtol=1e-5, atol=1e-6)

    def total(q, logits):
        return fn({**x, "q": q, "logits": logits}, TERMINATED, FIRST, mask,
                  support=support).total

    gq, gl = jax.grad(total, argnums=(0, 1))(jnp.asarray(x["q"]), jnp.asarray(x["logits"]))
    assert float(jnp.abs(gq[~mask]).max()) == 0.0
    assert float(jnp.abs(gl[~mask]).max()) == 0.0


@pytest.mark.parametrize("algorithm", ["cql", "oryx"])
@pytest.mark.parametrize("ending", ["terminated", "truncated"])
def test_nothing_leaks_across_an_episode_boundary(algorithm, ending):
    """Step 2 ends an episode and step 3 starts the next: whatever the next episode's
    target Q-values, step 2's TD target (and so the loss) is the same. One sample, so the
    batch-wise softmax weights cannot mix steps either."""
    x = {k: v[:1] for k, v in _inputs(6).items()}
    first = np.zeros((1, T), bool)
    first[0, 3] = True
    terminated = np.zeros((1, T), bool)
    if ending == "terminated":
        terminated[0, 2] = True
    mask = np.ones((1, T, N), bool)
    fn = _cql if algorithm == "cql" else _oryx
    base = fn(x, terminated, first, mask)
    y = {**x, "target_q": x["target_q"].copy()}
    y["target_q"][:, 3] += 100.0
    moved = fn(y, terminated, first, mask)
    np.testing.assert_allclose(moved.total, base.total, rtol=1e-6)
    # ... whereas inside an episode the next step's target does matter
    z = {**x, "target_q": x["target_q"].copy()}
    z["target_q"][:, 4] += 100.0
    assert abs(float(fn(z, terminated, first, mask).critic) - float(base.critic)) > 1.0


def test_oryx_value_weights_with_a_low_temperature_follow_the_target_q():
    x = _inputs(7)
    hot = _oryx(x, TERMINATED, FIRST, ALL, value_t=1e6)
    cold = _oryx(x, TERMINATED, FIRST, ALL, value_t=0.01)
    assert float(hot.critic) != pytest.approx(float(cold.critic), rel=1e-3)
    assert np.isfinite([float(t) for t in cold[:5]]).all()


def test_tasks_weigh_equally_whatever_their_team_size():
    """Eq. 1 by hand: chunk 0 is a 1-agent task, chunks 1-3 a 3-agent task. Each task's loss
    is its own mean NLL; the batch loss is their plain average. The `agent_steps` ablation
    (tasks=None) is one mean over all real agent-steps, dominated by the larger team."""
    x = _inputs(4)
    mask = np.ones((B, T, N), bool)
    mask[0, :, 1:] = False  # task 0 has one agent, task 1 has three
    task = np.array([0, 1, 1, 1])
    one_hot = np.eye(2, dtype=np.float32)[task]
    nll = -np.take_along_axis(_log_softmax(x["logits"].astype(np.float64)),
                              x["actions"][..., None], -1)[..., 0]
    small, large = nll[0, :, 0].mean(), nll[1:].mean()  # 6 and 54 agent-steps
    equal = bc_loss(x["logits"], x["actions"], mask, one_hot).total
    np.testing.assert_allclose(equal, (small + large) / 2, rtol=1e-5)
    by_steps = bc_loss(x["logits"], x["actions"], mask).total
    np.testing.assert_allclose(by_steps, (6 * small + 54 * large) / 60, rtol=1e-5)
    # a task absent from the batch does not count; one task alone is its own mean
    absent = np.eye(3, dtype=np.float32)[task]
    np.testing.assert_allclose(bc_loss(x["logits"], x["actions"], mask, absent).total,
                               (small + large) / 2, rtol=1e-5)
    # CQL's terms are per agent-step, so Eq. 1 is the average of each task's loss alone
    weighted = _cql(x, TERMINATED, FIRST, mask, tasks=one_hot)
    alone = [_cql({k: v[sel] for k, v in x.items()}, TERMINATED[sel], FIRST[sel], mask[sel])
             for sel in (slice(0, 1), slice(1, 4))]
    np.testing.assert_allclose(weighted.total, (alone[0].total + alone[1].total) / 2, rtol=1e-5)
    # Oryx's batch-wise weights span the batch; only the final averages change
    assert not np.isclose(float(_oryx(x, TERMINATED, FIRST, mask).total),
                          float(_oryx(x, TERMINATED, FIRST, mask, tasks=one_hot).total))
