"""HL-Gauss: value learning as classification (Farebrother et al. 2024, "Stop regressing", 3.1).

A scalar target y is clipped to the support [v_min, v_max] and projected onto `num_bins`
equal bins by a Gaussian of std sigma = smoothing_ratio x bin width, integrated over each bin
and renormalised over the support:

    edges_i = linspace(v_min, v_max, m + 1),   cdf_i = erf((edges_i - y) / (sqrt(2) sigma)),
    p_i = (cdf_{i+1} - cdf_i) / (cdf_m - cdf_0).

The value head outputs logits over the bins; the loss is the cross-entropy
-sum_i p_i log softmax(logits)_i, and the scalar prediction is the expectation
sum_i softmax(logits)_i * centre_i. Every function is pure and works on any leading shape.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Support(NamedTuple):
    """A fixed support of equal bins (Python floats: static under jit)."""

    v_min: float
    v_max: float
    num_bins: int
    sigma: float

    @property
    def bin_width(self) -> float:
        return (self.v_max - self.v_min) / self.num_bins


def make_support(
    v_min: float, v_max: float, num_bins: int = 51, smoothing_ratio: float = 0.75
) -> Support:
    """The support [v_min, v_max] in `num_bins` bins, sigma = smoothing_ratio x bin width."""
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"HL-Gauss needs num_bins >= 2, got {num_bins!r}")
    if not (math.isfinite(v_min) and math.isfinite(v_max)) or v_max <= v_min:
        raise ValueError(f"HL-Gauss support must be finite with v_min < v_max, got "
                         f"[{v_min}, {v_max}]")
    if not (isinstance(smoothing_ratio, int | float) and smoothing_ratio > 0):
        raise ValueError(f"HL-Gauss smoothing_ratio must be > 0, got {smoothing_ratio!r}")
    width = (v_max - v_min) / num_bins
    return Support(float(v_min), float(v_max), int(num_bins), float(smoothing_ratio * width))


def bin_edges(support: Support) -> jax.Array:
    """(m + 1,) edges from v_min to v_max."""
    return jnp.linspace(support.v_min, support.v_max, support.num_bins + 1, dtype=jnp.float32)


def bin_centres(support: Support) -> jax.Array:
    """(m,) midpoints of the edges."""
    edges = bin_edges(support)
    return (edges[:-1] + edges[1:]) / 2


def project(target: jax.Array, support: Support) -> jax.Array:
    """Target histograms: target (...) -> probabilities (..., m), summing to 1.

    Targets outside the support are clipped to its edge first.
    """
    y = jnp.clip(jnp.asarray(target, jnp.float32), support.v_min, support.v_max)[..., None]
    cdf = jax.scipy.special.erf((bin_edges(support) - y) / (jnp.sqrt(2.0) * support.sigma))
    mass = cdf[..., 1:] - cdf[..., :-1]  # (..., m)
    return mass / (cdf[..., -1:] - cdf[..., :1])


def expectation(logits: jax.Array, support: Support) -> jax.Array:
    """Scalar prediction: logits (..., m) -> (...) = sum softmax(logits) * centres."""
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * bin_centres(support), axis=-1)


def cross_entropy(logits: jax.Array, target: jax.Array, support: Support) -> jax.Array:
    """Per-element HL-Gauss loss: logits (..., m), scalar targets (...) -> (...).

    The target histogram carries no gradient (targets are constants of the loss).
    """
    probs = jax.lax.stop_gradient(project(target, support))
    return -jnp.sum(probs * jax.nn.log_softmax(logits, axis=-1), axis=-1)
