"""Plots published for the asset pages: a content-addressed PNG in the lake and a markdown
image short enough for the Dagster UI to show inline; too long a URL is refused."""

from types import SimpleNamespace

import polars as pl
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lake_schema.cards import dataset_cards
from lake_schema.catalogue import get_task
from lake_schema.testing import fill_lake
from pipelines import card_plots, plots
from pipelines.plots import (
    DPI,
    REPORTS_URL_ENV,
    WIDTH_IN,
    _slope,
    comparison_png,
    configurations_png,
    headline_png,
    learning_curve_png,
    publish_png,
    task_bars_png,
    training_curves_png,
)
from tests.helpers.plots import assert_published

ROWS = [{"task": "lbf/12x12-4p-5f", "normalised_return": 0.7, "mean_return": 0.35,
         "std_return": 0.2, "reference_return": 0.5, "episodes": 16},
        {"task": "14x14-3p-3f", "normalised_return": 0.4, "mean_return": 0.0, "std_return": 0.0,
         "reference_return": 0.0, "episodes": 16}]  # a zero reference: no error bar, no crash


def test_publish_writes_each_figure_once_under_its_hash(lake, monkeypatch):
    monkeypatch.setenv(REPORTS_URL_ENV, "http://reports.example:8080/")
    png = task_bars_png(ROWS, "per task")
    value = publish_png(lake, png, "per task").value
    assert value.startswith("![per task](http://reports.example:8080/plots/")
    assert assert_published(lake, value, "per task") == png
    assert publish_png(lake, png, "again").value.endswith(value.split("(", 1)[1])
    assert len(lake.find("reports/plots")) == 1
    other = publish_png(lake, task_bars_png(ROWS[:1], "one task"), "one task").value
    assert other != value and len(lake.find("reports/plots")) == 2


def test_training_curves_with_periodic_evaluations(lake):
    history = [{"update": u, "loss": 1.0 / u, "policy_loss": 0.5 / u, "critic_loss": 0.0,
                "conservative_loss": 0.0, "task_loss": {"lbf/8x8-2p-2f": 1.0 / u},
                **({"eval_normalised_return": 0.1 * u,
                    "eval_task_normalised_return": {"lbf/8x8-2p-2f": 0.1 * u}} if u % 2 else {})}
               for u in range(1, 6)]
    assert_published(lake, publish_png(lake, training_curves_png(history, "bc"), "curves").value,
                     "curves")


def test_a_url_too_long_to_show_inline_is_refused(lake, monkeypatch):
    monkeypatch.setenv(REPORTS_URL_ENV, "http://127.0.0.1:3001/" + "x" * 1000)
    with pytest.raises(ValueError, match=f"too long for the UI to show inline; shorten "
                                         f"\\${REPORTS_URL_ENV}"):
        publish_png(lake, task_bars_png(ROWS, "t"), "t")


@pytest.mark.parametrize("row, slope", [
    ({"mean_return": 0.35, "normalised_return": 0.7, "reference_return": 0.5}, 1 / 0.5),
    # random -5, Sable -2: n = (m + 5) / 3, so d n / d m = 1/3
    ({"mean_return": -3.0, "normalised_return": 2 / 3, "reference_return": -2.0}, 1 / 3),
    ({"mean_return": 0.5, "normalised_return": 1.0, "reference_return": 0.5}, 1 / 0.5),
])
def test_error_bars_scale_with_the_normalisation_that_applied(row, slope):
    assert _slope(row) == pytest.approx(slope)


def _curves(tasks: list[str]) -> list[dict]:
    return [{"update": u, "loss": 1.0 / u, "policy_loss": 0.5 / u, "critic_loss": 0.2 / u,
             "conservative_loss": 0.1 / u, "task_loss": {t: i / u for i, t in enumerate(tasks)},
             "eval_normalised_return": 0.1 * u,
             "eval_task_normalised_return": {t: 0.1 * u + i / 50 for i, t in enumerate(tasks)}}
            for u in range(1, 6)]


def test_no_legend_is_cut_and_figures_fit_the_page(lake, monkeypatch):
    """Every figure of an asset page is at most the value column's width (the UI never
    scales one down) and each legend lies wholly inside its figure, however many entries:
    twelve tasks, six long group labels, three envs, two runs of a card."""
    figures = []
    original = plots.figure_png

    def keep(fig):
        figures.append(fig)
        return original(fig)

    monkeypatch.setattr(plots, "figure_png", keep)
    monkeypatch.setattr(card_plots, "figure_png", keep)
    curve = [SimpleNamespace(quality="low" if k < 5 else "high", env_steps=k * 4096,
                             mean_return=k / 10, std_return=0.1, episodes=16) for k in range(10)]
    learning_curve_png(SimpleNamespace(train_curve=[(i * 1000, i / 50) for i in range(40)],
                                       curve=curve, reference_return=0.9, random_return=0.1),
                       "online Sable on lbf/15x15-4p-5f (run sable-seed0)")
    training_curves_png(_curves([f"rware/task-{i}" for i in range(12)]), "oryx lbf-oryx-0123")
    task_bars_png(ROWS, "per task")
    groups = ["oryx quality=high low_fraction=0.5", "bc quality=high", "cql seq_len=20",
              "oryx embed_dim=128 #2", "oryx embed_dim=64 quality=all", "bc embed_dim=128"]
    headline_png(pl.DataFrame([
        {"env": env, "compared": g, "num_train_tasks": k, "test_mean": 0.2 + k / 10,
         "test_se": 0.05} for env in ("lbf", "rware", "connector") for g in ("bc", "oryx")
        for k in (1, 2, 3, 8)]))
    configurations_png(pl.DataFrame([{"label": g, "train_mean": 0.95, "train_se": 0.02,
                                      "test_mean": 0.5, "test_se": 0.05} for g in groups]),
                       "train vs held-out")
    comparison_png(pl.DataFrame([{"compared": g, "num_train_tasks": k, "test_mean": k / 5,
                                  "test_se": 0.04} for g in groups for k in (1, 2, 3)]),
                   "num_train_tasks", "Task scaling")
    task = get_task("lbf/10x10-3p-3f")
    fill_lake(lake, [task.name], runs=("sable-seed0", "sable-seed1"), checkpoints=3,
              episodes=2, seed=1)
    cards = dataset_cards(lake, task)
    card_plots.returns_by_checkpoint_png(cards, task.name)
    card_plots.action_histogram_png(cards, task.name)

    assert len(figures) == 8
    for fig in figures:
        title = fig.axes[0].get_title()
        assert fig.bbox.width <= WIDTH_IN * DPI + 0.5, title
        canvas = FigureCanvasAgg(fig)  # saving closed the figure: draw it again as saved
        canvas.draw()
        renderer = canvas.get_renderer()
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        assert legends, title
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert box.x0 >= 0 and box.y0 >= 0, (title, box)
            assert box.x1 <= fig.bbox.x1 + 0.5 and box.y1 <= fig.bbox.y1 + 0.5, (title, box)
