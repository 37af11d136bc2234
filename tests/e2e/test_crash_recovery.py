"""Issue 14: `kill -9` of the receiving bgpd while it installs 100,000 routes, then a new start. At the end
the kernel holds exactly what the RIB selected and the sender announces (none lost, none twice, nothing of
the killed run left), and no route of anybody else was touched.

The sender adds 100,000 blackhole /32 blocks (protocol 80, Felix's blocks) with one `ip -batch`; the
receiver's bgpd is killed (SIGKILL, by pid) as soon as its kernel holds a fifth of them (counted, not
timed). Its ExaBGP must not outlive it (PR_SET_PDEATHSIG): nothing of the killed bgpd stays in the
namespace. The runtime directory's lock goes with the killed process, so the new start is not refused.
While the receiver is down, the sender withdraws one block and a route of bgpd's protocol appears at
bgpd's key outside every pool: both are left-overs the new run removes after its selection deferral.

"Foreign" is what README's Route ownership says is not bgpd's: other protocols, other tables, and bgpd's
protocol at another metric (inside or outside the pool). A route at bgpd's key (main table, proto bird,
metric 32) is bgpd's wherever it points, so one outside every pool is removed like any left-over. Every
route but those at bgpd's key is compared byte for byte (`ip -d route show table all`, both families),
which also finds a second copy of a learned route anywhere else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address, ip_network
from pathlib import Path

import pytest

from bgpd.lab import netns
from bgpd.lab.netns import wait_for
from tests.e2e.conftest import Host, Underlay

pytestmark = pytest.mark.e2e

N = 100_000
POOL = "10.80.0.0/14"
FIRST = int(IPv4Address("10.80.0.0"))
BLOCKS = {f"{IPv4Address(FIRST + i)}/32" for i in range(N)}
WITHDRAWN = "10.83.255.0/26"  # a block the sender withdraws while the receiver's bgpd is dead
OF_H1 = "10.83.254.0/26"  # the receiver's own block: the sender keeps it while the receiver restarts
LEFT_OVER = "10.93.0.0/24"  # a route at bgpd's key (proto bird, main, metric 32), outside every pool
CONVERGE = 240.0  # generous: the figures are the benchmark's; here only that it converges
KILL_FROM, KILL_UNTIL = N // 5, N * 4 // 5


def _foreign_routes(h0: Host) -> list[tuple[str, ...]]:
    """`ip route add` arguments of routes that are not bgpd's: other protocols, other tables, bgpd's
    protocol at another metric or in another table, in and outside the pool, IPv4 and IPv6."""
    via = ("via", h0.address)
    return [
        ("10.90.0.0/24", *via, "proto", "static"),  # outside the pool
        ("10.82.0.0/24", *via, "proto", "static"),  # inside the pool, at no learned prefix
        ("10.91.0.0/24", *via, "proto", "ospf", "metric", "20"),
        ("10.80.0.0/24", *via, "proto", "zebra", "table", "100"),  # another table
        ("10.80.1.0/24", *via, "proto", "bird", "metric", "32", "table", "100"),  # ours, another table
        ("10.92.0.0/24", *via, "proto", "bird", "metric", "50"),  # bgpd's protocol outside every pool
        ("10.80.0.7/32", *via, "proto", "bird", "metric", "50"),  # at a learned prefix, another metric
        ("-6", "fd00:99::/64", "dev", "lo", "proto", "static"),
    ]


def _add(host: Host, args: tuple[str, ...]) -> None:
    if args[0] == "-6":
        host.ip("-6", "route", "add", *args[1:])
    else:
        host.ip("route", "add", *args)


def _not_bgpds(host: Host) -> str:
    """Every route of both families in every table, as `ip -d` prints them, but bgpd's own (proto bird,
    main table, metric 32): what must be byte-identical before and after."""
    lines = []
    for family in ("-4", "-6"):
        out = host.ip("-d", family, "route", "show", "table", "all")
        lines += [ln for ln in out.splitlines() if not _bgpds(ln)]
    return "\n".join(lines)


def _bgpds(line: str) -> bool:
    """A line of `ip -d route show table all` for a route at bgpd's key: main table, proto bird, metric 32."""
    return " table main " in line and " proto bird " in line and " metric 32 " in f"{line} "


def _ours(host: Host) -> list[str]:
    """bgpd's routes in the kernel, as prefixes with their length, one entry per route (duplicates kept)."""
    out = host.ip("route", "show", "table", "main", "proto", "bird", "metric", "32")
    return [str(ip_network(line.split()[0])) for line in out.splitlines()]


def _count_ours(host: Host) -> int:
    return host.ip("route", "show", "table", "main", "proto", "bird", "metric", "32").count("\n")


def _pair(underlay: Underlay) -> tuple[Host, Host]:
    h0, h1 = underlay.host("h0", 10), underlay.host("h1", 11)
    nodes = underlay.mesh_nodes()
    for host in (h0, h1):
        host.write_config(
            bgp={"hold_time": 9, "graceful_restart": 60, "mesh": {"enabled": True, "nodes": nodes}},
            pools=[{"cidr": POOL}],
            runtime={"log_level": "info"},  # debug would log each of the 100,000 routes
        )
    return h0, h1


def _alive(pid: int) -> bool:
    """Process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _living_pids(ns: str) -> list[int]:
    return [pid for pid in map(int, netns.ip("netns", "pids", ns).split()) if _alive(pid)]


def test_kill_9_while_installing_100k_routes_then_restart_converges_exactly(underlay: Underlay) -> None:
    h0, h1 = _pair(underlay)
    for args in _foreign_routes(h0):
        _add(h1, args)
    h1.add_block(OF_H1)
    # the kernel adds each link's IPv6 link-local address (and its local route) on its own time: the
    # snapshot waits for eth0's, cali0's and wl0's
    wait_for(
        lambda: h1.ip("-6", "route", "show", "table", "local").count("local fe80::") == 3,
        30.0,
        "link-local routes",
    )
    foreign_before = _not_bgpds(h1)
    h0.start_bgpd()
    first = h1.start_bgpd()
    h0.add_block(WITHDRAWN)
    wait_for(lambda: WITHDRAWN in _ours(h1), CONVERGE, "the first block on h1")
    wait_for(lambda: OF_H1 in h0.bird_routes(), CONVERGE, "h1's block on h0")
    exabgp = h1.ctl_json("show", "status")["exabgp"]["pid"]
    assert isinstance(exabgp, int) and _alive(exabgp)

    batch = h0.workdir / "blocks.batch"
    batch.write_text("".join(f"route add blackhole {p} proto 80\n" for p in sorted(BLOCKS)))
    adding = subprocess.Popen(["ip", "-n", h0.ns, "-batch", str(batch)])  # the receiver is counted meanwhile
    try:
        wait_for(lambda: _count_ours(h1) >= KILL_FROM, CONVERGE, "a fifth of the blocks on h1", interval=0.02)
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert adding.wait(CONVERGE) == 0
    finally:
        if adding.poll() is None:
            adding.kill()
            adding.wait()
    assert first.popen.wait(30) == -signal.SIGKILL
    at_kill = _count_ours(h1)  # nothing writes any more: what the killed bgpd had installed
    assert KILL_FROM <= at_kill <= KILL_UNTIL, f"killed with {at_kill} of {N} installed"

    # nothing of the killed bgpd outlives it: not its ExaBGP, not ExaBGP's API helper
    wait_for(lambda: not _alive(exabgp), 10.0, "the killed bgpd's ExaBGP gone")
    wait_for(lambda: not _living_pids(h1.ns), 10.0, "no process left in h1's namespace")
    # its sessions closed without a NOTIFICATION: h0 keeps h1's routes as a graceful restart helper
    assert h0.bird_routes().get(OF_H1) == [h1.address]
    assert _count_ours(h1) == at_kill  # and nobody removed the installed routes

    # while h1 is down: a block withdrawn at the source, a route of ours left over outside every pool
    h0.ip("route", "del", "blackhole", WITHDRAWN, "proto", "80")
    h1.ip("route", "add", LEFT_OVER, "via", h0.address, "proto", "bird", "metric", "32")
    restart = time.monotonic()
    second = h1.start_bgpd()

    # the kernel holds exactly the sender's blocks: each once, nothing else of ours
    wait_for(lambda: _count_ours(h1) == N and LEFT_OVER not in _ours(h1), CONVERGE, "h1 converged", 0.5)
    wait_for(
        lambda: h1.ctl_json("show", "kernel")["selection_deferral"]["done"], CONVERGE, "deferral over", 0.5
    )
    converged = time.monotonic()
    ours = _ours(h1)
    assert len(ours) == len(set(ours)) == N and set(ours) == BLOCKS
    assert second.alive(), second.log_tail()  # the lock did not refuse the start; the new bgpd holds it
    assert (Path(h1.config["runtime"]["dir"]) / "bgpd.pid").read_text() == f"{second.pid}\n"

    # what bgpd reports is the kernel, and the kernel is the RIB's selection
    kernel = h1.ctl_json("show", "kernel")
    owned = {o["prefix"]: o["next_hops"] for o in kernel["owned"]}
    assert set(owned) == BLOCKS and all(hops == [h0.address] for hops in owned.values())
    assert kernel["not_installed"] == [] and kernel["stale_from_earlier_run"] == []
    selected = {
        r["prefix"]: sorted(p["next_hop"] for p in r["paths"] if p["best"] or p["ecmp"])
        for r in h1.ctl_json("show", "routes")
        if any(p["best"] for p in r["paths"])
    }
    assert selected == owned

    # and nobody else's route changed by one byte
    assert _not_bgpds(h1) == foreign_before
    wait_for(lambda: h0.ctl_json("show", "peers")[0]["stale_routes"] == 0, CONVERGE, "h1's block fresh on h0")
    assert h0.bird_routes().get(OF_H1) == [h1.address]
    assert "graceful restart: keeping the peer's routes" in (h0.workdir / "bgpd.log").read_text()
    sys.stderr.write(
        f"\n[crash recovery] killed with {at_kill} of {N} installed; restarted bgpd converged in "
        f"{converged - restart:.1f} s ({converged - killed_at:.1f} s after the kill)\n"
    )
