"""Atomic, replace-by-key writes on a local directory or S3, without a database.

A write is staged, committed, then applied:
1. every file is written in full under `_staging/<txn>/...` (invisible: readers glob
   `<table>/**`), so a crash here leaves nothing visible;
2. the journal `_journal/<txn>.json` lists the moves and deletes: writing it (one atomic
   rename locally, one PUT on S3) is the commit point;
3. each staged file is moved to its final name (atomic rename locally, a server-side copy
   on S3: an object appears whole or not at all), then stale files are deleted and the
   journal removed.

A crash after the commit point is rolled forward by `recover()`, which the writer runs on
start; applying a journal twice is harmless. Files of one table are never half-visible; only
between the moves of two tables can a reader briefly see one table ahead of the other, and
the writer orders moves so the `episodes` index is always last.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq

from lake_schema.storage import Lake

log = logging.getLogger(__name__)

STAGING = "_staging"
JOURNAL = "_journal"
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "row_group_size": 64 * 1024}


class Transaction:
    """Collects staged files and deletes; `commit()` makes them visible together."""

    def __init__(self, location: Lake):
        self.location = location
        self.id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
        self.puts: list[str] = []
        self.deletes: list[str] = []
        self.committed = False  # the journal is written: from here on, roll forward

    def staged(self, rel: str) -> str:
        return f"{STAGING}/{self.id}/{rel}"

    def put_table(self, rel: str, table: pa.Table) -> None:
        """Write `table` as Parquet, staged until commit, to appear at `rel`."""
        loc = self.location
        path = loc.path(self.staged(rel))
        loc.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with loc.fs.open(path, "wb") as f:
            pq.write_table(table, f, **PARQUET_OPTIONS)
        self.puts.append(rel)

    def delete(self, rel: str) -> None:
        if rel not in self.deletes:
            self.deletes.append(rel)

    def commit(self) -> None:
        journal = {"id": self.id, "puts": self.puts, "deletes": self.deletes}
        _write_atomic(self.location, f"{JOURNAL}/{self.id}.json", json.dumps(journal).encode())
        self.committed = True
        _apply(self.location, journal)

    def abort(self) -> None:
        _remove_tree(self.location, f"{STAGING}/{self.id}")


@contextmanager
def transaction(location: Lake) -> Iterator[Transaction]:
    """`with transaction(loc) as txn: txn.put_table(...)`: all or nothing."""
    txn = Transaction(location)
    try:
        yield txn
        txn.commit()
    except BaseException:
        if not txn.committed:  # after the commit point, recover() rolls forward instead
            txn.abort()
        raise


def _write_atomic(loc: Lake, rel: str, data: bytes) -> None:
    path = loc.path(rel)
    loc.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    if loc.is_s3:
        loc.fs.pipe_file(path, data)  # a single PUT: visible whole or not at all
    else:
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
        loc.fs.mv(tmp, path)  # rename(2): atomic on one filesystem


def _apply(loc: Lake, journal: dict) -> None:
    """Move staged files into place and delete stale ones; safe to run more than once."""
    txn_id = journal["id"]
    for rel in journal["puts"]:
        src, dst = loc.path(f"{STAGING}/{txn_id}/{rel}"), loc.path(rel)
        if not loc.fs.exists(src):
            continue  # moved by an earlier (interrupted) apply
        loc.fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
        loc.fs.mv(src, dst)
    for rel in journal["deletes"]:
        if rel not in journal["puts"] and loc.fs.exists(loc.path(rel)):
            loc.fs.rm(loc.path(rel))
            _prune_empty_dirs(loc, rel)
    _remove_tree(loc, f"{STAGING}/{txn_id}")
    loc.fs.rm(loc.path(f"{JOURNAL}/{txn_id}.json"))


def _remove_tree(loc: Lake, rel: str) -> None:
    if loc.fs.exists(loc.path(rel)):
        loc.fs.rm(loc.path(rel), recursive=True)


def _prune_empty_dirs(loc: Lake, rel: str) -> None:
    """Local directories left empty by a delete are removed (S3 has no directories)."""
    if loc.is_s3:
        return
    parts = rel.split("/")[:-1]
    while len(parts) > 1:
        d = loc.path("/".join(parts))
        if loc.fs.exists(d) and not loc.fs.ls(d):
            loc.fs.rmdir(d)
        parts.pop()


def pending_journals(loc: Lake) -> list[str]:
    """Committed but not fully applied transactions (root-relative journal paths)."""
    return loc.glob(f"{JOURNAL}/*.json")


def recover(loc: Lake, min_age_s: float = 60.0) -> list[str]:
    """Roll committed transactions forward and drop abandoned staging; returns what it did.

    Only journals and staging older than `min_age_s` are touched, so a concurrent writer's
    transaction in flight is left alone.
    """
    done: list[str] = []
    now = time.time()
    for rel in pending_journals(loc):
        if _age(loc, rel, now) < min_age_s:
            continue
        journal = json.loads(loc.fs.cat_file(loc.path(rel)))
        log.warning("rolling forward interrupted lake transaction %s", journal["id"])
        _apply(loc, journal)
        done.append(f"rolled forward {rel}")
    for staged in loc.glob(f"{STAGING}/*"):
        txn_id = staged.split("/", 1)[1]
        if loc.exists(f"{JOURNAL}/{txn_id}.json") or _age_of_id(txn_id, now) < min_age_s:
            continue
        _remove_tree(loc, staged)
        done.append(f"removed abandoned {staged}")
    return done


def _age(loc: Lake, rel: str, now: float) -> float:
    return _age_of_id(rel.rsplit("/", 1)[-1].removesuffix(".json"), now)


def _age_of_id(txn_id: str, now: float) -> float:
    """Transaction ids start with their UTC-less local start time; unparsable means old."""
    try:
        started = time.mktime(time.strptime(txn_id.split("-", 1)[0], "%Y%m%dT%H%M%S"))
    except ValueError:
        return float("inf")
    return now - started
