"""The attack (issue #30) at a small size: writers SIGKILLed between or inside their three
commits, writers racing, and a reader looping while a writer replaces one key, on a local
root and on the S3 server. Every read goes through `read_table`, the DuckDB views and
Polars (following the episodes index), and must show one whole write; a failure names the
reads that did not (`AttackCounts.findings`). benchmarks/lake_attack.py runs the full size.
"""

from __future__ import annotations

import numpy as np
import pytest

from lake_schema import stress

NO_FAILURES = dict.fromkeys(stress.FAILURES, 0)


# a write to the S3 server takes seconds, so there the test kills once, at the point that
# matters most (the steps committed, the index not), and is still slow
@pytest.fixture(params=["local", pytest.param("s3", marks=[pytest.mark.s3, pytest.mark.slow])])
def any_lake(request, lake):
    if request.param == "local":
        return lake
    return request.getfixturevalue("s3_lake")


def _held(counts: stress.AttackCounts) -> None:
    assert counts.trials > 0 and counts.reads > 0, counts
    assert counts.failures == NO_FAILURES, "\n".join(counts.findings)


def test_the_checker_sees_a_mixed_read():
    """The steps of one write under the index of another are caught, even when the two
    writes have the same episode lengths (then only the values differ)."""
    task, seed = stress.KILL_TASK, 3
    twin = next(s for s in range(seed + 1, 200)
                if stress.payload(task, s).lengths.tolist()
                == stress.payload(task, seed).lengths.tolist())

    def read(index_seed: int, steps_seed: int) -> int | None:
        index = stress.payload(task, index_seed)
        steps = stress.payload(task, steps_seed)
        rows = [(e, int(n), index_seed) for e, n in enumerate(index.lengths)]
        episode = np.repeat(np.arange(len(steps.lengths)), steps.lengths)
        step = np.concatenate([np.arange(n) for n in steps.lengths])
        return stress.judge_read(task, rows, episode, step, steps.reward, steps.obs.ravel())

    assert read(seed, seed) == seed
    for other in (seed + 1, twin):
        with pytest.raises(stress.MixedRead):
            read(seed, other)


def test_killed_writers_leave_every_reader_one_whole_write(ctx, any_lake):
    kills = 1 if any_lake.is_s3 else len(stress.KILL_POINTS)
    counts = stress.attack_kills(any_lake, kills, ctx=ctx)
    _held(counts)
    # at least one kill fell between the first and the last of the three commits
    between = set(counts.tally) - {"killed before its steps commit",
                                   "killed after its steps + episodes + cards commits"}
    assert between, counts.tally


def test_parallel_writers_lose_nothing(ctx, lake):
    _held(stress.attack_parallel_writers(lake, stress.SMALL, ctx=ctx))


@pytest.mark.s3
@pytest.mark.slow
def test_parallel_writers_lose_nothing_on_s3(ctx, s3_lake):
    _held(stress.attack_parallel_writers(s3_lake, stress.SMALL, ctx=ctx))


def test_a_reader_during_replacements_never_sees_a_mix(ctx, lake):
    size = stress.SMALL
    counts = stress.attack_readers(lake, size.replacements, size.readers, size.stall_every,
                                   ctx=ctx)
    _held(counts)
    assert counts.tally["stalls between the steps and index commits"] > 0, counts.tally
