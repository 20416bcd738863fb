"""Keeping a lake tidy: compact small files, delete files no kept version needs.

Both run while nobody writes (a write in flight has files its commit does not list yet).
`vacuum` keeps every steps file the current episodes index names, even one the steps table
no longer lists (`reader.indexed_steps`: the index is the lake's commit point).
"""

from __future__ import annotations

import contextlib
import math

from lake_schema import delta
from lake_schema.errors import LakeValueError
from lake_schema.reader import Selection, indexed_steps
from lake_schema.storage import Lake


def optimize(lake: Lake, tid: str, target_size: int = 256 << 20) -> dict:
    """Compact each partition's small files into one (a new version; the old files stay for
    `as_of` reads until `vacuum`). Steps tables are left alone: each key is already one
    file, and the episodes index names it. Run while nobody writes."""
    if tid.startswith("steps/"):
        return {"numFilesRemoved": 0, "numFilesAdded": 0, "skipped": "steps"}
    dt = delta.open_table(lake, tid)
    if dt is None:
        raise LakeValueError(f"the lake {lake.root} has no table {tid}")
    return dt.optimize.compact(target_size=target_size,
                               writer_properties=delta.WRITER_PROPERTIES)


def vacuum(lake: Lake, tid: str, retention_hours: float, dry_run: bool = False) -> list[str]:
    """Delete files that no version within `retention_hours` needs, and files no commit
    ever listed (full vacuum: a killed or losing writer's leftovers). Run while nobody
    writes: a write in flight has files its commit does not list yet. Returns them."""
    dt = delta.open_table(lake, tid)
    if dt is None:
        raise LakeValueError(f"the lake {lake.root} has no table {tid}")
    if tid.startswith("steps/"):
        # Steps files the episodes index names are kept even when the steps table no longer
        # lists them: a write killed between its steps and its index commits leaves the old
        # steps removed from the steps table but still the ones readers see (the index is
        # the commit point, `reader.indexed_steps`).
        indexed = {f.rel for f in indexed_steps(
            lake, Selection(env=delta.parse_table_id(tid)[1])).files}
        gone = [p for p in dt.vacuum(retention_hours=math.ceil(retention_hours), dry_run=True,
                                     enforce_retention_duration=False, full=True)
                if f"{tid}/{p}" not in indexed]
        # delta-rs lists files an earlier vacuum already deleted, too
        gone = [p for p in gone if lake.exists(f"{tid}/{p}")]
        if not dry_run:
            for p in gone:
                with contextlib.suppress(FileNotFoundError):  # a concurrent vacuum's
                    lake.fs.rm(lake.path(f"{tid}/{p}"))
    else:
        gone = dt.vacuum(retention_hours=math.ceil(retention_hours), dry_run=dry_run,
                         enforce_retention_duration=False, full=True)
    # A writer killed while writing a data file leaves the object store's staging file
    # (`<name>#<n>` on a local disk) beside the table: never a data file, and not one that
    # delta-rs's vacuum lists, so it goes here.
    staging = [rel for rel in lake.find(tid)
               if delta.STAGING_FILE.search(rel) and f"/{delta.DELTA_LOG}/" not in f"/{rel}"]
    if not dry_run:
        for rel in staging:
            lake.fs.rm(lake.path(rel))
    return [*gone, *(rel[len(tid) + 1:] for rel in staging)]
