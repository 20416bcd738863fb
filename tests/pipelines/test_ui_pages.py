"""What a researcher sees: the report's page and a model's evaluation page in the real Dagster
UI (webserver + headless Debian chromium) show their tables and plots without a click.

The lake holds the evaluations of three models (two configurations, seeds); the report is a
real materialisation; the evaluation page's metadata is `evaluation_metadata` (what the
evaluation assets emit, read back from the lake) recorded on `offline_eval_test`, so no
model is trained here.
"""

import re
import shutil
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from pipelines.assets.offline import evaluation_metadata
from pipelines.assets.report import report
from pipelines.plots import REPORTS_DIR, REPORTS_URL_ENV
from pipelines.resources import default_resources
from pipelines.screenshots import dump_dom, free_port, reports_server, screenshot, webserver
from tests.pipelines.test_report import TEST, TRAIN, add_model

ROOT = Path(__file__).resolve().parents[2]


class _Page(HTMLParser):
    """Images (src) and table cells (text) of a rendered page, and its `[Show ...]` links."""

    def __init__(self, html: str):
        super().__init__()
        self.images: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None
        self.feed(html)
        self.text = html

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        elif tag == "td":
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None


def _png(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


@pytest.fixture
def ui(tmp_path, monkeypatch, lake):
    """A lake with evaluations, the report materialised, a model page recorded, and the
    webserver plus the reports server running: yields (UI base URL, reports base URL)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    reports_port = free_port()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SABLE_LAKE", lake.root)
    monkeypatch.setenv(REPORTS_URL_ENV, f"http://127.0.0.1:{reports_port}")
    for seed in (0, 1):
        add_model(lake, f"lbf-oryx-multi{seed}", TRAIN,
                  {**dict.fromkeys(TRAIN, 0.9), TEST[0]: 0.6 + seed / 10, TEST[1]: 0.7}, seed=seed)
    add_model(lake, "lbf-oryx-single0", TRAIN[:1], {TRAIN[0]: 1.0, TEST[0]: 0.3, TEST[1]: 0.4})
    add_model(lake, "lbf-bc-single0", TRAIN[:1], {TRAIN[0]: 1.0, TEST[0]: 0.2, TEST[1]: 0.3},
              algorithm="bc")
    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([report], instance=instance,
                              resources=default_resources(lake.root)).success
        instance.add_dynamic_partitions("model", ["lbf-oryx-multi1"])  # the model's page
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "offline_eval_test", partition="lbf-oryx-multi1",
            metadata=evaluation_metadata(lake, "lbf-oryx-multi1", {"test"})))
    with reports_server(lake.path(REPORTS_DIR), reports_port) as files, \
            webserver(free_port()) as base:
        yield base, files


def _pixels_of(png: Path, colour: tuple[int, int, int]) -> int:
    """Pixels of `colour` in the screenshot `png`."""
    from PIL import Image

    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    return int((np.abs(rgb - list(colour)).max(axis=-1) < 8).sum())


def _orange_pixels(png: Path) -> int:
    """Pixels of matplotlib's tab:orange (the held-out bars of the report's plot): none of
    the UI's own colours."""
    return _pixels_of(png, (255, 127, 14))


def test_report_and_model_pages_show_tables_and_plots_without_a_click(ui, tmp_path):
    base, files = ui
    report_page = _Page(dump_dom(f"{base}/assets/report"))
    model_page = _Page(dump_dom(
        f"{base}/assets/offline_eval_test?view=partitions&partition=lbf-oryx-multi1"))
    for page, plots, cells in (
        (report_page, {"headline.png", "train_vs_test.png", "compare_train_tasks.png"},
         {"oryx tasks=3", "bc tasks=8x8-2p-2f"}),  # configuration labels of the table
        (model_page, {"per-task normalised return"},
         {"lbf-oryx-multi0", "lbf-oryx-multi1", "lbf-bc-single0", "12x12-4p-5f"}),
    ):
        shown = [src for src in page.images if src.startswith(files)]
        alts = set(re.findall(r'<img [^>]*alt="([^"]+)"', page.text))
        assert plots <= alts, (plots, alts)
        assert len(shown) >= len(plots)
        for src in shown:  # each inline plot is a real PNG, served where the page points
            assert _png(src).startswith(b"\x89PNG")
        assert cells <= set(page.cells), (cells, page.cells)
        assert "[Show Markdown]" not in page.text  # no plot hidden behind a click
    # the model page's table has every model, normalised returns rounded (narrow columns)
    assert "0.7" in model_page.cells and "0.65" in model_page.cells
    # and the plots are drawn at 1600 px: the screenshot has the report's bars in it
    shot = screenshot(f"{base}/assets/report", tmp_path / "report.png", size="1600,3000")
    assert _orange_pixels(shot) > 500
    # the first screen (1600 x 1000) is the headline: its bars (one training task: viridis'
    # first colour) and their error bars are in it
    first = screenshot(f"{base}/assets/report", tmp_path / "first.png", size="1600,1000")
    assert _pixels_of(first, (68, 1, 84)) > 300
    assert report_page.images and report_page.text.index('alt="headline.png"') < min(
        report_page.text.index(f'alt="{name}"') for name in ("train_vs_test.png",
                                                             "compare_train_tasks.png"))
