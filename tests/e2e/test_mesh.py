"""Three hosts in a node-to-node mesh, each running `bgpd run`: routes travel, ECMP, withdrawal, failure."""

from __future__ import annotations

import signal

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 30.0  # generous deadline; convergence is normally well under a second


def _start_mesh(underlay: Underlay, count: int = 3) -> list[Host]:
    hosts = [underlay.host(f"h{i}", 10 + i) for i in range(count)]
    nodes = underlay.mesh_nodes()
    for host in hosts:
        host.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": nodes}})
        host.start_bgpd()
    return hosts


def _has(host: Host, prefix: str, via: list[str]) -> bool:
    return host.bird_routes().get(prefix) == sorted(via)


def test_route_added_on_one_host_appears_on_the_others_and_goes_away(underlay: Underlay) -> None:
    h0, h1, h2 = _start_mesh(underlay)
    h0.add_block("10.20.1.0/26")
    h0.add_workload_route("10.20.1.2/32")  # inside h0's block: covered by it, not announced alone
    h0.add_workload_route("10.20.9.7/32")  # borrowed address: announced itself
    for other in (h1, h2):
        wait_for(lambda o=other: _has(o, "10.20.1.0/26", [h0.address]), CONVERGE, f"block on {other.name}")
        wait_for(lambda o=other: _has(o, "10.20.9.7", [h0.address]), CONVERGE, f"/32 on {other.name}")
        assert "10.20.1.2" not in other.bird_routes()
    # the announcing host never installs its own routes back
    assert h0.bird_routes() == {}
    h0.ip("route", "del", "10.20.9.7/32", "dev", "cali0")
    for other in (h1, h2):
        wait_for(lambda o=other: "10.20.9.7" not in o.bird_routes(), CONVERGE, f"withdrawal on {other.name}")
        assert _has(other, "10.20.1.0/26", [h0.address])


def test_same_prefix_from_two_hosts_is_one_ecmp_route(underlay: Underlay) -> None:
    h0, h1, h2 = _start_mesh(underlay)
    h0.add_workload_route("10.20.5.5/32")
    h1.add_workload_route("10.20.5.5/32")
    wait_for(lambda: _has(h2, "10.20.5.5", [h0.address, h1.address]), CONVERGE, "ECMP route on h2")
    h1.ip("route", "del", "10.20.5.5/32", "dev", "cali0")
    wait_for(lambda: _has(h2, "10.20.5.5", [h0.address]), CONVERGE, "single path after withdrawal")


def test_killed_host_routes_are_removed_from_the_others(underlay: Underlay) -> None:
    h0, h1, h2 = _start_mesh(underlay)
    h0.add_block("10.20.1.0/26")
    for other in (h1, h2):
        wait_for(lambda o=other: _has(o, "10.20.1.0/26", [h0.address]), CONVERGE, f"block on {other.name}")
    assert h0.bgpd is not None
    h0.bgpd.signal(signal.SIGKILL)  # no goodbye: peers learn from the closed session or the hold timer
    for other in (h1, h2):
        wait_for(lambda o=other: "10.20.1.0/26" not in o.bird_routes(), CONVERGE, f"removal on {other.name}")
        # h0 advertised graceful restart (3 s here): its routes were kept until its restart time passed
        log = (other.workdir / "bgpd.log").read_text()
        assert "graceful restart: keeping the peer's routes" in log and "restart time passed" in log


def test_sigterm_stops_cleanly_and_keeps_installed_routes(underlay: Underlay) -> None:
    h0, h1, _ = _start_mesh(underlay)
    h0.add_block("10.20.1.0/26")
    wait_for(lambda: _has(h1, "10.20.1.0/26", [h0.address]), CONVERGE, "block on h1")
    assert h1.bgpd is not None
    assert h1.bgpd.stop() == 0
    # persist (as BIRD in Calico): the daemon's routes stay in the kernel while it is down
    assert _has(h1, "10.20.1.0/26", [h0.address])
