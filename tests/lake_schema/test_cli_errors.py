"""Bad input to `python -m lake_schema` is one line on stderr, never a traceback: every command
that reads refuses a missing root and a file root; a writer creates a new lake and says so;
`query` passes DuckDB's message through whole."""

from __future__ import annotations

import logging
import os

import pytest

from lake_schema.cli import main
from lake_schema.storage import Lake
from lake_schema.synthetic import synthetic_episodes
from lake_schema.writer import write_episodes
from tests.helpers.lake import fill_lake

LBF = "lbf/8x8-2p-2f"

# Every command that reads the lake (the others: tasks and schema need no lake; import-vault
# writes, and refuses a missing Vault first).
READERS = [
    ["ls"], ["du"], ["query", "SELECT 1"], ["verify"], ["verify", "--deep"],
    ["history", "episodes"], ["versions"], ["optimize"], ["vacuum", "--dry-run"], ["migrate"],
    ["export-vault", "out.vlt", "--task", LBF, "--uid", "Good"],
]


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sable-lake: error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("args", READERS, ids=lambda a: a[0] + ("-deep" if "--deep" in a else ""))
def test_every_reading_command_refuses_a_missing_or_file_root(args, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing, a_file = tmp_path / "nowhere", tmp_path / "afile"
    a_file.write_text("not a lake")
    assert main(["--root", str(missing), *args]) == 1
    assert f"lake root {missing} does not exist" in _one_line_error(capsys)
    assert main(["--root", str(a_file), *args]) == 1
    assert f"lake root {a_file} is not a directory" in _one_line_error(capsys)
    assert not missing.exists() and not (tmp_path / "out.vlt").exists()


def test_a_writer_creates_a_new_lake_and_says_so(tmp_path, caplog):
    lake = Lake(tmp_path / "new" / "lake")
    with caplog.at_level(logging.WARNING, logger="lake_schema.storage"):
        write_episodes(lake, LBF, "r", 0, "low", synthetic_episodes(LBF, [3]))
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"creating a new lake at {lake.root}"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lake_schema.storage"):
        write_episodes(Lake(lake.root), LBF, "r", 1, "low", synthetic_episodes(LBF, [3]))
    assert caplog.records == []  # an existing lake: nothing to say


@pytest.mark.parametrize(("sql", "status", "message"), [
    ("select retrun from episodes", 2,
     'Binder Error: Referenced column "retrun" not found in FROM clause! Candidate bindings: '
     '"return"'),
    ("select * from episodes where", 2, 'Parser Error: syntax error at or near "where"'),
    ("select cast('x' as int)", 2, "Conversion Error: Could not convert string 'x' to INT32"),
    ("select * from read_parquet('nope.parquet')", 1,
     'IO Error: No files found that match the pattern "nope.parquet"'),
])
def test_query_errors_carry_duckdbs_whole_message_on_one_line(sql, status, message, tmp_path,
                                                              capsys):
    lake = Lake(tmp_path / "lake")
    fill_lake(lake, [LBF], checkpoints=1, episodes=1, lengths=(3, 3))
    assert main(["--root", lake.root, "query", sql]) == status
    line = _one_line_error(capsys)
    assert f"query failed: {message}" in line and "^" not in line, line


def test_corrupt_files_are_one_line_naming_the_file(tmp_path, capsys):
    lake = Lake(tmp_path / "lake")
    fill_lake(lake, [LBF], checkpoints=1, episodes=1, lengths=(3, 3))
    log = sorted(os.listdir(lake.path("episodes/_delta_log")))
    with open(lake.path(f"episodes/_delta_log/{log[-1]}"), "w") as f:
        f.write("{not json")
    for args in (["ls"], ["query", "SELECT count(*) FROM episodes"], ["history", "episodes"]):
        assert main(["--root", lake.root, *args]) == 1
        assert "episodes" in _one_line_error(capsys)


def test_vault_commands_refuse_a_bad_budget_and_a_file_destination(lake, tmp_path, capsys):
    assert main(["--root", lake.root, "import-vault", str(tmp_path / "v.vlt"), "--task", LBF,
                 "--memory-mb", "-5"]) == 2  # a usage error, before the Vault is opened
    assert "--memory-mb: '-5' is not a whole number >= 1" in _one_line_error(capsys)
    fill_lake(lake, [LBF], checkpoints=1, episodes=2)
    (tmp_path / "afile").write_text("x")
    assert main(["--root", lake.root, "export-vault", str(tmp_path / "afile"), "--task", LBF,
                 "--uid", "Good"]) == 1
    assert "afile: is a file; export-vault writes the Vault folder" in _one_line_error(capsys)
