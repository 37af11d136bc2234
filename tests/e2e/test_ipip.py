"""IP-in-IP (issue 12) end to end: real bgpd daemons (and BIRD 2) in namespaces on one underlay bridge.

The kernel form of learned routes per pool `ipip` mode: `cross-subnet` installs a route `via G dev tunl0
onlink` when G is outside the node's subnet (as configured in `node.address`, or taken from the interface
when the address has no length) and a plain `via G` inside it, per next hop of an ECMP route; `always`
tunnels every next hop. Routes that need a missing or down `tunl0` wait (shown by `bgpctl show kernel`
and a metric) and are installed when it comes up; a mode change on reload replaces routes in place; routes
via `tunl0` are never exported.

All hosts share one L2 segment (192.168.100.0/24): only the subnet bgpd believes in decides "outside", and
an onlink next hop on `tunl0` needs no route to the gateway. This kernel has no ipip device: `tunl0` is a
TUN device with the host's /32 tunnel address (no process behind it: nothing is forwarded through it, only
route installation is checked here; the lab's encapsulator does the forwarding).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bgpd.lab import netns
from bgpd.lab.netns import Process, wait_for
from tests.e2e.conftest import ASN, UNDERLAY, Host, Underlay
from tests.e2e.test_bird import BIRD, bird_config, birdc, start_bird_text

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="no /dev/net/tun for the tunl0 stand-in"),
]

CONVERGE = 30.0  # generous deadline; convergence is normally well under a second
POOL = "10.20.0.0/16"
METRICS = "127.0.0.1:9479"  # inside each host's namespace

# one next hop of a kernel route as `ip -j route` shows it: (gateway, device, onlink)
KHop = tuple[str, str, bool]


# ---------------------------------------------------------------------------------------------- helpers


def _config(host: Host, mode: str, address: str | None = None, **overrides: Any) -> None:
    """bgpd's config for `host` with one pool in ipip `mode`; `address` is node.address as written (with
    or without its prefix length), the host's address by default."""
    host.write_config(
        node={"name": host.name, "address": address or host.address, "asn": ASN},
        pools=[{"cidr": POOL, "ipip": mode}],
        **overrides,
    )


def _mesh(hosts: list[Host]) -> dict[str, Any]:
    nodes = [h.address for h in hosts]
    return {
        "hold_time": 9,
        "graceful_restart": 3,
        "select_defer_time": 10,
        "mesh": {"enabled": True, "nodes": nodes},
    }


def _tunl0(host: Host, address: str, up: bool = True) -> None:
    """Felix's tunl0, stood in for by a TUN device with the host's /32 tunnel address."""
    host.ip("tuntap", "add", "dev", "tunl0", "mode", "tun")
    host.ip("addr", "add", f"{address}/32", "dev", "tunl0")
    if up:
        host.ip("link", "set", "tunl0", "up")


def _forms(host: Host) -> dict[str, list[KHop]]:
    """prefix (as ip prints it) -> sorted (gateway, device, onlink) of every route bgpd installed."""
    out: dict[str, list[KHop]] = {}
    for r in host.routes("proto", "bird"):
        hops = r.get("nexthops") or [r]
        out[r["dst"]] = sorted((h["gateway"], h["dev"], "onlink" in h.get("flags", [])) for h in hops)
    return out


def _plain(*gateways: str) -> list[KHop]:
    return sorted((g, "eth0", False) for g in gateways)


def _tunnel(*gateways: str) -> list[KHop]:
    return sorted((g, "tunl0", True) for g in gateways)


def _wait_forms(host: Host, want: Mapping[str, list[KHop] | None], what: str) -> None:
    """Wait until each prefix of `want` is installed by bgpd in that form (None: not installed at all)."""

    def ok() -> bool:
        got = _forms(host)
        return all(got.get(p) == form for p, form in want.items())

    try:
        wait_for(ok, CONVERGE, what)
    except TimeoutError as exc:
        got = _forms(host)
        detail = {p: got.get(p) for p in want}
        raise AssertionError(f"{exc}\n on {host.name}: wanted {want}\n got {detail}") from None


def _waiting(host: Host) -> dict[str, int] | None:
    """`bgpctl show kernel`'s count of routes waiting per device; None while bgpd does not answer yet."""
    result = host.ctl("show", "kernel", "--json")
    if result.returncode != 0:
        return None
    return dict(json.loads(result.stdout)["waiting_for_device"])


def _metric(host: Host, name: str, **labels: str) -> float | None:
    status, body = host.http_get(f"http://{METRICS}/metrics")
    assert status == 200, body
    for line in body.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


class RouteMonitor:
    """`ip -o monitor route` in a host's namespace (a fabric process: killed by pid at teardown too),
    bracketed by marker routes so that every event between `start` and `stop` is known to be in its log."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.log = host.workdir / "monitor.log"
        self.proc: Process | None = None

    def _mark(self, name: str) -> None:
        prefix = {"start": "10.99.0.0/24", "stop": "10.99.1.0/24"}[name]  # outside every pool

        def seen() -> bool:
            if prefix in self.log.read_text():
                return True
            # not seen (yet): the monitor may not have been listening when it was written; write it again
            self.host.ip("route", "del", "blackhole", prefix, check=False)
            self.host.ip("route", "add", "blackhole", prefix, "proto", "static")
            return False

        wait_for(seen, CONVERGE, f"route monitor on {self.host.name} ({name})", interval=0.2)

    def start(self) -> None:
        self.proc = self.host.fabric.spawn(
            f"monitor-{self.host.name}", self.host.ns, ["ip", "-o", "monitor", "route"], str(self.log)
        )
        self._mark("start")

    def stop(self) -> list[str]:
        """The route events seen since `start` (the markers' included)."""
        self._mark("stop")
        assert self.proc is not None
        self.proc.stop()
        return self.log.read_text().splitlines()


# ------------------------------------------------------------------------------------------------ tests


def test_cross_subnet_mesh_plain_inside_tunnel_outside_and_ecmp_per_hop(underlay: Underlay) -> None:
    """Cases 1, 2 and 6: a `cross-subnet` pool in a four-host mesh on one L2 segment.

    a (.10) writes its subnet in its config as /25 (its interface says /24): b (.11) and d (.20) are
    inside, c (.200) outside. d (.20) writes no length: its interface holds 192.168.100.20/25 (with a link
    route for the other half, so the segment stays one), hence the same view. b writes no length and has a
    /24 interface: everybody is inside, nothing tunnelled. b and c announce the same /32: an ECMP route
    whose hop via c is tunnelled on a and d, and whose hop via b is not."""
    a = underlay.host("a", 10)
    b = underlay.host("b", 11)
    d = underlay.host("d", 20)
    c = underlay.host("c", 200)
    d.ip("addr", "del", f"{d.address}/24", "dev", "eth0")
    d.ip("addr", "add", f"{d.address}/25", "dev", "eth0")
    d.ip("route", "add", f"{UNDERLAY}.128/25", "dev", "eth0", "scope", "link")
    _tunl0(a, "10.20.0.1")
    _tunl0(d, "10.20.3.1")
    hosts = [a, b, c, d]
    for h in hosts:
        address = f"{a.address}/25" if h is a else None
        _config(h, "CrossSubnet" if h is d else "cross-subnet", address, bgp=_mesh(hosts))
        h.start_bgpd()
    for i, h in enumerate(hosts):
        h.add_block(f"10.20.{i}.0/26")
    b.add_workload_route("10.20.5.5/32")
    c.add_workload_route("10.20.5.5/32")

    ecmp_mixed = sorted(_plain(b.address) + _tunnel(c.address))
    _wait_forms(
        a,
        {
            "10.20.1.0/26": _plain(b.address),
            "10.20.2.0/26": _tunnel(c.address),
            "10.20.3.0/26": _plain(d.address),
            "10.20.5.5": ecmp_mixed,
        },
        "a: b and d plain, c via tunl0 onlink (configured /25), ECMP per next hop",
    )
    _wait_forms(
        d,
        {
            "10.20.0.0/26": _plain(a.address),
            "10.20.1.0/26": _plain(b.address),
            "10.20.2.0/26": _tunnel(c.address),
            "10.20.5.5": ecmp_mixed,
        },
        "d: subnet /25 from its interface: c via tunl0 onlink, the others plain",
    )
    _wait_forms(
        b,
        {
            "10.20.0.0/26": _plain(a.address),
            "10.20.2.0/26": _plain(c.address),
            "10.20.3.0/26": _plain(d.address),
        },
        "b: /24 interface, every next hop inside: nothing tunnelled",
    )
    # the multipath route (proto bird: the selector) as the kernel holds it: the tunnelled next hop is
    # onlink on tunl0, the other not
    (ecmp,) = [r for r in a.routes("proto", "bird") if r["dst"] == "10.20.5.5"]
    hops = {h["gateway"]: h for h in ecmp["nexthops"]}
    assert hops[c.address]["dev"] == "tunl0" and "onlink" in hops[c.address]["flags"], ecmp
    assert hops[b.address]["dev"] == "eth0" and "onlink" not in hops[b.address].get("flags", []), ecmp
    # bgpd's view agrees with the kernel's: installed, nothing waiting
    assert _waiting(a) == {} and _waiting(d) == {}
    shown = a.ctl("show", "routes", "10.20.2.0/26").stdout
    assert "installed via" in shown and "tunl0" in shown, shown

    # tunl0 down on a: the kernel flushes the tunnel-only route (it waits again) and keeps the ECMP route
    # with its tunl0 hop dead, b's hop alive; up: everything back as it was
    a.ip("link", "set", "tunl0", "down")
    wait_for(lambda: _waiting(a) == {"tunl0": 1}, CONVERGE, "c's block waiting for tunl0 on a")
    assert "10.20.2.0/26" not in _forms(a)
    (ecmp,) = [r for r in a.routes("proto", "bird") if r["dst"] == "10.20.5.5"]
    alive = [h["gateway"] for h in ecmp["nexthops"] if "dead" not in h.get("flags", [])]
    assert alive == [b.address], ecmp
    a.ip("link", "set", "tunl0", "up")
    _wait_forms(a, {"10.20.2.0/26": _tunnel(c.address), "10.20.5.5": ecmp_mixed}, "a's routes after tunl0 up")
    assert _waiting(a) == {}

    # where the subnet came from: d's interface (logged), a's config (no interface lookup)
    d_log = (d.workdir / "bgpd.log").read_text()
    (line,) = [ln for ln in d_log.splitlines() if "node subnet from interface" in ln]
    assert "192.168.100.0/25" in line and "eth0" in line, line
    checked = netns.ns_exec(d.ns, sys.executable, "-m", "bgpd", "check", "-c", str(d.workdir / "bgpd.yaml"))
    assert "subnet 192.168.100.0/25 from interface eth0" in checked.stdout, checked.stdout
    assert "node subnet from interface" not in (a.workdir / "bgpd.log").read_text()
    b_log = (b.workdir / "bgpd.log").read_text()
    assert any("node subnet from interface" in ln and "192.168.100.0/24" in ln for ln in b_log.splitlines())

    # the tunnel routes of a are its own copies of others' routes: announced to nobody
    advertised = {p["address"]: p["advertised"] for p in a.ctl_json("show", "peers")}
    assert set(advertised.values()) == {1}, advertised  # a's own block only


def test_tunl0_missing_down_up_and_mode_change_replaces_in_place(underlay: Underlay) -> None:
    """Cases 3 and 4: an `always` pool on a host without tunl0; then ipip mode changes on reload."""
    a = underlay.host("a", 10)
    b = underlay.host("b", 11)
    c = underlay.host("c", 12)
    hosts = [a, b, c]

    def configure_a(mode: str) -> None:
        _config(a, mode, bgp=_mesh(hosts), metrics={"listen": METRICS})

    configure_a("always")
    for h in (b, c):
        _config(h, "never", bgp=_mesh(hosts))
    for h in hosts:
        h.start_bgpd()
    b.add_block("10.20.1.0/26")
    c.add_block("10.20.2.0/26")
    b.add_workload_route("10.20.5.5/32")
    c.add_workload_route("10.20.5.5/32")
    prefixes = ("10.20.1.0/26", "10.20.2.0/26", "10.20.5.5")
    tunnelled = {
        "10.20.1.0/26": _tunnel(b.address),
        "10.20.2.0/26": _tunnel(c.address),
        "10.20.5.5": _tunnel(b.address, c.address),  # always: the inside next hops too, every ECMP hop
    }
    plain = {
        "10.20.1.0/26": _plain(b.address),
        "10.20.2.0/26": _plain(c.address),
        "10.20.5.5": _plain(b.address, c.address),
    }

    def all_waiting(why: str) -> None:
        """a's three routes are learned, not in the kernel, and shown waiting for tunl0 (polled as a whole:
        a link event being handled may pass through a moment of "write in flight")."""
        shown: list[str] = []

        def waiting_shown() -> bool:
            text = a.ctl("show", "kernel").stdout
            shown[:] = [text]
            lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  10.20.")}
            return (
                _waiting(a) == {"tunl0": 3}
                and _forms(a) == {}  # nothing installed with another device meanwhile
                and "waiting for device tunl0 (missing or down): 3 routes" in text
                and all(
                    "(waiting for device tunl0 (missing or down))" in lines.get(p, "")
                    for p in ("10.20.1.0/26", "10.20.2.0/26", "10.20.5.5/32")
                )
                and _metric(a, "bgpd_kernel_routes_waiting_device", device="tunl0") == 3
            )

        try:
            wait_for(waiting_shown, CONVERGE, f"a's three routes waiting for tunl0 ({why})")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{shown[0] if shown else ''}\nkernel: {_forms(a)}") from None

    # 3. no tunl0 at start: learned, not installed, waiting with the reason
    all_waiting("missing at start")
    assert {r["prefix"] for r in a.ctl_json("show", "routes")} == {
        "10.20.1.0/26",
        "10.20.2.0/26",
        "10.20.5.5/32",
    }
    # Felix creates tunl0 (down at first: still waiting), then brings it up: installed on the link event
    _tunl0(a, "10.20.0.1", up=False)
    all_waiting("created, still down")
    a.ip("link", "set", "tunl0", "up")
    _wait_forms(a, tunnelled, "a's routes via tunl0 onlink once tunl0 is up")
    assert _waiting(a) == {}
    assert _metric(a, "bgpd_kernel_routes_waiting_device", device="tunl0") in (None, 0.0)
    # down: the kernel flushes the routes through tunl0 without a word; bgpd notices, they wait again
    a.ip("link", "set", "tunl0", "down")
    all_waiting("tunl0 set down")
    a.ip("link", "set", "tunl0", "up")
    _wait_forms(a, tunnelled, "a's routes back via tunl0 after it came up again")

    # 4. mode changes on reload: each route rewritten in place (RTM_NEWROUTE replace), never deleted
    monitor = RouteMonitor(a)
    monitor.start()
    for mode, want in (("never", plain), ("always", tunnelled), ("never", plain)):
        configure_a(mode)
        result = a.ctl("reload")
        assert result.returncode == 0, result.stdout + result.stderr
        _wait_forms(a, want, f"a's routes in their {mode} form after reload")
    events = monitor.stop()
    deleted = [ln for ln in events if ln.startswith("Deleted") and "10.20." in ln]
    assert deleted == [], "\n".join(events)
    for prefix in prefixes:
        written = [ln for ln in events if ln.startswith(prefix + " ")]
        assert len(written) >= 3, (prefix, events)  # one replace per reload
    assert any(re.match(r"10\.20\.1\.0/26 via \S+ dev tunl0 .*onlink", ln) for ln in events), events
    # the peers' sessions were not reset by the reloads
    assert all(p["state"] == "up" for p in a.ctl_json("show", "peers"))


@pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 (Debian bird2) not installed")
def test_bird_peer_across_subnets_and_tunl0_routes_never_exported(underlay: Underlay) -> None:
    """Case 5: BIRD 2 as the peer host of a cross-subnet session. bgpd (h0, .10, configured /25) installs
    BIRD's (.200, outside) routes via tunl0 onlink; BIRD gets h0's workload routes, never a tunl0 route."""
    h0 = underlay.host("h0", 10)
    bird = underlay.host("bird", 200)
    _tunl0(h0, "10.20.0.1")
    _config(
        h0,
        "cross-subnet",
        f"{h0.address}/25",
        bgp={"hold_time": 9, "peers": [{"address": bird.address, "asn": ASN}]},
    )
    _, sock = start_bird_text(bird, bird_config(bird, [h0.address], ["10.20.7.0/26", "10.20.8.0/26"]))
    h0.start_bgpd()
    # a Felix-programmed tunnel route (proto 80, via tunl0 onlink) in the pool, outside h0's block: a
    # workload protocol, but through tunl0, so never exported; then the same kind of route via eth0 (exported)
    # and h0's own block and workload, all written after it
    h0.ip("route", "add", "10.20.77.0/26", "via", bird.address, "dev", "tunl0", "onlink", "proto", "80")
    h0.ip("route", "add", "10.20.78.0/26", "via", bird.address, "dev", "eth0", "proto", "80")
    h0.add_block("10.20.0.0/26")
    h0.add_workload_route("10.20.9.9/32")

    _wait_forms(
        h0,
        {"10.20.7.0/26": _tunnel(bird.address), "10.20.8.0/26": _tunnel(bird.address)},
        "BIRD's routes on h0 via tunl0 onlink (BIRD is outside h0's /25)",
    )

    def bird_has_ours() -> bool:
        got = bird.bird_routes()
        return all(got.get(p) == [h0.address] for p in ("10.20.0.0/26", "10.20.9.9", "10.20.78.0/26"))

    wait_for(bird_has_ours, CONVERGE, "h0's block, workload and eth0 route in BIRD's kernel table")
    shown = birdc(bird, sock, "show", "route", "protocol", "peer0")
    assert "10.20.9.9/32" in shown and "10.20.0.0/26" in shown and "10.20.78.0/26" in shown, shown
    # Felix's tunl0 route reached BIRD neither in its table nor in its kernel; written before the routes
    # BIRD has, it had every chance to be announced
    all_bird = birdc(bird, sock, "show", "route")
    assert "10.20.77.0" not in all_bird, all_bird
    assert "10.20.77.0/26" not in bird.bird_routes()
    # bgpd announced three prefixes: not the tunl0 route, nor its tunl0 copies of BIRD's own routes
    (peer,) = h0.ctl_json("show", "peers")
    assert peer["advertised"] == 3, peer
