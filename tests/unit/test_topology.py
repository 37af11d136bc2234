"""The lab's topology file: shipped examples load, the dual-stack addressing derived from them, what each
host announces, the bgpd configs the lab writes (valid for `bgpd check`), errors name file and line."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bgpd import config
from bgpd.lab import tor
from bgpd.lab.lab import Lab, bgpd_config, config_text, exported_prefix, veth_name
from bgpd.lab.topology import (
    TopologyError,
    block6_of,
    load,
    node_address6,
    parse,
    pool6_of,
    twin6,
    underlay6_of,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = "name: t\npools: [10.20.0.0/16]\nhosts:\n"
H0 = "  - {name: a, address: 192.168.100.10, blocks: [10.20.1.0/24], workloads: [10.20.1.2]}\n"
H1 = "  - {name: b, address: 192.168.100.3, blocks: [10.20.2.0/24], workloads: [10.20.2.2, 10.20.1.3]}\n"


SHIPPED = ["lab.yaml", "lab4.yaml", "lab-rr.yaml"]


def nets(*texts: str) -> set[IPv4Network | IPv6Network]:
    return {ip_network(t) for t in texts}


def test_default_lab_is_the_original_simulation_in_dual_stack() -> None:
    topo = load(ROOT / "configs" / "lab.yaml")
    host0, host1 = topo.hosts
    assert (host0.name, str(host0.address), str(host0.address6)) == (
        "host0",
        "192.168.100.10",
        "fd00:100::10",
    )
    assert (host1.name, str(host1.address), str(host1.address6)) == ("host1", "192.168.100.3", "fd00:100::3")
    assert topo.families == (4, 6)
    assert str(topo.underlay6) == "fd00:100::/64"
    assert [str(p) for p in topo.pools6] == ["fd00:10:20::/48"]
    assert [str(w) for w in host1.workloads] == ["10.20.2.2", "10.20.1.3"]
    assert [str(w) for w in host0.workloads6] == ["fd00:10:20:1::2"]
    assert [str(w) for w in host1.workloads6] == ["fd00:10:20:2::2", "fd00:10:20:1::3"]
    assert [str(b) for b in host0.blocks6] == ["fd00:10:20:1::/122"]
    assert [str(b) for b in host1.blocks6] == ["fd00:10:20:2::/122"]
    # host1 announces its blocks and the address borrowed from host0's blocks (/32 and /128), not its own
    # workloads inside its own blocks
    assert host1.exported() == nets(
        "10.20.2.0/24", "10.20.1.3/32", "fd00:10:20:2::/122", "fd00:10:20:1::3/128"
    )
    assert host0.exported() == nets("10.20.1.0/24", "fd00:10:20:1::/122")


def test_four_host_lab_has_three_workloads_each_and_one_122_per_26() -> None:
    topo = load(ROOT / "configs" / "lab4.yaml")
    assert len(topo.hosts) == 4
    assert all(len(h.workloads) == len(h.workloads6) == 3 for h in topo.hosts)
    assert [str(h.address6) for h in topo.hosts] == [
        "fd00:100::10",
        "fd00:100::11",
        "fd00:100::12",
        "fd00:100::13",
    ]
    # a /26 is 64 addresses, a /122 too: each IPv4 block has exactly one IPv6 twin
    assert [[str(b) for b in h.blocks6] for h in topo.hosts] == [
        ["fd00:10:20:1::/122"],
        ["fd00:10:20:1::40/122"],
        ["fd00:10:20:1::80/122"],
        ["fd00:10:20:1::c0/122"],
    ]
    host1, host3 = topo.hosts[1], topo.hosts[3]
    assert [str(w) for w in host1.workloads6] == ["fd00:10:20:1::42", "fd00:10:20:1::43", "fd00:10:20:1::5"]
    # borrowed from host0's block (10.20.1.5) and from no block at all (10.20.9.9): announced as host routes
    assert host1.exported() == nets(
        "10.20.1.64/26", "10.20.1.5/32", "fd00:10:20:1::40/122", "fd00:10:20:1::5/128"
    )
    assert host3.exported() == nets(
        "10.20.1.192/26", "10.20.9.9/32", "fd00:10:20:1::c0/122", "fd00:10:20:9::9/128"
    )


def test_reflectors_get_ipv6_addresses_and_nothing_else() -> None:
    topo = load(ROOT / "configs" / "lab-rr.yaml")
    assert [(r.name, str(r.address6)) for r in topo.reflectors] == [
        ("rr1", "fd00:100::2"),
        ("rr2", "fd00:100::4"),
    ]
    assert all(r.blocks6 == () and r.workloads6 == () and r.exported() == set() for r in topo.reflectors)
    assert [str(b) for b in topo.host("host2").blocks6] == ["fd00:10:20:3::/122"]


@pytest.mark.parametrize("shipped", SHIPPED)
def test_every_address_is_unique_and_every_ipv6_address_inside_its_plan(shipped: str) -> None:
    topo = load(ROOT / "configs" / shipped)
    assert topo.underlay6 is not None
    nodes6 = [n.address6 for n in topo.nodes]
    workloads6 = [w for h in topo.hosts for w in h.workloads6]
    assert len(set(nodes6)) == len(nodes6) and len(set(workloads6)) == len(workloads6)
    assert all(a is not None and a in topo.underlay6 for a in nodes6)
    for h in topo.hosts:
        assert all(b.prefixlen == 122 for b in h.blocks6)
        assert all(any(b.subnet_of(p) for p in topo.pools6) for b in h.blocks6)
        assert all(any(w in p for p in topo.pools6) for w in h.workloads6)
        for other in topo.hosts:  # no two hosts share an IPv6 block
            if other is not h:
                assert not set(h.blocks6) & set(other.blocks6)
        # every workload is inside this host's IPv6 blocks exactly when it is inside its IPv4 blocks
        for w, w6 in zip((w for o in topo.hosts for w in o.workloads), workloads6, strict=True):
            assert any(w in b for b in h.blocks) == any(w6 in b for b in h.blocks6)


def test_the_ipv6_twins_read_like_their_ipv4_addresses() -> None:
    underlay = IPv4Network("192.168.100.0/24")
    assert str(underlay6_of(underlay)) == "fd00:100::/64"
    assert str(node_address6(underlay, IPv4Address("192.168.100.10"))) == "fd00:100::10"
    assert str(node_address6(underlay, IPv4Address("192.168.100.254"))) == "fd00:100::254"
    # in a /16 underlay the host number is 2 * 256 + 3 = 515, written with the same digits
    assert str(node_address6(IPv4Network("10.1.0.0/16"), IPv4Address("10.1.2.3"))) == "fd00::515"
    assert str(pool6_of(IPv4Network("10.20.0.0/16"))) == "fd00:10:20::/48"
    assert str(pool6_of(IPv4Network("10.20.4.0/22"))) == "fd00:10:20::/48"
    assert str(pool6_of(IPv4Network("10.0.0.0/8"))) == "fd00:10::/32"
    assert str(twin6(IPv4Address("10.20.1.2"))) == "fd00:10:20:1::2"
    assert str(twin6(IPv4Address("10.20.255.255"))) == "fd00:10:20:255::ff"
    assert str(block6_of(IPv6Address("fd00:10:20:1::42"))) == "fd00:10:20:1::40/122"


@given(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1))
def test_twins_are_one_to_one_and_keep_the_26_they_share(a: int, b: int) -> None:
    base = int(IPv4Address("10.20.0.0"))
    x, y = IPv4Address(base + a), IPv4Address(base + b)
    assert (twin6(x) == twin6(y)) == (x == y)
    assert twin6(x) in pool6_of(IPv4Network("10.20.0.0/16"))
    same26 = IPv4Network(f"{x}/26", strict=False) == IPv4Network(f"{y}/26", strict=False)
    assert (block6_of(twin6(x)) == block6_of(twin6(y))) == same26


def test_ipv6_false_is_an_ipv4_only_lab() -> None:
    topo = parse(BASE + H0 + H1 + "ipv6: false\n", "t.yaml")
    assert topo.families == (4,) and topo.pools6 == () and topo.underlay6 is None
    assert all(h.address6 is None and h.blocks6 == () and h.workloads6 == () for h in topo.nodes)
    assert topo.hosts[1].exported() == nets("10.20.2.0/24", "10.20.1.3/32")
    cfg = bgpd_config(topo, topo.hosts[0], Path("/run/x"))
    assert "address6" not in cfg["node"]
    assert cfg["bgp"]["mesh"]["nodes"] == ["192.168.100.10", "192.168.100.3"]
    assert cfg["pools"] == [{"cidr": "10.20.0.0/16"}]


def test_the_mesh_config_the_lab_writes() -> None:
    topo = load(ROOT / "configs" / "lab.yaml")
    cfg = bgpd_config(topo, topo.hosts[0], Path("/run/bgpd-lab/lab/host0"))
    assert cfg["node"] == {
        "name": "host0",
        "address": "192.168.100.10",
        "address6": "fd00:100::10",
        "asn": 64512,
    }
    assert cfg["bgp"]["mesh"] == {
        "enabled": True,
        "nodes": ["192.168.100.10", "192.168.100.3", "fd00:100::10", "fd00:100::3"],
    }
    assert cfg["pools"] == [{"cidr": "10.20.0.0/16"}, {"cidr": "fd00:10:20::/48"}]
    # the file: the same, quoted where YAML needs it (an IPv6 address is a plain string)
    assert yaml.safe_load(config_text(topo, topo.hosts[0], Path("/run/bgpd-lab/lab/host0"))) == cfg


def test_the_reflector_configs_the_lab_writes_peer_over_both_families() -> None:
    topo = load(ROOT / "configs" / "lab-rr.yaml")
    rr1 = bgpd_config(topo, topo.host("rr1"), Path("/run/x"))
    assert [p["address"] for p in rr1["bgp"]["peers"]] == ["192.168.100.4", "fd00:100::4"]
    assert rr1["reflector"]["clients"] == [
        "192.168.100.10",
        "192.168.100.3",
        "192.168.100.12",
        "fd00:100::10",
        "fd00:100::3",
        "fd00:100::12",
    ]
    host0 = bgpd_config(topo, topo.host("host0"), Path("/run/x"))
    assert "mesh" not in host0["bgp"]
    assert [p["address"] for p in host0["bgp"]["peers"]] == [
        "192.168.100.2",
        "192.168.100.4",
        "fd00:100::2",
        "fd00:100::4",
    ]


@pytest.mark.parametrize("shipped", SHIPPED)
def test_every_config_the_lab_writes_passes_bgpd_check(shipped: str, tmp_path: Path) -> None:
    """What `bgpd check -c FILE` runs, on every node's file; the config keeps both families."""
    topo = load(ROOT / "configs" / shipped)
    for node in topo.nodes:
        path = tmp_path / f"{node.name}.yaml"
        path.write_text(config_text(topo, node, tmp_path / node.name))
        cfg = config.load(str(path))
        assert cfg.node.address == node.address
        assert cfg.node.address6 == node.address6
        assert {str(p.cidr) for p in cfg.pools} == {"10.20.0.0/16", "fd00:10:20::/48"}


def test_host_routes_are_printed_as_ip_prints_them() -> None:
    assert exported_prefix(IPv4Network("10.20.1.3/32")) == "10.20.1.3"
    assert exported_prefix(IPv6Network("fd00:10:20:1::3/128")) == "fd00:10:20:1::3"
    assert exported_prefix(IPv6Network("fd00:10:20:1::/122")) == "fd00:10:20:1::/122"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (BASE + H0, "t.yaml:3: hosts: at least two hosts"),
        (BASE + H0 + H1.replace("192.168.100.3", "10.0.0.1"), "t.yaml:5: hosts[1].address: 10.0.0.1 is not"),
        (
            BASE + H0 + H1.replace("192.168.100.3", "192.168.100.1"),
            "t.yaml:5: hosts[1].address: 192.168.100.1 is the",
        ),
        (
            BASE + H0 + H1.replace("10.20.1.3", "10.99.0.1"),
            "t.yaml:5: hosts[1]: 10.99.0.1/32 is outside every pool",
        ),
        (BASE + H0 + H1.replace("name: b", "name: a"), "t.yaml:3: hosts: duplicate host name"),
        (BASE + H0 + H1.replace("10.20.1.3", "10.20.1.2"), "t.yaml:3: hosts: duplicate address"),
        (BASE + H0 + H1.replace("blocks", "blokcs"), "t.yaml:5: hosts[1].blokcs: unknown key"),
        (BASE.replace("name: t", "name: Bad_Name") + H0 + H1, "t.yaml:1: name: 1-10 lower-case"),
        (
            BASE + H0 + H1.replace("address: 192.168.100.3", "address: 1.2.3.400"),
            "t.yaml:5: hosts[1].address:",
        ),
        (BASE + H0 + H1 + "ipv6: yes please\n", "t.yaml:6: ipv6: expected bool"),
        # /28 blocks of two hosts share a /122: the IPv6 blocks cannot mirror them
        (
            BASE + H0.replace("10.20.1.0/24", "10.20.1.0/28") + H1.replace("10.20.2.0/24", "10.20.1.16/28"),
            "t.yaml:5: hosts[1]: its IPv6 blocks would overlap those of a (IPv4 blocks longer than /26 "
            "share a /122); `ipv6: false` runs this topology IPv4-only",
        ),
        (
            BASE + H0.replace("10.20.1.0/24", "10.20.1.0/28") + H1.replace("10.20.1.3", "10.20.1.40"),
            "t.yaml:4: hosts[0]: workload 10.20.1.40's IPv6 address fd00:10:20:1::28 would fall inside",
        ),
    ],
)
def test_errors_name_file_line_and_key(text: str, error: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse(text, "t.yaml")
    assert str(info.value).startswith(error)


def test_veth_names_look_like_calicos_and_fit_the_kernel_limit() -> None:
    name = veth_name(load(ROOT / "configs" / "lab.yaml").hosts[0].workloads[0])
    assert name.startswith("cali") and len(name) == 15


# ---------------------------------------------------------------------- top of rack (issue 13)

TOR = ROOT / "configs" / "lab-tor.yaml"
TOR_BASE = """name: t
underlay: [192.168.100.0/24, 192.168.200.0/24]
ipv6: false
pools: [10.20.0.0/16]
tor:
  asns: [65001, 65002]
  allow_local_as: 1
hosts:
  - {name: a, address: 192.168.100.10, blocks: [10.20.1.0/24], workloads: [10.20.1.2]}
  - {name: b, address: 192.168.200.10, blocks: [10.20.2.0/24], workloads: [10.20.2.2]}
"""


def test_the_shipped_tor_lab_has_a_bgp_router_per_rack_and_hosts_in_one_as() -> None:
    topo = load(TOR)
    assert topo.tor is not None
    assert topo.tor.asns == (65001, 65002) and topo.tor.allow_local_as == 1
    assert topo.tor.names == ("tor0", "tor1")
    assert str(topo.tor.transit) == "192.168.255.0/24"
    assert [str(topo.tor.transit_address(k)) for k in (0, 1)] == ["192.168.255.1", "192.168.255.2"]
    assert topo.asn == 64512 and topo.families == (4,) and topo.modes == ("never",) and not topo.tunnels
    assert [(h.name, h.rack) for h in topo.hosts] == [("host0", 0), ("host1", 0), ("host2", 1), ("host3", 1)]
    # the other topologies have no `tor`, and their repr (hence their shape digest) does not mention it
    for name in ("lab.yaml", "lab4.yaml", "lab-rr.yaml", "lab-cross-subnet.yaml"):
        other = load(ROOT / "configs" / name)
        assert other.tor is None and " tor=" not in repr(other)
    changed = parse(TOR.read_text().replace("65002", "65003"))
    assert " tor=" not in repr(topo) and topo.shape() != changed.shape()


def test_the_tor_configs_peer_over_ebgp_with_the_racks_router_only_and_pass_bgpd_check(
    tmp_path: Path,
) -> None:
    topo = load(TOR)
    for host in topo.hosts:
        cfg = bgpd_config(topo, host, tmp_path / host.name)
        router = "192.168.100.1" if host.rack == 0 else "192.168.200.1"
        assert cfg["bgp"] == {
            "hold_time": 9,
            "peers": [
                {
                    "address": router,
                    "asn": 65001 + host.rack,
                    "allow_local_as": 1,
                    "description": f"tor{host.rack}, the router of rack {host.rack}",
                }
            ],
        }
        assert cfg["node"]["asn"] == 64512 and cfg["node"]["address"] == f"{host.address}/24"
        assert cfg["pools"] == [{"cidr": "10.20.0.0/16"}]
        path = tmp_path / f"{host.name}.yaml"
        path.write_text(config_text(topo, host, tmp_path / host.name))
        loaded = config.load(str(path))
        (peer,) = loaded.bgp.peers
        assert str(peer.address) == router and peer.asn == 65001 + host.rack and peer.allow_local_as == 1
        assert not loaded.bgp.mesh.enabled


def test_the_routes_the_tor_lab_waits_for_and_the_as_paths() -> None:
    topo = load(TOR)
    lab = Lab(topo, Path("/nonexistent"))
    host0, host1, host2, host3 = topo.hosts
    # a same-rack host's prefixes via that host (BIRD keeps a next hop on the segment), the rest via tor0
    assert lab.expected(host0) == {
        "10.20.2.0/24": "192.168.100.11",
        "10.20.3.0/24": "192.168.100.1",
        "10.20.4.0/24": "192.168.100.1",
        "10.20.1.3": "192.168.100.1",
    }
    assert lab.expected(host3) == {
        "10.20.1.0/24": "192.168.200.1",
        "10.20.2.0/24": "192.168.200.1",
        "10.20.3.0/24": "192.168.200.10",
    }
    assert [lab._session_count(h) for h in topo.hosts] == [1, 1, 1, 1]
    assert tor.as_path(topo, host0, host1) == [65001, 64512]
    assert tor.as_path(topo, host0, host2) == [65001, 65002, 64512]
    # the routers' tables: their hosts' prefixes direct, the other rack's (and its subnet) via transit
    assert tor.router_expected(topo, 0) == {
        "10.20.1.0/24": "192.168.100.10",
        "10.20.2.0/24": "192.168.100.11",
        "10.20.3.0/24": "192.168.255.2",
        "10.20.4.0/24": "192.168.255.2",
        "10.20.1.3": "192.168.255.2",
        "192.168.200.0/24": "192.168.255.2",
    }
    assert [tor.router_sessions(topo, k) for k in (0, 1)] == [3, 3]
    # allow_local_as 0: every path holds the hosts' AS, so every host rejects every route
    zero = parse(TOR.read_text().replace("allow_local_as: 1", "allow_local_as: 0"), "t.yaml")
    assert all(Lab(zero, Path("/nonexistent")).expected(h) == {} for h in zero.hosts)
    h0, _, _, h3 = zero.hosts
    why = tor.explain(zero, h3, h0, ("10.20.1.3", "192.168.100.10"))
    assert why.startswith("host0 rejected the route to 10.20.1.3/32 (as_loop:")
    assert why.endswith("so its blackhole for 10.20.1.0/24 takes the packets")
    assert tor.explain(zero, h0, h3, ("10.20.1.2", "10.20.4.2")) == ""  # not the failure it causes
    assert tor.explain(topo, host0, host3, ("10.20.1.2", "10.20.1.3")) == ""  # allow_local_as 1


def test_the_routers_bird_configs(tmp_path: Path) -> None:
    topo = load(TOR)
    text = tor.bird_config(topo, 1)
    assert "router id 192.168.200.1;" in text
    assert "local 192.168.200.1 as 65002;" in text and "local 192.168.255.2 as 65002;" in text
    assert "define POOLS = [ 10.20.0.0/16+ ];" in text
    assert "neighbor 192.168.200.10 as 64512;" in text and "neighbor 192.168.200.11 as 64512;" in text
    assert "neighbor 192.168.100.10" not in text  # only its own rack's hosts
    assert "protocol bgp router_tor0 from torpeer { neighbor 192.168.255.1 as 65001; }" in text
    assert "export where source = RTS_BGP; }" in text  # the kernel protocol: BGP routes into the table
    if not tor.missing_commands():  # BIRD parses it (`bird -p`: parse only, nothing started)
        for k in (0, 1):
            path = tmp_path / f"tor{k}.conf"
            path.write_text(tor.bird_config(topo, k))
            parsed = subprocess.run([tor.BIRD, "-p", "-c", str(path)], capture_output=True, text=True)
            assert parsed.returncode == 0, parsed.stderr


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            "tor:\n  asns: [65001, 65002]\n  allow_local_as: 1\n",
            "tor: 7\n",
            "t.yaml:5: tor: expected a mapping",
        ),
        ("[65001, 65002]", "[65001]", "t.yaml:6: tor.asns: one AS per rack: 2 underlays, 1 ASNs"),
        ("[65001, 65002]", "[65001, 64512]", "t.yaml:6: tor.asns[1]: 64512 is the hosts' AS (`asn`)"),
        ("[65001, 65002]", "[65001, 65001]", "t.yaml:6: tor.asns[1]: 65001 is rack 0's router's AS too"),
        ("[65001, 65002]", "[65001, x]", "t.yaml:6: tor.asns[1]: expected an AS number 1..4294967295"),
        ("[65001, 65002]", "[0, 65002]", "t.yaml:6: tor.asns[0]: expected an AS number"),
        ("allow_local_as: 1", "allow_local_as: 256", "t.yaml:7: tor.allow_local_as: expected 0..255"),
        ("allow_local_as: 1", "allow_local_as: yes", "t.yaml:7: tor.allow_local_as: expected int"),
        ("allow_local_as: 1", "allow_local_as: 1\n  asn: 65000", "t.yaml:8: tor.asn: unknown key"),
        ("allow_local_as: 1", "transit: 10.20.9.0/24", "t.yaml:7: tor.transit: 10.20.9.0/24 overlaps a pool"),
        ("allow_local_as: 1", "transit: 192.168.255.0/31", "t.yaml:7: tor.transit: 192.168.255.0/31 is too"),
        ("allow_local_as: 1", "transit: nonsense", "t.yaml:7: tor.transit:"),
        (
            "ipv6: false\n",
            "",
            "t.yaml:4: tor: the racks' routers route IPv4 only: a ToR lab needs `ipv6: false`",
        ),
        (
            "hosts:\n",
            "reflectors: [{name: rr, address: 192.168.100.2}]\nhosts:\n",
            "t.yaml:5: tor: a ToR lab has no reflectors",
        ),
        (
            "pools: [10.20.0.0/16]",
            "pools: [{cidr: 10.20.0.0/16, ipip: always}]",
            "t.yaml:5: tor: pools[0] is ipip always: the racks' routers carry the workload routes",
        ),
        ("name: b,", "name: tor0,", "t.yaml:10: hosts[1].name: 'tor0' is the name of one of the lab's own"),
        ("name: b,", "name: swt,", "t.yaml:10: hosts[1].name: 'swt' is the name of one of the lab's own"),
    ],
)
def test_tor_errors_name_file_line_and_key(old: str, new: str, error: str) -> None:
    assert TOR_BASE.count(old) == 1
    with pytest.raises(TopologyError) as info:
        parse(TOR_BASE.replace(old, new), "t.yaml")
    assert str(info.value).startswith(error), str(info.value)


def test_without_tor_the_routers_names_are_free() -> None:
    """`tor0` and `swt` are reserved in a ToR lab only: the other topologies accept them as before."""
    text = TOR_BASE.replace("tor:\n  asns: [65001, 65002]\n  allow_local_as: 1\n", "")
    topo = parse(text.replace("name: a,", "name: tor0,").replace("name: b,", "name: swt,"), "t.yaml")
    assert [h.name for h in topo.hosts] == ["tor0", "swt"] and topo.tor is None
    assert parse(TOR_BASE, "t.yaml").tor is not None
