"""PPO for Sable (as Mava's recurrent Sable): one jitted rollout + update step.

`make_ppo_update(env, model, config)` returns the jitted
`update(state, n, learn, uniform) -> (state, metrics, last rollout)`, n updates in one call (a
`lax.fori_loop` with a traced count: one program for every n, and no host round trip between
the updates of a call). It is the task's one rollout program: with `learn` off it only rolls
the policy on (the recording of checkpoints and references, `policy_rollout`), and `uniform`
replaces the policy's actions with uniform-random legal ones (the random baseline). Each
update is:

1. rollout: `rollout_length` steps of `num_envs` vmapped environments continuing from the last
   update's (`trainer.envs.rollout.continue_rollout`), actions from Sable's recurrent `act`;
   the retention state at the rollout start is kept;
2. GAE over the rollout (team reward, one value per agent);
3. `ppo_epochs` epochs (lax.scan), each: shuffle environments, draw one random agent order
   for the whole batch, then `num_minibatches` Adam steps (lax.scan) on the clipped PPO loss,
   computed by the chunkwise form over each environment's whole rollout, starting from the
   retention state stored at the rollout start.

Retention state in minibatches: minibatches hold whole environments, so each sequence is
the full rollout of one environment and starts from that environment's stored state (the
state `act` was given at the rollout start); episode starts inside the rollout reset it, as
in acting. The agent permutation is applied to the per-agent data only, not to the stored
state: the encoder's state is a sum over agents (order-free); the decoder's depends on the
order it was acted in, a small mismatch confined to the steps before the rollout's first
episode start (Mava does the same). With `recompute_old_log_probs`, pi_old is recomputed
under the epoch's order from the same inputs, so the ratio compares like with like.

Losses and GAE are top-level pure functions (unit-tested on their own).

Shapes: T rollout steps, B environments, N agents, F observation width, A actions.
Time layout of a rollout (see `trainer.envs.rollout`): decision t reads obs[t] / legal[t]
(`first[t]`: obs[t] starts an episode); reward[t] / done[t] are those of the step it causes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trainer.envs import EnvState, EnvStep, MultiAgentEnv, Rollout
from trainer.envs.rollout import chain_rollouts, continue_rollout, random_actions
from trainer.networks import Sable, SableConfig, SableOutput, SableState
from trainer.networks.sable import sable_actor
from trainer.online.config import OnlineConfig
from trainer.ops import masked_mean


class PPOState(NamedTuple):
    """Everything the jitted step carries (and the orbax checkpoint holds)."""

    params: Any
    opt_state: Any
    env_state: EnvState  # [B, ...]
    last_step: EnvStep  # [B, ...]: the next decision's input
    hstate: SableState  # [B, ...] retention state before acting on last_step
    running_return: jax.Array  # [B] return so far of each environment's current episode
    key: jax.Array  # [2] uint32
    update: jax.Array  # [] int32: updates done
    total_updates: jax.Array  # [] int32: the budget's updates (the learning-rate schedule)


class PPOMetrics(NamedTuple):
    """Scalars of one update (losses averaged over epochs and minibatches)."""

    episodes: jax.Array  # episodes completed in the rollout
    return_sum: jax.Array  # sum of their team returns
    reward_mean: jax.Array  # mean team reward per env step
    total_loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array


# ----------------------------------------------------------------------------- pure pieces


def gae(
    reward: jax.Array,
    value: jax.Array,
    done: jax.Array,
    last_value: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation, backwards over time (lax.scan).

    Args:
        reward: [T, B] team reward of step t (broadcast over trailing value axes, e.g. agents).
        value: [T, B, ...] V(obs[t]).
        done: [T, B] the episode ended with step t: no bootstrapping across it. Truncation is
            treated as an end too (the final observation is dropped by the autoreset).
        last_value: [B, ...] V of the observation after the last step.

    Returns:
        advantages and value targets (advantages + value), both shaped like `value`.
    """
    extra = (1,) * (value.ndim - reward.ndim)
    reward = reward.reshape(reward.shape + extra).astype(value.dtype)
    live = 1.0 - done.reshape(done.shape + extra).astype(value.dtype)

    def body(carry, xs):
        next_adv, next_value = carry
        r, v, keep = xs
        delta = r + gamma * keep * next_value - v
        adv = delta + gamma * lam * keep * next_adv
        return (adv, v), adv

    init = (jnp.zeros_like(last_value), last_value)
    _, adv = jax.lax.scan(body, init, (reward, value, live), reverse=True)
    return adv, adv + value


def normalise(x: jax.Array, mask: jax.Array | None = None, eps: float = 1e-8) -> jax.Array:
    """(x - mean) / (std + eps) over the (masked) entries."""
    mean = masked_mean(x, mask)
    std = jnp.sqrt(masked_mean(jnp.square(x - mean), mask))
    return (x - mean) / (std + eps)


def action_log_probs(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """log pi(action): logits [..., A] (illegal at float32 min), actions [...] -> [...]."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy(logits: jax.Array, legal: jax.Array) -> jax.Array:
    """Entropy of the legal-masked categorical: logits, legal [..., A] -> [...]."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.where(legal, jnp.exp(logp) * logp, 0.0), axis=-1)


def policy_loss(
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantage: jax.Array,
    clip_eps: float,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Clipped surrogate -E[min(r A, clip(r, 1 - eps, 1 + eps) A)], r = pi / pi_old.

    Returns the loss and (approximate KL(pi_old || pi), fraction of clipped ratios).
    """
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = -masked_mean(jnp.minimum(ratio * advantage, clipped * advantage), mask)
    approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)  # the k3 estimator, >= 0
    clip_fraction = masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mask)
    return loss, (approx_kl, clip_fraction)


def value_loss(
    value: jax.Array,
    old_value: jax.Array,
    target: jax.Array,
    clip_eps: float,
    mask: jax.Array | None = None,
) -> jax.Array:
    """0.5 * E[max((v - y)^2, (v_old + clip(v - v_old, -eps, eps) - y)^2)] (PPO2 / Mava)."""
    clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    worst = jnp.maximum(jnp.square(value - target), jnp.square(clipped - target))
    return 0.5 * masked_mean(worst, mask)


# ----------------------------------------------------------------------------- network glue


def with_agent_ids(obs: jax.Array) -> jax.Array:
    """Append each agent's one-hot id (Mava's AddAgentIds): [..., N, F] -> [..., N, F + N].

    Applied to the environment's observations before anything reorders the agent axis, so
    the ids travel with their agents through `permute_agents`."""
    n = obs.shape[-2]
    ids = jnp.broadcast_to(jnp.eye(n, dtype=obs.dtype), (*obs.shape[:-1], n))
    return jnp.concatenate([obs, ids], axis=-1)


def network_inputs(config: OnlineConfig) -> Callable | None:
    """The `prepare` of `sable_actor`: the environment's (obs, legal) -> the network's."""
    if not config.agent_ids:
        return None
    return lambda obs, legal: (with_agent_ids(obs), legal)


def sable_config(config: OnlineConfig, env: MultiAgentEnv) -> SableConfig:
    """The network for one task's environment (scalar value head, no Q head); its input width
    counts the agent ids when they are on."""
    width = env.obs_width + (env.num_agents if config.agent_ids else 0)
    return SableConfig.sized_as(config, width, env.num_actions)


def make_optimizer(config: OnlineConfig) -> optax.GradientTransformation:
    """Global-norm clipping then Adam's scaling; the step size is applied by the update step
    (`learning_rate(...)`), so the budget is data, not part of the compiled program."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.scale_by_adam(eps=config.adam_eps),
    )


def learning_rate(config: OnlineConfig, update: jax.Array, total_updates: jax.Array) -> jax.Array:
    """Constant, or annealed linearly from `learning_rate` towards 0 over the budget."""
    if not config.anneal_lr:
        return jnp.asarray(config.learning_rate, jnp.float32)
    frac = 1.0 - update.astype(jnp.float32) / jnp.maximum(total_updates, 1).astype(jnp.float32)
    return config.learning_rate * frac


class PPOBatch(NamedTuple):
    """Training data of one update, environment-major ([B, T, ...]) with targets."""

    obs: jax.Array  # [B, T, N, F]
    legal: jax.Array  # [B, T, N, A]
    first: jax.Array  # [B, T]
    action: jax.Array  # [B, T, N]
    old_log_prob: jax.Array  # [B, T, N]
    old_value: jax.Array  # [B, T, N]
    advantage: jax.Array  # [B, T, N]
    target: jax.Array  # [B, T, N]
    hstate: SableState  # [B, ...] retention state at the rollout start


def permute_agents(batch: PPOBatch, order: jax.Array) -> PPOBatch:
    """Reorder the agent axis (axis 2 of every per-agent leaf) by `order` [N]."""
    per_agent = ("obs", "legal", "action", "old_log_prob", "old_value", "advantage", "target")
    return batch._replace(**{f: jnp.take(getattr(batch, f), order, axis=2) for f in per_agent})


def forward(model: Sable, params: Any, batch: PPOBatch) -> SableOutput:
    """The chunkwise form over the batch's whole rollouts [B, T, ...], continuing from the
    retention state stored at the rollout start (every slot is a real agent online)."""
    mask = jnp.ones(batch.action.shape, bool)
    return model.forward_train(
        params, batch.obs, batch.action, batch.legal, batch.first, mask, state=batch.hstate
    )


def ppo_loss(
    params: Any, model: Sable, batch: PPOBatch, config: OnlineConfig
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """The PPO loss of a minibatch; returns (total, (policy, value, entropy, kl, clipfrac))."""
    out = forward(model, params, batch)
    log_prob = action_log_probs(out.policy_logits, batch.action)
    adv = normalise(batch.advantage)
    pi_loss, (kl, clip_frac) = policy_loss(log_prob, batch.old_log_prob, adv, config.clip_eps)
    v_loss = value_loss(out.value, batch.old_value, batch.target, config.clip_eps)
    ent = jnp.mean(entropy(out.policy_logits, batch.legal))
    total = pi_loss + config.vf_coef * v_loss - config.ent_coef * ent
    return total, (pi_loss, v_loss, ent, kl, clip_frac)


# ----------------------------------------------------------------------------- the step


def init_ppo_state(
    env: MultiAgentEnv, model: Sable, config: OnlineConfig, key: jax.Array, total_updates: int
) -> PPOState:
    """Fresh parameters, optimiser state and `num_envs` fresh environments."""
    k_params, k_env, k_run = jax.random.split(key, 3)  # `policy_reset_keys` mirrors k_env
    params = model.init_params(k_params)
    opt_state = make_optimizer(config).init(params)
    env_state, first_step = env.reset_batch(k_env, config.num_envs)
    return PPOState(
        params=params,
        opt_state=opt_state,
        env_state=env_state,
        last_step=first_step,
        hstate=model.init_state(config.num_envs),
        running_return=jnp.zeros((config.num_envs,), jnp.float32),
        key=k_run,
        update=jnp.zeros((), jnp.int32),
        total_updates=jnp.asarray(total_updates, jnp.int32),
    )


def collect(
    env: MultiAgentEnv, model: Sable, config: OnlineConfig, state: PPOState, k_roll: jax.Array,
    k_last: jax.Array, uniform: jax.Array | bool = False,
) -> tuple[PPOBatch, Rollout]:
    """One update's data: `rollout_length` steps continuing from the state's environments
    (the one rollout loop, Sable acting; uniform-random legal actions with `uniform`, a
    traced bool), GAE targets, laid out environment-major [B, T, ...] with the retention
    state at the rollout start; and the rollout itself (time-major)."""
    act_mask = jnp.ones((config.num_envs, env.num_agents), bool)
    h0 = state.hstate
    policy = sable_actor(model, state.params, act_mask, prepare=network_inputs(config))

    def actor(carry, step_key, step):
        carry, actions, extras = policy(carry, step_key, step)
        chosen = random_actions(jax.random.fold_in(step_key, 1), step.legal)
        return carry, jnp.where(uniform, chosen, actions), extras

    roll = continue_rollout(
        env, actor, state.env_state, state.last_step, h0, state.running_return,
        jax.random.split(k_roll, config.rollout_length),
    )
    log_prob, value = roll.extras
    last_step = jax.tree.map(lambda x: x[-1], roll.steps)
    # V(obs after the last step), from the recurrent form (its action is discarded).
    _, _, (_, last_value) = actor(roll.carry, k_last, last_step)
    adv, target = gae(
        roll.steps.reward[1:], value, roll.episode_done, last_value, config.gamma,
        config.gae_lambda,
    )

    def env_major(x: jax.Array) -> jax.Array:
        return jnp.swapaxes(x, 0, 1)

    obs = roll.steps.obs[:-1]
    batch = PPOBatch(
        obs=env_major(with_agent_ids(obs) if config.agent_ids else obs),
        legal=env_major(roll.steps.legal[:-1]),
        first=env_major(roll.steps.first[:-1]),
        action=env_major(roll.actions),
        old_log_prob=env_major(log_prob),
        old_value=env_major(value),
        advantage=env_major(adv),
        target=env_major(target),
        hstate=h0,
    )
    return batch, roll


def make_ppo_learn(model: Sable, config: OnlineConfig, num_agents: int) -> Callable:
    """The learning half of an update, pure: `learn(params, opt_state, batch, key, lr) ->
    ((params, opt_state), stats)`, `ppo_epochs` passes of `num_minibatches` Adam steps over
    one rollout's PPOBatch ([B, T, ...]); stats are the per-step (total, policy, value,
    entropy, kl, clip fraction, grad norm), shape [epochs, minibatches]. Apart from the
    rollout so that its rate (the network's forward and backward) can be measured alone."""
    num_envs = config.num_envs
    mb_size = num_envs // config.num_minibatches
    tx = make_optimizer(config)

    def minibatch_step(carry, mb: PPOBatch, lr: jax.Array):
        params, opt_state = carry
        grad_fn = jax.value_and_grad(ppo_loss, has_aux=True)
        (total, aux), grads = grad_fn(params, model, mb, config)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates))
        return (params, opt_state), (total, *aux, optax.global_norm(grads))

    def epoch(carry, key, batch: PPOBatch, old_params, lr):
        params, opt_state = carry
        k_env, k_agent = jax.random.split(key)
        env_order = jax.random.permutation(k_env, num_envs)
        data = jax.tree.map(lambda x: jnp.take(x, env_order, axis=0), batch)
        if config.shuffle_agents:
            # One agent order for the whole batch (as Mava). The autoregressive policy then
            # factorises in that order, so pi(a_i | a_before_i, s) differs from the acting
            # conditional; by default the acting log-probs still serve as pi_old (Mava).
            data = permute_agents(data, jax.random.permutation(k_agent, num_agents))
        if config.shuffle_agents and config.recompute_old_log_probs:
            # pi_old under this order, with the rollout's parameters and the same stored
            # state: the ratio compares the same conditional and starts at exactly 1.
            old = forward(model, old_params, data)
            data = data._replace(old_log_prob=action_log_probs(old.policy_logits, data.action))
        mbs = jax.tree.map(
            lambda x: x.reshape(config.num_minibatches, mb_size, *x.shape[1:]), data
        )
        (params, opt_state), stats = jax.lax.scan(
            lambda c, mb: minibatch_step(c, mb, lr), (params, opt_state), mbs
        )
        return (params, opt_state), stats

    def learn(params, opt_state, batch: PPOBatch, key: jax.Array, lr: jax.Array):
        return jax.lax.scan(lambda c, k: epoch(c, k, batch, params, lr), (params, opt_state),
                            jax.random.split(key, config.ppo_epochs))

    return learn


def make_ppo_update(
    env: MultiAgentEnv, model: Sable, config: OnlineConfig
) -> Callable[[PPOState, jax.Array, jax.Array, jax.Array], tuple[PPOState, PPOMetrics, Rollout]]:
    """The jitted `(state, n, learn, uniform) -> (state, metrics, rollout)`: n rollouts (B * T
    env steps each), each followed by a PPO update when `learn` (a bool scalar), in one call,
    n an int32 scalar >= 1; with `uniform` the actions are uniform-random legal ones. The
    metrics' `episodes` and `return_sum` are summed over the n updates, the other fields
    averaged (losses 0 without learning); `rollout` is the last one's steps, actions and
    episode ends ([T + 1, B, ...], [T, B, ...]; no final state, extras or carry)."""
    learn_step = make_ppo_learn(model, config, env.num_agents)

    def update(state: PPOState, learn: jax.Array, uniform: jax.Array
               ) -> tuple[PPOState, PPOMetrics, Rollout]:
        key, k_roll, k_last, k_epochs = jax.random.split(state.key, 4)
        batch, roll = collect(env, model, config, state, k_roll, k_last, uniform)
        last_step = jax.tree.map(lambda x: x[-1], roll.steps)
        lr = learning_rate(config, state.update, state.total_updates)
        (params, opt_state), stats = jax.lax.cond(
            learn,
            lambda: learn_step(state.params, state.opt_state, batch, k_epochs, lr),
            lambda: ((state.params, state.opt_state),  # learn's 7 stats, zero
                     (jnp.zeros((config.ppo_epochs, config.num_minibatches)),) * 7),
        )
        total, pi_l, v_l, ent, kl, clip_frac, gnorm = (jnp.mean(s) for s in stats)
        metrics = PPOMetrics(
            episodes=jnp.sum(jnp.sum(roll.episode_done, axis=1)),
            return_sum=jnp.sum(jnp.sum(roll.episode_return, axis=1)),
            reward_mean=jnp.mean(roll.steps.reward[1:]),
            total_loss=total,
            policy_loss=pi_l,
            value_loss=v_l,
            entropy=ent,
            approx_kl=kl,
            clip_fraction=clip_frac,
            grad_norm=gnorm,
        )
        new_state = state._replace(
            params=params, opt_state=opt_state, env_state=roll.final_state,
            last_step=last_step, hstate=roll.carry, running_return=roll.running_return, key=key,
            update=state.update + 1,
        )
        return new_state, metrics, Rollout(roll.steps, roll.actions, roll.episode_return,
                                           roll.episode_done, final_state=None)

    def updates(state: PPOState, n: jax.Array, learn: jax.Array, uniform: jax.Array
                ) -> tuple[PPOState, PPOMetrics, Rollout]:
        # Carries built from shapes by hand: tracing `update` once more for its output shapes
        # would double this program's tracing time. Metrics: scalar sums (episodes in int32).
        zeros = PPOMetrics(*(jnp.zeros((), jnp.int32 if f == "episodes" else jnp.float32)
                             for f in PPOMetrics._fields))
        steps = config.rollout_length
        empty = Rollout(
            steps=jax.tree.map(lambda x: jnp.zeros((steps + 1, *x.shape), x.dtype),
                               state.last_step),
            actions=jnp.zeros((steps, config.num_envs, env.num_agents), jnp.int32),
            episode_return=jnp.zeros((steps, config.num_envs), jnp.float32),
            episode_done=jnp.zeros((steps, config.num_envs), bool),
            final_state=None,
        )

        def body(_, carry):
            state, total, _ = carry
            state, metrics, roll = update(state, learn, uniform)
            return state, jax.tree.map(lambda t, m: t + m.astype(t.dtype), total, metrics), roll

        state, total, roll = jax.lax.fori_loop(0, n, body, (state, zeros, empty))
        sums = ("episodes", "return_sum")
        return state, PPOMetrics(**{k: v if k in sums else v / n
                                    for k, v in total._asdict().items()}), roll

    return jax.jit(updates, donate_argnums=0)


# ----------------------------------------------------------------------------- recording


def policy_rollout(
    init: Callable, update: Callable, config: OnlineConfig, time_limit: int, params: Any,
    key: jax.Array, uniform: bool, num_envs: int,
) -> Rollout:
    """`num_envs` fresh episodes of the stochastic Sable policy with `params` (of the
    uniform-random policy with `uniform`), through the task's two training programs: `init`
    for fresh environments, `update` without learning for the steps, as many rollouts of
    `rollout_length` as cover the time limit (so every environment's first episode is
    whole), `config.num_envs` environments at a time. Host arrays, time-major, for
    `trainer.recording.episodes_from_rollout` (the environment's observations, without
    agent ids).

    Why not a rollout program of its own: it would compile the environment a third time per
    task (about 8 s on 2 CPU cores, benchmarks/RESULTS.md). The price: fewer episodes than
    `config.num_envs` still step all of them (the paper profile records 32 of 512, 16x the
    steps it keeps; on an accelerator a batch of 512 costs about what 32 do)."""
    calls = math.ceil(time_limit / config.rollout_length)
    batches = []
    for i in range(math.ceil(num_envs / config.num_envs)):
        state = init(jax.random.fold_in(key, i), np.int32(1))
        # a copy: `update` donates its state's buffers, the caller's parameters live on
        state = state._replace(params=jax.tree.map(jnp.copy, params))
        parts = []
        for _ in range(calls):
            state, _, roll = update(state, np.int32(1), np.bool_(False), np.bool_(uniform))
            parts.append(jax.device_get(roll))
        batches.append(chain_rollouts(parts))
    joined = jax.tree.map(lambda *x: np.concatenate(x, axis=1), *batches)
    return jax.tree.map(lambda x: x[:, :num_envs], joined)


def policy_reset_keys(config: OnlineConfig, key: jax.Array, num_envs: int) -> np.ndarray:
    """[num_envs, 2] uint32: the key each environment of `policy_rollout` with `config`, `key`
    and `num_envs` was reset with, derived on the host as the programs derive it (batch i's
    `init` key `fold_in(key, i)`, `init_ppo_state`'s environment key, `reset_batch`'s split
    into one key per environment), so a recorded episode can be replayed in the real
    environment (`trainer.replay`) without the programs returning anything more."""
    batches = []
    for i in range(math.ceil(num_envs / config.num_envs)):
        _, k_env, _ = jax.random.split(jax.random.fold_in(key, i), 3)
        batches.append(np.asarray(jax.random.split(k_env, config.num_envs)))
    return np.concatenate(batches)[:num_envs]
