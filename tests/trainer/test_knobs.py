"""What a knob changes is declared on the knob (`model=`, `program=`), and the model id, the
compiled programs' keys and the report's knobs all derive from that one declaration."""

from __future__ import annotations

import dataclasses

from trainer.analysis import NOT_KNOBS
from trainer.data.selection import DataSelection
from trainer.knobs import fields_without, program_key
from trainer.offline.config import OfflineConfig, config_id
from trainer.online.config import OnlineConfig

LOOP = {"log_every", "checkpoint_every", "keep_checkpoints", "eval_every", "eval_episodes",
        "num_workers"}


def test_the_settings_that_leave_a_model_as_it_is():
    assert fields_without(OfflineConfig, "model") == LOOP
    assert LOOP | {"seed", "data_versions"} == NOT_KNOBS
    selection = DataSelection(env="lbf", split="demo-train")
    config = OfflineConfig()
    for name in LOOP:  # a change of any of them keeps the id; of a model knob, not
        value = getattr(config, name)
        other = dataclasses.replace(config, **{name: value + 1})
        assert config_id(other, selection) == config_id(config, selection), name
    assert config_id(dataclasses.replace(config, embed_dim=64), selection) != config_id(
        config, selection)


def test_runs_that_differ_only_in_loop_budget_seed_or_shapes_share_programs():
    assert fields_without(OfflineConfig, "program") == LOOP | {
        "batch_size", "pad_agents", "batch_mode", "num_updates", "seed"}
    assert fields_without(OnlineConfig, "program") == {
        "total_env_steps", "num_checkpoints", "episodes_per_checkpoint", "reference_episodes",
        "seed", "progress_interval_s"}
    config = OfflineConfig()
    budget = dataclasses.replace(config, num_updates=7, seed=3, batch_size=12, log_every=5)
    assert budget.step_key() == config.step_key()
    assert dataclasses.replace(config, gamma=0.9).step_key() != config.step_key()
    online = OnlineConfig()
    assert program_key(dataclasses.replace(online, total_env_steps=10, seed=2)) == (
        program_key(online))
    assert program_key(dataclasses.replace(online, gamma=0.9)) != program_key(online)
