"""Bad input to `python -m trainer.offline` and `python -m trainer.online` is one line on stderr
(exit 2: arguments; 1: the lake or a file), never a traceback, and comes before any compute:
every argument, and the lake, is checked before JAX is imported. `--help` lists each flag's
choices and default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from trainer.offline.__main__ import main as offline_main
from trainer.online.__main__ import main as online_main

REPO = Path(__file__).resolve().parents[2]


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
    (["train", "--lake", "TMP"], 1, "no lake at TMP: it holds none of the tables"),
    (["evaluate", "TMP/badmodel", "--lake", "TMP"], 1, "no lake at TMP"),
    (["train", "--lake", "LAKE", "--env", "lbff"], 2, "unknown environment 'lbff'"),
    (["train", "--lake", "LAKE", "--tasks", "lbf/9x9"], 2, "unknown task 'lbf/9x9'"),
    (["train", "--lake", "LAKE", "--split", "tset"], 2, "unknown split of lbf 'tset'"),
    (["train", "--lake", "LAKE", "--set", "num_updates=abc"], 2,
     "OfflineConfig.num_updates must be an int, got 'abc'"),
    (["train", "--lake", "LAKE", "--seeds", "1", "1"], 2, "--seeds: seed 1 is given twice"),
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
    (["lbf/8x8-2p-2f", "--lake", "FILE"], 1, "lake root FILE is not a directory"),
    (["lbf/8x8-2p-2f", "--lake", "ftp://x"], 1, "bad lake root 'ftp://x'"),
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


# Run in a fresh interpreter: each case calls a CLI's main() with bad arguments, then the
# process reports which JAX modules it imported (none: every check came before JAX).
_BAD_INPUT_WITHOUT_JAX = """
import contextlib, io, json, sys
from trainer.offline.__main__ import main as offline
from trainer.online.__main__ import main as online
results = []
for prog, argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = (offline if prog == "offline" else online)(argv)
        except SystemExit as e:  # argparse's usage errors
            status = e.code
    results.append([status, err.getvalue().strip().splitlines()[-1]])
print(json.dumps({"results": results, "jax": sorted(
    m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "flax", "optax", "orbax"))}))
"""

BAD_INPUT = [
    ("online", ["lbf/8x8-2p-2f", "--profile", "huge"], 2,
     "argument --profile: invalid choice: 'huge' (choose from 'demo', 'paper')"),
    ("online", ["lbf/8x8-2p-2f", "--root", "LAKE"], 2, "unrecognized arguments: --root"),
    ("online", ["foo"], 2, "unknown task 'foo'; the closest of 52: "),
    ("online", ["lbf/8x8-2p-2f", "--set", "embed_dimm=16"], 2,
     "--set 'embed_dimm=16': unknown OnlineConfig field embed_dimm; did you mean embed_dim?"),
    ("online", ["lbf/8x8-2p-2f", "--set", "total_env_steps=abc"], 2,
     "OnlineConfig.total_env_steps must be an int, got 'abc'"),
    ("online", ["lbf/8x8-2p-2f", "--run", "bad/id"], 2, "bad run id 'bad/id'"),
    ("offline", ["train", "--lake", "LAKE", "--set", "num_updatez=3"], 2,
     "--set 'num_updatez=3': unknown OfflineConfig field num_updatez; did you mean num_updates?"),
    ("offline", ["train", "--lake", "LAKE", "--set", "num_updates"], 2,
     "--set 'num_updates': expected NAME=VALUE"),
    ("offline", ["train", "--lake", "LAKE", "--algorithm", "foo"], 2,
     "argument --algorithm: invalid choice: 'foo' (choose from 'bc', 'cql', 'oryx')"),
    ("offline", ["train", "--lake", "LAKE", "--quality", "mid"], 2,
     "argument --quality: invalid choice: 'mid'"),
    ("offline", ["train", "--lake", "LAKE", "--quality", "high+low"], 2,
     "quality='high+low' needs low_fraction"),
    ("offline", ["train", "--lake", "LAKE", "--profile", "huge"], 2,
     "argument --profile: invalid choice: 'huge'"),
    ("offline", ["train", "--lake", "LAKE", "--tasks", "lbf/9x9"], 2,
     "unknown task 'lbf/9x9'; did you mean lbf/8x8-2p-2f?"),
    ("offline", ["train", "--lake", "LAKE", "--set", "num_updates=abc"], 2,
     "OfflineConfig.num_updates must be an int, got 'abc'"),
    ("offline", ["train", "--lake", "LAKE", "--seeds", "1", "1"], 2,
     "--seeds: seed 1 is given twice"),
    ("offline", ["train", "--lake", "LAKE", "--processes", "0"], 2,
     "--processes 0 must be >= 1"),
    ("offline", ["train", "--lake", "TMP"], 1, "no lake at TMP: it holds none of the tables"),
    ("offline", ["evaluate", "TMP/model", "--lake", "TMP"], 1, "no lake at TMP"),
    ("offline", ["evaluate", "TMP/model", "--lake", "LAKE", "--checkpoint", "foo"], 2,
     "unknown checkpoint 'foo'"),
]


def test_bad_input_fails_before_jax_is_imported(roots, tmp_path):
    """`--profile huge` took 17.6 s to fail, a bad `--set` value or an unknown algorithm or
    task 11-17 s: the CLIs imported JAX before checking their arguments."""
    cases = [[prog, [_sub(a, roots) for a in argv]] for prog, argv, _, _ in BAD_INPUT]
    p = subprocess.run([sys.executable, "-c", _BAD_INPUT_WITHOUT_JAX, json.dumps(cases)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO),
                            "SABLE_LAKE": str(tmp_path / "default-lake")})
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for (prog, argv, status, message), (got, line) in zip(BAD_INPUT, out["results"],
                                                         strict=True):
        assert got == status and _sub(message, roots) in line, (prog, argv, got, line)
        assert line.startswith(f"python -m trainer.{prog}"), line
    assert out["jax"] == []
    assert not (tmp_path / "default-lake").exists() and not (tmp_path / "models").exists()


def test_an_unknown_set_field_is_a_usage_error_naming_the_closest(roots, tmp_path):
    p = subprocess.run([sys.executable, "-m", "trainer.offline", "train", "--lake",
                        roots["LAKE"], "--set", "num_updatez=3"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == ("python -m trainer.offline: error: --set 'num_updatez=3': unknown "
                        "OfflineConfig field num_updatez; did you mean num_updates?\n")


def _help(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_lists_choices_and_defaults(capsys):
    train = _help(offline_main, ["train", "--help"], capsys)
    for words in ("--algorithm {bc,cql,oryx}", "(default: oryx)",
                  "--quality {all,high,low,high+low}", "(default: all)",
                  "--profile {demo,paper}", "(default: demo)", "(default: lbf)",
                  "lake root (default: $SABLE_LAKE, else ./lake)"):
        assert words in train, words
    evaluate = _help(offline_main, ["evaluate", "--help"], capsys)
    assert "(default: 320)" in evaluate and "(default: best)" in evaluate
    online = _help(online_main, ["--help"], capsys)
    for words in ("--profile {demo,paper}", "(default: demo)",
                  "lake root (default: $SABLE_LAKE, else ./lake)"):
        assert words in online, words
