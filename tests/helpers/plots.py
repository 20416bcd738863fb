"""Checks of a plot published as asset metadata (`pipelines.plots.publish_png`)."""

from __future__ import annotations

import re

from lake_schema.storage import Lake
from pipelines.plots import INLINE_MARKDOWN_LIMIT, REPORTS_DIR, reports_url


def assert_published(lake: Lake, value: str, alt: str) -> bytes:
    """`value` is a markdown image short enough to show inline, pointing at a PNG that is in
    the lake's reports/plots/ under the reports URL; returns the PNG."""
    match = re.fullmatch(rf"!\[{re.escape(alt)}\]\({re.escape(reports_url())}/"
                         r"(plots/[0-9a-f]{16}\.png)\)", value)
    assert match, value
    assert len(value) < INLINE_MARKDOWN_LIMIT
    png = lake.fs.cat_file(lake.path(f"{REPORTS_DIR}/{match.group(1)}"))
    assert png.startswith(b"\x89PNG")
    return png
