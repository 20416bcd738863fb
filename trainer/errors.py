"""Every error type the trainer raises on purpose, in one place.

Bad input is a `ValueError` (subclasses name what kind), raised before any compilation or
environment step; a missing reference is a `LookupError` (defined beside the rule that reads
references, `lake_schema.checks`, and re-exported here); a diverged run is a
`FloatingPointError` naming its last good checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from lake_schema.errors import MissingReferenceError


class SelectionError(ValueError):
    """A task list, split or dataset selection that names unknown things, mixes environments,
    or selects nothing."""


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN/inf; names the update and the last good checkpoint."""

    def __init__(self, update: int, values: dict, last_good: int | None, run_dir: Path):
        self.update, self.values, self.last_good, self.run_dir = update, values, last_good, run_dir
        where = (f"the last good checkpoint is update {last_good} in {run_dir}"
                 if last_good is not None else "no checkpoint had been written yet")
        super().__init__(f"non-finite loss at update {update} "
                         f"({', '.join(f'{k}={v}' for k, v in values.items())}); training "
                         f"stopped; {where}")


__all__ = ["MissingReferenceError", "NonFiniteLossError", "SelectionError"]
