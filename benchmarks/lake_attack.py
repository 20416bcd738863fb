"""The attack on the lake: kills, racing writers and readers during replacements,
on a local root and on an S3-compatible server, with the count of every way the lake failed.

Runs `lake_schema.stress.run_attack` twice, on a fresh local lake and on fresh buckets of a
moto S3 server started here on 127.0.0.1 (a subprocess, so its request handling does not
share this process's interpreter lock). The full size: 40 SIGKILLed writers (each followed
by every reader, a vacuum, a rewrite and verify); 3 races of 8 writers of different tasks,
4 of one evaluations partition and 2 to 4 of one checkpoint key; 2 reader processes during
1,000 replacements of one key. Prints a markdown table of the counts and the wall time of
each class, where the kills fell, and the first findings; exits 1 when any failure count is
not zero.

    python benchmarks/lake_attack.py              # the full size (tens of minutes)
    python benchmarks/lake_attack.py --small      # a quick run (minutes)
    python benchmarks/lake_attack.py --small --only local
    python benchmarks/lake_attack.py --only s3 --classes readers
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from lake_schema import stress
from lake_schema.storage import Lake, S3Options

# The key `stress.attack_readers` replaces: its writer writes the payloads of seeds 1, 2, ...
# in turn over the first write's seed 0
REPLACED_KEY = (stress.KILL_TASK, "replace", 0)
COLUMNS = [("trials", "trials"), ("reads", "reads"), ("mixed reads", "mixed_reads"),
           ("unreadable", "unreadable"), ("silent losses", "silent_losses"),
           ("wrong outcomes", "wrong_outcomes"), ("tracebacks", "unexpected_errors"),
           ("verify failures", "verify_failures"), ("conflicts (expected)", "conflicts")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server(timeout_s: float = 60.0) -> Iterator[S3Options]:
    """A moto S3 server on 127.0.0.1 in a subprocess, for as long as the block runs."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", port), timeout=1.0):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the moto server did not start on port {port} "
                                   "(is moto[server] installed?)")
            time.sleep(0.1)
        yield S3Options(endpoint_url=f"http://127.0.0.1:{port}", key="testing",
                        secret="testing-secret", region="eu-west-1", addressing_style="path")
    finally:
        proc.terminate()
        proc.wait(30)


def local_lakes(folder: Path) -> Callable[[], Lake]:
    """A fresh local lake under `folder` at every call."""
    return lambda: Lake(folder / f"lake-{uuid.uuid4().hex[:8]}")


def s3_lakes(options: S3Options) -> Callable[[], Lake]:
    """A lake in a fresh bucket of the S3 server at every call."""
    def make() -> Lake:
        bucket = f"attack-{uuid.uuid4().hex[:10]}"
        lake = Lake(f"s3://{bucket}/lake", s3=options)
        lake.fs.mkdir(bucket)
        return lake
    return make


def remembering(factory: Callable[[], Lake], made: list[Lake]) -> Callable[[], Lake]:
    """`factory`, keeping every lake it makes in `made` (one per attack class, in order)."""
    def make() -> Lake:
        made.append(factory())
        return made[-1]
    return make


def count_replacements(results: list[stress.AttackCounts], lakes: list[Lake]) -> None:
    """`stress.attack_readers` counts the replacements it planned as its trials, even when
    its writer dies part way (issue #30). Here its trials become the replacements that ran:
    the seed of the write the key shows at the end, the writer writing seeds 1, 2, ... in
    turn; the planned number goes into its tally."""
    for counts, lake in zip(results, lakes, strict=True):
        if counts.attack != "readers during replacements":
            continue
        counts.tally["replacements planned"] = counts.trials
        try:
            seed = stress.key_seed(lake, *REPLACED_KEY)
        except Exception as e:  # the read's failure is counted by the attack already
            counts.tally[f"replacements that ran: unknown ({type(e).__name__})"] += 1
            continue
        counts.trials = seed or 0


def _attack(factory: Callable[[], Lake], size: stress.AttackSize, ctx,
            classes: list[str]) -> list[stress.AttackCounts]:
    """`stress.run_attack` on lakes from `factory`, the replacements that ran counted."""
    lakes: list[Lake] = []
    results = stress.run_attack(remembering(factory, lakes), size, ctx, classes=classes)
    count_replacements(results, lakes)
    return results


def _revision() -> str:
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def table(results: list[stress.AttackCounts]) -> str:
    """The counts as a markdown table, one row per attack class and lake."""
    head = ["attack", "lake", *(name for name, _ in COLUMNS), "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in results:
        cells = [c.attack, c.lake, *(f"{getattr(c, field):,}" for _, field in COLUMNS),
                 f"{c.wall_s:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(results: list[stress.AttackCounts]) -> str:
    """Per row: its tally (where the kills fell, stalls, writers) and first findings."""
    lines = []
    for c in results:
        lines.append(f"- {c.attack}, {c.lake}: " + "; ".join(
            f"{k}: {v}" for k, v in sorted(c.tally.items())))
        lines += [f"    - {f}" for f in c.findings[:8]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--small", action="store_true",
                   help=f"a quick run: {stress.SMALL}")
    p.add_argument("--only", choices=["local", "s3"], help="attack one kind of lake only")
    p.add_argument("--classes", nargs="+", choices=stress.ATTACK_CLASSES,
                   default=list(stress.ATTACK_CLASSES), help="the attack classes to run")
    p.add_argument("--keep", type=Path,
                   help="keep the local lakes in this folder (default: a temporary one)")
    args = p.parse_args(argv)
    size = stress.SMALL if args.small else stress.FULL
    ctx = stress.context()
    print(f"attacking at {size} on {_revision()} ({platform.node()})", file=sys.stderr)

    started = time.perf_counter()
    results: list[stress.AttackCounts] = []
    folder = args.keep or Path(tempfile.mkdtemp(prefix="lake-attack-"))
    try:
        if args.only in (None, "local"):
            results += _attack(local_lakes(folder), size, ctx, args.classes)
        if args.only in (None, "s3"):
            with s3_server() as options:
                results += _attack(s3_lakes(options), size, ctx, args.classes)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)

    print(f"### The attack at {'the small' if args.small else 'the full'} size "
          f"({_revision()}, {time.perf_counter() - started:.0f} s)\n")
    print(table(results))
    print()
    print(details(results))
    return 0 if all(c.ok for c in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
