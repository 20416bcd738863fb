"""Where the lake lives: a local directory or `s3://bucket/prefix`.

The root defaults to `./lake`, overridden by the `SABLE_LAKE` environment variable and by
every API and config that takes a root. S3 settings come from `S3Options` or the usual AWS
environment variables; credentials are never printed (repr hides them) nor stored.
Two clients see the same settings: fsspec/s3fs (file reads, listings, DuckDB) and delta-rs's
object store (`storage_options()`: commits, which on S3 are conditional puts, If-None-Match,
so two writers can never both create the same log entry).
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit, urlunsplit

import fsspec

from lake_schema.errors import LakeRootError, S3SafetyError
from lake_schema.schema import TABLES

log = logging.getLogger(__name__)

DEFAULT_ROOT = "./lake"
ROOT_ENV = "SABLE_LAKE"
# The bucket check before a command's first S3 request: a dead endpoint is named in seconds.
PROBE_CONNECT_TIMEOUT_S = 3
PROBE_READ_TIMEOUT_S = 10
# The names botocore sends at all (S3 itself is stricter): any other is refused before a request.
_BUCKET_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")


@dataclass(frozen=True)
class S3Limits:
    """How long one S3 request of delta-rs's object store may take and how often a failed
    one is tried again (its `storage_options`), and how often the lake tries a commit again.

    Why these numbers: a commit is a few kB and a data file one checkpoint's rows, so 30 s
    per request (object_store's default, stated here) leaves room for a slow link or a
    loaded server; a request still unanswered then is more likely lost than slow (moto on 2
    busy cores once took over 30 s for a commit PUT), and is better tried again.
    Connecting takes milliseconds, so after 5 s the server is in trouble. object_store
    retries the requests it may repeat (reads, listings, data files) 5 times within 120 s,
    backing off 0.1 s doubling up to 10 s: a dead endpoint is an error within about two
    minutes, not object_store's default three. It never repeats a commit, a conditional
    put whose answer was lost (it may have landed), so the lake tries a failed commit 3
    times itself, 1 s then 2 s apart: one that did land makes the next try conflict, which
    the writer resolves as for any concurrent commit (`delta.replace_key`).
    """

    connect_timeout_s: float = 5.0
    request_timeout_s: float = 30.0
    retries: int = 5  # object_store's, of a request it may repeat
    retry_window_s: float = 120.0  # no retry starts this long after the first try
    backoff_s: float = 0.1  # object_store's first wait before a retry, doubling ...
    max_backoff_s: float = 10.0  # ... up to this
    commit_tries: int = 3  # the lake's, of a commit (or a table's creation, a delete)
    commit_backoff_s: float = 1.0  # the wait before the lake's second try, doubling

    def storage_options(self) -> dict[str, str]:
        """delta-rs's keys for these limits (object_store's client and retry settings)."""
        def ms(seconds: float) -> str:
            return f"{max(1, round(seconds * 1000))}ms"

        return {
            "connect_timeout": ms(self.connect_timeout_s),
            "timeout": ms(self.request_timeout_s),
            "max_retries": str(self.retries),
            "retry_timeout": ms(self.retry_window_s),
            "backoff_config.init_backoff": ms(self.backoff_s),
            "backoff_config.max_backoff": ms(self.max_backoff_s),
            "backoff_config.base": "2",
        }


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible endpoint. Unset fields fall back to AWS_* variables."""

    endpoint_url: str | None = None
    key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    region: str | None = None
    addressing_style: str | None = None  # "path" for most self-hosted servers, or "virtual"
    limits: S3Limits | None = None  # None: S3Limits()

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

    @property
    def request_limits(self) -> S3Limits:
        return self.limits or S3Limits()

    @property
    def endpoint(self) -> str:
        """The endpoint for messages: its URL less any user:password part, never a key."""
        if not self.endpoint_url:
            return "the default AWS S3 endpoint"
        parts = urlsplit(self.endpoint_url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def filesystem(self, fail_fast: bool = False) -> fsspec.AbstractFileSystem:
        """An s3fs filesystem for these settings. `fail_fast`: one try, a short connect
        timeout, for a reachability check that answers in seconds where s3fs and botocore
        otherwise retry a dead endpoint for about ten seconds."""
        import s3fs

        client_kwargs = {"region_name": self.region} if self.region else {}
        config_kwargs: dict = (
            {"s3": {"addressing_style": self.addressing_style}} if self.addressing_style else {}
        )
        if fail_fast:
            config_kwargs.update(connect_timeout=PROBE_CONNECT_TIMEOUT_S,
                                 read_timeout=PROBE_READ_TIMEOUT_S,
                                 retries={"max_attempts": 1})
        fs = s3fs.S3FileSystem(
            key=self.key,
            secret=self.secret,
            endpoint_url=self.endpoint_url,
            client_kwargs=client_kwargs,
            config_kwargs=config_kwargs,
            use_listings_cache=False,
        )
        if fail_fast:  # fsspec caches instances by arguments: only probes share this one
            fs.retries = 1
        return fs

    def storage_options(self) -> dict[str, str]:
        """delta-rs object-store options for these settings (unset ones: AWS_* variables).

        `conditional_put=etag` makes every commit a put-if-absent, which is what makes two
        concurrent writers safe on S3 (no locking service needed); `S3Limits` bounds every
        request's time and retries.
        """
        opts = {"conditional_put": "etag", **self.request_limits.storage_options()}
        if self.endpoint_url:
            opts["AWS_ENDPOINT_URL"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        if self.key:
            opts["AWS_ACCESS_KEY_ID"] = self.key
        if self.secret:
            opts["AWS_SECRET_ACCESS_KEY"] = self.secret
        if self.region:
            opts["AWS_REGION"] = self.region
        if self.addressing_style:
            opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = str(
                self.addressing_style == "virtual").lower()
        return opts


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write a local file whole: a reader sees the old content or the new, never half.

    A temporary file named after this process, then a rename; two processes writing the same
    file (runs side by side) each rename a whole one. On failure the temporary file goes and
    the error is raised."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def resolve_root(root: str | os.PathLike | None = None) -> str:
    """The lake root: the argument, else $SABLE_LAKE, else ./lake; local paths made absolute."""
    raw = os.fspath(root) if root is not None else os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    if not raw:  # an empty argument would silently be the current folder
        raise LakeRootError("empty lake root: a local path or s3://bucket[/prefix]")
    if raw.startswith("s3://"):
        bucket_and_prefix = raw[len("s3://"):].strip("/")
        if not bucket_and_prefix:
            raise LakeRootError(f"bad lake root {raw!r}: expected s3://bucket[/prefix]")
        bucket = bucket_and_prefix.split("/", 1)[0]
        if not _BUCKET_NAME.fullmatch(bucket):
            raise LakeRootError(f"bad lake root {raw!r}: {bucket!r} is not a bucket name "
                                "(letters, digits, '.', '-', '_')")
        return "s3://" + bucket_and_prefix
    if "://" in raw:
        raise LakeRootError(f"bad lake root {raw!r}: a local path or s3://bucket[/prefix]")
    return os.path.abspath(os.path.expanduser(raw))


class Lake:
    """A resolved root plus its filesystem; every path helper speaks root-relative posix paths."""

    def __init__(self, root: str | os.PathLike | None = None, s3: S3Options | None = None):
        self.root = resolve_root(root)
        self._s3 = (s3 or S3Options()).merged_over(S3Options.from_env())
        self._write_checked = False
        self._bucket_checked = False

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

    def storage_options(self) -> dict[str, str]:
        """Options for delta-rs (empty for a local lake)."""
        return self._s3.storage_options() if self.is_s3 else {}

    def check_readable(self) -> None:
        """Readers and the CLI: the root must exist and be a directory (or an S3 bucket)."""
        if self.is_s3:
            self._check_bucket()
            return
        if not os.path.exists(self.root):
            raise LakeRootError(f"lake root {self.root} does not exist")
        if not os.path.isdir(self.root):
            raise LakeRootError(f"lake root {self.root} is not a directory")

    def check_holds_lake(self) -> None:
        """Readers that must find a lake (the CLI's reading commands, offline training and
        evaluation): the root must exist and hold at least one of the lake's tables, so a
        mistyped root fails naming it instead of reading as an empty lake."""
        self.check_readable()
        try:
            names = {posixpath.basename(p.rstrip("/"))
                     for p in self.fs.ls(self.path(), detail=False)}
        except FileNotFoundError:  # an S3 prefix with nothing under it
            names = set()
        if names.isdisjoint(TABLES):
            raise LakeRootError(f"no lake at {self.root}: it holds none of the tables "
                                f"{', '.join(TABLES)}")

    def prepare_for_writing(self) -> None:
        """Writers may create a new local lake (and say so); on S3, check the endpoint can
        make commits safe for concurrent writers, once per Lake object."""
        if self._write_checked:
            return
        if self.is_s3:
            self._check_bucket()
            self._check_conditional_put()
        elif not os.path.exists(self.root):
            # a warning, so it shows with no logging set up: a mistyped root is seen at once
            log.warning("creating a new lake at %s", self.root)
            os.makedirs(self.root, exist_ok=True)
        elif not os.path.isdir(self.root):
            raise LakeRootError(f"lake root {self.root} is not a directory")
        self._write_checked = True

    def _check_bucket(self) -> None:
        """The bucket must exist and answer, checked once per Lake object with one quick
        request: s3fs's own `exists` reads every failure (a dead endpoint, refused
        credentials) as "no such bucket", and only after retrying for seconds."""
        if self._bucket_checked:
            return
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError, NoCredentialsError

        bucket = self.path().split("/", 1)[0]
        try:
            self._s3.filesystem(fail_fast=True).call_s3("head_bucket", Bucket=bucket)
        except FileNotFoundError as e:
            raise LakeRootError(f"lake root {self.root}: no such bucket {bucket!r}") from e
        except PermissionError as e:
            raise LakeRootError(f"lake root {self.root}: access to bucket {bucket!r} refused "
                                f"(check the credentials)") from e
        except NoCredentialsError as e:
            raise LakeRootError(f"lake root {self.root}: no S3 credentials (set "
                                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") from e
        except (BotoConnectionError, HTTPClientError, TimeoutError) as e:
            raise LakeRootError(f"lake root {self.root}: cannot reach the S3 endpoint "
                                f"{self._s3.endpoint}") from e
        except Exception as e:  # e.g. a server's refusal of another kind
            raise LakeRootError(f"lake root {self.root}: {' '.join(str(e).split())}") from e
        self._bucket_checked = True

    def _check_conditional_put(self) -> None:
        """Two PUTs of one new key with If-None-Match: * must not both succeed; a server that
        lets them would let two writers both commit the same Delta log version."""
        bucket, _, prefix = self.path().partition("/")
        key = posixpath.join(prefix, "_sable_lake", f"put-if-absent-{uuid.uuid4().hex}")
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=b"1", IfNoneMatch="*")
        except Exception as e:
            raise LakeRootError(f"lake root {self.root}: cannot write ({e})") from e
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=b"2", IfNoneMatch="*")
            safe = False
        except Exception as e:
            safe = "precondition" in str(e).lower() or isinstance(e, FileExistsError)
            if not safe:
                raise S3SafetyError(
                    f"{self.root}: the S3 endpoint answered a conditional put with {e!r}; "
                    "the lake needs PutObject If-None-Match: * to commit safely") from e
        finally:
            self.fs.call_s3("delete_object", Bucket=bucket, Key=key)
        if not safe:
            raise S3SafetyError(
                f"{self.root}: the S3 endpoint ignores PutObject If-None-Match: *, so two "
                "concurrent writers could overwrite each other's commits; refusing to write. "
                "Use a server with conditional puts (AWS S3, MinIO, recent Ceph, moto >= 5)")
