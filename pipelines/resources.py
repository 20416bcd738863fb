"""Resources: every external system the assets touch, configured in one place."""

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from lake_schema.storage import Lake, S3Options

COMPUTE_ENV = "SABLE_COMPUTE"


class LakeResource(dg.ConfigurableResource):
    """The dataset lake: a local folder or s3://bucket/prefix.

    Unset fields fall back to $SABLE_LAKE (root) and the AWS_* variables (S3), so the same
    definitions run on a laptop and on a cluster without edits.
    """

    root: str | None = Field(default=None, description="lake root; default $SABLE_LAKE or ./lake")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint URL")
    region: str | None = None
    addressing_style: str | None = Field(default=None, description="'path' or 'virtual'")

    def lake(self) -> Lake:
        s3 = S3Options(
            endpoint_url=self.endpoint_url,
            region=self.region,
            addressing_style=self.addressing_style,
        )
        return Lake(self.root, s3=s3)


class ComputeError(RuntimeError):
    """The configured compute is not on this host (e.g. platform 'gpu' on a CPU machine)."""


class ComputeResource(dg.ConfigurableResource):
    """Where a run's JAX work goes: the CPU or this host's GPUs, and how many of them.

    Online Sable and evaluation run on the first selected device; offline training is
    data-parallel over all of them. A run asking for hardware the host lacks fails before any
    compute, naming `compute.platform` / `compute.num_devices`. JAX is imported only when a
    run asks for its devices, so loading the definitions stays JAX-free.
    """

    platform: Literal["auto", "cpu", "gpu"] = Field(
        default_factory=lambda: os.environ.get(COMPUTE_ENV, "auto"),
        description="'cpu', 'gpu', or 'auto' (GPUs when JAX sees any); default $SABLE_COMPUTE",
    )
    num_devices: int = Field(default=0, ge=0, description="devices to use; 0 = all of them")

    def devices(self) -> list[Any]:
        import jax

        platform = self.platform
        if platform == "auto":
            platform = "gpu" if any(d.platform == "gpu" for d in jax.devices()) else "cpu"
        try:
            found = jax.local_devices(backend=platform)
        except RuntimeError as err:
            have = sorted({d.platform for d in jax.devices()})
            raise ComputeError(
                f"compute.platform is {self.platform!r} but JAX has no {platform} backend on "
                f"this host (it has: {', '.join(have)}; JAX_PLATFORMS="
                f"{os.environ.get('JAX_PLATFORMS', '')!r}): {err}"
            ) from err
        if self.num_devices > len(found):
            raise ComputeError(
                f"compute.num_devices is {self.num_devices} but this host has {len(found)} "
                f"{platform} device(s)"
            )
        return found[: self.num_devices or len(found)]

    @contextlib.contextmanager
    def placed(self) -> Iterator[list[Any]]:
        """Run the block's JAX computations on the first selected device; yields them all."""
        import jax

        devices = self.devices()
        with jax.default_device(devices[0]):
            yield devices


def default_resources(lake_root: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources every asset needs: the lake (at `lake_root`, else $SABLE_LAKE) and
    compute. (No asset passes a value to another: each reads the lake, or its model's run
    directory by partition key.)"""
    return {"lake": LakeResource(root=lake_root), "compute": ComputeResource()}
