"""Plots of dataset cards (`lake_schema.cards.DatasetCard`) for the `dataset_card` asset:
matplotlib (Agg) figures as PNG bytes, through `pipelines.plots`' helpers.

Imported lazily by the asset, so loading the definitions never imports matplotlib.
"""

from collections.abc import Sequence

import numpy as np

from lake_schema.cards import DatasetCard
from lake_schema.schema import CARD_QUANTILES
from pipelines.plots import figure_png, pyplot

QUALITY_COLOURS = {"low": "tab:orange", "high": "tab:blue"}


def returns_by_checkpoint_png(cards: Sequence[DatasetCard], title: str) -> bytes:
    """Episode returns per checkpoint, one box per checkpoint coloured by its quality tag:
    the box spans the card's 25-75% quantiles, whiskers 5-95%, a dot the mean, ticks the
    min and max; the online Sable and random reference returns as lines. One panel per run.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cards), figsize=(5.5 * len(cards), 3.8), dpi=90,
                             squeeze=False)
    q = {level: i for i, level in enumerate(CARD_QUANTILES)}
    for ax, card in zip(axes[0], cards, strict=True):
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
        ax.set_xticks([r["checkpoint"] for r in card.checkpoints])
        ax.set(xlabel="checkpoint", ylabel="episode return", title=f"{title}: run {card.run}")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    return figure_png(fig)


def action_histogram_png(cards: Sequence[DatasetCard], title: str) -> bytes:
    """Each agent slot's action frequencies (grouped bars: one group per action, one bar
    per slot), one panel per run."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cards), figsize=(5.5 * len(cards), 3.6), dpi=90,
                             squeeze=False)
    for ax, card in zip(axes[0], cards, strict=True):
        freq = card.action_frequencies()  # [N, A]
        n, a = freq.shape
        width = 0.8 / n
        for slot in range(n):
            ax.bar(np.arange(a) + (slot - (n - 1) / 2) * width, freq[slot], width,
                   label=f"agent {slot}")
        ax.set_xticks(range(a))
        ax.set(xlabel="action", ylabel="frequency", title=f"{title}: run {card.run}")
        ax.legend(fontsize=7, ncol=max(1, n // 8))
        ax.grid(alpha=0.3, axis="y")
    return figure_png(fig)
