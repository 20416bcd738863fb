"""Discounted returns-to-go and the share outside a value support, against hand values."""

import numpy as np
import pytest

from lake_schema.returns import (
    GAMMA,
    lengths_from_steps,
    returns_to_go,
    returns_to_go_fit,
    support_fit,
)


def test_a_three_step_episode_by_hand():
    # G2 = 3; G1 = 2 + 0.99 * 3 = 4.97; G0 = 1 + 0.99 * 4.97 = 5.9203
    np.testing.assert_allclose(returns_to_go([1.0, 2.0, 3.0], [3]), [5.9203, 4.97, 3.0])


def test_episodes_back_to_back_do_not_bootstrap_across_their_boundary():
    # episode A: [-0.03, -0.03, 1.0]; episode B: [0.5]; episode C: [0.0, -1.0]
    reward = [-0.03, -0.03, 1.0, 0.5, 0.0, -1.0]
    got = returns_to_go(reward, [3, 1, 2])
    a2 = 1.0
    a1 = -0.03 + 0.99 * a2  # 0.96
    a0 = -0.03 + 0.99 * a1  # 0.9204
    np.testing.assert_allclose(got, [a0, a1, a2, 0.5, -0.99, -1.0])
    np.testing.assert_allclose(got[:3], [0.9204, 0.96, 1.0])


def test_gamma_one_is_the_undiscounted_tail_sum_and_zero_the_reward():
    r = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(returns_to_go(r, [2, 2], gamma=1.0), [3.0, 2.0, 7.0, 4.0])
    np.testing.assert_allclose(returns_to_go(r, [2, 2], gamma=0.0), r)


def test_long_episodes_match_the_recursion_without_overflow():
    rng = np.random.default_rng(0)
    lengths = [5000, 1, 37, 500]
    r = rng.normal(size=sum(lengths))
    want = np.empty_like(r)
    start = 0
    for n in lengths:
        g = 0.0
        for t in range(start + n - 1, start - 1, -1):
            g = r[t] + GAMMA * g
            want[t] = g
        start += n
    got = returns_to_go(r, lengths)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_connector_never_connecting_reaches_the_closed_form_worst_case():
    # mean team reward -0.03 on each of T steps: G0 = -0.03 (1 - 0.99^T) / 0.01
    for limit in (40, 50):
        g = returns_to_go(np.full(limit, -0.03), [limit])
        assert g[0] == pytest.approx(-0.03 * (1 - 0.99 ** limit) / 0.01)
    assert returns_to_go(np.full(40, -0.03), [40])[0] == pytest.approx(-0.99308, abs=1e-5)


def test_bad_lengths_are_refused():
    with pytest.raises(ValueError, match="sum to the 3 rewards"):
        returns_to_go([1.0, 2.0, 3.0], [2])
    with pytest.raises(ValueError, match="positive"):
        returns_to_go([1.0, 2.0], [2, 0])


def test_fraction_outside_the_support_by_hand():
    # 3-step episode [0, 0, 1.5]: G = [1.47015, 1.485, 1.5], all above 1; then [0.5]: inside;
    # then [-1.2, 0.0]: G = [-1.2, 0.0], one below -1. 4 of 6 outside, 1 of them low.
    fit = returns_to_go_fit([0.0, 0.0, 1.5, 0.5, -1.2, 0.0], [3, 1, 2], (-1.0, 1.0))
    assert (fit.outside, fit.total, fit.low) == (4, 6, 1)
    assert fit.fraction == pytest.approx(4 / 6)
    assert fit.min == pytest.approx(-1.2) and fit.max == pytest.approx(1.5)


def test_the_support_edges_count_as_inside_and_no_steps_is_nan():
    edge = np.float32(1.0) + np.float32(1e-7)  # float32 rounding beyond an exact edge
    assert support_fit(np.array([-1.0, 1.0, edge]), (-1.0, 1.0)).outside == 0
    assert support_fit(np.array([1.001]), (-1.0, 1.0)).outside == 1
    assert np.isnan(support_fit(np.array([]), (-1.0, 1.0)).fraction)


def test_lengths_from_the_step_column():
    np.testing.assert_array_equal(lengths_from_steps(np.array([0, 1, 2, 0, 0, 1])), [3, 1, 2])
    with pytest.raises(ValueError, match="step 0"):
        lengths_from_steps(np.array([1, 2, 0]))
