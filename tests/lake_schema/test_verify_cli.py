"""`verify` names every bad file; the CLI answers ls/du/query/verify and refuses bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake_schema.cli import main
from lake_schema.reader import LakeFileError, Selection, list_files, read_table
from lake_schema.testing import add_evaluation_updates, synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import write_episodes, write_reference

LBF = "lbf/8x8-2p-2f"


@pytest.fixture
def filled(lake):
    for ck in range(2):
        for task in (LBF, "lbf/10x10-3p-3f"):
            write_episodes(lake, task, "run0", ck, "low", synthetic_episodes(task, [5, 6], seed=ck))
    write_reference(lake, LBF, "run0", sable_returns=[0.9], random_returns=[0.1], env_steps=5)
    return lake


def test_verify_names_every_bad_file(filled):
    lake = filled
    assert verify(lake, deep=True).ok
    steps = list_files(lake, "steps", Selection(env="lbf"))
    episodes = list_files(lake, "episodes")
    # truncated
    with open(lake.path(steps[0]), "r+b") as f:
        f.truncate(os.path.getsize(lake.path(steps[0])) // 2)
    # not Parquet at all
    with open(lake.path(steps[1]), "wb") as f:
        f.write(b"this is not a parquet file")
    # wrong columns
    t = pq.read_table(lake.path(episodes[1]))
    pq.write_table(t.drop_columns(["length"]), lake.path(episodes[1]))
    # gone
    os.remove(lake.path(episodes[2]))
    # a foreign file dropped into a table, and a partition folder the catalogue rejects
    stray = "steps/lbf/task=8x8-2p-2f/run=run0/notes/x.parquet"
    os.makedirs(os.path.dirname(lake.path(stray)), exist_ok=True)
    pq.write_table(pa.table({"x": [1]}), lake.path(stray))
    bogus = "references/env=lbf/task=9x9-1p-1f/run=run0/part-0.parquet"
    os.makedirs(os.path.dirname(lake.path(bogus)))
    pq.write_table(pa.table({"x": [1]}), lake.path(bogus))
    os.makedirs(lake.path("steps/env=lbf"))  # the layout before Delta: not a table now

    report = verify(lake)
    reasons = {p.path: p.reason for p in report.problems}
    assert "not a readable Parquet" in reasons[steps[0]]
    assert "not a readable Parquet" in reasons[steps[1]]
    assert "wrong columns" in reasons[episodes[1]] and "length" in reasons[episodes[1]]
    assert "missing" in reasons[episodes[2]]
    assert "not in the Delta log" in reasons[stray]
    assert "not in the Delta log" in reasons[bogus]
    assert "not a steps table" in reasons["steps/env=lbf"]
    assert len(reasons) == 7, reasons


def test_verify_names_unknown_partition_values_and_cross_table_orphans(filled):
    from deltalake import write_deltalake

    from lake_schema.delta import delta_schema, spec_of

    lake = filled
    # a writer that bypasses lake_schema puts an unknown quality tag into the steps table
    rel = list_files(lake, "steps", Selection(env="lbf", tasks=["8x8-2p-2f"]))[0]
    t = pq.read_table(lake.path(rel))
    for k, v in {"task": "8x8-2p-2f", "run": "run0", "quality": "medium"}.items():
        t = t.append_column(k, pa.array([v] * len(t)))
    t = t.append_column("checkpoint", pa.array([7] * len(t), pa.int32()))
    write_deltalake(lake.path("steps/lbf"), t.cast(delta_schema(spec_of("steps/lbf"))),
                    mode="append")
    report = verify(lake)
    reasons = {p.path: p.reason for p in report.problems}
    medium = [p for p in reasons if "quality=medium" in p]
    assert len(medium) == 1 and "bad quality tag 'medium'" in reasons[medium[0]]
    # readers see the steps the episodes index lists, never the unindexed file
    assert "medium" not in read_table(lake, "steps", Selection(env="lbf"))["quality"].to_pylist()
    # the valid part of the lake is still readable
    assert read_table(lake, "steps", Selection(env="lbf", quality="low")).num_rows == 44


def test_deep_verify_reads_data_pages(filled):
    lake = filled
    rel = list_files(lake, "steps", Selection(env="lbf"))[0]
    path = lake.path(rel)
    data = bytearray(Path(path).read_bytes())
    meta = pq.ParquetFile(path).metadata
    col = meta.row_group(0).column(3)  # obs: the largest column chunk
    start = col.data_page_offset
    for i in range(start + 20, start + col.total_compressed_size - 20):
        data[i] ^= 0xFF  # scramble the compressed page, keep the footer intact
    Path(path).write_bytes(bytes(data))
    assert verify(lake).ok  # footers are fine
    deep = verify(lake, deep=True)
    assert [p.path for p in deep.problems] == [rel]
    assert "corrupted data pages" in deep.problems[0].reason
    with pytest.raises(LakeFileError, match=rel.replace("/", ".")):
        read_table(lake, "steps", Selection(env="lbf"))


def run_cli(lake, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lake_schema", "--lake", lake.root, *args],
        capture_output=True, text=True,
    )


def test_cli_ls_du_query_verify(filled, capsys):
    lake = filled
    assert main(["--lake", lake.root, "ls"]) == 0
    out = capsys.readouterr().out
    assert "steps" in out and "8x8-2p-2f" in out and "10x10-3p-3f" in out
    assert main(["--lake", lake.root, "ls", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out.splitlines()[-1])
    steps_8x8 = next(r for r in rows if r["table"] == "steps" and r["task"] == "8x8-2p-2f")
    assert steps_8x8["files"] == 2 and steps_8x8["rows"] == 22

    assert main(["--lake", lake.root, "du"]) == 0
    assert "total" in capsys.readouterr().out

    assert main(["--lake", lake.root, "query", "--format", "csv",
                 "select task, count(*) as n from episodes group by task order by task"]) == 0
    assert capsys.readouterr().out.splitlines() == ["task,n", "10x10-3p-3f,4", "8x8-2p-2f,4"]
    assert main(["--lake", lake.root, "query", "--format", "json",
                 'select sable_return from "references"']) == 0
    assert json.loads(capsys.readouterr().out) == [{"sable_return": 0.9}]
    assert main(["--lake", lake.root, "query", "select count(*) as n from steps"]) == 0
    assert "44" in capsys.readouterr().out
    # a typo: DuckDB's whole message on one line, its hint included
    assert main(["--lake", lake.root, "query", "select retrun from episodes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "retrun" in err[0] and 'Candidate bindings: "return"' in err[0], err

    # 4 checkpoints: a steps file, an episodes file and a card each, plus 1 references file
    proc = run_cli(lake, "verify")
    assert proc.returncode == 0 and "verified 13 files" in proc.stdout

    proc = run_cli(lake, "history", "episodes")
    assert proc.returncode == 0 and "WRITE" in proc.stdout, proc.stderr
    assert main(["--lake", lake.root, "versions", "--format", "json"]) == 0
    versions = dict((r["table"], r["version"]) for r in json.loads(capsys.readouterr().out))
    assert versions == {"steps/lbf": 4, "episodes": 4, "cards": 4, "references": 1}

    bad = list_files(lake, "episodes")[0]
    Path(lake.path(bad)).write_bytes(b"junk")
    proc = run_cli(lake, "verify")
    assert proc.returncode == 1 and f"BAD {bad}" in proc.stdout
    for args in (["ls"], ["du"], ["query", "select count(*) from episodes"]):
        proc = run_cli(lake, *args)
        if args[0] != "query":
            assert proc.returncode == 0, proc.stderr  # ls and du read only the Delta log
            continue
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_maintenance_optimize_vacuum(filled, capsys):
    lake = filled
    add_evaluation_updates(lake, "m1")  # three writes, each rewriting the key as one file
    assert len(list_files(lake, "evaluations")) == 1
    # a writer killed mid-file leaves the object store's staging file beside the table
    live = lake.path(list_files(lake, "evaluations")[0])
    staging = Path(live).with_name(Path(live).name + "#1")
    staging.write_bytes(b"half a file")
    assert any("#1" in p.path for p in verify(lake).problems)
    assert main(["--lake", lake.root, "optimize", "evaluations"]) == 0
    assert len(list_files(lake, "evaluations")) == 1
    assert main(["--lake", lake.root, "vacuum", "--retention-hours", "0"]) == 0
    out = capsys.readouterr().out
    assert "evaluations" in out
    assert verify(lake, deep=True).ok
    assert read_table(lake, "evaluations").num_rows == 3
    assert sum(1 for p in Path(lake.path("evaluations")).rglob("*.parquet")) == 1
    assert not staging.exists()


def test_cli_bad_data_and_bad_roots_exit_1_with_one_line(tmp_path, filled):
    (tmp_path / "afile").write_text("x")
    cases = [
        ([str(tmp_path / "nowhere"), "ls"], "does not exist"),
        ([str(tmp_path / "afile"), "verify"], "not a directory"),
        ([str(tmp_path / "nowhere"), "query", "select 1"], "does not exist"),
        ([filled.root, "history", "evaluations"], "no table evaluations"),
    ]
    for (root, *args), message in cases:
        proc = subprocess.run([sys.executable, "-m", "lake_schema", "--lake", root, *args],
                              capture_output=True, text=True)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "invalid choice"),
        (["query"], "the following arguments are required: sql"),
        (["query", "select * from nowhere"], "query failed"),
        (["ls", "--format", "xml"], "invalid choice"),
        (["tasks", "--env", "lbff"], "unknown environment 'lbff'"),
        (["tasks", "--env", "lbf", "--split", "tset"], "unknown split of lbf 'tset'"),
        (["tasks", "--split", "test"], "--split needs --env"),
        (["--lake", "ftp://x", "ls"], "bad lake root"),
        (["history", "steps"], "one table per env"),
        (["history", "stepz"], "unknown table"),
        (["vacuum", "--retention-hours", "-1"], "retention"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(lake, args, message):
    write_reference(lake, LBF, "run0", sable_returns=[0.9], random_returns=[0.1], env_steps=5)
    proc = subprocess.run([sys.executable, "-m", "lake_schema", "--lake", lake.root, *args]
                          if args[0] != "--lake" else [sys.executable, "-m", "lake_schema", *args],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_cli_tasks_lists_the_catalogue(capsys):
    assert main(["tasks", "--env", "rware", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 22 and any("project" in r["note"] for r in rows)


def test_cli_tasks_names_a_splits_partitions(capsys):
    assert main(["tasks", "--env", "lbf", "--split", "demo-train", "--names"]) == 0
    assert capsys.readouterr().out.strip() == "lbf/8x8-2p-2f,lbf/10x10-3p-3f,lbf/15x15-3p-5f"
