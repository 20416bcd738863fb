"""Plots for asset metadata: matplotlib (Agg) figures as PNG files in the lake, shown inline
on the asset's page in the Dagster UI (and episodes drawn as animated GIFs, `publish_gif`).

Why files and a URL, not the PNG inside the metadata: the UI (dagster-webserver 1.13) renders
a markdown metadata value inline only when it is shorter than 1000 characters; a longer one
(any base64-embedded plot) hides behind a `[Show Markdown]` link. So each plot is written to
`<lake>/reports/plots/<content hash>.png` (immutable: an old materialisation keeps showing
its own figure) and the metadata is a short markdown image of its URL under
$SABLE_REPORTS_URL (default http://127.0.0.1:3001, what `make ui` serves `<lake>/reports` on).

matplotlib itself is imported on the first figure (`pyplot`), so loading the definitions
never imports it.
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
    if fig.get_layout_engine() is None:  # tight_layout would undo a constrained layout's
        fig.tight_layout()               # room for a legend below the axes
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
    return _publish(lake, png, alt, "plots", "png")


def publish_gif(lake: Lake, gif: bytes, alt: str) -> dg.MetadataValue:
    """Write the animated GIF `gif` (an episode, `trainer.replay.write_gif`) to
    `<lake>/reports/episodes/<sha256[:16]>.gif` and return a short markdown image of its URL:
    the UI shows it inline, playing, as it shows a plot."""
    return _publish(lake, gif, alt, "episodes", "gif")


def _publish(lake: Lake, data: bytes, alt: str, folder: str, suffix: str) -> dg.MetadataValue:
    name = f"{folder}/{hashlib.sha256(data).hexdigest()[:16]}.{suffix}"
    path = lake.path(f"{REPORTS_DIR}/{name}")
    if not lake.fs.exists(path):
        lake.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        lake.fs.pipe_file(path, data)
    text = f"![{alt}]({reports_url()}/{name})"
    if len(text) >= INLINE_MARKDOWN_LIMIT:
        raise ValueError(f"image {alt!r}: its markdown is {len(text)} characters, too long "
                         f"for the UI to show inline; shorten ${REPORTS_URL_ENV}")
    return dg.MetadataValue.md(text)


def legend_below(fig, ncol: int, fontsize: float = 7, axes=None) -> None:
    """One legend of the lines of `axes` (default: all; a label once) under them, in at most
    `ncol` columns (fewer where long labels would not fit the figure's width): `fig` has
    constrained layout, which makes room for it. Why not inside the axes: there it hides
    data or, with many entries, runs past them and out of the figure, and the UI never
    scales a figure down to show what sticks out."""
    handles, labels = [], []
    for ax in fig.axes if axes is None else axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    for n in range(min(ncol, len(handles)), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncol=n,
                            fontsize=fontsize, frameon=False)
        if n == 1 or legend.get_window_extent(fig.canvas.get_renderer()).width <= fig.bbox.width:
            return
        legend.remove()


def learning_curve_png(result, title: str) -> bytes:
    """Return vs env steps: recorded checkpoints (marked by quality), the training episodes'
    returns, and the final and random reference returns."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.0), dpi=DPI, layout="constrained")
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
    ax.grid(alpha=0.3)
    legend_below(fig, ncol=3, fontsize=8)
    return figure_png(fig)


def training_curves_png(history: list[dict], title: str) -> bytes:
    """Loss parts and per-task loss vs update, and the periodic evaluations if any (each
    training task's normalised return and their mean), one panel under the other. One run,
    so no error bars: the per-task lines show the spread."""
    plt = pyplot()
    evals = [r for r in history if "eval_normalised_return" in r]
    panels = 3 if evals else 2
    tasks = list(history[0]["task_loss"]) if history else []
    # one task legend below the panels, a row per 4 tasks: the figure grows with it
    fig, axes = plt.subplots(panels, 1, figsize=(WIDTH_IN, 2.6 * panels + 0.2 * (
        len(tasks) // 4 + 1)), dpi=DPI, layout="constrained")
    colour = {t: f"C{i % 10}" for i, t in enumerate(tasks)}  # a task's colour in each panel
    ups = [r["update"] for r in history]
    for key in ("loss", "policy_loss", "critic_loss", "conservative_loss"):
        ys = [r[key] for r in history]
        if any(ys):
            axes[0].plot(ups, ys, lw=1, label=key)
    axes[0].set(xlabel="update", ylabel="loss")
    axes[0].set_title(title, fontsize=9)
    axes[0].legend(fontsize=7, loc="upper right")  # at most four lines
    for t in tasks:
        pts = [(r["update"], r["task_loss"][t]) for r in history if r["task_loss"][t] is not None]
        if pts:
            axes[1].plot(*zip(*pts, strict=True), lw=1, color=colour[t], label=scenario(t))
    axes[1].set(xlabel="update", ylabel="per-task loss")
    if evals:
        ups = [r["update"] for r in evals]
        for t in evals[0].get("eval_task_normalised_return") or {}:  # the spread over tasks
            axes[2].plot(ups, [r["eval_task_normalised_return"][t] for r in evals], lw=0.8,
                         alpha=0.6, color=colour.get(t), label=scenario(t))
        axes[2].plot(ups, [r["eval_normalised_return"] for r in evals], "ko-", lw=1.5,
                     label="mean")
        axes[2].set(xlabel="update", ylabel="normalised return (train tasks)")
    for ax in axes:
        ax.grid(alpha=0.3)
    legend_below(fig, ncol=4, axes=axes[1:])
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


def headline_png(scaling) -> bytes:
    """The product's question at a glance: mean normalised return on the held-out tasks of
    models trained on 1 task and on k tasks, bars per task-scaling group (an algorithm) and
    env, with standard-error bars (over seeds; one seed: over its episodes), dashed lines at
    0 (the random policy) and 1 (online Sable), and a y-axis from 0. `scaling` is
    `trainer.analysis.compare(latest, "train_tasks")`."""
    plt = pyplot()
    envs = list(dict.fromkeys(scaling["env"].to_list()))
    fig, axes = plt.subplots(1, len(envs), figsize=(WIDTH_IN, 3.8), dpi=DPI, squeeze=False,
                             layout="constrained")
    for ax, env in zip(axes[0], envs, strict=True):
        part = scaling.filter(scaling["env"] == env)
        groups = list(dict.fromkeys(part["compared"].to_list()))
        counts = sorted(set(part["num_train_tasks"].to_list()))
        width = 0.8 / len(counts)
        colours = pyplot().get_cmap("viridis")([i / max(len(counts) - 1, 1) * 0.8
                                                  for i in range(len(counts))])
        for j, (k, colour) in enumerate(zip(counts, colours, strict=True)):
            rows = {r["compared"]: r for r in part.filter(part["num_train_tasks"] == k)
                    .to_dicts()}
            xs = [i + (j - (len(counts) - 1) / 2) * width for i in range(len(groups))]
            ax.bar(xs, [(rows.get(g) or {}).get("test_mean") or 0.0 for g in groups], width,
                   yerr=[(rows.get(g) or {}).get("test_se") or 0.0 for g in groups],
                   capsize=3, color=colour, label=f"{k} training task{'s' if k > 1 else ''}")
        ax.axhline(0.0, color="0.3", ls="--", lw=1)
        ax.axhline(1.0, color="tab:green", ls="--", lw=1)
        ax.text(len(groups) - 0.5, 1.0, " online Sable", va="bottom", ha="right", fontsize=6)
        ax.text(len(groups) - 0.5, 0.0, " random", va="bottom", ha="right", fontsize=6)
        ax.set_xticks(range(len(groups)), groups, fontsize=7)
        ax.set_ylim(bottom=min(0.0, float(part["test_mean"].min() or 0.0) * 1.2),
                    top=max(1.1, float(part["test_mean"].max() or 0.0) * 1.2))
        ax.set_title(f"{env}: held-out tasks", fontsize=9)
        ax.set_ylabel("normalised return (± s.e.)", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    legend_below(fig, ncol=4)  # the same training-task counts in every panel
    return figure_png(fig)


def configurations_png(table, title: str) -> bytes:
    """Mean normalised return on train vs held-out tasks per configuration (a pair of
    horizontal bars each, labelled by its unique label), with standard-error bars: over seeds,
    or over the episodes of a configuration's one seed."""
    import textwrap

    plt = pyplot()
    rows = table.to_dicts()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 1.4 + 0.55 * len(rows)), dpi=DPI,
                           layout="constrained")
    ys = range(len(rows))
    for offset, split, colour in ((-0.2, "train", "tab:blue"), (0.2, "test", "tab:orange")):
        ax.barh([y + offset for y in ys], [r[f"{split}_mean"] or 0.0 for r in rows], height=0.4,
                xerr=[r[f"{split}_se"] or 0.0 for r in rows], capsize=3, color=colour,
                label=split)
    ax.axvline(1.0, color="tab:green", ls="--", lw=1, label="online Sable")
    ax.set_yticks(list(ys), [textwrap.fill(r["label"], 22) for r in rows], fontsize=6)
    ax.invert_yaxis()  # the table's order, top to bottom
    ax.set_xlabel("mean normalised return (± s.e. over seeds; one seed: over its "
                  "episodes)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    legend_below(fig, ncol=3)
    return figure_png(fig)


def comparison_png(table, knob: str, title: str) -> bytes:
    """Held-out normalised return against one knob, a line per group of configurations that
    differ in that knob alone, with standard-error bars (over seeds; one seed: over its
    episodes)."""
    plt = pyplot()
    groups = table["compared"].n_unique()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.6 + 0.2 * ((groups + 1) // 2)), dpi=DPI,
                           layout="constrained")
    # a line only along an ordered knob (task count, size, length); categories get points
    ordered = ordered_knob(table[knob].to_list())
    for compared in dict.fromkeys(table["compared"].to_list()):
        part = table.filter(table["compared"] == compared)
        ax.errorbar([str(v) for v in part[knob].to_list()], part["test_mean"].to_list(),
                    yerr=[e or 0.0 for e in part["test_se"].to_list()],
                    fmt="o-" if ordered else "o", capsize=3, label=compared)
    ax.set(xlabel=knob, ylabel="held-out normalised return", title=title)
    ax.margins(x=0.15)
    ax.grid(alpha=0.3)
    legend_below(fig, ncol=2)  # a group's label names its knobs: two columns fit
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
