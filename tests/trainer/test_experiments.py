"""The reproduction presets expand into valid, deduplicated offline models, each compared
with its experiment's reference in exactly the one knob the experiment varies."""

import dataclasses

import pytest

from lake_schema.catalogue import split_tasks
from trainer.experiments import PRESETS, dataset_tasks, get_preset, models, narrow, seed_groups
from trainer.offline.config import config_id
from trainer.online.config import OnlineConfig


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_model_is_valid_and_trained_once(name):
    preset = get_preset(name)
    specs = models(preset)
    ids = [config_id(*s.build(preset)) for s in specs]
    assert len(set(ids)) == len(ids)  # one model, one id, whichever experiments share it
    assert {s.offline["seed"] for s in specs} == set(preset.seeds)
    assert {s.offline["env"] for s in specs} == set(preset.envs)


def test_cpu_small_holds_out_the_test_tasks_and_counts_its_models():
    preset = get_preset("cpu-small")
    # per env and seed: task scaling 6 (bc, cql, oryx on 1 and 3 tasks), algorithms +0 (the
    # same 3-task models), ablations +3, quality +3 (high, low, high + 10% low)
    assert len(models(preset)) == 12 * len(preset.envs) * len(preset.seeds)
    tasks = dataset_tasks(preset)
    for env in preset.envs:
        test = {t.name for t in split_tasks(env, preset.test_split)}
        train = {t.name for t in split_tasks(env, preset.train_split)}
        assert test <= set(tasks) and train <= set(tasks) and not test & train
        for spec in models(preset):
            if spec.offline["env"] == env:
                _, selection = spec.build(preset)
                assert not set(selection.task_names) & test


@pytest.mark.parametrize("experiment, knob", [
    ("ablations", {"value_loss", "agent_masking", "batch_mode"}),
    ("quality", {"quality", "low_fraction"}),
    ("task_scaling", {"first_k", "algorithm"}),
])
def test_an_experiment_varies_only_its_knobs(experiment, knob):
    preset = dataclasses.replace(get_preset("cpu-small"), experiments=(experiment,),
                                 seeds=(0,), envs=("lbf",))
    specs = models(preset)
    varied = set()
    for a in specs:
        for b in specs:
            fields = {**a.offline, **a.selection}.items() ^ {**b.offline, **b.selection}.items()
            varied |= {k for k, _ in fields}
    assert varied == knob


def test_the_experiment_wins_over_a_scale_down():
    preset = get_preset("paper")
    (spec,) = [s for s in models(preset) if s.offline.get("embed_dim") == 64][:1]
    config, _ = spec.build(preset, {"embed_dim": 16, "num_updates": 10})
    assert config.embed_dim == 64 and config.num_updates == 10 and config.batch_size == 480


def test_unknown_preset_and_experiment_are_named():
    with pytest.raises(ValueError,
                       match="unknown preset 'huge'; choose from cpu-small, lbf-full, paper"):
        get_preset("huge")
    preset = dataclasses.replace(get_preset("cpu-small"), experiments=("nope",))
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        models(preset)


def test_a_launch_narrows_the_preset_to_values_it_has():
    preset = narrow(get_preset("cpu-small"), experiments=["quality"], seeds=[1], envs=["lbf"],
                    eval_episodes=8)
    assert (preset.experiments, preset.seeds, preset.envs, preset.eval_episodes) == (
        ("quality",), (1,), ("lbf",), 8)
    assert {s.offline["seed"] for s in models(preset)} == {1}
    assert narrow(preset) == preset
    with pytest.raises(ValueError, match=r"envs \['rware'\] not in preset 'cpu-small'"):
        narrow(get_preset("cpu-small"), envs=["rware"])


def test_seed_groups_put_each_configuration_s_seeds_together():
    preset = get_preset("cpu-small")
    groups = seed_groups(preset)
    assert sum(len(g) for g in groups) == len(models(preset))
    for group in groups:
        assert [c.seed for _, c, _ in group] == list(preset.seeds)
        assert [s.seed for _, _, s in group] == list(preset.seeds)  # the data order follows
        first = group[0][1]
        assert all(dataclasses.replace(c, seed=first.seed) == first for _, c, _ in group)
    # different knobs never share a group: one group per configuration id at seed 0
    assert len({config_id(g[0][1], g[0][2]) for g in groups}) == len(groups)


def test_cpu_small_pads_connector_to_8_agent_slots_and_leaves_lbf_as_it_was():
    preset = get_preset("cpu-small")
    for spec in models(preset):
        config, _ = spec.build(preset)
        if config.env == "connector":
            held_out = [t.num_agents for t in split_tasks("connector", preset.test_split)]
            assert config.pad_to(held_out) == 8 >= max(held_out)
        else:  # the lbf models measured before this override keep their ids
            assert config.pad_agents == "env"


def test_cpu_small_trains_lbf_datasets_longer_and_online_configs_validate():
    preset = get_preset("cpu-small")
    configs = {}
    for env in preset.envs:
        knobs = preset.online_config(env)
        configs[env] = OnlineConfig.profile(knobs.pop("profile"), env=env, **knobs)
    assert (configs["lbf"].total_env_steps, configs["lbf"].num_envs) == (2_000_000, 64)
    assert configs["connector"].total_env_steps == OnlineConfig().total_env_steps  # the demo's


def test_lbf_full_scales_every_algorithm_over_the_full_split_s_tasks():
    """The headline's fair test: k = 1, 3, 5 of lbf's 5 training tasks for BC-Sable,
    CQL-Sable and Oryx, 3 seeds, 8 agent slots, every task 8 chunks of a batch at k = 5;
    the held-out tasks' online runs are the shorter reference runs."""
    preset = get_preset("lbf-full")
    groups = seed_groups(preset)
    shapes = {(c.algorithm, len(s.task_names)) for _, c, s in (g[0] for g in groups)}
    assert shapes == {(a, k) for a in ("bc", "cql", "oryx") for k in (1, 3, 5)}
    assert all(len(g) == 3 for g in groups)
    for _, config, selection in (g[0] for g in groups):
        assert config.embed_dim == 64 and config.pad_to([2]) == 8
        assert config.batch_size // len(split_tasks("lbf", "train")) >= 8
        assert selection.standardisation_scope().task_names == tuple(
            t.name for t in split_tasks("lbf", "train"))
    held_out = {t.name for t in split_tasks("lbf", "test")}
    assert {t for t in dataset_tasks(preset) if preset.held_out(t)} == held_out
    budgets = {}
    for t in dataset_tasks(preset):
        knobs = preset.online_config("lbf", preset.held_out(t))
        budgets[t] = OnlineConfig.profile(knobs.pop("profile"), env="lbf", **knobs
                                          ).total_env_steps
    assert {budgets[t] for t in held_out} == {500_000}
    assert {b for t, b in budgets.items() if t not in held_out} == {1_500_000}


def test_the_paper_preset_builds_every_model_at_the_paper_s_scale():
    """One launch away on a cluster: every configuration validates, at appendix K's scale
    (embed 512, batch 480 x 20 steps, 60k updates; Figure 5's other sizes), 320 evaluation
    episodes, and no model sees a test task."""
    preset = get_preset("paper")
    assert set(preset.experiments) >= {"dataset_size", "model_size"}
    assert preset.eval_episodes == 320 and preset.seeds == (0, 1, 2)
    configs = []
    for group in seed_groups(preset):  # every configuration validated
        _, config, selection = group[0]
        test = {t.name for t in split_tasks(config.env, preset.test_split)}
        assert not set(selection.task_names) & test
        configs.append(config)
    assert {c.env for c in configs} == {"rware", "lbf", "connector"}
    assert {c.embed_dim for c in configs} == {512, 64, 128, 256, 768}
    assert {(c.batch_size, c.seq_len, c.num_updates) for c in configs} == {(480, 20, 60_000)}
    # the sweeps cover the paper's algorithms: ablations on Oryx and CQL-Sable (Figure 6),
    # quality and model size on all three (Figures 11, 5b, 12)
    def algorithms(experiment, **knob):
        return {s.offline["algorithm"] for s in models(preset) if s.experiment == experiment
                and all({**s.offline, **s.selection}.get(k) == v for k, v in knob.items())}
    assert algorithms("ablations", value_loss="mse") == {"oryx", "cql"}
    assert algorithms("quality", quality="low") == {"bc", "cql", "oryx"}
    assert algorithms("model_size", embed_dim=768) == {"bc", "cql", "oryx"}
    assert algorithms("dataset_size", fraction=0.2) == {"bc", "cql", "oryx"}
    # recording at the paper's scale (appendix L)
    def recording(env):
        knobs = preset.online_config(env)
        c = OnlineConfig.profile(knobs.pop("profile"), env=env, **knobs)
        return c.num_checkpoints, c.episodes_per_checkpoint
    assert recording("connector") == (50, 5120)  # 50 x 204,800 steps = 10.24M at 40 steps
    assert recording("rware") == (610, 128)  # Table 8: 610 rollouts = 78,080 episodes
    assert recording("lbf") == (50, 798)  # about 3.99M steps at 100 steps an episode
