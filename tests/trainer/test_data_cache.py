"""The training cache: contents equal the lake, reuse, rebuild on change, atomicity, stats, S3."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lake_schema.reader import LakeFileError, Selection, read_table, table_versions
from lake_schema.testing import fill_lake, synthetic_episodes
from lake_schema.writer import write_episodes
from trainer.data.cache import (
    CACHE_ENV,
    CacheDamagedError,
    TrainingCache,
    build_cache,
    default_cache_dir,
)
from trainer.data.loader import Loader, LoaderConfig
from trainer.data.selection import DataSelection, resolve_selection
from trainer.data.source import ChunkSource
from trainer.errors import SelectionError

TASKS = ("lbf/8x8-2p-2f", "lbf/10x10-3p-3f")


def _nested(col: pa.ChunkedArray, shape) -> np.ndarray:
    arr = col.combine_chunks()
    while isinstance(arr.type, pa.ListType | pa.FixedSizeListType):
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).reshape(shape)


def _lake_steps(lake, task: str, episodes: dict) -> dict[str, np.ndarray]:
    """The selected episodes' steps, straight from the lake, in the cache's order."""
    env, scenario = task.split("/")
    steps = read_table(lake, "steps", Selection(env=env, tasks=[scenario]))
    keys = list(zip(steps["run"].to_pylist(), steps["checkpoint"].to_pylist(),
                    steps["episode"].to_pylist(), strict=True))
    index: dict = {}
    for i, k in enumerate(keys):
        index.setdefault(k, []).append(i)
    rows = np.concatenate([index[k] for k in zip(episodes["run"], episodes["checkpoint"],
                                                  episodes["episode"], strict=True)])
    t = steps.take(pa.array(rows))
    s, n = t.num_rows, t["num_agents"][0].as_py()
    return {"obs": _nested(t["obs"], (s, n, -1)), "action": _nested(t["action"], (s, n)),
            "legal": _nested(t["legal"], (s, n, -1)), "reward": t["reward"].to_numpy(),
            "terminated": t["terminated"].to_numpy(), "truncated": t["truncated"].to_numpy(),
            "step": t["step"].to_numpy()}


@pytest.fixture
def filled(lake):
    fill_lake(lake, TASKS, runs=("r1", "r2"), checkpoints=3, episodes=4, seed=5)
    return lake


def test_cache_holds_exactly_the_selected_steps(filled, tmp_path):
    sel = DataSelection(env="lbf", tasks=TASKS, quality="high+low", low_fraction=0.5, seed=1)
    cache = build_cache(filled, sel, tmp_path / "cache")
    episodes = cache.episodes()
    resolved = resolve_selection(filled, sel)
    for i, (task, te) in enumerate(zip(cache.tasks, resolved.tasks, strict=True)):
        assert task.name == te.task == TASKS[i]
        assert episodes[task.name] == te.to_json()  # the selection recorded as JSON
        arrays = cache.arrays(i)
        assert isinstance(arrays["obs"], np.memmap)
        expected = _lake_steps(filled, task.name, episodes[task.name])
        assert arrays["obs"].shape == (te.num_steps, te.num_agents, 75)
        assert arrays["obs"].dtype == np.int8
        for k in ("obs", "action", "legal", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(arrays[k], expected[k], err_msg=k)
        np.testing.assert_array_equal(arrays["first"], expected["step"] == 0)
        assert arrays["first"].sum() == te.num_episodes
    manifest = json.loads((cache.path / "manifest.json").read_text())
    assert manifest["selection"] == sel.to_json()
    assert set(manifest["files"]) == {*resolved.episode_files, *resolved.steps_files}


def test_standardisation_stats_over_real_agents_of_all_tasks(filled, tmp_path):
    cache = build_cache(filled, DataSelection(env="lbf", tasks=TASKS), tmp_path / "c")
    flat = np.concatenate([cache.arrays(i)["obs"].reshape(-1, 75).astype(np.float64)
                           for i in range(2)])
    assert cache.stats.count == flat.shape[0]
    np.testing.assert_allclose(cache.stats.mean, flat.mean(0), rtol=1e-5)
    std = flat.std(0)
    np.testing.assert_allclose(cache.stats.std, np.where(std < 1e-6, 1.0, std), rtol=1e-5)
    z = cache.stats.standardise(flat)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0)[std > 0], 1, atol=1e-4)
    # stats are stored with the cache: a reopened cache has the same numbers
    again = TrainingCache.open(cache.path)
    np.testing.assert_array_equal(again.stats.std, cache.stats.std)


def _numpy_stats(lake, resolved) -> tuple[np.ndarray, np.ndarray, int]:
    """Plain numpy mean/std over the selected episodes' real agents, read from the lake."""
    obs = np.concatenate([
        _lake_steps(lake, te.task, te.to_json())["obs"].reshape(-1, 75).astype(np.float64)
        for te in resolved.tasks])
    std = obs.std(0)
    return obs.mean(0), np.where(std < 1e-6, 1.0, std), len(obs)


@pytest.mark.parametrize(("selection", "scope"), [
    ({"tasks": TASKS}, {"tasks": TASKS}),
    # a subset of the same tasks' episodes: standardised with all of them
    ({"tasks": TASKS, "quality": "high"}, {"tasks": TASKS}),
    ({"tasks": TASKS[:1], "fraction": 0.5, "seed": 3}, {"tasks": TASKS[:1]}),
    ({"tasks": TASKS, "runs": ("r2",), "quality": "high+low", "low_fraction": 0.5},
     {"tasks": TASKS, "runs": ("r2",)}),
])
def test_standardisation_stats_are_the_whole_scope_s(filled, tmp_path, selection, scope):
    """One statistic per environment for every model of an experiment: the selection's own
    episodes never matter, only the tasks (or split) and runs it draws from; every
    checkpoint is whole, so every statistic comes from a dataset card."""
    sel = DataSelection(env="lbf", **selection)
    cache = build_cache(filled, sel, tmp_path / "c")
    every = resolve_selection(filled, DataSelection(env="lbf", **scope))
    mean, std, count = _numpy_stats(filled, every)
    assert cache.stats.count == count
    np.testing.assert_allclose(cache.stats.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(cache.stats.std, std, rtol=1e-5)
    assert cache.manifest["stats_from_cards"] == {"checkpoints": len(every.steps_files),
                                                  "of": len(every.steps_files)}


def test_the_first_k_tasks_of_a_split_are_standardised_with_the_whole_split(lake, tmp_path):
    """Task scaling's single-task and multi-task models see one statistic: the split's."""
    split = ("lbf/8x8-2p-2f", "lbf/10x10-3p-3f", "lbf/15x15-3p-5f")  # lbf's demo-train
    fill_lake(lake, split[:2], checkpoints=2, episodes=3, seed=2)
    with pytest.raises(SelectionError, match=r"standardisation.*lbf/15x15-3p-5f"):
        build_cache(lake, DataSelection(env="lbf", split="demo-train", first_k=1),
                    tmp_path / "c")
    fill_lake(lake, split[2:], checkpoints=2, episodes=3, seed=3)
    mean, std, count = _numpy_stats(lake, resolve_selection(
        lake, DataSelection(env="lbf", tasks=split)))
    for selection in ({"first_k": 1}, {"first_k": 2, "quality": "high"}, {}):
        cache = build_cache(lake, DataSelection(env="lbf", split="demo-train", **selection),
                            tmp_path / "c")
        assert cache.stats.count == count
        np.testing.assert_allclose(cache.stats.mean, mean, rtol=1e-5)
        np.testing.assert_allclose(cache.stats.std, std, rtol=1e-5)
        assert cache.manifest["stats_scope"]["tasks"] == list(split)


def test_stats_are_read_from_the_cards_and_computed_without_them(filled, tmp_path):
    """A card's moments are used as they are (a card edited behind the lake's back shows in
    the statistics); a lake without cards (written before them) gets the same numbers
    computed from the rows."""
    from lake_schema import delta

    sel = DataSelection(env="lbf", tasks=TASKS[:1], runs=("r1",))
    mean, std, count = _numpy_stats(filled, resolve_selection(filled, sel))
    cards = read_table(filled, "cards", Selection(env="lbf", tasks=["8x8-2p-2f"], runs=["r1"]))
    edited = cards.set_column(cards.schema.get_field_index("obs_mean"), "obs_mean", pa.array(
        [[v + 10.0 for v in row] for row in cards["obs_mean"].to_pylist()]))
    for ck in range(3):
        delta.replace_key(filled, "cards", edited.filter(pc.equal(
            edited["checkpoint"], ck)), {"env": "lbf", "task": "8x8-2p-2f", "run": "r1",
                                         "checkpoint": ck})
    cache = build_cache(filled, sel, tmp_path / "edited")
    np.testing.assert_allclose(cache.stats.mean, mean + 10.0, rtol=1e-5)
    assert cache.manifest["stats_from_cards"] == {"checkpoints": 3, "of": 3}

    filled.fs.rm(filled.path("cards"), recursive=True)
    fresh = type(filled)(filled.root)  # a new process: no Delta table cached from before
    cache = build_cache(fresh, sel, tmp_path / "without")
    assert cache.manifest["stats_from_cards"] == {"checkpoints": 0, "of": 3}
    assert cache.stats.count == count
    np.testing.assert_allclose(cache.stats.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(cache.stats.std, std, rtol=1e-5)


def test_cache_is_reused_and_rebuilt_when_the_lake_changes(filled, tmp_path):
    sel = DataSelection(env="lbf", tasks=TASKS)
    first = build_cache(filled, sel, tmp_path / "c")
    stamp = os.stat(first.path / "manifest.json").st_mtime_ns
    again = build_cache(filled, sel, tmp_path / "c")
    assert again.path == first.path
    assert os.stat(again.path / "manifest.json").st_mtime_ns == stamp  # not rebuilt
    # re-materialise one checkpoint with different episodes: the cache must follow
    write_episodes(filled, TASKS[0], "r1", 0, "low", synthetic_episodes(TASKS[0], [7, 9], 99))
    rebuilt = build_cache(filled, sel, tmp_path / "c")
    assert rebuilt.path != first.path
    assert rebuilt.path.name.rsplit("-", 1)[0] == first.path.name.rsplit("-", 1)[0]
    assert not first.path.exists()  # the stale cache of the same selection is removed
    with pytest.raises(FileNotFoundError, match="is gone"):
        _ = ChunkSource(first, seq_len=5).arrays  # a late reader of it gets a clear error
    assert rebuilt.tasks[0].num_episodes == first.tasks[0].num_episodes - 4 + 2
    # another selection gets its own cache, next to it
    other = build_cache(filled, DataSelection(env="lbf", tasks=TASKS[:1]), tmp_path / "c")
    assert other.path != rebuilt.path and rebuilt.path.exists()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(
        [rebuilt.path.name, other.path.name])  # no temp directories left


def test_a_failed_build_leaves_nothing(filled, tmp_path):
    sel = DataSelection(env="lbf", tasks=TASKS)
    victim = resolve_selection(filled, sel).tasks[1].columns["steps_file"][-1]
    with open(filled.path(victim), "r+b") as f:  # corrupt the last file read
        f.seek(-64, os.SEEK_END)
        f.write(b"\0" * 64)
    with pytest.raises(LakeFileError, match="steps/lbf/task=10x10-3p-3f"):
        build_cache(filled, sel, tmp_path / "c")
    assert not any((tmp_path / "c").rglob("*"))


def test_a_steps_file_whose_values_changed_is_never_cached(filled, tmp_path):
    """Valid Parquet with other numbers (bit rot that decodes, or a rewrite in place): the
    build compares the rows with the content hash their commit recorded."""
    import pyarrow.parquet as pq

    sel = DataSelection(env="lbf", tasks=TASKS)
    victim = resolve_selection(filled, sel).tasks[0].columns["steps_file"][0]
    t = pq.read_table(filled.path(victim))
    reward = t["reward"].to_numpy().copy()
    reward[0] += 1.0
    pq.write_table(t.set_column(t.schema.get_field_index("reward"), "reward",
                                pa.array(reward)), filled.path(victim))
    with pytest.raises(LakeFileError, match="rows differ from those committed"):
        build_cache(filled, sel, tmp_path / "c")
    assert not any((tmp_path / "c").rglob("*"))


def test_a_damaged_cache_is_rebuilt_never_returned(filled, tmp_path):
    sel = DataSelection(env="lbf", tasks=TASKS)
    good = build_cache(filled, sel, tmp_path / "c")
    expected = np.array(good.arrays(1)["obs"])
    obs = good.path / good.tasks[1].dir / "obs.npy"
    with open(obs, "r+b") as f:  # truncated: a memory map of it would SIGBUS on access
        f.truncate(os.path.getsize(obs) // 2)
    with pytest.raises(CacheDamagedError, match="truncated"):
        TrainingCache.open(good.path).arrays(1)
    again = build_cache(filled, sel, tmp_path / "c")
    assert again.path == good.path
    np.testing.assert_array_equal(again.arrays(1)["obs"], expected)
    # a replaced array of the wrong shape is caught the same way
    np.save(again.path / again.tasks[0].dir / "reward.npy", np.zeros(3, np.float32))
    third = build_cache(filled, sel, tmp_path / "c")
    assert third.arrays(0)["reward"].shape == (third.tasks[0].num_steps,)


def test_cache_records_versions_and_can_be_pinned(filled, tmp_path):
    sel = DataSelection(env="lbf", tasks=TASKS)
    first = build_cache(filled, sel, tmp_path / "c")
    assert first.versions == table_versions(filled, ["episodes", "steps/lbf"])
    # same key rewritten with data of the same shape and size: still a new cache
    write_episodes(filled, TASKS[0], "r1", 0, "low", synthetic_episodes(TASKS[0], [7, 9], 99))
    write_episodes(filled, TASKS[0], "r1", 0, "low", synthetic_episodes(TASKS[0], [7, 9], 98))
    now = build_cache(filled, sel, tmp_path / "c", prune_stale=False)
    assert now.path != first.path and now.versions["episodes"] == first.versions["episodes"] + 2
    # retraining on exactly the first model's data
    pinned = DataSelection(env="lbf", tasks=TASKS, as_of=first.versions)
    old = build_cache(filled, pinned, tmp_path / "p")
    assert old.versions == first.versions
    for i in range(2):
        for k, v in first.arrays(i).items():
            np.testing.assert_array_equal(old.arrays(i)[k], v, err_msg=k)
    assert DataSelection.from_json(pinned.to_json()).as_of == first.versions


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sable-lake"


@pytest.mark.s3
def test_s3_lake_round_trip_into_a_local_cache(s3_lake, lake, tmp_path):
    for target in (s3_lake, lake):
        fill_lake(target, TASKS, checkpoints=2, episodes=3, seed=8)
    sel = DataSelection(env="lbf", tasks=TASKS, quality="low")
    remote = build_cache(s3_lake, sel, tmp_path / "c")
    local = build_cache(lake, sel, tmp_path / "c")
    assert remote.path.parent == tmp_path / "c" and remote.path != local.path
    assert remote.manifest["lake"].startswith("s3://")
    assert remote.versions == table_versions(s3_lake, ["episodes", "steps/lbf"])
    for i in range(2):
        r, loc = remote.arrays(i), local.arrays(i)
        for k in r:
            np.testing.assert_array_equal(r[k], loc[k], err_msg=k)
    np.testing.assert_array_equal(remote.stats.mean, local.stats.mean)
    assert build_cache(s3_lake, sel, tmp_path / "c").path == remote.path  # reused
    cfg = LoaderConfig(batch_size=4, seq_len=5)
    a, b = Loader(remote, cfg).batch(3), Loader(local, cfg).batch(3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
