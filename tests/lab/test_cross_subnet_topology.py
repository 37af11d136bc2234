"""The cross-subnet lab's topology (issue 12) without namespaces: racks (`underlay` as a list), pools with an
`ipip` mode, each host's tunnel address, the bgpd configs the lab writes (valid for bgpd, with `ipip` and
`node.address/len`), the routes the lab waits for in each mode, the explanation of a failed pair, errors
naming file, line and key; and the encapsulator's parts: unwrapping, and its route lookup against a real
kernel (the one test with a namespace, a throw-away one: it needs root)."""

from __future__ import annotations

import os
import select
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from pyroute2 import netns as pyroute2_netns

from bgpd import config
from bgpd.lab import ipip, netns
from bgpd.lab.lab import Lab, Ping, bgpd_config, config_text
from bgpd.lab.topology import Topology, TopologyError, load, parse

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "lab-cross-subnet.yaml"

RACKS = """name: t
underlay: [192.168.100.0/24, 192.168.200.0/24]
ipv6: false
pools:
  - {cidr: 10.20.0.0/16, ipip: MODE}
hosts:
  - {name: a, address: 192.168.100.10, blocks: [10.20.1.0/24], workloads: [10.20.1.2]}
  - {name: b, address: 192.168.100.11, blocks: [10.20.2.0/24], workloads: [10.20.2.2]}
  - {name: c, address: 192.168.200.10, blocks: [10.20.3.0/24], workloads: [10.20.3.2, 10.20.1.3]}
"""


def racks(mode: str = "cross-subnet", text: str = RACKS) -> Topology:
    return parse(text.replace("MODE", mode), "t.yaml")


def test_the_shipped_cross_subnet_lab_is_two_racks_ipv4_only_and_starts_with_ipip_never() -> None:
    topo = load(SHIPPED)
    assert topo.routed and [str(n) for n in topo.racks] == ["192.168.100.0/24", "192.168.200.0/24"]
    assert topo.families == (4,) and not topo.ipv6
    assert [(h.name, h.rack) for h in topo.hosts] == [("host0", 0), ("host1", 0), ("host2", 1), ("host3", 1)]
    assert [str(topo.gateway_of(h)) for h in topo.hosts] == ["192.168.100.1"] * 2 + ["192.168.200.1"] * 2
    assert topo.modes == ("never",) and not topo.tunnels and topo.writes_subnet
    # tunl0's address: the first address of the host's block (Calico's IPAM hands out the first free one)
    assert [str(h.tunnel_address) for h in topo.hosts] == ["10.20.1.0", "10.20.2.0", "10.20.3.0", "10.20.4.0"]
    # one key changes the mode: the same file with another value is the same lab otherwise
    text = SHIPPED.read_text()
    assert text.count("ipip: never ") == 1
    for mode in ("cross-subnet", "always"):
        other = parse(text.replace("ipip: never ", f"ipip: {mode} "), str(SHIPPED))
        assert other.modes == (mode,) and other.tunnels
        assert other.shape() == topo.shape()  # what `bgpd lab reload` accepts


def test_pools_are_strings_or_mappings_with_calicos_ipip_mode() -> None:
    text = RACKS.replace(
        "  - {cidr: 10.20.0.0/16, ipip: MODE}\n",
        "  - 10.20.0.0/16\n  - {cidr: 10.30.0.0/16, ipip: CrossSubnet}\n  - {cidr: 10.40.0.0/16}\n",
    )
    topo = parse(text, "t.yaml")
    assert [str(p) for p in topo.pools] == ["10.20.0.0/16", "10.30.0.0/16", "10.40.0.0/16"]
    assert topo.ipip == (None, "cross-subnet", None)  # as written; Calico's spelling normalized
    assert topo.modes == ("never", "cross-subnet", "never")
    assert topo.ipip_mode(IPv4Network("10.30.1.0/24")) == "cross-subnet"
    assert topo.ipip_mode(IPv4Network("10.20.1.0/24")) == "never"
    assert topo.ipip_mode(IPv4Network("10.99.0.0/24")) == "never"  # outside every pool
    # the classic form keeps its meaning: no ipip written, nothing tunnels, configs without subnet
    classic = load(ROOT / "configs" / "lab.yaml")
    assert classic.ipip == () and classic.modes == ("never",) and not classic.writes_subnet
    assert not classic.routed and classic.racks == (classic.underlay,)


def test_the_configs_the_lab_writes_carry_the_mode_and_the_subnet_and_pass_bgpd_check(tmp_path: Path) -> None:
    topo = racks("cross-subnet")
    cfg = bgpd_config(topo, topo.hosts[2], tmp_path)
    assert cfg["node"]["address"] == "192.168.200.10/24"
    assert cfg["pools"] == [{"cidr": "10.20.0.0/16", "ipip": "cross-subnet"}]
    assert cfg["bgp"]["mesh"]["nodes"] == ["192.168.100.10", "192.168.100.11", "192.168.200.10"]
    for mode in ("never", "cross-subnet", "always"):
        topo = racks(mode)
        for node in topo.nodes:
            path = tmp_path / f"{node.name}-{mode}.yaml"
            path.write_text(config_text(topo, node, tmp_path / node.name))
            loaded = config.load(str(path))
            assert loaded.node.address == node.address
            assert str(loaded.node.subnet) == str(topo.underlay_of(node))
            assert [(str(p.cidr), p.ipip) for p in loaded.pools] == [("10.20.0.0/16", mode)]
    # a single-segment lab that writes an ipip key gets the subnet too (it decides cross-subnet)
    single = parse(
        "name: s\npools: [{cidr: 10.20.0.0/16, ipip: always}]\nhosts:\n"
        "  - {name: a, address: 192.168.100.10, blocks: [10.20.1.0/24]}\n"
        "  - {name: b, address: 192.168.100.3, blocks: [10.20.2.0/24]}\n",
        "s.yaml",
    )
    cfg = bgpd_config(single, single.hosts[0], tmp_path)
    assert cfg["node"]["address"] == "192.168.100.10/24"
    assert cfg["pools"] == [{"cidr": "10.20.0.0/16", "ipip": "always"}, {"cidr": "fd00:10:20::/48"}]
    assert bgpd_config(single, single.hosts[0], tmp_path, with_subnet=False)["node"]["address"] == (
        "192.168.100.10"
    )


def test_the_routes_the_lab_waits_for_in_each_mode() -> None:
    """What Calico's BIRD installs: never = plain, and nothing via a host behind the router (the kernel
    refuses a gateway off its subnets); cross-subnet = tunl0 across the router only; always = tunl0 for
    every host. `c` also announces 10.20.1.3, borrowed from `a`'s block."""
    plain = {"10.20.2.0/24": "192.168.100.11"}
    expected = {
        "never": plain,
        "cross-subnet": {
            **plain,
            "10.20.3.0/24": "192.168.200.10 dev tunl0",
            "10.20.1.3": "192.168.200.10 dev tunl0",
        },
        "always": {
            "10.20.2.0/24": "192.168.100.11 dev tunl0",
            "10.20.3.0/24": "192.168.200.10 dev tunl0",
            "10.20.1.3": "192.168.200.10 dev tunl0",
        },
    }
    for mode, routes in expected.items():
        topo = racks(mode)
        lab = Lab(topo, Path("/nonexistent"))
        assert lab.expected(topo.hosts[0]) == routes, mode
    never = Lab(racks("never"), Path("/nonexistent"))
    assert never.expected(never.topo.hosts[2]) == {}  # c has no neighbour in its rack


def test_a_failed_pair_across_the_router_is_explained_in_one_line() -> None:
    lab = Lab(racks("never"), Path("/nonexistent"))
    a, b, c = lab.topo.hosts
    why = lab.explain(a, c, Ping("10.20.1.2", "10.20.3.2", False, None))
    assert why == (
        "a and c are in different subnets; the router has no route to workloads and pool 10.20.0.0/16 is "
        "ipip: never (cross-subnet would tunnel this)"
    )
    assert "\n" not in why
    assert lab.explain(a, c, Ping("10.20.1.2", "192.168.200.10", False, None)) == why  # the reply's way
    assert lab.explain(a, b, Ping("10.20.1.2", "10.20.2.2", False, None)) == ""  # same rack: not that
    tunnelled = Lab(racks("cross-subnet"), Path("/nonexistent"))
    assert tunnelled.explain(a, c, Ping("10.20.1.2", "10.20.3.2", False, None)) == ""
    assert lab.owner("10.20.1.3") == c and lab.owner("192.168.100.11") == b and lab.owner("10.9.9.9") is None


TWO = "name: t\nunderlay: [192.168.100.0/24, 192.168.200.0/24]\nipv6: false\npools: [10.20.0.0/16]\nhosts:\n"
A = "  - {name: a, address: 192.168.100.10, blocks: [10.20.1.0/24]}\n"
B = "  - {name: b, address: 192.168.200.10, blocks: [10.20.2.0/24]}\n"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (RACKS.replace("MODE", "sometimes"), "t.yaml:5: pools[0].ipip: bad mode 'sometimes': one of never,"),
        (RACKS.replace("MODE", "true"), "t.yaml:5: pools[0].ipip: bad mode 'true'"),
        (  # a block mapping: the line of the key itself, and a suggestion
            RACKS.replace(
                "  - {cidr: 10.20.0.0/16, ipip: MODE}", "  - cidr: 10.20.0.0/16\n    ipip: cross-subnt"
            ),
            "t.yaml:6: pools[0].ipip: bad mode 'cross-subnt': one of never, always, cross-subnet "
            "(did you mean 'cross-subnet'?)",
        ),
        (
            RACKS.replace("ipip: MODE", "vxlan: always"),
            "t.yaml:5: pools[0].vxlan: unknown key (the lab plays Felix for IP-in-IP only)",
        ),
        (
            RACKS.replace("cidr: 10.20.0.0/16, ipip: MODE", "ipip: always"),
            "t.yaml:5: pools[0].cidr: required",
        ),
        (
            RACKS.replace("  - {cidr: 10.20.0.0/16, ipip: MODE}", "  - 7"),
            "t.yaml:1: pools[0]: expected a CIDR",
        ),
        (
            RACKS.replace("MODE}", "never}\n  - {cidr: 10.20.8.0/24, ipip: always}"),
            "t.yaml:6: pools[1]: 10.20.8.0/24 overlaps pools[0] 10.20.0.0/16",
        ),
        (
            TWO.replace("192.168.200.0/24]", "192.168.100.128/25]") + A + B,
            "t.yaml:1: underlay[1]: 192.168.100.128/25 overlaps underlay[0] 192.168.100.0/24",
        ),
        (TWO.replace("[192.168.100.0/24,", "[7,") + A + B, "t.yaml:1: underlay[0]: expected a subnet"),
        (TWO.replace("[192.168.100.0/24, 192.168.200.0/24]", "[]") + A + B, "t.yaml:2: underlay: expected"),
        (
            TWO + A + B.replace("192.168.200.10", "192.168.50.10"),
            "t.yaml:7: hosts[1].address: 192.168.50.10 is not a host address of any underlay",
        ),
        (
            TWO + A + B.replace("192.168.200.10", "192.168.200.1"),
            "t.yaml:7: hosts[1].address: 192.168.200.1 is the underlay's router (its first address)",
        ),
        (TWO.replace("ipv6: false\n", "") + A + B, "t.yaml:2: underlay: several underlays (racks) need"),
        (TWO + A + B.replace("name: b", "name: rt"), "t.yaml:7: hosts[1].name: 'rt' is the name of one of"),
        (TWO + A + B.replace("name: b", "name: sw1"), "t.yaml:7: hosts[1].name: 'sw1' is the name of one"),
        (
            TWO.replace("[10.20.0.0/16]", "[{cidr: 10.20.0.0/16, ipip: always}]")
            + A
            + B.replace("blocks: [10.20.2.0/24]", "workloads: [10.20.2.2]"),
            "t.yaml:7: hosts[1].blocks: a pool uses ipip, so every host needs a block",
        ),
    ],
)
def test_errors_name_file_line_and_key(text: str, error: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse(text, "t.yaml")
    assert str(info.value).startswith(error), str(info.value)


def test_the_encapsulator_unwraps_ip_in_ip_only() -> None:
    inner = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0]) + socket.inet_aton("10.20.1.2")
    inner += socket.inet_aton("10.20.3.2") + bytes(8)
    outer = bytes([0x45, 0, 0, 48, 0, 0, 0, 0, 64, 4, 0, 0]) + socket.inet_aton("192.168.100.10")
    outer += socket.inet_aton("192.168.200.10")
    assert ipip.unwrap(outer + inner) == inner
    assert ipip.unwrap(outer[:9] + bytes([1]) + outer[10:] + inner) is None  # not protocol 4
    assert ipip.unwrap(outer + bytes(4)) is None  # no inner IPv4 header
    # an outer header with options (IHL 6): the inner packet starts after them
    with_options = bytes([0x46]) + outer[1:] + bytes(4)
    assert ipip.unwrap(with_options + inner) == inner


KERNEL = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2's ip (a namespace)"
)


def ip(ns: str, command: str) -> None:
    netns.ip(*command.split(), ns=ns)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A throw-away namespace shaped like a lab host: up0 on the rack's segment, tunl0 (a TUN device, as
    the lab makes it), routes through both; deleted at the end, pass or fail."""
    name = f"bgpdtest-{uuid.uuid4().hex[:10]}"
    netns.ip("netns", "add", name)
    try:
        for command in (
            "link set lo up",
            "link add up0 type veth peer name up0p",
            "addr add 192.168.100.10/24 dev up0",
            "link set up0p up",
            "link set up0 up",
            "tuntap add dev tunl0 mode tun",
            "link set tunl0 up",
            "addr add 10.20.1.0/32 dev tunl0",
            "route add 10.20.3.0/24 via 192.168.200.10 dev tunl0 onlink",  # as bgpd installs it
            "route add 10.20.4.0/24 dev tunl0",  # no gateway: to the destination itself
            "route add 10.20.2.0/24 via 192.168.100.11 dev up0",  # plain: not the tunnel's
            "route add blackhole 10.20.5.0/24",
        ):
            ip(name, command)
        yield name
    finally:
        netns.ip("netns", "del", name, check=False)


def inside(name: str, body: Callable[[], None]) -> None:
    """Run `body` in a thread moved into namespace `name` (Linux keeps it per thread): the sockets it opens
    belong to that namespace, and pyroute2 wants them used by the thread that opened them."""

    def run() -> None:
        pyroute2_netns.setns(name, flags=0)
        body()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result(timeout=30)


@KERNEL
def test_the_encapsulators_route_lookup_follows_the_kernel(namespace: str) -> None:
    """The outer destination is the gateway of the route through tunl0 (or the destination itself without
    one); any other answer drops the packet. Cached per destination until the kernel reports a change."""

    def body() -> None:
        routes = ipip.Routes(socket.if_nametoindex("tunl0"))
        try:
            outer = {d: routes.outer(socket.inet_aton(d)) for d in ("10.20.3.2", "10.20.4.7", "10.20.2.2")}
            assert outer == {"10.20.3.2": "192.168.200.10", "10.20.4.7": "10.20.4.7", "10.20.2.2": None}
            for elsewhere in ("10.99.0.1", "10.20.5.1", "10.20.1.0"):  # no route, blackhole, local
                assert routes.outer(socket.inet_aton(elsewhere)) is None, elsewhere
            assert routes.lookups == 6
            assert routes.outer(socket.inet_aton("10.20.3.2")) == "192.168.200.10" and routes.lookups == 6
            routes.invalidate_on_events()  # nothing changed since it subscribed: the cache stays
            assert routes.invalidations == 0 and len(routes.cache) == 6
            # a reload rewriting the route in place: followed by the next packet
            ip(namespace, "route replace 10.20.3.0/24 via 192.168.200.11 dev tunl0 onlink")
            assert select.select([routes], [], [], 5)[0] == [routes]
            routes.invalidate_on_events()
            assert routes.invalidations == 1 and not routes.cache
            assert routes.outer(socket.inet_aton("10.20.3.2")) == "192.168.200.11"
            ip(namespace, "route replace 10.20.3.0/24 via 192.168.100.11 dev up0")
            routes.invalidate_on_events()
            assert routes.outer(socket.inet_aton("10.20.3.2")) is None  # no longer through tunl0
            # lost notifications (ENOBUFS) drop the cache too, and the subscription goes on
            routes.events.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
            batch = "".join(f"route add 10.30.{i // 250}.{i % 250}/32 dev up0\n" for i in range(300))
            netns.ip("-batch", "-", ns=namespace, stdin=batch)
            routes.invalidate_on_events()
            assert routes.invalidations == 3 and not routes.cache
            routes.outer(socket.inet_aton("10.20.4.7"))
            ip(namespace, "route del 10.30.0.0/32")
            routes.invalidate_on_events()
            assert routes.invalidations == 4 and not routes.cache
        finally:
            routes.close()

    inside(namespace, body)
