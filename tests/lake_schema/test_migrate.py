"""`migrate`: a lake of the pre-Delta layout becomes Delta tables with the same rows, or is
refused, changing nothing, with what to do."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lake_schema import delta
from lake_schema.cards import dataset_cards, rtg_fit
from lake_schema.catalogue import get_task
from lake_schema.checks import returns_to_go_in_support
from lake_schema.cli import main
from lake_schema.duck import connect
from lake_schema.errors import LegacyLakeError
from lake_schema.reader import Selection, read_table
from lake_schema.schema import EVALUATIONS_SCHEMA, REFERENCES_SCHEMA, table_spec
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake, synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import write_episodes

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
        }).cast(pa.schema([f for f in table_spec("episodes").schema
                           if f.name != "reset_key"]))  # a column added since
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
    assert main(["--lake", lake.root, "migrate"]) == 0
    assert "done" in capsys.readouterr().out
    eps = read_table(lake, "episodes", Selection(env="lbf"))
    assert sorted(zip(eps["checkpoint"].to_pylist(), eps["length"].to_pylist(),
                      strict=True)) == sorted((ck, n) for ck, ls in lengths.items() for n in ls)
    assert eps["reset_key"].null_count == eps.num_rows  # recorded without: not replayable
    assert read_table(lake, "steps", Selection(env="lbf")).num_rows == sum(
        sum(v) for v in lengths.values())
    assert read_table(lake, "references")["sable_return"].to_pylist() == [0.9]
    assert read_table(lake, "evaluations")["update"].to_pylist() == [3]
    report = verify(lake, deep=True)
    assert report.ok, report.problems
    assert not os.path.exists(lake.path("_pre_delta"))
    assert main(["--lake", lake.root, "migrate"]) == 0  # again: nothing to do
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
    assert main(["--lake", lake.root, "migrate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "again" in err[0]
    assert sorted(p for p, _, files in os.walk(lake.root) for p in [p, *files]) == before


# ------------------------------------------------- a column added to a Delta table since

RTG = "rtg_outside_support"


def lake_before_rtg(root) -> Lake:
    """A Delta lake written by the code before `cards.rtg_outside_support`: its cards table's
    Delta schema and files lack the column (two checkpoints of lbf)."""
    from lake_schema import schema

    old_cards = pa.schema([f for f in schema.CARDS_SCHEMA if f.name != RTG])
    with pytest.MonkeyPatch.context() as m:
        m.setitem(schema._SCHEMAS, "cards", old_cards)
        m.setitem(schema.ADDED_COLUMNS, "cards", ())
        fill_lake(Lake(root), [LBF], checkpoints=2, episodes=3)
    lake = Lake(root)  # a new process: no Delta table cached from the old code
    dt = delta.open_table(lake, "cards")
    assert RTG not in pa.schema(dt.schema().to_arrow()).names
    return lake


def _shares_from_steps(lake) -> dict[int, float]:
    steps = read_table(lake, "steps", Selection(env="lbf"), ["checkpoint", "step", "reward"])
    out = {}
    for ck in sorted(set(steps["checkpoint"].to_pylist())):
        part = steps.filter(pc.equal(steps["checkpoint"], ck))
        out[ck] = rtg_fit(get_task(LBF), part).fraction
    return out


def test_cards_written_before_the_rtg_column_read_as_not_computed(tmp_path):
    """Readers, verify, the DuckDB views and the card all work on the old table: null."""
    lake = lake_before_rtg(tmp_path / "lake")
    cards = read_table(lake, "cards").to_pylist()
    assert len(cards) == 2 and all(r[RTG] is None for r in cards)
    only = read_table(lake, "cards", columns=["checkpoint", RTG]).to_pylist()
    assert sorted((r["checkpoint"], r[RTG]) for r in only) == [(0, None), (1, None)]
    report = verify(lake, deep=True)
    assert report.ok, report.problems
    assert connect(lake).execute(f"SELECT count(*), count({RTG}) FROM cards").fetchone() == (
        2, 0)
    (card,) = dataset_cards(lake, get_task(LBF))
    assert card.rtg_outside_support is None and card.rtg_unknown == (0, 1)
    # the asset check's rule computes the share from the steps where no card has it
    outcome = returns_to_go_in_support(lake, get_task(LBF), "r1", max_outside=1.0)
    assert outcome.passed and outcome.metadata["computed_from_steps"] == 2
    shares = _shares_from_steps(lake)
    steps = {r["checkpoint"]: r["steps"] for r in cards}
    assert outcome.metadata["outside_fraction"] == pytest.approx(
        sum(shares[k] * steps[k] for k in shares) / sum(steps.values()))


def test_migrate_adds_the_column_and_fills_it_from_the_steps(tmp_path, capsys):
    lake = lake_before_rtg(tmp_path / "lake")
    versions = delta.current_versions(lake, ["cards"])
    assert main(["--lake", str(lake.root), "migrate"]) == 0
    out = capsys.readouterr().out
    assert f"cards: added column(s) {RTG}" in out
    assert out.count(f"filled {RTG}") == 2
    lake = Lake(lake.root)
    assert RTG in pa.schema(delta.open_table(lake, "cards").schema().to_arrow()).names
    got = {r["checkpoint"]: r[RTG] for r in read_table(lake, "cards").to_pylist()}
    assert got == pytest.approx(_shares_from_steps(lake))
    assert delta.current_versions(lake, ["cards"])["cards"] == versions["cards"] + 3
    report = verify(lake, deep=True)
    assert report.ok, report.problems
    (card,) = dataset_cards(lake, get_task(LBF))
    assert card.rtg_unknown == () and card.rtg_outside_support is not None
    assert main(["--lake", str(lake.root), "migrate"]) == 0  # again: nothing to do
    assert "nothing to migrate" in capsys.readouterr().out


def test_a_write_to_an_old_cards_table_adds_the_column_and_backfill_fills_the_rest(
        tmp_path, capsys):
    lake = lake_before_rtg(tmp_path / "lake")
    write_episodes(lake, LBF, "r1", 2, "high", synthetic_episodes(LBF, [5, 6], seed=3))
    got = {r["checkpoint"]: r[RTG] for r in read_table(lake, "cards").to_pylist()}
    assert got[0] is None and got[1] is None and got[2] is not None  # old rows: not computed
    report = verify(lake, deep=True)
    assert report.ok, report.problems
    assert connect(lake).execute(f"SELECT count(*), count({RTG}) FROM cards").fetchone() == (
        3, 1)
    assert main(["--lake", str(lake.root), "card", "--backfill"]) == 0
    assert capsys.readouterr().out.count(f"filled {RTG}") == 2
    got = {r["checkpoint"]: r[RTG] for r in read_table(lake, "cards").to_pylist()}
    assert got == pytest.approx(_shares_from_steps(lake))


# ------------------------------------------- an episode's reset key, added to a Delta table

KEY = "reset_key"


def lake_before_reset_key(root) -> Lake:
    """A Delta lake written by the code before `episodes.reset_key`: its episodes table's
    Delta schema and files lack the column (two checkpoints of lbf)."""
    from lake_schema import schema

    old_episodes = pa.schema([f for f in schema.EPISODES_SCHEMA if f.name != KEY])
    with pytest.MonkeyPatch.context() as m:
        m.setitem(schema._SCHEMAS, "episodes", old_episodes)
        m.setitem(schema.ADDED_COLUMNS, "episodes", ())
        fill_lake(Lake(root), [LBF], checkpoints=2, episodes=3)
    lake = Lake(root)  # a new process: no Delta table cached from the old code
    assert KEY not in pa.schema(delta.open_table(lake, "episodes").schema().to_arrow()).names
    return lake


def _rows(table: pa.Table) -> list[dict]:
    return sorted(table.drop_columns([KEY]).to_pylist(),
                  key=lambda r: (r["checkpoint"], r["episode"]))


def test_migrate_adds_the_reset_key_column_as_null_and_keeps_the_rows(tmp_path, capsys):
    lake = lake_before_reset_key(tmp_path / "lake")
    before = read_table(lake, "episodes")
    assert before.num_rows == 6 and before[KEY].null_count == 6  # readers: not replayable
    assert connect(lake).execute(f"SELECT count(*), count({KEY}) FROM episodes").fetchone() == (
        6, 0)
    versions = delta.current_versions(lake, ["episodes"])
    assert main(["--lake", str(lake.root), "migrate"]) == 0
    assert f"episodes: added column(s) {KEY}" in capsys.readouterr().out
    lake = Lake(lake.root)
    assert KEY in pa.schema(delta.open_table(lake, "episodes").schema().to_arrow()).names
    assert delta.current_versions(lake, ["episodes"])["episodes"] == versions["episodes"] + 1
    after = read_table(lake, "episodes")
    assert _rows(after) == _rows(before) and after[KEY].null_count == 6
    report = verify(lake, deep=True)
    assert report.ok, report.problems
    # a write after the migration stores its keys beside the old rows' nulls
    keys = np.array([[1, 2], [3, 2**32 - 1]], np.uint32)
    batch = dataclasses.replace(synthetic_episodes(LBF, [5, 6], seed=3), reset_keys=keys)
    write_episodes(lake, LBF, "r1", 2, "high", batch)
    got = {(r["checkpoint"], r["episode"]): r[KEY]
           for r in read_table(lake, "episodes").to_pylist()}
    assert got[(2, 0)] == [1, 2] and got[(2, 1)] == [3, 2**32 - 1]
    assert sum(v is None for v in got.values()) == 6
    assert connect(lake).execute(f"SELECT count({KEY}) FROM episodes").fetchone() == (2,)
    assert main(["--lake", str(lake.root), "migrate"]) == 0  # again: nothing to do
    assert "nothing to migrate" in capsys.readouterr().out
