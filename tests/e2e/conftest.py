"""Hosts in network namespaces on one underlay bridge, each able to run `bgpd run` (or BIRD, or GoBGP)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.lab import netns
from bgpd.lab.netns import Fabric, Process

pytestmark = pytest.mark.e2e

UNDERLAY = "192.168.100"
UNDERLAY6 = "fd00:100::"
ASN = 64512


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' not installed"
    return None


@dataclass
class Host:
    name: str
    ns: str
    address: str
    workdir: Path
    fabric: Fabric
    bgpd: Process | None = None
    config: dict[str, Any] = field(default_factory=dict)
    address6: str = ""  # set on dual-stack hosts (`Underlay.host(..., ipv6=True)`)

    def ip(self, *args: str, check: bool = True) -> str:
        return netns.ip(*args, ns=self.ns, check=check)

    def routes(self, *selector: str) -> list[dict[str, Any]]:
        return netns.routes(self.ns, *selector)

    def bird_routes(self, family: int = 4) -> dict[str, list[str]]:
        """prefix -> sorted next hops of the routes installed by bgpd (proto bird) in the main table."""
        return netns.next_hops_by_prefix(self.ns, "proto", "bird", family=family)

    def write_config(self, **overrides: Any) -> Path:
        cfg: dict[str, Any] = {
            "node": {"name": self.name, "address": self.address, "asn": ASN},
            # a short restart time: peers keep a killed host's routes (graceful restart) for 3 s, not 120
            # and a starting bgpd waits at most 10 s (not 120) for a peer that never sends End-of-RIB
            "bgp": {"hold_time": 9, "graceful_restart": 3, "select_defer_time": 10},
            "pools": [{"cidr": "10.20.0.0/16"}],
            "export": {"protocols": ["boot", 80], "interfaces": ["cali*"]},
            "kernel": {"protocol": "bird", "table": "main", "stale_timeout": 10},
            "runtime": {"dir": str(self.workdir / "run"), "log_level": "debug"},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        self.config = cfg
        path = self.workdir / "bgpd.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def start_bgpd(self, env: dict[str, str] | None = None) -> Process:
        path = self.workdir / "bgpd.yaml"
        self.bgpd = self.fabric.spawn(
            f"bgpd-{self.name}",
            self.ns,
            [sys.executable, "-m", "bgpd", "run", "-c", str(path)],
            str(self.workdir / "bgpd.log"),
            env=env,
        )
        return self.bgpd

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`bgpctl -s SOCKET ARGS...` as a user runs it (the socket is a file: any namespace reaches it)."""
        socket_path = os.path.join(self.config["runtime"]["dir"], "bgpd.ctl")
        argv = [sys.executable, "-m", "bgpd.ctl", "-s", socket_path, *args]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)

    def ctl_json(self, *args: str) -> Any:
        result = self.ctl(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def http_get(self, url: str) -> tuple[int, str]:
        """GET from inside the host's namespace (where bgpd's metrics endpoint listens)."""
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
            " print(r.status); sys.stdout.write(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n print(e.code); sys.stdout.write(e.read().decode())\n"
        )
        out = netns.ns_exec(self.ns, sys.executable, "-c", code, url).stdout
        status, _, body = out.partition("\n")
        return int(status), body

    def add_workload_route(self, prefix: str, dev: str = "cali0") -> None:
        if ":" in prefix:  # IPv6 routes have no scope
            self.ip("-6", "route", "add", prefix, "dev", dev, "proto", "boot")
        else:
            self.ip("route", "add", prefix, "dev", dev, "proto", "boot", "scope", "link")

    def add_block(self, prefix: str) -> None:
        self.ip("-6" if ":" in prefix else "-4", "route", "add", "blackhole", prefix, "proto", "80")


class Underlay:
    """A switch namespace with a bridge, and hosts attached to it."""

    def __init__(self, fabric: Fabric, workdir: Path) -> None:
        self.fabric = fabric
        self.workdir = workdir
        self.switch = fabric.namespace("sw")
        fabric.bridge(self.switch)
        self.hosts: dict[str, Host] = {}

    def host(self, name: str, octet: int, ipv6: bool = False) -> Host:
        """A host at UNDERLAY.octet/24 (and, with `ipv6`, fd00:100::OCTET/64,
        without duplicate address detection so it is usable at once)."""
        ns = self.fabric.namespace(name)
        port = f"p{name}"[:15]
        self.fabric.veth(ns, "eth0", self.switch, port)
        netns.ip("link", "set", port, "master", "br0", ns=self.switch)
        address = f"{UNDERLAY}.{octet}"
        netns.ip("addr", "add", f"{address}/24", "dev", "eth0", ns=ns)
        # a workload veth (no dummy driver on every kernel); its far end stays in the host namespace
        netns.ip("link", "add", "cali0", "type", "veth", "peer", "name", "wl0", ns=ns)
        netns.ip("link", "set", "wl0", "up", ns=ns)
        netns.ip("link", "set", "cali0", "up", ns=ns)
        address6 = ""
        if ipv6:
            address6 = f"{UNDERLAY6}{octet}"
            netns.ip("-6", "addr", "add", f"{address6}/64", "dev", "eth0", "nodad", ns=ns)
            netns.sysctl(ns, "net.ipv6.conf.all.forwarding", "1")
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        host = Host(name, ns, address, workdir, self.fabric, address6=address6)
        self.hosts[name] = host
        return host

    def mesh_nodes(self) -> list[str]:
        return [h.address for h in self.hosts.values()] + [
            h.address6 for h in self.hosts.values() if h.address6
        ]


@pytest.fixture
def underlay(tmp_path: Path) -> Iterator[Underlay]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    fabric = Fabric(prefix=f"bgpdt{secrets.token_hex(3)}-")
    try:
        yield Underlay(fabric, tmp_path)
    finally:
        logs = [(p.name, p.log_tail(15)) for p in fabric.processes]
        fabric.close()
        for name, tail in logs:
            sys.stderr.write(f"--- {name} (last lines) ---\n{tail}\n")


GOBGPD = shutil.which("gobgpd") or "/usr/bin/gobgpd"
GOBGP = shutil.which("gobgp") or "/usr/bin/gobgp"


def gone(pid: int) -> bool:
    """No process `pid`, or only its zombie (its exit not collected yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def gobgp_config(host: Host, peers: list[str]) -> str:
    """GoBGP 3 TOML: AS `ASN`, router id and listening address `host.address`, an iBGP IPv4 unicast
    session to each of `peers` from `host.address` (hold time 9 s; GoBGP 3 retries a connection every 5-9 s
    whatever `connect-retry` says below that, its first attempt included)."""
    neighbors = "\n".join(
        f"""[[neighbors]]
  [neighbors.config]
    neighbor-address = "{peer}"
    peer-as = {ASN}
  [neighbors.transport.config]
    local-address = "{host.address}"
  [neighbors.timers.config]
    connect-retry = 5
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"""
        for peer in peers
    )
    return f"""[global.config]
  as = {ASN}
  router-id = "{host.address}"
  local-address-list = ["{host.address}"]

{neighbors}"""


@dataclass
class GoBGP:
    """A gobgpd in `host`'s namespace (`start_gobgpd`), driven with the `gobgp` CLI over its gRPC API at
    127.0.0.1:`api_port` of that namespace."""

    host: Host
    api_port: int
    process: Process

    def cli(self, *args: str) -> str:
        """`gobgp -p API_PORT ARGS...` in the host's namespace: its stdout. Raises netns.CommandError when it
        fails (also while gobgpd does not listen yet)."""
        return netns.ns_exec(self.host.ns, GOBGP, "-p", str(self.api_port), *args, timeout=10).stdout

    def rib(self) -> dict[str, dict[str, Any]]:
        """The global IPv4 unicast RIB's best paths: prefix -> {"next_hop": address, "originator_id":
        address or None, "cluster_list": [cluster id, ...], "from": the peer's address, "" if local}."""
        best: dict[str, dict[str, Any]] = {}
        for prefix, paths in json.loads(self.cli("global", "rib", "-a", "ipv4", "-j") or "{}").items():
            for path in paths:
                if not path.get("best"):
                    continue
                attrs = {a["type"]: a for a in path["attrs"]}
                best[prefix] = {
                    "next_hop": attrs.get(3, {}).get("nexthop"),
                    "originator_id": attrs.get(9, {}).get("value"),  # RFC 4456 ORIGINATOR_ID (type 9)
                    "cluster_list": attrs.get(10, {}).get("value", []),  # RFC 4456 CLUSTER_LIST (type 10)
                    "from": path.get("neighbor-ip", ""),
                }
        return best


def start_gobgpd(host: Host, peers: list[str], api_port: int) -> GoBGP:
    """gobgpd (`gobgp_config`) in `host`'s namespace, its API on 127.0.0.1:`api_port` there, no pprof
    listener; started by the fabric, which ends it by pid when the test ends."""
    conf = host.workdir / "gobgpd.toml"
    conf.write_text(gobgp_config(host, peers))
    argv = [
        GOBGPD,
        "-f",
        str(conf),
        "-p",
        "-l",
        "debug",
        f"--api-hosts=127.0.0.1:{api_port}",
        "--pprof-disable",
    ]
    process = host.fabric.spawn(f"gobgpd-{host.name}", host.ns, argv, str(host.workdir / "gobgpd.log"))
    return GoBGP(host, api_port, process)
