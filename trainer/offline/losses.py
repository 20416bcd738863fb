"""Offline losses on Sable's outputs: BC-Sable, CQL-Sable and Oryx (autoregressive ICQ).

All are pure functions of (B, T, N, ...) arrays: B chunks of T consecutive steps of N agent
slots, A actions. Teacher forcing makes them autoregressive: agent i's logits and Q-values
come from the decoder given the observations and the dataset actions of the real agents
before it (`trainer.networks.sable`).

Masks. `mask` (B, T, N) marks the agent-steps that count (real agents; every step of a
loader chunk is a real recorded step). Every mean is over masked entries only, and the
batch-wise softmax weights of Oryx are normalised over masked entries only, so padded agents
change nothing.

Episode boundaries inside a chunk (a chunk is a window of a task's concatenated episodes;
`first[t]` marks a step that starts an episode). The TD target of step t bootstraps from the
same agent slot at step t + 1:

    y_t = r_t + gamma * (1 - terminated_t) * next_t,     next_t = bootstrap value at t + 1,

and step t has a TD target (`td_mask`) only when it is meaningful:
  * terminated_t: y_t = r_t (nothing to bootstrap; also at the chunk's last step);
  * t + 1 in the chunk and not `first[t + 1]`: the next step of the same episode;
  * otherwise, not used: a truncated step (its final observation was dropped by the
    environment's autoreset, so no value to bootstrap from, and treating it as terminal would
    bias values towards 0) and the chunk's last step when it did not terminate (its next step
    is outside the chunk).
So nothing crosses an episode boundary: a bootstrap never reads a step of another episode.
The retention state itself is reset at `first` by the network.

Tasks weigh equally (the paper's Eq. 1). With `tasks` (B, M), the one-hot task of each
chunk, a loss is the mean over the batch's tasks of each task's own mean over its real
agent-steps, so a 32-agent task weighs as much as a 2-agent one. With `tasks=None` (the
`agent_steps` ablation) it is one mean over every real agent-step of the batch, where a task
weighs in proportion to its team size.

HL-Gauss (`support` given): Q-heads output (A, bins) logits, a Q-value is the expectation
of its histogram, and the critic loss is the cross-entropy against the projected TD target.
With `support=None` Q-heads output scalars and the critic loss is 0.5 (y - Q)^2.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from trainer.offline import hl_gauss
from trainer.offline.hl_gauss import Support
from trainer.ops import masked_mean


class LossTerms(NamedTuple):
    """A loss and its parts (scalars; parts an algorithm lacks are 0)."""

    total: jax.Array
    policy: jax.Array  # BC negative log-likelihood, or Oryx's weighted policy loss
    critic: jax.Array  # TD loss (cross-entropy with HL-Gauss, else 0.5 squared error)
    conservative: jax.Array  # CQL's logsumexp_a Q - Q(a_data) (before its coefficient)
    q_data: jax.Array  # mean Q(s, a_data) over masked entries
    per_sample: jax.Array  # (B,) each chunk's own total loss (for per-task metrics)


# ----------------------------------------------------------------------------- helpers


def task_mean(x: jax.Array, mask: jax.Array, tasks: jax.Array | None) -> jax.Array:
    """Eq. 1: the mean over the batch's tasks of each task's masked mean of x.

    x, mask (B, ...); tasks (B, M) one-hot (tasks absent from the batch do not count).
    `tasks=None`: one masked mean over the whole batch.
    """
    if tasks is None:
        return masked_mean(x, mask)
    m = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    axes = tuple(range(1, x.ndim))
    tasks = tasks.astype(x.dtype)
    sums = jnp.sum(x * m, axis=axes) @ tasks  # (M,)
    counts = jnp.sum(m, axis=axes) @ tasks  # (M,)
    present = counts > 0
    per_task = jnp.where(present, sums / jnp.maximum(counts, 1.0), 0.0)
    return jnp.sum(per_task) / jnp.maximum(jnp.sum(present), 1)


def per_sample_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """(B, ...) -> (B,) masked mean of each sample."""
    return masked_mean(x, mask, axis=tuple(range(1, x.ndim)))


def take_action(x: jax.Array, actions: jax.Array) -> jax.Array:
    """x (B, T, N, A, ...) at the dataset actions (B, T, N) -> (B, T, N, ...)."""
    idx = actions.astype(jnp.int32).reshape(actions.shape + (1,) * (x.ndim - actions.ndim))
    return jnp.take_along_axis(x, idx, axis=actions.ndim)[:, :, :, 0]


def action_log_probs(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """log pi(a_data): logits (B, T, N, A) (illegal at float32 min) -> (B, T, N)."""
    return take_action(jax.nn.log_softmax(logits, axis=-1), actions)


def q_values(q: jax.Array, support: Support | None) -> jax.Array:
    """Scalar Q (B, T, N, A) from the head's raw output (scalars, or logits over bins)."""
    return q if support is None else hl_gauss.expectation(q, support)


def next_step(x: jax.Array) -> jax.Array:
    """x (B, T, ...) shifted one step earlier: out[:, t] = x[:, t + 1], 0 at the last step."""
    return jnp.concatenate([x[:, 1:], jnp.zeros_like(x[:, :1])], axis=1)


def td_mask(mask: jax.Array, terminated: jax.Array, first: jax.Array) -> jax.Array:
    """(B, T, N) agent-steps with a TD target (see the module docstring).

    mask (B, T, N); terminated, first (B, T).
    """
    continues = ~next_step(first.astype(bool))  # the next step is in the chunk ...
    continues = continues.at[:, -1].set(False)  # ... (there is none after the last one)
    next_real = next_step(mask.astype(bool))  # the same slot is a real agent at t + 1
    ok = terminated.astype(bool)[..., None] | (continues[..., None] & next_real)
    return mask.astype(bool) & ok


def td_targets(
    reward: jax.Array, next_value: jax.Array, terminated: jax.Array, gamma: float
) -> jax.Array:
    """y_t = r_t + gamma (1 - terminated_t) next_value[:, t + 1] (0 past the chunk's end).

    reward, terminated (B, T); next_value (B, T, N): the bootstrap value of each agent-step,
    read at the next step. Only entries inside `td_mask` are meaningful.
    """
    live = 1.0 - terminated.astype(jnp.float32)
    return reward[..., None] + gamma * (live[..., None] * next_step(next_value))


def critic_terms(
    q_data_raw: jax.Array, target: jax.Array, support: Support | None
) -> jax.Array:
    """Per-element critic loss: the head's output at a_data (B, T, N[, bins]), targets (B, T, N).

    HL-Gauss: cross-entropy with the projected target; else 0.5 (y - Q)^2.
    """
    target = jax.lax.stop_gradient(target)
    if support is None:
        return 0.5 * jnp.square(target - q_data_raw)
    return hl_gauss.cross_entropy(q_data_raw, target, support)


def batch_softmax_weights(x: jax.Array, mask: jax.Array, temperature: float) -> jax.Array:
    """ICQ weights: n * softmax(x / temperature) over the batch axis (axis 0), per position.

    Only masked entries take part (others get weight 0), and n is the number of masked
    entries at the position, so the weights average to 1 over them (og-marl: B * softmax).
    No gradient flows through the weights.
    """
    x = jax.lax.stop_gradient(x)
    mask = jnp.broadcast_to(mask, x.shape).astype(bool)
    z = jnp.where(mask, x / temperature, -jnp.inf)
    z_max = jnp.max(jnp.where(mask, z, jnp.finfo(x.dtype).min), axis=0, keepdims=True)
    e = jnp.where(mask, jnp.exp(z - z_max), 0.0)
    total = jnp.sum(e, axis=0, keepdims=True)
    count = jnp.sum(mask, axis=0, keepdims=True).astype(x.dtype)
    return count * e / jnp.maximum(total, jnp.finfo(x.dtype).tiny)


# ----------------------------------------------------------------------------- the losses


def bc_loss(
    logits: jax.Array, actions: jax.Array, mask: jax.Array, tasks: jax.Array | None = None
) -> LossTerms:
    """BC-Sable: mean over real agent-steps of -log pi(a_i | s, a_<i) (autoregressive NLL),
    per task then over tasks (`task_mean`)."""
    nll = -action_log_probs(logits, actions)
    loss = task_mean(nll, mask, tasks)
    zero = jnp.zeros((), loss.dtype)
    return LossTerms(loss, loss, zero, zero, zero, per_sample_mean(nll, mask))


def cql_loss(
    q: jax.Array,
    target_q: jax.Array,
    actions: jax.Array,
    legal: jax.Array,
    reward: jax.Array,
    terminated: jax.Array,
    first: jax.Array,
    mask: jax.Array,
    *,
    gamma: float,
    alpha: float,
    support: Support | None,
    tasks: jax.Array | None = None,
) -> LossTerms:
    """CQL-Sable: autoregressive Q-learning plus the conservative term (Kumar et al. 2020).

    Q_i(s, a_<i, .) is the decoder's Q head for agent i given the dataset actions of the agents
    before it. TD target: y = r + gamma (1 - terminated) max_{a legal} Qt_i(s', a'_<i, a),
    the Polyak target network at the same agent's next step (the dataset actions a'_<i of that
    step as context). Conservative term: logsumexp over legal actions of Q - Q(a_data), on
    every real agent-step. Loss = TD + alpha * conservative.

    q, target_q: (B, T, N, A) or (B, T, N, A, bins); actions (B, T, N); legal (B, T, N, A);
    reward, terminated, first (B, T); mask (B, T, N); tasks (B, M) one-hot or None.
    """
    qv = q_values(q, support)  # (B, T, N, A)
    q_data = take_action(qv, actions)
    tq = jax.lax.stop_gradient(q_values(target_q, support))
    next_max = jnp.max(jnp.where(legal, tq, -jnp.inf), axis=-1)  # (B, T, N)
    next_max = jnp.where(jnp.any(legal, axis=-1), next_max, 0.0)
    y = td_targets(reward, next_max, terminated, gamma)
    valid_td = td_mask(mask, terminated, first)
    critic_el = critic_terms(take_action(q, actions), y, support)
    critic = task_mean(critic_el, valid_td, tasks)
    lse = jax.nn.logsumexp(jnp.where(legal, qv, -jnp.inf), axis=-1)
    conservative_el = lse - q_data
    conservative = task_mean(conservative_el, mask, tasks)
    total = critic + alpha * conservative
    per_sample = per_sample_mean(critic_el, valid_td) + alpha * per_sample_mean(
        conservative_el, mask
    )
    zero = jnp.zeros((), total.dtype)
    return LossTerms(total, zero, critic, conservative, masked_mean(q_data, mask), per_sample)


def oryx_loss(
    logits: jax.Array,
    q: jax.Array,
    target_q: jax.Array,
    actions: jax.Array,
    reward: jax.Array,
    terminated: jax.Array,
    first: jax.Array,
    mask: jax.Array,
    *,
    gamma: float,
    value_temperature: float,
    policy_temperature: float,
    critic_coef: float,
    support: Support | None,
    tasks: jax.Array | None = None,
) -> LossTerms:
    """Oryx (og-marl's discrete Oryx, autoregressive ICQ), steps 1-7:

    1. Q = Q(s, a_data) (online), Qt = Qt(s, a_data) (target network, same sequence);
    2. w = n * softmax(Qt / value_temperature) over the batch axis (per timestep and slot);
    3. y = r + gamma (1 - terminated) (w * Qt) read at the same agent's next step; no gradient;
    4. critic = mean over TD-valid entries of 0.5 (y - Q)^2 (or the HL-Gauss cross-entropy),
       per task then over tasks (`task_mean`), as are the other means;
    5. pi = softmax(policy logits); V = sum_a pi(a) Q(a); adv = stop_grad(Q(a_data) - V);
    6. w_pi = n * softmax(adv / policy_temperature) over the batch axis;
       policy = mean over real entries of -w_pi log pi(a_data);
    7. loss = critic_coef * critic + policy.

    Shapes as `cql_loss`; logits (B, T, N, A) legal-masked by the network.
    """
    qv = q_values(q, support)  # (B, T, N, A)
    q_data = take_action(qv, actions)
    tq_data = jax.lax.stop_gradient(take_action(q_values(target_q, support), actions))
    w_value = batch_softmax_weights(tq_data, mask, value_temperature)
    y = td_targets(reward, w_value * tq_data, terminated, gamma)
    valid_td = td_mask(mask, terminated, first)
    critic_el = critic_terms(take_action(q, actions), y, support)
    critic = task_mean(critic_el, valid_td, tasks)

    log_pi = jax.nn.log_softmax(logits, axis=-1)
    baseline = jnp.sum(jnp.exp(log_pi) * qv, axis=-1)
    adv = jax.lax.stop_gradient(q_data - baseline)
    w_policy = batch_softmax_weights(adv, mask, policy_temperature)
    policy_el = -w_policy * take_action(log_pi, actions)
    policy = task_mean(policy_el, mask, tasks)

    total = critic_coef * critic + policy
    per_sample = critic_coef * per_sample_mean(critic_el, valid_td) + per_sample_mean(
        policy_el, mask
    )
    zero = jnp.zeros((), total.dtype)
    return LossTerms(total, policy, critic, zero, masked_mean(q_data, mask), per_sample)
