"""`migrate`: a lake of the pre-Delta layout becomes Delta tables with the same rows, or is
refused, changing nothing, with what to do."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake_schema.cli import main
from lake_schema.errors import LegacyLakeError
from lake_schema.reader import Selection, read_table
from lake_schema.schema import EVALUATIONS_SCHEMA, REFERENCES_SCHEMA, table_spec
from lake_schema.synthetic import synthetic_episodes
from lake_schema.verify import verify

LBF = "lbf/8x8-2p-2f"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _old_file(lake, rel: str, table: str, data: pa.Table) -> None:
    """A file as the pre-Delta writer left it: data.parquet with the version in its footer."""
    meta = {b"sable_lake.schema_version": b"1", b"sable_lake.table": table.encode()}
    os.makedirs(os.path.dirname(lake.path(rel)), exist_ok=True)
    pq.write_table(data.replace_schema_metadata(meta), lake.path(rel), compression="zstd")


def old_lake(lake) -> dict:
    """Two checkpoints, a reference and an evaluation in the old layout; returns lengths."""
    from lake_schema.writer import _nested

    lengths = {}
    for ck in range(2):
        b = synthetic_episodes(LBF, [4 + ck, 6], seed=ck)
        s, n = b.num_steps, 2
        key = f"env=lbf/task=8x8-2p-2f/run=run0/quality=low/checkpoint={ck}"
        starts = [0, int(b.lengths[0])]
        steps = pa.table({
            "episode": [0] * int(b.lengths[0]) + [1] * int(b.lengths[1]),
            "step": list(range(int(b.lengths[0]))) + list(range(int(b.lengths[1]))),
            "num_agents": [n] * s, "obs": _nested(b.obs, s, n, 75),
            "action": b.action.reshape(s, n).tolist(), "legal": _nested(b.legal, s, n, 6),
            "reward": b.reward, "terminated": b.terminated, "truncated": b.truncated,
        }).cast(table_spec("steps", "lbf").schema)
        _old_file(lake, f"steps/{key}/data.parquet", "steps", steps)
        episodes = pa.table({
            "episode": [0, 1], "length": b.lengths.astype("int32"),
            "return": b.episode_returns(), "num_agents": [n, n], "terminated": [True, True],
            "truncated": [False, False], "env_steps": [ck, ck],
            "steps_file": [f"steps/{key}/data.parquet"] * 2, "first_row": starts,
            "recorded_at": [NOW] * 2,
        }).cast(table_spec("episodes").schema)
        _old_file(lake, f"episodes/{key}/data.parquet", "episodes", episodes)
        lengths[ck] = b.lengths.tolist()
    ref = pa.Table.from_pylist([{
        "sable_return": 0.9, "sable_return_std": 0.0, "sable_episodes": 1,
        "random_return": 0.1, "random_return_std": 0.0, "random_episodes": 1,
        "env_steps": 5, "recorded_at": NOW}], schema=REFERENCES_SCHEMA)
    _old_file(lake, "references/env=lbf/task=8x8-2p-2f/run=run0/data.parquet", "references",
              ref)
    old_eval = pa.schema([f for f in EVALUATIONS_SCHEMA if f.name != "data_versions"])
    ev = pa.Table.from_pylist([{
        "algorithm": "bc", "split": "test", "update": 3, "episodes": 2, "mean_return": 0.5,
        "std_return": 0.0, "normalised_return": 0.6, "reference_return": 0.9, "config": "{}",
        "evaluated_at": NOW}], schema=old_eval)
    _old_file(lake, "evaluations/env=lbf/task=12x12-4p-5f/model=m1/data.parquet",
              "evaluations", ev)
    return lengths


def test_an_old_lake_is_refused_by_readers_and_converted_by_migrate(lake, capsys):
    lengths = old_lake(lake)
    with pytest.raises(LegacyLakeError, match="migrate"):
        read_table(lake, "episodes")
    assert main(["--root", lake.root, "migrate"]) == 0
    assert "done" in capsys.readouterr().out
    eps = read_table(lake, "episodes", Selection(env="lbf"))
    assert sorted(zip(eps["checkpoint"].to_pylist(), eps["length"].to_pylist(),
                      strict=True)) == sorted((ck, n) for ck, ls in lengths.items() for n in ls)
    assert read_table(lake, "steps", Selection(env="lbf")).num_rows == sum(
        sum(v) for v in lengths.values())
    assert read_table(lake, "references")["sable_return"].to_pylist() == [0.9]
    assert read_table(lake, "evaluations")["update"].to_pylist() == [3]
    report = verify(lake, deep=True)
    assert report.ok, report.problems
    assert not os.path.exists(lake.path("_pre_delta"))
    assert main(["--root", lake.root, "migrate"]) == 0  # again: nothing to do
    assert "nothing to migrate" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["journal", "bad file"])
def test_migrate_refuses_saying_how_and_changes_nothing(lake, capsys, damage):
    old_lake(lake)
    if damage == "journal":
        os.makedirs(lake.path("_journal"))
        Path(lake.path("_journal/x.json")).write_text(json.dumps({"id": "x"}))
        message = "recover"
    else:
        with open(lake.path("steps/env=lbf/task=8x8-2p-2f/run=run0/quality=low/checkpoint=1/"
                            "data.parquet"), "r+b") as f:
            f.truncate(50)
        message = "checkpoint=1/data.parquet: not a readable Parquet file"
    before = sorted(p for p, _, files in os.walk(lake.root) for p in [p, *files])
    assert main(["--root", lake.root, "migrate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "again" in err[0]
    assert sorted(p for p, _, files in os.walk(lake.root) for p in [p, *files]) == before
