"""Plots of dataset cards (`lake_schema.cards.DatasetCard`) for the `dataset_card` asset:
matplotlib (Agg) figures as PNG bytes, through `pipelines.plots`' helpers.

Imported lazily by the asset, so loading the definitions never imports matplotlib. Panels
stack, one per run, at the width of the asset page's value column (`pipelines.plots`).
"""

from collections.abc import Sequence

import numpy as np

from lake_schema.cards import DatasetCard
from lake_schema.schema import CARD_QUANTILES
from pipelines.plots import DPI, WIDTH_IN, figure_png, legend_below, pyplot

QUALITY_COLOURS = {"low": "tab:orange", "high": "tab:blue"}


def returns_by_checkpoint_png(cards: Sequence[DatasetCard], title: str) -> bytes:
    """Episode returns per checkpoint, one box per checkpoint coloured by its quality tag:
    the box spans the card's 25-75% quantiles, whiskers 5-95%, a dot the mean, ticks the
    min and max; the online Sable and random reference returns as lines. One panel per run,
    one under the other (the page's width is one panel's), and one legend below them.
    """
    plt = pyplot()
    fig, axes = plt.subplots(len(cards), 1, figsize=(WIDTH_IN, 3.2 * len(cards) + 0.4),
                             dpi=DPI, squeeze=False, layout="constrained")
    q = {level: i for i, level in enumerate(CARD_QUANTILES)}
    for ax, card in zip(axes[:, 0], cards, strict=True):
        for r in card.checkpoints:
            x, qs, colour = r["checkpoint"], r["return_quantiles"], QUALITY_COLOURS[r["quality"]]
            ax.add_patch(plt.Rectangle((x - 0.3, qs[q[0.25]]), 0.6, qs[q[0.75]] - qs[q[0.25]],
                                       color=colour, alpha=0.5))
            ax.plot([x - 0.3, x + 0.3], [qs[q[0.5]]] * 2, color=colour, lw=2)
            ax.plot([x, x], [qs[q[0.05]], qs[q[0.25]]], color=colour, lw=1)
            ax.plot([x, x], [qs[q[0.75]], qs[q[0.95]]], color=colour, lw=1)
            ax.plot([x, x], [r["return_min"], r["return_max"]], "_", color=colour, ms=10)
            ax.plot(x, r["return_mean"], "o", color="k", ms=3)
        for quality, colour in QUALITY_COLOURS.items():
            if card.of_quality(quality):
                ax.plot([], [], "s", color=colour, alpha=0.5, label=f"quality {quality}")
        if card.reference is not None:
            ax.axhline(card.reference["sable_return"], color="tab:green", ls="--",
                       label="online Sable (final)")
            ax.axhline(card.reference["random_return"], color="tab:red", ls=":",
                       label="random policy")
        if len(card.checkpoints) <= 20:  # more would crowd: matplotlib's own ticks then
            ax.set_xticks([r["checkpoint"] for r in card.checkpoints])
        ax.set(xlabel="checkpoint", ylabel="episode return")
        ax.set_title(f"{title}: run {card.run}", fontsize=10)
        ax.grid(alpha=0.3)
    legend_below(fig, ncol=4)
    return figure_png(fig)


def action_histogram_png(cards: Sequence[DatasetCard], title: str) -> bytes:
    """Each agent slot's action frequencies (grouped bars: one group per action, named by the
    env's action names, one bar per slot), one panel per run, one under the other, and the
    slots' legend below them."""
    plt = pyplot()
    fig, axes = plt.subplots(len(cards), 1, figsize=(WIDTH_IN, 3.0 * len(cards) + 0.4),
                             dpi=DPI, squeeze=False, layout="constrained")
    for ax, card in zip(axes[:, 0], cards, strict=True):
        freq = card.action_frequencies()  # [N, A]
        n, a = freq.shape
        width = 0.8 / n
        for slot in range(n):
            ax.bar(np.arange(a) + (slot - (n - 1) / 2) * width, freq[slot], width,
                   label=f"agent {slot}")
        ax.set_xticks(range(a), card.task.spec.action_names)
        ax.set(xlabel="action", ylabel="frequency")
        ax.set_title(f"{title}: run {card.run}", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    legend_below(fig, ncol=8)
    return figure_png(fig)
