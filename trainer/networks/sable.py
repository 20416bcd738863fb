"""The Sable network (Mahjoub et al. 2025): a retention encoder over all agents' observations
across time and an autoregressive retention decoder over the agents' actions.

Only the network lives here; losses and training systems (BC, CQL, Oryx) live elsewhere.

Layout: inputs are (B, T, N, ...) and every layer keeps that layout; the sequence the
retention runs over is the flattened (timestep, agent) order T*N (see `retention.py`).

Padded agents (`agent_mask` False):
  * their keys are zeroed in every retention layer (encoder, decoder self and cross), so they
    are neither attended to nor written into the carried state;
  * the decoder's input token for agent i is the action of the previous *real* agent of the
    same timestep (0 = start token if there is none). Retention has no positional signal
    other than the per-timestep decay, so a real agent's output depends only on the set of
    real agents before it: padded agents may sit anywhere, also between real agents;
  * their outputs are zeros (logits, values, Q, log-probs) and their actions 0. Losses must
    still weight by `agent_mask`.

Usage (all pure; `model` is an unbound flax module, params are passed explicitly):

    model = Sable(SableConfig(obs_width=66, num_actions=5))
    params = model.init_params(key)
    out = model.forward_train(params, obs, actions, legal, first, agent_mask)
    state = model.init_state(batch)
    step = model.act(params, state, obs_t, legal_t, first_t, mask_t, key, greedy=False)
    q_step = model.act(..., q_values=lambda q: q)  # argmax of the Q head instead
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from trainer.networks.config import SableConfig
from trainer.networks.retention import MultiScaleRetention, decay_rates, decay_state

NEG_INF = float(jnp.finfo(jnp.float32).min)  # logit given to illegal actions


# Maps the Q head's raw output of one agent, (B, A) or (B, A*bins) logits, to Q values (B, A).
QValues = Callable[[jax.Array], jax.Array]


class SableOutput(NamedTuple):
    """Outputs for a (B, T, N) sequence; zeros for padded agents."""

    policy_logits: jax.Array  # (B, T, N, A), illegal actions at float32 min
    value: jax.Array | None  # (B, T, N), or (B, T, N, bins) logits; None without value head
    q: jax.Array | None  # (B, T, N, A), or (B, T, N, A, bins) logits; raw (not legal-masked)


class SableState(NamedTuple):
    """Carried retention state per layer type, each (B, blocks, H, d, d)."""

    encoder: jax.Array
    decoder_self: jax.Array
    decoder_cross: jax.Array


class ActResult(NamedTuple):
    """One acting step for B environments; unpacks as (state, actions, log_probs, values)."""

    state: SableState
    actions: jax.Array  # (B, N) int32, 0 for padded agents
    log_probs: jax.Array  # (B, N) log pi(action), 0 for padded agents
    values: jax.Array | None  # (B, N) or (B, N, bins) logits; None without value head


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def param_count(params: object) -> int:
    """Number of scalars in a parameter pytree (arrays or `jax.eval_shape` structs)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


def init_state(batch: int, config: SableConfig) -> SableState:
    """Zero retention state for `batch` environments."""
    shape = (batch, config.num_blocks, config.num_heads, config.head_size, config.head_size)
    return SableState(*(jnp.zeros(shape, jnp.float32) for _ in range(3)))


def previous_action_tokens(actions: jax.Array, agent_mask: jax.Array) -> jax.Array:
    """Decoder input tokens: previous real agent's action + 1 within the timestep, or 0.

    actions, agent_mask: (..., N) -> (..., N) int32. Index 0 is the start token.
    """
    n = actions.shape[-1]
    real_index = jnp.where(agent_mask, jnp.arange(n), -1)  # (..., N)
    last_real = jax.lax.cummax(real_index, axis=real_index.ndim - 1)  # last real j <= i
    pad = jnp.full((*last_real.shape[:-1], 1), -1, last_real.dtype)
    prev = jnp.concatenate([pad, last_real[..., :-1]], axis=-1)  # last real j < i
    prev_action = jnp.take_along_axis(actions, jnp.maximum(prev, 0), axis=-1)
    return jnp.where(prev >= 0, prev_action + 1, 0).astype(jnp.int32)


def _head(width: int, out: int, name: str) -> nn.Sequential:
    """Dense(D) -> GELU -> RMSNorm -> Dense(out), small final init (as in Mava)."""
    return nn.Sequential(
        [
            nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0))),
            nn.gelu,
            nn.RMSNorm(),
            nn.Dense(out, kernel_init=nn.initializers.orthogonal(0.01)),
        ],
        name=name,
    )


def _mask_outputs(
    config: SableConfig,
    logits: jax.Array,
    value: jax.Array | None,
    q: jax.Array | None,
    legal: jax.Array,
    agent_mask: jax.Array,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Legal-mask the logits, shape the heads and zero padded agents.

    logits (..., A); value (..., 1 or bins); q (..., A or A*bins); legal (..., A); mask (...).
    """
    logits = jnp.where(legal, logits, NEG_INF)
    logits = jnp.where(agent_mask[..., None], logits, 0.0)
    if value is not None:
        value = jnp.where(agent_mask[..., None], value, 0.0)
        if config.value_bins is None:
            value = value[..., 0]
    if q is not None:
        q = jnp.where(agent_mask[..., None], q, 0.0)
        if config.value_bins is not None:
            q = q.reshape(*q.shape[:-1], config.num_actions, config.value_bins)
    return logits, value, q


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


class SwiGLU(nn.Module):
    """Gated feed-forward: (swish(x W_g) * x W_l) W_o, hidden width = D."""

    embed_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        gate = nn.Dense(self.embed_dim, use_bias=False, name="w_gate")(x)
        lin = nn.Dense(self.embed_dim, use_bias=False, name="w_linear")(x)
        return nn.Dense(self.embed_dim, use_bias=False, name="w_out")(jax.nn.swish(gate) * lin)


class EncoderBlock(nn.Module):
    """x = RMSNorm(x + Ret(x)); x = RMSNorm(x + SwiGLU(x)); Ret sees the whole timestep."""

    config: SableConfig

    def setup(self) -> None:
        c = self.config
        self.retention = MultiScaleRetention(c.embed_dim, c.num_heads, c.decay_scaling, False)
        self.ln1, self.ln2 = nn.RMSNorm(), nn.RMSNorm()
        self.ffn = SwiGLU(c.embed_dim)

    def __call__(
        self, x: jax.Array, state: jax.Array, first: jax.Array, mask: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Chunkwise. x (B, T, N, D); state (B, H, d, d); first (B, T); mask (B, T, N)."""
        ret, state = self.retention(x, x, state, first, mask)
        x = self.ln1(x + ret)
        return self.ln2(x + self.ffn(x)), state

    def step(self, x: jax.Array, state: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Recurrent. x (B, N, D); state (B, H, d, d) decayed; mask (B, N)."""
        ret, state = self.retention.step(x, x, state, mask)
        x = self.ln1(x + ret)
        return self.ln2(x + self.ffn(x)), state


class DecoderBlock(nn.Module):
    """Causal self-retention over action tokens, causal cross-retention with the encoder
    representation as queries, then SwiGLU; RMSNorm residuals as in Mava."""

    config: SableConfig

    def setup(self) -> None:
        c = self.config
        self.self_retention = MultiScaleRetention(c.embed_dim, c.num_heads, c.decay_scaling, True)
        self.cross_retention = MultiScaleRetention(c.embed_dim, c.num_heads, c.decay_scaling, True)
        self.ln1, self.ln2, self.ln3 = nn.RMSNorm(), nn.RMSNorm(), nn.RMSNorm()
        self.ffn = SwiGLU(c.embed_dim)

    def __call__(
        self,
        x: jax.Array,
        rep: jax.Array,
        states: tuple[jax.Array, jax.Array],
        first: jax.Array,
        mask: jax.Array,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """Chunkwise. x, rep (B, T, N, D); states 2 x (B, H, d, d); first (B, T); mask (B, T, N)."""
        ret, s_self = self.self_retention(x, x, states[0], first, mask)
        ret = self.ln1(x + ret)
        ret2, s_cross = self.cross_retention(rep, ret, states[1], first, mask)
        y = self.ln2(rep + ret2)
        return self.ln3(y + self.ffn(y)), (s_self, s_cross)

    def step(
        self, x: jax.Array, rep: jax.Array, states: tuple[jax.Array, jax.Array], mask: jax.Array
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """Recurrent, one agent. x, rep (B, 1, D); states 2 x (B, H, d, d); mask (B, 1)."""
        ret, s_self = self.self_retention.step(x, x, states[0], mask)
        ret = self.ln1(x + ret)
        ret2, s_cross = self.cross_retention.step(rep, ret, states[1], mask)
        y = self.ln2(rep + ret2)
        return self.ln3(y + self.ffn(y)), (s_self, s_cross)


class Encoder(nn.Module):
    """Observation embedding (RMSNorm -> Dense -> GELU), retention blocks, value head."""

    config: SableConfig

    def setup(self) -> None:
        c = self.config
        self.obs_embed = nn.Sequential(
            [
                nn.RMSNorm(),
                nn.Dense(
                    c.embed_dim,
                    use_bias=False,
                    kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)),
                ),
                nn.gelu,
            ]
        )
        self.ln = nn.RMSNorm()
        self.blocks = [EncoderBlock(c, name=f"block_{i}") for i in range(c.num_blocks)]
        if c.value_head:
            self.value_head = _head(c.embed_dim, c.value_bins or 1, "value_head")

    def _value(self, rep: jax.Array) -> jax.Array | None:
        return self.value_head(rep) if self.config.value_head else None

    def __call__(
        self, obs: jax.Array, state: jax.Array, first: jax.Array, mask: jax.Array
    ) -> tuple[jax.Array, jax.Array | None, jax.Array]:
        """Chunkwise. obs (B, T, N, F); state (B, L, H, d, d)
        -> rep (B, T, N, D), raw value (B, T, N, 1 or bins), state."""
        x = self.obs_embed(obs)
        new_states = []
        for i, block in enumerate(self.blocks):
            x, s = block(self.ln(x), state[:, i], first, mask)
            new_states.append(s)
        return x, self._value(x), jnp.stack(new_states, axis=1)

    def step(
        self, obs: jax.Array, state: jax.Array, mask: jax.Array
    ) -> tuple[jax.Array, jax.Array | None, jax.Array]:
        """Recurrent. obs (B, N, F); state (B, L, H, d, d) decayed
        -> rep (B, N, D), raw value (B, N, 1 or bins), state."""
        x = self.obs_embed(obs)
        new_states = []
        for i, block in enumerate(self.blocks):
            x, s = block.step(self.ln(x), state[:, i], mask)
            new_states.append(s)
        return x, self._value(x), jnp.stack(new_states, axis=1)


class Decoder(nn.Module):
    """Action-token embedding (one-hot A+1 -> Dense -> GELU), retention blocks, heads."""

    config: SableConfig

    def setup(self) -> None:
        c = self.config
        self.action_embed = nn.Dense(
            c.embed_dim, use_bias=False, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0))
        )
        self.ln = nn.RMSNorm()
        self.blocks = [DecoderBlock(c, name=f"block_{i}") for i in range(c.num_blocks)]
        self.policy_head = _head(c.embed_dim, c.num_actions, "policy_head")
        if c.q_head:
            self.q_head = _head(c.embed_dim, c.num_actions * (c.value_bins or 1), "q_head")

    def _embed(self, tokens: jax.Array) -> jax.Array:
        """(...) int tokens in [0, A] -> (..., D)."""
        onehot = jax.nn.one_hot(tokens, self.config.num_actions + 1, dtype=jnp.float32)
        return self.ln(nn.gelu(self.action_embed(onehot)))

    def _heads(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        q = self.q_head(x) if self.config.q_head else None
        return self.policy_head(x), q

    def __call__(
        self,
        tokens: jax.Array,
        rep: jax.Array,
        states: tuple[jax.Array, jax.Array],
        first: jax.Array,
        mask: jax.Array,
    ) -> tuple[jax.Array, jax.Array | None, tuple[jax.Array, jax.Array]]:
        """Chunkwise. tokens (B, T, N); rep (B, T, N, D); states 2 x (B, L, H, d, d)
        -> raw logits (B, T, N, A), raw q, states."""
        x = self._embed(tokens)
        s_self, s_cross = [], []
        for i, block in enumerate(self.blocks):
            x, (a, b) = block(x, rep, (states[0][:, i], states[1][:, i]), first, mask)
            s_self.append(a)
            s_cross.append(b)
        logits, q = self._heads(x)
        return logits, q, (jnp.stack(s_self, axis=1), jnp.stack(s_cross, axis=1))

    def step(
        self,
        token: jax.Array,
        rep: jax.Array,
        states: tuple[jax.Array, jax.Array],
        mask: jax.Array,
    ) -> tuple[jax.Array, jax.Array | None, tuple[jax.Array, jax.Array]]:
        """Recurrent, one agent. token (B,); rep (B, D); states 2 x (B, L, H, d, d); mask (B,)
        -> raw logits (B, A), raw q (B, A or A*bins), states."""
        x = self._embed(token)[:, None]  # (B, 1, D)
        rep, mask = rep[:, None], mask[:, None]
        s_self, s_cross = [], []
        for i, block in enumerate(self.blocks):
            x, (a, b) = block.step(x, rep, (states[0][:, i], states[1][:, i]), mask)
            s_self.append(a)
            s_cross.append(b)
        logits, q = self._heads(x[:, 0])
        return logits, q, (jnp.stack(s_self, axis=1), jnp.stack(s_cross, axis=1))


# --------------------------------------------------------------------------------------------
# Network and its pure API
# --------------------------------------------------------------------------------------------


class Sable(nn.Module):
    """Sable encoder-decoder.

    Flax entry points (through `apply`): `__call__` (chunkwise), `encode_step`, `decode_step`.
    Pure API (call on the unbound module, params explicit, jit-friendly): `init_params`,
    `init_state`, `forward_train`, `forward_chunk`, `forward_recurrent`, `act`.
    """

    config: SableConfig

    def setup(self) -> None:
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    # -- flax entry points ---------------------------------------------------------------------

    def __call__(
        self,
        obs: jax.Array,
        actions: jax.Array,
        legal: jax.Array,
        first: jax.Array,
        agent_mask: jax.Array,
        state: SableState,
    ) -> tuple[SableOutput, SableState]:
        """Chunkwise form over one chunk; see `forward_chunk` for shapes."""
        rep, value, enc_state = self.encoder(obs, state.encoder, first, agent_mask)
        tokens = previous_action_tokens(actions, agent_mask)  # (B, T, N)
        logits, q, (s_self, s_cross) = self.decoder(
            tokens, rep, (state.decoder_self, state.decoder_cross), first, agent_mask
        )
        logits, value, q = _mask_outputs(self.config, logits, value, q, legal, agent_mask)
        return SableOutput(logits, value, q), SableState(enc_state, s_self, s_cross)

    def encode_step(
        self, obs: jax.Array, state: jax.Array, agent_mask: jax.Array
    ) -> tuple[jax.Array, jax.Array | None, jax.Array]:
        """Recurrent encoder for one timestep: obs (B, N, F), decayed state (B, L, H, d, d),
        agent_mask (B, N) -> rep (B, N, D), raw value (B, N, 1 or bins), state."""
        return self.encoder.step(obs, state, agent_mask)

    def decode_step(
        self,
        token: jax.Array,
        rep: jax.Array,
        states: tuple[jax.Array, jax.Array],
        mask: jax.Array,
    ) -> tuple[jax.Array, jax.Array | None, tuple[jax.Array, jax.Array]]:
        """Recurrent decoder for one agent: token (B,), rep (B, D), mask (B,)."""
        return self.decoder.step(token, rep, states, mask)

    # -- pure API ------------------------------------------------------------------------------

    def init_params(self, key: jax.Array) -> dict:
        """Parameters (independent of B, T and N)."""
        c = self.config
        obs = jnp.zeros((1, 1, 1, c.obs_width), jnp.float32)
        actions = jnp.zeros((1, 1, 1), jnp.int32)
        legal = jnp.ones((1, 1, 1, c.num_actions), bool)
        first = jnp.ones((1, 1), bool)
        mask = jnp.ones((1, 1, 1), bool)
        return self.init(key, obs, actions, legal, first, mask, init_state(1, c))

    def init_state(self, batch: int) -> SableState:
        """Zero retention state for `batch` environments."""
        return init_state(batch, self.config)

    def forward_chunk(
        self,
        params: dict,
        state: SableState,
        obs: jax.Array,
        actions: jax.Array,
        legal: jax.Array,
        first: jax.Array,
        agent_mask: jax.Array,
    ) -> tuple[SableOutput, SableState]:
        """Chunkwise form over one chunk, continuing from `state`.

        obs (B, T, N, F) float; actions (B, T, N) int (teacher forcing); legal (B, T, N, A) bool;
        first (B, T) bool; agent_mask (B, T, N) bool -> SableOutput, state after the chunk.
        """
        obs, actions, legal, first, agent_mask = self._check_sequence(
            obs, actions, legal, first, agent_mask
        )
        _check_state(state, self.config, obs.shape[0])
        return self.apply(params, obs, actions, legal, first, agent_mask, state)

    def forward_train(
        self,
        params: dict,
        obs: jax.Array,
        actions: jax.Array,
        legal: jax.Array,
        first: jax.Array,
        agent_mask: jax.Array,
        state: SableState | None = None,
    ) -> SableOutput:
        """Chunkwise form over a training sequence (shapes as `forward_chunk`), from `state`
        (B, ...) or a zero state. Offline training starts from zero; PPO continues from the
        retention state stored at its rollout's start.

        With `config.chunk_timesteps` the T timesteps are processed in chunks of that many,
        carrying the state between them: the same outputs with (chunk * N)^2 instead of
        (T * N)^2 score memory.
        """
        obs, actions, legal, first, agent_mask = self._check_sequence(
            obs, actions, legal, first, agent_mask
        )
        b, t = first.shape
        state = init_state(b, self.config) if state is None else state
        chunk = self.config.chunk_timesteps
        if chunk is None or chunk >= t:
            return self.forward_chunk(params, state, obs, actions, legal, first, agent_mask)[0]
        if t % chunk != 0:
            raise ValueError(f"sequence length T={t} is not a multiple of chunk_timesteps={chunk}")

        def split(x: jax.Array) -> jax.Array:  # (B, T, ...) -> (T/c, B, c, ...)
            return jnp.swapaxes(x.reshape(b, t // chunk, chunk, *x.shape[2:]), 0, 1)

        def body(carry: SableState, xs: tuple) -> tuple[SableState, SableOutput]:
            out, carry = self.apply(params, *xs, carry)
            return carry, out

        inputs = tuple(split(x) for x in (obs, actions, legal, first, agent_mask))
        _, outs = jax.lax.scan(body, state, inputs)
        # (T/c, B, c, ...) -> (B, T, ...)
        return jax.tree_util.tree_map(
            lambda x: jnp.swapaxes(x, 0, 1).reshape(b, t, *x.shape[3:]), outs
        )

    def forward_recurrent(
        self,
        params: dict,
        state: SableState,
        obs: jax.Array,
        actions: jax.Array,
        legal: jax.Array,
        first: jax.Array,
        agent_mask: jax.Array,
    ) -> tuple[SableOutput, SableState]:
        """Recurrent form over a sequence with given actions (teacher forcing), one timestep and
        one agent at a time: the reference the chunkwise form must match. Shapes as
        `forward_chunk`."""
        obs, actions, legal, first, agent_mask = self._check_sequence(
            obs, actions, legal, first, agent_mask
        )
        _check_state(state, self.config, obs.shape[0])

        def body(carry: SableState, xs: tuple) -> tuple[SableState, SableOutput]:
            o, a, lg, f, m = xs
            carry, out, _, _ = self._timestep(params, carry, o, lg, f, m, forced=a)
            return carry, out

        inputs = tuple(jnp.swapaxes(x, 0, 1) for x in (obs, actions, legal, first, agent_mask))
        state, outs = jax.lax.scan(body, state, inputs)
        return jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), outs), state

    def act(
        self,
        params: dict,
        state: SableState,
        obs: jax.Array,
        legal: jax.Array,
        first: jax.Array,
        agent_mask: jax.Array,
        key: jax.Array,
        greedy: bool = False,
        q_values: QValues | None = None,
    ) -> ActResult:
        """Choose a joint action for one timestep of B environments, agent by agent.

        obs (B, N, F); legal (B, N, A) bool; first (B,) bool; agent_mask (B, N) bool; `greedy`
        must be static under jit. Only legal actions are chosen (for agents with at least one).

        The policy head samples (or, `greedy`, takes its argmax); with `q_values` (which maps
        the Q head's raw output (B, A or A*bins) to Q values (B, A)) each agent takes the
        argmax of its legal Q values instead: CQL-Sable's policy. Either way the chosen
        action is the next agent's input token, so both heads act through this one function.
        """
        c = self.config
        obs = jnp.asarray(obs, jnp.float32)
        if obs.ndim != 3:
            raise ValueError(f"act expects obs of shape (B, N, F), got {obs.shape}")
        b, n, _ = obs.shape
        _check_width(obs, c)
        _check_agents(n, c)
        _check_shape("legal", legal, (b, n, c.num_actions))
        _check_shape("first", first, (b,))
        _check_shape("agent_mask", agent_mask, (b, n))
        _check_state(state, c, b)
        state, out, actions, log_probs = self._timestep(
            params,
            state,
            obs,
            jnp.asarray(legal, bool),
            jnp.asarray(first, bool),
            jnp.asarray(agent_mask, bool),
            key=key,
            greedy=greedy,
            q_values=q_values,
        )
        return ActResult(state, actions, log_probs, out.value)

    # -- internals -----------------------------------------------------------------------------

    def _timestep(
        self,
        params: dict,
        state: SableState,
        obs: jax.Array,
        legal: jax.Array,
        first: jax.Array,
        agent_mask: jax.Array,
        forced: jax.Array | None = None,
        key: jax.Array | None = None,
        greedy: bool = False,
        q_values: QValues | None = None,
    ) -> tuple[SableState, SableOutput, jax.Array, jax.Array]:
        """One recurrent timestep. obs (B, N, F); legal (B, N, A); first (B,); mask (B, N);
        forced (B, N) actions to teacher-force, else the argmax of `q_values(q)` over legal
        actions when given, else sampled with `key` (or greedy) from the policy head.
        Returns state, SableOutput of (B, N, ...) arrays, actions (B, N), log-probs (B, N)."""
        c = self.config
        n = obs.shape[1]
        kappa = jnp.asarray(decay_rates(c.num_heads, c.decay_scaling))
        state = SableState(*(decay_state(s, first, kappa) for s in state))

        rep, value, enc_state = self.apply(
            params, obs, state.encoder, agent_mask, method=Sable.encode_step
        )  # rep (B, N, D)

        def agent(carry: tuple, xs: tuple) -> tuple[tuple, tuple]:
            states, token = carry
            rep_i, legal_i, mask_i, forced_i, key_i = xs  # (B, D), (B, A), (B,), (B,), key
            logits, q, states = self.apply(
                params, token, rep_i, states, mask_i, method=Sable.decode_step
            )
            masked = jnp.where(legal_i, logits, NEG_INF)  # (B, A)
            if forced_i is not None:
                action = forced_i
            elif q_values is not None:
                action = jnp.argmax(jnp.where(legal_i, q_values(q), -jnp.inf), axis=-1)
            elif greedy:
                action = jnp.argmax(masked, axis=-1)
            else:
                action = jax.random.categorical(key_i, masked, axis=-1)
            action = jnp.where(mask_i, action, 0).astype(jnp.int32)
            log_prob = jnp.take_along_axis(
                jax.nn.log_softmax(masked, axis=-1), action[:, None], axis=-1
            )[:, 0]
            log_prob = jnp.where(mask_i, log_prob, 0.0)
            token = jnp.where(mask_i, action + 1, token)  # only real agents move the token
            return (states, token), (logits, q, action, log_prob)

        # One key per agent index (not a split into N) so that appending padded agents does
        # not change the real agents' samples.
        keys = (
            None
            if forced is not None
            else jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n))
        )
        xs = (
            jnp.swapaxes(rep, 0, 1),  # (N, B, D)
            jnp.swapaxes(legal, 0, 1),  # (N, B, A)
            jnp.swapaxes(agent_mask, 0, 1),  # (N, B)
            None if forced is None else jnp.swapaxes(forced, 0, 1),  # (N, B)
            keys,
        )
        start = jnp.zeros(obs.shape[:1], jnp.int32)  # (B,) start token
        (dec_states, _), (logits, q, actions, log_probs) = jax.lax.scan(
            agent, ((state.decoder_self, state.decoder_cross), start), xs
        )
        # (N, B, ...) -> (B, N, ...)
        logits, q, actions, log_probs = (
            None if x is None else jnp.swapaxes(x, 0, 1) for x in (logits, q, actions, log_probs)
        )
        logits, value, q = _mask_outputs(c, logits, value, q, legal, agent_mask)
        new_state = SableState(enc_state, *dec_states)
        return new_state, SableOutput(logits, value, q), actions, log_probs

    def _check_sequence(
        self,
        obs: jax.Array,
        actions: jax.Array,
        legal: jax.Array,
        first: jax.Array,
        agent_mask: jax.Array,
    ) -> tuple[jax.Array, ...]:
        """Validate (B, T, N, ...) inputs before tracing and cast them to canonical dtypes."""
        c = self.config
        obs = jnp.asarray(obs, jnp.float32)
        if obs.ndim != 4:
            raise ValueError(f"expected obs of shape (B, T, N, F), got {obs.shape}")
        b, t, n, _ = obs.shape
        _check_width(obs, c)
        _check_agents(n, c)
        _check_shape("actions", actions, (b, t, n))
        if not jnp.issubdtype(jnp.asarray(actions).dtype, jnp.integer):
            raise ValueError(f"actions must be integers, got dtype {jnp.asarray(actions).dtype}")
        _check_shape("legal", legal, (b, t, n, c.num_actions))
        _check_shape("first", first, (b, t))
        _check_shape("agent_mask", agent_mask, (b, t, n))
        return (
            obs,
            jnp.asarray(actions, jnp.int32),
            jnp.asarray(legal, bool),
            jnp.asarray(first, bool),
            jnp.asarray(agent_mask, bool),
        )


def _check_shape(name: str, x: jax.Array, expected: tuple[int, ...]) -> None:
    if tuple(np.shape(x)) != expected:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(np.shape(x))}")


def _check_width(obs: jax.Array, config: SableConfig) -> None:
    if obs.shape[-1] != config.obs_width:
        raise ValueError(
            f"observations have width {obs.shape[-1]}, config.obs_width is {config.obs_width}"
        )


def _check_agents(n: int, config: SableConfig) -> None:
    if config.max_agents is not None and n > config.max_agents:
        raise ValueError(f"{n} agents given, config.max_agents is {config.max_agents}")


def _check_state(state: SableState, config: SableConfig, batch: int) -> None:
    expected = (batch, config.num_blocks, config.num_heads, config.head_size, config.head_size)
    for name, s in zip(SableState._fields, state, strict=True):
        _check_shape(f"state.{name}", s, expected)


# --------------------------------------------------------------------------------------------
# The network as a rollout actor
# --------------------------------------------------------------------------------------------


def acting_network(config: SableConfig, q_head: bool = False) -> SableConfig:
    """The network that acting runs: `config` without what acting never reads (the value
    head, the Q head and its bins unless acting greedily on Q values, the training chunk
    size). Why: models that act alike, BC-Sable and Oryx of one size, then trace to the same
    rollout program, compiled once (in a process, and in JAX's persistent cache across
    processes). Use with `acting_params`."""
    return dataclasses.replace(
        config, value_head=False, q_head=q_head and config.q_head,
        value_bins=config.value_bins if q_head and config.q_head else None,
        chunk_timesteps=None)


def acting_params(params: dict, config: SableConfig) -> dict:
    """`params` without the heads that `config` (an `acting_network`) lacks: the same values
    under the tree that network's `init_params` gives."""
    layers = params["params"]
    drop = {("encoder", "value_head"): not config.value_head,
            ("decoder", "q_head"): not config.q_head}
    kept = {part: {name: leaf for name, leaf in layers[part].items()
                   if not drop.get((part, name), False)} for part in layers}
    return {**params, "params": kept}


def sable_actor(
    model: Sable,
    params: dict,
    agent_mask: jax.Array,
    *,
    greedy: bool = False,
    q_values: QValues | None = None,
    prepare: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]] | None = None,
    num_agents: int | None = None,
) -> Callable:
    """Sable as a `trainer.envs.rollout.Actor`: the carry is the retention state (B, ...),
    the extras (log-probs (B, N), values (B, N) or None).

    `prepare(obs (B, N, F), legal (B, N, A)) -> (obs, legal)` turns the environment's step into
    the network's inputs (evaluation: standardisation and padded agent slots); `num_agents`
    keeps the first agents' actions only (the real ones when slots were padded).
    Acting settings as `Sable.act`.
    """

    def act(state: SableState, key: jax.Array, step) -> tuple[SableState, jax.Array, tuple]:
        obs, legal = (step.obs, step.legal) if prepare is None else prepare(step.obs, step.legal)
        res = model.act(params, state, obs, legal, step.first, agent_mask, key, greedy=greedy,
                        q_values=q_values)
        actions = res.actions if num_agents is None else res.actions[:, :num_agents]
        return res.state, actions, (res.log_probs, res.values)

    return act
