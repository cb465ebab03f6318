"""A local raftq cluster of real `raftq serve` processes for tests.

Every node listens on 127.0.0.1 ports picked free by binding port 0, keeps
its data in a temporary directory, and writes its log to `node-N.log` there.
Waits poll the nodes' ClusterStatus with a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from raftq._proto.raftq.v1 import admin_pb2, admin_pb2_grpc

CLIENT_ROOT = Path(__file__).resolve().parent.parent
REPOSITORY_ROOT = CLIENT_ROOT.parent.parent
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
STATUS_POLL_SECONDS = 0.1


class ClusterError(RuntimeError):
    """A cluster that did not start, form or stop as expected."""


def raftq_binary() -> Path:
    """Return the raftq binary: RAFTQ_BIN if set, else the workspace's debug build."""
    configured = os.environ.get("RAFTQ_BIN")
    binary = Path(configured) if configured else REPOSITORY_ROOT / "target" / "debug" / "raftq"
    if not binary.is_file():
        raise ClusterError(
            f"raftq binary not found at {binary}; run `cargo build -p raftq-cli` in "
            f"{REPOSITORY_ROOT} or set RAFTQ_BIN"
        )
    return binary


def free_ports(count: int) -> list[int]:
    """Return `count` distinct ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


@dataclass
class Node:
    node_id: int
    client_port: int
    peer_port: int
    metrics_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """Three (or `size`) raftq nodes started as child processes."""

    base_dir: Path
    size: int = 3
    caller_clock: bool = False
    sweep_interval_ms: int | None = None
    binary: Path = field(default_factory=raftq_binary)
    nodes: list[Node] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [node.endpoint for node in self.nodes]

    def start(self) -> None:
        """Start every node, form the cluster with `raftq init` and wait for a leader."""
        ports = free_ports(3 * self.size)
        for index in range(self.size):
            node_id = index + 1
            data_dir = self.base_dir / f"node-{node_id}"
            data_dir.mkdir(parents=True)
            self.nodes.append(
                Node(
                    node_id=node_id,
                    client_port=ports[3 * index],
                    peer_port=ports[3 * index + 1],
                    metrics_port=ports[3 * index + 2],
                    data_dir=data_dir,
                    log_path=self.base_dir / f"node-{node_id}.log",
                )
            )
        for node in self.nodes:
            self._spawn(node)
        for node in self.nodes:
            self._wait_until_serving(node)

        self._run_cli("init", "--endpoints", ",".join(f"http://{e}" for e in self.endpoints))
        self.wait_for_leader()

    def _spawn(self, node: Node) -> None:
        arguments = [
            str(self.binary),
            "serve",
            "--id",
            str(node.node_id),
            "--data-dir",
            str(node.data_dir),
            "--listen",
            node.endpoint,
            "--peer-listen",
            f"127.0.0.1:{node.peer_port}",
            "--metrics-listen",
            f"127.0.0.1:{node.metrics_port}",
        ]
        if self.caller_clock:
            arguments.append("--accept-caller-clock")
        if self.sweep_interval_ms is not None:
            arguments.extend(["--sweep-interval-ms", str(self.sweep_interval_ms)])
        with node.log_path.open("ab") as log:
            node.process = subprocess.Popen(
                arguments, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def _run_cli(self, *arguments: str) -> str:
        completed = subprocess.run(
            [str(self.binary), *arguments],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0:
            raise ClusterError(
                f"raftq {' '.join(arguments)} exited with {completed.returncode}:\n"
                f"{completed.stdout}\n{completed.stderr}"
            )
        return completed.stdout

    def status(self, node: Node) -> admin_pb2.ClusterStatusResponse | None:
        """Return the node's ClusterStatus, or None when it does not reply in time."""
        with grpc.insecure_channel(node.endpoint) as channel:
            try:
                return admin_pb2_grpc.AdminStub(channel).ClusterStatus(
                    admin_pb2.ClusterStatusRequest(), timeout=2.0
                )
            except grpc.RpcError:
                return None

    def _wait_until_serving(self, node: Node) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not node.running:
                raise ClusterError(
                    f"raftq node {node.node_id} exited during start:\n{node.log_tail()}"
                )
            if self.status(node) is not None:
                return
            time.sleep(STATUS_POLL_SECONDS)
        raise ClusterError(
            f"raftq node {node.node_id} did not serve within {START_TIMEOUT_SECONDS} s:\n"
            f"{node.log_tail()}"
        )

    def wait_for_leader(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> Node:
        """Wait until every running node names the same leader, and return it."""
        deadline = time.monotonic() + timeout_seconds
        last_seen: dict[int, object] = {}
        while time.monotonic() < deadline:
            running = [node for node in self.nodes if node.running]
            leader_ids = set()
            for node in running:
                status = self.status(node)
                leader_id = status.leader_id if status and status.HasField("leader_id") else None
                last_seen[node.node_id] = leader_id
                leader_ids.add(leader_id)
            if len(leader_ids) == 1 and None not in leader_ids:
                leader_id = leader_ids.pop()
                leader = self.node(leader_id)
                if leader.running:
                    return leader
            time.sleep(STATUS_POLL_SECONDS)
        logs = "\n".join(f"--- node {node.node_id}\n{node.log_tail()}" for node in self.nodes)
        raise ClusterError(
            f"no agreed leader within {timeout_seconds} s (leader per node: {last_seen}):\n{logs}"
        )

    def node(self, node_id: int) -> Node:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node with id {node_id} in the cluster")

    def stop_node(self, node: Node) -> None:
        """Stop a node with SIGTERM, and SIGKILL it if it has not exited in time."""
        if node.process is None or node.process.poll() is not None:
            return
        node.process.send_signal(signal.SIGTERM)
        try:
            node.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def stop_follower(self) -> Node:
        """Stop one node that is not the leader, and return it."""
        leader = self.wait_for_leader()
        follower = next(node for node in self.nodes if node is not leader and node.running)
        self.stop_node(follower)
        return follower

    def stop(self) -> None:
        for node in self.nodes:
            self.stop_node(node)
