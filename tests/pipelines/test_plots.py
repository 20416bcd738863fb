"""Plots published for the asset pages: a content-addressed PNG in the lake and a markdown
image short enough for the Dagster UI to show inline; too long a URL is refused."""

import pytest

from pipelines.plots import (
    REPORTS_URL_ENV,
    _slope,
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
