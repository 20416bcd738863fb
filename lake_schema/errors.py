"""Every error the lake raises, in one place, so callers (the CLI, the trainer, Dagster) can
catch `LakeError` and print one line instead of a traceback.

Each error names what it is about: a file (root-relative path), a table, a partition key or a
value. `UnknownTaskError` and `LakeValueError` are also ValueErrors (a bad name or value).
"""

from __future__ import annotations


class LakeError(Exception):
    """Base of every lake error: one line, naming the file, table, key or value."""


class LakeValueError(LakeError, ValueError):
    """A partition value, record or argument the lake refuses before writing anything."""


class UnknownTaskError(LakeValueError):
    """A task, environment or split name that is not in the catalogue."""


class MissingReferenceError(LakeError, LookupError):
    """A task has no usable online Sable reference return to normalise by."""


class LakeRootError(LakeError, ValueError):
    """A lake root that cannot be used: missing (for a reader), a file, a bad URL."""


class LakeFileError(LakeError):
    """A lake file or table that cannot be trusted: corrupted, foreign, of another schema."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class SchemaVersionError(LakeFileError):
    """A table whose schema version this code does not read."""


class LegacyLakeError(LakeFileError):
    """A table folder written by the pre-Delta lake (plain Parquet files, no `_delta_log`)."""


class LakeConflictError(LakeError):
    """A concurrent writer of the same key won; this write's data is not in the lake."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"write conflict on {key}: {reason}")
        self.key, self.reason = key, reason


class LakeStorageError(LakeError):
    """The object store (S3, the disk) failed a request of a lake operation after every
    retry: timed out, refused, unreachable. Names the table and the operation. Nothing is
    half-written: a commit is one object, there whole or not at all (one that timed out may
    still land), so the table's earlier versions stay readable."""

    def __init__(self, what: str, reason: str):
        super().__init__(f"{what}: {reason}")
        self.what, self.reason = what, reason


class S3SafetyError(LakeError):
    """An S3 endpoint that cannot make concurrent commits safe (no conditional put)."""


class VaultFormatError(LakeValueError):
    """An og-marl / flashbax Vault the import refuses: names the field (leaf) or file."""
