"""Throwaway Redis Cluster (three masters, three replicas) and Sentinel setups for tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from .redis_server import RedisServer, cli_binary, free_port, port_is_free, server_binary, stop_process


def _free_port_with_bus() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 <= 65535 and port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port with a free cluster bus port")


def _wait(condition: Callable[[], bool], what: str | Callable[[], str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what if isinstance(what, str) else what()}")
        time.sleep(0.1)


class LocalCluster:
    """Six ``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster create``.

    Args:
        masters: Number of masters; each gets one replica.
        node_timeout: ``cluster-node-timeout`` in milliseconds.
    """

    def __init__(self, masters: int = 3, node_timeout: int = 5000) -> None:
        self.cli = cli_binary()
        self.masters = masters
        # Each node's bus port is the default, port + 10000 (Redis 6.2 has no cluster-port to set it).
        self.servers = [
            RedisServer("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", str(node_timeout), port=_free_port_with_bus())
            for _ in range(masters * 2)
        ]

    @property
    def url(self) -> str:
        """``redis-cluster://`` URL listing every node as a startup node."""
        return "redis-cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    @property
    def first_url(self) -> str:
        """``redis://`` URL of one node (enough for a cluster client to find the rest)."""
        return self.servers[0].url

    def start(self) -> LocalCluster:
        """Start the nodes, create the cluster, and wait until every slot is served and every master has a replica."""
        try:
            for server in self.servers:
                server.start()
            subprocess.run(
                [self.cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )
            self.wait_healthy()
        except BaseException:
            self.cleanup()
            raise
        return self

    def node(self, port: int) -> redis.Redis:
        """A plain client on one node."""
        return redis.Redis(port=port, socket_timeout=5)

    def server(self, port: int) -> RedisServer:
        """The node on ``port``."""
        return next(s for s in self.servers if s.port == port)

    def roles(self) -> dict[int, str]:
        """Port -> ``master`` or ``slave``, as each running node reports itself."""
        out: dict[int, str] = {}
        for server in self.servers:
            if not server.alive():
                continue
            with self.node(server.port) as conn:
                out[server.port] = conn.role()[0].decode()
        return out

    def wait_healthy(self, timeout: float = 120) -> None:
        """Wait until all nodes agree the cluster is ok and each master has a connected replica.

        A timeout names what was still wrong at the last look (a busy machine can take a while to sync replicas).
        """
        why = ["not looked at yet"]

        def healthy() -> bool:
            for server in self.servers:
                why[0] = f"node {server.port} is not running"
                if not server.alive():
                    return False
                with self.node(server.port) as conn:
                    why[0] = f"node {server.port} does not answer"
                    state = conn.cluster("info")["cluster_state"]
                    role = conn.role()
                    why[0] = f"node {server.port}: cluster_state {state}, role {role!r}"
                    if state != "ok":
                        return False
                    if role[0] == b"master" and not role[2]:
                        return False
                    if role[0] == b"slave" and role[3] != b"connected":
                        return False
            roles = self.roles()
            why[0] = f"roles {roles}"
            return list(roles.values()).count("master") == self.masters

        _wait(healthy, lambda: f"the cluster to be healthy (last seen: {why[0]})", timeout)

    def master_of_slot(self, slot: int) -> int:
        """Port of the master serving ``slot``, as the first running node sees it."""
        with self.node(next(s.port for s in self.servers if s.alive())) as conn:
            for start, end, master, *_ in conn.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise LookupError(slot)

    def replica_of(self, master_port: int) -> int:
        """Port of a replica of the master on ``master_port``."""
        with self.node(master_port) as conn:
            role = conn.role()
        return int(role[2][0][1])

    def failover(self, slot: int, timeout: float = 30) -> tuple[int, int]:
        """``CLUSTER FAILOVER`` on the replica of ``slot``'s master; returns ``(old master, new master)`` ports."""
        old = self.master_of_slot(slot)
        new = self.replica_of(old)
        with self.node(new) as conn:
            conn.execute_command("CLUSTER FAILOVER")
        _wait(lambda: self.master_of_slot(slot) == new, f"port {new} to serve slot {slot}", timeout)
        self.wait_healthy(timeout)
        return old, new

    def kill_master(self, slot: int, timeout: float = 30) -> tuple[int, int]:
        """SIGKILL the master of ``slot`` and wait until its replica serves it; returns ``(old, new)`` ports.

        The killed node stays down until :meth:`restart`; the replica takes over on its
        own once the others have not heard from the master for ``cluster-node-timeout``.
        """
        old = self.master_of_slot(slot)
        new = self.replica_of(old)
        self.server(old).kill()
        _wait(lambda: self.master_of_slot(slot) == new, f"port {new} to take over slot {slot}", timeout)
        return old, new

    def restart(self, port: int, timeout: float = 60) -> None:
        """Start a killed node again from its ``nodes.conf``; it rejoins, empty, as a replica."""
        self.server(port).start()
        self.wait_healthy(timeout)

    def cleanup(self) -> None:
        """Stop every node and delete their directories."""
        for server in self.servers:
            server.cleanup()


class LocalSentinel:
    """A primary, one replica and one ``redis-server --sentinel`` watching them as ``service``.

    Args:
        service: The name the sentinel monitors the primary under.
        password: ``requirepass`` / ``masterauth`` of the data nodes (None: no password).
        sentinel_password: ``requirepass`` of the sentinel itself (None: no password).
    """

    def __init__(self, service: str = "schedule", password: str | None = None,
                 sentinel_password: str | None = None) -> None:
        self.service = service
        self.password = password
        self.sentinel_password = sentinel_password
        self.primary = RedisServer()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.primary.port))
        self.sentinel_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cbr-sentinel-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalSentinel:
        """Start the data nodes and the sentinel; wait until the sentinel knows the replica."""
        try:
            self.primary.start()
            self.replica.start()
            if self.password:
                # Set after start: RedisServer.start pings without a password.
                for server in (self.primary, self.replica):
                    with redis.Redis(port=server.port) as conn:
                        conn.config_set("masterauth", self.password)
                        conn.config_set("requirepass", self.password)
            lines = [
                f"port {self.sentinel_port}",
                "bind 127.0.0.1",
                f"dir {self.dir}",
                f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1",
                f"sentinel down-after-milliseconds {self.service} 1000",
                f"sentinel failover-timeout {self.service} 5000",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {self.service} {self.password}")
            if self.sentinel_password:
                lines.append(f"requirepass {self.sentinel_password}")
            config = self.dir / "sentinel.conf"
            config.write_text("\n".join(lines) + "\n")
            self.process = subprocess.Popen([server_binary(), str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.STDOUT)
            self.wait_ready()
        except BaseException:
            self.cleanup()
            raise
        return self

    def sentinel(self) -> redis.Redis:
        """A client on the sentinel."""
        return redis.Redis(port=self.sentinel_port, password=self.sentinel_password, socket_timeout=5)

    def data_node(self, port: int) -> redis.Redis:
        """A client on one data node."""
        return redis.Redis(port=port, password=self.password, socket_timeout=5)

    def primary_port(self) -> int:
        """Port of the primary, as the sentinel reports it."""
        with self.sentinel() as conn:
            return int(conn.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)[1])

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the sentinel sees the primary and a healthy, connected replica."""

        def ready() -> bool:
            with self.sentinel() as conn:
                replicas = conn.sentinel_slaves(self.service)
            return any(r["flags"] == "slave" and r["master-link-status"] == "ok" for r in replicas)

        _wait(ready, "the sentinel to see a healthy replica", timeout)

    def failover(self, timeout: float = 30) -> tuple[int, int]:
        """``SENTINEL FAILOVER``; returns ``(old primary, new primary)`` ports once the old one replicates."""
        old = self.primary_port()

        def started() -> bool:
            with self.sentinel() as conn:
                return bool(conn.execute_command("SENTINEL", "FAILOVER", self.service))

        _wait(started, "the sentinel to accept the failover", timeout)
        _wait(lambda: self.primary_port() != old, "the sentinel to promote the replica", timeout)
        new = self.primary_port()

        def demoted() -> bool:
            with self.data_node(old) as conn:
                role = conn.role()
            return role[0] == b"slave" and int(role[2]) == new and role[3] == b"connected"

        _wait(demoted, "the old primary to replicate the new one", timeout)
        self.wait_ready(timeout)
        return old, new

    def cleanup(self) -> None:
        """Stop everything and delete the directories."""
        stop_process(self.process)
        self.process = None
        self.replica.cleanup()
        self.primary.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
