"""Content hashes: recorded at commit, checked by `verify --deep` and the cache build, so
a flipped byte never changes the values read back without an error."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake_schema import delta, integrity
from lake_schema.cli import main
from lake_schema.reader import Selection, list_files, read_table
from lake_schema.testing import add_evaluation_updates, synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import write_episodes, write_reference

LBF = "lbf/8x8-2p-2f"


def test_the_hash_of_one_int_column_by_hand():
    """sha256 over: the name, NUL, then the digests of the validity, length and value
    streams (no lengths for a flat column)."""
    sha = hashlib.sha256
    valid = np.array([True, True, False]).tobytes()
    values = np.array([1, 2, 0], "<i8").tobytes()  # a null hashes as 0
    column = sha(valid).digest() + sha(b"").digest() + sha(values).digest()
    want = sha(b"x\0" + column).hexdigest()
    assert integrity.content_hash(pa.table({"x": pa.array([1, 2, None], pa.int64())})) == want


def test_the_hash_does_not_depend_on_batching_and_sees_every_value(tmp_path):
    rng = np.random.default_rng(0)
    obs = pa.array([[list(map(int, rng.integers(-5, 5, 3))) for _ in range(2)]
                    for _ in range(500)], pa.list_(pa.list_(pa.int8())))
    table = pa.table({"obs": obs, "reward": rng.random(500).astype(np.float32),
                      "file": [f"f{i % 7}" for i in range(500)]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=64)
    pf = pq.ParquetFile(tmp_path / "t.parquet")
    assert pf.num_row_groups > 1
    assert integrity.file_hash(pf, "t") == integrity.content_hash(table)
    for column, changed in [("reward", pa.array(np.r_[table["reward"].to_numpy()[:-1], 0.5]
                                                   .astype(np.float32))),
                            ("file", pa.array([*table["file"].to_pylist()[:-1], "g"])),
                            ("obs", pa.array([*obs.to_pylist()[:-1], [[0, 0, 0], [0, 0, 1]]],
                                             obs.type))]:
        other = table.set_column(table.schema.get_field_index(column), column, changed)
        assert integrity.content_hash(other) != integrity.content_hash(table), column


@pytest.fixture
def written(lake):
    for ck in range(2):
        write_episodes(lake, LBF, "run0", ck, "low", synthetic_episodes(LBF, [20, 30], seed=ck))
    write_reference(lake, LBF, "run0", sable_returns=[0.9], random_returns=[0.1], env_steps=5)
    add_evaluation_updates(lake, "m1", updates=2)
    return lake


def test_every_file_a_write_commits_has_its_hash_recorded(written):
    lake = written
    for tid in delta.existing_tables(lake):
        hashes = integrity.recorded_hashes(lake, tid)
        for f in delta.data_files(delta.open_table(lake, tid), tid):
            with pq.ParquetFile(lake.path(f.rel)) as pf:
                assert integrity.file_hash(pf, f.rel) == hashes[f.rel], f.rel
    report = verify(lake, deep=True)
    assert report.ok and report.unhashed == 0


def _flip(path: str, at: int) -> bytes:
    data = Path(path).read_bytes()
    flipped = bytearray(data)
    flipped[at] ^= 0xFF
    Path(path).write_bytes(bytes(flipped))
    return data


def test_no_byte_flip_changes_the_values_read_without_an_error(written):
    """45 random byte flips over the data files of steps and episodes (the tables whose
    values silently changed before hashes): each either changes nothing a reader sees, or
    the content check of `verify --deep` names the file."""
    lake = written
    rng = random.Random(0)
    files = list_files(lake, "steps", Selection(env="lbf")) + list_files(lake, "episodes")
    hashes = {**integrity.recorded_hashes(lake, "steps/lbf"),
              **integrity.recorded_hashes(lake, "episodes")}
    silent, caught = [], 0
    for trial in range(45):
        rel = rng.choice(files)
        path = lake.path(rel)
        original = Path(path).read_bytes()
        before = pq.read_table(path)
        _flip(path, rng.randrange(4, len(original) - 8))  # not the magic bytes
        try:
            with pq.ParquetFile(path) as pf:  # a damaged footer fails here: not silent
                integrity.check_file(pf, rel, hashes[rel])
        except Exception:
            caught += 1
        else:
            if not pq.read_table(path).equals(before):
                silent.append((trial, rel))
        Path(path).write_bytes(original)
    assert not silent and caught > 0


def test_verify_deep_and_the_cli_name_a_file_whose_values_changed(written, capsys):
    lake = written
    rel = list_files(lake, "episodes")[0]
    table = pq.read_table(lake.path(rel))
    changed = table.set_column(table.schema.get_field_index("return"), "return",
                               pa.array(table["return"].to_numpy() + 1.0))
    pq.write_table(changed, lake.path(rel))  # a valid Parquet file, other numbers
    report = verify(lake, deep=True)
    assert [p.path for p in report.problems] == [rel]
    assert "rows differ from those committed" in report.problems[0].reason
    assert main(["--lake", lake.root, "verify", "--deep"]) == 1
    assert "rows differ from those committed" in capsys.readouterr().out


def test_a_file_without_a_recorded_hash_is_counted_not_failed(written, capsys):
    """A lake file written by another Delta writer has no recorded hash: read, not compared."""
    from deltalake import write_deltalake

    lake = written
    rows = read_table(lake, "references")
    rows = rows.set_column(rows.schema.get_field_index("run"), "run", pa.array(["run1"]))
    write_deltalake(lake.path("references"), rows.cast(
        delta.delta_schema(delta.spec_of("references"))), mode="append")
    report = verify(lake, deep=True)
    assert report.ok and report.unhashed == 1
    assert main(["--lake", lake.root, "verify", "--deep"]) == 0
    assert "1 file(s) have no recorded content hash" in capsys.readouterr().out
