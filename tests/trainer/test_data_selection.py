"""Dataset selection: validation errors, quality subsets (checked against DuckDB), sizes, runs."""

import numpy as np
import pytest

from lake_schema.duck import connect
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from trainer.data.selection import (
    DataSelection,
    SelectionError,
    fraction_count,
    resolve_selection,
)

TASKS = ["lbf/8x8-2p-2f", "lbf/10x10-3p-3f", "lbf/15x15-3p-5f"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("sel") / "lake")
    fill_lake(lake, TASKS, runs=("r1", "r2"), checkpoints=3, episodes=5, seed=1)
    fill_lake(lake, ["rware/tiny-2ag"], checkpoints=1, episodes=2, seed=2)
    return lake


def _duck_counts(lake, where: str) -> dict[str, tuple[int, int]]:
    rows = connect(lake).execute(
        f"SELECT task, count(*), sum(length) FROM episodes WHERE env = 'lbf' AND {where} "
        "GROUP BY task").fetchall()
    return {f"lbf/{t}": (int(n), int(s)) for t, n, s in rows}


def _counts(resolved) -> dict[str, tuple[int, int]]:
    return {t.task: (t.num_episodes, t.num_steps) for t in resolved.tasks}


@pytest.mark.parametrize(("quality", "where"), [("all", "true"), ("high", "quality = 'high'"),
                                                ("low", "quality = 'low'")])
def test_quality_subsets_agree_with_duckdb(lake, quality, where):
    resolved = resolve_selection(lake, DataSelection(env="lbf", tasks=TASKS, quality=quality))
    expected = _duck_counts(lake, where)
    assert _counts(resolved) == expected
    assert sum(n for n, _ in expected.values()) == {"all": 90, "high": 30, "low": 60}[quality]
    for t in resolved.tasks:
        assert set(t.columns["quality"]) == ({"high", "low"} if quality == "all" else {quality})


def test_high_plus_a_fraction_of_low_agrees_with_duckdb(lake):
    sel = DataSelection(env="lbf", tasks=TASKS, quality="high+low", low_fraction=0.3, seed=4)
    got = {t.task: t for t in resolve_selection(lake, sel).tasks}
    high, low = _duck_counts(lake, "quality = 'high'"), _duck_counts(lake, "quality = 'low'")
    for name, t in got.items():
        q = t.columns["quality"]
        assert (q == "high").sum() == high[name][0]  # every high episode
        assert (q == "low").sum() == fraction_count(low[name][0], 0.3) == 6  # 30% of 20


def test_runs_filter_and_sizes_agree_with_duckdb(lake):
    resolved = resolve_selection(lake, DataSelection(env="lbf", tasks=TASKS, runs=("r2",)))
    assert _counts(resolved) == _duck_counts(lake, "run = 'r2'")
    assert {r for t in resolved.tasks for r in t.columns["run"]} == {"r2"}
    five = resolve_selection(lake, DataSelection(env="lbf", tasks=TASKS, episodes_per_task=7))
    assert [t.num_episodes for t in five.tasks] == [7, 7, 7]
    frac = resolve_selection(lake, DataSelection(env="lbf", tasks=TASKS, quality="low",
                                                 fraction=0.5))
    assert [t.num_episodes for t in frac.tasks] == [10, 10, 10]


def test_canonical_order_and_episode_rows(lake):
    t = resolve_selection(lake, DataSelection(env="lbf", tasks=TASKS[:1])).tasks[0]
    keys = list(zip(t.columns["run"], t.columns["checkpoint"], t.columns["episode"],
                    strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    eps = connect(lake).execute(
        "SELECT run, checkpoint, episode, length, first_row, steps_file FROM episodes "
        "WHERE task = '8x8-2p-2f' ORDER BY run, checkpoint, episode").fetchall()
    assert [(r, c, e, n, f, s) for r, c, e, n, f, s in eps] == list(zip(
        *(t.columns[c].tolist() for c in ("run", "checkpoint", "episode", "length",
                                          "first_row", "steps_file")), strict=True))


def test_subsets_are_deterministic_per_seed_and_per_task(lake):
    def pick(**kw):
        r = resolve_selection(lake, DataSelection(env="lbf", quality="all", fraction=0.4,
                                                  **kw))
        return {t.task: list(zip(t.columns["run"], t.columns["checkpoint"],
                                 t.columns["episode"], strict=True)) for t in r.tasks}

    a = pick(tasks=TASKS, seed=3)
    assert a == pick(tasks=TASKS, seed=3)
    assert a != pick(tasks=TASKS, seed=4)
    # the task-scaling experiment: a task's episodes do not depend on the other tasks chosen
    assert pick(tasks=TASKS[:1], seed=3)[TASKS[0]] == a[TASKS[0]]


def test_split_and_first_k():
    sel = DataSelection(env="rware", split="train", first_k=4)
    assert sel.task_names == ("rware/tiny-2ag", "rware/tiny-4ag", "rware/tiny-8ag",
                              "rware/small-2ag")
    assert len(DataSelection(env="lbf", split="train").task_names) == 5
    assert DataSelection(tasks=("lbf/8x8-2p-2f",)).env_name == "lbf"
    assert DataSelection(env="lbf", tasks=("8x8-2p-2f",)).task_names == ("lbf/8x8-2p-2f",)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"env": "lbf", "tasks": ("9x9-2p-2f",)}, "unknown task 'lbf/9x9-2p-2f'"),
    ({"env": "lbff", "split": "train"}, "unknown environment 'lbff'"),
    ({"env": "lbf", "split": "training"}, "unknown split of lbf 'training'"),
    ({"tasks": ("lbf/8x8-2p-2f", "rware/tiny-2ag")}, r"tasks from 2 environments \(lbf, rware\)"),
    ({"env": "rware", "tasks": ("lbf/8x8-2p-2f",)}, "tasks from 2 environments"),
    ({"env": "lbf", "split": "train", "fraction": 0.0}, r"fraction=0.0 is outside \(0, 1\]"),
    ({"env": "lbf", "split": "train", "fraction": 1.5}, r"fraction=1.5 is outside \(0, 1\]"),
    ({"env": "lbf", "split": "train", "quality": "high+low", "low_fraction": -0.1},
     r"low_fraction=-0.1 is outside \(0, 1\]"),
    ({"env": "lbf", "split": "train", "quality": "high+low"}, "needs low_fraction"),
    ({"env": "lbf", "split": "train", "low_fraction": 0.5}, "only applies to"),
    ({"env": "lbf", "split": "train", "quality": "best"}, "unknown quality subset 'best'"),
    ({"env": "lbf", "split": "train", "first_k": 6}, r"first_k=6 is outside 1..5"),
    ({"env": "lbf", "tasks": ("8x8-2p-2f",), "first_k": 1}, "first_k needs split"),
    ({"env": "lbf", "tasks": ("8x8-2p-2f",), "split": "train"}, "exactly one of"),
    ({"env": "lbf", "split": "train", "episodes_per_task": 0}, "episodes_per_task=0"),
    ({"env": "lbf", "split": "train", "episodes_per_task": 2, "fraction": 0.5}, "not both"),
    ({"env": "lbf", "tasks": ("8x8-2p-2f", "lbf/8x8-2p-2f")}, "selected twice"),
    ({"tasks": ("8x8-2p-2f",)}, "has no environment"),
    ({"env": "lbf", "split": "train", "seed": -1}, "seed=-1"),
])
def test_bad_selections_name_the_bad_value(kwargs, message):
    with pytest.raises(SelectionError, match=message):
        DataSelection(**kwargs)


def test_empty_results_are_errors(lake):
    with pytest.raises(SelectionError, match=r"no episodes match for 3 task\(s\)"):
        resolve_selection(lake, DataSelection(env="lbf", tasks=TASKS, runs=("nope",)))
    with pytest.raises(SelectionError, match=r"lbf/16x16-5p-6f"):  # a task with no data
        resolve_selection(lake, DataSelection(env="lbf", tasks=(*TASKS, "16x16-5p-6f")))
    with pytest.raises(SelectionError, match="episodes_per_task=31 but only 30"):
        resolve_selection(lake, DataSelection(env="lbf", tasks=TASKS, episodes_per_task=31))


def test_selection_json_round_trips(lake):
    sel = DataSelection(env="lbf", split="demo-train", first_k=2, quality="high+low",
                        low_fraction=0.5, runs=["r1"], seed=2)
    j = sel.to_json()
    assert j["tasks"] == ["lbf/8x8-2p-2f", "lbf/10x10-3p-3f"] and j["runs"] == ["r1"]
    assert np.isclose(j["low_fraction"], 0.5)
    assert isinstance(sel.runs, tuple)  # lists are normalised: the config stays hashable
    hash(sel)
    assert DataSelection.from_json(j) == sel
    explicit = DataSelection(env="lbf", tasks=TASKS, episodes_per_task=3)
    assert DataSelection.from_json(explicit.to_json()) == explicit
