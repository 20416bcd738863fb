"""Where the lake lives: a local directory or `s3://bucket/prefix`, behind one fsspec filesystem.

The root defaults to `./lake`, overridden by the `SABLE_LAKE` environment variable and by
every API and config that takes a root. S3 settings come from `S3Options` or the usual AWS
environment variables; credentials are never printed (repr hides them) nor stored.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from functools import cached_property

import fsspec

DEFAULT_ROOT = "./lake"
ROOT_ENV = "SABLE_LAKE"


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible endpoint. Unset fields fall back to AWS_* variables."""

    endpoint_url: str | None = None
    key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    region: str | None = None
    addressing_style: str | None = None  # "path" for most self-hosted servers, or "virtual"

    @classmethod
    def from_env(cls) -> S3Options:
        env = os.environ.get
        return cls(
            endpoint_url=env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
            key=env("AWS_ACCESS_KEY_ID"),
            secret=env("AWS_SECRET_ACCESS_KEY"),
            region=env("AWS_REGION") or env("AWS_DEFAULT_REGION"),
            addressing_style=env("SABLE_LAKE_S3_ADDRESSING_STYLE"),
        )

    def merged_over(self, base: S3Options) -> S3Options:
        """These options, with unset fields taken from `base`."""
        return S3Options(
            **{
                name: getattr(self, name) if getattr(self, name) is not None
                else getattr(base, name)
                for name in self.__dataclass_fields__
            }
        )

    def filesystem(self) -> fsspec.AbstractFileSystem:
        import s3fs

        client_kwargs = {"region_name": self.region} if self.region else {}
        config_kwargs = (
            {"s3": {"addressing_style": self.addressing_style}} if self.addressing_style else {}
        )
        return s3fs.S3FileSystem(
            key=self.key,
            secret=self.secret,
            endpoint_url=self.endpoint_url,
            client_kwargs=client_kwargs,
            config_kwargs=config_kwargs,
            use_listings_cache=False,
        )


def resolve_root(root: str | os.PathLike | None = None) -> str:
    """The lake root: the argument, else $SABLE_LAKE, else ./lake; local paths made absolute."""
    raw = os.fspath(root) if root is not None else os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    if raw.startswith("s3://"):
        bucket_and_prefix = raw[len("s3://"):].strip("/")
        if not bucket_and_prefix:
            raise ValueError(f"bad lake root {raw!r}: expected s3://bucket[/prefix]")
        return "s3://" + bucket_and_prefix
    if "://" in raw:
        raise ValueError(f"bad lake root {raw!r}: a local path or s3://bucket[/prefix]")
    return os.path.abspath(os.path.expanduser(raw))


class Lake:
    """A resolved root plus its filesystem; every path helper speaks root-relative posix paths."""

    def __init__(self, root: str | os.PathLike | None = None, s3: S3Options | None = None):
        self.root = resolve_root(root)
        self._s3 = (s3 or S3Options()).merged_over(S3Options.from_env())

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    @property
    def s3_options(self) -> S3Options:
        return self._s3

    @cached_property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self.is_s3:
            return self._s3.filesystem()
        return fsspec.filesystem("file")

    def path(self, rel: str = "") -> str:
        """Filesystem path of a root-relative path (no protocol for S3, as fsspec expects)."""
        base = self.root[len("s3://"):] if self.is_s3 else self.root
        return posixpath.join(base, rel) if rel else base

    def url(self, rel: str = "") -> str:
        """A path that DuckDB, Polars and pyarrow accept: local path or s3:// URL."""
        return ("s3://" + self.path(rel)) if self.is_s3 else self.path(rel)

    def relative(self, fs_path: str) -> str:
        """Inverse of `path`: root-relative form of a path the filesystem returned."""
        base = self.path().rstrip("/") + "/"
        fs_path = fs_path[len("s3://"):] if fs_path.startswith("s3://") else fs_path
        if not fs_path.startswith(base):
            raise ValueError(f"{fs_path!r} is outside the lake root {self.root!r}")
        return fs_path[len(base):]

    def glob(self, pattern: str) -> list[str]:
        """Root-relative paths matching a root-relative glob, sorted."""
        if self.is_s3:
            self.fs.invalidate_cache()
        return sorted(self.relative(p) for p in self.fs.glob(self.path(pattern)))

    def find(self, rel: str) -> list[str]:
        """Root-relative paths of every file under a root-relative folder, sorted."""
        if self.is_s3:
            self.fs.invalidate_cache()
        if not self.fs.exists(self.path(rel)):
            return []
        return sorted(self.relative(p) for p in self.fs.find(self.path(rel)))

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))
