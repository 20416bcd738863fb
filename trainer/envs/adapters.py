"""Per-environment observation adapters: Jumanji's observations -> fixed-width per-agent rows.

Why: a multi-task model sees every task of an environment through one input layer, so the
per-agent width must not depend on grid size or agent count (no one-hot agent ids). Each
adapter is a pure jnp function of one (unbatched) environment; vmap it for batches.

Widths (they must match `lake_schema.catalogue.ENVS[env].obs_width`):
- lbf: Jumanji's grid observation (3, 5, 5) per agent (agents' levels, food levels,
  accessibility; fov=2) flattened channel-major to 75 values, int8.
- rware: Jumanji's 66 per-agent integer features (sensor range 1), int8.
- connector: 54 float32 features per agent built from the full grid (see `connector_obs`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LBF_VIEW = (3, 5, 5)  # (channels, 2*fov+1, 2*fov+1) at fov=2
LBF_WIDTH = int(np.prod(LBF_VIEW))
RWARE_WIDTH = 66  # sensor range 1
CONNECTOR_RADIUS = 2  # 5x5 windows
CONNECTOR_WINDOW = 2 * CONNECTOR_RADIUS + 1
CONNECTOR_WIDTH = 4 + 2 * CONNECTOR_WINDOW**2  # 54

# Jumanji connector grid encoding (jumanji.environments.routing.connector.constants):
# EMPTY=0; for agent i: PATH=1+3i, POSITION (head)=2+3i, TARGET=3+3i.
_OUTSIDE = -1  # pad value for cells beyond the grid edge (never a Jumanji cell value)


def _check_trailing(name: str, x: jax.Array, trailing: tuple[int, ...]) -> None:
    """Trace-time shape check: shapes are static even under jit/vmap, so this costs nothing."""
    if x.ndim != len(trailing) or tuple(x.shape) != trailing:
        raise ValueError(f"{name} must have shape {trailing}, got {tuple(x.shape)}")


def lbf_obs(agents_view: jax.Array) -> jax.Array:
    """[N, 3, 5, 5] int32 Jumanji grid observation -> [N, 75] int8.

    Values: agent levels (<= max_agent_level 2), food levels (<= sum of 3 agent levels, 6)
    and a 0/1 accessibility mask, all well inside int8 (checked by the test suite).
    """
    n = agents_view.shape[0] if agents_view.ndim else 0
    _check_trailing("lbf agents_view", agents_view, (n, *LBF_VIEW))
    return agents_view.reshape(n, LBF_WIDTH).astype(jnp.int8)


def rware_obs(agents_view: jax.Array) -> jax.Array:
    """[N, 66] int32 Jumanji features -> [N, 66] int8.

    The largest values are the agent's own (row, col); the biggest layout (titanic, 56 x 28
    cells) keeps them below 56, inside int8 (checked by the test suite).
    """
    n = agents_view.shape[0] if agents_view.ndim else 0
    _check_trailing("rware agents_view", agents_view, (n, RWARE_WIDTH))
    return agents_view.astype(jnp.int8)


def _windows(grid: jax.Array, centres: jax.Array) -> jax.Array:
    """5x5 windows of `grid` [g, g] centred on `centres` [N, 2] -> [N, 5, 5]; off-grid = -1."""
    r = CONNECTOR_RADIUS
    padded = jnp.pad(grid, r, constant_values=_OUTSIDE)  # [g+2r, g+2r]
    # centre (x, y) in grid coordinates is (x + r, y + r) in padded ones, so the window's
    # top-left corner in padded coordinates is exactly (x, y).
    size = (CONNECTOR_WINDOW, CONNECTOR_WINDOW)
    return jax.vmap(lambda c: jax.lax.dynamic_slice(padded, (c[0], c[1]), size))(centres)


def connector_obs(grid: jax.Array, heads: jax.Array, targets: jax.Array) -> jax.Array:
    """Full connector grid -> [N, 54] float32 per-agent view, fixed across grid sizes.

    Args:
        grid: [g, g] int32 Jumanji grid (Observation.grid / State.grid).
        heads: [N, 2] int32 (row, col) of every agent's head (State.agents.position).
        targets: [N, 2] int32 (row, col) of every agent's target (State.agents.target).

    Layout per agent i (all floats):
    - [0:4]   own head (row, col) / g, own target (row, col) / g.
    - [4:29]  5x5 blockers window centred on the own head, row-major (row offset -2..2 outer,
              col offset -2..2 inner): 1 off the grid, +1 another agent's head, -1 any path
              cell (own or another agent's). The own head (the centre cell) is 0: it is
              always there, so it carries no information. Empty cells and targets are 0.
    - [29:54] 5x5 targets window, same cells: +1 own target, -1 another agent's target, 0
              otherwise (off-grid too). Once an agent connects, Jumanji overwrites its target
              cell with its head, so the target shows as a head (+1 blocker) for the others and
              the own target coincides with the own head.
    Every non-zero blocker cell, and every -1 target cell, is a cell the agent cannot enter.
    """
    if grid.ndim != 2 or grid.shape[0] != grid.shape[1]:
        raise ValueError(f"connector grid must be square [g, g], got {tuple(grid.shape)}")
    n = heads.shape[0] if heads.ndim else 0
    _check_trailing("connector heads", heads, (n, 2))
    _check_trailing("connector targets", targets, (n, 2))
    g = grid.shape[0]

    win = _windows(grid, heads)  # [N, 5, 5] int32
    ids = jnp.arange(n, dtype=grid.dtype)[:, None, None]  # [N, 1, 1]
    occupied = win > 0
    kind = (win - 1) % 3  # 0 path, 1 head, 2 target (meaningful where occupied)
    owner = (win - 1) // 3  # agent id of the cell (meaningful where occupied)
    is_path = occupied & (kind == 0)
    is_head = occupied & (kind == 1)
    is_target = occupied & (kind == 2)
    mine = owner == ids

    blockers = (
        jnp.where(win == _OUTSIDE, 1.0, 0.0)
        + jnp.where(is_head & ~mine, 1.0, 0.0)
        - jnp.where(is_path, 1.0, 0.0)
    )
    target_view = jnp.where(is_target & mine, 1.0, 0.0) - jnp.where(is_target & ~mine, 1.0, 0.0)
    coords = jnp.concatenate([heads, targets], axis=-1).astype(jnp.float32) / g  # [N, 4]
    return jnp.concatenate(
        [coords, blockers.reshape(n, -1), target_view.reshape(n, -1)], axis=-1
    ).astype(jnp.float32)
