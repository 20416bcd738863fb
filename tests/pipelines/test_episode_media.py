"""Episodes on asset pages: the dataset card draws the episodes of the lowest, median and
highest return of each quality (the right ones: their returns are the lake's extremes for
that quality) as GIFs in the lake's reports/; imported data, which has no reset key, gets a
"not replayable" line instead; an evaluation page draws each task's best and worst
evaluation episode, its alt text giving the evaluation's numbers."""

from __future__ import annotations

import io
import re

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from lake_schema.writer import write_episodes
from pipelines.assets.card import dataset_card
from pipelines.episode_media import evaluation_episode_metadata
from pipelines.plots import INLINE_MARKDOWN_LIMIT, REPORTS_DIR, reports_url
from pipelines.resources import default_resources
from trainer.replay import EXTREMES, RenderConfig, quality_extremes

TASK = "lbf/8x8-2p-2f"
SMALL = {"frames": 5, "size": 96}  # a few small frames: quick to draw
KEYS = [f"episode_{q}_{rank}" for q in ("low", "high") for rank in EXTREMES]


def _card(lake: Lake, **config) -> dict:
    result = dg.materialize(
        [dataset_card], partition_key=TASK, resources=default_resources(lake.root),
        run_config={"ops": {"dataset_card": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    return result.asset_materializations_for_node("dataset_card")[0].metadata


def _gif(lake: Lake, value: str) -> tuple[str, Image.Image]:
    """(alt text, the decoded GIF) of a published episode: a markdown image short enough to
    show inline, pointing at a GIF in the lake's reports/episodes/ under the reports URL."""
    match = re.fullmatch(rf"!\[([^\]]+)\]\({re.escape(reports_url())}/"
                         r"(episodes/[0-9a-f]{16}\.gif)\)", value)
    assert match and len(value) < INLINE_MARKDOWN_LIMIT, value
    data = lake.fs.cat_file(lake.path(f"{REPORTS_DIR}/{match.group(2)}"))
    return match.group(1), Image.open(io.BytesIO(data))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Lake:
    """Replayable episodes of both qualities, five each (an odd count: the median is an
    episode's): the random policy's at checkpoint 0 (low), the scripted policy's at 1."""
    from trainer.recording import collect_random_episodes
    from trainer.scripted import collect_lbf_heuristic_episodes

    lake = Lake(tmp_path_factory.mktemp("media") / "lake")
    write_episodes(lake, TASK, "rec", 0, "low", collect_random_episodes(TASK, 5, seed=2))
    write_episodes(lake, TASK, "rec", 1, "high", collect_lbf_heuristic_episodes(TASK, 5, seed=3))
    return lake


def test_the_card_draws_the_lowest_median_and_highest_episode_of_each_quality(recorded):
    episodes = read_table(recorded, "episodes", Selection(env="lbf")).to_pylist()
    picks = quality_extremes(recorded, TASK)
    assert [(p.quality, p.rank) for p in picks] == [
        (q, rank) for q in ("low", "high") for rank in EXTREMES]
    for p in picks:  # the right episodes: the lake's min, median and max of the quality
        returns = [e["return"] for e in episodes if e["quality"] == p.quality]
        want = {"lowest": min(returns), "median": float(np.median(returns)),
                "highest": max(returns)}[p.rank]
        (row,) = [e for e in episodes if (e["checkpoint"], e["episode"]) ==
                  (p.checkpoint, p.episode)]
        assert p.episode_return == row["return"] == want and p.replayable
    meta = _card(recorded, **SMALL)
    names = list(meta)  # beside the return distribution
    at = names.index("returns_by_checkpoint")
    assert names[at + 1:at + 7] == KEYS
    for key, p in zip(KEYS, picks, strict=True):
        alt, gif = _gif(recorded, meta[key].value)
        assert alt.startswith(f"quality {p.quality}, {p.rank} return "
                              f"{p.episode_return:.3g}: run rec checkpoint {p.checkpoint} "
                              f"episode {p.episode}, {p.length} steps, ")
        assert gif.format == "GIF" and gif.size == (96, 96) and 1 < gif.n_frames <= 5
        assert alt.endswith(f"{min(5, p.length + 1)} of its {p.length + 1} states")
    assert not any(k.startswith("episode_") for k in _card(recorded, frames=0))


def test_imported_data_gets_a_not_replayable_line_instead_of_an_image(lake):
    fill_lake(lake, [TASK], checkpoints=3, episodes=3, seed=2)  # synthetic: no reset keys
    meta = _card(lake, **SMALL)
    for key in KEYS:
        text = meta[key].value
        assert "not replayable (imported data), no reset key was recorded" in text, text
        assert "![" not in text
    assert not lake.fs.exists(lake.path(f"{REPORTS_DIR}/episodes"))


def test_an_evaluation_page_draws_each_task_s_best_and_worst_episode(lake):
    """The episodes of a random-policy rollout stand in for an evaluation's (the same
    layout: `trainer.offline.evaluation` runs them through the same rollout loop)."""
    import jax

    from trainer.envs import make_env, random_rollout
    from trainer.envs.rollout import first_episode_returns
    from trainer.offline.episodes import TaskEpisodes, best_and_worst
    from trainer.offline.evaluation import TaskResult
    from trainer.recording import fresh_reset_keys

    env, key = make_env(TASK), jax.random.PRNGKey(5)
    rollout = random_rollout(env, key, 5, env.time_limit)  # the fixture's program
    returns, _ = jax.device_get(first_episode_returns(rollout))
    lengths = np.asarray(rollout.episode_done).argmax(axis=0) + 1
    episodes = TaskEpisodes(returns, lengths, np.asarray(rollout.actions),
                            fresh_reset_keys(key, 5))
    result = TaskResult(task=TASK, algorithm="bc", split="test", update=1, episodes=5,
                        mean_return=float(returns.mean()), std_return=float(returns.std()),
                        normalised_return=float(returns.mean()) / 0.8, reference_return=0.8,
                        extremes=best_and_worst(TASK, episodes, lambda r: r / 0.8))
    meta = evaluation_episode_metadata(lake, [result], RenderConfig(**SMALL))
    assert list(meta) == ["episode_8x8-2p-2f_best", "episode_8x8-2p-2f_worst"]
    for (label, value), episode in zip(meta.items(), result.extremes, strict=True):
        alt, gif = _gif(lake, value.value)
        assert alt == (f"{episode.label} of 5 episodes on {TASK} (held-out task): return "
                       f"{episode.episode_return:.3g}, normalised "
                       f"{episode.episode_return / 0.8:.3g}, {episode.length} steps, "
                       f"{min(5, episode.length + 1)} of its {episode.length + 1} states")
        assert gif.size == (96, 96) and 1 < gif.n_frames <= 5, label
    assert result.extremes[0].episode_return == returns.max()
    assert evaluation_episode_metadata(lake, [result], RenderConfig(frames=0)) == {}
