"""The task catalogue: every task the lake may hold, as pure data.

A task is `(env, scenario)`, named `env/scenario` (e.g. `lbf/8x8-2p-2f`). Scenario names
encode the Jumanji generator parameters, so the catalogue parses them instead of listing 52
hand-written parameter dicts. Splits are data too, selectable by name in every config.

No JAX here: the Dagster UI process and DuckDB users import this module.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from types import MappingProxyType

from lake_schema.errors import UnknownTaskError


@dataclass(frozen=True)
class EnvSpec:
    """What every task of one environment shares: widths, dtypes, what each observation
    feature and action is, value support."""

    name: str
    jumanji_id: str
    obs_width: int
    obs_dtype: str  # numpy dtype name of the stored per-agent observation (narrowest exact)
    num_actions: int
    value_support: tuple[float, float]  # HL-Gauss support (paper, appendix K)
    team_reward: str  # how the team reward is formed from Jumanji's reward
    obs_features: tuple[str, ...]  # [F] what each observation feature is (trainer.envs)
    action_names: tuple[str, ...]  # [A] Jumanji's actions, in its index order
    max_agents: int = 0  # filled from the tasks below

    def __post_init__(self) -> None:
        if len(self.obs_features) != self.obs_width or len(self.action_names) != self.num_actions:
            raise ValueError(f"{self.name}: {len(self.obs_features)} feature names for width "
                             f"{self.obs_width}, {len(self.action_names)} action names for "
                             f"{self.num_actions} actions")


@dataclass(frozen=True)
class Task:
    env: str
    scenario: str
    num_agents: int
    time_limit: int
    generator: MappingProxyType = field(compare=False)  # kwargs of the Jumanji generator
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.env}/{self.scenario}"

    @property
    def spec(self) -> EnvSpec:
        return ENVS[self.env]

    def return_bounds(self) -> tuple[float, float]:
        """Inclusive bounds on a team episode return; used by asset checks and `verify`."""
        if self.env == "lbf":  # normalised rewards: all food collected sums to 1
            return (0.0, 1.0)
        if self.env == "rware":  # +1 per delivery, at most one per agent per step
            return (0.0, float(self.num_agents * self.time_limit))
        # connector, the mean over agents of (+1 on connection, -0.03 per unconnected step):
        # every agent connecting sums to 1; none ever connecting, -0.03 on every step
        return (-0.03 * self.time_limit, 1.0)


# ---------------------------------------------------------------- scenario parsing

# RWARE layouts as (shelf_rows, shelf_columns). tiny..xlarge are the published ones (Mava,
# Papoudakis et al.); giant, colossal and titanic are not published anywhere: these are this
# project's definitions, larger layouts kept valid for Jumanji (odd shelf_columns).
RWARE_LAYOUTS = MappingProxyType(
    {
        "tiny": (1, 3),
        "small": (2, 3),
        "medium": (2, 5),
        "large": (3, 5),
        "xlarge": (4, 5),
        "giant": (5, 5),  # project-defined
        "colossal": (5, 7),  # project-defined
        "titanic": (6, 9),  # project-defined
    }
)
RWARE_COLUMN_HEIGHT = 8

_LBF = re.compile(r"^(\d+)x(\d+)-(\d+)p-(\d+)f$")
_RWARE = re.compile(r"^([a-z]+)-(\d+)ag$")
_CONNECTOR = re.compile(r"^(\d+)x(\d+)x(\d+)a$")


def _lbf_task(scenario: str) -> Task:
    m = _LBF.match(scenario)
    if not m or m[1] != m[2]:
        raise ValueError(f"bad lbf scenario {scenario!r}: expected '<g>x<g>-<N>p-<F>f'")
    g, n, f = int(m[1]), int(m[3]), int(m[4])
    gen = {"grid_size": g, "num_agents": n, "num_food": f, "fov": 2, "max_agent_level": 2}
    return Task("lbf", scenario, n, 100, MappingProxyType(gen))


def _rware_task(scenario: str) -> Task:
    m = _RWARE.match(scenario)
    if not m or m[1] not in RWARE_LAYOUTS:
        raise ValueError(f"bad rware scenario {scenario!r}: expected '<size>-<N>ag'")
    rows, cols = RWARE_LAYOUTS[m[1]]
    n = int(m[2])
    gen = {
        "shelf_rows": rows,
        "shelf_columns": cols,
        "column_height": RWARE_COLUMN_HEIGHT,
        "num_agents": n,
        "sensor_range": 1,
        "request_queue_size": n,
    }
    note = "layout defined by this project (unpublished size)" if m[1] in (
        "giant", "colossal", "titanic") else ""
    return Task("rware", scenario, n, 500, MappingProxyType(gen), note)


# Connector's team reward and time limit are chosen together so that the discounted (gamma
# 0.99) returns-to-go fit the paper's HL-Gauss support [-1, 1] (appendix K), which the value
# heads clip to:
# - team reward: the MEAN over agents of Jumanji's per-agent reward (+1 when the agent
#   connects, -0.03 per step while it is unconnected: Jumanji's DenseRewardFn, which Mava
#   passes through per agent and og-marl's evaluation of Oryx averages per step). It keeps the
#   per-agent scale of all three, so an episode's connection rewards sum to at most 1. (The
#   sum over agents with the old g * g limit put 73-86% of the random policy's targets
#   outside [-1, 1] on the demo-train grids, about [-9, 4] on 12x12x4a; the sum is still
#   67-84% outside at 40 steps.)
# - time limit: 40 steps on every grid. The lowest return-to-go is an episode where no agent
#   ever connects: -0.03 (1 - 0.99^T) / 0.01, which is >= -1 only for T <= 40 (-0.993 at 40;
#   -1.185 at Jumanji's default 50, -1.90 at Mava's 100), so at 40 no policy's target can lie
#   outside [-1, 1]. Measured with the random policy on the five demo grids (64 episodes
#   each: benchmarks/connector_value_support.py): 0% outside at 40; 0.9-2.0% at 41,
#   1.8-3.8% at 42; 6-15% at Jumanji's 50 and 14-48% at Mava's 100 (random agents often
#   never connect: they block themselves or wander). Both references' limits fail the 1%
#   target, and 40 is the largest that passes (41 fails on four of the five grids). It
#   leaves time to connect: the generator's head-to-target distances on the demo grids are
#   at most 36 (95th percentile 16 on 12x12 to 30 on 24x24), and the random policy connects
#   as many agents within 40 steps as within 50 (5-11%). The cost is on the paper's larger
#   grids: some targets lie beyond 40 steps there (of 16 resets: 2.5% of the agents on
#   30x30x10a, 9% on 39x39x13a, 15% on 72x72x45a), which a longer limit would need a wider
#   support (or a smaller per-step penalty than Jumanji's) to allow.
CONNECTOR_TIME_LIMIT = 40


def _connector_task(scenario: str) -> Task:
    m = _CONNECTOR.match(scenario)
    if not m or m[1] != m[2]:
        raise ValueError(f"bad connector scenario {scenario!r}: expected '<g>x<g>x<N>a'")
    g, n = int(m[1]), int(m[3])
    return Task("connector", scenario, n, CONNECTOR_TIME_LIMIT,
                MappingProxyType({"grid_size": g, "num_agents": n}))


_PARSERS = {"lbf": _lbf_task, "rware": _rware_task, "connector": _connector_task}

# ---------------------------------------------------------------- splits (paper, Table 3)

_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "lbf": {
        "train": ("8x8-2p-2f", "10x10-3p-3f", "15x15-3p-5f", "15x15-4p-5f", "16x16-5p-6f"),
        "test": ("12x12-4p-5f", "14x14-3p-3f", "17x17-6p-8f", "17x17-8p-10f"),
        "demo-train": ("8x8-2p-2f", "10x10-3p-3f", "15x15-3p-5f"),
        "demo-test": ("12x12-4p-5f", "14x14-3p-3f"),
    },
    "rware": {
        "train": (
            "tiny-2ag", "tiny-4ag", "tiny-8ag", "small-2ag", "small-4ag", "small-16ag",
            "small-32ag", "medium-8ag", "medium-32ag", "large-16ag", "xlarge-8ag",
            "xlarge-32ag", "giant-32ag", "colossal-8ag", "titanic-16ag",
        ),
        "test": ("tiny-16ag", "medium-2ag", "medium-16ag", "xlarge-16ag", "colossal-32ag",
                 "titanic-8ag", "titanic-32ag"),
        "demo-train": ("tiny-2ag", "tiny-4ag", "small-2ag"),
        "demo-test": ("medium-2ag", "tiny-16ag"),
    },
    "connector": {
        "train": ("12x12x4a", "15x15x3a", "18x18x4a", "21x21x5a", "24x24x6a", "27x27x7a",
                  "30x30x10a", "33x33x11a", "36x36x12a", "39x39x13a"),
        "test": ("42x42x18a", "45x45x23a", "48x48x20a", "51x51x28a", "54x54x30a", "57x57x32a",
                 "60x60x33a", "63x63x35a", "66x66x40a", "69x69x43a", "72x72x45a"),
        # The paper's connector test grids are far too slow for a CPU demo: the demo holds out
        # the next-larger train grids instead (generalising to larger grids, as the paper does).
        "demo-train": ("12x12x4a", "15x15x3a", "18x18x4a"),
        "demo-test": ("21x21x5a", "24x24x6a"),
    },
}
PAPER_SPLITS = ("train", "test")  # (training split, its held-out split)
DEMO_SPLITS = ("demo-train", "demo-test")


def held_out_split(train_split: str) -> str | None:
    """The held-out split paired with a training split (`test` for `train`, `demo-test` for
    `demo-train`); None for any other name."""
    return dict((PAPER_SPLITS, DEMO_SPLITS)).get(train_split)


def _build_tasks() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for env, splits in _SPLITS.items():
        for scenario in splits["train"] + splits["test"]:
            task = _PARSERS[env](scenario)
            tasks[task.name] = task
    return tasks


TASKS: MappingProxyType[str, Task] = MappingProxyType(_build_tasks())


def _max_agents(env: str) -> int:
    return max(t.num_agents for t in TASKS.values() if t.env == env)


# ---------------------------------------------------------------- feature and action names

# What `trainer.envs` puts at each index of an agent's observation row, so cards and plots
# can label features and actions by meaning (tests/trainer/test_feature_names.py rebuilds
# real observations and checks every name against the state). A grid cell is named by its
# offset from the agent, `(row, col)`: rows grow downwards, `(+0,+0)` is the agent's own
# cell, windows are row-major (row offset outer).


def _cells(prefix: str, radius: int, skip_centre: bool = False) -> tuple[str, ...]:
    return tuple(f"{prefix}({dr:+d},{dc:+d})" for dr in range(-radius, radius + 1)
                 for dc in range(-radius, radius + 1) if not (skip_centre and dr == dc == 0))


def _interleaved(prefixes: tuple[str, ...], radius: int, skip_centre: bool = False
                 ) -> tuple[str, ...]:
    """Cell by cell, each cell's features together: `a(-1,-1), b(-1,-1), a(-1,+0), ...`."""
    per_prefix = [_cells(p, radius, skip_centre) for p in prefixes]
    return tuple(name for cell in zip(*per_prefix, strict=True) for name in cell)


# lbf: Jumanji's grid observation at fov 2, [3, 5, 5] flattened channel-major: the levels of
# the agents in view (the centre is the agent's own), the levels of uneaten food, and 1 where
# a cell is inside the grid and empty.
_LBF_FEATURES = (_cells("agent_level", 2) + _cells("food_level", 2) + _cells("accessible", 2))
# rware: Jumanji's 66 features at sensor range 1: the agent's own (row, col), whether it
# carries a shelf, its facing (one-hot up/right/down/left: Jumanji's Direction order) and
# whether it stands on a highway cell; then for each of the 8 cells around it another agent
# there and that agent's facing (5 each); then for each of the 9 cells of its 3x3 view a shelf
# there and whether it is requested (2 each).
_FACINGS = ("up", "right", "down", "left")
_RWARE_FEATURES = (
    "self_row", "self_col", "self_carrying", *(f"self_facing_{d}" for d in _FACINGS),
    "self_on_highway",
    *_interleaved(("agent", *(f"agent_facing_{d}" for d in _FACINGS)), 1, skip_centre=True),
    *_interleaved(("shelf", "shelf_requested"), 1),
)
# connector: `trainer.envs.adapters.connector_obs`: the own head and target as (row, col) / g,
# then a 5x5 blockers window on the head (+1 off the grid or another agent's head, -1 a path)
# and a 5x5 targets window (+1 the own target, -1 another agent's).
_CONNECTOR_FEATURES = ("head_row", "head_col", "target_row", "target_col",
                       *_cells("blocker", 2), *_cells("target", 2))

ENVS: MappingProxyType[str, EnvSpec] = MappingProxyType(
    {
        "lbf": EnvSpec(
            "lbf", "LevelBasedForaging-v0", obs_width=3 * 5 * 5, obs_dtype="int8",
            num_actions=6, value_support=(-1.0, 1.0),
            team_reward="sum of the agents' normalised rewards", obs_features=_LBF_FEATURES,
            action_names=("noop", "up", "down", "left", "right", "load"),
            max_agents=_max_agents("lbf"),
        ),
        "rware": EnvSpec(
            "rware", "RobotWarehouse-v0", obs_width=66, obs_dtype="int8", num_actions=5,
            value_support=(-20.0, 20.0), team_reward="the shared reward (+1 per delivery)",
            obs_features=_RWARE_FEATURES,
            # Jumanji's LEFT and RIGHT turn the robot in place; only FORWARD moves it
            action_names=("noop", "forward", "turn_left", "turn_right", "toggle_load"),
            max_agents=_max_agents("rware"),
        ),
        "connector": EnvSpec(
            "connector", "Connector-v3", obs_width=54, obs_dtype="float32", num_actions=5,
            value_support=(-1.0, 1.0),
            team_reward="mean of the agents' rewards (+1 on connecting, -0.03 per step "
                        "while unconnected)",
            obs_features=_CONNECTOR_FEATURES,
            action_names=("noop", "up", "right", "down", "left"),
            max_agents=_max_agents("connector"),
        ),
    }
)

# ---------------------------------------------------------------- lookups


# Up to this many valid names are all listed (an env's tasks, its splits); a longer list (all
# 52 tasks) gives its closest few.
_LIST_ALL = 12


def _unknown(kind: str, name: str, valid: list[str]) -> UnknownTaskError:
    """The error naming `name` with its closest valid names: a few, never a truncated
    alphabetical list in which the meant name may be missing."""
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    if close:
        hint = f"did you mean {', '.join(close)}?"
    elif len(valid) <= _LIST_ALL:
        hint = f"valid: {', '.join(valid)}"
    else:
        nearest = difflib.get_close_matches(name, valid, n=3, cutoff=0.0)
        hint = (f"the closest of {len(valid)}: {', '.join(nearest)} (`python -m lake_schema "
                "tasks` lists them all)")
    return UnknownTaskError(f"unknown {kind} {name!r}; {hint}")


def env_spec(env: str) -> EnvSpec:
    if env not in ENVS:
        raise _unknown("environment", env, list(ENVS))
    return ENVS[env]


def scenario(task_name: str) -> str:
    """`env/scenario` -> `scenario` (the lake's `task` partition value)."""
    return task_name.split("/", 1)[1]


def get_task(name: str) -> Task:
    """Look a task up by `env/scenario`; unknown names list the closest valid ones."""
    if name in TASKS:
        return TASKS[name]
    env, sep, _ = name.partition("/")
    if sep:
        env_spec(env)  # an unknown env is named as such
        raise _unknown("task", name, task_names(env))
    raise _unknown("task", name, list(TASKS))


def task_names(env: str | None = None) -> list[str]:
    if env is not None:
        env_spec(env)
    return [n for n, t in TASKS.items() if env is None or t.env == env]


def split_names(env: str) -> list[str]:
    return list(_SPLITS[env_spec(env).name])


def split_tasks(env: str, split: str) -> list[Task]:
    """The tasks of a named split (`train`, `test`, `demo-train`, `demo-test`) in paper order."""
    splits = _SPLITS[env_spec(env).name]
    if split not in splits:
        raise _unknown(f"split of {env}", split, list(splits))
    return [TASKS[f"{env}/{s}"] for s in splits[split]]


def splits_of(task: Task) -> list[str]:
    return [s for s, names in _SPLITS[task.env].items() if task.scenario in names]
