"""eBGP to a top-of-rack router (issue 13) end to end: bgpd (AS 64512) and BIRD 2 in other ASes, each in its
own namespace on one underlay bridge.

bgpd's own routes leave without an AS_PATH and ExaBGP prepends the session's local AS (`local_asn`, else
node.asn), with bgpd's address as next hop and the communities of `bgp.prefix_advertisements`; routes from
BIRD are installed with their AS path and communities as received, LOCAL_PREF from eBGP ignored. A peer's
BGPFilters decide import (rejections counted `filter`) and export; a received path holding 64512 more often
than `allow_local_as` is rejected (`as_loop`). A reload that changes filters or allow_local_as resets no
session: export is re-evaluated at once, import by ROUTE-REFRESH.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import ASN, Host, Underlay
from tests.e2e.test_bird import BIRD, birdc, start_bird_text

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 (Debian bird2) not installed"),
]

CONVERGE = 30.0  # generous deadline; convergence is normally well under a second
METRICS = "127.0.0.1:9479"  # inside h0's namespace
TOR_AS = 65001
BLOCK = "10.20.1.0/26"  # h0's block
BORROWED = "10.20.99.9/32"  # a workload address outside h0's block (and outside the advertised /24)


# ---------------------------------------------------------------------------------------------- helpers


def _bird_conf(
    bird: Host, asn: int, neighbor: str, neighbor_as: int, static: list[str], export: str = ""
) -> str:
    """BIRD 2 in AS `asn`, one eBGP session to `neighbor` (which BIRD expects in `neighbor_as`), exporting
    `static` (blackholes) through a filter whose body starts with `export` and accepts; bgpd's routes go to
    BIRD's kernel table. LOCAL_PREF may cross the session (`allow bgp_local_pref`), so that bgpd is the one
    that ignores it. Packets are traced in its log (ROUTE-REFRESH)."""
    statics = "\n".join(f"    route {p} blackhole;" for p in static)
    return f"""router id {bird.address};
log stderr all;
protocol device {{ }}
protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}
protocol static {{
    ipv4;
{statics}
}}
filter to_bgpd {{
{export}
    accept;
}}
protocol bgp peer0 {{
    local {bird.address} as {asn};
    neighbor {neighbor} as {neighbor_as};
    hold time 9;
    allow bgp_local_pref on;
    debug {{ states, packets }};
    ipv4 {{ import all; export filter to_bgpd; }};
}}
"""


def _bird_route(bird: Host, sock: Path, prefix: str) -> dict[str, str]:
    """`birdc show route PREFIX all` as {"via": gateway, "BGP.as_path": ..., ...} ({} if BIRD has no route);
    large communities written without spaces, "(64512,1,2)" as the standard ones."""
    out: dict[str, str] = {}
    for line in birdc(bird, sock, "show", "route", prefix, "all").splitlines():
        line = line.strip()
        if m := re.match(r"via (\S+)", line):
            out["via"] = m.group(1)
        elif m := re.match(r"(BGP\.\w+): (.*)", line):
            value = m.group(2).strip()
            out[m.group(1)] = value.replace(", ", ",") if m.group(1) == "BGP.large_community" else value
    return out


def _wait_bird_route(bird: Host, sock: Path, prefix: str) -> dict[str, str]:
    got: dict[str, str] = {}

    def present() -> bool:
        got.clear()
        got.update(_bird_route(bird, sock, prefix))
        return "BGP.as_path" in got

    wait_for(present, CONVERGE, f"{prefix} in BIRD {bird.name}'s table")
    return got


def _bird_session(bird: Host, sock: Path) -> tuple[str, str]:
    """(state, since) of BIRD's `peer0` as `show protocols` prints them."""
    for line in birdc(bird, sock, "show", "protocols").splitlines():
        fields = line.split()
        if fields and fields[0] == "peer0":
            return fields[3], fields[4]
    return "", ""


def _states(host: Host) -> dict[str, str]:
    """peer address -> session state in `bgpctl show peers` ({} while bgpd does not answer yet)."""
    result = host.ctl("show", "peers", "--json")
    return {p["address"]: p["state"] for p in json.loads(result.stdout)} if result.returncode == 0 else {}


def _peer(host: Host, address: str) -> dict[str, Any]:
    return next(p for p in host.ctl_json("show", "peers") if p["address"] == address)


def _path(host: Host, prefix: str) -> dict[str, Any] | None:
    """The one path bgpd holds for `prefix` in `bgpctl show routes PREFIX --json`, None if none."""
    result = host.ctl("show", "routes", prefix, "--json")
    if result.returncode != 0:
        return None
    (route,) = json.loads(result.stdout)
    paths = route["paths"]
    return paths[0] if len(paths) == 1 else None


def _rejected_metric(host: Host, reason: str) -> float | None:
    status, body = host.http_get(f"http://{METRICS}/metrics")
    assert status == 200, body
    for line in body.splitlines():
        if line.startswith("bgp_routes_rejected_total{") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


# ------------------------------------------------------------------------------------------------ tests


def test_ebgp_both_ways_as_path_next_hop_communities_local_asn(underlay: Underlay) -> None:
    """Cases 1, 2 and 5. h0 (AS 64512) peers with tor1 (AS 65001, as node.asn) and tor2 (AS 65002, with
    `local_asn: 64600`). Both routers get h0's block with the AS path of their session, next hop h0, and
    the communities of the prefix advertisement covering it (standard and large); the borrowed /32 outside
    that cidr carries none. tor1's route is installed via tor1 and shown with as-path 65001 and tor1's
    communities; the LOCAL_PREF 300 tor1 sends over eBGP is ignored (lp 100)."""
    h0 = underlay.host("h0", 10)
    tor1 = underlay.host("tor1", 21)
    tor2 = underlay.host("tor2", 22)
    h0.write_config(
        bgp={
            "communities": [{"name": "rack-a", "value": "64512:100"}, {"name": "big", "value": "64512:1:2"}],
            "prefix_advertisements": [
                {"cidr": "10.20.1.0/24", "communities": ["rack-a", "big", "64512:300"]}
            ],
            "peers": [
                {"address": tor1.address, "asn": TOR_AS},
                {"address": tor2.address, "asn": 65002, "local_asn": 64600},
            ],
        }
    )
    export = (
        "    if net = 10.20.7.0/26 then {\n"
        "        bgp_community.add((65001,7));\n"
        "        bgp_large_community.add((65001,1,2));\n"
        "        bgp_local_pref = 300;\n"
        "    }"
    )
    _, sock1 = start_bird_text(tor1, _bird_conf(tor1, TOR_AS, h0.address, ASN, ["10.20.7.0/26"], export))
    _, sock2 = start_bird_text(tor2, _bird_conf(tor2, 65002, h0.address, 64600, []))
    # the block is in the kernel when bgpd starts (the table ExaBGP gets when it attaches); the borrowed
    # /32 comes once the sessions are up (an export change)
    h0.add_block(BLOCK)
    h0.start_bgpd()
    wait_for(lambda: _states(h0) == {tor1.address: "up", tor2.address: "up"}, CONVERGE, "both sessions up")
    h0.add_workload_route(BORROWED)

    # bgpd -> BIRD: AS path of the session's local AS, next hop h0, the prefix advertisement's communities
    for tor, sock, as_path in ((tor1, sock1, str(ASN)), (tor2, sock2, "64600")):
        got = _wait_bird_route(tor, sock, BLOCK)
        assert got["BGP.as_path"] == as_path, (tor.name, got)
        assert got["BGP.next_hop"] == h0.address and got["via"] == h0.address, (tor.name, got)
        assert got.get("BGP.community") == "(64512,100) (64512,300)", (tor.name, got)
        assert got.get("BGP.large_community") == "(64512,1,2)", (tor.name, got)
        borrowed = _wait_bird_route(tor, sock, BORROWED)
        assert borrowed["BGP.as_path"] == as_path and borrowed["BGP.next_hop"] == h0.address, borrowed
        assert "BGP.community" not in borrowed and "BGP.large_community" not in borrowed, borrowed
    wait_for(
        lambda: tor1.bird_routes().get("10.20.1.0/26") == [h0.address],
        CONVERGE,
        "h0's block in tor1's kernel table via h0",
    )

    # BIRD -> bgpd: installed via tor1, shown with its AS path and communities, its LOCAL_PREF ignored
    wait_for(lambda: h0.bird_routes().get("10.20.7.0/26") == [tor1.address], CONVERGE, "tor1's route on h0")
    path = _path(h0, "10.20.7.0/26")
    assert path is not None, h0.ctl("show", "routes").stdout
    assert path["as_path"] == [TOR_AS] and path["next_hop"] == tor1.address, path
    assert path["local_pref"] == 100, path  # tor1 sent 300 (RFC 4271 §5.1.5: ignored from eBGP)
    shown = h0.ctl("show", "routes", "10.20.7.0/26").stdout
    assert "as-path 65001" in shown and "65001:7" in shown, shown
    assert "65001:1:2" in shown, f"tor1's large community is not shown:\n{shown}"
    assert _states(h0) == {tor1.address: "up", tor2.address: "up"}


def test_filters_and_as_loop_change_by_reload_without_a_session_reset(underlay: Underlay) -> None:
    """Cases 3 and 4. tor (AS 65001) sends 10.20.7.0/26, 10.20.8.0/26 and 10.20.9.0/26, the last with
    64512 in its AS path. h0's filter rejects 10.20.8.0/26 on import (`filter`) and its own block on export;
    10.20.9.0/26 is an AS loop (`as_loop`). A reload turns the filter around (import rejects 10.20.7.0/26,
    export rejects the borrowed /32) and sets `allow_local_as: 1`: with no session reset on either side,
    tor gets the block and loses the /32, and h0, by route refresh, installs 10.20.8.0/26 and 10.20.9.0/26
    and removes 10.20.7.0/26."""
    h0 = underlay.host("h0", 10)
    tor = underlay.host("tor", 20)

    def configure(import_reject: str, export_reject: str, allow_local_as: int) -> None:
        h0.write_config(
            bgp={
                "peers": [
                    {
                        "address": tor.address,
                        "asn": TOR_AS,
                        "allow_local_as": allow_local_as,
                        "filters": ["tor"],
                    }
                ]
            },
            filters=[
                {
                    "name": "tor",
                    "import_v4": [{"action": "Reject", "match_operator": "In", "cidr": import_reject}],
                    "export_v4": [{"action": "Reject", "match_operator": "Equal", "cidr": export_reject}],
                }
            ],
            metrics={"listen": METRICS},
        )

    configure("10.20.8.0/26", BLOCK, 0)
    statics = ["10.20.7.0/26", "10.20.8.0/26", "10.20.9.0/26"]
    export = f"    if net = 10.20.9.0/26 then bgp_path.prepend({ASN});"
    _, sock = start_bird_text(tor, _bird_conf(tor, TOR_AS, h0.address, ASN, statics, export))
    # the block is in the kernel when bgpd starts, the borrowed /32 comes once the session is up
    h0.add_block(BLOCK)
    h0.start_bgpd()
    wait_for(lambda: _states(h0) == {tor.address: "up"}, CONVERGE, "session up")
    h0.add_workload_route(BORROWED)

    # before: only 10.20.7.0/26 installed; the others rejected, each for its reason
    def rejections() -> dict[str, int]:
        return dict(_peer(h0, tor.address)["rejected"])

    wait_for(
        lambda: h0.bird_routes().get("10.20.7.0/26") == [tor.address], CONVERGE, "tor's 10.20.7.0/26 on h0"
    )
    wait_for(
        lambda: rejections().get("filter", 0) >= 1 and rejections().get("as_loop", 0) >= 1,
        CONVERGE,
        "10.20.8.0/26 rejected by the filter and 10.20.9.0/26 as a loop",
    )
    installed = h0.bird_routes()
    assert "10.20.8.0/26" not in installed and "10.20.9.0/26" not in installed, installed
    assert (_rejected_metric(h0, "filter") or 0) >= 1 and (_rejected_metric(h0, "as_loop") or 0) >= 1
    # export: tor gets the borrowed /32 (written after the block: the block had every chance), never the block
    # (the filter holds for the table sent when ExaBGP attaches, not only for later changes)
    _wait_bird_route(tor, sock, BORROWED)
    assert _bird_route(tor, sock, BLOCK) == {}, birdc(tor, sock, "show", "route", "all")
    assert "10.20.1.0" not in birdc(tor, sock, "show", "route")

    before = _peer(h0, tor.address)
    bird_before = _bird_session(tor, sock)
    assert before["state"] == "up" and bird_before[0] == "up", (before, bird_before)
    refreshes = (tor.workdir / "bird.log").read_text().count("Got ROUTE-REFRESH")

    # reload: the filter turned around, one local AS allowed in received paths
    configure("10.20.7.0/26", BORROWED, 1)
    result = h0.ctl("reload")
    assert result.returncode == 0, result.stdout + result.stderr

    wait_for(
        lambda: h0.bird_routes() == {"10.20.8.0/26": [tor.address], "10.20.9.0/26": [tor.address]},
        CONVERGE,
        "h0: 10.20.8.0/26 and 10.20.9.0/26 installed (route refresh), 10.20.7.0/26 removed",
    )
    _wait_bird_route(tor, sock, BLOCK)
    wait_for(lambda: _bird_route(tor, sock, BORROWED) == {}, CONVERGE, "the borrowed /32 withdrawn at tor")
    looped = _path(h0, "10.20.9.0/26")
    assert looped is not None and looped["as_path"] == [TOR_AS, ASN], looped
    log = (tor.workdir / "bird.log").read_text()
    assert log.count("Got ROUTE-REFRESH") > refreshes, log[-3000:]

    # no session was reset: neither bgpd's view nor BIRD's
    after = _peer(h0, tor.address)
    assert (after["state"], after["since"], after["flaps"]) == ("up", before["since"], 0), (before, after)
    assert _bird_session(tor, sock) == bird_before
