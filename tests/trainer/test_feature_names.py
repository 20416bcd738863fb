"""The catalogue's feature names (`EnvSpec.obs_features`) say what `trainer.envs` really puts
at each index: every feature of every agent, on real Jumanji states (resets and random
steps), equals the value its name describes, read from the Jumanji state by hand."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from lake_schema.catalogue import ENVS
from trainer.envs import make_env, random_actions

CELL = re.compile(r"(?P<what>\w+)\((?P<dr>[+-]\d),(?P<dc>[+-]\d)\)")  # `food_level(-1,+2)`
FACINGS = ("up", "right", "down", "left")  # Jumanji's RWARE Direction order


def _states(name: str, episodes: int = 3, steps: int = 15):
    """(Jumanji state, obs [N, F]) pairs as numpy: each reset and the random steps after it."""
    env = make_env(name)
    key = jax.random.PRNGKey(0)
    for _ in range(episodes):
        key, k = jax.random.split(key)
        state, step = env.reset(k)
        for _ in range(steps):
            yield env, jax.tree.map(np.asarray, state.inner), np.asarray(step.obs)
            key, k = jax.random.split(key)
            state, step = env.step(state, random_actions(k, step.legal))


def _cell(feature: str, origin) -> tuple[str, int, int]:
    m = CELL.fullmatch(feature)
    assert m, feature
    return m["what"], int(origin[0]) + int(m["dr"]), int(origin[1]) + int(m["dc"])


def _lbf(env, s, i: int, feature: str) -> float:
    g = env.task.generator["grid_size"]
    what, r, c = _cell(feature, s.agents.position[i])
    inside = 0 <= r < g and 0 <= c < g
    agents = (s.agents.position == (r, c)).all(1)
    food = (s.food_items.position == (r, c)).all(1) & ~s.food_items.eaten
    return {"agent_level": s.agents.level[agents].sum(),
            "food_level": s.food_items.level[food].sum(),
            "accessible": inside and not agents.any() and not food.any()}[what]


def _rware(env, s, i: int, feature: str) -> float:
    x, y = s.agents.position.x[i], s.agents.position.y[i]
    own = {"self_row": x, "self_col": y, "self_carrying": s.agents.is_carrying[i],
           "self_on_highway": env.env.highways[x, y],
           **{f"self_facing_{d}": s.agents.direction[i] == k for k, d in enumerate(FACINGS)}}
    if feature in own:
        return own[feature]
    what, r, c = _cell(feature, (x, y))
    shelves, agents = s.grid  # Jumanji's channels: shelf id + 1, agent id + 1 (0: none)
    if not (0 <= r < shelves.shape[0] and 0 <= c < shelves.shape[1]):
        return 0
    shelf, other = shelves[r, c] - 1, agents[r, c] - 1
    if what == "shelf":
        return shelf >= 0
    if what == "shelf_requested":
        return shelf >= 0 and s.shelves.is_requested[shelf]
    if what == "agent":
        return other >= 0
    facing = FACINGS.index(what.removeprefix("agent_facing_"))
    return other >= 0 and s.agents.direction[other] == facing


def _connector(env, s, i: int, feature: str) -> float:
    g = s.grid.shape[0]
    head, target = s.agents.position[i], s.agents.target[i]
    own = {"head_row": head[0], "head_col": head[1], "target_row": target[0],
           "target_col": target[1]}
    if feature in own:
        return own[feature] / g
    what, r, c = _cell(feature, head)
    if not (0 <= r < g and 0 <= c < g):
        return 1.0 if what == "blocker" else 0.0
    v = s.grid[r, c]  # Jumanji's encoding: agent k's path 1 + 3k, head 2 + 3k, target 3 + 3k
    kind, owner = (v - 1) % 3, (v - 1) // 3
    if v == 0:
        return 0.0
    if what == "blocker":
        return -1.0 if kind == 0 else float(kind == 1 and owner != i)
    return 0.0 if kind != 2 else (1.0 if owner == i else -1.0)


@pytest.mark.parametrize(("name", "expected"), [
    ("lbf/8x8-2p-2f", _lbf), ("rware/tiny-4ag", _rware), ("connector/12x12x4a", _connector)])
def test_every_feature_is_what_its_name_says(name, expected):
    spec = ENVS[name.split("/")[0]]
    seen = np.zeros(spec.obs_width, bool)  # features non-zero somewhere: the check bites
    for env, inner, obs in _states(name):
        assert obs.shape[1] == len(spec.obs_features)
        for i, row in enumerate(obs):
            want = [float(expected(env, inner, i, f)) for f in spec.obs_features]
            wrong = [(f, float(v), w) for f, v, w in zip(spec.obs_features, row, want,
                                                         strict=True) if not np.isclose(v, w)]
            assert not wrong, (name, i, wrong[:5])
            seen |= row != 0
    print(name, "features seen non-zero:", int(seen.sum()), "of", spec.obs_width)
    assert seen.sum() >= spec.obs_width // 3, [f for f, s in zip(spec.obs_features, seen,
                                                                  strict=True) if s]


def test_a_few_features_by_hand():
    """lbf/8x8-2p-2f, agent 0 of the first reset: its own level at the centre of its view,
    the channel-major layout, the cells of its view beyond the grid's edge empty."""
    features = ENVS["lbf"].obs_features
    assert features.index("food_level(-2,-2)") == 25 and features.index("accessible(-2,-2)") == 50
    _, s, obs = next(_states("lbf/8x8-2p-2f"))
    row = dict(zip(features, obs[0], strict=True))
    assert row["agent_level(+0,+0)"] == obs[0][12] == s.agents.level[0] > 0
    assert row["accessible(+0,+0)"] == obs[0][62] == 0  # the agent stands there
    x, y = s.agents.position[0]
    outside = [(dr, dc) for dr in range(-2, 3) for dc in range(-2, 3)
               if not (0 <= x + dr < 8 and 0 <= y + dc < 8)]
    for dr, dc in outside:
        cell = f"({dr:+d},{dc:+d})"
        assert row["agent_level" + cell] == row["food_level" + cell] == 0
        assert row["accessible" + cell] == 0
