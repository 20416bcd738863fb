import dataclasses
from pathlib import Path

import pytest

from lake_schema.catalogue import (
    ENVS,
    TASKS,
    UnknownTaskError,
    get_task,
    split_tasks,
    task_names,
)


def test_catalogue_has_the_papers_52_tasks_with_disjoint_splits():
    assert len(TASKS) == 52
    counts = {env: (len(split_tasks(env, "train")), len(split_tasks(env, "test"))) for env in ENVS}
    assert counts == {"lbf": (5, 4), "rware": (15, 7), "connector": (10, 11)}
    for env in ENVS:
        train = {t.name for t in split_tasks(env, "train")}
        test = {t.name for t in split_tasks(env, "test")}
        assert not train & test
        assert train | test == set(task_names(env))
        demo = {t.name for t in split_tasks(env, "demo-train") + split_tasks(env, "demo-test")}
        assert demo <= set(task_names(env))
        assert not {t.name for t in split_tasks(env, "demo-train")} & {
            t.name for t in split_tasks(env, "demo-test")}


def test_generator_parameters_follow_the_design():
    lbf = get_task("lbf/17x17-8p-10f")
    assert dict(lbf.generator) == {
        "grid_size": 17, "num_agents": 8, "num_food": 10, "fov": 2, "max_agent_level": 2}
    assert lbf.time_limit == 100
    rware = get_task("rware/medium-16ag")
    assert dict(rware.generator) == {
        "shelf_rows": 2, "shelf_columns": 5, "column_height": 8, "num_agents": 16,
        "sensor_range": 1, "request_queue_size": 16}
    assert rware.time_limit == 500
    assert get_task("rware/titanic-8ag").note  # project-defined layouts say so
    for t in TASKS.values():
        if t.env == "rware":
            assert t.generator["shelf_columns"] % 2 == 1
    conn = get_task("connector/72x72x45a")
    assert dict(conn.generator) == {"grid_size": 72, "num_agents": 45}
    # 40 on every grid: the largest limit whose discounted returns-to-go (mean team reward)
    # always fit the value support [-1, 1] (the catalogue's comment)
    assert {t.time_limit for t in TASKS.values() if t.env == "connector"} == {40}


def test_env_specs_declare_padding_and_widths():
    assert {e: s.max_agents for e, s in ENVS.items()} == {"lbf": 8, "rware": 32, "connector": 45}
    assert {e: s.obs_width for e, s in ENVS.items()} == {"lbf": 75, "rware": 66, "connector": 54}
    assert ENVS["rware"].value_support == (-20.0, 20.0)


def test_env_specs_name_every_feature_and_action_once():
    """One distinct name per observation feature and per action, in Jumanji's action order
    (what each name means is checked on real observations in tests/trainer)."""
    for spec in ENVS.values():
        assert len(spec.obs_features) == spec.obs_width, spec.name
        assert len(set(spec.obs_features)) == spec.obs_width, spec.name
        assert len(spec.action_names) == len(set(spec.action_names)) == spec.num_actions
    assert ENVS["lbf"].action_names == ("noop", "up", "down", "left", "right", "load")
    assert ENVS["rware"].action_names == ("noop", "forward", "turn_left", "turn_right",
                                          "toggle_load")
    assert ENVS["connector"].action_names == ("noop", "up", "right", "down", "left")
    lbf = ENVS["lbf"].obs_features  # [3 channels, 5 rows, 5 cols], channel-major
    assert (lbf[0], lbf[12], lbf[25 + 7], lbf[74]) == (
        "agent_level(-2,-2)", "agent_level(+0,+0)", "food_level(-1,+0)", "accessible(+2,+2)")
    rware = ENVS["rware"].obs_features  # own 8, 8 neighbours x 5, 9 cells x 2
    assert rware[:8] == ("self_row", "self_col", "self_carrying", "self_facing_up",
                         "self_facing_right", "self_facing_down", "self_facing_left",
                         "self_on_highway")
    assert (rware[8], rware[8 + 4 * 5], rware[48 + 4 * 2 + 1]) == (
        "agent(-1,-1)", "agent(+0,+1)", "shelf_requested(+0,+0)")
    connector = ENVS["connector"].obs_features
    assert connector[:4] == ("head_row", "head_col", "target_row", "target_col")
    assert (connector[4 + 12], connector[29 + 24]) == ("blocker(+0,+0)", "target(+2,+2)")


def test_an_env_spec_with_names_of_the_wrong_length_is_refused():
    spec = ENVS["lbf"]
    with pytest.raises(ValueError, match="74 feature names for width 75"):
        dataclasses.replace(spec, obs_features=spec.obs_features[:-1])


def test_unknown_names_suggest_the_closest():
    with pytest.raises(UnknownTaskError, match=r"lbf/8x8-2p-3f.*did you mean lbf/8x8-2p-2f"):
        get_task("lbf/8x8-2p-3f")
    with pytest.raises(UnknownTaskError, match=r"unknown environment 'lbff'.*lbf"):
        get_task("lbff/8x8-2p-2f")
    with pytest.raises(UnknownTaskError, match="tiny-2ag"):
        get_task("rware/tiny-2agg")
    with pytest.raises(UnknownTaskError, match=r"unknown split of lbf 'tran'.*train"):
        split_tasks("lbf", "tran")


def test_return_bounds():
    assert get_task("lbf/8x8-2p-2f").return_bounds() == (0.0, 1.0)
    # connector's team reward is the mean over agents: all connect sums to 1, none to -0.03
    # per step of the time limit
    lo, hi = get_task("connector/12x12x4a").return_bounds()
    assert lo == pytest.approx(-0.03 * 40) and hi == 1.0


def test_connector_worst_case_return_to_go_fits_the_value_support():
    """No connector episode can have a discounted return-to-go outside [-1, 1]: the lowest is
    -0.03 on every step of a whole episode, the highest every agent's +1 / N at once."""
    task = get_task("connector/24x24x6a")
    lo, hi = task.spec.value_support
    worst = -0.03 * (1 - 0.99 ** task.time_limit) / (1 - 0.99)
    assert lo <= worst < lo + 0.01  # 40 is the largest limit that fits (-0.993)
    assert -0.03 * (1 - 0.99 ** (task.time_limit + 1)) / (1 - 0.99) < lo
    assert task.return_bounds()[1] <= hi


def test_lake_root_resolution(monkeypatch, tmp_path):
    from lake_schema.storage import Lake, S3Options, resolve_root

    monkeypatch.delenv("SABLE_LAKE", raising=False)
    assert resolve_root() == str(Path("lake").resolve())
    monkeypatch.setenv("SABLE_LAKE", str(tmp_path / "elsewhere"))
    assert Lake().root == str(tmp_path / "elsewhere")
    assert Lake(tmp_path / "explicit").root == str(tmp_path / "explicit")  # argument wins
    assert resolve_root("s3://bucket/some/prefix/") == "s3://bucket/some/prefix"
    for bad in ("s3://", "gs://bucket/x"):
        with pytest.raises(ValueError, match="bad lake root"):
            resolve_root(bad)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    opts = Lake("s3://b/p", s3=S3Options(region="eu-west-1")).s3_options
    assert opts.endpoint_url == "http://127.0.0.1:9" and opts.region == "eu-west-1"
    assert opts.secret == "s3cr3t" and "s3cr3t" not in repr(opts)
