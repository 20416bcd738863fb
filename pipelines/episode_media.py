"""Episodes drawn on asset pages, as animated GIFs shown inline: on a task's dataset card the
episodes of the lowest, median and highest return of each quality tag, on an offline
model's evaluation page its best and worst evaluation episode per task.

Wiring only: `trainer.replay` chooses the card's episodes and replays them,
`trainer.offline.episodes` plays evaluation episodes back, `trainer.replay.write_gif` draws
either with the environment's own viewer, `pipelines.plots.publish_gif` puts the GIF in the
lake's reports/. How many frames and how big: `trainer.replay.RenderConfig`, one knob each.
matplotlib and JAX are imported when an episode is drawn, never when the definitions load.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np

from lake_schema.catalogue import Task, scenario
from lake_schema.storage import Lake
from pipelines.plots import publish_gif, pyplot
from trainer.replay import NOT_REPLAYABLE, EpisodePick, RenderConfig, quality_extremes

if TYPE_CHECKING:
    from trainer.offline.evaluation import TaskResult


def card_episode_metadata(lake: Lake, task: Task, run: str | None,
                          render: RenderConfig) -> dict[str, dg.MetadataValue]:
    """`episode_<quality>_<lowest|median|highest>` for the dataset card of `task` (the
    episodes of `run`, or of every run: `trainer.replay.quality_extremes`): each an inline
    GIF whose alt text gives its return, place and length, or a line saying why it cannot
    be drawn (imported data has no reset key: not replayable). Nothing with
    `render.frames` 0. An episode that is two extremes (few episodes) is drawn once."""
    if render.frames == 0:
        return {}
    drawn: dict[tuple[str, int, int], dg.MetadataValue] = {}
    meta = {}
    for pick in quality_extremes(lake, task, run):
        at = (pick.run, pick.checkpoint, pick.episode)
        if at not in drawn:
            drawn[at] = _card_episode(lake, task, pick, render)
        meta[f"episode_{pick.quality}_{pick.rank}"] = drawn[at]
    return meta


def _card_episode(lake: Lake, task: Task, pick: EpisodePick,
                  render: RenderConfig) -> dg.MetadataValue:
    what = (f"quality {pick.quality}, {pick.rank} return {pick.episode_return:.3g}: "
            f"{pick.name()}, {pick.length} steps")
    if not pick.replayable:
        return dg.MetadataValue.md(f"{what}: {NOT_REPLAYABLE}, no reset key was recorded, "
                                   "so the environment cannot draw it")
    from trainer.replay import render_episode

    pyplot()  # the Agg backend before a viewer makes its figure
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "episode.gif"
        rendering = render_episode(lake, task, pick.run, pick.checkpoint, pick.episode, path,
                                   render.frames, render.size)
        if rendering.path is None:  # a malformed key, the wrong number of agents
            return dg.MetadataValue.md(f"{what}: cannot be drawn: {rendering.replay.line()}")
        gif = path.read_bytes()
    differs = "" if rendering.replay.identical else (
        "; the replay differs from the stored steps (python -m trainer.replay names where), "
        "these are the environment's states")
    return publish_gif(lake, gif, f"{what}, {rendering.frames} of its {pick.length + 1} "
                                  f"states{differs}")


def evaluation_episode_metadata(lake: Lake, results: Sequence[TaskResult],
                                render: RenderConfig) -> dict[str, dg.MetadataValue]:
    """`episode_<scenario>_best` and `_worst` for each task of `results` (what
    `trainer.offline.evaluation.evaluate` returns: each keeps its best and worst episode),
    played back in the real environment and drawn as inline GIFs whose alt text gives the
    return, the normalised return and the length. Nothing with `render.frames` 0.

    The played-back return is the evaluation's (tested); were it not, the alt text would
    say so rather than show another episode under the evaluation's numbers."""
    if render.frames == 0:
        return {}
    from trainer.offline.episodes import render_evaluation_episode  # JAX

    pyplot()
    meta = {}
    for result in results:
        split = "held-out task" if result.split == "test" else "training task"
        for episode in result.extremes:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "episode.gif"
                played, frames = render_evaluation_episode(episode, path, render.frames,
                                                           render.size)
                gif = path.read_bytes()
            alt = (f"{episode.label} of {episode.of} episodes on {result.task} ({split}): "
                   f"return {episode.episode_return:.3g}, normalised "
                   f"{episode.normalised_return:.3g}, {episode.length} steps, {frames} of "
                   f"its {episode.length + 1} states")
            if played != np.float32(episode.episode_return):
                alt += f"; played back it returned {float(played):.3g}, not the evaluation's"
            meta[f"episode_{scenario(result.task)}_{episode.label}"] = publish_gif(
                lake, gif, alt)
    return meta
