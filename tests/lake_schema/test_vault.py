"""og-marl / flashbax Vaults in and out of the lake (lake_schema.vault, issue 16 part 1).

A Vault written by flashbax itself imports with every value equal; lake -> Vault -> lake is
the identity on the selected rows (and flashbax reads the exported Vault); a Vault larger
than a memory cap imports under it (peak RSS of a fresh process); a Vault of the wrong
shape is refused by the CLI in one line naming the field, exit 1, nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lake_schema.catalogue import get_task
from lake_schema.cli import main
from lake_schema.errors import LakeValueError
from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake
from lake_schema.testing import synthetic_episodes
from lake_schema.vault import Budget, VaultWriter, import_vault
from lake_schema.verify import verify
from lake_schema.writer import write_episodes

LBF = "lbf/8x8-2p-2f"
REPO = Path(__file__).resolve().parents[2]


def og_marl_steps(task: str, ends_per_row: list[list[int]], tail: int, seed: int = 0) -> dict:
    """og-marl experience (B, T, N, ...) whose row b has episodes ending at the given
    lengths, then `tail` steps of an unfinished episode. Per-agent rewards and flags;
    one agent's terminal is also set mid-episode (og-marl's episode end is every agent's
    flag, so it must not split)."""
    t = get_task(task)
    n = t.num_agents
    rows = []
    for b, lengths in enumerate(ends_per_row):
        e = synthetic_episodes(t, [*lengths, tail] if tail else lengths, seed=seed + b)
        s = e.num_steps
        rng = np.random.default_rng(seed + 10 + b)
        rewards = (rng.random((s, n)) < 0.3).astype(np.float32) * 0.25
        term = np.repeat(e.terminated[:, None], n, 1).astype(np.float32)
        trunc = np.repeat(e.truncated[:, None], n, 1).astype(np.float32)
        if tail:  # the tail is unfinished
            term[-tail:] = 0
            trunc[-tail:] = 0
        term[1, 0] = 1.0  # one agent only: not an episode end
        rows.append({"observations": e.obs.astype(np.float32),
                     "actions": e.action.astype(np.int32), "rewards": rewards,
                     "terminals": term, "truncations": trunc,
                     "infos": {"legals": e.legal.astype(np.float32),
                               "state": e.obs.reshape(s, -1).astype(np.float32)}})
    lengths = {len(r["actions"]) for r in rows}
    assert len(lengths) == 1, "rows of one Vault have one length"
    out: dict = {}
    for key in rows[0]:
        if key == "infos":
            out[key] = {k: np.stack([r[key][k] for r in rows]) for k in rows[0][key]}
        else:
            out[key] = np.stack([r[key] for r in rows])
    return out


def expected_episodes(exp: dict, team: str) -> list[dict]:
    """What the lake must hold for `exp`: whole episodes per row, in row order."""
    out = []
    for b in range(exp["actions"].shape[0]):
        term = exp["terminals"][b].all(-1)
        trunc = exp["truncations"][b].all(-1)
        start = 0
        for e in np.flatnonzero(term | trunc):
            sl = slice(start, e + 1)
            r = exp["rewards"][b, sl]
            out.append({
                "obs": exp["observations"][b, sl].astype(np.int8),
                "action": exp["actions"][b, sl],
                "legal": exp["infos"]["legals"][b, sl].astype(bool),
                "reward": (r.sum(-1) if team == "sum" else r[:, 0]).astype(np.float32),
                "terminated": term[sl], "truncated": trunc[sl]})
            start = e + 1
    return out


def lake_episodes(lake: Lake, task: str, run: str) -> list[dict]:
    """The run's episodes from the lake, in checkpoint then episode order, as numpy."""
    t = get_task(task)
    steps = read_table(lake, "steps", Selection(env=t.env, tasks=[t.scenario], runs=[run]))
    steps = steps.sort_by([("checkpoint", "ascending"), ("episode", "ascending"),
                           ("step", "ascending")])
    n, f, a = t.num_agents, t.spec.obs_width, t.spec.num_actions
    s = steps.num_rows

    def flat(col):
        arr = steps[col].combine_chunks()
        while hasattr(arr, "flatten") and arr.type.num_fields:
            arr = arr.flatten()
        return arr.to_numpy(zero_copy_only=False)

    cols = {"obs": flat("obs").reshape(s, n, f), "action": flat("action").reshape(s, n),
            "legal": flat("legal").reshape(s, n, a), "reward": steps["reward"].to_numpy(),
            "terminated": steps["terminated"].to_numpy(zero_copy_only=False),
            "truncated": steps["truncated"].to_numpy(zero_copy_only=False)}
    key = np.stack([steps["checkpoint"].to_numpy(), steps["episode"].to_numpy()], 1)
    cut = np.flatnonzero((np.diff(key, axis=0) != 0).any(1)) + 1
    return [dict(zip(cols, parts, strict=True))
            for parts in zip(*(np.split(v, cut) for v in cols.values()), strict=True)]


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for k in w:
            np.testing.assert_array_equal(g[k], w[k], err_msg=k)
            assert g[k].dtype == np.asarray(w[k]).dtype or k == "action", k


def write_raw_vault(dest: Path, uid: str, exp: dict) -> Path:
    """A Vault in flashbax's layout from (B, T, ...) arrays, without flashbax."""
    flat = {k: v for k, v in exp.items() if k != "infos"}
    flat.update({f"infos.{k}": v for k, v in exp.get("infos", {}).items()})
    b = next(iter(flat.values())).shape[0]
    w = VaultWriter(dest, uid, {k: (v.shape[2:], v.dtype.name) for k, v in flat.items()},
                    batch=b)
    for row in range(b):
        w.append({k: v[row] for k, v in flat.items()}, row=row)
    return Path(w.close())


# ---------------------------------------------------------------- flashbax -> lake


def test_flashbax_vault_imports_with_every_value_equal(tmp_path):
    pytest.importorskip("flashbax")
    import flashbax as fbx
    import jax.numpy as jnp
    from flashbax.vault import Vault

    exp = og_marl_steps(LBF, [[40, 100, 37, 60], [100, 55, 23, 59]], tail=21)
    b, t = exp["actions"].shape[:2]
    buf = fbx.make_trajectory_buffer(add_batch_size=b, sample_batch_size=1,
                                     sample_sequence_length=1, period=1,
                                     min_length_time_axis=1, max_length_time_axis=t + 1)
    state = buf.init({k: (jnp.asarray(v[0, 0]) if k != "infos" else
                          {i: jnp.asarray(x[0, 0]) for i, x in v.items()})
                      for k, v in exp.items()})
    state = buf.add(state, {k: (jnp.asarray(v) if k != "infos" else
                                {i: jnp.asarray(x) for i, x in v.items()})
                            for k, v in exp.items()})
    vault = Vault("og_marl/lbf/8x8-2p-2f.vlt", experience_structure=state.experience,
                  rel_dir=str(tmp_path / "vaults"), vault_uid="Good")
    assert vault.write(state) == t

    lake = Lake(tmp_path / "lake")
    # windows of 37 steps and parts of ~150: episodes cross windows and parts split them
    res = import_vault(lake, tmp_path / "vaults/og_marl/lbf/8x8-2p-2f.vlt", LBF,
                       budget=Budget(window_steps=37, part_steps=150, cache_bytes=1 << 20))
    (r,) = res
    assert (r.uid, r.run, r.quality, r.team_reward) == ("Good", "vault-Good", "high", "sum")
    assert r.dropped_steps == 2 * 21 and r.ignored == ("infos.state",)
    assert r.parts > 1 and r.episodes == 8
    want = expected_episodes(exp, "sum")
    assert_same(lake_episodes(lake, LBF, "vault-Good"), want)
    assert verify(lake, deep=True).ok  # written through the lake's writer: a lake like any
    eps = read_table(lake, "episodes", Selection(env="lbf", runs=["vault-Good"]))
    assert set(eps["quality"].to_pylist()) == {"high"}
    np.testing.assert_allclose(
        sorted(eps["return"].to_pylist()), sorted(float(w["reward"].sum()) for w in want),
        rtol=1e-6)


# ---------------------------------------------------------------- lake -> Vault -> lake


@pytest.mark.parametrize("task", [LBF, "rware/tiny-2ag", "connector/12x12x4a"])
def test_lake_vault_lake_is_the_identity_on_the_selection(tmp_path, task, capsys):
    lake = Lake(tmp_path / "lake")
    t = get_task(task)
    for ck, q in ((0, "low"), (1, "low"), (2, "high")):
        write_episodes(lake, task, "run0", ck, q,
                       synthetic_episodes(task, [7, 12, t.time_limit], seed=ck))
    write_episodes(lake, task, "run1", 0, "low", synthetic_episodes(task, [9], seed=9))
    dest = tmp_path / "vaults" / "sable" / f"{t.scenario}.vlt"
    assert main(["--lake", str(lake.root), "export-vault", str(dest), "--task", task,
                 "--uid", "Medium", "--quality", "low", "--checkpoints", "0:1",
                 "--run", "run0"]) == 0
    assert "wrote" in capsys.readouterr().out
    selected = [e for e in lake_episodes(lake, task, "run0")][:6]  # checkpoints 0 and 1

    assert main(["--lake", str(lake.root), "import-vault", str(dest), "--task", task]) == 0
    out = capsys.readouterr().out
    assert "Medium -> run vault-Medium (quality low): 6 episodes" in out
    assert_same(lake_episodes(lake, task, "vault-Medium"), selected)


def test_flashbax_and_og_marl_read_an_exported_vault(tmp_path):
    pytest.importorskip("flashbax")
    from flashbax.vault import Vault

    lake = Lake(tmp_path / "lake")
    e = synthetic_episodes(LBF, [30, 100, 20], seed=3)
    write_episodes(lake, LBF, "run0", 0, "high", e)
    dest = tmp_path / "vaults" / "lbf" / "8x8-2p-2f.vlt"
    assert main(["--lake", str(lake.root), "export-vault", str(dest), "--task", LBF,
                 "--uid", "Good"]) == 0
    # og-marl's loaders: Vault(f"{source}/{env}/{scenario}.vlt", vault_uid=..., rel_dir=...)
    exp = Vault("lbf/8x8-2p-2f.vlt", vault_uid="Good", rel_dir=str(tmp_path / "vaults")
                ).read().experience
    s, n = e.num_steps, 2
    assert exp["observations"].shape == (1, s, n, 75)
    assert exp["infos"]["legals"].shape == (1, s, n, 6)
    assert exp["infos"]["state"].shape == (1, s, n * 75)
    np.testing.assert_array_equal(np.asarray(exp["observations"][0]), e.obs.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(exp["actions"][0]), e.action)
    np.testing.assert_array_equal(np.asarray(exp["rewards"][0]),
                                  np.repeat(e.reward[:, None], n, 1))
    np.testing.assert_array_equal(np.asarray(exp["terminals"][0]).all(-1), e.terminated)
    np.testing.assert_array_equal(np.asarray(exp["truncations"][0]).all(-1), e.truncated)
    np.testing.assert_array_equal(np.asarray(exp["infos"]["legals"][0]).astype(bool), e.legal)


# ---------------------------------------------------------------- refusals


def _cli(args: list[str], capsys) -> tuple[int, str]:
    rc = main(args)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("change, field", [
    (lambda x: x.update(observations=x["observations"][..., :70]), "observations"),
    (lambda x: x.update(actions=x["actions"][:, :, :1]), "actions"),
    (lambda x: x["infos"].update(legals=x["infos"]["legals"][..., :5]), "infos.legals"),
    (lambda x: x.pop("terminals"), "terminals"),
    (lambda x: x.update(observations=x["observations"] + 0.5), "observations"),
])
def test_a_vault_of_the_wrong_shape_is_refused_naming_the_field(tmp_path, capsys, change,
                                                                field):
    exp = og_marl_steps(LBF, [[30, 20]], tail=5)
    change(exp)
    write_raw_vault(tmp_path / "v.vlt", "Good", exp)
    lake = tmp_path / "lake"
    rc, err = _cli(["--lake", str(lake), "import-vault", str(tmp_path / "v.vlt"), "--task",
                    LBF], capsys)
    assert rc == 1
    assert err.startswith(f"sable-lake: error: {field}: ") and err.count("\n") == 1, err
    assert "lbf/8x8-2p-2f" in err
    assert not lake.exists() or not any(lake.rglob("*.parquet"))  # nothing written


def test_the_cli_refuses_in_one_line_without_a_traceback(tmp_path):
    exp = og_marl_steps("rware/tiny-2ag", [[30]], tail=3)
    write_raw_vault(tmp_path / "v.vlt", "Poor", exp)
    lake = tmp_path / "lake"
    p = subprocess.run([sys.executable, "-m", "lake_schema", "--lake", str(lake),
                        "import-vault", str(tmp_path / "v.vlt"), "--task", LBF],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert "observations: per-agent shape (66,)" in p.stderr
    assert not lake.exists()


def test_quality_comes_from_the_uid_or_the_flag(tmp_path, capsys):
    exp = og_marl_steps("rware/tiny-2ag", [[30, 20]], tail=0)
    exp["rewards"][:] = exp["rewards"][..., :1]  # rware's reward is shared
    for uid in ("Good", "Medium", "Replay"):
        write_raw_vault(tmp_path / "v.vlt", uid, exp)
    root = str(tmp_path / "lake")
    rc, err = _cli(["--lake", root, "import-vault", str(tmp_path / "v.vlt"), "--task",
                    "rware/tiny-2ag"], capsys)
    assert rc == 1 and "uid 'Replay' is not an og-marl tier" in err
    assert main(["--lake", root, "import-vault", str(tmp_path / "v.vlt"), "--task",
                 "rware/tiny-2ag", "--uid", "Good", "--uid", "Medium", "--run", "og"]) == 0
    assert main(["--lake", root, "import-vault", str(tmp_path / "v.vlt"), "--task",
                 "rware/tiny-2ag", "--uid", "Replay", "--quality", "high"]) == 0
    eps = read_table(Lake(root), "episodes", Selection(env="rware"))
    got = set(zip(eps["run"].to_pylist(), eps["quality"].to_pylist(), strict=True))
    assert got == {("og-Good", "high"), ("og-Medium", "low"), ("vault-Replay", "high")}
    capsys.readouterr()
    rc, err = _cli(["--lake", root, "import-vault", str(tmp_path / "v.vlt"), "--task",
                    "rware/tiny-2ag", "--uid", "Replay", "--quality", "high"], capsys)
    assert rc == 1 and "already in the lake; pass --replace" in err
    # agents' rewards that differ cannot be rware's shared reward
    exp["rewards"][0, 3, 1] += 1
    write_raw_vault(tmp_path / "w.vlt", "Good", exp)
    rc, err = _cli(["--lake", root, "import-vault", str(tmp_path / "w.vlt"), "--task",
                    "rware/tiny-2ag", "--run", "w"], capsys)
    assert rc == 1 and err.startswith("sable-lake: error: rewards: ")
    assert read_table(Lake(root), "episodes", Selection(env="rware", runs=["w"])).num_rows == 0


def test_a_shared_reward_stored_per_agent_needs_team_reward(tmp_path, capsys):
    """lbf's default rule sums the agents' rewards; a Vault whose agents hold the same reward
    at every step holds a team reward stored per agent, which the sum would double. The
    import refuses it in one line naming --team-reward (exit 2, nothing written) until the
    flag says how to combine; rewards that are all zero are the same by any rule."""
    exp = og_marl_steps(LBF, [[30, 20]], tail=0)
    exp["rewards"][:] = exp["rewards"][..., :1]
    write_raw_vault(tmp_path / "v.vlt", "Good", exp)
    root = tmp_path / "lake"
    args = ["--lake", str(root), "import-vault", str(tmp_path / "v.vlt"), "--task", LBF]
    p = subprocess.run([sys.executable, "-m", "lake_schema", *args], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2 and p.stdout == "", p.stdout
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("sable-lake: error: rewards: ")
    assert "equal across the 2 agents" in p.stderr and "--team-reward shared" in p.stderr
    assert not root.exists()
    assert main([*args, "--team-reward", "shared"]) == 0
    assert_same(lake_episodes(Lake(root), LBF, "vault-Good"), expected_episodes(exp, "shared"))
    assert main([*args, "--team-reward", "sum", "--run", "summed"]) == 0
    assert_same(lake_episodes(Lake(root), LBF, "summed"), expected_episodes(exp, "sum"))
    exp["rewards"][:] = 0
    write_raw_vault(tmp_path / "zero.vlt", "Good", exp)
    (r,) = import_vault(Lake(root), tmp_path / "zero.vlt", LBF, run="zero")
    assert r.team_reward == "sum"


# ---------------------------------------------------------------- memory and JAX


def test_lake_schema_vault_does_not_import_jax(tmp_path):
    exp = og_marl_steps(LBF, [[30]], tail=0)
    write_raw_vault(tmp_path / "v.vlt", "Good", exp)
    code = textwrap.dedent(f"""
        import sys
        from lake_schema.storage import Lake
        from lake_schema.vault import import_vault, export_vault
        import_vault(Lake({str(tmp_path / "lake")!r}), {str(tmp_path / "v.vlt")!r},
                     {LBF!r})
        export_vault(Lake({str(tmp_path / "lake")!r}), {str(tmp_path / "out")!r}, {LBF!r},
                     "Good")
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "flax")))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


_MEASURE = """
import json, sys
from lake_schema.storage import Lake
from lake_schema.vault import import_vault
lake, big, small, task, budget = sys.argv[1:6]

def peak():  # VmHWM, bytes: this process's own peak (ru_maxrss keeps the forking parent's)
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM")) * 1024

# The baseline: the peak of importing a few parts' worth of steps with the same budget:
# every fixed cost (libraries, thread pools, delta-rs' writer on full parts), no more.
import_vault(Lake(lake), small, task, run="warm", memory_bytes=int(budget))
base = peak()
(r,) = import_vault(Lake(lake), big, task, memory_bytes=int(budget))
bounded = peak() - base
# control: the same Vault with a budget larger than it (one window, one part)
(c,) = import_vault(Lake(lake), big, task, run="control", memory_bytes=4 << 30)
print(json.dumps({"bounded": bounded, "control": peak() - base, "base": base,
                  "steps": r.steps, "parts": r.parts, "control_parts": c.parts,
                  "window_steps": r.window_steps, "part_steps": r.part_steps}))
"""


def test_a_vault_larger_than_the_memory_cap_imports_under_it(tmp_path):
    """A 96 MiB Vault (decoded) imports with a 16 MiB budget in a fresh process whose
    peak RSS ends less than 48 MiB (half the Vault) above the peak of importing a few
    parts' worth (24,000 steps) the same way: memory does not grow with the Vault (the
    growth there is, 20-35 MiB, is the lake's commits warming up; it levels off). The same
    process then imports it with a budget larger than the Vault (one window, one part):
    the measure must see that one go over the Vault's size, or it measures nothing."""
    task = LBF
    small = og_marl_steps(task, [[100] * 240], tail=0)
    write_raw_vault(tmp_path / "small.vlt", "Good", small)
    # the big Vault, written window by window so this process stays small too
    flat_shapes = {"observations": ((2, 75), "float32"), "actions": ((2,), "int32"),
                   "rewards": ((2,), "float32"), "terminals": ((2,), "float32"),
                   "truncations": ((2,), "float32"), "infos.legals": ((2, 6), "float32")}
    w = VaultWriter(tmp_path / "big.vlt", "Good", flat_shapes)
    step_bytes = 2 * 75 * 4 + 4 * 8 + 2 * 6 * 4
    total = (96 << 20) // step_bytes // 100 * 100
    for start in range(0, total, 10_000):
        e = og_marl_steps(task, [[100] * 100], tail=0, seed=start)
        w.append({k: v[0] for k, v in e.items() if k != "infos"}
                 | {"infos.legals": e["infos"]["legals"][0]})
        if w.steps >= total:
            break
    w.close()
    decoded = w.steps * step_bytes
    assert decoded >= 96 << 20
    cap = decoded // 2
    p = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path / "lake"),
                        str(tmp_path / "big.vlt"), str(tmp_path / "small.vlt"), task,
                        str(16 << 20)], capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout.strip().splitlines()[-1])
    assert m["steps"] == w.steps and m["parts"] > 1 and m["control_parts"] == 1
    # what the importer held at once: a window of the Vault, a part for the writer
    budget = 16 << 20
    assert m["window_steps"] * step_bytes <= budget // 16
    assert m["part_steps"] <= budget // 32 // 186 + m["window_steps"] + get_task(task).time_limit
    assert m["bounded"] < cap, f"peak RSS grew {m['bounded'] / 2**20:.1f} MiB"
    assert m["control"] > decoded, f"control grew only {m['control'] / 2**20:.1f} MiB"


def test_a_failure_while_streaming_removes_the_parts_already_written(tmp_path):
    exp = og_marl_steps(LBF, [[40, 30, 50, 60]], tail=0)
    exp["actions"][0, 150, 1] = 9  # lbf has 6 actions: found in the last window
    write_raw_vault(tmp_path / "v.vlt", "Good", exp)
    lake = Lake(tmp_path / "lake")
    write_episodes(lake, LBF, "other", 0, "low", synthetic_episodes(LBF, [10]))
    small = Budget(window_steps=50, part_steps=60, cache_bytes=1 << 20)
    written = []
    with pytest.raises(LakeValueError, match=r"^actions: actions must be in \[0, 6\)"):
        import_vault(lake, tmp_path / "v.vlt", LBF, budget=small,
                     progress=written.append)
    assert written  # parts were committed before the bad value was met...
    runs = read_table(lake, "episodes", Selection(env="lbf"), columns=["run"])
    assert set(runs["run"].to_pylist()) == {"other"}  # ...and removed again


def test_an_episode_over_the_time_limit_is_refused_and_replace_reimports(tmp_path, capsys):
    exp = og_marl_steps(LBF, [[40, 30]], tail=0)
    write_raw_vault(tmp_path / "ok.vlt", "Good", exp)
    root = str(tmp_path / "lake")
    for _ in range(2):
        assert main(["--lake", root, "import-vault", str(tmp_path / "ok.vlt"), "--task", LBF,
                     "--replace"]) == 0
    eps = read_table(Lake(root), "episodes", Selection(env="lbf"))
    assert eps.num_rows == 2  # replaced, not doubled
    never = og_marl_steps(LBF, [[100, 100, 50]], tail=0)
    never["truncations"][:] = 0
    never["terminals"][:] = 0
    write_raw_vault(tmp_path / "never.vlt", "Good", never)
    capsys.readouterr()
    rc, err = _cli(["--lake", root, "import-vault", str(tmp_path / "never.vlt"), "--task",
                    LBF, "--run", "never"], capsys)
    assert rc == 1 and err.startswith("sable-lake: error: terminals: no terminal or "
                                      "truncation flag within the time limit 100")


def test_connector_per_agent_rewards_import_as_their_mean(tmp_path):
    """Mava's connector Vaults hold Jumanji's per-agent rewards; the lake's team reward is
    their mean (the catalogue's rule, `DEFAULT_TEAM_REWARD`), or the sum when asked."""
    task = "connector/12x12x4a"
    exp = og_marl_steps(task, [[30, 20]], tail=0)
    exp["observations"] = exp["observations"].astype(np.float32)
    write_raw_vault(tmp_path / "v.vlt", "Good", exp)
    lake = Lake(tmp_path / "lake")
    (r,) = import_vault(lake, tmp_path / "v.vlt", task)
    assert r.team_reward == "mean"
    rewards = exp["rewards"][0]  # [T, N]
    got = np.concatenate([e["reward"] for e in lake_episodes(lake, task, "vault-Good")])
    np.testing.assert_allclose(got, rewards.mean(-1), rtol=1e-6)
    (r,) = import_vault(lake, tmp_path / "v.vlt", task, run="summed", team_reward="sum")
    got = np.concatenate([e["reward"] for e in lake_episodes(lake, task, "summed")])
    np.testing.assert_allclose(got, rewards.sum(-1), rtol=1e-6)
