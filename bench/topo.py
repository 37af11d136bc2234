"""Hosts in network namespaces on one bridge, the daemons under test, the in-namespace agent, process stats.

Everything lives in namespaces whose names start with ``bgpdbench-<random>-``, built with
`bgpd.lab.netns.Fabric`; `Topology.close()` stops every process we started (by pid) and deletes the
namespaces. The machine's own namespace is never touched: veths are created directly inside their target
namespaces and every address and sysctl is set inside a benchmark namespace.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bgpd.lab import netns
from bgpd.lab.netns import Fabric, Process

from . import birdconf

UNDERLAY = "192.168.100"
UNDERLAY6 = "fd00:100::"  # IPv6 hosts (the IPv6 scenarios): fd00:100::OCTET/64 beside 192.168.100.OCTET/24
ASN = 64512
POOL = "10.0.0.0/8"
POOL6 = "fd00:10::/48"  # the IPv6 scenarios' pool (workload /128s)
NS_PREFIX = "bgpdbench-"
BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRDC = shutil.which("birdc") or "/usr/sbin/birdc"
AGENT = str(Path(__file__).with_name("agent.py"))
ROOT = Path(__file__).resolve().parent.parent

# Every live topology, so that a signal handler can tear them down.
LIVE: list[Topology] = []


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------- processes
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat from the third (state) on; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds."""
    total = 0
    for pid in pids:
        fields = proc_stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------- the agent
class Agent:
    """`bench/agent.py` running inside a namespace, spoken to over its stdin/stdout."""

    def __init__(self, fabric: Fabric, ns: str, log_path: Path, protocol: int = 12, pool: str = POOL) -> None:
        err = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            popen = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    AGENT,
                    "--protocol",
                    str(protocol),
                    "--pool",
                    pool,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        finally:
            err.close()
        self.proc = Process(f"agent-{ns}", ns, popen, str(log_path))
        fabric.processes.append(self.proc)
        self._buf = b""
        self._lines: list[str] = []
        words = self.expect(lambda w: w[0] == "ready", 30.0, "agent ready")
        self.initial = int(words[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.popen.stdin is not None
        self.proc.popen.stdin.write(line.encode() + b"\n")
        self.proc.popen.stdin.flush()

    def _read(self, timeout: float) -> bool:
        out = self.proc.popen.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], max(timeout, 0.0))
        if not ready:
            return False
        chunk = os.read(out.fileno(), 65536)
        if not chunk:
            raise BenchError(f"agent in {self.proc.ns} exited: {self.proc.log_tail(5)}")
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        self._lines.extend(line.decode() for line in lines)
        return True

    def expect(self, match: Any, timeout: float, what: str) -> list[str]:
        """The first line (as words) for which `match(words)` is true; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, line in enumerate(self._lines):
                words = line.split()
                if words and match(words):
                    del self._lines[i]
                    return words
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            self._read(left)

    def change(self, op: str, prefix: str) -> float:
        """Add/delete one workload route; returns the monotonic time right before the netlink request."""
        self.send(f"{op} {prefix}")
        words = self.expect(
            lambda w: w[0] == "done" and w[1] == op and w[2] == prefix, 10.0, f"{op} {prefix}"
        )
        if words[4] != "0":
            raise BenchError(f"{op} {prefix} in {self.proc.ns}: errno {words[4]}")
        return float(words[3])

    def wait(self, kind: str, value: str | int) -> None:
        self.send(f"wait {kind} {value}")

    def seen(self, kind: str, value: str | int, timeout: float) -> float:
        words = self.expect(
            lambda w: w[0] == "seen" and w[1] == kind and w[2] == str(value), timeout, f"{kind} {value}"
        )
        return float(words[3])

    def count(self) -> tuple[int, int]:
        self.send("count")
        words = self.expect(lambda w: w[0] == "count", 30.0, "count")
        return int(words[1]), int(words[2])


# --------------------------------------------------------------------------------------------- hosts
@dataclass
class Host:
    name: str
    ns: str
    address: str
    workdir: Path
    address6: str = ""  # set on hosts built with ipv6=True
    daemon: Process | None = None
    kind: str = ""
    bird_socket: Path | None = None

    def ip(self, *args: str, check: bool = True) -> str:
        return netns.ip(*args, ns=self.ns, check=check)

    def tree(self) -> list[int]:
        return tree_pids(self.daemon.pid) if self.daemon else []

    def cpu(self) -> float:
        return cpu_seconds(self.tree())

    def rss(self) -> int:
        return rss_bytes(self.tree())

    def roles(self) -> dict[str, list[int]]:
        """The tree's pids by role: bgpd, exabgp, bridge (ExaBGP's API helper), bird, other."""
        out: dict[str, list[int]] = {}
        for pid in self.tree():
            line = cmdline(pid)
            # the bridge, or what it becomes once it has handed ExaBGP's pipes to bgpd (`sleep infinity`)
            if "bgpd.exabgp.bridge" in line or line.split(" ")[0].endswith("sleep"):
                role = "bridge"
            elif "exabgp" in line:
                role = "exabgp"
            elif "bgpd" in line and " run " in line:
                role = "bgpd"
            elif "bird" in line:
                role = "bird"
            else:
                role = "other"
            out.setdefault(role, []).append(pid)
        return out

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds per role of the tree."""
        return {role: cpu_seconds(pids) for role, pids in self.roles().items()}

    def rss_by_process(self) -> dict[str, int]:
        """RSS bytes per role of the tree."""
        return {role: rss_bytes(pids) for role, pids in self.roles().items()}

    def exabgp_pid(self) -> int | None:
        for pid in self.tree()[1:]:
            if "exabgp" in cmdline(pid) and " server " in cmdline(pid):
                return pid
        return None


@dataclass
class Topology:
    """A switch namespace with a bridge and hosts on it (192.168.100.0/24, and fd00:100::/64 for hosts
    built with ipv6=True); `close()` removes all."""

    workdir: Path
    tag: str
    fabric: Fabric = field(init=False)
    switch: str = field(init=False)
    hosts: dict[str, Host] = field(default_factory=dict)
    agents: list[Agent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fabric = Fabric(prefix=f"{NS_PREFIX}{secrets.token_hex(3)}-")
        LIVE.append(self)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.switch = self.fabric.namespace("sw")
        self.fabric.bridge(self.switch)

    def host(self, name: str, octet: int, workload_dev: bool = True, ipv6: bool = False) -> Host:
        """A host at UNDERLAY.OCTET/24; with `ipv6` also at fd00:100::OCTET/64 (as tests/e2e: no duplicate
        address detection, so the address is usable at once; forwarding on, as on a Calico host)."""
        ns = self.fabric.namespace(name)
        port = f"p{name}"[:15]
        self.fabric.veth(ns, "eth0", self.switch, port)
        netns.ip("link", "set", port, "master", "br0", ns=self.switch)
        address = f"{UNDERLAY}.{octet}"
        netns.ip("addr", "add", f"{address}/24", "dev", "eth0", ns=ns)
        address6 = ""
        if ipv6:
            address6 = f"{UNDERLAY6}{octet}"
            netns.ip("-6", "addr", "add", f"{address6}/64", "dev", "eth0", "nodad", ns=ns)
            netns.sysctl(ns, "net.ipv6.conf.all.forwarding", "1")
        if workload_dev:
            # the workload side: a veth called cali0 (no dummy driver on every kernel); both ends stay here
            netns.ip("link", "add", "cali0", "type", "veth", "peer", "name", "wl0", ns=ns)
            netns.ip("link", "set", "wl0", "up", ns=ns)
            netns.ip("link", "set", "cali0", "up", ns=ns)
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        host = Host(name, ns, address, workdir, address6)
        self.hosts[name] = host
        return host

    def agent(self, host: Host, pool: str = POOL) -> Agent:
        """The agent in `host`'s namespace, watching (and injecting) routes of `pool`'s family."""
        agent = Agent(self.fabric, host.ns, host.workdir / "agent.log", pool=pool)
        self.agents.append(agent)
        return agent

    # --- daemons -----------------------------------------------------------------------------------------
    def start_bgpd(
        self,
        host: Host,
        config: dict[str, Any],
        log_level: str = "info",
        launcher: tuple[str, ...] = ("-m", "bgpd"),
    ) -> Process:
        """`python -m bgpd run -c CONFIG`; `launcher` replaces `-m bgpd` (bench/memtrace.py runs bgpd
        under tracemalloc with it)."""
        config = {**config, "runtime": {"dir": str(host.workdir / "run"), "log_level": log_level}}
        path = host.workdir / "bgpd.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        host.daemon = self.fabric.spawn(
            f"bgpd-{host.name}",
            host.ns,
            [sys.executable, *launcher, "run", "-c", str(path)],
            str(host.workdir / "bgpd.log"),
            env={"PYTHONPATH": str(ROOT)},
        )
        host.kind = "bgpd"
        return host.daemon

    def start_bird(self, host: Host, conf: str) -> Process:
        path = host.workdir / "bird.conf"
        path.write_text(conf)
        sock = host.workdir / "bird.ctl"
        host.daemon = self.fabric.spawn(
            f"bird-{host.name}",
            host.ns,
            [BIRD, "-f", "-c", str(path), "-s", str(sock), "-P", str(host.workdir / "bird.pid")],
            str(host.workdir / "bird.log"),
        )
        host.bird_socket = sock
        host.kind = "bird"
        return host.daemon

    def start_exabgp(self, host: Host, conf: str, env: dict[str, str]) -> Process:
        """ExaBGP alone, started as bgpd starts it: `python -m bgpd.exabgp.launch server CONF` (bgpd's
        ExaBGP changes applied unless env has BGPD_EXABGP_UNPATCHED=1); `env` adds to ours."""
        path = host.workdir / "exabgp.conf"
        path.write_text(conf)
        host.daemon = self.fabric.spawn(
            f"exabgp-{host.name}",
            host.ns,
            [sys.executable, "-m", "bgpd.exabgp.launch", "server", str(path)],
            str(host.workdir / "exabgp.log"),
            env={"PYTHONPATH": str(ROOT), **env},
        )
        host.kind = "exabgp"
        return host.daemon

    def check_alive(self) -> None:
        for host in self.hosts.values():
            if host.daemon is not None and not host.daemon.alive():
                raise BenchError(
                    f"{host.kind} on {host.name} exited ({host.daemon.popen.returncode}); "
                    f"log {host.daemon.log_path}:\n{host.daemon.log_tail(10)}"
                )

    def close(self) -> None:
        try:
            self.fabric.close()
        finally:
            with contextlib.suppress(ValueError):
                LIVE.remove(self)

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def close_all() -> None:
    for topo in list(LIVE):
        with contextlib.suppress(Exception):
            topo.close()


def remove_namespace(ns: str) -> None:
    netns.remove_namespace(ns)


def leftovers() -> list[str]:
    return netns.list_namespaces(NS_PREFIX)


# --------------------------------------------------------------------------------------------- BIRD's CLI
class BirdCli:
    """A connection to BIRD's control socket (the birdc protocol: numbered reply lines)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._buf = b""
        self._reply()  # greeting

    def _reply(self) -> list[str]:
        lines: list[str] = []
        while True:
            while b"\n" not in self._buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise BenchError("BIRD closed its control socket")
                self._buf += chunk
            raw, _, self._buf = self._buf.partition(b"\n")
            line = raw.decode(errors="replace")
            lines.append(line)
            if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                return lines

    def command(self, text: str) -> list[str]:
        self.sock.sendall(text.encode() + b"\n")
        return self._reply()

    def close(self) -> None:
        self.sock.close()


def bird_cli(host: Host, timeout: float = 10.0) -> BirdCli:
    assert host.bird_socket is not None
    return BirdCli(host.bird_socket, timeout)


def birdconf_host(host: Host, peers: list[str]) -> str:
    return birdconf.host(host.address, peers, POOL, ASN)
