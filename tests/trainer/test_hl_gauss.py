"""HL-Gauss: projection of scalar targets onto histograms, expectation, cross-entropy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from trainer.offline import hl_gauss

LBF = hl_gauss.make_support(-1.0, 1.0, 51, 0.75)
RWARE = hl_gauss.make_support(-20.0, 20.0, 51, 0.75)


def test_support_geometry_matches_the_paper():
    assert RWARE.bin_width == pytest.approx(40 / 51)
    assert RWARE.sigma == pytest.approx(0.588, abs=1e-3)  # the facts' example: w 0.784
    edges, centres = hl_gauss.bin_edges(RWARE), hl_gauss.bin_centres(RWARE)
    assert edges.shape == (52,) and centres.shape == (51,)
    assert float(edges[0]) == -20 and float(edges[-1]) == 20
    np.testing.assert_allclose(np.diff(np.asarray(edges)), 40 / 51, rtol=1e-5)
    np.testing.assert_allclose(centres, (edges[:-1] + edges[1:]) / 2)


@pytest.mark.parametrize("support", [LBF, RWARE])
def test_projection_sums_to_one_and_is_a_distribution(support):
    y = jnp.linspace(support.v_min - 5, support.v_max + 5, 101)
    p = hl_gauss.project(y, support)
    assert p.shape == (101, 51)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert (p >= 0).all()


@pytest.mark.parametrize("support", [LBF, RWARE])
def test_mean_of_the_projection_is_the_target_inside_the_support(support):
    margin = 4 * support.sigma  # the Gaussian is barely truncated this far from the edges
    y = jnp.linspace(support.v_min + margin, support.v_max - margin, 37)
    mean = (hl_gauss.project(y, support) * hl_gauss.bin_centres(support)).sum(-1)
    np.testing.assert_allclose(mean, y, atol=1e-3 * (support.v_max - support.v_min))


def test_projection_equals_the_normal_cdf_differences():
    y = 0.137
    edges = np.linspace(-1, 1, 52)
    cdf = norm.cdf(edges, loc=y, scale=LBF.sigma)
    expected = np.diff(cdf) / (cdf[-1] - cdf[0])
    np.testing.assert_allclose(hl_gauss.project(jnp.float32(y), LBF), expected, atol=1e-6)


def test_targets_outside_the_support_are_clipped_to_its_edge():
    p_hi = hl_gauss.project(jnp.array([1.0, 3.0, 1e6]), LBF)
    np.testing.assert_allclose(p_hi[1], p_hi[0], atol=1e-7)
    np.testing.assert_allclose(p_hi[2], p_hi[0], atol=1e-7)
    p_lo = hl_gauss.project(jnp.array([-1.0, -50.0]), LBF)
    np.testing.assert_allclose(p_lo[1], p_lo[0], atol=1e-7)
    assert int(jnp.argmax(p_hi[0])) == 50 and int(jnp.argmax(p_lo[0])) == 0
    # half a Gaussian renormalised: the mass piles into the edge bins
    assert float(p_hi[0][-1]) > 0.5


@pytest.mark.parametrize("support", [LBF, RWARE])
def test_expectation_of_a_target_histogram_is_the_target(support):
    margin = 4 * support.sigma
    y = jnp.linspace(support.v_min + margin, support.v_max - margin, 25)
    logits = jnp.log(hl_gauss.project(y, support))  # softmax(log p) = p
    np.testing.assert_allclose(hl_gauss.expectation(logits, support), y,
                               atol=1e-3 * (support.v_max - support.v_min))


def test_cross_entropy_is_minimised_by_the_target_histogram():
    y = jnp.array([0.3, -0.6])
    p = hl_gauss.project(y, LBF)
    log_p = jnp.log(jnp.maximum(p, 1e-30))  # far bins underflow to exactly 0
    at_target = hl_gauss.cross_entropy(log_p, y, LBF)
    entropy = -(p * log_p).sum(-1)
    np.testing.assert_allclose(at_target, entropy, rtol=1e-5)
    other = hl_gauss.cross_entropy(jnp.zeros((2, 51)), y, LBF)
    assert (other > at_target).all()
    # the gradient flows to the logits only, and vanishes at the target histogram
    g_logits = jax.grad(lambda lg: hl_gauss.cross_entropy(lg, y, LBF).sum())(log_p)
    np.testing.assert_allclose(g_logits, 0.0, atol=1e-5)
    g_target = jax.grad(lambda t: hl_gauss.cross_entropy(jnp.zeros((2, 51)), t, LBF).sum())(y)
    np.testing.assert_allclose(g_target, 0.0)


def test_shapes_broadcast_over_leading_axes():
    y = jnp.zeros((2, 3, 4))
    assert hl_gauss.project(y, LBF).shape == (2, 3, 4, 51)
    assert hl_gauss.expectation(jnp.zeros((2, 3, 4, 51)), LBF).shape == (2, 3, 4)
    assert hl_gauss.cross_entropy(jnp.zeros((2, 3, 4, 51)), y, LBF).shape == (2, 3, 4)
    # uniform logits predict the support's midpoint
    assert math.isclose(float(hl_gauss.expectation(jnp.zeros(51), RWARE)), 0.0, abs_tol=1e-5)


@pytest.mark.parametrize("args, match", [
    ((1.0, -1.0), "v_min < v_max"),
    ((-1.0, 1.0, 1), "num_bins >= 2"),
    ((-1.0, 1.0, 51, 0.0), "smoothing_ratio"),
    ((-1.0, float("inf")), "finite"),
])
def test_bad_supports_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        hl_gauss.make_support(*args)
