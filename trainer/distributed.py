"""Multi-process (multi-host) JAX: join a run of N processes, or start N on this machine.

A data-parallel run is N copies of the same command, one per host (or per GPU group), each
told the coordinator's address, N and its own index. `join` connects this process before any
JAX computation (`jax.distributed.initialize`; on CPU the collectives go over Gloo/TCP), after
which `jax.devices()` holds every process's devices and a jitted update over a mesh of them
all-reduces its gradients across processes. The loader gives each process its own slice of
every global batch (`grain.sharding.ShardByJaxProcess`), so the processes together compute
the same update as one process with the whole batch.

`launch_local` runs the N copies on this machine (127.0.0.1, a free port): what a cluster
scheduler does across hosts (e.g. `srun` starting one task per host), for testing and for
one machine with several accelerators that each want a process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")


def check_args(coordinator: str | None, num_processes: int | None,
               process_id: int | None) -> None:
    """ValueError (one line, naming the flag) unless the three are given together and valid."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError("--coordinator, --num-processes and --process-id go together: give "
                         "all three (or --processes N to start N local processes)")
    if not any(given):
        return
    if not _ADDRESS.match(coordinator) or not 0 < int(coordinator.rsplit(":", 1)[1]) < 65536:
        raise ValueError(f"--coordinator {coordinator!r} is not HOST:PORT")
    if num_processes < 1:
        raise ValueError(f"--num-processes {num_processes} must be >= 1")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id {process_id} must be in 0..{num_processes - 1}")


def join(coordinator: str, num_processes: int, process_id: int,
         timeout_s: int = 300) -> None:
    """Connect this process to the run (call before any JAX computation); process 0 hosts
    the coordinator at `coordinator` (HOST:PORT, reachable from every process)."""
    check_args(coordinator, num_processes, process_id)
    import jax

    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=timeout_s)


def is_primary() -> bool:
    """Process 0 (or a single-process run): the one that writes run files and logs."""
    import jax

    return jax.process_index() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local(command: Sequence[str], processes: int) -> int:
    """Run `command` (argv) `processes` times on this machine, as processes 0..N-1 of one
    run (`--coordinator 127.0.0.1:<free port> --num-processes N --process-id i` appended).
    Returns the first non-zero exit status, else 0; when one process fails the others are
    stopped (they would wait for it forever)."""
    if processes < 1:
        raise ValueError(f"--processes {processes} must be >= 1")
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([*command, "--coordinator", address, "--num-processes",
                               str(processes), "--process-id", str(i)], env=os.environ.copy())
             for i in range(processes)]
    status = 0
    try:
        while any(p.poll() is None for p in procs):
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if failed:
                status = failed[0]
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return status or next((p.returncode for p in procs if p.returncode), 0)


def worker_command(module: str, argv: Sequence[str]) -> list[str]:
    """`python -m <module> <argv>` with this interpreter: what each local process runs."""
    return [sys.executable, "-m", module, *argv]
