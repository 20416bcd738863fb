"""Evaluation episodes a reader can see: a task's best and worst evaluation episode, kept by
the evaluation (`trainer.offline.evaluation.evaluate`, `TaskResult.extremes`), played back
in the real environment and drawn with its own viewer.

Why the actions are kept rather than the policy run again: an evaluation steps its E
environments in one batch, and each step samples every environment's actions from one key,
so an episode run alone would sample other actions. An episode's reset key
(`trainer.recording.fresh_reset_keys`) and its actions determine it exactly, as a recorded
episode's do (`trainer.replay`): playing them back gives the evaluation's states and its
return, bit for bit (tests/trainer/test_evaluation_episodes.py). To see them again in
another process, evaluate again with the same `EvalConfig` (`evaluate(..., write=False)`):
the same seed gives the same episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from trainer.replay import play, worst_to_best, write_gif
from trainer.tasks import resolve_task


class TaskEpisodes(NamedTuple):
    """A task's evaluation episodes, each environment's first: what `evaluate` summarises
    and what plays any of them back."""

    returns: np.ndarray  # [E] float32: each episode's return, summed as the rollout sums it
    lengths: np.ndarray  # [E] int32: its steps
    actions: np.ndarray  # [T, E, N] int32: every step's actions (past an episode's length,
    #                      its environment's next episode's)
    reset_keys: np.ndarray  # [E, 2] uint32: the key `MultiAgentEnv.reset` started each from


@dataclass(frozen=True)
class EvaluationEpisode:
    """One evaluation episode, enough to play it back (`play_episode`)."""

    task: str  # env/scenario
    label: str  # "best" or "worst"
    index: int  # its environment among the evaluation's
    of: int  # the evaluation's episodes on the task (E)
    episode_return: float
    normalised_return: float
    reset_key: np.ndarray = field(repr=False, compare=False)  # [2] uint32
    actions: np.ndarray = field(repr=False, compare=False)  # [L, N] int32

    @property
    def length(self) -> int:
        return len(self.actions)


def best_and_worst(task: str, episodes: TaskEpisodes, normalise: Callable[[float], float]
                   ) -> tuple[EvaluationEpisode, EvaluationEpisode]:
    """The task's best and worst episode (`trainer.replay.worst_to_best`: by return, the
    quicker of two alike the better), each with its return normalised by `normalise`."""
    order = worst_to_best(episodes.returns, episodes.lengths)

    def pick(label: str, i: int) -> EvaluationEpisode:
        ret = float(episodes.returns[i])
        return EvaluationEpisode(
            task, label, i, len(order), ret, float(normalise(ret)),
            np.asarray(episodes.reset_keys[i], np.uint32),
            np.asarray(episodes.actions[:episodes.lengths[i], i], np.int32))

    return pick("best", int(order[-1])), pick("worst", int(order[0]))


def play_episode(episode: EvaluationEpisode, states: list | None = None) -> np.float32:
    """Play `episode` back in the real environment from its reset key with its actions and
    return its return, summed in float32 step by step as the evaluation's rollout sums it;
    with `states`, the Jumanji states (`trainer.replay.play`: length + 1)."""
    total = np.float32(0.0)
    for _, after in play(resolve_task(episode.task), episode.reset_key, episode.actions,
                         states):
        total = np.float32(total + np.float32(after.reward))
    return total


def render_evaluation_episode(episode: EvaluationEpisode, path: Path, frames: int,
                              size: int) -> tuple[np.float32, int]:
    """Play `episode` back and draw it into the GIF `path` (`trainer.replay.write_gif`: at
    most `frames` frames, `size` pixels wide); returns (its return as played back, the
    frames drawn)."""
    states: list = []
    played = play_episode(episode, states)
    return played, write_gif(resolve_task(episode.task), states, path, frames, size)
