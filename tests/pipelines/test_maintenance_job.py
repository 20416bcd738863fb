"""The lake maintenance job compacts and vacuums every table through the lake resource."""

from lake_schema.reader import list_files, read_table
from lake_schema.testing import add_evaluation_updates, synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import write_episodes
from pipelines.definitions import defs
from pipelines.jobs import maintain_lake
from pipelines.resources import default_resources


def test_maintain_lake_compacts_and_vacuums(lake):
    write_episodes(lake, "lbf/8x8-2p-2f", "r", 0, "low", synthetic_episodes("lbf/8x8-2p-2f", [4]))
    write_episodes(lake, "lbf/8x8-2p-2f", "r", 0, "low", synthetic_episodes("lbf/8x8-2p-2f", [5]))
    add_evaluation_updates(lake, "m")
    assert maintain_lake.name in {j.name for j in defs.resolve_all_job_defs()}
    result = maintain_lake.execute_in_process(
        resources=default_resources(lake.root),
        run_config={"ops": {"compact_and_vacuum": {"config": {"retention_hours": 0}}}})
    assert result.success
    assert len(list_files(lake, "evaluations")) == 1
    assert read_table(lake, "evaluations").num_rows == 3
    assert verify(lake, deep=True).ok
