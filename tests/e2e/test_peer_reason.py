"""Why a session cannot be established, with real sessions (issue 14): one peer that never answers (no host
at its address) and one BIRD 2 that refuses bgpd's AS. Past the deadline (here 10 s: hold time 3 s, twice
ExaBGP's 5 s connect retry) `bgpctl show peers --json` gives each a `reason` saying it cannot be
established, with no TCP connection for the first and the peer's NOTIFICATION for the second; each is
logged once, and `bgp_peer_cannot_establish` is 1 for both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bgpd.engine.establish import CANNOT, NO_TCP_CAUSE
from bgpd.lab.netns import wait_for
from tests.e2e.conftest import Host, Underlay
from tests.e2e.test_bird import BIRD, start_bird_text

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 (Debian bird2) not installed"),
]

TOR_AS = 65001
SILENT = "192.168.100.99"  # nothing answers there
METRICS_PORT = 9179


def reasons(host: Host) -> dict[str, Any]:
    """Peer address -> its `reason` ({} while bgpd is not answering yet)."""
    result = host.ctl("show", "peers", "--json")
    if result.returncode != 0:
        return {}
    return {p["address"]: p["reason"] for p in json.loads(result.stdout)}


def test_reason_of_a_silent_peer_and_of_a_refusing_one(underlay: Underlay) -> None:
    host = underlay.host("h0", 10)
    tor = underlay.host("tor", 20)
    start_bird_text(
        tor,
        f"""router id {tor.address};
protocol device {{ }}
protocol bgp host {{
    local {tor.address} as {TOR_AS};
    neighbor {host.address} as 64999;
    direct;
    hold time 9;
    connect retry time 1;
    error wait time 1, 2;
    ipv4 {{ import all; export none; }};
}}
""",
    )
    host.write_config(
        bgp={
            "hold_time": 3,
            "peers": [{"address": SILENT, "asn": TOR_AS}, {"address": tor.address, "asn": TOR_AS}],
        },
        metrics={"listen": f"{host.address}:{METRICS_PORT}"},
    )
    host.start_bgpd()

    def both_explained() -> bool:
        got = reasons(host)
        return got.get(SILENT) is not None and got.get(tor.address) is not None

    wait_for(both_explained, 30.0, "a reason for both sessions")
    got = reasons(host)
    assert got[SILENT] == f"{CANNOT}: {NO_TCP_CAUSE}"
    assert got[tor.address] == f"{CANNOT}: NOTIFICATION received: OPEN Message Error / Bad Peer AS (2/2)"
    log = (host.workdir / "bgpd.log").read_text()
    lines = [line for line in log.splitlines() if 'msg="session cannot be established"' in line]
    assert sorted(line.split(" peer=")[1].split(" ")[0] for line in lines) == sorted([SILENT, tor.address])
    status, body = host.http_get(f"http://{host.address}:{METRICS_PORT}/metrics")
    assert status == 200
    for peer in (SILENT, tor.address):
        assert f'bgp_peer_cannot_establish{{afi="ipv4",asn="{TOR_AS}",peer="{peer}",type="peer"}} 1.0' in body
