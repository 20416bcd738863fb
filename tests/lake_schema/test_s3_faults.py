"""Commits to S3 through a faulty network: a TCP proxy between the lake and the moto server
on 127.0.0.1 stalls the PUTs of Delta log entries (issue #30: a commit PUT that moto did not
answer within the request timeout killed a writer with a multi-line OSError).

A stalled request is either dropped (the server never sees it) or delivered late (the
server stores it, its answer never comes back): the second is the hard case, a commit that
landed although its writer saw it fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from lake_schema import delta
from lake_schema.cli import main as cli_main
from lake_schema.errors import LakeStorageError
from lake_schema.maintenance import vacuum
from lake_schema.reader import Selection, read_table, table_versions
from lake_schema.storage import Lake, S3Limits, S3Options
from lake_schema.stress import key_seed, payload
from lake_schema.verify import verify
from lake_schema.writer import write_episodes

pytestmark = pytest.mark.s3
LBF = "lbf/8x8-2p-2f"
# Short limits, so that a stalled request fails in about a second; every stall is longer
# than the request timeout, so a request that is stalled always times out.
LIMITS = S3Limits(connect_timeout_s=1.0, request_timeout_s=1.5, retries=2,
                  retry_window_s=5.0, backoff_s=0.05, max_backoff_s=0.2, commit_tries=3,
                  commit_backoff_s=0.1)
STALL_S = 4.0
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Reader:
    """Buffered reads of a socket: whole lines and exact byte counts (HTTP/1.1 framing)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._more()
        out, _, self.buf = self.buf.partition(sep)
        return out + sep

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _head(reader: _Reader) -> tuple[str, str, dict[str, str], bytes]:
    """The head of the next HTTP request on a connection: method, path, headers, bytes."""
    head = reader.until(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path = lines[0].split(" ")[:2]
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    return method, path, headers, head


def _body(reader: _Reader, headers: dict[str, str], send: Callable[[bytes], None]) -> None:
    """Pass the request's body to `send` as it arrives (a client that sends `Expect:
    100-continue` waits for the server's answer before sending it)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = reader.until(b"\r\n")
            send(size_line)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while (line := reader.until(b"\r\n")) != b"\r\n":  # trailers
                    send(line)
                send(line)
                return
            send(reader.exact(size + 2))
    left = int(headers.get("content-length", "0"))
    while left:
        if not reader.buf:
            reader._more()
        part, reader.buf = reader.buf[:left], reader.buf[left:]
        send(part)
        left -= len(part)


class FaultyProxy:
    """A TCP proxy to the S3 server (threads) that can stall the PUTs whose path holds a
    pattern: `drop` (never forwarded) or `late` (forwarded on a connection of its own, the
    answer thrown away), holding the client's connection for STALL_S, then closing it."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.rule: Callable[[str, str], str | None] = lambda method, path: None
        self.stalled: list[str] = []  # the paths stalled, in order
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self, pattern: str, mode: str = "drop", times: int | None = None) -> None:
        """Stall the next `times` PUTs (None: every one) whose path holds `pattern`."""
        left = [times]

        def rule(method: str, path: str) -> str | None:
            if method != "PUT" or pattern not in path or left[0] == 0:
                return None
            if left[0] is not None:
                left[0] -= 1
            return mode

        with self.lock:
            self.rule = rule

    def heal(self) -> None:
        with self.lock:
            self.rule = lambda method, path: None

    def close(self) -> None:
        self.closed.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        reader = _Reader(client)
        try:
            while True:
                method, path, headers, head = _head(reader)
                with self.lock:
                    action = self.rule(method, path)
                if action is None:
                    server.sendall(head)
                    _body(reader, headers, server.sendall)
                    continue
                with self.lock:
                    self.stalled.append(path)
                if action == "late":
                    parts = [head]
                    _body(reader, headers, parts.append)
                    self._deliver_alone(b"".join(parts))
                self.closed.wait(STALL_S)
                return
        except (EOFError, OSError):
            pass
        finally:
            client.close()
            server.close()

    def _deliver_alone(self, raw: bytes) -> None:
        """Send one request on a connection of its own and wait for the whole answer (the
        server has acted on it), which the client never gets."""
        head, sep, body = raw.partition(b"\r\n\r\n")
        with socket.create_connection(self.upstream) as conn:
            conn.sendall(head + b"\r\nConnection: close" + sep + body)
            while conn.recv(65536):
                pass

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(s3_server: S3Options) -> Iterator[FaultyProxy]:
    port = int(s3_server.endpoint_url.rsplit(":", 1)[1])
    p = FaultyProxy(port)
    yield p
    p.close()


@pytest.fixture
def lake(s3_server: S3Options, proxy: FaultyProxy) -> Lake:
    """A lake in a fresh bucket, reached through the proxy, with the short LIMITS."""
    bucket = f"faults-{uuid.uuid4().hex[:10]}"
    Lake(f"s3://{bucket}", s3=s3_server).fs.mkdir(bucket)
    options = dataclasses.replace(s3_server, endpoint_url=f"http://127.0.0.1:{proxy.port}",
                                  limits=LIMITS)
    return Lake(f"s3://{bucket}/prefix", s3=options)


def _write(lake: Lake, checkpoint: int, seed: int) -> None:
    write_episodes(lake, LBF, "run0", checkpoint, "low", payload(LBF, seed), env_steps=seed)


def _cli(lake: Lake, *args: str) -> subprocess.CompletedProcess:
    """`python -m lake_schema --lake ROOT ARGS` in a process of its own, with the lake's S3
    settings in the environment and production limits."""
    s3 = lake.s3_options
    env = {**os.environ, "AWS_ENDPOINT_URL": s3.endpoint_url, "AWS_ACCESS_KEY_ID": s3.key,
           "AWS_SECRET_ACCESS_KEY": s3.secret, "AWS_REGION": s3.region,
           "SABLE_LAKE_S3_ADDRESSING_STYLE": s3.addressing_style,
           "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "lake_schema", "--lake", lake.root, *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_the_limits_are_delta_rs_storage_options():
    """Every limit is in delta-rs's storage options, under object_store's key names."""
    opts = S3Options(endpoint_url="http://127.0.0.1:9", limits=LIMITS).storage_options()
    assert {k: opts[k] for k in ("connect_timeout", "timeout", "max_retries", "retry_timeout",
                                 "backoff_config.init_backoff", "backoff_config.max_backoff",
                                 "backoff_config.base")} == {
        "connect_timeout": "1000ms", "timeout": "1500ms", "max_retries": "2",
        "retry_timeout": "5000ms", "backoff_config.init_backoff": "50ms",
        "backoff_config.max_backoff": "200ms", "backoff_config.base": "2"}
    assert S3Options().storage_options()["timeout"] == "30000ms"  # production: S3Limits()


def test_delta_rs_parses_every_limit(lake):
    """delta-rs refuses a bad value of each key: so it reads them (it ignores unknown keys)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    _write(lake, 0, 1)
    url, opts = lake.url("episodes"), lake.storage_options()
    assert DeltaTable(url, storage_options=opts).version() == 1
    assert DeltaTable(url, storage_options={**opts, "no_such_key": "x"}).version() == 1
    for key in LIMITS.storage_options():
        with pytest.raises((DeltaError, OSError), match="failed to parse"):
            DeltaTable(url, storage_options={**opts, key: "x"})


@pytest.mark.parametrize(("pattern", "mode", "leftovers"), [
    # the steps commit, never seen by the server: the next try writes the data again
    ("/_delta_log/", "drop", 1),
    # the steps commit, stored but its answer lost: the next try replaces it
    ("/_delta_log/", "late", 0),
    # the card's commit (against a snapshot), stored but its answer lost: the next try
    # conflicts with it (its data file is the loser's), and the writer commits again
    ("/cards/_delta_log/", "late", 1),
])
def test_a_stalled_commit_is_tried_again_and_the_write_stands(lake, proxy, pattern, mode,
                                                              leftovers):
    """One commit PUT stalled past the request timeout: the write still succeeds, whole."""
    _write(lake, 0, 1)
    _write(lake, 1, 2)
    versions = table_versions(lake)
    proxy.stall(pattern, mode, times=1)
    started = time.monotonic()
    _write(lake, 1, 3)  # replaces checkpoint 1
    took = time.monotonic() - started
    assert len(proxy.stalled) == 1 and pattern in proxy.stalled[0]
    assert LIMITS.request_timeout_s <= took < STALL_S + 10
    assert key_seed(lake, LBF, "run0", 1) == 3  # whole, through the index and the steps
    assert key_seed(lake, LBF, "run0", 0) == 1  # the other key untouched
    assert key_seed(lake, LBF, "run0", 1, as_of=versions) == 2  # the old version readable
    report = verify(lake, deep=True)
    # a try that did not land leaves its data file outside the log: a leftover, named
    assert all(p.leftover for p in report.problems), report.problems
    assert len(report.problems) == leftovers, report.problems


def test_a_commit_the_store_never_takes_is_one_line_naming_the_table(lake, proxy):
    """Every commit PUT stalled: a one-line LakeStorageError naming the table and the key,
    the previous version intact, and after a vacuum of the failed tries' files verify ok."""
    _write(lake, 0, 1)
    _write(lake, 1, 2)
    versions = table_versions(lake)
    before = {t: read_table(lake, t, Selection(env="lbf")) for t in ("steps", "episodes")}
    proxy.stall("/_delta_log/", "drop")
    started = time.monotonic()
    with pytest.raises(LakeStorageError) as raised:
        _write(lake, 1, 3)
    took = time.monotonic() - started
    message = str(raised.value)
    assert "\n" not in message and "\x1b" not in message, message
    assert message.startswith("steps/lbf: the commit replacing "), message
    assert "checkpoint=1" in message and "tried 3 times" in message, message
    assert "timed out" in message, message
    assert len(proxy.stalled) == LIMITS.commit_tries
    assert took < LIMITS.commit_tries * (LIMITS.request_timeout_s + 1) + 5
    # nothing of the failed write is visible; the previous version reads back identical
    assert table_versions(lake) == versions
    for t, rows in before.items():
        assert read_table(lake, t, Selection(env="lbf")).equals(rows), t
    assert key_seed(lake, LBF, "run0", 1) == 2
    # verify names only the failed tries' data files, outside the log, as leftovers
    report = verify(lake)
    assert len(report.problems) == LIMITS.commit_tries, report.problems
    assert all(p.leftover and "checkpoint=1" in p.path for p in report.problems)
    proxy.heal()  # the outage ends: a vacuum removes them, and `verify` is ok
    assert len(vacuum(lake, "steps/lbf", retention_hours=0)) == LIMITS.commit_tries
    out = _cli(lake, "verify")
    assert out.returncode == 0 and out.stdout.strip().endswith(": ok"), out.stdout + out.stderr


def test_the_cli_prints_a_failed_commit_as_one_error_line(lake, proxy, monkeypatch, capsys):
    """`card --backfill` (a write) through a store that takes no commit: one `error:` line
    naming the cards table, exit status 1, no traceback."""
    _write(lake, 0, 1)
    delta.delete_where(lake, "cards", "checkpoint = 0")  # a checkpoint without its card
    s3 = lake.s3_options
    for name, value in [("AWS_ENDPOINT_URL", s3.endpoint_url), ("AWS_ACCESS_KEY_ID", s3.key),
                        ("AWS_SECRET_ACCESS_KEY", s3.secret), ("AWS_REGION", s3.region),
                        ("SABLE_LAKE_S3_ADDRESSING_STYLE", s3.addressing_style)]:
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(S3Options, "request_limits", property(lambda self: LIMITS))
    proxy.stall("/cards/_delta_log/", "drop")
    capsys.readouterr()
    assert cli_main(["--lake", lake.root, "card", "--backfill"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sable-lake: error: cards: "), err
    assert "timed out" in err and "Traceback" not in err, err
