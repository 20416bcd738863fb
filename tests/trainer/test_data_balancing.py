"""The loader's pure math: task-balanced allocation, batch plans, subsets, statistics."""

import numpy as np
import pytest

from lake_schema.stats import Moments, combine, moments
from trainer.data.balancing import Planner, balanced_counts, valid_starts
from trainer.data.loader import LoaderConfig
from trainer.data.selection import choose, fraction_count
from trainer.data.stats import ObsStats

SIZES = [(b, m) for m in (1, 2, 3, 5, 7, 15) for b in (m, m + 1, 2 * m, 2 * m + m - 1, 480)]


@pytest.mark.parametrize(("b", "m"), SIZES)
def test_balanced_counts_sum_and_spread(b, m):
    q, r = divmod(b, m)
    for batch in range(3 * m):
        counts = balanced_counts(b, m, batch)
        assert counts.sum() == b
        assert set(np.unique(counts)) <= {q, q + 1}
        assert (counts == q + 1).sum() == r


@pytest.mark.parametrize(("b", "m"), SIZES)
def test_every_m_batches_every_task_gets_the_same_total(b, m):
    q, r = divmod(b, m)
    for first in (0, 1, m + 2):  # any window of M consecutive batches
        total = sum(balanced_counts(b, m, first + i) for i in range(m))
        np.testing.assert_array_equal(total, np.full(m, q * m + r))


def test_remainder_rotates_round_robin_across_batches():
    # B=10, M=4: q=2, r=2; extras go to tasks 0,1 then 2,3 then 0,1 ...
    assert balanced_counts(10, 4, 0).tolist() == [3, 3, 2, 2]
    assert balanced_counts(10, 4, 1).tolist() == [2, 2, 3, 3]
    assert balanced_counts(10, 4, 2).tolist() == [3, 3, 2, 2]
    # B=7, M=3: q=2, r=1; the single extra chunk walks 0, 1, 2, 0, ...
    assert [int(np.argmax(balanced_counts(7, 3, i))) for i in range(5)] == [0, 1, 2, 0, 1]
    # B=11, M=5: r=1 -> task i gets it in batch i; B=13, M=5: r=3 -> 0,1,2 / 3,4,0 / 1,2,3
    assert balanced_counts(13, 5, 1).tolist() == [3, 2, 2, 3, 3]
    assert balanced_counts(13, 5, 2).tolist() == [2, 3, 3, 3, 2]
    assert balanced_counts(12, 4, 5).tolist() == [3, 3, 3, 3]  # divisible: no remainder


def test_batch_smaller_than_task_count_is_rejected():
    with pytest.raises(ValueError, match=r"B=3 .* M=4"):
        balanced_counts(3, 4, 0)
    with pytest.raises(ValueError, match="batch_size=3 is smaller than the 4"):
        LoaderConfig(batch_size=3).check_tasks(4)
    LoaderConfig(batch_size=3, batch_mode="single_task").check_tasks(4)  # balanced needs B >= M
    with pytest.raises(ValueError, match="B=2"):
        Planner("balanced", 2, (5, 5, 5), (1, 1, 1), None, True, 0)


def _planner(mode="balanced", b=10, starts=(50, 7, 300, 20), agents=(2, 3, 4, 2), seed=0,
             pad_to=4, shuffle=True):
    return Planner(mode, b, tuple(starts), tuple(agents), pad_to, shuffle, seed)


def test_plan_is_a_pure_function_of_seed_and_batch_index():
    p = _planner()
    a, b = p.plan(7), _planner().plan(7)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = _planner(seed=1).plan(7)
    assert not np.array_equal(a.start, c.start)
    assert not np.array_equal(p.plan(8).start, a.start)


def test_balanced_plan_composition_and_valid_starts():
    p = _planner(b=10)
    for i in range(8):
        plan = p.plan(i)
        np.testing.assert_array_equal(np.bincount(plan.task, minlength=4),
                                      balanced_counts(10, 4, i))
        assert (plan.start >= 0).all()
        assert (plan.start < np.asarray(p.num_starts)[plan.task]).all()
        assert sorted(plan.agent_order[0].tolist()) == [0, 1, 2, 3]  # a permutation


def test_starts_are_uniform_over_valid_positions():
    p = _planner(mode="balanced", b=200, starts=(5, 3), agents=(1, 1), pad_to=1)
    starts = np.concatenate([p.plan(i).start[p.plan(i).task == 0] for i in range(100)])
    freq = np.bincount(starts, minlength=5) / len(starts)
    np.testing.assert_allclose(freq, np.full(5, 0.2), atol=0.02)  # 10k draws


def test_single_task_mode_draws_one_uniform_task_per_batch():
    p = _planner(mode="single_task", b=6)
    chosen = []
    for i in range(2000):
        task = p.plan(i).task
        assert len(set(task.tolist())) == 1
        chosen.append(task[0])
    np.testing.assert_allclose(np.bincount(chosen, minlength=4) / 2000, 0.25, atol=0.03)


def test_proportional_mode_follows_task_sizes():
    starts = (100, 300, 600)
    p = _planner(mode="proportional", b=100, starts=starts, agents=(1, 1, 1), pad_to=1)
    tasks = np.concatenate([p.plan(i).task for i in range(200)])
    np.testing.assert_allclose(np.bincount(tasks) / len(tasks), [0.1, 0.3, 0.6], atol=0.01)


def test_agent_order_shuffled_or_identity_and_batch_padding():
    on = _planner(b=40).plan(0).agent_order
    assert len({tuple(r) for r in on.tolist()}) > 5  # per-sample, not one shared order
    off = _planner(b=40, shuffle=False).plan(0).agent_order
    assert (off == np.arange(4)).all()
    plan = _planner(mode="single_task", b=8, pad_to=None, agents=(2, 3, 4, 2)).plan(3)
    assert plan.num_agents_out == (2, 3, 4, 2)[plan.task[0]]


def test_valid_starts():
    assert valid_starts(20, 20) == 1
    assert valid_starts(25, 20) == 6
    assert valid_starts(19, 20) == 0


def test_fraction_count_and_choose():
    assert fraction_count(10, 0.25) == 3  # 2.5 rounds half up
    assert fraction_count(10, 0.01) == 1  # at least one
    assert fraction_count(10, 1.0) == 10
    assert fraction_count(0, 0.5) == 0
    rng = np.random.default_rng(0)
    pick = choose(100, 10, rng)
    assert len(set(pick.tolist())) == 10 and (np.diff(pick) > 0).all()
    assert choose(5, 9, rng).tolist() == [0, 1, 2, 3, 4]


def test_streaming_moments_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (1000, 7)).astype(np.float32)
    x[:, 2] = 5.0  # a constant feature
    parts = np.split(x, [10, 11, 400, 999])
    m = Moments.empty(7)
    for part in parts:
        m = combine(m, moments(part))
    assert m.count == 1000
    np.testing.assert_allclose(m.mean, x.astype(np.float64).mean(0), rtol=1e-10)
    np.testing.assert_allclose(np.sqrt(m.m2 / m.count), x.astype(np.float64).std(0),
                               rtol=1e-9, atol=1e-12)
    stats = ObsStats.from_moments(m)
    assert stats.std[2] == 1.0  # constant feature: centred, not divided by zero
    z = stats.standardise(x)
    np.testing.assert_allclose(np.delete(z.mean(0), 2), 0, atol=1e-5)
    np.testing.assert_allclose(np.delete(z.std(0), 2), 1, atol=1e-4)
    assert np.abs(z[:, 2]).max() < 1e-6
    back = ObsStats.from_json(stats.to_json())
    np.testing.assert_array_equal(back.mean, stats.mean)
    with pytest.raises(ValueError, match="no observations"):
        ObsStats.from_moments(Moments.empty(3))
