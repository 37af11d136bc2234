"""What a lab driven by etcd writes: Calico's v3 records for its topology, and each host's bgpd config.

Records are written as Calico stores them in etcd v3: key `<prefix><plural>/<name>`, value the JSON of the
whole object (`apiVersion: projectcalico.org/v3`, `kind`, `metadata: {name}`, `spec`), with the fields
`bgpd.datastore.resources` reads:
- BGPConfiguration `default`: `asNumber` (the topology's `asn`), `nodeToNodeMeshEnabled: true`;
- one IPPool per pool, IPv4 ones first (`ipv4-pool-0`, ..., `ipv6-pool-0`, ...: bgpd takes pools in name
  order): `cidr`, `ipipMode` (Never, Always, CrossSubnet), `vxlanMode: Never`, `disableBGPExport: false`,
  `blockSize` (as Calico's IPAM has it; bgpd ignores it);
- one Node per host: `spec.bgp.ipv4Address` with the underlay's prefix length (192.168.100.10/24),
  `ipv6Address` with the IPv6 underlay's (fd00:100::10/64) in a dual-stack lab, and `ipv4IPIPTunnelAddr`
  when the lab gives the host a tunl0 (Felix's; bgpd ignores it). No `asNumber`: every node takes the
  default's.

Each host's config then holds only `node.name`, the `datastore` section and the sections that stay local
(`bgpd.datastore.derive.LOCAL_SECTIONS`, `bgp.hold_time`); the derived config equals the static lab's with
`node.address` written with its prefix length (tests/unit/test_lab_records.py). Reflector and ToR
topologies are not written (they would need BGPPeer records): `unsupported` says why.

No I/O: the records are (key, JSON text) pairs; `bgpd.lab.etcd.apply` writes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bgpd.datastore import resources
from bgpd.lab.topology import LabHost, Topology

DEFAULT_PREFIX = resources.DEFAULT_PREFIX  # Calico's: /calico/resources/v3/projectcalico.org/
API_VERSION = "projectcalico.org/v3"
DATASTORE_TYPE = "etcdv3"
CALICO_MODES = {"never": "Never", "always": "Always", "cross-subnet": "CrossSubnet"}  # Calico's ipipMode
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}  # Calico's IPAM block sizes, when the topology gives no block
Record = tuple[str, str]  # (key, JSON value)


def unsupported(topo: Topology) -> str | None:
    """Why this topology cannot be driven by etcd, or None when it can (hosts in a mesh)."""
    if topo.reflectors:
        return "a lab with route reflectors cannot be driven by etcd yet (it would need BGPPeer records)"
    if topo.tor is not None:
        return "a ToR lab cannot be driven by etcd yet (its hosts' peers would need BGPPeer records)"
    return None


def key(plural: str, name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """`<prefix><plural>/<name>`, as Calico's etcd v3 backend stores a resource."""
    return f"{prefix}{plural}/{name}"


def _record(plural: str, kind: str, name: str, spec: dict[str, Any], prefix: str) -> Record:
    obj = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
    return key(plural, name, prefix), json.dumps(obj, sort_keys=True)


def configuration(topo: Topology, prefix: str = DEFAULT_PREFIX) -> Record:
    """BGPConfiguration `default`: the cluster's AS number and the node-to-node mesh."""
    spec = {"asNumber": topo.asn, "nodeToNodeMeshEnabled": True}
    return _record("bgpconfigurations", "BGPConfiguration", "default", spec, prefix)


def pools(topo: Topology, prefix: str = DEFAULT_PREFIX) -> list[Record]:
    """One IPPool per pool, IPv4 first, named so that name order is the topology's order."""
    v4 = [b.prefixlen for h in topo.hosts for b in h.blocks]
    v6 = [b.prefixlen for h in topo.hosts for b in h.blocks6]
    out = []
    for i, (pool, mode) in enumerate(zip(topo.pools, topo.modes, strict=True)):
        spec = _pool_spec(str(pool), CALICO_MODES[mode], v4[0] if v4 else DEFAULT_BLOCK_SIZE[4])
        out.append(_record("ippools", "IPPool", f"ipv4-pool-{i}", spec, prefix))
    for i, pool6 in enumerate(topo.pools6):
        spec = _pool_spec(str(pool6), "Never", v6[0] if v6 else DEFAULT_BLOCK_SIZE[6])
        out.append(_record("ippools", "IPPool", f"ipv6-pool-{i}", spec, prefix))
    return out


def _pool_spec(cidr: str, ipip: str, block_size: int) -> dict[str, Any]:
    return {
        "cidr": cidr,
        "ipipMode": ipip,
        "vxlanMode": "Never",
        "disableBGPExport": False,
        "blockSize": block_size,
    }


def node(topo: Topology, host: LabHost, prefix: str = DEFAULT_PREFIX) -> Record:
    """The host's Node record: its underlay addresses with their prefix lengths."""
    bgp: dict[str, Any] = {"ipv4Address": f"{host.address}/{topo.underlay_of(host).prefixlen}"}
    if host.address6 is not None and topo.underlay6 is not None:
        bgp["ipv6Address"] = f"{host.address6}/{topo.underlay6.prefixlen}"
    if host.tunnel_address is not None and topo.tunnels:
        bgp["ipv4IPIPTunnelAddr"] = str(host.tunnel_address)
    return _record("nodes", "Node", host.name, {"bgp": bgp}, prefix)


def cluster(topo: Topology, prefix: str = DEFAULT_PREFIX) -> list[Record]:
    """Every record of the lab: the BGPConfiguration, the pools, then one Node per host."""
    return [configuration(topo, prefix), *pools(topo, prefix), *(node(topo, h, prefix) for h in topo.hosts)]


def host_config(
    host: LabHost, endpoint: str, runtime_dir: Path, metrics: str, prefix: str = DEFAULT_PREFIX
) -> dict[str, Any]:
    """A host's bgpd config in datastore mode: `node.name`, the `datastore` section (one endpoint) and the
    local sections; the rest comes from the records."""
    return {
        "node": {"name": host.name},
        "datastore": {"type": DATASTORE_TYPE, "endpoints": [endpoint], "prefix": prefix},
        "bgp": {"hold_time": 9},
        "export": {"protocols": ["boot", 80], "interfaces": ["cali*"]},
        "kernel": {"protocol": "bird", "table": "main"},
        "runtime": {"dir": str(runtime_dir), "log_level": "info"},
        "metrics": {"listen": metrics},
    }
