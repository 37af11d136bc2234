"""Calico's v3 resources, as Calico stores them in etcd v3, validated into frozen records.

A record is stored under ``<prefix><plural>/<name>`` (prefix ``/calico/resources/v3/projectcalico.org/``)
as the JSON of the whole object (``kind``, ``apiVersion``, ``metadata``, ``spec``). `load` takes the
listed (key, value) pairs and returns the valid records as `Resources` and one `Problem` per record that
is invalid (skipped, named by its key) or carries a field bgpd does not act on (kept, reported once).

Every value goes through the validator bgpd's YAML config uses for the same setting (`bgpd.config.parse`
on a small document holding just that setting), so a setting has one meaning whichever way it arrives;
an error names the Calico field (``spec.ipipMode``) and keeps bgpd's wording. Fields read, per kind
(Calico's API, projectcalico/calico at 87c15906f20c, ``api/pkg/apis/projectcalico/v3/``):

- ``nodes``: ``metadata.labels``; ``spec.bgp.ipv4Address`` (with its prefix length), ``ipv6Address``,
  ``asNumber``, ``routeReflectorClusterID``. A Node without ``spec.bgp`` takes no part in BGP.
- ``bgpconfigurations`` (``default`` and ``node.<name>``): ``asNumber``, ``nodeToNodeMeshEnabled``,
  ``listenPort`` (0: unset), ``communities``, ``prefixAdvertisements``, ``nodeMeshPassword``.
- ``bgppeers``: ``peerIP`` (``IP``, ``IP:PORT``, ``[IPv6]:PORT``), ``asNumber``, ``node``,
  ``nodeSelector``, ``peerSelector``, ``password``, ``keepOriginalNextHop``, ``nextHopMode``,
  ``localASNumber``, ``numAllowedLocalASNumbers``, ``keepaliveTime`` (a Go duration, ``30s``, rounded to
  seconds as confd does), ``ttlSecurity``, ``filters``, ``reversePeering``, ``sourceAddress``
  (``UseNodeIP`` only: bgpd always sources a session from the node's address).
- ``ippools``: ``cidr``, ``ipipMode``, ``vxlanMode``, ``disableBGPExport``, ``disabled`` (kept: confd
  routes a disabled pool as any other; it only stops new allocations).
- ``bgpfilters``: ``exportV4``, ``importV4``, ``exportV6``, ``importV6`` with ``action``,
  ``matchOperator``, ``cidr``, ``prefixLength``, ``source``, ``interface`` (`bgpd.policy.filters`).

Fields of other Calico components (IPAM, Felix: ``natOutgoing``, ``blockSize``, tunnel addresses) are
accepted and ignored (`IGNORED`); BGP settings bgpd does not implement (service advertisement, route
priorities, per-peer restart time) are accepted and reported, the record kept, when set (`UNUSED`); a
setting whose absence would change the peering itself (``localWorkloadSelector``, ``reachableBy``,
``sourceAddress: None``, BGPFilter's newer conditions) makes the record invalid, as does an unknown
field or value.

Passwords. Calico stores ``password`` / ``nodeMeshPassword`` as ``{secretKeyRef: {name, key}}``, a
reference to a Kubernetes Secret, which is not in etcd. bgpd keeps the reference (`SecretRef`); the
derivation resolves it through a caller-supplied lookup (the daemon reads Secrets as Kubernetes mounts
them: one file per key). A plain string is refused: it would put the key in etcd in clear.

No I/O: parsing JSON text and validating it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Literal

import yaml

from bgpd import config as bgpconfig
from bgpd.config import ConfigError, NodeConfig, PeerConfig, PoolConfig
from bgpd.config_policy import NextHopMode, PrefixAdvertisement
from bgpd.datastore import selector as selectors
from bgpd.policy.filters import BGPFilter as FilterRules
from bgpd.spelling import did_you_mean

__all__ = [
    "DEFAULT_PREFIX",
    "KINDS",
    "BGPConfiguration",
    "BGPFilter",
    "BGPPeer",
    "IPPool",
    "Node",
    "Problem",
    "ResourceError",
    "Resources",
    "SecretRef",
    "load",
    "parse",
]

DEFAULT_PREFIX = "/calico/resources/v3/projectcalico.org/"
Kind = Literal["nodes", "bgpconfigurations", "bgppeers", "ippools", "bgpfilters"]
KINDS: tuple[Kind, ...] = ("nodes", "bgpconfigurations", "bgppeers", "ippools", "bgpfilters")
_KIND_NAMES = {
    "nodes": "Node",
    "bgpconfigurations": "BGPConfiguration",
    "bgppeers": "BGPPeer",
    "ippools": "IPPool",
    "bgpfilters": "BGPFilter",
}
ASN_MAX = 2**32 - 1

# Placeholders for the parts of a validation document that the record does not give (RFC 5737, RFC 3849).
_HOST4 = ("192.0.2.1", "192.0.2.2")
_HOST6 = ("2001:db8::1", "2001:db8::2")


class ResourceError(ValueError):
    """An invalid record: ``str(e) == "KEY: FIELD: message"`` (``KEY: message`` when it is about the whole
    record)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing to report about a record: ``skipped`` True when the record (or, from the derivation, the
    part of the config it produced) was left out; False for a setting that is ignored."""

    key: str
    message: str
    skipped: bool = True

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" + ("" if self.skipped else " (ignored)")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Calico's ``{secretKeyRef: {name, key}}``: entry ``key`` of the Kubernetes Secret ``name``."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class Node:
    """A Calico Node. ``identity`` holds what bgpd's ``node:`` section would: the addresses with their
    prefix lengths and the ASN (None: the cluster's, from BGPConfiguration ``default`` or 64512); an
    address is None when the Node has none in that family. ``cluster_id``: routeReflectorClusterID."""

    key: str
    name: str
    labels: Mapping[str, str]
    address: IPv4Address | None
    prefix_length: int | None
    address6: IPv6Address | None
    prefix_length6: int | None
    asn: int | None
    cluster_id: IPv4Address | None
    bgp: bool = True  # False: no spec.bgp, the node takes no part in BGP


@dataclass(frozen=True, slots=True)
class BGPConfiguration:
    """BGPConfiguration ``default`` or ``node.<name>`` (``node`` is the name, None for ``default``).
    None: not set. ``communities``: (name, value) as written; ``prefix_advertisements`` with names
    resolved against this record's communities, as confd resolves them."""

    key: str
    name: str
    node: str | None
    asn: int | None = None
    mesh_enabled: bool | None = None
    listen_port: int | None = None
    communities: tuple[tuple[str, str], ...] = ()
    prefix_advertisements: tuple[PrefixAdvertisement, ...] | None = None
    mesh_password: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class BGPPeer:
    """A BGPPeer. Local side: ``node`` or ``node_selector`` (neither: every node). Remote side:
    ``address`` (+ ``port``, None: the peer node's listen port or 179) with ``asn``, or ``peer_selector``
    (the selected nodes, their own ASNs). ``session`` holds the per-session settings as bgpd's
    `PeerConfig` would (address, asn and port there are placeholders). ``next_hop_mode`` None: Calico's
    legacy ``keepOriginalNextHop`` applies (``keep`` on eBGP only)."""

    key: str
    name: str
    node: str | None
    node_selector: selectors.Selector | None
    peer_selector: selectors.Selector | None
    address: IPv4Address | IPv6Address | None
    port: int | None
    asn: int | None
    password: SecretRef | None
    next_hop_mode: NextHopMode | None
    keep_original_next_hop: bool
    session: PeerConfig
    reverse_peering: bool = True


@dataclass(frozen=True, slots=True)
class IPPool:
    """An IPPool: ``pool`` as bgpd's `PoolConfig` (``export`` False for disableBGPExport)."""

    key: str
    name: str
    pool: PoolConfig
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class BGPFilter:
    """A BGPFilter: ``rules`` as bgpd's `bgpd.policy.filters.BGPFilter`, named by the record."""

    key: str
    name: str
    rules: FilterRules


@dataclass(frozen=True, slots=True)
class Resources:
    """The valid records of each kind, by name (Node name, BGPConfiguration name, ...)."""

    nodes: Mapping[str, Node] = field(default_factory=dict)
    configurations: Mapping[str, BGPConfiguration] = field(default_factory=dict)
    peers: Mapping[str, BGPPeer] = field(default_factory=dict)
    pools: Mapping[str, IPPool] = field(default_factory=dict)
    filters: Mapping[str, BGPFilter] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ loading


def load(
    items: Iterable[tuple[str, str | bytes]], prefix: str = DEFAULT_PREFIX
) -> tuple[Resources, tuple[Problem, ...]]:
    """Validate every (key, JSON value) pair. Keys outside ``prefix`` or of other kinds are not bgpd's and
    are left alone; an invalid record is a `Problem` and is left out."""
    found: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    problems: list[Problem] = []
    for key, value in sorted(items):
        if not key.startswith(prefix):
            continue
        kind, _, name = key[len(prefix) :].partition("/")
        if kind not in found:
            continue
        try:
            record, notes = parse(key, value, prefix)
        except ResourceError as exc:
            problems.append(Problem(exc.key, exc.message))
            continue
        found[kind][name] = record
        problems.extend(notes)
    resources = Resources(
        nodes=found["nodes"],
        configurations=found["bgpconfigurations"],
        peers=found["bgppeers"],
        pools=found["ippools"],
        filters=found["bgpfilters"],
    )
    return resources, tuple(problems)


Record = Node | BGPConfiguration | BGPPeer | IPPool | BGPFilter


def parse(key: str, value: str | bytes, prefix: str = DEFAULT_PREFIX) -> tuple[Record, tuple[Problem, ...]]:
    """One record from its key and JSON value, with the notes about ignored fields; ResourceError naming
    the key when it is invalid."""
    if not key.startswith(prefix):
        raise ResourceError(key, f"not under the prefix {prefix!r}")
    kind, _, name = key[len(prefix) :].partition("/")
    if kind not in _PARSERS or not name or "/" in name:
        raise ResourceError(key, f"not a key of bgpd's kinds: {prefix}<{'|'.join(KINDS)}>/<name>")
    try:
        obj = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResourceError(key, f"not JSON: {exc}") from None
    r = _Reader(key)
    top = r.mapping(obj, "", ("kind", "apiVersion", "metadata", "spec", "status"), ignored=("status",))
    if "kind" in top and top["kind"] != _KIND_NAMES[kind]:
        raise ResourceError(key, f"kind {top['kind']!r} under {kind}/: expected {_KIND_NAMES[kind]!r}")
    meta = r.mapping(top.get("metadata", {}), "metadata", ("name", "labels"), ignored=_METADATA_KEYS[2:])
    if "name" in meta and meta["name"] != name:
        raise ResourceError(key, f"metadata.name {meta['name']!r} is not the key's name {name!r}")
    labels = r.labels(meta.get("labels", {}))
    spec = top.get("spec", {})
    record = _PARSERS[kind](r, name, labels, spec)
    return record, tuple(r.notes)


_METADATA_KEYS = (
    "name",
    "labels",
    "namespace",
    "annotations",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "generateName",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)

# Fields of other Calico components (IPAM, Felix, orchestrators): accepted and ignored.
IGNORED: Mapping[str, tuple[str, ...]] = {
    "nodes": (
        "addresses",
        "ipv4VXLANTunnelAddr",
        "ipv6VXLANTunnelAddr",
        "vxlanTunnelMACAddr",
        "vxlanTunnelMACAddrV6",
        "orchRefs",
        "wireguard",
        "interfaces",
    ),
    "nodes.bgp": ("ipv4IPIPTunnelAddr",),
    "bgpconfigurations": ("logSeverityScreen",),  # bgpd's log level is the local runtime.log_level
    "bgppeers": (),
    "ippools": (
        "blockSize",
        "natOutgoing",
        "nodeSelector",
        "allowedUses",
        "assignmentMode",
        "awsSubnetID",
        "ipip",
        "nat-outgoing",
    ),
}
# BGP settings bgpd does not implement: accepted, and reported (kept) when set.
UNUSED: Mapping[str, tuple[str, ...]] = {
    "bgpconfigurations": (
        "serviceClusterIPs",
        "serviceExternalIPs",
        "serviceLoadBalancerIPs",
        "serviceLoadBalancerAggregation",
        "ignoredInterfaces",
        "bindMode",
        "nodeMeshMaxRestartTime",
        "localWorkloadPeeringIPV4",
        "localWorkloadPeeringIPV6",
        "programClusterRoutes",
        "ipv4NormalRoutePriority",
        "ipv6NormalRoutePriority",
    ),
    "bgppeers": ("maxRestartTime",),
}


# --------------------------------------------------------------------------------------- validation


class _Reader:
    """JSON shape checks for one record, and the notes on ignored fields."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.notes: list[Problem] = []

    def error(self, path: str, message: str) -> ResourceError:
        return ResourceError(self.key, f"{path}: {message}" if path else message)

    def mapping(
        self,
        value: object,
        path: str,
        allowed: Iterable[str],
        ignored: Iterable[str] = (),
        unused: Iterable[str] = (),
    ) -> dict[str, Any]:
        """The object's fields in ``allowed`` (null ones left out); ``ignored`` ones dropped, ``unused``
        ones dropped with a note when set; any other is an error."""
        if not isinstance(value, dict):
            raise self.error(path, f"expected an object, got {_json_type(value)}")
        allowed, ignored, unused = tuple(allowed), tuple(ignored), tuple(unused)
        out: dict[str, Any] = {}
        for k, v in value.items():
            where = f"{path}.{k}" if path else k
            if k in ignored:
                continue
            if k in unused:
                if v not in (None, "", [], {}):
                    self.notes.append(Problem(self.key, f"{where}: not used by bgpd", skipped=False))
                continue
            if k not in allowed:
                known = (*allowed, *unused)
                raise self.error(path or "", f"unknown field {k!r}{did_you_mean(k, known)}")
            if v is not None:
                out[k] = v
        return out

    def labels(self, value: object) -> dict[str, str]:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.error("metadata.labels", "expected an object of strings")
        return dict(value)

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"expected a string, got {_json_type(value)}")
        return value

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"expected true or false, got {_json_type(value)}")
        return value

    def asn(self, value: object, path: str) -> int:
        """Calico's numorstring.ASNumber: a number, its decimal text, or AS-dot ``a.b`` (RFC 5396)."""
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value.strip()):
            high, low = (int(x) for x in value.strip().split("."))
            number = high * 65536 + low if high <= 0xFFFF and low <= 0xFFFF else -1
        if number is None or not 1 <= number <= ASN_MAX:
            raise self.error(path, f"invalid AS number {value!r}: 1..{ASN_MAX} or AS-dot a.b")
        return number

    def secret(self, value: object, path: str) -> SecretRef:
        if isinstance(value, str):
            raise self.error(path, "a clear-text password is not accepted: use {secretKeyRef: {name, key}}")
        m = self.mapping(value, path, ("secretKeyRef",))
        if "secretKeyRef" not in m:
            raise self.error(path, "expected {secretKeyRef: {name, key}}")
        ref = self.mapping(m["secretKeyRef"], f"{path}.secretKeyRef", ("name", "key", "optional"))
        for part in ("name", "key"):
            if not isinstance(ref.get(part), str) or not ref[part]:
                raise self.error(f"{path}.secretKeyRef.{part}", "expected a non-empty string")
        return SecretRef(ref["name"], ref["key"])

    def selector(self, value: object, path: str) -> selectors.Selector | None:
        text = self.string(value, path)
        if not text.strip():
            return None
        try:
            return selectors.parse(text)
        except selectors.SelectorError as exc:
            raise self.error(path, str(exc)) from None

    def check(self, doc: dict[str, Any], fields: Mapping[str, str]) -> bgpconfig.Config:
        """Run bgpd's own validation on ``doc``; an error is reported with the Calico field that was
        written into the failing bgpd key (``fields``: bgpd key path prefix -> Calico path)."""
        text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
        try:
            return bgpconfig.parse(text, self.key)
        except ConfigError as exc:
            where = exc.keypath
            for ours, theirs in sorted(fields.items(), key=lambda kv: -len(kv[0])):
                if where == ours or where.startswith((ours + ".", ours + "[")):
                    where = theirs + _camel(where[len(ours) :])
                    break
            raise self.error(where, _calico_spelling(where, exc.message)) from None


_ENCAP_SPELLING = (("cross-subnet", "CrossSubnet"), ("never", "Never"), ("always", "Always"))


def _calico_spelling(where: str, message: str) -> str:
    """An error about ``ipipMode`` / ``vxlanMode`` with the values as Calico writes them (``CrossSubnet``),
    not as bgpd's YAML does (``cross-subnet``)."""
    if not where.endswith(("ipipMode", "vxlanMode")):
        return message
    head, sep, tail = message.partition("one of ")
    for ours, theirs in _ENCAP_SPELLING:
        tail = tail.replace(ours, theirs)
    return head + sep + tail


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


_CAMEL = {
    "export_v4": "exportV4",
    "import_v4": "importV4",
    "export_v6": "exportV6",
    "import_v6": "importV6",
    "match_operator": "matchOperator",
    "prefix_length": "prefixLength",
}


def _camel(path: str) -> str:
    for ours, theirs in _CAMEL.items():
        path = path.replace(ours, theirs)
    return path


def _placeholder_node(avoid: Iterable[object] = ()) -> dict[str, Any]:
    taken = {str(a) for a in avoid}
    return {
        "name": "validation",
        "address": next(a for a in _HOST4 if a not in taken),
        "address6": next(a for a in _HOST6 if a not in taken),
        "asn": 64512,
    }


# ---------------------------------------------------------------------------------------- the kinds

_NODE_SPEC = ("bgp",)
_NODE_BGP = ("ipv4Address", "ipv6Address", "asNumber", "routeReflectorClusterID")


def _node(r: _Reader, name: str, labels: dict[str, str], spec: object) -> Node:
    s = r.mapping(spec, "spec", _NODE_SPEC, IGNORED["nodes"])
    if "bgp" not in s:
        return Node(r.key, name, labels, None, None, None, None, None, None, bgp=False)
    b = r.mapping(s["bgp"], "spec.bgp", _NODE_BGP, IGNORED["nodes.bgp"])
    node = _placeholder_node()
    node["name"] = name
    fields = {"node.name": "metadata.name"}
    has4 = bool(b.get("ipv4Address"))
    if has4:
        node["address"] = r.string(b["ipv4Address"], "spec.bgp.ipv4Address")
        fields["node.address"] = "spec.bgp.ipv4Address"
    has6 = bool(b.get("ipv6Address"))
    if has6:
        node["address6"] = r.string(b["ipv6Address"], "spec.bgp.ipv6Address")
        fields["node.address6"] = "spec.bgp.ipv6Address"
    asn = r.asn(b["asNumber"], "spec.bgp.asNumber") if "asNumber" in b else None
    doc: dict[str, Any] = {"node": node}
    cluster_text = b.get("routeReflectorClusterID") or None
    if cluster_text is not None:
        doc["reflector"] = {"cluster_id": r.string(cluster_text, "spec.bgp.routeReflectorClusterID")}
        fields["reflector.cluster_id"] = "spec.bgp.routeReflectorClusterID"
    cfg = r.check(doc, fields)
    n: NodeConfig = cfg.node
    return Node(
        key=r.key,
        name=name,
        labels=labels,
        address=n.address if has4 else None,
        prefix_length=n.prefix_length if has4 else None,
        address6=n.address6 if has6 else None,
        prefix_length6=n.prefix_length6 if has6 else None,
        asn=asn,
        cluster_id=cfg.reflector.cluster_id if cfg.reflector is not None else None,
    )


_CONFIG_SPEC = (
    "asNumber",
    "nodeToNodeMeshEnabled",
    "listenPort",
    "communities",
    "prefixAdvertisements",
    "nodeMeshPassword",
)


def _configuration(r: _Reader, name: str, labels: dict[str, str], spec: object) -> BGPConfiguration:
    if name == "default":
        node = None
    elif name.startswith("node.") and len(name) > 5:
        node = name[5:]
    else:
        raise r.error("metadata.name", f"{name!r}: 'default' or 'node.<node name>'")
    s = r.mapping(spec, "spec", _CONFIG_SPEC, IGNORED["bgpconfigurations"], UNUSED["bgpconfigurations"])
    asn = r.asn(s["asNumber"], "spec.asNumber") if "asNumber" in s else None
    mesh = (
        r.boolean(s["nodeToNodeMeshEnabled"], "spec.nodeToNodeMeshEnabled")
        if "nodeToNodeMeshEnabled" in s
        else None
    )
    mesh_password = (
        r.secret(s["nodeMeshPassword"], "spec.nodeMeshPassword") if "nodeMeshPassword" in s else None
    )
    if node is not None:
        # confd reads these from `default` only (client.go updateBGPConfigCache); Calico's validator
        # refuses them on a per-node resource
        for field_name, value in (
            ("asNumber", asn),
            ("nodeToNodeMeshEnabled", mesh),
            ("nodeMeshPassword", mesh_password),
        ):
            if value is not None:
                r.notes.append(
                    Problem(
                        r.key, f"spec.{field_name}: only read from BGPConfiguration 'default'", skipped=False
                    )
                )
        asn = mesh = mesh_password = None
    bgp: dict[str, Any] = {}
    fields: dict[str, str] = {}
    port = s.get("listenPort", 0)
    if port != 0:
        bgp["port"] = port
        fields["bgp.port"] = "spec.listenPort"
    if "communities" in s:
        bgp["communities"] = s["communities"]
        fields["bgp.communities"] = "spec.communities"
    if "prefixAdvertisements" in s:
        bgp["prefix_advertisements"] = s["prefixAdvertisements"]
        fields["bgp.prefix_advertisements"] = "spec.prefixAdvertisements"
    cfg = r.check({"node": _placeholder_node(), "bgp": bgp}, fields)
    return BGPConfiguration(
        key=r.key,
        name=name,
        node=node,
        asn=asn,
        mesh_enabled=mesh,
        listen_port=cfg.bgp.port if port != 0 else None,
        communities=cfg.bgp.communities,
        prefix_advertisements=cfg.bgp.prefix_advertisements if "prefixAdvertisements" in s else None,
        mesh_password=mesh_password,
    )


_PEER_SPEC = (
    "peerIP",
    "asNumber",
    "node",
    "nodeSelector",
    "peerSelector",
    "password",
    "keepOriginalNextHop",
    "nextHopMode",
    "localASNumber",
    "numAllowedLocalASNumbers",
    "keepaliveTime",
    "ttlSecurity",
    "filters",
    "reversePeering",
    "sourceAddress",
    "localWorkloadSelector",
    "reachableBy",
)
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(r: _Reader, value: object, path: str) -> int:
    """A Go duration (``30s``, ``1m30s``) in whole seconds, rounded as confd rounds it."""
    text = r.string(value, path).strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise r.error(path, f"invalid duration {text!r} (e.g. 30s, 1m30s)")
    return int(total + 0.5)


def _peer_address(r: _Reader, text: str) -> tuple[IPv4Address | IPv6Address, int | None]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` (confd parseIPPort)."""
    host, port_text = text.strip(), None
    bracketed = re.fullmatch(r"\[([^\]]+)\]:(\d+)", host)
    if bracketed:
        host, port_text = bracketed.groups()
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    try:
        address = ip_address(host)
    except ValueError:
        raise r.error("spec.peerIP", f"invalid peer address {text!r} (IP, IP:PORT or [IPv6]:PORT)") from None
    port = None
    if port_text is not None:
        port = int(port_text) if port_text.isdigit() else 0
        if not 1 <= port <= 65535:
            raise r.error("spec.peerIP", f"port {port_text!r} out of range 1..65535")
    return address, port


def _peer(r: _Reader, name: str, labels: dict[str, str], spec: object) -> BGPPeer:
    s = r.mapping(spec, "spec", _PEER_SPEC, IGNORED["bgppeers"], UNUSED["bgppeers"])
    for unsupported in ("localWorkloadSelector", "reachableBy"):
        if s.get(unsupported):
            raise r.error(f"spec.{unsupported}", "not supported by bgpd")
    source = r.string(s.get("sourceAddress", "UseNodeIP"), "spec.sourceAddress")
    if source != "UseNodeIP":
        raise r.error("spec.sourceAddress", f"{source!r}: bgpd supports UseNodeIP only")
    node = r.string(s["node"], "spec.node") or None if "node" in s else None
    node_selector = r.selector(s["nodeSelector"], "spec.nodeSelector") if "nodeSelector" in s else None
    peer_selector = r.selector(s["peerSelector"], "spec.peerSelector") if "peerSelector" in s else None
    if node is not None and node_selector is not None:
        raise r.error("spec.node", "node and nodeSelector together: set one")
    address: IPv4Address | IPv6Address | None = None
    port = None
    peer_ip = r.string(s.get("peerIP", ""), "spec.peerIP")
    if peer_ip and peer_selector is not None:
        raise r.error("spec.peerIP", "peerIP and peerSelector together: set one")
    if peer_ip:
        address, port = _peer_address(r, peer_ip)
    elif peer_selector is None:
        raise r.error("spec", "one of peerIP and peerSelector is required")
    asn = r.asn(s["asNumber"], "spec.asNumber") if s.get("asNumber") else None
    if address is not None and asn is None:
        raise r.error("spec.asNumber", "required with peerIP")
    mode: NextHopMode | None = None
    entry: dict[str, Any] = {
        "address": str(address) if address is not None else _HOST4[1],
        "asn": asn or 64512,
    }
    fields = {"bgp.peers[0].address": "spec.peerIP"}
    for calico, ours, convert in (
        ("localASNumber", "local_asn", r.asn),
        ("numAllowedLocalASNumbers", "allow_local_as", None),
        ("ttlSecurity", "ttl_security", None),
        ("nextHopMode", "next_hop_mode", None),
    ):
        if calico in s:
            entry[ours] = convert(s[calico], f"spec.{calico}") if convert else s[calico]
            fields[f"bgp.peers[0].{ours}"] = f"spec.{calico}"
    if "keepaliveTime" in s:
        entry["keepalive_time"] = _duration(r, s["keepaliveTime"], "spec.keepaliveTime")
        fields["bgp.peers[0].keepalive_time"] = "spec.keepaliveTime"
    filters = s.get("filters", [])
    if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
        raise r.error("spec.filters", "expected a list of BGPFilter names")
    entry["filters"] = filters
    fields["bgp.peers[0].filters"] = "spec.filters"
    doc = {
        "node": _placeholder_node([address]),
        "filters": [{"name": f} for f in dict.fromkeys(filters)],
        # the keepalive time is checked against the node's real hold time in the derivation
        "bgp": {"hold_time": 65535, "peers": [entry]},
    }
    fields["filters"] = "spec.filters"
    session = r.check(doc, fields).bgp.peers[0]
    if "nextHopMode" in s:
        mode = session.next_hop_mode
    reverse = r.string(s.get("reversePeering", "Auto"), "spec.reversePeering")
    if reverse not in ("Auto", "Manual"):
        raise r.error("spec.reversePeering", f"{reverse!r}: Auto or Manual")
    return BGPPeer(
        key=r.key,
        name=name,
        node=node,
        node_selector=node_selector,
        peer_selector=peer_selector,
        address=address,
        port=port,
        asn=asn,
        password=r.secret(s["password"], "spec.password") if "password" in s else None,
        next_hop_mode=mode,
        keep_original_next_hop=r.boolean(s.get("keepOriginalNextHop", False), "spec.keepOriginalNextHop"),
        session=session,
        reverse_peering=reverse == "Auto",
    )


_POOL_SPEC = ("cidr", "ipipMode", "vxlanMode", "disableBGPExport", "disabled")


def _pool(r: _Reader, name: str, labels: dict[str, str], spec: object) -> IPPool:
    s = r.mapping(spec, "spec", _POOL_SPEC, IGNORED["ippools"])
    if "cidr" not in s:
        raise r.error("spec.cidr", "required")
    entry: dict[str, Any] = {"cidr": s["cidr"]}
    fields = {
        "pools[0].cidr": "spec.cidr",
        "pools[0].ipip": "spec.ipipMode",
        "pools[0].vxlan": "spec.vxlanMode",
    }
    for calico, ours in (("ipipMode", "ipip"), ("vxlanMode", "vxlan")):
        if s.get(calico, "") != "":
            entry[ours] = s[calico]
    export = not r.boolean(s.get("disableBGPExport", False), "spec.disableBGPExport")
    entry["export"] = export
    disabled = r.boolean(s.get("disabled", False), "spec.disabled")
    pool = r.check({"node": _placeholder_node(), "pools": [entry]}, fields).pools[0]
    return IPPool(r.key, name, pool, disabled)


_FILTER_SPEC = ("exportV4", "importV4", "exportV6", "importV6")
_RULE_FIELDS = {
    "action": "action",
    "matchOperator": "match_operator",
    "cidr": "cidr",
    "prefixLength": "prefix_length",
    "source": "source",
    "interface": "interface",
}
_RULE_UNSUPPORTED = ("peerType", "communities", "asPathPrefix", "priority", "operations")


def _filter(r: _Reader, name: str, labels: dict[str, str], spec: object) -> BGPFilter:
    s = r.mapping(spec, "spec", _FILTER_SPEC)
    entry: dict[str, Any] = {"name": name}
    for calico in _FILTER_SPEC:
        rules = s.get(calico, [])
        if not isinstance(rules, list):
            raise r.error(f"spec.{calico}", f"expected a list, got {_json_type(rules)}")
        out = []
        for i, rule in enumerate(rules):
            path = f"spec.{calico}[{i}]"
            m = r.mapping(rule, path, (*_RULE_FIELDS, *_RULE_UNSUPPORTED))
            for unsupported in _RULE_UNSUPPORTED:
                if unsupported in m:
                    raise r.error(f"{path}.{unsupported}", "not supported by bgpd")
            out.append({_RULE_FIELDS[k]: v for k, v in m.items()})
        entry[_camel_to_snake(calico)] = out
    cfg = r.check(
        {"node": _placeholder_node(), "filters": [entry]},
        {"filters[0].name": "metadata.name", "filters[0]": "spec"},
    )
    return BGPFilter(r.key, name, cfg.filters[0])


def _camel_to_snake(name: str) -> str:
    return next(k for k, v in _CAMEL.items() if v == name)


_PARSERS: dict[str, Callable[[_Reader, str, dict[str, str], object], Record]] = {
    "nodes": _node,
    "bgpconfigurations": _configuration,
    "bgppeers": _peer,
    "ippools": _pool,
    "bgpfilters": _filter,
}
