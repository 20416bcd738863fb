"""Bad input to `python -m lake_schema` is one line on stderr, never a traceback: every command
that reads refuses a missing root, a file root and a root that holds no lake; a writer
creates a new lake and says so; `--lake` goes before or after the command; `query` passes
DuckDB's message through whole, and a reader that stops early (`| head -1`) ends it quietly;
bad command-line input exits 2, bad data and unreachable storage exit 1, each naming the
argument, table or endpoint at fault."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lake_schema import cli
from lake_schema.cli import build_parser, main
from lake_schema.storage import Lake, S3Options
from lake_schema.testing import fill_lake, synthetic_episodes
from lake_schema.writer import write_episodes
from pipelines.screenshots import free_port

LBF = "lbf/8x8-2p-2f"
REPO = Path(__file__).resolve().parents[2]

# Every command that reads the lake (the others: tasks and schema need no lake; import-vault
# writes, and refuses a missing Vault first).
READERS = [
    ["ls"], ["du"], ["query", "SELECT 1"], ["verify"], ["verify", "--deep"],
    ["history", "episodes"], ["versions"], ["optimize"], ["vacuum", "--dry-run"], ["migrate"],
    ["export-vault", "out.vlt", "--task", LBF, "--uid", "Good"], ["card", LBF],
    ["card", "--backfill"], ["export-hf", "out.hf", "--task", LBF],
]


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sable-lake: error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("args", READERS, ids=lambda a: a[0] + ("-deep" if "--deep" in a else ""))
def test_every_reading_command_refuses_a_missing_file_or_lakeless_root(args, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing, a_file, no_lake = tmp_path / "nowhere", tmp_path / "afile", tmp_path / "project"
    a_file.write_text("not a lake")
    (no_lake / "src").mkdir(parents=True)  # a folder of other things, e.g. a checkout
    assert main(["--lake", str(missing), *args]) == 1
    assert f"lake root {missing} does not exist" in _one_line_error(capsys)
    assert main(["--lake", str(a_file), *args]) == 1
    assert f"lake root {a_file} is not a directory" in _one_line_error(capsys)
    assert main([*args, "--lake", str(no_lake)]) == 1
    assert f"no lake at {no_lake}: it holds none of the tables" in _one_line_error(capsys)
    assert not missing.exists() and not (tmp_path / "out.vlt").exists()
    assert os.listdir(no_lake) == ["src"]  # nothing created there


def _lake_schema(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lake_schema", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=120)


def test_a_folder_without_a_lake_is_an_error_naming_it_not_an_empty_lake(tmp_path):
    """The issue's case: `--lake .` in a folder that is no lake listed `(0 rows)`, verified
    `0 files ... ok` and counted 0 episodes, each with exit status 0."""
    (tmp_path / "notes.txt").write_text("not a lake")
    for args in (["ls"], ["verify"], ["query", "select count(*) from episodes"]):
        p = _lake_schema("--lake", ".", *args, cwd=tmp_path)
        assert p.returncode == 1 and p.stdout == "", (args, p.stdout)
        assert p.stderr == (f"sable-lake: error: no lake at {tmp_path}: it holds none of the "
                            "tables steps, episodes, references, evaluations, cards\n"), p.stderr


def test_lake_goes_before_or_after_the_command_and_root_is_no_flag(tmp_path, capsys):
    lake = Lake(tmp_path / "lake")
    fill_lake(lake, [LBF], checkpoints=1, episodes=1, lengths=(3, 3))
    sql = "select count(*) as n from episodes"
    assert main(["--lake", lake.root, "query", "--format", "csv", sql]) == 0
    assert main(["query", "--format", "csv", sql, "--lake", lake.root]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "1", "n", "1"]
    assert main(["--root", lake.root, "ls"]) == 2
    _one_line_error(capsys)


def test_a_reader_that_stops_early_ends_the_query_quietly(tmp_path):
    lake = Lake(tmp_path / "lake")
    fill_lake(lake, [LBF], checkpoints=1, episodes=1, lengths=(3, 3))
    for fmt in ("table", "csv"):  # 200,000 rows: far more than a pipe's buffer
        p = subprocess.run(
            ["bash", "-c", 'set -o pipefail; "$0" -m lake_schema --lake "$1" query --format '
             '"$2" "select * from range(200000)" | head -1', sys.executable, lake.root, fmt],
            capture_output=True, text=True, cwd=tmp_path, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        assert p.stdout == "range\n" and p.stderr == "", (fmt, p.stderr)
        assert p.returncode in (0, 141), p.returncode  # pipefail: the query's own status


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
    assert main(["--lake", lake.root, "query", sql]) == status
    line = _one_line_error(capsys)
    assert f"query failed: {message}" in line and "^" not in line, line


def test_corrupt_files_are_one_line_naming_the_file(tmp_path, capsys):
    lake = Lake(tmp_path / "lake")
    fill_lake(lake, [LBF], checkpoints=1, episodes=1, lengths=(3, 3))
    log = sorted(os.listdir(lake.path("episodes/_delta_log")))
    with open(lake.path(f"episodes/_delta_log/{log[-1]}"), "w") as f:
        f.write("{not json")
    for args in (["ls"], ["query", "SELECT count(*) FROM episodes"], ["history", "episodes"]):
        assert main(["--lake", lake.root, *args]) == 1
        assert "episodes" in _one_line_error(capsys)


def test_vault_commands_refuse_a_bad_budget_and_a_file_destination(lake, tmp_path, capsys):
    assert main(["--lake", lake.root, "import-vault", str(tmp_path / "v.vlt"), "--task", LBF,
                 "--memory-mb", "-5"]) == 2  # a usage error, before the Vault is opened
    assert "--memory-mb: '-5' is not a whole number >= 1" in _one_line_error(capsys)
    fill_lake(lake, [LBF], checkpoints=1, episodes=2)
    (tmp_path / "afile").write_text("x")
    assert main(["--lake", lake.root, "export-vault", str(tmp_path / "afile"), "--task", LBF,
                 "--uid", "Good"]) == 1
    assert "afile: is a file; export-vault writes the Vault folder" in _one_line_error(capsys)


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory) -> Lake:
    """One lbf episode: tables to name (and tables of other envs missing)."""
    lake = Lake(tmp_path_factory.mktemp("small") / "lake")
    fill_lake(lake, [LBF], checkpoints=1, episodes=1, lengths=(3, 3))
    return lake


# (arguments after --lake LAKE, exit status, words the one line on stderr must hold)
BAD_INPUT = [
    (["query", ""], 2, "query: the SQL holds no statement"),
    (["query", "-- a comment only"], 2, "query: the SQL holds no statement"),
    *[(["vacuum", "--dry-run", "--retention-hours", hours], 2,
       f"argument --retention-hours: '{hours}' is not a number of hours from 0 to")
      for hours in ("inf", "1e30", "nan", "-1", "")],
    (["optimize", "steps/connector"], 1, "has no table steps/connector"),
    (["vacuum", "--dry-run", "steps/connector"], 1, "has no table steps/connector"),
    (["optimize", "nope"], 2, "unknown table 'nope'"),
    (["history", ""], 2, "unknown table ''"),
    (["import-vault", "", "--task", LBF], 2, "argument path: an empty path"),
    (["export-vault", "", "--task", LBF, "--uid", "Good"], 2, "argument dest: an empty path"),
    *[(["export-vault", "out", "--task", LBF, "--uid", "Good", "--checkpoints", text], 2,
       f"argument --checkpoints: '{text}' is not K or LO:HI") for text in ("x", "1:y", "")],
    (["card", ""], 2, "unknown task ''"),
    (["card", "--backfill", ""], 2, "unknown task ''"),
    (["tasks", "--env", ""], 2, "unknown environment ''"),
    (["schema", ""], 2, "unknown table ''"),
]


@pytest.mark.parametrize(("args", "status", "words"), BAD_INPUT, ids=lambda v: repr(v))
def test_bad_input_is_one_line_naming_it(args, status, words, small_lake, capsys):
    assert main(["--lake", small_lake.root, *args]) == status
    assert words in _one_line_error(capsys)


@pytest.mark.parametrize(("root", "words"), [
    ("", "argument --lake: empty lake root"),
    ("s3://", "argument --lake: bad lake root 's3://'"),
    ("s3://a bucket/x", "argument --lake: bad lake root 's3://a bucket/x': 'a bucket' is not a "
                        "bucket name"),
    ("gs://bucket/x", "argument --lake: bad lake root 'gs://bucket/x'"),
])
def test_a_bad_root_is_a_usage_error_naming_root(root, words, capsys):
    assert main(["--lake", root, "ls"]) == 2
    assert words in _one_line_error(capsys)


def test_a_bad_sable_lake_variable_is_named(monkeypatch, capsys):
    monkeypatch.setenv("SABLE_LAKE", "s3://")
    assert main(["ls"]) == 2
    assert "$SABLE_LAKE: bad lake root 's3://'" in _one_line_error(capsys)


def test_retention_hours_round_up_to_whole_hours():
    """Delta vacuums by whole hours: half an hour asked keeps files for one, never for none."""
    args = build_parser().parse_args(["vacuum", "--retention-hours", "0.5"])
    assert args.retention_hours == 1


def test_an_interrupt_and_an_unforeseen_error_are_one_line(small_lake, monkeypatch, capsys):
    def interrupted(lake, args):
        raise KeyboardInterrupt

    def broken(lake, args):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(cli, "cmd_ls", interrupted)
    assert main(["--lake", small_lake.root, "ls"]) == 130
    assert _one_line_error(capsys) == "sable-lake: error: interrupted"
    monkeypatch.setattr(cli, "cmd_ls", broken)
    assert main(["--lake", small_lake.root, "ls"]) == 1
    assert "something unforeseen (RuntimeError; unexpected" in _one_line_error(capsys)


def _s3_env(monkeypatch, options: S3Options) -> None:
    """The CLI's S3 settings are the AWS_* variables."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", options.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", options.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options.secret)
    monkeypatch.setenv("AWS_REGION", options.region)
    monkeypatch.setenv("SABLE_LAKE_S3_ADDRESSING_STYLE", options.addressing_style)


def test_an_unreachable_s3_endpoint_is_named_at_once(monkeypatch, capsys):
    port = free_port()  # nothing listens there
    _s3_env(monkeypatch, S3Options(endpoint_url=f"http://user:p4ssw0rd@127.0.0.1:{port}", key="k",
                                   secret="s3cr3t", region="eu-west-1",
                                   addressing_style="path"))
    assert main(["--lake", "s3://bucket/lake", "ls"]) == 1
    line = _one_line_error(capsys)
    assert f"cannot reach the S3 endpoint http://127.0.0.1:{port}" in line, line
    assert "p4ssw0rd" not in line and "s3cr3t" not in line and "no such bucket" not in line


def test_a_missing_bucket_on_a_reachable_endpoint_is_named(s3_server, monkeypatch, capsys):
    _s3_env(monkeypatch, s3_server)
    assert main(["--lake", "s3://no-such-bucket-cli/lake", "ls"]) == 1
    assert "no such bucket 'no-such-bucket-cli'" in _one_line_error(capsys)


def test_an_s3_prefix_without_a_lake_is_named_and_one_with_a_table_is_read(s3_lake, monkeypatch,
                                                                          capsys):
    _s3_env(monkeypatch, s3_lake.s3_options)
    assert main(["--lake", s3_lake.root, "ls"]) == 1
    assert f"no lake at {s3_lake.root}: it holds none of the tables" in _one_line_error(capsys)
    write_episodes(s3_lake, LBF, "r", 0, "low", synthetic_episodes(LBF, [3]))
    assert main(["--lake", s3_lake.root, "ls"]) == 0
    assert "8x8-2p-2f" in capsys.readouterr().out
