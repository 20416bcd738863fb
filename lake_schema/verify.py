"""`verify`: every file of the lake checked and every bad one named.

Checks each file's place (a known table, valid partition values, the expected file name),
its footer (Parquet, our table, our schema version), its columns, and with `deep=True` its
data pages. Committed but unapplied transactions are reported too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from lake_schema.catalogue import UnknownTaskError
from lake_schema.reader import LakeFileError, open_checked, parse_partition
from lake_schema.schema import (
    DATA_FILE,
    LAYOUT,
    TABLES,
    LakeValueError,
    table_spec,
    validate_partition,
)
from lake_schema.storage import Lake
from lake_schema.transaction import pending_journals


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class VerifyReport:
    files: int
    rows: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_place(rel: str) -> None:
    table = rel.split("/", 1)[0]
    partitions, _ = LAYOUT[table]
    values = parse_partition(rel)
    if rel.rsplit("/", 1)[-1] != DATA_FILE or list(values) != list(partitions):
        raise LakeFileError(
            rel, f"foreign file: {table} files are {'/'.join(p + '=…' for p in partitions)}/"
            f"{DATA_FILE}"
        )
    typed: dict[str, object] = dict(values)
    if "checkpoint" in typed:
        with contextlib.suppress(ValueError):  # validate_partition names a bad one
            typed["checkpoint"] = int(values["checkpoint"])
    try:
        validate_partition(table, typed)
    except (LakeValueError, UnknownTaskError) as e:
        raise LakeFileError(rel, f"bad partition value: {e}") from e


def _check_file(lake: Lake, rel: str, deep: bool) -> int:
    _check_place(rel)
    table = rel.split("/", 1)[0]
    spec = table_spec(table, parse_partition(rel).get("env"))
    with open_checked(lake, rel) as pf:
        if pf.schema_arrow.remove_metadata() != spec.schema.remove_metadata():
            got = {f.name: str(f.type) for f in pf.schema_arrow}
            want = {f.name: str(f.type) for f in spec.schema}
            diff = sorted(set(got.items()) ^ set(want.items()))
            raise LakeFileError(rel, f"wrong columns for {table}: {diff}")
        if deep:
            try:
                for i in range(pf.num_row_groups):
                    pf.read_row_group(i)
            except Exception as e:
                raise LakeFileError(rel, f"corrupted data pages ({e})") from e
        return pf.metadata.num_rows


def verify(lake: Lake, deep: bool = False) -> VerifyReport:
    problems: list[Problem] = []
    files = rows = 0
    for table in TABLES:
        for rel in lake.find(table):
            files += 1
            try:
                rows += _check_file(lake, rel, deep)
            except LakeFileError as e:
                problems.append(Problem(e.path, e.reason))
    for journal in pending_journals(lake):
        problems.append(
            Problem(journal, "interrupted transaction: run `python -m lake_schema recover`")
        )
    return VerifyReport(files, rows, tuple(problems))
