"""`verify` on crafted lakes: Delta logs edited by hand (a commit file appended with an `add`
action, as anyone with write access to the folder can do) name every problem, never raise,
and never say ok; and what verify prints stays one line per problem."""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake_schema import delta
from lake_schema.cli import main
from lake_schema.delta import DataFile
from lake_schema.reader import read_table
from lake_schema.testing import add_evaluation_updates, synthetic_episodes
from lake_schema.verify import Problem, printable, verify
from lake_schema.writer import write_episodes, write_reference

LBF = "lbf/8x8-2p-2f"
KEY0 = "env=lbf/task=8x8-2p-2f/run=run0/quality=low/checkpoint=0"
OUTSIDE = r"outside (the|its) table"


@pytest.fixture
def small(lake):
    """Two checkpoints of one task, a reference and two evaluations of one model and task
    (one file: a write rewrites its key)."""
    for ck in range(2):
        write_episodes(lake, LBF, "run0", ck, "low", synthetic_episodes(LBF, [5, 6], seed=ck))
    write_reference(lake, LBF, "run0", sable_returns=[0.9], random_returns=[0.1], env_steps=5)
    add_evaluation_updates(lake, "m1", updates=2)
    assert verify(lake, deep=True).ok
    return lake


def table_files(lake, tid: str) -> list[DataFile]:
    return delta.data_files(delta.open_table(lake, tid), tid)


def append_commit(lake, tid: str, *actions: dict) -> str:
    """Append a hand-written commit to the table's Delta log; returns its root-relative path."""
    log = lake.path(f"{tid}/_delta_log")
    version = max(int(n[:20]) for n in os.listdir(log) if n[:20].isdigit()) + 1
    rel = f"{tid}/_delta_log/{version:020d}.json"
    with open(lake.path(rel), "w") as f:
        f.writelines(json.dumps(a) + "\n" for a in actions)
    return rel


def add(path: str, partition: dict[str, str], size: int = 1000, rows: int | None = None) -> dict:
    body = {"path": path, "partitionValues": partition, "size": size,
            "modificationTime": int(time.time() * 1000), "dataChange": True}
    if rows is not None:
        body["stats"] = json.dumps({"numRecords": rows})
    return {"add": body}


def partition_of(inner: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in inner.split("/")[:-1])


def copy_file(lake, src: str, dst: str) -> int:
    """Copy a lake file (root-relative paths, `dst` may leave the lake); returns its size."""
    target = dst if os.path.isabs(dst) else lake.path(dst)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(lake.path(src), target)
    return os.path.getsize(target)


def by_path(report) -> dict[str, str]:
    return {p.path: p.reason for p in report.problems}


# ---------------------------------------------------------------- 1: repeated row keys


@pytest.mark.parametrize("tid", ["episodes", "steps/lbf", "evaluations", "references", "cards"])
def test_a_second_log_listed_file_of_a_key_is_named(small, tid):
    lake = small
    original = table_files(lake, tid)[0]
    inner = original.rel[len(tid) + 1:]
    copy = inner.replace(".parquet", "-copy.parquet")
    size = copy_file(lake, original.rel, f"{tid}/{copy}")
    append_commit(lake, tid, add(copy, {k: v for k, v in original.partition.items()
                                        if not (tid.startswith("steps/") and k == "env")},
                                 size, original.rows))
    if tid == "episodes":  # what readers see: every row of the key twice
        assert read_table(lake, "episodes").num_rows == 4 + 2

    report = verify(lake)
    assert not report.ok
    repeated = [p for p in report.problems if "more than once" in p.reason]
    assert len(repeated) == 1, report.problems
    problem = repeated[0]
    assert f"{tid}/{copy}" in problem.reason and original.rel in problem.reason
    assert "/task=" in problem.path and problem.path.startswith(f"{tid}/")


def test_two_files_of_one_evaluations_key_with_other_updates_are_fine(small):
    """A lake written before each write rewrote its key (or by another Delta writer) holds
    several evaluations files of one key; rows of other updates are no duplicates."""
    from deltalake import write_deltalake

    rel = table_files(small, "evaluations")[0].rel
    other = pq.read_table(small.path(rel)).slice(0, 1)
    other = other.set_column(other.schema.get_field_index("update"), "update",
                             pa.array([99], pa.int64()))
    for k, v in {"env": "lbf", "task": "12x12-4p-5f", "model": "m1"}.items():
        other = other.append_column(k, pa.array([v]))
    write_deltalake(small.path("evaluations"), other.cast(
        delta.delta_schema(delta.spec_of("evaluations"))), mode="append")
    assert len(table_files(small, "evaluations")) == 2
    assert not [p for p in verify(small).problems if "more than once" in p.reason]


# ---------------------------------------------------------------- 2: no hive folders


@pytest.mark.parametrize("values", ["from the log", "none"])
def test_a_log_listed_file_without_hive_folders_is_named(small, values):
    lake = small
    original = table_files(lake, "episodes")[0]
    size = copy_file(lake, original.rel, "episodes/x.parquet")
    partition = original.partition if values == "from the log" else {}
    append_commit(lake, "episodes", add("x.parquet", partition, size, original.rows))

    report = verify(lake)
    assert "episodes/x.parquet" in by_path(report)
    assert not report.ok


# ---------------------------------------------------------------- 3: a value beyond int32


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_a_checkpoint_beyond_int32_names_its_file_and_log_entry(small, with_checkpoint):
    lake = small
    files = table_files(lake, "episodes")
    if with_checkpoint:  # replaying starts at a Delta checkpoint, whose tombstones are history
        write_episodes(lake, LBF, "run0", 1, "low", synthetic_episodes(LBF, [4], seed=9))
        dt = delta.open_table(lake, "episodes")
        dt.create_checkpoint()
        for version in range(dt.version() + 1):  # the commits it holds, cleaned up
            os.remove(lake.path(f"episodes/_delta_log/{version:020d}.json"))
        files = table_files(lake, "episodes")
    bad = KEY0.replace("checkpoint=0", "checkpoint=2147483648") + "/part-0.parquet"
    size = copy_file(lake, files[0].rel, f"episodes/{bad}")
    commit = append_commit(lake, "episodes", add(bad, partition_of(bad), size, 2))
    with open(lake.path(files[1].rel), "wb") as f:  # the rest of the table is still checked
        f.write(b"junk")

    report = verify(lake)
    reasons = by_path(report)
    assert "2147483648" in reasons[f"episodes/{bad}"] and commit in reasons[f"episodes/{bad}"]
    assert "not a readable Parquet" in reasons[files[1].rel]
    assert "episodes" in reasons  # every reader of the table fails: the table is named too
    assert not any(p.leftover for p in report.problems), report.problems


def test_a_damaged_commit_names_the_commit_and_checks_the_rest(small):
    lake = small
    commit = append_commit(lake, "episodes", {"commitInfo": {}})
    with open(lake.path(commit), "a") as f:
        f.write("{not json\n")
    report = verify(lake)
    reasons = by_path(report)
    assert "not JSON" in reasons[commit] and "episodes" in reasons
    assert report.files == 2 + 2 + 2 + 1 + 1  # steps, episodes, cards, references, evaluations


def test_any_error_from_the_listing_is_a_problem_and_the_table_is_replayed(small, monkeypatch):
    """Whatever `delta.data_files` raises, verify names the table and still checks its files
    (from its own replay of the log)."""
    lake = small
    real = delta.data_files

    def overflowing(dt, tid):
        if tid == "episodes":
            raise OverflowError("value too large")
        return real(dt, tid)

    monkeypatch.setattr(delta, "data_files", overflowing)
    report = verify(lake)
    reasons = by_path(report)
    assert list(reasons) == ["episodes"] and "OverflowError" in reasons["episodes"]
    assert report.files == 8 and report.rows > 0


# ---------------------------------------------------------------- 4: one line per problem


def test_a_newline_in_a_crafted_partition_value_stays_on_one_line(small, capsys):
    lake = small
    original = table_files(lake, "episodes")[0]
    crafted = KEY0.replace("run=run0", "run=ru\nn0\u2028x") + "/part-0.parquet"
    size = copy_file(lake, original.rel, f"episodes/{crafted}")
    append_commit(lake, "episodes", add(crafted, partition_of(crafted), size, 2))

    report = verify(lake)
    assert f"episodes/{crafted}" in by_path(report)
    for p in report.problems:
        assert len(str(p).splitlines()) == 1, str(p)
    assert main(["--lake", lake.root, "verify"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith(("BAD ", "verified ")) for line in lines), lines
    assert any("run=ru\\nn0\\u2028x" in line for line in lines), lines


def test_printable_escapes_control_characters_only():
    assert printable("a\nb\r\tc\x00\x85\u2028\u202e é/x=1") == (
        "a\\nb\\r\\tc\\x00\\x85\\u2028\\u202e é/x=1")
    assert str(Problem("p\nq", "r\ns")) == "p\\nq: r\\ns"


# ---------------------------------------------------------------- 5: paths outside the table


@pytest.mark.parametrize("where", ["relative", "absolute", "uri"])
def test_a_data_path_outside_the_table_is_named_and_never_opened(small, tmp_path, where,
                                                                 monkeypatch):
    lake = small
    original = table_files(lake, "episodes")[0]
    victim = tmp_path / "victim" / KEY0 / "x.parquet"
    copy_file(lake, original.rel, str(victim))
    path = {"relative": f"../../victim/{KEY0}/x.parquet", "absolute": str(victim),
            "uri": f"file://{victim}"}[where]
    if where == "relative":
        assert os.path.normpath(os.path.join(lake.path("episodes"), path)) == str(victim)
    append_commit(lake, "episodes", add(path, partition_of(f"{KEY0}/x.parquet"), 100, 2))
    opened = []
    real_open = lake.fs.open

    def spy(p, *a, **k):
        opened.append(str(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr(lake.fs, "open", spy)
    report = verify(lake)
    outside = [p for p in report.problems if path in p.path]
    assert len(outside) == 1 and re.search(OUTSIDE, outside[0].reason), report.problems
    assert not [p for p in opened if "victim" in p], opened
    assert report.files == 8 + 1  # the table's other files are still checked
