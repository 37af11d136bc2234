"""Calico v3 resource JSON -> validated records (`bgpd.datastore.resources`): each kind from Calico's
documented examples, errors naming the record's key and the Calico field, and the same meaning as
bgpd's YAML for the same setting."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

import pytest

from bgpd import config
from bgpd.datastore import resources as r
from bgpd.datastore.selector import parse as selector
from tests.unit.calico_records import P, record


def one(kind: str, name: str, spec: Any, labels: dict[str, str] | None = None) -> Any:
    rec, notes = r.parse(*record(kind, name, spec, labels))
    assert notes == ()
    return rec


def error(kind: str, name: str, spec: Any) -> str:
    with pytest.raises(r.ResourceError) as info:
        r.parse(*record(kind, name, spec))
    assert info.value.key == f"{P}{kind}/{name}"
    return str(info.value)


NODE = "node: {name: v, address: 192.0.2.1, asn: 64512}\n"


# ---------------------------------------------------------------------------------------------- Node


def test_node_from_calicos_example() -> None:
    node = one(
        "nodes",
        "node-hostname",
        {
            "bgp": {
                "asNumber": 64512,
                "ipv4Address": "10.244.0.1/24",
                "ipv6Address": "2001:db8:85a3::8a2e:370:7334/120",
                "routeReflectorClusterID": "244.0.0.1",
                "ipv4IPIPTunnelAddr": "",
            },
            "orchRefs": [],
        },
        labels={"route-reflector": "true"},
    )
    assert node == r.Node(
        key=f"{P}nodes/node-hostname",
        name="node-hostname",
        labels={"route-reflector": "true"},
        address=IPv4Address("10.244.0.1"),
        prefix_length=24,
        address6=IPv6Address("2001:db8:85a3::8a2e:370:7334"),
        prefix_length6=120,
        asn=64512,
        cluster_id=IPv4Address("244.0.0.1"),
    )


def test_node_without_bgp_takes_no_part() -> None:
    node = one("nodes", "felix-only", {})
    assert node.bgp is False and node.address is None


def test_node_fields_are_optional() -> None:
    node = one("nodes", "h", {"bgp": {"ipv6Address": "fd00:1::5/64"}})
    assert (node.address, node.address6, node.asn, node.cluster_id) == (
        None,
        IPv6Address("fd00:1::5"),
        None,
        None,
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"bgp": {"ipv4Address": "10.0.0.0/24"}},
            "spec.bgp.ipv4Address: 10.0.0.0 is the network address of 10.0.0.0/24",
        ),
        ({"bgp": {"ipv4Address": "10.0.0.300"}}, "spec.bgp.ipv4Address: invalid IPv4 address '10.0.0.300'"),
        ({"bgp": {"ipv6Address": "fe80::1/64"}}, "spec.bgp.ipv6Address: fe80::1 is a link-local address"),
        ({"bgp": {"asNumber": 0}}, "spec.bgp.asNumber: invalid AS number 0"),
        (
            {"bgp": {"routeReflectorClusterID": "0.0.0.0"}},
            "spec.bgp.routeReflectorClusterID: cluster id must not",
        ),
        (
            {"bgp": {"ipv4Addres": "10.0.0.1"}},
            "spec.bgp: unknown field 'ipv4Addres' (did you mean 'ipv4Address'?)",
        ),
        ({"bgp": []}, "spec.bgp: expected an object, got a list"),
    ],
)
def test_node_errors_name_the_key_and_the_field(spec: Any, message: str) -> None:
    assert error("nodes", "h", spec).startswith(f"{P}nodes/h: {message}")


def test_node_asn_in_asdot_and_as_text() -> None:
    assert one("nodes", "h", {"bgp": {"asNumber": "1.10"}}).asn == 65546
    assert one("nodes", "h", {"bgp": {"asNumber": "64512"}}).asn == 64512


# -------------------------------------------------------------------------------- BGPConfiguration


def test_default_configuration_from_calicos_example() -> None:
    cfg = one(
        "bgpconfigurations",
        "default",
        {
            "logSeverityScreen": "",
            "nodeToNodeMeshEnabled": False,
            "asNumber": 63400,
            "listenPort": 178,
            "communities": [{"name": "bgp-large-community", "value": "63400:300:100"}],
            "prefixAdvertisements": [
                {"cidr": "172.218.4.0/26", "communities": ["bgp-large-community", "63400:120"]}
            ],
            "nodeMeshPassword": {"secretKeyRef": {"name": "bgp-passwords", "key": "mesh"}},
        },
    )
    yaml_cfg = config.parse(
        NODE + "bgp:\n  port: 178\n  communities: [{name: bgp-large-community, value: '63400:300:100'}]\n"
        "  prefix_advertisements: [{cidr: 172.218.4.0/26, communities: [bgp-large-community, '63400:120']}]\n"
    )
    assert cfg == r.BGPConfiguration(
        key=f"{P}bgpconfigurations/default",
        name="default",
        node=None,
        asn=63400,
        mesh_enabled=False,
        listen_port=178,
        communities=yaml_cfg.bgp.communities,
        prefix_advertisements=yaml_cfg.bgp.prefix_advertisements,
        mesh_password=r.SecretRef("bgp-passwords", "mesh"),
    )


def test_per_node_configuration_ignores_default_only_fields_with_a_note() -> None:
    rec, notes = r.parse(*record("bgpconfigurations", "node.h1", {"listenPort": 1179, "asNumber": 65001}))
    assert isinstance(rec, r.BGPConfiguration)
    assert (rec.node, rec.listen_port, rec.asn) == ("h1", 1179, None)
    assert [str(n) for n in notes] == [
        f"{P}bgpconfigurations/node.h1: spec.asNumber: only read from BGPConfiguration 'default' (ignored)"
    ]


def test_fields_of_other_components_are_noted_when_set() -> None:
    _, notes = r.parse(
        *record("bgpconfigurations", "default", {"serviceClusterIPs": [{"cidr": "10.96.0.0/12"}]})
    )
    assert [n.message for n in notes] == ["spec.serviceClusterIPs: not used by bgpd"]
    assert not notes[0].skipped
    _, quiet = r.parse(
        *record("bgpconfigurations", "default", {"serviceClusterIPs": [], "logSeverityScreen": ""})
    )
    assert quiet == ()


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("default", {"listenPort": 70000}, "spec.listenPort: port 70000 out of range 1..65535"),
        (
            "default",
            {"communities": [{"name": "x", "value": "70000:1"}]},
            "spec.communities[0].value: invalid community",
        ),
        (
            "default",
            {"prefixAdvertisements": [{"cidr": "10.0.0.0/8", "communities": ["nope"]}]},
            "spec.prefixAdvertisements[0].communities[0]: unknown community 'nope'",
        ),
        (
            "default",
            {"nodeMeshPassword": "secret"},
            "spec.nodeMeshPassword: a clear-text password is not accepted",
        ),
        ("default", {"nodeToNodeMeshEnabled": "yes"}, "spec.nodeToNodeMeshEnabled: expected true or false"),
        ("global", {}, "metadata.name: 'global': 'default' or 'node.<node name>'"),
    ],
)
def test_configuration_errors(name: str, spec: Any, message: str) -> None:
    assert error("bgpconfigurations", name, spec).startswith(f"{P}bgpconfigurations/{name}: {message}")


# ------------------------------------------------------------------------------------------ BGPPeer


def test_peer_from_calicos_global_peer_example() -> None:
    peer = one(
        "bgppeers",
        "bgppeer-global-3040",
        {
            "peerIP": "192.20.30.40",
            "asNumber": 64567,
            "localASNumber": 64600,
            "keepaliveTime": "1m10s",
            "numAllowedLocalASNumbers": 1,
            "ttlSecurity": 1,
            "nextHopMode": "Self",
            "filters": ["my-filter"],
            "password": {"secretKeyRef": {"name": "bgp-passwords", "key": "rr-password"}},
        },
    )
    assert (peer.address, peer.port, peer.asn, peer.node, peer.node_selector) == (
        IPv4Address("192.20.30.40"),
        None,
        64567,
        None,
        None,
    )
    assert peer.password == r.SecretRef("bgp-passwords", "rr-password")
    assert peer.next_hop_mode == "self"
    expected = config.parse(
        NODE + "filters: [{name: my-filter}]\nbgp:\n  peers:\n    - {address: 192.20.30.40, asn: 64567, "
        "local_asn: 64600, keepalive_time: 70, allow_local_as: 1, ttl_security: 1, next_hop_mode: self, "
        "filters: [my-filter]}\n"
    ).bgp.peers[0]
    assert peer.session == expected


def test_peer_with_selectors_from_calicos_route_reflector_example() -> None:
    peer = one(
        "bgppeers",
        "peer-with-route-reflectors",
        {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
    )
    assert peer.node_selector == selector("all()")
    assert peer.peer_selector == selector("route-reflector == 'true'")
    assert peer.address is None and peer.reverse_peering


@pytest.mark.parametrize(
    ("peer_ip", "address", "port"),
    [
        ("10.0.0.1:1179", IPv4Address("10.0.0.1"), 1179),
        ("[fd00::1]:1179", IPv6Address("fd00::1"), 1179),
        ("fd00::1", IPv6Address("fd00::1"), None),
    ],
)
def test_peer_ip_with_a_port(peer_ip: str, address: object, port: int | None) -> None:
    peer = one("bgppeers", "p", {"peerIP": peer_ip, "asNumber": 65001})
    assert (peer.address, peer.port) == (address, port)


def test_peer_legacy_keep_original_next_hop() -> None:
    peer = one("bgppeers", "p", {"peerIP": "10.0.0.1", "asNumber": 65001, "keepOriginalNextHop": True})
    assert (peer.next_hop_mode, peer.keep_original_next_hop) == (None, True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"peerIP": "10.0.0.1"}, "spec.asNumber: required with peerIP"),
        ({"asNumber": 65001}, "spec: one of peerIP and peerSelector is required"),
        ({"peerIP": "10.0.0.1:99999", "asNumber": 1}, "spec.peerIP: port '99999' out of range"),
        ({"peerIP": "10.0.0", "asNumber": 1}, "spec.peerIP: invalid peer address '10.0.0'"),
        ({"peerIP": "224.0.0.1", "asNumber": 1}, "spec.peerIP: 224.0.0.1 is not a unicast address"),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "peerSelector": "all()"},
            "spec.peerIP: peerIP and peerSelector",
        ),
        ({"peerSelector": "all()", "node": "a", "nodeSelector": "all()"}, "spec.node: node and nodeSelector"),
        (
            {"peerSelector": "rack = 'a'"},
            "spec.peerSelector: selector \"rack = 'a'\": at character 5: expected",
        ),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "nextHopMode": "Sometimes"},
            "spec.nextHopMode: bad next hop mode",
        ),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "keepaliveTime": "soon"},
            "spec.keepaliveTime: invalid duration 'soon'",
        ),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "keepaliveTime": "7h"},
            "spec.keepaliveTime: keepalive time 25200 out of range 1..21845",
        ),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "ttlSecurity": 300},
            "spec.ttlSecurity: hop count 300 out of range",
        ),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "password": "clear"},
            "spec.password: a clear-text password is not accepted",
        ),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "reachableBy": "10.0.0.254"},
            "spec.reachableBy: not supported by bgpd",
        ),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "sourceAddress": "None"},
            "spec.sourceAddress: 'None': bgpd supports UseNodeIP only",
        ),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "reversePeering": "Never"},
            "spec.reversePeering: 'Never': Auto or Manual",
        ),
        (
            {"peerIP": "10.0.0.1", "asNumber": 1, "filters": ["a", "a"]},
            "spec.filters[1]: filter 'a' listed twice",
        ),
        ({"peerIP": "10.0.0.1", "asNumber": 1, "peerASN": 2}, "spec: unknown field 'peerASN'"),
    ],
)
def test_peer_errors(spec: Any, message: str) -> None:
    assert error("bgppeers", "p", spec).startswith(f"{P}bgppeers/p: {message}")


# ------------------------------------------------------------------------------------------- IPPool


def test_pool_from_calicos_example() -> None:
    pool = one(
        "ippools",
        "my.ippool-1",
        {
            "cidr": "10.1.0.0/16",
            "ipipMode": "CrossSubnet",
            "natOutgoing": True,
            "disabled": False,
            "nodeSelector": "all()",
        },
    )
    assert pool.pool == config.PoolConfig(ip_network("10.1.0.0/16"), ipip="cross-subnet")


def test_pool_flags() -> None:
    pool = one(
        "ippools",
        "p",
        {
            "cidr": "fd00:10::/48",
            "vxlanMode": "Always",
            "disableBGPExport": True,
            "disabled": True,
            "ipipMode": "Never",
        },
    )
    assert pool.pool == config.PoolConfig(ip_network("fd00:10::/48"), export=False, vxlan="always")
    assert pool.disabled


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cidr": "10.1.0.1/16"}, "spec.cidr: 10.1.0.1/16 has host bits set"),
        ({"cidr": "10.1.0.0"}, "spec.cidr: invalid CIDR '10.1.0.0' (missing /prefix length)"),
        ({"cidr": "10.1.0.0/16", "ipipMode": "Sometimes"}, "spec.ipipMode: bad ipip mode 'Sometimes'"),
        (
            {"cidr": "10.1.0.0/16", "ipipMode": "Always", "vxlanMode": "Always"},
            "spec.vxlanMode: pool 10.1.0.0/16 has both",
        ),
        ({"cidr": "fd00::/48", "ipipMode": "Always"}, "spec.ipipMode: ipip always on IPv6 pool"),
        ({"ipipMode": "Always"}, "spec.cidr: required"),
        (
            {"cidr": "10.1.0.0/16", "disableBGPExport": "true"},
            "spec.disableBGPExport: expected true or false, got a string",
        ),
    ],
)
def test_pool_errors(spec: Any, message: str) -> None:
    assert error("ippools", "x", spec).startswith(f"{P}ippools/x: {message}")


# ---------------------------------------------------------------------------------------- BGPFilter


def test_filter_from_calicos_example_means_what_the_yaml_means() -> None:
    rec = one(
        "bgpfilters",
        "my-filter",
        {
            "exportV4": [
                {
                    "action": "Accept",
                    "matchOperator": "In",
                    "cidr": "77.0.0.0/16",
                    "prefixLength": {"min": 20, "max": 24},
                },
                {"action": "Reject", "source": "RemotePeers"},
            ],
            "importV6": [
                {"action": "Reject", "matchOperator": "NotIn", "cidr": "9000::0/64", "interface": "eth*"}
            ],
        },
    )
    expected = config.parse(
        NODE + "filters:\n  - name: my-filter\n    export_v4:\n"
        "      - {action: Accept, match_operator: In, cidr: 77.0.0.0/16, prefix_length: {min: 20, max: 24}}\n"
        "      - {action: Reject, source: RemotePeers}\n"
        "    import_v6: [{action: Reject, match_operator: NotIn, cidr: '9000::0/64', interface: 'eth*'}]\n"
    ).filters[0]
    assert rec.rules == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"exportV4": [{"action": "Accept", "cidr": "10.0.0.0/8"}]},
            "spec.exportV4[0].cidr: cidr needs a match_operator",
        ),
        (
            {"importV6": [{"action": "Accept", "matchOperator": "In", "cidr": "10.0.0.0/8"}]},
            "spec.importV6[0].cidr: cidr 10.0.0.0/8 is IPv4",
        ),
        ({"exportV4": [{"action": "Maybe"}]}, "spec.exportV4[0].action: bad action 'Maybe'"),
        (
            {"exportV4": [{"action": "Accept", "peerType": "eBGP"}]},
            "spec.exportV4[0].peerType: not supported by bgpd",
        ),
        ({"exportV5": []}, "spec: unknown field 'exportV5'"),
    ],
)
def test_filter_errors(spec: Any, message: str) -> None:
    assert error("bgpfilters", "f", spec).startswith(f"{P}bgpfilters/f: {message}")


# ------------------------------------------------------------------------------------ records, load


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (f"{P}ippools/x", "{not json", "not JSON"),
        (f"{P}ippools/x", "[]", "expected an object, got a list"),
        (
            f"{P}ippools/x",
            json.dumps({"kind": "Node", "spec": {}}),
            "kind 'Node' under ippools/: expected 'IPPool'",
        ),
        (
            f"{P}ippools/x",
            json.dumps({"metadata": {"name": "y"}, "spec": {"cidr": "10.0.0.0/8"}}),
            "metadata.name 'y' is not the key's name 'x'",
        ),
        (f"{P}ippools/x", json.dumps({"spec": {"cidr": "10.0.0.0/8"}, "extra": 1}), "unknown field 'extra'"),
        (
            f"{P}ippools/x",
            json.dumps({"metadata": {"labels": {"a": 1}}, "spec": {}}),
            "metadata.labels: expected an object of strings",
        ),
        (f"{P}ippools/a/b", "{}", "not a key of bgpd's kinds"),
        ("/other/ippools/x", "{}", "not under the prefix"),
    ],
)
def test_record_level_errors(key: str, value: str, message: str) -> None:
    with pytest.raises(r.ResourceError, match="^" + __import__("re").escape(f"{key}: {message}")):
        r.parse(key, value)


def test_load_skips_the_invalid_keeps_the_rest_and_ignores_other_kinds() -> None:
    items = [
        record("ippools", "good", {"cidr": "10.244.0.0/16"}),
        record("ippools", "bad", {"cidr": "10.245.0.1/16"}),
        record("nodes", "h0", {"bgp": {"ipv4Address": "10.0.0.1/24"}}),
        (f"{P}felixconfigurations/default", "{}"),
        ("/calico/ipam/v2/assignment/ipv4/block/10.244.0.0-26", "{}"),
        (
            f"{P}bgpconfigurations/default",
            json.dumps({"spec": {"serviceExternalIPs": [{"cidr": "1.2.3.0/24"}]}}),
        ),
    ]
    res, problems = r.load(items)
    assert set(res.pools) == {"good"} and set(res.nodes) == {"h0"} and set(res.configurations) == {"default"}
    assert [str(p) for p in problems] == [
        f"{P}bgpconfigurations/default: spec.serviceExternalIPs: not used by bgpd (ignored)",
        f"{P}ippools/bad: spec.cidr: 10.245.0.1/16 has host bits set",
    ]
    assert [p.skipped for p in problems] == [False, True]


def test_load_takes_bytes_and_another_prefix() -> None:
    key, value = record("ippools", "good", {"cidr": "10.244.0.0/16"})
    other = "/registry/calico/"
    res, problems = r.load([(other + key[len(P) :], value.encode())], prefix=other)
    assert set(res.pools) == {"good"} and problems == ()


def test_an_encapsulation_mode_error_speaks_calicos_spelling() -> None:
    """A Calico user wrote `ipipMode`: the choices are named as Calico writes them."""
    spec = {"cidr": "10.0.0.0/16", "ipipMode": "Alway"}
    value = json.dumps(
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "x"}, "spec": spec}
    )
    (problem,) = r.load([(r.DEFAULT_PREFIX + "ippools/x", value)])[1]
    assert problem.message == (
        "spec.ipipMode: bad ipip mode 'Alway': one of Never, Always, CrossSubnet (did you mean 'Always'?)"
    )
