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
from lake_schema.reader import list_files
from lake_schema.synthetic import synthetic_episodes
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
    steps = list_files(lake, "steps")
    episodes = list_files(lake, "episodes")
    # truncated
    with open(lake.path(steps[0]), "r+b") as f:
        f.truncate(os.path.getsize(lake.path(steps[0])) // 2)
    # not Parquet at all
    with open(lake.path(steps[1]), "wb") as f:
        f.write(b"this is not a parquet file")
    # wrong schema version
    t = pq.read_table(lake.path(episodes[0]))
    meta = dict(t.schema.metadata) | {b"sable_lake.schema_version": b"7"}
    pq.write_table(t.replace_schema_metadata(meta), lake.path(episodes[0]))
    # wrong columns (right metadata)
    t = pq.read_table(lake.path(episodes[1]))
    pq.write_table(t.drop_columns(["length"]).replace_schema_metadata(t.schema.metadata),
                   lake.path(episodes[1]))
    # a foreign file dropped into a table, and a partition value the catalogue rejects
    os.makedirs(lake.path("steps/env=lbf/task=8x8-2p-2f/run=run0/notes"), exist_ok=True)
    pq.write_table(pa.table({"x": [1]}),
                   lake.path("steps/env=lbf/task=8x8-2p-2f/run=run0/notes/x.parquet"))
    bogus = lake.path("references/env=lbf/task=9x9-1p-1f/run=run0/data.parquet")
    os.makedirs(os.path.dirname(bogus))
    pq.write_table(pa.table({"x": [1]}), bogus)

    report = verify(lake)
    reasons = {p.path: p.reason for p in report.problems}
    assert len(reasons) == 6, reasons
    assert "not a readable Parquet" in reasons[steps[0]]
    assert "not a readable Parquet" in reasons[steps[1]]
    assert "schema version 7" in reasons[episodes[0]]
    assert "wrong columns" in reasons[episodes[1]] and "length" in reasons[episodes[1]]
    assert "foreign file" in reasons["steps/env=lbf/task=8x8-2p-2f/run=run0/notes/x.parquet"]
    assert "unknown task" in reasons["references/env=lbf/task=9x9-1p-1f/run=run0/data.parquet"]


def test_deep_verify_reads_data_pages(filled):
    lake = filled
    rel = list_files(lake, "steps")[0]
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


def run_cli(lake, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lake_schema", "--root", lake.root, *args],
        capture_output=True, text=True,
    )


def test_cli_ls_du_query_verify(filled, capsys):
    lake = filled
    assert main(["--root", lake.root, "ls"]) == 0
    out = capsys.readouterr().out
    assert "steps" in out and "8x8-2p-2f" in out and "10x10-3p-3f" in out
    assert main(["--root", lake.root, "ls", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out.splitlines()[-1])
    steps_8x8 = next(r for r in rows if r["table"] == "steps" and r["task"] == "8x8-2p-2f")
    assert steps_8x8["files"] == 2 and steps_8x8["rows"] == 22

    assert main(["--root", lake.root, "du"]) == 0
    assert "total" in capsys.readouterr().out

    assert main(["--root", lake.root, "query", "--format", "csv",
                 "select task, count(*) as n from episodes group by task order by task"]) == 0
    assert capsys.readouterr().out.splitlines() == ["task,n", "10x10-3p-3f,4", "8x8-2p-2f,4"]
    assert main(["--root", lake.root, "query", "--format", "json",
                 'select sable_return from "references"']) == 0
    assert json.loads(capsys.readouterr().out) == [{"sable_return": 0.9}]
    assert main(["--root", lake.root, "query", "select count(*) as n from steps"]) == 0
    assert "44" in capsys.readouterr().out

    proc = run_cli(lake, "verify")
    assert proc.returncode == 0 and "verified 9 files" in proc.stdout
    bad = list_files(lake, "episodes")[0]
    Path(lake.path(bad)).write_bytes(b"junk")
    proc = run_cli(lake, "verify")
    assert proc.returncode == 1 and f"BAD {bad}" in proc.stdout


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
        (["--root", "ftp://x", "ls"], "bad lake root"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(lake, args, message):
    proc = subprocess.run([sys.executable, "-m", "lake_schema", "--root", lake.root, *args]
                          if args[0] != "--root" else [sys.executable, "-m", "lake_schema", *args],
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
