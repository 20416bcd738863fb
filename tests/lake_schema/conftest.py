"""Fixtures of the lake's crash and concurrency tests."""

from __future__ import annotations

import time

import pytest

from lake_schema import stress


@pytest.fixture(scope="session")
def ctx():
    """The forkserver context writer and reader processes start from, already started (the
    first start costs an interpreter; every later one is a fork)."""
    ctx = stress.context()
    warm = ctx.Process(target=time.sleep, args=(0,))
    warm.start()
    warm.join()
    return ctx
