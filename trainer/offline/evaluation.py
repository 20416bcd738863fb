"""Zero-shot evaluation of an offline model in the real Jumanji environments.

    from trainer.offline import EvalConfig, evaluate
    results = evaluate(lake, "models/<config id>", split="demo-test",
                       eval_config=EvalConfig(episodes=320, checkpoint="best"))

For each task, E environments are vmapped and stepped for one time limit (lax.scan) with the
recurrent policy, through the one rollout loop (`trainer.envs.rollout`): BC-Sable and Oryx
act through Sable's `act` (autoregressive over agents, legal actions only; sampled, or greedy
with `EvalConfig.greedy`), CQL-Sable takes the autoregressive greedy action of its Q head
(`act` with `q_values`). Why: og-marl's evaluation of Oryx samples each agent's action from
its policy's categorical (and Mava's evaluator samples by default, `evaluation_greedy:
False`), while og-marl's Q-learning baselines (IQL+CQL) act greedily on Q; BC-Sable is a
policy like Oryx's, so it samples too. Observations are standardised with the training
data's statistics (`DataSelection.standardisation_scope`: one per split).
Each environment's first episode counts (every episode ends within the time limit), so E
episodes give E returns. Each task's best and worst episode rides along with its result
(`TaskResult.extremes`: reset key and actions), for pages that draw them
(`trainer.offline.episodes`).

Normalised return = mean episode return / the task's online Sable reference (the lake's
`references` table); where that reference is not positive, the fraction of the way from
the random policy's return to it (`lake_schema.checks.Reference`). A task without a
reference is an error, not a silent 1.0. Results go to the `evaluations` table, partition
(env, task, model = config id), with the model's full config and dataset selection in the
`config` column; rows of other updates or episode counts already there are kept, so
periodic and final figures accumulate.

Agent slots: with agent masking (the default) the model sees each environment's real agents,
all marked real. Without it (the ablation), the model was trained on padded slots it could
not tell apart from agents, so evaluation pads the same way: real agents first, then zero
observations with only action 0 legal up to the training slot count, all marked real; the
padded slots' actions are dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lake_schema.catalogue import get_task
from lake_schema.checks import reference_returns
from lake_schema.storage import Lake
from lake_schema.writer import Evaluation, write_evaluation
from trainer.compiled import compile_on_first_call, compiled_cache
from trainer.data import ObsStats
from trainer.envs import MultiAgentEnv, make_env
from trainer.envs.rollout import first_episode_returns, fresh_rollout
from trainer.errors import SelectionError
from trainer.networks import Sable, SableConfig
from trainer.networks.sable import QValues, acting_network, acting_params, sable_actor
from trainer.offline import checkpoint as ckpt
from trainer.offline import hl_gauss
from trainer.offline.config import EvalConfig, OfflineConfig, model_name
from trainer.offline.episodes import EvaluationEpisode, TaskEpisodes, best_and_worst
from trainer.progress import Progress
from trainer.recording import fresh_reset_keys
from trainer.tasks import resolve_tasks

logger = logging.getLogger("trainer.offline")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskResult(Evaluation):
    """A model's evaluation on one task: its `evaluations` row, the task it is of, and its
    best and worst episode (not columns of the row)."""

    task: str
    extremes: tuple[EvaluationEpisode, ...] = dataclasses.field(default=(), repr=False,
                                                                  compare=False)


# ----------------------------------------------------------------------------- acting


def q_values_fn(config: SableConfig, support: hl_gauss.Support | None) -> QValues:
    """Q values (B, A) from the Q head's raw output of one agent: (B, A) with MSE, (B, A*bins)
    logits with HL-Gauss (their expectation over the support)."""
    if support is None:
        return lambda q: q
    return lambda q: hl_gauss.expectation(
        q.reshape(q.shape[0], config.num_actions, config.value_bins), support)


def model_acting_network(config: OfflineConfig) -> SableConfig:
    """The network a model acts with: CQL-Sable's Q head (greedy on it), else the policy
    head alone (`trainer.networks.sable.acting_network`)."""
    return acting_network(config.sable_config(), q_head=config.algorithm == "cql")


def episode_runner(env: MultiAgentEnv, config: OfflineConfig, pad_to: int, num_envs: int,
                   greedy: bool = False):
    """Jitted (params, obs mean, obs std, key) -> (returns [E], finished [E], lengths [E],
    actions [T, E, N]) of one task's first episodes in `num_envs` environments, for the
    model's `acting_params` (cached per acting network and settings: BC-Sable and Oryx of
    one size share it)."""
    slots = env.num_agents if config.agent_masking else max(pad_to, env.num_agents)
    network = model_acting_network(config)
    return _runner(env, network, config.support() if network.q_head else None, slots,
                   int(num_envs), bool(greedy))


@compiled_cache(maxsize=8)
def _runner(env: MultiAgentEnv, sable_config: SableConfig, support: hl_gauss.Support | None,
            slots: int, num_envs: int, greedy: bool):
    model = Sable(sable_config)
    n, a = env.num_agents, env.num_actions
    mask = jnp.ones((num_envs, slots), bool)
    q_values = q_values_fn(sable_config, support) if sable_config.q_head else None

    def run(params, mean, std, key):
        def prepare(obs, legal):  # (E, N, F), (E, N, A) -> standardised, padded to the slots
            x = (obs.astype(jnp.float32) - mean) / std
            if slots == n:
                return x, legal
            x = jnp.concatenate([x, jnp.zeros((num_envs, slots - n, x.shape[-1]))], axis=1)
            pad_legal = jnp.broadcast_to(jnp.arange(a) == 0, (num_envs, slots - n, a))
            return x, jnp.concatenate([legal, pad_legal], axis=1)

        actor = sable_actor(model, params, mask, greedy=greedy, q_values=q_values,
                            prepare=prepare, num_agents=n)
        result = fresh_rollout(env, actor, model.init_state(num_envs), key, num_envs,
                               env.time_limit)
        returns, finished = first_episode_returns(result)
        lengths = jnp.argmax(result.episode_done, axis=0) + 1  # [E]: each first episode's
        return returns, finished, lengths, result.actions

    return compile_on_first_call(run, runs_rarely=True)


def evaluate_params(info: dict, params: Any, tasks: Sequence[str], episodes: int,
                    seed: int = 0, greedy: bool = False,
                    log: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """Episode returns per task ([episodes] float64 each) of a model described by `info`
    (the run's model.json) with `params` (`evaluate_episodes`, returns only)."""
    return {name: e.returns.astype(np.float64) for name, e in evaluate_episodes(
        info, params, tasks, episodes, seed, greedy, log).items()}


def evaluate_episodes(info: dict, params: Any, tasks: Sequence[str], episodes: int,
                      seed: int = 0, greedy: bool = False,
                      log: Callable[[str], None] | None = None) -> dict[str, TaskEpisodes]:
    """Each task's `episodes` evaluation episodes (returns, lengths, actions, reset keys) of
    a model described by `info` (the run's model.json) with `params`; no lake involved. A
    progress line per task (mean return, rate, ETA) goes to `log` (default: the
    `trainer.offline` logger)."""
    progress = Progress(len(tasks), "tasks evaluated", rate_unit="tasks/s", log=log,
                        logger=logger)
    config = OfflineConfig.from_json(info["config"])
    params = on_first_device(acting_params(params, model_acting_network(config)))
    stats = ObsStats.from_json(info["obs_stats"])
    mean, std = jnp.asarray(stats.mean), jnp.asarray(stats.std)
    out = {}
    for i, name in enumerate(tasks):
        env = make_env(name)
        run = episode_runner(env, config, int(info["pad_to"]), episodes, greedy)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), i)
        ret, finished, lengths, actions = jax.device_get(run(params, mean, std, key))
        if not finished.all():  # every episode ends by the time limit; a bug otherwise
            raise RuntimeError(f"{name}: {int((~finished).sum())} episodes did not finish")
        out[name] = TaskEpisodes(np.asarray(ret), np.asarray(lengths), np.asarray(actions),
                                 fresh_reset_keys(key, episodes))
        progress.emit(i + 1, extra=f"  | {name}: mean return {float(ret.mean()):.3f} over "
                                   f"{len(ret)} episodes")
    return out


def on_first_device(tree: Any) -> Any:
    """`tree` on this process's first device, where `checkpoint.load_params` restores it.

    Why: jit specialises on its inputs' shardings, and parameters replicated over the training
    mesh lower to another program than single-device ones, so the periodic evaluation and the
    final one would each compile every task's episode runner (~6 s per task on 2 CPU cores).
    A replicated array's local copy is its whole value."""
    device = jax.local_devices()[0]
    return jax.tree.map(lambda x: jax.device_put(
        x.addressable_data(0) if isinstance(x, jax.Array) else x, device), tree)


# ----------------------------------------------------------------------------- the lake


def evaluation_tasks(env: str, tasks: Sequence[str] | None = None,
                     split: str | None = None) -> list[str]:
    """`env/scenario` names of `tasks` or of `split`; tasks of another env are an error."""
    if tasks is not None:  # bare scenarios are the model's env's; others are checked below
        tasks = [t if "/" in t else f"{env}/{t}" for t in tasks]
    names = [t.name for t in resolve_tasks(None if tasks is not None else env, tasks, split)]
    other = [n for n in names if get_task(n).env != env]
    if other:
        raise SelectionError(f"evaluation task {other[0]} is from "
                             f"{get_task(other[0]).env!r}, the model is for {env!r}")
    return names


def evaluation_config_json(info: dict, eval_config: EvalConfig) -> str:
    """The `config` column of an evaluation row: the model's config id, its readable `name`
    (`model_name`), when its training began (`trained_since`: a retrained model's rows
    supersede its predecessor's), OfflineConfig, dataset selection and training tasks, and
    the evaluation settings.

    A contract: `trainer.analysis.knobs_of` reads `config`, `selection`, `train_tasks` and
    `evaluation` out of it (tested in test_offline_evaluate)."""
    return json.dumps({
        "config_id": info["config_id"], "trained_since": info.get("trained_since"),
        "name": model_name(info["config"]["algorithm"], len(info["tasks"]),
                           info["config"]["seed"]),
        "config": info["config"],
        "selection": info["selection"], "train_tasks": info["tasks"],
        "evaluation": {"checkpoint": str(eval_config.checkpoint), "seed": eval_config.seed,
                       "greedy": eval_config.greedy,
                       "reference_run": eval_config.reference_run},
    }, sort_keys=True)


def evaluate(
    lake: Lake,
    run_dir: str | os.PathLike,
    *,
    tasks: Sequence[str] | None = None,
    split: str | None = None,
    eval_config: EvalConfig | None = None,
    write: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[TaskResult]:
    """Evaluate the model in `run_dir` on `tasks` (or a `split` of its env); write results to
    the lake's `evaluations` table (unless write=False) and return them. Progress lines and
    the per-task results go to `log` (default: the `trainer.offline` logger).

    Errors before any compute: tasks of another environment, a task without reference.
    """
    eval_config = eval_config or EvalConfig()
    run_dir = Path(run_dir)
    info = ckpt.read_model_info(run_dir)
    env = info["env"]
    names = evaluation_tasks(env, tasks, split)
    refs = reference_returns(lake, env, names, eval_config.reference_run)
    if eval_config.checkpoint == "best" and ckpt.read_best(run_dir) is None:
        # no periodic evaluation ran (eval_every = 0, or fewer updates than eval_every)
        (log or logger.info)(f"{run_dir} has no best checkpoint (no periodic evaluation): "
                             "evaluating its latest")
        eval_config = dataclasses.replace(eval_config, checkpoint="latest")
    params, update = ckpt.load_params(run_dir, info, eval_config.checkpoint)
    played = evaluate_episodes(info, params, names, eval_config.episodes, eval_config.seed,
                               eval_config.greedy, log=log)
    trained_on = set(info["tasks"])
    config_json = evaluation_config_json(info, eval_config)
    now = dt.datetime.now(dt.UTC)
    results = []
    for name in names:
        r = played[name].returns.astype(np.float64)
        res = TaskResult(
            task=name, algorithm=info["algorithm"],
            split="train" if name in trained_on else "test", update=update, episodes=len(r),
            mean_return=float(r.mean()), std_return=float(r.std()),
            normalised_return=refs[name].normalise(float(r.mean())),
            reference_return=refs[name].sable_return, config=config_json, evaluated_at=now,
            data_versions=json.dumps(info.get("data_versions"), sort_keys=True),
            extremes=best_and_worst(name, played[name], refs[name].normalise))
        results.append(res)
        (log or logger.info)(f"{name} ({res.split}): return {res.mean_return:.3f} +- "
                             f"{res.std_return:.3f}, normalised {res.normalised_return:.3f}")
        if write:
            write_evaluation(lake, name, info["config_id"], res)
    return results
