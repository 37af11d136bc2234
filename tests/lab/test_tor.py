"""The top-of-rack lab (issue 13) end to end: two racks, each with a real BGP router (BIRD 2 in its own AS,
started by the lab), four real bgpd peering over eBGP with their rack's router only (no mesh, no tunnel);
real pings across the racks, plain on the wire (a capture on a router), no tunl0 anywhere, the AS paths
bgpd received and BIRD's own, `allow_local_as` 0 rejecting every route (as_loop) with the one failure it
causes explained; and nothing left behind: no namespace, no BIRD, no bgpd, also when `up` fails."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgpd import ctl
from bgpd.lab import netns, tor
from bgpd.lab.lab import Lab, _alive
from bgpd.lab.topology import load
from tests.lab.capture import capture

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ping") is None or tor.missing_commands() != [],
        reason="needs root, ping and BIRD 2",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SAME_RACK = ("10.20.1.2", "10.20.2.2")  # host0 -> host1, both in rack 0
CROSS_RACK = ("10.20.1.2", "10.20.3.2")  # host0 -> host2, through tor0 and tor1


def _topology(tmp_path: Path, allow_local_as: int = 1) -> Path:
    """The shipped topology under a unique name (tests never meet a lab a user left running; `tor` + hex
    cannot collide with the e2e tests' `bgpdt<hex>-` namespaces)."""
    text = (ROOT / "configs" / "lab-tor.yaml").read_text()
    text = re.sub(r"^name: \S+", f"name: tor{secrets.token_hex(3)}", text, count=1, flags=re.M)
    text, count = re.subn(r"^(\s+allow_local_as: )\d+", rf"\g<1>{allow_local_as}", text, flags=re.M)
    assert count == 1
    path = tmp_path / "lab-tor.yaml"
    path.write_text(text)
    return path


def lab_cli(topology: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bgpd", "lab", "-t", str(topology), "--state-dir", str(state), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def _pids(state: Path) -> dict[str, dict[str, int]]:
    """bgpd's and BIRD's pids as the state file records them."""
    try:
        recorded = json.loads((state / "state.json").read_text())
    except OSError:
        return {"pids": {}, "routers": {}}
    return {key: {k: int(v) for k, v in recorded.get(key, {}).items()} for key in ("pids", "routers")}


def _running(seen: list[dict[str, dict[str, int]]]) -> list[str]:
    """Which of the processes ever recorded still run."""
    out = []
    for pids in seen:
        out += [f"bgpd {n} {p}" for n, p in pids["pids"].items() if _alive(p)]
        out += [f"BIRD {n} {p}" for n, p in pids["routers"].items() if _alive(p, tor.BIRD_MARKER)]
    return out


@pytest.fixture
def tor_lab(tmp_path: Path) -> Iterator[tuple[Path, Path, list[dict[str, dict[str, int]]]]]:
    """A topology file and a state directory; `down` at the end, which must leave nothing: no namespace,
    no BIRD, no bgpd (the test appends the pids it saw to the list)."""
    topology = _topology(tmp_path)
    state = tmp_path / "state"
    seen: list[dict[str, dict[str, int]]] = []
    try:
        yield topology, state, seen
    finally:
        seen.append(_pids(state))
        down = lab_cli(topology, state, "down")
        assert down.returncode == 0, down.stderr
        assert netns.list_namespaces(load(topology).prefix) == []
        assert _running(seen) == []


def _capture(lab: Lab, router: str, source: str, target: str) -> dict[str, int]:
    """What enters `router` while `source` pings `target` (see `tests.lab.capture`)."""
    return capture(lab, router, source, target)


def test_tor_lab_up_check_routes_with_as_paths_and_down(
    tor_lab: tuple[Path, Path, list[dict[str, dict[str, int]]]],
) -> None:
    """Every pair answers across the racks with nothing encapsulated: the routers forward by the workload
    routes BIRD learned over eBGP; `routes` shows the AS paths; a failed `up` and `down` leave nothing."""
    topology, state, seen = tor_lab
    up = lab_cli(topology, state, "up", "--timeout", "30")
    assert up.returncode == 0, up.stderr + up.stdout
    seen.append(_pids(state))
    assert "4 hosts, 5 workloads, IPv4 only" in up.stdout
    assert "routers: tor0 192.168.100.1 AS 65001, tor1 192.168.200.1 AS 65002 (BIRD 2, eBGP" in up.stdout
    assert "hosts: AS 64512, eBGP with their rack's router only (no mesh), allow_local_as 1" in up.stdout
    assert "tunl0: none" in up.stdout
    assert re.search(r"^host0\s+192\.168\.100\.10\s+1/1\s+4\s+1\s+1\s+10\.20\.1\.2$", up.stdout, re.M), (
        up.stdout
    )
    assert re.search(
        r"^host3\s+192\.168\.200\.11\s+1/1\s+3\s+2\s+1\s+10\.20\.4\.2 10\.20\.1\.3$", up.stdout, re.M
    )
    assert re.search(
        r"^tor1\s+192\.168\.200\.1\s+3/3\s+6\s+\(rack 1's router: BIRD, AS 65002\)$", up.stdout, re.M
    )
    pids = seen[-1]
    assert sorted(pids["routers"]) == ["tor0", "tor1"] and len(pids["pids"]) == 4
    assert all(_alive(p, tor.BIRD_MARKER) for p in pids["routers"].values())
    config = (state / "host0.yaml").read_text()
    assert "mesh" not in config and "ipip" not in config
    assert re.search(r"address: 192\.168\.100\.1\n\s+asn: 65001\n\s+allow_local_as: 1\n", config), config

    check = lab_cli(topology, state, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "40/40 IPv4 pings answered (✓ round-trip time in ms)\n" in check.stdout
    assert "*" not in check.stdout and "tunl0" not in check.stdout

    lab = Lab(load(topology), state)
    # no tunnel device anywhere in the lab (hosts, routers, switches, workloads)
    for ns in netns.list_namespaces(lab.prefix):
        links = json.loads(netns.ip("-d", "-j", "link", "show", ns=ns))
        assert [link["ifname"] for link in links if link["ifname"] == "tunl0"] == [], ns
        kinds = {link.get("linkinfo", {}).get("info_kind") for link in links}
        assert not kinds & {"ipip", "tun", "gre", "vxlan"}, (ns, kinds)
    # on the wire: the workloads' own packets cross tor0, plain (ICMP, not IP-in-IP); a same-rack pair
    # goes host to host (BIRD kept the neighbour as next hop), never through the router
    seen_at_router = _capture(lab, "tor0", *CROSS_RACK)
    assert seen_at_router.get("1 10.20.1.2 10.20.3.2", 0) >= 1, seen_at_router
    assert seen_at_router.get("1 10.20.3.2 10.20.1.2", 0) >= 1, seen_at_router
    assert not [k for k in seen_at_router if k.startswith("4 ")], seen_at_router
    assert not [k for k in _capture(lab, "tor0", *SAME_RACK) if k.startswith("1 10.20.")]

    # the AS paths: bgpd's (same rack: the router's AS and the hosts'; the other rack: both routers')
    routes = lab_cli(topology, state, "routes", "host0")
    assert routes.returncode == 0, routes.stderr
    learned = routes.stdout.split("learned via BGP:\n")[1].split("blackholes:")[0]
    assert [" ".join(line.split()) for line in learned.splitlines()] == [
        "10.20.1.3 via 192.168.100.1 dev eth0 proto bird metric 32 as-path 65001 65002 64512",
        "10.20.2.0/24 via 192.168.100.11 dev eth0 proto bird metric 32 as-path 65001 64512",
        "10.20.3.0/24 via 192.168.100.1 dev eth0 proto bird metric 32 as-path 65001 65002 64512",
        "10.20.4.0/24 via 192.168.100.1 dev eth0 proto bird metric 32 as-path 65001 65002 64512",
    ]
    assert (
        "(as-path: bgpd's best path (bgpctl show routes); peer 192.168.100.1: tor0, AS 65001)"
        in routes.stdout
    )
    shown = ctl.request(str(state / "host0" / "bgpd.ctl"), "routes", {"prefix": "10.20.3.0/24"})
    (path,) = shown[0]["paths"]
    assert path["as_path"] == [65001, 65002, 64512] and path["ebgp"] and path["from"] == "192.168.100.1"
    # and BIRD's, in the router's table: the hosts' routes and the other rack's subnet
    router = lab_cli(topology, state, "routes", "tor0")
    assert router.returncode == 0, router.stderr
    lines = {" ".join(line.split()) for line in router.stdout.splitlines()}
    assert "10.20.1.0/24 via 192.168.100.10 dev eth0 proto bird metric 32 as-path 64512" in lines
    assert "10.20.3.0/24 via 192.168.255.2 dev eth1 proto bird metric 32 as-path 65002 64512" in lines
    assert "10.20.1.3 via 192.168.255.2 dev eth1 proto bird metric 32 as-path 65002 64512" in lines
    assert "192.168.200.0/24 via 192.168.255.2 dev eth1 proto bird metric 32 as-path 65002" in lines

    # an `up` that fails (no time to converge) stops every BIRD and bgpd it started, by pid
    failed = lab_cli(topology, state, "up", "--rebuild", "--timeout", "0")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "lab up failed while waiting for routes to converge" in failed.stderr
    assert netns.list_namespaces(lab.prefix) == []
    seen.append(_pids(state))
    assert _running(seen) == []


def test_allow_local_as_zero_rejects_every_route_and_only_the_borrowed_workload_fails(tmp_path: Path) -> None:
    """With Calico's default numAllowedLocalASNumbers (0) every host rejects every route its router sends
    (each path holds the hosts' shared AS): bgpd counts them as as_loop and installs none. Traffic still
    follows the default route through the router, except to the workload borrowed from host0's block:
    host0's blackhole takes it, and `check` says why."""
    topology = _topology(tmp_path, allow_local_as=0)
    state = tmp_path / "state"
    seen: list[dict[str, dict[str, int]]] = []
    try:
        up = lab_cli(topology, state, "up", "--timeout", "30")
        assert up.returncode == 0, up.stderr + up.stdout
        seen.append(_pids(state))
        rows = {" ".join(line.split()) for line in up.stdout.splitlines()}
        assert "host0 192.168.100.10 1/1 0 1 1 10.20.1.2" in rows, up.stdout
        (peer,) = ctl.request(str(state / "host0" / "bgpd.ctl"), "peers")
        assert peer["received"] == 4 and peer["accepted"] == 0 and peer["rejected"] == {"as_loop": 4}
        check = lab_cli(topology, state, "check")
        assert check.returncode == 1
        assert "37/40 IPv4 pings answered" in check.stdout, check.stdout
        failed = sorted(line for line in check.stdout.splitlines() if line.startswith("FAILED"))
        assert [": ".join(line.split(": ")[:2]) for line in failed] == [
            "FAILED: 10.20.1.2 -> 10.20.1.3",
            "FAILED: 10.20.1.3 -> 10.20.1.2",
            "FAILED: 10.20.1.3 -> 192.168.100.10",
        ]
        assert all(
            "host0 rejected the route to 10.20.1.3/32 (as_loop: its AS path holds the hosts' AS 64512 and "
            "tor.allow_local_as is 0, Calico's numAllowedLocalASNumbers), so its blackhole for 10.20.1.0/24 "
            "takes the packets" in line
            for line in failed
        ), failed
    finally:
        seen.append(_pids(state))
        lab_cli(topology, state, "down")
    assert netns.list_namespaces(load(topology).prefix) == []
    assert _running(seen) == []
