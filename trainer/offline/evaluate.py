"""Zero-shot evaluation of an offline model in the real Jumanji environments.

    from trainer.offline import EvalConfig, evaluate
    results = evaluate(lake, "models/<config id>", split="demo-test",
                       eval_config=EvalConfig(episodes=320, checkpoint="best"))

For each task, E environments are vmapped and stepped for one time limit (lax.scan) with the
recurrent policy: BC-Sable and Oryx act through Sable's `act` (autoregressive over agents,
legal actions only; sampled, or greedy with `EvalConfig.greedy`), CQL-Sable takes the
autoregressive greedy action of its Q head (`q_greedy_act`). Observations are standardised
with the training data's statistics. Each environment's first episode counts (every episode
ends within the time limit), so E episodes give E returns.

Normalised return = mean episode return / the task's online Sable reference (the lake's
`references` table). A task without a reference is an error, not a silent 1.0. Results go to
the `evaluations` table, partition (env, task, model = config id), with the model's full
config and dataset selection in the `config` column; rows of other updates or episode counts
already there are kept, so periodic and final figures accumulate.

Agent slots: with agent masking (the default) the model sees each environment's real agents,
all marked real. Without it (the ablation), the model was trained on padded slots it could
not tell apart from agents, so evaluation pads the same way: real agents first, then zero
observations with only action 0 legal up to the training slot count, all marked real; the
padded slots' actions are dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lake_schema.catalogue import UnknownTaskError, get_task, split_tasks
from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake
from lake_schema.writer import write_records
from trainer.compiled import compiled_cache
from trainer.data import ObsStats
from trainer.envs import MultiAgentEnv, make_env
from trainer.networks import Sable, SableConfig, SableState
from trainer.networks.retention import decay_rates, decay_state
from trainer.offline import checkpoint as ckpt
from trainer.offline import hl_gauss
from trainer.offline.config import OfflineConfig

log = logging.getLogger("trainer.offline")


class MissingReferenceError(LookupError):
    """A task has no online Sable reference return to normalise by."""


@dataclass(frozen=True)
class EvalConfig:
    """episodes: E per task (paper: 32 periodic, 320 final); checkpoint: `latest`, `best` or
    an update number; greedy: argmax actions for BC/Oryx (CQL is always greedy in Q);
    reference_run: which `references` run normalises (None: the most recent per task)."""

    episodes: int = 32
    seed: int = 0
    greedy: bool = False
    checkpoint: str | int = "latest"
    reference_run: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.episodes, bool) or not isinstance(self.episodes, int) or (
                self.episodes < 1):
            raise ValueError(f"EvalConfig.episodes must be a positive int, got {self.episodes!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"EvalConfig.seed must be an int >= 0, got {self.seed!r}")
        c = self.checkpoint
        if not (c in ("latest", "best") or (isinstance(c, int) and not isinstance(c, bool)
                                             and c >= 0)):
            raise ValueError(f"EvalConfig.checkpoint must be 'latest', 'best' or an update, "
                             f"got {c!r}")


class TaskResult(NamedTuple):
    task: str
    split: str  # train or test: the task's role for this model
    update: int
    episodes: int
    mean_return: float
    std_return: float
    normalised_return: float
    reference_return: float


# ----------------------------------------------------------------------------- acting


def q_greedy_act(model: Sable, params: Any, state: SableState, obs: jax.Array,
                 legal: jax.Array, first: jax.Array, agent_mask: jax.Array,
                 support: hl_gauss.Support | None) -> tuple[SableState, jax.Array]:
    """One recurrent timestep choosing, agent after agent, argmax over legal actions of the
    decoder's Q head (CQL-Sable's policy); the chosen action is the next agent's input.

    obs (B, N, F); legal (B, N, A); first (B,); agent_mask (B, N) -> (state, actions (B, N)).
    Mirrors `Sable.act` (same state handling) with the Q head in place of the policy head.
    """
    c: SableConfig = model.config
    b = obs.shape[0]
    kappa = jnp.asarray(decay_rates(c.num_heads, c.decay_scaling))
    state = SableState(*(decay_state(s, first, kappa) for s in state))
    rep, _, enc_state = model.apply(params, obs, state.encoder, agent_mask,
                                    method=Sable.encode_step)

    def agent(carry, xs):
        states, token = carry
        rep_i, legal_i, mask_i = xs  # (B, D), (B, A), (B,)
        _, q, states = model.apply(params, token, rep_i, states, mask_i,
                                   method=Sable.decode_step)
        if support is not None:
            q = hl_gauss.expectation(q.reshape(b, c.num_actions, c.value_bins), support)
        action = jnp.argmax(jnp.where(legal_i, q, -jnp.inf), axis=-1)
        action = jnp.where(mask_i, action, 0).astype(jnp.int32)
        token = jnp.where(mask_i, action + 1, token)
        return (states, token), action

    xs = (jnp.swapaxes(rep, 0, 1), jnp.swapaxes(legal, 0, 1), jnp.swapaxes(agent_mask, 0, 1))
    start = jnp.zeros((b,), jnp.int32)
    ((s_self, s_cross), _), actions = jax.lax.scan(
        agent, ((state.decoder_self, state.decoder_cross), start), xs)
    return SableState(enc_state, s_self, s_cross), jnp.swapaxes(actions, 0, 1)


def episode_runner(env: MultiAgentEnv, config: OfflineConfig, pad_to: int, num_envs: int,
                   greedy: bool = False):
    """Jitted (params, obs mean, obs std, key) -> (returns [E], finished [E]) of one task's
    first episodes in `num_envs` environments (cached per network and acting settings)."""
    slots = env.num_agents if config.agent_masking else max(pad_to, env.num_agents)
    return _runner(env, config.sable_config(), config.algorithm == "cql", config.support(),
                   slots, int(num_envs), bool(greedy))


@compiled_cache(maxsize=8)
def _runner(env: MultiAgentEnv, sable_config: SableConfig, q_greedy: bool,
            support: hl_gauss.Support | None, slots: int, num_envs: int, greedy: bool):
    model = Sable(sable_config)
    n, a = env.num_agents, env.num_actions
    mask = jnp.ones((num_envs, slots), bool)

    def prepare(obs, legal, mean, std):
        x = (obs.astype(jnp.float32) - mean) / std  # (E, N, F)
        if slots == n:
            return x, legal
        x = jnp.concatenate([x, jnp.zeros((num_envs, slots - n, x.shape[-1]))], axis=1)
        pad_legal = jnp.broadcast_to(jnp.arange(a) == 0, (num_envs, slots - n, a))
        return x, jnp.concatenate([legal, pad_legal], axis=1)

    def run(params, mean, std, key):
        k_reset, k_steps = jax.random.split(key)
        env_state, step = env.reset_batch(k_reset, num_envs)

        def body(carry, k):
            env_state, step, hstate, ret, finished = carry
            x, legal = prepare(step.obs, step.legal, mean, std)
            if q_greedy:
                hstate, actions = q_greedy_act(model, params, hstate, x, legal, step.first,
                                               mask, support)
            else:
                res = model.act(params, hstate, x, legal, step.first, mask, k, greedy=greedy)
                hstate, actions = res.state, res.actions
            env_state, nxt = env.step_batch(env_state, actions[:, :n])
            ret = ret + jnp.where(finished, 0.0, nxt.reward)
            finished = finished | nxt.terminated | nxt.truncated
            return (env_state, nxt, hstate, ret, finished), None

        init = (env_state, step, model.init_state(num_envs), jnp.zeros((num_envs,)),
                jnp.zeros((num_envs,), bool))
        (_, _, _, ret, finished), _ = jax.lax.scan(
            body, init, jax.random.split(k_steps, env.time_limit))
        return ret, finished

    return jax.jit(run)


def evaluate_params(info: dict, params: Any, tasks: Sequence[str], episodes: int,
                    seed: int = 0, greedy: bool = False) -> dict[str, np.ndarray]:
    """Episode returns per task ([episodes] each) of a model described by `info`
    (the run's model.json) with `params`; no lake involved."""
    config = OfflineConfig.from_json(info["config"])
    stats = ObsStats.from_json(info["obs_stats"])
    mean, std = jnp.asarray(stats.mean), jnp.asarray(stats.std)
    out = {}
    for i, name in enumerate(tasks):
        env = make_env(name)
        run = episode_runner(env, config, int(info["pad_to"]), episodes, greedy)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), i)
        ret, finished = jax.device_get(run(params, mean, std, key))
        if not finished.all():  # every episode ends by the time limit; a bug otherwise
            raise RuntimeError(f"{name}: {int((~finished).sum())} episodes did not finish")
        out[name] = np.asarray(ret, np.float64)
    return out


# ----------------------------------------------------------------------------- the lake


def resolve_tasks(env: str, tasks: Sequence[str] | None = None,
                  split: str | None = None) -> list[str]:
    """`env/scenario` names of `tasks` or of `split`; tasks of another env are an error."""
    if (tasks is None) == (split is None):
        raise ValueError("give exactly one of tasks= or split=")
    if split is not None:
        try:
            return [t.name for t in split_tasks(env, split)]
        except UnknownTaskError as e:
            raise ValueError(str(e)) from e
    names = []
    for t in tasks:
        full = t if "/" in t else f"{env}/{t}"
        try:
            task = get_task(full)
        except UnknownTaskError as e:
            raise ValueError(str(e)) from e
        if task.env != env:
            raise ValueError(f"evaluation task {task.name} is from {task.env!r}, the model is "
                             f"for {env!r}")
        names.append(task.name)
    if not names:
        raise ValueError("no evaluation tasks given")
    return names


def reference_returns(lake: Lake, env: str, tasks: Sequence[str],
                      run: str | None = None) -> dict[str, float]:
    """The online Sable reference return of every task (the most recent row of `run`, or of
    any run); a task without one is a MissingReferenceError."""
    scenarios = [t.split("/", 1)[1] for t in tasks]
    sel = Selection(env=env, tasks=scenarios, runs=[run] if run is not None else None)
    table = read_table(lake, "references", sel, ["task", "run", "sable_return", "recorded_at"])
    rows = sorted(table.to_pylist(), key=lambda r: r["recorded_at"])
    latest = {f"{env}/{r['task']}": r["sable_return"] for r in rows}
    missing = [t for t in tasks if t not in latest]
    if missing:
        raise MissingReferenceError(
            f"no online Sable reference return for {', '.join(missing)} in {lake.root}"
            + (f" (run {run!r})" if run else "")
            + ": run online Sable on them first (normalised returns need it)")
    zero = [t for t in tasks if latest[t] == 0]
    if zero:
        raise MissingReferenceError(f"reference return is 0 for {', '.join(zero)}: normalised "
                                    "returns are undefined")
    return {t: float(latest[t]) for t in tasks}


def load_params(run_dir: str | os.PathLike, info: dict,
                which: str | int = "latest") -> tuple[Any, int]:
    """Parameters of checkpoint `which` (`latest`, `best`, or an update) and its update."""
    from trainer.offline.train import init_train_state

    config = OfflineConfig.from_json(info["config"])
    model = Sable(config.sable_config())
    shapes = jax.eval_shape(lambda k: init_train_state(model, config, k), jax.random.PRNGKey(0))
    if which == "best":
        best = ckpt.read_best(run_dir)
        if best is None:
            raise FileNotFoundError(f"{run_dir}: no best checkpoint (periodic evaluation off?)")
        return ckpt.restore_best(run_dir, shapes.params), int(best["update"])
    mngr = ckpt.manager(run_dir)
    try:
        steps = mngr.all_steps()
        if not steps:
            raise FileNotFoundError(f"{run_dir}: no checkpoint to evaluate")
        step = max(steps) if which == "latest" else int(which)
        if step not in steps:
            raise FileNotFoundError(f"{run_dir}: no checkpoint at update {step}; have {steps}")
        state, _, _ = ckpt.restore(mngr, step, shapes, with_extras=False)
    finally:
        mngr.close()
    return state.params, step


def _merge_write(lake: Lake, env: str, task: str, model_id: str, record: dict) -> None:
    """Write `record` into the (env, task, model) partition, replacing only the row of the
    same (update, episodes) in one commit: concurrent evaluations keep every row."""
    scenario = task.split("/", 1)[1]
    write_records(lake, "evaluations", {"env": env, "task": scenario, "model": model_id},
                  [record], replace_rows={"update": record["update"],
                                          "episodes": record["episodes"]})


def evaluate(
    lake: Lake,
    run_dir: str | os.PathLike,
    *,
    tasks: Sequence[str] | None = None,
    split: str | None = None,
    eval_config: EvalConfig = EvalConfig(),
    write: bool = True,
) -> list[TaskResult]:
    """Evaluate the model in `run_dir` on `tasks` (or a `split` of its env); write results to
    the lake's `evaluations` table (unless write=False) and return them.

    Errors before any compute: tasks of another environment, a task without reference.
    """
    run_dir = Path(run_dir)
    info = ckpt.read_model_info(run_dir)
    env = info["env"]
    names = resolve_tasks(env, tasks, split)
    refs = reference_returns(lake, env, names, eval_config.reference_run)
    params, update = load_params(run_dir, info, eval_config.checkpoint)
    returns = evaluate_params(info, params, names, eval_config.episodes, eval_config.seed,
                              eval_config.greedy)
    trained_on = set(info["tasks"])
    config_json = json.dumps({
        "config_id": info["config_id"], "config": info["config"],
        "selection": info["selection"], "train_tasks": info["tasks"],
        "evaluation": {"checkpoint": str(eval_config.checkpoint), "seed": eval_config.seed,
                       "greedy": eval_config.greedy,
                       "reference_run": eval_config.reference_run},
    }, sort_keys=True)
    now = dt.datetime.now(dt.UTC)
    results = []
    for name in names:
        r = returns[name]
        res = TaskResult(
            task=name, split="train" if name in trained_on else "test", update=update,
            episodes=len(r), mean_return=float(r.mean()), std_return=float(r.std()),
            normalised_return=float(r.mean()) / refs[name], reference_return=refs[name])
        results.append(res)
        log.info("%s (%s): return %.3f +- %.3f, normalised %.3f", name, res.split,
                 res.mean_return, res.std_return, res.normalised_return)
        if write:
            record = {"algorithm": info["algorithm"], **{k: getattr(res, k) for k in (
                "split", "update", "episodes", "mean_return", "std_return",
                "normalised_return", "reference_return")}, "config": config_json,
                "evaluated_at": now,
                "data_versions": json.dumps(info.get("data_versions"), sort_keys=True)}
            _merge_write(lake, env, name, info["config_id"], record)
    return results
