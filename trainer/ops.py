"""Small array helpers shared by the PPO and offline losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array | None,
                axis: tuple[int, ...] | None = None) -> jax.Array:
    """Mean of x over the entries where mask is True (0 where none is); all entries without a
    mask. mask broadcasts to x (e.g. agent_mask (B, T, N) against (B, T, N) terms)."""
    if mask is None:
        return jnp.mean(x, axis=axis)
    m = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * m, axis=axis) / jnp.maximum(jnp.sum(m, axis=axis), 1.0)
