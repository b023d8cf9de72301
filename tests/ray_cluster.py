"""A real local Ray cluster for tests: a head and workers, each `ray start --block` in a subprocess.

Every node gets its own fixed ports (on a loaded 2-core box the raylet gives up waiting for the
agents' port files when they are left to chance), a small object store, one CPU and a custom
resource ``node_NAME`` so a test can tell the nodes apart. Each `ray start --block` runs in its own
session: it is stopped by its pid with SIGTERM (it takes its raylet and workers down), or killed
with SIGKILL on its whole process group to play a machine that dies mid-run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
SRC = str(Path(__file__).resolve().parents[1] / "src")
OBJECT_STORE = 100 * 1024 * 1024
START_TIMEOUT_S = 300.0
START_ATTEMPTS = 3
BOOT_NICE = -10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    env: Mapping[str, str] = field(default_factory=dict)  # e.g. SDENV_FLEET_VENV for this node
    proc: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    marker: str = ""
    ip: str = "127.0.0.1"

    @property
    def resource(self) -> str:
        return f"node_{self.name}"


@dataclass
class Cluster:
    address: str
    nodes: list[Node]
    temp_dir: Path

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL every process of the node, as when its machine dies: `ray start`, raylet,
        workers (Ray may give them their own process groups) and what they started.

        Never the last node started: a driver on this machine (``sdenv fleet verify``) attaches
        to the raylet whose address the last ``ray start`` cached in the shared session dir
        (``node_ip_address.json``), and killing that raylet loses every node's results, not one
        (measured: with one shared address the driver's raylet was any node, and killing it
        failed the other nodes' rows as "worker died" in 5 of 9 runs)."""
        node = self.node(name)
        if node is self.nodes[-1]:
            raise ValueError(f"node {name} hosts the driver's raylet (started last): kill another")
        for pid in marked_pids(node.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert node.proc is not None
        node.proc.wait(timeout=30)


MARKER = "SDENV_TEST_RAY_NODE"


def marked_pids(marker: str) -> list[int]:
    """Processes that inherited ``MARKER=marker``: everything a test node started, at any depth."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if needle in env.read_bytes().split(b"\0"):
                found.append(int(env.parent.name))
    return [pid for pid in found if pid != os.getpid()]


def _ports(head: bool) -> list[str]:
    args = [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]
    if head:
        args += ["--include-dashboard=false"]
    return args


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_agent_register_timeout_ms"] = "120000"
    # Notice a SIGKILLed node in seconds, not the default half minute.
    env["RAY_health_check_period_ms"] = "1000"
    env["RAY_health_check_timeout_ms"] = "1000"
    env["RAY_health_check_failure_threshold"] = "3"
    env.update(extra)
    return env


def _alive(address: str, want: int, timeout: float) -> dict[str, str]:
    """Wait until ``want`` nodes are alive; map each custom ``node_*`` resource to its node id."""
    probe = (
        f"import json, ray; ray.init(address={address!r}, log_to_driver=False); "
        "print(json.dumps({k: n['NodeID'] for n in ray.nodes() if n['Alive'] "
        "for k in n['Resources'] if k.startswith('node_')}))"
    )
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env=_env({}),
            timeout=timeout,
            check=False,
        )
        last = proc.stderr.strip()[-400:]
        if proc.returncode == 0:
            ids: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
            if len(ids) >= want:
                return ids
        time.sleep(2)
    raise RuntimeError(f"Ray cluster at {address}: {want} nodes not alive in {timeout} s: {last}")


def _priority(pgid: int, nice: int) -> None:
    """Boot at a raised priority where allowed (root): on a loaded box the agents then write their
    ports in time; back to normal once the node runs, so the tests compete fairly."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PGRP, pgid, nice)


def _start(node: Node, where: list[str], log: Path, deadline: float) -> None:
    """`ray start --block` until it says the node runs. Under load the raylet can give up on its
    agents (a fixed 15 s wait for their port files) and `ray start` exits: then start it again."""
    common = ["--block", "--num-cpus=1", f"--object-store-memory={OBJECT_STORE}"]
    common += [f'--resources={{"{node.resource}": 1}}', "--disable-usage-stats"]
    # One loopback address per node (the head 127.0.0.1, then .2, .3): see ``Cluster.kill``.
    common += [f"--node-ip-address={node.ip}"]
    for _attempt in range(START_ATTEMPTS):
        with log.open("wb") as fh:
            node.proc = subprocess.Popen(
                [RAY, "start", *where, *common, *_ports("--head" in where)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=_env({**node.env, MARKER: node.marker}),
                start_new_session=True,
            )
        _priority(node.proc.pid, BOOT_NICE)
        while time.monotonic() < deadline:
            if b"Ray runtime started" in log.read_bytes():
                _priority(node.proc.pid, 0)
                return
            if node.proc.poll() is not None:
                break
            time.sleep(1)
        _stop(node)
        if time.monotonic() >= deadline:
            break
    raise RuntimeError(f"node {node.name}: `ray start` failed; see {log}: {log.read_text()[-600:]}")


@contextlib.contextmanager
def local_cluster(nodes: list[Node]) -> Iterator[Cluster]:
    """Start ``nodes`` (the first is the head); stop each by its pid on the way out."""
    temp_dir = Path(tempfile.mkdtemp(prefix="sdray-", dir="/tmp"))  # short: unix socket paths
    port = free_port()
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    for i, node in enumerate(nodes):
        node.marker = f"{temp_dir.name}-{node.name}"
        node.ip = f"127.0.0.{i + 1}"
    try:
        for i, node in enumerate(nodes):
            head = ["--head", f"--port={port}", f"--temp-dir={temp_dir}"]
            _start(
                node,
                head if i == 0 else [f"--address={address}"],
                temp_dir / f"{node.name}.log",
                deadline,
            )
        ids = _alive(address, len(nodes), max(30.0, deadline - time.monotonic()))
        for node in nodes:
            node.node_id = ids[node.resource]
        yield Cluster(address, nodes, temp_dir)
    finally:
        for node in reversed(nodes):  # workers first, the head last
            _stop(node)
        for node in nodes:  # anything a node's tasks left running (e.g. after a kill): by pid
            for pid in marked_pids(node.marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop(node: Node) -> None:
    proc = node.proc
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops its raylet and workers
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
