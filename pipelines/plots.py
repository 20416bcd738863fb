"""Plots for asset metadata: matplotlib (Agg) figures as PNG files in the lake, shown inline
on the asset's page in the Dagster UI.

Why files and a URL, not the PNG inside the metadata: the UI (dagster-webserver 1.13) renders
a markdown metadata value inline only when it is shorter than 1000 characters; a longer one
(any base64-embedded plot) hides behind a `[Show Markdown]` link. So each plot is written to
`<lake>/reports/plots/<content hash>.png` (immutable: an old materialisation keeps showing
its own figure) and the metadata is a short markdown image of its URL under
$SABLE_REPORTS_URL (default http://127.0.0.1:3001, what `make ui` serves `<lake>/reports` on).

Imported lazily by the assets, so loading the definitions never imports matplotlib.
"""

import hashlib
import io
import math
import os

import dagster as dg

from lake_schema.catalogue import scenario
from lake_schema.storage import Lake
from trainer.analysis import ordered_knob

REPORTS_DIR = "reports"
REPORTS_URL_ENV = "SABLE_REPORTS_URL"
REPORTS_PORT = 3001
# The UI shows markdown metadata inline below this length (MetadataEntry.tsx), else a link.
INLINE_MARKDOWN_LIMIT = 1000
# The value column of the asset page's metadata table is about 500 px wide in a 1600 px
# window (the definition panel takes the right third): figures fit it, images never scale.
WIDTH_IN, DPI = 5.3, 90


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    plt = pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def reports_url() -> str:
    """Where `<lake>/reports` is served over HTTP: $SABLE_REPORTS_URL, else `make ui`'s
    server on 127.0.0.1:3001 (for an s3:// lake, a URL serving the bucket's reports/ prefix)."""
    return (os.environ.get(REPORTS_URL_ENV) or f"http://127.0.0.1:{REPORTS_PORT}").rstrip("/")


def publish_png(lake: Lake, png: bytes, alt: str) -> dg.MetadataValue:
    """Write `png` to `<lake>/reports/plots/<sha256[:16]>.png` and return a short markdown
    image of its URL, which the Dagster UI shows inline on the asset's page (no click)."""
    name = f"plots/{hashlib.sha256(png).hexdigest()[:16]}.png"
    path = lake.path(f"{REPORTS_DIR}/{name}")
    if not lake.fs.exists(path):
        lake.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        lake.fs.pipe_file(path, png)
    text = f"![{alt}]({reports_url()}/{name})"
    if len(text) >= INLINE_MARKDOWN_LIMIT:
        raise ValueError(f"plot {alt!r}: its markdown is {len(text)} characters, too long for "
                         f"the UI to show inline; shorten ${REPORTS_URL_ENV}")
    return dg.MetadataValue.md(text)


def learning_curve_png(result, title: str) -> bytes:
    """Return vs env steps: recorded checkpoints (marked by quality), the training episodes'
    returns, and the final and random reference returns."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.8), dpi=DPI)
    if result.train_curve:
        steps, rets = zip(*result.train_curve, strict=True)
        ax.plot(steps, rets, color="0.7", lw=1, label="training episodes")
    for quality, colour in (("low", "tab:orange"), ("high", "tab:blue")):
        pts = [r for r in result.curve if r.quality == quality]
        if pts:
            ax.errorbar(
                [r.env_steps for r in pts], [r.mean_return for r in pts],
                yerr=[r.std_return / math.sqrt(max(r.episodes, 1)) for r in pts],
                fmt="o", color=colour, label=f"checkpoint ({quality})",
            )
    ax.axhline(result.reference_return, color="tab:green", ls="--", label="final policy")
    ax.axhline(result.random_return, color="tab:red", ls=":", label="random policy")
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean episode return")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def training_curves_png(history: list[dict], title: str) -> bytes:
    """Loss parts and per-task loss vs update, and the periodic evaluations if any (each
    training task's normalised return and their mean), one panel under the other. One run,
    so no error bars: the per-task lines show the spread."""
    plt = pyplot()
    evals = [r for r in history if "eval_normalised_return" in r]
    panels = 3 if evals else 2
    fig, axes = plt.subplots(panels, 1, figsize=(WIDTH_IN, 2.6 * panels), dpi=DPI)
    ups = [r["update"] for r in history]
    for key in ("loss", "policy_loss", "critic_loss", "conservative_loss"):
        ys = [r[key] for r in history]
        if any(ys):
            axes[0].plot(ups, ys, lw=1, label=key)
    axes[0].set(xlabel="update", ylabel="loss")
    axes[0].set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    tasks = list(history[0]["task_loss"]) if history else []
    for t in tasks:
        pts = [(r["update"], r["task_loss"][t]) for r in history if r["task_loss"][t] is not None]
        if pts:
            axes[1].plot(*zip(*pts, strict=True), lw=1, label=scenario(t))
    axes[1].set(xlabel="update", ylabel="per-task loss")
    axes[1].legend(fontsize=7)
    if evals:
        ups = [r["update"] for r in evals]
        for t in evals[0].get("eval_task_normalised_return") or {}:  # the spread over tasks
            axes[2].plot(ups, [r["eval_task_normalised_return"][t] for r in evals], lw=0.8,
                         alpha=0.6, label=scenario(t))
        axes[2].plot(ups, [r["eval_normalised_return"] for r in evals], "ko-", lw=1.5,
                     label="mean")
        axes[2].set(xlabel="update", ylabel="normalised return (train tasks)")
        axes[2].legend(fontsize=6)
    for ax in axes:
        ax.grid(alpha=0.3)
    return figure_png(fig)


def _slope(row: dict) -> float:
    """|d normalised / d return| of an `evaluations` row. Both normalisations (the paper's
    division by online Sable's return r, and random-to-Sable where r <= 0) are linear in the
    return m and give 1 at r, so the slope is (1 - n) / (r - m) whichever applied."""
    m, n, r = row["mean_return"], row["normalised_return"], row["reference_return"]
    if m != r:
        return abs((1.0 - n) / (r - m))
    return 1.0 / abs(r) if r else 0.0


def task_bars_png(rows: list[dict], title: str) -> bytes:
    """Normalised return per task (1 = online Sable), with the standard error over the
    evaluation's episodes as error bars. `rows`: dicts with task, normalised_return,
    mean_return, std_return, reference_return, episodes (rows of `evaluations`)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.6), dpi=DPI)
    names = [r["task"].rsplit("/", 1)[-1] for r in rows]  # `env/scenario` or the lake's scenario
    errors = [r["std_return"] / math.sqrt(max(r["episodes"], 1)) * _slope(r) for r in rows]
    ax.bar(names, [r["normalised_return"] for r in rows], yerr=errors, capsize=3,
           color="tab:blue")
    ax.axhline(1.0, color="tab:green", ls="--", label="online Sable")
    ax.set_ylabel("normalised return (± s.e. over episodes)", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return figure_png(fig)


def configurations_png(table, title: str) -> bytes:
    """Mean normalised return on train vs held-out tasks per configuration (a pair of
    horizontal bars each, labelled by its unique label), with the standard error over seeds
    as error bars (none where n = 1)."""
    import textwrap

    plt = pyplot()
    rows = table.to_dicts()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 1.2 + 0.55 * len(rows)), dpi=DPI)
    ys = range(len(rows))
    for offset, split, colour in ((-0.2, "train", "tab:blue"), (0.2, "test", "tab:orange")):
        ax.barh([y + offset for y in ys], [r[f"{split}_mean"] or 0.0 for r in rows], height=0.4,
                xerr=[r[f"{split}_se"] or 0.0 for r in rows], capsize=3, color=colour,
                label=split)
    ax.axvline(1.0, color="tab:green", ls="--", lw=1, label="online Sable")
    ax.set_yticks(list(ys), [textwrap.fill(r["label"], 22) for r in rows], fontsize=6)
    ax.invert_yaxis()  # the table's order, top to bottom
    ax.set_xlabel("mean normalised return (± s.e. over seeds)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    return figure_png(fig)


def comparison_png(table, knob: str, title: str) -> bytes:
    """Held-out normalised return against one knob, a line per group of configurations that
    differ in that knob alone, with standard-error bars over seeds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.8), dpi=DPI)
    # a line only along an ordered knob (task count, size, length); categories get points
    ordered = ordered_knob(table[knob].to_list())
    for compared in dict.fromkeys(table["compared"].to_list()):
        part = table.filter(table["compared"] == compared)
        ax.errorbar([str(v) for v in part[knob].to_list()], part["test_mean"].to_list(),
                    yerr=[e or 0.0 for e in part["test_se"].to_list()],
                    fmt="o-" if ordered else "o", capsize=3, label=compared)
    ax.set(xlabel=knob, ylabel="held-out normalised return", title=title)
    ax.margins(x=0.15)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def table_metadata(df, floats: int = 3) -> dg.MetadataValue:
    """A polars DataFrame as Dagster table metadata: shown inline on the asset's page, floats
    rounded to `floats` digits so that columns stay narrow."""
    columns = [dg.TableColumn(name, "float" if dtype.is_float() else
                              "int" if dtype.is_integer() else "string")
               for name, dtype in df.schema.items()]
    records = [dg.TableRecord({k: (round(v, floats) if isinstance(v, float) else v)
                               for k, v in row.items()}) for row in df.to_dicts()]
    return dg.MetadataValue.table(records, dg.TableSchema(columns))
