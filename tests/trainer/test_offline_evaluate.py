"""Zero-shot evaluation: input errors, the evaluations table, CQL's Q-greedy acting, and the
learning test (BC-Sable on recorded lbf data beats the random policy)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from lake_schema.duck import connect
from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from lake_schema.writer import write_episodes, write_reference
from trainer.analysis import latest_evaluations
from trainer.data import DataSelection
from trainer.envs import make_env
from trainer.networks import Sable, SableConfig
from trainer.offline import (
    EvalConfig,
    MissingReferenceError,
    OfflineConfig,
    evaluate,
    hl_gauss,
    make_support,
    train,
)
from trainer.offline.checkpoint import load_params, read_model_info
from trainer.offline.evaluation import episode_runner, evaluate_params, q_values_fn
from trainer.recording import collect_random_episodes
from trainer.scripted import collect_lbf_heuristic_episodes

TASKS = ("lbf/8x8-2p-2f", "lbf/10x10-3p-3f")
TINY = dict(embed_dim=16, num_heads=2, batch_size=8, seq_len=5, pad_agents=4, log_every=1,
            checkpoint_every=1, num_updates=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A BC model (2 updates, checkpoints 1 and 2) and references for two of its tasks."""
    root = tmp_path_factory.mktemp("offline-eval")
    lake = Lake(root / "lake")
    fill_lake(lake, TASKS, checkpoints=1, episodes=4, lengths=(8, 30), seed=9)
    for task, ret in (("lbf/8x8-2p-2f", 0.8), ("lbf/12x12-4p-5f", 0.5)):
        write_reference(lake, task, "online", sable_returns=[ret], random_returns=[0.1],
                        env_steps=1)
    result = train(lake, DataSelection(env="lbf", tasks=TASKS),
                   OfflineConfig(**{**TINY, "algorithm": "bc"}), root / "run",
                   cache_dir=root / "cache")
    return lake, result


def _rows(lake, scenario=None):
    sel = Selection(env="lbf", tasks=[scenario] if scenario else None)
    return read_table(lake, "evaluations", sel).to_pylist()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"tasks": ["rware/tiny-2ag"]}, ValueError, "from 'rware', the model is for 'lbf'"),
    ({"tasks": ["8x8-2p-2f", "10x10-3p-3f"]}, MissingReferenceError, "lbf/10x10-3p-3f"),
    ({"split": "demo-test"}, MissingReferenceError, "lbf/14x14-3p-3f"),
    ({"tasks": ["lbf/nope"]}, ValueError, "unknown task"),
    ({}, ValueError, "exactly one of tasks= or split="),
])
def test_bad_evaluation_input_fails_before_any_compute(trained, kwargs, error, match):
    lake, result = trained
    with pytest.raises(error, match=match):
        evaluate(lake, result.run_dir, **kwargs)
    assert _rows(lake, "10x10-3p-3f") == [] and _rows(lake, "14x14-3p-3f") == []


def test_bad_eval_configs_are_refused():
    for kw in ({"episodes": 0}, {"checkpoint": "first"}, {"seed": -1}):
        with pytest.raises(ValueError):
            EvalConfig(**kw)


def test_results_go_to_the_evaluations_table_and_accumulate(trained):
    lake, result = trained
    out = evaluate(lake, result.run_dir, tasks=["8x8-2p-2f", "lbf/12x12-4p-5f"],
                   eval_config=EvalConfig(episodes=4))
    assert [(r.task, r.split, r.update, r.episodes) for r in out] == [
        ("lbf/8x8-2p-2f", "train", 2, 4), ("lbf/12x12-4p-5f", "test", 2, 4)]
    for r, ref in zip(out, (0.8, 0.5), strict=True):
        assert r.reference_return == ref
        assert r.normalised_return == pytest.approx(r.mean_return / ref)
        assert 0.0 <= r.mean_return <= 1.0 and r.std_return >= 0
    rows = _rows(lake, "12x12-4p-5f")
    assert len(rows) == 1 and rows[0]["model"] == result.config_id
    assert rows[0]["algorithm"] == "bc" and rows[0]["split"] == "test"
    config = json.loads(rows[0]["config"])
    assert config["config_id"] == result.config_id and config["train_tasks"] == list(TASKS)
    assert config["config"]["algorithm"] == "bc" and config["selection"]["env"] == "lbf"
    # the contract with trainer.analysis: every knob it reads out of the JSON is there
    latest = latest_evaluations(connect(lake))
    assert latest.height == 2 and latest.null_count().sum_horizontal().item() == 0, latest
    knobs = latest.row(0, named=True)
    assert (knobs["algorithm"], knobs["quality"], knobs["num_train_tasks"]) == ("bc", "all", "2")
    for name in ("value_loss", "batch_mode", "agent_masking", "task_weighting", "embed_dim",
                 "num_updates", "seed", "eval_checkpoint"):
        assert knobs[name] not in ("", "null"), name
    # an earlier checkpoint adds a row; evaluating the same one again replaces it
    for _ in range(2):
        evaluate(lake, result.run_dir, tasks=["8x8-2p-2f"],
                 eval_config=EvalConfig(episodes=4, checkpoint=1))
    rows = _rows(lake, "8x8-2p-2f")
    assert sorted((r["update"], r["episodes"]) for r in rows) == [(1, 4), (2, 4)]
    # the same seed gives the same returns (evaluation is reproducible)
    again = evaluate(lake, result.run_dir, tasks=["8x8-2p-2f"],
                     eval_config=EvalConfig(episodes=4), write=False)
    assert again[0].mean_return == out[0].mean_return


def test_a_negative_reference_normalises_from_random_to_online_sable(trained):
    """connector at a CPU budget: online Sable's return is negative. Dividing by it would
    rank the worst model first; the fraction from random (0) to Sable (1) does not."""
    lake, result = trained
    write_reference(lake, "lbf/15x15-3p-5f", "online", sable_returns=[-2.0],
                    random_returns=[-5.0], env_steps=1)
    (out,) = evaluate(lake, result.run_dir, tasks=["15x15-3p-5f"],
                      eval_config=EvalConfig(episodes=4), write=False)
    assert out.reference_return == -2.0
    assert out.normalised_return == pytest.approx((out.mean_return + 5.0) / 3.0)
    write_reference(lake, "lbf/15x15-3p-5f", "online", sable_returns=[-6.0],
                    random_returns=[-5.0], env_steps=1)  # below random: undefined, refused
    with pytest.raises(MissingReferenceError, match="negative and not above random for lbf/15"):
        evaluate(lake, result.run_dir, tasks=["15x15-3p-5f"], write=False)


def test_q_greedy_acting_takes_the_argmax_of_the_q_head_autoregressively():
    support = make_support(-1.0, 1.0, 11)
    config = SableConfig(obs_width=5, num_actions=4, embed_dim=16, num_heads=2,
                         value_head=False, q_head=True, value_bins=11)
    model = Sable(config)
    params = model.init_params(jax.random.PRNGKey(0))
    params = jax.tree.map(lambda x: x * 5.0, params)  # sharper Q so argmax is well defined
    rng = np.random.default_rng(0)
    b, t, n = 2, 4, 3
    obs = jnp.asarray(rng.normal(size=(b, t, n, 5)), jnp.float32)
    legal = rng.random((b, t, n, 4)) < 0.6
    legal[..., 1] = True
    mask = np.ones((b, t, n), bool)
    mask[1, :, 1] = False  # a padded agent between two real ones
    legal[1, :, 1] = np.eye(4, dtype=bool)[0]
    first = np.zeros((b, t), bool)
    first[:, 0] = first[0, 2] = True

    q_values = q_values_fn(config, support)

    def step(state, xs):
        res = model.act(params, state, *xs, jax.random.PRNGKey(0), q_values=q_values)
        return res.state, res.actions

    xs = tuple(jnp.swapaxes(jnp.asarray(x), 0, 1) for x in (obs, legal, first, mask))
    _, chosen = jax.jit(lambda s, x: jax.lax.scan(step, s, x))(model.init_state(b), xs)
    chosen = jnp.swapaxes(chosen, 0, 1)  # (B, T, N)
    out = jax.jit(model.forward_train)(params, obs, chosen, legal, first, mask)
    q = hl_gauss.expectation(out.q, support)
    best = jnp.argmax(jnp.where(legal, q, -jnp.inf), axis=-1)
    np.testing.assert_array_equal(np.where(mask, best, 0), chosen)
    assert (np.asarray(chosen)[~mask] == 0).all()
    assert np.take_along_axis(legal, np.asarray(chosen)[..., None], -1).all()


@pytest.mark.slow
def test_cql_without_agent_masking_evaluates_with_padded_slots(trained, tmp_path):
    """The ablation's model saw padded slots as agents: evaluation pads the same way."""
    lake, _ = trained
    result = train(lake, DataSelection(env="lbf", tasks=TASKS),
                   OfflineConfig(**{**TINY, "algorithm": "cql", "agent_masking": False,
                                    "value_loss": "mse"}),
                   tmp_path / "run", cache_dir=tmp_path / "cache")
    out = evaluate(lake, result.run_dir, tasks=["8x8-2p-2f"], eval_config=EvalConfig(episodes=4),
                   write=False)
    assert out[0].episodes == 4 and np.isfinite(out[0].mean_return)


def test_bc_sable_trained_on_recorded_lbf_data_beats_the_random_policy(tmp_path):
    """It must learn: episodes of a scripted, better-than-random policy are recorded into a
    lake; BC-Sable trained on them for a small CPU budget, then run in the real environment
    (sampling its autoregressive policy), returns clearly more than the uniform policy."""
    task = "lbf/8x8-2p-2f"
    lake = Lake(tmp_path / "lake")
    data = collect_lbf_heuristic_episodes(task, 64, seed=0)
    write_episodes(lake, task, "scripted", 0, "high", data)
    random_returns = collect_random_episodes(task, 48, seed=1).episode_returns()
    write_reference(lake, task, "scripted", sable_returns=data.episode_returns(),
                    random_returns=random_returns, env_steps=0)
    config = OfflineConfig(algorithm="bc", embed_dim=32, num_heads=2, batch_size=16,
                           seq_len=10, pad_agents=2, num_updates=150, log_every=50,
                           checkpoint_every=150)
    result = train(lake, DataSelection(env="lbf", tasks=[task]), config, tmp_path / "run",
                   cache_dir=tmp_path / "cache")
    first_loss = np.mean([r["loss"] for r in result.history[:10]])
    last_loss = np.mean([r["loss"] for r in result.history[-10:]])
    assert last_loss < first_loss - 0.3  # it fits the data ...
    out = evaluate(lake, result.run_dir, tasks=[task],
                   eval_config=EvalConfig(episodes=48, seed=2))[0]
    # ... and acts better than random: ~0.85 vs ~0.45 (scripted data ~0.85)
    assert out.mean_return > random_returns.mean() + 0.15, (out, random_returns.mean())
    assert out.normalised_return > 0.6


def test_periodic_evaluation_keeps_the_best_parameters(trained, tmp_path):
    lake, _ = trained
    config = OfflineConfig(**{**TINY, "algorithm": "bc", "eval_every": 1, "eval_episodes": 4})
    # every training task needs a reference before anything is computed
    with pytest.raises(MissingReferenceError, match="lbf/10x10-3p-3f"):
        train(lake, DataSelection(env="lbf", tasks=TASKS), config, tmp_path / "refused",
              cache_dir=tmp_path / "cache")
    assert not (tmp_path / "refused").exists()
    result = train(lake, DataSelection(env="lbf", tasks=TASKS[:1]), config, tmp_path / "run",
                   cache_dir=tmp_path / "cache")
    scores = [r["eval_normalised_return"] for r in result.history]
    assert len(scores) == 2 and result.best["score"] == max(scores)
    assert result.best["update"] == 1 + int(np.argmax(scores))
    out = evaluate(lake, result.run_dir, tasks=TASKS[:1],
                   eval_config=EvalConfig(episodes=4, checkpoint="best"), write=False)
    assert out[0].update == result.best["update"]


def test_best_falls_back_to_latest_without_periodic_evaluation(trained):
    lake, result = trained  # 2 updates, fewer than eval_every: no periodic evaluation ran
    assert result.best is None
    out = evaluate(lake, result.run_dir, tasks=["lbf/8x8-2p-2f"],
                   eval_config=EvalConfig(episodes=4, seed=11), write=True)  # default: best
    assert out[0].update == 2  # the latest
    (row,) = [r for r in _rows(lake, "8x8-2p-2f")
              if json.loads(r["config"])["evaluation"]["seed"] == 11]
    assert json.loads(row["config"])["evaluation"]["checkpoint"] == "latest"  # what was used
    assert EvalConfig().episodes == 320 and EvalConfig().checkpoint == "best"


def test_bc_and_oryx_of_one_size_share_one_evaluation_program():
    """Both act through the policy head alone, so one compiled episode runner serves both
    (and JAX's persistent cache serves it to the other's process); CQL, greedy on its Q
    head, has its own, and so has another size."""
    env = make_env(TASKS[0])

    def runner(**changes):
        return episode_runner(env, OfflineConfig(**{**TINY, **changes}), 4, 4)

    assert runner(algorithm="bc") is runner(algorithm="oryx")
    assert runner(algorithm="cql") is not runner(algorithm="bc")
    assert runner(algorithm="oryx", embed_dim=32) is not runner(algorithm="oryx")


def test_periodic_and_final_evaluation_share_one_compiled_program(trained):
    # the periodic evaluation's parameters are replicated over the training mesh, the final
    # one's restored onto one device: both must run the task's one compiled episode runner
    _, result = trained
    info = read_model_info(result.run_dir)
    params, _ = load_params(result.run_dir, info, "latest")
    mesh = jax.make_mesh((1,), ("data",))
    replicated = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    runner = episode_runner(make_env(TASKS[0]), OfflineConfig.from_json(info["config"]),
                            int(info["pad_to"]), 4)  # the episodes of the tests above: warm
    final = evaluate_params(info, params, TASKS[:1], 4, seed=5)
    periodic = evaluate_params(info, replicated, TASKS[:1], 4, seed=5)
    np.testing.assert_array_equal(periodic[TASKS[0]], final[TASKS[0]])
    # one program, compiled for the first call's inputs, runs the replicated parameters too
    assert len(runner.compiled) == 1
