"""Shared fixtures: temporary lakes (local and on a real S3 server on 127.0.0.1), and compiled
programs dropped after each test module."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from lake_schema.storage import Lake, S3Options
from pipelines.screenshots import free_port

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Runs that write under the models root by default (online runs' TensorBoard curves) write in
# a temporary folder, never in the checkout's ./models.
os.environ.setdefault("SABLE_LAKE_MODELS", tempfile.mkdtemp(prefix="sable-test-models-"))


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
