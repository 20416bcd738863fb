"""Pinned behaviour: a tiny online run, tiny offline runs (BC, CQL with HL-Gauss, Oryx without
agent masking) and their evaluations give the numbers stored in `pinned.json`.

Why: refactors of the acting, rollout and training code must not change what is computed.
The runs are seeded and deterministic on CPU; numbers are compared to float tolerance.
Re-record (only when a change of behaviour is intended):
`python tests/trainer/test_pinned.py --record`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

if __name__ == "__main__":  # this checkout's packages, not the venv's editable install
    sys.path.insert(0, str(Path(__file__).parents[2]))

from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake
from lake_schema.writer import write_reference

PINNED = Path(__file__).with_name("pinned.json")
TASKS = ("lbf/8x8-2p-2f", "lbf/10x10-3p-3f")
RESULT_FIELDS = ("task", "split", "update", "episodes", "mean_return", "std_return",
                 "normalised_return", "reference_return")


def _online(root: Path) -> dict:
    from trainer.online import OnlineConfig, train_online

    lake = Lake(root / "lake-online")
    # The network/PPO settings of the other online tests (test_online_training.py): one
    # compilation of the task's programs per test session.
    config = OnlineConfig(
        num_envs=32, rollout_length=64, chunk_timesteps=16, embed_dim=32, num_heads=4,
        total_env_steps=32 * 64 * 3, num_checkpoints=2, episodes_per_checkpoint=4,
        reference_episodes=4, progress_interval_s=1e9, seed=3,
    )
    result = train_online(TASKS[0], config, lake, "pin", checkpoint_dir=root / "ck",
                          log=lambda _: None)
    steps = read_table(lake, "steps", Selection(env="lbf", runs=["pin"]),
                       columns=["checkpoint", "reward", "action"]).to_pylist()
    return {
        "curve": [r.mean_return for r in result.curve],
        "reference_return": result.reference_return,
        "random_return": result.random_return,
        "steps_reward_sum": float(sum(r["reward"] for r in steps)),
        "steps_action_sum": float(sum(sum(r["action"]) for r in steps)),
        "steps_rows": len(steps),
    }


def _offline(root: Path) -> dict:
    from trainer.data import DataSelection
    from trainer.offline import EvalConfig, OfflineConfig, evaluate, train

    try:
        from lake_schema.testing import fill_lake
    except ImportError:
        from lake_schema.testing import fill_lake

    lake = Lake(root / "lake-offline")
    fill_lake(lake, TASKS, checkpoints=1, episodes=4, lengths=(8, 30), seed=9)
    for task, ret in ((TASKS[0], 0.8), (TASKS[1], 0.5)):
        write_reference(lake, task, "online", sable_returns=[ret], random_returns=[0.1],
                        env_steps=1)
    tiny = dict(embed_dim=16, num_heads=2, batch_size=8, seq_len=5, pad_agents=4, log_every=1,
                checkpoint_every=3, num_updates=3)
    out = {}
    for name, extra in (
        ("bc", {"algorithm": "bc"}),
        ("cql", {"algorithm": "cql"}),
        ("oryx_nomask", {"algorithm": "oryx", "agent_masking": False, "value_loss": "mse"}),
    ):
        result = train(lake, DataSelection(env="lbf", tasks=TASKS),
                       OfflineConfig(**tiny, **extra), root / f"run-{name}",
                       cache_dir=root / "cache")
        losses = [{k: r[k] for k in ("loss", "policy_loss", "critic_loss", "grad_norm")}
                  for r in result.history]
        evals = evaluate(lake, result.run_dir, tasks=list(TASKS),
                         eval_config=EvalConfig(episodes=4, seed=5), write=False)
        out[name] = {"losses": losses,
                     "returns": [{k: getattr(r, k) for k in RESULT_FIELDS} for r in evals]}
    return out


def run_all(root: Path) -> dict:
    return {"online": _online(root), "offline": _offline(root)}


def _close(got, want, path="") -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=path)
    else:
        assert got == want, path


@pytest.mark.skipif(not PINNED.exists(), reason="no pinned numbers recorded")
def test_pinned_runs_match(tmp_path):
    _close(run_all(tmp_path), json.loads(PINNED.read_text()))


if __name__ == "__main__":
    import os
    import tempfile

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    with tempfile.TemporaryDirectory() as d:
        numbers = run_all(Path(d))
    if "--record" in sys.argv:
        PINNED.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
        print(f"recorded {PINNED}")
    else:
        _close(numbers, json.loads(PINNED.read_text()))
        print("pinned numbers match")
