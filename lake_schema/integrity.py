"""Content hashes: every data file's rows are hashed when committed and checked when read whole.

delta-rs writes Parquet pages without page checksums (arrow-rs does not write the CRC field),
so a flipped byte inside a compressed page can decode to other values with no error at all.
So every write records a SHA-256 of the rows it commits in its own Delta commit
(`commitInfo["sable_lake.content_sha256"]`): one write of one key is one commit adding one
file, so the hash of what the writer handed over is the hash of that file's rows. `verify
--deep` and the training cache build re-hash the rows they read and name a file whose rows
differ. The hash is over the rows, not the bytes: the bytes are only known after delta-rs
has written them, inside the same call that commits.

The hash is canonical: per column (by name, in sorted order), the validity of every value,
the length of every list or string, and the values, each fed as a separate stream, so that
rows fed in any batching (one table at write time, row group by row group at read time) give
the same digest. Partition columns are not in the files, so not in the hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake_schema.errors import LakeFileError
from lake_schema.storage import Lake

CONTENT_HASH = "sable_lake.content_sha256"
DELTA_LOG = "_delta_log"


class _Stream:
    """The running hashes of one column (and, for a list, of its values' column)."""

    def __init__(self, t: pa.DataType) -> None:
        self.valid, self.lengths, self.values = (hashlib.sha256() for _ in range(3))
        is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or (
            pa.types.is_fixed_size_list(t))
        self.child = _Stream(t.value_type) if is_list else None

    def feed(self, arr: pa.Array) -> None:
        self.valid.update(arr.is_valid().to_numpy(zero_copy_only=False).tobytes())
        t = arr.type
        if self.child is not None:
            lengths = pc.fill_null(pc.list_value_length(arr), 0)
            self.lengths.update(lengths.to_numpy().astype("<i8").tobytes())
            self.child.feed(arr.flatten())
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
            lengths = pc.fill_null(pc.binary_length(arr), 0)
            self.lengths.update(lengths.to_numpy().astype("<i8").tobytes())
            for v in arr.to_pylist():
                if v is not None:
                    self.values.update(v.encode() if isinstance(v, str) else v)
        else:
            if pa.types.is_timestamp(t) or pa.types.is_date(t):
                arr = arr.cast(pa.int64())
            arr = pc.fill_null(arr, False if pa.types.is_boolean(t) else 0)
            values = arr.to_numpy(zero_copy_only=False)
            self.values.update(values.astype(values.dtype.newbyteorder("<")).tobytes())

    def digest(self) -> bytes:
        parts = [self.valid.digest(), self.lengths.digest(), self.values.digest()]
        return b"".join(parts + ([self.child.digest()] if self.child else []))


class ContentHash:
    """Feed the rows of one file in any batching; `hexdigest()` is the file's content hash."""

    def __init__(self, schema: pa.Schema) -> None:
        self.names = sorted(schema.names)
        self.streams = {n: _Stream(schema.field(n).type) for n in self.names}

    def feed(self, batch: pa.Table | pa.RecordBatch) -> None:
        for n in self.names:
            column = batch.column(n)
            for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
                self.streams[n].feed(chunk)

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        for n in self.names:
            h.update(n.encode() + b"\0" + self.streams[n].digest())
        return h.hexdigest()


def content_hash(data: pa.Table) -> str:
    """The content hash of a table's rows (the columns a file holds: no partition columns)."""
    h = ContentHash(data.schema)
    h.feed(data)
    return h.hexdigest()


def file_hash(pf: pq.ParquetFile, rel: str) -> str:
    """The content hash of a Parquet file's rows, read one row group at a time."""
    h = ContentHash(pf.schema_arrow)
    try:
        for g in range(pf.num_row_groups):
            h.feed(pf.read_row_group(g, use_threads=False))
    except Exception as e:  # pyarrow raises several types for corrupted pages
        raise LakeFileError(rel, f"corrupted data pages ({' '.join(str(e).split())[:200]})"
                            ) from e
    return h.hexdigest()


def check_file(pf: pq.ParquetFile, rel: str, expected: str) -> None:
    """The file's rows hash to `expected` (the hash its commit recorded), or a LakeFileError
    naming the file."""
    got = file_hash(pf, rel)
    if got != expected:
        raise LakeFileError(rel, mismatch(got, expected))


def mismatch(got: str, expected: str) -> str:
    return (f"rows differ from those committed (content hash {got[:12]}, its commit "
            f"recorded {expected[:12]}): bit rot or a file changed in place")


def recorded_hashes(lake: Lake, tid: str) -> dict[str, str]:
    """Root-relative path -> content hash, for every file that a commit of table `tid`
    added with a recorded hash (from the table's commit files; files written before hashes
    were recorded, or by another tool, are absent)."""
    import urllib.parse

    out: dict[str, str] = {}
    for rel in _commit_files(lake, tid):
        try:
            lines = [json.loads(line) for line in lake.fs.cat_file(lake.path(rel)).splitlines()
                     if line.strip()]
        except (OSError, ValueError):
            continue  # an unreadable commit: delta-rs names it when the table is opened
        info = next((a["commitInfo"] for a in lines if "commitInfo" in a), {})
        adds = [a["add"] for a in lines if "add" in a]
        if isinstance(info, dict) and isinstance(info.get(CONTENT_HASH), str) and (
                len(adds) == 1 and isinstance(adds[0].get("path"), str)):
            out[f"{tid}/{urllib.parse.unquote(adds[0]['path'])}"] = info[CONTENT_HASH]
    return out


def _commit_files(lake: Lake, tid: str) -> Iterable[str]:
    return [rel for rel in lake.find(f"{tid}/{DELTA_LOG}")
            if rel.endswith(".json") and rel.rsplit("/", 1)[-1][:-5].isdigit()]
