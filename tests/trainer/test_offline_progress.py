"""Progress lines with rate and ETA from the long offline steps (the training cache build,
training; evaluation's in tests/pipelines/test_progress_run_log.py), through the shared
`trainer.progress` helper, to the caller's `log`."""

import re

import pytest

import trainer.offline.training as training
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from trainer.data import DataSelection
from trainer.offline import OfflineConfig, train
from trainer.progress import Progress, duration

TASKS = ("lbf/8x8-2p-2f", "lbf/10x10-3p-3f")
TINY = dict(embed_dim=16, num_heads=2, batch_size=8, seq_len=5, pad_agents=4, log_every=1,
            checkpoint_every=3, num_updates=6, algorithm="bc")
LINE = re.compile(r"^(?P<done>[\d,]+)/(?P<total>[\d,]+) (?P<unit>[a-z ]+) \((?P<pct>[\d.]+)%\)  "
                  r"(?P<rate>\?|[\d.,]+) \S+/s  ETA (?P<eta>\?|\d+h\d\dm|\d+m\d\ds|\d+s)")


def _seconds(eta: str) -> float:
    if eta == "?":
        return float("nan")
    h = re.match(r"(\d+)h(\d+)m$", eta)
    if h:
        return int(h[1]) * 3600 + int(h[2]) * 60
    m = re.match(r"(?:(\d+)m)?(\d+)s$", eta)
    return int(m[1] or 0) * 60 + int(m[2])


def _progress(lines: list[str], unit: str) -> list[re.Match]:
    found = [LINE.match(x) for x in lines]
    return [m for m in found if m is not None and m["unit"] == unit]


def test_the_eta_is_the_work_left_at_the_rate():
    lines: list[str] = []
    p = Progress(600, "updates", log=lines.append)
    assert p.due()  # the first line is always due: a run shows its ETA early
    p.emit(100, 2.0, "  | loss 1.0")
    p.emit(600, 2.0)
    assert lines[0].startswith("100/600 updates (16.7%)  2.00 updates/s  ETA 4m10s  | loss 1.0")
    assert lines[1] == "600/600 updates (100.0%)  2.00 updates/s  ETA 0s"
    p.emit(200, float("nan"))
    assert "? updates/s  ETA ?" in lines[2]
    assert [duration(s) for s in (5, 65, 3725, float("nan"))] == ["5s", "1m05s", "1h02m", "?"]


def test_cache_build_and_training_log_progress_with_eta(tmp_path, monkeypatch):
    lake = Lake(tmp_path / "lake")
    fill_lake(lake, TASKS, checkpoints=2, episodes=4, lengths=(8, 30), seed=5)
    monkeypatch.setattr(training, "PROGRESS_INTERVAL_S", 0.0)  # a line at every log point
    lines: list[str] = []
    result = train(lake, DataSelection(env="lbf", tasks=TASKS), OfflineConfig(**TINY),
                   tmp_path / "run", cache_dir=tmp_path / "cache", log=lines.append)

    # the cache build: a line per task, in steps, ending at 100%
    cached = _progress(lines, "steps cached")
    assert len(cached) == len(TASKS) and any("building the training cache" in x for x in lines)
    assert cached[-1]["done"] == cached[-1]["total"] and cached[-1]["eta"] == "0s"
    assert "task 2/2 lbf/10x10-3p-3f" in lines[lines.index(cached[-1].string)]

    # training: one line per update here, update count, losses, rate and ETA
    updates = _progress(lines, "updates")
    assert [int(m["done"]) for m in updates] == list(range(1, 7))
    assert all(int(m["total"]) == 6 and "| loss " in m.string for m in updates)
    assert updates[0]["eta"] == "?"  # the first update's time is mostly compilation
    assert updates[-1]["eta"] == "0s" and updates[-1]["pct"] == "100.0"
    for m in updates[1:-1]:  # sane: the updates left at the stated rate, to the second
        rate = float(m["rate"].replace(",", ""))
        assert rate > 0
        assert abs(_seconds(m["eta"]) - (6 - int(m["done"])) / rate) <= 0.5 + 1e-9, m.string
    assert result.update == 6
    # evaluation's lines (a line per task): tests/pipelines/test_progress_run_log.py


@pytest.mark.parametrize("total", [0, 5])
def test_a_finished_count_has_no_time_left(total):
    lines: list[str] = []
    Progress(total, "tasks evaluated", log=lines.append).emit(total, 0.0)
    assert lines[0].endswith("ETA 0s")
