"""The records a lab driven by etcd writes (`bgpd.lab.records`), read back as bgpd reads them
(`bgpd.datastore.resources.load` + `bgpd.datastore.derive.derive`): each host's derived config equals the
static lab's config for it (with `node.address` written with its prefix length), so the lab behaves the
same in both modes. And the hosts that `add-host` plans (`bgpd.lab.cluster`) fit the topology."""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from bgpd import config
from bgpd.datastore import derive, resources
from bgpd.lab import cluster, records
from bgpd.lab.lab import config_text
from bgpd.lab.topology import LabHost, Topology, TopologyError, load, parse, with_hosts

TOPOLOGIES = Path(__file__).resolve().parents[2] / "bgpd" / "lab" / "topologies"
MESH = ["lab", "lab4", "lab-etcd", "lab-cross-subnet"]
RUNTIME = Path("/run/bgpd-lab/t/host")
LOCAL = records.host_config(LabHost("x", IPv4Address("192.0.2.1")), "", RUNTIME, "127.0.0.1:9179")


def derived_config(topo: Topology, host: LabHost) -> config.Config:
    res, problems = resources.load(records.cluster(topo))
    assert problems == ()
    local = {k: v for k, v in LOCAL.items() if k not in ("node", "datastore")}
    out = derive.derive(res, host.name, local)
    assert out.problems == ()
    return out.config


def static_config(topo: Topology, host: LabHost) -> config.Config:
    """The static lab's config for `host`, its mesh in the derivation's order (by family, then address:
    the same sessions; the static file lists them in the topology's order)."""
    cfg = config.parse(config_text(topo, host, RUNTIME, with_subnet=True))
    nodes = tuple(sorted(cfg.bgp.mesh.nodes, key=lambda a: (a.version, int(a))))
    return replace(cfg, bgp=replace(cfg.bgp, mesh=replace(cfg.bgp.mesh, nodes=nodes)))


@pytest.mark.parametrize("name", MESH)
def test_each_hosts_derived_config_is_the_static_labs(name: str) -> None:
    topo = load(TOPOLOGIES / f"{name}.yaml")
    for host in topo.hosts:
        got, want = derived_config(topo, host), static_config(topo, host)
        if topo.ipv6:  # the one difference: the Node record carries the IPv6 length (read, unused)
            assert got.node.prefix_length6 == 64
            got = replace(got, node=replace(got.node, prefix_length6=None))
        assert config.dump(got) == config.dump(want)
        assert got == want


def test_the_records_are_calicos_objects_under_calicos_keys() -> None:
    topo = load(TOPOLOGIES / "lab-etcd.yaml")
    written = dict(records.cluster(topo))
    prefix = "/calico/resources/v3/projectcalico.org/"
    assert sorted(written) == [
        f"{prefix}bgpconfigurations/default",
        f"{prefix}ippools/ipv4-pool-0",
        f"{prefix}ippools/ipv6-pool-0",
        f"{prefix}nodes/host0",
        f"{prefix}nodes/host1",
        f"{prefix}nodes/host2",
    ]
    node = json.loads(written[f"{prefix}nodes/host1"])
    assert node == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": "host1"},
        "spec": {"bgp": {"ipv4Address": "192.168.100.11/24", "ipv6Address": "fd00:100::11/64"}},
    }
    pool = json.loads(written[f"{prefix}ippools/ipv4-pool-0"])
    assert pool["kind"] == "IPPool"
    assert pool["spec"] == {
        "cidr": "10.20.0.0/16",
        "ipipMode": "Never",
        "vxlanMode": "Never",
        "disableBGPExport": False,
        "blockSize": 26,
    }
    assert json.loads(written[f"{prefix}bgpconfigurations/default"])["spec"] == {
        "asNumber": 64512,
        "nodeToNodeMeshEnabled": True,
    }


def test_a_tunnelling_pool_is_written_in_calicos_spelling() -> None:
    text = (TOPOLOGIES / "lab-cross-subnet.yaml").read_text().replace("ipip: never", "ipip: cross-subnet")
    topo = parse(text)
    pool = json.loads(records.pools(topo)[0][1])
    assert pool["spec"]["ipipMode"] == "CrossSubnet"
    node = json.loads(records.node(topo, topo.hosts[0])[1])
    assert node["spec"]["bgp"] == {"ipv4Address": "192.168.100.10/24", "ipv4IPIPTunnelAddr": "10.20.1.0"}
    host = topo.hosts[0]
    assert derived_config(topo, host) == static_config(topo, host)


def test_the_host_config_holds_only_the_name_the_datastore_and_the_local_sections() -> None:
    host = LabHost("host0", IPv4Address("192.168.100.10"))
    cfg = records.host_config(host, "http://192.168.100.2:2379", RUNTIME, "127.0.0.1:9179")
    assert cfg["node"] == {"name": "host0"}
    assert cfg["datastore"] == {
        "type": "etcdv3",
        "endpoints": ["http://192.168.100.2:2379"],
        "prefix": "/calico/resources/v3/projectcalico.org/",
    }
    assert set(cfg) - {"node", "datastore"} <= {"bgp", *derive.LOCAL_SECTIONS}
    assert set(cfg["bgp"]) <= set(derive.LOCAL_BGP_KEYS)


def test_reflector_and_tor_topologies_are_refused_with_a_reason() -> None:
    assert records.unsupported(load(TOPOLOGIES / "lab-rr.yaml")) is not None
    assert records.unsupported(load(TOPOLOGIES / "lab-tor.yaml")) is not None
    assert records.unsupported(load(TOPOLOGIES / "lab-etcd.yaml")) is None


# ------------------------------------------------------------------ add-host's plan


def test_a_new_host_gets_the_next_free_address_block_and_workloads() -> None:
    topo = load(TOPOLOGIES / "lab-etcd.yaml")
    new = cluster.plan_host(topo, "host3", workloads=2, reserved=[IPv4Address("192.168.100.2")])
    assert new.address == IPv4Address("192.168.100.13")
    assert new.blocks == (IPv4Network("10.20.1.192/26"),)
    assert new.workloads == (IPv4Address("10.20.1.194"), IPv4Address("10.20.1.195"))
    grown = with_hosts(topo, [new], set())
    host3 = grown.host("host3")
    assert str(host3.address6) == "fd00:100::13"
    assert [str(b) for b in host3.blocks6] == ["fd00:10:20:1::c0/122"]
    assert [str(w) for w in host3.workloads6] == ["fd00:10:20:1::c2", "fd00:10:20:1::c3"]
    assert grown.hosts[:3] == topo.hosts  # the others are unchanged
    # and its records derive the same config as the static lab's
    assert derived_config(grown, host3) == replace(
        static_config(grown, host3), node=replace(static_config(grown, host3).node, prefix_length6=64)
    )
    shrunk = with_hosts(grown, [], {"host3"})
    assert shrunk.hosts == topo.hosts


def test_the_default_lab_grows_past_its_highest_address_and_block() -> None:
    topo = load(TOPOLOGIES / "lab.yaml")  # host0 .10 with 10.20.1.0/24, host1 .3 with 10.20.2.0/24
    new = cluster.plan_host(topo, "host2", workloads=1, reserved=[IPv4Address("192.168.100.2")])
    assert (new.address, new.blocks, new.workloads) == (
        IPv4Address("192.168.100.11"),
        (IPv4Network("10.20.3.0/24"),),
        (IPv4Address("10.20.3.2"),),
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("host1", "host1 is a host of the lab already"),
        ("Host9", "1-10 lower-case letters or digits"),
        ("etcd", "the name of one of the lab's own namespaces"),
        ("sw", "the name of one of the lab's own namespaces"),
    ],
)
def test_a_bad_new_name_is_refused(name: str, message: str) -> None:
    topo = load(TOPOLOGIES / "lab-etcd.yaml")
    with pytest.raises(cluster.ClusterError, match=message):
        cluster.plan_host(topo, name, workloads=1, reserved=[])


def test_a_full_underlay_or_pool_is_refused() -> None:
    text = """
name: tiny
underlay: 192.168.100.0/29
pools: [10.20.1.0/25]
hosts:
  - {name: a, address: 192.168.100.2, blocks: [10.20.1.0/26], workloads: [10.20.1.2]}
  - {name: b, address: 192.168.100.3, blocks: [10.20.1.64/26], workloads: [10.20.1.66]}
"""
    topo = parse(text)
    with pytest.raises(cluster.ClusterError, match="no free block of /26 left in the pools"):
        cluster.plan_host(topo, "c", workloads=1, reserved=[IPv4Address("192.168.100.4")])
    reserved = [IPv4Address(f"192.168.100.{i}") for i in (4, 5, 6)]
    with pytest.raises(cluster.ClusterError, match="no free address left in the underlay"):
        cluster.plan_host(topo, "c", workloads=1, reserved=reserved)
    with pytest.raises(cluster.ClusterError, match="1 to 62 workloads"):
        cluster.plan_host(load(TOPOLOGIES / "lab-etcd.yaml"), "c", workloads=0, reserved=[])


def test_with_hosts_keeps_an_ipv4_only_topology_ipv4_only() -> None:
    topo = parse((TOPOLOGIES / "lab.yaml").read_text() + "ipv6: false\n")
    new = cluster.plan_host(topo, "host2", workloads=1, reserved=[])
    grown = with_hosts(topo, [new], set())
    assert grown.host("host2").address6 is None and grown.host("host2").workloads6 == ()


def test_the_topologys_datastore_key() -> None:
    assert load(TOPOLOGIES / "lab-etcd.yaml").datastore == "etcd"
    assert load(TOPOLOGIES / "lab.yaml").datastore is None
    with pytest.raises(TopologyError, match=r"<string>:2: datastore: bad datastore 'consul'"):
        parse("name: x\ndatastore: consul\nhosts: []\n")
    with pytest.raises(TopologyError, match="the name of one of the lab's own namespaces"):
        parse("hosts:\n  - {name: etcd, address: 192.168.100.10}\n  - {name: b, address: 192.168.100.11}\n")


# ------------------------------------------------------------------ the flap check of add-host / remove-host


def test_resets_names_every_session_reset_or_gone_and_nothing_else() -> None:
    before = {
        ("host0", "192.168.100.11"): (100.0, 0),
        ("host0", "fd00:100::11"): (100.5, 2),
        ("host1", "x"): (1.0, 0),
    }
    assert cluster.resets(before, dict(before)) == []
    after = {
        ("host0", "192.168.100.11"): (130.0, 1),  # flapped and came back: a new `since`
        ("host0", "fd00:100::11"): (100.5, 2),  # kept
        ("host0", "192.168.100.13"): (131.0, 0),  # a new session (the added host's): not checked
    }
    assert cluster.resets(before, after) == [
        "host0's session to 192.168.100.11 was reset (flaps 0 -> 1)",
        "host1's session to x is no longer Established",
    ]
