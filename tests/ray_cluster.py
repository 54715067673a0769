"""A local Ray cluster for tests and the corpus benchmark: a head and worker processes on this machine, on the
loopback interface (127.0.0.2), each `ray start --block` in its own process group and temporary folder, stopped (and the
folder removed) afterwards, whatever happened."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
# Every node on the loopback interface: Ray replaces "127.0.0.1" and "localhost" by the machine's network address,
# but takes any other loopback address (127.0.0.0/8) as it is.
HOST = "127.0.0.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _group(pgid: int) -> list[int]:
    """Pids of the processes in a process group."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    out.append(int(entry))
            except ProcessLookupError:
                pass
    return out


def _stop(procs: list[subprocess.Popen], timeout_s: float = 60) -> None:
    """SIGTERM each `ray start --block` group (it stops its processes), then SIGKILL whatever is left."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        for pid in _group(p.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()
    for p in procs:  # the group's last members may take a moment to go
        end = time.monotonic() + 10
        while _group(p.pid) and time.monotonic() < end:
            time.sleep(0.2)


@contextmanager
def local_cluster(workers: int = 1, cpus_per_node: int = 1, start_timeout_s: float = 180) -> Iterator[str]:
    """Yields the address ("127.0.0.2:port") of a running cluster: a head and `workers` worker nodes, each with
    cpus_per_node CPUs; the head runs tasks too. Everything is stopped and the temporary folder removed after."""
    if not RAY.exists():
        raise RuntimeError(f"{RAY} is missing: `bash scripts/setup.sh --dev` installs Ray")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    port = _free_port()
    address = f"{HOST}:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = [f"--num-cpus={cpus_per_node}", f"--node-ip-address={HOST}", "--object-store-memory=80000000",
              "--disable-usage-stats", "--block"]
    procs: list[subprocess.Popen] = []
    logs = []

    def start(args: list[str], name: str) -> None:
        log = open(Path(temp) / f"{name}.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(subprocess.Popen([str(RAY), "start", *args, *common], stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, env=env, cwd=temp, start_new_session=True))

    try:
        start(["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false"], "head")
        _wait_for(address, 1, start_timeout_s, procs)
        for i in range(workers):
            start([f"--address={address}"], f"worker{i}")
        _wait_for(address, 1 + workers, start_timeout_s, procs)
        yield address
    finally:
        _stop(procs)
        for log in logs:
            log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for(address: str, nodes: int, timeout_s: float, procs: list[subprocess.Popen]) -> None:
    """Until `ray status` at the address counts `nodes` alive nodes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a `ray start` process exited early")
        out = subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=60)
        if out.returncode == 0 and _active_nodes(out.stdout) >= nodes:
            return
        time.sleep(1)
    raise RuntimeError(f"the local Ray cluster did not reach {nodes} nodes in {timeout_s:.0f} s")


def _active_nodes(status: str) -> int:
    """Nodes listed under "Active:" in `ray status`'s output."""
    lines, count, active = status.splitlines(), 0, False
    for line in lines:
        if line.strip().startswith("Active:"):
            active = True
            continue
        if active:
            if line.strip().startswith(("Pending:", "Recent failures:")) or not line.strip():
                break
            count += line.strip().startswith("1 node_")
    return count
