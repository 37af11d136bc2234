"""The lab's topology file: hosts on one underlay segment, their address blocks and their workloads.

```yaml
name: lab                       # namespaces are named bgpd<name>-...; state under /run/bgpd-lab/<name>
underlay: 192.168.100.0/24
asn: 64512
pools: [10.20.0.0/16]
hosts:
  - {name: host0, address: 192.168.100.10, blocks: [10.20.1.0/24], workloads: [10.20.1.2]}
  - {name: host1, address: 192.168.100.3, blocks: [10.20.2.0/24], workloads: [10.20.2.2, 10.20.1.3]}
reflectors:                     # optional: route reflectors replace the full mesh
  - {name: rr1, address: 192.168.100.2}
cluster_id: 1.0.0.1             # optional, default 1.0.0.1
ipv6: true                      # optional, default true: dual stack; false: an IPv4-only lab
datastore: etcd                 # optional, default none: `up` drives the lab by etcd (bgpd.lab.cluster)
```

Two more forms, for the cross-subnet lab (`configs/lab-cross-subnet.yaml`, issue 12):
- `underlay` may list several subnets, one per rack (an L2 segment each): `[192.168.100.0/24,
  192.168.200.0/24]`. A host belongs to the rack whose subnet holds its address; a router joins the racks
  (the first address of each subnet is its leg there, the hosts' default route) and knows nothing of the
  workloads. Such a lab is IPv4 only (`ipv6: false`): Calico has no IP-in-IP for IPv6.
- a pool may be a mapping with Calico's `ipipMode`: `pools: [{cidr: 10.20.0.0/16, ipip: cross-subnet}]`
  (never | always | cross-subnet; Calico's Never | Always | CrossSubnet too). The plain string form is a
  pool without the key (the daemon's default, never). With a mode other than never the lab plays Felix's
  part: each host gets `tunl0` with its tunnel address, the first address of its first block that no
  workload uses (as Calico's IPAM hands out the block's first free address), so every host needs a block.

The file is written in IPv4; the lab is dual stack, and its IPv6 plan is derived from the IPv4 one so
that every IPv6 address reads like its IPv4 twin:
- the underlay 192.168.100.0/24 gets fd00:100::/64 beside it (`fd00:<third octet>::/64`), and a node
  192.168.100.N gets fd00:100::N (the same digits: 192.168.100.10 -> fd00:100::10);
- a pool 10.20.0.0/16 becomes fd00:10:20::/48 (`fd00:<o1>:<o2>::/48`, pools shorter than /16 give
  `fd00:<o1>::/32`);
- a workload 10.20.1.2 gets fd00:10:20:1::2 as its /128 (`fd00:<o1>:<o2>:<o3>::<o4>`, the first three
  octets with the same digits, the last one by value: 10.20.1.66 -> fd00:10:20:1::42);
- IPv6 blocks are /122 as Calico's: a host's IPv4 block maps to the /122s that hold its twins' workload
  addresses (the first /122 of the block when it has none), so a /26 block is exactly one /122, a /24
  block with workloads .2 and .3 is fd00:10:20:1::/122, and a workload borrowed from another host's IPv4
  block is borrowed from that host's IPv6 block too.
A topology whose IPv6 blocks would not mirror its IPv4 ones (blocks longer than /26 sharing a /122) is an
error that says so; `ipv6: false` runs it IPv4-only.

Top of rack (`configs/lab-tor.yaml`, issue 13): a `tor` mapping makes each rack's router a BGP router in
its own AS (BIRD 2, configured and started by the lab, `bgpd.lab.tor`); the hosts peer over eBGP with their
rack's router only (no mesh, no reflector, no tunnel) and the routers peer over eBGP with each other on a
transit segment:

```yaml
tor:
  asns: [65001, 65002]          # rack k's router, in `underlay` order; each differs from `asn` (the hosts')
  allow_local_as: 1             # each host's peer: Calico's numAllowedLocalASNumbers (default 0)
  transit: 192.168.255.0/24     # optional, the default: the routers' segment, router k at .k+1
```
Such a lab is IPv4 only (`ipv6: false`), its pools do not tunnel (`ipip` never), and its nodes may not be
named `torN` or `swt` (the routers' and the transit switch's namespaces).

Errors name the file, the line and the key, like the daemon's config errors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import yaml

from bgpd.config import ENCAP_MODES
from bgpd.spelling import did_you_mean, spelled

DEFAULT_CLUSTER_ID = IPv4Address("1.0.0.1")
IPIP_MODES = ENCAP_MODES  # Calico's ipipMode, as bgpd's config spells it
SWITCH, ROUTER = "sw", "rt"  # the lab's own namespaces: sw (one segment) or sw0, sw1... and rt (racks)
ETCD = "etcd"  # the namespace of the etcd of a lab driven by etcd (`bgpd.lab.cluster`)
DATASTORES = ("none", "etcd")  # `datastore`: none, the lab writes each host's config; etcd, the records
TOR, TRANSIT_SWITCH = "tor", "swt"  # a ToR lab's routers (tor0, tor1...) and the switch of their segment
DEFAULT_TRANSIT = IPv4Network("192.168.255.0/24")
ASN_MAX = 4294967295
ALLOW_LOCAL_AS_MAX = 255  # as bgpd's peers[].allow_local_as
NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
BLOCK6_PREFIXLEN = 122  # Calico's IPv6 block size
UNDERLAY6_PREFIXLEN = 64

Network = IPv4Network | IPv6Network


def underlay6_of(underlay: IPv4Network) -> IPv6Network:
    """The IPv6 segment beside an IPv4 underlay: 192.168.100.0/24 -> fd00:100::/64."""
    return IPv6Network(f"fd00:{underlay.network_address.packed[2]}::/{UNDERLAY6_PREFIXLEN}")


def node_address6(underlay: IPv4Network, address: IPv4Address) -> IPv6Address:
    """A node's IPv6 underlay address, its host number written with the same digits:
    192.168.100.10 in 192.168.100.0/24 -> fd00:100::10."""
    number = int(address) - int(underlay.network_address)
    return underlay6_of(underlay).network_address + int(str(number), 16)


def pool6_of(pool: IPv4Network) -> IPv6Network:
    """The IPv6 pool beside an IPv4 pool: 10.20.0.0/16 (or any pool inside 10.20/16) -> fd00:10:20::/48;
    a pool shorter than /16 -> fd00:<o1>::/32."""
    o1, o2 = pool.network_address.packed[:2]
    return IPv6Network(f"fd00:{o1}:{o2}::/48" if pool.prefixlen >= 16 else f"fd00:{o1}::/32")


def twin6(address: IPv4Address) -> IPv6Address:
    """A workload's IPv6 address: 10.20.1.2 -> fd00:10:20:1::2, 10.20.1.66 -> fd00:10:20:1::42."""
    o1, o2, o3, o4 = address.packed
    return IPv6Address(f"fd00:{o1}:{o2}:{o3}::{o4:x}")


def block6_of(address: IPv6Address) -> IPv6Network:
    """The /122 that holds an IPv6 address."""
    return IPv6Network(f"{address}/{BLOCK6_PREFIXLEN}", strict=False)


class TopologyError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class LabHost:
    name: str
    address: IPv4Address
    blocks: tuple[IPv4Network, ...] = ()
    workloads: tuple[IPv4Address, ...] = ()
    reflector: bool = False  # a route reflector node: no workloads, not in the forwarding path
    address6: IPv6Address | None = None  # None in an IPv4-only lab
    blocks6: tuple[IPv6Network, ...] = ()
    workloads6: tuple[IPv6Address, ...] = ()  # workloads6[i] is the IPv6 address of workloads[i]
    rack: int = 0  # index of its underlay in `Topology.underlays`
    tunnel_address: IPv4Address | None = None  # tunl0's /32 when the lab tunnels: see the module's docstring

    def exported(self) -> set[Network]:
        """What this host announces, both families: its blocks, and its workloads outside them (borrowed
        addresses, as /32 and /128)."""
        out: set[Network] = {*self.blocks, *self.blocks6}
        for w in self.workloads:
            if not any(w in b for b in self.blocks):
                out.add(IPv4Network(f"{w}/32"))
        for w6 in self.workloads6:
            if not any(w6 in b for b in self.blocks6):
                out.add(IPv6Network(f"{w6}/128"))
        return out

    def addresses(self, family: int) -> tuple[IPv4Address | IPv6Address, ...]:
        """The node's underlay address in that family (none for IPv6 in an IPv4-only lab)."""
        if family == 4:
            return (self.address,)
        return (self.address6,) if self.address6 is not None else ()


@dataclass(frozen=True, slots=True)
class TorPlan:
    """The racks' BGP routers of a ToR lab (the `tor` key): router k serves rack k (its leg there is the
    rack's first address, the hosts' peer and default route) and has address k+1 on the transit segment."""

    asns: tuple[int, ...]  # asns[k]: rack k's router
    allow_local_as: int = 0  # written into each host's peer (Calico's numAllowedLocalASNumbers)
    transit: IPv4Network = DEFAULT_TRANSIT

    def name(self, rack: int) -> str:
        return f"{TOR}{rack}"

    def transit_address(self, rack: int) -> IPv4Address:
        return self.transit.network_address + 1 + rack

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.name(k) for k in range(len(self.asns)))


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    underlay: IPv4Network
    asn: int
    pools: tuple[IPv4Network, ...]
    hosts: tuple[LabHost, ...]
    reflectors: tuple[LabHost, ...] = ()
    cluster_id: IPv4Address = DEFAULT_CLUSTER_ID
    source: str = "<string>"
    ipv6: bool = True
    underlay6: IPv6Network | None = None
    pools6: tuple[IPv6Network, ...] = ()
    underlays: tuple[IPv4Network, ...] = ()  # every rack's subnet, `underlay` first; () = (underlay,)
    ipip: tuple[str | None, ...] = ()  # ipip[i]: pools[i]'s mode as written, None if not written
    # a ToR lab's routers (None: the racks are joined by a plain router, or there is one segment); not in
    # repr, so the other topologies' shape digests stay as they were
    tor: TorPlan | None = field(default=None, repr=False)
    # `datastore: etcd`: `up` drives the lab by etcd (issue 15) unless told otherwise; not in repr either
    datastore: str | None = field(default=None, repr=False)

    @property
    def racks(self) -> tuple[IPv4Network, ...]:
        """The underlay subnets, one per rack (one for a single-segment lab)."""
        return self.underlays or (self.underlay,)

    @property
    def routed(self) -> bool:
        """Several racks joined by a router (a namespace of its own) instead of one segment."""
        return len(self.racks) > 1

    def underlay_of(self, node: LabHost) -> IPv4Network:
        return self.racks[node.rack]

    def gateway_of(self, node: LabHost) -> IPv4Address:
        """The router's address on the node's segment (its first address): the node's default route."""
        return self.underlay_of(node).network_address + 1

    def ipip_mode(self, prefix: Network) -> str:
        """The ipip mode of the pool that holds `prefix` (the longest, as bgpd decides), "never" for an IPv6
        prefix or one outside every pool."""
        if prefix.version != 4:
            return "never"
        best: tuple[int, str] | None = None
        for pool, mode in zip(self.pools, self.modes, strict=True):
            if prefix.subnet_of(pool) and (best is None or pool.prefixlen > best[0]):
                best = (pool.prefixlen, mode)
        return best[1] if best else "never"

    @property
    def modes(self) -> tuple[str, ...]:
        """Each pool's ipip mode ("never" where none is written)."""
        return tuple(m or "never" for m in self.ipip) if self.ipip else ("never",) * len(self.pools)

    @property
    def tunnels(self) -> bool:
        """Does some pool use IP-in-IP (so the lab gives every host Felix's tunl0)?"""
        return any(m != "never" for m in self.modes)

    @property
    def writes_subnet(self) -> bool:
        """Do the bgpd configs carry `node.address` with its prefix length (the subnet that decides
        cross-subnet)? When the topology says anything about ipip, or has racks; else the configs are the
        same as before issue 12."""
        return self.routed or any(m is not None for m in self.ipip)

    def tunnelled(self, node: LabHost, next_hop: LabHost, prefix: Network) -> bool:
        """Does `node` reach `prefix` (announced by `next_hop`) through tunl0? As Calico: always, or
        cross-subnet with the next hop outside the node's subnet."""
        mode = self.ipip_mode(prefix)
        if mode == "always":
            return True
        return mode == "cross-subnet" and next_hop.address not in self.underlay_of(node)

    def shape(self) -> str:
        """Everything but the pools' ipip modes and the file's name: what a `bgpd lab reload` may not
        change (a digest, kept in the lab's state file)."""
        plain = replace(self, ipip=(), source="")
        text = repr(plain) + (repr(self.tor) if self.tor is not None else "")
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def families(self) -> tuple[int, ...]:
        """(4, 6) for a dual-stack lab, (4,) for an IPv4-only one."""
        return (4, 6) if self.ipv6 else (4,)

    @property
    def nodes(self) -> tuple[LabHost, ...]:
        """Every node that runs bgpd: the hosts, then the reflectors."""
        return (*self.hosts, *self.reflectors)

    @property
    def gateway(self) -> IPv4Address:
        """The underlay's router address (the first address of the segment), owned by the switch (in a lab
        with racks, the first rack's; `gateway_of` gives a node's)."""
        return self.underlay.network_address + 1

    @property
    def prefix(self) -> str:
        return f"bgpd{self.name}-"

    def host(self, name: str) -> LabHost:
        for h in self.nodes:
            if h.name == name:
                return h
        raise KeyError(name)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping["__line__"] = node.start_mark.line + 1
    mapping["__lines__"] = {str(key.value): key.start_mark.line + 1 for key, _ in node.value}  # per key
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(path: str | Path) -> Topology:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"{path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise TopologyError(f"{path}: not a topology file (not UTF-8 text)") from None
    return parse(text, str(path))


def parse(text: str, source: str = "<string>") -> Topology:
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:  # as the daemon's config says it: where, and what YAML found
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = ", ".join(" ".join(str(p).split()) for p in (exc.context, exc.problem) if p)
        raise TopologyError(f"{source}:{line}: invalid YAML: {what}") from None
    except (yaml.YAMLError, TypeError) as exc:  # TypeError: a key YAML cannot hash (`[1]: 2`)
        raise TopologyError(f"{source}:1: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise TopologyError(f"{source}:1: a topology is a mapping")

    def fail(where: dict[str, Any], key: str, message: str) -> TopologyError:
        last = key.rpartition(".")[2]  # the key's own line when it is a key of `where`
        line = where.get("__lines__", {}).get(last, where.get("__line__", 1))
        return TopologyError(f"{source}:{line}: {key}: {message}")

    def get(where: dict[str, Any], key: str, path: str, kind: type, default: Any = None) -> Any:
        if key not in where:
            if default is None:
                raise fail(where, path, "required key missing")
            return default
        value = where[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise fail(where, path, f"expected {kind.__name__}")
        return value

    def convert(where: dict[str, Any], path: str, fn: Any, value: Any) -> Any:
        try:
            return fn(str(value))
        except ValueError as exc:
            raise fail(where, path, str(exc)) from exc

    known = {
        "name",
        "underlay",
        "asn",
        "pools",
        "hosts",
        "reflectors",
        "cluster_id",
        "ipv6",
        "tor",
        "datastore",
        "__line__",
        "__lines__",
    }
    for key in raw:
        if key not in known:
            hint = did_you_mean(str(key), sorted(known - {"__line__", "__lines__"}))
            raise fail(raw, str(key), f"unknown key{hint}")
    name = get(raw, "name", "name", str, "lab")
    if not NAME.match(name):
        raise fail(raw, "name", "1-10 lower-case letters or digits, starting with a letter")
    underlays = _underlays(raw, fail, convert)
    underlay = underlays[0]
    asn = get(raw, "asn", "asn", int, 64512)
    if not 1 <= asn <= ASN_MAX:
        raise fail(raw, "asn", f"expected an AS number 1..{ASN_MAX}")
    pools, ipip = _pools(raw, fail, get, convert)
    reserved = _reserved_names(len(underlays), tor="tor" in raw) | {ETCD}
    datastore = get(raw, "datastore", "datastore", str, "none")
    if datastore not in DATASTORES:
        raise fail(raw, "datastore", f"bad datastore {datastore!r}: one of {', '.join(DATASTORES)}")

    def rack_of(where: dict[str, Any], path: str, address: IPv4Address) -> int:
        """The rack whose subnet holds `address` as a host address other than the router's."""
        for rack, net in enumerate(underlays):
            if address in net and address not in (net.network_address, net.broadcast_address):
                if address == net.network_address + 1:
                    raise fail(where, path, f"{address} is the underlay's router (its first address)")
                return rack
        what = f"the underlay {underlay}" if len(underlays) == 1 else "any underlay"
        raise fail(where, path, f"{address} is not a host address of {what}")

    def node_name(where: dict[str, Any], path: str) -> str:
        value: str = get(where, "name", path, str)
        if not NAME.match(value):
            raise fail(where, path, "1-10 lower-case letters or digits, starting with a letter")
        if value in reserved:
            raise fail(where, path, f"{value!r} is the name of one of the lab's own namespaces")
        return value

    hosts: list[LabHost] = []
    for i, h in enumerate(get(raw, "hosts", "hosts", list)):
        path = f"hosts[{i}]"
        if not isinstance(h, dict):
            raise fail(raw, path, "expected a mapping")
        for key in h:
            host_keys = ("name", "address", "blocks", "workloads")
            if key not in {*host_keys, "__line__", "__lines__"}:
                raise fail(h, f"{path}.{key}", f"unknown key{did_you_mean(str(key), host_keys)}")
        hname = node_name(h, f"{path}.name")
        address = convert(h, f"{path}.address", IPv4Address, get(h, "address", f"{path}.address", str))
        rack = rack_of(h, f"{path}.address", address)
        blocks = tuple(
            convert(h, f"{path}.blocks", IPv4Network, b) for b in get(h, "blocks", f"{path}.blocks", list, [])
        )
        workloads = tuple(
            convert(h, f"{path}.workloads", IPv4Address, w)
            for w in get(h, "workloads", f"{path}.workloads", list, [])
        )
        for net in (*blocks, *(IPv4Network(f"{w}/32") for w in workloads)):
            if not any(net.subnet_of(p) for p in pools):
                raise fail(h, path, f"{net} is outside every pool")
        hosts.append(LabHost(hname, address, blocks, workloads, rack=rack))
    reflectors: list[LabHost] = []
    for i, r in enumerate(get(raw, "reflectors", "reflectors", list, [])):
        path = f"reflectors[{i}]"
        if not isinstance(r, dict):
            raise fail(raw, path, "expected a mapping")
        for key in r:
            if key not in {"name", "address", "__line__", "__lines__"}:
                raise fail(r, f"{path}.{key}", f"unknown key{did_you_mean(str(key), ('name', 'address'))}")
        rname = node_name(r, f"{path}.name")
        address = convert(r, f"{path}.address", IPv4Address, get(r, "address", f"{path}.address", str))
        if not any(address in net for net in underlays) or address in (
            n.network_address + 1 for n in underlays
        ):
            what = f"the underlay {underlay}" if len(underlays) == 1 else "any underlay"
            raise fail(r, f"{path}.address", f"{address} is not a host address of {what}")
        rack = next(k for k, net in enumerate(underlays) if address in net)
        reflectors.append(LabHost(rname, address, reflector=True, rack=rack))
    cluster_id = convert(raw, "cluster_id", IPv4Address, get(raw, "cluster_id", "cluster_id", str, "1.0.0.1"))
    names = [h.name for h in (*hosts, *reflectors)]
    if len(set(names)) != len(names):
        raise fail(raw, "hosts", "duplicate host name")
    addresses = [h.address for h in (*hosts, *reflectors)] + [w for h in hosts for w in h.workloads]
    if len(set(addresses)) != len(addresses):
        raise fail(raw, "hosts", "duplicate address")
    if len(hosts) < 2:
        raise fail(raw, "hosts", "at least two hosts")
    hosts = _tunnel_addresses(raw, fail, hosts, tunnels=any(m not in (None, "never") for m in ipip))
    ipv6 = get(raw, "ipv6", "ipv6", bool, True)
    tor = _tor(raw, fail, get, source, asn, underlays, pools, ipip, ipv6, bool(reflectors))
    if ipv6 and len(underlays) > 1:
        raise fail(
            raw,
            "underlay",
            "several underlays (racks) need `ipv6: false`: the lab routes only IPv4 between racks "
            "(Calico has no IP-in-IP for IPv6)",
        )
    extra: dict[str, Any] = {
        "underlays": underlays if len(underlays) > 1 else (),
        "ipip": ipip if any(m is not None for m in ipip) else (),
    }
    if tor is not None:
        extra["tor"] = tor
    if datastore != "none":
        extra["datastore"] = datastore
    if not ipv6:
        return Topology(
            name, underlay, asn, pools, tuple(hosts), tuple(reflectors), cluster_id, source, False, **extra
        )
    try:
        hosts6, reflectors6, pools6 = _dual_stack(underlay, pools, hosts, reflectors)
    except _PlanError as exc:
        items = raw.get("hosts") if exc.host is not None else None
        where = items[exc.host] if isinstance(items, list) and exc.host is not None else raw
        key = f"hosts[{exc.host}]" if exc.host is not None else "ipv6"
        raise fail(where, key, f"{exc}; `ipv6: false` runs this topology IPv4-only") from exc
    return Topology(
        name,
        underlay,
        asn,
        pools,
        hosts6,
        reflectors6,
        cluster_id,
        source,
        True,
        underlay6_of(underlay),
        pools6,
        **extra,
    )


_Fail = Callable[[dict[str, Any], str, str], TopologyError]


def _reserved_names(racks: int, tor: bool = False) -> set[str]:
    """Names no node may take: the lab's own namespaces are named like nodes' (`bgpd<name>-sw`)."""
    if tor:
        return {TRANSIT_SWITCH, *(f"{SWITCH}{k}" for k in range(racks)), *(f"{TOR}{k}" for k in range(racks))}
    if racks == 1:
        return {SWITCH}
    return {ROUTER, *(f"{SWITCH}{k}" for k in range(racks))}


def _underlays(raw: dict[str, Any], fail: _Fail, convert: Any) -> tuple[IPv4Network, ...]:
    """`underlay`: one subnet, or a list of them (one per rack), none overlapping another."""
    value = raw.get("underlay", "192.168.100.0/24")
    if isinstance(value, str):
        return (convert(raw, "underlay", IPv4Network, value),)
    if not isinstance(value, list) or not value:
        raise fail(raw, "underlay", "expected a subnet (str) or a non-empty list of subnets, one per rack")
    nets: list[IPv4Network] = []
    for k, item in enumerate(value):
        if not isinstance(item, str):
            raise fail(raw, f"underlay[{k}]", "expected a subnet (str)")
        net = convert(raw, f"underlay[{k}]", IPv4Network, item)
        if net.prefixlen > 29:
            raise fail(raw, f"underlay[{k}]", f"{net} is too small for a router and hosts")
        for j, other in enumerate(nets):
            if net.overlaps(other):
                raise fail(raw, f"underlay[{k}]", f"{net} overlaps underlay[{j}] {other}")
        nets.append(net)
    return tuple(nets)


def _tor(
    raw: dict[str, Any],
    fail: _Fail,
    get: Any,
    source: str,
    asn: int,
    underlays: tuple[IPv4Network, ...],
    pools: tuple[IPv4Network, ...],
    ipip: tuple[str | None, ...],
    ipv6: bool,
    reflectors: bool,
) -> TorPlan | None:
    """`tor`: each rack's router is a BGP router (see the module's docstring); None without the key."""
    if "tor" not in raw:
        return None
    t = raw["tor"]
    if not isinstance(t, dict):
        raise fail(raw, "tor", "expected a mapping {asns: [one AS per rack], allow_local_as: N}")
    for key in t:
        if key not in {"asns", "allow_local_as", "transit", "__line__", "__lines__"}:
            raise fail(t, f"tor.{key}", "unknown key (asns, allow_local_as, transit)")
    asns_line = t.get("__lines__", {}).get("asns", t.get("__line__", 1))

    def item_error(k: int, message: str) -> TopologyError:  # a list item: the line of `asns`
        return TopologyError(f"{source}:{asns_line}: tor.asns[{k}]: {message}")

    written = get(t, "asns", "tor.asns", list)
    if len(written) != len(underlays):
        raise fail(t, "tor.asns", f"one AS per rack: {len(underlays)} underlays, {len(written)} ASNs")
    asns: list[int] = []
    for k, value in enumerate(written):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ASN_MAX:
            raise item_error(k, f"expected an AS number 1..{ASN_MAX}")
        if value == asn:
            raise item_error(k, f"{value} is the hosts' AS (`asn`): hosts peer with their router over eBGP")
        if value in asns:
            j = asns.index(value)
            raise item_error(k, f"{value} is rack {j}'s router's AS too: the routers peer over eBGP")
        asns.append(value)
    allow = get(t, "allow_local_as", "tor.allow_local_as", int, 0)
    if not 0 <= allow <= ALLOW_LOCAL_AS_MAX:
        raise fail(t, "tor.allow_local_as", f"expected 0..{ALLOW_LOCAL_AS_MAX}")
    text = get(t, "transit", "tor.transit", str, str(DEFAULT_TRANSIT))
    try:
        transit = IPv4Network(text)
    except ValueError as exc:
        raise fail(t, "tor.transit", str(exc)) from exc
    if transit.num_addresses - 2 < len(underlays):
        raise fail(t, "tor.transit", f"{transit} is too small for {len(underlays)} routers")
    for net, what in [*((u, "an underlay") for u in underlays), *((p, "a pool") for p in pools)]:
        if transit.overlaps(net):
            raise fail(t, "tor.transit", f"{transit} overlaps {what}, {net}")
    if ipv6:
        raise fail(raw, "tor", "the racks' routers route IPv4 only: a ToR lab needs `ipv6: false`")
    if reflectors:
        raise fail(raw, "tor", "a ToR lab has no reflectors: each host peers with its rack's router")
    for i, mode in enumerate(ipip):
        if mode not in (None, "never"):
            why = "the racks' routers carry the workload routes, no pool tunnels"
            raise fail(raw, "tor", f"pools[{i}] is ipip {mode}: {why}")
    return TorPlan(tuple(asns), allow, transit)


def _pools(
    raw: dict[str, Any], fail: _Fail, get: Any, convert: Any
) -> tuple[tuple[IPv4Network, ...], tuple[str | None, ...]]:
    """`pools`: each a CIDR string, or a mapping `{cidr: ..., ipip: never|always|cross-subnet}`; returns
    the pools and each one's ipip mode as written (None where the key is absent)."""
    pools: list[IPv4Network] = []
    modes: list[str | None] = []
    for i, item in enumerate(get(raw, "pools", "pools", list, [])):
        path = f"pools[{i}]"
        if isinstance(item, dict):
            for key in item:
                if key not in {"cidr", "ipip", "__line__", "__lines__"}:
                    hint = " (the lab plays Felix for IP-in-IP only)" if key == "vxlan" else ""
                    raise fail(item, f"{path}.{key}", f"unknown key{hint}")
            pool = convert(item, f"{path}.cidr", IPv4Network, get(item, "cidr", f"{path}.cidr", str))
            mode: str | None = None
            if "ipip" in item:
                written = item["ipip"]
                mode = spelled(written, IPIP_MODES) if isinstance(written, str) else None
                if mode is None:
                    text = str(written).lower() if isinstance(written, bool) else str(written)
                    hint = did_you_mean(text.lower(), IPIP_MODES)
                    raise fail(
                        item, f"{path}.ipip", f"bad mode {text!r}: one of {', '.join(IPIP_MODES)}{hint}"
                    )
        elif isinstance(item, str):
            pool, mode = convert(raw, path, IPv4Network, item), None
        else:
            raise fail(raw, path, "expected a CIDR or a mapping {cidr: ..., ipip: ...}")
        for j, other in enumerate(pools):
            if pool.overlaps(other):
                raise fail(
                    item if isinstance(item, dict) else raw, path, f"{pool} overlaps pools[{j}] {other}"
                )
        pools.append(pool)
        modes.append(mode)
    return tuple(pools), tuple(modes)


def _tunnel_addresses(raw: dict[str, Any], fail: _Fail, hosts: list[LabHost], tunnels: bool) -> list[LabHost]:
    """Each host's tunl0 address: the first address of its first block that no workload uses. When a pool
    tunnels, every host needs one."""
    taken = {w for h in hosts for w in h.workloads}
    out: list[LabHost] = []
    items = raw.get("hosts")
    for i, h in enumerate(hosts):
        found = next((a for b in h.blocks for a in b if a not in taken), None)
        if found is None and tunnels:
            where = items[i] if isinstance(items, list) else raw
            raise fail(
                where,
                f"hosts[{i}].blocks",
                "a pool uses ipip, so every host needs a block with a free address for tunl0's /32",
            )
        out.append(replace(h, tunnel_address=found))
    return out


class _PlanError(Exception):
    def __init__(self, message: str, host: int | None = None) -> None:
        super().__init__(message)
        self.host = host


def _dual_stack(
    underlay: IPv4Network, pools: tuple[IPv4Network, ...], hosts: list[LabHost], reflectors: list[LabHost]
) -> tuple[tuple[LabHost, ...], tuple[LabHost, ...], tuple[IPv6Network, ...]]:
    """The IPv6 plan derived from the IPv4 one (the module's docstring says how)."""
    underlay6 = underlay6_of(underlay)
    pools6: list[IPv6Network] = []
    for p6 in sorted({pool6_of(p) for p in pools}, key=lambda n: n.prefixlen):
        if not any(p6.subnet_of(q) for q in pools6):
            pools6.append(p6)
    for p6 in pools6:
        if p6.overlaps(underlay6):
            raise _PlanError(f"the IPv6 pool {p6} would overlap the IPv6 underlay {underlay6}")
    every = [w for h in hosts for w in h.workloads]
    blocks6: list[tuple[IPv6Network, ...]] = []
    for h in hosts:
        mine: list[IPv6Network] = []
        for b in h.blocks:
            inside = [block6_of(twin6(w)) for w in every if w in b]
            for b6 in inside or [block6_of(twin6(b.network_address))]:
                if b6 not in mine:
                    mine.append(b6)
        blocks6.append(tuple(mine))
    why = f"IPv4 blocks longer than /{BLOCK6_PREFIXLEN - 96} share a /{BLOCK6_PREFIXLEN}"
    for i, h in enumerate(hosts):  # each IPv6 block mirrors the IPv4 one: same members, same owner
        for j, other in enumerate(hosts[:i]):
            if set(blocks6[i]) & set(blocks6[j]):
                raise _PlanError(f"its IPv6 blocks would overlap those of {other.name} ({why})", i)
        for w in every:
            in4 = any(w in b for b in h.blocks)
            if in4 != any(twin6(w) in b6 for b6 in blocks6[i]):
                where = "outside" if in4 else "inside"
                raise _PlanError(
                    f"workload {w}'s IPv6 address {twin6(w)} would fall {where} its IPv6 blocks ({why})", i
                )
    hosts6 = tuple(
        replace(
            h,
            address6=node_address6(underlay, h.address),
            blocks6=blocks6[i],
            workloads6=tuple(twin6(w) for w in h.workloads),
        )
        for i, h in enumerate(hosts)
    )
    reflectors6 = tuple(replace(r, address6=node_address6(underlay, r.address)) for r in reflectors)
    return hosts6, reflectors6, tuple(pools6)


def with_hosts(topo: Topology, added: list[LabHost], removed: set[str]) -> Topology:
    """The topology of a lab whose hosts changed while it ran (`bgpd lab add-host` / `remove-host`): the
    hosts named in `removed` left out, `added` (IPv4 plan only: name, address, blocks, workloads) appended,
    the racks, tunnel addresses and IPv6 plan derived again as `parse` derives them. TopologyError when the
    result has no valid dual-stack plan."""
    plain = [
        replace(h, address6=None, blocks6=(), workloads6=(), tunnel_address=None)
        for h in topo.hosts
        if h.name not in removed
    ]
    for h in added:
        rack = next((k for k, net in enumerate(topo.racks) if h.address in net), 0)
        plain.append(replace(h, rack=rack))
    taken = {w for h in plain for w in h.workloads}
    hosts = [replace(h, tunnel_address=_first_free(h.blocks, taken)) for h in plain]
    if not topo.ipv6:
        return replace(topo, hosts=tuple(hosts))
    try:
        hosts6, _, _ = _dual_stack(topo.underlay, topo.pools, hosts, [])
    except _PlanError as exc:
        raise TopologyError(f"{topo.source}: {exc}") from None
    return replace(topo, hosts=hosts6)


def _first_free(blocks: tuple[IPv4Network, ...], taken: set[IPv4Address]) -> IPv4Address | None:
    """The first address of these blocks that no workload uses (a host's tunl0 address)."""
    return next((a for b in blocks for a in b if a not in taken), None)
