"""`bgpd lab`: the container network in a box, with real bgpd speakers on simulated hosts, dual stack.

Each host is a network namespace on one underlay bridge (its own namespace, `<prefix>sw`), with an IPv4
and an IPv6 address on `eth0` (192.168.100.10/24 and fd00:100::10/64; the IPv6 plan is derived from the
topology's IPv4 one, see `bgpd.lab.topology`). Each workload is a namespace with an IPv4 `/32` and an
IPv6 `/128` on `eth0`, an IPv4 default route via the fake gateway 169.254.1.1 (on-link) and an IPv6 one
via fe80::ecee:eeff:feee:eeee, and a veth to its host named `cali<hash>`. The lab plays Felix and the
Calico CNI plugin: the host side has the MAC ee:ee:ee:ee:ee:ee (so its own EUI-64 link-local address is
that IPv6 gateway and answers the workload's neighbour solicitations), proxy ARP, proxy NDP, forwarding in
both families, duplicate address detection off on both ends (as the CNI plugin: a point-to-point link), a
`/32` and a `/128 dev cali…` route (protocol boot) and a blackhole for each of its IPv4 and IPv6 blocks
(protocol 80). One `bgpd run` per host does the rest; its config (written by the lab) has `node.address6`,
both families' addresses in the mesh (or the reflectors' IPv6 addresses as peers) and both pools.
`ipv6: false` in the topology builds the same lab IPv4-only.

`check` pings every workload and host from every workload in each family; the summary, `routes` and the
convergence wait cover both families.

Across subnets (issue 12, `configs/lab-cross-subnet.yaml`): a topology whose `underlay` lists several subnets
gets one switch namespace per rack (`sw0`, `sw1`, ...) and a router namespace (`rt`) with a leg in each,
holding each subnet's first address and forwarding between them; it knows nothing of the workloads (no BGP, no
workload route), and every node's default route points at its own rack's leg. When a pool has an `ipip` mode
other than never, the lab also plays Felix's part of IP-in-IP on every host (`bgpd.lab.felix`: `tunl0` with
the host's tunnel address, a /32 of its block, MTU = underlay MTU - 20, up). It is the kernel's ipip device
when the kernel has one, else a TUN device named `tunl0` with one userspace encapsulator per host
(`bgpd.lab.ipip`, started and stopped with the lab by pid); `up` says which. bgpd installs the routes via
`tunl0` (its config carries the pools' `ipip` modes and `node.address` with its prefix length); the lab waits
for exactly the route forms Calico's BIRD would install, `check` marks the pairs whose packets go through
`tunl0`, shows its packet counters, and explains failing pairs that cross the router without a tunnel.
`reload` applies a topology whose only change is the pools' modes (the configs rewritten, each bgpd reloaded
through its control socket, `tunl0` created first if the lab had none).

Top of rack (issue 13, `configs/lab-tor.yaml`): with a `tor` key each rack's router is a BGP router, BIRD 2 in
its own AS, started by the lab (`bgpd.lab.tor`, pids in the state file); every host's bgpd peers over eBGP
with its rack's router only (no mesh, no tunnel), and `up` also waits for the routers' tables.

Driven by etcd (issue 15, `bgpd.lab.cluster`, `configs/lab-etcd.yaml`): `up --datastore etcd` (or
`datastore: etcd` in the topology) also starts etcd in its own namespace on the underlay and writes Calico's
records for the topology (`bgpd.lab.records`); each bgpd's config then holds only `node.name`, the
`datastore` section and its local sections. `add-host` and `remove-host` grow and shrink the running lab
by a Node record (and the host's namespaces); the state file records them, so every later command sees the
lab as it is (`refresh`).

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
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path
from typing import Any

import yaml

from bgpd import ctl
from bgpd.lab import cluster, felix, netns, records, tor
from bgpd.lab.etcd import EtcdError
from bgpd.lab.felix import (
    ENCAPSULATOR,
    ENCAPSULATOR_TIMEOUT,
    TUN_STAND_IN,
    TUNNEL,
    TunnelCounters,
)
from bgpd.lab.topology import ROUTER, SWITCH, LabHost, Network, Topology, TopologyError, with_hosts
from bgpd.oneline import describe

GATEWAY = "169.254.1.1"
GATEWAY6 = "fe80::ecee:eeff:feee:eeee"  # the EUI-64 link-local address of HOST_VETH_MAC
HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"  # Calico's host side of every workload veth
LINK_LOCAL_TIMEOUT = 10.0  # seconds for the host side's link-local address to become usable
METRICS_LISTEN = "127.0.0.1:9179"
STATE_ROOT = Path("/run/bgpd-lab")
REQUIRED = ("ip", "ping", "ss")
RTT = re.compile(r"time=([0-9.]+) ms")
TUNNEL_GROUP = "learned via BGP, through tunl0 (IP-in-IP)"  # a group of `routes` in a lab with tunl0


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
    family: int = 4
    tunnel: bool = False  # the kernel routes the request or the reply through tunl0 (IP-in-IP)
    why: str = ""  # for a failure the lab can explain: one line


@dataclass
class HostSummary:
    """One node in one address family: `summary()` gives one per node and family, IPv4 first."""

    name: str
    address: str
    workloads: list[str]
    sessions_up: int
    sessions_total: int
    routes: dict[str, int] = field(default_factory=dict)
    reflector: bool = False
    family: int = 4


class Lab:
    def __init__(self, topology: Topology, state_dir: Path | None = None) -> None:
        self.base = topology  # as the file has it
        self.topo = topology  # as the running lab has it: with the hosts add-host / remove-host changed
        self.state_dir = state_dir or STATE_ROOT / topology.name
        self.prefix = topology.prefix
        self.switch = f"{self.prefix}sw"
        self.refresh()

    def refresh(self) -> None:
        """`topo` from the file's topology and the hosts the state file says were added or removed."""
        state = self.state()
        if state.get("prefix") != self.prefix or not (state.get("added") or state.get("removed")):
            self.topo = self.base
            return
        try:
            self.topo = with_hosts(self.base, cluster.added_hosts(state), set(state.get("removed", [])))
        except (TopologyError, KeyError, ValueError, TypeError) as exc:
            raise LabError(f"the lab's state file {self.state_dir / 'state.json'} is damaged: {exc}") from exc

    # ------------------------------------------------------------------ names

    def host_ns(self, host: LabHost) -> str:
        return f"{self.prefix}{host.name}"

    def workload_ns(self, host: LabHost, index: int) -> str:
        return f"{self.prefix}{host.name}-w{index}"

    def workloads(self) -> Iterator[tuple[LabHost, int, IPv4Address]]:
        for host in self.topo.hosts:
            for index, address in enumerate(host.workloads):
                yield host, index, address

    def workload_addresses(self, family: int) -> Iterator[tuple[LabHost, int, IPv4Address | IPv6Address]]:
        """(host, index, address) of every workload, in one family."""
        for host in self.topo.hosts:
            addresses: tuple[IPv4Address | IPv6Address, ...] = (
                host.workloads if family == 4 else host.workloads6
            )
            for index, address in enumerate(addresses):
                yield host, index, address

    # ------------------------------------------------------------------ up

    def up(
        self, timeout: float = 60.0, rebuild: bool = False, datastore: str | None = None
    ) -> list[HostSummary]:
        """Build the lab and wait `timeout` seconds for it to converge. A lab that is already up (processes
        run in its namespaces) is refused unless `rebuild`; what an earlier, crashed run left is removed.
        `datastore` "etcd" (default: the topology's `datastore`, else "none") drives it by etcd."""
        mode = datastore or self.base.datastore or "none"
        why = records.unsupported(self.base) if mode == "etcd" else None
        if why:
            raise LabError(why)
        missing = [b for b in REQUIRED if shutil.which(b) is None]
        missing += tor.missing_commands() if self.topo.tor is not None else []
        missing += [] if mode != "etcd" or shutil.which("etcd") else ["etcd (Debian's etcd-server)"]
        if missing:
            raise LabError(f"missing commands: {', '.join(missing)} (bash scripts/setup.sh installs them)")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces)")
        if not rebuild and self.running():
            raise LabError(
                f"the lab {self.topo.name!r} is already up: `bgpd lab -t {self.topo.source} down` first, or "
                f"`bgpd lab -t {self.topo.source} up --rebuild` to build it again"
            )
        self.down()
        self.topo = self.base
        state: dict[str, object] = {
            "topology": self.topo.source,
            "prefix": self.prefix,
            "pids": {},
            "shape": self.topo.shape(),
            "subnet_in_config": self.topo.writes_subnet,
        }
        step = f"writing the state directory {self.state_dir}"
        try:
            if self.state_dir.exists() and not self.state_dir.is_dir():
                raise LabError("it is a file, not a directory")
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._save(state)
            step = "building namespaces"
            self.build()
            if mode == "etcd":
                step = "starting etcd and writing the cluster's records"
                cluster.start(self)
            if self.topo.tor is not None:
                step = "starting BIRD on the racks' routers"
                routers: dict[str, int] = {}
                for rack, name in tor.routers(self.topo):
                    routers[name] = tor.start(self, rack)
                    self.update_state(routers=routers)
            step = "starting bgpd"
            pids = {node.name: self.start_bgpd(node) for node in self.topo.nodes}
            self.update_state(pids=pids)
            step = "waiting for routes to converge"
            self.wait_converged(timeout)
        except (netns.CommandError, TimeoutError, LabError, OSError, cluster.ClusterError, EtcdError) as exc:
            self.down()
            raise LabError(f"lab up failed while {step}: {describe(exc)}") from exc
        return self.summary()

    def build(self) -> None:
        """The namespaces, links, addresses and Felix's routes, without starting bgpd (`up` does both).
        On failure, `down()` removes what was built."""
        fabric = netns.Fabric(self.prefix)
        ipv6 = self.topo.ipv6
        switches = tor.build(fabric, self.topo) if self.topo.tor is not None else self._switches(fabric)
        for host in self.topo.nodes:
            self._node(fabric, host, switches[host.rack])
        devices: list[tuple[str, str]] = []
        for host, index, address in self.workloads():
            devices.append((self.host_ns(host), self.add_workload(fabric, host, index, address)))
        if self.topo.tunnels:
            self.add_tunnels()
        if ipv6:  # the workloads' IPv6 gateway must be usable (not tentative) before anything pings
            netns.wait_for(
                lambda: all(_link_local_ready(ns, dev) for ns, dev in devices),
                LINK_LOCAL_TIMEOUT,
                f"the link-local address {GATEWAY6} on every cali device",
            )

    def _node(self, fabric: netns.Fabric, host: LabHost, sw: str) -> None:
        """A node's namespace, its `eth0` on the switch `sw`, its addresses, default route, forwarding and
        Felix's blackholes for its blocks."""
        ns = fabric.namespace(host.name)
        plen = self.topo.underlay_of(host).prefixlen
        port = f"p{host.name}"
        fabric.veth(ns, "eth0", sw, port)
        netns.ip("link", "set", port, "master", "br0", ns=sw)
        netns.ip("addr", "add", f"{host.address}/{plen}", "dev", "eth0", ns=ns)
        netns.ip("route", "add", "default", "via", str(self.topo.gateway_of(host)), "dev", "eth0", ns=ns)
        netns.sysctl(ns, "net.ipv4.ip_forward", "1")
        for block in host.blocks:
            netns.ip("route", "add", "blackhole", str(block), "proto", "80", ns=ns)
        if self.topo.ipv6 and host.address6 is not None and self.topo.underlay6 is not None:
            netns.sysctl(ns, "net.ipv6.conf.all.forwarding", "1")
            # nodad: usable at once as the BGP sessions' source (the topology's addresses are unique);
            # kept when the device goes down, as its IPv4 address is (Linux flushes IPv6 ones otherwise)
            netns.sysctl(ns, "net.ipv6.conf.eth0.keep_addr_on_down", "1")
            address6 = f"{host.address6}/{self.topo.underlay6.prefixlen}"
            netns.ip("addr", "add", address6, "dev", "eth0", "nodad", ns=ns)
            for block6 in host.blocks6:
                netns.ip("-6", "route", "add", "blackhole", str(block6), "proto", "80", ns=ns)

    def build_host(self, host: LabHost) -> None:
        """One more host in a running one-segment lab without tunl0 (`bgpd lab add-host`): its namespace on
        the switch, its workloads, and the wait for their IPv6 gateway; bgpd is not started."""
        fabric = netns.Fabric(self.prefix)
        self._node(fabric, host, self.switch)
        devices = [
            (self.host_ns(host), self.add_workload(fabric, host, index, address))
            for index, address in enumerate(host.workloads)
        ]
        if self.topo.ipv6:
            netns.wait_for(
                lambda: all(_link_local_ready(ns, dev) for ns, dev in devices),
                LINK_LOCAL_TIMEOUT,
                f"the link-local address {GATEWAY6} on {host.name}'s cali devices",
            )

    def _switches(self, fabric: netns.Fabric) -> list[str]:
        """The underlay: one switch namespace per rack (a bridge `br0`); returns their names by rack.

        One segment (`sw`): the switch namespace owns the segment's first address, the underlay's router,
        and forwards nothing. Hosts need a route towards it (a default route, as real hosts have) for proxy
        ARP: the kernel only answers ARP for 169.254.1.1 on a cali device when its route to that address
        leaves by another one. IPv6 needs no such route: the workloads' gateway is an address the host owns
        on each cali device.

        Racks (`sw0`, `sw1`, ...): a router namespace `rt` has a leg `ethK` on each rack's bridge with that
        subnet's first address and forwards between them. It knows the racks' subnets (its connected
        routes) and nothing else: no BGP, no route to any workload."""
        if not self.topo.routed:
            sw = fabric.namespace(SWITCH)
            fabric.bridge(sw)
            netns.ip(
                "addr", "add", f"{self.topo.gateway}/{self.topo.underlay.prefixlen}", "dev", "br0", ns=sw
            )
            return [sw]
        router = fabric.namespace(ROUTER)
        netns.sysctl(router, "net.ipv4.ip_forward", "1")
        # it forwards packets from workload addresses it has no route back to (the replies come back
        # through tunl0): reverse path filtering would drop them, which a real router does not do here
        netns.sysctl(router, "net.ipv4.conf.all.rp_filter", "0")
        netns.sysctl(router, "net.ipv4.conf.default.rp_filter", "0")
        switches = []
        for rack, subnet in enumerate(self.topo.racks):
            sw = fabric.namespace(f"{SWITCH}{rack}")
            fabric.bridge(sw)
            leg = f"eth{rack}"
            fabric.veth(router, leg, sw, f"p{ROUTER}")
            netns.ip("link", "set", f"p{ROUTER}", "master", "br0", ns=sw)
            netns.sysctl(router, f"net.ipv4.conf.{leg}.rp_filter", "0")
            netns.ip("addr", "add", f"{subnet.network_address + 1}/{subnet.prefixlen}", "dev", leg, ns=router)
            switches.append(sw)
        return switches

    # ------------------------------------------------------------------ Felix's tunl0

    def add_tunnels(self) -> str:
        """Felix's part of IP-in-IP on every host: `tunl0` with the host's tunnel address (a /32 of its
        block), MTU = underlay MTU - 20, up. The kernel's ipip device when the kernel has one, else a TUN
        device named tunl0 and one encapsulator process per host (started here, by pid, recorded in the
        state file). Returns the kind used (KERNEL_IPIP or TUN_STAND_IN)."""
        hosts = self.topo.hosts
        try:
            kind = felix.tunnel_kind(self.host_ns(hosts[0]))
        except felix.TunnelError as exc:
            raise LabError(str(exc)) from None
        self.update_state(tunnel=kind)
        started: dict[str, int] = {}
        for host in hosts:
            ns = self.host_ns(host)
            assert host.tunnel_address is not None
            felix.add_tunnel(ns, host.tunnel_address, kind)
            if kind == TUN_STAND_IN:
                started[host.name] = felix.start_encapsulator(ns, self.encapsulator_log(host))
                self.update_state(encapsulators=started)
        if started:
            self._wait_encapsulators(started)
        return kind

    def encapsulator_log(self, host: LabHost) -> Path:
        return self.state_dir / f"{host.name}-ipip.log"

    def _wait_encapsulators(self, pids: dict[str, int]) -> None:
        """Until every encapsulator has attached to its TUN device (the device gets a carrier)."""
        deadline = time.monotonic() + ENCAPSULATOR_TIMEOUT
        waiting = dict(pids)
        while waiting:
            for name, pid in list(waiting.items()):
                host = self.topo.host(name)
                if felix.attached(self.host_ns(host)):
                    del waiting[name]
                elif not _alive(pid, ENCAPSULATOR):
                    raise LabError(f"the encapsulator on {name} exited; read {self.encapsulator_log(host)}")
            if waiting and time.monotonic() > deadline:
                raise LabError(
                    f"the encapsulators of {', '.join(waiting)} did not attach to {TUNNEL} in "
                    f"{ENCAPSULATOR_TIMEOUT:.0f}s; read {self.state_dir}/<host>-ipip.log"
                )
            if waiting:
                time.sleep(0.05)

    def tunnel_kind(self) -> str | None:
        """KERNEL_IPIP or TUN_STAND_IN once the lab has created tunl0, else None."""
        kind = self.state().get("tunnel")
        return str(kind) if kind else None

    def tunnel_mtu(self, host: LabHost) -> int | None:
        return felix.tunnel_mtu(self.host_ns(host))

    def tunnel_counters(self) -> dict[str, TunnelCounters]:
        """Every host's tunl0 packet counters (hosts without tunl0 left out)."""
        out = {}
        for host in self.topo.hosts:
            counters = felix.counters(self.host_ns(host))
            if counters is not None:
                out[host.name] = counters
        return out

    def add_workload(self, fabric: netns.Fabric, host: LabHost, index: int, address: IPv4Address) -> str:
        """A workload as the Calico CNI plugin and Felix set it up; returns the host-side device."""
        hns = self.host_ns(host)
        wns = fabric.namespace(f"{host.name}-w{index}")
        dev = veth_name(address)
        address6 = host.workloads6[index] if self.topo.ipv6 else None
        # the pair, created down: the host side gets Calico's MAC, and DAD is off on both ends before they
        # come up (a point-to-point link; DAD would keep the link-local gateway tentative for a second)
        netns.ip(
            "link", "add", dev, "address", HOST_VETH_MAC, "netns", hns,
            "type", "veth", "peer", "name", "eth0", "netns", wns,
        )  # fmt: skip
        if address6 is not None:
            netns.sysctl(hns, f"net.ipv6.conf.{dev}.disable_ipv6", "0")
            netns.sysctl(hns, f"net.ipv6.conf.{dev}.accept_dad", "0")
            netns.sysctl(wns, "net.ipv6.conf.eth0.disable_ipv6", "0")
            netns.sysctl(wns, "net.ipv6.conf.eth0.accept_dad", "0")
        netns.ip("link", "set", dev, "up", ns=hns)
        netns.ip("link", "set", "eth0", "up", ns=wns)
        # the workload: its /32, the fake gateway on-link, default route through it
        netns.ip("addr", "add", f"{address}/32", "dev", "eth0", ns=wns)
        netns.ip("route", "add", GATEWAY, "dev", "eth0", "scope", "link", ns=wns)
        netns.ip("route", "add", "default", "via", GATEWAY, "dev", "eth0", ns=wns)
        # the host side, as Felix programs it: proxy ARP answers for 169.254.1.1, a /32 route to the workload
        netns.sysctl(hns, f"net.ipv4.conf.{dev}.proxy_arp", "1")
        netns.sysctl(hns, f"net.ipv4.neigh.{dev}.proxy_delay", "0")
        netns.sysctl(hns, f"net.ipv4.conf.{dev}.forwarding", "1")
        netns.ip("route", "add", f"{address}/32", "dev", dev, "scope", "link", "proto", "boot", ns=hns)
        if address6 is not None:
            # the workload: its /128, default route via the host side's link-local address
            netns.ip("-6", "addr", "add", f"{address6}/128", "dev", "eth0", "nodad", ns=wns)
            netns.ip("-6", "route", "add", "default", "via", GATEWAY6, "dev", "eth0", ns=wns)
            # the host side: forwarding and proxy NDP as the CNI plugin sets them, no router advertisements
            # accepted, a /128 route to the workload
            netns.sysctl(hns, f"net.ipv6.conf.{dev}.forwarding", "1")
            netns.sysctl(hns, f"net.ipv6.conf.{dev}.proxy_ndp", "1")
            netns.sysctl(hns, f"net.ipv6.conf.{dev}.accept_ra", "0")
            netns.ip("-6", "route", "add", f"{address6}/128", "dev", dev, "proto", "boot", ns=hns)
        return dev

    def _bgpd_config(self, host: LabHost) -> Path:
        path = self.state_dir / f"{host.name}.yaml"
        if cluster.datastore(self) is not None:
            path.write_text(cluster.config_text(self, host))
            return path
        subnet = self.state().get("subnet_in_config")
        with_subnet = bool(subnet) if subnet is not None else None
        path.write_text(config_text(self.topo, host, self.state_dir / host.name, with_subnet))
        return path

    # ------------------------------------------------------------------ reload

    def _not_up(self) -> str:
        return f"the lab {self.topo.name!r} is not up (bgpd lab -t {self.topo.source} up)"

    def reload(self, timeout: float = 60.0) -> list[HostSummary]:
        """Apply a topology whose only change is the pools' ipip modes, as an operator changes a Calico
        pool: Felix's tunl0 first (when the lab has none yet and a pool now tunnels), then every node's
        config rewritten and reloaded through its control socket (bgpd rewrites the affected routes in
        place), then the wait for the routes the new modes give. Nothing is torn down on failure."""
        if not self.is_up() or not self.pids():
            raise LabError(self._not_up())
        if cluster.datastore(self) is not None:
            raise LabError(
                "a lab driven by etcd changes through its records (add-host, remove-host), not by reload"
            )
        if self.state().get("shape") != self.topo.shape():
            raise LabError(
                f"{self.topo.source} changed beyond the pools' ipip modes: `bgpd lab up --rebuild` rebuilds "
                "the lab"
            )
        step = "creating tunl0"
        try:
            if self.topo.tunnels and self.tunnel_kind() is None:
                self.add_tunnels()
            for node in self.topo.nodes:
                step = f"reloading bgpd on {node.name}"
                self._bgpd_config(node)
                result = ctl.request(self.control_socket(node), "reload")
                if not result.get("ok"):
                    raise LabError(f"{result.get('message')}; read {self.log_path(node)}")
            step = "waiting for routes to converge"
            self.wait_converged(timeout)
        except (netns.CommandError, TimeoutError, OSError, ctl.CtlError, LabError) as exc:
            raise LabError(f"lab reload failed while {step}: {describe(exc)}") from exc
        return self.summary()

    def control_socket(self, host: LabHost) -> str:
        """The host's bgpd control socket (its runtime directory is the state directory's `<host>`)."""
        return str(self.state_dir / host.name / "bgpd.ctl")

    def log_path(self, host: LabHost) -> Path:
        return self.state_dir / f"{host.name}.log"

    def start_bgpd(self, host: LabHost) -> int:
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
        """Routes `host` must have learned, both families: other hosts' announced prefixes -> their
        address in the prefix's family, followed by ` dev tunl0` where the pool's ipip mode tunnels it
        (always; cross-subnet with the next hop in another rack). A route whose next hop is in another
        rack and that no tunnel carries is left out: the kernel refuses a gateway that is not on one of the
        host's subnets, so it cannot be installed (and the router would not know where to forward)."""
        topo = self.present()  # a workload removed with remove-workload is no longer announced
        host = topo.host(host.name)
        if topo.tor is not None:
            return tor.host_expected(topo, host)
        out: dict[str, str] = {}
        for other in topo.hosts:
            if other is host:
                continue
            for net in other.exported():
                if net.version == 6:
                    out[exported_prefix(net)] = str(other.address6)
                elif topo.tunnelled(host, other, net):
                    out[exported_prefix(net)] = f"{other.address} dev {TUNNEL}"
                elif other.rack == host.rack:
                    out[exported_prefix(net)] = str(other.address)
        return out

    def learned(self, host: LabHost) -> dict[str, str]:
        """Routes bgpd installed on `host`, both families: prefix -> its next hops, comma-separated, each
        followed by ` dev tunl0` when it goes through the tunnel."""
        out: dict[str, str] = {}
        for family in self.topo.families:
            for route in netns.routes(self.host_ns(host), "proto", "bird", family=family):
                hops = route.get("nexthops") or [route]
                via = sorted(
                    h.get("gateway", "") + (f" dev {TUNNEL}" if h.get("dev") == TUNNEL else "") for h in hops
                )
                out[route["dst"]] = ",".join(via)
        return out

    def sessions_up(self, node: LabHost, family: int | None = None) -> int:
        """Established BGP sessions of a node (in one family, or all), as the kernel's TCP table shows
        them. A session's family is its peer address's (an IPv4 peer on a dual-stack socket shows as
        ::ffff:a.b.c.d)."""
        families = session_families(self.host_ns(node))
        return len(families) if family is None else families.count(family)

    def converged(self) -> bool:
        """Every host has every other host's routes, and every session is established, in every family (in
        a ToR lab, the routers' tables and sessions too)."""
        return (
            all(self.learned(h) == self.expected(h) for h in self.topo.hosts)
            and all(
                self.sessions_up(n, f) == self._session_count(n, f)
                for n in self.topo.nodes
                for f in self.topo.families
            )
            and (self.topo.tor is None or tor.converged(self))
        )

    def wait_converged(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.converged():
            for host, pid in self.pids().items():
                if not _alive(pid):
                    raise LabError(f"bgpd on {host} exited; read {self.state_dir / host}.log")
            for name, pid in self.pids("routers").items():
                if not _alive(pid, tor.BIRD_MARKER):
                    raise LabError(f"BIRD on {name} exited; read {tor.paths(self, name)[2]}")
            if time.monotonic() > deadline:
                lagging = (
                    [
                        _difference(h.name, self.expected(h), self.learned(h))
                        for h in self.topo.hosts
                        if self.learned(h) != self.expected(h)
                    ]
                    + [
                        f"{n.name} has {self.sessions_up(n, f)}/{self._session_count(n, f)} IPv{f} sessions"
                        for n in self.topo.nodes
                        for f in self.topo.families
                        if self.sessions_up(n, f) != self._session_count(n, f)
                    ]
                    + (tor.lagging(self) if self.topo.tor is not None else [])
                )
                logs = ", ".join(str(self.log_path(h)) for h in self.topo.nodes)
                raise LabError(
                    f"routes did not converge in {timeout:.0f}s: {'; '.join(lagging)}; read {logs}"
                )
            time.sleep(0.1)

    # ------------------------------------------------------------------ state

    def _save(self, state: dict[str, object]) -> None:
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=1))

    def state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def update_state(self, **changes: object) -> None:
        """Merge `changes` into the state file (created with its directory if missing: `build` alone)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._save({**self.state(), **changes})

    def pids(self, key: str = "pids") -> dict[str, int]:
        """bgpd's pids by node (or, with key="encapsulators", the encapsulators' by host; with key="routers",
        BIRD's by router)."""
        pids = self.state().get(key, {})
        return {str(k): int(v) for k, v in pids.items()} if isinstance(pids, dict) else {}

    def is_up(self) -> bool:
        return bool(netns.list_namespaces(self.prefix))

    def running(self) -> bool:
        """Processes run in the lab's node namespaces (its bgpd, whatever state directory started them):
        the lab is up, not only what a crash left."""
        there = set(netns.list_namespaces(self.prefix))
        nodes = [ns for ns in map(self.host_ns, self.topo.nodes) if ns in there]
        return any(netns.ip("netns", "pids", ns, check=False).split() for ns in nodes)

    def present(self) -> Topology:
        """The topology as the running lab has it: without the workloads removed by `remove_workload`
        (their namespace is gone). Indexes of workloads are the full topology's (`self.topo`)."""
        there = set(netns.list_namespaces(self.prefix))
        if not there:
            return self.topo
        hosts = []
        for host in self.topo.hosts:
            kept = [i for i in range(len(host.workloads)) if self.workload_ns(host, i) in there]
            if len(kept) == len(host.workloads):
                hosts.append(host)
                continue
            hosts.append(
                replace(
                    host,
                    workloads=tuple(host.workloads[i] for i in kept),
                    workloads6=tuple(host.workloads6[i] for i in kept) if host.workloads6 else (),
                )
            )
        return replace(self.topo, hosts=tuple(hosts))

    # ------------------------------------------------------------------ down

    def down(self) -> list[str]:
        """Stop the lab's bgpd processes, encapsulators and BIRD routers (by recorded pid) and remove every
        namespace with the prefix (which also ends any process of ours still inside one)."""
        for pid in self.pids().values():
            _stop_pid(pid)
        for pid in self.pids("encapsulators").values():
            _stop_pid(pid, marker=ENCAPSULATOR)
        for pid in self.pids("routers").values():
            _stop_pid(pid, marker=tor.BIRD_MARKER)
        cluster.stop(self)
        removed = netns.remove_leftovers(self.prefix)
        with contextlib.suppress(OSError):
            (self.state_dir / "state.json").unlink()
        self.topo = self.base
        return removed

    # ------------------------------------------------------------------ check, routes, summary

    def ping(self, source_ns: str, source: str, target: str, family: int = 4) -> Ping:
        for _ in range(2):  # one retry: the very first packet may wait for neighbor resolution
            proc = netns.ns_exec(
                source_ns, "ping", f"-{family}", "-n", "-c", "1", "-W", "2", target, check=False
            )
            match = RTT.search(proc.stdout)
            if proc.returncode == 0 and match:
                return Ping(source, target, True, float(match.group(1)), family)
        return Ping(source, target, False, None, family)

    def check(self) -> list[Ping]:
        """Ping from every workload to every other workload and to every host, in each family (IPv4
        pings first); workloads removed with `remove_workload` are left out. In a lab with tunl0, each
        IPv4 ping says whether the kernel routes its request or its reply through tunl0; a failure that
        crosses the router without a tunnel says why."""
        if not self.is_up():
            raise LabError(self._not_up())
        present = set(netns.list_namespaces(self.prefix))  # a removed workload is no longer pinged
        jobs = []
        for family in self.topo.families:
            workloads = [
                w for w in self.workload_addresses(family) if self.workload_ns(w[0], w[1]) in present
            ]
            targets = [str(a) for _, _, a in workloads] + [
                str(a) for h in self.topo.hosts for a in h.addresses(family)
            ]
            for host, index, address in workloads:
                for target in targets:
                    if target != str(address):
                        jobs.append((self.workload_ns(host, index), str(address), target, family))
        with ThreadPoolExecutor(max_workers=32) as pool:
            pings = list(pool.map(lambda job: self.ping(*job), jobs))
        if self.topo.routed or self.topo.tor is not None or self.tunnel_kind() is not None:
            pings = self.annotate(pings)
        return pings

    def owner(self, address: str) -> LabHost | None:
        """The host of a workload address or the host with that underlay address, in either family."""
        for host in self.topo.hosts:
            if address in {str(a) for a in (*host.workloads, *host.workloads6, *host.addresses(4))}:
                return host
            if address in {str(a) for a in host.addresses(6)}:
                return host
        return None

    def annotate(self, pings: list[Ping]) -> list[Ping]:
        """Each IPv4 ping's `tunnel` (the kernel's route for the request on the source's host, or for the
        reply on the target's host, leaves by tunl0) and, for a failure, `why` when the lab knows."""
        devices: dict[tuple[str, str], str] = {}  # (host, destination) -> device of the kernel's route

        def device(host: LabHost, destination: str) -> str:
            key = (host.name, destination)
            if key not in devices:
                out = netns.ip("-j", "route", "get", destination, ns=self.host_ns(host), check=False)
                route = json.loads(out)[0] if out.strip() else {}
                devices[key] = str(route.get("dev", ""))
            return devices[key]

        def annotate(p: Ping) -> Ping:
            src, dst = self.owner(p.source), self.owner(p.target)
            if p.family != 4 or src is None or dst is None:
                return p
            tunnel = src is not dst and TUNNEL in (device(src, p.target), device(dst, p.source))
            why = "" if p.ok else self.explain(src, dst, p) or (self._stopped(src, dst) if tunnel else "")
            return replace(p, tunnel=tunnel, why=why)

        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(annotate, pings))

    def _stopped(self, *hosts: LabHost) -> str:
        """Which of these hosts' encapsulators no longer runs (their tunl0 then drops every packet)."""
        pids = self.pids("encapsulators")
        dead = [h for h in hosts if h.name in pids and not _alive(pids[h.name], ENCAPSULATOR)]
        if not dead:
            return ""
        logs = ", ".join(str(self.encapsulator_log(h)) for h in dead)
        names = " and ".join(h.name for h in dead)
        return f"the encapsulator of {names} is not running, so its {TUNNEL} drops every packet; read {logs}"

    def explain(self, src: LabHost, dst: LabHost, ping: Ping) -> str:
        """Why a failed IPv4 ping between two hosts' addresses or workloads failed, if it is the problem the
        cross-subnet lab shows: the hosts are in different racks, so the packets cross the router, which has
        no route to workloads, and the workloads' pool does not tunnel."""
        if self.topo.tor is not None:
            return tor.explain(self.topo, src, dst, (ping.source, ping.target))
        if src.rack == dst.rack:
            return ""
        workloads = [a for a in (ping.source, ping.target) if a not in (str(src.address), str(dst.address))]
        modes = {self.topo.ipip_mode(IPv4Network(f"{a}/32")) for a in workloads}
        if modes != {"never"}:
            return ""
        pools = ", ".join(
            str(pool) for pool in self.topo.pools if any(IPv4Address(a) in pool for a in workloads)
        )
        return (
            f"{src.name} and {dst.name} are in different subnets; the router has no route to workloads and "
            f"pool {pools} is ipip: never (cross-subnet would tunnel this)"
        )

    def routes(self, name: str, family: int | None = None) -> dict[str, list[str]]:
        """A host's kernel routes (one family, or every family of the lab, IPv4 first), grouped as an
        operator reads them. The kernel's link-local routes (fe80::/64 on every device) are left out."""
        try:
            host = self.topo.host(name)
        except KeyError as exc:
            names = " ".join(h.name for h in self.topo.nodes)
            raise LabError(f"no host {name!r} in {self.topo.source} (hosts: {names})") from exc
        if self.host_ns(host) not in netns.list_namespaces(self.host_ns(host)):
            raise LabError(self._not_up())
        groups: dict[str, list[str]] = {
            "local workloads": [],
            "learned via BGP": [],
            "blackholes": [],
            "other": [],
        }
        tunnel = self.tunnel_kind() is not None
        if tunnel:  # a group of its own, right after the plain ones: which routes use tunl0
            groups = {
                "local workloads": [],
                "learned via BGP": [],
                TUNNEL_GROUP: [],
                "blackholes": [],
                "other": [],
            }
        for f in self.topo.families if family is None else (family,):
            for line in netns.ip(f"-{f}", "route", "show", ns=self.host_ns(host)).splitlines():
                if line.startswith("fe80::/64 "):
                    continue
                if line.startswith(("blackhole", "unreachable", "prohibit")):
                    groups["blackholes"].append(line.strip())
                elif " proto bird " in f"{line} " and tunnel and f" dev {TUNNEL} " in f"{line} ":
                    groups[TUNNEL_GROUP].append(line.strip())
                elif " proto bird " in f"{line} ":
                    groups["learned via BGP"].append(line.strip())
                elif " dev cali" in line and " proto kernel " not in f"{line} ":
                    groups["local workloads"].append(line.strip())
                else:
                    groups["other"].append(line.strip())
        return groups

    def summary(self) -> list[HostSummary]:
        """One line per node and family (IPv4, then IPv6); workloads removed by `remove_workload` left out."""
        out = []
        present = {h.name: h for h in self.present().hosts}
        for host in self.topo.nodes:
            for family in self.topo.families:
                groups = self.routes(host.name, family)
                now = present.get(host.name, host)
                workloads = now.workloads if family == 4 else now.workloads6
                out.append(
                    HostSummary(
                        host.name,
                        " ".join(str(a) for a in host.addresses(family)),
                        [str(w) for w in workloads],
                        self.sessions_up(host, family),
                        self._session_count(host, family),
                        {k: len(v) for k, v in groups.items() if k != "other"},
                        host.reflector,
                        family,
                    )
                )
        return out

    def _session_count(self, node: LabHost, family: int = 4) -> int:
        """The sessions a node has in one family: as Calico, a peering exists in a family when both ends
        have an address in it."""
        if not node.addresses(family):
            return 0
        topo = self.topo
        if topo.tor is not None:  # its rack's router
            return 1
        if node.reflector:
            peers = [n for n in topo.nodes if n is not node]
        else:
            peers = list(topo.reflectors) if topo.reflectors else [h for h in topo.hosts if h is not node]
        return sum(1 for p in peers if p.addresses(family))

    def remove_workload(self, address: IPv4Address | IPv6Address) -> None:
        """Delete a workload (named by either of its addresses) as Felix would: its routes first, then its
        veth and namespace. LabError when the lab is not up, the address is no workload of the topology, or
        the workload is removed already."""
        if not self.is_up():
            raise LabError(self._not_up())
        for host, index, wl in self.workloads():
            wl6 = host.workloads6[index] if host.workloads6 else None
            if address in (wl, wl6):
                dev = veth_name(wl)
                if not netns.link_exists(dev, self.host_ns(host)):
                    raise LabError(f"workload {address} is already removed (no device {dev} on {host.name})")
                netns.ip("route", "del", f"{wl}/32", "dev", dev, ns=self.host_ns(host))
                if wl6 is not None:
                    netns.ip("-6", "route", "del", f"{wl6}/128", "dev", dev, ns=self.host_ns(host))
                netns.remove_namespace(self.workload_ns(host, index))
                return
        raise LabError(f"no workload {address} in {self.topo.source}")


BGPD_MARKER = b"bgpd"  # in /proc/PID/cmdline of a bgpd the lab started


def _alive(pid: int, marker: bytes = BGPD_MARKER) -> bool:
    return netns.runs(pid, marker)


def _stop_pid(pid: int, timeout: float = 5.0, marker: bytes = BGPD_MARKER) -> None:
    """End a process the lab started (a bgpd, or with `marker=ENCAPSULATOR` an encapsulator)."""
    netns.stop_pid(pid, marker, timeout)


def _difference(name: str, expected: dict[str, str], learned: dict[str, str]) -> str:
    """What a host's learned routes lack, and what they hold that they should not (both as prefix -> next
    hops)."""

    def routes(items: set[tuple[str, str]]) -> str:
        return ", ".join(f"{prefix} via {hops}" if hops else prefix for prefix, hops in sorted(items))

    lacks = set(expected.items()) - set(learned.items())
    extra = set(learned.items()) - set(expected.items())
    parts = [f"lacks {routes(lacks)}"] if lacks else []
    parts += [f"has unexpected {routes(extra)}"] if extra else []
    return f"{name} {' and '.join(parts)}"


def exported_prefix(net: Network) -> str:
    """A prefix as `ip -j route` prints it (host routes without `/32` or `/128`)."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def bgpd_config(
    topo: Topology, node: LabHost, runtime_dir: Path, with_subnet: bool | None = None
) -> dict[str, Any]:
    """The bgpd config the lab writes for a node. Dual stack: `node.address6`, both families' addresses in
    the mesh (IPv4 first), both pools; with reflectors, the hosts peer with every reflector in both families
    and the reflectors list both addresses of every host as clients. A pool whose topology entry has an
    `ipip` mode carries it; `node.address` is written with its prefix length (`192.168.100.10/24`, the
    subnet that decides cross-subnet) when `with_subnet` (default: `topo.writes_subnet`)."""

    def both(nodes: Iterable[LabHost]) -> list[str]:
        chosen = list(nodes)
        return [str(a) for family in topo.families for n in chosen for a in n.addresses(family)]

    bgp: dict[str, Any] = {"hold_time": 9}
    if topo.tor is not None:  # eBGP with its rack's router only
        bgp["peers"] = [
            {
                "address": str(topo.gateway_of(node)),
                "asn": topo.tor.asns[node.rack],
                "allow_local_as": topo.tor.allow_local_as,
                "description": f"{topo.tor.name(node.rack)}, the router of rack {node.rack}",
            }
        ]
    elif node.reflector:  # clients: every host; non-client peers: the other reflectors
        bgp["peers"] = [
            {"address": a, "asn": topo.asn} for a in both(r for r in topo.reflectors if r != node)
        ]
    elif topo.reflectors:  # a host peers with every reflector instead of the mesh
        bgp["peers"] = [{"address": a, "asn": topo.asn} for a in both(topo.reflectors)]
    else:
        bgp["mesh"] = {"enabled": True, "nodes": both(topo.hosts)}
    if with_subnet is None:
        with_subnet = topo.writes_subnet
    address = f"{node.address}/{topo.underlay_of(node).prefixlen}" if with_subnet else str(node.address)
    node_cfg: dict[str, Any] = {"name": node.name, "address": address}
    if node.address6 is not None:
        node_cfg["address6"] = str(node.address6)
    node_cfg["asn"] = topo.asn
    cfg: dict[str, Any] = {
        "node": node_cfg,
        "bgp": bgp,
        "pools": _pools_config(topo),
        "export": {"protocols": ["boot", 80], "interfaces": ["cali*"]},
        "kernel": {"protocol": "bird", "table": "main"},
        "runtime": {"dir": str(runtime_dir), "log_level": "info"},
        "metrics": {"listen": METRICS_LISTEN},  # each node's own loopback, inside its namespace
    }
    if node.reflector:
        cfg["reflector"] = {"cluster_id": str(topo.cluster_id), "clients": both(topo.hosts)}
    return cfg


def _pools_config(topo: Topology) -> list[dict[str, Any]]:
    """The pools of both families; an IPv4 pool with an ipip mode in the topology carries it (IPv6 pools
    never do: Calico has no IP-in-IP for IPv6)."""
    out: list[dict[str, Any]] = []
    for i, pool in enumerate(topo.pools):
        mode = topo.ipip[i] if topo.ipip else None
        out.append({"cidr": str(pool)} if mode is None else {"cidr": str(pool), "ipip": mode})
    return out + [{"cidr": str(p)} for p in topo.pools6]


def config_text(topo: Topology, node: LabHost, runtime_dir: Path, with_subnet: bool | None = None) -> str:
    """`bgpd_config()` as the YAML file the lab writes."""
    head = f"# bgpd config generated by `bgpd lab` for {node.name}\n"
    return head + yaml.safe_dump(bgpd_config(topo, node, runtime_dir, with_subnet), sort_keys=False)


def session_families(ns: str) -> list[int]:
    """The family of each established BGP session in a namespace, as the kernel's TCP table shows them."""
    out = netns.ns_exec(
        ns, "ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )", check=False
    ).stdout
    return [_peer_family(line) for line in out.splitlines() if line.strip()]


def _peer_family(ss_line: str) -> int:
    """The family of a TCP session from its `ss -Htn` line (its last column, the peer's ADDRESS:PORT)."""
    peer = ss_line.split()[-1].rsplit(":", 1)[0].strip("[]").split("%")[0]
    if peer.startswith("::ffff:") and "." in peer:
        return 4
    return 6 if ":" in peer else 4


def _link_local_ready(ns: str, dev: str) -> bool:
    """`dev` in `ns` has the workloads' IPv6 gateway address, and it is no longer tentative."""
    out = netns.ip("-6", "-j", "addr", "show", "dev", dev, "scope", "link", ns=ns, check=False).strip()
    for link in json.loads(out) if out else []:
        for addr in link.get("addr_info", []):
            if addr.get("local") == GATEWAY6 and not addr.get("tentative") and not addr.get("dadfailed"):
                return True
    return False
