"""The lake maintenance job compacts and vacuums every table through the lake resource."""

from lake_schema.reader import list_files, read_table
from lake_schema.synthetic import synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import write_episodes, write_records
from pipelines.definitions import defs
from pipelines.jobs import maintain_lake
from pipelines.resources import default_resources


def test_maintain_lake_compacts_and_vacuums(lake):
    write_episodes(lake, "lbf/8x8-2p-2f", "r", 0, "low", synthetic_episodes("lbf/8x8-2p-2f", [4]))
    write_episodes(lake, "lbf/8x8-2p-2f", "r", 0, "low", synthetic_episodes("lbf/8x8-2p-2f", [5]))
    part = {"env": "lbf", "task": "12x12-4p-5f", "model": "m"}
    for update in range(3):
        write_records(lake, "evaluations", part, [{
            "algorithm": "bc", "split": "test", "update": update, "episodes": 2,
            "mean_return": 0.1, "std_return": 0.0, "normalised_return": 0.1,
            "reference_return": 1.0, "config": "{}", "evaluated_at": None}],
            replace_rows={"update": update})
    assert maintain_lake.name in {j.name for j in defs.resolve_all_job_defs()}
    result = maintain_lake.execute_in_process(
        resources=default_resources(lake.root),
        run_config={"ops": {"compact_and_vacuum": {"config": {"retention_hours": 0}}}})
    assert result.success
    assert len(list_files(lake, "evaluations")) == 1
    assert read_table(lake, "evaluations").num_rows == 3
    assert verify(lake, deep=True).ok
