"""bgpd and BIRD 2 (Debian `bird2`) as independent iBGP peers, routes flowing in both directions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bgpd.lab.netns import Process, wait_for
from tests.e2e.conftest import ASN, Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRDC = shutil.which("birdc") or "/usr/sbin/birdc"


def bird_config(
    host: Host, peers: list[str], static: list[str], family: int = 4, reflector: bool = False
) -> str:
    """BIRD 2 peering with `peers` over `family` (4: from host.address, 6: from host.address6), exporting
    `static` as blackholes (next hop self), or reflecting between them (`reflector`, next hops kept)."""
    channel = f"ipv{family}"
    local = host.address if family == 4 else host.address6
    statics = "\n".join(f"    route {p} blackhole;" for p in static)
    rr = "    rr client;\n    rr cluster id 1.1.1.1;\n" if reflector else ""
    options = "import all; export all;" + ("" if reflector else " gateway direct; next hop self;")
    sessions = "\n".join(
        f"""protocol bgp peer{i} {{
    local {local} as {ASN};
    neighbor {peer} as {ASN};
    direct;
    hold time 9;
{rr}    {channel} {{ {options} }};
}}"""
        for i, peer in enumerate(peers)
    )
    return f"""router id {host.address};
protocol device {{ }}
protocol kernel {{ {channel} {{ import none; export where source = RTS_BGP; }}; merge paths on; }}
protocol static {{
    {channel};
{statics}
}}
{sessions}
"""


def start_bird(host: Host, peers: list[str], static: list[str]) -> tuple[Process, Path]:
    return start_bird_text(host, bird_config(host, peers, static))


def start_bird_text(host: Host, config: str) -> tuple[Process, Path]:
    """BIRD 2 in `host`'s namespace with this configuration: (its process, its control socket)."""
    conf = host.workdir / "bird.conf"
    conf.write_text(config)
    sock = host.workdir / "bird.ctl"
    proc = host.fabric.spawn(
        f"bird-{host.name}",
        host.ns,
        [BIRD, "-f", "-c", str(conf), "-s", str(sock), "-P", str(host.workdir / "bird.pid")],
        str(host.workdir / "bird.log"),
    )
    return proc, sock


def birdc(host: Host, sock: Path, *command: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", host.ns, BIRDC, "-s", str(sock), *command],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


@pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 (Debian bird2) not installed")
def test_bgpd_and_bird_exchange_routes_both_ways(underlay: Underlay) -> None:
    h0 = underlay.host("h0", 10)
    bird = underlay.host("bird", 20)
    h0.write_config(bgp={"hold_time": 9, "peers": [{"address": bird.address, "asn": ASN}]})
    _, sock = start_bird(bird, [h0.address], ["10.20.7.0/26"])
    h0.start_bgpd()
    h0.add_block("10.20.1.0/26")
    h0.add_workload_route("10.20.9.9/32")
    h0.add_workload_route("172.16.0.1/32")  # outside every pool: never announced

    # BIRD -> bgpd: BIRD's static route is installed by bgpd, next hop BIRD's address
    wait_for(lambda: h0.bird_routes().get("10.20.7.0/26") == [bird.address], CONVERGE, "BIRD route in h0")

    # bgpd -> BIRD: BIRD accepted both of bgpd's routes and put them in its own kernel
    def bird_has_ours() -> bool:
        got = {r["dst"]: r.get("gateway") for r in bird.routes("proto", "bird")}
        return got.get("10.20.1.0/26") == h0.address and got.get("10.20.9.9") == h0.address

    wait_for(bird_has_ours, CONVERGE, "bgpd routes in BIRD's kernel table")
    shown = birdc(bird, sock, "show", "route", "protocol", "peer0")
    assert "10.20.1.0/26" in shown and "10.20.9.9/32" in shown
    assert "172.16.0.1" not in shown

    # withdrawal travels too
    h0.ip("route", "del", "10.20.9.9/32", "dev", "cali0")
    wait_for(
        lambda: all(r["dst"] != "10.20.9.9" for r in bird.routes("proto", "bird")),
        CONVERGE,
        "withdrawal in BIRD",
    )
