"""One node's `bgpd.config.Config` from Calico's resources, derived as Calico's confd derives BIRD's
configuration, plus the local YAML's non-cluster sections.

`derive` writes the configuration bgpd's YAML file would hold for the same setup and runs it through
`bgpd.config.parse`, so the result is exactly what that file gives, with the same validation. A part
that fails there (a peer whose filter is missing, a pool overlapping another) is left out and reported
with the key of the record that produced it; the rest applies.

Precedence and topology, from projectcalico/calico at 87c15906f20c:

- Identity (``confd/pkg/backends/calico/bgp_processor.go`` populateNodeConfig, libcalico-go
  ``syncersv1/updateprocessors/bgpnodeprocessor.go``): this node's Node record gives ``ipv4Address`` (with
  its prefix length), ``ipv6Address`` and ``asNumber``; without one, the AS is BGPConfiguration
  ``default``'s ``asNumber``, else 64512 (``client.go`` globalDefaults). The router id is the IPv4
  address.
- BGPConfiguration (``client.go`` updateBGPConfigCache): ``asNumber``, ``nodeToNodeMeshEnabled`` (default
  true) and ``nodeMeshPassword`` are read from ``default`` only; ``listenPort`` and
  ``prefixAdvertisements`` from ``node.<name>`` when it sets them, else from ``default``. A node's
  prefixAdvertisements replace the default's whole list; their community names resolve against the same
  record's ``communities``.
- Mesh (bgp_processor.go processMeshPeers): when enabled and this node has no routeReflectorClusterID,
  one session to every other Node with an address in the family, except Nodes that have a cluster id;
  the peer's AS and listen port are its own (or the defaults). A mesh peer with this node's AS and port
  is a ``bgp.mesh.nodes`` entry; one with another AS or port becomes a ``bgp.peers`` entry with the mesh's
  password and the mesh's passive rule.
- BGPPeers (``client.go`` updatePeersV1, reproduced for this node): first every global BGPPeer (neither
  ``node`` nor ``nodeSelector``), then the node-specific ones (``node: <this node>`` or a matching
  ``nodeSelector``), skipping a (peer address, port) already emitted; then the automatic reverse
  peerings (``reversePeering`` not Manual): a BGPPeer whose ``peerSelector`` selects this node (or whose
  ``peerIP``/``asNumber`` is this node's) gives this node a session to every node its ``node`` /
  ``nodeSelector`` selects (every node without either). A ``peerSelector`` session takes the selected
  node's address, AS and listen port, and the BGPPeer's password, keepalive, TTL security, filters and
  next-hop mode (``nodeAsBGPPeers``: not localASNumber nor numAllowedLocalASNumbers). A session to this
  node's own address is dropped; records are taken in name order where confd's map order is arbitrary.
- Route reflection (bgp_processor.go buildPeerFromData): on a node with a cluster id, an iBGP session to
  a peer that has no cluster id or another one is a route-reflector client: it goes to
  ``reflector.clients`` (bgpd's client sessions are passive, on ``bgp.port``, with the password of the
  BGPPeer that produced them). Such a node still installs the routes it learns, as Calico's does
  (``kernel.install`` true unless the local ``kernel`` section says otherwise). A node with a cluster id
  takes no part in the mesh and no mesh node peers with it: its clients reach it through BGPPeers
  selecting it (``peerSelector``).
- An explicit BGPPeer session to a mesh node replaces the mesh session to it (bgpd runs one session per
  address; BIRD would run both).
- Passive side. BIRD resolves connection collisions; bgpd avoids them. A session to another Calico node
  waits (passive) when this node's address is the lower one, as bgpd's mesh does (confd compares the
  address texts, bgpd the addresses), except that a route-reflector client always connects to its
  reflector (the reflector waits). Sessions to addresses that are not Calico nodes connect, as confd's
  do.

Not derived: Calico's service advertisement, local workload peerings, per-peer graceful restart time,
``reachableBy``; and ``CALICO_ROUTER_ID``. Pure logic: secrets are resolved through a lookup the caller
gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import yaml

from bgpd import config as bgpconfig
from bgpd.config import Config, ConfigError, PeerConfig, dump_rule
from bgpd.config_datastore import LOCAL_BGP_KEYS, LOCAL_SECTIONS
from bgpd.datastore.resources import BGPPeer, Node, Problem, Resources, SecretRef
from bgpd.datastore.selector import Selector
from bgpd.policy.filters import BGPFilter as FilterRules

__all__ = [
    "DEFAULT_ASN",
    "LOCAL_BGP_KEYS",
    "LOCAL_SECTIONS",
    "DeriveError",
    "Derived",
    "SecretLookup",
    "derive",
]

DEFAULT_ASN = 64512  # confd's globalDefaults as_num
SecretLookup = Callable[[SecretRef], str | None]

Address = IPv4Address | IPv6Address


class DeriveError(ValueError):
    """This node cannot be configured from the resources (no Node record, no IPv4 address, a bad local
    section): one line, ``str(e)``."""


@dataclass(frozen=True, slots=True)
class Derived:
    """The derived configuration and what was left out or ignored on the way (each naming a record key)."""

    config: Config
    problems: tuple[Problem, ...]


@dataclass(slots=True)
class _Session:
    """One peering of this node as confd would emit it, before it is written as bgpd config."""

    address: Address
    port: int | None  # None: 179 / the node's own
    asn: int
    origin: str  # the record key that produced it
    description: str
    settings: PeerConfig | None  # the BGPPeer's per-session settings; None for a mesh session
    peer: BGPPeer | None
    password: str | None
    cluster_id: IPv4Address | None  # the peer node's routeReflectorClusterID
    calico_node: bool
    mesh: bool = False
    # a peerIP session: confd applies localASNumber and numAllowedLocalASNumbers to these only
    # (nodeAsBGPPeers leaves them out of peerSelector sessions)
    by_address: bool = False


def _no_secrets(ref: SecretRef) -> str | None:
    return None


def derive(
    resources: Resources,
    node_name: str,
    local: Mapping[str, Any] | None = None,
    secrets: SecretLookup = _no_secrets,
    source: str = "<datastore>",
) -> Derived:
    """``node_name``'s configuration: a `Config` equal to what `bgpd.config.parse` gives for the
    equivalent YAML, and the `Problem`s. ``local``: the YAML's top-level sections that are not the
    cluster's (`LOCAL_SECTIONS`, and ``bgp`` with `LOCAL_BGP_KEYS` only), as plain data. ``secrets``
    resolves a password reference (None: not found). DeriveError when this node cannot run."""
    return _Deriver(resources, node_name, dict(local or {}), secrets, source).run()


class _Deriver:
    def __init__(
        self, res: Resources, name: str, local: dict[str, Any], secrets: SecretLookup, source: str
    ) -> None:
        self.res = res
        self.source = source
        self.secrets = secrets
        self.problems: list[Problem] = []
        for section, value in local.items():
            if section not in (*LOCAL_SECTIONS, "bgp"):
                raise DeriveError(f"local section {section!r} is the cluster's: it comes from the datastore")
            if section == "bgp":
                if not isinstance(value, dict):
                    raise DeriveError("local section 'bgp' must be a mapping")
                for k in value:
                    if k not in LOCAL_BGP_KEYS:
                        raise DeriveError(f"local key bgp.{k} is the cluster's: it comes from the datastore")
        self.local = local
        me = res.nodes.get(name)
        if me is None or not me.bgp:
            raise DeriveError(f"node {name!r}: no Node record with spec.bgp in the datastore")
        if me.address is None:
            raise DeriveError(f"node {name!r}: its Node record has no spec.bgp.ipv4Address")
        self.me = me
        self.my_address: IPv4Address = me.address
        self.nodes = [n for _, n in sorted(res.nodes.items()) if n.bgp]
        self.default = res.configurations.get("default")
        self.mine = res.configurations.get(f"node.{name}")
        self.global_asn = self.default.asn if self.default and self.default.asn else DEFAULT_ASN
        self.global_port = self.default.listen_port if self.default else None

    # ---- cluster facts

    def asn(self, node: Node) -> int:
        return node.asn if node.asn is not None else self.global_asn

    def node_port(self, node: Node) -> int | None:
        """The node's listen port as confd keeps it: node.<name>'s, else default's, else None (179)."""
        own = self.res.configurations.get(f"node.{node.name}")
        if own is not None and own.listen_port is not None:
            return own.listen_port
        return self.global_port

    def matching(self, sel: Selector) -> list[Node]:
        return [n for n in self.nodes if sel.matches(n.labels)]

    def mine_in(self, family: int) -> Address | None:
        return self.me.address if family == 4 else self.me.address6

    def secret(self, ref: SecretRef | None, key: str) -> str | None:
        if ref is None:
            return None
        value = self.secrets(ref)
        if value is None:
            self.problems.append(
                Problem(key, f"password secret {ref.name}/{ref.key} not found: no password, as confd", False)
            )
        return value

    # ---- sessions

    def mesh_sessions(self, password: str | None) -> list[_Session]:
        out: list[_Session] = []
        if self.me.cluster_id is not None:
            return out
        for n in self.nodes:
            if n.name == self.me.name or n.cluster_id is not None:
                continue
            for family, addr in ((4, n.address), (6, n.address6)):
                if addr is None or self.mine_in(family) is None or addr == self.mine_in(family):
                    continue
                out.append(
                    _Session(
                        addr,
                        self.node_port(n),
                        self.asn(n),
                        n.key,
                        f"mesh {n.name}",
                        None,
                        None,
                        password,
                        None,
                        True,
                        mesh=True,
                    )
                )
        return out

    def node_sessions(self, nodes: Iterable[Node], v4: bool, v6: bool, p: BGPPeer) -> list[_Session]:
        """confd nodeAsBGPPeers."""
        out = []
        for n in nodes:
            for wanted, addr in ((v4, n.address), (v6, n.address6)):
                if wanted and addr is not None:
                    out.append(
                        _Session(
                            addr,
                            self.node_port(n),
                            self.asn(n),
                            p.key,
                            p.name,
                            p.session,
                            p,
                            None,
                            n.cluster_id,
                            True,
                        )
                    )
        return out

    def ip_session(self, p: BGPPeer) -> _Session:
        assert p.address is not None and p.asn is not None
        port = p.port
        if port is None:
            named = self.nodes_with(p.address, p.asn, None)
            if named:
                port = self.node_port(named[0])
        calico = any(p.address in (n.address, n.address6) for n in self.nodes)
        return _Session(
            p.address, port, p.asn, p.key, p.name, p.session, p, None, None, calico, by_address=True
        )

    def nodes_with(self, address: Address, asn: int | None, port: int | None) -> list[Node]:
        """confd nodesWithIPPortAndAS, its port test included."""
        want = asn if asn is not None else self.global_asn
        out = []
        for n in self.nodes:
            if address not in (n.address, n.address6) or self.asn(n) != want:
                continue
            if port is not None:
                own = self.res.configurations.get(f"node.{n.name}")
                if own is not None and own.listen_port is not None and port != own.listen_port:
                    continue
                if self.global_port is not None and self.global_port != port:
                    continue
            out.append(n)
        return out

    def peerings(self) -> list[_Session]:
        """confd updatePeersV1 for this node: global, node-specific, then reverse peerings."""
        emitted: dict[tuple[Address, int], _Session] = {}
        peers = [p for _, p in sorted(self.res.peers.items())]
        for global_pass in (True, False):
            for p in peers:
                if global_pass != (p.node is None and p.node_selector is None):
                    continue
                if not global_pass:
                    here = (
                        p.node == self.me.name
                        if p.node_selector is None
                        else p.node_selector.matches(self.me.labels)
                    )
                    if not here:
                        continue
                if p.peer_selector is not None:
                    sessions = self.node_sessions(self.matching(p.peer_selector), True, True, p)
                else:
                    sessions = [self.ip_session(p)]
                for s in sessions:
                    emitted.setdefault((s.address, s.port or 0), s)
        for p in peers:
            if not p.reverse_peering:
                continue
            if p.peer_selector is not None:
                here = p.peer_selector.matches(self.me.labels)
                v4 = v6 = True
            else:
                assert p.address is not None
                here = self.me in self.nodes_with(p.address, p.asn, p.port)
                v4, v6 = p.address.version == 4, p.address.version == 6
            if not here:
                continue
            if p.node_selector is not None:
                targets = self.matching(p.node_selector)
            elif p.node is not None:
                targets = [n for n in self.nodes if n.name == p.node]
            else:
                targets = self.nodes
            for s in self.node_sessions(targets, v4, v6, p):
                emitted.setdefault((s.address, s.port or 0), s)
        out = []
        for s in emitted.values():
            own = self.mine_in(s.address.version)
            if own is None or s.address == own:
                continue  # confd: skip ourselves; a family this node has no address in has no sessions
            assert s.peer is not None
            s.password = self.secret(s.peer.password, s.origin)
            out.append(s)
        return out

    # ---- the document

    def run(self) -> Derived:
        me = self.me
        asn = self.asn(me)
        port = self.node_port(me) or 179
        mesh_enabled = True
        mesh_password = None
        if self.default is not None:
            if self.default.mesh_enabled is not None:
                mesh_enabled = self.default.mesh_enabled
            mesh_password = self.secret(self.default.mesh_password, self.default.key)
        node: dict[str, Any] = {
            "name": me.name,
            "address": _with_length(self.my_address, me.prefix_length),
            "asn": asn,
        }
        if me.address6 is not None:
            node["address6"] = _with_length(me.address6, me.prefix_length6)

        explicit = self.peerings()
        mesh = self.mesh_sessions(mesh_password) if mesh_enabled else []
        taken = {s.address for s in explicit}
        mesh = [s for s in mesh if s.address not in taken]

        # who is what: mesh nodes, reflector clients, peers
        mesh_nodes: list[tuple[Address, str]] = []
        clients: list[tuple[Address, str]] = []
        client_password: tuple[str | None, str] | None = None
        peers: list[tuple[dict[str, Any], str]] = []
        seen: dict[Address, str] = {}
        for s in [*mesh, *explicit]:
            if s.address in seen:
                self.problems.append(
                    Problem(
                        s.origin,
                        f"a second session to {s.address} (port {s.port or 179}); "
                        f"bgpd runs one per address, the one from {seen[s.address]} is kept",
                    )
                )
                continue
            seen[s.address] = s.origin
            if s.mesh and s.asn == asn and (s.port or 179) == port:
                mesh_nodes.append((s.address, s.origin))
                continue
            local_asn = s.settings.local_asn if s.settings is not None and s.by_address else None
            effective = local_asn if local_asn is not None else asn
            ibgp = s.asn == effective
            if me.cluster_id is not None and ibgp and s.cluster_id != me.cluster_id and not s.mesh:
                if client_password is not None and client_password[0] != s.password:
                    self.problems.append(
                        Problem(
                            s.origin,
                            f"route-reflector client {s.address}: bgpd gives every client session "
                            f"the same password, the one from {client_password[1]}; left out",
                        )
                    )
                    continue
                client_password = (s.password, s.origin)
                self.note_client_settings(s)
                clients.append((s.address, s.origin))
                continue
            peers.append((self.peer_entry(s, ibgp, local_asn), s.origin))

        origins: dict[str, str] = {}
        bgp: dict[str, Any] = {"port": port}
        for k in LOCAL_BGP_KEYS:
            if k in self.local.get("bgp", {}):
                bgp[k] = self.local["bgp"][k]
        own_addresses = [a for a in (me.address, me.address6) if a is not None]
        if mesh_enabled and me.cluster_id is None:
            nodes = [*own_addresses, *(a for a, _ in mesh_nodes)]
            nodes.sort(key=lambda a: (a.version, a))
            bgp["mesh"] = {"enabled": True, "nodes": [str(a) for a in nodes]}
            if mesh_password is not None:
                bgp["mesh"]["password"] = mesh_password
                origins["bgp.mesh.password"] = self.default.key if self.default else ""
        peers.sort(key=lambda e: _address_key(e[0]["address"]))
        bgp["peers"] = [e for e, _ in peers]
        policy = (
            self.mine
            if self.mine is not None and self.mine.prefix_advertisements is not None
            else self.default
        )
        if policy is not None:
            if policy.communities:
                bgp["communities"] = [{"name": n, "value": v} for n, v in policy.communities]
            if policy.prefix_advertisements:
                bgp["prefix_advertisements"] = [
                    {"cidr": str(a.cidr), "communities": list(a.communities)}
                    for a in policy.prefix_advertisements
                ]
        doc: dict[str, Any] = {"node": node, "bgp": bgp}
        for i, (_, origin) in enumerate(peers):
            origins[f"bgp.peers[{i}]"] = origin
        if policy is not None:
            origins["bgp.communities"] = origins["bgp.prefix_advertisements"] = policy.key
        pools = [p for _, p in sorted(self.res.pools.items())]
        if pools:
            doc["pools"] = [_pool_entry(p.pool) for p in pools]
            origins.update({f"pools[{i}]": p.key for i, p in enumerate(pools)})
        filters = [f for _, f in sorted(self.res.filters.items())]
        if filters:
            doc["filters"] = [_filter_entry(f.rules) for f in filters]
            origins.update({f"filters[{i}]": f.key for i, f in enumerate(filters)})
        if me.cluster_id is not None:
            clients.sort(key=lambda c: (c[0].version, c[0]))
            doc["reflector"] = {"cluster_id": str(me.cluster_id), "clients": [str(a) for a, _ in clients]}
            if client_password is not None and client_password[0] is not None:
                doc["reflector"]["password"] = client_password[0]
                origins["reflector.password"] = client_password[1]
            origins.update({f"reflector.clients[{i}]": o for i, (_, o) in enumerate(clients)})
        for section in LOCAL_SECTIONS:
            if section in self.local:
                doc[section] = self.local[section]
        if me.cluster_id is not None:
            # A Calico node with a cluster id is a whole node: it runs workloads and its BIRD installs what
            # it learns. bgpd's own default for a `reflector:` (install nothing) is for a dedicated
            # reflector's file; here it would also make a role change need a restart (kernel.install).
            kernel = doc.get("kernel")
            kernel = dict(kernel) if isinstance(kernel, dict) else {}
            kernel.setdefault("install", True)
            doc["kernel"] = kernel
        return Derived(self.parse(doc, origins), tuple(self.problems))

    def note_client_settings(self, s: _Session) -> None:
        st = s.settings
        if st is None:
            return
        unused = [
            name
            for name, value, default in (
                ("filters", st.filters, ()),
                ("keepaliveTime", st.keepalive_time, None),
                ("ttlSecurity", st.ttl_security, None),
                ("nextHopMode", st.next_hop_mode, "auto"),
            )
            if value != default
        ]
        if unused:
            self.problems.append(
                Problem(
                    s.origin,
                    f"{', '.join(unused)}: not applied to the route-reflector client session "
                    f"to {s.address} (bgpd's client sessions share the reflector's settings)",
                    False,
                )
            )

    def peer_entry(self, s: _Session, ibgp: bool, local_asn: int | None) -> dict[str, Any]:
        me = self.mine_in(s.address.version)
        assert me is not None
        reflector_of_mine = ibgp and s.cluster_id is not None and s.cluster_id != self.me.cluster_id
        passive = s.calico_node and not reflector_of_mine and me < s.address  # type: ignore[operator]
        entry: dict[str, Any] = {"address": str(s.address), "asn": s.asn}
        if s.port is not None and s.port != 179:
            entry["port"] = s.port
        if passive:
            entry["passive"] = True
        if s.password is not None:
            entry["password"] = s.password
        entry["description"] = s.description
        st, p = s.settings, s.peer
        if st is None or p is None:
            return entry
        if local_asn is not None:
            entry["local_asn"] = local_asn
        mode = p.next_hop_mode
        if mode is None:
            mode = "keep" if p.keep_original_next_hop and not ibgp else "auto"
        if mode != "auto":
            entry["next_hop_mode"] = mode
        if st.allow_local_as and s.by_address:
            entry["allow_local_as"] = st.allow_local_as
        if st.keepalive_time is not None:
            entry["keepalive_time"] = st.keepalive_time
        if st.ttl_security is not None:
            entry["ttl_security"] = st.ttl_security
        if st.filters:
            entry["filters"] = list(st.filters)
        return entry

    def parse(self, doc: dict[str, Any], origins: dict[str, str]) -> Config:
        """`bgpd.config.parse` on ``doc``; a failing part that a record produced is dropped and reported,
        and the rest parsed again."""
        for _ in range(1000):
            text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
            try:
                return bgpconfig.parse(text, self.source)
            except ConfigError as exc:
                where = exc.keypath
                hit = next(
                    (
                        k
                        for k in sorted(origins, key=len, reverse=True)
                        if where == k or where.startswith((k + ".", k + "["))
                    ),
                    None,
                )
                if hit is None:
                    raise DeriveError(
                        f"{self.source}: {where + ': ' if where else ''}{exc.message}"
                    ) from None
                self.problems.append(Problem(origins[hit], f"{where}: {exc.message}; left out"))
                _drop(doc, hit)
                origins = _renumber(origins, hit)
        raise DeriveError(f"{self.source}: too many invalid parts")  # pragma: no cover


def _drop(doc: dict[str, Any], path: str) -> None:
    """Remove ``path`` (``bgp.peers[3]``, ``bgp.communities``) from ``doc``."""
    head, _, index = path.partition("[")
    parts = head.split(".")
    target: Any = doc
    for part in parts[:-1]:
        target = target[part]
    if index:
        del target[parts[-1]][int(index.rstrip("]"))]
    else:
        del target[parts[-1]]
        if parts[-1] == "communities":
            target.pop("prefix_advertisements", None)


def _renumber(origins: dict[str, str], dropped: str) -> dict[str, str]:
    """The origins after the list element ``dropped`` went away: later elements move up by one."""
    head, _, index = dropped.partition("[")
    out: dict[str, str] = {}
    for k, v in origins.items():
        if k == dropped or (not index and (k == "bgp.prefix_advertisements" and head == "bgp.communities")):
            continue
        khead, _, kindex = k.partition("[")
        if index and khead == head and kindex and int(kindex.rstrip("]")) > int(index.rstrip("]")):
            k = f"{khead}[{int(kindex.rstrip(']')) - 1}]"
        out[k] = v
    return out


def _with_length(address: Address, length: int | None) -> str:
    return str(address) if length is None else f"{address}/{length}"


def _address_key(text: str) -> tuple[int, int]:
    from ipaddress import ip_address

    a = ip_address(text)
    return (a.version, int(a))


def _pool_entry(pool: bgpconfig.PoolConfig) -> dict[str, Any]:
    return {"cidr": str(pool.cidr), "export": pool.export, "ipip": pool.ipip, "vxlan": pool.vxlan}


def _filter_entry(rules: FilterRules) -> dict[str, Any]:
    lists = {
        "export_v4": rules.export_v4,
        "import_v4": rules.import_v4,
        "export_v6": rules.export_v6,
        "import_v6": rules.import_v6,
    }
    return {"name": rules.name, **{k: [dump_rule(r) for r in v] for k, v in lists.items()}}
