"""The same lake on a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import pytest

from lake_schema.cards import dataset_cards
from lake_schema.catalogue import get_task
from lake_schema.duck import connect
from lake_schema.reader import Selection, list_files, read_table, table_versions
from lake_schema.storage import Lake
from lake_schema.testing import synthetic_episodes
from lake_schema.verify import verify
from lake_schema.writer import write_episodes, write_reference

pytestmark = pytest.mark.s3
LBF = "lbf/8x8-2p-2f"


def test_round_trip_views_and_verify_on_s3(s3_lake):
    lake = s3_lake
    assert lake.is_s3 and lake.url("steps").startswith("s3://")
    for ck in range(2):
        write_episodes(lake, LBF, "run0", ck, "low", synthetic_episodes(LBF, [4, 5], seed=ck))
    write_episodes(lake, LBF, "run0", 1, "high", synthetic_episodes(LBF, [3], seed=9))  # replace
    write_reference(lake, LBF, "run0", sable_returns=[0.8], random_returns=[0.1], env_steps=1)

    steps = read_table(lake, "steps", Selection(env="lbf"))
    assert steps.num_rows == 9 + 3
    eps = read_table(lake, "episodes", Selection(env="lbf", quality="high"))
    assert eps["length"].to_pylist() == [3]

    con = connect(lake)
    by_quality = con.execute(
        "select quality, count(*) from steps group by quality order by quality").fetchall()
    assert by_quality == [("high", 3), ("low", 9)]
    assert con.execute('select sable_return from "references"').fetchone()[0] == 0.8
    assert con.execute("select sum(length) from episodes").fetchone()[0] == 12

    report = verify(lake, deep=True)
    assert report.ok and report.files == 7, report.problems  # 2 checkpoints x 3 tables + refs
    assert table_versions(lake) == {"steps/lbf": 3, "episodes": 3, "cards": 3, "references": 1}
    (card,) = dataset_cards(lake, get_task(LBF))  # the cards table on S3, current ones only
    assert (card.episodes, card.steps, card.reference["sable_return"]) == (3, 12, 0.8)
    rel = list_files(lake, "episodes")[0]
    lake.fs.pipe_file(lake.path(rel), b"not parquet")
    assert [p.path for p in verify(lake).problems] == [rel]


def test_failed_s3_write_leaves_nothing_visible(s3_lake, monkeypatch):
    import lake_schema.delta as delta

    lake = s3_lake
    write_episodes(lake, LBF, "run0", 0, "low", synthetic_episodes(LBF, [4]))
    versions = table_versions(lake)

    def crash(*a, **k):
        raise RuntimeError("injected crash before commit")

    monkeypatch.setattr(delta, "write_deltalake", crash)
    with pytest.raises(RuntimeError):
        write_episodes(lake, LBF, "run0", 1, "low", synthetic_episodes(LBF, [6]))
    assert read_table(lake, "steps", Selection(env="lbf")).num_rows == 4
    assert table_versions(lake) == versions


def test_a_server_without_conditional_puts_is_refused(s3_lake, monkeypatch):
    from lake_schema.errors import S3SafetyError

    lake = s3_lake
    real = type(lake.fs).call_s3

    def ignore_if_none_match(self, method, *a, **k):
        k.pop("IfNoneMatch", None)  # what a server without conditional puts does
        return real(self, method, *a, **k)

    monkeypatch.setattr(type(lake.fs), "call_s3", ignore_if_none_match)
    with pytest.raises(S3SafetyError, match="If-None-Match"):
        write_episodes(lake, LBF, "run0", 0, "low", synthetic_episodes(LBF, [4]))
    assert lake.find("") == []


def test_a_missing_bucket_is_an_error_for_readers(s3_server):
    from lake_schema.errors import LakeRootError

    with pytest.raises(LakeRootError, match="no such bucket"):
        read_table(Lake("s3://no-such-bucket-x/lake", s3=s3_server), "episodes")


def test_credentials_are_never_printed(s3_server):
    lake = Lake("s3://some-bucket/x", s3=s3_server)
    assert "testing-secret" not in repr(lake) + repr(lake.s3_options)
