"""Exact replay: a recorded episode, reset from its stored key in the real Jumanji environment
and stepped with its stored actions, gives its stored steps again.

    python -m trainer.replay lbf/8x8-2p-2f --run sable-seed0 --checkpoint 3 --episode 7
    python -m trainer.replay lbf/8x8-2p-2f --run sable-seed0 --checkpoint 3 --episode 7 \
        --render ep7.gif

Why: the lake's steps claim to be what the environment produced. The episode's reset key
(`episodes.reset_key`) and its actions determine everything else, so every stored
observation, legal mask, reward, terminated and truncated flag is compared, exactly, with
what `trainer.envs.make_env(task)` produces: data recorded under the wrong task label, a
number changed after the write, or an environment that no longer behaves as when it was
recorded all show as the first step and field that differ. Imported data (og-marl Vaults,
synthetic episodes) has no reset key: not replayable.

Exit status 0 with `replayed N steps: identical`; 1 with one line naming the first
differing step and field (`episode 3 step 17: reward 0.25 stored, 0.0 replayed`) or saying
the episode is not replayable; bad arguments are one line on stderr (exit 2; 1 for the
lake), checked before JAX is imported.

`--render PATH` also writes the replayed episode as an animated GIF drawn by the Jumanji
environment's own viewer: the reset state, then the state after each stored action
(length + 1 frames, 200 ms each). The line printed adds `; rendered N frames to PATH`; an
episode that does not replay identically is still drawn, and its line says that the frames
are the environment's, not the stored data (exit 1 as without `--render`). PATH must end in
`.gif` and its directory must exist.

The asset pages draw episodes the same way, smaller and with fewer frames (`RenderConfig`):
the dataset card its lowest, median and highest return per quality (`quality_extremes`),
an evaluation page its best and worst episode per task (`trainer.offline.episodes`, which
plays an evaluation episode back through `play`).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake_schema.catalogue import Task
from lake_schema.checks import Outcome
from lake_schema.reader import Selection, read_episode, read_table
from lake_schema.storage import Lake
from trainer.cli_overrides import HelpFormatter, one_line_errors
from trainer.knobs import check_knobs, knob
from trainer.tasks import resolve_task

NOT_REPLAYABLE = "not replayable (imported data)"
_UINT32_MAX = int(np.iinfo(np.uint32).max)
RENDER_INTERVAL_MS = 200  # Jumanji's default: five steps a second
# The CLI's GIFs: the viewers' 10 x 10 inch figure at 50 dpi, readable and quick to write.
RENDER_SIZE = 500
EXTREMES = ("lowest", "median", "highest")


@dataclass(frozen=True)
class RenderConfig:
    """How the asset pages draw episodes (the dataset card's six, an evaluation page's two
    per task): few, small frames, because drawing is the cost. The viewers are matplotlib:
    on 2 CPU cores about 0.05 to 0.1 s a frame of lbf (connector's about 0.3 s), little
    changed by the size, plus about 0.2 s an episode to replay it and set its figure up;
    so at the defaults an lbf episode costs 0.5 to 0.8 s. Each field's meaning, bounds and
    default are its `knob`."""

    frames: int = knob(6, ge=0, doc=(
        "frames per episode GIF at most, evenly spaced from the reset state to the last, "
        "200 ms each (0.05 to 0.1 s each to draw); 0 draws no episodes"))
    size: int = knob(240, ge=64, le=1000, doc="the episode GIFs' width and height in pixels")

    def __post_init__(self) -> None:
        check_knobs(self)


@dataclass(frozen=True)
class Replay:
    """What replaying one recorded episode found."""

    episode: int
    steps: int  # the episode's stored length
    difference: str | None = None  # the first differing step and field; None: none
    replayable: bool = True  # False: no reset key was recorded (imported data)

    @property
    def identical(self) -> bool:
        return self.replayable and self.difference is None

    def line(self) -> str:
        """The outcome as one line (what the CLI prints)."""
        if not self.replayable:
            return f"episode {self.episode}: {NOT_REPLAYABLE}"
        if self.difference is not None:
            return f"episode {self.episode} {self.difference}"
        return f"replayed {self.steps} steps: identical"


def replay_episode(lake: Lake, task: str | Task, run: str, checkpoint: int,
                   episode: int) -> Replay:
    """Replay the episode `(task, run, checkpoint, episode)` of `lake` in the real
    environment of `task`; an episode the lake does not hold is a LakeValueError."""
    task = resolve_task(task)
    row, steps = read_episode(lake, task, run, checkpoint, episode)
    return replay_steps(task, row, steps)


def replay_steps(task: Task, row: dict, steps: pa.Table, states: list | None = None
                 ) -> Replay:
    """Replay one episode given its `episodes` row and its steps (step 0 first). `states`:
    see `_first_difference` (left empty when the episode cannot be stepped at all)."""
    episode, length = int(row["episode"]), int(row["length"])
    key = row.get("reset_key")
    if key is None:
        return Replay(episode, length, replayable=False)
    if len(key) != 2 or not all(0 <= int(k) <= _UINT32_MAX for k in key):
        return Replay(episode, length, f"reset_key {key} is not two uint32 words")
    agents = pc.list_value_length(steps["obs"]).to_numpy()
    wrong = np.flatnonzero(agents != task.num_agents)
    if wrong.size:
        t = int(wrong[0])
        return Replay(episode, length, f"step {t}: {agents[t]} agents stored, "
                                       f"{task.num_agents} in {task.name}")
    return Replay(episode, length, _first_difference(task, np.asarray(key, np.uint32),
                                                     _stored(task, steps), states))


def _stored(task: Task, steps: pa.Table) -> dict[str, np.ndarray]:
    """The steps' columns as arrays: obs [L, N, F], legal [L, N, A], action [L, N], reward,
    terminated, truncated [L]."""
    n, spec, length = task.num_agents, task.spec, steps.num_rows

    def nested(name: str, width: int) -> np.ndarray:
        flat = steps[name].combine_chunks().flatten().flatten()
        return flat.to_numpy(zero_copy_only=False).reshape(length, n, width)

    return {
        "obs": nested("obs", spec.obs_width),
        "legal": nested("legal", spec.num_actions),
        "action": steps["action"].combine_chunks().flatten().to_numpy().reshape(length, n),
        **{name: steps[name].to_numpy() for name in ("reward", "terminated", "truncated")},
    }


def _first_difference(task: Task, key: np.ndarray, stored: dict[str, np.ndarray],
                      states: list | None = None) -> str | None:
    """Reset the real environment with `key`, step it with the stored actions, and name the
    first step and field it does not reproduce (None: all identical). Step t's obs and legal
    are what the agents acted on; its reward and flags follow its action.

    With `states`, every stored action is played whatever differs (`play`)."""
    first = None
    for t, (before, after) in enumerate(play(task, key, stored["action"], states)):
        first = (first or _compare(t, stored, before, ("obs", "legal"))
                 or _compare(t, stored, after, ("reward", "terminated", "truncated")))
        if first and states is None:
            return first
    return first


def play(task: Task, key: np.ndarray, actions: np.ndarray, states: list | None = None
         ) -> Iterator[tuple[object, object]]:
    """Reset the real environment of `task` with `key` ([2] uint32) and step it with
    `actions` ([L, N]): per step t, the EnvStep the agents acted on and the one its action
    led to (host arrays). Lazy: stop reading and the stepping stops.

    With `states`, the Jumanji state is appended after the reset and after each action:
    length + 1 states, the last one the state the episode ended in."""
    import jax  # JAX only here: reading the lake and the arguments fail fast without it
    import jax.numpy as jnp

    from trainer.envs import make_env

    env = make_env(task)
    reset, step_env, jumanji_step = _single_env_programs(env)
    state, step = reset(jnp.asarray(key))
    now = jax.device_get(step)
    if states is not None:
        states.append(state.inner)
    for t in range(len(actions)):
        action = jnp.asarray(actions[t], jnp.int32)
        before = state.inner
        state, step = step_env(state, action)
        after = jax.device_get(step)
        if states is not None:
            # At an episode's end MultiAgentEnv holds the next episode's reset state
            # (autoreset); the Jumanji step alone, deterministic in its state, gives the end.
            ended = bool(after.terminated | after.truncated)
            states.append(jumanji_step(before, action)[0] if ended else state.inner)
        yield now, after
        now = after


@functools.lru_cache(maxsize=8)
def _single_env_programs(env):
    """The `MultiAgentEnv`'s reset and step, and its Jumanji environment's own step, jitted
    for one environment at a time (cached: jitting anew per episode traces and compiles
    again). Each call does microseconds of work, so they compile as programs that run
    rarely (`trainer.compiled.RUNS_RARELY`): 3.2 s instead of 4.8 s for lbf's reset and
    step (benchmarks/RESULTS.md)."""
    import jax

    from trainer.compiled import compiler_options

    options = compiler_options(runs_rarely=True)
    return tuple(jax.jit(fn, compiler_options=options)
                 for fn in (env.reset, env.step, env.env.step))


def _compare(t: int, stored: dict[str, np.ndarray], now, names: tuple[str, ...]
             ) -> str | None:
    """`step t: ...` for the first of `names` whose stored value at step t is not the
    replayed EnvStep `now`'s; None if all agree."""
    for name in names:
        found = _differs(name, stored[name][t], np.asarray(getattr(now, name)))
        if found:
            return f"step {t}: {found}"
    return None


def _differs(name: str, stored: np.ndarray, replayed: np.ndarray) -> str | None:
    """`name[i][j] 2 stored, 0 replayed` at the first differing element; None if equal."""
    stored = np.asarray(stored)
    if stored.shape != replayed.shape:
        return f"{name} of shape {stored.shape} stored, {replayed.shape} replayed"
    if np.array_equal(stored, replayed):
        return None
    at = tuple(int(i) for i in np.argwhere(stored != replayed)[0])
    where = "".join(f"[{i}]" for i in at)
    return f"{name}{where} {stored[at]} stored, {replayed[at]} replayed"


@dataclass(frozen=True)
class Rendering:
    """What `render_episode` replayed and wrote."""

    replay: Replay
    path: Path | None  # the GIF written; None: the episode could not be replayed
    frames: int = 0  # the frames drawn: the episode's length + 1, or as many as were asked

    def line(self) -> str:
        """The outcome as one line (what the CLI prints with `--render`)."""
        if self.path is None:
            return self.replay.line()
        drawn = f"; rendered {self.frames} frames to {self.path}"
        if self.replay.identical:
            return self.replay.line() + drawn
        return f"{self.replay.line()}{drawn} (the environment's states, not the stored data)"


def gif_path(path: str | Path) -> Path:
    """`path` as a Path; a ValueError unless it ends in .gif inside an existing directory
    (checked before any replay, so a typo costs no work)."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"cannot render to {path}: the file name must end in .gif")
    if not path.parent.is_dir():
        raise ValueError(f"cannot render to {path}: no directory {path.parent}")
    return path


def render_episode(lake: Lake, task: str | Task, run: str, checkpoint: int, episode: int,
                   path: str | Path, frames: int | None = None, size: int = RENDER_SIZE
                   ) -> Rendering:
    """Replay the episode as `replay_episode` does and write the environment's states, drawn
    by the Jumanji environment's own viewer, to the animated GIF `path` (`write_gif`): the
    reset state, then the state after each stored action, or `frames` of them. An episode
    that does not replay identically is still drawn; nothing is written for one that cannot
    be stepped (no reset key, a malformed key, the wrong number of agents)."""
    path = gif_path(path)
    task = resolve_task(task)
    row, steps = read_episode(lake, task, run, checkpoint, episode)
    states: list = []
    result = replay_steps(task, row, steps, states)
    if not states:
        return Rendering(result, None)
    return Rendering(result, path, write_gif(task, states, path, frames, size))


def write_gif(task: Task, states: list, path: Path, frames: int | None = None,
              size: int = RENDER_SIZE) -> int:
    """Draw Jumanji `states` of `task` with its environment's viewer into the GIF `path`,
    `size` pixels wide (the viewers' figures are square), `RENDER_INTERVAL_MS` a frame;
    returns the number of frames drawn. `frames` (at least 1): at most this many states,
    evenly spaced from the first to the last (None: all).

    The GIF writer (Pillow) stores a run of identical consecutive frames (no agent moved) as
    one frame shown for their summed time, so the file holds at most as many frames as were
    drawn and always plays (frames drawn) * RENDER_INTERVAL_MS."""
    import jax

    from trainer.envs import make_env

    count = len(states) if frames is None else frames
    picked = [states[i] for i in _sample(list(range(len(states))), count)]
    # The viewer draws each frame from host arrays; one transfer instead of one per field.
    animation = make_env(task).env.animate(jax.device_get(picked), interval=RENDER_INTERVAL_MS)
    animation.save(path, writer=_gif_writer(size))
    return len(picked)


def _gif_writer(size: int):
    """matplotlib's Pillow GIF writer at `size` pixels that lays the figure out once. Why:
    the viewers' figures have constrained layout, which saving a frame otherwise runs again
    (with a draw of its own) although the axes never move: about a third of a frame."""
    from matplotlib.animation import PillowWriter

    class LayOutOnceWriter(PillowWriter):
        def setup(self, fig, outfile, dpi=None):
            super().setup(fig, outfile, size / max(fig.get_size_inches()))

        def grab_frame(self, **savefig_kwargs):
            super().grab_frame(**savefig_kwargs)
            self.fig.set_layout_engine(None)  # the axes stay where the layout put them

    return LayOutOnceWriter(fps=1000 / RENDER_INTERVAL_MS)


@dataclass(frozen=True)
class EpisodePick:
    """One episode of a task's dataset, chosen by where its return ranks (`quality_extremes`)."""

    quality: str
    rank: str  # one of EXTREMES
    run: str
    checkpoint: int
    episode: int
    episode_return: float
    length: int
    replayable: bool  # a reset key was recorded

    def name(self) -> str:
        return f"run {self.run} checkpoint {self.checkpoint} episode {self.episode}"


def worst_to_best(returns: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of episodes ([E] returns and lengths) from the worst to the best: by return,
    and of two with one return the quicker is the better; ties by index. The one order of
    the dataset card's extremes and an evaluation's best and worst episode."""
    returns, lengths = np.asarray(returns), np.asarray(lengths)
    return np.lexsort((np.arange(len(returns)), -lengths.astype(np.int64), returns))


def quality_extremes(lake: Lake, task: str | Task, run: str | None = None
                     ) -> list[EpisodePick]:
    """Per quality tag (low, then high) of `task`'s episodes (of `run`, or of every run):
    the episodes of the lowest, median (the lower one of an even count) and highest return
    in `worst_to_best` order; fewer episodes than three repeat a pick."""
    task = resolve_task(task)
    rows = read_table(lake, "episodes", Selection(
        env=task.env, tasks=[task.scenario], runs=[run] if run else None),
        ["run", "quality", "checkpoint", "episode", "return", "length", "reset_key"]
    ).to_pylist()
    rows.sort(key=lambda r: (r["run"], r["checkpoint"], r["episode"]))
    picks = []
    for quality in ("low", "high"):
        mine = [r for r in rows if r["quality"] == quality]
        if not mine:
            continue
        order = worst_to_best(np.array([r["return"] for r in mine]),
                              np.array([r["length"] for r in mine]))
        for rank, at in zip(EXTREMES, (0, (len(mine) - 1) // 2, len(mine) - 1), strict=True):
            r = mine[order[at]]
            picks.append(EpisodePick(quality, rank, r["run"], r["checkpoint"], r["episode"],
                                     float(r["return"]), int(r["length"]),
                                     r["reset_key"] is not None))
    return picks


def _sample(episodes: list[int], count: int) -> list[int]:
    """Up to `count` of `episodes`, evenly spaced from the first to the last."""
    if not episodes or count < 1:
        return []
    picks = np.linspace(0, len(episodes) - 1, min(count, len(episodes))).round()
    return [episodes[i] for i in np.unique(picks.astype(int))]


def replay_run(lake: Lake, task: str | Task, run: str, per_checkpoint: int) -> Outcome:
    """Replay `per_checkpoint` episodes of each of the run's checkpoints (evenly spaced,
    first to last). Fails naming the first episode that does not replay identically, or
    when no sampled episode is replayable (nothing was checked); episodes without a reset
    key (recorded before the column) are counted, not failed."""
    task = resolve_task(task)
    index = read_table(lake, "episodes", Selection(env=task.env, tasks=[task.scenario],
                                                   runs=[run]), ["checkpoint", "episode"])
    by_checkpoint: dict[int, list[int]] = {}
    for r in index.to_pylist():
        by_checkpoint.setdefault(r["checkpoint"], []).append(r["episode"])
    replayed, not_replayable = 0, 0
    meta: dict[str, object] = {"per_checkpoint": per_checkpoint}
    for ck in sorted(by_checkpoint):
        for e in _sample(sorted(by_checkpoint[ck]), per_checkpoint):
            result = replay_episode(lake, task, run, ck, e)
            if not result.replayable:
                not_replayable += 1
                continue
            replayed += 1
            if not result.identical:
                return Outcome(False, {**meta, "replayed": replayed,
                                       "not_replayable": not_replayable,
                                       "difference": f"{task.name} run {run} checkpoint {ck} "
                                                     f"{result.line()}"})
    meta.update(replayed=replayed, not_replayable=not_replayable)
    if not replayed:
        what = "no episodes" if not by_checkpoint else "no episode with a reset key"
        meta["reason"] = f"{task.name} run {run}: {what}, so nothing was replayed"
    return Outcome(replayed > 0, meta)


# ----------------------------------------------------------------------------- the CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.replay", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("task", help="catalogue task, env/scenario")
    parser.add_argument("--run", required=True, help="the run that recorded the episode")
    parser.add_argument("--checkpoint", type=int, required=True,
                        help="its checkpoint (from 0)")
    parser.add_argument("--episode", type=int, required=True,
                        help="its index within the checkpoint (from 0)")
    parser.add_argument("--lake", default=None,
                        help="lake root (default: $SABLE_LAKE, else ./lake)")
    parser.add_argument("--render", metavar="PATH", default=None,
                        help="also write the replayed episode as an animated GIF (.gif)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def run() -> int:
        if args.render is None:
            result = replay_episode(Lake(args.lake), args.task, args.run, args.checkpoint,
                                    args.episode)
            print(result.line())
            return 0 if result.identical else 1
        import matplotlib

        matplotlib.use("Agg")  # draw off-screen: this process writes a file, shows nothing
        rendering = render_episode(Lake(args.lake), args.task, args.run, args.checkpoint,
                                   args.episode, args.render)
        print(rendering.line())
        return 0 if rendering.replay.identical else 1

    return one_line_errors(parser.prog, run)


if __name__ == "__main__":
    sys.exit(main())
