"""The paper's experiments as data: named presets, each expanding to the task datasets it needs
and the offline models (seeds included) whose evaluations the report compares.

Why data, not code: one launch (the `reproduce` job, `benchmarks/reproduce.py`) runs a preset
end to end, and a second launch reuses what is done. Models are identified by their config id
(`trainer.offline.config_id`: offline config + dataset selection), so an experiment that
shares a model with another (Oryx on every training task at full quality is the reference
point of the ablations, the quality subsets and the task scaling) trains it once.

Experiments (the paper's section 4; the comparisons `trainer.analysis.COMPARISONS` draws):
- `task_scaling` (Figures 1 and 4): BC-Sable, CQL-Sable and Oryx on the first k training
  tasks, for each k of `task_counts`; the paper's gain on held-out tasks, max over k of
  test(k) / test(1), per algorithm and averaged (`trainer.analysis.task_scaling_gain`).
- `algorithms` (Table 2): BC-Sable, CQL-Sable and Oryx on every training task.
- `ablations` (Figure 6): without HL-Gauss (MSE value loss), without agent masking and
  shuffling, without task-balanced batches (each batch from one task).
- `quality` (Figure 11): the high, low, and high + 10% low subsets.
- `dataset_size` (Figure 5a): a fraction of each task's episodes, on the first
  `dataset_size_tasks` training tasks.
- `model_size` (Figures 5b, 12): other embedding sizes.
The last four run Oryx unless the preset's `sweep_algorithms` names more (the paper: Oryx and
CQL-Sable in the ablations, all three algorithms in the others).

This module imports no JAX (the Dagster code location loads it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lake_schema.catalogue import split_tasks
from trainer.data.selection import DataSelection
from trainer.offline.config import ALGORITHMS, OfflineConfig

EXPERIMENTS = ("task_scaling", "algorithms", "ablations", "quality", "dataset_size",
               "model_size")


@dataclass(frozen=True)
class Preset:
    """The scale of a reproduction. `online` and `offline` are the trainer profiles plus
    overrides; every scale-down from the paper is a field here, stated beside the results."""

    name: str
    envs: tuple[str, ...]
    train_split: str  # per env: which split trains the models
    test_split: str  # and which is held out of everything the models see
    seeds: tuple[int, ...]
    online: dict[str, Any]  # OnlineConfig: {"profile": ..., **overrides}
    offline: dict[str, Any]  # OfflineConfig: {"profile": ..., **overrides}
    eval_episodes: int
    task_counts: tuple[int, ...] | None  # None: 1..M
    fractions: tuple[float, ...] = ()
    embed_dims: tuple[int, ...] = ()
    experiments: tuple[str, ...] = EXPERIMENTS
    notes: str = ""
    # OnlineConfig / OfflineConfig overrides of one env's datasets / models, after `online` /
    # `offline` (that env's scale-down)
    online_by_env: dict[str, dict[str, Any]] = field(default_factory=dict)
    offline_by_env: dict[str, dict[str, Any]] = field(default_factory=dict)
    # OnlineConfig overrides of the held-out tasks' runs, last: no model trains on their data,
    # they give each held-out task its online Sable reference (a scale-down, stated)
    online_held_out: dict[str, Any] = field(default_factory=dict)
    # the algorithms of each sweep (ablations, quality, dataset_size, model_size); absent: Oryx
    sweep_algorithms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dataset_size_tasks: int | None = None  # the dataset-size sweep's first k tasks; None: all

    def online_config(self, env: str, held_out: bool = False) -> dict[str, Any]:
        """The `online_sable` config of this preset's datasets of `env` (of its held-out
        split's tasks with `held_out`)."""
        return {**self.online, **self.online_by_env.get(env, {}),
                **(self.online_held_out if held_out else {})}

    def held_out(self, task: str) -> bool:
        """Whether `task` (`env/scenario`) is in this preset's held-out split."""
        env = task.split("/", 1)[0]
        return task in {t.name for t in split_tasks(env, self.test_split)}


@dataclass(frozen=True)
class ModelSpec:
    """One offline model of an experiment: OfflineConfig knobs and DataSelection fields."""

    experiment: str
    offline: dict[str, Any] = field(hash=False)
    selection: dict[str, Any] = field(hash=False)

    @property
    def key(self) -> tuple:
        """Equal for the same model whichever experiment asked for it."""
        return (tuple(sorted(self.offline.items())), tuple(sorted(self.selection.items())))

    def build(self, preset: Preset, overrides: dict[str, Any] | None = None
              ) -> tuple[OfflineConfig, DataSelection]:
        """The validated (OfflineConfig, DataSelection): the preset's profile and its env's
        overrides, then the launch's `overrides` (a scale-down), then the experiment's own
        knobs."""
        knobs = {**preset.offline, **preset.offline_by_env.get(self.offline["env"], {})}
        profile = knobs.pop("profile")
        config = OfflineConfig.profile(profile, **{**knobs, **(overrides or {}), **self.offline})
        selection = DataSelection(env=config.env, seed=config.seed, **self.selection)
        config.check_selection(selection)
        return config, selection


PRESETS: dict[str, Preset] = {
    # Runs on a 2-core CPU machine: lbf with the demo split (its test tasks are paper test
    # tasks), 3 seeds, the demo-profile models; connector's paper test grids (42x42 and up)
    # are far beyond a CPU online budget, so connector holds out the next-larger training
    # grids (the demo split) instead. rware is left out (its online stage needs ~9M env
    # steps per task on CPU). Connector's models have 8 agent slots, not the env's 45: its
    # demo split's tasks have 3 to 6 agents, and 45 slots make each update ~30x the work
    # ((T x N)^2 retention) for padding alone; lbf's keep the env's 8, as when
    # REPRODUCTION.md's results were recorded (the demo profile pads to the selection's
    # largest team since). lbf's online budget is 2M env steps per task:
    # at the demo's 300k, 15x15-3p-5f's data stayed near random (0.22 against random 0.07,
    # its `high` checkpoints no better than its `low` ones), so the multi-task models
    # imitated weak play; at 2M it reaches 0.49-0.54 (benchmarks/REPRODUCTION.md), with 64
    # environments (the demo profile's lbf has 32 since).
    "cpu-small": Preset(
        name="cpu-small", envs=("lbf", "connector"), train_split="demo-train",
        test_split="demo-test", seeds=(0, 1, 2), online={"profile": "demo"},
        offline={"profile": "demo"}, eval_episodes=64, task_counts=(1, 3),
        experiments=("task_scaling", "algorithms", "ablations", "quality"),
        notes="lbf/connector demo splits; online 2M (lbf) / 300k (connector) env steps per "
              "task; offline embed 32, "
              "300 updates, batch 32; lbf padded to 8 agent slots (env), connector to 8 "
              "(env: 45); 64 "
              "evaluation episodes (paper: 320); 3 seeds",
        online_by_env={"lbf": {"total_env_steps": 2_000_000, "num_envs": 64}},
        offline_by_env={"lbf": {"pad_agents": "env"}, "connector": {"pad_agents": 8}},
    ),
    # The headline at CPU scale: lbf's full split (paper Table 3: train on 5 tasks of 2-5
    # agents, test on 4 of 3-8 agents, 17x17-6p-8f and 17x17-8p-10f included), the task-scaling
    # experiment alone, every algorithm, in one launch of at most 150 min on a 2-core machine.
    # Each setting was fixed before any test-task result existed: online Sable at the demo
    # profile (chosen on training tasks), 1.5M env steps per training task (15x15-3p-5f was
    # still rising at 2M, `benchmarks/REPRODUCTION.md`) and 500k per held-out task (no model
    # trains on their data: they give the normalisation reference); offline models of embed 64
    # (the paper's single-task optimum) padded to lbf's 8 agent slots, batch 40 (8 chunks per
    # task at k = 5), 400 updates (what the budget allows: 9 configurations x 3 seeds at about
    # 1 update/s, benchmarks/RESULTS.md); best checkpoint by periodic evaluation on the
    # training tasks; 64 final evaluation episodes per task.
    "lbf-full": Preset(
        name="lbf-full", envs=("lbf",), train_split="train", test_split="test",
        seeds=(0, 1, 2), online={"profile": "demo", "total_env_steps": 1_500_000},
        offline={"profile": "demo", "embed_dim": 64, "pad_agents": "env", "batch_size": 40,
                 "num_updates": 400},
        eval_episodes=64, task_counts=(1, 3, 5), experiments=("task_scaling",),
        online_held_out={"total_env_steps": 500_000},
        notes="lbf full split (train 5 tasks, 2-5 agents; test 4 tasks, 3-8 agents); online "
              "1.5M env steps per training task, 500k per held-out task (its reference "
              "only); offline embed 64, 400 updates (paper: 60k), batch 40 x 20 (paper: "
              "480 x 20), 8 agent slots; k = 1, 3, 5; 64 evaluation episodes (paper: 320); "
              "3 seeds",
    ),
    # The paper's splits, budgets and hyperparameters (appendices J and K), for a cluster.
    # Online: the paper gives no online budget; the `paper` profile's is Mava's rec_sable
    # default (1220 updates of 32 environments x 128 steps, about 5M env steps). Recording at
    # the paper's scale (appendix L): Connector, 50 checkpoints of 160 rollouts x 1280 steps
    # (10.24M steps a task), here 5,120 episodes a checkpoint (204,800 steps at its 40-step
    # limit); RWARE, Mava's evenly spaced evaluations of 128 episodes: 610 of them (78,080
    # episodes, Table 8's largest dataset; its 122- and 244-rollout datasets are the dataset
    # size sweep's fractions 0.2 and 0.4, on 5 training tasks as Figure 5a); LBF, about 3.99M
    # steps a task, here 50 checkpoints of 798 episodes (3.99M steps at its 100-step limit).
    # The recorder counts episodes where the paper counts steps: shorter episodes record
    # fewer steps. Sweeps as the paper's: ablations on Oryx and CQL-Sable (Figure 6), quality
    # and model size on all three (Figures 11, 5b and 12: embed 64 to 768).
    "paper": Preset(
        name="paper", envs=("rware", "lbf", "connector"), train_split="train",
        test_split="test", seeds=(0, 1, 2), online={"profile": "paper"},
        offline={"profile": "paper"}, eval_episodes=320, task_counts=None,
        fractions=(0.2, 0.4), embed_dims=(64, 128, 256, 768),
        online_by_env={
            "rware": {"num_checkpoints": 610, "episodes_per_checkpoint": 128},
            "connector": {"num_checkpoints": 50, "episodes_per_checkpoint": 5120},
            "lbf": {"num_checkpoints": 50, "episodes_per_checkpoint": 798},
        },
        sweep_algorithms={"ablations": ("oryx", "cql"), "quality": ALGORITHMS,
                          "dataset_size": ALGORITHMS, "model_size": ALGORITHMS},
        dataset_size_tasks=5,
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def narrow(preset: Preset, *, experiments: Sequence[str] = (), seeds: Sequence[int] = (),
           envs: Sequence[str] = (), eval_episodes: int | None = None) -> Preset:
    """The preset restricted to subsets of its experiments, seeds and envs (empty: all), with
    another final-evaluation episode count; a value the preset lacks is a ValueError."""
    for name, chosen, allowed in (("experiments", experiments, preset.experiments),
                                  ("seeds", seeds, preset.seeds), ("envs", envs, preset.envs)):
        unknown = [v for v in chosen if v not in allowed]
        if unknown:
            raise ValueError(f"{name} {unknown} not in preset {preset.name!r}: {list(allowed)}")
    return dataclasses.replace(
        preset, experiments=tuple(experiments) or preset.experiments,
        seeds=tuple(seeds) or preset.seeds, envs=tuple(envs) or preset.envs,
        eval_episodes=eval_episodes or preset.eval_episodes)


def dataset_tasks(preset: Preset) -> list[str]:
    """Every task whose online dataset and references the preset needs (train, then test)."""
    return [t.name for env in preset.envs
            for split in (preset.train_split, preset.test_split)
            for t in split_tasks(env, split)]


def _experiment(name: str, preset: Preset, env: str) -> list[tuple[dict, dict]]:
    """(offline knobs, selection fields) of one experiment on one env, before seeds."""
    num_train = len(split_tasks(env, preset.train_split))
    if name == "task_scaling":
        counts = preset.task_counts or tuple(range(1, num_train + 1))
        # k = M is the whole split: the same model as the other experiments' (same id)
        return [({"algorithm": a}, {"first_k": k} if k < num_train else {})
                for a in ALGORITHMS for k in sorted({min(k, num_train) for k in counts})]
    if name == "algorithms":
        return [({"algorithm": a}, {}) for a in ALGORITHMS]
    out = []
    for algorithm in preset.sweep_algorithms.get(name, ("oryx",)):
        base = {"algorithm": algorithm}
        if name == "ablations":
            out += [(base, {}), ({**base, "value_loss": "mse"}, {}),
                    ({**base, "agent_masking": False}, {}),
                    ({**base, "batch_mode": "single_task"}, {})]
        elif name == "quality":
            out += [(base, {"quality": q}) for q in ("all", "high", "low")] + [
                (base, {"quality": "high+low", "low_fraction": 0.1})]
        elif name == "dataset_size":
            k = preset.dataset_size_tasks
            tasks = {"first_k": k} if k is not None and k < num_train else {}
            out += [(base, tasks)] + [(base, {**tasks, "fraction": f})
                                       for f in preset.fractions]
        elif name == "model_size":
            out += [(base, {})] + [({**base, "embed_dim": d}, {}) for d in preset.embed_dims]
        else:
            raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    return out


def models(preset: Preset) -> list[ModelSpec]:
    """Every model of the preset, each once (the first experiment that asks for it names it),
    seed by seed."""
    seen: dict[tuple, ModelSpec] = {}
    for seed in preset.seeds:
        for env in preset.envs:
            for experiment in preset.experiments:
                for offline, selection in _experiment(experiment, preset, env):
                    spec = ModelSpec(
                        experiment, {**offline, "env": env, "seed": seed},
                        {"split": preset.train_split, "quality": "all", **selection})
                    seen.setdefault(spec.key, spec)
    return list(seen.values())


def seed_groups(preset: Preset, overrides: dict[str, Any] | None = None
                ) -> list[list[tuple[ModelSpec, OfflineConfig, DataSelection]]]:
    """The preset's models, built (`ModelSpec.build`) and grouped by configuration: each
    group is one configuration's seeds (`trainer.offline.train_seeds` can train them in one
    program); groups in the order of their first model."""
    groups: dict[tuple, list[tuple[ModelSpec, OfflineConfig, DataSelection]]] = {}
    for spec in models(preset):
        config, selection = spec.build(preset, overrides)
        key = (dataclasses.replace(config, seed=0), dataclasses.replace(selection, seed=0))
        groups.setdefault(key, []).append((spec, config, selection))
    return list(groups.values())
