"""`export-hf` writes a lake selection as a Hugging Face dataset folder (issue 34, section 4):
`datasets.load_dataset` reads every config and split offline, with exactly the lake's rows in
lake order and the card's features; the card's front matter parses and names every config,
split and feature, its text every observation feature, action, statistic and reference; a
lost shard is an error when loading, not a smaller dataset; steps that are not their index's
episodes are an error naming the file; bad input is one line on stderr (2: the arguments, 1:
the lake) and leaves nothing behind; what a killed export left is removed by the next."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from lake_schema import export_hf
from lake_schema.catalogue import get_task
from lake_schema.cli import main
from lake_schema.errors import LakeFileError
from lake_schema.export_hf import CITATION, LICENSE, columns, config_name
from lake_schema.reader import Selection, read_table, table_versions
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from lake_schema.writer import write_reference

LBF, CONNECTOR, RWARE = "lbf/8x8-2p-2f", "connector/12x12x4a", "rware/tiny-2ag"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    """Two runs of lbf and connector at 3 checkpoints (low, low, high); rware at one
    checkpoint (high only); references for lbf's r1."""
    lake = Lake(tmp_path_factory.mktemp("hf") / "lake")
    fill_lake(lake, [LBF, CONNECTOR], runs=("r1", "r2"), checkpoints=3, episodes=3,
              lengths=(3, 12))
    fill_lake(lake, [RWARE], runs=("r1",), checkpoints=1, episodes=2, lengths=(3, 8))
    write_reference(lake, LBF, "r1", sable_returns=[0.75, 0.25], random_returns=[0.125],
                    env_steps=1000)
    return lake


@pytest.fixture(scope="module")
def exported(lake) -> Path:
    dest = Path(lake.root).parent / "hf-all"
    assert main(["--lake", str(lake.root), "export-hf", str(dest), "--task", LBF,
                 "--task", CONNECTOR]) == 0
    return dest


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """`datasets` with no network and a cache of its own (its config reads the environment
    when imported, so the module's values are set too); returns the cache folder."""
    cache = tmp_path / "hf-cache"
    for name, value in (("HF_DATASETS_OFFLINE", "1"), ("HF_HUB_OFFLINE", "1"),
                        ("HF_HOME", str(cache)), ("HF_DATASETS_CACHE", str(cache / "ds"))):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "ds")
    return cache / "ds"


def _load(folder: Path, config: str, split: str, cache: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(folder), name=config, split=split, cache_dir=str(cache))


def _lake_rows(lake: Lake, task: str, quality: str, runs: list[str] | None = None
               ) -> list[dict]:
    """The exported rows as the lake's reader gives them: steps joined with their episode."""
    t = get_task(task)
    sel = Selection(env=t.env, tasks=[t.scenario], quality=quality, runs=runs)
    episodes = {(e["run"], e["checkpoint"], e["episode"]): e
                for e in read_table(lake, "episodes", sel).to_pylist()}
    rows = []
    for s in read_table(lake, "steps", sel).to_pylist():
        e = episodes[(s["run"], s["checkpoint"], s["episode"])]
        rows.append({k: s[k] for k in ("run", "checkpoint", "episode", "step", "obs", "action",
                                       "legal", "reward", "terminated", "truncated")}
                    | {"episode_return": e["return"], "quality": s["quality"],
                       "env_steps": e["env_steps"]})
    return sorted(rows, key=lambda r: (r["run"], r["checkpoint"], r["episode"], r["step"]))


def _front_matter(folder: Path) -> dict:
    lines = (folder / "README.md").read_text().splitlines()
    assert lines[0] == "---"
    end = lines.index("---", 1)
    return yaml.safe_load("\n".join(lines[1:end]))


def test_load_dataset_reads_every_config_and_split_with_the_lakes_rows(lake, exported,
                                                                       offline):
    for task in (LBF, CONNECTOR):
        spec = get_task(task).spec
        for split in ("low", "high"):
            ds = _load(exported, config_name(get_task(task)), split, offline)
            expected = _lake_rows(lake, task, split)
            assert len(expected) > 10 and ds.to_list() == expected, (task, split)
            assert ds.features["action"].feature.names == list(spec.action_names)
            assert ds.column_names == [c.name for c in columns(get_task(task))]


def test_the_front_matter_names_every_config_split_and_feature(lake, exported):
    meta = _front_matter(exported)
    names = {config_name(get_task(t)): get_task(t) for t in (LBF, CONNECTOR)}
    assert meta["license"] == LICENSE
    assert [c["config_name"] for c in meta["configs"]] == list(names)
    for config in meta["configs"]:
        name = config["config_name"]
        assert config["data_files"] == [{"split": q, "path": f"{name}/{q}-*.parquet"}
                                        for q in ("low", "high")]
    for info in meta["dataset_info"]:
        task = names[info["config_name"]]
        features = datasets.Features._from_yaml_list(info["features"])
        assert list(features) == [c.name for c in columns(task)]
        assert features["action"].feature.names == list(task.spec.action_names)
        assert features["obs"].feature.length == task.spec.obs_width
        for split in info["splits"]:  # the files hold the features' types, row counts too
            files = sorted((exported / info["config_name"]).glob(f"{split['name']}-*.parquet"))
            assert all(pq.read_schema(f).equals(features.arrow_schema, check_metadata=False)
                       for f in files)
            assert sum(pq.read_metadata(f).num_rows for f in files) == split["num_examples"]
            assert split["num_examples"] == len(_lake_rows(lake, task.name, split["name"]))


def test_the_card_names_features_actions_statistics_references_and_provenance(lake, exported):
    text = (exported / "README.md").read_text()
    for task in (get_task(LBF), get_task(CONNECTOR)):
        assert f"## `{config_name(task)}`" in text
        assert all(f"| `{f}` |" in text for f in task.spec.obs_features)
        assert all(f"| `{a}` |" in text for a in task.spec.action_names)
    episodes = read_table(lake, "episodes", Selection(env="lbf", tasks=["8x8-2p-2f"]))
    assert f"{LBF}: 2 agents, time limit 100 steps" in text
    assert f"{episodes.num_rows} episodes" in text
    assert "| r1 | 0.5 (std 0.25, 2 episodes) | 0.125 (std 0, 1 episodes) | 1000 |" in text
    assert "None recorded" in text  # connector has no references
    versions = table_versions(lake, ["cards", "episodes", "references"])
    assert str(versions["episodes"]) in text and "sable-lake 0.1.0" in text
    assert CITATION in text and "Multi-task sequence models generalise" in text


def test_quality_and_run_select_the_splits_and_the_statistics(lake, tmp_path, offline,
                                                              capsys):
    dest = tmp_path / "empty"
    dest.mkdir()  # an empty folder is taken
    assert main(["--lake", str(lake.root), "export-hf", str(dest), "--task", LBF,
                 "--quality", "high", "--run", "r2"]) == 0
    expected = _lake_rows(lake, LBF, "high", ["r2"])
    episodes = len({(r["checkpoint"], r["episode"]) for r in expected})
    assert capsys.readouterr().out == (f"wrote {dest}: {episodes} episodes, {len(expected)} "
                                       "steps; configs lbf-8x8-2p-2f\n")
    assert _load(dest, "lbf-8x8-2p-2f", "high", offline).to_list() == expected
    with pytest.raises(ValueError, match="low"):
        _load(dest, "lbf-8x8-2p-2f", "low", offline)
    meta = _front_matter(dest)
    assert [s["name"] for s in meta["dataset_info"][0]["splits"]] == ["high"]
    text = (dest / "README.md").read_text()
    assert "| r2 | 2 | high |" in text and "| r1 |" not in text and "| r2 | 0 |" not in text


def test_a_lost_shard_is_an_error_when_loading_not_a_smaller_dataset(exported, tmp_path,
                                                                     offline):
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    (copy / "lbf-8x8-2p-2f" / "low-00001-of-00004.parquet").unlink()
    with pytest.raises(datasets.exceptions.NonMatchingSplitsSizesError):
        _load(copy, "lbf-8x8-2p-2f", "low", offline)


def test_steps_that_are_not_their_index_episodes_are_an_error_naming_the_file(lake):
    task = get_task(LBF)
    index = read_table(lake, "episodes", Selection(env="lbf", tasks=[task.scenario],
                                                   runs=["r1"], checkpoints=(0, 0)))
    rel = index["steps_file"][0].as_py()
    lengths = index["length"].to_pylist()
    longer = index.set_column(index.schema.get_field_index("length"), "length",
                              pa.array([lengths[0] + 1, *lengths[1:]], pa.int32()))
    assert export_hf._rows(lake, task, rel, index, export_hf.row_schema(task)).num_rows == sum(
        lengths)
    with pytest.raises(LakeFileError, match=f"{rel}: its {sum(lengths)} rows are not the "):
        export_hf._rows(lake, task, rel, longer, export_hf.row_schema(task))


BAD = [  # (arguments after the destination, exit status, what the line says)
    (["--task", "lbf/9x9-2p-2f"], 2, "unknown task 'lbf/9x9-2p-2f'"),
    (["--task", LBF, "--quality", "best"], 2, "invalid choice: 'best'"),
    (["--task", RWARE, "--quality", "low"], 1, "no low quality episodes of rware/tiny-2ag"),
    (["--task", LBF, "--run", "r9"], 1, "no episodes of lbf/8x8-2p-2f run r9"),
]


@pytest.mark.parametrize(("args", "status", "says"), BAD, ids=["task", "quality-tag",
                                                               "quality-empty", "run"])
def test_a_bad_selection_is_one_line_and_writes_nothing(lake, tmp_path, capsys, args, status,
                                                        says):
    assert main(["--lake", str(lake.root), "export-hf", str(tmp_path / "out"), *args]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sable-lake: error: ") and says in err[0], err
    assert list(tmp_path.iterdir()) == []  # no folder, no hidden half-export


def test_a_folder_with_files_or_no_lake_is_one_line(lake, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert main(["--lake", str(lake.root), "export-hf", str(full), "--task", LBF]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{full}: the folder exists and is not empty" in line
    assert [p.name for p in full.iterdir()] == ["notes.txt"]
    nowhere = tmp_path / "nolake"
    nowhere.mkdir()
    assert main(["--lake", str(nowhere), "export-hf", str(tmp_path / "out"), "--task",
                 LBF]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"no lake at {nowhere}" in line and not (tmp_path / "out").exists()


def test_the_command_line_says_one_line_without_a_traceback(lake, tmp_path):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    p = subprocess.run([sys.executable, "-m", "lake_schema", "--lake", str(lake.root),
                        "export-hf", str(a_file), "--task", LBF], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        f"sable-lake: error: argument dest: {a_file}: is a file; export-hf writes a dataset "
        "folder there"]


def test_an_export_killed_midway_leaves_a_folder_the_next_export_removes(lake, tmp_path):
    """A real SIGKILL after the shards are written leaves the hidden folder; the next export
    to the same folder removes it, but not one of a process still running or of another
    host."""
    dest = tmp_path / "out"
    killed_at_the_card = (
        "import os, signal; from lake_schema import export_hf; "
        "from lake_schema.storage import Lake; "
        "export_hf.dataset_card = lambda *a: os.kill(os.getpid(), signal.SIGKILL); "
        f"export_hf.export_hf(Lake({str(lake.root)!r}), {str(dest)!r}, [{LBF!r}])")
    p = subprocess.run([sys.executable, "-c", killed_at_the_card], cwd=REPO, timeout=120)
    assert p.returncode == -signal.SIGKILL
    (abandoned,) = tmp_path.iterdir()
    assert abandoned.name.startswith(".out.export-hf-") and any(abandoned.rglob("*.parquet"))
    host, pid = socket.gethostname(), abandoned.name.split("-")[-2]
    running = tmp_path / f".out.export-hf-{host}-{os.getpid()}-0000abcd"
    elsewhere = tmp_path / f".out.export-hf-another-host-{pid}-0000abcd"
    for folder in (running, elsewhere):
        folder.mkdir()
    assert main(["--lake", str(lake.root), "export-hf", str(dest), "--task", LBF]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [running.name, elsewhere.name, "out"])
    assert (dest / "README.md").exists()
