"""Bad input to `python -m trainer.offline` and `python -m trainer.online` is one line on stderr
(exit 2: arguments; 1: the lake or a file), never a traceback, and comes before any compute."""

from __future__ import annotations

import time

import pytest

from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from trainer.offline.__main__ import main as offline_main
from trainer.online.__main__ import main as online_main


def _one_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
    return err[0]


@pytest.fixture
def roots(tmp_path):
    """A small real lake, a missing root and a file root."""
    lake = Lake(tmp_path / "lake")
    fill_lake(lake, ["lbf/8x8-2p-2f"], checkpoints=1, episodes=2, lengths=(3, 4))
    (tmp_path / "afile").write_text("not a lake")
    return {"LAKE": lake.root, "MISSING": str(tmp_path / "nowhere"),
            "FILE": str(tmp_path / "afile"), "TMP": str(tmp_path)}


OFFLINE = [
    (["train", "--lake", "MISSING"], 1, "lake root MISSING does not exist"),
    (["train", "--lake", "FILE"], 1, "lake root FILE is not a directory"),
    (["train", "--lake", "LAKE", "--env", "lbff"], 2, "unknown environment 'lbff'"),
    (["train", "--lake", "LAKE", "--tasks", "lbf/9x9"], 2, "unknown task 'lbf/9x9'"),
    (["train", "--lake", "LAKE", "--split", "tset"], 2, "unknown split of lbf 'tset'"),
    (["train", "--lake", "LAKE", "--algorithm", "foo"], 2, "unknown algorithm 'foo'"),
    (["train", "--lake", "LAKE", "--quality", "mid"], 2, "unknown quality subset 'mid'"),
    (["train", "--lake", "LAKE", "--set", "num_updates=abc"], 2,
     "OfflineConfig.num_updates must be an int, got 'abc'"),
    (["train", "--lake", "LAKE", "--seeds", "1", "1"], 2, "two runs share a run directory"),
    (["evaluate", "MISSING", "--lake", "LAKE"], 1,
     "MISSING: not an offline model run (no model.json)"),
    (["evaluate", "TMP/badmodel", "--lake", "LAKE"], 2,
     "TMP/badmodel/model.json: not an offline model's model.json"),
    (["evaluate", "TMP/badmodel", "--lake", "LAKE", "--checkpoint", "foo"], 2,
     "unknown checkpoint 'foo'"),
]


@pytest.mark.parametrize(("args", "status", "message"), OFFLINE,
                         ids=[" ".join(a[2:] if a[0] == "train" else a[:2]) + f" {m[:20]}"
                              for a, _, m in OFFLINE])
def test_offline_cli_bad_input_is_one_line(args, status, message, roots, capsys, tmp_path,
                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "badmodel").mkdir()
    (tmp_path / "badmodel" / "model.json").write_text('{"config": ')  # a truncated write
    assert offline_main([_sub(a, roots) for a in args]) == status
    assert _sub(message, roots) in _one_line(capsys, "python -m trainer.offline")
    assert not (tmp_path / "models").exists()  # refused before training started


def _sub(text: str, roots: dict[str, str]) -> str:
    for key, value in roots.items():
        text = text.replace(key, value)
    return text


ONLINE = [
    (["lbf/9x9"], 2, "unknown task 'lbf/9x9'"),
    (["lbf/8x8-2p-2f", "--root", "FILE"], 1, "lake root FILE is not a directory"),
    (["lbf/8x8-2p-2f", "--root", "ftp://x"], 1, "bad lake root 'ftp://x'"),
    (["lbf/8x8-2p-2f", "--run", "bad/id"], 2, "bad run id 'bad/id'"),
    (["lbf/8x8-2p-2f", "--set", "total_env_steps=abc"], 2,
     "OnlineConfig.total_env_steps must be an int, got 'abc'"),
]


@pytest.mark.parametrize(("args", "status", "message"), ONLINE,
                         ids=[" ".join(a) for a, _, _ in ONLINE])
def test_online_cli_bad_input_is_one_line_before_any_compute(args, status, message, roots,
                                                             capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SABLE_LAKE", str(tmp_path / "default-lake"))
    start = time.perf_counter()
    assert online_main([_sub(a, roots) for a in args] + [
        "--checkpoint-dir", str(tmp_path / "ckpt")]) == status
    assert _sub(message, roots) in _one_line(capsys, "python -m trainer.online")
    assert time.perf_counter() - start < 30  # nothing was compiled or stepped
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "default-lake").exists()
