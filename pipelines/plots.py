"""Plots for asset metadata: matplotlib (Agg) figures as PNG bytes, embedded as markdown.

Imported lazily by the assets, so loading the definitions never imports matplotlib.
"""

import base64
import io
import math

import dagster as dg

from lake_schema.catalogue import scenario


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


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG inline in a markdown metadata entry: the Dagster UI shows it as an image."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def learning_curve_png(result, title: str) -> bytes:
    """Return vs env steps: recorded checkpoints (marked by quality), the training episodes'
    returns, and the final and random reference returns."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
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
    """Loss parts and per-task loss vs update (and periodic evaluations, if any)."""
    plt = pyplot()
    evals = [r for r in history if "eval_normalised_return" in r]
    fig, axes = plt.subplots(1, 3 if evals else 2, figsize=(13 if evals else 10, 3.6), dpi=90)
    ups = [r["update"] for r in history]
    for key in ("loss", "policy_loss", "critic_loss", "conservative_loss"):
        ys = [r[key] for r in history]
        if any(ys):
            axes[0].plot(ups, ys, lw=1, label=key)
    axes[0].set(xlabel="update", ylabel="loss", title=title)
    axes[0].legend(fontsize=7)
    tasks = list(history[0]["task_loss"]) if history else []
    for t in tasks:
        pts = [(r["update"], r["task_loss"][t]) for r in history if r["task_loss"][t] is not None]
        if pts:
            axes[1].plot(*zip(*pts, strict=True), lw=1, label=scenario(t))
    axes[1].set(xlabel="update", ylabel="per-task loss")
    axes[1].legend(fontsize=7)
    if evals:
        axes[2].plot([r["update"] for r in evals], [r["eval_normalised_return"] for r in evals],
                     "o-")
        axes[2].set(xlabel="update", ylabel="mean normalised return (train tasks)")
    for ax in axes:
        ax.grid(alpha=0.3)
    return figure_png(fig)


def task_bars_png(results, title: str) -> bytes:
    """Normalised return per task (1 = online Sable)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(results) + 2), 3.6), dpi=90)
    names = [scenario(r.task) for r in results]
    ax.bar(names, [r.normalised_return for r in results], color="tab:blue")
    ax.axhline(1.0, color="tab:green", ls="--", label="online Sable")
    ax.set(ylabel="normalised return", title=title)
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return figure_png(fig)


def configurations_png(table, title: str) -> bytes:
    """Mean normalised return on train vs held-out tasks per configuration, with the
    standard error over seeds as error bars (none where n = 1)."""
    plt = pyplot()
    rows = table.to_dicts()
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(rows) + 2), 4.2), dpi=90)
    xs = range(len(rows))
    for offset, split, colour in ((-0.2, "train", "tab:blue"), (0.2, "test", "tab:orange")):
        ax.bar([x + offset for x in xs], [r[f"{split}_mean"] or 0.0 for r in rows], width=0.4,
               yerr=[r[f"{split}_se"] or 0.0 for r in rows], capsize=3, color=colour,
               label=split)
    ax.axhline(1.0, color="tab:green", ls="--", lw=1, label="online Sable")
    ax.set_xticks(list(xs), [r["label"].replace(" ", "\n") for r in rows], fontsize=7)
    ax.set(ylabel="mean normalised return (± s.e. over seeds)", title=title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return figure_png(fig)


def comparison_png(table, knob: str, title: str) -> bytes:
    """Held-out normalised return against one knob, a line per group of configurations that
    differ in that knob alone, with standard-error bars over seeds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=90)
    for compared in dict.fromkeys(table["compared"].to_list()):
        part = table.filter(table["compared"] == compared)
        ax.errorbar([str(v) for v in part[knob].to_list()], part["test_mean"].to_list(),
                    yerr=[e or 0.0 for e in part["test_se"].to_list()], fmt="o-", capsize=3,
                    label=compared)
    ax.set(xlabel=knob, ylabel="held-out normalised return", title=title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def table_metadata(df, floats: int = 3) -> dg.MetadataValue:
    """A polars DataFrame as Dagster table metadata: shown inline on the asset's page."""
    columns = [dg.TableColumn(name, "float" if dtype.is_float() else
                              "int" if dtype.is_integer() else "string")
               for name, dtype in df.schema.items()]
    records = [dg.TableRecord({k: (round(v, floats) if isinstance(v, float) else v)
                               for k, v in row.items()}) for row in df.to_dicts()]
    return dg.MetadataValue.table(records, dg.TableSchema(columns))
