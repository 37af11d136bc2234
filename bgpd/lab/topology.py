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
```

Errors name the file, the line and the key, like the daemon's config errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CLUSTER_ID = IPv4Address("1.0.0.1")
NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")


class TopologyError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class LabHost:
    name: str
    address: IPv4Address
    blocks: tuple[IPv4Network, ...] = ()
    workloads: tuple[IPv4Address, ...] = ()
    reflector: bool = False  # a route reflector node: no workloads, not in the forwarding path

    def exported(self) -> set[IPv4Network]:
        """What this host announces: its blocks, and its workloads outside them (borrowed addresses)."""
        out = set(self.blocks)
        for w in self.workloads:
            if not any(w in b for b in self.blocks):
                out.add(IPv4Network(f"{w}/32"))
        return out


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

    @property
    def nodes(self) -> tuple[LabHost, ...]:
        """Every node that runs bgpd: the hosts, then the reflectors."""
        return (*self.hosts, *self.reflectors)

    @property
    def gateway(self) -> IPv4Address:
        """The underlay's router address (the first address of the segment), owned by the switch."""
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
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(path: str | Path) -> Topology:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TopologyError(f"{path}: {exc.strerror}") from exc
    return parse(text, str(path))


def parse(text: str, source: str = "<string>") -> Topology:
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        line = exc.problem_mark.line + 1 if getattr(exc, "problem_mark", None) else 1  # type: ignore[attr-defined]
        raise TopologyError(f"{source}:{line}: invalid YAML") from exc
    if not isinstance(raw, dict):
        raise TopologyError(f"{source}:1: a topology is a mapping")

    def fail(where: dict[str, Any], key: str, message: str) -> TopologyError:
        return TopologyError(f"{source}:{where.get('__line__', 1)}: {key}: {message}")

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

    known = {"name", "underlay", "asn", "pools", "hosts", "reflectors", "cluster_id", "__line__"}
    for key in raw:
        if key not in known:
            raise fail(raw, str(key), "unknown key")
    name = get(raw, "name", "name", str, "lab")
    if not NAME.match(name):
        raise fail(raw, "name", "1-10 lower-case letters or digits, starting with a letter")
    underlay = convert(
        raw, "underlay", IPv4Network, get(raw, "underlay", "underlay", str, "192.168.100.0/24")
    )
    asn = get(raw, "asn", "asn", int, 64512)
    pools = tuple(convert(raw, "pools", IPv4Network, p) for p in get(raw, "pools", "pools", list, []))
    hosts: list[LabHost] = []
    for i, h in enumerate(get(raw, "hosts", "hosts", list)):
        path = f"hosts[{i}]"
        if not isinstance(h, dict):
            raise fail(raw, path, "expected a mapping")
        for key in h:
            if key not in {"name", "address", "blocks", "workloads", "__line__"}:
                raise fail(h, f"{path}.{key}", "unknown key")
        hname = get(h, "name", f"{path}.name", str)
        if not NAME.match(hname):
            raise fail(h, f"{path}.name", "1-10 lower-case letters or digits, starting with a letter")
        address = convert(h, f"{path}.address", IPv4Address, get(h, "address", f"{path}.address", str))
        if address not in underlay or address in (underlay.network_address, underlay.broadcast_address):
            raise fail(h, f"{path}.address", f"{address} is not a host address of the underlay {underlay}")
        if address == underlay.network_address + 1:
            raise fail(h, f"{path}.address", f"{address} is the underlay's router (its first address)")
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
        hosts.append(LabHost(hname, address, blocks, workloads))
    reflectors: list[LabHost] = []
    for i, r in enumerate(get(raw, "reflectors", "reflectors", list, [])):
        path = f"reflectors[{i}]"
        if not isinstance(r, dict):
            raise fail(raw, path, "expected a mapping")
        for key in r:
            if key not in {"name", "address", "__line__"}:
                raise fail(r, f"{path}.{key}", "unknown key")
        rname = get(r, "name", f"{path}.name", str)
        if not NAME.match(rname):
            raise fail(r, f"{path}.name", "1-10 lower-case letters or digits, starting with a letter")
        address = convert(r, f"{path}.address", IPv4Address, get(r, "address", f"{path}.address", str))
        if address not in underlay or address == underlay.network_address + 1:
            raise fail(r, f"{path}.address", f"{address} is not a host address of the underlay {underlay}")
        reflectors.append(LabHost(rname, address, reflector=True))
    cluster_id = convert(raw, "cluster_id", IPv4Address, get(raw, "cluster_id", "cluster_id", str, "1.0.0.1"))
    names = [h.name for h in (*hosts, *reflectors)]
    if len(set(names)) != len(names):
        raise fail(raw, "hosts", "duplicate host name")
    addresses = [h.address for h in (*hosts, *reflectors)] + [w for h in hosts for w in h.workloads]
    if len(set(addresses)) != len(addresses):
        raise fail(raw, "hosts", "duplicate address")
    if len(hosts) < 2:
        raise fail(raw, "hosts", "at least two hosts")
    return Topology(name, underlay, asn, pools, tuple(hosts), tuple(reflectors), cluster_id, source)
