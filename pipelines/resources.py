"""Resources: every external system the assets touch, configured in one place."""

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from lake_schema.storage import Lake, S3Options, write_atomic

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


class RunScopedIOManager(dg.ConfigurableIOManager):
    """Asset values passed between steps (`offline_model`'s reference to its run directory:
    small JSON), kept per run under the Dagster instance's storage folder.

    Why: Dagster's default filesystem IO manager keeps one file per asset, so of two
    `train_and_evaluate` runs side by side, one would evaluate the model the other trained.
    Here a step reads the value its own run produced; a run that did not produce the asset
    (an evaluation launched alone) reads the value last produced by any run."""

    def _folder(self, context: dg.InputContext | dg.OutputContext) -> Path:
        storage = context.step_context.instance.storage_directory()
        return Path(storage, "run_scoped", *context.asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        folder = self._folder(context)
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(obj)
        for name in (f"{context.run_id}.json", "latest.json"):  # each replaced whole
            write_atomic(folder / name, text)

    def load_input(self, context: dg.InputContext) -> Any:
        folder = self._folder(context)
        for name in (f"{context.step_context.run_id}.json", "latest.json"):
            if (folder / name).exists():
                return json.loads((folder / name).read_text())
        raise dg.Failure(f"{context.asset_key.to_user_string()} has no value in this Dagster "
                         "instance yet: materialise it first")


def default_resources(lake_root: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources every asset needs: the lake (at `lake_root`, else $SABLE_LAKE), compute,
    and the IO manager of the values passed between steps."""
    return {"lake": LakeResource(root=lake_root), "compute": ComputeResource(),
            "io_manager": RunScopedIOManager()}
