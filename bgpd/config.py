"""Loading, validating and normalizing the bgpd YAML configuration.

This module owns the configuration file format: the schema (top-level keys ``node``, ``bgp``, ``pools``,
``export``, ``kernel``, ``runtime``, ..., ``datastore``: `bgpd.config_datastore`), its defaults, the
checks that reject a bad file with a ``FILE:LINE: keypath: message`` error, the immutable `Config` types
every other layer reads, and `dump`, which writes a normalized file with every default filled in. It also
maps iproute2 routing protocol and table names to numbers (``/etc/iproute2/rt_protos``, ``rt_tables`` and
their ``.d`` directories, plus the ``/usr/share/iproute2`` equivalents).

Dual stack (issue 11). ``node.address`` and ``router_id`` are IPv4; the optional ``node.address6`` is this
host's global unicast IPv6 address. ``bgp.mesh.nodes``, ``bgp.peers[].address`` and ``reflector.clients``
take addresses of either family (text with a colon is IPv6), ``pools[].cidr`` prefixes of either family.
The rules, as Calico's: a mesh peering exists in a family only when both nodes have an address in it, so
a mesh listing IPv6 nodes must list ``address6``; an IPv6 session (peer, client) needs ``address6``, its
source; pools overlap only within a family. `PeerConfig.family`, `Config.local_address` and
`Config.families` tell the other layers which family a session is and which families are in use.

The YAML is parsed with ``yaml.compose`` into a node tree and walked by hand, so that every error can name
the 1-based line of the offending node. Nothing here does I/O besides reading the config file and the
iproute2 name tables.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import (
    AddressValueError,
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    NetmaskValueError,
)
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from yaml.constructor import SafeConstructor

from bgpd.config_datastore import (
    CLUSTER_SECTIONS,
    DATASTORE_KEYS,
    LOCAL_BGP_KEYS,
    LOCAL_SECTIONS,
    ClusterFile,
    DatastoreSection,
    parse_datastore,
)
from bgpd.config_policy import (
    NextHopMode,
    PrefixAdvertisement,
    parse_communities,
    parse_filters,
    parse_peer_policy,
    parse_prefix_advertisements,
)
from bgpd.config_session import (
    UNQUOTABLE,
    PrefixLimit,
    parse_password,
    parse_prefix_limit,
    parse_ttl_security,
)
from bgpd.policy.filters import BGPFilter, FilterRule
from bgpd.prefix import Address, Address6
from bgpd.spelling import did_you_mean, spelled

__all__ = [
    "LOG_LEVELS",
    "BgpConfig",
    "ClusterFile",
    "Config",
    "ConfigError",
    "ExportConfig",
    "KernelConfig",
    "MeshConfig",
    "NodeConfig",
    "PeerConfig",
    "PoolConfig",
    "RuntimeConfig",
    "dump",
    "load",
    "load_file",
    "parse",
    "parse_file",
    "protocol_number",
    "table_number",
]

LOG_LEVELS = ("debug", "info", "warning", "error")

EncapMode = Literal["never", "always", "cross-subnet"]
ENCAP_MODES: tuple[EncapMode, ...] = ("never", "always", "cross-subnet")
LOG_FORMATS = ("text", "json")

ASN_MAX = 2**32 - 1
TABLE_MAX = 2**32 - 1
METRIC_MAX = 2**32 - 1
GRACEFUL_RESTART_MAX = 4095  # 12-bit Restart Time field, RFC 4724 §3

_IPROUTE2_DIRS = ("/etc/iproute2", "/usr/share/iproute2")

# Used when /etc/iproute2 is missing or incomplete (iproute2's reserved values).
_BUILTIN_PROTOCOLS: dict[str, int] = {
    "unspec": 0,
    "redirect": 1,
    "kernel": 2,
    "boot": 3,
    "static": 4,
    "gated": 8,
    "ra": 9,
    "mrt": 10,
    "zebra": 11,
    "bird": 12,
    "dnrouted": 13,
    "xorp": 14,
    "ntk": 15,
    "dhcp": 16,
    "keepalived": 18,
    "babel": 42,
    "openr": 99,
    "bgp": 186,
    "isis": 187,
    "ospf": 188,
    "rip": 189,
    "eigrp": 192,
}
_BUILTIN_TABLES: dict[str, int] = {"default": 253, "main": 254, "local": 255}


# --------------------------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """A configuration problem located in the file: ``str(e) == "FILE:LINE: keypath: message"``.

    ``line`` is 1-based. For file-level errors ``keypath`` is ``""`` and the text is ``"FILE:LINE: message"``.
    """

    def __init__(self, file: str, line: int, keypath: str, message: str) -> None:
        self.file = file
        self.line = line
        self.keypath = keypath
        self.message = message
        super().__init__(f"{file}:{line}: {keypath}: {message}" if keypath else f"{file}:{line}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.file, self.line, self.keypath, self.message))


# ---------------------------------------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """This host: ``name``, underlay ``address`` (IPv4 session source, next hop), ``asn``, BGP ``router_id``
    and ``address6``, the IPv6 global unicast address (IPv6 session source and next hop), None when the
    host is IPv4 only."""

    name: str
    address: IPv4Address
    asn: int
    router_id: IPv4Address
    address6: IPv6Address | None = None
    # the prefix length written with ``address`` (``192.168.100.10/24``, as Calico's Node ipv4Address): the
    # local subnet that decides ``cross-subnet``; None: taken at start from the interface that holds it
    prefix_length: int | None = None
    prefix_length6: int | None = None  # the same for ``address6`` (accepted as Calico writes it; unused)

    @property
    def subnet(self) -> IPv4Network | None:
        """The node's underlay subnet as written (``address/prefix_length``), None without a length."""
        if self.prefix_length is None:
            return None
        return IPv4Network(f"{self.address}/{self.prefix_length}", strict=False)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """One BGP session. ``hold_time`` None means ``bgp.hold_time``; ``password`` is the TCP MD5 key.

    ``address`` is of either family; the session runs from the node's address of the same family
    (`Config.local_address`) and carries that family's routes."""

    address: IPv4Address | IPv6Address
    asn: int
    port: int = 179
    passive: bool = False
    hold_time: int | None = None
    password: str | None = None
    description: str = ""
    rr_client: bool = False  # set by Config.sessions() for reflector.clients, never read from bgp.peers
    # eBGP and policy (issue 13; Calico's BGPPeer localASNumber, nextHopMode, numAllowedLocalASNumbers,
    # keepaliveTime, filters): None = node.asn / hold time / 3
    local_asn: int | None = None
    next_hop_mode: NextHopMode = "auto"
    allow_local_as: int = 0
    keepalive_time: int | None = None
    filters: tuple[str, ...] = ()
    # session protection (issue 14): RFC 5082 hops, RFC 4486 prefix limit (`bgpd.config_session`)
    ttl_security: int | None = None
    prefix_limit: PrefixLimit | None = None

    @property
    def family(self) -> Literal[4, 6]:
        """4 or 6: the address family of the session (of ``address``)."""
        return 4 if self.address.version == 4 else 6


@dataclass(frozen=True, slots=True)
class ReflectorConfig:
    """Route-reflector role (RFC 4456): ``cluster_id`` and the ``clients`` (each becomes a client session)."""

    cluster_id: IPv4Address
    clients: tuple[IPv4Address | IPv6Address, ...] = ()
    password: str | None = None  # TCP MD5 key of every client session; None: ``bgp.mesh.password``


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Calico-style full iBGP mesh between ``nodes`` (this node's own addresses included), of either family:
    a peering exists in a family only when both nodes have an address in it."""

    enabled: bool = False
    nodes: tuple[IPv4Address | IPv6Address, ...] = ()
    password: str | None = None  # TCP MD5 key of every mesh session (Calico's nodeMeshPassword)


@dataclass(frozen=True, slots=True)
class BgpConfig:
    """Session parameters: listen/mesh ``port``, default ``hold_time``, graceful restart time, peers.

    ``select_defer_time``: seconds a starting bgpd waits for End-of-RIB from every peer before it sends its
    own End-of-RIB and removes its stale kernel routes (RFC 4724 §4.1 Selection_Deferral_Timer; FRR's
    ``bgp graceful-restart select-defer-time``, BIRD's ``graceful restart wait``)."""

    port: int = 179
    hold_time: int = 90
    graceful_restart: int = 120
    select_defer_time: float = 120.0
    mesh: MeshConfig = field(default_factory=MeshConfig)
    peers: tuple[PeerConfig, ...] = ()
    # Calico's BGPConfiguration communities (name, value) and prefixAdvertisements (issue 13)
    communities: tuple[tuple[str, str], ...] = ()
    prefix_advertisements: tuple[PrefixAdvertisement, ...] = ()


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """An IP pool of either family. ``export`` False = Calico ``disableBGPExport``: never announced, still
    installed.

    ``ipip`` (Calico's ``ipipMode``, IPv4 pools only): how learned routes of the pool are installed:
    ``never`` plain ``via NEXT_HOP``; ``always`` ``via NEXT_HOP dev tunl0 onlink``; ``cross-subnet`` the
    tunnel only for next hops outside the node's subnet. ``vxlan`` (Calico's ``vxlanMode``): other than
    ``never``, Felix programs the pool's routes over VXLAN and bgpd installs none of them (it still exports
    the pool's local routes). At most one of the two is other than ``never``, as Calico requires."""

    cidr: IPv4Network | IPv6Network
    export: bool = True
    ipip: EncapMode = "never"
    vxlan: EncapMode = "never"


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """Which local kernel routes are announced: by route ``protocols`` (numbers) and ``interfaces`` globs."""

    protocols: tuple[int, ...] = (3, 80)
    interfaces: tuple[str, ...] = ("cali*",)


@dataclass(frozen=True, slots=True)
class KernelConfig:
    """How learned routes go into the FIB.

    ``install`` False: learned routes are not installed (a pure reflector). ``stale_timeout``: seconds to keep
    a peer's paths after ExaBGP restarted, or after the peer came back from a graceful restart, while
    waiting for its End-of-RIB. ``audit_interval``: seconds between safety re-reads of bgpd's own kernel
    routes (0: never; notifications and link events repair everything they reveal at once).
    """

    protocol: int = 12
    table: int = 254
    metric: int = 32
    install: bool = True
    stale_timeout: float = 120.0
    audit_interval: float = 300.0


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Per-node working directory (generated ExaBGP config, sockets) and log level."""

    dir: str = "/run/bgpd"
    log_level: str = "info"
    log_format: str = "text"  # "text" (key=value) or "json"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus scrape target (also /livez and /readyz): ``listen`` "ADDR:PORT", None = off."""

    listen: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """The unix control socket `bgpctl` talks to (root only); None = ``<runtime.dir>/bgpd.ctl``."""

    socket: str | None = None

    def path(self, runtime_dir: str) -> str:
        """The socket's path: ``socket``, else ``<runtime_dir>/bgpd.ctl``."""
        return self.socket or os.path.join(runtime_dir, "bgpd.ctl")


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Readiness as Calico defines it: within ``startup_window`` seconds of start every peer must be
    Established; afterwards at least one."""

    startup_window: float = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated, normalized configuration. ``source`` (the file name) is ignored by ``==``."""

    node: NodeConfig
    bgp: BgpConfig = field(default_factory=BgpConfig)
    pools: tuple[PoolConfig, ...] = ()
    export: ExportConfig = field(default_factory=ExportConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    reflector: ReflectorConfig | None = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    filters: tuple[BGPFilter, ...] = ()  # Calico's BGPFilter resources, named by bgp.peers[].filters
    source: str = field(default="<string>", compare=False)

    @property
    def control_socket(self) -> str:
        return self.control.path(self.runtime.dir)

    def local_address(self, family: int) -> IPv4Address | IPv6Address | None:
        """This node's address in ``family`` (4: ``node.address``, 6: ``node.address6``, None if unset): the
        source of that family's sessions and the next hop of its routes. ValueError for another family."""
        if family == 4:
            return self.node.address
        if family == 6:
            return self.node.address6
        raise ValueError(f"address family {family!r}: 4 or 6")

    @property
    def families(self) -> tuple[Literal[4, 6], ...]:
        """The address families in use, in order: 4 always; 6 when ``node.address6`` is set or an IPv6
        pool or session exists (then the daemon decodes and watches IPv6 too)."""
        if (
            self.node.address6 is not None
            or any(p.cidr.version == 6 for p in self.pools)
            or any(s.address.version == 6 for s in self.sessions())
        ):
            return (4, 6)
        return (4,)

    def sessions(self) -> tuple[PeerConfig, ...]:
        """Every BGP session this node runs, of both families: the mesh (list order, own addresses
        skipped), the reflector's clients, then ``bgp.peers`` (non-clients).

        A mesh session has ``asn = node.asn``, ``port = bgp.port`` and is passive when this node's address
        of the session's family (``address``, ``address6``) is the lower of the two (the lower address
        waits, as Calico does); a mesh node of a family this node has no address in gets no session. A
        client session is iBGP (``asn = node.asn``, ``port = bgp.port``) with ``rr_client`` set; the
        reflector waits passively for its clients to connect (their `bgp.peers` entry connects), which
        avoids connection collisions.
        """
        mesh: list[PeerConfig] = []
        if self.bgp.mesh.enabled:
            own4, own6 = self.node.address, self.node.address6
            for addr in self.bgp.mesh.nodes:
                if isinstance(addr, IPv4Address):
                    if addr == own4:
                        continue
                    passive = own4 < addr
                else:
                    if own6 is None or addr == own6:
                        continue
                    passive = own6 < addr
                mesh.append(
                    PeerConfig(
                        address=addr,
                        asn=self.node.asn,
                        port=self.bgp.port,
                        passive=passive,
                        password=self.bgp.mesh.password,
                    )
                )
        client_password = self.bgp.mesh.password
        if self.reflector and self.reflector.password is not None:
            client_password = self.reflector.password
        clients = [
            PeerConfig(
                address=addr,
                asn=self.node.asn,
                port=self.bgp.port,
                passive=True,
                rr_client=True,
                password=client_password,
            )
            for addr in (self.reflector.clients if self.reflector else ())
        ]
        return (*mesh, *clients, *self.bgp.peers)


# ---------------------------------------------------------------------------- iproute2 name tables


def _read_iproute2(filename: str) -> dict[str, int]:
    """Name -> number from ``filename`` and ``filename.d/*.conf`` in the iproute2 config directories."""
    names: dict[str, int] = {}
    files: list[Path] = []
    # /usr/share first so that /etc (the administrator's copy) wins.
    for base in reversed(_IPROUTE2_DIRS):
        files.append(Path(base) / filename)
        ddir = Path(base) / f"{filename}.d"
        with contextlib.suppress(OSError):
            files.extend(sorted(p for p in ddir.iterdir() if p.name.endswith(".conf")))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for raw in text.splitlines():
            words = raw.split("#", 1)[0].split()
            if len(words) < 2:
                continue
            try:
                number = int(words[0], 0)
            except ValueError:
                continue
            names[words[1]] = number
    return names


@functools.cache
def _protocols() -> dict[str, int]:
    table = dict(_BUILTIN_PROTOCOLS)
    table.update({k: v for k, v in _read_iproute2("rt_protos").items() if 0 <= v <= 255})
    return table


@functools.cache
def _tables() -> dict[str, int]:
    table = dict(_BUILTIN_TABLES)
    table.update({k: v for k, v in _read_iproute2("rt_tables").items() if 1 <= v <= TABLE_MAX})
    return table


def _lookup(kind: str, name_or_number: str | int, names: dict[str, int], lo: int, hi: int) -> int:
    if isinstance(name_or_number, bool) or not isinstance(name_or_number, (int, str)):
        raise ValueError(f"{kind} must be a name or a number, not {type(name_or_number).__name__}")
    if isinstance(name_or_number, str):
        text = name_or_number.strip()
        if text in names:
            return names[text]
        if text.isdecimal():
            number = int(text)
        else:
            hint = did_you_mean(text, names)
            raise ValueError(f"unknown {kind} name {name_or_number!r}{hint}")
    else:
        number = name_or_number
    if not lo <= number <= hi:
        raise ValueError(f"{kind} {number} out of range {lo}..{hi}")
    return number


def protocol_number(name_or_number: str | int) -> int:
    """Route protocol number from an rt_protos name (``boot``, ``static``, ``bird``, ...) or 0..255.

    Raises ValueError for unknown names and out-of-range numbers.
    """
    return _lookup("routing protocol", name_or_number, _protocols(), 0, 255)


def table_number(name_or_number: str | int) -> int:
    """Routing table number from an rt_tables name (``main``=254, ``local``=255, ...) or 1..2**32-1.

    Raises ValueError for unknown names and out-of-range numbers.
    """
    return _lookup("routing table", name_or_number, _tables(), 1, TABLE_MAX)


# Calico's resource field names, and where this config keeps the same setting
_CALICO_NAMES: dict[str, str] = {
    "peerIP": "address",
    "asNumber": "asn",
    "localASNumber": "local_asn",
    "nextHopMode": "next_hop_mode",
    "numAllowedLocalASNumbers": "allow_local_as",
    "keepaliveTime": "keepalive_time",
    "ttlSecurity": "ttl_security",
    "nodeMeshPassword": "bgp.mesh.password",
    "nodeToNodeMeshEnabled": "bgp.mesh.enabled",
    "listenPort": "bgp.port",
    "prefixAdvertisements": "prefix_advertisements",
    "matchOperator": "match_operator",
    "prefixLength": "prefix_length",
    "exportV4": "export_v4",
    "importV4": "import_v4",
    "exportV6": "export_v6",
    "importV6": "import_v6",
    "ipipMode": "ipip",
    "vxlanMode": "vxlan",
    "disableBGPExport": "export",
    "routeReflectorClusterID": "reflector.cluster_id",
    "ipv4Address": "node.address",
    "ipv6Address": "node.address6",
}


# ------------------------------------------------------------------------------------- node walking

_TAG_NAMES = {
    "tag:yaml.org,2002:str": "string",
    "tag:yaml.org,2002:int": "integer",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:bool": "boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "timestamp",
    "tag:yaml.org,2002:binary": "binary",
}

T = TypeVar("T")
A = TypeVar("A", IPv4Address, IPv6Address)


@dataclass(frozen=True, slots=True)
class _V:
    """A YAML node with the key path and the line to report for it."""

    node: yaml.Node
    path: str
    line: int


def _try_ipv4(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text.strip())
    except ValueError:
        return None


def _try_ipv6(text: str) -> IPv6Address | None:
    try:
        return IPv6Address(text.strip())
    except ValueError:
        return None


class _Walker:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._constructor = SafeConstructor()

    def error(self, v: _V, message: str) -> ConfigError:
        return ConfigError(self.filename, v.line, v.path, message)

    @staticmethod
    def kind(node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "mapping"
        if isinstance(node, yaml.SequenceNode):
            return "list"
        return _TAG_NAMES.get(node.tag, node.tag)

    @staticmethod
    def is_null(v: _V) -> bool:
        return isinstance(v.node, yaml.ScalarNode) and v.node.tag == "tag:yaml.org,2002:null"

    # ---- collections

    def mapping(
        self, v: _V, allowed: Sequence[str], required: Sequence[str] = (), null_ok: bool = True
    ) -> dict[str, _V]:
        if null_ok and self.is_null(v):
            node_items: list[tuple[yaml.Node, yaml.Node]] = []
        elif isinstance(v.node, yaml.MappingNode):
            node_items = list(v.node.value)
        else:
            raise self.error(v, f"expected a mapping, got {self.kind(v.node)}")
        out: dict[str, _V] = {}
        for knode, vnode in node_items:
            kline = knode.start_mark.line + 1
            if not (isinstance(knode, yaml.ScalarNode) and knode.tag == "tag:yaml.org,2002:str"):
                shown = knode.value if isinstance(knode, yaml.ScalarNode) else self.kind(knode)
                raise ConfigError(self.filename, kline, v.path, f"keys must be strings, got {shown!r}")
            key = str(knode.value)
            path = f"{v.path}.{key}" if v.path else key
            if key not in allowed:
                calico = _CALICO_NAMES.get(key)
                if calico is not None and calico.rpartition(".")[2] in allowed:
                    hint = f" (Calico's {key} is {calico!r} here)"
                elif calico is not None:
                    hint = f" (Calico's {key} is {calico} in this config)"
                else:
                    hint = did_you_mean(key, allowed)
                raise ConfigError(self.filename, kline, v.path, f"unknown key {key!r}{hint}")
            if key in out:
                raise ConfigError(self.filename, kline, path, "duplicate key")
            # Collections are reported at their key's line; scalars at their own line.
            line = vnode.start_mark.line + 1 if isinstance(vnode, yaml.ScalarNode) else kline
            out[key] = _V(vnode, path, line)
        for key in required:
            if key not in out:
                path = f"{v.path}.{key}" if v.path else key
                raise ConfigError(self.filename, v.line, path, "required key missing")
        return out

    def sequence(self, v: _V) -> list[_V]:
        if self.is_null(v):
            return []
        if not isinstance(v.node, yaml.SequenceNode):
            raise self.error(v, f"expected a list, got {self.kind(v.node)}")
        return [_V(n, f"{v.path}[{i}]", n.start_mark.line + 1) for i, n in enumerate(v.node.value)]

    # ---- scalars

    def scalar(self, v: _V, *tags: str) -> object:
        want = {f"tag:yaml.org,2002:{t}" for t in tags}
        if not isinstance(v.node, yaml.ScalarNode) or v.node.tag not in want:
            names = " or ".join(_TAG_NAMES[f"tag:yaml.org,2002:{t}"] for t in tags)
            article = "an" if names[0] in "aeiou" else "a"
            raise self.error(v, f"expected {article} {names}, got {self.kind(v.node)}")
        try:
            return self._constructor.construct_object(v.node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            raise self.error(v, f"invalid value {v.node.value!r}: {exc}") from None

    def integer(self, v: _V, lo: int, hi: int, what: str) -> int:
        value = self.scalar(v, "int")
        assert isinstance(value, int)
        if not lo <= value <= hi:
            raise self.error(v, f"{what} {value} out of range {lo}..{hi}")
        return value

    def boolean(self, v: _V) -> bool:
        value = self.scalar(v, "bool")
        assert isinstance(value, bool)
        return value

    def string(self, v: _V, what: str = "value", empty_ok: bool = False) -> str:
        value = self.scalar(v, "str")
        assert isinstance(value, str)
        if not empty_ok and not value.strip():
            raise self.error(v, f"{what} must not be empty")
        return value

    def number(self, v: _V, lo: float, hi: float, what: str) -> float:
        value = self.scalar(v, "int", "float")
        assert isinstance(value, (int, float))
        result = float(value)
        if not math.isfinite(result) or not lo <= result <= hi:
            raise self.error(v, f"{what} {value} out of range {lo:g}..{hi:g}")
        return result

    def address_text(self, v: _V, what: str) -> str:
        """The text of an address scalar. An unquoted IPv6 address of digits alone (``1:2:3:4:5:6:7:8``) is
        a YAML 1.1 sexagesimal number to PyYAML: such a scalar is taken as written."""
        node = v.node
        if (
            isinstance(node, yaml.ScalarNode)
            and node.style is None
            and node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
            and ":" in str(node.value)
        ):
            return str(node.value)
        return self.string(v, what, empty_ok=True)

    def ipv4(self, v: _V) -> IPv4Address:
        text = self.address_text(v, "IPv4 address")
        try:
            addr = Address(text.strip())
        except AddressValueError:
            addr6 = _try_ipv6(text) if ":" in text else None
            if addr6 is not None:
                key = v.path.rpartition(".")[2]
                hint = " (an IPv6 one goes in node.address6)" if v.path == "node.address" else ""
                raise self.error(
                    v, f"{addr6} is an IPv6 address; {key} takes an IPv4 address{hint}"
                ) from None
            raise self.error(v, f"invalid IPv4 address {text!r}") from None
        if addr.is_unspecified or addr.is_multicast or addr == IPv4Address("255.255.255.255"):
            raise self.error(v, f"{addr} is not a unicast address")
        return addr

    def _ipv6(self, v: _V, text: str) -> IPv6Address:
        """``text`` as an IPv6 address without a zone id (an Address6), or the ConfigError."""
        try:
            addr = Address6(text.strip())
        except AddressValueError:
            raise self.error(v, f"invalid IPv6 address {text!r}") from None
        if addr.scope_id is not None:
            raise self.error(v, f"invalid IPv6 address {text!r} (a zone id is not allowed)")
        return addr

    def address(self, v: _V) -> IPv4Address | IPv6Address:
        """A peer's unicast address of either family: IPv6 if the text has a colon, else IPv4 (`ipv4`).
        IPv6: not unspecified or multicast (as IPv4), nor link-local (a session to one needs an interface)."""
        text = self.address_text(v, "IP address")
        if ":" not in text:
            return self.ipv4(v)
        addr = self._ipv6(v, text)
        if addr.is_unspecified or addr.is_multicast:
            raise self.error(v, f"{addr} is not a unicast address")
        if addr.ipv4_mapped is not None:
            raise self.error(v, f"{addr} is an IPv4-mapped address; write {addr.ipv4_mapped} instead")
        if addr.is_link_local:
            raise self.error(v, f"{addr} is a link-local address; sessions need a global one")
        return addr

    def ipv6_global(self, v: _V) -> IPv6Address:
        """This node's IPv6 address: global unicast (RFC 4291 §2.5.4: unique local fd00::/8 included), not
        IPv4, IPv4-mapped, link-local, loopback, multicast or unspecified."""
        text = self.address_text(v, "IPv6 address")
        key = v.path.rpartition(".")[2]
        addr4 = _try_ipv4(text) if ":" not in text else None
        if addr4 is not None:
            raise self.error(v, f"{addr4} is an IPv4 address; {key} takes an IPv6 address")
        addr = self._ipv6(v, text)
        kind = None
        if addr.is_unspecified:
            kind = "the unspecified address"
        elif addr.is_loopback:
            kind = "the loopback address"
        elif addr.ipv4_mapped is not None:
            kind = "an IPv4-mapped address"
        elif addr.is_link_local:
            kind = "a link-local address"
        elif addr.is_multicast:
            kind = "a multicast address"
        if kind is not None:
            raise self.error(v, f"{addr} is {kind}; {key} takes a global unicast address")
        return addr

    def listen(self, v: _V) -> tuple[str, int]:
        """ "ADDR:PORT" for a TCP listener (IPv4 address, or empty/0.0.0.0 for all)."""
        text = self.string(v, "listen address").strip()
        host, sep, port_text = text.rpartition(":")
        if not sep or not (port_text.isascii() and port_text.isdecimal()) or not 1 <= int(port_text) <= 65535:
            raise self.error(v, f"invalid listen address {text!r} (expected ADDR:PORT, e.g. 127.0.0.1:9179)")
        host = host or "0.0.0.0"
        try:
            IPv4Address(host)
        except AddressValueError:
            raise self.error(v, f"invalid listen address {host!r} (an IPv4 address)") from None
        return (host, int(port_text))

    def ipv4_id(self, v: _V) -> IPv4Address:
        """A 32-bit identifier (cluster id): dotted quad or integer, not zero (RFC 4456 §7)."""
        if isinstance(v.node, yaml.ScalarNode) and v.node.tag == "tag:yaml.org,2002:int":
            return Address(self.integer(v, 1, 2**32 - 1, "cluster id"))
        text = self.string(v, "cluster id").strip()
        try:
            ident = Address(text)
        except AddressValueError:
            raise self.error(v, f"invalid cluster id {text!r} (dotted quad or integer)") from None
        if ident.is_unspecified:
            raise self.error(v, "cluster id must not be 0.0.0.0")
        return ident

    def with_length(self, v: _V, max_length: int, convert: Callable[[_V], A]) -> tuple[A, int | None]:
        """An address written alone or with its prefix length (``192.168.100.10/24``, as Calico's Node
        ``ipv4Address``): (the address by `convert`, the length or None)."""
        text = self.address_text(v, "address")
        if "/" not in text:
            return convert(v), None
        head, _, tail = text.partition("/")
        tail = tail.strip()
        scalar = yaml.ScalarNode("tag:yaml.org,2002:str", head.strip(), style="'")
        address = convert(_V(scalar, v.path, v.line))
        if not tail.isdigit() or not 1 <= int(tail) <= max_length:
            raise self.error(v, f"invalid prefix length {tail!r} in {text.strip()!r}: 1..{max_length}")
        length = int(tail)
        if address.version == 4 and length <= 30:  # a /31 or /32 has neither (RFC 3021)
            net = IPv4Network(f"{address}/{length}", strict=False)
            for what, edge in (("network", net.network_address), ("broadcast", net.broadcast_address)):
                if address == edge:
                    raise self.error(v, f"{address} is the {what} address of {net}, not a host address")
        return address, length

    def choice(self, v: _V, choices: Sequence[str], what: str) -> str:
        """One of `choices`, written in any case and with or without dashes (Calico's spellings:
        `CrossSubnet`, `NotIn`), as the choice itself."""
        text = self.string(v, what)
        found = spelled(text, choices)
        if found is None:
            hint = did_you_mean(text.strip().lower(), choices)
            raise self.error(v, f"bad {what} {text!r}: one of {', '.join(choices)}{hint}")
        return found

    def encap_mode(self, v: _V) -> EncapMode:
        """never | always | cross-subnet (Calico's Never | Always | CrossSubnet accepted too)."""
        mode: EncapMode = self.choice(v, ENCAP_MODES, f"{v.path.rpartition('.')[2]} mode")  # type: ignore[assignment]
        return mode

    def cidr(self, v: _V) -> IPv4Network | IPv6Network:
        """A prefix of either family (IPv6 if the text has a colon), host bits zero, no zone id."""
        text = self.string(v, "CIDR", empty_ok=True).strip()
        if "/" not in text:
            raise self.error(v, f"invalid CIDR {text!r} (missing /prefix length)")
        try:
            if ":" not in text:
                return IPv4Network(text, strict=True)
            net = IPv6Network(text, strict=True)
        except (AddressValueError, NetmaskValueError):
            raise self.error(v, f"invalid CIDR {text!r}") from None
        except ValueError:
            raise self.error(v, f"{text} has host bits set") from None
        if net.network_address.scope_id is not None:
            raise self.error(v, f"invalid CIDR {text!r} (a zone id is not allowed)")
        return net

    def hold_time(self, v: _V) -> int:
        value = self.scalar(v, "int")
        assert isinstance(value, int)
        if value != 0 and not 3 <= value <= 65535:
            raise self.error(v, f"hold time {value} invalid: must be 0 or 3..65535 (RFC 4271 4.2)")
        return value

    def named_number(self, v: _V, convert: Callable[[str | int], int]) -> int:
        value = self.scalar(v, "int", "str")
        assert isinstance(value, (int, str))
        try:
            return convert(value)
        except ValueError as exc:
            raise self.error(v, str(exc)) from None

    @staticmethod
    def get(m: dict[str, _V], key: str, convert: Callable[[_V], T], default: T) -> T:
        return convert(m[key]) if key in m else default


# ------------------------------------------------------------------------------------------ parsing

_TOP_KEYS = (
    "node",
    "bgp",
    "pools",
    "export",
    "kernel",
    "runtime",
    "reflector",
    "metrics",
    "control",
    "health",
    "filters",
    "datastore",
)
_REFLECTOR_KEYS = ("cluster_id", "clients", "password")
_NODE_KEYS = ("name", "address", "address6", "asn", "router_id")
_BGP_KEYS = (
    "port",
    "hold_time",
    "graceful_restart",
    "select_defer_time",
    "mesh",
    "peers",
    "communities",
    "prefix_advertisements",
)
_MESH_KEYS = ("enabled", "nodes", "password")
_PEER_KEYS = (
    "address",
    "asn",
    "port",
    "passive",
    "hold_time",
    "password",
    "description",
    "local_asn",
    "next_hop_mode",
    "allow_local_as",
    "keepalive_time",
    "filters",
    "ttl_security",
    "max_prefixes",
    "max_prefixes_action",
    "restart_after",
)
_POOL_KEYS = ("cidr", "export", "ipip", "vxlan")
_EXPORT_KEYS = ("protocols", "interfaces")
_KERNEL_KEYS = ("protocol", "table", "metric", "install", "stale_timeout", "audit_interval")
_RUNTIME_KEYS = ("dir", "log_level", "log_format")
_METRICS_KEYS = ("listen",)
_CONTROL_KEYS = ("socket",)
_HEALTH_KEYS = ("startup_window",)


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate the config file at ``path``; raises ConfigError (also if it cannot be read)."""
    filename = os.fspath(path)
    return parse(_read_text(filename), filename)


def _read_text(filename: str) -> str:
    try:
        with open(filename, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise ConfigError(filename, 1, "", "not a config file (not UTF-8 text)") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(filename, 1, "", f"cannot read config: {reason}") from None


def control_socket_of(path: str | os.PathLike[str]) -> tuple[str, ConfigError | None]:
    """The control socket a config names (``control.socket``, else ``runtime.dir``/bgpd.ctl), and the
    config's error if it has one elsewhere: `bgpctl -c FILE reload` must still reach the daemon, which then
    refuses the reload and logs and counts it. Raises ConfigError when the file cannot be read or the error
    is in ``control`` or ``runtime`` themselves."""
    try:
        return load_file(path).control_socket, None
    except ConfigError as exc:
        if exc.keypath.startswith(("control", "runtime")) or exc.keypath == "":
            raise
        error = exc
    with contextlib.suppress(OSError, UnicodeDecodeError, yaml.YAMLError):
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        if isinstance(doc, dict):
            control, runtime = doc.get("control") or {}, doc.get("runtime") or {}
            if isinstance(control, dict) and isinstance(runtime, dict):
                socket, where = control.get("socket"), runtime.get("dir", RuntimeConfig().dir)
                if isinstance(socket, str) and socket:
                    return socket, error
                if isinstance(where, str) and where:
                    return ControlConfig().path(where), error
    raise error


def load_file(path: str | os.PathLike[str]) -> Config | ClusterFile:
    """Read and validate the config file at ``path``: a whole `Config`, or a `ClusterFile` when its
    ``datastore.type`` is etcdv3. Raises ConfigError (also if it cannot be read)."""
    filename = os.fspath(path)
    return parse_file(_read_text(filename), filename)


def parse(text: str, filename: str = "<string>") -> Config:
    """Validate and normalize config ``text``; ``filename`` is used in errors and as ``Config.source``.
    A file whose cluster part comes from the datastore is a ConfigError here (`parse_file` takes it)."""
    result = parse_file(text, filename, cluster_ok=False)
    assert isinstance(result, Config)
    return result


def parse_file(text: str, filename: str = "<string>", cluster_ok: bool = True) -> Config | ClusterFile:
    """`parse`, or the `ClusterFile` when ``datastore.type`` is etcdv3 (then only ``node.name``, the
    datastore and the local sections may be written: `bgpd.config_datastore`). Without ``cluster_ok``
    such a file is a ConfigError at its ``datastore.type``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        parts = [p for p in (exc.context, exc.problem) if p]
        raise ConfigError(filename, line, "", "YAML syntax error: " + ", ".join(parts)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(filename, 1, "", f"YAML syntax error: {exc}") from None
    if root is None:
        raise ConfigError(filename, 1, "", "empty config file (expected a mapping with a 'node' key)")
    w = _Walker(filename)
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(filename, 1, "", f"top level must be a mapping, got {w.kind(root)}")
    top = w.mapping(_V(root, "", 1), _TOP_KEYS, required=("node",))
    datastore = parse_datastore(w, top["datastore"]) if "datastore" in top else DatastoreSection()
    if datastore.type != "none":
        if not cluster_ok:
            dm = w.mapping(top["datastore"], DATASTORE_KEYS)
            raise w.error(dm["type"], "etcdv3: the cluster part of this config comes from the datastore")
        return _parse_cluster_file(w, top, text, datastore, filename)

    node = _parse_node(w, top["node"])
    filters = parse_filters(w, top["filters"]) if "filters" in top else ()
    bgp = _parse_bgp(w, top["bgp"], node, {f.name: f for f in filters}) if "bgp" in top else BgpConfig()
    pools = _parse_pools(w, top["pools"]) if "pools" in top else ()
    export = _parse_export(w, top["export"]) if "export" in top else ExportConfig()
    reflector = _parse_reflector(w, top["reflector"], node, bgp) if "reflector" in top else None
    # A reflector is not in the forwarding path: it installs nothing unless kernel.install says so.
    default_kernel = KernelConfig(install=reflector is None)
    kernel = _parse_kernel(w, top["kernel"], default_kernel) if "kernel" in top else default_kernel
    runtime = _parse_runtime(w, top["runtime"]) if "runtime" in top else RuntimeConfig()
    metrics, control, health = _parse_operations(w, top)
    return Config(
        node=node,
        bgp=bgp,
        pools=pools,
        export=export,
        kernel=kernel,
        runtime=runtime,
        reflector=reflector,
        metrics=metrics,
        control=control,
        health=health,
        filters=filters,
        source=filename,
    )


def _parse_operations(w: _Walker, top: dict[str, _V]) -> tuple[MetricsConfig, ControlConfig, HealthConfig]:
    """The ``metrics``, ``control`` and ``health`` sections."""
    metrics = MetricsConfig()
    if "metrics" in top:
        mm = w.mapping(top["metrics"], _METRICS_KEYS)
        if "listen" in mm and not w.is_null(mm["listen"]):
            metrics = MetricsConfig(listen=w.listen(mm["listen"]))
    control = ControlConfig()
    if "control" in top:
        cm = w.mapping(top["control"], _CONTROL_KEYS)
        if "socket" in cm and not w.is_null(cm["socket"]):
            control = ControlConfig(socket=w.string(cm["socket"], "control socket path"))
    health = HealthConfig()
    if "health" in top:
        hm = w.mapping(top["health"], _HEALTH_KEYS)
        health = HealthConfig(
            startup_window=w.get(hm, "startup_window", lambda x: w.number(x, 0, 3600, "startup window"), 30.0)
        )
    return metrics, control, health


def _parse_cluster_file(
    w: _Walker, top: dict[str, _V], text: str, datastore: DatastoreSection, filename: str
) -> ClusterFile:
    """A file whose cluster part comes from the datastore: ``node.name``, the datastore, the local
    sections (validated here, at their lines, as in a whole config)."""
    from_datastore = "comes from the datastore (datastore.type is etcdv3)"
    nm = w.mapping(top["node"], _NODE_KEYS, required=("name",), null_ok=False)
    for key, value in nm.items():
        if key != "name":
            raise w.error(value, f"{from_datastore}: this node's Node record ({_NODE_FROM_RECORD[key]})")
    name = w.string(nm["name"], "node name")
    if any(c.isspace() for c in name):
        raise w.error(nm["name"], f"node name {name!r} must not contain whitespace")
    for section in CLUSTER_SECTIONS:
        if section in top:
            raise w.error(top[section], from_datastore)
    if "bgp" in top:
        bm = w.mapping(top["bgp"], _BGP_KEYS)
        for key, value in bm.items():
            if key not in LOCAL_BGP_KEYS:
                raise w.error(value, f"{from_datastore}; local in bgp: {', '.join(LOCAL_BGP_KEYS)}")
        placeholder = NodeConfig(name, IPv4Address(0), 1, IPv4Address(0))
        _parse_bgp(w, top["bgp"], placeholder, {})
    if "export" in top:
        _parse_export(w, top["export"])
    if "kernel" in top:
        _parse_kernel(w, top["kernel"], KernelConfig())
    runtime = _parse_runtime(w, top["runtime"]) if "runtime" in top else RuntimeConfig()
    metrics, control, _ = _parse_operations(w, top)
    doc = yaml.safe_load(text)
    local = {k: doc[k] for k in (*LOCAL_SECTIONS, "bgp") if k in doc and doc[k] is not None}
    return ClusterFile(
        node_name=name,
        datastore=datastore,
        local=local,
        runtime=runtime,
        control=control,
        metrics=metrics,
        source=filename,
    )


_NODE_FROM_RECORD = {
    "address": "spec.bgp.ipv4Address",
    "address6": "spec.bgp.ipv6Address",
    "asn": "spec.bgp.asNumber",
    "router_id": "the IPv4 address, as confd",
}


def _parse_reflector(w: _Walker, v: _V, node: NodeConfig, bgp: BgpConfig) -> ReflectorConfig:
    m = w.mapping(v, _REFLECTOR_KEYS, required=("cluster_id",), null_ok=False)
    cluster_id = w.ipv4_id(m["cluster_id"])
    clients: list[IPv4Address | IPv6Address] = []
    for item in w.sequence(m["clients"]) if "clients" in m else []:
        addr = w.address(item)
        if addr in (node.address, node.address6):
            raise w.error(item, f"client {addr} is this node's own address")
        if addr.version == 6 and node.address6 is None:
            raise w.error(item, f"client {addr} is an IPv6 address but node.address6 is not set")
        if addr in clients:
            raise w.error(item, f"duplicate client {addr}")
        if any(p.address == addr for p in bgp.peers):
            raise w.error(item, f"client {addr} is also listed in bgp.peers")
        if bgp.mesh.enabled and addr in bgp.mesh.nodes:
            raise w.error(item, f"client {addr} is also a mesh node (bgp.mesh.nodes)")
        clients.append(addr)
    password = parse_password(w, m["password"]) if "password" in m else None
    return ReflectorConfig(cluster_id=cluster_id, clients=tuple(clients), password=password)


def _parse_node(w: _Walker, v: _V) -> NodeConfig:
    m = w.mapping(v, _NODE_KEYS, required=("name", "address", "asn"), null_ok=False)
    name = w.string(m["name"], "node name")
    if any(c.isspace() for c in name):
        raise w.error(m["name"], f"node name {name!r} must not contain whitespace")
    address, prefix_length = w.with_length(m["address"], 32, w.ipv4)
    asn = w.integer(m["asn"], 1, ASN_MAX, "ASN")
    router_id = w.get(m, "router_id", w.ipv4, address)
    address6, prefix_length6 = None, None
    if "address6" in m and not w.is_null(m["address6"]):
        address6, prefix_length6 = w.with_length(m["address6"], 128, w.ipv6_global)
    return NodeConfig(
        name=name,
        address=address,
        asn=asn,
        router_id=router_id,
        address6=address6,
        prefix_length=prefix_length,
        prefix_length6=prefix_length6,
    )


def _parse_bgp(w: _Walker, v: _V, node: NodeConfig, filters: dict[str, BGPFilter]) -> BgpConfig:
    m = w.mapping(v, _BGP_KEYS)
    port = w.get(m, "port", lambda x: w.integer(x, 1, 65535, "port"), 179)
    hold_time = w.get(m, "hold_time", w.hold_time, 90)
    graceful_restart = w.get(
        m, "graceful_restart", lambda x: w.integer(x, 0, GRACEFUL_RESTART_MAX, "graceful restart time"), 120
    )
    select_defer_time = w.get(
        m, "select_defer_time", lambda x: w.number(x, 0, 3600, "selection deferral time"), 120.0
    )
    mesh = MeshConfig()
    if "mesh" in m:
        mesh_v = m["mesh"]
        mm = w.mapping(mesh_v, _MESH_KEYS)
        enabled = w.get(mm, "enabled", w.boolean, False)
        # A missing `nodes` is reported at the `mesh:` line.
        missing = _V(yaml.ScalarNode("tag:yaml.org,2002:null", ""), f"{mesh_v.path}.nodes", mesh_v.line)
        nodes_v = mm.get("nodes", missing)
        nodes: list[IPv4Address | IPv6Address] = []
        for item in w.sequence(nodes_v):
            addr = w.address(item)
            if addr in nodes:
                raise w.error(item, f"duplicate mesh node {addr}")
            nodes.append(addr)
        mesh_password = parse_password(w, mm["password"]) if "password" in mm else None
        mesh = MeshConfig(enabled=enabled, nodes=tuple(nodes), password=mesh_password)
        if enabled and node.address not in nodes:
            raise w.error(nodes_v, f"mesh is enabled but does not list this node's address {node.address}")
        # IPv6 mesh sessions run between the nodes' address6 (a peering exists in a family only when both
        # nodes have an address in it): a mesh with IPv6 nodes must list this node's.
        if enabled and any(a.version == 6 for a in nodes):
            if node.address6 is None:
                raise w.error(nodes_v, "mesh lists IPv6 nodes but node.address6 is not set")
            if node.address6 not in nodes:
                raise w.error(
                    nodes_v, f"mesh is enabled but does not list this node's address6 {node.address6}"
                )

    peers: list[PeerConfig] = []
    for item in w.sequence(m["peers"]) if "peers" in m else []:
        pm = w.mapping(item, _PEER_KEYS, required=("address", "asn"), null_ok=False)
        address = w.address(pm["address"])
        where = pm["address"]
        if address in (node.address, node.address6):
            raise w.error(where, f"peer {address} is this node's own address")
        if address.version == 6 and node.address6 is None:
            raise w.error(where, f"peer {address} is an IPv6 address but node.address6 is not set")
        if any(p.address == address for p in peers):
            raise w.error(where, f"duplicate peer {address}")
        if mesh.enabled and address in mesh.nodes:
            raise w.error(where, f"peer {address} is also a mesh node (bgp.mesh.nodes)")
        password = parse_password(w, pm["password"]) if "password" in pm else None
        peer_hold: int | None = None
        if "hold_time" in pm and not w.is_null(pm["hold_time"]):
            peer_hold = w.hold_time(pm["hold_time"])
        local_asn, next_hop_mode, allow_local_as, keepalive, peer_filters = parse_peer_policy(
            w, pm, hold_time if peer_hold is None else peer_hold, filters
        )
        peers.append(
            PeerConfig(
                address=address,
                asn=w.integer(pm["asn"], 1, ASN_MAX, "ASN"),
                port=w.get(pm, "port", lambda x: w.integer(x, 1, 65535, "port"), 179),
                passive=w.get(pm, "passive", w.boolean, False),
                hold_time=peer_hold,
                password=password,
                description=w.get(pm, "description", _description(w), ""),
                local_asn=local_asn,
                next_hop_mode=next_hop_mode,
                allow_local_as=allow_local_as,
                keepalive_time=keepalive,
                filters=peer_filters,
                ttl_security=parse_ttl_security(w, pm),
                prefix_limit=parse_prefix_limit(w, pm),
            )
        )
    named = parse_communities(w, m["communities"]) if "communities" in m else {}
    advertisements: tuple[PrefixAdvertisement, ...] = ()
    if "prefix_advertisements" in m:
        advertisements = parse_prefix_advertisements(w, m["prefix_advertisements"], named)
    return BgpConfig(
        port=port,
        hold_time=hold_time,
        graceful_restart=graceful_restart,
        select_defer_time=select_defer_time,
        mesh=mesh,
        peers=tuple(peers),
        communities=tuple(named.items()),
        prefix_advertisements=advertisements,
    )


def _description(w: _Walker) -> Callable[[_V], str]:
    def convert(v: _V) -> str:
        text = w.string(v, empty_ok=True)
        if any(c in text for c in UNQUOTABLE):
            raise w.error(v, "description must not contain quotes, backslashes or newlines")
        return text

    return convert


def _parse_pools(w: _Walker, v: _V) -> tuple[PoolConfig, ...]:
    pools: list[PoolConfig] = []
    for item in w.sequence(v):
        pm = w.mapping(item, _POOL_KEYS, required=("cidr",), null_ok=False)
        cidr = w.cidr(pm["cidr"])
        for i, other in enumerate(pools):
            # only within a family (ipaddress answers False across families; said here for the reader)
            if other.cidr.version == cidr.version and other.cidr.overlaps(cidr):
                what = "duplicate pool" if other.cidr == cidr else "pool overlaps"
                raise w.error(pm["cidr"], f"{what} {v.path}[{i}] {other.cidr}")
        never: EncapMode = "never"
        ipip = w.get(pm, "ipip", w.encap_mode, never)
        vxlan = w.get(pm, "vxlan", w.encap_mode, never)
        if ipip != "never" and cidr.version == 6:
            raise w.error(pm["ipip"], f"ipip {ipip} on IPv6 pool {cidr}: Calico has no IP-in-IP for IPv6")
        if ipip != "never" and vxlan != "never":
            raise w.error(
                pm["vxlan"], f"pool {cidr} has both ipip {ipip} and vxlan {vxlan}: at most one may be enabled"
            )
        pools.append(
            PoolConfig(cidr=cidr, export=w.get(pm, "export", w.boolean, True), ipip=ipip, vxlan=vxlan)
        )
    return tuple(pools)


def _parse_export(w: _Walker, v: _V) -> ExportConfig:
    m = w.mapping(v, _EXPORT_KEYS)
    protocols = ExportConfig().protocols
    if "protocols" in m:
        protocols = tuple(w.named_number(x, protocol_number) for x in w.sequence(m["protocols"]))
    interfaces = ExportConfig().interfaces
    if "interfaces" in m:
        interfaces = tuple(w.string(x, "interface pattern") for x in w.sequence(m["interfaces"]))
    return ExportConfig(protocols=protocols, interfaces=interfaces)


def _parse_kernel(w: _Walker, v: _V, d: KernelConfig) -> KernelConfig:
    m = w.mapping(v, _KERNEL_KEYS)
    return KernelConfig(
        protocol=w.get(m, "protocol", lambda x: w.named_number(x, protocol_number), d.protocol),
        table=w.get(m, "table", lambda x: w.named_number(x, table_number), d.table),
        metric=w.get(m, "metric", lambda x: w.integer(x, 0, METRIC_MAX, "metric"), d.metric),
        install=w.get(m, "install", w.boolean, d.install),
        stale_timeout=w.get(m, "stale_timeout", lambda x: w.number(x, 0, 86400, "stale timeout"), 120.0),
        audit_interval=w.get(
            m, "audit_interval", lambda x: w.number(x, 0, 86400, "audit interval"), d.audit_interval
        ),
    )


def _parse_runtime(w: _Walker, v: _V) -> RuntimeConfig:
    m = w.mapping(v, _RUNTIME_KEYS)
    d = RuntimeConfig()
    log_level = d.log_level
    if "log_level" in m:
        log_level = w.string(m["log_level"], "log level").strip().lower()
        if log_level not in LOG_LEVELS:
            hint = did_you_mean(log_level, LOG_LEVELS)
            raise w.error(
                m["log_level"], f"bad log level {log_level!r}: one of {', '.join(LOG_LEVELS)}{hint}"
            )
    log_format = d.log_format
    if "log_format" in m:
        log_format = w.string(m["log_format"], "log format").strip().lower()
        if log_format not in LOG_FORMATS:
            raise w.error(m["log_format"], f"bad log format {log_format!r}: one of {', '.join(LOG_FORMATS)}")
    return RuntimeConfig(
        dir=w.get(m, "dir", lambda x: w.string(x, "runtime dir"), d.dir),
        log_level=log_level,
        log_format=log_format,
    )


# -------------------------------------------------------------------------------------------- dump


def dump(cfg: Config) -> str:
    """Normalized YAML for ``cfg``: every default filled in, names as numbers, stable key order;
    ``node.address6`` only when set.

    ``parse(dump(cfg)) == cfg`` for every Config that ``parse`` can produce.
    """

    def with_length(address: object, length: int | None) -> str:
        return f"{address}/{length}" if length is not None else str(address)

    node: dict[str, object] = {
        "name": cfg.node.name,
        "address": with_length(cfg.node.address, cfg.node.prefix_length),
    }
    if cfg.node.address6 is not None:
        node["address6"] = with_length(cfg.node.address6, cfg.node.prefix_length6)
    node.update(asn=cfg.node.asn, router_id=str(cfg.node.router_id))
    doc: dict[str, object] = {
        "node": node,
        "bgp": {
            "port": cfg.bgp.port,
            "hold_time": cfg.bgp.hold_time,
            "graceful_restart": cfg.bgp.graceful_restart,
            "select_defer_time": float(cfg.bgp.select_defer_time),
            "mesh": {
                "enabled": cfg.bgp.mesh.enabled,
                "nodes": [str(a) for a in cfg.bgp.mesh.nodes],
                "password": cfg.bgp.mesh.password,
            },
            "peers": [
                {
                    "address": str(p.address),
                    "asn": p.asn,
                    "port": p.port,
                    "passive": p.passive,
                    "hold_time": p.hold_time,
                    "password": p.password,
                    "description": p.description,
                    "local_asn": p.local_asn,
                    "next_hop_mode": p.next_hop_mode,
                    "allow_local_as": p.allow_local_as,
                    "keepalive_time": p.keepalive_time,
                    "filters": list(p.filters),
                    "ttl_security": p.ttl_security,
                    **_dump_prefix_limit(p.prefix_limit),
                }
                for p in cfg.bgp.peers
            ],
            "communities": [{"name": n, "value": value} for n, value in cfg.bgp.communities],
            "prefix_advertisements": [
                {"cidr": str(a.cidr), "communities": list(a.communities)}
                for a in cfg.bgp.prefix_advertisements
            ],
        },
        "pools": [
            {"cidr": str(p.cidr), "export": p.export, "ipip": p.ipip, "vxlan": p.vxlan} for p in cfg.pools
        ],
        "export": {"protocols": list(cfg.export.protocols), "interfaces": list(cfg.export.interfaces)},
        "kernel": {
            "protocol": cfg.kernel.protocol,
            "table": cfg.kernel.table,
            "metric": cfg.kernel.metric,
            "install": cfg.kernel.install,
            "stale_timeout": float(cfg.kernel.stale_timeout),
            "audit_interval": float(cfg.kernel.audit_interval),
        },
        "runtime": {
            "dir": cfg.runtime.dir,
            "log_level": cfg.runtime.log_level,
            "log_format": cfg.runtime.log_format,
        },
        "metrics": {
            "listen": None
            if cfg.metrics.listen is None
            else f"{cfg.metrics.listen[0]}:{cfg.metrics.listen[1]}"
        },
        "control": {"socket": cfg.control.socket},
        "health": {"startup_window": float(cfg.health.startup_window)},
    }
    doc["filters"] = [
        {
            "name": f.name,
            "export_v4": [dump_rule(r) for r in f.export_v4],
            "import_v4": [dump_rule(r) for r in f.import_v4],
            "export_v6": [dump_rule(r) for r in f.export_v6],
            "import_v6": [dump_rule(r) for r in f.import_v6],
        }
        for f in cfg.filters
    ]
    if cfg.reflector is not None:
        doc["reflector"] = {
            "cluster_id": str(cfg.reflector.cluster_id),
            "clients": [str(a) for a in cfg.reflector.clients],
            "password": cfg.reflector.password,
        }
    header = "# bgpd configuration, normalized: every default filled in\n"
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return header + body


def _dump_prefix_limit(limit: PrefixLimit | None) -> dict[str, object]:
    if limit is None:
        return {"max_prefixes": None, "max_prefixes_action": None, "restart_after": None}
    return {
        "max_prefixes": limit.maximum,
        "max_prefixes_action": limit.action,
        "restart_after": limit.restart_after if limit.action == "restart" else None,
    }


def dump_rule(rule: FilterRule) -> dict[str, object]:
    """A filter rule as written in the config (only the conditions it has); also what `bgpd.datastore`
    writes for a Calico BGPFilter rule."""
    out: dict[str, object] = {"action": rule.action}
    if rule.match_operator is not None:
        out["match_operator"] = rule.match_operator
    if rule.cidr is not None:
        out["cidr"] = str(rule.cidr)
    if rule.prefix_length_min is not None or rule.prefix_length_max is not None:
        length: dict[str, int] = {}
        if rule.prefix_length_min is not None:
            length["min"] = rule.prefix_length_min
        if rule.prefix_length_max is not None:
            length["max"] = rule.prefix_length_max
        out["prefix_length"] = length
    if rule.source is not None:
        out["source"] = rule.source
    if rule.interface is not None:
        out["interface"] = rule.interface
    return out
