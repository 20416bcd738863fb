"""Batches: padded, masked, agent-shuffled, standardised numpy arrays.

Per sample, agents are padded up to N_out (the environment's maximum, a fixed count, or the
batch's maximum) and the order of all N_out slots (real and padded together) follows the
plan's per-sample permutation, identically for every per-agent array. `agent_mask` is the
source of truth for which slots are real.

Padded agents: observation 0 (after standardisation: exactly zero, not -mean/std),
action 0, agent_mask False, and legal-action mask with only action 0 (`PAD_LEGAL_ACTION`)
legal. Not all-False on purpose: a masked softmax or logsumexp over an all-False row is
NaN, and a NaN survives being multiplied by a zero mask in the loss and its gradient;
with one legal action every per-agent computation stays finite and the mask removes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from trainer.data.balancing import BatchPlan
from trainer.data.source import ChunkSource
from trainer.data.stats import ObsStats

PAD_LEGAL_ACTION = 0


class Batch(NamedTuple):
    """One (per-process) batch; B samples of T steps, N agent slots, F features, A actions."""

    obs: np.ndarray  # [B, T, N, F] float32 (or bfloat16), standardised; 0 for padded agents
    actions: np.ndarray  # [B, T, N] int32; 0 for padded agents
    legal: np.ndarray  # [B, T, N, A] bool; padded agents: only action 0
    reward: np.ndarray  # [B, T] float32, team reward
    terminated: np.ndarray  # [B, T] bool
    truncated: np.ndarray  # [B, T] bool
    first: np.ndarray  # [B, T] bool: the step starts an episode (reset recurrent state)
    agent_mask: np.ndarray  # [B, T, N] bool: True for real agents
    task: np.ndarray  # [B] int32 index into the loader's tasks: metrics only, never the model


def assemble_batch(source: ChunkSource, plan: BatchPlan, stats: ObsStats,
                   rows: slice = slice(None), obs_dtype: np.dtype = np.float32,
                   zeros: Callable[[tuple, np.dtype], np.ndarray] = np.zeros) -> Batch:
    """The batch of `plan`'s samples `rows` (this process's slice of the global batch).

    `zeros(shape, dtype)` allocates the outputs (zero-filled): a Grain worker passes shared
    memory, so the batch reaches the main process without another copy.
    """
    task, start = plan.task[rows], plan.start[rows]
    order = np.asarray(plan.agent_order[rows])
    b, t_len, n_out = len(task), source.seq_len, plan.num_agents_out
    sample = source.arrays[0]
    f, a = sample["obs"].shape[-1], sample["legal"].shape[-1]
    obs = zeros((b, t_len, n_out, f), obs_dtype)
    actions = zeros((b, t_len, n_out), np.int32)
    legal = zeros((b, t_len, n_out, a), np.bool_)
    legal[..., PAD_LEGAL_ACTION] = True
    mask = zeros((b, t_len, n_out), np.bool_)
    reward = zeros((b, t_len), np.float32)
    terminated, truncated, first = (zeros((b, t_len), np.bool_) for _ in range(3))
    task_out = zeros((b,), np.int32)
    task_out[:] = task
    slot_of_agent = np.argsort(order, axis=1)  # [b, N_out]: slot holding source agent j
    for k in np.unique(task):
        r = np.flatnonzero(task == k)
        d = source.gather(int(k), start[r])
        n = source.num_agents[k]
        if n > n_out:
            raise ValueError(f"{source.task_names[k]} has {n} agents, more than the "
                             f"{n_out} agent slots of the batch")
        rr, dest = r[:, None], slot_of_agent[r, :n]  # [k, 1], [k, n]
        # advanced indices around a slice put their [k, n] axes first: values are [k, n, T, ...]
        obs[rr, :, dest] = stats.standardise(d["obs"], obs_dtype).transpose(0, 2, 1, 3)
        actions[rr, :, dest] = d["action"].transpose(0, 2, 1)
        legal[rr, :, dest] = d["legal"].transpose(0, 2, 1, 3)
        mask[rr, :, dest] = True
        reward[r], terminated[r] = d["reward"], d["terminated"]
        truncated[r], first[r] = d["truncated"], d["first"]
    return Batch(obs, actions, legal, reward, terminated, truncated, first, mask, task_out)
