"""Every column says what it means: in the code's schema, the Delta schema, every Parquet file
written, and `python -m lake_schema schema TABLE`; lakes written before still take writes."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from lake_schema import delta
from lake_schema.catalogue import ENVS
from lake_schema.cli import main
from lake_schema.duck import connect
from lake_schema.reader import Selection, list_files, read_table
from lake_schema.schema import (
    CARD_QUANTILES,
    DESCRIPTION,
    LAYOUT,
    SHAPE,
    TABLES,
    describe_table,
    description,
    shape,
    table_spec,
)
from lake_schema.testing import add_evaluation_updates, synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import write_episodes, write_reference

LBF = "lbf/8x8-2p-2f"


def _specs():
    for table in TABLES:
        for env in (ENVS if table == "steps" else [None]):
            yield table_spec(table, env)


def test_every_column_of_every_table_has_a_meaning():
    for spec in _specs():
        for field in spec.full_schema():
            assert len(description(field)) > 10, (spec.name, field.name)
            assert "|" not in description(field)  # it goes into Markdown tables


def _write_all_tables(lake, checkpoint: int = 0) -> None:
    write_episodes(lake, LBF, "run0", checkpoint, "low",
                   synthetic_episodes(LBF, [4, 5], seed=checkpoint))
    write_reference(lake, LBF, "run0", sable_returns=[0.9], random_returns=[0.1], env_steps=5)
    add_evaluation_updates(lake, "m1", updates=1)


def test_meanings_are_in_the_delta_schema_and_in_every_parquet_file(lake):
    _write_all_tables(lake)
    for tid in delta.existing_tables(lake):
        spec = delta.spec_of(tid)
        want = {f.name: description(f) for f in spec.full_schema()}
        fields = DeltaTable(lake.path(tid)).schema().fields
        assert {f.name: f.metadata.get(DESCRIPTION) for f in fields} == {
            n: want[n] for n in [f.name for f in fields]}, tid
        table, env = delta.parse_table_id(tid)
        files = list_files(lake, table, Selection(env=env))
        assert files
        for rel in files:
            in_file = pq.read_schema(lake.path(rel))
            assert {f.name: description(f) for f in in_file} == {
                f.name: want[f.name] for f in in_file}, rel


def _strip(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.remove_metadata() for f in schema])


def test_a_lake_written_before_the_meanings_takes_writes_and_reads(lake, monkeypatch):
    """Tables created by the code before field metadata (their Delta schema and files have
    none) accept the new code's writes, replaces and reads, and stay verified."""
    new_schema = delta.delta_schema
    with monkeypatch.context() as m:  # the code as it was: no field metadata anywhere
        m.setattr(delta, "delta_schema", lambda spec: _strip(new_schema(spec)))
        _write_all_tables(lake, checkpoint=0)
    assert all(not f.metadata for f in DeltaTable(lake.path("episodes")).schema().fields)

    _write_all_tables(lake, checkpoint=0)  # a replace of the same keys, by the new code
    _write_all_tables(lake, checkpoint=1)  # and a new key
    episodes = read_table(lake, "episodes")
    assert sorted(episodes["checkpoint"].to_pylist()) == [0, 0, 1, 1]
    assert read_table(lake, "steps", Selection(env="lbf")).num_rows == 18
    assert read_table(lake, "evaluations").num_rows == 1
    assert connect(lake).execute("SELECT count(*) FROM steps").fetchone() == (18,)
    assert verify(lake, deep=True).ok
    # the old table's Delta schema is as it was; the new files carry the meanings
    assert all(not f.metadata for f in DeltaTable(lake.path("episodes")).schema().fields)
    newest = max(list_files(lake, "episodes"), key=lambda r: lake.fs.modified(lake.path(r)))
    assert description(pq.read_schema(lake.path(newest)).field("return"))


def test_a_lake_written_before_a_meaning_was_reworded_takes_writes_and_reads(lake, monkeypatch):
    """delta-rs refuses a write whose field metadata differs from the table's: a reworded
    meaning in the code must not stop an existing lake from taking writes (it happened with
    evaluations.normalised_return). The old table keeps its wording, in its new files too."""
    new_schema = delta.delta_schema

    def old_wording(spec):
        return pa.schema([f.with_metadata({DESCRIPTION: "old: " + description(f)})
                          for f in new_schema(spec)])

    with monkeypatch.context() as m:
        m.setattr(delta, "delta_schema", old_wording)
        _write_all_tables(lake, checkpoint=0)
    _write_all_tables(lake, checkpoint=0)  # a replace of the same keys, by the new code
    _write_all_tables(lake, checkpoint=1)  # and a new key
    assert sorted(read_table(lake, "episodes")["checkpoint"].to_pylist()) == [0, 0, 1, 1]
    assert read_table(lake, "evaluations").num_rows == 1
    assert verify(lake, deep=True).ok
    for tid in delta.existing_tables(lake):
        fields = DeltaTable(lake.path(tid)).schema().fields
        assert all(f.metadata.get(DESCRIPTION).startswith("old: ") for f in fields), tid
    newest = max(list_files(lake, "references"), key=lambda r: lake.fs.modified(lake.path(r)))
    assert description(pq.read_schema(lake.path(newest)).field("sable_return")).startswith("old")


@pytest.mark.parametrize("table", ["steps", "steps/rware", "episodes", "references",
                                   "evaluations"])
def test_cli_schema_prints_columns_types_keys_and_meanings(table, capsys):
    assert main(["schema", table]) == 0
    out = capsys.readouterr().out
    doc = describe_table(table)
    name = table.split("/")[0]
    partitions, key = LAYOUT[name]
    assert f"partitions: {'/'.join(partitions)}" in out
    assert f"write key: {', '.join(key)}" in out
    assert "row key: " in out
    for c in doc.columns:
        line = next(x for x in out.splitlines() if x.startswith(c.name + " "))
        assert c.type in line and c.description in line, line
    assert main(["schema", table, "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in got["columns"]] == [f.name for f in table_spec(
        name, table.split("/")[1] if "/" in table else ("lbf" if name == "steps" else None)
    ).full_schema()]
    assert all(c["description"] for c in got["columns"])


def _list_depth(t: pa.DataType) -> int:
    return 1 + _list_depth(t.value_type) if pa.types.is_list(t) or pa.types.is_fixed_size_list(
        t) else 0


def test_every_list_column_declares_its_shape_and_no_other_column_does():
    """One [dim] per list level, each dim a number or a symbol the README defines: N agents,
    F observation features, A actions, K sampled agent-steps."""
    for spec in _specs():
        for field in spec.full_schema():
            dims = shape(field)
            assert dims.count("[") == _list_depth(field.type), (spec.name, field.name, dims)
            assert all(d in {"", "N", "F", "A", "K"} or d.isdigit()
                       for d in dims.strip("[]").split("][")), dims


def test_cli_schema_shows_shapes_and_per_env_types(capsys):
    assert main(["schema", "steps/connector"]) == 0
    out = capsys.readouterr().out
    assert "float32 [N][F=54]" in out and "bool [N][A=5]" in out and "int8 [N] " in out
    assert main(["schema", "steps", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert ("| `obs` | lbf: int8 [N][F=75]; rware: int8 [N][F=66]; connector: float32 "
            "[N][F=54] |") in out
    assert "| `checkpoint` (partition) | int32 |" in out
    assert main(["schema", "steps", "--format", "json"]) == 0
    columns = json.loads(capsys.readouterr().out)["columns"]
    assert {c["name"]: c["shape"] for c in columns if c["shape"]} == {
        "obs": "[N][F]", "action": "[N]", "legal": "[N][A]"}


def test_cli_schema_of_cards_shows_each_list_columns_own_shape(capsys):
    assert main(["schema", "cards"]) == 0
    out = capsys.readouterr().out
    types = {words[0]: f"{words[1]} {words[2]}" for words in map(str.split, out.splitlines())
             if len(words) > 2 and words[2].startswith("[")}
    assert types == {"return_quantiles": f"float64 [{len(CARD_QUANTILES)}]",
                     "obs_mean": "float64 [F]", "obs_m2": "float64 [F]",
                     "obs_min": "float64 [F]", "obs_max": "float64 [F]",
                     "obs_sample": "float32 [K][F]", "action_counts": "int64 [N][A]"}


def test_shapes_are_in_the_delta_schema_and_the_files(lake):
    _write_all_tables(lake)
    for tid in ("steps/lbf", "cards"):
        want = {f.name: shape(f) for f in delta.spec_of(tid).full_schema() if shape(f)}
        assert want
        fields = DeltaTable(lake.path(tid)).schema().fields
        assert {f.name: f.metadata[SHAPE] for f in fields if SHAPE in f.metadata} == want, tid
        table, env = delta.parse_table_id(tid)
        rel = list_files(lake, table, Selection(env=env))[0]
        in_file = pq.read_schema(lake.path(rel))
        assert {f.name: shape(f) for f in in_file if shape(f)} == want, rel


@pytest.mark.parametrize(("table", "message"), [
    ("stepz", "unknown table 'stepz'; tables: steps, episodes"),
    ("steps/lbff", "unknown environment 'lbff'"),
])
def test_cli_schema_of_an_unknown_table_is_one_line(table, message, capsys):
    assert main(["schema", table]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
