"""Screenshots of the Dagster UI for the README: the asset graph and the report asset's page.

    python -m pipelines.screenshots [--out docs/img] [--asset report dataset_status]

Starts the webserver on 127.0.0.1 against the project's definitions and the local instance
($DAGSTER_HOME, ./.dagster under make), and the server of the lake's `reports/` (the plots
the pages show inline, as `make ui` does), points headless Chromium at them, and stops them.
Needs Debian's chromium (`apt-get install chromium`); run `make demo` first so the pages
have something to show. The same functions let the tests read the rendered pages' DOM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def webserver(port: int, timeout_s: float = 120.0) -> Iterator[str]:
    """The Dagster webserver for `pipelines.definitions` on 127.0.0.1; yields its base URL."""
    exe = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen(
        [str(exe), "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout_s
        while not _assets_loaded(base):  # the code location loads after the server starts
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the Dagster webserver did not load the definitions")
            time.sleep(1.0)
        yield base
    finally:
        _stop(proc)


@contextmanager
def reports_server(directory: str | os.PathLike, port: int = 0,
                   timeout_s: float = 30.0) -> Iterator[str]:
    """`directory` (the lake's reports/) over HTTP on 127.0.0.1, as `make ui` serves it
    (python -m http.server); yields its base URL. port 0: a free one."""
    port = port or free_port()
    Path(directory).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
         str(directory), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                urllib.request.urlopen(base, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the reports server did not start on {base}") from None
                time.sleep(0.2)
        yield base
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the server has not exited within 10 s (a server busy with a
    browser's open connection on a loaded machine was seen to outlive a SIGTERM's 30 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def _assets_loaded(base: str) -> bool:
    body = json.dumps({"query": "{ assetNodes { id } }"}).encode()
    req = urllib.request.Request(f"{base}/graphql", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return bool(json.load(resp).get("data", {}).get("assetNodes"))
    except (OSError, ValueError):
        return False


def _chromium(url: str, action: list[str], size: str, wait_ms: int) -> str:
    """Run headless Chromium on `url` with a fresh profile; its stdout."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
             f"--virtual-time-budget={wait_ms}", *action, url],
            check=True, capture_output=True, timeout=180,
        )
    return done.stdout.decode()


def screenshot(url: str, out: Path, size: str = "1600,1000", wait_ms: int = 20000) -> Path:
    """A PNG of `url` after its scripts have had `wait_ms` of (virtual) time to render."""
    _chromium(url, [f"--screenshot={out}"], size, wait_ms)
    return out


def dump_dom(url: str, size: str = "1600,1000", wait_ms: int = 20000) -> str:
    """The DOM of `url` as rendered (HTML), after `wait_ms` of (virtual) time, no clicks."""
    return _chromium(url, ["--dump-dom"], size, wait_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--asset", nargs="+", default=["report", "dataset_status"],
                        help="assets whose pages to capture")
    parser.add_argument("--height", type=int, default=2200,
                        help="height of the asset pages' shots (px; the width is 1600)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve()))
    from lake_schema.storage import Lake
    from pipelines.plots import REPORTS_DIR, REPORTS_PORT

    reports = Lake().path(REPORTS_DIR)  # a local lake; an s3:// one has its own server
    with reports_server(reports, REPORTS_PORT), webserver(free_port()) as base:
        shots = {"asset-graph.png": (f"{base}/asset-groups", "1600,1000")} | {
            f"asset-{asset}.png": (f"{base}/assets/{asset}", f"1600,{args.height}")
            for asset in args.asset
        }
        for name, (url, size) in shots.items():
            print(f"{url} -> {screenshot(url, args.out / name, size=size)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
