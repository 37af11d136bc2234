"""`bgpd lab`: the container network in a box, with real bgpd speakers on simulated hosts.

Each host is a network namespace on one underlay bridge (its own namespace, `<prefix>sw`). Each workload is
a namespace with a `/32` on `eth0`, a default route via the fake gateway 169.254.1.1 (on-link), and a veth
to its host named `cali<hash>`; the host side has proxy ARP and forwarding on, a `/32 dev cali… scope link`
route (protocol boot) and a blackhole for each of its blocks (protocol 80): the lab plays Felix. One
`bgpd run` per host does the rest.

Everything the lab creates is named with the topology's prefix (`bgpd<name>-`) and recorded in a state
directory, so `down` removes it, also after a crash. The machine's own namespace is never changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import yaml

from bgpd.lab import netns
from bgpd.lab.topology import LabHost, Topology

GATEWAY = "169.254.1.1"
METRICS_LISTEN = "127.0.0.1:9179"
STATE_ROOT = Path("/run/bgpd-lab")
REQUIRED = ("ip", "ping", "ss")
RTT = re.compile(r"time=([0-9.]+) ms")


class LabError(RuntimeError):
    """Something the user must act on; the message says what failed and where to look."""


def veth_name(workload: IPv4Address) -> str:
    """Host-side device of a workload: `cali` + 11 hex digits, as Calico names them (15 characters)."""
    return "cali" + hashlib.sha1(str(workload).encode()).hexdigest()[:11]


@dataclass(frozen=True, slots=True)
class Ping:
    source: str
    target: str
    ok: bool
    rtt_ms: float | None


@dataclass
class HostSummary:
    name: str
    address: str
    workloads: list[str]
    sessions_up: int
    sessions_total: int
    routes: dict[str, int] = field(default_factory=dict)
    reflector: bool = False


class Lab:
    def __init__(self, topology: Topology, state_dir: Path | None = None) -> None:
        self.topo = topology
        self.state_dir = state_dir or STATE_ROOT / topology.name
        self.prefix = topology.prefix
        self.switch = f"{self.prefix}sw"

    # ------------------------------------------------------------------ names

    def host_ns(self, host: LabHost) -> str:
        return f"{self.prefix}{host.name}"

    def workload_ns(self, host: LabHost, index: int) -> str:
        return f"{self.prefix}{host.name}-w{index}"

    def workloads(self) -> Iterator[tuple[LabHost, int, IPv4Address]]:
        for host in self.topo.hosts:
            for index, address in enumerate(host.workloads):
                yield host, index, address

    # ------------------------------------------------------------------ up

    def up(self, timeout: float = 60.0) -> list[HostSummary]:
        missing = [b for b in REQUIRED if shutil.which(b) is None]
        if missing:
            raise LabError(f"missing commands: {', '.join(missing)} (bash scripts/setup.sh installs them)")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces)")
        self.down()
        state: dict[str, object] = {"topology": self.topo.source, "prefix": self.prefix, "pids": {}}
        step = f"writing the state directory {self.state_dir}"
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._save(state)
            step = "building namespaces"
            self._build()
            step = "starting bgpd"
            pids = {node.name: self._start_bgpd(node) for node in self.topo.nodes}
            state["pids"] = pids
            self._save(state)
            step = "waiting for routes to converge"
            self._wait_converged(timeout)
        except (netns.CommandError, TimeoutError, LabError, OSError) as exc:
            self.down()
            raise LabError(f"lab up failed while {step}: {exc}") from exc
        return self.summary()

    def _build(self) -> None:
        fabric = netns.Fabric(self.prefix)
        sw = fabric.namespace("sw")
        fabric.bridge(sw)
        plen = self.topo.underlay.prefixlen
        # The underlay's router: the switch namespace owns the segment's first address and forwards nothing.
        # Hosts need a route towards it (a default route, as real hosts have) for proxy ARP: the kernel only
        # answers ARP for 169.254.1.1 on a cali device when its route to that address leaves by another one.
        gateway = self.topo.gateway
        netns.ip("addr", "add", f"{gateway}/{plen}", "dev", "br0", ns=sw)
        for host in self.topo.nodes:
            ns = fabric.namespace(host.name)
            port = f"p{host.name}"
            fabric.veth(ns, "eth0", sw, port)
            netns.ip("link", "set", port, "master", "br0", ns=sw)
            netns.ip("addr", "add", f"{host.address}/{plen}", "dev", "eth0", ns=ns)
            netns.ip("route", "add", "default", "via", str(gateway), "dev", "eth0", ns=ns)
            netns.sysctl(ns, "net.ipv4.ip_forward", "1")
            for block in host.blocks:
                netns.ip("route", "add", "blackhole", str(block), "proto", "80", ns=ns)
        for host, index, address in self.workloads():
            self._add_workload(fabric, host, index, address)

    def _add_workload(self, fabric: netns.Fabric, host: LabHost, index: int, address: IPv4Address) -> None:
        hns = self.host_ns(host)
        wns = fabric.namespace(f"{host.name}-w{index}")
        dev = veth_name(address)
        fabric.veth(hns, dev, wns, "eth0")
        # the workload: its /32, the fake gateway on-link, default route through it
        netns.ip("addr", "add", f"{address}/32", "dev", "eth0", ns=wns)
        netns.ip("route", "add", GATEWAY, "dev", "eth0", "scope", "link", ns=wns)
        netns.ip("route", "add", "default", "via", GATEWAY, "dev", "eth0", ns=wns)
        # the host side, as Felix programs it: proxy ARP answers for 169.254.1.1, a /32 route to the workload
        netns.sysctl(hns, f"net.ipv4.conf.{dev}.proxy_arp", "1")
        netns.sysctl(hns, f"net.ipv4.neigh.{dev}.proxy_delay", "0")
        netns.sysctl(hns, f"net.ipv4.conf.{dev}.forwarding", "1")
        netns.ip("route", "add", f"{address}/32", "dev", dev, "scope", "link", "proto", "boot", ns=hns)

    def _bgpd_config(self, host: LabHost) -> Path:
        topo = self.topo
        if host.reflector:  # clients: every host; non-client peers: the other reflectors
            bgp: dict[str, object] = {
                "hold_time": 9,
                "peers": [{"address": str(r.address), "asn": topo.asn} for r in topo.reflectors if r != host],
            }
        elif topo.reflectors:  # a host peers with every reflector instead of the mesh
            bgp = {
                "hold_time": 9,
                "peers": [{"address": str(r.address), "asn": topo.asn} for r in topo.reflectors],
            }
        else:
            bgp = {"hold_time": 9, "mesh": {"enabled": True, "nodes": [str(h.address) for h in topo.hosts]}}
        cfg: dict[str, object] = {
            "node": {"name": host.name, "address": str(host.address), "asn": topo.asn},
            "bgp": bgp,
            "pools": [{"cidr": str(p)} for p in self.topo.pools],
            "export": {"protocols": ["boot", 80], "interfaces": ["cali*"]},
            "kernel": {"protocol": "bird", "table": "main"},
            "runtime": {"dir": str(self.state_dir / host.name), "log_level": "info"},
            "metrics": {"listen": METRICS_LISTEN},  # each node's own loopback, inside its namespace
        }
        if host.reflector:
            cfg["reflector"] = {
                "cluster_id": str(topo.cluster_id),
                "clients": [str(h.address) for h in topo.hosts],
            }
        path = self.state_dir / f"{host.name}.yaml"
        path.write_text(f"# bgpd config generated by `bgpd lab up` for {host.name}\n" + yaml.safe_dump(cfg))
        return path

    def log_path(self, host: LabHost) -> Path:
        return self.state_dir / f"{host.name}.log"

    def _start_bgpd(self, host: LabHost) -> int:
        config = self._bgpd_config(host)
        with open(self.log_path(host), "ab") as log:
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.host_ns(host),
                    sys.executable,
                    "-m",
                    "bgpd",
                    "run",
                    "-c",
                    str(config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives `bgpd lab up`; `down` ends it by pid
            )
        return proc.pid

    def expected(self, host: LabHost) -> dict[str, str]:
        """Routes `host` must have learned: other hosts' announced prefixes -> their address."""
        out: dict[str, str] = {}
        for other in self.topo.hosts:
            if other is host:
                continue
            for net in other.exported():
                out[exported_prefix(net)] = str(other.address)
        return out

    def learned(self, host: LabHost) -> dict[str, str]:
        """Routes bgpd installed on `host`: prefix -> its next hops, comma-separated."""
        hops = netns.next_hops_by_prefix(self.host_ns(host), "proto", "bird")
        return {prefix: ",".join(via) for prefix, via in hops.items()}

    def sessions_up(self, node: LabHost) -> int:
        """Established BGP sessions of a node, as the kernel's TCP table shows them."""
        out = netns.ns_exec(
            self.host_ns(node),
            "ss",
            "-Htn",
            "state",
            "established",
            "( sport = :179 or dport = :179 )",
            check=False,
        ).stdout
        return len(out.splitlines())

    def converged(self) -> bool:
        """Every host has every other host's routes, and every session is established."""
        return all(self.learned(h) == self.expected(h) for h in self.topo.hosts) and all(
            self.sessions_up(n) == self._session_count(n) for n in self.topo.nodes
        )

    def _wait_converged(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.converged():
            for host, pid in self._pids().items():
                if not _alive(pid):
                    raise LabError(f"bgpd on {host} exited; read {self.state_dir / host}.log")
            if time.monotonic() > deadline:
                lagging = [
                    f"{h.name} lacks {sorted(set(self.expected(h).items()) - set(self.learned(h).items()))}"
                    for h in self.topo.hosts
                    if self.learned(h) != self.expected(h)
                ] + [
                    f"{n.name} has {self.sessions_up(n)}/{self._session_count(n)} sessions"
                    for n in self.topo.nodes
                    if self.sessions_up(n) != self._session_count(n)
                ]
                logs = ", ".join(str(self.log_path(h)) for h in self.topo.nodes)
                raise LabError(
                    f"routes did not converge in {timeout:.0f}s: {'; '.join(lagging)}; read {logs}"
                )
            time.sleep(0.1)

    # ------------------------------------------------------------------ state

    def _save(self, state: dict[str, object]) -> None:
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=1))

    def _pids(self) -> dict[str, int]:
        try:
            state = json.loads((self.state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        pids = state.get("pids", {})
        return {str(k): int(v) for k, v in pids.items()}

    def is_up(self) -> bool:
        return bool(netns.list_namespaces(self.prefix))

    # ------------------------------------------------------------------ down

    def down(self) -> list[str]:
        """Stop the lab's bgpd processes (by recorded pid) and remove every namespace with the prefix."""
        for pid in self._pids().values():
            _stop_pid(pid)
        removed = netns.remove_leftovers(self.prefix)
        with contextlib.suppress(OSError):
            (self.state_dir / "state.json").unlink()
        return removed

    # ------------------------------------------------------------------ check, routes, summary

    def ping(self, source_ns: str, source: str, target: str) -> Ping:
        for _ in range(2):  # one retry: the very first packet may wait for neighbor resolution
            proc = netns.ns_exec(source_ns, "ping", "-n", "-c", "1", "-W", "2", target, check=False)
            match = RTT.search(proc.stdout)
            if proc.returncode == 0 and match:
                return Ping(source, target, True, float(match.group(1)))
        return Ping(source, target, False, None)

    def check(self) -> list[Ping]:
        """Ping from every workload to every other workload and to every host."""
        if not self.is_up():
            raise LabError(f"the lab {self.topo.name!r} is not up (bgpd lab up)")
        jobs = []
        targets = [str(a) for _, _, a in self.workloads()] + [str(h.address) for h in self.topo.hosts]
        for host, index, address in self.workloads():
            for target in targets:
                if target != str(address):
                    jobs.append((self.workload_ns(host, index), str(address), target))
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(lambda job: self.ping(*job), jobs))

    def routes(self, name: str) -> dict[str, list[str]]:
        """A host's kernel routes, grouped as an operator reads them."""
        try:
            host = self.topo.host(name)
        except KeyError as exc:
            raise LabError(f"no host {name!r} in {self.topo.source}") from exc
        groups: dict[str, list[str]] = {
            "local workloads": [],
            "learned via BGP": [],
            "blackholes": [],
            "other": [],
        }
        for line in netns.ip("route", "show", ns=self.host_ns(host)).splitlines():
            if line.startswith(("blackhole", "unreachable", "prohibit")):
                groups["blackholes"].append(line.strip())
            elif " proto bird " in f"{line} ":
                groups["learned via BGP"].append(line.strip())
            elif " dev cali" in line:
                groups["local workloads"].append(line.strip())
            else:
                groups["other"].append(line.strip())
        return groups

    def summary(self) -> list[HostSummary]:
        out = []
        for host in self.topo.nodes:
            groups = self.routes(host.name)
            out.append(
                HostSummary(
                    host.name,
                    str(host.address),
                    [str(w) for w in host.workloads],
                    self.sessions_up(host),
                    self._session_count(host),
                    {k: len(v) for k, v in groups.items() if k != "other"},
                    host.reflector,
                )
            )
        return out

    def _session_count(self, node: LabHost) -> int:
        topo = self.topo
        if node.reflector:
            return len(topo.hosts) + len(topo.reflectors) - 1
        return len(topo.reflectors) if topo.reflectors else len(topo.hosts) - 1

    def remove_workload(self, address: IPv4Address) -> None:
        """Delete a workload as Felix would: its route first, then its veth and namespace."""
        for host, index, wl in self.workloads():
            if wl == address:
                netns.ip("route", "del", f"{address}/32", "dev", veth_name(address), ns=self.host_ns(host))
                netns.remove_namespace(self.workload_ns(host, index))
                return
        raise LabError(f"no workload {address} in {self.topo.source}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"bgpd" in fh.read()
    except OSError:
        return False


def _stop_pid(pid: int, timeout: float = 5.0) -> None:
    """End a bgpd the lab started: only if that pid still runs bgpd (pids can be reused)."""
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def exported_prefix(net: IPv4Network) -> str:
    """A prefix as `ip -j route` prints it (host routes without `/32`)."""
    return str(net.network_address) if net.prefixlen == 32 else str(net)
