"""Tests of the Sable network: the two retention forms agree, masking of padded agents,
permutation equivariance of the encoder, legal actions, validation, parameter counts."""

from __future__ import annotations

import dataclasses
import re
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from trainer.networks import (
    Sable,
    SableConfig,
    param_count,
    previous_action_tokens,
)
from trainer.networks.retention import (
    GROUP_NORM_EPS,
    MultiScaleRetention,
    decay_rates,
    retention_chunkwise,
)
from trainer.networks.sable import acting_network, acting_params

B, T, N, F, A = 3, 6, 3, 7, 4
ATOL = 1e-4


class Batch(NamedTuple):
    obs: np.ndarray  # (B, T, N, F)
    actions: np.ndarray  # (B, T, N)
    legal: np.ndarray  # (B, T, N, A)
    first: np.ndarray  # (B, T)
    mask: np.ndarray  # (B, T, N)


def make_batch(seed: int, b: int = B, t: int = T, n: int = N) -> Batch:
    """Random sequence with episode starts inside it: row 0 holds two episodes, row 1 three,
    row 2 one (so that chunks of 2 timesteps carry state through two chunk borders)."""
    rng = np.random.default_rng(seed)
    legal = rng.random((b, t, n, A)) < 0.6
    legal[..., rng.integers(A)] = True  # at least one legal action everywhere
    actions = np.argmax(legal * rng.random((b, t, n, A)), axis=-1)  # legal actions
    first = np.zeros((b, t), bool)
    first[:, 0] = True
    first[0, 3] = True
    first[1 % b, 2] = first[1 % b, 4] = True
    return Batch(
        rng.normal(size=(b, t, n, F)).astype(np.float32),
        actions.astype(np.int32),
        legal,
        first,
        np.ones((b, t, n), bool),
    )


class Compiled(NamedTuple):
    model: Sable
    params: dict
    train: object
    chunk: object
    recurrent: object
    act: object
    greedy: object


def with_loud_heads(params: dict, key: jax.Array) -> dict:
    """The heads' final layers start near zero (orthogonal(0.01)); give them unit-scale random
    weights so that outputs are O(1) and the tolerances below are meaningful."""
    flat = traverse_util.flatten_dict(params)
    for i, (path, leaf) in enumerate(sorted(flat.items())):
        if path[-2] == "layers_3":
            noise = jax.random.normal(jax.random.fold_in(key, i), leaf.shape)
            flat[path] = noise / np.sqrt(leaf.shape[0]) if leaf.ndim == 2 else noise
    return traverse_util.unflatten_dict(flat)


def compile_model(config: SableConfig) -> Compiled:
    model = Sable(config)
    params = with_loud_heads(model.init_params(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    return Compiled(
        model,
        params,
        jax.jit(model.forward_train),
        jax.jit(model.forward_chunk),
        jax.jit(model.forward_recurrent),
        jax.jit(partial(model.act, greedy=False)),
        jax.jit(partial(model.act, greedy=True)),
    )


@pytest.fixture(scope="module")
def scalar() -> Compiled:
    """Two blocks, scalar value, scalar Q head."""
    cfg = SableConfig(
        obs_width=F, num_actions=A, embed_dim=16, num_heads=2, num_blocks=2, q_head=True
    )
    return compile_model(cfg)


@pytest.fixture(scope="module")
def binned() -> Compiled:
    """HL-Gauss logits for value and Q; training split into chunks of 2 timesteps."""
    cfg = SableConfig(
        obs_width=F,
        num_actions=A,
        embed_dim=32,
        num_heads=4,
        q_head=True,
        value_bins=5,
        chunk_timesteps=2,
    )
    return compile_model(cfg)


def assert_outputs_close(a, b, atol: float = ATOL) -> None:
    for x, y in zip(a, b, strict=True):
        if x is None:
            assert y is None
        else:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def take_agents(out, idx):
    return type(out)(*(None if x is None else x[:, :, idx] for x in out))


# --------------------------------------------------------------------------------------------
# Retention forms
# --------------------------------------------------------------------------------------------


def test_decay_rates_match_paper() -> None:
    np.testing.assert_allclose(decay_rates(4, 0.8), [0.775, 0.790, 0.796, 0.798], atol=1e-3)


@pytest.mark.parametrize("embed_dim, num_heads", [(32, 4), (64, 4), (128, 4)])
def test_group_norm_output_has_unit_variance_per_head_at_init(embed_dim, num_heads) -> None:
    """At initialisation (weights ~ N(0, 1/D^2), unit-scale inputs as RMSNorm gives them) the
    retention output per head must be large against GroupNorm's eps, so the normalised output
    keeps unit variance per head: var / (var + eps) ~ 1. Scaling keys by d^-0.5 breaks this
    (about 0.3 at embed 64). At embed 512 the reference initialisation itself gives about
    0.8 (the output variance falls as D^-2), for Mava's Sable as for ours."""
    layer = MultiScaleRetention(embed_dim, num_heads, 0.8, causal=False)
    b, t, n = 8, 10, 3
    x = jax.random.normal(jax.random.PRNGKey(0), (b, t, n, embed_dim))
    first = jnp.zeros((b, t), bool).at[:, 0].set(True)
    mask = jnp.ones((b, t, n), bool)
    state = jnp.zeros((b, num_heads, embed_dim // num_heads, embed_dim // num_heads))
    params = layer.init(jax.random.PRNGKey(1), x, x, state, first, mask)

    def head_variance(m: MultiScaleRetention) -> jax.Array:
        q, k, v = m._project(x, x, mask)  # (B, T, N, H, d)
        heads_first = (0, 3, 1, 2, 4)
        ret, _ = retention_chunkwise(q.transpose(heads_first), k.transpose(heads_first),
                                     v.transpose(heads_first), state, first, m.kappa, False)
        return ret.var(axis=-1)  # (B, H, T, N): GroupNorm's per-head variance

    var = np.asarray(layer.apply(params, method=head_variance))
    normed_var = var / (var + GROUP_NORM_EPS)  # the variance of GroupNorm's output per head
    assert normed_var.mean() > 0.9, normed_var.mean()


@pytest.mark.parametrize("fixture", ["scalar", "binned"])
def test_chunkwise_matches_recurrent(fixture: str, request: pytest.FixtureRequest) -> None:
    net: Compiled = request.getfixturevalue(fixture)
    batch = make_batch(1)
    batch.mask[1, :, 1] = False  # a padded agent in the middle
    chunked = net.train(net.params, *batch)
    recurrent, _ = net.recurrent(net.params, net.model.init_state(B), *batch)
    assert_outputs_close(chunked, recurrent)


def test_chunk_carries_state(scalar: Compiled) -> None:
    """Two chunks chained through the carried state equal the recurrent form, and the state
    after a chunk equals the recurrent state."""
    batch = make_batch(2)
    batch.first[:, 3] = False  # second chunk continues the episode of the first
    state = scalar.model.init_state(B)
    half = [Batch(*(x[:, :3] for x in batch)), Batch(*(x[:, 3:] for x in batch))]
    out1, state1 = scalar.chunk(scalar.params, state, *half[0])
    out2, state2 = scalar.chunk(scalar.params, state1, *half[1])
    ref, ref_state = scalar.recurrent(scalar.params, state, *batch)
    chained = type(out1)(
        *(jnp.concatenate([a, b], axis=1) for a, b in zip(out1, out2, strict=True))
    )
    assert_outputs_close(chained, ref)
    assert_outputs_close(state2, ref_state, atol=1e-3)


def test_episode_start_resets_memory(scalar: Compiled) -> None:
    """Outputs from an episode start on do not depend on what came before it."""
    batch = make_batch(3)
    full = scalar.train(scalar.params, *batch)
    tail = scalar.train(scalar.params, *(x[:, 3:] for x in batch))  # b=0 starts at t=3
    assert_outputs_close(take_b(full, 0, 3), take_b(tail, 0, 0))


def take_b(out, b: int, t0: int):
    return [None if x is None else x[b, t0:] for x in out]


# --------------------------------------------------------------------------------------------
# Padded agents
# --------------------------------------------------------------------------------------------


def pad_agents(batch: Batch, positions: list[int], n_total: int, seed: int) -> Batch:
    """Put the real agents of `batch` at `positions` of `n_total` slots; fill the rest with
    random (not zero) padded agents, to show that their content is ignored."""
    rng = np.random.default_rng(seed)
    b, t, _, _ = batch.obs.shape
    obs = rng.normal(size=(b, t, n_total, F)).astype(np.float32)
    actions = rng.integers(0, A, size=(b, t, n_total)).astype(np.int32)
    legal = rng.random((b, t, n_total, A)) < 0.5
    mask = np.zeros((b, t, n_total), bool)
    obs[:, :, positions] = batch.obs
    actions[:, :, positions] = batch.actions
    legal[:, :, positions] = batch.legal
    mask[:, :, positions] = batch.mask
    return Batch(obs, actions, legal, batch.first, mask)


@pytest.mark.parametrize("positions", [[0, 1, 2], [0, 2, 4]], ids=["appended", "interleaved"])
def test_padding_invariance_train(scalar: Compiled, positions: list[int]) -> None:
    batch = make_batch(4)
    padded = pad_agents(batch, positions, 5, seed=5)
    ref = scalar.train(scalar.params, *batch)
    out = scalar.train(scalar.params, *padded)
    assert_outputs_close(take_agents(out, positions), ref, atol=1e-5)
    pad = [i for i in range(5) if i not in positions]
    assert np.all(np.asarray(take_agents(out, pad).value) == 0.0)
    assert np.all(np.asarray(take_agents(out, pad).policy_logits) == 0.0)


@pytest.mark.parametrize("positions", [[0, 1, 2], [0, 2, 4]], ids=["appended", "interleaved"])
def test_padding_invariance_act(scalar: Compiled, positions: list[int]) -> None:
    """Greedy (and, for appended padding, sampled) acting is unchanged by padded agents."""
    batch = make_batch(6)
    padded = pad_agents(batch, positions, 5, seed=7)
    fns = [scalar.greedy, scalar.act] if positions == [0, 1, 2] else [scalar.greedy]
    for fn in fns:
        s_ref, s_pad = scalar.model.init_state(B), scalar.model.init_state(B)
        for t in range(T):
            key = jax.random.PRNGKey(t)
            ref = fn(
                scalar.params,
                s_ref,
                batch.obs[:, t],
                batch.legal[:, t],
                batch.first[:, t],
                batch.mask[:, t],
                key,
            )
            out = fn(
                scalar.params,
                s_pad,
                padded.obs[:, t],
                padded.legal[:, t],
                padded.first[:, t],
                padded.mask[:, t],
                key,
            )
            s_ref, s_pad = ref.state, out.state
            np.testing.assert_array_equal(np.asarray(out.actions)[:, positions], ref.actions)
            np.testing.assert_allclose(
                np.asarray(out.log_probs)[:, positions], ref.log_probs, atol=1e-5
            )
            np.testing.assert_allclose(np.asarray(out.values)[:, positions], ref.values, atol=1e-5)
            pad = [i for i in range(5) if i not in positions]
            assert np.all(np.asarray(out.actions)[:, pad] == 0)


def test_previous_action_tokens_skip_padded_agents() -> None:
    actions = jnp.array([[3, 9, 1, 9, 2]])
    mask = jnp.array([[True, False, True, False, True]])
    # agent 0: start; 1 (padded): after agent 0; 2: after agent 0; 3: after 2; 4: after 2.
    np.testing.assert_array_equal(previous_action_tokens(actions, mask), [[0, 4, 4, 2, 2]])
    mask = jnp.array([[False, True, True, False, True]])
    np.testing.assert_array_equal(previous_action_tokens(actions, mask), [[0, 0, 10, 2, 2]])


# --------------------------------------------------------------------------------------------
# Permutations, legal actions, acting
# --------------------------------------------------------------------------------------------


def test_permuting_agents_permutes_values(scalar: Compiled) -> None:
    batch = make_batch(8)
    batch.mask[0, :, 2] = False
    perm = np.array([2, 0, 1])
    permuted = Batch(
        batch.obs[:, :, perm],
        batch.actions[:, :, perm],
        batch.legal[:, :, perm],
        batch.first,
        batch.mask[:, :, perm],
    )
    ref = scalar.train(scalar.params, *batch)
    out = scalar.train(scalar.params, *permuted)
    np.testing.assert_allclose(out.value, np.asarray(ref.value)[:, :, perm], atol=1e-5)


def test_illegal_actions_have_zero_probability(binned: Compiled) -> None:
    batch = make_batch(9)
    out = binned.train(binned.params, *batch)
    probs = np.asarray(jax.nn.softmax(out.policy_logits, axis=-1))
    assert np.all(probs[~batch.legal] == 0.0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_acting_is_legal_and_consistent_with_training(binned: Compiled) -> None:
    """Sampled and greedy actions are legal; the log-probs and values of a sampled rollout
    equal those of the chunkwise form on the same actions."""
    batch = make_batch(10, b=16)
    batch.mask[3, :, 1] = False
    state = binned.model.init_state(16)
    actions, log_probs, values = [], [], []
    for t in range(T):
        args = (batch.obs[:, t], batch.legal[:, t], batch.first[:, t], batch.mask[:, t])
        greedy = binned.greedy(binned.params, state, *args, jax.random.PRNGKey(100 + t))
        res = binned.act(binned.params, state, *args, jax.random.PRNGKey(t))
        for a in (greedy.actions, res.actions):
            a = np.asarray(a)
            chosen = np.take_along_axis(batch.legal[:, t], a[..., None], -1)[..., 0]
            assert np.all(chosen | ~batch.mask[:, t])
        state = res.state
        actions.append(res.actions)
        log_probs.append(res.log_probs)
        values.append(res.values)
    actions = np.stack(actions, axis=1)
    out = binned.train(binned.params, batch.obs, actions, batch.legal, batch.first, batch.mask)
    logp = jnp.take_along_axis(jax.nn.log_softmax(out.policy_logits), actions[..., None], -1)
    logp = np.where(batch.mask, np.asarray(logp)[..., 0], 0.0)
    np.testing.assert_allclose(np.stack(log_probs, axis=1), logp, atol=ATOL)
    np.testing.assert_allclose(np.stack(values, axis=1), out.value, atol=ATOL)


def test_the_acting_network_acts_as_the_whole_one(binned: Compiled) -> None:
    """Without its value and Q heads (policy acting) the network's parameters are those
    `init_params` of the acting network lays out, and it takes the same actions with the
    same log-probs as the whole network; greedy on Q values, it keeps the Q head and acts
    the same too."""
    batch = make_batch(12, b=16)
    args = (batch.obs[:, 0], batch.legal[:, 0], batch.first[:, 0], batch.mask[:, 0])
    config = binned.model.config
    state = binned.model.init_state(16)
    whole = binned.act(binned.params, state, *args, jax.random.PRNGKey(7))

    policy = acting_network(config)
    assert not (policy.value_head or policy.q_head or policy.value_bins or policy.chunk_timesteps)
    params = acting_params(binned.params, policy)
    model = Sable(policy)
    assert (jax.tree.structure(params)
            == jax.tree.structure(model.init_params(jax.random.PRNGKey(0))))
    res = model.act(params, state, *args, jax.random.PRNGKey(7))
    np.testing.assert_array_equal(res.actions, whole.actions)
    np.testing.assert_allclose(res.log_probs, whole.log_probs, atol=ATOL)
    assert res.values is None

    def q_argmax(q):  # greedy on the expectation of the HL-Gauss logits' bin index
        logits = q.reshape(q.shape[0], config.num_actions, config.value_bins)
        return jnp.sum(jax.nn.softmax(logits) * jnp.arange(config.value_bins), -1)

    q_net = acting_network(config, q_head=True)
    assert q_net.q_head and q_net.value_bins == config.value_bins and not q_net.value_head
    q_params = acting_params(binned.params, q_net)
    assert "q_head" in q_params["params"]["decoder"]
    whole_q = binned.model.act(binned.params, state, *args, jax.random.PRNGKey(8),
                               q_values=q_argmax)
    res_q = Sable(q_net).act(q_params, state, *args, jax.random.PRNGKey(8), q_values=q_argmax)
    np.testing.assert_array_equal(res_q.actions, whole_q.actions)


def test_gradients_are_finite_with_padding(scalar: Compiled) -> None:
    batch = make_batch(11)
    batch.mask[0, :, 0] = False

    def loss(params):
        out = scalar.model.forward_train(params, *batch)
        logp = jnp.take_along_axis(
            jax.nn.log_softmax(out.policy_logits), batch.actions[..., None], -1
        )[..., 0]
        w = batch.mask.astype(jnp.float32)
        return -(logp * w).sum() + (out.value**2 * w).sum() + (out.q**2).sum()

    grads = jax.jit(jax.grad(loss))(scalar.params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


# --------------------------------------------------------------------------------------------
# Validation and sizes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"embed_dim": 30, "num_heads": 4}, "embed_dim=30 is not divisible by num_heads=4"),
        ({"embed_dim": 0}, "embed_dim"),
        ({"num_heads": -1}, "num_heads"),
        ({"num_blocks": 0}, "num_blocks"),
        ({"obs_width": 0}, "obs_width"),
        ({"num_actions": 2.0}, "num_actions"),
        ({"decay_scaling": 1.5}, "decay_scaling"),
        ({"decay_scaling": 0.0}, "decay_scaling"),
        ({"value_bins": 1}, "value_bins"),
        ({"chunk_timesteps": 0}, "chunk_timesteps"),
        ({"q_head": 1}, "q_head"),
    ],
)
def test_config_validation(changes: dict, match: str) -> None:
    kwargs = {"obs_width": F, "num_actions": A, **changes}
    with pytest.raises(ValueError, match=match):
        SableConfig(**kwargs)


def test_input_validation(scalar: Compiled) -> None:
    batch = make_batch(12)
    model, params = scalar.model, scalar.params
    with pytest.raises(ValueError, match=re.escape("width 8, config.obs_width is 7")):
        model.forward_train(params, np.zeros((B, T, N, F + 1)), *batch[1:])
    with pytest.raises(ValueError, match=re.escape("legal must have shape")):
        model.forward_train(params, *batch[:2], batch.legal[..., :2], *batch[3:])
    with pytest.raises(ValueError, match="actions must be integers"):
        model.forward_train(params, batch.obs, batch.actions.astype(np.float32), *batch[2:])
    with pytest.raises(ValueError, match=re.escape("T=6 is not a multiple of chunk_timesteps=4")):
        Sable(dataclasses.replace(model.config, chunk_timesteps=4)).forward_train(params, *batch)
    capped = Sable(dataclasses.replace(model.config, max_agents=2))
    with pytest.raises(ValueError, match=re.escape("3 agents given, config.max_agents is 2")):
        capped.forward_train(params, *batch)
    with pytest.raises(ValueError, match=re.escape("state.encoder must have shape")):
        model.act(
            params,
            model.init_state(B + 1),
            batch.obs[:, 0],
            batch.legal[:, 0],
            batch.first[:, 0],
            batch.mask[:, 0],
            jax.random.PRNGKey(0),
        )


def expected_params(c: SableConfig) -> int:
    d, f, a = c.embed_dim, c.obs_width, c.num_actions
    retention = 5 * d * d + 2 * d
    swiglu = 3 * d * d

    def head(out: int) -> int:
        return d * d + d + d + d * out + out

    encoder = f + f * d + d + c.num_blocks * (retention + 2 * d + swiglu) + head(1)
    decoder = (a + 1) * d + d + c.num_blocks * (2 * retention + 3 * d + swiglu) + head(a)
    return encoder + decoder


@pytest.mark.parametrize("embed_dim", [64, 512, 768])
def test_param_count_rware(embed_dim: int) -> None:
    cfg = SableConfig(obs_width=66, num_actions=5, embed_dim=embed_dim, num_heads=4)
    model = Sable(cfg)
    shapes = jax.eval_shape(model.init_params, jax.random.PRNGKey(0))
    assert param_count(shapes) == expected_params(cfg)
    if embed_dim == 64:
        assert param_count(shapes) == 100_360  # paper: 116k (see the network's report)
