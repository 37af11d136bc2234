"""One node's Config from Calico's resources (`bgpd.datastore.derive`), compared with what
`bgpd.config.parse` gives for the equivalent YAML file: the mesh, per-node overrides, a route-reflector
topology built from selectors, eBGP peers, and invalid parts left out with their record's key."""

from __future__ import annotations

from typing import Any

import pytest

from bgpd import config
from bgpd.datastore import derive as d
from bgpd.datastore import resources as r
from tests.unit.calico_records import P, record


def node(name: str, ipv4: str | None, labels: dict[str, str] | None = None, **bgp: Any) -> tuple[str, str]:
    spec = {"bgp": {**({"ipv4Address": ipv4} if ipv4 else {}), **bgp}}
    return record("nodes", name, spec, labels)


def load(*items: tuple[str, str]) -> r.Resources:
    res, problems = r.load(items)
    assert problems == ()
    return res


def derived(res: r.Resources, name: str, **kw: Any) -> d.Derived:
    return d.derive(res, name, source="etcd", **kw)


def same(got: config.Config, yaml_text: str) -> None:
    """``got`` is what the YAML file gives, field by field (the dump shows any difference readably)."""
    expected = config.parse(yaml_text)
    assert config.dump(got) == config.dump(expected)
    assert got == expected


POOL = record(
    "ippools",
    "default-ipv4-ippool",
    {"cidr": "10.244.0.0/16", "ipipMode": "CrossSubnet", "natOutgoing": True},
)
MESH3 = (
    node("host0", "192.168.100.10/24"),
    node("host1", "192.168.100.11/24"),
    node("host2", "192.168.100.12/24"),
    POOL,
)


# -------------------------------------------------------------------------------------------- mesh


def test_mesh_of_three_nodes_is_the_yaml_mesh() -> None:
    res = load(*MESH3)
    out = derived(res, "host1")
    assert out.problems == ()
    same(
        out.config,
        """
node: {name: host1, address: 192.168.100.11/24, asn: 64512}
bgp:
  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.11, 192.168.100.12]}
pools: [{cidr: 10.244.0.0/16, ipip: cross-subnet}]
""",
    )
    sessions = {(str(s.address), s.passive) for s in out.config.sessions()}
    assert sessions == {("192.168.100.10", False), ("192.168.100.12", True)}


def test_mesh_disabled_and_the_cluster_asn_from_default() -> None:
    res = load(
        *MESH3, record("bgpconfigurations", "default", {"nodeToNodeMeshEnabled": False, "asNumber": 63400})
    )
    same(
        derived(res, "host0").config,
        "node: {name: host0, address: 192.168.100.10/24, asn: 63400}\n"
        "pools: [{cidr: 10.244.0.0/16, ipip: cross-subnet}]\n",
    )


def test_dual_stack_mesh_pairs_each_family_only_where_both_have_an_address() -> None:
    res = load(
        node("a", "10.0.0.1/24", ipv6Address="fd00::1/64"),
        node("b", "10.0.0.2/24", ipv6Address="fd00::2/64"),
        node("c", "10.0.0.3/24"),
    )
    same(
        derived(res, "a").config,
        "node: {name: a, address: 10.0.0.1/24, address6: 'fd00::1/64', asn: 64512}\n"
        "bgp:\n  mesh: {enabled: true, nodes: [10.0.0.1, 10.0.0.2, 10.0.0.3, 'fd00::1', 'fd00::2']}\n",
    )
    same(
        derived(res, "c").config,
        "node: {name: c, address: 10.0.0.3/24, asn: 64512}\n"
        "bgp:\n  mesh: {enabled: true, nodes: [10.0.0.1, 10.0.0.2, 10.0.0.3]}\n",
    )


def test_mesh_password_from_its_secret() -> None:
    res = load(
        *MESH3,
        record(
            "bgpconfigurations",
            "default",
            {"nodeMeshPassword": {"secretKeyRef": {"name": "bgp", "key": "mesh"}}},
        ),
    )
    secrets = {r.SecretRef("bgp", "mesh"): "s3cret"}
    out = derived(res, "host0", secrets=secrets.get)
    assert out.problems == ()
    assert out.config.bgp.mesh.password == "s3cret"
    missing = derived(res, "host0")
    assert missing.config.bgp.mesh.password is None
    assert [str(p) for p in missing.problems] == [
        f"{P}bgpconfigurations/default: password secret bgp/mesh not found: no password, as confd (ignored)"
    ]


# ---------------------------------------------------------------------------------- per-node override


def test_a_node_override_wins_over_default() -> None:
    """node.host1 sets its listen port and its own prefix advertisements (which replace the default's);
    host1's own Node sets its AS. Mesh peers with another port or AS become plain peers."""
    res = load(
        node("host0", "192.168.100.10/24"),
        node("host1", "192.168.100.11/24", asNumber=65011),
        node("host2", "192.168.100.12/24"),
        record(
            "bgpconfigurations",
            "default",
            {
                "asNumber": 64512,
                "listenPort": 179,
                "communities": [{"name": "cluster", "value": "64512:100"}],
                "prefixAdvertisements": [{"cidr": "10.244.0.0/16", "communities": ["cluster"]}],
            },
        ),
        record(
            "bgpconfigurations",
            "node.host1",
            {
                "listenPort": 1179,
                "communities": [{"name": "rack", "value": "64512:1:2"}],
                "prefixAdvertisements": [{"cidr": "10.244.1.0/24", "communities": ["rack", "64512:300"]}],
            },
        ),
        POOL,
    )
    same(
        derived(res, "host1").config,
        """
node: {name: host1, address: 192.168.100.11/24, asn: 65011}
bgp:
  port: 1179
  mesh: {enabled: true, nodes: [192.168.100.11]}
  peers:
    - {address: 192.168.100.10, asn: 64512, description: mesh host0}
    - {address: 192.168.100.12, asn: 64512, passive: true, description: mesh host2}
  communities: [{name: rack, value: '64512:1:2'}]
  prefix_advertisements: [{cidr: 10.244.1.0/24, communities: [rack, '64512:300']}]
pools: [{cidr: 10.244.0.0/16, ipip: cross-subnet}]
""",
    )
    same(
        derived(res, "host0").config,
        """
node: {name: host0, address: 192.168.100.10/24, asn: 64512}
bgp:
  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.12]}
  peers:
    - {address: 192.168.100.11, asn: 65011, port: 1179, passive: true, description: mesh host1}
  communities: [{name: cluster, value: '64512:100'}]
  prefix_advertisements: [{cidr: 10.244.0.0/16, communities: [cluster]}]
pools: [{cidr: 10.244.0.0/16, ipip: cross-subnet}]
""",
    )


# ------------------------------------------------------------------------------- route reflection

RR_TOPOLOGY = (
    node("rr0", "10.0.0.10/24", {"route-reflector": "true"}, routeReflectorClusterID="244.0.0.1"),
    node("rr1", "10.0.0.11/24", {"route-reflector": "true"}, routeReflectorClusterID="244.0.0.1"),
    node("c0", "10.0.0.1/24", {"rack": "a"}),
    node("c1", "10.0.0.2/24", {"rack": "a"}),
    node("c2", "10.0.0.3/24", {"rack": "b"}),
    node("lone", "10.0.0.4/24"),
    record("bgpconfigurations", "default", {"nodeToNodeMeshEnabled": False}),
    # Calico's "configure route reflectors" how-to: clients selected by label peer with the reflectors,
    # and the reflectors with each other
    record(
        "bgppeers",
        "peer-with-route-reflectors",
        {"nodeSelector": "has(rack)", "peerSelector": "route-reflector == 'true'"},
    ),
    record(
        "bgppeers",
        "rr-mesh",
        {"nodeSelector": "route-reflector == 'true'", "peerSelector": "route-reflector == 'true'"},
    ),
    POOL,
)


def test_route_reflector_clients_connect_to_both_reflectors() -> None:
    out = derived(load(*RR_TOPOLOGY), "c0")
    assert out.problems == ()
    same(
        out.config,
        """
node: {name: c0, address: 10.0.0.1/24, asn: 64512}
bgp:
  peers:
    - {address: 10.0.0.10, asn: 64512, description: peer-with-route-reflectors}
    - {address: 10.0.0.11, asn: 64512, description: peer-with-route-reflectors}
pools: [{cidr: 10.244.0.0/16, ipip: cross-subnet}]
""",
    )


def test_a_reflector_reflects_for_the_nodes_that_select_it() -> None:
    out = derived(load(*RR_TOPOLOGY), "rr0")
    assert out.problems == ()
    same(
        out.config,
        """
node: {name: rr0, address: 10.0.0.10/24, asn: 64512}
bgp:
  peers: [{address: 10.0.0.11, asn: 64512, passive: true, description: rr-mesh}]
reflector: {cluster_id: 244.0.0.1, clients: [10.0.0.1, 10.0.0.2, 10.0.0.3]}
pools: [{cidr: 10.244.0.0/16, ipip: cross-subnet}]
kernel: {install: true}   # a Calico node with a cluster id still installs what it learns
""",
    )
    local = {"kernel": {"install": False, "protocol": "bird"}}  # a dedicated reflector says so locally
    assert d.derive(load(*RR_TOPOLOGY), "rr0", local).config.kernel.install is False
    rr1 = derived(load(*RR_TOPOLOGY), "rr1").config
    assert [(str(p.address), p.passive) for p in rr1.bgp.peers] == [("10.0.0.10", False)]


def test_a_node_nobody_selects_has_no_session() -> None:
    cfg = derived(load(*RR_TOPOLOGY), "lone").config
    assert cfg.sessions() == ()


def test_with_the_mesh_on_reflectors_stay_out_of_it() -> None:
    items = [i for i in RR_TOPOLOGY if "bgpconfigurations" not in i[0]]
    res = load(*items)
    c0 = derived(res, "c0").config
    # the clients and the lone node mesh; the reflectors are in no mesh
    assert [str(a) for a in c0.bgp.mesh.nodes] == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert [str(p.address) for p in c0.bgp.peers] == ["10.0.0.10", "10.0.0.11"]
    rr0 = derived(res, "rr0").config
    assert not rr0.bgp.mesh.enabled and rr0.reflector is not None


def test_reflector_clients_use_the_selecting_peers_password() -> None:
    items = [i for i in RR_TOPOLOGY if "peer-with-route-reflectors" not in i[0]]
    items.append(
        record(
            "bgppeers",
            "peer-with-route-reflectors",
            {
                "nodeSelector": "has(rack)",
                "peerSelector": "route-reflector == 'true'",
                "password": {"secretKeyRef": {"name": "bgp", "key": "rr"}},
            },
        )
    )
    secrets = {r.SecretRef("bgp", "rr"): "rr-secret"}.get
    rr0 = derived(load(*items), "rr0", secrets=secrets).config
    assert rr0.reflector is not None and rr0.reflector.password == "rr-secret"
    c0 = derived(load(*items), "c0", secrets=secrets).config
    assert {p.password for p in c0.bgp.peers} == {"rr-secret"}


# ------------------------------------------------------------------------------------ BGPPeers


def test_a_peer_for_another_node_is_ignored_and_a_global_one_applies_everywhere() -> None:
    res = load(
        *MESH3,
        record("bgppeers", "host2-tor", {"node": "host2", "peerIP": "192.168.100.1", "asNumber": 65001}),
        record(
            "bgppeers",
            "rack-a-tor",
            {"nodeSelector": "rack == 'a'", "peerIP": "192.168.100.2", "asNumber": 65002},
        ),
        record(
            "bgppeers",
            "global-tor",
            {
                "peerIP": "192.168.100.254:1179",
                "asNumber": 65000,
                "keepOriginalNextHop": True,
                "keepaliveTime": "20s",
            },
        ),
    )
    same(
        derived(res, "host1").config,
        """
node: {name: host1, address: 192.168.100.11/24, asn: 64512}
bgp:
  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.11, 192.168.100.12]}
  peers:
    - {address: 192.168.100.254, asn: 65000, port: 1179, next_hop_mode: keep, keepalive_time: 20,
       description: global-tor}
pools: [{cidr: 10.244.0.0/16, ipip: cross-subnet}]
""",
    )
    host2 = derived(res, "host2").config
    assert [(str(p.address), p.description) for p in host2.bgp.peers] == [
        ("192.168.100.1", "host2-tor"),
        ("192.168.100.254", "global-tor"),
    ]


def test_an_ebgp_peer_with_every_setting_is_the_yaml_peer() -> None:
    res = load(
        *MESH3,
        record(
            "bgpfilters",
            "tor-in",
            {"importV4": [{"action": "Reject", "matchOperator": "NotIn", "cidr": "10.0.0.0/8"}]},
        ),
        record(
            "bgppeers",
            "tor",
            {
                "node": "host0",
                "peerIP": "192.168.100.1",
                "asNumber": 65001,
                "localASNumber": 64600,
                "numAllowedLocalASNumbers": 2,
                "nextHopMode": "Self",
                "ttlSecurity": 1,
                "keepaliveTime": "30s",
                "filters": ["tor-in"],
                "password": {"secretKeyRef": {"name": "bgp", "key": "tor"}},
            },
        ),
    )
    out = derived(res, "host0", secrets={r.SecretRef("bgp", "tor"): "tor-secret"}.get)
    assert out.problems == ()
    same(
        out.config,
        """
node: {name: host0, address: 192.168.100.10/24, asn: 64512}
bgp:
  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.11, 192.168.100.12]}
  peers:
    - {address: 192.168.100.1, asn: 65001, password: tor-secret, description: tor, local_asn: 64600,
       next_hop_mode: self, allow_local_as: 2, keepalive_time: 30, filters: [tor-in], ttl_security: 1}
filters:
  - {name: tor-in, import_v4: [{action: Reject, match_operator: NotIn, cidr: 10.0.0.0/8}]}
pools: [{cidr: 10.244.0.0/16, ipip: cross-subnet}]
""",
    )


def test_an_explicit_peer_to_a_mesh_node_replaces_the_mesh_session() -> None:
    res = load(
        *MESH3,
        record(
            "bgppeers",
            "to-host2",
            {"node": "host0", "peerIP": "192.168.100.12", "asNumber": 64512, "ttlSecurity": 1},
        ),
    )
    cfg = derived(res, "host0").config
    assert [str(a) for a in cfg.bgp.mesh.nodes] == ["192.168.100.10", "192.168.100.11"]
    assert [(str(p.address), p.ttl_security, p.passive) for p in cfg.bgp.peers] == [
        ("192.168.100.12", 1, True)
    ]


# ------------------------------------------------------------------------ invalid parts left out


def test_an_invalid_pool_is_skipped_with_its_key() -> None:
    items = [*MESH3, record("ippools", "broken", {"cidr": "10.245.0.1/16"})]
    res, problems = r.load(items)
    assert [str(p) for p in problems] == [f"{P}ippools/broken: spec.cidr: 10.245.0.1/16 has host bits set"]
    cfg = derived(res, "host0").config
    assert [str(p.cidr) for p in cfg.pools] == ["10.244.0.0/16"]


def test_parts_that_fail_together_are_left_out_with_their_key() -> None:
    res = load(
        *MESH3,
        record("ippools", "overlapping", {"cidr": "10.244.128.0/17"}),
        record(
            "bgppeers",
            "a-missing-filter",
            {"peerIP": "192.168.100.1", "asNumber": 65001, "filters": ["nope"]},
        ),
        record(
            "bgppeers",
            "keepalive-too-long",
            {"peerIP": "192.168.100.2", "asNumber": 65002, "keepaliveTime": "2m"},
        ),
        record("bgppeers", "ok", {"peerIP": "192.168.100.3", "asNumber": 65003}),
    )
    out = derived(res, "host0")
    assert [str(p.cidr) for p in out.config.pools] == ["10.244.0.0/16"]
    assert [str(p.address) for p in out.config.bgp.peers] == ["192.168.100.3"]
    assert [str(p) for p in out.problems] == [
        f"{P}bgppeers/a-missing-filter: bgp.peers[0].filters[0]: unknown filter 'nope' (top-level filters); "
        "left out",
        f"{P}bgppeers/keepalive-too-long: bgp.peers[0].keepalive_time: keepalive time 120 must be below "
        "the hold time 90; left out",
        f"{P}ippools/overlapping: pools[1].cidr: pool overlaps pools[0] 10.244.0.0/16; left out",
    ]
    # with a longer hold time from the local YAML the keepalive time is fine
    longer = derived(res, "host0", local={"bgp": {"hold_time": 240}})
    assert [str(p.address) for p in longer.config.bgp.peers] == ["192.168.100.2", "192.168.100.3"]


def test_two_peers_to_one_address_keep_the_first() -> None:
    res = load(
        *MESH3,
        record("bgppeers", "a", {"peerIP": "192.168.100.1", "asNumber": 65001}),
        record("bgppeers", "b", {"peerIP": "192.168.100.1:1179", "asNumber": 65001}),
    )
    out = derived(res, "host0")
    assert [(str(p.address), p.port) for p in out.config.bgp.peers] == [("192.168.100.1", 179)]
    assert [p.key for p in out.problems] == [f"{P}bgppeers/b"]


# ------------------------------------------------------------------------------ local sections


def test_local_sections_are_the_yamls() -> None:
    local = {
        "kernel": {"table": 100, "metric": 64},
        "runtime": {"dir": "/tmp/bgpd-x", "log_level": "debug"},
        "metrics": {"listen": "127.0.0.1:9179"},
        "bgp": {"hold_time": 30, "graceful_restart": 60},
    }
    cfg = derived(load(*MESH3), "host2", local=local).config
    same(
        cfg,
        """
node: {name: host2, address: 192.168.100.12/24, asn: 64512}
bgp:
  hold_time: 30
  graceful_restart: 60
  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.11, 192.168.100.12]}
pools: [{cidr: 10.244.0.0/16, ipip: cross-subnet}]
kernel: {table: 100, metric: 64}
runtime: {dir: /tmp/bgpd-x, log_level: debug}
metrics: {listen: "127.0.0.1:9179"}
""",
    )
    assert cfg.source == "etcd"


@pytest.mark.parametrize(
    ("name", "local", "message"),
    [
        ("nohost", None, "node 'nohost': no Node record with spec.bgp in the datastore"),
        ("v6only", None, "node 'v6only': its Node record has no spec.bgp.ipv4Address"),
        ("host0", {"kernel": {"tabel": 1}}, "etcd: kernel: unknown key 'tabel' (did you mean 'table'?)"),
        ("host0", {"pools": []}, "local section 'pools' is the cluster's"),
        ("host0", {"bgp": {"peers": []}}, "local key bgp.peers is the cluster's"),
    ],
)
def test_this_node_cannot_run(name: str, local: dict[str, Any] | None, message: str) -> None:
    res = load(*MESH3, node("v6only", None, ipv6Address="fd00::9/64"))
    with pytest.raises(d.DeriveError) as info:
        derived(res, name, local=local)
    assert str(info.value).startswith(message)
