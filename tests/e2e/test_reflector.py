"""bgpd as an RFC 4456 route reflector, and as a client of one: bgpd, BIRD 2 and GoBGP around it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from bgpd.lab.netns import CommandError, wait_for
from tests.e2e.conftest import ASN, GOBGPD, GoBGP, Host, Underlay, start_gobgpd
from tests.e2e.test_bird import BIRD, birdc, start_bird

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
CLUSTER = "1.0.0.1"


def _reflector(rr: Host, clients: list[Host], peers: list[Host] = ()) -> None:  # type: ignore[assignment]
    rr.write_config(
        bgp={"hold_time": 9, "peers": [{"address": p.address, "asn": ASN} for p in peers]},
        reflector={"cluster_id": CLUSTER, "clients": [c.address for c in clients]},
    )
    rr.start_bgpd()


def _client(host: Host, reflectors: list[Host]) -> None:
    host.write_config(bgp={"hold_time": 9, "peers": [{"address": r.address, "asn": ASN} for r in reflectors]})
    host.start_bgpd()


def _has(host: Host, prefix: str, via: str) -> bool:
    return host.bird_routes().get(prefix) == [via]


def _block(i: int) -> str:
    return f"10.20.{i + 1}.0/26"


def _each_has_the_others_blocks(hosts: list[Host]) -> bool:
    """Host i announces _block(i); every host must have every other's, via that host."""
    return all(
        _has(h, _block(j), o.address) for i, h in enumerate(hosts) for j, o in enumerate(hosts) if i != j
    )


def test_one_reflector_three_bgpd_hosts(underlay: Underlay) -> None:
    rr = underlay.host("rr", 2)
    hosts = [underlay.host(f"h{i}", 10 + i) for i in range(3)]
    _reflector(rr, hosts)
    for h in hosts:
        _client(h, [rr])
    for i, h in enumerate(hosts):
        h.add_block(_block(i))
    wait_for(lambda: _each_has_the_others_blocks(hosts), CONVERGE, "every host has every other host's block")
    # the reflector is not in the forwarding path: it installs nothing by default
    assert rr.bird_routes() == {}
    # withdrawal is reflected too
    hosts[0].ip("route", "del", "blackhole", "10.20.1.0/26")
    for h in hosts[1:]:
        wait_for(lambda h=h: "10.20.1.0/26" not in h.bird_routes(), CONVERGE, f"withdrawal on {h.name}")
    # a client's session going down withdraws its routes everywhere
    assert hosts[2].bgpd is not None
    hosts[2].bgpd.signal(signal.SIGKILL)
    wait_for(lambda: "10.20.3.0/26" not in hosts[1].bird_routes(), CONVERGE, "h2's routes gone from h1")
    assert _has(hosts[0], "10.20.2.0/26", hosts[1].address)


def test_two_reflectors_one_killed_loses_no_route(underlay: Underlay) -> None:
    rr1, rr2 = underlay.host("rr1", 2), underlay.host("rr2", 4)
    hosts = [underlay.host(f"h{i}", 10 + i) for i in range(3)]
    _reflector(rr1, hosts, [rr2])
    _reflector(rr2, hosts, [rr1])
    for h in hosts:
        _client(h, [rr1, rr2])
    for i, h in enumerate(hosts):
        h.add_block(_block(i))

    def complete() -> bool:
        return _each_has_the_others_blocks(hosts)

    wait_for(complete, CONVERGE, "every host has every other host's block")

    def both_reflectors_deliver() -> bool:
        for h in hosts:
            result = h.ctl("show", "routes", "--json")
            if result.returncode != 0:
                return False
            learned = [r for r in json.loads(result.stdout) if not r["local"]]
            if len(learned) != 2 or any(
                {p["from"] for p in r["paths"]} != {rr1.address, rr2.address} for r in learned
            ):
                return False
        return True

    wait_for(both_reflectors_deliver, CONVERGE, "every host has each route from both reflectors")
    assert rr1.bgpd is not None
    rr1.bgpd.signal(signal.SIGKILL)
    # sample while the hosts notice rr1 is gone (hold time 9 s, or the closed TCP session): never a loss
    losses: list[str] = []

    def rr1_sessions_gone() -> bool:
        if not complete():
            losses.append("a route disappeared")
        return _session_closed(hosts, rr1)

    wait_for(rr1_sessions_gone, CONVERGE, "hosts' sessions to rr1 closed", interval=0.05)
    assert not losses
    # new routes still flow through rr2
    hosts[0].add_block("10.20.9.0/26")
    wait_for(lambda: _has(hosts[1], "10.20.9.0/26", hosts[0].address), CONVERGE, "new block via rr2")


def _session_closed(hosts: list[Host], rr: Host) -> bool:
    for h in hosts:
        out = h.ip("-j", "neigh", check=False)  # cheap liveness poke; the real check is the TCP state below
        del out
        tcp = (
            __import__("subprocess")
            .run(
                ["ip", "netns", "exec", h.ns, "ss", "-Htn", "state", "established", f"dst {rr.address}"],
                capture_output=True,
                text=True,
                check=False,
            )
            .stdout
        )
        if tcp.strip():
            return False
    return True


@pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 (Debian bird2) not installed")
def test_bird_clients_around_a_bgpd_reflector(underlay: Underlay) -> None:
    rr = underlay.host("rr", 2)
    clients = [underlay.host(f"b{i}", 20 + i) for i in range(3)]
    _reflector(rr, clients)
    socks = {}
    for i, c in enumerate(clients):
        _, socks[c.name] = start_bird(c, [rr.address], [_block(i)])
    wait_for(
        lambda: _each_has_the_others_blocks(clients), CONVERGE, "BIRD clients accept the reflected routes"
    )
    # BIRD shows the RFC 4456 attributes bgpd added
    shown = birdc(clients[0], socks["b0"], "show", "route", "10.20.2.0/26", "all")
    assert f"BGP.originator_id: {clients[1].address}" in shown
    assert f"BGP.cluster_list: {CLUSTER}" in shown
    assert f"BGP.next_hop: {clients[1].address}" in shown


def _gobgp_announce(speaker: GoBGP, prefix: str) -> bool:
    """Add `prefix` (next hop: the speaker's address) to gobgpd's RIB; False while its API is not up yet."""
    try:
        speaker.cli("global", "rib", "-a", "ipv4", "add", prefix, "nexthop", speaker.host.address)
    except CommandError:
        return False
    return True


@pytest.mark.skipif(not Path(GOBGPD).exists(), reason="GoBGP (Debian gobgpd) not installed")
def test_gobgp_clients_around_a_bgpd_reflector(underlay: Underlay) -> None:
    rr = underlay.host("rr", 2)
    g1h, g2h, h0 = underlay.host("g1", 30), underlay.host("g2", 31), underlay.host("h0", 10)
    _reflector(rr, [g1h, g2h, h0])
    g1, g2 = start_gobgpd(g1h, [rr.address], 50051), start_gobgpd(g2h, [rr.address], 50052)
    _client(h0, [rr])
    h0.add_workload_route("10.20.9.9/32")
    kept, withdrawn = "10.20.50.0/24", "10.20.51.0/24"
    wait_for(lambda: _gobgp_announce(g1, kept), CONVERGE, "gobgpd's API on g1")
    assert _gobgp_announce(g1, withdrawn)
    # g1's routes reach g2 through the reflector, next hop kept, with the RFC 4456 attributes it adds
    # (GoBGP 3 opens its first connection 5-9 s after it starts; bgpd's reflector waits for its clients)
    wait_for(lambda: {kept, withdrawn} <= g2.rib().keys(), CONVERGE, "g1's routes on g2")
    reflected = {"next_hop": g1h.address, "originator_id": g1h.address, "cluster_list": [CLUSTER]}
    for prefix in (kept, withdrawn):
        assert g2.rib()[prefix] == {**reflected, "from": rr.address}
    # ... and the bgpd host's kernel
    wait_for(
        lambda: _has(h0, kept, g1h.address) and _has(h0, withdrawn, g1h.address),
        CONVERGE,
        "g1's routes on h0",
    )
    # the bgpd host's workload route reaches both GoBGP clients, next hop the host
    wait_for(lambda: all("10.20.9.9/32" in s.rib() for s in (g1, g2)), CONVERGE, "h0's route on g1 and g2")
    for speaker in (g1, g2):
        assert speaker.rib()["10.20.9.9/32"] == {
            "next_hop": h0.address,
            "originator_id": h0.address,
            "cluster_list": [CLUSTER],
            "from": rr.address,
        }
    # a withdrawal on g1 leaves g2 and the host; the other route stays
    g1.cli("global", "rib", "-a", "ipv4", "del", withdrawn)
    wait_for(lambda: withdrawn not in g2.rib(), CONVERGE, "the withdrawal on g2")
    wait_for(lambda: withdrawn not in h0.bird_routes(), CONVERGE, "the withdrawal on h0")
    assert kept in g2.rib() and _has(h0, kept, g1h.address)


@pytest.mark.skipif(not Path(BIRD).exists(), reason="BIRD 2 (Debian bird2) not installed")
def test_bgpd_clients_around_a_bird_reflector(underlay: Underlay) -> None:
    rr = underlay.host("rr", 2)
    hosts = [underlay.host(f"h{i}", 10 + i) for i in range(3)]
    conf = rr.workdir / "bird.conf"
    sessions = "\n".join(
        f"""protocol bgp c{i} {{
    local {rr.address} as {ASN}; neighbor {h.address} as {ASN}; direct; hold time 9;
    rr client; rr cluster id {CLUSTER};
    ipv4 {{ import all; export all; }};
}}"""
        for i, h in enumerate(hosts)
    )
    conf.write_text(f"router id {rr.address};\nprotocol device {{ }}\n{sessions}\n")
    rr.fabric.spawn(
        "bird-rr",
        rr.ns,
        [BIRD, "-f", "-c", str(conf), "-s", str(rr.workdir / "bird.ctl")],
        str(rr.workdir / "bird.log"),
    )
    for h in hosts:
        _client(h, [rr])
    for i, h in enumerate(hosts):
        h.add_block(_block(i))
    wait_for(lambda: _each_has_the_others_blocks(hosts), CONVERGE, "every host has every other host's block")


def test_adding_a_client_by_reload_keeps_the_other_sessions_up(underlay: Underlay) -> None:
    rr = underlay.host("rr", 2)
    h0, h1, h2 = (underlay.host(f"h{i}", 10 + i) for i in range(3))
    _reflector(rr, [h0, h1])
    for h in (h0, h1, h2):
        _client(h, [rr])
    h2.add_block("10.20.3.0/26")
    h0.add_block("10.20.1.0/26")
    wait_for(lambda: _has(h1, "10.20.1.0/26", h0.address), CONVERGE, "h0's block on h1")
    before = {p["address"]: p for p in rr.ctl_json("show", "peers")}
    rr.write_config(
        bgp={"hold_time": 9},
        reflector={"cluster_id": CLUSTER, "clients": [h0.address, h1.address, h2.address]},
    )
    reload = rr.ctl("reload")
    assert reload.returncode == 0 and "1 peers added" in reload.stdout, reload.stdout + reload.stderr
    wait_for(lambda: _has(h0, "10.20.3.0/26", h2.address), CONVERGE, "the new client's block on h0")
    wait_for(lambda: _has(h2, "10.20.1.0/26", h0.address), CONVERGE, "h0's block on the new client")
    after = {p["address"]: p for p in rr.ctl_json("show", "peers")}
    for old in (h0.address, h1.address):
        assert after[old]["flaps"] == 0 and after[old]["since"] == before[old]["since"]
