"""The lake's rules: round trips, pruning, replace-not-duplicate, atomicity, validation,
versions."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from lake_schema import delta, maintenance
from lake_schema.catalogue import UnknownTaskError
from lake_schema.duck import connect
from lake_schema.reader import (
    LakeFileError,
    Selection,
    list_files,
    parse_partition,
    read_table,
    snapshot,
    table_versions,
)
from lake_schema.schema import LakeValueError, quality_for_checkpoint
from lake_schema.testing import synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import (
    EpisodeBatch,
    Evaluation,
    delete_run,
    write_episodes,
    write_evaluation,
    write_records,
    write_reference,
)

LBF = "lbf/8x8-2p-2f"


def fill(lake, tasks=(LBF, "lbf/10x10-3p-3f"), checkpoints=3, episodes=4):
    for t, task in enumerate(tasks):
        for ck in range(checkpoints):
            b = synthetic_episodes(task, [7 + i for i in range(episodes)], seed=10 * t + ck)
            write_episodes(lake, task, "run0", ck, quality_for_checkpoint(ck, checkpoints), b)


def test_quality_rule_is_two_thirds_low():
    assert [quality_for_checkpoint(k, 6) for k in range(6)] == ["low"] * 4 + ["high"] * 2
    assert [quality_for_checkpoint(k, 3) for k in range(3)] == ["low", "low", "high"]
    with pytest.raises(LakeValueError, match="checkpoint 5"):
        quality_for_checkpoint(5, 5)


@pytest.mark.parametrize("task", [LBF, "rware/tiny-4ag", "connector/12x12x4a"])
def test_steps_and_episodes_round_trip(lake, task):
    batch = synthetic_episodes(task, [5, 9, 3], seed=1)
    result = write_episodes(lake, task, "run-a", 2, "high", batch, env_steps=1234)
    assert result.rows == 17 and result.bytes > 0
    env = task.split("/")[0]
    steps = read_table(lake, "steps", Selection(env=env))
    n, f = batch.obs.shape[1:]
    obs = np.asarray(steps["obs"].combine_chunks().flatten().flatten()).reshape(-1, n, f)
    assert obs.dtype == np.dtype(batch.obs.dtype if env != "lbf" else np.int8)
    np.testing.assert_array_equal(obs, batch.obs)
    action = np.asarray(steps["action"].combine_chunks().flatten()).reshape(-1, n)
    np.testing.assert_array_equal(action, batch.action)
    legal = np.asarray(steps["legal"].combine_chunks().flatten().flatten())
    legal = legal.reshape(batch.legal.shape)
    np.testing.assert_array_equal(legal, batch.legal)
    np.testing.assert_array_equal(steps["reward"].to_numpy(), batch.reward)
    assert steps["step"].to_pylist() == [*range(5), *range(9), *range(3)]
    assert set(steps["quality"].to_pylist()) == {"high"}
    assert set(steps["checkpoint"].to_pylist()) == {2}

    episodes = read_table(lake, "episodes", Selection(env=env))
    assert episodes["length"].to_pylist() == [5, 9, 3]
    np.testing.assert_allclose(episodes["return"].to_numpy(), batch.episode_returns())
    assert episodes["first_row"].to_pylist() == [0, 5, 14]
    assert set(episodes["steps_file"].to_pylist()) == {result.files[0]}
    assert episodes["env_steps"].to_pylist() == [1234] * 3


def test_references_and_evaluations_round_trip(lake):
    write_reference(lake, LBF, "run0", sable_returns=[0.9, 0.7], random_returns=[0.1, 0.0],
                    env_steps=10_000)
    ref = read_table(lake, "references", Selection(env="lbf")).to_pylist()
    assert len(ref) == 1
    assert ref[0]["sable_return"] == pytest.approx(0.8)
    assert ref[0]["random_return"] == pytest.approx(0.05)
    assert (ref[0]["env"], ref[0]["task"], ref[0]["run"]) == ("lbf", "8x8-2p-2f", "run0")

    write_evaluation(lake, "lbf/12x12-4p-5f", "m1", Evaluation(**_evaluation()))
    ev = read_table(lake, "evaluations").to_pylist()
    assert ev[0]["normalised_return"] == 0.625 and ev[0]["model"] == "m1"
    with pytest.raises(LakeValueError, match="lacks column"):
        write_records(lake, "evaluations", {"env": "lbf", "task": "12x12-4p-5f", "model": "m1"},
                      [{"algorithm": "bc"}])


def test_rewriting_a_key_replaces_it(lake):
    first = synthetic_episodes(LBF, [5, 5], seed=1)
    write_episodes(lake, LBF, "run0", 0, "low", first)
    second = synthetic_episodes(LBF, [3], seed=2)
    write_episodes(lake, LBF, "run0", 0, "low", second)
    assert read_table(lake, "steps", Selection(env="lbf")).num_rows == 3
    # the same checkpoint re-tagged (e.g. a different budget) leaves no stale copy behind
    write_episodes(lake, LBF, "run0", 0, "high", second)
    eps = read_table(lake, "episodes", Selection(env="lbf"))
    assert eps.num_rows == 1 and eps["quality"].to_pylist() == ["high"]
    con = connect(lake)
    assert con.execute("select count(*) from steps").fetchone()[0] == 3
    assert len(list_files(lake, "steps", Selection(env="lbf"))) == 1
    assert len(list_files(lake, "episodes")) == 1
    assert verify(lake, deep=True).ok


def test_delete_run_removes_every_table_of_the_run(lake):
    fill(lake, tasks=(LBF,), checkpoints=2)
    write_reference(lake, LBF, "run0", sable_returns=[1.0], random_returns=[0.0], env_steps=1)
    fill(lake, tasks=("lbf/10x10-3p-3f",), checkpoints=1)
    removed = delete_run(lake, LBF, "run0")
    # 2 checkpoints x (steps, episodes, card) + the references row
    assert len(removed) == 7 and all("8x8-2p-2f" in f for f in removed)
    assert set(read_table(lake, "episodes")["task"].to_pylist()) == {"10x10-3p-3f"}
    assert not list_files(lake, "references")
    assert not any("8x8" in p for p in list_files(lake, "steps", Selection(env="lbf")))
    assert verify(lake).ok


def test_selection_filters_partitions(lake):
    fill(lake, checkpoints=3)
    eps = read_table(lake, "episodes", Selection(env="lbf", tasks=["8x8-2p-2f"], quality="low"))
    assert set(eps["task"].to_pylist()) == {"8x8-2p-2f"}
    assert set(eps["checkpoint"].to_pylist()) == {0, 1}
    eps = read_table(lake, "episodes", Selection(env="lbf", checkpoints=(1, 2)))
    assert set(eps["checkpoint"].to_pylist()) == {1, 2}
    only_partitions = read_table(lake, "episodes", Selection(env="lbf"), columns=["checkpoint"])
    assert only_partitions.column_names == ["checkpoint"] and only_partitions.num_rows == 24
    eps = read_table(lake, "episodes", Selection(env="lbf", split="demo-test"))
    assert eps.num_rows == 0
    assert read_table(lake, "episodes", Selection(env="lbf", split="train")).num_rows == 24
    with pytest.raises(UnknownTaskError, match="8x8-2p-2f"):
        read_table(lake, "episodes", Selection(env="lbf", tasks=["8x8-2p-3f"]))
    with pytest.raises(LakeValueError, match="quality"):
        read_table(lake, "episodes", Selection(env="lbf", quality="medium"))
    with pytest.raises(LakeValueError, match="needs env"):
        read_table(lake, "steps")


def _corrupt(lake, rel: str) -> None:
    with open(lake.path(rel), "r+b") as f:
        f.truncate(100)


def test_one_task_query_opens_only_that_tasks_files(lake):
    """Pruning, proven by breaking another task's files: the query must never open them."""
    fill(lake)
    for rel in list_files(lake, "steps", Selection(env="lbf", tasks=["8x8-2p-2f"])):
        _corrupt(lake, rel)
    one = Selection(env="lbf", tasks=["10x10-3p-3f"])
    assert all("10x10-3p-3f" in f for f in list_files(lake, "steps", one))
    assert read_table(lake, "steps", one).num_rows == 3 * (7 + 8 + 9 + 10)
    con = connect(lake)
    n = con.execute("select count(*) from steps where task = '10x10-3p-3f'").fetchone()[0]
    assert n == 3 * 34
    with pytest.raises(duckdb.Error):  # the unpruned query does hit the broken files
        con.execute("select count(*) from steps").fetchone()
    with pytest.raises(LakeFileError, match="8x8-2p-2f"):
        read_table(lake, "steps", Selection(env="lbf"))


def test_standard_readers_agree_without_project_code(lake):
    from deltalake import DeltaTable

    from lake_schema.maintenance import vacuum

    fill(lake)
    write_episodes(lake, LBF, "run0", 0, "low", synthetic_episodes(LBF, [7, 8, 9, 10], seed=0))
    root = lake.root
    n_polars = pl.scan_delta(f"{root}/steps/lbf").select(pl.len()).collect().item()
    ds = DeltaTable(f"{root}/steps/lbf").to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("steps", ds)
    n_duck = con.execute("select count(*) from steps").fetchone()[0]
    assert n_duck == n_polars == ds.count_rows() == 2 * 3 * 34
    high = con.execute("select count(*) from steps where quality = 'high' and "
                       "task = '10x10-3p-3f'").fetchone()[0]
    assert high == 34
    ours = connect(lake)
    assert ours.execute("select count(*) from steps").fetchone()[0] == n_duck
    assert ours.execute("select sum(length) from episodes").fetchone()[0] == n_duck
    # a plain Parquet glob also sees the replaced file until a vacuum removes it...
    glob = f"{root}/steps/lbf/task=*/**/*.parquet"  # data files, not the log's checkpoints
    plain = f"select count(*) from read_parquet('{glob}', hive_partitioning=true)"
    assert duckdb.execute(plain).fetchone()[0] == n_duck + 34
    vacuum(lake, "steps/lbf", retention_hours=0)
    # ...after which it reads exactly the current rows
    assert duckdb.execute(plain).fetchone()[0] == n_duck
    n_scan = pl.scan_parquet(glob, hive_partitioning=True).select(pl.len()).collect().item()
    assert n_scan == n_duck


BAD_WRITES = [
    ({"task": "lbf/8x8-2p-3f"}, UnknownTaskError, "did you mean"),
    ({"quality": "medium"}, LakeValueError, "quality"),
    ({"checkpoint": -1}, LakeValueError, "checkpoint"),
    ({"run": "../escape"}, LakeValueError, "run id"),
    ({"run": "run0\n"}, LakeValueError, "run id"),
    ({"run": "run0 "}, LakeValueError, "run id"),
    ({"checkpoint": 2**31}, LakeValueError, "int32"),
    ({"checkpoint": True}, LakeValueError, "checkpoint"),
]


@pytest.mark.parametrize(("change", "error", "match"), BAD_WRITES)
def test_bad_partition_values_are_refused_before_writing(lake, change, error, match):
    args = {"task": LBF, "run": "run0", "checkpoint": 0, "quality": "low"} | change
    with pytest.raises(error, match=match):
        write_episodes(lake, batch=synthetic_episodes(LBF, [4]), **args)
    assert not os.path.exists(lake.root)


def _bad(batch: EpisodeBatch, **changes) -> EpisodeBatch:
    return EpisodeBatch(**{**batch.__dict__, **changes})


def test_bad_records_are_refused_before_writing(lake):
    good = synthetic_episodes(LBF, [4, 3])
    cases = {
        "shape": _bad(good, obs=good.obs[:, :, :10]),
        "fit int8": _bad(good, obs=good.obs.astype(np.int32) + 300),
        "not legal": _bad(good, legal=np.zeros_like(good.legal)),
        "last step": _bad(good, terminated=np.zeros_like(good.terminated)),
        "sum to": _bad(good, lengths=np.array([4, 4])),
        "NaN": _bad(good, reward=np.full_like(good.reward, np.nan)),
        r"\[0, 6\)": _bad(good, action=good.action + 6),
    }
    for match, batch in cases.items():
        with pytest.raises(LakeValueError, match=match):
            write_episodes(lake, LBF, "run0", 0, "low", batch)
    assert not os.path.exists(lake.root)


def test_bad_references_and_evaluations_are_refused(lake):
    fill(lake, tasks=(LBF,), checkpoints=1)
    versions = table_versions(lake)
    for bad in ([float("nan")], [float("inf")]):
        with pytest.raises(LakeValueError, match="NaN or inf"):
            write_reference(lake, LBF, "run0", sable_returns=bad, random_returns=[0.0],
                            env_steps=1)
    part = {"env": "lbf", "task": "12x12-4p-5f", "model": "m1"}
    for value in (float("nan"), float("-inf")):
        with pytest.raises(LakeValueError, match="normalised_return is NaN or inf"):
            write_records(lake, "evaluations", part, [_evaluation(normalised_return=value)])
    with pytest.raises(LakeValueError, match="model id"):
        write_records(lake, "evaluations", part | {"model": "m1\n"}, [_evaluation()])
    assert table_versions(lake) == versions  # nothing written


def _evaluation(**changes) -> dict:
    return Evaluation("oryx", "test", 100, episodes=32, mean_return=0.5, std_return=0.1,
                      normalised_return=0.625, reference_return=0.8,
                      evaluated_at=dt.datetime.now(dt.UTC)).record() | changes


def _assert_steps_match_the_index(lake) -> None:
    """Every reader of steps sees exactly the steps of the episodes rows it read: per key,
    the steps rows equal the index's sum of lengths (read_table and the DuckDB views)."""
    index = read_table(lake, "episodes", Selection(env="lbf")).to_pylist()
    steps = read_table(lake, "steps", Selection(env="lbf"), ["task", "checkpoint"]).to_pylist()
    want, got = {}, {}
    for r in index:
        want[r["task"], r["checkpoint"]] = want.get((r["task"], r["checkpoint"]), 0) + r["length"]
    for r in steps:
        got[r["task"], r["checkpoint"]] = got.get((r["task"], r["checkpoint"]), 0) + 1
    assert got == want
    mixed = connect(lake).execute("""
        SELECT count(*) FROM (SELECT task, checkpoint, sum(length) AS n FROM episodes
                              GROUP BY ALL) e
        FULL JOIN (SELECT task, checkpoint, count(*) AS n FROM steps GROUP BY ALL) s
        USING (task, checkpoint) WHERE e.n IS DISTINCT FROM s.n""").fetchone()[0]
    assert mixed == 0


def test_exception_mid_write_leaves_the_old_data_whole(lake, monkeypatch):
    """The episodes commit fails after the steps commit: readers through the index keep the
    old checkpoint whole (its steps file stays until a vacuum), verify names the leftover."""
    import lake_schema.delta as delta

    fill(lake, tasks=(LBF,), checkpoints=1)
    before = read_table(lake, "episodes", Selection(env="lbf")).to_pylist()
    real = delta.replace_key
    calls = []

    def failing(lake_, tid, *a, **k):
        calls.append(tid)
        if tid == "episodes":
            raise RuntimeError("injected crash")
        return real(lake_, tid, *a, **k)

    monkeypatch.setattr(delta, "replace_key", failing)
    with pytest.raises(RuntimeError, match="injected"):
        write_episodes(lake, LBF, "run0", 0, "high", synthetic_episodes(LBF, [6]))
    monkeypatch.setattr(delta, "replace_key", real)
    assert read_table(lake, "episodes", Selection(env="lbf")).to_pylist() == before
    for row in before:
        assert os.path.exists(lake.path(row["steps_file"]))
    _assert_steps_match_the_index(lake)
    report = verify(lake)
    assert not report.ok and all("8x8-2p-2f" in p.path for p in report.problems)
    # a vacuum before the rewrite keeps the steps the index names (the steps table no
    # longer lists them: the killed write replaced them there)
    maintenance.vacuum(lake, "steps/lbf", retention_hours=0)
    _assert_steps_match_the_index(lake)
    assert read_table(lake, "steps", Selection(env="lbf")).num_rows == sum(
        r["length"] for r in before)
    # writing the key again repairs it
    write_episodes(lake, LBF, "run0", 0, "high", synthetic_episodes(LBF, [6]))
    assert verify(lake).ok


def test_killed_writer_before_its_commit_leaves_nothing_visible(lake):
    """A real SIGKILL of a writer process after its steps file is written, before the commit."""
    fill(lake, tasks=(LBF,), checkpoints=1)
    versions = table_versions(lake)
    script = textwrap.dedent(f"""
        import os, signal
        import deltalake
        import lake_schema.delta as delta
        from lake_schema.storage import Lake
        from lake_schema.testing import synthetic_episodes
        from lake_schema.writer import write_episodes
        real = delta.write_deltalake
        def write_then_die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        delta.write_deltalake = write_then_die
        write_episodes(Lake({lake.root!r}), {LBF!r}, "run0", 1, "high",
                       synthetic_episodes({LBF!r}, [6]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode == -9, proc.stderr
    assert table_versions(lake) == versions
    con = connect(lake)
    assert con.execute("select count(*) from steps").fetchone()[0] == 34
    assert read_table(lake, "episodes", Selection(env="lbf", checkpoints=(1, 1))).num_rows == 0
    assert verify(lake).ok


def test_versions_history_and_as_of(lake):
    write_episodes(lake, LBF, "run0", 0, "low", synthetic_episodes(LBF, [5, 5], seed=1))
    first = table_versions(lake)
    assert set(first) == {"steps/lbf", "episodes", "cards"}
    write_episodes(lake, LBF, "run0", 0, "low", synthetic_episodes(LBF, [3], seed=2))
    now = table_versions(lake)
    assert now["episodes"] == first["episodes"] + 1
    assert read_table(lake, "episodes", Selection(env="lbf"))["length"].to_pylist() == [3]
    old = read_table(lake, "episodes", Selection(env="lbf", as_of=first))
    assert old["length"].to_pylist() == [5, 5]
    old_steps = read_table(lake, "steps", Selection(env="lbf", as_of=first))
    assert old_steps.num_rows == 10
    snap = snapshot(lake, "episodes", Selection(env="lbf", as_of=first["episodes"]))
    assert snap.versions == {"episodes": first["episodes"]}
    assert connect(lake, as_of=first).execute(
        "select count(*) from steps").fetchone()[0] == 10
    with pytest.raises(LakeValueError, match="version 99"):
        read_table(lake, "episodes", Selection(as_of={"episodes": 99}))


def test_concurrent_evaluations_of_one_model_keep_every_row(lake):
    part = {"env": "lbf", "task": "12x12-4p-5f", "model": "m1"}
    write_records(lake, "evaluations", part, [_evaluation(update=1)], replace_rows={"update": 1})
    write_records(lake, "evaluations", part, [_evaluation(update=2)], replace_rows={"update": 2})
    write_records(lake, "evaluations", part, [_evaluation(update=2, mean_return=0.7)],
                  replace_rows={"update": 2})
    rows = sorted(read_table(lake, "evaluations").to_pylist(), key=lambda r: r["update"])
    assert [(r["update"], r["mean_return"]) for r in rows] == [(1, 0.5), (2, 0.7)]


@pytest.mark.parametrize("hostile", ["x' OR '1'='1", "it's", "a\"b", "' OR true --"])
def test_a_hostile_replace_rows_value_is_one_string_not_predicate_text(lake, hostile):
    """A quote in a replace_rows value must neither widen the predicate (`x' OR '1'='1`
    once replaced every evaluation row of the lake) nor break it (`it's` raised a raw
    DeltaError): the value is one string, so only rows holding it are replaced."""
    part = {"env": "lbf", "task": "12x12-4p-5f", "model": "m1"}
    for update in (1, 2, 3):
        write_records(lake, "evaluations", part, [_evaluation(update=update)],
                      replace_rows={"update": update})
    for mean in (0.6, 0.7):  # written twice: the second replaces the first, nothing else
        write_records(lake, "evaluations", part, [_evaluation(config=hostile, mean_return=mean)],
                      replace_rows={"config": hostile})
    rows = read_table(lake, "evaluations").to_pylist()
    assert sorted((r["config"], r["mean_return"]) for r in rows) == sorted(
        [("{}", 0.5)] * 3 + [(hostile, 0.7)])


def test_a_predicate_value_of_another_type_is_refused(lake):
    part = {"env": "lbf", "task": "12x12-4p-5f", "model": "m1"}
    with pytest.raises(LakeValueError, match=r"cannot replace rows by update=1\.5"):
        write_records(lake, "evaluations", part, [_evaluation(update=1)],
                      replace_rows={"update": 1.5})
    assert not delta.is_table(lake, "evaluations")  # refused before anything was written


def test_unknown_schema_version_is_refused_naming_the_table(lake):
    from deltalake import DeltaTable

    fill(lake, tasks=(LBF,), checkpoints=1)
    dt = DeltaTable(lake.path("episodes"))
    dt.alter.set_table_description('{"sable_lake.schema_version": "99", '
                                   '"sable_lake.table": "episodes"}')
    with pytest.raises(LakeFileError, match=r"episodes.*schema version 99"):
        read_table(lake, "episodes")
    with pytest.raises(LakeFileError, match=r"episodes.*schema version 99"):
        connect(lake)
    assert not verify(lake).ok


def test_a_missing_root_or_a_file_root_is_an_error_for_readers(tmp_path):
    from lake_schema.errors import LakeRootError
    from lake_schema.storage import Lake

    with pytest.raises(LakeRootError, match="does not exist"):
        read_table(Lake(tmp_path / "nowhere"), "episodes")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LakeRootError, match="not a directory"):
        connect(Lake(tmp_path / "afile"))
    with pytest.raises(LakeRootError, match="not a directory"):
        write_episodes(Lake(tmp_path / "afile"), LBF, "r", 0, "low",
                       synthetic_episodes(LBF, [3]))


def test_write_atomic_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    from lake_schema.storage import write_atomic

    path = tmp_path / "meta.json"
    write_atomic(path, "old")
    write_atomic(path, b"new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["meta.json"]
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "meta.json", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def _append_to_log(lake, tid: str, path: str, partition: dict[str, str], size: int) -> None:
    """Commit an `add` action by hand, as a crafted or foreign Delta log would hold it."""
    import json

    log = Path(lake.path(f"{tid}/_delta_log"))
    version = max(int(p.stem) for p in log.glob("*.json")) + 1
    add = {"path": path, "partitionValues": partition, "size": size,
           "modificationTime": 0, "dataChange": True}
    (log / f"{version:020d}.json").write_text(json.dumps({"add": add}) + "\n")


def test_a_log_entry_outside_its_table_is_refused_by_every_reader(lake, tmp_path):
    """`../../victim/...` in the log once made read_table and the views return another
    folder's rows as the lake's."""
    fill(lake, tasks=(LBF,), checkpoints=1)
    mine = list_files(lake, "episodes")[0]
    victim = tmp_path / "victim" / "x.parquet"
    victim.parent.mkdir()
    victim.write_bytes(Path(lake.path(mine)).read_bytes())
    rel = os.path.relpath(victim, lake.path("episodes"))
    _append_to_log(lake, "episodes", rel, parse_partition(mine), victim.stat().st_size)
    for read in (lambda: read_table(lake, "episodes"), lambda: connect(lake),
                 lambda: read_table(lake, "steps", Selection(env="lbf"))):
        with pytest.raises(LakeFileError, match="outside its table"):
            read()


@pytest.mark.parametrize("entry, named", [
    ("x.parquet", "episodes/x.parquet: its folders hold no partition values"),
    ("env=lbf/task=8x8-2p-2f/run=run0/quality=low/checkpoint=2147483648/x.parquet",
     "episodes: unreadable Delta log .*verify. names the entry"),
])
def test_a_crafted_log_entry_is_one_named_error_for_every_reader(lake, entry, named):
    """A file without hive folders raised ArrowInvalid from read_table and a DuckDB binder
    error from connect(); a checkpoint beyond int32 is refused by delta-rs for the whole
    table, which readers name (verify names the entry itself)."""
    fill(lake, tasks=(LBF,), checkpoints=1)
    mine = list_files(lake, "episodes")[0]
    Path(lake.path(f"episodes/{entry}")).parent.mkdir(parents=True, exist_ok=True)
    Path(lake.path(f"episodes/{entry}")).write_bytes(Path(lake.path(mine)).read_bytes())
    values = parse_partition(mine)
    values.update(parse_partition(f"episodes/{entry}"))
    _append_to_log(lake, "episodes", entry, values, 1000)
    for read in (lambda: read_table(lake, "episodes"), lambda: connect(lake),
                 lambda: read_table(lake, "steps", Selection(env="lbf"))):
        with pytest.raises(LakeFileError, match=named):
            read()


def test_a_missing_steps_file_fails_only_the_queries_that_read_it(lake):
    """One missing steps file once made every DuckDB query fail, even of episodes only."""
    fill(lake, tasks=(LBF,), checkpoints=2)
    victim = list_files(lake, "steps", Selection(env="lbf"))[0]
    os.remove(lake.path(victim))
    con = connect(lake)
    assert con.execute("SELECT count(*) FROM episodes").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM evaluations").fetchone()[0] == 0
    with pytest.raises(duckdb.Error, match=re.escape(victim) + ".*missing"):
        con.execute("SELECT count(*) FROM steps").fetchone()
    with pytest.raises(LakeFileError, match="missing"):
        read_table(lake, "steps", Selection(env="lbf"))
