"""Multi-scale retention (Sun et al. 2023) as Sable uses it over (timestep, agent) sequences.

The two forms of the same operator sit side by side:

* chunkwise (training): every token of a chunk of T timesteps x N agents at once, plus the
  state carried in from the previous chunk;
* recurrent (acting): one timestep (or one agent) at a time, carrying the state.

For one head with decay kappa, keys k_m, values v_m and queries q_n the operator is

    out_n = q_n S_n,    S_n = kappa * S_{n-1} + sum_{agents j of timestep n} k_j^T v_j,

with S reset to zero where an observation starts an episode (`first`). Decay is per
*timestep*: all agents of a timestep share it. The encoder lets every agent see all agents
of its own timestep; the causal (decoder) variant only the agents up to itself in the
flattened (timestep, agent) order. Padded agents are removed by zeroing their keys, so they
add nothing to any score nor to the state.

Shapes: B batch, T timesteps, N agents, H heads, d head size, D = H * d.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

GROUP_NORM_EPS = 1e-6


def decay_rates(num_heads: int, decay_scaling: float) -> np.ndarray:
    """Per-head decay kappa_h = (1 - exp(linspace(log 1/32, log 1/512, H))) * scaling. (H,)

    Different heads keep memories over different horizons (multi-scale).
    """
    log_gaps = np.linspace(np.log(1 / 32), np.log(1 / 512), num_heads)
    return ((1.0 - np.exp(log_gaps)) * decay_scaling).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Chunkwise form
# --------------------------------------------------------------------------------------------


def chunk_decays(first: jax.Array, kappa: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Timestep-level decay terms of one chunk.

    Args:
        first: (B, T) bool, True where an observation starts an episode.
        kappa: (H,) per-head decay.

    Returns:
        dmat:  (B, H, T, T) kappa^(n-m) for n >= m within the same episode, else 0.
        xi:    (B, H, T) kappa^(n+1) while still in the episode carried in, else 0: how much of
               the incoming state timestep n sees.
        carry: (B, H) kappa^T if no episode starts in the chunk, else 0: how much of the
               incoming state survives into the outgoing one.
    """
    _, t = first.shape
    # Episode index within the chunk; 0 = the episode carried in from the previous chunk.
    seg = jnp.cumsum(first.astype(jnp.int32), axis=1)  # (B, T)
    steps = jnp.arange(t)
    lower = steps[:, None] >= steps[None, :]  # (T, T)
    dist = jnp.where(lower, steps[:, None] - steps[None, :], 0).astype(jnp.float32)
    same_episode = seg[:, :, None] == seg[:, None, :]  # (B, T, T)
    powers = kappa[:, None, None] ** dist  # (H, T, T)
    dmat = powers[None] * (same_episode & lower)[:, None]  # (B, H, T, T)

    carried = (seg == 0).astype(jnp.float32)  # (B, T)
    xi = kappa[None, :, None] ** (steps + 1.0)[None, None, :] * carried[:, None, :]  # (B, H, T)
    carry = kappa[None, :] ** float(t) * carried[:, -1:]  # (B, H)
    return dmat, xi, carry


def retention_chunkwise(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    state: jax.Array,
    first: jax.Array,
    kappa: jax.Array,
    causal: bool,
) -> tuple[jax.Array, jax.Array]:
    """Retention over a whole chunk in parallel.

    Args:
        q, k, v: (B, H, T, N, d); keys of padded agents must already be zero.
        state: (B, H, d, d) state carried in from the previous chunk.
        first: (B, T) episode-start flags.
        kappa: (H,) per-head decay.
        causal: mask agents after the query within its timestep (decoder).

    Returns:
        out: (B, H, T, N, d) and the outgoing state (B, H, d, d).
    """
    _, _, t, n, _ = q.shape
    dmat, xi, carry = chunk_decays(first, kappa)

    # Inner-chunk part: ((Q K^T) * D) V over the flattened T*N sequence.
    scores = jnp.einsum("bhtnd,bhsmd->bhtnsm", q, k)  # (B, H, T, N, T, N)
    decay = dmat[:, :, :, None, :, None]  # (B, H, T, 1, T, 1): shared by all agents
    if causal:
        order = np.tril(np.ones((t * n, t * n), dtype=bool)).reshape(t, n, t, n)
        decay = decay * order  # (B, H, T, N, T, N)
    inner = jnp.einsum("bhtnsm,bhsmd->bhtnd", scores * decay, v)  # (B, H, T, N, d)

    # Cross-chunk part: (Q S_prev) * xi.
    cross = jnp.einsum("bhtnd,bhde->bhtne", q, state) * xi[:, :, :, None, None]

    # Outgoing state: K^T (V * D[last row]) + S_prev * kappa^T (dropped after an episode start).
    last_row = dmat[:, :, -1, :]  # (B, H, T)
    new_state = jnp.einsum("bhsmd,bhsme,bhs->bhde", k, v, last_row)
    new_state = new_state + state * carry[:, :, None, None]
    return inner + cross, new_state


# --------------------------------------------------------------------------------------------
# Recurrent form
# --------------------------------------------------------------------------------------------


def decay_state(state: jax.Array, first: jax.Array, kappa: jax.Array) -> jax.Array:
    """Advance a carried state by one timestep: S * kappa, or 0 where an episode starts.

    Args:
        state: (B, ..., H, d, d); first: (B,); kappa: (H,).
    """
    decayed = state * kappa[:, None, None]
    keep = ~first.reshape(first.shape + (1,) * (state.ndim - 1))
    return jnp.where(keep, decayed, 0.0)


def retention_recurrent(
    q: jax.Array, k: jax.Array, v: jax.Array, state: jax.Array, causal: bool
) -> tuple[jax.Array, jax.Array]:
    """Retention for M new tokens of the current timestep given the (already decayed) state.

    Args:
        q, k, v: (B, H, M, d); keys of padded agents must already be zero.
        state: (B, H, d, d), already advanced to this timestep with `decay_state`.
        causal: token i only sees tokens j <= i of this timestep (decoder; M = 1 when acting).

    Returns:
        out: (B, H, M, d) and the new state (B, H, d, d).
    """
    kv = jnp.einsum("bhmd,bhme->bhmde", k, v)  # (B, H, M, d, d)
    new_state = state + kv.sum(axis=2)
    if causal:
        seen = state[:, :, None] + jnp.cumsum(kv, axis=2)  # (B, H, M, d, d)
        out = jnp.einsum("bhmd,bhmde->bhme", q, seen)
    else:
        out = jnp.einsum("bhmd,bhde->bhme", q, new_state)
    return out, new_state


# --------------------------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------------------------


class MultiScaleRetention(nn.Module):
    """Multi-head retention with per-head decay, GroupNorm over heads and a swish gate.

    out = (swish(X W_g) * GroupNorm(retention(Q, K, V))) W_o, where X is the key/value input
    (as in Mava; for cross-retention the queries come from the encoder representation).
    """

    embed_dim: int
    num_heads: int
    decay_scaling: float
    causal: bool

    def setup(self) -> None:
        d = self.embed_dim
        init = nn.initializers.normal(stddev=1.0 / d)
        self.w_q = self.param("w_q", init, (d, d))
        self.w_k = self.param("w_k", init, (d, d))
        self.w_v = self.param("w_v", init, (d, d))
        self.w_g = self.param("w_g", init, (d, d))
        self.w_o = self.param("w_o", init, (d, d))
        self.gn_scale = self.param("gn_scale", nn.initializers.ones, (d,))
        self.gn_bias = self.param("gn_bias", nn.initializers.zeros, (d,))
        self.kappa = jnp.asarray(decay_rates(self.num_heads, self.decay_scaling))

    @property
    def head_size(self) -> int:
        return self.embed_dim // self.num_heads

    def _heads(self, x: jax.Array) -> jax.Array:
        """(..., D) -> (..., H, d)."""
        return x.reshape(*x.shape[:-1], self.num_heads, self.head_size)

    def _project(
        self, query_in: jax.Array, kv_in: jax.Array, key_mask: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(B, ..., D) inputs, (B, ...) mask -> q, k, v of shape (B, ..., H, d)."""
        q = self._heads(query_in @ self.w_q)
        # Keys are not scaled by d^-0.5 (as in Mava and og-marl): with weights ~ N(0, 1/D^2)
        # the scaled retention output's per-head variance (~1e-7) falls below GroupNorm's eps
        # (1e-6), which would shrink the normalised output to about a third at initialisation.
        k = self._heads(kv_in @ self.w_k)
        k = k * key_mask[..., None, None]  # padded agents: no key, so no contribution
        v = self._heads(kv_in @ self.w_v)
        return q, k, v

    def _output(self, ret: jax.Array, kv_in: jax.Array) -> jax.Array:
        """GroupNorm over heads, gate and output projection. ret (..., H, d) -> (..., D)."""
        mean = ret.mean(axis=-1, keepdims=True)
        var = ret.var(axis=-1, keepdims=True)
        normed = (ret - mean) * jax.lax.rsqrt(var + GROUP_NORM_EPS)
        normed = normed.reshape(*ret.shape[:-2], self.embed_dim) * self.gn_scale + self.gn_bias
        return (jax.nn.swish(kv_in @ self.w_g) * normed) @ self.w_o

    def __call__(
        self,
        query_in: jax.Array,
        kv_in: jax.Array,
        state: jax.Array,
        first: jax.Array,
        key_mask: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """Chunkwise form. query_in, kv_in (B, T, N, D); state (B, H, d, d); first (B, T);
        key_mask (B, T, N) -> (B, T, N, D), new state."""
        q, k, v = self._project(query_in, kv_in, key_mask)  # (B, T, N, H, d)
        to_heads_first = (0, 3, 1, 2, 4)  # -> (B, H, T, N, d)
        ret, new_state = retention_chunkwise(
            q.transpose(to_heads_first),
            k.transpose(to_heads_first),
            v.transpose(to_heads_first),
            state,
            first,
            self.kappa,
            self.causal,
        )
        ret = ret.transpose(0, 2, 3, 1, 4)  # (B, T, N, H, d)
        return self._output(ret, kv_in), new_state

    def step(
        self, query_in: jax.Array, kv_in: jax.Array, state: jax.Array, key_mask: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Recurrent form for the M tokens of one timestep. query_in, kv_in (B, M, D);
        state (B, H, d, d) already decayed with `decay_state`; key_mask (B, M)
        -> (B, M, D), new state."""
        q, k, v = self._project(query_in, kv_in, key_mask)  # (B, M, H, d)
        ret, new_state = retention_recurrent(
            q.transpose(0, 2, 1, 3),
            k.transpose(0, 2, 1, 3),
            v.transpose(0, 2, 1, 3),
            state,
            self.causal,
        )
        ret = ret.transpose(0, 2, 1, 3)  # (B, M, H, d)
        return self._output(ret, kv_in), new_state
