"""`bgpd lab` end to end, as a user runs it (the CLI): the default topology, a 4-host one and the reflector
one, all dual stack; the same default topology IPv4-only (`ipv6: false`); and the lab's dual-stack
dataplane on its own, with the routes bgpd must install placed by hand (no bgpd), so a failure there is
the lab's and not the daemon's."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgpd.lab import netns
from bgpd.lab.lab import Lab, veth_name
from bgpd.lab.topology import load

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ping") is None, reason="needs root and ping"),
]

ROOT = Path(__file__).resolve().parents[2]


def _copy_topology(name: str, tmp_path: Path, extra: str = "") -> Path:
    """The shipped topology under a unique name, so tests never meet a lab a user left running; `extra`
    lines are appended (e.g. `ipv6: false`)."""
    text = (ROOT / "configs" / name).read_text()
    unique = "t" + secrets.token_hex(3)
    lines = [f"name: {unique}" if line.startswith("name:") else line for line in text.splitlines()]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def lab_cli(topology: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bgpd", "lab", "-t", str(topology), "--state-dir", str(state), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture
def default_lab(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    topology = _copy_topology("lab.yaml", tmp_path)
    state = tmp_path / "state"
    try:
        yield topology, state
    finally:
        lab_cli(topology, state, "down")
        assert netns.list_namespaces(load(topology).prefix) == []


def test_default_topology_up_check_routes_down(default_lab: tuple[Path, Path]) -> None:
    """The demo, dual stack: every workload reaches every workload and host over IPv4 and over IPv6."""
    topology, state = default_lab
    up = lab_cli(topology, state, "up")
    assert up.returncode == 0, up.stderr + up.stdout
    assert "2 hosts, 3 workloads, dual stack" in up.stdout
    assert re.search(r"^host0\s+192\.168\.100\.10\s+1/1\s+2\s+1\s+1\s+10\.20\.1\.2$", up.stdout, re.M), (
        up.stdout
    )
    assert re.search(r"^\s+fd00:100::10\s+1/1\s+2\s+1\s+1\s+fd00:10:20:1::2$", up.stdout, re.M), up.stdout
    check = lab_cli(topology, state, "check")
    assert check.returncode == 0, check.stdout
    assert "12/12 IPv4 pings answered" in check.stdout
    assert "12/12 IPv6 pings answered" in check.stdout
    # the original's three checks, by name, in both families
    pings = {(p.source, p.target): p.ok for p in Lab(load(topology), state).check()}
    assert pings[("10.20.1.2", "10.20.2.2")]  # other host, other block
    assert pings[("10.20.1.2", "10.20.1.3")]  # other host, same /24
    assert pings[("10.20.1.2", "192.168.100.3")]  # a host
    assert pings[("fd00:10:20:1::2", "fd00:10:20:2::2")]  # other host, other block
    assert pings[("fd00:10:20:1::2", "fd00:10:20:1::3")]  # other host, same /122 (borrowed)
    assert pings[("fd00:10:20:1::2", "fd00:100::3")]  # a host
    routes = lab_cli(topology, state, "routes", "host0")
    assert routes.returncode == 0
    learned = routes.stdout.split("learned via BGP:")[1].split("blackholes:")[0]
    assert "10.20.2.0/24 via 192.168.100.3" in learned and "proto bird" in learned
    assert "10.20.1.3 via 192.168.100.3" in learned
    assert "fd00:10:20:2::/122 via fd00:100::3" in learned
    assert "fd00:10:20:1::3 via fd00:100::3" in learned
    assert len(learned.strip().splitlines()) == 4, learned
    down = lab_cli(topology, state, "down")
    assert down.returncode == 0
    assert netns.list_namespaces(load(topology).prefix) == []


def test_ipv4_only_lab(tmp_path: Path) -> None:
    """`ipv6: false`: the same lab without IPv6 (no IPv6 address, route, session or matrix)."""
    topology = _copy_topology("lab.yaml", tmp_path, "ipv6: false\n")
    state = tmp_path / "state"
    try:
        up = lab_cli(topology, state, "up")
        assert up.returncode == 0, up.stderr + up.stdout
        assert "2 hosts, 3 workloads, IPv4 only" in up.stdout
        assert "fd00:" not in up.stdout
        assert "address6" not in (state / "host0.yaml").read_text()
        check = lab_cli(topology, state, "check")
        assert check.returncode == 0, check.stdout
        assert "12/12 IPv4 pings answered" in check.stdout and "IPv6" not in check.stdout
        routes = lab_cli(topology, state, "routes", "host1")
        assert "fd00:" not in routes.stdout
    finally:
        lab_cli(topology, state, "down")
    assert netns.list_namespaces(load(topology).prefix) == []


@pytest.fixture
def built_lab(tmp_path: Path) -> Iterator[tuple[Path, Path, Lab]]:
    """The default topology's namespaces, links, addresses and Felix's routes, without bgpd."""
    topology = _copy_topology("lab.yaml", tmp_path)
    state = tmp_path / "state"
    lab = Lab(load(topology), state)
    try:
        lab.build()
        yield topology, state, lab
    finally:
        lab.down()
        assert netns.list_namespaces(lab.prefix) == []


def test_dual_stack_dataplane_with_the_routes_bgpd_must_install_placed_by_hand(
    built_lab: tuple[Path, Path, Lab],
) -> None:
    """The lab's own part of dual stack, without bgpd: the workloads set up as Calico sets them up, same-host
    pings in both families, `check` failing and naming the pairs without routes, then every pair answering
    once each host has the routes bgpd must install (placed by hand, `proto bird`)."""
    topology, state, lab = built_lab
    host0, host1 = lab.topo.hosts
    w0 = lab.workload_ns(host0, 0)
    # the workload: its /128 on eth0, the IPv6 default route via the host side's link-local address
    assert "inet6 fd00:10:20:1::2/128" in netns.ip("-6", "addr", "show", "dev", "eth0", ns=w0)
    default6 = netns.ip("-6", "route", "show", "default", ns=w0)
    assert default6.startswith("default via fe80::ecee:eeff:feee:eeee dev eth0"), default6
    # the host side: Calico's MAC (whose EUI-64 address is that gateway), a /128 route to the workload,
    # IPv6 forwarding and proxy NDP, and the blackhole of its /122
    dev = veth_name(host0.workloads[0])
    h0 = lab.host_ns(host0)
    assert "link/ether ee:ee:ee:ee:ee:ee" in netns.ip("link", "show", "dev", dev, ns=h0)
    assert netns.ip("-6", "route", "show", "fd00:10:20:1::2", ns=h0).startswith(f"fd00:10:20:1::2 dev {dev}")
    assert netns.ip("-6", "route", "show", "type", "blackhole", ns=h0).startswith(
        "blackhole fd00:10:20:1::/122"
    )
    assert netns.ns_exec(h0, "sysctl", "-n", "net.ipv6.conf.all.forwarding").stdout.strip() == "1"
    assert netns.ns_exec(h0, "sysctl", "-n", f"net.ipv6.conf.{dev}.proxy_ndp").stdout.strip() == "1"

    # no routes between the hosts yet: only same-host pings answer, in both families
    check = lab_cli(topology, state, "check")
    assert check.returncode == 1, check.stdout
    assert "5/12 IPv4 pings answered" in check.stdout and "5/12 IPv6 pings answered" in check.stdout
    assert "FAILED: fd00:10:20:1::2 -> fd00:10:20:2::2" in check.stdout
    pings = {(p.source, p.target): p.ok for p in lab.check()}
    assert pings[("fd00:10:20:2::2", "fd00:10:20:1::3")]  # two workloads of host1
    assert pings[("fd00:10:20:1::2", "fd00:100::10")]  # a workload and its host
    assert not pings[("fd00:10:20:1::2", "fd00:100::3")]

    # the routes bgpd must install, by hand: then every pair answers, and `lab` sees them as learned
    for host in lab.topo.hosts:
        for prefix, via in lab.expected(host).items():
            netns.ip("route", "add", prefix, "via", via, "proto", "bird", ns=lab.host_ns(host))
        assert lab.learned(host) == lab.expected(host)
    assert lab.learned(host0) == {
        "10.20.2.0/24": "192.168.100.3",
        "10.20.1.3": "192.168.100.3",
        "fd00:10:20:2::/122": "fd00:100::3",
        "fd00:10:20:1::3": "fd00:100::3",
    }
    check = lab_cli(topology, state, "check")
    assert check.returncode == 0, check.stdout
    assert "12/12 IPv4 pings answered" in check.stdout and "12/12 IPv6 pings answered" in check.stdout
    assert "FAILED" not in check.stdout

    # `routes`: both families, grouped; the kernel's fe80::/64 routes left out
    routes = lab_cli(topology, state, "routes", "host1")
    assert routes.returncode == 0, routes.stderr
    local = routes.stdout.split("local workloads:")[1].split("learned via BGP:")[0]
    assert len(local.strip().splitlines()) == 4 and "fd00:10:20:1::3 dev cali" in local
    assert "fe80::" not in routes.stdout

    # a workload removed by its IPv6 address loses both its routes and its namespace
    removed = lab_cli(topology, state, "remove-workload", "fd00:10:20:1::3")
    assert removed.returncode == 0, removed.stderr
    h1 = lab.host_ns(host1)
    assert netns.ip("route", "show", "10.20.1.3", ns=h1) == ""
    assert netns.ip("-6", "route", "show", "fd00:10:20:1::3", ns=h1) == ""
    assert lab.workload_ns(host1, 1) not in netns.list_namespaces(lab.prefix)
    # removed twice: one line that says so, no traceback
    twice = lab_cli(topology, state, "remove-workload", "10.20.1.3")
    assert twice.returncode == 1 and "Traceback" not in twice.stderr, twice.stderr
    assert twice.stderr.startswith("bgpd lab: workload 10.20.1.3 is already removed"), twice.stderr
    # the check goes on without it: every remaining pair answers
    after = lab_cli(topology, state, "check")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "10.20.1.3" not in after.stdout and "fd00:10:20:1::3" not in after.stdout


def test_up_twice_is_safe_and_down_cleans_after_a_crash(default_lab: tuple[Path, Path]) -> None:
    topology, state = default_lab
    assert lab_cli(topology, state, "up").returncode == 0
    refused = lab_cli(topology, state, "up")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and "--rebuild" in refused.stderr
    again = lab_cli(topology, state, "up", "--rebuild")
    assert again.returncode == 0, again.stderr
    assert lab_cli(topology, state, "check").returncode == 0
    # a crash of the earlier run: the state file is gone, only the namespaces remain
    (state / "state.json").unlink()
    assert lab_cli(topology, state, "down").returncode == 0
    assert netns.list_namespaces(load(topology).prefix) == []


def test_removed_workload_becomes_unreachable_and_its_route_disappears(
    default_lab: tuple[Path, Path],
) -> None:
    topology, state = default_lab
    up = lab_cli(topology, state, "up")
    assert up.returncode == 0, up.stderr
    lab = Lab(load(topology), state)
    host0 = lab.topo.host("host0")
    assert {"10.20.1.3", "fd00:10:20:1::3"} <= lab.learned(host0).keys()
    removed = lab_cli(topology, state, "remove-workload", "10.20.1.3")
    assert removed.returncode == 0, removed.stderr
    netns.wait_for(
        lambda: not {"10.20.1.3", "fd00:10:20:1::3"} & lab.learned(host0).keys(),
        30,
        "the /32 and the /128 withdrawn on host0",
    )
    w0 = lab.workload_ns(host0, 0)
    assert not lab.ping(w0, "10.20.1.2", "10.20.1.3").ok
    assert not lab.ping(w0, "fd00:10:20:1::2", "fd00:10:20:1::3", 6).ok
    assert lab.ping(w0, "10.20.1.2", "10.20.2.2").ok  # everything else still works
    assert lab.ping(w0, "fd00:10:20:1::2", "fd00:10:20:2::2", 6).ok


def _up_check_down(tmp_path: Path, shipped: str, summary: str, pings: str) -> str:
    """`up` a shipped topology, expect `summary` in its output and `pings` answered by `check` in each
    family; always `down`, which must leave nothing. Returns `up`'s output."""
    topology = _copy_topology(shipped, tmp_path)
    state = tmp_path / "state"
    try:
        up = lab_cli(topology, state, "up")
        assert up.returncode == 0, up.stderr + up.stdout
        assert summary in up.stdout
        check = lab_cli(topology, state, "check")
        assert check.returncode == 0, check.stdout
        assert f"{pings} IPv4 pings answered" in check.stdout
        assert f"{pings} IPv6 pings answered" in check.stdout
    finally:
        lab_cli(topology, state, "down")
    assert netns.list_namespaces(load(topology).prefix) == []
    return up.stdout


def test_four_hosts_three_workloads_each(tmp_path: Path) -> None:
    _up_check_down(tmp_path, "lab4.yaml", "4 hosts, 12 workloads, dual stack", "180/180")


def test_up_that_cannot_write_its_state_fails_cleanly(tmp_path: Path) -> None:
    topology = _copy_topology("lab.yaml", tmp_path)
    state = tmp_path / "state"
    state.write_text("a file where the state directory should be")
    up = lab_cli(topology, state, "up")
    assert up.returncode == 1
    assert up.stderr.startswith("bgpd lab: lab up failed while writing the state directory")
    assert "Traceback" not in up.stderr
    assert netns.list_namespaces(load(topology).prefix) == []


def test_routes_that_do_not_converge_in_time_fail_up_name_the_logs_and_tear_down(tmp_path: Path) -> None:
    topology = _copy_topology("lab.yaml", tmp_path)
    state = tmp_path / "state"
    up = lab_cli(topology, state, "up", "--timeout", "0")
    assert up.returncode == 1
    assert "lab up failed while waiting for routes to converge" in up.stderr
    assert str(state / "host0.log") in up.stderr
    assert "Traceback" not in up.stderr
    assert netns.list_namespaces(load(topology).prefix) == []


def test_reflector_topology_converges_and_every_ping_answers(tmp_path: Path) -> None:
    """Clients over IPv4 and IPv6 sessions: each reflector has 4 sessions in each family (3 clients and the
    other reflector), and the IPv6 routes are reflected as the IPv4 ones."""
    out = _up_check_down(tmp_path, "lab-rr.yaml", "3 hosts, 2 reflectors, 5 workloads, dual stack", "35/35")
    assert re.search(r"^rr1\s+192\.168\.100\.2\s+4/4\s+0\s+0\s+0\s+\(route reflector\)", out, re.M), out
    assert re.search(r"^\s+fd00:100::2\s+4/4\s+0\s+0\s+0\s+\(route reflector\)", out, re.M), out
    assert re.search(r"^host0\s+192\.168\.100\.10\s+2/2\s+", out, re.M), out
    assert re.search(r"^\s+fd00:100::10\s+2/2\s+", out, re.M), out
