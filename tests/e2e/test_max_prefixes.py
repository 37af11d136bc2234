"""Maximum prefixes per peer with real sessions (issue 14): BIRD 2 as an eBGP peer announcing more prefixes
than bgpd's `max_prefixes`. With `restart`, the session closes, bgpd's kernel holds none of BIRD's routes,
`bgpctl show peers` shows the session held down, and after `restart_after` the session is Established
again (BIRD now sending no more than the limit). BIRD receives NOTIFICATION Cease / Maximum number of
prefixes reached, although the session negotiated graceful restart (launch change 12). With `warn`, the
session stays up, every route is installed, the warning
is logged once and counted, in `bgpctl` and in the metrics."""

from __future__ import annotations

import json
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

TOR_AS = 65001
CONVERGE = 30.0
MAXIMUM = 3
RESTART_AFTER = 3
METRICS_PORT = 9179
OURS = "10.20.1.0/26"  # bgpd's own block, announced to the ToR


def tor_config(tor: Host, host: Host, count: int) -> str:
    """BIRD as a ToR (AS 65001) announcing `count` /26 blocks of the pool to `host`. Short error waits: after
    bgpd's NOTIFICATION BIRD would otherwise wait 60 s before it connects or accepts a connection again."""
    statics = "\n".join(f"    route 10.20.{100 + i}.0/26 blackhole;" for i in range(count))
    return f"""router id {tor.address};
protocol device {{ }}
protocol static {{
    ipv4;
{statics}
}}
protocol bgp host {{
    local {tor.address} as {TOR_AS};
    neighbor {host.address} as {ASN};
    direct;
    hold time 9;
    connect retry time 1;
    error wait time 1, 2;
    ipv4 {{ import all; export all; next hop self; }};
}}
"""


def tor_routes(host: Host) -> set[str]:
    return {p for p in host.bird_routes() if p.startswith("10.20.1")}


def peer(host: Host, address: str) -> dict[str, Any]:
    """The session's `bgpctl show peers --json` entry ({} while bgpd is not answering yet)."""
    result = host.ctl("show", "peers", "--json")
    if result.returncode != 0:
        return {}
    return next(p for p in json.loads(result.stdout) if p["address"] == address)


def setup(underlay: Underlay, action: str, count: int) -> tuple[Host, Host, Path]:
    host = underlay.host("h0", 10)
    tor = underlay.host("tor", 20)
    limit: dict[str, Any] = {"max_prefixes": MAXIMUM, "max_prefixes_action": action}
    if action == "restart":
        limit["restart_after"] = RESTART_AFTER
    host.write_config(
        bgp={"peers": [{"address": tor.address, "asn": TOR_AS, **limit}]},
        metrics={"listen": f"{host.address}:{METRICS_PORT}"},
    )
    _, sock = start_bird_text(tor, tor_config(tor, host, count))
    host.add_block(OURS)
    host.start_bgpd()
    return host, tor, sock


def held(host: Host, tor: Host) -> bool:
    return peer(host, tor.address).get("state") == "held-down"


def test_restart_holds_down_and_comes_back(underlay: Underlay) -> None:
    host, tor, sock = setup(underlay, "restart", MAXIMUM + 1)
    wait_for(lambda: held(host, tor), CONVERGE, "the ToR session held down after one prefix too many")
    shown = peer(host, tor.address)
    assert shown["max_prefixes"] == MAXIMUM and shown["max_prefixes_action"] == "restart"
    assert shown["restart_after"] == RESTART_AFTER and shown["max_prefixes_hits"] >= 1
    assert shown["held_until"] == pytest.approx(shown["since"] + RESTART_AFTER) and shown["prefixes"] == 0
    assert f"more than {MAXIMUM} prefixes" in shown["reason"]
    assert shown["last_error"] == "NOTIFICATION sent: Cease / Maximum Number of Prefixes Reached (6/1)"
    assert tor_routes(host) == set()  # none of its routes in the kernel
    # BIRD saw the session end
    wait_for(lambda: "Last error:" in birdc(tor, sock, "show", "protocols", "all", "host"), CONVERGE, "BIRD")
    # BIRD drops to the limit; once the hold-down is over the session is Established again, and stays
    (tor.workdir / "bird.conf").write_text(tor_config(tor, host, MAXIMUM))
    assert "Reconfigured" in birdc(tor, sock, "configure")
    wait_for(lambda: len(tor_routes(host)) == MAXIMUM, CONVERGE, "the ToR's routes installed again")
    shown = peer(host, tor.address)
    assert shown["state"] == "up" and shown["reason"] is None and shown["held_until"] is None
    assert shown["prefixes"] == MAXIMUM
    # ExaBGP took the neighbor back with an empty Adj-RIB-Out: bgpd sent it its table again
    wait_for(lambda: OURS in birdc(tor, sock, "show", "route", "protocol", "host"), CONVERGE, "ours at BIRD")


def test_restart_sends_cease_maximum_number_of_prefixes(underlay: Underlay) -> None:
    host, tor, sock = setup(underlay, "restart", MAXIMUM + 1)
    wait_for(lambda: held(host, tor), CONVERGE, "the ToR session held down")

    def bird_got_cease() -> bool:
        shown = birdc(tor, sock, "show", "protocols", "all", "host")
        return "Received: Maximum number of prefixes reached" in shown

    wait_for(bird_got_cease, 5.0, "BIRD's last error: the NOTIFICATION Cease / 1 (RFC 4486)")


def test_warn_keeps_the_session_logs_once_and_counts(underlay: Underlay) -> None:
    host, tor, _ = setup(underlay, "warn", MAXIMUM + 2)
    wait_for(lambda: len(tor_routes(host)) == MAXIMUM + 2, CONVERGE, "every ToR route installed")
    shown = peer(host, tor.address)
    assert shown["state"] == "up" and shown["prefixes"] == MAXIMUM + 2
    assert shown["max_prefixes_hits"] == 1 and shown["held_until"] is None
    log = (host.workdir / "bgpd.log").read_text()
    assert log.count('msg="maximum prefixes exceeded"') == 1
    status, body = host.http_get(f"http://{host.address}:{METRICS_PORT}/metrics")
    assert status == 200
    labels = f'afi="ipv4",asn="{TOR_AS}",peer="{tor.address}",type="peer"'
    assert f"bgp_peer_max_prefixes{{{labels}}} {float(MAXIMUM)}" in body
    assert f"bgp_peer_prefixes_received{{{labels}}} {float(MAXIMUM + 2)}" in body
    assert f'bgp_peer_max_prefixes_exceeded_total{{action="warn",{labels}}} 1.0' in body
    assert f"bgp_peer_held_down{{{labels}}} 0.0" in body
    # a reload that changes only the limit: no session reset, the new limit counted against at once
    tor_peer = {**host.config["bgp"]["peers"][0], "max_prefixes": MAXIMUM + 10}
    host.write_config(bgp={"peers": [tor_peer]}, metrics=host.config["metrics"])
    reload = host.ctl("reload")
    assert reload.returncode == 0 and "0 changed" in reload.stdout, reload.stdout + reload.stderr
    shown = peer(host, tor.address)
    assert shown["state"] == "up" and shown["flaps"] == 0 and shown["max_prefixes"] == MAXIMUM + 10
