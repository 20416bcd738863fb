"""Shared fixtures: temporary lakes (local and on a real S3 server on 127.0.0.1), compiled
programs dropped after each test module, and the long tests' modules started first."""

from __future__ import annotations

import collections
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lake_schema.storage import Lake, S3Options
from pipelines.screenshots import free_port

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with `long(seconds)` tests first, the longest first; the rest keep their order.

    Why: `make test` hands whole modules to pytest-xdist's workers in collection order
    (`--dist loadscope --no-loadscope-reorder`). xdist's default order (most tests first)
    put the one-test modules that run for minutes (the demo chain, the pinned runs) last, so
    one worker ran them alone while the other idled. The seconds are rough figures from a
    2-core machine (`benchmarks/suite_profile.py`); a stale one only costs speed."""
    weight: collections.Counter[Path] = collections.Counter()
    for item in items:
        if (mark := item.get_closest_marker("long")) is not None:
            weight[item.path] += mark.args[0]
    items.sort(key=lambda item: -weight[item.path])  # stable


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs() -> Iterator[None]:
    """Compilation is shared within a module; after it, its programs go, or the suite's
    process runs out of memory maps (see trainer.compiled). JAX-free modules stay JAX-free."""
    yield
    compiled = sys.modules.get("trainer.compiled")
    if compiled is not None:
        compiled.clear()


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(tmp_path / "lake")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Options]:
    """A real S3-speaking HTTP server (moto) on loopback, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield S3Options(
        endpoint_url=f"http://127.0.0.1:{port}",
        key="testing",
        secret="testing-secret",
        region="eu-west-1",
        addressing_style="path",
    )
    server.stop()


@pytest.fixture
def s3_lake(s3_server: S3Options) -> Lake:
    """A lake under a fresh bucket on the local S3 server."""
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    lake = Lake(f"s3://{bucket}/prefix", s3=s3_server)
    lake.fs.mkdir(bucket)
    return lake
