"""The offline training loop: bad input, each algorithm, checkpoints, exact resume, NaN guard,
data parallelism over two host devices."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from trainer.data import DataSelection
from trainer.offline import NonFiniteLossError, OfflineConfig, config_id, train
from trainer.offline import checkpoint as ckpt

TASKS = ("lbf/8x8-2p-2f", "lbf/10x10-3p-3f")
SELECTION = DataSelection(env="lbf", tasks=TASKS)
TINY = dict(embed_dim=16, num_heads=2, batch_size=8, seq_len=5, pad_agents=4, log_every=2,
            checkpoint_every=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline")
    lake = Lake(root / "lake")
    fill_lake(lake, TASKS, checkpoints=2, episodes=4, lengths=(8, 30), seed=5)
    return lake, root / "cache"


def _train(data, run_dir, **overrides):
    lake, cache = data
    config = OfflineConfig(**{**TINY, "num_updates": 4, **overrides})
    return train(lake, SELECTION, config, run_dir, cache_dir=cache)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("overrides, match", [
    ({"algorithm": "dqn"}, "unknown algorithm 'dqn'"),
    ({"embed_dim": 30, "num_heads": 4}, "not divisible by num_heads"),
    ({"value_loss": "huber"}, "unknown value_loss"),
    ({"batch_mode": "random"}, "unknown batch_mode"),
    ({"gamma": 1.5}, "gamma"),
    ({"seq_len": 10, "chunk_timesteps": 3}, "multiple of chunk_timesteps"),
])
def test_bad_configs_are_refused_on_construction(overrides, match):
    with pytest.raises(ValueError, match=match):
        OfflineConfig(**overrides)


@pytest.mark.parametrize("overrides, selection, match", [
    ({"batch_size": 1}, SELECTION, "smaller than the 2 selected tasks"),
    ({"env": "rware", "pad_agents": "env"}, SELECTION, "selection is from 'lbf'.*model is for "
                                                       "'rware'"),
])
def test_bad_input_fails_before_any_io_or_compute(tmp_path, overrides, selection, match):
    lake = Lake(tmp_path / "lake")  # empty: reading it would fail differently
    config = OfflineConfig(**{**TINY, **overrides})
    with pytest.raises(ValueError, match=match):
        train(lake, selection, config, tmp_path / "run", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_single_task_mode_accepts_a_batch_smaller_than_the_tasks():
    OfflineConfig(**{**TINY, "batch_size": 1, "batch_mode": "single_task"}).check_selection(
        SELECTION)


def test_config_ids_profiles_and_json():
    a = OfflineConfig(**TINY)
    assert config_id(a, SELECTION) == config_id(OfflineConfig(**{**TINY, "log_every": 7}),
                                                SELECTION)
    ids = {config_id(OfflineConfig(**{**TINY, **o}), SELECTION) for o in (
        {}, {"algorithm": "bc"}, {"value_loss": "mse"}, {"agent_masking": False},
        {"batch_mode": "single_task"}, {"seed": 1})}
    assert len(ids) == 6
    assert config_id(a, DataSelection(env="lbf", tasks=TASKS[:1])) not in ids
    assert OfflineConfig.from_json(json.loads(json.dumps(a.to_json()))) == a
    paper = OfflineConfig.profile("paper")
    assert (paper.embed_dim, paper.batch_size, paper.seq_len, paper.num_updates) == (
        512, 480, 20, 60_000)
    assert (paper.pad_agents, OfflineConfig.profile("demo").pad_agents) == ("env", "selection")
    assert (paper.learning_rate, paper.tau, paper.max_grad_norm, paper.gamma) == (
        1e-3, 0.005, 10.0, 0.99)
    assert (paper.cql_alpha, paper.value_temperature, paper.policy_temperature,
            paper.critic_coef, paper.num_bins, paper.smoothing_ratio) == (
        10.0, 1000.0, 0.1, 1.0, 51, 0.75)
    assert OfflineConfig(env="rware").support().v_max == 20.0
    assert OfflineConfig(env="lbf").support().v_min == -1.0
    assert OfflineConfig(algorithm="bc").support() is None
    assert OfflineConfig(value_loss="mse").sable_config().value_bins is None
    sc = OfflineConfig(algorithm="oryx").sable_config()
    assert sc.q_head and not sc.value_head and sc.value_bins == 51


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("overrides", [
    {"algorithm": "bc"},
    {"algorithm": "cql"},
    {"algorithm": "oryx"},
    {"algorithm": "oryx", "value_loss": "mse", "agent_masking": False,
     "batch_mode": "single_task"},
], ids=["bc", "cql", "oryx", "oryx-ablations"])
def test_each_algorithm_trains_logs_and_checkpoints(data, tmp_path, overrides):
    result = _train(data, tmp_path / "run", **overrides)
    assert result.update == 4 and [r["update"] for r in result.history] == [1, 2, 3, 4]
    for row in result.history:
        assert np.isfinite(row["loss"]) and np.isfinite(row["grad_norm"])
        assert set(row["task_loss"]) == set(TASKS)
    if overrides.get("batch_mode") == "single_task":  # one task per batch: the other is None
        assert all(sum(v is None for v in r["task_loss"].values()) == 1 for r in result.history)
    else:
        assert all(np.isfinite(v) for r in result.history for v in r["task_loss"].values())
    assert "updates_per_s" in result.history[1]
    algorithm = overrides["algorithm"]
    last = result.history[-1]
    assert (last["critic_loss"] > 0) == (algorithm != "bc")
    assert (last["conservative_loss"] != 0) == (algorithm == "cql")
    assert (last["policy_loss"] != 0) == (algorithm != "cql")

    info = ckpt.read_model_info(result.run_dir)
    assert info["config_id"] == result.config_id and info["tasks"] == list(TASKS)
    assert info["pad_to"] == 4 and len(info["obs_stats"]["mean"]) == 75
    lines = (result.run_dir / ckpt.METRICS).read_text().splitlines()
    assert [json.loads(x)["update"] for x in lines] == [1, 2, 3, 4]
    assert ckpt.latest_step(result.run_dir) == 4
    # the checkpoint holds params, target params, optimiser, loader state and history
    steps = sorted(p.name for p in (result.run_dir / ckpt.CHECKPOINTS).iterdir()
                   if p.name.isdigit())
    assert steps == ["2", "4"]
    items = {p.name for p in (result.run_dir / ckpt.CHECKPOINTS / "4").iterdir()}
    assert {"state", "loader", "history"} <= items


def test_the_initialisation_program_gives_the_state_of_the_optimised_one():
    """`init_train_state` is compiled without LLVM's optimisation (it runs once per run): the
    same state as the default compilation of `fresh_state` to the last digits, and one
    program for configs that differ only in how the loop runs."""
    from trainer.networks import Sable
    from trainer.offline.state import _initialiser, fresh_state, init_train_state

    config = OfflineConfig(**TINY)
    key = jax.random.PRNGKey(7)
    got = init_train_state(config, key)
    want = jax.jit(lambda k: fresh_state(Sable(config.sable_config()), config, k))(key)
    for a, b in zip(_leaves(got), _leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not all(np.array_equal(a, b) for a, b in  # another key, other parameters
                   zip(_leaves(got.params), _leaves(init_train_state(config, key + 1).params),
                       strict=True))
    loop_only = dataclasses.replace(config, num_updates=5, seed=3, batch_size=4)
    assert _initialiser(loop_only.step_key()) is _initialiser(config.step_key())


def _padded_batch(n_slots: int, positions: np.ndarray, seed: int = 3):
    """A batch of 8 samples: rows 0-3 from a 2-agent task, 4-7 from a 3-agent one, in a
    shuffled order of 3 slots, placed at `positions` [B, 3] of `n_slots` slots (the loader's
    padding elsewhere: observation 0, action 0, only action 0 legal, masked)."""
    from trainer.data.batches import Batch

    rng = np.random.default_rng(seed)
    b, t, f, a = 8, 5, 75, 6
    task = np.repeat([0, 1], 4).astype(np.int32)
    real = np.arange(3)[None, :] < np.where(task == 0, 2, 3)[:, None]  # [B, 3]
    order = np.stack([rng.permutation(3) for _ in range(b)])
    mask3 = np.repeat(np.take_along_axis(real, order, 1)[:, None], t, 1)  # [B, T, 3]
    legal3 = (rng.random((b, t, 3, a)) < 0.6) | (np.arange(a) == 0)
    legal3 = np.where(mask3[..., None], legal3, np.arange(a) == 0)
    actions3 = np.where(mask3, rng.integers(0, a, (b, t, 3)), 0)
    actions3 = np.where(np.take_along_axis(legal3, actions3[..., None], -1)[..., 0], actions3, 0)
    obs3 = np.where(mask3[..., None], rng.normal(size=(b, t, 3, f)), 0.0)
    rows = np.arange(b)[:, None]
    obs = np.zeros((b, t, n_slots, f), np.float32)
    actions = np.zeros((b, t, n_slots), np.int32)
    legal = np.broadcast_to(np.arange(a) == 0, (b, t, n_slots, a)).copy()
    mask = np.zeros((b, t, n_slots), bool)
    for x, x3 in ((obs, obs3), (actions, actions3), (legal, legal3), (mask, mask3)):
        x.transpose(0, 2, 1, *range(3, x.ndim))[rows, positions] = \
            x3.transpose(0, 2, 1, *range(3, x3.ndim))
    first = np.zeros((b, t), bool)
    first[:, 0] = first[:, 3] = True
    terminated = np.zeros((b, t), bool)
    terminated[:, 2] = True
    return Batch(obs, actions, legal, rng.random((b, t)).astype(np.float32), terminated,
                 np.zeros((b, t), bool), first, mask, task)


@pytest.mark.parametrize("algorithm", ["bc", "cql", "oryx"])
def test_the_agent_slots_count_changes_bc_and_cql_not_at_all_and_oryx_by_its_slot_softmax(
        algorithm):
    """Why `pad_agents: selection` is an exact speed knob for BC-Sable and CQL-Sable: with the
    same agents in the same order, 3 slots and 8 slots (padding interleaved at random) give
    the same loss and gradients. Oryx's ICQ weights are a softmax over the batch entries that
    share a slot, so they are equal only when each agent keeps its slot (appended padding)."""
    from trainer.compiled import RUNS_RARELY
    from trainer.networks import Sable
    from trainer.offline.state import init_train_state
    from trainer.offline.training import compute_loss

    config = OfflineConfig(**{**TINY, "algorithm": algorithm})
    model = Sable(config.sable_config())
    params = init_train_state(config, jax.random.PRNGKey(0)).params

    fn = jax.jit(lambda b: jax.value_and_grad(
        lambda p: compute_loss(p, params, model, b, config, 2).total)(params))
    programs = {}  # per slot count, compiled without LLVM's optimisation: they run rarely

    def loss_and_grads(batch):
        n = batch.obs.shape[2]
        programs[n] = programs.get(n) or fn.lower(batch).compile(RUNS_RARELY)
        return programs[n](batch)

    rng = np.random.default_rng(0)
    scattered = np.stack([np.sort(rng.choice(8, 3, replace=False)) for _ in range(8)])
    appended = np.broadcast_to(np.arange(3), (8, 3))
    loss3, grads3 = loss_and_grads(_padded_batch(3, appended))
    for positions in (appended, scattered):
        loss8, grads8 = loss_and_grads(_padded_batch(8, positions))
        same = np.isclose(float(loss8), float(loss3), rtol=1e-5) and all(
            np.allclose(g8, g3, rtol=1e-4, atol=1e-6)
            for g8, g3 in zip(_leaves(grads8), _leaves(grads3), strict=True))
        assert same == (algorithm != "oryx" or positions is appended), (positions, loss8, loss3)


def test_target_network_is_a_polyak_average(data, tmp_path):
    import optax

    from trainer.offline.state import init_train_state

    config = OfflineConfig(**{**TINY, "num_updates": 1, "algorithm": "oryx"})
    result = train(data[0], SELECTION, config, tmp_path / "run", cache_dir=data[1])
    from trainer.offline.checkpoint import load_params

    info = ckpt.read_model_info(result.run_dir)
    mngr = ckpt.manager(result.run_dir)
    init = init_train_state(config, jax.random.PRNGKey(config.seed))
    state, _, _ = ckpt.restore(mngr, 1, ckpt.abstract(init), with_extras=False)
    mngr.close()
    expected = optax.incremental_update(state.params, init.params, 0.005)
    for a, b in zip(_leaves(state.target_params), _leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    params, update = load_params(result.run_dir, info)
    assert update == 1
    for a, b in zip(_leaves(params), _leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_continues_exactly(data, tmp_path):
    straight = _train(data, tmp_path / "straight", num_updates=6, checkpoint_every=3)
    part = train(data[0], SELECTION, OfflineConfig(**{**TINY, "num_updates": 6,
                                                      "checkpoint_every": 3}),
                 tmp_path / "resumed", cache_dir=data[1], stop_at=3)
    assert part.update == 3
    resumed = _train(data, tmp_path / "resumed", num_updates=6, checkpoint_every=3)
    assert resumed.update == 6
    keys = ("loss", "grad_norm", "policy_loss", "critic_loss")
    assert [[r[k] for k in keys] for r in resumed.history] == [
        [r[k] for k in keys] for r in straight.history]
    from trainer.offline.checkpoint import load_params

    info = ckpt.read_model_info(straight.run_dir)
    a, _ = load_params(straight.run_dir, info)
    b, _ = load_params(resumed.run_dir, info)
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    # training a finished run again does nothing
    again = _train(data, tmp_path / "resumed", num_updates=6, checkpoint_every=3)
    assert again.update == 6 and len(again.history) == 6
    # its TensorBoard run, named by the model, holds every update once, as the history
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted((tmp_path / "tensorboard").iterdir())
    assert [r.name for r in runs] == [f"oryx · 2 tasks · seed 0 · {resumed.config_id}"]
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("loss")]
    assert [u for u, _ in losses] == [r["update"] for r in resumed.history]
    np.testing.assert_allclose([v for _, v in losses], [r["loss"] for r in resumed.history],
                               rtol=1e-6)
    assert {f"task_loss/{t}" for t in TASKS} <= set(events.Tags()["scalars"])


def test_a_resumed_run_reads_the_data_it_started_on_and_a_finished_run_reads_nothing(
        tmp_path):
    lake, cache = Lake(tmp_path / "lake"), tmp_path / "cache"
    fill_lake(lake, TASKS, checkpoints=2, episodes=4, lengths=(8, 30), seed=5)
    config = OfflineConfig(**{**TINY, "num_updates": 6, "checkpoint_every": 3})
    straight = train(lake, SELECTION, config, tmp_path / "straight", cache_dir=cache)
    train(lake, SELECTION, config, tmp_path / "resumed", cache_dir=cache, stop_at=3)
    # another run's rows land in the lake between the two halves
    fill_lake(lake, TASKS, runs=("r2",), checkpoints=1, episodes=4, seed=9)
    resumed = train(lake, SELECTION, config, tmp_path / "resumed", cache_dir=cache)
    keys = ("loss", "grad_norm", "policy_loss")
    assert [[r[k] for k in keys] for r in resumed.history] == [
        [r[k] for k in keys] for r in straight.history]
    caches = sorted(p.name for p in cache.iterdir())
    again = train(lake, SELECTION, config, tmp_path / "resumed", cache_dir=cache)
    assert again.update == 6 and again.history == resumed.history
    assert sorted(p.name for p in cache.iterdir()) == caches  # no loader was built


def test_a_run_directory_never_holds_two_models(data, tmp_path):
    _train(data, tmp_path / "run", num_updates=2)
    with pytest.raises(ValueError, match="holds model"):
        _train(data, tmp_path / "run", num_updates=2, algorithm="bc")


def test_nan_loss_stops_training_naming_the_update_and_keeps_the_last_good_checkpoint(
        data, tmp_path):
    def poison(iterator, bad=5):
        for i, batch in enumerate(iterator, start=1):
            if i == bad:
                batch = batch._replace(obs=np.full_like(batch.obs, np.nan))
            yield batch

    lake, cache = data
    config = OfflineConfig(**{**TINY, "num_updates": 8, "log_every": 1, "checkpoint_every": 2})
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at update 5 .*last good "
                                                 r"checkpoint is update 4") as info:
        train(lake, SELECTION, config, tmp_path / "run", cache_dir=cache, batches=poison)
    assert info.value.update == 5 and info.value.last_good == 4
    assert ckpt.latest_step(tmp_path / "run") == 4
    from trainer.offline.checkpoint import load_params

    params, update = load_params(tmp_path / "run", ckpt.read_model_info(tmp_path / "run"))
    assert update == 4 and all(np.isfinite(x).all() for x in _leaves(params))
    lines = (tmp_path / "run" / ckpt.METRICS).read_text().splitlines()
    assert [json.loads(x)["update"] for x in lines] == [1, 2, 3, 4]


SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from lake_schema.storage import Lake
    from trainer.data import DataSelection
    from trainer.offline import OfflineConfig, train
    root, tasks = sys.argv[1], sys.argv[2].split(",")
    assert jax.device_count() == 2, jax.devices()
    config = OfflineConfig(**json.loads(sys.argv[3]))
    sel = DataSelection(env="lbf", tasks=tasks)
    r = train(Lake(root + "/lake"), sel, config, root + "/run-two", cache_dir=root + "/cache",
              devices=jax.devices())
    print(json.dumps([[row["loss"], row["grad_norm"]] for row in r.history]))
""")


def test_two_host_devices_give_the_same_loss_trajectory_as_one(data, tmp_path):
    lake, cache = data
    config = {**TINY, "num_updates": 4, "algorithm": "oryx"}
    one = train(lake, SELECTION, OfflineConfig(**config), tmp_path / "run-one", cache_dir=cache)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    root = Path(lake.root).parent
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root), ",".join(TASKS), json.dumps(config)],
        capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = [[row["loss"], row["grad_norm"]] for row in one.history]
    assert len(two) == len(expected) == 4
    np.testing.assert_allclose(two, expected, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- seeds in one program


def test_seeds_in_one_program_are_the_models_trained_alone(data, tmp_path):
    """train_seeds runs the seeds through one update program: each seed's run directory,
    config id, losses and parameters are those of training that seed alone; a seed resumed
    from another update trains in its own group; finished seeds are returned as they are."""
    from trainer.offline import train_seeds

    lake, cache = data
    config = OfflineConfig(**{**TINY, "num_updates": 4})
    alone = [train(lake, dataclasses.replace(SELECTION, seed=s),
                   dataclasses.replace(config, seed=s), tmp_path / "alone" / str(s),
                   cache_dir=cache) for s in (0, 1, 2)]
    # seed 2 is half done: it resumes in its own group while seeds 0 and 1 train together
    part = train_seeds(lake, SELECTION, config, [2], tmp_path / "together", cache_dir=cache,
                       stop_at=2)
    assert part[0].update == 2
    together = train_seeds(lake, SELECTION, config, [0, 1, 2], tmp_path / "together",
                           cache_dir=cache)
    keys = ("loss", "grad_norm", "policy_loss")
    for a, b in zip(alone, together, strict=True):
        assert b.run_dir == tmp_path / "together" / a.config_id and b.update == 4
        np.testing.assert_allclose([[r[k] for k in keys] for r in b.history],
                                   [[r[k] for k in keys] for r in a.history], rtol=2e-5)
        info = ckpt.read_model_info(a.run_dir)
        pa, _ = ckpt.load_params(a.run_dir, info)
        pb, _ = ckpt.load_params(b.run_dir, info)
        for x, y in zip(_leaves(pa), _leaves(pb), strict=True):
            np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)
    assert len({r.history[0]["loss"] for r in together}) == 3  # the seeds really differ
    again = train_seeds(lake, SELECTION, config, [0, 1, 2], tmp_path / "together",
                        cache_dir=cache)
    assert [r.history for r in again] == [r.history for r in together]


def test_the_vmapped_seed_update_computes_what_the_sequential_one_does(data):
    """Accelerators vmap the update over seeds; CPU runs the seeds one after another in the
    program (`over_seeds`). The two give each seed the same new state and metrics."""
    from trainer.data import device_put_batch, make_loader
    from trainer.offline.state import init_train_state
    from trainer.offline.training import make_mesh, make_update

    lake, cache = data
    config = OfflineConfig(**{**TINY, "algorithm": "oryx"})
    loader = make_loader(lake, SELECTION, config.loader_config(), cache)

    def stack(*trees):
        return jax.tree.map(lambda *x: np.stack(x), *trees)

    batch = device_put_batch(stack(loader.batch(0), loader.batch(1)))
    mesh = make_mesh()
    results = []
    for vectorise in (True, False):
        states = stack(*(init_train_state(config, jax.random.PRNGKey(k)) for k in (0, 1)))
        results.append(make_update(config, len(TASKS), mesh, vectorise)(states, batch))
    assert make_update(config, len(TASKS), mesh) is make_update(config, len(TASKS), mesh,
                                                                vectorise=False)
    (vmapped_state, vmapped), (mapped_state, mapped) = results
    assert not np.allclose(mapped.loss[0], mapped.loss[1])  # two seeds, two batches
    # atol: Adam's first step moves each parameter by about lr x g / |g|, so float32
    # reassociation noise in a near-zero gradient entry shows at up to ~1% of lr (1e-3)
    for x, y in zip(_leaves((vmapped_state, vmapped)), _leaves((mapped_state, mapped)),
                    strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-5)


def test_seeds_sharing_a_run_directory_are_refused_before_any_io(tmp_path):
    from trainer.offline import train_seeds

    with pytest.raises(ValueError, match="share a run directory"):
        train_seeds(Lake(tmp_path / "lake"), SELECTION, OfflineConfig(**TINY), [1, 1],
                    tmp_path / "models", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "models").exists() and not (tmp_path / "cache").exists()
