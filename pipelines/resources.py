"""Resources: every external system the assets touch, configured in one place."""


import dagster as dg
from pydantic import Field

from lake_schema.storage import Lake, S3Options


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
