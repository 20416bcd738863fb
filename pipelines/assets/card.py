"""The dataset card of each task: what its recorded runs hold, in the Dagster UI.

Wiring only: the card is computed when the data is written (`lake_schema.writer`) and read
and aggregated by `lake_schema.cards`; this asset shows it as table, numeric and plot
metadata, and beside the return distribution the episodes of the lowest, median and highest
return of each quality drawn by the environment's viewer (`pipelines.episode_media`).
"""

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from lake_schema.cards import DatasetCard, dataset_cards, format_card, rtg_line
from lake_schema.catalogue import get_task
from lake_schema.schema import CARD_QUANTILES
from pipelines.configs import derive, knob_values
from pipelines.episode_media import card_episode_metadata
from pipelines.metadata import rounded
from pipelines.partitions import DATASET_RUNS, task_partitions
from pipelines.plots import publish_png, table_metadata
from pipelines.resources import LakeResource
from trainer.replay import RenderConfig


class _DatasetCard(dg.Config):
    """Which runs the card shows, and how its episodes are drawn (every knob of
    `trainer.replay.RenderConfig`; unset: its default)."""

    run: str = Field(default="", description="one run's card; default: every run of the task")


DatasetCardConfig = derive("DatasetCardConfig", _DatasetCard, RenderConfig)


def narrow_table(df: pl.DataFrame, constant: tuple[str, ...] = ()) -> dg.MetadataValue:
    """`df` as table metadata narrow enough for the asset page's value column (about 535 px
    in a 1600 px window; the UI cuts a wider table, and a column is as wide as its header,
    which never wraps): floats to 3 significant digits and at most 3 decimals, and those
    columns of `constant` that hold a single value dropped (the page says it elsewhere: the
    `runs` entry, the `card` text)."""
    drop = [c for c in constant if c in df.columns and df[c].n_unique() == 1]
    return table_metadata(df.drop(drop).with_columns(pl.col(pl.Float64).round_sig_figs(3)))


def _checkpoints(cards: list[DatasetCard]) -> pl.DataFrame:
    """A row per checkpoint: where it sits in training, its episodes, their returns (mean,
    std, min, max) and the share of its returns-to-go outside the value support. The
    quantiles are the plot's boxes; the steps per checkpoint are in the `card` text."""
    return pl.DataFrame([{
        "run": c.run, "ckpt": r["checkpoint"], "quality": r["quality"],
        "env steps": r["env_steps"], "episodes": r["episodes"], "return": r["return_mean"],
        "std": float(np.sqrt(r["return_m2"] / r["episodes"])), "min": r["return_min"],
        "max": r["return_max"], "rtg out": r.get("rtg_outside_support"),
    } for c in cards for r in c.checkpoints], schema_overrides={
        "rtg out": pl.Float64})  # all null on cards written before the column


def _features(card: DatasetCard) -> pl.DataFrame:
    obs = card.obs()
    rows = []
    for i in range(len(obs.min)):
        row = {"feature": i, "name": card.task.spec.obs_features[i],
               "mean": float(obs.moments.mean[i]),
               "std": float(obs.moments.std[i]), "min": float(obs.min[i])}
        row |= {f"p{round(q * 100)}": float(obs.quantiles[j, i])
                for j, q in enumerate(CARD_QUANTILES)}
        rows.append(row | {"max": float(obs.max[i])})
    return pl.DataFrame(rows)


def _actions(cards: list[DatasetCard]) -> pl.DataFrame:
    return pl.DataFrame([
        {"run": c.run, "slot": slot,
         **{name: float(v) for name, v in zip(c.task.spec.action_names, row, strict=True)}}
        for c in cards for slot, row in enumerate(c.action_frequencies())])


@dg.asset(group_name="lake", partitions_def=task_partitions, deps=["online_sable"],
          kinds={"parquet"}, backfill_policy=DATASET_RUNS)  # in its dataset's run
def dataset_card(context: dg.AssetExecutionContext, config: DatasetCardConfig,
                 lake: LakeResource) -> dg.MaterializeResult:
    """The task's dataset card per run, as written with its checkpoints: episodes and steps
    per checkpoint and quality, return distributions, the share of discounted returns-to-go
    outside the env's value support, the episodes of the lowest, median and highest return
    of each quality drawn as GIFs (or why one cannot be: imported data is not replayable),
    per-feature observation statistics, action frequencies per agent slot, the reference
    returns, and what produced the data. Fails, naming the fix, when the lake has no data or
    no cards for the task."""
    from pipelines.card_plots import action_histogram_png, returns_by_checkpoint_png

    task = get_task(context.partition_key)
    the_lake = lake.lake()
    cards = dataset_cards(the_lake, task, config.run or None)
    references = [c.reference for c in cards if c.reference is not None]
    meta: dict = {
        "runs": ", ".join(c.run for c in cards),
        "checkpoints": sum(len(c.checkpoints) for c in cards),
        "episodes": sum(c.episodes for c in cards),
        "steps": sum(c.steps for c in cards),
        "stale_checkpoints": ", ".join(f"{c.run}:{k}" for c in cards for k in c.stale)
        or "none",
        "rtg_outside_support": dg.MetadataValue.md("\n".join(
            f"- run {c.run}: {rtg_line(c)}" for c in cards)),
        "per_checkpoint": narrow_table(_checkpoints(cards), constant=("run", "episodes")),
        "returns_by_checkpoint": publish_png(
            the_lake, returns_by_checkpoint_png(cards, task.name),
            "returns by checkpoint and quality"),
        **card_episode_metadata(the_lake, task, config.run or None,
                                RenderConfig(**knob_values(config, RenderConfig))),
        "action_frequencies": narrow_table(_actions(cards), constant=("run",)),
        "action_histogram": publish_png(the_lake, action_histogram_png(cards, task.name),
                                        "action frequencies per agent slot"),
        "observations": narrow_table(_features(cards[-1])),
        "observations_run": cards[-1].run,
        "produced_by": dg.MetadataValue.md("\n".join(
            f"- run {c.run}: {version or 'unknown code'}; config `{cfg or 'unknown'}`"
            for c in cards for cfg, version in c.producers)),
        "card": dg.MetadataValue.md("\n\n".join(f"```\n{format_card(c)}\n```" for c in cards)),
    }
    share = cards[-1].rtg_outside_support  # the last run listed (as observations_run)
    if share is not None:
        meta["rtg_outside_fraction"] = float(share)
    if references:  # the latest run's: the normalisation constant and the floor
        meta |= {"sable_return": float(references[-1]["sable_return"]),
                 "random_return": float(references[-1]["random_return"])}
    return dg.MaterializeResult(metadata=rounded(meta))
