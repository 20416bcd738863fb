"""The rules of `lake_schema.checks` as Dagster asset-check results: the only glue between
a rule and a check."""

import dagster as dg

from lake_schema.checks import Outcome


def check_result(outcome: Outcome, markdown: tuple[str, ...] = ()) -> dg.AssetCheckResult:
    """A rule's outcome as Dagster's check result (the `markdown` entries rendered as such)."""
    metadata = {k: dg.MetadataValue.md(v) if k in markdown else v
                for k, v in outcome.metadata.items()}
    return dg.AssetCheckResult(passed=outcome.passed, metadata=metadata)
