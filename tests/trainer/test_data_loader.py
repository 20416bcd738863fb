"""Batches and the Grain pipeline: padding, masks, shuffling, flags, balance, resume, sharding."""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import grain
import jax
import numpy as np
import pytest

from lake_schema.storage import Lake
from lake_schema.testing import fill_lake, synthetic_episodes
from lake_schema.writer import write_episodes
from trainer.data import (
    PAD_LEGAL_ACTION,
    ChunkSource,
    DataSelection,
    Loader,
    LoaderConfig,
    balanced_counts,
    batch_sharding,
    build_cache,
    device_put_batch,
    make_loader,
)

TASKS = ("lbf/8x8-2p-2f", "lbf/10x10-3p-3f", "lbf/15x15-4p-5f")
AGENTS = (2, 3, 4)
LBF_MAX = 8  # lbf/17x17-8p-10f


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    lake = Lake(root / "lake")
    fill_lake(lake, TASKS, checkpoints=2, episodes=4, lengths=(8, 30), seed=3)
    return build_cache(lake, DataSelection(env="lbf", tasks=TASKS), root / "cache")


def _equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_batch_shapes_and_dtypes(cache):
    b = Loader(cache, LoaderConfig(batch_size=7, seq_len=6, pad_agents="env")).batch(0)
    assert b.obs.shape == (7, 6, LBF_MAX, 75) and b.obs.dtype == np.float32
    assert b.actions.shape == (7, 6, LBF_MAX) and b.actions.dtype == np.int32
    assert b.legal.shape == (7, 6, LBF_MAX, 6) and b.legal.dtype == np.bool_
    for k in ("reward", "terminated", "truncated", "first"):
        assert getattr(b, k).shape == (7, 6)
    assert b.reward.dtype == np.float32 and b.first.dtype == np.bool_
    assert b.agent_mask.shape == (7, 6, LBF_MAX) and b.task.dtype == np.int32
    bf = Loader(cache, LoaderConfig(batch_size=7, seq_len=6, pad_agents="env",
                                     obs_dtype="bfloat16")).batch(0)
    assert bf.obs.dtype == np.dtype(jax.numpy.bfloat16)
    np.testing.assert_allclose(bf.obs.astype(np.float32), b.obs, atol=0.05, rtol=0.01)


@pytest.mark.parametrize("shuffle", [True, False])
def test_padding_masks_and_shuffled_agents_keep_their_data(cache, shuffle):
    loader = Loader(cache, LoaderConfig(batch_size=12, seq_len=5, shuffle_agents=shuffle))
    src, stats = loader.source, cache.stats
    slots_of_agent0 = set()
    for i in range(3):
        plan, b = loader.plan(i), loader.batch(i)
        for s in range(12):
            task, n = plan.task[s], AGENTS[plan.task[s]]
            assert b.task[s] == task
            raw = src.gather(int(task), plan.start[s:s + 1])
            mask = b.agent_mask[s]
            assert (mask == mask[0]).all() and mask[0].sum() == n  # constant over time
            pad = ~mask[0]
            assert (b.obs[s][:, pad] == 0).all() and (b.actions[s][:, pad] == 0).all()
            assert (b.legal[s][:, pad] == np.eye(6, dtype=bool)[PAD_LEGAL_ACTION]).all()
            for j in range(n):  # every real agent's data, wherever it was shuffled to
                slot = int(np.flatnonzero(plan.agent_order[s] == j)[0])
                assert mask[0, slot]
                np.testing.assert_allclose(b.obs[s][:, slot],
                                           stats.standardise(raw["obs"][0][:, j]), rtol=1e-6)
                np.testing.assert_array_equal(b.actions[s][:, slot], raw["action"][0][:, j])
                np.testing.assert_array_equal(b.legal[s][:, slot], raw["legal"][0][:, j])
                if j == 0:
                    slots_of_agent0.add(slot)
            np.testing.assert_array_equal(b.reward[s], raw["reward"][0])
            np.testing.assert_array_equal(b.terminated[s], raw["terminated"][0])
    if shuffle:
        assert len(slots_of_agent0) > 3  # agent order really changes per sample
    else:
        assert slots_of_agent0 == {0}  # real agents first, in order


def test_padding_to_the_batch_or_selection_maximum(cache):
    single = Loader(cache, LoaderConfig(batch_size=4, seq_len=5, batch_mode="single_task",
                                        pad_agents="batch"))
    for i in range(6):
        b = single.batch(i)
        assert b.agent_mask.shape[-1] == AGENTS[b.task[0]]
        assert b.agent_mask.all()  # the batch's own maximum: nothing padded
    sel = Loader(cache, LoaderConfig(batch_size=6, seq_len=5, pad_agents="selection")).batch(0)
    assert sel.obs.shape[2] == 4
    assert Loader(cache, LoaderConfig(batch_size=6, seq_len=5, pad_agents=5)).batch(0) \
        .obs.shape[2] == 5
    with pytest.raises(ValueError, match="pad_agents=3 is fewer than the 4 agents"):
        Loader(cache, LoaderConfig(batch_size=6, seq_len=5, pad_agents=3))


def test_chunks_cross_episode_boundaries_with_the_right_flags(lake, tmp_path):
    task = "lbf/8x8-2p-2f"  # time limit 100: episodes shorter than that end terminated
    write_episodes(lake, task, "r", 0, "low", synthetic_episodes(task, [3, 4, 6], seed=1))
    write_episodes(lake, task, "r", 1, "low", synthetic_episodes(task, [100], seed=2))
    cache = build_cache(lake, DataSelection(env="lbf", tasks=(task,)), tmp_path / "c")
    src = ChunkSource(cache, seq_len=5)
    assert len(src) == 113 - 5 + 1  # every start with s + T <= 113 steps
    c = src[1]  # steps 1..5: episode 0's last two steps, then episode 1's first three
    assert (c.task, c.start) == (0, 1)
    assert c.first.tolist() == [False, False, True, False, False]
    assert c.terminated.tolist() == [False, True, False, False, False]
    c = src[5]  # steps 5..9: the end of episode 1 (6) and into episode 2 (7..12)
    assert c.first.tolist() == [False, False, True, False, False]
    assert c.terminated.tolist() == [False, True, False, False, False]
    c = src[10]  # steps 10..14: episode 2 ends at 12, the 100-step one starts at 13
    assert c.first.tolist() == [False, False, False, True, False]
    assert c.terminated.tolist() == [False, False, True, False, False]
    last = src[len(src) - 1]  # the final chunk ends with the truncated (time limit) step
    assert last.truncated.tolist() == [False, False, False, False, True]
    assert not last.terminated.any()
    raw = synthetic_episodes(task, [3, 4, 6], seed=1)
    np.testing.assert_array_equal(src[1].obs, raw.obs[1:6])  # contents across the boundary
    # the batch path carries the same flags
    loader = Loader(cache, LoaderConfig(batch_size=16, seq_len=5))
    plan, b = loader.plan(0), loader.batch(0)
    for s in range(16):
        np.testing.assert_array_equal(b.first[s], src[int(plan.start[s])].first)


def test_balanced_batches_follow_the_rotating_allocation(cache):
    loader = Loader(cache, LoaderConfig(batch_size=8, seq_len=5))  # q=2, r=2 over 3 tasks
    totals = np.zeros(3, int)
    for i in range(6):
        counts = np.bincount(loader.batch(i).task, minlength=3)
        np.testing.assert_array_equal(counts, balanced_counts(8, 3, i))
        totals += counts
    np.testing.assert_array_equal(totals, [16, 16, 16])
    single = Loader(cache, LoaderConfig(batch_size=5, seq_len=5, batch_mode="single_task"))
    assert all(len(set(single.batch(i).task.tolist())) == 1 for i in range(5))


def test_batches_are_deterministic_for_a_seed(cache):
    cfg = LoaderConfig(batch_size=6, seq_len=5, seed=11)
    a = [b for _, b in zip(range(3), Loader(cache, cfg).iterator(), strict=False)]
    b = [b for _, b in zip(range(3), Loader(cache, cfg).iterator(), strict=False)]
    assert all(_equal(x, y) for x, y in zip(a, b, strict=True))
    other = Loader(cache, LoaderConfig(batch_size=6, seq_len=5, seed=12)).batch(0)
    assert not np.array_equal(other.obs, a[0].obs)
    assert _equal(a[2], Loader(cache, cfg).batch(2))  # the Grain path = the direct path


def test_resume_gives_the_uninterrupted_run_s_next_batches(cache):
    cfg = LoaderConfig(batch_size=6, seq_len=5, seed=3)
    full = Loader(cache, cfg).iterator()
    expected = [next(full) for _ in range(7)]
    it = Loader(cache, cfg).iterator()
    for _ in range(4):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # saved with a checkpoint, as JSON
    assert state["next_batch"] == 4
    restored = Loader(type(cache).open(cache.path), cfg).iterator(state)  # a new process
    for want in expected[4:]:
        assert _equal(next(restored), want)
    with pytest.raises(ValueError, match="another dataset or config"):
        Loader(cache, LoaderConfig(batch_size=6, seq_len=5, seed=4)).iterator(state)


def test_worker_processes_give_the_same_batches_and_resume(cache):
    cfg = LoaderConfig(batch_size=6, seq_len=5, seed=3)
    expected = [Loader(cache, cfg).batch(i) for i in range(5)]
    pickle.loads(pickle.dumps(Loader(cache, cfg).source))  # picklable for workers
    mp = Loader(cache, LoaderConfig(batch_size=6, seq_len=5, seed=3, num_workers=2))
    it = mp.iterator()
    got = [next(it) for _ in range(3)]
    state = it.get_state()
    it.close()
    assert all(_equal(x, y) for x, y in zip(got, expected, strict=False))
    resumed = Loader(cache, cfg).iterator(state)  # resume with another worker count
    assert _equal(next(resumed), expected[3])


def test_process_shards_split_the_global_batch(cache):
    cfg = LoaderConfig(batch_size=8, seq_len=5, seed=5)
    whole = Loader(cache, cfg).batch(2)
    parts = [Loader(cache, cfg, grain.sharding.ShardOptions(i, 2)).batch(2) for i in (0, 1)]
    for k, field in enumerate(whole._fields):
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k], field)
    with pytest.raises(ValueError, match="does not split evenly over 3"):
        Loader(cache, cfg, grain.sharding.ShardOptions(0, 3))


def test_config_errors_name_the_bad_value(lake, cache):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        LoaderConfig(batch_size=0)
    with pytest.raises(ValueError, match="unknown batch_mode 'mixed'"):
        LoaderConfig(batch_mode="mixed")
    with pytest.raises(ValueError, match="unknown pad_agents 'max'"):
        LoaderConfig(pad_agents="max")
    with pytest.raises(ValueError, match="unknown obs_dtype 'float16'"):
        LoaderConfig(obs_dtype="float16")
    too_long = max(t.num_steps for t in cache.tasks) + 1
    with pytest.raises(ValueError, match=f"seq_len={too_long} is longer than the selected"):
        Loader(cache, LoaderConfig(batch_size=3, seq_len=too_long))
    # B < M is refused before the (empty) lake is even read
    with pytest.raises(ValueError, match="batch_size=2 is smaller than the 3"):
        make_loader(lake, DataSelection(env="lbf", tasks=TASKS), LoaderConfig(batch_size=2))


def test_device_placement(cache):
    b = Loader(cache, LoaderConfig(batch_size=4, seq_len=5)).batch(0)
    on = device_put_batch(b)
    assert isinstance(on.obs, jax.Array) and _equal(jax.device_get(on), b)
    sharded = device_put_batch(b, batch_sharding())
    assert sharded.obs.sharding.spec[0] == "data"


def test_device_placement_splits_the_batch_over_devices(tmp_path):
    code = textwrap.dedent("""
        import jax, numpy as np
        from trainer.data import Batch, device_put_batch
        assert jax.device_count() == 2
        b = Batch(*(np.zeros((4, 3)) for _ in range(8)), np.arange(4, dtype=np.int32))
        on = device_put_batch(b)
        shards = on.task.addressable_shards
        assert sorted(s.data.tolist() for s in shards) == [[0, 1], [2, 3]]
        try:
            device_put_batch(Batch(*(np.zeros((3, 1)) for _ in range(9))))
        except ValueError as e:
            assert "does not split over 2 devices" in str(e)
        else:
            raise AssertionError("3 samples over 2 devices accepted")
        print("ok")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
                             os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
